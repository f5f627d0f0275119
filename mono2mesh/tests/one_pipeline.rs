//! One pipeline, two transports: the same photos through `mono2mesh run` (in-process
//! queue, in-memory job store, local directory) and through the four worker binaries on
//! RabbitMQ, Postgres and S3 must give the same answer: gate verdict and scores,
//! category, voxel grid (binvox and probabilities, byte for byte) and mesh.
//!
//! Both read one configuration, given here as `MONO2MESH__*` environment: the shipped
//! model pack and classifier in `models/`, CPU, and batches of one (so the forward
//! passes see the same tensors in both modes).
//!
//! Prints SKIPPED when the classifier weights or the model pack are missing
//! (`scripts/setup.sh` makes the classifier). Fails when RabbitMQ or Postgres is.

use mono2mesh_core::{JobId, JobState, Stage, StageMessage};
use mono2mesh_infra::blob::{keys, BlobStore};
use mono2mesh_testkit::rig::{stop_gracefully, PipelineRig};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const MONO2MESH: &str = env!("CARGO_BIN_EXE_mono2mesh");

fn models_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../models")
}

fn worker_binaries() -> Result<[PathBuf; 4], String> {
    let dir = Path::new(MONO2MESH).parent().ok_or("binary path has no directory")?;
    let found = ["gate", "classify", "reconstruct", "refine"].map(|s| dir.join(format!("mono2mesh-{s}")));
    match found.iter().find(|p| !p.is_file()) {
        Some(missing) => Err(format!("{} not built (`cargo test --workspace` builds it)", missing.display())),
        None => Ok(found),
    }
}

/// The settings both modes run with.
fn shared_config() -> Vec<(&'static str, String)> {
    vec![
        ("MONO2MESH__MODELS__REGISTRY", models_dir().display().to_string()),
        ("MONO2MESH__CLASSIFY__DEVICE", "cpu".into()),
        ("MONO2MESH__RECONSTRUCT__DEVICE", "cpu".into()),
        ("MONO2MESH__CLASSIFY__BATCH_SIZE", "1".into()),
        ("MONO2MESH__RECONSTRUCT__BATCH_SIZE", "1".into()),
    ]
}

/// Generated catalog photos of four categories, real photos from ../shared when there,
/// a dark photo and a file that is not a photo.
fn photos(dir: &Path) -> Vec<PathBuf> {
    let status = Command::new(MONO2MESH)
        .args(["dataset", "photos", "--categories", "chair,car,aeroplane,sofa", "--per-category", "1", "--seed", "7", "--out"])
        .arg(dir.join("generated"))
        .status()
        .unwrap();
    assert!(status.success());
    let mut found = files_with(&dir.join("generated"), "jpg");
    found.sort();
    assert_eq!(found.len(), 4, "{found:?}");
    let real = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/testdata/photos/imagenet");
    for category in ["chair", "bicycle", "tvmonitor"] {
        let mut files = files_with(&real.join(category), "jpg");
        files.sort();
        match files.first() {
            Some(first) => found.push(first.clone()),
            None => eprintln!("SKIPPED (part): no real {category} photo under {}", real.display()),
        }
    }
    let dark = dir.join("dark.png");
    image::RgbImage::from_pixel(320, 240, image::Rgb([4, 4, 4])).save(&dark).unwrap();
    let corrupt = dir.join("corrupt.jpg");
    std::fs::write(&corrupt, b"\xff\xd8\xff\xe0 not a whole jpeg").unwrap();
    found.extend([dark, corrupt]);
    found
}

fn files_with(dir: &Path, extension: &str) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut out = Vec::new();
    for path in entries.flatten().map(|e| e.path()) {
        if path.is_dir() {
            out.extend(files_with(&path, extension));
        } else if path.extension().is_some_and(|e| e.eq_ignore_ascii_case(extension)) {
            out.push(path);
        }
    }
    out
}

/// What both modes must agree on, for one photo.
#[derive(Debug, PartialEq)]
struct Answer {
    state: String,
    gate_decision: Value,
    gate_scores: Value,
    category: Value,
    binvox: Option<Vec<u8>>,
    probabilities: Option<Vec<u8>>,
    mesh: Option<Value>,
    glb: Option<Vec<u8>>,
}

fn embedded_answers(photos: &[PathBuf], out: &Path) -> Vec<Answer> {
    let output = Command::new(MONO2MESH)
        .arg("run")
        .args(photos)
        .args(["--no-preview", "--json", "-o"])
        .arg(out)
        .envs(shared_config())
        .output()
        .unwrap();
    let summary: Value = serde_json::from_slice(&std::fs::read(out.join("summary.json")).unwrap_or_else(|e| {
        panic!("no summary ({e}); stderr: {}", String::from_utf8_lossy(&output.stderr))
    }))
    .unwrap();
    summary["photos"]
        .as_array()
        .unwrap()
        .iter()
        .map(|report| {
            let dir = out.join(report["name"].as_str().unwrap());
            let read = |name: &str| std::fs::read(dir.join(name)).ok();
            Answer {
                state: report["status"].as_str().unwrap().to_string(),
                gate_decision: report["gate"]["decision"].clone(),
                gate_scores: report["gate"]["scores"].clone(),
                category: report["category"].clone(),
                binvox: read("voxels.binvox"),
                probabilities: read("probabilities.npy"),
                mesh: (!report["mesh"].is_null()).then(|| report["mesh"].clone()),
                glb: read("mesh.glb"),
            }
        })
        .collect()
}

