//! Neural networks for the classify and reconstruct stages, on libtorch through tch.

pub mod fill_rule;
pub mod model_file;
