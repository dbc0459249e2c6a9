#!/usr/bin/env python3
"""Runs sworn-verify and the independent Python verifier over every vector of
verifier/tests/vectors/manifest.json that needs no chain, each as its command runs it
(verifier/tests/vectors.rs), and fails if they disagree on the exit code or on the set of
failed layers of any vector. The manifest's own expectation is shown beside them.

  python check.py [--rust PATH] [--vectors DIR]
"""

import argparse
import base64
import hashlib
import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


def checkpoint_args(vector, work):
    """The files a `checkpoint` vector is run with: `{"state", "file" | "file_base64" |
    "note", "consistency"}` (consistency as text, or as JSON in older vectors)."""
    args = []
    state_dir = os.path.join(work, "state")
    os.makedirs(state_dir)
    if vector.get("state") is not None:
        seen = vector["state"]
        name = hashlib.sha256(seen["origin"].encode()).hexdigest() + ".json"
        with open(os.path.join(state_dir, name), "w") as f:
            json.dump(seen, f, indent=2, ensure_ascii=False)
    if "file_base64" in vector:
        data = base64.b64decode(vector["file_base64"])
    else:
        data = vector["file" if "file" in vector else "note"].encode()
    with open(os.path.join(work, "checkpoint"), "wb") as f:
        f.write(data)
    proof = vector.get("consistency")
    if proof is not None:
        with open(os.path.join(work, "consistency.json"), "w") as f:
            f.write(proof if isinstance(proof, str) else json.dumps(proof))
        args += ["--consistency", os.path.join(work, "consistency.json")]
    return [os.path.join(work, "checkpoint"), "--state-dir", state_dir] + args


def command_line(row, vectors, work):
    """The arguments after the program: the command, its files and flags, --json."""
    path = os.path.join(vectors, row["file"])
    key = ["--key", os.path.join(vectors, "key.vkey"), "--json"]
    command = row["command"]
    if command == "content":
        prompt = os.path.join(vectors, row.get("prompt", "honest.prompt"))
        response = os.path.join(vectors, row.get("response", "honest.response"))
        return [command, "--receipt", path, "--prompt", prompt, "--response", response] + key
    if command == "checkpoint":
        with open(path, "rb") as f:
            vector = json.load(f)
        return [command] + checkpoint_args(vector, work) + key
    return [command, path] + key


def run(program, argv):
    """(exit code, sorted failed layers) of one run; layers are None when no report came."""
    done = subprocess.run(program + argv, capture_output=True, timeout=120)
    try:
        report = json.loads(done.stdout)
        failed = sorted(l["layer"] for l in report["layers"] if l["status"] == "failed")
    except (ValueError, KeyError, TypeError):
        failed = None
    return done.returncode, failed


def show(result):
    code, failed = result
    return f"{code} {','.join(failed) if failed else '-' if failed is not None else '(no report)'}"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    target = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
    parser.add_argument("--rust", default=os.path.join(target, "debug", "sworn-verify"))
    parser.add_argument("--vectors", default=os.path.join(ROOT, "verifier", "tests", "vectors"))
    args = parser.parse_args()
    if not os.access(args.rust, os.X_OK):
        sys.exit(f"check.py: {args.rust} not found; cargo build -p sworn-verifier --bin sworn-verify")
    with open(os.path.join(args.vectors, "manifest.json")) as f:
        manifest = json.load(f)
    python = [sys.executable, os.path.join(HERE, "sworn_verify.py")]
    passed, failed, chain, off_manifest = 0, [], 0, 0
    print(f"{'vector':<52} {'command':<10} {'sworn-verify':<28} {'python':<28} {'manifest':<22} verdict")
    for row in manifest:
        if row.get("needs_chain"):
            chain += 1
            continue
        with tempfile.TemporaryDirectory() as a, tempfile.TemporaryDirectory() as b:
            rust = run([args.rust], command_line(row, args.vectors, a))
            py = run(python, command_line(row, args.vectors, b))
        expected = (1 if row["failed_layers"] else 0, sorted(row["failed_layers"]))
        agree = rust == py
        note = "" if rust == expected and py == expected else " (differs from manifest)"
        off_manifest += bool(note)
        print(f"{row['file']:<52} {row['command']:<10} {show(rust):<28} {show(py):<28} "
              f"{show(expected):<22} {'agree' if agree else 'DISAGREE'}{note}")
        if agree:
            passed += 1
        else:
            failed.append(row["file"])
    print(f"\n{chain} vector(s) need a chain and are left to the Anvil tests; "
          f"{off_manifest} result(s) differ from the manifest's expectation (informative).")
    for name in failed:
        print(f"disagreement: {name}")
    print(f"{passed} passed, {len(failed)} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
