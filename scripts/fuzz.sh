#!/usr/bin/env bash
# `make fuzz`: runs every cargo-fuzz target in fuzz/ for a set time (default 60 s each),
# one after the other on one core, and prints per target the runs, CPU seconds, corpus
# size and crashes. Exits non-zero when any target crashed (or timed out, or ran out of
# memory): libFuzzer's reproducer is then under fuzz/artifacts/<target>/.
#
#   scripts/fuzz.sh [seconds-per-target]
#   FUZZ_TARGETS="ijson gguf" scripts/fuzz.sh 30      # a subset
#
# Not part of `make test`: it takes minutes, and the crashes it found are regression
# tests there (`*/tests/fuzz_regressions.rs`). Needs `make setup` (libtorch, for the
# targets that link sworn-service) and a nightly toolchain (cargo-fuzz's sanitizer flags).
#
# Every target is built with `-s none`, no sanitizer. The code under test is safe Rust
# (its one `unsafe`, the GGUF memory map, is not on the from-bytes path fuzzed here), so
# AddressSanitizer would find nothing that bounds checks and overflow checks (cargo-fuzz
# keeps debug assertions on) do not, at half the speed. And the service targets link
# libtorch, which is not built with ASan: its C++ runtime and ASan's interceptors do not
# reliably start together. One configuration for all targets also means one build of the
# shared dependency tree (alloy, tokio, tch) instead of two.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

SECONDS_PER_TARGET="${1:-60}"
CARGO_FUZZ_VERSION="0.13.1"
TOOLCHAIN="${FUZZ_TOOLCHAIN:-nightly}"
TRIPLE="x86_64-unknown-linux-gnu"
# One build job and one fuzzing process: the fuzzer shares the machine.
export CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-1}"
# LIBTORCH comes from .cargo/config.toml (the .libtorch link `make setup` makes);
# fuzz/build.rs gives the binaries an rpath to it, so no LD_LIBRARY_PATH is needed.
if [ ! -e .libtorch/lib/libtorch_cpu.so ]; then
    echo "fuzz: .libtorch/lib/libtorch_cpu.so is missing: run \`make setup\` first" >&2
    exit 1
fi
if ! cargo "+$TOOLCHAIN" --version >/dev/null 2>&1; then
    echo "fuzz: the $TOOLCHAIN toolchain is missing: rustup toolchain install $TOOLCHAIN" >&2
    exit 1
fi
if [ "$(cargo fuzz --version 2>/dev/null)" != "cargo-fuzz $CARGO_FUZZ_VERSION" ]; then
    echo "== installing cargo-fuzz $CARGO_FUZZ_VERSION"
    cargo install cargo-fuzz --version "$CARGO_FUZZ_VERSION" --locked
fi

echo "== building the fuzz targets (sanitizer: none; debug assertions on)"
cargo "+$TOOLCHAIN" fuzz build -s none
read -r -a TARGETS <<<"${FUZZ_TARGETS:-$(cargo "+$TOOLCHAIN" fuzz list | tr '\n' ' ')}"

# The corpus a run grows lives in fuzz/target (ignored); the committed seeds in
# fuzz/corpus are read, never written (`fuzz/seeds.py` makes them).
WORK="fuzz/target/corpus"
LOGS="fuzz/target/logs"
mkdir -p "$WORK" "$LOGS"
results=()
failed=0
for t in "${TARGETS[@]}"; do
    mkdir -p "$WORK/$t" "fuzz/corpus/$t" "fuzz/artifacts/$t"
    log="$LOGS/$t.log"
    echo "== $t: ${SECONDS_PER_TARGET}s"
    # -timeout: one input taking 30 s is a finding (a hang), not patience.
    set +e
    /usr/bin/time -f '%e %U %S' -o "$LOGS/$t.cpu" \
        "fuzz/target/$TRIPLE/release/$t" \
        -max_total_time="$SECONDS_PER_TARGET" -timeout=30 -rss_limit_mb=2048 \
        -print_final_stats=1 -artifact_prefix="fuzz/artifacts/$t/" \
        "$WORK/$t" "fuzz/corpus/$t" >"$log" 2>&1
    rc=$?
    set -e
    execs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)"
    rate="$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)"
    wall="$(awk 'END {printf "%.0f", $1}' "$LOGS/$t.cpu" 2>/dev/null || echo '?')"
    cpu="$(awk 'END {printf "%.0f", $2 + $3}' "$LOGS/$t.cpu" 2>/dev/null || echo '?')"
    corpus="$(find "$WORK/$t" -type f | wc -l)"
    crashes="$(grep -c '^SUMMARY: libFuzzer' "$log" || true)"
    if [ "$rc" -ne 0 ]; then
        failed=1
        crashes=$((crashes > 0 ? crashes : 1))
        echo "   CRASHED (exit $rc); see $log and fuzz/artifacts/$t/"
        grep -E '^(thread .* panicked|==[0-9]+== ERROR|SUMMARY|artifact_prefix|Test unit written)' "$log" | head -5 | sed 's/^/   /'
    fi
    results+=("$(printf '%-18s %6s %8s %12s %10s %8s %7s' "$t" "$wall" "$cpu" "${execs:-?}" \
        "${rate:-?}" "$corpus" "$crashes")")
done

echo
printf '%-18s %6s %8s %12s %10s %8s %7s\n' target wall_s cpu_s execs execs/s corpus crashes
printf '%s\n' "${results[@]}"
echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
if [ "$failed" -ne 0 ]; then
    echo "fuzz: FAILED: a target crashed; reproduce with" \
        "\`cargo +$TOOLCHAIN fuzz run -s none <target> fuzz/artifacts/<target>/<file>\`" >&2
    exit 1
fi
echo "fuzz: no crashes"
