//! Pascal3D+ (release 1.1) into our ShapeNet layout, so the training and evaluation code
//! reads real photos with CAD-derived voxels through the same [`Dataset`] reader.
//!
//! Input (`PASCAL3D+_release1.1/`):
//! ```text
//! Annotations/<cat>_{imagenet,pascal}/<id>.mat   MAT v5 `record`: filename, size, objects(k).
//!                                                {class, bbox, viewpoint, cad_index, truncated, occluded, difficult}
//! Images/<cat>_{imagenet,pascal}/<id>.JPEG|jpg
//! CAD/<cat>/NN.off                               NN = cad_index, two digits
//! Image_sets/<cat>_imagenet_{train,val}.txt      ImageNet part's split
//! PASCAL/VOCdevkit/VOC2012/ImageSets/Main/<cat>_{train,val}.txt   PASCAL part's split
//! ```
//! Output: one sample per usable object (model id `<image id>_<object number>`):
//! ```text
//! ShapeNetRendering/<synset>/<model>/rendering/00.png   the object's square crop (RGB)
//! ShapeNetRendering/<synset>/<model>/rendering/{renderings.txt, rendering_metadata.txt}
//! ShapeNetVox32/<synset>/<model>/model.binvox           its CAD model, voxelized here
//! ShapeNet.json                                         taxonomy with train/val/test
//! pascal3d/<synset>/<model>.json                        source image, bbox, crop, CAD index, viewpoint
//! pascal3d_import.json                                  the config, counts and every skipped object
//! ```
//!
//! **Frames.** Pascal3D+'s CAD models are Z-up with the azimuth-0 camera on -Y; ours
//! (ShapeNet's, see [`crate::camera`]) are Y-up with the azimuth-0 camera on +X. A CAD
//! vertex `(x, y, z)` becomes `(-y, z, -x) / s`, `s` being the diagonal of the CAD's
//! bounding box (ShapeNet's unit-diagonal scale; no re-centring, so Pascal3D+'s look-at
//! point, the CAD origin, stays the origin). In that frame an annotation's azimuth and
//! elevation are exactly R2N2's, its in-plane rotation is `-theta`, and its distance is
//! `1.75 * ratio * s`, so `rendering_metadata.txt` holds a camera that projects the voxels
//! as the annotation projects the CAD (up to the focal length: the crop re-frames).
//! A coarse-only viewpoint (Pascal3D+ writes distance 0) is kept, with distance ratio 0.
//!
//! **Splits** are per image, so no photo is split across train and test, and are made
//! over the images with at least one object whose CAD model loaded. From the image sets:
//! Pascal3D+'s train images are our train, less a seeded `splits.val` fraction that
//! becomes val; its val images are our test. The images of sources without image-set
//! files (all of them with [`SplitFrom::Seed`]) share one seeded split per category by
//! [`split_ids`] (the report says which sources fell back, and why). Objects share few CAD models (about ten
//! per category), so test shapes are also seen in training: this measures reconstruction
//! from real photos, not generalisation to new shapes.
//!
//! Nothing one file can do aborts the import: a corrupt `.mat`, a missing image or CAD model
//! skips what depends on it, with a reason in the report. Output write failures do abort,
//! and so does an output folder that holds another dataset's taxonomy. Importing again into
//! the same folder replaces the taxonomy; samples no longer selected stay on disk, unlisted.

use crate::camera::{ViewParams, MAX_CAMERA_DISTANCE, METADATA_FOV};
use crate::dataset::{split_ids, SplitFractions, TaxonomyEntry, RENDERING_DIR, TAXONOMY_FILE, VOXEL_DIR};
use crate::mat::{MatError, MatFile, Value};
use crate::mesh_io::read_mesh;
use crate::rng::Rng;
use crate::voxelize::voxelize;
use image::RgbImage;
use mono2mesh_core::Category;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};

/// Per-sample provenance files, beside the layout's own folders.
pub const SAMPLES_DIR: &str = "pascal3d";
pub const REPORT_FILE: &str = "pascal3d_import.json";

/// The two halves of Pascal3D+: ImageNet images and PASCAL VOC images.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    Imagenet,
    Pascal,
}

impl Source {
    pub const ALL: [Source; 2] = [Source::Imagenet, Source::Pascal];

    pub fn name(self) -> &'static str {
        match self {
            Source::Imagenet => "imagenet",
            Source::Pascal => "pascal",
        }
    }
}

impl std::str::FromStr for Source {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "imagenet" => Ok(Source::Imagenet),
            "pascal" => Ok(Source::Pascal),
            other => Err(format!("unknown Pascal3D+ source {other:?}: expected imagenet or pascal")),
        }
    }
}

/// Where train/val/test come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SplitFrom {
    /// Pascal3D+'s own image sets (train -> train and val, val -> test).
    ImageSets,
    /// A seeded split of the images by `splits` fractions.
    Seed,
}

impl std::str::FromStr for SplitFrom {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "image-sets" | "imagesets" | "image_sets" => Ok(SplitFrom::ImageSets),
            "seed" => Ok(SplitFrom::Seed),
            other => Err(format!("unknown split source {other:?}: expected image-sets or seed")),
        }
    }
}

/// What to import and how.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImportConfig {
    pub categories: Vec<Category>,
    pub sources: Vec<Source>,
    pub split_from: SplitFrom,
    pub seed: u64,
    /// Seeded split fractions; with image sets only `val` is used (the share of
    /// Pascal3D+'s train images that become our val).
    pub splits: SplitFractions,
    pub include_truncated: bool,
    pub include_occluded: bool,
    pub include_difficult: bool,
    /// Objects whose box is narrower or lower than this (pixels) are skipped.
    pub min_box_side: f64,
    /// Margin around the box on each side, as a fraction of its longer side.
    pub margin: f32,
    /// Side of the saved square crop. The default, 137, is the ShapeNet renders' size:
    /// Pix2Vox's render transform (a centred 128 crop) then keeps the whole object with
    /// the default margin, and crops and renders are treated alike however they are read.
    pub image_size: u32,
    /// Colour of the padding where the square crop leaves the photo.
    pub background: [u8; 3],
    pub resolution: usize,
}

