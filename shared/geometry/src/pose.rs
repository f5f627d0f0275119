//! From the network's voxel frame to a catalog asset's pose: glTF axes, metres, on the ground.
//!
//! **The voxel (model) frame.** Grids are `[x][y][z]` in binvox model space (see
//! [`crate::voxel`]); the networks are trained on grids in ShapeNet's frame as the catalog
//! generator builds it (`shared/catalog/src/shapes/mod.rs`): **+Y is up, the object's front
//! faces +X, its width runs along Z**, and the model is centred with a unit bounding-box
//! diagonal. The Pascal3D+ import maps its CAD models into the same frame (its azimuth-0,
//! frontal camera lands on +X), and the R2N2 camera puts azimuth 0 on +X too.
//!
//! **The asset frame** (glTF 2.0): +Y up, +Z is the front (glTF's "forward" for assets is
//! +Z: a viewer's default camera looks at the front), +X to the viewer's right when facing
//! the front; units are metres.
//!
//! [`place`] rotates the model frame by -90 degrees about Y, `(x, y, z) -> (-z, y, x)` (a proper
//! rotation, so triangle winding and outward normals are kept), scales it to a real size,
//! and translates it so the bounding box is centred on X and Z with its bottom at Y = 0.

use thiserror::Error;

use crate::mesh::Mesh;

/// Largest accepted target size on any axis, in metres (see `mono2mesh_core::size`).
pub const MAX_SIZE_M: f64 = 100.0;

/// The real size to scale a mesh to, in metres, in asset (glTF) axes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum TargetSize {
    /// Scale uniformly so the bounding box is this tall (Y).
    Height(f64),
    /// Scale each axis to its own length: width (X), height (Y), depth (Z).
    Extents([f64; 3]),
    /// Keep the model's units (a model unit becomes a metre): no real size is known.
    ModelUnits,
}

/// What [`place`] did, for job records: the factor per axis and the resulting size.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Placement {
    /// Metres per model unit along the asset's X, Y and Z (equal for a uniform scale).
    pub metres_per_unit: [f64; 3],
    /// The placed mesh's bounding box, metres: width (X), height (Y), depth (Z).
    pub size_m: [f64; 3],
}

#[derive(Debug, Clone, PartialEq, Error)]
pub enum PoseError {
    #[error("target size {0} m is not a finite number in (0, {MAX_SIZE_M}] m")]
    BadSize(f64),
    #[error("the mesh has no vertices to place")]
    Empty,
    #[error("vertex {0} has a non-finite coordinate")]
    NonFinite(usize),
    #[error("the mesh is flat along the asset's {axis} axis, so it cannot be scaled to a size there")]
    Flat { axis: char },
}

/// Rotate a model-frame point into asset axes (see the module docs).
#[inline]
pub fn model_to_asset(p: [f32; 3]) -> [f32; 3] {
    [-p[2], p[1], p[0]]
}

