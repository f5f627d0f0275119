//! `mono2mesh sheet`: one picture of a `run`: per photo a row of the standardised photo,
//! the mesh preview and, where the ground truth is known (a synthetic catalog made with the
//! photos' seed), the true shape's preview; plus the IoU of each prediction against it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;
use image::{imageops, RgbImage};
use mono2mesh_geometry::VoxelGrid;


#[derive(Debug, Args)]
pub struct SheetArgs {
    /// The output directory of `mono2mesh run` (with summary.json)
    run: PathBuf,
    /// A catalog (`dataset synth` root) holding the photos' true voxels, matched by model id
    /// (the photo's file name, as `dataset photos` names them)
    #[arg(long)]
    truth: Option<PathBuf>,
    /// The picture to write
    #[arg(short, long)]
    out: PathBuf,
    /// Also write per-photo IoU results as JSON here
    #[arg(long)]
    json: Option<PathBuf>,
    /// Occupancy threshold for IoU against the truth
    #[arg(long, default_value_t = 0.3)]
    threshold: f32,
}

const TILE: u32 = 192;

pub fn run(args: SheetArgs) -> anyhow::Result<()> {
    let summary_path = args.run.join("summary.json");
    let summary: serde_json::Value = serde_json::from_slice(
        &std::fs::read(&summary_path).with_context(|| format!("reading {}", summary_path.display()))?,
    )
    .with_context(|| format!("parsing {}", summary_path.display()))?;
    let photos = summary["photos"].as_array().cloned().unwrap_or_default();
    anyhow::ensure!(!photos.is_empty(), "{} lists no photos", summary_path.display());
    let truths = match &args.truth {
        Some(root) => index_truth(root)?,
        None => HashMap::new(),
    };
    let columns = if truths.is_empty() { 4 } else { 7 };
    let mut sheet = RgbImage::from_pixel(columns * TILE, photos.len() as u32 * TILE, image::Rgb([255; 3]));
    let mut results = Vec::new();
    for (row, photo) in photos.iter().enumerate() {
        let y = row as i64 * TILE as i64;
        let name = photo["name"].as_str().unwrap_or_default();
        let dir = args.run.join(name);
        let input = PathBuf::from(photo["input"].as_str().unwrap_or_default());
        // the photo as the pipeline saw it (gated), else the input itself
        let shown = image::open(dir.join("gated.png")).or_else(|_| image::open(&input));
        if let Ok(img) = shown {
            let tile = imageops::resize(&img.to_rgb8(), TILE, TILE, imageops::FilterType::Triangle);
            imageops::replace(&mut sheet, &tile, 0, y);
        }
        if let Ok(preview) = image::open(dir.join("preview.png")) {
            let tile = imageops::resize(&preview.to_rgb8(), 3 * TILE, TILE, imageops::FilterType::Triangle);
            imageops::replace(&mut sheet, &tile, TILE as i64, y);
        }
        let model_id = input.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        let mut result = serde_json::json!({
            "photo": input,
            "status": photo["status"],
            "category": photo["category"].as_str().or_else(|| photo["classification"]["category"].as_str()),
        });
        if let Some(truth_path) = truths.get(&model_id) {
            let truth = VoxelGrid::read_binvox(truth_path).with_context(|| format!("reading {}", truth_path.display()))?;
            // The model-frame mesh, as the run's own preview: the preview cameras are the
            // training ones, while refine's files are posed in metres.
            let mesh = mono2mesh_refine::build_mesh(&truth, &mono2mesh_refine::RefineSettings::default())
                .map_err(|e| anyhow::anyhow!("meshing {}: {e}", truth_path.display()))?;
            let png = mono2mesh_refine::preview_png(&mesh, None).map_err(|e| anyhow::anyhow!("{e}"))?;
            let preview = image::load_from_memory(&png)?;
            let tile = imageops::resize(&preview.to_rgb8(), 3 * TILE, TILE, imageops::FilterType::Triangle);
            imageops::replace(&mut sheet, &tile, 4 * TILE as i64, y);
            result["truth"] = serde_json::json!(truth_path);
            if let Ok(predicted) = VoxelGrid::read_binvox(dir.join("voxels.binvox")) {
                let iou = mono2mesh_geometry::iou::iou_at_thresholds(&predicted, &truth, &[args.threshold])
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
                result["iou"] = serde_json::json!(iou[0]);
                println!("{:<60} IoU {:.3}", input.display(), iou[0]);
            }
        }
        results.push(result);
    }
    sheet.save(&args.out).with_context(|| format!("writing {}", args.out.display()))?;
    let ious: Vec<f64> = results.iter().filter_map(|r| r["iou"].as_f64()).collect();
    if !ious.is_empty() {
        println!("mean IoU {:.3} over {} photos with ground truth (t={})", ious.iter().sum::<f64>() / ious.len() as f64, ious.len(), args.threshold);
    }
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_vec_pretty(&results)?).with_context(|| format!("writing {}", path.display()))?;
    }
    println!("sheet: {} ({} rows: photo | mesh{})", args.out.display(), photos.len(), if truths.is_empty() { "" } else { " | truth" });
    Ok(())
}

/// Model id -> its `model.binvox` under `<root>/ShapeNetVox32/<synset>/<id>/`.
fn index_truth(root: &Path) -> anyhow::Result<HashMap<String, PathBuf>> {
    let voxels = root.join(mono2mesh_catalog::dataset::VOXEL_DIR);
    let mut found = HashMap::new();
    for synset in std::fs::read_dir(&voxels).with_context(|| format!("reading {}", voxels.display()))? {
        let synset = synset?.path();
        if !synset.is_dir() {
            continue;
        }
        for model in std::fs::read_dir(&synset)? {
            let model = model?.path();
            let file = model.join("model.binvox");
            if let (Some(id), true) = (model.file_name(), file.is_file()) {
                found.insert(id.to_string_lossy().into_owned(), file);
            }
        }
    }
    Ok(found)
}
