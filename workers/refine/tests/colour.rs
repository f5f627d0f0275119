//! View fitting and painting (src/colour.rs) on catalog objects rendered with the training
//! renderer at known views: the meshes are the refine stage's own (voxelized at 32^3, then
//! marching cubes and smoothing), as it would see a good prediction.

mod common;
use common::two_colour_step;

use mono2mesh_catalog::camera::ViewParams;
use mono2mesh_catalog::render::{render, Lighting, ShadedMesh};
use mono2mesh_catalog::studio::{render_shot, CatalogShot, ContactShadow};
use mono2mesh_catalog::voxelize::voxelize;
use mono2mesh_catalog::{generate, ColoredMesh, Rng};
use mono2mesh_core::Category;
use mono2mesh_geometry::{Mesh, VoxelGrid};
use mono2mesh_refine::colour::{fit_view, paint, render_coloured, silhouette, ColourError, FittedView, Mask, ViewCamera, ViewGrid};
use mono2mesh_refine::{build_mesh, RefineSettings};

/// The refine stage's mesh of a shape: 32^3 voxels, marching cubes, default smoothing.
fn predicted(mesh: &ColoredMesh) -> Mesh {
    build_mesh(&voxelize(&mesh.mesh, 32).unwrap(), &RefineSettings::default()).unwrap()
}

/// A 600 x 600 catalog product shot of `mesh` at `az`/`el` (distance and crop from the
/// catalog's sampler), and its mask (the render's alpha).
fn shot(mesh: &ColoredMesh, az: f32, el: f32, seed: u64) -> (image::RgbImage, Mask, CatalogShot) {
    let mut rng = Rng::new(seed);
    let mut shot = CatalogShot::sample(&mut rng, mesh);
    shot.view = ViewParams { azimuth_deg: az, elevation_deg: el, ..shot.view }.fit_in_frame(&mesh.mesh.positions, 0.02);
    let (fg, rgb) = render_shot(&ShadedMesh::new(mesh), &ContactShadow::new(mesh), &shot, 600, 600, 2);
    let mask = Mask::new(600, 600, fg.silhouette()).unwrap();
    (rgb, mask, shot)
}

fn azimuth_error(a: f32, b: f32) -> f32 {
    let d = (a - b).rem_euclid(360.0);
    d.min(360.0 - d)
}

#[test]
fn the_view_camera_is_the_catalog_camera() {
    let mut rng = Rng::new(3);
    for _ in 0..20 {
        let view = ViewParams::sample_catalog(&mut rng);
        let ours = ViewCamera::r2n2(view.azimuth_deg, view.elevation_deg, view.distance_ratio);
        let theirs = view.camera(137, 137);
        for _ in 0..10 {
            let p = [rng.range(-0.3, 0.3), rng.range(-0.3, 0.3), rng.range(-0.3, 0.3)];
            let (u, v, d) = ours.plane(p);
            let (x, y, depth) = theirs.project(p);
            let (ex, ey) = (68.5 + theirs.principal_dx + theirs.focal_px * u, 68.5 + theirs.principal_dy + theirs.focal_px * v);
            assert!((x - ex).abs() < 1e-3 && (y - ey).abs() < 1e-3 && (d - depth).abs() < 1e-5, "{view:?} {p:?}");
        }
    }
}

#[test]
fn fit_view_recovers_catalog_views_and_a_wrong_shape_scores_lower() {
    let grid = ViewGrid::default();
    let chair = generate(Category::Chair, 7, 2);
    let mesh = predicted(&chair.mesh);
    let cube = build_mesh(&VoxelGrid::centred_cube(32, 20), &RefineSettings::default()).unwrap();
    for (az, el, seed) in [(30.0, 25.0, 1), (215.0, 15.0, 2), (130.0, 35.0, 3)] {
        let (_, mask, _) = shot(&chair.mesh, az, el, seed);
        let fit = fit_view(&mesh, &mask, &grid).unwrap();
        println!("chair at {az}/{el}: fitted {:.1}/{:.1}, IoU {:.3}, {} views", fit.azimuth_deg, fit.elevation_deg, fit.silhouette_iou, fit.views_tried);
        assert!(azimuth_error(fit.azimuth_deg, az) <= grid.azimuth_step(), "{fit:?}");
        assert!((fit.elevation_deg - el).abs() <= grid.elevation_step(), "{fit:?}");
        // Not 1: the mesh is the voxelized, smoothed chair (a voxel is 4 canvas pixels, and
        // the legs and slats are one or two voxels thick).
        assert!(fit.silhouette_iou > 0.6, "{fit:?}");
        // The fitted camera puts the mesh's silhouette on the mask in the photo itself.
        let drawn = silhouette(&mesh, &fit.camera, 600, 600).unwrap();
        let both = drawn.data().iter().zip(mask.data()).filter(|(a, b)| **a && **b).count();
        let either = drawn.data().iter().zip(mask.data()).filter(|(a, b)| **a || **b).count();
        println!("  photo-space IoU {:.3}", both as f32 / either as f32);
        assert!(both as f32 / either as f32 > 0.55, "photo-space IoU {}", both as f32 / either as f32);

        let wrong = fit_view(&cube, &mask, &grid).unwrap();
        println!("  a box instead: IoU {:.3}", wrong.silhouette_iou);
        assert!(wrong.silhouette_iou < fit.silhouette_iou - 0.15, "{wrong:?} vs {fit:?}");
    }
}


