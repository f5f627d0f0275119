//! The body of a `job.finished` call: who, how it ended, what it produced and where to
//! get it (docs/openapi.yaml's `JobFinished`).

use mono2mesh_core::JobState;
use mono2mesh_infra::jobs::Job;
use serde_json::{json, Value};

use super::JOB_FINISHED;
use crate::views::JobView;

/// The notification body for `job`'s `attempt`-th call; links are absolute when the
/// deployment knows its `public_url`.
pub fn payload(job: &Job, attempt: i32, public_url: Option<&str>) -> Value {
    let view = JobView::of(job);
    let links = view.links();
    let base = public_url.unwrap_or("").trim_end_matches('/');
    let link = |path: &str| format!("{base}{path}");
    let downloads: serde_json::Map<String, Value> =
        links.downloads.iter().map(|(name, path)| (name.clone(), Value::String(link(path)))).collect();
    json!({
        "event": JOB_FINISHED,
        "job_id": job.id.to_string(),
        "external_id": job.external_id,
        "batch": job.batch,
        "state": job.state,
        // Why a rejected or failed job ended so; null for a done one.
        "reason": if job.state == JobState::Done { None } else { job.last_error.clone() },
        "category": job.category,
        "outputs": view.outputs(),
        "links": {
            "self": link(&links.self_),
            "events": link(&links.events),
            "outputs": link(&links.outputs),
            "downloads": downloads,
        },
        "finished_at": view.finished_at(),
        "attempt": attempt,
    })
}
