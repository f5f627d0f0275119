//! Parity with the official Pix2Vox implementation, against the vectors in
//! `../shared/reference/pix2vox/` (see its README): every saved tensor within 1e-4 when
//! fed the reference's `preprocessed` input, and our preprocessing of the PNGs within 2e-3
//! of `preprocessed`. Skipped (with a message) when the shared folder is absent.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use mono2mesh_vision::fill_rule::fill_var_store;
use mono2mesh_vision::pix2vox::{var_name_for_official, Pix2Vox, Pix2VoxOutput, Variant};
use mono2mesh_vision::pix2vox_model::import_official_checkpoint;
use mono2mesh_vision::pix2vox_preprocess::{preprocess_bytes, InputKind};
use tch::{nn, Device, Tensor};

const NETWORK_TOLERANCE: f64 = 1e-4;
const PREPROCESS_TOLERANCE: f64 = 2e-3;

fn reference_dir() -> Option<PathBuf> {
    let root = match std::env::var_os("MONO2MESH_SHARED_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared"),
    };
    let dir = root.join("reference/pix2vox");
    if dir.join("README.md").is_file() {
        Some(dir)
    } else {
        eprintln!("SKIPPED: {} is absent (Pix2Vox reference vectors)", dir.display());
        None
    }
}

fn expected(case: &Path) -> HashMap<String, Tensor> {
    Tensor::read_safetensors(case.join("expected.safetensors")).unwrap().into_iter().collect()
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.size(), b.size(), "shape mismatch");
    (a - b).abs().max().double_value(&[])
}

/// Compare every saved network tensor; returns (name, error) for the report.
fn assert_network_parity(case: &str, out: &Pix2VoxOutput, expected: &HashMap<String, Tensor>) {
    let ours: [(&str, Option<&Tensor>); 5] = [
        ("encoder_features", Some(&out.encoder_features)),
        ("decoder_raw", Some(&out.decoder_raw)),
        ("decoder_coarse", Some(&out.decoder_coarse)),
        ("merged", Some(&out.merged)),
        ("refined", out.refined.as_ref()),
    ];
    let mut compared = 0;
    for (name, tensor) in ours {
        match (expected.get(name), tensor) {
            (Some(reference), Some(tensor)) => {
                let err = max_abs_diff(tensor, reference);
                eprintln!("{case} {name:<17} max abs error {err:.3e}");
                assert!(err <= NETWORK_TOLERANCE, "{case} {name}: max abs error {err:e}");
                compared += 1;
            }
            (Some(_), None) => panic!("{case}: reference has {name}, our network produced none"),
            (None, Some(_)) if name != "refined" => panic!("{case}: reference lacks {name}"),
            _ => {}
        }
    }
    // refined exists exactly for Pix2Vox-A
    assert_eq!(compared, if out.refined.is_some() { 5 } else { 4 });
    // same occupancy at 0.3 except within 1e-4 of the threshold
    let reference = expected.get("refined").unwrap_or(&expected["merged"]);
    let ours = out.volume();
    let differ = ours.ge(0.3).logical_xor(&reference.ge(0.3));
    let near = (reference - 0.3).abs().le(1e-4);
    let bad = differ.logical_and(&near.logical_not()).sum(tch::Kind::Int64).int64_value(&[]);
    assert_eq!(bad, 0, "{case}: {bad} voxels change occupancy at 0.3");
}

fn fill_order(case: &Path) -> Vec<String> {
    std::fs::read_to_string(case.join("fill_order.tsv"))
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let mut cols = l.split('\t');
            let (dict, key) = (cols.next().unwrap(), cols.next().unwrap());
            var_name_for_official(dict, key).unwrap_or_else(|| panic!("unmappable fill entry {l}"))
        })
        .collect()
}

