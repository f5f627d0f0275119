//! In-process queue with the RabbitMQ backend's delivery semantics: per-lane FIFO,
//! prefetch, back-off tiers, per-stage dead letters, a delivery limit, and unsettled
//! deliveries returning to the head of their lane when dropped (the in-memory
//! equivalent of a consumer whose connection died mid-job).

use async_trait::async_trait;
use mono2mesh_core::{Stage, StageMessage};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::Notify;

use crate::otel::TraceHeaders;

use super::{
    encode, unix_millis, DeadLetter, DeadLetterLease, Delivery, DeliveryStream, Lane, MessageQueue, QueueError, Settle,
    SettleLease, Topology,
};

/// Reason the memory backend gives a message dead-lettered past the delivery limit,
/// the same words RabbitMQ puts in `x-first-death-reason`.
pub const DELIVERY_LIMIT_REASON: &str = "delivery_limit";

#[derive(Clone)]
pub struct MemoryQueue {
    shared: Arc<Shared>,
}

struct Shared {
    topology: Topology,
    state: Mutex<State>,
    /// Woken on every change a waiting consumer may care about.
    changed: Notify,
}

#[derive(Default)]
struct State {
    lanes: HashMap<Lane, VecDeque<Envelope>>,
    dead: HashMap<Stage, VecDeque<DeadLetter>>,
    closed: bool,
}

struct Envelope {
    body: Vec<u8>,
    delivery_count: u32,
    redelivered: bool,
    /// The publisher's trace context, as RabbitMQ would carry it in headers.
    trace: TraceHeaders,
    /// Unix milliseconds at publish, as RabbitMQ carries `x-enqueued-at`.
    enqueued_at_ms: u64,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding this lock leaves plain data in a consistent state
        // (every mutation is a single push or pop), so poisoning is safe to ignore.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn push(&self, lane: Lane, envelope: Envelope) -> Result<(), QueueError> {
        if !self.topology.lanes().contains(&lane) {
            return Err(QueueError::Unroutable { lane: lane.routing_key() });
        }
        {
            let mut state = self.lock();
            if state.closed {
                return Err(QueueError::Closed);
            }
            state.lanes.entry(lane).or_default().push_back(envelope);
        }
        self.changed.notify_waiters();
        Ok(())
    }

    fn dead_letter(&self, lane: Lane, body: Vec<u8>, reason: String) {
        self.lock()
            .dead
            .entry(lane.stage())
            .or_default()
            .push_back(DeadLetter { lane: Some(lane), body, reason });
    }

    /// An unsettled or requeued delivery goes back to the head of its lane, or to the
    /// dead letters once it has been returned more often than the delivery limit.
    fn give_back(&self, lane: Lane, mut envelope: Envelope) {
        envelope.delivery_count += 1;
        envelope.redelivered = true;
        if envelope.delivery_count > self.topology.delivery_limit() {
            self.dead_letter(lane, envelope.body, DELIVERY_LIMIT_REASON.into());
        } else {
            self.lock().lanes.entry(lane).or_default().push_front(envelope);
        }
        self.changed.notify_waiters();
    }
}

impl MemoryQueue {
    pub fn new(topology: Topology) -> Self {
        MemoryQueue {
            shared: Arc::new(Shared { topology, state: Mutex::new(State::default()), changed: Notify::new() }),
        }
    }

    pub fn topology(&self) -> &Topology {
        &self.shared.topology
    }
}

/// Leased dead letters are out of the queue meanwhile; released ones go back to its head.
struct MemoryLease {
    shared: Arc<Shared>,
    stage: Stage,
    letters: Vec<DeadLetter>,
}

impl MemoryLease {
    fn give_back(self) {
        let mut state = self.shared.lock();
        let dead = state.dead.entry(self.stage).or_default();
        for letter in self.letters.into_iter().rev() {
            dead.push_front(letter);
        }
    }
}

#[async_trait]
impl SettleLease for MemoryLease {
    async fn ack(self: Box<Self>) -> Result<(), QueueError> {
        Ok(())
    }
    async fn release(self: Box<Self>) -> Result<(), QueueError> {
        self.give_back();
        Ok(())
    }
    fn release_on_drop(self: Box<Self>) {
        self.give_back();
    }
}

#[async_trait]
impl MessageQueue for MemoryQueue {
    async fn publish(&self, message: &StageMessage) -> Result<(), QueueError> {
        let lane = Lane::for_message(message)?;
        self.publish_raw(lane, &encode(message)).await
    }

    async fn publish_raw(&self, lane: Lane, body: &[u8]) -> Result<(), QueueError> {
        let envelope =
            Envelope {
            body: body.to_vec(),
            delivery_count: 0,
            redelivered: false,
            trace: TraceHeaders::current(),
            enqueued_at_ms: unix_millis(),
        };
        self.shared.push(lane, envelope)
    }

    async fn consume(&self, lanes: &[Lane], prefetch: u16) -> Result<Box<dyn DeliveryStream>, QueueError> {
        if let Some(lane) = lanes.iter().find(|l| !self.shared.topology.lanes().contains(l)) {
            return Err(QueueError::InvalidTopology(format!("lane {lane} is not declared")));
        }
        if lanes.is_empty() {
            return Err(QueueError::InvalidTopology("nothing to consume".into()));
        }
        Ok(Box::new(MemoryStream {
            shared: self.shared.clone(),
            lanes: lanes.to_vec(),
            unsettled: Arc::new(lanes.iter().map(|_| AtomicUsize::new(0)).collect()),
            prefetch: usize::from(prefetch.max(1)),
            next_lane: 0,
            cancelled: false,
        }))
    }

