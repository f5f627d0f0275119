//! Queue fixtures for integration tests: the in-memory backend, or the real RabbitMQ
//! at 127.0.0.1:5672 (override with MONO2MESH_TEST_AMQP_URL) with a random name prefix
//! per test, deleted afterwards.

/// Generates one test per scenario and backend: `memory::<scenario>` on the in-memory
/// queue, `rabbitmq::<scenario>` on the real broker, each calling `<scenario>(fixture)`.
#[allow(unused_macros)]
macro_rules! on_both_backends {
    ($($scenario:ident => [$($lane:expr),+ $(,)?];)+) => {
        mod memory {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() {
                    super::$scenario(Fixture::memory(vec![$($lane),+])).await;
                }
            )+
        }
        mod rabbitmq {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() {
                    let fixture = Fixture::rabbit(stringify!($scenario), vec![$($lane),+]).await;
                    super::$scenario(fixture).await;
                }
            )+
        }
    };
}

use mono2mesh_infra::queue::{Lane, MemoryQueue, MessageQueue, RabbitQueue, Topology};
use mono2mesh_infra::runtime::{JobOutcomes, RunReport, RuntimeSettings, StageHandler, Worker};
use mono2mesh_infra::secret::SecretUrl;
use mono2mesh_core::{JobId, StageError, StageMessage};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub const DEFAULT_AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
/// Short back-off tiers keep retry tests quick.
pub const RETRY_DELAYS: [Duration; 2] = [Duration::from_millis(300), Duration::from_millis(600)];
pub const DELIVERY_LIMIT: u32 = 2;
/// Queues of a test that died before its clean-up vanish from the broker after this.
pub const TEST_QUEUE_EXPIRY: Duration = Duration::from_secs(600);

pub fn amqp_url() -> String {
    std::env::var("MONO2MESH_TEST_AMQP_URL").unwrap_or_else(|_| DEFAULT_AMQP_URL.to_string())
}

/// Fails the test, with what to do about it, when no broker answers: these tests exist
/// to exercise the real broker, so skipping silently would hide a broken CI.
pub async fn require_rabbitmq() -> String {
    let url = amqp_url();
    let host_port = url
        .split('@')
        .next_back()
        .and_then(|rest| rest.split('/').next())
        .unwrap_or("127.0.0.1:5672")
        .to_string();
    let reachable =
        tokio::time::timeout(Duration::from_secs(3), tokio::net::TcpStream::connect(host_port.as_str())).await;
    match reachable {
        Ok(Ok(_)) => url,
        Ok(Err(e)) => panic!(
            "RabbitMQ is not reachable at {host_port} ({e}). These integration tests need a real broker: \
             start one with `bash scripts/services.sh` or set MONO2MESH_TEST_AMQP_URL."
        ),
        Err(_) => panic!("RabbitMQ at {host_port} did not accept a TCP connection within 3 s"),
    }
}

pub fn unique_prefix(test: &str) -> String {
    format!("test-{test}-{}", uuid::Uuid::new_v4().simple())
}

pub enum Fixture {
    Memory(MemoryQueue),
    Rabbit { url: SecretUrl, topology: Topology, opened: Mutex<Vec<RabbitQueue>> },
}

impl Fixture {
    pub fn memory(lanes: Vec<Lane>) -> Fixture {
        let topology = Topology::new("mem", lanes, RETRY_DELAYS.to_vec(), DELIVERY_LIMIT).unwrap();
        Fixture::Memory(MemoryQueue::new(topology))
    }

    pub async fn rabbit(test: &str, lanes: Vec<Lane>) -> Fixture {
        let url = SecretUrl::new(require_rabbitmq().await);
        let topology = Topology::new(unique_prefix(test), lanes, RETRY_DELAYS.to_vec(), DELIVERY_LIMIT)
            .unwrap()
            .with_expiry(TEST_QUEUE_EXPIRY);
        Fixture::Rabbit { url, topology, opened: Mutex::new(Vec::new()) }
    }

    pub fn is_rabbit(&self) -> bool {
        matches!(self, Fixture::Rabbit { .. })
    }

