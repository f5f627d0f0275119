//! `mono2mesh train`, `mono2mesh finetune` and `mono2mesh eval`: thin layers over
//! `mono2mesh_train`.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use mono2mesh_catalog::dataset::{Sample, Split};
use mono2mesh_core::Category;
use mono2mesh_vision::device::DeviceChoice;
use mono2mesh_vision::pix2vox::Variant;
use mono2mesh_vision::pix2vox_model::Pix2VoxModel;
use mono2mesh_train::trainer::TrainObserver;
use mono2mesh_train::{
    evaluate, evaluate_retrieval, AugmentConfig, DatasetLocation, EpochMetrics, EvalConfig, Init, SurfaceConfig, PairSet, TrainConfig, Trainer,
};

/// Where the data is: `--dataset ROOT` (our layout, or a ShapeNet tree arranged like it),
/// or the three parts of a real ShapeNet download.
#[derive(Debug, Args, Clone)]
pub struct DatasetArgs {
    /// Dataset root: ShapeNetRendering/, ShapeNetVox32/ and ShapeNet.json inside
    #[arg(long, required_unless_present = "taxonomy")]
    dataset: Option<PathBuf>,
    /// ShapeNetRendering directory (with --voxels and --taxonomy, instead of --dataset)
    #[arg(long, requires_all = ["voxels", "taxonomy"], conflicts_with = "dataset")]
    renderings: Option<PathBuf>,
    /// ShapeNetVox32 directory
    #[arg(long, requires_all = ["renderings", "taxonomy"], conflicts_with = "dataset")]
    voxels: Option<PathBuf>,
    /// Taxonomy JSON (e.g. Pix2Vox's ShapeNet.json)
    #[arg(long, requires_all = ["renderings", "voxels"], conflicts_with = "dataset")]
    taxonomy: Option<PathBuf>,
}

impl DatasetArgs {
    fn location(&self) -> DatasetLocation {
        match (&self.dataset, &self.renderings, &self.voxels, &self.taxonomy) {
            (Some(root), ..) => DatasetLocation::root(root),
            (None, Some(r), Some(v), Some(t)) => {
                DatasetLocation { rendering_root: r.clone(), voxel_root: v.clone(), taxonomy_file: t.clone() }
            }
            // clap's requires/conflicts rules make this unreachable; keep a sane default
            _ => DatasetLocation::root(Path::new(".")),
        }
    }
}

/// Options shared by `train` and `finetune` (their defaults differ, so no clap defaults
/// here: an unset option keeps the recipe's value).
#[derive(Debug, Args)]
pub struct RecipeArgs {
    /// Output directory of the run (checkpoint.safetensors, best.safetensors, metrics.jsonl)
    #[arg(short, long)]
    out: PathBuf,
    #[command(flatten)]
    data: DatasetArgs,
    #[arg(long)]
    epochs: Option<usize>,
    #[arg(long)]
    batch_size: Option<usize>,
    /// Learning rate of the encoder head, decoder and refiner
    #[arg(long)]
    lr: Option<f64>,
    /// Learning rate of the merger [default: lr / 10, as the official ratio]
    #[arg(long)]
    merger_lr: Option<f64>,
    /// Learning rate of the encoder head [default: lr]
    #[arg(long)]
    encoder_lr: Option<f64>,
    /// Learning rate of the decoder [default: lr]
    #[arg(long)]
    decoder_lr: Option<f64>,
    /// Epochs at which the learning rate is multiplied by --gamma
    #[arg(long, value_delimiter = ',')]
    milestones: Option<Vec<usize>>,
    #[arg(long)]
    gamma: Option<f64>,
    /// Renderings per model per step
    #[arg(long)]
    views: Option<usize>,
    /// Keep the encoder head fixed as well as the trunk
    #[arg(long)]
    freeze_encoder_head: bool,
    /// Stop after this many epochs without a better validation IoU
    #[arg(long)]
    patience: Option<usize>,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Train on the test transform only (no crops, colour jitter, noise, flips)
    #[arg(long)]
    no_augment: bool,
    /// float16 mixed precision with loss scaling (CUDA only)
    #[arg(long)]
    amp: bool,
    /// auto, cpu, cuda or cuda:N
    #[arg(long, default_value = "auto")]
    device: DeviceChoice,
    /// At most this many batches per epoch (quick experiments)
    #[arg(long)]
    max_batches: Option<usize>,
    /// live: the official trunk (train-mode BatchNorm, online augmentation); cached: the
    /// frozen trunk's output computed once per rendering and read back (about 3x faster)
    #[arg(long)]
    trunk: Option<mono2mesh_train::TrunkMode>,
    /// f32, bf16 (CPU autocast, fp32 master weights) or auto (bf16 where the CPU has it)
    #[arg(long)]
    precision: Option<mono2mesh_vision::precision::Precision>,
    /// Root directory of trunk feature caches [default: ~/.cache/mono2mesh/trunk-features]
    #[arg(long)]
    feature_cache: Option<PathBuf>,
    /// Continue the run in --out from its checkpoint (other recipe options are taken from it,
    /// except --epochs, which may extend the run)
    #[arg(long)]
    resume: bool,
}