    async fn lease_dead_letters(&self, stage: Stage, max: usize) -> Result<DeadLetterLease, QueueError> {
        let letters: Vec<DeadLetter> = {
            let mut state = self.shared.lock();
            match state.dead.get_mut(&stage) {
                Some(dead) => {
                    let n = max.min(dead.len());
                    dead.drain(..n).collect()
                }
                None => Vec::new(),
            }
        };
        let settle = MemoryLease { shared: self.shared.clone(), stage, letters: letters.clone() };
        Ok(DeadLetterLease::new(letters, Box::new(settle)))
    }

    async fn ready_count(&self, lane: Lane) -> Result<u32, QueueError> {
        Ok(self.shared.lock().lanes.get(&lane).map_or(0, |q| q.len() as u32))
    }

    async fn close(&self) -> Result<(), QueueError> {
        self.shared.lock().closed = true;
        self.shared.changed.notify_waiters();
        Ok(())
    }
}

struct MemoryStream {
    shared: Arc<Shared>,
    lanes: Vec<Lane>,
    /// Unsettled deliveries per lane (same index as `lanes`), for the prefetch limit.
    unsettled: Arc<Vec<AtomicUsize>>,
    prefetch: usize,
    /// Round-robin start, so one busy lane cannot starve the others.
    next_lane: usize,
    cancelled: bool,
}

impl MemoryStream {
    fn try_take(&mut self) -> Result<Option<Delivery>, QueueError> {
        let mut state = self.shared.lock();
        if state.closed {
            return Err(QueueError::Closed);
        }
        for offset in 0..self.lanes.len() {
            let index = (self.next_lane + offset) % self.lanes.len();
            if self.unsettled[index].load(Ordering::SeqCst) >= self.prefetch {
                continue;
            }
            let lane = self.lanes[index];
            let Some(envelope) = state.lanes.get_mut(&lane).and_then(|q| q.pop_front()) else { continue };
            self.unsettled[index].fetch_add(1, Ordering::SeqCst);
            self.next_lane = index + 1;
            let (body, redelivered, count) = (envelope.body.clone(), envelope.redelivered, envelope.delivery_count);
            let (trace, enqueued_at_ms) = (envelope.trace.clone(), envelope.enqueued_at_ms);
            let settle = MemorySettle {
                shared: self.shared.clone(),
                unsettled: self.unsettled.clone(),
                lane_index: index,
                lane,
                envelope: Some(envelope),
            };
            let delivery = Delivery::new(lane, body, redelivered, count, Box::new(settle));
            return Ok(Some(delivery.with_trace(trace).with_enqueued_at(Some(enqueued_at_ms))));
        }
        Ok(None)
    }
}

#[async_trait]
impl DeliveryStream for MemoryStream {
    async fn next(&mut self) -> Option<Result<Delivery, QueueError>> {
        loop {
            if self.cancelled {
                return None;
            }
            let shared = self.shared.clone();
            let changed = shared.changed.notified();
            tokio::pin!(changed);
            // Register before looking, so a change between the look and the wait is not missed.
            changed.as_mut().enable();
            match self.try_take() {
                Ok(Some(delivery)) => return Some(Ok(delivery)),
                Ok(None) => {}
                Err(e) => return Some(Err(e)),
            }
            changed.await;
        }
    }

    async fn cancel(&mut self) -> Result<(), QueueError> {
        self.cancelled = true;
        Ok(())
    }
}

struct MemorySettle {
    shared: Arc<Shared>,
    unsettled: Arc<Vec<AtomicUsize>>,
    lane_index: usize,
    lane: Lane,
    /// `None` once settled; still `Some` on drop means the consumer vanished.
    envelope: Option<Envelope>,
}

impl MemorySettle {
    fn finish(&mut self) -> Option<Envelope> {
        let envelope = self.envelope.take();
        if envelope.is_some() {
            self.unsettled[self.lane_index].fetch_sub(1, Ordering::SeqCst);
            self.shared.changed.notify_waiters();
        }
        envelope
    }
}

impl Drop for MemorySettle {
    fn drop(&mut self) {
        if let Some(envelope) = self.finish() {
            self.shared.give_back(self.lane, envelope);
        }
    }
}

#[async_trait]
impl Settle for MemorySettle {
    async fn ack(mut self: Box<Self>) -> Result<(), QueueError> {
        self.finish();
        Ok(())
    }

    async fn retry_later(
        mut self: Box<Self>,
        lane: Lane,
        body: Vec<u8>,
        next_attempt: u32,
        _reason: String,
    ) -> Result<Duration, QueueError> {
        let topology = &self.shared.topology;
        let delay = topology.retry_delay(topology.retry_tier(next_attempt));
        let shared = self.shared.clone();
        // The retry continues the trace of the attempt that failed (the current span).
        let trace = TraceHeaders::current();
        // Stamped now, as RabbitMQ's retry publish is, so time queued includes back-off.
        let enqueued_at_ms = unix_millis();
        self.finish();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            // A retry landing after close is lost, as it would be for a stopped broker
            // without persistence; the memory backend promises nothing across restarts.
            let _ = shared.push(lane, Envelope { body, delivery_count: 0, redelivered: false, trace, enqueued_at_ms });
        });
        Ok(delay)
    }

    async fn dead_letter(mut self: Box<Self>, lane: Lane, body: Vec<u8>, reason: String) -> Result<(), QueueError> {
        self.finish();
        self.shared.dead_letter(lane, body, reason);
        Ok(())
    }

    async fn requeue(mut self: Box<Self>) -> Result<(), QueueError> {
        if let Some(envelope) = self.finish() {
            self.shared.give_back(self.lane, envelope);
        }
        Ok(())
    }
}
