//! The catalog look: what makes a render look like an e-commerce product shot.
//!
//! * [`RenderStyle`]: `catalog` (opaque RGB on a studio backdrop, the default) or
//!   `render` (ShapeNet-style transparent RGBA, R2N2 cameras and lighting).
//! * [`Backdrop`]: mostly white or near-white sweeps (about half), light plain colours
//!   (about 30%) and soft vertical gradients (about 20%), with an optional soft contact
//!   shadow on the ground plane under the object.
//! * [`ContactShadow`]: an occlusion map of the object over its ground plane, built once
//!   per model and looked up through each view's camera, so it sits under the legs and
//!   wheels that make it from every view.
//! * [`CatalogShot`]: one view's camera (with crop jitter, object kept in frame),
//!   lighting and backdrop, drawn from a seeded stream; [`render_shot`] turns it into
//!   the object's RGBA render and the composited RGB photo at any size. The camera's
//!   focal length and crop follow the image side, so a 137 and a 600 shot of one
//!   [`CatalogShot`] frame the object identically.

use crate::builder::ColoredMesh;
use crate::camera::{Camera, ViewParams};
use crate::photo::{background_pixels, composite_f32, gaussian_kernel, Background};
use crate::render::{render, Lighting, Rgba, ShadedMesh};
use crate::rng::Rng;
use serde::{Deserialize, Serialize};

/// How catalog images look.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RenderStyle {
    /// Opaque RGB product shots: studio backdrop and lighting, jittered cameras.
    #[default]
    Catalog,
    /// ShapeNetRendering-like: transparent RGBA, R2N2 camera distribution and lighting.
    Render,
}

impl RenderStyle {
    pub fn name(self) -> &'static str {
        match self {
            RenderStyle::Catalog => "catalog",
            RenderStyle::Render => "render",
        }
    }
}

impl std::fmt::Display for RenderStyle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for RenderStyle {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "catalog" => Ok(RenderStyle::Catalog),
            "render" => Ok(RenderStyle::Render),
            other => Err(format!("unknown render style {other:?} (catalog, render)")),
        }
    }
}

/// The studio backdrop of one view.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Backdrop {
    pub background: Background,
    /// Darkening of the ground right under the object (0 = no contact shadow).
    pub shadow: f32,
}

impl Backdrop {
    /// White / near white about 50%, light plain colours about 30%, soft vertical
    /// gradients about 20%; a contact shadow on about 70%.
    pub fn sample(rng: &mut Rng) -> Self {
        let background = match rng.weighted(&[0.5, 0.3, 0.2]) {
            0 => {
                let g = rng.range(235.0, 255.0);
                let tint = rng.range(-3.0, 3.0);
                Background::Solid { color: [g + tint, g, g - tint].map(|v| v.clamp(0.0, 255.0).round() as u8) }
            }
            1 => Background::Solid { color: light_colour(rng, 205.0, 240.0) },
            _ => {
                let top = light_colour(rng, 225.0, 252.0);
                let drop = rng.range(15.0, 45.0);
                let bottom = top.map(|v| (f32::from(v) - drop).clamp(0.0, 255.0) as u8);
                if rng.chance(0.75) {
                    Background::Gradient { top, bottom }
                } else {
                    Background::Gradient { top: bottom, bottom: top }
                }
            }
        };
        let shadow = if rng.chance(0.7) { rng.range(0.25, 0.55) } else { 0.0 };
        Backdrop { background, shadow }
    }
}

/// A pale colour: a random hue at low saturation around `lo..hi` brightness.
fn light_colour(rng: &mut Rng, lo: f32, hi: f32) -> [u8; 3] {
    let value = rng.range(lo, hi);
    let hue = rng.range(0.0, std::f32::consts::TAU);
    let sat = rng.range(4.0, 22.0);
    [0.0f32, 2.094, 4.189].map(|phase| (value + sat * (hue + phase).cos()).clamp(0.0, 255.0).round() as u8)
}

/// One catalog view: camera, lighting and backdrop.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CatalogShot {
    pub view: ViewParams,
    pub lighting: Lighting,
    pub backdrop: Backdrop,
}

