//! The real `mono2mesh-refine` binary against RabbitMQ, Postgres and S3 (see
//! `mono2mesh_testkit::rig`), fed with stored probability grids as reconstruct leaves them.
//! Fails, rather than skips, when RabbitMQ or Postgres is missing.

use mono2mesh_core::{Category, JobId, JobState, RealSize, Stage, StageMessage};
use mono2mesh_geometry::{npy, VoxelGrid};
use mono2mesh_infra::blob::{keys, BlobStore};
use mono2mesh_infra::jobs::JobUpdate;
use mono2mesh_infra::queue::MessageQueue;
use mono2mesh_testkit::rig::{stop_gracefully, PipelineRig};
use std::time::Duration;

const REFINE: &str = env!("CARGO_BIN_EXE_mono2mesh-refine");

/// A solid box of `size`^3 voxels in a 32^3 grid, placed like Pix2Vox output.
fn box_grid(size: usize) -> VoxelGrid {
    VoxelGrid::centred_cube(32, size)
}

/// A job that reconstruct has finished: state `reconstructed`, probabilities stored
/// (unless `voxels` is `None`), refine message queued.
async fn reconstructed_job(rig: &PipelineRig, voxels: Option<Vec<u8>>) -> JobId {
    sized_reconstructed_job(rig, voxels, None).await
}

