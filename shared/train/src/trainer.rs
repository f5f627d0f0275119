//! The training loop: from scratch (the official recipe) or fine-tuning a model file on one
//! category (the paper's recipe), with resumable checkpoints, a metrics log and the best
//! model by validation IoU.
//!
//! A run directory holds:
//!
//! ```text
//! checkpoint.safetensors  weights + Adam state + training state (resume from it)
//! best.safetensors        the best model by validation IoU: a model file the registry serves
//! best.eval.json          the validation report of that epoch
//! metrics.jsonl           one JSON object per epoch
//! ```

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use mono2mesh_core::Category;
use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Reduction, Tensor};

use crate::augment::AugmentConfig;
use crate::data::{epoch_order, DataError, DatasetLocation, PairSet};
use crate::eval::{evaluate, evaluate_with, EvalConfig, EvalReport};
use crate::feature_cache::{trunk_fingerprint, CacheError, FeatureCache};
use mono2mesh_vision::precision::{with_cpu_bf16, Precision};
use crate::optim::{Adam, GradScaler, LearningRates, OptimError, Schedule};
use mono2mesh_vision::model_file::{read_model_file, write_model_file, ModelFileError};
use mono2mesh_vision::pix2vox::{is_frozen_trunk_variable, Stages, Variant};
use mono2mesh_vision::pix2vox_model::{ModelMetadata, Pix2VoxModel, Pix2VoxModelError, Provenance};

pub const CHECKPOINT_FILE: &str = "checkpoint.safetensors";
pub const BEST_FILE: &str = "best.safetensors";
pub const BEST_EVAL_FILE: &str = "best.eval.json";
pub const METRICS_FILE: &str = "metrics.jsonl";

const CONFIG_KEY: &str = "train_config";
const STATE_KEY: &str = "train_state";

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error(transparent)]
    Data(#[from] DataError),
    #[error(transparent)]
    Model(#[from] Pix2VoxModelError),
    #[error(transparent)]
    File(#[from] ModelFileError),
    #[error(transparent)]
    Optim(#[from] OptimError),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{0}")]
    Invalid(String),
    #[error("libtorch: {0}")]
    Torch(#[from] tch::TchError),
    #[error(transparent)]
    Cache(#[from] CacheError),
}

/// How the frozen VGG trunk takes part in training.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TrunkMode {
    /// As the official code: the trunk runs every step, in train mode (batch-statistics
    /// BatchNorm), on augmented images.
    #[default]
    Live,
    /// The trunk in eval mode (statistics calibrated once on training images), its output
    /// computed once per rendering and read from a feature cache; no online augmentation
    /// (the catalog's renderings carry the variation). About 3x faster on a CPU.
    Cached,
}

impl std::str::FromStr for TrunkMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "live" => Ok(TrunkMode::Live),
            "cached" => Ok(TrunkMode::Cached),
            other => Err(format!("unknown trunk mode {other:?}: expected live or cached")),
        }
    }
}

/// Where trunk feature caches live unless a run names a directory: the user's cache
/// (`$XDG_CACHE_HOME` or `~/.cache`), outside any work tree.
pub fn default_feature_cache_root() -> PathBuf {
    mono2mesh_core::user_cache_dir().join("trunk-features")
}

/// Training images the trunk's BatchNorm statistics are calibrated on (cached mode).
const CALIBRATION_IMAGES: usize = 256;

/// What the run starts from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Init {
    /// Official initialisation (random, frozen trunk included).
    Scratch,
    /// The weights of a model file (transfer learning).
    From(PathBuf),
}

