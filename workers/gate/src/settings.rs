//! What the gate accepts, with defaults close to the paper's acquisition phase.

use serde::{Deserialize, Serialize};

/// Side of the square image the paper standardises every photo to.
pub const PAPER_SIZE: u32 = 600;

/// How a photo that is not square becomes a `size` x `size` image. The one definition:
/// config files, environment and the CLI's `--aspect` all name these values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum AspectPolicy {
    /// Resize each axis independently to `size`, as the paper does (PIL `resize((600, 600))`);
    /// objects in wide or tall photos get squashed.
    Stretch,
    /// Keep the aspect ratio: fit the longer side to `size` and letterbox the rest with
    /// `pad_colour`. The padding takes part in the scores (its interior has no Laplacian
    /// response and its own brightness), so a heavily padded photo scores less sharp.
    Pad,
}

/// Resampling filter for the resize. `Bicubic` is Pillow's default for `Image.resize`
/// (a = -0.5, support widened when shrinking, like Pillow's antialiasing).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResizeFilter {
    Nearest,
    Bilinear,
    Bicubic,
    Lanczos3,
}

impl ResizeFilter {
    pub(crate) fn to_image_filter(self) -> image::imageops::FilterType {
        use image::imageops::FilterType;
        match self {
            ResizeFilter::Nearest => FilterType::Nearest,
            ResizeFilter::Bilinear => FilterType::Triangle,
            ResizeFilter::Bicubic => FilterType::CatmullRom,
            ResizeFilter::Lanczos3 => FilterType::Lanczos3,
        }
    }
}

/// Whether the gate frames the object before standardising (`mono2mesh-framing`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum FramingMode {
    /// Standardise the whole photo (the paper's behaviour).
    #[default]
    Off,
    /// Find the object (alpha, or a plain backdrop estimated from the border), crop to it so
    /// it fills the frame as in the training renders and pad square; busy scenes are left
    /// whole; a photo with no separable object is rejected (`no_object`).
    Auto,
}

/// Caps checked before and during decoding so a hostile file cannot exhaust memory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DecodeLimits {
    /// Larger inputs are rejected before any parsing.
    pub max_input_bytes: u64,
    /// Largest width or height accepted, checked from the header before decoding.
    pub max_side: u32,
    /// Largest width x height accepted, checked from the header before decoding.
    pub max_pixels: u64,
    /// Cap on the decoder's own allocations (image's `Limits::max_alloc`) and on the
    /// decoded buffer.
    pub max_alloc_bytes: u64,
    /// Cap on the decoded bytes of all photos this process decodes at once (header sizes,
    /// taken before decoding, given back after). A photo waits until its bytes fit; one
    /// larger than the whole budget is rejected.
    pub decode_budget_bytes: u64,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        DecodeLimits {
            // Phone photos are a few MB; 64 MiB leaves room for large TIFFs.
            max_input_bytes: 64 * 1024 * 1024,
            // 16384 covers every camera sensor in use; 50 MP covers 48-50 MP phones.
            max_side: 16_384,
            max_pixels: 50_000_000,
            // 50 MP at 8-bit RGBA is 200 MB; 16-bit RGB would be 300 MB.
            max_alloc_bytes: 512 * 1024 * 1024,
            // Four worst-case photos (50 MP RGBA plus its RGB copy, ~350 MB each) at once:
            // every photo max_alloc_bytes admits still fits alone, and a busy worker stays
            // under ~2 GB of pixels however many decodes the runtime starts.
            decode_budget_bytes: 2 * 1024 * 1024 * 1024,
        }
    }
}

/// Everything the gate decides with: the `[gate]` section of the layered config, in the
/// worker and in `mono2mesh run` alike. Deserialises with defaults for missing fields.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GateSettings {
    /// Side of the standardised square image (the paper uses 600).
    pub size: u32,
    pub aspect: AspectPolicy,
    /// Letterbox colour for `AspectPolicy::Pad` and the background transparent pixels are
    /// composited onto (white, like a product-shot background).
    pub background: [u8; 3],
    pub filter: ResizeFilter,
    /// Minimum variance of the 3x3 Laplacian of the standardised grayscale image; below it
    /// the photo is rejected as blurry.
    pub min_blur_variance: f64,
    /// Lowest accepted mean gray intensity (0-255) of the standardised image.
    pub min_mean_intensity: f64,
    /// Highest accepted mean gray intensity (0-255) of the standardised image.
    pub max_mean_intensity: f64,
    pub limits: DecodeLimits,
    /// Object framing after decoding, before standardising. Off by default: the shipped
    /// models were trained on unframed renders and the effect on reconstruction has not been
    /// measured yet (docs/experiments/framing.md).
    pub framing: FramingMode,
}

