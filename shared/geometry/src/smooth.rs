//! Mesh smoothing with uniform (umbrella) Laplacian weights.
//!
//! * Laplacian: `v <- v + lambda * (mean(neighbours) - v)`, repeated `iterations` times, the
//!   explicit scheme the paper applies after marching cubes (and what trimesh's
//!   `filter_laplacian` does without its volume constraint). It shrinks the shape.
//! * Taubin: each iteration is a `lambda` pass followed by a `mu` pass (`mu < -lambda < 0`),
//!   which removes high-frequency steps without the overall shrinkage.
//! * HC (Vollmer, Mencl, Muller 1999, "Improved Laplacian Smoothing of Noisy Surface
//!   Meshes"): a full umbrella step `p = L q`, then each vertex is pushed back by
//!   `b = p - (alpha o + (1 - alpha) q)` blended with its neighbours' mean push:
//!   `v = p - (beta b + (1 - beta) L b)`, where `o` are the original positions and `q` the
//!   previous iteration's. Same update order and parameters as trimesh's `filter_humphrey`.
//!
//! Every method refuses meshes it cannot smooth meaningfully (non-finite positions, vertices
//! no triangle edge reaches, edges shared by more than two triangles) with a [`SmoothError`]
//! that names the first offending element, instead of returning a silently wrong mesh.
//!
//! Only positions move; triangles (and so watertightness and topology) are untouched.
//! Neighbours are the vertices sharing an edge, stored once as a compressed sparse row
//! structure (built without deduplication on closed, consistently oriented meshes, where
//! the outgoing half-edges already list each neighbour once); HC works from a fixed-width
//! table of it ([`HcOperator`]). Positions are padded to four floats in the iterations so
//! each neighbour costs one vector load (speed against trimesh:
//! `docs/experiments/refinement.md`).

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::mesh::Mesh;

#[derive(Debug, Error, PartialEq)]
pub enum SmoothError {
    #[error("triangle {triangle} uses vertex {vertex} but the mesh has {vertex_count} vertices")]
    BadIndex { triangle: usize, vertex: u32, vertex_count: usize },
    #[error("smoothing factor {name} = {value} is out of range ({range})")]
    BadFactor { name: &'static str, value: f32, range: &'static str },
    #[error("vertex {vertex} has a non-finite position {position:?}")]
    NonFinitePosition { vertex: usize, position: [f32; 3] },
    #[error("vertex {vertex} is isolated: no triangle edge reaches it, so it has no neighbours to smooth towards")]
    IsolatedVertex { vertex: u32 },
    #[error("edge {a}-{b} is shared by more than two triangles (non-manifold): its neighbourhood is not a surface")]
    NonManifoldEdge { a: u32, b: u32 },
}

/// Vertex neighbourhoods in compressed sparse row form: the neighbours of vertex `v` are
/// `neighbours[offsets[v]..offsets[v + 1]]`, without repeats.
#[derive(Debug, Clone, PartialEq)]
pub struct Adjacency {
    pub offsets: Vec<u32>,
    pub neighbours: Vec<u32>,
}

impl Adjacency {
    /// Neighbour lists of `mesh`. Fails on an out-of-range index, on a vertex without any
    /// neighbour (unused, or used only by triangles that repeat it) and on an edge used by
    /// more than two triangles.
    pub fn from_mesh(mesh: &Mesh) -> Result<Adjacency, SmoothError> {
        let n = mesh.positions.len();
        for (triangle, t) in mesh.triangles.iter().enumerate() {
            if let Some(&vertex) = t.iter().find(|&&v| v as usize >= n) {
                return Err(SmoothError::BadIndex { triangle, vertex, vertex_count: n });
            }
        }
        match Adjacency::closed_manifold(mesh) {
            Some(adjacency) => Ok(adjacency),
            None => Adjacency::general(mesh),
        }
    }

