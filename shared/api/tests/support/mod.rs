//! Real services for the API tests: a fresh Postgres database, an S3 server (s3s-fs)
//! on a local port, the in-memory queue (the API only publishes; the broker adds
//! nothing there), and the API server itself on 127.0.0.1:0.
#![allow(dead_code)] // each test binary uses a different part of this module

use mono2mesh_api::ingest::Ingest;
use mono2mesh_api::server::{self, ApiConfig, AppState, QueueProbe};
use mono2mesh_core::{JobId, JobState, Stage, StageMessage};
use mono2mesh_infra::blob::{keys, BlobKey, BlobStore, LocalBlobStore};
use mono2mesh_infra::jobs::{CategorySource, JobStore, JobUpdate};
use mono2mesh_infra::queue::{Lane, MemoryQueue, MessageQueue, Topology};
use mono2mesh_infra::config::DatabaseSettings;
use mono2mesh_infra::secret::{SecretString, SecretUrl};
use mono2mesh_testkit::proxy::{url_socket_addr, TcpProxy};
use mono2mesh_testkit::services::{TestDatabase, TestS3};
use std::io::Cursor;
use std::sync::Arc;
use std::time::Duration;

/// Write scope; `Harness::http` sends it on every request.
pub const TOKEN: &str = "w8Kp2vQx7RmZ4tLc9NbY3hJd";
/// Read scope only.
pub const READ_TOKEN: &str = "r5Hq1sWf6GkT0yVn8CpX2eMa";
/// Uploads above this are refused by the ingest layer (413 photo_too_large).
pub const MAX_PHOTO: u64 = 256 * 1024;
/// Request bodies above this are refused by the HTTP layer (413 body_too_large).
pub const MAX_BODY: usize = 512 * 1024;

pub fn memory_queue() -> Arc<MemoryQueue> {
    let topology = Topology::new("api-test", Lane::all(), vec![Duration::from_millis(200)], 3)
        .unwrap_or_else(|e| panic!("topology: {e}"));
    Arc::new(MemoryQueue::new(topology))
}

pub enum Store {
    S3(TestS3),
    Local(tempfile::TempDir),
}

pub struct Harness {
    pub db: TestDatabase,
    pub store: Store,
    pub blobs: Arc<dyn BlobStore>,
    pub queue: Arc<MemoryQueue>,
    pub ingest: Ingest,
    pub base: String,
    /// Sends the write token on every request (a request's own `bearer_auth` wins).
    pub http: reqwest::Client,
    /// Sends no token.
    pub anon: reqwest::Client,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Harness {
    /// Server over S3 (presigned redirects) with one accepted token.
    pub async fn s3() -> Harness {
        let s3 = TestS3::on_port("api-test").await;
        let blobs: Arc<dyn BlobStore> = Arc::new(s3.store.clone());
        Self::start(Store::S3(s3), blobs, QueueProbe::None).await
    }

    /// Server over a local directory (objects streamed by the API).
    pub async fn local() -> Harness {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("temp dir: {e}"));
        let blobs: Arc<dyn BlobStore> = Arc::new(LocalBlobStore::new(dir.path()));
        Self::start(Store::Local(dir), blobs, QueueProbe::None).await
    }

    pub async fn start(store: Store, blobs: Arc<dyn BlobStore>, probe: QueueProbe) -> Harness {
        let db = TestDatabase::create().await;
        let jobs = db.store.clone();
        Self::start_with(db, jobs, store, blobs, probe).await
    }

