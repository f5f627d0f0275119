//! Colour from the photo (issue 16, item 3): find the view the photo was taken from, then
//! paint the mesh's visible vertices with the photo's colours.
//!
//! # View fitting ([`fit_view`])
//!
//! The mesh is the refine stage's model-frame mesh (marching cubes + smoothing, before
//! [`mono2mesh_geometry::pose::place`]): +Y up, front +X, about a unit bounding-box diagonal,
//! centred on the origin. It is seen through the camera model the training renders use (the
//! catalog's R2N2 camera, `shared/catalog/src/camera.rs`): a pinhole at distance
//! `1.75 * distance_ratio` from the origin at `(cos el cos az, sin el, -cos el sin az)`,
//! looking at the origin with +Y up and no roll. [`ViewCamera`] is that camera; a test
//! checks it projects exactly like the catalog's.
//!
//! For each azimuth/elevation on a grid ([`ViewGrid`], 24 x 5 by default), the mesh's
//! silhouette and the photo's mask are both cropped to their bounding boxes, scaled
//! uniformly so the longer side spans a small square canvas (128 px), and centred on it; the
//! score is their IoU there. So the photo's framing (focal length, distance, crop, image
//! size) does not matter, only the silhouette's shape and aspect. The best few grid views
//! are then refined by halving steps around them. The camera distance stays at the catalog's
//! typical ratio (0.675): it changes only the perspective, slightly.
//!
//! The fitted view's [`ViewCamera`] also carries the bounding-box alignment, so it projects
//! model points straight onto photo pixels.
//!
//! # Painting ([`paint`])
//!
//! Each vertex is projected into the photo with the fitted camera. A vertex takes the
//! photo's colour there (sRGB decoded to linear, as glTF's `COLOR_0` wants; a 3 x 3 mean of
//! object pixels) when it is visible from that view: in front of a depth buffer of the
//! whole mesh (rasterised at up to 512 px), facing the camera, and inside the mask shrunk by
//! a couple of pixels (edge pixels mix in the background). Every other vertex takes the base
//! colour: the per-channel median of the object's pixels under the mask. Write the result
//! with [`mono2mesh_geometry::export::encode_coloured`]; paint before `pose::place`, after
//! the polycount cap (simplification renumbers vertices, placing does not).
//!
//! [`render_coloured`] draws the coloured mesh from a view, for previews.

use image::{GrayImage, RgbImage};
use mono2mesh_geometry::colour::{linear_to_srgb_u8, srgb_u8_to_linear, Colours};
use mono2mesh_geometry::Mesh;
use thiserror::Error;

/// The R2N2 / catalog camera constant: distance = this * distance ratio.
pub const MAX_CAMERA_DISTANCE: f32 = 1.75;
/// The camera distance ratio fitting uses: the middle of the catalog photos' range
/// [0.55, 0.8).
pub const DEFAULT_DISTANCE_RATIO: f32 = 0.675;
/// Smallest object (mask bounding box side, pixels) worth fitting a view to.
pub const MIN_OBJECT_PX: usize = 4;
/// Blank border of the comparison canvas, pixels each side.
const CANVAS_PAD: usize = 2;

#[derive(Debug, Clone, PartialEq, Error)]
pub enum ColourError {
    #[error("the mask has {got} values for {width}x{height} pixels")]
    MaskData { width: usize, height: usize, got: usize },
    #[error("the mask is {mask_width}x{mask_height} but the photo is {photo_width}x{photo_height}")]
    SizeMismatch { mask_width: usize, mask_height: usize, photo_width: usize, photo_height: usize },
    #[error("the mask is empty: there are no object pixels to fit or paint")]
    EmptyMask,
    #[error("the object in the mask is only {width}x{height} pixels (at least {MIN_OBJECT_PX} a side is needed)")]
    TinyObject { width: usize, height: usize },
    #[error("the mesh has no triangles")]
    EmptyMesh,
    #[error("triangle {triangle} names vertex {vertex}, but the mesh has {vertices} vertices")]
    BadIndex { triangle: usize, vertex: u32, vertices: usize },
    #[error("vertex {0} has a non-finite coordinate")]
    NonFinite(usize),
    #[error("view grid: {0}")]
    BadGrid(String),
    #[error("the mesh has no silhouette from any view of the grid (it projects to a point)")]
    NoSilhouette,
}

/// Which pixels are the object: one bool per pixel, row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct Mask {
    width: usize,
    height: usize,
    data: Vec<bool>,
}

impl Mask {
    pub fn new(width: usize, height: usize, data: Vec<bool>) -> Result<Self, ColourError> {
        if data.len() != width * height {
            return Err(ColourError::MaskData { width, height, got: data.len() });
        }
        Ok(Mask { width, height, data })
    }

