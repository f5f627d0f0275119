//! Work queues between the stages, with the backend chosen at run time: RabbitMQ for
//! the distributed deployment, an in-memory queue with the same delivery semantics for
//! tests and the embedded single-process mode.
//!
//! Delivery semantics both backends share (at-least-once):
//! - `publish` returns only once the message is safely stored (broker confirm).
//! - A delivery stays owned by its consumer until it is settled exactly once:
//!   `ack` (done), `retry_later` (back-off tier, then back onto its lane),
//!   `dead_letter` (to the stage's dead-letter queue with a reason) or `requeue`
//!   (give it back untouched, e.g. on shutdown).
//! - A delivery that is never settled (consumer crashed, connection dropped) goes back to
//!   its lane with its delivery count raised; past the delivery limit it is
//!   dead-lettered with reason `delivery_limit`, so a message that kills its consumer
//!   cannot loop forever.
//! - Every publish (retries and dead letters included) carries the W3C trace context of
//!   the current span, and a delivery hands it back ([`Delivery::trace`]).

pub mod memory;
pub mod rabbitmq;
pub mod topology;

use async_trait::async_trait;
use mono2mesh_core::{Stage, StageMessage};
use std::sync::Arc;
use std::time::Duration;

use crate::config::{QueueBackend, QueueSettings};
use crate::otel::TraceHeaders;
pub use memory::MemoryQueue;
pub use rabbitmq::RabbitQueue;
pub use topology::{Lane, Topology};

/// Header names this crate puts on messages (RabbitMQ backend).
pub mod headers {
    /// Why a message was dead-lettered or sent for a retry.
    pub const REASON: &str = "x-mono2mesh-reason";
    /// The lane a dead letter came from (its routing key).
    pub const LANE: &str = "x-mono2mesh-lane";
    /// Unix milliseconds at publish, for queue-wait metrics.
    pub const ENQUEUED_AT: &str = "x-enqueued-at";
    /// W3C trace context of the publishing span (see [`crate::otel`]).
    pub use crate::otel::{TRACEPARENT, TRACESTATE};
}

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("job {job}: reconstruct message without a category cannot be routed")]
    MissingCategory { job: String },
    #[error("invalid queue topology: {0}")]
    InvalidTopology(String),
    #[error("message for lane {lane} was not routed to any queue (topology not declared?)")]
    Unroutable { lane: String },
    #[error("broker refused (nacked) the message for lane {lane}")]
    Nacked { lane: String },
    #[error("cannot connect to RabbitMQ at {url}: {source}")]
    Connect { url: String, source: lapin::Error },
    #[error("RabbitMQ: {0}")]
    Broker(#[from] lapin::Error),
    #[error("queue is closed")]
    Closed,
    #[error("lost RabbitMQ at {url}: no reconnection succeeded in {after:?}")]
    Lost { url: String, after: std::time::Duration },
}

/// A dead-lettered message, as an operator (or a test) sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetter {
    /// The lane the message was taken from, when known.
    pub lane: Option<Lane>,
    pub body: Vec<u8>,
    /// Our reason, or the broker's (`delivery_limit`, `rejected`, ...).
    pub reason: String,
}

/// Dead letters taken from a stage's dead-letter queue but not yet removed from it:
/// [`DeadLetterLease::ack`] removes them once they are dealt with; `release` (or
/// dropping the lease, or the process dying) leaves them in the queue, so a consumer
/// that crashes half-way loses none.
pub struct DeadLetterLease {
    pub letters: Vec<DeadLetter>,
    settle: Option<Box<dyn SettleLease>>,
}

impl DeadLetterLease {
    pub(crate) fn new(letters: Vec<DeadLetter>, settle: Box<dyn SettleLease>) -> Self {
        DeadLetterLease { letters, settle: Some(settle) }
    }

    /// Removes the letters from the queue for good.
    pub async fn ack(mut self) -> Result<(), QueueError> {
        match self.settle.take() {
            Some(settle) => settle.ack().await,
            None => Ok(()),
        }
    }

    /// Puts the letters back, to be taken again later.
    pub async fn release(mut self) -> Result<(), QueueError> {
        match self.settle.take() {
            Some(settle) => settle.release().await,
            None => Ok(()),
        }
    }
}