impl Default for ImportConfig {
    fn default() -> Self {
        ImportConfig {
            categories: Category::ALL.to_vec(),
            sources: Source::ALL.to_vec(),
            split_from: SplitFrom::ImageSets,
            seed: 0,
            splits: SplitFractions::default(),
            // The usual clean subset (Pascal3D+'s viewpoint benchmarks use it too): a
            // truncated or occluded object shows only part of the shape its voxels hold.
            include_truncated: false,
            include_occluded: false,
            include_difficult: false,
            min_box_side: 16.0,
            margin: 0.1,
            image_size: 137,
            background: [255, 255, 255],
            resolution: 32,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: {source}")]
    Image { path: PathBuf, source: image::ImageError },
    #[error("{path}: {source}")]
    Json { path: PathBuf, source: serde_json::Error },
    #[error("{0}")]
    Invalid(String),
    /// No sample at all: nothing was written, so an earlier import in `out` is intact.
    #[error("no samples imported: {}", nothing_summary(.report, .without_annotations))]
    NothingImported { report: Box<ImportReport>, without_annotations: Vec<Category> },
}

fn nothing_summary(report: &ImportReport, without: &[Category]) -> String {
    let mut parts = Vec::new();
    if !without.is_empty() {
        let names: Vec<&str> = without.iter().map(|c| c.name()).collect();
        parts.push(format!("no Annotations/<category>_{{imagenet,pascal}} folders for {}", names.join(", ")));
    }
    if !report.skipped.is_empty() {
        let counts: Vec<String> = report.skip_counts().iter().map(|(k, v)| format!("{k} {v}")).collect();
        parts.push(format!("{} skipped ({})", report.skipped.len(), counts.join(", ")));
    }
    if parts.is_empty() {
        parts.push("no objects of the requested categories".into());
    }
    parts.join("; ")
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> ImportError + '_ {
    move |source| ImportError::Io { path: path.to_path_buf(), source }
}

/// Why an annotation file or object was left out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum SkipReason {
    /// The `.mat` could not be read or lacks the record structure (whole file skipped).
    BadAnnotation { message: String },
    Difficult,
    Truncated,
    Occluded,
    NoCadIndex,
    NoViewpoint,
    /// No bbox, a degenerate one, or one outside the image.
    BadBox { bbox: Vec<f64> },
    SmallBox { width: f64, height: f64 },
    MissingImage { path: String },
    BadImage { message: String },
    MissingCad { path: String },
    BadCad { message: String },
    /// With image sets: the image is in neither the train nor the val list.
    NotInImageSets,
}

impl SkipReason {
    /// The reason's name, as in the report's counts.
    pub fn code(&self) -> &'static str {
        match self {
            SkipReason::BadAnnotation { .. } => "bad_annotation",
            SkipReason::Difficult => "difficult",
            SkipReason::Truncated => "truncated",
            SkipReason::Occluded => "occluded",
            SkipReason::NoCadIndex => "no_cad_index",
            SkipReason::NoViewpoint => "no_viewpoint",
            SkipReason::BadBox { .. } => "bad_box",
            SkipReason::SmallBox { .. } => "small_box",
            SkipReason::MissingImage { .. } => "missing_image",
            SkipReason::BadImage { .. } => "bad_image",
            SkipReason::MissingCad { .. } => "missing_cad",
            SkipReason::BadCad { .. } => "bad_cad",
            SkipReason::NotInImageSets => "not_in_image_sets",
        }
    }
}

/// One skipped file (object `None`) or object (1-based, as in MATLAB).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Skipped {
    pub category: Category,
    /// Relative to the Pascal3D+ root, e.g. `Annotations/chair_pascal/2008_000123.mat`.
    pub annotation: String,
    pub object: Option<usize>,
    #[serde(flatten)]
    pub reason: SkipReason,
}

/// Per-category counts.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CategoryReport {
    pub annotation_files: usize,
    /// Objects of this category in readable annotation files.
    pub objects: usize,
    /// Objects of other classes in the same files (PASCAL images annotate everything).
    pub other_class_objects: usize,
    pub imported: usize,
    pub train: usize,
    pub val: usize,
    pub test: usize,
    /// CAD models voxelized.
    pub cad_models: usize,
    /// How each source's split was made: `image-sets`, or `seed` with why.
    pub split_source: BTreeMap<Source, String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ImportReport {
    pub samples: usize,
    pub categories: BTreeMap<Category, CategoryReport>,
    pub skipped: Vec<Skipped>,
}

impl ImportReport {
    /// Skipped files and objects by reason code.
    pub fn skip_counts(&self) -> BTreeMap<&'static str, usize> {
        let mut counts = BTreeMap::new();
        for s in &self.skipped {
            *counts.entry(s.reason.code()).or_insert(0) += 1;
        }
        counts
    }
}

/// What the importer reports while it works.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    pub category: Category,
    pub stage: &'static str,
    pub done: usize,
    pub total: usize,
}

// ---------------------------------------------------------------------------------------
// Annotations