    /// Pixels of at least `threshold` are the object (a matte, or an alpha channel).
    pub fn from_gray(image: &GrayImage, threshold: u8) -> Self {
        Mask { width: image.width() as usize, height: image.height() as usize, data: image.pixels().map(|p| p.0[0] >= threshold).collect() }
    }

    pub fn width(&self) -> usize {
        self.width
    }

    pub fn height(&self) -> usize {
        self.height
    }

    pub fn data(&self) -> &[bool] {
        &self.data
    }

    #[inline]
    pub fn get(&self, x: usize, y: usize) -> bool {
        x < self.width && y < self.height && self.data[y * self.width + x]
    }

    pub fn count(&self) -> usize {
        self.data.iter().filter(|&&b| b).count()
    }

    /// `[x0, y0, x1, y1)` of the object pixels.
    pub fn bbox(&self) -> Option<[usize; 4]> {
        let (mut x0, mut y0, mut x1, mut y1) = (usize::MAX, usize::MAX, 0, 0);
        for y in 0..self.height {
            let row = &self.data[y * self.width..(y + 1) * self.width];
            if let (Some(first), Some(last)) = (row.iter().position(|&b| b), row.iter().rposition(|&b| b)) {
                x0 = x0.min(first);
                x1 = x1.max(last + 1);
                y0 = y0.min(y);
                y1 = y + 1;
            }
        }
        (x0 != usize::MAX).then_some([x0, y0, x1, y1])
    }

    /// The mask shrunk by `radius` pixels (a square structuring element; outside is not object).
    pub fn eroded(&self, radius: usize) -> Mask {
        if radius == 0 {
            return self.clone();
        }
        let (w, h) = (self.width, self.height);
        // A run of at least 2r+1 set pixels centred on each pixel, along rows, then columns.
        let pass = |src: &[bool], len: usize, lines: usize, at: &dyn Fn(usize, usize) -> usize| {
            let mut out = vec![false; src.len()];
            let mut prefix = vec![0u32; len + 1];
            for line in 0..lines {
                for i in 0..len {
                    prefix[i + 1] = prefix[i] + u32::from(src[at(line, i)]);
                }
                for i in radius..len.saturating_sub(radius) {
                    out[at(line, i)] = prefix[i + radius + 1] - prefix[i - radius] == (2 * radius + 1) as u32;
                }
            }
            out
        };
        let rows = pass(&self.data, w, h, &|line, i| line * w + i);
        let both = pass(&rows, h, w, &|line, i| i * w + line);
        Mask { width: w, height: h, data: both }
    }

    /// The mask as a black/white image.
    pub fn to_image(&self) -> GrayImage {
        GrayImage::from_fn(self.width as u32, self.height as u32, |x, y| image::Luma([if self.get(x as usize, y as usize) { 255 } else { 0 }]))
    }
}

/// The catalog's R2N2 camera at an azimuth/elevation, plus a 2D similarity from its image
/// plane onto a photo's pixels.
///
/// `plane(p)` gives `(u, v) = (right . r, -up . r) / depth` with `r = p - position`: the
/// catalog camera's pixel is `(W/2 + crop_x W + f u, H/2 + crop_y W + f v)`, so the two
/// differ only by a scale and a shift. `project(p)` applies `scale` and `offset`, which
/// [`fit_view`] sets so the mesh's silhouette box lands on the mask's.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ViewCamera {
    pub azimuth_deg: f32,
    pub elevation_deg: f32,
    pub distance_ratio: f32,
    pub position: [f32; 3],
    pub right: [f32; 3],
    pub up: [f32; 3],
    pub forward: [f32; 3],
    /// Photo pixels per image-plane unit.
    pub scale: f32,
    /// Photo pixel of the image-plane origin (the optical axis).
    pub offset: [f32; 2],
}

fn dot(a: [f32; 3], b: [f32; 3]) -> f32 {
    a[0] * b[0] + a[1] * b[1] + a[2] * b[2]
}

fn sub(a: [f32; 3], b: [f32; 3]) -> [f32; 3] {
    [a[0] - b[0], a[1] - b[1], a[2] - b[2]]
}

fn cross(a: [f32; 3], b: [f32; 3]) -> [f32; 3] {
    [a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]]
}

fn normalize(a: [f32; 3]) -> [f32; 3] {
    let l = dot(a, a).sqrt();
    if l > 0.0 {
        a.map(|v| v / l)
    } else {
        a
    }
}

