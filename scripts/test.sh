#!/usr/bin/env bash
# Set up and run the whole test suite: libtorch, the classifier weights, the local
# PostgreSQL and RabbitMQ the integration tests use, the deploy/k8s schema check, then
# every crate's tests.
# Tests that need ../shared (reference vectors, real photos) say SKIPPED when it is absent.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash scripts/setup.sh --tests
bash scripts/services.sh
# The Kubernetes manifests against the API server's schemas and KEDA's (offline).
python3 -m pip show -q kubernetes-validate >/dev/null 2>&1 \
  || python3 -m pip install -q --disable-pip-version-check kubernetes-validate==1.37.0
python3 scripts/validate-k8s.py --quiet
cargo test --workspace --locked "$@"