fn filled_network(case: &Path, variant: Variant, seed: u64) -> (nn::VarStore, Pix2Vox) {
    let vs = nn::VarStore::new(Device::Cpu);
    let net = Pix2Vox::new(&vs.root(), variant);
    let order = fill_order(case);
    let order: Vec<&str> = order.iter().map(String::as_str).collect();
    fill_var_store(&vs, seed, &order).unwrap();
    (vs, net)
}

fn input(expected: &HashMap<String, Tensor>) -> Tensor {
    // `preprocessed` is [V, 3, 224, 224]; the network takes [B, V, 3, 224, 224]
    expected["preprocessed"].unsqueeze(0)
}

#[test]
fn f1_imported_from_both_checkpoint_formats_matches_the_reference() {
    let Some(dir) = reference_dir() else { return };
    let case = dir.join("F1");
    let expected = expected(&case);
    let legacy = import_official_checkpoint(case.join("Pix2Vox-F-checkpoint-legacy.pth"), Variant::F, None, Device::Cpu)
        .unwrap();
    let zip = import_official_checkpoint(case.join("Pix2Vox-F-checkpoint.pth"), Variant::F, None, Device::Cpu).unwrap();
    // both containers hold the same weights
    let zip_vars = zip.vs.variables();
    for (name, t) in legacy.vs.variables() {
        assert!(t.equal(&zip_vars[&name]), "{name} differs between legacy and zip import");
    }
    for (label, model) in [("F1 legacy", &legacy), ("F1 zip", &zip)] {
        let out = model.net.infer(&input(&expected));
        assert_network_parity(label, &out, &expected);
    }
}

#[test]
fn f1_checkpoint_refuses_the_wrong_variant_naming_the_keys() {
    let Some(dir) = reference_dir() else { return };
    let err = import_official_checkpoint(dir.join("F1/Pix2Vox-F-checkpoint.pth"), Variant::A, None, Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(err.contains("missing") && err.contains("refiner.layer4.0.weight"), "{err}");
    assert!(err.contains("mis-shaped") && err.contains("encoder.layer1.0.weight"), "{err}");
}

#[test]
fn f3_fill_rule_three_views_merger_matches_the_reference() {
    let Some(dir) = reference_dir() else { return };
    let case = dir.join("F3");
    let expected = expected(&case);
    let (_vs, net) = filled_network(&case, Variant::F, 3);
    let out = net.infer(&input(&expected));
    assert_eq!(out.decoder_coarse.size()[1], 3);
    assert_network_parity("F3", &out, &expected);
}

#[test]
fn a1_fill_rule_refiner_matches_the_reference() {
    let Some(dir) = reference_dir() else { return };
    let case = dir.join("A1");
    let expected = expected(&case);
    let (vs, net) = filled_network(&case, Variant::A, 2);
    // README: Pix2Vox-A has 114,244,467 parameters (running statistics are buffers)
    let params: i64 = vs
        .variables()
        .iter()
        .filter(|(k, _)| !k.ends_with("running_mean") && !k.ends_with("running_var"))
        .map(|(_, t)| t.numel() as i64)
        .sum();
    assert_eq!(params, 114_244_467);
    let out = net.infer(&input(&expected));
    assert_network_parity("A1", &out, &expected);
}

#[test]
fn preprocessing_of_the_view_pngs_matches_the_reference() {
    let Some(dir) = reference_dir() else { return };
    for case in ["F1", "F3", "A1"] {
        let case_dir = dir.join(case);
        let expected = expected(&case_dir);
        let reference = &expected["preprocessed"];
        for view in 0..reference.size()[0] {
            let png = std::fs::read(case_dir.join(format!("view{view:02}.png"))).unwrap();
            let ours = preprocess_bytes(&png, InputKind::Render).unwrap();
            let err = max_abs_diff(&ours, &reference.get(view));
            eprintln!("{case} view{view:02} preprocessing max abs error {err:.3e}");
            assert!(err <= PREPROCESS_TOLERANCE, "{case} view {view}: {err:e}");
        }
    }
}
