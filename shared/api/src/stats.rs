//! Operations view for `mono2mesh stats` and `GET /v1/stats`: per-stage throughput and
//! latency from Postgres, queue depths and consumer counts from RabbitMQ, and the most
//! frequent reject reasons.

use lapin::options::QueueDeclareOptions;
use lapin::types::FieldTable;
use lapin::{Connection, ConnectionProperties};
use mono2mesh_core::Stage;
use mono2mesh_infra::jobs::{JobStore, JobStoreError, StatsReport};
use mono2mesh_infra::queue::{Lane, QueueError, Topology};
use mono2mesh_infra::secret::SecretUrl;
use serde::Serialize;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

pub use mono2mesh_infra::store::{RejectReason, StageFailures};

/// Reject reasons listed at most.
const TOP_REASONS: i64 = 10;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid duration {0:?}: expected a number with a unit, e.g. 90s, 15m, 1h, 2d")]
pub struct BadDuration(pub String);

/// Parses `90s`, `15m`, `1h`, `2d` (a bare number is seconds).
pub fn parse_window(text: &str) -> Result<Duration, BadDuration> {
    let text = text.trim();
    let bad = || BadDuration(text.to_string());
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().map_err(|_| bad())?;
    let seconds = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(bad()),
    };
    if number == 0 {
        return Err(bad());
    }
    number.checked_mul(seconds).map(Duration::from_secs).ok_or_else(bad)
}

