//! `mono2mesh`: the one command a person types. Each subcommand lives in `commands/`
//! and is a thin layer over library functions.

mod commands;
mod embedded;

use clap::Parser;

#[derive(Debug, Parser)]
#[command(name = "mono2mesh", version, about = "Single product photos to 3D assets")]
struct Cli {
    #[command(subcommand)]
    command: commands::Command,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    commands::run(cli.command)
}
