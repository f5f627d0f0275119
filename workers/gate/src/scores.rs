//! The paper's two quality scores, computed exactly as OpenCV does so thresholds carry over.

use crate::report::Scores;
use image::{GrayImage, RgbImage};

/// ITU-R BT.601 luma weights in OpenCV's 15-bit fixed point (`cv::cvtColor` with
/// `COLOR_RGB2GRAY` on 8-bit data, checked bit-exact against cv2 4.x on 200k random
/// pixels): Y = (9798 R + 19235 G + 3735 B + 16384) >> 15, i.e. 0.299 R + 0.587 G +
/// 0.114 B rounded. Pillow's `convert("L")` uses 16-bit weights and differs by one level
/// on some pixels.
const R_WEIGHT: u32 = 9798;
const G_WEIGHT: u32 = 19235;
const B_WEIGHT: u32 = 3735;
const SHIFT: u32 = 15;

/// Grayscale of an RGB image with OpenCV's rounding.
pub fn to_gray(rgb: &RgbImage) -> GrayImage {
    let (width, height) = rgb.dimensions();
    let luma: Vec<u8> = rgb
        .as_raw()
        .chunks_exact(3)
        .map(|p| {
            let y = R_WEIGHT * u32::from(p[0])
                + G_WEIGHT * u32::from(p[1])
                + B_WEIGHT * u32::from(p[2])
                + (1 << (SHIFT - 1));
            // The weights sum to 2^15, so y >> 15 <= 255.
            (y >> SHIFT) as u8
        })
        .collect();
    // The buffer has exactly width * height samples by construction.
    GrayImage::from_raw(width, height, luma).unwrap_or_else(|| GrayImage::new(width, height))
}

/// Variance of the 3x3 Laplacian [0,1,0; 1,-4,1; 0,1,0] with OpenCV's default border
/// (reflect-101: `dcb|abcd|cba`), i.e. `cv2.Laplacian(gray, cv2.CV_64F).var()`.
/// Sums are exact in integers, so the only rounding is the final division.
pub fn laplacian_variance(gray: &GrayImage) -> f64 {
    let (width, height) = (gray.width() as usize, gray.height() as usize);
    if width == 0 || height == 0 {
        return 0.0;
    }
    let pixels = gray.as_raw();
    let mut sum: i64 = 0;
    let mut sum_sq: i64 = 0;
    for y in 0..height {
        let row = &pixels[y * width..(y + 1) * width];
        let up = &pixels[reflect101(y, -1, height) * width..][..width];
        let down = &pixels[reflect101(y, 1, height) * width..][..width];
        let (mut row_sum, mut row_sq) = (0i64, 0i64);
        for x in 0..width {
            let left = row[reflect101(x, -1, width)];
            let right = row[reflect101(x, 1, width)];
            let response =
                i32::from(up[x]) + i32::from(down[x]) + i32::from(left) + i32::from(right) - 4 * i32::from(row[x]);
            row_sum += i64::from(response);
            row_sq += i64::from(response * response);
        }
        sum += row_sum;
        sum_sq += row_sq;
    }
    // |response| <= 1020, so sum_sq < 1.1e6 per pixel: i128 keeps n * sum_sq exact for any size.
    let n = (width * height) as i128;
    let numerator = n * i128::from(sum_sq) - i128::from(sum) * i128::from(sum);
    numerator as f64 / (n * n) as f64
}

/// Mean gray intensity (0-255).
pub fn mean_intensity(gray: &GrayImage) -> f64 {
    let pixels = gray.as_raw();
    if pixels.is_empty() {
        return 0.0;
    }
    let total: u64 = pixels.iter().map(|&v| u64::from(v)).sum();
    total as f64 / pixels.len() as f64
}

/// Both scores of an RGB image.
pub fn score(rgb: &RgbImage) -> Scores {
    let gray = to_gray(rgb);
    Scores { blur_variance: laplacian_variance(&gray), mean_intensity: mean_intensity(&gray) }
}

/// Index of the neighbour at `offset` (+-1) with reflect-101 borders; a 1-pixel axis
/// reflects onto itself.
fn reflect101(index: usize, offset: isize, len: usize) -> usize {
    if len == 1 {
        return 0;
    }
    match index.checked_add_signed(offset) {
        None => 1,                      // -1 -> 1
        Some(i) if i >= len => len - 2, // len -> len - 2
        Some(i) => i,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Direct transcription of the definition, for checking the fast path on odd shapes.
    fn naive_variance(gray: &GrayImage) -> f64 {
        let (w, h) = (gray.width() as i64, gray.height() as i64);
        let at = |x: i64, y: i64| {
            let r = |i: i64, n: i64| {
                if n == 1 {
                    0
                } else if i < 0 {
                    -i
                } else if i >= n {
                    2 * n - 2 - i
                } else {
                    i
                }
            };
            f64::from(gray.get_pixel(r(x, w) as u32, r(y, h) as u32)[0])
        };
        let mut values = Vec::new();
        for y in 0..h {
            for x in 0..w {
                values.push(at(x - 1, y) + at(x + 1, y) + at(x, y - 1) + at(x, y + 1) - 4.0 * at(x, y));
            }
        }
        let mean = values.iter().sum::<f64>() / values.len() as f64;
        values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / values.len() as f64
    }

    fn pseudo_random_gray(w: u32, h: u32, seed: u32) -> GrayImage {
        let mut state = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
        GrayImage::from_fn(w, h, |_, _| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            image::Luma([(state >> 24) as u8])
        })
    }

    #[test]
    fn laplacian_variance_matches_the_definition_on_every_border_case() {
        for (w, h) in [(1, 1), (1, 5), (5, 1), (2, 2), (3, 7), (17, 4), (64, 33)] {
            let gray = pseudo_random_gray(w, h, w * 31 + h);
            let fast = laplacian_variance(&gray);
            let slow = naive_variance(&gray);
            assert!((fast - slow).abs() <= 1e-9 * slow.max(1.0), "{w}x{h}: {fast} vs {slow}");
        }
    }

    #[test]
    fn flat_image_has_zero_variance_and_its_own_mean() {
        let gray = GrayImage::from_pixel(40, 30, image::Luma([77]));
        assert_eq!(laplacian_variance(&gray), 0.0);
        assert_eq!(mean_intensity(&gray), 77.0);
    }

    #[test]
    fn single_bright_pixel_gives_the_known_response_pattern() {
        // One 255 pixel in a 0 field: responses -1020 once and +255 four times.
        let mut gray = GrayImage::new(9, 9);
        gray.put_pixel(4, 4, image::Luma([255]));
        let n = 81.0;
        let mean = 0.0 / n; // -1020 + 4 * 255 = 0
        let expected = (1020.0f64.powi(2) + 4.0 * 255.0f64.powi(2)) / n - mean * mean;
        assert!((laplacian_variance(&gray) - expected).abs() < 1e-9);
    }

    #[test]
    fn gray_uses_bt601_weights_with_opencv_rounding() {
        let rgb = RgbImage::from_fn(4, 1, |x, _| match x {
            0 => image::Rgb([255, 0, 0]),
            1 => image::Rgb([0, 255, 0]),
            2 => image::Rgb([0, 0, 255]),
            _ => image::Rgb([255, 255, 255]),
        });
        let gray = to_gray(&rgb);
        // 0.299 * 255 = 76.2, 0.587 * 255 = 149.7, 0.114 * 255 = 29.1
        assert_eq!(gray.as_raw(), &vec![76, 150, 29, 255]);
    }
}
