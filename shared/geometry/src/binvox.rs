//! binvox read and write, exactly as `../shared/reference/pix2vox/README.md` specifies.
//!
//! Layout: an ASCII header of five lines, `#binvox 1`, `dim D H W`, `translate tx ty tz`,
//! `scale s`, `data`, followed by `(value, count)` byte pairs with `value` 0 or 1 and
//! `count` in 1..=255. File order is x slowest, then z, then y fastest
//! (`index = x * W * H + z * W + y`), so the file's `dim D H W` maps to our `[x][y][z]`
//! grid dims `[D, W, H]` (the transpose every Pix2Vox reader applies).
//!
//! Round trips are byte-identical: a parsed [`Binvox`] keeps its header text as read, so
//! number spellings (`0.0` vs `0`, `1131.81`) survive; fresh grids get a header written the
//! way the Pix2Vox writer (`str()` of Python floats) spells numbers.

use std::path::Path;

use thiserror::Error;

use crate::voxel::VoxelGrid;

/// Largest accepted extent per axis. ShapeNet voxels are 32^3 and binvox itself tops out
/// at 1024; anything larger is a corrupt or hostile header, not a grid.
pub const MAX_DIM: usize = 1024;

/// The header never needs more than a few dozen bytes; this bound keeps a file without a
/// `data` line from being scanned as text to the end.
const MAX_HEADER_BYTES: usize = 4096;

/// Voxels at or above this probability are written as occupied by [`VoxelGrid::to_binvox_bytes`].
pub const DEFAULT_WRITE_THRESHOLD: f32 = 0.5;

#[derive(Debug, Error)]
pub enum BinvoxError {
    #[error("not a binvox file: {0}")]
    BadHeader(String),
    #[error("binvox dimensions {0:?} are out of range (each must be 1..={MAX_DIM})")]
    BadDimensions([usize; 3]),
    #[error("binvox data is truncated: {0}")]
    Truncated(String),
    #[error("binvox run {index} has count 0 (counts must be 1..=255)")]
    ZeroCount { index: usize },
    #[error("binvox run {index} has value {value} (values must be 0 or 1)")]
    BadValue { index: usize, value: u8 },
    #[error("binvox runs cover {covered} voxels but the header declares {expected}")]
    CountMismatch { covered: u64, expected: u64 },
    #[error("reading or writing {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// A parsed binvox file: the grid (values 0.0 / 1.0, `[x][y][z]`) plus the header text as it
/// was read, so that [`Binvox::to_bytes`] reproduces the input byte for byte.
#[derive(Debug, Clone, PartialEq)]
pub struct Binvox {
    pub grid: VoxelGrid,
    header: String,
}

impl Binvox {
    /// Parse a binvox file held in memory.
    pub fn from_bytes(bytes: &[u8]) -> Result<Binvox, BinvoxError> {
        let (header_len, header) = parse_header(bytes)?;
        let file_dims = header.file_dims;
        let grid_dims = [file_dims[0], file_dims[2], file_dims[1]];
        let total = (file_dims[0] * file_dims[1] * file_dims[2]) as u64;
        let runs = &bytes[header_len..];
        // Validate every run before allocating, so a tiny file that claims a huge grid is
        // rejected without reserving memory for it.
        validate_runs(runs, total)?;

        let mut grid = VoxelGrid::new(grid_dims);
        grid.translate = header.translate;
        grid.scale = header.scale;
        let [_, ny, nz] = grid_dims;
        // File order walks x, z, y (y fastest); our storage is x, y, z (z fastest).
        let mut file_index = 0usize;
        for pair in runs.chunks_exact(2) {
            let (value, count) = (pair[0], pair[1] as usize);
            if value != 0 {
                for i in file_index..file_index + count {
                    let y = i % ny;
                    let z = (i / ny) % nz;
                    let x = i / (ny * nz);
                    grid.data[(x * ny + y) * nz + z] = 1.0;
                }
            }
            file_index += count;
        }
        let header_text = String::from_utf8_lossy(&bytes[..header_len]).into_owned();
        Ok(Binvox { grid, header: header_text })
    }

