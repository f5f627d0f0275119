//! Neural networks for the classify and reconstruct stages, on libtorch through tch.
//! Inference only: training and evaluation live in `mono2mesh-train`, so the workers
//! that link this crate do not link the synthetic catalog.

pub mod classifier;
pub mod device;
pub mod fill_rule;
pub mod model_file;
pub mod pix2vox;
pub mod pix2vox_model;
pub mod pix2vox_preprocess;
pub mod precision;
pub mod torch_pickle;
