//! Mesh smoothing with uniform (umbrella) Laplacian weights.
//!
//! * Laplacian: `v <- v + lambda * (mean(neighbours) - v)`, repeated `iterations` times, the
//!   explicit scheme the paper applies after marching cubes (and what trimesh's
//!   `filter_laplacian` does without its volume constraint). It shrinks the shape.
//! * Taubin: each iteration is a `lambda` pass followed by a `mu` pass (`mu < -lambda < 0`),
//!   which removes high-frequency steps without the overall shrinkage.
//!
//! Only positions move; triangles (and so watertightness and topology) are untouched.
//! Neighbours are the vertices sharing an edge, stored once as a compressed sparse row
//! structure; positions are padded to four floats so each neighbour costs one vector load.

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::mesh::Mesh;

#[derive(Debug, Error, PartialEq)]
pub enum SmoothError {
    #[error("triangle {triangle} uses vertex {vertex} but the mesh has {vertex_count} vertices")]
    BadIndex { triangle: usize, vertex: u32, vertex_count: usize },
    #[error("smoothing factor {name} = {value} is out of range ({range})")]
    BadFactor { name: &'static str, value: f32, range: &'static str },
}

/// Vertex neighbourhoods in compressed sparse row form: the neighbours of vertex `v` are
/// `neighbours[offsets[v]..offsets[v + 1]]`, without repeats.
#[derive(Debug, Clone, PartialEq)]
pub struct Adjacency {
    pub offsets: Vec<u32>,
    pub neighbours: Vec<u32>,
}

impl Adjacency {
    pub fn from_mesh(mesh: &Mesh) -> Result<Adjacency, SmoothError> {
        let n = mesh.positions.len();
        for (triangle, t) in mesh.triangles.iter().enumerate() {
            if let Some(&vertex) = t.iter().find(|&&v| v as usize >= n) {
                return Err(SmoothError::BadIndex { triangle, vertex, vertex_count: n });
            }
        }
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
        let mut seen_by = vec![u32::MAX; n];
        let mut offsets = Vec::with_capacity(n + 1);
        let mut neighbours = Vec::with_capacity(raw.len() / 2);
        offsets.push(0);
        for v in 0..n {
            for &w in &raw[start[v] as usize..start[v + 1] as usize] {
                // Degenerate triangles can list a vertex as its own neighbour: skip it.
                if seen_by[w as usize] != v as u32 && w as usize != v {
                    seen_by[w as usize] = v as u32;
                    neighbours.push(w);
                }
            }
            offsets.push(neighbours.len() as u32);
        }
        Ok(Adjacency { offsets, neighbours })
    }
}

/// Which smoothing the refine stage applies after marching cubes.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "method", rename_all = "snake_case")]
pub enum Smoothing {
    None,
    Laplacian { lambda: f32, iterations: u32 },
    Taubin { lambda: f32, mu: f32, iterations: u32 },
}

/// lambda = 0.5 and 10 iterations: trimesh's `filter_laplacian` defaults, the common choice
/// for cleaning 32^3 marching-cubes output. Removes the voxel staircase but visibly shrinks
/// thin parts; Taubin is the option that keeps volume.
pub const DEFAULT_LAPLACIAN: Smoothing = Smoothing::Laplacian { lambda: 0.5, iterations: 10 };

/// Taubin's classic pass band: lambda 0.5, mu -0.53 (k_pb ~ 0.1).
pub const DEFAULT_TAUBIN: Smoothing = Smoothing::Taubin { lambda: 0.5, mu: -0.53, iterations: 10 };

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
        }
    }
}

/// Smooth `mesh` in place (positions, then normals recomputed if the mesh had normals).
pub fn smooth(mesh: &mut Mesh, smoothing: Smoothing) -> Result<(), SmoothError> {
    smoothing.validate()?;
    let factors: Vec<f32> = match smoothing {
        Smoothing::None => return Ok(()),
        Smoothing::Laplacian { lambda, iterations } => vec![lambda; iterations as usize],
        Smoothing::Taubin { lambda, mu, iterations } => [lambda, mu].repeat(iterations as usize),
    };
    if factors.is_empty() {
        return Ok(());
    }
    let adjacency = Adjacency::from_mesh(mesh)?;
    smooth_with(mesh, &adjacency, &factors);
    if !mesh.normals.is_empty() {
        mesh.recompute_normals();
    }
    Ok(())
}

/// One uniform-Laplacian pass per factor, with a prebuilt adjacency.
pub fn smooth_with(mesh: &mut Mesh, adjacency: &Adjacency, factors: &[f32]) {
    let mut current: Vec<[f32; 4]> = mesh.positions.iter().map(|p| [p[0], p[1], p[2], 0.0]).collect();
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
        assert!(matches!(
            smooth(&mut mesh, Smoothing::Laplacian { lambda: f32::NAN, iterations: 1 }),
            Err(SmoothError::BadFactor { .. })
        ));
    }
}