#[derive(Debug, Args)]
pub struct TrainArgs {
    /// F or A
    #[arg(long, default_value = "F")]
    variant: Variant,
    /// Categories to train on [default: every category in the dataset]
    #[arg(long, value_delimiter = ',')]
    categories: Vec<Category>,
    #[command(flatten)]
    recipe: RecipeArgs,
}

#[derive(Debug, Args)]
pub struct FinetuneArgs {
    /// The model to start from (a model file or a run's checkpoint)
    #[arg(long)]
    from: PathBuf,
    /// The category to specialise on; omit with --general to fine-tune on every category
    #[arg(long, required_unless_present = "general")]
    category: Option<Category>,
    /// Fine-tune on all categories into a general model
    #[arg(long, conflicts_with = "category")]
    general: bool,
    #[command(flatten)]
    recipe: RecipeArgs,
}

pub fn train(args: TrainArgs) -> anyhow::Result<()> {
    let r = &args.recipe;
    let mut config = TrainConfig::official(args.variant, r.data.location());
    config.categories = args.categories.clone();
    run_recipe(config, r)
}

pub fn finetune(args: FinetuneArgs) -> anyhow::Result<()> {
    let r = &args.recipe;
    let base = Pix2VoxModel::load(&args.from, DeviceChoice::Cpu.resolve()?, None)
        .with_context(|| format!("reading the base model {}", args.from.display()))?;
    let variant = base.metadata.variant;
    drop(base);
    let mut config = match args.category {
        Some(category) => TrainConfig::paper_finetune(variant, args.from.clone(), category, r.data.location()),
        None => TrainConfig {
            init: Init::From(args.from.clone()),
            epochs: 240,
            batch_size: 32,
            ..TrainConfig::official(variant, r.data.location())
        },
    };
    if args.general {
        config.category = None;
        config.categories = Vec::new();
    }
    run_recipe(config, r)
}

