//! Reconstruct stage throughput: [`Reconstructor::reconstruct_batch`] (decode,
//! preprocessing, Pix2Vox-F forward, grid) on 600x600 PNGs as the gate stores them, at
//! batch 1 and 4, in images per second. CPU unless `RECONSTRUCT_BENCH_DEVICE=cuda`.
//! Weights are a seeded initialisation: speed does not depend on them.
//! `cargo bench -p mono2mesh-reconstruct --bench throughput`

use image::{ImageFormat, Rgb, RgbImage};
use mono2mesh_reconstruct::{ReconstructJob, ReconstructSettings, Reconstructor};
use mono2mesh_vision::device::DeviceChoice;
use mono2mesh_vision::pix2vox::Variant;
use mono2mesh_vision::pix2vox_model::{ModelMetadata, Pix2VoxModel, Provenance};
use std::io::Cursor;
use std::time::{Duration, Instant};

fn gated_png(seed: u32) -> Vec<u8> {
    let image = RgbImage::from_fn(600, 600, |x, y| {
        let v = ((x / 12 + y / 12 + seed) % 2 * 150 + 50) as u8;
        Rgb([v, v / 2, 255 - v])
    });
    let mut out = Cursor::new(Vec::new());
    image.write_to(&mut out, ImageFormat::Png).unwrap();
    out.into_inner()
}

fn main() {
    let choice: DeviceChoice = std::env::var("RECONSTRUCT_BENCH_DEVICE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(DeviceChoice::Cpu);
    let device = choice.resolve().expect("benchmark device");
    // Each measurement runs at least this long (and at least three batches).
    let budget = Duration::from_secs(std::env::var("RECONSTRUCT_BENCH_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(12));
    tch::manual_seed(3);
    let metadata = ModelMetadata::official(Variant::F, None, Provenance::of_kind("bench"));
    let model = Reconstructor::from_model(Pix2VoxModel::new(metadata, device));
    let images: Vec<Vec<u8>> = (0..4).map(gated_png).collect();
    println!("Pix2Vox-F reconstruct_batch on {choice}, torch threads {}", tch::get_num_threads());
    for batch in [1usize, 4] {
        let views: Vec<[&[u8]; 1]> = images[..batch].iter().map(|i| [i.as_slice()]).collect();
        let jobs: Vec<ReconstructJob> = views.iter().map(|v| ReconstructJob { images: v }).collect();
        let settings = ReconstructSettings { max_batch: batch, ..ReconstructSettings::default() };
        // Warm-up: first-touch allocations and kernel selection.
        for result in model.reconstruct_batch(&jobs, &settings) {
            result.expect("reconstruct");
        }
        let (mut runs, started) = (0u32, Instant::now());
        while runs < 3 || started.elapsed() < budget {
            for result in model.reconstruct_batch(&jobs, &settings) {
                result.expect("reconstruct");
            }
            runs += 1;
        }
        let per_batch = started.elapsed() / runs;
        println!(
            "batch {batch}: {:.0} ms per batch, {:.2} images/s ({runs} batches)",
            per_batch.as_secs_f64() * 1000.0,
            batch as f64 / per_batch.as_secs_f64()
        );
    }
}
