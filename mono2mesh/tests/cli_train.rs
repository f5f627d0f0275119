//! `mono2mesh train`, `finetune`, `eval` and `models publish|list` run as a user would, on
//! a tiny synthetic catalog, one short epoch each (the learning itself is tested in
//! shared/vision/tests/training.rs; this checks the commands, their files and refusals).

use std::path::Path;
use std::process::{Command, Output};

fn mono2mesh(dir: &Path, args: &[&str]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_mono2mesh")).current_dir(dir).args(args).output().unwrap();
    eprintln!("$ mono2mesh {}\n{}{}", args.join(" "), String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    out
}

fn ok(dir: &Path, args: &[&str]) -> String {
    let out = mono2mesh(dir, args);
    assert!(out.status.success(), "mono2mesh {} failed", args.join(" "));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn train_finetune_eval_publish_and_list() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    ok(d, &["dataset", "synth", "--categories", "chair,sofa", "--models-per-category", "4", "--views", "2", "--seed", "1", "--out", "ds"]);
    let quick = ["--epochs", "1", "--batch-size", "2", "--max-batches", "1", "--device", "cpu"];
    let train: Vec<&str> = ["train", "--dataset", "ds", "-o", "runs/base"].into_iter().chain(quick).collect();
    let stdout = ok(d, &train);
    assert!(stdout.contains("best validation IoU"), "{stdout}");
    for file in ["checkpoint.safetensors", "best.safetensors", "best.eval.json", "metrics.jsonl"] {
        assert!(d.join("runs/base").join(file).is_file(), "{file} missing");
    }
    // The same output directory is not overwritten...
    assert!(!mono2mesh(d, &train).status.success());
    // ...but can be resumed and extended.
    let stdout = ok(d, &["train", "--dataset", "ds", "-o", "runs/base", "--epochs", "2", "--resume", "--device", "cpu"]);
    assert!(stdout.starts_with("2 epochs"), "{stdout}");
    assert_eq!(std::fs::read_to_string(d.join("runs/base/metrics.jsonl")).unwrap().lines().count(), 2);

    let finetune: Vec<&str> = ["finetune", "--from", "runs/base/best.safetensors", "--category", "chair", "--dataset", "ds", "-o", "runs/chair", "--freeze-encoder-head"]
        .into_iter()
        .chain(quick)
        .collect();
    ok(d, &finetune);

    let json = ok(d, &["eval", "--model", "runs/chair/best.safetensors", "--dataset", "ds", "--category", "chair", "--split", "train", "--json", "-", "--device", "cpu"]);
    let report: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(report["model_category"], "chair");
    assert_eq!(report["report"]["thresholds"].as_array().unwrap().len(), 4);
    assert!(report["report"]["per_category"]["chair"]["samples"].as_u64().unwrap() >= 1);
    assert!(report["report"]["per_category"].get("sofa").is_none());
    let table = ok(d, &["eval", "--model", "runs/chair/best.safetensors", "--dataset", "ds", "--device", "cpu"]);
    assert!(table.contains("overall") && table.contains("best: IoU"), "{table}");

    ok(d, &["models", "publish", "runs/base", "--registry", "reg"]);
    ok(d, &["models", "publish", "runs/chair", "--registry", "reg"]);
    assert!(d.join("reg/pix2vox/base.safetensors").is_file());
    assert!(d.join("reg/pix2vox/chair.eval.json").is_file());
    // A chair specialist must not be served for sofas.
    assert!(!mono2mesh(d, &["models", "publish", "runs/chair", "--registry", "reg", "--as", "sofa"]).status.success());
    let listing: serde_json::Value = serde_json::from_str(&ok(d, &["models", "list", "--registry", "reg", "--json"])).unwrap();
    let names: Vec<&str> = listing.as_array().unwrap().iter().map(|e| e["name"].as_str().unwrap()).collect();
    assert_eq!(names, vec!["base", "chair"]);
    assert_eq!(listing[1]["kind"], "finetune");
    assert!(listing[1]["eval"]["best_iou"].as_f64().is_some());

    // A shippable pack: the general model in float16, the specialist as its differences.
    let cached: Vec<&str> = ["finetune", "--from", "runs/base/best.safetensors", "--general", "--dataset", "ds", "-o", "runs/general", "--trunk", "cached", "--precision", "auto", "--feature-cache", "cache"]
        .into_iter()
        .chain(quick)
        .collect();
    ok(d, &cached);
    assert!(std::fs::read_dir(d.join("cache")).unwrap().count() == 1, "one cache per trunk");
    let stdout = ok(d, &["models", "pack", "--general", "runs/general", "--specialist", "runs/chair", "--registry", "pack"]);
    assert!(stdout.contains("chair:") && stdout.contains("differ from general"), "{stdout}");
    let general = std::fs::metadata(d.join("pack/pix2vox/general.safetensors")).unwrap().len();
    let chair = std::fs::metadata(d.join("pack/pix2vox/chair.safetensors")).unwrap().len();
    let full = std::fs::metadata(d.join("runs/chair/best.safetensors")).unwrap().len();
    assert!((general as f64) < 0.55 * full as f64, "float16: {general} vs {full}");
    assert!(chair < general, "the specialist stores only what differs: {chair} vs {general}");
    for file in ["general.md", "chair.md", "chair.eval.json"] {
        assert!(d.join("pack/pix2vox").join(file).is_file(), "{file} missing");
    }
    let card = std::fs::read_to_string(d.join("pack/pix2vox/chair.md")).unwrap();
    assert!(card.contains("chair specialist") && card.contains("Licence"), "{card}");
    // The packed specialist evaluates as the run's model does (float16 storage aside).
    let eval = |model: &str| -> f64 {
        let json = ok(d, &["eval", "--model", model, "--dataset", "ds", "--category", "chair", "--split", "train", "--json", "-", "--device", "cpu"]);
        serde_json::from_str::<serde_json::Value>(&json).unwrap()["report"]["overall"][1].as_f64().unwrap()
    };
    let (packed, original) = (eval("pack/pix2vox/chair.safetensors"), eval("runs/chair/best.safetensors"));
    assert!((packed - original).abs() < 0.02, "{packed} vs {original}");
    let listing: serde_json::Value = serde_json::from_str(&ok(d, &["models", "list", "--registry", "pack", "--json"])).unwrap();
    let names: Vec<&str> = listing.as_array().unwrap().iter().map(|e| e["name"].as_str().unwrap()).collect();
    assert_eq!(names, vec!["general", "chair"]);

    // Bad input is a clear error, not a crash.
    let out = mono2mesh(d, &["eval", "--model", "ds/ShapeNet.json", "--dataset", "ds", "--device", "cpu"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("ShapeNet.json"));
}
