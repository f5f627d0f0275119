//! Pix2Vox-F training steps on the CPU, today's path against the fast ones, in one run so
//! the figures compare as ratios on a shared, noisy machine:
//!
//! * `live_f32`: the official step as `mono2mesh train --trunk live` runs it: PNG decoding,
//!   the official augmentations, the trunk in train mode, float32;
//! * `cached_f32`: trunk features read from the feature cache, the rest of the network in
//!   float32 (`--trunk cached --precision f32`);
//! * `cached_bf16`: the same under CPU bf16 autocast (`--trunk cached --precision bf16`);
//! * `infer_f32` / `infer_bf16`: the whole eval-mode network on one image.
//!
//! Each step is forward, 10 x BCE, backward and Adam on a batch of 8 renderings of a small
//! synthetic catalog. `cargo bench -p mono2mesh-train --bench train`.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use mono2mesh_catalog::dataset::{synthesize, Dataset, Split, SynthConfig};
use mono2mesh_core::Category;
use mono2mesh_vision::pix2vox::{is_frozen_trunk_variable, Pix2Vox, Stages, Variant};
use mono2mesh_vision::precision::{cpu_has_native_bf16, with_cpu_bf16};
use mono2mesh_train::feature_cache::{trunk_fingerprint, FeatureCache};
use mono2mesh_train::optim::Adam;
use mono2mesh_train::{AugmentConfig, PairSet};
use std::path::Path;
use std::time::Duration;
use tch::{nn, Device, Kind, Reduction, Tensor};

const BATCH: usize = 8;

fn steps(c: &mut Criterion) {
    let data = tempfile::tempdir().expect("temp dir");
    let cfg = SynthConfig {
        categories: vec![Category::Chair, Category::Car],
        models_per_category: 8,
        views: 4,
        seed: 3,
        ..SynthConfig::default()
    };
    synthesize(data.path(), &cfg, &|_| {}).expect("catalog");
    let ds = Dataset::open(data.path()).expect("dataset");
    let samples: Vec<_> = [Split::Train, Split::Val, Split::Test].iter().flat_map(|&s| ds.samples(s, None)).collect();
    let pairs = PairSet::load(&ds, samples).expect("pairs");

    let vs = nn::VarStore::new(Device::Cpu);
    let net = Pix2Vox::new(&vs.root(), Variant::F);
    let params: Vec<(String, Tensor, f64)> = vs
        .variables()
        .into_iter()
        .filter(|(name, t)| t.requires_grad() && !is_frozen_trunk_variable(name))
        .map(|(name, t)| (name, t, 1e-3))
        .collect();
    let mut adam = Adam::new(params, (0.9, 0.999), 1e-8);
    let augment = AugmentConfig::default();
    let n = pairs.len();
    let batch_at = |k: usize| -> Vec<usize> { (0..BATCH).map(|j| (k * BATCH + j) % n).collect() };

    let mut group = c.benchmark_group("pix2vox_f_train_cpu");
    group.sample_size(10).warm_up_time(Duration::from_secs(3)).measurement_time(Duration::from_secs(25));
    group.throughput(Throughput::Elements(BATCH as u64));

    let mut k = 0usize;
    group.bench_function(BenchmarkId::new("live_f32", BATCH), |b| {
        b.iter(|| {
            k += 1;
            let idx = batch_at(k);
            let batch = pairs.training_batch(&idx, 1, &augment, 0, k as u64, Device::Cpu).expect("batch");
            adam.zero_grad();
            let out = net.forward_t(&batch.images, true, Stages::default());
            let loss = out.merged.binary_cross_entropy::<Tensor>(&batch.voxels, None, Reduction::Mean) * 10.0;
            loss.backward();
            adam.step(1.0);
            loss.double_value(&[])
        })
    });

    let cache_root = tempfile::tempdir().expect("temp dir");
    for bf16 in [false, true] {
        if bf16 && !cpu_has_native_bf16() {
            eprintln!("this CPU has no native bf16: cached_bf16 would be emulated; skipped");
            continue;
        }
        let fingerprint = trunk_fingerprint(&vs, bf16).expect("fingerprint");
        let files: Vec<_> = (0..n).flat_map(|i| pairs.view_files(i).to_vec()).collect();
        let (cache, broken) =
            FeatureCache::fill(cache_root.path(), &net, &fingerprint, &files, bf16, Device::Cpu, &mut |_, _| {}).expect("cache");
        assert!(broken.is_empty());
        let name = if bf16 { "cached_bf16" } else { "cached_f32" };
        group.bench_function(BenchmarkId::new(name, BATCH), |b| {
            b.iter(|| {
                k += 1;
                let idx = batch_at(k);
                let paths: Vec<&Path> = idx.iter().map(|&i| pairs.view_files(i)[k % 4].as_path()).collect();
                let mut features = cache.read(&paths).expect("features").unsqueeze(1);
                if !bf16 {
                    features = features.to_kind(Kind::Float);
                }
                let voxels = pairs.voxel_batch(&idx, Device::Cpu).expect("voxels");
                adam.zero_grad();
                let out = with_cpu_bf16(bf16, || net.forward_from_trunk_t(&features, true, Stages::default()));
                let loss = out.merged.to_kind(Kind::Float).binary_cross_entropy::<Tensor>(&voxels, None, Reduction::Mean) * 10.0;
                loss.backward();
                adam.step(1.0);
                loss.double_value(&[])
            })
        });
    }

    group.throughput(Throughput::Elements(1));
    let image = pairs.eval_batch(&[0], 1, Device::Cpu).expect("batch").images;
    for bf16 in [false, true] {
        if bf16 && !cpu_has_native_bf16() {
            continue;
        }
        let name = if bf16 { "infer_bf16" } else { "infer_f32" };
        group.bench_function(BenchmarkId::new(name, 1), |b| {
            b.iter(|| with_cpu_bf16(bf16, || net.infer(&image)).volume().to_kind(Kind::Float).sum(Kind::Float).double_value(&[]))
        });
    }
    group.finish();
}

criterion_group!(benches, steps);
criterion_main!(benches);
