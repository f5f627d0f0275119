//! Our Pix2Vox model files, and import of official Pix2Vox checkpoints into them.
//!
//! A model file is a safetensors file: one float32 tensor per variable, named as the
//! [`Pix2Vox`] variables (`encoder.vgg.0.weight`, ...), plus string metadata in
//! `__metadata__` so a worker can refuse a file that does not fit:
//!
//! | key | value |
//! |---|---|
//! | `format` | `mono2mesh-pix2vox` |
//! | `schema_version` | `1` |
//! | `variant` | `F` or `A` |
//! | `category` | a Pascal3D category name, or `general` |
//! | `provenance` | JSON object: `kind` (`import`, `train`, `finetune`, ...) and details |
//! | `preprocessing` | JSON object describing the input transform (see [`PreprocessingSpec`]) |

use std::collections::BTreeMap;
use std::path::Path;

use mono2mesh_core::Category;
use serde::{Deserialize, Serialize};
use tch::{nn, Device, Tensor};

use crate::model_file::{self, load_exact, read_model_file, write_model_file};
use crate::pix2vox::{var_name_for_official, Pix2Vox, Variant};
use crate::pix2vox_preprocess::{CROP_SIZE, INPUT_SIZE, MEAN, STD, TEST_BACKGROUND};
use crate::torch_pickle::{self, TorchPickleError, TorchValue};

pub const FORMAT: &str = "mono2mesh-pix2vox";
pub const SCHEMA_VERSION: u32 = 1;
/// Prefix of the optimizer tensors a training checkpoint (`mono2mesh-train`) carries
/// beside the weights; loading a model skips them.
pub const OPTIMIZER_STATE_PREFIX: &str = "optimizer.";

#[derive(Debug, thiserror::Error)]
pub enum Pix2VoxModelError {
    #[error(transparent)]
    File(#[from] model_file::ModelFileError),
    #[error("{path} is not a mono2mesh Pix2Vox model file: {message}")]
    NotOurs { path: String, message: String },
    #[error("{path} is Pix2Vox-{found}, but Pix2Vox-{expected} is required")]
    WrongVariant { path: String, expected: Variant, found: Variant },
    #[error("{path} expects preprocessing {found}, this build implements {implemented}")]
    WrongPreprocessing { path: String, found: String, implemented: String },
    #[error("{path}: {source}")]
    InFile { path: String, source: model_file::ModelFileError },
    #[error("{path} stores only what differs from {base}, which {problem}")]
    Base { path: String, base: String, problem: String },
    #[error("checkpoint: {0}")]
    Checkpoint(#[from] TorchPickleError),
    #[error("checkpoint layout: {0}")]
    CheckpointLayout(String),
}

/// The input transform a model was trained with. Only the official test transform is
/// implemented; the loader refuses any other.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PreprocessingSpec {
    pub name: String,
    pub channel_order: String,
    pub crop: usize,
    pub size: usize,
    pub background: f32,
    pub mean: f32,
    pub std: f32,
}

impl PreprocessingSpec {
    /// What [`crate::pix2vox_preprocess`] implements.
    pub fn official() -> Self {
        PreprocessingSpec {
            name: "pix2vox-test".into(),
            channel_order: "BGR".into(),
            crop: CROP_SIZE,
            size: INPUT_SIZE,
            background: TEST_BACKGROUND,
            mean: MEAN,
            std: STD,
        }
    }
}

/// Where a model's weights came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Provenance {
    /// `import`, `train`, `finetune`, `fill-rule`, ...
    pub kind: String,
    /// Free-form details (source file, epochs, IoU, dataset...).
    #[serde(default)]
    pub details: BTreeMap<String, serde_json::Value>,
}

impl Provenance {
    /// `kind` with no details (tests, benchmarks, rule-made models).
    pub fn of_kind(kind: &str) -> Provenance {
        Provenance { kind: kind.to_string(), details: BTreeMap::new() }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ModelMetadata {
    pub variant: Variant,
    /// `None`: a general (all-category) model.
    pub category: Option<Category>,
    pub provenance: Provenance,
    pub preprocessing: PreprocessingSpec,
}

impl ModelMetadata {
    /// A model taking the official Pix2Vox preprocessing (the only kind we make).
    pub fn official(variant: Variant, category: Option<Category>, provenance: Provenance) -> ModelMetadata {
        ModelMetadata { variant, category, provenance, preprocessing: PreprocessingSpec::official() }
    }

    /// The metadata as model-file header entries.
    pub fn to_map(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            ("format".to_string(), FORMAT.to_string()),
            ("schema_version".to_string(), SCHEMA_VERSION.to_string()),
            ("variant".to_string(), self.variant.to_string()),
            ("category".to_string(), self.category.map_or("general".to_string(), |c| c.name().to_string())),
            ("provenance".to_string(), to_json(&self.provenance)),
            ("preprocessing".to_string(), to_json(&self.preprocessing)),
        ])
    }

