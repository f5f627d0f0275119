//! Subcommands. Add a variant here and a module beside this file.

use clap::Subcommand;

pub mod reconstruct;

pub mod classify;
pub mod models;

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Category and top ImageNet classes of photos.
    Classify(classify::ClassifyArgs),
    /// Import and manage model files.
    #[command(subcommand)]
    Models(models::ModelsCommand),
}

pub fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Classify(args) => classify::run(args),
        Command::Models(command) => models::run(command),
    }
}