    /// Read and parse a binvox file.
    pub fn read(path: impl AsRef<Path>) -> Result<Binvox, BinvoxError> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|source| io_error(path, source))?;
        Binvox::from_bytes(&bytes)
    }

    /// Wrap a grid with a freshly formatted header.
    pub fn from_grid(grid: VoxelGrid) -> Binvox {
        let header = format_header(&grid);
        Binvox { grid, header }
    }

    /// The header text (everything up to and including `data\n`).
    pub fn header_text(&self) -> &str {
        &self.header
    }

    /// Encode: the kept header, then the grid's runs (occupied = value >= 0.5).
    /// If the grid's dims, translate or scale were changed since parsing, the header is
    /// reformatted so it always describes the data that follows.
    pub fn to_bytes(&self) -> Vec<u8> {
        let header_matches = parse_header(self.header.as_bytes()).is_ok_and(|(_, h)| {
            h.file_dims == file_dims_of(&self.grid) && h.translate == self.grid.translate && h.scale == self.grid.scale
        });
        let header = if header_matches { self.header.clone() } else { format_header(&self.grid) };
        let mut out = header.into_bytes();
        encode_runs(&self.grid, DEFAULT_WRITE_THRESHOLD, &mut out);
        out
    }

    pub fn write(&self, path: impl AsRef<Path>) -> Result<(), BinvoxError> {
        let path = path.as_ref();
        std::fs::write(path, self.to_bytes()).map_err(|source| io_error(path, source))
    }
}

impl VoxelGrid {
    /// Parse binvox bytes into a grid of 0.0 / 1.0 values.
    pub fn from_binvox_bytes(bytes: &[u8]) -> Result<VoxelGrid, BinvoxError> {
        Binvox::from_bytes(bytes).map(|b| b.grid)
    }

    /// Read a binvox file into a grid of 0.0 / 1.0 values.
    pub fn read_binvox(path: impl AsRef<Path>) -> Result<VoxelGrid, BinvoxError> {
        Binvox::read(path).map(|b| b.grid)
    }

    /// Encode as binvox; voxels with value >= `threshold` are occupied.
    pub fn to_binvox_bytes(&self, threshold: f32) -> Vec<u8> {
        let mut out = format_header(self).into_bytes();
        encode_runs(self, threshold, &mut out);
        out
    }

    /// Write as binvox; voxels with value >= `threshold` are occupied.
    pub fn write_binvox(&self, path: impl AsRef<Path>, threshold: f32) -> Result<(), BinvoxError> {
        let path = path.as_ref();
        std::fs::write(path, self.to_binvox_bytes(threshold)).map_err(|source| io_error(path, source))
    }
}

fn io_error(path: &Path, source: std::io::Error) -> BinvoxError {
    BinvoxError::Io { path: path.display().to_string(), source }
}

struct Header {
    file_dims: [usize; 3],
    translate: [f32; 3],
    scale: f32,
}

/// The file's `dim` line for a grid: `D H W` = our `[x, z, y]` extents.
fn file_dims_of(grid: &VoxelGrid) -> [usize; 3] {
    [grid.dims[0], grid.dims[2], grid.dims[1]]
}

