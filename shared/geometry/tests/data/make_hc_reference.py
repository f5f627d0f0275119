#!/usr/bin/env python3
"""Write hc_expected.json: trimesh's filter_humphrey on hc_input.json, for hc_parity.rs.

hc_input.json is our own marching-cubes mesh of a noisy voxel blob; regenerate it with
  cargo test -p mono2mesh-geometry --test hc_parity -- --ignored write_reference_input
then run this script once (needs: pip install trimesh numpy scipy):
  python3 shared/geometry/tests/data/make_hc_reference.py
"""

import json
import pathlib

import numpy as np
import trimesh
from trimesh.smoothing import filter_humphrey

HERE = pathlib.Path(__file__).resolve().parent

# (alpha, beta, iterations): trimesh's defaults, then settings that stress each term
# (alpha 0 with beta 1, or beta 1 alone, leave vertices where they are: avoid those).
CASES = [(0.1, 0.5, 10), (0.0, 0.0, 3), (0.5, 0.2, 7), (0.2, 0.8, 40)]


def main():
    data = json.loads((HERE / "hc_input.json").read_text())
    # The input holds float32 values written in shortest form: round-trip through float32
    # so trimesh starts from exactly the positions the Rust test smooths.
    positions = np.asarray(data["positions"], dtype=np.float32).astype(np.float64)
    triangles = np.asarray(data["triangles"], dtype=np.int64)
    cases = []
    for alpha, beta, iterations in CASES:
        # process=False: keep vertex order and count exactly as given (no merging).
        mesh = trimesh.Trimesh(vertices=positions.copy(), faces=triangles, process=False)
        filter_humphrey(mesh, alpha=alpha, beta=beta, iterations=iterations)
        smoothed = np.asarray(mesh.vertices)
        cases.append({
            "alpha": alpha,
            "beta": beta,
            "iterations": iterations,
            # 10 significant digits: far below the 1e-5 tolerance, keeps the file small.
            "positions": [[float(f"{c:.10g}") for c in p] for p in smoothed],
        })
    out = {"trimesh_version": trimesh.__version__, "cases": cases}
    (HERE / "hc_expected.json").write_text(json.dumps(out, separators=(",", ":")) + "\n")
    print(f"{len(positions)} vertices, {len(triangles)} triangles, {len(cases)} cases")


if __name__ == "__main__":
    main()
