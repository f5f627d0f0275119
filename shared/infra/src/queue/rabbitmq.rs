//! RabbitMQ backend on lapin 4: publisher confirms on a dedicated channel, one consumer
//! channel per `consume` call, manual acks, automatic connection recovery (lapin replays
//! the topology, consumers, QoS and confirm mode on the new connection).

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
use std::sync::Arc;
use std::time::Duration;
use tracing::{info, warn};

use super::{
    encode, headers, unix_millis, DeadLetter, Delivery, DeliveryStream, Lane, MessageQueue, QueueError, Settle,
    Topology,
};
use crate::otel::TraceHeaders;
use crate::secret::SecretUrl;

/// How often one publish may wait for a connection recovery before giving up; each
/// wait is itself bounded by the reconnect back-off below.
const PUBLISH_RECOVERY_ROUNDS: usize = 3;

#[derive(Clone)]
pub struct RabbitQueue {
    inner: Arc<Inner>,
}

struct Inner {
    connection: Connection,
    /// Confirm-mode channel for every publish (stage messages, retries, dead letters).
    publisher: Channel,
    topology: Topology,
}

impl RabbitQueue {
    /// Connects, declares `topology` and enables publisher confirms. The connection
    /// recovers by itself: reconnect attempts back off from 0.5 s to 5 s, about five
    /// minutes in all, which outlasts a broker restart.
    pub async fn connect(url: &SecretUrl, topology: Topology) -> Result<Self, QueueError> {
        let properties = ConnectionProperties::default()
            .with_connection_name(LongString::from(format!("mono2mesh:{}", topology.prefix())))
            .enable_auto_recover()
            .configure_backoff(|b| {
                b.with_min_delay(Duration::from_millis(500))
                    .with_max_delay(Duration::from_secs(5))
                    .with_max_times(60)
            });
        let connection = Connection::connect(url.expose(), properties)
            .await
            .map_err(|source| QueueError::Connect { url: url.redacted(), source })?;
        let publisher = connection.create_channel().await?;
        topology.declare(&publisher).await?;
        publisher.confirm_select(ConfirmSelectOptions::default()).await?;
        info!(url = %url, prefix = topology.prefix(), lanes = topology.lanes().len(), "queue topology declared");
        Ok(RabbitQueue { inner: Arc::new(Inner { connection, publisher, topology }) })
    }

    pub fn topology(&self) -> &Topology {
        &self.inner.topology
    }

    /// Deletes this topology's queues and exchanges (tests, throw-away deployments).
    pub async fn delete_topology(&self) -> Result<(), QueueError> {
        let channel = self.inner.connection.create_channel().await?;
        self.inner.topology.delete(&channel).await?;
        channel.close(200, "topology deleted".into()).await?;
        Ok(())
    }
}

impl Inner {
    /// Publishes and waits for the broker's confirm, riding out a connection recovery.
    async fn publish_confirmed(
        &self,
        exchange: &str,
        routing_key: &str,
        body: &[u8],
        properties: BasicProperties,
        lane: Lane,
    ) -> Result<(), QueueError> {
        let mut rounds = 0;
        loop {
            let attempt = async {
                self.publisher
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
            let started = std::time::Instant::now();
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
                Err(error) if rounds < PUBLISH_RECOVERY_ROUNDS => {
                    rounds += 1;
                    warn!(%error, "publish failed; waiting for the connection to recover");
                    self.publisher.wait_for_recovery(error).await?;
                }
                Err(error) => return Err(error.into()),
            }
        }
    }
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
        let inner = &self.inner;
        inner
            .publish_confirmed(
                &inner.topology.work_exchange(),
                &lane.routing_key(),
                &encode(message),
                message_properties(Some(id), &[]),
                lane,
            )
            .await
    }

    async fn publish_raw(&self, lane: Lane, body: &[u8]) -> Result<(), QueueError> {
        let inner = &self.inner;
        inner
            .publish_confirmed(&inner.topology.work_exchange(), &lane.routing_key(), body, message_properties(None, &[]), lane)
            .await
    }

    async fn consume(&self, lanes: &[Lane], prefetch: u16) -> Result<Box<dyn DeliveryStream>, QueueError> {
        let topology = &self.inner.topology;
        if let Some(lane) = lanes.iter().find(|l| !topology.lanes().contains(l)) {
            return Err(QueueError::InvalidTopology(format!("lane {lane} is not declared")));
        }
        if lanes.is_empty() {
            return Err(QueueError::InvalidTopology("nothing to consume".into()));
        }
        let channel = self.inner.connection.create_channel().await?;
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
        Ok(Box::new(RabbitStream { inner: self.inner.clone(), channel, tags, merged: select_all(streams) }))
    }

    async fn take_dead_letters(&self, stage: Stage, max: usize) -> Result<Vec<DeadLetter>, QueueError> {
        let inner = &self.inner;
        let channel = inner.connection.create_channel().await?;
        let queue = inner.topology.dead_letter_queue(stage);
        let mut letters = Vec::new();
        while letters.len() < max {
            let Some(message) = channel.basic_get(queue.clone().into(), BasicGetOptions::default()).await? else {
                break;
            };
            let delivery = message.delivery;
            letters.push(dead_letter_from(&delivery.properties, delivery.data.clone()));
            delivery.acker.ack(BasicAckOptions::default()).await?;
        }
        channel.close(200, "dead letters taken".into()).await?;
        Ok(letters)
    }

    async fn ready_count(&self, lane: Lane) -> Result<u32, QueueError> {
        let channel = self.inner.connection.create_channel().await?;
        let options = QueueDeclareOptions { passive: true, ..QueueDeclareOptions::durable() };
        let queue = channel
            .queue_declare(self.inner.topology.work_queue(lane).into(), options, FieldTable::default())
            .await?;
        channel.close(200, "counted".into()).await?;
        Ok(queue.message_count())
    }

    async fn close(&self) -> Result<(), QueueError> {
        self.inner.connection.close(200, "worker stopping".into()).await?;
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
    inner: Arc<Inner>,
    channel: Channel,
    tags: Vec<String>,
    merged: SelectAll<BoxStream<'static, (Lane, lapin::Result<lapin::message::Delivery>)>>,
}

