//! Before/after of the refine stage's smoothing on the synthetic catalog (issue 18).
//!
//! For every category and a few models: the ground-truth 32^3 voxels with a fraction of
//! the surface voxels flipped (a stand-in for network output), marching cubes, then each
//! smoothing method at a few iteration counts. Each mesh is scored against the
//! ground-truth mesh: Chamfer-L1, F-score at 1% of the ground truth's bounding-box
//! diagonal, and volume change. Prints markdown tables and writes one picture of a chair
//! under each method.
//!
//! cargo run --release -p mono2mesh-catalog --example smoothing_before_after -- \
//!     [MODELS_PER_CATEGORY=3 (0: picture only)] [PICTURE=docs/experiments/refinement-chair.png] [FLIP=0.1]
//!
//! With the trained pack's predictions instead of noisy ground truth (what
//! `scripts/bench/refinement_predictions.sh` runs):
//!
//! cargo run --release -p mono2mesh-catalog --example smoothing_before_after -- \
//!     --predictions DIR [--seed 7919] [--models-per-category 50] [--source npy|binvox] \
//!     [--iso 0.3,0.4,0.5] [--laplacian 5,10,20,40] [--best 4] [--also 0.5:laplacian:10,...]
//!
//! DIR holds `mono2mesh run` output folders named after the catalog's model ids (one photo
//! per test-split model of a `dataset synth` catalog with that seed and size). `npy` (the
//! default) meshes `probabilities.npy` at each `--iso` level (default 0.3, the pipeline's
//! level before 2026-12-06); `binvox` meshes the thresholded `voxels.binvox` (cut at the
//! reconstruct stage's threshold, 0.3) at 0.5 by default. Each level's mesh gets the raw
//! surface, the uniform Laplacian (lambda 0.5) at each `--laplacian` iteration count, HC
//! x10 and Taubin x10. Per level it prints the tables of the noisy-ground-truth mode (plus
//! F@2%); with several levels then every (level, method) pair on the models that have a
//! surface at every level, and F@1%, Chamfer-L1 and volume per category for the level 0.3
//! Laplacian x10 pair, the `--also` pairs (as in `--picture-meshes`) and the `--best` pairs
//! by F@1%. The predicted grid is placed where
//! the ground truth's 32^3 voxelisation sits (the frame Pix2Vox is trained in), so the
//! scores include the network's error, not only the refinement's.
//!
//! A picture of one prediction instead of the tables:
//!
//! ... --predictions DIR --picture OUT.png --picture-model ID [--picture-photo PNG] \
//!     --picture-meshes 0.5:raw,0.5:laplacian:20,0.3:laplacian:10,0.5:hc,0.5:taubin
//!
//! draws the photo, the ground-truth mesh, then the prediction at each LEVEL:METHOD[:N]
//! (raw, laplacian, hc or taubin at their usual parameters; N iterations, default 10).
//!
//! Ground truth. Catalog meshes are unions of overlapping closed parts, so their raw
//! triangles include surfaces buried inside other parts, and the sum of the parts' volumes
//! counts overlaps twice. Both measures therefore use the solid the parts enclose, found by
//! casting rays along x through a 512^2 lattice and counting signed crossings (inside where
//! the winding number is positive): its volume is the integral of the inside lengths, and a
//! ground-truth surface sample counts only if a point 1.5 lattice cells out along its face
//! normal is outside the solid (i.e. it lies on the outer skin).
//!
//! Chamfer-L1 is the mean of the two directions' mean nearest-neighbour Euclidean distances
//! between 30 000 area-uniform samples of each surface; F-score uses the same samples.

use mono2mesh_catalog::builder::{ColoredMesh, Material};
use mono2mesh_catalog::camera::Camera;
use mono2mesh_catalog::dataset::{synthetic_taxonomy, SynthConfig};
use mono2mesh_catalog::preview::over_background;
use mono2mesh_catalog::render::{render, Lighting, ShadedMesh};
use mono2mesh_catalog::voxelize::{placement_for, voxel_surface_mesh, voxelize};
use mono2mesh_catalog::{generate, Rng};
use mono2mesh_core::Category;
use mono2mesh_geometry::iou::iou_at_thresholds;
use mono2mesh_geometry::marching_cubes::marching_cubes;
use mono2mesh_geometry::npy::npy_to_grid;
use mono2mesh_geometry::smooth::{smooth, SmoothError, Smoothing};
use mono2mesh_geometry::surface::PointTree;
use mono2mesh_geometry::{Mesh, VoxelGrid};
use rayon::prelude::*;

const SEED: u64 = 1;
const SAMPLES: usize = 30_000;
const LATTICE: usize = 512;

fn methods() -> Vec<(String, Smoothing)> {
    let mut out = vec![("raw marching cubes".to_string(), Smoothing::None)];
    for iterations in [5, 10, 20] {
        out.push((format!("Laplacian 0.5 x{iterations}"), Smoothing::Laplacian { lambda: 0.5, iterations }));
    }
    for iterations in [5, 10, 20] {
        out.push((format!("Taubin 0.5/-0.53 x{iterations}"), Smoothing::Taubin { lambda: 0.5, mu: -0.53, iterations }));
    }
    for iterations in [5, 10, 20, 50] {
        out.push((format!("HC 0.1/0.5 x{iterations}"), Smoothing::Hc { alpha: 0.1, beta: 0.5, iterations }));
    }
    out
}

