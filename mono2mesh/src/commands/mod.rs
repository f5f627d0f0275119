//! Subcommands. Add a variant here and a module beside this file.

use clap::Subcommand;

pub mod classify;
pub mod models;
pub mod reconstruct;

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Category and top ImageNet classes of photos.
    Classify(classify::ClassifyArgs),
    /// Import and manage model files.
    #[command(subcommand)]
    Models(models::ModelsCommand),
    /// 32^3 voxels (binvox + probabilities.npy) from images with a Pix2Vox model file.
    Reconstruct(reconstruct::ReconstructArgs),
}

pub fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Classify(args) => classify::run(args),
        Command::Models(command) => models::run(command),
        Command::Reconstruct(args) => reconstruct::run(args),
    }
}
