//! Reading PyTorch checkpoint files (`torch.save`) without Python.
//!
//! Two container formats exist:
//! - the legacy format (torch < 1.6 and `_use_new_zipfile_serialization=False`, e.g. the
//!   released 2019 Pix2Vox checkpoints and torchvision's older `.pth` files): four pickles
//!   back to back (magic number, protocol version, sys info, the object itself with
//!   persistent ids for storages), a pickled list of storage keys, then each storage as
//!   `i64 element count` + raw little-endian bytes;
//! - the zip format: `<prefix>/data.pkl` plus one raw entry `<prefix>/data/<key>` per storage.
//!
//! The pickle machine below implements only what `torch.save` emits. It never runs code:
//! a global is just a name, and `REDUCE` of a name we do not know becomes an inert
//! [`TorchValue::Object`]. Tensors are rebuilt from their storage with size, stride and
//! offset; fp16/bf16 tensors come out as fp32 so models can load them directly.

use std::collections::HashMap;
use std::io::{Read, Seek};
use std::path::Path;

use tch::{Kind, Tensor};

#[derive(Debug, thiserror::Error)]
pub enum TorchPickleError {
    #[error("cannot read {path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("not a PyTorch checkpoint: {0}")]
    NotACheckpoint(String),
    #[error("corrupt checkpoint: {0}")]
    Corrupt(String),
    #[error("unsupported checkpoint content: {0}")]
    Unsupported(String),
    /// The file asks for more than one of the reader's limits allows (the `MAX_*`
    /// constants); the message names the limit.
    #[error("checkpoint refused: {0}")]
    Limit(String),
    #[error("zip container: {0}")]
    Zip(#[from] zip::result::ZipError),
    /// libtorch refused an operation; only the first line of its message is kept.
    #[error("libtorch: {0}")]
    Torch(String),
}

impl From<tch::TchError> for TorchPickleError {
    fn from(e: tch::TchError) -> Self {
        TorchPickleError::Torch(torch_reason(&e))
    }
}

/// The first line of a libtorch error: the rest is a C++ stack trace ("Exception raised
/// from ... frame #0: ..."), noise to a user importing a file.
pub fn torch_reason(e: &tch::TchError) -> String {
    let message = e.to_string();
    let first = message.lines().find(|l| !l.trim().is_empty()).unwrap_or("unknown error");
    first.trim().to_string()
}

type Result<T> = std::result::Result<T, TorchPickleError>;

/// A value from a checkpoint, with tensors materialised.
#[derive(Debug)]
pub enum TorchValue {
    None,
    Bool(bool),
    Int(i64),
    /// An integer that does not fit in i64 (e.g. the legacy format's magic number).
    BigInt(i128),
    Float(f64),
    Str(String),
    Bytes(Vec<u8>),
    List(Vec<TorchValue>),
    Tuple(Vec<TorchValue>),
    /// Dicts and OrderedDicts, in insertion order.
    Dict(Vec<(TorchValue, TorchValue)>),
    Tensor(Tensor),
    /// A bare reference to a Python global (`module.name`).
    Global(String),
    /// Any other object: the class it would have been built from, its constructor
    /// arguments and its `__setstate__` state. Never executed.
    Object { class: String, args: Vec<TorchValue>, state: Option<Box<TorchValue>> },
}

impl TorchValue {
    /// Entry `key` of a dict with string keys.
    pub fn get(&self, key: &str) -> Option<&TorchValue> {
        match self {
            TorchValue::Dict(items) => {
                items.iter().find(|(k, _)| matches!(k, TorchValue::Str(s) if s == key)).map(|(_, v)| v)
            }
            _ => None,
        }
    }

    /// Short name of the variant, for error messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            TorchValue::None => "None",
            TorchValue::Bool(_) => "bool",
            TorchValue::Int(_) | TorchValue::BigInt(_) => "int",
            TorchValue::Float(_) => "float",
            TorchValue::Str(_) => "str",
            TorchValue::Bytes(_) => "bytes",
            TorchValue::List(_) => "list",
            TorchValue::Tuple(_) => "tuple",
            TorchValue::Dict(_) => "dict",
            TorchValue::Tensor(_) => "tensor",
            TorchValue::Global(_) => "global",
            TorchValue::Object { .. } => "object",
        }
    }

    /// Interpret this value as a state_dict: a dict from string keys to tensors, in order.
    /// Non-tensor entries are an error naming the key.
    pub fn into_state_dict(self) -> Result<Vec<(String, Tensor)>> {
        let items = match self {
            TorchValue::Dict(items) => items,
            other => {
                return Err(TorchPickleError::Unsupported(format!(
                    "expected a state_dict (dict of tensors), found a {}",
                    other.type_name()
                )))
            }
        };
        items
            .into_iter()
            .map(|(k, v)| match (k, v) {
                (TorchValue::Str(k), TorchValue::Tensor(t)) => Ok((k, t)),
                (TorchValue::Str(k), v) => Err(TorchPickleError::Unsupported(format!(
                    "state_dict entry {k:?} is a {}, not a tensor",
                    v.type_name()
                ))),
                (k, _) => Err(TorchPickleError::Unsupported(format!(
                    "state_dict key is a {}, not a string",
                    k.type_name()
                ))),
            })
            .collect()
    }

    /// Remove and return entry `key` of a dict with string keys.
    pub fn take(&mut self, key: &str) -> Option<TorchValue> {
        match self {
            TorchValue::Dict(items) => {
                let pos = items.iter().position(|(k, _)| matches!(k, TorchValue::Str(s) if s == key))?;
                Some(items.remove(pos).1)
            }
            _ => None,
        }
    }
}

/// Read a checkpoint file in either container format.
pub fn read_checkpoint(path: impl AsRef<Path>) -> Result<TorchValue> {
    let path = path.as_ref();
    let io_err = |source| TorchPickleError::Io { path: path.display().to_string(), source };
    let bytes = std::fs::read(path).map_err(io_err)?;
    read_checkpoint_bytes(&bytes)
}

/// Read a checkpoint held in memory, in either container format.
pub fn read_checkpoint_bytes(bytes: &[u8]) -> Result<TorchValue> {
    if bytes.starts_with(b"PK\x03\x04") {
        read_zip(bytes)
    } else if bytes.first() == Some(&0x80) {
        read_legacy(bytes)
    } else if bytes.len() > 262 && &bytes[257..262] == b"ustar" {
        Err(TorchPickleError::Unsupported("the tar-based format of torch < 0.4 is not supported".into()))
    } else {
        Err(TorchPickleError::NotACheckpoint("neither a zip archive nor a pickle stream".into()))
    }
}

// ---------------------------------------------------------------------------------------
// Limits
//
// A checkpoint is untrusted input: users import files they downloaded. Everything the
// reader builds is sized by the file, so each structure has a cap, and the caps sit far
// above what torch.save writes (the official Pix2Vox-F checkpoint, 15 MB, in both formats:
// see `real_checkpoints_stay_far_below_the_limits`; ResNet50's 100 MB state_dict and
// Pix2Vox-A's few hundred MB have larger storages, not larger pickles). Storage bytes have
// no constant: they may not exceed the file that holds them.

/// Most values on the pickle stack at once. torch.save's pickler batches APPENDS and
/// SETITEMS by 1000, so a real stack holds about two thousand items plus a few per nesting
/// level; 2^18 (16 MiB of slots) also admits hand-written pickles that never batch.
pub const MAX_PICKLE_STACK: usize = 1 << 18;

/// Most memo entries. The pickler memoises each object once, so a real memo has about as
/// many entries as the pickle has objects: 1072 for Pix2Vox-F, a few thousand for a
/// ResNet50 state_dict, tens of thousands for a full-model pickle. 2^20 is far above that.
pub const MAX_MEMO_ENTRIES: usize = 1 << 20;

/// Deepest nesting of containers. Real checkpoints nest a handful of levels (a full-model
/// pickle: module -> state dict -> _modules -> submodule, a few levels per module). Every
/// walk over a value (drop, clone, materialise, Debug) recurses once per level, and 256
/// levels keep that well inside a 2 MiB thread stack in a debug build.
pub const MAX_NESTING: u32 = 256;

/// Most bytes of values the pickle machine may create, counting each copy that a memo read
/// or DUP makes (they copy here where Python shares, so a pickle that doubles a list through
/// the memo grows exponentially). Pix2Vox-F's pickle builds 0.65 MB; 256 MiB stops a
/// "billion laughs" pickle long before it exhausts memory.
pub const MAX_UNPICKLED_BYTES: u64 = 256 << 20;

/// Largest `data.pkl` read from a zip checkpoint. Real ones are tens of KB
/// (Pix2Vox-F: 14 KB) since the tensors live in separate entries; 64 MiB leaves room for
/// full-model pickles of very large networks.
pub const MAX_PICKLE_BYTES: u64 = 64 << 20;

/// Most dimensions of one tensor: real weights have at most 5 (3D convolutions); 64 is
/// generous and keeps size/stride arithmetic cheap.
pub const MAX_TENSOR_DIMS: usize = 64;

/// Materialised tensors may total at most this many times the storage bytes in the file.
/// fp16/bf16 storages come out as fp32 (x2) and a storage shared by two tensors (tied
/// weights) is counted for each (x2); 4 admits both together. It stops views that repeat
/// data (a zero stride over a huge size) from turning a small file into gigabytes.
pub const MAX_TENSOR_EXPANSION: u64 = 4;

fn limit(message: String) -> TorchPickleError {
    TorchPickleError::Limit(message)
}

fn nesting_error() -> TorchPickleError {
    limit(format!("containers nested deeper than {MAX_NESTING} levels (MAX_NESTING)"))
}

// ---------------------------------------------------------------------------------------
// Containers

const LEGACY_MAGIC: i128 = 0x1950a86a20f9469cfc6c;
const LEGACY_PROTOCOL: i64 = 1001;

