//! Building triangle meshes from coloured parts (boxes, tubes, tori, lathes, lofts,
//! extrusions), the vocabulary every procedural shape family is written in.

use crate::math::{add, basis, cross, dot, length, normalize, scale, sub, V3};
use mono2mesh_geometry::Mesh;
use serde::{Deserialize, Serialize};
use std::f32::consts::TAU;

/// Surface appearance of one part: base colour (linear RGB in [0,1]), a gloss factor
/// that scales a small specular highlight (0 = matte) and a procedural texture.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Material {
    pub color: [f32; 3],
    pub gloss: f32,
    #[serde(default)]
    pub texture: Texture,
}

/// Procedural surface patterns, evaluated by the renderer from the 3D surface position
/// (model space), so a part looks the same from every view. Each modulates the albedo
/// by a factor of about `1 +- strength`.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Texture {
    #[default]
    None,
    /// Growth rings around an axis (0 = X, 1 = Y, 2 = Z), warped by noise; `scale` is
    /// rings per model unit.
    WoodGrain { axis: u8, scale: f32, strength: f32 },
    /// A fine over-under weave; `scale` is threads per model unit.
    FabricWeave { scale: f32, strength: f32 },
    /// Fine streaks along an axis (0 = X, 1 = Y, 2 = Z).
    BrushedMetal { axis: u8, strength: f32 },
    /// Small flecks plus a gentle mottle (paint, plastic, stone).
    Speckle { scale: f32, strength: f32 },
}

impl Material {
    pub const fn matte(color: [f32; 3]) -> Self {
        Material { color, gloss: 0.0, texture: Texture::None }
    }
    pub const fn glossy(color: [f32; 3], gloss: f32) -> Self {
        Material { color, gloss, texture: Texture::None }
    }
    pub const fn with_texture(self, texture: Texture) -> Self {
        Material { texture, ..self }
    }
}

/// A triangle mesh whose triangles each carry a material index.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ColoredMesh {
    pub mesh: Mesh,
    /// One entry per triangle: index into `materials`.
    pub triangle_material: Vec<u16>,
    pub materials: Vec<Material>,
}

impl ColoredMesh {
    /// A mesh with one grey material on every triangle (for meshes read from files).
    pub fn uniform(mesh: Mesh, material: Material) -> Self {
        let n = mesh.triangles.len();
        ColoredMesh { mesh, triangle_material: vec![0; n], materials: vec![material] }
    }

    /// Axis-aligned bounding box (min, max); `None` for a mesh without vertices.
    pub fn bounds(&self) -> Option<(V3, V3)> {
        bounds_of(&self.mesh.positions)
    }
}

pub fn bounds_of(points: &[V3]) -> Option<(V3, V3)> {
    let first = *points.first()?;
    let mut lo = first;
    let mut hi = first;
    for p in points {
        for a in 0..3 {
            lo[a] = lo[a].min(p[a]);
            hi[a] = hi[a].max(p[a]);
        }
    }
    Some((lo, hi))
}

/// Cross-section of a loft: a superellipse in the plane perpendicular to X, at `x`,
/// centred at (`y`, `z`), with half-height `half_h`, half-width `half_w` and exponent
/// `power` (2 = ellipse, larger = boxier).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Section {
    pub x: f32,
    pub y: f32,
    pub z: f32,
    pub half_h: f32,
    pub half_w: f32,
    pub power: f32,
}

/// Accumulates parts; `finish` hands back the coloured mesh.
#[derive(Debug, Default)]
pub struct MeshBuilder {
    positions: Vec<V3>,
    triangles: Vec<[u32; 3]>,
    triangle_material: Vec<u16>,
    materials: Vec<Material>,
}

impl MeshBuilder {
    pub fn new() -> Self {
        MeshBuilder::default()
    }

    /// Registers a material and returns its id for later parts.
    pub fn material(&mut self, material: Material) -> u16 {
        if let Some(i) = self.materials.iter().position(|m| *m == material) {
            return i as u16;
        }
        self.materials.push(material);
        (self.materials.len() - 1) as u16
    }

    pub fn triangle_count(&self) -> usize {
        self.triangles.len()
    }

    fn vertex(&mut self, p: V3) -> u32 {
        self.positions.push(p);
        (self.positions.len() - 1) as u32
    }

