//! Photo colours (src/colour.rs) measured on the synthetic catalog, and the picture in
//! `docs/experiments/colour.md`:
//!
//! ```text
//! cargo run -p mono2mesh-refine --example colour_sheet \
//!     --config 'profile.dev.package.mono2mesh-refine.opt-level=3' \
//!     --config 'profile.dev.package.mono2mesh-refine.debug-assertions=false' \
//!     --config 'profile.dev.package.mono2mesh-refine.overflow-checks=false' \
//!     -- docs/experiments/colour.png
//! ```
//!
//! 1. view-fit accuracy over 20 catalog product shots (600 x 600, the catalog's own random
//!    views: azimuth 0-360, elevation 10-40) of 10 categories, on the refine stage's mesh of
//!    each object (32^3 voxels, marching cubes, smoothing);
//! 2. `fit_view` time for a 600 x 600 mask and a ~20k-triangle mesh (one thread);
//! 3. a sheet: photo | mask | fitted silhouette over the mask | painted mesh from the fitted view.

use std::time::Instant;

use image::imageops::{resize, FilterType};
use image::{Rgb, RgbImage};
use mono2mesh_catalog::studio::{render_shot, CatalogShot, ContactShadow};
use mono2mesh_catalog::{generate, render::ShadedMesh, voxelize::voxelize, ColoredMesh, Rng};
use mono2mesh_core::Category;
use mono2mesh_geometry::Mesh;
use mono2mesh_refine::colour::{fit_view, paint, render_coloured, silhouette, Mask, ViewGrid};
use mono2mesh_refine::{build_mesh, RefineSettings};

fn predicted(mesh: &ColoredMesh, resolution: usize) -> Mesh {
    build_mesh(&voxelize(&mesh.mesh, resolution).unwrap(), &RefineSettings::default()).unwrap()
}

fn photo_of(mesh: &ColoredMesh, seed: u64) -> (RgbImage, Mask, CatalogShot) {
    let shot = CatalogShot::sample(&mut Rng::new(seed), mesh);
    let (fg, rgb) = render_shot(&ShadedMesh::new(mesh), &ContactShadow::new(mesh), &shot, 600, 600, 2);
    (rgb, Mask::new(600, 600, fg.silhouette()).unwrap(), shot)
}

fn azimuth_error(a: f32, b: f32) -> f32 {
    let d = (a - b).rem_euclid(360.0);
    d.min(360.0 - d)
}

