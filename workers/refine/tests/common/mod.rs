//! Objects the colour tests photograph.

use mono2mesh_catalog::builder::{Material, MeshBuilder};
use mono2mesh_catalog::ColoredMesh;

/// A step: a blue slab with a red block on its front half (+X), so no two views from the
/// fitting grid's range look alike (a plain box looks the same from opposite sides), and
/// the two colours tell where the photo was painted.
pub fn two_colour_step() -> ColoredMesh {
    let mut b = MeshBuilder::new();
    let red = b.material(Material::matte([0.85, 0.1, 0.08]));
    let blue = b.material(Material::matte([0.08, 0.15, 0.8]));
    b.cuboid([0.0, 0.0, -0.35], [0.5, 0.6, 0.35], red);
    b.cuboid([-0.5, -0.6, -0.35], [0.5, 0.0, 0.35], blue);
    b.finish()
}
