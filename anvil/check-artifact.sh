#!/usr/bin/env bash
# Fails if recompiling contracts/src would change the committed artifact that the Rust
# bindings are generated from (contracts/out/SwornAnchor.sol/SwornAnchor.json).
# The build goes to a temporary directory; the committed file is never rewritten here.
# To update it deliberately: anvil/forge.sh build, then commit the new artifact.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$HERE/.."
ARTIFACT="contracts/out/SwornAnchor.sol/SwornAnchor.json"
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT

"$HERE/forge.sh" build --force --out "$TMP/out" --cache-path "$TMP/cache" >"$TMP/build.log" 2>&1 || {
    cat "$TMP/build.log" >&2
    echo "check-artifact: forge build failed" >&2
    exit 1
}
FRESH="$TMP/out/SwornAnchor.sol/SwornAnchor.json"
# The artifact is byte-for-byte reproducible (no CBOR metadata, bytecode_hash = none, only
# relative paths) except forge's build counter `id`, which is dropped on both sides.
if ! node -e '
    const fs = require("fs");
    const load = (p) => { const a = JSON.parse(fs.readFileSync(p, "utf8")); delete a.id; return a; };
    const [committed, fresh] = [load(process.argv[1]), load(process.argv[2])];
    const changed = Object.keys({ ...committed, ...fresh })
        .filter((k) => JSON.stringify(committed[k]) !== JSON.stringify(fresh[k]));
    if (changed.length) { console.error("changed fields: " + changed.join(", ")); process.exit(1); }
' "$ROOT/$ARTIFACT" "$FRESH"; then
    echo "check-artifact: $ARTIFACT is stale: recompiling contracts/src changes it." >&2
    echo "check-artifact: run anvil/forge.sh build and commit the new artifact (and check the Rust bindings)." >&2
    exit 1
fi
echo "check-artifact: $ARTIFACT matches a fresh build"