/// A Pascal3D+ viewpoint. Angles in degrees.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Viewpoint {
    /// The fine azimuth when annotated, else the coarse one.
    pub azimuth: f64,
    pub elevation: f64,
    /// In-plane rotation (0 when absent).
    pub theta: f64,
    /// Camera distance in CAD units; 0 for a coarse-only annotation.
    pub distance: f64,
    /// Whether the fine, CAD-aligned angles and distance were annotated.
    pub fine: bool,
    pub focal: Option<f64>,
    pub viewport: Option<f64>,
}

/// One entry of `record.objects`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnnotatedObject {
    /// 1-based, as MATLAB numbers it.
    pub index: usize,
    pub class: String,
    /// `[x1 y1 x2 y2]`, 1-based inclusive pixel coordinates.
    pub bbox: Option<[f64; 4]>,
    pub viewpoint: Option<Viewpoint>,
    pub cad_index: Option<u32>,
    pub truncated: bool,
    pub occluded: bool,
    pub difficult: bool,
}

/// A parsed annotation file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Annotation {
    pub filename: String,
    /// `record.size` when present.
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub objects: Vec<AnnotatedObject>,
}

#[derive(Debug, thiserror::Error)]
pub enum AnnotationError {
    #[error(transparent)]
    Mat(#[from] MatError),
    #[error("not a Pascal3D+ annotation: {0}")]
    Structure(String),
}

/// Reads a Pascal3D+ `.mat` annotation.
pub fn read_annotation(path: &Path) -> Result<Annotation, AnnotationError> {
    parse_annotation(&MatFile::open(path)?)
}

fn numeric_flag(v: Option<&Value>) -> bool {
    v.and_then(|v| v.as_f64s()).is_some_and(|xs| xs.iter().any(|&x| x != 0.0 && !x.is_nan()))
}

fn scalar(v: Option<&Value>) -> Option<f64> {
    v.and_then(Value::as_scalar).filter(|x| x.is_finite())
}

/// Interprets the `record` variable of an annotation file.
pub fn parse_annotation(mat: &MatFile) -> Result<Annotation, AnnotationError> {
    let structure = |m: &str| AnnotationError::Structure(m.to_string());
    let record = mat.get("record").ok_or_else(|| structure("no variable `record`"))?;
    if record.as_struct().is_none() || record.len() != 1 {
        return Err(structure("`record` is not a 1x1 struct"));
    }
    let filename = record.field("filename").and_then(Value::as_string).ok_or_else(|| structure("`record.filename` is not a string"))?;
    let size = record.field("size");
    let dim = |name: &str| scalar(size.and_then(|s| s.field(name))).filter(|v| *v >= 1.0).map(|v| v as u32);
    let mut objects = Vec::new();
    if let Some(objs) = record.field("objects") {
        if !objs.is_empty() {
            let s = objs.as_struct().ok_or_else(|| structure("`record.objects` is not a struct array"))?;
            for i in 0..s.elements.len() {
                let field = |name: &str| objs.field_of(i, name);
                let class = field("class").and_then(Value::as_string).unwrap_or_default();
                let bbox = field("bbox").and_then(Value::as_f64s).and_then(|b| <[f64; 4]>::try_from(b).ok()).filter(|b| b.iter().all(|v| v.is_finite()));
                let cad_index = scalar(field("cad_index")).filter(|v| *v >= 1.0 && v.fract() == 0.0 && *v < 100.0).map(|v| v as u32);
                objects.push(AnnotatedObject {
                    index: i + 1,
                    class: class.trim().to_string(),
                    bbox,
                    viewpoint: field("viewpoint").and_then(parse_viewpoint),
                    cad_index,
                    truncated: numeric_flag(field("truncated")),
                    occluded: numeric_flag(field("occluded")),
                    difficult: numeric_flag(field("difficult")),
                });
            }
        }
    }
    Ok(Annotation { filename: filename.trim().to_string(), width: dim("width"), height: dim("height"), objects })
}

fn parse_viewpoint(v: &Value) -> Option<Viewpoint> {
    if v.len() != 1 || v.as_struct().is_none() {
        return None;
    }
    let get = |name: &str| scalar(v.field(name));
    let fine_az = get("azimuth");
    let azimuth = fine_az.or_else(|| get("azimuth_coarse"))?;
    let elevation = get("elevation").or_else(|| get("elevation_coarse")).unwrap_or(0.0);
    let distance = get("distance").filter(|d| *d > 0.0).unwrap_or(0.0);
    Some(Viewpoint {
        azimuth,
        elevation,
        theta: get("theta").unwrap_or(0.0),
        distance,
        fine: fine_az.is_some() && distance > 0.0,
        focal: get("focal"),
        viewport: get("viewport"),
    })
}

/// The first whitespace-separated token of each non-empty line (image-set files list
/// `id` or, in VOC's per-class files, `id label`).
pub fn read_image_set(path: &Path) -> Result<HashSet<String>, std::io::Error> {
    let text = std::fs::read_to_string(path)?;
    Ok(text.lines().filter_map(|l| l.split_whitespace().next()).map(str::to_string).collect())
}

// ---------------------------------------------------------------------------------------
// Geometry: crops and CAD frames

/// A square in source-image pixels (0-based; may extend past the image).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CropBox {
    pub left: i64,
    pub top: i64,
    pub side: u32,
}

/// The square around a 1-based inclusive bbox: centred on it, its longer side plus
/// `margin` of that side on each end.
pub fn crop_box(bbox: [f64; 4], margin: f32) -> Option<CropBox> {
    let (x0, y0, x1, y1) = (bbox[0] - 1.0, bbox[1] - 1.0, bbox[2], bbox[3]);
    let (w, h) = (x1 - x0, y1 - y0);
    if !(w > 0.0 && h > 0.0) {
        return None;
    }
    let side = w.max(h) * (1.0 + 2.0 * margin.max(0.0) as f64);
    let (cx, cy) = ((x0 + x1) * 0.5, (y0 + y1) * 0.5);
    Some(CropBox { left: (cx - side * 0.5).round() as i64, top: (cy - side * 0.5).round() as i64, side: side.round().max(1.0) as u32 })
}

