//! The outbox relay: publishes the stage messages waiting in the outbox
//! ([`crate::store::outbox`]) with publisher confirms, then deletes each row together
//! with appending its job's `published` event.
//!
//! Who publishes what: a submission publishes its own row at once (it holds the row
//! from the insert, `mono2mesh_api::ingest`); `mono2mesh submit` relays what its batch
//! left behind before it exits; `mono2mesh serve` and the gate worker run
//! [`run_outbox_relay`] for the rest (a broker outage, a crash between insert and
//! publish).
//!
//! Delivery is at least once. A relay that dies, or whose store call fails, after the
//! broker's confirm and before the delete leaves the row to be published again when its
//! lease ends; the stages tolerate that (handlers are idempotent, and a second gate
//! message for a gated job is acknowledged as stale). In the normal path the lease keeps
//! each row to one publisher, and a publish is cut off well before its lease ends.

use crate::jobs::{JobStore, JobStoreError};
use crate::otel::continue_trace;
use crate::queue::{MessageQueue, QueueError};
use crate::store::{OutboxEntry, OutboxScope};
use crate::telemetry::names;
use mono2mesh_core::{JobId, Stage};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tracing::{info, warn, Instrument};

/// How long a relay waits for one broker confirm before giving the row back. The
/// queue rides out a reconnection for minutes; a relay would rather try again later.
pub const DEFAULT_PUBLISH_TIMEOUT: Duration = Duration::from_secs(10);
/// The pause between passes of [`run_outbox_relay`] when nothing fails: rows only
/// wait for a relay after a broker outage or a crash, so a second is prompt enough.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(1);
/// Rows claimed per pass.
pub const DEFAULT_BATCH: usize = 64;
/// The longest pause between passes after repeated failures, and the longest back-off
/// of one row.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("publishing job {job}'s {stage} message: {source}")]
    Publish { job: JobId, stage: Stage, source: QueueError },
    #[error("publishing job {job}'s {stage} message: no broker confirm within {after:?}")]
    Timeout { job: JobId, stage: Stage, after: Duration },
    /// The broker has the message, but the store did not record it: the row is
    /// published again when its lease ends.
    #[error("job {job}'s message was published but not recorded: {source}")]
    Record { job: JobId, source: JobStoreError },
    #[error(transparent)]
    Jobs(#[from] JobStoreError),
}

impl RelayError {
    /// The broker confirmed the message despite the error.
    pub fn published(&self) -> bool {
        matches!(self, RelayError::Record { .. })
    }
}

/// Who publishes a row: its submitter, right after the insert, or a relay later.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    Submit,
    Relay,
}

impl Via {
    pub fn name(self) -> &'static str {
        match self {
            Via::Submit => "submit",
            Via::Relay => "relay",
        }
    }
}

/// Publishes outbox rows. Cheap to clone.
#[derive(Clone)]
pub struct OutboxRelay {
    jobs: JobStore,
    queue: Arc<dyn MessageQueue>,
    publish_timeout: Duration,
}

impl OutboxRelay {
    pub fn new(jobs: JobStore, queue: Arc<dyn MessageQueue>) -> OutboxRelay {
        OutboxRelay { jobs, queue, publish_timeout: DEFAULT_PUBLISH_TIMEOUT }
    }

    /// Waits at most `timeout` for each broker confirm (at least 10 ms).
    pub fn with_publish_timeout(mut self, timeout: Duration) -> OutboxRelay {
        self.publish_timeout = timeout.max(Duration::from_millis(10));
        self
    }

    /// How long a claim keeps a row from other relays: well past the publish's
    /// time-out, so only a relay that died (or stalled in the store) loses its rows.
    pub fn lease(&self) -> Duration {
        self.publish_timeout * 3 + Duration::from_secs(30)
    }

    /// One pass over every due row (at most `limit`): the number published. Stops at
    /// the first failure (the broker is likely down for the rest too), giving the
    /// untried rows back, and returns that error.
    pub async fn relay_pending(&self, limit: usize) -> Result<usize, RelayError> {
        self.relay(OutboxScope::All, limit).await
    }

    /// [`Self::relay_pending`] over the rows of one batch's jobs.
    pub async fn relay_batch(&self, batch: &str, limit: usize) -> Result<usize, RelayError> {
        self.relay(OutboxScope::Batch(batch), limit).await
    }

    /// [`Self::relay_pending`] over one job's rows.
    pub async fn relay_job(&self, job: JobId) -> Result<usize, RelayError> {
        self.relay(OutboxScope::Job(job), DEFAULT_BATCH).await
    }

    async fn relay(&self, scope: OutboxScope<'_>, limit: usize) -> Result<usize, RelayError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let claimed = self.jobs.outbox().claim_due(scope, limit, self.lease()).await?;
        let mut published = 0;
        for (index, entry) in claimed.iter().enumerate() {
            if let Err(error) = self.publish(entry, Via::Relay).await {
                let untried: Vec<i64> = claimed[index + 1..].iter().map(|e| e.id).collect();
                if let Err(e) = self.jobs.outbox().unclaim(&untried).await {
                    warn!(error = %e, rows = untried.len(), "cannot give untried outbox rows back; they wait for their lease");
                }
                return Err(error);
            }
            published += 1;
        }
        Ok(published)
    }

