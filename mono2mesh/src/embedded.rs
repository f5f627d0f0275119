//! The embedded pipeline: gate -> classify -> reconstruct -> refine in one process, on
//! local files, with no server. Each stage runs the same library function its worker
//! binary runs, on its own thread, connected to the next by a bounded channel; results
//! go to a blob store on a local directory (one key prefix per photo).
//!
//! Classify and reconstruct take whatever is waiting (up to `batch`) into one forward
//! pass, as their workers do. A photo that a stage rejects or cannot process leaves the
//! pipeline early with its reasons; nothing stops the photos behind it.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Arc;
use std::thread;
use std::time::Instant;

use anyhow::Context;
use bytes::Bytes;
use mono2mesh_catalog::camera::{Camera, ViewParams};
use mono2mesh_catalog::render::{render, Lighting, ShadedMesh};
use mono2mesh_catalog::{ColoredMesh, Material};
use mono2mesh_classify::{classify_batch, Classification, ClassifyInput, ClassifySettings};
use mono2mesh_core::Category;
use mono2mesh_gate::{Decision, GateReport, GateSettings};
use mono2mesh_geometry::{Mesh, VoxelGrid};
use mono2mesh_infra::blob::{BlobKey, BlobStore, LocalBlobStore};
use mono2mesh_reconstruct::registry::{ModelRegistry, ResolvedModel};
use mono2mesh_reconstruct::{npy, ReconstructJob, ReconstructSettings, Reconstructor};
use mono2mesh_refine::{MeshStats, RefineSettings};
use mono2mesh_vision::classifier::ClassifierModel;
use serde::Serialize;
use tch::Device;

/// Everything the embedded pipeline needs to know.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub out_dir: PathBuf,
    pub gate: GateSettings,
    pub classify: ClassifySettings,
    pub classifier_path: PathBuf,
    /// Skip classification and use this category for every photo.
    pub category: Option<Category>,
    pub registry: ModelRegistry,
    pub device: Device,
    pub reconstruct: ReconstructSettings,
    /// Occupancy threshold of `voxels.binvox`.
    pub threshold: f32,
    pub refine: RefineSettings,
    pub preview: bool,
    /// Most photos per classifier / Pix2Vox forward pass.
    pub batch: usize,
}

/// How a photo's trip ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PhotoStatus {
    /// A mesh was made.
    Done,
    /// The photo is unusable for the method (blurry, dark, unknown object...).
    Rejected,
    /// Something on our side failed (missing model, I/O): the photo may be fine.
    Failed,
}

/// The one JSON report written per photo (`report.json`).
#[derive(Debug, Clone, Serialize)]
pub struct PhotoReport {
    pub input: PathBuf,
    /// Key prefix of this photo's outputs inside the output directory.
    pub name: String,
    pub status: PhotoStatus,
    pub reasons: Vec<String>,
    pub gate: Option<GateReport>,
    pub classification: Option<Classification>,
    /// Set when the category came from `--category` rather than the classifier.
    pub category: Option<Category>,
    pub model: Option<ResolvedModel>,
    pub mesh: Option<MeshStats>,
    /// Output files, relative to the output directory.
    pub outputs: Vec<String>,
    pub timings_ms: BTreeMap<&'static str, f64>,
}

/// A photo in flight between stages.
struct Work {
    report: PhotoReport,
    gated_png: Vec<u8>,
    grid: Option<VoxelGrid>,
}

impl Work {
    fn end(mut self, status: PhotoStatus, reason: impl Into<String>) -> PhotoReport {
        self.report.status = status;
        self.report.reasons.push(reason.into());
        self.report
    }
}

/// Writes into the local blob store from the stage threads.
#[derive(Clone)]
struct Outputs {
    store: Arc<LocalBlobStore>,
    runtime: tokio::runtime::Handle,
}

