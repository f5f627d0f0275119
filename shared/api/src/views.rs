//! The JSON shapes a job and a batch are shown in, by the HTTP API and by
//! `mono2mesh status --json` alike (documented in docs/openapi.yaml).

use chrono::{DateTime, Utc};
use mono2mesh_infra::blob::{content_type_for, BlobKey};
use mono2mesh_infra::jobs::{BatchSummary, Job};
use mono2mesh_infra::store::DeliveryState;
use serde::ser::SerializeStruct;
use serde::{Serialize, Serializer};
use serde_json::Value;
use std::collections::BTreeMap;

/// Path of a job's resource; every other link of a job hangs off it.
pub fn job_path(id: impl std::fmt::Display) -> String {
    format!("/v1/jobs/{id}")
}

/// A URL as shown in responses: scheme, host and port, then `…` for whatever followed
/// (path, query, user info), which for a webhook often carries a secret. Something that
/// does not parse as a URL is shown as `…` alone.
pub fn mask_url(url: &str) -> String {
    let Ok(parsed) = reqwest::Url::parse(url) else { return "…".to_string() };
    let Some(host) = parsed.host_str() else { return "…".to_string() };
    let port = parsed.port().map(|p| format!(":{p}")).unwrap_or_default();
    let rest = !parsed.username().is_empty() || parsed.password().is_some() || parsed.path() != "/" || parsed.query().is_some() || parsed.fragment().is_some();
    format!("{}://{host}{port}{}", parsed.scheme(), if rest { "/…" } else { "" })
}

/// `text` with `url` masked wherever it appears, as given or as a URL parser writes
/// it back (`https://h` becomes `https://h/` in reqwest's errors).
pub fn mask_url_in(text: &str, url: &str) -> String {
    let masked = mask_url(url);
    let mut out = text.replace(url, &masked);
    if let Ok(normalized) = reqwest::Url::parse(url) {
        if normalized.as_str() != url {
            out = out.replace(normalized.as_str(), &masked);
        }
    }
    out
}

/// A job as shown (docs/openapi.yaml's `Job`): the stored [`Job`] itself, not a copy
/// of its fields, plus what follows from it (outputs by name, stage timings, links)
/// and, in the single-job view, the finish notification's state. The JSON shape is
/// written once, in the `Serialize` impl below.
#[derive(Debug, Clone, PartialEq)]
pub struct JobView {
    pub job: Job,
    /// The finish notification, for a job that asked for one (single-job view only).
    pub webhook: Option<DeliveryState>,
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
        JobView { job: job.clone(), webhook: None }
    }

    /// Output name -> blob key, as the stages recorded them.
    pub fn outputs(&self) -> BTreeMap<String, String> {
        output_keys(&self.job).into_iter().map(|(name, key)| (name, key.to_string())).collect()
    }

    /// Milliseconds from the previous step to each completed stage (queue wait included).
    pub fn stage_ms(&self) -> BTreeMap<String, i64> {
        let job = &self.job;
        let stages = [
            ("gate", Some(job.created_at), job.gated_at),
            ("classify", job.gated_at, job.classified_at),
            ("reconstruct", job.classified_at.or(job.gated_at), job.reconstructed_at),
            ("refine", job.reconstructed_at, job.done_at),
        ];
        stages.iter().filter_map(|(name, from, to)| Some((name.to_string(), millis_between(*from, *to)?))).collect()
    }

    /// When the job reached its final state, once it has.
    pub fn finished_at(&self) -> Option<DateTime<Utc>> {
        self.job.done_at.or(self.job.rejected_at).or(self.job.failed_at)
    }

    /// Milliseconds from submission to the final state, once there is one.
    pub fn total_ms(&self) -> Option<i64> {
        millis_between(Some(self.job.created_at), self.finished_at())
    }

    pub fn links(&self) -> JobLinks {
        let path = job_path(self.job.id);
        let downloads = output_keys(&self.job)
            .into_keys()
            .map(|name| {
                let link = format!("{path}/outputs/{name}");
                (name, link)
            })
            .collect();
        JobLinks {
            input: format!("{path}/input"),
            events: format!("{path}/events"),
            outputs: format!("{path}/outputs"),
            downloads,
            self_: path,
        }
    }
}

impl Serialize for JobView {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let job = &self.job;
        let mut out = serializer.serialize_struct("Job", if self.webhook.is_some() { 19 } else { 18 })?;
        out.serialize_field("id", &job.id.to_string())?;
        out.serialize_field("batch", &job.batch)?;
        out.serialize_field("state", &job.state)?;
        out.serialize_field("progress", &job.progress())?;
        out.serialize_field("external_id", &job.external_id)?;
        out.serialize_field("category", &job.category)?;
        out.serialize_field("category_source", &job.category_source)?;
        out.serialize_field("size", &job.size)?;
        out.serialize_field("model", &job.model)?;
        out.serialize_field("gate_scores", &job.gate_scores)?;
        out.serialize_field("attempts", &job.attempts)?;
        out.serialize_field("last_error", &job.last_error)?;
        out.serialize_field("input_key", job.input_key.as_str())?;
        out.serialize_field("content_hash", &job.content_hash)?;
        out.serialize_field("outputs", &self.outputs())?;
        out.serialize_field("quality", &job.quality)?;
        out.serialize_field("timings", &Timings(self))?;
        out.serialize_field("links", &self.links())?;
        match &self.webhook {
            Some(webhook) => {
                let shown = DeliveryState {
                    url: mask_url(&webhook.url),
                    last_error: webhook.last_error.as_deref().map(|e| mask_url_in(e, &webhook.url)),
                    ..webhook.clone()
                };
                out.serialize_field("webhook", &shown)?
            }
            None => out.skip_field("webhook")?,
        }
        out.end()
    }
}

