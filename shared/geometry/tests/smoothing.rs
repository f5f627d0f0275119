//! Smoothing on a marching-cubes sphere: Laplacian shrinks, Taubin keeps the volume,
//! neither touches the topology.

mod common;

use std::f64::consts::PI;

use mono2mesh_geometry::marching_cubes::marching_cubes;
use mono2mesh_geometry::smooth::{smooth, Smoothing, DEFAULT_LAPLACIAN, DEFAULT_TAUBIN};

const RADIUS: f64 = 26.0;

fn analytic_volume() -> f64 {
    4.0 / 3.0 * PI * (RADIUS / 64.0).powi(3)
}

#[test]
fn laplacian_shrinks_and_taubin_keeps_volume_on_binary_sphere() {
    // Binary voxelisation, like ShapeNet's binvox and thresholded network output.
    let grid = common::sphere_grid(64, RADIUS, 1);
    let raw = marching_cubes(&grid, 0.5).unwrap();
    let raw_volume = raw.signed_volume();
    let raw_error = raw_volume / analytic_volume() - 1.0;
    assert!(raw_error.abs() < 0.03, "raw volume error {raw_error}");

    let mut laplacian = raw.clone();
    smooth(&mut laplacian, DEFAULT_LAPLACIAN).unwrap();
    let mut taubin = raw.clone();
    smooth(&mut taubin, DEFAULT_TAUBIN).unwrap();

    let laplacian_change = laplacian.signed_volume() / raw_volume - 1.0;
    let taubin_change = taubin.signed_volume() / raw_volume - 1.0;
    let taubin_error = taubin.signed_volume() / analytic_volume() - 1.0;
    eprintln!(
        "raw volume error {raw_error:+.4}; laplacian change {laplacian_change:+.4}; taubin change {taubin_change:+.4} (vs analytic {taubin_error:+.4})"
    );
    assert!(laplacian_change < -0.002, "laplacian did not shrink: {laplacian_change}");
    assert!(taubin_change.abs() < 0.02, "taubin changed volume by {taubin_change}");
    assert!(taubin_error.abs() < 0.02, "taubin volume error {taubin_error}");

    // Smoothing removes the staircase: the area drops towards the sphere's.
    let analytic_area = 4.0 * PI * (RADIUS / 64.0).powi(2);
    assert!((taubin.surface_area() / analytic_area - 1.0).abs() < (raw.surface_area() / analytic_area - 1.0).abs());

    for mesh in [&laplacian, &taubin] {
        assert_eq!(mesh.triangles, raw.triangles);
        assert!(mesh.is_watertight());
        assert_eq!(mesh.normals.len(), mesh.positions.len());
    }
}

#[test]
fn more_laplacian_iterations_shrink_more() {
    let grid = common::sphere_grid(24, 9.0, 1);
    let raw = marching_cubes(&grid, 0.5).unwrap();
    let volumes: Vec<f64> = [0u32, 5, 20]
        .iter()
        .map(|&iterations| {
            let mut mesh = raw.clone();
            smooth(&mut mesh, Smoothing::Laplacian { lambda: 0.5, iterations }).unwrap();
            mesh.signed_volume()
        })
        .collect();
    assert!(volumes[0] > volumes[1] && volumes[1] > volumes[2], "{volumes:?}");
}
