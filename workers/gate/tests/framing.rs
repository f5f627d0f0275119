//! `gate.framing = "auto"`: photos with no object are rejected as `no_object`, product shots
//! are framed (and say so in the report), real photos still pass. With framing off (the
//! default) photos are not cropped, but a photo of nothing is still `no_object`.

mod common;

use common::*;
use image::{DynamicImage, Rgb, RgbImage, Rgba, RgbaImage};
use mono2mesh_catalog::photo::catalog_photo;
use mono2mesh_catalog::{generate, Rng};
use mono2mesh_core::Category;
use mono2mesh_gate::{assess, Decision, FramingMode, FramingSource, GateSettings, ReasonCode};

fn auto() -> GateSettings {
    GateSettings { framing: FramingMode::Auto, ..GateSettings::default() }
}

#[test]
fn a_blank_photo_is_rejected_as_no_object() {
    for colour in [[255, 255, 255], [236, 236, 240]] {
        let blank = encode_jpeg(&DynamicImage::ImageRgb8(RgbImage::from_pixel(800, 600, Rgb(colour))), 90);
        let assessment = assess(&blank, &auto()).unwrap();
        let report = &assessment.report;
        assert_eq!(report.decision, Decision::Reject);
        assert_eq!(report.reasons.len(), 1, "{report:?}");
        assert_eq!(report.reasons[0].code, ReasonCode::NoObject);
        assert!(report.reasons[0].message.contains("no separable object"), "{}", report.reasons[0].message);
        assert!(report.source.is_some() && report.scores.is_none() && assessment.standardised.is_none());
        let json = serde_json::to_value(report).unwrap();
        assert_eq!(json["reasons"][0]["code"], "no_object");
    }
}

#[test]
fn an_empty_alpha_channel_is_rejected_as_no_object() {
    let empty = encode_png(&DynamicImage::ImageRgba8(RgbaImage::from_pixel(300, 300, Rgba([200, 10, 10, 0]))));
    let report = assess(&empty, &auto()).unwrap().report;
    assert_eq!(report.reasons[0].code, ReasonCode::NoObject);
    assert!(report.reasons[0].message.contains("alpha channel is empty"), "{report:?}");
}

#[test]
fn with_framing_off_a_photo_of_nothing_still_says_so() {
    let off = GateSettings::default();
    assert_eq!(off.framing, FramingMode::Off);
    let blank = encode_jpeg(&DynamicImage::ImageRgb8(RgbImage::from_pixel(800, 600, Rgb([255, 255, 255]))), 90);
    let empty = encode_png(&DynamicImage::ImageRgba8(RgbaImage::from_pixel(300, 300, Rgba([200, 10, 10, 0]))));
    for (bytes, why) in [(blank, "all background"), (empty, "alpha channel is empty")] {
        let assessment = assess(&bytes, &off).unwrap();
        let report = &assessment.report;
        assert_eq!(report.decision, Decision::Reject);
        // First the verdict on the content, then the scores' reasons (a blank image is also
        // without edges), with the scores kept and nothing framed.
        assert_eq!(report.reasons[0].code, ReasonCode::NoObject, "{report:?}");
        assert!(report.reasons[0].message.contains(why), "{report:?}");
        assert!(report.scores.is_some() && report.framing.is_none());
    }
    // A product shot has its object: no such reason.
    let model = generate(Category::Sofa, 2, 1);
    let (shot, _) = catalog_photo(&model, 600, 600, &mut Rng::new(4));
    let report = assess(&encode_png(&DynamicImage::ImageRgb8(shot)), &off).unwrap().report;
    assert!(report.reasons.iter().all(|r| r.code != ReasonCode::NoObject), "{report:?}");
}

