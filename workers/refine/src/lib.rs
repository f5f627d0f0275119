//! The refine stage as a plain library function: an occupancy grid and settings in, a
//! clean mesh and its encoded files out. Following the paper: marching cubes on the
//! probability grid, then Laplacian smoothing; then the steps that make it a catalog asset:
//! a polycount cap and a real-world pose and size.
//!
//! # Asset conventions
//!
//! Every file [`refine_asset`] (and so the refine worker and `mono2mesh run`) writes, GLB,
//! OBJ, PLY and STL alike, holds the same vertices in the same frame, glTF 2.0's:
//!
//! * **+Y is up**, and the mesh rests on the ground: its lowest point is at Y = 0;
//! * **the front faces +Z** (towards a glTF viewer's default camera), +X is the viewer's right;
//! * **units are metres**, and the bounding box is centred on X = 0 and Z = 0.
//!
//! The networks predict in ShapeNet's frame as our catalog builds it (+Y up, front +X,
//! unit bounding-box diagonal); [`mono2mesh_geometry::pose`] says how that was established
//! and rotates it (`(x, y, z) -> (-z, y, x)`).
//!
//! **Size.** A size stated for the job ([`AssetSpec::size`], `height_mm` or
//! `width_mm`/`height_mm`/`depth_mm`) wins: height alone scales uniformly, a full box scales
//! each axis to its length (width X, height Y, depth Z). Otherwise the category's typical
//! height ([`RealSize::typical`], a table in `mono2mesh_core::size`) scales uniformly.
//! Without either, a model unit becomes a metre (the model is about 1 m across) and the
//! report says so. The scale used is in [`MeshStats::scale`], which the worker stores in
//! `mesh.json` and the job's `detail.mesh`.
//!
//! **Polycount.** `max_triangles` (default [`DEFAULT_MAX_TRIANGLES`]) caps every mesh, by
//! meshoptimizer after smoothing ([`mono2mesh_geometry::simplify`]); the default keeps any
//! GLB under 15 MB (see the constant).
//!
//! **Colour.** Given the photo ([`AssetSpec::with_photo`]: the gated image and the object's
//! mask in it) and `colour = true`, the capped mesh's view is fitted to the mask and the
//! photo painted onto the vertices seen from it ([`colour`]); every other vertex takes the
//! object's median colour. Files then carry vertex colours (GLB `COLOR_0` and a material,
//! PLY and OBJ colours). A photo with no separable object, or a fit that fails, leaves the
//! asset uncoloured and says why in [`MeshStats::colour`]; it never fails the job.

use mono2mesh_core::{Category, RealSize, StageError};
use mono2mesh_geometry::binvox::BinvoxError;
use mono2mesh_geometry::export::{self, ExportError, MeshFormat};
use mono2mesh_geometry::marching_cubes::{self, MarchingCubesError};
use mono2mesh_geometry::npy::{self, NpyError};
use mono2mesh_geometry::pose::{self, Placement, PoseError, TargetSize};
use mono2mesh_geometry::simplify::{self, SimplifyError, SimplifyReport};
use mono2mesh_geometry::smooth::{self, SmoothError, Smoothing};
use mono2mesh_geometry::{Mesh, VoxelGrid};
use mono2mesh_geometry::colour::{linear_to_srgb_u8, Colours};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use thiserror::Error;

pub mod colour;
pub mod handler;
pub mod quality;

/// The surface level on the predicted probabilities: 0.5. Measured on the trained pack's
/// predictions (`docs/experiments/refinement.md`, 2026-12-06): the 32^3 voxels Pix2Vox
/// learns are set wherever a part touches them, so a surface at 0.3 (the IoU threshold,
/// and `voxels.binvox`'s) enclosed +179% of the true volume; at 0.5 with the default
/// Laplacian, F@1% rises from 0.264 to 0.338 and Chamfer-L1 falls 6%. Higher levels score
/// higher F@1% still but break thin parts (chair and table legs) apart. The mesh is
/// therefore tighter than `voxels.binvox`, which stays at the evaluated threshold.
pub const DEFAULT_ISO: f32 = 0.5;

