//! The ShapeNet layout Pix2Vox reads, its taxonomy JSON, a writer for synthetic
//! catalogs and a reader that works on ours and on real ShapeNet alike.
//!
//! ```text
//! <root>/ShapeNetRendering/<taxonomy_id>/<model>/rendering/NN.png     (137x137: RGB
//!                                 product shots, or RGBA renders in the `render` style)
//! <root>/ShapeNetRendering/<taxonomy_id>/<model>/rendering/rendering_metadata.txt
//! <root>/ShapeNetRendering/<taxonomy_id>/<model>/rendering/renderings.txt
//! <root>/ShapeNetVox32/<taxonomy_id>/<model>/model.binvox           (32^3, solid)
//! <root>/ShapeNet.json        [{taxonomy_id, taxonomy_name, baseline, train, val, test}]
//! <root>/synthetic/<taxonomy_id>/<model>.json   (ours only: generator parameters)
//! <root>/catalog.json                           (ours only: how the catalog was made)
//! ```
//! Taxonomy ids are `Category::synset()`: ShapeNetCore synsets, so real data drops in.

use crate::agreement::{band_for, compare, voxel_silhouette, SilhouetteAgreement};
use crate::camera::ViewParams;
use crate::render::{render, Lighting, Rgba, ShadedMesh};
use crate::rng::Rng;
use crate::shapes::{generate, Model};
use crate::studio::{render_shot, CatalogShot, ContactShadow, RenderStyle};
use crate::voxelize::{voxelize, VoxelizeError};
use mono2mesh_core::Category;
use mono2mesh_geometry::VoxelGrid;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

pub const RENDERING_DIR: &str = "ShapeNetRendering";
pub const VOXEL_DIR: &str = "ShapeNetVox32";
pub const TAXONOMY_FILE: &str = "ShapeNet.json";
pub const PARAMS_DIR: &str = "synthetic";
/// Bump when the generator changes what a seed produces.
/// 2: catalog style (product shots) by default, textured materials, crop jitter.
pub const GENERATOR_VERSION: u32 = 2;

#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: invalid JSON: {source}")]
    Json { path: PathBuf, source: serde_json::Error },
    #[error("{path}: {source}")]
    Image { path: PathBuf, source: image::ImageError },
    #[error("{path}: {source}")]
    Binvox { path: PathBuf, source: mono2mesh_geometry::binvox::BinvoxError },
    #[error("{path}: {source}")]
    Metadata { path: PathBuf, source: crate::camera::MetadataError },
    #[error("model {model}: {source}")]
    Voxelize { model: String, source: VoxelizeError },
    #[error("{0}")]
    Invalid(String),
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> DatasetError + '_ {
    move |source| DatasetError::Io { path: path.to_path_buf(), source }
}

/// One category of a Pix2Vox-style taxonomy file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaxonomyEntry {
    pub taxonomy_id: String,
    pub taxonomy_name: String,
    /// Published per-view IoU baselines in Pix2Vox's file; empty for synthetic sets.
    #[serde(default)]
    pub baseline: serde_json::Map<String, serde_json::Value>,
    #[serde(default)]
    pub train: Vec<String>,
    #[serde(default)]
    pub val: Vec<String>,
    #[serde(default)]
    pub test: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    Train,
    Val,
    Test,
}

impl std::str::FromStr for Split {
    type Err = DatasetError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "train" => Ok(Split::Train),
            "val" => Ok(Split::Val),
            "test" => Ok(Split::Test),
            other => Err(DatasetError::Invalid(format!("unknown split {other:?} (train, val, test)"))),
        }
    }
}

impl TaxonomyEntry {
    pub fn models(&self, split: Split) -> &[String] {
        match split {
            Split::Train => &self.train,
            Split::Val => &self.val,
            Split::Test => &self.test,
        }
    }
}

/// Fractions of each category's models in train and val; the rest is test.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SplitFractions {
    pub train: f32,
    pub val: f32,
}