impl Drop for DeadLetterLease {
    fn drop(&mut self) {
        if let Some(settle) = self.settle.take() {
            settle.release_on_drop();
        }
    }
}

/// How a lease of dead letters is settled; one implementation per backend.
#[async_trait]
pub(crate) trait SettleLease: Send {
    async fn ack(self: Box<Self>) -> Result<(), QueueError>;
    async fn release(self: Box<Self>) -> Result<(), QueueError>;
    /// A lease dropped unsettled: give the letters back without waiting.
    fn release_on_drop(self: Box<Self>);
}

/// How a delivery is settled; one implementation per backend.
#[async_trait]
pub(crate) trait Settle: Send {
    async fn ack(self: Box<Self>) -> Result<(), QueueError>;
    /// Publishes `body` to the back-off tier for `next_attempt`, then acks the original.
    /// Returns the back-off delay.
    async fn retry_later(
        self: Box<Self>,
        lane: Lane,
        body: Vec<u8>,
        next_attempt: u32,
        reason: String,
    ) -> Result<Duration, QueueError>;
    /// Publishes the original body to the stage's dead-letter queue with `reason`, then
    /// acks the original.
    async fn dead_letter(self: Box<Self>, lane: Lane, body: Vec<u8>, reason: String) -> Result<(), QueueError>;
    async fn requeue(self: Box<Self>) -> Result<(), QueueError>;
}

/// One message handed to a consumer. Settle it exactly once (the methods consume it).
pub struct Delivery {
    lane: Lane,
    body: Vec<u8>,
    redelivered: bool,
    delivery_count: u32,
    trace: TraceHeaders,
    /// Unix milliseconds at publish (a retry's publish, for a retried message).
    enqueued_at_ms: Option<u64>,
    settle: Box<dyn Settle>,
}

impl std::fmt::Debug for Delivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Delivery")
            .field("lane", &self.lane)
            .field("bytes", &self.body.len())
            .field("redelivered", &self.redelivered)
            .field("delivery_count", &self.delivery_count)
            .finish()
    }
}

impl Delivery {
    pub(crate) fn new(
        lane: Lane,
        body: Vec<u8>,
        redelivered: bool,
        delivery_count: u32,
        settle: Box<dyn Settle>,
    ) -> Self {
        Delivery {
            lane,
            body,
            redelivered,
            delivery_count,
            trace: TraceHeaders::default(),
            enqueued_at_ms: None,
            settle,
        }
    }

    /// The trace context the publisher sent along.
    pub(crate) fn with_trace(mut self, trace: TraceHeaders) -> Self {
        self.trace = trace;
        self
    }

    /// The publish time the message carries (unix ms), if it carries one.
    pub(crate) fn with_enqueued_at(mut self, unix_ms: Option<u64>) -> Self {
        self.enqueued_at_ms = unix_ms;
        self
    }

    /// How long the message waited between its publish and now: its time queued, a
    /// retry's back-off included. None when the publisher did not say when (a message
    /// from another tool); zero when clocks disagree.
    pub fn queued_for(&self) -> Option<Duration> {
        let enqueued = self.enqueued_at_ms?;
        Some(Duration::from_millis(unix_millis().saturating_sub(enqueued)))
    }

    /// The publisher's trace context (empty when it had none): the parent of the span
    /// that handles this delivery.
    pub fn trace(&self) -> &TraceHeaders {
        &self.trace
    }

    pub fn lane(&self) -> Lane {
        self.lane
    }
    pub fn body(&self) -> &[u8] {
        &self.body
    }
    /// The broker handed this message out before without it being settled.
    pub fn redelivered(&self) -> bool {
        self.redelivered
    }
    /// How many earlier deliveries of this message went unsettled or were requeued.
    pub fn delivery_count(&self) -> u32 {
        self.delivery_count
    }

    pub async fn ack(self) -> Result<(), QueueError> {
        self.settle.ack().await
    }

    /// Sends `body` (normally the message with its attempt raised) through the back-off
    /// tier for `next_attempt`; it reappears on this lane after the delay.
    pub async fn retry_later(
        self,
        body: Vec<u8>,
        next_attempt: u32,
        reason: &str,
    ) -> Result<Duration, QueueError> {
        self.settle.retry_later(self.lane, body, next_attempt, reason.to_string()).await
    }

