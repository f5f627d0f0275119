//! Turning photos into submitted jobs: store the photo, record the job together with
//! its gate message, publish that message. Shared by `mono2mesh submit` and the HTTP
//! API, so both dedupe and resume the same way.
//!
//! Order of writes, and why it makes a crash or a re-run safe:
//! 1. look the content hash up in the batch: an existing job is returned as is;
//! 2. put the photo under the new job's input key;
//! 3. in one transaction, insert the job (unique on batch + content hash; a concurrent
//!    twin wins and our orphaned upload is deleted), its `submitted` event, its gate
//!    message in the outbox and its webhook, if one was asked for (see
//!    `crate::webhook`);
//! 4. publish the gate message, then delete its outbox row and append a `published`
//!    event (one statement).
//!
//! The outbox row is born held by this submission (a lease, [`HOLD`]), so it publishes
//! at once and no relay races it. If the broker does not confirm within
//! [`PUBLISH_WAIT`], the row is given back and the submission still succeeds, with
//! `published: false, pending: true`: the job is recorded, and a relay
//! (`mono2mesh_infra::outbox`, run by `mono2mesh serve`, the gate worker, and
//! `mono2mesh submit` before it exits) publishes it. A crash between 3 and 4 leaves the
//! row held until the lease ends; then a relay publishes it (or the next submission of
//! the same photo, which claims it).
//!
//! Jobs recorded before the outbox existed (no row, no `published` event, still
//! `submitted`) are queued and published by the next submission of the same photo, as
//! before. Jobs that were published are never published again by a re-run, so resuming
//! a 10,000-photo batch does not double the backlog.

use bytes::Bytes;
use mono2mesh_core::{Category, JobId, JobState, RealSize, Stage, StageMessage};
use mono2mesh_infra::blob::{keys, BlobError, BlobKey, BlobStore};
use mono2mesh_infra::jobs::{Job, JobStore, JobStoreError, NewJob};
use mono2mesh_infra::outbox::{OutboxRelay, Via};
use mono2mesh_infra::otel::TraceHeaders;
use mono2mesh_infra::queue::{MessageQueue, QueueError};
use mono2mesh_infra::store::{OutboxEntry, OutboxScope};
use sha2::{Digest, Sha256};
use std::path::Path;
use std::sync::Arc;
use tokio::io::AsyncWriteExt;
use std::time::Duration;
use tracing::Instrument;

use crate::webhook;

/// The history event written once a job's gate message is confirmed by the broker.
pub use mono2mesh_infra::store::PUBLISHED_EVENT;

/// How long a submission waits for the broker's confirm before leaving its gate
/// message to the relays: a request must not hang through a broker outage.
pub const PUBLISH_WAIT: Duration = Duration::from_secs(5);
/// How long a submission holds its own outbox row from the insert: past
/// [`PUBLISH_WAIT`] and the store's writes, so no relay publishes it meanwhile. After a
/// crash the row waits this long for a relay.
pub const HOLD: Duration = Duration::from_secs(30);

