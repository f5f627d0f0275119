//! Framing against the synthetic catalog, where the truth is known: the renders' alpha is
//! the object's silhouette.
//!
//! * `fill_of_the_training_renders`: the fraction of the frame objects fill in the model
//!   pack's training renders, seen whole as the pack's training saw them (the source of
//!   `DEFAULT_FILL`) and in the official random crop's centre. `FRAMING_MODELS=10 cargo test -p mono2mesh-framing --release --test
//!   catalog -- --nocapture` repeats the measurement in the docs (720 renders).
//! * `border_framing_finds_the_object_in_catalog_photos`: opaque 600x600 catalog photos
//!   framed from their border get the box their alpha has.

use mono2mesh_catalog::dataset::{build_model, SynthConfig};
use mono2mesh_catalog::render::ShadedMesh;
use mono2mesh_catalog::studio::{render_shot, CatalogShot, ContactShadow, RenderStyle};
use mono2mesh_catalog::{generate, Rng};
use mono2mesh_core::Category;
use mono2mesh_framing::{frame, FramingSettings, FramingSource, DEFAULT_FILL};

/// Side of Pix2Vox's centre crop and its offset in a 137 render (`int((137 - 128) / 2)`).
const CROP: usize = 128;
const CROP_OFFSET: usize = 4;

fn models_per_category() -> u64 {
    std::env::var("FRAMING_MODELS").ok().and_then(|v| v.parse().ok()).unwrap_or(1)
}

/// `(x0, y0, x1, y1)` of alpha >= 128 inside `[lo, hi)` on both axes, exclusive ends.
fn alpha_box(alpha: impl Fn(usize, usize) -> u8, lo: usize, hi: usize) -> Option<(usize, usize, usize, usize)> {
    let mut b: Option<(usize, usize, usize, usize)> = None;
    for y in lo..hi {
        for x in lo..hi {
            if alpha(x, y) >= 128 {
                b = Some(match b {
                    None => (x, y, x + 1, y + 1),
                    Some(b) => (b.0.min(x), b.1.min(y), b.2.max(x + 1), b.3.max(y + 1)),
                });
            }
        }
    }
    b
}

fn quantile(sorted: &[f32], q: f32) -> f32 {
    sorted[((sorted.len() - 1) as f32 * q).round() as usize]
}

#[test]
fn fill_of_the_training_renders() {
    // The model pack's catalog: `dataset synth` defaults with seed 2026 and 6 views (see
    // models/pix2vox/*.md), catalog style at 137 px.
    let cfg = SynthConfig { seed: 2026, views: 6, style: RenderStyle::Catalog, ..SynthConfig::default() };
    assert_eq!((cfg.image_size, cfg.supersample), (137, 3));
    let (mut fills, mut whole) = (Vec::new(), Vec::new());
    for &category in Category::ALL.iter() {
        for index in 0..models_per_category() {
            let out = build_model(category, index, &cfg).expect("builds");
            for render in &out.images {
                let alpha = |x: usize, y: usize| render.alpha(x, y);
                if let Some((x0, y0, x1, y1)) = alpha_box(alpha, CROP_OFFSET, CROP_OFFSET + CROP) {
                    fills.push((x1 - x0).max(y1 - y0) as f32 / CROP as f32);
                }
                if let Some((x0, y0, x1, y1)) = alpha_box(alpha, 0, render.width) {
                    whole.push((x1 - x0).max(y1 - y0) as f32 / render.width as f32);
                }
            }
        }
    }
    fills.sort_by(f32::total_cmp);
    let (q1, median, q3) = (quantile(&fills, 0.25), quantile(&fills, 0.5), quantile(&fills, 0.75));
    let mean = fills.iter().sum::<f32>() / fills.len() as f32;
    println!(
        "fill of {} training renders (longer side of the alpha box / 128 crop): median {median:.3}, quartiles \
         {q1:.3}-{q3:.3}, mean {mean:.3}, min {:.3}, max {:.3}",
        fills.len(),
        fills[0],
        fills[fills.len() - 1]
    );
    whole.sort_by(f32::total_cmp);
    println!(
        "the same renders seen whole (longer side / 137, as evaluation and the photo path see them): median {:.3}, \
         quartiles {:.3}-{:.3}",
        quantile(&whole, 0.5),
        quantile(&whole, 0.25),
        quantile(&whole, 0.75)
    );
    // The pack's training (cached trunk, no augmentation) sees the render whole.
    let whole_median = quantile(&whole, 0.5);
    assert!((whole_median - DEFAULT_FILL).abs() < 0.06, "median fill {whole_median} is far from DEFAULT_FILL {DEFAULT_FILL}");
}