/// Cuts `crop` out of `img` (padding with `background` outside it) and resizes it to
/// `size` x `size`.
pub fn crop_square(img: &RgbImage, crop: CropBox, background: [u8; 3], size: u32) -> RgbImage {
    let mut canvas = RgbImage::from_pixel(crop.side, crop.side, image::Rgb(background));
    let (w, h) = (img.width() as i64, img.height() as i64);
    let (x_lo, x_hi) = (crop.left.max(0), (crop.left + crop.side as i64).min(w));
    let (y_lo, y_hi) = (crop.top.max(0), (crop.top + crop.side as i64).min(h));
    for y in y_lo..y_hi {
        for x in x_lo..x_hi {
            canvas.put_pixel((x - crop.left) as u32, (y - crop.top) as u32, *img.get_pixel(x as u32, y as u32));
        }
    }
    if crop.side == size {
        canvas
    } else {
        image::imageops::resize(&canvas, size, size, image::imageops::FilterType::CatmullRom)
    }
}

/// Pascal3D+'s CAD frame (Z up, azimuth-0 camera on -Y) to ours (Y up, azimuth-0
/// camera on +X): `(x, y, z) -> (-y, z, -x)`, a proper rotation.
pub fn pascal_to_ours(p: [f32; 3]) -> [f32; 3] {
    [-p[1], p[2], -p[0]]
}

/// A CAD mesh in our frame at unit bounding-box diagonal, and the scale divided out.
pub fn normalise_cad(mut mesh: mono2mesh_geometry::Mesh) -> (mono2mesh_geometry::Mesh, f32) {
    let diag = crate::builder::bounds_of(&mesh.positions)
        .map(|(lo, hi)| (0..3).map(|a| (hi[a] - lo[a]).powi(2)).sum::<f32>().sqrt())
        .filter(|d| *d > 0.0 && d.is_finite())
        .unwrap_or(1.0);
    for p in &mut mesh.positions {
        *p = pascal_to_ours(*p).map(|v| v / diag);
    }
    mesh.normals.clear();
    (mesh, diag)
}

/// The R2N2-style view of an annotation for a CAD normalised by `cad_scale`.
pub fn view_params(vp: &Viewpoint, cad_scale: f32) -> ViewParams {
    ViewParams {
        azimuth_deg: vp.azimuth as f32,
        elevation_deg: vp.elevation as f32,
        in_plane_deg: -vp.theta as f32,
        distance_ratio: if vp.fine { vp.distance as f32 / cad_scale / MAX_CAMERA_DISTANCE } else { 0.0 },
        fov: METADATA_FOV,
        crop_x: 0.0,
        crop_y: 0.0,
    }
}

// ---------------------------------------------------------------------------------------
// The importer

/// Resolves the release folder: `root` itself, or `root/PASCAL3D+_release1.1`.
pub fn release_root(root: &Path) -> Result<PathBuf, ImportError> {
    for candidate in [root.to_path_buf(), root.join("PASCAL3D+_release1.1")] {
        if candidate.join("Annotations").is_dir() {
            return Ok(candidate);
        }
    }
    Err(ImportError::Invalid(format!("{}: no Annotations/ folder here (expected the PASCAL3D+_release1.1 folder)", root.display())))
}

/// An object chosen for import, before its image and CAD are loaded.
struct Candidate {
    source: Source,
    stem: String,
    annotation: String,
    image_name: String,
    object: AnnotatedObject,
    bbox: [f64; 4],
    viewpoint: Viewpoint,
    cad_index: u32,
}

/// A CAD model voxelized once per category.
struct Cad {
    binvox: Vec<u8>,
    occupied: usize,
    scale: f32,
    file: String,
}

/// Provenance of one written sample (`pascal3d/<synset>/<model>.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SampleRecord {
    pub model_id: String,
    pub category: Category,
    pub taxonomy_id: String,
    pub split: crate::dataset::Split,
    pub source: Source,
    /// Relative to the Pascal3D+ root.
    pub image: String,
    pub annotation: String,
    pub object_index: usize,
    /// As annotated: `[x1 y1 x2 y2]`, 1-based inclusive.
    pub bbox: [f64; 4],
    /// The square cut from the photo around the bbox (clipped to the photo), 0-based.
    pub crop: CropBox,
    pub image_size: u32,
    pub cad_index: u32,
    pub cad_file: String,
    /// The CAD's bounding-box diagonal, divided out (see the module docs for the frame).
    pub cad_scale: f32,
    pub occupied_voxels: usize,
    pub truncated: bool,
    pub occluded: bool,
    pub difficult: bool,
    pub viewpoint: Viewpoint,
}

fn rel(root: &Path, path: &Path) -> String {
    path.strip_prefix(root).unwrap_or(path).to_string_lossy().into_owned()
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<(), ImportError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    }
    std::fs::write(path, bytes).map_err(io_err(path))
}

fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), ImportError> {
    let text = serde_json::to_vec_pretty(value).map_err(|source| ImportError::Json { path: path.to_path_buf(), source })?;
    write_file(path, &text)
}

fn sorted_files(dir: &Path, ext: &str) -> Result<Vec<PathBuf>, ImportError> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(io_err(dir))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && p.extension().is_some_and(|e| e.eq_ignore_ascii_case(ext)))
        .collect();
    files.sort();
    Ok(files)
}

