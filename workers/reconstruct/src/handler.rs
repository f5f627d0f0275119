//! The reconstruct stage as a queue handler for a set of categories: it holds only
//! those categories' Pix2Vox specialists (or the registry's general model for a
//! category without one), batches waiting jobs of one model into a single forward pass
//! (up to `batch_size`, waiting at most `batch_latency_ms`), stores `voxels.binvox` and
//! `probabilities.npy` under the job's reconstruct keys and hands the job to refine.
//! The worker binary and `mono2mesh run` run this handler.

use async_trait::async_trait;
use bytes::Bytes;
use mono2mesh_core::{Category, Stage, StageError, StageMessage};
use mono2mesh_geometry::VoxelGrid;
use mono2mesh_infra::batcher::Batcher;
use mono2mesh_infra::blob::keys;
use mono2mesh_infra::jobs::JobUpdate;
use mono2mesh_infra::pipeline::{begin, complete, hand_over, report_progress, Begin, StageContext};
use mono2mesh_infra::runtime::{Next, StageHandler};
use mono2mesh_infra::telemetry::names;
use serde_json::json;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use tch::Device;

use crate::registry::{ModelRegistry, ModelRole, RegistryError};
use crate::settings::ReconstructStageSettings;
use crate::{npy, ReconstructError, ReconstructJob, Reconstructor};

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error("loading {path}: {source}")]
    Model { path: PathBuf, source: ReconstructError },
}

/// One model's batcher and the name jobs record for it (`pix2vox/<stem>`).
struct Lane {
    batcher: Arc<Batcher<Bytes, VoxelGrid>>,
    model: String,
}

pub struct ReconstructHandler {
    context: StageContext,
    lanes: HashMap<Category, Lane>,
    threshold: f32,
}

impl ReconstructHandler {
    /// Loads each category's model once (categories sharing the general model share it)
    /// and starts its batcher on the current Tokio runtime.
    pub fn load(
        context: StageContext,
        registry: &ModelRegistry,
        stage: &ReconstructStageSettings,
        device: Device,
    ) -> Result<Self, LoadError> {
        let mut by_path: HashMap<PathBuf, Arc<Batcher<Bytes, VoxelGrid>>> = HashMap::new();
        let mut lanes = HashMap::new();
        for &category in &stage.categories {
            let resolved = registry.resolve(Some(category))?;
            if resolved.role == ModelRole::General {
                tracing::warn!(%category, path = %resolved.path.display(), "no specialist; using the general model");
            }
            let batcher = match by_path.get(&resolved.path) {
                Some(batcher) => batcher.clone(),
                None => {
                    let model = Reconstructor::load(&resolved.path, device)
                        .map_err(|source| LoadError::Model { path: resolved.path.clone(), source })?;
                    let batcher = Arc::new(spawn_batcher(model, stage));
                    by_path.insert(resolved.path.clone(), batcher.clone());
                    batcher
                }
            };
            let model = resolved.path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
            lanes.insert(category, Lane { batcher, model });
        }
        Ok(ReconstructHandler { context, lanes, threshold: stage.threshold })
    }

    /// The categories this handler serves.
    pub fn categories(&self) -> Vec<Category> {
        let mut categories: Vec<Category> = self.lanes.keys().copied().collect();
        categories.sort();
        categories
    }
}

fn spawn_batcher(model: Reconstructor, stage: &ReconstructStageSettings) -> Batcher<Bytes, VoxelGrid> {
    let settings = stage.inference();
    // Inference only reads the network, so a lock poisoned by a panic guards a usable model.
    let model = Mutex::new(model);
    Batcher::spawn("reconstruct", stage.batch_size, stage.batch_latency(), move |images: Vec<Bytes>| {
        let model = model.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let views: Vec<[&[u8]; 1]> = images.iter().map(|i| [i.as_ref()]).collect();
        let jobs: Vec<ReconstructJob<'_>> = views.iter().map(|v| ReconstructJob { images: v }).collect();
        let (results, device_time) = model.reconstruct_batch_timed(&jobs, &settings);
        let device = if model.device().is_cuda() { "cuda" } else { "cpu" };
        metrics::histogram!(names::DEVICE_TIME, "stage" => "reconstruct", "device" => device)
            .record(device_time.as_secs_f64());
        results.into_iter().map(|r| r.map_err(|e| StageError { class: e.class(), reason: e.to_string() })).collect()
    })
}

#[async_trait]
impl StageHandler for ReconstructHandler {
    async fn handle(&self, message: StageMessage) -> Result<Next, StageError> {
        let StageContext { jobs, blobs } = &self.context;
        let category = message
            .category
            .ok_or_else(|| StageError::permanent("reconstruct message without a category"))?;
        let lane = self
            .lanes
            .get(&category)
            .ok_or_else(|| StageError::permanent(format!("this worker does not serve {category}")))?;
        let job = match begin(jobs.as_ref(), &message).await? {
            Begin::Run(job) => job,
            Begin::AlreadyDone(job) => return Ok(hand_over(&job, Stage::Reconstruct)),
            Begin::Stale(why) => return Ok(Next::Stale(why)),
        };
        let image = blobs.get(&keys::stage_artifact(job.id, Stage::Gate, keys::GATED_IMAGE)?).await?;
        // Progress for people watching: the photo is in its batch, then the forward pass
        // (the long part on a CPU) is done.
        report_progress(jobs.as_ref(), job.id, Stage::Reconstruct, 10).await;
        let grid = lane.batcher.run(image).await?;
        report_progress(jobs.as_ref(), job.id, Stage::Reconstruct, 80).await;

        let binvox_key = keys::stage_artifact(job.id, Stage::Reconstruct, keys::VOXELS_BINVOX)?;
        let probabilities_key = keys::stage_artifact(job.id, Stage::Reconstruct, keys::VOXEL_PROBABILITIES)?;
        blobs.put(&binvox_key, Bytes::from(grid.to_binvox_bytes(self.threshold))).await?;
        blobs.put(&probabilities_key, Bytes::from(npy::grid_to_npy(&grid))).await?;
        let occupied = grid.count_at_least(self.threshold);
        let update = JobUpdate {
            model: Some(format!("pix2vox/{}", lane.model)),
            outputs: Some(json!({ "voxels": binvox_key.as_str(), "probabilities": probabilities_key.as_str() })),
            detail: Some(json!({ "occupied_voxels": occupied, "threshold": self.threshold })),
            ..JobUpdate::default()
        };
        complete(jobs.as_ref(), &message, update).await
    }
}