impl Outputs {
    fn put(&self, report: &mut PhotoReport, file: &str, bytes: Vec<u8>) -> anyhow::Result<()> {
        let key = BlobKey::parse(format!("{}/{}", report.name, file))?;
        self.runtime
            .block_on(self.store.put(&key, Bytes::from(bytes)))
            .with_context(|| format!("writing {key}"))?;
        report.outputs.push(key.as_str().to_string());
        Ok(())
    }

    fn put_json(&self, report: &mut PhotoReport, file: &str, value: &impl Serialize) -> anyhow::Result<()> {
        self.put(report, file, serde_json::to_vec_pretty(value)?)
    }
}

/// Runs every photo through the pipeline; returns one report per photo, in input order.
/// `on_done` sees each report as its photo leaves the pipeline (for progress output).
pub fn run_pipeline(
    photos: &[PathBuf],
    options: &RunOptions,
    mut on_done: impl FnMut(&PhotoReport),
) -> anyhow::Result<Vec<PhotoReport>> {
    std::fs::create_dir_all(&options.out_dir)
        .with_context(|| format!("creating output directory {}", options.out_dir.display()))?;
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()?;
    let outputs = Outputs { store: Arc::new(LocalBlobStore::new(&options.out_dir)), runtime: runtime.handle().clone() };
    let names = unique_names(photos);
    let batch = options.batch.max(1);

    let (to_classify, classify_in) = sync_channel::<Work>(batch * 2);
    let (to_reconstruct, reconstruct_in) = sync_channel::<Work>(batch * 2);
    let (to_refine, refine_in) = sync_channel::<Work>(batch * 2);
    let (to_done, done_in) = sync_channel::<PhotoReport>(batch * 2);

    let reports = thread::scope(|scope| -> anyhow::Result<Vec<PhotoReport>> {
        {
            let (outputs, done) = (outputs.clone(), to_done.clone());
            let jobs: Vec<(PathBuf, String)> = photos.iter().cloned().zip(names).collect();
            scope.spawn(move || gate_stage(jobs, options, &outputs, &to_classify, &done));
        }
        {
            let (outputs, done) = (outputs.clone(), to_done.clone());
            scope.spawn(move || classify_stage(classify_in, options, &outputs, &to_reconstruct, &done));
        }
        {
            let (outputs, done) = (outputs.clone(), to_done.clone());
            scope.spawn(move || reconstruct_stage(reconstruct_in, options, &outputs, &to_refine, &done));
        }
        {
            let outputs = outputs.clone();
            scope.spawn(move || refine_stage(refine_in, options, &outputs, &to_done));
        }
        let mut finished = Vec::with_capacity(photos.len());
        // The loop ends when every stage thread has dropped its sender.
        for mut report in done_in {
            let json = serde_json::to_vec_pretty(&report)?;
            if let Err(error) = outputs.put(&mut report, "report.json", json) {
                report.status = PhotoStatus::Failed;
                report.reasons.push(format!("{error:#}"));
            }
            on_done(&report);
            finished.push(report);
        }
        Ok(finished)
    })?;

    let order: HashMap<&Path, usize> = photos.iter().enumerate().map(|(i, p)| (p.as_path(), i)).collect();
    let mut reports = reports;
    reports.sort_by_key(|r| order.get(r.input.as_path()).copied().unwrap_or(usize::MAX));
    Ok(reports)
}

/// Output prefixes from file stems, made unique when two photos share a stem.
fn unique_names(photos: &[PathBuf]) -> Vec<String> {
    let mut seen: HashMap<String, usize> = HashMap::new();
    photos
        .iter()
        .enumerate()
        .map(|(i, path)| {
            let stem: String = path
                .file_stem()
                .map(|s| s.to_string_lossy().chars().map(|c| if c.is_ascii_alphanumeric() || "-_.".contains(c) { c } else { '_' }).collect())
                .filter(|s: &String| !s.is_empty() && !s.starts_with('.'))
                .unwrap_or_else(|| format!("photo{i}"));
            let n = seen.entry(stem.clone()).or_insert(0);
            *n += 1;
            if *n == 1 { stem } else { format!("{stem}-{n}") }
        })
        .collect()
}

