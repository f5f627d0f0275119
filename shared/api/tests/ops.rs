//! `mono2mesh stats` and `/v1/stats` against a real RabbitMQ (queue depths and consumer
//! counts by passive declare) and a real Postgres (throughput, latency, reject reasons).

mod support;

use mono2mesh_api::server::{AmqpProbe, QueueProbe};
use mono2mesh_api::stats::{job_stats, queue_depths, render_table};
use mono2mesh_core::{Category, JobId, JobState, Stage, StageError, StageMessage};
use mono2mesh_infra::blob::{keys, BlobStore, LocalBlobStore};
use mono2mesh_infra::jobs::{JobStore, JobUpdate, NewJob};
use mono2mesh_infra::queue::{Lane, MessageQueue, RabbitQueue, Topology};
use mono2mesh_infra::secret::SecretUrl;
use std::sync::Arc;
use std::time::Duration;
use support::{Harness, Store};

const DEFAULT_AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

/// The broker these tests need; they fail, saying what to do, when it is not there.
async fn require_rabbitmq() -> String {
    let url = std::env::var("MONO2MESH_TEST_AMQP_URL").unwrap_or_else(|_| DEFAULT_AMQP_URL.to_string());
    let host = url.rsplit('@').next().and_then(|r| r.split('/').next()).unwrap_or("127.0.0.1:5672").to_string();
    match tokio::time::timeout(Duration::from_secs(3), tokio::net::TcpStream::connect(host.as_str())).await {
        Ok(Ok(_)) => url,
        _ => panic!(
            "RabbitMQ is not reachable at {host}: these tests need a real broker. Start one with \
             `bash scripts/services.sh` or set MONO2MESH_TEST_AMQP_URL."
        ),
    }
}

async fn submit(jobs: &JobStore, batch: &str, n: u8) -> JobId {
    let id = JobId::new();
    let new = NewJob {
        id,
        batch: batch.into(),
        input_key: keys::input(id, "photo.png").unwrap(),
        content_hash: format!("hash-{n}"),
        external_id: None,
        category: None,
        size: None,
    };
    jobs.submit(&new).await.unwrap().job.id
}


