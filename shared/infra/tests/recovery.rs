//! Recovery against real parts: a photo that kills its worker is failed alone and the
//! jobs beside it finish; dead letters end their jobs; stuck jobs are re-published,
//! then failed. Each scenario runs on the in-memory queue with the in-memory job
//! store, and on RabbitMQ with Postgres (both must be reachable; see queue_support).

#[macro_use]
mod queue_support;

use mono2mesh_core::{Category, JobId, JobState, Stage, StageError, StageMessage};
use mono2mesh_infra::blob::keys;
use mono2mesh_infra::config::RecoverySettings;
use mono2mesh_infra::jobs::{JobUpdate, NewJob};
use mono2mesh_infra::pipeline::StoreOutcomes;
use mono2mesh_infra::queue::Lane;
use mono2mesh_infra::recovery::{DeadLetterReport, Janitor, SweepReport};
use mono2mesh_infra::repository::{JobRepository, MemoryJobStore};
use mono2mesh_infra::runtime::{Next, RunReport, RuntimeSettings};
use mono2mesh_testkit::services::TestDatabase;
use queue_support::*;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

const WAIT: Duration = Duration::from_secs(30);

/// The job store of a scenario: memory beside the memory queue, a fresh Postgres
/// database beside RabbitMQ (kept alive by the fixture's owner).
async fn store_for(fixture: &Fixture) -> (Arc<dyn JobRepository>, Option<TestDatabase>) {
    if fixture.is_rabbit() {
        let db = TestDatabase::create().await;
        (Arc::new(db.store.clone()), Some(db))
    } else {
        (Arc::new(MemoryJobStore::new()), None)
    }
}

async fn submit(store: &dyn JobRepository, n: usize, category: Option<Category>) -> Vec<JobId> {
    let mut ids = Vec::new();
    for i in 0..n {
        let id = JobId::new();
        let new = NewJob {
            id,
            batch: "recovery".into(),
            input_key: keys::input(id, "photo.png").unwrap(),
            content_hash: format!("{:064x}", i + 1 + (id.0.as_u128() as usize % 1000) * 1000),
            external_id: None,
            category,
            size: None,
        };
        ids.push(store.submit(&new).await.unwrap().job.id);
    }
    ids
}

async fn state_of(store: &dyn JobRepository, id: JobId) -> JobState {
    store.get_job(id).await.unwrap().state
}

on_both_backends! {
    a_poison_message_that_kills_its_worker_is_failed_alone => [Lane::Gate];
    dead_letters_end_their_jobs_and_leave_the_queue => [Lane::Gate, Lane::Classify];
    stuck_jobs_are_republished_then_failed => [Lane::Classify];
}

/// The worker "dies" while the poison job is being handled: its tasks are cut off
/// without settling anything (no grace), as `kill -9` would, and for RabbitMQ its
/// connection goes. Innocent jobs in flight at that moment die with it.
async fn a_poison_message_that_kills_its_worker_is_failed_alone(fixture: Fixture) {
    let (store, _db) = store_for(&fixture).await;
    let jobs = submit(store.as_ref(), 8, None).await;
    let poison = jobs[1];
    let poison_started = Arc::new(Notify::new());
    // Bumped when a worker "dies": work it had under way never completes.
    let generation = Arc::new(AtomicU64::new(0));
    let handler = {
        let store = store.clone();
        let poison_started = poison_started.clone();
        let generation = generation.clone();
        Arc::new(move |message: StageMessage| {
            let store = store.clone();
            let poison_started = poison_started.clone();
            let generation = generation.clone();
            async move {
                let born = generation.load(Ordering::SeqCst);
                if message.job_id == poison {
                    poison_started.notify_one();
                    // Never returns: the process dies around it.
                    std::future::pending::<()>().await;
                }
                // Slow enough that innocent jobs are in flight when the worker dies.
                tokio::time::sleep(Duration::from_millis(150)).await;
                if generation.load(Ordering::SeqCst) != born {
                    std::future::pending::<()>().await;
                }
                store.advance(message.job_id, Some(Stage::Gate), JobState::Gated, JobUpdate::default()).await?;
                Ok::<_, StageError>(Next::Finished)
            }
        })
    };
    let settings = RuntimeSettings {
        shutdown_grace: Duration::from_millis(1),
        max_crashes: 2,
        delivery_limit: DELIVERY_LIMIT + 1,
        ..quick_settings()
    };
    let queue = fixture.open().await;
    for id in &jobs {
        queue.publish(&StageMessage::new(*id, Stage::Gate, None)).await.unwrap();
    }
    let mut last_report = RunReport::default();
    // Two deaths on the poison job, then the third worker fails it without running it.
    for round in 0..3 {
        let queue = fixture.open().await;
        let outcomes = Arc::new(StoreOutcomes(store.clone()));
        let worker = RunningWorker::start(queue.clone(), vec![Lane::Gate], handler.clone(), outcomes, settings.clone());
        if round < 2 {
            tokio::time::timeout(WAIT, poison_started.notified()).await.expect("the poison job starts");
            // Let the innocent jobs get under way beside it (first round).
            tokio::time::sleep(Duration::from_millis(50)).await;
            generation.fetch_add(1, Ordering::SeqCst);
            worker.kill().await;
            fixture.crash(queue).await;
        } else {
            let store = store.clone();
            let jobs = jobs.clone();
            wait_until("every job gated, the poison one failed", WAIT, move || {
                let store = store.clone();
                let jobs = jobs.clone();
                async move {
                    for id in &jobs {
                        let state = state_of(store.as_ref(), *id).await;
                        let want = if *id == poison { JobState::Failed } else { JobState::Gated };
                        if state != want {
                            return false;
                        }
                    }
                    true
                }
            })
            .await;
            last_report = worker.stop().await;
            queue.close().await.unwrap();
        }
    }
    let failed = store.get_job(poison).await.unwrap();
    let reason = failed.last_error.unwrap_or_default();
    assert!(reason.contains("gate worker died 2 time(s)"), "the reason says what happened: {reason}");
    assert_eq!(last_report.crash_failed, 1, "the third worker failed the poison job without running it");
    // The innocent jobs in flight at either death were run alone afterwards, so none was
    // counted twice and failed with the poison one; each is gated exactly once.
    for id in jobs.iter().filter(|id| **id != poison) {
        let events: Vec<String> = store.events(*id).await.unwrap().into_iter().map(|e| e.event).collect();
        assert_eq!(events, ["submitted", "gated"], "job {id}");
    }
    let events = store.events(poison).await.unwrap();
    assert_eq!(events.iter().filter(|e| e.event == "failed").count(), 1);
    fixture.cleanup().await;
}

