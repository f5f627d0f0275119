//! The JSON shapes a job and a batch are shown in, by the HTTP API and by
//! `mono2mesh status --json` alike (documented in docs/openapi.yaml).

use chrono::{DateTime, Utc};
use mono2mesh_core::{Category, JobState};
use mono2mesh_infra::blob::{content_type_for, BlobKey};
use mono2mesh_infra::jobs::{BatchSummary, CategorySource, Job};
use mono2mesh_infra::store::DeliveryState;
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;

/// Path of a job's resource; every other link of a job hangs off it.
pub fn job_path(id: impl std::fmt::Display) -> String {
    format!("/v1/jobs/{id}")
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct JobView {
    pub id: String,
    pub batch: String,
    pub state: JobState,
    pub external_id: Option<String>,
    pub category: Option<Category>,
    pub category_source: Option<CategorySource>,
    pub model: Option<String>,
    pub gate_scores: Option<Value>,
    pub attempts: i32,
    pub last_error: Option<String>,
    pub input_key: String,
    pub content_hash: String,
    /// Output name -> blob key, as the stages recorded them.
    pub outputs: BTreeMap<String, String>,
    pub timings: Timings,
    pub links: JobLinks,
    /// The finish notification, for a job that asked for one (single-job view only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub webhook: Option<DeliveryState>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Timings {
    pub created_at: DateTime<Utc>,
    pub gated_at: Option<DateTime<Utc>>,
    pub classified_at: Option<DateTime<Utc>>,
    pub reconstructed_at: Option<DateTime<Utc>>,
    pub done_at: Option<DateTime<Utc>>,
    pub rejected_at: Option<DateTime<Utc>>,
    pub failed_at: Option<DateTime<Utc>>,
    pub updated_at: DateTime<Utc>,
    /// Milliseconds from the previous step to each completed stage (queue wait included).
    pub stage_ms: BTreeMap<String, i64>,
    /// Milliseconds from submission to the final state, once there is one.
    pub total_ms: Option<i64>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct JobLinks {
    #[serde(rename = "self")]
    pub self_: String,
    pub input: String,
    pub events: String,
    pub outputs: String,
    /// Output name -> download link (a redirect to the object, or the object itself).
    pub downloads: BTreeMap<String, String>,
}

/// Output entries that name a blob key (stages record `name -> key` strings).
pub fn output_keys(job: &Job) -> BTreeMap<String, BlobKey> {
    let Value::Object(map) = &job.outputs else { return BTreeMap::new() };
    map.iter()
        .filter_map(|(name, value)| {
            let key = BlobKey::parse(value.as_str()?).ok()?;
            Some((name.clone(), key))
        })
        .collect()
}

fn millis_between(from: Option<DateTime<Utc>>, to: Option<DateTime<Utc>>) -> Option<i64> {
    Some((to? - from?).num_milliseconds())
}

impl JobView {
    pub fn of(job: &Job) -> JobView {
        let path = job_path(job.id);
        let outputs = output_keys(job);
        let stages = [
            ("gate", Some(job.created_at), job.gated_at),
            ("classify", job.gated_at, job.classified_at),
            ("reconstruct", job.classified_at.or(job.gated_at), job.reconstructed_at),
            ("refine", job.reconstructed_at, job.done_at),
        ];
        let stage_ms = stages
            .iter()
            .filter_map(|(name, from, to)| Some((name.to_string(), millis_between(*from, *to)?)))
            .collect();
        let ended = job.done_at.or(job.rejected_at).or(job.failed_at);
        JobView {
            id: job.id.to_string(),
            batch: job.batch.clone(),
            state: job.state,
            external_id: job.external_id.clone(),
            category: job.category,
            category_source: job.category_source,
            model: job.model.clone(),
            gate_scores: job.gate_scores.clone(),
            attempts: job.attempts,
            last_error: job.last_error.clone(),
            input_key: job.input_key.to_string(),
            content_hash: job.content_hash.clone(),
            timings: Timings {
                created_at: job.created_at,
                gated_at: job.gated_at,
                classified_at: job.classified_at,
                reconstructed_at: job.reconstructed_at,
                done_at: job.done_at,
                rejected_at: job.rejected_at,
                failed_at: job.failed_at,
                updated_at: job.updated_at,
                stage_ms,
                total_ms: millis_between(Some(job.created_at), ended),
            },
            links: JobLinks {
                input: format!("{path}/input"),
                events: format!("{path}/events"),
                outputs: format!("{path}/outputs"),
                downloads: outputs.keys().map(|name| (name.clone(), format!("{path}/outputs/{name}"))).collect(),
                self_: path,
            },
            outputs: outputs.into_iter().map(|(name, key)| (name, key.to_string())).collect(),
            webhook: None,
        }
    }
}

/// One output of a job, as listed by `GET /v1/jobs/{id}/outputs`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct OutputView {
    pub name: String,
    pub key: String,
    pub content_type: &'static str,
    pub href: String,
}

pub fn outputs_of(job: &Job) -> Vec<OutputView> {
    output_keys(job)
        .into_iter()
        .map(|(name, key)| OutputView {
            href: format!("{}/outputs/{name}", job_path(job.id)),
            content_type: content_type_for(&key),
            key: key.to_string(),
            name,
        })
        .collect()
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct BatchView {
    pub name: String,
    pub created_at: DateTime<Utc>,
    pub total: i64,
    /// Jobs per state, every state present.
    pub by_state: BTreeMap<String, i64>,
    pub finished: i64,
}

impl BatchView {
    pub fn of(summary: &BatchSummary) -> BatchView {
        BatchView {
            name: summary.name.clone(),
            created_at: summary.created_at,
            total: summary.total,
            by_state: summary.by_state.iter().map(|(s, n)| (s.name().to_string(), *n)).collect(),
            finished: summary.by_state.iter().filter(|(s, _)| s.is_terminal()).map(|(_, n)| n).sum(),
        }
    }
}