/// Everything that decides a run; stored in each checkpoint so a resume needs no flags.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    pub variant: Variant,
    pub init: Init,
    /// The produced model's category (`None`: a general model).
    pub category: Option<Category>,
    /// Dataset in Pix2Vox's layout, and the categories taken from it (all if empty).
    pub dataset: DatasetLocation,
    pub categories: Vec<Category>,
    pub epochs: usize,
    pub batch_size: usize,
    /// Renderings per model per step (the official single-view training uses 1).
    pub views: usize,
    pub lr: LearningRates,
    pub betas: (f64, f64),
    pub schedule: Schedule,
    /// The official loss is 10 x BCE.
    pub loss_weight: f64,
    /// Keep the encoder head fixed too (only decoder, merger and refiner learn).
    pub freeze_encoder_head: bool,
    pub augment: AugmentConfig,
    pub seed: u64,
    /// Stop after this many epochs without a better validation IoU.
    pub patience: Option<usize>,
    /// float16 autocast with loss scaling (CUDA only; ignored on CPU).
    pub amp: bool,
    pub eval: EvalConfig,
    /// Cap on batches per epoch (quick experiments and tests).
    pub max_batches_per_epoch: Option<usize>,
    /// Live (official) or cached trunk features.
    #[serde(default)]
    pub trunk: TrunkMode,
    /// float32, or bf16 autocast on the CPU.
    #[serde(default)]
    pub precision: Precision,
    /// Root of the trunk feature caches (cached mode); `None`: [`default_feature_cache_root`].
    #[serde(default)]
    pub feature_cache: Option<PathBuf>,
}

impl TrainConfig {
    /// The official from-scratch recipe: 250 epochs, batch 64, lr 1e-3 (merger 1e-4),
    /// halved at epoch 150.
    pub fn official(variant: Variant, dataset: DatasetLocation) -> Self {
        TrainConfig {
            variant,
            init: Init::Scratch,
            category: None,
            dataset,
            categories: Vec::new(),
            epochs: 250,
            batch_size: 64,
            views: 1,
            lr: LearningRates::official(),
            betas: (0.9, 0.999),
            schedule: Schedule { milestones: vec![150], gamma: 0.5 },
            loss_weight: 10.0,
            freeze_encoder_head: false,
            augment: AugmentConfig::default(),
            seed: 0,
            patience: None,
            amp: false,
            eval: EvalConfig::default(),
            max_batches_per_epoch: None,
            trunk: TrunkMode::Live,
            precision: Precision::F32,
            feature_cache: None,
        }
    }

    /// The paper's category fine-tuning: from `base`, 240 epochs, batch 32, lr 1e-3.
    pub fn paper_finetune(variant: Variant, base: PathBuf, category: Category, dataset: DatasetLocation) -> Self {
        TrainConfig {
            init: Init::From(base),
            category: Some(category),
            categories: vec![category],
            epochs: 240,
            batch_size: 32,
            ..TrainConfig::official(variant, dataset)
        }
    }

    fn validate(&self) -> Result<(), TrainError> {
        if self.batch_size == 0 || self.views == 0 || self.epochs == 0 {
            return Err(TrainError::Invalid("epochs, batch size and views must be at least 1".into()));
        }
        if self.eval.thresholds.is_empty() {
            return Err(TrainError::Invalid("at least one IoU threshold is needed".into()));
        }
        Ok(())
    }
}

/// Where a run stands; saved with every checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainState {
    /// Epochs completed.
    pub epochs_done: usize,
    pub best_iou: f64,
    pub best_epoch: Option<usize>,
    pub epochs_since_best: usize,
    pub scaler: GradScaler,
    pub stopped_early: bool,
    /// The trunk's BatchNorm statistics were calibrated (cached mode), or came calibrated
    /// from the model the run started from.
    #[serde(default)]
    pub trunk_calibrated: bool,
}

/// One line of `metrics.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochMetrics {
    /// 1-based.
    pub epoch: usize,
    pub train_loss: f64,
    pub lr_factor: f64,
    pub batches: usize,
    pub skipped_steps: usize,
    pub train_seconds: f64,
    pub images_per_second: f64,
    pub val_iou: Vec<f64>,
    pub val_best_iou: f64,
    pub val_best_threshold: f32,
    pub is_best: bool,
    /// Peak resident memory of the process so far (VmHWM), in MiB.
    #[serde(default)]
    pub peak_rss_mib: f64,
}

