//! Clean catalog product shots (what `mono2mesh dataset photos` writes without
//! `--degrade`, and what the Pix2Vox model pack trains on at 137 px) must get through the
//! gate at its default band: blur (variance of the Laplacian) >= 100 and mean gray in
//! [20, 245], as real white-background product photos do. JPEGs are encoded at quality 92,
//! as `dataset photos` writes them.

use mono2mesh_catalog::photo::catalog_photo;
use mono2mesh_catalog::{generate, Rng};
use mono2mesh_core::Category;
use mono2mesh_gate::{assess, Decision, GateSettings};

fn encode(image: &image::RgbImage, format: image::ImageFormat) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    if format == image::ImageFormat::Jpeg {
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 92).encode_image(image).expect("encodes");
    } else {
        image::DynamicImage::ImageRgb8(image.clone()).write_to(&mut out, format).expect("encodes");
    }
    out.into_inner()
}

// White or thin objects on the near-white sweeps average 226-245 gray; the two that may
// fail are smooth white objects on white (blur below 100): the measure's blind spot.
#[test]
fn clean_catalog_photos_pass_the_default_blur_and_lighting_band() {
    let settings = GateSettings::default();
    assert_eq!((settings.min_blur_variance, settings.min_mean_intensity, settings.max_mean_intensity), (100.0, 20.0, 245.0));
    let mut passed = [0usize; 2];
    let mut total = 0;
    for &category in Category::ALL.iter() {
        for index in 0..2u64 {
            // As `dataset photos` draws them: model `index` of the category, seed 0.
            let model = generate(category, 0, index);
            let mut rng = Rng::derive(0, &format!("photo-{}", category.name()), index);
            let (photo, shot) = catalog_photo(&model, 600, 600, &mut rng);
            total += 1;
            let mut line = format!("{:>12} #{index} el {:4.1} d {:.2}", category.name(), shot.view.elevation_deg, shot.view.distance_ratio);
            for (k, format) in [image::ImageFormat::Png, image::ImageFormat::Jpeg].into_iter().enumerate() {
                let report = assess(&encode(&photo, format), &settings).expect("valid settings").report;
                let scores = report.scores.expect("decodes");
                passed[k] += usize::from(report.decision == Decision::Accept);
                line.push_str(&format!(
                    "  {format:?}: blur {:7.1} mean {:5.1} {}",
                    scores.blur_variance,
                    scores.mean_intensity,
                    if report.decision == Decision::Accept { "pass" } else { "REJECT" }
                ));
            }
            println!("{line}");
        }
    }
    println!("passed: PNG {}/{total}, JPEG {}/{total}", passed[0], passed[1]);
    assert_eq!(total, 24);
    assert!(passed[0] >= 22, "only {} of {total} clean PNG catalog photos pass", passed[0]);
    // JPEG smooths the finest texture: one more wood table falls just under blur 100 (21/24
    // measured; the ImageNet photos pass at 59/65, 91%).
    assert!(passed[1] >= 21, "only {} of {total} clean JPEG catalog photos pass", passed[1]);
}
