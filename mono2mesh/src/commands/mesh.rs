//! `mono2mesh mesh INPUT.binvox -o OUT.{obj,ply,stl,glb}`: the refine stage on a local file.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::{Args, ValueEnum};
use mono2mesh_geometry::export::MeshFormat;
use mono2mesh_geometry::smooth::Smoothing;
use mono2mesh_geometry::VoxelGrid;
use mono2mesh_core::Category;
use mono2mesh_refine::{refine_asset, AssetSpec, ReferencePhoto, RefineSettings};

use super::size::SizeArgs;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SmoothMethod {
    /// Uniform Laplacian, lambda 0.5 (the paper's smoothing; shrinks slightly).
    Laplacian,
    /// Taubin lambda 0.5 / mu -0.53 (keeps the volume).
    Taubin,
    /// HC (Vollmer et al. 1999) alpha 0.1 / beta 0.5: smooths while pulling back towards the
    /// marching-cubes surface, so it barely shrinks.
    Hc,
    /// Raw marching-cubes surface.
    None,
}

#[derive(Debug, Args)]
pub struct MeshArgs {
    /// Voxel grid to mesh (.binvox).
    pub input: PathBuf,
    /// Mesh file to write; its extension picks the format: obj, ply, stl or glb.
    #[arg(short, long)]
    pub output: PathBuf,
    /// Surface level: voxels with occupancy >= iso are inside.
    #[arg(long, default_value_t = 0.5)]
    pub iso: f32,
    #[arg(long, value_enum, default_value_t = SmoothMethod::Laplacian)]
    pub smooth: SmoothMethod,
    /// Smoothing iterations (for Taubin: lambda/mu pass pairs).
    #[arg(long, default_value_t = 10)]
    pub iterations: u32,
    /// The object's category: the mesh is scaled to its typical height, in metres, Y-up, on
    /// the ground (as the pipeline's assets); without it or a size the mesh keeps model units.
    #[arg(long)]
    pub category: Option<Category>,
    /// The object's real size (wins over the category's typical height).
    #[command(flatten)]
    pub size: SizeArgs,
    /// The photo the grid was predicted from, as the network saw it (a run's gated.png):
    /// the mesh is coloured from it, as the pipeline colours its assets.
    #[arg(long)]
    pub photo: Option<PathBuf>,
}

impl SmoothMethod {
    pub fn smoothing(self, iterations: u32) -> Smoothing {
        match self {
            SmoothMethod::Laplacian => Smoothing::Laplacian { lambda: 0.5, iterations },
            SmoothMethod::Taubin => Smoothing::Taubin { lambda: 0.5, mu: -0.53, iterations },
            SmoothMethod::Hc => Smoothing::Hc { alpha: 0.1, beta: 0.5, iterations },
            SmoothMethod::None => Smoothing::None,
        }
    }
}

impl MeshArgs {
    fn settings(&self, format: MeshFormat) -> RefineSettings {
        RefineSettings {
            iso: self.iso,
            smoothing: self.smooth.smoothing(self.iterations),
            formats: vec![format],
            preview: false,
            ..RefineSettings::default()
        }
    }
}

pub fn run(args: MeshArgs) -> anyhow::Result<()> {
    let format = MeshFormat::from_path(&args.output)?;
    let photo = match &args.photo {
        Some(path) => {
            let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
            Some(Arc::new(ReferencePhoto::decode(&bytes).with_context(|| format!("decoding {}", path.display()))?))
        }
        None => None,
    };
    let spec = AssetSpec::for_category(args.category).with_size(args.size.size()?).with_photo(photo);
    let grid = VoxelGrid::read_binvox(&args.input)?;
    let output = refine_asset(&grid, &args.settings(format), &spec)
        .with_context(|| format!("meshing {}", args.input.display()))?;
    let file = output.files.first().context("refine returned no file for the requested format")?;
    std::fs::write(&args.output, &file.bytes).with_context(|| format!("writing {}", args.output.display()))?;
    let summary = serde_json::json!({
        "output": args.output.display().to_string(),
        "format": format,
        "bytes": file.bytes.len(),
        "stats": output.stats,
    });
    println!("{}", serde_json::to_string_pretty(&summary)?);
    Ok(())
}