#[test]
fn an_alpha_cut_out_is_framed_from_its_alpha() {
    let cut_out = RgbaImage::from_fn(400, 300, |x, y| {
        let inside = (150..250).contains(&x) && (60..260).contains(&y);
        let v = ((x * 7 + y * 13) % 200) as u8; // texture, so the result is sharp
        if inside {
            Rgba([v, 40, 200 - v, 255])
        } else {
            Rgba([0, 0, 0, 0])
        }
    });
    let assessment = assess(&encode_png(&DynamicImage::ImageRgba8(cut_out)), &auto()).unwrap();
    let framing = assessment.report.framing.as_ref().expect("recorded");
    assert_eq!(framing.source, FramingSource::Alpha);
    let b = framing.bbox.expect("box");
    assert_eq!((b.x, b.y, b.width, b.height), (150, 60, 100, 200));
    let image = assessment.standardised.expect("standardised");
    assert_eq!(image.dimensions(), (600, 600));
    // The object's height (the longer side) fills 75% of the frame: 75 white rows above it.
    assert_eq!(image.get_pixel(300, 50), &Rgb([255, 255, 255]));
    assert_ne!(image.get_pixel(300, 300), &Rgb([255, 255, 255]));
}

#[test]
fn catalog_photos_are_framed_and_off_changes_nothing() {
    let off = GateSettings::default();
    assert_eq!(off.framing, FramingMode::Off);
    for (i, &category) in [Category::Chair, Category::Car, Category::Bottle].iter().enumerate() {
        let model = generate(category, 0, i as u64);
        let mut rng = Rng::derive(0, &format!("photo-{}", category.name()), i as u64);
        let (photo, _) = catalog_photo(&model, 600, 600, &mut rng);
        let bytes = encode_png(&DynamicImage::ImageRgb8(photo.clone()));

        let plain = assess(&bytes, &off).unwrap();
        assert!(plain.report.framing.is_none());
        let json = serde_json::to_value(&plain.report).unwrap();
        assert!(json.get("framing").is_none(), "framing off leaves the report as it was: {json}");
        // Off is exactly the old path: decode, standardise, score.
        let expected = mono2mesh_gate::standardise(&photo, &off);
        assert_eq!(plain.standardised.as_ref(), Some(&expected));

        let framed = assess(&bytes, &auto()).unwrap();
        let report = &framed.report;
        let summary = report.framing.as_ref().expect("recorded");
        assert_eq!(summary.source, FramingSource::Border, "{category:?}: {summary:?}");
        assert!(summary.bbox.is_some() && summary.background.is_some());
        let json = serde_json::to_value(report).unwrap();
        assert_eq!(json["framing"]["source"], "border");
        assert_eq!(framed.standardised.as_ref().unwrap().dimensions(), (600, 600));
        println!("{category:?}: {:?} {:?}, {:?}", report.decision, summary.bbox, report.scores);
    }
}

#[test]
fn real_photos_still_pass_with_framing() {
    let Some(dir) = real_photos_dir() else {
        eprintln!("SKIPPED: ../shared/testdata/photos is absent");
        return;
    };
    let files: Vec<_> = image_files(&dir).into_iter().filter(|p| !p.to_string_lossy().contains("r2n2")).collect();
    assert!(files.len() >= 60, "expected the shared photo set, found {}", files.len());
    let (mut accepted, mut accepted_off, mut framed) = (0, 0, 0);
    for path in &files {
        let bytes = std::fs::read(path).unwrap();
        let off = assess(&bytes, &GateSettings::default()).unwrap().report;
        let report = assess(&bytes, &auto()).unwrap().report;
        let name = path.strip_prefix(&dir).unwrap().display();
        assert!(report.reasons.iter().all(|r| r.code != ReasonCode::NoObject), "{name}: {report:?}");
        assert!(off.reasons.iter().all(|r| r.code != ReasonCode::NoObject), "{name}, framing off: {off:?}");
        let summary = report.framing.as_ref().expect("decoded and framed or left whole");
        accepted += usize::from(report.accepted());
        accepted_off += usize::from(off.accepted());
        framed += usize::from(summary.source != FramingSource::Unframed);
        println!("{name}: {:?} {:?} {:?}", summary.source, summary.bbox, report.decision);
    }
    println!("{framed}/{} framed, {accepted} accepted (framing off: {accepted_off})", files.len());
    // A busy scene is left whole, a framed photo is a crop of its object: the pass rate
    // stays within two photos of the unframed gate's.
    assert!(accepted + 2 >= accepted_off, "framing rejected {accepted_off} -> {accepted}");
}
