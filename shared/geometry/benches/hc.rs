//! HC smoothing (alpha 0.1, beta 0.5, 10 iterations), single-threaded, on marching-cubes
//! meshes of 128^3 and 256^3 grids, against trimesh's `filter_humphrey` in the same run.
//!
//! Criterion measures our `smooth` (adjacency build included, as the refine stage calls it)
//! in wall time. Then a comparison table: best-of-N thread CPU time of ours, with and
//! without building the adjacency, against best-of-N process CPU time of trimesh (numpy and
//! scipy limited to one thread) from scripts/bench/hc_trimesh.py on the very same meshes.
//! CPU time, and the ratio, stay meaningful on a shared 2-core machine where wall time does
//! not. The comparison is skipped (with a note) when python3 or trimesh is missing.
//!
//! cargo bench -p mono2mesh-geometry --bench hc

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion};
use mono2mesh_geometry::marching_cubes::marching_cubes;
use mono2mesh_geometry::smooth::{hc_with, smooth, HcOperator, DEFAULT_HC};
use mono2mesh_geometry::{Mesh, VoxelGrid};

const SIZES: [usize; 2] = [128, 256];
const REPEATS: usize = 5;

/// Occupancy ramping from 1 inside to 0 outside over one voxel around a sphere of radius
/// 0.4 * size (a network-like probability grid; the same sphere the geometry bench uses).
fn sphere(size: usize) -> VoxelGrid {
    grid(size, |d, _| (0.4 * size as f32 - d + 0.5).clamp(0.0, 1.0))
}

/// Binary torus (major radius 0.3 * size, minor 0.12 * size) with about one in five voxels
/// within a voxel of the surface flipped: noisy binary output, many small bumps.
fn noisy_torus(size: usize) -> VoxelGrid {
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let (major, minor) = (0.3 * size as f32, 0.12 * size as f32);
    grid(size, |_, p| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let ring = (p[0] * p[0] + p[1] * p[1]).sqrt() - major;
        let distance = (ring * ring + p[2] * p[2]).sqrt() - minor;
        let inside = distance <= 0.0;
        let flip = distance.abs() < 1.0 && state.is_multiple_of(5);
        if inside != flip {
            1.0
        } else {
            0.0
        }
    })
}

fn grid(size: usize, mut value: impl FnMut(f32, [f32; 3]) -> f32) -> VoxelGrid {
    let mut grid = VoxelGrid::new([size; 3]);
    let centre = size as f32 / 2.0;
    for x in 0..size {
        for y in 0..size {
            for z in 0..size {
                let p = [x, y, z].map(|i| i as f32 + 0.5 - centre);
                let d = (p[0] * p[0] + p[1] * p[1] + p[2] * p[2]).sqrt();
                grid.set(x, y, z, value(d, p));
            }
        }
    }
    grid
}

fn meshes() -> Vec<(String, Mesh)> {
    let mut out = Vec::new();
    for size in SIZES {
        for (shape, grid) in [("sphere", sphere(size)), ("noisy_torus", noisy_torus(size))] {
            let mut mesh = marching_cubes(&grid, 0.5).expect("valid grid");
            // trimesh's filter neither needs nor updates normals: compare like for like.
            mesh.normals.clear();
            out.push((format!("{shape}_{size}"), mesh));
        }
    }
    out
}

