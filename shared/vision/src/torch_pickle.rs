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
    #[error("zip container: {0}")]
    Zip(#[from] zip::result::ZipError),
    #[error("libtorch: {0}")]
    Torch(#[from] tch::TchError),
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
        read_zip(std::io::Cursor::new(bytes))
    } else if bytes.first() == Some(&0x80) {
        read_legacy(bytes)
    } else if bytes.len() > 262 && &bytes[257..262] == b"ustar" {
        Err(TorchPickleError::Unsupported("the tar-based format of torch < 0.4 is not supported".into()))
    } else {
        Err(TorchPickleError::NotACheckpoint("neither a zip archive nor a pickle stream".into()))
    }
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
        return Err(TorchPickleError::Unsupported(format!("legacy protocol version {protocol:?}, expected 1001")));
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
        other => return Err(TorchPickleError::Corrupt(format!("storage key list is {other:?}"))),
    };
    let mut storages: HashMap<String, Tensor> = HashMap::new();
    for key in keys {
        let PVal::Str(key) = key else {
            return Err(TorchPickleError::Corrupt("storage key is not a string".into()));
        };
        let sref = storage_refs
            .get(&key)
            .ok_or_else(|| TorchPickleError::Corrupt(format!("storage {key} is stored but never referenced")))?;
        let count_bytes = bytes
            .get(pos..pos + 8)
            .ok_or_else(|| TorchPickleError::Corrupt(format!("file ends before storage {key}")))?;
        let count = i64::from_le_bytes(count_bytes.try_into().map_err(|_| TorchPickleError::Corrupt("short".into()))?);
        pos += 8;
        if count < 0 || count as u64 != sref.numel {
            return Err(TorchPickleError::Corrupt(format!(
                "storage {key} holds {count} elements, the pickle says {}",
                sref.numel
            )));
        }
        let len = storage_byte_len(sref)?;
        let data = bytes
            .get(pos..pos.saturating_add(len))
            .ok_or_else(|| TorchPickleError::Corrupt(format!("file ends inside storage {key}")))?;
        pos += len;
        storages.insert(key, storage_tensor(data, sref)?);
    }
    materialise(root, &storages)
}

fn read_zip<R: Read + Seek>(reader: R) -> Result<TorchValue> {
    let mut archive = zip::ZipArchive::new(reader)?;
    let pkl_name = archive
        .file_names()
        .find(|n| n.ends_with("data.pkl") && n.matches('/').count() <= 1)
        .map(str::to_owned)
        .ok_or_else(|| TorchPickleError::NotACheckpoint("zip archive without data.pkl".into()))?;
    let prefix = pkl_name.trim_end_matches("data.pkl").to_owned();
    if let Ok(mut entry) = archive.by_name(&format!("{prefix}byteorder")) {
        let mut order = String::new();
        entry.read_to_string(&mut order).map_err(|e| TorchPickleError::Corrupt(format!("byteorder: {e}")))?;
        if order.trim() != "little" {
            return Err(TorchPickleError::Unsupported(format!("byte order {:?}", order.trim())));
        }
    }
    let pkl = read_entry(&mut archive, &pkl_name)?;
    let mut unpickler = Unpickler::new(&pkl, 0);
    let (root, _) = unpickler.run_collect()?;
    let mut storages = HashMap::new();
    for (key, sref) in &unpickler.storages {
        let name = format!("{prefix}data/{key}");
        let data = read_entry(&mut archive, &name)?;
        if data.len() != storage_byte_len(sref)? {
            return Err(TorchPickleError::Corrupt(format!(
                "{name} has {} bytes, expected {} elements of {:?}",
                data.len(),
                sref.numel,
                sref.kind
            )));
        }
        storages.insert(key.clone(), storage_tensor(&data, sref)?);
    }
    materialise(root, &storages)
}

fn read_entry<R: Read + Seek>(archive: &mut zip::ZipArchive<R>, name: &str) -> Result<Vec<u8>> {
    let mut entry = archive.by_name(name).map_err(|e| match e {
        zip::result::ZipError::FileNotFound => TorchPickleError::Corrupt(format!("zip archive lacks {name}")),
        other => other.into(),
    })?;
    let mut data = Vec::with_capacity(entry.size() as usize);
    entry.read_to_end(&mut data).map_err(|e| TorchPickleError::Corrupt(format!("{name}: {e}")))?;
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
        .ok_or_else(|| TorchPickleError::Corrupt(format!("storage {} is impossibly large", sref.key)))
}