/// Margin (fraction of the side) the object keeps from every edge of the frame.
pub const FRAME_MARGIN: f32 = 0.02;

impl CatalogShot {
    /// Draws a shot of `mesh` (its vertices keep [`FRAME_MARGIN`] inside the frame).
    pub fn sample(rng: &mut Rng, mesh: &ColoredMesh) -> Self {
        let view = ViewParams::sample_catalog(rng).fit_in_frame(&mesh.mesh.positions, FRAME_MARGIN);
        let lighting = Lighting::sample_catalog(rng);
        let backdrop = Backdrop::sample(rng);
        CatalogShot { view, lighting, backdrop }
    }

    /// The camera for a `width` x `height` image: focal length and crop follow the
    /// shorter side, so portrait and landscape frame the object like the square.
    pub fn camera(&self, width: usize, height: usize) -> Camera {
        let side = width.min(height).max(1);
        let mut cam = self.view.camera(side, side);
        cam.width = width;
        cam.height = height;
        cam
    }
}

/// Ground occlusion of one model: how much of the sky each point of the ground plane
/// under it loses, on a square grid in model X/Z.
#[derive(Debug, Clone, PartialEq)]
pub struct ContactShadow {
    ground_y: f32,
    half_extent: f32,
    cells: usize,
    occlusion: Vec<f32>,
}

impl ContactShadow {
    const CELLS: usize = 64;

    pub fn new(mesh: &ColoredMesh) -> Self {
        let m = &mesh.mesh;
        let ground_y = m.positions.iter().map(|p| p[1]).fold(f32::INFINITY, f32::min);
        let ground_y = if ground_y.is_finite() { ground_y } else { 0.0 };
        let (n, half_extent) = (Self::CELLS, 0.75f32);
        let cell = 2.0 * half_extent / n as f32;
        // Two occluder maps: parts touching the ground (sharp) and everything low (broad).
        let mut near = vec![0.0f32; n * n];
        let mut broad = vec![0.0f32; n * n];
        for tri in &m.triangles {
            let [a, b, c] = tri.map(|i| m.positions[i as usize]);
            let height = (a[1] + b[1] + c[1]) / 3.0 - ground_y;
            let (w_near, w_broad) = ((-height / 0.04).exp(), (-height / 0.35).exp());
            if w_broad < 0.02 {
                continue;
            }
            let to_cell = |v: f32| (v + half_extent) / cell - 0.5;
            let (ax, az, bx, bz, cx, cz) = (to_cell(a[0]), to_cell(a[2]), to_cell(b[0]), to_cell(b[2]), to_cell(c[0]), to_cell(c[2]));
            let x0 = ax.min(bx).min(cx).floor().max(0.0) as usize;
            let x1 = (ax.max(bx).max(cx).ceil().max(0.0) as usize).min(n - 1);
            let z0 = az.min(bz).min(cz).floor().max(0.0) as usize;
            let z1 = (az.max(bz).max(cz).ceil().max(0.0) as usize).min(n - 1);
            let area = (bx - ax) * (cz - az) - (bz - az) * (cx - ax);
            for z in z0..=z1 {
                for x in x0..=x1 {
                    let (px, pz) = (x as f32, z as f32);
                    // Inside the projected triangle, or a degenerate (vertical) one's cell.
                    let inside = if area.abs() < 1e-6 {
                        true
                    } else {
                        let e0 = ((cx - bx) * (pz - bz) - (cz - bz) * (px - bx)) / area;
                        let e1 = ((ax - cx) * (pz - cz) - (az - cz) * (px - cx)) / area;
                        e0 >= -0.05 && e1 >= -0.05 && e0 + e1 <= 1.05
                    };
                    if inside {
                        let i = z * n + x;
                        near[i] = near[i].max(w_near);
                        broad[i] = broad[i].max(w_broad);
                    }
                }
            }
        }
        blur_grid(&mut near, n, 1.2);
        blur_grid(&mut broad, n, 4.0);
        let occlusion = near.iter().zip(&broad).map(|(a, b)| (0.7 * a + 0.45 * b).min(1.0)).collect();
        ContactShadow { ground_y, half_extent, cells: n, occlusion }
    }

