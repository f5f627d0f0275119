#!/usr/bin/env bash
# The main job on a fresh machine: set up, build, and run the whole pipeline
# (gate -> classify -> reconstruct -> refine, one process, no servers) with the shipped
# model pack (models/pix2vox/) on
#   1. fresh catalog-style photos of all 12 categories, made with a seed training never
#      used, whose true shapes are known: IoU per photo and a contact sheet
#      (photo | mesh preview | true shape);
#   2. the real product photos in ../shared/testdata when that folder is there (no ground
#      truth: the contact sheet shows photo | mesh).
# Prints where the results are.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

OUT="${1:-out/demo}"
SEED="${DEMO_SEED:-424242}"   # never used by scripts/train-pack.sh
# The dev profile compiles dependencies at -O2 (see Cargo.toml), so the demo runs the
# debug build instead of paying for a release build.
bash scripts/setup.sh
M="${CARGO_TARGET_DIR:-target}/debug/mono2mesh"

if ! compgen -G "models/pix2vox/general.safetensors" >/dev/null; then
  echo "No Pix2Vox model pack in models/pix2vox/: train one with scripts/train-pack.sh." >&2
  exit 1
fi
"$M" models list

rm -rf "$OUT"
mkdir -p "$OUT"
"$M" dataset photos --categories all --per-category 2 --seed "$SEED" --out "$OUT/photos"
# the same models (ids follow the seed) with their voxels: the ground truth
"$M" dataset synth --categories all --models-per-category 2 --views 1 --seed "$SEED" --out "$OUT/truth" >/dev/null
mapfile -t photos < <(find "$OUT/photos" -type f -name '*.jpg' | sort)
set +e
"$M" run "${photos[@]}" -o "$OUT/generated" --formats glb,obj
set -e
echo
"$M" sheet "$OUT/generated" --truth "$OUT/truth" -o "$OUT/generated-sheet.png" --json "$OUT/generated-iou.json"

REAL="../shared/testdata/photos/imagenet"
if [ -d "$REAL" ]; then
  # one real photo per category
  mapfile -t real < <(for d in "$REAL"/*/; do find "$d" -type f | sort | head -n 1; done)
  echo
  set +e
  "$M" run "${real[@]}" -o "$OUT/real" --formats glb,obj
  set -e
  "$M" sheet "$OUT/real" -o "$OUT/real-sheet.png"
else
  echo "SKIPPED: real photos ($REAL not present)"
fi

echo
echo "Results in $OUT:"
echo "  generated/<photo>/  gated.png, gate.json, classification.json, voxels.binvox, mesh.glb, preview.png, report.json"
echo "  generated-sheet.png photo | mesh | true shape, one row per photo; IoU per photo in generated-iou.json"
[ -d "$REAL" ] && echo "  real/, real-sheet.png  the same for real product photos (no ground truth)"
exit 0
