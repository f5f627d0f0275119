//! The frozen trunk's output for each rendering, computed once and kept on disk.
//!
//! Pix2Vox's VGG trunk is frozen; with its BatchNorm in eval mode (statistics calibrated
//! once, [`mono2mesh_vision::pix2vox::Pix2Vox::calibrate_trunk`]) its output for a rendering never
//! changes, so a training step only needs the encoder head, decoder and merger. The trunk
//! was 46% of a step, and without it bf16 pays off more (see `docs/benchmarks/training-cpu.md`).
//!
//! Layout of one cache (a directory per trunk and precision, named by a fingerprint of the
//! trunk's tensors, so a cache can never serve features of another trunk):
//!
//! ```text
//! <root>/<fingerprint>/features.bin   records of 512x28x28 bfloat16 (802,816 bytes each)
//! <root>/<fingerprint>/index.tsv      "<record>\t<rendering path>" per line
//! ```
//!
//! Records are appended and their index line written after them, so a cache interrupted
//! half-way (a killed run) is resumed: a record without its index line is cut off and
//! computed again. Reads go through the OS page cache; a 10,000-rendering cache is 8 GB.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use sha2::{Digest, Sha256};
use tch::{Device, Kind, Tensor};

use mono2mesh_vision::pix2vox::Pix2Vox;
use mono2mesh_vision::pix2vox_preprocess::{preprocess_image, InputKind};
use mono2mesh_vision::precision::with_cpu_bf16;

