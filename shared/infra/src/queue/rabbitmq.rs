//! RabbitMQ backend on lapin 4: publisher confirms on a dedicated channel, one consumer
//! channel per `consume` call, manual acks.
//!
//! Connection recovery is ours, not lapin's: lapin 4's automatic recovery was seen to
//! stay in `Reconnecting` for good after a broker restart (amqp-rs/lapin#450; our outage
//! test caught it about once in eight runs under load), leaving a live worker that
//! consumes nothing. So a lost connection is replaced as a whole: a new connection,
//! the topology declared again, a new confirm channel, and every consumer subscribed
//! again on it. Deliveries from the old connection cannot be settled any more; the
//! broker has already returned them to their queues.

use async_trait::async_trait;
use futures::stream::{select_all, BoxStream, SelectAll, StreamExt};
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicGetOptions, BasicNackOptions,
    BasicPublishOptions, BasicQosOptions, ConfirmSelectOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{Acker, BasicProperties, Channel, Connection, ConnectionProperties};
use mono2mesh_core::{Stage, StageMessage};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};
use tracing::{info, warn};

use super::{
    encode, headers, unix_millis, DeadLetter, DeadLetterLease, Delivery, DeliveryStream, Lane, MessageQueue,
    QueueError, Settle, SettleLease, Topology,
};
use crate::otel::TraceHeaders;
use crate::secret::SecretUrl;

/// How often one publish may wait for a reconnection before giving up; each wait is
/// itself bounded by [`RECOVERY_BUDGET`].
const PUBLISH_RECOVERY_ROUNDS: usize = 3;
/// Reconnect attempts back off from the first delay, doubling up to the second.
const RECONNECT_DELAYS: (Duration, Duration) = (Duration::from_millis(500), Duration::from_secs(5));
/// How long one loss of the broker is ridden out before it is reported: longer than
/// a broker restart. The worker then stops with an error and its supervisor restarts it.
const RECOVERY_BUDGET: Duration = Duration::from_secs(300);
/// One connection attempt (TCP, AMQP handshake, topology) may take this long: a
/// half-open or black-holed address must not stall recovery.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// Tries to subscribe again after a reconnection, for a connection lost again meanwhile.
const RESUBSCRIBE_TRIES: usize = 10;

#[derive(Clone)]
pub struct RabbitQueue {
    shared: Arc<Shared>,
}

struct Shared {
    url: SecretUrl,
    topology: Topology,
    /// The connection in use; replaced when lost.
    link: RwLock<Arc<Link>>,
    /// One reconnection at a time: whoever notices the loss first replaces the link,
    /// the others take the new one.
    relinking: tokio::sync::Mutex<()>,
    closed: AtomicBool,
}

/// One AMQP connection and its confirm-mode publisher channel, used for every
/// publish (stage messages, retries, dead letters).
struct Link {
    generation: u64,
    connection: Connection,
    publisher: Channel,
}

impl Link {
    async fn open(url: &SecretUrl, topology: &Topology, generation: u64) -> Result<Link, QueueError> {
        // lapin's own recovery stays off (the default): see the module comment.
        let properties = ConnectionProperties::default()
            .with_connection_name(LongString::from(format!("mono2mesh:{}", topology.prefix())));
        let connection = Connection::connect(url.expose(), properties)
            .await
            .map_err(|source| QueueError::Connect { url: url.redacted(), source })?;
        let publisher = connection.create_channel().await?;
        topology.declare(&publisher).await?;
        publisher.confirm_select(ConfirmSelectOptions::default()).await?;
        Ok(Link { generation, connection, publisher })
    }

    /// Both the connection and the publisher channel are usable.
    fn healthy(&self) -> bool {
        self.connection.status().connected() && self.publisher.status().connected()
    }
}

impl RabbitQueue {
    /// Connects, declares `topology` and enables publisher confirms. A connection lost
    /// later is replaced by itself (back-off from 0.5 s to 5 s, for up to five minutes,
    /// which outlasts a broker restart).
    pub async fn connect(url: &SecretUrl, topology: Topology) -> Result<Self, QueueError> {
        let link = Link::open(url, &topology, 0).await?;
        info!(url = %url, prefix = topology.prefix(), lanes = topology.lanes().len(), "queue topology declared");
        let shared = Shared {
            url: url.clone(),
            topology,
            link: RwLock::new(Arc::new(link)),
            relinking: tokio::sync::Mutex::new(()),
            closed: AtomicBool::new(false),
        };
        Ok(RabbitQueue { shared: Arc::new(shared) })
    }

