//! The deterministic weight fill rule of `../shared/reference/pix2vox/README.md`, used by
//! the reference vectors that were produced without trained weights (Pix2Vox F3/A1 and
//! the ResNet50 classifier vector). Reproducing it lets parity tests load exactly the
//! weights the reference network ran with.
//!
//! One counter runs over all elements of all tensors, in the reference's state_dict order,
//! row-major; each element gets a SplitMix64-style hash of (seed, counter) mapped to
//! `[-1, 1)` and scaled by the tensor's kind (see [`FillKind`]).

use tch::{nn::VarStore, Tensor};

/// How a tensor's uniform draws `u` in `[-1, 1)` become values (checked in this order).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum FillKind {
    /// `*.running_mean`: `0.1 u`
    RunningMean,
    /// `*.running_var`: `1 + 0.5 u`
    RunningVar,
    /// any `*bias`: `0.1 u`
    Bias,
    /// any other 1-D tensor (a BatchNorm weight): `1 + 0.2 u`
    Scale,
    /// every other tensor (conv, transposed conv, linear weight): `u * sqrt(6 / fan)` with
    /// `fan = numel / shape[0]`
    Weight { bound: f64 },
}

impl FillKind {
    pub fn of(name: &str, shape: &[i64]) -> FillKind {
        if name.ends_with("running_mean") {
            FillKind::RunningMean
        } else if name.ends_with("running_var") {
            FillKind::RunningVar
        } else if name.ends_with("bias") {
            FillKind::Bias
        } else if shape.len() == 1 {
            FillKind::Scale
        } else {
            let numel: i64 = shape.iter().product();
            let fan = numel as f64 / shape.first().copied().unwrap_or(1).max(1) as f64;
            FillKind::Weight { bound: (6.0 / fan).sqrt() }
        }
    }

    fn value(self, u: f64) -> f64 {
        match self {
            FillKind::RunningMean | FillKind::Bias => 0.1 * u,
            FillKind::RunningVar => 1.0 + 0.5 * u,
            FillKind::Scale => 1.0 + 0.2 * u,
            FillKind::Weight { bound } => u * bound,
        }
    }
}

/// The uniform draw in `[-1, 1)` for element `index` of the global counter.
pub fn uniform(seed: u64, index: u64) -> f64 {
    let mut z = seed.wrapping_add(index.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z >> 11) as f64 * (1.0 / (1u64 << 53) as f64) * 2.0 - 1.0
}

/// Walks tensors in the reference order, carrying the element counter between them.
#[derive(Debug, Clone)]
pub struct FillRule {
    seed: u64,
    next_index: u64,
}

impl FillRule {
    pub fn new(seed: u64) -> Self {
        FillRule { seed, next_index: 0 }
    }

    /// Values of the next tensor in the order (row-major), as f32 computed from f64.
    pub fn next_values(&mut self, name: &str, shape: &[i64]) -> Vec<f32> {
        let kind = FillKind::of(name, shape);
        let numel: i64 = shape.iter().product();
        let start = self.next_index;
        self.next_index += numel.max(0) as u64;
        (start..self.next_index).map(|i| kind.value(uniform(self.seed, i)) as f32).collect()
    }

    /// The next tensor in the order as a CPU float tensor.
    pub fn next_tensor(&mut self, name: &str, shape: &[i64]) -> Tensor {
        Tensor::from_slice(&self.next_values(name, shape)).reshape(shape)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum FillError {
    #[error("fill order names {0:?}, which the model does not have")]
    UnknownVariable(String),
    #[error("the fill order does not cover these model variables: {0:?}")]
    Uncovered(Vec<String>),
    #[error("fill order names {0:?} twice")]
    Duplicate(String),
}

/// Fills every variable of `store` with the rule, walking `order` (VarStore names, the
/// reference's state_dict order with `num_batches_tracked` left out). Every order entry must
/// be a variable and every variable must be covered, so a naming mismatch cannot hide.
pub fn fill_var_store(store: &VarStore, seed: u64, order: &[&str]) -> Result<(), FillError> {
    let variables = store.variables();
    let mut rule = FillRule::new(seed);
    let mut seen = std::collections::HashSet::new();
    tch::no_grad(|| {
        for &name in order {
            if !seen.insert(name) {
                return Err(FillError::Duplicate(name.to_string()));
            }
            let mut variable = variables
                .get(name)
                .ok_or_else(|| FillError::UnknownVariable(name.to_string()))?
                .shallow_clone();
            let values = rule.next_tensor(name, &variable.size());
            variable.copy_(&values.to_device(variable.device()).to_kind(variable.kind()));
        }
        Ok(())
    })?;
    let mut uncovered: Vec<String> =
        variables.keys().filter(|k| !seen.contains(k.as_str())).cloned().collect();
    if !uncovered.is_empty() {
        uncovered.sort();
        return Err(FillError::Uncovered(uncovered));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uniform_draws_stay_in_range_and_depend_on_seed_and_index() {
        let draws: Vec<f64> = (0..10_000).map(|i| uniform(5, i)).collect();
        assert!(draws.iter().all(|u| (-1.0..1.0).contains(u)));
        let mean = draws.iter().sum::<f64>() / draws.len() as f64;
        assert!(mean.abs() < 0.05, "mean {mean}");
        assert_ne!(uniform(5, 0), uniform(6, 0));
        assert_ne!(uniform(5, 0), uniform(5, 1));
    }

    #[test]
    fn first_draw_matches_splitmix64_by_hand() {
        // SplitMix64's first output for state 0 is 0xE220A8397B1DCDAF (its published
        // test value); the rule's z for seed 0, index 0 is exactly that output.
        let expected = ((0xE220_A839_7B1D_CDAFu64 >> 11) as f64) / (1u64 << 53) as f64 * 2.0 - 1.0;
        assert_eq!(uniform(0, 0), expected);
    }

    #[test]
    fn kinds_follow_the_names_and_shapes() {
        assert_eq!(FillKind::of("bn1.running_mean", &[4]), FillKind::RunningMean);
        assert_eq!(FillKind::of("bn1.running_var", &[4]), FillKind::RunningVar);
        assert_eq!(FillKind::of("fc.bias", &[4]), FillKind::Bias);
        assert_eq!(FillKind::of("bn1.weight", &[4]), FillKind::Scale);
        match FillKind::of("conv.weight", &[8, 3, 2, 2]) {
            FillKind::Weight { bound } => assert!((bound - 0.5f64.sqrt()).abs() < 1e-12),
            other => panic!("unexpected kind {other:?}"),
        }
    }

    #[test]
    fn counter_runs_across_tensors() {
        let mut rule = FillRule::new(3);
        let first = rule.next_values("a.bias", &[2]);
        let second = rule.next_values("b.bias", &[3]);
        assert_eq!(second[0], (0.1 * uniform(3, 2)) as f32);
        assert_eq!(first[1], (0.1 * uniform(3, 1)) as f32);
    }
}
