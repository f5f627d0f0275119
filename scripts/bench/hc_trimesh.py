#!/usr/bin/env python3
"""trimesh's HC smoothing timed on meshes written by the Rust HC bench.

Run by shared/geometry/benches/hc.rs (`cargo bench -p mono2mesh-geometry --bench hc`),
which writes each mesh as NAME.positions.f32 (little-endian float32 x, y, z per vertex)
and NAME.triangles.u32 (uint32 a, b, c per triangle) into one directory and calls
  python3 scripts/bench/hc_trimesh.py DIR NAME... [--repeats N]
Needs: pip install trimesh numpy scipy. Prints one JSON object per mesh:
  name, vertices, seconds (process CPU time and wall time, best of N) for
  filter_humphrey(mesh, alpha=0.1, beta=0.5, iterations=10) as called (building its
  Laplacian operator) and with a prebuilt operator (the iterations alone).
numpy / scipy are limited to one thread so the comparison with the single-threaded Rust
code is like for like.
"""
import os

for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(var, "1")

import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import trimesh  # noqa: E402
from trimesh.smoothing import filter_humphrey, laplacian_calculation  # noqa: E402


def best(run, repeats):
    cpu, wall = [], []
    for _ in range(repeats):
        c0, w0 = time.process_time(), time.perf_counter()
        run()
        cpu.append(time.process_time() - c0)
        wall.append(time.perf_counter() - w0)
    return min(cpu), min(wall)


def main():
    args = sys.argv[1:]
    repeats = 3
    if "--repeats" in args:
        i = args.index("--repeats")
        repeats = int(args[i + 1])
        del args[i : i + 2]
    directory, names = Path(args[0]), args[1:]
    for name in names:
        positions = np.fromfile(directory / f"{name}.positions.f32", dtype="<f4").reshape(-1, 3).astype(np.float64)
        triangles = np.fromfile(directory / f"{name}.triangles.u32", dtype="<u4").reshape(-1, 3).astype(np.int64)

        def fresh():
            return trimesh.Trimesh(vertices=positions, faces=triangles, process=False)

        meshes = [fresh() for _ in range(repeats)]
        call = iter(meshes)
        cpu, wall = best(lambda: filter_humphrey(next(call), alpha=0.1, beta=0.5, iterations=10), repeats)
        mesh = fresh()
        operator = laplacian_calculation(mesh)
        meshes = [fresh() for _ in range(repeats)]
        call = iter(meshes)
        cpu_pre, wall_pre = best(
            lambda: filter_humphrey(next(call), alpha=0.1, beta=0.5, iterations=10, laplacian_operator=operator), repeats
        )
        print(json.dumps({
            "name": name,
            "vertices": len(positions),
            "trimesh": trimesh.__version__,
            "cpu_s": cpu,
            "wall_s": wall,
            "prebuilt_cpu_s": cpu_pre,
            "prebuilt_wall_s": wall_pre,
        }), flush=True)


if __name__ == "__main__":
    main()
