//! The model registry on disk: which Pix2Vox model serves which category.
//!
//! Layout (a directory; `models/` at the repository root by default):
//!
//! ```text
//! <registry>/pix2vox/<category>.safetensors   one specialist per category (e.g. chair.safetensors)
//! <registry>/pix2vox/general.safetensors      fine-tuned on all categories: the fallback
//! <registry>/pix2vox/base.safetensors         trained from scratch (the paper's "original")
//! <registry>/pix2vox/<name>.eval.json         evaluation results beside each model (optional)
//! ```
//!
//! A reconstruct worker serving some categories resolves each to its specialist, or to
//! the general model when the category has none.
//!
//! The same layout under an S3 prefix (`s3://bucket/prefix/pix2vox/...`) is mirrored into
//! a local cache directory by [`mirror_from_store`] before a worker loads from it; models
//! are put there by `mono2mesh models publish`.

use std::path::{Path, PathBuf};

use mono2mesh_core::Category;

/// Sub-directory of the registry that holds Pix2Vox models.
pub const PIX2VOX_DIR: &str = "pix2vox";
/// File stem of the model fine-tuned on every category.
pub const GENERAL_MODEL: &str = "general";
/// File stem of the model trained from scratch.
pub const BASE_MODEL: &str = "base";

/// Which kind of model a category resolved to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ModelRole {
    Specialist,
    General,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ResolvedModel {
    pub role: ModelRole,
    pub path: PathBuf,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RegistryError {
    #[error(
        "no Pix2Vox model for {category}: neither {specialist} nor {general} exists \
         (train one with `mono2mesh finetune`, or point MONO2MESH_MODELS at a model pack)"
    )]
    NoModel { category: String, specialist: PathBuf, general: PathBuf },
}

/// A registry rooted at a directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelRegistry {
    root: PathBuf,
}

impl ModelRegistry {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        ModelRegistry { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn specialist_path(&self, category: Category) -> PathBuf {
        self.model_path(category.name())
    }

    pub fn general_path(&self) -> PathBuf {
        self.model_path(GENERAL_MODEL)
    }

    /// `<root>/pix2vox/<stem>.safetensors`.
    pub fn model_path(&self, stem: &str) -> PathBuf {
        self.root.join(PIX2VOX_DIR).join(format!("{stem}.safetensors"))
    }

    /// The specialist for `category` when present, else the general model. With no
    /// category (the classifier was unsure) only the general model fits.
    pub fn resolve(&self, category: Option<Category>) -> Result<ResolvedModel, RegistryError> {
        if let Some(category) = category {
            let specialist = self.specialist_path(category);
            if specialist.is_file() {
                return Ok(ResolvedModel { role: ModelRole::Specialist, path: specialist });
            }
        }
        let general = self.general_path();
        if general.is_file() {
            return Ok(ResolvedModel { role: ModelRole::General, path: general });
        }
        Err(RegistryError::NoModel {
            category: category.map_or_else(|| "an unknown category".to_string(), |c| c.name().to_string()),
            specialist: category.map_or_else(|| self.model_path("<category>"), |c| self.specialist_path(c)),
            general,
        })
    }

    /// Categories that have their own specialist file.
    pub fn specialists(&self) -> Vec<Category> {
        Category::ALL.into_iter().filter(|c| self.specialist_path(*c).is_file()).collect()
    }

    /// `<root>/pix2vox/<stem>.eval.json`.
    pub fn eval_path(&self, stem: &str) -> PathBuf {
        self.root.join(PIX2VOX_DIR).join(format!("{stem}.eval.json"))
    }

    /// Every model present, base first, then general, then specialists by category.
    pub fn entries(&self) -> Vec<RegistryEntry> {
        model_stems()
            .into_iter()
            .filter(|stem| self.model_path(stem).is_file())
            .map(|stem| {
                let eval = std::fs::read(self.eval_path(&stem)).ok().and_then(|b| serde_json::from_slice(&b).ok());
                RegistryEntry { path: self.model_path(&stem), name: stem, eval }
            })
            .collect()
    }