#[test]
fn border_framing_finds_the_object_in_catalog_photos() {
    let settings = FramingSettings::default();
    let (mut total, mut good, mut unframed) = (0, 0, 0);
    let (mut elapsed, mut resampling) = (std::time::Duration::ZERO, std::time::Duration::ZERO);
    for &category in Category::ALL.iter() {
        for index in 0..models_per_category().max(2) {
            // As `dataset photos` draws a clean 600x600 photo (without the sensor noise).
            let model = generate(category, 0, index);
            let mut rng = Rng::derive(0, &format!("photo-{}", category.name()), index);
            let shot = CatalogShot::sample(&mut rng, &model.mesh);
            let (fg, photo) =
                render_shot(&ShadedMesh::new(&model.mesh), &ContactShadow::new(&model.mesh), &shot, 600, 600, 2);
            let truth = alpha_box(|x, y| fg.alpha(x, y), 0, 600).expect("the object is in view");
            let started = std::time::Instant::now();
            let photo_copy = photo.clone();
            let framed = frame(&image::DynamicImage::ImageRgb8(photo), &settings).expect("an object");
            elapsed += started.elapsed();
            // The resampling alone, which the gate's standardisation pays without framing too.
            let started = std::time::Instant::now();
            let crop = image::imageops::crop_imm(&photo_copy, 0, 0, 470, 470).to_image();
            let _ = image::imageops::resize(&crop, 600, 600, image::imageops::FilterType::CatmullRom);
            resampling += started.elapsed();
            total += 1;
            let name = format!("{:>12} #{index}", category.name());
            let Some(b) = framed.summary.bbox else {
                unframed += 1;
                println!("{name}: unframed ({:?})", framed.summary.note);
                continue;
            };
            let found = (b.x as usize, b.y as usize, (b.x + b.width) as usize, (b.y + b.height) as usize);
            let iou = box_iou(found, truth);
            let longer = |b: (usize, usize, usize, usize)| (b.2 - b.0).max(b.3 - b.1) as f32;
            let scale = longer(found) / longer(truth);
            let ok = framed.source() == FramingSource::Border && iou >= 0.85 && (0.95..=1.08).contains(&scale);
            good += usize::from(ok);
            println!("{name}: box {found:?} truth {truth:?} IoU {iou:.3} size ratio {scale:.3} {}", if ok { "" } else { "<-" });
        }
    }
    println!(
        "{good}/{total} framed within IoU 0.85 and size ratio 0.95-1.08 of the alpha box, {unframed} unframed; \
         {:.1} ms a photo ({:.1} ms of it a 470 -> 600 resize)",
        elapsed.as_secs_f64() * 1000.0 / total as f64,
        resampling.as_secs_f64() * 1000.0 / total as f64
    );
    assert!(good * 10 >= total * 9, "only {good} of {total} catalog photos framed like their alpha");
}

fn box_iou(a: (usize, usize, usize, usize), b: (usize, usize, usize, usize)) -> f32 {
    let ix = a.2.min(b.2).saturating_sub(a.0.max(b.0));
    let iy = a.3.min(b.3).saturating_sub(a.1.max(b.1));
    let inter = (ix * iy) as f32;
    let area = |r: (usize, usize, usize, usize)| ((r.2 - r.0) * (r.3 - r.1)) as f32;
    inter / (area(a) + area(b) - inter)
}