    fn tri(&mut self, a: u32, b: u32, c: u32, mat: u16) {
        self.triangles.push([a, b, c]);
        self.triangle_material.push(mat);
    }

    /// Adds triangles `first..` flipped where needed so each faces away from `centre`
    /// (correct for the star-shaped parts the primitives below make).
    fn orient_outward(&mut self, first_triangle: usize, centre: V3) {
        self.orient_by(first_triangle, |_, mid, _| sub(mid, centre));
    }

    /// Flips each triangle `first..` whose normal points against `outward(index, centroid,
    /// normal)`: the one orientation pass every closed part ends with.
    fn orient_by(&mut self, first_triangle: usize, outward: impl Fn(usize, V3, V3) -> V3) {
        for t in first_triangle..self.triangles.len() {
            let [a, b, c] = self.triangles[t].map(|i| self.positions[i as usize]);
            let normal = cross(sub(b, a), sub(c, a));
            let mid = scale(add(add(a, b), c), 1.0 / 3.0);
            if dot(normal, outward(t, mid, normal)) < 0.0 {
                self.triangles[t].swap(1, 2);
            }
        }
    }

    /// A closed ring of `n` vertices, the i-th at `point(TAU * i / n)`.
    fn ring(&mut self, n: usize, point: impl Fn(f32) -> V3) -> Vec<u32> {
        (0..n)
            .map(|i| {
                let t = TAU * i as f32 / n as f32;
                self.vertex(point(t))
            })
            .collect()
    }

    /// The band between two closed rings of equal length: for each i (j = i + 1, wrapping)
    /// the triangles (lo[i], lo[j], hi[j]) and (lo[i], hi[j], hi[i]), or with `flipped`
    /// each with its last two corners swapped.
    fn stitch(&mut self, lo: &[u32], hi: &[u32], flipped: bool, mat: u16) {
        let n = lo.len();
        for i in 0..n {
            let j = (i + 1) % n;
            let (a, b, c, d) = (lo[i], lo[j], hi[j], hi[i]);
            if flipped {
                self.tri(a, c, b, mat);
                self.tri(a, d, c, mat);
            } else {
                self.tri(a, b, c, mat);
                self.tri(a, c, d, mat);
            }
        }
    }

    /// A cap: the triangles (centre, ring[i], ring[i + 1]) around a closed ring.
    fn fan(&mut self, centre: u32, ring: &[u32], mat: u16) {
        let n = ring.len();
        for i in 0..n {
            self.tri(centre, ring[i], ring[(i + 1) % n], mat);
        }
    }

    /// A solid bounded by 8 corners: `c[0..4]` one face, `c[4..8]` the opposite face in
    /// the same rotational order (any convex hexahedron: boxes, tapered wings, fins).
    pub fn hexahedron(&mut self, c: [V3; 8], mat: u16) {
        let first = self.triangles.len();
        let ids: Vec<u32> = c.iter().map(|p| self.vertex(*p)).collect();
        let quads = [[0, 1, 2, 3], [4, 7, 6, 5], [0, 4, 5, 1], [1, 5, 6, 2], [2, 6, 7, 3], [3, 7, 4, 0]];
        for q in quads {
            self.tri(ids[q[0]], ids[q[1]], ids[q[2]], mat);
            self.tri(ids[q[0]], ids[q[2]], ids[q[3]], mat);
        }
        let centre = scale(c.iter().fold([0.0; 3], |s, p| add(s, *p)), 1.0 / 8.0);
        self.orient_outward(first, centre);
    }

    /// Axis-aligned box between two corners.
    pub fn cuboid(&mut self, lo: V3, hi: V3, mat: u16) {
        let (a, b) = (lo, hi);
        self.hexahedron(
            [
                [a[0], a[1], a[2]],
                [b[0], a[1], a[2]],
                [b[0], a[1], b[2]],
                [a[0], a[1], b[2]],
                [a[0], b[1], a[2]],
                [b[0], b[1], a[2]],
                [b[0], b[1], b[2]],
                [a[0], b[1], b[2]],
            ],
            mat,
        );
    }

    /// Axis-aligned box from its centre and half extents.
    pub fn block(&mut self, centre: V3, half: V3, mat: u16) {
        self.cuboid(sub(centre, half), add(centre, half), mat);
    }