fn storage_tensor(data: &[u8], sref: &StorageRef) -> Result<Tensor> {
    Ok(Tensor::f_from_data_size(data, &[sref.numel as i64], sref.kind)?)
}

fn build_tensor(tref: &TensorRef, storages: &HashMap<String, Tensor>) -> Result<Tensor> {
    let storage = storages
        .get(&tref.storage.key)
        .ok_or_else(|| TorchPickleError::Corrupt(format!("storage {} is referenced but missing", tref.storage.key)))?;
    if tref.size.len() != tref.stride.len() || tref.size.iter().chain(&tref.stride).any(|&v| v < 0) || tref.offset < 0
    {
        return Err(TorchPickleError::Corrupt(format!(
            "bad tensor geometry: size {:?} stride {:?} offset {}",
            tref.size, tref.stride, tref.offset
        )));
    }
    let empty = tref.size.iter().any(|&s| s == 0);
    if !empty {
        let last: i128 = tref.offset as i128
            + tref.size.iter().zip(&tref.stride).map(|(&s, &st)| (s as i128 - 1) * st as i128).sum::<i128>();
        if last >= tref.storage.numel as i128 {
            return Err(TorchPickleError::Corrupt(format!(
                "tensor of size {:?} stride {:?} offset {} reaches past its storage {} of {} elements",
                tref.size, tref.stride, tref.offset, tref.storage.key, tref.storage.numel
            )));
        }
    }
    let tensor = storage.f_as_strided(&tref.size, &tref.stride, Some(tref.offset))?.f_contiguous()?;
    Ok(match tensor.kind() {
        Kind::Half | Kind::BFloat16 => tensor.f_to_kind(Kind::Float)?,
        _ => tensor,
    })
}

fn materialise(value: PVal, storages: &HashMap<String, Tensor>) -> Result<TorchValue> {
    let list = |items: Vec<PVal>| items.into_iter().map(|v| materialise(v, storages)).collect::<Result<Vec<_>>>();
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
        PVal::List(items) => TorchValue::List(list(items)?),
        PVal::Tuple(items) => TorchValue::Tuple(list(items)?),
        PVal::Dict(items) => TorchValue::Dict(
            items
                .into_iter()
                .map(|(k, v)| Ok((materialise(k, storages)?, materialise(v, storages)?)))
                .collect::<Result<_>>()?,
        ),
        PVal::Tensor(t) => TorchValue::Tensor(build_tensor(&t, storages)?),
        PVal::Global(m, n) => TorchValue::Global(format!("{m}.{n}")),
        PVal::Storage(s) => {
            return Err(TorchPickleError::Unsupported(format!("bare storage {} outside a tensor", s.key)))
        }
        PVal::Object { class, args, state } => TorchValue::Object {
            class,
            args: list(args)?,
            state: match state {
                Some(s) => Some(Box::new(materialise(*s, storages)?)),
                None => None,
            },
        },
        PVal::Mark => return Err(TorchPickleError::Corrupt("MARK left on the stack".into())),
    })
}

// ---------------------------------------------------------------------------------------
// The pickle machine

/// Values on the pickle stack (cheap to clone: tensors are only references here).
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

struct Unpickler<'a> {
    data: &'a [u8],
    pos: usize,
    stack: Vec<PVal>,
    memo: HashMap<u32, PVal>,
    /// Storages referenced by persistent ids, by key.
    storages: HashMap<String, StorageRef>,
}

