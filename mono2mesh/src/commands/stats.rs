//! `mono2mesh stats [--since 1h]`: per-stage throughput and latency, queue depths and
//! consumers, reject reasons.

use anyhow::Context;
use clap::Args;
use mono2mesh_api::stats::{job_stats, parse_window, queue_depths, render_table};
use mono2mesh_infra::config::QueueBackend;
use mono2mesh_infra::jobs::JobStore;
use mono2mesh_infra::queue::{topology, Lane};

use super::services::{block_on, SettingsArgs};

#[derive(Debug, Args)]
pub struct StatsArgs {
    /// Window: 90s, 15m, 1h, 2d.
    #[arg(long, default_value = "1h")]
    pub since: String,
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub settings: SettingsArgs,
}

pub fn run(args: StatsArgs) -> anyhow::Result<()> {
    let window = parse_window(&args.since)?;
    let settings = args.settings.load()?;
    block_on(async move {
        let jobs = JobStore::connect(&settings.database).await.context("connecting to the job store")?;
        let mut stats = job_stats(&jobs, window).await?;
        match settings.queue.backend {
            QueueBackend::Amqp => {
                let topology = topology(&settings.queue, Lane::all())?;
                match queue_depths(&settings.queue.url, &topology).await {
                    Ok(depths) => stats.queues = depths,
                    Err(e) => stats.queues_note = Some(format!("broker unreachable: {e}")),
                }
            }
            QueueBackend::Memory => stats.queues_note = Some("queue.backend is memory: no broker to ask".into()),
        }
        if args.json {
            println!("{}", serde_json::to_string_pretty(&stats)?);
        } else {
            print!("{}", render_table(&stats));
        }
        Ok(())
    })
}
