//! The gate stage as a queue handler: takes a gate message, runs [`crate::gate`] on the
//! job's stored photo, stores the report (and, when accepted, the standardised PNG)
//! under the job's gate keys, records scores and decision on the job, and hands
//! accepted jobs on: to classify, or straight to the reconstruct lane of a category the
//! submitter named. The worker binary and `mono2mesh run` both run this handler.

use async_trait::async_trait;
use bytes::Bytes;
use mono2mesh_core::{JobState, Stage, StageError, StageMessage};
use mono2mesh_infra::blob::keys;
use mono2mesh_infra::jobs::{CategorySource, Job, JobUpdate, Transition};
use mono2mesh_infra::pipeline::{begin, complete, Begin, StageContext};
use mono2mesh_infra::runtime::{Next, StageHandler};
use serde_json::json;

use crate::{gate, GateSettings};

pub struct GateHandler {
    context: StageContext,
    settings: GateSettings,
}

impl GateHandler {
    pub fn new(context: StageContext, settings: GateSettings) -> Self {
        GateHandler { context, settings }
    }
}

/// After the gate: classify, unless the submitter already named the category, in which
/// case the job goes straight to that category's reconstruct lane.
fn after_gate(job: &Job) -> Next {
    match (job.category, job.category_source) {
        (Some(category), Some(CategorySource::Manifest)) => {
            Next::Forward(StageMessage::new(job.id, Stage::Reconstruct, Some(category)))
        }
        _ => Next::Forward(StageMessage::new(job.id, Stage::Classify, job.category)),
    }
}

#[async_trait]
impl StageHandler for GateHandler {
    async fn handle(&self, message: StageMessage) -> Result<Next, StageError> {
        let StageContext { jobs, blobs } = &self.context;
        let job = match begin(jobs.as_ref(), &message).await? {
            Begin::Run(job) => job,
            Begin::AlreadyDone(job) => return Ok(after_gate(&job)),
            Begin::Stale(why) => return Ok(Next::Stale(why)),
        };
        let photo = blobs.get(&job.input_key).await?;
        let settings = self.settings.clone();
        let output = tokio::task::spawn_blocking(move || gate(&photo, &settings))
            .await
            .map_err(|e| StageError::permanent(format!("gate computation did not finish: {e}")))??;

        let report = serde_json::to_value(&output.report)
            .map_err(|e| StageError::permanent(format!("gate report is not serialisable: {e}")))?;
        let report_key = keys::stage_artifact(job.id, Stage::Gate, keys::GATE_REPORT)?;
        blobs.put(&report_key, Bytes::from(report.to_string())).await?;

        let png = match output.standardised_png {
            Some(png) if output.report.accepted() => png,
            _ => {
                // A verdict on the photo, not an error: recorded with every score, and
                // only while the job still waits for the gate (a guarded final move).
                let reasons: Vec<String> = output.report.reasons.iter().map(|r| r.message.clone()).collect();
                let update = JobUpdate {
                    gate_scores: Some(report.clone()),
                    outputs: Some(json!({ "gate_report": report_key.as_str() })),
                    error: Some(reasons.join("; ")),
                    detail: Some(report),
                    ..JobUpdate::default()
                };
                let moved = jobs
                    .advance_from(job.id, Some(Stage::Gate), &[JobState::Submitted], JobState::Rejected, update)
                    .await?;
                return Ok(match moved {
                    Transition::Applied { .. } | Transition::Duplicate => Next::Rejected,
                    Transition::Stale { current } => Next::Stale(format!("job became {current} while the gate ran")),
                });
            }
        };
        let image_key = keys::stage_artifact(job.id, Stage::Gate, keys::GATED_IMAGE)?;
        blobs.put(&image_key, Bytes::from(png)).await?;
        let update = JobUpdate {
            gate_scores: Some(report.clone()),
            outputs: Some(json!({ "gate_report": report_key.as_str(), "gated_image": image_key.as_str() })),
            detail: Some(report),
            ..JobUpdate::default()
        };
        Ok(match complete(jobs.as_ref(), &message, update).await? {
            Next::Forward(_) => after_gate(&job),
            other => other,
        })
    }
}