impl ViewCamera {
    /// The catalog camera (`Camera::r2n2` with no roll) at this view, unaligned (scale 1,
    /// offset 0).
    pub fn r2n2(azimuth_deg: f32, elevation_deg: f32, distance_ratio: f32) -> Self {
        let (az, el) = (azimuth_deg.to_radians(), elevation_deg.to_radians());
        let d = MAX_CAMERA_DISTANCE * distance_ratio;
        let position = [d * el.cos() * az.cos(), d * el.sin(), -d * el.cos() * az.sin()];
        let forward = normalize(sub([0.0; 3], position));
        let world_up = if forward[1].abs() > 0.999 { [0.0, 0.0, -1.0] } else { [0.0, 1.0, 0.0] };
        let right = normalize(cross(forward, world_up));
        let up = cross(right, forward);
        ViewCamera { azimuth_deg, elevation_deg, distance_ratio, position, right, up, forward, scale: 1.0, offset: [0.0; 2] }
    }

    /// Image-plane coordinates (u right, v down) and depth along the view axis.
    #[inline]
    pub fn plane(&self, p: [f32; 3]) -> (f32, f32, f32) {
        let r = sub(p, self.position);
        let depth = dot(r, self.forward);
        let inv = if depth.abs() > 1e-9 { 1.0 / depth } else { 0.0 };
        (dot(r, self.right) * inv, -dot(r, self.up) * inv, depth)
    }

    /// Photo pixel coordinates (x right, y down, pixel centres at +0.5) and depth.
    #[inline]
    pub fn project(&self, p: [f32; 3]) -> (f32, f32, f32) {
        let (u, v, depth) = self.plane(p);
        (self.offset[0] + self.scale * u, self.offset[1] + self.scale * v, depth)
    }
}

/// The views [`fit_view`] tries.
#[derive(Debug, Clone, PartialEq)]
pub struct ViewGrid {
    /// Azimuths evenly spaced over 360 degrees, from 0.
    pub azimuths: usize,
    /// Elevations, degrees, in increasing order (equally spaced reads best: refinement
    /// halves the first spacing).
    pub elevations_deg: Vec<f32>,
    /// How many of the best grid views to refine.
    pub candidates: usize,
    /// Halvings of the grid step around each candidate (8 neighbours each time).
    pub refine_steps: usize,
    /// Side of the square canvas silhouettes are compared on, pixels.
    pub canvas: usize,
    pub distance_ratio: f32,
}

impl Default for ViewGrid {
    /// 24 azimuths (15 degrees) x elevations 0-40 in steps of 10 (catalog photos are shot
    /// from 10-40 degrees), the best 3 refined twice (to 3.75 x 2.5 degrees), on 128 px.
    fn default() -> Self {
        ViewGrid {
            azimuths: 24,
            elevations_deg: vec![0.0, 10.0, 20.0, 30.0, 40.0],
            candidates: 3,
            refine_steps: 2,
            canvas: 128,
            distance_ratio: DEFAULT_DISTANCE_RATIO,
        }
    }
}

impl ViewGrid {
    pub fn azimuth_step(&self) -> f32 {
        360.0 / self.azimuths.max(1) as f32
    }

    pub fn elevation_step(&self) -> f32 {
        match self.elevations_deg.as_slice() {
            [a, b, ..] => (b - a).abs().max(1e-3),
            _ => 10.0,
        }
    }

    fn check(&self) -> Result<(), ColourError> {
        let bad = |why: &str| Err(ColourError::BadGrid(why.to_string()));
        if self.azimuths == 0 || self.elevations_deg.is_empty() {
            return bad("needs at least one azimuth and one elevation");
        }
        if self.elevations_deg.iter().any(|e| !(-89.0..=89.0).contains(e)) {
            return bad("elevations must lie in [-89, 89] degrees");
        }
        if !(16..=1024).contains(&self.canvas) {
            return bad("canvas must be 16 to 1024 pixels");
        }
        if !(self.distance_ratio > 0.35 && self.distance_ratio < 100.0) {
            return bad("distance_ratio must keep the camera outside the model (> 0.35)");
        }
        Ok(())
    }
}

/// The view that best explains the photo's mask.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FittedView {
    pub azimuth_deg: f32,
    pub elevation_deg: f32,
    /// IoU of the bounding-box-aligned silhouettes on the comparison canvas, in [0, 1].
    pub silhouette_iou: f32,
    /// The camera at that view, aligned to the photo's pixels.
    pub camera: ViewCamera,
    /// Views rendered to find it.
    pub views_tried: usize,
}

