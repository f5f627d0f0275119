//! Marching cubes on a probability grid, producing a closed, consistently oriented,
//! edge-manifold indexed mesh for any input grid.
//!
//! * A corner is **inside** when `value >= iso` (the same `>=` the IoU uses).
//! * The grid is padded with one layer of outside corners, so shapes touching the grid's
//!   border are closed there.
//! * The case table is generated (not typed in) from one rule applied per cube face: on an
//!   ambiguous face (inside corners on one diagonal, outside on the other) the inside corners
//!   are separated. The rule depends only on the face's four corners, so the two cubes that
//!   share a face always cut it the same way: no cracks. Each surface loop in a cube is
//!   fanned from a vertex chosen so no fan diagonal joins two vertices on one cube face (a
//!   neighbour could otherwise produce the same edge and make it non-manifold); if no such
//!   apex exists the loop is fanned around its centroid instead.
//! * One vertex per crossed grid edge, shared by every triangle that uses it; the
//!   interpolation parameter is clamped to `[EDGE_CLAMP, 1 - EDGE_CLAMP]` so vertices never sit
//!   on grid corners (no zero-length edges or degenerate triangles from coinciding vertices).
//! * Triangles are counter-clockwise seen from outside (normals point from inside to outside).
//! * Positions are in binvox model space: a sample at index `i` sits at
//!   `scale * (i + 0.5) / dim + translate`.
//!
//! Work proceeds slab by slab along x with edge-vertex caches for two corner slices, so
//! memory traffic is a few slices regardless of grid size. [`marching_cubes_parallel`]
//! splits the slabs into chunks processed with rayon and stitches the shared slices.

use std::sync::OnceLock;

use rayon::prelude::*;
use thiserror::Error;

use crate::mesh::Mesh;
use crate::voxel::VoxelGrid;

/// Default iso level: occupancy probability 0.5.
pub const DEFAULT_ISO: f32 = 0.5;

/// Vertices stay at least this fraction of an edge away from the grid corners.
pub const EDGE_CLAMP: f32 = 1e-3;

#[derive(Debug, Error, PartialEq)]
pub enum MarchingCubesError {
    #[error("iso level {0} is not a finite number")]
    BadIso(f32),
    #[error("grid data has {actual} values but dims {dims:?} need {expected}")]
    BadGrid { dims: [usize; 3], expected: usize, actual: usize },
    #[error("the mesh would need more than u32::MAX vertices")]
    TooLarge,
}

/// Extract the `iso` surface of `grid` (single-threaded), with area-weighted vertex normals.
pub fn marching_cubes(grid: &VoxelGrid, iso: f32) -> Result<Mesh, MarchingCubesError> {
    check_input(grid, iso)?;
    let chunk = march_chunk(grid, iso, 0, grid.dims[0] + 1)?;
    let mut mesh = Mesh { positions: chunk.positions, triangles: chunk.triangles, normals: Vec::new() };
    mesh.recompute_normals();
    Ok(mesh)
}

