//! Every real photo in ../shared/testdata decodes and gets sensible scores.

mod common;

use common::*;
use mono2mesh_gate::{assess, AspectPolicy, Decision, GateSettings, ReasonCode};

#[test]
fn every_real_photo_decodes_standardises_and_scores() {
    let Some(dir) = real_photos_dir() else {
        eprintln!("SKIPPED: ../shared/testdata/photos is absent");
        return;
    };
    let files = image_files(&dir);
    assert!(files.len() >= 60, "expected the shared photo set, found {}", files.len());
    // Every file stretched (the default); a sample padded, which takes the other resize path.
    for (aspect, count) in [(AspectPolicy::Stretch, files.len()), (AspectPolicy::Pad, 8)] {
        let settings = GateSettings { aspect, ..GateSettings::default() };
        for path in files.iter().take(count) {
            let bytes = std::fs::read(path).expect("readable test file");
            let assessment = assess(&bytes, &settings).expect("valid settings");
            let report = &assessment.report;
            let name = path.display();
            let source = report.source.as_ref().unwrap_or_else(|| panic!("{name} did not decode: {report:?}"));
            assert!(source.width > 0 && source.height > 0, "{name}");
            let image = assessment.standardised.as_ref().expect("standardised");
            assert_eq!(image.dimensions(), (600, 600), "{name}");
            let scores = report.scores.expect("scored");
            assert!(scores.blur_variance.is_finite() && scores.blur_variance > 0.0, "{name}: {scores:?}");
            assert!(scores.mean_intensity > 0.0 && scores.mean_intensity < 255.0, "{name}: {scores:?}");
        }
    }
}

#[test]
fn default_gate_keeps_ordinary_photos_and_rejects_upscaled_thumbnails() {
    let Some(dir) = real_photos_dir() else {
        eprintln!("SKIPPED: ../shared/testdata/photos is absent");
        return;
    };
    let settings = GateSettings::default();
    let judge = |path: &std::path::Path| {
        assess(&std::fs::read(path).expect("readable"), &settings).expect("valid settings").report
    };

    // Ordinary ImageNet photos: the defaults keep the great majority, and any rejection is
    // a quality verdict (blur or light), never a decoding failure.
    let photos = image_files(&dir.join("imagenet"));
    let mut rejected = Vec::new();
    for path in &photos {
        let report = judge(path);
        if report.decision == Decision::Reject {
            assert!(report.scores.is_some(), "{}: {}", path.display(), report.reason_summary());
            assert!(
                report
                    .reasons
                    .iter()
                    .all(|r| matches!(r.code, ReasonCode::Blurry | ReasonCode::TooDark | ReasonCode::Overexposed)),
                "{}: {:?}",
                path.display(),
                report.reasons
            );
            rejected.push(format!("{}: {}", path.display(), report.reason_summary()));
        }
    }
    assert!(rejected.len() * 10 <= photos.len(), "more than 10% rejected:\n{}", rejected.join("\n"));

    // The 127x127 R2N2 renders stretched to 600x600 are soft: blurry, and only blurry
    // (their white background stays inside the lighting band).
    for view in ["0.png", "1.png", "2.png"] {
        let report = judge(&dir.join("r2n2").join(view));
        let codes: Vec<_> = report.reasons.iter().map(|r| r.code).collect();
        assert_eq!(codes, vec![ReasonCode::Blurry], "r2n2/{view}: {report:?}");
    }
}
