//! A reader for MATLAB Level 5 MAT-files (what `save` writes with `-v6`/`-v7`, and
//! `scipy.io.savemat`): enough for Pascal3D+'s annotation records and similar data.
//!
//! Supported: little-endian files; top-level `miMATRIX` and `miCOMPRESSED` (zlib)
//! elements; numeric arrays of every class (values widened to `f64`; complex keeps an
//! imaginary part; logical arrays are numeric with a flag), char arrays (UTF-16 code
//! units, UTF-8/16/32 or 8-bit data), cell arrays, struct arrays and objects (read as
//! structs with a class name), nested to any depth up to [`MAX_DEPTH`]. The 8-byte
//! "small data element" tag form is handled wherever it may appear.
//!
//! Not supported, each a clear [`MatError`]: v7.3 files (HDF5), Level 4 files,
//! big-endian files, sparse arrays, function handles and opaque (MCOS) objects.
//!
//! Layout reminder (MathWorks' "MAT-File Format", Level 5): a 128-byte header (text,
//! subsystem offset, version 0x0100, endian mark "IM" when little-endian), then data
//! elements, each an 8-byte tag (type, byte count) plus data padded to 8 bytes. An
//! `miMATRIX` holds sub-elements: array flags (class in the low byte), dimensions,
//! name, then the class's data; a struct adds the field-name length and the names, then
//! one `miMATRIX` per element and field (elements in column-major order).

use std::io::Read;
use std::path::{Path, PathBuf};

/// Nesting limit for cells and structs: real files stay far below it, corrupt or
/// hostile ones do not overflow the stack.
pub const MAX_DEPTH: usize = 64;
/// Largest decompressed size of one `miCOMPRESSED` element (a guard against bombs).
pub const MAX_INFLATED: u64 = 1 << 30;

const MI_INT8: u32 = 1;
const MI_UINT8: u32 = 2;
const MI_INT16: u32 = 3;
const MI_UINT16: u32 = 4;
const MI_INT32: u32 = 5;
const MI_UINT32: u32 = 6;
const MI_SINGLE: u32 = 7;
const MI_DOUBLE: u32 = 9;
const MI_INT64: u32 = 12;
const MI_UINT64: u32 = 13;
const MI_MATRIX: u32 = 14;
const MI_COMPRESSED: u32 = 15;
const MI_UTF8: u32 = 16;
const MI_UTF16: u32 = 17;
const MI_UTF32: u32 = 18;

const FLAG_COMPLEX: u32 = 0x0800;
const FLAG_LOGICAL: u32 = 0x0200;

#[derive(Debug, thiserror::Error)]
pub enum MatError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("not a MAT-file: {0}")]
    NotMat(String),
    #[error("unsupported MAT-file: {0}")]
    Unsupported(String),
    #[error("truncated at byte {offset}{context}: {what} needs {needed} bytes, {available} left")]
    Truncated { offset: usize, context: String, what: &'static str, needed: usize, available: usize },
    #[error("corrupt at byte {offset}{context}: {message}")]
    Corrupt { offset: usize, context: String, message: String },
    #[error("compressed element at byte {offset}: {message}")]
    Decompress { offset: usize, message: String },
}

/// MATLAB array classes (`mxCLASS_ID`) of numeric arrays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NumericClass {
    Double,
    Single,
    Int8,
    Uint8,
    Int16,
    Uint16,
    Int32,
    Uint32,
    Int64,
    Uint64,
}

impl NumericClass {
    fn from_class_id(id: u32) -> Option<NumericClass> {
        Some(match id {
            6 => NumericClass::Double,
            7 => NumericClass::Single,
            8 => NumericClass::Int8,
            9 => NumericClass::Uint8,
            10 => NumericClass::Int16,
            11 => NumericClass::Uint16,
            12 => NumericClass::Int32,
            13 => NumericClass::Uint32,
            14 => NumericClass::Int64,
            15 => NumericClass::Uint64,
            _ => return None,
        })
    }
}

/// A numeric (or logical) array. Values are widened to `f64`, so 64-bit integers
/// above 2^53 lose precision (annotation data never comes close).
#[derive(Debug, Clone, PartialEq)]
pub struct Numeric {
    pub class: NumericClass,
    pub logical: bool,
    /// Column-major, `dims.iter().product()` values.
    pub real: Vec<f64>,
    pub imag: Option<Vec<f64>>,
}

