//! `mono2mesh models ...`: bringing outside weights into our model files, and the model
//! registry the reconstruct workers read (publish, list).

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Args, Subcommand};
use mono2mesh_vision::classifier::{Architecture, ClassifierModel};
use mono2mesh_infra::blob::BlobStore as _;
use mono2mesh_reconstruct::registry::{parse_s3_location, ModelRegistry, BASE_MODEL, GENERAL_MODEL, PIX2VOX_DIR};
use mono2mesh_vision::device::DeviceChoice;
use mono2mesh_vision::pix2vox_model::Pix2VoxModel;

#[derive(Debug, Subcommand)]
pub enum ModelsCommand {
    /// Convert a torchvision state_dict (.pth, legacy or zip torch.save format) of
    /// resnet50 or mobilenet_v2 into our classifier model file. No Python needed.
    ImportTorchvision(ImportTorchvisionArgs),
    /// Convert an official Pix2Vox checkpoint (legacy or zip torch.save format, fp16 or
    /// fp32) into our Pix2Vox model file. No Python needed.
    ImportPix2vox(ImportPix2voxArgs),
    /// Put a trained model (a run directory's best model, or a model file) into a registry
    /// as base, general or a category's specialist, with its evaluation report.
    Publish(PublishArgs),
    /// The Pix2Vox models of a registry with their provenance and evaluation results.
    List(ListArgs),
    /// Write a shippable model pack into a registry directory: the general model in
    /// float16 and each specialist as only the tensors that differ from it, each with its
    /// evaluation report and a model card.
    Pack(PackArgs),
}

#[derive(Debug, Args)]
pub struct PackArgs {
    /// The general model (a run directory or a model file)
    #[arg(long)]
    general: PathBuf,
    /// Specialists (run directories or model files), each published under its category
    #[arg(long, value_delimiter = ',')]
    specialist: Vec<PathBuf>,
    /// Registry directory to write into
    #[arg(long, env = "MONO2MESH_MODELS", default_value = "models")]
    registry: PathBuf,
    /// Directory with `<name>.eval.json` test reports (from `mono2mesh eval --json`) to ship
    /// beside each model [default: each run's best.eval.json, the validation report]
    #[arg(long)]
    eval_dir: Option<PathBuf>,
    /// Free text for every model card's "Training" section (data, recipe, hardware)
    #[arg(long)]
    notes: Option<PathBuf>,
    /// Ship a specialist only if its test report beats the general model's on the same
    /// category (`<eval-dir>/<name>.eval.json` against `<eval-dir>/general-<name>.eval.json`,
    /// IoU at t=0.3)
    #[arg(long, requires = "eval_dir")]
    require_better: bool,
    /// Size budget of the whole pack in MB: specialists are added by their gain over the
    /// general model (largest first) while they fit
    #[arg(long)]
    budget_mb: Option<f64>,
}

/// A test report's IoU at the threshold nearest 0.3, over its samples.
fn iou_at_03(path: &Path) -> anyhow::Result<f64> {
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(path).with_context(|| format!("reading {}", path.display()))?)?;
    let report: mono2mesh_train::EvalReport =
        serde_json::from_value(json.get("report").unwrap_or(&json).clone()).with_context(|| format!("{} is not an eval report", path.display()))?;
    let k = (0..report.thresholds.len())
        .min_by(|&a, &b| (report.thresholds[a] - 0.3).abs().total_cmp(&(report.thresholds[b] - 0.3).abs()))
        .context("a report without thresholds")?;
    Ok(report.overall[k])
}

