//! The embedded pipeline: gate -> classify -> reconstruct -> refine in one process, on
//! local files, with no server. It runs the very handlers the four worker binaries run
//! (`mono2mesh_<stage>::handler`), with the same runtime loop, over the in-memory queue,
//! an in-memory job store behind the Postgres store's trait, and a blob store on a
//! local directory. Only the transport differs from the distributed deployment, so a
//! photo gets the same answer in both modes.
//!
//! When every job has ended, each photo's outputs are copied from the job's blob keys
//! to `<out>/<name>/` under the names users know (gate.json, gated.png,
//! classification.json, voxels.binvox, probabilities.npy, mesh.*, mesh.json,
//! preview.png), with one `report.json`; the job area is then removed.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use async_trait::async_trait;
use bytes::Bytes;
use mono2mesh_classify::handler::ClassifyHandler;
use mono2mesh_classify::settings::ClassifyStageSettings;
use mono2mesh_core::{Category, JobId, JobState, RealSize, Stage, StageError, StageMessage};
use mono2mesh_gate::handler::GateHandler;
use mono2mesh_gate::{GateReport, GateSettings};
use mono2mesh_infra::blob::{keys, BlobKey, BlobStore, LocalBlobStore};
use mono2mesh_infra::config::{QueueBackend, Settings};
use mono2mesh_infra::jobs::{Job, NewJob};
use mono2mesh_infra::pipeline::{StageContext, StoreOutcomes};
use mono2mesh_infra::queue::{self, Lane, MessageQueue};
use mono2mesh_infra::repository::{JobRepository, MemoryJobStore};
use mono2mesh_infra::runtime::{Next, RunReport, RuntimeSettings, StageHandler, Worker};
use mono2mesh_reconstruct::handler::ReconstructHandler;
use mono2mesh_reconstruct::registry::{ModelRegistry, ResolvedModel};
use mono2mesh_reconstruct::settings::ReconstructStageSettings;
use mono2mesh_refine::{MeshStats, RefineSettings};
use mono2mesh_vision::classifier::ClassifierModel;
use mono2mesh_vision::device::DeviceChoice;
use serde::Serialize;
use tokio::sync::watch;

/// The batch every embedded job belongs to (the job store's dedup key is batch + content).
const RUN_BATCH: &str = "run";
/// Where job blobs live inside the output directory while the pipeline runs.
const WORK_DIR: &str = ".pipeline";

/// Everything the embedded pipeline needs to know.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub out_dir: PathBuf,
    /// The layered settings (stage sections, model registry), as the workers read them.
    pub settings: Settings,
    /// The four stages' settings, read from `settings` (flags applied on top).
    pub stages: StageSettings,
    /// Skip classification and use this category for every photo (as a manifest would).
    pub category: Option<Category>,
    /// Every photo's real size (as a manifest's size columns); else the category's typical size.
    pub size: Option<RealSize>,
}

#[derive(Debug, Clone)]
pub struct StageSettings {
    pub gate: GateSettings,
    pub classify: ClassifyStageSettings,
    pub reconstruct: ReconstructStageSettings,
    pub refine: RefineSettings,
}

impl StageSettings {
    /// Each stage's section of the layered settings, checked by its own crate.
    pub fn from_config(settings: &Settings) -> anyhow::Result<Self> {
        Ok(StageSettings {
            gate: GateSettings::from_config(settings)?,
            classify: ClassifyStageSettings::from_config(settings)?,
            reconstruct: ReconstructStageSettings::from_config(settings)?,
            refine: RefineSettings::from_config(settings)?,
        })
    }

    /// The stages' own checks, for settings changed after loading (`run`'s flags).
    pub fn validate(&self) -> anyhow::Result<()> {
        self.gate.validate().context("gate settings")?;
        self.classify.validate().map_err(anyhow::Error::msg).context("classify settings")?;
        self.reconstruct.validate().map_err(anyhow::Error::msg).context("reconstruct settings")?;
        self.refine.validate().map_err(anyhow::Error::msg).context("refine settings")?;
        Ok(())
    }
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
    pub classification: Option<serde_json::Value>,
    /// The category the job was reconstructed as (from `--category` or the classifier).
    pub category: Option<Category>,
    pub model: Option<ResolvedModel>,
    pub mesh: Option<MeshStats>,
    /// Output files, relative to the output directory.
    pub outputs: Vec<String>,
    /// Time from submission to each stage's completion, and between them.
    pub timings_ms: BTreeMap<&'static str, f64>,
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
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let reports = runtime.block_on(run_async(photos, options, &mut on_done))?;
    let _ = std::fs::remove_dir_all(options.out_dir.join(WORK_DIR));
    Ok(reports)
}