async fn distributed_answer(rig: &PipelineRig, id: JobId) -> Answer {
    let job = rig.jobs().get_job(id).await.unwrap();
    let get = |stage: Stage, name: &'static str| async move {
        let key = keys::stage_artifact(id, stage, name).unwrap();
        rig.s3.store.get(&key).await.ok().map(|b| b.to_vec())
    };
    let gate = job.gate_scores.clone().unwrap_or(Value::Null);
    let stored_gate: Value = match get(Stage::Gate, keys::GATE_REPORT).await {
        Some(bytes) => serde_json::from_slice(&bytes).unwrap(),
        None => gate,
    };
    Answer {
        state: job.state.name().to_string(),
        gate_decision: stored_gate["decision"].clone(),
        gate_scores: stored_gate["scores"].clone(),
        category: job.category.map_or(Value::Null, |c| Value::String(c.name().to_string())),
        binvox: get(Stage::Reconstruct, keys::VOXELS_BINVOX).await,
        probabilities: get(Stage::Reconstruct, keys::VOXEL_PROBABILITIES).await,
        mesh: get(Stage::Refine, "mesh.json").await.map(|b| serde_json::from_slice(&b).unwrap()),
        glb: get(Stage::Refine, "mesh.glb").await,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_and_the_four_workers_give_the_same_answer() {
    let classifier = models_dir().join("classifiers/mobilenet_v2.safetensors");
    let pack = models_dir().join("pix2vox/general.safetensors");
    let workers = match worker_binaries() {
        Ok(_) if !classifier.is_file() => Err(format!("{} missing (run scripts/setup.sh)", classifier.display())),
        Ok(_) if !pack.is_file() => Err(format!("{} missing (the model pack)", pack.display())),
        other => other,
    };
    let [gate, classify, reconstruct, refine] = match workers {
        Ok(found) => found,
        Err(why) => {
            eprintln!("SKIPPED: {why}");
            return;
        }
    };
    let tmp = tempfile::tempdir().unwrap();
    let photos = photos(tmp.path());
    let embedded = embedded_answers(&photos, &tmp.path().join("out"));
    assert_eq!(embedded.len(), photos.len());

    let rig = PipelineRig::start("one-pipeline").await;
    let mut jobs = Vec::new();
    for photo in &photos {
        let id = rig.submit_job("parity", std::fs::read(photo).unwrap()).await;
        rig.publish(&StageMessage::new(id, Stage::Gate, None)).await;
        jobs.push(id);
    }
    let config = shared_config();
    let env: Vec<(&str, &str)> = config.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let running: Vec<_> = [gate, classify, reconstruct, refine]
        .iter()
        .map(|binary| rig.spawn_worker_with_env(binary.to_str().unwrap(), &[], &env))
        .collect();
    let ended = [JobState::Done, JobState::Rejected, JobState::Failed];
    rig.wait_for_states(&jobs, &ended, Duration::from_secs(300)).await;
    for worker in running {
        assert!(stop_gracefully(worker).success());
    }

    let mut done = 0;
    for ((photo, id), embedded) in photos.iter().zip(&jobs).zip(&embedded) {
        let distributed = distributed_answer(&rig, *id).await;
        // Compare the small parts first, so a mismatch prints something readable.
        let brief = |a: &Answer| (a.state.clone(), a.gate_decision.clone(), a.gate_scores.clone(), a.category.clone(), a.mesh.clone());
        assert_eq!(brief(embedded), brief(&distributed), "{}", photo.display());
        assert!(embedded == &distributed, "{}: voxel grids or mesh files differ", photo.display());
        done += usize::from(embedded.state == "done");
    }
    println!("{} photos, {done} done, the same in both modes", photos.len());
    // Some generated shots are rejected (blurry, or classified below the threshold): the
    // point is that both modes reject the same ones.
    assert!(done >= 2, "the shipped pack meshes photos ({done} done)");
    // Catalog-ready assets: the generated shots (plain backdrops) are coloured from their
    // photos, with the fit in their quality, and every GLB of the run passes the Khronos
    // validator.
    let mut glbs = Vec::new();
    for (i, answer) in embedded.iter().enumerate().filter(|(_, a)| a.state == "done") {
        let mesh = answer.mesh.as_ref().unwrap();
        println!("{}: colour {} quality {}", photos[i].display(), mesh["colour"], mesh["quality"]);
        assert!(mesh["quality"]["confidence"].as_f64().is_some_and(|c| (0.0..=1.0).contains(&c)), "{mesh}");
        assert_eq!(mesh["scale"]["units"], "m");
        if i < 4 {
            assert_eq!(mesh["colour"]["status"], "painted", "{}: {mesh}", photos[i].display());
            assert!(mesh["quality"]["silhouette_iou"].as_f64().is_some(), "{mesh}");
        }
        let path = tmp.path().join(format!("asset-{i}.glb"));
        std::fs::write(&path, answer.glb.as_ref().unwrap()).unwrap();
        glbs.push(path);
    }
    match mono2mesh_testkit::gltf_validator::validator() {
        Ok(script) => {
            let (status, reports) = mono2mesh_testkit::gltf_validator::validate(&script, &glbs);
            assert_eq!(reports.len(), glbs.len());
            mono2mesh_testkit::gltf_validator::assert_clean(&reports);
            assert_eq!(status, 0);
        }
        Err(why) => eprintln!("SKIPPED (part): validating the run's GLBs: {why}"),
    }
    let dark = embedded.iter().rev().nth(1).unwrap();
    assert_eq!((dark.state.as_str(), dark.gate_decision.as_str()), ("rejected", Some("reject")));
    rig.finish().await;
}