/// A struct array: `elements[i][f]` is field `fields[f]` of element `i` (column-major).
#[derive(Debug, Clone, PartialEq)]
pub struct Struct {
    /// Set for MATLAB objects (`mxOBJECT_CLASS`), read like structs.
    pub class_name: Option<String>,
    pub fields: Vec<String>,
    pub elements: Vec<Vec<Value>>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Data {
    Numeric(Numeric),
    /// Characters in column-major order (a 1xN row is the string itself).
    Char(Vec<char>),
    Cell(Vec<Value>),
    Struct(Struct),
}

/// One MATLAB array: its dimensions and data.
#[derive(Debug, Clone, PartialEq)]
pub struct Value {
    pub dims: Vec<usize>,
    pub data: Data,
}

impl Value {
    /// Number of elements (the product of the dimensions).
    pub fn len(&self) -> usize {
        self.dims.iter().product()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Field `name` of a 1x1 struct (None for other values, or a missing field).
    pub fn field(&self, name: &str) -> Option<&Value> {
        self.field_of(0, name).filter(|_| self.len() == 1)
    }

    /// Field `name` of element `index` of a struct array.
    pub fn field_of(&self, index: usize, name: &str) -> Option<&Value> {
        match &self.data {
            Data::Struct(s) => {
                let f = s.fields.iter().position(|n| n == name)?;
                s.elements.get(index).and_then(|e| e.get(f))
            }
            _ => None,
        }
    }

    pub fn as_struct(&self) -> Option<&Struct> {
        match &self.data {
            Data::Struct(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_cell(&self) -> Option<&[Value]> {
        match &self.data {
            Data::Cell(items) => Some(items),
            _ => None,
        }
    }

    pub fn as_numeric(&self) -> Option<&Numeric> {
        match &self.data {
            Data::Numeric(n) => Some(n),
            _ => None,
        }
    }

    /// The real values of a numeric array (None for other classes).
    pub fn as_f64s(&self) -> Option<&[f64]> {
        self.as_numeric().map(|n| n.real.as_slice())
    }

    /// The value of a numeric array with exactly one element.
    pub fn as_scalar(&self) -> Option<f64> {
        match self.as_f64s() {
            Some([v]) => Some(*v),
            _ => None,
        }
    }

    /// A char array with at most one row, as a string.
    pub fn as_string(&self) -> Option<String> {
        match &self.data {
            Data::Char(chars) if self.dims.len() == 2 && (self.dims[0] <= 1 || self.dims[1] <= 1) => {
                Some(chars.iter().collect())
            }
            _ => None,
        }
    }

    /// The rows of a 2-D char array (MATLAB pads them with spaces; kept as stored).
    pub fn char_rows(&self) -> Option<Vec<String>> {
        match &self.data {
            Data::Char(chars) if self.dims.len() == 2 => {
                let (rows, cols) = (self.dims[0], self.dims[1]);
                Some((0..rows).map(|r| (0..cols).map(|c| chars[c * rows + r]).collect()).collect())
            }
            _ => None,
        }
    }
}

/// The named variables of a MAT-file, in file order.
#[derive(Debug, Clone, PartialEq)]
pub struct MatFile {
    /// The header's descriptive text (trailing spaces removed).
    pub header: String,
    pub variables: Vec<(String, Value)>,
}

impl MatFile {
    pub fn open(path: impl AsRef<Path>) -> Result<MatFile, MatError> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|source| MatError::Io { path: path.to_path_buf(), source })?;
        MatFile::parse(&bytes)
    }

    pub fn get(&self, name: &str) -> Option<&Value> {
        self.variables.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }

    pub fn parse(bytes: &[u8]) -> Result<MatFile, MatError> {
        if bytes.len() < 128 {
            if bytes.starts_with(b"MATLAB") {
                return Err(MatError::Truncated {
                    offset: 0,
                    context: String::new(),
                    what: "the 128-byte header",
                    needed: 128,
                    available: bytes.len(),
                });
            }
            return Err(MatError::NotMat(format!("{} bytes, shorter than a MAT-file header", bytes.len())));
        }
        if bytes.starts_with(b"\x89HDF") || bytes[..116].windows(10).any(|w| w == b"MATLAB 7.3") {
            return Err(MatError::Unsupported("MATLAB v7.3 (HDF5) file; save it with -v7 or read it with an HDF5 library".into()));
        }
        if bytes[..4].contains(&0) {
            return Err(MatError::NotMat("no Level 5 header text (a Level 4 file or not a MAT-file)".into()));
        }
        match &bytes[126..128] {
            b"IM" => {}
            b"MI" => return Err(MatError::Unsupported("big-endian MAT-file".into())),
            other => return Err(MatError::NotMat(format!("endian mark {other:?} is neither IM nor MI"))),
        }
        let version = u16::from_le_bytes([bytes[124], bytes[125]]);
        if version != 0x0100 {
            return Err(MatError::Unsupported(format!("version 0x{version:04x} (expected 0x0100, Level 5)")));
        }
        let header = String::from_utf8_lossy(&bytes[..116]).trim_end_matches([' ', '\0']).to_string();
        let mut cur = Cursor { bytes, pos: 128, base: 0, context: String::new() };
        let mut variables = Vec::new();
        while cur.remaining() > 0 {
            let start = cur.pos;
            let tag = cur.tag()?;
            match tag.kind {
                MI_COMPRESSED if !tag.small => {
                    let raw = cur.take(tag.len, "compressed data")?;
                    let inflated = inflate(raw, start)?;
                    let mut inner = Cursor { bytes: &inflated, pos: 0, base: 0, context: format!(" (inside the compressed element at byte {start})") };
                    let itag = inner.tag()?;
                    if itag.kind != MI_MATRIX || itag.small {
                        // MATLAB compresses only arrays; anything else is skipped like below.
                        continue;
                    }
                    let body = inner.take(itag.len, "an array")?;
                    let mut sub = inner.sub(body, inner.pos - itag.len);
                    variables.push(sub.matrix_body(0)?);
                    // Compressed elements are not padded (MATLAB and scipy both write them so).
                }
                MI_MATRIX if !tag.small => {
                    let body = cur.take(tag.len, "an array")?;
                    let mut sub = cur.sub(body, cur.pos - tag.len);
                    variables.push(sub.matrix_body(0)?);
                    cur.align_after(tag.len);
                }
                _ => {
                    // Other top-level elements carry no variable (e.g. subsystem data).
                    cur.data(&tag, "an element")?;
                }
            }
        }
        Ok(MatFile { header, variables })
    }
}

fn inflate(raw: &[u8], offset: usize) -> Result<Vec<u8>, MatError> {
    let mut out = Vec::new();
    let mut decoder = flate2::read::ZlibDecoder::new(raw).take(MAX_INFLATED + 1);
    decoder.read_to_end(&mut out).map_err(|e| MatError::Decompress { offset, message: e.to_string() })?;
    if out.len() as u64 > MAX_INFLATED {
        return Err(MatError::Decompress { offset, message: format!("inflates to more than {MAX_INFLATED} bytes") });
    }
    Ok(out)
}

struct Tag {
    kind: u32,
    len: usize,
    /// The small form: the data (at most 4 bytes) sits in the tag's second word.
    small: bool,
}

/// A position in a byte buffer; `base` maps it to the offset reported in errors.
struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
    base: usize,
    context: String,
}

impl<'a> Cursor<'a> {
    fn remaining(&self) -> usize {
        self.bytes.len() - self.pos
    }