/// Parse the five header lines; returns the header length in bytes (through `data\n`).
fn parse_header(bytes: &[u8]) -> Result<(usize, Header), BinvoxError> {
    let mut lines = Vec::with_capacity(5);
    let mut start = 0;
    while lines.len() < 5 {
        let rest = &bytes[start..bytes.len().min(MAX_HEADER_BYTES)];
        let Some(end) = rest.iter().position(|&b| b == b'\n') else {
            return Err(BinvoxError::BadHeader(format!(
                "expected 5 header lines ending with `data`, found {} before {}",
                lines.len(),
                if bytes.len() > MAX_HEADER_BYTES { "the header size limit" } else { "the end of the file" }
            )));
        };
        let line = std::str::from_utf8(&rest[..end])
            .map_err(|_| BinvoxError::BadHeader(format!("header line {} is not text", lines.len() + 1)))?;
        lines.push(line);
        start += end + 1;
    }
    let magic = lines[0].trim_end_matches('\r');
    if magic != "#binvox 1" {
        return Err(BinvoxError::BadHeader(format!("first line is {magic:?}, expected \"#binvox 1\"")));
    }
    let dims_text = fields(lines[1], "dim", 3)?;
    let mut file_dims = [0usize; 3];
    for (d, text) in file_dims.iter_mut().zip(&dims_text) {
        if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
            return Err(BinvoxError::BadHeader(format!("dim value {text:?} is not a whole number")));
        }
        // All digits: a number too long for usize is a range error like any other huge dim.
        *d = text.parse::<usize>().unwrap_or(usize::MAX);
    }
    if file_dims.iter().any(|&d| d == 0 || d > MAX_DIM) {
        return Err(BinvoxError::BadDimensions(file_dims));
    }
    let translate_text = fields(lines[2], "translate", 3)?;
    let mut translate = [0f32; 3];
    for (t, text) in translate.iter_mut().zip(&translate_text) {
        *t = parse_finite(text, "translate")?;
    }
    let scale = parse_finite(fields(lines[3], "scale", 1)?[0], "scale")?;
    if lines[4].trim_end_matches('\r') != "data" {
        return Err(BinvoxError::BadHeader(format!("fifth line is {:?}, expected \"data\"", lines[4])));
    }
    Ok((start, Header { file_dims, translate, scale }))
}

/// Split `keyword a b c` into its `count` values, checking the keyword.
fn fields<'a>(line: &'a str, keyword: &str, count: usize) -> Result<Vec<&'a str>, BinvoxError> {
    let mut parts = line.split_ascii_whitespace();
    if parts.next() != Some(keyword) {
        return Err(BinvoxError::BadHeader(format!("expected a `{keyword}` line, found {line:?}")));
    }
    let values: Vec<&str> = parts.collect();
    if values.len() != count {
        return Err(BinvoxError::BadHeader(format!("`{keyword}` needs {count} values, found {line:?}")));
    }
    Ok(values)
}

fn parse_finite(text: &str, what: &str) -> Result<f32, BinvoxError> {
    text.parse::<f32>()
        .ok()
        .filter(|v| v.is_finite())
        .ok_or_else(|| BinvoxError::BadHeader(format!("{what} value {text:?} is not a finite number")))
}

fn validate_runs(runs: &[u8], total: u64) -> Result<(), BinvoxError> {
    if runs.len() % 2 != 0 {
        return Err(BinvoxError::Truncated(format!("{} data bytes is not a whole number of (value, count) pairs", runs.len())));
    }
    let mut covered = 0u64;
    for (index, pair) in runs.chunks_exact(2).enumerate() {
        let (value, count) = (pair[0], pair[1]);
        if count == 0 {
            return Err(BinvoxError::ZeroCount { index });
        }
        if value > 1 {
            return Err(BinvoxError::BadValue { index, value });
        }
        covered += count as u64;
        if covered > total {
            return Err(BinvoxError::CountMismatch { covered, expected: total });
        }
    }
    if covered < total {
        return Err(BinvoxError::Truncated(format!("runs cover {covered} of {total} voxels")));
    }
    Ok(())
}

/// Python's `str(float)` spelling, which the Pix2Vox writer uses: shortest round-trip
/// digits, always with a decimal point (`0.0`, `41.133`).
fn format_number(value: f32) -> String {
    let text = format!("{value}");
    if text.contains(['.', 'e', 'E']) || !value.is_finite() {
        text
    } else {
        format!("{text}.0")
    }
}

fn format_header(grid: &VoxelGrid) -> String {
    let [d, h, w] = file_dims_of(grid);
    let [tx, ty, tz] = grid.translate.map(format_number);
    format!("#binvox 1\ndim {d} {h} {w}\ntranslate {tx} {ty} {tz}\nscale {}\ndata\n", format_number(grid.scale))
}

