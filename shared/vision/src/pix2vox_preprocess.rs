//! Pix2Vox's input transform: image bytes to a normalised `[3, 224, 224]` BGR tensor.
//!
//! **Renders** ([`InputKind::Render`]) follow the official test transform exactly:
//! read as BGR(A) floats in `[0, 1]` (OpenCV's order, the one the network was trained on);
//! centre-crop 128x128 at `int((size - 128) / 2)` (for 137x137: rows/cols 4..132) on all
//! four channels; resize to 224x224 with OpenCV's `INTER_LINEAR` (half-pixel centres, edge
//! clamped, float arithmetic); where the *resized* alpha is exactly 0 put the background
//! (240, 240, 240)/255 (a hard mask, no blending); normalise with mean 0.5, std 0.5.
//!
//! **Photos** ([`InputKind::Photo`]), e.g. a 600x600 product shot: a 128 crop of a large
//! photo would show only a detail, so the photo is first brought to the renders' scale: the
//! largest centred square is shrunk (antialiased, triangle filter) to 128x128, which plays the
//! role of the renders' 128 crop, and then follows the same 224 resize and normalisation. The
//! background is left as it is (the official transform also leaves 3-channel images alone),
//! except that fully transparent pixels of an RGBA photo get the 240 background like renders.

use image::{DynamicImage, GenericImageView, RgbaImage};
use tch::Tensor;

/// Side of the network's input.
pub const INPUT_SIZE: usize = 224;
/// Side of the official centre crop.
pub const CROP_SIZE: usize = 128;
/// Background grey (0..255) put behind transparent pixels at test time.
pub const TEST_BACKGROUND: f32 = 240.0;
/// Normalisation mean and std (the same for the three channels).
pub const MEAN: f32 = 0.5;
pub const STD: f32 = 0.5;

/// How to read an input image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InputKind {
    /// A ShapeNet-style render (137x137 RGBA): the official test transform.
    Render,
    /// An ordinary photo: centred square scaled to 128, then as a render.
    Photo,
    /// Render for small images with an alpha channel (side <= 256), photo otherwise.
    #[default]
    Auto,
}

