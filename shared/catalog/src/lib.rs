//! Synthetic catalog generator: our stand-in for ShapeNet, written in ShapeNet's layout.
//!
//! Procedural shape families for the 12 Pascal3D+ categories ([`shapes`]), a
//! conservative solid voxelizer ([`voxelize`]), a software renderer with 3D-R2N2
//! cameras ([`render`], [`camera`]), mesh readers ([`mesh_io`]) and the
//! ShapeNetRendering / ShapeNetVox32 dataset layout, writer and reader ([`dataset`]).

pub mod builder;
pub mod math;
pub mod rng;
pub mod shapes;

pub use builder::{ColoredMesh, Material, MeshBuilder};
pub use rng::Rng;
pub use shapes::{generate, Model};
pub mod camera;
pub mod render;
pub mod voxelize;
pub mod agreement;
pub mod preview;
pub mod mesh_io;
pub mod dataset;
pub mod photo;