fn read_legacy(bytes: &[u8]) -> Result<TorchValue> {
    let mut pos = 0usize;
    let magic = Unpickler::new(bytes, pos).run()?;
    pos = magic.1;
    if !matches!(magic.0, PVal::Int(m) if m == LEGACY_MAGIC) {
        return Err(TorchPickleError::NotACheckpoint("pickle stream without torch's magic number".into()));
    }
    let (protocol, next) = Unpickler::new(bytes, pos).run()?;
    pos = next;
    if !matches!(protocol, PVal::Int(p) if p == LEGACY_PROTOCOL as i128) {
        return Err(TorchPickleError::Unsupported(format!(
            "legacy protocol version {}, expected 1001",
            short(&protocol)
        )));
    }
    let (sys_info, next) = Unpickler::new(bytes, pos).run()?;
    pos = next;
    if let PVal::Dict(items) = &sys_info {
        let little = items.iter().find(|(k, _)| matches!(k, PVal::Str(s) if s == "little_endian"));
        if let Some((_, PVal::Bool(false))) = little {
            return Err(TorchPickleError::Unsupported("big-endian checkpoint".into()));
        }
    }
    let mut unpickler = Unpickler::new(bytes, pos);
    let (root, next) = unpickler.run_collect()?;
    let storage_refs = unpickler.storages;
    pos = next;
    let (keys, next) = Unpickler::new(bytes, pos).run()?;
    pos = next;
    let keys = match keys {
        PVal::List(k) => k,
        other => return Err(TorchPickleError::Corrupt(format!("storage key list is {}", short(&other)))),
    };
    let mut storages: HashMap<String, Tensor> = HashMap::new();
    let mut storage_bytes = 0u64;
    for key in keys {
        let PVal::Str(key) = key else {
            return Err(TorchPickleError::Corrupt("storage key is not a string".into()));
        };
        let sref = storage_refs
            .get(&key)
            .ok_or_else(|| TorchPickleError::Corrupt(format!("storage {key} is stored but never referenced")))?;
        let count_bytes: [u8; 8] = bytes
            .get(pos..)
            .and_then(|rest| rest.get(..8))
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| TorchPickleError::Corrupt(format!("file ends before storage {key}")))?;
        let count = i64::from_le_bytes(count_bytes);
        pos += 8;
        if count < 0 || count as u64 != sref.numel {
            return Err(TorchPickleError::Corrupt(format!(
                "storage {key} holds {count} elements, the pickle says {}",
                sref.numel
            )));
        }
        let len = storage_byte_len(sref)?;
        // the data lies inline, so a slice of the file bounds it: nothing is allocated
        // before the whole storage is known to be present
        let data = pos
            .checked_add(len)
            .and_then(|end| bytes.get(pos..end))
            .ok_or_else(|| TorchPickleError::Corrupt(format!("file ends inside storage {key}")))?;
        pos += len;
        storage_bytes += len as u64;
        storages.insert(key, storage_tensor(data, sref)?);
    }
    Materialiser::new(&storages, storage_bytes).value(root)
}

fn read_zip(bytes: &[u8]) -> Result<TorchValue> {
    let file_len = bytes.len() as u64;
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes))?;
    let pkl_name = archive
        .file_names()
        .find(|n| n.ends_with("data.pkl") && n.matches('/').count() <= 1)
        .map(str::to_owned)
        .ok_or_else(|| TorchPickleError::NotACheckpoint("zip archive without data.pkl".into()))?;
    let prefix = pkl_name.trim_end_matches("data.pkl").to_owned();
    let order_name = format!("{prefix}byteorder");
    if archive.index_for_name(&order_name).is_some() {
        // "little" or "big"; 16 bytes is plenty and keeps a crafted entry from inflating
        let order = read_entry(&mut archive, &order_name, EntrySize::AtMost(16))?;
        let order = String::from_utf8_lossy(&order);
        if order.trim() != "little" {
            return Err(TorchPickleError::Unsupported(format!("byte order {:?}", order.trim())));
        }
    }
    let pkl = read_entry(&mut archive, &pkl_name, EntrySize::AtMost(MAX_PICKLE_BYTES.min(file_len)))?;
    let mut unpickler = Unpickler::new(&pkl, 0);
    let (root, _) = unpickler.run_collect()?;
    let mut storages = HashMap::new();
    let mut storage_bytes = 0u64;
    for (key, sref) in &unpickler.storages {
        let name = format!("{prefix}data/{key}");
        let len = storage_byte_len(sref)? as u64;
        // torch.save stores entries uncompressed, so the storages are a subset of the
        // file's bytes; more means entries sharing data or a compression bomb
        storage_bytes = storage_bytes.saturating_add(len);
        if storage_bytes > file_len {
            return Err(limit(format!(
                "storages total at least {storage_bytes} bytes (storage {key}: {} elements of {:?}) but the file has {file_len}",
                sref.numel, sref.kind
            )));
        }
        let data = read_entry(&mut archive, &name, EntrySize::Exactly(len, sref))?;
        storages.insert(key.clone(), storage_tensor(&data, sref)?);
    }
    Materialiser::new(&storages, storage_bytes).value(root)
}

/// What size an entry must have, checked against its header before anything is allocated.
enum EntrySize<'s> {
    AtMost(u64),
    Exactly(u64, &'s StorageRef),
}

fn read_entry<R: Read + Seek>(archive: &mut zip::ZipArchive<R>, name: &str, want: EntrySize) -> Result<Vec<u8>> {
    let entry = archive.by_name(name).map_err(|e| match e {
        zip::result::ZipError::FileNotFound => TorchPickleError::Corrupt(format!("zip archive lacks {name}")),
        other => other.into(),
    })?;
    let size = entry.size();
    match want {
        EntrySize::AtMost(max) if size > max => {
            return Err(limit(format!("{name} holds {size} bytes, more than the {max} allowed")))
        }
        EntrySize::Exactly(len, sref) if size != len => {
            return Err(TorchPickleError::Corrupt(format!(
                "{name} has {size} bytes, expected {} elements of {:?}",
                sref.numel, sref.kind
            )))
        }
        _ => {}
    }
    // `size` is now bounded by the file (or by a small constant), and `take` keeps a header
    // that understates the data from growing the buffer past it
    let mut data = Vec::with_capacity(size as usize);
    entry.take(size).read_to_end(&mut data).map_err(|e| TorchPickleError::Corrupt(format!("{name}: {e}")))?;
    if data.len() as u64 != size {
        return Err(TorchPickleError::Corrupt(format!("{name} holds {} bytes, its header says {size}", data.len())));
    }
    Ok(data)
}

// ---------------------------------------------------------------------------------------
// Storages and tensors

#[derive(Debug, Clone)]
struct StorageRef {
    key: String,
    kind: Kind,
    numel: u64,
}

#[derive(Debug, Clone)]
struct TensorRef {
    storage: StorageRef,
    offset: i64,
    size: Vec<i64>,
    stride: Vec<i64>,
}

fn storage_kind(class_name: &str) -> Result<Kind> {
    Ok(match class_name {
        "FloatStorage" => Kind::Float,
        "DoubleStorage" => Kind::Double,
        "HalfStorage" => Kind::Half,
        "BFloat16Storage" => Kind::BFloat16,
        "LongStorage" => Kind::Int64,
        "IntStorage" => Kind::Int,
        "ShortStorage" => Kind::Int16,
        "CharStorage" => Kind::Int8,
        "ByteStorage" => Kind::Uint8,
        "BoolStorage" => Kind::Bool,
        other => return Err(TorchPickleError::Unsupported(format!("storage type torch.{other}"))),
    })
}

fn storage_byte_len(sref: &StorageRef) -> Result<usize> {
    usize::try_from(sref.numel)
        .ok()
        .and_then(|n| n.checked_mul(sref.kind.elt_size_in_bytes()))
        .filter(|&n| n <= i64::MAX as usize)
        .ok_or_else(|| TorchPickleError::Corrupt(format!("storage {} is impossibly large", sref.key)))
}

/// Called only once `data` holds exactly the storage's bytes (`storage_byte_len`).
fn storage_tensor(data: &[u8], sref: &StorageRef) -> Result<Tensor> {
    let numel = i64::try_from(sref.numel)
        .map_err(|_| TorchPickleError::Corrupt(format!("storage {} is impossibly large", sref.key)))?;
    Ok(Tensor::f_from_data_size(data, &[numel], sref.kind)?)
}

/// Turns parsed values into [`TorchValue`]s, building each tensor from its storage within
/// a byte allowance (see [`MAX_TENSOR_EXPANSION`]).
struct Materialiser<'s> {
    storages: &'s HashMap<String, Tensor>,
    tensor_bytes_left: u64,
    allowance: u64,
}

impl<'s> Materialiser<'s> {
    fn new(storages: &'s HashMap<String, Tensor>, storage_bytes: u64) -> Self {
        let allowance = storage_bytes.saturating_mul(MAX_TENSOR_EXPANSION);
        Materialiser { storages, tensor_bytes_left: allowance, allowance }
    }

    /// Recursion is bounded: the pickle machine refuses values nested deeper than MAX_NESTING.
    fn value(&mut self, value: PVal) -> Result<TorchValue> {
        Ok(match value {
            PVal::None => TorchValue::None,
            PVal::Bool(b) => TorchValue::Bool(b),
            PVal::Int(i) => match i64::try_from(i) {
                Ok(i) => TorchValue::Int(i),
                Err(_) => TorchValue::BigInt(i),
            },
            PVal::Float(f) => TorchValue::Float(f),
            PVal::Str(s) => TorchValue::Str(s),
            PVal::Bytes(b) => TorchValue::Bytes(b),
            PVal::List(items) => TorchValue::List(self.list(items)?),
            PVal::Tuple(items) => TorchValue::Tuple(self.list(items)?),
            PVal::Dict(items) => TorchValue::Dict(
                items.into_iter().map(|(k, v)| Ok((self.value(k)?, self.value(v)?))).collect::<Result<_>>()?,
            ),
            PVal::Tensor(t) => TorchValue::Tensor(self.tensor(&t)?),
            PVal::Global(m, n) => TorchValue::Global(format!("{m}.{n}")),
            PVal::Storage(s) => {
                return Err(TorchPickleError::Unsupported(format!("bare storage {} outside a tensor", s.key)))
            }
            PVal::Object { class, args, state } => TorchValue::Object {
                class,
                args: self.list(args)?,
                state: match state {
                    Some(s) => Some(Box::new(self.value(*s)?)),
                    None => None,
                },
            },
            PVal::Mark => return Err(TorchPickleError::Corrupt("MARK left on the stack".into())),
        })
    }