/// Progress callbacks (a progress bar in the CLI, nothing in tests).
pub trait TrainObserver {
    fn epoch_started(&mut self, _epoch: usize, _batches: usize) {}
    fn batch_done(&mut self, _batch: usize, _loss: f64) {}
    fn validating(&mut self, _samples: usize) {}
    fn epoch_done(&mut self, _metrics: &EpochMetrics) {}
    /// Filling the trunk feature cache: (done, total) renderings.
    fn caching(&mut self, _done: usize, _total: usize) {}
    /// Something was left out (a broken rendering or model), with the reason.
    fn warning(&mut self, _message: &str) {}
}

pub struct Quiet;
impl TrainObserver for Quiet {}

pub struct Trainer {
    pub model: Pix2VoxModel,
    pub config: TrainConfig,
    pub state: TrainState,
    optim: Adam,
    device: Device,
    run_dir: PathBuf,
}

/// The caches a cached-trunk run reads.
struct CachedFeatures {
    train: FeatureCache,
    val: FeatureCache,
    /// Per training sample, the renderings that have features (broken ones are left out).
    train_views: Vec<Vec<usize>>,
    /// Training samples with at least one, in order.
    train_usable: Vec<usize>,
    /// The validation samples whose evaluation renderings all have features.
    val_set: PairSet,
}

/// What [`Trainer::run`] ends with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainSummary {
    pub epochs_done: usize,
    pub best_iou: f64,
    pub best_epoch: Option<usize>,
    pub stopped_early: bool,
    pub best_model: PathBuf,
}

impl Trainer {
    /// A new run in `run_dir` (created; an existing checkpoint there is an error, so a
    /// finished run is never overwritten by accident: resume it or choose another dir).
    pub fn start(config: TrainConfig, run_dir: &Path, device: Device) -> Result<Self, TrainError> {
        config.validate()?;
        if run_dir.join(CHECKPOINT_FILE).exists() {
            return Err(TrainError::Invalid(format!(
                "{} already holds a run: resume it, or pick another output directory",
                run_dir.display()
            )));
        }
        std::fs::create_dir_all(run_dir).map_err(|source| TrainError::Io { path: run_dir.to_path_buf(), source })?;
        // libtorch's generator is process-global: a seed reproduces the initialisation only
        // when nothing else in the process draws from it meanwhile (true for the CLI).
        tch::manual_seed(config.seed as i64);
        let (kind, mut details) = match &config.init {
            Init::Scratch => ("train", BTreeMap::new()),
            Init::From(path) => ("finetune", BTreeMap::from([("from".to_string(), serde_json::json!(path))])),
        };
        details.insert("dataset".into(), serde_json::json!(config.dataset.taxonomy_file));
        details.insert("seed".into(), serde_json::json!(config.seed));
        let metadata = ModelMetadata::official(config.variant, config.category, Provenance { kind: kind.into(), details });
        let model = Pix2VoxModel::new(metadata, device);
        if let Init::From(path) = &config.init {
            let base = Pix2VoxModel::load(path, device, Some(config.variant))?;
            tch::no_grad(|| -> Result<(), TrainError> {
                let ours = model.vs.variables();
                for (name, tensor) in base.vs.variables() {
                    // same variant, so the same variable set
                    if let Some(target) = ours.get(&name) {
                        target.shallow_clone().f_copy_(&tensor)?;
                    }
                }
                Ok(())
            })?;
        }
        let optim = build_optimizer(&model, &config);
        let state = TrainState {
            epochs_done: 0,
            best_iou: f64::NEG_INFINITY,
            best_epoch: None,
            epochs_since_best: 0,
            scaler: GradScaler::default(),
            stopped_early: false,
            // a fine-tune inherits its base's trunk statistics
            trunk_calibrated: matches!(config.init, Init::From(_)),
        };
        Ok(Trainer { model, config, state, optim, device, run_dir: run_dir.to_path_buf() })
    }

