//! Mesh -> solid occupancy grid with ShapeNetVox32 conventions.
//!
//! The grid is a cube around the mesh's bounding box (edge = the longest extent,
//! centred on the box centre, as binvox places a model), so the model is centred in
//! the unit cube of voxel space and touches it along its longest axis. Every voxel a
//! triangle touches is set (conservative triangle-box overlap: thin parts survive),
//! then the interior is filled: all empty voxels not reachable from outside the grid
//! through empty voxels (6-connected flood fill) become solid. Meshes with holes
//! smaller than a voxel still fill; larger holes leave a hollow shell, never garbage.

use crate::math::{cross, dot, sub, V3};
use mono2mesh_geometry::{Mesh, VoxelGrid};

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum VoxelizeError {
    #[error("the mesh has no triangles")]
    NoTriangles,
    #[error("vertex {0} has a non-finite coordinate")]
    NonFinite(usize),
    #[error("triangle {triangle} refers to vertex {vertex}, but the mesh has {count} vertices")]
    BadIndex { triangle: usize, vertex: u32, count: usize },
    #[error("the mesh is a single point: its bounding box has zero size")]
    ZeroExtent,
    #[error("resolution {0} is out of range (1..=1024)")]
    BadResolution(usize),
}

/// Where the grid sits in model space: voxel centre = `scale * (i + 0.5) / res + translate`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Placement {
    pub translate: V3,
    pub scale: f32,
}

/// The binvox-style cube around a mesh's bounding box.
pub fn placement_for(mesh: &Mesh) -> Result<Placement, VoxelizeError> {
    validate(mesh)?;
    let (lo, hi) = crate::builder::bounds_of(&used_positions(mesh)).ok_or(VoxelizeError::NoTriangles)?;
    let extent = (0..3).map(|a| hi[a] - lo[a]).fold(0.0f32, f32::max);
    if extent <= 0.0 {
        return Err(VoxelizeError::ZeroExtent);
    }
    let centre: V3 = std::array::from_fn(|a| (lo[a] + hi[a]) * 0.5);
    Ok(Placement { translate: centre.map(|c| c - extent * 0.5), scale: extent })
}

fn used_positions(mesh: &Mesh) -> Vec<V3> {
    mesh.triangles.iter().flat_map(|t| t.iter().map(|&i| mesh.positions[i as usize])).collect()
}

fn validate(mesh: &Mesh) -> Result<(), VoxelizeError> {
    if mesh.triangles.is_empty() {
        return Err(VoxelizeError::NoTriangles);
    }
    if let Some(i) = mesh.positions.iter().position(|p| p.iter().any(|v| !v.is_finite())) {
        return Err(VoxelizeError::NonFinite(i));
    }
    for (t, tri) in mesh.triangles.iter().enumerate() {
        for &v in tri {
            if v as usize >= mesh.positions.len() {
                return Err(VoxelizeError::BadIndex { triangle: t, vertex: v, count: mesh.positions.len() });
            }
        }
    }
    Ok(())
}

/// Solid voxelization at `resolution`^3 in the mesh's own bounding cube.
pub fn voxelize(mesh: &Mesh, resolution: usize) -> Result<VoxelGrid, VoxelizeError> {
    let placement = placement_for(mesh)?;
    voxelize_in(mesh, resolution, placement)
}