    /// Copies `model` (and its evaluation report, when given) in as `<stem>`; the write
    /// goes through a temporary name so a worker starting meanwhile never reads half a file.
    pub fn publish(&self, model: &Path, stem: &str, eval: Option<&Path>) -> std::io::Result<PathBuf> {
        if !model_stems().iter().any(|s| s == stem) {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("{stem:?} is not a registry name: use base, general or a category"),
            ));
        }
        let target = self.model_path(stem);
        std::fs::create_dir_all(self.root.join(PIX2VOX_DIR))?;
        copy_atomically(model, &target)?;
        match eval {
            Some(report) => copy_atomically(report, &self.eval_path(stem))?,
            None => match std::fs::remove_file(self.eval_path(stem)) {
                // a stale report would describe the previous model
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                _ => {}
            },
        }
        Ok(target)
    }
}

/// The names a registry may hold: base, general and one per category.
pub fn model_stems() -> Vec<String> {
    let mut stems = vec![BASE_MODEL.to_string(), GENERAL_MODEL.to_string()];
    stems.extend(Category::ALL.iter().map(|c| c.name().to_string()));
    stems
}

fn copy_atomically(from: &Path, to: &Path) -> std::io::Result<()> {
    let partial = to.with_extension("partial");
    std::fs::copy(from, &partial)?;
    std::fs::rename(&partial, to)
}

/// One model of a registry listing.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct RegistryEntry {
    pub name: String,
    pub path: PathBuf,
    /// The `<name>.eval.json` report, when present.
    pub eval: Option<serde_json::Value>,
}

/// Downloads `<prefix>/pix2vox/<stem>.safetensors` (and `.eval.json`) for each stem that
/// exists in `store` into `cache`, and returns the local registry. Files already cached
/// with the same size are kept, so a restarted worker does not download again.
pub async fn mirror_from_store(
    store: &dyn mono2mesh_infra::blob::BlobStore,
    prefix: &str,
    stems: &[String],
    cache: &Path,
) -> Result<ModelRegistry, MirrorError> {
    let registry = ModelRegistry::new(cache);
    std::fs::create_dir_all(cache.join(PIX2VOX_DIR)).map_err(|e| MirrorError::Io(cache.to_path_buf(), e))?;
    let prefix = prefix.trim_matches('/');
    for stem in stems {
        for (file, local) in [
            (format!("{stem}.safetensors"), registry.model_path(stem)),
            (format!("{stem}.eval.json"), registry.eval_path(stem)),
        ] {
            let key_text = if prefix.is_empty() { format!("{PIX2VOX_DIR}/{file}") } else { format!("{prefix}/{PIX2VOX_DIR}/{file}") };
            let key = mono2mesh_infra::blob::BlobKey::parse(key_text).map_err(MirrorError::Store)?;
            let meta = match store.head(&key).await {
                Ok(meta) => meta,
                Err(e) if e.is_not_found() => continue,
                Err(e) => return Err(MirrorError::Store(e)),
            };
            if std::fs::metadata(&local).is_ok_and(|m| m.len() == meta.size) {
                continue;
            }
            let body = store.get(&key).await.map_err(MirrorError::Store)?;
            let partial = local.with_extension("partial");
            std::fs::write(&partial, &body)
                .and_then(|()| std::fs::rename(&partial, &local))
                .map_err(|e| MirrorError::Io(local.clone(), e))?;
        }
    }
    Ok(registry)
}

/// `s3://bucket/prefix` -> (bucket, prefix); `None` for a local directory.
pub fn parse_s3_location(location: &str) -> Option<(&str, &str)> {
    let rest = location.strip_prefix("s3://")?;
    Some(rest.split_once('/').unwrap_or((rest, "")))
}

/// The registry at `location`: a local directory as it is, or an S3 prefix mirrored (the
/// given stems only) into `cache`, default `~/.cache/mono2mesh/registry/<bucket>/<prefix>`.
pub async fn open_registry(
    location: &str,
    s3: &mono2mesh_infra::config::S3Settings,
    stems: &[String],
    cache: Option<PathBuf>,
) -> Result<ModelRegistry, MirrorError> {
    let Some((bucket, prefix)) = parse_s3_location(location) else {
        return Ok(ModelRegistry::new(location));
    };
    use mono2mesh_infra::blob::S3BlobStore;
    let store = S3BlobStore::unchecked(s3).with_bucket(bucket);
    // A missing bucket would otherwise look like an empty registry.
    store.ensure_bucket(false, &s3.region).await.map_err(MirrorError::Store)?;
    let cache = cache.unwrap_or_else(|| mono2mesh_core::user_cache_dir().join("registry").join(bucket).join(prefix));
    mirror_from_store(&store, prefix, stems, &cache).await
}