/// Checked mesh: triangles present, indices in range, finite positions; returns which
/// vertices triangles use.
fn check_mesh(mesh: &Mesh) -> Result<Vec<bool>, ColourError> {
    if mesh.triangles.is_empty() {
        return Err(ColourError::EmptyMesh);
    }
    let n = mesh.positions.len();
    let mut used = vec![false; n];
    for (triangle, t) in mesh.triangles.iter().enumerate() {
        for &v in t {
            if v as usize >= n {
                return Err(ColourError::BadIndex { triangle, vertex: v, vertices: n });
            }
            used[v as usize] = true;
        }
    }
    if let Some(i) = mesh.positions.iter().position(|p| p.iter().any(|c| !c.is_finite())) {
        return Err(ColourError::NonFinite(i));
    }
    Ok(used)
}

fn check_mask(mask: &Mask) -> Result<[usize; 4], ColourError> {
    let b = mask.bbox().ok_or(ColourError::EmptyMask)?;
    let (w, h) = (b[2] - b[0], b[3] - b[1]);
    if w < MIN_OBJECT_PX || h < MIN_OBJECT_PX {
        return Err(ColourError::TinyObject { width: w, height: h });
    }
    Ok(b)
}

/// Calls `f(pixel index, triangle, barycentrics)` for every pixel centre of a `w` x `h`
/// image inside each triangle of `points` (x, y in pixels; the third value is ignored here).
fn rasterize(points: &[[f32; 3]], triangles: &[[u32; 3]], w: usize, h: usize, mut f: impl FnMut(usize, usize, [f32; 3])) {
    for (ti, t) in triangles.iter().enumerate() {
        let [a, b, c] = t.map(|i| points[i as usize]);
        if a[2] <= 0.0 || b[2] <= 0.0 || c[2] <= 0.0 {
            continue;
        }
        let area = (b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0]);
        if area.abs() < 1e-12 || !area.is_finite() {
            continue;
        }
        let inv_area = 1.0 / area;
        let x0 = a[0].min(b[0]).min(c[0]).floor().max(0.0) as usize;
        let x1 = (a[0].max(b[0]).max(c[0]).ceil().max(0.0) as usize).min(w);
        let y0 = a[1].min(b[1]).min(c[1]).floor().max(0.0) as usize;
        let y1 = (a[1].max(b[1]).max(c[1]).ceil().max(0.0) as usize).min(h);
        for y in y0..y1 {
            let py = y as f32 + 0.5;
            for x in x0..x1 {
                let px = x as f32 + 0.5;
                let w0 = ((b[0] - px) * (c[1] - py) - (b[1] - py) * (c[0] - px)) * inv_area;
                let w1 = ((c[0] - px) * (a[1] - py) - (c[1] - py) * (a[0] - px)) * inv_area;
                let w2 = 1.0 - w0 - w1;
                if w0 >= 0.0 && w1 >= 0.0 && w2 >= 0.0 {
                    f(y * w + x, ti, [w0, w1, w2]);
                }
            }
        }
    }
}

/// A silhouette's bounding box mapped onto the comparison canvas: centred, the longer
/// side spanning `canvas - 2 * CANVAS_PAD`.
#[derive(Debug, Clone, Copy)]
struct BoxFit {
    centre: [f32; 2],
    side: f32,
}

impl BoxFit {
    fn of(lo: [f32; 2], hi: [f32; 2]) -> Option<Self> {
        let side = (hi[0] - lo[0]).max(hi[1] - lo[1]);
        (side > 1e-9 && side.is_finite()).then_some(BoxFit { centre: [(lo[0] + hi[0]) * 0.5, (lo[1] + hi[1]) * 0.5], side })
    }

    /// Canvas pixels per source unit.
    fn zoom(&self, canvas: usize) -> f32 {
        (canvas - 2 * CANVAS_PAD) as f32 / self.side
    }
}

/// The mask resampled onto the canvas: each canvas pixel is object when most of its 4 x 4
/// samples are.
fn mask_canvas(mask: &Mask, bbox: [usize; 4], canvas: usize) -> Vec<bool> {
    let fit = BoxFit::of([bbox[0] as f32, bbox[1] as f32], [bbox[2] as f32, bbox[3] as f32]).expect("checked non-empty");
    let per_px = 1.0 / fit.zoom(canvas);
    let half = canvas as f32 * 0.5;
    const K: usize = 4;
    let mut out = vec![false; canvas * canvas];
    for cy in 0..canvas {
        for cx in 0..canvas {
            let mut hits = 0;
            for sy in 0..K {
                for sx in 0..K {
                    let x = fit.centre[0] + (cx as f32 + (sx as f32 + 0.5) / K as f32 - half) * per_px;
                    let y = fit.centre[1] + (cy as f32 + (sy as f32 + 0.5) / K as f32 - half) * per_px;
                    if x >= 0.0 && y >= 0.0 && mask.get(x as usize, y as usize) {
                        hits += 1;
                    }
                }
            }
            out[cy * canvas + cx] = 2 * hits >= K * K;
        }
    }
    out
}