/// Place `mesh` (model frame, any units) in the asset frame at `target` size; see the
/// module docs. Normals, when the mesh has one per vertex, are carried along (and
/// renormalised for a non-uniform scale); the geometry is otherwise unchanged.
pub fn place(mesh: &mut Mesh, target: TargetSize) -> Result<Placement, PoseError> {
    if let Some(i) = mesh.positions.iter().position(|p| p.iter().any(|c| !c.is_finite())) {
        return Err(PoseError::NonFinite(i));
    }
    for &size in match &target {
        TargetSize::Height(h) => std::slice::from_ref(h),
        TargetSize::Extents(e) => &e[..],
        TargetSize::ModelUnits => &[],
    } {
        if !(size.is_finite() && size > 0.0 && size <= MAX_SIZE_M) {
            return Err(PoseError::BadSize(size));
        }
    }
    for p in &mut mesh.positions {
        *p = model_to_asset(*p);
    }
    for n in &mut mesh.normals {
        *n = model_to_asset(*n);
    }
    let (lo, hi) = mesh.bounds().ok_or(PoseError::Empty)?;
    let extent: [f64; 3] = std::array::from_fn(|a| hi[a] as f64 - lo[a] as f64);
    let axis_name = ['X', 'Y', 'Z'];
    let scale: [f64; 3] = match target {
        TargetSize::ModelUnits => [1.0; 3],
        TargetSize::Height(h) => {
            if extent[1] <= 0.0 {
                return Err(PoseError::Flat { axis: 'Y' });
            }
            [h / extent[1]; 3]
        }
        TargetSize::Extents(e) => {
            if let Some(a) = (0..3).find(|&a| extent[a] <= 0.0) {
                return Err(PoseError::Flat { axis: axis_name[a] });
            }
            std::array::from_fn(|a| e[a] / extent[a])
        }
    };
    // Centre on X/Z, bottom on Y = 0; computed in f64 so far-off binvox translates keep precision.
    let origin = [(lo[0] as f64 + hi[0] as f64) * 0.5, lo[1] as f64, (lo[2] as f64 + hi[2] as f64) * 0.5];
    for p in &mut mesh.positions {
        *p = std::array::from_fn(|a| ((p[a] as f64 - origin[a]) * scale[a]) as f32);
    }
    if scale[0] != scale[1] || scale[1] != scale[2] {
        // Normals transform by the inverse transpose: divide by the scale, then renormalise.
        for n in &mut mesh.normals {
            let m: [f64; 3] = std::array::from_fn(|a| n[a] as f64 / scale[a]);
            let len = (m[0] * m[0] + m[1] * m[1] + m[2] * m[2]).sqrt();
            if len > 0.0 {
                *n = m.map(|c| (c / len) as f32);
            }
        }
    }
    let (lo, hi) = mesh.bounds().ok_or(PoseError::Empty)?;
    Ok(Placement { metres_per_unit: scale, size_m: std::array::from_fn(|a| hi[a] as f64 - lo[a] as f64) })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A model-frame "chair": a seat block at the origin plus a tall back on its -X side
    /// (the catalog builds chairs with the back at -X, the front at +X).
    fn chair_like() -> Mesh {
        let mut positions = Vec::new();
        let mut triangles = Vec::new();
        let mut block = |lo: [f32; 3], hi: [f32; 3]| {
            let base = positions.len() as u32;
            for i in 0..8 {
                positions.push([
                    if i & 1 == 0 { lo[0] } else { hi[0] },
                    if i & 2 == 0 { lo[1] } else { hi[1] },
                    if i & 4 == 0 { lo[2] } else { hi[2] },
                ]);
            }
            for t in [[0, 2, 1], [1, 2, 3], [4, 5, 6], [5, 7, 6], [0, 1, 4], [1, 5, 4], [2, 6, 3], [3, 6, 7], [0, 4, 2], [2, 4, 6], [1, 3, 5], [3, 7, 5]] {
                triangles.push(t.map(|v: u32| base + v));
            }
        };
        block([-0.2, -0.1, -0.25], [0.2, 0.0, 0.25]); // seat, 0.4 deep (X), 0.5 wide (Z)
        block([-0.2, 0.0, -0.25], [-0.15, 0.4, 0.25]); // back, at -X
        let mut mesh = Mesh { positions, triangles, normals: Vec::new() };
        mesh.recompute_normals();
        mesh
    }

    #[test]
    fn front_goes_to_plus_z_up_stays_up_and_the_mesh_sits_on_the_ground() {
        let mut mesh = chair_like();
        let volume = mesh.signed_volume();
        let placement = place(&mut mesh, TargetSize::ModelUnits).unwrap();
        let (lo, hi) = mesh.bounds().unwrap();
        assert_eq!(lo[1], 0.0);
        assert!((lo[0] + hi[0]).abs() < 1e-6 && (lo[2] + hi[2]).abs() < 1e-6, "{lo:?} {hi:?}");
        // Width (model Z, 0.5) is now X, depth (model X, 0.4) is now Z.
        assert!((placement.size_m[0] - 0.5).abs() < 1e-6 && (placement.size_m[2] - 0.4).abs() < 1e-6, "{placement:?}");
        // The back (the tall part) was at the rear (-X): it must now be at -Z, behind.
        let top: Vec<&[f32; 3]> = mesh.positions.iter().filter(|p| p[1] > 0.3).collect();
        assert!(!top.is_empty() && top.iter().all(|p| p[2] < 0.0), "{top:?}");
        // A rotation: same volume, still outward.
        assert!((mesh.signed_volume() - volume).abs() < 1e-9, "{} vs {volume}", mesh.signed_volume());
        assert!(mesh.is_watertight());
    }

    #[test]
    fn height_scales_uniformly_and_extents_per_axis_with_unit_normals() {
        let mut mesh = chair_like();
        let placement = place(&mut mesh, TargetSize::Height(0.9)).unwrap();
        assert!((placement.size_m[1] - 0.9).abs() < 1e-6);
        // The model is 0.5 tall (seat bottom -0.1 to back top 0.4).
        assert!(placement.metres_per_unit.iter().all(|&s| (s - 1.8).abs() < 1e-6), "{placement:?}");
        assert!((placement.size_m[0] - 0.5 * 1.8).abs() < 1e-6);

        let mut mesh = chair_like();
        let placement = place(&mut mesh, TargetSize::Extents([0.6, 0.9, 0.55])).unwrap();
        for (got, want) in placement.size_m.iter().zip([0.6, 0.9, 0.55]) {
            assert!((got - want).abs() < 1e-6, "{placement:?}");
        }
        let mut fresh = mesh.clone();
        fresh.recompute_normals();
        for (n, f) in mesh.normals.iter().zip(&fresh.normals) {
            let len = (n[0] * n[0] + n[1] * n[1] + n[2] * n[2]).sqrt();
            assert!((len - 1.0).abs() < 1e-5);
            // Carried normals still point the way the placed surface faces.
            assert!(n[0] * f[0] + n[1] * f[1] + n[2] * f[2] > 0.5, "{n:?} vs {f:?}");
        }
    }

    #[test]
    fn absurd_targets_and_meshes_are_errors() {
        for size in [0.0, -1.0, f64::NAN, f64::INFINITY, 1e6] {
            let error = place(&mut chair_like(), TargetSize::Height(size)).unwrap_err();
            assert!(matches!(error, PoseError::BadSize(_)), "{size}: {error}");
        }
        assert!(matches!(place(&mut chair_like(), TargetSize::Extents([0.5, 0.5, 200.0])), Err(PoseError::BadSize(s)) if s == 200.0));
        assert_eq!(place(&mut Mesh::default(), TargetSize::Height(1.0)), Err(PoseError::Empty));
        let mut flat = Mesh { positions: vec![[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]], triangles: vec![[0, 1, 2]], normals: vec![] };
        assert_eq!(place(&mut flat, TargetSize::Height(1.0)), Err(PoseError::Flat { axis: 'Y' }));
        let mut bad = chair_like();
        bad.positions[3][1] = f32::NAN;
        assert_eq!(place(&mut bad, TargetSize::ModelUnits), Err(PoseError::NonFinite(3)));
    }
}
