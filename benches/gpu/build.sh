#!/usr/bin/env bash
# Builds what the GPU check carries to the device machine: stripped release binaries of
# `sworn` and the `gpu_check` example, in .gpu-bin/ (see benches/gpu/run.sh).
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo build --release -p sworn-service --bin sworn -p sworn-benches --example gpu_check
mkdir -p .gpu-bin
for bin in target/release/sworn target/release/examples/gpu_check; do
    strip -o ".gpu-bin/$(basename "$bin")" "$bin"
done
ls -l .gpu-bin
