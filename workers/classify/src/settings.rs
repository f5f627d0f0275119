//! The `[classify]` section of the layered config: the stage's decision settings plus
//! where its model lives and how it batches. Read the same way by the classify worker
//! and by `mono2mesh run`.

use mono2mesh_infra::config::{ConfigError, Settings};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::Duration;

use crate::{ClassifySettings, DEFAULT_CLASSIFIER};

/// What happens to a photo whose best category scores below `min_confidence`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UnknownCategoryPolicy {
    /// End the job as rejected, with the best guess and its score in the reason.
    Reject,
    /// Reconstruct with the general model. Not offered until the queue topology has a
    /// general lane; refused at start-up in every mode.
    General,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClassifyStageSettings {
    /// Classifier file; `None` means `<models.registry>/classifiers/mobilenet_v2.safetensors`.
    pub model: Option<PathBuf>,
    /// `auto` (GPU when present), `cpu`, `cuda` or `cuda:N`.
    pub device: String,
    /// How many ImageNet classes to report.
    pub top_k: usize,
    /// A category score below this is "unknown".
    pub min_confidence: f32,
    pub unknown_category: UnknownCategoryPolicy,
    /// Most photos per forward pass.
    pub batch_size: usize,
    /// How long a partial batch waits for more photos.
    pub batch_latency_ms: u64,
}

impl Default for ClassifyStageSettings {
    fn default() -> Self {
        let decision = ClassifySettings::default();
        ClassifyStageSettings {
            model: None,
            device: "auto".into(),
            top_k: decision.top_k,
            min_confidence: decision.min_confidence,
            unknown_category: UnknownCategoryPolicy::Reject,
            batch_size: 8,
            batch_latency_ms: 20,
        }
    }
}

impl ClassifyStageSettings {
    /// The `[classify]` section of the layered settings, checked.
    pub fn from_config(settings: &Settings) -> Result<Self, ConfigError> {
        let stage: ClassifyStageSettings = settings.classify.parse("classify")?;
        stage.validate().map_err(|message| ConfigError::Section { section: "classify", message })?;
        Ok(stage)
    }

    /// Settings that cannot describe a working classify stage, and why.
    pub fn validate(&self) -> Result<(), String> {
        if !(0.0..=1.0).contains(&self.min_confidence) {
            return Err(format!("min_confidence must lie in [0, 1], got {}", self.min_confidence));
        }
        if self.top_k == 0 || self.batch_size == 0 {
            return Err("top_k and batch_size must be at least 1".into());
        }
        if self.unknown_category == UnknownCategoryPolicy::General {
            return Err("unknown_category = \"general\" needs a general reconstruction lane, which the pipeline does \
                 not have yet; use \"reject\""
                .into());
        }
        Ok(())
    }

    /// The classify function's own settings.
    pub fn decision(&self) -> ClassifySettings {
        ClassifySettings { top_k: self.top_k, min_confidence: self.min_confidence }
    }

    /// The classifier file: `model`, else the default file in the model registry.
    pub fn model_path(&self, registry: &str) -> PathBuf {
        self.model.clone().unwrap_or_else(|| PathBuf::from(registry).join(DEFAULT_CLASSIFIER))
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
        assert_eq!(ClassifyStageSettings::from_config(&Settings::defaults().unwrap()).unwrap(), ClassifyStageSettings::default());
    }

    #[test]
    fn bad_values_are_refused_naming_the_section() {
        for (key, value) in [("classify.min_confidence", "1.5"), ("classify.unknown_category", "general"), ("classify.batch_size", "0")] {
            let settings = SettingsLoader::with_env(Default::default()).set(key, value).load().unwrap();
            let error = ClassifyStageSettings::from_config(&settings).unwrap_err().to_string();
            assert!(error.contains("[classify]"), "{key}: {error}");
        }
        let settings = SettingsLoader::with_env(Default::default()).set("classify.min_confidence", "0.5").load().unwrap();
        assert_eq!(ClassifyStageSettings::from_config(&settings).unwrap().decision().min_confidence, 0.5);
    }
}
