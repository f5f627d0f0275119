//! What `mono2mesh submit` reads: a directory of photos, or a CSV manifest that names
//! each photo with its SKU and, optionally, its category.
//!
//! Manifest columns (header required, any order, case-insensitive):
//! `path` (required; relative paths are relative to the manifest's directory),
//! `sku` or `external_id` (optional), `category` (optional; Pascal3D name, ShapeNet
//! name or synset id; a known category skips classification), and the product's real
//! size in millimetres (optional): `height_mm` alone (uniform scale), or `width_mm`,
//! `height_mm` and `depth_mm` together; else the category's typical size is used.
//! A directory is read recursively; every file with an image extension is a photo and
//! its file stem is its SKU.

use mono2mesh_core::{Category, RealSize, SizeFields};
use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// Extensions taken as photos when submitting a directory.
pub const IMAGE_EXTENSIONS: [&str; 7] = ["jpg", "jpeg", "png", "webp", "tif", "tiff", "bmp"];

/// One photo to submit.
#[derive(Debug, Clone, PartialEq)]
pub struct ManifestEntry {
    pub path: PathBuf,
    pub external_id: Option<String>,
    pub category: Option<Category>,
    /// The product's real size, if the manifest gives one.
    pub size: Option<RealSize>,
}

#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("manifest {path}: {message}")]
    Csv { path: PathBuf, message: String },
    #[error("manifest {path}, line {line}: {message}")]
    Row { path: PathBuf, line: u64, message: String },
    #[error("{0} holds no photos (looked for {exts})", exts = IMAGE_EXTENSIONS.join(", "))]
    NoPhotos(PathBuf),
}

/// The photos named by `source`: a CSV manifest (a file) or a directory.
pub fn read_source(source: &Path) -> Result<Vec<ManifestEntry>, ManifestError> {
    let metadata = std::fs::metadata(source).map_err(|e| ManifestError::Io { path: source.to_path_buf(), source: e })?;
    let entries = if metadata.is_dir() { scan_directory(source)? } else { read_manifest(source)? };
    if entries.is_empty() {
        return Err(ManifestError::NoPhotos(source.to_path_buf()));
    }
    Ok(entries)
}

fn has_image_extension(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

/// Every photo under `dir`, sorted by path, with its file stem as SKU.
pub fn scan_directory(dir: &Path) -> Result<Vec<ManifestEntry>, ManifestError> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(current) = pending.pop() {
        let io = |e| ManifestError::Io { path: current.clone(), source: e };
        for entry in std::fs::read_dir(&current).map_err(io)? {
            let entry = entry.map_err(io)?;
            let path = entry.path();
            let file_type = entry.file_type().map_err(io)?;
            let hidden = entry.file_name().to_str().is_none_or(|n| n.starts_with('.'));
            if hidden {
                continue;
            }
            if file_type.is_dir() {
                pending.push(path);
            } else if has_image_extension(&path) {
                found.push(path);
            }
        }
    }
    found.sort();
    Ok(found
        .into_iter()
        .map(|path| {
            let external_id = path.file_stem().and_then(|s| s.to_str()).map(str::to_string);
            ManifestEntry { path, external_id, category: None, size: None }
        })
        .collect())
}

