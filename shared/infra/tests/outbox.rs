//! The outbox of stage messages against a real Postgres and RabbitMQ (a fresh database
//! and a topology with a random prefix per test, deleted at the end): a job recorded
//! but never published is repaired by the relay, a broker failure gives rows back for
//! later, and concurrent relays publish every row exactly once.

use mono2mesh_core::{JobId, Stage, StageMessage};
use mono2mesh_infra::blob::keys;
use mono2mesh_infra::jobs::{JobStore, NewJob, QueuedSubmission};
use mono2mesh_infra::outbox::{OutboxRelay, RelayError, Via};
use mono2mesh_infra::queue::{Lane, MessageQueue, RabbitQueue};
use mono2mesh_infra::secret::SecretUrl;
use mono2mesh_infra::store::PUBLISHED_EVENT;
use mono2mesh_testkit::rig::{test_amqp_url, PipelineRig};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

fn new_job(batch: &str, n: usize) -> NewJob {
    let id = JobId::new();
    NewJob {
        id,
        batch: batch.to_string(),
        input_key: keys::input(id, "photo.png").unwrap(),
        content_hash: format!("hash-{n}"),
        external_id: Some(format!("SKU-{n}")),
        category: None,
        size: None,
    }
}

async fn record(store: &JobStore, batch: &str, n: usize, hold: Duration) -> QueuedSubmission {
    let new = new_job(batch, n);
    let message = StageMessage::new(new.id, Stage::Gate, None);
    store.submit_with_message(&new, &message, hold, None).await.unwrap()
}

async fn event_names(store: &JobStore, id: JobId) -> Vec<String> {
    store.events(id).await.unwrap().into_iter().map(|e| e.event).collect()
}

/// A second connection to the rig's topology, as another process would hold it.
async fn another_connection(rig: &PipelineRig) -> Arc<dyn MessageQueue> {
    Arc::new(RabbitQueue::connect(&SecretUrl::new(test_amqp_url()), rig.queue.topology().clone()).await.unwrap())
}

/// A connection that is closed already: every publish fails, as with a broker that is
/// gone and not coming back within the publish's patience.
async fn closed_connection(rig: &PipelineRig) -> Arc<dyn MessageQueue> {
    let queue = another_connection(rig).await;
    queue.close().await.unwrap();
    queue
}

#[tokio::test]
async fn a_job_recorded_but_never_published_is_published_once_by_the_relay() {
    let rig = PipelineRig::start("outbox-crash").await;
    let store = rig.jobs().clone();
    let relay = OutboxRelay::new(store.clone(), Arc::new(rig.queue.clone()));

    // The submitter took the row and died before publishing: nothing to claim while
    // its hold lasts, then the relay takes it.
    let crashed = record(&store, "b", 1, Duration::from_millis(600)).await;
    let id = crashed.submission.job.id;
    assert!(crashed.submission.created);
    assert_eq!(crashed.held.as_ref().map(|e| (e.message.job_id, e.attempt)), Some((id, 1)));
    // A crash before any relay: the job and its message are both stored.
    assert_eq!(store.get_job(id).await.unwrap().id, id);
    assert_eq!(store.outbox().for_job(id).await.unwrap().len(), 1);
    assert_eq!(relay.relay_pending(10).await.unwrap(), 0, "held by its submitter");
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(relay.relay_pending(10).await.unwrap(), 1);
    assert_eq!(relay.relay_pending(10).await.unwrap(), 0, "gone once published");

    // A row written with no hold is the relays' at once.
    let free = record(&store, "b", 2, Duration::ZERO).await;
    assert!(free.held.is_none());
    let other = free.submission.job.id;
    assert_eq!(relay.relay_pending(10).await.unwrap(), 1);

    let on_lane = rig.drain_lane(Lane::Gate).await;
    assert_eq!(on_lane, HashMap::from([(id, 1), (other, 1)]));
    assert_eq!(event_names(&store, id).await, ["submitted", PUBLISHED_EVENT]);
    let published = store.events(id).await.unwrap().pop().unwrap();
    assert_eq!((published.detail["via"].as_str(), published.detail["attempt"].as_i64()), (Some("relay"), Some(2)));
    assert_eq!(store.outbox().pending_count(None).await.unwrap(), 0);

    // The same content again is the existing job: nothing new is queued.
    let again = store
        .submit_with_message(
            &NewJob { content_hash: "hash-1".into(), ..new_job("b", 1) },
            &StageMessage::new(JobId::new(), Stage::Gate, None),
            Duration::ZERO,
            None,
        )
        .await;
    assert!(again.is_err(), "a message for another job than the one submitted is refused");
    let twin = new_job("b", 1);
    let again = store.submit_with_message(&twin, &StageMessage::new(twin.id, Stage::Gate, None), Duration::ZERO, None).await.unwrap();
    assert!(!again.submission.created && again.held.is_none());
    assert_eq!((again.submission.job.id, store.outbox().pending_count(None).await.unwrap()), (id, 0));
    rig.finish().await;
}

