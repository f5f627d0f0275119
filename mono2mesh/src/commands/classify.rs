//! `mono2mesh classify [--json] [--model FILE] [--device ...] IMAGE...`: the category of
//! each photo, its confidence and the top ImageNet classes.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use mono2mesh_classify::{classify, classify_batch, default_model_path, ClassifyInput, ClassifySettings};
use mono2mesh_vision::classifier::ClassifierModel;
use mono2mesh_vision::device::DeviceChoice;

#[derive(Debug, Args)]
pub struct ClassifyArgs {
    /// Images to classify (JPEG, PNG, WebP, TIFF, BMP).
    #[arg(required = true)]
    images: Vec<PathBuf>,
    /// Classifier model file [default: $MONO2MESH_MODELS/classifiers/mobilenet_v2.safetensors,
    /// MONO2MESH_MODELS defaulting to ./models]
    #[arg(long)]
    model: Option<PathBuf>,
    /// auto, cpu, cuda or cuda:N
    #[arg(long, default_value = "auto")]
    device: DeviceChoice,
    /// Print one JSON object per image instead of text.
    #[arg(long)]
    json: bool,
    /// How many ImageNet classes to show.
    #[arg(long, default_value_t = ClassifySettings::default().top_k)]
    top_k: usize,
    /// Category confidence below which the answer is "unknown".
    #[arg(long, default_value_t = ClassifySettings::default().min_confidence)]
    min_confidence: f32,
    /// Images per forward pass.
    #[arg(long, default_value_t = 16)]
    batch_size: usize,
}

pub fn run(args: ClassifyArgs) -> anyhow::Result<()> {
    let device = args.device.resolve()?;
    let model_path = args.model.clone().unwrap_or_else(default_model_path);
    let model = ClassifierModel::load(&model_path, device).with_context(|| {
        format!("loading classifier {} (scripts/fetch-classifier-weights.sh creates the default)", model_path.display())
    })?;
    let settings = ClassifySettings { top_k: args.top_k, min_confidence: args.min_confidence };
    for paths in args.images.chunks(args.batch_size.max(1)) {
        let files = paths
            .iter()
            .map(|p| std::fs::read(p).with_context(|| format!("reading {}", p.display())))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let inputs: Vec<ClassifyInput> = files.iter().map(|b| ClassifyInput::Encoded(b)).collect();
        let results = match classify_batch(&inputs, &model, &settings) {
            Ok(results) => results,
            // One bad file should name itself: retry the batch one image at a time.
            Err(_) => inputs
                .iter()
                .zip(paths)
                .map(|(input, path)| {
                    classify(*input, &model, &settings)
                        .with_context(|| format!("classifying {}", path.display()))
                })
                .collect::<anyhow::Result<Vec<_>>>()?,
        };
        for (path, result) in paths.iter().zip(results) {
            if args.json {
                let mut value = serde_json::to_value(&result)?;
                value["image"] = serde_json::Value::String(path.display().to_string());
                println!("{value}");
            } else {
                let category = result.category.map_or("unknown".to_string(), |c| c.to_string());
                println!(
                    "{}: {category} (confidence {:.3}, best {})",
                    path.display(),
                    result.confidence,
                    result.best_category
                );
                for score in &result.top_k {
                    println!("    {:>6.2}%  {:>3}  {}", score.probability * 100.0, score.index, score.name);
                }
            }
        }
    }
    Ok(())
}