    /// Continue the run in `run_dir` from its checkpoint. `epochs` may extend it.
    pub fn resume(run_dir: &Path, device: Device, epochs: Option<usize>) -> Result<Self, TrainError> {
        let path = run_dir.join(CHECKPOINT_FILE);
        let file = read_model_file(&path)?;
        let parse = |key: &str| -> Result<&String, TrainError> {
            file.metadata.get(key).ok_or_else(|| TrainError::Invalid(format!("{}: not a training checkpoint (no {key})", path.display())))
        };
        let mut config: TrainConfig = serde_json::from_str(parse(CONFIG_KEY)?)
            .map_err(|e| TrainError::Invalid(format!("{}: {CONFIG_KEY}: {e}", path.display())))?;
        let state: TrainState = serde_json::from_str(parse(STATE_KEY)?)
            .map_err(|e| TrainError::Invalid(format!("{}: {STATE_KEY}: {e}", path.display())))?;
        if let Some(epochs) = epochs {
            config.epochs = epochs;
        }
        let model = Pix2VoxModel::from_file(&path, &file, device, Some(config.variant))?;
        let mut optim = build_optimizer(&model, &config);
        let tensors: BTreeMap<String, Tensor> = file.tensors.into_iter().collect();
        optim.load_state(&tensors)?;
        Ok(Trainer { model, config, state, optim, device, run_dir: run_dir.to_path_buf() })
    }

    pub fn run_dir(&self) -> &Path {
        &self.run_dir
    }

    pub fn trainable_parameters(&self) -> i64 {
        self.optim.parameter_count()
    }

    /// Train until `config.epochs` are done or early stopping triggers; validates after
    /// every epoch and checkpoints after every epoch.
    pub fn run(&mut self, train: &PairSet, val: &PairSet, observer: &mut dyn TrainObserver) -> Result<TrainSummary, TrainError> {
        if train.is_empty() {
            return Err(TrainError::Data(DataError::Empty("the training split has no samples".into())));
        }
        if val.is_empty() {
            return Err(TrainError::Data(DataError::Empty("the validation split has no samples".into())));
        }
        let cached = match self.config.trunk {
            TrunkMode::Live => None,
            TrunkMode::Cached => Some(self.prepare_cache(train, val, observer)?),
        };
        while self.state.epochs_done < self.config.epochs && !self.state.stopped_early {
            let metrics = self.train_epoch(train, val, cached.as_ref(), observer)?;
            self.append_metrics(&metrics)?;
            observer.epoch_done(&metrics);
        }
        Ok(TrainSummary {
            epochs_done: self.state.epochs_done,
            best_iou: self.state.best_iou,
            best_epoch: self.state.best_epoch,
            stopped_early: self.state.stopped_early,
            best_model: self.run_dir.join(BEST_FILE),
        })
    }

    /// Mean loss of one batch without updating anything (for tests and diagnostics).
    pub fn batch_loss(&self, batch: &crate::data::Batch) -> f64 {
        tch::no_grad(|| self.loss(&batch.images, &batch.voxels, false).double_value(&[]))
    }

    fn bf16(&self) -> bool {
        self.config.precision.uses_bf16(self.device)
    }

