//! Synthetic catalog generator: our stand-in for ShapeNet, written in ShapeNet's layout.
//!
//! * [`shapes`]: procedural shape families for the 12 Pascal3D+ categories, built from
//!   coloured parts ([`builder`]), deterministic from a seed ([`rng`]).
//! * [`voxelize`]: conservative solid voxelization with ShapeNetVox32 conventions.
//! * [`camera`], [`render`]: 3D-R2N2 cameras (the camera model is documented in
//!   [`camera`]) and a software rasterizer producing 137x137 RGBA views.
//! * [`agreement`]: render/voxel silhouette agreement, the check that both use one camera.
//! * [`dataset`]: the ShapeNetRendering / ShapeNetVox32 / taxonomy layout, the catalog
//!   writer and the reader the training code uses (works on real ShapeNet too).
//! * [`pascal3d`]: imports Pascal3D+ (photos, annotations, voxelized CAD models) into
//!   that layout; [`mat`]: the MAT v5 reader its annotations need.
//! * [`mesh_io`]: strict .obj / .off / .ply readers; [`photo`]: photo-style test images;
//!   [`preview`]: contact sheets; [`studio`]: the catalog look (backdrops, contact
//!   shadows, studio lighting, jittered product-shot cameras).

pub mod agreement;
pub mod builder;
pub mod camera;
pub mod dataset;
pub mod mat;
pub mod math;
pub mod mesh_io;
pub mod pascal3d;
pub mod photo;
pub mod preview;
pub mod render;
pub mod rng;
pub mod shapes;
pub mod studio;
pub mod voxelize;

pub use builder::{ColoredMesh, Material, MeshBuilder, Texture};
/// The `image` crate version our images are made with, for callers that save them.
pub use image;
pub use rng::Rng;
pub use shapes::{generate, Model};
