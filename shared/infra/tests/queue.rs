//! Queue and worker-runtime behaviour, each scenario run against both backends: the
//! in-memory queue and the real RabbitMQ (127.0.0.1:5672, or MONO2MESH_TEST_AMQP_URL;
//! these tests fail when it is unreachable). Every RabbitMQ test declares its own
//! topology under a random prefix and deletes it at the end.

#[macro_use]
mod queue_support;

use mono2mesh_core::{Category, JobId, Stage, StageError, StageMessage};
use mono2mesh_infra::queue::{encode, DeliveryStream, Lane, MessageQueue, QueueError};
use mono2mesh_infra::runtime::{Next, StageHandler};
use queue_support::*;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(20);

on_both_backends! {
    publish_consume_ack => [Lane::Gate];
    poison_messages_are_dead_lettered_without_blocking => [Lane::Gate, Lane::Classify];
    retryable_failures_back_off_then_succeed_or_give_up => [Lane::Gate];
    rejections_are_recorded_and_panics_contained => [Lane::Classify];
    unsettled_delivery_comes_back_after_its_consumer_dies => [Lane::Refine];
    graceful_shutdown_finishes_in_flight_work_only => [Lane::Refine];
    reconstruct_work_is_routed_by_category => [
        Lane::Classify,
        Lane::Reconstruct(Category::Chair),
        Lane::Reconstruct(Category::Sofa),
        Lane::Reconstruct(Category::Car),
    ];
}

fn message(stage: Stage, category: Option<Category>) -> StageMessage {
    StageMessage::new(JobId::new(), stage, category)
}

async fn next_delivery(stream: &mut Box<dyn DeliveryStream>) -> mono2mesh_infra::queue::Delivery {
    tokio::time::timeout(WAIT, stream.next())
        .await
        .expect("no delivery within the wait")
        .expect("stream ended")
        .expect("delivery error")
}

