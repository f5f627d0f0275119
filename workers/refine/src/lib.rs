//! The refine stage as a plain library function: an occupancy grid and settings in, a
//! clean mesh and its encoded files out. Following the paper: marching cubes on the
//! probability grid, then Laplacian smoothing.

use mono2mesh_core::StageError;
use mono2mesh_geometry::binvox::BinvoxError;
use mono2mesh_geometry::export::{self, ExportError, MeshFormat};
use mono2mesh_geometry::marching_cubes::{self, MarchingCubesError};
use mono2mesh_geometry::npy::{self, NpyError};
use mono2mesh_geometry::smooth::{self, SmoothError, Smoothing};
use mono2mesh_geometry::{Mesh, VoxelGrid};
use serde::{Deserialize, Serialize};
use thiserror::Error;

pub mod handler;

/// The surface level on the predicted probabilities: 0.3, the threshold the models are
/// evaluated at (IoU in `docs/experiments/model-pack.md`) and `voxels.binvox` is cut at,
/// so the mesh encloses what the stored grid calls occupied.
pub const DEFAULT_ISO: f32 = 0.3;

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
}

impl Default for RefineSettings {
    fn default() -> Self {
        RefineSettings {
            iso: DEFAULT_ISO,
            smoothing: smooth::DEFAULT_LAPLACIAN,
            formats: vec![MeshFormat::Glb, MeshFormat::Obj, MeshFormat::Ply, MeshFormat::Stl],
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

/// Measurements of the produced mesh, for job records and logs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MeshStats {
    pub vertices: usize,
    pub triangles: usize,
    /// Enclosed volume in model units (positive: outward normals).
    pub volume: f64,
    pub surface_area: f64,
    /// Closed, edge-manifold and consistently oriented.
    pub watertight: bool,
    pub euler_characteristic: i64,
}

impl MeshStats {
    pub fn of(mesh: &Mesh) -> MeshStats {
        MeshStats {
            vertices: mesh.vertex_count(),
            triangles: mesh.triangle_count(),
            volume: mesh.signed_volume(),
            surface_area: mesh.surface_area(),
            watertight: mesh.is_watertight(),
            euler_characteristic: mesh.euler_characteristic(),
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
    pub mesh: Mesh,
    pub files: Vec<MeshFile>,
    pub stats: MeshStats,
}

/// Grid to mesh: marching cubes at `settings.iso`, smoothing, then every requested format.
pub fn refine(grid: &VoxelGrid, settings: &RefineSettings) -> Result<RefineOutput, RefineError> {
    let mesh = build_mesh(grid, settings)?;
    let files = settings
        .formats
        .iter()
        .map(|&format| Ok(MeshFile { format, bytes: export::encode(&mesh, format)? }))
        .collect::<Result<Vec<_>, RefineError>>()?;
    let stats = MeshStats::of(&mesh);
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

/// Marching cubes and smoothing only (no files).
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
        assert_eq!(settings.iso, 0.3);
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