#[tokio::test]
async fn a_failed_publish_gives_the_row_back_with_its_error_and_the_rest_untried() {
    let rig = PipelineRig::start("outbox-fail").await;
    let store = rig.jobs().clone();
    let ids: Vec<JobId> = {
        let mut ids = Vec::new();
        for n in 0..3 {
            ids.push(record(&store, "b", n, Duration::ZERO).await.submission.job.id);
        }
        ids
    };
    let broken = OutboxRelay::new(store.clone(), closed_connection(&rig).await);
    let err = broken.relay_pending(10).await.unwrap_err();
    assert!(matches!(err, RelayError::Publish { job, .. } if job == ids[0]), "{err}");
    assert!(!err.published());

    let first = store.outbox().for_job(ids[0]).await.unwrap().remove(0);
    assert_eq!(first.attempts, 1);
    assert!(first.last_error.as_deref().is_some_and(|e| e.contains("closed")), "{first:?}");
    assert!(first.next_attempt_at > chrono::Utc::now(), "backs off after a relay's failure");
    for id in &ids[1..] {
        let row = store.outbox().for_job(*id).await.unwrap().remove(0);
        assert_eq!((row.attempts, row.last_error), (0, None), "untried rows are given back untouched");
        assert!(row.next_attempt_at <= chrono::Utc::now());
    }
    assert_eq!(event_names(&store, ids[0]).await, ["submitted"]);

    // A working relay publishes the two that are due now, and the first after its back-off.
    let relay = OutboxRelay::new(store.clone(), Arc::new(rig.queue.clone()));
    assert_eq!(relay.relay_pending(10).await.unwrap(), 2);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(relay.relay_pending(10).await.unwrap(), 1);
    let on_lane = rig.drain_lane(Lane::Gate).await;
    assert_eq!(on_lane, ids.iter().map(|id| (*id, 1)).collect::<HashMap<_, _>>());
    rig.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_relays_publish_each_of_fifty_rows_exactly_once() {
    let rig = PipelineRig::start("outbox-race").await;
    let store = rig.jobs().clone();
    let mut ids = Vec::new();
    for n in 0..50 {
        ids.push(record(&store, "race", n, Duration::ZERO).await.submission.job.id);
    }
    let relays = [
        OutboxRelay::new(store.clone(), another_connection(&rig).await),
        OutboxRelay::new(store.clone(), another_connection(&rig).await),
    ];
    // Small passes, so the two interleave many claims over the same rows.
    let work = relays.iter().map(|relay| async move {
        let mut total = 0;
        loop {
            match relay.relay_pending(3).await.unwrap() {
                0 => return total,
                n => total += n,
            }
        }
    });
    let totals = futures::future::join_all(work).await;
    assert_eq!(totals.iter().sum::<usize>(), 50, "{totals:?}");

    let on_lane = rig.drain_lane(Lane::Gate).await;
    assert_eq!(on_lane.len(), 50, "every job's message arrived");
    assert!(on_lane.values().all(|n| *n == 1), "none twice: {on_lane:?}");
    for id in &ids {
        assert_eq!(event_names(&store, *id).await, ["submitted", PUBLISHED_EVENT]);
    }
    assert_eq!(store.outbox().pending_count(Some("race")).await.unwrap(), 0);
    rig.finish().await;
}

#[tokio::test]
async fn the_background_relay_publishes_what_appears_and_stops_on_shutdown() {
    let rig = PipelineRig::start("outbox-loop").await;
    let store = rig.jobs().clone();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(mono2mesh_infra::outbox::run_outbox_relay(
        store.clone(),
        Arc::new(rig.queue.clone()),
        Duration::from_millis(50),
        async move {
            let _ = stopped.await;
        },
    ));
    let id = record(&store, "loop", 1, Duration::ZERO).await.submission.job.id;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while store.outbox().pending_count(None).await.unwrap() > 0 {
        assert!(tokio::time::Instant::now() < deadline, "the relay did not publish within 10 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(5), running).await.expect("relay stops on shutdown").unwrap();
    assert_eq!(rig.drain_lane(Lane::Gate).await, HashMap::from([(id, 1)]));
    assert_eq!(event_names(&store, id).await, ["submitted", PUBLISHED_EVENT]);
    rig.finish().await;
}

#[tokio::test]
async fn a_submitter_publishing_its_held_row_records_it_once() {
    let rig = PipelineRig::start("outbox-held").await;
    let store = rig.jobs().clone();
    let queued = record(&store, "b", 1, Duration::from_secs(30)).await;
    let entry = queued.held.unwrap();
    let relay = OutboxRelay::new(store.clone(), Arc::new(rig.queue.clone()));
    relay.publish(&entry, Via::Submit).await.unwrap();
    // A second publish of the same row (a relay whose lease ran out) reaches the broker
    // but writes no second event.
    relay.publish(&entry, Via::Relay).await.unwrap();
    let id = entry.message.job_id;
    assert_eq!(event_names(&store, id).await, ["submitted", PUBLISHED_EVENT]);
    assert_eq!(store.events(id).await.unwrap()[1].detail["via"], "submit");
    assert_eq!(rig.drain_lane(Lane::Gate).await, HashMap::from([(id, 2)]));
    rig.finish().await;
}
