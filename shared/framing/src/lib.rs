//! Framing: find the object in a product photo or a training render and frame it the way
//! the training renders frame theirs, with one function for both ([`frame`]), so training
//! and inference never see differently framed objects.
//!
//! 1. **Mask.** An image whose alpha channel has transparency gives the mask directly
//!    (alpha >= 128). An alpha channel that is entirely 0 is [`FramingError::EmptyAlpha`];
//!    one that is (nearly) all opaque is treated as no alpha. Otherwise the background is
//!    estimated from a band along the border: the median colour of the top band and of the
//!    bottom band, linearly interpolated between them row by row (plain and white studio
//!    backdrops, and the catalog's vertical gradients). If too few border pixels lie within
//!    [`PLAIN_TOLERANCE`] of that model the scene is busy and the image is returned
//!    [`FramingSource::Unframed`] (a real photo is not rejected for its background). The
//!    mask is every pixel further from the background than a threshold set by the border's
//!    own noise; specks are dropped and the largest connected part is kept with the parts
//!    near it (a chair's legs that come apart from its seat); small holes are filled.
//! 2. **No object**: an empty mask, one under [`MIN_OBJECT_FRACTION`] of the frame, or one
//!    over [`MAX_OBJECT_FRACTION`] of it is [`FramingError::NoObject`] with the reason.
//! 3. **Frame.** A square window centred on the mask's bounding box whose side is the box's
//!    longer side over `fill` is resampled to `size` x `size`; where the window leaves the
//!    image it is padded (with the estimated backdrop, continued row by row, or the fixed
//!    `background`, see [`Padding`]). Pixels inside the image are kept as they are, so
//!    contact shadows and the backdrop around the object stay continuous.
//!
//! The analysis (mask, components) runs on a copy box-averaged to at most
//! [`ANALYSIS_SIDE`] pixels a side, so a 600x600 photo takes a few milliseconds and a
//! 50-megapixel one holds no full-size mask; the bounding box is exact to one analysis cell
//! (2 source pixels for a 600 photo, 1 for a 137 render). No input panics: 1x1 images,
//! one-colour images and extreme aspect ratios give a verdict like any other.

use image::imageops::{self, FilterType};
use image::{DynamicImage, GenericImageView, GrayImage, Luma, Rgb, RgbImage};
use serde::{Deserialize, Serialize};

pub mod dataset;
pub mod scene;

/// Fraction of the output square's side that the object's longer side fills.
///
/// Measured on the training renders as the model pack's training saw them: the pack's
/// catalog (`dataset synth`, catalog style, seed 2026, 137 px), every category, models 0-9,
/// all 6 views (720 renders); the object's silhouette (render alpha >= 128), its bounding
/// box's longer side over the side of what the network is shown. The pack trains with a
/// cached trunk, without online augmentation, through `pix2vox_preprocess::preprocess_image`,
/// whose photo path shrinks the whole 137 render to the network's 128 crop (as inference
/// shrinks the gate's 600 image): over 137, **median 0.752** (quartiles 0.64 and 0.83).
/// The official live-trunk training takes a random 128 crop instead, where the same renders
/// fill 0.797 (quartiles 0.68 and 0.88) at the centre crop. `FRAMING_MODELS=10 cargo test
/// -p mono2mesh-framing --release --test catalog -- --nocapture` prints both.
pub const DEFAULT_FILL: f32 = 0.75;

/// Longest side of the box-averaged copy the mask is computed on.
pub const ANALYSIS_SIDE: u32 = 320;
/// Width of the border band, as a fraction of the shorter side (at least one pixel).
pub const BORDER_FRACTION: f32 = 0.03;
/// Largest difference (max over channels, 0-255) between a border pixel and the background
/// model for the pixel to count as background.
pub const PLAIN_TOLERANCE: u8 = 18;
/// Share of border pixels that must be background for the border to be a plain backdrop.
pub const MIN_PLAIN_FRACTION: f32 = 0.85;
/// Smallest object/background difference (max over channels) that makes a pixel object.
pub const MIN_CONTRAST: u8 = 20;
/// Cells that look like the backdrop in shade (see `SHADOW_*`) count as object only when
/// they differ from it by more than this.
pub const SHADOW_CONTRAST: u8 = 48;
/// Darkest shade factor a shadow-like cell may have.
pub const SHADOW_MIN_FACTOR: f32 = 0.4;
/// Largest spread of the per-channel shade factors of a shadow-like cell.
pub const SHADOW_CHROMA_SPREAD: f32 = 0.04;
/// Smallest object, as a fraction of the frame's area, below which there is "no object".
pub const MIN_OBJECT_FRACTION: f32 = 0.001;
/// Largest object, as a fraction of the frame's area: beyond it nothing separates the
/// object from a background.
pub const MAX_OBJECT_FRACTION: f32 = 0.97;
/// An alpha channel with fewer transparent (alpha < 128) pixels than this fraction is
/// treated as no alpha (a stray transparent edge is not a cut-out).
pub const MIN_TRANSPARENT_FRACTION: f32 = 0.01;

/// What fills the part of the output square that lies outside the image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Padding {
    /// The estimated backdrop (its row-by-row model, so gradients continue) for images
    /// framed from their border; `background` for images framed from their alpha.
    Estimated,
    /// Always `background`.
    Background,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FramingSettings {
    /// Fraction of the output side the object's longer side fills, in [0.1, 1].
    pub fill: f32,
    /// Side of the square output.
    pub size: u32,
    /// Colour transparent pixels are composited onto (by [`frame`]) and padding colour for
    /// alpha images and for [`Padding::Background`]. White, like the catalog's most common
    /// backdrop and the gate's alpha background.
    pub background: [u8; 3],
    pub padding: Padding,
    /// Resampling filter from the source window to `size`.
    pub filter: FilterType,
}

impl Default for FramingSettings {
    fn default() -> Self {
        FramingSettings {
            fill: DEFAULT_FILL,
            size: 600,
            background: [255, 255, 255],
            padding: Padding::Estimated,
            filter: FilterType::CatmullRom,
        }
    }
}

impl FramingSettings {
    pub fn validate(&self) -> Result<(), FramingError> {
        if !(self.fill.is_finite() && (0.1..=1.0).contains(&self.fill)) {
            return Err(FramingError::InvalidSettings(format!("fill must be in [0.1, 1], got {}", self.fill)));
        }
        if !(1..=8192).contains(&self.size) {
            return Err(FramingError::InvalidSettings(format!("size must be 1-8192 pixels, got {}", self.size)));
        }
        Ok(())
    }
}

