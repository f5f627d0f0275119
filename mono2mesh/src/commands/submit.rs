//! `mono2mesh submit DIR|MANIFEST.csv`: upload photos, record jobs, queue them (each
//! job's gate message goes through the outbox: published at once, and what the broker
//! did not confirm is relayed once more before the command exits).

use anyhow::{bail, Context};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use mono2mesh_core::JobState;
use mono2mesh_infra::jobs::{BatchSummary, JobStore};
use mono2mesh_api::bulk::{flush_outbox, submit_all};
use mono2mesh_api::manifest::read_source;
use std::path::PathBuf;

use super::services::{block_on, connect, ingest, SettingsArgs};

#[derive(Debug, Args)]
pub struct SubmitArgs {
    /// A directory of photos (SKU = file name) or a CSV manifest with columns
    /// path, sku, category (category optional; it skips classification).
    pub source: PathBuf,
    /// Batch to submit into; re-running into the same batch skips photos already in it.
    /// Defaults to the directory's or manifest's name.
    #[arg(long)]
    pub batch: Option<String>,
    /// Photos uploaded at the same time.
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,
    /// After submitting, follow the batch with a progress bar until every job has ended
    /// (done, rejected or failed); the workers do the work.
    #[arg(long)]
    pub wait: bool,
    /// With --wait: give up waiting after this many seconds (the jobs go on).
    #[arg(long, default_value_t = 3600)]
    pub wait_timeout_s: u64,
    #[command(flatten)]
    pub settings: SettingsArgs,
}

pub fn run(args: SubmitArgs) -> anyhow::Result<()> {
    let batch = match &args.batch {
        Some(batch) => batch.clone(),
        None => match args.source.file_stem().and_then(|s| s.to_str()) {
            Some(stem) => stem.to_string(),
            None => bail!("cannot name a batch after {}; pass --batch", args.source.display()),
        },
    };
    let entries = read_source(&args.source)?;
    let settings = args.settings.load()?;
    block_on(async move {
        // With a collector configured, each photo's job trace starts here (the `submit`
        // span); without one the command keeps its terminal free of log lines.
        let traced = settings.telemetry.otlp_endpoint.is_some();
        if traced {
            mono2mesh_infra::telemetry::init_tracing(&settings.telemetry)?;
        }
        let services = connect(settings).await?;
        let ingest = ingest(&services)?;
        let bar = ProgressBar::new(entries.len() as u64);
        bar.set_style(
            ProgressStyle::with_template("{bar:40} {pos}/{len} photos  {per_sec}  eta {eta}  {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        let report = submit_all(&ingest, entries, &batch, args.concurrency, |outcome| {
            if let Err(e) = &outcome.result {
                // Not `bar.println`: a hidden bar (output not a terminal) drops its lines.
                bar.suspend(|| eprintln!("failed: {}: {e}", outcome.path.display()));
            }
            bar.inc(1);
        })
        .await?;
        bar.finish_and_clear();
        // What the broker did not confirm during the run gets one more try; the rest
        // stays in the outbox for `mono2mesh serve` or the gate worker.
        let waiting = flush_outbox(&ingest, &batch).await?;
        let followed = if args.wait { Some(follow_batch(&services.jobs, &batch, args.wait_timeout_s).await?) } else { None };
        let _ = services.queue.close().await;
        if traced {
            let _ = tokio::task::spawn_blocking(mono2mesh_infra::telemetry::shutdown).await;
        }
        println!(
            "batch {batch}: {} submitted, {} already submitted (skipped), {} resumed, {} failed",
            report.created,
            report.skipped,
            report.resumed,
            report.failed.len()
        );
        if waiting > 0 {
            println!(
                "{waiting} jobs are recorded but not yet queued (the broker did not confirm them): \
                 `mono2mesh serve` or a gate worker publishes them"
            );
        }
        if let Some(summary) = followed {
            let counts: Vec<String> = summary.by_state.iter().filter(|(_, n)| *n > 0).map(|(s, n)| format!("{n} {}", s.name())).collect();
            println!("batch {batch}: {}", counts.join(", "));
            let left = summary.total - finished(&summary);
            if left > 0 {
                bail!("gave up waiting after {} s with {left} jobs still running (they go on)", args.wait_timeout_s);
            }
        }
        if !report.failed.is_empty() {
            bail!("{} photos could not be submitted (listed above); fix them and re-run: the rest are skipped", report.failed.len());
        }
        Ok(())
    })
}

fn finished(summary: &BatchSummary) -> i64 {
    JobState::ALL.iter().filter(|s| s.is_terminal()).map(|&s| summary.count(s)).sum()
}

/// Polls the batch's counts once a second, drawing finished/total, until every job has
/// ended or `timeout_s` passed; the last counts.
async fn follow_batch(jobs: &JobStore, batch: &str, timeout_s: u64) -> anyhow::Result<BatchSummary> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(timeout_s);
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} jobs ended  {per_sec}  eta {eta}  {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    loop {
        let summary = jobs.batch_summary(batch).await?.with_context(|| format!("no batch {batch:?}"))?;
        let ended = finished(&summary);
        bar.set_length(summary.total.max(0) as u64);
        bar.set_position(ended.max(0) as u64);
        bar.set_message(format!(
            "{} done, {} rejected, {} failed",
            summary.count(JobState::Done),
            summary.count(JobState::Rejected),
            summary.count(JobState::Failed)
        ));
        if ended >= summary.total || std::time::Instant::now() >= deadline {
            bar.finish_and_clear();
            return Ok(summary);
        }
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
}