impl Default for SplitFractions {
    fn default() -> Self {
        SplitFractions { train: 0.7, val: 0.1 }
    }
}

/// Deterministically assigns `ids` to train/val/test: shuffled by `seed`, then cut by
/// the fractions; with 2 or more models, test always gets at least one.
pub fn split_ids(ids: &[String], fractions: SplitFractions, seed: u64, stream: &str) -> (Vec<String>, Vec<String>, Vec<String>) {
    let mut order: Vec<String> = ids.to_vec();
    let mut rng = Rng::derive(seed, stream, 0);
    for i in (1..order.len()).rev() {
        let j = rng.below(i + 1);
        order.swap(i, j);
    }
    let n = order.len();
    let mut n_train = ((n as f32) * fractions.train).round() as usize;
    let mut n_val = ((n as f32) * fractions.val).round() as usize;
    if n >= 2 && n_train + n_val >= n {
        let over = n_train + n_val + 1 - n;
        let from_val = over.min(n_val);
        n_val -= from_val;
        n_train -= over - from_val;
    }
    n_train = n_train.min(n);
    n_val = n_val.min(n - n_train);
    let mut train: Vec<String> = order[..n_train].to_vec();
    let mut val: Vec<String> = order[n_train..n_train + n_val].to_vec();
    let mut test: Vec<String> = order[n_train + n_val..].to_vec();
    train.sort();
    val.sort();
    test.sort();
    (train, val, test)
}

/// How to make a synthetic catalog.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SynthConfig {
    pub categories: Vec<Category>,
    pub models_per_category: usize,
    pub views: usize,
    pub seed: u64,
    pub image_size: usize,
    /// Samples per pixel along each axis (3 = 9 samples) for antialiasing.
    pub supersample: usize,
    pub resolution: usize,
    pub splits: SplitFractions,
    /// Product shots on studio backdrops (default) or transparent ShapeNet-style renders.
    #[serde(default)]
    pub style: RenderStyle,
}

impl Default for SynthConfig {
    fn default() -> Self {
        SynthConfig {
            categories: Category::ALL.to_vec(),
            models_per_category: 10,
            views: 24,
            seed: 0,
            image_size: 137,
            supersample: 3,
            resolution: 32,
            splits: SplitFractions::default(),
            style: RenderStyle::default(),
        }
    }
}

/// What `synthesize` made.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SynthReport {
    pub models: usize,
    pub views: usize,
    pub taxonomy: PathBuf,
}

/// Everything produced for one model, before it is written.
pub struct ModelOutput {
    pub model: Model,
    pub voxels: VoxelGrid,
    pub style: RenderStyle,
    pub views: Vec<ViewParams>,
    /// The object alone, straight-alpha RGBA (its alpha is the silhouette), per view.
    pub images: Vec<Rgba>,
    /// Catalog style: the opaque product shot per view (what is written); empty for the
    /// `render` style, which writes `images`.
    pub photos: Vec<image::RgbImage>,
}

impl ModelOutput {
    /// The PNG file of view `i` as written to the dataset.
    pub fn view_png(&self, i: usize) -> Result<Vec<u8>, image::ImageError> {
        match self.style {
            RenderStyle::Render => self.images[i].png_bytes(),
            RenderStyle::Catalog => {
                let mut out = std::io::Cursor::new(Vec::new());
                self.photos[i].write_to(&mut out, image::ImageFormat::Png)?;
                Ok(out.into_inner())
            }
        }
    }
}

