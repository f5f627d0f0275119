//! Neural networks for the classify and reconstruct stages, on libtorch through tch.

pub mod classifier;
pub mod device;
pub mod fill_rule;
pub mod model_file;
pub mod pix2vox;
pub mod pix2vox_model;
pub mod pix2vox_preprocess;
pub mod precision;
pub mod torch_pickle;
pub mod train;
