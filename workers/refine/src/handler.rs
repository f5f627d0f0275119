//! The refine stage as a queue handler: takes a refine message, meshes the job's stored
//! probability grid (`reconstruct/probabilities.npy`) with [`crate::refine_asset`] at the
//! job's real size (stated at submission, else its category's typical size), coloured from
//! the gate's standardised image (`gate/gated.png`, the image the network saw), stores one
//! mesh file per configured format, the preview and the mesh measurements (scale, colour
//! and quality included) under the job's refine keys, and marks the job done. The worker
//! binary and `mono2mesh run` run this handler.

use async_trait::async_trait;
use bytes::Bytes;
use mono2mesh_core::{Stage, StageError, StageMessage};
use mono2mesh_infra::blob::keys;
use mono2mesh_infra::jobs::JobUpdate;
use mono2mesh_infra::pipeline::{begin, complete, hand_over, report_progress, Begin, StageContext};
use mono2mesh_infra::runtime::{Next, StageHandler};
use serde_json::{json, Map, Value};

use mono2mesh_geometry::npy;

use std::sync::Arc;

use crate::{refine_asset_reporting, AssetSpec, RefineError, ReferencePhoto, RefineSettings};

/// Name of the stored mesh measurements.
pub const MESH_STATS: &str = "mesh.json";
/// Name of the stored preview picture.
pub const PREVIEW: &str = "preview.png";

pub struct RefineHandler {
    context: StageContext,
    settings: RefineSettings,
}

impl RefineHandler {
    pub fn new(context: StageContext, settings: RefineSettings) -> Self {
        RefineHandler { context, settings }
    }
}

#[async_trait]
impl StageHandler for RefineHandler {
    async fn handle(&self, message: StageMessage) -> Result<Next, StageError> {
        let StageContext { jobs, blobs } = &self.context;
        let job = match begin(jobs.as_ref(), &message).await? {
            Begin::Run(job) => job,
            Begin::AlreadyDone(job) => return Ok(hand_over(&job, Stage::Refine)),
            Begin::Stale(why) => return Ok(Next::Stale(why)),
        };
        let grid = blobs.get(&keys::stage_artifact(job.id, Stage::Reconstruct, keys::VOXEL_PROBABILITIES)?).await?;
        // Every job that reaches refine passed the gate, which stored this image; one
        // missing (a job gated before it was kept) is meshed without colour.
        let photo = if self.settings.colour {
            match blobs.get(&keys::stage_artifact(job.id, Stage::Gate, keys::GATED_IMAGE)?).await {
                Ok(bytes) => Some(bytes),
                Err(e) if e.is_not_found() => None,
                Err(e) => return Err(e.into()),
            }
        } else {
            None
        };
        let settings = self.settings.clone();
        // A size stated at submission wins; else the job's category (classified or named
        // by the submitter) sets the typical size.
        let spec = AssetSpec::for_category(job.category.or(message.category)).with_size(job.size);
        // The computation says how far it got; a task records it while it runs.
        let (progress, mut reported) = tokio::sync::mpsc::unbounded_channel::<u8>();
        let recorder = {
            let (jobs, id) = (jobs.clone(), job.id);
            tokio::spawn(async move {
                while let Some(percent) = reported.recv().await {
                    report_progress(jobs.as_ref(), id, Stage::Refine, percent).await;
                }
            })
        };
        let output = tokio::task::spawn_blocking(move || {
            let grid = npy::npy_to_grid(&grid).map_err(RefineError::from)?;
            let photo = photo.map(|bytes| ReferencePhoto::decode(&bytes)).transpose()?;
            let spec = spec.with_photo(photo.map(Arc::new));
            refine_asset_reporting(&grid, &settings, &spec, &mut |percent| {
                let _ = progress.send(percent);
            })
        })
            .await
            .map_err(|e| StageError::permanent(format!("refine computation did not finish: {e}")));
        // Every report recorded before the job moves on (the sender went with the closure).
        let _ = recorder.await;
        let output = output??;

        let mut outputs = Map::new();
        for file in output.files {
            let name = format!("mesh.{}", file.format.extension());
            let key = keys::stage_artifact(job.id, Stage::Refine, &name)?;
            blobs.put(&key, Bytes::from(file.bytes)).await?;
            outputs.insert(format!("mesh_{}", file.format.extension()), Value::String(key.as_str().to_string()));
        }
        for lod in output.lods {
            let key = keys::stage_artifact(job.id, Stage::Refine, &format!("mesh_lod{}.glb", lod.level))?;
            blobs.put(&key, Bytes::from(lod.bytes)).await?;
            outputs.insert(format!("mesh_lod{}_glb", lod.level), Value::String(key.as_str().to_string()));
        }
        if let Some(png) = output.preview {
            let key = keys::stage_artifact(job.id, Stage::Refine, PREVIEW)?;
            blobs.put(&key, Bytes::from(png)).await?;
            outputs.insert("preview".into(), Value::String(key.as_str().to_string()));
        }
        let stats = serde_json::to_value(&output.stats)
            .map_err(|e| StageError::permanent(format!("mesh stats are not serialisable: {e}")))?;
        let stats_key = keys::stage_artifact(job.id, Stage::Refine, MESH_STATS)?;
        blobs.put(&stats_key, Bytes::from(stats.to_string())).await?;
        outputs.insert("mesh_stats".into(), Value::String(stats_key.as_str().to_string()));
        let update = JobUpdate {
            outputs: Some(Value::Object(outputs)),
            quality: Some(json!(output.stats.quality)),
            detail: Some(json!({ "mesh": stats })),
            ..JobUpdate::default()
        };
        complete(jobs.as_ref(), &message, update).await
    }
}
