//! `mono2mesh run PHOTO... [-o DIR]`: the whole pipeline in this process, on local files,
//! with no server (the embedded default). See `crate::embedded`.

use std::path::PathBuf;

use clap::Args;
use mono2mesh_classify::MODELS_DIR_ENV;
use mono2mesh_core::Category;

use super::size::SizeArgs;
use mono2mesh_gate::AspectPolicy;
use mono2mesh_geometry::export::MeshFormat;

use super::mesh::SmoothMethod;
use super::services::SettingsArgs;
use crate::embedded::{run_pipeline, PhotoReport, PhotoStatus, RunOptions, StageSettings};

/// Every stage setting comes from the one layered config the workers read (compiled
/// defaults, `--config FILE`, `MONO2MESH__*` environment, `--set`); the flags below are
/// shorthands that win over all of those.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Photos to turn into meshes (JPEG, PNG, WebP, TIFF, BMP).
    #[arg(required = true)]
    photos: Vec<PathBuf>,
    /// Output directory: one folder per photo plus summary.json.
    #[arg(short, long, default_value = "out")]
    out: PathBuf,
    #[command(flatten)]
    settings: SettingsArgs,
    /// Mesh formats to write (comma-separated: glb, obj, ply, stl) [config: refine.formats].
    #[arg(long, value_delimiter = ',')]
    formats: Vec<String>,
    /// Skip classification: every photo is of this category.
    #[arg(long)]
    category: Option<Category>,
    /// Every photo's real size (else each category's typical height).
    #[command(flatten)]
    size: SizeArgs,
    /// Model registry directory [default: $MONO2MESH_MODELS, else models.registry].
    #[arg(long)]
    models: Option<PathBuf>,
    /// Classifier model file [default: <models>/classifiers/mobilenet_v2.safetensors].
    #[arg(long)]
    classifier: Option<PathBuf>,
    /// auto, cpu, cuda or cuda:N, for classify and reconstruct [config: classify.device, reconstruct.device].
    #[arg(long)]
    device: Option<String>,
    /// Gate: how to make the photo square (stretch as the paper, or pad) [config: gate.aspect].
    #[arg(long, value_enum)]
    aspect: Option<AspectPolicy>,
    /// Category confidence below which a photo is rejected as unknown [config: classify.min_confidence].
    #[arg(long)]
    min_confidence: Option<f32>,
    /// Occupancy threshold for voxels.binvox [config: reconstruct.threshold].
    #[arg(long)]
    threshold: Option<f32>,
    /// Marching-cubes level of the mesh surface on the probabilities [config: refine.iso].
    #[arg(long)]
    iso: Option<f32>,
    /// Most triangles per mesh; larger meshes are simplified (meshoptimizer) [config: refine.max_triangles].
    #[arg(long)]
    max_triangles: Option<usize>,
    /// Mesh smoothing: laplacian (uniform, shrinks), taubin (keeps volume), hc (the paper's HC) or none [config: refine.smoothing].
    #[arg(long, value_enum)]
    smooth: Option<SmoothMethod>,
    /// Smoothing iterations (for Taubin: lambda/mu pass pairs); with --smooth.
    #[arg(long, default_value_t = 10)]
    iterations: u32,
    /// Do not render preview.png [config: refine.preview].
    #[arg(long)]
    no_preview: bool,
    /// Leave meshes grey: no vertex colours from the photo [config: refine.colour].
    #[arg(long)]
    no_colour: bool,
    /// Levels of detail: extra GLBs (mesh_lod1.glb, ...) at these fractions of the triangles, e.g. 0.5,0.25 [config: refine.lods].
    #[arg(long, value_delimiter = ',')]
    lods: Vec<f32>,
    /// Photos per classifier and Pix2Vox forward pass [config: classify.batch_size, reconstruct.batch_size].
    #[arg(long)]
    batch: Option<usize>,
    /// Print the summary as JSON instead of one line per photo.
    #[arg(long)]
    json: bool,
}