/// Longest batch name accepted.
pub const MAX_BATCH_NAME: usize = 200;
/// Longest external id (SKU) accepted.
pub const MAX_EXTERNAL_ID: usize = 200;

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("invalid batch name {0:?}: 1 to 200 printable characters, no '/'")]
    InvalidBatch(String),
    #[error("invalid external id {0:?}: at most 200 printable characters")]
    InvalidExternalId(String),
    #[error("invalid webhook_url {0:?}: an absolute http:// or https:// URL of at most 2000 characters")]
    InvalidWebhook(String),
    #[error("webhook_url {url:?}: {ip} is not a public address, and this deployment calls only public ones")]
    WebhookNotPublic { url: String, ip: std::net::IpAddr },
    #[error("the photo is empty")]
    EmptyPhoto,
    #[error("the photo is {size} bytes, more than the limit of {limit}")]
    PhotoTooLarge { size: u64, limit: u64 },
    /// An upload cut off as soon as it passed the limit, before its full size was known.
    #[error("the photo is larger than the limit of {limit} bytes")]
    UploadTooLarge { limit: u64 },
    #[error("not a supported image (expected JPEG, PNG, WebP, TIFF or BMP by its first bytes)")]
    NotAnImage,
    #[error("object {0} does not exist in the blob store")]
    MissingObject(String),
    #[error("cannot read {path}: {source}")]
    ReadPhoto { path: std::path::PathBuf, source: std::io::Error },
    /// The upload could not be written to the spool directory (full disk, permissions):
    /// the service's fault, not the caller's.
    #[error("cannot spool the upload in {dir}: {source}")]
    Spool { dir: std::path::PathBuf, source: std::io::Error },
    #[error(transparent)]
    Blob(#[from] BlobError),
    #[error(transparent)]
    Jobs(#[from] JobStoreError),
    #[error(transparent)]
    Queue(#[from] QueueError),
}

impl IngestError {
    /// Whether the caller's input is at fault (a 4xx), rather than a service.
    pub fn is_bad_input(&self) -> bool {
        match self {
            IngestError::InvalidBatch(_)
            | IngestError::InvalidExternalId(_)
            | IngestError::InvalidWebhook(_)
            | IngestError::WebhookNotPublic { .. }
            | IngestError::EmptyPhoto
            | IngestError::PhotoTooLarge { .. }
            | IngestError::UploadTooLarge { .. }
            | IngestError::NotAnImage
            | IngestError::MissingObject(_)
            | IngestError::ReadPhoto { .. } => true,
            IngestError::Blob(e) => matches!(e, BlobError::InvalidKey { .. }),
            // A constraint refused what the caller asked for.
            IngestError::Jobs(e) => matches!(e, JobStoreError::Constraint { .. }),
            IngestError::Queue(_) | IngestError::Spool { .. } => false,
        }
    }
}

/// What to submit besides the photo itself.
#[derive(Debug, Clone, Default)]
pub struct PhotoMeta {
    pub batch: String,
    /// SKU or the caller's own id, echoed back by status and used by `fetch` for file names.
    pub external_id: Option<String>,
    /// A known category skips classification.
    pub category: Option<Category>,
    /// The product's real size; else the refine stage uses the category's typical size.
    pub size: Option<RealSize>,
    /// The photo's original file name, for the extension of the stored object.
    pub file_name: Option<String>,
    /// Called when the job finishes; else the ingest's default, if any.
    pub webhook_url: Option<String>,
}

/// The outcome of one submission.
#[derive(Debug, Clone, PartialEq)]
pub struct Submitted {
    pub job: Job,
    /// False when the batch already had this photo (by content hash).
    pub created: bool,
    /// True when this call published the gate message (the broker confirmed it).
    pub published: bool,
    /// True when the job's gate message waits in the outbox after this call (the
    /// broker did not confirm it in time, or another relay is publishing it): the job
    /// is recorded and a relay publishes it. Never true together with `published`.
    pub pending: bool,
}

/// Submits photos: blob store + job store + queue.
#[derive(Clone)]
pub struct Ingest {
    pub jobs: JobStore,
    pub blobs: Arc<dyn BlobStore>,
    pub queue: Arc<dyn MessageQueue>,
    /// Largest photo accepted, in bytes (the gate's decoder limit is a sensible value).
    pub max_photo_bytes: u64,
    /// Webhook of jobs submitted without their own (`webhook.url`).
    pub default_webhook: Option<String>,
    /// `webhook.allow_private_networks`: without it a URL on a non-public IP address is
    /// refused at submission (the dispatcher would refuse to call it anyway).
    pub allow_private_webhooks: bool,
}

/// Hex SHA-256 of the photo: the dedupe key within a batch.
pub fn content_hash(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The image format by magic bytes, as the extension the stored object gets.
pub fn sniff_image(bytes: &[u8]) -> Option<&'static str> {
    const SIGNATURES: [(&[u8], &str); 6] = [
        (b"\xFF\xD8\xFF", "jpg"),
        (b"\x89PNG\r\n\x1A\n", "png"),
        (b"II*\0", "tif"),
        (b"MM\0*", "tif"),
        (b"BM", "bmp"),
        (b"RIFF", "webp"),
    ];
    let (_, ext) = SIGNATURES.iter().find(|(magic, _)| bytes.starts_with(magic))?;
    // RIFF is a container: only RIFF....WEBP is an image.
    if *ext == "webp" && bytes.get(8..12) != Some(b"WEBP".as_slice()) {
        return None;
    }
    Some(ext)
}

/// Where a checked photo's bytes are: in memory (CLI, tests) or in a spool file.
enum PhotoBody<'a> {
    Memory(Bytes),
    File { path: &'a Path, size: u64 },
}

/// Bytes kept from the start of a spooled photo: enough for [`sniff_image`].
const SNIFF_BYTES: usize = 16;
/// Write buffer of a spool file: the most of an upload held in memory at once.
const SPOOL_BUFFER: usize = 64 * 1024;

/// A photo being received in chunks, written to a temporary file as it arrives while
/// its SHA-256 and first bytes are taken, so an upload of up to `max_photo_bytes` costs
/// a chunk of memory rather than the whole photo. The file is removed when the spool
/// (or the [`SpooledPhoto`] it becomes) is dropped, whatever happens to the request.
pub struct PhotoSpool {
    file: tokio::io::BufWriter<tokio::fs::File>,
    path: tempfile::TempPath,
    hasher: Sha256,
    head: Vec<u8>,
    size: u64,
    limit: u64,
}

/// A whole photo on disk, checked to be a non-empty image within the size limit.
#[derive(Debug)]
pub struct SpooledPhoto {
    path: tempfile::TempPath,
    /// Bytes in the file.
    pub size: u64,
    /// [`content_hash`] of the bytes.
    pub hash: String,
    /// The format by its first bytes ([`sniff_image`]).
    pub ext: &'static str,
}

impl PhotoSpool {
    /// A new spool file in `dir`, refusing more than `limit` bytes.
    pub fn create(dir: &Path, limit: u64) -> Result<Self, IngestError> {
        let spool_error = |source| IngestError::Spool { dir: dir.to_path_buf(), source };
        let (file, path) = tempfile::Builder::new().prefix("upload-").tempfile_in(dir).map_err(spool_error)?.into_parts();
        Ok(PhotoSpool {
            file: tokio::io::BufWriter::with_capacity(SPOOL_BUFFER, tokio::fs::File::from_std(file)),
            path,
            hasher: Sha256::new(),
            head: Vec::with_capacity(SNIFF_BYTES),
            size: 0,
            limit,
        })
    }

    /// Appends a chunk; `UploadTooLarge` as soon as the photo passes the limit.
    pub async fn write(&mut self, chunk: &[u8]) -> Result<(), IngestError> {
        let size = self.size + chunk.len() as u64;
        if size > self.limit {
            return Err(IngestError::UploadTooLarge { limit: self.limit });
        }
        let wanted = SNIFF_BYTES.saturating_sub(self.head.len()).min(chunk.len());
        self.head.extend_from_slice(&chunk[..wanted]);
        self.hasher.update(chunk);
        self.file.write_all(chunk).await.map_err(|source| self.io_error(source))?;
        self.size = size;
        Ok(())
    }

    /// The received photo, flushed to disk and checked: not empty, an image by its
    /// first bytes.
    pub async fn finish(mut self) -> Result<SpooledPhoto, IngestError> {
        self.file.flush().await.map_err(|source| self.io_error(source))?;
        if self.size == 0 {
            return Err(IngestError::EmptyPhoto);
        }
        let ext = sniff_image(&self.head).ok_or(IngestError::NotAnImage)?;
        Ok(SpooledPhoto { path: self.path, size: self.size, hash: hex::encode(self.hasher.finalize()), ext })
    }

    fn io_error(&self, source: std::io::Error) -> IngestError {
        IngestError::Spool { dir: self.path.parent().map(Path::to_path_buf).unwrap_or_default(), source }
    }
}

impl SpooledPhoto {
    /// The spool file (removed when this is dropped).
    pub fn path(&self) -> &Path {
        &self.path
    }
}

pub fn validate_batch(name: &str) -> Result<(), IngestError> {
    let ok = !name.is_empty()
        && name.chars().count() <= MAX_BATCH_NAME
        && !name.contains('/')
        && name.chars().all(|c| !c.is_control())
        && name.trim() == name;
    if ok {
        Ok(())
    } else {
        Err(IngestError::InvalidBatch(name.to_string()))
    }
}

fn validate_external_id(id: &Option<String>) -> Result<(), IngestError> {
    match id {
        Some(id) if id.is_empty() || id.chars().count() > MAX_EXTERNAL_ID || id.chars().any(char::is_control) => {
            Err(IngestError::InvalidExternalId(id.clone()))
        }
        _ => Ok(()),
    }
}

impl Ingest {
    /// Stores `photo` and submits it as a job of `meta.batch`, or returns the batch's
    /// existing job for the same content (publishing it if an earlier run never did).
    pub async fn submit_photo(&self, photo: Bytes, meta: &PhotoMeta) -> Result<Submitted, IngestError> {
        let webhook = self.validate_meta(meta)?;
        if photo.is_empty() {
            return Err(IngestError::EmptyPhoto);
        }
        if photo.len() as u64 > self.max_photo_bytes {
            return Err(IngestError::PhotoTooLarge { size: photo.len() as u64, limit: self.max_photo_bytes });
        }
        let ext = sniff_image(&photo).ok_or(IngestError::NotAnImage)?;
        let hash = content_hash(&photo);
        self.submit_new(meta, webhook, hash, ext, PhotoBody::Memory(photo)).await
    }

    /// [`Ingest::submit_photo`] for a photo spooled to disk as it arrived (the API's
    /// uploads): streamed from its file into the blob store, never whole in memory.
    pub async fn submit_spooled(&self, photo: &SpooledPhoto, meta: &PhotoMeta) -> Result<Submitted, IngestError> {
        let webhook = self.validate_meta(meta)?;
        if photo.size > self.max_photo_bytes {
            return Err(IngestError::PhotoTooLarge { size: photo.size, limit: self.max_photo_bytes });
        }
        let body = PhotoBody::File { path: &photo.path, size: photo.size };
        self.submit_new(meta, webhook, photo.hash.clone(), photo.ext, body).await
    }

    /// Checks what the caller sent besides the photo, before the photo is looked at,
    /// and returns the job's webhook (see [`Ingest::webhook_for`]).
    fn validate_meta<'a>(&'a self, meta: &'a PhotoMeta) -> Result<Option<&'a str>, IngestError> {
        validate_batch(&meta.batch)?;
        validate_external_id(&meta.external_id)?;
        self.webhook_for(meta)
    }

    /// A checked photo: the batch's job for its content, else a new job with the photo
    /// stored under its input key.
    async fn submit_new(
        &self,
        meta: &PhotoMeta,
        webhook: Option<&str>,
        hash: String,
        ext: &str,
        body: PhotoBody<'_>,
    ) -> Result<Submitted, IngestError> {
        if let Some(existing) = self.find_by_content(&meta.batch, &hash).await? {
            return self.resume(existing, webhook).await;
        }
        let id = JobId::new();
        let input_key = keys::input(id, &format!("photo.{ext}"))?;
        match body {
            PhotoBody::Memory(photo) => self.blobs.put(&input_key, photo).await?,
            PhotoBody::File { path, size } => self.blobs.put_file(&input_key, path, size).await?,
        }
        self.record_and_publish(id, input_key, hash, meta, webhook, true).await
    }

    /// Submits an object already in the blob store (uploaded by the caller), without
    /// copying it: the job's input key is `key`.
    pub async fn submit_object(&self, key: &BlobKey, meta: &PhotoMeta) -> Result<Submitted, IngestError> {
        let webhook = self.validate_meta(meta)?;
        let meta_of = self.blobs.head(key).await.map_err(|e| match e {
            BlobError::NotFound { key } => IngestError::MissingObject(key),
            other => IngestError::Blob(other),
        })?;
        if meta_of.size > self.max_photo_bytes {
            return Err(IngestError::PhotoTooLarge { size: meta_of.size, limit: self.max_photo_bytes });
        }
        let photo = self.blobs.get(key).await?;
        if photo.is_empty() {
            return Err(IngestError::EmptyPhoto);
        }
        sniff_image(&photo).ok_or(IngestError::NotAnImage)?;
        let hash = content_hash(&photo);
        if let Some(existing) = self.find_by_content(&meta.batch, &hash).await? {
            return self.resume(existing, webhook).await;
        }
        self.record_and_publish(JobId::new(), key.clone(), hash, meta, webhook, false).await
    }

    async fn record_and_publish(
        &self,
        id: JobId,
        input_key: BlobKey,
        hash: String,
        meta: &PhotoMeta,
        webhook: Option<&str>,
        uploaded: bool,
    ) -> Result<Submitted, IngestError> {
        let new = NewJob {
            id,
            batch: meta.batch.clone(),
            input_key: input_key.clone(),
            content_hash: hash,
            external_id: meta.external_id.clone(),
            category: meta.category,
            size: meta.size,
        };
        let message = StageMessage::new(id, Stage::Gate, meta.category);
        // The job's root span: the outbox row keeps its context, and the message carries
        // it, so every stage's span is part of this one trace.
        let span = submit_span(id, &meta.batch, meta.external_id.as_deref());
        let recorded = async {
            let queued = self.jobs.submit_with_message(&new, &message, HOLD, webhook).await?;
            let published = match (&queued.held, queued.submission.created) {
                (Some(entry), true) => Some(self.publish_held(entry).await),
                _ => None,
            };
            Ok::<_, IngestError>((queued.submission, published))
        }
        .instrument(span)
        .await?;
        let (submission, published) = recorded;
        if !submission.created {
            // A concurrent submission of the same photo won; ours is an orphan.
            if uploaded && submission.job.input_key != input_key {
                let _ = self.blobs.delete(&input_key).await;
            }
            return self.resume(submission.job, webhook).await;
        }
        let published = published.unwrap_or(false);
        Ok(Submitted { job: submission.job, created: true, published, pending: !published })
    }

    /// An existing job: publish it only if no earlier submission did. A webhook asked
    /// for now is added if the job has none (and fires at once if it has finished).
    async fn resume(&self, job: Job, webhook: Option<&str>) -> Result<Submitted, IngestError> {
        self.register_webhook(job.id, webhook).await?;
        if job.state != JobState::Submitted {
            return Ok(Submitted { job, created: false, published: false, pending: false });
        }
        let span = submit_span(job.id, &job.batch, job.external_id.as_deref());
        let outcome = async {
            let outbox = self.jobs.outbox();
            // The job's own row when an earlier submission left it and it is due (not
            // leased by a relay, not backing off); else, for a job recorded before the
            // outbox, a new row if it was never published.
            let mut held = outbox.claim_due(OutboxScope::Job(job.id), 1, HOLD).await?.into_iter().next();
            if held.is_none() {
                let message = StageMessage::new(job.id, Stage::Gate, job.category);
                held = outbox.adopt_unpublished(&message, &TraceHeaders::current(), HOLD).await?;
            }
            let outcome = match held {
                Some(entry) => {
                    let published = self.publish_held(&entry).await;
                    (published, !published)
                }
                // Published before, or being published by a relay right now.
                None => (false, !outbox.for_job(job.id).await?.is_empty()),
            };
            Ok::<_, IngestError>(outcome)
        }
        .instrument(span)
        .await;
        let (published, pending) = outcome?;
        Ok(Submitted { job, created: false, published, pending })
    }

    /// Publishes a row this submission holds (waiting at most [`PUBLISH_WAIT`]). False
    /// when the broker did not confirm it: the row is given back to the relays, and the
    /// submission still succeeds, since the job and its message are recorded.
    async fn publish_held(&self, entry: &OutboxEntry) -> bool {
        let relay = OutboxRelay::new(self.jobs.clone(), self.queue.clone()).with_publish_timeout(PUBLISH_WAIT);
        match relay.publish(entry, Via::Submit).await {
            Ok(()) => true,
            Err(error) if error.published() => {
                tracing::warn!(job = %entry.message.job_id, %error, "gate message published, but its outbox row stays until its lease ends");
                true
            }
            Err(error) => {
                tracing::warn!(job = %entry.message.job_id, %error, "gate message left in the outbox for the relay");
                false
            }
        }
    }

    /// The job's webhook (its own, else the default), checked.
    fn webhook_for<'a>(&'a self, meta: &'a PhotoMeta) -> Result<Option<&'a str>, IngestError> {
        let url = meta.webhook_url.as_deref().or(self.default_webhook.as_deref());
        if let Some(url) = url {
            webhook::validate_url(url).map_err(|_| IngestError::InvalidWebhook(url.to_string()))?;
            if !self.allow_private_webhooks {
                if let Some(ip) = webhook::non_public_literal(url) {
                    return Err(IngestError::WebhookNotPublic { url: url.to_string(), ip });
                }
            }
        }
        Ok(url)
    }

    async fn register_webhook(&self, id: JobId, url: Option<&str>) -> Result<(), IngestError> {
        let Some(url) = url else { return Ok(()) };
        Ok(self.jobs.webhooks().register(id, url).await?)
    }

    /// The batch's job for this content, if any.
    pub async fn find_by_content(&self, batch: &str, hash: &str) -> Result<Option<Job>, IngestError> {
        Ok(self.jobs.find_by_content(batch, hash).await?)
    }
}

/// The root span of a job's trace.
fn submit_span(id: JobId, batch: &str, external_id: Option<&str>) -> tracing::Span {
    tracing::info_span!(
        "submit",
        otel.name = "submit",
        otel.kind = "producer",
        job_id = %id,
        batch = %batch,
        external_id = external_id,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_are_recognised_by_their_first_bytes() {
        assert_eq!(sniff_image(b"\xFF\xD8\xFF\xE0rest"), Some("jpg"));
        assert_eq!(sniff_image(b"\x89PNG\r\n\x1A\nrest"), Some("png"));
        assert_eq!(sniff_image(b"RIFF\0\0\0\0WEBPVP8 "), Some("webp"));
        assert_eq!(sniff_image(b"RIFF\0\0\0\0WAVEfmt "), None, "a WAV file is RIFF too");
        assert_eq!(sniff_image(b"%PDF-1.7"), None);
        assert_eq!(sniff_image(b""), None);
    }

    #[test]
    fn batch_names_and_external_ids_are_checked() {
        for good in ["spring-2026", "catalog 7", "Été"] {
            assert!(validate_batch(good).is_ok(), "{good}");
        }
        for bad in ["", " padded", "a/b", "tab\there", &"x".repeat(201)] {
            assert!(validate_batch(bad).is_err(), "{bad:?}");
        }
        assert!(validate_external_id(&None).is_ok());
        assert!(validate_external_id(&Some("SKU-1".into())).is_ok());
        assert!(validate_external_id(&Some(String::new())).is_err());
        assert!(validate_external_id(&Some("a\nb".into())).is_err());
    }

    #[tokio::test]
    async fn a_spooled_photo_has_the_hash_and_format_of_its_bytes_and_its_file_goes_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let mut photo = b"\x89PNG\r\n\x1A\n".to_vec();
        photo.extend((0..200_000u32).map(|i| (i % 251) as u8));
        let mut spool = PhotoSpool::create(dir.path(), 1 << 20).unwrap();
        // Chunks that split the sniffed head and straddle the write buffer.
        for chunk in [&photo[..3], &photo[3..70_000], &photo[70_000..]] {
            spool.write(chunk).await.unwrap();
        }
        let spooled = spool.finish().await.unwrap();
        assert_eq!((spooled.hash.as_str(), spooled.ext, spooled.size), (content_hash(&photo).as_str(), "png", photo.len() as u64));
        assert_eq!(std::fs::read(spooled.path()).unwrap(), photo);
        let path = spooled.path().to_path_buf();
        drop(spooled);
        assert!(!path.exists(), "the spool file outlived its photo");
    }

    #[tokio::test]
    async fn a_spool_refuses_past_its_limit_empty_uploads_and_non_images() {
        let dir = tempfile::tempdir().unwrap();
        let mut spool = PhotoSpool::create(dir.path(), 10).unwrap();
        spool.write(b"\xFF\xD8\xFF\xE0").await.unwrap();
        assert!(matches!(spool.write(b"1234567").await, Err(IngestError::UploadTooLarge { limit: 10 })));
        drop(spool);
        let empty = PhotoSpool::create(dir.path(), 10).unwrap();
        assert!(matches!(empty.finish().await, Err(IngestError::EmptyPhoto)));
        let mut pdf = PhotoSpool::create(dir.path(), 100).unwrap();
        pdf.write(b"%PDF-1.7").await.unwrap();
        assert!(matches!(pdf.finish().await, Err(IngestError::NotAnImage)));
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "refused uploads leave no spool files");
        let missing = dir.path().join("no-such-dir");
        assert!(matches!(PhotoSpool::create(&missing, 10), Err(IngestError::Spool { .. })));
    }

    #[test]
    fn content_hash_is_sha256_hex() {
        assert_eq!(content_hash(b"abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }
}