#[derive(Debug, Args)]
pub struct PublishArgs {
    /// A run directory (its best.safetensors and best.eval.json) or a model file
    model: PathBuf,
    /// Registry: a directory or s3://bucket/prefix
    #[arg(long, env = "MONO2MESH_MODELS", default_value = "models")]
    registry: String,
    /// Registry name: base, general or a category [default: from the model's metadata]
    #[arg(long = "as")]
    name: Option<String>,
    /// Evaluation report to publish beside it [default: the run's best.eval.json]
    #[arg(long)]
    eval: Option<PathBuf>,
    #[command(flatten)]
    settings: super::services::SettingsArgs,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Registry directory
    #[arg(long, env = "MONO2MESH_MODELS", default_value = "models")]
    registry: PathBuf,
    /// Print JSON instead of a table
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub struct ImportPix2voxArgs {
    /// The official checkpoint, e.g. Pix2Vox-F-ShapeNet.pth
    checkpoint: PathBuf,
    /// F or A
    #[arg(long)]
    variant: mono2mesh_vision::pix2vox::Variant,
    /// The category the weights are specialised for [default: general]
    #[arg(long)]
    category: Option<mono2mesh_core::Category>,
    /// Output model file (.safetensors)
    #[arg(short, long)]
    output: PathBuf,
}

#[derive(Debug, Args)]
pub struct ImportTorchvisionArgs {
    /// resnet50 or mobilenet_v2
    #[arg(long)]
    arch: Architecture,
    /// The torchvision checkpoint, e.g. mobilenet_v2-b0353104.pth
    checkpoint: PathBuf,
    /// Output model file (.safetensors)
    #[arg(short, long)]
    output: PathBuf,
    /// Provenance recorded in the file's metadata [default: the checkpoint's file name]
    #[arg(long)]
    source: Option<String>,
}

pub fn run(command: ModelsCommand) -> anyhow::Result<()> {
    match command {
        ModelsCommand::ImportTorchvision(args) => import_torchvision(args),
        ModelsCommand::ImportPix2vox(args) => import_pix2vox(args),
        ModelsCommand::Publish(args) => publish(args),
        ModelsCommand::List(args) => list(args),
        ModelsCommand::Pack(args) => pack(args),
    }
}

fn publish(args: PublishArgs) -> anyhow::Result<()> {
    use mono2mesh_train::trainer::{BEST_EVAL_FILE, BEST_FILE};
    let (model, default_eval) = if args.model.is_dir() {
        (args.model.join(BEST_FILE), Some(args.model.join(BEST_EVAL_FILE)))
    } else {
        (args.model.clone(), None)
    };
    let metadata = Pix2VoxModel::read_metadata(&model).with_context(|| format!("reading {}", model.display()))?;
    let name = match &args.name {
        Some(name) => name.clone(),
        None => match (metadata.category, metadata.provenance.kind.as_str()) {
            (Some(c), _) => c.name().to_string(),
            (None, "train") => BASE_MODEL.to_string(),
            (None, _) => GENERAL_MODEL.to_string(),
        },
    };
    if let (Some(c), false) = (metadata.category, name == metadata.category.map_or("", |c| c.name())) {
        anyhow::bail!("{} is a {c} specialist; publishing it as {name:?} would serve the wrong category", model.display());
    }
    let eval = args.eval.clone().or(default_eval.filter(|p| p.is_file()));
    if let Some((bucket, prefix)) = parse_s3_location(&args.registry) {
        let settings = args.settings.load()?;
        let store = mono2mesh_infra::blob::S3BlobStore::unchecked(&settings.blob.s3).with_bucket(bucket);
        super::services::block_on(async {
            let prefix = prefix.trim_matches('/');
            let key = |file: String| {
                let text = if prefix.is_empty() { format!("{PIX2VOX_DIR}/{file}") } else { format!("{prefix}/{PIX2VOX_DIR}/{file}") };
                mono2mesh_infra::blob::BlobKey::parse(text)
            };
            let body = std::fs::read(&model).with_context(|| format!("reading {}", model.display()))?;
            store.put(&key(format!("{name}.safetensors"))?, body.into()).await?;
            let eval_key = key(format!("{name}.eval.json"))?;
            match &eval {
                Some(path) => store.put(&eval_key, std::fs::read(path)?.into()).await?,
                None => store.delete(&eval_key).await?,
            }
            Ok(())
        })?;
    } else {
        ModelRegistry::new(&args.registry)
            .publish(&model, &name, eval.as_deref())
            .with_context(|| format!("publishing into {}", args.registry))?;
    }
    println!(
        "published {} as {name} (Pix2Vox-{}, {}) in {}{}",
        model.display(),
        metadata.variant,
        metadata.provenance.kind,
        args.registry,
        eval.map_or(String::new(), |e| format!(" with {}", e.display()))
    );
    Ok(())
}

fn list(args: ListArgs) -> anyhow::Result<()> {
    let registry = ModelRegistry::new(&args.registry);
    let mut rows = Vec::new();
    for entry in registry.entries() {
        let metadata = Pix2VoxModel::read_metadata(&entry.path).ok();
        let report = entry.eval.as_ref().map(|e| e.get("report").unwrap_or(e).clone());
        rows.push(serde_json::json!({
            "name": entry.name,
            "path": entry.path,
            "variant": metadata.as_ref().map(|m| m.variant.to_string()),
            "kind": metadata.as_ref().map(|m| m.provenance.kind.clone()),
            "provenance": metadata.as_ref().map(|m| m.provenance.details.clone()),
            "eval": report,
        }));
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    if rows.is_empty() {
        println!("no Pix2Vox models in {}", registry_dir(&args.registry).display());
        return Ok(());
    }
    println!("{:<12} {:<7} {:<9} {:>8} {:>9}  path", "name", "variant", "kind", "val IoU", "eval IoU");
    for row in rows {
        let text = |v: &serde_json::Value| v.as_str().unwrap_or("?").to_string();
        let number = |v: Option<&serde_json::Value>| v.and_then(|v| v.as_f64()).map_or("-".to_string(), |v| format!("{v:.4}"));
        println!(
            "{:<12} {:<7} {:<9} {:>8} {:>9}  {}",
            text(&row["name"]),
            text(&row["variant"]),
            text(&row["kind"]),
            number(row["provenance"].get("val_iou")),
            number(row["eval"].get("best_iou")),
            text(&row["path"]),
        );
    }
    Ok(())
}

fn pack(args: PackArgs) -> anyhow::Result<()> {
    use mono2mesh_vision::model_file::StorageDtype;
    use mono2mesh_train::trainer::{BEST_EVAL_FILE, BEST_FILE};
    let resolve = |p: &Path| -> (PathBuf, Option<PathBuf>) {
        if p.is_dir() {
            (p.join(BEST_FILE), Some(p.join(BEST_EVAL_FILE)).filter(|e| e.is_file()))
        } else {
            (p.to_path_buf(), None)
        }
    };
    let cpu = tch::Device::Cpu;
    let dir = registry_dir(&args.registry);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let notes = match &args.notes {
        Some(path) => std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?,
        None => String::new(),
    };
    let eval_for = |name: &str, run_eval: Option<PathBuf>| -> Option<PathBuf> {
        args.eval_dir.as_ref().map(|d| d.join(format!("{name}.eval.json"))).filter(|p| p.is_file()).or(run_eval)
    };
    let (general_file, general_eval) = resolve(&args.general);
    let general = Pix2VoxModel::load(&general_file, cpu, None).with_context(|| format!("loading {}", general_file.display()))?;
    anyhow::ensure!(general.metadata.category.is_none(), "{} is a specialist, not a general model", general_file.display());
    let general_path = dir.join(format!("{GENERAL_MODEL}.safetensors"));
    let stats = general.save_packed(&general_path, StorageDtype::F16, None)?;
    let mut total = stats.bytes;
    finish_entry(&dir, GENERAL_MODEL, &general, stats, eval_for(GENERAL_MODEL, general_eval).as_deref(), &notes)?;
    println!("general: {} tensors, {:.1} MB", stats.tensors_stored, stats.bytes as f64 / 1e6);
    // Specialists in the order they earn their place: by gain over the general model.
    let mut candidates = Vec::new();
    for run in &args.specialist {
        let (file, run_eval) = resolve(run);
        let model = Pix2VoxModel::load(&file, cpu, Some(general.metadata.variant)).with_context(|| format!("loading {}", file.display()))?;
        let category = model.metadata.category.with_context(|| format!("{} is a general model, not a specialist", file.display()))?;
        let gain = match (&args.eval_dir, args.require_better) {
            (Some(d), true) => {
                let name = category.name();
                let own = iou_at_03(&d.join(format!("{name}.eval.json")))?;
                let general_here = iou_at_03(&d.join(format!("{GENERAL_MODEL}-{name}.eval.json")))?;
                if own <= general_here {
                    println!("{name}: not shipped: IoU {own:.4} on its test models, the general model {general_here:.4}");
                    let _ = std::fs::remove_file(dir.join(format!("{name}.safetensors")));
                    continue;
                }
                own - general_here
            }
            _ => 0.0,
        };
        candidates.push((gain, model, run_eval));
    }
    candidates.sort_by(|a, b| b.0.total_cmp(&a.0));
    for (gain, model, run_eval) in candidates {
        let Some(category) = model.metadata.category else { continue };
        let name = category.name();
        let path = dir.join(format!("{name}.safetensors"));
        let stats = model.save_packed(&path, StorageDtype::F16, Some((&general_path, &general)))?;
        if args.budget_mb.is_some_and(|mb| (total + stats.bytes) as f64 > mb * 1e6) {
            println!("{name}: not shipped: {:.1} MB would take the pack past {:.0} MB (gain {gain:+.4})", stats.bytes as f64 / 1e6, args.budget_mb.unwrap_or_default());
            std::fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
            continue;
        }
        total += stats.bytes;
        finish_entry(&dir, name, &model, stats, eval_for(name, run_eval).as_deref(), &notes)?;
        println!("{name}: {} of {} tensors differ from general, {:.1} MB", stats.tensors_stored, stats.tensors_total, stats.bytes as f64 / 1e6);
    }
    println!("pack: {:.1} MB in {}", total as f64 / 1e6, dir.display());
    Ok(())
}

/// Copies the evaluation report in and writes the model card.
fn finish_entry(
    dir: &Path,
    name: &str,
    model: &Pix2VoxModel,
    stats: mono2mesh_vision::pix2vox_model::PackedStats,
    eval: Option<&Path>,
    notes: &str,
) -> anyhow::Result<()> {
    let eval_target = dir.join(format!("{name}.eval.json"));
    let report: Option<serde_json::Value> = match eval {
        Some(path) => {
            let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
            std::fs::write(&eval_target, &bytes).with_context(|| format!("writing {}", eval_target.display()))?;
            serde_json::from_slice(&bytes).ok()
        }
        None => {
            let _ = std::fs::remove_file(&eval_target);
            None
        }
    };
    let meta = &model.metadata;
    let mut card = format!("# Pix2Vox-{} `{name}`\n\n", meta.variant);
    card.push_str(&match meta.category {
        Some(c) => format!("A {c} specialist: fine-tuned from the general model on {c} models only (the paper's transfer learning). Stored as the {} of {} tensors that differ from `general.safetensors` (float16); the loader composes the two and checks the general file's SHA-256.\n\n", stats.tensors_stored, stats.tensors_total),
        None => "The general model: every category, used for categories without a specialist. Stored in float16, loaded as float32.\n\n".to_string(),
    });
    card.push_str("## Provenance\n\n");
    card.push_str(&format!("- kind: {}\n", meta.provenance.kind));
    for (key, value) in &meta.provenance.details {
        card.push_str(&format!("- {key}: {}\n", value.to_string().trim_matches('"')));
    }
    card.push_str(&format!("- file: {:.1} MB\n\n", stats.bytes as f64 / 1e6));
    if let Some(report) = report {
        let inner = report.get("report").unwrap_or(&report);
        if let Ok(r) = serde_json::from_value::<mono2mesh_train::EvalReport>(inner.clone()) {
            let split = report.get("split").and_then(|s| s.as_str()).unwrap_or("validation");
            card.push_str(&format!("## IoU ({split} split, {} models, {} view)\n\n```text\n{}```\n\n", r.samples, r.views, r.table()));
        }
    }
    if !notes.trim().is_empty() {
        card.push_str("## Training\n\n");
        card.push_str(notes.trim());
        card.push_str("\n\n");
    }
    card.push_str("## Licence\n\nOurs (Apache-2.0, as the project): trained from scratch on mono2mesh's own synthetic catalog; no third-party weights or data.\n");
    let path = dir.join(format!("{name}.md"));
    std::fs::write(&path, card).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

fn registry_dir(root: &Path) -> PathBuf {
    root.join(PIX2VOX_DIR)
}

fn import_torchvision(args: ImportTorchvisionArgs) -> anyhow::Result<()> {
    let source = args.source.unwrap_or_else(|| {
        args.checkpoint.file_name().map_or_else(|| args.checkpoint.display().to_string(), |n| n.to_string_lossy().into_owned())
    });
    let model = ClassifierModel::import_torchvision_checkpoint(args.arch, &args.checkpoint, &source, DeviceChoice::Cpu.resolve()?)
        .with_context(|| format!("importing {} as {}", args.checkpoint.display(), args.arch))?;
    model.save(&args.output).with_context(|| format!("writing {}", args.output.display()))?;
    println!("wrote {} ({}, source: {source})", args.output.display(), args.arch);
    Ok(())
}

fn import_pix2vox(args: ImportPix2voxArgs) -> anyhow::Result<()> {
    let model = mono2mesh_vision::pix2vox_model::import_official_checkpoint(
        &args.checkpoint,
        args.variant,
        args.category,
        DeviceChoice::Cpu.resolve()?,
    )
    .with_context(|| format!("importing {} as Pix2Vox-{}", args.checkpoint.display(), args.variant))?;
    model.save(&args.output).with_context(|| format!("writing {}", args.output.display()))?;
    let category = args.category.map_or("general".to_string(), |c| c.name().to_string());
    println!("wrote {} (Pix2Vox-{}, {category})", args.output.display(), args.variant);
    Ok(())
}
