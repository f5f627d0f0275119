//! 3D-R2N2 / ShapeNetRendering cameras.
//!
//! The 3D-R2N2 renders (Choy et al. 2016; the `ShapeNetRendering` set Pix2Vox trains
//! on) were made in Blender. Each `rendering_metadata.txt` line is
//! `azimuth elevation in-plane-rotation distance-ratio fov`, and readers of that data
//! (PyTorch3D's R2N2 loader, Mesh R-CNN) recover the camera as:
//!
//! * distance from the origin = `1.75 * distance_ratio` (R2N2's `MAX_CAMERA_DIST`), for
//!   models normalised to a unit bounding-box diagonal, centred at the origin;
//! * intrinsics of Blender's default 35 mm lens on a 32 mm sensor: focal length =
//!   35/16 in NDC (`BLENDER_INTRINSIC[0][0] = 2.1875`), i.e. `137 * 35 / 32` = 149.8 px
//!   for a 137 px image and a full field of view of 2*atan(16/35) = 49.1 degrees.
//!   The trailing `25` of each metadata line is what R2N2 wrote into its file (about
//!   half that angle); it is recorded as-is and not used for projection.
//! * position on a sphere: in Blender's Z-up world the camera sits at
//!   `d * (cos el cos az, cos el sin az, sin el)`; Blender imports the Y-up OBJ with
//!   (x, y, z)_model -> (x, -z, y)_blender, so in model coordinates (Y up) it is
//!   `d * (cos el cos az, sin el, -cos el sin az)`. It looks at the origin, up = +Y.
//!
//! Voxels live in the same model space (see `voxelize`), so a voxel projected with
//! this camera lands on the pixels that rendered its surface.

use crate::math::{cross, dot, normalize, sub, V3};
use crate::rng::Rng;
use serde::{Deserialize, Serialize};

/// R2N2's constant: camera distance = this * distance ratio.
pub const MAX_CAMERA_DISTANCE: f32 = 1.75;
/// Blender 35 mm lens / 32 mm sensor: focal length over half the image width.
pub const FOCAL_OVER_HALF_WIDTH: f32 = 35.0 / 16.0;
/// The field-of-view column R2N2 writes in `rendering_metadata.txt`.
pub const METADATA_FOV: f32 = 25.0;

/// One view as recorded in `rendering_metadata.txt`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ViewParams {
    pub azimuth_deg: f32,
    pub elevation_deg: f32,
    pub in_plane_deg: f32,
    pub distance_ratio: f32,
    pub fov: f32,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum MetadataError {
    #[error("line {line}: expected 5 numbers `az el rot dist fov`, found {found:?}")]
    BadLine { line: usize, found: String },
}

impl ViewParams {
    /// Draws a view like 3D-R2N2: azimuth U[0,360), elevation U[25,30), distance
    /// ratio U[0.65,0.95), no in-plane rotation.
    pub fn sample(rng: &mut Rng) -> Self {
        ViewParams {
            azimuth_deg: rng.range(0.0, 360.0),
            elevation_deg: rng.range(25.0, 30.0),
            in_plane_deg: 0.0,
            distance_ratio: rng.range(0.65, 0.95),
            fov: METADATA_FOV,
        }
    }

    /// The metadata line, R2N2 style: `az el 0 dist 25`.
    pub fn metadata_line(&self) -> String {
        format!("{} {} {} {} {}", self.azimuth_deg, self.elevation_deg, self.in_plane_deg, self.distance_ratio, self.fov)
    }

    /// Parses a whole `rendering_metadata.txt` (blank lines ignored). Real R2N2 files
    /// write Python floats with many digits; any float syntax is accepted.
    pub fn parse_metadata(text: &str) -> Result<Vec<ViewParams>, MetadataError> {
        let mut views = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let t = line.trim();
            if t.is_empty() {
                continue;
            }
            let nums: Result<Vec<f32>, _> = t.split_whitespace().map(str::parse::<f32>).collect();
            match nums {
                Ok(v) if v.len() == 5 => views.push(ViewParams {
                    azimuth_deg: v[0],
                    elevation_deg: v[1],
                    in_plane_deg: v[2],
                    distance_ratio: v[3],
                    fov: v[4],
                }),
                _ => return Err(MetadataError::BadLine { line: i + 1, found: t.to_string() }),
            }
        }
        Ok(views)
    }

    pub fn camera(&self, width: usize, height: usize) -> Camera {
        Camera::r2n2(self, width, height)
    }
}

/// A pinhole camera looking at the origin.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Camera {
    pub position: V3,
    pub right: V3,
    pub up: V3,
    pub forward: V3,
    /// Focal length in pixels.
    pub focal_px: f32,
    pub width: usize,
    pub height: usize,
}

