//! The reconstruct stage as a plain library function: image bytes and settings in, a 32^3
//! occupancy-probability [`VoxelGrid`] out.
//!
//! A [`Reconstructor`] holds one Pix2Vox model (a model file, see
//! `mono2mesh_vision::pix2vox_model`) on one device. Each job is one object seen in one or
//! more images (views, fused by the network's context-aware merger). Several jobs are run in
//! one forward pass when they have the same number of views.

/// The probability grid file format, shared with the refine stage (which links no libtorch).
pub use mono2mesh_geometry::npy;
pub mod handler;
pub mod registry;
pub mod settings;

use std::path::Path;

use mono2mesh_core::ErrorClass;
use mono2mesh_geometry::VoxelGrid;
use mono2mesh_vision::pix2vox::Variant;
use mono2mesh_vision::pix2vox_model::{ModelMetadata, Pix2VoxModel, Pix2VoxModelError};
use mono2mesh_vision::pix2vox_preprocess::{preprocess_bytes, InputKind, PreprocessError};
use mono2mesh_vision::precision::{with_cpu_bf16, Precision};
use tch::{Device, Kind, Tensor};

/// Side of the output grid.
pub const GRID_SIZE: usize = 32;
/// Default occupancy threshold for binary outputs (the official evaluation's usual best).
pub const DEFAULT_THRESHOLD: f32 = 0.3;

#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ReconstructSettings {
    /// How to read the images (render transform, photo path, or decide per image).
    pub input_kind: InputKind,
    /// Most objects per forward pass (bounds memory; 0 is treated as 1).
    pub max_batch: usize,
    /// Arithmetic of the forward pass on a CPU: `auto` runs bf16 autocast where the CPU
    /// has native bf16 (about twice as fast; the shipped pack is trained that way), f32
    /// elsewhere. GPUs always run float32 here.
    #[serde(default)]
    pub precision: Precision,
}

