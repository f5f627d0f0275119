#!/usr/bin/env bash
# Installs the pinned Khronos glTF Validator (tools/gltf-validator: npm ci from its
# package-lock) for the GLB validation test (workers/refine/tests/gltf_validator.rs).
# Idempotent and instant when the installed version is the locked one. Without Node and
# npm it says so and succeeds: the test then prints SKIPPED.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../tools/gltf-validator"

if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  echo "install-gltf-validator: node/npm not found; the GLB validation test will be SKIPPED" >&2
  exit 0
fi
want=$(node -p 'require("./package-lock.json").packages["node_modules/gltf-validator"].version')
have=$(node -p 'try { require("./node_modules/gltf-validator/package.json").version } catch (e) { "" }')
if [ "$want" = "$have" ]; then
  exit 0
fi
npm ci --no-audit --no-fund --loglevel=error
echo "install-gltf-validator: gltf-validator $want installed in tools/gltf-validator"