fn apply_overrides(config: &mut TrainConfig, r: &RecipeArgs) {
    if let Some(v) = r.epochs {
        config.epochs = v;
    }
    if let Some(v) = r.batch_size {
        config.batch_size = v;
    }
    if let Some(lr) = r.lr {
        config.lr.encoder = lr;
        config.lr.decoder = lr;
        config.lr.refiner = lr;
        config.lr.merger = lr / 10.0;
    }
    if let Some(v) = r.merger_lr {
        config.lr.merger = v;
    }
    if let Some(v) = r.encoder_lr {
        config.lr.encoder = v;
    }
    if let Some(v) = r.decoder_lr {
        config.lr.decoder = v;
    }
    if let Some(v) = &r.milestones {
        config.schedule.milestones = v.clone();
    }
    if let Some(v) = r.gamma {
        config.schedule.gamma = v;
    }
    if let Some(v) = r.views {
        config.views = v;
    }
    config.freeze_encoder_head |= r.freeze_encoder_head;
    config.patience = r.patience.or(config.patience);
    config.seed = r.seed;
    if r.no_augment {
        config.augment = AugmentConfig::none();
    }
    config.amp |= r.amp;
    config.max_batches_per_epoch = r.max_batches.or(config.max_batches_per_epoch);
    if let Some(v) = r.trunk {
        config.trunk = v;
    }
    if let Some(v) = r.precision {
        config.precision = v;
    }
    if let Some(v) = &r.feature_cache {
        config.feature_cache = Some(v.clone());
    }
}

fn run_recipe(mut config: TrainConfig, r: &RecipeArgs) -> anyhow::Result<()> {
    let device = r.device.resolve()?;
    let mut trainer = if r.resume {
        let t = Trainer::resume(&r.out, device, r.epochs).with_context(|| format!("resuming {}", r.out.display()))?;
        eprintln!("resuming {} after epoch {} of {}", r.out.display(), t.state.epochs_done, t.config.epochs);
        t
    } else {
        apply_overrides(&mut config, r);
        Trainer::start(config, &r.out, device).with_context(|| format!("starting a run in {}", r.out.display()))?
    };
    if trainer.config.amp && !device.is_cuda() {
        eprintln!("note: --amp has no effect on {device:?}; training in float32");
    }
    let dataset = trainer.config.dataset.open().context("opening the dataset")?;
    let categories = (!trainer.config.categories.is_empty()).then_some(trainer.config.categories.as_slice());
    let train_samples = dataset.samples(Split::Train, categories);
    let (val_split, val_samples) = validation_samples(&dataset, categories);
    anyhow::ensure!(!train_samples.is_empty(), "the dataset has no training samples for the chosen categories");
    eprintln!(
        "Pix2Vox-{} on {:?}: {} training models, {} {val_split} models for validation, {} trainable parameters, device {device:?}",
        trainer.config.variant,
        trainer.config.dataset.taxonomy_file,
        train_samples.len(),
        val_samples.len(),
        trainer.trainable_parameters()
    );
    if let Some(categories) = categories {
        for c in categories {
            if !train_samples.iter().any(|s| s.category == Some(*c)) {
                eprintln!("warning: category {c} has no training models in this dataset; it is skipped");
            }
        }
    }
    for entry in &dataset.taxonomy {
        if categories.is_none() && entry.train.is_empty() {
            eprintln!("warning: category {} has no training models in this dataset; it is skipped", entry.taxonomy_name);
        }
    }
    let train = PairSet::load_lenient(&dataset, train_samples).context("loading training pairs")?;
    let val = PairSet::load_lenient(&dataset, val_samples).context("loading validation pairs")?;
    let skipped: Vec<&String> = train.skipped().iter().chain(val.skipped()).map(|(_, reason)| reason).collect();
    for reason in &skipped {
        eprintln!("warning: skipping {reason}");
    }
    if !skipped.is_empty() {
        eprintln!("warning: {} model(s) skipped", skipped.len());
    }
    anyhow::ensure!(!train.is_empty() && !val.is_empty(), "no usable training or validation models left");
    eprintln!(
        "trunk {:?}, precision {} ({}){}",
        trainer.config.trunk,
        trainer.config.precision,
        if trainer.config.precision.uses_bf16(device) { "bf16 autocast" } else { "float32" },
        if trainer.config.trunk == mono2mesh_train::TrunkMode::Cached {
            format!(", feature cache under {}", trainer.config.feature_cache.clone().unwrap_or_else(mono2mesh_train::trainer::default_feature_cache_root).display())
        } else {
            String::new()
        }
    );
    let mut observer = BarObserver::new(trainer.config.epochs);
    let summary = trainer.run(&train, &val, &mut observer)?;
    observer.bar.finish_and_clear();
    println!(
        "{} epochs{}; best validation IoU {:.4} at epoch {}; best model {}",
        summary.epochs_done,
        if summary.stopped_early { " (stopped early)" } else { "" },
        summary.best_iou,
        summary.best_epoch.map_or("-".to_string(), |e| e.to_string()),
        summary.best_model.display()
    );
    Ok(())
}