    /// A box with arbitrary orthonormal axes `(u, v, w)` and half extents.
    pub fn oriented_box(&mut self, centre: V3, axes: [V3; 3], half: V3, mat: u16) {
        let corner = |su: f32, sv: f32, sw: f32| {
            add(add(add(centre, scale(axes[0], su * half[0])), scale(axes[1], sv * half[1])), scale(axes[2], sw * half[2]))
        };
        self.hexahedron(
            [
                corner(-1.0, -1.0, -1.0),
                corner(1.0, -1.0, -1.0),
                corner(1.0, -1.0, 1.0),
                corner(-1.0, -1.0, 1.0),
                corner(-1.0, 1.0, -1.0),
                corner(1.0, 1.0, -1.0),
                corner(1.0, 1.0, 1.0),
                corner(-1.0, 1.0, 1.0),
            ],
            mat,
        );
    }

    /// A square-section beam from `a` to `b` with half thickness `half`, its cross-section
    /// rotated so one side faces `up_hint` where possible (legs, frames, rails).
    pub fn beam(&mut self, a: V3, b: V3, half: f32, mat: u16) {
        let axis = sub(b, a);
        let len = length(axis);
        if len < 1e-6 {
            return;
        }
        let w = normalize(axis);
        let (u, v) = basis(w);
        self.oriented_box(scale(add(a, b), 0.5), [u, v, w], [half, half, len * 0.5], mat);
    }

    /// A capped frustum from `a` (radius `ra`) to `b` (radius `rb`).
    pub fn frustum(&mut self, a: V3, b: V3, ra: f32, rb: f32, segments: usize, mat: u16) {
        let axis = sub(b, a);
        if length(axis) < 1e-6 {
            return;
        }
        let w = normalize(axis);
        let (u, v) = basis(w);
        let n = segments.max(3);
        let first = self.triangles.len();
        let circle = |centre: V3, r: f32| move |t: f32| add(centre, add(scale(u, r * t.cos()), scale(v, r * t.sin())));
        let ring_a = self.ring(n, circle(a, ra));
        let ring_b = self.ring(n, circle(b, rb));
        self.stitch(&ring_a, &ring_b, false, mat);
        let ca = self.vertex(a);
        let cb = self.vertex(b);
        for i in 0..n {
            let j = (i + 1) % n;
            self.tri(ca, ring_a[j], ring_a[i], mat);
            self.tri(cb, ring_b[i], ring_b[j], mat);
        }
        self.orient_outward(first, scale(add(a, b), 0.5));
    }

    /// A capped cylinder (round rod) from `a` to `b`.
    pub fn rod(&mut self, a: V3, b: V3, r: f32, mat: u16) {
        self.frustum(a, b, r, r, 10, mat);
    }

    /// Rods along a polyline with small balls at the joints (handlebars, sled bases).
    pub fn polyline_rod(&mut self, points: &[V3], r: f32, mat: u16) {
        for pair in points.windows(2) {
            self.rod(pair[0], pair[1], r, mat);
        }
        for p in points.iter().skip(1).take(points.len().saturating_sub(2)) {
            self.ellipsoid(*p, [r, r, r], 8, mat);
        }
    }

    /// A UV ellipsoid.
    pub fn ellipsoid(&mut self, centre: V3, radii: V3, segments: usize, mat: u16) {
        let n = segments.max(4);
        let rings = (n / 2).max(2);
        let first = self.triangles.len();
        let top = self.vertex([centre[0], centre[1] + radii[1], centre[2]]);
        let bottom = self.vertex([centre[0], centre[1] - radii[1], centre[2]]);
        let mut grid = Vec::with_capacity(rings - 1);
        for r in 1..rings {
            let phi = std::f32::consts::PI * r as f32 / rings as f32;
            let row = self.ring(n, |t| {
                [
                    centre[0] + radii[0] * phi.sin() * t.cos(),
                    centre[1] + radii[1] * phi.cos(),
                    centre[2] + radii[2] * phi.sin() * t.sin(),
                ]
            });
            grid.push(row);
        }
        for i in 0..n {
            let j = (i + 1) % n;
            self.tri(top, grid[0][i], grid[0][j], mat);
            let last = &grid[grid.len() - 1];
            let (li, lj) = (last[i], last[j]);
            self.tri(bottom, li, lj, mat);
        }
        for r in 0..grid.len() - 1 {
            self.stitch(&grid[r], &grid[r + 1], false, mat);
        }
        self.orient_outward(first, centre);
    }