    fn offset(&self) -> usize {
        self.base + self.pos
    }

    fn sub(&self, bytes: &'a [u8], start: usize) -> Cursor<'a> {
        Cursor { bytes, pos: 0, base: self.base + start, context: self.context.clone() }
    }

    fn corrupt(&self, message: impl Into<String>) -> MatError {
        MatError::Corrupt { offset: self.offset(), context: self.context.clone(), message: message.into() }
    }

    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], MatError> {
        if n > self.remaining() {
            return Err(MatError::Truncated {
                offset: self.offset(),
                context: self.context.clone(),
                what,
                needed: n,
                available: self.remaining(),
            });
        }
        let s = &self.bytes[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    /// Skips the padding after an element of `len` data bytes (to 8 bytes; tolerant of
    /// a missing pad at the very end of a buffer).
    fn align_after(&mut self, len: usize) {
        let pad = (8 - len % 8) % 8;
        self.pos = (self.pos + pad).min(self.bytes.len());
    }

    fn u32(&mut self) -> Result<u32, MatError> {
        let b = self.take(4, "a tag")?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// A tag. The small form is marked by a non-zero upper half of the first word;
    /// the cursor is then left at its data word, which `element` reads.
    fn tag(&mut self) -> Result<Tag, MatError> {
        let first = self.u32()?;
        if first >> 16 != 0 {
            let len = (first >> 16) as usize;
            if len > 4 {
                self.pos -= 4;
                return Err(self.corrupt(format!("small data element claims {len} bytes (at most 4)")));
            }
            return Ok(Tag { kind: first & 0xffff, len, small: true });
        }
        let len = self.u32()? as usize;
        Ok(Tag { kind: first, len, small: false })
    }

    /// The data of an element whose tag was just read, with padding skipped.
    fn data(&mut self, tag: &Tag, what: &'static str) -> Result<&'a [u8], MatError> {
        if tag.small {
            let word = self.take(4, what)?;
            return Ok(&word[..tag.len]);
        }
        let data = self.take(tag.len, what)?;
        self.align_after(tag.len);
        Ok(data)
    }

    /// One data element: its type and data bytes.
    fn element(&mut self, what: &'static str) -> Result<(u32, &'a [u8]), MatError> {
        let tag = self.tag()?;
        let data = self.data(&tag, what)?;
        Ok((tag.kind, data))
    }

    /// The sub-elements of one `miMATRIX` (the cursor spans exactly its data).
    fn matrix_body(&mut self, depth: usize) -> Result<(String, Value), MatError> {
        if depth > MAX_DEPTH {
            return Err(self.corrupt(format!("arrays nested deeper than {MAX_DEPTH}")));
        }
        if self.remaining() == 0 {
            // An empty miMATRIX: MATLAB writes these for empty cells and fields ([]).
            return Ok((String::new(), empty_double()));
        }
        let (kind, flags) = self.element("array flags")?;
        if kind != MI_UINT32 || flags.len() != 8 {
            return Err(self.corrupt(format!("array flags must be 8 bytes of miUINT32, found type {kind} with {} bytes", flags.len())));
        }
        let word = u32::from_le_bytes([flags[0], flags[1], flags[2], flags[3]]);
        let class_id = word & 0xff;
        let (kind, dim_bytes) = self.element("dimensions")?;
        if kind != MI_INT32 || dim_bytes.len() % 4 != 0 || dim_bytes.len() < 8 {
            return Err(self.corrupt(format!("dimensions must be at least 2 miINT32 values, found type {kind} with {} bytes", dim_bytes.len())));
        }
        let mut dims = Vec::with_capacity(dim_bytes.len() / 4);
        for c in dim_bytes.chunks_exact(4) {
            let d = i32::from_le_bytes([c[0], c[1], c[2], c[3]]);
            if d < 0 {
                return Err(self.corrupt(format!("negative dimension {d}")));
            }
            dims.push(d as usize);
        }
        let count = dims.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d)).ok_or_else(|| self.corrupt(format!("dimensions {dims:?} overflow")))?;
        let (kind, name_bytes) = self.element("array name")?;
        if kind != MI_INT8 && kind != MI_UINT8 {
            return Err(self.corrupt(format!("array name must be miINT8, found type {kind}")));
        }
        let name = String::from_utf8_lossy(name_bytes).trim_end_matches('\0').to_string();
        let data = match class_id {
            1 => {
                self.check_count(count, "cell")?;
                let mut items = Vec::with_capacity(count);
                for _ in 0..count {
                    items.push(self.nested(depth)?);
                }
                Data::Cell(items)
            }
            2 | 3 => Data::Struct(self.struct_body(class_id == 3, count, depth)?),
            4 => Data::Char(self.chars(count)?),
            5 => return Err(MatError::Unsupported(format!("variable {name:?} is a sparse array"))),
            16 => return Err(MatError::Unsupported(format!("variable {name:?} is a function handle"))),
            17 => return Err(MatError::Unsupported(format!("variable {name:?} is an opaque (MCOS) object, e.g. a string or table"))),
            id => {
                let class = NumericClass::from_class_id(id).ok_or_else(|| self.corrupt(format!("unknown array class {id}")))?;
                let real = self.numbers(count, "real part")?;
                let imag = if word & FLAG_COMPLEX != 0 { Some(self.numbers(count, "imaginary part")?) } else { None };
                Data::Numeric(Numeric { class, logical: word & FLAG_LOGICAL != 0, real, imag })
            }
        };
        Ok((name, Value { dims, data }))
    }

    /// Guards allocations: every nested element needs at least an 8-byte tag.
    fn check_count(&self, count: usize, what: &str) -> Result<(), MatError> {
        if count.saturating_mul(8) > self.remaining() {
            return Err(self.corrupt(format!("{what} array of {count} elements cannot fit in the {} bytes left", self.remaining())));
        }
        Ok(())
    }

    /// One nested `miMATRIX` (a cell item or struct field).
    fn nested(&mut self, depth: usize) -> Result<Value, MatError> {
        let tag = self.tag()?;
        if tag.small || tag.kind != MI_MATRIX {
            return Err(self.corrupt(format!("expected a nested miMATRIX, found type {}", tag.kind)));
        }
        let start = self.pos;
        let body = self.take(tag.len, "a nested array")?;
        let mut sub = self.sub(body, start);
        let (_, value) = sub.matrix_body(depth + 1)?;
        self.align_after(tag.len);
        Ok(value)
    }

    fn struct_body(&mut self, object: bool, count: usize, depth: usize) -> Result<Struct, MatError> {
        let class_name = if object {
            let (_, b) = self.element("object class name")?;
            Some(String::from_utf8_lossy(b).trim_end_matches('\0').to_string())
        } else {
            None
        };
        let (kind, len_bytes) = self.element("field name length")?;
        if kind != MI_INT32 || len_bytes.len() != 4 {
            return Err(self.corrupt("field name length must be one miINT32"));
        }
        let name_len = i32::from_le_bytes([len_bytes[0], len_bytes[1], len_bytes[2], len_bytes[3]]);
        if name_len <= 0 {
            return Err(self.corrupt(format!("field name length {name_len}")));
        }
        let (_, names) = self.element("field names")?;
        let name_len = name_len as usize;
        if names.len() % name_len != 0 {
            return Err(self.corrupt(format!("{} bytes of field names is not a multiple of the name length {name_len}", names.len())));
        }
        let fields: Vec<String> = names
            .chunks(name_len)
            .map(|c| {
                let end = c.iter().position(|&b| b == 0).unwrap_or(c.len());
                String::from_utf8_lossy(&c[..end]).into_owned()
            })
            .collect();
        let total = count.checked_mul(fields.len()).ok_or_else(|| self.corrupt("struct size overflows"))?;
        self.check_count(total, "struct")?;
        let mut elements = Vec::with_capacity(count);
        for _ in 0..count {
            let mut values = Vec::with_capacity(fields.len());
            for _ in 0..fields.len() {
                values.push(self.nested(depth)?);
            }
            elements.push(values);
        }
        Ok(Struct { class_name, fields, elements })
    }

    fn chars(&mut self, count: usize) -> Result<Vec<char>, MatError> {
        if self.remaining() == 0 && count == 0 {
            return Ok(Vec::new());
        }
        let (kind, b) = self.element("char data")?;
        let chars: Vec<char> = match kind {
            MI_UTF8 => String::from_utf8_lossy(b).chars().collect(),
            // MATLAB chars are UTF-16 code units; a lone surrogate becomes U+FFFD.
            MI_UINT16 | MI_UTF16 | MI_INT16 => {
                check_multiple(self, b.len(), 2, "char data")?;
                let units: Vec<u16> = b.chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]])).collect();
                if units.len() != count {
                    return Err(self.corrupt(format!("char array of {count} elements has {} code units", units.len())));
                }
                units.iter().map(|&u| char::from_u32(u as u32).unwrap_or('\u{fffd}')).collect()
            }
            MI_UTF32 | MI_UINT32 | MI_INT32 => {
                check_multiple(self, b.len(), 4, "char data")?;
                b.chunks_exact(4).map(|c| char::from_u32(u32::from_le_bytes([c[0], c[1], c[2], c[3]])).unwrap_or('\u{fffd}')).collect()
            }
            MI_UINT8 | MI_INT8 => b.iter().map(|&x| x as char).collect(),
            other => return Err(self.corrupt(format!("char data of type {other}"))),
        };
        if chars.len() != count {
            return Err(self.corrupt(format!("char array of {count} elements has {} characters", chars.len())));
        }
        Ok(chars)
    }