/// Default polycount cap. Marketplaces commonly take up to 200k triangles and 15 MB; our GLB
/// stores 24 bytes per vertex (position, normal) and 12 per triangle, and a capped mesh
/// keeps only used vertices (at most 3 per triangle), so 100k triangles is at most
/// 100k * (12 + 3 * 24) bytes = 8.4 MB plus a kilobyte of JSON, whatever the topology.
/// (A closed mesh has about half a vertex per triangle: about 2.4 MB.) Meshes from 32^3
/// grids are far below it (the real ShapeNet chair: 3152 triangles), so it only acts on
/// finer grids or explicit lower caps.
pub const DEFAULT_MAX_TRIANGLES: usize = 100_000;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
/// The `[refine]` section of the layered config, in the worker and `mono2mesh run` alike.
pub struct RefineSettings {
    /// Occupancy level of the surface; a voxel is inside when its value is `>= iso`.
    pub iso: f32,
    /// Laplacian (lambda 0.5, 10 iterations) by default, as the paper smooths its meshes.
    pub smoothing: Smoothing,
    /// Files to encode, in this order.
    pub formats: Vec<MeshFormat>,
    /// Polycount cap, applied after smoothing (at least 4, a tetrahedron).
    pub max_triangles: usize,
    /// Assets whose quality confidence is below this are flagged `needs_review`
    /// (see [`quality`]); in [0, 1], 0 flags nothing.
    pub min_confidence: f64,
    /// Paint vertex colours from the photo when the job has one (see the crate docs).
    pub colour: bool,
    /// Also draw `preview.png`: the (coloured) mesh from three sides.
    pub preview: bool,
    /// Levels of detail: extra GLBs (`mesh_lod1.glb`, ...) with these fractions of the
    /// asset's triangles, each in (0, 1), coarsest last; none by default.
    pub lods: Vec<f32>,
}

impl Default for RefineSettings {
    fn default() -> Self {
        RefineSettings {
            iso: DEFAULT_ISO,
            smoothing: smooth::DEFAULT_LAPLACIAN,
            formats: vec![MeshFormat::Glb, MeshFormat::Obj, MeshFormat::Ply, MeshFormat::Stl],
            max_triangles: DEFAULT_MAX_TRIANGLES,
            min_confidence: quality::DEFAULT_MIN_CONFIDENCE,
            colour: true,
            preview: true,
            lods: Vec::new(),
        }
    }
}

impl RefineSettings {
    /// The `[refine]` section of the layered settings, checked.
    pub fn from_config(
        settings: &mono2mesh_infra::config::Settings,
    ) -> Result<Self, mono2mesh_infra::config::ConfigError> {
        let refine: RefineSettings = settings.refine.parse("refine")?;
        refine
            .validate()
            .map_err(|message| mono2mesh_infra::config::ConfigError::Section { section: "refine", message })?;
        Ok(refine)
    }

    /// Settings that cannot describe a working refine stage, and why.
    pub fn validate(&self) -> Result<(), String> {
        if !(self.iso > 0.0 && self.iso < 1.0) {
            return Err(RefineError::BadIso(self.iso).to_string());
        }
        if self.formats.is_empty() {
            return Err("formats must name at least one mesh format".into());
        }
        if self.max_triangles < simplify::MIN_TRIANGLES {
            return Err(RefineError::Simplify(SimplifyError::CapTooSmall(self.max_triangles)).to_string());
        }
        if !(0.0..=1.0).contains(&self.min_confidence) {
            return Err(format!("min_confidence {} must lie in [0, 1]", self.min_confidence));
        }
        if let Some(bad) = self.lods.iter().find(|f| !(**f > 0.0 && **f < 1.0)) {
            return Err(format!("lods: {bad} is not a fraction of the triangles strictly between 0 and 1"));
        }
        Ok(())
    }
}

