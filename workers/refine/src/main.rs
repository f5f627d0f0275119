//! Refine worker: takes refine messages, runs [`mono2mesh_refine::refine_binvox`] on the
//! job's stored voxel grid (`reconstruct/voxels.binvox`), stores one mesh file per
//! configured format and the mesh measurements under the job's refine keys, and marks
//! the job done. Links no libtorch.

use async_trait::async_trait;
use bytes::Bytes;
use clap::Parser;
use mono2mesh_core::{Stage, StageError, StageMessage};
use mono2mesh_infra::blob::keys;
use mono2mesh_infra::jobs::JobUpdate;
use mono2mesh_infra::pipeline::{begin, complete, hand_over, Begin};
use mono2mesh_infra::queue::Lane;
use mono2mesh_infra::runtime::{Next, StageHandler};
use mono2mesh_infra::service::{serve, Services, WorkerArgs};
use mono2mesh_refine::{refine_binvox, RefineSettings};
use serde_json::{json, Map, Value};
use std::path::PathBuf;
use std::sync::Arc;

/// Name of the stored mesh measurements.
const MESH_STATS: &str = "mesh.json";

#[derive(Debug, Parser)]
#[command(name = "mono2mesh-refine", version, about = "Refine worker: voxel grids to smoothed meshes")]
struct Cli {
    #[command(flatten)]
    worker: WorkerArgs,
    /// JSON file with refine settings (iso, smoothing, formats); defaults follow the paper.
    #[arg(long, env = "MONO2MESH_REFINE_SETTINGS", value_name = "FILE")]
    refine_settings: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let settings = cli.worker.settings()?;
    let _metrics = mono2mesh_infra::telemetry::init(&settings.telemetry)?;
    let refine_settings = match &cli.refine_settings {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| anyhow::anyhow!("reading refine settings {}: {e}", path.display()))?;
            serde_json::from_str(&text).map_err(|e| anyhow::anyhow!("refine settings {}: {e}", path.display()))?
        }
        None => RefineSettings::default(),
    };
    let runtime = cli.worker.runtime_settings(&settings);
    let services = Services::connect(settings).await?;
    let handler = Arc::new(RefineHandler { services: services.clone(), settings: refine_settings });
    serve(&services, vec![Lane::Refine], handler, runtime).await?;
    Ok(())
}

struct RefineHandler {
    services: Services,
    settings: RefineSettings,
}

#[async_trait]
impl StageHandler for RefineHandler {
    async fn handle(&self, message: StageMessage) -> Result<Next, StageError> {
        let Services { jobs, blobs, .. } = &self.services;
        let job = match begin(jobs, &message).await? {
            Begin::Run(job) => job,
            Begin::AlreadyDone(job) => return Ok(hand_over(&job, Stage::Refine)),
            Begin::Stale(why) => return Ok(Next::Stale(why)),
        };
        let voxels = blobs.get(&keys::stage_artifact(job.id, Stage::Reconstruct, keys::VOXELS_BINVOX)?).await?;
        let settings = self.settings.clone();
        let output = tokio::task::spawn_blocking(move || refine_binvox(&voxels, &settings))
            .await
            .map_err(|e| StageError::permanent(format!("refine computation did not finish: {e}")))??;

        let mut outputs = Map::new();
        for file in output.files {
            let name = format!("mesh.{}", file.format.extension());
            let key = keys::stage_artifact(job.id, Stage::Refine, &name)?;
            blobs.put(&key, Bytes::from(file.bytes)).await?;
            outputs.insert(format!("mesh_{}", file.format.extension()), Value::String(key.as_str().to_string()));
        }
        let stats = serde_json::to_value(&output.stats)
            .map_err(|e| StageError::permanent(format!("mesh stats are not serialisable: {e}")))?;
        let stats_key = keys::stage_artifact(job.id, Stage::Refine, MESH_STATS)?;
        blobs.put(&stats_key, Bytes::from(stats.to_string())).await?;
        outputs.insert("mesh_stats".into(), Value::String(stats_key.as_str().to_string()));
        let update = JobUpdate {
            outputs: Some(Value::Object(outputs)),
            detail: Some(json!({ "mesh": stats })),
            ..JobUpdate::default()
        };
        complete(jobs, &message, update).await
    }
}