    /// Calibrates the trunk (once per run) and fills the feature caches of both splits.
    /// Renderings that cannot be read are left out with a warning; so is a model left
    /// with none.
    fn prepare_cache(&mut self, train: &PairSet, val: &PairSet, observer: &mut dyn TrainObserver) -> Result<CachedFeatures, TrainError> {
        if !self.state.trunk_calibrated {
            let n = CALIBRATION_IMAGES.min(train.len());
            let picks: Vec<usize> = (0..n).map(|k| k * train.len() / n).collect();
            let batch = train.eval_batch(&picks, 1, self.device)?;
            let size = batch.images.size();
            self.model.net.calibrate_trunk(&batch.images.reshape([size[0] * size[1], size[2], size[3], size[4]]));
            self.state.trunk_calibrated = true;
            self.model.metadata.provenance.details.insert(
                "trunk".into(),
                serde_json::json!(format!(
                    "random init (seed {}), frozen, BatchNorm statistics calibrated on {n} training renderings, eval mode",
                    self.config.seed
                )),
            );
        }
        let bf16 = self.bf16();
        let fingerprint = trunk_fingerprint(&self.model.vs, bf16)?;
        let root = self.config.feature_cache.clone().unwrap_or_else(default_feature_cache_root);
        let eval_views = self.config.eval.views.max(1);
        let net = &self.model.net;
        let device = self.device;
        let fill = |wanted: Vec<Vec<usize>>, set: &PairSet, observer: &mut dyn TrainObserver| -> Result<(FeatureCache, Vec<Vec<usize>>), TrainError> {
            let files: Vec<PathBuf> =
                wanted.iter().enumerate().flat_map(|(i, views)| views.iter().map(move |&v| set.view_files(i)[v].clone())).collect();
            let (cache, broken) = FeatureCache::fill(&root, net, &fingerprint, &files, bf16, device, &mut |d, t| observer.caching(d, t))?;
            for (path, reason) in &broken {
                observer.warning(&format!("skipping rendering {}: {reason}", path.display()));
            }
            let ok: Vec<Vec<usize>> = wanted
                .into_iter()
                .enumerate()
                .map(|(i, views)| views.into_iter().filter(|&v| cache.contains(&set.view_files(i)[v])).collect())
                .collect();
            Ok((cache, ok))
        };
        let wanted_train: Vec<Vec<usize>> = (0..train.len()).map(|i| (0..train.view_files(i).len()).collect()).collect();
        let (train_cache, train_views) = fill(wanted_train, train, observer)?;
        let wanted_val: Vec<Vec<usize>> = (0..val.len()).map(|i| val.eval_views(i, eval_views)).collect();
        let want_counts: Vec<usize> = wanted_val.iter().map(Vec::len).collect();
        let (val_cache, val_views) = fill(wanted_val, val, observer)?;
        let train_usable: Vec<usize> = (0..train.len()).filter(|&i| !train_views[i].is_empty()).collect();
        let val_usable: Vec<usize> = (0..val.len()).filter(|&i| val_views[i].len() == want_counts[i]).collect();
        let left_out = (train.len() - train_usable.len()) + (val.len() - val_usable.len());
        if left_out > 0 {
            observer.warning(&format!("{left_out} model(s) left out: their renderings could not be read"));
        }
        if train_usable.is_empty() || val_usable.is_empty() {
            return Err(TrainError::Data(DataError::Empty("no readable renderings left in the training or validation split".into())));
        }
        Ok(CachedFeatures { train: train_cache, val: val_cache, train_views, train_usable, val_set: val.subset(&val_usable) })
    }

    /// Cached trunk features of `views` renderings per sample, `[B, V, 512, 28, 28]`.
    fn cached_features(&self, cache: &FeatureCache, set: &PairSet, picks: &[(usize, Vec<usize>)]) -> Result<Tensor, TrainError> {
        let paths: Vec<&Path> = picks.iter().flat_map(|(i, views)| views.iter().map(move |&v| set.view_files(*i)[v].as_path())).collect();
        let features = cache.read(&paths)?;
        let v = picks.first().map_or(1, |(_, views)| views.len() as i64);
        let mut shape = vec![picks.len() as i64, v];
        shape.extend_from_slice(&features.size()[1..]);
        let features = features.reshape(shape).to_device(self.device);
        Ok(if self.bf16() { features } else { features.to_kind(Kind::Float) })
    }

    fn cached_loss(&self, features: &Tensor, voxels: &Tensor) -> Tensor {
        let out = with_cpu_bf16(self.bf16(), || self.model.net.forward_from_trunk_t(features, true, Stages::default()));
        self.loss_of(&out, voxels)
    }

    fn loss_of(&self, out: &mono2mesh_vision::pix2vox::Pix2VoxOutput, voxels: &Tensor) -> Tensor {
        // BCE is unsafe under reduced-precision autocast: compute it in float32, as PyTorch requires.
        let bce = |p: &Tensor| p.to_kind(Kind::Float).binary_cross_entropy::<Tensor>(voxels, None, Reduction::Mean);
        let mut loss = bce(&out.merged) * self.config.loss_weight;
        if let Some(refined) = &out.refined {
            loss = loss + bce(refined) * self.config.loss_weight;
        }
        loss
    }