/// Where the mask came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FramingSource {
    /// The image's alpha channel.
    Alpha,
    /// Difference from the background estimated along the border.
    Border,
    /// Not framed: the border is not a plain backdrop (see the note).
    Unframed,
}

/// A rectangle in source pixels (`x`, `y` of the top-left corner).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BoundingBox {
    pub x: u32,
    pub y: u32,
    pub width: u32,
    pub height: u32,
}

/// What framing did, without the pixels: what the gate records.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FramingSummary {
    pub source: FramingSource,
    /// The object's bounding box in the (upright) source image.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub bbox: Option<BoundingBox>,
    /// The estimated background colour (the median of the border band; for a gradient,
    /// the top band's) when framed from the border.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub background: Option<[u8; 3]>,
    /// Why an image was left unframed.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub note: Option<String>,
}

/// The result of [`frame`]. `image` and `mask` are `None` when the image was left
/// unframed (use the input as it is).
#[derive(Debug, Clone, PartialEq)]
pub struct Framed {
    /// `size` x `size`, the object centred at `fill`.
    pub image: Option<RgbImage>,
    /// Same framing as `image`: the alpha values for alpha images, 255 object / 0
    /// background for border images (at analysis resolution, holes filled).
    pub mask: Option<GrayImage>,
    pub summary: FramingSummary,
}

