//! The real `mono2mesh-gate` binary against real services: RabbitMQ (127.0.0.1:5672 or
//! MONO2MESH_TEST_AMQP_URL), Postgres (a fresh database; DATABASE_URL or the local
//! server) and S3 (s3s-fs on a local port), configured only through the environment as
//! compose does. Fails, rather than skips, when RabbitMQ or Postgres is missing.

use image::{ImageFormat, Rgb, RgbImage};
use mono2mesh_core::{JobId, JobState, Stage, StageMessage};
use mono2mesh_infra::blob::{keys, BlobStore};
use mono2mesh_infra::queue::{Lane, MessageQueue};
use mono2mesh_testkit::rig::{stop_gracefully, PipelineRig};
use std::collections::HashSet;
use std::io::Cursor;
use std::time::{Duration, Instant};

const GATE: &str = env!("CARGO_BIN_EXE_mono2mesh-gate");

fn png(image: &RgbImage) -> Vec<u8> {
    let mut out = Cursor::new(Vec::new());
    image.write_to(&mut out, ImageFormat::Png).unwrap();
    out.into_inner()
}

/// Sharp and evenly lit: a checkerboard of 8-pixel squares (passes the gate).
fn sharp_photo(seed: u8) -> Vec<u8> {
    png(&RgbImage::from_fn(640, 480, |x, y| {
        let v = if ((x / 8) + (y / 8)) % 2 == 0 { 200u8.saturating_add(seed % 40) } else { 40 };
        Rgb([v, v, v])
    }))
}

/// `GET path` over plain HTTP/1.1: the status code and the body.
fn http_get(addr: &str, path: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let status = response.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, response.split("\r\n\r\n").nth(1).unwrap_or("").to_string()))
}