    fn loss(&self, images: &Tensor, voxels: &Tensor, train: bool) -> Tensor {
        let amp = self.config.amp && self.device.is_cuda();
        let out = tch::autocast(amp, || with_cpu_bf16(self.bf16(), || self.model.net.forward_t(images, train, Stages::default())));
        self.loss_of(&out, voxels)
    }

    fn train_epoch(&mut self, train: &PairSet, val: &PairSet, cached: Option<&CachedFeatures>, observer: &mut dyn TrainObserver) -> Result<EpochMetrics, TrainError> {
        let epoch = self.state.epochs_done;
        let lr_factor = self.config.schedule.factor(epoch);
        let order: Vec<usize> = match cached {
            // only the samples with features, in a seeded order over them
            Some(c) => epoch_order(c.train_usable.len(), self.config.seed, epoch).into_iter().map(|k| c.train_usable[k]).collect(),
            None => epoch_order(train.len(), self.config.seed, epoch),
        };
        let bs = self.config.batch_size;
        // Drop a last partial batch, as the official loader does, unless it is the only one.
        let mut batches: Vec<&[usize]> = order.chunks(bs).collect();
        if batches.len() > 1 && batches.last().is_some_and(|b| b.len() < bs) {
            batches.pop();
        }
        if let Some(cap) = self.config.max_batches_per_epoch {
            batches.truncate(cap.max(1));
        }
        observer.epoch_started(epoch + 1, batches.len());
        let started = Instant::now();
        let amp = self.config.amp && self.device.is_cuda();
        let (mut loss_sum, mut skipped, mut images) = (0.0, 0usize, 0usize);
        for (b, indices) in batches.iter().enumerate() {
            let stream = (epoch as u64) << 20 | b as u64;
            self.optim.zero_grad();
            let loss = match cached {
                Some(c) => {
                    let picks: Vec<(usize, Vec<usize>)> = indices
                        .iter()
                        .map(|&i| (i, train.training_views(i, &c.train_views[i], self.config.views, self.config.seed, stream)))
                        .collect();
                    let features = self.cached_features(&c.train, train, &picks)?;
                    self.cached_loss(&features, &train.voxel_batch(indices, self.device)?)
                }
                None => {
                    let batch = train.training_batch(indices, self.config.views, &self.config.augment, self.config.seed, stream, self.device)?;
                    self.loss(&batch.images, &batch.voxels, true)
                }
            };
            let value = loss.double_value(&[]);
            if amp {
                (&loss * self.state.scaler.scale).backward();
                if self.state.scaler.unscale_and_check(&self.optim.grads()) {
                    self.optim.step(lr_factor);
                } else {
                    skipped += 1;
                }
            } else {
                loss.backward();
                self.optim.step(lr_factor);
            }
            loss_sum += value;
            images += indices.len() * self.config.views;
            observer.batch_done(b + 1, value);
        }
        let train_seconds = started.elapsed().as_secs_f64();
        observer.validating(val.len());
        let report = match cached {
            Some(c) => {
                let views = self.config.eval.views.max(1);
                evaluate_with(&c.val_set, &self.config.eval, &mut |_| {}, &mut |chunk| {
                    let picks: Vec<(usize, Vec<usize>)> = chunk.iter().map(|&k| (k, c.val_set.eval_views(k, views))).collect();
                    let features = self.cached_features(&c.val, &c.val_set, &picks).map_err(|e| DataError::Empty(e.to_string()))?;
                    let out = tch::no_grad(|| with_cpu_bf16(self.bf16(), || self.model.net.forward_from_trunk_t(&features, false, Stages::default())));
                    Ok(out.volume().shallow_clone())
                })?
            }
            None => with_cpu_bf16(self.bf16(), || evaluate(&self.model.net, val, &self.config.eval, self.device, &mut |_| {}))?,
        };
        self.state.epochs_done = epoch + 1;
        let is_best = report.best_iou > self.state.best_iou;
        if is_best {
            self.state.best_iou = report.best_iou;
            self.state.best_epoch = Some(epoch + 1);
            self.state.epochs_since_best = 0;
            self.save_best(&report)?;
        } else {
            self.state.epochs_since_best += 1;
            if self.config.patience.is_some_and(|p| self.state.epochs_since_best >= p) {
                self.state.stopped_early = true;
            }
        }
        self.save_checkpoint()?;
        Ok(EpochMetrics {
            epoch: epoch + 1,
            train_loss: loss_sum / batches.len().max(1) as f64,
            lr_factor,
            batches: batches.len(),
            skipped_steps: skipped,
            train_seconds,
            images_per_second: images as f64 / train_seconds.max(1e-9),
            val_iou: report.overall.clone(),
            val_best_iou: report.best_iou,
            val_best_threshold: report.best_threshold,
            is_best,
            peak_rss_mib: peak_rss_mib(),
        })
    }

