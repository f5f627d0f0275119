//! Operations queries behind `mono2mesh stats`, `GET /v1/stats` and the status page,
//! beside the per-stage report of [`crate::jobs::JobStore::stats`].

use super::{column, Pool};
use crate::jobs::{JobStoreError, QueryTimer};
use mono2mesh_core::Stage;
use serde::Serialize;
use std::time::Duration;

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RejectReason {
    /// The reason with its numbers masked as `N` ("blurry: Laplacian variance N is
    /// below N"), so rejections of one kind count together whatever their scores.
    pub reason: String,
    pub jobs: i64,
    /// One full reason of this kind, numbers and all.
    pub example: String,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct StageFailures {
    pub stage: Stage,
    /// Attempts that failed and were retried or given up, in the window.
    pub failed_attempts: i64,
}

/// Read-only queries over jobs and their history; from [`crate::jobs::JobStore::ops`].
#[derive(Debug, Clone, Copy)]
pub struct OpsQueries<'a> {
    pub(super) pool: Pool<'a>,
}

impl OpsQueries<'_> {
    /// The `limit` most frequent reasons of jobs rejected within `window`, most
    /// frequent first.
    pub async fn reject_reasons(&self, window: Duration, limit: i64) -> Result<Vec<RejectReason>, JobStoreError> {
        let _timer = QueryTimer::start("reject_reasons");
        let rows = sqlx::query(
            "SELECT regexp_replace(COALESCE(last_error, '(no reason recorded)'), '[0-9]+([.][0-9]+)?', 'N', 'g') AS reason, \
                    count(*) AS jobs, min(COALESCE(last_error, '(no reason recorded)')) AS example FROM jobs \
             WHERE rejected_at >= now() - make_interval(secs => $1) \
             GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT $2",
        )
        .bind(window.as_secs_f64())
        .bind(limit)
        .fetch_all(self.pool)
        .await
        .map_err(|e| JobStoreError::from_sqlx("reject reasons", e))?;
        rows.iter()
            .map(|row| {
                Ok(RejectReason { reason: column(row, "reason")?, jobs: column(row, "jobs")?, example: column(row, "example")? })
            })
            .collect()
    }

    /// Failed attempts per stage within `window`, every stage listed (zeros included).
    pub async fn failed_attempts(&self, window: Duration) -> Result<Vec<StageFailures>, JobStoreError> {
        let _timer = QueryTimer::start("failed_attempts");
        let rows = sqlx::query(
            "SELECT stage, count(*) AS n FROM job_events \
             WHERE event = 'attempt_failed' AND at >= now() - make_interval(secs => $1) AND stage IS NOT NULL \
             GROUP BY stage",
        )
        .bind(window.as_secs_f64())
        .fetch_all(self.pool)
        .await
        .map_err(|e| JobStoreError::from_sqlx("failed attempts", e))?;
        let mut failures: Vec<StageFailures> =
            Stage::ALL.iter().map(|s| StageFailures { stage: *s, failed_attempts: 0 }).collect();
        for row in &rows {
            let stage: String = column(row, "stage")?;
            let n: i64 = column(row, "n")?;
            if let Some(slot) = failures.iter_mut().find(|f| f.stage.name() == stage) {
                slot.failed_attempts = n;
            }
        }
        Ok(failures)
    }
}