#[derive(Debug, Error)]
pub enum RefineError {
    #[error("iso level {0} must be a finite number strictly between 0 and 1")]
    BadIso(f32),
    #[error("no voxel reaches the iso level {iso} (highest value {max}): there is no surface to mesh")]
    EmptySurface { iso: f32, max: f32 },
    #[error("marching cubes: {0}")]
    MarchingCubes(#[from] MarchingCubesError),
    #[error("smoothing: {0}")]
    Smooth(#[from] SmoothError),
    #[error("max_triangles: {0}")]
    Simplify(#[from] SimplifyError),
    #[error("placing the mesh: {0}")]
    Pose(#[from] PoseError),
    #[error("export: {0}")]
    Export(#[from] ExportError),
    #[error("voxel input: {0}")]
    Binvox(#[from] BinvoxError),
    #[error("probability grid: {0}")]
    Npy(#[from] NpyError),
    #[error("the photo to colour from: {0}")]
    Photo(String),
    #[error("preview: {0}")]
    Preview(String),
}

impl From<RefineError> for StageError {
    fn from(error: RefineError) -> Self {
        match error {
            // The network predicted nothing solid: the user's photo did not yield a shape.
            RefineError::EmptySurface { .. } => StageError::rejection(error.to_string()),
            _ => StageError::permanent(error.to_string()),
        }
    }
}

/// What the job knows about the object besides its voxels. `Default` is nothing: the mesh
/// keeps model units and no colour. Built with [`AssetSpec::for_category`],
/// [`AssetSpec::with_size`] and [`AssetSpec::with_photo`], so fields added later (LODs) do
/// not change callers.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct AssetSpec {
    pub category: Option<Category>,
    /// The submitter's real size; already checked by [`RealSize`]'s constructors.
    pub size: Option<RealSize>,
    /// The photo to colour the mesh from.
    pub photo: Option<Arc<ReferencePhoto>>,
}

impl AssetSpec {
    pub fn for_category(category: Option<Category>) -> Self {
        AssetSpec { category, ..AssetSpec::default() }
    }

    pub fn with_size(self, size: Option<RealSize>) -> Self {
        AssetSpec { size, ..self }
    }

    pub fn with_photo(self, photo: Option<Arc<ReferencePhoto>>) -> Self {
        AssetSpec { photo, ..self }
    }

    /// The size to scale to and where it came from (see the crate docs).
    fn target(&self) -> (TargetSize, ScaleSource, Option<RealSize>) {
        let to_target = |size: RealSize| match size {
            RealSize::Height { height_mm } => TargetSize::Height(height_mm / 1000.0),
            RealSize::Box { width_mm, height_mm, depth_mm } => {
                TargetSize::Extents([width_mm / 1000.0, height_mm / 1000.0, depth_mm / 1000.0])
            }
        };
        match (self.size, self.category) {
            (Some(size), _) => (to_target(size), ScaleSource::Job, Some(size)),
            (None, Some(category)) => {
                let size = RealSize::typical(category);
                (to_target(size), ScaleSource::Category, Some(size))
            }
            (None, None) => (TargetSize::ModelUnits, ScaleSource::ModelUnits, None),
        }
    }
}

/// Where the real size came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScaleSource {
    /// The size stated for the job.
    Job,
    /// The category's typical height.
    Category,
    /// No size known: one model unit (the model is about 1 m across) per metre.
    ModelUnits,
}

/// The photo an asset is coloured from: the image the network saw (the gate's standardised
/// image) and the object's pixels in it.
#[derive(Debug, Clone)]
pub struct ReferencePhoto {
    pub rgb: image::RgbImage,
    /// The object's mask and how it was found, or why there is none.
    pub mask: Result<(colour::Mask, MaskSource), String>,
}

/// How the object's pixels were told from the background.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MaskSource {
    /// The photo's alpha channel (a cut-out).
    Alpha,
    /// Difference from a plain backdrop estimated along the border (studio shots).
    Border,
    /// A busy scene: the colour model of `mono2mesh_framing::scene`, a heuristic.
    Scene,
}

impl ReferencePhoto {
    /// Decodes the gated image and finds the object in it (see [`ReferencePhoto::from_rgb`]).
    pub fn decode(bytes: &[u8]) -> Result<Self, RefineError> {
        let rgb = image::load_from_memory(bytes).map_err(|e| RefineError::Photo(e.to_string()))?.to_rgb8();
        Ok(Self::from_rgb(rgb))
    }

    /// Finds the object with the framing crate: [`mono2mesh_framing::object_mask`] (the
    /// analysis `gate.framing` uses: alpha, else a plain backdrop), and in a busy scene,
    /// where that gives up, [`mono2mesh_framing::scene::scene_mask`].
    pub fn from_rgb(rgb: image::RgbImage) -> Self {
        use mono2mesh_framing::FramingSource;
        let mask = match mono2mesh_framing::object_mask(&rgb, None) {
            Ok(found) => match (found.mask, found.summary.source) {
                (Some(mask), FramingSource::Alpha) => Ok((colour::Mask::from_gray(&mask, 128), MaskSource::Alpha)),
                (Some(mask), _) => Ok((colour::Mask::from_gray(&mask, 128), MaskSource::Border)),
                (None, _) => match mono2mesh_framing::scene::scene_mask(&rgb) {
                    Ok(mask) => Ok((colour::Mask::from_gray(&mask, 128), MaskSource::Scene)),
                    Err(e) => Err(format!("{} ({e})", found.summary.note.unwrap_or_else(|| "a busy background".into()))),
                },
            },
            Err(e) => Err(e.to_string()),
        };
        ReferencePhoto { rgb, mask }
    }
}

/// What colouring did: stored with the mesh measurements (`mesh.json`, the job's detail).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum ColourReport {
    /// Vertex colours from the photo.
    Painted {
        /// The fitted view, degrees.
        azimuth_deg: f32,
        elevation_deg: f32,
        /// IoU of the fitted silhouette with the photo's mask (bounding boxes aligned).
        silhouette_iou: f32,
        /// Share of the photo's object pixels the mesh covers from that view.
        mask_coverage: f32,
        /// Share of vertices that took the photo's colour; the others hold the base colour.
        painted_fraction: f32,
        /// The object's median colour, sRGB.
        base_colour: [u8; 3],
        /// How the object's mask was found.
        mask: MaskSource,
    },
    /// Left grey: why.
    Skipped { reason: String },
}

/// How the mesh was placed and scaled: stored with the mesh measurements.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScaleReport {
    /// Always `"m"`: every file's coordinates are metres.
    pub units: String,
    pub source: ScaleSource,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<Category>,
    /// The size scaled to (the job's, or the category's typical one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<RealSize>,
    /// Metres per model unit along X, Y, Z, and the resulting size (width, height, depth).
    #[serde(flatten)]
    pub placement: Placement,
}

/// Measurements of the produced mesh, for job records and logs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MeshStats {
    pub vertices: usize,
    pub triangles: usize,
    /// Enclosed volume in cubic metres (positive: outward normals).
    pub volume: f64,
    /// Square metres.
    pub surface_area: f64,
    /// Closed, edge-manifold and consistently oriented.
    pub watertight: bool,
    pub euler_characteristic: i64,
    /// Pose and size: see the crate docs.
    pub scale: ScaleReport,
    /// The polycount cap's work (`triangles_before` is the smoothed marching-cubes mesh).
    pub polycount: SimplifyReport,
    /// Confidence in the asset and its parts (see [`quality`]).
    pub quality: quality::Quality,
    /// Colouring from the photo; absent when the job had no photo to colour from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub colour: Option<ColourReport>,
    /// The levels of detail written besides the asset (`refine.lods`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lods: Vec<LodReport>,
}

/// One level of detail: `mesh_lod<level>.glb`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LodReport {
    /// 1 for the first fraction in `refine.lods`, and so on.
    pub level: usize,
    /// The fraction of the asset's triangles asked for.
    pub fraction: f32,
    pub triangles: usize,
    pub bytes: usize,
}

