#!/usr/bin/env bash
# Surface metrics and the retrieval baseline for the shipped model pack (issue 16 item 7,
# docs/experiments/model-pack.md "Surfaces and retrieval"):
#
#   scripts/bench/pack_surfaces.sh
#
# 1. the pack's evaluation catalog (`dataset synth`, seed 7919, 50 models x 1 view per
#    category, exactly as scripts/train-pack.sh makes it; test split = 10 models each);
# 2. `mono2mesh eval --retrieval` of the general model on every category, and of each
#    specialist on its own: IoU, Chamfer-L1, F@1%, F@2%, normal consistency of the
#    network's surface (marching cubes at the refine level, 0.5) against the ground truth,
#    and the same for the nearest training shape (retrieved by the network's encoder
#    features from the catalog's train split, 35 models per category);
# 3. one markdown table of it all on stdout (and $WORK/table.md).
# Env: MONO2MESH_BIN (default target/debug/mono2mesh), MODELS (default models),
# SURFACE_WORK (default ~/.cache/mono2mesh/pack-surfaces), CATALOG (reuse one already made).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
BIN="${MONO2MESH_BIN:-target/debug/mono2mesh}"
MODELS="${MODELS:-models}"
WORK="${SURFACE_WORK:-${XDG_CACHE_HOME:-$HOME/.cache}/mono2mesh/pack-surfaces}"
NICE="nice -n 10"
mkdir -p "$WORK/eval"
CATALOG="${CATALOG:-$(bash scripts/bench/eval-catalog.sh "$BIN" "$WORK")}"
evaluate() { # name model [category]
  local out="$WORK/eval/$1.json" cat=()
  [ -n "${3:-}" ] && cat=(--category "$3")
  [ -f "$out" ] && return
  $NICE "$BIN" eval --model "$2" --dataset "$CATALOG" --split test "${cat[@]}" --retrieval --device cpu \
    --json "$out.partial" >/dev/null
  mv "$out.partial" "$out"
}
evaluate general "$MODELS/pix2vox/general.safetensors"
specialists=()
for model in "$MODELS"/pix2vox/*.safetensors; do
  name="$(basename "$model" .safetensors)"
  case "$name" in general|base) continue ;; esac
  specialists+=("$name")
  evaluate "$name" "$model" "$name"
done
python3 - "$WORK/eval" "${specialists[@]}" <<'PY' | tee "$WORK/table.md"
import json, os, sys
folder, specialists = sys.argv[1], sys.argv[2:]
# Specialists are named by Pascal3D category, reports by the catalog's ShapeNet taxonomy name.
taxonomy = {"boat": "watercraft", "diningtable": "table", "tvmonitor": "display"}
by_taxonomy = {taxonomy.get(s, s): s for s in specialists}
def load(name):
    return json.load(open(os.path.join(folder, name + ".json")))
def iou03(report, category=None):
    ts = report["thresholds"]
    k = min(range(len(ts)), key=lambda i: abs(ts[i] - 0.3))
    return (report["per_category"][category]["iou"] if category else report["overall"])[k]
def surf(report, category=None):
    s = report["surface"]
    return s["per_category"][category] if category else s["overall"]
general = load("general")
print("| category | model | IoU@0.3 | Chamfer-L1 (1e-3 diag) | F@1% | F@2% | NC | retrieval IoU | retrieval F@1% | retrieval Chamfer | net beats retrieval (F@1%) |")
print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
rows = []
for category in sorted(general["report"]["per_category"]):
    candidates = [("general", general)]
    if category in by_taxonomy:
        candidates.append(("specialist", load(by_taxonomy[category])))
    for label, run in candidates:
        net, ret = run["report"], run["retrieval"]
        n, r = surf(net, category), surf(ret, category)
        rows.append((n["fscore_1"], r["fscore_1"]))
        print(f"| {category} | {label} | {iou03(net, category):.3f} | {1e3 * n['chamfer_l1']:.1f} | {n['fscore_1']:.3f} | {n['fscore_2']:.3f} | "
              f"{n['normal_consistency']:.3f} | {iou03(ret, category):.3f} | {r['fscore_1']:.3f} | {1e3 * r['chamfer_l1']:.1f} | "
              f"{'yes' if n['fscore_1'] > r['fscore_1'] else 'no'} |")
net, ret = general["report"], general["retrieval"]
n, r = surf(net), surf(ret)
print(f"| **all ({net['samples']})** | general | {iou03(net):.3f} | {1e3 * n['chamfer_l1']:.1f} | {n['fscore_1']:.3f} | {n['fscore_2']:.3f} | "
      f"{n['normal_consistency']:.3f} | {iou03(ret):.3f} | {r['fscore_1']:.3f} | {1e3 * r['chamfer_l1']:.1f} | "
      f"{'yes' if n['fscore_1'] > r['fscore_1'] else 'no'} |")
empty = n["empty"]
print(f"\nGeneral model: {empty} of {n['samples']} test predictions had no surface at {general['report']['surface']['iso']}.")
PY
