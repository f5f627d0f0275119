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
}