#[derive(Debug, thiserror::Error)]
pub enum MirrorError {
    #[error("model registry in the blob store: {0}")]
    Store(mono2mesh_infra::blob::BlobError),
    #[error("{0}: {1}")]
    Io(PathBuf, std::io::Error),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specialist_first_then_general_then_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let registry = ModelRegistry::new(dir.path());
        let err = registry.resolve(Some(Category::Chair)).unwrap_err();
        assert!(err.to_string().contains("chair.safetensors"), "{err}");
        assert!(registry.resolve(None).is_err());

        std::fs::create_dir_all(dir.path().join(PIX2VOX_DIR)).unwrap();
        std::fs::write(registry.general_path(), b"x").unwrap();
        let general = registry.resolve(Some(Category::Chair)).unwrap();
        assert_eq!(general.role, ModelRole::General);
        assert_eq!(registry.resolve(None).unwrap().role, ModelRole::General);

        std::fs::write(registry.specialist_path(Category::Chair), b"x").unwrap();
        let chair = registry.resolve(Some(Category::Chair)).unwrap();
        assert_eq!(chair, ResolvedModel { role: ModelRole::Specialist, path: dir.path().join("pix2vox/chair.safetensors") });
        assert_eq!(registry.resolve(Some(Category::Sofa)).unwrap().role, ModelRole::General);
        assert_eq!(registry.specialists(), vec![Category::Chair]);
    }

    #[test]
    fn publish_lists_and_refuses_unknown_names() {
        let dir = tempfile::tempdir().unwrap();
        let registry = ModelRegistry::new(dir.path().join("reg"));
        let model = dir.path().join("best.safetensors");
        let eval = dir.path().join("best.eval.json");
        std::fs::write(&model, b"weights").unwrap();
        std::fs::write(&eval, br#"{"best_iou": 0.5}"#).unwrap();
        assert!(registry.publish(&model, "teapot", None).is_err());
        let path = registry.publish(&model, "sofa", Some(&eval)).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"weights");
        registry.publish(&model, "base", None).unwrap();
        let entries = registry.entries();
        let names: Vec<&str> = entries.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, vec!["base", "sofa"]);
        assert_eq!(entries[1].eval.as_ref().unwrap()["best_iou"], 0.5);
        assert!(entries[0].eval.is_none());
        // Re-publishing without a report removes the stale one.
        registry.publish(&model, "sofa", None).unwrap();
        assert!(registry.entries()[1].eval.is_none());
    }

    #[tokio::test]
    async fn a_store_prefix_is_mirrored_once_into_the_cache() {
        use mono2mesh_infra::blob::{BlobKey, BlobStore, LocalBlobStore};
        let dir = tempfile::tempdir().unwrap();
        let store = LocalBlobStore::new(dir.path().join("bucket"));
        let put = |key: &str, body: &'static [u8]| {
            let store = &store;
            let key = BlobKey::parse(key).unwrap();
            async move { store.put(&key, bytes::Bytes::from_static(body)).await.unwrap() }
        };
        put("packs/v1/pix2vox/chair.safetensors", b"chair weights").await;
        put("packs/v1/pix2vox/chair.eval.json", b"{}").await;
        put("packs/v1/pix2vox/general.safetensors", b"general weights").await;
        let cache = dir.path().join("cache");
        let stems = vec!["chair".to_string(), "sofa".to_string(), "general".to_string()];
        let registry = mirror_from_store(&store, "/packs/v1/", &stems, &cache).await.unwrap();
        assert_eq!(registry.resolve(Some(Category::Chair)).unwrap().role, ModelRole::Specialist);
        assert_eq!(registry.resolve(Some(Category::Sofa)).unwrap().role, ModelRole::General);
        assert_eq!(std::fs::read(registry.specialist_path(Category::Chair)).unwrap(), b"chair weights");
        assert!(registry.eval_path("chair").is_file());
        // A second mirror keeps cached files of the same size (no download)...
        std::fs::write(registry.specialist_path(Category::Chair), b"CHAIR WEIGHTS").unwrap();
        mirror_from_store(&store, "packs/v1", &stems, &cache).await.unwrap();
        assert_eq!(std::fs::read(registry.specialist_path(Category::Chair)).unwrap(), b"CHAIR WEIGHTS");
        // ...and replaces those that differ.
        put("packs/v1/pix2vox/chair.safetensors", b"new chair weights").await;
        mirror_from_store(&store, "packs/v1", &stems, &cache).await.unwrap();
        assert_eq!(std::fs::read(registry.specialist_path(Category::Chair)).unwrap(), b"new chair weights");
    }
}