async fn submit(rig: &PipelineRig, batch: &str, photo: Vec<u8>) -> JobId {
    let id = rig.submit_job(batch, photo).await;
    rig.publish(&StageMessage::new(id, Stage::Gate, None)).await;
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_goes_through_the_gate_worker() {
    let rig = PipelineRig::start("gate-batch").await;
    let mut accepted = Vec::new();
    for i in 0..12u8 {
        accepted.push(submit(&rig, "batch-1", sharp_photo(i)).await);
    }
    let mut truncated = sharp_photo(99);
    truncated.truncate(truncated.len() / 3);
    let dark = submit(&rig, "batch-1", png(&RgbImage::from_pixel(320, 240, Rgb([5, 5, 5])))).await;
    let rejected = vec![
        dark,
        submit(&rig, "batch-1", Vec::new()).await, // zero bytes
        submit(&rig, "batch-1", b"GIF89a but not really".to_vec()).await,
        submit(&rig, "batch-1", truncated).await,
    ];

    // The probe listener on a probed free port (the worker logs, not prints, its address).
    let health = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().to_string();
    let worker = rig.spawn_worker_with_env(GATE, &[], &[("MONO2MESH__TELEMETRY__HEALTH_LISTEN", health.as_str())]);
    let all: Vec<JobId> = accepted.iter().chain(&rejected).copied().collect();
    rig.wait_for_states(&all, &[JobState::Gated, JobState::Rejected], Duration::from_secs(60)).await;
    // Connected to all three services and consuming: ready, with each check named.
    let (status, body) = http_get(&health, "/readyz").expect("the worker serves /readyz");
    assert_eq!(status, 200, "{body}");
    let checks: serde_json::Value = serde_json::from_str(&body).unwrap();
    for part in ["broker", "database", "blob_store", "consuming"] {
        assert_eq!(checks["checks"][part], "ok", "{part}: {body}");
    }
    assert_eq!(http_get(&health, "/livez").map(|(code, _)| code), Some(200));
    let status = stop_gracefully(worker);
    assert!(status.success(), "worker exit status after SIGTERM: {status}");

    for id in &accepted {
        let job = rig.jobs().get_job(*id).await.unwrap();
        assert_eq!(job.state, JobState::Gated, "job {id}: {:?}", job.last_error);
        let scores = job.gate_scores.expect("scores recorded on the job");
        assert_eq!(scores["decision"], "accept", "{scores}");
        let image_key = keys::stage_artifact(*id, Stage::Gate, keys::GATED_IMAGE).unwrap();
        let stored = rig.s3.store.get(&image_key).await.unwrap();
        let decoded = image::load_from_memory(&stored).unwrap();
        assert_eq!((decoded.width(), decoded.height()), (600, 600), "standardised to the paper's size");
        assert_eq!(job.outputs["gated_image"], image_key.as_str());
        let events: Vec<String> = rig.jobs().events(*id).await.unwrap().into_iter().map(|e| e.event).collect();
        assert_eq!(events, vec!["submitted", "gated"]);
    }
    for id in &rejected {
        let job = rig.jobs().get_job(*id).await.unwrap();
        assert_eq!(job.state, JobState::Rejected);
        assert!(job.last_error.as_deref().is_some_and(|e| !e.is_empty()), "a reason is recorded");
        let report = keys::stage_artifact(*id, Stage::Gate, keys::GATE_REPORT).unwrap();
        assert!(rig.s3.store.exists(&report).await.unwrap(), "the report is stored for rejected photos too");
        let image_key = keys::stage_artifact(*id, Stage::Gate, keys::GATED_IMAGE).unwrap();
        assert!(!rig.s3.store.exists(&image_key).await.unwrap());
    }
    let dark = rig.jobs().get_job(dark).await.unwrap();
    assert!(dark.last_error.unwrap().contains("too dark"));

    let handed_over = rig.drain_lane(Lane::Classify).await;
    let expected: HashSet<JobId> = accepted.iter().copied().collect();
    assert_eq!(
        handed_over.keys().copied().collect::<HashSet<_>>(),
        expected,
        "accepted jobs, and only those, go to classify"
    );
    assert!(handed_over.values().all(|n| *n == 1), "no crash, so no duplicates: {handed_over:?}");
    assert_eq!(rig.queue.take_dead_letters(Stage::Gate, 10).await.unwrap(), vec![]);
    rig.finish().await;
}

/// How the first worker is stopped mid-batch.
#[derive(Clone, Copy, PartialEq)]
enum Interruption {
    /// SIGKILL: no shutdown code runs; the broker redelivers its unacknowledged messages.
    Kill,
    /// SIGTERM, as Kubernetes and compose stop a pod: the worker stops consuming, finishes
    /// what it started within the grace period, returns the rest and exits cleanly.
    Drain,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_worker_loses_nothing_and_finishes_each_job_once() {
    interrupted_mid_batch("gate-sigkill", Interruption::Kill).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_stopped_with_sigterm_drains_and_each_job_finishes_once() {
    interrupted_mid_batch("gate-sigterm", Interruption::Drain).await;
}

async fn interrupted_mid_batch(name: &str, how: Interruption) {
    let rig = PipelineRig::start(name).await;
    let mut jobs = Vec::new();
    for i in 0..40u8 {
        jobs.push(submit(&rig, "batch-stop", sharp_photo(i)).await);
    }
    // Stop it while it is busy: some jobs gated, some in flight, most still queued.
    let mut first = rig.spawn_worker(GATE, &[]);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let mut gated = 0;
        for id in &jobs {
            if rig.jobs().get_job(*id).await.unwrap().state == JobState::Gated {
                gated += 1;
            }
        }
        if gated >= 3 {
            break;
        }
        assert!(Instant::now() < deadline, "the worker gated nothing within a minute");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    match how {
        Interruption::Kill => {
            first.kill().unwrap();
            first.wait().unwrap();
        }
        Interruption::Drain => {
            let status = stop_gracefully(first);
            assert!(status.success(), "a drained worker exits cleanly: {status}");
            let unfinished = not_yet_gated(&rig, &jobs).await;
            assert!(unfinished > 0, "stopped mid-batch: some jobs were left for the next worker");
        }
    }

    let second = rig.spawn_worker(GATE, &[]);
    rig.wait_for_states(&jobs, &[JobState::Gated], Duration::from_secs(90)).await;
    assert!(stop_gracefully(second).success());

    for id in &jobs {
        let events: Vec<String> = rig.jobs().events(*id).await.unwrap().into_iter().map(|e| e.event).collect();
        assert_eq!(events, vec!["submitted", "gated"], "job {id} reached its state exactly once");
    }
    let stored: Vec<String> =
        rig.s3.store.list("jobs/").await.unwrap().into_iter().map(|m| m.key.as_str().to_string()).collect();
    for id in &jobs {
        let image_key = keys::stage_artifact(*id, Stage::Gate, keys::GATED_IMAGE).unwrap();
        assert_eq!(stored.iter().filter(|k| **k == image_key.as_str()).count(), 1, "output of {id} stored once");
    }
    let gated_images = stored.iter().filter(|k| k.ends_with(keys::GATED_IMAGE)).count();
    assert_eq!(gated_images, jobs.len(), "one output per job, none under other keys");
    // Delivery is at-least-once: a job whose ack was lost is handed on again, never lost.
    let handed_over = rig.drain_lane(Lane::Classify).await;
    assert_eq!(handed_over.keys().copied().collect::<HashSet<_>>(), jobs.iter().copied().collect::<HashSet<_>>());
    if how == Interruption::Drain {
        // A drain acknowledges what it finished and returns the rest: nothing twice.
        // (Each job's events are exactly submitted, gated: the stop was not a crash.)
        assert!(handed_over.values().all(|n| *n == 1), "{handed_over:?}");
    }
    assert_eq!(rig.queue.take_dead_letters(Stage::Gate, 10).await.unwrap(), vec![]);
    rig.finish().await;
}

/// Jobs of `jobs` not yet gated.
async fn not_yet_gated(rig: &PipelineRig, jobs: &[JobId]) -> usize {
    let mut left = 0;
    for id in jobs {
        if rig.jobs().get_job(*id).await.unwrap().state != JobState::Gated {
            left += 1;
        }
    }
    left
}

/// The real binary, configured like compose with an OTLP endpoint (a receiver in this
/// test): its span for a job is the child of the submitter's span, whose context came in
/// the AMQP headers, and the classify message it publishes carries the gate's own
/// context on, so the next stage continues the same trace.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gate_worker_continues_the_jobs_trace_and_hands_it_on() {
    use mono2mesh_infra::otel::TRACEPARENT;
    use mono2mesh_testkit::otlp::{in_new_trace, traced_process};
    let receiver = traced_process();
    let rig = PipelineRig::start("gate-trace").await;
    let id = rig.submit_job("trace-batch", sharp_photo(7)).await;
    let ((), root) = in_new_trace(rig.publish(&StageMessage::new(id, Stage::Gate, None))).await;

    let env = [("MONO2MESH__TELEMETRY__OTLP_ENDPOINT", receiver.endpoint.as_str()), ("OTEL_BSP_SCHEDULE_DELAY", "200")];
    let worker = rig.spawn_worker_with_env(GATE, &[], &env);
    rig.wait_for_states(&[id], &[JobState::Gated], Duration::from_secs(60)).await;
    assert!(stop_gracefully(worker).success());

    let spans = receiver
        .wait_for_trace(&root.trace_id, Duration::from_secs(20), |spans| spans.iter().any(|s| s.name == "gate"))
        .await;
    let gate = spans.iter().find(|s| s.name == "gate").unwrap();
    assert_eq!(gate.parent_span_id, root.span_id, "{spans:#?}");
    assert_eq!(gate.service, "mono2mesh-gate");
    assert_eq!(gate.attribute("job_id"), Some(id.to_string().as_str()));
    assert_eq!(gate.attribute("outcome"), Some("ok"));

    let mut consumer = rig.queue.consume(&[Lane::Classify], 1).await.unwrap();
    let delivery = tokio::time::timeout(Duration::from_secs(5), consumer.next()).await.unwrap().unwrap().unwrap();
    let traceparent = delivery.trace().get(TRACEPARENT).expect("the classify message carries a traceparent");
    assert_eq!(traceparent, format!("00-{}-{}-01", root.trace_id, gate.span_id));
    delivery.ack().await.unwrap();
    consumer.cancel().await.unwrap();
    rig.finish().await;
}

/// Runs the gate binary with the test fault switch armed, restarting it whenever it
/// dies (as an orchestrator would), until every job in `jobs` is in `states`.
/// Returns how often the worker died.
async fn supervise_until(rig: &PipelineRig, fault: &str, jobs: &[JobId], states: &[JobState]) -> u32 {
    let env = [("MONO2MESH_TEST_FAULT", fault), ("MONO2MESH__RECOVERY__DEAD_LETTER_POLL_MS", "200")];
    let mut worker = rig.spawn_worker_with_env(GATE, &[], &env);
    let mut deaths = 0;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Some(status) = worker.try_wait().unwrap() {
            assert!(!status.success(), "the worker only stops by dying here: {status}");
            deaths += 1;
            assert!(deaths <= 5, "the worker keeps dying: the poison photo is not contained");
            worker = rig.spawn_worker_with_env(GATE, &[], &env);
        }
        let mut done = true;
        for id in jobs {
            if !states.contains(&rig.jobs().get_job(*id).await.unwrap().state) {
                done = false;
            }
        }
        if done {
            break;
        }
        assert!(Instant::now() < deadline, "jobs did not finish within two minutes ({deaths} deaths)");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The dead letter of the poison job is cleared by the worker's janitor.
    let queue = &rig.queue;
    let cleared = Instant::now() + Duration::from_secs(20);
    loop {
        let lease = queue.lease_dead_letters(Stage::Gate, 10).await.unwrap();
        let empty = lease.letters.is_empty();
        lease.release().await.unwrap();
        if empty {
            break;
        }
        assert!(Instant::now() < cleared, "the janitor did not clear the gate's dead letters");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(stop_gracefully(worker).success());
    deaths
}

/// A photo that aborts the whole process (as a decoder segfault or an OOM kill would),
/// among 20: the worker dies on it, is restarted, runs it alone, dies again, and the
/// next worker fails the job with the reason instead of running it a third time. The
/// other 19 are gated exactly once each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_photo_that_kills_the_worker_fails_alone_and_the_rest_finish() {
    let rig = PipelineRig::start("gate-poison").await;
    let mut jobs = Vec::new();
    for i in 0..20u8 {
        jobs.push(submit(&rig, "batch-poison", sharp_photo(i)).await);
    }
    let poison = jobs[2];
    let hash = rig.jobs().get_job(poison).await.unwrap().content_hash;
    let deaths = supervise_until(&rig, &format!("abort@gate:{hash}"), &jobs, &[JobState::Gated, JobState::Failed]).await;

    assert_eq!(deaths, 2, "the poison photo killed the worker twice, then was failed without running");
    let failed = rig.jobs().get_job(poison).await.unwrap();
    assert_eq!(failed.state, JobState::Failed);
    let reason = failed.last_error.unwrap_or_default();
    assert!(reason.contains("gate worker died 2 time(s)"), "{reason}");
    for id in jobs.iter().filter(|id| **id != poison) {
        let events: Vec<String> = rig.jobs().events(*id).await.unwrap().into_iter().map(|e| e.event).collect();
        assert_eq!(events, vec!["submitted", "gated"], "job {id} gated exactly once");
    }
    let handed_over: HashSet<JobId> = rig.drain_lane(Lane::Classify).await.keys().copied().collect();
    assert_eq!(handed_over, jobs.iter().copied().filter(|id| *id != poison).collect::<HashSet<_>>());
    rig.finish().await;
}

/// A forced panic fails its job with the reason; the worker stays up and the 20 jobs
/// after it all pass.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_fails_one_job_and_the_worker_goes_on() {
    let rig = PipelineRig::start("gate-panic").await;
    let bomb = submit(&rig, "batch-panic", sharp_photo(200)).await;
    let hash = rig.jobs().get_job(bomb).await.unwrap().content_hash;
    let mut jobs = vec![bomb];
    for i in 0..20u8 {
        jobs.push(submit(&rig, "batch-panic", sharp_photo(i)).await);
    }
    let deaths = supervise_until(&rig, &format!("panic@gate:{hash}"), &jobs, &[JobState::Gated, JobState::Failed]).await;
    assert_eq!(deaths, 0, "a panic does not take the worker down");
    let failed = rig.jobs().get_job(bomb).await.unwrap();
    assert_eq!(failed.state, JobState::Failed);
    assert!(failed.last_error.unwrap_or_default().contains("forced panic in gate"));
    for id in &jobs[1..] {
        assert_eq!(rig.jobs().get_job(*id).await.unwrap().state, JobState::Gated);
    }
    rig.finish().await;
}
