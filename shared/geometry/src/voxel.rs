//! Dense voxel grids indexed `[x][y][z]`, placed in model space like binvox.

use serde::{Deserialize, Serialize};

/// A dense grid of occupancy probabilities in `[0, 1]` (booleans are 0.0 / 1.0).
///
/// Storage is x slowest, z fastest: `index = (x * dims[1] + y) * dims[2] + z`, the same
/// `[x][y][z]` order Pix2Vox's output and our `.npy` files use. The grid sits in model
/// space as binvox places it: voxel centre = `scale * (i + 0.5) / dim + translate`,
/// with `scale` the edge of the whole cube (binvox uses one scale for all axes).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VoxelGrid {
    pub dims: [usize; 3],
    pub translate: [f32; 3],
    pub scale: f32,
    pub data: Vec<f32>,
}

impl VoxelGrid {
    /// An empty grid in the unit cube at the origin.
    pub fn new(dims: [usize; 3]) -> Self {
        VoxelGrid { dims, translate: [0.0; 3], scale: 1.0, data: vec![0.0; dims[0] * dims[1] * dims[2]] }
    }

    /// A solid cube of `side` voxels a side in the middle of a `size`^3 grid spanning the
    /// unit cube centred on the origin, as Pix2Vox output is placed: the simplest shape
    /// with a known surface, for fixtures and benchmarks.
    pub fn centred_cube(size: usize, side: usize) -> Self {
        let mut grid = VoxelGrid::new([size; 3]);
        grid.translate = [-0.5; 3];
        let start = size.saturating_sub(side) / 2;
        let end = (start + side).min(size);
        for x in start..end {
            for y in start..end {
                for z in start..end {
                    grid.set(x, y, z, 1.0);
                }
            }
        }
        grid
    }

    pub fn len(&self) -> usize {
        self.data.len()
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    #[inline]
    pub fn index(&self, x: usize, y: usize, z: usize) -> usize {
        (x * self.dims[1] + y) * self.dims[2] + z
    }

    #[inline]
    pub fn get(&self, x: usize, y: usize, z: usize) -> f32 {
        self.data[self.index(x, y, z)]
    }

    #[inline]
    pub fn set(&mut self, x: usize, y: usize, z: usize, value: f32) {
        let i = self.index(x, y, z);
        self.data[i] = value;
    }

    /// Number of voxels at or above `threshold`.
    pub fn count_at_least(&self, threshold: f32) -> usize {
        self.data.iter().filter(|&&v| v >= threshold).count()
    }

    /// Model-space centre of voxel `(x, y, z)`.
    pub fn voxel_center(&self, x: usize, y: usize, z: usize) -> [f32; 3] {
        let c = [x, y, z];
        std::array::from_fn(|a| self.scale * (c[a] as f32 + 0.5) / self.dims[a] as f32 + self.translate[a])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn centred_cube_is_solid_and_centred_on_the_origin() {
        let grid = VoxelGrid::centred_cube(32, 10);
        assert_eq!(grid.count_at_least(0.5), 1000);
        // Occupied voxels 11..=20: their centres span [-0.5 + 11.5/32, -0.5 + 20.5/32], symmetric.
        let low = grid.voxel_center(11, 11, 11);
        let high = grid.voxel_center(20, 20, 20);
        assert!((low[0] + high[0]).abs() < 1e-6, "{low:?} {high:?}");
        assert_eq!(grid.get(10, 15, 15), 0.0);
        assert_eq!(grid.get(11, 15, 15), 1.0);
        assert_eq!(VoxelGrid::centred_cube(8, 20).count_at_least(0.5), 512, "clipped to the grid");
    }
}