    pub fn topology(&self) -> &Topology {
        &self.shared.topology
    }

    /// Deletes this topology's queues and exchanges (tests, throw-away deployments).
    pub async fn delete_topology(&self) -> Result<(), QueueError> {
        let channel = self.shared.channel().await?;
        self.shared.topology.delete(&channel).await?;
        channel.close(200, "topology deleted".into()).await?;
        Ok(())
    }
}

impl Shared {
    fn current(&self) -> Arc<Link> {
        // A poisoned lock only means a panic elsewhere; the link inside is still whole.
        self.link.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// A usable link in place of `lost`: the current one if another task already
    /// replaced `lost` (or it is healthy after all), else a new connection, tried with
    /// back-off until [`RECOVERY_BUDGET`] runs out.
    async fn relink(&self, lost: &Link) -> Result<Arc<Link>, QueueError> {
        let _turn = self.relinking.lock().await;
        let current = self.current();
        if current.generation != lost.generation || current.healthy() {
            return Ok(current);
        }
        let started = Instant::now();
        let mut delay = RECONNECT_DELAYS.0;
        loop {
            if self.closed.load(Ordering::SeqCst) {
                return Err(QueueError::Closed);
            }
            let attempt = Link::open(&self.url, &self.topology, lost.generation + 1);
            match tokio::time::timeout(CONNECT_TIMEOUT, attempt).await {
                Ok(Ok(link)) => {
                    let link = Arc::new(link);
                    *self.link.write().unwrap_or_else(|e| e.into_inner()) = link.clone();
                    info!(url = %self.url, after = ?started.elapsed(), "reconnected to RabbitMQ");
                    metrics::counter!(crate::telemetry::names::QUEUE_RECONNECTS).increment(1);
                    close_quietly(current);
                    return Ok(link);
                }
                Ok(Err(error)) => warn!(%error, retry_in = ?delay, "reconnecting to RabbitMQ failed"),
                Err(_) => warn!(timeout = ?CONNECT_TIMEOUT, retry_in = ?delay, "reconnecting to RabbitMQ timed out"),
            }
            if started.elapsed() + delay > RECOVERY_BUDGET {
                return Err(QueueError::Lost { url: self.url.redacted(), after: started.elapsed() });
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(RECONNECT_DELAYS.1);
        }
    }

    /// The current link if healthy, else its replacement.
    async fn healthy_link(&self) -> Result<Arc<Link>, QueueError> {
        let link = self.current();
        if link.healthy() {
            return Ok(link);
        }
        self.relink(&link).await
    }

    /// A new channel on a healthy link, for one-off operations.
    async fn channel(&self) -> Result<Channel, QueueError> {
        Ok(self.healthy_link().await?.connection.create_channel().await?)
    }

    /// Publishes and waits for the broker's confirm, riding out a reconnection.
    async fn publish_confirmed(
        &self,
        exchange: &str,
        routing_key: &str,
        body: &[u8],
        properties: BasicProperties,
        lane: Lane,
    ) -> Result<(), QueueError> {
        let mut link = self.current();
        let mut rounds = 0;
        loop {
            let attempt = async {
                link.publisher
                    .basic_publish(
                        exchange.into(),
                        routing_key.into(),
                        BasicPublishOptions { mandatory: true, ..Default::default() },
                        body,
                        properties.clone(),
                    )
                    .await?
                    .await
            };
            let started = Instant::now();
            let outcome = attempt.await;
            metrics::histogram!(crate::telemetry::names::PUBLISH_CONFIRM).record(started.elapsed().as_secs_f64());
            match outcome {
                Ok(confirmation) => {
                    if confirmation.is_nack() {
                        return Err(QueueError::Nacked { lane: lane.routing_key() });
                    }
                    // An unroutable mandatory message comes back before its ack.
                    if confirmation.take_message().is_some() {
                        return Err(QueueError::Unroutable { lane: lane.routing_key() });
                    }
                    return Ok(());
                }
                // A publish lost with its connection may have reached the broker: the
                // copy sent again is a duplicate, which stages tolerate.
                Err(error) if rounds < PUBLISH_RECOVERY_ROUNDS && !link.healthy() => {
                    rounds += 1;
                    warn!(%error, "publish failed with the connection; reconnecting");
                    link = self.relink(&link).await?;
                }
                Err(error) => return Err(error.into()),
            }
        }
    }
}

/// Closes a replaced link in the background; it is broken already, so errors only
/// confirm that.
fn close_quietly(link: Arc<Link>) {
    tokio::spawn(async move {
        let close = link.connection.close(200, "replaced after a connection loss".into());
        let _ = tokio::time::timeout(Duration::from_secs(2), close).await;
    });
}

fn message_properties(message_id: Option<String>, extra: &[(&str, AMQPValue)]) -> BasicProperties {
    let mut table = FieldTable::default();
    table.insert(headers::ENQUEUED_AT.into(), AMQPValue::LongLongInt(unix_millis() as i64));
    // Every publish continues the trace of the span it happens in.
    TraceHeaders::current().write_amqp(&mut table);
    for (key, value) in extra {
        table.insert(ShortString::from(*key), value.clone());
    }
    let properties = BasicProperties::default()
        .with_content_type("application/json".into())
        .with_delivery_mode(2) // persistent
        .with_timestamp(unix_millis() / 1000)
        .with_headers(table);
    match message_id {
        Some(id) => properties.with_message_id(id.into()),
        None => properties,
    }
}

#[async_trait]
impl MessageQueue for RabbitQueue {
    async fn publish(&self, message: &StageMessage) -> Result<(), QueueError> {
        let lane = Lane::for_message(message)?;
        // job + stage + attempt identifies one publication, for consumers and operators.
        let id = format!("{}:{}:{}", message.job_id, message.stage, message.attempt);
        let shared = &self.shared;
        shared
            .publish_confirmed(
                &shared.topology.work_exchange(),
                &lane.routing_key(),
                &encode(message),
                message_properties(Some(id), &[]),
                lane,
            )
            .await
    }

    async fn publish_raw(&self, lane: Lane, body: &[u8]) -> Result<(), QueueError> {
        let shared = &self.shared;
        shared
            .publish_confirmed(&shared.topology.work_exchange(), &lane.routing_key(), body, message_properties(None, &[]), lane)
            .await
    }

    async fn consume(&self, lanes: &[Lane], prefetch: u16) -> Result<Box<dyn DeliveryStream>, QueueError> {
        let topology = &self.shared.topology;
        if let Some(lane) = lanes.iter().find(|l| !topology.lanes().contains(l)) {
            return Err(QueueError::InvalidTopology(format!("lane {lane} is not declared")));
        }
        if lanes.is_empty() {
            return Err(QueueError::InvalidTopology("nothing to consume".into()));
        }
        let link = self.shared.healthy_link().await?;
        let subscription = Subscription::open(&link, topology, lanes, prefetch).await?;
        Ok(Box::new(RabbitStream { shared: self.shared.clone(), lanes: lanes.to_vec(), prefetch, subscription }))
    }

    async fn lease_dead_letters(&self, stage: Stage, max: usize) -> Result<DeadLetterLease, QueueError> {
        // The letters stay unacknowledged on their own channel until the lease is
        // settled; if this process dies first, the broker puts them back.
        let channel = self.shared.channel().await?;
        let queue = self.shared.topology.dead_letter_queue(stage);
        let mut letters = Vec::new();
        let mut ackers = Vec::new();
        while letters.len() < max {
            let Some(message) = channel.basic_get(queue.clone().into(), BasicGetOptions::default()).await? else {
                break;
            };
            let delivery = message.delivery;
            letters.push(dead_letter_from(&delivery.properties, delivery.data.clone()));
            ackers.push(delivery.acker);
        }
        Ok(DeadLetterLease::new(letters, Box::new(RabbitLease { channel, ackers })))
    }

    async fn ready_count(&self, lane: Lane) -> Result<u32, QueueError> {
        let channel = self.shared.channel().await?;
        let options = QueueDeclareOptions { passive: true, ..QueueDeclareOptions::durable() };
        let queue = channel
            .queue_declare(self.shared.topology.work_queue(lane).into(), options, FieldTable::default())
            .await?;
        channel.close(200, "counted".into()).await?;
        Ok(queue.message_count())
    }

    async fn close(&self) -> Result<(), QueueError> {
        self.shared.closed.store(true, Ordering::SeqCst);
        let link = self.shared.current();
        if !link.connection.status().connected() {
            // Lost and not yet replaced: the broker has returned its unsettled
            // deliveries already, so there is nothing left to close.
            warn!("queue closed while its connection was lost");
            return Ok(());
        }
        // Fails if a channel dropped just before is still closing; the connection ends
        // all the same and the broker returns whatever was unsettled, so nothing is lost.
        if let Err(error) = link.connection.close(200, "worker stopping".into()).await {
            warn!(%error, "the broker connection did not close cleanly");
        }
        Ok(())
    }
}

/// Our reason header when we dead-lettered it; the broker's `x-first-death-reason`
/// (`delivery_limit`, `rejected`, `expired`) when RabbitMQ did.
fn dead_letter_from(properties: &BasicProperties, body: Vec<u8>) -> DeadLetter {
    let table = properties.headers().clone().unwrap_or_default();
    let text = |key: &str| -> Option<String> {
        match table.inner().get(key)? {
            AMQPValue::LongString(s) => Some(s.to_string()),
            AMQPValue::ShortString(s) => Some(s.to_string()),
            _ => None,
        }
    };
    let reason = text(headers::REASON)
        .or_else(|| text("x-first-death-reason"))
        .unwrap_or_else(|| "unknown".to_string());
    let lane = text(headers::LANE).and_then(|l| Lane::from_str(&l).ok());
    DeadLetter { lane, body, reason }
}

/// Leased dead letters: unacknowledged deliveries on a channel of their own.
struct RabbitLease {
    channel: Channel,
    ackers: Vec<Acker>,
}

#[async_trait]
impl SettleLease for RabbitLease {
    async fn ack(self: Box<Self>) -> Result<(), QueueError> {
        for acker in &self.ackers {
            acker.ack(BasicAckOptions::default()).await?;
        }
        self.channel.close(200, "dead letters handled".into()).await?;
        Ok(())
    }

    async fn release(self: Box<Self>) -> Result<(), QueueError> {
        // Closing the channel returns its unacknowledged deliveries to the queue.
        self.channel.close(200, "dead letters released".into()).await?;
        Ok(())
    }

    fn release_on_drop(self: Box<Self>) {
        let channel = self.channel;
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let _ = channel.close(200, "dead letter lease dropped".into()).await;
            });
        }
    }
}