impl<'a> Unpickler<'a> {
    fn new(data: &'a [u8], pos: usize) -> Self {
        Unpickler { data, pos, stack: Vec::new(), memo: HashMap::new(), storages: HashMap::new() }
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
                return Ok((value, self.pos));
            }
            self.step(op).map_err(|e| match e {
                TorchPickleError::Corrupt(m) => TorchPickleError::Corrupt(format!("{m} (opcode 0x{op:02x} at byte {at})")),
                TorchPickleError::Unsupported(m) => {
                    TorchPickleError::Unsupported(format!("{m} (opcode 0x{op:02x} at byte {at})"))
                }
                other => other,
            })?;
        }
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
            b'}' => self.stack.push(PVal::Dict(Vec::new())),
            b']' => self.stack.push(PVal::List(Vec::new())),
            b')' => self.stack.push(PVal::Tuple(Vec::new())),
            b'(' => self.stack.push(PVal::Mark),
            b'N' => self.stack.push(PVal::None),
            0x88 => self.stack.push(PVal::Bool(true)),
            0x89 => self.stack.push(PVal::Bool(false)),
            b'K' => {
                let v = self.byte()?;
                self.stack.push(PVal::Int(v as i128));
            }
            b'M' => {
                let v = u16::from_le_bytes(self.array()?);
                self.stack.push(PVal::Int(v as i128));
            }
            b'J' => {
                let v = i32::from_le_bytes(self.array()?);
                self.stack.push(PVal::Int(v as i128));
            }
            0x8a => {
                let n = self.byte()? as usize;
                let v = self.long(n)?;
                self.stack.push(PVal::Int(v));
            }
            0x8b => {
                let n = u32::from_le_bytes(self.array()?) as usize;
                let v = self.long(n)?;
                self.stack.push(PVal::Int(v));
            }
            b'G' => {
                let v = f64::from_be_bytes(self.array()?);
                self.stack.push(PVal::Float(v));
            }
            b'X' => {
                let n = u32::from_le_bytes(self.array()?) as usize;
                let s = self.utf8(n)?;
                self.stack.push(PVal::Str(s));
            }
            0x8c => {
                let n = self.byte()? as usize;
                let s = self.utf8(n)?;
                self.stack.push(PVal::Str(s));
            }
            0x8d => {
                let n = self.len64()?;
                let s = self.utf8(n)?;
                self.stack.push(PVal::Str(s));
            }
            b'B' => {
                let n = u32::from_le_bytes(self.array()?) as usize;
                let b = self.take(n)?.to_vec();
                self.stack.push(PVal::Bytes(b));
            }
            b'C' => {
                let n = self.byte()? as usize;
                let b = self.take(n)?.to_vec();
                self.stack.push(PVal::Bytes(b));
            }
            0x8e => {
                let n = self.len64()?;
                let b = self.take(n)?.to_vec();
                self.stack.push(PVal::Bytes(b));
            }
            0x85 | 0x86 | 0x87 => {
                let n = (op - 0x84) as usize;
                if self.stack.len() < n {
                    return Err(TorchPickleError::Corrupt("stack underflow building a tuple".into()));
                }
                let items = self.stack.split_off(self.stack.len() - n);
                if items.iter().any(|v| matches!(v, PVal::Mark)) {
                    return Err(TorchPickleError::Corrupt("MARK inside a short tuple".into()));
                }
                self.stack.push(PVal::Tuple(items));
            }
            b't' => {
                let items = self.pop_mark()?;
                self.stack.push(PVal::Tuple(items));
            }
            b'l' => {
                let items = self.pop_mark()?;
                self.stack.push(PVal::List(items));
            }
            b'd' => {
                let items = self.pop_mark()?;
                let pairs = pairs(items)?;
                self.stack.push(PVal::Dict(pairs));
            }
            b'a' => {
                let v = self.pop()?;
                match self.top()? {
                    PVal::List(l) => l.push(v),
                    other => return Err(TorchPickleError::Corrupt(format!("APPEND to {}", short(other)))),
                }
            }
            b'e' => {
                let items = self.pop_mark()?;
                match self.top()? {
                    PVal::List(l) => l.extend(items),
                    other => return Err(TorchPickleError::Corrupt(format!("APPENDS to {}", short(other)))),
                }
            }
            b's' => {
                let v = self.pop()?;
                let k = self.pop()?;
                match self.top()? {
                    PVal::Dict(d) => d.push((k, v)),
                    other => return Err(TorchPickleError::Corrupt(format!("SETITEM on {}", short(other)))),
                }
            }
            b'u' => {
                let items = self.pop_mark()?;
                let new = pairs(items)?;
                match self.top()? {
                    PVal::Dict(d) => d.extend(new),
                    other => return Err(TorchPickleError::Corrupt(format!("SETITEMS on {}", short(other)))),
                }
            }
            0x8f => self.stack.push(PVal::List(Vec::new())), // EMPTY_SET, kept as a list
            0x90 => {
                let items = self.pop_mark()?;
                match self.top()? {
                    PVal::List(l) => l.extend(items),
                    other => return Err(TorchPickleError::Corrupt(format!("ADDITEMS to {}", short(other)))),
                }
            }
            0x91 => {
                let items = self.pop_mark()?;
                self.stack.push(PVal::List(items));
            }
            b'c' => {
                let module = self.line()?;
                let name = self.line()?;
                self.stack.push(PVal::Global(module, name));
            }
            0x93 => {
                let name = self.pop()?;
                let module = self.pop()?;
                match (module, name) {
                    (PVal::Str(m), PVal::Str(n)) => self.stack.push(PVal::Global(m, n)),
                    _ => return Err(TorchPickleError::Corrupt("STACK_GLOBAL without two strings".into())),
                }
            }
            b'R' => {
                let args = self.pop()?;
                let callable = self.pop()?;
                let args = match args {
                    PVal::Tuple(a) => a,
                    other => return Err(TorchPickleError::Corrupt(format!("REDUCE arguments are {}", short(&other)))),
                };
                let value = self.reduce(callable, args)?;
                self.stack.push(value);
            }
            0x81 => {
                let args = self.pop()?;
                let class = self.pop()?;
                let args = match args {
                    PVal::Tuple(a) => a,
                    other => return Err(TorchPickleError::Corrupt(format!("NEWOBJ arguments are {}", short(&other)))),
                };
                let value = self.reduce(class, args)?;
                self.stack.push(value);
            }
            b'b' => {
                let state = self.pop()?;
                match self.top()? {
                    PVal::Object { state: slot, .. } => *slot = Some(Box::new(state)),
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
                let i = self.memo.len() as u32;
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
                let storage = self.persistent_load(pid)?;
                self.stack.push(storage);
            }
            b'0' => {
                self.pop()?;
            }
            b'1' => {
                self.pop_mark()?;
            }
            b'2' => {
                let v = self.top()?.clone();
                self.stack.push(v);
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
        let PVal::Global(module, name) = callable else {
            return Err(TorchPickleError::Unsupported(format!("call of a non-global {}", short(&callable))));
        };
        match (module.as_str(), name.as_str()) {
            ("torch._utils", "_rebuild_tensor_v2") | ("torch._utils", "_rebuild_tensor") => {
                let mut it = args.into_iter();
                let storage = match it.next() {
                    Some(PVal::Storage(s)) => s,
                    other => {
                        return Err(TorchPickleError::Corrupt(format!("tensor without a storage: {other:?}")))
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
                    other => Err(TorchPickleError::Corrupt(format!("parameter without a tensor: {other:?}"))),
                }
            }
            // Tensor subclasses: (func, type, args, state); rebuild with func(args)
            ("torch._tensor", "_rebuild_from_type_v2") | ("torch._tensor", "_rebuild_from_type") => {
                let mut it = args.into_iter();
                let func = it.next().unwrap_or(PVal::None);
                let _subclass = it.next();
                match it.next() {
                    Some(PVal::Tuple(inner)) => self.reduce(func, inner),
                    other => Err(TorchPickleError::Corrupt(format!("_rebuild_from_type arguments {other:?}"))),
                }
            }
            ("collections", "OrderedDict") | ("builtins", "dict") | ("__builtin__", "dict") => match args.first() {
                None => Ok(PVal::Dict(Vec::new())),
                Some(PVal::List(items)) | Some(PVal::Tuple(items)) => Ok(PVal::Dict(
                    items
                        .iter()
                        .map(|pair| match pair {
                            PVal::Tuple(kv) | PVal::List(kv) if kv.len() == 2 => Ok((kv[0].clone(), kv[1].clone())),
                            _ => Err(TorchPickleError::Corrupt("OrderedDict item is not a pair".into())),
                        })
                        .collect::<Result<_>>()?,
                )),
                Some(other) => Err(TorchPickleError::Unsupported(format!("OrderedDict({})", short(other)))),
            },
            ("torch", n) if n.ends_with("Storage") => {
                Err(TorchPickleError::Unsupported(format!("storage torch.{n} built by value, not by reference")))
            }
            _ => Ok(PVal::Object { class: format!("{module}.{name}"), args, state: None }),
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
            _ => Err(TorchPickleError::Unsupported(format!("persistent id {items:?}"))),
        }
    }

    fn memoize(&mut self, index: u32) -> Result<()> {
        let v = self.top()?.clone();
        self.memo.insert(index, v);
        Ok(())
    }

    fn memo_get(&mut self, index: u32) -> Result<()> {
        let v = self
            .memo
            .get(&index)
            .cloned()
            .ok_or_else(|| TorchPickleError::Corrupt(format!("memo entry {index} read before it was written")))?;
        self.stack.push(v);
        Ok(())
    }

    fn pop(&mut self) -> Result<PVal> {
        match self.stack.pop() {
            Some(PVal::Mark) => Err(TorchPickleError::Corrupt("unexpected MARK".into())),
            Some(v) => Ok(v),
            None => Err(TorchPickleError::Corrupt("stack underflow".into())),
        }
    }

    fn top(&mut self) -> Result<&mut PVal> {
        self.stack.last_mut().ok_or_else(|| TorchPickleError::Corrupt("stack underflow".into()))
    }

    fn pop_mark(&mut self) -> Result<Vec<PVal>> {
        let mark = self
            .stack
            .iter()
            .rposition(|v| matches!(v, PVal::Mark))
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

fn pairs(items: Vec<PVal>) -> Result<Vec<(PVal, PVal)>> {
    if items.len() % 2 != 0 {
        return Err(TorchPickleError::Corrupt("odd number of items for a dict".into()));
    }
    let mut out = Vec::with_capacity(items.len() / 2);
    let mut it = items.into_iter();
    while let (Some(k), Some(v)) = (it.next(), it.next()) {
        out.push((k, v));
    }
    Ok(out)
}

fn int_arg(v: Option<PVal>, what: &str) -> Result<i64> {
    match v {
        Some(PVal::Int(i)) => i64::try_from(i).map_err(|_| TorchPickleError::Corrupt(format!("{what} {i} too large"))),
        other => Err(TorchPickleError::Corrupt(format!("{what} is {other:?}, not an int"))),
    }
}

fn int_tuple(v: Option<PVal>, what: &str) -> Result<Vec<i64>> {
    match v {
        Some(PVal::Tuple(items)) => items.into_iter().map(|i| int_arg(Some(i), what)).collect(),
        other => Err(TorchPickleError::Corrupt(format!("{what} is {other:?}, not a tuple"))),
    }
}

fn short(v: &PVal) -> String {
    let s = format!("{v:?}");
    if s.len() > 80 {
        format!("{}...", &s[..s.char_indices().take_while(|(i, _)| *i < 80).last().map_or(0, |(i, _)| i)])
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hand-assembled protocol-2 pickle of `{'w': tensor}` as torch.save writes it.
    fn tensor_pickle(storage_kind: &str, size: &[u8], stride: &[u8], offset: u8, numel: u8) -> Vec<u8> {
        let mut p = vec![0x80, 2, b'}', b'(', b'X', 1, 0, 0, 0, b'w'];
        p.extend_from_slice(b"ctorch._utils\n_rebuild_tensor_v2\n(");
        p.extend_from_slice(b"(X\x07\x00\x00\x00storage");
        p.extend_from_slice(format!("ctorch\n{storage_kind}\n").as_bytes());
        p.extend_from_slice(b"X\x01\x00\x00\x000X\x03\x00\x00\x00cpu");
        p.extend_from_slice(&[b'K', numel, b't', b'Q', b'K', offset, b'(']);
        for &s in size {
            p.extend_from_slice(&[b'K', s]);
        }
        p.extend_from_slice(b"t(");
        for &s in stride {
            p.extend_from_slice(&[b'K', s]);
        }
        // requires_grad False, hooks OrderedDict(), close the arguments, REDUCE, SETITEMS, STOP
        p.extend_from_slice(b"t\x89ccollections\nOrderedDict\n)RtRu.");
        p
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
}
