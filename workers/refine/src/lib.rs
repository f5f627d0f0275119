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

use mono2mesh_core::{Category, RealSize, StageError};
use mono2mesh_geometry::binvox::BinvoxError;
use mono2mesh_geometry::export::{self, ExportError, MeshFormat};
use mono2mesh_geometry::marching_cubes::{self, MarchingCubesError};
use mono2mesh_geometry::npy::{self, NpyError};
use mono2mesh_geometry::pose::{self, Placement, PoseError, TargetSize};
use mono2mesh_geometry::simplify::{self, SimplifyError, SimplifyReport};
use mono2mesh_geometry::smooth::{self, SmoothError, Smoothing};
use mono2mesh_geometry::{Mesh, VoxelGrid};
use serde::{Deserialize, Serialize};
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
}

impl Default for RefineSettings {
    fn default() -> Self {
        RefineSettings {
            iso: DEFAULT_ISO,
            smoothing: smooth::DEFAULT_LAPLACIAN,
            formats: vec![MeshFormat::Glb, MeshFormat::Obj, MeshFormat::Ply, MeshFormat::Stl],
            max_triangles: DEFAULT_MAX_TRIANGLES,
            min_confidence: quality::DEFAULT_MIN_CONFIDENCE,
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
/// keeps model units. Built with [`AssetSpec::for_category`] and [`AssetSpec::with_size`],
/// so fields added later (colour, LODs) do not change callers.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
#[non_exhaustive]
pub struct AssetSpec {
    pub category: Option<Category>,
    /// The submitter's real size; already checked by [`RealSize`]'s constructors.
    pub size: Option<RealSize>,
}

impl AssetSpec {
    pub fn for_category(category: Option<Category>) -> Self {
        AssetSpec { category, size: None }
    }

    pub fn with_size(self, size: Option<RealSize>) -> Self {
        AssetSpec { size, ..self }
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
}

impl MeshStats {
    /// The measurements of `mesh`, made from `grid`, with its quality judged against
    /// `min_confidence` for the category it was scaled as.
    pub fn of(mesh: &Mesh, scale: ScaleReport, polycount: SimplifyReport, grid: &VoxelGrid, min_confidence: f64) -> MeshStats {
        let watertight = mesh.is_watertight();
        let quality = quality::assess(mesh, watertight, grid, scale.category, min_confidence);
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
    pub files: Vec<MeshFile>,
    pub stats: MeshStats,
}

/// [`refine_asset`] knowing nothing about the object: model units (see [`AssetSpec`]).
pub fn refine(grid: &VoxelGrid, settings: &RefineSettings) -> Result<RefineOutput, RefineError> {
    refine_asset(grid, settings, &AssetSpec::default())
}

/// Grid to asset: marching cubes at `settings.iso`, smoothing, the polycount cap, the asset
/// pose and size for `spec`, then every requested format (all from the same mesh).
pub fn refine_asset(grid: &VoxelGrid, settings: &RefineSettings, spec: &AssetSpec) -> Result<RefineOutput, RefineError> {
    let (mesh, scale, polycount) = asset_mesh(grid, settings, spec)?;
    let files = settings
        .formats
        .iter()
        .map(|&format| Ok(MeshFile { format, bytes: export::encode(&mesh, format)? }))
        .collect::<Result<Vec<_>, RefineError>>()?;
    let stats = MeshStats::of(&mesh, scale, polycount, grid, settings.min_confidence);
    Ok(RefineOutput { mesh, files, stats })
}

/// [`refine`] on a binvox file held in memory.
pub fn refine_binvox(bytes: &[u8], settings: &RefineSettings) -> Result<RefineOutput, RefineError> {
    refine(&VoxelGrid::from_binvox_bytes(bytes)?, settings)
}

/// [`refine`] on a probability grid stored as `.npy` (what the reconstruct stage writes).
pub fn refine_npy(bytes: &[u8], settings: &RefineSettings) -> Result<RefineOutput, RefineError> {
    refine(&npy::npy_to_grid(bytes)?, settings)
}

/// The mesh the files hold: [`build_mesh`], capped at `settings.max_triangles`, placed and
/// scaled for `spec`.
pub fn asset_mesh(grid: &VoxelGrid, settings: &RefineSettings, spec: &AssetSpec) -> Result<(Mesh, ScaleReport, SimplifyReport), RefineError> {
    let mut mesh = build_mesh(grid, settings)?;
    let polycount = simplify::simplify(&mut mesh, settings.max_triangles)?;
    let (target, source, target_size) = spec.target();
    let placement = pose::place(&mut mesh, target)?;
    let scale = ScaleReport { units: "m".into(), source, category: spec.category, target: target_size, placement };
    Ok((mesh, scale, polycount))
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
