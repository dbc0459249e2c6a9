#!/usr/bin/env bash
# Offline checks of deploy/ (Helm chart, monitoring, Dockerfile, init scripts); part of
# `make test` (scripts/test.sh). deploy/check/check.py says what is checked.
#
# Its tools come from the package registries this project uses, pinned, installed once
# outside the clone under $SWORN_CACHE (default ~/.cache/sworn), keyed by version, and only
# re-verified afterwards (well under a second):
#   - Helm's engine (helm-python-sdk 0.2.2, Helm 4.2.3 SDK) and kubernetes-validate 1.37.0
#     with its bundled Kubernetes schemas: PyPI, deploy/check/requirements.txt;
#   - the Prometheus Operator's resource schemas: npm @kubernetes-models/prometheus-operator,
#     deploy/check/package-lock.json;
#   - promtool: Debian's `prometheus` package, unpacked (not installed) from `apt-get download`.
# No helm binary or kubeconform is to be had from those registries (see docs/DEPLOY.md).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${SWORN_CACHE:-$HOME/.cache/sworn}"
PYTHON="${PYTHON:-python3}"
CHECK="$ROOT/deploy/check"

say() { printf 'deploy-check: %s\n' "$*"; }
fail() {
    printf '\ndeploy-check: FAILED: %s\n' "$1" >&2
    [ $# -ge 2 ] && printf 'deploy-check: to retry: %s\n' "$2" >&2
    exit 1
}
digest() { cat "$@" | sha256sum | cut -c1-12; }
mkdir -p "$CACHE"

# --- Python: Helm's engine and the Kubernetes schemas ------------------------------------
PY_ENV="$CACHE/deploy-check-py-$(digest "$CHECK/requirements.txt")"
py_ok() {
    [ -f "$PY_ENV/.complete" ] && "$PY_ENV/bin/python" -c \
        'import helm_python, kubernetes_validate, yaml; assert helm_python.helm_sdk_version()' 2>/dev/null
}
if ! py_ok; then
    tmp="$PY_ENV.partial"
    rm -rf "$tmp" "$PY_ENV"
    say "creating $PY_ENV: pip install -r deploy/check/requirements.txt (about 100 MB download)"
    "$PYTHON" -m venv "$tmp" || fail "python3 -m venv $tmp" "apt-get install python3-venv; make test"
    if ! "$tmp/bin/pip" install --quiet --disable-pip-version-check --no-deps -r "$CHECK/requirements.txt"; then
        rm -rf "$tmp"
        fail "pip install -r deploy/check/requirements.txt (package registry unreachable?)" "make test"
    fi
    # The wheel ships libhelm_c.so three times (its soname links as copies): keep one.
    lib="$(echo "$tmp"/lib/python3*/site-packages/helm_python/lib)"
    for f in "$lib"/libhelm_c.so.*.*.*; do real="$(basename "$f")"; done
    for f in "$lib"/libhelm_c.so "$lib"/libhelm_c.so.[0-9]; do
        if [ -f "$f" ] && [ ! -L "$f" ]; then ln -sf "$real" "$f"; fi
    done
    mv "$tmp" "$PY_ENV"
    touch "$PY_ENV/.complete"
    py_ok || { rm -rf "$PY_ENV"; fail "helm-python-sdk or kubernetes-validate do not import from $PY_ENV" "make test"; }
fi

# --- npm: the Prometheus Operator's schemas ----------------------------------------------
NPM_DIR="$CACHE/deploy-check-npm-$(digest "$CHECK/package.json" "$CHECK/package-lock.json")"
if [ ! -f "$NPM_DIR/.complete" ]; then
    rm -rf "$NPM_DIR" "$NPM_DIR.partial"
    mkdir -p "$NPM_DIR.partial"
    cp "$CHECK/package.json" "$CHECK/package-lock.json" "$NPM_DIR.partial/"
    say "npm ci @kubernetes-models/prometheus-operator into $NPM_DIR (about 30 MB)"
    if ! (cd "$NPM_DIR.partial" && npm ci --no-audit --no-fund --ignore-scripts --loglevel=error); then
        rm -rf "$NPM_DIR.partial"
        fail "npm ci in $NPM_DIR.partial (npm registry unreachable?)" "make test"
    fi
    touch "$NPM_DIR.partial/.complete"
    mv "$NPM_DIR.partial" "$NPM_DIR"
fi

# --- promtool, from Debian's prometheus package -----------------------------------------
# Keyed by the Debian version downloaded. With no package lists (a machine that never ran
# apt-get update), root refreshes them; anyone else uses a promtool already in the cache.
promtool_version() { apt-cache policy prometheus 2>/dev/null | awk '/Candidate:/ { print $2 }'; }
want="$(promtool_version)"
if [ -z "$want" ] || [ "$want" = "(none)" ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        say "apt-get update (no package lists for prometheus)"
        apt-get update -qq >/dev/null || true
        want="$(promtool_version)"
    fi
fi
if [ -n "$want" ] && [ "$want" != "(none)" ]; then
    PROMTOOL_DIR="$CACHE/promtool-$want"
else
    PROMTOOL_DIR=""
    for d in "$CACHE"/promtool-*/; do [ -f "$d/.complete" ] && PROMTOOL_DIR="${d%/}"; done
    [ -n "$PROMTOOL_DIR" ] || fail "promtool: Debian's prometheus package is not known to apt here" \
        "as root: apt-get update; make test"
fi
if [ ! -f "$PROMTOOL_DIR/.complete" ]; then
    command -v apt-get >/dev/null || fail "promtool: needs apt-get (Debian) to download the prometheus package"
    tmp="$PROMTOOL_DIR.partial"
    rm -rf "$tmp" && mkdir -p "$tmp/deb"
    say "promtool: apt-get download prometheus=$want, unpacked into $PROMTOOL_DIR (19 MB)"
    # apt's sandbox user may not write into this cache: download as the caller (apt still
    # checks the package against the signed index).
    if ! (cd "$tmp" && apt-get download -qq -o APT::Sandbox::User="$(id -un)" "prometheus=$want"); then
        rm -rf "$tmp"
        fail "apt-get download prometheus=$want (Debian mirror unreachable?)" "make test"
    fi
    dpkg-deb -x "$tmp"/prometheus_*.deb "$tmp/deb"
    cp "$tmp/deb/usr/bin/promtool" "$tmp/promtool"
    rm -rf "$tmp/deb" "$tmp"/prometheus_*.deb
    "$tmp/promtool" --version >/dev/null || { rm -rf "$tmp"; fail "the unpacked promtool does not run"; }
    touch "$tmp/.complete"
    mv "$tmp" "$PROMTOOL_DIR"
fi

say "tools: $("$PY_ENV/bin/python" -c 'import helm_python as h; print("Helm SDK", h.helm_sdk_version())'), kubernetes-validate 1.37.0, $("$PROMTOOL_DIR/promtool" --version 2>&1 | head -n1 | cut -d' ' -f1-3)"
exec "$PY_ENV/bin/python" "$CHECK/check.py" "$ROOT" \
    --promtool "$PROMTOOL_DIR/promtool" --node-modules "$NPM_DIR/node_modules" \
    --python "$PY_ENV/bin/python" --wheels "$CACHE/downloads"
