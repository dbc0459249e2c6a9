#!/usr/bin/env bash
# Runs the pinned forge on the contracts/ project from any directory, with the pinned
# solc-js wrapper given as an absolute path (foundry.toml's relative `solc` path is
# resolved against the working directory, so it only holds inside contracts/).
#   anvil/forge.sh test | anvil/forge.sh build | anvil/forge.sh snapshot --check ...
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=anvil/tools.sh
source "$HERE/tools.sh"
export FOUNDRY_SOLC="$HERE/solc"
cd "$HERE/../contracts"
exec "$FORGE" "$@"