/// One RabbitMQ queue as a passive declare reports it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct QueueDepth {
    pub queue: String,
    pub stage: Stage,
    /// The routing key of a work queue; `None` for a dead-letter queue.
    pub lane: Option<String>,
    pub dead_letter: bool,
    /// `None` when the queue does not exist (topology never declared).
    pub messages: Option<u32>,
    pub consumers: Option<u32>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct OpsStats {
    /// Per-stage throughput and latency, rejections and failures in the window.
    #[serde(flatten)]
    pub report: StatsReport,
    pub reject_reasons: Vec<RejectReason>,
    pub failures: Vec<StageFailures>,
    /// Empty when no broker was asked (in-memory queue, or `--no-queues`).
    pub queues: Vec<QueueDepth>,
    /// Why queue depths are missing, when they are.
    pub queues_note: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum StatsError {
    #[error(transparent)]
    Jobs(#[from] JobStoreError),
    #[error(transparent)]
    Queue(#[from] QueueError),
}

/// Database part of the stats (throughput, latency, rejections, failed attempts).
pub async fn job_stats(jobs: &JobStore, window: Duration) -> Result<OpsStats, StatsError> {
    Ok(OpsStats {
        report: jobs.stats(window).await?,
        reject_reasons: jobs.ops().reject_reasons(window, TOP_REASONS).await?,
        failures: jobs.ops().failed_attempts(window).await?,
        queues: Vec::new(),
        queues_note: None,
    })
}

/// Message and consumer counts of every work and dead-letter queue of `topology`, by
/// passive declares (which never create anything), on a connection of its own. A
/// missing queue is reported as such. For the one-shot `mono2mesh stats`; the server
/// uses [`AmqpProbe`].
pub async fn queue_depths(url: &SecretUrl, topology: &Topology) -> Result<Vec<QueueDepth>, QueueError> {
    let connection = connect(url).await?;
    let depths = depths_on(&connection, topology).await;
    let _ = connection.close(200, "stats read".into()).await;
    depths
}

async fn connect(url: &SecretUrl) -> Result<Connection, QueueError> {
    Connection::connect(url.expose(), ConnectionProperties::default())
        .await
        .map_err(|source| QueueError::Connect { url: url.redacted(), source })
}

async fn depths_on(connection: &Connection, topology: &Topology) -> Result<Vec<QueueDepth>, QueueError> {
    let mut targets: Vec<(String, Stage, Option<String>)> = topology
        .lanes()
        .iter()
        .map(|lane: &Lane| (topology.work_queue(*lane), lane.stage(), Some(lane.routing_key())))
        .collect();
    targets.extend(topology.stages().into_iter().map(|s| (topology.dead_letter_queue(s), s, None)));

    let mut channel = connection.create_channel().await?;
    let mut depths = Vec::with_capacity(targets.len());
    for (queue, stage, lane) in targets {
        let passive = QueueDeclareOptions { passive: true, ..QueueDeclareOptions::default() };
        let declared = channel.queue_declare(queue.clone().into(), passive, FieldTable::default()).await;
        let (messages, consumers) = match declared {
            Ok(q) => (Some(q.message_count()), Some(q.consumer_count())),
            Err(_) => {
                // A failed passive declare (404) closes the channel; the queue is absent.
                channel = connection.create_channel().await?;
                (None, None)
            }
        };
        depths.push(QueueDepth { queue, stage, dead_letter: lane.is_none(), lane, messages, consumers });
    }
    let _ = channel.close(200, "stats read".into()).await;
    Ok(depths)
}

/// Longest wait for the broker when (re)connecting: an unreachable one must not hold
/// up `/v1/stats` for a TCP time-out.
const PROBE_CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// Why the probe has no depths to give (the broker's error, as text so that it can be
/// cached and handed to every caller in the window).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ProbeError(pub String);

/// Queue depths for the server's `/v1/stats` and status page: one AMQP connection kept
/// open across requests (replaced when it fails), and the answer, depths or error,
/// reused for `ttl` so that a busy dashboard asks the broker at most once per window.
pub struct AmqpProbe {
    url: SecretUrl,
    topology: Topology,
    ttl: Duration,
    state: tokio::sync::Mutex<ProbeState>,
    connections_opened: AtomicU64,
    broker_reads: AtomicU64,
}

#[derive(Default)]
struct ProbeState {
    connection: Option<Connection>,
    cached: Option<(Instant, Result<Vec<QueueDepth>, ProbeError>)>,
}

impl std::fmt::Debug for AmqpProbe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AmqpProbe").field("url", &self.url.redacted()).field("ttl", &self.ttl).finish_non_exhaustive()
    }
}

impl AmqpProbe {
    /// Depths are cached this long by default.
    pub const DEFAULT_TTL: Duration = Duration::from_secs(5);

    /// Connects lazily, on the first request.
    pub fn new(url: SecretUrl, topology: Topology, ttl: Duration) -> AmqpProbe {
        AmqpProbe {
            url,
            topology,
            ttl,
            state: tokio::sync::Mutex::new(ProbeState::default()),
            connections_opened: AtomicU64::new(0),
            broker_reads: AtomicU64::new(0),
        }
    }

    /// AMQP connections opened so far (one, while the broker stays up).
    pub fn connections_opened(&self) -> u64 {
        self.connections_opened.load(Ordering::Relaxed)
    }

    /// Times the broker was asked (at most once per `ttl`).
    pub fn broker_reads(&self) -> u64 {
        self.broker_reads.load(Ordering::Relaxed)
    }

    /// The depths, from the cache while it is fresh. Callers arriving during a refresh
    /// wait for it and share its answer.
    pub async fn depths(&self) -> Result<Vec<QueueDepth>, ProbeError> {
        let mut state = self.state.lock().await;
        if let Some((at, answer)) = &state.cached {
            if at.elapsed() < self.ttl {
                return answer.clone();
            }
        }
        self.broker_reads.fetch_add(1, Ordering::Relaxed);
        let had_connection = state.connection.as_ref().is_some_and(|c| c.status().connected());
        let mut answer = self.read(&mut state).await;
        if answer.is_err() && had_connection {
            // A kept connection can go stale (a broker restart): one try on a fresh one.
            answer = self.read(&mut state).await;
        }
        state.cached = Some((Instant::now(), answer.clone()));
        answer
    }

    /// One read on the kept connection, opening it first if needed. A failed read
    /// drops the connection, so the next read starts on a new one.
    async fn read(&self, state: &mut ProbeState) -> Result<Vec<QueueDepth>, ProbeError> {
        if !state.connection.as_ref().is_some_and(|c| c.status().connected()) {
            state.connection = None;
            self.connections_opened.fetch_add(1, Ordering::Relaxed);
            let connected = tokio::time::timeout(PROBE_CONNECT_TIMEOUT, connect(&self.url))
                .await
                .map_err(|_| ProbeError(format!("no answer from {} within {PROBE_CONNECT_TIMEOUT:?}", self.url.redacted())))?
                .map_err(|e| ProbeError(e.to_string()))?;
            state.connection = Some(connected);
        }
        let Some(connection) = state.connection.as_ref() else { return Err(ProbeError("no connection".into())) };
        match depths_on(connection, &self.topology).await {
            Ok(depths) => Ok(depths),
            Err(e) => {
                if let Some(connection) = state.connection.take() {
                    let _ = tokio::time::timeout(PROBE_CONNECT_TIMEOUT, connection.close(200, "stats probe failed".into())).await;
                }
                Err(ProbeError(e.to_string()))
            }
        }
    }
}

fn ms(value: Option<f64>) -> String {
    match value {
        None => "-".to_string(),
        Some(v) if v >= 10_000.0 => format!("{:.1}s", v / 1000.0),
        Some(v) => format!("{v:.0}ms"),
    }
}

fn count(value: Option<u32>) -> String {
    value.map_or_else(|| "missing".to_string(), |v| v.to_string())
}

/// The terminal table `mono2mesh stats` prints.
pub fn render_table(stats: &OpsStats) -> String {
    let mut out = String::new();
    let window = humanize_secs(stats.report.window_secs);
    let _ = writeln!(out, "Stages, last {window} (latency = previous step to stage done, queue wait included)");
    let _ = writeln!(out, "{:<12} {:>9} {:>9} {:>9} {:>9} {:>9} {:>8}", "stage", "done", "per min", "p50", "p95", "mean", "retries");
    for s in &stats.report.stages {
        let failed = stats.failures.iter().find(|f| f.stage == s.stage).map_or(0, |f| f.failed_attempts);
        let _ = writeln!(
            out,
            "{:<12} {:>9} {:>9.2} {:>9} {:>9} {:>9} {:>8}",
            s.stage.name(),
            s.completed,
            s.per_minute,
            ms(s.latency_p50_ms),
            ms(s.latency_p95_ms),
            ms(s.latency_mean_ms),
            failed
        );
    }
    let _ = writeln!(
        out,
        "rejected {}  failed {}  needs review {}",
        stats.report.rejected, stats.report.failed, stats.report.needs_review
    );
    let _ = writeln!(out);
    if stats.queues.is_empty() {
        let note = stats.queues_note.as_deref().unwrap_or("no broker asked");
        let _ = writeln!(out, "Queues: {note}");
    } else {
        let _ = writeln!(out, "{:<44} {:>9} {:>9}", "queue", "ready", "consumers");
        for q in &stats.queues {
            let _ = writeln!(out, "{:<44} {:>9} {:>9}", q.queue, count(q.messages), count(q.consumers));
        }
    }
    if !stats.reject_reasons.is_empty() {
        let _ = writeln!(out);
        let _ = writeln!(out, "Reject reasons, last {window}");
        for r in &stats.reject_reasons {
            let _ = writeln!(out, "{:>7}  {}", r.jobs, r.reason);
            if r.example != r.reason {
                let _ = writeln!(out, "{:>7}  e.g. {}", "", r.example);
            }
        }
    }
    out
}

fn humanize_secs(secs: u64) -> String {
    match secs {
        s if s % 86_400 == 0 => format!("{}d", s / 86_400),
        s if s % 3600 == 0 => format!("{}h", s / 3600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_parse_with_units() {
        assert_eq!(parse_window("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_window("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_window("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_window(" 2d "), Ok(Duration::from_secs(172_800)));
        for bad in ["", "h", "1w", "-1h", "0s", "1.5h", "99999999999999999999d"] {
            assert!(parse_window(bad).is_err(), "{bad:?}");
        }
        assert_eq!(humanize_secs(3600), "1h");
        assert_eq!(humanize_secs(90), "90s");
    }
}
