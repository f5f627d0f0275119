//! `mono2mesh mesh` and `mono2mesh voxels info` run as a user would, on a binvox file
//! the test writes, checked against the refine library's own output.

use std::path::Path;
use std::process::Command;

use mono2mesh_geometry::export::MeshFormat;
use mono2mesh_geometry::smooth::Smoothing;
use mono2mesh_geometry::VoxelGrid;
use mono2mesh_refine::{refine, RefineSettings};

fn write_test_binvox(path: &Path) -> VoxelGrid {
    let mut grid = VoxelGrid::new([20, 20, 20]);
    grid.translate = [-0.25, 0.5, 1.0];
    grid.scale = 2.0;
    for x in 0..20usize {
        for y in 0..20usize {
            for z in 0..20usize {
                let d = [x, y, z].map(|i| i as f32 + 0.5 - 10.0);
                // A squashed ball touching the grid's x faces (the padding must close it).
                if (d[0] / 10.0).powi(2) + (d[1] / 6.0).powi(2) + (d[2] / 7.0).powi(2) <= 1.0 {
                    grid.set(x, y, z, 1.0);
                }
            }
        }
    }
    grid.write_binvox(path, 0.5).unwrap();
    grid
}

fn mono2mesh(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_mono2mesh")).args(args).output().unwrap()
}

#[test]
fn mesh_writes_each_format_like_the_library() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("ball.binvox");
    let grid = write_test_binvox(&input);
    for (format, extra, smoothing) in [
        (MeshFormat::Glb, vec![], Smoothing::Laplacian { lambda: 0.5, iterations: 10 }),
        (MeshFormat::Obj, vec!["--smooth", "taubin", "--iterations", "3"], Smoothing::Taubin { lambda: 0.5, mu: -0.53, iterations: 3 }),
        (MeshFormat::Ply, vec!["--smooth", "none", "--iso", "0.4"], Smoothing::None),
        (MeshFormat::Obj, vec!["--smooth", "hc", "--iterations", "4"], Smoothing::Hc { alpha: 0.1, beta: 0.5, iterations: 4 }),
        (MeshFormat::Stl, vec!["--iterations", "2"], Smoothing::Laplacian { lambda: 0.5, iterations: 2 }),
    ] {
        let output_path = dir.path().join(format!("ball.{}", format.extension()));
        let mut args = vec!["mesh", input.to_str().unwrap(), "-o", output_path.to_str().unwrap()];
        args.extend(extra.iter().copied());
        let run = mono2mesh(&args);
        assert!(run.status.success(), "{format}: {}", String::from_utf8_lossy(&run.stderr));
        let iso = if format == MeshFormat::Ply { 0.4 } else { 0.5 };
        let expected = refine(&grid, &RefineSettings { iso, smoothing, formats: vec![format], ..RefineSettings::default() }).unwrap();
        assert_eq!(std::fs::read(&output_path).unwrap(), expected.files[0].bytes, "{format}");
        let summary: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
        assert_eq!(summary["stats"]["watertight"], true);
        assert_eq!(summary["stats"]["triangles"], expected.stats.triangles);
    }
}

#[test]
fn mesh_rejects_bad_input_with_a_message() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("ball.binvox");
    write_test_binvox(&input);
    let unknown = mono2mesh(&["mesh", input.to_str().unwrap(), "-o", dir.path().join("ball.fbx").to_str().unwrap()]);
    assert!(!unknown.status.success());
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("unknown mesh format"));

    let broken = dir.path().join("broken.binvox");
    std::fs::write(&broken, b"#binvox 1\ndim 4 4 4\ntranslate 0 0 0\nscale 1\ndata\n\x01\x05").unwrap();
    let run = mono2mesh(&["mesh", broken.to_str().unwrap(), "-o", dir.path().join("b.obj").to_str().unwrap()]);
    assert!(!run.status.success());
    assert!(String::from_utf8_lossy(&run.stderr).contains("truncated"));
    assert!(!dir.path().join("b.obj").exists());
}

#[test]
fn voxels_info_reports_the_header_and_count() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("ball.binvox");
    let grid = write_test_binvox(&input);
    let run = mono2mesh(&["voxels", "info", input.to_str().unwrap()]);
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let info: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
    assert_eq!(info["dims"], serde_json::json!([20, 20, 20]));
    assert_eq!(info["occupied"], grid.count_at_least(0.5));
    assert_eq!(info["translate"], serde_json::json!([-0.25, 0.5, 1.0]));
    assert_eq!(info["scale"], 2.0);
}
