//! Subcommands. Add a variant here and a module beside this file.

use clap::Subcommand;

#[derive(Debug, Subcommand)]
pub enum Command {}

pub fn run(command: Command) -> anyhow::Result<()> {
    match command {}
}