impl std::str::FromStr for InputKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "render" => Ok(InputKind::Render),
            "photo" => Ok(InputKind::Photo),
            "auto" => Ok(InputKind::Auto),
            other => Err(format!("unknown input kind {other:?}: expected render, photo or auto")),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PreprocessError {
    #[error("cannot decode image: {0}")]
    Decode(#[from] image::ImageError),
    #[error("image of {width}x{height} is too small (at least 8x8 needed)")]
    TooSmall { width: u32, height: u32 },
}

/// A float image, channels last, in BGRA order (like `cv2.imread(..., IMREAD_UNCHANGED)`).
/// Public for training's augmentation (`mono2mesh-train`), which crops and resizes the
/// same way.
#[derive(Debug, Clone)]
pub struct BgraImage {
    pub width: usize,
    pub height: usize,
    /// `height * width * 4` values in `[0, 1]`.
    pub data: Vec<f32>,
}

impl BgraImage {
    pub fn from_rgba(rgba: &RgbaImage) -> Self {
        let (w, h) = rgba.dimensions();
        let mut data = Vec::with_capacity(w as usize * h as usize * 4);
        for p in rgba.pixels() {
            let [r, g, b, a] = p.0;
            data.extend([b, g, r, a].map(|v| v as f32 / 255.0));
        }
        BgraImage { width: w as usize, height: h as usize, data }
    }

    /// Rows `y0..y0+h`, columns `x0..x0+w`; panics when the window leaves the image.
    pub fn crop(&self, x0: usize, y0: usize, w: usize, h: usize) -> Self {
        let mut data = Vec::with_capacity(w * h * 4);
        for y in y0..y0 + h {
            let start = (y * self.width + x0) * 4;
            data.extend_from_slice(&self.data[start..start + w * 4]);
        }
        BgraImage { width: w, height: h, data }
    }

    /// OpenCV `cv2.resize(img, (w, h))` with INTER_LINEAR on a float image.
    pub fn resize_linear(&self, w: usize, h: usize) -> Self {
        let xs = linear_taps(self.width, w);
        let ys = linear_taps(self.height, h);
        // horizontal pass first, then vertical, in f32 like OpenCV's HResize/VResize
        let mut rows = vec![0f32; self.height * w * 4];
        for y in 0..self.height {
            let src = &self.data[y * self.width * 4..(y + 1) * self.width * 4];
            let dst = &mut rows[y * w * 4..(y + 1) * w * 4];
            for (dx, &(x0, x1, a0, a1)) in xs.iter().enumerate() {
                for c in 0..4 {
                    dst[dx * 4 + c] = src[x0 * 4 + c] * a0 + src[x1 * 4 + c] * a1;
                }
            }
        }
        let mut data = vec![0f32; h * w * 4];
        for (dy, &(y0, y1, b0, b1)) in ys.iter().enumerate() {
            let r0 = &rows[y0 * w * 4..(y0 + 1) * w * 4];
            let r1 = &rows[y1 * w * 4..(y1 + 1) * w * 4];
            let dst = &mut data[dy * w * 4..(dy + 1) * w * 4];
            for i in 0..w * 4 {
                dst[i] = r0[i] * b0 + r1[i] * b1;
            }
        }
        BgraImage { width: w, height: h, data }
    }
}

/// Source taps of OpenCV's INTER_LINEAR for each destination index:
/// `f = (d + 0.5) * src/dst - 0.5`, clamped at both edges as `cv::resize` does.
fn linear_taps(src: usize, dst: usize) -> Vec<(usize, usize, f32, f32)> {
    let scale = src as f64 / dst as f64;
    (0..dst)
        .map(|d| {
            let f = ((d as f64 + 0.5) * scale - 0.5) as f32;
            let mut s = f.floor() as i64;
            let mut frac = f - s as f32;
            if s < 0 {
                s = 0;
                frac = 0.0;
            }
            if s >= src as i64 - 1 {
                s = src as i64 - 1;
                frac = 0.0;
            }
            let s = s as usize;
            (s, (s + 1).min(src - 1), 1.0 - frac, frac)
        })
        .collect()
}

/// The official test transform from a 128-crop-sized BGRA image on: resize to 224, hard
/// alpha mask to the 240 background (only when `has_alpha`), normalise, to CHW.
fn finish(cropped: &BgraImage, has_alpha: bool) -> Tensor {
    let resized = cropped.resize_linear(INPUT_SIZE, INPUT_SIZE);
    let plane = INPUT_SIZE * INPUT_SIZE;
    let mut chw = vec![0f32; 3 * plane];
    let background = TEST_BACKGROUND / 255.0;
    for i in 0..plane {
        let px = &resized.data[i * 4..i * 4 + 4];
        let transparent = has_alpha && px[3] == 0.0;
        for c in 0..3 {
            let v = if transparent { background } else { px[c] };
            chw[c * plane + i] = (v - MEAN) / STD;
        }
    }
    Tensor::from_slice(&chw).view([3, INPUT_SIZE as i64, INPUT_SIZE as i64])
}

/// The official test transform of a render, as `[3, 224, 224]` (BGR, normalised).
pub fn preprocess_render(image: &DynamicImage) -> Result<Tensor, PreprocessError> {
    let (w, h) = image.dimensions();
    check_size(w, h)?;
    let bgra = BgraImage::from_rgba(&image.to_rgba8());
    let (w, h) = (w as usize, h as usize);
    // CenterCrop: crop only when both sides exceed 128, at int((side - 128) * 0.5)
    let cropped = if w > CROP_SIZE && h > CROP_SIZE {
        bgra.crop((w - CROP_SIZE) / 2, (h - CROP_SIZE) / 2, CROP_SIZE, CROP_SIZE)
    } else {
        bgra
    };
    Ok(finish(&cropped, image.color().has_alpha()))
}

/// The photo path: largest centred square, antialiased down to 128x128, then as a render.
pub fn preprocess_photo(image: &DynamicImage) -> Result<Tensor, PreprocessError> {
    let (w, h) = image.dimensions();
    check_size(w, h)?;
    let side = w.min(h);
    let square = image.crop_imm((w - side) / 2, (h - side) / 2, side, side).to_rgba8();
    let small = if side as usize == CROP_SIZE {
        square
    } else {
        image::imageops::resize(&square, CROP_SIZE as u32, CROP_SIZE as u32, image::imageops::FilterType::Triangle)
    };
    Ok(finish(&BgraImage::from_rgba(&small), image.color().has_alpha()))
}

/// Decode and preprocess one image.
pub fn preprocess_bytes(bytes: &[u8], kind: InputKind) -> Result<Tensor, PreprocessError> {
    let image = image::load_from_memory(bytes)?;
    preprocess_image(&image, kind)
}

/// Preprocess a decoded image.
pub fn preprocess_image(image: &DynamicImage, kind: InputKind) -> Result<Tensor, PreprocessError> {
    match resolve_kind(image, kind) {
        InputKind::Photo => preprocess_photo(image),
        _ => preprocess_render(image),
    }
}

/// What [`InputKind::Auto`] means for this image.
pub fn resolve_kind(image: &DynamicImage, kind: InputKind) -> InputKind {
    match kind {
        InputKind::Auto => {
            let (w, h) = image.dimensions();
            if image.color().has_alpha() && w.max(h) <= 256 {
                InputKind::Render
            } else {
                InputKind::Photo
            }
        }
        other => other,
    }
}

fn check_size(width: u32, height: u32) -> Result<(), PreprocessError> {
    if width < 8 || height < 8 {
        return Err(PreprocessError::TooSmall { width, height });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linear_taps_match_opencv_on_upscale_edges() {
        // 128 -> 224: the first destination pixel maps left of the source and is clamped,
        // the last maps to (223.5 * 128/224 - 0.5) = 127.2142..., also clamped.
        let taps = linear_taps(128, 224);
        assert_eq!(taps[0], (0, 1, 1.0, 0.0));
        assert_eq!(taps[223].0, 127);
        assert_eq!(taps[223].3, 0.0);
        let (s, _, _, frac) = taps[100];
        let f = (100.5f64 * 128.0 / 224.0 - 0.5) as f32;
        assert_eq!(s, f.floor() as usize);
        assert!((frac - (f - f.floor())).abs() < 1e-7);
    }

    #[test]
    fn constant_image_stays_constant_and_transparent_becomes_240() {
        let mut rgba = RgbaImage::from_pixel(137, 137, image::Rgba([255, 0, 51, 255]));
        // a transparent block large enough to survive the resize
        for y in 0..60 {
            for x in 0..60 {
                rgba.put_pixel(x, y, image::Rgba([9, 9, 9, 0]));
            }
        }
        let t = preprocess_render(&DynamicImage::ImageRgba8(rgba)).unwrap();
        assert_eq!(t.size(), vec![3, 224, 224]);
        let at = |c: i64, y: i64, x: i64| t.double_value(&[c, y, x]) as f32;
        // opaque corner: BGR order, (v - 0.5) / 0.5
        assert!((at(0, 223, 223) - (51.0 / 255.0 - 0.5) / 0.5).abs() < 1e-6);
        assert!((at(2, 223, 223) - 1.0).abs() < 1e-6);
        // transparent corner: 240 background on every channel
        for c in 0..3 {
            assert!((at(c, 0, 0) - (240.0 / 255.0 - 0.5) / 0.5).abs() < 1e-6);
        }
    }

    #[test]
    fn photos_use_the_whole_centred_square() {
        // left half black, right half white, 600x400: the centred 400 square keeps both
        let mut rgb = image::RgbImage::new(600, 400);
        for (x, _, p) in rgb.enumerate_pixels_mut() {
            *p = if x < 300 { image::Rgb([0, 0, 0]) } else { image::Rgb([255, 255, 255]) };
        }
        let t = preprocess_photo(&DynamicImage::ImageRgb8(rgb)).unwrap();
        assert!((t.double_value(&[0, 112, 10]) + 1.0).abs() < 1e-6);
        assert!((t.double_value(&[0, 112, 213]) - 1.0).abs() < 1e-6);
        assert_eq!(resolve_kind(&DynamicImage::new_rgb8(600, 600), InputKind::Auto), InputKind::Photo);
        assert_eq!(resolve_kind(&DynamicImage::new_rgba8(137, 137), InputKind::Auto), InputKind::Render);
    }

    #[test]
    fn bad_bytes_and_tiny_images_are_errors() {
        assert!(matches!(preprocess_bytes(b"not an image", InputKind::Auto), Err(PreprocessError::Decode(_))));
        let tiny = DynamicImage::new_rgba8(4, 4);
        assert!(matches!(preprocess_render(&tiny), Err(PreprocessError::TooSmall { .. })));
    }
}