    pub(crate) fn from_map(map: &BTreeMap<String, String>) -> Result<Self, String> {
        let get = |k: &str| map.get(k).ok_or_else(|| format!("metadata lacks {k:?}"));
        if get("format")? != FORMAT {
            return Err(format!("format is {:?}", get("format")?));
        }
        let schema: u32 = get("schema_version")?.parse().map_err(|_| "schema_version is not a number".to_string())?;
        if schema != SCHEMA_VERSION {
            return Err(format!("schema version {schema}, this build reads {SCHEMA_VERSION}"));
        }
        let variant = get("variant")?.parse::<Variant>().map_err(|e| e.to_string())?;
        let category = match get("category")?.as_str() {
            "general" => None,
            name => Some(name.parse::<Category>().map_err(|e| e.to_string())?),
        };
        let provenance = serde_json::from_str(get("provenance")?).map_err(|e| format!("provenance: {e}"))?;
        let preprocessing = serde_json::from_str(get("preprocessing")?).map_err(|e| format!("preprocessing: {e}"))?;
        Ok(ModelMetadata { variant, category, provenance, preprocessing })
    }
}

/// Metadata parts are plain data (strings, numbers, maps), which serde_json always
/// serialises; the fallback only keeps this total.
fn to_json<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| "{}".to_string())
}

/// A network with its weights and metadata.
#[derive(Debug)]
pub struct Pix2VoxModel {
    pub vs: nn::VarStore,
    pub net: Pix2Vox,
    pub metadata: ModelMetadata,
}

impl Pix2VoxModel {
    /// A freshly initialised network (official initialisation) on `device`.
    pub fn new(metadata: ModelMetadata, device: Device) -> Self {
        let vs = nn::VarStore::new(device);
        let net = Pix2Vox::new(&vs.root(), metadata.variant);
        Pix2VoxModel { vs, net, metadata }
    }

    /// Load a model file (or a training checkpoint, whose optimizer state is skipped);
    /// `expected` refuses a file of the other variant.
    pub fn load(path: impl AsRef<Path>, device: Device, expected: Option<Variant>) -> Result<Self, Pix2VoxModelError> {
        let path = path.as_ref();
        let file = read_model_file(path)?;
        Self::from_file(path, &file, device, expected)
    }

    /// [`Pix2VoxModel::load`] from a file already read (training resumes from one whose
    /// optimizer state it reads too).
    pub fn from_file(
        path: &Path,
        file: &model_file::ModelFile,
        device: Device,
        expected: Option<Variant>,
    ) -> Result<Self, Pix2VoxModelError> {
        let metadata = ModelMetadata::from_map(&file.metadata)
            .map_err(|message| Pix2VoxModelError::NotOurs { path: path.display().to_string(), message })?;
        let shown = path.display().to_string();
        if let Some(expected) = expected {
            if expected != metadata.variant {
                return Err(Pix2VoxModelError::WrongVariant { path: shown, expected, found: metadata.variant });
            }
        }
        if metadata.preprocessing != PreprocessingSpec::official() {
            return Err(Pix2VoxModelError::WrongPreprocessing {
                path: shown,
                found: format!("{:?}", metadata.preprocessing),
                implemented: format!("{:?}", PreprocessingSpec::official()),
            });
        }
        let composed;
        let tensors = match file.metadata.get(BASE_MODEL_KEY) {
            None => &file.tensors,
            Some(base_name) => {
                composed = compose_with_base(path, base_name, file.metadata.get(BASE_SHA256_KEY), &file.tensors)?;
                &composed
            }
        };
        let model = Pix2VoxModel::new(metadata, device);
        load_exact(&model.vs, tensors, |name| name.starts_with(OPTIMIZER_STATE_PREFIX))
            .map_err(|source| Pix2VoxModelError::InFile { path: shown, source })?;
        Ok(model)
    }

