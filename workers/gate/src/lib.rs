//! The gate stage as a plain library function: photo bytes and settings in, a verdict and
//! the standardised image out. No queues, stores or clocks here; the worker binary and
//! `mono2mesh gate` both call [`gate`] / [`assess`].
//!
//! Steps, following the paper's acquisition phase:
//! 1. decode within [`DecodeLimits`] (input size, per-side and total pixel caps checked
//!    from the header before any pixel is allocated, decoder allocation cap), reject
//!    truncated JPEGs, apply the EXIF orientation and flatten any colour type to RGB8;
//! 2. standardise to `size` x `size` (600) with the configured [`AspectPolicy`] and a
//!    Pillow-like bicubic resize;
//! 3. score the standardised image's BT.601 grayscale: blur = variance of the 3x3
//!    Laplacian, lighting = mean intensity, judged against the settings' thresholds.
//!
//! A photo that cannot be decoded is a rejection with a reason, not an error: only
//! unusable settings or a failure to encode our own output are [`GateError`]s.

mod decode;
pub mod handler;
mod report;
mod scores;
mod settings;
mod standardise;

pub use decode::{decode_photo, DecodedPhoto};
pub use report::{Decision, GateReport, Reason, ReasonCode, Scores, SourceInfo, Thresholds};
pub use scores::{laplacian_variance, mean_intensity, score, to_gray};
pub use settings::{
    AspectPolicy, DecodeLimits, GateSettings, InvalidSettings, ResizeFilter, DEFAULT_MAX_MEAN_INTENSITY,
    DEFAULT_MIN_BLUR_VARIANCE, DEFAULT_MIN_MEAN_INTENSITY, PAPER_SIZE,
};
pub use standardise::standardise;

use image::RgbImage;
use mono2mesh_core::StageError;
use report::ReasonCode as Code;

/// The gate's failures that are not a verdict on the photo.
#[derive(Debug, thiserror::Error)]
pub enum GateError {
    #[error("invalid gate settings: {0}")]
    InvalidSettings(#[from] InvalidSettings),
    #[error("cannot encode the standardised image as PNG: {0}")]
    Encode(#[source] image::ImageError),
}

impl From<GateError> for StageError {
    /// Neither case improves on retry: bad settings and encoder failures are permanent.
    fn from(error: GateError) -> Self {
        StageError::permanent(error.to_string())
    }
}

/// The verdict with the standardised image still in memory.
#[derive(Debug, Clone)]
pub struct Assessment {
    pub report: GateReport,
    /// The `size` x `size` RGB image the scores were computed on; `None` when the photo
    /// could not be decoded. Present for score rejections too, for inspection.
    pub standardised: Option<RgbImage>,
}

/// The verdict with the standardised image encoded for the blob store.
#[derive(Debug, Clone)]
pub struct GateOutput {
    pub report: GateReport,
    /// PNG (lossless, so the next stage sees exactly the pixels that were scored); `None`
    /// when the photo could not be decoded.
    pub standardised_png: Option<Vec<u8>>,
}

/// Decodes, standardises and scores one photo.
pub fn assess(bytes: &[u8], settings: &GateSettings) -> Result<Assessment, GateError> {
    settings.validate()?;
    let thresholds = Thresholds {
        min_blur_variance: settings.min_blur_variance,
        min_mean_intensity: settings.min_mean_intensity,
        max_mean_intensity: settings.max_mean_intensity,
    };
    let decoded = match decode_photo(bytes, &settings.limits, settings.background) {
        Ok(decoded) => decoded,
        Err(reason) => {
            let report = GateReport {
                decision: Decision::Reject,
                reasons: vec![reason],
                scores: None,
                source: None,
                thresholds,
            };
            return Ok(Assessment { report, standardised: None });
        }
    };
    let standardised = standardise(&decoded.rgb, settings);
    let scores = score(&standardised);
    let reasons = judge(&scores, &thresholds);
    let decision = if reasons.is_empty() { Decision::Accept } else { Decision::Reject };
    let report = GateReport { decision, reasons, scores: Some(scores), source: Some(decoded.source), thresholds };
    Ok(Assessment { report, standardised: Some(standardised) })
}

/// [`assess`] plus PNG encoding of the standardised image: what the gate worker stores.
pub fn gate(bytes: &[u8], settings: &GateSettings) -> Result<GateOutput, GateError> {
    let Assessment { report, standardised } = assess(bytes, settings)?;
    let standardised_png = standardised.as_ref().map(encode_png).transpose()?;
    Ok(GateOutput { report, standardised_png })
}

/// The scores' rejection reasons, in a fixed order (lighting, then blur).
fn judge(scores: &Scores, thresholds: &Thresholds) -> Vec<Reason> {
    let mut reasons = Vec::new();
    if scores.mean_intensity < thresholds.min_mean_intensity {
        reasons.push(Reason::new(
            Code::TooDark,
            format!(
                "too dark: mean gray intensity {:.1} is below {:.1}",
                scores.mean_intensity, thresholds.min_mean_intensity
            ),
        ));
    }
    if scores.mean_intensity > thresholds.max_mean_intensity {
        reasons.push(Reason::new(
            Code::Overexposed,
            format!(
                "overexposed: mean gray intensity {:.1} is above {:.1}",
                scores.mean_intensity, thresholds.max_mean_intensity
            ),
        ));
    }
    if scores.blur_variance < thresholds.min_blur_variance {
        reasons.push(Reason::new(
            Code::Blurry,
            format!(
                "blurry: Laplacian variance {:.1} is below {:.1}",
                scores.blur_variance, thresholds.min_blur_variance
            ),
        ));
    }
    reasons
}

/// PNG with fast compression: the image is an intermediate read back once by classify.
pub fn encode_png(image: &RgbImage) -> Result<Vec<u8>, GateError> {
    use image::codecs::png::{CompressionType, FilterType, PngEncoder};
    use image::ImageEncoder;
    let mut out = Vec::new();
    PngEncoder::new_with_quality(&mut out, CompressionType::Fast, FilterType::Adaptive)
        .write_image(image.as_raw(), image.width(), image.height(), image::ExtendedColorType::Rgb8)
        .map_err(GateError::Encode)?;
    Ok(out)
}
