//! Ingestion through the outbox against real Postgres, RabbitMQ and S3 (`PipelineRig`):
//! a submission publishes at once when the broker confirms; when it cannot, the
//! submission still succeeds with the job and its gate message recorded, and a relay,
//! a re-submission or the end of `mono2mesh submit` publishes it exactly once.

mod support;

use bytes::Bytes;
use mono2mesh_api::bulk::{flush_outbox, submit_all};
use mono2mesh_api::ingest::{Ingest, PhotoMeta, PUBLISHED_EVENT};
use mono2mesh_api::manifest::read_source;
use mono2mesh_core::{JobId, JobState};
use mono2mesh_infra::blob::BlobStore;
use mono2mesh_infra::jobs::JobStore;
use mono2mesh_infra::outbox::OutboxRelay;
use mono2mesh_infra::queue::{Lane, MessageQueue, RabbitQueue};
use mono2mesh_infra::secret::SecretUrl;
use mono2mesh_testkit::rig::{test_amqp_url, PipelineRig};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::png;

fn ingest(rig: &PipelineRig, queue: Arc<dyn MessageQueue>) -> Ingest {
    let blobs: Arc<dyn BlobStore> = Arc::new(rig.s3.store.clone());
    Ingest {
        jobs: rig.jobs().clone(),
        blobs,
        queue,
        max_photo_bytes: 1 << 20,
        default_webhook: None,
        allow_private_webhooks: true,
    }
}

/// A connection to the rig's topology that is closed already: every publish fails, as
/// with a broker that went away between the insert and the publish.
async fn broken_queue(rig: &PipelineRig) -> Arc<dyn MessageQueue> {
    let queue = RabbitQueue::connect(&SecretUrl::new(test_amqp_url()), rig.queue.topology().clone()).await.unwrap();
    queue.close().await.unwrap();
    Arc::new(queue)
}

fn meta(batch: &str, sku: &str) -> PhotoMeta {
    PhotoMeta { batch: batch.into(), external_id: Some(sku.into()), ..PhotoMeta::default() }
}

async fn event_names(jobs: &JobStore, id: JobId) -> Vec<String> {
    jobs.events(id).await.unwrap().into_iter().map(|e| e.event).collect()
}

#[tokio::test]
async fn a_submission_publishes_at_once_when_the_broker_confirms() {
    let rig = PipelineRig::start("ingest-fast").await;
    let ingest = ingest(&rig, Arc::new(rig.queue.clone()));
    let submitted = ingest.submit_photo(Bytes::from(png(1, 16)), &meta("fast", "SKU-1")).await.unwrap();
    assert!(submitted.created && submitted.published && !submitted.pending, "{submitted:?}");
    let id = submitted.job.id;
    assert_eq!(event_names(rig.jobs(), id).await, ["submitted", PUBLISHED_EVENT]);
    let published = rig.jobs().events(id).await.unwrap().pop().unwrap();
    assert_eq!((published.detail["stage"].as_str(), published.detail["via"].as_str()), (Some("gate"), Some("submit")));
    assert!(rig.jobs().outbox().for_job(id).await.unwrap().is_empty(), "the row goes with the publish");
    assert_eq!(rig.drain_lane(Lane::Gate).await, HashMap::from([(id, 1)]));

    // The same photo again: the same job, nothing published twice.
    let again = ingest.submit_photo(Bytes::from(png(1, 16)), &meta("fast", "SKU-1")).await.unwrap();
    assert_eq!((again.job.id, again.created, again.published, again.pending), (id, false, false, false));
    assert!(rig.drain_lane(Lane::Gate).await.is_empty());
    rig.finish().await;
}

#[tokio::test]
async fn a_submission_the_broker_cannot_take_is_recorded_and_relayed_once_later() {
    let rig = PipelineRig::start("ingest-down").await;
    let down = ingest(&rig, broken_queue(&rig).await);
    let started = Instant::now();
    let submitted = down.submit_photo(Bytes::from(png(2, 16)), &meta("down", "SKU-2")).await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(10), "a dead broker does not hold the submission");
    assert!(submitted.created && !submitted.published && submitted.pending, "{submitted:?}");
    let id = submitted.job.id;

    // The job and its message are both stored; nothing reached the lane.
    let job = rig.jobs().get_job(id).await.unwrap();
    assert_eq!((job.state, job.external_id.as_deref()), (JobState::Submitted, Some("SKU-2")));
    assert_eq!(rig.s3.store.get(&job.input_key).await.unwrap().as_ref(), png(2, 16).as_slice());
    let waiting = rig.jobs().outbox().for_job(id).await.unwrap();
    assert_eq!(waiting.len(), 1);
    assert_eq!(waiting[0].message["stage"], "gate");
    assert!(waiting[0].last_error.is_some(), "{waiting:?}");
    assert_eq!(event_names(rig.jobs(), id).await, ["submitted"]);
    assert!(rig.drain_lane(Lane::Gate).await.is_empty());

    // A relay with a working connection publishes it, once.
    let relay = OutboxRelay::new(rig.jobs().clone(), Arc::new(rig.queue.clone()));
    assert_eq!(relay.relay_pending(10).await.unwrap(), 1);
    assert_eq!(relay.relay_pending(10).await.unwrap(), 0);
    assert_eq!(rig.drain_lane(Lane::Gate).await, HashMap::from([(id, 1)]));
    assert_eq!(event_names(rig.jobs(), id).await, ["submitted", PUBLISHED_EVENT]);
    assert!(rig.jobs().outbox().for_job(id).await.unwrap().is_empty());

    // Submitting the photo again, even through the broken queue, queues nothing more.
    let again = down.submit_photo(Bytes::from(png(2, 16)), &meta("down", "SKU-2")).await.unwrap();
    assert_eq!((again.job.id, again.created, again.published, again.pending), (id, false, false, false));
    assert!(rig.jobs().outbox().for_job(id).await.unwrap().is_empty());
    rig.finish().await;
}