    /// A torus around `axis` (tyres, steering wheels).
    pub fn torus(&mut self, centre: V3, axis: V3, major: f32, minor: f32, seg_major: usize, seg_minor: usize, mat: u16) {
        let w = normalize(axis);
        let (u, v) = basis(w);
        let (nm, nn) = (seg_major.max(3), seg_minor.max(3));
        let mut ids = vec![0u32; nm * nn];
        for i in 0..nm {
            let t = TAU * i as f32 / nm as f32;
            let radial = add(scale(u, t.cos()), scale(v, t.sin()));
            let ring_centre = add(centre, scale(radial, major));
            for k in 0..nn {
                let s = TAU * k as f32 / nn as f32;
                let p = add(ring_centre, add(scale(radial, minor * s.cos()), scale(w, minor * s.sin())));
                ids[i * nn + k] = self.vertex(p);
            }
        }
        for i in 0..nm {
            let i2 = (i + 1) % nm;
            for k in 0..nn {
                let k2 = (k + 1) % nn;
                let (a, b, c, d) = (ids[i * nn + k], ids[i2 * nn + k], ids[i2 * nn + k2], ids[i * nn + k2]);
                // Winding chosen so normals point away from the tube's centre line.
                self.tri(a, b, c, mat);
                self.tri(a, c, d, mat);
            }
        }
    }

    /// A solid of revolution about the vertical line through `base`: `profile` is a list
    /// of (height above base, radius), bottom to top; ends with radius > 0 are capped.
    pub fn lathe(&mut self, base: V3, profile: &[(f32, f32)], segments: usize, mat: u16) {
        if profile.len() < 2 {
            return;
        }
        let n = segments.max(3);
        let first = self.triangles.len();
        let rows: Vec<Vec<u32>> =
            profile.iter().map(|&(h, r)| self.ring(n, |t| [base[0] + r * t.cos(), base[1] + h, base[2] + r * t.sin()])).collect();
        for k in 0..rows.len() - 1 {
            self.stitch(&rows[k], &rows[k + 1], true, mat);
        }
        let ends = [(0usize, profile[0]), (rows.len() - 1, profile[profile.len() - 1])];
        for (row, (h, r)) in ends {
            if r > 1e-6 {
                let c = self.vertex([base[0], base[1] + h, base[2]]);
                self.fan(c, &rows[row], mat);
            }
        }
        // Fix each cap and side triangle against the axis point at its own height.
        let mid_height = base[1] + (profile[0].0 + profile[profile.len() - 1].0) * 0.5;
        self.orient_by(first, |_, mid, normal| {
            let is_cap = normal[1].abs() > 0.99 * length(normal);
            if is_cap {
                if mid[1] < mid_height { [0.0, -1.0, 0.0] } else { [0.0, 1.0, 0.0] }
            } else {
                sub(mid, [base[0], mid[1], base[2]])
            }
        });
    }

    /// A closed tube through superellipse cross-sections along X (fuselages, car and
    /// train bodies, boat hulls). With `flat_top` the upper half of every section is
    /// flattened to its centre line (a deck).
    pub fn loft(&mut self, sections: &[Section], segments: usize, flat_top: bool, mat: u16) {
        if sections.len() < 2 {
            return;
        }
        let n = segments.max(4);
        let first = self.triangles.len();
        let rows: Vec<Vec<u32>> = sections
            .iter()
            .map(|s| {
                self.ring(n, |t| {
                    let (st, ct) = t.sin_cos();
                    let e = 2.0 / s.power.max(0.5);
                    let mut y = s.half_h * st.signum() * st.abs().powf(e);
                    let z = s.half_w * ct.signum() * ct.abs().powf(e);
                    if flat_top && y > 0.0 {
                        y = 0.0;
                    }
                    [s.x, s.y + y, s.z + z]
                })
            })
            .collect();
        for k in 0..rows.len() - 1 {
            self.stitch(&rows[k], &rows[k + 1], false, mat);
        }
        // The two caps come last: every triangle from `first_cap` on is one.
        let first_cap = self.triangles.len();
        let caps = [(0usize, sections[0]), (rows.len() - 1, sections[sections.len() - 1])];
        for (row, s) in caps {
            let c = self.vertex([s.x, s.y + if flat_top { -s.half_h * 0.5 } else { 0.0 }, s.z]);
            self.fan(c, &rows[row], mat);
        }
        // Sides face away from their section's centre line; caps face along -X / +X.
        let (x0, x1) = (sections[0].x, sections[sections.len() - 1].x);
        self.orient_by(first, |t, mid, _| {
            if t >= first_cap {
                if (mid[0] - x0).abs() < (mid[0] - x1).abs() { [x0 - x1, 0.0, 0.0] } else { [x1 - x0, 0.0, 0.0] }
            } else {
                let s = section_at(sections, mid[0]);
                [0.0, mid[1] - s.1, mid[2] - s.2]
            }
        });
    }

