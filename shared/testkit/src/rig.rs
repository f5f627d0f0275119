//! A whole pipeline environment for worker end-to-end tests: RabbitMQ with a random name
//! prefix (topology deleted at the end), a fresh Postgres database and an S3 server on a
//! local port, plus the environment a worker binary needs to reach all three, exactly as
//! compose passes it. Fails loudly when RabbitMQ or Postgres is missing.

use mono2mesh_infra::blob::{keys, BlobKey, BlobStore};
use mono2mesh_infra::jobs::{JobStore, NewJob};
use mono2mesh_infra::queue::{Lane, MessageQueue, RabbitQueue, Topology};
use mono2mesh_infra::secret::SecretUrl;
use mono2mesh_core::{JobId, JobState, RealSize, StageMessage};
use crate::services::{TestDatabase, TestS3};
use std::collections::HashMap;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

pub const DEFAULT_TEST_AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
/// Back-off of the rig's two retry tiers: short, so retry paths finish quickly in tests.
/// Two entries because a one-element list in an environment variable is read as a
/// number by the config layer, not as a list.
pub const RIG_RETRY_DELAYS_MS: [u64; 2] = [300, 300];
pub const RIG_DELIVERY_LIMIT: u32 = 3;
/// The rig's queues expire after this long unused, so a test that panics before
/// `finish` leaves nothing in the broker for long (workers declare the same expiry).
pub const RIG_QUEUE_EXPIRY_MS: u64 = 600_000;

/// `MONO2MESH_TEST_AMQP_URL`, else the local broker with the default account.
pub fn test_amqp_url() -> String {
    std::env::var("MONO2MESH_TEST_AMQP_URL").unwrap_or_else(|_| DEFAULT_TEST_AMQP_URL.to_string())
}

pub struct PipelineRig {
    pub db: TestDatabase,
    pub s3: TestS3,
    pub queue: RabbitQueue,
    pub prefix: String,
}

impl PipelineRig {
    pub async fn start(test: &str) -> PipelineRig {
        let url = test_amqp_url();
        let prefix = format!("test-{test}-{}", uuid::Uuid::new_v4().simple());
        let retry = RIG_RETRY_DELAYS_MS.iter().map(|ms| Duration::from_millis(*ms)).collect();
        let topology = Topology::new(prefix.clone(), Lane::all(), retry, RIG_DELIVERY_LIMIT)
            .unwrap_or_else(|e| panic!("test topology: {e}"))
            .with_expiry(Duration::from_millis(RIG_QUEUE_EXPIRY_MS));
        let queue = RabbitQueue::connect(&SecretUrl::new(url.clone()), topology).await.unwrap_or_else(|e| {
            panic!("RabbitMQ is required for this test but did not answer ({e}); start it with `bash scripts/services.sh`")
        });
        let db = TestDatabase::create().await;
        let s3 = TestS3::on_port("pipeline").await;
        PipelineRig { db, s3, queue, prefix }
    }