async fn dead_letters_eventually(
    queue: &Arc<dyn MessageQueue>,
    stage: Stage,
    expected: usize,
) -> Vec<mono2mesh_infra::queue::DeadLetter> {
    let mut taken = Vec::new();
    let deadline = Instant::now() + WAIT;
    while taken.len() < expected {
        taken.extend(queue.take_dead_letters(stage, 100).await.unwrap());
        assert!(Instant::now() < deadline, "only {} of {expected} dead letters arrived", taken.len());
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    // nothing beyond what was expected
    tokio::time::sleep(Duration::from_millis(100)).await;
    taken.extend(queue.take_dead_letters(stage, 100).await.unwrap());
    assert_eq!(taken.len(), expected, "unexpected extra dead letters: {taken:?}");
    taken
}

async fn publish_consume_ack(fixture: Fixture) {
    let queue = fixture.open().await;
    let sent: Vec<StageMessage> = (0..3).map(|_| message(Stage::Gate, None)).collect();
    for m in &sent {
        queue.publish(m).await.unwrap();
    }
    let mut stream = queue.consume(&[Lane::Gate], 10).await.unwrap();
    for expected in &sent {
        let delivery = next_delivery(&mut stream).await;
        assert_eq!(delivery.lane(), Lane::Gate);
        assert!(!delivery.redelivered());
        assert_eq!(delivery.delivery_count(), 0);
        let got: StageMessage = serde_json::from_slice(delivery.body()).unwrap();
        assert_eq!(&got, expected, "FIFO order per lane");
        delivery.ack().await.unwrap();
    }
    stream.cancel().await.unwrap();
    assert!(tokio::time::timeout(Duration::from_millis(200), stream.next()).await.map_or(true, |n| n.is_none()));

    // Acked messages never come back, even on a fresh connection.
    fixture.crash(queue).await;
    let queue = fixture.open().await;
    assert_eq!(queue.ready_count(Lane::Gate).await.unwrap(), 0);

    // Routing errors are reported, not swallowed.
    let lost = message(Stage::Reconstruct, None);
    assert!(matches!(queue.publish(&lost).await, Err(QueueError::MissingCategory { .. })));
    let undeclared = message(Stage::Refine, None);
    assert!(matches!(queue.publish(&undeclared).await, Err(QueueError::Unroutable { .. })), "refine is not declared here");
    fixture.cleanup().await;
}

async fn poison_messages_are_dead_lettered_without_blocking(fixture: Fixture) {
    let queue = fixture.open().await;
    let unknown_job = message(Stage::Gate, None);
    let missing_object = message(Stage::Gate, None);
    let good: Vec<StageMessage> = (0..5).map(|_| message(Stage::Gate, None)).collect();

    let outcomes = Arc::new(RecordedOutcomes::default());
    outcomes.unknown.lock().unwrap().push(unknown_job.job_id);
    let (unknown_id, missing_id) = (unknown_job.job_id, missing_object.job_id);
    let handler: Arc<dyn StageHandler> = Arc::new(move |m: StageMessage| async move {
        if m.job_id == unknown_id {
            return Err(StageError::permanent(format!("unknown job {}", m.job_id)));
        }
        if m.job_id == missing_id {
            return Err(StageError::permanent(format!("missing object jobs/{}/input/photo.jpg", m.job_id)));
        }
        Ok(Next::Forward(StageMessage::new(m.job_id, Stage::Classify, None)))
    });

    // Poison first, so good messages sit behind it.
    queue.publish_raw(Lane::Gate, b"not json {").await.unwrap();
    let future_schema = format!(r#"{{"schema":99,"job_id":"{}","stage":"gate"}}"#, JobId::new());
    queue.publish_raw(Lane::Gate, future_schema.as_bytes()).await.unwrap();
    queue.publish_raw(Lane::Gate, &encode(&message(Stage::Refine, None))).await.unwrap();
    queue.publish(&unknown_job).await.unwrap();
    queue.publish(&missing_object).await.unwrap();
    for m in &good {
        queue.publish(m).await.unwrap();
    }

    let worker = RunningWorker::start(queue.clone(), vec![Lane::Gate], handler, outcomes.clone(), quick_settings());
    let letters = dead_letters_eventually(&queue, Stage::Gate, 5).await;
    wait_until("the good messages forwarded to classify", WAIT, || {
        let queue = queue.clone();
        async move { queue.ready_count(Lane::Classify).await.unwrap() == 5 }
    })
    .await;
    let report = worker.stop().await;
    assert_eq!(report.succeeded, 5);
    assert_eq!(report.dead_lettered, 5);
    assert_eq!(report.retried, 0, "permanent problems are not retried");

    let reasons: Vec<&str> = letters.iter().map(|l| l.reason.as_str()).collect();
    for expected in [
        "invalid message: not stage-message JSON",
        "unsupported message schema 99",
        "message for lane refine arrived on lane gate",
        "unknown job",
        "missing object",
    ] {
        assert!(reasons.iter().any(|r| r.contains(expected)), "no dead letter says {expected:?}: {reasons:?}");
    }
    assert!(letters.iter().all(|l| l.lane == Some(Lane::Gate)), "{letters:?}");
    assert!(letters.iter().any(|l| l.body == b"not json {"), "dead letters keep the original body");
    let failed = outcomes.failed.lock().unwrap().clone();
    assert_eq!(failed.len(), 1, "only the known job can be marked failed: {failed:?}");
    assert_eq!(failed[0].0, missing_id);
    assert!(letters.iter().any(|l| l.reason.contains("job not marked failed")), "unknown job says so: {reasons:?}");
    fixture.cleanup().await;
}

async fn retryable_failures_back_off_then_succeed_or_give_up(fixture: Fixture) {
    let queue = fixture.open().await;
    let recovers = message(Stage::Gate, None);
    let never = message(Stage::Gate, None);
    let seen: Arc<Mutex<Vec<(JobId, u32, Instant)>>> = Arc::default();
    let recovers_id = recovers.job_id;
    let log = seen.clone();
    let handler: Arc<dyn StageHandler> = Arc::new(move |m: StageMessage| {
        let log = log.clone();
        async move {
            log.lock().unwrap().push((m.job_id, m.attempt, Instant::now()));
            if m.job_id == recovers_id && m.attempt >= 3 {
                Ok(Next::Finished)
            } else {
                Err(StageError::retryable("store unreachable"))
            }
        }
    });
    let outcomes = Arc::new(RecordedOutcomes::default());
    let worker = RunningWorker::start(queue.clone(), vec![Lane::Gate], handler, outcomes.clone(), quick_settings());
    queue.publish(&recovers).await.unwrap();
    queue.publish(&never).await.unwrap();

    let letters = dead_letters_eventually(&queue, Stage::Gate, 1).await;
    wait_until("the recovering job to succeed", WAIT, || {
        let seen = seen.clone();
        async move { seen.lock().unwrap().iter().any(|(j, a, _)| *j == recovers_id && *a == 3) }
    })
    .await;
    let report = worker.stop().await;
    assert_eq!(report.succeeded, 1);
    assert_eq!(report.retried, 4, "two retries each");
    assert_eq!(report.dead_lettered, 1);

    let seen = seen.lock().unwrap().clone();
    for job in [recovers.job_id, never.job_id] {
        let attempts: Vec<(u32, Instant)> = seen.iter().filter(|(j, ..)| *j == job).map(|(_, a, t)| (*a, *t)).collect();
        assert_eq!(attempts.iter().map(|(a, _)| *a).collect::<Vec<_>>(), vec![1, 2, 3], "max_attempts = 3");
        // Each retry waited at least its tier's delay (a little slack for clock granularity).
        for (pair, delay) in attempts.windows(2).zip(RETRY_DELAYS) {
            let waited = pair[1].1 - pair[0].1;
            assert!(waited + Duration::from_millis(30) >= delay, "retry after {waited:?}, tier is {delay:?}");
        }
    }
    assert!(letters[0].reason.contains("gave up after 3 attempts: store unreachable"), "{letters:?}");
    let dead: StageMessage = serde_json::from_slice(&letters[0].body).unwrap();
    assert_eq!((dead.job_id, dead.attempt), (never.job_id, 3), "the last attempt's message is parked");
    let failed = outcomes.failed.lock().unwrap().clone();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].0, never.job_id);
    fixture.cleanup().await;
}

