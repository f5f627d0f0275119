//! Software rasterizer: z-buffered triangles, smooth Lambertian + ambient (+ optional
//! sky) shading with a small Blinn-Phong highlight and procedural textures,
//! supersampled for antialiased edges, RGBA output with a transparent background.
//!
//! Visibility is resolved first (nearest triangle and its barycentrics per sample) and
//! each visible sample is shaded once, so overdraw costs no shading.

use crate::builder::{ColoredMesh, Texture};
use crate::camera::Camera;
use crate::math::{add, cross, dot, length, normalize, scale, sub, V3};
use crate::rng::Rng;

/// Lights for one view, relative to the camera so every view is lit from the front.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Lighting {
    pub ambient: f32,
    pub key: f32,
    pub fill: f32,
    /// Key light direction in camera coordinates (right, up, towards the camera).
    pub key_dir_camera: V3,
    pub specular: f32,
    /// Soft light from above (a studio's overhead softbox): adds `sky * (1 + n.y) / 2`.
    pub sky: f32,
}

impl Default for Lighting {
    fn default() -> Self {
        Lighting { ambient: 0.35, key: 0.7, fill: 0.2, key_dir_camera: normalize([-0.4, 0.6, 0.7]), specular: 0.35, sky: 0.0 }
    }
}

impl Lighting {
    /// Varied lighting: light from the upper front hemisphere, intensity jitter.
    pub fn sample(rng: &mut Rng) -> Self {
        Lighting {
            ambient: rng.range(0.25, 0.45),
            key: rng.range(0.55, 0.8),
            fill: rng.range(0.1, 0.25),
            key_dir_camera: normalize([rng.range(-0.8, 0.8), rng.range(0.2, 0.9), rng.range(0.4, 1.0)]),
            specular: rng.range(0.2, 0.5),
            sky: 0.0,
        }
    }

    /// Catalog studio lighting: bright and soft (high ambient, strong fill, an overhead
    /// softbox), key from the upper front, jittered per view.
    pub fn sample_catalog(rng: &mut Rng) -> Self {
        Lighting {
            ambient: rng.range(0.42, 0.55),
            key: rng.range(0.45, 0.65),
            fill: rng.range(0.25, 0.4),
            key_dir_camera: normalize([rng.range(-0.7, 0.7), rng.range(0.3, 0.9), rng.range(0.5, 1.0)]),
            specular: rng.range(0.2, 0.4),
            sky: rng.range(0.1, 0.22),
        }
    }
}

/// Per-triangle-corner normals, smoothed across edges flatter than ~40 degrees, so
/// curved parts look round while box edges stay crisp. Computed once per mesh.
pub struct ShadedMesh<'a> {
    pub mesh: &'a ColoredMesh,
    corner_normals: Vec<[V3; 3]>,
}

impl<'a> ShadedMesh<'a> {
    pub fn new(mesh: &'a ColoredMesh) -> Self {
        let m = &mesh.mesh;
        let face_normals: Vec<V3> = m
            .triangles
            .iter()
            .map(|t| {
                let [a, b, c] = t.map(|i| m.positions[i as usize]);
                cross(sub(b, a), sub(c, a))
            })
            .collect();
        // Vertex -> adjacent triangles (CSR layout).
        let mut counts = vec![0u32; m.positions.len() + 1];
        for t in &m.triangles {
            for &v in t {
                counts[v as usize + 1] += 1;
            }
        }
        for i in 1..counts.len() {
            counts[i] += counts[i - 1];
        }
        let mut fill = counts.clone();
        let mut adjacent = vec![0u32; counts[counts.len() - 1] as usize];
        for (ti, t) in m.triangles.iter().enumerate() {
            for &v in t {
                adjacent[fill[v as usize] as usize] = ti as u32;
                fill[v as usize] += 1;
            }
        }
        let cos_limit = 40f32.to_radians().cos();
        let corner_normals = m
            .triangles
            .iter()
            .enumerate()
            .map(|(ti, t)| {
                let own = normalize(face_normals[ti]);
                t.map(|v| {
                    let (s, e) = (counts[v as usize] as usize, counts[v as usize + 1] as usize);
                    let mut sum = [0.0f32; 3];
                    for &other in &adjacent[s..e] {
                        let n = face_normals[other as usize];
                        if dot(normalize(n), own) >= cos_limit {
                            sum = add(sum, n);
                        }
                    }
                    let n = normalize(sum);
                    if length(n) > 0.0 { n } else { own }
                })
            })
            .collect();
        ShadedMesh { mesh, corner_normals }
    }
}