    /// A polygon in the XY plane (any simple polygon, either winding) extruded from
    /// `z0` to `z1`: side profiles of car bodies, sofa arms, chair frames.
    pub fn extrude_xy(&mut self, polygon: &[[f32; 2]], z0: f32, z1: f32, mat: u16) {
        let n = polygon.len();
        if n < 3 {
            return;
        }
        let ccw = signed_area(polygon) > 0.0;
        let (zlo, zhi) = (z0.min(z1), z0.max(z1));
        let front: Vec<u32> = polygon.iter().map(|p| self.vertex([p[0], p[1], zhi])).collect();
        let back: Vec<u32> = polygon.iter().map(|p| self.vertex([p[0], p[1], zlo])).collect();
        for [a, b, c] in ear_clip(polygon) {
            // Counter-clockwise in XY faces +Z.
            if ccw {
                self.tri(front[a], front[b], front[c], mat);
                self.tri(back[a], back[c], back[b], mat);
            } else {
                self.tri(front[a], front[c], front[b], mat);
                self.tri(back[a], back[b], back[c], mat);
            }
        }
        for i in 0..n {
            let j = (i + 1) % n;
            if ccw {
                self.tri(back[i], back[j], front[j], mat);
                self.tri(back[i], front[j], front[i], mat);
            } else {
                self.tri(back[i], front[j], back[j], mat);
                self.tri(back[i], front[i], front[j], mat);
            }
        }
    }

    /// A wheel in the plane perpendicular to `axle`: tyre torus, rim ring, hub and
    /// `spokes` spokes (0 = a solid disc, as on cars and motorbikes).
    #[allow(clippy::too_many_arguments)]
    pub fn wheel(&mut self, centre: V3, axle: V3, radius: f32, tyre: f32, spokes: usize, tyre_mat: u16, rim_mat: u16) {
        let w = normalize(axle);
        self.torus(centre, w, radius - tyre, tyre, 28, 8, tyre_mat);
        let hub_half = tyre * 1.1;
        if spokes == 0 {
            self.frustum(sub(centre, scale(w, tyre * 0.8)), add(centre, scale(w, tyre * 0.8)), radius - tyre * 1.5, radius - tyre * 1.5, 20, rim_mat);
        } else {
            self.torus(centre, w, radius - 2.2 * tyre, tyre * 0.35, 24, 4, rim_mat);
            let (u, v) = basis(w);
            for k in 0..spokes {
                let t = TAU * k as f32 / spokes as f32;
                let dir = add(scale(u, t.cos()), scale(v, t.sin()));
                let side = if k % 2 == 0 { hub_half } else { -hub_half };
                self.frustum(add(centre, scale(w, side)), add(centre, scale(dir, radius - 2.2 * tyre)), tyre * 0.12, tyre * 0.12, 3, rim_mat);
            }
        }
        self.frustum(sub(centre, scale(w, hub_half * 1.4)), add(centre, scale(w, hub_half * 1.4)), tyre * 0.8, tyre * 0.8, 10, rim_mat);
    }

    /// Mirror every part added since `first_triangle` across the plane z = 0 and append
    /// the copies (left/right symmetric parts).
    pub fn mirror_z_since(&mut self, first_triangle: usize) {
        let end = self.triangles.len();
        for t in first_triangle..end {
            let tri = self.triangles[t];
            let mat = self.triangle_material[t];
            let [a, b, c] = tri.map(|i| {
                let p = self.positions[i as usize];
                [p[0], p[1], -p[2]]
            });
            let (ia, ib, ic) = (self.vertex(a), self.vertex(b), self.vertex(c));
            // Mirroring flips orientation; swap to keep normals outward.
            self.tri(ia, ic, ib, mat);
        }
    }

