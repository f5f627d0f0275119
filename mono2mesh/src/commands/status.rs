//! `mono2mesh status JOB | --batch NAME [--json]`: a job's state, reasons and outputs,
//! or a batch's counts by state.

use anyhow::{bail, Context};
use clap::Args;
use mono2mesh_api::views::{BatchView, JobView};
use mono2mesh_core::JobId;
use mono2mesh_infra::jobs::JobStore;

use super::services::{block_on, SettingsArgs};

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Job id.
    #[arg(required_unless_present = "batch", conflicts_with = "batch")]
    pub job: Option<String>,
    /// Batch name: job counts by state.
    #[arg(long)]
    pub batch: Option<String>,
    /// Print JSON (the API's job and batch shapes).
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub settings: SettingsArgs,
}

pub fn run(args: StatusArgs) -> anyhow::Result<()> {
    let settings = args.settings.load()?;
    block_on(async move {
        let jobs = JobStore::connect(&settings.database).await.context("connecting to the job store")?;
        if let Some(batch) = &args.batch {
            let Some(summary) = jobs.batch_summary(batch).await? else { bail!("no batch {batch:?}") };
            let view = BatchView::of(&summary);
            if args.json {
                println!("{}", serde_json::to_string_pretty(&view)?);
            } else {
                println!("batch {} ({} jobs, {} finished)", view.name, view.total, view.finished);
                for (state, count) in &summary.by_state {
                    println!("  {:<14} {count}", state.name());
                }
            }
            return Ok(());
        }
        let raw = args.job.as_deref().unwrap_or_default();
        let id: JobId = raw.parse().with_context(|| format!("{raw:?} is not a job id"))?;
        let Some(job) = jobs.find_job(id).await? else { bail!("no job {id}") };
        let view = JobView::of(&job);
        if args.json {
            println!("{}", serde_json::to_string_pretty(&view)?);
            return Ok(());
        }
        let job = &view.job;
        println!("job {}  batch {}  state {}", job.id, job.batch, job.state);
        if let Some(sku) = &job.external_id {
            println!("  sku       {sku}");
        }
        if let Some(category) = job.category {
            let source = job.category_source.map_or("", |s| s.name());
            println!("  category  {category} ({source})");
        }
        if let Some(scores) = &job.gate_scores {
            println!("  gate      {scores}");
        }
        if let Some(error) = &job.last_error {
            println!("  reason    {error}");
        }
        for (stage, ms) in &view.stage_ms() {
            println!("  {stage:<10}{ms} ms");
        }
        for (name, key) in &view.outputs() {
            println!("  output    {name}: {key}");
        }
        Ok(())
    })
}