/// The `timings` object of a job view: the stored timestamps and what they add up to.
struct Timings<'a>(&'a JobView);

impl Serialize for Timings<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let job = &self.0.job;
        let mut out = serializer.serialize_struct("Timings", 10)?;
        out.serialize_field("created_at", &job.created_at)?;
        out.serialize_field("gated_at", &job.gated_at)?;
        out.serialize_field("classified_at", &job.classified_at)?;
        out.serialize_field("reconstructed_at", &job.reconstructed_at)?;
        out.serialize_field("done_at", &job.done_at)?;
        out.serialize_field("rejected_at", &job.rejected_at)?;
        out.serialize_field("failed_at", &job.failed_at)?;
        out.serialize_field("updated_at", &job.updated_at)?;
        out.serialize_field("stage_ms", &self.0.stage_ms())?;
        out.serialize_field("total_ms", &self.0.total_ms())?;
        out.end()
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

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use mono2mesh_core::{Category, JobId, JobState, RealSize, Stage};
    use mono2mesh_infra::blob::keys;
    use mono2mesh_infra::jobs::CategorySource;
    use serde_json::json;

    /// The documented shape of a job, field for field (what the view showed before it
    /// was built on the stored job).
    #[test]
    fn a_job_is_shown_in_the_documented_shape() {
        let id: JobId = "0190c3a4-5b6c-7d8e-9f00-112233445566".parse().unwrap();
        let at = |secs: i64| Some(Utc.timestamp_opt(1_764_583_200 + secs, 0).unwrap());
        let mesh = keys::stage_artifact(id, Stage::Refine, "mesh.obj").unwrap();
        let input = keys::input(id, "photo.png").unwrap();
        let job = Job {
            id,
            batch: "spring".into(),
            input_key: input.clone(),
            content_hash: "abc".into(),
            external_id: Some("SKU-1".into()),
            category: Some(Category::Chair),
            category_source: Some(CategorySource::Classifier),
            size: Some(RealSize::Height { height_mm: 910.0 }),
            model: Some("chair-v2".into()),
            outputs: json!({ "mesh_obj": mesh.as_str(), "note": 5, "bad": "../x" }),
            quality: Some(json!({ "confidence": 0.93, "needs_review": false })),
            gate_scores: Some(json!({ "blur_variance": 412.5 })),
            state: JobState::Done,
            attempts: 1,
            last_error: None,
            created_at: at(0).unwrap(),
            gated_at: at(1),
            classified_at: None,
            reconstructed_at: at(3),
            done_at: at(4),
            rejected_at: None,
            failed_at: None,
            updated_at: at(4).unwrap(),
            stage_progress: None,
        };
        let path = format!("/v1/jobs/{id}");
        let mut view = JobView::of(&job);
        let expected = json!({
            "id": id.to_string(),
            "batch": "spring",
            "state": "done",
            "progress": 100,
            "external_id": "SKU-1",
            "category": "chair",
            "category_source": "classifier",
            "size": { "height_mm": 910.0 },
            "model": "chair-v2",
            "gate_scores": { "blur_variance": 412.5 },
            "attempts": 1,
            "last_error": null,
            "input_key": input.as_str(),
            "content_hash": "abc",
            "outputs": { "mesh_obj": mesh.as_str() },
            "quality": { "confidence": 0.93, "needs_review": false },
            "timings": {
                "created_at": "2025-12-01T10:00:00Z",
                "gated_at": "2025-12-01T10:00:01Z",
                "classified_at": null,
                "reconstructed_at": "2025-12-01T10:00:03Z",
                "done_at": "2025-12-01T10:00:04Z",
                "rejected_at": null,
                "failed_at": null,
                "updated_at": "2025-12-01T10:00:04Z",
                "stage_ms": { "gate": 1000, "reconstruct": 2000, "refine": 1000 },
                "total_ms": 4000,
            },
            "links": {
                "self": path,
                "input": format!("{path}/input"),
                "events": format!("{path}/events"),
                "outputs": format!("{path}/outputs"),
                "downloads": { "mesh_obj": format!("{path}/outputs/mesh_obj") },
            },
        });
        assert_eq!(serde_json::to_value(&view).unwrap(), expected);

        // The webhook URL (its path holds the receiver's secret) is shown masked, also
        // where a transport error quotes it.
        view.webhook = Some(DeliveryState {
            url: "https://shop.example/hook/s3cr3t?sig=abc".into(),
            state: "pending".into(),
            attempts: 1,
            last_status: None,
            last_error: Some("error sending request for url (https://shop.example/hook/s3cr3t?sig=abc): timed out".into()),
        });
        let shown = serde_json::to_value(&view).unwrap();
        assert_eq!(
            shown["webhook"],
            json!({
                "url": "https://shop.example/…",
                "state": "pending",
                "attempts": 1,
                "last_status": null,
                "last_error": "error sending request for url (https://shop.example/…): timed out",
            })
        );
    }

    #[test]
    fn urls_are_masked_to_scheme_and_host() {
        assert_eq!(mask_url("https://hooks.example.com/T000/B000/XXXX"), "https://hooks.example.com/…");
        assert_eq!(mask_url("http://user:pw@10.0.0.5:8081/"), "http://10.0.0.5:8081/…");
        assert_eq!(mask_url("https://hooks.example.com"), "https://hooks.example.com");
        assert_eq!(mask_url("https://h.example/?token=abc"), "https://h.example/…");
        assert_eq!(mask_url("not a url with a secret"), "…");
        assert_eq!(mask_url_in("call to https://h.example/ failed", "https://h.example"), "call to https://h.example failed");
    }
}