/// The trunk's output shape for a 224x224 input.
pub const TRUNK_SHAPE: [i64; 3] = [512, 28, 28];
const RECORD_BYTES: u64 = 512 * 28 * 28 * 2;
const FEATURES_FILE: &str = "features.bin";
const INDEX_FILE: &str = "index.tsv";
/// Renderings put through the trunk at once while filling the cache.
const FILL_BATCH: usize = 16;

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("feature cache {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("feature cache {path}: {message}")]
    Corrupt { path: PathBuf, message: String },
    #[error("feature cache has no features for {0}")]
    Missing(PathBuf),
    #[error("libtorch: {0}")]
    Torch(#[from] tch::TchError),
}

/// An opened cache: where each rendering's record is.
pub struct FeatureCache {
    dir: PathBuf,
    file: File,
    records: HashMap<PathBuf, u64>,
}

/// A fingerprint of the trunk's variables (weights and BatchNorm statistics) and of how
/// the features were computed.
pub fn trunk_fingerprint(vs: &tch::nn::VarStore, bf16: bool) -> Result<String, CacheError> {
    let mut names: Vec<(String, Tensor)> =
        vs.variables().into_iter().filter(|(n, _)| mono2mesh_vision::pix2vox::is_frozen_trunk_variable(n)).collect();
    names.sort_by(|a, b| a.0.cmp(&b.0));
    let mut hash = Sha256::new();
    hash.update(if bf16 { b"bf16-autocast\n".as_slice() } else { b"f32\n".as_slice() });
    hash.update(b"pix2vox-test-transform\n");
    for (name, t) in names {
        hash.update(name.as_bytes());
        let t = t.to_device(Device::Cpu).to_kind(Kind::Float).contiguous();
        let n = t.numel();
        let mut values = vec![0f32; n];
        t.f_copy_data(&mut values, n)?;
        for v in values {
            hash.update(v.to_le_bytes());
        }
    }
    Ok(hex::encode(&hash.finalize()[..8]))
}

impl FeatureCache {
    /// Opens (creating or completing) the cache for `net`'s trunk under `root`, with a
    /// record for every file of `renderings`. Missing records are computed with the trunk
    /// in eval mode (bf16 autocast when `bf16`), `progress` getting (done, total).
    pub fn fill(
        root: &Path,
        net: &Pix2Vox,
        fingerprint: &str,
        renderings: &[PathBuf],
        bf16: bool,
        device: Device,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<(FeatureCache, Vec<(PathBuf, String)>), CacheError> {
        let dir = root.join(fingerprint);
        std::fs::create_dir_all(&dir).map_err(|source| CacheError::Io { path: dir.clone(), source })?;
        let features_path = dir.join(FEATURES_FILE);
        let index_path = dir.join(INDEX_FILE);
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| CacheError::Io { path, source }
        };
        let mut records = read_index(&index_path)?;
        let file = OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&features_path).map_err(io(&features_path))?;
        // Cut a record whose index line never made it (an interrupted fill).
        let complete = records.len() as u64 * RECORD_BYTES;
        let len = file.metadata().map_err(io(&features_path))?.len();
        if len < complete {
            return Err(CacheError::Corrupt {
                path: features_path,
                message: format!("{len} bytes hold fewer than the {} records its index lists", records.len()),
            });
        }
        if len > complete {
            file.set_len(complete).map_err(io(&features_path))?;
        }
        let mut seen = std::collections::HashSet::new();
        let missing: Vec<PathBuf> =
            renderings.iter().filter(|p| !records.contains_key(*p) && seen.insert((*p).clone())).cloned().collect();
        let total = missing.len();
        progress(0, total);
        let mut index = OpenOptions::new().append(true).create(true).open(&index_path).map_err(io(&index_path))?;
        let mut next = records.len() as u64;
        let mut broken = Vec::new();
        let mut done = 0;
        for chunk in missing.chunks(FILL_BATCH) {
            done += chunk.len();
            let decoded: Vec<Result<Tensor, String>> = chunk
                .par_iter()
                .map(|path| {
                    let image = image::open(path).map_err(|e| e.to_string())?;
                    preprocess_image(&image, InputKind::Auto).map_err(|e| e.to_string())
                })
                .collect();
            let mut inputs = Vec::with_capacity(chunk.len());
            let mut good = Vec::with_capacity(chunk.len());
            for (path, result) in chunk.iter().zip(decoded) {
                match result {
                    Ok(t) => {
                        inputs.push(t);
                        good.push(path);
                    }
                    Err(reason) => broken.push((path.clone(), reason)),
                }
            }
            if inputs.is_empty() {
                progress(done, total);
                continue;
            }
            let batch = Tensor::stack(&inputs, 0).to_device(device);
            let features = tch::no_grad(|| with_cpu_bf16(bf16, || net.trunk_t(&batch, false)))
                .to_device(Device::Cpu)
                .to_kind(Kind::BFloat16)
                .contiguous();
            let bytes = tensor_bytes(&features)?;
            file.write_all_at(&bytes, next * RECORD_BYTES).map_err(io(&features_path))?;
            let mut lines = String::new();
            for (k, path) in good.iter().enumerate() {
                let record = next + k as u64;
                lines.push_str(&format!("{record}\t{}\n", path.display()));
                records.insert((*path).clone(), record);
            }
            index.write_all(lines.as_bytes()).map_err(io(&index_path))?;
            next += good.len() as u64;
            progress(done, total);
        }
        Ok((FeatureCache { dir, file, records }, broken))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn contains(&self, rendering: &Path) -> bool {
        self.records.contains_key(rendering)
    }

    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Bytes of features on disk.
    pub fn disk_bytes(&self) -> u64 {
        self.records.len() as u64 * RECORD_BYTES
    }

    /// The features of `renderings` as one `[N, 512, 28, 28]` bfloat16 tensor.
    pub fn read(&self, renderings: &[&Path]) -> Result<Tensor, CacheError> {
        let mut bytes = vec![0u8; renderings.len() * RECORD_BYTES as usize];
        for (slot, path) in bytes.chunks_exact_mut(RECORD_BYTES as usize).zip(renderings) {
            let record = *self.records.get(*path).ok_or_else(|| CacheError::Missing(path.to_path_buf()))?;
            self.file
                .read_exact_at(slot, record * RECORD_BYTES)
                .map_err(|source| CacheError::Io { path: self.dir.join(FEATURES_FILE), source })?;
        }
        let mut shape = vec![renderings.len() as i64];
        shape.extend_from_slice(&TRUNK_SHAPE);
        Ok(Tensor::f_from_data_size(&bytes, &shape, Kind::BFloat16)?)
    }
}

fn read_index(path: &Path) -> Result<HashMap<PathBuf, u64>, CacheError> {
    let mut records = HashMap::new();
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(records),
        Err(source) => return Err(CacheError::Io { path: path.to_path_buf(), source }),
    };
    // Only lines ended by a newline count: a fill killed while writing the index leaves a
    // torn last line, which is cut off here and its record computed again.
    let complete = text.rfind('\n').map_or(0, |i| i + 1);
    for (n, line) in text[..complete].lines().enumerate() {
        let corrupt = |message: String| CacheError::Corrupt { path: path.to_path_buf(), message: format!("line {}: {message}", n + 1) };
        let (record, file) = line.split_once('\t').ok_or_else(|| corrupt("no tab".into()))?;
        let record: u64 = record.parse().map_err(|_| corrupt("bad record number".into()))?;
        if record != records.len() as u64 {
            return Err(corrupt(format!("record {record} out of order")));
        }
        records.insert(PathBuf::from(file), record);
    }
    if complete < text.len() {
        OpenOptions::new()
            .write(true)
            .open(path)
            .and_then(|f| f.set_len(complete as u64))
            .map_err(|source| CacheError::Io { path: path.to_path_buf(), source })?;
    }
    Ok(records)
}

