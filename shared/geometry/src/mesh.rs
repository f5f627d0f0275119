//! Indexed triangle meshes and the measurements the refine stage checks them with.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

/// An indexed triangle mesh: shared vertices, counter-clockwise triangles seen from
/// outside (so face normals point outward). `normals` is empty or one per vertex.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Mesh {
    pub positions: Vec<[f32; 3]>,
    pub triangles: Vec<[u32; 3]>,
    pub normals: Vec<[f32; 3]>,
}

/// Edge-use summary of a mesh (edges are undirected vertex pairs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EdgeReport {
    pub edges: usize,
    /// Edges used by exactly one triangle (holes).
    pub boundary_edges: usize,
    /// Edges used by more than two triangles.
    pub non_manifold_edges: usize,
    /// Edges whose two triangles traverse them in the same direction (inconsistent winding).
    pub misoriented_edges: usize,
    /// Triangles that repeat a vertex index.
    pub degenerate_triangles: usize,
}

impl EdgeReport {
    /// Closed, edge-manifold and consistently oriented.
    pub fn is_watertight_manifold(&self) -> bool {
        self.boundary_edges == 0 && self.non_manifold_edges == 0 && self.misoriented_edges == 0 && self.degenerate_triangles == 0
    }
}

fn sub(a: [f32; 3], b: [f32; 3]) -> [f64; 3] {
    [(a[0] - b[0]) as f64, (a[1] - b[1]) as f64, (a[2] - b[2]) as f64]
}

fn cross(a: [f64; 3], b: [f64; 3]) -> [f64; 3] {
    [a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]]
}

fn norm(a: [f64; 3]) -> f64 {
    (a[0] * a[0] + a[1] * a[1] + a[2] * a[2]).sqrt()
}

impl Mesh {
    pub fn vertex_count(&self) -> usize {
        self.positions.len()
    }

    pub fn triangle_count(&self) -> usize {
        self.triangles.len()
    }

    fn corners(&self, t: &[u32; 3]) -> [[f32; 3]; 3] {
        t.map(|i| self.positions[i as usize])
    }

    /// Signed enclosed volume (positive for a closed mesh with outward normals).
    /// Computed relative to the first vertex to keep f32 positions far from the origin
    /// (binvox translates can be ~1000) from losing precision.
    pub fn signed_volume(&self) -> f64 {
        let Some(&origin) = self.positions.first() else { return 0.0 };
        self.triangles
            .iter()
            .map(|t| {
                let [a, b, c] = self.corners(t);
                let (a, b, c) = (sub(a, origin), sub(b, origin), sub(c, origin));
                let bc = cross(b, c);
                a[0] * bc[0] + a[1] * bc[1] + a[2] * bc[2]
            })
            .sum::<f64>()
            / 6.0
    }

    pub fn surface_area(&self) -> f64 {
        self.triangles
            .iter()
            .map(|t| {
                let [a, b, c] = self.corners(t);
                0.5 * norm(cross(sub(b, a), sub(c, a)))
            })
            .sum()
    }

    /// Axis-aligned bounds `(min, max)`, or `None` for a mesh without vertices.
    pub fn bounds(&self) -> Option<([f32; 3], [f32; 3])> {
        let first = *self.positions.first()?;
        Some(self.positions.iter().fold((first, first), |(lo, hi), p| {
            (std::array::from_fn(|a| lo[a].min(p[a])), std::array::from_fn(|a| hi[a].max(p[a])))
        }))
    }

    /// Area-weighted vertex normals (unit length; zero for unused vertices).
    pub fn recompute_normals(&mut self) {
        let mut sums = vec![[0f32; 3]; self.positions.len()];
        for t in &self.triangles {
            let [a, b, c] = self.corners(t);
            let e1 = [b[0] - a[0], b[1] - a[1], b[2] - a[2]];
            let e2 = [c[0] - a[0], c[1] - a[1], c[2] - a[2]];
            // The unnormalised cross product is twice the area times the unit normal.
            let n = [e1[1] * e2[2] - e1[2] * e2[1], e1[2] * e2[0] - e1[0] * e2[2], e1[0] * e2[1] - e1[1] * e2[0]];
            for &i in t {
                let s = &mut sums[i as usize];
                s[0] += n[0];
                s[1] += n[1];
                s[2] += n[2];
            }
        }
        for s in &mut sums {
            let len = (s[0] * s[0] + s[1] * s[1] + s[2] * s[2]).sqrt();
            if len > 0.0 {
                *s = s.map(|c| c / len);
            }
        }
        self.normals = sums;
    }

    /// Count how each undirected edge is used.
    pub fn edge_report(&self) -> EdgeReport {
        // Key: (low, high) vertex; value: (uses, uses in low->high direction).
        let mut uses: HashMap<(u32, u32), (u32, u32)> = HashMap::with_capacity(self.triangles.len() * 3 / 2);
        let mut degenerate_triangles = 0;
        for t in &self.triangles {
            if t[0] == t[1] || t[1] == t[2] || t[0] == t[2] {
                degenerate_triangles += 1;
                continue;
            }
            for k in 0..3 {
                let (a, b) = (t[k], t[(k + 1) % 3]);
                let entry = uses.entry((a.min(b), a.max(b))).or_insert((0, 0));
                entry.0 += 1;
                entry.1 += u32::from(a < b);
            }
        }
        let mut report = EdgeReport { edges: uses.len(), boundary_edges: 0, non_manifold_edges: 0, misoriented_edges: 0, degenerate_triangles };
        for &(count, forward) in uses.values() {
            match count {
                1 => report.boundary_edges += 1,
                2 if forward != 1 => report.misoriented_edges += 1,
                2 => {}
                _ => report.non_manifold_edges += 1,
            }
        }
        report
    }

