//! The whole RabbitMQ topology of the pipeline, declared in this one file.
//!
//! ```text
//! exchange <p>.work             direct, durable: every stage message is published here,
//!                               routing key = lane ("gate", "classify",
//!                               "reconstruct.<category>", "refine")
//! queue    <p>.<lane>           quorum, one per lane (so one per reconstruct category):
//!                                 x-delivery-limit        = delivery_limit (3.10 has no default)
//!                                 x-dead-letter-exchange  = <p>.dead, routing key = <stage>
//!                                 x-dead-letter-strategy  = at-least-once
//!                                 x-overflow              = reject-publish (required by the above)
//! exchange <p>.retry.<i>        fanout, durable, one per back-off tier i
//! queue    <p>.retry.<i>        quorum, no consumers, x-message-ttl = retry_delays[i];
//!                               expired messages dead-letter into <p>.work keeping their
//!                               original routing key, i.e. back onto the lane they left
//! exchange <p>.dead             direct, durable: dead letters, routing key = stage name
//! queue    <p>.<stage>.dlq      quorum, one per stage; each worker's janitor fails the jobs
//!                               of its stage's dead letters, then removes them (recovery.rs)
//! ```
//!
//! Why this shape (see ../shared/notes/ecosystem-survey.md §3):
//! - Quorum queues are the replicated, durable queue type and count redeliveries
//!   (`x-delivery-count`), so a message that crashes its consumer over and over is
//!   dead-lettered by the broker (reason `delivery_limit`) instead of looping forever.
//! - Dead-lettering is at-most-once by default; at-least-once needs both the strategy and
//!   `reject-publish` overflow, otherwise a DLQ hiccup silently drops the message.
//! - Stock RabbitMQ 3.10 has no delayed delivery; one TTL queue per delay (queue-level TTL,
//!   so no head-of-line blocking) that dead-letters back into the work exchange is the
//!   portable back-off. The retry tiers are shared by all lanes: the routing key carries
//!   the lane, so three queues serve fifteen lanes.
//! - Every name carries a prefix so tests (random prefix) and deployments share a broker
//!   without seeing each other's messages.

use lapin::options::{
    ExchangeDeclareOptions, ExchangeDeleteOptions, QueueBindOptions, QueueDeclareOptions,
    QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{Channel, ExchangeKind};
use mono2mesh_core::{Category, Stage, StageMessage};
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use super::QueueError;

/// One consumable stream of work: a stage, and for reconstruct also a category, since each
/// reconstruct worker serves only the categories whose specialists it has loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Lane {
    Gate,
    Classify,
    Reconstruct(Category),
    Refine,
}

impl Lane {
    /// Every lane of the pipeline, in stage order.
    pub fn all() -> Vec<Lane> {
        Stage::ALL.into_iter().flat_map(Lane::for_stage).collect()
    }

    /// The lanes that carry work for `stage` (twelve for reconstruct).
    pub fn for_stage(stage: Stage) -> Vec<Lane> {
        match stage {
            Stage::Gate => vec![Lane::Gate],
            Stage::Classify => vec![Lane::Classify],
            Stage::Reconstruct => Category::ALL.into_iter().map(Lane::Reconstruct).collect(),
            Stage::Refine => vec![Lane::Refine],
        }
    }

    /// Where `message` must go. Reconstruct work without a category cannot be routed:
    /// that is a bug upstream (classify always sets it), not something to guess around.
    pub fn for_message(message: &StageMessage) -> Result<Lane, QueueError> {
        match message.stage {
            Stage::Gate => Ok(Lane::Gate),
            Stage::Classify => Ok(Lane::Classify),
            Stage::Reconstruct => message
                .category
                .map(Lane::Reconstruct)
                .ok_or(QueueError::MissingCategory { job: message.job_id.to_string() }),
            Stage::Refine => Ok(Lane::Refine),
        }
    }

