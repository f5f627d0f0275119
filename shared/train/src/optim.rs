//! Adam with per-module learning rates, a milestone schedule and a gradient scaler for
//! mixed precision, with its whole state as named tensors so a checkpoint can hold it.
//!
//! Written here rather than taken from `tch::nn::Optimizer` because that one cannot hand
//! out its moment estimates, and a resumed run must continue exactly where it stopped.
//! The update is PyTorch's `torch.optim.Adam` (no weight decay, no amsgrad), as the
//! official training uses it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use tch::Tensor;

/// Learning rates per module (the official code has one Adam per module).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LearningRates {
    pub encoder: f64,
    pub decoder: f64,
    pub merger: f64,
    pub refiner: f64,
}

impl LearningRates {
    /// The official values: 1e-3 everywhere but the merger's 1e-4.
    pub fn official() -> Self {
        LearningRates { encoder: 1e-3, decoder: 1e-3, merger: 1e-4, refiner: 1e-3 }
    }

    pub fn for_module(&self, module: &str) -> f64 {
        match module {
            "encoder" => self.encoder,
            "decoder" => self.decoder,
            "merger" => self.merger,
            _ => self.refiner,
        }
    }
}

/// `MultiStepLR`: the rate is multiplied by `gamma` at each milestone epoch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Schedule {
    pub milestones: Vec<usize>,
    pub gamma: f64,
}

impl Schedule {
    /// Factor for `epoch` (0-based, as PyTorch's scheduler counts after `epoch` steps).
    pub fn factor(&self, epoch: usize) -> f64 {
        let passed = self.milestones.iter().filter(|&&m| m <= epoch).count();
        self.gamma.powi(passed as i32)
    }
}

/// One trainable tensor and the learning rate of its module.
struct Param {
    name: String,
    tensor: Tensor,
    lr: f64,
    m: Tensor,
    v: Tensor,
}

pub struct Adam {
    params: Vec<Param>,
    beta1: f64,
    beta2: f64,
    eps: f64,
    step: i64,
}

/// Prefix of optimizer tensors in a checkpoint (the vision crate skips them when it
/// loads a model).
pub const STATE_PREFIX: &str = mono2mesh_vision::pix2vox_model::OPTIMIZER_STATE_PREFIX;

#[derive(Debug, thiserror::Error)]
pub enum OptimError {
    #[error("optimizer state lacks {0}")]
    Missing(String),
    #[error("optimizer state for {name} has shape {found:?}, the parameter {expected:?}")]
    Shape { name: String, expected: Vec<i64>, found: Vec<i64> },
    #[error("libtorch: {0}")]
    Torch(#[from] tch::TchError),
}

impl Adam {
    /// `params`: (name, tensor, learning rate); tensors must require gradients.
    pub fn new(params: Vec<(String, Tensor, f64)>, betas: (f64, f64), eps: f64) -> Self {
        let params = params
            .into_iter()
            .map(|(name, tensor, lr)| {
                let m = tensor.zeros_like().detach();
                let v = tensor.zeros_like().detach();
                Param { name, tensor, lr, m, v }
            })
            .collect();
        Adam { params, beta1: betas.0, beta2: betas.1, eps, step: 0 }
    }

    pub fn steps_taken(&self) -> i64 {
        self.step
    }

    pub fn parameter_count(&self) -> i64 {
        self.params.iter().map(|p| p.tensor.numel() as i64).sum()
    }

    pub fn zero_grad(&mut self) {
        for p in &mut self.params {
            p.tensor.zero_grad();
        }
    }

    /// The gradients, for the scaler to inspect and unscale.
    pub fn grads(&self) -> Vec<Tensor> {
        self.params.iter().map(|p| p.tensor.grad()).filter(|g| g.defined()).collect()
    }

    /// One Adam update with every module's rate times `lr_factor`.
    pub fn step(&mut self, lr_factor: f64) {
        self.step += 1;
        let t = self.step as i32;
        let bias1 = 1.0 - self.beta1.powi(t);
        let bias2 = 1.0 - self.beta2.powi(t);
        tch::no_grad(|| {
            for p in &mut self.params {
                let grad = p.tensor.grad();
                if !grad.defined() {
                    continue;
                }
                p.m.copy_(&(&p.m * self.beta1 + &grad * (1.0 - self.beta1)));
                p.v.copy_(&(&p.v * self.beta2 + (&grad * &grad) * (1.0 - self.beta2)));
                let denom = p.v.sqrt() / bias2.sqrt() + self.eps;
                let update = (&p.m / denom) * (p.lr * lr_factor / bias1);
                let _ = p.tensor.f_sub_(&update);
            }
        });
    }

    /// `optimizer.m.<name>`, `optimizer.v.<name>` and `optimizer.step`.
    pub fn state(&self) -> Vec<(String, Tensor)> {
        let mut out = Vec::with_capacity(self.params.len() * 2 + 1);
        for p in &self.params {
            out.push((format!("{STATE_PREFIX}m.{}", p.name), p.m.shallow_clone()));
            out.push((format!("{STATE_PREFIX}v.{}", p.name), p.v.shallow_clone()));
        }
        out.push((format!("{STATE_PREFIX}step"), Tensor::from_slice(&[self.step as f32])));
        out
    }