/// Solid voxelization into a given placement (for grids shared between meshes).
pub fn voxelize_in(mesh: &Mesh, resolution: usize, placement: Placement) -> Result<VoxelGrid, VoxelizeError> {
    if resolution == 0 || resolution > 1024 {
        return Err(VoxelizeError::BadResolution(resolution));
    }
    validate(mesh)?;
    let n = resolution;
    let mut surface = vec![false; n * n * n];
    let cell = placement.scale / n as f32;
    let to_grid = |p: V3| -> V3 { std::array::from_fn(|a| (p[a] - placement.translate[a]) / cell) };
    for tri in &mesh.triangles {
        let v = tri.map(|i| to_grid(mesh.positions[i as usize]));
        let lo: [usize; 3] = std::array::from_fn(|a| {
            let m = v[0][a].min(v[1][a]).min(v[2][a]);
            (m.floor().max(0.0) as usize).min(n - 1)
        });
        let hi: [usize; 3] = std::array::from_fn(|a| {
            let m = v[0][a].max(v[1][a]).max(v[2][a]);
            (m.floor().max(0.0) as usize).min(n - 1)
        });
        for x in lo[0]..=hi[0] {
            for y in lo[1]..=hi[1] {
                for z in lo[2]..=hi[2] {
                    let idx = (x * n + y) * n + z;
                    if surface[idx] {
                        continue;
                    }
                    let centre = [x as f32 + 0.5, y as f32 + 0.5, z as f32 + 0.5];
                    // A hair over half a cell: triangles lying exactly on a voxel face
                    // (the grid boundary, axis-aligned boxes) count as touching it.
                    if triangle_box_overlap(centre, 0.5 + 1e-4, v) {
                        surface[idx] = true;
                    }
                }
            }
        }
    }
    let solid = fill_interior(&surface, n);
    let mut grid = VoxelGrid::new([n, n, n]);
    grid.translate = placement.translate;
    grid.scale = placement.scale;
    for (d, s) in grid.data.iter_mut().zip(&solid) {
        *d = if *s { 1.0 } else { 0.0 };
    }
    Ok(grid)
}

/// Surface voxels plus every voxel the outside cannot reach (6-connected).
pub fn fill_interior(surface: &[bool], n: usize) -> Vec<bool> {
    let mut outside = vec![false; n * n * n];
    let mut stack: Vec<(usize, usize, usize)> = Vec::new();
    let idx = |x: usize, y: usize, z: usize| (x * n + y) * n + z;
    for a in 0..n {
        for b in 0..n {
            for (x, y, z) in [(0, a, b), (n - 1, a, b), (a, 0, b), (a, n - 1, b), (a, b, 0), (a, b, n - 1)] {
                let i = idx(x, y, z);
                if !surface[i] && !outside[i] {
                    outside[i] = true;
                    stack.push((x, y, z));
                }
            }
        }
    }
    while let Some((x, y, z)) = stack.pop() {
        let mut visit = |x: usize, y: usize, z: usize| {
            let i = idx(x, y, z);
            if !surface[i] && !outside[i] {
                outside[i] = true;
                stack.push((x, y, z));
            }
        };
        if x > 0 {
            visit(x - 1, y, z);
        }
        if x + 1 < n {
            visit(x + 1, y, z);
        }
        if y > 0 {
            visit(x, y - 1, z);
        }
        if y + 1 < n {
            visit(x, y + 1, z);
        }
        if z > 0 {
            visit(x, y, z - 1);
        }
        if z + 1 < n {
            visit(x, y, z + 1);
        }
    }
    outside.iter().map(|o| !o).collect()
}

/// Separating-axis test of a triangle against an axis-aligned cube (Akenine-Möller):
/// the 3 box axes, the triangle normal and the 9 edge cross products.
pub fn triangle_box_overlap(centre: V3, half: f32, tri: [V3; 3]) -> bool {
    let v = tri.map(|p| sub(p, centre));
    let e = [sub(v[1], v[0]), sub(v[2], v[1]), sub(v[0], v[2])];
    // Box face normals.
    for a in 0..3 {
        let (mn, mx) = min_max(v[0][a], v[1][a], v[2][a]);
        if mn > half || mx < -half {
            return false;
        }
    }
    // Triangle normal.
    let nrm = cross(e[0], e[1]);
    let r = half * (nrm[0].abs() + nrm[1].abs() + nrm[2].abs());
    if dot(nrm, v[0]).abs() > r {
        return false;
    }
    // Edge x box-axis cross products.
    for edge in e {
        for a in 0..3 {
            let mut axis = [0.0f32; 3];
            axis[a] = 1.0;
            let ax = cross(edge, axis);
            if dot(ax, ax) < 1e-20 {
                continue;
            }
            let p = [dot(ax, v[0]), dot(ax, v[1]), dot(ax, v[2])];
            let (mn, mx) = min_max(p[0], p[1], p[2]);
            let r = half * (ax[0].abs() + ax[1].abs() + ax[2].abs());
            if mn > r || mx < -r {
                return false;
            }
        }
    }
    true
}

