//! Render/voxel agreement: project the ground-truth voxels with a view's camera and
//! compare with the rendered silhouette.
//!
//! A 32^3 grid cannot be thinner than one voxel, so around the true outline its
//! projection is wider by up to a projected voxel diagonal (and thin parts such as
//! spokes become voxel-wide). `SilhouetteAgreement` therefore reports the plain IoU,
//! the coverage (share of rendered pixels the voxels cover: must be ~1 with
//! conservative voxelization) and a band IoU that ignores pixels within `band_px`
//! of the rendered outline, the quantisation band; a wrong camera, axis or scale
//! shifts whole regions and fails all three.

use crate::builder::{ColoredMesh, Material};
use crate::camera::Camera;
use crate::render::{render, Lighting, ShadedMesh};
use crate::voxelize::voxel_surface_mesh;
use mono2mesh_geometry::VoxelGrid;
use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct SilhouetteAgreement {
    pub iou: f32,
    pub coverage: f32,
    pub band_iou: f32,
    pub band_px: usize,
}

/// The voxel grid's silhouette seen by `camera` (a pixel counts when at least half of
/// it is covered, like `Rgba::silhouette`).
pub fn voxel_silhouette(grid: &VoxelGrid, camera: &Camera, supersample: usize) -> Vec<bool> {
    let mesh = ColoredMesh::uniform(voxel_surface_mesh(grid), Material::matte([1.0; 3]));
    render(&ShadedMesh::new(&mesh), camera, &Lighting::default(), supersample).silhouette()
}

/// Compares a rendered silhouette with the voxels' projection.
pub fn compare(rendered: &[bool], voxels: &[bool], width: usize, height: usize, band_px: usize) -> SilhouetteAgreement {
    let near_edge = outline_band(rendered, width, height, band_px);
    let (mut inter, mut union, mut r_count, mut band_inter, mut band_union) = (0usize, 0usize, 0usize, 0usize, 0usize);
    for i in 0..rendered.len() {
        let (r, v) = (rendered[i], voxels[i]);
        inter += usize::from(r && v);
        union += usize::from(r || v);
        r_count += usize::from(r);
        if !near_edge[i] {
            band_inter += usize::from(r && v);
            band_union += usize::from(r || v);
        }
    }
    let ratio = |a: usize, b: usize| if b == 0 { 1.0 } else { a as f32 / b as f32 };
    SilhouetteAgreement {
        iou: ratio(inter, union),
        coverage: ratio(inter, r_count),
        band_iou: ratio(band_inter, band_union),
        band_px,
    }
}

/// The quantisation band for a grid seen by a camera: one voxel diagonal projected
/// at the nearest possible depth of the model (unit diagonal, so radius 0.5).
pub fn band_for(grid: &VoxelGrid, camera: &Camera) -> usize {
    let cell = grid.scale / grid.dims[0].max(1) as f32;
    let nearest = (camera.distance() - 0.5).max(0.1);
    (camera.focal_px * cell * 3f32.sqrt() / nearest).ceil() as usize
}

/// Pixels within `radius` (Chebyshev distance) of a pixel whose silhouette value
/// differs from its own: the band around the outline.
fn outline_band(mask: &[bool], width: usize, height: usize, radius: usize) -> Vec<bool> {
    let mut is_edge = vec![false; mask.len()];
    for y in 0..height {
        for x in 0..width {
            let v = mask[y * width + x];
            let differs = |xx: usize, yy: usize| mask[yy * width + xx] != v;
            is_edge[y * width + x] = (x > 0 && differs(x - 1, y))
                || (x + 1 < width && differs(x + 1, y))
                || (y > 0 && differs(x, y - 1))
                || (y + 1 < height && differs(x, y + 1));
        }
    }
    // Dilate the edge pixels by `radius` (separable max filter).
    let mut rows = vec![false; mask.len()];
    for y in 0..height {
        for x in 0..width {
            let lo = x.saturating_sub(radius);
            let hi = (x + radius).min(width - 1);
            rows[y * width + x] = (lo..=hi).any(|xx| is_edge[y * width + xx]);
        }
    }
    let mut band = vec![false; mask.len()];
    for y in 0..height {
        let lo = y.saturating_sub(radius);
        let hi = (y + radius).min(height - 1);
        for x in 0..width {
            band[y * width + x] = (lo..=hi).any(|yy| rows[yy * width + x]);
        }
    }
    band
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compare_counts_pixels_and_ignores_only_the_band() {
        let (w, h) = (20, 20);
        let square = |lo: usize, hi: usize| -> Vec<bool> {
            (0..w * h).map(|i| (lo..hi).contains(&(i % w)) && (lo..hi).contains(&(i / w))).collect()
        };
        let a = square(5, 15);
        let same = compare(&a, &a, w, h, 1);
        assert_eq!((same.iou, same.coverage, same.band_iou), (1.0, 1.0, 1.0));
        // One pixel larger all round: plain IoU drops, band IoU with a 2 px band does not.
        let b = square(4, 16);
        let c = compare(&a, &b, w, h, 2);
        assert!((c.iou - 100.0 / 144.0).abs() < 1e-6);
        assert_eq!(c.coverage, 1.0);
        assert_eq!(c.band_iou, 1.0);
        // Shifted far away: everything fails.
        let d = compare(&a, &square(0, 4), w, h, 1);
        assert_eq!(d.iou, 0.0);
        assert!(d.band_iou < 0.1);
    }
}
