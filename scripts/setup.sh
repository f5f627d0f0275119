#!/usr/bin/env bash
# One-time (and idempotent) set-up of everything mono2mesh needs to build and run on
# this machine: libtorch from PyPI, the ImageNet classifier weights, a release build.
# Fast when already done.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash scripts/install-libtorch.sh
if [ -f scripts/fetch-classifier-weights.sh ]; then
  bash scripts/fetch-classifier-weights.sh
fi