impl Framed {
    pub fn source(&self) -> FramingSource {
        self.summary.source
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FramingError {
    /// No object can be told apart from the background.
    #[error("no separable object: {0}")]
    NoObject(String),
    #[error("no separable object: the alpha channel is empty (every pixel is fully transparent)")]
    EmptyAlpha,
    #[error("invalid framing settings: {0}")]
    InvalidSettings(String),
}

/// Frames any image: alpha (if any) is composited onto `settings.background` and used as
/// the mask; see the crate documentation.
pub fn frame(image: &DynamicImage, settings: &FramingSettings) -> Result<Framed, FramingError> {
    settings.validate()?;
    if !image.color().has_alpha() {
        return frame_parts(&image.to_rgb8(), None, settings);
    }
    let rgba = image.to_rgba8();
    let (width, height) = rgba.dimensions();
    let mut rgb = RgbImage::new(width, height);
    let mut alpha = GrayImage::new(width, height);
    for ((out, a), px) in rgb.pixels_mut().zip(alpha.pixels_mut()).zip(rgba.pixels()) {
        let opacity = u32::from(px[3]);
        for c in 0..3 {
            let blended = u32::from(px[c]) * opacity + u32::from(settings.background[c]) * (255 - opacity);
            out[c] = ((blended + 127) / 255) as u8;
        }
        a[0] = px[3];
    }
    frame_parts(&rgb, Some(&alpha), settings)
}

/// [`frame`] for an image already split into opaque RGB (transparent pixels composited onto
/// `settings.background`) and its alpha, as the gate's decoder produces them. `alpha` must
/// have `rgb`'s dimensions; otherwise it is ignored.
pub fn frame_parts(rgb: &RgbImage, alpha: Option<&GrayImage>, settings: &FramingSettings) -> Result<Framed, FramingError> {
    settings.validate()?;
    let alpha = alpha.filter(|a| a.dimensions() == rgb.dimensions());
    let found = match analyse(rgb, alpha)? {
        Analysis::Unframed(summary) => return Ok(Framed { image: None, mask: None, summary }),
        Analysis::Found(found) => found,
    };
    let window = Window::around(&found.bbox, settings);
    let image = window.resample(rgb, &found.grid, found.model.as_ref(), settings);
    let out_mask = window.mask(alpha.filter(|_| found.source == FramingSource::Alpha), &found.cells, &found.grid, settings.size);
    Ok(Framed { image: Some(image), mask: Some(out_mask), summary: found.summary() })
}

/// Whether `rgb` (and its `alpha`) shows a separable object, as [`frame_parts`] judges it,
/// without making any image: the summary (a busy scene is [`FramingSource::Unframed`]), or
/// the same rejection (an empty alpha channel, no separable object).
pub fn find_object(rgb: &RgbImage, alpha: Option<&GrayImage>) -> Result<FramingSummary, FramingError> {
    let alpha = alpha.filter(|a| a.dimensions() == rgb.dimensions());
    Ok(match analyse(rgb, alpha)? {
        Analysis::Unframed(summary) => summary,
        Analysis::Found(found) => found.summary(),
    })
}

/// The object's mask in the image's own pixels, without framing: what [`frame`] finds,
/// for callers that need to know which pixels are the object (the refine stage colours a
/// mesh from the gated photo).
#[derive(Debug, Clone, PartialEq)]
pub struct ObjectMask {
    /// Same size as the image; 255 object, 0 background (alpha images: alpha >= 128).
    /// `None` when the scene is busy ([`FramingSource::Unframed`]).
    pub mask: Option<GrayImage>,
    pub summary: FramingSummary,
}

/// Finds the object in `rgb` (and its `alpha`, if any) as [`frame_parts`] does and returns
/// its mask at the image's resolution (border masks are exact to one analysis cell). The
/// same rejections: an empty alpha channel or no separable object is an error.
pub fn object_mask(rgb: &RgbImage, alpha: Option<&GrayImage>) -> Result<ObjectMask, FramingError> {
    let alpha = alpha.filter(|a| a.dimensions() == rgb.dimensions());
    let found = match analyse(rgb, alpha)? {
        Analysis::Unframed(summary) => return Ok(ObjectMask { mask: None, summary }),
        Analysis::Found(found) => found,
    };
    let (width, height) = rgb.dimensions();
    let grid = &found.grid;
    let mask = GrayImage::from_fn(width, height, |x, y| {
        let object = match alpha.filter(|_| found.source == FramingSource::Alpha) {
            Some(a) => a.get_pixel(x, y)[0] >= 128,
            None => found.cells[(y / grid.step) as usize * grid.width + (x / grid.step) as usize],
        };
        Luma([if object { 255 } else { 0 }])
    });
    Ok(ObjectMask { mask: Some(mask), summary: found.summary() })
}

/// What the analysis of an image found.
enum Analysis {
    /// A busy scene: no backdrop to tell the object from.
    Unframed(FramingSummary),
    Found(Found),
}

/// An object found on the analysis grid.
struct Found {
    source: FramingSource,
    grid: Grid,
    /// The object's cells (holes filled).
    cells: Vec<bool>,
    model: Option<BackgroundModel>,
    bbox: BoundingBox,
}

impl Found {
    fn summary(&self) -> FramingSummary {
        FramingSummary { source: self.source, bbox: Some(self.bbox), background: self.model.map(|m| m.top), note: None }
    }
}

/// Steps 1 and 2 of the crate documentation: the object's mask on the analysis grid, or a
/// rejection, or a busy scene left alone.
fn analyse(rgb: &RgbImage, alpha: Option<&GrayImage>) -> Result<Analysis, FramingError> {
    let (width, height) = rgb.dimensions();
    if width == 0 || height == 0 {
        return Err(FramingError::NoObject(format!("the image has no pixels ({width}x{height})")));
    }
    let grid = Grid::new(rgb, alpha);
    let mut analysis = None;
    if let Some(cells) = &grid.alpha {
        if cells.iter().all(|&a| a == 0) {
            return Err(FramingError::EmptyAlpha);
        }
        let transparent = cells.iter().filter(|&&a| a < 128).count();
        if transparent as f32 >= MIN_TRANSPARENT_FRACTION * cells.len() as f32 {
            let mask: Vec<bool> = cells.iter().map(|&a| a >= 128).collect();
            if !mask.iter().any(|&m| m) {
                let strongest = cells.iter().max().copied().unwrap_or(0);
                return Err(FramingError::NoObject(format!(
                    "the alpha channel has no opaque pixels (the most opaque cell is {strongest} of 255)"
                )));
            }
            analysis = Some((FramingSource::Alpha, mask, None));
        }
    }
    let (source, raw_mask, model) = match analysis {
        Some(found) => found,
        None => {
            let model = BackgroundModel::estimate(&grid);
            let (plain, threshold) = model.judge_border(&grid);
            if plain < MIN_PLAIN_FRACTION {
                return Ok(Analysis::Unframed(FramingSummary {
                    source: FramingSource::Unframed,
                    bbox: None,
                    background: None,
                    note: Some(format!(
                        "busy background: only {:.0}% of the border is within {PLAIN_TOLERANCE} of one backdrop colour \
                         ({:.0}% needed); left as it is",
                        plain * 100.0,
                        MIN_PLAIN_FRACTION * 100.0
                    )),
                }));
            }
            let differs: Vec<bool> =
                grid.rgb.iter().enumerate().map(|(i, px)| model.difference(px, i / grid.width) > threshold).collect();
            let unshaded: Vec<bool> =
                grid.rgb.iter().enumerate().map(|(i, px)| model.is_object(px, i / grid.width, threshold)).collect();
            // Leaving out shadow-like cells must not lose the object itself (a grey object on
            // white is shadow-like all over): keep them out only while most of the object
            // remains.
            let count = |mask: &[bool]| mask.iter().filter(|&&m| m).count();
            let mask = if count(&unshaded) * 2 >= count(&differs) { unshaded } else { differs };
            (FramingSource::Border, mask, Some(model))
        }
    };

    let mask = keep_object(&raw_mask, grid.width, grid.height);
    let area = mask.iter().filter(|&&m| m).count();
    let fraction = area as f32 / mask.len() as f32;
    let what = match source {
        FramingSource::Alpha => "opaque pixels",
        _ => "pixels that differ from the background",
    };
    if area == 0 || fraction < MIN_OBJECT_FRACTION {
        return Err(FramingError::NoObject(format!(
            "the {what} cover {:.2}% of the frame (at least {:.1}% needed): the photo is all background",
            fraction * 100.0,
            MIN_OBJECT_FRACTION * 100.0
        )));
    }
    if fraction > MAX_OBJECT_FRACTION {
        return Err(FramingError::NoObject(format!(
            "the {what} cover {:.1}% of the frame: nothing separates an object from a background",
            fraction * 100.0
        )));
    }
    let cells = fill_holes(mask, grid.width, grid.height);
    let bbox = grid.to_source(bounding_box(&cells, grid.width).expect("the mask is not empty"));
    Ok(Analysis::Found(Found { source, grid, cells, model, bbox }))
}

/// A cell rectangle `(x0, y0, x1, y1)`, exclusive ends.
type Cells = (usize, usize, usize, usize);

/// The box-averaged analysis copy.
struct Grid {
    width: usize,
    height: usize,
    /// Source pixels per cell along each axis.
    step: u32,
    source_width: u32,
    source_height: u32,
    rgb: Vec<[u8; 3]>,
    alpha: Option<Vec<u8>>,
}

impl Grid {
    fn new(rgb: &RgbImage, alpha: Option<&GrayImage>) -> Grid {
        let (w, h) = rgb.dimensions();
        let step = w.max(h).div_ceil(ANALYSIS_SIDE).max(1);
        let (gw, gh) = (w.div_ceil(step) as usize, h.div_ceil(step) as usize);
        let mut sums = vec![[0u64; 4]; gw * gh];
        let mut counts = vec![0u64; gw * gh];
        let raw = rgb.as_raw();
        let alpha_raw = alpha.map(|a| a.as_raw());
        for y in 0..h as usize {
            let row = (y / step as usize) * gw;
            for x in 0..w as usize {
                let cell = row + x / step as usize;
                let i = y * w as usize + x;
                let s = &mut sums[cell];
                s[0] += u64::from(raw[i * 3]);
                s[1] += u64::from(raw[i * 3 + 1]);
                s[2] += u64::from(raw[i * 3 + 2]);
                if let Some(a) = alpha_raw {
                    s[3] += u64::from(a[i]);
                }
                counts[cell] += 1;
            }
        }
        let avg = |sum: u64, n: u64| ((sum + n / 2) / n.max(1)) as u8;
        let cells = sums.iter().zip(&counts).map(|(s, &n)| [avg(s[0], n), avg(s[1], n), avg(s[2], n)]).collect();
        let alpha = alpha.map(|_| sums.iter().zip(&counts).map(|(s, &n)| avg(s[3], n)).collect());
        Grid { width: gw, height: gh, step, source_width: w, source_height: h, rgb: cells, alpha }
    }

    /// A cell rectangle `[x0, x1) x [y0, y1)` in source pixels.
    fn to_source(&self, (x0, y0, x1, y1): Cells) -> BoundingBox {
        let s = self.step as usize;
        let (sx0, sy0) = ((x0 * s) as u32, (y0 * s) as u32);
        let sx1 = ((x1 * s) as u32).min(self.source_width);
        let sy1 = ((y1 * s) as u32).min(self.source_height);
        BoundingBox { x: sx0, y: sy0, width: sx1.saturating_sub(sx0).max(1), height: sy1.saturating_sub(sy0).max(1) }
    }
}

/// The backdrop: the top band's median colour at the top band's centre row, the bottom
/// band's at the bottom's, linear in between and constant beyond.
#[derive(Debug, Clone, Copy)]
struct BackgroundModel {
    top: [u8; 3],
    bottom: [u8; 3],
    top_row: f32,
    bottom_row: f32,
    band: usize,
}

impl BackgroundModel {
    fn estimate(grid: &Grid) -> BackgroundModel {
        let (w, h) = (grid.width, grid.height);
        let band = ((w.min(h) as f32 * BORDER_FRACTION).round() as usize).clamp(1, h.min(w).max(1));
        let top_rows = 0..band.min(h);
        let bottom_rows = h.saturating_sub(band)..h;
        let median_of = |rows: std::ops::Range<usize>| median_colour(rows.flat_map(|y| grid.rgb[y * w..(y + 1) * w].iter()));
        let top = median_of(top_rows);
        let bottom = median_of(bottom_rows);
        let top_row = (band as f32 - 1.0) / 2.0;
        let bottom_row = h as f32 - 1.0 - top_row;
        BackgroundModel { top, bottom, top_row, bottom_row, band }
    }

    fn colour_at(&self, row: f32) -> [f32; 3] {
        let span = self.bottom_row - self.top_row;
        let t = if span > 0.0 { ((row - self.top_row) / span).clamp(0.0, 1.0) } else { 0.5 };
        [0, 1, 2].map(|c| f32::from(self.top[c]) * (1.0 - t) + f32::from(self.bottom[c]) * t)
    }

    /// Largest channel difference from the background at analysis row `row`.
    fn difference(&self, px: &[u8; 3], row: usize) -> u8 {
        let bg = self.colour_at(row as f32);
        (0..3).map(|c| (f32::from(px[c]) - bg[c]).abs()).fold(0.0f32, f32::max).round().min(255.0) as u8
    }

    /// Whether `px` looks like the background in shade: darker than it by one factor on
    /// every channel (within [`SHADOW_CHROMA_SPREAD`]), no darker than [`SHADOW_MIN_FACTOR`].
    fn is_shadow_like(&self, px: &[u8; 3], row: usize) -> bool {
        let bg = self.colour_at(row as f32);
        let ratios = [0, 1, 2].map(|c| (f32::from(px[c]) + 4.0) / (bg[c] + 4.0));
        let (lo, hi) = (ratios.iter().copied().fold(f32::MAX, f32::min), ratios.iter().copied().fold(0.0f32, f32::max));
        hi <= 1.01 && lo >= SHADOW_MIN_FACTOR && hi - lo <= SHADOW_CHROMA_SPREAD
    }

    /// Whether the cell is object: further than `threshold` from the background, and than
    /// [`SHADOW_CONTRAST`] for shadow-like cells (a soft contact shadow's penumbra is not
    /// the object; its umbra and grey parts with real contrast still are).
    fn is_object(&self, px: &[u8; 3], row: usize, threshold: u8) -> bool {
        let difference = self.difference(px, row);
        difference > threshold && (difference > SHADOW_CONTRAST || !self.is_shadow_like(px, row))
    }

    /// The share of border-band cells within [`PLAIN_TOLERANCE`] of the model, and the
    /// object threshold: the larger of [`MIN_CONTRAST`] and twice the plain cells' 90th
    /// percentile difference plus 4 (a noisier backdrop needs a larger step), capped at 60.
    fn judge_border(&self, grid: &Grid) -> (f32, u8) {
        let (w, h, band) = (grid.width, grid.height, self.band);
        let mut histogram = [0usize; 256];
        let mut total = 0usize;
        for y in 0..h {
            let in_row_band = y < band || y + band >= h;
            for x in 0..w {
                if in_row_band || x < band || x + band >= w {
                    histogram[usize::from(self.difference(&grid.rgb[y * w + x], y))] += 1;
                    total += 1;
                }
            }
        }
        let plain: usize = histogram[..=usize::from(PLAIN_TOLERANCE)].iter().sum();
        let mut seen = 0;
        let mut p90 = 0u8;
        for (d, &n) in histogram[..=usize::from(PLAIN_TOLERANCE)].iter().enumerate() {
            seen += n;
            if seen * 10 >= plain * 9 {
                p90 = d as u8;
                break;
            }
        }
        let threshold = (u16::from(p90) * 2 + 4).clamp(u16::from(MIN_CONTRAST), 60) as u8;
        (plain as f32 / total.max(1) as f32, threshold)
    }
}

/// Per-channel median of some colours (histograms; [255; 3] for none).
fn median_colour<'a>(colours: impl Iterator<Item = &'a [u8; 3]>) -> [u8; 3] {
    let mut histograms = [[0usize; 256]; 3];
    let mut n = 0usize;
    for px in colours {
        for c in 0..3 {
            histograms[c][usize::from(px[c])] += 1;
        }
        n += 1;
    }
    if n == 0 {
        return [255; 3];
    }
    histograms.map(|hist| {
        let mut seen = 0;
        for (v, &count) in hist.iter().enumerate() {
            seen += count;
            if 2 * seen >= n {
                return v as u8;
            }
        }
        255
    })
}

/// Connected components (8-connected) of `mask`: a label per cell (0 = none) and each
/// label's area and bounding box `(x0, y0, x1, y1)`, exclusive ends.
fn components(mask: &[bool], width: usize, height: usize) -> (Vec<u32>, Vec<(usize, Cells)>) {
    let mut labels = vec![0u32; mask.len()];
    let mut parts = Vec::new();
    let mut stack = Vec::new();
    for start in 0..mask.len() {
        if !mask[start] || labels[start] != 0 {
            continue;
        }
        let label = parts.len() as u32 + 1;
        labels[start] = label;
        stack.push(start);
        let (mut area, mut bbox) = (0usize, (usize::MAX, usize::MAX, 0usize, 0usize));
        while let Some(i) = stack.pop() {
            let (x, y) = (i % width, i / width);
            area += 1;
            bbox = (bbox.0.min(x), bbox.1.min(y), bbox.2.max(x + 1), bbox.3.max(y + 1));
            for ny in y.saturating_sub(1)..(y + 2).min(height) {
                for nx in x.saturating_sub(1)..(x + 2).min(width) {
                    let j = ny * width + nx;
                    if mask[j] && labels[j] == 0 {
                        labels[j] = label;
                        stack.push(j);
                    }
                }
            }
        }
        parts.push((area, bbox));
    }
    (labels, parts)
}

/// The object: the largest component plus every other component of at least
/// `max(3, 0.02% of the frame)` cells whose box comes within 5% of the frame's longer side
/// of the kept parts' box (repeated until nothing more joins). Specks and distant clutter
/// go.
fn keep_object(mask: &[bool], width: usize, height: usize) -> Vec<bool> {
    let (labels, parts) = components(mask, width, height);
    let Some(largest) = (0..parts.len()).max_by_key(|&i| parts[i].0) else {
        return vec![false; mask.len()];
    };
    let min_area = ((mask.len() as f32 * 0.0002) as usize).max(3);
    let gap = ((width.max(height) as f32 * 0.05).ceil() as usize).max(1);
    let mut keep = vec![false; parts.len()];
    keep[largest] = true;
    let mut bbox = parts[largest].1;
    let mut candidates: Vec<usize> = (0..parts.len()).filter(|&i| i != largest && parts[i].0 >= min_area).collect();
    loop {
        let before = candidates.len();
        candidates.retain(|&i| {
            let b = parts[i].1;
            let near = b.0 < bbox.2 + gap && bbox.0 < b.2 + gap && b.1 < bbox.3 + gap && bbox.1 < b.3 + gap;
            if near {
                keep[i] = true;
                bbox = (bbox.0.min(b.0), bbox.1.min(b.1), bbox.2.max(b.2), bbox.3.max(b.3));
            }
            !near
        });
        if candidates.len() == before {
            break;
        }
    }
    labels.iter().map(|&l| l != 0 && keep[l as usize - 1]).collect()
}

/// Fills background regions enclosed by the object (4-connected, not touching the edge)
/// smaller than 2% of the frame.
fn fill_holes(mut mask: Vec<bool>, width: usize, height: usize) -> Vec<bool> {
    let limit = ((mask.len() as f32) * 0.02) as usize;
    let mut seen = vec![false; mask.len()];
    let mut stack = Vec::new();
    let mut region = Vec::new();
    for start in 0..mask.len() {
        if mask[start] || seen[start] {
            continue;
        }
        seen[start] = true;
        stack.push(start);
        region.clear();
        let mut touches_edge = false;
        while let Some(i) = stack.pop() {
            let (x, y) = (i % width, i / width);
            region.push(i);
            touches_edge |= x == 0 || y == 0 || x + 1 == width || y + 1 == height;
            let neighbours = [
                (x > 0).then(|| i - 1),
                (x + 1 < width).then(|| i + 1),
                (y > 0).then(|| i - width),
                (y + 1 < height).then(|| i + width),
            ];
            for j in neighbours.into_iter().flatten() {
                if !mask[j] && !seen[j] {
                    seen[j] = true;
                    stack.push(j);
                }
            }
        }
        if !touches_edge && region.len() < limit {
            for &i in &region {
                mask[i] = true;
            }
        }
    }
    mask
}

/// `(x0, y0, x1, y1)` of the set cells, exclusive ends.
fn bounding_box(mask: &[bool], width: usize) -> Option<Cells> {
    let mut bbox: Option<Cells> = None;
    for (i, _) in mask.iter().enumerate().filter(|(_, &m)| m) {
        let (x, y) = (i % width, i / width);
        bbox = Some(match bbox {
            None => (x, y, x + 1, y + 1),
            Some(b) => (b.0.min(x), b.1.min(y), b.2.max(x + 1), b.3.max(y + 1)),
        });
    }
    bbox
}

/// The square source window around the object, in source pixel coordinates.
struct Window {
    x0: f64,
    y0: f64,
    side: f64,
    /// Output pixels per source pixel.
    scale: f64,
    size: u32,
}

impl Window {
    fn around(bbox: &BoundingBox, settings: &FramingSettings) -> Window {
        let longer = f64::from(bbox.width.max(bbox.height));
        let side = longer / f64::from(settings.fill);
        let cx = f64::from(bbox.x) + f64::from(bbox.width) / 2.0;
        let cy = f64::from(bbox.y) + f64::from(bbox.height) / 2.0;
        Window { x0: cx - side / 2.0, y0: cy - side / 2.0, side, scale: f64::from(settings.size) / side, size: settings.size }
    }

