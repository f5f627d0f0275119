//! Reconstruct worker for a set of categories: consumes only those categories' lanes,
//! loads only their Pix2Vox specialists (`<registry>/pix2vox/<category>.safetensors`, or
//! the registry's general model for a category without one), and
//! batches waiting jobs of one category into a single forward pass (up to
//! `reconstruct.batch_size` jobs, waiting at most `reconstruct.batch_latency_ms` for the
//! batch to fill). Stores `voxels.binvox` and `probabilities.npy` under the job's
//! reconstruct keys and hands the job to refine. Runs on the CPU when no GPU is present.

use anyhow::Context as _;
use async_trait::async_trait;
use bytes::Bytes;
use clap::Parser;
use mono2mesh_core::{Category, Stage, StageError, StageMessage};
use mono2mesh_geometry::VoxelGrid;
use mono2mesh_infra::blob::keys;
use mono2mesh_infra::jobs::JobUpdate;
use mono2mesh_infra::pipeline::{begin, complete, hand_over, Begin};
use mono2mesh_infra::queue::Lane;
use mono2mesh_infra::runtime::{Next, StageHandler};
use mono2mesh_infra::service::{serve, Services, WorkerArgs};
use mono2mesh_infra::telemetry::names;
use mono2mesh_reconstruct::registry::{open_registry, ModelRole, GENERAL_MODEL};
use mono2mesh_reconstruct::{npy, ReconstructJob, ReconstructSettings, Reconstructor, DEFAULT_THRESHOLD};
use mono2mesh_vision::device::DeviceChoice;
use serde_json::json;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

#[derive(Debug, Parser)]
#[command(name = "mono2mesh-reconstruct", version, about = "Reconstruct worker: gated photos to 32^3 voxel grids, per category")]
struct Cli {
    #[command(flatten)]
    worker: WorkerArgs,
    /// Categories this worker serves, comma-separated (default: reconstruct.categories).
    #[arg(long, env = "MONO2MESH_RECONSTRUCT_CATEGORIES", value_delimiter = ',')]
    categories: Vec<Category>,
    /// Model registry holding `pix2vox/<category>.safetensors`: a directory or
    /// `s3://bucket/prefix` (default: models.registry).
    #[arg(long, env = "MONO2MESH_MODELS", value_name = "DIR|s3://BUCKET/PREFIX")]
    models: Option<String>,
    /// Local cache for an S3 registry [default: ~/.cache/mono2mesh/registry/<bucket>/<prefix>]
    #[arg(long, env = "MONO2MESH_MODELS_CACHE")]
    models_cache: Option<PathBuf>,
    /// Occupancy threshold for the stored binvox grid.
    #[arg(long, default_value_t = DEFAULT_THRESHOLD)]
    threshold: f32,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let settings = cli.worker.settings()?;
    let _metrics = mono2mesh_infra::telemetry::init(&settings.telemetry)?;
    anyhow::ensure!((0.0..=1.0).contains(&cli.threshold), "--threshold must lie in [0, 1]");
    let mut categories = if cli.categories.is_empty() { settings.reconstruct.categories.clone() } else { cli.categories.clone() };
    categories.sort();
    categories.dedup();
    anyhow::ensure!(!categories.is_empty(), "no categories to serve: pass --categories a,b,c");
    let location = cli.models.clone().unwrap_or_else(|| settings.models.registry.clone());
    // Only this worker's specialists and the general fallback are fetched from an S3 registry.
    let mut stems: Vec<String> = categories.iter().map(|c| c.name().to_string()).collect();
    stems.push(GENERAL_MODEL.to_string());
    let registry = open_registry(&location, &settings.blob.s3, &stems, cli.models_cache.clone())
        .await
        .with_context(|| format!("opening the model registry {location}"))?;

    let device: DeviceChoice = settings.reconstruct.device.parse()?;
    let device = device.resolve()?;
    let batch_size = settings.reconstruct.batch_size.max(1);
    let latency = settings.reconstruct.batch_latency();
    // A category without a specialist falls back to the general model, loaded once.
    let mut by_path: HashMap<PathBuf, Arc<Batcher>> = HashMap::new();
    let mut batchers = HashMap::new();
    for &category in &categories {
        let resolved = registry.resolve(Some(category))?;
        if resolved.role == ModelRole::General {
            tracing::warn!(%category, path = %resolved.path.display(), "no specialist; using the general model");
        }
        let batcher = match by_path.get(&resolved.path) {
            Some(batcher) => batcher.clone(),
            None => {
                let model = Reconstructor::load(&resolved.path, device)
                    .with_context(|| format!("loading {}", resolved.path.display()))?;
                let batcher = Arc::new(Batcher::spawn(model, batch_size, latency));
                by_path.insert(resolved.path.clone(), batcher.clone());
                batcher
            }
        };
        let name = resolved.path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        batchers.insert(category, (batcher, name));
    }
    let mut runtime = cli.worker.runtime_settings(&settings);
    // Batches only fill if enough deliveries are in flight at once.
    runtime.concurrency = runtime.concurrency.max(batch_size * categories.len());
    runtime.prefetch = runtime.prefetch.max(u16::try_from(batch_size).unwrap_or(u16::MAX));
    let lanes = categories.iter().map(|&c| Lane::Reconstruct(c)).collect();
    let services = Services::connect(settings).await?;
    let handler = Arc::new(ReconstructHandler { services: services.clone(), batchers, threshold: cli.threshold });
    serve(&services, lanes, handler, runtime).await?;
    Ok(())
}