/// How long an unused test queue outlives the test (`x-expires`).
const TEST_EXPIRY: Duration = Duration::from_secs(600);
#[tokio::test]
async fn stats_report_queue_depths_consumers_throughput_and_reject_reasons() {
    let url = require_rabbitmq().await;
    let prefix = format!("test-api-stats-{}", uuid::Uuid::new_v4().simple());
    let lanes = vec![Lane::Gate, Lane::Classify, Lane::Reconstruct(Category::Chair), Lane::Refine];
    // Queues and exchanges go away on their own once the test is done with them.
    let topology = Topology::new(prefix.clone(), lanes, vec![Duration::from_secs(1)], 3).unwrap().with_expiry(TEST_EXPIRY);
    let secret_url = SecretUrl::new(url.clone());
    let rabbit = RabbitQueue::connect(&secret_url, topology.clone()).await.unwrap();
    for _ in 0..3 {
        rabbit.publish(&StageMessage::new(JobId::new(), Stage::Gate, None)).await.unwrap();
    }
    let mut refine_consumer = rabbit.consume(&[Lane::Refine], 1).await.unwrap();

    let depths = queue_depths(&secret_url, &topology).await.unwrap();
    let find = |name: &str| depths.iter().find(|d| d.queue == format!("{prefix}.{name}")).unwrap_or_else(|| panic!("{name} in {depths:?}"));
    assert_eq!((find("gate").messages, find("gate").consumers), (Some(3), Some(0)));
    assert_eq!((find("refine").messages, find("refine").consumers), (Some(0), Some(1)));
    assert_eq!(find("reconstruct.chair").lane.as_deref(), Some("reconstruct.chair"));
    assert!(find("gate.dlq").dead_letter);
    assert_eq!(depths.len(), 4 + 4, "four work queues and four dead-letter queues");

    // Queues that were never declared are reported missing, not created.
    let absent = Topology::new(format!("{prefix}-absent"), vec![Lane::Gate], vec![Duration::from_secs(1)], 3).unwrap();
    let missing = queue_depths(&secret_url, &absent).await.unwrap();
    assert!(missing.iter().all(|d| d.messages.is_none() && d.consumers.is_none()), "{missing:?}");
    assert!(queue_depths(&secret_url, &absent).await.unwrap().iter().all(|d| d.messages.is_none()), "still not created");

    // Job store side: 3 jobs, 2 gated, 1 rejected with a reason, 1 failed classify attempt.
    let probe = Arc::new(AmqpProbe::new(secret_url.clone(), topology.clone(), Duration::from_secs(60)));
    let h = {
        let dir = tempfile::tempdir().unwrap();
        let blobs: Arc<dyn BlobStore> = Arc::new(LocalBlobStore::new(dir.path()));
        Harness::start(Store::Local(dir), blobs, QueueProbe::Amqp(probe.clone())).await
    };
    let jobs = h.jobs().clone();
    let ids = [submit(&jobs, "ops", 1).await, submit(&jobs, "ops", 2).await, submit(&jobs, "ops", 3).await];
    for id in &ids[..2] {
        jobs.advance(*id, Some(Stage::Gate), JobState::Gated, JobUpdate::default()).await.unwrap();
    }
    let reason = "blur variance 12.0 below 100.0";
    let reject = JobUpdate { error: Some(reason.into()), ..JobUpdate::default() };
    jobs.advance(ids[2], Some(Stage::Gate), JobState::Rejected, reject).await.unwrap();
    // Another photo rejected for the same kind of reason with other scores, and one
    // rejected for another reason: two kinds, counted by kind.
    let more = [submit(&jobs, "ops", 4).await, submit(&jobs, "ops", 5).await];
    let same_kind = JobUpdate { error: Some("blur variance 47.5 below 100.0".into()), ..JobUpdate::default() };
    jobs.advance(more[0], Some(Stage::Gate), JobState::Rejected, same_kind).await.unwrap();
    let other_kind = JobUpdate { error: Some("the file is empty (0 bytes)".into()), ..JobUpdate::default() };
    jobs.advance(more[1], Some(Stage::Gate), JobState::Rejected, other_kind).await.unwrap();
    jobs.record_failure(ids[0], Stage::Classify, &StageError::retryable("database restarting")).await.unwrap();

    let stats = job_stats(&jobs, Duration::from_secs(3600)).await.unwrap();
    let gate = stats.report.stages.iter().find(|s| s.stage == Stage::Gate).unwrap();
    assert_eq!(gate.completed, 2);
    assert!(gate.latency_p50_ms.is_some() && gate.latency_p95_ms >= gate.latency_p50_ms);
    assert_eq!(stats.report.stages.iter().find(|s| s.stage == Stage::Refine).unwrap().completed, 0);
    assert_eq!((stats.report.rejected, stats.report.failed), (3, 0));
    let kinds: Vec<(&str, i64, &str)> =
        stats.reject_reasons.iter().map(|r| (r.reason.as_str(), r.jobs, r.example.as_str())).collect();
    assert_eq!(
        kinds,
        [("blur variance N below N", 2, reason), ("the file is empty (N bytes)", 1, "the file is empty (0 bytes)")]
    );
    assert_eq!(stats.failures.iter().find(|f| f.stage == Stage::Classify).unwrap().failed_attempts, 1);

    let mut with_queues = stats.clone();
    with_queues.queues = depths.clone();
    let table = render_table(&with_queues);
    let gate_row = table.lines().find(|l| l.starts_with("gate ")).unwrap_or_else(|| panic!("{table}"));
    assert_eq!(gate_row.split_whitespace().nth(1), Some("2"), "{gate_row}");
    let queue_row = table.lines().find(|l| l.starts_with(&format!("{prefix}.gate "))).unwrap_or_else(|| panic!("{table}"));
    assert_eq!(queue_row.split_whitespace().skip(1).collect::<Vec<_>>(), ["3", "0"]);
    assert!(table.contains(reason), "{table}");

    // The same over HTTP, with the broker asked by the server.
    let body: serde_json::Value = h.http.get(h.url("/v1/stats?since=1h")).send().await.unwrap().json().await.unwrap();
    assert_eq!(body["window_secs"], 3600);
    assert_eq!(body["rejected"], 3);
    assert_eq!(body["reject_reasons"][0]["reason"], "blur variance N below N");
    let gate_queue = body["queues"].as_array().unwrap().iter().find(|q| q["queue"] == format!("{prefix}.gate")).cloned();
    assert_eq!(gate_queue.map(|q| (q["messages"].clone(), q["consumers"].clone())), Some((3.into(), 0.into())));
    let page = h.http.get(h.url("/v1/status")).send().await.unwrap().text().await.unwrap();
    assert!(page.contains(&format!("<td class=l>{prefix}.gate</td><td>3</td><td>0</td>")), "queue row on the status page");

    refine_consumer.cancel().await.unwrap();
    rabbit.delete_topology().await.unwrap();
    rabbit.close().await.unwrap();
    h.finish().await;
}

