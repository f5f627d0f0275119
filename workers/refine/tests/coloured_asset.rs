//! The refine stage colouring its asset from the photo (`refine_asset` with
//! `AssetSpec::with_photo`), as the worker and `mono2mesh run` call it: the mask is found in
//! the photo itself (the framing crate's analysis), the view fitted, the vertices painted,
//! and every file, the preview and the quality score carry the result.

mod common;
use common::two_colour_step;
use std::sync::Arc;

use mono2mesh_catalog::camera::ViewParams;
use mono2mesh_catalog::render::{render, Lighting, ShadedMesh};
use mono2mesh_catalog::voxelize::voxelize;
use mono2mesh_catalog::ColoredMesh;
use mono2mesh_core::Category;
use mono2mesh_geometry::export::{self, MeshFormat};
use mono2mesh_refine::{refine_asset, AssetSpec, ColourReport, MaskSource, ReferencePhoto, RefineSettings};


/// A 600 x 600 photo of `object` from the front-right, above, on white.
fn photo_of(object: &ColoredMesh) -> image::RgbImage {
    let view = ViewParams { azimuth_deg: 40.0, elevation_deg: 20.0, in_plane_deg: 0.0, distance_ratio: 0.7, fov: 25.0, crop_x: 0.0, crop_y: 0.0 };
    let fg = render(&ShadedMesh::new(object), &view.camera(600, 600), &Lighting::default(), 2);
    mono2mesh_catalog::preview::over_background(&fg, [255, 255, 255])
}

/// The same view over a cluttered room-like scene (stripes of wood, wall and floor tones):
/// no plain backdrop, so the mask must come from the scene's colour model.
fn photo_in_scene(object: &ColoredMesh) -> image::RgbImage {
    let view = ViewParams { azimuth_deg: 40.0, elevation_deg: 20.0, in_plane_deg: 0.0, distance_ratio: 0.7, fov: 25.0, crop_x: 0.0, crop_y: 0.0 };
    let fg = render(&ShadedMesh::new(object), &view.camera(600, 600), &Lighting::default(), 2);
    let backdrop: Vec<[f32; 3]> = (0..600u32 * 600)
        .map(|i| {
            let (x, y) = (i % 600, i / 600);
            let noise = (((x.wrapping_mul(2654435761) ^ y.wrapping_mul(40503)) >> 7) % 20) as f32;
            match (x / 37 + y / 29) % 4 {
                0 => [190.0 + noise, 170.0, 120.0],
                1 => [200.0, 200.0 - noise, 190.0],
                2 => [120.0 + noise, 100.0, 80.0],
                _ => [150.0, 160.0, 150.0 + noise],
            }
        })
        .collect();
    mono2mesh_catalog::studio::composite(&fg, &backdrop)
}

/// How many vertex colours the GLB holds (`None`: no `COLOR_0`).
fn glb_colours(bytes: &[u8]) -> Option<usize> {
    let gltf = gltf::Gltf::from_slice(bytes).unwrap();
    let blob = gltf.blob.clone().unwrap();
    let primitive = gltf.document.meshes().next().unwrap().primitives().next().unwrap();
    let reader = primitive.reader(|buffer| match buffer.source() {
        gltf::buffer::Source::Bin => Some(&blob[..]),
        gltf::buffer::Source::Uri(_) => None,
    });
    reader.read_colors(0).map(|c| c.into_rgba_f32().count())
}