fn min_max(a: f32, b: f32, c: f32) -> (f32, f32) {
    (a.min(b).min(c), a.max(b).max(c))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builder::{Material, MeshBuilder};

    fn mesh_of(f: impl FnOnce(&mut MeshBuilder, u16)) -> Mesh {
        let mut b = MeshBuilder::new();
        let m = b.material(Material::matte([0.5; 3]));
        f(&mut b, m);
        b.finish().mesh
    }

    fn occupied(g: &VoxelGrid) -> usize {
        g.count_at_least(0.5)
    }

    #[test]
    fn cube_fills_the_whole_grid() {
        let g = voxelize(&mesh_of(|b, m| b.cuboid([0.0; 3], [1.0; 3], m)), 32).unwrap();
        assert_eq!(occupied(&g), 32 * 32 * 32);
        // A half-size cube centred in a placement of the full cube fills 16^3 (+ the
        // conservative boundary ring, since its faces lie exactly on voxel faces).
        let mesh = mesh_of(|b, m| b.cuboid([0.0; 3], [1.0; 3], m));
        let outer = placement_for(&mesh).unwrap();
        let mut small = mesh.clone();
        for p in &mut small.positions {
            *p = p.map(|v| v * 0.5);
        }
        let g = voxelize_in(&small, 32, outer).unwrap();
        assert!((16usize.pow(3)..=18usize.pow(3)).contains(&occupied(&g)), "{}", occupied(&g));
    }

    #[test]
    fn sphere_volume_within_bounds() {
        let mesh = mesh_of(|b, m| b.ellipsoid([0.0; 3], [1.0; 3], 48, m));
        for res in [32usize, 64] {
            let g = voxelize(&mesh, res).unwrap();
            let exact = std::f64::consts::PI / 6.0 * (res as f64).powi(3);
            let got = occupied(&g) as f64;
            // Conservative surface voxels add at most about one shell of voxels.
            let shell = std::f64::consts::PI * (res as f64).powi(2);
            assert!(got >= exact * 0.97, "res {res}: {got} < {exact}");
            assert!(got <= exact + shell, "res {res}: {got} > {exact} + {shell}");
            assert!((got - exact) / exact < if res == 32 { 0.2 } else { 0.1 });
            // Centre voxel solid, corner empty.
            assert_eq!(g.get(res / 2, res / 2, res / 2), 1.0);
            assert_eq!(g.get(0, 0, 0), 0.0);
        }
    }

    #[test]
    fn thin_plate_is_kept() {
        // 1.0 x 0.004 x 1.0: far thinner than a voxel, must still give one full layer.
        let mesh = mesh_of(|b, m| b.cuboid([0.0, 0.0, 0.0], [1.0, 0.004, 1.0], m));
        let g = voxelize(&mesh, 32).unwrap();
        let n = occupied(&g);
        assert!((32 * 32..=2 * 32 * 32).contains(&n), "{n}");
        // A single open triangle (no volume at all) still marks its voxels.
        let tri = Mesh { positions: vec![[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.3]], triangles: vec![[0, 1, 2]], normals: vec![] };
        let g = voxelize(&tri, 32).unwrap();
        assert!(occupied(&g) >= 32 * 32 / 2);
    }

    #[test]
    fn open_box_with_small_hole_still_fills() {
        // A cube with one face's two triangles removed leaks, a cube with a tiny gap
        // (less than a voxel) does not: both behave predictably.
        let mesh = mesh_of(|b, m| b.cuboid([0.0; 3], [1.0; 3], m));
        let mut open = mesh.clone();
        open.triangles.truncate(10);
        let g = voxelize(&open, 16).unwrap();
        let n = occupied(&g);
        assert!(n < 16 * 16 * 16, "open box must not be filled solid");
        assert!(n >= 5 * 16 * 16 - 8 * 16, "walls must remain: {n}");
    }

    #[test]
    fn bad_meshes_fail_clearly() {
        assert_eq!(voxelize(&Mesh::default(), 32).unwrap_err(), VoxelizeError::NoTriangles);
        let bad = Mesh { positions: vec![[0.0; 3]], triangles: vec![[0, 1, 2]], normals: vec![] };
        assert!(matches!(voxelize(&bad, 32), Err(VoxelizeError::BadIndex { .. })));
        let point = Mesh { positions: vec![[1.0; 3]; 3], triangles: vec![[0, 1, 2]], normals: vec![] };
        assert_eq!(voxelize(&point, 32).unwrap_err(), VoxelizeError::ZeroExtent);
        let nan = Mesh { positions: vec![[f32::NAN, 0.0, 0.0], [1.0; 3], [0.0; 3]], triangles: vec![[0, 1, 2]], normals: vec![] };
        assert_eq!(voxelize(&nan, 32).unwrap_err(), VoxelizeError::NonFinite(0));
        let cube = mesh_of(|b, m| b.cuboid([0.0; 3], [1.0; 3], m));
        assert_eq!(voxelize(&cube, 0).unwrap_err(), VoxelizeError::BadResolution(0));
    }
}

