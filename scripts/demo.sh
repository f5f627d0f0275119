#!/usr/bin/env bash
# The main job on a fresh machine: set up, build, make sample inputs with our synthetic
# catalog (photo-like renders of the paper's five categories), and run the pipeline on
# them with `mono2mesh run` (gate -> classify -> reconstruct -> refine, one process,
# no servers). Prints where the results are.
#
# The Pix2Vox model pack (models/pix2vox/*.safetensors) is trained on a GPU; when it is
# not installed, reconstruct has nothing to run, so the demo runs every stage that can:
# gate and classify on the photos, and refine (marching cubes + Laplacian smoothing) on
# the catalog's ground-truth voxels, and says so.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

OUT="${1:-out/demo}"
# The dev profile compiles dependencies at -O2 (see Cargo.toml), so the demo runs the
# debug build instead of paying for a release build.
bash scripts/setup.sh
M="${CARGO_TARGET_DIR:-target}/debug/mono2mesh"

rm -rf "$OUT"
mkdir -p "$OUT"
"$M" dataset photos --categories paper5 --per-category 2 --seed 7 --out "$OUT/photos"
"$M" dataset synth --categories paper5 --models-per-category 1 --views 2 --seed 7 --out "$OUT/catalog"
mapfile -t photos < <(find "$OUT/photos" -type f \( -name '*.jpg' -o -name '*.png' \) | sort)

if compgen -G "models/pix2vox/*.safetensors" >/dev/null; then
  "$M" run "${photos[@]}" -o "$OUT/run" --formats glb,obj
  echo
  echo "Results: $OUT/run/<photo>/ (gated.png, gate.json, classification.json, voxels.binvox, mesh.glb, preview.png, report.json) and $OUT/run/summary.json"
else
  echo
  echo "No Pix2Vox model pack in models/pix2vox/ (it is trained on a GPU; see README)."
  echo "Running gate + classify on the photos and refine on the catalog's ground-truth voxels."
  "$M" gate --json "${photos[@]}" > "$OUT/gate.jsonl"
  "$M" classify --json "${photos[@]}" > "$OUT/classify.jsonl"
  mkdir -p "$OUT/meshes"
  find "$OUT/catalog/ShapeNetVox32" -name model.binvox | sort | while read -r voxels; do
    model="$(basename "$(dirname "$voxels")")"
    "$M" mesh "$voxels" -o "$OUT/meshes/$model.glb" > /dev/null
  done
  echo
  echo "Results in $OUT: gate.jsonl and classify.jsonl (one line per photo in $OUT/photos),"
  echo "meshes/*.glb (refined meshes of the catalog's voxels), catalog/ (renders + voxels)."
fi