async fn rejections_are_recorded_and_panics_contained(fixture: Fixture) {
    let queue = fixture.open().await;
    let blurry = message(Stage::Classify, None);
    let buggy = message(Stage::Classify, None);
    let fine: Vec<StageMessage> = (0..3).map(|_| message(Stage::Classify, None)).collect();
    let (blurry_id, buggy_id) = (blurry.job_id, buggy.job_id);
    let finished = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = finished.clone();
    let handler: Arc<dyn StageHandler> = Arc::new(move |m: StageMessage| {
        let count = count.clone();
        async move {
            if m.job_id == blurry_id {
                return Err(StageError::rejection("too blurry: Laplacian variance 12.0 < 100.0"));
            }
            if m.job_id == buggy_id {
                panic!("index out of bounds in the stage");
            }
            count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Ok(Next::Finished)
        }
    });
    let outcomes = Arc::new(RecordedOutcomes::default());
    let worker = RunningWorker::start(queue.clone(), vec![Lane::Classify], handler, outcomes.clone(), quick_settings());
    queue.publish(&blurry).await.unwrap();
    queue.publish(&buggy).await.unwrap();
    for m in &fine {
        queue.publish(m).await.unwrap();
    }
    let letters = dead_letters_eventually(&queue, Stage::Classify, 1).await;
    wait_until("all five handled", WAIT, || {
        let (outcomes, finished) = (outcomes.clone(), finished.clone());
        async move {
            outcomes.rejected.lock().unwrap().len() == 1 && finished.load(std::sync::atomic::Ordering::SeqCst) == 3
        }
    })
    .await;
    // Stopping lets the in-flight acks complete before the report is taken.
    let report = worker.stop().await;
    assert_eq!((report.succeeded, report.rejected, report.dead_lettered, report.panicked), (3, 1, 1, 1), "{report:?}");
    assert_eq!(report.retried, 0);
    let rejected = outcomes.rejected.lock().unwrap().clone();
    assert_eq!(rejected, vec![(blurry_id, "too blurry: Laplacian variance 12.0 < 100.0".to_string())]);
    assert!(letters[0].reason.contains("stage handler panicked: index out of bounds"), "{letters:?}");
    assert_eq!(outcomes.failed.lock().unwrap()[0].0, buggy_id);
    assert_eq!(queue.ready_count(Lane::Classify).await.unwrap(), 0);
    fixture.cleanup().await;
}

async fn unsettled_delivery_comes_back_after_its_consumer_dies(fixture: Fixture) {
    let first = fixture.open().await;
    let sent = message(Stage::Refine, None);
    first.publish(&sent).await.unwrap();
    let mut stream = first.consume(&[Lane::Refine], 1).await.unwrap();
    let delivery = next_delivery(&mut stream).await;
    assert!(!delivery.redelivered());
    // The worker dies mid-job: no ack, connection gone.
    drop(delivery);
    drop(stream);
    fixture.crash(first).await;

    let second = fixture.open().await;
    let mut stream = second.consume(&[Lane::Refine], 1).await.unwrap();
    let again = next_delivery(&mut stream).await;
    assert!(again.redelivered(), "the broker marks it as seen before");
    assert_eq!(again.delivery_count(), 1);
    assert_eq!(serde_json::from_slice::<StageMessage>(again.body()).unwrap(), sent);
    again.ack().await.unwrap();
    drop(stream);
    fixture.crash(second).await;

    // A message that kills every consumer is parked after the delivery limit.
    let killer = message(Stage::Refine, None);
    let publisher = fixture.open().await;
    publisher.publish(&killer).await.unwrap();
    for _ in 0..=DELIVERY_LIMIT {
        let consumer = fixture.open().await;
        let mut stream = consumer.consume(&[Lane::Refine], 1).await.unwrap();
        drop(next_delivery(&mut stream).await);
        drop(stream);
        fixture.crash(consumer).await;
    }
    let letters = dead_letters_eventually(&publisher, Stage::Refine, 1).await;
    assert_eq!(letters[0].reason, "delivery_limit");
    assert_eq!(serde_json::from_slice::<StageMessage>(&letters[0].body).unwrap(), killer);
    assert_eq!(publisher.ready_count(Lane::Refine).await.unwrap(), 0);
    fixture.cleanup().await;
}

