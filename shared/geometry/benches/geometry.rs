//! Marching cubes and smoothing speed on sphere-like occupancy grids, the sizes the issue's
//! scikit-image / trimesh reference figures were taken at (32^3 .. 256^3, level 0.5,
//! Laplacian 10 iterations).
//!
//! Single-threaded code is measured twice: wall time, and the benchmark thread's CPU time
//! (`*_cpu` groups), which stays meaningful when the 2-core machine is shared with other
//! builds. The rayon variant is only meaningful as wall time.

use std::time::Duration;

use criterion::measurement::{Measurement, ValueFormatter, WallTime};
use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion};
use mono2mesh_geometry::marching_cubes::{marching_cubes, marching_cubes_parallel};
use mono2mesh_geometry::smooth::{smooth, Smoothing};
use mono2mesh_geometry::{Mesh, VoxelGrid};

const SIZES: [usize; 4] = [32, 64, 128, 256];

/// CPU time consumed by the calling thread (CLOCK_THREAD_CPUTIME_ID).
struct ThreadCpuTime;

fn thread_cpu_now() -> Duration {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime only writes the timespec we pass; the clock id is a constant.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID) failed");
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

static WALL: WallTime = WallTime;

impl Measurement for ThreadCpuTime {
    type Intermediate = Duration;
    type Value = Duration;
    fn start(&self) -> Duration {
        thread_cpu_now()
    }
    fn end(&self, started: Duration) -> Duration {
        thread_cpu_now().saturating_sub(started)
    }
    fn add(&self, a: &Duration, b: &Duration) -> Duration {
        *a + *b
    }
    fn zero(&self) -> Duration {
        Duration::ZERO
    }
    fn to_f64(&self, value: &Duration) -> f64 {
        value.as_nanos() as f64
    }
    fn formatter(&self) -> &dyn ValueFormatter {
        // Same unit (nanoseconds) as wall time, so reuse its formatter.
        WALL.formatter()
    }
}

/// Occupancy ramping from 1 inside to 0 outside over one voxel around a sphere of radius
/// 0.4 * size: a probability grid like a network's output.
fn sphere_occupancy(size: usize) -> VoxelGrid {
    let mut grid = VoxelGrid::new([size; 3]);
    let centre = size as f32 / 2.0;
    let radius = 0.4 * size as f32;
    for x in 0..size {
        for y in 0..size {
            for z in 0..size {
                let d = [x, y, z].map(|i| i as f32 + 0.5 - centre);
                let distance = (d[0] * d[0] + d[1] * d[1] + d[2] * d[2]).sqrt();
                grid.set(x, y, z, (radius - distance + 0.5).clamp(0.0, 1.0));
            }
        }
    }
    grid
}

fn sphere_mesh(size: usize) -> Mesh {
    let mut mesh = marching_cubes(&sphere_occupancy(size), 0.5).expect("sphere grid is valid");
    // trimesh's filter_laplacian neither needs nor updates normals; compare like for like.
    mesh.normals.clear();
    mesh
}

fn quick<M: Measurement>(group: &mut criterion::BenchmarkGroup<'_, M>) {
    group.sample_size(10).warm_up_time(Duration::from_millis(200)).measurement_time(Duration::from_secs(1));
}

fn marching_cubes_single<M: Measurement>(c: &mut Criterion<M>, name: &str) {
    let mut group = c.benchmark_group(name);
    quick(&mut group);
    for size in SIZES {
        let grid = sphere_occupancy(size);
        group.bench_with_input(BenchmarkId::new("single_thread", size), &grid, |b, g| b.iter(|| marching_cubes(g, 0.5)));
    }
    group.finish();
}

fn smoothing<M: Measurement>(c: &mut Criterion<M>, name: &str) {
    let mut group = c.benchmark_group(name);
    quick(&mut group);
    for size in SIZES {
        let mesh = sphere_mesh(size);
        for (method, smoothing) in [
            ("laplacian", Smoothing::Laplacian { lambda: 0.5, iterations: 10 }),
            ("taubin", Smoothing::Taubin { lambda: 0.5, mu: -0.53, iterations: 5 }),
        ] {
            group.bench_with_input(BenchmarkId::new(method, size), &mesh, |b, m| {
                b.iter_batched_ref(|| m.clone(), |m| smooth(m, smoothing), BatchSize::LargeInput)
            });
        }
    }
    group.finish();
}

fn wall(c: &mut Criterion) {
    for size in SIZES {
        let mesh = sphere_mesh(size);
        eprintln!("{size}^3 sphere mesh: {} vertices, {} triangles", mesh.vertex_count(), mesh.triangle_count());
    }
    marching_cubes_single(c, "marching_cubes");
    let mut group = c.benchmark_group("marching_cubes");
    quick(&mut group);
    for size in SIZES {
        let grid = sphere_occupancy(size);
        group.bench_with_input(BenchmarkId::new("rayon", size), &grid, |b, g| b.iter(|| marching_cubes_parallel(g, 0.5)));
    }
    group.finish();
    smoothing(c, "smoothing_10_iterations");
}

fn cpu(c: &mut Criterion<ThreadCpuTime>) {
    marching_cubes_single(c, "marching_cubes_cpu");
    smoothing(c, "smoothing_10_iterations_cpu");
}

criterion_group!(wall_time, wall);
criterion_group! {
    name = cpu_time;
    config = Criterion::default().with_measurement(ThreadCpuTime);
    targets = cpu
}
criterion_main!(wall_time, cpu_time);
