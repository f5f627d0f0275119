//! Synthetic catalog generator: our stand-in for ShapeNet, written in ShapeNet's layout.