impl Default for ReconstructSettings {
    fn default() -> Self {
        ReconstructSettings { input_kind: InputKind::Auto, max_batch: 8, precision: Precision::Auto }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ReconstructError {
    #[error("image {index}: {source}")]
    Image { index: usize, source: PreprocessError },
    #[error("a job needs at least one image")]
    NoImages,
    #[error(transparent)]
    Model(#[from] Pix2VoxModelError),
    #[error("libtorch: {0}")]
    Torch(#[from] tch::TchError),
}

impl ReconstructError {
    /// How the runtime should treat this failure: unreadable images are the user's to fix,
    /// a bad model file is permanent, a libtorch failure (e.g. device memory) may pass.
    pub fn class(&self) -> ErrorClass {
        match self {
            ReconstructError::Image { .. } | ReconstructError::NoImages => ErrorClass::Rejection,
            ReconstructError::Model(_) => ErrorClass::Permanent,
            ReconstructError::Torch(_) => ErrorClass::Retryable,
        }
    }
}

/// One object to reconstruct: its images (encoded bytes), all views of the same object.
#[derive(Debug, Clone, Copy)]
pub struct ReconstructJob<'a> {
    pub images: &'a [&'a [u8]],
}

/// A loaded model ready to reconstruct.
#[derive(Debug)]
pub struct Reconstructor {
    model: Pix2VoxModel,
    device: Device,
}

impl Reconstructor {
    /// Load a model file onto `device`.
    pub fn load(path: impl AsRef<Path>, device: Device) -> Result<Self, ReconstructError> {
        Ok(Reconstructor { model: Pix2VoxModel::load(path, device, None)?, device })
    }

    /// Wrap an already loaded model (it stays on the device its variables are on).
    pub fn from_model(model: Pix2VoxModel) -> Self {
        let device = model.vs.device();
        Reconstructor { model, device }
    }

    pub fn metadata(&self) -> &ModelMetadata {
        &self.model.metadata
    }

    pub fn variant(&self) -> Variant {
        self.model.metadata.variant
    }

    /// Reconstruct one object from one or more views.
    pub fn reconstruct(&self, images: &[&[u8]], settings: &ReconstructSettings) -> Result<VoxelGrid, ReconstructError> {
        self.reconstruct_batch(&[ReconstructJob { images }], settings)
            .pop()
            .unwrap_or(Err(ReconstructError::NoImages))
    }

    /// Reconstruct several objects; one result per job, in order. Jobs with the same number
    /// of views share forward passes of up to `max_batch` objects.
    pub fn reconstruct_batch(
        &self,
        jobs: &[ReconstructJob<'_>],
        settings: &ReconstructSettings,
    ) -> Vec<Result<VoxelGrid, ReconstructError>> {
        self.reconstruct_batch_timed(jobs, settings).0
    }

    /// [`Self::reconstruct_batch`], also returning the time spent in the network's forward
    /// passes on the device (inputs moved there, outputs back: the copy back waits for
    /// the device, so on a GPU this is GPU time, not the time to queue the kernels).
    pub fn reconstruct_batch_timed(
        &self,
        jobs: &[ReconstructJob<'_>],
        settings: &ReconstructSettings,
    ) -> (Vec<Result<VoxelGrid, ReconstructError>>, std::time::Duration) {
        let mut device_time = std::time::Duration::ZERO;
        let mut results: Vec<Option<Result<VoxelGrid, ReconstructError>>> = jobs.iter().map(|_| None).collect();
        // preprocess: per job a [V, 3, 224, 224] tensor, or its error
        let mut ready: Vec<(usize, Tensor)> = Vec::new();
        for (i, job) in jobs.iter().enumerate() {
            match preprocess_job(job, settings.input_kind) {
                Ok(t) => ready.push((i, t)),
                Err(e) => results[i] = Some(Err(e)),
            }
        }
        // group by view count, keep job order within a group
        let mut view_counts: Vec<i64> = ready.iter().map(|(_, t)| t.size()[0]).collect();
        view_counts.sort_unstable();
        view_counts.dedup();
        for views in view_counts {
            let group: Vec<&(usize, Tensor)> = ready.iter().filter(|(_, t)| t.size()[0] == views).collect();
            for chunk in group.chunks(settings.max_batch.max(1)) {
                let tensors: Vec<&Tensor> = chunk.iter().map(|(_, t)| t).collect();
                let started = std::time::Instant::now();
                let forward = self.forward(&tensors, settings.precision.uses_bf16(self.device));
                device_time += started.elapsed();
                match forward {
                    Ok(grids) => {
                        for ((i, _), grid) in chunk.iter().zip(grids) {
                            results[*i] = Some(Ok(grid));
                        }
                    }
                    Err(e) => {
                        let message = e.to_string();
                        for (i, _) in chunk {
                            results[*i] = Some(Err(ReconstructError::Torch(tch::TchError::Torch(message.clone()))));
                        }
                    }
                }
            }
        }
        (results.into_iter().map(|r| r.unwrap_or(Err(ReconstructError::NoImages))).collect(), device_time)
    }

    /// The device the model runs on.
    pub fn device(&self) -> Device {
        self.device
    }

    /// One forward pass over `[V, 3, 224, 224]` inputs with the same V.
    fn forward(&self, inputs: &[&Tensor], bf16: bool) -> Result<Vec<VoxelGrid>, tch::TchError> {
        let batch = Tensor::f_stack(inputs, 0)?.f_to_device(self.device)?;
        // The network's layers use tch's panicking calls; a libtorch failure there (device
        // out of memory, a driver error) must fail these jobs, not the worker.
        let output = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| with_cpu_bf16(bf16, || self.model.net.infer(&batch))))
            .map_err(|panic| tch::TchError::Torch(format!("inference failed: {}", panic_message(&panic))))?;
        let volume = output.volume().f_to_device(Device::Cpu)?.f_to_kind(Kind::Float)?;
        let per_grid = GRID_SIZE * GRID_SIZE * GRID_SIZE;
        let n = inputs.len();
        let mut values = vec![0f32; n * per_grid];
        volume.f_contiguous()?.f_copy_data(&mut values, n * per_grid)?;
        Ok(values.chunks(per_grid).map(probabilities_to_grid).collect())
    }
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .map_or_else(|| "libtorch panicked".to_string(), |m| m.lines().next().unwrap_or_default().to_string())
}

fn preprocess_job(job: &ReconstructJob<'_>, kind: InputKind) -> Result<Tensor, ReconstructError> {
    if job.images.is_empty() {
        return Err(ReconstructError::NoImages);
    }
    let views = job
        .images
        .iter()
        .enumerate()
        .map(|(index, bytes)| preprocess_bytes(bytes, kind).map_err(|source| ReconstructError::Image { index, source }))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Tensor::stack(&views, 0))
}

/// The network's `[x][y][z]` output as a grid in the centred unit cube
/// (voxel centres at `(i + 0.5) / 32 - 0.5`), where ShapeNet's normalised models sit.
pub fn probabilities_to_grid(values: &[f32]) -> VoxelGrid {
    let mut grid = VoxelGrid::new([GRID_SIZE; 3]);
    grid.translate = [-0.5; 3];
    grid.scale = 1.0;
    grid.data.copy_from_slice(values);
    grid
}

/// Write `voxels.binvox` (occupied where probability >= `threshold`) and
/// `probabilities.npy` (float32 `[32, 32, 32]`, `[x][y][z]`) into `dir`.
pub fn write_outputs(dir: &Path, grid: &VoxelGrid, threshold: f32) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join("voxels.binvox"), grid.to_binvox_bytes(threshold))?;
    std::fs::write(dir.join("probabilities.npy"), npy::grid_to_npy(grid))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use mono2mesh_vision::pix2vox_model::Provenance;

    fn png(width: u32, height: u32, shade: u8) -> Vec<u8> {
        let img = image::RgbaImage::from_fn(width, height, |x, y| {
            let inside = (x as i64 - width as i64 / 2).abs() < 30 && (y as i64 - height as i64 / 2).abs() < 40;
            if inside {
                image::Rgba([shade, 255 - shade, 90, 255])
            } else {
                image::Rgba([0, 0, 0, 0])
            }
        });
        let mut out = std::io::Cursor::new(Vec::new());
        img.write_to(&mut out, image::ImageFormat::Png).unwrap();
        out.into_inner()
    }

    fn reconstructor() -> Reconstructor {
        tch::manual_seed(7);
        let metadata = ModelMetadata::official(Variant::F, None, Provenance::of_kind("test"));
        Reconstructor::from_model(Pix2VoxModel::new(metadata, Device::Cpu))
    }

    #[test]
    fn batched_jobs_equal_one_by_one_and_bad_images_fail_alone() {
        let r = reconstructor();
        let settings = ReconstructSettings { max_batch: 2, ..Default::default() };
        let (a, b, c) = (png(137, 137, 10), png(137, 137, 200), png(137, 137, 120));
        let garbage: &[u8] = b"not an image";
        let one_a = [a.as_slice()];
        let one_b = [b.as_slice()];
        let two = [b.as_slice(), c.as_slice()];
        let bad = [garbage];
        let jobs = [
            ReconstructJob { images: &one_a },
            ReconstructJob { images: &two },
            ReconstructJob { images: &bad },
            ReconstructJob { images: &one_b },
        ];
        let results = r.reconstruct_batch(&jobs, &settings);
        assert_eq!(results.len(), 4);
        let err = results[2].as_ref().unwrap_err();
        assert_eq!(err.class(), ErrorClass::Rejection);
        // job 0 ran in a batch of two (with job 3): alone it must give the same volume
        let alone = r.reconstruct(jobs[0].images, &settings).unwrap();
        let batched = results[0].as_ref().unwrap();
        let diff = alone.data.iter().zip(&batched.data).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
        assert!(diff < 1e-5, "batched result differs by {diff}");
        for result in [&results[0], &results[1], &results[3]] {
            let grid = result.as_ref().unwrap();
            assert_eq!(grid.dims, [32, 32, 32]);
            assert!(grid.data.iter().all(|v| (0.0..=1.0).contains(v)));
        }
        // different inputs give different volumes
        let (ra, rb) = (results[0].as_ref().unwrap(), results[3].as_ref().unwrap());
        assert!(ra.data.iter().zip(&rb.data).any(|(x, y)| (x - y).abs() > 1e-6));
        assert!(matches!(r.reconstruct(&[], &settings), Err(ReconstructError::NoImages)));
    }

    #[test]
    fn a_libtorch_failure_in_the_network_is_an_error_not_a_crash() {
        let r = reconstructor();
        // Four channels: the first convolution fails inside libtorch.
        let bad = Tensor::zeros([1, 4, 224, 224], (Kind::Float, Device::Cpu));
        let err = r.forward(&[&bad], false).unwrap_err();
        assert!(err.to_string().contains("inference failed"), "{err}");
        assert_eq!(ReconstructError::Torch(err).class(), ErrorClass::Retryable);
        // The model still works afterwards.
        let good = Tensor::zeros([1, 3, 224, 224], (Kind::Float, Device::Cpu));
        assert_eq!(r.forward(&[&good], false).unwrap().len(), 1);
    }

    #[test]
    fn outputs_are_written_in_xyz_order() {
        let mut values = vec![0f32; 32 * 32 * 32];
        values[(3 * 32 + 5) * 32 + 7] = 0.9; // x=3, y=5, z=7
        let grid = probabilities_to_grid(&values);
        assert_eq!(grid.get(3, 5, 7), 0.9);
        let dir = tempfile::tempdir().unwrap();
        write_outputs(dir.path(), &grid, DEFAULT_THRESHOLD).unwrap();
        let back = VoxelGrid::read_binvox(dir.path().join("voxels.binvox")).unwrap();
        assert_eq!(back.count_at_least(0.5), 1);
        assert_eq!(back.get(3, 5, 7), 1.0);
        let npy = std::fs::read(dir.path().join("probabilities.npy")).unwrap();
        assert_eq!(npy::npy_to_grid_values(&npy).unwrap(), values);
    }
}