    /// Any mesh with valid indices (open or non-manifold meshes, degenerate triangles, or
    /// one that is simply not consistently oriented), with the checks and their errors.
    fn general(mesh: &Mesh) -> Result<Adjacency, SmoothError> {
        let n = mesh.positions.len();
        // Every triangle adds both other corners to each corner's list; on a manifold mesh
        // each neighbour therefore arrives twice and the marker pass keeps the first.
        let mut start = vec![0u32; n + 1];
        for t in &mesh.triangles {
            for &v in t {
                start[v as usize + 1] += 2;
            }
        }
        for i in 0..n {
            start[i + 1] += start[i];
        }
        let mut fill = start.clone();
        let mut raw = vec![0u32; start[n] as usize];
        for t in &mesh.triangles {
            for k in 0..3 {
                let (a, b, c) = (t[k], t[(k + 1) % 3], t[(k + 2) % 3]);
                let slot = &mut fill[a as usize];
                raw[*slot as usize] = b;
                raw[*slot as usize + 1] = c;
                *slot += 2;
            }
        }
        // `seen_by[w] == v` marks w as already listed for v: dedup in one pass per row.
        // `uses[w]` then counts the triangles on edge v-w; a third one makes it non-manifold.
        let mut seen_by = vec![u32::MAX; n];
        let mut uses = vec![0u8; n];
        let mut offsets = Vec::with_capacity(n + 1);
        let mut neighbours = Vec::with_capacity(raw.len() / 2);
        offsets.push(0);
        for v in 0..n {
            let row_start = neighbours.len();
            for &w in &raw[start[v] as usize..start[v + 1] as usize] {
                // Degenerate triangles can list a vertex as its own neighbour: skip it.
                if w as usize == v {
                    continue;
                }
                let wi = w as usize;
                if seen_by[wi] != v as u32 {
                    seen_by[wi] = v as u32;
                    uses[wi] = 1;
                    neighbours.push(w);
                } else {
                    uses[wi] += 1;
                    if uses[wi] > 2 {
                        return Err(SmoothError::NonManifoldEdge { a: (v as u32).min(w), b: (v as u32).max(w) });
                    }
                }
            }
            if neighbours.len() == row_start {
                return Err(SmoothError::IsolatedVertex { vertex: v as u32 });
            }
            offsets.push(neighbours.len() as u32);
        }
        Ok(Adjacency { offsets, neighbours })
    }

    /// The fast path for closed, consistently oriented edge-manifold meshes (everything
    /// marching cubes makes): there every edge v-w is crossed once as v->w and once as
    /// w->v by the triangles' directed edges, so v's neighbours are exactly the targets
    /// of its outgoing edges, each once, with no deduplication. `None` when the mesh is not
    /// like that (a vertex whose outgoing targets repeat, or differ from the sources of its
    /// incoming edges, or which has no triangle); the general path then decides.
    fn closed_manifold(mesh: &Mesh) -> Option<Adjacency> {
        Adjacency::closed_manifold_rows(mesh, |_, _, _| ())
    }

    /// [`Adjacency::closed_manifold`], also handing each checked row to `visit` (in vertex
    /// order) so a caller can build its own form in the same sweep; its third argument is
    /// the row followed by the next rows' entries, [`SLOTS`] long where the array allows.
    fn closed_manifold_rows(mesh: &Mesh, mut visit: impl FnMut(usize, &[u32], &[u32])) -> Option<Adjacency> {
        let n = mesh.positions.len();
        // Corner counts, summed into row ends; the scatter below counts each row back down to
        // its start, so no second copy of the offsets is needed.
        let mut offsets = vec![0u32; n + 1];
        for t in &mesh.triangles {
            for &v in t {
                offsets[v as usize] += 1;
            }
        }
        for i in 1..=n {
            offsets[i] += offsets[i - 1];
        }
        let corners = offsets[n] as usize;
        let mut outgoing = vec![0u32; corners];
        let mut incoming = vec![0u32; corners];
        for t in &mesh.triangles {
            for k in 0..3 {
                let (a, b, c) = (t[k] as usize, t[(k + 1) % 3], t[(k + 2) % 3]);
                offsets[a] -= 1;
                let slot = offsets[a] as usize;
                outgoing[slot] = b;
                incoming[slot] = c;
            }
        }
        // Per vertex: the outgoing targets are distinct (and not v itself), and every incoming
        // source consumes one of them. Equal lengths make that a permutation, so each edge
        // has exactly one triangle on either side.
        let mut marked = vec![u32::MAX; n];
        for v in 0..n {
            let (start, end) = (offsets[v] as usize, offsets[v + 1] as usize);
            let mut bad = start == end;
            for &w in &outgoing[start..end] {
                bad |= marked[w as usize] == v as u32 || w as usize == v;
                marked[w as usize] = v as u32;
            }
            for &c in &incoming[start..end] {
                bad |= marked[c as usize] != v as u32;
                marked[c as usize] = u32::MAX;
            }
            if bad {
                return None;
            }
            visit(v, &outgoing[start..end], &outgoing[start..corners.min(start + SLOTS)]);
        }
        Some(Adjacency { offsets, neighbours: outgoing })
    }
}

