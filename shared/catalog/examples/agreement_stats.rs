//! Render/voxel silhouette agreement per category over many views:
//! `cargo run --release -p mono2mesh-catalog --example agreement_stats -- [MODELS] [VIEWS] [SEED]`.
use mono2mesh_catalog::dataset::{build_model, check_agreement, SynthConfig};
use mono2mesh_core::Category;
use rayon::prelude::*;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let models: u64 = args.get(1).map(|s| s.parse()).transpose()?.unwrap_or(10);
    let views: usize = args.get(2).map(|s| s.parse()).transpose()?.unwrap_or(24);
    let seed: u64 = args.get(3).map(|s| s.parse()).transpose()?.unwrap_or(0);
    let cfg = SynthConfig { views, seed, ..SynthConfig::default() };
    println!("category      views  iou_mean iou_min  coverage_min  band_iou_mean band_iou_min");
    for c in Category::ALL {
        let all: Vec<_> = (0..models)
            .into_par_iter()
            .map(|i| build_model(c, i, &cfg).map(|o| check_agreement(&o)))
            .collect::<Result<Vec<_>, _>>()?
            .into_iter()
            .flatten()
            .collect();
        let n = all.len() as f32;
        let mean = |f: fn(&mono2mesh_catalog::agreement::SilhouetteAgreement) -> f32| all.iter().map(f).sum::<f32>() / n;
        let min = |f: fn(&mono2mesh_catalog::agreement::SilhouetteAgreement) -> f32| all.iter().map(f).fold(f32::MAX, f32::min);
        println!(
            "{:<12} {:>6}  {:.3}    {:.3}    {:.3}         {:.3}          {:.3}",
            c.name(),
            all.len(),
            mean(|a| a.iou),
            min(|a| a.iou),
            min(|a| a.coverage),
            mean(|a| a.band_iou),
            min(|a| a.band_iou)
        );
    }
    Ok(())
}
