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

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match commands::run(cli.command) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // One line, outermost context first ("importing x.pth: ...: the pickle nests
            // deeper than 256"): scripts and logs read a whole error per line.
            eprintln!("error: {}", one_line(&e));
            std::process::ExitCode::FAILURE
        }
    }
}

/// The error and its causes joined with ": ", each cause's own line breaks folded. A
/// cause whose text its parent already shows (thiserror's `"...: {0}"` wrappers) is
/// not repeated.
fn one_line(error: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in error.chain() {
        let text = cause.to_string().split('\n').map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join(" ");
        if text.is_empty() || parts.last().is_some_and(|shown| shown.contains(&text)) {
            continue;
        }
        parts.push(text);
    }
    parts.join(": ")
}