    /// Server over a local directory whose job store reaches Postgres through a
    /// [`TcpProxy`] the test can cut (a database outage); `jobs()` stays direct.
    pub async fn local_behind_proxy() -> (Harness, TcpProxy) {
        let db = TestDatabase::create().await;
        let url = db.settings.url.expose().to_string();
        let proxy = TcpProxy::start(url_socket_addr(&url, 5432)).await;
        // Short acquire time-out: a request during the outage fails fast.
        let settings = DatabaseSettings { url: SecretUrl::new(proxy.rewrite_url(&url)), max_connections: 4, acquire_timeout_secs: 1 };
        let jobs = JobStore::connect(&settings).await.unwrap_or_else(|e| panic!("job store through the proxy: {e}"));
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("temp dir: {e}"));
        let blobs: Arc<dyn BlobStore> = Arc::new(LocalBlobStore::new(dir.path()));
        (Self::start_with(db, jobs, Store::Local(dir), blobs, QueueProbe::None).await, proxy)
    }

    async fn start_with(db: TestDatabase, jobs: JobStore, store: Store, blobs: Arc<dyn BlobStore>, probe: QueueProbe) -> Harness {
        let queue = memory_queue();
        let ingest = Ingest { jobs, blobs: blobs.clone(), queue: queue.clone(), max_photo_bytes: MAX_PHOTO, default_webhook: None, allow_private_webhooks: true };
        let config = ApiConfig {
            tokens: vec![SecretString::new(TOKEN)],
            read_tokens: vec![SecretString::new(READ_TOKEN)],
            max_body_bytes: MAX_BODY,
            ..ApiConfig::default()
        };
        Self::serve(db, store, blobs, queue, ingest, config, probe).await
    }

    /// Server with `config` (its limits, its tokens) over a local directory.
    pub async fn local_with(config: ApiConfig) -> Harness {
        let db = TestDatabase::create().await;
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("temp dir: {e}"));
        let blobs: Arc<dyn BlobStore> = Arc::new(LocalBlobStore::new(dir.path()));
        let queue = memory_queue();
        let ingest = Ingest { jobs: db.store.clone(), blobs: blobs.clone(), queue: queue.clone(), max_photo_bytes: MAX_PHOTO, default_webhook: None, allow_private_webhooks: true };
        Self::serve(db, Store::Local(dir), blobs, queue, ingest, config, QueueProbe::None).await
    }

    async fn serve(
        db: TestDatabase,
        store: Store,
        blobs: Arc<dyn BlobStore>,
        queue: Arc<MemoryQueue>,
        ingest: Ingest,
        config: ApiConfig,
        probe: QueueProbe,
    ) -> Harness {
        let state = AppState { ingest: ingest.clone(), config: Arc::new(config), probe: Arc::new(probe) };
        let addr = "127.0.0.1:0".parse().unwrap_or_else(|e| panic!("addr: {e}"));
        let (bound, server) = server::spawn(addr, state).await.unwrap_or_else(|e| panic!("cannot start the API server: {e}"));
        let client = |token: Option<&str>| {
            let mut headers = reqwest::header::HeaderMap::new();
            if let Some(token) = token {
                let value = reqwest::header::HeaderValue::from_str(&format!("Bearer {token}"))
                    .unwrap_or_else(|e| panic!("header: {e}"));
                headers.insert(reqwest::header::AUTHORIZATION, value);
            }
            reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .default_headers(headers)
                .build()
                .unwrap_or_else(|e| panic!("http client: {e}"))
        };
        Harness { db, store, blobs, queue, ingest, base: format!("http://{bound}"), http: client(Some(TOKEN)), anon: client(None), server }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn jobs(&self) -> &JobStore {
        &self.db.store
    }

    /// `POST /v1/jobs` with a multipart photo and optional text fields.
    pub async fn post_photo(&self, photo: Vec<u8>, fields: &[(&str, &str)], token: Option<&str>) -> reqwest::Response {
        let mut form = reqwest::multipart::Form::new()
            .part("photo", reqwest::multipart::Part::bytes(photo).file_name("photo.png"));
        for (name, value) in fields {
            form = form.text(name.to_string(), value.to_string());
        }
        let mut request = self.anon.post(self.url("/v1/jobs")).multipart(form);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send().await.unwrap_or_else(|e| panic!("POST /v1/jobs: {e}"))
    }

    /// Gate messages waiting in the in-memory queue, taken off it.
    pub async fn take_gate_messages(&self) -> Vec<StageMessage> {
        take_messages(self.queue.as_ref()).await
    }

    pub async fn finish(self) {
        self.server.abort();
        self.db.drop_database().await;
    }
}

