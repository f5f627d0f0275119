//! The distributed pipeline end to end: the four real worker binaries (gate, classify,
//! reconstruct, refine) on RabbitMQ, Postgres and S3 (see `mono2mesh_testkit::rig`),
//! configured only through the environment and flags, as compose runs them.
//!
//! Every worker exports its traces and metrics over OTLP/HTTP to a receiver in this
//! test, as compose points them at the collector: one job is one trace across the four
//! processes, and each process's metrics arrive.
//!
//! The reconstruct worker serves every category with a freshly initialised (seeded)
//! Pix2Vox-F saved as the registry's `general.safetensors`: this checks the distributed
//! plumbing (routing, storage, state machine, history), not shape quality. The
//! classifier is the real ImageNet MobileNetV2 (`scripts/setup.sh` makes it) and the
//! photos are real ImageNet photos from ../shared, so classification routes jobs to
//! several category lanes.
//!
//! Prints SKIPPED when the photos, the classifier weights or the other workers'
//! binaries are missing (`cargo test --workspace` builds every binary; a lone
//! `cargo test -p mono2mesh-reconstruct` does not). Fails when RabbitMQ or Postgres is.

use mono2mesh_core::{Category, JobId, JobState, Stage, StageMessage};
use mono2mesh_infra::blob::{keys, BlobStore};
use mono2mesh_infra::queue::{Lane, MessageQueue};
use mono2mesh_testkit::otlp::{in_new_trace, traced_process, OtlpReceiver, RootSpan};
use mono2mesh_testkit::rig::{stop_gracefully, PipelineRig};
use mono2mesh_vision::pix2vox::Variant;
use mono2mesh_vision::pix2vox_model::{ModelMetadata, Pix2VoxModel, Provenance};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::Duration;

const RECONSTRUCT: &str = env!("CARGO_BIN_EXE_mono2mesh-reconstruct");
const CLASSIFIER: &str = "classifiers/mobilenet_v2.safetensors";

/// The other workers' binaries, built beside this package's one.
fn sibling_binaries() -> Result<[PathBuf; 3], String> {
    let dir = Path::new(RECONSTRUCT).parent().ok_or("binary path has no directory")?;
    let found = ["mono2mesh-gate", "mono2mesh-classify", "mono2mesh-refine"].map(|name| dir.join(name));
    match found.iter().find(|p| !p.is_file()) {
        Some(missing) => Err(format!(
            "{} not built (run `cargo build -p mono2mesh-gate -p mono2mesh-classify -p mono2mesh-refine` \
             or `cargo test --workspace`)",
            missing.display()
        )),
        None => Ok(found),
    }
}

fn classifier_file() -> Result<PathBuf, String> {
    let models = std::env::var_os("MONO2MESH_MODELS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models"));
    let file = models.join(CLASSIFIER);
    file.is_file().then_some(file.clone()).ok_or_else(|| {
        format!("{} not found (run scripts/setup.sh, or set MONO2MESH_MODELS)", file.display())
    })
}

/// The first ImageNet photo of each category directory (12 categories in ../shared).
fn real_photos() -> Result<Vec<(Category, PathBuf)>, String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/testdata/photos/imagenet");
    let entries = std::fs::read_dir(&root).map_err(|e| format!("{}: {e}", root.display()))?;
    let mut photos = Vec::new();
    for entry in entries.flatten() {
        let Ok(category) = entry.file_name().to_string_lossy().parse::<Category>() else { continue };
        let mut files: Vec<PathBuf> = std::fs::read_dir(entry.path())
            .map_err(|e| format!("{}: {e}", entry.path().display()))?
            .flatten()
            .map(|f| f.path())
            .collect();
        files.sort();
        if let Some(first) = files.into_iter().next() {
            photos.push((category, first));
        }
    }
    photos.sort();
    if photos.is_empty() {
        return Err(format!("no photos under {}", root.display()));
    }
    Ok(photos)
}

/// A general Pix2Vox-F with seeded random weights, saved where the registry looks.
fn write_general_model(registry: &Path) {
    tch::manual_seed(11);
    let metadata = ModelMetadata::official(Variant::F, None, Provenance::of_kind("test"));
    let path = registry.join("pix2vox/general.safetensors");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    Pix2VoxModel::new(metadata, tch::Device::Cpu).save(&path).unwrap();
}

