//! The rest of the service's SQL, next to the job store: idempotency keys of the HTTP
//! API, the webhook outbox, the outbox of stage messages, and the operations queries behind `mono2mesh stats`.
//!
//! Every query of the service lives in this crate (`jobs` and this module), so there
//! is one place that maps database errors ([`JobStoreError::from_sqlx`]): connection
//! loss and pool time-outs are `Unavailable` (a worker retries, the API answers 503
//! with `Retry-After`), constraint violations are `Constraint` (the caller's error),
//! and the API crate does not depend on sqlx at all.
//!
//! Each concern is a small handle borrowed from the [`JobStore`]'s pool
//! (`jobs.webhooks()`, `jobs.idempotency_keys()`, `jobs.outbox()`, `jobs.ops()`), so the job store's
//! own surface stays the jobs' life cycle.

pub mod idempotency;
pub mod ops;
pub mod recovery;
pub mod outbox;
pub mod webhooks;

use crate::jobs::{JobStore, JobStoreError};
use sqlx::postgres::{PgPool, PgRow};
use sqlx::Row;

pub use idempotency::{IdempotencyKeys, KeyLookup};
pub use ops::{OpsQueries, RejectReason, StageFailures};
pub use recovery::{RecoveryQueries, StuckJob};
pub use outbox::{Outbox, OutboxEntry, OutboxScope, PendingMessage, PUBLISHED_EVENT};
pub use webhooks::{ClaimedDelivery, DeliveryOutcome, DeliveryState, WebhookDeliveries};

/// One column of a row, or `Corrupt` naming it: the one row-mapping step every query
/// here shares.
pub(crate) fn column<'r, T>(row: &'r PgRow, name: &str) -> Result<T, JobStoreError>
where
    T: sqlx::Decode<'r, sqlx::Postgres> + sqlx::Type<sqlx::Postgres>,
{
    row.try_get(name).map_err(|e| JobStoreError::Corrupt(format!("column {name}: {e}")))
}

impl JobStore {
    /// The `Idempotency-Key` records of job creation.
    pub fn idempotency_keys(&self) -> IdempotencyKeys<'_> {
        IdempotencyKeys { pool: self.pool() }
    }

    /// The webhook outbox: one row per job that asked to be notified.
    pub fn webhooks(&self) -> WebhookDeliveries<'_> {
        WebhookDeliveries { pool: self.pool() }
    }

    /// The outbox of stage messages: published by relays (`crate::outbox`).
    pub fn outbox(&self) -> Outbox<'_> {
        Outbox { pool: self.pool() }
    }

    /// Read-only operations queries (reject reasons, failed attempts).
    pub fn ops(&self) -> OpsQueries<'_> {
        OpsQueries { pool: self.pool() }
    }

    /// Stage runs and the sweeper's claims (see `crate::recovery`).
    pub fn recovery(&self) -> RecoveryQueries<'_> {
        RecoveryQueries { pool: self.pool() }
    }

    /// Closes the pool: in-flight queries finish, new ones fail (`Unavailable`).
    pub async fn close(&self) {
        self.pool().close().await;
    }
}

/// A pool borrowed by one of the handles above.
pub(crate) type Pool<'a> = &'a PgPool;
