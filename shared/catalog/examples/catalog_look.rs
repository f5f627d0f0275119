//! A contact sheet of catalog-style views (two models per category, 137 px, as written by
//! `dataset synth`) and one 600 px clean photo per category, to look at:
//! `cargo run -p mono2mesh-catalog --example catalog_look -- OUT_DIR`.
use mono2mesh_catalog::dataset::{build_model, SynthConfig};
use mono2mesh_catalog::photo::catalog_photo;
use mono2mesh_catalog::{generate, Rng};
use mono2mesh_core::Category;

fn main() {
    let out = std::path::PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| "catalog_look".into()));
    std::fs::create_dir_all(&out).expect("output folder");
    let cfg = SynthConfig { views: 4, ..SynthConfig::default() };
    let tile = cfg.image_size as u32;
    let cols = 8u32;
    let mut sheet = image::RgbImage::new(cols * tile, Category::ALL.len() as u32 * tile);
    for (k, &c) in Category::ALL.iter().enumerate() {
        for m in 0..2u64 {
            let built = build_model(c, m, &cfg).expect("model builds");
            for (v, photo) in built.photos.iter().enumerate() {
                let slot = (k as u32 * 8) + m as u32 * 4 + v as u32;
                image::imageops::replace(&mut sheet, photo, i64::from(slot % cols * tile), i64::from(slot / cols * tile));
            }
        }
        let (photo, _) = catalog_photo(&generate(c, 0, 0), 600, 600, &mut Rng::derive(0, "look", k as u64));
        photo.save(out.join(format!("{}_600.png", c.name()))).expect("writes");
    }
    sheet.save(out.join("sheet_137.png")).expect("writes");
    println!("-> {}", out.display());
}