    /// The part of the window inside a `width` x `height` image: source `[x0, x1)`,
    /// `[y0, y1)` and where it lands in the output (left, top, width, height).
    fn inside(&self, width: u32, height: u32) -> Option<([u32; 4], [u32; 4])> {
        let x0 = self.x0.max(0.0).floor() as u32;
        let y0 = self.y0.max(0.0).floor() as u32;
        let x1 = ((self.x0 + self.side).ceil().max(0.0) as u32).min(width);
        let y1 = ((self.y0 + self.side).ceil().max(0.0) as u32).min(height);
        if x1 <= x0 || y1 <= y0 {
            return None;
        }
        let place = |start: u32, origin: f64, len: u32| {
            let left = (((f64::from(start) - origin) * self.scale).round().max(0.0) as u32).min(self.size - 1);
            let extent = ((f64::from(len) * self.scale).round() as u32).clamp(1, self.size - left);
            (left, extent)
        };
        let (left, out_w) = place(x0, self.x0, x1 - x0);
        let (top, out_h) = place(y0, self.y0, y1 - y0);
        Some(([x0, y0, x1, y1], [left, top, out_w, out_h]))
    }

    fn resample(&self, rgb: &RgbImage, grid: &Grid, model: Option<&BackgroundModel>, settings: &FramingSettings) -> RgbImage {
        let size = self.size;
        let mut canvas = RgbImage::from_pixel(size, size, Rgb(settings.background));
        if let (Some(model), Padding::Estimated) = (model, settings.padding) {
            for y in 0..size {
                let source_row = self.y0 + (f64::from(y) + 0.5) / self.scale;
                let colour = model.colour_at((source_row / f64::from(grid.step)) as f32);
                let colour = Rgb(colour.map(|v| v.round().clamp(0.0, 255.0) as u8));
                for x in 0..size {
                    canvas.put_pixel(x, y, colour);
                }
            }
        }
        if let Some(([x0, y0, x1, y1], [left, top, out_w, out_h])) = self.inside(rgb.width(), rgb.height()) {
            let view = rgb.view(x0, y0, x1 - x0, y1 - y0);
            let resized = imageops::resize(&*view, out_w, out_h, settings.filter);
            imageops::replace(&mut canvas, &resized, i64::from(left), i64::from(top));
        }
        canvas
    }

