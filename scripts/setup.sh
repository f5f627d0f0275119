#!/usr/bin/env bash
# One-time (and idempotent) set-up of what mono2mesh needs to build and run on this
# machine, then a build: libtorch from PyPI, the `mono2mesh` binary, the ImageNet
# classifier weights converted by that binary. Fast when already done.
#   scripts/setup.sh            debug build (what the tests use)
#   scripts/setup.sh --release  release build (what the demo runs)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

profile=debug
cargo_flags=()
if [ "${1:-}" = "--release" ]; then profile=release; cargo_flags=(--release); fi

bash scripts/install-libtorch.sh
cargo build --locked "${cargo_flags[@]}" -p mono2mesh
MONO2MESH_BIN="${CARGO_TARGET_DIR:-target}/$profile/mono2mesh" bash scripts/fetch-classifier-weights.sh