/// Generates, voxelizes and renders one model (pure: no files).
pub fn build_model(category: Category, index: u64, cfg: &SynthConfig) -> Result<ModelOutput, DatasetError> {
    let model = generate(category, cfg.seed, index);
    let voxels = voxelize(&model.mesh.mesh, cfg.resolution).map_err(|source| DatasetError::Voxelize { model: model.id.clone(), source })?;
    let shaded = ShadedMesh::new(&model.mesh);
    let mut rng = Rng::derive(cfg.seed, &format!("views-{}", category.name()), index);
    let mut views = Vec::with_capacity(cfg.views);
    let mut images = Vec::with_capacity(cfg.views);
    let mut photos = Vec::new();
    match cfg.style {
        RenderStyle::Render => {
            for _ in 0..cfg.views {
                let view = ViewParams::sample(&mut rng);
                let lighting = Lighting::sample(&mut rng);
                images.push(render(&shaded, &view.camera(cfg.image_size, cfg.image_size), &lighting, cfg.supersample));
                views.push(view);
            }
        }
        RenderStyle::Catalog => {
            let shadow = ContactShadow::new(&model.mesh);
            for _ in 0..cfg.views {
                let shot = CatalogShot::sample(&mut rng, &model.mesh);
                let (rgba, rgb) = render_shot(&shaded, &shadow, &shot, cfg.image_size, cfg.image_size, cfg.supersample);
                images.push(rgba);
                photos.push(rgb);
                views.push(shot.view);
            }
        }
    }
    Ok(ModelOutput { model, voxels, style: cfg.style, views, images, photos })
}

/// Silhouette agreement of every view of a built model with its voxels.
pub fn check_agreement(out: &ModelOutput) -> Vec<SilhouetteAgreement> {
    out.views
        .iter()
        .zip(&out.images)
        .map(|(view, img)| {
            let cam = view.camera(img.width, img.height);
            let vox = voxel_silhouette(&out.voxels, &cam, 2);
            compare(&img.silhouette(), &vox, img.width, img.height, band_for(&out.voxels, &cam))
        })
        .collect()
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<(), DatasetError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    }
    std::fs::write(path, bytes).map_err(io_err(path))
}

/// Writes one model's renders, metadata, voxels and parameters under `root`.
pub fn write_model(root: &Path, out: &ModelOutput) -> Result<(), DatasetError> {
    let synset = out.model.category.synset();
    let id = &out.model.id;
    let rdir = root.join(RENDERING_DIR).join(synset).join(id).join("rendering");
    std::fs::create_dir_all(&rdir).map_err(io_err(&rdir))?;
    let mut names = String::new();
    let mut meta = String::new();
    for (i, view) in out.views.iter().enumerate() {
        let name = format!("{i:02}.png");
        let path = rdir.join(&name);
        let png = out.view_png(i).map_err(|source| DatasetError::Image { path: path.clone(), source })?;
        write_file(&path, &png)?;
        names.push_str(&name);
        names.push('\n');
        meta.push_str(&view.metadata_line());
        meta.push('\n');
    }
    write_file(&rdir.join("renderings.txt"), names.as_bytes())?;
    write_file(&rdir.join("rendering_metadata.txt"), meta.as_bytes())?;
    let vpath = root.join(VOXEL_DIR).join(synset).join(id).join("model.binvox");
    write_file(&vpath, &out.voxels.to_binvox_bytes(0.5))?;
    let record = serde_json::json!({
        "id": id,
        "category": out.model.category,
        "taxonomy_id": synset,
        "seed": out.model.seed,
        "index": out.model.index,
        "generator_version": GENERATOR_VERSION,
        "style": out.style,
        "params": out.model.params,
        "triangles": out.model.mesh.mesh.triangle_count(),
        "occupied_voxels": out.voxels.count_at_least(0.5),
    });
    let ppath = root.join(PARAMS_DIR).join(synset).join(format!("{id}.json"));
    let text = serde_json::to_vec_pretty(&record).map_err(|source| DatasetError::Json { path: ppath.clone(), source })?;
    write_file(&ppath, &text)
}

/// The taxonomy for a synthetic catalog (ids are a pure function of the config).
pub fn synthetic_taxonomy(cfg: &SynthConfig) -> Vec<TaxonomyEntry> {
    cfg.categories
        .iter()
        .map(|&c| {
            let ids: Vec<String> = (0..cfg.models_per_category as u64).map(|i| crate::shapes::model_id(c, cfg.seed, i)).collect();
            let (train, val, test) = split_ids(&ids, cfg.splits, cfg.seed, c.synset());
            TaxonomyEntry {
                taxonomy_id: c.synset().to_string(),
                taxonomy_name: c.shapenet_name().to_string(),
                baseline: serde_json::Map::new(),
                train,
                val,
                test,
            }
        })
        .collect()
}