    /// Writes the model for shipping: tensors in `storage` precision and, with `base`
    /// (the path of a model file in the same directory and that model), only the tensors
    /// that differ from it. Such a file names its base and the base's SHA-256; loading it
    /// composes the two, and refuses a base that changed since.
    pub fn save_packed(
        &self,
        path: impl AsRef<Path>,
        storage: model_file::StorageDtype,
        base: Option<(&Path, &Pix2VoxModel)>,
    ) -> Result<PackedStats, Pix2VoxModelError> {
        let path = path.as_ref();
        let mut vars: Vec<(String, Tensor)> = self.vs.variables().into_iter().collect();
        vars.sort_by(|a, b| a.0.cmp(&b.0));
        let total = vars.len();
        let mut metadata = self.metadata.to_map();
        if let Some((base_path, base_model)) = base {
            let base_vars = base_model.vs.variables();
            vars.retain(|(name, t)| base_vars.get(name).is_none_or(|b| b.size() != t.size() || !b.equal(t)));
            let name = base_path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .ok_or_else(|| Pix2VoxModelError::Base { path: path.display().to_string(), base: base_path.display().to_string(), problem: "has no file name".into() })?;
            let bytes = std::fs::read(base_path).map_err(|e| Pix2VoxModelError::Base {
                path: path.display().to_string(),
                base: base_path.display().to_string(),
                problem: format!("cannot be read: {e}"),
            })?;
            metadata.insert(BASE_MODEL_KEY.to_string(), name);
            metadata.insert(BASE_SHA256_KEY.to_string(), sha256_hex(&bytes));
        }
        let stored = vars.len();
        model_file::write_model_file_as(path, &vars, &metadata, storage)?;
        let bytes = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        Ok(PackedStats { tensors_total: total, tensors_stored: stored, bytes })
    }

    /// The metadata of a model file without loading its weights.
    pub fn read_metadata(path: impl AsRef<Path>) -> Result<ModelMetadata, Pix2VoxModelError> {
        let path = path.as_ref();
        let map = model_file::read_metadata(path)?;
        ModelMetadata::from_map(&map).map_err(|message| Pix2VoxModelError::NotOurs { path: path.display().to_string(), message })
    }

    /// Write the weights (float32) and metadata.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<(), Pix2VoxModelError> {
        let mut vars: Vec<(String, Tensor)> = self.vs.variables().into_iter().collect();
        vars.sort_by(|a, b| a.0.cmp(&b.0));
        write_model_file(path.as_ref(), &vars, &self.metadata.to_map())?;
        Ok(())
    }
}

/// Metadata key of a packed model that stores only its differences from another file.
pub const BASE_MODEL_KEY: &str = "base_model";
pub const BASE_SHA256_KEY: &str = "base_sha256";

/// What [`Pix2VoxModel::save_packed`] wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PackedStats {
    pub tensors_total: usize,
    pub tensors_stored: usize,
    pub bytes: u64,
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(bytes))
}

/// The base's tensors with `own` laid over them.
fn compose_with_base(
    path: &Path,
    base_name: &str,
    expected_sha: Option<&String>,
    own: &[(String, Tensor)],
) -> Result<Vec<(String, Tensor)>, Pix2VoxModelError> {
    let err = |problem: String| Pix2VoxModelError::Base { path: path.display().to_string(), base: base_name.to_string(), problem };
    // the base lives beside the file, by name only: no path can escape the directory
    if base_name.contains('/') || base_name.contains('\\') || base_name.starts_with('.') {
        return Err(err("is not a plain file name".into()));
    }
    let base_path = path.parent().unwrap_or(Path::new(".")).join(base_name);
    let bytes = std::fs::read(&base_path).map_err(|e| err(format!("cannot be read ({}): {e}", base_path.display())))?;
    if let Some(expected) = expected_sha {
        let found = sha256_hex(&bytes);
        if &found != expected {
            return Err(err(format!("has changed since (SHA-256 {found}, expected {expected}): publish the pack again")));
        }
    }
    let base = model_file::parse_model_file(&base_path, &bytes)?;
    if base.metadata.contains_key(BASE_MODEL_KEY) {
        return Err(err("itself stores only differences (one level of composition is supported)".into()));
    }
    let mut merged: BTreeMap<String, Tensor> = base.tensors.into_iter().collect();
    for (name, tensor) in own {
        merged.insert(name.clone(), tensor.shallow_clone());
    }
    Ok(merged.into_iter().collect())
}

/// What an imported checkpoint said about itself.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckpointInfo {
    pub epoch_idx: Option<i64>,
    pub best_iou: Option<f64>,
    pub best_epoch: Option<i64>,
}