fn median(v: &mut [f32]) -> f32 {
    v.sort_by(f32::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let out = std::env::args().nth(1);
    let grid = ViewGrid::default();

    // 1. Accuracy over 20 views.
    let categories = [
        Category::Chair,
        Category::Sofa,
        Category::Car,
        Category::Aeroplane,
        Category::Diningtable,
        Category::Bottle,
        Category::Bicycle,
        Category::Tvmonitor,
        Category::Boat,
        Category::Motorbike,
    ];
    println!("| # | category | true az/el | fitted az/el | az err | el err | IoU | painted | fit ms |");
    println!("|---|---|---|---|---|---|---|---|---|");
    let (mut az_errs, mut el_errs, mut ious, mut times) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut within = 0;
    for i in 0..20u64 {
        let category = categories[i as usize % categories.len()];
        let model = generate(category, 2026, 100 + i);
        let mesh = predicted(&model.mesh, 32);
        let (photo, mask, shot) = photo_of(&model.mesh, 1000 + i);
        let t = Instant::now();
        let fit = fit_view(&mesh, &mask, &grid).unwrap();
        let ms = t.elapsed().as_secs_f32() * 1000.0;
        let painted = paint(&mesh, &photo, &mask, &fit).unwrap();
        let (ae, ee) = (azimuth_error(fit.azimuth_deg, shot.view.azimuth_deg), (fit.elevation_deg - shot.view.elevation_deg).abs());
        within += usize::from(ae <= grid.azimuth_step() && ee <= grid.elevation_step());
        println!(
            "| {i} | {category:?} | {:.0}/{:.0} | {:.1}/{:.1} | {ae:.1} | {ee:.1} | {:.3} | {:.0}% | {ms:.0} |",
            shot.view.azimuth_deg,
            shot.view.elevation_deg,
            fit.azimuth_deg,
            fit.elevation_deg,
            fit.silhouette_iou,
            100.0 * painted.painted_fraction()
        );
        az_errs.push(ae);
        el_errs.push(ee);
        ious.push(fit.silhouette_iou);
        times.push(ms);
    }
    println!(
        "\n{within}/20 within one grid step ({} deg azimuth, {} deg elevation); median azimuth error {:.1} deg, median elevation error {:.1} deg, median IoU {:.3}, median fit {:.0} ms",
        grid.azimuth_step(),
        grid.elevation_step(),
        median(&mut az_errs),
        median(&mut el_errs),
        median(&mut ious),
        median(&mut times)
    );

    // 2. Time on a ~20k-triangle mesh and a 600 x 600 mask.
    let chair = generate(Category::Chair, 2026, 7);
    let (photo, mask, _) = photo_of(&chair.mesh, 77);
    for resolution in [32, 64] {
        let mesh = predicted(&chair.mesh, resolution);
        let mut runs = Vec::new();
        let mut fit = None;
        for _ in 0..3 {
            let t = Instant::now();
            fit = Some(fit_view(&mesh, &mask, &grid).unwrap());
            runs.push(t.elapsed().as_secs_f32() * 1000.0);
        }
        let fit = fit.unwrap();
        let t = Instant::now();
        let painted = paint(&mesh, &photo, &mask, &fit).unwrap();
        let paint_ms = t.elapsed().as_secs_f32() * 1000.0;
        println!(
            "fit_view on a 600x600 mask, {} triangles ({resolution}^3 voxels): {:.0} ms (median of 3, one thread, {} views); paint {paint_ms:.0} ms ({:.0}% painted)",
            mesh.triangle_count(),
            median(&mut runs),
            fit.views_tried,
            100.0 * painted.painted_fraction()
        );
    }

    // 3. The sheet.
    let Some(out) = out else { return };
    const TILE: u32 = 180;
    let rows = [(Category::Chair, 2026u64, 3u64, 11u64), (Category::Car, 2026, 5, 12), (Category::Sofa, 2026, 9, 31)];
    let mut sheet = RgbImage::from_pixel(TILE * 4, TILE * rows.len() as u32, Rgb([255, 255, 255]));
    for (r, &(category, seed, index, shot_seed)) in rows.iter().enumerate() {
        let model = generate(category, seed, index);
        let mesh = predicted(&model.mesh, 32);
        let (photo, mask, shot) = photo_of(&model.mesh, shot_seed);
        let fit = fit_view(&mesh, &mask, &grid).unwrap();
        let painted = paint(&mesh, &photo, &mask, &fit).unwrap();
        println!(
            "sheet row {r}: {category:?}, true {:.0}/{:.0}, fitted {:.1}/{:.1}, IoU {:.3}",
            shot.view.azimuth_deg, shot.view.elevation_deg, fit.azimuth_deg, fit.elevation_deg, fit.silhouette_iou
        );
        let sil = silhouette(&mesh, &fit.camera, 600, 600).unwrap();
        let overlay = RgbImage::from_fn(600, 600, |x, y| {
            let (m, s) = (mask.get(x as usize, y as usize), sil.get(x as usize, y as usize));
            Rgb(match (m, s) {
                (true, true) => [70, 70, 70],
                (true, false) => [230, 90, 60],
                (false, true) => [60, 120, 230],
                (false, false) => [255, 255, 255],
            })
        });
        let mask_image = RgbImage::from_fn(600, 600, |x, y| if mask.get(x as usize, y as usize) { Rgb([0, 0, 0]) } else { Rgb([255, 255, 255]) });
        let coloured = render_coloured(&mesh, &painted.colours, &fit.camera, 600, 600, [255, 255, 255]).unwrap();
        for (c, tile) in [photo, mask_image, overlay, coloured].iter().enumerate() {
            let small = resize(tile, TILE, TILE, FilterType::Triangle);
            image::imageops::replace(&mut sheet, &small, (c as u32 * TILE) as i64, (r as u32 * TILE) as i64);
        }
    }
    sheet.save(&out).unwrap();
    println!("wrote {out}");
}
