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
//! Our catalog-style views add a crop jitter: the principal point moves by
//! `(crop_x, crop_y)` times the image side (x right, y down), as if the photo had been
//! cropped off-centre. It is written as two optional extra numbers after the five R2N2
//! ones; plain 5-number lines (real R2N2 files) read as an unshifted principal point.
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
    /// Principal point shift as a fraction of the image side (x right, y down); 0 in
    /// R2N2 data.
    #[serde(default)]
    pub crop_x: f32,
    #[serde(default)]
    pub crop_y: f32,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum MetadataError {
    #[error("line {line}: expected 5 numbers `az el rot dist fov` (or 7 with `crop_x crop_y`), found {found:?}")]
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
            crop_x: 0.0,
            crop_y: 0.0,
        }
    }

    /// Draws a catalog-photo view: azimuth U[0,360), elevation U[10,40), distance ratio
    /// U[0.55,0.8) (closer than R2N2: product shots fill the frame), crop shift U[-0.04,0.04) of the side on each axis. Callers keep the
    /// object inside the frame with [`ViewParams::fit_in_frame`].
    pub fn sample_catalog(rng: &mut Rng) -> Self {
        ViewParams {
            azimuth_deg: rng.range(0.0, 360.0),
            elevation_deg: rng.range(10.0, 40.0),
            in_plane_deg: 0.0,
            distance_ratio: rng.range(0.55, 0.8),
            fov: METADATA_FOV,
            crop_x: rng.range(-0.04, 0.04),
            crop_y: rng.range(-0.04, 0.04),
        }
    }

    /// Adjusts the view so every point of `points` projects at least `margin` (a fraction
    /// of the side) inside a square frame: first the crop shift is pulled back towards the
    /// centre, then the camera backs off. Deterministic; views that already fit are
    /// returned unchanged.
    pub fn fit_in_frame(&self, points: &[V3], margin: f32) -> ViewParams {
        const SIDE: usize = 1000;
        let fits = |v: &ViewParams| {
            let cam = v.camera(SIDE, SIDE);
            let (lo, hi) = (margin * SIDE as f32, (1.0 - margin) * SIDE as f32);
            points.iter().all(|&p| {
                let (x, y, d) = cam.project(p);
                d > 0.0 && (lo..=hi).contains(&x) && (lo..=hi).contains(&y)
            })
        };
        let mut v = *self;
        for _ in 0..4 {
            if fits(&v) {
                return v;
            }
            v.crop_x *= 0.5;
            v.crop_y *= 0.5;
        }
        v.crop_x = 0.0;
        v.crop_y = 0.0;
        for _ in 0..40 {
            if fits(&v) {
                return v;
            }
            v.distance_ratio *= 1.03;
        }
        v
    }

    /// The metadata line, R2N2 style: `az el 0 dist 25`, then `crop_x crop_y` when the
    /// principal point is shifted.
    pub fn metadata_line(&self) -> String {
        let base = format!("{} {} {} {} {}", self.azimuth_deg, self.elevation_deg, self.in_plane_deg, self.distance_ratio, self.fov);
        if self.crop_x == 0.0 && self.crop_y == 0.0 {
            base
        } else {
            format!("{base} {} {}", self.crop_x, self.crop_y)
        }
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
                Ok(v) if v.len() == 5 || v.len() == 7 => views.push(ViewParams {
                    azimuth_deg: v[0],
                    elevation_deg: v[1],
                    in_plane_deg: v[2],
                    distance_ratio: v[3],
                    fov: v[4],
                    crop_x: v.get(5).copied().unwrap_or(0.0),
                    crop_y: v.get(6).copied().unwrap_or(0.0),
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
    /// Principal point offset from the image centre in pixels (x right, y down).
    pub principal_dx: f32,
    pub principal_dy: f32,
    pub width: usize,
    pub height: usize,
}

impl Camera {
    pub fn r2n2(view: &ViewParams, width: usize, height: usize) -> Self {
        let (az, el) = (view.azimuth_deg.to_radians(), view.elevation_deg.to_radians());
        let d = MAX_CAMERA_DISTANCE * view.distance_ratio;
        let position = [d * el.cos() * az.cos(), d * el.sin(), -d * el.cos() * az.sin()];
        let focal_px = FOCAL_OVER_HALF_WIDTH * width as f32 * 0.5;
        let mut cam = Camera::look_at(position, [0.0; 3], view.in_plane_deg.to_radians(), focal_px, width, height);
        // The shift follows the same side as the focal length, so it frames identically
        // at every image size.
        cam.principal_dx = view.crop_x * width as f32;
        cam.principal_dy = view.crop_y * width as f32;
        cam
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
        Camera { position, right, up, forward, focal_px, principal_dx: 0.0, principal_dy: 0.0, width, height }
    }

    /// Same camera, different image size (focal length and principal point offset scale
    /// with width).
    pub fn resized(&self, width: usize, height: usize) -> Self {
        let k = width as f32 / self.width as f32;
        Camera { focal_px: self.focal_px * k, principal_dx: self.principal_dx * k, principal_dy: self.principal_dy * k, width, height, ..*self }
    }

    /// Pixel coordinates (x right, y down; pixel centres at +0.5) and depth along the
    /// viewing axis. Depth <= 0 means behind the camera.
    #[inline]
    pub fn project(&self, p: V3) -> (f32, f32, f32) {
        let rel = sub(p, self.position);
        let depth = dot(rel, self.forward);
        let inv = if depth.abs() > 1e-9 { 1.0 / depth } else { 0.0 };
        let x = self.width as f32 * 0.5 + self.principal_dx + self.focal_px * dot(rel, self.right) * inv;
        let y = self.height as f32 * 0.5 + self.principal_dy - self.focal_px * dot(rel, self.up) * inv;
        (x, y, depth)
    }

    /// Unit direction (model space) of the ray through pixel coordinates `(x, y)`.
    pub fn ray_dir(&self, x: f32, y: f32) -> V3 {
        let u = (x - self.width as f32 * 0.5 - self.principal_dx) / self.focal_px;
        let v = -(y - self.height as f32 * 0.5 - self.principal_dy) / self.focal_px;
        normalize([
            self.forward[0] + u * self.right[0] + v * self.up[0],
            self.forward[1] + u * self.right[1] + v * self.up[1],
            self.forward[2] + u * self.right[2] + v * self.up[2],
        ])
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
        assert!(matches!(ViewParams::parse_metadata("1 2 3 4 5 6\n"), Err(MetadataError::BadLine { line: 1, .. })));
        assert_eq!(real[0].crop_x, 0.0);
        assert!(!views[0].metadata_line().contains("  "));
        assert_eq!(views[0].metadata_line().split_whitespace().count(), 5, "R2N2 views write plain R2N2 lines");
    }

    #[test]
    fn catalog_views_carry_their_crop_through_metadata_and_stay_in_frame() {
        let mut rng = Rng::new(8);
        let views: Vec<_> = (0..50).map(|_| ViewParams::sample_catalog(&mut rng)).collect();
        for v in &views {
            assert!((10.0..40.0).contains(&v.elevation_deg));
            assert!(v.crop_x.abs() < 0.04 && v.crop_y.abs() < 0.04);
        }
        let text: String = views.iter().map(|v| v.metadata_line() + "\n").collect();
        assert_eq!(ViewParams::parse_metadata(&text).unwrap(), views);
        // A shifted principal point moves the origin by crop * side, at any size.
        let v = ViewParams { crop_x: 0.03, crop_y: -0.02, ..views[0] };
        for side in [137usize, 600] {
            let (x, y, _) = v.camera(side, side).project([0.0; 3]);
            assert!((x - side as f32 * 0.53).abs() < 1e-3 && (y - side as f32 * 0.48).abs() < 1e-3, "{side}: {x} {y}");
            // The pixel ray through the projection of a point points at that point.
            let cam = v.camera(side, side);
            let p = [0.1, 0.2, -0.15];
            let (px, py, _) = cam.project(p);
            let ray = cam.ray_dir(px, py);
            let to_p = cam.view_dir(p);
            assert!(dot(ray, to_p) > 0.99999);
        }
        // The unit-diagonal corners at a close, shifted view: fitting pulls them inside.
        let h = 0.5 / 3f32.sqrt();
        let corners: Vec<V3> =
            (0..8).map(|i| [0, 1, 2].map(|b| if (i >> b) & 1 == 1 { h } else { -h })).collect();
        let tight = ViewParams { distance_ratio: 0.6, crop_x: 0.04, ..views[1] };
        let fitted = tight.fit_in_frame(&corners, 0.02);
        let cam = fitted.camera(137, 137);
        for &p in &corners {
            let (x, y, _) = cam.project(p);
            assert!((2.7..=134.3).contains(&x) && (2.7..=134.3).contains(&y), "{x} {y} {fitted:?}");
        }
        let easy = ViewParams { distance_ratio: 0.9, crop_x: 0.01, ..views[1] };
        assert_eq!(easy.fit_in_frame(&corners, 0.02), easy);
    }

    #[test]
    fn camera_geometry_matches_the_documented_model() {
        let v = ViewParams { azimuth_deg: 0.0, elevation_deg: 0.0, in_plane_deg: 0.0, distance_ratio: 1.0, fov: 25.0, crop_x: 0.0, crop_y: 0.0 };
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
