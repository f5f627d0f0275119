//! The outbox of stage messages (`outbox`): a new job's gate message is inserted in the
//! job's own transaction ([`crate::jobs::JobStore::submit_with_message`]) and worked off
//! by relays ([`crate::outbox`]), so recording a job and queueing it cannot come apart.
//!
//! Claims set `next_attempt_at` to the end of a lease, picking rows with
//! `FOR UPDATE SKIP LOCKED`: concurrent relays never take the same row while its lease
//! runs, and a relay that dies mid-publish only delays the row until the lease ends.
//! A published row is deleted together with the job's `published` history event, in
//! one statement, so the event is written once even if a late relay published twice.

use super::{column, Pool};
use crate::jobs::{JobStoreError, QueryTimer};
use crate::otel::TraceHeaders;
use chrono::{DateTime, Utc};
use mono2mesh_core::{JobId, StageMessage};
use serde_json::Value;
use sqlx::postgres::PgRow;
use sqlx::PgConnection;
use std::time::Duration;

/// The history event written once a job's gate message is confirmed by the broker.
pub const PUBLISHED_EVENT: &str = "published";

/// A row taken for one publish: by a claim, or held by its submitter from the insert.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxEntry {
    pub id: i64,
    pub message: StageMessage,
    /// This publish's number, 1-based (the claim counts it).
    pub attempt: i32,
    /// Trace context of the submission, for the publish to continue.
    pub trace: TraceHeaders,
}

/// A message still waiting in the outbox, as operators and tests see it.
#[derive(Debug, Clone, PartialEq)]
pub struct PendingMessage {
    pub id: i64,
    pub job: JobId,
    pub message: Value,
    pub attempts: i32,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub next_attempt_at: DateTime<Utc>,
}

/// Which due rows a claim may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutboxScope<'a> {
    All,
    /// The rows of one job (a resumed submission).
    Job(JobId),
    /// The rows of one batch's jobs (the end of `mono2mesh submit`).
    Batch(&'a str),
}

/// Handle on `outbox`; from [`crate::jobs::JobStore::outbox`].
#[derive(Debug, Clone, Copy)]
pub struct Outbox<'a> {
    pub(super) pool: Pool<'a>,
}

fn trace_json(trace: &TraceHeaders) -> Value {
    Value::Object(trace.iter().map(|(k, v)| (k.to_string(), Value::String(v.to_string()))).collect())
}

fn entry_from_row(row: &PgRow) -> Result<OutboxEntry, JobStoreError> {
    let id: i64 = column(row, "id")?;
    let message: Value = column(row, "message")?;
    let message = serde_json::from_value(message)
        .map_err(|e| JobStoreError::Corrupt(format!("outbox row {id}: unreadable message: {e}")))?;
    let trace: Value = column(row, "trace")?;
    let trace = match &trace {
        Value::Object(map) => TraceHeaders::from_pairs(map.iter().filter_map(|(k, v)| Some((k.as_str(), v.as_str()?)))),
        _ => TraceHeaders::default(),
    };
    Ok(OutboxEntry { id, message, attempt: column(row, "attempts")?, trace })
}

/// Inserts `message` inside the caller's transaction. With a non-zero `hold` the row
/// is born claimed by the caller for that long (its first attempt), so it can publish
/// it at once without a relay taking it meanwhile; after a crash a relay takes it when
/// the hold runs out.
pub(crate) async fn insert(
    conn: &mut PgConnection,
    message: &StageMessage,
    trace: &TraceHeaders,
    hold: Duration,
) -> Result<OutboxEntry, JobStoreError> {
    let body = serde_json::to_value(message)
        .map_err(|e| JobStoreError::Query { context: "outbox insert", message: e.to_string() })?;
    let row = sqlx::query(
        "INSERT INTO outbox (job_id, stage, message, trace, attempts, next_attempt_at) \
         VALUES ($1, $2, $3, $4, CASE WHEN $5 > 0 THEN 1 ELSE 0 END, now() + make_interval(secs => $5)) \
         RETURNING id, message, trace, attempts",
    )
    .bind(message.job_id.0)
    .bind(message.stage.name())
    .bind(body)
    .bind(trace_json(trace))
    .bind(hold.as_secs_f64())
    .fetch_one(conn)
    .await
    .map_err(|e| JobStoreError::from_sqlx("outbox insert", e))?;
    entry_from_row(&row)
}