/// Same mesh as [`marching_cubes`] (identical vertices and triangles, in the same order),
/// computed on rayon's thread pool by splitting the x slabs into chunks.
pub fn marching_cubes_parallel(grid: &VoxelGrid, iso: f32) -> Result<Mesh, MarchingCubesError> {
    check_input(grid, iso)?;
    let cube_slabs = grid.dims[0] + 1;
    let threads = rayon::current_num_threads().max(1);
    // A few chunks per thread balances load; each chunk recomputes one shared slice.
    let chunk_count = (threads * 4).min(cube_slabs).max(1);
    let bounds: Vec<(usize, usize)> =
        (0..chunk_count).map(|c| (c * cube_slabs / chunk_count, (c + 1) * cube_slabs / chunk_count)).collect();
    let chunks: Vec<Chunk> = bounds
        .par_iter()
        .filter(|(start, end)| start < end)
        .map(|&(start, end)| march_chunk(grid, iso, start, end))
        .collect::<Result<_, _>>()?;

    let mut mesh = Mesh::default();
    mesh.positions.reserve(chunks.iter().map(|c| c.positions.len()).sum());
    mesh.triangles.reserve(chunks.iter().map(|c| c.triangles.len()).sum());
    let mut previous_last_slice_start = 0u32;
    for (k, chunk) in chunks.into_iter().enumerate() {
        // The chunk's first corner slice is the previous chunk's last: drop its copy and
        // point those indices at the previous chunk's vertices.
        let skip = if k == 0 { 0 } else { chunk.first_slice_len };
        let base = u32::try_from(mesh.positions.len()).map_err(|_| MarchingCubesError::TooLarge)?;
        let remap = |v: u32| if v < skip { previous_last_slice_start + v } else { base + (v - skip) };
        mesh.triangles.extend(chunk.triangles.iter().map(|t| t.map(remap)));
        previous_last_slice_start = remap(chunk.last_slice_start);
        mesh.positions.extend_from_slice(&chunk.positions[skip as usize..]);
    }
    mesh.recompute_normals();
    Ok(mesh)
}

