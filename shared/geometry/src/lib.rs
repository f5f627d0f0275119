//! Geometry core: everything between a voxel grid and a mesh file, with no libtorch.

pub mod binvox;
pub mod colour;
pub mod export;
pub mod iou;
pub mod marching_cubes;
pub mod mesh;
pub mod npy;
pub mod pose;
pub mod simplify;
pub mod smooth;
pub mod surface;
pub mod voxel;

pub use binvox::{Binvox, BinvoxError};
pub use mesh::Mesh;
pub use voxel::VoxelGrid;
