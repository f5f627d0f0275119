//! `mono2mesh models import-pix2vox` on hostile checkpoints, run as a user would: each is
//! refused with exit status 1 and one line of error (not a crash, an abort or a C++ frame
//! dump). The files are the crafted kinds `scripts/chaos/hostile_files.py` makes for the
//! memory-limited chaos run, written here with the standard zip layout of `torch.save`.

use std::io::Write;
use std::path::Path;
use std::process::Command;

fn torch_zip(path: &Path, pickle: &[u8], extra: &[(&str, &[u8])]) {
    let mut zip = zip::ZipWriter::new(std::fs::File::create(path).unwrap());
    let stored = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    zip.start_file("archive/data.pkl", stored).unwrap();
    zip.write_all(pickle).unwrap();
    zip.start_file("archive/version", stored).unwrap();
    zip.write_all(b"3\n").unwrap();
    for (name, data) in extra {
        zip.start_file(*name, stored).unwrap();
        zip.write_all(data).unwrap();
    }
    zip.finish().unwrap();
}

/// `{'w': tensor}` over float storage "0" of `storage_elems`, with the given shape/stride.
fn tensor_pickle(shape: &[i64], stride: &[i64], storage_elems: i32) -> Vec<u8> {
    let tuple = |values: &[i64]| {
        let mut out = vec![b'('];
        for v in values {
            out.extend_from_slice(b"\x8a\x08");
            out.extend_from_slice(&v.to_le_bytes());
        }
        out.push(b't');
        out
    };
    let mut p = b"\x80\x02}q\x00X\x01\x00\x00\x00wq\x01ctorch._utils\n_rebuild_tensor_v2\nq\x02(".to_vec();
    p.extend_from_slice(b"(X\x07\x00\x00\x00storageq\x03ctorch\nFloatStorage\nq\x04X\x01\x00\x00\x000q\x05X\x03\x00\x00\x00cpuq\x06J");
    p.extend_from_slice(&storage_elems.to_le_bytes());
    p.extend_from_slice(b"tq\x07QK\x00");
    p.extend(tuple(shape));
    p.extend(tuple(stride));
    p.extend_from_slice(b"\x89ccollections\nOrderedDict\nq\x08)Rq\x09tq\x0aRq\x0bs.");
    p
}

#[test]
fn crafted_checkpoints_are_refused_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let mut deep = b"\x80\x02".to_vec();
    deep.extend(std::iter::repeat_n(b']', 200_000));
    deep.push(b'.');
    let mut memo = b"\x80\x02]q\x00".to_vec();
    for _ in 0..50_000 {
        memo.extend_from_slice(b"(h\x00h\x00h\x00h\x00h\x00h\x00h\x00h\x00lq\x00");
    }
    memo.push(b'.');
    let cases: Vec<(&str, Vec<u8>, Vec<(&str, &[u8])>)> = vec![
        ("deep-nesting", deep, vec![]),
        ("memo-growth", memo, vec![]),
        ("huge-shape", tensor_pickle(&[1 << 20, 1 << 20, 1 << 20], &[1 << 40, 1 << 20, 1], 16), vec![("archive/data/0", &[0u8; 64])]),
        ("zero-stride", tensor_pickle(&[4096, 4096], &[0, 0], 1), vec![("archive/data/0", &[0u8; 4])]),
        ("storage-lie", tensor_pickle(&[1 << 28], &[1], 1 << 28), vec![("archive/data/0", &[0u8; 64])]),
    ];
    for (name, pickle, extra) in cases {
        let path = dir.path().join(format!("{name}.pth"));
        torch_zip(&path, &pickle, &extra);
        let out = Command::new(env!("CARGO_BIN_EXE_mono2mesh"))
            .args(["models", "import-pix2vox", path.to_str().unwrap(), "--variant", "F", "-o"])
            .arg(dir.path().join("out.safetensors"))
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{name}: {stderr}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "{name}: one line of error: {stderr}");
        assert!(stderr.starts_with("error: importing ") && stderr.contains(name), "{name}: says what it was doing: {stderr}");
        assert!(!dir.path().join("out.safetensors").exists(), "{name}: nothing written");
    }
}
