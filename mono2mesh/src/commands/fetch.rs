//! `mono2mesh fetch --batch NAME -o DIR`: download a batch's finished meshes, named by SKU.

use anyhow::Context;
use clap::Args;
use mono2mesh_api::bulk::fetch_batch;
use mono2mesh_infra::blob::open_blob_store;
use mono2mesh_infra::jobs::JobStore;
use std::path::PathBuf;

use super::services::{block_on, SettingsArgs};

#[derive(Debug, Args)]
pub struct FetchArgs {
    #[arg(long)]
    pub batch: String,
    /// Directory to write `<SKU>.<ext>` files into (created if missing).
    #[arg(short = 'o', long = "out")]
    pub out: PathBuf,
    #[command(flatten)]
    pub settings: SettingsArgs,
}

pub fn run(args: FetchArgs) -> anyhow::Result<()> {
    let settings = args.settings.load()?;
    block_on(async move {
        let jobs = JobStore::connect(&settings.database).await.context("connecting to the job store")?;
        let blobs = open_blob_store(&settings.blob).await.context("opening the blob store")?;
        let report = fetch_batch(&jobs, blobs.as_ref(), &args.batch, &args.out).await?;
        println!(
            "{} files written to {}; {} jobs not done yet (or rejected/failed)",
            report.written.len(),
            args.out.display(),
            report.not_done
        );
        Ok(())
    })
}
