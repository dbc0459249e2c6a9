#!/usr/bin/env bash
# `make run`: starts the whole product on its embedded defaults.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export PATH="$PWD/anvil/node_modules/.bin:$PATH"
SWORN=target/release/sworn

"$SWORN" --version