/// Which smoothing the refine stage applies after marching cubes.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "method", rename_all = "snake_case")]
pub enum Smoothing {
    None,
    Laplacian { lambda: f32, iterations: u32 },
    Taubin { lambda: f32, mu: f32, iterations: u32 },
    /// Vollmer et al.'s HC algorithm: `alpha` pulls towards the original positions, `beta`
    /// weighs a vertex's own correction against its neighbours'.
    Hc { alpha: f32, beta: f32, iterations: u32 },
}

/// lambda = 0.5 and 10 iterations: trimesh's `filter_laplacian` defaults, the common choice
/// for cleaning 32^3 marching-cubes output, and on the trained pack's predictions meshed at
/// the refine level 0.5 the best count by F-score (5, 10, 20, 40 tried:
/// `docs/experiments/refinement.md`). Removes the voxel staircase but visibly shrinks thin
/// parts; Taubin is the option that keeps volume.
pub const DEFAULT_LAPLACIAN: Smoothing = Smoothing::Laplacian { lambda: 0.5, iterations: 10 };

/// Taubin's classic pass band: lambda 0.5, mu -0.53 (k_pb ~ 0.1).
pub const DEFAULT_TAUBIN: Smoothing = Smoothing::Taubin { lambda: 0.5, mu: -0.53, iterations: 10 };

/// alpha 0.1, beta 0.5, 10 iterations: the paper's suggested setting and trimesh's
/// `filter_humphrey` defaults.
pub const DEFAULT_HC: Smoothing = Smoothing::Hc { alpha: 0.1, beta: 0.5, iterations: 10 };

impl Smoothing {
    fn validate(&self) -> Result<(), SmoothError> {
        let check = |name, value: f32, ok: bool, range| {
            if ok && value.is_finite() {
                Ok(())
            } else {
                Err(SmoothError::BadFactor { name, value, range })
            }
        };
        match *self {
            Smoothing::None => Ok(()),
            Smoothing::Laplacian { lambda, .. } => check("lambda", lambda, lambda > 0.0 && lambda <= 1.0, "0 < lambda <= 1"),
            Smoothing::Taubin { lambda, mu, .. } => {
                check("lambda", lambda, lambda > 0.0 && lambda <= 1.0, "0 < lambda <= 1")?;
                check("mu", mu, mu < -lambda && mu >= -1.0, "-1 <= mu < -lambda")
            }
            Smoothing::Hc { alpha, beta, .. } => {
                check("alpha", alpha, (0.0..=1.0).contains(&alpha), "0 <= alpha <= 1")?;
                check("beta", beta, (0.0..=1.0).contains(&beta), "0 <= beta <= 1")
            }
        }
    }
}

/// Smooth `mesh` in place (positions, then normals recomputed if the mesh had normals).
///
/// Any method other than [`Smoothing::None`] first checks the mesh (finite positions, then
/// [`Adjacency::from_mesh`]'s checks), even with zero iterations, so a bad mesh is reported
/// the same way whatever the iteration count; on error the mesh is left untouched.
pub fn smooth(mesh: &mut Mesh, smoothing: Smoothing) -> Result<(), SmoothError> {
    smoothing.validate()?;
    if smoothing == Smoothing::None {
        return Ok(());
    }
    check_positions(mesh)?;
    match smoothing {
        Smoothing::None => return Ok(()),
        Smoothing::Laplacian { lambda, iterations } => smooth_with(mesh, &Adjacency::from_mesh(mesh)?, &vec![lambda; iterations as usize]),
        Smoothing::Taubin { lambda, mu, iterations } => {
            smooth_with(mesh, &Adjacency::from_mesh(mesh)?, &[lambda, mu].repeat(iterations as usize))
        }
        Smoothing::Hc { alpha, beta, iterations } => hc_with(mesh, &HcOperator::from_mesh(mesh)?, alpha, beta, iterations),
    }
    if !mesh.normals.is_empty() {
        mesh.recompute_normals();
    }
    Ok(())
}

/// The first vertex whose position has a NaN or infinite coordinate, as an error.
pub fn check_positions(mesh: &Mesh) -> Result<(), SmoothError> {
    match mesh.positions.iter().position(|p| !p.iter().all(|c| c.is_finite())) {
        Some(vertex) => Err(SmoothError::NonFinitePosition { vertex, position: mesh.positions[vertex] }),
        None => Ok(()),
    }
}

fn padded(mesh: &Mesh) -> Vec<[f32; 4]> {
    mesh.positions.iter().map(|p| [p[0], p[1], p[2], 0.0]).collect()
}

/// Neighbour slots per vertex in the HC kernel's fixed-width table. Marching-cubes vertices
/// have 3..15 neighbours, mostly 4..8: a fixed trip count keeps the inner loop free of
/// mispredicted branches; longer rows (about one vertex in twenty) finish from a side list.
const SLOTS: usize = 8;

