//! The gate stage as a plain library function: photo bytes and settings in, a verdict and
//! the standardised image out. No queues, stores or clocks here; the worker binary and
//! `mono2mesh gate` both call [`gate`] / [`assess`].
//!
//! Steps, following the paper's acquisition phase:
//! 1. decode within [`DecodeLimits`] (input size, per-side and total pixel caps checked
//!    from the header before any pixel is allocated, decoder allocation cap), reject
//!    truncated JPEGs, apply the EXIF orientation and flatten any colour type to RGB8;
//! 2. with `framing = "auto"` ([`FramingMode`]), frame the object (`mono2mesh-framing`:
//!    mask from the alpha or a plain backdrop, cropped so it fills the frame as in the
//!    training renders, padded square, resampled to `size` with the configured filter);
//!    a photo with no separable object is rejected (`no_object`), a busy scene is left
//!    whole;
//!    otherwise (and for busy scenes) standardise to `size` x `size` (600) with the
//!    configured [`AspectPolicy`] and a Pillow-like bicubic resize; with framing off the
//!    photo is still checked for an object the same way (a blank photo or an empty alpha
//!    channel is rejected as `no_object`, beside any score reasons), only not cropped;
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

pub use decode::{decode_photo, decode_photo_keeping_alpha, DecodedPhoto};
pub use mono2mesh_framing::{BoundingBox, FramingSource, FramingSummary};
pub use report::{Decision, GateReport, Reason, ReasonCode, Scores, SourceInfo, Thresholds};
pub use scores::{laplacian_variance, mean_intensity, score, to_gray};
pub use settings::{
    AspectPolicy, DecodeLimits, FramingMode, GateSettings, InvalidSettings, ResizeFilter, DEFAULT_MAX_MEAN_INTENSITY,
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
    /// could not be decoded or framing found no object. Present for score rejections too,
    /// for inspection.
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
    let framing_on = settings.framing == FramingMode::Auto;
    // The alpha channel is kept either way: an empty one means there is no object.
    let decoded = match decode_photo_keeping_alpha(bytes, &settings.limits, settings.background, true) {
        Ok(decoded) => decoded,
        Err(reason) => {
            let report = GateReport {
                decision: Decision::Reject,
                reasons: vec![reason],
                scores: None,
                source: None,
                thresholds,
                framing: None,
            };
            return Ok(Assessment { report, standardised: None });
        }
    };
    let (standardised, framing) = if framing_on {
        match frame(&decoded, settings)? {
            Ok((Some(framed), summary)) => (framed, Some(summary)),
            Ok((None, summary)) => (standardise(&decoded.rgb, settings), Some(summary)),
            Err(reason) => {
                let report = GateReport {
                    decision: Decision::Reject,
                    reasons: vec![reason],
                    scores: None,
                    source: Some(decoded.source),
                    thresholds,
                    framing: None,
                };
                return Ok(Assessment { report, standardised: None });
            }
        }
    } else {
        (standardise(&decoded.rgb, settings), None)
    };
    let scores = score(&standardised);
    let mut reasons = judge(&scores, &thresholds);
    if !framing_on {
        // Not cropped, but a photo of nothing says so (framing on rejected it above).
        if let Err(error) = mono2mesh_framing::find_object(&decoded.rgb, decoded.alpha.as_ref()) {
            reasons.insert(0, Reason::new(Code::NoObject, error.to_string()));
        }
    }
    let decision = if reasons.is_empty() { Decision::Accept } else { Decision::Reject };
    let report = GateReport { decision, reasons, scores: Some(scores), source: Some(decoded.source), thresholds, framing };
    Ok(Assessment { report, standardised: Some(standardised) })
}

/// Frames the decoded photo at the settings' size and filter: the framed `size` x `size`
/// image (`None` for a busy scene left whole) and what was done, or the `no_object`
/// rejection.
#[allow(clippy::type_complexity)]
fn frame(decoded: &DecodedPhoto, settings: &GateSettings) -> Result<Result<(Option<RgbImage>, FramingSummary), Reason>, GateError> {
    use mono2mesh_framing::{frame_parts, FramingError, FramingSettings, Padding, DEFAULT_FILL};
    let framing = FramingSettings {
        fill: DEFAULT_FILL,
        size: settings.size,
        background: settings.background,
        padding: Padding::Estimated,
        filter: settings.filter.to_image_filter(),
    };
    match frame_parts(&decoded.rgb, decoded.alpha.as_ref(), &framing) {
        Ok(framed) => Ok(Ok((framed.image, framed.summary))),
        Err(FramingError::InvalidSettings(message)) => Err(GateError::InvalidSettings(InvalidSettings::Framing(message))),
        Err(error) => Ok(Err(Reason::new(Code::NoObject, error.to_string()))),
    }
}

/// [`assess`] plus PNG encoding of the standardised image: what the gate worker stores.
pub fn gate(bytes: &[u8], settings: &GateSettings) -> Result<GateOutput, GateError> {
    let Assessment { report, standardised } = assess(bytes, settings)?;
    let standardised_png = standardised.as_ref().map(encode_png).transpose()?;
    Ok(GateOutput { report, standardised_png })
}

/// The scores' rejection reasons, in a fixed order (lighting, then blur).
fn judge(scores: &Scores, thresholds: &Thresholds) -> Vec<Reason> {
    const GRAY: &str = "mean gray intensity";
    let (intensity, blur) = (scores.mean_intensity, scores.blur_variance);
    [
        below(Code::TooDark, "too dark", GRAY, intensity, thresholds.min_mean_intensity),
        above(Code::Overexposed, "overexposed", GRAY, intensity, thresholds.max_mean_intensity),
        below(Code::Blurry, "blurry", "Laplacian variance", blur, thresholds.min_blur_variance),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// A reason when `value` is under `min`.
fn below(code: Code, label: &str, measure: &str, value: f64, min: f64) -> Option<Reason> {
    (value < min).then(|| threshold_reason(code, label, measure, value, "below", min))
}

/// A reason when `value` is over `max`.
fn above(code: Code, label: &str, measure: &str, value: f64, max: f64) -> Option<Reason> {
    (value > max).then(|| threshold_reason(code, label, measure, value, "above", max))
}

/// "{label}: {measure} {value} is {side} {bound}", numbers to one decimal.
fn threshold_reason(code: Code, label: &str, measure: &str, value: f64, side: &str, bound: f64) -> Reason {
    Reason::new(code, format!("{label}: {measure} {value:.1} is {side} {bound:.1}"))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn reasons(blur_variance: f64, mean_intensity: f64) -> Vec<(Code, String)> {
        let thresholds = Thresholds { min_blur_variance: 100.0, min_mean_intensity: 40.0, max_mean_intensity: 220.0 };
        judge(&Scores { blur_variance, mean_intensity }, &thresholds).into_iter().map(|r| (r.code, r.message)).collect()
    }

    #[test]
    fn threshold_reasons_keep_their_order_and_wording() {
        assert_eq!(
            reasons(3.04, 12.34),
            [
                (Code::TooDark, "too dark: mean gray intensity 12.3 is below 40.0".to_string()),
                (Code::Blurry, "blurry: Laplacian variance 3.0 is below 100.0".to_string()),
            ]
        );
        assert_eq!(reasons(150.0, 230.5), [(Code::Overexposed, "overexposed: mean gray intensity 230.5 is above 220.0".to_string())]);
        // On the bounds, and for a score that is not a number, nothing is said.
        assert!(reasons(100.0, 40.0).is_empty());
        assert!(reasons(100.0, 220.0).is_empty());
        assert!(reasons(f64::NAN, f64::NAN).is_empty());
    }
}