    /// Moves the message, as received, to its stage's dead-letter queue with `reason`.
    pub async fn dead_letter(self, reason: &str) -> Result<(), QueueError> {
        self.settle.dead_letter(self.lane, self.body, reason.to_string()).await
    }

    /// Gives the message back to its lane untouched (shutting down, not a failure).
    pub async fn requeue(self) -> Result<(), QueueError> {
        self.settle.requeue().await
    }
}

/// Deliveries from one or more lanes.
#[async_trait]
pub trait DeliveryStream: Send {
    /// The next delivery; `None` once cancelled (or the broker cancelled the consumer).
    /// Connection losses are recovered inside; an `Err` means recovery gave up.
    async fn next(&mut self) -> Option<Result<Delivery, QueueError>>;
    /// Stops new deliveries. Deliveries already handed out can still be settled.
    async fn cancel(&mut self) -> Result<(), QueueError>;
    /// Ends the stream once its deliveries are settled. Dropping it also ends it, but
    /// RabbitMQ then closes the consumer channel in the background, racing a
    /// connection close that follows.
    async fn close(self: Box<Self>) -> Result<(), QueueError> {
        Ok(())
    }
}

/// A queue backend.
#[async_trait]
pub trait MessageQueue: Send + Sync {
    /// Publishes `message` to its lane and waits for the broker's confirm.
    async fn publish(&self, message: &StageMessage) -> Result<(), QueueError>;
    /// Publishes raw bytes to a lane: replaying dead letters, and tests injecting
    /// poison messages.
    async fn publish_raw(&self, lane: Lane, body: &[u8]) -> Result<(), QueueError>;
    /// Starts consuming `lanes`, with at most `prefetch` unsettled deliveries per lane.
    async fn consume(&self, lanes: &[Lane], prefetch: u16) -> Result<Box<dyn DeliveryStream>, QueueError>;
    /// Takes up to `max` dead letters of `stage`, leaving them in the queue until the
    /// lease is acknowledged.
    async fn lease_dead_letters(&self, stage: Stage, max: usize) -> Result<DeadLetterLease, QueueError>;
    /// Removes and returns up to `max` dead letters of `stage`.
    async fn take_dead_letters(&self, stage: Stage, max: usize) -> Result<Vec<DeadLetter>, QueueError> {
        let mut lease = self.lease_dead_letters(stage, max).await?;
        let letters = std::mem::take(&mut lease.letters);
        lease.ack().await?;
        Ok(letters)
    }
    /// Messages ready for delivery on `lane` (not counting unsettled ones).
    async fn ready_count(&self, lane: Lane) -> Result<u32, QueueError>;
    /// Closes the connection; unsettled deliveries return to their lanes.
    async fn close(&self) -> Result<(), QueueError>;
}

/// The topology `settings` describe, over `lanes`.
pub fn topology(settings: &QueueSettings, lanes: Vec<Lane>) -> Result<Topology, QueueError> {
    let topology =
        Topology::new(settings.exchange_prefix.clone(), lanes, settings.retry_delays(), settings.delivery_limit)?;
    Ok(match settings.expires_ms {
        Some(ms) => topology.with_expiry(Duration::from_millis(ms)),
        None => topology,
    })
}

/// Opens the configured backend over every lane of the pipeline. The RabbitMQ backend
/// declares the whole topology, so a publisher can route to lanes whose workers have
/// not started yet. The memory backend is private to the process: build it once and
/// share it between the in-process workers.
pub async fn open(settings: &QueueSettings) -> Result<Arc<dyn MessageQueue>, QueueError> {
    let topology = topology(settings, Lane::all())?;
    Ok(match settings.backend {
        QueueBackend::Memory => Arc::new(MemoryQueue::new(topology)),
        QueueBackend::Amqp => Arc::new(RabbitQueue::connect(&settings.url, topology).await?),
    })
}

/// Encodes a stage message as the JSON the queue carries.
pub fn encode(message: &StageMessage) -> Vec<u8> {
    // Serialising plain data with derived impls cannot fail.
    serde_json::to_vec(message).unwrap_or_default()
}

pub(crate) fn unix_millis() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
