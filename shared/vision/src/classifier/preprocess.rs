//! torchvision's ImageNet eval transform: `Resize(256)` (shorter side, bilinear with
//! antialias), `CenterCrop(224)`, `ToTensor` (RGB / 255), `Normalize(mean, std)`.
//!
//! torchvision runs this on PIL images, whose resize returns 8-bit pixels; we resize with
//! libtorch's antialiased bilinear kernel (the one torchvision's tensor path uses, written
//! to match PIL) and round to 8 bits the same way before normalising.

use image::RgbImage;
use tch::{Device, Kind, Tensor};

/// Recorded in model files: the preprocessing the weights expect.
pub const PREPROCESSING: &str = "imagenet-eval: resize shorter side to 256 (bilinear, antialias), \
center crop 224, RGB/255, mean (0.485, 0.456, 0.406), std (0.229, 0.224, 0.225)";

pub const RESIZE_SHORTER_SIDE: i64 = 256;
pub const CROP_SIZE: i64 = 224;
pub const MEAN: [f32; 3] = [0.485, 0.456, 0.406];
pub const STD: [f32; 3] = [0.229, 0.224, 0.225];

#[derive(Debug, thiserror::Error)]
pub enum PreprocessError {
    #[error("cannot decode image: {0}")]
    Decode(#[from] image::ImageError),
    #[error("image is empty ({width}x{height})")]
    Empty { width: u32, height: u32 },
    #[error("libtorch error: {0}")]
    Torch(#[from] tch::TchError),
}

/// Decodes any format the `image` crate reads (JPEG, PNG, WebP, TIFF, BMP) into 8-bit RGB,
/// as PIL's `convert("RGB")` would (alpha dropped, grey expanded).
pub fn decode_rgb(bytes: &[u8]) -> Result<RgbImage, PreprocessError> {
    let image = image::load_from_memory(bytes)?.to_rgb8();
    if image.width() == 0 || image.height() == 0 {
        return Err(PreprocessError::Empty { width: image.width(), height: image.height() });
    }
    Ok(image)
}

/// Output size of torchvision's `Resize(256)` for a `width x height` image: the shorter
/// side becomes 256, the longer one `int(256 * long / short)`.
pub fn resized_size(width: i64, height: i64) -> (i64, i64) {
    let (short, long) = if width <= height { (width, height) } else { (height, width) };
    let new_long = (RESIZE_SHORTER_SIDE as f64 * long as f64 / short as f64).floor() as i64;
    if width <= height {
        (RESIZE_SHORTER_SIDE, new_long)
    } else {
        (new_long, RESIZE_SHORTER_SIDE)
    }
}

/// Top-left corner of torchvision's `CenterCrop(224)`: `int(round((size - 224) / 2))`
/// with Python's round-half-to-even.
pub fn crop_offset(size: i64) -> i64 {
    ((size - CROP_SIZE) as f64 / 2.0).round_ties_even() as i64
}

/// `[3, 224, 224]` float tensor on the CPU for one RGB image.
pub fn preprocess_rgb(image: &RgbImage) -> Result<Tensor, PreprocessError> {
    let (width, height) = (image.width() as i64, image.height() as i64);
    if width == 0 || height == 0 {
        return Err(PreprocessError::Empty { width: image.width(), height: image.height() });
    }
    let pixels = Tensor::f_from_data_size(image.as_raw(), &[height, width, 3], Kind::Uint8)?;
    let chw = pixels.permute([2, 0, 1]).to_kind(Kind::Float).unsqueeze(0);
    let (new_width, new_height) = resized_size(width, height);
    let resized = if (new_width, new_height) == (width, height) {
        chw
    } else {
        chw.f_internal_upsample_bilinear2d_aa([new_height, new_width], false, None, None)?
            .round()
            .clamp(0.0, 255.0)
    };
    let (top, left) = (crop_offset(new_height), crop_offset(new_width));
    let cropped = resized.narrow(2, top, CROP_SIZE).narrow(3, left, CROP_SIZE).squeeze_dim(0);
    Ok(normalize(&(cropped / 255.0)))
}

fn normalize(chw: &Tensor) -> Tensor {
    let mean = Tensor::from_slice(&MEAN).view([3, 1, 1]);
    let std = Tensor::from_slice(&STD).view([3, 1, 1]);
    ((chw - mean) / std).to_device(Device::Cpu).contiguous()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resize_keeps_the_aspect_ratio_like_torchvision() {
        assert_eq!(resized_size(500, 375), (341, 256));
        assert_eq!(resized_size(375, 500), (256, 341));
        assert_eq!(resized_size(256, 256), (256, 256));
        assert_eq!(resized_size(1000, 3), (85333, 256));
    }

    #[test]
    fn crop_offset_rounds_half_to_even() {
        assert_eq!(crop_offset(256), 16);
        assert_eq!(crop_offset(289), 32); // 32.5 -> 32
        assert_eq!(crop_offset(291), 34); // 33.5 -> 34
        assert_eq!(crop_offset(224), 0);
    }

    #[test]
    fn uniform_grey_image_normalises_to_the_expected_constant() {
        let image = RgbImage::from_pixel(300, 260, image::Rgb([128, 128, 128]));
        let tensor = preprocess_rgb(&image).unwrap();
        assert_eq!(tensor.size(), vec![3, 224, 224]);
        for channel in 0..3 {
            let expected = (128.0 / 255.0 - MEAN[channel]) / STD[channel];
            let plane = tensor.get(channel as i64);
            let max_error = f64::try_from((plane - f64::from(expected)).abs().max()).unwrap();
            assert!(max_error < 1e-5, "channel {channel}: {max_error}");
        }
    }

    #[test]
    fn garbage_bytes_are_a_decode_error() {
        assert!(matches!(decode_rgb(b"not an image"), Err(PreprocessError::Decode(_))));
    }
}
