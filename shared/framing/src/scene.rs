//! The object in a busy scene, where no plain backdrop gives it away ([`scene_mask`]): a
//! colour model of object and background, seeded by where product photos put things (the
//! object in the middle, background along the border) and refined a few times, in the
//! spirit of GrabCut without its graph cut.
//!
//! 1. The image is box-averaged to at most [`SCENE_SIDE`] pixels a side.
//! 2. Seeds: the border band ([`SEED_BORDER`] of the shorter side) is background; the
//!    central box ([`SEED_CENTRE`] of each side) is object.
//! 3. [`ROUNDS`] times: colour histograms (16 levels a channel, add-one smoothed) of the
//!    object and of the background give each pixel a log likelihood ratio; a centre prior
//!    (falling with the squared distance from the middle) is added; pixels above 0 are
//!    object, the border band never is. The mask is smoothed (3 x 3 majority), its part
//!    that holds the most of the central box is kept and small holes are filled, and the
//!    histograms are taken again from it and from its complement.
//! 4. A mask under [`MIN_SCENE_FRACTION`] or over [`MAX_SCENE_FRACTION`] of the frame is
//!    [`FramingError::NoObject`]: the colours do not separate.
//!
//! It is a heuristic, used only where the plain-backdrop analysis gives up, and only to
//! colour assets (the refine stage): a wrong mask shows as a poor silhouette fit, which the
//! quality score reports. Framing never uses it.

use image::imageops::{self, FilterType};
use image::{GrayImage, Luma, RgbImage};

use crate::FramingError;

/// Longest side of the copy the scene is analysed on.
pub const SCENE_SIDE: u32 = 160;
/// Width of the background seed band, as a fraction of the shorter side.
pub const SEED_BORDER: f32 = 0.05;
/// Side of the central object seed box, as a fraction of each side.
pub const SEED_CENTRE: f32 = 0.3;
/// Refinement rounds.
pub const ROUNDS: usize = 5;
/// Smallest and largest mask, as a fraction of the frame.
pub const MIN_SCENE_FRACTION: f32 = 0.03;
pub const MAX_SCENE_FRACTION: f32 = 0.85;
/// Weight of the centre prior: the log-odds taken off at the frame's corner.
const CENTRE_PRIOR: f32 = 3.0;
const LEVELS: usize = 16;
const BINS: usize = LEVELS * LEVELS * LEVELS;

fn bin(px: &[u8; 3]) -> usize {
    let q = |v: u8| usize::from(v) * LEVELS / 256;
    (q(px[0]) * LEVELS + q(px[1])) * LEVELS + q(px[2])
}

/// Log of the add-one smoothed share of each colour bin among `pixels` where `take`.
fn log_histogram(bins: &[usize], take: impl Fn(usize) -> bool) -> Vec<f32> {
    let mut counts = vec![1.0f32; BINS];
    let mut total = BINS as f32;
    for (i, &b) in bins.iter().enumerate() {
        if take(i) {
            counts[b] += 1.0;
            total += 1.0;
        }
    }
    counts.iter().map(|c| (c / total).ln()).collect()
}

/// The object's mask in a busy scene (see the module docs), at `rgb`'s size: 255 object,
/// 0 background.
pub fn scene_mask(rgb: &RgbImage) -> Result<GrayImage, FramingError> {
    let (width, height) = rgb.dimensions();
    if width < 8 || height < 8 {
        return Err(FramingError::NoObject(format!("the image is too small to find an object in ({width}x{height})")));
    }
    let scale = (SCENE_SIDE as f32 / width.max(height) as f32).min(1.0);
    let (w, h) = (((width as f32 * scale).round() as u32).max(8), ((height as f32 * scale).round() as u32).max(8));
    let small = imageops::resize(rgb, w, h, FilterType::Triangle);
    let (w, h) = (w as usize, h as usize);
    let bins: Vec<usize> = small.pixels().map(|p| bin(&p.0)).collect();
    let band = ((w.min(h) as f32 * SEED_BORDER).round() as usize).max(1);
    let in_band = |i: usize| {
        let (x, y) = (i % w, i / w);
        x < band || y < band || x + band >= w || y + band >= h
    };
    let (cx0, cx1) = ((w as f32 * (0.5 - SEED_CENTRE / 2.0)) as usize, (w as f32 * (0.5 + SEED_CENTRE / 2.0)).ceil() as usize);
    let (cy0, cy1) = ((h as f32 * (0.5 - SEED_CENTRE / 2.0)) as usize, (h as f32 * (0.5 + SEED_CENTRE / 2.0)).ceil() as usize);
    let in_centre = |i: usize| {
        let (x, y) = (i % w, i / w);
        (cx0..cx1).contains(&x) && (cy0..cy1).contains(&y)
    };
    let prior: Vec<f32> = (0..w * h)
        .map(|i| {
            let dx = (i % w) as f32 / (w - 1) as f32 - 0.5;
            let dy = (i / w) as f32 / (h - 1) as f32 - 0.5;
            -CENTRE_PRIOR * (dx * dx + dy * dy) / 0.5
        })
        .collect();

    let mut object: Vec<bool> = (0..w * h).map(in_centre).collect();
    let mut background: Vec<bool> = (0..w * h).map(in_band).collect();
    for _ in 0..ROUNDS {
        let fg = log_histogram(&bins, |i| object[i]);
        let bg = log_histogram(&bins, |i| background[i]);
        let raw: Vec<bool> = (0..w * h).map(|i| !in_band(i) && fg[bins[i]] - bg[bins[i]] + prior[i] > 0.0).collect();
        let smooth = majority(&majority(&raw, w, h), w, h);
        let kept = crate::fill_holes(central_part(&smooth, w, h, &in_centre), w, h);
        let empty = kept.iter().all(|&m| !m);
        background = kept.iter().map(|&m| !m).collect();
        object = kept;
        if empty {
            break;
        }
    }
    let area = object.iter().filter(|&&m| m).count() as f32 / (w * h) as f32;
    if !(MIN_SCENE_FRACTION..=MAX_SCENE_FRACTION).contains(&area) {
        return Err(FramingError::NoObject(format!(
            "the colours of the middle and of the border do not separate an object ({:.0}% of the frame would be object)",
            area * 100.0
        )));
    }
    Ok(GrayImage::from_fn(width, height, |x, y| {
        let (sx, sy) = (((x as f32 + 0.5) * w as f32 / width as f32) as usize, ((y as f32 + 0.5) * h as f32 / height as f32) as usize);
        Luma([if object[sy.min(h - 1) * w + sx.min(w - 1)] { 255 } else { 0 }])
    }))
}

