//! Training and evaluation of Pix2Vox on datasets in the ShapeNet layout Pix2Vox reads
//! (real ShapeNet, or our synthetic catalog): the official from-scratch recipe, the
//! paper's per-category fine-tuning, and the official IoU evaluation.

pub mod augment;
pub mod data;
pub mod eval;
pub mod feature_cache;
pub mod optim;
pub mod trainer;

pub use augment::AugmentConfig;
pub use data::{Batch, DataError, DatasetLocation, PairSet};
pub use eval::{evaluate, evaluate_retrieval, EvalConfig, EvalReport, SurfaceConfig, SurfaceReport, SurfaceScore};
pub use optim::{LearningRates, Schedule};
pub use trainer::{EpochMetrics, Init, TrainConfig, TrainError, TrainObserver, TrainState, TrainSummary, Trainer, TrunkMode};