    pub fn stage(self) -> Stage {
        match self {
            Lane::Gate => Stage::Gate,
            Lane::Classify => Stage::Classify,
            Lane::Reconstruct(_) => Stage::Reconstruct,
            Lane::Refine => Stage::Refine,
        }
    }

    /// Routing key on the work exchange, also the queue name without its prefix.
    pub fn routing_key(self) -> String {
        match self {
            Lane::Reconstruct(category) => format!("reconstruct.{}", category.name()),
            other => other.stage().name().to_string(),
        }
    }
}

impl fmt::Display for Lane {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.routing_key())
    }
}

impl FromStr for Lane {
    type Err = String;

    /// Parses a routing key back into a lane ("reconstruct.chair", "gate").
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some(category) = s.strip_prefix("reconstruct.") {
            return category.parse().map(Lane::Reconstruct).map_err(|e| e.to_string());
        }
        match s.parse::<Stage>()? {
            Stage::Reconstruct => Err("reconstruct lanes are named reconstruct.<category>".into()),
            stage => Ok(Lane::for_stage(stage)[0]),
        }
    }
}

/// Names and queue arguments of one deployment's topology.
#[derive(Debug, Clone)]
pub struct Topology {
    prefix: String,
    lanes: Vec<Lane>,
    retry_delays: Vec<Duration>,
    delivery_limit: u32,
    /// `x-expires` of every queue, and auto-deleted exchanges: a topology that cleans
    /// itself up once unused (tests, ephemeral deployments). `None` in production.
    expires: Option<Duration>,
}

impl Topology {
    /// `lanes` are the work queues to declare: all of them in a deployment, only those a
    /// test uses in tests (quorum queues are not free to create). `retry_delays` are the
    /// back-off tiers: retry n (1-based) waits `retry_delays[min(n, len) - 1]`.
    pub fn new(
        prefix: impl Into<String>,
        lanes: Vec<Lane>,
        retry_delays: Vec<Duration>,
        delivery_limit: u32,
    ) -> Result<Self, QueueError> {
        let prefix = prefix.into();
        if prefix.is_empty() || prefix.len() > 100 {
            return Err(QueueError::InvalidTopology("prefix must be 1..=100 characters".into()));
        }
        if retry_delays.is_empty() || retry_delays.iter().any(|d| d.is_zero()) {
            return Err(QueueError::InvalidTopology(
                "at least one non-zero retry delay is needed".into(),
            ));
        }
        if lanes.is_empty() {
            return Err(QueueError::InvalidTopology("no lanes to declare".into()));
        }
        let mut lanes = lanes;
        lanes.sort();
        lanes.dedup();
        Ok(Topology { prefix, lanes, retry_delays, delivery_limit, expires: None })
    }

    /// Queues that the broker deletes after `after` without consumers or use, and
    /// exchanges that go with their last binding, so a test that dies before its
    /// clean-up leaves nothing behind for long. Every process sharing the topology must
    /// declare it the same way (`queue.expires_ms`), or RabbitMQ refuses the mismatch.
    pub fn with_expiry(mut self, after: Duration) -> Self {
        self.expires = Some(after);
        self
    }

    pub fn expires(&self) -> Option<Duration> {
        self.expires
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }
    pub fn lanes(&self) -> &[Lane] {
        &self.lanes
    }
    pub fn retry_delays(&self) -> &[Duration] {
        &self.retry_delays
    }
    pub fn delivery_limit(&self) -> u32 {
        self.delivery_limit
    }

    /// The stages that have at least one lane here, hence a dead-letter queue.
    pub fn stages(&self) -> Vec<Stage> {
        let mut stages: Vec<Stage> = self.lanes.iter().map(|l| l.stage()).collect();
        stages.dedup();
        stages
    }