/// Why an object is not usable under `cfg`, before its image and CAD are looked at.
fn object_policy(o: &AnnotatedObject, cfg: &ImportConfig) -> Result<([f64; 4], Viewpoint, u32), SkipReason> {
    if o.difficult && !cfg.include_difficult {
        return Err(SkipReason::Difficult);
    }
    if o.truncated && !cfg.include_truncated {
        return Err(SkipReason::Truncated);
    }
    if o.occluded && !cfg.include_occluded {
        return Err(SkipReason::Occluded);
    }
    let cad = o.cad_index.ok_or(SkipReason::NoCadIndex)?;
    let vp = o.viewpoint.ok_or(SkipReason::NoViewpoint)?;
    let bbox = o.bbox.ok_or(SkipReason::BadBox { bbox: vec![] })?;
    let (w, h) = (bbox[2] - bbox[0] + 1.0, bbox[3] - bbox[1] + 1.0);
    if !(w > 0.0 && h > 0.0) {
        return Err(SkipReason::BadBox { bbox: bbox.to_vec() });
    }
    if w < cfg.min_box_side || h < cfg.min_box_side {
        return Err(SkipReason::SmallBox { width: w, height: h });
    }
    Ok((bbox, vp, cad))
}

/// Finds an annotation's image: `record.filename`, else the annotation's stem with a
/// usual extension.
fn find_image(dir: &Path, filename: &str, stem: &str) -> Option<PathBuf> {
    let named = dir.join(filename);
    if !filename.is_empty() && named.is_file() {
        return Some(named);
    }
    ["JPEG", "jpg", "jpeg", "JPG", "png"].iter().map(|e| dir.join(format!("{stem}.{e}"))).find(|p| p.is_file())
}

/// Imports `cfg.categories` from the Pascal3D+ tree at `root` into `out`.
pub fn import_pascal3d(root: &Path, out: &Path, cfg: &ImportConfig, on_progress: &(dyn Fn(Progress) + Sync)) -> Result<ImportReport, ImportError> {
    let root = release_root(root)?;
    if cfg.categories.is_empty() || cfg.sources.is_empty() {
        return Err(ImportError::Invalid("need at least one category and one source".into()));
    }
    if cfg.image_size < 8 || cfg.resolution == 0 || !(0.0..=1.0).contains(&cfg.splits.val) {
        return Err(ImportError::Invalid("image size must be >= 8, resolution >= 1, and the val fraction in [0, 1]".into()));
    }
    // Re-importing over our own output is fine (files are replaced); replacing another
    // dataset's taxonomy (a synthetic catalog, real ShapeNet) would orphan its samples.
    if out.join(TAXONOMY_FILE).exists() && !out.join(REPORT_FILE).exists() {
        return Err(ImportError::Invalid(format!(
            "{} already holds another dataset ({TAXONOMY_FILE} without {REPORT_FILE}); import into an empty folder",
            out.display()
        )));
    }
    std::fs::create_dir_all(out).map_err(io_err(out))?;
    let mut report = ImportReport::default();
    let mut taxonomy = Vec::new();
    for &category in &cfg.categories {
        let (entry, cat_report, skipped) = import_category(&root, out, category, cfg, on_progress)?;
        report.samples += cat_report.imported;
        report.skipped.extend(skipped);
        if cat_report.annotation_files > 0 {
            report.categories.insert(category, cat_report);
        }
        if let Some(entry) = entry {
            taxonomy.push(entry);
        }
    }
    if report.samples == 0 {
        let without_annotations = cfg.categories.iter().copied().filter(|c| !report.categories.contains_key(c)).collect();
        return Err(ImportError::NothingImported { report: Box::new(report), without_annotations });
    }
    write_json(&out.join(TAXONOMY_FILE), &taxonomy)?;
    write_json(&out.join(REPORT_FILE), &serde_json::json!({ "source": root, "config": cfg, "report": report }))?;
    Ok(report)
}

type CategoryResult = (Option<TaxonomyEntry>, CategoryReport, Vec<Skipped>);

