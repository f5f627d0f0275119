//! Speed of the gate on real photos, to compare with the paper's tools
//! (scripts/bench/gate_reference.py: Pillow decode + resize, OpenCV gray + Laplacian).
//!
//! Photos: three real ImageNet JPEGs of different sizes from ../shared/testdata (skipped
//! with a message when absent) plus every file in $MONO2MESH_GATE_BENCH_DIR, e.g. a
//! phone-sized JPEG made by the reference script's `--make-large`.
//!
//! Groups: `assess` = decode + orientation + RGB + 600x600 resize + both scores (what the
//! reference script times); `gate` = `assess` + PNG encoding of the standardised image;
//! `scores_only` = gray + Laplacian variance + mean on a 600x600 image.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use mono2mesh_gate::{assess, gate, score, GateSettings};
use std::path::{Path, PathBuf};

const REAL_PHOTOS: [&str; 3] = [
    "imagenet/bottle/n04560804_water_jug.JPEG",  // 240x163
    "imagenet/sofa/n04344873_studio_couch.JPEG", // 500x375
    "imagenet/car/n03594945_jeep.JPEG",          // 1280x960
];

fn bench_photos() -> Vec<(String, Vec<u8>)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/testdata/photos");
    let mut paths: Vec<PathBuf> = Vec::new();
    if root.is_dir() {
        paths.extend(REAL_PHOTOS.iter().map(|p| root.join(p)));
    } else {
        eprintln!("SKIPPED: real photos ({} absent)", root.display());
    }
    if let Some(dir) = std::env::var_os("MONO2MESH_GATE_BENCH_DIR") {
        if let Ok(entries) = std::fs::read_dir(dir) {
            let mut extra: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
            extra.sort();
            paths.extend(extra);
        }
    }
    paths
        .into_iter()
        .filter_map(|path| {
            let bytes = std::fs::read(&path).ok()?;
            let (w, h) = image::ImageReader::new(std::io::Cursor::new(&bytes))
                .with_guessed_format()
                .ok()?
                .into_dimensions()
                .ok()?;
            let name = path.file_name()?.to_string_lossy().into_owned();
            Some((format!("{name} {w}x{h}"), bytes))
        })
        .collect()
}

fn gate_benches(c: &mut Criterion) {
    let settings = GateSettings::default();
    let photos = bench_photos();

    let mut group = c.benchmark_group("assess");
    for (label, bytes) in &photos {
        group.bench_with_input(BenchmarkId::from_parameter(label), bytes, |b, bytes| {
            b.iter(|| assess(bytes, &settings).map(|a| a.report.scores))
        });
    }
    group.finish();

    let mut group = c.benchmark_group("gate");
    for (label, bytes) in &photos {
        group.bench_with_input(BenchmarkId::from_parameter(label), bytes, |b, bytes| {
            b.iter(|| gate(bytes, &settings).map(|o| o.standardised_png.map(|p| p.len())))
        });
    }
    group.finish();

    // Synthetic texture so this group runs without ../shared too.
    let texture = image::RgbImage::from_fn(600, 600, |x, y| {
        let v = ((x * 7 + y * 13) ^ (x * y)) as u8;
        image::Rgb([v, v.wrapping_mul(3), v.wrapping_add(90)])
    });
    c.bench_function("scores_only 600x600", |b| b.iter(|| score(&texture)));
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30);
    targets = gate_benches
}
criterion_main!(benches);