fn thread_cpu_now() -> Duration {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime only writes the timespec we pass; the clock id is a constant.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID) failed");
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Best-of-REPEATS thread CPU time of `run` on a fresh copy of `mesh` (the copy is made
/// outside the timing, as the Python side builds its meshes before timing them).
fn best_cpu(mesh: &Mesh, mut run: impl FnMut(&mut Mesh)) -> f64 {
    (0..REPEATS)
        .map(|_| {
            let mut m = mesh.clone();
            let start = thread_cpu_now();
            run(&mut m);
            (thread_cpu_now() - start).as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min)
}

fn write_mesh(dir: &Path, name: &str, mesh: &Mesh) {
    let positions: Vec<u8> = mesh.positions.iter().flatten().flat_map(|c| c.to_le_bytes()).collect();
    let triangles: Vec<u8> = mesh.triangles.iter().flatten().flat_map(|i| i.to_le_bytes()).collect();
    std::fs::write(dir.join(format!("{name}.positions.f32")), positions).unwrap();
    std::fs::write(dir.join(format!("{name}.triangles.u32")), triangles).unwrap();
}

/// trimesh timings per mesh name: (cpu, prebuilt-operator cpu) seconds, or why not.
fn trimesh_times(meshes: &[(String, Mesh)]) -> Result<Vec<(f64, f64, String)>, String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    for (name, mesh) in meshes {
        write_mesh(dir.path(), name, mesh);
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/bench/hc_trimesh.py");
    let output = Command::new("python3")
        .arg(&script)
        .arg(dir.path())
        .args(meshes.iter().map(|(name, _)| name.as_str()))
        .output()
        .map_err(|e| format!("python3: {e}"))?;
    if !output.status.success() {
        return Err(String::from_utf8_lossy(&output.stderr).lines().last().unwrap_or("python failed").to_string());
    }
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| {
            let v: serde_json::Value = serde_json::from_str(line).map_err(|e| e.to_string())?;
            Ok((v["cpu_s"].as_f64().unwrap_or(f64::NAN), v["prebuilt_cpu_s"].as_f64().unwrap_or(f64::NAN), v["trimesh"].to_string()))
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let meshes = meshes();
    let mut group = c.benchmark_group("hc_10_iterations");
    group.sample_size(10).warm_up_time(Duration::from_millis(200)).measurement_time(Duration::from_secs(2));
    for (name, mesh) in &meshes {
        group.bench_with_input(BenchmarkId::new("smooth", name), mesh, |b, m| {
            b.iter_batched_ref(|| m.clone(), |m| smooth(m, DEFAULT_HC).unwrap(), BatchSize::LargeInput)
        });
    }
    group.finish();

    // The machine this runs on is shared and its speed drifts by tens of percent within a
    // minute, so each ratio pairs our time with trimesh's taken right after it on the same
    // mesh, over several rounds, and the summary is the median ratio (with its range).
    let rounds: usize = std::env::var("HC_BENCH_ROUNDS").ok().and_then(|s| s.parse().ok()).unwrap_or(3);
    let mut ratios: Vec<Vec<(f64, f64)>> = vec![Vec::new(); meshes.len()];
    let mut version = String::new();
    for round in 0..rounds {
        for (i, (name, mesh)) in meshes.iter().enumerate() {
            let full = best_cpu(mesh, |m| smooth(m, DEFAULT_HC).unwrap());
            let operator = HcOperator::from_mesh(mesh).unwrap();
            let iterations_only = best_cpu(mesh, |m| hc_with(m, &operator, 0.1, 0.5, 10));
            let theirs = match trimesh_times(std::slice::from_ref(&meshes[i])) {
                Ok(theirs) => theirs,
                Err(why) => {
                    eprintln!("trimesh comparison skipped: {why}");
                    return;
                }
            };
            let (tm_full, tm_iter, v) = &theirs[0];
            version.clone_from(v);
            if round == 0 && i == 0 {
                eprintln!("HC alpha 0.1 beta 0.5, 10 iterations; best-of-N CPU seconds, one thread each (trimesh {v})");
                eprintln!(
                    "{:<6} {:<18} {:>9} {:>10} {:>10} {:>7} | {:>10} {:>10} {:>7}",
                    "round", "mesh", "vertices", "ours", "trimesh", "ratio", "ours iter", "tm iter", "ratio"
                );
            }
            eprintln!(
                "{:<6} {:<18} {:>9} {:>10.4} {:>10.4} {:>6.1}x | {:>10.4} {:>10.4} {:>6.1}x",
                round + 1,
                name,
                mesh.vertex_count(),
                full,
                tm_full,
                tm_full / full,
                iterations_only,
                tm_iter,
                tm_iter / iterations_only
            );
            ratios[i].push((tm_full / full, tm_iter / iterations_only));
        }
    }
    let summary = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        format!("{:.1}x ({:.1}-{:.1})", v[v.len() / 2], v[0], v[v.len() - 1])
    };
    eprintln!("median ratio over {rounds} rounds (range), trimesh {version}: full call | iterations only");
    for ((name, _), r) in meshes.iter().zip(&ratios) {
        eprintln!("{:<18} {:>20} | {:>20}", name, summary(r.iter().map(|x| x.0).collect()), summary(r.iter().map(|x| x.1).collect()));
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
