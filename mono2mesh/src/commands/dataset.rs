//! `mono2mesh dataset ...`: synthetic catalogs, Pascal3D+ imports, voxelizing meshes,
//! contact sheets and photo-style test images. All logic lives in mono2mesh-catalog; this is argument
//! parsing, progress display and file output.

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use mono2mesh_catalog::camera::ViewParams;
use mono2mesh_catalog::dataset::{synthesize, SplitFractions, SynthConfig};
use mono2mesh_catalog::pascal3d::{import_pascal3d, ImportConfig, Source, SplitFrom};
use mono2mesh_catalog::photo::{catalog_photo, photo, PhotoSettings};
use mono2mesh_catalog::render::Lighting;
use mono2mesh_catalog::studio::RenderStyle;
use mono2mesh_catalog::{generate, mesh_io, preview, voxelize, Rng};
use mono2mesh_core::Category;
use std::path::PathBuf;

#[derive(Debug, Subcommand)]
pub enum DatasetCommand {
    /// Generate a synthetic catalog in the ShapeNetRendering / ShapeNetVox32 layout.
    Synth(SynthArgs),
    /// Voxelize a mesh (.obj, .off, .ply) into a solid binvox grid.
    Voxelize(VoxelizeArgs),
    /// One PNG grid of sample renders per category plus a voxel preview.
    ContactSheet(ContactSheetArgs),
    /// Photo-like JPEGs of catalog models (backgrounds, blur, exposure) for gate/classifier tests.
    Photos(PhotosArgs),
    /// Import Pascal3D+ (release 1.1): object crops, voxelized CAD models, splits, in our layout.
    #[command(name = "import-pascal3d")]
    ImportPascal3d(ImportPascal3dArgs),
    /// Frame every rendering of a dataset into a copy, as the gate frames photos (`gate.framing = "auto"`).
    Frame(FrameArgs),
}

#[derive(Debug, Args)]
pub struct FrameArgs {
    /// Dataset in ShapeNet's layout (ShapeNetRendering/, ShapeNetVox32/, ...).
    pub src: PathBuf,
    /// The framed copy: renderings framed, everything else linked.
    #[arg(long)]
    pub out: PathBuf,
    /// Share of the frame's side the object's longer side fills (the gate's default).
    #[arg(long, default_value_t = mono2mesh_framing::DEFAULT_FILL)]
    pub fill: f32,
}

/// Categories as a comma list of Pascal names or synsets; `all` or `paper5` also work.
fn parse_categories(list: &str) -> anyhow::Result<Vec<Category>> {
    match list.trim() {
        "all" => Ok(Category::ALL.to_vec()),
        "paper5" => Ok(Category::PAPER_FIVE.to_vec()),
        other => other.split(',').filter(|s| !s.trim().is_empty()).map(|s| s.parse::<Category>().map_err(anyhow::Error::from)).collect(),
    }
}

#[derive(Debug, Args)]
pub struct SynthArgs {
    /// Comma-separated categories (Pascal names or synsets), `all` or `paper5`.
    #[arg(long, default_value = "all")]
    pub categories: String,
    #[arg(long, default_value_t = 10)]
    pub models_per_category: usize,
    #[arg(long, default_value_t = 24)]
    pub views: usize,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Output root (gets ShapeNetRendering/, ShapeNetVox32/, ShapeNet.json).
    #[arg(long)]
    pub out: PathBuf,
    #[arg(long, default_value_t = 137)]
    pub image_size: usize,
    /// Samples per pixel along each axis for antialiasing.
    #[arg(long, default_value_t = 3)]
    pub supersample: usize,
    #[arg(long, default_value_t = 32)]
    pub resolution: usize,
    #[arg(long, default_value_t = 0.7)]
    pub train_fraction: f32,
    #[arg(long, default_value_t = 0.1)]
    pub val_fraction: f32,
    /// catalog: opaque RGB product shots on studio backdrops (jittered cameras, textures);
    /// render: transparent RGBA with R2N2 cameras, like ShapeNetRendering.
    #[arg(long, default_value_t = RenderStyle::Catalog)]
    pub style: RenderStyle,
}

#[derive(Debug, Args)]
pub struct VoxelizeArgs {
    /// Input mesh: .obj, .off or .ply.
    pub mesh: PathBuf,
    /// Output .binvox file.
    #[arg(short = 'o', long)]
    pub out: PathBuf,
    #[arg(long, default_value_t = 32)]
    pub resolution: usize,
}