async fn graceful_shutdown_finishes_in_flight_work_only(fixture: Fixture) {
    let queue = fixture.open().await;
    let started: Arc<Mutex<Vec<JobId>>> = Arc::default();
    let finished: Arc<Mutex<Vec<JobId>>> = Arc::default();
    let (s, f) = (started.clone(), finished.clone());
    let handler: Arc<dyn StageHandler> = Arc::new(move |m: StageMessage| {
        let (s, f) = (s.clone(), f.clone());
        async move {
            s.lock().unwrap().push(m.job_id);
            tokio::time::sleep(Duration::from_millis(500)).await;
            f.lock().unwrap().push(m.job_id);
            Ok(Next::Finished)
        }
    });
    for _ in 0..6 {
        queue.publish(&message(Stage::Refine, None)).await.unwrap();
    }
    let mut settings = quick_settings();
    settings.concurrency = 2;
    settings.prefetch = 2;
    let outcomes = Arc::new(RecordedOutcomes::default());
    let worker = RunningWorker::start(queue.clone(), vec![Lane::Refine], handler, outcomes, settings);
    wait_until("two jobs in flight", WAIT, || {
        let started = started.clone();
        async move { started.lock().unwrap().len() == 2 }
    })
    .await;
    let report = worker.stop().await;
    assert_eq!(report.succeeded, 2, "in-flight work finished and was acked");
    let mut started = started.lock().unwrap().clone();
    let mut finished = finished.lock().unwrap().clone();
    started.sort();
    finished.sort();
    assert_eq!(finished, started, "the in-flight jobs finished and nothing new started after the stop");
    // Deliveries the broker had pushed ahead (prefetch) return when the connection closes.
    fixture.crash(queue).await;
    let queue = fixture.open().await;
    wait_until("the four untouched messages back on the queue", WAIT, || {
        let queue = queue.clone();
        async move { queue.ready_count(Lane::Refine).await.unwrap() == 4 }
    })
    .await;
    fixture.cleanup().await;
}

async fn reconstruct_work_is_routed_by_category(fixture: Fixture) {
    let queue = fixture.open().await;
    let mut planned: HashMap<JobId, Category> = HashMap::new();
    for (category, n) in [(Category::Chair, 3), (Category::Sofa, 2), (Category::Car, 2)] {
        for _ in 0..n {
            planned.insert(JobId::new(), category);
        }
    }
    // classify: forwards each job to the reconstruct lane of its category
    let categories = Arc::new(planned.clone());
    let classify: Arc<dyn StageHandler> = Arc::new(move |m: StageMessage| {
        let categories = categories.clone();
        async move {
            let category = categories.get(&m.job_id).copied();
            Ok(Next::Forward(StageMessage::new(m.job_id, Stage::Reconstruct, category)))
        }
    });
    let reconstructed: Arc<Mutex<Vec<(JobId, Option<Category>)>>> = Arc::default();
    let log = reconstructed.clone();
    let reconstruct: Arc<dyn StageHandler> = Arc::new(move |m: StageMessage| {
        let log = log.clone();
        async move {
            log.lock().unwrap().push((m.job_id, m.category));
            Ok(Next::Finished)
        }
    });
    let outcomes = Arc::new(RecordedOutcomes::default());
    let classifier = RunningWorker::start(queue.clone(), vec![Lane::Classify], classify, outcomes.clone(), quick_settings());
    let chair_and_sofa = vec![Lane::Reconstruct(Category::Chair), Lane::Reconstruct(Category::Sofa)];
    let specialist = RunningWorker::start(queue.clone(), chair_and_sofa, reconstruct, outcomes, quick_settings());
    for job in planned.keys() {
        queue.publish(&StageMessage::new(*job, Stage::Classify, None)).await.unwrap();
    }
    wait_until("chair and sofa jobs reconstructed, car jobs waiting", WAIT, || {
        let (queue, reconstructed) = (queue.clone(), reconstructed.clone());
        async move {
            reconstructed.lock().unwrap().len() == 5
                && queue.ready_count(Lane::Reconstruct(Category::Car)).await.unwrap() == 2
        }
    })
    .await;
    classifier.stop().await;
    specialist.stop().await;
    let done: HashSet<(JobId, Option<Category>)> = reconstructed.lock().unwrap().iter().copied().collect();
    let expected: HashSet<(JobId, Option<Category>)> = planned
        .iter()
        .filter(|(_, c)| **c != Category::Car)
        .map(|(j, c)| (*j, Some(*c)))
        .collect();
    assert_eq!(done, expected, "each specialist sees exactly its categories, each job once");
    fixture.cleanup().await;
}
