//! The body of a `job.finished` call: who, how it ended, what it produced and where to
//! get it (docs/openapi.yaml's `JobFinished`).

use mono2mesh_core::JobState;
use mono2mesh_infra::jobs::Job;
use serde_json::{json, Value};

use super::JOB_FINISHED;
use crate::views::JobView;

/// The notification body: who, how it ended, what it produced and where to get it.
pub fn payload(job: &Job, attempt: i32, public_url: Option<&str>) -> Value {
    let view = JobView::of(job);
    let base = public_url.unwrap_or("").trim_end_matches('/');
    let link = |path: &str| format!("{base}{path}");
    let downloads: serde_json::Map<String, Value> =
        view.links.downloads.iter().map(|(name, path)| (name.clone(), Value::String(link(path)))).collect();
    let finished_at = view.timings.done_at.or(view.timings.rejected_at).or(view.timings.failed_at);
    json!({
        "event": JOB_FINISHED,
        "job_id": view.id,
        "external_id": view.external_id,
        "batch": view.batch,
        "state": view.state,
        // Why a rejected or failed job ended so; null for a done one.
        "reason": if job.state == JobState::Done { None } else { view.last_error.clone() },
        "category": view.category,
        "outputs": view.outputs,
        "links": {
            "self": link(&view.links.self_),
            "events": link(&view.links.events),
            "outputs": link(&view.links.outputs),
            "downloads": downloads,
        },
        "finished_at": finished_at,
        "attempt": attempt,
    })
}
