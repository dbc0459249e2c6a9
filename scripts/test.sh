#!/usr/bin/env bash
# `make test`: every part of the system, for real. Called after `make setup`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

echo "== contracts: forge tests, gas snapshot, committed artifact"
bash anvil/test-contracts.sh

echo "== cargo build (workspace, all targets)"
cargo build --workspace --all-targets

echo "== cargo test (workspace)"
cargo test --workspace --no-fail-fast
