//! `mono2mesh models ...`: bringing outside weights into our model files.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};
use mono2mesh_vision::classifier::{Architecture, ClassifierModel};
use mono2mesh_vision::device::DeviceChoice;

#[derive(Debug, Subcommand)]
pub enum ModelsCommand {
    /// Convert a torchvision state_dict (.pth, legacy or zip torch.save format) of
    /// resnet50 or mobilenet_v2 into our classifier model file. No Python needed.
    ImportTorchvision(ImportTorchvisionArgs),
    /// Convert an official Pix2Vox checkpoint (legacy or zip torch.save format, fp16 or
    /// fp32) into our Pix2Vox model file. No Python needed.
    ImportPix2vox(ImportPix2voxArgs),
}

#[derive(Debug, Args)]
pub struct ImportPix2voxArgs {
    /// The official checkpoint, e.g. Pix2Vox-F-ShapeNet.pth
    checkpoint: PathBuf,
    /// F or A
    #[arg(long)]
    variant: mono2mesh_vision::pix2vox::Variant,
    /// The category the weights are specialised for [default: general]
    #[arg(long)]
    category: Option<mono2mesh_core::Category>,
    /// Output model file (.safetensors)
    #[arg(short, long)]
    output: PathBuf,
}

#[derive(Debug, Args)]
pub struct ImportTorchvisionArgs {
    /// resnet50 or mobilenet_v2
    #[arg(long)]
    arch: Architecture,
    /// The torchvision checkpoint, e.g. mobilenet_v2-b0353104.pth
    checkpoint: PathBuf,
    /// Output model file (.safetensors)
    #[arg(short, long)]
    output: PathBuf,
    /// Provenance recorded in the file's metadata [default: the checkpoint's file name]
    #[arg(long)]
    source: Option<String>,
}

pub fn run(command: ModelsCommand) -> anyhow::Result<()> {
    match command {
        ModelsCommand::ImportTorchvision(args) => import_torchvision(args),
        ModelsCommand::ImportPix2vox(args) => import_pix2vox(args),
    }
}

fn import_torchvision(args: ImportTorchvisionArgs) -> anyhow::Result<()> {
    let source = args.source.unwrap_or_else(|| {
        args.checkpoint.file_name().map_or_else(|| args.checkpoint.display().to_string(), |n| n.to_string_lossy().into_owned())
    });
    let model = ClassifierModel::import_torchvision_checkpoint(args.arch, &args.checkpoint, &source, DeviceChoice::Cpu.resolve()?)
        .with_context(|| format!("importing {} as {}", args.checkpoint.display(), args.arch))?;
    model.save(&args.output).with_context(|| format!("writing {}", args.output.display()))?;
    println!("wrote {} ({}, source: {source})", args.output.display(), args.arch);
    Ok(())
}

fn import_pix2vox(args: ImportPix2voxArgs) -> anyhow::Result<()> {
    let model = mono2mesh_vision::pix2vox_model::import_official_checkpoint(
        &args.checkpoint,
        args.variant,
        args.category,
        DeviceChoice::Cpu.resolve()?,
    )
    .with_context(|| format!("importing {} as Pix2Vox-{}", args.checkpoint.display(), args.variant))?;
    model.save(&args.output).with_context(|| format!("writing {}", args.output.display()))?;
    let category = args.category.map_or("general".to_string(), |c| c.name().to_string());
    println!("wrote {} (Pix2Vox-{}, {category})", args.output.display(), args.variant);
    Ok(())
}
