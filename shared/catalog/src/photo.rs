//! "Photo" mode: larger opaque RGB images of catalog models, for exercising the quality
//! gate and the classifier with realistic inputs.
//!
//! * [`catalog_photo`]: a clean product shot in exactly the synthetic catalog's style
//!   (studio backdrop and lighting, jittered camera, textures), just larger;
//! * [`photo`] with [`PhotoSettings`]: varied backgrounds with optional blur, exposure
//!   change and sensor noise (the degraded photos the gate must reject).

use crate::camera::ViewParams;
use crate::render::{render, Lighting, Rgba, ShadedMesh};
use crate::rng::Rng;
use crate::shapes::Model;
use crate::studio::{render_shot, CatalogShot, ContactShadow};
use serde::{Deserialize, Serialize};

/// A clean catalog product shot of `model`, `width` x `height`, drawn from `rng` exactly
/// like one view of `dataset synth` (same backdrops, lighting, textures and camera
/// jitter; focal length and crop follow the shorter side), plus faint sensor noise
/// (sigma below 1.5 levels). Returns the shot it drew too.
pub fn catalog_photo(model: &Model, width: usize, height: usize, rng: &mut Rng) -> (image::RgbImage, CatalogShot) {
    let (w, h) = (width.max(1), height.max(1));
    let shot = CatalogShot::sample(rng, &model.mesh);
    let supersample = if w.min(h) >= 400 { 2 } else { 3 };
    let (_, mut rgb) = render_shot(&ShadedMesh::new(&model.mesh), &ContactShadow::new(&model.mesh), &shot, w, h, supersample);
    let sigma = rng.range(0.0, 1.5);
    if sigma > 0.0 {
        for px in rgb.pixels_mut() {
            for c in px.0.iter_mut() {
                *c = (f32::from(*c) + gaussian(rng) * sigma).round().clamp(0.0, 255.0) as u8;
            }
        }
    }
    (rgb, shot)
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Background {
    Solid { color: [u8; 3] },
    /// Top-to-bottom linear gradient.
    Gradient { top: [u8; 3], bottom: [u8; 3] },
    /// Smooth multi-octave value noise between two colours (`cells` = coarsest grid).
    Noise { a: [u8; 3], b: [u8; 3], cells: u32, seed: u64 },
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PhotoSettings {
    pub width: usize,
    pub height: usize,
    pub background: Background,
    /// Gaussian blur sigma in pixels (0 = sharp).
    pub blur_sigma: f32,
    /// Brightness multiplier (1 = as rendered; < 1 under-, > 1 over-exposed).
    pub exposure: f32,
    /// Standard deviation of additive sensor noise, in 0..255 units.
    pub noise: f32,
}

impl PhotoSettings {
    /// A plain, sharp, well-exposed photo on a light grey background.
    pub fn clean(width: usize, height: usize) -> Self {
        PhotoSettings { width, height, background: Background::Solid { color: [235, 235, 235] }, blur_sigma: 0.0, exposure: 1.0, noise: 0.0 }
    }

    /// Random background; blur and exposure only when `degrade` (so callers can make
    /// clean and degraded sets on purpose).
    pub fn sample(rng: &mut Rng, width: usize, height: usize, degrade: bool) -> Self {
        fn color(rng: &mut Rng, lo: f32, hi: f32) -> [u8; 3] {
            let base = rng.range(lo, hi);
            std::array::from_fn(|_| ((base + rng.range(-25.0, 25.0)).clamp(0.0, 255.0)) as u8)
        }
        let background = match rng.below(3) {
            0 => Background::Solid { color: color(rng, 120.0, 250.0) },
            1 => Background::Gradient { top: color(rng, 150.0, 250.0), bottom: color(rng, 60.0, 200.0) },
            _ => {
                let (a, b) = (color(rng, 80.0, 200.0), color(rng, 150.0, 250.0));
                Background::Noise { a, b, cells: 4 + rng.below(12) as u32, seed: rng.next_u64() }
            }
        };
        let (blur_sigma, exposure) = if degrade {
            match rng.below(3) {
                0 => (rng.range(2.0, 6.0), 1.0),
                1 => (0.0, if rng.chance(0.5) { rng.range(0.15, 0.4) } else { rng.range(2.0, 3.5) }),
                _ => (rng.range(1.5, 4.0), rng.range(0.3, 2.5)),
            }
        } else {
            (0.0, rng.range(0.9, 1.1))
        };
        PhotoSettings { width, height, background, blur_sigma, exposure, noise: rng.range(0.0, 4.0) }
    }
}

/// Renders `model` from `view` as a photo. The object is framed like an R2N2 view
/// (same camera model) on the chosen background.
pub fn photo(model: &Model, view: &ViewParams, lighting: &Lighting, settings: &PhotoSettings, rng: &mut Rng) -> image::RgbImage {
    let (w, h) = (settings.width.max(1), settings.height.max(1));
    // Focal length follows the shorter side so portrait and landscape both frame the object.
    let side = w.min(h);
    let mut cam = view.camera(side, side);
    cam.width = w;
    cam.height = h;
    let supersample = if side >= 400 { 2 } else { 3 };
    let fg = render(&ShadedMesh::new(&model.mesh), &cam, lighting, supersample);
    let bg = background_pixels(&settings.background, w, h);
    let mut rgb = composite_f32(&fg, &bg);
    if settings.blur_sigma > 0.0 {
        gaussian_blur(&mut rgb, w, h, settings.blur_sigma);
    }
    let mut out = image::RgbImage::new(w as u32, h as u32);
    for (i, px) in out.pixels_mut().enumerate() {
        let c: [u8; 3] = std::array::from_fn(|k| {
            let noise = if settings.noise > 0.0 { gaussian(rng) * settings.noise } else { 0.0 };
            (rgb[i][k] * settings.exposure + noise).round().clamp(0.0, 255.0) as u8
        });
        *px = image::Rgb(c);
    }
    out
}

/// Straight-alpha `fg` over an opaque float background, unrounded (0..255 floats): the
/// one blend every photo, catalog shot and contact-sheet tile is made with.
pub(crate) fn composite_f32(fg: &Rgba, bg: &[[f32; 3]]) -> Vec<[f32; 3]> {
    fg.pixels
        .chunks_exact(4)
        .zip(bg)
        .map(|(p, b)| {
            let a = f32::from(p[3]) / 255.0;
            std::array::from_fn(|k| f32::from(p[k]) * a + b[k] * (1.0 - a))
        })
        .collect()
}

pub(crate) fn background_pixels(bg: &Background, w: usize, h: usize) -> Vec<[f32; 3]> {
    let mix = |a: [u8; 3], b: [u8; 3], t: f32| -> [f32; 3] { std::array::from_fn(|k| f32::from(a[k]) * (1.0 - t) + f32::from(b[k]) * t) };
    match *bg {
        Background::Solid { color } => vec![color.map(f32::from); w * h],
        Background::Gradient { top, bottom } => (0..w * h).map(|i| mix(top, bottom, (i / w) as f32 / (h.max(2) - 1) as f32)).collect(),
        Background::Noise { a, b, cells, seed } => {
            let cells = cells.max(1) as usize;
            let octaves = [(cells, 0.6f32), (cells * 3, 0.3), (cells * 9, 0.1)];
            let grids: Vec<(usize, Vec<f32>)> = octaves
                .iter()
                .enumerate()
                .map(|(o, &(n, _))| {
                    let mut r = Rng::derive(seed, "noise", o as u64);
                    (n, (0..(n + 1) * (n + 1)).map(|_| r.unit() as f32).collect())
                })
                .collect();
            (0..w * h)
                .map(|i| {
                    let (x, y) = ((i % w) as f32 / w as f32, (i / w) as f32 / h as f32);
                    let mut t = 0.0;
                    for ((n, g), &(_, weight)) in grids.iter().zip(&octaves) {
                        let (fx, fy) = (x * *n as f32, y * *n as f32);
                        let (ix, iy) = ((fx as usize).min(n - 1), (fy as usize).min(n - 1));
                        let (tx, ty) = (smooth(fx - ix as f32), smooth(fy - iy as f32));
                        let at = |xx: usize, yy: usize| g[yy * (n + 1) + xx];
                        let top = at(ix, iy) * (1.0 - tx) + at(ix + 1, iy) * tx;
                        let bottom = at(ix, iy + 1) * (1.0 - tx) + at(ix + 1, iy + 1) * tx;
                        t += weight * (top * (1.0 - ty) + bottom * ty);
                    }
                    mix(a, b, t)
                })
                .collect()
        }
    }
}

fn smooth(t: f32) -> f32 {
    t * t * (3.0 - 2.0 * t)
}

/// Standard normal draw (Box-Muller).
fn gaussian(rng: &mut Rng) -> f32 {
    let u1 = rng.unit().max(1e-12);
    let u2 = rng.unit();
    ((-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()) as f32
}

/// A normalised Gaussian kernel of radius ceil(3 sigma): (radius, 2 radius + 1 weights).
pub(crate) fn gaussian_kernel(sigma: f32) -> (isize, Vec<f32>) {
    let radius = (sigma * 3.0).ceil() as isize;
    let kernel: Vec<f32> = (-radius..=radius).map(|i| (-(i * i) as f32 / (2.0 * sigma * sigma)).exp()).collect();
    let total: f32 = kernel.iter().sum();
    (radius, kernel.iter().map(|k| k / total).collect())
}

/// Separable Gaussian blur with clamped edges.
pub fn gaussian_blur(px: &mut [[f32; 3]], w: usize, h: usize, sigma: f32) {
    let (radius, kernel) = gaussian_kernel(sigma);
    let mut tmp = vec![[0.0f32; 3]; px.len()];
    blur_pass(px, &mut tmp, w, h, &kernel, radius, true);
    blur_pass(&tmp, px, w, h, &kernel, radius, false);
}

/// One direction of [`gaussian_blur`]: `dst` is `src` convolved along rows
/// (`horizontal`) or columns, edges clamped.
fn blur_pass(src: &[[f32; 3]], dst: &mut [[f32; 3]], w: usize, h: usize, kernel: &[f32], radius: isize, horizontal: bool) {
    for y in 0..h {
        for x in 0..w {
            let mut acc = [0.0f32; 3];
            for (k, wgt) in kernel.iter().enumerate() {
                let o = k as isize - radius;
                let i = if horizontal {
                    y * w + (x as isize + o).clamp(0, w as isize - 1) as usize
                } else {
                    (y as isize + o).clamp(0, h as isize - 1) as usize * w + x
                };
                for c in 0..3 {
                    acc[c] += src[i][c] * wgt;
                }
            }
            dst[y * w + x] = acc;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shapes::generate;
    use mono2mesh_core::Category;

    /// Number of strong steps (> 100 summed levels) between horizontal neighbours:
    /// a sharpness proxy that blur drives down.
    fn sharpness(img: &image::RgbImage) -> f32 {
        let (w, h) = img.dimensions();
        let mut strong = 0;
        for y in 0..h {
            for x in 1..w {
                let (a, b) = (img.get_pixel(x, y), img.get_pixel(x - 1, y));
                let d: f32 = (0..3).map(|k| (f32::from(a[k]) - f32::from(b[k])).abs()).sum();
                strong += usize::from(d > 100.0);
            }
        }
        strong as f32
    }

    fn mean(img: &image::RgbImage) -> f32 {
        img.pixels().map(|p| p.0.iter().map(|&v| f32::from(v)).sum::<f32>()).sum::<f32>() / (img.len() as f32)
    }

    #[test]
    fn photos_have_size_background_blur_and_exposure() {
        let model = generate(Category::Car, 4, 0);
        let view = ViewParams { azimuth_deg: 40.0, elevation_deg: 20.0, in_plane_deg: 0.0, distance_ratio: 0.7, fov: 25.0, crop_x: 0.0, crop_y: 0.0 };
        let mut rng = Rng::new(1);
        let clean = PhotoSettings { noise: 0.0, ..PhotoSettings::clean(320, 240) };
        let sharp = photo(&model, &view, &Lighting::default(), &clean, &mut rng);
        assert_eq!(sharp.dimensions(), (320, 240));
        assert_eq!(sharp.get_pixel(0, 0).0, [235, 235, 235]);
        assert_ne!(sharp.get_pixel(160, 120).0, [235, 235, 235], "object in the middle");
        let blurred = photo(&model, &view, &Lighting::default(), &PhotoSettings { blur_sigma: 4.0, ..clean }, &mut rng);
        assert!(sharpness(&blurred) < 0.3 * sharpness(&sharp), "{} vs {}", sharpness(&blurred), sharpness(&sharp));
        let dark = photo(&model, &view, &Lighting::default(), &PhotoSettings { exposure: 0.3, ..clean }, &mut rng);
        assert!(mean(&dark) < 0.4 * mean(&sharp));
        for kind in 0..3u64 {
            let mut r = Rng::new(kind * 7 + 3);
            let s = PhotoSettings::sample(&mut r, 64, 48, kind == 1);
            let img = photo(&model, &view, &Lighting::default(), &s, &mut r);
            assert_eq!(img.dimensions(), (64, 48));
        }
        // Catalog photos: same size, deterministic, object inside a light frame.
        let (a, shot) = catalog_photo(&model, 200, 150, &mut Rng::new(9));
        let (b, _) = catalog_photo(&model, 200, 150, &mut Rng::new(9));
        assert_eq!(a, b);
        assert_eq!(a.dimensions(), (200, 150));
        assert!((10.0..40.0).contains(&shot.view.elevation_deg));
        let noise = background_pixels(&Background::Noise { a: [0, 0, 0], b: [255, 255, 255], cells: 4, seed: 1 }, 64, 64);
        let spread = noise.iter().map(|p| p[0]).fold((255.0f32, 0.0f32), |(lo, hi), v| (lo.min(v), hi.max(v)));
        assert!(spread.1 - spread.0 > 60.0, "noise background too flat: {spread:?}");
    }
}
