//! One Pix2Vox-F training step (forward in train mode, 10 x BCE, backward, Adam) on
//! random images, and the frozen trunk's forward alone: the trunk's share is what caching
//! its features could save at most (upstream keeps its BatchNorm in train mode, so cached
//! features would not be exact). `cargo bench -p mono2mesh-vision --bench train`; set
//! `PIX2VOX_BENCH_DEVICE=cuda` for a GPU (batch 32 and 64 there, 8 on a CPU).

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use mono2mesh_vision::device::DeviceChoice;
use mono2mesh_vision::pix2vox::{is_frozen_trunk_variable, Pix2Vox, Stages, Variant};
use mono2mesh_vision::train::optim::Adam;
use std::time::Duration;
use tch::{nn, Kind, Reduction, Tensor};

fn step(c: &mut Criterion) {
    let choice: DeviceChoice =
        std::env::var("PIX2VOX_BENCH_DEVICE").ok().and_then(|s| s.parse().ok()).unwrap_or(DeviceChoice::Cpu);
    let device = choice.resolve().expect("benchmark device");
    let batches: &[i64] = if device.is_cuda() { &[32, 64] } else { &[8] };
    let mut group = c.benchmark_group(format!("pix2vox_train_{choice}"));
    group.sample_size(10).warm_up_time(Duration::from_secs(3)).measurement_time(Duration::from_secs(30));
    let vs = nn::VarStore::new(device);
    let net = Pix2Vox::new(&vs.root(), Variant::F);
    let params: Vec<(String, Tensor, f64)> = vs
        .variables()
        .into_iter()
        .filter(|(name, t)| t.requires_grad() && !is_frozen_trunk_variable(name))
        .map(|(name, t)| (name, t, 1e-3))
        .collect();
    let mut adam = Adam::new(params, (0.9, 0.999), 1e-8);
    for &batch in batches {
        let images = Tensor::randn([batch, 1, 3, 224, 224], (Kind::Float, device));
        let voxels = Tensor::rand([batch, 32, 32, 32], (Kind::Float, device)).ge(0.8).to_kind(Kind::Float);
        group.throughput(Throughput::Elements(batch as u64));
        group.bench_with_input(BenchmarkId::new("step", batch), &batch, |b, _| {
            b.iter(|| {
                adam.zero_grad();
                let out = net.forward_t(&images, true, Stages::default());
                let loss = out.merged.binary_cross_entropy::<Tensor>(&voxels, None, Reduction::Mean) * 10.0;
                loss.backward();
                adam.step(1.0);
                loss.double_value(&[])
            })
        });
        let flat = images.squeeze_dim(1);
        group.bench_with_input(BenchmarkId::new("trunk_forward", batch), &batch, |b, _| {
            b.iter(|| tch::no_grad(|| net.trunk_t(&flat, true).sum(Kind::Float).double_value(&[])))
        });
    }
    group.finish();
}

criterion_group!(benches, step);
criterion_main!(benches);