    fn numbers(&mut self, count: usize, what: &'static str) -> Result<Vec<f64>, MatError> {
        if count == 0 && self.remaining() == 0 {
            return Ok(Vec::new());
        }
        let (kind, b) = self.element(what)?;
        let size = match kind {
            MI_INT8 | MI_UINT8 => 1,
            MI_INT16 | MI_UINT16 => 2,
            MI_INT32 | MI_UINT32 | MI_SINGLE => 4,
            MI_DOUBLE | MI_INT64 | MI_UINT64 => 8,
            other => return Err(self.corrupt(format!("{what} of type {other} is not numeric"))),
        };
        check_multiple(self, b.len(), size, what)?;
        if b.len() / size != count {
            return Err(self.corrupt(format!("{what}: {count} elements expected, {} stored", b.len() / size)));
        }
        // MATLAB stores values in the smallest type that holds them (a double array of
        // small integers as miUINT8), so the stored type need not match the class.
        let values = b
            .chunks_exact(size)
            .map(|c| match kind {
                MI_INT8 => c[0] as i8 as f64,
                MI_UINT8 => c[0] as f64,
                MI_INT16 => i16::from_le_bytes([c[0], c[1]]) as f64,
                MI_UINT16 => u16::from_le_bytes([c[0], c[1]]) as f64,
                MI_INT32 => i32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f64,
                MI_UINT32 => u32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f64,
                MI_SINGLE => f32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f64,
                MI_INT64 => i64::from_le_bytes(c.try_into().unwrap_or([0; 8])) as f64,
                MI_UINT64 => u64::from_le_bytes(c.try_into().unwrap_or([0; 8])) as f64,
                _ => f64::from_le_bytes(c.try_into().unwrap_or([0; 8])),
            })
            .collect();
        Ok(values)
    }
}

