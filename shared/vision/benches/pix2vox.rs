//! Pix2Vox-F/A eval forward (no_grad, fp32) on the CPU, at batch 1 and a small batch.
//! Reference: the official PyTorch Pix2Vox-F takes about 1.7 s per image on the 2-core
//! development CPU. Weights are the official initialisation: speed does not depend on them.
//! `cargo bench -p mono2mesh-vision --bench pix2vox`; set `PIX2VOX_BENCH_DEVICE=cuda` to
//! time a GPU instead.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use mono2mesh_vision::device::DeviceChoice;
use mono2mesh_vision::pix2vox::{Pix2Vox, Variant};
use std::time::Duration;
use tch::{nn, Kind, Tensor};

fn forward(c: &mut Criterion) {
    let choice: DeviceChoice = std::env::var("PIX2VOX_BENCH_DEVICE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(DeviceChoice::Cpu);
    let device = choice.resolve().expect("benchmark device");
    let batches: &[i64] = if device.is_cuda() { &[1, 64] } else { &[1, 4] };
    let mut group = c.benchmark_group(format!("pix2vox_forward_{choice}"));
    group.sample_size(10).warm_up_time(Duration::from_secs(2)).measurement_time(Duration::from_secs(15));
    for variant in [Variant::F, Variant::A] {
        let vs = nn::VarStore::new(device);
        let net = Pix2Vox::new(&vs.root(), variant);
        for &batch in batches {
            let images = Tensor::randn([batch, 1, 3, 224, 224], (Kind::Float, device));
            group.throughput(Throughput::Elements(batch as u64));
            group.bench_with_input(BenchmarkId::new(format!("Pix2Vox-{variant}"), batch), &images, |b, images| {
                b.iter(|| {
                    let out = net.infer(images);
                    // wait for the device so the time covers the whole pass
                    out.volume().sum(Kind::Float).double_value(&[])
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, forward);
criterion_main!(benches);
