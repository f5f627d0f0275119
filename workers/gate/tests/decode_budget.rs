//! The process-wide decode budget (`gate.limits.decode_budget_bytes`). Its own test binary:
//! the budget and the heap counter below are per process, and no other test may decode
//! alongside.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex};


use common::*;
use image::{DynamicImage, Rgb, RgbImage};
use mono2mesh_core::ByteBudget;
use mono2mesh_gate::{assess, decode_photo, DecodeLimits, Decision, GateSettings, ReasonCode};

/// Live heap bytes of the whole process, and the most seen since the last reset.
struct Counting;
static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let now = LIVE.fetch_add(layout.size(), Ordering::SeqCst) + layout.size();
            PEAK.fetch_max(now, Ordering::SeqCst);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::SeqCst);
    }
}

#[global_allocator]
static COUNTING: Counting = Counting;

/// One test at a time: both use the process-wide heap counter.
static SERIAL: Mutex<()> = Mutex::new(());

/// A 1000x800 RGB JPEG of one colour: 2.4 MB decoded from a few KB, so what the
/// decoder holds before the budget is taken (its copy of the input) is small beside it.
fn photo() -> Vec<u8> {
    encode_jpeg(&DynamicImage::ImageRgb8(RgbImage::from_pixel(1000, 800, Rgb([120, 130, 140]))), 90)
}
const DECODED: u64 = 1000 * 800 * 3;

/// Decodes `photo` on `threads` threads at once (released together), twice each; returns
/// the peak heap growth over the start.
fn decode_concurrently(photo: &Arc<Vec<u8>>, limits: &DecodeLimits, threads: usize) -> usize {
    let start = Arc::new(Barrier::new(threads));
    let base = LIVE.load(Ordering::SeqCst);
    PEAK.store(base, Ordering::SeqCst);
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let (photo, limits, start) = (photo.clone(), limits.clone(), start.clone());
            std::thread::spawn(move || {
                start.wait();
                for _ in 0..2 {
                    let decoded = decode_photo(&photo, &limits, [255; 3]).expect("decodes");
                    assert_eq!(decoded.rgb.dimensions(), (1000, 800));
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    PEAK.load(Ordering::SeqCst).saturating_sub(base)
}

#[test]
fn concurrent_decodes_stay_within_the_budget() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let photo = Arc::new(photo());
    let mut limits = DecodeLimits::default();
    // what one decode costs the heap, alone
    let single = decode_concurrently(&photo, &limits, 1);
    eprintln!("photo {} bytes, one decode alone grows the heap {single} bytes", photo.len());
    assert!(single as u64 >= DECODED, "{single}");
    // room for one decode at a time: eight threads cost what one does
    limits.decode_budget_bytes = DECODED + DECODED / 2;
    let one_at_a_time = decode_concurrently(&photo, &limits, 8);
    assert_eq!(ByteBudget::decoding().in_use(), 0, "every permit was given back");
    // room for all eight: the same work overlaps
    limits.decode_budget_bytes = 16 * DECODED;
    let all_at_once = decode_concurrently(&photo, &limits, 8);
    eprintln!("one at a time: {one_at_a_time}, all at once: {all_at_once}");
    assert!(
        one_at_a_time < 2 * single,
        "a budget of one decode, yet the heap grew {one_at_a_time} bytes (one decode alone: {single})"
    );
    assert!(
        all_at_once > 2 * single,
        "decodes did not overlap without the budget ({all_at_once} vs {single} alone): the test shows nothing"
    );
}

#[test]
fn a_photo_larger_than_the_whole_budget_is_rejected_with_the_reason() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let mut settings = GateSettings::default();
    settings.limits.decode_budget_bytes = DECODED - 1;
    let report = assess(&photo(), &settings).unwrap().report;
    assert_eq!(report.decision, Decision::Reject);
    assert_eq!(report.reasons[0].code, ReasonCode::DimensionsTooLarge);
    let message = &report.reasons[0].message;
    assert!(message.contains(&format!("needs {DECODED} bytes, more than the whole decode budget")), "{message}");
    // zero is not a budget
    settings.limits.decode_budget_bytes = 0;
    assert!(assess(&photo(), &settings).is_err());
}