/// Scratch buffers for rendering silhouettes, reused across views.
struct Silhouettes<'a> {
    mesh: &'a Mesh,
    used: &'a [bool],
    canvas: usize,
    plane: Vec<[f32; 3]>,
    pixels: Vec<bool>,
}

impl Silhouettes<'_> {
    /// Renders the mesh's silhouette from `camera` onto the canvas; returns the
    /// image-plane box fit, or None when the silhouette is a point.
    fn render(&mut self, camera: &ViewCamera) -> Option<BoxFit> {
        let (mut lo, mut hi) = ([f32::INFINITY; 2], [f32::NEG_INFINITY; 2]);
        self.plane.clear();
        for (p, &used) in self.mesh.positions.iter().zip(self.used) {
            let (u, v, d) = camera.plane(*p);
            if used && d > 0.0 {
                lo = [lo[0].min(u), lo[1].min(v)];
                hi = [hi[0].max(u), hi[1].max(v)];
            }
            self.plane.push([u, v, d]);
        }
        let fit = BoxFit::of(lo, hi)?;
        let zoom = fit.zoom(self.canvas);
        let half = self.canvas as f32 * 0.5;
        for p in &mut self.plane {
            p[0] = (p[0] - fit.centre[0]) * zoom + half;
            p[1] = (p[1] - fit.centre[1]) * zoom + half;
        }
        self.pixels.clear();
        self.pixels.resize(self.canvas * self.canvas, false);
        let pixels = &mut self.pixels;
        rasterize(&self.plane, &self.mesh.triangles, self.canvas, self.canvas, |i, _, _| pixels[i] = true);
        Some(fit)
    }

    fn iou(&self, target: &[bool]) -> f32 {
        let (mut both, mut either) = (0u32, 0u32);
        for (&a, &b) in self.pixels.iter().zip(target) {
            both += u32::from(a & b);
            either += u32::from(a | b);
        }
        if either == 0 {
            0.0
        } else {
            both as f32 / either as f32
        }
    }
}

fn wrap_azimuth(az: f32) -> f32 {
    let a = az.rem_euclid(360.0);
    if a >= 360.0 {
        0.0
    } else {
        a
    }
}

/// Finds the azimuth/elevation whose silhouette of `mesh` (model frame) best matches
/// `mask` (see the module docs). Errors, not panics, on an empty mesh or mask, an object
/// under [`MIN_OBJECT_PX`] pixels, or a bad grid.
pub fn fit_view(mesh: &Mesh, mask: &Mask, grid: &ViewGrid) -> Result<FittedView, ColourError> {
    grid.check()?;
    let used = check_mesh(mesh)?;
    let bbox = check_mask(mask)?;
    let target = mask_canvas(mask, bbox, grid.canvas);
    let mut sil = Silhouettes { mesh, used: &used, canvas: grid.canvas, plane: Vec::with_capacity(mesh.positions.len()), pixels: Vec::new() };
    let mut tried = 0usize;
    let mut score = |az: f32, el: f32, sil: &mut Silhouettes| -> f32 {
        tried += 1;
        match sil.render(&ViewCamera::r2n2(az, el, grid.distance_ratio)) {
            Some(_) => sil.iou(&target),
            None => -1.0,
        }
    };
    // Coarse grid.
    let mut coarse: Vec<(f32, f32, f32)> = Vec::with_capacity(grid.azimuths * grid.elevations_deg.len());
    for i in 0..grid.azimuths {
        let az = i as f32 * grid.azimuth_step();
        for &el in &grid.elevations_deg {
            coarse.push((score(az, el, &mut sil), az, el));
        }
    }
    coarse.sort_by(|a, b| b.0.total_cmp(&a.0));
    if coarse[0].0 < 0.0 {
        return Err(ColourError::NoSilhouette);
    }
    // Refine the best few by halving steps.
    let mut best = coarse[0];
    for &start in coarse.iter().take(grid.candidates.max(1)) {
        let mut here = start;
        let (mut step_az, mut step_el) = (grid.azimuth_step(), grid.elevation_step());
        for _ in 0..grid.refine_steps {
            step_az *= 0.5;
            step_el *= 0.5;
            let centre = here;
            for (da, de) in [(-1.0, -1.0), (0.0, -1.0), (1.0, -1.0), (-1.0, 0.0), (1.0, 0.0), (-1.0, 1.0), (0.0, 1.0), (1.0, 1.0)] {
                let az = wrap_azimuth(centre.1 + da * step_az);
                let el = (centre.2 + de * step_el).clamp(-89.0, 89.0);
                let s = score(az, el, &mut sil);
                if s > here.0 {
                    here = (s, az, el);
                }
            }
        }
        if here.0 > best.0 {
            best = here;
        }
    }
    let (iou, az, el) = best;
    // Align the winner's image plane to the photo: box centre onto box centre, longer side
    // onto longer side.
    let mut camera = ViewCamera::r2n2(az, el, grid.distance_ratio);
    let plane_fit = sil.render(&camera).ok_or(ColourError::NoSilhouette)?;
    let photo_fit = BoxFit::of([bbox[0] as f32, bbox[1] as f32], [bbox[2] as f32, bbox[3] as f32]).ok_or(ColourError::EmptyMask)?;
    camera.scale = photo_fit.side / plane_fit.side;
    camera.offset = [photo_fit.centre[0] - camera.scale * plane_fit.centre[0], photo_fit.centre[1] - camera.scale * plane_fit.centre[1]];
    Ok(FittedView { azimuth_deg: az, elevation_deg: el, silhouette_iou: iou, camera, views_tried: tried })
}

