//! Indexed triangle meshes.

use serde::{Deserialize, Serialize};

/// An indexed triangle mesh: shared vertices, counter-clockwise triangles seen from
/// outside (so face normals point outward). `normals` is empty or one per vertex.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Mesh {
    pub positions: Vec<[f32; 3]>,
    pub triangles: Vec<[u32; 3]>,
    pub normals: Vec<[f32; 3]>,
}

impl Mesh {
    pub fn vertex_count(&self) -> usize {
        self.positions.len()
    }

    pub fn triangle_count(&self) -> usize {
        self.triangles.len()
    }
}
