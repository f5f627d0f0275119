#!/usr/bin/env bash
# The model pack's evaluation catalog, made once and reused by the bench scripts:
# `dataset synth`, seed 7919, 50 models x 1 view per category, as scripts/train-pack.sh
# makes it (its test split is 10 models per category). Prints the catalog's path.
#
#   CATALOG="$(bash scripts/bench/eval-catalog.sh BIN WORK_DIR)"
set -euo pipefail
BIN="$1"
WORK="$2"
SEED=7919
PER=50
CATALOG="$WORK/catalog-s$SEED-m$PER"
mkdir -p "$WORK"
if [ ! -f "$CATALOG/catalog.json" ]; then
  rm -rf "$CATALOG.partial"
  nice -n 10 "$BIN" dataset synth --categories all --models-per-category "$PER" --views 1 --seed "$SEED" \
    --out "$CATALOG.partial" >&2
  mv "$CATALOG.partial" "$CATALOG"
fi
echo "$CATALOG"
