//! Object storage for pipeline intermediates and outputs. Only keys travel on the
//! queue; bytes live here. Two backends behind one trait: a local directory and S3
//! (AWS, MinIO, s3s-fs, Garage).

mod key;
mod local;
mod s3;

pub use key::{keys, BlobKey};
pub use local::LocalBlobStore;
pub use s3::S3BlobStore;

use crate::config::{BlobBackend, BlobSettings};
use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use mono2mesh_core::{ErrorClass, StageError};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// What `head` and `list` say about a stored object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobMeta {
    pub key: BlobKey,
    pub size: u64,
    pub last_modified: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BlobError {
    #[error("blob {key} not found")]
    NotFound { key: String },
    #[error("invalid blob key {key:?}: {reason}")]
    InvalidKey { key: String, reason: &'static str },
    /// A passing fault: network, timeout, throttling, server error, full disk.
    #[error("blob store unavailable during {op} {key}: {message}")]
    Unavailable { op: &'static str, key: String, message: String },
    /// The store refused the request for a reason retrying will not fix
    /// (credentials, permissions, missing bucket, malformed request).
    #[error("blob store refused {op} {key}: {message}")]
    Refused { op: &'static str, key: String, message: String },
}

impl BlobError {
    pub fn is_not_found(&self) -> bool {
        matches!(self, BlobError::NotFound { .. })
    }

    /// How the queue runtime should treat a stage that failed with this error. A
    /// missing object is permanent: the message refers to work that does not exist.
    pub fn class(&self) -> ErrorClass {
        match self {
            BlobError::Unavailable { .. } => ErrorClass::Retryable,
            BlobError::NotFound { .. } | BlobError::InvalidKey { .. } | BlobError::Refused { .. } => {
                ErrorClass::Permanent
            }
        }
    }
}

impl From<BlobError> for StageError {
    fn from(err: BlobError) -> Self {
        StageError { class: err.class(), reason: err.to_string() }
    }
}

/// An object store. Writes are whole-object and atomic: a reader sees the old
/// object or the new one, never a partial one, so a retried stage simply overwrites.
#[async_trait]
pub trait BlobStore: Send + Sync + std::fmt::Debug {
    /// Stores `body` under `key`, replacing any existing object.
    async fn put(&self, key: &BlobKey, body: Bytes) -> Result<(), BlobError>;

    /// Stores the `size` bytes of the file at `path` under `key`, streaming them
    /// rather than holding them in memory, where the backend can (the default reads
    /// the file whole and calls [`BlobStore::put`]). The file must not change meanwhile.
    async fn put_file(&self, key: &BlobKey, path: &Path, size: u64) -> Result<(), BlobError> {
        check_file(key, path, size).await?;
        let body = tokio::fs::read(path).await.map_err(|e| file_error(key, path, e))?;
        if body.len() as u64 != size {
            return Err(file_changed(key, path, size, body.len() as u64));
        }
        self.put(key, Bytes::from(body)).await
    }

    /// The whole object; `BlobError::NotFound` when absent.
    async fn get(&self, key: &BlobKey) -> Result<Bytes, BlobError>;

    /// Size and modification time; `BlobError::NotFound` when absent.
    async fn head(&self, key: &BlobKey) -> Result<BlobMeta, BlobError>;

    /// Removes the object. Deleting a missing object succeeds (idempotent).
    async fn delete(&self, key: &BlobKey) -> Result<(), BlobError>;

    /// Every object whose key starts with `prefix` (a plain string prefix, not
    /// necessarily ending in '/'), sorted by key.
    async fn list(&self, prefix: &str) -> Result<Vec<BlobMeta>, BlobError>;

    /// A URL anyone can GET for `expires`, where the backend supports it (S3);
    /// `Ok(None)` where it does not (local directory).
    async fn presigned_get(&self, key: &BlobKey, expires: Duration) -> Result<Option<String>, BlobError>;

    /// Where the objects live, for logs (never contains credentials).
    fn location(&self) -> String;

    /// Whether an object exists.
    async fn exists(&self, key: &BlobKey) -> Result<bool, BlobError> {
        match self.head(key).await {
            Ok(_) => Ok(true),
            Err(e) if e.is_not_found() => Ok(false),
            Err(e) => Err(e),
        }
    }
}

/// The local file a `put_file` was to send could not be read: the caller's side.
pub(crate) fn file_error(key: &BlobKey, path: &Path, err: std::io::Error) -> BlobError {
    BlobError::Unavailable { op: "put", key: key.to_string(), message: format!("reading {}: {err}", path.display()) }
}

/// Checks, before anything is sent, that the file a `put_file` is to send exists and
/// has the size the caller gave (a shorter or longer body must not become the object).
pub(crate) async fn check_file(key: &BlobKey, path: &Path, size: u64) -> Result<(), BlobError> {
    let found = tokio::fs::metadata(path).await.map_err(|e| file_error(key, path, e))?.len();
    if found == size {
        Ok(())
    } else {
        Err(file_changed(key, path, size, found))
    }
}

/// The local file a `put_file` was to send is not the size it was said to be.
fn file_changed(key: &BlobKey, path: &Path, expected: u64, found: u64) -> BlobError {
    BlobError::Refused {
        op: "put",
        key: key.to_string(),
        message: format!("{} is {found} bytes, not the {expected} it was when spooled", path.display()),
    }
}

/// Opens the store the settings select. For S3 this checks the bucket (and creates
/// it when `create_bucket` is set), so a misconfiguration fails at start-up.
/// Every request it serves is timed into [`crate::telemetry::names::BLOB_REQUEST`].
pub async fn open_blob_store(settings: &BlobSettings) -> Result<Arc<dyn BlobStore>, BlobError> {
    let store: Arc<dyn BlobStore> = match settings.backend {
        BlobBackend::Local => Arc::new(LocalBlobStore::new(&settings.local_root)),
        BlobBackend::S3 => Arc::new(S3BlobStore::connect(&settings.s3).await?),
    };
    Ok(Arc::new(MeteredBlobStore(store)))
}

/// A store that times each request by operation and outcome
/// (`mono2mesh_blob_request_seconds{op, outcome}`), so a slow bucket shows up next to
/// the stage it slows.
#[derive(Debug)]
pub struct MeteredBlobStore(pub Arc<dyn BlobStore>);

impl MeteredBlobStore {
    async fn timed<T>(
        op: &'static str,
        request: impl std::future::Future<Output = Result<T, BlobError>>,
    ) -> Result<T, BlobError> {
        let started = std::time::Instant::now();
        let result = request.await;
        let outcome = match &result {
            Ok(_) => "ok",
            Err(e) if e.is_not_found() => "not_found",
            Err(_) => "error",
        };
        metrics::histogram!(crate::telemetry::names::BLOB_REQUEST, "op" => op, "outcome" => outcome)
            .record(started.elapsed().as_secs_f64());
        result
    }
}

#[async_trait]
impl BlobStore for MeteredBlobStore {
    async fn put(&self, key: &BlobKey, body: Bytes) -> Result<(), BlobError> {
        Self::timed("put", self.0.put(key, body)).await
    }
    async fn put_file(&self, key: &BlobKey, path: &Path, size: u64) -> Result<(), BlobError> {
        Self::timed("put", self.0.put_file(key, path, size)).await
    }
    async fn get(&self, key: &BlobKey) -> Result<Bytes, BlobError> {
        Self::timed("get", self.0.get(key)).await
    }
    async fn head(&self, key: &BlobKey) -> Result<BlobMeta, BlobError> {
        Self::timed("head", self.0.head(key)).await
    }
    async fn delete(&self, key: &BlobKey) -> Result<(), BlobError> {
        Self::timed("delete", self.0.delete(key)).await
    }
    async fn list(&self, prefix: &str) -> Result<Vec<BlobMeta>, BlobError> {
        Self::timed("list", self.0.list(prefix)).await
    }
    async fn presigned_get(&self, key: &BlobKey, expires: Duration) -> Result<Option<String>, BlobError> {
        // Signing is local computation, not a request.
        self.0.presigned_get(key, expires).await
    }
    fn location(&self) -> String {
        self.0.location()
    }
    // `exists` keeps the trait's default, a (timed) `head`: a missing object then
    // counts as outcome=not_found, as it does for `head` itself.
}

/// MIME type for the artifacts the pipeline writes, so objects open sensibly when
/// fetched through a presigned URL.
pub fn content_type_for(key: &BlobKey) -> &'static str {
    let ext = key.as_str().rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase());
    match ext.as_deref() {
        Some("png") => "image/png",
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("webp") => "image/webp",
        Some("json") => "application/json",
        Some("obj") => "model/obj",
        Some("ply") => "application/x-ply",
        Some("stl") => "model/stl",
        Some("glb") => "model/gltf-binary",
        _ => "application/octet-stream",
    }
}
