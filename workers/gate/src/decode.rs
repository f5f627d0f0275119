//! Untrusted bytes to an upright RGB8 image, with every limit checked before pixels are
//! allocated. Any failure is a `Reason` (the photo is rejected), never a panic.

use crate::report::{Reason, ReasonCode, SourceInfo};
use crate::settings::DecodeLimits;
use mono2mesh_core::{BudgetPermit, ByteBudget};
use std::sync::Arc;
use image::metadata::Orientation;
use image::{ColorType, DynamicImage, GrayImage, ImageDecoder, ImageError, ImageFormat, ImageReader, RgbImage};
use std::io::Cursor;

/// A decoded photo, upright and in RGB8, with what was learnt on the way.
#[derive(Debug, Clone)]
pub struct DecodedPhoto {
    pub rgb: RgbImage,
    /// The alpha channel, upright, when asked for ([`decode_photo_keeping_alpha`]) and the
    /// photo has one with at least one pixel that is not fully opaque.
    pub alpha: Option<GrayImage>,
    pub source: SourceInfo,
    /// This photo's share of the process-wide decode budget, given back when the last
    /// clone is dropped (the pixels are alive until then).
    _budget: Arc<BudgetPermit<'static>>,
}

/// Decodes `bytes` within `limits`, applies the EXIF orientation and flattens any colour
/// type to RGB8 (alpha composited onto `background`; 16-bit scaled to 8-bit with rounding;
/// CMYK/YCCK JPEGs converted by the JPEG decoder, Adobe inverted-CMYK convention).
pub fn decode_photo(bytes: &[u8], limits: &DecodeLimits, background: [u8; 3]) -> Result<DecodedPhoto, Reason> {
    decode_photo_keeping_alpha(bytes, limits, background, false)
}

/// [`decode_photo`], also keeping the alpha channel (for framing) when `keep_alpha` is set;
/// its bytes count against the decode budget like the rest.
pub fn decode_photo_keeping_alpha(
    bytes: &[u8],
    limits: &DecodeLimits,
    background: [u8; 3],
    keep_alpha: bool,
) -> Result<DecodedPhoto, Reason> {
    if bytes.is_empty() {
        return Err(Reason::new(ReasonCode::Empty, "the file is empty (0 bytes)"));
    }
    if bytes.len() as u64 > limits.max_input_bytes {
        return Err(Reason::new(
            ReasonCode::InputTooLarge,
            format!("the file is {} bytes, over the limit of {} bytes", bytes.len(), limits.max_input_bytes),
        ));
    }
    let reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| Reason::new(ReasonCode::Undecodable, format!("cannot read the file: {e}")))?;
    let Some(format) = reader.format() else {
        return Err(Reason::new(
            ReasonCode::UnknownFormat,
            "not a recognised image (expected JPEG, PNG, WebP, TIFF or BMP)",
        ));
    };
    let format_name = format_name(format);

    let mut jpeg_components = None;
    if format == ImageFormat::Jpeg {
        let layout = JpegLayout::scan(bytes);
        // The JPEG decoder fills missing scan data with gray rather than failing, so a cut-off
        // upload would pass as a half-gray photo: require the end-of-image marker.
        if layout.scan_started && !layout.has_end_marker {
            return Err(Reason::new(
                ReasonCode::Truncated,
                "truncated JPEG: the data ends before the end-of-image marker",
            ));
        }
        jpeg_components = layout.components;
    }

    let mut decoder_limits = image::Limits::default();
    decoder_limits.max_alloc = Some(limits.max_alloc_bytes);
    let mut reader = reader;
    reader.limits(decoder_limits);
    let mut decoder = reader.into_decoder().map_err(|e| reason_from_image_error(&e, format_name))?;

    // Only the header has been read so far: refuse bombs before any pixel buffer exists.
    let (width, height) = decoder.dimensions();
    check_dimensions(width, height, limits)?;
    let needed = decoder.total_bytes();
    if needed > limits.max_alloc_bytes {
        return Err(Reason::new(
            ReasonCode::DimensionsTooLarge,
            format!(
                "decoding {width}x{height} needs {needed} bytes, over the limit of {} bytes",
                limits.max_alloc_bytes
            ),
        ));
    }

    let colour_type = match jpeg_components {
        Some(4) => "cmyk8".to_string(),
        _ => colour_type_name(decoder.color_type()),
    };
    // A broken EXIF block should not cost a usable photo: treat it as "no rotation".
    let orientation = decoder.orientation().unwrap_or(Orientation::NoTransforms);

    // Several photos decoding at once share one process-wide budget. Counted: the decoded
    // buffer, a rotated copy (quarter turns make one) and the RGB8 copy of anything that is
    // not already RGB8; all can be alive together. Held as long as the decoded photo.
    let pixels = u64::from(width) * u64::from(height);
    let rotated_copy = match orientation {
        Orientation::Rotate90 | Orientation::Rotate270 | Orientation::Rotate90FlipH | Orientation::Rotate270FlipH => needed,
        _ => 0,
    };
    let rgb_copy = if decoder.color_type() == ColorType::Rgb8 { 0 } else { pixels * 3 };
    let keep_alpha = keep_alpha && decoder.color_type().has_alpha();
    let alpha_copy = if keep_alpha { pixels } else { 0 };
    let budget_bytes = needed.saturating_add(rotated_copy).saturating_add(rgb_copy).saturating_add(alpha_copy);
    let permit = ByteBudget::decoding().acquire(budget_bytes, limits.decode_budget_bytes).map_err(|e| {
        Reason::new(
            ReasonCode::DimensionsTooLarge,
            format!(
                "decoding {width}x{height} needs {} bytes, more than the whole decode budget of {} bytes",
                e.requested, e.capacity
            ),
        )
    })?;

    let mut image = DynamicImage::from_decoder(decoder).map_err(|e| reason_from_image_error(&e, format_name))?;
    image.apply_orientation(orientation);
    let (oriented_width, oriented_height) = (image.width(), image.height());
    let (rgb, alpha) = flatten_to_rgb(image, background, keep_alpha);

    Ok(DecodedPhoto {
        _budget: Arc::new(permit),
        rgb,
        alpha,
        source: SourceInfo {
            format: format_name.to_string(),
            width,
            height,
            colour_type,
            exif_orientation: orientation.to_exif(),
            oriented_width,
            oriented_height,
        },
    })
}

