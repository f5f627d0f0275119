#!/usr/bin/env bash
# The model pack retrained on framed renders (issue 16, item 1; docs/experiments/framing.md):
# does a pack that learnt framed renders do as well on framed photos as today's pack does on
# unframed ones? If so, `gate.framing = "auto"` can become the default.
#
#   bash scripts/bench/framed-pack.sh          # resumable; hours on 2 cores
#
# 1. the pack's own catalogs (scripts/train-pack.sh's data step: seed 2026 training
#    catalog, seed 7919 evaluation catalog) under ~/.cache/mono2mesh/pack;
# 2. framed copies of both with `mono2mesh dataset frame` (the gate's framing function,
#    default fill) under FRAMED_DIR (default ~/.cache/mono2mesh/pack-framed);
# 3. scripts/train-pack.sh's recipe unchanged on the framed copies (PACK_DIR=FRAMED_DIR):
#    base, general, specialists, evaluation on the framed evaluation catalog;
# 4. the framed general model also on the unframed evaluation catalog (photos the gate
#    would leave unframed), and today's general model on the framed one, for the table.
# Env: MONO2MESH_BIN, FRAMED_DIR, PACK_NICE (default "nice -n 10"), FRAMED_STEPS (default
# base,general,special,eval; the rest of train-pack.sh's steps write into models/),
# FRAMED_ONLY_DATA=1 to stop after step 2 (scripts/bench/framed-finetune.sh).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
BIN="${MONO2MESH_BIN:-target/debug/mono2mesh}"
PACK_DIR="${PACK_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/mono2mesh/pack}"
FRAMED_DIR="${FRAMED_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/mono2mesh/pack-framed}"
NICE="${PACK_NICE:-nice -n 10}"
log() { echo "[framed-pack $(date -u +%H:%M:%S)] $*"; }

# The catalogs as train-pack.sh names them (its defaults).
TRAIN_NAME="catalog-s2026-m80-v6"
EVAL_NAME="eval-catalog-s7919-m50"
PACK_DIR="$PACK_DIR" MONO2MESH_BIN="$BIN" PACK_STEPS=data PACK_NICE="$NICE" bash scripts/train-pack.sh
mkdir -p "$FRAMED_DIR"
for name in "$TRAIN_NAME" "$EVAL_NAME"; do
  if [ -e "$FRAMED_DIR/$name/catalog.json" ]; then
    log "$name: framed copy present"
  else
    log "$name: framing every rendering"
    rm -rf "$FRAMED_DIR/$name.partial"
    $NICE "$BIN" dataset frame "$PACK_DIR/$name" --out "$FRAMED_DIR/$name.partial"
    mv "$FRAMED_DIR/$name.partial" "$FRAMED_DIR/$name"
  fi
done

[ "${FRAMED_ONLY_DATA:-0}" = 1 ] && exit 0
# The framed copies link the catalog's voxels and taxonomy, so the data step finds them.
PACK_DIR="$FRAMED_DIR" MONO2MESH_BIN="$BIN" PACK_NICE="$NICE" PACK_STEPS="${FRAMED_STEPS:-base,general,special,eval}" \
  bash scripts/train-pack.sh

cross() { # out model dataset
  [ -f "$1" ] && return
  $NICE "$BIN" eval --model "$2" --dataset "$3" --split test --device cpu --json "$1.partial" >/dev/null
  mv "$1.partial" "$1"
}
log "cross evaluations"
cross "$FRAMED_DIR/eval/framed-general-on-unframed.eval.json" "$FRAMED_DIR/runs/general/best.safetensors" "$PACK_DIR/$EVAL_NAME"
cross "$FRAMED_DIR/eval/shipped-general-on-framed.eval.json" models/pix2vox/general.safetensors "$FRAMED_DIR/$EVAL_NAME"
cross "$FRAMED_DIR/eval/shipped-general-on-unframed.eval.json" models/pix2vox/general.safetensors "$PACK_DIR/$EVAL_NAME"
for f in "$FRAMED_DIR"/eval/*.eval.json; do
  # IoU at thresholds 0.2, 0.3 (the pack's), 0.4, 0.5
  python3 -c 'import json,sys; r=json.load(open(sys.argv[1]))["report"]; print(sys.argv[1].rsplit("/",1)[-1], " ".join(f"{v:.4f}" for v in r["overall"]))' "$f"
done
