//! Our model files: safetensors whose header metadata (a string map) says what the
//! weights are, so a loader can refuse a file that does not fit the network it builds.
//! Tensors are stored as little-endian f32.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};

use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use tch::{nn::VarStore, Kind, Tensor};

#[derive(Debug, thiserror::Error)]
pub enum ModelFileError {
    #[error("cannot read model file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("cannot write model file {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
    #[error("{path} is not a valid safetensors file: {reason}")]
    Format { path: PathBuf, reason: String },
    #[error("tensor {name:?} in {path} has dtype {dtype}; our model files hold f32, f16 or bf16 tensors")]
    Dtype { path: PathBuf, name: String, dtype: String },
    #[error("weights do not fit the network: {0}")]
    Mismatch(String),
    /// First line of libtorch's message (see [`crate::torch_pickle::torch_reason`]).
    #[error("libtorch error: {0}")]
    Torch(String),
}

impl From<tch::TchError> for ModelFileError {
    fn from(e: tch::TchError) -> Self {
        ModelFileError::Torch(crate::torch_pickle::torch_reason(&e))
    }
}

/// Named tensors plus the header metadata of one model file.
pub struct ModelFile {
    pub metadata: BTreeMap<String, String>,
    pub tensors: Vec<(String, Tensor)>,
}

/// How tensors are stored on disk. Readers always get f32.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StorageDtype {
    F32,
    /// IEEE half: half the size, about 3 significant digits (what a shipped pack uses).
    F16,
}

/// Writes `tensors` (converted to contiguous f32 on the CPU) with `metadata` in the header.
pub fn write_model_file(
    path: &Path,
    tensors: &[(String, Tensor)],
    metadata: &BTreeMap<String, String>,
) -> Result<(), ModelFileError> {
    write_model_file_as(path, tensors, metadata, StorageDtype::F32)
}

