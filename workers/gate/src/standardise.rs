//! The paper's standardisation: every photo becomes a `size` x `size` RGB image.

use crate::settings::{AspectPolicy, GateSettings};
use image::{imageops, RgbImage};

/// Resizes an upright RGB photo to the settings' square size under its aspect policy.
pub fn standardise(rgb: &RgbImage, settings: &GateSettings) -> RgbImage {
    let size = settings.size;
    let filter = settings.filter.to_image_filter();
    match settings.aspect {
        AspectPolicy::Stretch => imageops::resize(rgb, size, size, filter),
        AspectPolicy::Pad => {
            let (width, height) = fitted_size(rgb.width(), rgb.height(), size);
            let resized = imageops::resize(rgb, width, height, filter);
            let mut canvas = RgbImage::from_pixel(size, size, image::Rgb(settings.background));
            let (left, top) = ((size - width) / 2, (size - height) / 2);
            imageops::replace(&mut canvas, &resized, i64::from(left), i64::from(top));
            canvas
        }
    }
}

/// The size that fits `width` x `height` inside a `size` square keeping the aspect ratio
/// (longer side = `size`, shorter side rounded, at least 1 pixel).
fn fitted_size(width: u32, height: u32, size: u32) -> (u32, u32) {
    let longer = width.max(height).max(1);
    let scale = |side: u32| -> u32 {
        let scaled = (u64::from(side) * u64::from(size) + u64::from(longer) / 2) / u64::from(longer);
        (scaled as u32).clamp(1, size)
    };
    (scale(width), scale(height))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fitted_size_keeps_aspect_and_never_collapses() {
        assert_eq!(fitted_size(1200, 800, 600), (600, 400));
        assert_eq!(fitted_size(800, 1200, 600), (400, 600));
        assert_eq!(fitted_size(600, 600, 600), (600, 600));
        assert_eq!(fitted_size(10_000, 3, 600), (600, 1));
        assert_eq!(fitted_size(333, 500, 600), (400, 600));
    }

    #[test]
    fn pad_letterboxes_with_the_background_and_centres_the_photo() {
        let photo = RgbImage::from_pixel(200, 100, image::Rgb([10, 20, 30]));
        let settings = GateSettings { size: 60, aspect: AspectPolicy::Pad, ..GateSettings::default() };
        let out = standardise(&photo, &settings);
        assert_eq!(out.dimensions(), (60, 60));
        assert_eq!(out.get_pixel(30, 2), &image::Rgb([255, 255, 255])); // letterbox band
        assert_eq!(out.get_pixel(30, 30), &image::Rgb([10, 20, 30])); // photo
        assert_eq!(out.get_pixel(30, 57), &image::Rgb([255, 255, 255]));
    }

    #[test]
    fn stretch_fills_the_square() {
        let photo = RgbImage::from_pixel(200, 100, image::Rgb([10, 20, 30]));
        let settings = GateSettings { size: 60, ..GateSettings::default() };
        let out = standardise(&photo, &settings);
        assert_eq!(out.dimensions(), (60, 60));
        assert!(out.pixels().all(|p| *p == image::Rgb([10, 20, 30])));
    }
}