    pub fn vertex_count(&self) -> usize {
        self.positions.len()
    }

    /// Moves every vertex added since `first_vertex` through a rigid motion `f`
    /// (rotations and translations keep the winding valid).
    pub fn transform_since(&mut self, first_vertex: usize, f: impl Fn(V3) -> V3) {
        for p in &mut self.positions[first_vertex..] {
            *p = f(*p);
        }
    }

    /// Centres the bounding box at the origin and scales it to a unit diagonal, the
    /// ShapeNetCore v1 normalisation the 3D-R2N2 camera distances assume.
    pub fn finish(self) -> ColoredMesh {
        let mut positions = self.positions;
        if let Some((lo, hi)) = bounds_of(&positions) {
            let centre = scale(add(lo, hi), 0.5);
            let diagonal = length(sub(hi, lo));
            let s = if diagonal > 1e-9 { 1.0 / diagonal } else { 1.0 };
            for p in &mut positions {
                *p = scale(sub(*p, centre), s);
            }
        }
        ColoredMesh {
            mesh: Mesh { positions, triangles: self.triangles, normals: Vec::new() },
            triangle_material: self.triangle_material,
            materials: self.materials,
        }
    }
}

/// (y, z) of the section centre line at `x`, linearly interpolated.
fn section_at(sections: &[Section], x: f32) -> (f32, f32, f32) {
    for pair in sections.windows(2) {
        let (a, b) = (pair[0], pair[1]);
        let (lo, hi) = (a.x.min(b.x), a.x.max(b.x));
        if x >= lo - 1e-6 && x <= hi + 1e-6 {
            let t = if (b.x - a.x).abs() > 1e-9 { (x - a.x) / (b.x - a.x) } else { 0.5 };
            return (x, a.y + (b.y - a.y) * t, a.z + (b.z - a.z) * t);
        }
    }
    let s = sections[0];
    (x, s.y, s.z)
}

fn signed_area(polygon: &[[f32; 2]]) -> f32 {
    let n = polygon.len();
    (0..n)
        .map(|i| {
            let (a, b) = (polygon[i], polygon[(i + 1) % n]);
            a[0] * b[1] - b[0] * a[1]
        })
        .sum::<f32>()
        * 0.5
}