    fn list(&mut self, items: Vec<PVal>) -> Result<Vec<TorchValue>> {
        items.into_iter().map(|v| self.value(v)).collect()
    }

    fn tensor(&mut self, tref: &TensorRef) -> Result<Tensor> {
        let storage = self.storages.get(&tref.storage.key).ok_or_else(|| {
            TorchPickleError::Corrupt(format!("storage {} is referenced but missing", tref.storage.key))
        })?;
        let numel = check_geometry(tref)?;
        let out_kind = match tref.storage.kind {
            Kind::Half | Kind::BFloat16 => Kind::Float,
            other => other,
        };
        let bytes = numel.checked_mul(out_kind.elt_size_in_bytes() as u64).unwrap_or(u64::MAX);
        if bytes > self.tensor_bytes_left {
            return Err(limit(format!(
                "tensors of size {:?} stride {:?} would take more than {} bytes, {MAX_TENSOR_EXPANSION}x the \
                 storages in the file (MAX_TENSOR_EXPANSION)",
                tref.size, tref.stride, self.allowance
            )));
        }
        self.tensor_bytes_left -= bytes;
        let tensor = storage.f_as_strided(&tref.size, &tref.stride, Some(tref.offset))?.f_contiguous()?;
        Ok(if tensor.kind() != out_kind { tensor.f_to_kind(out_kind)? } else { tensor })
    }
}

/// Checks a tensor's size, stride and offset against its storage with overflow-free
/// arithmetic; returns its element count.
fn check_geometry(tref: &TensorRef) -> Result<u64> {
    let bad = |why: &str| {
        TorchPickleError::Corrupt(format!(
            "bad tensor geometry ({why}): size {:?} stride {:?} offset {}",
            tref.size, tref.stride, tref.offset
        ))
    };
    if tref.size.len() != tref.stride.len() {
        return Err(bad("size and stride differ in length"));
    }
    if tref.size.len() > MAX_TENSOR_DIMS {
        return Err(limit(format!("a tensor has {} dimensions, more than {MAX_TENSOR_DIMS} (MAX_TENSOR_DIMS)", tref.size.len())));
    }
    if tref.size.iter().chain(&tref.stride).any(|&v| v < 0) || tref.offset < 0 {
        return Err(bad("negative"));
    }
    let numel = tref
        .size
        .iter()
        .try_fold(1u64, |n, &s| n.checked_mul(s as u64))
        .ok_or_else(|| bad("element count overflows"))?;
    if numel == 0 {
        return Ok(0);
    }
    // index of the last element read; a zero stride is fine as long as this stays inside
    // the storage (the expansion allowance bounds what repeating data may cost)
    let last = tref
        .size
        .iter()
        .zip(&tref.stride)
        .try_fold(tref.offset as u64, |acc, (&s, &st)| (s as u64 - 1).checked_mul(st as u64)?.checked_add(acc))
        .ok_or_else(|| bad("offset overflows"))?;
    if last >= tref.storage.numel {
        return Err(TorchPickleError::Corrupt(format!(
            "tensor of size {:?} stride {:?} offset {} reaches past its storage {} of {} elements",
            tref.size, tref.stride, tref.offset, tref.storage.key, tref.storage.numel
        )));
    }
    Ok(numel)
}

// ---------------------------------------------------------------------------------------
// The pickle machine

/// Values on the pickle stack (tensors are only references here).
#[derive(Debug, Clone)]
enum PVal {
    Mark,
    None,
    Bool(bool),
    Int(i128),
    Float(f64),
    Str(String),
    Bytes(Vec<u8>),
    List(Vec<PVal>),
    Tuple(Vec<PVal>),
    Dict(Vec<(PVal, PVal)>),
    Global(String, String),
    Storage(StorageRef),
    Tensor(TensorRef),
    Object { class: String, args: Vec<PVal>, state: Option<Box<PVal>> },
}

/// Bytes one value takes in place; with its payload, the unit of [`MAX_UNPICKLED_BYTES`].
const NODE: u64 = std::mem::size_of::<PVal>() as u64;

/// A value with what it costs to copy: its nesting depth and its approximate size in bytes
/// (its nodes and their payloads), kept up to date as it grows so no check walks it.
#[derive(Debug, Clone)]
struct Entry {
    v: PVal,
    depth: u32,
    weight: u64,
}

fn leaf_weight(v: &PVal) -> u64 {
    NODE + match v {
        PVal::Str(s) => s.len() as u64,
        PVal::Bytes(b) => b.len() as u64,
        PVal::Global(m, n) => (m.len() + n.len()) as u64,
        PVal::Storage(s) => s.key.len() as u64,
        PVal::Tensor(t) => t.storage.key.len() as u64 + 16 * t.size.len() as u64,
        _ => 0,
    }
}

/// Depth of a container of depth `container` once it holds a child of depth `child`.
fn deeper(container: u32, child: u32) -> Result<u32> {
    let depth = container.max(child.saturating_add(1));
    if depth > MAX_NESTING {
        return Err(nesting_error());
    }
    Ok(depth)
}

/// Depth and weight of a container holding `items` on top of what it holds already.
fn grow(depth: u32, weight: u64, items: &[Entry]) -> Result<(u32, u64)> {
    items.iter().try_fold((depth, weight), |(d, w), e| Ok((deeper(d, e.depth)?, w.saturating_add(e.weight))))
}

fn values(items: Vec<Entry>) -> Vec<PVal> {
    items.into_iter().map(|e| e.v).collect()
}

struct Unpickler<'a> {
    data: &'a [u8],
    pos: usize,
    stack: Vec<Entry>,
    memo: HashMap<u32, Entry>,
    /// Storages referenced by persistent ids, by key.
    storages: HashMap<String, StorageRef>,
    /// Bytes of values created so far, against MAX_UNPICKLED_BYTES.
    spent: u64,
}

impl<'a> Unpickler<'a> {
    fn new(data: &'a [u8], pos: usize) -> Self {
        Unpickler { data, pos, stack: Vec::new(), memo: HashMap::new(), storages: HashMap::new(), spent: 0 }
    }

    /// Run one pickle; returns the value and the position just after its STOP.
    fn run(mut self) -> Result<(PVal, usize)> {
        self.run_collect()
    }

    fn run_collect(&mut self) -> Result<(PVal, usize)> {
        loop {
            let at = self.pos;
            let op = self.byte()?;
            if op == b'.' {
                let value = self.pop()?;
                return Ok((value.v, self.pos));
            }
            self.step(op).map_err(|e| match e {
                TorchPickleError::Corrupt(m) => TorchPickleError::Corrupt(format!("{m} (opcode 0x{op:02x} at byte {at})")),
                TorchPickleError::Unsupported(m) => {
                    TorchPickleError::Unsupported(format!("{m} (opcode 0x{op:02x} at byte {at})"))
                }
                TorchPickleError::Limit(m) => TorchPickleError::Limit(format!("{m} (opcode 0x{op:02x} at byte {at})")),
                other => other,
            })?;
        }
    }

    fn charge(&mut self, bytes: u64) -> Result<()> {
        self.spent = self.spent.saturating_add(bytes);
        if self.spent > MAX_UNPICKLED_BYTES {
            return Err(limit(format!(
                "the pickle builds more than {} MiB of values (MAX_UNPICKLED_BYTES; memo reads and DUP copy)",
                MAX_UNPICKLED_BYTES >> 20
            )));
        }
        Ok(())
    }

    fn push_entry(&mut self, entry: Entry) -> Result<()> {
        if self.stack.len() >= MAX_PICKLE_STACK {
            return Err(limit(format!("more than {MAX_PICKLE_STACK} values on the pickle stack (MAX_PICKLE_STACK)")));
        }
        self.stack.push(entry);
        Ok(())
    }

    /// Push a value that holds no other values.
    fn push(&mut self, v: PVal) -> Result<()> {
        let weight = leaf_weight(&v);
        self.charge(weight)?;
        self.push_entry(Entry { v, depth: 0, weight })
    }

    /// Push a new container of `items` (moved in, so only the container itself is new).
    fn push_container(&mut self, items: Vec<Entry>, make: impl FnOnce(Vec<PVal>) -> PVal) -> Result<()> {
        let (depth, weight) = grow(1, NODE, &items)?;
        self.charge(NODE)?;
        self.push_entry(Entry { v: make(values(items)), depth, weight })
    }

    /// Room on the stack for a copy of a value of `weight`, paid for before it is made.
    fn reserve_copy(&mut self, weight: u64) -> Result<()> {
        if self.stack.len() >= MAX_PICKLE_STACK {
            return Err(limit(format!("more than {MAX_PICKLE_STACK} values on the pickle stack (MAX_PICKLE_STACK)")));
        }
        self.charge(weight)
    }

    /// Adds `items` to the container on top of the stack (list items, or dict keys and values).
    fn extend_top(&mut self, what: &str, items: Vec<Entry>) -> Result<()> {
        let top = self.top()?;
        let (depth, weight) = grow(top.depth, top.weight, &items)?;
        match &mut top.v {
            PVal::List(l) if what != "SETITEM" && what != "SETITEMS" => l.extend(values(items)),
            PVal::Dict(d) if what == "SETITEM" || what == "SETITEMS" => d.extend(pairs(values(items))),
            other => return Err(TorchPickleError::Corrupt(format!("{what} on {}", short(other)))),
        }
        top.depth = depth;
        top.weight = weight;
        Ok(())
    }

