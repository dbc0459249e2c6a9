#!/usr/bin/env bash
# Deploys SwornAnchor to the *local* chain (anvil/start.sh), registers a log, and writes
# anvil/deployment.json (chain id, contract address, deploy block and transaction, log).
#
#   anvil/deploy.sh [--origin ORIGIN --pubkey HEX32] [--submitter ADDR] [--rpc URL] [--out FILE]
#
# Local only: it sends from anvil's unlocked development account 0
# (0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266), whose key is public knowledge, and refuses
# any chain id but 31337. For a real chain use `sworn chain deploy --chain-key FILE`.
# It also writes that account's key to anvil/state/dev-chain-key (mode 0600), so a local
# `sworn serve --chain-key` can anchor as the registered submitter.
#
# Idempotent: a contract already at the address in the output file is reused, and a log
# already registered with the same key is left alone (a different key is an error).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=anvil/tools.sh
source "$HERE/tools.sh"

ARTIFACT="$HERE/../contracts/out/SwornAnchor.sol/SwornAnchor.json"
RPC="http://127.0.0.1:${SWORN_ANVIL_PORT:-8545}"
OUT="$HERE/deployment.json"
ORIGIN=""
PUBKEY=""
# Anvil's development account 0 and its published key (local chain only).
DEV_ACCOUNT="0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"
DEV_KEY="0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"
SUBMITTER="$DEV_ACCOUNT"
LOCAL_CHAIN_ID=31337

die() { echo "anvil/deploy.sh: $*" >&2; exit 1; }
while [ $# -gt 0 ]; do
    case "$1" in
        --origin) ORIGIN="${2:?--origin needs a value}"; shift 2 ;;
        --pubkey) PUBKEY="${2:?--pubkey needs a value}"; shift 2 ;;
        --submitter) SUBMITTER="${2:?--submitter needs a value}"; shift 2 ;;
        --rpc) RPC="${2:?--rpc needs a value}"; shift 2 ;;
        --out) OUT="${2:?--out needs a value}"; shift 2 ;;
        *) die "unknown argument $1 (see the header of this script)" ;;
    esac
done
if [ -n "$ORIGIN" ] || [ -n "$PUBKEY" ]; then
    [ -n "$ORIGIN" ] && [ -n "$PUBKEY" ] || die "--origin and --pubkey go together"
    PUBKEY="0x${PUBKEY#0x}"
    [[ "$PUBKEY" =~ ^0x[0-9a-fA-F]{64}$ ]] || die "--pubkey must be 32 bytes of hex (an Ed25519 public key)"
fi
[ -f "$ARTIFACT" ] || die "missing $ARTIFACT"

CHAIN_ID="$("$CAST" chain-id --rpc-url "$RPC")" || die "no chain answers at $RPC (anvil/start.sh?)"
[ "$CHAIN_ID" = "$LOCAL_CHAIN_ID" ] \
    || die "chain id $CHAIN_ID is not the local chain ($LOCAL_CHAIN_ID); use \`sworn chain deploy\`"

json_field() { node -e 'const v = JSON.parse(require("fs").readFileSync(0, "utf8"))[process.argv[1]]; if (v === undefined) process.exit(1); console.log(v)' "$1"; }

ADDRESS=""
if [ -f "$OUT" ]; then
    prev_chain="$(json_field chain_id <"$OUT" || true)"
    prev_addr="$(json_field address <"$OUT" || true)"
    if [ "$prev_chain" = "$CHAIN_ID" ] && [ -n "$prev_addr" ] \
        && [ "$("$CAST" code --rpc-url "$RPC" "$prev_addr")" != "0x" ]; then
        ADDRESS="$prev_addr"
        DEPLOY_BLOCK="$(json_field deploy_block <"$OUT")"
        DEPLOY_TX="$(json_field deploy_tx <"$OUT")"
        echo "anvil/deploy.sh: reusing SwornAnchor at $ADDRESS"
    fi
fi
if [ -z "$ADDRESS" ]; then
    BYTECODE="$(node -e 'console.log(require(process.argv[1]).bytecode.object)' "$ARTIFACT")"
    RECEIPT="$("$CAST" send --rpc-url "$RPC" --unlocked --from "$DEV_ACCOUNT" --json --create "$BYTECODE")"
    [ "$(json_field status <<<"$RECEIPT")" = "0x1" ] || die "deployment reverted: $RECEIPT"
    ADDRESS="$("$CAST" to-check-sum-address "$(json_field contractAddress <<<"$RECEIPT")")"
    DEPLOY_BLOCK="$(("$(json_field blockNumber <<<"$RECEIPT")"))"
    DEPLOY_TX="$(json_field transactionHash <<<"$RECEIPT")"
    echo "anvil/deploy.sh: deployed SwornAnchor at $ADDRESS (block $DEPLOY_BLOCK)"
fi

LOG_FIELDS=""
if [ -n "$ORIGIN" ]; then
    LOG_ID="0x$(printf '%s' "$ORIGIN" | sha256sum | cut -d' ' -f1)"
    if "$CAST" call --rpc-url "$RPC" "$ADDRESS" "logInfo(bytes32)" "$LOG_ID" >/dev/null 2>&1; then
        have="$("$CAST" call --rpc-url "$RPC" "$ADDRESS" "keyForSeq(bytes32,uint64)(bytes32,uint64)" "$LOG_ID" 1 | head -n1)"
        [ "${have,,}" = "${PUBKEY,,}" ] || die "log $ORIGIN is already registered with key $have, not $PUBKEY"
        echo "anvil/deploy.sh: log $ORIGIN already registered"
    else
        RECEIPT="$("$CAST" send --rpc-url "$RPC" --unlocked --from "$DEV_ACCOUNT" --json \
            "$ADDRESS" "registerLog(bytes32,bytes32,address)" "$LOG_ID" "$PUBKEY" "$SUBMITTER")"
        [ "$(json_field status <<<"$RECEIPT")" = "0x1" ] || die "registerLog reverted: $RECEIPT"
        echo "anvil/deploy.sh: registered log $ORIGIN ($LOG_ID), submitter $SUBMITTER"
    fi
    LOG_FIELDS=", \"origin\": $(node -e 'console.log(JSON.stringify(process.argv[1]))' "$ORIGIN"), \"log_id\": \"$LOG_ID\", \"public_key\": \"$PUBKEY\", \"submitter\": \"$SUBMITTER\""
fi

mkdir -p "$HERE/state"
( umask 077; printf '%s\n' "$DEV_KEY" >"$HERE/state/dev-chain-key" )
chmod 600 "$HERE/state/dev-chain-key"

TMP_OUT="$OUT.partial"
printf '{"chain_id": %s, "address": "%s", "deploy_block": %s, "deploy_tx": "%s", "rpc_url": "%s"%s}\n' \
    "$CHAIN_ID" "$ADDRESS" "$DEPLOY_BLOCK" "$DEPLOY_TX" "$RPC" "$LOG_FIELDS" >"$TMP_OUT"
mv "$TMP_OUT" "$OUT"
echo "anvil/deploy.sh: wrote $OUT"
