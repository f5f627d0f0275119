//! The job store on Postgres: jobs, their append-only stage history, batches.
//!
//! Every state change is a guarded `UPDATE ... WHERE state = ANY(allowed
//! predecessors)`, with the predecessors taken from `mono2mesh_core::JobState`, so a
//! late or duplicated message can never move a job backwards; a repeat of the step
//! that already happened is reported as a harmless duplicate. Queries are checked at
//! run time (no `query!` macros), so building needs no database.

use crate::blob::BlobKey;
use crate::config::DatabaseSettings;
use chrono::{DateTime, Utc};
use crate::store::OutboxEntry;
use mono2mesh_core::{Category, ErrorClass, JobId, JobState, RealSize, Stage, StageError, StageMessage};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::postgres::{PgPool, PgPoolOptions, PgRow};
use sqlx::Row;
use std::time::Duration;

/// Migrations from the repository's `migrations/` directory, embedded at build time.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations");

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JobStoreError {
    #[error("job {0} not found")]
    NotFound(JobId),
    /// Connection refused or lost, pool exhausted, serialization conflict, server
    /// shutting down: the same call may succeed later.
    #[error("database unavailable during {context}: {message}")]
    Unavailable { context: &'static str, message: String },
    /// A constraint refused the write (unique, foreign key, check): the caller asked
    /// for something the stored data does not allow; repeating it cannot help.
    #[error("refused by the database during {context}: {message}")]
    Constraint { context: &'static str, message: String },
    #[error("database error during {context}: {message}")]
    Query { context: &'static str, message: String },
    #[error("stored job is unreadable: {0}")]
    Corrupt(String),
    #[error("database migration failed: {0}")]
    Migration(String),
}

impl JobStoreError {
    pub fn class(&self) -> ErrorClass {
        match self {
            JobStoreError::Unavailable { .. } => ErrorClass::Retryable,
            _ => ErrorClass::Permanent,
        }
    }

    /// The one mapping of database errors for every query of the service: connection
    /// loss, pool time-outs and server-side transients are `Unavailable`, constraint
    /// violations (SQLSTATE class 23) `Constraint`, the rest `Query`.
    pub(crate) fn from_sqlx(context: &'static str, err: sqlx::Error) -> Self {
        let message = err.to_string();
        if let sqlx::Error::Database(db) = &err {
            if db.code().is_some_and(|c| c.starts_with("23")) {
                return JobStoreError::Constraint { context, message };
            }
        }
        let retryable = match &err {
            // SQLSTATE classes: 08 connection, 40 transaction rollback (serialization,
            // deadlock), 53 insufficient resources, 57 operator intervention (shutdown);
            // 55P03 lock not available.
            sqlx::Error::Database(db) => db
                .code()
                .is_some_and(|c| ["08", "40", "53", "57"].iter().any(|p| c.starts_with(p)) || c == "55P03"),
            sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed
            | sqlx::Error::Protocol(_) => true,
            _ => false,
        };
        if retryable {
            JobStoreError::Unavailable { context, message }
        } else {
            JobStoreError::Query { context, message }
        }
    }
}

impl From<JobStoreError> for StageError {
    fn from(err: JobStoreError) -> Self {
        StageError { class: err.class(), reason: err.to_string() }
    }
}

type Result<T, E = JobStoreError> = std::result::Result<T, E>;

/// Where a job's category came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CategorySource {
    /// The submitter's manifest named it; the classifier is skipped.
    Manifest,
    Classifier,
}

impl CategorySource {
    pub fn name(self) -> &'static str {
        match self {
            CategorySource::Manifest => "manifest",
            CategorySource::Classifier => "classifier",
        }
    }
}

/// One stored job.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Job {
    pub id: JobId,
    pub batch: String,
    pub input_key: BlobKey,
    pub content_hash: String,
    pub external_id: Option<String>,
    pub category: Option<Category>,
    pub category_source: Option<CategorySource>,
    /// Real-world size stated at submission; `None`: the category's typical size.
    pub size: Option<RealSize>,
    pub model: Option<String>,
    /// Output blob keys by name, merged by each stage (`{"mesh": "jobs/.../mesh.obj"}`).
    pub outputs: Value,
    /// The asset's quality as the refine stage judged it (`confidence`, its parts,
    /// `needs_review`); `None` until then.
    pub quality: Option<Value>,
    pub gate_scores: Option<Value>,
    pub state: JobState,
    pub attempts: i32,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub gated_at: Option<DateTime<Utc>>,
    pub classified_at: Option<DateTime<Utc>>,
    pub reconstructed_at: Option<DateTime<Utc>>,
    pub done_at: Option<DateTime<Utc>>,
    pub rejected_at: Option<DateTime<Utc>>,
    pub failed_at: Option<DateTime<Utc>>,
    pub updated_at: DateTime<Utc>,
    /// The stage working on the job and how far it got (0-100), when it said so; reset by
    /// every state change.
    pub stage_progress: Option<(Stage, u8)>,
}

