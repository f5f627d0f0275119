//! What the service-facing commands (submit, status, fetch, stats, serve) share: the
//! layered settings flags, connecting to Postgres, the blob store and the queue, and a
//! Tokio runtime for the otherwise synchronous CLI.

use anyhow::Context;
use clap::Args;
use mono2mesh_api::ingest::Ingest;
use mono2mesh_infra::config::{Settings, SettingsLoader};
use mono2mesh_infra::service::Services;
use std::future::Future;
use std::path::PathBuf;

#[derive(Debug, Clone, Args)]
pub struct SettingsArgs {
    /// TOML config file layered over the compiled defaults (else $MONO2MESH_CONFIG).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Override one setting, e.g. `--set blob.backend=s3` (repeatable; wins over env).
    #[arg(long = "set", value_name = "SECTION.KEY=VALUE")]
    pub overrides: Vec<String>,
}

impl SettingsArgs {
    /// Defaults, then file, then `MONO2MESH__*` environment, then `--set` flags.
    pub fn load(&self) -> anyhow::Result<Settings> {
        let mut loader = SettingsLoader::from_process_env().file(self.config.clone());
        for assignment in &self.overrides {
            loader = loader.set_assignment(assignment)?;
        }
        Ok(loader.load()?)
    }
}

/// Job store (migrated), blob store and queue, as the workers see them.
pub async fn connect(settings: Settings) -> anyhow::Result<Services> {
    Services::connect(settings).await.context("connecting to the job store, blob store and queue")
}

/// The largest photo the gate accepts: ingestion refuses bigger uploads up front.
pub fn max_photo_bytes(settings: &Settings) -> anyhow::Result<u64> {
    Ok(mono2mesh_gate::GateSettings::from_config(settings).context("gate settings")?.limits.max_input_bytes)
}

pub fn ingest(services: &Services) -> anyhow::Result<Ingest> {
    Ok(Ingest {
        jobs: services.jobs.clone(),
        blobs: services.blobs.clone(),
        queue: services.queue.clone(),
        max_photo_bytes: max_photo_bytes(&services.settings)?,
        default_webhook: services.settings.webhook.url.clone(),
        allow_private_webhooks: services.settings.webhook.allow_private_networks,
    })
}

pub fn block_on<T>(future: impl Future<Output = anyhow::Result<T>>) -> anyhow::Result<T> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?
        .block_on(future)
}
