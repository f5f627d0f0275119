//! Blob store in a local directory: `<root>/<key>`. Writes go to a temporary file in
//! the target directory, are fsynced, then renamed over the target, so readers and
//! crashes never see a partial object.

use super::{check_file, BlobError, BlobKey, BlobMeta, BlobStore};
use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::io::AsyncWriteExt;

/// Temporary files start with this, which `BlobKey` forbids in real keys.
const TEMP_PREFIX: &str = ".tmp-";

#[derive(Debug, Clone)]
pub struct LocalBlobStore {
    root: PathBuf,
}

impl LocalBlobStore {
    /// A store rooted at `root`; the directory is created on the first write.
    pub fn new(root: impl AsRef<Path>) -> Self {
        LocalBlobStore { root: root.as_ref().to_path_buf() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The file an object lives in (keys are validated, so this stays under root).
    pub fn path_of(&self, key: &BlobKey) -> PathBuf {
        self.root.join(key.as_str())
    }

    async fn write_atomically(&self, path: &Path, body: Body<'_>) -> io::Result<()> {
        let dir = path.parent().unwrap_or(&self.root);
        tokio::fs::create_dir_all(dir).await?;
        let file_name = path.file_name().and_then(|n| n.to_str()).unwrap_or("blob");
        let temp = dir.join(format!("{TEMP_PREFIX}{}-{file_name}", uuid::Uuid::new_v4().simple()));
        let written = async {
            match body {
                Body::Bytes(bytes) => {
                    let mut file = tokio::fs::File::create(&temp).await?;
                    file.write_all(bytes).await?;
                    file.sync_all().await?;
                }
                Body::File { path: source, size } => {
                    // copy_file_range/sendfile where the kernel has them: no user-space buffer.
                    let copied = tokio::fs::copy(source, &temp).await?;
                    if copied != size {
                        return Err(io::Error::new(
                            io::ErrorKind::InvalidData,
                            format!("{} is {copied} bytes, not the {size} it was when spooled", source.display()),
                        ));
                    }
                    tokio::fs::File::open(&temp).await?.sync_all().await?;
                }
            }
            tokio::fs::rename(&temp, path).await?;
            // The rename itself is durable only once the directory entry is synced.
            tokio::fs::File::open(dir).await?.sync_all().await
        }
        .await;
        if written.is_err() {
            let _ = tokio::fs::remove_file(&temp).await;
        }
        written
    }
}

/// What `write_atomically` writes.
enum Body<'a> {
    Bytes(&'a [u8]),
    File { path: &'a Path, size: u64 },
}

fn io_error(op: &'static str, key: &str, err: io::Error) -> BlobError {
    match err.kind() {
        io::ErrorKind::NotFound => BlobError::NotFound { key: key.to_string() },
        io::ErrorKind::PermissionDenied | io::ErrorKind::InvalidInput | io::ErrorKind::IsADirectory => {
            BlobError::Refused { op, key: key.to_string(), message: err.to_string() }
        }
        // Full disk, interrupted I/O, stale mounts: worth another try later.
        _ => BlobError::Unavailable { op, key: key.to_string(), message: err.to_string() },
    }
}

fn meta_of(key: BlobKey, metadata: &std::fs::Metadata) -> BlobMeta {
    BlobMeta { key, size: metadata.len(), last_modified: metadata.modified().ok().map(DateTime::<Utc>::from) }
}

/// Every stored file under `dir`, as keys relative to `root`.
fn walk(root: &Path, dir: &Path, prefix: &str, out: &mut Vec<BlobMeta>) -> io::Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.starts_with('.') {
            continue; // temporary files of in-flight writes
        }
        let path = entry.path();
        let file_type = entry.file_type()?;
        if file_type.is_dir() {
            walk(root, &path, prefix, out)?;
        } else if file_type.is_file() {
            let Ok(relative) = path.strip_prefix(root) else { continue };
            let key: Vec<&str> = relative.iter().filter_map(|c| c.to_str()).collect();
            let key = key.join("/");
            if key.starts_with(prefix) {
                if let Ok(key) = BlobKey::parse(key) {
                    out.push(meta_of(key, &entry.metadata()?));
                }
            }
        }
    }
    Ok(())
}

#[async_trait]
impl BlobStore for LocalBlobStore {
    async fn put(&self, key: &BlobKey, body: Bytes) -> Result<(), BlobError> {
        self.write_atomically(&self.path_of(key), Body::Bytes(&body)).await.map_err(|e| io_error("put", key.as_str(), e))
    }

    async fn put_file(&self, key: &BlobKey, path: &Path, size: u64) -> Result<(), BlobError> {
        check_file(key, path, size).await?;
        self.write_atomically(&self.path_of(key), Body::File { path, size })
            .await
            .map_err(|e| io_error("put", key.as_str(), e))
    }

    async fn get(&self, key: &BlobKey) -> Result<Bytes, BlobError> {
        tokio::fs::read(self.path_of(key)).await.map(Bytes::from).map_err(|e| io_error("get", key.as_str(), e))
    }

    async fn head(&self, key: &BlobKey) -> Result<BlobMeta, BlobError> {
        let metadata =
            tokio::fs::metadata(self.path_of(key)).await.map_err(|e| io_error("head", key.as_str(), e))?;
        if !metadata.is_file() {
            return Err(BlobError::NotFound { key: key.to_string() });
        }
        Ok(meta_of(key.clone(), &metadata))
    }

    async fn delete(&self, key: &BlobKey) -> Result<(), BlobError> {
        match tokio::fs::remove_file(self.path_of(key)).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_error("delete", key.as_str(), e)),
        }
    }

    async fn list(&self, prefix: &str) -> Result<Vec<BlobMeta>, BlobError> {
        // Only walk the deepest directory the prefix fully names.
        let dir_part = prefix.rsplit_once('/').map(|(dir, _)| dir).unwrap_or("");
        if dir_part.split('/').any(|s| s == ".." || s.starts_with('.')) {
            return Err(BlobError::InvalidKey { key: prefix.to_string(), reason: "prefix may not contain '.' segments" });
        }
        let root = self.root.clone();
        let start = if dir_part.is_empty() { root.clone() } else { root.join(dir_part) };
        let prefix_owned = prefix.to_string();
        let mut found = tokio::task::spawn_blocking(move || {
            let mut out = Vec::new();
            walk(&root, &start, &prefix_owned, &mut out).map(|()| out)
        })
        .await
        .map_err(|e| BlobError::Unavailable { op: "list", key: prefix.to_string(), message: e.to_string() })?
        .map_err(|e| io_error("list", prefix, e))?;
        found.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(found)
    }

    async fn presigned_get(&self, _key: &BlobKey, _expires: Duration) -> Result<Option<String>, BlobError> {
        Ok(None)
    }

    fn location(&self) -> String {
        format!("file://{}", self.root.display())
    }
}
