//! `Idempotency-Key` for job creation: the first request with a key records the job it
//! created (or found); a retry with the same key and the same request gets that job
//! again, a different request with the same key is refused.

use mono2mesh_core::JobId;
use mono2mesh_infra::jobs::{JobStore, JobStoreError};
use sha2::{Digest, Sha256};
use sqlx::Row;

/// Longest key accepted (the IETF draft suggests UUIDs; we allow any short token).
pub const MAX_KEY_LEN: usize = 255;

/// What a stored key says about a new request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup {
    /// Never seen: go ahead and remember the result.
    New,
    /// Same key, same request: answer with this job.
    Replay(JobId),
    /// Same key, different request.
    Conflict,
}

pub fn valid_key(key: &str) -> bool {
    !key.is_empty() && key.len() <= MAX_KEY_LEN && key.bytes().all(|b| b.is_ascii_graphic())
}

/// A fingerprint of what a request asks for, from its parts.
pub fn fingerprint(parts: &[&str]) -> String {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update((part.len() as u64).to_le_bytes());
        hasher.update(part.as_bytes());
    }
    hex::encode(hasher.finalize())
}

fn query_error(context: &'static str) -> impl Fn(sqlx::Error) -> JobStoreError {
    move |e| JobStoreError::Query { context, message: e.to_string() }
}

pub async fn lookup(jobs: &JobStore, key: &str, fingerprint: &str) -> Result<Lookup, JobStoreError> {
    let row = sqlx::query("SELECT fingerprint, job_id FROM api_idempotency_keys WHERE key = $1")
        .bind(key)
        .fetch_optional(jobs.pool())
        .await
        .map_err(query_error("idempotency lookup"))?;
    let Some(row) = row else { return Ok(Lookup::New) };
    let corrupt = |e: sqlx::Error| JobStoreError::Corrupt(e.to_string());
    let stored: String = row.try_get("fingerprint").map_err(corrupt)?;
    let job: uuid::Uuid = row.try_get("job_id").map_err(corrupt)?;
    Ok(if stored == fingerprint { Lookup::Replay(JobId(job)) } else { Lookup::Conflict })
}

/// Remembers `key` -> `job`. When a concurrent request stored the key first, the
/// stored entry wins and is returned as a lookup result.
pub async fn remember(jobs: &JobStore, key: &str, fingerprint: &str, job: JobId) -> Result<Lookup, JobStoreError> {
    let inserted = sqlx::query(
        "INSERT INTO api_idempotency_keys (key, fingerprint, job_id) VALUES ($1, $2, $3) ON CONFLICT (key) DO NOTHING",
    )
    .bind(key)
    .bind(fingerprint)
    .bind(job.0)
    .execute(jobs.pool())
    .await
    .map_err(query_error("idempotency insert"))?;
    if inserted.rows_affected() == 1 {
        Ok(Lookup::Replay(job))
    } else {
        lookup(jobs, key, fingerprint).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_fingerprints() {
        assert!(valid_key("3f1c2a9e-req-1"));
        assert!(!valid_key(""));
        assert!(!valid_key("has space"));
        assert!(!valid_key(&"k".repeat(256)));
        // Length prefixes keep ("ab", "c") and ("a", "bc") apart.
        assert_ne!(fingerprint(&["ab", "c"]), fingerprint(&["a", "bc"]));
        assert_eq!(fingerprint(&["a", "b"]), fingerprint(&["a", "b"]));
    }
}
