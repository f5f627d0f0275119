//! Outages during a run: two real `mono2mesh-gate` processes reach RabbitMQ, Postgres or S3
//! through a [`TcpProxy`] that the test cuts for a few seconds (every connection
//! dropped, new ones refused, as when the server restarts), then restores. The shared
//! servers themselves are never touched, since other tests use them. The workers must
//! recover by themselves (no restart) and every job must still reach its final state
//! exactly once, with its outputs stored and nothing dead-lettered. An outage longer
//! than the workers' whole retry budget may fail jobs, but must not lose them: each
//! ends in a recorded final state, and each failed one has its message parked in the
//! dead-letter queue for replay.
//! Fails, rather than skips, when RabbitMQ or Postgres is missing.

use image::{ImageFormat, Rgb, RgbImage};
use mono2mesh_core::{JobId, JobState, Stage, StageMessage};
use mono2mesh_infra::blob::{keys, BlobStore};
use mono2mesh_infra::queue::{Lane, MessageQueue};
use mono2mesh_testkit::proxy::{url_socket_addr, TcpProxy};
use mono2mesh_testkit::rig::{stop_gracefully, test_amqp_url, PipelineRig};
use std::collections::{HashMap, HashSet};
use std::io::Cursor;
use std::process::Child;
use std::time::{Duration, Instant};

const GATE: &str = env!("CARGO_BIN_EXE_mono2mesh-gate");

#[derive(Debug, Clone, Copy, PartialEq)]
enum Outage {
    Broker,
    Database,
    BlobStore,
}

/// One run: what is cut, for how long, over how many jobs, with which worker settings.
struct Scenario {
    name: &'static str,
    outage: Outage,
    jobs: usize,
    duration: Duration,
    /// Worker environment beyond the proxied URL.
    env: &'static [(&'static str, &'static str)],
    /// The outage outlasts the workers' retry budget, so some jobs may end failed.
    beyond_retries: bool,
}

/// Sharp and evenly lit (passes the gate); `seed` makes each photo distinct.
fn sharp_photo(seed: usize) -> Vec<u8> {
    let image = RgbImage::from_fn(640, 480, |x, y| {
        let v = if ((x / 8) + (y / 8)) % 2 == 0 { 160 + (seed % 90) as u8 } else { 40 };
        Rgb([v, v, v])
    });
    let mut out = Cursor::new(Vec::new());
    image.write_to(&mut out, ImageFormat::Png).unwrap();
    out.into_inner()
}

async fn gated_jobs(rig: &PipelineRig, jobs: &[JobId]) -> HashSet<JobId> {
    let mut gated = HashSet::new();
    for id in jobs {
        if rig.jobs().get_job(*id).await.unwrap().state == JobState::Gated {
            gated.insert(*id);
        }
    }
    gated
}

async fn gated_count(rig: &PipelineRig, jobs: &[JobId]) -> usize {
    gated_jobs(rig, jobs).await.len()
}

/// Takes what waits on the classify lane, adding to the counts per job.
async fn drain_hand_overs(rig: &PipelineRig, handed_over: &mut HashMap<JobId, usize>) {
    for (id, n) in rig.drain_lane(Lane::Classify).await {
        *handed_over.entry(id).or_default() += n;
    }
}

fn assert_running(workers: &mut [Child], when: &str) {
    for worker in workers.iter_mut() {
        let status = worker.try_wait().unwrap();
        assert!(status.is_none(), "a worker exited {when} ({status:?}) instead of recovering by itself");
    }
}