#[derive(Debug, Args)]
pub struct ContactSheetArgs {
    #[arg(long, default_value = "all")]
    pub categories: String,
    /// Models per row (each row ends with the first model's voxels).
    #[arg(long, default_value_t = 6)]
    pub per_category: usize,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Tile size in pixels.
    #[arg(long, default_value_t = 137)]
    pub tile: usize,
    #[arg(short = 'o', long, default_value = "contact_sheet.png")]
    pub out: PathBuf,
}

#[derive(Debug, Args)]
pub struct PhotosArgs {
    #[arg(long, default_value = "all")]
    pub categories: String,
    #[arg(long, default_value_t = 5)]
    pub per_category: usize,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    #[arg(long, default_value_t = 600)]
    pub width: usize,
    #[arg(long, default_value_t = 600)]
    pub height: usize,
    /// Degraded photos instead (varied backgrounds, blur and bad exposure, for testing the
    /// quality gate's rejections); without it, clean product shots in the synthetic
    /// catalog's style.
    #[arg(long)]
    pub degrade: bool,
    #[arg(long)]
    pub out: PathBuf,
}

#[derive(Debug, Args)]
pub struct ImportPascal3dArgs {
    /// The PASCAL3D+_release1.1 folder (or the folder holding it).
    pub root: PathBuf,
    /// Output root (gets ShapeNetRendering/, ShapeNetVox32/, ShapeNet.json, pascal3d/).
    #[arg(long)]
    pub out: PathBuf,
    /// Comma-separated categories (Pascal names or synsets), `all` or `paper5`.
    #[arg(long, default_value = "all")]
    pub categories: String,
    /// Comma-separated halves of the release: imagenet, pascal.
    #[arg(long, default_value = "imagenet,pascal")]
    pub sources: String,
    /// image-sets: Pascal3D+'s train/val lists (val becomes our test); seed: a seeded split.
    #[arg(long, default_value = "image-sets")]
    pub split_from: String,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Seeded split only.
    #[arg(long, default_value_t = 0.7)]
    pub train_fraction: f32,
    /// Share of the images held out as val (with image sets: of Pascal3D+'s train images).
    #[arg(long, default_value_t = 0.1)]
    pub val_fraction: f32,
    /// Also import objects marked truncated.
    #[arg(long)]
    pub include_truncated: bool,
    /// Also import objects marked occluded.
    #[arg(long)]
    pub include_occluded: bool,
    /// Also import objects marked difficult.
    #[arg(long)]
    pub include_difficult: bool,
    /// Skip objects whose box is narrower or lower than this many pixels.
    #[arg(long, default_value_t = 16.0)]
    pub min_box: f64,
    /// Margin around the box on each side, as a fraction of its longer side.
    #[arg(long, default_value_t = 0.1)]
    pub margin: f32,
    /// Side of the saved square crops, in pixels (137: the ShapeNet renders' size).
    #[arg(long, default_value_t = 137)]
    pub image_size: u32,
    #[arg(long, default_value_t = 32)]
    pub resolution: usize,
    /// Print every skipped object with its reason.
    #[arg(long)]
    pub list_skipped: bool,
}

pub fn run(command: DatasetCommand) -> anyhow::Result<()> {
    match command {
        DatasetCommand::Synth(args) => synth(args),
        DatasetCommand::Voxelize(args) => voxelize_mesh(args),
        DatasetCommand::ContactSheet(args) => contact_sheet(args),
        DatasetCommand::Photos(args) => photos(args),
        DatasetCommand::ImportPascal3d(args) => import_pascal3d_cmd(args),
        DatasetCommand::Frame(args) => frame_dataset(args),
    }
}

fn frame_dataset(args: FrameArgs) -> anyhow::Result<()> {
    let settings = mono2mesh_framing::FramingSettings { fill: args.fill, ..Default::default() };
    let bar = ProgressBar::new_spinner();
    bar.set_style(ProgressStyle::with_template("{spinner} {pos} renderings framed  {per_sec}").unwrap_or_else(|_| ProgressStyle::default_spinner()));
    let done = mono2mesh_framing::dataset::frame_dataset(&args.src, &args.out, &settings, |n| bar.set_position(n as u64))?;
    bar.finish_and_clear();
    for refusal in &done.refusals {
        eprintln!("left as it was: {refusal}");
    }
    println!(
        "{}: {} renderings framed at fill {}, {} left whole (busy background), {} refused (copied as they were)",
        args.out.display(),
        done.framed,
        args.fill,
        done.unframed,
        done.refused
    );
    Ok(())
}