/// Flips each surface voxel (occupied with an empty 6-neighbour, or empty with an occupied
/// one; outside the grid counts as empty) with probability `fraction`.
fn flip_surface(grid: &VoxelGrid, fraction: f32, rng: &mut Rng) -> VoxelGrid {
    let [nx, ny, nz] = grid.dims;
    let occupied = |x: isize, y: isize, z: isize| {
        x >= 0 && y >= 0 && z >= 0 && (x as usize) < nx && (y as usize) < ny && (z as usize) < nz && grid.get(x as usize, y as usize, z as usize) >= 0.5
    };
    let mut out = grid.clone();
    for x in 0..nx {
        for y in 0..ny {
            for z in 0..nz {
                let (xi, yi, zi) = (x as isize, y as isize, z as isize);
                let me = occupied(xi, yi, zi);
                let boundary = [(1, 0, 0), (-1, 0, 0), (0, 1, 0), (0, -1, 0), (0, 0, 1), (0, 0, -1)]
                    .iter()
                    .any(|&(dx, dy, dz)| occupied(xi + dx, yi + dy, zi + dz) != me);
                if boundary && rng.chance(fraction) {
                    out.set(x, y, z, if me { 0.0 } else { 1.0 });
                }
            }
        }
    }
    out
}

/// The solid enclosed by a union of closed, outward-oriented parts, sampled along x rays.
struct Solid {
    origin: [f32; 3],
    cell: f32,
    n: usize,
    /// Per (y, z) ray: sorted x intervals where the winding number is positive.
    intervals: Vec<Vec<(f32, f32)>>,
    volume: f64,
}

impl Solid {
    fn of(mesh: &Mesh) -> Solid {
        let placement = placement_for(mesh).expect("catalog meshes are valid");
        let n = LATTICE;
        // A margin of two cells so the skin test never leaves the lattice for real surfaces.
        let cell = placement.scale / (n - 4) as f32;
        let origin = placement.translate.map(|t| t - 2.0 * cell);
        let mut crossings: Vec<Vec<(f32, i32)>> = vec![Vec::new(); n * n];
        // A tiny irrational offset keeps rays off the parts' axis-aligned edges.
        let jitter = 0.000_317;
        for t in &mesh.triangles {
            let [a, b, c] = t.map(|i| mesh.positions[i as usize]);
            let normal_x = (b[1] - a[1]) * (c[2] - a[2]) - (b[2] - a[2]) * (c[1] - a[1]);
            if normal_x == 0.0 {
                continue;
            }
            let to_index = |v: f32, axis: usize| (v - origin[axis]) / cell - 0.5 - jitter;
            let (ylo, yhi) = (a[1].min(b[1]).min(c[1]), a[1].max(b[1]).max(c[1]));
            let (zlo, zhi) = (a[2].min(b[2]).min(c[2]), a[2].max(b[2]).max(c[2]));
            let range = |lo: f32, hi: f32, axis: usize| {
                (to_index(lo, axis).ceil().max(0.0) as isize)..=(to_index(hi, axis).floor() as isize).min(n as isize - 1)
            };
            for j in range(ylo, yhi, 1) {
                let y = origin[1] + (j as f32 + 0.5 + jitter) * cell;
                for k in range(zlo, zhi, 2) {
                    let z = origin[2] + (k as f32 + 0.5 + jitter) * cell;
                    // Barycentric coordinates of (y, z) in the projected triangle.
                    let d = normal_x;
                    let u = ((b[1] - y) * (c[2] - z) - (b[2] - z) * (c[1] - y)) / d;
                    let v = ((c[1] - y) * (a[2] - z) - (c[2] - z) * (a[1] - y)) / d;
                    let w = 1.0 - u - v;
                    if u < 0.0 || v < 0.0 || w < 0.0 {
                        continue;
                    }
                    let x = u * a[0] + v * b[0] + w * c[0];
                    // Outward normal along +x: the ray leaves the part here.
                    crossings[j as usize * n + k as usize].push((x, if normal_x > 0.0 { -1 } else { 1 }));
                }
            }
        }
        let mut volume = 0f64;
        let intervals: Vec<Vec<(f32, f32)>> = crossings
            .into_iter()
            .map(|mut list| {
                list.sort_by(|p, q| p.0.total_cmp(&q.0));
                let mut out = Vec::new();
                let mut winding = 0;
                let mut start = 0f32;
                for (x, delta) in list {
                    let before = winding;
                    winding += delta;
                    if before <= 0 && winding > 0 {
                        start = x;
                    } else if before > 0 && winding <= 0 {
                        out.push((start, x));
                    }
                }
                out
            })
            .collect();
        for list in &intervals {
            volume += list.iter().map(|&(s, e)| f64::from(e - s)).sum::<f64>() * f64::from(cell) * f64::from(cell);
        }
        Solid { origin, cell, n, intervals, volume }
    }

