//! Image/voxel pairs from a dataset in Pix2Vox's ShapeNet layout (ours or real ShapeNet),
//! batched into tensors for training and evaluation.
//!
//! As upstream, one training item is one model; each epoch visits every model once and
//! picks `views` random renderings of it. Evaluation takes the first `views` renderings,
//! as the official test loader does, so results are repeatable.

use mono2mesh_catalog::dataset::{Dataset, DatasetError, Sample};
use mono2mesh_catalog::Rng;
use rayon::prelude::*;
use tch::{Device, Tensor};

use crate::augment::{augment_views, AugmentConfig};
use mono2mesh_vision::pix2vox_preprocess::{preprocess_image, InputKind, PreprocessError, INPUT_SIZE};

pub const VOXEL_SIDE: usize = 32;

/// Where a dataset lives: one root in our layout, or the three parts of a real ShapeNet
/// download (ShapeNetRendering, ShapeNetVox32 and the taxonomy JSON kept apart).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DatasetLocation {
    pub rendering_root: std::path::PathBuf,
    pub voxel_root: std::path::PathBuf,
    pub taxonomy_file: std::path::PathBuf,
}

impl DatasetLocation {
    /// `<root>/ShapeNetRendering`, `<root>/ShapeNetVox32`, `<root>/ShapeNet.json`.
    pub fn root(root: &std::path::Path) -> Self {
        use mono2mesh_catalog::dataset::{RENDERING_DIR, TAXONOMY_FILE, VOXEL_DIR};
        DatasetLocation {
            rendering_root: root.join(RENDERING_DIR),
            voxel_root: root.join(VOXEL_DIR),
            taxonomy_file: root.join(TAXONOMY_FILE),
        }
    }

