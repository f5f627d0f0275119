#!/usr/bin/env bash
# One-time (and idempotent) set-up of what mono2mesh needs to build and run on this
# machine, then a build: libtorch from PyPI, the `mono2mesh` binary, the ImageNet
# classifier weights converted by that binary. Fast when already done.
#   scripts/setup.sh            debug build of the `mono2mesh` binary (what the demo runs)
#   scripts/setup.sh --tests    debug build of every test and binary (what the tests run)
#   scripts/setup.sh --release  release build of the binary
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

profile=debug
mode="${1:-}"

bash scripts/install-libtorch.sh
if [ "$mode" = --tests ]; then bash scripts/install-gltf-validator.sh; fi
case "$mode" in
  --release) profile=release; cargo build --locked --release -p mono2mesh ;;
  # The test build unifies the workspace's dev-dependency features (the test kit's
  # in-process S3 turns on more of aws-sdk-s3, ...); building the binary alone first
  # would resolve other features and make `cargo test` rebuild the shared dependencies.
  # This builds once, the binary included.
  --tests) cargo test --workspace --locked --no-run ;;
  "") cargo build --locked -p mono2mesh ;;
  *) echo "usage: scripts/setup.sh [--tests|--release]" >&2; exit 2 ;;
esac
MONO2MESH_BIN="${CARGO_TARGET_DIR:-target}/$profile/mono2mesh" bash scripts/fetch-classifier-weights.sh
