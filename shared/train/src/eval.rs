//! IoU evaluation as the official Pix2Vox test code computes it: per sample and threshold
//! `sum(pred >= t & gt) / sum(pred >= t | gt)`; the overall figure is the mean over all
//! samples (sample-weighted, not a mean of category means); the reported IoU is the best
//! single threshold of that overall mean.
//!
//! With [`EvalConfig::surface`] set, each sample's surfaces are compared too
//! ([`mono2mesh_geometry::surface`]: Chamfer-L1, F-score at 1% and 2% of the bounding-box
//! diagonal, normal consistency): the prediction meshed by marching cubes at the
//! surface level (the refine stage's, before smoothing) against the ground-truth voxels
//! meshed at 0.5, both in the 32^3 voxel frame. A prediction with no surface at that
//! level scores F = 0 and normal consistency 0, is left out of the Chamfer mean, and is
//! counted.

use std::collections::BTreeMap;

use mono2mesh_geometry::iou::iou_at_thresholds;
use mono2mesh_geometry::marching_cubes::marching_cubes;
use mono2mesh_geometry::surface::{self, SurfaceMetrics};
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
    /// Surface metrics as well as IoU (off for the per-epoch validation, where only IoU
    /// picks the best epoch).
    #[serde(default)]
    pub surface: Option<SurfaceConfig>,
}

impl Default for EvalConfig {
    fn default() -> Self {
        EvalConfig { thresholds: mono2mesh_geometry::iou::DEFAULT_THRESHOLDS.to_vec(), views: 1, batch_size: 8, surface: None }
    }
}

/// How predictions are meshed and sampled for the surface metrics.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SurfaceConfig {
    /// Marching-cubes level on the predicted probabilities (the refine stage's `iso`).
    pub iso: f32,
    /// Area-uniform samples per surface.
    pub samples: usize,
}

impl Default for SurfaceConfig {
    fn default() -> Self {
        SurfaceConfig { iso: 0.5, samples: surface::DEFAULT_SAMPLES }
    }
}

/// Mean surface metrics over a group of samples.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SurfaceScore {
    pub samples: usize,
    /// Predictions with no surface at the level (F = 0, normal consistency 0, no Chamfer).
    pub empty: usize,
    /// Mean over the non-empty predictions, in fractions of the ground truth's diagonal.
    pub chamfer_l1: f64,
    pub fscore_1: f64,
    pub fscore_2: f64,
    pub normal_consistency: f64,
}

impl SurfaceScore {
    fn of(rows: &[&Option<SurfaceMetrics>]) -> SurfaceScore {
        let scored: Vec<&SurfaceMetrics> = rows.iter().filter_map(|r| r.as_ref()).collect();
        let n = rows.len().max(1) as f64;
        let mean_all = |f: fn(&SurfaceMetrics) -> f64| scored.iter().map(|m| f(m)).sum::<f64>() / n;
        SurfaceScore {
            samples: rows.len(),
            empty: rows.len() - scored.len(),
            chamfer_l1: scored.iter().map(|m| m.chamfer_l1).sum::<f64>() / scored.len().max(1) as f64,
            fscore_1: mean_all(|m| m.fscore_1),
            fscore_2: mean_all(|m| m.fscore_2),
            normal_consistency: mean_all(|m| m.normal_consistency),
        }
    }
}

/// The surface half of a report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SurfaceReport {
    pub iso: f32,
    pub samples_per_surface: usize,
    pub per_category: BTreeMap<String, SurfaceScore>,
    pub overall: SurfaceScore,
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
    /// Surface metrics, when they were asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub surface: Option<SurfaceReport>,
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
        if let Some(surface) = &self.surface {
            out.push_str(&format!(
                "\nsurfaces (prediction meshed at {}, {} samples each; Chamfer-L1 in 1e-3 of the diagonal)\n",
                surface.iso, surface.samples_per_surface
            ));
            out.push_str(&format!("{:<14} {:>7}  {:>8}  {:>6}  {:>6}  {:>6}  {:>5}\n", "category", "samples", "Chamfer", "F@1%", "F@2%", "NC", "empty"));
            let row = |name: &str, s: &SurfaceScore| {
                format!(
                    "{name:<14} {:>7}  {:>8.2}  {:>6.3}  {:>6.3}  {:>6.3}  {:>5}\n",
                    s.samples,
                    1e3 * s.chamfer_l1,
                    s.fscore_1,
                    s.fscore_2,
                    s.normal_consistency,
                    s.empty
                )
            };
            for (name, score) in &surface.per_category {
                out.push_str(&row(name, score));
            }
            out.push_str(&row("overall", &surface.overall));
        }
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

