#!/usr/bin/env bash
# The device half of the GPU check (benches/gpu/check.py says what it checks).
#
# Here, first: `bash benches/gpu/build.sh` puts the stripped release binaries `sworn`
# and `gpu_check` and the CUDA-graph shim libsworn_cuda_graph.so in .gpu-bin/ (ignored by
# git). On the GPU machine, from the repo root, with .gpu-bin carried along:
# `bash benches/gpu/run.sh` (results in $OUT, or out/gpu; about 8 minutes, most of it
# transformers' torch.compile, which check.py cuts off at --budget-s). It builds nothing
# there: it links the binaries and the shim against that machine's own torch wheel
# (torch 2.11.0, the version tch 0.24 expects) and its CUDA libraries.
set -euo pipefail
OUT=${OUT:-out/gpu}
mkdir -p "$OUT"
SITE=$(python3 -c 'import os, torch; print(os.path.dirname(os.path.dirname(torch.__file__)))')
export LD_LIBRARY_PATH="$SITE/torch/lib:$SITE/nvidia/cu13/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm --format=csv | tee "$OUT/nvidia-smi.txt"
for bin in .gpu-bin/*; do ldd "$bin" | grep "not found" && echo "$bin: missing libraries" || true; done
.gpu-bin/sworn --version
PYTHONUNBUFFERED=1 python3 benches/gpu/check.py --bin .gpu-bin --out "$OUT" "$@" 2>&1 | tee "$OUT/check.log"