#[test]
fn the_asset_is_coloured_from_its_photo_with_the_fit_in_its_quality() {
    let object = two_colour_step();
    let grid = voxelize(&object.mesh, 32).unwrap();
    let photo = Arc::new(ReferencePhoto::from_rgb(photo_of(&object)));
    assert!(photo.mask.is_ok(), "a plain white backdrop gives a mask: {:?}", photo.mask.as_ref().err());
    let settings = RefineSettings::default();
    let spec = AssetSpec::for_category(Some(Category::Sofa)).with_photo(Some(photo));
    let output = refine_asset(&grid, &settings, &spec).unwrap();

    let Some(ColourReport::Painted { azimuth_deg, silhouette_iou, mask_coverage, painted_fraction, base_colour, mask, .. }) =
        output.stats.colour.clone()
    else {
        panic!("not painted: {:?}", output.stats.colour)
    };
    assert_eq!(mask, MaskSource::Border);
    println!("fitted azimuth {azimuth_deg}, IoU {silhouette_iou:.3}, coverage {mask_coverage:.3}, painted {painted_fraction:.2}, base {base_colour:?}");
    assert!((azimuth_deg - 40.0).abs() <= 15.0, "{azimuth_deg}");
    assert!(silhouette_iou > 0.8 && mask_coverage > 0.8, "{silhouette_iou} {mask_coverage}");
    assert!((0.2..0.75).contains(&painted_fraction), "{painted_fraction}");
    // The quality score holds the fit beside the mesh checks.
    let quality = &output.stats.quality;
    assert_eq!(quality.silhouette_iou, Some(f64::from(silhouette_iou)));
    assert_eq!(quality.mask_coverage, Some(f64::from(mask_coverage)));

    // Every file carries the colours: red and blue both present.
    let colours = output.colours.as_ref().expect("colours");
    let reds = colours.per_vertex.iter().filter(|c| c[0] > 2.0 * c[2]).count();
    let blues = colours.per_vertex.iter().filter(|c| c[2] > 2.0 * c[0]).count();
    assert!(reds > 30 && blues > 30, "red {reds} blue {blues}");
    for file in &output.files {
        assert_eq!(file.bytes, export::encode_coloured(&output.mesh, colours, file.format).unwrap(), "{:?}", file.format);
    }
    let glb = output.files.iter().find(|f| f.format == MeshFormat::Glb).unwrap();
    assert_eq!(glb_colours(&glb.bytes), Some(output.mesh.vertex_count()));

    // The preview shows the colours: three tiles with red and blue pixels in them.
    let preview = image::load_from_memory(output.preview.as_ref().expect("preview")).unwrap().to_rgb8();
    assert_eq!(preview.dimensions(), (768, 256));
    let red_px = preview.pixels().filter(|p| p[0] > 150 && p[1] < 90 && p[2] < 90).count();
    let blue_px = preview.pixels().filter(|p| p[2] > 150 && p[0] < 90).count();
    assert!(red_px > 500 && blue_px > 500, "red {red_px} blue {blue_px}");

    // Colour switched off: grey files, byte for byte the uncoloured writers', and the reason.
    let grey = refine_asset(&grid, &RefineSettings { colour: false, preview: false, ..settings.clone() }, &spec).unwrap();
    assert_eq!(grey.stats.colour, Some(ColourReport::Skipped { reason: "refine.colour is off".into() }));
    assert!(grey.colours.is_none() && grey.preview.is_none());
    for file in &grey.files {
        assert_eq!(file.bytes, export::encode(&grey.mesh, file.format).unwrap());
    }
    assert_eq!(grey.stats.quality.silhouette_iou, None);
    // The same mesh either way: colour changes no vertex.
    assert_eq!(grey.mesh, output.mesh);
}

