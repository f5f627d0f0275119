//! Single-thread generation speed per 137 px view, model generation and voxelization
//! included, for each style: `cargo run -p mono2mesh-catalog --example speed`.
use mono2mesh_catalog::dataset::{build_model, SynthConfig};
use mono2mesh_catalog::studio::RenderStyle;
use mono2mesh_core::Category;

fn main() {
    for style in [RenderStyle::Render, RenderStyle::Catalog] {
        let cfg = SynthConfig { views: 8, style, ..SynthConfig::default() };
        let start = std::time::Instant::now();
        let mut images = 0;
        for round in 0..2u64 {
            for c in Category::ALL {
                let out = build_model(c, round, &cfg).expect("model builds");
                // Encoding is part of the cost of a written view.
                for i in 0..out.views.len() {
                    std::hint::black_box(out.view_png(i).expect("encodes"));
                }
                images += out.views.len();
            }
        }
        let ms = start.elapsed().as_secs_f64() * 1e3;
        println!("{style}: {images} images in {ms:.0} ms: {:.2} ms per 137 px image", ms / images as f64);
    }
}