async fn events(rig: &PipelineRig, id: JobId) -> Vec<String> {
    rig.jobs().events(id).await.unwrap().into_iter().map(|e| e.event).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_go_through_all_four_workers() {
    let prerequisites = sibling_binaries().and_then(|bins| Ok((bins, classifier_file()?, real_photos()?)));
    let ([gate, classify, refine], classifier, photos) = match prerequisites {
        Ok(found) => found,
        Err(why) => {
            eprintln!("SKIPPED: {why}");
            return;
        }
    };
    let registry = tempfile::tempdir().unwrap();
    write_general_model(registry.path());

    let rig = PipelineRig::start("pipeline").await;
    let mut jobs = Vec::new();
    for (_, path) in &photos {
        jobs.push(rig.submit_job("e2e", std::fs::read(path).unwrap()).await);
    }
    let unreadable = rig.submit_job("e2e", b"not a photo at all".to_vec()).await;
    jobs.push(unreadable);
    // Each job's gate message is published inside a root span of its own, as a submission is.
    let receiver = traced_process();
    let mut roots = BTreeMap::new();
    for id in &jobs {
        let ((), root) = in_new_trace(rig.publish(&StageMessage::new(*id, Stage::Gate, None))).await;
        roots.insert(*id, root);
    }
    let otlp = [("MONO2MESH__TELEMETRY__OTLP_ENDPOINT", receiver.endpoint.as_str()), ("OTEL_BSP_SCHEDULE_DELAY", "200")];

    // Gate and classify first, so the reconstruct lanes can be inspected before anything
    // consumes them.
    let cpu = [otlp[0], otlp[1], ("MONO2MESH__RECONSTRUCT__DEVICE", "cpu")];
    let mut workers: Vec<Child> = vec![
        rig.spawn_worker_with_env(gate.to_str().unwrap(), &[], &otlp),
        rig.spawn_worker_with_env(
            classify.to_str().unwrap(),
            &[],
            &[otlp[0], otlp[1], ("MONO2MESH__CLASSIFY__DEVICE", "cpu"), ("MONO2MESH__CLASSIFY__MODEL", classifier.to_str().unwrap())],
        ),
    ];
    rig.wait_for_states(&jobs, &[JobState::Classified, JobState::Rejected], Duration::from_secs(180)).await;

    // Classify routed each job to the lane of its category, and only there.
    let mut by_category: BTreeMap<Category, u32> = BTreeMap::new();
    for id in &jobs {
        let job = rig.jobs().get_job(*id).await.unwrap();
        if job.state == JobState::Classified {
            let category = job.category.unwrap_or_else(|| panic!("classified job {id} has a category"));
            *by_category.entry(category).or_default() += 1;
        }
    }
    assert!(!by_category.is_empty(), "no photo was classified; nothing would reach reconstruct");
    // A job is recorded classified before its hand-over is published (the publish comes
    // after the handler returns), so wait for the lanes to catch up, on the condition.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let mut waiting = BTreeMap::new();
        for category in Category::ALL {
            waiting.insert(category, rig.queue.ready_count(Lane::Reconstruct(category)).await.unwrap());
        }
        let matches = Category::ALL.iter().all(|c| waiting[c] == by_category.get(c).copied().unwrap_or(0));
        if matches || std::time::Instant::now() > deadline {
            for category in Category::ALL {
                assert_eq!(waiting[&category], by_category.get(&category).copied().unwrap_or(0), "messages on reconstruct.{category}");
            }
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!("classified into {} lanes: {by_category:?}", by_category.len());

    workers.push(rig.spawn_worker_with_env(
        RECONSTRUCT,
        &["--models", registry.path().to_str().unwrap()],
        &cpu,
    ));
    workers.push(rig.spawn_worker_with_env(refine.to_str().unwrap(), &[], &otlp));
    rig.wait_for_states(&jobs, &[JobState::Done, JobState::Rejected], Duration::from_secs(300)).await;
    for worker in workers {
        let status = stop_gracefully(worker);
        assert!(status.success(), "worker exit status after SIGTERM: {status}");
    }

    let (mut done, mut rejected_late) = (0, 0);
    let mut traced = false;
    let mut rejected_at_gate = 0;
    for id in &jobs {
        let job = rig.jobs().get_job(*id).await.unwrap();
        let history = events(&rig, *id).await;
        if job.state == JobState::Rejected {
            assert!(job.last_error.as_deref().is_some_and(|e| !e.is_empty()), "job {id}: rejected with a reason");
            assert_eq!(history.last().map(String::as_str), Some("rejected"), "job {id}: {history:?}");
            if job.reconstructed_at.is_some() {
                rejected_late += 1; // refine found no surface in the untrained model's grid
            }
            if history == ["submitted", "rejected"] {
                rejected_at_gate += 1;
            }
            continue;
        }
        done += 1;
        assert_eq!(history, ["submitted", "gated", "classified", "reconstructed", "done"], "job {id}");
        assert_eq!(job.model.as_deref(), Some("pix2vox/general"));
        let category = job.category.expect("a done job has a category");
        assert!(by_category.contains_key(&category));
        for (name, key) in job.outputs.as_object().unwrap() {
            let key = mono2mesh_infra::blob::BlobKey::parse(key.as_str().unwrap().to_string()).unwrap();
            assert!(rig.s3.store.head(&key).await.unwrap().size > 0, "job {id}: output {name} ({key}) stored");
        }
        for name in ["gated_image", "classification", "voxels", "probabilities", "mesh_glb", "mesh_obj", "mesh_stats"] {
            assert!(job.outputs.get(name).is_some(), "job {id}: output {name} recorded: {}", job.outputs);
        }
        let voxels = keys::stage_artifact(*id, Stage::Reconstruct, keys::VOXELS_BINVOX).unwrap();
        assert_eq!(job.outputs["voxels"], voxels.as_str());
        if !traced {
            assert_one_trace_across_four_processes(receiver, *id, &roots[id]).await;
            traced = true;
        }
    }
    let unreadable = rig.jobs().get_job(unreadable).await.unwrap();
    assert_eq!(unreadable.state, JobState::Rejected);
    assert_eq!(events(&rig, unreadable.id).await, ["submitted", "rejected"]);
    assert!(done >= 1, "at least one job meshed (the seeded model's grids have surfaces)");
    for stage in Stage::ALL {
        assert_eq!(rig.queue.take_dead_letters(stage, 10).await.unwrap(), vec![], "{stage}: nothing dead-lettered");
    }
    println!("{} jobs: {done} done, {} rejected ({rejected_late} after reconstruct)", jobs.len(), jobs.len() - done);
    assert_each_worker_pushed_its_metrics(receiver, done, rejected_at_gate).await;
    rig.finish().await;
}

/// The done job's spans: gate, classify, reconstruct and refine, each exported by its own
/// process and each the child of the one before (the span that published its message).
async fn assert_one_trace_across_four_processes(receiver: &OtlpReceiver, id: JobId, root: &RootSpan) {
    let stages = ["gate", "classify", "reconstruct", "refine"];
    let spans = receiver
        .wait_for_trace(&root.trace_id, Duration::from_secs(30), |spans| {
            stages.iter().all(|stage| spans.iter().any(|s| s.name == *stage))
        })
        .await;
    let mut parent = root.span_id.clone();
    for stage in stages {
        let span = spans.iter().find(|s| s.name == stage).unwrap();
        assert_eq!(span.service, format!("mono2mesh-{stage}"), "{span:?}");
        assert_eq!(span.parent_span_id, parent, "{stage} continues the trace: {spans:#?}");
        assert_eq!(span.attribute("job_id"), Some(id.to_string().as_str()));
        assert_eq!(span.attribute("outcome"), Some("ok"));
        parent = span.span_id.clone();
    }
}

/// What each worker pushed over OTLP before it stopped (the last export runs at
/// shutdown): its stage's finished jobs and time queued, and reconstruct's device time.
async fn assert_each_worker_pushed_its_metrics(receiver: &OtlpReceiver, done: usize, rejected_at_gate: usize) {
    use mono2mesh_infra::telemetry::names;
    use mono2mesh_testkit::otlp::PointValue;
    let wait = Duration::from_secs(30);
    for stage in Stage::ALL {
        let service = format!("mono2mesh-{stage}");
        let ok = [("stage", stage.name()), ("outcome", "ok")];
        let finished = receiver
            .wait_for_point(&service, names::STAGE_FINISHED, &ok, wait, |v| {
                matches!(v, PointValue::Sum { value, monotonic: true } if *value >= done as f64)
            })
            .await;
        println!("{service}: {:?}", finished.value);
        receiver
            .wait_for_point(&service, names::QUEUE_WAIT, &[("stage", stage.name())], wait, |v| {
                matches!(v, PointValue::Histogram { count, .. } if *count >= done as u64)
            })
            .await;
    }
    // The gate's verdicts count as rejections, not as successes.
    assert!(rejected_at_gate >= 1, "the unreadable photo is rejected at the gate");
    let rejected = [("stage", "gate"), ("outcome", "rejected")];
    let gate_rejected = receiver.wait_for_point("mono2mesh-gate", names::STAGE_FINISHED, &rejected, wait, |_| true).await;
    assert_eq!(gate_rejected.value, PointValue::Sum { value: rejected_at_gate as f64, monotonic: true });
    let device = [("stage", "reconstruct"), ("device", "cpu")];
    let batches = receiver
        .wait_for_point("mono2mesh-reconstruct", names::DEVICE_TIME, &device, wait, |v| {
            matches!(v, PointValue::Histogram { count, sum, .. } if *count >= 1 && *sum > 0.0)
        })
        .await;
    println!("reconstruct device time: {:?}", batches.value);
}