/// A rendered image: straight (not premultiplied) RGBA, row-major, 4 bytes a pixel.
#[derive(Debug, Clone, PartialEq)]
pub struct Rgba {
    pub width: usize,
    pub height: usize,
    pub pixels: Vec<u8>,
}

impl Rgba {
    pub fn alpha(&self, x: usize, y: usize) -> u8 {
        self.pixels[(y * self.width + x) * 4 + 3]
    }

    /// Pixels with alpha of at least half: the object's silhouette.
    pub fn silhouette(&self) -> Vec<bool> {
        self.pixels.chunks_exact(4).map(|p| p[3] >= 128).collect()
    }

    pub fn to_image(&self) -> image::RgbaImage {
        // Sizes always match: the buffer is built as width * height * 4.
        image::RgbaImage::from_raw(self.width as u32, self.height as u32, self.pixels.clone())
            .unwrap_or_else(|| image::RgbaImage::new(self.width as u32, self.height as u32))
    }

    pub fn png_bytes(&self) -> Result<Vec<u8>, image::ImageError> {
        let mut out = std::io::Cursor::new(Vec::new());
        self.to_image().write_to(&mut out, image::ImageFormat::Png)?;
        Ok(out.into_inner())
    }
}

/// Renders `mesh` seen by `camera` at the camera's image size with `supersample`^2
/// samples per pixel.
pub fn render(mesh: &ShadedMesh, camera: &Camera, lighting: &Lighting, supersample: usize) -> Rgba {
    let ss = supersample.max(1);
    let cam_hi = camera.resized(camera.width * ss, camera.height * ss);
    let (w, h) = (cam_hi.width, cam_hi.height);
    let m = &mesh.mesh.mesh;
    // Pass 1: visibility. Per sample: 1/depth, triangle and perspective-correct weights.
    let mut inv_depth = vec![0.0f32; w * h];
    let mut hit = vec![(u32::MAX, 0.0f32, 0.0f32); w * h];
    let projected: Vec<(f32, f32, f32)> = m.positions.iter().map(|p| cam_hi.project(*p)).collect();
    for (ti, tri) in m.triangles.iter().enumerate() {
        let [pa, pb, pc] = tri.map(|i| projected[i as usize]);
        // The camera never enters the unit-diagonal model; skip anything behind it.
        if pa.2 <= 1e-3 || pb.2 <= 1e-3 || pc.2 <= 1e-3 {
            continue;
        }
        let area = edge(pa, pb, pc.0, pc.1);
        if area.abs() < 1e-12 {
            continue;
        }
        let min_x = pa.0.min(pb.0).min(pc.0).floor().max(0.0) as usize;
        let max_x = (pa.0.max(pb.0).max(pc.0).ceil().max(0.0) as usize).min(w);
        let min_y = pa.1.min(pb.1).min(pc.1).floor().max(0.0) as usize;
        let max_y = (pa.1.max(pb.1).max(pc.1).ceil().max(0.0) as usize).min(h);
        let (ia, ib, ic) = (1.0 / pa.2, 1.0 / pb.2, 1.0 / pc.2);
        for y in min_y..max_y {
            let py = y as f32 + 0.5;
            for x in min_x..max_x {
                let px = x as f32 + 0.5;
                let w0 = edge(pb, pc, px, py) / area;
                let w1 = edge(pc, pa, px, py) / area;
                let w2 = 1.0 - w0 - w1;
                if w0 < 0.0 || w1 < 0.0 || w2 < 0.0 {
                    continue;
                }
                let inv = w0 * ia + w1 * ib + w2 * ic;
                let idx = y * w + x;
                if inv <= inv_depth[idx] {
                    continue;
                }
                inv_depth[idx] = inv;
                hit[idx] = (ti as u32, w0 * ia / inv, w1 * ib / inv);
            }
        }
    }
    // Pass 2: shade each visible sample once.
    let key_world = normalize(add(
        add(scale(camera.right, lighting.key_dir_camera[0]), scale(camera.up, lighting.key_dir_camera[1])),
        scale(camera.forward, -lighting.key_dir_camera[2]),
    ));
    // Fill light: the key mirrored to the other side of the camera, lower.
    let k = lighting.key_dir_camera;
    let fill_world = normalize(add(add(scale(camera.right, -k[0]), scale(camera.up, k[1] * 0.3)), scale(camera.forward, -k[2])));
    let mut color = vec![[0.0f32; 3]; w * h];
    for (idx, &(ti, q0, q1)) in hit.iter().enumerate() {
        if ti == u32::MAX {
            continue;
        }
        let ti = ti as usize;
        let q2 = 1.0 - q0 - q1;
        let tri = m.triangles[ti];
        let material = mesh.mesh.materials[mesh.mesh.triangle_material[ti] as usize];
        let normals = mesh.corner_normals[ti];
        let world = tri.map(|i| m.positions[i as usize]);
        let p = add(add(scale(world[0], q0), scale(world[1], q1)), scale(world[2], q2));
        let mut n = normalize(add(add(scale(normals[0], q0), scale(normals[1], q1)), scale(normals[2], q2)));
        let view = camera.view_dir(p);
        // Double-sided: light the side facing the camera (open meshes, thin sails).
        if dot(n, view) > 0.0 {
            n = scale(n, -1.0);
        }
        let diffuse = lighting.key * dot(n, key_world).max(0.0) + lighting.fill * dot(n, fill_world).max(0.0);
        let half = normalize(sub(key_world, view));
        let spec = lighting.specular * material.gloss * dot(n, half).max(0.0).powi(32);
        let sky = if lighting.sky > 0.0 { lighting.sky * 0.5 * (1.0 + n[1]) } else { 0.0 };
        let shade = (lighting.ambient + sky + diffuse) * texture_factor(&material.texture, p, n);
        color[idx] = std::array::from_fn(|c| (material.color[c] * shade + spec).min(1.0));
    }
    downsample(&inv_depth, &color, camera.width, camera.height, ss)
}