    fn contains(&self, p: [f32; 3]) -> bool {
        let j = ((p[1] - self.origin[1]) / self.cell).floor();
        let k = ((p[2] - self.origin[2]) / self.cell).floor();
        if j < 0.0 || k < 0.0 || j >= self.n as f32 || k >= self.n as f32 {
            return false;
        }
        self.intervals[j as usize * self.n + k as usize].iter().any(|&(s, e)| p[0] >= s && p[0] <= e)
    }
}

/// `count` area-uniform surface points with their triangle's unit normal.
fn sample_surface(mesh: &Mesh, count: usize, rng: &mut Rng) -> Vec<([f32; 3], [f32; 3])> {
    let mut cumulative = Vec::with_capacity(mesh.triangles.len());
    let mut total = 0f64;
    let mut normals = Vec::with_capacity(mesh.triangles.len());
    for t in &mesh.triangles {
        let [a, b, c] = t.map(|i| mesh.positions[i as usize]);
        let e1 = [b[0] - a[0], b[1] - a[1], b[2] - a[2]];
        let e2 = [c[0] - a[0], c[1] - a[1], c[2] - a[2]];
        let n = [e1[1] * e2[2] - e1[2] * e2[1], e1[2] * e2[0] - e1[0] * e2[2], e1[0] * e2[1] - e1[1] * e2[0]];
        let len = (n[0] * n[0] + n[1] * n[1] + n[2] * n[2]).sqrt();
        total += f64::from(len) * 0.5;
        cumulative.push(total);
        normals.push(if len > 0.0 { n.map(|c| c / len) } else { [0.0; 3] });
    }
    (0..count)
        .map(|_| {
            let target = rng.unit() * total;
            let t = cumulative.partition_point(|&c| c < target).min(mesh.triangles.len() - 1);
            let [a, b, c] = mesh.triangles[t].map(|i| mesh.positions[i as usize]);
            let (mut r1, mut r2) = (rng.unit() as f32, rng.unit() as f32);
            if r1 + r2 > 1.0 {
                (r1, r2) = (1.0 - r1, 1.0 - r2);
            }
            let p = std::array::from_fn(|k| a[k] + r1 * (b[k] - a[k]) + r2 * (c[k] - a[k]));
            (p, normals[t])
        })
        .collect()
}

/// Distance to the nearest point of `tree` (the geometry crate's exact k-d tree, the same
/// search `eval`'s surface metrics use).
fn nearest(tree: &PointTree, p: [f32; 3]) -> f32 {
    tree.nearest(p).map_or(f32::INFINITY, |(d, _)| d)
}

#[derive(Clone, Copy, Default)]
struct Score {
    chamfer: f64,
    fscore: f64,
    /// F-score at 2% of the diagonal.
    fscore2: f64,
    volume_change: f64,
    /// Against the raw marching-cubes mesh: the smoothing's own shrinkage or growth.
    volume_vs_raw: f64,
}

struct Reference {
    points: Vec<[f32; 3]>,
    grid: PointTree,
    volume: f64,
    diagonal: f32,
}

fn reference(mesh: &Mesh, rng: &mut Rng) -> Reference {
    let solid = Solid::of(mesh);
    let step = 1.5 * solid.cell;
    let mut points = Vec::with_capacity(SAMPLES);
    // Oversample, keep the outer skin only, stop at SAMPLES.
    while points.len() < SAMPLES {
        for (p, n) in sample_surface(mesh, SAMPLES, rng) {
            let out = std::array::from_fn(|a| p[a] + step * n[a]);
            if !solid.contains(out) && points.len() < SAMPLES {
                points.push(p);
            }
        }
    }
    let (lo, hi) = mesh.bounds().unwrap();
    let diagonal = (0..3).map(|a| (hi[a] - lo[a]).powi(2)).sum::<f32>().sqrt();
    Reference { grid: PointTree::new(&points), points, volume: solid.volume, diagonal }
}

fn score(mesh: &Mesh, reference: &Reference, rng: &mut Rng) -> Score {
    let points: Vec<[f32; 3]> = sample_surface(mesh, SAMPLES, rng).into_iter().map(|(p, _)| p).collect();
    let grid = PointTree::new(&points);
    let to_reference: Vec<f32> = points.iter().map(|&p| nearest(&reference.grid, p)).collect();
    let to_prediction: Vec<f32> = reference.points.iter().map(|&p| nearest(&grid, p)).collect();
    let mean = |d: &[f32]| d.iter().map(|&x| f64::from(x)).sum::<f64>() / d.len() as f64;
    let fscore = |fraction: f32| {
        let tau = fraction * reference.diagonal;
        let within = |d: &[f32]| d.iter().filter(|&&x| x <= tau).count() as f64 / d.len() as f64;
        let (precision, recall) = (within(&to_reference), within(&to_prediction));
        if precision + recall > 0.0 { 2.0 * precision * recall / (precision + recall) } else { 0.0 }
    };
    Score {
        chamfer: 0.5 * (mean(&to_reference) + mean(&to_prediction)),
        fscore: fscore(0.01),
        fscore2: fscore(0.02),
        volume_change: mesh.signed_volume() / reference.volume - 1.0,
        volume_vs_raw: 0.0,
    }
}

