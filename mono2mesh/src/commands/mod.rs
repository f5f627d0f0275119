//! Subcommands. Add a variant here and a module beside this file.

use clap::Subcommand;

pub mod classify;
pub mod dataset;
pub mod mesh;
pub mod models;
pub mod reconstruct;
pub mod run;
pub mod fetch;
pub mod gate;
pub mod serve;
pub mod services;
pub mod sheet;
pub mod size;
pub mod stats;
pub mod status;
pub mod submit;
pub mod train;
pub mod voxels;

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Photos to meshes in this process, no servers: gate, classify, reconstruct, refine.
    Run(run::RunArgs),
    /// Synthetic catalogs, mesh voxelizing, contact sheets and test photos.
    #[command(subcommand)]
    Dataset(dataset::DatasetCommand),
    /// Quality gate of photos: decision, blur and lighting scores, reasons (exit 0 even when rejected).
    Gate(gate::GateArgs),
    /// Category and top ImageNet classes of photos.
    Classify(classify::ClassifyArgs),
    /// Import and manage model files.
    #[command(subcommand)]
    Models(models::ModelsCommand),
    /// 32^3 voxels (binvox + probabilities.npy) from images with a Pix2Vox model file.
    Reconstruct(reconstruct::ReconstructArgs),
    /// Upload a directory or CSV manifest of photos as a batch of jobs (resumable).
    Submit(submit::SubmitArgs),
    /// A job's state and outputs, or a batch's counts by state.
    Status(status::StatusArgs),
    /// Download a batch's finished meshes, named by SKU.
    Fetch(fetch::FetchArgs),
    /// Serve the HTTP API and the status page.
    Serve(serve::ServeArgs),
    /// Per-stage throughput and latency, queue depths, reject reasons.
    Stats(stats::StatsArgs),
    /// Train Pix2Vox from scratch (the official recipe) on a dataset in ShapeNet layout.
    Train(train::TrainArgs),
    /// Fine-tune a model on one category (the paper's recipe), or on all into a general model.
    Finetune(train::FinetuneArgs),
    /// IoU of a Pix2Vox model on a dataset split, per category and overall.
    Eval(train::EvalArgs),
    /// Turn a voxel grid (.binvox) into a smoothed mesh file (obj, ply, stl, glb).
    Mesh(mesh::MeshArgs),
    /// Inspect voxel files.
    #[command(subcommand)]
    Voxels(voxels::VoxelsCommand),
    /// One picture of a run (photo | mesh | ground truth) and IoU where the truth is known.
    Sheet(sheet::SheetArgs),
}

pub fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Run(args) => run::run(args),
        Command::Dataset(command) => dataset::run(command),
        Command::Gate(args) => gate::run(args),
        Command::Classify(args) => classify::run(args),
        Command::Models(command) => models::run(command),
        Command::Reconstruct(args) => reconstruct::run(args),
        Command::Submit(args) => submit::run(args),
        Command::Status(args) => status::run(args),
        Command::Fetch(args) => fetch::run(args),
        Command::Serve(args) => serve::run(args),
        Command::Stats(args) => stats::run(args),
        Command::Train(args) => train::train(args),
        Command::Finetune(args) => train::finetune(args),
        Command::Eval(args) => train::eval(args),
        Command::Mesh(args) => mesh::run(args),
        Command::Voxels(command) => voxels::run(command),
        Command::Sheet(args) => sheet::run(args),
    }
}
