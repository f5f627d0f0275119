//! Grid builders shared by the integration tests.
#![allow(dead_code)]

use mono2mesh_geometry::VoxelGrid;

/// Solid sphere of `radius` voxels centred in a `size`^3 unit-scale grid. Each voxel holds
/// the fraction of `samples`^3 sub-points inside the sphere (a partial-volume
/// voxelisation; `samples == 1` gives the plain binary one).
pub fn sphere_grid(size: usize, radius: f64, samples: usize) -> VoxelGrid {
    let mut grid = VoxelGrid::new([size; 3]);
    let centre = size as f64 / 2.0;
    for x in 0..size {
        for y in 0..size {
            for z in 0..size {
                let mut hits = 0;
                for sx in 0..samples {
                    for sy in 0..samples {
                        for sz in 0..samples {
                            let p = [x, y, z]
                                .iter()
                                .zip([sx, sy, sz])
                                .map(|(&i, s)| i as f64 + (s as f64 + 0.5) / samples as f64 - centre)
                                .collect::<Vec<_>>();
                            hits += usize::from(p.iter().map(|c| c * c).sum::<f64>() <= radius * radius);
                        }
                    }
                }
                grid.set(x, y, z, hits as f32 / (samples * samples * samples) as f32);
            }
        }
    }
    grid
}

/// Deterministic pseudo-random occupancy (0 / 1) at the given density.
pub fn random_grid(dims: [usize; 3], density: f64, seed: u64) -> VoxelGrid {
    let mut grid = VoxelGrid::new(dims);
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    for v in grid.data.iter_mut() {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        *v = if ((state >> 11) as f64 / (1u64 << 53) as f64) < density { 1.0 } else { 0.0 };
    }
    grid
}