/// The raw bytes of a bfloat16 tensor (read as 16-bit integers: tch maps no Rust type to
/// bfloat16 for copying out).
fn tensor_bytes(t: &Tensor) -> Result<Vec<u8>, CacheError> {
    let n = t.numel();
    let mut values = vec![0i16; n];
    t.f_view_dtype(Kind::Int16)?.f_copy_data(&mut values, n)?;
    Ok(values.iter().flat_map(|v| v.to_le_bytes()).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use mono2mesh_catalog::dataset::{synthesize, Dataset, Split, SynthConfig};
    use mono2mesh_core::Category;

    #[test]
    fn the_cache_holds_the_trunk_output_and_recovers_from_an_interrupted_fill() {
        let data = tempfile::tempdir().unwrap();
        let cfg = SynthConfig { categories: vec![Category::Bottle], models_per_category: 1, views: 3, seed: 2, ..SynthConfig::default() };
        synthesize(data.path(), &cfg, &|_| {}).unwrap();
        let ds = Dataset::open(data.path()).unwrap();
        let sample = [Split::Train, Split::Val, Split::Test].iter().flat_map(|&s| ds.samples(s, None)).next().unwrap();
        let files = ds.view_files(&sample).unwrap();
        let vs = tch::nn::VarStore::new(Device::Cpu);
        let net = Pix2Vox::new(&vs.root(), mono2mesh_vision::pix2vox::Variant::F);
        let root = tempfile::tempdir().unwrap();
        let fp = trunk_fingerprint(&vs, false).unwrap();
        assert_ne!(fp, trunk_fingerprint(&vs, true).unwrap(), "bf16 features are cached apart");

        let mut totals = Vec::new();
        let (cache, broken) = FeatureCache::fill(root.path(), &net, &fp, &files[..2], false, Device::Cpu, &mut |d, t| if d == 0 { totals.push(t) }).unwrap();
        assert!(broken.is_empty());
        assert_eq!((cache.len(), cache.disk_bytes()), (2, 2 * RECORD_BYTES));
        // what it holds is the eval-mode trunk's output, to bf16's precision
        let image = image::open(&files[1]).unwrap();
        let input = preprocess_image(&image, InputKind::Auto).unwrap().unsqueeze(0);
        let expected = tch::no_grad(|| net.trunk_t(&input, false));
        let got = cache.read(&[files[1].as_path()]).unwrap().to_kind(Kind::Float);
        assert_eq!(got.size(), vec![1, 512, 28, 28]);
        let err = (&got - &expected).abs().max().double_value(&[]);
        assert!(err <= 0.01 * expected.abs().max().double_value(&[]), "{err}");
        assert!(matches!(cache.read(&[files[2].as_path()]), Err(CacheError::Missing(_))));
        drop(cache);

        // A fill killed half-way: bytes of a record without its index line, a torn line.
        let dir = root.path().join(&fp);
        let mut features = OpenOptions::new().append(true).open(dir.join(FEATURES_FILE)).unwrap();
        features.write_all(&[7u8; 1000]).unwrap();
        let mut index = OpenOptions::new().append(true).open(dir.join(INDEX_FILE)).unwrap();
        index.write_all(b"2\t/some/where/half").unwrap();
        drop((features, index));
        let (cache, _) = FeatureCache::fill(root.path(), &net, &fp, &files, false, Device::Cpu, &mut |d, t| if d == 0 { totals.push(t) }).unwrap();
        assert_eq!(totals, vec![2, 1], "only the third rendering was computed again");
        assert_eq!(cache.len(), 3);
        assert_eq!(std::fs::metadata(dir.join(FEATURES_FILE)).unwrap().len(), 3 * RECORD_BYTES);
        let index = std::fs::read_to_string(dir.join(INDEX_FILE)).unwrap();
        assert_eq!(index.lines().count(), 3, "{index}");
        assert!(index.ends_with('\n') && !index.contains("half"));
        let again = cache.read(&[files[1].as_path()]).unwrap().to_kind(Kind::Float);
        assert!(again.equal(&got));
    }
}