fn import_category(root: &Path, out: &Path, category: Category, cfg: &ImportConfig, on_progress: &(dyn Fn(Progress) + Sync)) -> Result<CategoryResult, ImportError> {
    let mut rep = CategoryReport::default();
    let mut skipped = Vec::new();
    let skip = |annotation: &str, object: Option<usize>, reason: SkipReason| Skipped { category, annotation: annotation.to_string(), object, reason };

    // 1. Parse every annotation file of the category (in parallel) and pick objects.
    let mut files: Vec<(Source, PathBuf)> = Vec::new();
    for &source in &cfg.sources {
        let dir = root.join("Annotations").join(format!("{}_{}", category.name(), source.name()));
        if dir.is_dir() {
            files.extend(sorted_files(&dir, "mat")?.into_iter().map(|p| (source, p)));
        }
    }
    rep.annotation_files = files.len();
    if files.is_empty() {
        return Ok((None, rep, skipped));
    }
    let total = files.len();
    let done = std::sync::atomic::AtomicUsize::new(0);
    let parsed: Vec<(Source, PathBuf, Result<Annotation, AnnotationError>)> = files
        .into_par_iter()
        .map(|(source, path)| {
            let result = read_annotation(&path);
            let n = done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
            on_progress(Progress { category, stage: "reading annotations", done: n, total });
            (source, path, result)
        })
        .collect();
    let mut candidates = Vec::new();
    for (source, path, result) in parsed {
        let annotation = rel(root, &path);
        let record = match result {
            Ok(r) => r,
            Err(e) => {
                skipped.push(skip(&annotation, None, SkipReason::BadAnnotation { message: e.to_string() }));
                continue;
            }
        };
        let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        for o in record.objects {
            if !o.class.eq_ignore_ascii_case(category.name()) {
                rep.other_class_objects += 1;
                continue;
            }
            rep.objects += 1;
            match object_policy(&o, cfg) {
                Ok((bbox, viewpoint, cad_index)) => candidates.push(Candidate {
                    source,
                    stem: stem.clone(),
                    annotation: annotation.clone(),
                    image_name: record.filename.clone(),
                    object: o,
                    bbox,
                    viewpoint,
                    cad_index,
                }),
                Err(reason) => skipped.push(skip(&annotation, Some(o.index), reason)),
            }
        }
    }

    // 2. Voxelize each CAD model the candidates use, once; drop objects whose model
    // fails, so that splits are made over images that can really yield a sample.
    let mut cad_ids: Vec<u32> = candidates.iter().map(|c| c.cad_index).collect();
    cad_ids.sort_unstable();
    cad_ids.dedup();
    let cads: HashMap<u32, Result<Cad, SkipReason>> = cad_ids
        .par_iter()
        .map(|&id| {
            let path = root.join("CAD").join(category.name()).join(format!("{id:02}.off"));
            (id, load_cad(root, &path, cfg.resolution))
        })
        .collect();
    rep.cad_models = cads.values().filter(|c| c.is_ok()).count();
    let mut usable = Vec::with_capacity(candidates.len());
    for c in candidates {
        match &cads[&c.cad_index] {
            Ok(_) => usable.push(c),
            Err(reason) => skipped.push(skip(&c.annotation, Some(c.object.index), reason.clone())),
        }
    }

    // 3. Splits, per image.
    let splits = assign_splits(root, category, cfg, &usable, &mut rep);
    let mut by_image: BTreeMap<(Source, String), Vec<(Candidate, crate::dataset::Split)>> = BTreeMap::new();
    for c in usable {
        match splits.get(&(c.source, c.stem.clone())) {
            Some(&split) => by_image.entry((c.source, c.stem.clone())).or_default().push((c, split)),
            None => skipped.push(skip(&c.annotation, Some(c.object.index), SkipReason::NotInImageSets)),
        }
    }

    // 4. Crop and write the samples, one image decode per annotation file.
    let groups: Vec<Vec<(Candidate, crate::dataset::Split)>> = by_image.into_values().collect();
    let total = groups.len();
    let done = std::sync::atomic::AtomicUsize::new(0);
    let written: Vec<Result<Vec<Result<SampleRecord, Skipped>>, ImportError>> = groups
        .par_iter()
        .map(|group| {
            let r = write_group(root, out, category, cfg, group, &cads);
            let n = done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
            on_progress(Progress { category, stage: "writing samples", done: n, total });
            r
        })
        .collect();
    let mut records = Vec::new();
    for group in written {
        for r in group? {
            match r {
                Ok(rec) => records.push(rec),
                Err(s) => skipped.push(s),
            }
        }
    }
    records.sort_by(|a, b| a.model_id.cmp(&b.model_id));

    // 5. Provenance files and the taxonomy entry.
    let mut entry = TaxonomyEntry {
        taxonomy_id: category.synset().to_string(),
        taxonomy_name: category.shapenet_name().to_string(),
        baseline: serde_json::Map::new(),
        train: vec![],
        val: vec![],
        test: vec![],
    };
    for r in &records {
        write_json(&out.join(SAMPLES_DIR).join(category.synset()).join(format!("{}.json", r.model_id)), r)?;
        match r.split {
            crate::dataset::Split::Train => entry.train.push(r.model_id.clone()),
            crate::dataset::Split::Val => entry.val.push(r.model_id.clone()),
            crate::dataset::Split::Test => entry.test.push(r.model_id.clone()),
        }
    }
    rep.imported = records.len();
    (rep.train, rep.val, rep.test) = (entry.train.len(), entry.val.len(), entry.test.len());
    Ok((if records.is_empty() { None } else { Some(entry) }, rep, skipped))
}

fn load_cad(root: &Path, path: &Path, resolution: usize) -> Result<Cad, SkipReason> {
    let file = rel(root, path);
    if !path.is_file() {
        return Err(SkipReason::MissingCad { path: file });
    }
    let mesh = read_mesh(path).map_err(|e| SkipReason::BadCad { message: format!("{file}: {e}") })?;
    let (mesh, scale) = normalise_cad(mesh);
    let grid = voxelize(&mesh, resolution).map_err(|e| SkipReason::BadCad { message: format!("{file}: {e}") })?;
    Ok(Cad { binvox: grid.to_binvox_bytes(0.5), occupied: grid.count_at_least(0.5), scale, file })
}

