//! ImageNet classifiers in torchvision's layout (ResNet50, MobileNetV2), so torchvision
//! state_dicts load one-to-one, plus torchvision's eval preprocessing and top-k.
//!
//! The networks are tch's `vision::resnet::resnet50` and `vision::mobilenet::v2`: their
//! VarStore names equal torchvision's state_dict keys (minus `num_batches_tracked`), which
//! the tests check against the reference key list and the real MobileNetV2 checkpoint.

pub mod labels;
pub mod preprocess;

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::str::FromStr;

use tch::nn::{ModuleT, VarStore};
use tch::{Device, Kind, Tensor};

use crate::model_file::{load_exact, read_model_file, write_model_file, ModelFileError};
pub use labels::{imagenet_class_name, IMAGENET_CLASS_COUNT};
pub use preprocess::{preprocess_rgb, PREPROCESSING};

/// Value of the `format` metadata key in our classifier files.
pub const CLASSIFIER_FORMAT: &str = "mono2mesh-classifier/1";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Architecture {
    ResNet50,
    MobileNetV2,
}

impl Architecture {
    pub const ALL: [Architecture; 2] = [Architecture::ResNet50, Architecture::MobileNetV2];

    /// torchvision's model name, also our metadata value and CLI spelling.
    pub fn name(self) -> &'static str {
        match self {
            Architecture::ResNet50 => "resnet50",
            Architecture::MobileNetV2 => "mobilenet_v2",
        }
    }

    fn build(self, store: &VarStore) -> Box<dyn ModuleT + Send> {
        let root = store.root();
        let classes = IMAGENET_CLASS_COUNT as i64;
        match self {
            Architecture::ResNet50 => Box::new(tch::vision::resnet::resnet50(&root, classes)),
            Architecture::MobileNetV2 => Box::new(tch::vision::mobilenet::v2(&root, classes)),
        }
    }
}

impl fmt::Display for Architecture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown classifier architecture {0:?}: expected resnet50 or mobilenet_v2")]
pub struct UnknownArchitecture(pub String);

