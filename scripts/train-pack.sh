#!/usr/bin/env bash
# Train the Pix2Vox-F model pack on this machine's CPU, resumably, and write it into
# models/pix2vox/ with its evaluation and docs/experiments/model-pack.md.
#
#   bash scripts/train-pack.sh            # everything (hours on 2 cores; resumes where it stopped)
#   PACK_STEPS=data,base bash scripts/train-pack.sh   # only some steps
#
# State lives outside the work tree (PACK_DIR, default ~/.cache/mono2mesh/pack): the
# training catalog, the trunk feature cache, every run's checkpoints and the test reports,
# so a later session (or a killed run) continues where the last one stopped. Each step is
# skipped when its result is there; a run with a checkpoint is resumed.
#
# The recipe (seeded; sizes from docs/benchmarks/training-cpu.md):
#   data       synthetic catalog, catalog-photo style, PACK_MODELS models x PACK_VIEWS views
#              per category, seed PACK_SEED (70/10/20 train/val/test)
#   base       Pix2Vox-F from scratch on all 12 categories ("original" in the paper's Table 2):
#              frozen random trunk in eval mode with cached features, bf16 autocast
#   general    the base fine-tuned on all categories (the paper's "general" retraining)
#   special    one specialist per category in PACK_SPECIALISTS, fine-tuned from the general model
#   eval       every model on the test split of a catalog made with a seed training never
#              saw (PACK_EVAL_SEED), thresholds 0.2-0.5
#   pack       general (float16) + specialists (only their differing tensors) into models/
#   doc        docs/experiments/model-pack.md
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT="$PWD"

PACK_DIR="${PACK_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/mono2mesh/pack}"
PACK_SEED="${PACK_SEED:-2026}"
PACK_EVAL_SEED="${PACK_EVAL_SEED:-7919}"
PACK_MODELS="${PACK_MODELS:-80}"
PACK_VIEWS="${PACK_VIEWS:-6}"
PACK_EVAL_MODELS="${PACK_EVAL_MODELS:-50}"
BASE_EPOCHS="${BASE_EPOCHS:-40}"
GENERAL_EPOCHS="${GENERAL_EPOCHS:-6}"
SPECIAL_EPOCHS="${SPECIAL_EPOCHS:-30}"
BATCH="${PACK_BATCH:-32}"
# Specialists see one category's ~56 training models: at batch 32 an epoch would be one
# step (the partial batch is dropped), so they take smaller batches.
SPECIAL_BATCH="${PACK_SPECIAL_BATCH:-8}"
PACK_SPECIALISTS="${PACK_SPECIALISTS:-chair,sofa,aeroplane,bicycle,motorbike,diningtable,tvmonitor}"
PACK_STEPS="${PACK_STEPS:-data,base,general,special,eval,pack,doc}"
REGISTRY="${PACK_REGISTRY:-$ROOT/models}"
BIN="${MONO2MESH_BIN:-${CARGO_TARGET_DIR:-target}/debug/mono2mesh}"
NICE="${PACK_NICE:-nice -n 10}"

want() { [[ ",$PACK_STEPS," == *",$1,"* ]]; }
log() { echo "[train-pack $(date -u +%H:%M:%S)] $*"; }

[ -x "$BIN" ] || bash scripts/setup.sh
mkdir -p "$PACK_DIR/runs" "$PACK_DIR/eval"
CATALOG="$PACK_DIR/catalog-s$PACK_SEED-m$PACK_MODELS-v$PACK_VIEWS"
EVAL_CATALOG="$PACK_DIR/eval-catalog-s$PACK_EVAL_SEED-m$PACK_EVAL_MODELS"
CACHE="$PACK_DIR/trunk-features"
COMMON=(--dataset "$CATALOG" --trunk cached --precision auto --feature-cache "$CACHE" --seed "$PACK_SEED" --device cpu)

# A run: resumed when its checkpoint exists, skipped when all its epochs are done.
run_stage() { # name epochs command...
  local name="$1" epochs="$2"; shift 2
  local dir="$PACK_DIR/runs/$name"
  if [ -f "$dir/metrics.jsonl" ] && [ "$(wc -l <"$dir/metrics.jsonl")" -ge "$epochs" ]; then
    log "$name: done ($(wc -l <"$dir/metrics.jsonl") epochs)"
    return
  fi
  if [ -f "$dir/checkpoint.safetensors" ]; then
    log "$name: resuming"
    $NICE "$BIN" "$@" -o "$dir" "${COMMON[@]}" --epochs "$epochs" --resume
  else
    log "$name: starting"
    $NICE "$BIN" "$@" -o "$dir" "${COMMON[@]}" --epochs "$epochs"
  fi
}