impl Job {
    /// Overall progress 0-100: the state's, plus the share of the current stage done.
    pub fn progress(&self) -> u8 {
        match self.stage_progress {
            Some((stage, percent)) => self.state.progress_in(stage, percent),
            None => self.state.progress(),
        }
    }
}

/// A job to submit. The id is chosen by the submitter so the input can be stored
/// under the job's key; when the (batch, content hash) pair already exists, the
/// existing job is returned instead and its id and key should be used.
#[derive(Debug, Clone)]
pub struct NewJob {
    pub id: JobId,
    pub batch: String,
    pub input_key: BlobKey,
    pub content_hash: String,
    pub external_id: Option<String>,
    /// Category named by the manifest, if any.
    pub category: Option<Category>,
    /// Real-world size named by the manifest or API fields, if any.
    pub size: Option<RealSize>,
}

/// What a submission did.
#[derive(Debug, Clone, PartialEq)]
pub struct Submission {
    pub job: Job,
    /// False when the batch already had a job for this content (resumed submission).
    pub created: bool,
}

/// What [`JobStore::submit_with_message`] did.
#[derive(Debug, Clone, PartialEq)]
pub struct QueuedSubmission {
    pub submission: Submission,
    /// The new job's outbox row, held by the caller for its publish; `None` for an
    /// existing job (nothing was queued) or a zero hold.
    pub held: Option<OutboxEntry>,
}

/// The outgoing half of a submission.
struct Outgoing<'a> {
    message: &'a StageMessage,
    hold: Duration,
    webhook: Option<&'a str>,
}

/// Facts a stage records together with its state change. `None` fields keep their
/// stored value; `outputs` is merged into the stored object.
#[derive(Debug, Clone, Default)]
pub struct JobUpdate {
    pub category: Option<(Category, CategorySource)>,
    pub model: Option<String>,
    pub outputs: Option<Value>,
    pub gate_scores: Option<Value>,
    /// Replaces the job's quality verdict.
    pub quality: Option<Value>,
    pub error: Option<String>,
    /// Stored with the history event of this transition.
    pub detail: Option<Value>,
}

/// The result of asking a job to move to a state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// The job moved from `from` to the requested state.
    Applied { from: JobState },
    /// The job was already in the requested state: a redelivery, nothing changed.
    Duplicate,
    /// The job is past the requested state (or finished): a late message, ignored.
    Stale { current: JobState },
}

/// One entry of a job's history.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JobEvent {
    pub id: i64,
    pub job_id: JobId,
    pub stage: Option<Stage>,
    pub event: String,
    pub detail: Value,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BatchSummary {
    pub name: String,
    pub created_at: DateTime<Utc>,
    pub total: i64,
    /// Jobs per state, in `JobState::ALL` order, zeros included.
    pub by_state: Vec<(JobState, i64)>,
}

impl BatchSummary {
    pub fn count(&self, state: JobState) -> i64 {
        self.by_state.iter().find(|(s, _)| *s == state).map_or(0, |(_, n)| *n)
    }
}

/// Keyset pagination over a batch's jobs in id (= submission time) order.
#[derive(Debug, Clone, Copy, Default)]
pub struct Page {
    /// Return jobs after this one (the last id of the previous page).
    pub after: Option<JobId>,
    pub limit: u32,
}

/// Throughput and latency of one stage over a time window. Latency is the time
/// from the previous stage's completion (or submission) to this stage's, so it
/// includes queue wait.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StageStats {
    pub stage: Stage,
    pub completed: i64,
    pub per_minute: f64,
    pub latency_mean_ms: Option<f64>,
    pub latency_p50_ms: Option<f64>,
    pub latency_p95_ms: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StatsReport {
    pub window_secs: u64,
    pub stages: Vec<StageStats>,
    pub rejected: i64,
    pub failed: i64,
    /// Jobs done in the window whose asset was flagged for review (low quality confidence).
    pub needs_review: i64,
}

/// The states a job may be in for a move to `to` to be legal.
/// Times one job-store call into `mono2mesh_db_query_seconds{op}` when dropped, so
/// early returns and errors are timed too.
pub(crate) struct QueryTimer {
    op: &'static str,
    started: std::time::Instant,
}