/// The mesh's silhouette from `camera` at `width` x `height` photo pixels.
pub fn silhouette(mesh: &Mesh, camera: &ViewCamera, width: usize, height: usize) -> Result<Mask, ColourError> {
    check_mesh(mesh)?;
    let points: Vec<[f32; 3]> = mesh.positions.iter().map(|&p| camera.project(p)).map(|(x, y, d)| [x, y, d]).collect();
    let mut data = vec![false; width * height];
    rasterize(&points, &mesh.triangles, width, height, |i, _, _| data[i] = true);
    Mask::new(width, height, data)
}

/// Per-vertex colours painted from a photo.
#[derive(Debug, Clone, PartialEq)]
pub struct Painted {
    /// One linear RGBA colour per vertex, and the base colour.
    pub colours: Colours,
    /// Which vertices took the photo's colour (the others hold the base colour).
    pub painted: Vec<bool>,
}

impl Painted {
    pub fn painted_fraction(&self) -> f32 {
        if self.painted.is_empty() {
            0.0
        } else {
            self.painted.iter().filter(|&&p| p).count() as f32 / self.painted.len() as f32
        }
    }
}

/// Per-channel median of the photo under `mask`, in sRGB bytes.
fn median_colour(photo: &RgbImage, mask: &Mask) -> Option<[u8; 3]> {
    let mut hist = [[0u32; 256]; 3];
    let mut n = 0u32;
    for (i, px) in photo.pixels().enumerate() {
        if mask.data[i] {
            n += 1;
            for c in 0..3 {
                hist[c][px.0[c] as usize] += 1;
            }
        }
    }
    if n == 0 {
        return None;
    }
    Some([0, 1, 2].map(|c| {
        let mut seen = 0;
        for (v, &count) in hist[c].iter().enumerate() {
            seen += count;
            if 2 * seen >= n {
                return v as u8;
            }
        }
        255
    }))
}

/// Vertex normals: the mesh's when it has one per vertex, else area-weighted ones.
fn normals_of(mesh: &Mesh) -> Vec<[f32; 3]> {
    if mesh.normals.len() == mesh.positions.len() {
        mesh.normals.clone()
    } else {
        let mut m = Mesh { positions: mesh.positions.clone(), triangles: mesh.triangles.clone(), normals: Vec::new() };
        m.recompute_normals();
        m.normals
    }
}

/// Rasterises the nearest depth of `mesh` from `camera` at `scale` x photo resolution.
struct DepthBuffer {
    width: usize,
    height: usize,
    scale: f32,
    depth: Vec<f32>,
}

impl DepthBuffer {
    fn new(mesh: &Mesh, camera: &ViewCamera, photo_w: usize, photo_h: usize, max_side: usize) -> Self {
        let scale = (max_side as f32 / photo_w.max(photo_h) as f32).min(1.0);
        let (width, height) = (((photo_w as f32 * scale).ceil() as usize).max(1), ((photo_h as f32 * scale).ceil() as usize).max(1));
        let points: Vec<[f32; 3]> = mesh
            .positions
            .iter()
            .map(|&p| {
                let (x, y, d) = camera.project(p);
                [x * scale, y * scale, d]
            })
            .collect();
        let mut depth = vec![f32::INFINITY; width * height];
        rasterize(&points, &mesh.triangles, width, height, |i, ti, w| {
            // Perspective-correct depth: interpolate 1/depth.
            let t = mesh.triangles[ti];
            let inv = w[0] / points[t[0] as usize][2] + w[1] / points[t[1] as usize][2] + w[2] / points[t[2] as usize][2];
            let d = 1.0 / inv;
            if d < depth[i] {
                depth[i] = d;
            }
        });
        DepthBuffer { width, height, scale, depth }
    }