/// The network weights of an official checkpoint under our names (optimiser states left
/// out; BatchNorm `num_batches_tracked` counters kept, see [`is_unused_official_entry`]).
pub fn read_official_checkpoint(path: impl AsRef<Path>) -> Result<(Vec<(String, Tensor)>, CheckpointInfo), Pix2VoxModelError> {
    let root = torch_pickle::read_checkpoint(path)?;
    let TorchValue::Dict(items) = root else {
        return Err(Pix2VoxModelError::CheckpointLayout(format!(
            "top level is a {}, expected the official dict of state_dicts",
            root.type_name()
        )));
    };
    let mut info = CheckpointInfo { epoch_idx: None, best_iou: None, best_epoch: None };
    let mut named = Vec::new();
    let mut found_networks = 0;
    for (key, value) in items {
        let TorchValue::Str(key) = key else { continue };
        match (key.as_str(), &value) {
            ("epoch_idx", TorchValue::Int(i)) => info.epoch_idx = Some(*i),
            ("best_epoch", TorchValue::Int(i)) => info.best_epoch = Some(*i),
            ("best_iou", TorchValue::Float(f)) => info.best_iou = Some(*f),
            _ => {}
        }
        // `*_solver_state_dict` (optimiser) and other entries hold no network weights
        if !key.ends_with("_state_dict") || key.ends_with("_solver_state_dict") {
            continue;
        }
        found_networks += 1;
        for (name, tensor) in value.into_state_dict()? {
            let ours = var_name_for_official(&key, &name).unwrap_or_else(|| format!("{key}/{name}"));
            named.push((ours, tensor));
        }
    }
    if found_networks == 0 {
        return Err(Pix2VoxModelError::CheckpointLayout(
            "no encoder_state_dict/decoder_state_dict/... entries: not an official Pix2Vox checkpoint".into(),
        ));
    }
    Ok((named, info))
}

/// Import an official checkpoint (legacy or zip format) as a model of `variant`.
pub fn import_official_checkpoint(
    path: impl AsRef<Path>,
    variant: Variant,
    category: Option<Category>,
    device: Device,
) -> Result<Pix2VoxModel, Pix2VoxModelError> {
    let path = path.as_ref();
    let (named, info) = read_official_checkpoint(path)?;
    let mut details = BTreeMap::new();
    let file_name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    details.insert("source".to_string(), serde_json::Value::from(file_name));
    if let Some(e) = info.epoch_idx {
        details.insert("epoch_idx".to_string(), e.into());
    }
    if let Some(iou) = info.best_iou {
        details.insert("best_iou".to_string(), iou.into());
    }
    if let Some(e) = info.best_epoch {
        details.insert("best_epoch".to_string(), e.into());
    }
    let metadata = ModelMetadata::official(variant, category, Provenance { kind: "import".into(), details });
    let model = Pix2VoxModel::new(metadata, device);
    load_exact(&model.vs, &named, is_unused_official_entry)?;
    Ok(model)
}