/// A stage's rejection is a verdict on the photo; any other failure is ours.
fn status_of(class: mono2mesh_core::ErrorClass) -> PhotoStatus {
    match class {
        mono2mesh_core::ErrorClass::Rejection => PhotoStatus::Rejected,
        _ => PhotoStatus::Failed,
    }
}

fn elapsed_ms(start: Instant) -> f64 {
    start.elapsed().as_secs_f64() * 1e3
}

/// Takes one waiting item (blocking) and then whatever else is already queued, up to `max`.
fn next_batch<T>(input: &Receiver<T>, max: usize) -> Option<Vec<T>> {
    let first = input.recv().ok()?;
    let mut batch = vec![first];
    while batch.len() < max {
        match input.try_recv() {
            Ok(item) => batch.push(item),
            Err(_) => break,
        }
    }
    Some(batch)
}

fn gate_stage(
    jobs: Vec<(PathBuf, String)>,
    options: &RunOptions,
    outputs: &Outputs,
    next: &SyncSender<Work>,
    done: &SyncSender<PhotoReport>,
) {
    for (input, name) in jobs {
        let started = Instant::now();
        let report = PhotoReport {
            input: input.clone(),
            name,
            status: PhotoStatus::Done,
            reasons: Vec::new(),
            gate: None,
            classification: None,
            category: options.category,
            model: None,
            mesh: None,
            outputs: Vec::new(),
            timings_ms: BTreeMap::new(),
        };
        let mut work = Work { report, gated_png: Vec::new(), grid: None };
        let bytes = match std::fs::read(&input) {
            Ok(bytes) => bytes,
            Err(error) => {
                let _ = done.send(work.end(PhotoStatus::Rejected, format!("cannot read {}: {error}", input.display())));
                continue;
            }
        };
        let gated = match mono2mesh_gate::gate(&bytes, &options.gate) {
            Ok(gated) => gated,
            Err(error) => {
                let _ = done.send(work.end(PhotoStatus::Failed, format!("gate: {error}")));
                continue;
            }
        };
        work.report.timings_ms.insert("gate", elapsed_ms(started));
        let stored = outputs.put_json(&mut work.report, "gate.json", &gated.report).and_then(|()| match &gated.standardised_png {
            Some(png) => outputs.put(&mut work.report, "gated.png", png.clone()),
            None => Ok(()),
        });
        let accepted = gated.report.decision == Decision::Accept;
        let reasons: Vec<String> = gated.report.reasons.iter().map(|r| r.message.clone()).collect();
        work.report.gate = Some(gated.report);
        if let Err(error) = stored {
            let _ = done.send(work.end(PhotoStatus::Failed, format!("{error:#}")));
            continue;
        }
        match (accepted, gated.standardised_png) {
            (true, Some(png)) => {
                work.gated_png = png;
                if next.send(work).is_err() {
                    return;
                }
            }
            _ => {
                work.report.status = PhotoStatus::Rejected;
                work.report.reasons.extend(reasons);
                let _ = done.send(work.report);
            }
        }
    }
}

