//! The `[reconstruct]` section of the layered config: which categories a worker serves,
//! how it batches, on which device and in which arithmetic, and the binvox threshold.
//! Read the same way by the reconstruct worker and by `mono2mesh run`.

use mono2mesh_core::Category;
use mono2mesh_infra::config::{ConfigError, Settings};
use mono2mesh_vision::pix2vox_preprocess::InputKind;
use mono2mesh_vision::precision::Precision;
use serde::{Deserialize, Serialize};
use std::time::Duration;

use crate::{ReconstructSettings, DEFAULT_THRESHOLD};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReconstructStageSettings {
    /// Categories this worker serves (and loads specialists for); a worker shard names
    /// its own with `--categories`.
    pub categories: Vec<Category>,
    /// `auto` (GPU when present), `cpu`, `cuda` or `cuda:N`.
    pub device: String,
    /// Arithmetic of the forward pass on a CPU (see [`ReconstructSettings::precision`]).
    pub precision: Precision,
    /// Occupancy threshold of the stored `voxels.binvox`.
    pub threshold: f32,
    /// Most photos per forward pass.
    pub batch_size: usize,
    /// How long a partial batch waits for more photos.
    pub batch_latency_ms: u64,
}

impl Default for ReconstructStageSettings {
    fn default() -> Self {
        ReconstructStageSettings {
            categories: Category::ALL.to_vec(),
            device: "auto".into(),
            precision: Precision::Auto,
            threshold: DEFAULT_THRESHOLD,
            batch_size: 8,
            batch_latency_ms: 50,
        }
    }
}

impl ReconstructStageSettings {
    /// The `[reconstruct]` section of the layered settings, checked.
    pub fn from_config(settings: &Settings) -> Result<Self, ConfigError> {
        let stage: ReconstructStageSettings = settings.reconstruct.parse("reconstruct")?;
        stage.validate().map_err(|message| ConfigError::Section { section: "reconstruct", message })?;
        Ok(stage)
    }

    pub fn validate(&self) -> Result<(), String> {
        if !(self.threshold > 0.0 && self.threshold < 1.0) {
            return Err(format!("threshold must lie strictly between 0 and 1, got {}", self.threshold));
        }
        if self.batch_size == 0 {
            return Err("batch_size must be at least 1".into());
        }
        if self.categories.is_empty() {
            return Err("no categories to serve".into());
        }
        Ok(())
    }

    /// The reconstruct function's own settings for a batch.
    pub fn inference(&self) -> ReconstructSettings {
        ReconstructSettings { input_kind: InputKind::Auto, max_batch: self.batch_size, precision: self.precision }
    }

    pub fn batch_latency(&self) -> Duration {
        Duration::from_millis(self.batch_latency_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mono2mesh_infra::config::SettingsLoader;

    #[test]
    fn the_compiled_config_defaults_are_these_defaults() {
        let stage = ReconstructStageSettings::from_config(&Settings::defaults().unwrap()).unwrap();
        assert_eq!(stage, ReconstructStageSettings::default());
    }

    #[test]
    fn categories_from_the_environment_and_bad_values() {
        let env = [("MONO2MESH__RECONSTRUCT__CATEGORIES".to_string(), "chair, sofa".to_string())].into_iter().collect();
        let settings = SettingsLoader::with_env(env).load().unwrap();
        let stage = ReconstructStageSettings::from_config(&settings).unwrap();
        assert_eq!(stage.categories, vec![Category::Chair, Category::Sofa]);
        let settings = SettingsLoader::with_env(Default::default()).set("reconstruct.threshold", "1.0").load().unwrap();
        let error = ReconstructStageSettings::from_config(&settings).unwrap_err().to_string();
        assert!(error.contains("[reconstruct]") && error.contains("threshold"), "{error}");
        let settings = SettingsLoader::with_env(Default::default()).set("reconstruct.precision", "f16").load().unwrap();
        assert!(ReconstructStageSettings::from_config(&settings).is_err());
    }
}
