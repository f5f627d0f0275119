//! Polycount cap: simplify a mesh to at most N triangles with meshoptimizer (`meshopt`).
//!
//! [`simplify`] first runs meshoptimizer's edge-collapse simplifier (`meshopt_simplify`),
//! which keeps the mesh's topology where it can, with the border locked (`LockBorder`: an
//! open mesh keeps its rim, so holes do not grow) and no error limit, because the cap is a
//! hard limit rather than a quality target. When that pass stops above the cap (locked
//! borders everywhere), the sloppy simplifier (`meshopt_simplifySloppy`, vertex clustering)
//! finishes the job: it always reaches the cap but may merge parts and open the surface, and
//! the report says it was used. Unused vertices are then dropped and normals recomputed.
//!
//! **What holds.** A closed mesh stays closed (no boundary edges) and consistently wound.
//! meshoptimizer does not check the link condition, so flattening a thin part can leave a
//! back-to-back pair of triangles (a fin) or pinch an edge between two sheets (used by four
//! triangles). Fin pairs are removed, which never opens the surface; for pinches the
//! simplification is redone (up to [`PINCH_RETRIES`] times) with the pinched vertices and their
//! neighbours locked. On the real 32^3 chair (3152 triangles after the default smoothing)
//! the result is watertight and manifold down to a cap of 1500 triangles; at 1000 and 500 it
//! stays closed with at most one pinched edge (0 or 1 at 1000 depending on the smoothing's
//! last bits). Callers report `Mesh::is_watertight` of the result, not of the input.

use thiserror::Error;

use crate::mesh::Mesh;

/// The smallest cap accepted: a tetrahedron, the smallest closed mesh.
pub const MIN_TRIANGLES: usize = 4;

#[derive(Debug, Clone, PartialEq, Error)]
pub enum SimplifyError {
    #[error("a cap of {0} triangles is below the smallest closed mesh ({MIN_TRIANGLES})")]
    CapTooSmall(usize),
    #[error("triangle {triangle} uses vertex {vertex} but the mesh has {vertex_count} vertices")]
    BadIndex { triangle: usize, vertex: u32, vertex_count: usize },
    #[error("the simplifier left {0} triangles, above the cap")]
    AboveCap(usize),
}

/// What [`simplify`] did.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SimplifyReport {
    pub triangles_before: usize,
    pub triangles_after: usize,
    /// meshoptimizer's own estimate of the deviation, relative to the mesh's extent (0 when
    /// nothing was removed).
    pub relative_error: f32,
    /// The topology-keeping pass stopped above the cap and vertex clustering finished it.
    pub sloppy: bool,
}

/// Cap `mesh` at `max_triangles` (see the module docs). A mesh already within the cap is
/// left exactly as it is.
pub fn simplify(mesh: &mut Mesh, max_triangles: usize) -> Result<SimplifyReport, SimplifyError> {
    simplify_tracking(mesh, max_triangles).map(|(report, _)| report)
}

/// [`simplify`], also saying where each vertex of the result came from: its index in the
/// mesh before (simplification keeps a subset of the vertices), so per-vertex data such as
/// colours can follow.
pub fn simplify_tracking(mesh: &mut Mesh, max_triangles: usize) -> Result<(SimplifyReport, Vec<u32>), SimplifyError> {
    if max_triangles < MIN_TRIANGLES {
        return Err(SimplifyError::CapTooSmall(max_triangles));
    }
    let before = mesh.triangles.len();
    let mut report = SimplifyReport { triangles_before: before, triangles_after: before, relative_error: 0.0, sloppy: false };
    if before <= max_triangles {
        return Ok((report, (0..mesh.positions.len() as u32).collect()));
    }
    let n = mesh.positions.len();
    if let Some((triangle, vertex)) =
        mesh.triangles.iter().enumerate().find_map(|(t, tri)| tri.iter().find(|&&v| v as usize >= n).map(|&v| (t, v)))
    {
        return Err(SimplifyError::BadIndex { triangle, vertex, vertex_count: n });
    }
    let indices: Vec<u32> = mesh.triangles.iter().flatten().copied().collect();
    let target = max_triangles * 3;
    let mut error = 0f32;
    // target_error 1.0 = the whole extent: no quality limit, the count decides.
    let options = meshopt::SimplifyOptions::LockBorder;
    let mut kept = remove_fins(&meshopt::simplify_decoder(&indices, &mesh.positions, target, 1.0, options, Some(&mut error)));
    // meshoptimizer does not check the link condition; where a collapse pinched the surface
    // (an edge used by more than two triangles), lock that edge's vertices and their
    // neighbours and start again, a few times, keeping the result with the fewest pinches.
    let mut pinched = pinched_vertices(&kept);
    let mut locks = vec![false; n];
    for _ in 0..PINCH_RETRIES {
        if pinched.is_empty() || kept.len() > target {
            break;
        }
        // Lock the pinched vertices and their original neighbours: a pinch forms when a
        // neighbour collapses into a vertex, which locking the vertex alone allows.
        pinched.iter().for_each(|&v| locks[v as usize] = true);
        for t in indices.chunks_exact(3) {
            if t.iter().any(|&v| pinched.binary_search(&v).is_ok()) {
                t.iter().for_each(|&v| locks[v as usize] = true);
            }
        }
        let mut retry_error = 0f32;
        let retry = remove_fins(&meshopt::simplify_with_locks_decoder(&indices, &mesh.positions, &locks, target, 1.0, options, Some(&mut retry_error)));
        let retry_pinched = pinched_vertices(&retry);
        if retry.len() > target || retry_pinched.len() >= pinched.len() {
            continue;
        }
        (kept, pinched, error) = (retry, retry_pinched, retry_error);
    }
    if kept.len() > target {
        kept = meshopt::simplify_sloppy_decoder(&kept, &mesh.positions, target, 1.0, Some(&mut error));
        report.sloppy = true;
    }
    if kept.len() > target {
        return Err(SimplifyError::AboveCap(kept.len() / 3));
    }
    let kept = remove_fins(&kept);
    // Keep the used vertices only, in first-use order (validators flag unused ones).
    let mut remap = vec![u32::MAX; n];
    let mut positions = Vec::with_capacity(kept.len() / 2);
    let mut origin = Vec::with_capacity(kept.len() / 2);
    let triangles = kept
        .chunks_exact(3)
        .map(|t| {
            [t[0], t[1], t[2]].map(|v| {
                let slot = &mut remap[v as usize];
                if *slot == u32::MAX {
                    *slot = positions.len() as u32;
                    positions.push(mesh.positions[v as usize]);
                    origin.push(v);
                }
                *slot
            })
        })
        .collect();
    *mesh = Mesh { positions, triangles, normals: Vec::new() };
    mesh.recompute_normals();
    report.triangles_after = mesh.triangles.len();
    report.relative_error = error;
    Ok((report, origin))
}