/// Albedo multiplier of a procedural texture at surface point `p` with normal `n`.
pub fn texture_factor(texture: &Texture, p: V3, n: V3) -> f32 {
    match *texture {
        Texture::None => 1.0,
        Texture::WoodGrain { axis, scale: rings, strength } => {
            let a = (axis as usize).min(2);
            let (u, v) = (p[(a + 1) % 3] + 0.83, p[(a + 2) % 3] - 0.61);
            // Rings around an off-centre axis, warped by low-frequency noise.
            let mut stretched = p;
            stretched[a] *= 0.15;
            let warp = value_noise(scale(stretched, 6.0)) - 0.5;
            let t = (u * u + v * v).sqrt() * rings + 2.0 * warp;
            let ring = 0.5 + 0.5 * (std::f32::consts::TAU * t).sin();
            // Fine fibres along the grain.
            let mut fibre = scale(p, 90.0);
            fibre[a] *= 0.03;
            let f = value_noise(fibre) - 0.5;
            (1.0 + strength * (0.6 - 1.2 * ring * ring + 0.8 * f)).max(0.0)
        }
        Texture::FabricWeave { scale: threads, strength } => {
            let a = dominant_axis(n);
            let (u, v) = (p[(a + 1) % 3] * threads, p[(a + 2) % 3] * threads);
            let (fu, fv) = (u - u.floor(), v - v.floor());
            let over = (u.floor() as i64 + v.floor() as i64) & 1 == 0;
            // Each cell shows one thread, rounded across its width.
            let profile = if over { (std::f32::consts::PI * fv).sin() } else { (std::f32::consts::PI * fu).sin() };
            let mottle = value_noise(scale(p, 7.0)) - 0.5;
            (1.0 + strength * (1.4 * profile - 0.9 + 0.6 * mottle)).max(0.0)
        }
        Texture::BrushedMetal { axis, strength } => {
            let a = (axis as usize).min(2);
            let mut q = scale(p, 260.0);
            q[a] *= 0.01;
            let streak = value_noise(q) - 0.5;
            let sheen = value_noise(scale(p, 3.0)) - 0.5;
            (1.0 + strength * (1.4 * streak + 0.6 * sheen)).max(0.0)
        }
        Texture::Speckle { scale: grain, strength } => {
            let fleck = value_noise(scale(p, grain));
            let fleck = if fleck > 0.72 { 1.0 } else if fleck < 0.28 { -1.0 } else { 0.0 };
            let mottle = value_noise(scale(p, 4.0)) - 0.5;
            (1.0 + strength * (0.5 * fleck + 1.0 * mottle)).max(0.0)
        }
    }
}

fn dominant_axis(n: V3) -> usize {
    let (x, y, z) = (n[0].abs(), n[1].abs(), n[2].abs());
    if x >= y && x >= z {
        0
    } else if y >= z {
        1
    } else {
        2
    }
}