    /// Occlusion (0..1) at ground point (x, z), bilinear, 0 outside the grid.
    pub fn at(&self, x: f32, z: f32) -> f32 {
        let n = self.cells;
        let cell = 2.0 * self.half_extent / n as f32;
        let (fx, fz) = ((x + self.half_extent) / cell - 0.5, (z + self.half_extent) / cell - 0.5);
        if !(fx >= 0.0 && fz >= 0.0 && fx < (n - 1) as f32 && fz < (n - 1) as f32) {
            return 0.0;
        }
        let (ix, iz) = (fx as usize, fz as usize);
        let (tx, tz) = (fx - ix as f32, fz - iz as f32);
        let g = |xx: usize, zz: usize| self.occlusion[zz * n + xx];
        let top = g(ix, iz) * (1.0 - tx) + g(ix + 1, iz) * tx;
        let bottom = g(ix, iz + 1) * (1.0 - tx) + g(ix + 1, iz + 1) * tx;
        top * (1.0 - tz) + bottom * tz
    }

    /// Where the ray from `camera` through pixel centre (x, y) meets the ground, and
    /// that point's occlusion (0 when the ray looks above the horizon).
    fn along_ray(&self, camera: &Camera, x: f32, y: f32) -> f32 {
        let d = camera.ray_dir(x, y);
        if d[1] >= -1e-4 {
            return 0.0;
        }
        let t = (self.ground_y - camera.position[1]) / d[1];
        if t <= 0.0 {
            return 0.0;
        }
        self.at(camera.position[0] + t * d[0], camera.position[2] + t * d[2])
    }
}

/// Separable Gaussian blur of an n x n grid, zero outside.
fn blur_grid(grid: &mut [f32], n: usize, sigma: f32) {
    let (radius, kernel) = gaussian_kernel(sigma);
    let pass = |src: &[f32], horizontal: bool| -> Vec<f32> {
        let mut out = vec![0.0f32; n * n];
        for y in 0..n {
            for x in 0..n {
                let mut acc = 0.0;
                for (k, w) in kernel.iter().enumerate() {
                    let o = k as isize - radius;
                    let (xx, yy) = if horizontal { (x as isize + o, y as isize) } else { (x as isize, y as isize + o) };
                    if (0..n as isize).contains(&xx) && (0..n as isize).contains(&yy) {
                        acc += src[yy as usize * n + xx as usize] * w;
                    }
                }
                out[y * n + x] = acc;
            }
        }
        out
    };
    let h = pass(grid, true);
    let v = pass(&h, false);
    grid.copy_from_slice(&v);
}

/// The backdrop of a shot seen by `camera`, contact shadow included, in 0..255 floats.
pub fn backdrop_pixels(backdrop: &Backdrop, shadow: &ContactShadow, camera: &Camera) -> Vec<[f32; 3]> {
    let (w, h) = (camera.width, camera.height);
    let mut bg = background_pixels(&backdrop.background, w, h);
    if backdrop.shadow > 0.0 {
        for (i, px) in bg.iter_mut().enumerate() {
            let occ = shadow.along_ray(camera, (i % w) as f32 + 0.5, (i / w) as f32 + 0.5);
            if occ > 0.0 {
                let k = 1.0 - backdrop.shadow * occ;
                *px = px.map(|v| v * k);
            }
        }
    }
    bg
}

/// Straight-alpha `fg` over an opaque float background, rounded to 8-bit RGB.
pub fn composite(fg: &Rgba, bg: &[[f32; 3]]) -> image::RgbImage {
    let mut out = image::RgbImage::new(fg.width as u32, fg.height as u32);
    for (dst, px) in out.pixels_mut().zip(composite_f32(fg, bg)) {
        *dst = image::Rgb(px.map(|v| v.round().clamp(0.0, 255.0) as u8));
    }
    out
}