fn picture(path: &str, flip: f32) -> Result<(), Box<dyn std::error::Error>> {
    let model = generate(Category::Chair, SEED, 0);
    let voxels = voxelize(&model.mesh.mesh, 32)?;
    let noisy = flip_surface(&voxels, flip, &mut Rng::derive(SEED, "smoothing-noise", Category::Chair.index() as u64 * 1000));
    let raw = marching_cubes(&noisy, 0.5)?;
    let tile = 220;
    let camera = Camera::look_at([1.25, 0.75, 0.9], [0.0; 3], 0.0, tile as f32 * 1.8, tile, tile);
    let grey = Material::matte([0.72, 0.74, 0.78]);
    let mut meshes = vec![model.mesh.clone(), ColoredMesh::uniform(voxel_surface_mesh(&noisy), Material::matte([0.55, 0.6, 0.75]))];
    for smoothing in [
        Smoothing::None,
        Smoothing::Laplacian { lambda: 0.5, iterations: 10 },
        Smoothing::Taubin { lambda: 0.5, mu: -0.53, iterations: 10 },
        Smoothing::Hc { alpha: 0.1, beta: 0.5, iterations: 10 },
    ] {
        let mut mesh = raw.clone();
        smooth(&mut mesh, smoothing)?;
        meshes.push(ColoredMesh::uniform(mesh, grey));
    }
    let mut sheet = image::RgbImage::from_pixel((meshes.len() * tile) as u32, tile as u32, image::Rgb([255, 255, 255]));
    for (i, mesh) in meshes.iter().enumerate() {
        let img = render(&ShadedMesh::new(mesh), &camera, &Lighting::default(), 2);
        image::imageops::replace(&mut sheet, &over_background(&img, [255, 255, 255]), (i * tile) as i64, 0);
    }
    sheet.save(path)?;
    eprintln!("wrote {path}: ground truth, noisy voxels, raw marching cubes, Laplacian x10, Taubin x10, HC x10");
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--predictions") {
        return predictions(&args[2..]);
    }
    let per_category: u64 = args.get(1).map(|s| s.parse()).transpose()?.unwrap_or(3);
    let picture_path = args.get(2).map(String::as_str).unwrap_or("docs/experiments/refinement-chair.png");
    let flip: f32 = args.get(3).map(|s| s.parse()).transpose()?.unwrap_or(0.1);
    let methods = methods();
    let jobs: Vec<(Category, u64)> = Category::ALL.iter().flat_map(|&c| (0..per_category).map(move |i| (c, i))).collect();
    // Per job: one score per method.
    let results: Vec<(Category, Vec<Score>)> = jobs
        .par_iter()
        .map(|&(category, index)| {
            let model = generate(category, SEED, index);
            let key = category.index() as u64 * 1000 + index;
            let voxels = voxelize(&model.mesh.mesh, 32).expect("catalog meshes voxelize");
            let noisy = flip_surface(&voxels, flip, &mut Rng::derive(SEED, "smoothing-noise", key));
            let raw = marching_cubes(&noisy, 0.5).expect("valid grid");
            let reference = reference(&model.mesh.mesh, &mut Rng::derive(SEED, "smoothing-reference", key));
            if std::env::var_os("DEBUG_VOLUMES").is_some() {
                let cell = f64::from(voxels.scale) / 32.0;
                let voxel_volume = voxels.data.iter().filter(|&&v| v >= 0.5).count() as f64 * cell.powi(3);
                let report = model.mesh.mesh.edge_report();
                eprintln!(
                    "{} #{index}: solid {:.5} parts-sum {:.5} voxels {:.5} raw MC {:.5}; boundary edges {} misoriented {}",
                    category.name(),
                    reference.volume,
                    model.mesh.mesh.signed_volume(),
                    voxel_volume,
                    raw.signed_volume(),
                    report.boundary_edges,
                    report.misoriented_edges
                );
            }
            let scores = score_methods(&methods, &raw, &reference, key).expect("marching cubes output smooths");
            eprintln!("{} #{index} done", category.name());
            (category, scores)
        })
        .collect();

    if results.is_empty() {
        // MODELS_PER_CATEGORY = 0: only the picture.
        return picture(picture_path, flip);
    }
    println!("{} models ({} per category), {:.0}% of surface voxels flipped\n", results.len(), per_category, flip * 100.0);
    print_tables(&methods, &results);
    picture(picture_path, flip)
}

/// Every method on `raw`, scored against `reference` (the same surface samples for each).
fn score_methods(methods: &[(String, Smoothing)], raw: &Mesh, reference: &Reference, key: u64) -> Result<Vec<Score>, SmoothError> {
    methods
        .iter()
        .map(|&(_, smoothing)| {
            let mut mesh = raw.clone();
            smooth(&mut mesh, smoothing)?;
            let mut s = score(&mesh, reference, &mut Rng::derive(SEED, "smoothing-samples", key));
            s.volume_vs_raw = mesh.signed_volume() / raw.signed_volume() - 1.0;
            Ok(s)
        })
        .collect()
}