    /// The environment of a worker process reaching this rig (and nothing else).
    pub fn worker_env(&self) -> Vec<(String, String)> {
        let endpoint = format!("http://{}", self.s3.addr.unwrap_or_else(|| panic!("the rig's S3 listens on a port")));
        [
            ("PATH", std::env::var("PATH").unwrap_or_default()),
            ("MONO2MESH__DATABASE__URL", self.db.settings.url.expose().to_string()),
            ("MONO2MESH__BLOB__BACKEND", "s3".into()),
            ("MONO2MESH__BLOB__S3__ENDPOINT", endpoint),
            ("MONO2MESH__BLOB__S3__BUCKET", self.s3.settings.bucket.clone()),
            ("MONO2MESH__BLOB__S3__ACCESS_KEY", self.s3.settings.access_key.clone()),
            ("MONO2MESH__BLOB__S3__SECRET_KEY", self.s3.settings.secret_key.expose().to_string()),
            ("MONO2MESH__QUEUE__URL", test_amqp_url()),
            ("MONO2MESH__QUEUE__EXCHANGE_PREFIX", self.prefix.clone()),
            ("MONO2MESH__QUEUE__RETRY_DELAYS_MS", RIG_RETRY_DELAYS_MS.map(|ms| ms.to_string()).join(",")),
            ("MONO2MESH__QUEUE__DELIVERY_LIMIT", RIG_DELIVERY_LIMIT.to_string()),
            ("MONO2MESH__QUEUE__EXPIRES_MS", RIG_QUEUE_EXPIRY_MS.to_string()),
            ("MONO2MESH__QUEUE__PREFETCH", "4".into()),
            ("MONO2MESH_WORKER_CONCURRENCY", "4".into()),
            ("MONO2MESH_WORKER_SHUTDOWN_GRACE_SECS", "20".into()),
            ("RUST_LOG", "warn".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    /// Starts a worker binary (path from `env!("CARGO_BIN_EXE_...")`) configured only
    /// through the environment.
    pub fn spawn_worker(&self, binary: &str, args: &[&str]) -> Child {
        self.spawn_worker_with_env(binary, args, &[])
    }

    /// [`Self::spawn_worker`] with extra environment variables (which win).
    pub fn spawn_worker_with_env(&self, binary: &str, args: &[&str], extra: &[(&str, &str)]) -> Child {
        Command::new(binary)
            .args(args)
            .env_clear()
            .envs(self.worker_env())
            .envs(extra.iter().copied())
            .stdin(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {binary}: {e}"))
    }

    /// Records a job whose input photo is `photo` (stored under the job's input key);
    /// nothing is queued.
    pub async fn submit_job(&self, batch: &str, photo: Vec<u8>) -> JobId {
        self.submit_sized_job(batch, photo, None).await
    }

    /// [`PipelineRig::submit_job`] with the real size a manifest or the API would state.
    pub async fn submit_sized_job(&self, batch: &str, photo: Vec<u8>, size: Option<RealSize>) -> JobId {
        let id = JobId::new();
        let key = keys::input(id, "photo.png").unwrap_or_else(|e| panic!("input key: {e}"));
        self.put(&key, photo).await;
        let new = NewJob {
            id,
            batch: batch.to_string(),
            input_key: key,
            content_hash: id.to_string(),
            external_id: None,
            category: None,
            size,
        };
        let submitted = self.db.store.submit(&new).await.unwrap_or_else(|e| panic!("submit: {e}"));
        assert!(submitted.created);
        id
    }

    pub async fn put(&self, key: &BlobKey, bytes: Vec<u8>) {
        self.s3.store.put(key, bytes.into()).await.unwrap_or_else(|e| panic!("put {key}: {e}"));
    }

    pub async fn publish(&self, message: &StageMessage) {
        self.queue.publish(message).await.unwrap_or_else(|e| panic!("publish: {e}"));
    }

    pub fn jobs(&self) -> &JobStore {
        &self.db.store
    }

    /// Waits until every job is in one of `states`, failing after `limit`.
    pub async fn wait_for_states(&self, jobs: &[JobId], states: &[JobState], limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            let mut pending = Vec::new();
            for id in jobs {
                let job = self.db.store.get_job(*id).await.unwrap_or_else(|e| panic!("job {id}: {e}"));
                if !states.contains(&job.state) {
                    pending.push((job.id, job.state, job.last_error));
                }
            }
            if pending.is_empty() {
                return;
            }
            assert!(Instant::now() < deadline, "{} of {} jobs not in {states:?} after {limit:?}: {:?}", pending.len(), jobs.len(), &pending[..pending.len().min(5)]);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Takes every message waiting on `lane`, counting them per job.
    pub async fn drain_lane(&self, lane: Lane) -> HashMap<JobId, usize> {
        let mut consumer = self.queue.consume(&[lane], 100).await.unwrap_or_else(|e| panic!("consume {lane}: {e}"));
        let mut seen = HashMap::new();
        while let Ok(Some(Ok(delivery))) = tokio::time::timeout(Duration::from_millis(500), consumer.next()).await {
            let message: StageMessage =
                serde_json::from_slice(delivery.body()).unwrap_or_else(|e| panic!("message on {lane}: {e}"));
            *seen.entry(message.job_id).or_default() += 1;
            delivery.ack().await.unwrap_or_else(|e| panic!("ack: {e}"));
        }
        let _ = consumer.cancel().await;
        seen
    }

    /// Deletes the broker topology and the database. The S3 directory goes with the rig.
    pub async fn finish(self) {
        self.queue.delete_topology().await.unwrap_or_else(|e| panic!("deleting the test topology: {e}"));
        let _ = self.queue.close().await;
        self.db.drop_database().await;
    }
}

/// SIGTERM, then wait (at most 30 s) for the process to exit.
pub fn stop_gracefully(mut child: Child) -> ExitStatus {
    let sent = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    assert!(sent.is_ok_and(|s| s.success()), "could not send SIGTERM");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait().unwrap_or_else(|e| panic!("waiting for the worker: {e}")) {
            return status;
        }
        assert!(Instant::now() < deadline, "worker did not stop within 30 s of SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }
}