#[tokio::test]
async fn a_re_submission_publishes_the_message_an_earlier_one_left_in_the_outbox() {
    let rig = PipelineRig::start("ingest-resume").await;
    let down = ingest(&rig, broken_queue(&rig).await);
    let first = down.submit_photo(Bytes::from(png(3, 16)), &meta("resume", "SKU-3")).await.unwrap();
    assert!(first.pending);
    // Still down: the resumption claims the row, fails, and leaves it pending again.
    let still_down = down.submit_photo(Bytes::from(png(3, 16)), &meta("resume", "SKU-3")).await.unwrap();
    assert!(!still_down.created && !still_down.published && still_down.pending, "{still_down:?}");

    let up = ingest(&rig, Arc::new(rig.queue.clone()));
    let resumed = up.submit_photo(Bytes::from(png(3, 16)), &meta("resume", "SKU-3")).await.unwrap();
    assert_eq!((resumed.job.id, resumed.created, resumed.published, resumed.pending), (first.job.id, false, true, false));
    assert_eq!(rig.drain_lane(Lane::Gate).await, HashMap::from([(first.job.id, 1)]));
    let attempts = rig.jobs().events(first.job.id).await.unwrap().pop().unwrap().detail["attempt"].as_i64();
    assert_eq!(attempts, Some(3), "the first submission, the failed resumption, then this one");
    rig.finish().await;
}

#[tokio::test]
async fn a_bulk_submission_during_an_outage_is_flushed_by_the_next_run() {
    let rig = PipelineRig::start("bulk-outbox").await;
    let dir = tempfile::tempdir().unwrap();
    for i in 0..3u8 {
        std::fs::write(dir.path().join(format!("p{i}.png")), png(60 + i, 16)).unwrap();
    }
    let entries = read_source(dir.path()).unwrap();
    let down = ingest(&rig, broken_queue(&rig).await);
    let report = submit_all(&down, entries.clone(), "outage", 2, |_| {}).await.unwrap();
    assert_eq!((report.created, report.pending, report.failed.len()), (3, 3, 0), "{report:?}");
    // The end of the run tries once more; the broker is still unreachable.
    assert_eq!(flush_outbox(&down, "outage").await.unwrap(), 3);
    assert!(rig.drain_lane(Lane::Gate).await.is_empty());

    // The next run, with the broker back, skips nothing it still owes: it publishes two,
    // and the one the failed flush tried waits out its back-off (2 s after a second
    // failure), so that a message the broker refuses cannot hold up the ones behind it.
    let up = ingest(&rig, Arc::new(rig.queue.clone()));
    let again = submit_all(&up, entries, "outage", 2, |_| {}).await.unwrap();
    assert_eq!((again.created, again.resumed, again.pending, again.skipped), (0, 3, 1, 0), "{again:?}");
    let deadline = Instant::now() + Duration::from_secs(5);
    while flush_outbox(&up, "outage").await.unwrap() > 0 {
        assert!(Instant::now() < deadline, "the backed-off message was not published within 5 s");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let on_lane = rig.drain_lane(Lane::Gate).await;
    assert_eq!((on_lane.len(), on_lane.values().all(|n| *n == 1)), (3, true), "{on_lane:?}");
    rig.finish().await;
}

#[tokio::test]
async fn flushing_a_batch_publishes_only_that_batch() {
    let rig = PipelineRig::start("flush-batch").await;
    let down = ingest(&rig, broken_queue(&rig).await);
    let mine = down.submit_photo(Bytes::from(png(7, 16)), &meta("mine", "A")).await.unwrap();
    let theirs = down.submit_photo(Bytes::from(png(8, 16)), &meta("theirs", "B")).await.unwrap();
    assert!(mine.pending && theirs.pending);
    let up = ingest(&rig, Arc::new(rig.queue.clone()));
    assert_eq!(flush_outbox(&up, "mine").await.unwrap(), 0);
    assert_eq!(rig.drain_lane(Lane::Gate).await, HashMap::from([(mine.job.id, 1)]));
    assert_eq!(up.jobs.outbox().pending_count(Some("theirs")).await.unwrap(), 1);
    rig.finish().await;
}
