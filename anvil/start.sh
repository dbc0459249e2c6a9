#!/usr/bin/env bash
# Starts Sworn's local chain: the pinned anvil on 127.0.0.1:$SWORN_ANVIL_PORT (default 8545),
# in the background, and returns once it answers eth_chainId.
#   - state survives restarts: anvil/state/state.json is loaded at start, written every
#     $SWORN_ANVIL_STATE_INTERVAL seconds (default 5) and on exit;
#   - one slot per epoch and a block a second, so the `finalized` tag trails `latest` by
#     two blocks and a checkpoint is final within seconds;
#   - chain id 31337, and anvil's well-known development accounts (public keys, local use
#     only: account 0 deploys and anchors by default, see deploy.sh).
# Log: anvil/state/anvil.log, pid: anvil/state/anvil.pid. Stop with anvil/stop.sh.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=anvil/tools.sh
source "$HERE/tools.sh"
PORT="${SWORN_ANVIL_PORT:-8545}"
RPC="http://127.0.0.1:$PORT"
STATE_DIR="$HERE/state"
PIDFILE="$STATE_DIR/anvil.pid"
LOG="$STATE_DIR/anvil.log"
# Bounded wait for the RPC: 150 polls, 0.2 s apart (30 s), then give up loudly.
POLLS=150

mkdir -p "$STATE_DIR"

answers() { "$CAST" chain-id --rpc-url "$RPC" >/dev/null 2>&1; }

if [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null && answers; then
    echo "anvil/start.sh: already running (pid $(cat "$PIDFILE")) at $RPC"
    exit 0
fi
if answers; then
    echo "anvil/start.sh: something else already answers at $RPC; set SWORN_ANVIL_PORT" >&2
    exit 1
fi

nohup "$ANVIL" \
    --host 127.0.0.1 --port "$PORT" \
    --state "$STATE_DIR/state.json" --state-interval "${SWORN_ANVIL_STATE_INTERVAL:-5}" \
    --slots-in-an-epoch 1 --block-time "${SWORN_ANVIL_BLOCK_TIME:-1}" \
    >"$LOG" 2>&1 &
echo $! >"$PIDFILE"

for _ in $(seq "$POLLS"); do
    if answers; then
        echo "anvil/start.sh: anvil (pid $(cat "$PIDFILE")) ready at $RPC, chain id $("$CAST" chain-id --rpc-url "$RPC")"
        exit 0
    fi
    if ! kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then
        echo "anvil/start.sh: anvil exited during start-up; last lines of $LOG:" >&2
        tail -n 20 "$LOG" >&2
        exit 1
    fi
    sleep 0.2
done
echo "anvil/start.sh: anvil did not answer at $RPC within $((POLLS / 5)) s; see $LOG" >&2
exit 1
