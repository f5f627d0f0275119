//! Framing a whole dataset in ShapeNet's layout, so training sees renders framed by the very
//! function the gate frames photos with ([`crate::frame`]): no train/inference mismatch.
//!
//! Every rendering under `ShapeNetRendering/` is framed at its own size into a copy of the
//! tree; everything else at the top (voxels, taxonomy, the catalog's own files) is linked,
//! not copied. Renders with an alpha channel (the catalog's `render` style, which training
//! composites onto random backgrounds) keep it: the framed mask is their alpha, and the
//! padding is transparent. A render that framing refuses (no separable object) or leaves
//! whole (a busy scene), or that does not decode, is copied as it is and counted, so the
//! copy has every file.

use std::path::{Path, PathBuf};

use image::{DynamicImage, RgbaImage};

use crate::{frame, Framed, FramingSettings};

/// What [`frame_dataset`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FramedDataset {
    pub framed: usize,
    /// Left whole: a busy background (copied as it is).
    pub unframed: usize,
    /// Refused by framing or not decodable (copied as it is), with the reasons of the first few.
    pub refused: usize,
    pub refusals: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: {source}")]
    Image { path: PathBuf, source: image::ImageError },
    #[error("{0} has no ShapeNetRendering directory: not a dataset in ShapeNet's layout")]
    NotADataset(PathBuf),
    #[error("{0}")]
    Settings(#[from] crate::FramingError),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> DatasetError + '_ {
    move |source| DatasetError::Io { path: path.to_path_buf(), source }
}

/// Frames every rendering of the dataset at `src` into `dst` (see the module docs);
/// `settings.size` is ignored (each render keeps its own size). `progress` is called after
/// each rendering with the number done.
pub fn frame_dataset(
    src: &Path,
    dst: &Path,
    settings: &FramingSettings,
    mut progress: impl FnMut(usize),
) -> Result<FramedDataset, DatasetError> {
    settings.validate()?;
    let renderings = src.join("ShapeNetRendering");
    if !renderings.is_dir() {
        return Err(DatasetError::NotADataset(src.to_path_buf()));
    }
    std::fs::create_dir_all(dst).map_err(io(dst))?;
    for entry in std::fs::read_dir(src).map_err(io(src))? {
        let entry = entry.map_err(io(src))?;
        if entry.file_name() == "ShapeNetRendering" {
            continue;
        }
        let link = dst.join(entry.file_name());
        if link.symlink_metadata().is_err() {
            let target = entry.path().canonicalize().map_err(io(&entry.path()))?;
            std::os::unix::fs::symlink(&target, &link).map_err(io(&link))?;
        }
    }
    let mut done = FramedDataset::default();
    let mut count = 0usize;
    let mut pending = vec![renderings];
    while let Some(dir) = pending.pop() {
        let relative = dir.strip_prefix(src).unwrap_or(&dir);
        let out_dir = dst.join(relative);
        std::fs::create_dir_all(&out_dir).map_err(io(&out_dir))?;
        let mut entries: Vec<PathBuf> =
            std::fs::read_dir(&dir).map_err(io(&dir))?.map(|e| e.map(|e| e.path())).collect::<Result<_, _>>().map_err(io(&dir))?;
        entries.sort();
        for path in entries {
            let out = out_dir.join(path.file_name().unwrap_or_default());
            if path.is_dir() {
                pending.push(path);
                continue;
            }
            if !path.extension().is_some_and(|e| e.eq_ignore_ascii_case("png")) {
                std::fs::copy(&path, &out).map_err(io(&path))?;
                continue;
            }
            match frame_rendering(&path, settings) {
                Rendering::Framed(output) => {
                    output.save(&out).map_err(|source| DatasetError::Image { path: out.clone(), source })?;
                    done.framed += 1;
                }
                // The rest is copied as it is, so the copy has every file (training skips
                // what does not decode there too).
                Rendering::LeftWhole => {
                    std::fs::copy(&path, &out).map_err(io(&path))?;
                    done.unframed += 1;
                }
                Rendering::Refused(why) => {
                    std::fs::copy(&path, &out).map_err(io(&path))?;
                    done.refused += 1;
                    if done.refusals.len() < 10 {
                        done.refusals.push(format!("{}: {why}", path.display()));
                    }
                }
            }
            count += 1;
            progress(count);
        }
    }
    Ok(done)
}

/// What framing made of one rendering.
enum Rendering {
    /// The framed image, RGBA when the rendering had alpha (the framed mask is its alpha:
    /// training puts its own backgrounds behind a cut-out).
    Framed(DynamicImage),
    /// A busy scene.
    LeftWhole,
    /// Not decodable, or no separable object: why.
    Refused(String),
}