/// Integer lattice hash to [0, 1).
#[inline]
fn lattice(x: i32, y: i32, z: i32) -> f32 {
    let mut h = (x as u32).wrapping_mul(0x8DA6_B343) ^ (y as u32).wrapping_mul(0xD816_3841) ^ (z as u32).wrapping_mul(0xCB1A_B31F);
    h ^= h >> 15;
    h = h.wrapping_mul(0x2C1B_3C6D);
    h ^= h >> 12;
    h = h.wrapping_mul(0x297A_2D39);
    h ^= h >> 15;
    (h >> 8) as f32 * (1.0 / (1u32 << 24) as f32)
}

/// Smooth 3D value noise in [0, 1).
pub fn value_noise(p: V3) -> f32 {
    let f = p.map(f32::floor);
    let i = f.map(|v| v as i32);
    let t = [0, 1, 2].map(|k| {
        let x = p[k] - f[k];
        x * x * (3.0 - 2.0 * x)
    });
    let lerp = |a: f32, b: f32, t: f32| a + (b - a) * t;
    let c = |dx: i32, dy: i32, dz: i32| lattice(i[0] + dx, i[1] + dy, i[2] + dz);
    let x00 = lerp(c(0, 0, 0), c(1, 0, 0), t[0]);
    let x10 = lerp(c(0, 1, 0), c(1, 1, 0), t[0]);
    let x01 = lerp(c(0, 0, 1), c(1, 0, 1), t[0]);
    let x11 = lerp(c(0, 1, 1), c(1, 1, 1), t[0]);
    lerp(lerp(x00, x10, t[1]), lerp(x01, x11, t[1]), t[2])
}

#[inline]
fn edge(a: (f32, f32, f32), b: (f32, f32, f32), px: f32, py: f32) -> f32 {
    (b.0 - a.0) * (py - a.1) - (b.1 - a.1) * (px - a.0)
}

/// Box-filters the supersampled buffer: alpha = covered fraction, colour = mean of
/// the covered samples (straight alpha, so edges don't darken over any background).
fn downsample(inv_depth: &[f32], color: &[[f32; 3]], width: usize, height: usize, ss: usize) -> Rgba {
    let w_hi = width * ss;
    let mut pixels = vec![0u8; width * height * 4];
    for y in 0..height {
        for x in 0..width {
            let mut sum = [0.0f32; 3];
            let mut covered = 0usize;
            for sy in 0..ss {
                for sx in 0..ss {
                    let i = (y * ss + sy) * w_hi + x * ss + sx;
                    if inv_depth[i] > 0.0 {
                        covered += 1;
                        for c in 0..3 {
                            sum[c] += color[i][c];
                        }
                    }
                }
            }
            let o = (y * width + x) * 4;
            if covered > 0 {
                for c in 0..3 {
                    pixels[o + c] = (sum[c] / covered as f32 * 255.0).round().clamp(0.0, 255.0) as u8;
                }
                pixels[o + 3] = (covered as f32 / (ss * ss) as f32 * 255.0).round() as u8;
            }
        }
    }
    Rgba { width, height, pixels }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builder::{Material, MeshBuilder};
    use crate::camera::ViewParams;

    #[test]
    fn renders_a_sphere_where_the_camera_says() {
        let mut b = MeshBuilder::new();
        let m = b.material(Material::matte([0.8, 0.2, 0.2]));
        b.ellipsoid([0.0; 3], [1.0; 3], 48, m);
        let mesh = b.finish(); // radius 1/(2*sqrt(3)) after diagonal normalisation
        let r = 0.5 / 3f32.sqrt();
        let shaded = ShadedMesh::new(&mesh);
        let view = ViewParams { azimuth_deg: 30.0, elevation_deg: 27.0, in_plane_deg: 0.0, distance_ratio: 0.8, fov: 25.0, crop_x: 0.0, crop_y: 0.0 };
        let cam = view.camera(137, 137);
        let img = render(&shaded, &cam, &Lighting::default(), 3);
        // Centre opaque and red-dominant; corners transparent.
        assert_eq!(img.alpha(68, 68), 255);
        let o = (68 * 137 + 68) * 4;
        assert!(img.pixels[o] > img.pixels[o + 1] + 40);
        assert_eq!(img.alpha(0, 0), 0);
        // Silhouette area matches the projected disc: angular radius asin(r/d).
        let d = 1.75 * 0.8;
        let disc_r = cam.focal_px * (r / d).asin().tan();
        let expect = std::f32::consts::PI * disc_r * disc_r;
        let got = img.silhouette().iter().filter(|s| **s).count() as f32;
        assert!((got - expect).abs() / expect < 0.04, "{got} vs {expect}");
        // Antialiased: some partially covered edge pixels exist.
        assert!(img.pixels.chunks_exact(4).any(|p| p[3] > 0 && p[3] < 255));
    }
}
