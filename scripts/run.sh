#!/usr/bin/env bash
# `make run`: the whole product on this machine.
#   1. the local chain (anvil/start.sh) with SwornAnchor deployed and this log registered
#      (anvil/deploy.sh); without the chain tools, serving goes on with --no-anchor;
#   2. on first run, the log key and an admin API key under data/ (git-ignored);
#   3. `sworn serve` with the default model, in the foreground.
# It prints the URL, an example request and the command that verifies its receipt.
# Ctrl-C stops the server and the chain this script started.
#
# Environment: SWORN_LISTEN (default 127.0.0.1:8080), SWORN_MODEL, SWORN_ORIGIN,
# SWORN_NO_CHAIN=1 to skip the chain.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

SWORN="$ROOT/target/release/sworn"
VERIFY="$ROOT/target/release/sworn-verify"
DATA="$ROOT/data"
MODEL="${SWORN_MODEL:-models/SmolLM2-135M-Instruct.Q4_1.gguf}"
LISTEN="${SWORN_LISTEN:-127.0.0.1:8080}"
ORIGIN="${SWORN_ORIGIN:-sworn.local/dev}"
LOG_KEY="$DATA/log.key"
API_KEYS="$DATA/api-keys.toml"
ADMIN_KEY_FILE="$DATA/admin.key"

die() { echo "scripts/run.sh: $*" >&2; exit 1; }
[ -x "$SWORN" ] || die "missing $SWORN (run: make release)"
[ -f "$MODEL" ] || die "missing model $MODEL (run: make setup)"
mkdir -p "$DATA"
chmod 700 "$DATA"

# --- keys (first run only) -------------------------------------------------------------
if [ ! -f "$LOG_KEY" ]; then
    echo "==> creating the log key $LOG_KEY"
    "$SWORN" keygen --out "$LOG_KEY" >/dev/null
fi
PUBKEY="$("$SWORN" keygen --out "$LOG_KEY" --show)"
if [ ! -f "$API_KEYS" ]; then
    echo "==> creating an admin API key in $API_KEYS"
    umask 077
    "$SWORN" keys add --file "$API_KEYS" --id local-admin --role admin >"$ADMIN_KEY_FILE"
fi
API_KEY="$(tr -d '[:space:]' <"$ADMIN_KEY_FILE")"

# --- chain -----------------------------------------------------------------------------
STARTED_CHAIN=0
ANCHOR_ARGS=(--no-anchor)
if [ "${SWORN_NO_CHAIN:-0}" != 1 ] && [ -x anvil/start.sh ] && [ -x anvil/deploy.sh ]; then
    if ! anvil/start.sh >/dev/null 2>&1 || [ ! -f anvil/state/anvil.pid ]; then
        echo "==> NOTE: the local chain did not start (see anvil/state/anvil.log); serving without anchoring"
    else
        STARTED_CHAIN=1
        echo "==> local chain up; deploying SwornAnchor and registering $ORIGIN"
        anvil/deploy.sh --origin "$ORIGIN" --pubkey "$PUBKEY" >/dev/null
        CONTRACT="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["address"])' anvil/deployment.json)"
        RPC="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["rpc_url"])' anvil/deployment.json)"
        ANCHOR_ARGS=(--rpc "$RPC" --contract "$CONTRACT" --chain-key anvil/state/dev-chain-key)
    fi
else
    echo "==> NOTE: no local chain (anvil/ scripts absent or SWORN_NO_CHAIN=1): serving with --no-anchor"
fi

SERVER_PID=""
cleanup() {
    if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill -TERM "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    if [ "$STARTED_CHAIN" = 1 ]; then
        anvil/stop.sh >/dev/null 2>&1 || true
    fi
}
trap cleanup EXIT INT TERM

URL="http://$LISTEN"
MODEL_ID="$(basename "$MODEL")"
MODEL_ID="${MODEL_ID%%.*}"
if [ "${#ANCHOR_ARGS[@]}" -gt 1 ]; then
    TRUST="--from-chain --origin $ORIGIN --rpc $RPC --contract $CONTRACT"
else
    TRUST="--key \"\$(curl -s $URL/v1/audit/key -H \"Authorization: Bearer \$(cat $ADMIN_KEY_FILE)\" | python3 -c 'import json,sys; print(json.load(sys.stdin)[\"vkey\"])')\""
fi
cat <<EOF

  Sworn is starting at $URL   (model: $MODEL_ID, log: $ORIGIN)
  Admin API key: $ADMIN_KEY_FILE

  Ask:
    curl -s -D headers.txt $URL/v1/chat/completions \\
      -H "Authorization: Bearer \$(cat $ADMIN_KEY_FILE)" -H 'Content-Type: application/json' \\
      -d '{"model":"$MODEL_ID","messages":[{"role":"user","content":"Say hello"}],"max_tokens":32}'

  Verify its receipt, layer by layer (signature, inclusion, checkpoint, anchor, finality;
  anchoring reaches finality a few seconds after the answer):
    SWORN_API_KEY="\$(cat $ADMIN_KEY_FILE)" $VERIFY receipt --server $URL \\
      --request-id "\$(awk 'tolower(\$1)=="x-request-id:" {print \$2}' headers.txt | tr -d '\\r')" $TRUST

EOF

"$SWORN" serve \
    --model "$MODEL" \
    --listen "$LISTEN" \
    --data-dir "$DATA" \
    --log-key "$LOG_KEY" \
    --origin "$ORIGIN" \
    --api-keys "$API_KEYS" \
    "${ANCHOR_ARGS[@]}" &
SERVER_PID=$!
wait "$SERVER_PID"