/// The neighbourhoods HC iterates over, built straight from the triangles (one pass, no
/// intermediate edge list) with the same checks as [`Adjacency::from_mesh`].
///
/// Row `v` of `table` holds the first [`SLOTS`] neighbours of `v`, padded with `n` (the index
/// of an all-zero entry the kernel appends to its arrays, so empty slots add nothing); the
/// rest are `extra[extra_offsets[v]..extra_offsets[v + 1]]`.
#[derive(Debug, Clone)]
pub struct HcOperator {
    table: Vec<[u32; SLOTS]>,
    /// 1 / valence; below 1 / SLOTS exactly when the row continues in `extra`.
    inverse: Vec<f32>,
    extra_offsets: Vec<u32>,
    extra: Vec<u32>,
    /// Largest `w - v` over all edges v-w: how far the correction pass must trail the push.
    lag: usize,
    /// The vertex count, also the padding index.
    n: usize,
}

impl HcOperator {
    /// Fails like [`Adjacency::from_mesh`]: on an out-of-range index, a vertex without any
    /// neighbour and an edge used by more than two triangles.
    pub fn from_mesh(mesh: &Mesh) -> Result<HcOperator, SmoothError> {
        let n = mesh.positions.len();
        for (triangle, t) in mesh.triangles.iter().enumerate() {
            if let Some(&vertex) = t.iter().find(|&&v| v as usize >= n) {
                return Err(SmoothError::BadIndex { triangle, vertex, vertex_count: n });
            }
        }
        // Marching-cubes meshes: the table is filled while the fast path checks each row.
        let mut operator = HcOperator::with_capacity(n);
        if Adjacency::closed_manifold_rows(mesh, |v, row, ahead| operator.push_row(v, row, ahead)).is_some() {
            return Ok(operator);
        }
        Ok(HcOperator::from_adjacency(&Adjacency::general(mesh)?))
    }

    /// The table form of `adjacency` (every vertex must have a neighbour).
    pub fn from_adjacency(adjacency: &Adjacency) -> HcOperator {
        let n = adjacency.offsets.len() - 1;
        let mut operator = HcOperator::with_capacity(n);
        let all = &adjacency.neighbours;
        for v in 0..n {
            let (start, end) = (adjacency.offsets[v] as usize, adjacency.offsets[v + 1] as usize);
            operator.push_row(v, &all[start..end], &all[start..all.len().min(start + SLOTS)]);
        }
        operator
    }

    fn with_capacity(n: usize) -> HcOperator {
        HcOperator {
            table: Vec::with_capacity(n),
            inverse: Vec::with_capacity(n),
            extra_offsets: {
                let mut offsets = Vec::with_capacity(n + 1);
                offsets.push(0);
                offsets
            },
            // Marching cubes: about one vertex in twenty has more than SLOTS neighbours.
            extra: Vec::with_capacity(n / 8),
            lag: 0,
            n,
        }
    }

    /// Appends vertex `v`'s row (rows arrive in vertex order; padding is `n`, the number of
    /// rows the operator will have).
    #[inline(always)]
    fn push_row(&mut self, v: usize, row: &[u32], ahead: &[u32]) {
        let pad = self.n as u32;
        let d = row.len();
        // `ahead` is the row and whatever follows it, at most SLOTS long: with all SLOTS
        // there, a fixed-width select fills the table row without a branch or a memcpy call.
        let (slots, far) = match <&[u32; SLOTS]>::try_from(ahead) {
            Ok(window) => {
                let slots: [u32; SLOTS] = std::array::from_fn(|k| if k < d { window[k] } else { pad });
                let far = std::array::from_fn::<u32, SLOTS, _>(|k| if k < d { window[k] } else { 0 }).into_iter().max().unwrap_or(0);
                (slots, far)
            }
            Err(_) => (std::array::from_fn(|k| row.get(k).copied().unwrap_or(pad)), row.iter().copied().max().unwrap_or(0)),
        };
        self.table.push(slots);
        let mut far = far as usize;
        if d > SLOTS {
            self.extra.extend_from_slice(&row[SLOTS..]);
            far = far.max(row[SLOTS..].iter().copied().max().unwrap_or(0) as usize);
        }
        self.lag = self.lag.max(far.saturating_sub(v));
        self.inverse.push(1.0 / d.max(1) as f32);
        self.extra_offsets.push(self.extra.len() as u32);
    }

