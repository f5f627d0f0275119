//! Reconstruct worker for a set of categories: wires
//! [`mono2mesh_reconstruct::handler::ReconstructHandler`] to those categories' queue
//! lanes, the job store and the blob store, mirroring only their models from an S3
//! registry. No stage logic lives here.

use anyhow::Context as _;
use clap::Parser;
use mono2mesh_core::Category;
use mono2mesh_infra::queue::Lane;
use mono2mesh_infra::service::{serve, Services, WorkerArgs};
use mono2mesh_reconstruct::handler::ReconstructHandler;
use mono2mesh_reconstruct::registry::{open_registry, GENERAL_MODEL};
use mono2mesh_reconstruct::settings::ReconstructStageSettings;
use mono2mesh_vision::device::DeviceChoice;
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Debug, Parser)]
#[command(name = "mono2mesh-reconstruct", version, about = "Reconstruct worker: gated photos to 32^3 voxel grids, per category")]
struct Cli {
    #[command(flatten)]
    worker: WorkerArgs,
    /// Categories this shard serves, comma-separated (default: reconstruct.categories).
    #[arg(long, env = "MONO2MESH_RECONSTRUCT_CATEGORIES", value_delimiter = ',')]
    categories: Vec<Category>,
    /// Model registry holding `pix2vox/<category>.safetensors`: a directory or
    /// `s3://bucket/prefix` (default: models.registry).
    #[arg(long, env = "MONO2MESH_MODELS", value_name = "DIR|s3://BUCKET/PREFIX")]
    models: Option<String>,
    /// Local cache for an S3 registry [default: ~/.cache/mono2mesh/registry/<bucket>/<prefix>]
    #[arg(long, env = "MONO2MESH_MODELS_CACHE")]
    models_cache: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let settings = cli.worker.settings()?;
    let _metrics = mono2mesh_infra::telemetry::init(&settings.telemetry)?;
    let mut stage = ReconstructStageSettings::from_config(&settings).context("reconstruct settings")?;
    if !cli.categories.is_empty() {
        stage.categories = cli.categories.clone();
    }
    stage.categories.sort();
    stage.categories.dedup();
    let location = cli.models.clone().unwrap_or_else(|| settings.models.registry.clone());
    // Only this shard's specialists and the general fallback are fetched from an S3 registry.
    let mut stems: Vec<String> = stage.categories.iter().map(|c| c.name().to_string()).collect();
    stems.push(GENERAL_MODEL.to_string());
    let registry = open_registry(&location, &settings.blob.s3, &stems, cli.models_cache.clone())
        .await
        .with_context(|| format!("opening the model registry {location}"))?;
    let device = stage.device.parse::<DeviceChoice>()?.resolve()?;

    let mut runtime = cli.worker.runtime_settings(&settings);
    // Batches only fill if enough deliveries are in flight at once.
    runtime.concurrency = runtime.concurrency.max(stage.batch_size * stage.categories.len());
    runtime.prefetch = runtime.prefetch.max(u16::try_from(stage.batch_size).unwrap_or(u16::MAX));
    let lanes = stage.categories.iter().map(|&c| Lane::Reconstruct(c)).collect();
    let services = Services::connect(settings).await?;
    let handler = ReconstructHandler::load(services.stage_context(), &registry, &stage, device)?;
    serve(&services, lanes, Arc::new(handler), runtime).await?;
    Ok(())
}
