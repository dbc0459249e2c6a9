#!/usr/bin/env bash
# Stops the anvil that anvil/start.sh started (SIGTERM, so it writes its state file), and
# waits a bounded time for it to exit.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PIDFILE="$HERE/state/anvil.pid"
if [ ! -f "$PIDFILE" ]; then
    echo "anvil/stop.sh: not running (no $PIDFILE)"
    exit 0
fi
PID="$(cat "$PIDFILE")"
if kill -0 "$PID" 2>/dev/null; then
    kill -TERM "$PID"
    # 100 polls, 0.1 s apart: anvil writes its state on exit, which takes a moment.
    for _ in $(seq 100); do
        kill -0 "$PID" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$PID" 2>/dev/null; then
        echo "anvil/stop.sh: pid $PID still running after 10 s" >&2
        exit 1
    fi
    echo "anvil/stop.sh: stopped pid $PID"
fi
rm -f "$PIDFILE"
