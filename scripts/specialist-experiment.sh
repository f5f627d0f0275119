#!/usr/bin/env bash
# The paper's experiment (its Table 2) on our synthetic catalog: train a base Pix2Vox from
# scratch on several categories, fine-tune it once on all of them (the general model) and
# once per category (the specialists), then evaluate every model on each category's test
# split. Writes $OUT/results.md and $OUT/results.json.
#
# Defaults are sized for a 2-core CPU (tens of minutes, a small catalog: the figures show
# the method works end to end, not the paper's numbers). On a GPU, e.g.:
#   DEVICE=cuda MODELS=200 VIEWS=24 BASE_EPOCHS=250 FT_EPOCHS=240 BATCH=32 bash scripts/specialist-experiment.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

CATEGORIES="${CATEGORIES:-chair,sofa,aeroplane}"
MODELS="${MODELS:-30}"
VIEWS="${VIEWS:-6}"
BASE_EPOCHS="${BASE_EPOCHS:-12}"
FT_EPOCHS="${FT_EPOCHS:-6}"
# A specialist sees one category, so it takes fewer steps per epoch than the general
# model; SPECIALIST_EPOCHS lets the comparison be at equal optimizer steps instead.
SPECIALIST_EPOCHS="${SPECIALIST_EPOCHS:-$FT_EPOCHS}"
BATCH="${BATCH:-16}"
DEVICE="${DEVICE:-auto}"
SEED="${SEED:-1}"
OUT="${OUT:-out/specialist-experiment}"
BIN="${MONO2MESH_BIN:-target/release/mono2mesh}"

if [ ! -x "$BIN" ]; then
  bash scripts/setup.sh --release
fi
mkdir -p "$OUT"
log() { echo "[$(date +%H:%M:%S)] $*" | tee -a "$OUT/log.txt"; }

if [ ! -f "$OUT/data/ShapeNet.json" ]; then
  log "catalog: $CATEGORIES, $MODELS models each, $VIEWS views"
  "$BIN" dataset synth --categories "$CATEGORIES" --models-per-category "$MODELS" --views "$VIEWS" --seed "$SEED" --out "$OUT/data"
fi

common=(--dataset "$OUT/data" --batch-size "$BATCH" --device "$DEVICE" --seed "$SEED")
run_or_resume() { # dir, then the command's arguments
  local dir="$1"; shift
  if [ -f "$dir/checkpoint.safetensors" ]; then "$@" -o "$dir" --resume; else "$@" -o "$dir"; fi
}

log "base: from scratch, $BASE_EPOCHS epochs"
run_or_resume "$OUT/runs/base" "$BIN" train --categories "$CATEGORIES" --epochs "$BASE_EPOCHS" "${common[@]}"
log "general: fine-tuned on all categories, $FT_EPOCHS epochs"
run_or_resume "$OUT/runs/general" "$BIN" finetune --from "$OUT/runs/base/best.safetensors" --general --epochs "$FT_EPOCHS" "${common[@]}"
IFS=, read -r -a cats <<< "$CATEGORIES"
for c in "${cats[@]}"; do
  log "specialist $c: fine-tuned on $c only, $SPECIALIST_EPOCHS epochs"
  run_or_resume "$OUT/runs/$c" "$BIN" finetune --from "$OUT/runs/base/best.safetensors" --category "$c" --epochs "$SPECIALIST_EPOCHS" "${common[@]}"
done

log "evaluating on each category's test split"
for c in "${cats[@]}"; do
  for m in base general "$c"; do
    "$BIN" eval --model "$OUT/runs/$m/best.safetensors" --dataset "$OUT/data" --category "$c" --split test \
      --device "$DEVICE" --json "$OUT/eval-$c-$m.json" > /dev/null
  done
done

python3 - "$OUT" "$CATEGORIES" <<'EOF'
import json, sys
out, cats = sys.argv[1], sys.argv[2].split(",")
rows, results = [], {}
for c in cats:
    r = {m: json.load(open(f"{out}/eval-{c}-{m}.json"))["report"] for m in ("base", "general", c)}
    best = lambda rep: rep["best_iou"]
    results[c] = {"samples": r[c]["samples"], "base": best(r["base"]), "general": best(r["general"]), "specialist": best(r[c])}
    rows.append(f"| {c} | {r[c]['samples']} | {best(r['base']):.4f} | {best(r['general']):.4f} | {best(r[c]):.4f} |")
json.dump(results, open(f"{out}/results.json", "w"), indent=2)
table = "| category | test models | base | general | specialist |\n|---|---|---|---|---|\n" + "\n".join(rows)
open(f"{out}/results.md", "w").write(table + "\n")
print(table)
EOF
log "done: $OUT/results.md"
