//! The SQL behind recovery (see `crate::recovery` and the runtime): stage runs that
//! were started but never settled (the worker died handling them), and the sweeper's
//! claims on jobs that waited for a stage past its deadline.

use super::{column, Pool};
use crate::jobs::{JobStoreError, QueryTimer};
use mono2mesh_core::{Category, JobId, Stage};
use std::time::Duration;

/// A job the sweeper claimed: it has waited for a stage longer than the deadline.
#[derive(Debug, Clone, PartialEq)]
pub struct StuckJob {
    pub id: JobId,
    pub category: Option<Category>,
    /// Sweeps of this job in its current state, this one included.
    pub sweeps: u32,
}

/// Recovery queries; from [`crate::jobs::JobStore::recovery`].
#[derive(Debug, Clone, Copy)]
pub struct RecoveryQueries<'a> {
    pub(super) pool: Pool<'a>,
}

impl RecoveryQueries<'_> {
    /// Records that `stage` starts on job `id`; returns how many earlier starts of it
    /// were never settled, i.e. how often a worker died while handling it.
    pub async fn start_run(&self, id: JobId, stage: Stage) -> Result<u32, JobStoreError> {
        let _timer = QueryTimer::start("start_run");
        let row = sqlx::query(
            "INSERT INTO stage_runs (job_id, stage, started) VALUES ($1, $2, 1) \
             ON CONFLICT (job_id, stage) DO UPDATE \
               SET started = stage_runs.started + 1, last_started_at = now() \
             RETURNING started - settled - 1 AS unsettled",
        )
        .bind(id.0)
        .bind(stage.name())
        .fetch_one(self.pool)
        .await
        .map_err(|e| JobStoreError::from_sqlx("start stage run", e))?;
        let unsettled: i32 = column(&row, "unsettled")?;
        Ok(unsettled.max(0) as u32)
    }

    /// Records that a start of `stage` on `id` ended (whatever the outcome).
    pub async fn settle_run(&self, id: JobId, stage: Stage) -> Result<(), JobStoreError> {
        let _timer = QueryTimer::start("settle_run");
        sqlx::query("UPDATE stage_runs SET settled = LEAST(settled + 1, started) WHERE job_id = $1 AND stage = $2")
            .bind(id.0)
            .bind(stage.name())
            .execute(self.pool)
            .await
            .map_err(|e| JobStoreError::from_sqlx("settle stage run", e))?;
        Ok(())
    }

    /// Claims up to `limit` jobs waiting for `stage` (of `categories`, when given) that
    /// have not moved, nor been swept, for `older_than`. Each claim bumps the job's sweep
    /// count and time in the same statement, and rows locked by another sweeper are
    /// skipped, so concurrent sweepers never claim a job twice in one period.
    pub async fn claim_stuck(
        &self,
        stage: Stage,
        categories: Option<&[Category]>,
        older_than: Duration,
        limit: u32,
    ) -> Result<Vec<StuckJob>, JobStoreError> {
        let _timer = QueryTimer::start("claim_stuck");
        let categories: Option<Vec<&str>> = categories.map(|c| c.iter().map(|c| c.name()).collect());
        let rows = sqlx::query(
            "WITH stuck AS ( \
               SELECT id FROM jobs \
               WHERE state = $1 AND ($2::text[] IS NULL OR category = ANY($2)) \
                 AND GREATEST(updated_at, COALESCE(swept_at, updated_at)) < now() - make_interval(secs => $3) \
               ORDER BY updated_at LIMIT $4 FOR UPDATE SKIP LOCKED \
             ) \
             UPDATE jobs j SET sweeps = j.sweeps + 1, swept_at = now() FROM stuck WHERE j.id = stuck.id \
             RETURNING j.id, j.category, j.sweeps",
        )
        .bind(stage.waiting_state().name())
        .bind(categories)
        .bind(older_than.as_secs_f64())
        .bind(i64::from(limit))
        .fetch_all(self.pool)
        .await
        .map_err(|e| JobStoreError::from_sqlx("claim stuck jobs", e))?;
        rows.iter()
            .map(|row| {
                let category: Option<String> = column(row, "category")?;
                let sweeps: i32 = column(row, "sweeps")?;
                Ok(StuckJob {
                    id: JobId(column(row, "id")?),
                    category: category
                        .map(|c| c.parse::<Category>().map_err(|_| JobStoreError::Corrupt(format!("bad category {c:?}"))))
                        .transpose()?,
                    sweeps: sweeps.max(0) as u32,
                })
            })
            .collect()
    }
}