/// The exposed faces of the occupied voxels (value >= 0.5) as a mesh in model space:
/// what the voxels look like, for previews and silhouette checks.
pub fn voxel_surface_mesh(grid: &VoxelGrid) -> Mesh {
    let [nx, ny, nz] = grid.dims;
    let occupied = |x: isize, y: isize, z: isize| -> bool {
        x >= 0 && y >= 0 && z >= 0 && (x as usize) < nx && (y as usize) < ny && (z as usize) < nz && grid.get(x as usize, y as usize, z as usize) >= 0.5
    };
    let cell: V3 = std::array::from_fn(|a| grid.scale / grid.dims[a] as f32);
    let mut mesh = Mesh::default();
    // For each axis direction: the neighbour offset and the face's 4 corners (unit cube).
    const FACES: [([isize; 3], [[f32; 3]; 4]); 6] = [
        ([1, 0, 0], [[1.0, 0.0, 0.0], [1.0, 1.0, 0.0], [1.0, 1.0, 1.0], [1.0, 0.0, 1.0]]),
        ([-1, 0, 0], [[0.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, 1.0, 1.0], [0.0, 1.0, 0.0]]),
        ([0, 1, 0], [[0.0, 1.0, 0.0], [0.0, 1.0, 1.0], [1.0, 1.0, 1.0], [1.0, 1.0, 0.0]]),
        ([0, -1, 0], [[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [1.0, 0.0, 1.0], [0.0, 0.0, 1.0]]),
        ([0, 0, 1], [[0.0, 0.0, 1.0], [1.0, 0.0, 1.0], [1.0, 1.0, 1.0], [0.0, 1.0, 1.0]]),
        ([0, 0, -1], [[0.0, 0.0, 0.0], [0.0, 1.0, 0.0], [1.0, 1.0, 0.0], [1.0, 0.0, 0.0]]),
    ];
    for x in 0..nx {
        for y in 0..ny {
            for z in 0..nz {
                if grid.get(x, y, z) < 0.5 {
                    continue;
                }
                let (xi, yi, zi) = (x as isize, y as isize, z as isize);
                for (offset, corners) in FACES {
                    if occupied(xi + offset[0], yi + offset[1], zi + offset[2]) {
                        continue;
                    }
                    let base = mesh.positions.len() as u32;
                    for c in corners {
                        let ijk = [x as f32 + c[0], y as f32 + c[1], z as f32 + c[2]];
                        mesh.positions.push(std::array::from_fn(|a| ijk[a] * cell[a] + grid.translate[a]));
                    }
                    mesh.triangles.push([base, base + 1, base + 2]);
                    mesh.triangles.push([base, base + 2, base + 3]);
                }
            }
        }
    }
    mesh
}