    fn step(&mut self, op: u8) -> Result<()> {
        match op {
            0x80 => {
                let protocol = self.byte()?;
                if protocol > 5 {
                    return Err(TorchPickleError::Unsupported(format!("pickle protocol {protocol}")));
                }
            }
            0x95 => {
                self.take(8)?; // FRAME: length of the next frame, irrelevant when all bytes are in memory
            }
            b'}' => self.push_container(Vec::new(), |_| PVal::Dict(Vec::new()))?,
            b']' => self.push_container(Vec::new(), PVal::List)?,
            b')' => self.push_container(Vec::new(), PVal::Tuple)?,
            b'(' => self.push(PVal::Mark)?,
            b'N' => self.push(PVal::None)?,
            0x88 => self.push(PVal::Bool(true))?,
            0x89 => self.push(PVal::Bool(false))?,
            b'K' => {
                let v = self.byte()?;
                self.push(PVal::Int(v as i128))?;
            }
            b'M' => {
                let v = u16::from_le_bytes(self.array()?);
                self.push(PVal::Int(v as i128))?;
            }
            b'J' => {
                let v = i32::from_le_bytes(self.array()?);
                self.push(PVal::Int(v as i128))?;
            }
            0x8a => {
                let n = self.byte()? as usize;
                let v = self.long(n)?;
                self.push(PVal::Int(v))?;
            }
            0x8b => {
                let n = u32::from_le_bytes(self.array()?) as usize;
                let v = self.long(n)?;
                self.push(PVal::Int(v))?;
            }
            b'G' => {
                let v = f64::from_be_bytes(self.array()?);
                self.push(PVal::Float(v))?;
            }
            b'X' => {
                let n = u32::from_le_bytes(self.array()?) as usize;
                let s = self.utf8(n)?;
                self.push(PVal::Str(s))?;
            }
            0x8c => {
                let n = self.byte()? as usize;
                let s = self.utf8(n)?;
                self.push(PVal::Str(s))?;
            }
            0x8d => {
                let n = self.len64()?;
                let s = self.utf8(n)?;
                self.push(PVal::Str(s))?;
            }
            b'B' => {
                let n = u32::from_le_bytes(self.array()?) as usize;
                let b = self.take(n)?.to_vec();
                self.push(PVal::Bytes(b))?;
            }
            b'C' => {
                let n = self.byte()? as usize;
                let b = self.take(n)?.to_vec();
                self.push(PVal::Bytes(b))?;
            }
            0x8e => {
                let n = self.len64()?;
                let b = self.take(n)?.to_vec();
                self.push(PVal::Bytes(b))?;
            }
            0x85..=0x87 => {
                let n = (op - 0x84) as usize;
                if self.stack.len() < n {
                    return Err(TorchPickleError::Corrupt("stack underflow building a tuple".into()));
                }
                let items = self.stack.split_off(self.stack.len() - n);
                if items.iter().any(|e| matches!(e.v, PVal::Mark)) {
                    return Err(TorchPickleError::Corrupt("MARK inside a short tuple".into()));
                }
                self.push_container(items, PVal::Tuple)?;
            }
            b't' => {
                let items = self.pop_mark()?;
                self.push_container(items, PVal::Tuple)?;
            }
            b'l' | 0x91 => {
                // LIST; FROZENSET, kept as a list
                let items = self.pop_mark()?;
                self.push_container(items, PVal::List)?;
            }
            b'd' => {
                let items = self.pop_mark()?;
                if items.len() % 2 != 0 {
                    return Err(TorchPickleError::Corrupt("odd number of items for a dict".into()));
                }
                self.push_container(items, |v| PVal::Dict(pairs(v)))?;
            }
            b'a' => {
                let v = self.pop()?;
                self.extend_top("APPEND", vec![v])?;
            }
            b'e' | 0x90 => {
                // APPENDS; ADDITEMS (sets are kept as lists)
                let items = self.pop_mark()?;
                self.extend_top(if op == b'e' { "APPENDS" } else { "ADDITEMS" }, items)?;
            }
            b's' => {
                let v = self.pop()?;
                let k = self.pop()?;
                self.extend_top("SETITEM", vec![k, v])?;
            }
            b'u' => {
                let items = self.pop_mark()?;
                if items.len() % 2 != 0 {
                    return Err(TorchPickleError::Corrupt("odd number of items for a dict".into()));
                }
                self.extend_top("SETITEMS", items)?;
            }
            0x8f => self.push_container(Vec::new(), PVal::List)?, // EMPTY_SET, kept as a list
            b'c' => {
                let module = self.line()?;
                let name = self.line()?;
                self.push(PVal::Global(module, name))?;
            }
            0x93 => {
                let name = self.pop()?;
                let module = self.pop()?;
                match (module.v, name.v) {
                    (PVal::Str(m), PVal::Str(n)) => self.push(PVal::Global(m, n))?,
                    _ => return Err(TorchPickleError::Corrupt("STACK_GLOBAL without two strings".into())),
                }
            }
            b'R' | 0x81 => {
                // REDUCE; NEWOBJ (cls, args) is treated alike
                let args = self.pop()?;
                let callable = self.pop()?;
                let what = if op == b'R' { "REDUCE" } else { "NEWOBJ" };
                let (depth, weight) = (args.depth, args.weight);
                let args = match args.v {
                    PVal::Tuple(a) => a,
                    other => return Err(TorchPickleError::Corrupt(format!("{what} arguments are {}", short(&other)))),
                };
                let value = self.reduce(callable.v, args)?;
                // the result is built from the arguments (moved, not copied): an object or
                // dict is no deeper and little heavier than its argument tuple
                let entry = match value {
                    v @ (PVal::Tensor(_) | PVal::Storage(_)) => Entry { weight: leaf_weight(&v), v, depth: 0 },
                    v => {
                        let extra = leaf_weight(&v);
                        self.charge(extra)?;
                        Entry { v, depth, weight: weight.saturating_add(extra) }
                    }
                };
                self.push_entry(entry)?;
            }
            b'b' => {
                let state = self.pop()?;
                let top = self.top()?;
                match &mut top.v {
                    PVal::Object { state: slot, .. } => {
                        top.depth = deeper(top.depth, state.depth)?;
                        top.weight = top.weight.saturating_add(state.weight);
                        *slot = Some(Box::new(state.v));
                    }
                    // OrderedDict attributes (`_metadata` of a state_dict) and tensor hooks
                    // carry nothing we need.
                    PVal::Dict(_) | PVal::Tensor(_) => {}
                    other => return Err(TorchPickleError::Unsupported(format!("BUILD on {}", short(other)))),
                }
            }
            b'q' => {
                let i = self.byte()? as u32;
                self.memoize(i)?;
            }
            b'r' => {
                let i = u32::from_le_bytes(self.array()?);
                self.memoize(i)?;
            }
            0x94 => {
                let i = u32::try_from(self.memo.len())
                    .map_err(|_| limit(format!("more than {MAX_MEMO_ENTRIES} memo entries (MAX_MEMO_ENTRIES)")))?;
                self.memoize(i)?;
            }
            b'h' => {
                let i = self.byte()? as u32;
                self.memo_get(i)?;
            }
            b'j' => {
                let i = u32::from_le_bytes(self.array()?);
                self.memo_get(i)?;
            }
            b'Q' => {
                let pid = self.pop()?;
                let storage = self.persistent_load(pid.v)?;
                self.push(storage)?;
            }
            b'0' => {
                self.pop()?;
            }
            b'1' => {
                self.pop_mark()?;
            }
            b'2' => {
                let weight = self.top()?.weight;
                self.reserve_copy(weight)?;
                let copy = self.top()?.clone();
                self.stack.push(copy);
            }
            other => {
                return Err(TorchPickleError::Unsupported(format!(
                    "pickle opcode 0x{other:02x} ({:?}), not emitted by torch.save",
                    other as char
                )))
            }
        }
        Ok(())
    }

    fn reduce(&mut self, callable: PVal, args: Vec<PVal>) -> Result<PVal> {
        let (mut callable, mut args) = (callable, args);
        // a loop, not recursion: `_rebuild_from_type` wraps another call, as deep as the
        // (bounded) nesting of its arguments
        loop {
            let PVal::Global(module, name) = callable else {
                return Err(TorchPickleError::Unsupported(format!("call of a non-global {}", short(&callable))));
            };
            return match (module.as_str(), name.as_str()) {
                ("torch._utils", "_rebuild_tensor_v2") | ("torch._utils", "_rebuild_tensor") => {
                    let mut it = args.into_iter();
                    let storage = match it.next() {
                        Some(PVal::Storage(s)) => s,
                        other => {
                            return Err(TorchPickleError::Corrupt(format!("tensor without a storage: {}", short(&other))))
                        }
                    };
                    let offset = int_arg(it.next(), "storage offset")?;
                    let size = int_tuple(it.next(), "size")?;
                    let stride = int_tuple(it.next(), "stride")?;
                    Ok(PVal::Tensor(TensorRef { storage, offset, size, stride }))
                }
                // nn.Parameter(data, requires_grad, hooks): the data is what we want
                ("torch._utils", "_rebuild_parameter") | ("torch._utils", "_rebuild_parameter_with_state") => {
                    match args.into_iter().next() {
                        Some(t @ PVal::Tensor(_)) => Ok(t),
                        other => Err(TorchPickleError::Corrupt(format!("parameter without a tensor: {}", short(&other)))),
                    }
                }
                // Tensor subclasses: (func, type, args, state); rebuild with func(args)
                ("torch._tensor", "_rebuild_from_type_v2") | ("torch._tensor", "_rebuild_from_type") => {
                    let mut it = args.into_iter();
                    let func = it.next().unwrap_or(PVal::None);
                    let _subclass = it.next();
                    match it.next() {
                        Some(PVal::Tuple(inner)) => {
                            (callable, args) = (func, inner);
                            continue;
                        }
                        other => {
                            Err(TorchPickleError::Corrupt(format!("_rebuild_from_type arguments {}", short(&other))))
                        }
                    }
                }
                ("collections", "OrderedDict") | ("builtins", "dict") | ("__builtin__", "dict") => {
                    match args.into_iter().next() {
                        None => Ok(PVal::Dict(Vec::new())),
                        Some(PVal::List(items)) | Some(PVal::Tuple(items)) => Ok(PVal::Dict(
                            items
                                .into_iter()
                                .map(|pair| match pair {
                                    PVal::Tuple(kv) | PVal::List(kv) if kv.len() == 2 => {
                                        let mut kv = kv.into_iter();
                                        match (kv.next(), kv.next()) {
                                            (Some(k), Some(v)) => Ok((k, v)),
                                            _ => Err(TorchPickleError::Corrupt("OrderedDict item is not a pair".into())),
                                        }
                                    }
                                    _ => Err(TorchPickleError::Corrupt("OrderedDict item is not a pair".into())),
                                })
                                .collect::<Result<_>>()?,
                        )),
                        Some(other) => Err(TorchPickleError::Unsupported(format!("OrderedDict({})", short(&other)))),
                    }
                }
                ("torch", n) if n.ends_with("Storage") => {
                    Err(TorchPickleError::Unsupported(format!("storage torch.{n} built by value, not by reference")))
                }
                _ => Ok(PVal::Object { class: format!("{module}.{name}"), args, state: None }),
            };
        }
    }