fn import_pascal3d_cmd(args: ImportPascal3dArgs) -> anyhow::Result<()> {
    let sources = args.sources.split(',').filter(|s| !s.trim().is_empty()).map(|s| s.parse::<Source>().map_err(anyhow::Error::msg)).collect::<anyhow::Result<Vec<_>>>()?;
    if args.train_fraction < 0.0 || args.val_fraction < 0.0 || args.train_fraction + args.val_fraction > 1.0 {
        bail!("train and val fractions must be >= 0 and sum to at most 1");
    }
    let cfg = ImportConfig {
        categories: parse_categories(&args.categories)?,
        sources,
        split_from: args.split_from.parse::<SplitFrom>().map_err(anyhow::Error::msg)?,
        seed: args.seed,
        splits: SplitFractions { train: args.train_fraction, val: args.val_fraction },
        include_truncated: args.include_truncated,
        include_occluded: args.include_occluded,
        include_difficult: args.include_difficult,
        min_box_side: args.min_box,
        margin: args.margin,
        image_size: args.image_size,
        resolution: args.resolution,
        ..ImportConfig::default()
    };
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("{elapsed_precise} [{bar:40}] {pos}/{len} {msg}").unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let start = std::time::Instant::now();
    let report = import_pascal3d(&args.root, &args.out, &cfg, &|p| {
        bar.set_length(p.total as u64);
        bar.set_position(p.done as u64);
        bar.set_message(format!("{}: {}", p.category, p.stage));
    })
    .with_context(|| format!("importing {} into {}", args.root.display(), args.out.display()))?;
    bar.finish_and_clear();
    for (category, c) in &report.categories {
        let splits: Vec<String> = c.split_source.iter().map(|(s, how)| format!("{} {how}", s.name())).collect();
        println!(
            "{category}: {} files, {} objects -> {} samples (train {}, val {}, test {}), {} CAD models; split: {}",
            c.annotation_files,
            c.objects,
            c.imported,
            c.train,
            c.val,
            c.test,
            c.cad_models,
            splits.join(", ")
        );
    }
    let counts: Vec<String> = report.skip_counts().iter().map(|(k, v)| format!("{k} {v}")).collect();
    println!(
        "{} samples in {:.1} s -> {}; skipped {}{}",
        report.samples,
        start.elapsed().as_secs_f64(),
        args.out.display(),
        report.skipped.len(),
        if counts.is_empty() { String::new() } else { format!(" ({})", counts.join(", ")) }
    );
    if args.list_skipped {
        for s in &report.skipped {
            let object = s.object.map(|o| format!(" object {o}")).unwrap_or_default();
            println!("skipped {}{object}: {}", s.annotation, serde_json::to_string(&s.reason).unwrap_or_default());
        }
    } else if !report.skipped.is_empty() {
        println!("every skipped object and why: {} (or --list-skipped)", args.out.join(mono2mesh_catalog::pascal3d::REPORT_FILE).display());
    }
    let absent: Vec<&str> = cfg.categories.iter().filter(|c| !report.categories.contains_key(c)).map(|c| c.name()).collect();
    if !absent.is_empty() {
        println!("no annotations for: {}", absent.join(", "));
    }
    Ok(())
}