/// `/v1/stats` asks the broker over one kept connection, at most once per cache window,
/// and an unreachable broker leaves the stats without depths (and a note), not a 5xx.
#[tokio::test]
async fn the_stats_probe_keeps_one_connection_and_caches_depths() {
    let url = SecretUrl::new(require_rabbitmq().await);
    let prefix = format!("test-api-probe-{}", uuid::Uuid::new_v4().simple());
    let topology = Topology::new(prefix.clone(), vec![Lane::Gate], vec![Duration::from_secs(1)], 3).unwrap().with_expiry(TEST_EXPIRY);
    let rabbit = RabbitQueue::connect(&url, topology.clone()).await.unwrap();
    rabbit.publish(&StageMessage::new(JobId::new(), Stage::Gate, None)).await.unwrap();
    let gate_depth = |depths: &[mono2mesh_api::stats::QueueDepth]| {
        depths.iter().find(|d| d.queue == format!("{prefix}.gate")).and_then(|d| d.messages)
    };

    // No caching: every call asks the broker, all on the one connection.
    let uncached = AmqpProbe::new(url.clone(), topology.clone(), Duration::ZERO);
    for _ in 0..3 {
        assert_eq!(gate_depth(&uncached.depths().await.unwrap()), Some(1));
    }
    assert_eq!((uncached.broker_reads(), uncached.connections_opened()), (3, 1));

    // Over HTTP with a cache window: two requests, one broker read, one connection.
    let probe = Arc::new(AmqpProbe::new(url.clone(), topology.clone(), Duration::from_secs(60)));
    let h = {
        let dir = tempfile::tempdir().unwrap();
        let blobs: Arc<dyn BlobStore> = Arc::new(LocalBlobStore::new(dir.path()));
        Harness::start(Store::Local(dir), blobs, QueueProbe::Amqp(probe.clone())).await
    };
    let gate_messages = |body: &serde_json::Value| {
        body["queues"].as_array().unwrap().iter().find(|q| q["queue"] == format!("{prefix}.gate")).map(|q| q["messages"].clone())
    };
    let first: serde_json::Value = h.http.get(h.url("/v1/stats")).send().await.unwrap().json().await.unwrap();
    assert_eq!(gate_messages(&first), Some(1.into()), "{first}");
    rabbit.publish(&StageMessage::new(JobId::new(), Stage::Gate, None)).await.unwrap();
    let second: serde_json::Value = h.http.get(h.url("/v1/stats")).send().await.unwrap().json().await.unwrap();
    assert_eq!(gate_messages(&second), Some(1.into()), "the cached depth, within the window: {second}");
    assert_eq!((probe.broker_reads(), probe.connections_opened()), (1, 1));
    h.finish().await;

    // No broker there: the stats still come, without depths and saying why.
    let dead = SecretUrl::new("amqp://guest:guest@127.0.0.1:1/%2f");
    let unreachable = Arc::new(AmqpProbe::new(dead, topology.clone(), Duration::ZERO));
    let h = {
        let dir = tempfile::tempdir().unwrap();
        let blobs: Arc<dyn BlobStore> = Arc::new(LocalBlobStore::new(dir.path()));
        Harness::start(Store::Local(dir), blobs, QueueProbe::Amqp(unreachable.clone())).await
    };
    let response = h.http.get(h.url("/v1/stats")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["queues"], serde_json::json!([]), "{body}");
    assert!(body["queues_note"].as_str().is_some_and(|n| n.starts_with("broker unreachable")), "{body}");
    assert!(!body.to_string().contains("guest:guest"), "the broker's credentials stay out: {body}");
    h.finish().await;

    rabbit.delete_topology().await.unwrap();
    rabbit.close().await.unwrap();
}