/// 3 x 3 majority vote (5 of 9; outside the image counts as background).
fn majority(mask: &[bool], w: usize, h: usize) -> Vec<bool> {
    (0..w * h)
        .map(|i| {
            let (x, y) = ((i % w) as isize, (i / w) as isize);
            let mut n = 0;
            for dy in -1..=1 {
                for dx in -1..=1 {
                    let (nx, ny) = (x + dx, y + dy);
                    if nx >= 0 && ny >= 0 && (nx as usize) < w && (ny as usize) < h && mask[ny as usize * w + nx as usize] {
                        n += 1;
                    }
                }
            }
            n >= 5
        })
        .collect()
}

/// The connected part (4-neighbours) holding the most pixels of the central seed box;
/// the largest part when none reaches it.
fn central_part(mask: &[bool], w: usize, h: usize, in_centre: &impl Fn(usize) -> bool) -> Vec<bool> {
    let (labels, parts) = crate::components(mask, w, h);
    if parts.is_empty() {
        return vec![false; mask.len()];
    }
    let mut central = vec![0usize; parts.len()];
    for (i, &l) in labels.iter().enumerate() {
        if l != 0 && in_centre(i) {
            central[l as usize - 1] += 1;
        }
    }
    let best = (0..parts.len()).max_by_key(|&p| (central[p], parts[p].0)).unwrap_or(0);
    labels.iter().map(|&l| l as usize == best + 1).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::Rgb;

    /// A cluttered scene: stripes and blotches of many colours, with a solid object
    /// (an ellipse of one colour with a darker band) in the middle.
    fn scene(w: u32, h: u32, seed: u32) -> (RgbImage, Vec<bool>) {
        let mut truth = vec![false; (w * h) as usize];
        let image = RgbImage::from_fn(w, h, |x, y| {
            let (fx, fy) = (x as f32 / w as f32 - 0.52, y as f32 / h as f32 - 0.5);
            if (fx / 0.22).powi(2) + (fy / 0.3).powi(2) < 1.0 {
                truth[(y * w + x) as usize] = true;
                return if fy.abs() < 0.05 { Rgb([20, 60, 150]) } else { Rgb([40, 110, 220]) };
            }
            let stripe = ((x / 23 + y / 17 + seed) % 5) as u8;
            let noise = ((x.wrapping_mul(2654435761) ^ y.wrapping_mul(40503)) >> 7) as u8 % 25;
            match stripe {
                0 => Rgb([200 + noise / 2, 180, 120]),
                1 => Rgb([90, 140 + noise, 60]),
                2 => Rgb([160, 150, 140 + noise]),
                3 => Rgb([230, 220 - noise, 200]),
                _ => Rgb([120 + noise, 80, 70]),
            }
        });
        (image, truth)
    }

    #[test]
    fn a_distinct_object_in_clutter_is_found() {
        for seed in 0..3 {
            let (image, truth) = scene(480, 360, seed);
            let mask = scene_mask(&image).unwrap();
            assert_eq!(mask.dimensions(), (480, 360));
            let both = mask.pixels().zip(&truth).filter(|(m, &t)| m[0] == 255 && t).count();
            let either = mask.pixels().zip(&truth).filter(|(m, &t)| m[0] == 255 || t).count();
            let iou = both as f32 / either as f32;
            assert!(iou > 0.85, "seed {seed}: IoU {iou}");
        }
    }

    #[test]
    fn a_scene_without_a_distinct_middle_is_no_object() {
        let noise = RgbImage::from_fn(300, 300, |x, y| {
            let v = ((x.wrapping_mul(2654435761) ^ y.wrapping_mul(40503)) >> 5) as u8;
            Rgb([v, v.wrapping_mul(3), v.wrapping_mul(7)])
        });
        assert!(matches!(scene_mask(&noise), Err(FramingError::NoObject(_))));
        assert!(matches!(scene_mask(&RgbImage::new(4, 4)), Err(FramingError::NoObject(_))));
        let flat = RgbImage::from_pixel(200, 100, Rgb([128, 128, 128]));
        assert!(matches!(scene_mask(&flat), Err(FramingError::NoObject(_))));
    }
}
