//! Classify worker: wires [`mono2mesh_classify::handler::ClassifyHandler`] to the queue,
//! the job store and the blob store. No stage logic lives here.

use anyhow::Context as _;
use clap::Parser;
use mono2mesh_classify::handler::ClassifyHandler;
use mono2mesh_classify::settings::ClassifyStageSettings;
use mono2mesh_infra::queue::Lane;
use mono2mesh_infra::service::{serve, Services, WorkerArgs};
use mono2mesh_vision::classifier::ClassifierModel;
use mono2mesh_vision::device::DeviceChoice;
use std::sync::Arc;

#[derive(Debug, Parser)]
#[command(name = "mono2mesh-classify", version, about = "Classify worker: pick the Pascal3D+ category of each gated photo")]
struct Cli {
    #[command(flatten)]
    worker: WorkerArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let settings = cli.worker.settings()?;
    let _metrics = mono2mesh_infra::telemetry::init(&settings.telemetry)?;
    let stage = ClassifyStageSettings::from_config(&settings).context("classify settings")?;
    anyhow::ensure!(
        !settings.models.registry.starts_with("s3://") || stage.model.is_some(),
        "the classify worker loads its model from a local file; set classify.model"
    );
    let model_path = stage.model_path(&settings.models.registry);
    let device = stage.device.parse::<DeviceChoice>()?.resolve()?;
    let model = ClassifierModel::load(&model_path, device)
        .with_context(|| format!("loading the classifier {}", model_path.display()))?;
    let mut runtime = cli.worker.runtime_settings(&settings);
    // Batches only fill if enough deliveries are in flight at once.
    runtime.concurrency = runtime.concurrency.max(stage.batch_size);
    let services = Services::connect(settings).await?;
    let handler = Arc::new(ClassifyHandler::new(services.stage_context(), model, &stage));
    serve(&services, vec![Lane::Classify], handler, runtime).await?;
    Ok(())
}
