//! Load: N jobs (default 1,000; `MONO2MESH_LOAD_JOBS`) through the real gate worker and
//! the real refine worker (fed with stored voxel grids), on RabbitMQ, Postgres and S3
//! (s3s-fs on a local port), as `mono2mesh_testkit::rig` sets them up. Prints:
//!
//! - throughput of each worker process: jobs/s between its first and last completion
//!   (taken from the jobs' stage timestamps, so process start-up is not counted);
//! - the stage function alone on the same inputs, in this process, with as many threads
//!   as the worker's concurrency, so the difference is the distributed overhead;
//! - that overhead split by part: the latency of the queue, store and database operations
//!   a worker does per job, each timed in isolation against the same servers;
//! - machine load: the worker process's CPU seconds per job, the whole machine's busy
//!   share during the run (/proc/stat) and the load average.
//!
//! `cargo bench -p mono2mesh-gate --bench pipeline_load` (the refine worker binary must be
//! built beside the gate one: `cargo build --release -p mono2mesh-refine` for `cargo bench`).
//! Not a test: it asserts only that every job finished.

use bytes::Bytes;
use image::{ImageFormat, Rgb, RgbImage};
use mono2mesh_core::{Category, JobId, JobState, Stage, StageMessage};
use mono2mesh_gate::{gate, GateSettings};
use mono2mesh_geometry::VoxelGrid;
use mono2mesh_infra::blob::{keys, BlobStore};
use mono2mesh_infra::jobs::{JobUpdate, Page};
use mono2mesh_infra::queue::{Lane, MessageQueue};
use mono2mesh_testkit::rig::{stop_gracefully, PipelineRig};
use mono2mesh_refine::{refine_npy, RefineSettings};
use std::io::Cursor;
use std::path::Path;
use std::process::Child;
use std::sync::Arc;
use std::time::{Duration, Instant};

const GATE: &str = env!("CARGO_BIN_EXE_mono2mesh-gate");
/// The rig's worker concurrency (MONO2MESH_WORKER_CONCURRENCY in `worker_env`).
const CONCURRENCY: usize = 4;
/// Isolated operations timed per kind.
const PROBES: usize = 200;

fn photo(seed: usize) -> Vec<u8> {
    // 640x480, sharp and evenly lit: every job passes the gate and goes the full way.
    let image = RgbImage::from_fn(640, 480, |x, y| {
        let v = if ((x / 8) + (y / 8)) % 2 == 0 { 150 + (seed % 100) as u8 } else { 40 };
        Rgb([v, v.saturating_sub(10), v])
    });
    let mut out = Cursor::new(Vec::new());
    image.write_to(&mut out, ImageFormat::Png).unwrap();
    out.into_inner()
}

fn voxels(seed: usize) -> Vec<u8> {
    // A solid box of 8..=16 voxels a side in a 32^3 grid.
    mono2mesh_geometry::npy::grid_to_npy(&VoxelGrid::centred_cube(32, 8 + seed % 9))
}

/// Busy and total jiffies of the whole machine.
fn machine_jiffies() -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let cpu: Vec<u64> = stat.lines().next().unwrap_or("").split_whitespace().skip(1).filter_map(|v| v.parse().ok()).collect();
    let total: u64 = cpu.iter().sum();
    let idle = cpu.get(3).copied().unwrap_or(0) + cpu.get(4).copied().unwrap_or(0);
    (total - idle, total)
}

/// CPU seconds (user + system) a process has used so far.
fn process_cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0)
        + fields.get(12).and_then(|v| v.parse().ok()).unwrap_or(0.0);
    ticks / 100.0 // USER_HZ is 100 on Linux
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg").unwrap_or_default().split_whitespace().take(3).collect::<Vec<_>>().join(" ")
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// The stage function alone: `inputs` through `work` on `threads` threads; per-job wall time.
fn compute_only<T: Sync>(inputs: &[T], threads: usize, work: impl Fn(&T) + Sync) -> Duration {
    let next = std::sync::atomic::AtomicUsize::new(0);
    let started = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let Some(input) = inputs.get(i) else { break };
                work(input);
            });
        }
    });
    started.elapsed() / inputs.len() as u32
}

struct Phase {
    name: &'static str,
    jobs: usize,
    first_to_last: Duration,
    worker_cpu_secs: f64,
    machine_busy: f64,
    load_before: String,
    load_after: String,
}

impl Phase {
    fn print(&self, compute_per_job: Duration) {
        let per_job = self.first_to_last / (self.jobs.saturating_sub(1).max(1)) as u32;
        println!(
            "{:7} {} jobs in {:.1} s: {:.1} jobs/s, {:.2} ms/job wall; stage function alone ({CONCURRENCY} threads): \
             {:.2} ms/job, so {:.2} ms/job distributed overhead",
            self.name,
            self.jobs,
            self.first_to_last.as_secs_f64(),
            1.0 / per_job.as_secs_f64(),
            ms(per_job),
            ms(compute_per_job),
            ms(per_job) - ms(compute_per_job)
        );
        println!(
            "        worker CPU {:.2} ms/job; machine {:.0}% busy during the run (load average {} before, {} after)",
            self.worker_cpu_secs * 1000.0 / self.jobs as f64,
            self.machine_busy * 100.0,
            self.load_before,
            self.load_after
        );
    }
}