fn synth(args: SynthArgs) -> anyhow::Result<()> {
    let cfg = SynthConfig {
        categories: parse_categories(&args.categories)?,
        models_per_category: args.models_per_category,
        views: args.views,
        seed: args.seed,
        image_size: args.image_size,
        supersample: args.supersample,
        resolution: args.resolution,
        splits: SplitFractions { train: args.train_fraction, val: args.val_fraction },
        style: args.style,
    };
    if !(0.0..=1.0).contains(&(args.train_fraction + args.val_fraction)) || args.train_fraction < 0.0 || args.val_fraction < 0.0 {
        bail!("train and val fractions must be >= 0 and sum to at most 1");
    }
    let total = (cfg.categories.len() * cfg.models_per_category) as u64;
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template("{elapsed_precise} [{bar:40}] {pos}/{len} models ({per_sec}, eta {eta}) {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let start = std::time::Instant::now();
    let report = synthesize(&args.out, &cfg, &|model| {
        bar.set_message(model.category.name());
        bar.inc(1);
    })
    .with_context(|| format!("generating the catalog in {}", args.out.display()))?;
    bar.finish_and_clear();
    println!(
        "{} models, {} views in {:.1} s -> {} (taxonomy {})",
        report.models,
        report.views,
        start.elapsed().as_secs_f64(),
        args.out.display(),
        report.taxonomy.display()
    );
    Ok(())
}

fn voxelize_mesh(args: VoxelizeArgs) -> anyhow::Result<()> {
    let mesh = mesh_io::read_mesh(&args.mesh).with_context(|| format!("reading {}", args.mesh.display()))?;
    let grid = voxelize::voxelize(&mesh, args.resolution).with_context(|| format!("voxelizing {}", args.mesh.display()))?;
    grid.write_binvox(&args.out, 0.5).with_context(|| format!("writing {}", args.out.display()))?;
    println!(
        "{}: {} triangles -> {} of {} voxels occupied -> {}",
        args.mesh.display(),
        mesh.triangles.len(),
        grid.count_at_least(0.5),
        grid.len(),
        args.out.display()
    );
    Ok(())
}

fn contact_sheet(args: ContactSheetArgs) -> anyhow::Result<()> {
    let categories = parse_categories(&args.categories)?;
    if args.per_category == 0 || args.tile < 16 {
        bail!("need --per-category >= 1 and --tile >= 16");
    }
    let sheet = preview::contact_sheet(&categories, args.per_category, args.seed, args.tile)?;
    sheet.save(&args.out).with_context(|| format!("writing {}", args.out.display()))?;
    println!("{} rows x {} columns -> {}", categories.len(), args.per_category + 1, args.out.display());
    Ok(())
}

fn photos(args: PhotosArgs) -> anyhow::Result<()> {
    let categories = parse_categories(&args.categories)?;
    if args.width < 16 || args.height < 16 {
        bail!("photos must be at least 16x16");
    }
    std::fs::create_dir_all(&args.out).with_context(|| format!("creating {}", args.out.display()))?;
    let mut labels = String::from("file,category,model_id,azimuth,elevation,blur_sigma,exposure\n");
    for &category in &categories {
        let dir = args.out.join(category.name());
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        for i in 0..args.per_category as u64 {
            let model = generate(category, args.seed, i);
            let mut rng = Rng::derive(args.seed, &format!("photo-{}", category.name()), i);
            let (img, view, blur_sigma, exposure) = if args.degrade {
                let mut view = ViewParams::sample(&mut rng);
                // Product-photo framing: lower, closer cameras than the R2N2 renders.
                view.elevation_deg = rng.range(5.0, 35.0);
                view.distance_ratio = rng.range(0.6, 0.8);
                let settings = PhotoSettings::sample(&mut rng, args.width, args.height, true);
                (photo(&model, &view, &Lighting::sample(&mut rng), &settings, &mut rng), view, settings.blur_sigma, settings.exposure)
            } else {
                // Exactly the synthetic catalog's look, at photo size.
                let (img, shot) = catalog_photo(&model, args.width, args.height, &mut rng);
                (img, shot.view, 0.0, 1.0)
            };
            let name = format!("{}.jpg", model.id);
            let path = dir.join(&name);
            // quality 92, as product photos are published (the default 75 smooths fine texture)
            let file = std::fs::File::create(&path).with_context(|| format!("writing {}", path.display()))?;
            mono2mesh_catalog::image::codecs::jpeg::JpegEncoder::new_with_quality(std::io::BufWriter::new(file), 92)
                .encode_image(&img)
                .with_context(|| format!("writing {}", path.display()))?;
            labels.push_str(&format!(
                "{}/{},{},{},{:.2},{:.2},{:.2},{:.2}\n",
                category.name(),
                name,
                category.name(),
                model.id,
                view.azimuth_deg,
                view.elevation_deg,
                blur_sigma,
                exposure
            ));
        }
    }
    let lpath = args.out.join("labels.csv");
    std::fs::write(&lpath, labels).with_context(|| format!("writing {}", lpath.display()))?;
    println!("{} photos -> {}", categories.len() * args.per_category, args.out.display());
    Ok(())
}
