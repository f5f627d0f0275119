#!/usr/bin/env bash
# The short form of scripts/bench/framed-pack.sh, for one session on 2 cores: does the
# shipped general model recover on framed photos once it has seen framed renders?
#
#   bash scripts/bench/framed-finetune.sh
#
# 1. the pack's catalogs and their framed copies, as framed-pack.sh makes them;
# 2. a taxonomy with the first FT_MODELS training and FT_VAL validation models of each
#    category (all 6 views), over the framed training catalog's renderings, so its trunk
#    features (the slow part: one trunk pass per rendering) are cached once;
# 3. the shipped general model fine-tuned on it with the general step's recipe (lr 5e-4,
#    batch 32), FT_EPOCHS epochs;
# 4. the shipped and the fine-tuned model on the framed and the unframed evaluation
#    catalogs' test splits (IoU at 0.2/0.3/0.4/0.5).
# Env: MONO2MESH_BIN, PACK_DIR, FRAMED_DIR (as framed-pack.sh), FT_MODELS (14), FT_VAL (4),
# FT_EPOCHS (24), PACK_NICE (default "nice -n 10").
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
BIN="${MONO2MESH_BIN:-target/debug/mono2mesh}"
PACK_DIR="${PACK_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/mono2mesh/pack}"
FRAMED_DIR="${FRAMED_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/mono2mesh/pack-framed}"
NICE="${PACK_NICE:-nice -n 10}"
MODELS="${FT_MODELS:-14}"
VAL="${FT_VAL:-4}"
EPOCHS="${FT_EPOCHS:-24}"
log() { echo "[framed-finetune $(date -u +%H:%M:%S)] $*"; }

PACK_DIR="$PACK_DIR" FRAMED_DIR="$FRAMED_DIR" MONO2MESH_BIN="$BIN" PACK_NICE="$NICE" \
  FRAMED_ONLY_DATA=1 bash scripts/bench/framed-pack.sh
TRAIN="$FRAMED_DIR/catalog-s2026-m80-v6"
TAXONOMY="$FRAMED_DIR/finetune-m$MODELS-v$VAL.json"
python3 - "$TRAIN/ShapeNet.json" "$TAXONOMY" "$MODELS" "$VAL" <<'PY'
import json, sys
entries = json.load(open(sys.argv[1]))
models, val = int(sys.argv[3]), int(sys.argv[4])
for e in entries:
    e["train"], e["val"], e["test"] = e["train"][:models], e["val"][:val], []
json.dump(entries, open(sys.argv[2], "w"), indent=1)
PY
RUN="$FRAMED_DIR/runs/general-finetune-m$MODELS-e$EPOCHS"
if [ -f "$RUN/metrics.jsonl" ] && [ "$(wc -l <"$RUN/metrics.jsonl")" -ge "$EPOCHS" ]; then
  log "fine-tune: done"
else
  log "fine-tune: the shipped general model on $MODELS framed models per category"
  resume=()
  [ -f "$RUN/checkpoint.safetensors" ] && resume=(--resume)
  $NICE "$BIN" finetune --general --from models/pix2vox/general.safetensors \
    --renderings "$TRAIN/ShapeNetRendering" --voxels "$TRAIN/ShapeNetVox32" --taxonomy "$TAXONOMY" \
    --trunk cached --precision auto --feature-cache "$FRAMED_DIR/trunk-features" --seed 2026 --device cpu \
    --batch-size 32 --lr 5e-4 --milestones "$((EPOCHS / 2))" --epochs "$EPOCHS" -o "$RUN" "${resume[@]}"
fi
mkdir -p "$FRAMED_DIR/eval"
evaluate() { # out model dataset
  [ -f "$1" ] && [ "$1" -nt "$2" ] && return
  $NICE "$BIN" eval --model "$2" --dataset "$3" --split test --device cpu --json "$1.partial" >/dev/null
  mv "$1.partial" "$1"
}
log "evaluations"
evaluate "$FRAMED_DIR/eval/shipped-on-unframed.eval.json" models/pix2vox/general.safetensors "$PACK_DIR/eval-catalog-s7919-m50"
evaluate "$FRAMED_DIR/eval/shipped-on-framed.eval.json" models/pix2vox/general.safetensors "$FRAMED_DIR/eval-catalog-s7919-m50"
evaluate "$FRAMED_DIR/eval/finetuned-on-framed.eval.json" "$RUN/best.safetensors" "$FRAMED_DIR/eval-catalog-s7919-m50"
evaluate "$FRAMED_DIR/eval/finetuned-on-unframed.eval.json" "$RUN/best.safetensors" "$PACK_DIR/eval-catalog-s7919-m50"
for f in shipped-on-unframed shipped-on-framed finetuned-on-framed finetuned-on-unframed; do
  python3 -c 'import json,sys; r=json.load(open(sys.argv[1]))["report"]; print(f"{sys.argv[2]:<24}", " ".join(f"{v:.4f}" for v in r["overall"]), " per category at 0.3:", {k: round(v["iou"][1], 3) for k, v in sorted(r["per_category"].items())})' \
    "$FRAMED_DIR/eval/$f.eval.json" "$f"
done