impl QueryTimer {
    pub(crate) fn start(op: &'static str) -> QueryTimer {
        QueryTimer { op, started: std::time::Instant::now() }
    }
}

impl Drop for QueryTimer {
    fn drop(&mut self) {
        metrics::histogram!(crate::telemetry::names::DB_QUERY, "op" => self.op).record(self.started.elapsed().as_secs_f64());
    }
}

fn allowed_predecessors(to: JobState) -> Vec<String> {
    JobState::ALL.into_iter().filter(|from| from.can_move_to(to)).map(|s| s.name().to_string()).collect()
}

macro_rules! job_select {
    () => {
        "SELECT j.id, b.name AS batch, j.input_key, j.content_hash, j.external_id, j.category, \
         j.category_source, j.size, j.model, j.outputs, j.quality, j.gate_scores, j.state, j.attempts, j.last_error, \
         j.created_at, j.gated_at, j.classified_at, j.reconstructed_at, j.done_at, j.rejected_at, \
         j.failed_at, j.updated_at, j.progress_stage, j.stage_progress FROM jobs j JOIN batches b ON b.id = j.batch_id"
    };
}

fn job_from_row(row: &PgRow) -> Result<Job> {
    let corrupt = |e: sqlx::Error| JobStoreError::Corrupt(e.to_string());
    let id = JobId(row.try_get("id").map_err(corrupt)?);
    let parse_err = |what: &str, value: &str| JobStoreError::Corrupt(format!("job {id}: bad {what} {value:?}"));
    let state: String = row.try_get("state").map_err(corrupt)?;
    let input_key: String = row.try_get("input_key").map_err(corrupt)?;
    let category: Option<String> = row.try_get("category").map_err(corrupt)?;
    let category_source: Option<String> = row.try_get("category_source").map_err(corrupt)?;
    let size: Option<Value> = row.try_get("size").map_err(corrupt)?;
    let progress_stage: Option<String> = row.try_get("progress_stage").map_err(corrupt)?;
    let stage_percent: i16 = row.try_get("stage_progress").map_err(corrupt)?;
    let stage_progress = progress_stage
        .map(|s| s.parse::<Stage>().map_err(|_| parse_err("progress stage", &s)))
        .transpose()?
        .map(|stage| (stage, stage_percent.clamp(0, 100) as u8));
    Ok(Job {
        id,
        batch: row.try_get("batch").map_err(corrupt)?,
        input_key: BlobKey::parse(input_key.clone()).map_err(|_| parse_err("input key", &input_key))?,
        content_hash: row.try_get("content_hash").map_err(corrupt)?,
        external_id: row.try_get("external_id").map_err(corrupt)?,
        category: category
            .map(|c| c.parse::<Category>().map_err(|_| parse_err("category", &c)))
            .transpose()?,
        category_source: category_source
            .map(|s| match s.as_str() {
                "manifest" => Ok(CategorySource::Manifest),
                "classifier" => Ok(CategorySource::Classifier),
                _ => Err(parse_err("category source", &s)),
            })
            .transpose()?,
        size: size
            .map(|s| serde_json::from_value::<RealSize>(s.clone()).map_err(|_| parse_err("size", &s.to_string())))
            .transpose()?,
        model: row.try_get("model").map_err(corrupt)?,
        outputs: row.try_get("outputs").map_err(corrupt)?,
        quality: row.try_get("quality").map_err(corrupt)?,
        gate_scores: row.try_get("gate_scores").map_err(corrupt)?,
        state: state.parse().map_err(|_| parse_err("state", &state))?,
        attempts: row.try_get("attempts").map_err(corrupt)?,
        last_error: row.try_get("last_error").map_err(corrupt)?,
        created_at: row.try_get("created_at").map_err(corrupt)?,
        gated_at: row.try_get("gated_at").map_err(corrupt)?,
        classified_at: row.try_get("classified_at").map_err(corrupt)?,
        reconstructed_at: row.try_get("reconstructed_at").map_err(corrupt)?,
        done_at: row.try_get("done_at").map_err(corrupt)?,
        rejected_at: row.try_get("rejected_at").map_err(corrupt)?,
        failed_at: row.try_get("failed_at").map_err(corrupt)?,
        updated_at: row.try_get("updated_at").map_err(corrupt)?,
        stage_progress,
    })
}