/// Rounds of re-simplification with the pinched vertices locked.
pub const PINCH_RETRIES: usize = 4;

/// Vertices of edges used by more than two triangles.
fn pinched_vertices(indices: &[u32]) -> Vec<u32> {
    use std::collections::HashMap;
    let mut uses: HashMap<(u32, u32), u32> = HashMap::with_capacity(indices.len());
    for t in indices.chunks_exact(3) {
        for k in 0..3 {
            let (a, b) = (t[k], t[(k + 1) % 3]);
            *uses.entry((a.min(b), a.max(b))).or_default() += 1;
        }
    }
    let mut vertices: Vec<u32> = uses.into_iter().filter(|&(_, count)| count > 2).flat_map(|((a, b), _)| [a, b]).collect();
    vertices.sort_unstable();
    vertices.dedup();
    vertices
}

/// Drop pairs of triangles on the same three vertices with opposite winding: the simplifier
/// leaves such zero-volume fins where it flattens a thin part, and each makes its edges
/// non-manifold. Removing both halves of a pair never opens the surface (each edge loses one
/// use in each direction).
pub(crate) fn remove_fins(indices: &[u32]) -> Vec<u32> {
    use std::collections::HashMap;
    let triangles: Vec<[u32; 3]> = indices.chunks_exact(3).map(|t| [t[0], t[1], t[2]]).collect();
    // Key: the sorted vertices; value: indices of triangles with each winding (even, odd).
    let mut by_vertices: HashMap<[u32; 3], (Vec<usize>, Vec<usize>)> = HashMap::new();
    for (i, t) in triangles.iter().enumerate() {
        let mut key = *t;
        key.sort_unstable();
        // A rotation of the sorted order keeps the winding; anything else flips it.
        let even = [key, [key[1], key[2], key[0]], [key[2], key[0], key[1]]].contains(t);
        let entry = by_vertices.entry(key).or_default();
        if even { entry.0.push(i) } else { entry.1.push(i) }
    }
    let mut drop = vec![false; triangles.len()];
    for (even, odd) in by_vertices.values() {
        for (&a, &b) in even.iter().zip(odd) {
            drop[a] = true;
            drop[b] = true;
        }
    }
    triangles.iter().zip(&drop).filter(|(_, &d)| !d).flat_map(|(t, _)| *t).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::marching_cubes::marching_cubes;
    use crate::voxel::VoxelGrid;

    /// A solid ball of radius 0.4 in a `size`^3 grid over the unit cube.
    fn ball(size: usize) -> Mesh {
        let mut grid = VoxelGrid::new([size; 3]);
        grid.translate = [-0.5; 3];
        for x in 0..size {
            for y in 0..size {
                for z in 0..size {
                    let c = grid.voxel_center(x, y, z);
                    grid.set(x, y, z, if c.iter().map(|v| v * v).sum::<f32>() <= 0.16 { 1.0 } else { 0.0 });
                }
            }
        }
        marching_cubes(&grid, 0.5).unwrap()
    }

    #[test]
    fn a_closed_mesh_stays_closed_within_the_cap_and_its_box() {
        let mut mesh = ball(48);
        let before = mesh.triangle_count();
        let (lo0, hi0) = mesh.bounds().unwrap();
        let volume = mesh.signed_volume();
        let report = simplify(&mut mesh, 1000).unwrap();
        assert!(before > 10_000, "{before}");
        assert_eq!(report.triangles_before, before);
        assert!(report.triangles_after <= 1000 && report.triangles_after > 500, "{report:?}");
        assert!(!report.sloppy);
        assert!(mesh.is_watertight(), "{:?}", mesh.edge_report());
        assert_eq!(mesh.euler_characteristic(), 2);
        let (lo, hi) = mesh.bounds().unwrap();
        for a in 0..3 {
            // Within 2% of the 0.8 diameter.
            assert!((lo[a] - lo0[a]).abs() < 0.016 && (hi[a] - hi0[a]).abs() < 0.016, "{lo:?} {hi:?} vs {lo0:?} {hi0:?}");
        }
        assert!((mesh.signed_volume() / volume - 1.0).abs() < 0.03);
        assert_eq!(mesh.normals.len(), mesh.positions.len());
        // Every vertex is used.
        let mut used = vec![false; mesh.positions.len()];
        mesh.triangles.iter().flatten().for_each(|&v| used[v as usize] = true);
        assert!(used.iter().all(|&u| u));
    }

    #[test]
    fn tracking_says_where_each_kept_vertex_came_from() {
        let original = ball(32);
        let mut mesh = original.clone();
        let (report, origin) = simplify_tracking(&mut mesh, 400).unwrap();
        assert!(report.triangles_after <= 400);
        assert_eq!(origin.len(), mesh.positions.len());
        for (new, &old) in origin.iter().enumerate() {
            assert_eq!(mesh.positions[new], original.positions[old as usize]);
        }
        // Within the cap: every vertex is its own origin.
        let mut same = original.clone();
        let (_, identity) = simplify_tracking(&mut same, usize::MAX).unwrap();
        assert_eq!(identity, (0..original.positions.len() as u32).collect::<Vec<_>>());
    }

    #[test]
    fn within_the_cap_nothing_changes_and_bad_caps_are_errors() {
        let mut mesh = ball(16);
        let original = mesh.clone();
        let report = simplify(&mut mesh, original.triangle_count()).unwrap();
        assert_eq!(mesh, original);
        assert_eq!(report.triangles_after, report.triangles_before);
        assert_eq!(simplify(&mut mesh, 3), Err(SimplifyError::CapTooSmall(3)));
        let mut broken = original.clone();
        broken.triangles[0][1] = 99_999;
        assert!(matches!(simplify(&mut broken, 10), Err(SimplifyError::BadIndex { triangle: 0, vertex: 99_999, .. })));
    }

    #[test]
    fn many_small_parts_reach_the_cap_and_stay_closed() {
        // 125 separate little cubes: the cap leaves about two triangles a cube, so parts
        // must flatten and go (as fins, removed in pairs); what is left stays closed.
        let mut grid = VoxelGrid::new([30; 3]);
        for x in (1..30).step_by(6) {
            for y in (1..30).step_by(6) {
                for z in (1..30).step_by(6) {
                    for d in 0..27 {
                        grid.set(x + d % 3, y + d / 3 % 3, z + d / 9, 1.0);
                    }
                }
            }
        }
        let mut mesh = marching_cubes(&grid, 0.5).unwrap();
        assert_eq!(mesh.triangle_components().1, 125);
        let report = simplify(&mut mesh, 300).unwrap();
        assert!(mesh.triangle_count() <= 300 && mesh.triangle_count() > 0, "{report:?}");
        let edges = mesh.edge_report();
        assert_eq!((edges.boundary_edges, edges.misoriented_edges), (0, 0), "{edges:?}");
    }

    #[test]
    fn when_locked_borders_stop_the_collapse_clustering_meets_the_cap() {
        // 2000 separate triangles: every vertex is on a border, so the locked-border pass
        // cannot remove anything and only the sloppy pass can.
        let mut mesh = Mesh::default();
        for i in 0..2000u32 {
            let (x, y) = ((i % 50) as f32 / 50.0, (i / 50) as f32 / 40.0);
            mesh.positions.extend([[x, y, 0.0], [x + 0.015, y, 0.0], [x, y + 0.02, 0.005]]);
            mesh.triangles.push([3 * i, 3 * i + 1, 3 * i + 2]);
        }
        let report = simplify(&mut mesh, 500).unwrap();
        assert!(report.sloppy, "{report:?}");
        assert!(mesh.triangle_count() <= 500 && mesh.triangle_count() > 0, "{report:?}");
    }

    #[test]
    fn fins_are_removed_in_pairs_and_nothing_else() {
        // Two opposite triangles on 0, 1, 2 (a fin), a same-winding repeat on 3, 4, 5 kept.
        let indices = [0, 1, 2, 1, 0, 2, 3, 4, 5, 4, 5, 3, 6, 7, 8];
        assert_eq!(remove_fins(&indices), vec![3, 4, 5, 4, 5, 3, 6, 7, 8]);
        assert_eq!(remove_fins(&[0, 1, 2, 2, 1, 0, 0, 2, 1]), vec![0, 2, 1]);
    }
}