#[async_trait]
impl DeliveryStream for RabbitStream {
    async fn next(&mut self) -> Option<Result<Delivery, QueueError>> {
        loop {
            match self.merged.next().await? {
                (lane, Ok(delivery)) => {
                    let count = delivery_count(&delivery.properties);
                    let trace = TraceHeaders::read_amqp(delivery.properties.headers().as_ref());
                    let settle = RabbitSettle { inner: self.inner.clone(), acker: delivery.acker };
                    let enqueued_at = enqueued_at(&delivery.properties);
                    let delivery = Delivery::new(lane, delivery.data, delivery.redelivered, count, Box::new(settle));
                    return Some(Ok(delivery.with_trace(trace).with_enqueued_at(enqueued_at)));
                }
                (lane, Err(error)) => {
                    warn!(%lane, %error, "consumer lost its connection; waiting for recovery");
                    if let Err(error) = self.channel.wait_for_recovery(error).await {
                        return Some(Err(error.into()));
                    }
                    info!(%lane, "consumer recovered");
                }
            }
        }
    }

    async fn cancel(&mut self) -> Result<(), QueueError> {
        for tag in &self.tags {
            self.channel.basic_cancel(tag.as_str().into(), BasicCancelOptions::default()).await?;
        }
        Ok(())
    }
}

struct RabbitSettle {
    inner: Arc<Inner>,
    acker: Acker,
}

impl RabbitSettle {
    async fn ack(&self) -> Result<(), QueueError> {
        // An acker from before a connection recovery is poisoned and fails: the broker has
        // already requeued that delivery, so the error is reported, not fatal.
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
        let topology = &self.inner.topology;
        let tier = topology.retry_tier(next_attempt);
        let properties = message_properties(None, &[(headers::REASON, AMQPValue::LongString(reason.into()))]);
        // Copy first, ack second: a crash in between duplicates the message (harmless,
        // stages are idempotent) rather than losing it.
        self.inner
            .publish_confirmed(&topology.retry_exchange(tier), &lane.routing_key(), &body, properties, lane)
            .await?;
        RabbitSettle::ack(&self).await?;
        Ok(topology.retry_delay(tier))
    }

    async fn dead_letter(self: Box<Self>, lane: Lane, body: Vec<u8>, reason: String) -> Result<(), QueueError> {
        let topology = &self.inner.topology;
        let properties = message_properties(
            None,
            &[
                (headers::REASON, AMQPValue::LongString(reason.into())),
                (headers::LANE, AMQPValue::LongString(lane.routing_key().into())),
            ],
        );
        self.inner
            .publish_confirmed(&topology.dead_letter_exchange(), lane.stage().name(), &body, properties, lane)
            .await?;
        RabbitSettle::ack(&self).await
    }

    async fn requeue(self: Box<Self>) -> Result<(), QueueError> {
        self.acker.nack(BasicNackOptions { requeue: true, ..Default::default() }).await?;
        Ok(())
    }
}