/// [`write_model_file`] with a choice of on-disk precision.
pub fn write_model_file_as(
    path: &Path,
    tensors: &[(String, Tensor)],
    metadata: &BTreeMap<String, String>,
    storage: StorageDtype,
) -> Result<(), ModelFileError> {
    let mut blobs = Vec::with_capacity(tensors.len());
    for (name, tensor) in tensors {
        let cpu = tensor.to_device(tch::Device::Cpu).to_kind(Kind::Float).contiguous();
        let shape: Vec<usize> = cpu.size().iter().map(|&d| d as usize).collect();
        let numel = cpu.numel();
        let mut values = vec![0f32; numel];
        cpu.f_copy_data(&mut values, numel)?;
        let bytes: Vec<u8> = match storage {
            StorageDtype::F32 => values.iter().flat_map(|v| v.to_le_bytes()).collect(),
            StorageDtype::F16 => values.iter().flat_map(|v| half::f16::from_f32(*v).to_le_bytes()).collect(),
        };
        blobs.push((name.clone(), shape, bytes));
    }
    let dtype = match storage {
        StorageDtype::F32 => Dtype::F32,
        StorageDtype::F16 => Dtype::F16,
    };
    let views = blobs
        .iter()
        .map(|(name, shape, bytes)| {
            TensorView::new(dtype, shape.clone(), bytes)
                .map(|view| (name.clone(), view))
                .map_err(|e| ModelFileError::Format { path: path.to_path_buf(), reason: format!("{e:?}") })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let header: HashMap<String, String> = metadata.clone().into_iter().collect();
    let bytes = safetensors::tensor::serialize(views, &Some(header))
        .map_err(|e| ModelFileError::Format { path: path.to_path_buf(), reason: format!("{e:?}") })?;
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .map_err(|source| ModelFileError::Write { path: path.to_path_buf(), source })?;
    }
    // Write beside the target and rename, so a reader never sees half a file.
    let partial = path.with_extension("safetensors.partial");
    std::fs::write(&partial, bytes)
        .and_then(|()| std::fs::rename(&partial, path))
        .map_err(|source| ModelFileError::Write { path: path.to_path_buf(), source })
}

/// Reads a model file written by [`write_model_file`] (or any f32 safetensors file).
pub fn read_model_file(path: &Path) -> Result<ModelFile, ModelFileError> {
    let bytes =
        std::fs::read(path).map_err(|source| ModelFileError::Read { path: path.to_path_buf(), source })?;
    parse_model_file(path, &bytes)
}

/// [`read_model_file`] on bytes already read from `path` (named in errors).
pub fn parse_model_file(path: &Path, bytes: &[u8]) -> Result<ModelFile, ModelFileError> {
    let format_error =
        |e: safetensors::SafeTensorError| ModelFileError::Format { path: path.to_path_buf(), reason: format!("{e:?}") };
    let (_, header) = SafeTensors::read_metadata(bytes).map_err(format_error)?;
    let metadata: BTreeMap<String, String> =
        header.metadata().clone().unwrap_or_default().into_iter().collect();
    let file = SafeTensors::deserialize(bytes).map_err(format_error)?;
    let mut tensors = Vec::new();
    for (name, view) in file.tensors() {
        // Half-precision files (a shipped model pack) load as f32, like every other.
        let kind = match view.dtype() {
            Dtype::F32 => Kind::Float,
            Dtype::F16 => Kind::Half,
            Dtype::BF16 => Kind::BFloat16,
            other => {
                return Err(ModelFileError::Dtype { path: path.to_path_buf(), name, dtype: format!("{other:?}") });
            }
        };
        let shape: Vec<i64> = view.shape().iter().map(|&d| d as i64).collect();
        let tensor = Tensor::f_from_data_size(view.data(), &shape, kind)?.to_kind(Kind::Float);
        tensors.push((name, tensor));
    }
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(ModelFile { metadata, tensors })
}

/// Only the header metadata of a model file, without reading the weights (a listing of
/// a registry should not read gigabytes).
pub fn read_metadata(path: &Path) -> Result<BTreeMap<String, String>, ModelFileError> {
    use std::io::Read;
    let read_err = |source| ModelFileError::Read { path: path.to_path_buf(), source };
    let format = |reason: String| ModelFileError::Format { path: path.to_path_buf(), reason };
    let mut file = std::fs::File::open(path).map_err(read_err)?;
    let mut len = [0u8; 8];
    file.read_exact(&mut len).map_err(read_err)?;
    let len = u64::from_le_bytes(len);
    // safetensors caps headers at 100 MB
    if len > 100_000_000 {
        return Err(format(format!("header of {len} bytes")));
    }
    let mut header = vec![0u8; len as usize];
    file.read_exact(&mut header).map_err(read_err)?;
    let json: serde_json::Value = serde_json::from_slice(&header).map_err(|e| format(e.to_string()))?;
    let mut out = BTreeMap::new();
    if let Some(map) = json.get("__metadata__").and_then(|m| m.as_object()) {
        for (k, v) in map {
            if let Some(v) = v.as_str() {
                out.insert(k.clone(), v.to_string());
            }
        }
    }
    Ok(out)
}

/// Copies `tensors` into the variables of `store`, requiring an exact one-to-one match of
/// names and shapes; names in `ignored` (e.g. BatchNorm's `num_batches_tracked`) are skipped.
/// Every missing, unexpected or mis-shaped name is listed in the error.
pub fn load_exact(
    store: &VarStore,
    tensors: &[(String, Tensor)],
    ignored: impl Fn(&str) -> bool,
) -> Result<(), ModelFileError> {
    let variables = store.variables();
    let mut unexpected = Vec::new();
    let mut misshaped = Vec::new();
    let mut seen = HashSet::new();
    tch::no_grad(|| -> Result<(), ModelFileError> {
        for (name, tensor) in tensors {
            if ignored(name) {
                continue;
            }
            let Some(variable) = variables.get(name) else {
                unexpected.push(name.clone());
                continue;
            };
            // reported once: as mis-shaped, not also as missing
            seen.insert(name.as_str());
            if variable.size() != tensor.size() {
                misshaped.push(format!("{name} (file {:?}, network {:?})", tensor.size(), variable.size()));
                continue;
            }
            // fallible forms throughout: a libtorch failure on imported data must come back
            // as an error, not a panic carrying a C++ backtrace
            let converted = tensor.f_to_device(variable.device())?.f_to_kind(variable.kind())?;
            variable.shallow_clone().f_copy_(&converted)?;
        }
        Ok(())
    })?;
    let mut missing: Vec<&String> = variables.keys().filter(|k| !seen.contains(k.as_str())).collect();
    missing.sort();
    if unexpected.is_empty() && misshaped.is_empty() && missing.is_empty() {
        return Ok(());
    }
    let mut parts = Vec::new();
    if !missing.is_empty() {
        parts.push(format!("missing {missing:?}"));
    }
    if !unexpected.is_empty() {
        parts.push(format!("unexpected {unexpected:?}"));
    }
    if !misshaped.is_empty() {
        parts.push(format!("mis-shaped {misshaped:?}"));
    }
    Err(ModelFileError::Mismatch(parts.join("; ")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::nn;

    #[test]
    fn round_trip_keeps_values_and_metadata() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.safetensors");
        let weight = Tensor::from_slice(&[1.5f32, -2.0, 3.25, 0.0, 7.0, 8.0]).reshape([2, 3]);
        let metadata = BTreeMap::from([("architecture".to_string(), "test".to_string())]);
        write_model_file(&path, &[("layer.weight".to_string(), weight.shallow_clone())], &metadata).unwrap();
        let file = read_model_file(&path).unwrap();
        assert_eq!(file.metadata, metadata);
        assert_eq!(read_metadata(&path).unwrap(), metadata);
        assert_eq!(file.tensors.len(), 1);
        assert_eq!(file.tensors[0].0, "layer.weight");
        assert_eq!(file.tensors[0].1.size(), vec![2, 3]);
        assert_eq!(f64::try_from((&file.tensors[0].1 - &weight).abs().max()).unwrap(), 0.0);
    }

    #[test]
    fn load_exact_names_every_mismatch() {
        let store = VarStore::new(tch::Device::Cpu);
        let _linear = nn::linear(store.root() / "fc", 3, 2, Default::default());
        let tensors = vec![
            ("fc.weight".to_string(), Tensor::zeros([2, 4], (Kind::Float, tch::Device::Cpu))),
            ("fc.extra".to_string(), Tensor::zeros([1], (Kind::Float, tch::Device::Cpu))),
            ("bn.num_batches_tracked".to_string(), Tensor::zeros([1], (Kind::Float, tch::Device::Cpu))),
        ];
        let message = load_exact(&store, &tensors, |n| n.ends_with("num_batches_tracked"))
            .unwrap_err()
            .to_string();
        assert!(message.contains("missing [\"fc.bias\"]"), "{message}");
        assert!(message.contains("unexpected [\"fc.extra\"]"), "{message}");
        assert!(message.contains("fc.weight (file [2, 4], network [2, 3])"), "{message}");
        assert!(!message.contains("num_batches_tracked"), "{message}");
    }

    #[test]
    fn load_exact_copies_matching_tensors() {
        let store = VarStore::new(tch::Device::Cpu);
        let linear = nn::linear(store.root() / "fc", 2, 1, Default::default());
        let tensors = vec![
            ("fc.weight".to_string(), Tensor::from_slice(&[2.0f32, 3.0]).reshape([1, 2])),
            ("fc.bias".to_string(), Tensor::from_slice(&[0.5f32])),
        ];
        load_exact(&store, &tensors, |_| false).unwrap();
        let out = tch::no_grad(|| Tensor::from_slice(&[1.0f32, 1.0]).reshape([1, 2]).apply(&linear));
        assert_eq!(f64::try_from(out.sum(Kind::Float)).unwrap(), 5.5);
    }
}