/// The rows of a CSV manifest, validated: every path exists and each photo appears once.
pub fn read_manifest(path: &Path) -> Result<Vec<ManifestEntry>, ManifestError> {
    let csv_err = |message: String| ManifestError::Csv { path: path.to_path_buf(), message };
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .comment(Some(b'#'))
        .from_path(path)
        .map_err(|e| csv_err(e.to_string()))?;
    let headers = reader.headers().map_err(|e| csv_err(e.to_string()))?.clone();
    let column = |names: &[&str]| headers.iter().position(|h| names.iter().any(|n| h.eq_ignore_ascii_case(n)));
    let path_col = column(&["path", "file", "photo"]).ok_or_else(|| csv_err("no `path` column in the header".into()))?;
    let id_col = column(&["sku", "external_id"]);
    let category_col = column(&["category"]);
    let size_cols = [column(&["width_mm"]), column(&["height_mm"]), column(&["depth_mm"])];
    let base = path.parent().unwrap_or(Path::new("."));

    let mut entries = Vec::new();
    let mut seen = HashSet::new();
    for record in reader.records() {
        let record = record.map_err(|e| csv_err(e.to_string()))?;
        let line = record.position().map_or(0, |p| p.line());
        let row_err = |message: String| ManifestError::Row { path: path.to_path_buf(), line, message };
        let cell = |col: Option<usize>| col.and_then(|c| record.get(c)).filter(|v| !v.is_empty()).map(str::to_string);
        let photo = cell(Some(path_col)).ok_or_else(|| row_err("empty path".into()))?;
        let photo = base.join(photo);
        if !photo.is_file() {
            return Err(row_err(format!("{} is not a file", photo.display())));
        }
        if !seen.insert(photo.clone()) {
            return Err(row_err(format!("{} is listed twice", photo.display())));
        }
        let category = cell(category_col)
            .map(|c| c.parse::<Category>().map_err(|e| row_err(e.to_string())))
            .transpose()?;
        let [width, height, depth] = size_cols.map(cell);
        let size = SizeFields::parse(width.as_deref(), height.as_deref(), depth.as_deref())
            .and_then(RealSize::from_fields)
            .map_err(|e| row_err(e.to_string()))?;
        entries.push(ManifestEntry { path: photo, external_id: cell(id_col), category, size });
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(path: &Path) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, b"x").unwrap();
    }

    #[test]
    fn directories_are_scanned_recursively_for_images_only() {
        let dir = tempfile::tempdir().unwrap();
        touch(&dir.path().join("b.JPG"));
        touch(&dir.path().join("a.png"));
        touch(&dir.path().join("nested/c.webp"));
        touch(&dir.path().join("notes.txt"));
        touch(&dir.path().join(".hidden/d.png"));
        let entries = read_source(dir.path()).unwrap();
        let ids: Vec<_> = entries.iter().map(|e| e.external_id.clone().unwrap()).collect();
        assert_eq!(ids, ["a", "b", "c"]);
        assert!(entries.iter().all(|e| e.category.is_none()));

        let empty = tempfile::tempdir().unwrap();
        assert!(matches!(read_source(empty.path()), Err(ManifestError::NoPhotos(_))));
    }

    #[test]
    fn manifests_carry_sku_and_category_relative_to_their_directory() {
        let dir = tempfile::tempdir().unwrap();
        touch(&dir.path().join("photos/1.jpg"));
        touch(&dir.path().join("photos/2.jpg"));
        let manifest = dir.path().join("batch.csv");
        std::fs::write(&manifest, "# catalog export\nPath,SKU,Category\nphotos/1.jpg, SKU-1 ,chair\nphotos/2.jpg,SKU-2,\n").unwrap();
        let entries = read_source(&manifest).unwrap();
        assert_eq!(
            entries,
            vec![
                ManifestEntry {
                    path: dir.path().join("photos/1.jpg"),
                    external_id: Some("SKU-1".into()),
                    category: Some(Category::Chair),
                    size: None,
                },
                ManifestEntry {
                    path: dir.path().join("photos/2.jpg"),
                    external_id: Some("SKU-2".into()),
                    category: None,
                    size: None
                },
            ]
        );
    }

    #[test]
    fn manifests_carry_real_sizes_in_millimetres() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["1.jpg", "2.jpg", "3.jpg"] {
            touch(&dir.path().join(name));
        }
        let manifest = dir.path().join("sizes.csv");
        std::fs::write(&manifest, "path,height_mm,width_mm,depth_mm\n1.jpg,910,,\n2.jpg,900,600,550\n3.jpg,,,\n").unwrap();
        let sizes: Vec<_> = read_source(&manifest).unwrap().into_iter().map(|e| e.size).collect();
        assert_eq!(
            sizes,
            vec![
                Some(RealSize::Height { height_mm: 910.0 }),
                Some(RealSize::Box { width_mm: 600.0, height_mm: 900.0, depth_mm: 550.0 }),
                None
            ]
        );
    }

    #[test]
    fn manifest_errors_name_the_line() {
        let dir = tempfile::tempdir().unwrap();
        touch(&dir.path().join("1.jpg"));
        let manifest = dir.path().join("m.csv");
        let check = |body: &str, expected: &str| {
            std::fs::write(&manifest, body).unwrap();
            let err = read_manifest(&manifest).unwrap_err().to_string();
            assert!(err.contains(expected), "{err:?} should contain {expected:?}");
        };
        check("sku\nA\n", "no `path` column");
        check("path,category\n1.jpg,giraffe\n", "line 2");
        check("path,category\n1.jpg,giraffe\n", "giraffe");
        check("path\n1.jpg\nmissing.jpg\n", "line 3");
        check("path\n1.jpg\n1.jpg\n", "listed twice");
        // Absurd, partial and non-numeric sizes are refused with the field named.
        check("path,height_mm\n1.jpg,0\n", "height_mm must be more than 0");
        check("path,height_mm\n1.jpg,1e9\n", "largest accepted size");
        check("path,width_mm,height_mm\n1.jpg,600,900\n", "all of width_mm, height_mm and depth_mm");
        check("path,height_mm\n1.jpg,90cm\n", "line 2: height_mm must be a number");
    }
}