async fn dead_letters_end_their_jobs_and_leave_the_queue(fixture: Fixture) {
    let (store, _db) = store_for(&fixture).await;
    let jobs = submit(store.as_ref(), 3, None).await;
    let (waiting, finished, moved_on) = (jobs[0], jobs[1], jobs[2]);
    // `finished` was failed by the runtime already; `moved_on` got past the gate anyway.
    store.advance(finished, Some(Stage::Gate), JobState::Failed, JobUpdate { error: Some("gave up".into()), ..JobUpdate::default() }).await.unwrap();
    store.advance(moved_on, Some(Stage::Gate), JobState::Gated, JobUpdate::default()).await.unwrap();

    let queue = fixture.open().await;
    // Dead letters as the broker makes them: a message past its delivery limit, a
    // message the runtime gave up on, one for a job that moved on, and garbage.
    let mut stream = queue.consume(&[Lane::Gate], 10).await.unwrap();
    for (id, reason) in [(waiting, "delivery_limit"), (finished, "gave up"), (moved_on, "delivery_limit")] {
        queue.publish(&StageMessage::new(id, Stage::Gate, None)).await.unwrap();
        let delivery = tokio::time::timeout(WAIT, stream.next()).await.unwrap().unwrap().unwrap();
        delivery.dead_letter(reason).await.unwrap();
    }
    queue.publish_raw(Lane::Gate, b"{not a stage message").await.unwrap();
    let delivery = tokio::time::timeout(WAIT, stream.next()).await.unwrap().unwrap().unwrap();
    delivery.dead_letter("invalid message").await.unwrap();
    stream.cancel().await.unwrap();
    stream.close().await.unwrap();

    let janitor = Janitor::new(queue.clone(), store.clone(), vec![Lane::Gate], RecoverySettings::default()).unwrap();
    // The letters may take a moment to reach the dead-letter queue on the broker.
    let mut total = DeadLetterReport::default();
    let deadline = tokio::time::Instant::now() + WAIT;
    while total.failed + total.already_final + total.undecodable < 4 {
        let report = janitor.drain_dead_letters().await.unwrap();
        total.failed += report.failed;
        total.already_final += report.already_final;
        total.undecodable += report.undecodable;
        assert!(tokio::time::Instant::now() < deadline, "dead letters never arrived: {total:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(total.failed, 1, "{total:?}");
    assert_eq!(total.already_final, 2, "{total:?}");
    assert_eq!(total.undecodable, 1, "{total:?}");

    let job = store.get_job(waiting).await.unwrap();
    assert_eq!(job.state, JobState::Failed);
    let reason = job.last_error.unwrap_or_default();
    assert!(reason.starts_with("gate:") && reason.contains("delivery limit"), "{reason}");
    assert_eq!(store.get_job(finished).await.unwrap().last_error.as_deref(), Some("gave up"), "a recorded failure is kept");
    assert_eq!(state_of(store.as_ref(), moved_on).await, JobState::Gated, "a job that moved on is left alone");
    // Acknowledged: nothing is left, and a second pass does nothing.
    assert_eq!(janitor.drain_dead_letters().await.unwrap(), Default::default());
    assert!(queue.take_dead_letters(Stage::Gate, 10).await.unwrap().is_empty());

    // A lease that is dropped (the janitor died mid-pass) leaves its letters queued.
    let mut stream = queue.consume(&[Lane::Classify], 10).await.unwrap();
    queue.publish(&StageMessage::new(moved_on, Stage::Classify, None)).await.unwrap();
    let delivery = tokio::time::timeout(WAIT, stream.next()).await.unwrap().unwrap().unwrap();
    delivery.dead_letter("delivery_limit").await.unwrap();
    stream.cancel().await.unwrap();
    stream.close().await.unwrap();
    let q = queue.clone();
    wait_until("the classify dead letter is leased", WAIT, move || {
        let q = q.clone();
        async move {
            let lease = q.lease_dead_letters(Stage::Classify, 10).await.unwrap();
            let got = lease.letters.len() == 1;
            drop(lease);
            got
        }
    })
    .await;
    let q = queue.clone();
    wait_until("the dropped lease's letter is back", WAIT, move || {
        let q = q.clone();
        async move { q.take_dead_letters(Stage::Classify, 10).await.unwrap().len() == 1 }
    })
    .await;
    queue.close().await.unwrap();
    fixture.cleanup().await;
}

async fn stuck_jobs_are_republished_then_failed(fixture: Fixture) {
    let (store, _db) = store_for(&fixture).await;
    let jobs = submit(store.as_ref(), 1, None).await;
    let stuck = jobs[0];
    store.advance(stuck, Some(Stage::Gate), JobState::Gated, JobUpdate::default()).await.unwrap();
    let queue = fixture.open().await;
    let mut settings = RecoverySettings { max_republish: 1, ..RecoverySettings::default() };
    settings.stuck_after_secs.classify = 1;
    let janitor = Janitor::new(queue.clone(), store.clone(), vec![Lane::Classify], settings).unwrap();

    // Fresh: not stuck yet.
    assert_eq!(janitor.sweep().await.unwrap().republished, 0);
    // Past the deadline with an empty lane: its message was lost, so it is re-published.
    let report = poll_sweep(&janitor, |r| r.republished == 1).await;
    assert_eq!(report.failed, 0);
    let q = queue.clone();
    wait_until("the re-published message is on the lane", WAIT, move || {
        let q = q.clone();
        async move { q.ready_count(Lane::Classify).await.unwrap() == 1 }
    })
    .await;
    // A message waiting in the lane means the job may just be queued: no sweep then.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let busy = janitor.sweep().await.unwrap();
    assert_eq!((busy.busy_lanes, busy.republished, busy.failed), (1, 0, 0));

    // The message is taken and lost again (a consumer that acknowledges and does nothing).
    let mut stream = queue.consume(&[Lane::Classify], 1).await.unwrap();
    let delivery = tokio::time::timeout(WAIT, stream.next()).await.unwrap().unwrap().unwrap();
    let message: StageMessage = serde_json::from_slice(delivery.body()).unwrap();
    assert_eq!((message.job_id, message.stage), (stuck, Stage::Classify));
    delivery.ack().await.unwrap();
    stream.cancel().await.unwrap();
    stream.close().await.unwrap();

    // Still stuck after max_republish sweeps: failed, with the reason.
    let report = poll_sweep(&janitor, |r| r.failed == 1).await;
    assert_eq!(report.republished, 0);
    let job = store.get_job(stuck).await.unwrap();
    assert_eq!(job.state, JobState::Failed);
    assert!(job.last_error.unwrap_or_default().contains("stuck waiting for classify"));
    let events: Vec<String> = store.events(stuck).await.unwrap().into_iter().map(|e| e.event).collect();
    assert_eq!(events, ["submitted", "gated", "swept", "failed"]);
    queue.close().await.unwrap();
    fixture.cleanup().await;
}

/// Sweeps until `done` holds for one sweep's report (the deadline has to pass first).
async fn poll_sweep(
    janitor: &Janitor,
    done: impl Fn(&SweepReport) -> bool,
) -> SweepReport {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let report = janitor.sweep().await.unwrap();
        if done(&report) {
            return report;
        }
        assert!(tokio::time::Instant::now() < deadline, "sweep never did it: {report:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