    /// Nearest surface depth around photo pixel (x, y): the farthest of the 3 x 3
    /// neighbourhood, so a vertex on a depth edge is not hidden by its own neighbour.
    fn around(&self, x: f32, y: f32) -> f32 {
        let (cx, cy) = ((x * self.scale) as isize, (y * self.scale) as isize);
        let mut far = f32::NEG_INFINITY;
        for dy in -1..=1 {
            for dx in -1..=1 {
                let (px, py) = (cx + dx, cy + dy);
                if px >= 0 && py >= 0 && (px as usize) < self.width && (py as usize) < self.height {
                    let d = self.depth[py as usize * self.width + px as usize];
                    if d.is_finite() {
                        far = far.max(d);
                    }
                }
            }
        }
        far
    }
}

/// Paints `mesh` (model frame, the mesh `view` was fitted to) from `photo` (see the
/// module docs). `mask` must be the photo's size.
pub fn paint(mesh: &Mesh, photo: &RgbImage, mask: &Mask, view: &FittedView) -> Result<Painted, ColourError> {
    check_mesh(mesh)?;
    let (w, h) = (photo.width() as usize, photo.height() as usize);
    if (mask.width, mask.height) != (w, h) {
        return Err(ColourError::SizeMismatch { mask_width: mask.width, mask_height: mask.height, photo_width: w, photo_height: h });
    }
    check_mask(mask)?;
    // Object pixels away from the edge, where the photo does not blend in the background.
    let radius = (w.max(h) / 300).max(1);
    let inner = {
        let e = mask.eroded(radius);
        if e.count() > 0 {
            e
        } else {
            mask.clone()
        }
    };
    let base = median_colour(photo, &inner).ok_or(ColourError::EmptyMask)?;
    let base_colour = [srgb_u8_to_linear(base[0]), srgb_u8_to_linear(base[1]), srgb_u8_to_linear(base[2]), 1.0];

    let camera = &view.camera;
    let normals = normals_of(mesh);
    let depth = DepthBuffer::new(mesh, camera, w, h, 512);
    let (lo, hi) = mesh.bounds().ok_or(ColourError::EmptyMesh)?;
    let diagonal = dot(sub(hi, lo), sub(hi, lo)).sqrt();
    let tolerance = 0.015 * diagonal;
    let mut per_vertex = vec![base_colour; mesh.positions.len()];
    let mut painted = vec![false; mesh.positions.len()];
    for (i, (&p, &n)) in mesh.positions.iter().zip(&normals).enumerate() {
        let (x, y, d) = camera.project(p);
        if !(x >= 0.0 && y >= 0.0 && x < w as f32 && y < h as f32 && d > 0.0) {
            continue;
        }
        // Facing the camera, not hidden behind other surface, on the object in the photo.
        if dot(n, normalize(sub(camera.position, p))) < 0.1 || d > depth.around(x, y) + tolerance {
            continue;
        }
        let (px, py) = (x as usize, y as usize);
        if !inner.get(px, py) {
            continue;
        }
        let mut sum = [0.0f32; 3];
        let mut count = 0.0f32;
        for yy in py.saturating_sub(1)..(py + 2).min(h) {
            for xx in px.saturating_sub(1)..(px + 2).min(w) {
                if mask.get(xx, yy) {
                    let c = photo.get_pixel(xx as u32, yy as u32).0;
                    for k in 0..3 {
                        sum[k] += srgb_u8_to_linear(c[k]);
                    }
                    count += 1.0;
                }
            }
        }
        per_vertex[i] = [sum[0] / count, sum[1] / count, sum[2] / count, 1.0];
        painted[i] = true;
    }
    Ok(Painted { colours: Colours { per_vertex, base_colour }, painted })
}