fn print_tables(methods: &[(String, Smoothing)], results: &[(Category, Vec<Score>)]) {
    let n = results.len() as f64;
    println!("| method | Chamfer-L1 (x1e-3 diag) | F@1% | F@2% | volume vs ground truth (mean) | (mean abs) | volume vs raw MC |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for (m, (name, _)) in methods.iter().enumerate() {
        let mean = |f: &dyn Fn(&Score) -> f64| results.iter().map(|(_, s)| f(&s[m])).sum::<f64>() / n;
        println!(
            "| {name} | {:.2} | {:.3} | {:.3} | {:+.1}% | {:.1}% | {:+.1}% |",
            1e3 * mean(&|s| s.chamfer),
            mean(&|s| s.fscore),
            mean(&|s| s.fscore2),
            100.0 * mean(&|s| s.volume_change),
            100.0 * mean(&|s| s.volume_change.abs()),
            100.0 * mean(&|s| s.volume_vs_raw),
        );
    }
    // Per category, the 10-iteration variants against raw.
    let shown: Vec<usize> = methods.iter().enumerate().filter(|(_, (name, _))| name.starts_with("raw") || name.ends_with("x10") || name == "Laplacian 0.5 x20").map(|(i, _)| i).collect();
    let present: Vec<Category> = Category::ALL.into_iter().filter(|c| results.iter().any(|(r, _)| r == c)).collect();
    println!("\nF@1% per category (mean over its models):\n");
    println!("| category | {} |", shown.iter().map(|&i| methods[i].0.as_str()).collect::<Vec<_>>().join(" | "));
    println!("|---|{}", "---:|".repeat(shown.len()));
    for &category in &present {
        let rows: Vec<&Vec<Score>> = results.iter().filter(|(c, _)| *c == category).map(|(_, s)| s).collect();
        let cells: Vec<String> =
            shown.iter().map(|&i| format!("{:.3}", rows.iter().map(|s| s[i].fscore).sum::<f64>() / rows.len() as f64)).collect();
        println!("| {} | {} |", category.name(), cells.join(" | "));
    }
    println!("\nVolume change per category (mean over its models):\n");
    println!("| category | {} |", shown.iter().map(|&i| methods[i].0.as_str()).collect::<Vec<_>>().join(" | "));
    println!("|---|{}", "---:|".repeat(shown.len()));
    for &category in &present {
        let rows: Vec<&Vec<Score>> = results.iter().filter(|(c, _)| *c == category).map(|(_, s)| s).collect();
        let cells: Vec<String> = shown
            .iter()
            .map(|&i| format!("{:+.1}%", 100.0 * rows.iter().map(|s| s[i].volume_change).sum::<f64>() / rows.len() as f64))
            .collect();
        println!("| {} | {} |", category.name(), cells.join(" | "));
    }
}

/// The methods swept on predictions: the uniform Laplacian at each of `laplacian`'s
/// iteration counts, HC and Taubin at their defaults (their other counts score alike on
/// predictions: the 2026-12-05 table in docs/experiments/refinement.md).
fn prediction_methods(laplacian: &[u32]) -> Vec<(String, Smoothing)> {
    let mut out = vec![("raw marching cubes".to_string(), Smoothing::None)];
    for &iterations in laplacian {
        out.push((format!("Laplacian 0.5 x{iterations}"), Smoothing::Laplacian { lambda: 0.5, iterations }));
    }
    out.push(("HC 0.1/0.5 x10".to_string(), Smoothing::Hc { alpha: 0.1, beta: 0.5, iterations: 10 }));
    out.push(("Taubin 0.5/-0.53 x10".to_string(), Smoothing::Taubin { lambda: 0.5, mu: -0.53, iterations: 10 }));
    out
}

/// `LEVEL:METHOD[:ITERATIONS]` with METHOD raw, laplacian (lambda 0.5), hc (0.1/0.5) or
/// taubin (0.5/-0.53); iterations default to 10.
fn parse_mesh_spec(spec: &str) -> Result<(f32, Smoothing), String> {
    let parts: Vec<&str> = spec.split(':').collect();
    let bad = || format!("mesh {spec:?}: expected LEVEL:raw|laplacian|hc|taubin[:ITERATIONS]");
    if parts.len() < 2 || parts.len() > 3 {
        return Err(bad());
    }
    let iso: f32 = parts[0].parse().map_err(|_| bad())?;
    let iterations: u32 = parts.get(2).map(|s| s.parse()).transpose().map_err(|_| bad())?.unwrap_or(10);
    let smoothing = match parts[1] {
        "raw" | "none" => Smoothing::None,
        "laplacian" => Smoothing::Laplacian { lambda: 0.5, iterations },
        "hc" => Smoothing::Hc { alpha: 0.1, beta: 0.5, iterations },
        "taubin" => Smoothing::Taubin { lambda: 0.5, mu: -0.53, iterations },
        _ => return Err(bad()),
    };
    Ok((iso, smoothing))
}

