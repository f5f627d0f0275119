//! `mono2mesh voxels info FILE.binvox`: what a voxel file holds, as JSON.

use std::path::PathBuf;

use clap::Subcommand;
use mono2mesh_geometry::binvox::DEFAULT_WRITE_THRESHOLD;
use mono2mesh_geometry::VoxelGrid;

#[derive(Debug, Subcommand)]
pub enum VoxelsCommand {
    /// Dimensions (x, y, z), occupied voxel count, translate and scale of a .binvox file.
    Info {
        file: PathBuf,
    },
}

pub fn run(command: VoxelsCommand) -> anyhow::Result<()> {
    match command {
        VoxelsCommand::Info { file } => {
            let grid = VoxelGrid::read_binvox(&file)?;
            let info = serde_json::json!({
                "file": file.display().to_string(),
                "dims": grid.dims,
                "occupied": grid.count_at_least(DEFAULT_WRITE_THRESHOLD),
                "translate": grid.translate,
                "scale": grid.scale,
            });
            println!("{}", serde_json::to_string_pretty(&info)?);
            Ok(())
        }
    }
}