    /// `inverse` times the sum of `values` over vertex `v`'s neighbours.
    #[inline(always)]
    fn mean(&self, values: &[[f32; 4]], v: usize) -> [f32; 4] {
        let mut sum = [0f32; 4];
        for &w in &self.table[v] {
            let q = values[w as usize];
            for a in 0..4 {
                sum[a] += q[a];
            }
        }
        let inverse = self.inverse[v];
        if inverse < 1.0 / SLOTS as f32 {
            for &w in &self.extra[self.extra_offsets[v] as usize..self.extra_offsets[v + 1] as usize] {
                let q = values[w as usize];
                for a in 0..4 {
                    sum[a] += q[a];
                }
            }
        }
        sum.map(|s| s * inverse)
    }
}

/// `iterations` HC steps with a prebuilt operator. Panics if `operator` was built for a
/// mesh with a different vertex count (a caller bug, not bad input).
pub fn hc_with(mesh: &mut Mesh, operator: &HcOperator, alpha: f32, beta: f32, iterations: u32) {
    let n = mesh.positions.len();
    assert_eq!(operator.n, n, "operator built for another mesh");
    // One extra all-zero entry at index n: empty slots point there and add nothing.
    let mut current = padded(mesh);
    current.push([0.0; 4]);
    // The original positions are only read at the vertex being updated, never gathered, so
    // they are read from the mesh as they are (a quarter fewer bytes than a padded copy).
    let original = &mesh.positions;
    // Every entry but the zero at n is written before it is read.
    let mut next = vec![[0f32; 4]; n + 1];
    let mut push = vec![[0f32; 4]; n + 1];
    // The correction of vertex u needs every neighbour's push, so it trails the push pass by
    // the largest forward neighbour distance. Marching cubes numbers vertices slab by slab,
    // so that lag is about one slab: both passes then share one trip through memory.
    let lag = operator.lag.min(n);
    for _ in 0..iterations {
        for v in 0..lag {
            hc_push(operator, original, &current, &mut next, &mut push, alpha, beta, v);
        }
        for v in lag..n {
            hc_push(operator, original, &current, &mut next, &mut push, alpha, beta, v);
            hc_correct(operator, &mut next, &push, beta, v - lag);
        }
        for u in n - lag..n {
            hc_correct(operator, &mut next, &push, beta, u);
        }
        std::mem::swap(&mut current, &mut next);
    }
    for (p, q) in mesh.positions.iter_mut().zip(&current) {
        *p = [q[0], q[1], q[2]];
    }
}

/// With `p = L q` and `b = p - (alpha o + (1 - alpha) q)` at vertex `v`: writes `b` into
/// `push` and `p - beta b` (the vertex's own part of the result) into `next`.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn hc_push(
    operator: &HcOperator,
    original: &[[f32; 3]],
    current: &[[f32; 4]],
    next: &mut [[f32; 4]],
    push: &mut [[f32; 4]],
    alpha: f32,
    beta: f32,
    v: usize,
) {
    let mean = operator.mean(current, v);
    let (o, q) = (original[v], current[v]);
    let o = [o[0], o[1], o[2], 0.0];
    let (out, b) = (&mut next[v], &mut push[v]);
    for a in 0..4 {
        b[a] = mean[a] - (alpha * o[a] + (1.0 - alpha) * q[a]);
        out[a] = mean[a] - beta * b[a];
    }
}

/// Completes `v = p - (beta b + (1 - beta) L b)` at vertex `u`, in place on `next`.
#[inline(always)]
fn hc_correct(operator: &HcOperator, next: &mut [[f32; 4]], push: &[[f32; 4]], beta: f32, u: usize) {
    let mean = operator.mean(push, u);
    let out = &mut next[u];
    for a in 0..4 {
        out[a] -= (1.0 - beta) * mean[a];
    }
}

/// One uniform-Laplacian pass per factor, with a prebuilt adjacency.
pub fn smooth_with(mesh: &mut Mesh, adjacency: &Adjacency, factors: &[f32]) {
    let mut current = padded(mesh);
    let mut next = current.clone();
    for &factor in factors {
        laplacian_pass(&current, &mut next, adjacency, factor);
        std::mem::swap(&mut current, &mut next);
    }
    for (p, q) in mesh.positions.iter_mut().zip(&current) {
        *p = [q[0], q[1], q[2]];
    }
}