fn parse_list<T: std::str::FromStr>(arg: &str, value: &str) -> Result<Vec<T>, String> {
    let out: Result<Vec<T>, _> = value.split(',').map(|s| s.trim().parse::<T>()).collect();
    out.ok().filter(|v| !v.is_empty()).ok_or_else(|| format!("{arg}: expected a comma-separated list, got {value:?}"))
}

/// One predicted grid in the ground truth's 32^3 frame, with that ground truth.
fn load_prediction(dir: &std::path::Path, id: &str, source: &str, truth: &VoxelGrid) -> Result<VoxelGrid, String> {
    let folder = dir.join(id);
    let mut grid = if source == "npy" {
        let path = folder.join("probabilities.npy");
        let bytes = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        npy_to_grid(&bytes).map_err(|e| e.to_string())?
    } else {
        VoxelGrid::read_binvox(folder.join("voxels.binvox")).map_err(|e| e.to_string())?
    };
    if grid.dims != truth.dims {
        return Err(format!("predicted grid is {:?}, ground truth {:?}", grid.dims, truth.dims));
    }
    grid.translate = truth.translate;
    grid.scale = truth.scale;
    Ok(grid)
}

/// `--predictions DIR ...`: the tables on the trained pack's output for the catalog's test
/// split, once per mesh level, then every (level, method) pair side by side and F@1% per
/// category for the best pairs. With `--picture`, only the picture.
fn predictions(args: &[String]) -> Result<(), Box<dyn std::error::Error>> {
    let mut dir = None;
    let (mut seed, mut per_category, mut source) = (7919u64, 50usize, "npy".to_string());
    let mut levels: Option<Vec<f32>> = None;
    let mut laplacian = vec![5u32, 10, 20, 40];
    let mut best = 4usize;
    let mut also: Vec<(f32, Smoothing)> = Vec::new();
    let (mut picture_path, mut picture_model, mut photo, mut meshes) = (None, None, None, None);
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        let mut value = || rest.next().ok_or_else(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--seed" => seed = value()?.parse()?,
            "--models-per-category" => per_category = value()?.parse()?,
            "--source" => source = value()?.clone(),
            "--iso" => levels = Some(parse_list(arg, value()?)?),
            "--laplacian" => laplacian = parse_list(arg, value()?)?,
            "--best" => best = value()?.parse()?,
            "--also" => also = value()?.split(',').map(parse_mesh_spec).collect::<Result<Vec<_>, _>>()?,
            "--picture" => picture_path = Some(value()?.clone()),
            "--picture-model" => picture_model = Some(value()?.clone()),
            "--picture-photo" => photo = Some(std::path::PathBuf::from(value()?)),
            "--picture-meshes" => {
                meshes = Some(value()?.split(',').map(parse_mesh_spec).collect::<Result<Vec<_>, _>>()?);
            }
            other if dir.is_none() && !other.starts_with("--") => dir = Some(std::path::PathBuf::from(other)),
            other => return Err(format!("unexpected argument {other:?}").into()),
        }
    }
    let dir = dir.ok_or("--predictions needs the directory of `mono2mesh run` output")?;
    if source != "npy" && source != "binvox" {
        return Err(format!("--source is npy or binvox, not {source:?}").into());
    }
    if let Some(path) = picture_path {
        let id = picture_model.ok_or("--picture needs --picture-model ID")?;
        let meshes = meshes.ok_or("--picture needs --picture-meshes LEVEL:METHOD[:N],...")?;
        return prediction_picture(&path, &dir, &id, &source, seed, photo.as_deref(), &meshes);
    }
    let levels = levels.unwrap_or_else(|| vec![if source == "binvox" { 0.5 } else { 0.3 }]);
    if let Some(bad) = levels.iter().find(|l| !(**l > 0.0 && **l < 1.0)) {
        return Err(format!("--iso levels lie strictly between 0 and 1, not {bad}").into());
    }
    let cfg = SynthConfig { seed, models_per_category: per_category, views: 1, ..SynthConfig::default() };
    let mut jobs = Vec::new();
    for (category, entry) in cfg.categories.iter().zip(synthetic_taxonomy(&cfg)) {
        for id in entry.test {
            let index: u64 = id.rsplit('-').next().and_then(|s| s.parse().ok()).ok_or_else(|| format!("model id {id:?} has no index"))?;
            jobs.push((*category, index, id));
        }
    }
    let methods = prediction_methods(&laplacian);
    // Per model: per level the scores per method (None where the level finds no surface),
    // and the prediction's voxel IoU at 0.3 (a check that the grid is read in the ground
    // truth's frame: it should match the pack's evaluation).
    type Scored = (Category, Vec<Option<Vec<Score>>>, f32);
    let results: Vec<Result<Scored, String>> = jobs
        .par_iter()
        .map(|(category, index, id)| {
            let fail = |what: String| format!("{id}: {what}");
            let model = generate(*category, seed, *index);
            let truth = voxelize(&model.mesh.mesh, 32).map_err(|e| fail(e.to_string()))?;
            let grid = load_prediction(&dir, id, &source, &truth).map_err(fail)?;
            let iou = iou_at_thresholds(&grid, &truth, &[0.3]).map_err(|e| fail(e.to_string()))?[0];
            let key = category.index() as u64 * 1000 + index;
            let reference = reference(&model.mesh.mesh, &mut Rng::derive(seed, "smoothing-reference", key));
            let mut per_level = Vec::with_capacity(levels.len());
            for &iso in &levels {
                let raw = marching_cubes(&grid, iso).map_err(|e| fail(e.to_string()))?;
                per_level.push(if raw.triangles.is_empty() {
                    None
                } else {
                    Some(score_methods(&methods, &raw, &reference, key).map_err(|e| fail(e.to_string()))?)
                });
            }
            eprintln!("{id} done (IoU {iou:.3})");
            Ok((*category, per_level, iou))
        })
        .collect();
    let mut scored: Vec<(Category, Vec<Option<Vec<Score>>>)> = Vec::new();
    let mut ious: Vec<(Category, f32)> = Vec::new();
    for result in results {
        match result {
            Ok((category, per_level, iou)) => {
                scored.push((category, per_level));
                ious.push((category, iou));
            }
            Err(why) => eprintln!("skipped {why}"),
        }
    }
    if scored.is_empty() {
        return Err("no prediction could be scored".into());
    }
    let mean_iou = ious.iter().map(|(_, i)| f64::from(*i)).sum::<f64>() / ious.len() as f64;
    let what = if source == "npy" { "probabilities.npy" } else { "voxels.binvox" };
    let level_list = levels.iter().map(|l| l.to_string()).collect::<Vec<_>>().join(", ");
    println!(
        "{} of {} test-split models (catalog seed {seed}, {per_category} per category), trained pack's {what} meshed at {level_list}; voxel IoU at 0.3 {mean_iou:.3}",
        scored.len(),
        jobs.len(),
    );
    for (l, level) in levels.iter().enumerate() {
        let at_level: Vec<(Category, Vec<Score>)> =
            scored.iter().filter_map(|(c, per_level)| per_level[l].clone().map(|s| (*c, s))).collect();
        let missing = scored.len() - at_level.len();
        println!("\n### Level {level}: {} models{}\n", at_level.len(), if missing > 0 { format!(" ({missing} with no surface at this level)") } else { String::new() });
        if !at_level.is_empty() {
            print_tables(&methods, &at_level);
        }
    }
    // Side by side, over the models every level gives a surface for.
    let complete: Vec<(Category, Vec<Vec<Score>>)> = scored
        .iter()
        .filter(|(_, per_level)| per_level.iter().all(Option::is_some))
        .map(|(c, per_level)| (*c, per_level.iter().flatten().cloned().collect()))
        .collect();
    if levels.len() > 1 && !complete.is_empty() {
        print_sweep(&levels, &methods, &complete, best, &also);
    }
    println!("\nVoxel IoU at 0.3 per category:\n");
    for category in Category::ALL {
        let v: Vec<f64> = ious.iter().filter(|(c, _)| *c == category).map(|(_, i)| f64::from(*i)).collect();
        if !v.is_empty() {
            println!("- {}: {:.3} ({} models)", category.name(), v.iter().sum::<f64>() / v.len() as f64, v.len());
        }
    }
    Ok(())
}