/// Renders a shot at `width` x `height`: the object's RGBA render (its alpha is the
/// silhouette) and the opaque product photo.
pub fn render_shot(
    shaded: &ShadedMesh,
    shadow: &ContactShadow,
    shot: &CatalogShot,
    width: usize,
    height: usize,
    supersample: usize,
) -> (Rgba, image::RgbImage) {
    let camera = shot.camera(width, height);
    let fg = render(shaded, &camera, &shot.lighting, supersample);
    let bg = backdrop_pixels(&shot.backdrop, shadow, &camera);
    let rgb = composite(&fg, &bg);
    (fg, rgb)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shapes::generate;
    use mono2mesh_core::Category;

    #[test]
    fn backdrops_follow_the_catalog_mix() {
        let mut rng = Rng::new(4);
        let (mut white, mut plain, mut gradient, mut shadowed) = (0, 0, 0, 0);
        for _ in 0..1000 {
            let b = Backdrop::sample(&mut rng);
            match b.background {
                Background::Solid { color } if color.iter().all(|&c| c >= 232) && color[1] >= 235 => white += 1,
                Background::Solid { color } => {
                    assert!(color.iter().all(|&c| c >= 180), "{color:?}");
                    plain += 1
                }
                Background::Gradient { top, bottom } => {
                    assert!(top.iter().chain(&bottom).all(|&c| c >= 150), "{top:?} {bottom:?}");
                    gradient += 1
                }
                other => panic!("unexpected {other:?}"),
            }
            shadowed += usize::from(b.shadow > 0.0);
        }
        // Light plain colours may land in the white range now and then.
        assert!((430..600).contains(&white), "{white}");
        assert!((220..340).contains(&plain), "{plain}");
        assert!((150..250).contains(&gradient), "{gradient}");
        assert!((620..780).contains(&shadowed), "{shadowed}");
    }

    #[test]
    fn a_shot_frames_identically_at_137_and_600_and_keeps_the_object_inside() {
        let model = generate(Category::Diningtable, 2, 1);
        let shaded = ShadedMesh::new(&model.mesh);
        let shadow = ContactShadow::new(&model.mesh);
        let mut rng = Rng::new(3);
        for _ in 0..4 {
            let shot = CatalogShot::sample(&mut rng, &model.mesh);
            let (small, small_rgb) = render_shot(&shaded, &shadow, &shot, 137, 137, 3);
            let (large, _) = render_shot(&shaded, &shadow, &shot, 600, 600, 2);
            assert_eq!(small_rgb.dimensions(), (137, 137));
            // Silhouette bounding boxes agree as fractions of the frame.
            let bbox = |img: &Rgba| {
                let (mut lo, mut hi) = ([usize::MAX; 2], [0usize; 2]);
                for (i, _) in img.silhouette().iter().enumerate().filter(|(_, s)| **s) {
                    let (x, y) = (i % img.width, i / img.width);
                    lo = [lo[0].min(x), lo[1].min(y)];
                    hi = [hi[0].max(x), hi[1].max(y)];
                }
                let s = img.width as f32;
                [lo[0] as f32 / s, lo[1] as f32 / s, (hi[0] + 1) as f32 / s, (hi[1] + 1) as f32 / s]
            };
            let (a, b) = (bbox(&small), bbox(&large));
            for k in 0..4 {
                assert!((a[k] - b[k]).abs() < 0.012, "{a:?} vs {b:?}");
                assert!(b[k] > 0.0 && b[k] < 1.0, "object touches the frame: {b:?}");
            }
            // No object pixel on the border.
            let alpha_on_border = (0..137).any(|i| small.alpha(i, 0) > 0 || small.alpha(i, 136) > 0 || small.alpha(0, i) > 0 || small.alpha(136, i) > 0);
            assert!(!alpha_on_border);
        }
    }

    #[test]
    fn contact_shadow_darkens_the_ground_under_the_object_only() {
        let model = generate(Category::Sofa, 1, 0);
        let shadow = ContactShadow::new(&model.mesh);
        assert!(shadow.at(0.0, 0.0) > 0.5, "{}", shadow.at(0.0, 0.0));
        assert_eq!(shadow.at(0.74, 0.74), 0.0);
        assert!(shadow.at(0.7, 0.7) < 0.05);
    }
}