/// Quorum queues count earlier returns of a message in `x-delivery-count`.
fn delivery_count(properties: &BasicProperties) -> u32 {
    let Some(table) = properties.headers() else { return 0 };
    let count = match table.inner().get("x-delivery-count") {
        Some(AMQPValue::LongLongInt(n)) => *n,
        Some(AMQPValue::LongInt(n)) => i64::from(*n),
        Some(AMQPValue::LongUInt(n)) => i64::from(*n),
        Some(AMQPValue::ShortInt(n)) => i64::from(*n),
        _ => 0,
    };
    u32::try_from(count).unwrap_or(0)
}

/// Our publish time (`x-enqueued-at`, unix ms); none for messages from elsewhere.
fn enqueued_at(properties: &BasicProperties) -> Option<u64> {
    match properties.headers().as_ref()?.inner().get(headers::ENQUEUED_AT)? {
        AMQPValue::LongLongInt(ms) => u64::try_from(*ms).ok(),
        AMQPValue::LongUInt(ms) => Some(u64::from(*ms)),
        AMQPValue::Timestamp(ms) => Some(*ms),
        _ => None,
    }
}

struct RabbitStream {
    shared: Arc<Shared>,
    lanes: Vec<Lane>,
    prefetch: u16,
    subscription: Subscription,
}