    /// Publishes one row taken by a claim or held from its insert, then deletes it with
    /// its job's `published` event. A failed publish gives the row back: at once when
    /// `via` is the submitter (a relay may have a working connection), after a back-off
    /// growing with its attempts when it is a relay.
    pub async fn publish(&self, entry: &OutboxEntry, via: Via) -> Result<(), RelayError> {
        let message = &entry.message;
        let (job, stage) = (message.job_id, message.stage);
        let confirm = tokio::time::timeout(self.publish_timeout, self.queue.publish(message));
        let outcome = match via {
            // The submission's own span is current: the message carries it, as before.
            Via::Submit => confirm.await,
            Via::Relay => {
                let span = tracing::info_span!(
                    "outbox_publish",
                    otel.name = "outbox publish",
                    otel.kind = "producer",
                    job_id = %job,
                    stage = %stage,
                    attempt = entry.attempt,
                );
                continue_trace(&span, &entry.trace);
                confirm.instrument(span).await
            }
        };
        let failure = match outcome {
            Ok(Ok(())) => None,
            Ok(Err(source)) => Some(RelayError::Publish { job, stage, source }),
            Err(_) => Some(RelayError::Timeout { job, stage, after: self.publish_timeout }),
        };
        if let Some(error) = failure {
            metrics::counter!(names::OUTBOX_PUBLISH_FAILURES, "via" => via.name()).increment(1);
            let retry_in = match via {
                Via::Submit => Duration::ZERO,
                Via::Relay => retry_delay(entry.attempt),
            };
            if let Err(e) = self.jobs.outbox().release(entry.id, &error.to_string(), retry_in).await {
                warn!(%job, error = %e, "cannot give the outbox row back; it waits for its lease");
            }
            return Err(error);
        }
        metrics::counter!(names::OUTBOX_PUBLISHED, "via" => via.name()).increment(1);
        let detail = serde_json::json!({ "stage": stage, "attempt": entry.attempt, "via": via.name() });
        match self.jobs.outbox().mark_published(entry, detail).await {
            Ok(true) => Ok(()),
            Ok(false) => {
                // Our lease ran out mid-publish and another relay published it too.
                warn!(%job, %stage, "outbox row was published by another relay as well");
                Ok(())
            }
            Err(source) => Err(RelayError::Record { job, source }),
        }
    }

    /// Relays until `shutdown` completes: a pass every `interval`, at once again after
    /// a full pass, and with a back-off doubling up to a minute while passes fail.
    pub async fn run(self, interval: Duration, shutdown: impl Future<Output = ()>) {
        let interval = interval.max(Duration::from_millis(10));
        info!(interval = ?interval, publish_timeout = ?self.publish_timeout, "outbox relay running");
        tokio::pin!(shutdown);
        let mut failures = 0u32;
        loop {
            let pause = match self.relay_pending(DEFAULT_BATCH).await {
                Ok(published) => {
                    if failures > 0 {
                        info!(after_failures = failures, "outbox relay recovered");
                    }
                    failures = 0;
                    if published > 0 {
                        info!(published, "outbox messages published");
                    }
                    if published == DEFAULT_BATCH {
                        Duration::ZERO
                    } else {
                        interval
                    }
                }
                Err(error) => {
                    failures = failures.saturating_add(1);
                    let pause = backoff(interval, failures);
                    warn!(%error, retry_in = ?pause, "outbox relay pass failed; backing off");
                    pause
                }
            };
            match self.jobs.outbox().pending_count(None).await {
                Ok(n) => metrics::gauge!(names::OUTBOX_PENDING).set(n as f64),
                Err(e) => warn!(error = %e, "cannot count the outbox"),
            }
            tokio::select! {
                biased;
                _ = &mut shutdown => break,
                _ = tokio::time::sleep(pause) => {}
            }
        }
        info!("outbox relay stopped");
    }
}

/// Runs an [`OutboxRelay`] over `jobs` and `queue` until `shutdown` completes (see
/// [`OutboxRelay::run`]).
pub async fn run_outbox_relay(
    jobs: JobStore,
    queue: Arc<dyn MessageQueue>,
    interval: Duration,
    shutdown: impl Future<Output = ()>,
) {
    OutboxRelay::new(jobs, queue).run(interval, shutdown).await
}

/// A row's back-off after its `attempt`-th failed publish (1-based) by a relay: 1 s,
/// doubling, at most [`MAX_BACKOFF`].
pub fn retry_delay(attempt: i32) -> Duration {
    let doublings = u32::try_from(attempt.saturating_sub(1)).unwrap_or(0).min(16);
    (Duration::from_secs(1) * 2u32.pow(doublings)).min(MAX_BACKOFF)
}

/// The pause after `failures` failed passes in a row: `interval` (at least a second),
/// doubling, at most [`MAX_BACKOFF`].
fn backoff(interval: Duration, failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(16);
    (interval.max(Duration::from_secs(1)) * 2u32.pow(doublings)).min(MAX_BACKOFF)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn back_off_doubles_and_is_capped() {
        let secs = |d: Duration| d.as_secs_f64();
        assert_eq!([1, 2, 3, 7, 40].map(|a| secs(retry_delay(a))), [1.0, 2.0, 4.0, 60.0, 60.0]);
        assert_eq!(secs(retry_delay(0)), 1.0, "a row never claimed backs off like a first failure");
        let ms = Duration::from_millis(200);
        assert_eq!([1, 2, 4, 30].map(|f| secs(backoff(ms, f))), [1.0, 2.0, 8.0, 60.0]);
        assert_eq!(secs(backoff(Duration::from_secs(5), 2)), 10.0);
    }
}