    /// A queue handle as one process would hold it: for RabbitMQ its own connection
    /// (declaring the topology), for memory the shared in-process queue.
    pub async fn open(&self) -> Arc<dyn MessageQueue> {
        match self {
            Fixture::Memory(q) => Arc::new(q.clone()),
            Fixture::Rabbit { url, topology, opened } => {
                let queue = RabbitQueue::connect(url, topology.clone()).await.unwrap();
                opened.lock().unwrap().push(queue.clone());
                Arc::new(queue)
            }
        }
    }

    /// What the process holding `queue` dying looks like to the broker: its connection
    /// goes away with whatever it had not settled. (Memory: dropping the unsettled
    /// delivery already did it.)
    pub async fn crash(&self, queue: Arc<dyn MessageQueue>) {
        if self.is_rabbit() {
            queue.close().await.unwrap();
        }
    }

    /// Deletes the broker-side topology. Call at the end of every RabbitMQ test.
    pub async fn cleanup(self) {
        if let Fixture::Rabbit { url, topology, opened } = self {
            for queue in opened.lock().unwrap().drain(..) {
                drop(queue);
            }
            let admin = RabbitQueue::connect(&url, topology).await.unwrap();
            admin.delete_topology().await.unwrap();
            admin.close().await.unwrap();
        }
    }
}

/// Records what the runtime asked the job store to do.
#[allow(dead_code)] // used by queue.rs, not by recovery.rs
#[derive(Default)]
pub struct RecordedOutcomes {
    pub rejected: Mutex<Vec<(JobId, String)>>,
    pub failed: Mutex<Vec<(JobId, String)>>,
    /// Jobs the "store" does not know: recording their outcome fails permanently.
    pub unknown: Mutex<Vec<JobId>>,
}

#[async_trait::async_trait]
impl JobOutcomes for RecordedOutcomes {
    async fn reject(&self, message: &StageMessage, reason: &str) -> Result<(), StageError> {
        if self.unknown.lock().unwrap().contains(&message.job_id) {
            return Err(StageError::permanent(format!("job {} not found", message.job_id)));
        }
        self.rejected.lock().unwrap().push((message.job_id, reason.to_string()));
        Ok(())
    }
    async fn fail(&self, message: &StageMessage, reason: &str) -> Result<(), StageError> {
        if self.unknown.lock().unwrap().contains(&message.job_id) {
            return Err(StageError::permanent(format!("job {} not found", message.job_id)));
        }
        self.failed.lock().unwrap().push((message.job_id, reason.to_string()));
        Ok(())
    }
}

/// A worker running in the background until `stop` is called.
pub struct RunningWorker {
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<RunReport, mono2mesh_infra::runtime::RuntimeError>>,
}

impl RunningWorker {
    pub fn start(
        queue: Arc<dyn MessageQueue>,
        lanes: Vec<Lane>,
        handler: Arc<dyn StageHandler>,
        outcomes: Arc<dyn JobOutcomes>,
        settings: RuntimeSettings,
    ) -> RunningWorker {
        let worker = Worker::new(queue, lanes, handler, outcomes, settings).unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(worker.run(async move {
            let _ = stopped.await;
        }));
        RunningWorker { stop: Some(stop), task }
    }

    /// The process dies: the run is cut off where it stands, nothing settles, no
    /// shutdown code runs (the caller then drops the connection, as the broker sees it).
    #[allow(dead_code)] // used by recovery.rs, not by queue.rs
    pub async fn kill(self) {
        self.task.abort();
        let _ = self.task.await;
    }

    pub async fn stop(mut self) -> RunReport {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.task.await.unwrap().unwrap()
    }
}

pub fn quick_settings() -> RuntimeSettings {
    RuntimeSettings {
        concurrency: 4,
        prefetch: 4,
        max_attempts: 3,
        handler_timeout: Duration::from_secs(20),
        shutdown_grace: Duration::from_secs(10),
        ..RuntimeSettings::default()
    }
}

/// Polls `check` until it holds, failing the test with `what` after `limit`.
pub async fn wait_until<F, Fut>(what: &str, limit: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if check().await {
            return;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("timed out after {limit:?} waiting for: {what}");
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}