/// Official state_dict entries our network has no variable for: BatchNorm's
/// `num_batches_tracked` (only used when momentum is None, which Pix2Vox never sets).
pub fn is_unused_official_entry(name: &str) -> bool {
    name.ends_with("num_batches_tracked")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metadata(variant: Variant) -> ModelMetadata {
        ModelMetadata::official(variant, Some(Category::Chair), Provenance::of_kind("test"))
    }

    #[test]
    fn save_then_load_round_trips_weights_and_metadata() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.safetensors");
        let model = Pix2VoxModel::new(metadata(Variant::F), Device::Cpu);
        model.save(&path).unwrap();
        let loaded = Pix2VoxModel::load(&path, Device::Cpu, Some(Variant::F)).unwrap();
        assert_eq!(loaded.metadata, model.metadata);
        let a = model.vs.variables();
        let b = loaded.vs.variables();
        assert_eq!(a.len(), b.len());
        for (name, t) in &a {
            assert!(t.equal(&b[name]), "{name} differs");
        }
        let err = Pix2VoxModel::load(&path, Device::Cpu, Some(Variant::A)).unwrap_err();
        assert!(matches!(err, Pix2VoxModelError::WrongVariant { .. }), "{err}");
        assert!(err.to_string().contains(&path.display().to_string()), "{err}");
        // the metadata is checked against the weights: an F file relabelled as A fails
        let file = read_model_file(&path).unwrap();
        let mut meta = file.metadata.clone();
        meta.insert("variant".into(), "A".into());
        let relabelled = dir.path().join("relabelled.safetensors");
        write_model_file(&relabelled, &file.tensors, &meta).unwrap();
        let err = Pix2VoxModel::load(&relabelled, Device::Cpu, None).unwrap_err().to_string();
        assert!(err.contains("missing") && err.contains("refiner.layer1.0.weight"), "{err}");
        assert!(err.contains("mis-shaped") && err.contains("decoder.layer1.0.weight"), "{err}");
    }

    #[test]
    fn files_without_our_metadata_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("plain.safetensors");
        Tensor::write_safetensors(&[("x", &Tensor::zeros([2], (tch::Kind::Float, Device::Cpu)))], &path).unwrap();
        let err = Pix2VoxModel::load(&path, Device::Cpu, None).unwrap_err();
        assert!(matches!(err, Pix2VoxModelError::NotOurs { .. }), "{err}");
        std::fs::write(&path, b"garbage").unwrap();
        assert!(matches!(
            Pix2VoxModel::load(&path, Device::Cpu, None),
            Err(Pix2VoxModelError::File(model_file::ModelFileError::Format { .. }))
        ));
    }

    #[test]
    fn a_packed_specialist_stores_only_its_differences_and_needs_its_exact_base() {
        use crate::model_file::StorageDtype;
        let dir = tempfile::tempdir().unwrap();
        let general = Pix2VoxModel::new(ModelMetadata::official(Variant::F, None, Provenance::of_kind("test")), Device::Cpu);
        let general_path = dir.path().join("general.safetensors");
        let full = general.save_packed(&general_path, StorageDtype::F16, None).unwrap();
        assert_eq!(full.tensors_stored, full.tensors_total);
        // a specialist: the general model with the decoder's first layer changed
        let chair = Pix2VoxModel::new(metadata(Variant::F), Device::Cpu);
        tch::no_grad(|| {
            let ours = chair.vs.variables();
            for (name, t) in general.vs.variables() {
                ours[&name].shallow_clone().copy_(&t);
            }
            let _ = ours["decoder.layer1.0.weight"].shallow_clone().g_add_scalar_(0.25);
        });
        let chair_path = dir.path().join("chair.safetensors");
        let delta = chair.save_packed(&chair_path, StorageDtype::F16, Some((&general_path, &general))).unwrap();
        assert_eq!(delta.tensors_stored, 1);
        // decoder.layer1.0.weight is 2.1 M of the network's 7.4 M values
        assert!(delta.bytes * 3 < full.bytes, "{} vs {}", delta.bytes, full.bytes);
        let loaded = Pix2VoxModel::load(&chair_path, Device::Cpu, Some(Variant::F)).unwrap();
        assert_eq!(loaded.metadata.category, Some(Category::Chair));
        for (name, t) in chair.vs.variables() {
            let diff = (&loaded.vs.variables()[&name] - &t).abs().max().double_value(&[]);
            let scale = t.abs().max().double_value(&[]).max(1e-3);
            assert!(diff <= 1e-3 * scale, "{name}: f16 storage off by {diff}");
        }
        // a changed base is refused, naming both files
        let other = Pix2VoxModel::new(ModelMetadata::official(Variant::F, None, Provenance::of_kind("other")), Device::Cpu);
        other.save_packed(&general_path, StorageDtype::F16, None).unwrap();
        let err = Pix2VoxModel::load(&chair_path, Device::Cpu, None).unwrap_err().to_string();
        assert!(err.contains("chair.safetensors") && err.contains("general.safetensors") && err.contains("changed"), "{err}");
        // a missing base too
        std::fs::remove_file(&general_path).unwrap();
        let err = Pix2VoxModel::load(&chair_path, Device::Cpu, None).unwrap_err().to_string();
        assert!(err.contains("cannot be read"), "{err}");
        // a truncated file is an error naming it, not a panic
        let bytes = std::fs::read(&chair_path).unwrap();
        let cut = dir.path().join("cut.safetensors");
        std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
        let err = Pix2VoxModel::load(&cut, Device::Cpu, None).unwrap_err().to_string();
        assert!(err.contains("cut.safetensors"), "{err}");
        let err = Pix2VoxModel::load(dir.path().join("absent.safetensors"), Device::Cpu, None).unwrap_err().to_string();
        assert!(err.contains("absent.safetensors"), "{err}");
    }
}
