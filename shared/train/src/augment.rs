//! The official Pix2Vox training transform, in its order:
//! RandomCrop (128 at a random offset, resized to 224) -> RandomBackground ([225, 255] per
//! channel behind alpha == 0) -> ColorJitter (brightness, contrast, saturation 0.4, random
//! order) -> RandomNoise (PCA lighting, std 0.1) -> Normalize (0.5, 0.5) -> RandomFlip
//! (horizontal, p 0.5) -> RandomPermuteRGB.
//!
//! As upstream, one draw of every random parameter is shared by all views of a sample, and
//! the flip mirrors only the images, not the voxels (the official code does the same; turn
//! it off with `flip: false` if that label noise matters for your data).
//!
//! Images that are not render-like (no alpha, or larger than 256 px: photos, Pascal3D+
//! crops) are first scaled so their centred square is 137 px, the side of an R2N2 render,
//! which keeps the crop's field of view the same as at inference ([`mono2mesh_vision::pix2vox_preprocess`]).

use image::{DynamicImage, GenericImageView, RgbaImage};
use mono2mesh_catalog::Rng;
use serde::{Deserialize, Serialize};

use mono2mesh_vision::pix2vox_preprocess::{resolve_kind, BgraImage, InputKind, PreprocessError, CROP_SIZE, INPUT_SIZE, MEAN, STD};

/// Side of an R2N2 render: photos are brought to it before the random crop.
const RENDER_SIZE: u32 = 137;

/// Eigenvalues and eigenvectors of ImageNet's RGB covariance (AlexNet's PCA lighting), as
/// the official `RandomNoise` uses them.
const PCA_EIGVALS: [f32; 3] = [0.2175, 0.0188, 0.0045];
const PCA_EIGVECS: [[f32; 3]; 3] = [[-0.5675, 0.7192, 0.4009], [-0.5808, -0.0045, -0.8140], [-0.5836, -0.6948, 0.4203]];

/// Which augmentations run, with the official values as the default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AugmentConfig {
    /// Random 128 crop (else the centre crop of the test transform).
    pub random_crop: bool,
    /// Inclusive range of the random background grey per channel (0..255).
    pub background: [u8; 2],
    pub brightness: f32,
    pub contrast: f32,
    pub saturation: f32,
    /// Standard deviation of the PCA lighting noise.
    pub noise_std: f32,
    pub flip: bool,
    pub permute_channels: bool,
}

impl Default for AugmentConfig {
    fn default() -> Self {
        AugmentConfig {
            random_crop: true,
            background: [225, 255],
            brightness: 0.4,
            contrast: 0.4,
            saturation: 0.4,
            noise_std: 0.1,
            flip: true,
            permute_channels: true,
        }
    }
}

impl AugmentConfig {
    /// No randomness at all: the test transform's crop and a fixed 240 background.
    pub fn none() -> Self {
        AugmentConfig {
            random_crop: false,
            background: [240, 240],
            brightness: 0.0,
            contrast: 0.0,
            saturation: 0.0,
            noise_std: 0.0,
            flip: false,
            permute_channels: false,
        }
    }
}

/// The random parameters of one sample, drawn once and applied to each of its views.
#[derive(Debug, Clone, PartialEq)]
struct Draw {
    crop_fraction: [f64; 2],
    background: [f32; 3],
    /// (attribute index 0 brightness / 1 contrast / 2 saturation, factor), in applied order.
    jitter: [(usize, f32); 3],
    noise: [f32; 3],
    flip: bool,
    permutation: [usize; 3],
}

impl Draw {
    fn new(config: &AugmentConfig, rng: &mut Rng) -> Self {
        let crop_fraction = if config.random_crop { [rng.unit(), rng.unit()] } else { [0.5, 0.5] };
        let [lo, hi] = config.background;
        let (lo, hi) = (lo.min(hi) as usize, lo.max(hi) as usize);
        let background = [0; 3].map(|_: i32| (lo + rng.below(hi - lo + 1)) as f32 / 255.0);
        let factors = [config.brightness, config.contrast, config.saturation].map(|s| 1.0 + rng.range(-s, s));
        let mut order = [0usize, 1, 2];
        shuffle(&mut order, rng);
        let jitter = order.map(|i| (i, factors[i]));
        let alpha = [0; 3].map(|_: i32| normal(rng) * config.noise_std);
        let noise = [0, 1, 2].map(|i| (0..3).map(|j| PCA_EIGVECS[i][j] * alpha[j] * PCA_EIGVALS[j]).sum());
        let flip = config.flip && rng.chance(0.5);
        let mut permutation = [0usize, 1, 2];
        if config.permute_channels {
            shuffle(&mut permutation, rng);
        }
        Draw { crop_fraction, background, jitter, noise, flip, permutation }
    }
}

