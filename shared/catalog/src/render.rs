//! Software rasterizer: z-buffered triangles, smooth Lambertian + ambient shading with
//! a small Blinn-Phong highlight, supersampled for antialiased edges, RGBA output with
//! a transparent background.

use crate::builder::ColoredMesh;
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
}

impl Default for Lighting {
    fn default() -> Self {
        Lighting { ambient: 0.35, key: 0.7, fill: 0.2, key_dir_camera: normalize([-0.4, 0.6, 0.7]), specular: 0.35 }
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
    let mut inv_depth = vec![0.0f32; w * h];
    let mut color = vec![[0.0f32; 3]; w * h];
    let key_world = normalize(add(
        add(scale(camera.right, lighting.key_dir_camera[0]), scale(camera.up, lighting.key_dir_camera[1])),
        scale(camera.forward, -lighting.key_dir_camera[2]),
    ));
    // Fill light: the key mirrored to the other side of the camera, lower.
    let k = lighting.key_dir_camera;
    let fill_world = normalize(add(add(scale(camera.right, -k[0]), scale(camera.up, k[1] * 0.3)), scale(camera.forward, -k[2])));
    let m = &mesh.mesh.mesh;
    let projected: Vec<(f32, f32, f32)> = m.positions.iter().map(|p| cam_hi.project(*p)).collect();
    for (ti, tri) in m.triangles.iter().enumerate() {
        let [pa, pb, pc] = tri.map(|i| projected[i as usize]);
        // The camera never enters the unit-diagonal model; skip anything behind it.
        if pa.2 <= 1e-3 || pb.2 <= 1e-3 || pc.2 <= 1e-3 {
            continue;
        }
        let material = mesh.mesh.materials[mesh.mesh.triangle_material[ti] as usize];
        let normals = mesh.corner_normals[ti];
        let world = tri.map(|i| m.positions[i as usize]);
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
                // Perspective-correct interpolation weights.
                let (q0, q1, q2) = (w0 * ia / inv, w1 * ib / inv, w2 * ic / inv);
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
                let shade = lighting.ambient + diffuse;
                color[idx] = std::array::from_fn(|c| (material.color[c] * shade + spec).min(1.0));
            }
        }
    }
    downsample(&inv_depth, &color, camera.width, camera.height, ss)
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
        let view = ViewParams { azimuth_deg: 30.0, elevation_deg: 27.0, in_plane_deg: 0.0, distance_ratio: 0.8, fov: 25.0 };
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