    /// Closed, edge-manifold, consistently wound and free of degenerate index triples.
    pub fn is_watertight(&self) -> bool {
        self.edge_report().is_watertight_manifold()
    }

    /// V - E + F, counting only vertices that some triangle uses.
    pub fn euler_characteristic(&self) -> i64 {
        let mut used = vec![false; self.positions.len()];
        for t in &self.triangles {
            for &i in t {
                used[i as usize] = true;
            }
        }
        let v = used.iter().filter(|&&u| u).count() as i64;
        v - self.edge_report().edges as i64 + self.triangles.len() as i64
    }

    /// Per triangle, the id of its connected component (triangles sharing a vertex are
    /// connected), and the number of components.
    pub fn triangle_components(&self) -> (Vec<u32>, usize) {
        let mut parent: Vec<u32> = (0..self.positions.len() as u32).collect();
        fn find(parent: &mut [u32], mut i: u32) -> u32 {
            while parent[i as usize] != i {
                parent[i as usize] = parent[parent[i as usize] as usize];
                i = parent[i as usize];
            }
            i
        }
        for t in &self.triangles {
            let r0 = find(&mut parent, t[0]);
            for &i in &t[1..] {
                let r = find(&mut parent, i);
                if r != r0 {
                    parent[r as usize] = r0;
                }
            }
        }
        let mut ids: HashMap<u32, u32> = HashMap::new();
        let labels = self
            .triangles
            .iter()
            .map(|t| {
                let root = find(&mut parent, t[0]);
                let next = ids.len() as u32;
                *ids.entry(root).or_insert(next)
            })
            .collect();
        (labels, ids.len())
    }

    /// Signed volume of each connected component (see [`Mesh::triangle_components`]).
    pub fn component_volumes(&self) -> Vec<f64> {
        let (labels, count) = self.triangle_components();
        let mut volumes = vec![0f64; count];
        // Each component's first vertex as its origin keeps the sums well conditioned.
        let mut origins: Vec<Option<[f32; 3]>> = vec![None; count];
        for (t, &label) in self.triangles.iter().zip(&labels) {
            let origin = *origins[label as usize].get_or_insert(self.positions[t[0] as usize]);
            let [a, b, c] = self.corners(t);
            let (a, b, c) = (sub(a, origin), sub(b, origin), sub(c, origin));
            let bc = cross(b, c);
            volumes[label as usize] += (a[0] * bc[0] + a[1] * bc[1] + a[2] * bc[2]) / 6.0;
        }
        volumes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Unit cube, 8 vertices, 12 outward triangles.
    pub(crate) fn unit_cube() -> Mesh {
        let positions = (0..8).map(|i| [(i & 1) as f32, ((i >> 1) & 1) as f32, ((i >> 2) & 1) as f32]).collect();
        let triangles = vec![
            [0, 2, 1], [1, 2, 3], // z = 0, normal -z
            [4, 5, 6], [5, 7, 6], // z = 1, normal +z
            [0, 1, 4], [1, 5, 4], // y = 0, normal -y
            [2, 6, 3], [3, 6, 7], // y = 1, normal +y
            [0, 4, 2], [2, 4, 6], // x = 0, normal -x
            [1, 3, 5], [3, 7, 5], // x = 1, normal +x
        ];
        Mesh { positions, triangles, normals: Vec::new() }
    }

    #[test]
    fn cube_measurements() {
        let mut cube = unit_cube();
        assert!((cube.signed_volume() - 1.0).abs() < 1e-12);
        assert!((cube.surface_area() - 6.0).abs() < 1e-12);
        assert!(cube.is_watertight());
        assert_eq!(cube.euler_characteristic(), 2);
        assert_eq!(cube.triangle_components().1, 1);
        cube.recompute_normals();
        let n = cube.normals[7];
        let expected = 1.0 / 3f32.sqrt();
        assert!(n.iter().all(|c| (c - expected).abs() < 1e-6), "{n:?}");
    }

    #[test]
    fn defects_are_reported() {
        let mut open = unit_cube();
        open.triangles.pop();
        let report = open.edge_report();
        assert_eq!(report.boundary_edges, 3);
        assert!(!open.is_watertight());

        let mut flipped = unit_cube();
        flipped.triangles[0].swap(1, 2);
        assert_eq!(flipped.edge_report().misoriented_edges, 3);

        let mut inverted = unit_cube();
        inverted.triangles.iter_mut().for_each(|t| t.swap(1, 2));
        assert!(inverted.is_watertight());
        assert!((inverted.signed_volume() + 1.0).abs() < 1e-12);

        let mut fin = unit_cube();
        fin.positions.push([0.5, -1.0, 0.0]);
        fin.triangles.push([0, 1, 8]);
        fin.triangles.push([1, 0, 8]);
        assert_eq!(fin.edge_report().non_manifold_edges, 1);
    }
}
