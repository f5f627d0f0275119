//! Throughput of the catalog pipeline: one model = generate + voxelize + 24 renders
//! (the unit `dataset synth` runs per model on each core), plus its parts.

use criterion::{criterion_group, criterion_main, Criterion};
use mono2mesh_catalog::camera::ViewParams;
use mono2mesh_catalog::dataset::{build_model, SynthConfig};
use mono2mesh_catalog::render::{render, Lighting, ShadedMesh};
use mono2mesh_catalog::voxelize::voxelize;
use mono2mesh_catalog::{generate, Rng};
use mono2mesh_core::Category;

fn pipeline(c: &mut Criterion) {
    let cfg = SynthConfig { views: 24, ..SynthConfig::default() };
    let mut group = c.benchmark_group("catalog");
    group.sample_size(10);
    // One model of every category per iteration: the category mix of a full catalog.
    group.bench_function("model_24_views_x12_categories", |b| {
        b.iter(|| {
            for (i, &cat) in Category::ALL.iter().enumerate() {
                std::hint::black_box(build_model(cat, i as u64, &cfg).map(|o| o.images.len()).unwrap_or(0));
            }
        })
    });
    let chair = generate(Category::Chair, 0, 0);
    group.bench_function("voxelize_chair_32", |b| b.iter(|| voxelize(&chair.mesh.mesh, 32).map(|g| g.len()).unwrap_or(0)));
    let bike = generate(Category::Bicycle, 0, 0);
    let shaded = ShadedMesh::new(&bike.mesh);
    let view = ViewParams::sample(&mut Rng::new(1));
    let cam = view.camera(137, 137);
    group.bench_function("render_bicycle_137_ss3", |b| b.iter(|| render(&shaded, &cam, &Lighting::default(), 3).pixels.len()));
    group.finish();
}

criterion_group!(benches, pipeline);
criterion_main!(benches);