/// Makes a whole synthetic catalog under `root` on all cores. `on_model` is called
/// once per finished model (for progress bars).
pub fn synthesize(root: &Path, cfg: &SynthConfig, on_model: &(dyn Fn(&Model) + Sync)) -> Result<SynthReport, DatasetError> {
    if cfg.categories.is_empty() || cfg.models_per_category == 0 || cfg.views == 0 {
        return Err(DatasetError::Invalid("need at least one category, model and view".into()));
    }
    if cfg.views > 100 {
        return Err(DatasetError::Invalid(format!("{} views: file names are two digits (at most 100 views)", cfg.views)));
    }
    std::fs::create_dir_all(root).map_err(io_err(root))?;
    let jobs: Vec<(Category, u64)> =
        cfg.categories.iter().flat_map(|&c| (0..cfg.models_per_category as u64).map(move |i| (c, i))).collect();
    jobs.par_iter().try_for_each(|&(c, i)| -> Result<(), DatasetError> {
        let out = build_model(c, i, cfg)?;
        write_model(root, &out)?;
        on_model(&out.model);
        Ok(())
    })?;
    let taxonomy = synthetic_taxonomy(cfg);
    let tpath = root.join(TAXONOMY_FILE);
    let text = serde_json::to_vec_pretty(&taxonomy).map_err(|source| DatasetError::Json { path: tpath.clone(), source })?;
    write_file(&tpath, &text)?;
    let manifest = serde_json::json!({ "generator_version": GENERATOR_VERSION, "config": cfg });
    let mpath = root.join("catalog.json");
    let text = serde_json::to_vec_pretty(&manifest).map_err(|source| DatasetError::Json { path: mpath.clone(), source })?;
    write_file(&mpath, &text)?;
    Ok(SynthReport { models: jobs.len(), views: jobs.len() * cfg.views, taxonomy: tpath })
}

/// One model of a split, as the training code sees it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Sample {
    pub taxonomy_id: String,
    pub taxonomy_name: String,
    /// The Pascal3D+ category when the taxonomy id is one of ours.
    pub category: Option<Category>,
    pub model_id: String,
}

/// A dataset in Pix2Vox's layout: rendering root, voxel root and taxonomy file.
#[derive(Debug, Clone)]
pub struct Dataset {
    pub rendering_root: PathBuf,
    pub voxel_root: PathBuf,
    pub taxonomy: Vec<TaxonomyEntry>,
}

impl Dataset {
    /// Opens `<root>/ShapeNetRendering`, `<root>/ShapeNetVox32` and `<root>/ShapeNet.json`.
    pub fn open(root: &Path) -> Result<Dataset, DatasetError> {
        Dataset::open_parts(&root.join(RENDERING_DIR), &root.join(VOXEL_DIR), &root.join(TAXONOMY_FILE))
    }

    /// Opens the three parts separately (real ShapeNet downloads keep them apart).
    pub fn open_parts(rendering_root: &Path, voxel_root: &Path, taxonomy_file: &Path) -> Result<Dataset, DatasetError> {
        let text = std::fs::read(taxonomy_file).map_err(io_err(taxonomy_file))?;
        let taxonomy: Vec<TaxonomyEntry> =
            serde_json::from_slice(&text).map_err(|source| DatasetError::Json { path: taxonomy_file.to_path_buf(), source })?;
        for dir in [rendering_root, voxel_root] {
            if !dir.is_dir() {
                return Err(DatasetError::Invalid(format!("{} is not a directory", dir.display())));
            }
        }
        Ok(Dataset { rendering_root: rendering_root.to_path_buf(), voxel_root: voxel_root.to_path_buf(), taxonomy })
    }

