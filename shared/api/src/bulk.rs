//! The catalog team's commands as library functions: submit a directory or manifest
//! with bounded concurrency, report a batch, download its meshes named by SKU.

use bytes::Bytes;
use futures::stream::{self, StreamExt};
use mono2mesh_core::JobState;
use mono2mesh_infra::blob::BlobStore;
use mono2mesh_infra::jobs::{Job, JobStore, JobStoreError, Page};
use mono2mesh_infra::outbox::{OutboxRelay, RelayError};
use std::collections::HashSet;
use std::path::{Path, PathBuf};

use crate::ingest::{Ingest, IngestError, PhotoMeta, Submitted};
use crate::manifest::ManifestEntry;
use crate::views::output_keys;

/// What happened to one photo of a submission.
#[derive(Debug)]
pub struct ItemOutcome {
    pub path: PathBuf,
    pub result: Result<Submitted, IngestError>,
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SubmitReport {
    pub created: usize,
    /// Already in the batch (by content hash) from an earlier run.
    pub skipped: usize,
    /// Already in the batch but never published (an earlier run was cut off): published
    /// now, or queued in the outbox (then also counted in `pending`).
    pub resumed: usize,
    /// Recorded, but their gate message still waits in the outbox (the broker did not
    /// confirm it): a relay publishes it. Counted in `created` or `resumed` too.
    pub pending: usize,
    pub failed: Vec<(PathBuf, String)>,
}

impl SubmitReport {
    fn add(&mut self, outcome: &ItemOutcome) {
        if let Ok(s) = &outcome.result {
            self.pending += usize::from(s.pending);
        }
        match &outcome.result {
            Ok(s) if s.created => self.created += 1,
            Ok(s) if s.published || s.pending => self.resumed += 1,
            Ok(_) => self.skipped += 1,
            Err(e) => self.failed.push((outcome.path.clone(), e.to_string())),
        }
    }
}

/// Relays what a submission into `batch` left in the outbox (gate messages the broker
/// did not confirm in time), pass after pass until none is due or the broker fails
/// again. Returns how many of the batch's messages still wait: a relay (`mono2mesh
/// serve`, the gate worker) publishes them later.
pub async fn flush_outbox(ingest: &Ingest, batch: &str) -> Result<i64, IngestError> {
    const PASS: usize = 256;
    let relay = OutboxRelay::new(ingest.jobs.clone(), ingest.queue.clone());
    loop {
        match relay.relay_batch(batch, PASS).await {
            Ok(n) if n == PASS => continue,
            Ok(_) => break,
            Err(RelayError::Jobs(e)) => return Err(e.into()),
            // Left for the relays: the count below says how many.
            Err(error) => {
                tracing::warn!(%error, "outbox flush stopped");
                break;
            }
        }
    }
    Ok(ingest.jobs.outbox().pending_count(Some(batch)).await?)
}

/// Submits every entry to `batch`, `concurrency` at a time, calling `progress` after
/// each photo. A photo that fails (unreadable, not an image) is reported and the
/// rest go on; re-running the same submission skips what is already in the batch.
pub async fn submit_all(
    ingest: &Ingest,
    entries: Vec<ManifestEntry>,
    batch: &str,
    concurrency: usize,
    mut progress: impl FnMut(&ItemOutcome),
) -> Result<SubmitReport, IngestError> {
    crate::ingest::validate_batch(batch)?;
    let mut report = SubmitReport::default();
    let mut outcomes = stream::iter(entries)
        .map(|entry| async move {
            let result = async {
                let photo = tokio::fs::read(&entry.path)
                    .await
                    .map_err(|source| IngestError::ReadPhoto { path: entry.path.clone(), source })?;
                let meta = PhotoMeta {
                    batch: batch.to_string(),
                    external_id: entry.external_id.clone(),
                    category: entry.category,
                    size: entry.size,
                    file_name: entry.path.file_name().and_then(|n| n.to_str()).map(str::to_string),
                    // The ingest's default (`webhook.url`) applies.
                    webhook_url: None,
                };
                ingest.submit_photo(Bytes::from(photo), &meta).await
            }
            .await;
            ItemOutcome { path: entry.path, result }
        })
        .buffer_unordered(concurrency.max(1));
    while let Some(outcome) = outcomes.next().await {
        report.add(&outcome);
        progress(&outcome);
    }
    Ok(report)
}

/// Every job of a batch, in submission order.
pub async fn all_batch_jobs(jobs: &JobStore, batch: &str) -> Result<Vec<Job>, JobStoreError> {
    const PAGE: u32 = 500;
    let mut all = Vec::new();
    let mut after = None;
    loop {
        let page = jobs.list_batch_jobs(batch, Page { after, limit: PAGE }).await?;
        let full = page.len() == PAGE as usize;
        after = page.last().map(|j| j.id);
        all.extend(page);
        if !full {
            return Ok(all);
        }
    }
}

/// A file name made from a SKU: path separators and other awkward characters become '_'.
pub fn safe_file_stem(name: &str) -> String {
    let stem: String = name
        .chars()
        .map(|c| if c.is_alphanumeric() || matches!(c, '-' | '_' | '.') { c } else { '_' })
        .collect();
    let stem = stem.trim_start_matches('.');
    if stem.is_empty() {
        "_".to_string()
    } else {
        stem.to_string()
    }
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct FetchReport {
    pub written: Vec<PathBuf>,
    /// Jobs not done yet (or rejected/failed), which have no mesh to fetch.
    pub not_done: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error(transparent)]
    Jobs(#[from] JobStoreError),
    #[error(transparent)]
    Blob(#[from] mono2mesh_infra::blob::BlobError),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("no batch {0:?}")]
    NoBatch(String),
}

/// Downloads every output of the batch's finished jobs into `out_dir` as
/// `<SKU>.<ext>` (or `<SKU>-<output>.<ext>` when a job has several outputs of the same
/// extension); jobs without a SKU use their id. Two jobs with the same SKU get the
/// job id appended, so nothing is overwritten silently.
pub async fn fetch_batch(jobs: &JobStore, blobs: &dyn BlobStore, batch: &str, out_dir: &Path) -> Result<FetchReport, FetchError> {
    if jobs.batch_summary(batch).await?.is_none() {
        return Err(FetchError::NoBatch(batch.to_string()));
    }
    tokio::fs::create_dir_all(out_dir).await.map_err(|e| FetchError::Io { path: out_dir.to_path_buf(), source: e })?;
    let all = all_batch_jobs(jobs, batch).await?;
    let mut report = FetchReport::default();
    let mut used = HashSet::new();
    for job in all.iter() {
        if job.state != JobState::Done {
            report.not_done += 1;
            continue;
        }
        let sku = safe_file_stem(job.external_id.as_deref().unwrap_or(&job.id.to_string()));
        let outputs = output_keys(job);
        for (name, key) in &outputs {
            let ext = key.file_name().rsplit_once('.').map_or("bin", |(_, e)| e);
            let same_ext = outputs.values().filter(|k| k.file_name().ends_with(&format!(".{ext}"))).count();
            let mut stem = if same_ext > 1 { format!("{sku}-{}", safe_file_stem(name)) } else { sku.clone() };
            if !used.insert(format!("{stem}.{ext}")) {
                stem = format!("{stem}-{}", job.id);
                used.insert(format!("{stem}.{ext}"));
            }
            let path = out_dir.join(format!("{stem}.{ext}"));
            let body = blobs.get(key).await?;
            tokio::fs::write(&path, &body).await.map_err(|e| FetchError::Io { path: path.clone(), source: e })?;
            report.written.push(path);
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::safe_file_stem;

    #[test]
    fn skus_become_safe_file_names() {
        assert_eq!(safe_file_stem("SKU-12_a.b"), "SKU-12_a.b");
        assert_eq!(safe_file_stem("../../etc/passwd"), "_.._etc_passwd");
        assert_eq!(safe_file_stem("a/b c"), "a_b_c");
        assert_eq!(safe_file_stem(""), "_");
        assert_eq!(safe_file_stem(".."), "_");
    }
}
