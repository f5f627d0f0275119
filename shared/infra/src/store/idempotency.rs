//! `Idempotency-Key` records of `POST /v1/jobs`: the first request with a key records
//! the job it created (or found) with a fingerprint of what it asked for.

use super::{column, Pool};
use crate::jobs::{JobStoreError, QueryTimer};
use mono2mesh_core::JobId;

/// What a stored key says about a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyLookup {
    /// Never seen: go ahead and remember the result.
    New,
    /// Same key, same request: answer with this job.
    Replay(JobId),
    /// Same key, different request.
    Conflict,
}

/// Handle on `api_idempotency_keys`; from [`crate::jobs::JobStore::idempotency_keys`].
#[derive(Debug, Clone, Copy)]
pub struct IdempotencyKeys<'a> {
    pub(super) pool: Pool<'a>,
}

impl IdempotencyKeys<'_> {
    /// What `key` says about a request with `fingerprint`.
    pub async fn lookup(&self, key: &str, fingerprint: &str) -> Result<KeyLookup, JobStoreError> {
        let _timer = QueryTimer::start("idempotency_lookup");
        let row = sqlx::query("SELECT fingerprint, job_id FROM api_idempotency_keys WHERE key = $1")
            .bind(key)
            .fetch_optional(self.pool)
            .await
            .map_err(|e| JobStoreError::from_sqlx("idempotency lookup", e))?;
        let Some(row) = row else { return Ok(KeyLookup::New) };
        let stored: String = column(&row, "fingerprint")?;
        let job: uuid::Uuid = column(&row, "job_id")?;
        Ok(if stored == fingerprint { KeyLookup::Replay(JobId(job)) } else { KeyLookup::Conflict })
    }

    /// Remembers `key` -> `job`. When a concurrent request stored the key first, the
    /// stored entry wins and is returned as a lookup result.
    pub async fn remember(&self, key: &str, fingerprint: &str, job: JobId) -> Result<KeyLookup, JobStoreError> {
        let _timer = QueryTimer::start("idempotency_remember");
        let inserted = sqlx::query(
            "INSERT INTO api_idempotency_keys (key, fingerprint, job_id) VALUES ($1, $2, $3) ON CONFLICT (key) DO NOTHING",
        )
        .bind(key)
        .bind(fingerprint)
        .bind(job.0)
        .execute(self.pool)
        .await
        .map_err(|e| JobStoreError::from_sqlx("idempotency insert", e))?;
        if inserted.rows_affected() == 1 {
            Ok(KeyLookup::Replay(job))
        } else {
            self.lookup(key, fingerprint).await
        }
    }
}