    /// Samples of `split`, restricted to `categories` when given, in taxonomy order.
    pub fn samples(&self, split: Split, categories: Option<&[Category]>) -> Vec<Sample> {
        self.taxonomy
            .iter()
            .filter(|t| categories.is_none_or(|cs| cs.iter().any(|c| c.synset() == t.taxonomy_id)))
            .flat_map(|t| {
                let category = Category::from_synset(&t.taxonomy_id);
                t.models(split).iter().map(move |m| Sample {
                    taxonomy_id: t.taxonomy_id.clone(),
                    taxonomy_name: t.taxonomy_name.clone(),
                    category,
                    model_id: m.clone(),
                })
            })
            .collect()
    }

    pub fn rendering_dir(&self, s: &Sample) -> PathBuf {
        self.rendering_root.join(&s.taxonomy_id).join(&s.model_id).join("rendering")
    }

    pub fn voxel_path(&self, s: &Sample) -> PathBuf {
        self.voxel_root.join(&s.taxonomy_id).join(&s.model_id).join("model.binvox")
    }

    /// Image file names of a sample's views, from `renderings.txt` when present, else
    /// the `NN.png` files in the folder.
    pub fn view_files(&self, s: &Sample) -> Result<Vec<PathBuf>, DatasetError> {
        let dir = self.rendering_dir(s);
        let listing = dir.join("renderings.txt");
        if listing.is_file() {
            let text = std::fs::read_to_string(&listing).map_err(io_err(&listing))?;
            return Ok(text.lines().map(str::trim).filter(|l| !l.is_empty()).map(|l| dir.join(l)).collect());
        }
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .map_err(io_err(&dir))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e.eq_ignore_ascii_case("png")))
            .collect();
        files.sort();
        Ok(files)
    }

    /// Loads views by index (0-based, as in `NN.png`) as RGBA.
    pub fn load_views(&self, s: &Sample, indices: &[usize]) -> Result<Vec<image::RgbaImage>, DatasetError> {
        let files = self.view_files(s)?;
        indices
            .iter()
            .map(|&i| {
                let path = files.get(i).ok_or_else(|| {
                    DatasetError::Invalid(format!("model {} has {} views, view {i} requested", s.model_id, files.len()))
                })?;
                let img = image::open(path).map_err(|source| DatasetError::Image { path: path.clone(), source })?;
                Ok(img.to_rgba8())
            })
            .collect()
    }

    pub fn load_voxels(&self, s: &Sample) -> Result<VoxelGrid, DatasetError> {
        let path = self.voxel_path(s);
        VoxelGrid::read_binvox(&path).map_err(|source| DatasetError::Binvox { path, source })
    }

    pub fn load_view_params(&self, s: &Sample) -> Result<Vec<ViewParams>, DatasetError> {
        let path = self.rendering_dir(s).join("rendering_metadata.txt");
        let text = std::fs::read_to_string(&path).map_err(io_err(&path))?;
        ViewParams::parse_metadata(&text).map_err(|source| DatasetError::Metadata { path, source })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_are_deterministic_disjoint_and_complete() {
        let ids: Vec<String> = (0..20).map(|i| format!("m{i:02}")).collect();
        let (tr, va, te) = split_ids(&ids, SplitFractions::default(), 9, "x");
        assert_eq!((tr.len(), va.len(), te.len()), (14, 2, 4));
        let mut all: Vec<String> = tr.iter().chain(&va).chain(&te).cloned().collect();
        all.sort();
        assert_eq!(all, ids);
        assert_eq!(split_ids(&ids, SplitFractions::default(), 9, "x"), (tr.clone(), va, te));
        assert_ne!(split_ids(&ids, SplitFractions::default(), 10, "x").0, tr);
        // Tiny categories still get a test model.
        let two: Vec<String> = vec!["a".into(), "b".into()];
        let (tr, va, te) = split_ids(&two, SplitFractions::default(), 1, "y");
        assert_eq!((tr.len(), va.len(), te.len()), (1, 0, 1));
    }

    #[test]
    fn synthesized_catalog_reads_back_through_the_loader() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = SynthConfig {
            categories: vec![Category::Chair, Category::Bicycle],
            models_per_category: 3,
            views: 2,
            seed: 11,
            ..SynthConfig::default()
        };
        assert_eq!(cfg.style, RenderStyle::Catalog, "product shots are the default");
        let count = std::sync::atomic::AtomicUsize::new(0);
        let report = synthesize(dir.path(), &cfg, &|_| {
            count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        })
        .unwrap();
        assert_eq!(report.models, 6);
        assert_eq!(count.into_inner(), 6);
        let ds = Dataset::open(dir.path()).unwrap();
        assert_eq!(ds.taxonomy.len(), 2);
        assert_eq!(ds.taxonomy[0].taxonomy_id, "03001627");
        let all: usize = [Split::Train, Split::Val, Split::Test].iter().map(|&s| ds.samples(s, None).len()).sum();
        assert_eq!(all, 6);
        let test = ds.samples(Split::Test, Some(&[Category::Bicycle]));
        assert!(!test.is_empty());
        assert!(test.iter().all(|s| s.category == Some(Category::Bicycle) && s.taxonomy_id == "02834778"));
        let s = &test[0];
        let views = ds.load_views(s, &[0, 1]).unwrap();
        assert_eq!((views[0].width(), views[0].height()), (137, 137));
        // Opaque RGB files (no alpha channel: Pix2Vox preprocessing treats them as photos)
        // on a light studio backdrop.
        let file = image::open(ds.rendering_dir(s).join("00.png")).unwrap();
        assert_eq!(file.color(), image::ColorType::Rgb8);
        assert!(views[0].pixels().all(|p| p[3] == 255));
        let corner = views[0].get_pixel(0, 0);
        assert!(corner.0[..3].iter().all(|&c| c >= 150), "backdrop should be light: {corner:?}");
        assert!(ds.load_views(s, &[2]).is_err());
        let grid = ds.load_voxels(s).unwrap();
        assert_eq!(grid.dims, [32, 32, 32]);
        // The file holds exactly what the generator voxelized.
        let index: u64 = s.model_id.rsplit('-').next().unwrap().parse().unwrap();
        let rebuilt = build_model(Category::Bicycle, index, &cfg).unwrap();
        assert_eq!(grid.count_at_least(0.5), rebuilt.voxels.count_at_least(0.5));
        assert_eq!(ds.load_view_params(s).unwrap(), rebuilt.views);
        // Same seed, same bytes.
        let png = std::fs::read(ds.rendering_dir(s).join("01.png")).unwrap();
        assert_eq!(png, rebuilt.view_png(1).unwrap());
        assert_eq!(rebuilt.photos.len(), 2);
        // The silhouette of the kept render is the object in the photo: outside it the
        // photo is backdrop, never the object's colours bleeding out.
        assert!(rebuilt.images[1].silhouette().iter().any(|s| *s));
        let params: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.path().join(PARAMS_DIR).join("02834778").join(format!("{}.json", s.model_id))).unwrap()).unwrap();
        assert_eq!(params["category"], "bicycle");
        assert_eq!(params["style"], "catalog");
        assert_eq!(params["generator_version"], GENERATOR_VERSION);
    }

    #[test]
    fn render_style_writes_transparent_r2n2_renders() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = SynthConfig {
            categories: vec![Category::Car],
            models_per_category: 2,
            views: 2,
            seed: 4,
            style: RenderStyle::Render,
            ..SynthConfig::default()
        };
        synthesize(dir.path(), &cfg, &|_| {}).unwrap();
        let ds = Dataset::open(dir.path()).unwrap();
        let s = &ds.samples(Split::Test, None)[0];
        let file = image::open(ds.rendering_dir(s).join("00.png")).unwrap();
        assert_eq!(file.color(), image::ColorType::Rgba8);
        let views = ds.load_views(s, &[0, 1]).unwrap();
        assert_eq!(views[0].get_pixel(0, 0)[3], 0, "background must be transparent");
        assert!(views[0].pixels().any(|p| p[3] == 255));
        // R2N2 camera distribution and plain 5-number metadata lines.
        let params = ds.load_view_params(s).unwrap();
        assert!(params.iter().all(|v| (25.0..30.0).contains(&v.elevation_deg) && v.crop_x == 0.0 && v.crop_y == 0.0));
        let meta = std::fs::read_to_string(ds.rendering_dir(s).join("rendering_metadata.txt")).unwrap();
        assert!(meta.lines().all(|l| l.split_whitespace().count() == 5), "{meta}");
        let index: u64 = s.model_id.rsplit('-').next().unwrap().parse().unwrap();
        let rebuilt = build_model(Category::Car, index, &cfg).unwrap();
        assert!(rebuilt.photos.is_empty());
        assert_eq!(std::fs::read(ds.rendering_dir(s).join("01.png")).unwrap(), rebuilt.view_png(1).unwrap());
    }

    #[test]
    fn catalog_views_are_jittered_and_written_with_their_crop() {
        let cfg = SynthConfig { views: 24, seed: 6, ..SynthConfig::default() };
        let out = build_model(Category::Sofa, 0, &cfg).unwrap();
        let (lo, hi) = out.views.iter().fold((90.0f32, -90.0f32), |(lo, hi), v| (lo.min(v.elevation_deg), hi.max(v.elevation_deg)));
        assert!(lo < 20.0 && hi > 30.0, "elevations {lo}..{hi}");
        assert!(out.views.iter().any(|v| v.crop_x != 0.0 || v.crop_y != 0.0));
        // Fully inside the frame: no object pixel on the border of any view.
        for img in &out.images {
            let n = img.width;
            assert!((0..n).all(|i| img.alpha(i, 0) == 0 && img.alpha(i, n - 1) == 0 && img.alpha(0, i) == 0 && img.alpha(n - 1, i) == 0));
        }
        // Same seed, same bytes.
        let again = build_model(Category::Sofa, 0, &cfg).unwrap();
        assert!((0..24).all(|i| out.view_png(i).unwrap() == again.view_png(i).unwrap()));
        let lines: String = out.views.iter().map(|v| v.metadata_line() + "\n").collect();
        assert_eq!(ViewParams::parse_metadata(&lines).unwrap(), out.views);
    }

    #[test]
    fn every_view_of_every_category_agrees_with_its_voxels() {
        // 2 models x 4 views per category and style: renders (with the catalog style's
        // crop-shifted cameras) and voxels share one camera model.
        let results: Vec<(Category, Vec<SilhouetteAgreement>)> = [RenderStyle::Catalog, RenderStyle::Render]
            .par_iter()
            .flat_map_iter(|&style| Category::ALL.iter().flat_map(move |&c| (0..2u64).map(move |i| (style, c, i))))
            .map(|(style, c, i)| {
                let cfg = SynthConfig { views: 4, seed: 3, style, ..SynthConfig::default() };
                (c, check_agreement(&build_model(c, i, &cfg).unwrap()))
            })
            .collect();
        for (c, views) in results {
            // Plain IoU is reported, not asserted: a 32^3 grid widens every outline by up
            // to a projected voxel, which alone keeps thin categories below 0.9.
            let plain_min = views.iter().map(|a| a.iou).fold(1.0f32, f32::min);
            let band_min = views.iter().map(|a| a.band_iou).fold(1.0f32, f32::min);
            println!("{c}: plain IoU min {plain_min:.3}, band IoU min {band_min:.3}");
            for a in views {
                assert!(a.coverage >= 0.98, "{c}: voxels miss rendered pixels: {a:?}");
                assert!(a.band_iou >= 0.9, "{c}: {a:?}");
            }
        }
    }
}
