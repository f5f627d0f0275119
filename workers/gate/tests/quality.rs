//! The paper's two quality checks on controlled images: sharp passes, the same image
//! blurred fails; too dark and overexposed fail with their own reason.

mod common;

use common::*;
use image::{imageops, DynamicImage, RgbImage};
use mono2mesh_gate::{assess, Decision, GateReport, GateSettings, ReasonCode};

fn judge(image: &RgbImage) -> GateReport {
    let png = encode_png(&DynamicImage::ImageRgb8(image.clone()));
    assess(&png, &GateSettings::default()).expect("default settings are valid").report
}

/// The paper's reasons. These controlled images are textures over the whole frame, so the
/// gate's object check (framing's analysis, tested in tests/framing.rs) also finds no
/// object in the rejected ones; that reason, when present, comes first and is left out here.
fn codes(report: &GateReport) -> Vec<ReasonCode> {
    let codes: Vec<ReasonCode> = report.reasons.iter().map(|r| r.code).collect();
    assert!(!codes[1.min(codes.len())..].contains(&ReasonCode::NoObject), "no_object comes first: {codes:?}");
    codes.into_iter().filter(|&c| c != ReasonCode::NoObject).collect()
}

#[test]
fn sharp_pattern_passes_and_the_same_pattern_blurred_is_rejected() {
    let sharp = checkerboard(600, 600, 60, 200);
    let sharp_report = judge(&sharp);
    assert_eq!(sharp_report.decision, Decision::Accept, "{sharp_report:?}");

    let blurred = imageops::blur(&sharp, 4.0);
    let blurred_report = judge(&blurred);
    assert_eq!(codes(&blurred_report), vec![ReasonCode::Blurry], "{blurred_report:?}");

    let (sharp_scores, blurred_scores) = (sharp_report.scores.unwrap(), blurred_report.scores.unwrap());
    // Blurring keeps the brightness and removes the edges.
    assert!((sharp_scores.mean_intensity - blurred_scores.mean_intensity).abs() < 2.0);
    assert!(blurred_scores.blur_variance < sharp_scores.blur_variance / 20.0);
}

#[test]
fn very_dark_photo_is_rejected_as_too_dark_only() {
    let report = judge(&checkerboard(600, 600, 2, 30));
    assert_eq!(codes(&report), vec![ReasonCode::TooDark], "{report:?}");
    assert!(report.reasons[0].message.contains("too dark"));
}

#[test]
fn overexposed_photo_is_rejected_as_overexposed_only() {
    let report = judge(&checkerboard(600, 600, 240, 255));
    assert_eq!(codes(&report), vec![ReasonCode::Overexposed], "{report:?}");
    assert!(report.reasons.iter().any(|r| r.message.contains("overexposed")));
}

#[test]
fn dark_and_blurred_reports_both_reasons() {
    let report = judge(&imageops::blur(&checkerboard(600, 600, 2, 30), 4.0));
    assert_eq!(codes(&report), vec![ReasonCode::TooDark, ReasonCode::Blurry], "{report:?}");
}

#[test]
fn thresholds_come_from_the_settings() {
    let png = encode_png(&DynamicImage::ImageRgb8(checkerboard(600, 600, 60, 200)));
    let strict = GateSettings { min_blur_variance: 1e9, ..GateSettings::default() };
    let report = assess(&png, &strict).expect("valid").report;
    assert_eq!(codes(&report), vec![ReasonCode::Blurry]);
    assert_eq!(report.thresholds.min_blur_variance, 1e9);

    let bad = GateSettings { min_mean_intensity: 200.0, max_mean_intensity: 100.0, ..GateSettings::default() };
    assert!(assess(&png, &bad).is_err(), "an empty lighting band is a settings error");
}

#[test]
fn report_serialises_with_stable_field_names() {
    let report = judge(&checkerboard(600, 600, 2, 30));
    let value = serde_json::to_value(&report).expect("serialisable");
    assert_eq!(value["decision"], "reject");
    assert_eq!(value["reasons"][0]["code"], "too_dark");
    assert!(value["scores"]["blur_variance"].as_f64().is_some());
    assert_eq!(value["source"]["format"], "png");
    let back: GateReport = serde_json::from_value(value).expect("round trip");
    assert_eq!(back, report);
}
