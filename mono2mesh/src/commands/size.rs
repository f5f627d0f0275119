//! `--height-mm`, or `--width-mm --height-mm --depth-mm`: the real size the refine stage
//! scales an asset to, for the commands that make meshes from local files (`run`, `mesh`),
//! with the rules a manifest's size columns and the API's size fields follow.

use clap::Args;
use mono2mesh_core::{RealSize, SizeFields};

#[derive(Debug, Clone, Default, Args)]
pub struct SizeArgs {
    /// Real height of the product in millimetres: the mesh is scaled to it (default: the
    /// category's typical height).
    #[arg(long, value_name = "MM")]
    pub height_mm: Option<f64>,
    /// Real width in millimetres (left to right seen from the front); with --height-mm and --depth-mm.
    #[arg(long, value_name = "MM", requires_all = ["height_mm", "depth_mm"])]
    pub width_mm: Option<f64>,
    /// Real depth in millimetres (front to back); with --height-mm and --width-mm.
    #[arg(long, value_name = "MM", requires_all = ["height_mm", "width_mm"])]
    pub depth_mm: Option<f64>,
}

impl SizeArgs {
    /// The checked size, `None` when no flag was given; an absurd size is an error.
    pub fn size(&self) -> anyhow::Result<Option<RealSize>> {
        let fields = SizeFields { width_mm: self.width_mm, height_mm: self.height_mm, depth_mm: self.depth_mm };
        Ok(RealSize::from_fields(fields)?)
    }
}
