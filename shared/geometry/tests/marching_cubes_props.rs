//! Marching cubes on real shapes and random grids: closed, manifold, outward, with the
//! topology the face rule promises (inside 6-connected, outside 18-connected).

mod common;

use std::f64::consts::PI;

use mono2mesh_geometry::marching_cubes::{marching_cubes, marching_cubes_parallel};
use mono2mesh_geometry::VoxelGrid;
use proptest::prelude::*;

/// Connected components of the padded grid's inside (`want_inside`) or outside voxels,
/// with 6-connectivity (face neighbours) or 18 (face + edge neighbours).
fn count_components(grid: &VoxelGrid, want_inside: bool, eighteen: bool) -> usize {
    let [nx, ny, nz] = grid.dims;
    let p = [nx + 2, ny + 2, nz + 2];
    let at = |x: usize, y: usize, z: usize| -> bool {
        let inside = x >= 1 && y >= 1 && z >= 1 && x <= nx && y <= ny && z <= nz && grid.get(x - 1, y - 1, z - 1) >= 0.5;
        inside == want_inside
    };
    let index = |x: usize, y: usize, z: usize| (x * p[1] + y) * p[2] + z;
    let mut seen = vec![false; p[0] * p[1] * p[2]];
    let mut offsets = Vec::new();
    for dx in -1i64..=1 {
        for dy in -1i64..=1 {
            for dz in -1i64..=1 {
                let manhattan = dx.abs() + dy.abs() + dz.abs();
                if manhattan == 1 || (eighteen && manhattan == 2) {
                    offsets.push([dx, dy, dz]);
                }
            }
        }
    }
    let mut components = 0;
    for x in 0..p[0] {
        for y in 0..p[1] {
            for z in 0..p[2] {
                if seen[index(x, y, z)] || !at(x, y, z) {
                    continue;
                }
                components += 1;
                seen[index(x, y, z)] = true;
                let mut stack = vec![[x, y, z]];
                while let Some(c) = stack.pop() {
                    for o in &offsets {
                        let n = [0, 1, 2].map(|a| c[a] as i64 + o[a]);
                        if (0..3).any(|a| n[a] < 0 || n[a] >= p[a] as i64) {
                            continue;
                        }
                        let [qx, qy, qz] = n.map(|v| v as usize);
                        if !seen[index(qx, qy, qz)] && at(qx, qy, qz) {
                            seen[index(qx, qy, qz)] = true;
                            stack.push([qx, qy, qz]);
                        }
                    }
                }
            }
        }
    }
    components
}

fn check_topology(grid: &VoxelGrid) -> Result<(), TestCaseError> {
    let mesh = marching_cubes(grid, 0.5).unwrap();
    let report = mesh.edge_report();
    prop_assert!(report.is_watertight_manifold(), "{report:?}");
    let inside = count_components(grid, true, false);
    let outside = count_components(grid, false, true);
    // Every closed surface in space separates: regions and surfaces form a tree, so there is
    // one surface per region beyond the first, each bounding an inside component from
    // outside (positive volume) or enclosing a cavity (negative volume).
    let volumes = mesh.component_volumes();
    prop_assert_eq!(volumes.len(), inside + outside - 1);
    prop_assert_eq!(volumes.iter().filter(|&&v| v > 0.0).count(), inside);
    prop_assert_eq!(volumes.iter().filter(|&&v| v < 0.0).count(), outside - 1);
    if inside > 0 {
        prop_assert!(mesh.signed_volume() > 0.0);
    }
    // Each closed orientable surface has chi = 2 - 2 genus: the total is even and at most 2 per surface.
    let chi = mesh.euler_characteristic();
    prop_assert_eq!(chi.rem_euclid(2), 0);
    prop_assert!(chi <= 2 * volumes.len() as i64, "chi {} for {} surfaces", chi, volumes.len());
    // Normals: unit length and, summed with area weights, pointing outward on average.
    prop_assert_eq!(mesh.normals.len(), mesh.positions.len());
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn random_grids_give_closed_outward_manifolds(
        dims in [1usize..11, 1usize..11, 1usize..11],
        density in prop_oneof![Just(0.1), Just(0.3), Just(0.5), Just(0.7), Just(0.95)],
        seed in any::<u64>(),
    ) {
        check_topology(&common::random_grid(dims, density, seed))?;
    }

    #[test]
    fn random_probability_grids_stay_closed(
        dims in [1usize..9, 1usize..9, 1usize..9],
        seed in any::<u64>(),
        iso in prop_oneof![Just(0.5f32), 0.0f32..1.0],
    ) {
        // Continuous values: vertices move along edges but the topology rules are the same.
        let mut grid = common::random_grid(dims, 0.5, seed);
        for (i, v) in grid.data.iter_mut().enumerate() {
            *v = ((i as u64).wrapping_mul(seed | 1) % 997) as f32 / 997.0;
        }
        let mesh = marching_cubes(&grid, iso).unwrap();
        prop_assert!(mesh.is_watertight(), "{:?}", mesh.edge_report());
        prop_assert_eq!(marching_cubes_parallel(&grid, iso).unwrap(), mesh);
    }
}