    /// torch.save's persistent id: ('storage', storage_type, key, location, numel[, view_metadata]).
    fn persistent_load(&mut self, pid: PVal) -> Result<PVal> {
        let PVal::Tuple(items) = pid else {
            return Err(TorchPickleError::Unsupported(format!("persistent id {}", short(&pid))));
        };
        match items.as_slice() {
            [PVal::Str(tag), PVal::Global(_, class), PVal::Str(key), _location, PVal::Int(numel), rest @ ..]
                if tag == "storage" =>
            {
                if let Some(view) = rest.first() {
                    if !matches!(view, PVal::None) {
                        return Err(TorchPickleError::Unsupported(format!("storage view of {key}")));
                    }
                }
                let kind = storage_kind(class)?;
                let numel = u64::try_from(*numel)
                    .map_err(|_| TorchPickleError::Corrupt(format!("storage {key} has {numel} elements")))?;
                let sref = StorageRef { key: key.clone(), kind, numel };
                if let Some(seen) = self.storages.get(key) {
                    if seen.kind != kind || seen.numel != numel {
                        return Err(TorchPickleError::Corrupt(format!("storage {key} referenced with two types")));
                    }
                }
                self.storages.insert(key.clone(), sref.clone());
                Ok(PVal::Storage(sref))
            }
            _ => Err(TorchPickleError::Unsupported(format!("persistent id {}", short(&items)))),
        }
    }

    fn memoize(&mut self, index: u32) -> Result<()> {
        if self.memo.len() >= MAX_MEMO_ENTRIES && !self.memo.contains_key(&index) {
            return Err(limit(format!("more than {MAX_MEMO_ENTRIES} memo entries (MAX_MEMO_ENTRIES)")));
        }
        let weight = self.top()?.weight;
        self.charge(weight)?;
        let copy = self.top()?.clone();
        self.memo.insert(index, copy);
        Ok(())
    }

    fn memo_get(&mut self, index: u32) -> Result<()> {
        let weight = self
            .memo
            .get(&index)
            .map(|e| e.weight)
            .ok_or_else(|| TorchPickleError::Corrupt(format!("memo entry {index} read before it was written")))?;
        self.reserve_copy(weight)?;
        if let Some(copy) = self.memo.get(&index).cloned() {
            self.stack.push(copy);
        }
        Ok(())
    }

    fn pop(&mut self) -> Result<Entry> {
        match self.stack.pop() {
            Some(Entry { v: PVal::Mark, .. }) => Err(TorchPickleError::Corrupt("unexpected MARK".into())),
            Some(e) => Ok(e),
            None => Err(TorchPickleError::Corrupt("stack underflow".into())),
        }
    }

    fn top(&mut self) -> Result<&mut Entry> {
        self.stack.last_mut().ok_or_else(|| TorchPickleError::Corrupt("stack underflow".into()))
    }

