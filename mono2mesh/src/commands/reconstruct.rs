//! `mono2mesh reconstruct`: images to 32^3 voxels with a Pix2Vox model file.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;
use mono2mesh_reconstruct::{write_outputs, ReconstructJob, ReconstructSettings, Reconstructor, DEFAULT_THRESHOLD};
use mono2mesh_vision::device::DeviceChoice;
use mono2mesh_vision::pix2vox_preprocess::InputKind;

#[derive(Debug, Args)]
pub struct ReconstructArgs {
    /// Pix2Vox model file (.safetensors), e.g. from `mono2mesh models import-pix2vox`
    #[arg(long)]
    model: PathBuf,
    /// auto, cpu, cuda or cuda:N
    #[arg(long, default_value = "auto")]
    device: DeviceChoice,
    /// Output directory: `voxels.binvox` and `probabilities.npy` go here for one object,
    /// or into one sub-directory per image (named after the file) for several
    #[arg(long)]
    out: PathBuf,
    /// Treat all images as views of one object and fuse them
    #[arg(long)]
    views: bool,
    /// Occupancy threshold for voxels.binvox
    #[arg(long, default_value_t = DEFAULT_THRESHOLD)]
    threshold: f32,
    /// render (ShapeNet-style 137x137 RGBA: the official transform), photo, or auto
    #[arg(long, default_value = "auto")]
    input_kind: InputKind,
    /// Most images per forward pass
    #[arg(long, default_value_t = 16)]
    batch: usize,
    /// Input images
    #[arg(required = true)]
    images: Vec<PathBuf>,
}

pub fn run(args: ReconstructArgs) -> anyhow::Result<()> {
    anyhow::ensure!((0.0..=1.0).contains(&args.threshold), "--threshold must lie in [0, 1]");
    let device = args.device.resolve()?;
    let reconstructor = Reconstructor::load(&args.model, device)
        .with_context(|| format!("loading model {}", args.model.display()))?;
    let images = args
        .images
        .iter()
        .map(|p| std::fs::read(p).with_context(|| format!("reading {}", p.display())))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let slices: Vec<&[u8]> = images.iter().map(Vec::as_slice).collect();
    let settings = ReconstructSettings { input_kind: args.input_kind, max_batch: args.batch, ..ReconstructSettings::default() };
    let groups: Vec<&[&[u8]]> = if args.views { vec![&slices[..]] } else { slices.chunks(1).collect() };
    let jobs: Vec<ReconstructJob> = groups.iter().map(|images| ReconstructJob { images }).collect();
    let results = reconstructor.reconstruct_batch(&jobs, &settings);
    let dirs = output_dirs(&args.out, &args.images, jobs.len());
    let mut failures = 0;
    for ((result, dir), group_index) in results.into_iter().zip(&dirs).zip(0..) {
        let label = if args.views { "views".to_string() } else { args.images[group_index].display().to_string() };
        match result {
            Ok(grid) => {
                write_outputs(dir, &grid, args.threshold).with_context(|| format!("writing {}", dir.display()))?;
                println!(
                    "{label}: {} of {} voxels >= {} -> {}",
                    grid.count_at_least(args.threshold),
                    grid.len(),
                    args.threshold,
                    dir.display()
                );
            }
            Err(e) => {
                failures += 1;
                eprintln!("{label}: {e}");
            }
        }
    }
    anyhow::ensure!(failures == 0, "{failures} of {} reconstructions failed", dirs.len());
    Ok(())
}

/// One directory per job: `out` itself for a single job, else `out/<file stem>` (with the
/// index appended when two inputs share a stem).
fn output_dirs(out: &Path, images: &[PathBuf], jobs: usize) -> Vec<PathBuf> {
    if jobs == 1 {
        return vec![out.to_path_buf()];
    }
    let stems: Vec<String> = images
        .iter()
        .map(|p| p.file_stem().map_or_else(|| "image".to_string(), |s| s.to_string_lossy().into_owned()))
        .collect();
    stems
        .iter()
        .enumerate()
        .map(|(i, stem)| {
            let shared = stems.iter().filter(|s| *s == stem).count() > 1;
            out.join(if shared { format!("{stem}-{i}") } else { stem.clone() })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_dirs_are_unique_per_image() {
        let images: Vec<PathBuf> = ["a/chair.png", "b/chair.png", "c/sofa.jpg"].iter().map(PathBuf::from).collect();
        let dirs = output_dirs(Path::new("out"), &images, 3);
        assert_eq!(dirs, vec![PathBuf::from("out/chair-0"), PathBuf::from("out/chair-1"), PathBuf::from("out/sofa")]);
        assert_eq!(output_dirs(Path::new("out"), &images, 1), vec![PathBuf::from("out")]);
    }
}
