//! Category accuracy of the default classifier (real ImageNet MobileNetV2 weights) on the
//! 65 real ImageNet photos of `../shared/testdata/photos/imagenet/<category>/<wnid>_<name>.JPEG`.
//! Skips when the photos or the converted weights are absent.

use std::path::{Path, PathBuf};

use mono2mesh_classify::{classify_batch, ClassifyInput, ClassifySettings};
use mono2mesh_core::Category;
use mono2mesh_vision::classifier::ClassifierModel;

fn photos() -> Option<Vec<(Category, PathBuf)>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/testdata/photos/imagenet");
    let Ok(categories) = std::fs::read_dir(&root) else {
        eprintln!("SKIPPED: {} not found", root.display());
        return None;
    };
    let mut photos = Vec::new();
    for entry in categories.flatten() {
        let category: Category = entry.file_name().to_string_lossy().parse().unwrap();
        for photo in std::fs::read_dir(entry.path()).unwrap().flatten() {
            photos.push((category, photo.path()));
        }
    }
    photos.sort_by(|a, b| a.1.cmp(&b.1));
    Some(photos)
}

fn model() -> Option<ClassifierModel> {
    let models = std::env::var_os("MONO2MESH_MODELS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models"));
    let file = models.join(mono2mesh_classify::DEFAULT_CLASSIFIER);
    if !file.is_file() {
        eprintln!("SKIPPED: {} not found (run scripts/fetch-classifier-weights.sh)", file.display());
        return None;
    }
    Some(ClassifierModel::load(&file, tch::Device::Cpu).unwrap())
}

#[test]
fn real_photos_land_in_their_category() {
    let Some(photos) = photos() else { return };
    let Some(model) = model() else { return };
    assert_eq!(photos.len(), 65, "the test set has 65 photos");
    let settings = ClassifySettings::default();
    let (mut correct, mut unknown, mut correct_ignoring_threshold) = (0, 0, 0);
    for chunk in photos.chunks(8) {
        let bytes: Vec<Vec<u8>> = chunk.iter().map(|(_, path)| std::fs::read(path).unwrap()).collect();
        let inputs: Vec<ClassifyInput> = bytes.iter().map(|b| ClassifyInput::Encoded(b)).collect();
        let results = classify_batch(&inputs, &model, &settings).unwrap();
        for ((truth, path), result) in chunk.iter().zip(results) {
            let name = path.file_name().unwrap().to_string_lossy();
            let verdict = match result.category {
                Some(c) if c == *truth => "ok",
                None => "UNKNOWN",
                Some(_) => "WRONG",
            };
            correct += usize::from(result.category == Some(*truth));
            unknown += usize::from(result.category.is_none());
            correct_ignoring_threshold += usize::from(result.best_category == *truth);
            eprintln!(
                "{verdict:7} {:11} {name:45} -> {:11} {:.3}  top-1 {} ({:.2})",
                truth.to_string(),
                result.best_category.to_string(),
                result.confidence,
                result.top_k[0].name,
                result.top_k[0].probability
            );
        }
    }
    let accuracy = correct as f64 / photos.len() as f64;
    eprintln!(
        "category accuracy {correct}/{} = {accuracy:.3} ({unknown} unknown at threshold {}; \
         {correct_ignoring_threshold} correct without the threshold)",
        photos.len(),
        settings.min_confidence
    );
    // MobileNetV2 has ~72% ImageNet top-1; summing related classes should do better on
    // these category-typical photos. A regression in preprocessing or mapping drops it.
    assert!(accuracy >= 0.8, "category accuracy {accuracy}");
}
