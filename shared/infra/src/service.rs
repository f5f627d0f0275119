//! Start-up and shutdown shared by the four worker binaries, so each `main.rs` only wires
//! its stage's handler (from the worker's library): flags, layered settings, stores, queue, the runtime loop until
//! SIGTERM/SIGINT, then a clean close.

use clap::Args;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tracing::info;

use crate::blob::{open_blob_store, BlobError, BlobStore};
use crate::config::{ConfigError, QueueBackend, Settings, SettingsLoader};
use crate::health::{serve_probes, BlobCheck, BrokerCheck, DatabaseCheck, Draining, ReadinessCheck};
use crate::jobs::{JobStore, JobStoreError};
use crate::pipeline::{StageContext, StoreOutcomes};
use crate::recovery::Janitor;
use crate::repository::JobRepository;
use crate::queue::{self, Lane, MessageQueue, QueueError};
use crate::runtime::{shutdown_signal, RunReport, RuntimeError, RuntimeSettings, StageHandler, Worker};

/// Flags every worker binary accepts. Each also reads its environment variable, so
/// a compose file can configure workers without a command line.
#[derive(Debug, Clone, Args)]
pub struct WorkerArgs {
    /// TOML config file layered over the compiled defaults (else $MONO2MESH_CONFIG).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Override one setting, e.g. `--set queue.prefetch=8` (repeatable; wins over env).
    #[arg(long = "set", value_name = "SECTION.KEY=VALUE")]
    pub overrides: Vec<String>,
    /// Deliveries processed at the same time.
    #[arg(long, env = "MONO2MESH_WORKER_CONCURRENCY", default_value_t = 4)]
    pub concurrency: usize,
    /// Attempts of a retryable failure before the job is failed and dead-lettered.
    #[arg(long, env = "MONO2MESH_WORKER_MAX_ATTEMPTS", default_value_t = 5)]
    pub max_attempts: u32,
    /// Seconds a single message may take before it is abandoned and retried.
    #[arg(long, env = "MONO2MESH_WORKER_HANDLER_TIMEOUT_SECS", default_value_t = 600)]
    pub handler_timeout_secs: u64,
    /// Seconds in-flight messages get to finish after SIGTERM.
    #[arg(long, env = "MONO2MESH_WORKER_SHUTDOWN_GRACE_SECS", default_value_t = 30)]
    pub shutdown_grace_secs: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("job store: {0}")]
    Jobs(#[from] JobStoreError),
    #[error("blob store: {0}")]
    Blobs(#[from] BlobError),
    #[error(transparent)]
    Queue(#[from] QueueError),
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error("queue.backend = \"memory\" exists only inside one process; a standalone worker needs \"amqp\"")]
    MemoryQueueInWorker,
    #[error("a worker needs at least one lane")]
    NoLanes,
    #[error("cannot serve the health probes on {listen}: {source}")]
    Health { listen: std::net::SocketAddr, source: std::io::Error },
}

impl WorkerArgs {
    /// Defaults, then file, then `MONO2MESH__*` environment, then `--set` flags.
    pub fn settings(&self) -> Result<Settings, ServiceError> {
        let mut loader = SettingsLoader::from_process_env().file(self.config.clone());
        for assignment in &self.overrides {
            loader = loader.set_assignment(assignment)?;
        }
        Ok(loader.load()?)
    }

    pub fn runtime_settings(&self, settings: &Settings) -> RuntimeSettings {
        RuntimeSettings {
            concurrency: self.concurrency,
            prefetch: settings.queue.prefetch,
            max_attempts: self.max_attempts,
            handler_timeout: Duration::from_secs(self.handler_timeout_secs),
            shutdown_grace: Duration::from_secs(self.shutdown_grace_secs),
            max_crashes: settings.queue.max_crashes,
            delivery_limit: settings.queue.delivery_limit,
        }
    }
}

/// What a stage handler works with.
#[derive(Clone)]
pub struct Services {
    pub settings: Settings,
    pub jobs: JobStore,
    pub blobs: Arc<dyn BlobStore>,
    pub queue: Arc<dyn MessageQueue>,
}

impl Services {
    /// Opens the job store (and migrates it), the blob store and the queue (topology
    /// declared), so a misconfiguration stops the worker at start-up. Outages after
    /// that are per-message retryable failures, not crashes.
    pub async fn connect(settings: Settings) -> Result<Services, ServiceError> {
        if settings.queue.backend == QueueBackend::Memory {
            return Err(ServiceError::MemoryQueueInWorker);
        }
        let jobs = JobStore::connect(&settings.database).await?;
        jobs.migrate().await?;
        let blobs = open_blob_store(&settings.blob).await?;
        let queue = queue::open(&settings.queue).await?;
        info!(database = %settings.database.url, blobs = %blobs.location(), queue = %settings.queue.url, "services connected");
        Ok(Services { settings, jobs, blobs, queue })
    }

    /// The job store and blob store as a stage handler sees them.
    pub fn stage_context(&self) -> StageContext {
        StageContext { jobs: Arc::new(self.jobs.clone()), blobs: self.blobs.clone() }
    }
}

/// Runs `handler` on `lanes` until SIGTERM/SIGINT, then drains and closes the queue.
pub async fn serve(
    services: &Services,
    lanes: Vec<Lane>,
    handler: Arc<dyn StageHandler>,
    runtime: RuntimeSettings,
) -> Result<RunReport, ServiceError> {
    let lanes_include_gate = lanes.contains(&Lane::Gate);
    let first_lane = *lanes.first().ok_or(ServiceError::NoLanes)?;
    let jobs: Arc<dyn JobRepository> = Arc::new(services.jobs.clone());
    let outcomes = Arc::new(StoreOutcomes(jobs.clone()));
    let janitor = Janitor::new(services.queue.clone(), jobs, lanes.clone(), services.settings.recovery.clone())
        .map_err(|message| ConfigError::Section { section: "recovery", message })?;
    let worker = Worker::new(services.queue.clone(), lanes, handler, outcomes, runtime)?;
    // One signal stops all: the consumer drains, the janitor stops between passes, the
    // probes turn unready (and stop once the worker is done).
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let draining = Arc::new(Draining::default());
    let probes_task = match services.settings.telemetry.health_listen {
        Some(listen) => {
            let listener = tokio::net::TcpListener::bind(listen).await.map_err(|source| ServiceError::Health { listen, source })?;
            let bound = listener.local_addr().map_err(|source| ServiceError::Health { listen, source })?;
            info!(listen = %bound, "serving /livez and /readyz");
            let checks: Vec<Box<dyn ReadinessCheck>> = vec![
                Box::new(BrokerCheck { queue: services.queue.clone(), lane: first_lane }),
                Box::new(DatabaseCheck(services.jobs.clone())),
                Box::new(BlobCheck(services.blobs.clone())),
            ];
            let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
            let task = tokio::spawn(serve_probes(listener, checks, draining.clone(), async move {
                let _ = done_rx.await;
            }));
            Some((task, done_tx))
        }
        None => None,
    };
    let janitor_task = tokio::spawn(janitor.run(stopped(stop_rx.clone())));
    // The gate workers also relay the submission outbox, so jobs recorded by a
    // submitter that died before publishing reach the gate without an API running.
    let relay_task = lanes_include_gate.then(|| {
        tokio::spawn(crate::outbox::run_outbox_relay(
            services.jobs.clone(),
            services.queue.clone(),
            crate::outbox::DEFAULT_INTERVAL,
            stopped(stop_rx.clone()),
        ))
    });
    let draining_on_stop = draining.clone();
    let result = worker
        .run(async move {
            shutdown_signal().await;
            draining_on_stop.start();
            let _ = stop_tx.send(true);
        })
        .await;
    if let Some((task, done)) = probes_task {
        let _ = done.send(());
        let _ = task.await;
    }
    janitor_task.abort();
    let _ = janitor_task.await;
    if let Some(relay) = relay_task {
        // Stopped by the same signal; a pass in flight ends with its lease.
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), relay).await;
    }
    // Closing returns whatever is still unsettled to the broker.
    let closed = services.queue.close().await;
    // Send the last spans before the process exits (off the async threads: it blocks).
    let _ = tokio::task::spawn_blocking(crate::telemetry::shutdown).await;
    let report = result?;
    closed?;
    Ok(report)
}

/// Completes once `flag` turns true (or its sender is gone).
async fn stopped(mut flag: tokio::sync::watch::Receiver<bool>) {
    let _ = flag.wait_for(|stop| *stop).await;
}