/// Gate messages waiting in `queue`, taken off it (acknowledged).
pub async fn take_messages(queue: &MemoryQueue) -> Vec<StageMessage> {
    let mut stream = queue.consume(&[Lane::Gate], 1000).await.unwrap_or_else(|e| panic!("consume: {e}"));
    let mut messages = Vec::new();
    while let Ok(Some(delivery)) = tokio::time::timeout(Duration::from_millis(200), stream.next()).await {
        let delivery = delivery.unwrap_or_else(|e| panic!("delivery: {e}"));
        messages.push(serde_json::from_slice(delivery.body()).unwrap_or_else(|e| panic!("message: {e}")));
        delivery.ack().await.unwrap_or_else(|e| panic!("ack: {e}"));
    }
    let _ = stream.cancel().await;
    messages
}

/// A real PNG photo, different for every `seed`.
pub fn png(seed: u8, size: u32) -> Vec<u8> {
    let image = image::RgbImage::from_fn(size, size, |x, y| {
        image::Rgb([(x as u8).wrapping_mul(seed), (y as u8).wrapping_add(seed), seed.wrapping_mul(31)])
    });
    let mut out = Cursor::new(Vec::new());
    image.write_to(&mut out, image::ImageFormat::Png).unwrap_or_else(|e| panic!("encoding a PNG: {e}"));
    out.into_inner()
}

/// An octahedron as OBJ text: 6 vertices, 8 triangles.
pub const OCTAHEDRON_OBJ: &str = "# octahedron\nv 1 0 0\nv -1 0 0\nv 0 1 0\nv 0 -1 0\nv 0 0 1\nv 0 0 -1\n\
f 1 3 5\nf 3 2 5\nf 2 4 5\nf 4 1 5\nf 3 1 6\nf 2 3 6\nf 4 2 6\nf 1 4 6\n";

/// Walks a job through the pipeline as the workers would record it: gate scores,
/// category, then outputs stored under refine's keys and the job done.
pub async fn complete_job(jobs: &JobStore, blobs: &dyn BlobStore, id: JobId, outputs: &[(&str, &str, &[u8])]) -> Vec<BlobKey> {
    let gate = JobUpdate {
        gate_scores: Some(serde_json::json!({ "blur_variance": 412.5, "mean_intensity": 118.0, "accepted": true })),
        ..JobUpdate::default()
    };
    jobs.advance(id, Some(Stage::Gate), JobState::Gated, gate).await.unwrap_or_else(|e| panic!("gate: {e}"));
    let classify = JobUpdate {
        category: Some((mono2mesh_core::Category::Chair, CategorySource::Classifier)),
        ..JobUpdate::default()
    };
    jobs.advance(id, Some(Stage::Classify), JobState::Classified, classify)
        .await
        .unwrap_or_else(|e| panic!("classify: {e}"));
    jobs.advance(id, Some(Stage::Reconstruct), JobState::Reconstructed, JobUpdate::default())
        .await
        .unwrap_or_else(|e| panic!("reconstruct: {e}"));
    let mut keys_written = Vec::new();
    let mut recorded = serde_json::Map::new();
    for (name, file, bytes) in outputs {
        let key = keys::stage_artifact(id, Stage::Refine, file).unwrap_or_else(|e| panic!("key: {e}"));
        blobs.put(&key, bytes.to_vec().into()).await.unwrap_or_else(|e| panic!("put {key}: {e}"));
        recorded.insert(name.to_string(), serde_json::Value::String(key.to_string()));
        keys_written.push(key);
    }
    let done = JobUpdate { outputs: Some(serde_json::Value::Object(recorded)), ..JobUpdate::default() };
    jobs.advance(id, Some(Stage::Refine), JobState::Done, done).await.unwrap_or_else(|e| panic!("refine: {e}"));
    keys_written
}

/// Reads a JSON error body and checks its status and code.
pub async fn expect_error(response: reqwest::Response, status: u16, code: &str) -> String {
    let got = response.status().as_u16();
    let body: serde_json::Value = response.json().await.unwrap_or_else(|e| panic!("error body is not JSON: {e}"));
    assert_eq!(got, status, "status for {code}: {body}");
    assert_eq!(body["error"]["code"], code, "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default().to_string();
    assert!(!message.is_empty(), "error {code} has a message");
    message
}
