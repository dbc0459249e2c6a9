#!/usr/bin/env bash
# The contract checks `make test` runs: Forge tests (unit + fuzz), the committed gas
# snapshot, and the committed artifact against a fresh build.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
echo "== forge test (contracts/)"
"$HERE/forge.sh" test
echo "== forge snapshot --check (contracts/.gas-snapshot)"
"$HERE/forge.sh" snapshot --check
echo "== committed artifact"
"$HERE/check-artifact.sh"