fn classify_stage(
    input: Receiver<Work>,
    options: &RunOptions,
    outputs: &Outputs,
    next: &SyncSender<Work>,
    done: &SyncSender<PhotoReport>,
) {
    // With a category given there is nothing to classify: pass the photos through.
    if options.category.is_some() {
        for work in input {
            if next.send(work).is_err() {
                return;
            }
        }
        return;
    }
    let model = ClassifierModel::load(&options.classifier_path, options.device)
        .with_context(|| format!("loading the classifier {}", options.classifier_path.display()));
    while let Some(batch) = next_batch(&input, options.batch) {
        let model = match &model {
            Ok(model) => model,
            Err(error) => {
                for work in batch {
                    let _ = done.send(work.end(PhotoStatus::Failed, format!("{error:#}")));
                }
                continue;
            }
        };
        let started = Instant::now();
        let inputs: Vec<ClassifyInput<'_>> = batch.iter().map(|w| ClassifyInput::Encoded(&w.gated_png)).collect();
        let results = classify_batch(&inputs, model, &options.classify);
        let per_photo_ms = elapsed_ms(started) / batch.len() as f64;
        match results {
            Err(error) => {
                let status = status_of(error.to_stage_error().class);
                for work in batch {
                    let _ = done.send(work.end(status, format!("classify: {error}")));
                }
            }
            Ok(classifications) => {
                for (mut work, classification) in batch.into_iter().zip(classifications) {
                    work.report.timings_ms.insert("classify", per_photo_ms);
                    let stored = outputs.put_json(&mut work.report, "classification.json", &classification);
                    work.report.category = classification.category;
                    work.report.classification = Some(classification);
                    if let Err(error) = stored {
                        let _ = done.send(work.end(PhotoStatus::Failed, format!("{error:#}")));
                    } else if next.send(work).is_err() {
                        return;
                    }
                }
            }
        }
    }
}

fn reconstruct_stage(
    input: Receiver<Work>,
    options: &RunOptions,
    outputs: &Outputs,
    next: &SyncSender<Work>,
    done: &SyncSender<PhotoReport>,
) {
    // Loaded models, by file: a specialist is loaded once, on first use.
    let mut loaded: HashMap<PathBuf, Reconstructor> = HashMap::new();
    while let Some(batch) = next_batch(&input, options.batch) {
        // Group the batch by the model each photo resolves to.
        let mut groups: Vec<(ResolvedModel, Vec<Work>)> = Vec::new();
        for mut work in batch {
            match options.registry.resolve(work.report.category) {
                Ok(resolved) => {
                    work.report.model = Some(resolved.clone());
                    match groups.iter_mut().find(|(m, _)| m.path == resolved.path) {
                        Some((_, group)) => group.push(work),
                        None => groups.push((resolved, vec![work])),
                    }
                }
                Err(error) => {
                    let status =
                        if work.report.category.is_none() { PhotoStatus::Rejected } else { PhotoStatus::Failed };
                    let reason = if work.report.category.is_none() {
                        format!("the classifier could not name a known category, and {error}")
                    } else {
                        error.to_string()
                    };
                    let _ = done.send(work.end(status, reason));
                }
            }
        }
        for (resolved, group) in groups {
            if !loaded.contains_key(&resolved.path) {
                match Reconstructor::load(&resolved.path, options.device) {
                    Ok(model) => {
                        loaded.insert(resolved.path.clone(), model);
                    }
                    Err(error) => {
                        for work in group {
                            let reason = format!("loading {}: {error}", resolved.path.display());
                            let _ = done.send(work.end(PhotoStatus::Failed, reason));
                        }
                        continue;
                    }
                }
            }
            let Some(model) = loaded.get(&resolved.path) else { continue };
            let started = Instant::now();
            let views: Vec<[&[u8]; 1]> = group.iter().map(|w| [w.gated_png.as_slice()]).collect();
            let jobs: Vec<ReconstructJob<'_>> = views.iter().map(|v| ReconstructJob { images: v }).collect();
            let results = model.reconstruct_batch(&jobs, &options.reconstruct);
            let per_photo_ms = elapsed_ms(started) / group.len() as f64;
            for (mut work, result) in group.into_iter().zip(results) {
                work.report.timings_ms.insert("reconstruct", per_photo_ms);
                match result {
                    Ok(grid) => {
                        let stored = outputs
                            .put(&mut work.report, "voxels.binvox", grid.to_binvox_bytes(options.threshold))
                            .and_then(|()| outputs.put(&mut work.report, "probabilities.npy", npy::grid_to_npy(&grid)));
                        if let Err(error) = stored {
                            let _ = done.send(work.end(PhotoStatus::Failed, format!("{error:#}")));
                            continue;
                        }
                        work.grid = Some(grid);
                        if next.send(work).is_err() {
                            return;
                        }
                    }
                    Err(error) => {
                        let _ = done.send(work.end(status_of(error.class()), format!("reconstruct: {error}")));
                    }
                }
            }
        }
    }
}