async fn run_through(scenario: Scenario) {
    let rig = PipelineRig::start(scenario.name).await;
    let amqp_url = test_amqp_url();
    let db_url = rig.db.settings.url.expose().to_string();
    let (proxy, mut overrides) = match scenario.outage {
        Outage::Broker => {
            let proxy = TcpProxy::start(url_socket_addr(&amqp_url, 5672)).await;
            let url = proxy.rewrite_url(&amqp_url);
            (proxy, vec![("MONO2MESH__QUEUE__URL", url)])
        }
        Outage::Database => {
            let proxy = TcpProxy::start(url_socket_addr(&db_url, 5432)).await;
            let url = proxy.rewrite_url(&db_url);
            (proxy, vec![("MONO2MESH__DATABASE__URL", url)])
        }
        Outage::BlobStore => {
            let s3 = rig.s3.addr.unwrap_or_else(|| panic!("the rig's S3 listens on a port"));
            let proxy = TcpProxy::start(s3).await;
            let endpoint = format!("http://{}", proxy.addr());
            (proxy, vec![("MONO2MESH__BLOB__S3__ENDPOINT", endpoint)])
        }
    };
    overrides.extend(scenario.env.iter().map(|(k, v)| (*k, v.to_string())));
    let total = scenario.jobs;
    let mut jobs = Vec::new();
    for i in 0..total {
        let id = rig.submit_job("outage", sharp_photo(i)).await;
        rig.publish(&StageMessage::new(id, Stage::Gate, None)).await;
        jobs.push(id);
    }
    let env: Vec<(&str, &str)> = overrides.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut workers = vec![rig.spawn_worker_with_env(GATE, &[], &env), rig.spawn_worker_with_env(GATE, &[], &env)];

    // Cut while the workers are busy: some jobs done, some in flight, most queued.
    let deadline = Instant::now() + Duration::from_secs(90);
    while gated_count(&rig, &jobs).await < 2 {
        assert!(Instant::now() < deadline, "the workers gated nothing within 90 s");
        assert_running(&mut workers, "before the outage");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let accepted_before = proxy.accepted();
    proxy.cut().await;
    let gated_at_cut = gated_count(&rig, &jobs).await;
    tokio::time::sleep(scenario.duration).await;
    assert_running(&mut workers, "during the outage");
    proxy.restore().await;
    assert!(gated_at_cut < total, "the outage came too late to matter: all {total} jobs were gated already");

    let finals: &[JobState] =
        if scenario.beyond_retries { &[JobState::Gated, JobState::Failed] } else { &[JobState::Gated] };
    rig.wait_for_states(&jobs, finals, Duration::from_secs(60)).await;
    assert_running(&mut workers, "after the outage");
    assert!(proxy.accepted() > accepted_before, "the workers reconnected through the proxy");
    // A job can read as gated before it is handed on: when the cut swallowed the reply
    // to its committed move, its hand-over waits in a retry that only a later delivery
    // makes. So collect the hand-overs while the workers still run, until every gated
    // job's has come (or the deadline says one is lost).
    let gated_now = gated_jobs(&rig, &jobs).await;
    let mut handed_over = HashMap::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        drain_hand_overs(&rig, &mut handed_over).await;
        let missing: Vec<_> = gated_now.iter().filter(|id| !handed_over.contains_key(*id)).collect();
        if missing.is_empty() {
            break;
        }
        assert_running(&mut workers, "while handing over");
        assert!(Instant::now() < deadline, "gated jobs never handed on to classify within 30 s: {missing:?}");
    }
    for worker in workers {
        let status = stop_gracefully(worker);
        assert!(status.success(), "worker exit status after SIGTERM: {status}");
    }

    // Each job made its one transition exactly once, whatever was redelivered or retried.
    let mut gated = Vec::new();
    let mut failed = HashSet::new();
    for id in &jobs {
        let job = rig.jobs().get_job(*id).await.unwrap();
        let events: Vec<String> = rig
            .jobs()
            .events(*id)
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.event)
            .filter(|e| e != "attempt_failed") // a retried attempt is history, not a transition
            .collect();
        assert_eq!(events, vec!["submitted", job.state.name()], "job {id}");
        if job.state == JobState::Failed {
            let reason = job.last_error.unwrap_or_default();
            assert!(reason.contains("database unavailable"), "job {id} failed for the outage, not otherwise: {reason}");
            failed.insert(*id);
        } else {
            gated.push(*id);
        }
    }
    // A failed job's message is dead-lettered; the workers' janitors clear letters of jobs
    // already failed (on their poll interval), so some may be gone. None is of a gated job.
    let letters = rig.queue.take_dead_letters(Stage::Gate, 100).await.unwrap();
    let parked: HashSet<JobId> = letters
        .iter()
        .map(|l| serde_json::from_slice::<StageMessage>(&l.body).unwrap().job_id)
        .collect();
    assert!(parked.is_subset(&failed), "dead letters are of failed jobs only: {parked:?} vs {failed:?}");
    let jobs = gated;
    // One output per job, under its own key, none elsewhere.
    let stored: Vec<String> =
        rig.s3.store.list("jobs/").await.unwrap().into_iter().map(|m| m.key.as_str().to_string()).collect();
    for id in &jobs {
        let image_key = keys::stage_artifact(*id, Stage::Gate, keys::GATED_IMAGE).unwrap();
        assert!(stored.iter().any(|k| *k == image_key.as_str()), "output of {id} stored");
    }
    // A failed job may have stored its image before the database refused the move.
    let images = stored.iter().filter(|k| k.ends_with(keys::GATED_IMAGE)).count();
    assert!(images >= jobs.len() && images <= total, "{images} gated images for {} gated of {total} jobs", jobs.len());
    // Every job was handed on (at least once: delivery is at-least-once); none lost.
    drain_hand_overs(&rig, &mut handed_over).await;
    assert_eq!(handed_over.keys().copied().collect::<HashSet<_>>(), jobs.iter().copied().collect::<HashSet<_>>());
    let duplicates: usize = handed_over.values().map(|n| n - 1).sum();
    println!(
        "{}: {gated_at_cut}/{total} gated at the cut; in the end {} gated, {} failed; {duplicates} duplicate hand-overs",
        scenario.name,
        jobs.len(),
        failed.len()
    );
    rig.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_ride_out_a_broker_restart() {
    run_through(Scenario {
        name: "gate-broker-cut",
        outage: Outage::Broker,
        jobs: 60,
        // Several of the clients' reconnect back-off rounds are refused.
        duration: Duration::from_secs(6),
        env: &[],
        beyond_retries: false,
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_ride_out_a_database_outage() {
    run_through(Scenario {
        name: "gate-db-cut",
        outage: Outage::Database,
        jobs: 60,
        duration: Duration::from_secs(6),
        // A short pool acquire timeout, so the workers see refused connections and
        // failed queries (retried), not just a slow pool that hides the outage.
        env: &[("MONO2MESH__DATABASE__ACQUIRE_TIMEOUT_SECS", "1")],
        beyond_retries: false,
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_ride_out_a_blob_store_outage() {
    run_through(Scenario {
        name: "gate-s3-cut",
        outage: Outage::BlobStore,
        jobs: 60,
        duration: Duration::from_secs(6),
        // Reads and writes fail (after the S3 client's own 3 tries) and are retried. The
        // rig's back-off is 0.3 s where production waits seconds, so more attempts stand
        // in for the longer back-off.
        env: &[("MONO2MESH_WORKER_MAX_ATTEMPTS", "12")],
        beyond_retries: false,
    })
    .await;
}

/// Two attempts and few jobs, so each waiting job comes round to a delivery slot and
/// fails (about every 1.3 s per slot) more often than the budget allows during the 12 s
/// outage, and the workers try to give up while the job store cannot record it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_outage_beyond_the_retry_budget_loses_no_job() {
    run_through(Scenario {
        name: "gate-db-long-cut",
        outage: Outage::Database,
        jobs: 16,
        duration: Duration::from_secs(12),
        env: &[("MONO2MESH__DATABASE__ACQUIRE_TIMEOUT_SECS", "1"), ("MONO2MESH_WORKER_MAX_ATTEMPTS", "2")],
        beyond_retries: true,
    })
    .await;
}