/// The nearest-training-shape baseline (Tatarchenko et al. 2019, "What do single-view 3D
/// reconstruction networks learn?"): each test image is described by the evaluated
/// network's own encoder features (first `config.views` renderings, flattened and
/// L2-normalised, views averaged), matched by cosine similarity against every image of
/// `gallery` (the training split), and the nearest training model's ground-truth voxels
/// are its prediction, scored exactly as the network is. A network that does not beat
/// this has learned to recognise, not to reconstruct.
pub fn evaluate_retrieval(
    net: &Pix2Vox,
    gallery: &PairSet,
    pairs: &PairSet,
    config: &EvalConfig,
    device: Device,
    progress: &mut dyn FnMut(usize),
) -> Result<EvalReport, DataError> {
    if gallery.is_empty() {
        return Err(DataError::Empty("no training samples to retrieve from".into()));
    }
    let views = config.views.max(1);
    let features = |set: &PairSet, chunk: &[usize]| -> Result<tch::Tensor, DataError> {
        let batch = set.eval_batch(chunk, views, device)?;
        let encoded = net.infer(&batch.images).encoder_features.shallow_clone();
        // [B, V, C, H, W] -> [B, C*H*W], views averaged, unit length.
        let flat = encoded.flatten(2, -1).mean_dim(1, false, None).to_kind(tch::Kind::Float);
        let norm = flat.norm_scalaropt_dim(2.0, [1], true).clamp_min(1e-12);
        Ok(flat / norm)
    };
    let all: Vec<usize> = (0..gallery.len()).collect();
    let mut known = Vec::new();
    for chunk in all.chunks(config.batch_size.max(1)) {
        known.push(features(gallery, chunk)?);
    }
    let known = tch::Tensor::cat(&known, 0);
    let side = VOXEL_SIDE as i64;
    evaluate_with(pairs, config, progress, &mut |chunk| {
        let nearest = features(pairs, chunk)?.matmul(&known.transpose(0, 1)).argmax(1, false).to_device(Device::Cpu);
        let nearest = Vec::<i64>::try_from(nearest)?;
        let voxels: Vec<f32> = nearest.iter().flat_map(|&j| gallery.voxels(j as usize).iter().copied()).collect();
        Ok(tch::Tensor::f_from_slice(&voxels)?.f_view([chunk.len() as i64, side, side, side])?)
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
    let mut per_sample_surface: Vec<Option<SurfaceMetrics>> = Vec::with_capacity(pairs.len());
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
            if let Some(surface) = &config.surface {
                per_sample_surface.push(surface_metrics(&prediction, &truth, surface, i)?);
            }
        }
        progress(per_sample.len());
    }
    let mut report = summarise(pairs, &per_sample, config);
    if let Some(surface) = &config.surface {
        report.surface = Some(summarise_surface(pairs, &per_sample_surface, surface));
    }
    Ok(report)
}

/// One sample's surfaces; `None` when the prediction has no surface at the level. The
/// ground truth always has one (a model with no voxels is refused when the data loads),
/// so its failure is an error.
fn surface_metrics(
    prediction: &VoxelGrid,
    truth: &VoxelGrid,
    config: &SurfaceConfig,
    index: usize,
) -> Result<Option<SurfaceMetrics>, DataError> {
    let truth_mesh = marching_cubes(truth, 0.5).map_err(|e| DataError::Empty(format!("ground truth {index}: {e}")))?;
    let Ok(predicted_mesh) = marching_cubes(prediction, config.iso) else { return Ok(None) };
    if predicted_mesh.triangles.is_empty() {
        return Ok(None);
    }
    match surface::compare(&predicted_mesh, &truth_mesh, config.samples, index as u64) {
        Ok(metrics) => Ok(Some(metrics)),
        Err(surface::SurfaceError::NoArea { which: "prediction" }) => Ok(None),
        Err(e) => Err(DataError::Empty(format!("surfaces of sample {index}: {e}"))),
    }
}

fn summarise_surface(pairs: &PairSet, per_sample: &[Option<SurfaceMetrics>], config: &SurfaceConfig) -> SurfaceReport {
    let mut groups: BTreeMap<String, Vec<&Option<SurfaceMetrics>>> = BTreeMap::new();
    for (sample, metrics) in pairs.samples().iter().zip(per_sample) {
        groups.entry(sample.taxonomy_name.clone()).or_default().push(metrics);
    }
    let all: Vec<&Option<SurfaceMetrics>> = per_sample.iter().collect();
    SurfaceReport {
        iso: config.iso,
        samples_per_surface: config.samples,
        per_category: groups.into_iter().map(|(name, rows)| (name, SurfaceScore::of(&rows))).collect(),
        overall: SurfaceScore::of(&all),
    }
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
        surface: None,
    }
}