impl RunArgs {
    /// The layered settings with this command's flags applied last.
    fn options(&self) -> anyhow::Result<RunOptions> {
        let mut settings = self.settings.load()?;
        // Kept from before the layered config: MONO2MESH_MODELS names the registry.
        if let Some(dir) = self.models.clone().or_else(|| std::env::var_os(MODELS_DIR_ENV).map(PathBuf::from)) {
            settings.models.registry = dir.to_string_lossy().into_owned();
        }
        let mut stages = StageSettings::from_config(&settings)?;
        if let Some(aspect) = self.aspect {
            stages.gate.aspect = aspect;
        }
        if let Some(path) = &self.classifier {
            stages.classify.model = Some(path.clone());
        }
        if let Some(device) = &self.device {
            stages.classify.device = device.clone();
            stages.reconstruct.device = device.clone();
        }
        if let Some(min_confidence) = self.min_confidence {
            stages.classify.min_confidence = min_confidence;
        }
        if let Some(batch) = self.batch {
            stages.classify.batch_size = batch;
            stages.reconstruct.batch_size = batch;
        }
        if let Some(threshold) = self.threshold {
            stages.reconstruct.threshold = threshold;
        }
        if let Some(iso) = self.iso {
            stages.refine.iso = iso;
        }
        if let Some(max_triangles) = self.max_triangles {
            stages.refine.max_triangles = max_triangles;
        }
        if let Some(smooth) = self.smooth {
            stages.refine.smoothing = smooth.smoothing(self.iterations);
        }
        if self.no_preview {
            stages.refine.preview = false;
        }
        if self.no_colour {
            stages.refine.colour = false;
        }
        if !self.lods.is_empty() {
            stages.refine.lods = self.lods.clone();
        }
        if !self.formats.is_empty() {
            stages.refine.formats =
                self.formats.iter().map(|f| MeshFormat::from_extension(f)).collect::<Result<Vec<_>, _>>()?;
        }
        // The flags went past the stages' checks at load time: the same checks again.
        stages.validate()?;
        Ok(RunOptions {
            out_dir: self.out.clone(),
            settings,
            stages,
            category: self.category,
            size: self.size.size()?,
        })
    }
}

pub fn run(args: RunArgs) -> anyhow::Result<()> {
    let options = args.options()?;
    let json = args.json;
    // On a terminal a bar over the photos (stderr); piped, only the per-photo lines.
    let bar = indicatif::ProgressBar::new(args.photos.len() as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} photos  {per_sec}  eta {eta}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    if args.photos.len() < 2 {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let reports = run_pipeline(&args.photos, &options, |report| {
        if !json {
            bar.suspend(|| println!("{}", summary_line(report)));
        }
        bar.inc(1);
    })?;
    bar.finish_and_clear();
    let summary = serde_json::json!({
        "out": options.out_dir,
        "done": reports.iter().filter(|r| r.status == PhotoStatus::Done).count(),
        "rejected": reports.iter().filter(|r| r.status == PhotoStatus::Rejected).count(),
        "failed": reports.iter().filter(|r| r.status == PhotoStatus::Failed).count(),
        "photos": reports,
    });
    std::fs::write(options.out_dir.join("summary.json"), serde_json::to_vec_pretty(&summary)?)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        println!(
            "{} done, {} rejected, {} failed; results in {}",
            summary["done"], summary["rejected"], summary["failed"],
            options.out_dir.display()
        );
    }
    // Rejections are verdicts on the photos, not errors; our own failures are.
    if reports.iter().any(|r| r.status == PhotoStatus::Failed) {
        anyhow::bail!("some photos failed (see their report.json)");
    }
    Ok(())
}

fn summary_line(report: &PhotoReport) -> String {
    let category = report.category.map_or_else(|| "-".to_string(), |c| c.to_string());
    match report.status {
        PhotoStatus::Done => {
            let mesh = report.mesh.as_ref().map_or(String::new(), |m| {
                let review = if m.quality.needs_review { ", needs review" } else { "" };
                let colour = match &m.colour {
                    Some(mono2mesh_refine::ColourReport::Painted { .. }) => ", coloured",
                    Some(mono2mesh_refine::ColourReport::Skipped { .. }) => ", grey (see mesh.json)",
                    None => "",
                };
                format!(", {} triangles{colour}, confidence {:.2}{review}", m.triangles, m.quality.confidence)
            });
            let model = report.model.as_ref().map_or(String::new(), |m| format!(" ({:?} model)", m.role).to_lowercase());
            format!("done      {}: {category}{model}{mesh} -> {}/", report.input.display(), report.name)
        }
        PhotoStatus::Rejected => format!("rejected  {}: {}", report.input.display(), report.reasons.join("; ")),
        PhotoStatus::Failed => format!("failed    {}: {}", report.input.display(), report.reasons.join("; ")),
    }
}