impl Camera {
    pub fn r2n2(view: &ViewParams, width: usize, height: usize) -> Self {
        let (az, el) = (view.azimuth_deg.to_radians(), view.elevation_deg.to_radians());
        let d = MAX_CAMERA_DISTANCE * view.distance_ratio;
        let position = [d * el.cos() * az.cos(), d * el.sin(), -d * el.cos() * az.sin()];
        let focal_px = FOCAL_OVER_HALF_WIDTH * width as f32 * 0.5;
        Camera::look_at(position, [0.0; 3], view.in_plane_deg.to_radians(), focal_px, width, height)
    }

    /// A camera at `position` looking at `target`, rolled by `roll` radians.
    pub fn look_at(position: V3, target: V3, roll: f32, focal_px: f32, width: usize, height: usize) -> Self {
        let forward = normalize(sub(target, position));
        let world_up = if forward[1].abs() > 0.999 { [0.0, 0.0, -1.0] } else { [0.0, 1.0, 0.0] };
        let right0 = normalize(cross(forward, world_up));
        let up0 = cross(right0, forward);
        let (s, c) = roll.sin_cos();
        let right = normalize([right0[0] * c + up0[0] * s, right0[1] * c + up0[1] * s, right0[2] * c + up0[2] * s]);
        let up = cross(right, forward);
        Camera { position, right, up, forward, focal_px, width, height }
    }

    /// Same camera, different image size (focal length scales with width).
    pub fn resized(&self, width: usize, height: usize) -> Self {
        Camera { focal_px: self.focal_px * width as f32 / self.width as f32, width, height, ..*self }
    }

    /// Pixel coordinates (x right, y down; pixel centres at +0.5) and depth along the
    /// viewing axis. Depth <= 0 means behind the camera.
    #[inline]
    pub fn project(&self, p: V3) -> (f32, f32, f32) {
        let rel = sub(p, self.position);
        let depth = dot(rel, self.forward);
        let inv = if depth.abs() > 1e-9 { 1.0 / depth } else { 0.0 };
        let x = self.width as f32 * 0.5 + self.focal_px * dot(rel, self.right) * inv;
        let y = self.height as f32 * 0.5 - self.focal_px * dot(rel, self.up) * inv;
        (x, y, depth)
    }

    /// Unit direction from the camera through model point `p`.
    pub fn view_dir(&self, p: V3) -> V3 {
        normalize(sub(p, self.position))
    }

    /// Distance from the camera to the origin.
    pub fn distance(&self) -> f32 {
        crate::math::length(self.position)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_round_trips_and_rejects_garbage() {
        let mut rng = Rng::new(5);
        let views: Vec<_> = (0..24).map(|_| ViewParams::sample(&mut rng)).collect();
        for v in &views {
            assert!((0.0..360.0).contains(&v.azimuth_deg));
            assert!((25.0..30.0).contains(&v.elevation_deg));
            assert!((0.65..0.95).contains(&v.distance_ratio));
        }
        let text: String = views.iter().map(|v| v.metadata_line() + "\n").collect();
        assert_eq!(ViewParams::parse_metadata(&text).unwrap(), views);
        // A real R2N2 line.
        let real = ViewParams::parse_metadata("293.425338316 25.8645587271 0 0.80580454206 25\n").unwrap();
        assert!((real[0].azimuth_deg - 293.42535).abs() < 1e-3);
        assert!(matches!(ViewParams::parse_metadata("1 2 3\n"), Err(MetadataError::BadLine { line: 1, .. })));
    }

    #[test]
    fn camera_geometry_matches_the_documented_model() {
        let v = ViewParams { azimuth_deg: 0.0, elevation_deg: 0.0, in_plane_deg: 0.0, distance_ratio: 1.0, fov: 25.0 };
        let cam = v.camera(137, 137);
        // Azimuth 0, elevation 0: on +X, looking back at the origin.
        assert!((cam.position[0] - 1.75).abs() < 1e-6 && cam.position[1].abs() < 1e-6);
        let (x, y, d) = cam.project([0.0; 3]);
        assert!((x - 68.5).abs() < 1e-4 && (y - 68.5).abs() < 1e-4 && (d - 1.75).abs() < 1e-6);
        // +Y projects upward (smaller row); the edge of the image is at half-FOV 24.56 deg.
        let (_, y_up, _) = cam.project([0.0, 0.1, 0.0]);
        assert!(y_up < 68.5);
        let half_fov = (16.0f32 / 35.0).atan();
        let (x_edge, _, _) = cam.project([0.0, 0.0, 1.75 * half_fov.tan()]);
        assert!(x_edge.abs() < 1e-3 || (x_edge - 137.0).abs() < 1e-3, "{x_edge}");
        // Azimuth 90 puts the camera at -Z (Blender's +Y).
        let v90 = ViewParams { azimuth_deg: 90.0, ..v };
        let c = v90.camera(137, 137);
        assert!((c.position[2] + 1.75).abs() < 1e-5);
    }
}
