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
