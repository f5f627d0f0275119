//! Colours a mesh can carry into its files: one linear RGBA colour per vertex and a base
//! colour for the material.
//!
//! Colours are **linear** RGB in [0, 1] (glTF's `COLOR_0` and `baseColorFactor` are linear);
//! the OBJ and PLY writers convert them to sRGB bytes or numbers, as those formats' readers
//! expect. [`srgb_to_linear`] and [`linear_to_srgb`] are the standard sRGB transfer functions
//! (IEC 61966-2-1).
//!
//! The colours are a side struct rather than a field of [`crate::Mesh`], so every existing
//! mesh and writer call stays as it is: [`crate::export::encode`] writes no colour,
//! [`crate::export::encode_coloured`] writes these.

use thiserror::Error;

/// Per-vertex colours and a material base colour for one mesh.
#[derive(Debug, Clone, PartialEq)]
pub struct Colours {
    /// One linear RGBA colour per vertex, in the mesh's vertex order; empty for none (the
    /// material's base colour then colours the whole mesh).
    pub per_vertex: Vec<[f32; 4]>,
    /// Linear RGBA: the object's overall colour.
    pub base_colour: [f32; 4],
}

#[derive(Debug, Clone, PartialEq, Error)]
pub enum ColourError {
    #[error("{got} vertex colours for a mesh of {vertices} vertices (need one per vertex, or none)")]
    Count { got: usize, vertices: usize },
    #[error("colour {index} is {value:?}: every component must be a finite number in [0, 1]")]
    OutOfRange { index: usize, value: [f32; 4] },
    #[error("base colour {0:?}: every component must be a finite number in [0, 1]")]
    BadBase([f32; 4]),
}

fn in_unit(c: &[f32; 4]) -> bool {
    c.iter().all(|v| (0.0..=1.0).contains(v))
}

impl Colours {
    /// One colour for the whole mesh, no per-vertex colours.
    pub fn uniform(base_colour: [f32; 4]) -> Self {
        Colours { per_vertex: Vec::new(), base_colour }
    }

    /// Whether these colours fit a mesh of `vertices` vertices and are all in range.
    pub fn check(&self, vertices: usize) -> Result<(), ColourError> {
        if !in_unit(&self.base_colour) {
            return Err(ColourError::BadBase(self.base_colour));
        }
        if !self.per_vertex.is_empty() && self.per_vertex.len() != vertices {
            return Err(ColourError::Count { got: self.per_vertex.len(), vertices });
        }
        if let Some((index, &value)) = self.per_vertex.iter().enumerate().find(|(_, c)| !in_unit(c)) {
            return Err(ColourError::OutOfRange { index, value });
        }
        Ok(())
    }

    /// The colour of vertex `i`: its own, or the base colour when there are none.
    pub fn vertex(&self, i: usize) -> [f32; 4] {
        self.per_vertex.get(i).copied().unwrap_or(self.base_colour)
    }
}

/// sRGB-encoded value in [0, 1] to linear.
#[inline]
pub fn srgb_to_linear(c: f32) -> f32 {
    if c <= 0.04045 {
        c / 12.92
    } else {
        ((c + 0.055) / 1.055).powf(2.4)
    }
}

/// Linear value in [0, 1] to sRGB-encoded.
#[inline]
pub fn linear_to_srgb(c: f32) -> f32 {
    let c = c.clamp(0.0, 1.0);
    if c >= 1.0 {
        // Exactly 1 (the formula gives 0.99999994 in f32).
        1.0
    } else if c <= 0.003_130_8 {
        c * 12.92
    } else {
        1.055 * c.powf(1.0 / 2.4) - 0.055
    }
}

/// An 8-bit sRGB channel to linear, through a table (exact to f32).
pub fn srgb_u8_to_linear(c: u8) -> f32 {
    static TABLE: std::sync::OnceLock<[f32; 256]> = std::sync::OnceLock::new();
    TABLE.get_or_init(|| std::array::from_fn(|i| srgb_to_linear(i as f32 / 255.0)))[c as usize]
}

/// A linear channel to an 8-bit sRGB value (rounded).
pub fn linear_to_srgb_u8(c: f32) -> u8 {
    (linear_to_srgb(c) * 255.0).round().clamp(0.0, 255.0) as u8
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transfer_functions_round_trip_every_byte() {
        for b in 0..=255u8 {
            assert_eq!(linear_to_srgb_u8(srgb_u8_to_linear(b)), b);
        }
        assert!((srgb_to_linear(0.5) - 0.214).abs() < 1e-3);
        assert_eq!(linear_to_srgb(2.0), 1.0);
    }

    #[test]
    fn check_rejects_wrong_counts_and_ranges() {
        let ok = Colours { per_vertex: vec![[0.5, 0.5, 0.5, 1.0]; 3], base_colour: [0.2, 0.3, 0.4, 1.0] };
        assert_eq!(ok.check(3), Ok(()));
        assert_eq!(ok.check(4), Err(ColourError::Count { got: 3, vertices: 4 }));
        assert_eq!(Colours::uniform([0.1; 4]).check(10), Ok(()));
        let mut bad = ok.clone();
        bad.per_vertex[1][2] = f32::NAN;
        assert!(matches!(bad.check(3), Err(ColourError::OutOfRange { index: 1, .. })));
        assert!(matches!(Colours::uniform([1.5, 0.0, 0.0, 1.0]).check(1), Err(ColourError::BadBase(_))));
        assert_eq!(ok.vertex(2), [0.5, 0.5, 0.5, 1.0]);
        assert_eq!(Colours::uniform([0.1; 4]).vertex(7), [0.1; 4]);
    }
}
