#!/usr/bin/env bash
# `make fixtures`: regenerates the golden fixtures that the engine tests compare against,
# with Hugging Face transformers + gguf (the reference implementation) on the same files
# the engine loads. Each scripts/fixtures/*.py writes its own outputs and says where.
#
# The reference environment is a virtual environment outside the clone, keyed by the
# pinned versions below (about 5 GB: torch pulls in the CUDA wheels). The fixtures are
# committed, so `make test` never needs it.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
CACHE="${SWORN_CACHE:-$HOME/.cache/sworn}"
PINS=(torch==2.11.0 transformers==5.24.0 gguf==0.19.0 numpy==2.4.6 safetensors==0.8.0
      tokenizers==0.23.3 sentencepiece==0.2.3 jinja2==3.1.6)
KEY="$(printf '%s\n' "${PINS[@]}" | sha256sum | cut -c1-12)"
VENV="$CACHE/refvenv-$KEY"
if [ ! -f "$VENV/.complete" ]; then
    rm -rf "$VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check "${PINS[@]}" \
        || { rm -rf "$VENV"; echo "fixtures: pip install failed; retry: make fixtures" >&2; exit 1; }
    touch "$VENV/.complete"
fi
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PYTHONHASHSEED=0
for script in scripts/fixtures/*.py; do
    echo "== $script"
    "$VENV/bin/python" "$script"
done