#[test]
fn levels_of_detail_keep_the_colours_the_pose_and_the_size() {
    let object = two_colour_step();
    let grid = voxelize(&object.mesh, 32).unwrap();
    let photo = Arc::new(ReferencePhoto::from_rgb(photo_of(&object)));
    let spec = AssetSpec::for_category(Some(Category::Sofa)).with_photo(Some(photo));
    let settings = RefineSettings { lods: vec![0.5, 0.2], formats: vec![MeshFormat::Glb], ..RefineSettings::default() };
    let output = refine_asset(&grid, &settings, &spec).unwrap();
    let full = output.stats.triangles;
    assert_eq!(output.lods.len(), 2);
    assert_eq!(output.stats.lods.iter().map(|l| l.level).collect::<Vec<_>>(), vec![1, 2]);
    let size = output.stats.scale.placement.size_m;
    for (lod, report) in output.lods.iter().zip(&output.stats.lods) {
        println!("LOD {}: {} of {full} triangles, {} bytes", report.level, report.triangles, report.bytes);
        assert!(report.triangles as f32 <= (full as f32 * report.fraction).round() && report.triangles > 0, "{report:?}");
        assert_eq!(report.bytes, lod.bytes.len());
        let gltf = gltf::Gltf::from_slice(&lod.bytes).unwrap();
        let blob = gltf.blob.clone().unwrap();
        let primitive = gltf.document.meshes().next().unwrap().primitives().next().unwrap();
        let reader = primitive.reader(|_| Some(&blob[..]));
        let positions: Vec<[f32; 3]> = reader.read_positions().unwrap().collect();
        let colours: Vec<[f32; 4]> = reader.read_colors(0).expect("LODs keep the colours").into_rgba_f32().collect();
        assert_eq!(colours.len(), positions.len());
        assert!(colours.iter().any(|c| c[0] > 2.0 * c[2]) && colours.iter().any(|c| c[2] > 2.0 * c[0]), "red and blue survive");
        // The same pose and size as the asset: on the ground, centred, the stated height.
        let lo = (0..3).map(|a| positions.iter().map(|p| p[a]).fold(f32::INFINITY, f32::min)).collect::<Vec<_>>();
        let hi = (0..3).map(|a| positions.iter().map(|p| p[a]).fold(f32::NEG_INFINITY, f32::max)).collect::<Vec<_>>();
        assert!(lo[1].abs() < 1e-5 && (lo[0] + hi[0]).abs() < 1e-4 && (lo[2] + hi[2]).abs() < 1e-4, "{lo:?} {hi:?}");
        assert!(((hi[1] - lo[1]) as f64 - size[1]).abs() < 1e-4, "height {} vs {}", hi[1] - lo[1], size[1]);
    }
    let bad = RefineSettings { lods: vec![1.5], ..RefineSettings::default() };
    assert!(bad.validate().unwrap_err().contains("lods"));
}

#[test]
fn an_object_in_a_busy_scene_is_coloured_from_the_scene_colour_model() {
    let object = two_colour_step();
    let grid = voxelize(&object.mesh, 32).unwrap();
    let photo = Arc::new(ReferencePhoto::from_rgb(photo_in_scene(&object)));
    let spec = AssetSpec::for_category(Some(Category::Sofa)).with_photo(Some(photo));
    let output = refine_asset(&grid, &RefineSettings::default(), &spec).unwrap();
    let Some(ColourReport::Painted { silhouette_iou, mask, .. }) = output.stats.colour.clone() else {
        panic!("not painted: {:?}", output.stats.colour)
    };
    println!("scene: silhouette IoU {silhouette_iou:.3}");
    assert_eq!(mask, MaskSource::Scene);
    assert!(silhouette_iou > 0.6, "{silhouette_iou}");
    let colours = output.colours.as_ref().unwrap();
    let reds = colours.per_vertex.iter().filter(|c| c[0] > 2.0 * c[2]).count();
    let blues = colours.per_vertex.iter().filter(|c| c[2] > 2.0 * c[0]).count();
    assert!(reds > 30 && blues > 30, "red {reds} blue {blues}");
}

#[test]
fn a_photo_without_a_separable_object_leaves_the_asset_grey_with_the_reason() {
    let object = two_colour_step();
    let grid = voxelize(&object.mesh, 32).unwrap();
    // Noise alike everywhere: no plain backdrop, and no middle unlike the border.
    let busy = image::RgbImage::from_fn(600, 600, |x, y| {
        let v = ((x.wrapping_mul(2654435761) ^ y.wrapping_mul(40503)) >> 5) as u8;
        image::Rgb([v, v.wrapping_mul(3), v.wrapping_mul(7)])
    });
    let blank = image::RgbImage::from_pixel(600, 600, image::Rgb([255, 255, 255]));
    for (photo, why) in [(busy, "busy background"), (blank, "no separable object")] {
        let spec = AssetSpec::for_category(Some(Category::Sofa)).with_photo(Some(Arc::new(ReferencePhoto::from_rgb(photo))));
        let output = refine_asset(&grid, &RefineSettings::default(), &spec).unwrap();
        match &output.stats.colour {
            Some(ColourReport::Skipped { reason }) => assert!(reason.contains(why), "{reason}"),
            other => panic!("expected a skip for {why}: {other:?}"),
        }
        assert!(output.colours.is_none());
        let glb = output.files.iter().find(|f| f.format == MeshFormat::Glb).unwrap();
        assert_eq!(glb_colours(&glb.bytes), None);
        assert!(output.preview.is_some(), "an uncoloured asset still has its preview");
    }
    // A gated image that does not decode is an error of the stage, not a grey asset.
    assert!(ReferencePhoto::decode(b"not a png").is_err());
}