fn refine_stage(input: Receiver<Work>, options: &RunOptions, outputs: &Outputs, done: &SyncSender<PhotoReport>) {
    for mut work in input {
        let Some(grid) = work.grid.take() else {
            let _ = done.send(work.end(PhotoStatus::Failed, "refine: no voxel grid reached this stage"));
            continue;
        };
        let started = Instant::now();
        let refined = match mono2mesh_refine::refine(&grid, &options.refine) {
            Ok(refined) => refined,
            Err(error) => {
                let error = mono2mesh_core::StageError::from(error);
                let _ = done.send(work.end(status_of(error.class), format!("refine: {}", error.reason)));
                continue;
            }
        };
        work.report.timings_ms.insert("refine", elapsed_ms(started));
        let mut stored: anyhow::Result<()> = Ok(());
        for file in refined.files {
            let name = format!("mesh.{}", file.format.extension());
            stored = stored.and_then(|()| outputs.put(&mut work.report, &name, file.bytes));
        }
        if options.preview && stored.is_ok() {
            let started = Instant::now();
            stored = preview_png(&refined.mesh).and_then(|png| outputs.put(&mut work.report, "preview.png", png));
            work.report.timings_ms.insert("preview", elapsed_ms(started));
        }
        work.report.mesh = Some(refined.stats);
        let report = match stored {
            Ok(()) => work.report,
            Err(error) => work.end(PhotoStatus::Failed, format!("{error:#}")),
        };
        let _ = done.send(report);
    }
}

/// Side of one preview tile in pixels.
const PREVIEW_TILE: usize = 256;

/// The mesh rendered from three sides (front-left, back-right, and above), side by side
/// on white, with the same camera model the synthetic catalog renders with.
pub fn preview_png(mesh: &Mesh) -> anyhow::Result<Vec<u8>> {
    let colored = ColoredMesh::uniform(mesh.clone(), Material::glossy([0.62, 0.64, 0.68], 0.3));
    let shaded = ShadedMesh::new(&colored);
    let views = [(30.0, 25.0), (210.0, 25.0), (120.0, 60.0)];
    let mut sheet = image::RgbImage::from_pixel((PREVIEW_TILE * views.len()) as u32, PREVIEW_TILE as u32, image::Rgb([255; 3]));
    for (i, (azimuth, elevation)) in views.into_iter().enumerate() {
        let view = ViewParams { azimuth_deg: azimuth, elevation_deg: elevation, in_plane_deg: 0.0, distance_ratio: 0.8, fov: 25.0, crop_x: 0.0, crop_y: 0.0 };
        let camera = Camera::r2n2(&view, PREVIEW_TILE, PREVIEW_TILE);
        let rgba = render(&shaded, &camera, &Lighting::default(), 2);
        let tile = mono2mesh_catalog::preview::over_background(&rgba, [255, 255, 255]);
        image::imageops::replace(&mut sheet, &tile, (i * PREVIEW_TILE) as i64, 0);
    }
    let mut png = Vec::new();
    sheet.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)?;
    Ok(png)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_names_are_unique_and_safe() {
        let photos: Vec<PathBuf> =
            ["a/chair.jpg", "b/chair.png", "c/my photo!.jpg", "d/.hidden"].iter().map(PathBuf::from).collect();
        assert_eq!(unique_names(&photos), vec!["chair", "chair-2", "my_photo_", "photo3"]);
    }
}
