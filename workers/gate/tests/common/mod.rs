//! Builders for the test photos: real encoders for good files, hand-made bytes for bad ones.
#![allow(dead_code)] // each test binary uses a different subset

use image::{ImageEncoder, RgbImage};
use std::path::{Path, PathBuf};

/// ../shared/testdata/photos, or None (callers print SKIPPED and return).
pub fn real_photos_dir() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/testdata/photos");
    dir.is_dir().then_some(dir)
}

/// Every JPEG and PNG under `dir`, sorted.
pub fn image_files(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(current) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&current) else { continue };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else if matches!(
                path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).as_deref(),
                Some("jpeg" | "jpg" | "png")
            ) {
                found.push(path);
            }
        }
    }
    found.sort();
    found
}

pub fn encode_png(image: &image::DynamicImage) -> Vec<u8> {
    let mut out = Vec::new();
    image::codecs::png::PngEncoder::new(&mut out)
        .write_image(image.as_bytes(), image.width(), image.height(), image.color().into())
        .expect("encode test PNG");
    out
}

pub fn encode_jpeg(image: &image::DynamicImage, quality: u8) -> Vec<u8> {
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, quality)
        .write_image(image.as_bytes(), image.width(), image.height(), image.color().into())
        .expect("encode test JPEG");
    out
}

/// A sharp mid-gray pattern: 6-pixel checkerboard between `low` and `high` gray levels
/// with a slight colour tint, so every channel carries edges.
pub fn checkerboard(width: u32, height: u32, low: u8, high: u8) -> RgbImage {
    RgbImage::from_fn(width, height, |x, y| {
        let v = if ((x / 6) + (y / 6)) % 2 == 0 { high } else { low };
        image::Rgb([v, v.saturating_add(3), v.saturating_sub(3)])
    })
}

/// Inserts an APP1 EXIF segment holding only Orientation = `orientation` right after SOI.
pub fn with_exif_orientation(jpeg: &[u8], orientation: u16) -> Vec<u8> {
    assert_eq!(&jpeg[..2], &[0xFF, 0xD8], "not a JPEG");
    // Big-endian TIFF header, IFD0 at offset 8 with one SHORT entry, no next IFD.
    let mut tiff = Vec::new();
    tiff.extend_from_slice(b"MM\x00\x2A\x00\x00\x00\x08");
    tiff.extend_from_slice(&1u16.to_be_bytes());
    tiff.extend_from_slice(&0x0112u16.to_be_bytes()); // Orientation
    tiff.extend_from_slice(&3u16.to_be_bytes()); // SHORT
    tiff.extend_from_slice(&1u32.to_be_bytes()); // count
    tiff.extend_from_slice(&orientation.to_be_bytes());
    tiff.extend_from_slice(&[0, 0]); // value padding to 4 bytes
    tiff.extend_from_slice(&0u32.to_be_bytes());
    let mut payload = b"Exif\x00\x00".to_vec();
    payload.extend_from_slice(&tiff);
    let mut out = jpeg[..2].to_vec();
    out.extend_from_slice(&[0xFF, 0xE1]);
    out.extend_from_slice(&((payload.len() + 2) as u16).to_be_bytes());
    out.extend_from_slice(&payload);
    out.extend_from_slice(&jpeg[2..]);
    out
}

/// Overwrites the frame size in a JPEG's SOF0 segment (a header that lies about its size).
pub fn with_jpeg_frame_size(jpeg: &[u8], width: u16, height: u16) -> Vec<u8> {
    let mut out = jpeg.to_vec();
    let sof = out.windows(2).position(|w| w == [0xFF, 0xC0]).expect("baseline JPEG has SOF0");
    // FF C0, length(2), precision(1), height(2), width(2)
    out[sof + 5..sof + 7].copy_from_slice(&height.to_be_bytes());
    out[sof + 7..sof + 9].copy_from_slice(&width.to_be_bytes());
    out
}

/// A PNG whose IHDR claims `width` x `height` 8-bit RGB with a tiny IDAT: a few dozen
/// bytes that would need gigabytes if decoded blindly.
pub fn png_bomb(width: u32, height: u32) -> Vec<u8> {
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&width.to_be_bytes());
    ihdr.extend_from_slice(&height.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]); // 8-bit, RGB, deflate, adaptive, no interlace
    push_chunk(&mut png, b"IHDR", &ihdr);
    // zlib stream of an empty stored block: valid deflate that ends far too early.
    push_chunk(&mut png, b"IDAT", &[0x78, 0x01, 0x01, 0x00, 0x00, 0xFF, 0xFF, 0x00, 0x00, 0x00, 0x01]);
    push_chunk(&mut png, b"IEND", &[]);
    png
}

fn push_chunk(png: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    png.extend_from_slice(&(data.len() as u32).to_be_bytes());
    png.extend_from_slice(kind);
    png.extend_from_slice(data);
    let mut crc_input = kind.to_vec();
    crc_input.extend_from_slice(data);
    png.extend_from_slice(&crc32(&crc_input).to_be_bytes());
}

/// CRC-32 (IEEE), as PNG chunks need.
fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &byte in data {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 != 0 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
        }
    }
    !crc
}
