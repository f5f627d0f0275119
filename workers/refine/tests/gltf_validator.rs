//! Every GLB the refine library writes passes the Khronos glTF Validator with no error and
//! no warning (infos and hints are printed, not failed on). The pinned validator lives in
//! `tools/gltf-validator` (installed by `scripts/setup.sh --tests`) and runs under Node on
//! GLBs made from real voxel grids (`../shared/testdata/binvox`, when present) and from a
//! generated probability grid, through the same `refine_asset` the worker calls, and on GLBs
//! with photo colours (`COLOR_0` and a material) made by the stage from a product shot. Without
//! Node or the validator package the test prints SKIPPED and checks nothing.

use std::path::{Path, PathBuf};
use mono2mesh_testkit::gltf_validator::{assert_clean, validate, validator};

use mono2mesh_core::{Category, RealSize};
use mono2mesh_geometry::export::MeshFormat;
use mono2mesh_geometry::smooth;
use mono2mesh_geometry::VoxelGrid;
use mono2mesh_refine::{refine_asset, AssetSpec, RefineSettings};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A soft (0..1) probability ball with a handle-like bar, the kind of grid Pix2Vox writes.
fn generated_grid() -> VoxelGrid {
    let mut grid = VoxelGrid::new([32; 3]);
    grid.translate = [-0.5; 3];
    for x in 0..32 {
        for y in 0..32 {
            for z in 0..32 {
                let c = grid.voxel_center(x, y, z);
                let ball = 1.0 - ((c[0] * c[0] + c[1] * c[1] + c[2] * c[2]).sqrt() - 0.25) * 8.0;
                let bar = if c[1].abs() < 0.05 && c[2].abs() < 0.05 && c[0].abs() < 0.45 { 0.9 } else { 0.0 };
                grid.set(x, y, z, ball.clamp(0.0, 1.0).max(bar));
            }
        }
    }
    grid
}

/// GLBs with photo colours: a catalog chair's product shot, coloured by the stage itself
/// (`refine_asset` with the photo: mask found in the photo, view fitted, painted, placed),
/// the same mesh with its base colour alone, and its two levels of detail.
fn coloured_glbs() -> Vec<(String, Vec<u8>)> {
    use mono2mesh_catalog::studio::{render_shot, CatalogShot, ContactShadow};
    use mono2mesh_catalog::{generate, render::ShadedMesh, voxelize::voxelize, Rng};
    use mono2mesh_geometry::colour::Colours;
    use mono2mesh_geometry::export::encode_coloured;
    use mono2mesh_refine::{ColourReport, ReferencePhoto};

    let model = generate(Category::Chair, 11, 4);
    let shot = CatalogShot::sample(&mut Rng::new(5), &model.mesh);
    let (_, photo) = render_shot(&ShadedMesh::new(&model.mesh), &ContactShadow::new(&model.mesh), &shot, 400, 400, 2);
    let grid = voxelize(&model.mesh.mesh, 32).unwrap();
    let settings = RefineSettings { formats: vec![MeshFormat::Glb], lods: vec![0.5, 0.2], ..RefineSettings::default() };
    let spec = AssetSpec::for_category(Some(Category::Chair)).with_photo(Some(std::sync::Arc::new(ReferencePhoto::from_rgb(photo))));
    let output = refine_asset(&grid, &settings, &spec).unwrap();
    assert!(matches!(output.stats.colour, Some(ColourReport::Painted { .. })), "{:?}", output.stats.colour);
    let base = output.colours.as_ref().unwrap().base_colour;
    let mut glbs = vec![
        ("chair-photo-colours".to_string(), output.files[0].bytes.clone()),
        ("chair-base-colour".to_string(), encode_coloured(&output.mesh, &Colours::uniform(base), MeshFormat::Glb).unwrap()),
    ];
    // Its levels of detail, coloured too.
    glbs.extend(output.lods.iter().map(|lod| (format!("chair-photo-colours-lod{}", lod.level), lod.bytes.clone())));
    glbs
}

#[test]
fn every_glb_refine_writes_passes_the_khronos_validator() {
    let script = match validator() {
        Ok(script) => script,
        Err(why) => {
            println!("SKIPPED every_glb_refine_writes_passes_the_khronos_validator: {why}");
            return;
        }
    };
    let glb_only = RefineSettings { formats: vec![MeshFormat::Glb], ..RefineSettings::default() };
    let chair = AssetSpec::for_category(Some(Category::Chair));
    let boxed = chair.with_size(Some(RealSize::dimensions(450.0, 900.0, 520.0).unwrap()));
    let mut cases: Vec<(String, VoxelGrid, RefineSettings, AssetSpec)> = vec![
        ("generated-default".into(), generated_grid(), glb_only.clone(), AssetSpec::for_category(Some(Category::Bottle))),
        ("generated-raw".into(), generated_grid(), RefineSettings { smoothing: smooth::Smoothing::None, ..glb_only.clone() }, AssetSpec::default()),
        ("generated-hc-capped".into(), generated_grid(), RefineSettings { smoothing: smooth::DEFAULT_HC, max_triangles: 300, ..glb_only.clone() }, boxed),
    ];
    let testdata = workspace().join("../shared/testdata/binvox");
    for (name, category) in [("chair", Category::Chair), ("8a85", Category::Car)] {
        let path = testdata.join(format!("{name}.binvox"));
        if !path.is_file() {
            println!("SKIPPED the real {name}.binvox cases: {} is absent", path.display());
            continue;
        }
        let grid = VoxelGrid::read_binvox(&path).unwrap();
        let spec = AssetSpec::for_category(Some(category));
        cases.push((format!("{name}-default"), grid.clone(), glb_only.clone(), spec.clone()));
        cases.push((format!("{name}-box"), grid.clone(), glb_only.clone(), spec.clone().with_size(Some(RealSize::dimensions(450.0, 900.0, 520.0).unwrap()))));
        cases.push((format!("{name}-capped-500"), grid, RefineSettings { max_triangles: 500, ..glb_only.clone() }, spec));
    }

    let dir = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    for (name, grid, settings, spec) in &cases {
        let output = refine_asset(grid, settings, spec).unwrap();
        let path = dir.path().join(format!("{name}.glb"));
        std::fs::write(&path, &output.files[0].bytes).unwrap();
        println!(
            "{name}: {} triangles (from {}), {} bytes, size {:?} m, watertight {}",
            output.stats.triangles,
            output.stats.polycount.triangles_before,
            output.files[0].bytes.len(),
            output.stats.scale.placement.size_m,
            output.stats.watertight
        );
        files.push(path);
    }
    // Photo colours (src/colour.rs): a catalog chair's photo painted onto its mesh, placed
    // like every asset, with COLOR_0 and a material; and a base colour alone.
    for (name, glb) in coloured_glbs() {
        let path = dir.path().join(format!("{name}.glb"));
        println!("{name}: {} bytes", glb.len());
        std::fs::write(&path, glb).unwrap();
        files.push(path);
    }
    let (status, reports) = validate(&script, &files);
    assert_eq!(reports.len(), files.len());
    assert_clean(&reports);
    assert_eq!(status, 0);

    // The harness can fail: a GLB cut short is reported as an error with status 1.
    let cut = dir.path().join("cut.glb");
    let bytes = std::fs::read(&files[0]).unwrap();
    std::fs::write(&cut, &bytes[..bytes.len() - 8]).unwrap();
    let (status, reports) = validate(&script, &[cut]);
    assert_eq!(status, 1);
    assert!(reports[0]["errors"].as_u64().unwrap() > 0, "{}", reports[0]);
}