/// Run-length encode in file order (x, z, y), flushing each run at 255.
fn encode_runs(grid: &VoxelGrid, threshold: f32, out: &mut Vec<u8>) {
    let [nx, ny, nz] = grid.dims;
    let mut current: Option<(u8, u8)> = None;
    for x in 0..nx {
        for z in 0..nz {
            for y in 0..ny {
                let value = u8::from(grid.data[(x * ny + y) * nz + z] >= threshold);
                current = match current {
                    Some((v, count)) if v == value && count < 255 => Some((v, count + 1)),
                    Some((v, count)) => {
                        out.extend_from_slice(&[v, count]);
                        Some((value, 1))
                    }
                    None => Some((value, 1)),
                };
            }
        }
    }
    if let Some((v, count)) = current {
        out.extend_from_slice(&[v, count]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shared_binvox_files() -> Vec<std::path::PathBuf> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/testdata/binvox");
        let Ok(entries) = std::fs::read_dir(&dir) else {
            eprintln!("SKIPPED: {} is absent, real-file binvox checks not run", dir.display());
            return Vec::new();
        };
        let mut files: Vec<_> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "binvox"))
            .collect();
        files.sort();
        files
    }

    #[test]
    fn real_files_round_trip_byte_identical() {
        for path in shared_binvox_files() {
            let bytes = std::fs::read(&path).unwrap();
            let parsed = Binvox::from_bytes(&bytes).unwrap();
            assert_eq!(parsed.grid.dims, [32, 32, 32]);
            assert_eq!(parsed.to_bytes(), bytes, "{} did not round-trip", path.display());
            // A fresh header spelled like the Pix2Vox writer matches these files too.
            assert_eq!(parsed.grid.to_binvox_bytes(0.5), bytes, "{} fresh header differs", path.display());
        }
    }

    #[test]
    fn real_files_have_documented_counts() {
        for path in shared_binvox_files() {
            let grid = VoxelGrid::read_binvox(&path).unwrap();
            let name = path.file_name().unwrap().to_string_lossy();
            let expected = match name.as_ref() {
                "chair.binvox" => 1002,
                "8a85.binvox" => 14382,
                _ => continue,
            };
            assert_eq!(grid.count_at_least(0.5), expected, "{name}");
            if name == "8a85.binvox" {
                assert_eq!(grid.translate, [1131.81, 21.398, -1.6942]);
                assert_eq!(grid.scale, 30.206);
            }
        }
    }

    /// A non-cubic grid with long runs (> 255) and single voxels, built here.
    fn built_grid() -> VoxelGrid {
        let mut grid = VoxelGrid::new([9, 40, 23]);
        grid.translate = [-0.5, 0.25, 3.0];
        grid.scale = 2.0;
        for x in 0..9 {
            for y in 0..40 {
                for z in 0..23 {
                    // Whole x-slabs full (runs of 920), one slab empty, scattered voxels elsewhere.
                    let v = match x {
                        0 | 1 | 2 => true,
                        3 => false,
                        _ => (x * 7 + y * 3 + z * 11) % 13 == 0,
                    };
                    grid.set(x, y, z, if v { 1.0 } else { 0.0 });
                }
            }
        }
        grid
    }

    #[test]
    fn built_grid_round_trips_with_long_runs() {
        let grid = built_grid();
        let bytes = grid.to_binvox_bytes(0.5);
        let header = "#binvox 1\ndim 9 23 40\ntranslate -0.5 0.25 3.0\nscale 2.0\ndata\n";
        assert!(bytes.starts_with(header.as_bytes()));
        let runs = &bytes[header.len()..];
        // Three full slabs: 2760 ones = 10 runs of 255 + one of 210, then the empty slab continues.
        assert_eq!(&runs[..4], &[1, 255, 1, 255]);
        assert_eq!(&runs[20..22], &[1, 210]);
        assert!(runs.chunks_exact(2).all(|p| p[1] >= 1));
        let parsed = Binvox::from_bytes(&bytes).unwrap();
        assert_eq!(parsed.grid, grid);
        assert_eq!(parsed.to_bytes(), bytes);
    }

    #[test]
    fn file_order_is_x_then_z_then_y() {
        let mut grid = VoxelGrid::new([2, 3, 4]);
        grid.set(0, 1, 0, 1.0); // file index x*12 + z*3 + y = 1
        grid.set(1, 0, 2, 1.0); // 12 + 6 + 0 = 18
        let bytes = grid.to_binvox_bytes(0.5);
        let header_len = bytes.len() - 10;
        assert_eq!(&bytes[header_len..], &[0, 1, 1, 1, 0, 16, 1, 1, 0, 5]);
        assert!(String::from_utf8_lossy(&bytes[..header_len]).contains("dim 2 4 3\n"));
    }

    #[test]
    fn kept_header_spelling_survives_but_edits_are_reflected() {
        let bytes = b"#binvox 1\ndim 1 1 2\ntranslate 0 0 0\nscale 1\ndata\n\x01\x02".to_vec();
        let mut parsed = Binvox::from_bytes(&bytes).unwrap();
        assert_eq!(parsed.to_bytes(), bytes);
        parsed.grid.scale = 2.0;
        let edited = parsed.to_bytes();
        assert!(String::from_utf8_lossy(&edited).contains("scale 2.0\n"));
    }

    #[test]
    fn malformed_inputs_are_errors() {
        let ok_header = "#binvox 1\ndim 2 2 2\ntranslate 0 0 0\nscale 1\ndata\n";
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (b"".to_vec(), "header"),
            (b"#binvox 2\ndim 2 2 2\ntranslate 0 0 0\nscale 1\ndata\n\x00\x08".to_vec(), "header"),
            (b"#binvox 1\ndim 2 2\ntranslate 0 0 0\nscale 1\ndata\n\x00\x08".to_vec(), "header"),
            (b"#binvox 1\ndim 2 2 x\ntranslate 0 0 0\nscale 1\ndata\n\x00\x08".to_vec(), "header"),
            (b"#binvox 1\ndim 2 2 2\ntranslate 0 0 nan\nscale 1\ndata\n\x00\x08".to_vec(), "header"),
            (b"#binvox 1\ndim 2 2 2\nscale 1\ntranslate 0 0 0\ndata\n\x00\x08".to_vec(), "header"),
            (b"#binvox 1\ndim 2 2 2\ntranslate 0 0 0\nscale 1\nbits\n\x00\x08".to_vec(), "header"),
            (b"#binvox 1\ndim 2000 2 2\ntranslate 0 0 0\nscale 1\ndata\n\x00\x08".to_vec(), "dims"),
            (b"#binvox 1\ndim 0 2 2\ntranslate 0 0 0\nscale 1\ndata\n".to_vec(), "dims"),
            (b"#binvox 1\ndim 99999999999999999999999 2 2\ntranslate 0 0 0\nscale 1\ndata\n".to_vec(), "dims"),
            (b"#binvox 1\ndim 1024 1024 1024\ntranslate 0 0 0\nscale 1\ndata\n\x00\xff".to_vec(), "truncated"),
            ([ok_header.as_bytes(), &[0, 4, 1]].concat(), "truncated"),
            ([ok_header.as_bytes(), &[0, 4, 1, 3]].concat(), "truncated"),
            ([ok_header.as_bytes(), &[0, 4, 1, 5]].concat(), "mismatch"),
            ([ok_header.as_bytes(), &[0, 8, 1, 1]].concat(), "mismatch"),
            ([ok_header.as_bytes(), &[0, 0, 0, 8]].concat(), "zero"),
            ([ok_header.as_bytes(), &[2, 8]].concat(), "value"),
            (vec![b'#'; 10_000], "header"),
        ];
        for (bytes, expected) in cases {
            let err = Binvox::from_bytes(&bytes).expect_err("malformed input accepted");
            let kind = match err {
                BinvoxError::BadHeader(_) => "header",
                BinvoxError::BadDimensions(_) => "dims",
                BinvoxError::Truncated(_) => "truncated",
                BinvoxError::CountMismatch { .. } => "mismatch",
                BinvoxError::ZeroCount { .. } => "zero",
                BinvoxError::BadValue { .. } => "value",
                BinvoxError::Io { .. } => "io",
            };
            assert_eq!(kind, expected, "{err}");
        }
        assert!(Binvox::from_bytes(&[ok_header.as_bytes(), &[0, 4, 1, 4]].concat()).is_ok());
    }

    #[test]
    fn path_helpers_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("grid.binvox");
        let grid = built_grid();
        grid.write_binvox(&path, 0.5).unwrap();
        assert_eq!(VoxelGrid::read_binvox(&path).unwrap(), grid);
        let missing = VoxelGrid::read_binvox(dir.path().join("missing.binvox")).unwrap_err();
        assert!(missing.to_string().contains("missing.binvox"));
    }
}