impl Outbox<'_> {
    /// Claims up to `limit` due rows of `scope`, oldest first: each counts an attempt
    /// and stays invisible to other claims for `lease`.
    pub async fn claim_due(&self, scope: OutboxScope<'_>, limit: i64, lease: Duration) -> Result<Vec<OutboxEntry>, JobStoreError> {
        let _timer = QueryTimer::start("outbox_claim");
        let (job, batch) = match scope {
            OutboxScope::All => (None, None),
            OutboxScope::Job(id) => (Some(id.0), None),
            OutboxScope::Batch(name) => (None, Some(name)),
        };
        let rows = sqlx::query(
            "UPDATE outbox o SET attempts = o.attempts + 1, next_attempt_at = now() + make_interval(secs => $2) \
             WHERE o.id IN ( \
               SELECT w.id FROM outbox w \
               WHERE w.next_attempt_at <= now() \
                 AND ($3::uuid IS NULL OR w.job_id = $3) \
                 AND ($4::text IS NULL OR w.job_id IN ( \
                   SELECT j.id FROM jobs j JOIN batches b ON b.id = j.batch_id WHERE b.name = $4)) \
               ORDER BY w.id LIMIT $1 \
               FOR UPDATE OF w SKIP LOCKED) \
             RETURNING o.id, o.message, o.trace, o.attempts",
        )
        .bind(limit)
        .bind(lease.as_secs_f64())
        .bind(job)
        .bind(batch)
        .fetch_all(self.pool)
        .await
        .map_err(|e| JobStoreError::from_sqlx("outbox claim", e))?;
        let mut entries = rows.iter().map(entry_from_row).collect::<Result<Vec<_>, _>>()?;
        // RETURNING does not keep the subquery's order.
        entries.sort_by_key(|e| e.id);
        Ok(entries)
    }

    /// Queues `message` (held for `hold`, as [`insert`] does) for a job recorded before
    /// the outbox existed: only while the job is still `submitted`, has no `published`
    /// event and no row for this stage. `None` when there is nothing to adopt.
    ///
    /// A relay deleting the job's row between a caller's failed claim and this insert
    /// can, rarely, make the message go out twice; stages acknowledge the duplicate.
    pub async fn adopt_unpublished(
        &self,
        message: &StageMessage,
        trace: &TraceHeaders,
        hold: Duration,
    ) -> Result<Option<OutboxEntry>, JobStoreError> {
        let _timer = QueryTimer::start("outbox_adopt");
        let body = serde_json::to_value(message)
            .map_err(|e| JobStoreError::Query { context: "outbox adopt", message: e.to_string() })?;
        let row = sqlx::query(
            "INSERT INTO outbox (job_id, stage, message, trace, attempts, next_attempt_at) \
             SELECT j.id, $2, $3, $4, CASE WHEN $5 > 0 THEN 1 ELSE 0 END, now() + make_interval(secs => $5) \
             FROM jobs j WHERE j.id = $1 AND j.state = 'submitted' \
               AND NOT EXISTS (SELECT 1 FROM job_events e WHERE e.job_id = j.id AND e.event = $6) \
             ON CONFLICT (job_id, stage) DO NOTHING \
             RETURNING id, message, trace, attempts",
        )
        .bind(message.job_id.0)
        .bind(message.stage.name())
        .bind(body)
        .bind(trace_json(trace))
        .bind(hold.as_secs_f64())
        .bind(PUBLISHED_EVENT)
        .fetch_optional(self.pool)
        .await
        .map_err(|e| JobStoreError::from_sqlx("outbox adopt", e))?;
        row.as_ref().map(entry_from_row).transpose()
    }

    /// The broker confirmed `entry`: deletes the row and appends the job's `published`
    /// event (`detail`) in one statement. False when the row was gone already (another
    /// relay published it after this one's lease ran out); no event is written then.
    pub async fn mark_published(&self, entry: &OutboxEntry, detail: Value) -> Result<bool, JobStoreError> {
        let _timer = QueryTimer::start("outbox_published");
        let done = sqlx::query(
            "WITH gone AS (DELETE FROM outbox WHERE id = $1 RETURNING job_id) \
             INSERT INTO job_events (job_id, stage, event, detail) SELECT job_id, NULL, $2, $3 FROM gone",
        )
        .bind(entry.id)
        .bind(PUBLISHED_EVENT)
        .bind(detail)
        .execute(self.pool)
        .await
        .map_err(|e| JobStoreError::from_sqlx("outbox published", e))?;
        Ok(done.rows_affected() > 0)
    }

    /// Gives a row whose publish failed back, due again after `retry_in`, with the
    /// error (its attempt stays counted).
    pub async fn release(&self, id: i64, error: &str, retry_in: Duration) -> Result<(), JobStoreError> {
        let _timer = QueryTimer::start("outbox_release");
        sqlx::query("UPDATE outbox SET last_error = $2, next_attempt_at = now() + make_interval(secs => $3) WHERE id = $1")
            .bind(id)
            .bind(error)
            .bind(retry_in.as_secs_f64())
            .execute(self.pool)
            .await
            .map_err(|e| JobStoreError::from_sqlx("outbox release", e))?;
        Ok(())
    }

    /// Gives claimed rows that were never published back at once (a pass stopped at an
    /// earlier failure), taking their claims' attempts back.
    pub async fn unclaim(&self, ids: &[i64]) -> Result<(), JobStoreError> {
        if ids.is_empty() {
            return Ok(());
        }
        let _timer = QueryTimer::start("outbox_unclaim");
        sqlx::query("UPDATE outbox SET attempts = greatest(attempts - 1, 0), next_attempt_at = now() WHERE id = ANY($1)")
            .bind(ids)
            .execute(self.pool)
            .await
            .map_err(|e| JobStoreError::from_sqlx("outbox unclaim", e))?;
        Ok(())
    }

    /// Messages waiting, in all or in one batch (due or not).
    pub async fn pending_count(&self, batch: Option<&str>) -> Result<i64, JobStoreError> {
        let _timer = QueryTimer::start("outbox_pending");
        let row = sqlx::query(
            "SELECT count(*) AS n FROM outbox o \
             WHERE $1::text IS NULL OR o.job_id IN ( \
               SELECT j.id FROM jobs j JOIN batches b ON b.id = j.batch_id WHERE b.name = $1)",
        )
        .bind(batch)
        .fetch_one(self.pool)
        .await
        .map_err(|e| JobStoreError::from_sqlx("outbox pending", e))?;
        column(&row, "n")
    }

    /// The job's waiting messages, oldest first.
    pub async fn for_job(&self, job: JobId) -> Result<Vec<PendingMessage>, JobStoreError> {
        let _timer = QueryTimer::start("outbox_for_job");
        let rows = sqlx::query(
            "SELECT id, job_id, message, attempts, last_error, created_at, next_attempt_at \
             FROM outbox WHERE job_id = $1 ORDER BY id",
        )
        .bind(job.0)
        .fetch_all(self.pool)
        .await
        .map_err(|e| JobStoreError::from_sqlx("outbox for job", e))?;
        rows.iter()
            .map(|row| {
                Ok(PendingMessage {
                    id: column(row, "id")?,
                    job: JobId(column(row, "job_id")?),
                    message: column(row, "message")?,
                    attempts: column(row, "attempts")?,
                    last_error: column(row, "last_error")?,
                    created_at: column(row, "created_at")?,
                    next_attempt_at: column(row, "next_attempt_at")?,
                })
            })
            .collect()
    }
}
