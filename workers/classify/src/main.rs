//! Classify worker: takes classify messages, runs [`mono2mesh_classify::classify`] on the
//! job's standardised (gated) image, stores the classification, records the category on
//! the job and publishes to the reconstruct lane of that category. A photo whose best
//! category is below the confidence threshold follows `reconstruct.unknown_category`.

use anyhow::Context as _;
use async_trait::async_trait;
use bytes::Bytes;
use clap::Parser;
use mono2mesh_classify::{classify, ClassifyInput, ClassifySettings, DEFAULT_CLASSIFIER};
use mono2mesh_core::{Stage, StageError, StageMessage};
use mono2mesh_infra::blob::keys;
use mono2mesh_infra::config::UnknownCategoryPolicy;
use mono2mesh_infra::jobs::{CategorySource, JobUpdate};
use mono2mesh_infra::pipeline::{begin, complete, hand_over, Begin};
use mono2mesh_infra::queue::Lane;
use mono2mesh_infra::runtime::{Next, StageHandler};
use mono2mesh_infra::service::{serve, Services, WorkerArgs};
use mono2mesh_vision::classifier::ClassifierModel;
use mono2mesh_vision::device::DeviceChoice;
use serde_json::json;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

#[derive(Debug, Parser)]
#[command(name = "mono2mesh-classify", version, about = "Classify worker: pick the Pascal3D+ category of each gated photo")]
struct Cli {
    #[command(flatten)]
    worker: WorkerArgs,
    /// Classifier file; default `<models.registry>/classifiers/mobilenet_v2.safetensors`.
    #[arg(long, env = "MONO2MESH_CLASSIFIER", value_name = "FILE")]
    model: Option<PathBuf>,
    /// Category score below which a photo counts as "unknown".
    #[arg(long, env = "MONO2MESH_CLASSIFY_MIN_CONFIDENCE", default_value_t = ClassifySettings::default().min_confidence)]
    min_confidence: f32,
    /// Where the classifier runs: auto, cpu, cuda or cuda:N.
    #[arg(long, env = "MONO2MESH_CLASSIFY_DEVICE", default_value = "auto")]
    device: DeviceChoice,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let settings = cli.worker.settings()?;
    let _metrics = mono2mesh_infra::telemetry::init(&settings.telemetry)?;
    if settings.reconstruct.unknown_category == UnknownCategoryPolicy::General {
        anyhow::bail!(
            "reconstruct.unknown_category = \"general\" needs a general reconstruction model and lane, which \
             this deployment does not have yet; use \"reject\""
        );
    }
    if settings.models.registry.starts_with("s3://") {
        anyhow::bail!("the classify worker loads its model from a local directory; pass --model FILE");
    }
    let model_path = cli.model.clone().unwrap_or_else(|| PathBuf::from(&settings.models.registry).join(DEFAULT_CLASSIFIER));
    let device = cli.device.resolve()?;
    let model = ClassifierModel::load(&model_path, device)
        .with_context(|| format!("loading the classifier {}", model_path.display()))?;
    let classify_settings = ClassifySettings { min_confidence: cli.min_confidence, ..ClassifySettings::default() };
    let runtime = cli.worker.runtime_settings(&settings);
    let services = Services::connect(settings).await?;
    let handler = Arc::new(ClassifyHandler {
        services: services.clone(),
        model: Arc::new(Mutex::new(model)),
        settings: classify_settings,
    });
    serve(&services, vec![Lane::Classify], handler, runtime).await?;
    Ok(())
}

struct ClassifyHandler {
    services: Services,
    /// One network, used by one delivery at a time (libtorch parallelises inside).
    model: Arc<Mutex<ClassifierModel>>,
    settings: ClassifySettings,
}

#[async_trait]
impl StageHandler for ClassifyHandler {
    async fn handle(&self, message: StageMessage) -> Result<Next, StageError> {
        let Services { jobs, blobs, .. } = &self.services;
        let job = match begin(jobs, &message).await? {
            Begin::Run(job) => job,
            Begin::AlreadyDone(job) => return Ok(hand_over(&job, Stage::Classify)),
            Begin::Stale(why) => return Ok(Next::Stale(why)),
        };
        let image_key = keys::stage_artifact(job.id, Stage::Gate, keys::GATED_IMAGE)?;
        let image = blobs.get(&image_key).await?;
        let (model, settings) = (self.model.clone(), self.settings.clone());
        let classification = tokio::task::spawn_blocking(move || {
            let model = model.lock().map_err(|_| StageError::permanent("classifier lock poisoned by an earlier panic"))?;
            classify(ClassifyInput::Encoded(&image), &model, &settings).map_err(|e| e.to_stage_error())
        })
        .await
        .map_err(|e| StageError::permanent(format!("classification did not finish: {e}")))??;

        let record = serde_json::to_value(&classification)
            .map_err(|e| StageError::permanent(format!("classification is not serialisable: {e}")))?;
        let key = keys::stage_artifact(job.id, Stage::Classify, keys::CLASSIFICATION)?;
        blobs.put(&key, Bytes::from(record.to_string())).await?;
        let Some(category) = classification.category else {
            return Err(StageError::rejection(format!(
                "unknown category: best guess {} scored {:.2}, below the {:.2} threshold",
                classification.best_category, classification.confidence, self.settings.min_confidence
            )));
        };
        let update = JobUpdate {
            category: Some((category, CategorySource::Classifier)),
            outputs: Some(json!({ "classification": key.as_str() })),
            detail: Some(record),
            ..JobUpdate::default()
        };
        complete(jobs, &message, update).await
    }
}