fn check_input(grid: &VoxelGrid, iso: f32) -> Result<(), MarchingCubesError> {
    if !iso.is_finite() {
        return Err(MarchingCubesError::BadIso(iso));
    }
    let expected = grid.dims.iter().product::<usize>();
    if grid.data.len() != expected {
        return Err(MarchingCubesError::BadGrid { dims: grid.dims, expected, actual: grid.data.len() });
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Case table
//
// Corner `c` of a cube has offsets y = bit 0, z = bit 1, x = bit 2. That order makes the cube
// case `face_code(slice x) | face_code(slice x + 1) << 4`, where a slice's 4-bit face code
// is built once per (y, z).

/// Axis numbers in corner-bit order (not spatial order).
const AXIS_Y: usize = 0;
const AXIS_Z: usize = 1;

/// Edge `e` joins corners `EDGE_CORNERS[e].0` and `.1` (the second has the axis bit set).
fn edge_corners() -> [(u8, u8); 12] {
    let mut edges = [(0u8, 0u8); 12];
    let mut n = 0;
    for axis_bit in 0..3u8 {
        for base in 0..8u8 {
            if base & (1 << axis_bit) == 0 {
                edges[n] = (base, base | (1 << axis_bit));
                n += 1;
            }
        }
    }
    edges
}

/// Triangles of one cube case; entries `0..12` are cube edges, `12..` are loop centroids
/// (listed in `centroids`, as the edges they average).
#[derive(Debug, Clone, Default)]
struct CubeCase {
    triangles: Vec<[u8; 3]>,
    centroids: Vec<Vec<u8>>,
}

/// All cases' triangles in one array (case `c` owns `case_start[c]..case_start[c + 1]`),
/// so the hot loop does no pointer chasing.
struct CaseTable {
    edge_corners: [(u8, u8); 12],
    triangles: Vec<[u8; 3]>,
    case_start: [u16; 257],
    centroids: Vec<Vec<Vec<u8>>>,
}

fn case_table() -> &'static CaseTable {
    static TABLE: OnceLock<CaseTable> = OnceLock::new();
    TABLE.get_or_init(build_case_table)
}

fn corner_coords(c: u8) -> [u8; 3] {
    // [x, y, z]
    [(c >> 2) & 1, c & 1, (c >> 1) & 1]
}

fn corner_from_coords(p: [u8; 3]) -> u8 {
    p[1] | (p[2] << 1) | (p[0] << 2)
}

/// The six faces, each as its four corners counter-clockwise seen from outside the cube.
fn faces() -> Vec<[u8; 4]> {
    let mut out = Vec::with_capacity(6);
    for a in 0..3usize {
        let (u, v) = ((a + 1) % 3, (a + 2) % 3);
        for side in 0..2u8 {
            let uv = [(0u8, 0u8), (1, 0), (1, 1), (0, 1)];
            let mut corners = uv.map(|(pu, pv)| {
                let mut p = [0u8; 3];
                p[a] = side;
                p[u] = pu;
                p[v] = pv;
                corner_from_coords(p)
            });
            // (u, v, a) is right-handed, so this order is CCW seen from +a; flip for -a.
            if side == 0 {
                corners.reverse();
            }
            out.push(corners);
        }
    }
    out
}

fn build_case_table() -> CaseTable {
    let edge_corners = edge_corners();
    let edge_of = |a: u8, b: u8| -> u8 {
        edge_corners.iter().position(|&(p, q)| (p, q) == (a.min(b), a.max(b))).map_or(u8::MAX, |e| e as u8)
    };
    let faces = faces();
    // Two edges lie on one cube face when their four corners agree on some coordinate.
    let share_face = |e: u8, f: u8| -> bool {
        let (a, b) = edge_corners[e as usize];
        let (c, d) = edge_corners[f as usize];
        let pts = [a, b, c, d].map(corner_coords);
        (0..3).any(|axis| pts.iter().all(|p| p[axis] == pts[0][axis]))
    };

    let mut cases = Vec::with_capacity(256);
    for config in 0..256u32 {
        let inside = |c: u8| (config >> c) & 1 == 1;
        // next[e]: the edge the surface boundary runs to from e, within the face where e is
        // an exit (inside corner -> outside corner in the face's CCW order).
        let mut next = [u8::MAX; 12];
        for face in &faces {
            for k in 0..4 {
                let (here, ahead) = (face[k], face[(k + 1) % 4]);
                if inside(here) && !inside(ahead) {
                    let mut j = (k + 3) % 4;
                    while inside(face[j]) {
                        j = (j + 3) % 4;
                    }
                    next[edge_of(here, ahead) as usize] = edge_of(face[j], face[(j + 1) % 4]);
                }
            }
        }
        let mut case = CubeCase::default();
        let mut visited = [false; 12];
        for start in 0..12u8 {
            if next[start as usize] == u8::MAX || visited[start as usize] {
                continue;
            }
            let mut ring = Vec::new();
            let mut e = start;
            while !visited[e as usize] {
                visited[e as usize] = true;
                ring.push(e);
                e = next[e as usize];
            }
            // The rings run clockwise seen from outside the surface; reverse to CCW.
            ring.reverse();
            let n = ring.len();
            let apex = (0..n).find(|&i| (2..n - 1).all(|d| !share_face(ring[i], ring[(i + d) % n])));
            match apex {
                Some(i) => {
                    for d in 1..n - 1 {
                        case.triangles.push([ring[i], ring[(i + d) % n], ring[(i + d + 1) % n]]);
                    }
                }
                None => {
                    let centre = 12 + case.centroids.len() as u8;
                    for k in 0..n {
                        case.triangles.push([centre, ring[k], ring[(k + 1) % n]]);
                    }
                    case.centroids.push(ring);
                }
            }
        }
        cases.push(case);
    }
    let mut case_start = [0u16; 257];
    let mut triangles = Vec::new();
    let mut centroids = Vec::with_capacity(256);
    for (config, case) in cases.into_iter().enumerate() {
        triangles.extend_from_slice(&case.triangles);
        case_start[config + 1] = triangles.len() as u16;
        centroids.push(case.centroids);
    }
    CaseTable { edge_corners, triangles, case_start, centroids }
}

// ---------------------------------------------------------------------------------------
// Slab marching

/// The mesh of the cube slabs `start..end` (padded x: cube slab `s` spans padded corner
/// slices `s` and `s + 1`; padded slice `p` is grid slice `p - 1`).
struct Chunk {
    positions: Vec<[f32; 3]>,
    triangles: Vec<[u32; 3]>,
    /// Vertices of the first corner slice come first: this many.
    first_slice_len: u32,
    /// Index of the first vertex of the last corner slice (its vertices run to the end).
    last_slice_start: u32,
}

/// One padded corner slice: values, inside flags (0 / 1) and face codes.
struct Slice {
    values: Vec<f32>,
    inside: Vec<u8>,
    /// Face code of the square whose lower corner is at flat index `i = y * pz + z`: bit 0
    /// corner (y, z), bit 1 (y + 1, z), bit 2 (y, z + 1), bit 3 (y + 1, z + 1), matching the
    /// corner numbering (y bit 0, z bit 1). Zero where the square would leave the slice.
    face_codes: Vec<u8>,
}

struct Geometry {
    step: [f32; 3],
    origin: [f32; 3],
}

impl Geometry {
    /// Model-space coordinate along spatial `axis` (0 = x, 1 = y, 2 = z) of padded index
    /// `p` plus edge fraction `t`.
    #[inline]
    fn coord(&self, axis: usize, p: usize, t: f32) -> f32 {
        // Padded index p is grid index p - 1, whose centre is (p - 1 + 0.5) * step.
        self.origin[axis] + (p as f32 - 0.5 + t) * self.step[axis]
    }
}

#[inline]
fn crossing(a: f32, b: f32, iso: f32) -> f32 {
    ((iso - a) / (b - a)).clamp(EDGE_CLAMP, 1.0 - EDGE_CLAMP)
}

#[inline]
fn word(bytes: &[u8], at: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(w)
}

/// Calls `f(i)` for every `i < len` where `a[i] != b[i]`, skipping equal runs eight bytes
/// at a time (surfaces are sparse: most of a slice is all inside or all outside).
#[inline]
fn for_each_difference(a: &[u8], b: &[u8], len: usize, mut f: impl FnMut(usize)) {
    let mut i = 0;
    while i + 8 <= len {
        let mut diff = word(a, i) ^ word(b, i);
        while diff != 0 {
            f(i + diff.trailing_zeros() as usize / 8);
            // Flags are 0 / 1, so each differing byte holds exactly one set bit.
            diff &= diff - 1;
        }
        i += 8;
    }
    for k in i..len {
        if a[k] != b[k] {
            f(k);
        }
    }
}

fn march_chunk(grid: &VoxelGrid, iso: f32, start: usize, end: usize) -> Result<Chunk, MarchingCubesError> {
    let table = case_table();
    let [nx, ny, nz] = grid.dims;
    let (py, pz) = (ny + 2, nz + 2);
    let plane = py * pz;
    // Outside padding: below iso so it is outside, and 0 when iso > 0 so a binary grid's
    // border crossings sit midway like interior ones.
    let pad = if iso > 0.0 { 0.0 } else { iso - 1.0 };
    let geometry = Geometry { step: [0, 1, 2].map(|a| grid.scale / grid.dims[a] as f32), origin: grid.translate };

    let load_slice = |p: usize, slice: &mut Slice| {
        slice.values.fill(pad);
        if p >= 1 && p <= nx {
            let x = p - 1;
            for y in 0..ny {
                let src = &grid.data[(x * ny + y) * nz..(x * ny + y + 1) * nz];
                slice.values[(y + 1) * pz + 1..(y + 1) * pz + 1 + nz].copy_from_slice(src);
            }
        }
        for (flag, &v) in slice.inside.iter_mut().zip(&slice.values) {
            *flag = u8::from(v >= iso);
        }
        // The padding ring is outside, so squares reaching past a row's end read outside
        // flags from the next row's padding and get no bits: no special cases needed.
        let n = plane - pz - 1;
        let f = &slice.inside;
        for (i, code) in slice.face_codes[..n].iter_mut().enumerate() {
            *code = f[i] | (f[i + pz] << 1) | (f[i + 1] << 2) | (f[i + pz + 1] << 3);
        }
    };

    let mut positions: Vec<[f32; 3]> = Vec::new();
    let mut triangles: Vec<[u32; 3]> = Vec::new();
    // Edge-vertex cache regions, each `plane` long: [y-edges, z-edges] of the lower slice,
    // the same for the upper slice, then the x-edges between them. Entries are only read
    // for crossed edges, which are always written first, so no reset is needed.
    let mut cache = vec![u32::MAX; 5 * plane];
    let new_slice = || Slice { values: vec![pad; plane], inside: vec![0; plane], face_codes: vec![0; plane] };
    let (mut lower, mut upper) = (new_slice(), new_slice());

    // Vertices on y and z edges of a corner slice, into cache regions `region` and `region + 1`.
    let slice_vertices = |p: usize, slice: &Slice, cache: &mut [u32], region: usize, positions: &mut Vec<[f32; 3]>| {
        let x = geometry.coord(0, p, 0.0);
        let (values, inside) = (&slice.values, &slice.inside);
        // y-edges: (y, z) -> (y + 1, z).
        for_each_difference(&inside[..plane - pz], &inside[pz..], plane - pz, |i| {
            cache[region * plane + i] = positions.len() as u32;
            let t = crossing(values[i], values[i + pz], iso);
            positions.push([x, geometry.coord(1, i / pz, t), geometry.coord(2, i % pz, 0.0)]);
        });
        // z-edges: (y, z) -> (y, z + 1); a row's last corner and the next row's first are
        // both padding, so the flat comparison never reports a wrap-around edge.
        for_each_difference(&inside[..plane - 1], &inside[1..], plane - 1, |i| {
            cache[(region + 1) * plane + i] = positions.len() as u32;
            let t = crossing(values[i], values[i + 1], iso);
            positions.push([x, geometry.coord(1, i / pz, 0.0), geometry.coord(2, i % pz, t)]);
        });
    };

    // Cache offset of each cube edge relative to the cube's lower (y, z) corner.
    let edge_offset: [usize; 12] = std::array::from_fn(|e| {
        let (a, b) = table.edge_corners[e];
        let axis = (a ^ b).trailing_zeros() as usize;
        let [dx, dy, dz] = corner_coords(a).map(usize::from);
        let region = match axis {
            AXIS_Y => 2 * dx,
            AXIS_Z => 2 * dx + 1,
            _ => 4,
        };
        region * plane + dy * pz + dz
    });

    let mut emit_cube = |i: usize, config: u8, cache: &[u32], positions: &mut Vec<[f32; 3]>| {
        let triangles_of_case = &table.triangles[table.case_start[config as usize] as usize..table.case_start[config as usize + 1] as usize];
        let centroids = &table.centroids[config as usize];
        if centroids.is_empty() {
            for tri in triangles_of_case {
                triangles.push(tri.map(|e| cache[i + edge_offset[e as usize]]));
            }
            return;
        }
        // Rare cases (a loop through both cuts of one ambiguous face): one centroid vertex per such loop.
        let first_centre = positions.len() as u32;
        for ring in centroids {
            let mut sum = [0f32; 3];
            for &e in ring {
                let p = positions[cache[i + edge_offset[e as usize]] as usize];
                (0..3).for_each(|a| sum[a] += p[a]);
            }
            positions.push(sum.map(|c| c / ring.len() as f32));
        }
        for tri in triangles_of_case {
            triangles.push(tri.map(|e| if e < 12 { cache[i + edge_offset[e as usize]] } else { first_centre + u32::from(e - 12) }));
        }
    };

    load_slice(start, &mut lower);
    slice_vertices(start, &lower, &mut cache, 0, &mut positions);
    let first_slice_len = positions.len() as u32;
    let mut last_slice_start = 0u32;
    for s in start..end {
        load_slice(s + 1, &mut upper);
        // x-edges between the two slices.
        {
            let (lo, hi) = (&lower.values, &upper.values);
            for_each_difference(&lower.inside, &upper.inside, plane, |i| {
                cache[4 * plane + i] = positions.len() as u32;
                let t = crossing(lo[i], hi[i], iso);
                positions.push([geometry.coord(0, s, t), geometry.coord(1, i / pz, 0.0), geometry.coord(2, i % pz, 0.0)]);
            });
        }
        last_slice_start = positions.len() as u32;
        slice_vertices(s + 1, &upper, &mut cache, 2, &mut positions);

        // Cubes: config = lower code | upper code << 4, eight cubes per word; skip words
        // that are entirely outside (0x00) or inside (0xFF).
        let n = plane - pz - 1;
        let (codes_lo, codes_hi) = (&lower.face_codes, &upper.face_codes);
        let mut i = 0;
        while i < n {
            if i + 8 <= n {
                let configs = word(codes_lo, i) | (word(codes_hi, i) << 4);
                if configs == 0 || configs == u64::MAX {
                    i += 8;
                    continue;
                }
                for (k, config) in configs.to_le_bytes().into_iter().enumerate() {
                    if config != 0 && config != 255 {
                        emit_cube(i + k, config, &cache, &mut positions);
                    }
                }
                i += 8;
            } else {
                let config = codes_lo[i] | (codes_hi[i] << 4);
                if config != 0 && config != 255 {
                    emit_cube(i, config, &cache, &mut positions);
                }
                i += 1;
            }
        }
        if positions.len() > u32::MAX as usize {
            return Err(MarchingCubesError::TooLarge);
        }
        // The upper slice becomes the lower one.
        cache.copy_within(2 * plane..4 * plane, 0);
        std::mem::swap(&mut lower, &mut upper);
    }
    if start == end {
        last_slice_start = 0;
    }
    Ok(Chunk { positions, triangles, first_slice_len, last_slice_start })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_case_closes_its_rings() {
        let table = case_table();
        let case = |c: usize| &table.triangles[table.case_start[c] as usize..table.case_start[c + 1] as usize];
        assert!(case(0).is_empty() && case(255).is_empty());
        let mut with_centroids = 0;
        for config in 0..256 {
            // Every edge with one inside and one outside corner carries a vertex used by the case.
            for (e, &(a, b)) in table.edge_corners.iter().enumerate() {
                let crossed = ((config >> a) & 1) != ((config >> b) & 1);
                let used = case(config).iter().any(|t| t.contains(&(e as u8)));
                assert_eq!(crossed, used, "config {config} edge {e}");
            }
            with_centroids += usize::from(!table.centroids[config].is_empty());
        }
        // One corner inside: one triangle; complementary cases mirror each other's size.
        assert_eq!(case(1).len(), 1);
        assert_eq!(case(254).len(), 1);
        eprintln!("{with_centroids} of 256 cases need a loop centroid");
    }

    #[test]
    fn single_voxel_is_an_outward_octahedron() {
        let mut grid = VoxelGrid::new([1, 1, 1]);
        grid.data[0] = 1.0;
        let mesh = marching_cubes(&grid, 0.5).unwrap();
        assert_eq!(mesh.positions.len(), 6);
        assert_eq!(mesh.triangles.len(), 8);
        assert!(mesh.signed_volume() > 0.0);
        // Octahedron with vertices at distance 0.5 voxel from the centre: volume (4/3) r^3.
        let expected = 4.0 / 3.0 * 0.5f64.powi(3);
        assert!((mesh.signed_volume() - expected).abs() < 1e-6, "{}", mesh.signed_volume());
    }

    #[test]
    fn parallel_matches_serial_exactly() {
        let mut grid = VoxelGrid::new([37, 20, 25]);
        for (i, v) in grid.data.iter_mut().enumerate() {
            *v = ((i * 2654435761) % 1000) as f32 / 1000.0;
        }
        let serial = marching_cubes(&grid, 0.5).unwrap();
        let parallel = marching_cubes_parallel(&grid, 0.5).unwrap();
        assert_eq!(serial, parallel);
    }

    #[test]
    fn bad_input_is_an_error() {
        let grid = VoxelGrid::new([2, 2, 2]);
        assert!(matches!(marching_cubes(&grid, f32::NAN), Err(MarchingCubesError::BadIso(_))));
        let mut short = grid.clone();
        short.data.pop();
        assert!(matches!(marching_cubes(&short, 0.5), Err(MarchingCubesError::BadGrid { .. })));
    }
}
