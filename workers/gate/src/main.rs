//! Gate worker: wires [`mono2mesh_gate::handler::GateHandler`] to the queue, the job
//! store and the blob store. No stage logic lives here.

use anyhow::Context as _;
use clap::Parser;
use mono2mesh_gate::handler::GateHandler;
use mono2mesh_gate::GateSettings;
use mono2mesh_infra::queue::Lane;
use mono2mesh_infra::service::{serve, Services, WorkerArgs};
use std::sync::Arc;

#[derive(Debug, Parser)]
#[command(name = "mono2mesh-gate", version, about = "Gate worker: decode, standardise and quality-check submitted photos")]
struct Cli {
    #[command(flatten)]
    worker: WorkerArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let settings = cli.worker.settings()?;
    let _metrics = mono2mesh_infra::telemetry::init(&settings.telemetry)?;
    let gate_settings = GateSettings::from_config(&settings).context("gate settings")?;
    let runtime = cli.worker.runtime_settings(&settings);
    let services = Services::connect(settings).await?;
    let handler = Arc::new(GateHandler::new(services.stage_context(), gate_settings));
    serve(&services, vec![Lane::Gate], handler, runtime).await?;
    Ok(())
}