/// Draws `mesh` with its vertex colours from `camera` on `background` (sRGB), lightly
/// shaded so its form reads (the painted colours already hold the photo's lighting).
pub fn render_coloured(mesh: &Mesh, colours: &Colours, camera: &ViewCamera, width: usize, height: usize, background: [u8; 3]) -> Result<RgbImage, ColourError> {
    check_mesh(mesh)?;
    let normals = normals_of(mesh);
    let points: Vec<[f32; 3]> = mesh.positions.iter().map(|&p| camera.project(p)).map(|(x, y, d)| [x, y, d]).collect();
    let mut depth = vec![f32::INFINITY; width * height];
    let mut colour = vec![[0.0f32; 3]; width * height];
    rasterize(&points, &mesh.triangles, width, height, |i, ti, b| {
        let t = mesh.triangles[ti];
        let inv: f32 = (0..3).map(|k| b[k] / points[t[k] as usize][2]).sum();
        let d = 1.0 / inv;
        if d >= depth[i] {
            return;
        }
        depth[i] = d;
        // Perspective-correct weights.
        let q = [0, 1, 2].map(|k| b[k] / points[t[k] as usize][2] / inv);
        let mut n = [0.0f32; 3];
        let mut c = [0.0f32; 3];
        for k in 0..3 {
            let v = t[k] as usize;
            let vc = colours.vertex(v);
            for a in 0..3 {
                n[a] += q[k] * normals[v][a];
                c[a] += q[k] * vc[a];
            }
        }
        let p: [f32; 3] = std::array::from_fn(|a| (0..3).map(|k| q[k] * mesh.positions[t[k] as usize][a]).sum());
        let facing = dot(normalize(n), normalize(sub(camera.position, p))).abs();
        let shade = 0.7 + 0.3 * facing;
        colour[i] = c.map(|v| v * shade);
    });
    Ok(RgbImage::from_fn(width as u32, height as u32, |x, y| {
        let i = y as usize * width + x as usize;
        if depth[i].is_finite() {
            image::Rgb(colour[i].map(linear_to_srgb_u8))
        } else {
            image::Rgb(background)
        }
    }))
}

/// Share of the photo's object pixels that the mesh covers from the fitted view, in the
/// photo's own pixels: what part of what the photo shows the asset accounts for (a chair
/// whose legs were not predicted leaves them uncovered). `mask` must be the photo's mask.
pub fn mask_coverage(mesh: &Mesh, view: &FittedView, mask: &Mask) -> Result<f32, ColourError> {
    let object = mask.count();
    if object == 0 {
        return Err(ColourError::EmptyMask);
    }
    let drawn = silhouette(mesh, &view.camera, mask.width, mask.height)?;
    let covered = drawn.data.iter().zip(&mask.data).filter(|(&s, &m)| s && m).count();
    Ok(covered as f32 / object as f32)
}

/// Preview views: azimuth and elevation, degrees (front-left, back-right, above).
pub const PREVIEW_VIEWS: [(f32, f32); 3] = [(30.0, 25.0), (210.0, 25.0), (120.0, 60.0)];

/// The mesh (model frame) with its colours from each of `views`, side by side on white,
/// each `side` pixels square with the object's silhouette fitted to 85% of the tile. The
/// mesh is centred and scaled to a unit diagonal first, so a grid placed anywhere (a real
/// binvox file's own translation and scale) is seen the same way.
pub fn preview(mesh: &Mesh, colours: &Colours, views: &[(f32, f32)], side: usize) -> Result<RgbImage, ColourError> {
    check_mesh(mesh)?;
    let (lo, hi) = mesh.bounds().ok_or(ColourError::EmptyMesh)?;
    let centre: [f32; 3] = std::array::from_fn(|a| 0.5 * (lo[a] + hi[a]));
    let diagonal = dot(sub(hi, lo), sub(hi, lo)).sqrt();
    if !(diagonal > 1e-9) {
        return Err(ColourError::NoSilhouette);
    }
    let unit = Mesh {
        positions: mesh.positions.iter().map(|p| std::array::from_fn(|a| (p[a] - centre[a]) / diagonal)).collect(),
        ..mesh.clone()
    };
    let mesh = &unit;
    let mut sheet = RgbImage::from_pixel((side * views.len()) as u32, side as u32, image::Rgb([255; 3]));
    for (i, &(azimuth, elevation)) in views.iter().enumerate() {
        let mut camera = ViewCamera::r2n2(azimuth, elevation, DEFAULT_DISTANCE_RATIO);
        let (mut lo, mut hi) = ([f32::INFINITY; 2], [f32::NEG_INFINITY; 2]);
        for &p in &mesh.positions {
            let (u, v, d) = camera.plane(p);
            if d > 0.0 && u.is_finite() && v.is_finite() {
                lo = [lo[0].min(u), lo[1].min(v)];
                hi = [hi[0].max(u), hi[1].max(v)];
            }
        }
        let fit = BoxFit::of(lo, hi).ok_or(ColourError::NoSilhouette)?;
        camera.scale = 0.85 * side as f32 / fit.side;
        camera.offset = [side as f32 * 0.5 - camera.scale * fit.centre[0], side as f32 * 0.5 - camera.scale * fit.centre[1]];
        let tile = render_coloured(mesh, colours, &camera, side, side, [255; 3])?;
        image::imageops::replace(&mut sheet, &tile, (i * side) as i64, 0);
    }
    Ok(sheet)
}