#[test]
fn painting_puts_the_photos_colours_on_the_visible_side() {
    let object = two_colour_step();
    let mesh = predicted(&object);
    // From the front-right and above: the camera sees +X, -Z and the top.
    let view = ViewParams { azimuth_deg: 40.0, elevation_deg: 20.0, in_plane_deg: 0.0, distance_ratio: 0.7, fov: 25.0, crop_x: 0.0, crop_y: 0.0 };
    let camera = view.camera(600, 600);
    let fg = render(&ShadedMesh::new(&object), &camera, &Lighting::default(), 2);
    let mask = Mask::new(600, 600, fg.silhouette()).unwrap();
    let photo = mono2mesh_catalog::preview::over_background(&fg, [255, 255, 255]);
    let fit = fit_view(&mesh, &mask, &ViewGrid::default()).unwrap();
    println!("box: fitted {:.1}/{:.1} IoU {:.3}", fit.azimuth_deg, fit.elevation_deg, fit.silhouette_iou);
    let painted = paint(&mesh, &photo, &mask, &fit).unwrap();
    let colours = &painted.colours;
    assert_eq!(colours.per_vertex.len(), mesh.positions.len());
    let fraction = painted.painted_fraction();
    println!("painted {:.0}% of the vertices, base colour {:?}", 100.0 * fraction, colours.base_colour);
    assert!((0.2..0.75).contains(&fraction), "{fraction}");
    let (lo, hi) = mesh.bounds().unwrap();
    // Counts of painted vertices well inside each part (the voxel surface blurs the seams by
    // a voxel or two): (right colour, all).
    let (mut red, mut blue, mut hidden) = ((0, 0), (0, 0), 0);
    let facing = |n: [f32; 3]| n[0] * camera.position[0] + n[1] * camera.position[1] + n[2] * camera.position[2];
    let mut normals_mesh = mesh.clone();
    normals_mesh.recompute_normals();
    for (i, p) in mesh.positions.iter().enumerate() {
        let c = colours.per_vertex[i];
        if painted.painted[i] {
            if p[1] > 0.25 * hi[1] && p[0] > 0.25 * hi[0] {
                red.0 += usize::from(c[0] > 2.0 * c[2] && c[0] > 2.0 * c[1]);
                red.1 += 1;
            } else if p[1] < 0.25 * lo[1] {
                blue.0 += usize::from(c[2] > 2.0 * c[0]);
                blue.1 += 1;
            }
        } else {
            assert_eq!(c, colours.base_colour);
        }
        // Faces turned away from the camera are never painted.
        if facing(normals_mesh.normals[i]) < -0.3 {
            assert!(!painted.painted[i], "vertex {i} faces away but was painted");
            hidden += 1;
        }
    }
    println!("red part: {red:?}, blue part: {blue:?} (right colour, painted); {hidden} vertices face away");
    assert!(red.1 > 50 && blue.1 > 50 && hidden > 50);
    assert!(red.0 as f32 >= 0.97 * red.1 as f32 && blue.0 as f32 >= 0.97 * blue.1 as f32);
    // The base colour is the median object pixel: of a half-red, half-blue photo, neither
    // pure colour, and opaque.
    assert_eq!(colours.base_colour[3], 1.0);

    // The coloured render from the fitted view looks like the photo: red on top, blue below.
    let preview = render_coloured(&mesh, colours, &fit.camera, 600, 600, [255, 255, 255]).unwrap();
    let bb = mask.bbox().unwrap();
    let (cx, top, bottom) = ((bb[0] + bb[2]) / 2, bb[1] + (bb[3] - bb[1]) / 5, bb[3] - (bb[3] - bb[1]) / 8);
    let (t, b) = (preview.get_pixel(cx as u32, top as u32).0, preview.get_pixel(cx as u32, bottom as u32).0);
    assert!(t[0] > t[2] + 60 && b[2] > b[0] + 60, "top {t:?} bottom {b:?}");
}