    fn save_best(&mut self, report: &EvalReport) -> Result<(), TrainError> {
        let details = &mut self.model.metadata.provenance.details;
        details.insert("epoch".into(), serde_json::json!(self.state.epochs_done));
        details.insert("val_iou".into(), serde_json::json!(report.best_iou));
        details.insert("val_threshold".into(), serde_json::json!(report.best_threshold));
        details.insert("categories".into(), serde_json::json!(self.config.categories));
        self.model.save(self.run_dir.join(BEST_FILE))?;
        let path = self.run_dir.join(BEST_EVAL_FILE);
        let text = serde_json::to_vec_pretty(report).map_err(|e| TrainError::Invalid(e.to_string()))?;
        std::fs::write(&path, text).map_err(|source| TrainError::Io { path, source })
    }

    fn save_checkpoint(&self) -> Result<(), TrainError> {
        let mut tensors: Vec<(String, Tensor)> = self.model.vs.variables().into_iter().collect();
        tensors.extend(self.optim.state());
        tensors.sort_by(|a, b| a.0.cmp(&b.0));
        let mut metadata = self.model.metadata.to_map();
        let json = |v: serde_json::Result<String>| v.map_err(|e| TrainError::Invalid(e.to_string()));
        metadata.insert(CONFIG_KEY.into(), json(serde_json::to_string(&self.config))?);
        metadata.insert(STATE_KEY.into(), json(serde_json::to_string(&self.state))?);
        write_model_file(&self.run_dir.join(CHECKPOINT_FILE), &tensors, &metadata)?;
        Ok(())
    }

    fn append_metrics(&self, metrics: &EpochMetrics) -> Result<(), TrainError> {
        let path = self.run_dir.join(METRICS_FILE);
        let line = serde_json::to_string(metrics).map_err(|e| TrainError::Invalid(e.to_string()))?;
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .and_then(|mut f| writeln!(f, "{line}"))
            .map_err(|source| TrainError::Io { path, source })
    }
}

/// Peak resident set size of this process (Linux `VmHWM`), in MiB; 0 where unknown.
pub fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok()))
        .map_or(0.0, |kb| kb / 1024.0)
}

/// Adam over the trainable variables, each at its module's rate. The frozen trunk never
/// enters; with `freeze_encoder_head` neither does the encoder head.
fn build_optimizer(model: &Pix2VoxModel, config: &TrainConfig) -> Adam {
    let mut params: Vec<(String, Tensor, f64)> = Vec::new();
    let mut variables: Vec<(String, Tensor)> = model.vs.variables().into_iter().collect();
    variables.sort_by(|a, b| a.0.cmp(&b.0));
    for (name, tensor) in variables {
        let module = name.split('.').next().unwrap_or_default().to_string();
        if is_frozen_trunk_variable(&name) {
            continue;
        }
        if config.freeze_encoder_head && module == "encoder" {
            let _ = tensor.set_requires_grad(false);
            continue;
        }
        if !tensor.requires_grad() {
            continue; // BatchNorm running statistics
        }
        let lr = config.lr.for_module(&module);
        params.push((name, tensor, lr));
    }
    Adam::new(params, config.betas, 1e-8)
}
