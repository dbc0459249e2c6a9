#!/usr/bin/env bash
# One command for a local chain with SwornAnchor on it: start anvil (if it is not running),
# deploy the contract (or reuse it) and register the log, writing anvil/deployment.json.
#   anvil/up.sh [deploy.sh arguments: --origin ORIGIN --pubkey HEX32 ...]
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
"$HERE/start.sh"
"$HERE/deploy.sh" "$@"
