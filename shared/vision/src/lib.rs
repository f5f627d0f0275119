//! Neural networks for the classify and reconstruct stages, on libtorch through tch.
