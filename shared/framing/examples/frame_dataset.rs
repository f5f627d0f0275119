//! Frames every rendering of a dataset in ShapeNet's layout (`ShapeNetRendering/.../*.png`)
//! into a copy, for measuring what framing does to reconstruction: the voxels and the
//! taxonomy are linked, each rendering is framed at its own size (renders that framing
//! refuses or leaves whole are copied as they are, and counted).
//!
//! `cargo run --release -p mono2mesh-framing --example frame_dataset -- SRC DST [FILL]`
//! then `mono2mesh eval --model M --dataset SRC|DST --split test` (docs/experiments/framing.md).

use mono2mesh_framing::{frame, FramingSettings, DEFAULT_FILL};
use std::path::Path;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (src, dst) = (Path::new(&args[0]), Path::new(&args[1]));
    let fill = args.get(2).map(|f| f.parse().expect("FILL is a number")).unwrap_or(DEFAULT_FILL);
    std::fs::create_dir_all(dst).unwrap();
    let mut counts = [0usize; 3]; // framed, left whole, refused
    for entry in std::fs::read_dir(src).unwrap().flatten() {
        let name = entry.file_name();
        if name != "ShapeNetRendering" {
            let link = dst.join(&name);
            if !link.exists() {
                std::os::unix::fs::symlink(entry.path().canonicalize().unwrap(), link).unwrap();
            }
        }
    }
    let mut pending = vec![src.join("ShapeNetRendering")];
    while let Some(dir) = pending.pop() {
        let out_dir = dst.join(dir.strip_prefix(src).unwrap());
        std::fs::create_dir_all(&out_dir).unwrap();
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            let out = out_dir.join(entry.file_name());
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|e| e == "png") {
                let image = image::open(&path).unwrap();
                let settings = FramingSettings { size: image.width().max(image.height()), fill, ..FramingSettings::default() };
                match frame(&image, &settings) {
                    Ok(framed) if framed.image.is_some() => {
                        framed.image.unwrap().save(&out).unwrap();
                        counts[0] += 1;
                    }
                    result => {
                        if let Err(e) = &result {
                            eprintln!("{}: {e}", path.display());
                        }
                        counts[if result.is_ok() { 1 } else { 2 }] += 1;
                        std::fs::copy(&path, &out).unwrap();
                    }
                }
            } else {
                std::fs::copy(&path, &out).unwrap();
            }
        }
    }
    println!("framed {}, left whole {}, refused {} (fill {fill})", counts[0], counts[1], counts[2]);
}
