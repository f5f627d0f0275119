//! What the gate says about one photo: recorded on the job and shown by `mono2mesh gate`.

use mono2mesh_framing::FramingSummary;
use serde::{Deserialize, Serialize};
use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    Accept,
    Reject,
}

/// Machine-readable kind of a rejection reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReasonCode {
    /// Zero bytes.
    Empty,
    /// The file is larger than `DecodeLimits::max_input_bytes`.
    InputTooLarge,
    /// Not a format the gate decodes (JPEG, PNG, WebP, TIFF, BMP).
    UnknownFormat,
    /// The header claims more pixels than the limits allow (decompression bomb guard).
    DimensionsTooLarge,
    /// A zero-sized image.
    NoPixels,
    /// The data ends before the image does.
    Truncated,
    /// Corrupt or unsupported image data.
    Undecodable,
    /// Variance of the Laplacian below the threshold.
    Blurry,
    /// Mean gray intensity below the lighting band.
    TooDark,
    /// Mean gray intensity above the lighting band.
    Overexposed,
    /// Framing found no object apart from the background (all background, an empty
    /// alpha channel); only with `framing = "auto"`.
    NoObject,
}

/// One reason for a rejection: a code for machines and a sentence for people.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reason {
    pub code: ReasonCode,
    pub message: String,
}

impl Reason {
    pub(crate) fn new(code: ReasonCode, message: impl Into<String>) -> Self {
        // One line: decoder errors sometimes end in a line break, and reasons are shown
        // in tables, logs and `stats` groups.
        let message: String = message.into();
        let message = message.lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join(" ");
        Reason { code, message }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// Facts about the photo as received, before standardisation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SourceInfo {
    /// "jpeg", "png", "webp", "tiff" or "bmp".
    pub format: String,
    /// Size as stored in the file, before the EXIF orientation is applied.
    pub width: u32,
    pub height: u32,
    /// Colour type as stored: "l8", "la8", "rgb8", "rgba8", "l16", "rgb16", "rgba16",
    /// "rgb32f", "rgba32f" or "cmyk8" (4-component JPEG, Adobe CMYK or YCCK).
    pub colour_type: String,
    /// The EXIF orientation tag (1-8) that was applied; 1 when absent.
    pub exif_orientation: u8,
    /// Size after the orientation is applied (width and height swap for 5-8).
    pub oriented_width: u32,
    pub oriented_height: u32,
}

/// The two scores of the paper's quality check, both on the standardised image's grayscale.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Scores {
    /// Population variance of the 3x3 Laplacian ([0,1,0; 1,-4,1; 0,1,0], reflect-101
    /// borders): OpenCV's `cv2.Laplacian(gray, cv2.CV_64F).var()`.
    pub blur_variance: f64,
    /// Mean gray intensity, 0-255.
    pub mean_intensity: f64,
}

/// The gate's verdict on one photo. `scores` and `source` are absent when the photo
/// could not be decoded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GateReport {
    pub decision: Decision,
    /// Empty when accepted.
    pub reasons: Vec<Reason>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scores: Option<Scores>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<SourceInfo>,
    /// The settings' thresholds the scores were judged against, so a recorded report
    /// explains itself even after the defaults change.
    pub thresholds: Thresholds,
    /// What framing did (source, the object's box in the upright photo); absent when
    /// framing is off or the photo could not be decoded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub framing: Option<FramingSummary>,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Thresholds {
    pub min_blur_variance: f64,
    pub min_mean_intensity: f64,
    pub max_mean_intensity: f64,
}

impl GateReport {
    pub fn accepted(&self) -> bool {
        self.decision == Decision::Accept
    }

    /// All reasons in one line, for a job's `last_error` or a log line.
    pub fn reason_summary(&self) -> String {
        self.reasons.iter().map(|r| r.message.as_str()).collect::<Vec<_>>().join("; ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_one_line() {
        // As the JPEG decoder words a truncated stream: with a trailing line break.
        let reason = Reason::new(ReasonCode::UnknownFormat, "I/O errors Not enough bytes, expected 1 but found 0\n");
        assert_eq!(reason.message, "I/O errors Not enough bytes, expected 1 but found 0");
        assert_eq!(Reason::new(ReasonCode::Empty, "first\n  second\n").message, "first second");
    }
}