fn event_from_row(row: &PgRow) -> Result<JobEvent> {
    let corrupt = |e: sqlx::Error| JobStoreError::Corrupt(e.to_string());
    let stage: Option<String> = row.try_get("stage").map_err(corrupt)?;
    Ok(JobEvent {
        id: row.try_get("id").map_err(corrupt)?,
        job_id: JobId(row.try_get("job_id").map_err(corrupt)?),
        stage: stage.map(|s| s.parse::<Stage>().map_err(JobStoreError::Corrupt)).transpose()?,
        event: row.try_get("event").map_err(corrupt)?,
        detail: row.try_get("detail").map_err(corrupt)?,
        at: row.try_get("at").map_err(corrupt)?,
    })
}

/// Handle to the job store; cheap to clone (it wraps a connection pool).
#[derive(Debug, Clone)]
pub struct JobStore {
    pool: PgPool,
}

impl JobStore {
    /// Connects now, failing if the database is unreachable.
    pub async fn connect(settings: &DatabaseSettings) -> Result<Self> {
        let pool = Self::pool_options(settings)
            .connect(settings.url.expose())
            .await
            .map_err(|e| JobStoreError::from_sqlx("connect", e))?;
        Ok(JobStore { pool })
    }

    /// One round trip (`SELECT 1`), for readiness probes.
    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await.map_err(|e| JobStoreError::from_sqlx("ping", e))?;
        Ok(())
    }

    /// A store whose connections are opened on first use, so a worker can start
    /// while the database is still down and recover when it comes back.
    pub fn connect_lazy(settings: &DatabaseSettings) -> Result<Self> {
        let pool = Self::pool_options(settings)
            .connect_lazy(settings.url.expose())
            .map_err(|e| JobStoreError::Query { context: "connect", message: e.to_string() })?;
        Ok(JobStore { pool })
    }

    fn pool_options(settings: &DatabaseSettings) -> PgPoolOptions {
        PgPoolOptions::new().max_connections(settings.max_connections).acquire_timeout(settings.acquire_timeout())
    }

    pub fn from_pool(pool: PgPool) -> Self {
        JobStore { pool }
    }

    pub(crate) fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Applies pending migrations (idempotent; safe to run from every worker).
    pub async fn migrate(&self) -> Result<()> {
        MIGRATOR.run(&self.pool).await.map_err(|e| JobStoreError::Migration(e.to_string()))
    }

    /// Submits a job, or returns the batch's existing job for the same content.
    /// Nothing is queued: see [`Self::submit_with_message`].
    pub async fn submit(&self, new: &NewJob) -> Result<Submission> {
        Ok(self.submit_inner(new, None).await?.submission)
    }

    /// [`Self::submit`], and for a new job, in the same transaction: its first stage
    /// `message` in the outbox (with the current span's trace context, as a publish
    /// would carry it) and its webhook, if any. The row is held by the caller for
    /// `hold` ([`QueuedSubmission::held`]) so it can publish it at once; a zero `hold`
    /// leaves it to the relays. An existing job gets nothing written.
    pub async fn submit_with_message(
        &self,
        new: &NewJob,
        message: &StageMessage,
        hold: Duration,
        webhook: Option<&str>,
    ) -> Result<QueuedSubmission> {
        if message.job_id != new.id {
            return Err(JobStoreError::Query {
                context: "submit",
                message: format!("message for job {} submitted with job {}", message.job_id, new.id),
            });
        }
        self.submit_inner(new, Some(Outgoing { message, hold, webhook })).await
    }

    async fn submit_inner(&self, new: &NewJob, outgoing: Option<Outgoing<'_>>) -> Result<QueuedSubmission> {
        let _timer = QueryTimer::start("submit");
        let sql_err = |context| move |e| JobStoreError::from_sqlx(context, e);
        let mut tx = self.pool.begin().await.map_err(sql_err("submit"))?;
        // DO UPDATE (a no-op) instead of DO NOTHING so RETURNING yields the existing id.
        let batch_id: i64 = sqlx::query(
            "INSERT INTO batches (name) VALUES ($1) ON CONFLICT (name) DO UPDATE SET name = EXCLUDED.name RETURNING id",
        )
        .bind(&new.batch)
        .fetch_one(&mut *tx)
        .await
        .and_then(|row| row.try_get(0))
        .map_err(sql_err("submit: batch"))?;
        let inserted = sqlx::query(
            "INSERT INTO jobs (id, batch_id, input_key, content_hash, external_id, category, category_source, size) \
             VALUES ($1, $2, $3, $4, $5, $6, CASE WHEN $6::text IS NULL THEN NULL ELSE 'manifest' END, $7) \
             ON CONFLICT (batch_id, content_hash) DO NOTHING RETURNING id",
        )
        .bind(new.id.0)
        .bind(batch_id)
        .bind(new.input_key.as_str())
        .bind(&new.content_hash)
        .bind(&new.external_id)
        .bind(new.category.map(|c| c.name()))
        .bind(new.size.map(|size| serde_json::json!(size)))
        .fetch_optional(&mut *tx)
        .await
        .map_err(sql_err("submit: job"))?;
        let created = inserted.is_some();
        if created {
            let detail = serde_json::json!({
                "input_key": new.input_key.as_str(),
                "content_hash": new.content_hash,
                "external_id": new.external_id,
                "category": new.category,
                "size": new.size,
            });
            sqlx::query("INSERT INTO job_events (job_id, stage, event, detail) VALUES ($1, NULL, 'submitted', $2)")
                .bind(new.id.0)
                .bind(detail)
                .execute(&mut *tx)
                .await
                .map_err(sql_err("submit: event"))?;
        }
        let mut held = None;
        if let (true, Some(out)) = (created, &outgoing) {
            let trace = crate::otel::TraceHeaders::current();
            held = Some(crate::store::outbox::insert(&mut *tx, out.message, &trace, out.hold).await?);
            if let Some(url) = out.webhook {
                crate::store::webhooks::register_in(&mut *tx, new.id, url).await?;
            }
        }
        tx.commit().await.map_err(sql_err("submit: commit"))?;
        let row = sqlx::query(concat!(job_select!(), " WHERE j.batch_id = $1 AND j.content_hash = $2"))
            .bind(batch_id)
            .bind(&new.content_hash)
            .fetch_one(&self.pool)
            .await
            .map_err(sql_err("submit: read back"))?;
        let submission = Submission { job: job_from_row(&row)?, created };
        // Nothing held for a zero hold: the row is the relays' from the start.
        let held = held.filter(|_| outgoing.as_ref().is_some_and(|o| !o.hold.is_zero()));
        Ok(QueuedSubmission { submission, held })
    }

    pub async fn find_job(&self, id: JobId) -> Result<Option<Job>> {
        let _timer = QueryTimer::start("find_job");
        let row = sqlx::query(concat!(job_select!(), " WHERE j.id = $1"))
            .bind(id.0)
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| JobStoreError::from_sqlx("get job", e))?;
        row.as_ref().map(job_from_row).transpose()
    }

    /// The job, or `JobStoreError::NotFound` (permanent: a message for an unknown job).
    pub async fn get_job(&self, id: JobId) -> Result<Job> {
        self.find_job(id).await?.ok_or(JobStoreError::NotFound(id))
    }

    /// Moves `id` to `to` if that is a legal forward step from its current state,
    /// applying `update` and appending a history event in the same statement.
    pub async fn advance(&self, id: JobId, stage: Option<Stage>, to: JobState, update: JobUpdate) -> Result<Transition> {
        self.advance_guarded(id, stage, to, update, allowed_predecessors(to)).await
    }

    /// [`Self::advance`], but only from one of `from` (and only where that is a legal
    /// step): the check and the move are one statement, so no other writer can slip in
    /// between. A job in another state is left alone (`Stale`, or `Duplicate` when it
    /// is in `to` already).
    pub async fn advance_from(
        &self,
        id: JobId,
        stage: Option<Stage>,
        from: &[JobState],
        to: JobState,
        update: JobUpdate,
    ) -> Result<Transition> {
        let allowed: Vec<String> =
            from.iter().filter(|state| state.can_move_to(to)).map(|state| state.name().to_string()).collect();
        self.advance_guarded(id, stage, to, update, allowed).await
    }

    async fn advance_guarded(
        &self,
        id: JobId,
        stage: Option<Stage>,
        to: JobState,
        update: JobUpdate,
        predecessors: Vec<String>,
    ) -> Result<Transition> {
        let _timer = QueryTimer::start("advance");
        let (category, category_source) = match update.category {
            Some((c, s)) => (Some(c.name()), Some(s.name())),
            None => (None, None),
        };
        let mut detail = update.detail.unwrap_or_else(|| serde_json::json!({}));
        if let (Some(error), Value::Object(map)) = (&update.error, &mut detail) {
            map.entry("error").or_insert_with(|| Value::String(error.clone()));
        }
        // The row lock makes `from_state` the state this update really replaced.
        // Data-modifying CTEs always run to completion, so the event is written iff
        // the guarded update matched, atomically with it.
        let applied = sqlx::query(
            "WITH old AS (SELECT id, state FROM jobs WHERE id = $1 FOR UPDATE), \
             moved AS ( \
               UPDATE jobs j SET state = $2, \
                 category = COALESCE($4, category), \
                 category_source = COALESCE($5, category_source), \
                 model = COALESCE($6, model), \
                 outputs = outputs || COALESCE($7::jsonb, '{}'::jsonb), \
                 gate_scores = COALESCE($8, gate_scores), \
                 quality = COALESCE($12::jsonb, quality), \
                 last_error = COALESCE($9, last_error), \
                 gated_at = CASE WHEN $2 = 'gated' THEN now() ELSE gated_at END, \
                 classified_at = CASE WHEN $2 = 'classified' THEN now() ELSE classified_at END, \
                 reconstructed_at = CASE WHEN $2 = 'reconstructed' THEN now() ELSE reconstructed_at END, \
                 done_at = CASE WHEN $2 = 'done' THEN now() ELSE done_at END, \
                 rejected_at = CASE WHEN $2 = 'rejected' THEN now() ELSE rejected_at END, \
                 failed_at = CASE WHEN $2 = 'failed' THEN now() ELSE failed_at END, \
                 sweeps = 0, swept_at = NULL, \
                 progress_stage = NULL, stage_progress = 0, \
                 updated_at = now() \
               FROM old \
               WHERE j.id = old.id AND j.state = ANY($3) \
               RETURNING old.state AS from_state, j.id \
             ), logged AS ( \
               INSERT INTO job_events (job_id, stage, event, detail) \
               SELECT id, $10, $2, $11 FROM moved \
             ) \
             SELECT from_state FROM moved",
        )
        .bind(id.0)
        .bind(to.name())
        .bind(predecessors)
        .bind(category)
        .bind(category_source)
        .bind(update.model)
        .bind(update.outputs)
        .bind(update.gate_scores)
        .bind(update.error)
        .bind(stage.map(Stage::name))
        .bind(detail)
        .bind(update.quality)
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| JobStoreError::from_sqlx("advance job", e))?;
        if let Some(row) = applied {
            let from: String = row.try_get("from_state").map_err(|e| JobStoreError::Corrupt(e.to_string()))?;
            let from = from.parse().map_err(JobStoreError::Corrupt)?;
            return Ok(Transition::Applied { from });
        }
        let current = self.get_job(id).await?.state;
        Ok(if current == to { Transition::Duplicate } else { Transition::Stale { current } })
    }

    /// Records that `stage` has done `percent` (0-100) of its work on `id`, while the job
    /// waits for that stage (a job that moved on, or ended, is left alone). Within one
    /// stage the figure only grows, so a slow duplicate delivery cannot set it back.
    /// Returns whether it was recorded.
    pub async fn report_progress(&self, id: JobId, stage: Stage, percent: u8) -> Result<bool> {
        let _timer = QueryTimer::start("report_progress");
        let done = sqlx::query(
            "UPDATE jobs SET \
               stage_progress = CASE WHEN progress_stage = $2 THEN GREATEST(stage_progress, $3) ELSE $3 END, \
               progress_stage = $2 \
             WHERE id = $1 AND state = ANY($4)",
        )
        .bind(id.0)
        .bind(stage.name())
        .bind(i16::from(percent.min(100)))
        .bind(allowed_predecessors(stage.success_state()))
        .execute(&self.pool)
        .await
        .map_err(|e| JobStoreError::from_sqlx("report progress", e))?;
        Ok(done.rows_affected() == 1)
    }

    /// Records a failed attempt of `stage` (the job keeps its state): increments the
    /// attempt counter, stores the error and appends a history event. Returns the
    /// attempt count.
    pub async fn record_failure(&self, id: JobId, stage: Stage, error: &StageError) -> Result<i32> {
        let _timer = QueryTimer::start("record_failure");
        let row = sqlx::query(
            "WITH bumped AS ( \
               UPDATE jobs SET attempts = attempts + 1, last_error = $2, updated_at = now() \
               WHERE id = $1 RETURNING id, attempts \
             ), logged AS ( \
               INSERT INTO job_events (job_id, stage, event, detail) \
               SELECT id, $3, 'attempt_failed', $4 FROM bumped \
             ) \
             SELECT attempts FROM bumped",
        )
        .bind(id.0)
        .bind(&error.reason)
        .bind(stage.name())
        .bind(serde_json::json!({ "class": error.class, "reason": error.reason }))
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| JobStoreError::from_sqlx("record failure", e))?
        .ok_or(JobStoreError::NotFound(id))?;
        row.try_get("attempts").map_err(|e| JobStoreError::Corrupt(e.to_string()))
    }

    /// Appends a free-form history event (e.g. `started`, `dead_lettered`).
    pub async fn append_event(&self, id: JobId, stage: Option<Stage>, event: &str, detail: Value) -> Result<()> {
        let _timer = QueryTimer::start("append_event");
        let result = sqlx::query("INSERT INTO job_events (job_id, stage, event, detail) VALUES ($1, $2, $3, $4)")
            .bind(id.0)
            .bind(stage.map(Stage::name))
            .bind(event)
            .bind(detail)
            .execute(&self.pool)
            .await;
        match result {
            Ok(_) => Ok(()),
            // 23503: foreign key violation, i.e. no such job.
            Err(sqlx::Error::Database(db)) if db.code().as_deref() == Some("23503") => Err(JobStoreError::NotFound(id)),
            Err(e) => Err(JobStoreError::from_sqlx("append event", e)),
        }
    }

    /// A job's history, oldest first.
    pub async fn events(&self, id: JobId) -> Result<Vec<JobEvent>> {
        let _timer = QueryTimer::start("events");
        let rows = sqlx::query("SELECT id, job_id, stage, event, detail, at FROM job_events WHERE job_id = $1 ORDER BY id")
            .bind(id.0)
            .fetch_all(&self.pool)
            .await
            .map_err(|e| JobStoreError::from_sqlx("job events", e))?;
        rows.iter().map(event_from_row).collect()
    }

    /// One page of a batch's jobs in submission order.
    pub async fn list_batch_jobs(&self, batch: &str, page: Page) -> Result<Vec<Job>> {
        let _timer = QueryTimer::start("list_batch_jobs");
        let rows = sqlx::query(concat!(
            job_select!(),
            " WHERE b.name = $1 AND ($2::uuid IS NULL OR j.id > $2) ORDER BY j.id LIMIT $3"
        ))
        .bind(batch)
        .bind(page.after.map(|id| id.0))
        .bind(i64::from(page.limit))
        .fetch_all(&self.pool)
        .await
        .map_err(|e| JobStoreError::from_sqlx("list batch jobs", e))?;
        rows.iter().map(job_from_row).collect()
    }

    /// The most recently submitted jobs, newest first.
    pub async fn recent_jobs(&self, limit: u32) -> Result<Vec<Job>> {
        let _timer = QueryTimer::start("recent_jobs");
        let rows = sqlx::query(concat!(job_select!(), " ORDER BY j.created_at DESC, j.id DESC LIMIT $1"))
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(|e| JobStoreError::from_sqlx("recent jobs", e))?;
        rows.iter().map(job_from_row).collect()
    }

    /// Job counts per state for one batch; `None` if there is no such batch.
    pub async fn batch_summary(&self, batch: &str) -> Result<Option<BatchSummary>> {
        Ok(self.summaries(Some(batch)).await?.into_iter().next())
    }

    /// Every batch with its job counts, newest batch first.
    pub async fn batches(&self) -> Result<Vec<BatchSummary>> {
        self.summaries(None).await
    }

    async fn summaries(&self, only: Option<&str>) -> Result<Vec<BatchSummary>> {
        let _timer = QueryTimer::start("summaries");
        let rows = sqlx::query(
            "SELECT b.name, b.created_at, j.state, count(j.id) AS n \
             FROM batches b LEFT JOIN jobs j ON j.batch_id = b.id \
             WHERE $1::text IS NULL OR b.name = $1 \
             GROUP BY b.id, b.name, b.created_at, j.state \
             ORDER BY b.created_at DESC, b.id DESC",
        )
        .bind(only)
        .fetch_all(&self.pool)
        .await
        .map_err(|e| JobStoreError::from_sqlx("batch counts", e))?;
        let corrupt = |e: sqlx::Error| JobStoreError::Corrupt(e.to_string());
        let mut out: Vec<BatchSummary> = Vec::new();
        for row in &rows {
            let name: String = row.try_get("name").map_err(corrupt)?;
            if out.last().is_none_or(|b| b.name != name) {
                out.push(BatchSummary {
                    name: name.clone(),
                    created_at: row.try_get("created_at").map_err(corrupt)?,
                    total: 0,
                    by_state: JobState::ALL.iter().map(|s| (*s, 0)).collect(),
                });
            }
            let state: Option<String> = row.try_get("state").map_err(corrupt)?;
            let n: i64 = row.try_get("n").map_err(corrupt)?;
            if let (Some(state), Some(summary)) = (state, out.last_mut()) {
                let state: JobState = state.parse().map_err(JobStoreError::Corrupt)?;
                summary.total += n;
                if let Some(slot) = summary.by_state.iter_mut().find(|(s, _)| *s == state) {
                    slot.1 += n;
                }
            }
        }
        Ok(out)
    }

    /// Per-stage throughput and latency of the jobs that completed a stage within
    /// the last `window`, plus rejections and failures in that window.
    pub async fn stats(&self, window: Duration) -> Result<StatsReport> {
        let _timer = QueryTimer::start("stats");
        let secs = window.as_secs_f64();
        let rows = sqlx::query(
            "WITH w AS (SELECT now() - make_interval(secs => $1) AS since), \
             spans AS ( \
               SELECT 'gate' AS stage, 0 AS ord, created_at AS began, gated_at AS ended FROM jobs \
               UNION ALL SELECT 'classify', 1, gated_at, classified_at FROM jobs \
               UNION ALL SELECT 'reconstruct', 2, classified_at, reconstructed_at FROM jobs \
               UNION ALL SELECT 'refine', 3, reconstructed_at, done_at FROM jobs \
             ) \
             SELECT stage, count(*) AS completed, \
               avg(extract(epoch FROM ended - began) * 1000)::float8 AS mean_ms, \
               percentile_cont(0.5) WITHIN GROUP (ORDER BY (extract(epoch FROM ended - began) * 1000)::float8) AS p50_ms, \
               percentile_cont(0.95) WITHIN GROUP (ORDER BY (extract(epoch FROM ended - began) * 1000)::float8) AS p95_ms \
             FROM spans, w WHERE ended IS NOT NULL AND ended >= w.since \
             GROUP BY stage, ord ORDER BY ord",
        )
        .bind(secs)
        .fetch_all(&self.pool)
        .await
        .map_err(|e| JobStoreError::from_sqlx("stage stats", e))?;
        let corrupt = |e: sqlx::Error| JobStoreError::Corrupt(e.to_string());
        let minutes = (secs / 60.0).max(f64::MIN_POSITIVE);
        let mut stages: Vec<StageStats> = Stage::ALL
            .iter()
            .map(|s| StageStats {
                stage: *s,
                completed: 0,
                per_minute: 0.0,
                latency_mean_ms: None,
                latency_p50_ms: None,
                latency_p95_ms: None,
            })
            .collect();
        for row in &rows {
            let stage: String = row.try_get("stage").map_err(corrupt)?;
            let stage: Stage = stage.parse().map_err(JobStoreError::Corrupt)?;
            if let Some(s) = stages.iter_mut().find(|s| s.stage == stage) {
                s.completed = row.try_get("completed").map_err(corrupt)?;
                s.per_minute = s.completed as f64 / minutes;
                s.latency_mean_ms = row.try_get("mean_ms").map_err(corrupt)?;
                s.latency_p50_ms = row.try_get("p50_ms").map_err(corrupt)?;
                s.latency_p95_ms = row.try_get("p95_ms").map_err(corrupt)?;
            }
        }
        let row = sqlx::query(
            "SELECT count(*) FILTER (WHERE rejected_at >= now() - make_interval(secs => $1)) AS rejected, \
                    count(*) FILTER (WHERE failed_at >= now() - make_interval(secs => $1)) AS failed, \
                    count(*) FILTER (WHERE needs_review AND done_at >= now() - make_interval(secs => $1)) AS needs_review \
             FROM jobs",
        )
        .bind(secs)
        .fetch_one(&self.pool)
        .await
        .map_err(|e| JobStoreError::from_sqlx("stage stats", e))?;
        Ok(StatsReport {
            window_secs: window.as_secs(),
            stages,
            rejected: row.try_get("rejected").map_err(corrupt)?,
            failed: row.try_get("failed").map_err(corrupt)?,
            needs_review: row.try_get("needs_review").map_err(corrupt)?,
        })
    }
}

impl JobStore {
    /// The batch's job for this content (a photo's SHA-256), if any.
    pub async fn find_by_content(&self, batch: &str, content_hash: &str) -> Result<Option<Job>> {
        let _timer = QueryTimer::start("find_by_content");
        let row = sqlx::query(concat!(job_select!(), " WHERE b.name = $1 AND j.content_hash = $2"))
            .bind(batch)
            .bind(content_hash)
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| JobStoreError::from_sqlx("find job by content", e))?;
        row.as_ref().map(job_from_row).transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn predecessors_follow_the_core_state_machine() {
        let of = |s| allowed_predecessors(s);
        assert_eq!(of(JobState::Gated), vec!["submitted"]);
        assert_eq!(of(JobState::Done), vec!["submitted", "gated", "classified", "reconstructed"]);
        assert!(of(JobState::Submitted).is_empty());
        for terminal in ["done", "rejected", "failed"] {
            assert!(!of(JobState::Rejected).contains(&terminal.to_string()));
        }
    }
}
