//! Times a synthetic catalog build: `cargo run --release -p mono2mesh-catalog --example synth -- OUT_DIR MODELS_PER_CATEGORY [VIEWS] [SEED]`.
use mono2mesh_catalog::dataset::{synthesize, SynthConfig};
use std::sync::atomic::{AtomicUsize, Ordering};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let out = args.get(1).ok_or("usage: synth OUT_DIR MODELS_PER_CATEGORY [VIEWS] [SEED]")?;
    let per: usize = args.get(2).ok_or("missing MODELS_PER_CATEGORY")?.parse()?;
    let views: usize = args.get(3).map(|s| s.parse()).transpose()?.unwrap_or(24);
    let seed: u64 = args.get(4).map(|s| s.parse()).transpose()?.unwrap_or(0);
    let cfg = SynthConfig { models_per_category: per, views, seed, ..SynthConfig::default() };
    let done = AtomicUsize::new(0);
    let start = std::time::Instant::now();
    let report = synthesize(std::path::Path::new(out), &cfg, &|_| {
        let n = done.fetch_add(1, Ordering::Relaxed) + 1;
        if n % 100 == 0 {
            eprintln!("{n} models, {:.1} s", start.elapsed().as_secs_f64());
        }
    })?;
    let secs = start.elapsed().as_secs_f64();
    println!("{} models x {} views in {:.1} s ({:.1} models/s) on {} threads", report.models, views, secs, report.models as f64 / secs, rayon::current_num_threads());
    Ok(())
}