/// A level of detail's GLB.
#[derive(Debug, Clone, PartialEq)]
pub struct LodFile {
    pub level: usize,
    pub bytes: Vec<u8>,
}

impl MeshStats {
    /// The measurements of `mesh`, made from `grid`, with its quality judged against
    /// `min_confidence` for the category it was scaled as.
    pub fn of(
        mesh: &Mesh,
        scale: ScaleReport,
        polycount: SimplifyReport,
        grid: &VoxelGrid,
        colour: Option<ColourReport>,
        min_confidence: f64,
    ) -> MeshStats {
        let watertight = mesh.is_watertight();
        let fit = match &colour {
            Some(ColourReport::Painted { silhouette_iou, mask_coverage, .. }) => {
                Some(quality::PhotoFit { silhouette_iou: f64::from(*silhouette_iou), mask_coverage: f64::from(*mask_coverage) })
            }
            _ => None,
        };
        let quality = quality::assess(mesh, watertight, grid, scale.category, fit, min_confidence);
        MeshStats {
            vertices: mesh.vertex_count(),
            triangles: mesh.triangle_count(),
            volume: mesh.signed_volume(),
            surface_area: mesh.surface_area(),
            watertight,
            euler_characteristic: mesh.euler_characteristic(),
            scale,
            polycount,
            quality,
            colour,
            lods: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct MeshFile {
    pub format: MeshFormat,
    pub bytes: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RefineOutput {
    /// The mesh every file holds: capped, posed and scaled (metres, glTF axes).
    pub mesh: Mesh,
    /// Its vertex colours, when painted from the photo.
    pub colours: Option<Colours>,
    pub files: Vec<MeshFile>,
    pub stats: MeshStats,
    /// `preview.png` when `settings.preview`.
    pub preview: Option<Vec<u8>>,
    /// One GLB per `settings.lods` fraction.
    pub lods: Vec<LodFile>,
}

/// [`refine_asset`] knowing nothing about the object: model units (see [`AssetSpec`]).
pub fn refine(grid: &VoxelGrid, settings: &RefineSettings) -> Result<RefineOutput, RefineError> {
    refine_asset(grid, settings, &AssetSpec::default())
}

/// Grid to asset: marching cubes at `settings.iso`, smoothing, the polycount cap, colour
/// from the photo (when `spec` has one and `settings.colour`), the asset pose and size for
/// `spec`, then every requested format (all from the same mesh) and the preview.
pub fn refine_asset(grid: &VoxelGrid, settings: &RefineSettings, spec: &AssetSpec) -> Result<RefineOutput, RefineError> {
    refine_asset_reporting(grid, settings, spec, &mut |_| {})
}

/// [`refine_asset`], telling `progress` how far it got (percent of its work: meshed 35,
/// coloured 70, preview drawn 80, files encoded 90), for the job's progress.
pub fn refine_asset_reporting(
    grid: &VoxelGrid,
    settings: &RefineSettings,
    spec: &AssetSpec,
    progress: &mut dyn FnMut(u8),
) -> Result<RefineOutput, RefineError> {
    let mut mesh = build_mesh(grid, settings)?;
    let polycount = simplify::simplify(&mut mesh, settings.max_triangles)?;
    progress(35);
    // Colour in the model frame, where the training camera fits; placing keeps the vertex order.
    let (colours, colour) = match (&spec.photo, settings.colour) {
        (Some(photo), true) => match paint_from(&mesh, photo) {
            Ok((colours, report)) => (Some(colours), Some(report)),
            Err(reason) => (None, Some(ColourReport::Skipped { reason })),
        },
        (Some(_), false) => (None, Some(ColourReport::Skipped { reason: "refine.colour is off".into() })),
        (None, _) => (None, None),
    };
    progress(70);
    let preview = if settings.preview { Some(preview_png(&mesh, colours.as_ref())?) } else { None };
    progress(80);
    let (target, source, target_size) = spec.target();
    // Levels of detail from the model-frame mesh, each placed at the same size.
    let mut lods = Vec::with_capacity(settings.lods.len());
    let mut lod_reports = Vec::with_capacity(settings.lods.len());
    for (i, &fraction) in settings.lods.iter().enumerate() {
        let mut lod = mesh.clone();
        let cap = ((mesh.triangle_count() as f32 * fraction).round() as usize).max(simplify::MIN_TRIANGLES);
        let (_, origin) = simplify::simplify_tracking(&mut lod, cap)?;
        pose::place(&mut lod, target)?;
        let lod_colours = colours.as_ref().map(|colours| Colours {
            per_vertex: origin.iter().map(|&v| colours.vertex(v as usize)).collect(),
            base_colour: colours.base_colour,
        });
        let bytes = encode_asset(&lod, lod_colours.as_ref(), MeshFormat::Glb)?;
        lod_reports.push(LodReport { level: i + 1, fraction, triangles: lod.triangle_count(), bytes: bytes.len() });
        lods.push(LodFile { level: i + 1, bytes });
    }
    let placement = pose::place(&mut mesh, target)?;
    let scale = ScaleReport { units: "m".into(), source, category: spec.category, target: target_size, placement };
    let files = settings
        .formats
        .iter()
        .map(|&format| Ok(MeshFile { format, bytes: encode_asset(&mesh, colours.as_ref(), format)? }))
        .collect::<Result<Vec<_>, RefineError>>()?;
    progress(90);
    let mut stats = MeshStats::of(&mesh, scale, polycount, grid, colour, settings.min_confidence);
    stats.lods = lod_reports;
    Ok(RefineOutput { mesh, colours, files, stats, preview, lods })
}

/// One file of the asset, with its vertex colours when it has them.
fn encode_asset(mesh: &Mesh, colours: Option<&Colours>, format: MeshFormat) -> Result<Vec<u8>, ExportError> {
    match colours {
        Some(colours) => export::encode_coloured(mesh, colours, format),
        None => export::encode(mesh, format),
    }
}

/// Fits the view of `mesh` (model frame) to the photo's mask and paints it; the reason
/// when it cannot.
fn paint_from(mesh: &Mesh, photo: &ReferencePhoto) -> Result<(Colours, ColourReport), String> {
    let (mask, source) = photo.mask.as_ref().map_err(|why| format!("no object mask in the photo: {why}"))?;
    let view = colour::fit_view(mesh, mask, &colour::ViewGrid::default()).map_err(|e| format!("fitting the view: {e}"))?;
    let coverage = colour::mask_coverage(mesh, &view, mask).map_err(|e| format!("fitting the view: {e}"))?;
    let painted = colour::paint(mesh, &photo.rgb, mask, &view).map_err(|e| format!("painting: {e}"))?;
    let base = painted.colours.base_colour;
    let report = ColourReport::Painted {
        azimuth_deg: view.azimuth_deg,
        elevation_deg: view.elevation_deg,
        silhouette_iou: view.silhouette_iou,
        mask_coverage: coverage,
        painted_fraction: painted.painted_fraction(),
        base_colour: [linear_to_srgb_u8(base[0]), linear_to_srgb_u8(base[1]), linear_to_srgb_u8(base[2])],
        mask: *source,
    };
    Ok((painted.colours, report))
}

/// Side of one preview tile, pixels.
pub const PREVIEW_TILE: usize = 256;

/// `preview.png`: `mesh` (model frame) from [`colour::PREVIEW_VIEWS`], with its colours or
/// in neutral grey.
pub fn preview_png(mesh: &Mesh, colours: Option<&Colours>) -> Result<Vec<u8>, RefineError> {
    let grey = Colours::uniform(PREVIEW_GREY);
    let sheet = colour::preview(mesh, colours.unwrap_or(&grey), &colour::PREVIEW_VIEWS, PREVIEW_TILE)
        .map_err(|e| RefineError::Preview(e.to_string()))?;
    let mut png = Vec::new();
    sheet
        .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .map_err(|e| RefineError::Preview(e.to_string()))?;
    Ok(png)
}

/// Uncoloured meshes' preview colour (linear RGB): a light neutral grey.
const PREVIEW_GREY: [f32; 4] = [0.36, 0.38, 0.42, 1.0];

/// [`refine`] on a binvox file held in memory.
pub fn refine_binvox(bytes: &[u8], settings: &RefineSettings) -> Result<RefineOutput, RefineError> {
    refine(&VoxelGrid::from_binvox_bytes(bytes)?, settings)
}

/// [`refine`] on a probability grid stored as `.npy` (what the reconstruct stage writes).
pub fn refine_npy(bytes: &[u8], settings: &RefineSettings) -> Result<RefineOutput, RefineError> {
    refine(&npy::npy_to_grid(bytes)?, settings)
}

/// Marching cubes and smoothing only (no files, no cap), in the model frame: what previews
/// render with the training cameras.
pub fn build_mesh(grid: &VoxelGrid, settings: &RefineSettings) -> Result<Mesh, RefineError> {
    let iso = settings.iso;
    // Occupancies live in [0, 1]; an iso outside (0, 1) would mesh everything or nothing.
    if !(iso > 0.0 && iso < 1.0) {
        return Err(RefineError::BadIso(iso));
    }
    let max = grid.data.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    if !(max >= iso) {
        return Err(RefineError::EmptySurface { iso, max });
    }
    let mut mesh = marching_cubes::marching_cubes(grid, iso)?;
    smooth::smooth(&mut mesh, settings.smoothing)?;
    Ok(mesh)
}

#[cfg(test)]
mod tests {
    use super::*;
    use mono2mesh_core::ErrorClass;

    /// A 12 x 10 x 8 box of ones with a notch, inside a 16^3 grid placed like a binvox file.
    fn notched_box() -> VoxelGrid {
        let mut grid = VoxelGrid::new([16, 16, 16]);
        grid.translate = [-0.5, -0.5, -0.5];
        for x in 2..14 {
            for y in 3..13 {
                for z in 4..12 {
                    if !(x > 9 && y > 9) {
                        grid.set(x, y, z, 0.9);
                    }
                }
            }
        }
        grid
    }

    #[test]
    fn default_settings_follow_the_paper_and_produce_every_format() {
        let settings = RefineSettings::default();
        assert_eq!(settings.iso, 0.5);
        assert!(matches!(settings.smoothing, Smoothing::Laplacian { .. }));
        let output = refine(&notched_box(), &settings).unwrap();
        assert!(output.stats.watertight);
        assert_eq!(output.stats.euler_characteristic, 2);
        assert!(output.stats.volume > 0.0);
        let formats: Vec<MeshFormat> = output.files.iter().map(|f| f.format).collect();
        assert_eq!(formats, settings.formats);
        for file in &output.files {
            assert_eq!(file.bytes, export::encode(&output.mesh, file.format).unwrap());
        }
    }

    #[test]
    fn smoothing_choice_changes_the_volume_as_expected() {
        let grid = notched_box();
        let volume = |smoothing| {
            let settings = RefineSettings { smoothing, formats: vec![], ..RefineSettings::default() };
            refine(&grid, &settings).unwrap().stats.volume
        };
        let raw = volume(Smoothing::None);
        // 12 x 10 x 8 voxels minus the 4 x 3 x 8 notch, at 1/16 per voxel. Marching cubes
        // chamfers edges and corners, so the mesh volume is close to but not exactly this.
        let voxel_volume = (12.0 * 10.0 * 8.0 - 4.0 * 3.0 * 8.0) / 16f64.powi(3);
        assert!((raw / voxel_volume - 1.0).abs() < 0.1, "raw {raw} vs voxels {voxel_volume}");
        let laplacian = volume(smooth::DEFAULT_LAPLACIAN);
        let taubin = volume(smooth::DEFAULT_TAUBIN);
        assert!(laplacian < raw);
        assert!((taubin - raw).abs() < (laplacian - raw).abs());
        let hc = volume(smooth::DEFAULT_HC);
        assert!((hc - raw).abs() < (laplacian - raw).abs(), "hc {hc} laplacian {laplacian} raw {raw}");
    }

    #[test]
    fn empty_prediction_is_a_rejection_and_bad_iso_is_permanent() {
        let grid = VoxelGrid::new([8, 8, 8]);
        let error = refine(&grid, &RefineSettings::default()).unwrap_err();
        assert!(matches!(error, RefineError::EmptySurface { .. }));
        assert_eq!(StageError::from(error).class, ErrorClass::Rejection);
        for iso in [0.0, 1.0, f32::NAN] {
            let settings = RefineSettings { iso, ..RefineSettings::default() };
            let error = refine(&notched_box(), &settings).unwrap_err();
            assert!(matches!(error, RefineError::BadIso(_)));
            assert_eq!(StageError::from(error).class, ErrorClass::Permanent);
        }
    }

    #[test]
    fn binvox_input_and_malformed_bytes() {
        let grid = notched_box();
        let bytes = grid.to_binvox_bytes(0.5);
        let output = refine_binvox(&bytes, &RefineSettings::default()).unwrap();
        assert!(output.stats.watertight);
        let error = refine_binvox(b"#binvox 1\ndim 2 2 2\n", &RefineSettings::default()).unwrap_err();
        assert!(matches!(error, RefineError::Binvox(_)));
    }

    #[test]
    fn settings_read_from_json_with_defaults() {
        let settings: RefineSettings =
            serde_json::from_str(r#"{"smoothing": {"method": "taubin", "lambda": 0.5, "mu": -0.53, "iterations": 4}, "formats": ["glb"]}"#).unwrap();
        assert_eq!(settings.iso, DEFAULT_ISO);
        assert_eq!(settings.smoothing, Smoothing::Taubin { lambda: 0.5, mu: -0.53, iterations: 4 });
        assert_eq!(settings.formats, vec![MeshFormat::Glb]);
        assert!(serde_json::from_str::<RefineSettings>(r#"{"iso": 0.5, "colour": "red"}"#).is_err());
        let settings: RefineSettings =
            serde_json::from_str(r#"{"smoothing": {"method": "hc", "alpha": 0.2, "beta": 0.6, "iterations": 5}}"#).unwrap();
        assert_eq!(settings.smoothing, Smoothing::Hc { alpha: 0.2, beta: 0.6, iterations: 5 });
    }

    #[test]
    fn the_compiled_config_defaults_are_these_defaults_and_the_section_layers() {
        use mono2mesh_infra::config::{Settings, SettingsLoader};
        assert_eq!(RefineSettings::from_config(&Settings::defaults().unwrap()).unwrap(), RefineSettings::default());
        let settings = SettingsLoader::with_env(Default::default())
            .set("refine.formats", "glb")
            .set("refine.smoothing.method", "hc")
            .set("refine.smoothing.alpha", "0.1")
            .set("refine.smoothing.beta", "0.6")
            .load()
            .unwrap();
        // Switching the method by overrides keeps the iterations the defaults name.
        let refine = RefineSettings::from_config(&settings).unwrap();
        assert_eq!(refine.smoothing, Smoothing::Hc { alpha: 0.1, beta: 0.6, iterations: 10 });
        assert_eq!(refine.formats, vec![MeshFormat::Glb]);
        assert_eq!(refine.max_triangles, DEFAULT_MAX_TRIANGLES);
        let settings = SettingsLoader::with_env(Default::default()).set("refine.max_triangles", "5000").load().unwrap();
        assert_eq!(RefineSettings::from_config(&settings).unwrap().max_triangles, 5000);
        let settings = SettingsLoader::with_env(Default::default()).set("refine.max_triangles", "3").load().unwrap();
        let error = RefineSettings::from_config(&settings).unwrap_err().to_string();
        assert!(error.contains("[refine]") && error.contains("max_triangles"), "{error}");
        let settings = SettingsLoader::with_env(Default::default()).set("refine.iso", "1.0").load().unwrap();
        assert!(RefineSettings::from_config(&settings).unwrap_err().to_string().contains("[refine]"));
        let settings = SettingsLoader::with_env(Default::default()).set("refine.formats", "glb").load().unwrap();
        assert_eq!(RefineSettings::from_config(&settings).unwrap().formats, vec![MeshFormat::Glb]);
    }

    #[test]
    fn probability_grids_from_npy_mesh_like_the_grid_itself() {
        let grid = notched_box();
        let mut placed = grid.clone();
        placed.translate = [-0.5; 3];
        let from_file = refine_npy(&npy::grid_to_npy(&grid), &RefineSettings::default()).unwrap();
        assert_eq!(from_file.stats, refine(&placed, &RefineSettings::default()).unwrap().stats);
        assert!(matches!(refine_npy(b"not numpy", &RefineSettings::default()), Err(RefineError::Npy(_))));
    }

    #[test]
    fn files_are_posed_in_metres_by_category_or_job_size() {
        let grid = notched_box();
        // Model units: a rotation and a translation only, onto the ground and centred.
        let plain = refine(&grid, &RefineSettings::default()).unwrap();
        assert_eq!(plain.stats.scale.source, ScaleSource::ModelUnits);
        assert_eq!(plain.stats.scale.units, "m");
        let (lo, hi) = plain.mesh.bounds().unwrap();
        assert_eq!(lo[1], 0.0);
        assert!((lo[0] + hi[0]).abs() < 1e-5 && (lo[2] + hi[2]).abs() < 1e-5, "{lo:?} {hi:?}");
        // The box is 12 voxels along model X (depth, front-back) and 8 along model Z
        // (width): in the asset, width is X and depth is Z.
        let [w, h, d] = plain.stats.scale.placement.size_m;
        assert!(d > w * 1.3 && h > w, "{:?}", plain.stats.scale);

        let chair = refine_asset(&grid, &RefineSettings::default(), &AssetSpec::for_category(Some(Category::Chair))).unwrap();
        assert_eq!(chair.stats.scale.source, ScaleSource::Category);
        assert_eq!(chair.stats.scale.target, Some(RealSize::typical(Category::Chair)));
        assert!((chair.stats.scale.placement.size_m[1] - 0.85).abs() < 1e-5, "{:?}", chair.stats.scale);
        let factor = chair.stats.scale.placement.metres_per_unit[1];
        assert!((chair.stats.volume / plain.stats.volume - factor.powi(3)).abs() < 1e-3 * factor.powi(3));

        let size = RealSize::dimensions(600.0, 900.0, 550.0).unwrap();
        let spec = AssetSpec::for_category(Some(Category::Chair)).with_size(Some(size));
        let sized = refine_asset(&grid, &RefineSettings::default(), &spec).unwrap();
        assert_eq!(sized.stats.scale.source, ScaleSource::Job);
        for (got, want) in sized.stats.scale.placement.size_m.iter().zip([0.6, 0.9, 0.55]) {
            assert!((got - want).abs() < 1e-5, "{:?}", sized.stats.scale);
        }
        assert!(sized.stats.watertight);
        // Every file is the posed mesh.
        for file in &sized.files {
            assert_eq!(file.bytes, export::encode(&sized.mesh, file.format).unwrap());
        }
        let json = serde_json::to_value(&sized.stats).unwrap();
        assert_eq!(json["scale"]["source"], "job");
        assert_eq!(json["scale"]["target"]["depth_mm"], 550.0);
        assert_eq!(json["scale"]["size_m"][1].as_f64().map(|v| (v - 0.9).abs() < 1e-5), Some(true));
        assert_eq!(serde_json::from_value::<MeshStats>(json).unwrap(), sized.stats);
    }

    #[test]
    fn the_polycount_cap_holds_and_is_reported() {
        let settings = RefineSettings { max_triangles: 200, ..RefineSettings::default() };
        let full = refine(&notched_box(), &RefineSettings::default()).unwrap();
        let capped = refine(&notched_box(), &settings).unwrap();
        assert!(full.stats.triangles > 200, "{:?}", full.stats);
        assert_eq!(full.stats.polycount.triangles_before, full.stats.triangles);
        assert!(capped.stats.triangles <= 200);
        assert_eq!(capped.stats.polycount.triangles_before, full.stats.triangles);
        assert_eq!(capped.stats.polycount.triangles_after, capped.stats.triangles);
        assert!(capped.stats.watertight);
        // Capped after smoothing and before placing: the same box on the ground.
        for a in 0..3 {
            let (f, c) = (full.stats.scale.placement.size_m[a], capped.stats.scale.placement.size_m[a]);
            assert!((f - c).abs() < 0.02 * f, "axis {a}: {f} vs {c}");
        }
        let bad = RefineSettings { max_triangles: 2, ..RefineSettings::default() };
        assert!(bad.validate().unwrap_err().contains("max_triangles"));
        assert_eq!(StageError::from(refine(&notched_box(), &bad).unwrap_err()).class, ErrorClass::Permanent);
    }

    #[test]
    fn the_default_cap_keeps_any_glb_under_15_mb() {
        // Worst case for a capped mesh: 3 unshared vertices per triangle (24 bytes each:
        // position and normal) plus 12 bytes of indices, plus the JSON chunk.
        let worst = DEFAULT_MAX_TRIANGLES * (12 + 3 * 24) + 4096;
        assert!(worst <= 15_000_000, "{worst}");
        assert!(DEFAULT_MAX_TRIANGLES <= 200_000);
    }

    #[test]
    fn a_mesh_smoothing_cannot_handle_is_a_permanent_error() {
        // Marching cubes never yields these, but a caller-supplied mesh can: the stage must
        // say why instead of panicking or returning a shrunken mesh.
        let mut mesh = marching_cubes::marching_cubes(&notched_box(), 0.5).unwrap();
        mesh.positions.push([0.0; 3]);
        let error = RefineError::from(smooth::smooth(&mut mesh, smooth::DEFAULT_HC).unwrap_err());
        assert!(error.to_string().contains("isolated"), "{error}");
        assert_eq!(StageError::from(error).class, ErrorClass::Permanent);
    }
}