type Reply = oneshot::Sender<Result<VoxelGrid, StageError>>;

/// Collects the images of concurrent deliveries for one specialist and runs them as one
/// batch on a blocking thread.
struct Batcher {
    requests: mpsc::Sender<(Bytes, Reply)>,
}

impl Batcher {
    fn spawn(model: Reconstructor, batch_size: usize, latency: Duration) -> Batcher {
        let (requests, mut incoming) = mpsc::channel::<(Bytes, Reply)>(batch_size * 4);
        let model = Arc::new(std::sync::Mutex::new(model));
        tokio::spawn(async move {
            while let Some(first) = incoming.recv().await {
                let mut batch = vec![first];
                let deadline = tokio::time::Instant::now() + latency;
                while batch.len() < batch_size {
                    match tokio::time::timeout_at(deadline, incoming.recv()).await {
                        Ok(Some(request)) => batch.push(request),
                        Ok(None) | Err(_) => break,
                    }
                }
                let model = model.clone();
                let (images, replies): (Vec<Bytes>, Vec<Reply>) = batch.into_iter().unzip();
                metrics::histogram!(names::BATCH_SIZE, "stage" => "reconstruct")
                    .record(images.len() as f64);
                let results = tokio::task::spawn_blocking(move || {
                    let model = model.lock().map_err(|_| "reconstructor lock poisoned by an earlier panic".to_string())?;
                    let views: Vec<[&[u8]; 1]> = images.iter().map(|i| [i.as_ref()]).collect();
                    let jobs: Vec<ReconstructJob> = views.iter().map(|v| ReconstructJob { images: v }).collect();
                    let settings = ReconstructSettings { max_batch: jobs.len(), ..ReconstructSettings::default() };
                    let (results, device_time) = model.reconstruct_batch_timed(&jobs, &settings);
                    let device = if model.device().is_cuda() { "cuda" } else { "cpu" };
                    metrics::histogram!(names::DEVICE_TIME, "stage" => "reconstruct", "device" => device)
                        .record(device_time.as_secs_f64());
                    Ok::<_, String>(results)
                })
                .await;
                match results {
                    Ok(Ok(results)) => {
                        for (reply, result) in replies.into_iter().zip(results) {
                            let _ = reply.send(result.map_err(|e| StageError { class: e.class(), reason: e.to_string() }));
                        }
                    }
                    Ok(Err(reason)) => replies.into_iter().for_each(|r| {
                        let _ = r.send(Err(StageError::permanent(reason.clone())));
                    }),
                    Err(e) => replies.into_iter().for_each(|r| {
                        let _ = r.send(Err(StageError::permanent(format!("reconstruction did not finish: {e}"))));
                    }),
                }
            }
        });
        Batcher { requests }
    }

    async fn reconstruct(&self, image: Bytes) -> Result<VoxelGrid, StageError> {
        let (reply, result) = oneshot::channel();
        self.requests
            .send((image, reply))
            .await
            .map_err(|_| StageError::permanent("the reconstruction batcher stopped"))?;
        result.await.map_err(|_| StageError::permanent("the reconstruction batcher dropped the job"))?
    }
}

struct ReconstructHandler {
    services: Services,
    /// Per category: the batcher of its model and the model's name.
    batchers: HashMap<Category, (Arc<Batcher>, String)>,
    threshold: f32,
}

#[async_trait]
impl StageHandler for ReconstructHandler {
    async fn handle(&self, message: StageMessage) -> Result<Next, StageError> {
        let Services { jobs, blobs, .. } = &self.services;
        let category = message
            .category
            .ok_or_else(|| StageError::permanent("reconstruct message without a category"))?;
        let (batcher, model) = self
            .batchers
            .get(&category)
            .ok_or_else(|| StageError::permanent(format!("this worker does not serve {category}")))?;
        let job = match begin(jobs, &message).await? {
            Begin::Run(job) => job,
            Begin::AlreadyDone(job) => return Ok(hand_over(&job, Stage::Reconstruct)),
            Begin::Stale(why) => return Ok(Next::Stale(why)),
        };
        let image = blobs.get(&keys::stage_artifact(job.id, Stage::Gate, keys::GATED_IMAGE)?).await?;
        let grid = batcher.reconstruct(image).await?;

        let binvox_key = keys::stage_artifact(job.id, Stage::Reconstruct, keys::VOXELS_BINVOX)?;
        let probabilities_key = keys::stage_artifact(job.id, Stage::Reconstruct, keys::VOXEL_PROBABILITIES)?;
        blobs.put(&binvox_key, Bytes::from(grid.to_binvox_bytes(self.threshold))).await?;
        blobs.put(&probabilities_key, Bytes::from(npy::grid_to_npy(&grid))).await?;
        let occupied = grid.count_at_least(self.threshold);
        let update = JobUpdate {
            model: Some(format!("pix2vox/{model}")),
            outputs: Some(json!({ "voxels": binvox_key.as_str(), "probabilities": probabilities_key.as_str() })),
            detail: Some(json!({ "occupied_voxels": occupied, "threshold": self.threshold })),
            ..JobUpdate::default()
        };
        complete(jobs, &message, update).await
    }
}
