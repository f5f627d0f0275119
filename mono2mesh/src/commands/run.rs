//! `mono2mesh run PHOTO... [-o DIR]`: the whole pipeline in this process, on local files,
//! with no server (the embedded default). See `crate::embedded`.

use std::path::PathBuf;

use clap::Args;
use mono2mesh_classify::{default_model_path, ClassifySettings, MODELS_DIR_ENV};
use mono2mesh_core::Category;
use mono2mesh_gate::{AspectPolicy, GateSettings};
use mono2mesh_geometry::export::MeshFormat;
use mono2mesh_reconstruct::registry::ModelRegistry;
use mono2mesh_reconstruct::{ReconstructSettings, DEFAULT_THRESHOLD};
use mono2mesh_refine::RefineSettings;
use mono2mesh_vision::device::DeviceChoice;

use super::mesh::SmoothMethod;
use crate::embedded::{run_pipeline, PhotoReport, PhotoStatus, RunOptions};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Aspect {
    /// Resize each axis to 600 (the paper).
    Stretch,
    /// Keep the aspect ratio and letterbox.
    Pad,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Photos to turn into meshes (JPEG, PNG, WebP, TIFF, BMP).
    #[arg(required = true)]
    photos: Vec<PathBuf>,
    /// Output directory: one folder per photo plus summary.json.
    #[arg(short, long, default_value = "out")]
    out: PathBuf,
    /// Mesh formats to write (comma-separated: glb, obj, ply, stl).
    #[arg(long, value_delimiter = ',', default_value = "glb")]
    formats: Vec<String>,
    /// Skip classification: every photo is of this category.
    #[arg(long)]
    category: Option<Category>,
    /// Model registry directory [default: $MONO2MESH_MODELS, else ./models].
    #[arg(long)]
    models: Option<PathBuf>,
    /// Classifier model file [default: <models>/classifiers/mobilenet_v2.safetensors].
    #[arg(long)]
    classifier: Option<PathBuf>,
    /// auto, cpu, cuda or cuda:N
    #[arg(long, default_value = "auto")]
    device: DeviceChoice,
    /// Gate: how to make the photo square (stretch as the paper, or pad).
    #[arg(long, value_enum, default_value_t = Aspect::Stretch)]
    aspect: Aspect,
    /// Category confidence below which a photo counts as unknown (then the general model is used if present).
    #[arg(long, default_value_t = ClassifySettings::default().min_confidence)]
    min_confidence: f32,
    /// Occupancy threshold for voxels.binvox.
    #[arg(long, default_value_t = DEFAULT_THRESHOLD)]
    threshold: f32,
    /// Marching-cubes level of the mesh surface.
    #[arg(long, default_value_t = RefineSettings::default().iso)]
    iso: f32,
    /// Mesh smoothing: laplacian (uniform, shrinks), taubin (keeps volume), hc (the paper's HC) or none.
    #[arg(long, value_enum, default_value_t = SmoothMethod::Laplacian)]
    smooth: SmoothMethod,
    /// Smoothing iterations (for Taubin: lambda/mu pass pairs).
    #[arg(long, default_value_t = 10)]
    iterations: u32,
    /// Do not render preview.png.
    #[arg(long)]
    no_preview: bool,
    /// Photos per classifier and Pix2Vox forward pass.
    #[arg(long, default_value_t = 8)]
    batch: usize,
    /// Print the summary as JSON instead of one line per photo.
    #[arg(long)]
    json: bool,
}

pub fn run(args: RunArgs) -> anyhow::Result<()> {
    let registry_dir = args
        .models
        .clone()
        .or_else(|| std::env::var_os(MODELS_DIR_ENV).map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("models"));
    let classifier_path = args.classifier.clone().unwrap_or_else(|| match &args.models {
        Some(dir) => dir.join(mono2mesh_classify::DEFAULT_CLASSIFIER),
        None => default_model_path(),
    });
    let formats = args.formats.iter().map(|f| MeshFormat::from_extension(f)).collect::<Result<Vec<_>, _>>()?;
    let smoothing = args.smooth.smoothing(args.iterations);
    let aspect = match args.aspect {
        Aspect::Stretch => AspectPolicy::Stretch,
        Aspect::Pad => AspectPolicy::Pad,
    };
    let options = RunOptions {
        out_dir: args.out.clone(),
        gate: GateSettings { aspect, ..GateSettings::default() },
        classify: ClassifySettings { min_confidence: args.min_confidence, ..ClassifySettings::default() },
        classifier_path,
        category: args.category,
        registry: ModelRegistry::new(registry_dir),
        device: args.device.resolve()?,
        reconstruct: ReconstructSettings::default(),
        threshold: args.threshold,
        refine: RefineSettings { iso: args.iso, smoothing, formats },
        preview: !args.no_preview,
        batch: args.batch,
    };
    let json = args.json;
    let reports = run_pipeline(&args.photos, &options, |report| {
        if !json {
            println!("{}", summary_line(report));
        }
    })?;
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
            let mesh = report.mesh.as_ref().map_or(String::new(), |m| format!(", {} triangles", m.triangles));
            let model = report.model.as_ref().map_or(String::new(), |m| format!(" ({:?} model)", m.role).to_lowercase());
            format!("done      {}: {category}{model}{mesh} -> {}/", report.input.display(), report.name)
        }
        PhotoStatus::Rejected => format!("rejected  {}: {}", report.input.display(), report.reasons.join("; ")),
        PhotoStatus::Failed => format!("failed    {}: {}", report.input.display(), report.reasons.join("; ")),
    }
}