/// The `val` split, or `test` when a dataset has no validation models (Pix2Vox's own
/// ShapeNet.json validates on its test split).
fn validation_samples(dataset: &mono2mesh_catalog::dataset::Dataset, categories: Option<&[Category]>) -> (&'static str, Vec<Sample>) {
    let val = dataset.samples(Split::Val, categories);
    if val.is_empty() {
        ("test", dataset.samples(Split::Test, categories))
    } else {
        ("val", val)
    }
}

struct BarObserver {
    bar: ProgressBar,
    epochs: usize,
    epoch: usize,
    loss_sum: f64,
}

impl BarObserver {
    fn new(epochs: usize) -> Self {
        let bar = ProgressBar::new(0);
        bar.set_style(
            ProgressStyle::with_template("epoch {prefix} [{bar:30}] {pos}/{len} batches ({per_sec}, eta {eta}) {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        BarObserver { bar, epochs, epoch: 0, loss_sum: 0.0 }
    }
}

impl TrainObserver for BarObserver {
    fn epoch_started(&mut self, epoch: usize, batches: usize) {
        self.epoch = epoch;
        self.loss_sum = 0.0;
        self.bar.reset();
        self.bar.set_length(batches as u64);
        self.bar.set_prefix(format!("{epoch}/{}", self.epochs));
    }

    fn batch_done(&mut self, batch: usize, loss: f64) {
        self.loss_sum += loss;
        self.bar.set_message(format!("loss {:.4}", self.loss_sum / batch as f64));
        self.bar.inc(1);
    }

    fn caching(&mut self, done: usize, total: usize) {
        if done == 0 {
            self.bar.reset();
            self.bar.set_length(total as u64);
            self.bar.set_prefix("cache");
            self.bar.set_message("trunk features");
        }
        self.bar.set_position(done as u64);
    }

    fn warning(&mut self, message: &str) {
        // `println` on a hidden bar (output not a terminal: nohup, CI) prints nothing.
        self.bar.suspend(|| eprintln!("warning: {message}"));
    }

    fn validating(&mut self, samples: usize) {
        self.bar.set_message(format!("validating on {samples} models"));
    }

    fn epoch_done(&mut self, m: &EpochMetrics) {
        let line = format!(
            "epoch {:>3}: loss {:.4}  val IoU {:.4} (t={})  {:.1} img/s{}",
            m.epoch,
            m.train_loss,
            m.val_best_iou,
            m.val_best_threshold,
            m.images_per_second,
            if m.is_best { "  *best" } else { "" }
        );
        self.bar.suspend(|| eprintln!("{line}"));
    }
}

#[derive(Debug, Args)]
pub struct EvalArgs {
    /// Model file to evaluate
    #[arg(long)]
    model: PathBuf,
    #[command(flatten)]
    data: DatasetArgs,
    /// Only these categories [default: all in the dataset]
    #[arg(long, value_delimiter = ',')]
    category: Vec<Category>,
    /// train, val or test
    #[arg(long, default_value = "test")]
    split: Split,
    /// Renderings per model (the first N, as the official test)
    #[arg(long, default_value_t = 1)]
    views: usize,
    #[arg(long, value_delimiter = ',', default_values_t = vec![0.2f32, 0.3, 0.4, 0.5])]
    thresholds: Vec<f32>,
    #[arg(long, default_value_t = 16)]
    batch_size: usize,
    /// Marching-cubes level the predictions are meshed at for the surface metrics
    /// (Chamfer-L1, F-score at 1% and 2%, normal consistency), the refine stage's default
    #[arg(long, default_value_t = 0.5)]
    surface_iso: f32,
    /// Area-uniform samples per surface for the surface metrics
    #[arg(long, default_value_t = mono2mesh_geometry::surface::DEFAULT_SAMPLES)]
    surface_samples: usize,
    /// IoU only: skip the surface metrics
    #[arg(long)]
    no_surface: bool,
    /// Also score the nearest-training-shape baseline: each test image's nearest training
    /// image (by the network's encoder features) lends its true shape as the prediction
    #[arg(long)]
    retrieval: bool,
    /// Write the report as JSON here (`-` for standard output instead of the table)
    #[arg(long)]
    json: Option<PathBuf>,
    /// auto, cpu, cuda or cuda:N
    #[arg(long, default_value = "auto")]
    device: DeviceChoice,
}

pub fn eval(args: EvalArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.thresholds.iter().all(|t| (0.0..=1.0).contains(t)), "thresholds must lie in [0, 1]");
    let device = args.device.resolve()?;
    let model = Pix2VoxModel::load(&args.model, device, None).with_context(|| format!("loading {}", args.model.display()))?;
    let dataset = args.data.location().open().context("opening the dataset")?;
    let categories = (!args.category.is_empty()).then_some(args.category.as_slice());
    let samples = dataset.samples(args.split, categories);
    anyhow::ensure!(!samples.is_empty(), "no {:?} samples for the chosen categories", args.split);
    let pairs = PairSet::load(&dataset, samples).context("loading evaluation pairs")?;
    let bar = ProgressBar::new(pairs.len() as u64);
    bar.set_style(
        ProgressStyle::with_template("eval [{bar:30}] {pos}/{len} models ({per_sec}, eta {eta})")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    anyhow::ensure!(args.surface_iso > 0.0 && args.surface_iso < 1.0, "--surface-iso must lie strictly between 0 and 1");
    anyhow::ensure!(args.surface_samples > 0, "--surface-samples must be at least 1");
    let surface = (!args.no_surface).then_some(SurfaceConfig { iso: args.surface_iso, samples: args.surface_samples });
    let config = EvalConfig { thresholds: args.thresholds.clone(), views: args.views, batch_size: args.batch_size, surface };
    let report = evaluate(&model.net, &pairs, &config, device, &mut |n| bar.set_position(n as u64))?;
    let retrieval = if args.retrieval {
        // The gallery is what the network was trained on: the same categories' train split.
        let gallery = PairSet::load(&dataset, dataset.samples(Split::Train, categories)).context("loading the retrieval gallery")?;
        bar.set_position(0);
        bar.set_message("retrieval");
        Some(evaluate_retrieval(&model.net, &gallery, &pairs, &config, device, &mut |n| bar.set_position(n as u64))?)
    } else {
        None
    };
    bar.finish_and_clear();
    let mut json = serde_json::json!({
        "model": args.model,
        "variant": model.metadata.variant,
        "model_category": model.metadata.category.map_or("general", |c| c.name()),
        "split": args.split,
        "report": report,
    });
    if let Some(retrieval) = &retrieval {
        json["retrieval"] = serde_json::to_value(retrieval)?;
    }
    let json = serde_json::to_string_pretty(&json)?;
    let table = || {
        let mut text = report.table();
        if let Some(retrieval) = &retrieval {
            text.push_str("\nnearest training shape (retrieval baseline)\n");
            text.push_str(&retrieval.table());
        }
        text
    };
    match &args.json {
        Some(path) if path.as_os_str() == "-" => println!("{json}"),
        Some(path) => {
            std::fs::write(path, &json).with_context(|| format!("writing {}", path.display()))?;
            print!("{}", table());
        }
        None => print!("{}", table()),
    }
    Ok(())
}
