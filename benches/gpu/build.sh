#!/usr/bin/env bash
# Builds what the GPU check carries to the device machine, in .gpu-bin/ (see
# benches/gpu/run.sh): stripped release binaries of `sworn` and the `gpu_check` example,
# and the CUDA-graph shim libsworn_cuda_graph.so beside them (service/build.rs builds it;
# both binaries look for it in their own directory first). The run carries at most 64 MiB.
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo build --release -p sworn-service --bin sworn -p sworn-benches --example gpu_check
mkdir -p .gpu-bin
for bin in target/release/sworn target/release/examples/gpu_check; do
    strip -o ".gpu-bin/$(basename "$bin")" "$bin"
done
shim=target/release/libsworn_cuda_graph.so
if [ -f "$shim" ]; then
    strip --strip-unneeded -o .gpu-bin/libsworn_cuda_graph.so "$shim"
else
    rm -f .gpu-bin/libsworn_cuda_graph.so
    echo "build.sh: WARNING: $shim was not built (see the cargo warning); the GPU check will decode eagerly only" >&2
fi
ls -l .gpu-bin
total=$(du -cb .gpu-bin/* | tail -n1 | cut -f1)
echo "build.sh: .gpu-bin holds $((total / 1048576)) MiB (the device run carries at most 64 MiB)"
[ "$total" -lt $((64 * 1048576)) ] || { echo "build.sh: .gpu-bin is over 64 MiB" >&2; exit 1; }
