//! Geometry core: everything between a voxel grid and a mesh file, with no libtorch.

pub mod mesh;
pub mod voxel;

pub use mesh::Mesh;
pub use voxel::VoxelGrid;