/// Starts `binary`, waits until every job is in `done`, and measures the run from the
/// jobs' own timestamps.
async fn run_phase(
    rig: &PipelineRig,
    name: &'static str,
    binary: &str,
    batch: &str,
    jobs: &[JobId],
    done: JobState,
    finished_at: fn(&mono2mesh_infra::jobs::Job) -> Option<i64>,
) -> Phase {
    let load_before = loadavg();
    let (busy0, total0) = machine_jiffies();
    let mut worker: Child = rig.spawn_worker(binary, &[]);
    let pid = worker.id();
    let mut cpu_secs = 0.0;
    loop {
        let summary = rig.jobs().batch_summary(batch).await.unwrap().expect("batch exists");
        if summary.count(done) as usize == jobs.len() {
            break;
        }
        if let Some(status) = worker.try_wait().unwrap() {
            panic!("{name} worker exited early: {status}");
        }
        cpu_secs = process_cpu_secs(pid);
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    cpu_secs = process_cpu_secs(pid).max(cpu_secs);
    let (busy1, total1) = machine_jiffies();
    let load_after = loadavg();
    assert!(stop_gracefully(worker).success());

    let mut stamps = Vec::with_capacity(jobs.len());
    let mut after = None;
    loop {
        let page = rig.jobs().list_batch_jobs(batch, Page { after, limit: 500 }).await.unwrap();
        let Some(last) = page.last() else { break };
        after = Some(last.id);
        stamps.extend(page.iter().filter_map(finished_at));
    }
    assert_eq!(stamps.len(), jobs.len(), "every {name} job has its completion time");
    stamps.sort();
    let first_to_last = Duration::from_micros((stamps[stamps.len() - 1] - stamps[0]).max(0) as u64);
    Phase {
        name,
        jobs: jobs.len(),
        first_to_last,
        worker_cpu_secs: cpu_secs,
        machine_busy: (busy1 - busy0) as f64 / (total1 - total0).max(1) as f64,
        load_before,
        load_after,
    }
}

/// Queue, store and database operations of one job, each timed in isolation.
async fn overhead_split(rig: &PipelineRig, photo: &[u8], gate_outputs: &[Vec<u8>], refine_outputs: &[Vec<u8>]) {
    // Queue: publish with confirm, delivery to a consumer, ack. Nothing else uses this lane.
    let lane = Lane::Reconstruct(Category::Train);
    let mut consumer = rig.queue.consume(&[lane], 1).await.unwrap();
    let started = Instant::now();
    for _ in 0..PROBES {
        rig.publish(&StageMessage::new(JobId::new(), Stage::Reconstruct, Some(Category::Train))).await;
        consumer.next().await.unwrap().unwrap().ack().await.unwrap();
    }
    let queue = started.elapsed() / PROBES as u32;
    let _ = consumer.cancel().await;

    // Store: what each worker reads and writes per job, at the real sizes.
    let store = &rig.s3.store;
    let probe_job = JobId::new();
    let input_key = keys::input(probe_job, "photo.png").unwrap();
    store.put(&input_key, Bytes::copy_from_slice(photo)).await.unwrap();
    let voxel_key = keys::stage_artifact(probe_job, Stage::Reconstruct, keys::VOXEL_PROBABILITIES).unwrap();
    store.put(&voxel_key, Bytes::from(voxels(0))).await.unwrap();
    let mut store_time = [Duration::ZERO; 2];
    for (slot, (read, outputs, stage)) in
        [(&input_key, gate_outputs, Stage::Gate), (&voxel_key, refine_outputs, Stage::Refine)].into_iter().enumerate()
    {
        let started = Instant::now();
        for i in 0..PROBES / 4 {
            store.get(read).await.unwrap();
            for (n, bytes) in outputs.iter().enumerate() {
                let key = keys::stage_artifact(probe_job, stage, &format!("probe-{i}-{n}")).unwrap();
                store.put(&key, Bytes::copy_from_slice(bytes)).await.unwrap();
            }
        }
        store_time[slot] = started.elapsed() / (PROBES / 4) as u32;
    }
    let [gate_store, refine_store] = store_time;

    // Database: a stage's begin (read the job) and complete (guarded move + history
    // event in one statement, then read it back for the hand-over).
    let mut probe_jobs = Vec::new();
    for _ in 0..PROBES {
        probe_jobs.push(rig.submit_job("probe", b"p".to_vec()).await);
    }
    let jobs = rig.jobs();
    let started = Instant::now();
    for id in &probe_jobs {
        jobs.get_job(*id).await.unwrap();
        let update = JobUpdate { outputs: Some(serde_json::json!({ "probe": "x" })), ..JobUpdate::default() };
        jobs.advance(*id, Some(Stage::Gate), JobState::Gated, update).await.unwrap();
        jobs.get_job(*id).await.unwrap();
    }
    let database = started.elapsed() / PROBES as u32;
    println!(
        "overhead per job, each part alone (sequential, mean of {PROBES}): queue publish+deliver+ack {:.2} ms; \
         database begin+complete (3 statements) {:.2} ms; store gate get+{} puts {:.2} ms, refine get+{} puts {:.2} ms",
        ms(queue),
        ms(database),
        gate_outputs.len(),
        ms(gate_store),
        refine_outputs.len(),
        ms(refine_store)
    );
    println!(
        "        so gate {:.2} ms/job and refine {:.2} ms/job of latency outside the stage function \
         (spread over {CONCURRENCY} concurrent deliveries per worker)",
        ms(queue + database + gate_store),
        ms(queue + database + refine_store)
    );
}

fn main() {
    let jobs: usize = std::env::var("MONO2MESH_LOAD_JOBS").ok().and_then(|v| v.parse().ok()).unwrap_or(1000);
    let refine_binary = Path::new(GATE).with_file_name("mono2mesh-refine");
    if !refine_binary.is_file() {
        println!("SKIPPED: {} not built (cargo build [--release] -p mono2mesh-refine)", refine_binary.display());
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(async {
        let rig = PipelineRig::start("load").await;
        println!("machine: {} CPUs, load average {} at the start", std::thread::available_parallelism().map_or(0, |n| n.get()), loadavg());

        // Inputs: eight distinct photos and grids, cycled.
        let photos: Vec<Arc<Vec<u8>>> = (0..8).map(|i| Arc::new(photo(i))).collect();
        let grids: Vec<Arc<Vec<u8>>> = (0..8).map(|i| Arc::new(voxels(i))).collect();

        let started = Instant::now();
        let mut gate_jobs = Vec::with_capacity(jobs);
        for i in 0..jobs {
            gate_jobs.push(rig.submit_job("load-gate", photos[i % 8].to_vec()).await);
        }
        let submitted = started.elapsed();
        let started = Instant::now();
        for id in &gate_jobs {
            rig.publish(&StageMessage::new(*id, Stage::Gate, None)).await;
        }
        let published = started.elapsed();
        println!(
            "submitting {jobs} jobs (photo to S3, job row + event): {:.2} ms/job; publishing their gate messages: {:.2} ms/job",
            ms(submitted) / jobs as f64,
            ms(published) / jobs as f64
        );

        let mut refine_jobs = Vec::with_capacity(jobs);
        for i in 0..jobs {
            let id = rig.submit_job("load-refine", b"refine reads voxels, not the photo".to_vec()).await;
            rig.put(&keys::stage_artifact(id, Stage::Reconstruct, keys::VOXEL_PROBABILITIES).unwrap(), grids[i % 8].to_vec()).await;
            rig.jobs().advance(id, Some(Stage::Reconstruct), JobState::Reconstructed, JobUpdate::default()).await.unwrap();
            rig.publish(&StageMessage::new(id, Stage::Refine, None)).await;
            refine_jobs.push(id);
        }

        let gate_phase = run_phase(&rig, "gate", GATE, "load-gate", &gate_jobs, JobState::Gated, |j| {
            j.gated_at.map(|t| t.timestamp_micros())
        })
        .await;
        // The gate worker handed every job to classify; nobody consumes that lane here.
        let refine_phase =
            run_phase(&rig, "refine", refine_binary.to_str().unwrap(), "load-refine", &refine_jobs, JobState::Done, |j| {
                j.done_at.map(|t| t.timestamp_micros())
            })
            .await;

        // The stage functions alone, on the same inputs, as many at once as the worker runs.
        let sample = 200.min(jobs);
        let gate_inputs: Vec<Arc<Vec<u8>>> = (0..sample).map(|i| photos[i % 8].clone()).collect();
        let settings = GateSettings::default();
        let gate_compute = compute_only(&gate_inputs, CONCURRENCY, |p| {
            gate(p, &settings).unwrap();
        });
        let refine_inputs: Vec<Arc<Vec<u8>>> = (0..sample).map(|i| grids[i % 8].clone()).collect();
        let refine_settings = RefineSettings::default();
        let refine_compute = compute_only(&refine_inputs, CONCURRENCY, |g| {
            refine_npy(g, &refine_settings).unwrap();
        });

        println!();
        gate_phase.print(gate_compute);
        refine_phase.print(refine_compute);

        let gated = gate(&photos[0], &settings).unwrap();
        let report = serde_json::to_vec(&gated.report).unwrap();
        let gate_outputs = vec![report, gated.standardised_png.unwrap()];
        let refined = refine_npy(&grids[0], &refine_settings).unwrap();
        let mut refine_outputs: Vec<Vec<u8>> = refined.files.into_iter().map(|f| f.bytes).collect();
        refine_outputs.push(serde_json::to_vec(&refined.stats).unwrap());
        overhead_split(&rig, &photos[0], &gate_outputs, &refine_outputs).await;
        println!("load average at the end: {}", loadavg());
        rig.finish().await;
    });
}