/// Train/val/test for every image with a candidate; images left out get no entry.
/// Sources without image sets (or all, with `SplitFrom::Seed`) share one seeded split,
/// so its fractions hold for the category as a whole.
fn assign_splits(root: &Path, category: Category, cfg: &ImportConfig, candidates: &[Candidate], rep: &mut CategoryReport) -> HashMap<(Source, String), crate::dataset::Split> {
    use crate::dataset::Split;
    let mut images: BTreeMap<Source, Vec<String>> = BTreeMap::new();
    for c in candidates {
        images.entry(c.source).or_default().push(c.stem.clone());
    }
    let mut out = HashMap::new();
    let mut seeded: Vec<String> = Vec::new();
    for (source, mut stems) in images {
        stems.sort();
        stems.dedup();
        let sets = match cfg.split_from {
            SplitFrom::Seed => Err(None),
            SplitFrom::ImageSets => load_image_sets(root, category, source).map_err(Some),
        };
        match sets {
            Ok((train_set, val_set)) => {
                rep.split_source.insert(source, "image-sets".into());
                let train: Vec<String> = stems.iter().filter(|s| train_set.contains(*s)).cloned().collect();
                let stream = format!("pascal3d-{}-{}", category.synset(), source.name());
                let val: HashSet<String> = carve(&train, cfg.splits.val, cfg.seed, &stream).into_iter().collect();
                for s in &stems {
                    let split = if val.contains(s) {
                        Split::Val
                    } else if train_set.contains(s) {
                        Split::Train
                    } else if val_set.contains(s) {
                        Split::Test
                    } else {
                        continue;
                    };
                    out.insert((source, s.clone()), split);
                }
            }
            Err(why) => {
                rep.split_source.insert(source, why.map_or_else(|| "seed".to_string(), |w| format!("seed ({w})")));
                seeded.extend(stems.into_iter().map(|s| format!("{}/{s}", source.name())));
            }
        }
    }
    let (train, val, test) = split_ids(&seeded, cfg.splits, cfg.seed, &format!("pascal3d-{}", category.synset()));
    for (ids, split) in [(train, Split::Train), (val, Split::Val), (test, Split::Test)] {
        for key in ids {
            if let Some((source, stem)) = key.split_once('/') {
                let source = if source == Source::Pascal.name() { Source::Pascal } else { Source::Imagenet };
                out.insert((source, stem.to_string()), split);
            }
        }
    }
    out
}

/// The image-set files of one category and source: (train ids, val ids).
fn load_image_sets(root: &Path, category: Category, source: Source) -> Result<(HashSet<String>, HashSet<String>), String> {
    let (dir, prefix) = match source {
        Source::Imagenet => (root.join("Image_sets"), format!("{}_imagenet", category.name())),
        Source::Pascal => (root.join("PASCAL/VOCdevkit/VOC2012/ImageSets/Main"), category.name().to_string()),
    };
    let train_path = dir.join(format!("{prefix}_train.txt"));
    let val_path = dir.join(format!("{prefix}_val.txt"));
    if !train_path.is_file() && !val_path.is_file() {
        return Err(format!("no {} or {}", rel(root, &train_path), rel(root, &val_path)));
    }
    let read = |p: &Path| -> Result<HashSet<String>, String> {
        if p.is_file() {
            read_image_set(p).map_err(|e| format!("{}: {e}", rel(root, p)))
        } else {
            Ok(HashSet::new())
        }
    };
    Ok((read(&train_path)?, read(&val_path)?))
}

/// A seeded `fraction` of `ids` (sorted input, deterministic output).
fn carve(ids: &[String], fraction: f32, seed: u64, stream: &str) -> Vec<String> {
    let mut order = ids.to_vec();
    let mut rng = Rng::derive(seed, stream, 1);
    for i in (1..order.len()).rev() {
        let j = rng.below(i + 1);
        order.swap(i, j);
    }
    order.truncate(((ids.len() as f32) * fraction).round() as usize);
    order
}