    pub fn work_exchange(&self) -> String {
        format!("{}.work", self.prefix)
    }
    pub fn dead_letter_exchange(&self) -> String {
        format!("{}.dead", self.prefix)
    }
    pub fn work_queue(&self, lane: Lane) -> String {
        format!("{}.{}", self.prefix, lane.routing_key())
    }
    pub fn dead_letter_queue(&self, stage: Stage) -> String {
        format!("{}.{}.dlq", self.prefix, stage.name())
    }
    /// Tier index for the retry that will become attempt `next_attempt` (2 = first retry).
    pub fn retry_tier(&self, next_attempt: u32) -> usize {
        let retry_number = next_attempt.saturating_sub(1).max(1) as usize;
        retry_number.min(self.retry_delays.len()) - 1
    }
    pub fn retry_delay(&self, tier: usize) -> Duration {
        self.retry_delays[tier.min(self.retry_delays.len() - 1)]
    }
    /// Exchange and queue of a retry tier share one name.
    pub fn retry_exchange(&self, tier: usize) -> String {
        format!("{}.retry.{}", self.prefix, tier)
    }

    fn quorum_arguments(&self) -> FieldTable {
        let mut args = FieldTable::default();
        args.insert("x-queue-type".into(), long_string("quorum"));
        if let Some(after) = self.expires {
            let ms = i64::try_from(after.as_millis()).unwrap_or(i64::MAX).max(1);
            args.insert("x-expires".into(), AMQPValue::LongLongInt(ms));
        }
        args
    }

    fn work_queue_arguments(&self, lane: Lane) -> FieldTable {
        let mut args = self.quorum_arguments();
        args.insert("x-delivery-limit".into(), AMQPValue::LongLongInt(self.delivery_limit.into()));
        args.insert("x-dead-letter-exchange".into(), long_string(&self.dead_letter_exchange()));
        args.insert("x-dead-letter-routing-key".into(), long_string(lane.stage().name()));
        args.insert("x-dead-letter-strategy".into(), long_string("at-least-once"));
        args.insert("x-overflow".into(), long_string("reject-publish"));
        args
    }

    fn retry_queue_arguments(&self, tier: usize) -> FieldTable {
        let mut args = self.quorum_arguments();
        let ttl_ms = i64::try_from(self.retry_delay(tier).as_millis()).unwrap_or(i64::MAX);
        args.insert("x-message-ttl".into(), AMQPValue::LongLongInt(ttl_ms));
        // No x-dead-letter-routing-key: the message keeps its lane's routing key.
        args.insert("x-dead-letter-exchange".into(), long_string(&self.work_exchange()));
        args.insert("x-dead-letter-strategy".into(), long_string("at-least-once"));
        args.insert("x-overflow".into(), long_string("reject-publish"));
        args
    }

