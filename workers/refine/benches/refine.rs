//! What colouring costs the refine stage: `refine_asset` on a catalog chair's 32^3 grid,
//! grey without a preview (the stage as it was), grey with the preview, and coloured from
//! a 600 x 600 product shot with the preview (the default). The ratios against the first
//! are the figures to quote (docs/experiments/colour.md); absolute times depend on the
//! machine and its load.
//!
//! `cargo bench --workspace --bench refine` (or `--profile dev` to reuse a test build).

use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion};
use mono2mesh_catalog::studio::{render_shot, CatalogShot, ContactShadow};
use mono2mesh_catalog::{generate, render::ShadedMesh, voxelize::voxelize, Rng};
use mono2mesh_core::Category;
use mono2mesh_geometry::export::MeshFormat;
use mono2mesh_refine::{refine_asset, AssetSpec, ColourReport, ReferencePhoto, RefineSettings};

fn bench(c: &mut Criterion) {
    let model = generate(Category::Chair, 11, 4);
    let shot = CatalogShot::sample(&mut Rng::new(5), &model.mesh);
    let (_, photo) = render_shot(&ShadedMesh::new(&model.mesh), &ContactShadow::new(&model.mesh), &shot, 600, 600, 2);
    let grid = voxelize(&model.mesh.mesh, 32).unwrap();
    let glb = RefineSettings { formats: vec![MeshFormat::Glb], ..RefineSettings::default() };
    let plain = AssetSpec::for_category(Some(Category::Chair));
    let photo = Arc::new(ReferencePhoto::from_rgb(photo));
    let coloured = plain.clone().with_photo(Some(photo.clone()));
    let check = refine_asset(&grid, &glb, &coloured).unwrap();
    assert!(matches!(check.stats.colour, Some(ColourReport::Painted { .. })), "{:?}", check.stats.colour);

    let mut group = c.benchmark_group("refine_chair_32");
    group.sample_size(20);
    group.bench_function("grey_no_preview", |b| {
        let settings = RefineSettings { preview: false, colour: false, ..glb.clone() };
        b.iter(|| refine_asset(&grid, &settings, &plain).unwrap())
    });
    group.bench_function("grey_preview", |b| {
        let settings = RefineSettings { colour: false, ..glb.clone() };
        b.iter(|| refine_asset(&grid, &settings, &plain).unwrap())
    });
    group.bench_function("coloured_preview", |b| b.iter(|| refine_asset(&grid, &glb, &coloured).unwrap()));
    group.bench_function("mask_from_gated_image", |b| {
        let rgb = photo.rgb.clone();
        b.iter(|| ReferencePhoto::from_rgb(rgb.clone()))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
