//! `mono2mesh run` end to end on local files: the embedded pipeline with a real (untrained,
//! seeded) Pix2Vox-F model in a registry, generated photos, and bad inputs.

use std::path::{Path, PathBuf};
use std::process::Command;

use mono2mesh_vision::pix2vox::Variant;
use mono2mesh_vision::pix2vox_model::{ModelMetadata, Pix2VoxModel, Provenance};
use serde_json::Value;

fn mono2mesh() -> Command {
    Command::new(env!("CARGO_BIN_EXE_mono2mesh"))
}

/// A general model with seeded random weights: the test is about the pipeline, not quality.
fn write_general_model(registry: &Path) -> PathBuf {
    tch::manual_seed(11);
    let metadata = ModelMetadata::official(Variant::F, None, Provenance::of_kind("test"));
    let path = registry.join("pix2vox/general.safetensors");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    Pix2VoxModel::new(metadata, tch::Device::Cpu).save(&path).unwrap();
    path
}

fn photos(dir: &Path) -> Vec<PathBuf> {
    let status = mono2mesh()
        .args(["dataset", "photos", "--categories", "chair", "--per-category", "2", "--seed", "5", "--out"])
        .arg(dir)
        .status()
        .unwrap();
    assert!(status.success());
    let mut found: Vec<PathBuf> = walk(dir).into_iter().filter(|p| p.extension().is_some_and(|e| e == "jpg")).collect();
    found.sort();
    assert_eq!(found.len(), 2, "{found:?}");
    found
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() { out.extend(walk(&path)) } else { out.push(path) }
    }
    out
}

fn read_json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))).unwrap()
}

#[test]
fn run_writes_every_output_and_rejects_bad_photos_with_reasons() {
    let tmp = tempfile::tempdir().unwrap();
    let registry = tmp.path().join("models");
    write_general_model(&registry);
    let mut inputs = photos(&tmp.path().join("photos"));
    let corrupt = tmp.path().join("corrupt.jpg");
    std::fs::write(&corrupt, b"\xff\xd8\xff\xe0 definitely not a whole jpeg").unwrap();
    let dark = tmp.path().join("dark.png");
    image::RgbImage::from_pixel(300, 200, image::Rgb([3, 3, 3])).save(&dark).unwrap();
    inputs.push(corrupt);
    inputs.push(dark);

    let out = tmp.path().join("out");
    let output = mono2mesh()
        .arg("run")
        .args(&inputs)
        .args(["--category", "chair", "--formats", "glb,obj", "--lods", "0.5", "--device", "cpu", "-o"])
        .arg(&out)
        .arg("--models")
        .arg(&registry)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "stdout: {stdout}\nstderr: {}", String::from_utf8_lossy(&output.stderr));

    let summary = read_json(&out.join("summary.json"));
    let reports = summary["photos"].as_array().unwrap();
    assert_eq!(reports.len(), 4);
    assert_eq!(summary["failed"], 0);
    // The two generated photos pass the gate and go through reconstruct.
    for report in &reports[..2] {
        let name = report["name"].as_str().unwrap();
        let dir = out.join(name);
        for file in ["gate.json", "gated.png", "voxels.binvox", "probabilities.npy", "report.json"] {
            assert!(dir.join(file).is_file(), "{name}: missing {file}; report {report}");
        }
        assert_eq!(report["category"], "chair");
        assert_eq!(report["model"]["role"], "general");
        let npy = std::fs::read(dir.join("probabilities.npy")).unwrap();
        assert!(npy.starts_with(b"\x93NUMPY"), "{name}: not an .npy file");
        let header_len = npy.len() - 32 * 32 * 32 * 4;
        assert_eq!(header_len % 16, 0, "{name}: .npy data must start 16-byte aligned");
        match report["status"].as_str().unwrap() {
            "done" => {
                for file in ["mesh.glb", "mesh.obj", "mesh_lod1.glb", "preview.png"] {
                    assert!(dir.join(file).is_file(), "{name}: missing {file}");
                }
                let lod = &report["mesh"]["lods"][0];
                assert_eq!((lod["level"].as_u64(), lod["fraction"].as_f64()), (Some(1), Some(0.5)), "{report}");
                assert!(lod["triangles"].as_u64().unwrap() * 2 <= report["mesh"]["triangles"].as_u64().unwrap() + 1, "{report}");
                assert_eq!(report["mesh"]["watertight"], true);
                let preview = image::open(dir.join("preview.png")).unwrap();
                assert_eq!((preview.width(), preview.height()), (768, 256));
            }
            // An untrained network may predict nothing above the iso level: then refine
            // must say so rather than write an empty mesh.
            "rejected" => assert!(report["reasons"][0].as_str().unwrap().contains("no voxel reaches"), "{report}"),
            other => panic!("unexpected status {other}: {report}"),
        }
    }
    let corrupt_report = &reports[2];
    assert_eq!(corrupt_report["status"], "rejected");
    assert!(!out.join(corrupt_report["name"].as_str().unwrap()).join("voxels.binvox").exists());
    let dark_report = &reports[3];
    assert_eq!(dark_report["status"], "rejected");
    assert!(dark_report["reasons"].to_string().contains("too dark"), "{dark_report}");
    assert!(stdout.contains("rejected"), "{stdout}");
}

#[test]
fn run_without_any_model_fails_the_photo_with_a_reason_naming_the_missing_file() {
    let tmp = tempfile::tempdir().unwrap();
    let inputs = photos(&tmp.path().join("photos"));
    let out = tmp.path().join("out");
    let output = mono2mesh()
        .arg("run")
        .arg(&inputs[0])
        .args(["--category", "sofa", "--device", "cpu", "-o"])
        .arg(&out)
        .arg("--models")
        .arg(tmp.path().join("empty-registry"))
        .output()
        .unwrap();
    assert!(!output.status.success(), "a photo we could not process is an error exit");
    let summary = read_json(&out.join("summary.json"));
    let report = &summary["photos"][0];
    assert_eq!(report["status"], "failed");
    let reason = report["reasons"][0].as_str().unwrap();
    assert!(reason.contains("sofa.safetensors") && reason.contains("general.safetensors"), "{reason}");
}
