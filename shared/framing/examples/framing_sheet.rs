//! The picture in docs/experiments/framing.md: photos before and after framing, side by
//! side (each pair: the photo letterboxed into a square | the framed square, with a bar
//! under it: green = framed from the border, blue = from the alpha, grey = left whole).
//!
//! `cargo run --release -p mono2mesh-framing --example framing_sheet -- OUT.png [PHOTO...]`
//! draws catalog photos of its own (a 600x600 studio shot per category in `CATEGORIES`, a
//! wide 900x500 one, and a transparent cut-out) followed by the given photos.

use image::imageops::{self, FilterType};
use image::{DynamicImage, Rgb, RgbImage, Rgba, RgbaImage};
use mono2mesh_catalog::photo::catalog_photo;
use mono2mesh_catalog::render::ShadedMesh;
use mono2mesh_catalog::studio::{render_shot, CatalogShot, ContactShadow};
use mono2mesh_catalog::{generate, Rng};
use mono2mesh_core::Category;
use mono2mesh_framing::{frame, FramingSettings, FramingSource};

const TILE: u32 = 150;
const GAP: u32 = 6;
const PAIRS_PER_ROW: u32 = 4;
const CATEGORIES: [Category; 3] = [Category::Chair, Category::Motorbike, Category::Bottle];

fn main() {
    let mut args = std::env::args().skip(1);
    let out = args.next().expect("usage: framing_sheet OUT.png [PHOTO...]");
    let mut inputs: Vec<DynamicImage> = Vec::new();
    for (i, category) in CATEGORIES.into_iter().enumerate() {
        let model = generate(category, 0, i as u64 + 3);
        let mut rng = Rng::derive(0, &format!("photo-{}", category.name()), i as u64 + 3);
        inputs.push(DynamicImage::ImageRgb8(catalog_photo(&model, 600, 600, &mut rng).0));
    }
    let model = generate(Category::Car, 0, 5);
    let mut rng = Rng::derive(0, "photo-car", 5);
    inputs.push(DynamicImage::ImageRgb8(catalog_photo(&model, 900, 500, &mut rng).0));
    // A cut-out: the object's own render with its transparent background.
    let model = generate(Category::Sofa, 0, 2);
    let mut rng = Rng::derive(0, "photo-sofa", 2);
    let shot = CatalogShot::sample(&mut rng, &model.mesh);
    let (fg, _) = render_shot(&ShadedMesh::new(&model.mesh), &ContactShadow::new(&model.mesh), &shot, 600, 600, 2);
    inputs.push(DynamicImage::ImageRgba8(fg.to_image()));
    for path in args {
        inputs.push(image::open(&path).unwrap_or_else(|e| panic!("{path}: {e}")));
    }

    let settings = FramingSettings { size: TILE, ..FramingSettings::default() };
    let rows = (inputs.len() as u32).div_ceil(PAIRS_PER_ROW);
    let pair_width = 2 * TILE + GAP;
    let width = PAIRS_PER_ROW * pair_width + (PAIRS_PER_ROW - 1) * 3 * GAP;
    let row_height = TILE + 2 * GAP;
    let mut sheet = RgbImage::from_pixel(width, rows * row_height, Rgb([90, 90, 90]));
    for (i, input) in inputs.iter().enumerate() {
        let (col, row) = (i as u32 % PAIRS_PER_ROW, i as u32 / PAIRS_PER_ROW);
        let (x, y) = (col * (pair_width + 3 * GAP), row * row_height);
        imageops::replace(&mut sheet, &letterbox(input), i64::from(x), i64::from(y));
        let (after, bar) = match frame(input, &settings) {
            Ok(framed) => {
                let bar = match framed.source() {
                    FramingSource::Border => Rgb([40, 180, 60]),
                    FramingSource::Alpha => Rgb([40, 110, 220]),
                    FramingSource::Unframed => Rgb([170, 170, 170]),
                };
                eprintln!("{i}: {:?}", framed.summary);
                (framed.image.unwrap_or_else(|| letterbox(input)), bar)
            }
            Err(e) => {
                eprintln!("{i}: {e}");
                (RgbImage::from_pixel(TILE, TILE, Rgb([200, 40, 40])), Rgb([200, 40, 40]))
            }
        };
        imageops::replace(&mut sheet, &after, i64::from(x + TILE + GAP), i64::from(y));
        for bx in x + TILE + GAP..x + 2 * TILE + GAP {
            for by in y + TILE + 1..y + TILE + GAP {
                sheet.put_pixel(bx, by, bar);
            }
        }
    }
    // Best compression keeps the picture under the docs' 300 KB.
    let file = std::io::BufWriter::new(std::fs::File::create(&out).expect("creates the sheet"));
    let encoder = image::codecs::png::PngEncoder::new_with_quality(
        file,
        image::codecs::png::CompressionType::Best,
        image::codecs::png::FilterType::Adaptive,
    );
    sheet.write_with_encoder(encoder).expect("writes the sheet");
    eprintln!("wrote {out} ({}x{})", sheet.width(), sheet.height());
}

/// The whole photo fitted into a TILE square on white (alpha composited onto white).
fn letterbox(image: &DynamicImage) -> RgbImage {
    let (w, h) = (image.width().max(1), image.height().max(1));
    let scale = TILE as f32 / w.max(h) as f32;
    let (nw, nh) = (((w as f32 * scale).round() as u32).max(1), ((h as f32 * scale).round() as u32).max(1));
    let small = imageops::resize(&image.to_rgba8(), nw, nh, FilterType::Triangle);
    let mut canvas = RgbaImage::from_pixel(TILE, TILE, Rgba([255, 255, 255, 255]));
    imageops::overlay(&mut canvas, &small, i64::from((TILE - nw) / 2), i64::from((TILE - nh) / 2));
    DynamicImage::ImageRgba8(canvas).to_rgb8()
}
