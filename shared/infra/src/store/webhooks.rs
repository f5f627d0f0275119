//! The webhook outbox (`webhook_deliveries`): one row per job that asked to be
//! notified, filled at submission and worked off by the dispatcher of
//! `mono2mesh serve` (`mono2mesh_api::webhook`). Claims use `FOR UPDATE SKIP LOCKED`
//! and a lease, so several dispatchers share the work and one that dies mid-call only
//! delays that call.

use super::{column, Pool};
use crate::jobs::{JobStoreError, QueryTimer};
use mono2mesh_core::JobId;
use serde_json::Value;
use std::time::Duration;

/// History event appended for each call.
pub const WEBHOOK_EVENT: &str = "webhook";

/// A notification's stored state, shown as `webhook` in a job's view.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DeliveryState {
    pub url: String,
    /// `pending`, `delivered` or `failed` (gave up).
    pub state: String,
    pub attempts: i32,
    pub last_status: Option<i32>,
    pub last_error: Option<String>,
}

/// A due notification claimed for one call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimedDelivery {
    pub job: JobId,
    pub url: String,
    /// This call's number, 1-based (the claim counts it).
    pub attempt: i32,
}

/// What one call came to, as stored on the row and in the job's history.
#[derive(Debug, Clone, PartialEq)]
pub struct DeliveryOutcome<'a> {
    /// `pending` (called again after `retry_in`), `delivered` or `failed` (gave up).
    pub state: &'static str,
    /// The receiver's HTTP status, when it answered.
    pub status: Option<u16>,
    pub error: Option<&'a str>,
    pub retry_in: Duration,
    /// Detail of the `webhook` history event.
    pub detail: Value,
}

/// Handle on `webhook_deliveries`; from [`crate::jobs::JobStore::webhooks`].
#[derive(Debug, Clone, Copy)]
pub struct WebhookDeliveries<'a> {
    pub(super) pool: Pool<'a>,
}

impl WebhookDeliveries<'_> {
    /// Asks for `url` to be called when `job` finishes. A job has at most one webhook:
    /// a later registration keeps the first. An unknown job is `NotFound`.
    pub async fn register(&self, job: JobId, url: &str) -> Result<(), JobStoreError> {
        let _timer = QueryTimer::start("webhook_register");
        let mut conn = self.pool.acquire().await.map_err(|e| JobStoreError::from_sqlx("register webhook", e))?;
        register_in(&mut conn, job, url).await
    }

    /// The job's notification, if it asked for one.
    pub async fn state(&self, job: JobId) -> Result<Option<DeliveryState>, JobStoreError> {
        let _timer = QueryTimer::start("webhook_state");
        let row = sqlx::query("SELECT url, state, attempts, last_status, last_error FROM webhook_deliveries WHERE job_id = $1")
            .bind(job.0)
            .fetch_optional(self.pool)
            .await
            .map_err(|e| JobStoreError::from_sqlx("webhook state", e))?;
        let Some(row) = row else { return Ok(None) };
        Ok(Some(DeliveryState {
            url: column(&row, "url")?,
            state: column(&row, "state")?,
            attempts: column(&row, "attempts")?,
            last_status: column(&row, "last_status")?,
            last_error: column(&row, "last_error")?,
        }))
    }

    /// Claims up to `limit` due notifications of finished jobs (done, rejected or
    /// failed): each counts an attempt and stays invisible to other claims for `lease`.
    pub async fn claim_due(&self, limit: i64, lease: Duration) -> Result<Vec<ClaimedDelivery>, JobStoreError> {
        let _timer = QueryTimer::start("webhook_claim");
        let rows = sqlx::query(
            "UPDATE webhook_deliveries d \
               SET attempts = d.attempts + 1, next_attempt_at = now() + make_interval(secs => $2) \
             WHERE d.job_id IN ( \
               SELECT w.job_id FROM webhook_deliveries w JOIN jobs j ON j.id = w.job_id \
               WHERE w.state = 'pending' AND w.next_attempt_at <= now() \
                 AND j.state IN ('done', 'rejected', 'failed') \
               ORDER BY w.next_attempt_at LIMIT $1 \
               FOR UPDATE OF w SKIP LOCKED) \
             RETURNING d.job_id, d.url, d.attempts",
        )
        .bind(limit)
        .bind(lease.as_secs_f64())
        .fetch_all(self.pool)
        .await
        .map_err(|e| JobStoreError::from_sqlx("claim webhooks", e))?;
        rows.iter()
            .map(|row| {
                Ok(ClaimedDelivery {
                    job: JobId(column(row, "job_id")?),
                    url: column(row, "url")?,
                    attempt: column(row, "attempts")?,
                })
            })
            .collect()
    }

    /// Stores a call's outcome on the row and appends it to the job's history, in one
    /// statement.
    pub async fn record(&self, job: JobId, outcome: &DeliveryOutcome<'_>) -> Result<(), JobStoreError> {
        let _timer = QueryTimer::start("webhook_record");
        sqlx::query(
            "WITH updated AS ( \
               UPDATE webhook_deliveries SET state = $2, last_status = $3, last_error = $4, \
                 next_attempt_at = now() + make_interval(secs => $5), \
                 delivered_at = CASE WHEN $2 = 'delivered' THEN now() ELSE delivered_at END \
               WHERE job_id = $1 RETURNING job_id \
             ) \
             INSERT INTO job_events (job_id, stage, event, detail) SELECT job_id, NULL, $6, $7 FROM updated",
        )
        .bind(job.0)
        .bind(outcome.state)
        .bind(outcome.status.map(i32::from))
        .bind(outcome.error)
        .bind(outcome.retry_in.as_secs_f64())
        .bind(WEBHOOK_EVENT)
        .bind(&outcome.detail)
        .execute(self.pool)
        .await
        .map_err(|e| JobStoreError::from_sqlx("record webhook call", e))?;
        Ok(())
    }
}

/// [`WebhookDeliveries::register`] on the caller's connection (inside a submission's
/// transaction).
pub(crate) async fn register_in(conn: &mut sqlx::PgConnection, job: JobId, url: &str) -> Result<(), JobStoreError> {
    let result = sqlx::query("INSERT INTO webhook_deliveries (job_id, url) VALUES ($1, $2) ON CONFLICT (job_id) DO NOTHING")
        .bind(job.0)
        .bind(url)
        .execute(conn)
        .await;
    match result {
        Ok(_) => Ok(()),
        // 23503: foreign key violation, i.e. no such job.
        Err(sqlx::Error::Database(db)) if db.code().as_deref() == Some("23503") => Err(JobStoreError::NotFound(job)),
        Err(e) => Err(JobStoreError::from_sqlx("register webhook", e)),
    }
}