/// Writes the samples of one image: crop, view metadata, voxels.
fn write_group(
    root: &Path,
    out: &Path,
    category: Category,
    cfg: &ImportConfig,
    group: &[(Candidate, crate::dataset::Split)],
    cads: &HashMap<u32, Result<Cad, SkipReason>>,
) -> Result<Vec<Result<SampleRecord, Skipped>>, ImportError> {
    let first = &group[0].0;
    let skip_all = |reason: SkipReason| -> Vec<Result<SampleRecord, Skipped>> {
        group
            .iter()
            .map(|(c, _)| Err(Skipped { category, annotation: c.annotation.clone(), object: Some(c.object.index), reason: reason.clone() }))
            .collect()
    };
    let dir = root.join("Images").join(format!("{}_{}", category.name(), first.source.name()));
    let Some(image_path) = find_image(&dir, &first.image_name, &first.stem) else {
        return Ok(skip_all(SkipReason::MissingImage { path: rel(root, &dir.join(&first.image_name)) }));
    };
    let photo = match image::open(&image_path) {
        Ok(img) => img.to_rgb8(),
        Err(e) => return Ok(skip_all(SkipReason::BadImage { message: format!("{}: {e}", rel(root, &image_path)) })),
    };
    let (w, h) = (photo.width() as f64, photo.height() as f64);
    let synset = category.synset();
    let mut results = Vec::with_capacity(group.len());
    for (c, split) in group {
        let b = c.bbox;
        // Boxes are clipped to the photo (they are in practice already), which also bounds
        // the crop's size whatever the file says.
        let clipped = [b[0].max(1.0), b[1].max(1.0), b[2].min(w), b[3].min(h)];
        let Some(crop) = crop_box(clipped, cfg.margin) else {
            results.push(Err(Skipped { category, annotation: c.annotation.clone(), object: Some(c.object.index), reason: SkipReason::BadBox { bbox: b.to_vec() } }));
            continue;
        };
        let Some(Ok(cad)) = cads.get(&c.cad_index) else { continue };
        let model_id = format!("{}_{:02}", c.stem, c.object.index);
        let rdir = out.join(RENDERING_DIR).join(synset).join(&model_id).join("rendering");
        let png_path = rdir.join("00.png");
        let img = crop_square(&photo, crop, cfg.background, cfg.image_size);
        std::fs::create_dir_all(&rdir).map_err(io_err(&rdir))?;
        img.save_with_format(&png_path, image::ImageFormat::Png).map_err(|source| ImportError::Image { path: png_path.clone(), source })?;
        write_file(&rdir.join("renderings.txt"), b"00.png\n")?;
        let view = view_params(&c.viewpoint, cad.scale);
        write_file(&rdir.join("rendering_metadata.txt"), format!("{}\n", view.metadata_line()).as_bytes())?;
        write_file(&out.join(VOXEL_DIR).join(synset).join(&model_id).join("model.binvox"), &cad.binvox)?;
        results.push(Ok(SampleRecord {
            model_id,
            category,
            taxonomy_id: synset.to_string(),
            split: *split,
            source: c.source,
            image: rel(root, &image_path),
            annotation: c.annotation.clone(),
            object_index: c.object.index,
            bbox: b,
            crop,
            image_size: cfg.image_size,
            cad_index: c.cad_index,
            cad_file: cad.file.clone(),
            cad_scale: cad.scale,
            occupied_voxels: cad.occupied,
            truncated: c.object.truncated,
            occluded: c.object.occluded,
            difficult: c.object.difficult,
            viewpoint: c.viewpoint,
        }));
    }
    Ok(results)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crop_box_is_a_centred_square_with_margin() {
        // 1-based inclusive [11 21 40 30]: 0-based edges x 10..40, y 20..30 (30 x 10 px),
        // centre (25, 25); the square is 30 * 1.2 = 36 px.
        assert_eq!(crop_box([11.0, 21.0, 40.0, 30.0], 0.1), Some(CropBox { left: 7, top: 7, side: 36 }));
        assert_eq!(crop_box([11.0, 21.0, 40.0, 30.0], 0.0), Some(CropBox { left: 10, top: 10, side: 30 }));
        assert!(crop_box([5.0, 5.0, 4.0, 9.0], 0.1).is_none());
    }

    #[test]
    fn crop_square_copies_inside_and_pads_outside() {
        let mut img = RgbImage::from_pixel(20, 10, image::Rgb([0, 0, 200]));
        img.put_pixel(0, 0, image::Rgb([9, 9, 9]));
        let out = crop_square(&img, CropBox { left: -2, top: -5, side: 16 }, [255, 255, 255], 16);
        assert_eq!(out.get_pixel(0, 0).0, [255, 255, 255]); // left of and above the photo
        assert_eq!(out.get_pixel(2, 5).0, [9, 9, 9]); // photo pixel (0, 0)
        assert_eq!(out.get_pixel(15, 15).0, [255, 255, 255]); // below the photo (row 10)
        assert_eq!(out.get_pixel(15, 14).0, [0, 0, 200]); // photo pixel (13, 9)
        assert_eq!(crop_square(&img, CropBox { left: 0, top: 0, side: 10 }, [0; 3], 24).dimensions(), (24, 24));
    }

    /// Pascal3D+'s own projection (its toolkit's camera centre, Rx(-(pi/2 - el)) Rz(-az)
    /// rotation, pinhole with -z forward, then the 2-D in-plane rotation by theta and the
    /// flip to image rows), normalised by the focal length.
    fn pascal_project(p: [f64; 3], az: f64, el: f64, theta: f64, d: f64) -> (f64, f64) {
        let (a, e, t) = (az.to_radians(), el.to_radians(), theta.to_radians());
        let c = [d * e.cos() * a.sin(), -d * e.cos() * a.cos(), d * e.sin()];
        let (a2, e2) = (-a, -(std::f64::consts::FRAC_PI_2 - e));
        let rz = [[a2.cos(), -a2.sin(), 0.0], [a2.sin(), a2.cos(), 0.0], [0.0, 0.0, 1.0]];
        let rx = [[1.0, 0.0, 0.0], [0.0, e2.cos(), -e2.sin()], [0.0, e2.sin(), e2.cos()]];
        let rel = [p[0] - c[0], p[1] - c[1], p[2] - c[2]];
        let mul = |m: [[f64; 3]; 3], v: [f64; 3]| -> [f64; 3] { std::array::from_fn(|i| (0..3).map(|k| m[i][k] * v[k]).sum()) };
        let cam = mul(rx, mul(rz, rel));
        let (u, v) = (cam[0] / -cam[2], cam[1] / -cam[2]);
        let (u2, v2) = (t.cos() * u - t.sin() * v, t.sin() * u + t.cos() * v);
        (u2, -v2)
    }

    #[test]
    fn converted_view_projects_the_cad_like_pascal3d_does() {
        // An asymmetric point set in Pascal3D+'s frame, of diagonal well away from 1.
        let pts: Vec<[f32; 3]> = vec![[0.0, 0.0, 0.0], [2.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 3.0], [-1.0, 0.5, 1.5], [1.2, -0.7, 0.4]];
        let mesh = mono2mesh_geometry::Mesh { positions: pts.clone(), triangles: vec![[0, 1, 2]], normals: vec![] };
        let (ours, scale) = normalise_cad(mesh);
        assert!((scale - (9.0f32 + 1.7 * 1.7 + 9.0).sqrt()).abs() < 1e-5, "{scale}");
        for (az, el, theta, d) in [(0.0, 0.0, 0.0, 8.0), (30.0, 10.0, 5.0, 9.0), (200.0, -15.0, -20.0, 12.0), (300.0, 40.0, 90.0, 7.5)] {
            let vp = Viewpoint { azimuth: az, elevation: el, theta, distance: d, fine: true, focal: Some(1.0), viewport: Some(3000.0) };
            let cam = view_params(&vp, scale).camera(200, 200);
            for (p, q) in pts.iter().zip(&ours.positions) {
                let (x, y, depth) = cam.project(*q);
                assert!(depth > 0.0);
                let got = (((x - 100.0) / cam.focal_px) as f64, ((y - 100.0) / cam.focal_px) as f64);
                let want = pascal_project(p.map(|v| v as f64), az, el, theta, d);
                assert!((got.0 - want.0).abs() < 1e-4 && (got.1 - want.1).abs() < 1e-4, "az {az} el {el} theta {theta}: {got:?} vs {want:?}");
            }
        }
    }
}
