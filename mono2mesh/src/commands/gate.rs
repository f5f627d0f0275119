//! `mono2mesh gate [--json] IMAGE...`: the gate's decision, scores and reasons for local
//! photos, exactly as the gate worker would record them.
//!
//! Exit status: 0 when every file was read and judged, whether accepted or rejected (a
//! rejection is an answer, not a failure); 1 when a file could not be read or the
//! thresholds are invalid; 2 for malformed flags.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;
use mono2mesh_gate::{assess, encode_png, AspectPolicy, FramingMode, GateReport, GateSettings};
use serde_json::json;


#[derive(Debug, Args)]
pub struct GateArgs {
    /// Photos to check (JPEG, PNG, WebP, TIFF, BMP).
    #[arg(required = true)]
    images: Vec<PathBuf>,
    /// Print one JSON object per image ({"file", "report"} or {"file", "error"}) instead of text.
    #[arg(long)]
    json: bool,
    /// How to make the photo square: stretch as the paper, or pad (letterbox).
    #[arg(long, value_enum, default_value_t = AspectPolicy::Stretch)]
    aspect: AspectPolicy,
    /// Frame the object before standardising (crop to it, pad square; reject photos with
    /// no object), as `gate.framing`.
    #[arg(long, value_enum, default_value_t = FramingMode::Off)]
    framing: FramingMode,
    /// Side of the standardised square image.
    #[arg(long, default_value_t = GateSettings::default().size)]
    size: u32,
    /// Minimum variance of the Laplacian (sharpness).
    #[arg(long, default_value_t = GateSettings::default().min_blur_variance)]
    min_blur: f64,
    /// Lowest accepted mean gray intensity (0-255).
    #[arg(long, default_value_t = GateSettings::default().min_mean_intensity)]
    min_light: f64,
    /// Highest accepted mean gray intensity (0-255).
    #[arg(long, default_value_t = GateSettings::default().max_mean_intensity)]
    max_light: f64,
    /// Write each decodable photo's standardised image to DIR/<file stem>.png.
    #[arg(long, value_name = "DIR")]
    save_standardised: Option<PathBuf>,
}

pub fn run(args: GateArgs) -> anyhow::Result<()> {
    let settings = GateSettings {
        size: args.size,
        aspect: args.aspect,
        framing: args.framing,
        min_blur_variance: args.min_blur,
        min_mean_intensity: args.min_light,
        max_mean_intensity: args.max_light,
        ..GateSettings::default()
    };
    settings.validate()?;
    if let Some(dir) = &args.save_standardised {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }

    let mut unreadable = 0usize;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    for path in &args.images {
        let bytes = match std::fs::read(path) {
            Ok(bytes) => bytes,
            Err(error) => {
                unreadable += 1;
                if args.json {
                    writeln!(out, "{}", json!({ "file": path, "error": format!("cannot read: {error}") }))?;
                } else {
                    writeln!(out, "{}: ERROR cannot read: {error}", path.display())?;
                }
                continue;
            }
        };
        let assessment = assess(&bytes, &settings)?;
        if let (Some(dir), Some(image)) = (&args.save_standardised, &assessment.standardised) {
            let target = dir.join(format!("{}.png", file_stem(path)));
            std::fs::write(&target, encode_png(image)?).with_context(|| format!("writing {}", target.display()))?;
        }
        if args.json {
            writeln!(out, "{}", json!({ "file": path, "report": assessment.report }))?;
        } else {
            write_text(&mut out, path, &assessment.report)?;
        }
    }
    out.flush()?;
    if unreadable > 0 {
        anyhow::bail!("{unreadable} of {} files could not be read", args.images.len());
    }
    Ok(())
}

fn file_stem(path: &Path) -> String {
    path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "image".to_string())
}

fn write_text(out: &mut impl std::io::Write, path: &Path, report: &GateReport) -> std::io::Result<()> {
    let verdict = if report.accepted() { "ACCEPT" } else { "REJECT" };
    write!(out, "{}: {verdict}", path.display())?;
    if let Some(scores) = &report.scores {
        let t = &report.thresholds;
        write!(
            out,
            "  blur {:.1} (min {:.1})  light {:.1} (band {:.1}-{:.1})",
            scores.blur_variance,
            t.min_blur_variance,
            scores.mean_intensity,
            t.min_mean_intensity,
            t.max_mean_intensity
        )?;
    }
    if let Some(source) = &report.source {
        write!(out, "  {} {}x{} {}", source.format, source.width, source.height, source.colour_type)?;
        if source.exif_orientation != 1 {
            write!(out, " exif-orientation {}", source.exif_orientation)?;
        }
    }
    if let Some(framing) = &report.framing {
        match framing.bbox {
            Some(b) => write!(out, "  framed from {:?}: object {}x{} at {},{}", framing.source, b.width, b.height, b.x, b.y)?,
            None => write!(out, "  not framed ({})", framing.note.as_deref().unwrap_or("no note"))?,
        }
    }
    writeln!(out)?;
    for reason in &report.reasons {
        writeln!(out, "    - {reason}")?;
    }
    Ok(())
}
