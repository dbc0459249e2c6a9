#!/bin/sh
# Init container "keys": copies this pod's log key, and its chain key, from their Secret
# volumes into a private in-memory directory with mode 0600. sworn refuses a key file that
# group or others can read, and a Secret volume's files are group-readable once the pod
# has an fsGroup (which its data volume needs).
#   POD_NAME        this pod (keys are looked up as <pod name>.key)
#   KEYS_OUT        where the copies go (an emptyDir)
#   LOG_KEYS_DIR    the log-keys Secret volume (unset: the log key lives on the data volume)
#   CHAIN_KEYS_DIR  the chain-keys Secret volume (unset: no anchoring)
#   CHAIN_KEY_PER_POD  true: <pod name>.key, false: one shared chain.key
set -eu
: "${POD_NAME:?}" "${KEYS_OUT:?}"
umask 077
mkdir -p "$KEYS_OUT"

# copy SOURCE DESTINATION WHAT HINT
copy() {
    if [ ! -f "$1" ]; then
        echo "keys: no $3 for pod $POD_NAME: $1 is missing. $4" >&2
        exit 1
    fi
    cp "$1" "$2.partial"
    chmod 600 "$2.partial"
    mv "$2.partial" "$2"
    echo "keys: $3 for $POD_NAME ready"
}

if [ -n "${LOG_KEYS_DIR:-}" ]; then
    copy "$LOG_KEYS_DIR/$POD_NAME.key" "$KEYS_OUT/log.key" "log key" \
        "Add $POD_NAME.key (sworn keygen) to the log-keys Secret and register its origin on the contract (sworn chain register); see docs/DEPLOY.md."
fi
if [ -n "${CHAIN_KEYS_DIR:-}" ]; then
    if [ "${CHAIN_KEY_PER_POD:-true}" = true ]; then
        source="$CHAIN_KEYS_DIR/$POD_NAME.key"
    else
        source="$CHAIN_KEYS_DIR/chain.key"
    fi
    copy "$source" "$KEYS_OUT/chain.key" "chain key" \
        "Add it to the chain-keys Secret (the submitter registered for this pod's origin); see docs/DEPLOY.md."
fi
