//! NumPy `.npy` (format version 1.0) for little-endian float32 arrays, enough to hand
//! probability grids to NumPy (`np.load`) and read them back. The reconstruct stage
//! stores its probabilities this way; the refine stage meshes them.

use crate::VoxelGrid;

const MAGIC: &[u8] = b"\x93NUMPY";

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum NpyError {
    #[error("not a .npy file")]
    NotNpy,
    #[error("unsupported .npy: {0}")]
    Unsupported(String),
}

/// Encode `values` as a C-ordered float32 array of `shape`.
pub fn f32_to_npy(values: &[f32], shape: &[usize]) -> Vec<u8> {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let shape_text = if dims.len() == 1 { format!("({},)", dims[0]) } else { format!("({})", dims.join(", ")) };
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape_text}, }}");
    // magic (6) + version (2) + length (2) + header, padded with spaces to a multiple of 64,
    // ending in a newline (what numpy itself writes)
    let total = (10 + header.len() + 1).div_ceil(64) * 64;
    header.push_str(&" ".repeat(total - 10 - header.len() - 1));
    header.push('\n');
    let mut out = Vec::with_capacity(total + values.len() * 4);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[1, 0]);
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    for v in values {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out
}

/// The grid's probabilities as a float32 `[dx, dy, dz]` array (`[x][y][z]`).
pub fn grid_to_npy(grid: &VoxelGrid) -> Vec<u8> {
    f32_to_npy(&grid.data, &grid.dims)
}

/// A float32 `[dx, dy, dz]` probability grid (as [`grid_to_npy`] writes it), placed in
/// the centred unit cube where Pix2Vox output and ShapeNet's normalised models sit
/// (voxel centres at `(i + 0.5) / d - 0.5`).
pub fn npy_to_grid(bytes: &[u8]) -> Result<VoxelGrid, NpyError> {
    let (header, _) = split_header(bytes)?;
    let dims = parse_shape(&header)?;
    let [dx, dy, dz] = dims.as_slice() else {
        return Err(NpyError::Unsupported(format!("a voxel grid has 3 dimensions, this array {dims:?}")));
    };
    let values = npy_to_grid_values(bytes)?;
    let count = dx.checked_mul(*dy).and_then(|n| n.checked_mul(*dz));
    if count != Some(values.len()) || values.is_empty() {
        return Err(NpyError::Unsupported(format!("shape {dims:?} does not match {} values", values.len())));
    }
    if values.iter().any(|v| !v.is_finite()) {
        return Err(NpyError::Unsupported("the grid holds NaN or infinite values".into()));
    }
    let mut grid = VoxelGrid::new([*dx, *dy, *dz]);
    grid.translate = [-0.5; 3];
    grid.scale = 1.0;
    grid.data = values;
    Ok(grid)
}

fn split_header(bytes: &[u8]) -> Result<(String, usize), NpyError> {
    if bytes.len() < 10 || &bytes[..6] != MAGIC {
        return Err(NpyError::NotNpy);
    }
    let (header_len, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 if bytes.len() >= 12 => (u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize, 12),
        v => return Err(NpyError::Unsupported(format!("version {v}"))),
    };
    let header = bytes.get(start..start + header_len).ok_or(NpyError::NotNpy)?;
    Ok((String::from_utf8_lossy(header).into_owned(), start + header_len))
}

/// The `'shape': (a, b, c)` tuple of a header.
fn parse_shape(header: &str) -> Result<Vec<usize>, NpyError> {
    let bad = || NpyError::Unsupported(format!("header {}", header.trim()));
    let after = header.split_once("'shape':").ok_or_else(bad)?.1;
    let open = after.find('(').ok_or_else(bad)?;
    let close = after.find(')').ok_or_else(bad)?;
    after
        .get(open + 1..close)
        .ok_or_else(bad)?
        .split(',')
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .map(|d| d.parse::<usize>().map_err(|_| bad()))
        .collect()
}

/// Read back a little-endian float32, C-ordered `.npy` (any shape): its values.
pub fn npy_to_grid_values(bytes: &[u8]) -> Result<Vec<f32>, NpyError> {
    if bytes.len() < 10 || &bytes[..6] != MAGIC {
        return Err(NpyError::NotNpy);
    }
    let (header_len, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 if bytes.len() >= 12 => (u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize, 12),
        v => return Err(NpyError::Unsupported(format!("version {v}"))),
    };
    let header = bytes.get(start..start + header_len).ok_or(NpyError::NotNpy)?;
    let header = String::from_utf8_lossy(header);
    if !header.contains("'descr': '<f4'") || !header.contains("'fortran_order': False") {
        return Err(NpyError::Unsupported(format!("header {}", header.trim())));
    }
    let data = &bytes[start + header_len..];
    if data.len() % 4 != 0 {
        return Err(NpyError::Unsupported("data is not whole float32 values".into()));
    }
    Ok(data.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_is_aligned_and_numpy_shaped() {
        let bytes = f32_to_npy(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3]);
        let header_len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
        assert_eq!((10 + header_len) % 64, 0);
        let header = std::str::from_utf8(&bytes[10..10 + header_len]).unwrap();
        assert!(header.starts_with("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }"));
        assert!(header.ends_with('\n'));
        assert_eq!(npy_to_grid_values(&bytes).unwrap(), vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        assert!(f32_to_npy(&[1.0], &[1]).windows(4).any(|w| w == b"(1,)"));
        assert_eq!(npy_to_grid_values(b"hello world"), Err(NpyError::NotNpy));
    }

    #[test]
    fn grids_round_trip_with_their_shape_and_bad_arrays_are_errors() {
        let mut grid = VoxelGrid::new([4, 3, 2]);
        grid.translate = [-0.5; 3];
        grid.data.iter_mut().enumerate().for_each(|(i, v)| *v = i as f32 / 24.0);
        assert_eq!(npy_to_grid(&grid_to_npy(&grid)).unwrap(), grid);
        let flat = f32_to_npy(&[0.5; 6], &[2, 3]);
        assert!(matches!(npy_to_grid(&flat), Err(NpyError::Unsupported(m)) if m.contains("3 dimensions")));
        let mut short = f32_to_npy(&[0.5; 8], &[2, 2, 2]);
        short.truncate(short.len() - 4);
        assert!(npy_to_grid(&short).is_err());
        assert!(npy_to_grid(&f32_to_npy(&[f32::NAN; 8], &[2, 2, 2])).is_err());
    }
}