/// The consumers of one stream on one link: a channel with its QoS and one consumer
/// per lane, merged.
struct Subscription {
    channel: Channel,
    tags: Vec<String>,
    merged: SelectAll<BoxStream<'static, (Lane, lapin::Result<lapin::message::Delivery>)>>,
}

impl Subscription {
    async fn open(link: &Link, topology: &Topology, lanes: &[Lane], prefetch: u16) -> Result<Self, QueueError> {
        let channel = link.connection.create_channel().await?;
        // Not global: RabbitMQ applies the limit to each consumer, i.e. each lane
        // (quorum queues refuse global QoS anyway).
        channel.basic_qos(prefetch.max(1), BasicQosOptions::default()).await?;
        let mut streams = Vec::with_capacity(lanes.len());
        let mut tags = Vec::with_capacity(lanes.len());
        for &lane in lanes {
            let tag = format!("{}-{}", lane.routing_key(), uuid::Uuid::new_v4().simple());
            let consumer = channel
                .basic_consume(
                    topology.work_queue(lane).into(),
                    tag.clone().into(),
                    BasicConsumeOptions::default(), // manual acks
                    FieldTable::default(),
                )
                .await?;
            tags.push(tag);
            streams.push(consumer.map(move |item| (lane, item)).boxed());
        }
        Ok(Subscription { channel, tags, merged: select_all(streams) })
    }
}