/// Default blur threshold: 100 is the customary cut-off for the variance-of-Laplacian
/// focus measure (Pech-Pacheco et al. 2000, popularised with OpenCV's `Laplacian().var()`),
/// the tool the paper's quality check uses. Measured on ../shared/testdata with the
/// 600x600 standardisation: 62 of the 65 ImageNet photos score 99-2260 and pass; two sky
/// scenes (29, 41) and a low-contrast close-up (65) fall below, as do the 127x127 R2N2
/// renders blown up to 600 (about 2). Texture-poor but sharp scenes are the measure's
/// known blind spot; lower the threshold for such catalogues.
pub const DEFAULT_MIN_BLUR_VARIANCE: f64 = 100.0;
/// Default lighting band [20, 245] of mean gray, the same in every mode (this default and
/// `shared/infra/src/defaults.toml`): below 20 (8% of the range) the frame is essentially
/// night; above 245 it is blown out. The ceiling leaves room for what catalogues are made
/// of, product shots on a white sweep: our catalog-style photos of thin or white objects on
/// white score 226-245 (the R2N2 renders 216-222); the ImageNet photos score 23-188, dim
/// ones (a barber chair at 30, a moped at 23) included.
pub const DEFAULT_MIN_MEAN_INTENSITY: f64 = 20.0;
pub const DEFAULT_MAX_MEAN_INTENSITY: f64 = 245.0;

impl Default for GateSettings {
    fn default() -> Self {
        GateSettings {
            size: PAPER_SIZE,
            aspect: AspectPolicy::Stretch,
            background: [255, 255, 255],
            filter: ResizeFilter::Bicubic,
            min_blur_variance: DEFAULT_MIN_BLUR_VARIANCE,
            min_mean_intensity: DEFAULT_MIN_MEAN_INTENSITY,
            max_mean_intensity: DEFAULT_MAX_MEAN_INTENSITY,
            limits: DecodeLimits::default(),
            framing: FramingMode::Off,
        }
    }
}

/// Settings that cannot describe a working gate.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum InvalidSettings {
    #[error("gate size must be between 3 and 8192 pixels, got {0}")]
    Size(u32),
    #[error("lighting band is empty or outside 0-255: [{low}, {high}]")]
    LightingBand { low: f64, high: f64 },
    #[error("minimum blur variance must be a finite number >= 0, got {0}")]
    BlurThreshold(f64),
    #[error("decode limits must all be positive")]
    Limits,
    #[error("{0}")]
    Framing(String),
}

impl GateSettings {
    /// The `[gate]` section of the layered settings, checked.
    pub fn from_config(settings: &mono2mesh_infra::config::Settings) -> Result<Self, mono2mesh_infra::config::ConfigError> {
        let gate: GateSettings = settings.gate.parse("gate")?;
        gate.validate()
            .map_err(|e| mono2mesh_infra::config::ConfigError::Section { section: "gate", message: e.to_string() })?;
        Ok(gate)
    }

    pub fn validate(&self) -> Result<(), InvalidSettings> {
        // The Laplacian needs at least 3 pixels per side to mean anything.
        if !(3..=8192).contains(&self.size) {
            return Err(InvalidSettings::Size(self.size));
        }
        let (low, high) = (self.min_mean_intensity, self.max_mean_intensity);
        if !(low.is_finite() && high.is_finite() && 0.0 <= low && low <= high && high <= 255.0) {
            return Err(InvalidSettings::LightingBand { low, high });
        }
        if !(self.min_blur_variance.is_finite() && self.min_blur_variance >= 0.0) {
            return Err(InvalidSettings::BlurThreshold(self.min_blur_variance));
        }
        let l = &self.limits;
        if l.max_input_bytes == 0 || l.max_side == 0 || l.max_pixels == 0 || l.max_alloc_bytes == 0 || l.decode_budget_bytes == 0
        {
            return Err(InvalidSettings::Limits);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mono2mesh_infra::config::{Settings, SettingsLoader};

    #[test]
    fn the_compiled_config_defaults_are_these_defaults() {
        assert_eq!(GateSettings::from_config(&Settings::defaults().unwrap()).unwrap(), GateSettings::default());
    }

    #[test]
    fn the_section_is_layered_and_checked() {
        let settings = SettingsLoader::with_env(
            [("MONO2MESH__GATE__ASPECT".to_string(), "pad".to_string())].into_iter().collect(),
        )
        .set("gate.limits.max_pixels", "1000")
        .set("gate.size", "300")
        .set("gate.framing", "auto")
        .load()
        .unwrap();
        let gate = GateSettings::from_config(&settings).unwrap();
        assert_eq!((gate.aspect, gate.limits.max_pixels, gate.size), (AspectPolicy::Pad, 1000, 300));
        assert_eq!(gate.framing, FramingMode::Auto);
        let bad = SettingsLoader::with_env(Default::default()).set("gate.min_mean_intensity", "250").load().unwrap();
        let error = GateSettings::from_config(&bad).unwrap_err().to_string();
        assert!(error.contains("[gate]") && error.contains("lighting band"), "{error}");
        let typo = SettingsLoader::with_env(Default::default()).set("gate.min_blur", "3").load().unwrap();
        assert!(GateSettings::from_config(&typo).unwrap_err().to_string().contains("min_blur"));
    }
}