fn shuffle(items: &mut [usize], rng: &mut Rng) {
    for i in (1..items.len()).rev() {
        items.swap(i, rng.below(i + 1));
    }
}

/// Standard normal (Box-Muller).
fn normal(rng: &mut Rng) -> f32 {
    let u1 = rng.unit().max(f64::MIN_POSITIVE);
    let u2 = rng.unit();
    ((-2.0f64 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()) as f32
}

/// Augment the views of one sample; returns `views * 3 * 224 * 224` values (view-major,
/// then BGR channel-major), ready for a `[V, 3, 224, 224]` tensor.
pub fn augment_views(views: &[DynamicImage], config: &AugmentConfig, rng: &mut Rng) -> Result<Vec<f32>, PreprocessError> {
    let draw = Draw::new(config, rng);
    let plane = INPUT_SIZE * INPUT_SIZE;
    let mut out = Vec::with_capacity(views.len() * 3 * plane);
    for view in views {
        out.extend(augment_one(view, &draw)?);
    }
    Ok(out)
}

fn augment_one(image: &DynamicImage, draw: &Draw) -> Result<Vec<f32>, PreprocessError> {
    let (w, h) = image.dimensions();
    if w < 8 || h < 8 {
        return Err(PreprocessError::TooSmall { width: w, height: h });
    }
    let has_alpha = image.color().has_alpha();
    let rgba: RgbaImage = match resolve_kind(image, InputKind::Auto) {
        InputKind::Photo => {
            let side = w.min(h);
            let square = image.crop_imm((w - side) / 2, (h - side) / 2, side, side).to_rgba8();
            image::imageops::resize(&square, RENDER_SIZE, RENDER_SIZE, image::imageops::FilterType::Triangle)
        }
        _ => image.to_rgba8(),
    };
    let bgra = BgraImage::from_rgba(&rgba);
    let (w, h) = (bgra.width, bgra.height);
    // RandomCrop: offsets int((side - 128) * U[0, 1)), only when both sides exceed 128.
    let cropped = if w > CROP_SIZE && h > CROP_SIZE {
        let x0 = ((w - CROP_SIZE) as f64 * draw.crop_fraction[0]) as usize;
        let y0 = ((h - CROP_SIZE) as f64 * draw.crop_fraction[1]) as usize;
        bgra.crop(x0, y0, CROP_SIZE, CROP_SIZE)
    } else {
        bgra
    };
    let resized = cropped.resize_linear(INPUT_SIZE, INPUT_SIZE);
    let n = INPUT_SIZE * INPUT_SIZE;
    // HWC, 3 channels
    let mut px = vec![0f32; n * 3];
    for i in 0..n {
        let src = &resized.data[i * 4..i * 4 + 4];
        let transparent = has_alpha && src[3] == 0.0;
        for c in 0..3 {
            px[i * 3 + c] = if transparent { draw.background[c] } else { src[c] };
        }
    }
    for &(attribute, factor) in &draw.jitter {
        adjust(&mut px, attribute, factor);
    }
    for i in 0..n {
        for c in 0..3 {
            px[i * 3 + c] = (px[i * 3 + c] + draw.noise[c] - MEAN) / STD;
        }
    }
    let mut chw = vec![0f32; 3 * n];
    for y in 0..INPUT_SIZE {
        for x in 0..INPUT_SIZE {
            let sx = if draw.flip { INPUT_SIZE - 1 - x } else { x };
            let src = (y * INPUT_SIZE + sx) * 3;
            for c in 0..3 {
                chw[c * n + y * INPUT_SIZE + x] = px[src + draw.permutation[c]];
            }
        }
    }
    Ok(chw)
}

/// ColorJitter's `alpha_blend(img, other, factor) = (1 - factor) * other + factor * img`
/// with `other` = 0 (brightness), the image's mean grey (contrast) or the pixel's grey
/// (saturation); grey = 0.114 B + 0.587 G + 0.299 R on BGR data.
fn adjust(px: &mut [f32], attribute: usize, factor: f32) {
    let grey = |p: &[f32]| 0.114 * p[0] + 0.587 * p[1] + 0.299 * p[2];
    match attribute {
        0 => px.iter_mut().for_each(|v| *v *= factor),
        1 => {
            let pixels = px.len() / 3;
            let mean = px.chunks_exact(3).map(grey).sum::<f32>() / pixels.max(1) as f32;
            px.iter_mut().for_each(|v| *v = (1.0 - factor) * mean + factor * *v);
        }
        _ => px.chunks_exact_mut(3).for_each(|p| {
            let g = grey(p);
            p.iter_mut().for_each(|v| *v = (1.0 - factor) * g + factor * *v);
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mono2mesh_vision::pix2vox_preprocess::preprocess_render;

    fn render_like() -> DynamicImage {
        let mut rgba = RgbaImage::from_pixel(137, 137, image::Rgba([0, 0, 0, 0]));
        for y in 30..110 {
            for x in 40..100 {
                rgba.put_pixel(x, y, image::Rgba([200, 60, 20, 255]));
            }
        }
        DynamicImage::ImageRgba8(rgba)
    }

    #[test]
    fn without_augmentation_it_is_the_test_transform() {
        let image = render_like();
        let mut config = AugmentConfig::none();
        config.background = [240, 240];
        let out = augment_views(std::slice::from_ref(&image), &config, &mut Rng::new(1)).unwrap();
        let reference = preprocess_render(&image).unwrap();
        let reference: Vec<f32> = Vec::<f32>::try_from(reference.flatten(0, -1)).unwrap();
        assert_eq!(out.len(), reference.len());
        let max_diff = out.iter().zip(&reference).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        assert!(max_diff < 1e-6, "{max_diff}");
    }

    #[test]
    fn draws_are_seeded_shared_across_views_and_vary_between_samples() {
        let image = render_like();
        let views = [image.clone(), image];
        let config = AugmentConfig::default();
        let a = augment_views(&views, &config, &mut Rng::derive(5, "aug", 0)).unwrap();
        let b = augment_views(&views, &config, &mut Rng::derive(5, "aug", 0)).unwrap();
        assert_eq!(a, b, "same seed, same pixels");
        let plane = 3 * INPUT_SIZE * INPUT_SIZE;
        assert_eq!(a[..plane], a[plane..], "one draw for every view of a sample");
        let c = augment_views(&views, &config, &mut Rng::derive(5, "aug", 1)).unwrap();
        assert_ne!(a, c);
        assert!(a.iter().all(|v| v.is_finite()));
    }

    #[test]
    fn background_lands_in_its_range_and_flip_mirrors() {
        let image = render_like();
        let config = AugmentConfig { flip: true, ..AugmentConfig::none() };
        // Find a draw that flips and one that does not (p = 0.5 each).
        let mut flipped = None;
        let mut straight = None;
        for i in 0..64 {
            let mut rng = Rng::derive(2, "flip", i);
            let draw = Draw::new(&config, &mut rng.clone());
            let out = augment_views(std::slice::from_ref(&image), &config, &mut rng).unwrap();
            if draw.flip { flipped.get_or_insert(out); } else { straight.get_or_insert(out); }
        }
        let (flipped, straight) = (flipped.unwrap(), straight.unwrap());
        let n = INPUT_SIZE;
        for y in [0, 100, 223] {
            for x in [0, 57, 120] {
                assert_eq!(flipped[y * n + x], straight[y * n + (n - 1 - x)]);
            }
        }
        // corner is background: 240 -> (240/255 - 0.5) / 0.5
        assert!((straight[0] - (240.0 / 255.0 - 0.5) / 0.5).abs() < 1e-6);
        let config = AugmentConfig { background: [225, 230], ..AugmentConfig::none() };
        for i in 0..20 {
            let out = augment_views(std::slice::from_ref(&render_like()), &config, &mut Rng::derive(3, "bg", i)).unwrap();
            let grey = out[0] * STD + MEAN;
            assert!((225.0 / 255.0 - 1e-6..=230.0 / 255.0 + 1e-6).contains(&grey), "{grey}");
        }
    }

    #[test]
    fn photos_are_brought_to_render_scale_before_the_crop() {
        let photo = DynamicImage::ImageRgb8(image::RgbImage::from_pixel(600, 400, image::Rgb([10, 20, 30])));
        let out = augment_views(&[photo], &AugmentConfig::none(), &mut Rng::new(0)).unwrap();
        assert_eq!(out.len(), 3 * INPUT_SIZE * INPUT_SIZE);
        // BGR: first plane is blue (30)
        assert!((out[0] - (30.0 / 255.0 - 0.5) / 0.5).abs() < 1e-5);
        let tiny = DynamicImage::new_rgb8(4, 4);
        assert!(augment_views(&[tiny], &AugmentConfig::none(), &mut Rng::new(0)).is_err());
    }
}