fn laplacian_pass(current: &[[f32; 4]], next: &mut [[f32; 4]], adjacency: &Adjacency, factor: f32) {
    let offsets = &adjacency.offsets;
    for (v, out) in next.iter_mut().enumerate() {
        let row = &adjacency.neighbours[offsets[v] as usize..offsets[v + 1] as usize];
        let p = current[v];
        if row.is_empty() {
            *out = p;
            continue;
        }
        let mut sum = [0f32; 4];
        for &w in row {
            let q = current[w as usize];
            for a in 0..4 {
                sum[a] += q[a];
            }
        }
        let weight = factor / row.len() as f32;
        for a in 0..4 {
            out[a] = p[a] + (sum[a] * weight - factor * p[a]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tetrahedron() -> Mesh {
        Mesh {
            positions: vec![[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]],
            triangles: vec![[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]],
            normals: Vec::new(),
        }
    }

    #[test]
    fn adjacency_lists_each_edge_once() {
        let adjacency = Adjacency::from_mesh(&tetrahedron()).unwrap();
        assert_eq!(adjacency.offsets, vec![0, 3, 6, 9, 12]);
        for v in 0..4u32 {
            let mut row = adjacency.neighbours[3 * v as usize..3 * v as usize + 3].to_vec();
            row.sort_unstable();
            let others: Vec<u32> = (0..4).filter(|&w| w != v).collect();
            assert_eq!(row, others);
        }
    }

    fn sorted_rows(adjacency: &Adjacency) -> Vec<Vec<u32>> {
        adjacency
            .offsets
            .windows(2)
            .map(|w| {
                let mut row = adjacency.neighbours[w[0] as usize..w[1] as usize].to_vec();
                row.sort_unstable();
                row
            })
            .collect()
    }

    #[test]
    fn closed_manifold_fast_path_lists_the_same_neighbours() {
        // A noisy marching-cubes blob: closed, consistently oriented, valences 3 to 12+.
        let mut grid = crate::VoxelGrid::new([12; 3]);
        let mut state = 0x2545_F491_4F6C_DD1Du64;
        for x in 0..12 {
            for y in 0..12 {
                for z in 0..12 {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    let r = [x, y, z].map(|i| i as f32 - 5.5).iter().map(|c| c * c).sum::<f32>().sqrt();
                    let inside = (r <= 4.0) != ((r - 4.0).abs() < 1.0 && state % 4 == 0);
                    grid.set(x, y, z, if inside { 1.0 } else { 0.0 });
                }
            }
        }
        let mesh = crate::marching_cubes::marching_cubes(&grid, 0.5).unwrap();
        let fast = Adjacency::closed_manifold(&mesh).expect("marching cubes output takes the fast path");
        assert_eq!(sorted_rows(&fast), sorted_rows(&Adjacency::general(&mesh).unwrap()));
        assert_eq!(fast, Adjacency::from_mesh(&mesh).unwrap());
    }

    #[test]
    fn other_meshes_take_the_general_path_with_the_same_answer() {
        // One triangle turned over: still closed and manifold, no longer oriented.
        let mut flipped = tetrahedron();
        flipped.triangles[3] = [1, 3, 2];
        // Open: one triangle missing.
        let mut open = tetrahedron();
        open.triangles.pop();
        for mesh in [flipped, open] {
            assert!(Adjacency::closed_manifold(&mesh).is_none(), "{mesh:?}");
            let rows = sorted_rows(&Adjacency::from_mesh(&mesh).unwrap());
            assert_eq!(rows, sorted_rows(&Adjacency::from_mesh(&tetrahedron()).unwrap()), "{mesh:?}");
        }
        assert!(Adjacency::closed_manifold(&tetrahedron()).is_some());
    }

    #[test]
    fn one_pass_moves_towards_the_neighbour_mean() {
        let mut mesh = tetrahedron();
        smooth(&mut mesh, Smoothing::Laplacian { lambda: 0.5, iterations: 1 }).unwrap();
        // Vertex 0's neighbours average to (1/3, 1/3, 1/3): halfway there is 1/6 each.
        for c in mesh.positions[0] {
            assert!((c - 1.0 / 6.0).abs() < 1e-6);
        }
        // Vertex 1 at (1,0,0), neighbours mean (0, 1/3, 1/3): -> (0.5, 1/6, 1/6).
        let expected = [0.5, 1.0 / 6.0, 1.0 / 6.0];
        for (c, e) in mesh.positions[1].iter().zip(expected) {
            assert!((c - e).abs() < 1e-6);
        }
    }

    #[test]
    fn bad_input_is_an_error() {
        let mut mesh = tetrahedron();
        mesh.triangles.push([0, 1, 9]);
        assert!(matches!(smooth(&mut mesh, DEFAULT_LAPLACIAN), Err(SmoothError::BadIndex { vertex: 9, .. })));
        let mut mesh = tetrahedron();
        let bad = Smoothing::Taubin { lambda: 0.5, mu: -0.4, iterations: 1 };
        assert!(matches!(smooth(&mut mesh, bad), Err(SmoothError::BadFactor { name: "mu", .. })));
        assert!(matches!(smooth(&mut mesh, Smoothing::Laplacian { lambda: f32::NAN, iterations: 1 }), Err(SmoothError::BadFactor { .. })));
    }

    const METHODS: [Smoothing; 3] = [DEFAULT_LAPLACIAN, DEFAULT_TAUBIN, DEFAULT_HC];

    #[test]
    fn every_method_refuses_a_nan_position() {
        for method in METHODS {
            let mut mesh = tetrahedron();
            mesh.positions[2][1] = f32::NAN;
            let before = mesh.clone();
            let error = smooth(&mut mesh, method).unwrap_err();
            assert!(matches!(error, SmoothError::NonFinitePosition { vertex: 2, .. }), "{method:?}: {error}");
            assert_eq!(format!("{mesh:?}"), format!("{before:?}"), "the mesh is left untouched");
            mesh.positions[2][1] = f32::INFINITY;
            assert!(matches!(smooth(&mut mesh, method), Err(SmoothError::NonFinitePosition { vertex: 2, .. })));
        }
    }

    #[test]
    fn every_method_refuses_an_isolated_vertex() {
        for method in METHODS {
            // Unused extra vertex.
            let mut mesh = tetrahedron();
            mesh.positions.push([5.0, 5.0, 5.0]);
            let error = smooth(&mut mesh, method).unwrap_err();
            assert_eq!(error, SmoothError::IsolatedVertex { vertex: 4 }, "{method:?}");
            assert!(error.to_string().contains("isolated"));
            // Used only by a triangle that collapses onto it: still no neighbour.
            mesh.triangles.push([4, 4, 4]);
            assert_eq!(smooth(&mut mesh, method), Err(SmoothError::IsolatedVertex { vertex: 4 }));
            // Zero iterations check the mesh all the same.
            let zero = match method {
                Smoothing::Laplacian { lambda, .. } => Smoothing::Laplacian { lambda, iterations: 0 },
                Smoothing::Taubin { lambda, mu, .. } => Smoothing::Taubin { lambda, mu, iterations: 0 },
                Smoothing::Hc { alpha, beta, .. } => Smoothing::Hc { alpha, beta, iterations: 0 },
                Smoothing::None => unreachable!(),
            };
            assert_eq!(smooth(&mut mesh, zero), Err(SmoothError::IsolatedVertex { vertex: 4 }));
        }
        // `None` means "leave the marching-cubes mesh as it is": no checks, no error.
        let mut mesh = tetrahedron();
        mesh.positions.push([5.0, 5.0, 5.0]);
        assert_eq!(smooth(&mut mesh, Smoothing::None), Ok(()));
    }

    #[test]
    fn every_method_refuses_a_non_manifold_edge() {
        for method in METHODS {
            // A third triangle (a fin) on the tetrahedron's edge 1-2.
            let mut mesh = tetrahedron();
            mesh.positions.push([1.0, 1.0, 1.0]);
            mesh.triangles.push([1, 2, 4]);
            let error = smooth(&mut mesh, method).unwrap_err();
            assert_eq!(error, SmoothError::NonManifoldEdge { a: 1, b: 2 }, "{method:?}");
            assert!(error.to_string().contains("non-manifold"));
        }
    }

    #[test]
    fn open_meshes_are_allowed() {
        // A boundary edge (one triangle) is fine: only edges with three or more are refused.
        let mut mesh = tetrahedron();
        mesh.triangles.pop();
        for method in METHODS {
            let mut m = mesh.clone();
            smooth(&mut m, method).unwrap();
            assert!(m.positions.iter().flatten().all(|c| c.is_finite()));
        }
    }

    #[test]
    fn hc_one_step_by_hand() {
        // Vertex 0 of the tetrahedron: p = (1/3, 1/3, 1/3); b0 = p - (alpha o + (1 - alpha) q)
        // = p since o = q = 0. Every vertex's p is the mean of the other three, b_i = p_i - q_i
        // (alpha does not matter on the first step because o = q).
        let (alpha, beta) = (0.1f32, 0.5f32);
        let mesh = tetrahedron();
        let q = mesh.positions.clone();
        let mean_others = |values: &[[f32; 3]], v: usize| -> [f32; 3] {
            let mut s = [0f32; 3];
            for (w, x) in values.iter().enumerate() {
                if w != v {
                    for a in 0..3 {
                        s[a] += x[a] / 3.0;
                    }
                }
            }
            s
        };
        let p: Vec<[f32; 3]> = (0..4).map(|v| mean_others(&q, v)).collect();
        let b: Vec<[f32; 3]> = (0..4).map(|v| std::array::from_fn(|a| p[v][a] - q[v][a])).collect();
        let mut smoothed = mesh.clone();
        smooth(&mut smoothed, Smoothing::Hc { alpha, beta, iterations: 1 }).unwrap();
        for v in 0..4 {
            let lb = mean_others(&b, v);
            for a in 0..3 {
                let expected = p[v][a] - (beta * b[v][a] + (1.0 - beta) * lb[a]);
                assert!((smoothed.positions[v][a] - expected).abs() < 1e-6, "vertex {v} axis {a}");
            }
        }
    }

    #[test]
    fn hc_factors_are_checked() {
        let mut mesh = tetrahedron();
        for (alpha, beta, name) in [(-0.1, 0.5, "alpha"), (1.1, 0.5, "alpha"), (0.1, 1.5, "beta"), (0.1, f32::NAN, "beta")] {
            let error = smooth(&mut mesh, Smoothing::Hc { alpha, beta, iterations: 1 }).unwrap_err();
            assert!(matches!(error, SmoothError::BadFactor { name: n, .. } if n == name), "{alpha} {beta}: {error}");
        }
    }

    #[test]
    fn hc_reads_from_json() {
        let smoothing: Smoothing = serde_json::from_str(r#"{"method": "hc", "alpha": 0.1, "beta": 0.5, "iterations": 10}"#).unwrap();
        assert_eq!(smoothing, DEFAULT_HC);
    }

    /// HC exactly as trimesh writes it, with plain neighbour lists.
    fn naive_hc(mesh: &Mesh, alpha: f32, beta: f32, iterations: u32) -> Vec<[f32; 3]> {
        let adjacency = Adjacency::from_mesh(mesh).unwrap();
        let laplacian = |x: &[[f32; 3]]| -> Vec<[f32; 3]> {
            (0..x.len())
                .map(|v| {
                    let row = &adjacency.neighbours[adjacency.offsets[v] as usize..adjacency.offsets[v + 1] as usize];
                    std::array::from_fn(|a| row.iter().map(|&w| x[w as usize][a]).sum::<f32>() / row.len() as f32)
                })
                .collect()
        };
        let original = mesh.positions.clone();
        let mut vertices = original.clone();
        for _ in 0..iterations {
            let q = vertices.clone();
            let p = laplacian(&q);
            let b: Vec<[f32; 3]> =
                (0..p.len()).map(|v| std::array::from_fn(|a| p[v][a] - (alpha * original[v][a] + (1.0 - alpha) * q[v][a]))).collect();
            let lb = laplacian(&b);
            vertices = (0..p.len()).map(|v| std::array::from_fn(|a| p[v][a] - (beta * b[v][a] + (1.0 - beta) * lb[v][a]))).collect();
        }
        vertices
    }

    #[test]
    fn hc_kernel_matches_the_plain_formula_on_high_valence_vertices() {
        // A bipyramid over a 13-gon: the apexes (first and last index) have 13 neighbours,
        // more than the kernel's fixed slots, and sit far apart in index order.
        let k = 13u32;
        let mut positions = vec![[0.0, 0.0, 1.3]];
        for i in 0..k {
            let t = i as f32 * std::f32::consts::TAU / k as f32;
            positions.push([t.cos() * (1.0 + 0.2 * (i % 3) as f32), t.sin(), 0.1 * (i % 2) as f32]);
        }
        positions.push([0.1, 0.0, -0.9]);
        let bottom = k + 1;
        let mut triangles = Vec::new();
        for i in 0..k {
            let (a, b) = (1 + i, 1 + (i + 1) % k);
            triangles.push([0, a, b]);
            triangles.push([bottom, b, a]);
        }
        let mesh = Mesh { positions, triangles, normals: Vec::new() };
        assert!(mesh.edge_report().is_watertight_manifold());
        for (alpha, beta, iterations) in [(0.1, 0.5, 10), (0.0, 0.0, 4), (0.4, 0.9, 25)] {
            let expected = naive_hc(&mesh, alpha, beta, iterations);
            let mut smoothed = mesh.clone();
            smooth(&mut smoothed, Smoothing::Hc { alpha, beta, iterations }).unwrap();
            for (ours, theirs) in smoothed.positions.iter().zip(&expected) {
                for a in 0..3 {
                    assert!((ours[a] - theirs[a]).abs() < 1e-5, "{ours:?} vs {theirs:?}");
                }
            }
        }
    }
}