fn check_dimensions(width: u32, height: u32, limits: &DecodeLimits) -> Result<(), Reason> {
    if width == 0 || height == 0 {
        return Err(Reason::new(ReasonCode::NoPixels, format!("the image has no pixels ({width}x{height})")));
    }
    let pixels = u64::from(width) * u64::from(height);
    if width > limits.max_side || height > limits.max_side || pixels > limits.max_pixels {
        return Err(Reason::new(
            ReasonCode::DimensionsTooLarge,
            format!(
                "the image claims {width}x{height} pixels, over the limits of {} per side and {} in total",
                limits.max_side, limits.max_pixels
            ),
        ));
    }
    Ok(())
}

/// RGB8 of any colour type; alpha is composited onto `background` (dropping it would show
/// whatever colour happens to sit under transparent pixels, often black) and, with
/// `keep_alpha`, returned too unless every pixel is opaque.
fn flatten_to_rgb(image: DynamicImage, background: [u8; 3], keep_alpha: bool) -> (RgbImage, Option<GrayImage>) {
    if !image.color().has_alpha() {
        return (image.into_rgb8(), None);
    }
    let rgba = image.into_rgba8();
    let (width, height) = rgba.dimensions();
    let mut rgb = RgbImage::new(width, height);
    for (out, px) in rgb.pixels_mut().zip(rgba.pixels()) {
        let alpha = u32::from(px[3]);
        for c in 0..3 {
            let blended = u32::from(px[c]) * alpha + u32::from(background[c]) * (255 - alpha);
            out[c] = ((blended + 127) / 255) as u8;
        }
    }
    let alpha = (keep_alpha && rgba.pixels().any(|px| px[3] < 255))
        .then(|| GrayImage::from_fn(width, height, |x, y| image::Luma([rgba.get_pixel(x, y)[3]])));
    (rgb, alpha)
}

fn reason_from_image_error(error: &ImageError, format: &str) -> Reason {
    match error {
        ImageError::Limits(e) => {
            Reason::new(ReasonCode::DimensionsTooLarge, format!("the {format} image exceeds the decoding limits: {e}"))
        }
        ImageError::IoError(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            Reason::new(ReasonCode::Truncated, format!("truncated {format}: the data ends early ({e})"))
        }
        ImageError::Unsupported(e) => {
            Reason::new(ReasonCode::Undecodable, format!("unsupported {format} variant: {e}"))
        }
        other => Reason::new(ReasonCode::Undecodable, format!("corrupt {format} data: {other}")),
    }
}

fn format_name(format: ImageFormat) -> &'static str {
    match format {
        ImageFormat::Jpeg => "jpeg",
        ImageFormat::Png => "png",
        ImageFormat::WebP => "webp",
        ImageFormat::Tiff => "tiff",
        ImageFormat::Bmp => "bmp",
        _ => "image",
    }
}

fn colour_type_name(colour: ColorType) -> String {
    format!("{colour:?}").to_lowercase()
}

/// What a walk over a JPEG's marker segments tells before decoding: the component count of
/// the frame (4 = CMYK or YCCK) and whether an end-of-image marker follows the first scan.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct JpegLayout {
    pub components: Option<u8>,
    pub scan_started: bool,
    pub has_end_marker: bool,
}

impl JpegLayout {
    /// Walks segments by their lengths (so an EXIF thumbnail's own markers are skipped) up
    /// to the first start-of-scan, then looks for FF D9 in the entropy-coded data, where
    /// byte stuffing guarantees it cannot occur except as the real end marker.
    pub(crate) fn scan(bytes: &[u8]) -> JpegLayout {
        let mut layout = JpegLayout::default();
        if !bytes.starts_with(&[0xFF, 0xD8]) {
            return layout;
        }
        let mut pos = 2;
        loop {
            // Markers may be preceded by any number of 0xFF fill bytes.
            while bytes.get(pos) == Some(&0xFF) && bytes.get(pos + 1) == Some(&0xFF) {
                pos += 1;
            }
            let (Some(&0xFF), Some(&marker)) = (bytes.get(pos), bytes.get(pos + 1)) else {
                return layout;
            };
            pos += 2;
            if marker == 0x01 || (0xD0..=0xD7).contains(&marker) {
                continue; // standalone markers carry no length
            }
            if marker == 0xD9 {
                return layout;
            }
            let Some(length) = bytes.get(pos..pos + 2).map(|b| usize::from(u16::from_be_bytes([b[0], b[1]]))) else {
                return layout;
            };
            let is_frame = matches!(marker, 0xC0..=0xCF) && !matches!(marker, 0xC4 | 0xC8 | 0xCC);
            if is_frame {
                // length(2) precision(1) height(2) width(2) components(1)
                layout.components = bytes.get(pos + 7).copied();
            }
            if marker == 0xDA {
                layout.scan_started = true;
                let scan_data = bytes.get(pos + length..).unwrap_or(&[]);
                layout.has_end_marker = scan_data.windows(2).any(|w| w == [0xFF, 0xD9]);
                return layout;
            }
            pos += length;
        }
    }
}