if want data; then
  if [ -f "$CATALOG/catalog.json" ]; then
    log "training catalog: present ($CATALOG)"
  else
    log "training catalog: $PACK_MODELS models x $PACK_VIEWS views per category"
    rm -rf "$CATALOG.partial"
    $NICE "$BIN" dataset synth --categories all --models-per-category "$PACK_MODELS" --views "$PACK_VIEWS" \
      --seed "$PACK_SEED" --out "$CATALOG.partial"
    mv "$CATALOG.partial" "$CATALOG"
  fi
  if [ -f "$EVAL_CATALOG/catalog.json" ]; then
    log "evaluation catalog: present ($EVAL_CATALOG)"
  else
    log "evaluation catalog: seed $PACK_EVAL_SEED (never used in training)"
    rm -rf "$EVAL_CATALOG.partial"
    $NICE "$BIN" dataset synth --categories all --models-per-category "$PACK_EVAL_MODELS" --views 1 \
      --seed "$PACK_EVAL_SEED" --out "$EVAL_CATALOG.partial"
    mv "$EVAL_CATALOG.partial" "$EVAL_CATALOG"
  fi
fi

# Official from-scratch schedule shape (lr 1e-3, merger 1e-4, halved late), at CPU size.
want base && run_stage base "$BASE_EPOCHS" train --variant F --batch-size "$BATCH" --milestones "$((BASE_EPOCHS * 3 / 4))"
BASE_MODEL="$PACK_DIR/runs/base/best.safetensors"
want general && run_stage general "$GENERAL_EPOCHS" finetune --general --from "$BASE_MODEL" --batch-size "$BATCH" --lr 5e-4 --milestones "$((GENERAL_EPOCHS / 2))"
GENERAL_MODEL="$PACK_DIR/runs/general/best.safetensors"
if want special; then
  for c in ${PACK_SPECIALISTS//,/ }; do
    run_stage "$c" "$SPECIAL_EPOCHS" finetune --category "$c" --from "$GENERAL_MODEL" --batch-size "$SPECIAL_BATCH" --lr 5e-4 --milestones "$((SPECIAL_EPOCHS / 2))"
  done
fi

evaluate() { # name model [category]
  local out="$PACK_DIR/eval/$1.eval.json"
  [ -f "$out" ] && [ "$out" -nt "$2" ] && return
  local cat=()
  [ -n "${3:-}" ] && cat=(--category "$3")
  $NICE "$BIN" eval --model "$2" --dataset "$EVAL_CATALOG" --split test "${cat[@]}" --device cpu --json "$out.partial" >/dev/null
  mv "$out.partial" "$out"
}
if want eval; then
  log "evaluating on the test split of $EVAL_CATALOG"
  evaluate base "$BASE_MODEL"
  evaluate general "$GENERAL_MODEL"
  for c in ${PACK_SPECIALISTS//,/ }; do
    evaluate "$c" "$PACK_DIR/runs/$c/best.safetensors" "$c"
    # the general and base models on the same category, for the table
    evaluate "general-$c" "$GENERAL_MODEL" "$c"
    evaluate "base-$c" "$BASE_MODEL" "$c"
  done
fi

if want pack; then
  specialists=()
  for c in ${PACK_SPECIALISTS//,/ }; do specialists+=(--specialist "$PACK_DIR/runs/$c"); done
  notes="$PACK_DIR/card-notes.md"
  {
    echo "- data: mono2mesh synthetic catalog (\`dataset synth\`, catalog-photo style), seed $PACK_SEED, $PACK_MODELS models x $PACK_VIEWS views per category, 70/10/20 split"
    echo "- recipe: \`scripts/train-pack.sh\`: base $BASE_EPOCHS epochs from scratch (all categories), general +$GENERAL_EPOCHS (batch $BATCH, lr 5e-4), specialists +$SPECIAL_EPOCHS on their category (batch $SPECIAL_BATCH, lr 5e-4); base batch $BATCH, Adam, 10 x BCE; frozen random VGG trunk in eval mode with cached features, bf16 autocast (fp32 master weights)"
    echo "- test: seed $PACK_EVAL_SEED catalog (never seen in training), first view of each test model"
    echo "- hardware: $(nproc)-core $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), no GPU"
  } >"$notes"
  # a specialist ships only if it beats the general model on its category's test models,
  # and only while the pack stays within PACK_BUDGET_MB
  "$BIN" models pack --general "$PACK_DIR/runs/general" "${specialists[@]}" --registry "$REGISTRY" --eval-dir "$PACK_DIR/eval" \
    --notes "$notes" --require-better --budget-mb "${PACK_BUDGET_MB:-64}" | tee "$PACK_DIR/pack.log"
fi

if want doc; then
  shipped="$(cd "$REGISTRY/pix2vox" && ls *.safetensors | sed 's/\.safetensors$//' | grep -v '^general$' | paste -sd, -)"
  python3 scripts/pack-table.py "$PACK_DIR" "$PACK_SPECIALISTS" "$shipped" >docs/experiments/model-pack.md
  log "wrote docs/experiments/model-pack.md"
fi
