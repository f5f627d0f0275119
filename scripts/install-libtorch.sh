#!/usr/bin/env bash
# Install libtorch 2.11.0 (what tch 0.24 needs) from PyPI's torch wheel, without the
# ~2.2 GB of nvidia-* wheels: only cudart + cupti, which libtorch_cpu.so links against.
# Result: <repo>/.libtorch -> $LIBTORCH_CACHE_DIR (shared by all checkouts on the machine).
# .cargo/config.toml points LIBTORCH at .libtorch/torch; build.rs embeds an rpath.
# Idempotent; safe to run on every CI start (~1 s when already installed).
set -euo pipefail

TORCH_VERSION=2.11.0
PKGS=(torch==2.11.0 nvidia-cuda-runtime==13.0.96 nvidia-cuda-cupti==13.0.85)
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${LIBTORCH_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/libtorch-pypi/torch-$TORCH_VERSION-cu130-min}"
DEST="$ROOT/.libtorch"
PY="${PYTHON:-python3}"

ok() {
  [ -f "$1/torch/lib/libtorch_cpu.so" ] && [ -f "$1/torch/lib/libc10.so" ] &&
  [ -f "$1/torch/include/torch/csrc/api/include/torch/torch.h" ] &&
  [ -f "$1/nvidia/cu13/lib/libcudart.so.13" ] && [ -f "$1/nvidia/cu13/lib/libcupti.so.13" ] &&
  grep -q "^__version__ = '$TORCH_VERSION" "$1/torch/version.py"
}

if ok "$CACHE"; then
  echo "libtorch $TORCH_VERSION: already installed in $CACHE"
else
  echo "libtorch $TORCH_VERSION: installing ${PKGS[*]} into $CACHE"
  mkdir -p "$(dirname "$CACHE")"
  tmp="$CACHE.tmp.$$"
  trap 'rm -rf "$tmp"' EXIT
  for attempt in 1 2 3; do
    rm -rf "$tmp"
    if "$PY" -m pip install --quiet --no-deps --only-binary=:all: --no-cache-dir --no-compile \
         --disable-pip-version-check --root-user-action=ignore --target "$tmp" "${PKGS[@]}"; then
      break
    fi
    echo "pip attempt $attempt failed" >&2
    [ "$attempt" = 3 ] && exit 1
    sleep $((attempt * 10))
  done
  ok "$tmp" || { echo "install incomplete in $tmp" >&2; exit 1; }
  rm -rf "$CACHE"
  mv "$tmp" "$CACHE"   # libs use $ORIGIN-relative RUNPATHs, so moving the tree is fine
  trap - EXIT
fi

# .libtorch is a symlink to the shared copy (gitignored)
if [ -e "$DEST" ] && [ ! -L "$DEST" ]; then rm -rf "$DEST"; fi
ln -sfn "$CACHE" "$DEST"
echo "LIBTORCH=$DEST/torch"