    /// The mask in the output's framing: `alpha` looked up per output pixel when given,
    /// else the analysis mask.
    fn mask(&self, alpha: Option<&GrayImage>, cells: &[bool], grid: &Grid, size: u32) -> GrayImage {
        let mut out = GrayImage::new(size, size);
        for y in 0..size {
            let sy = self.y0 + (f64::from(y) + 0.5) / self.scale;
            if sy < 0.0 || sy >= f64::from(grid.source_height) {
                continue;
            }
            for x in 0..size {
                let sx = self.x0 + (f64::from(x) + 0.5) / self.scale;
                if sx < 0.0 || sx >= f64::from(grid.source_width) {
                    continue;
                }
                let (sx, sy) = (sx as u32, sy as u32);
                let value = match alpha {
                    Some(a) => a.get_pixel(sx, sy)[0],
                    None => {
                        let cell = (sy / grid.step) as usize * grid.width + (sx / grid.step) as usize;
                        if cells[cell] {
                            255
                        } else {
                            0
                        }
                    }
                };
                out.put_pixel(x, y, Luma([value]));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{Rgba, RgbaImage};

    fn settings(size: u32) -> FramingSettings {
        FramingSettings { size, ..FramingSettings::default() }
    }

    /// A `w` x `h` backdrop with a filled rectangle `[x0, x1) x [y0, y1)`.
    fn product(w: u32, h: u32, backdrop: [u8; 3], colour: [u8; 3], rect: (u32, u32, u32, u32)) -> RgbImage {
        RgbImage::from_fn(w, h, |x, y| {
            if (rect.0..rect.2).contains(&x) && (rect.1..rect.3).contains(&y) {
                Rgb(colour)
            } else {
                Rgb(backdrop)
            }
        })
    }

    /// The object's box in the output: `(x0, y0, x1, y1)` of pixels far from `backdrop`.
    fn object_box(image: &RgbImage, backdrop: [u8; 3]) -> (u32, u32, u32, u32) {
        let mut b = (u32::MAX, u32::MAX, 0, 0);
        for (x, y, px) in image.enumerate_pixels() {
            if (0..3).any(|c| px[c].abs_diff(backdrop[c]) > 40) {
                b = (b.0.min(x), b.1.min(y), b.2.max(x + 1), b.3.max(y + 1));
            }
        }
        b
    }

    /// The object's box in the output mask.
    fn mask_box(mask: &GrayImage) -> (u32, u32, u32, u32) {
        let mut b = (u32::MAX, u32::MAX, 0, 0);
        for (x, y, px) in mask.enumerate_pixels() {
            if px[0] >= 128 {
                b = (b.0.min(x), b.1.min(y), b.2.max(x + 1), b.3.max(y + 1));
            }
        }
        b
    }

    fn assert_framed_at_fill(framed: &Framed, backdrop: [u8; 3], size: u32) {
        let image = framed.image.as_ref().expect("framed");
        assert_eq!(image.dimensions(), (size, size));
        let (x0, y0, x1, y1) = object_box(image, backdrop);
        // Image and mask agree to the pixel the resampling filter blurs the edge over.
        let m = mask_box(framed.mask.as_ref().unwrap());
        let close = |a: u32, b: u32| a.abs_diff(b) <= 1;
        assert!(close(x0, m.0) && close(y0, m.1) && close(x1, m.2) && close(y1, m.3), "image {:?} mask {m:?}", (x0, y0, x1, y1));
        let longer = (x1 - x0).max(y1 - y0) as f32;
        let fill = longer / size as f32;
        assert!((fill - DEFAULT_FILL).abs() < 0.03, "fill {fill}, box {:?}", (x0, y0, x1, y1));
        // Centred.
        let (cx, cy) = ((x0 + x1) as f32 / 2.0, (y0 + y1) as f32 / 2.0);
        assert!((cx - size as f32 / 2.0).abs() < 4.0 && (cy - size as f32 / 2.0).abs() < 4.0, "centre {cx},{cy}");
    }

    #[test]
    fn white_background_product_is_cropped_centred_and_scaled() {
        let photo = product(600, 400, [252, 252, 252], [150, 40, 30], (40, 60, 160, 300));
        let framed = frame(&DynamicImage::ImageRgb8(photo), &settings(300)).unwrap();
        assert_eq!(framed.source(), FramingSource::Border);
        assert_eq!(framed.summary.bbox, Some(BoundingBox { x: 40, y: 60, width: 120, height: 240 }));
        assert_eq!(framed.summary.background, Some([252, 252, 252]));
        assert_framed_at_fill(&framed, [252, 252, 252], 300);
        // The padding continues the backdrop, and the mask has the same framing.
        let image = framed.image.as_ref().unwrap();
        assert_eq!(image.get_pixel(1, 1), &Rgb([252, 252, 252]));
        let mask = framed.mask.as_ref().unwrap();
        assert_eq!(mask.get_pixel(150, 150)[0], 255);
        assert_eq!(mask.get_pixel(5, 150)[0], 0);
    }

    #[test]
    fn grey_studio_background_with_gradient_and_shadow() {
        // A vertical gradient 225 -> 190 with a darker soft shadow under a blue object.
        let photo = RgbImage::from_fn(500, 500, |x, y| {
            let g = 225.0 - 35.0 * y as f32 / 499.0;
            let in_object = (180..320).contains(&x) && (150..380).contains(&y);
            let shadow = (170..330).contains(&x) && (380..392).contains(&y);
            if in_object {
                Rgb([40, 60, 170])
            } else if shadow {
                let v = (g * 0.85) as u8;
                Rgb([v, v, v])
            } else {
                let v = g.round() as u8;
                Rgb([v, v, v])
            }
        });
        let framed = frame(&DynamicImage::ImageRgb8(photo), &settings(400)).unwrap();
        assert_eq!(framed.source(), FramingSource::Border);
        let bbox = framed.summary.bbox.unwrap();
        // The shadow (a 15% darkening, about 30 levels) counts as object: the box may
        // reach down to it but not beyond.
        assert!(bbox.x >= 168 && bbox.x <= 180 && bbox.y >= 148 && bbox.y <= 150, "{bbox:?}");
        assert!(bbox.y + bbox.height <= 394, "{bbox:?}");
        // The padding rows continue the gradient (no seam at the top of the window).
        let image = framed.image.as_ref().unwrap();
        let top = image.get_pixel(200, 0)[0];
        assert!((190..=232).contains(&top), "{top}");
    }

    #[test]
    fn alpha_cut_out_frames_from_the_alpha_and_pads_with_the_background() {
        let mut rgba = RgbaImage::from_pixel(137, 137, Rgba([0, 0, 0, 0]));
        for y in 40..100 {
            for x in 50..80 {
                rgba.put_pixel(x, y, Rgba([255, 255, 255, 255])); // a white object: only alpha finds it
            }
        }
        let s = FramingSettings { size: 137, background: [240, 240, 240], ..FramingSettings::default() };
        let framed = frame(&DynamicImage::ImageRgba8(rgba), &s).unwrap();
        assert_eq!(framed.source(), FramingSource::Alpha);
        assert_eq!(framed.summary.bbox, Some(BoundingBox { x: 50, y: 40, width: 30, height: 60 }));
        // White on the 240 padding: only the mask shows the object.
        let (x0, y0, x1, y1) = mask_box(framed.mask.as_ref().unwrap());
        let fill = (x1 - x0).max(y1 - y0) as f32 / 137.0;
        assert!((fill - DEFAULT_FILL).abs() < 0.03 && (x0 + x1).abs_diff(137) <= 2 && (y0 + y1).abs_diff(137) <= 2, "{x0},{y0},{x1},{y1}");
        assert_eq!(framed.image.as_ref().unwrap().get_pixel(68, 68), &Rgb([255, 255, 255]));
        assert_eq!(framed.image.as_ref().unwrap().get_pixel(2, 2), &Rgb([240, 240, 240]));
        assert_eq!(framed.mask.as_ref().unwrap().get_pixel(68, 68)[0], 255);
        assert_eq!(framed.mask.as_ref().unwrap().get_pixel(2, 68)[0], 0);
    }

    #[test]
    fn empty_alpha_and_all_background_are_rejected_with_a_reason() {
        let empty = RgbaImage::from_pixel(64, 64, Rgba([10, 200, 30, 0]));
        let error = frame(&DynamicImage::ImageRgba8(empty), &settings(64)).unwrap_err();
        assert_eq!(error, FramingError::EmptyAlpha);
        assert!(error.to_string().contains("alpha channel is empty"));

        let faint = RgbaImage::from_fn(64, 64, |x, _| Rgba([0, 0, 0, if x < 32 { 60 } else { 0 }]));
        let error = frame(&DynamicImage::ImageRgba8(faint), &settings(64)).unwrap_err().to_string();
        assert!(error.contains("no opaque pixels"), "{error}");

        for colour in [[255, 255, 255], [128, 128, 128], [0, 0, 0]] {
            let blank = RgbImage::from_pixel(600, 600, Rgb(colour));
            let error = frame(&DynamicImage::ImageRgb8(blank), &settings(600)).unwrap_err();
            assert!(matches!(&error, FramingError::NoObject(m) if m.contains("all background")), "{error}");
        }
        // A few specks of sensor dust are not an object.
        let mut dusty = RgbImage::from_pixel(600, 600, Rgb([250, 250, 250]));
        for (x, y) in [(100, 100), (300, 420), (500, 50)] {
            dusty.put_pixel(x, y, Rgb([20, 20, 20]));
        }
        assert!(matches!(frame(&DynamicImage::ImageRgb8(dusty), &settings(600)), Err(FramingError::NoObject(_))));
    }

    #[test]
    fn opaque_alpha_is_no_alpha() {
        let photo = product(200, 200, [250, 250, 250], [20, 20, 20], (80, 80, 120, 120));
        let rgba = DynamicImage::ImageRgb8(photo).to_rgba8();
        let framed = frame(&DynamicImage::ImageRgba8(rgba), &settings(100)).unwrap();
        assert_eq!(framed.source(), FramingSource::Border);
        assert_eq!(framed.summary.bbox, Some(BoundingBox { x: 80, y: 80, width: 40, height: 40 }));
    }

    #[test]
    fn a_light_grey_object_on_white_is_not_taken_for_a_shadow() {
        // (215, 215, 215) on 250 white: the backdrop in shade as far as colour goes.
        let photo = product(400, 400, [250, 250, 250], [215, 215, 215], (100, 120, 260, 300));
        let framed = frame(&DynamicImage::ImageRgb8(photo), &settings(200)).unwrap();
        assert_eq!(framed.summary.bbox, Some(BoundingBox { x: 100, y: 120, width: 160, height: 180 }));
    }

    #[test]
    fn a_soft_contact_shadow_does_not_stretch_the_box() {
        // A red object with a soft grey shadow spreading 40 px below and beside it.
        let photo = RgbImage::from_fn(500, 500, |x, y| {
            if (150..350).contains(&x) && (100..350).contains(&y) {
                return Rgb([200, 30, 30]);
            }
            let dx = (x as f32 - 250.0).abs() / 140.0;
            let dy = (y as f32 - 350.0).abs() / 40.0;
            let k = 1.0 - 0.3 * (1.0 - (dx * dx + dy * dy).sqrt()).max(0.0);
            let v = (248.0 * k).round() as u8;
            Rgb([v, v, v])
        });
        let framed = frame(&DynamicImage::ImageRgb8(photo), &settings(200)).unwrap();
        let b = framed.summary.bbox.unwrap();
        // The penumbra (8-19% darker, down to y = 379 at the default threshold) is left out;
        // the umbra (over 48 levels darker, to y = 364) still counts.
        assert!(b.x >= 140 && b.x + b.width <= 360 && b.y + b.height <= 366, "{b:?}");
    }

    #[test]
    fn busy_background_passes_through_unframed() {
        // A checkerboard-ish scene: no plain border.
        let scene = RgbImage::from_fn(400, 300, |x, y| {
            let v = ((x / 7 + y / 5) % 3) as u8 * 90;
            Rgb([v, 255 - v, (x % 256) as u8])
        });
        let framed = frame(&DynamicImage::ImageRgb8(scene), &settings(600)).unwrap();
        assert_eq!(framed.source(), FramingSource::Unframed);
        assert!(framed.image.is_none() && framed.mask.is_none());
        assert!(framed.summary.note.as_deref().unwrap().contains("busy background"));
    }

    #[test]
    fn object_mask_marks_the_object_in_the_image_own_pixels() {
        // 600 x 400 photo: analysis cells are 2 pixels, so edges are exact to 2 pixels.
        let photo = product(600, 400, [250, 250, 250], [40, 90, 160], (101, 60, 301, 340));
        let found = object_mask(&photo, None).unwrap();
        assert_eq!(found.summary.source, FramingSource::Border);
        let mask = found.mask.unwrap();
        assert_eq!(mask.dimensions(), (600, 400));
        let (x0, y0, x1, y1) = mask_box(&mask);
        assert!(x0.abs_diff(101) <= 2 && y0.abs_diff(60) <= 2 && x1.abs_diff(301) <= 2 && y1.abs_diff(340) <= 2, "{:?}", (x0, y0, x1, y1));
        let object = mask.pixels().filter(|p| p[0] == 255).count();
        assert!((object as f64 / (200.0 * 280.0) - 1.0).abs() < 0.03, "{object}");
        // The alpha channel, when it cuts the object out, is the mask itself.
        let alpha = GrayImage::from_fn(600, 400, |x, y| Luma([if (10..50).contains(&x) && (10..30).contains(&y) { 200 } else { 0 }]));
        let from_alpha = object_mask(&photo, Some(&alpha)).unwrap();
        assert_eq!(from_alpha.summary.source, FramingSource::Alpha);
        assert_eq!(from_alpha.mask.unwrap().pixels().filter(|p| p[0] == 255).count(), 40 * 20);
        // The same verdicts as framing: a busy scene has no mask, a blank photo no object.
        let scene = RgbImage::from_fn(400, 300, |x, y| {
            let v = ((x / 7 + y / 5) % 3) as u8 * 90;
            Rgb([v, 255 - v, (x % 256) as u8])
        });
        assert_eq!(object_mask(&scene, None).unwrap().mask, None);
        let blank = RgbImage::from_pixel(300, 300, Rgb([255, 255, 255]));
        assert!(matches!(object_mask(&blank, None), Err(FramingError::NoObject(_))));
        assert_eq!(object_mask(&blank, Some(&GrayImage::new(300, 300))), Err(FramingError::EmptyAlpha));
    }

    #[test]
    fn the_largest_part_keeps_nearby_parts_and_drops_far_clutter() {
        // Seat, a detached leg just below it, and a far-off label in the corner.
        let mut photo = product(600, 600, [255, 255, 255], [90, 60, 30], (200, 200, 400, 330));
        for y in 340..420 {
            for x in 210..216 {
                photo.put_pixel(x, y, Rgb([90, 60, 30]));
            }
        }
        for y in 560..580 {
            for x in 560..580 {
                photo.put_pixel(x, y, Rgb([0, 0, 200]));
            }
        }
        let framed = frame(&DynamicImage::ImageRgb8(photo), &settings(300)).unwrap();
        let bbox = framed.summary.bbox.unwrap();
        assert_eq!((bbox.x, bbox.y, bbox.x + bbox.width, bbox.y + bbox.height), (200, 200, 400, 420));
    }

    #[test]
    fn an_object_touching_the_edge_is_padded_not_shifted() {
        // Object cut by the left edge: the window leaves the image on the left and is padded.
        let photo = product(400, 400, [255, 255, 255], [10, 10, 10], (0, 100, 100, 300));
        let framed = frame(&DynamicImage::ImageRgb8(photo), &settings(200)).unwrap();
        let image = framed.image.unwrap();
        let (x0, _, x1, _) = object_box(&image, [255, 255, 255]);
        assert!(x0 > 20 && (x1 as i32 - 100).abs() <= 52, "{x0}..{x1}");
    }

    #[test]
    fn invalid_settings_are_errors() {
        let image = DynamicImage::new_rgb8(10, 10);
        for s in [
            FramingSettings { fill: 0.0, ..settings(10) },
            FramingSettings { fill: f32::NAN, ..settings(10) },
            FramingSettings { fill: 1.5, ..settings(10) },
            settings(0),
        ] {
            assert!(matches!(frame(&image, &s), Err(FramingError::InvalidSettings(_))));
        }
    }

    /// Edge cases no input may panic on: every size from 1x1 up, extreme aspect ratios,
    /// one-colour and random images, with and without alpha.
    #[test]
    fn no_panics_on_edge_cases() {
        let sizes = [(1, 1), (1, 2), (2, 1), (2, 2), (3, 3), (1, 1000), (1000, 1), (3, 2000), (2500, 7), (640, 1), (17, 13)];
        let mut seed = 0x9E37_79B9u32;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            seed
        };
        for &(w, h) in &sizes {
            for pattern in 0..5 {
                let rgb = RgbImage::from_fn(w, h, |x, y| match pattern {
                    0 => Rgb([255, 255, 255]),
                    1 => Rgb([(next() % 256) as u8, (next() % 256) as u8, (next() % 256) as u8]),
                    2 => if x == w / 2 && y == h / 2 { Rgb([0, 0, 0]) } else { Rgb([255, 255, 255]) },
                    3 => if (x + y) % 2 == 0 { Rgb([0, 0, 0]) } else { Rgb([255, 255, 255]) },
                    _ => if x < w / 2 { Rgb([0, 0, 0]) } else { Rgb([250, 250, 250]) },
                });
                for size in [1, 7, 64] {
                    for fill in [0.1, DEFAULT_FILL, 1.0] {
                        let s = FramingSettings { size, fill, ..FramingSettings::default() };
                        check(frame(&DynamicImage::ImageRgb8(rgb.clone()), &s), size);
                        let rgba = RgbaImage::from_fn(w, h, |x, y| {
                            let p = rgb.get_pixel(x, y);
                            Rgba([p[0], p[1], p[2], if (x + y) % 3 == 0 { 0 } else { (next() % 256) as u8 }])
                        });
                        check(frame(&DynamicImage::ImageRgba8(rgba), &s), size);
                    }
                }
            }
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(200))]
        /// Any small image, with or without alpha, frames or is refused without a panic,
        /// and a framed one has the requested size.
        #[test]
        fn any_small_image_frames_or_is_refused(
            w in 1u32..48, h in 1u32..48, size in 1u32..40, fill in 0.1f32..=1.0,
            pixels in proptest::collection::vec(proptest::prelude::any::<[u8; 4]>(), 1..64),
            with_alpha in proptest::prelude::any::<bool>(),
        ) {
            let rgba = RgbaImage::from_fn(w, h, |x, y| Rgba(pixels[((y * w + x) as usize) % pixels.len()]));
            let image = if with_alpha { DynamicImage::ImageRgba8(rgba) } else { DynamicImage::ImageRgb8(DynamicImage::ImageRgba8(rgba).to_rgb8()) };
            check(frame(&image, &FramingSettings { size, fill, ..FramingSettings::default() }), size);
        }
    }

    fn check(result: Result<Framed, FramingError>, size: u32) {
        if let Ok(framed) = result {
            if let Some(image) = &framed.image {
                assert_eq!(image.dimensions(), (size, size));
                assert_eq!(framed.mask.as_ref().unwrap().dimensions(), (size, size));
            }
        }
    }
}