/// [`reconstructed_job`] for a job submitted with a real size.
async fn sized_reconstructed_job(rig: &PipelineRig, voxels: Option<Vec<u8>>, size: Option<RealSize>) -> JobId {
    let id = rig.submit_sized_job("refine-batch", b"photo bytes are not read by refine".to_vec(), size).await;
    if let Some(voxels) = voxels {
        rig.put(&keys::stage_artifact(id, Stage::Reconstruct, keys::VOXEL_PROBABILITIES).unwrap(), voxels).await;
    }
    rig.jobs().advance(id, Some(Stage::Reconstruct), JobState::Reconstructed, JobUpdate::default()).await.unwrap();
    // The category sets the asset's typical size (a chair: 0.85 m tall).
    rig.publish(&StageMessage::new(id, Stage::Refine, Some(Category::Chair))).await;
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stored_voxel_grids_become_meshes_and_bad_ones_end_cleanly() {
    let rig = PipelineRig::start("refine-batch").await;
    let mut good = Vec::new();
    for size in 6..16 {
        good.push(reconstructed_job(&rig, Some(npy::grid_to_npy(&box_grid(size)))).await);
    }
    // A size stated at submission wins over the category's typical one.
    let boxed = RealSize::dimensions(450.0, 900.0, 520.0).unwrap();
    let sized = sized_reconstructed_job(&rig, Some(npy::grid_to_npy(&box_grid(10))), Some(boxed)).await;
    let empty = reconstructed_job(&rig, Some(npy::grid_to_npy(&VoxelGrid::new([32, 32, 32])))).await;
    let missing = reconstructed_job(&rig, None).await;
    let corrupt = reconstructed_job(&rig, Some(b"\x93NUMPY truncated".to_vec())).await;
    // A job whose gated photo is stored, as the gate leaves it: a red box on white.
    let photographed = reconstructed_job(&rig, Some(npy::grid_to_npy(&box_grid(12)))).await;
    let photo = image::RgbImage::from_fn(600, 600, |x, y| {
        if (200..420).contains(&x) && (170..430).contains(&y) {
            image::Rgb([200, 30, 20])
        } else {
            image::Rgb([255, 255, 255])
        }
    });
    let mut png = Vec::new();
    photo.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png).unwrap();
    rig.put(&keys::stage_artifact(photographed, Stage::Gate, keys::GATED_IMAGE).unwrap(), png).await;

    let worker = rig.spawn_worker(REFINE, &[]);
    let all: Vec<JobId> = good.iter().copied().chain([sized, empty, missing, corrupt, photographed]).collect();
    let ended = [JobState::Done, JobState::Rejected, JobState::Failed];
    rig.wait_for_states(&all, &ended, Duration::from_secs(60)).await;
    assert!(stop_gracefully(worker).success());

    for id in &good {
        let job = rig.jobs().get_job(*id).await.unwrap();
        assert_eq!(job.state, JobState::Done, "job {id}: {:?}", job.last_error);
        for ext in ["glb", "obj", "ply", "stl"] {
            let key = keys::stage_artifact(*id, Stage::Refine, &format!("mesh.{ext}")).unwrap();
            assert_eq!(job.outputs[format!("mesh_{ext}")], key.as_str());
            assert!(rig.s3.store.head(&key).await.unwrap().size > 0, "{key} stored");
        }
        let stats_key = keys::stage_artifact(*id, Stage::Refine, "mesh.json").unwrap();
        let stats: serde_json::Value = serde_json::from_slice(&rig.s3.store.get(&stats_key).await.unwrap()).unwrap();
        assert_eq!(stats["watertight"], true, "a box meshes watertight: {stats}");
        assert!(stats["volume"].as_f64().unwrap() > 0.0);
        assert_eq!(stats["scale"]["source"], "category", "{stats}");
        assert!((stats["scale"]["size_m"][1].as_f64().unwrap() - 0.85).abs() < 1e-5, "{stats}");
        let events = rig.jobs().events(*id).await.unwrap();
        let names: Vec<&str> = events.iter().map(|e| e.event.as_str()).collect();
        assert_eq!(names, vec!["submitted", "reconstructed", "done"]);
        // The scale is in the job's history too, beside the other mesh measurements.
        assert_eq!(events[2].detail["mesh"]["scale"], stats["scale"]);
        // A solid block fills all of its bounding box; chairs fill 11-20% of theirs: the
        // asset is done but flagged for review, with the reason in its quality parts.
        let quality = job.quality.clone().expect("the refine stage judges every asset");
        assert_eq!(quality, stats["quality"], "the job's verdict is the stored mesh.json's");
        assert_eq!((quality["watertight"].as_f64(), quality["one_component"].as_f64()), (Some(1.0), Some(1.0)), "{quality}");
        assert_eq!((quality["plausible_volume"].as_f64(), quality["needs_review"].as_bool()), (Some(0.0), Some(true)), "{quality}");
        // No photo stored for these: no colour, and no fit in the quality.
        assert!(stats.get("colour").is_none() && quality.get("silhouette_iou").is_none(), "{stats}");
        let preview = keys::stage_artifact(*id, Stage::Refine, "preview.png").unwrap();
        assert_eq!(job.outputs["preview"], preview.as_str());
        let preview = image::load_from_memory(&rig.s3.store.get(&preview).await.unwrap()).unwrap();
        assert_eq!((preview.width(), preview.height()), (768, 256));
    }
    // The photographed box is painted from its photo: red vertices, the fit in its quality.
    let job = rig.jobs().get_job(photographed).await.unwrap();
    assert_eq!(job.state, JobState::Done, "{:?}", job.last_error);
    let stats_key = keys::stage_artifact(photographed, Stage::Refine, "mesh.json").unwrap();
    let stats: serde_json::Value = serde_json::from_slice(&rig.s3.store.get(&stats_key).await.unwrap()).unwrap();
    assert_eq!(stats["colour"]["status"], "painted", "{stats}");
    assert!(stats["colour"]["silhouette_iou"].as_f64().unwrap() > 0.8, "{stats}");
    assert_eq!(stats["colour"]["base_colour"], serde_json::json!([200, 30, 20]), "{stats}");
    let quality = job.quality.clone().unwrap();
    let fitted = stats["colour"]["silhouette_iou"].as_f64().unwrap();
    assert!((quality["silhouette_iou"].as_f64().unwrap() - fitted).abs() < 1e-6, "{quality}");
    assert!(quality["mask_coverage"].as_f64().unwrap() > 0.8, "{quality}");
    let glb = rig.s3.store.get(&keys::stage_artifact(photographed, Stage::Refine, "mesh.glb").unwrap()).await.unwrap();
    let gltf = gltf::Gltf::from_slice(&glb).unwrap();
    let primitive = gltf.document.meshes().next().unwrap().primitives().next().unwrap();
    assert!(primitive.get(&gltf::Semantic::Colors(0)).is_some(), "the GLB carries COLOR_0");
    let flagged = rig.jobs().stats(Duration::from_secs(3600)).await.unwrap().needs_review;
    assert_eq!(flagged, good.len() as i64 + 2, "every block-shaped chair (the sized and the photographed one too) is counted for review");
    let sized = rig.jobs().get_job(sized).await.unwrap();
    assert_eq!(sized.state, JobState::Done, "{:?}", sized.last_error);
    let stats_key = keys::stage_artifact(sized.id, Stage::Refine, "mesh.json").unwrap();
    let stats: serde_json::Value = serde_json::from_slice(&rig.s3.store.get(&stats_key).await.unwrap()).unwrap();
    assert_eq!(stats["scale"]["source"], "job", "{stats}");
    let extents: Vec<f64> = stats["scale"]["size_m"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
    for (got, want) in extents.iter().zip([0.45, 0.9, 0.52]) {
        assert!((got - want).abs() < 1e-4, "each axis scaled to the stated box: {extents:?}");
    }
    // Nothing solid predicted: the user's photo gave no shape, a rejection.
    let empty = rig.jobs().get_job(empty).await.unwrap();
    assert_eq!(empty.state, JobState::Rejected);
    assert!(empty.last_error.unwrap().contains("no surface"));
    // Broken inputs fail the job and park the message with its reason.
    for id in [missing, corrupt] {
        assert_eq!(rig.jobs().get_job(id).await.unwrap().state, JobState::Failed);
    }
    let letters = rig.queue.take_dead_letters(Stage::Refine, 10).await.unwrap();
    assert_eq!(letters.len(), 2, "{letters:?}");
    let reasons: Vec<&str> = letters.iter().map(|l| l.reason.as_str()).collect();
    assert!(reasons.iter().any(|r| r.contains("not found")), "{reasons:?}");
    assert!(reasons.iter().any(|r| r.contains("probability grid")), "{reasons:?}");
    rig.finish().await;
}