#[test]
fn bad_input_is_an_error_not_a_panic() {
    let object = two_colour_step();
    let mesh = predicted(&object);
    let grid = ViewGrid::default();
    let empty = Mask::new(64, 64, vec![false; 64 * 64]).unwrap();
    assert_eq!(fit_view(&mesh, &empty, &grid).unwrap_err(), ColourError::EmptyMask);
    let one = Mask::new(1, 1, vec![true]).unwrap();
    assert!(matches!(fit_view(&mesh, &one, &grid), Err(ColourError::TinyObject { .. })));
    assert!(matches!(Mask::new(3, 3, vec![true; 8]), Err(ColourError::MaskData { .. })));
    let mut full = vec![false; 64 * 64];
    for y in 10..50 {
        for x in 20..40 {
            full[y * 64 + x] = true;
        }
    }
    let mask = Mask::new(64, 64, full).unwrap();
    assert_eq!(fit_view(&Mesh::default(), &mask, &grid).unwrap_err(), ColourError::EmptyMesh);
    let bad_index = Mesh { positions: vec![[0.0; 3]; 3], triangles: vec![[0, 1, 3]], normals: vec![] };
    assert!(matches!(fit_view(&bad_index, &mask, &grid), Err(ColourError::BadIndex { .. })));
    let nan = Mesh { positions: vec![[0.0; 3], [f32::NAN, 0.0, 0.0], [0.0, 1.0, 0.0]], triangles: vec![[0, 1, 2]], normals: vec![] };
    assert_eq!(fit_view(&nan, &mask, &grid).unwrap_err(), ColourError::NonFinite(1));
    // A mesh with no extent in any view.
    let point = Mesh { positions: vec![[0.1; 3]; 3], triangles: vec![[0, 1, 2]], normals: vec![] };
    assert_eq!(fit_view(&point, &mask, &grid).unwrap_err(), ColourError::NoSilhouette);
    for bad in [ViewGrid { azimuths: 0, ..ViewGrid::default() }, ViewGrid { elevations_deg: vec![95.0], ..ViewGrid::default() }, ViewGrid { canvas: 4, ..ViewGrid::default() }, ViewGrid { distance_ratio: f32::NAN, ..ViewGrid::default() }] {
        assert!(matches!(fit_view(&mesh, &mask, &bad), Err(ColourError::BadGrid(_))), "{bad:?}");
    }

    let fit = fit_view(&mesh, &mask, &grid).unwrap();
    let photo = image::RgbImage::new(64, 64);
    assert!(matches!(paint(&mesh, &image::RgbImage::new(1, 1), &mask, &fit), Err(ColourError::SizeMismatch { .. })));
    assert_eq!(paint(&mesh, &photo, &empty, &fit).unwrap_err(), ColourError::EmptyMask);
    assert_eq!(paint(&Mesh::default(), &photo, &mask, &fit).unwrap_err(), ColourError::EmptyMesh);
    let tiny_photo = image::RgbImage::new(1, 1);
    assert!(matches!(paint(&mesh, &tiny_photo, &one, &fit), Err(ColourError::TinyObject { .. })));
    // A camera far off the object paints nothing, without failing.
    let away = FittedView { camera: ViewCamera { offset: [-1e6, -1e6], ..fit.camera }, ..fit };
    let painted = paint(&mesh, &photo, &mask, &away).unwrap();
    assert_eq!(painted.painted_fraction(), 0.0);
    assert!(painted.colours.per_vertex.iter().all(|c| *c == painted.colours.base_colour));
}

#[test]
fn masks_from_gray_images_their_box_and_erosion() {
    let image = image::GrayImage::from_fn(40, 30, |x, y| image::Luma([if (5..25).contains(&x) && (8..20).contains(&y) { 200 } else { 90 }]));
    let mask = Mask::from_gray(&image, 128);
    assert_eq!((mask.width(), mask.height(), mask.count()), (40, 30, 20 * 12));
    assert_eq!(mask.bbox(), Some([5, 8, 25, 20]));
    let eroded = mask.eroded(2);
    assert_eq!(eroded.bbox(), Some([7, 10, 23, 18]));
    assert_eq!(eroded.count(), 16 * 8);
    assert_eq!(mask.eroded(0), mask);
    // Eroding away everything, and a round trip through an image.
    assert_eq!(mask.eroded(7).count(), 0);
    assert_eq!(Mask::from_gray(&mask.to_image(), 128), mask);
    assert_eq!(Mask::from_gray(&image, 250).bbox(), None);
}