/// Every (level, method) pair on the same models, then per category for the refine
/// stage's previous default (level 0.3, Laplacian x10), the `also` pairs and the `best`
/// pairs by mean F@1%.
fn print_sweep(
    levels: &[f32],
    methods: &[(String, Smoothing)],
    complete: &[(Category, Vec<Vec<Score>>)],
    best: usize,
    also: &[(f32, Smoothing)],
) {
    let n = complete.len() as f64;
    let pairs: Vec<(usize, usize)> = (0..levels.len()).flat_map(|l| (0..methods.len()).map(move |m| (l, m))).collect();
    let values = |(l, m): (usize, usize), f: &dyn Fn(&Score) -> f64| -> Vec<f64> { complete.iter().map(|(_, s)| f(&s[l][m])).collect() };
    let mean = |v: Vec<f64>| v.iter().sum::<f64>() / v.len() as f64;
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        let k = v.len() / 2;
        if v.len() % 2 == 1 { v[k] } else { 0.5 * (v[k - 1] + v[k]) }
    };
    println!("\n### Every level and method ({} models with a surface at every level)\n", complete.len());
    println!("| level | method | Chamfer-L1 (x1e-3 diag) | F@1% | F@2% | volume vs ground truth (mean) | (median) | (mean abs) |");
    println!("|---:|---|---:|---:|---:|---:|---:|---:|");
    for &(l, m) in &pairs {
        println!(
            "| {} | {} | {:.2} | {:.3} | {:.3} | {:+.1}% | {:+.1}% | {:.1}% |",
            levels[l],
            methods[m].0,
            1e3 * mean(values((l, m), &|s| s.chamfer)),
            mean(values((l, m), &|s| s.fscore)),
            mean(values((l, m), &|s| s.fscore2)),
            100.0 * mean(values((l, m), &|s| s.volume_change)),
            100.0 * median(values((l, m), &|s| s.volume_change)),
            100.0 * mean(values((l, m), &|s| s.volume_change.abs())),
        );
    }
    let mut ranked = pairs.clone();
    ranked.sort_by(|&a, &b| mean(values(b, &|s| s.fscore)).total_cmp(&mean(values(a, &|s| s.fscore))));
    let old = levels
        .iter()
        .position(|&l| (l - 0.3).abs() < 1e-6)
        .zip(methods.iter().position(|(name, _)| name == "Laplacian 0.5 x10"));
    let mut shown: Vec<(usize, usize)> = old.into_iter().collect();
    for &(iso, smoothing) in also {
        let pair = levels.iter().position(|&l| (l - iso).abs() < 1e-6).zip(methods.iter().position(|(_, m)| *m == smoothing));
        match pair {
            Some(pair) if !shown.contains(&pair) => shown.push(pair),
            Some(_) => {}
            None => eprintln!("--also {iso} {smoothing:?}: not in the sweep"),
        }
    }
    let top: Vec<(usize, usize)> = ranked.into_iter().filter(|p| !shown.contains(p)).take(best).collect();
    shown.extend(top);
    let header = shown.iter().map(|&(l, m)| format!("{} {}", levels[l], methods[m].0)).collect::<Vec<_>>().join(" | ");
    let n_ok = n as usize;
    for (title, f, percent) in [
        ("F@1%", (&|s: &Score| s.fscore) as &dyn Fn(&Score) -> f64, false),
        ("Chamfer-L1 (x1e-3 diag)", &|s: &Score| 1e3 * s.chamfer, false),
        ("Volume change", &|s: &Score| s.volume_change, true),
    ] {
        println!("\n{title} per category, the previous default, {} and the {best} best pairs by F@1% ({n_ok} models):\n", if also.is_empty() { "" } else { "the --also pairs" });
        println!("| category | {header} |");
        println!("|---|{}", "---:|".repeat(shown.len()));
        for category in Category::ALL {
            let rows: Vec<&Vec<Vec<Score>>> = complete.iter().filter(|(c, _)| *c == category).map(|(_, s)| s).collect();
            if rows.is_empty() {
                continue;
            }
            let cells: Vec<String> = shown
                .iter()
                .map(|&(l, m)| {
                    let v = rows.iter().map(|s| f(&s[l][m])).sum::<f64>() / rows.len() as f64;
                    if percent { format!("{:+.1}%", 100.0 * v) } else if title == "F@1%" { format!("{v:.3}") } else { format!("{v:.2}") }
                })
                .collect();
            println!("| {} | {} |", category.name(), cells.join(" | "));
        }
    }
}

