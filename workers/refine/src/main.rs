//! Refine worker: wires [`mono2mesh_refine::handler::RefineHandler`] to the queue, the
//! job store and the blob store. No stage logic lives here; links no libtorch.

use anyhow::Context as _;
use clap::Parser;
use mono2mesh_infra::queue::Lane;
use mono2mesh_infra::service::{serve, Services, WorkerArgs};
use mono2mesh_refine::handler::RefineHandler;
use mono2mesh_refine::RefineSettings;
use std::sync::Arc;

#[derive(Debug, Parser)]
#[command(name = "mono2mesh-refine", version, about = "Refine worker: voxel grids to smoothed meshes")]
struct Cli {
    #[command(flatten)]
    worker: WorkerArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let settings = cli.worker.settings()?;
    let _metrics = mono2mesh_infra::telemetry::init(&settings.telemetry)?;
    let refine_settings = RefineSettings::from_config(&settings).context("refine settings")?;
    let runtime = cli.worker.runtime_settings(&settings);
    let services = Services::connect(settings).await?;
    let handler = Arc::new(RefineHandler::new(services.stage_context(), refine_settings));
    serve(&services, vec![Lane::Refine], handler, runtime).await?;
    Ok(())
}