/// Ear-clipping triangulation of a simple polygon; triangles come out in the
/// polygon's own winding.
pub fn ear_clip(polygon: &[[f32; 2]]) -> Vec<[usize; 3]> {
    let ccw = signed_area(polygon) > 0.0;
    let mut remaining: Vec<usize> = (0..polygon.len()).collect();
    let mut out = Vec::with_capacity(polygon.len().saturating_sub(2));
    let cross2 = |o: [f32; 2], a: [f32; 2], b: [f32; 2]| (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0]);
    let mut guard = 0;
    while remaining.len() > 3 && guard < polygon.len() * polygon.len() {
        guard += 1;
        let m = remaining.len();
        let mut clipped = false;
        for k in 0..m {
            let (ia, ib, ic) = (remaining[(k + m - 1) % m], remaining[k], remaining[(k + 1) % m]);
            let (a, b, c) = (polygon[ia], polygon[ib], polygon[ic]);
            let turn = cross2(a, b, c);
            let convex = if ccw { turn > 1e-12 } else { turn < -1e-12 };
            if !convex {
                continue;
            }
            let inside = remaining.iter().any(|&ip| {
                if ip == ia || ip == ib || ip == ic {
                    return false;
                }
                let p = polygon[ip];
                let (d1, d2, d3) = (cross2(a, b, p), cross2(b, c, p), cross2(c, a, p));
                if ccw { d1 >= 0.0 && d2 >= 0.0 && d3 >= 0.0 } else { d1 <= 0.0 && d2 <= 0.0 && d3 <= 0.0 }
            });
            if inside {
                continue;
            }
            out.push([ia, ib, ic]);
            remaining.remove(k);
            clipped = true;
            break;
        }
        if !clipped {
            // Degenerate (collinear) leftovers: fan the rest rather than loop forever.
            break;
        }
    }
    for k in 1..remaining.len().saturating_sub(1) {
        out.push([remaining[0], remaining[k], remaining[k + 1]]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Signed volume via the divergence theorem: positive iff triangles face outward.
    fn signed_volume(m: &ColoredMesh) -> f32 {
        m.mesh
            .triangles
            .iter()
            .map(|t| {
                let [a, b, c] = t.map(|i| m.mesh.positions[i as usize]);
                dot(a, cross(b, c)) / 6.0
            })
            .sum()
    }

    fn built(f: impl FnOnce(&mut MeshBuilder, u16)) -> ColoredMesh {
        let mut b = MeshBuilder::new();
        let m = b.material(Material::matte([0.5; 3]));
        f(&mut b, m);
        // No finish(): keep the original scale for volume checks.
        ColoredMesh {
            mesh: Mesh { positions: b.positions, triangles: b.triangles, normals: vec![] },
            triangle_material: b.triangle_material,
            materials: b.materials,
        }
    }

    #[test]
    fn primitives_are_closed_outward_and_have_expected_volume() {
        let cube = built(|b, m| b.cuboid([0.0; 3], [1.0, 2.0, 3.0], m));
        assert!((signed_volume(&cube) - 6.0).abs() < 1e-4);
        let cyl = built(|b, m| b.frustum([0.0; 3], [0.0, 2.0, 0.0], 1.0, 1.0, 64, m));
        assert!((signed_volume(&cyl) - 2.0 * std::f32::consts::PI).abs() < 0.05, "{}", signed_volume(&cyl));
        let ball = built(|b, m| b.ellipsoid([1.0, 0.0, 0.0], [1.0, 1.0, 1.0], 48, m));
        assert!((signed_volume(&ball) - 4.18879).abs() < 0.1, "{}", signed_volume(&ball));
        let tor = built(|b, m| b.torus([0.0; 3], [0.0, 0.0, 1.0], 2.0, 0.5, 64, 32, m));
        let expect = 2.0 * std::f32::consts::PI.powi(2) * 2.0 * 0.25;
        assert!((signed_volume(&tor) - expect).abs() < 0.1, "{} vs {expect}", signed_volume(&tor));
        let lathe = built(|b, m| b.lathe([0.0; 3], &[(0.0, 1.0), (1.0, 1.0), (2.0, 0.5)], 64, m));
        let expect = std::f32::consts::PI * (1.0 + (1.0 + 0.5 + 0.25) / 3.0);
        assert!((signed_volume(&lathe) - expect).abs() < 0.05, "{} vs {expect}", signed_volume(&lathe));
        // An L-shaped (concave) profile, either winding.
        let l_shape = [[0.0, 0.0], [2.0, 0.0], [2.0, 1.0], [1.0, 1.0], [1.0, 2.0], [0.0, 2.0]];
        let ext = built(|b, m| b.extrude_xy(&l_shape, 0.0, 1.0, m));
        assert!((signed_volume(&ext) - 3.0).abs() < 1e-4);
        let mut reversed = l_shape;
        reversed.reverse();
        let ext = built(|b, m| b.extrude_xy(&reversed, 0.0, 1.0, m));
        assert!((signed_volume(&ext) - 3.0).abs() < 1e-4);
        let box_loft = built(|b, m| {
            let s = |x| Section { x, y: 0.0, z: 0.0, half_h: 1.0, half_w: 1.0, power: 2.0 };
            b.loft(&[s(0.0), s(2.0)], 64, false, m)
        });
        assert!((signed_volume(&box_loft) - 2.0 * std::f32::consts::PI).abs() < 0.05, "{}", signed_volume(&box_loft));
    }

    #[test]
    fn finish_centres_and_normalises_diagonal() {
        let mut b = MeshBuilder::new();
        let m = b.material(Material::matte([1.0, 0.0, 0.0]));
        b.cuboid([1.0, 1.0, 1.0], [3.0, 5.0, 2.0], m);
        let out = b.finish();
        let (lo, hi) = out.bounds().unwrap();
        assert!((length(sub(hi, lo)) - 1.0).abs() < 1e-5);
        for a in 0..3 {
            assert!((lo[a] + hi[a]).abs() < 1e-5);
        }
        assert_eq!(out.triangle_material.len(), out.mesh.triangles.len());
    }
}