/// One test model: the input photo (if given), the ground-truth mesh, then the prediction
/// meshed at each `(level, smoothing)`, left to right.
fn prediction_picture(
    path: &str,
    dir: &std::path::Path,
    id: &str,
    source: &str,
    seed: u64,
    photo: Option<&std::path::Path>,
    meshes: &[(f32, Smoothing)],
) -> Result<(), Box<dyn std::error::Error>> {
    let category: Category = id.split('-').nth(1).ok_or_else(|| format!("model id {id:?} has no category"))?.parse()?;
    let index: u64 = id.rsplit('-').next().and_then(|s| s.parse().ok()).ok_or_else(|| format!("model id {id:?} has no index"))?;
    let model = generate(category, seed, index);
    let truth = voxelize(&model.mesh.mesh, 32)?;
    let grid = load_prediction(dir, id, source, &truth)?;
    let tile = 200u32;
    let camera = Camera::look_at([1.25, 0.75, 0.9], [0.0; 3], 0.0, tile as f32 * 1.8, tile as usize, tile as usize);
    let grey = Material::matte([0.72, 0.74, 0.78]);
    let mut tiles: Vec<image::RgbImage> = Vec::new();
    if let Some(photo) = photo {
        let img = image::open(photo)?.to_rgb8();
        tiles.push(image::imageops::resize(&img, tile, tile, image::imageops::FilterType::CatmullRom));
    }
    let mut rendered = vec![model.mesh.clone()];
    for &(iso, smoothing) in meshes {
        let mut mesh = marching_cubes(&grid, iso)?;
        smooth(&mut mesh, smoothing)?;
        rendered.push(ColoredMesh::uniform(mesh, grey));
    }
    for mesh in &rendered {
        let img = render(&ShadedMesh::new(mesh), &camera, &Lighting::default(), 2);
        tiles.push(over_background(&img, [255, 255, 255]));
    }
    let mut sheet = image::RgbImage::from_pixel(tiles.len() as u32 * tile, tile, image::Rgb([255, 255, 255]));
    for (i, t) in tiles.iter().enumerate() {
        image::imageops::replace(&mut sheet, t, i as i64 * i64::from(tile), 0);
    }
    sheet.save(path)?;
    eprintln!("wrote {path}: {id}, {} tiles", tiles.len());
    Ok(())
}
