//! The classify stage as a queue handler: takes a classify message, classifies the job's
//! standardised (gated) image in a batch with whatever other photos are waiting, stores
//! the classification, records the category and hands the job to that category's
//! reconstruct lane. A photo whose best category is below the confidence threshold is
//! rejected with its best guess. The worker binary and `mono2mesh run` run this handler.

use async_trait::async_trait;
use bytes::Bytes;
use mono2mesh_core::{StageError, StageMessage, Stage};
use mono2mesh_infra::batcher::Batcher;
use mono2mesh_infra::blob::keys;
use mono2mesh_infra::jobs::{CategorySource, JobUpdate};
use mono2mesh_infra::pipeline::{begin, complete, hand_over, Begin, StageContext};
use mono2mesh_infra::runtime::{Next, StageHandler};
use mono2mesh_vision::classifier::ClassifierModel;
use serde_json::json;
use std::sync::Mutex;

use crate::settings::ClassifyStageSettings;
use crate::{classify_batch, Classification, ClassifyInput, ClassifySettings};

pub struct ClassifyHandler {
    context: StageContext,
    settings: ClassifySettings,
    batcher: Batcher<Bytes, Classification>,
}

impl ClassifyHandler {
    /// Starts the model's batcher on the current Tokio runtime.
    pub fn new(context: StageContext, model: ClassifierModel, stage: &ClassifyStageSettings) -> Self {
        let settings = stage.decision();
        // One forward pass at a time (libtorch parallelises inside). A panic leaves the
        // network unchanged (inference only reads it), so a poisoned lock is reused.
        let model = Mutex::new(model);
        let decision = settings.clone();
        let batcher = Batcher::spawn("classify", stage.batch_size, stage.batch_latency(), move |images: Vec<Bytes>| {
            let model = model.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            let inputs: Vec<ClassifyInput<'_>> = images.iter().map(|i| ClassifyInput::Encoded(i)).collect();
            match classify_batch(&inputs, &model, &decision) {
                Ok(results) => results.into_iter().map(Ok).collect(),
                // One undecodable image spoils the stacked batch: classify each alone so
                // only that photo gets the error.
                Err(_) if images.len() > 1 => images
                    .iter()
                    .map(|i| {
                        classify_batch(&[ClassifyInput::Encoded(i)], &model, &decision)
                            .map_err(|e| e.to_stage_error())
                            .and_then(|mut r| r.pop().ok_or_else(|| StageError::permanent("classifier returned no output")))
                    })
                    .collect(),
                Err(error) => vec![Err(error.to_stage_error())],
            }
        });
        ClassifyHandler { context, settings, batcher }
    }
}

#[async_trait]
impl StageHandler for ClassifyHandler {
    async fn handle(&self, message: StageMessage) -> Result<Next, StageError> {
        let StageContext { jobs, blobs } = &self.context;
        let job = match begin(jobs.as_ref(), &message).await? {
            Begin::Run(job) => job,
            Begin::AlreadyDone(job) => return Ok(hand_over(&job, Stage::Classify)),
            Begin::Stale(why) => return Ok(Next::Stale(why)),
        };
        let image = blobs.get(&keys::stage_artifact(job.id, Stage::Gate, keys::GATED_IMAGE)?).await?;
        let classification = self.batcher.run(image).await?;

        let record = serde_json::to_value(&classification)
            .map_err(|e| StageError::permanent(format!("classification is not serialisable: {e}")))?;
        let key = keys::stage_artifact(job.id, Stage::Classify, keys::CLASSIFICATION)?;
        blobs.put(&key, Bytes::from(record.to_string())).await?;
        let Some(category) = classification.category else {
            return Err(StageError::rejection(format!(
                "unknown category: best guess {} scored {:.2}, below the {:.2} threshold",
                classification.best_category, classification.confidence, self.settings.min_confidence
            )));
        };
        let update = JobUpdate {
            category: Some((category, CategorySource::Classifier)),
            outputs: Some(json!({ "classification": key.as_str() })),
            detail: Some(record),
            ..JobUpdate::default()
        };
        complete(jobs.as_ref(), &message, update).await
    }
}