/// A photo on its way: its output name and job (none when the file could not be read).
struct Entry {
    input: PathBuf,
    name: String,
    job: Result<JobId, String>,
}

async fn run_async(
    photos: &[PathBuf],
    options: &RunOptions,
    on_done: &mut impl FnMut(&PhotoReport),
) -> anyhow::Result<Vec<PhotoReport>> {
    let jobs = Arc::new(MemoryJobStore::new());
    let blobs: Arc<dyn BlobStore> = Arc::new(LocalBlobStore::new(options.out_dir.join(WORK_DIR)));
    let mut queue_settings = options.settings.queue.clone();
    queue_settings.backend = QueueBackend::Memory;
    let queue = queue::open(&queue_settings).await?;
    let context = StageContext { jobs: jobs.clone(), blobs: blobs.clone() };

    // The four stages' loops, exactly as the worker binaries run them.
    let (stop, stopped) = watch::channel(false);
    let mut loops = tokio::task::JoinSet::new();
    for (lanes, handler, concurrency) in stage_handlers(&context, options)? {
        let runtime = RuntimeSettings { concurrency, prefetch: concurrency.min(u16::MAX as usize) as u16, ..RuntimeSettings::default() };
        let outcomes = Arc::new(StoreOutcomes(jobs.clone()));
        let worker = Worker::new(queue.clone(), lanes, handler, outcomes, runtime)?;
        let mut stopped = stopped.clone();
        loops.spawn(async move {
            worker
                .run(async move {
                    let _ = stopped.wait_for(|stop| *stop).await;
                })
                .await
        });
    }

    let names = unique_names(photos);
    let mut entries = Vec::with_capacity(photos.len());
    for (input, name) in photos.iter().zip(names) {
        let job = submit(input, options.category, options.size, jobs.as_ref(), blobs.as_ref(), queue.as_ref()).await;
        entries.push(Entry { input: input.clone(), name, job: job.map_err(|e| format!("{e:#}")) });
    }

    // Collect each photo as its job ends, in whatever order that happens.
    let registry = ModelRegistry::new(&options.settings.models.registry);
    let mut reports: Vec<Option<PhotoReport>> = entries.iter().map(|_| None).collect();
    let mut remaining = entries.len();
    while remaining > 0 {
        for (entry, slot) in entries.iter().zip(reports.iter_mut()).filter(|(_, slot)| slot.is_none()) {
            let report = match &entry.job {
                Err(reason) => Some(unread_report(entry, reason)),
                Ok(id) => match jobs.find_job(*id).await? {
                    Some(job) if job.state.is_terminal() => {
                        Some(collect(entry, &job, blobs.as_ref(), options, &registry).await)
                    }
                    _ => None,
                },
            };
            if let Some(report) = report {
                on_done(&report);
                *slot = Some(report);
                remaining -= 1;
            }
        }
        if remaining > 0 {
            if let Some(ended) = loops.try_join_next() {
                // A stage loop only ends on its own when the queue breaks.
                anyhow::bail!("a pipeline stage stopped early: {:?}", ended.map(|r| r.map(|_: RunReport| ())));
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
    let _ = stop.send(true);
    while let Some(ended) = loops.join_next().await {
        ended.context("a pipeline stage panicked")??;
    }
    queue.close().await?;
    Ok(reports.into_iter().flatten().collect())
}

/// The handler of each stage with its lanes and concurrency. A model that cannot be
/// loaded fails the jobs that reach its stage, with the reason, rather than the run:
/// the photos before it still get their gate verdicts.
fn stage_handlers(
    context: &StageContext,
    options: &RunOptions,
) -> anyhow::Result<Vec<(Vec<Lane>, Arc<dyn StageHandler>, usize)>> {
    let stages = &options.stages;
    let registry = &options.settings.models.registry;
    let mut handlers: Vec<(Vec<Lane>, Arc<dyn StageHandler>, usize)> =
        vec![(vec![Lane::Gate], Arc::new(GateHandler::new(context.clone(), stages.gate.clone())), 2)];

    // With a category given there is nothing to classify: the gate hands jobs straight
    // to reconstruct, as it does for a manifest that names the category.
    let mut reconstruct = stages.reconstruct.clone();
    if let Some(category) = options.category {
        reconstruct.categories = vec![category];
    } else {
        let path = stages.classify.model_path(registry);
        let handler: Arc<dyn StageHandler> = match stages
            .classify
            .device
            .parse::<DeviceChoice>()
            .map_err(anyhow::Error::from)
            .and_then(|d| Ok(d.resolve()?))
            .and_then(|device| Ok(ClassifierModel::load(&path, device)?))
        {
            Ok(model) => Arc::new(ClassifyHandler::new(context.clone(), model, &stages.classify)),
            Err(error) => Arc::new(Unavailable(format!("loading the classifier {}: {error:#}", path.display()))),
        };
        handlers.push((vec![Lane::Classify], handler, stages.classify.batch_size));
    }

    let lanes: Vec<Lane> = reconstruct.categories.iter().map(|&c| Lane::Reconstruct(c)).collect();
    let device = reconstruct.device.parse::<DeviceChoice>()?.resolve()?;
    let handler: Arc<dyn StageHandler> =
        match ReconstructHandler::load(context.clone(), &ModelRegistry::new(registry), &reconstruct, device) {
            Ok(handler) => Arc::new(handler),
            Err(error) => Arc::new(Unavailable(error.to_string())),
        };
    handlers.push((lanes, handler, reconstruct.batch_size * 2));
    handlers.push((
        vec![Lane::Refine],
        Arc::new(mono2mesh_refine::handler::RefineHandler::new(context.clone(), stages.refine.clone())),
        2,
    ));
    Ok(handlers)
}

/// A stage whose model could not be loaded: every job reaching it fails with why.
struct Unavailable(String);

#[async_trait]
impl StageHandler for Unavailable {
    async fn handle(&self, _message: StageMessage) -> Result<Next, StageError> {
        Err(StageError::permanent(self.0.clone()))
    }
}

/// Stores the photo under a new job's input key, records the job and queues it for the gate.
async fn submit(
    input: &Path,
    category: Option<Category>,
    size: Option<RealSize>,
    jobs: &dyn JobRepository,
    blobs: &dyn BlobStore,
    queue: &dyn MessageQueue,
) -> anyhow::Result<JobId> {
    let photo = std::fs::read(input).with_context(|| format!("cannot read {}", input.display()))?;
    let id = JobId::new();
    let extension: String = input
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase())
        .filter(|e| !e.is_empty() && e.len() <= 5 && e.chars().all(|c| c.is_ascii_alphanumeric()))
        .unwrap_or_else(|| "bin".into());
    let input_key = keys::input(id, &format!("photo.{extension}"))?;
    let content_hash = mono2mesh_api::ingest::content_hash(&photo);
    blobs.put(&input_key, Bytes::from(photo)).await?;
    let new = NewJob { id, batch: RUN_BATCH.into(), input_key, content_hash, external_id: None, category, size };
    // The same photo given twice is one job, as in a submitted batch.
    let submission = jobs.submit(&new).await?;
    if submission.created {
        queue.publish(&StageMessage::new(id, Stage::Gate, category)).await?;
    }
    Ok(submission.job.id)
}

fn unread_report(entry: &Entry, reason: &str) -> PhotoReport {
    PhotoReport {
        input: entry.input.clone(),
        name: entry.name.clone(),
        status: PhotoStatus::Rejected,
        reasons: vec![reason.to_string()],
        gate: None,
        classification: None,
        category: None,
        model: None,
        mesh: None,
        outputs: Vec::new(),
        timings_ms: BTreeMap::new(),
    }
}

/// The user-facing file name of each stored output (by its blob key's stage and file).
fn output_name(key: &BlobKey) -> String {
    match key.file_name() {
        keys::GATE_REPORT if key.as_str().contains("/gate/") => "gate.json".into(),
        other => other.to_string(),
    }
}

/// Copies a finished job's outputs to `<out>/<name>/` and writes its `report.json`.
async fn collect(
    entry: &Entry,
    job: &Job,
    blobs: &dyn BlobStore,
    options: &RunOptions,
    registry: &ModelRegistry,
) -> PhotoReport {
    let status = match job.state {
        JobState::Done => PhotoStatus::Done,
        JobState::Rejected => PhotoStatus::Rejected,
        _ => PhotoStatus::Failed,
    };
    let mut report = PhotoReport {
        input: entry.input.clone(),
        name: entry.name.clone(),
        status,
        reasons: job.last_error.iter().filter(|_| status != PhotoStatus::Done).cloned().collect(),
        gate: None,
        classification: None,
        category: job.category,
        model: None,
        mesh: None,
        outputs: Vec::new(),
        timings_ms: timings(job),
    };
    if let Err(error) = copy_outputs(&mut report, job, blobs, options, registry).await {
        report.status = PhotoStatus::Failed;
        report.reasons.push(format!("{error:#}"));
    }
    let dir = options.out_dir.join(&report.name);
    let written = serde_json::to_vec_pretty(&report)
        .map_err(anyhow::Error::from)
        .and_then(|json| Ok(std::fs::create_dir_all(&dir).and_then(|()| std::fs::write(dir.join("report.json"), json))?));
    match written {
        Ok(()) => report.outputs.push(format!("{}/report.json", report.name)),
        Err(error) => {
            report.status = PhotoStatus::Failed;
            report.reasons.push(format!("writing {}: {error:#}", dir.join("report.json").display()));
        }
    }
    report
}

async fn copy_outputs(
    report: &mut PhotoReport,
    job: &Job,
    blobs: &dyn BlobStore,
    options: &RunOptions,
    registry: &ModelRegistry,
) -> anyhow::Result<()> {
    let dir = options.out_dir.join(&report.name);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let stored: Vec<BlobKey> = job
        .outputs
        .as_object()
        .map(|o| o.values().filter_map(|v| v.as_str()).filter_map(|k| BlobKey::parse(k).ok()).collect())
        .unwrap_or_default();
    for key in stored {
        let bytes = blobs.get(&key).await.with_context(|| format!("reading {key}"))?;
        let name = output_name(&key);
        match name.as_str() {
            "gate.json" => report.gate = serde_json::from_slice(&bytes).ok(),
            keys::CLASSIFICATION => report.classification = serde_json::from_slice(&bytes).ok(),
            mono2mesh_refine::handler::MESH_STATS => report.mesh = serde_json::from_slice(&bytes).ok(),
            _ => {}
        }
        std::fs::write(dir.join(&name), &bytes).with_context(|| format!("writing {}", dir.join(&name).display()))?;
        report.outputs.push(format!("{}/{name}", report.name));
    }
    if job.model.is_some() {
        report.model = registry.resolve(job.category).ok();
    }
    // Keep the classifier's view of an unsure photo in the report, as the worker does.
    if report.classification.is_none() {
        if let Ok(key) = keys::stage_artifact(job.id, Stage::Classify, keys::CLASSIFICATION) {
            if let Ok(bytes) = blobs.get(&key).await {
                report.classification = serde_json::from_slice(&bytes).ok();
                std::fs::write(dir.join(keys::CLASSIFICATION), &bytes)?;
                report.outputs.push(format!("{}/{}", report.name, keys::CLASSIFICATION));
            }
        }
    }
    Ok(())
}

/// Milliseconds from submission to the end of each stage the job passed.
fn timings(job: &Job) -> BTreeMap<&'static str, f64> {
    let mut out = BTreeMap::new();
    let stamps = [
        ("gate", job.gated_at),
        ("classify", job.classified_at),
        ("reconstruct", job.reconstructed_at),
        ("refine", job.done_at),
    ];
    for (stage, at) in stamps {
        if let Some(at) = at {
            out.insert(stage, (at - job.created_at).num_microseconds().unwrap_or(0) as f64 / 1e3);
        }
    }
    out
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