/// Frames one rendering at its own size.
fn frame_rendering(path: &Path, settings: &FramingSettings) -> Rendering {
    let image = match image::open(path) {
        Ok(image) => image,
        Err(e) => return Rendering::Refused(format!("does not decode: {e}")),
    };
    let own = FramingSettings { size: image.width().max(image.height()), ..*settings };
    match frame(&image, &own) {
        Ok(Framed { image: Some(rgb), mask: Some(mask), .. }) if image.color().has_alpha() => {
            Rendering::Framed(DynamicImage::ImageRgba8(RgbaImage::from_fn(rgb.width(), rgb.height(), |x, y| {
                let [r, g, b] = rgb.get_pixel(x, y).0;
                image::Rgba([r, g, b, mask.get_pixel(x, y)[0]])
            })))
        }
        Ok(Framed { image: Some(rgb), .. }) => Rendering::Framed(DynamicImage::ImageRgb8(rgb)),
        Ok(_) => Rendering::LeftWhole,
        Err(e) => Rendering::Refused(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{Rgb, RgbImage, Rgba};

    #[test]
    fn a_dataset_is_framed_into_a_linked_copy_keeping_alpha_and_counting_refusals() {
        let tmp = tempfile::tempdir().unwrap();
        let (src, dst) = (tmp.path().join("src"), tmp.path().join("dst"));
        let views = src.join("ShapeNetRendering/03001627/m1/rendering");
        std::fs::create_dir_all(&views).unwrap();
        std::fs::create_dir_all(src.join("ShapeNetVox32/03001627/m1")).unwrap();
        std::fs::write(src.join("ShapeNetVox32/03001627/m1/model.binvox"), b"voxels").unwrap();
        std::fs::write(views.join("renderings.txt"), b"00.png\n01.png\n02.png\n").unwrap();
        // A small dark object on white; an alpha cut-out; a blank render.
        RgbImage::from_fn(137, 137, |x, y| if (50..70).contains(&x) && (60..80).contains(&y) { Rgb([30, 30, 30]) } else { Rgb([255; 3]) })
            .save(views.join("00.png"))
            .unwrap();
        RgbaImage::from_fn(137, 137, |x, y| if (20..40).contains(&x) && (30..60).contains(&y) { Rgba([200, 0, 0, 255]) } else { Rgba([0; 4]) })
            .save(views.join("01.png"))
            .unwrap();
        RgbImage::from_pixel(137, 137, Rgb([255; 3])).save(views.join("02.png")).unwrap();
        std::fs::write(views.join("03.png"), b"\x89PNG broken").unwrap();

        let mut seen = 0;
        let done = frame_dataset(&src, &dst, &FramingSettings::default(), |n| seen = n).unwrap();
        assert_eq!((done.framed, done.unframed, done.refused, seen), (2, 0, 2, 4), "{done:?}");
        assert!(done.refusals[0].contains("02.png"), "{:?}", done.refusals);
        assert!(done.refusals[1].contains("03.png") && done.refusals[1].contains("does not decode"), "{:?}", done.refusals);
        // Voxels linked, the view list copied, every render present.
        assert_eq!(std::fs::read(dst.join("ShapeNetVox32/03001627/m1/model.binvox")).unwrap(), b"voxels");
        assert!(dst.join("ShapeNetVox32").symlink_metadata().unwrap().file_type().is_symlink());
        let out = dst.join("ShapeNetRendering/03001627/m1/rendering");
        assert_eq!(std::fs::read(out.join("renderings.txt")).unwrap(), b"00.png\n01.png\n02.png\n");
        // The object now fills 75% of the frame, at the render's own size.
        let framed = image::open(out.join("00.png")).unwrap().to_rgb8();
        assert_eq!(framed.dimensions(), (137, 137));
        let dark = framed.enumerate_pixels().filter(|(_, _, p)| p[0] < 128).map(|(x, _, _)| x).collect::<Vec<_>>();
        let width = dark.iter().max().unwrap() - dark.iter().min().unwrap() + 1;
        assert!((width as f32 / 137.0 - crate::DEFAULT_FILL).abs() < 0.05, "object {width} px wide");
        // The cut-out keeps its alpha: transparent padding, opaque object.
        let cut = image::open(out.join("01.png")).unwrap();
        assert!(cut.color().has_alpha());
        let cut = cut.to_rgba8();
        assert_eq!(cut.get_pixel(2, 2)[3], 0);
        assert_eq!(cut.get_pixel(68, 68).0, [200, 0, 0, 255]);
        // The refused and the broken render are copied as they were.
        assert_eq!(std::fs::read(out.join("02.png")).unwrap(), std::fs::read(views.join("02.png")).unwrap());
        assert_eq!(std::fs::read(out.join("03.png")).unwrap(), b"\x89PNG broken");
        // Running again is harmless (links exist), and a folder that is no dataset is refused.
        assert_eq!(frame_dataset(&src, &dst, &FramingSettings::default(), |_| {}).unwrap().framed, 2);
        assert!(matches!(frame_dataset(&dst.join("ShapeNetVox32"), &tmp.path().join("x"), &FramingSettings::default(), |_| {}), Err(DatasetError::NotADataset(_))));
    }
}