fn check_multiple(cur: &Cursor, len: usize, size: usize, what: &str) -> Result<(), MatError> {
    if !len.is_multiple_of(size) {
        return Err(cur.corrupt(format!("{what}: {len} bytes is not a multiple of {size}")));
    }
    Ok(())
}

fn empty_double() -> Value {
    Value { dims: vec![0, 0], data: Data::Numeric(Numeric { class: NumericClass::Double, logical: false, real: Vec::new(), imag: None }) }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A hand-built little-endian file: header + the given raw elements.
    fn file(elements: &[u8]) -> Vec<u8> {
        let mut b = vec![b' '; 128];
        b[..18].copy_from_slice(b"MATLAB 5.0 MAT-fil");
        b[116..124].fill(0);
        b[124..126].copy_from_slice(&0x0100u16.to_le_bytes());
        b[126..128].copy_from_slice(b"IM");
        b.extend_from_slice(elements);
        b
    }

    fn el(kind: u32, data: &[u8]) -> Vec<u8> {
        let mut b = kind.to_le_bytes().to_vec();
        b.extend((data.len() as u32).to_le_bytes());
        b.extend(data);
        while !b.len().is_multiple_of(8) {
            b.push(0);
        }
        b
    }

    fn small(kind: u32, data: &[u8]) -> Vec<u8> {
        let mut b = ((data.len() as u32) << 16 | kind).to_le_bytes().to_vec();
        let mut word = [0u8; 4];
        word[..data.len()].copy_from_slice(data);
        b.extend(word);
        b
    }

    fn matrix(class: u32, dims: &[i32], name: &str, rest: &[u8]) -> Vec<u8> {
        let mut body = el(MI_UINT32, &[class.to_le_bytes(), 0u32.to_le_bytes()].concat());
        body.extend(el(MI_INT32, &dims.iter().flat_map(|d| d.to_le_bytes()).collect::<Vec<u8>>()));
        body.extend(if name.len() <= 4 { small(MI_INT8, name.as_bytes()) } else { el(MI_INT8, name.as_bytes()) });
        body.extend(rest);
        el(MI_MATRIX, &body)
    }

    #[test]
    fn doubles_stored_as_small_integer_types_are_widened() {
        // MATLAB's habit: a 1x3 double [1 2 300] stored as miUINT16.
        let data = el(MI_UINT16, &[1u16, 2, 300].iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>());
        let f = MatFile::parse(&file(&matrix(6, &[1, 3], "x", &data))).unwrap();
        let x = f.get("x").unwrap();
        assert_eq!(x.dims, vec![1, 3]);
        assert_eq!(x.as_f64s().unwrap(), &[1.0, 2.0, 300.0]);
        assert_eq!(x.as_numeric().unwrap().class, NumericClass::Double);
        // A small-element real part (one uint8 inside the tag).
        let f = MatFile::parse(&file(&matrix(6, &[1, 1], "y", &small(MI_UINT8, &[7])))).unwrap();
        assert_eq!(f.get("y").unwrap().as_scalar(), Some(7.0));
    }

    #[test]
    fn malformed_files_fail_with_their_reason() {
        assert!(matches!(MatFile::parse(b"hello"), Err(MatError::NotMat(_))));
        let mut big = file(&[]);
        big[126..128].copy_from_slice(b"MI");
        assert!(matches!(MatFile::parse(&big), Err(MatError::Unsupported(m)) if m.contains("big-endian")));
        let mut v73 = file(&[]);
        v73[..19].copy_from_slice(b"MATLAB 7.3 MAT-file");
        v73[124..126].copy_from_slice(&0x0200u16.to_le_bytes());
        assert!(matches!(MatFile::parse(&v73), Err(MatError::Unsupported(m)) if m.contains("HDF5")));
        // Sparse: named as unsupported, not misread.
        let sparse = matrix(5, &[2, 2], "sp", &el(MI_INT32, &[0; 8]));
        assert!(matches!(MatFile::parse(&file(&sparse)), Err(MatError::Unsupported(m)) if m.contains("sparse")));
        // Element count disagreeing with the dimensions.
        let short = matrix(6, &[1, 4], "x", &el(MI_DOUBLE, &1.0f64.to_le_bytes()));
        assert!(matches!(MatFile::parse(&file(&short)), Err(MatError::Corrupt { message, .. }) if message.contains("4 elements")));
        // A cell claiming a billion items cannot allocate them.
        let huge = matrix(1, &[1, 1_000_000_000], "c", &[]);
        assert!(matches!(MatFile::parse(&file(&huge)), Err(MatError::Corrupt { .. })));
        // Garbage inside a compressed element.
        let mut bad = file(&el(MI_COMPRESSED, b"not zlib at all"));
        assert!(matches!(MatFile::parse(&bad), Err(MatError::Decompress { offset: 128, .. })));
        // Cut inside a tag.
        bad.truncate(131);
        assert!(matches!(MatFile::parse(&bad), Err(MatError::Truncated { .. })));
    }

    #[test]
    fn zero_length_nested_arrays_read_as_empty() {
        // MATLAB writes an empty cell item or field ([]) as an miMATRIX with no data.
        let double = matrix(6, &[1, 1], "", &el(MI_DOUBLE, &2.5f64.to_le_bytes()));
        let cell = matrix(1, &[1, 2], "c", &[el(MI_MATRIX, &[]), double].concat());
        let f = MatFile::parse(&file(&cell)).unwrap();
        let items = f.get("c").unwrap().as_cell().unwrap();
        assert!(items[0].is_empty() && items[0].as_numeric().is_some());
        assert_eq!(items[1].as_scalar(), Some(2.5));
    }

    #[test]
    fn nesting_is_bounded() {
        let mut inner = matrix(6, &[0, 0], "", &[]);
        for _ in 0..(MAX_DEPTH + 2) {
            inner = matrix(1, &[1, 1], "", &inner);
        }
        let deep = file(&inner);
        assert!(matches!(MatFile::parse(&deep), Err(MatError::Corrupt { message, .. }) if message.contains("nested")));
    }
}
