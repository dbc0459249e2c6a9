# Sourced by the scripts in anvil/: sets ANVIL, FORGE and CAST to the native Foundry
# binaries from the pinned npm packages (@foundry-rs/<tool>-<os>-<arch>).
#
# Why not node_modules/.bin/<tool>: those are Node wrappers that spawn the binary but do
# not pass its exit status on (a failing `forge test` exits 0 through them), and killing
# the wrapper leaves the binary running. Scripts must see failures, so they call the
# binaries themselves.
_sworn_tools_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/node_modules/@foundry-rs"
_sworn_tool() {
    local found
    for found in "$_sworn_tools_dir/$1"-*/bin/"$1"; do
        if [ -x "$found" ]; then
            printf '%s\n' "$found"
            return 0
        fi
    done
    echo "anvil/: no native $1 under $_sworn_tools_dir; run \`make setup\`" >&2
    return 1
}
ANVIL="$(_sworn_tool anvil)"
FORGE="$(_sworn_tool forge)"
CAST="$(_sworn_tool cast)"