    /// Declares everything (idempotent: redeclaring with the same arguments is a no-op;
    /// different arguments fail with PRECONDITION_FAILED, which is what we want to see).
    pub async fn declare(&self, channel: &Channel) -> Result<(), lapin::Error> {
        let durable = ExchangeDeclareOptions { durable: true, auto_delete: self.expires.is_some(), ..Default::default() };
        channel
            .exchange_declare(
                self.work_exchange().into(),
                ExchangeKind::Direct,
                durable,
                FieldTable::default(),
            )
            .await?;
        channel
            .exchange_declare(
                self.dead_letter_exchange().into(),
                ExchangeKind::Direct,
                durable,
                FieldTable::default(),
            )
            .await?;

        for stage in self.stages() {
            let dlq = self.dead_letter_queue(stage);
            channel
                .queue_declare(dlq.clone().into(), QueueDeclareOptions::durable(), self.quorum_arguments())
                .await?;
            channel
                .queue_bind(
                    dlq.into(),
                    self.dead_letter_exchange().into(),
                    stage.name().into(),
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await?;
        }

        for &lane in &self.lanes {
            let queue = self.work_queue(lane);
            channel
                .queue_declare(
                    queue.clone().into(),
                    QueueDeclareOptions::durable(),
                    self.work_queue_arguments(lane),
                )
                .await?;
            channel
                .queue_bind(
                    queue.into(),
                    self.work_exchange().into(),
                    lane.routing_key().into(),
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await?;
        }

        for tier in 0..self.retry_delays.len() {
            let name = self.retry_exchange(tier);
            channel
                .exchange_declare(name.clone().into(), ExchangeKind::Fanout, durable, FieldTable::default())
                .await?;
            channel
                .queue_declare(
                    name.clone().into(),
                    QueueDeclareOptions::durable(),
                    self.retry_queue_arguments(tier),
                )
                .await?;
            channel
                .queue_bind(
                    name.clone().into(),
                    name.into(),
                    ShortString::from(""),
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await?;
        }
        Ok(())
    }

    /// Removes every queue and exchange of this topology, messages included. For tests and
    /// for tearing down a throw-away deployment; never called by workers.
    pub async fn delete(&self, channel: &Channel) -> Result<(), lapin::Error> {
        let mut queues: Vec<String> = self.lanes.iter().map(|&l| self.work_queue(l)).collect();
        queues.extend(self.stages().into_iter().map(|s| self.dead_letter_queue(s)));
        queues.extend((0..self.retry_delays.len()).map(|t| self.retry_exchange(t)));
        for queue in queues {
            channel.queue_delete(queue.into(), QueueDeleteOptions::default()).await?;
        }
        let mut exchanges = vec![self.work_exchange(), self.dead_letter_exchange()];
        exchanges.extend((0..self.retry_delays.len()).map(|t| self.retry_exchange(t)));
        for exchange in exchanges {
            channel.exchange_delete(exchange.into(), ExchangeDeleteOptions::default()).await?;
        }
        Ok(())
    }
}

fn long_string(value: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(value))
}

#[cfg(test)]
mod tests {
    use super::*;
    use mono2mesh_core::JobId;

    #[test]
    fn lanes_round_trip_and_route_messages() {
        let all = Lane::all();
        assert_eq!(all.len(), 15, "gate, classify, 12 reconstruct categories, refine");
        for lane in &all {
            assert_eq!(lane.routing_key().parse::<Lane>().unwrap(), *lane);
        }
        assert!("reconstruct".parse::<Lane>().is_err());
        assert!("reconstruct.giraffe".parse::<Lane>().is_err());

        let job = JobId::new();
        let to_chair = StageMessage::new(job, Stage::Reconstruct, Some(Category::Chair));
        assert_eq!(Lane::for_message(&to_chair).unwrap(), Lane::Reconstruct(Category::Chair));
        let lost = StageMessage::new(job, Stage::Reconstruct, None);
        assert!(matches!(Lane::for_message(&lost), Err(QueueError::MissingCategory { .. })));
        let refine = StageMessage::new(job, Stage::Refine, Some(Category::Sofa));
        assert_eq!(Lane::for_message(&refine).unwrap(), Lane::Refine);
    }

    #[test]
    fn names_carry_the_prefix_and_retry_tiers_saturate() {
        let delays = vec![Duration::from_millis(100), Duration::from_secs(1), Duration::from_secs(10)];
        let t = Topology::new("t1", vec![Lane::Refine, Lane::Gate, Lane::Gate], delays, 4).unwrap();
        assert_eq!(t.lanes(), &[Lane::Gate, Lane::Refine]);
        assert_eq!(t.work_queue(Lane::Reconstruct(Category::Sofa)), "t1.reconstruct.sofa");
        assert_eq!(t.dead_letter_queue(Stage::Gate), "t1.gate.dlq");
        assert_eq!(t.stages(), vec![Stage::Gate, Stage::Refine]);
        // attempt 2 is the first retry
        assert_eq!(t.retry_tier(2), 0);
        assert_eq!(t.retry_tier(3), 1);
        assert_eq!(t.retry_tier(4), 2);
        assert_eq!(t.retry_tier(40), 2);
        assert_eq!(t.retry_delay(t.retry_tier(3)), Duration::from_secs(1));
        assert!(Topology::new("", vec![Lane::Gate], vec![Duration::from_secs(1)], 3).is_err());
        assert!(Topology::new("x", vec![Lane::Gate], vec![], 3).is_err());
        assert!(Topology::new("x", vec![], vec![Duration::from_secs(1)], 3).is_err());
    }
}