impl FromStr for Architecture {
    type Err = UnknownArchitecture;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let wanted = s.trim().to_ascii_lowercase().replace('-', "_");
        Architecture::ALL
            .into_iter()
            .find(|a| a.name() == wanted || (wanted == "mobilenetv2" && *a == Architecture::MobileNetV2))
            .ok_or_else(|| UnknownArchitecture(s.to_string()))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ClassifierError {
    #[error(transparent)]
    ModelFile(#[from] ModelFileError),
    #[error("{path} is not a mono2mesh classifier file (metadata format {found:?}, expected {CLASSIFIER_FORMAT:?})")]
    NotAClassifier { path: String, found: Option<String> },
    #[error("{path}: {source}")]
    Architecture { path: String, source: UnknownArchitecture },
    #[error("{path} was made with preprocessing {found:?}; this build implements {PREPROCESSING:?}")]
    Preprocessing { path: String, found: Option<String> },
    #[error("input batch must be [N, 3, H, W] float, got {shape:?} {kind:?}")]
    BadInput { shape: Vec<i64>, kind: Kind },
    #[error("cannot read torchvision checkpoint: {0}")]
    Checkpoint(#[from] crate::torch_pickle::TorchPickleError),
    #[error("libtorch error: {0}")]
    Torch(#[from] tch::TchError),
}

/// One ImageNet class with its softmax probability.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ClassScore {
    pub index: usize,
    pub name: &'static str,
    pub probability: f32,
}

/// A classifier network with its weights on one device, in eval mode.
pub struct ClassifierModel {
    architecture: Architecture,
    metadata: BTreeMap<String, String>,
    store: VarStore,
    network: Box<dyn ModuleT + Send>,
}

impl ClassifierModel {
    /// A network with tch's default initialisation (for tests, benches and fill-rule weights).
    pub fn untrained(architecture: Architecture, device: Device) -> Self {
        let mut store = VarStore::new(device);
        let network = architecture.build(&store);
        store.freeze();
        let metadata = base_metadata(architecture, "untrained");
        ClassifierModel { architecture, metadata, store, network }
    }

    /// Builds the network from a torchvision state_dict (e.g. read by
    /// [`crate::torch_pickle`]); every key must match a variable by name and shape.
    pub fn from_torchvision_state_dict(
        architecture: Architecture,
        state_dict: &[(String, Tensor)],
        source: &str,
        device: Device,
    ) -> Result<Self, ClassifierError> {
        let mut model = ClassifierModel::untrained(architecture, device);
        load_exact(&model.store, state_dict, |name| name.ends_with("num_batches_tracked"))?;
        model.metadata = base_metadata(architecture, source);
        Ok(model)
    }

    /// Reads a torchvision `.pth` state_dict (legacy or zip `torch.save` format) without
    /// Python; `source` names it in the metadata.
    pub fn import_torchvision_checkpoint(
        architecture: Architecture,
        checkpoint: &Path,
        source: &str,
        device: Device,
    ) -> Result<Self, ClassifierError> {
        let state_dict = crate::torch_pickle::read_checkpoint(checkpoint)?.into_state_dict()?;
        ClassifierModel::from_torchvision_state_dict(architecture, &state_dict, source, device)
    }

    /// Loads one of our classifier files, refusing files that are not classifiers or that
    /// expect a different preprocessing.
    pub fn load(path: &Path, device: Device) -> Result<Self, ClassifierError> {
        let file = read_model_file(path)?;
        let shown = path.display().to_string();
        let format = file.metadata.get("format").cloned();
        if format.as_deref() != Some(CLASSIFIER_FORMAT) {
            return Err(ClassifierError::NotAClassifier { path: shown, found: format });
        }
        let architecture: Architecture = file
            .metadata
            .get("architecture")
            .map(String::as_str)
            .unwrap_or("")
            .parse()
            .map_err(|source| ClassifierError::Architecture { path: shown.clone(), source })?;
        let preprocessing = file.metadata.get("preprocessing").cloned();
        if preprocessing.as_deref() != Some(PREPROCESSING) {
            return Err(ClassifierError::Preprocessing { path: shown, found: preprocessing });
        }
        let mut model = ClassifierModel::untrained(architecture, device);
        load_exact(&model.store, &file.tensors, |_| false)?;
        model.metadata = file.metadata;
        Ok(model)
    }

    /// Writes our model file (weights + metadata).
    pub fn save(&self, path: &Path) -> Result<(), ClassifierError> {
        let mut tensors: Vec<(String, Tensor)> =
            self.store.variables().into_iter().collect();
        tensors.sort_by(|a, b| a.0.cmp(&b.0));
        write_model_file(path, &tensors, &self.metadata)?;
        Ok(())
    }

    pub fn architecture(&self) -> Architecture {
        self.architecture
    }

    pub fn metadata(&self) -> &BTreeMap<String, String> {
        &self.metadata
    }

    pub fn device(&self) -> Device {
        self.store.device()
    }

    pub fn var_store(&self) -> &VarStore {
        &self.store
    }

    /// Logits `[N, 1000]` for a preprocessed batch `[N, 3, H, W]` (moved to the model's
    /// device), in eval mode without gradients.
    pub fn logits(&self, batch: &Tensor) -> Result<Tensor, ClassifierError> {
        let shape = batch.size();
        if shape.len() != 4 || shape[1] != 3 || batch.kind() != Kind::Float {
            return Err(ClassifierError::BadInput { shape, kind: batch.kind() });
        }
        let input = batch.to_device(self.device());
        Ok(tch::no_grad(|| self.network.forward_t(&input, false)))
    }

    /// Softmax probabilities `[N, 1000]` on the CPU.
    pub fn probabilities(&self, batch: &Tensor) -> Result<Tensor, ClassifierError> {
        Ok(self.logits(batch)?.softmax(-1, Kind::Float).to_device(Device::Cpu))
    }
}

fn base_metadata(architecture: Architecture, source: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("format".to_string(), CLASSIFIER_FORMAT.to_string()),
        ("architecture".to_string(), architecture.name().to_string()),
        ("layout".to_string(), "torchvision state_dict".to_string()),
        ("classes".to_string(), "imagenet-1k (torchvision order)".to_string()),
        ("source".to_string(), source.to_string()),
        ("preprocessing".to_string(), PREPROCESSING.to_string()),
    ])
}

/// The `k` most probable classes of one row of probabilities `[1000]`, best first.
pub fn top_k(probabilities: &[f32], k: usize) -> Vec<ClassScore> {
    let mut order: Vec<usize> = (0..probabilities.len()).collect();
    order.sort_by(|&a, &b| probabilities[b].total_cmp(&probabilities[a]).then(a.cmp(&b)));
    order
        .into_iter()
        .take(k)
        .map(|index| ClassScore { index, name: imagenet_class_name(index), probability: probabilities[index] })
        .collect()
}

/// Copies a `[N, C]` float tensor into one `Vec<f32>` per row.
pub fn rows(matrix: &Tensor) -> Result<Vec<Vec<f32>>, ClassifierError> {
    let matrix = matrix.to_device(Device::Cpu).to_kind(Kind::Float).contiguous();
    let size = matrix.size();
    let (n, c) = match size.as_slice() {
        [n, c] => (*n as usize, *c as usize),
        _ => return Err(ClassifierError::BadInput { shape: size, kind: matrix.kind() }),
    };
    let mut flat = vec![0f32; n * c];
    matrix.f_copy_data(&mut flat, n * c)?;
    Ok(flat.chunks(c.max(1)).map(<[f32]>::to_vec).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn architecture_names_parse_back() {
        for a in Architecture::ALL {
            assert_eq!(a.name().parse::<Architecture>().unwrap(), a);
        }
        assert_eq!("MobileNet-V2".parse::<Architecture>().unwrap(), Architecture::MobileNetV2);
        assert!("vgg16".parse::<Architecture>().is_err());
    }

    #[test]
    fn top_k_orders_by_probability_with_names() {
        let mut probabilities = vec![0.0f32; IMAGENET_CLASS_COUNT];
        probabilities[404] = 0.7; // airliner
        probabilities[817] = 0.2; // sports car
        probabilities[1] = 0.1;
        let top = top_k(&probabilities, 2);
        assert_eq!(top.len(), 2);
        assert_eq!((top[0].index, top[0].name), (404, "airliner"));
        assert_eq!((top[1].index, top[1].name), (817, "sports car"));
    }

    #[test]
    fn save_and_load_round_trip_gives_identical_logits() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mobilenet.safetensors");
        let model = ClassifierModel::untrained(Architecture::MobileNetV2, Device::Cpu);
        model.save(&path).unwrap();
        let loaded = ClassifierModel::load(&path, Device::Cpu).unwrap();
        assert_eq!(loaded.architecture(), Architecture::MobileNetV2);
        assert_eq!(loaded.metadata().get("source").map(String::as_str), Some("untrained"));
        let input = Tensor::randn([1, 3, 64, 64], (Kind::Float, Device::Cpu));
        let difference = (model.logits(&input).unwrap() - loaded.logits(&input).unwrap()).abs().max();
        assert_eq!(f64::try_from(difference).unwrap(), 0.0);
    }

    #[test]
    fn load_refuses_a_file_without_classifier_metadata() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("other.safetensors");
        let metadata = BTreeMap::from([("format".to_string(), "something-else".to_string())]);
        write_model_file(&path, &[("w".to_string(), Tensor::zeros([1], (Kind::Float, Device::Cpu)))], &metadata)
            .unwrap();
        let error = ClassifierModel::load(&path, Device::Cpu).err().unwrap();
        assert!(matches!(error, ClassifierError::NotAClassifier { .. }), "{error}");
    }

    #[test]
    fn logits_reject_a_batch_without_channels() {
        let model = ClassifierModel::untrained(Architecture::MobileNetV2, Device::Cpu);
        let error = model.logits(&Tensor::zeros([3, 32, 32], (Kind::Float, Device::Cpu))).err().unwrap();
        assert!(matches!(error, ClassifierError::BadInput { .. }), "{error}");
    }
}
