//! The bad photos: each must end as a rejection with a clear reason or a correct
//! result, never a panic or an error.

mod common;

use common::*;
use image::{DynamicImage, GenericImageView, Rgb, RgbImage};
use mono2mesh_gate::{assess, gate, AspectPolicy, Decision, GateReport, GateSettings, ReasonCode};

fn report(bytes: &[u8]) -> GateReport {
    assess(bytes, &GateSettings::default()).expect("default settings are valid").report
}

fn assert_rejected(report: &GateReport, code: ReasonCode) {
    assert_eq!(report.decision, Decision::Reject, "{report:?}");
    assert_eq!(report.reasons.len(), 1, "{report:?}");
    assert_eq!(report.reasons[0].code, code, "{report:?}");
    assert!(!report.reasons[0].message.is_empty());
    assert!(report.scores.is_none() && report.source.is_none());
}

/// A 300x200 sharp photo-like test image, JPEG-encoded.
fn sample_jpeg() -> Vec<u8> {
    encode_jpeg(&DynamicImage::ImageRgb8(checkerboard(300, 200, 60, 200)), 92)
}

#[test]
fn zero_bytes_is_rejected_as_empty() {
    assert_rejected(&report(&[]), ReasonCode::Empty);
}

#[test]
fn non_image_bytes_are_rejected_as_unknown_format() {
    assert_rejected(&report(b"%PDF-1.7\nthis is not a photo at all\n"), ReasonCode::UnknownFormat);
    let noise: Vec<u8> = (0..4096u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    assert_rejected(&report(&noise), ReasonCode::UnknownFormat);
}

#[test]
fn truncated_jpeg_is_rejected_not_half_gray() {
    let jpeg = sample_jpeg();
    for keep in [jpeg.len() / 2, jpeg.len() - 2, 700] {
        let r = report(&jpeg[..keep]);
        assert_eq!(r.decision, Decision::Reject, "kept {keep} bytes: {r:?}");
        assert!(
            matches!(r.reasons[0].code, ReasonCode::Truncated | ReasonCode::Undecodable),
            "kept {keep} bytes: {r:?}"
        );
    }
    // Cut inside the header: the decoder itself fails.
    let r = report(&jpeg[..40]);
    assert_eq!(r.decision, Decision::Reject);
    // The untouched file passes, so the rejections above are about the truncation.
    assert_eq!(report(&jpeg).decision, Decision::Accept);
}

#[test]
fn truncated_png_is_rejected() {
    let png = encode_png(&DynamicImage::ImageRgb8(checkerboard(300, 200, 60, 200)));
    let r = report(&png[..png.len() / 2]);
    assert_eq!(r.decision, Decision::Reject, "{r:?}");
    assert!(matches!(r.reasons[0].code, ReasonCode::Truncated | ReasonCode::Undecodable), "{r:?}");
}

#[test]
fn png_decompression_bomb_is_refused_from_its_header() {
    let bomb = png_bomb(20_000, 20_000);
    assert!(bomb.len() < 100, "the bomb itself is tiny: {} bytes", bomb.len());
    let r = report(&bomb);
    assert_rejected(&r, ReasonCode::DimensionsTooLarge);
    assert!(r.reasons[0].message.contains("20000x20000"), "{}", r.reasons[0].message);
}

#[test]
fn jpeg_decompression_bomb_is_refused_from_its_header() {
    let bomb = with_jpeg_frame_size(&sample_jpeg(), 20_000, 20_000);
    let r = report(&bomb);
    assert_rejected(&r, ReasonCode::DimensionsTooLarge);
    assert!(r.reasons[0].message.contains("20000x20000"), "{}", r.reasons[0].message);
}

#[test]
fn pixel_cap_applies_below_the_side_cap() {
    // 10000x9000 = 90 MP: each side is allowed, the total is not.
    let r = report(&png_bomb(10_000, 9_000));
    assert_rejected(&r, ReasonCode::DimensionsTooLarge);
}

#[test]
fn zero_sized_header_is_rejected() {
    let r = report(&with_jpeg_frame_size(&sample_jpeg(), 0, 200));
    assert_eq!(r.decision, Decision::Reject, "{r:?}");
}

#[test]
fn grayscale_png_and_jpeg_become_neutral_rgb() {
    let gray =
        image::GrayImage::from_fn(300, 200, |x, y| image::Luma([if ((x / 6) + (y / 6)) % 2 == 0 { 190 } else { 70 }]));
    for (bytes, kind) in [
        (encode_png(&DynamicImage::ImageLuma8(gray.clone())), "png"),
        (encode_jpeg(&DynamicImage::ImageLuma8(gray.clone()), 95), "jpeg"),
    ] {
        let assessment = assess(&bytes, &GateSettings::default()).expect("valid settings");
        let source = assessment.report.source.as_ref().expect("decoded");
        assert_eq!(source.colour_type, "l8", "{kind}");
        assert_eq!(assessment.report.decision, Decision::Accept, "{kind}: {:?}", assessment.report);
        let rgb = assessment.standardised.expect("standardised");
        assert!(rgb.pixels().all(|p| p[0] == p[1] && p[1] == p[2]), "{kind}: gray stays neutral");
    }
}

#[test]
fn cmyk_jpeg_is_converted_to_the_right_colours() {
    // Left half pure cyan ink, right half pure magenta ink, K = 0.
    let (width, height) = (64u16, 32u16);
    let mut cmyk = Vec::new();
    for _y in 0..height {
        for x in 0..width {
            cmyk.extend_from_slice(if x < width / 2 { &[255, 0, 0, 0] } else { &[0, 255, 0, 0] });
        }
    }
    let mut jpeg = Vec::new();
    jpeg_encoder::Encoder::new(&mut jpeg, 95)
        .encode(&cmyk, width, height, jpeg_encoder::ColorType::Cmyk)
        .expect("encode CMYK JPEG");

    let settings = GateSettings { size: 64, min_blur_variance: 0.0, ..GateSettings::default() };
    let assessment = assess(&jpeg, &settings).expect("valid settings");
    assert_eq!(assessment.report.source.as_ref().expect("decoded").colour_type, "cmyk8");
    let rgb = assessment.standardised.expect("standardised");
    let near = |p: &Rgb<u8>, want: [u8; 3]| p.0.iter().zip(want).all(|(&a, b)| a.abs_diff(b) <= 12);
    assert!(near(rgb.get_pixel(8, 16), [0, 255, 255]), "cyan ink -> {:?}", rgb.get_pixel(8, 16));
    assert!(near(rgb.get_pixel(56, 16), [255, 0, 255]), "magenta ink -> {:?}", rgb.get_pixel(56, 16));
}

#[test]
fn sixteen_bit_png_is_scaled_to_eight_bits() {
    let deep = image::ImageBuffer::<image::Rgb<u16>, _>::from_fn(120, 80, |x, _| {
        if x < 60 {
            image::Rgb([65535, 32896, 0])
        } else {
            image::Rgb([0, 12850, 65535])
        }
    });
    let bytes = encode_png(&DynamicImage::ImageRgb16(deep));
    let settings = GateSettings { size: 120, min_blur_variance: 0.0, ..GateSettings::default() };
    let assessment = assess(&bytes, &settings).expect("valid settings");
    assert_eq!(assessment.report.source.as_ref().expect("decoded").colour_type, "rgb16");
    let rgb = assessment.standardised.expect("standardised");
    assert_eq!(rgb.get_pixel(20, 40), &Rgb([255, 128, 0]));
    assert_eq!(rgb.get_pixel(100, 40), &Rgb([0, 50, 255]));
}

#[test]
fn transparent_png_is_composited_on_white() {
    let rgba = image::RgbaImage::from_fn(100, 100, |x, _| {
        if x < 50 {
            image::Rgba([200, 10, 10, 0])
        } else {
            image::Rgba([0, 0, 200, 255])
        }
    });
    let settings = GateSettings { size: 100, min_blur_variance: 0.0, ..GateSettings::default() };
    let assessment = assess(&encode_png(&DynamicImage::ImageRgba8(rgba)), &settings).expect("valid settings");
    assert_eq!(assessment.report.source.as_ref().expect("decoded").colour_type, "rgba8");
    let rgb = assessment.standardised.expect("standardised");
    assert_eq!(rgb.get_pixel(10, 50), &Rgb([255, 255, 255]), "fully transparent -> background");
    assert_eq!(rgb.get_pixel(90, 50), &Rgb([0, 0, 200]), "opaque keeps its colour");
}

#[test]
fn exif_orientation_6_is_applied() {
    // Stored 80 wide x 40 tall: top half red, bottom half blue. Orientation 6 means "rotate
    // 90 degrees clockwise to display": upright it is 40 wide x 80 tall, red on the right.
    let stored = RgbImage::from_fn(80, 40, |_, y| if y < 20 { Rgb([220, 20, 20]) } else { Rgb([20, 20, 220]) });
    let jpeg = with_exif_orientation(&encode_jpeg(&DynamicImage::ImageRgb8(stored), 95), 6);

    let settings =
        GateSettings { size: 80, aspect: AspectPolicy::Pad, min_blur_variance: 0.0, ..GateSettings::default() };
    let assessment = assess(&jpeg, &settings).expect("valid settings");
    let source = assessment.report.source.as_ref().expect("decoded");
    assert_eq!((source.width, source.height), (80, 40));
    assert_eq!(source.exif_orientation, 6);
    assert_eq!((source.oriented_width, source.oriented_height), (40, 80));

    let rgb = assessment.standardised.expect("standardised");
    let is_red = |p: &Rgb<u8>| p[0] > 150 && p[2] < 100;
    let is_blue = |p: &Rgb<u8>| p[2] > 150 && p[0] < 100;
    // Padded into 80x80: the upright 40x80 photo spans x 20..60; red is its right half.
    assert!(is_red(rgb.get_pixel(50, 40)), "{:?}", rgb.get_pixel(50, 40));
    assert!(is_blue(rgb.get_pixel(30, 40)), "{:?}", rgb.get_pixel(30, 40));
    assert_eq!(rgb.get_pixel(5, 40), &Rgb([255, 255, 255]), "letterbox left of the upright photo");

    // Without the EXIF segment the same pixels stay landscape: red on top.
    let plain = assess(
        &encode_jpeg(
            &DynamicImage::ImageRgb8(RgbImage::from_fn(80, 40, |_, y| {
                if y < 20 {
                    Rgb([220, 20, 20])
                } else {
                    Rgb([20, 20, 220])
                }
            })),
            95,
        ),
        &settings,
    )
    .expect("valid settings");
    assert_eq!(plain.report.source.as_ref().expect("decoded").exif_orientation, 1);
    assert!(is_red(plain.standardised.as_ref().expect("standardised").get_pixel(40, 30)));
}

#[test]
fn corrupted_bytes_never_panic() {
    // Flip bytes all over a valid JPEG and PNG: every result is a report, never a panic.
    let photo = DynamicImage::ImageRgb8(checkerboard(96, 64, 60, 200));
    for original in [encode_jpeg(&photo, 90), encode_png(&photo)] {
        let step = (original.len() / 60).max(1);
        for position in (0..original.len()).step_by(step) {
            let mut damaged = original.clone();
            damaged[position] ^= 0xA5;
            let report = report(&damaged);
            if report.decision == Decision::Reject {
                assert!(!report.reasons.is_empty());
            }
        }
    }
}

#[test]
fn gate_output_png_holds_exactly_the_scored_pixels() {
    let settings = GateSettings::default();
    let output = gate(&sample_jpeg(), &settings).expect("valid settings");
    let png = output.standardised_png.expect("decoded photo has an output image");
    let decoded = image::load_from_memory_with_format(&png, image::ImageFormat::Png).expect("our PNG decodes");
    assert_eq!(decoded.dimensions(), (600, 600));
    let rescored = mono2mesh_gate::score(&decoded.to_rgb8());
    assert_eq!(Some(rescored), output.report.scores);
}
