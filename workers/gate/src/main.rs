//! Gate worker: takes gate messages, runs [`mono2mesh_gate::gate`] on the job's stored
//! photo, stores the report (and, when accepted, the standardised PNG) under the job's
//! gate keys, records scores and decision on the job, and hands accepted jobs on:
//! to classify, or straight to the reconstruct lane of a category the manifest named.

use anyhow::Context as _;
use async_trait::async_trait;
use bytes::Bytes;
use clap::Parser;
use mono2mesh_core::{JobState, Stage, StageError, StageMessage};
use mono2mesh_gate::{gate, AspectPolicy, GateSettings};
use mono2mesh_infra::blob::keys;
use mono2mesh_infra::config;
use mono2mesh_infra::jobs::{CategorySource, Job, JobUpdate, Transition};
use mono2mesh_infra::pipeline::{begin, complete, Begin};
use mono2mesh_infra::queue::Lane;
use mono2mesh_infra::runtime::{Next, StageHandler};
use mono2mesh_infra::service::{serve, Services, WorkerArgs};
use serde_json::json;
use std::sync::Arc;

#[derive(Debug, Parser)]
#[command(name = "mono2mesh-gate", version, about = "Gate worker: decode, standardise and quality-check submitted photos")]
struct Cli {
    #[command(flatten)]
    worker: WorkerArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let settings = cli.worker.settings()?;
    let _metrics = mono2mesh_infra::telemetry::init(&settings.telemetry)?;
    let gate_settings = gate_settings(&settings.gate);
    gate_settings.validate().context("gate settings")?;
    let runtime = cli.worker.runtime_settings(&settings);
    let services = Services::connect(settings).await?;
    let handler = Arc::new(GateHandler { services: services.clone(), settings: gate_settings });
    serve(&services, vec![Lane::Gate], handler, runtime).await?;
    Ok(())
}

/// The deployment's `[gate]` section as the stage function's settings.
fn gate_settings(section: &config::GateSettings) -> GateSettings {
    let mut settings = GateSettings {
        size: section.target_size,
        aspect: match section.aspect {
            config::AspectPolicy::Stretch => AspectPolicy::Stretch,
            config::AspectPolicy::Pad => AspectPolicy::Pad,
        },
        min_blur_variance: section.min_blur_variance,
        min_mean_intensity: section.min_mean_intensity,
        max_mean_intensity: section.max_mean_intensity,
        ..GateSettings::default()
    };
    settings.limits.max_pixels = section.max_pixels;
    settings.limits.max_input_bytes = section.max_input_bytes;
    settings
}

struct GateHandler {
    services: Services,
    settings: GateSettings,
}

/// After the gate: classify, unless the submitter's manifest already named the
/// category, in which case the job goes straight to that category's reconstruct lane.
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
        let Services { jobs, blobs, .. } = &self.services;
        let job = match begin(jobs, &message).await? {
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
                // A verdict on the photo, not an error: recorded with every score.
                let reasons: Vec<String> = output.report.reasons.iter().map(|r| r.message.clone()).collect();
                let update = JobUpdate {
                    gate_scores: Some(report.clone()),
                    outputs: Some(json!({ "gate_report": report_key.as_str() })),
                    error: Some(reasons.join("; ")),
                    detail: Some(report),
                    ..JobUpdate::default()
                };
                return Ok(match jobs.advance(job.id, Some(Stage::Gate), JobState::Rejected, update).await? {
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
        Ok(match complete(jobs, &message, update).await? {
            Next::Forward(_) => after_gate(&job),
            other => other,
        })
    }
}
