//! IoU evaluation as the official Pix2Vox test code computes it: per sample and threshold
//! `sum(pred >= t & gt) / sum(pred >= t | gt)`; the overall figure is the mean over all
//! samples (sample-weighted, not a mean of category means); the reported IoU is the best
//! single threshold of that overall mean.

use std::collections::BTreeMap;

use mono2mesh_geometry::iou::iou_at_thresholds;
use mono2mesh_geometry::VoxelGrid;
use serde::{Deserialize, Serialize};
use tch::Device;

use crate::data::{DataError, PairSet, VOXEL_SIDE};
use mono2mesh_vision::pix2vox::Pix2Vox;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalConfig {
    pub thresholds: Vec<f32>,
    /// Renderings per model (the first ones, as the official test loader takes).
    pub views: usize,
    pub batch_size: usize,
}

impl Default for EvalConfig {
    fn default() -> Self {
        EvalConfig { thresholds: mono2mesh_geometry::iou::DEFAULT_THRESHOLDS.to_vec(), views: 1, batch_size: 8 }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CategoryIou {
    pub taxonomy_id: String,
    pub samples: usize,
    /// Mean IoU at each threshold.
    pub iou: Vec<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalReport {
    pub thresholds: Vec<f32>,
    pub views: usize,
    pub samples: usize,
    /// By taxonomy name (e.g. `chair`), in name order.
    pub per_category: BTreeMap<String, CategoryIou>,
    /// Sample-weighted mean IoU at each threshold.
    pub overall: Vec<f64>,
    pub best_threshold: f32,
    pub best_iou: f64,
}

impl EvalReport {
    /// A plain-text table: one row per category and the overall row, one column per threshold.
    pub fn table(&self) -> String {
        let mut out = format!("{:<14} {:>7}", "category", "samples");
        for t in &self.thresholds {
            out.push_str(&format!("  {:>7}", format!("t={t}")));
        }
        out.push('\n');
        let row = |name: &str, samples: usize, ious: &[f64]| {
            let mut line = format!("{name:<14} {samples:>7}");
            for v in ious {
                line.push_str(&format!("  {v:>7.4}"));
            }
            line.push('\n');
            line
        };
        for (name, c) in &self.per_category {
            out.push_str(&row(name, c.samples, &c.iou));
        }
        out.push_str(&row("overall", self.samples, &self.overall));
        out.push_str(&format!("best: IoU {:.4} at threshold {}\n", self.best_iou, self.best_threshold));
        out
    }
}

/// Runs `net` (in eval mode) over every sample of `pairs`; `progress` gets the number of
/// samples done after each batch.
pub fn evaluate(
    net: &Pix2Vox,
    pairs: &PairSet,
    config: &EvalConfig,
    device: Device,
    progress: &mut dyn FnMut(usize),
) -> Result<EvalReport, DataError> {
    evaluate_with(pairs, config, progress, &mut |chunk| {
        let batch = pairs.eval_batch(chunk, config.views.max(1), device)?;
        Ok(net.infer(&batch.images).volume().shallow_clone())
    })
}

/// [`evaluate`] with any predictor: `predict` maps a chunk of sample indices to their
/// `[B, 32, 32, 32]` occupancy probabilities (e.g. from cached trunk features).
pub fn evaluate_with(
    pairs: &PairSet,
    config: &EvalConfig,
    progress: &mut dyn FnMut(usize),
    predict: &mut dyn FnMut(&[usize]) -> Result<tch::Tensor, DataError>,
) -> Result<EvalReport, DataError> {
    if pairs.is_empty() {
        return Err(DataError::Empty("nothing to evaluate: the split has no samples".into()));
    }
    let indices: Vec<usize> = (0..pairs.len()).collect();
    let mut per_sample: Vec<Vec<f64>> = Vec::with_capacity(pairs.len());
    let side = VOXEL_SIDE;
    for chunk in indices.chunks(config.batch_size.max(1)) {
        let volume = predict(chunk)?.to_device(Device::Cpu).to_kind(tch::Kind::Float);
        let values = Vec::<f32>::try_from(volume.flatten(0, -1))?;
        for (k, &i) in chunk.iter().enumerate() {
            let n = side * side * side;
            let mut prediction = VoxelGrid::new([side; 3]);
            prediction.data.copy_from_slice(&values[k * n..(k + 1) * n]);
            let mut truth = VoxelGrid::new([side; 3]);
            truth.data.copy_from_slice(pairs.voxels(i));
            // dims are equal by construction
            let ious = iou_at_thresholds(&prediction, &truth, &config.thresholds)
                .map_err(|e| DataError::Empty(e.to_string()))?;
            per_sample.push(ious.into_iter().map(f64::from).collect());
        }
        progress(per_sample.len());
    }
    Ok(summarise(pairs, &per_sample, config))
}

fn summarise(pairs: &PairSet, per_sample: &[Vec<f64>], config: &EvalConfig) -> EvalReport {
    let k = config.thresholds.len();
    let mean = |rows: &[&Vec<f64>]| -> Vec<f64> {
        (0..k).map(|t| rows.iter().map(|r| r[t]).sum::<f64>() / rows.len().max(1) as f64).collect()
    };
    let mut groups: BTreeMap<String, (String, Vec<&Vec<f64>>)> = BTreeMap::new();
    for (sample, ious) in pairs.samples().iter().zip(per_sample) {
        groups
            .entry(sample.taxonomy_name.clone())
            .or_insert_with(|| (sample.taxonomy_id.clone(), Vec::new()))
            .1
            .push(ious);
    }
    let per_category = groups
        .into_iter()
        .map(|(name, (taxonomy_id, rows))| (name, CategoryIou { taxonomy_id, samples: rows.len(), iou: mean(&rows) }))
        .collect();
    let all: Vec<&Vec<f64>> = per_sample.iter().collect();
    let overall = mean(&all);
    let (best, best_iou) = overall
        .iter()
        .enumerate()
        .fold((0, f64::MIN), |acc, (i, &v)| if v > acc.1 { (i, v) } else { acc });
    EvalReport {
        thresholds: config.thresholds.clone(),
        views: config.views,
        samples: per_sample.len(),
        per_category,
        overall,
        best_threshold: config.thresholds.get(best).copied().unwrap_or(0.0),
        best_iou: if best_iou == f64::MIN { 0.0 } else { best_iou },
    }
}