    pub fn open(&self) -> Result<Dataset, DataError> {
        Ok(Dataset::open_parts(&self.rendering_root, &self.voxel_root, &self.taxonomy_file)?)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error(transparent)]
    Dataset(#[from] DatasetError),
    #[error("{model}: {source}")]
    Preprocess { model: String, source: PreprocessError },
    #[error("{model}: voxel grid is {dims:?}, Pix2Vox needs 32^3")]
    VoxelDims { model: String, dims: [usize; 3] },
    #[error("{0}")]
    Empty(String),
    #[error("libtorch: {0}")]
    Torch(#[from] tch::TchError),
}

/// The models of one split with their ground-truth voxels held in memory (128 KiB a model).
pub struct PairSet {
    samples: Vec<Sample>,
    voxels: Vec<Vec<f32>>,
    /// Each sample's rendering files, listed once at load (not re-read every batch).
    view_files: Vec<Vec<std::path::PathBuf>>,
    /// Models left out at load, with the reason.
    skipped: Vec<(Sample, String)>,
}

/// One batch, on the requested device.
pub struct Batch {
    /// `[B, V, 3, 224, 224]`
    pub images: Tensor,
    /// `[B, 32, 32, 32]`, 0 or 1
    pub voxels: Tensor,
    /// Indices into [`PairSet::samples`].
    pub indices: Vec<usize>,
}

impl PairSet {
    /// Reads every sample's voxel grid and view listing up front, so a broken model is
    /// reported before training starts rather than hours into it. A model whose voxels
    /// cannot be read, have the wrong size or that has no renderings is an error.
    pub fn load(dataset: &Dataset, samples: Vec<Sample>) -> Result<Self, DataError> {
        let set = Self::load_lenient(dataset, samples)?;
        match set.skipped.first() {
            Some((_, reason)) => Err(DataError::Empty(reason.clone())),
            None => Ok(set),
        }
    }

    /// Like [`PairSet::load`], but a broken model is left out and listed in
    /// [`PairSet::skipped`] (training on a large catalog should not die of one bad file).
    pub fn load_lenient(dataset: &Dataset, samples: Vec<Sample>) -> Result<Self, DataError> {
        let loaded: Vec<Result<(Vec<f32>, Vec<std::path::PathBuf>), DataError>> = samples
            .par_iter()
            .map(|s| {
                let grid = dataset.load_voxels(s)?;
                if grid.dims != [VOXEL_SIDE; 3] {
                    return Err(DataError::VoxelDims { model: s.model_id.clone(), dims: grid.dims });
                }
                let views = dataset.view_files(s)?;
                if views.is_empty() {
                    return Err(DataError::Empty(format!("model {} has no renderings", s.model_id)));
                }
                let occupancy = grid.data.iter().map(|&v| if v >= 0.5 { 1.0 } else { 0.0 }).collect();
                Ok((occupancy, views))
            })
            .collect();
        let mut set = PairSet { samples: Vec::new(), voxels: Vec::new(), view_files: Vec::new(), skipped: Vec::new() };
        for (sample, result) in samples.into_iter().zip(loaded) {
            match result {
                Ok((occupancy, views)) => {
                    set.samples.push(sample);
                    set.voxels.push(occupancy);
                    set.view_files.push(views);
                }
                Err(e) => {
                    let reason = format!("model {} ({}): {e}", sample.model_id, sample.taxonomy_name);
                    set.skipped.push((sample, reason));
                }
            }
        }
        Ok(set)
    }

    /// The samples at `indices`, in that order.
    pub fn subset(&self, indices: &[usize]) -> PairSet {
        PairSet {
            samples: indices.iter().map(|&i| self.samples[i].clone()).collect(),
            voxels: indices.iter().map(|&i| self.voxels[i].clone()).collect(),
            view_files: indices.iter().map(|&i| self.view_files[i].clone()).collect(),
            skipped: Vec::new(),
        }
    }

    /// Models left out by [`PairSet::load_lenient`], with the reason.
    pub fn skipped(&self) -> &[(Sample, String)] {
        &self.skipped
    }

    /// A sample's rendering files.
    pub fn view_files(&self, index: usize) -> &[std::path::PathBuf] {
        &self.view_files[index]
    }

    /// The renderings a training step takes for sample `index` out of its `available`
    /// ones (indices into its view files): the same draw as [`PairSet::training_batch`]
    /// makes for that seed and stream when all are available.
    pub fn training_views(&self, index: usize, available: &[usize], views: usize, seed: u64, stream: u64) -> Vec<usize> {
        let mut rng = Rng::derive(seed, "train-item", stream.wrapping_mul(1 << 32).wrapping_add(index as u64));
        choose_views(available.len(), views, &mut rng).into_iter().map(|k| available[k]).collect()
    }

    /// The renderings evaluation takes: the first `views`.
    pub fn eval_views(&self, index: usize, views: usize) -> Vec<usize> {
        (0..views).map(|v| v % self.view_files[index].len()).collect()
    }

    /// Ground truth of `indices` as a `[B, 32, 32, 32]` tensor.
    pub fn voxel_batch(&self, indices: &[usize], device: Device) -> Result<Tensor, DataError> {
        let voxel_flat: Vec<f32> = indices.iter().flat_map(|&i| self.voxels[i].iter().copied()).collect();
        let s = VOXEL_SIDE as i64;
        Ok(Tensor::f_from_slice(&voxel_flat)?.f_view([indices.len() as i64, s, s, s])?.to_device(device))
    }

    pub fn len(&self) -> usize {
        self.samples.len()
    }

    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    pub fn samples(&self) -> &[Sample] {
        &self.samples
    }

    /// A training batch: `views` random renderings of each model, augmented. `stream`
    /// names the randomness (e.g. the epoch), so a seed gives the same batches on any
    /// number of threads and after a resume.
    pub fn training_batch(
        &self,
        indices: &[usize],
        views: usize,
        augment: &AugmentConfig,
        seed: u64,
        stream: u64,
        device: Device,
    ) -> Result<Batch, DataError> {
        let per_sample: Vec<Vec<f32>> = indices
            .par_iter()
            .map(|&i| {
                let mut rng = Rng::derive(seed, "train-item", stream.wrapping_mul(1 << 32).wrapping_add(i as u64));
                let chosen = choose_views(self.view_files[i].len(), views, &mut rng);
                let images = self.load_images(i, &chosen)?;
                augment_views(&images, augment, &mut rng)
                    .map_err(|source| DataError::Preprocess { model: self.samples[i].model_id.clone(), source })
            })
            .collect::<Result<_, _>>()?;
        self.assemble(indices, per_sample, views, device)
    }

    /// An evaluation batch: the first `views` renderings, with the official test transform.
    pub fn eval_batch(&self, indices: &[usize], views: usize, device: Device) -> Result<Batch, DataError> {
        let per_sample: Vec<Vec<f32>> = indices
            .par_iter()
            .map(|&i| {
                let chosen = self.eval_views(i, views);
                let mut values = Vec::with_capacity(views * 3 * INPUT_SIZE * INPUT_SIZE);
                for image in self.load_images(i, &chosen)? {
                    let t = preprocess_image(&image, InputKind::Auto)
                        .map_err(|source| DataError::Preprocess { model: self.samples[i].model_id.clone(), source })?;
                    values.extend(Vec::<f32>::try_from(t.flatten(0, -1))?);
                }
                Ok(values)
            })
            .collect::<Result<_, DataError>>()?;
        self.assemble(indices, per_sample, views, device)
    }

    fn load_images(&self, i: usize, chosen: &[usize]) -> Result<Vec<image::DynamicImage>, DataError> {
        let files = &self.view_files[i];
        chosen
            .iter()
            .map(|&v| {
                let path = &files[v.min(files.len() - 1)];
                image::open(path).map_err(|source| DataError::Dataset(DatasetError::Image { path: path.clone(), source }))
            })
            .collect()
    }

    fn assemble(&self, indices: &[usize], per_sample: Vec<Vec<f32>>, views: usize, device: Device) -> Result<Batch, DataError> {
        let b = indices.len() as i64;
        let side = INPUT_SIZE as i64;
        let flat: Vec<f32> = per_sample.concat();
        let images = Tensor::f_from_slice(&flat)?.f_view([b, views as i64, 3, side, side])?.to_device(device);
        let voxels = self.voxel_batch(indices, device)?;
        Ok(Batch { images, voxels, indices: indices.to_vec() })
    }

    /// Ground truth of one sample as a flat `[x][y][z]` occupancy vector.
    pub fn voxels(&self, index: usize) -> &[f32] {
        &self.voxels[index]
    }
}

/// `count` distinct views out of `available` (with repeats only when there are too few),
/// as `random.sample` upstream.
fn choose_views(available: usize, count: usize, rng: &mut Rng) -> Vec<usize> {
    let mut pool: Vec<usize> = (0..available).collect();
    let mut chosen = Vec::with_capacity(count);
    while chosen.len() < count {
        if pool.is_empty() {
            pool = (0..available).collect();
        }
        chosen.push(pool.swap_remove(rng.below(pool.len())));
    }
    chosen
}

/// Epoch order: a seeded shuffle of `0..n`.
pub fn epoch_order(n: usize, seed: u64, epoch: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    let mut rng = Rng::derive(seed, "epoch-order", epoch as u64);
    for i in (1..n).rev() {
        order.swap(i, rng.below(i + 1));
    }
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn views_are_distinct_until_exhausted() {
        let mut rng = Rng::new(4);
        let mut v = choose_views(24, 5, &mut rng);
        v.sort();
        v.dedup();
        assert_eq!(v.len(), 5);
        assert_eq!(choose_views(2, 3, &mut rng).len(), 3);
        let order = epoch_order(10, 1, 0);
        let mut sorted = order.clone();
        sorted.sort();
        assert_eq!(sorted, (0..10).collect::<Vec<_>>());
        assert_eq!(order, epoch_order(10, 1, 0));
        assert_ne!(order, epoch_order(10, 1, 1));
    }
}
