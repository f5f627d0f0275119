#!/usr/bin/env bash
# Set up and run the whole test suite: libtorch, the classifier weights, the local
# PostgreSQL and RabbitMQ the integration tests use, then every crate's tests.
# Tests that need ../shared (reference vectors, real photos) say SKIPPED when it is absent.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash scripts/setup.sh --tests
bash scripts/services.sh
cargo test --workspace --locked "$@"