impl RabbitStream {
    /// Subscribes again on a healthy link after the consumers lost theirs.
    async fn resubscribe(&mut self) -> Result<(), QueueError> {
        let mut tries = 0;
        loop {
            let link = self.shared.healthy_link().await?;
            match Subscription::open(&link, &self.shared.topology, &self.lanes, self.prefetch).await {
                Ok(subscription) => {
                    self.subscription = subscription;
                    return Ok(());
                }
                // Lost again while subscribing, or not yet seen as lost: wait, look again.
                Err(error) if tries < RESUBSCRIBE_TRIES => {
                    tries += 1;
                    warn!(%error, "subscribing again failed; retrying");
                    tokio::time::sleep(RECONNECT_DELAYS.0).await;
                }
                Err(error) => return Err(error),
            }
        }
    }
}

#[async_trait]
impl DeliveryStream for RabbitStream {
    async fn next(&mut self) -> Option<Result<Delivery, QueueError>> {
        loop {
            match self.subscription.merged.next().await? {
                (lane, Ok(delivery)) => {
                    let count = delivery_count(&delivery.properties);
                    let trace = TraceHeaders::read_amqp(delivery.properties.headers().as_ref());
                    let settle = RabbitSettle { shared: self.shared.clone(), acker: delivery.acker };
                    let enqueued_at = enqueued_at(&delivery.properties);
                    let delivery = Delivery::new(lane, delivery.data, delivery.redelivered, count, Box::new(settle));
                    return Some(Ok(delivery.with_trace(trace).with_enqueued_at(enqueued_at)));
                }
                (lane, Err(error)) => {
                    warn!(%lane, %error, "consumer lost its connection; reconnecting");
                    if let Err(error) = self.resubscribe().await {
                        return Some(Err(error));
                    }
                    info!(%lane, "consumer subscribed again");
                }
            }
        }
    }

    async fn cancel(&mut self) -> Result<(), QueueError> {
        let (channel, tags) = (&self.subscription.channel, &self.subscription.tags);
        for tag in tags {
            channel.basic_cancel(tag.as_str().into(), BasicCancelOptions::default()).await?;
        }
        Ok(())
    }

    async fn close(self: Box<Self>) -> Result<(), QueueError> {
        let channel = &self.subscription.channel;
        if channel.status().connected() {
            channel.close(200, "consumer stopped".into()).await?;
        }
        Ok(())
    }
}

struct RabbitSettle {
    shared: Arc<Shared>,
    acker: Acker,
}

impl RabbitSettle {
    async fn ack(&self) -> Result<(), QueueError> {
        // An acker from a lost connection fails: the broker has already requeued that
        // delivery, so the error is reported, not fatal.
        self.acker.ack(BasicAckOptions::default()).await?;
        Ok(())
    }
}

#[async_trait]
impl Settle for RabbitSettle {
    async fn ack(self: Box<Self>) -> Result<(), QueueError> {
        RabbitSettle::ack(&self).await
    }

    async fn retry_later(
        self: Box<Self>,
        lane: Lane,
        body: Vec<u8>,
        next_attempt: u32,
        reason: String,
    ) -> Result<Duration, QueueError> {
        let topology = &self.shared.topology;
        let tier = topology.retry_tier(next_attempt);
        let properties = message_properties(None, &[(headers::REASON, AMQPValue::LongString(reason.into()))]);
        // Copy first, ack second: a crash in between duplicates the message (harmless,
        // stages are idempotent) rather than losing it.
        self.shared
            .publish_confirmed(&topology.retry_exchange(tier), &lane.routing_key(), &body, properties, lane)
            .await?;
        RabbitSettle::ack(&self).await?;
        Ok(topology.retry_delay(tier))
    }

    async fn dead_letter(self: Box<Self>, lane: Lane, body: Vec<u8>, reason: String) -> Result<(), QueueError> {
        let topology = &self.shared.topology;
        let properties = message_properties(
            None,
            &[
                (headers::REASON, AMQPValue::LongString(reason.into())),
                (headers::LANE, AMQPValue::LongString(lane.routing_key().into())),
            ],
        );
        self.shared
            .publish_confirmed(&topology.dead_letter_exchange(), lane.stage().name(), &body, properties, lane)
            .await?;
        RabbitSettle::ack(&self).await
    }

    async fn requeue(self: Box<Self>) -> Result<(), QueueError> {
        self.acker.nack(BasicNackOptions { requeue: true, ..Default::default() }).await?;
        Ok(())
    }
}