    fn pop_mark(&mut self) -> Result<Vec<Entry>> {
        let mark = self
            .stack
            .iter()
            .rposition(|e| matches!(e.v, PVal::Mark))
            .ok_or_else(|| TorchPickleError::Corrupt("no MARK on the stack".into()))?;
        let items = self.stack.split_off(mark + 1);
        self.stack.pop();
        Ok(items)
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.data.len()).ok_or_else(|| {
            TorchPickleError::Corrupt(format!("pickle truncated: {n} bytes wanted at byte {}", self.pos))
        })?;
        let s = &self.data[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn byte(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        let s = self.take(N)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    fn len64(&mut self) -> Result<usize> {
        usize::try_from(u64::from_le_bytes(self.array()?))
            .map_err(|_| TorchPickleError::Corrupt("length does not fit in memory".into()))
    }

    fn utf8(&mut self, n: usize) -> Result<String> {
        let s = self.take(n)?;
        String::from_utf8(s.to_vec()).map_err(|_| TorchPickleError::Corrupt("string is not UTF-8".into()))
    }

    fn line(&mut self) -> Result<String> {
        let rest = &self.data[self.pos..];
        let n = rest
            .iter()
            .position(|&b| b == b'\n')
            .ok_or_else(|| TorchPickleError::Corrupt("unterminated GLOBAL name".into()))?;
        let s = self.utf8(n)?;
        self.pos += 1;
        Ok(s)
    }

    /// Little-endian two's-complement integer of `n` bytes (LONG1/LONG4).
    fn long(&mut self, n: usize) -> Result<i128> {
        if n > 16 {
            return Err(TorchPickleError::Unsupported(format!("{n}-byte integer")));
        }
        let bytes = self.take(n)?;
        if n == 0 {
            return Ok(0);
        }
        let fill = if bytes[n - 1] & 0x80 != 0 { 0xff } else { 0 };
        let mut buf = [fill; 16];
        buf[..n].copy_from_slice(bytes);
        Ok(i128::from_le_bytes(buf))
    }
}

/// Key/value pairs from a flat list of an even length (checked by the caller).
fn pairs(items: Vec<PVal>) -> Vec<(PVal, PVal)> {
    let mut out = Vec::with_capacity(items.len() / 2);
    let mut it = items.into_iter();
    while let (Some(k), Some(v)) = (it.next(), it.next()) {
        out.push((k, v));
    }
    out
}

fn int_arg(v: Option<PVal>, what: &str) -> Result<i64> {
    match v {
        Some(PVal::Int(i)) => i64::try_from(i).map_err(|_| TorchPickleError::Corrupt(format!("{what} {i} too large"))),
        other => Err(TorchPickleError::Corrupt(format!("{what} is {}, not an int", short(&other)))),
    }
}

fn int_tuple(v: Option<PVal>, what: &str) -> Result<Vec<i64>> {
    match v {
        Some(PVal::Tuple(items)) => items.into_iter().map(|i| int_arg(Some(i), what)).collect(),
        other => Err(TorchPickleError::Corrupt(format!("{what} is {}, not a tuple", short(&other)))),
    }
}

/// At most 80 characters of a value's Debug form, for error messages. Formatting stops as
/// soon as they are written, so a huge value costs no more than a small one.
fn short(v: &impl std::fmt::Debug) -> String {
    use std::fmt::Write;
    const MAX: usize = 80;
    struct Capped(String);
    impl Write for Capped {
        fn write_str(&mut self, s: &str) -> std::fmt::Result {
            let room = MAX - self.0.len();
            if s.len() <= room {
                self.0.push_str(s);
                return Ok(());
            }
            let cut = (0..=room).rev().find(|&i| s.is_char_boundary(i)).unwrap_or(0);
            self.0.push_str(&s[..cut]);
            Err(std::fmt::Error)
        }
    }
    let mut out = Capped(String::new());
    match write!(out, "{v:?}") {
        Ok(()) => out.0,
        Err(_) => out.0 + "...",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A LONG1 of 8 bytes: any i64.
    fn long8(v: i64) -> Vec<u8> {
        let mut out = vec![0x8a, 8];
        out.extend_from_slice(&v.to_le_bytes());
        out
    }

    /// Hand-assembled protocol-2 pickle of `{'w': tensor}` as torch.save writes it, with
    /// any geometry (storage '0' of `numel` elements).
    fn tensor_pickle_with(storage_kind: &str, size: &[i64], stride: &[i64], offset: i64, numel: i64) -> Vec<u8> {
        let mut p = vec![0x80, 2, b'}', b'(', b'X', 1, 0, 0, 0, b'w'];
        p.extend_from_slice(b"ctorch._utils\n_rebuild_tensor_v2\n(");
        p.extend_from_slice(b"(X\x07\x00\x00\x00storage");
        p.extend_from_slice(format!("ctorch\n{storage_kind}\n").as_bytes());
        p.extend_from_slice(b"X\x01\x00\x00\x000X\x03\x00\x00\x00cpu");
        p.extend(long8(numel));
        p.push(b't');
        p.push(b'Q');
        p.extend(long8(offset));
        p.push(b'(');
        for &s in size {
            p.extend(long8(s));
        }
        p.extend_from_slice(b"t(");
        for &s in stride {
            p.extend(long8(s));
        }
        // requires_grad False, hooks OrderedDict(), close the arguments, REDUCE, SETITEMS, STOP
        p.extend_from_slice(b"t\x89ccollections\nOrderedDict\n)RtRu.");
        p
    }

    fn tensor_pickle(storage_kind: &str, size: &[u8], stride: &[u8], offset: u8, numel: u8) -> Vec<u8> {
        let wide = |v: &[u8]| v.iter().map(|&x| x as i64).collect::<Vec<_>>();
        tensor_pickle_with(storage_kind, &wide(size), &wide(stride), offset as i64, numel as i64)
    }

    /// The legacy (torch < 1.6) container around `pkl`, with storage '0' of `count` elements.
    fn legacy_bytes(pkl: &[u8], count: i64, storage: &[u8]) -> Vec<u8> {
        let mut f = vec![0x80, 2, 0x8a, 10];
        f.extend_from_slice(&LEGACY_MAGIC.to_le_bytes()[..10]);
        f.push(b'.');
        f.extend_from_slice(&[0x80, 2, b'M', 0xe9, 0x03, b'.']); // 1001
        f.extend_from_slice(b"\x80\x02}(X\x0d\x00\x00\x00little_endian\x88u.");
        f.extend_from_slice(pkl);
        f.extend_from_slice(b"\x80\x02]X\x01\x00\x00\x000a.");
        f.extend_from_slice(&count.to_le_bytes());
        f.extend_from_slice(storage);
        f
    }

    fn zip_bytes(pkl: &[u8], storage: &[u8]) -> Vec<u8> {
        use std::io::Write;
        let mut buf = std::io::Cursor::new(Vec::new());
        {
            let mut w = zip::ZipWriter::new(&mut buf);
            let opts = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
            w.start_file("archive/data.pkl", opts).unwrap();
            w.write_all(pkl).unwrap();
            w.start_file("archive/byteorder", opts).unwrap();
            w.write_all(b"little").unwrap();
            w.start_file("archive/data/0", opts).unwrap();
            w.write_all(storage).unwrap();
            w.finish().unwrap();
        }
        buf.into_inner()
    }

    #[test]
    fn rebuilds_a_strided_half_tensor_as_float() {
        // storage of 7 halfs: 0..7; tensor [2,2] with stride (1,2) at offset 1 -> [[1,3],[2,4]]
        let storage: Vec<u8> = (0..7).flat_map(|i| half::f16::from_f32(i as f32).to_le_bytes()).collect();
        let pkl = tensor_pickle("HalfStorage", &[2, 2], &[1, 2], 1, 7);
        let value = read_checkpoint_bytes(&zip_bytes(&pkl, &storage)).unwrap();
        let Some(TorchValue::Tensor(t)) = value.get("w") else { panic!("no tensor: {value:?}") };
        assert_eq!(t.kind(), Kind::Float);
        assert_eq!(t.size(), vec![2, 2]);
        let v: Vec<f32> = Vec::try_from(t.flatten(0, -1)).unwrap();
        assert_eq!(v, vec![1.0, 3.0, 2.0, 4.0]);
    }

    #[test]
    fn tensor_reaching_past_its_storage_is_an_error() {
        let storage = vec![0u8; 4 * 3];
        let pkl = tensor_pickle("FloatStorage", &[2, 2], &[2, 1], 0, 3);
        let err = read_checkpoint_bytes(&zip_bytes(&pkl, &storage)).unwrap_err();
        assert!(err.to_string().contains("reaches past its storage"), "{err}");
    }

    #[test]
    fn storage_of_wrong_length_is_an_error() {
        let pkl = tensor_pickle("FloatStorage", &[3], &[1], 0, 3);
        let err = read_checkpoint_bytes(&zip_bytes(&pkl, &[0u8; 8])).unwrap_err();
        assert!(err.to_string().contains("has 8 bytes"), "{err}");
    }

    #[test]
    fn truncated_and_garbage_inputs_are_errors_not_panics() {
        let storage = vec![0u8; 12];
        let pkl = tensor_pickle("FloatStorage", &[3], &[1], 0, 3);
        for cut in 0..pkl.len() {
            // every prefix of the pickle must fail cleanly
            let _ = read_checkpoint_bytes(&zip_bytes(&pkl[..cut], &storage));
        }
        assert!(matches!(read_checkpoint_bytes(b"hello"), Err(TorchPickleError::NotACheckpoint(_))));
        assert!(read_checkpoint_bytes(&[0x80, 2, 0xff]).is_err());
    }

    #[test]
    fn big_integers_and_negative_longs_decode() {
        // LONG1 of the legacy magic number, then STOP
        let mut p = vec![0x80, 2, 0x8a, 10];
        p.extend_from_slice(&LEGACY_MAGIC.to_le_bytes()[..10]);
        p.push(b'.');
        let (v, end) = Unpickler::new(&p, 0).run().unwrap();
        assert!(matches!(v, PVal::Int(m) if m == LEGACY_MAGIC));
        assert_eq!(end, p.len());
        let p = [0x80, 2, 0x8a, 2, 0x00, 0xff, b'.']; // -256
        assert!(matches!(Unpickler::new(&p, 0).run().unwrap().0, PVal::Int(-256)));
    }

    // -----------------------------------------------------------------------------------
    // Hostile input: limits, each with the shape that reaches it

    /// Counts this thread's heap so tests can bound what the reader allocates. libtorch's
    /// own allocations are not seen: tensor bytes are bounded by `MAX_TENSOR_EXPANSION`.
    mod meter {
        use std::alloc::{GlobalAlloc, Layout, System};
        use std::cell::Cell;

        pub struct Meter;

        thread_local! {
            static LIVE: Cell<usize> = const { Cell::new(0) };
            static PEAK: Cell<usize> = const { Cell::new(0) };
        }

        fn grew(n: usize) {
            let _ = LIVE.try_with(|live| {
                let now = live.get().saturating_add(n);
                live.set(now);
                let _ = PEAK.try_with(|peak| peak.set(peak.get().max(now)));
            });
        }

        fn shrank(n: usize) {
            let _ = LIVE.try_with(|live| live.set(live.get().saturating_sub(n)));
        }

        unsafe impl GlobalAlloc for Meter {
            unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
                let p = unsafe { System.alloc(layout) };
                if !p.is_null() {
                    grew(layout.size());
                }
                p
            }
            unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
                let p = unsafe { System.alloc_zeroed(layout) };
                if !p.is_null() {
                    grew(layout.size());
                }
                p
            }
            unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
                unsafe { System.dealloc(ptr, layout) };
                shrank(layout.size());
            }
            unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
                let p = unsafe { System.realloc(ptr, layout, new_size) };
                if !p.is_null() {
                    shrank(layout.size());
                    grew(new_size);
                }
                p
            }
        }