#[test]
fn full_grid_closes_at_the_border() {
    let mut grid = VoxelGrid::new([4, 5, 6]);
    grid.data.fill(1.0);
    grid.scale = 2.0;
    grid.translate = [10.0, -3.0, 0.5];
    let mesh = marching_cubes(&grid, 0.5).unwrap();
    assert!(mesh.is_watertight());
    assert_eq!(mesh.euler_characteristic(), 2);
    // Border crossings sit midway between the last voxel centre and the padding, i.e. on
    // the grid's boundary: the box spans translate .. translate + scale * dims / dims.
    let (lo, hi) = mesh.bounds().unwrap();
    for a in 0..3 {
        assert!((lo[a] - grid.translate[a]).abs() < 1e-5, "axis {a}: {lo:?}");
        assert!((hi[a] - (grid.translate[a] + grid.scale)).abs() < 1e-5, "axis {a}: {hi:?}");
    }
}

#[test]
fn hollow_box_has_inner_inverted_shell() {
    let mut grid = VoxelGrid::new([5, 5, 5]);
    grid.data.fill(1.0);
    grid.set(2, 2, 2, 0.0);
    let mesh = marching_cubes(&grid, 0.5).unwrap();
    let mut volumes = mesh.component_volumes();
    volumes.sort_by(f64::total_cmp);
    assert_eq!(volumes.len(), 2);
    assert!(volumes[0] < 0.0 && volumes[1] > 0.0);
    assert_eq!(mesh.euler_characteristic(), 4);
}

#[test]
fn torus_has_genus_one() {
    let mut grid = VoxelGrid::new([5, 5, 3]);
    for x in 1..4 {
        for y in 1..4 {
            if (x, y) != (2, 2) {
                grid.set(x, y, 1, 1.0);
            }
        }
    }
    let mesh = marching_cubes(&grid, 0.5).unwrap();
    assert!(mesh.is_watertight());
    assert_eq!(mesh.euler_characteristic(), 0);
}

#[test]
fn sphere_volume_and_area_match_analytic() {
    let radius = 26.0;
    let grid = common::sphere_grid(64, radius, 4);
    let mesh = marching_cubes(&grid, 0.5).unwrap();
    assert!(mesh.is_watertight());
    assert_eq!(mesh.euler_characteristic(), 2);
    let r = radius / 64.0; // model units: scale 1 over 64 voxels
    let volume_error = mesh.signed_volume() / (4.0 / 3.0 * PI * r.powi(3)) - 1.0;
    let area_error = mesh.surface_area() / (4.0 * PI * r * r) - 1.0;
    eprintln!("sphere r={radius} vox: volume error {volume_error:+.4}, area error {area_error:+.4}");
    assert!(volume_error.abs() < 0.03, "volume error {volume_error}");
    assert!(area_error.abs() < 0.03, "area error {area_error}");
}

#[test]
fn real_chair_meshes_cleanly() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/testdata/binvox/chair.binvox");
    if !path.exists() {
        eprintln!("SKIPPED: {} is absent", path.display());
        return;
    }
    let grid = VoxelGrid::read_binvox(&path).unwrap();
    let mesh = marching_cubes(&grid, 0.5).unwrap();
    assert!(mesh.is_watertight());
    // Placed in the file's model space: inside [translate, translate + scale].
    let (lo, hi) = mesh.bounds().unwrap();
    for a in 0..3 {
        assert!(lo[a] >= grid.translate[a] && hi[a] <= grid.translate[a] + grid.scale);
    }
    assert!(mesh.signed_volume() > 0.0);
}