    /// Restores what [`Adam::state`] produced (for the same parameters).
    pub fn load_state(&mut self, tensors: &BTreeMap<String, Tensor>) -> Result<(), OptimError> {
        let get = |key: String| tensors.get(&key).ok_or(OptimError::Missing(key));
        let step = get(format!("{STATE_PREFIX}step"))?.f_double_value(&[0])?;
        for p in &mut self.params {
            for (which, target) in [("m", &mut p.m), ("v", &mut p.v)] {
                let source = get(format!("{STATE_PREFIX}{which}.{}", p.name))?;
                if source.size() != target.size() {
                    return Err(OptimError::Shape { name: p.name.clone(), expected: target.size(), found: source.size() });
                }
                tch::no_grad(|| target.f_copy_(&source.to_device(target.device())))?;
            }
        }
        self.step = step as i64;
        Ok(())
    }
}

/// Dynamic loss scaling for float16 autocast (PyTorch's `GradScaler` defaults): scale the
/// loss up so small gradients survive float16, unscale before the update, skip steps with
/// inf/NaN gradients and halve the scale, double it after 2000 clean steps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GradScaler {
    pub scale: f64,
    pub growth_interval: u32,
    pub clean_steps: u32,
}

impl Default for GradScaler {
    fn default() -> Self {
        GradScaler { scale: 65536.0, growth_interval: 2000, clean_steps: 0 }
    }
}

impl GradScaler {
    /// Unscales the gradients in place; returns false (and backs off) when any is not
    /// finite, in which case the caller must skip the optimizer step.
    pub fn unscale_and_check(&mut self, grads: &[Tensor]) -> bool {
        let finite = tch::no_grad(|| {
            grads.iter().all(|g| {
                let _ = g.shallow_clone().f_mul_scalar_(1.0 / self.scale);
                g.isfinite().all().int64_value(&[]) != 0
            })
        });
        if finite {
            self.clean_steps += 1;
            if self.clean_steps >= self.growth_interval {
                self.scale *= 2.0;
                self.clean_steps = 0;
            }
        } else {
            self.scale *= 0.5;
            self.clean_steps = 0;
        }
        finite
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    /// Reference: PyTorch Adam(lr=0.1) on f(x) = sum(x^2) from x = [1, -2], three steps,
    /// computed by hand from the update rule (m, v, bias corrections).
    #[test]
    fn matches_the_pytorch_update_rule() {
        let x = Tensor::from_slice(&[1.0f32, -2.0]).set_requires_grad(true);
        let mut adam = Adam::new(vec![("x".into(), x.shallow_clone(), 0.1)], (0.9, 0.999), 1e-8);
        let mut expected = [1.0f64, -2.0];
        let (mut m, mut v) = ([0f64; 2], [0f64; 2]);
        for t in 1..=3 {
            adam.zero_grad();
            (&x * &x).sum(Kind::Float).backward();
            adam.step(1.0);
            for i in 0..2 {
                let g = 2.0 * expected[i];
                m[i] = 0.9 * m[i] + 0.1 * g;
                v[i] = 0.999 * v[i] + 0.001 * g * g;
                let mhat = m[i] / (1.0 - 0.9f64.powi(t));
                let vhat = v[i] / (1.0 - 0.999f64.powi(t));
                expected[i] -= 0.1 * mhat / (vhat.sqrt() + 1e-8);
            }
        }
        for i in 0..2 {
            let got = x.double_value(&[i as i64]);
            assert!((got - expected[i]).abs() < 1e-5, "{got} vs {}", expected[i]);
        }
    }

    #[test]
    fn state_round_trips_so_a_resumed_run_continues_identically() {
        let run = |resume_after: Option<usize>| {
            let x = Tensor::from_slice(&[0.5f32, 3.0, -1.0]).set_requires_grad(true);
            let mut adam = Adam::new(vec![("x".into(), x.shallow_clone(), 0.05)], (0.9, 0.999), 1e-8);
            for step in 0..6 {
                if resume_after == Some(step) {
                    let saved: BTreeMap<String, Tensor> =
                        adam.state().into_iter().map(|(k, t)| (k, t.copy())).collect();
                    let weights = x.detach().copy();
                    let x2 = weights.set_requires_grad(true);
                    let mut fresh = Adam::new(vec![("x".into(), x2.shallow_clone(), 0.05)], (0.9, 0.999), 1e-8);
                    fresh.load_state(&saved).unwrap();
                    for _ in step..6 {
                        fresh.zero_grad();
                        (&x2 * &x2 * &x2).abs().sum(Kind::Float).backward();
                        fresh.step(1.0);
                    }
                    return Vec::<f32>::try_from(x2.detach()).unwrap();
                }
                adam.zero_grad();
                (&x * &x * &x).abs().sum(Kind::Float).backward();
                adam.step(1.0);
            }
            Vec::<f32>::try_from(x.detach()).unwrap()
        };
        assert_eq!(run(None), run(Some(3)));
        let mut empty = Adam::new(vec![("y".into(), Tensor::zeros([2], (Kind::Float, Device::Cpu)).set_requires_grad(true), 0.1)], (0.9, 0.999), 1e-8);
        assert!(matches!(empty.load_state(&BTreeMap::new()), Err(OptimError::Missing(_))));
    }

    #[test]
    fn schedule_and_scaler() {
        let s = Schedule { milestones: vec![150], gamma: 0.5 };
        assert_eq!((s.factor(0), s.factor(149), s.factor(150), s.factor(249)), (1.0, 1.0, 0.5, 0.5));
        let mut scaler = GradScaler { scale: 8.0, growth_interval: 2, clean_steps: 0 };
        let g = Tensor::from_slice(&[8.0f32, 16.0]);
        assert!(scaler.unscale_and_check(&[g.shallow_clone()]));
        assert_eq!(Vec::<f32>::try_from(&g).unwrap(), vec![1.0, 2.0]);
        assert!(scaler.unscale_and_check(&[Tensor::from_slice(&[1.0f32])]));
        assert_eq!(scaler.scale, 16.0, "grows after growth_interval clean steps");
        assert!(!scaler.unscale_and_check(&[Tensor::from_slice(&[f32::INFINITY])]));
        assert_eq!(scaler.scale, 8.0);
    }
}