        /// `f`'s result and the most this thread's heap grew while it ran.
        pub fn peak_during<T>(f: impl FnOnce() -> T) -> (T, usize) {
            let base = LIVE.with(Cell::get);
            PEAK.with(|p| p.set(base));
            let out = f();
            (out, PEAK.with(Cell::get).saturating_sub(base))
        }
    }

    #[global_allocator]
    static METER: meter::Meter = meter::Meter;

    /// Most the Rust heap may grow while reading `input`: the value budget (copies
    /// included, plus container slack) and a few copies of the input itself.
    fn heap_bound(input: &[u8]) -> usize {
        2 * MAX_UNPICKLED_BYTES as usize + 4 * input.len() + (16 << 20)
    }

    /// Runs `f` on a thread with a 2 MiB stack (what tokio and the test harness give; a
    /// stack overflow aborts the run); returns its result and that thread's peak heap growth.
    fn guarded<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> (T, usize) {
        std::thread::Builder::new()
            .stack_size(2 << 20)
            .spawn(move || meter::peak_during(f))
            .expect("spawn")
            .join()
            .expect("the reader panicked")
    }

    /// Reads `bytes` as a checkpoint within the stack and heap bounds.
    fn read_guarded(bytes: Vec<u8>) -> Result<TorchValue> {
        let bound = heap_bound(&bytes);
        let (result, peak) = guarded(move || read_checkpoint_bytes(&bytes));
        assert!(peak <= bound, "heap grew {peak} bytes, over {bound}");
        result
    }

    /// A pickle (bare, as the legacy format's first stream would be) run on its own,
    /// within the stack and heap bounds.
    fn run_pickle(p: &[u8]) -> Result<PVal> {
        let (p, bound) = (p.to_vec(), heap_bound(p));
        let (result, peak) = guarded(move || Unpickler::new(&p, 0).run().map(|(v, _)| v));
        assert!(peak <= bound, "heap grew {peak} bytes, over {bound}");
        result
    }

    fn limit_message(r: Result<impl std::fmt::Debug>) -> String {
        match r {
            Err(TorchPickleError::Limit(m)) => m,
            other => panic!("expected a limit error, got {}", short(&other)),
        }
    }

    fn small_zip() -> Vec<u8> {
        let storage: Vec<u8> = (0..6).flat_map(|i| (i as f32).to_le_bytes()).collect();
        zip_bytes(&tensor_pickle("FloatStorage", &[2, 3], &[3, 1], 0, 6), &storage)
    }

    fn small_legacy() -> Vec<u8> {
        let storage: Vec<u8> = (0..4).flat_map(|i| half::f16::from_f32(i as f32).to_le_bytes()).collect();
        legacy_bytes(&tensor_pickle("HalfStorage", &[2, 2], &[1, 2], 0, 4), 4, &storage)
    }

    #[test]
    fn both_small_checkpoints_read_back() {
        for (bytes, want) in [(small_zip(), vec![0.0f32, 1.0, 2.0, 3.0, 4.0, 5.0]), (small_legacy(), vec![0.0, 2.0, 1.0, 3.0])]
        {
            let value = read_guarded(bytes).unwrap();
            let Some(TorchValue::Tensor(t)) = value.get("w") else { panic!("no tensor: {value:?}") };
            assert_eq!(Vec::<f32>::try_from(t.flatten(0, -1)).unwrap(), want);
        }
    }

    #[test]
    fn nesting_is_capped_and_the_cap_itself_is_safe_to_walk() {
        const DEEP: usize = 100_000;
        // EMPTY_LIST x N, then APPEND x N: each list goes into the one below
        let mut lists = vec![0x80, 2];
        lists.extend(std::iter::repeat_n(b']', DEEP));
        lists.extend(std::iter::repeat_n(b'a', DEEP - 1));
        lists.push(b'.');
        assert!(limit_message(run_pickle(&lists)).contains("MAX_NESTING"));
        // MARK x N, then TUPLE x N
        let mut tuples = vec![0x80, 2];
        tuples.extend(std::iter::repeat_n(b'(', DEEP));
        tuples.extend(std::iter::repeat_n(b't', DEEP));
        tuples.push(b'.');
        assert!(limit_message(run_pickle(&tuples)).contains("MAX_NESTING"));
        // EMPTY_TUPLE then TUPLE1 x N; and dicts in dicts through SETITEM
        let mut singles = vec![0x80, 2, b')'];
        singles.extend(std::iter::repeat_n(0x85, DEEP));
        singles.push(b'.');
        assert!(limit_message(run_pickle(&singles)).contains("MAX_NESTING"));
        let mut dicts = vec![0x80, 2, b'}'];
        for _ in 0..DEEP {
            dicts.extend_from_slice(b"K\x01}");
        }
        dicts.extend(std::iter::repeat_n(b's', DEEP));
        dicts.push(b'.');
        assert!(limit_message(run_pickle(&dicts)).contains("MAX_NESTING"));
        // exactly at the cap: built, materialised, printed and dropped on a 2 MiB stack
        let at_cap = MAX_NESTING as usize;
        let mut pkl = vec![0x80, 2, b'}', b'X', 1, 0, 0, 0, b'w'];
        pkl.extend(std::iter::repeat_n(b']', at_cap - 1));
        pkl.extend(std::iter::repeat_n(b'a', at_cap - 2));
        pkl.extend_from_slice(b"s.");
        let value = read_guarded(zip_bytes(&pkl, &[])).unwrap();
        let mut depth = 0;
        let mut v = value.get("w").unwrap();
        while let TorchValue::List(items) = v {
            depth += 1;
            match items.first() {
                Some(inner) => v = inner,
                None => break,
            }
        }
        assert_eq!(depth, at_cap - 1);
        assert!(format!("{value:?}").len() > at_cap);
        let mut deeper = pkl.clone();
        deeper.splice(9..9, [b']']);
        deeper.splice(deeper.len() - 2..deeper.len() - 2, [b'a']);
        assert!(limit_message(read_guarded(zip_bytes(&deeper, &[]))).contains("MAX_NESTING"));
    }

    #[test]
    fn memo_and_dup_copies_are_paid_for() {
        // x = None; then x = (x, x) forty times through the memo: 2^40 nodes if unchecked
        let mut laughs = vec![0x80, 2, b'N', b'q', 0];
        for _ in 0..40 {
            laughs.extend_from_slice(b"h\x00h\x00\x86q\x00");
        }
        laughs.push(b'.');
        assert!(limit_message(run_pickle(&laughs)).contains("MAX_UNPICKLED_BYTES"));
        // DUP a list and append the copy to itself, again and again
        let mut dups = vec![0x80, 2, b']'];
        for _ in 0..200 {
            dups.extend_from_slice(b"2a");
        }
        dups.push(b'.');
        assert!(limit_message(run_pickle(&dups)).contains("MAX_UNPICKLED_BYTES"));
        // plain DUPs fill the stack
        let mut stack = vec![0x80, 2, b'N'];
        stack.extend(std::iter::repeat_n(b'2', MAX_PICKLE_STACK));
        stack.push(b'.');
        assert!(limit_message(run_pickle(&stack)).contains("MAX_PICKLE_STACK"));
    }

    #[test]
    fn memo_indices_are_checked_not_trusted() {
        // a huge BINPUT index is just a key (no table sized by it)
        let p = [0x80, 2, b'N', b'r', 0xff, 0xff, 0xff, 0xff, b'0', b'j', 0xff, 0xff, 0xff, 0xff, b'.'];
        assert!(matches!(run_pickle(&p), Ok(PVal::None)));
        // LONG_BINGET of an entry never written
        let p = [0x80, 2, b'j', 0x00, 0x00, 0x00, 0x80, b'.'];
        let err = run_pickle(&p).unwrap_err().to_string();
        assert!(err.contains("memo entry 2147483648 read before it was written"), "{err}");
        // one more distinct index than the memo may hold
        let mut p = vec![0x80, 2, b'N'];
        for i in 0..=MAX_MEMO_ENTRIES as u32 {
            p.push(b'r');
            p.extend_from_slice(&i.to_le_bytes());
        }
        p.push(b'.');
        assert!(limit_message(run_pickle(&p)).contains("MAX_MEMO_ENTRIES"));
    }

    #[test]
    fn storage_sizes_are_checked_against_the_file_before_allocating() {
        // 2^60 floats: refused from the pickle alone, in both containers
        let pkl = tensor_pickle_with("FloatStorage", &[1], &[1], 0, 1 << 60);
        let crafted = zip_bytes(&pkl, &[0u8; 4]);
        let (result, peak) = guarded(move || read_checkpoint_bytes(&crafted));
        assert!(limit_message(result).contains("but the file has"));
        assert!(peak < 1 << 20, "{peak}");
        let err = read_guarded(legacy_bytes(&pkl, 1 << 60, &[0u8; 4])).unwrap_err().to_string();
        assert!(err.contains("file ends inside storage 0"), "{err}");
        // the pickle and the legacy count agreeing on 2^59 doubles changes nothing
        let pkl = tensor_pickle_with("DoubleStorage", &[1], &[1], 0, 1 << 59);
        assert!(read_guarded(legacy_bytes(&pkl, 1 << 59, &[0u8; 8])).is_err());
        // a count that overflows a byte length
        let pkl = tensor_pickle_with("DoubleStorage", &[1], &[1], 0, i64::MAX);
        let err = read_guarded(legacy_bytes(&pkl, i64::MAX, &[])).unwrap_err().to_string();
        assert!(err.contains("impossibly large"), "{err}");
    }

    /// `bytes` with the central-directory size fields of `name` set to `size`.
    fn with_claimed_size(mut bytes: Vec<u8>, name: &str, size: u32) -> Vec<u8> {
        let at = (0..bytes.len() - 46)
            .find(|&i| bytes[i..].starts_with(b"PK\x01\x02") && bytes[i + 46..].starts_with(name.as_bytes()))
            .expect("central directory entry");
        bytes[at + 24..at + 28].copy_from_slice(&size.to_le_bytes());
        bytes
    }

    #[test]
    fn zip_headers_are_not_trusted_for_allocation() {
        // data.pkl claiming 4 GiB: refused on its header
        let crafted = with_claimed_size(small_zip(), "archive/data.pkl", u32::MAX - 1);
        let (result, peak) = guarded(move || read_checkpoint_bytes(&crafted));
        assert!(result.is_err());
        assert!(peak < 1 << 20, "{peak}");
        // a storage entry claiming 4 GiB where the pickle wants 24 bytes
        let crafted = with_claimed_size(small_zip(), "archive/data/0", u32::MAX - 1);
        let (result, peak) = guarded(move || read_checkpoint_bytes(&crafted));
        assert!(result.is_err());
        assert!(peak < 1 << 20, "{peak}");
    }

    #[test]
    fn tensor_geometry_is_checked_with_overflow_free_arithmetic() {
        let storage = vec![0u8; 16]; // 4 floats
        let read = |size: &[i64], stride: &[i64], offset: i64| {
            let pkl = tensor_pickle_with("FloatStorage", size, stride, offset, 4);
            read_guarded(zip_bytes(&pkl, &storage))
        };
        let err = |r: Result<TorchValue>| r.unwrap_err().to_string();
        assert!(err(read(&[2], &[-1], 0)).contains("negative"));
        assert!(err(read(&[2], &[1], -1)).contains("negative"));
        assert!(err(read(&[2, 2], &[1], 0)).contains("differ in length"));
        assert!(err(read(&[1 << 62, 4], &[1, 1], 0)).contains("element count overflows"));
        assert!(err(read(&[4], &[i64::MAX], 0)).contains("offset overflows"));
        assert!(err(read(&[2], &[1], i64::MAX)).contains("reaches past its storage"));
        assert!(err(read(&[2], &[4], 0)).contains("reaches past its storage"));
        // a zero stride repeats data: fine while small, refused when it would blow up
        let Ok(TorchValue::Dict(items)) = read(&[3], &[0], 1) else { panic!() };
        let TorchValue::Tensor(t) = &items[0].1 else { panic!() };
        assert_eq!(t.size(), vec![3]);
        assert!(limit_message(read(&[1 << 40], &[0], 0)).contains("MAX_TENSOR_EXPANSION"));
        assert!(limit_message(read(&[1 << 20, 1 << 20], &[0, 0], 0)).contains("MAX_TENSOR_EXPANSION"));
        // the same storage named by many tensors is counted for each
        let mut many = vec![0x80, 2, b']'];
        let one = tensor_pickle_with("FloatStorage", &[4], &[1], 0, 4);
        many.extend_from_slice(&one[2..one.len() - 1]); // the {'w': tensor} dict
        many.extend_from_slice(b"q\x00a");
        for _ in 0..8 {
            many.extend_from_slice(b"h\x00a");
        }
        many.push(b'.');
        assert!(limit_message(read_guarded(zip_bytes(&many, &storage))).contains("MAX_TENSOR_EXPANSION"));
        // too many dimensions
        let dims = vec![1i64; MAX_TENSOR_DIMS + 1];
        assert!(limit_message(read(&dims, &dims, 0)).contains("MAX_TENSOR_DIMS"));
    }

    #[test]
    fn error_messages_stay_short_for_huge_values() {
        // APPEND to a 100k-item tuple: the message quotes 80 characters of it, not all
        let mut p = vec![0x80, 2, b'('];
        p.extend(std::iter::repeat_n(b'N', 100_000));
        p.extend_from_slice(b"tNa.");
        let err = run_pickle(&p).unwrap_err().to_string();
        assert!(err.contains("APPEND on Tuple([None") && err.len() < 200, "{err}");
    }

    // -----------------------------------------------------------------------------------
    // Fuzzing: mutated real and hand-built checkpoints read to Ok or Err, never panic,
    // never overflow the stack, never grow the heap past `heap_bound`

    fn shared_reference() -> Option<std::path::PathBuf> {
        let root = match std::env::var_os("MONO2MESH_SHARED_DIR") {
            Some(dir) => std::path::PathBuf::from(dir),
            None => std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared"),
        };
        let dir = root.join("reference/pix2vox/F1");
        if dir.join("Pix2Vox-F-checkpoint.pth").is_file() {
            Some(dir)
        } else {
            eprintln!("SKIPPED: {} is absent (real checkpoints for the fuzz corpus)", dir.display());
            None
        }
    }

    fn data_pkl(zip_file: &[u8]) -> Vec<u8> {
        let mut archive = zip::ZipArchive::new(std::io::Cursor::new(zip_file)).unwrap();
        let name = archive.file_names().find(|n| n.ends_with("/data.pkl")).unwrap().to_owned();
        let mut out = Vec::new();
        archive.by_name(&name).unwrap().read_to_end(&mut out).unwrap();
        out
    }

    #[test]
    fn real_checkpoints_stay_far_below_the_limits() {
        let Some(dir) = shared_reference() else { return };
        let zip_file = std::fs::read(dir.join("Pix2Vox-F-checkpoint.pth")).unwrap();
        let pkl = data_pkl(&zip_file);
        let mut unpickler = Unpickler::new(&pkl, 0);
        unpickler.run_collect().unwrap();
        eprintln!(
            "Pix2Vox-F data.pkl: {} bytes, {} bytes of values, {} memo entries, {} storages",
            pkl.len(),
            unpickler.spent,
            unpickler.memo.len(),
            unpickler.storages.len()
        );
        assert!(unpickler.spent * 64 < MAX_UNPICKLED_BYTES);
        assert!(unpickler.memo.len() * 64 < MAX_MEMO_ENTRIES);
        assert!((pkl.len() as u64) * 64 < MAX_PICKLE_BYTES);
        for name in ["Pix2Vox-F-checkpoint.pth", "Pix2Vox-F-checkpoint-legacy.pth"] {
            let value = read_checkpoint(dir.join(name)).unwrap();
            assert!(value.get("encoder_state_dict").is_some(), "{name}");
        }
    }

    use proptest::prelude::*;

    fn fuzz_config() -> ProptestConfig {
        // moderate by default (debug build, 2 cores); PROPTEST_CASES=5000 for a long run
        let cases = std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(64);
        ProptestConfig { cases, failure_persistence: None, ..ProptestConfig::default() }
    }

    #[derive(Debug, Clone)]
    enum Mutation {
        Flip { at: usize, bit: u8 },
        Set { at: usize, byte: u8 },
        Truncate { at: usize },
        /// Copy `len` bytes from `from` over `at` (moves pickle fragments around).
        Splice { at: usize, from: usize, len: usize },
        /// Insert `bytes` at `at` (opcodes, often).
        Insert { at: usize, bytes: Vec<u8> },
    }

    fn mutation() -> impl Strategy<Value = Mutation> {
        prop_oneof![
            3 => (any::<usize>(), 0u8..8).prop_map(|(at, bit)| Mutation::Flip { at, bit }),
            2 => (any::<usize>(), any::<u8>()).prop_map(|(at, byte)| Mutation::Set { at, byte }),
            1 => any::<usize>().prop_map(|at| Mutation::Truncate { at }),
            2 => (any::<usize>(), any::<usize>(), 1usize..64).prop_map(|(at, from, len)| Mutation::Splice { at, from, len }),
            2 => (any::<usize>(), proptest::collection::vec(opcode_bytes(), 1..8))
                .prop_map(|(at, ops)| Mutation::Insert { at, bytes: ops.concat() }),
        ]
    }

    /// One opcode torch.save emits (or that reaches a limit), with plausible arguments.
    fn opcode_bytes() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            proptest::sample::select(vec![
                b"]".to_vec(), b"(".to_vec(), b")".to_vec(), b"}".to_vec(), b"t".to_vec(), b"l".to_vec(),
                b"d".to_vec(), b"a".to_vec(), b"e".to_vec(), b"s".to_vec(), b"u".to_vec(), b"2".to_vec(),
                b"0".to_vec(), b"1".to_vec(), b"N".to_vec(), b"R".to_vec(), b"b".to_vec(), b"Q".to_vec(),
                b"\x85".to_vec(), b"\x86".to_vec(), b"\x87".to_vec(), b"\x81".to_vec(), b"\x93".to_vec(),
                b"\x94".to_vec(), b"\x88".to_vec(), b"ctorch._utils\n_rebuild_tensor_v2\n".to_vec(),
                b"ccollections\nOrderedDict\n".to_vec(), b"ctorch\nFloatStorage\n".to_vec(),
                b"X\x07\x00\x00\x00storage".to_vec(),
            ]),
            any::<u8>().prop_map(|i| vec![b'q', i]),
            any::<u8>().prop_map(|i| vec![b'h', i]),
            any::<u32>().prop_map(|i| { let mut v = vec![b'j']; v.extend_from_slice(&i.to_le_bytes()); v }),
            any::<u32>().prop_map(|i| { let mut v = vec![b'r']; v.extend_from_slice(&i.to_le_bytes()); v }),
            any::<i64>().prop_map(long8),
            any::<u8>().prop_map(|i| vec![b'K', i]),
        ]
    }

    fn mutate(mut bytes: Vec<u8>, mutations: &[Mutation]) -> Vec<u8> {
        for m in mutations {
            let len = bytes.len().max(1);
            match m {
                Mutation::Flip { at, bit } => {
                    if let Some(b) = bytes.get_mut(at % len) {
                        *b ^= 1 << bit;
                    }
                }
                Mutation::Set { at, byte } => {
                    if let Some(b) = bytes.get_mut(at % len) {
                        *b = *byte;
                    }
                }
                Mutation::Truncate { at } => bytes.truncate(at % len),
                Mutation::Splice { at, from, len: n } => {
                    let (at, from) = (at % len, from % len);
                    let n = (*n).min(bytes.len().saturating_sub(at)).min(bytes.len().saturating_sub(from));
                    bytes.copy_within(from..from + n, at);
                }
                Mutation::Insert { at, bytes: new } => {
                    let at = at % (bytes.len() + 1);
                    bytes.splice(at..at, new.iter().copied());
                }
            }
        }
        bytes
    }

    /// Hand-built checkpoints (always there) as seeds.
    fn seeds() -> Vec<Vec<u8>> {
        let pkl = tensor_pickle("FloatStorage", &[2, 3], &[3, 1], 0, 6);
        vec![small_zip(), small_legacy(), pkl]
    }

    proptest! {
        #![proptest_config(fuzz_config())]

        #[test]
        fn mutated_small_checkpoints_never_panic(
            seed in 0usize..3,
            mutations in proptest::collection::vec(mutation(), 1..6),
        ) {
            let bytes = mutate(seeds().swap_remove(seed), &mutations);
            if seed == 2 {
                // the bare pickle, inside a well-formed zip so the pickle machine sees it all
                let _ = read_guarded(zip_bytes(&bytes, &[0u8; 24]));
            } else {
                let _ = read_guarded(bytes);
            }
        }

        #[test]
        fn random_opcode_streams_never_panic(ops in proptest::collection::vec(opcode_bytes(), 0..400)) {
            let mut pkl = vec![0x80, 2];
            pkl.extend(ops.concat());
            pkl.push(b'.');
            let _ = read_guarded(zip_bytes(&pkl, &[0u8; 24]));
            let _ = read_guarded(legacy_bytes(&pkl, 6, &[0u8; 24]));
        }
    }

    #[test]
    fn mutated_real_checkpoints_never_panic() {
        let Some(dir) = shared_reference() else { return };
        let zip_file = std::fs::read(dir.join("Pix2Vox-F-checkpoint.pth")).unwrap();
        let legacy_file = std::fs::read(dir.join("Pix2Vox-F-checkpoint-legacy.pth")).unwrap();
        let pkl = data_pkl(&zip_file);
        let mut config = fuzz_config();
        let mut runner = proptest::test_runner::TestRunner::new(config.clone());
        // the real pickle, mutated, on the pickle machine alone (cheap: no storages)
        runner
            .run(&proptest::collection::vec(mutation(), 1..8), |mutations| {
                let mutated = mutate(pkl.clone(), &mutations);
                let _ = run_pickle(&mutated);
                Ok(())
            })
            .unwrap();
        // whole 15 MB files: mutations near the ends, where the pickles and the zip's
        // directories are (each case materialises 15 MB of tensors, so fewer)
        config.cases = (config.cases / 8).max(4);
        let mut runner = proptest::test_runner::TestRunner::new(config);
        let near_ends = |len: usize| {
            (any::<bool>(), 0usize..65536, mutation()).prop_map(move |(tail, off, m)| {
                let at = if tail { len - 1 - off.min(len - 1) } else { off.min(len - 1) };
                match m {
                    Mutation::Flip { bit, .. } => Mutation::Flip { at, bit },
                    Mutation::Set { byte, .. } => Mutation::Set { at, byte },
                    Mutation::Truncate { .. } => Mutation::Truncate { at },
                    Mutation::Splice { from, len, .. } => Mutation::Splice { at, from, len },
                    Mutation::Insert { bytes, .. } => Mutation::Insert { at, bytes },
                }
            })
        };
        for file in [&zip_file, &legacy_file] {
            runner
                .run(&proptest::collection::vec(near_ends(file.len()), 1..4), |mutations| {
                    let _ = read_guarded(mutate(file.clone(), &mutations));
                    Ok(())
                })
                .unwrap();
        }
    }
}
