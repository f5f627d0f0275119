//! HC smoothing against trimesh's `filter_humphrey` on a noisy marching-cubes blob.
//!
//! `data/hc_input.json` is our own marching cubes on a binary sphere with flipped surface
//! voxels (written by the ignored `write_reference_input` below); `data/hc_expected.json`
//! is what `trimesh.smoothing.filter_humphrey` (float64) makes of it for a few parameter
//! sets, written once by `data/make_hc_reference.py`. We smooth in float32, so agreement is
//! to ~1e-5 of the mesh size, not bit for bit.

use std::path::PathBuf;

use mono2mesh_geometry::marching_cubes::marching_cubes;
use mono2mesh_geometry::smooth::{smooth, Smoothing};
use mono2mesh_geometry::{Mesh, VoxelGrid};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
struct Input {
    positions: Vec<[f32; 3]>,
    triangles: Vec<[u32; 3]>,
}

#[derive(Deserialize)]
struct Case {
    alpha: f32,
    beta: f32,
    iterations: u32,
    positions: Vec<[f64; 3]>,
}

#[derive(Deserialize)]
struct Expected {
    trimesh_version: String,
    cases: Vec<Case>,
}

fn data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data").join(name)
}

/// Binary sphere of radius 5.5 voxels in a 16^3 grid over [-0.5, 0.5]^3, with about one in
/// six voxels near the surface flipped (deterministic): a small, irregular marching-cubes
/// mesh like the refine stage sees.
fn noisy_blob() -> VoxelGrid {
    let size = 16;
    let mut grid = VoxelGrid::new([size; 3]);
    grid.translate = [-0.5; 3];
    let mut state: u64 = 0x2545_F491_4F6C_DD1D;
    for x in 0..size {
        for y in 0..size {
            for z in 0..size {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let d = [x, y, z].map(|i| i as f64 + 0.5 - size as f64 / 2.0);
                let r = (d[0] * d[0] + d[1] * d[1] + d[2] * d[2]).sqrt();
                let mut inside = r <= 5.5;
                if (r - 5.5).abs() < 1.0 && state.is_multiple_of(6) {
                    inside = !inside;
                }
                grid.set(x, y, z, if inside { 1.0 } else { 0.0 });
            }
        }
    }
    grid
}

#[test]
#[ignore = "regenerates tests/data/hc_input.json; run by hand, then make_hc_reference.py"]
fn write_reference_input() {
    let mesh = marching_cubes(&noisy_blob(), 0.5).unwrap();
    assert!(mesh.edge_report().is_watertight_manifold());
    let input = Input { positions: mesh.positions, triangles: mesh.triangles };
    std::fs::write(data("hc_input.json"), serde_json::to_string(&input).unwrap()).unwrap();
}

#[test]
fn hc_matches_trimesh_filter_humphrey() {
    let input: Input = serde_json::from_str(&std::fs::read_to_string(data("hc_input.json")).unwrap()).unwrap();
    let expected: Expected = serde_json::from_str(&std::fs::read_to_string(data("hc_expected.json")).unwrap()).unwrap();
    let mesh = Mesh { positions: input.positions, triangles: input.triangles, normals: Vec::new() };
    let (lo, hi) = mesh.bounds().unwrap();
    let diagonal = (0..3).map(|a| ((hi[a] - lo[a]) as f64).powi(2)).sum::<f64>().sqrt();
    assert!(expected.cases.len() >= 3);
    for case in &expected.cases {
        let mut smoothed = mesh.clone();
        smooth(&mut smoothed, Smoothing::Hc { alpha: case.alpha, beta: case.beta, iterations: case.iterations }).unwrap();
        assert_eq!(smoothed.positions.len(), case.positions.len());
        let mut worst = 0f64;
        let mut moved = 0f64;
        for ((ours, theirs), before) in smoothed.positions.iter().zip(&case.positions).zip(&mesh.positions) {
            for a in 0..3 {
                worst = worst.max((ours[a] as f64 - theirs[a]).abs());
                moved = moved.max((theirs[a] - before[a] as f64).abs());
            }
        }
        eprintln!(
            "alpha {} beta {} iterations {}: max |ours - trimesh {}| = {:.2e} of the bbox diagonal (largest move {:.2e})",
            case.alpha,
            case.beta,
            case.iterations,
            expected.trimesh_version,
            worst / diagonal,
            moved / diagonal
        );
        assert!(worst <= 1e-5 * diagonal, "HC differs from trimesh by {worst} (diagonal {diagonal})");
        // The comparison means something only if the smoothing actually moved vertices.
        assert!(moved > 1e-3 * diagonal);
    }
}
