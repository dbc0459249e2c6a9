#!/usr/bin/env python3
"""An independent Sworn verifier, written from docs/FORMATS.md (§14 for the layers).

Offline commands only, with the CLI shape and exit codes of `sworn-verify`:
  receipt FILE --key K [--json]
  content --receipt F --prompt F --response F [--key K] [--json]
  checkpoint FILE --key K [--consistency F] [--state-dir D] [--json]
  audit EXPORT --key K [--json]
"""

import argparse
import json
import os
import sys

from formats import (Refused, b64, checkpoint_json, closed, disagreements, hashes, hex32,
                     inclusion_section, leaf_hash, load_key, member, parse_body,
                     parse_checkpoint_text, parse_json, sha256, split_note, verify_checkpoint,
                     verify_consistency, verify_entry, verify_inclusion)

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_PENDING = 0, 1, 2, 3
MAX_BUNDLE = 512 * 1024
MAX_CONTENT = 8 * 1024 * 1024


class Report:
    """One outcome per layer (§14.1); a later outcome of a layer replaces the earlier."""

    def __init__(self, subject):
        self.subject, self.facts, self.layers = subject, [], {}

    def fact(self, label, value):
        self.facts.append({"label": label, "value": str(value)})

    def set(self, layer, required, status, detail):
        self.layers.pop(layer, None)
        self.layers[layer] = {"layer": layer, "required": required, "status": status, "detail": detail}

    def exit_code(self):
        ls = self.layers.values()
        if any(l["status"] == "failed" or (l["required"] and l["status"] == "skipped") for l in ls):
            return EXIT_FAILED
        return EXIT_PENDING if any(l["status"] == "pending" for l in ls) else EXIT_OK

    def to_json(self):
        code = self.exit_code()
        out = {"subject": self.subject, "verdict": {0: "ok", 3: "pending"}.get(code, "failed"),
               "exit_code": code, "facts": self.facts, "layers": list(self.layers.values())}
        if hasattr(self, "findings"):
            out["findings"], out["findings_total"] = self.findings, len(self.findings)
        return out


def offline_chain_layers(report):
    report.set("anchor", False, "skipped", "no --rpc/--contract: not checked on chain (offline verifier)")
    report.set("finality", False, "skipped", "no --rpc/--contract (offline verifier)")


# --- bundles (§7) ----------------------------------------------------------------------

def split_bundle(data):
    """The sections of a bundle file: full bundle, completion response or bare receipt."""
    if len(data) > MAX_BUNDLE:
        raise Refused("bundle over 512 KiB")
    top = parse_json(data)
    if not isinstance(top, dict):
        raise Refused("bundle is not a JSON object")
    if "receipt" in top:
        return full_bundle(top)
    choices = top.get("choices")
    if ("sworn" not in top and isinstance(choices, list) and len(choices) == 1
            and isinstance(choices[0], dict) and "sworn" in choices[0]):
        # One choice of an answer of several, its receipt inside it (FORMATS.md §7.2).
        choices[0] = dict(choices[0])
        top["sworn"] = choices[0].pop("sworn")
    if "sworn" in top:
        sworn = top.pop("sworn")
        answer = answer_text(top)
        if isinstance(sworn, dict) and "receipt" in sworn:
            bundle = full_bundle(sworn)
        else:
            bundle = {"receipt": sworn}
        bundle["answer"] = answer
        return bundle
    if "body" in top and "signature" in top:
        return {"receipt": top}
    raise Refused("no receipt (expected `receipt`, `sworn`, or a bare receipt)")


def full_bundle(top):
    closed(top, "bundle", ("receipt",), ("inclusion", "checkpoint", "anchor", "erasure"))
    return dict(top)


def answer_text(response):
    if "choices" not in response:
        return None
    choices = response["choices"]
    if not isinstance(choices, list) or len(choices) != 1:
        raise Refused("a sworn answer has exactly one choice")
    choice = choices[0] if isinstance(choices[0], dict) else {}
    message = choice.get("message")
    calls = message.get("tool_calls") if isinstance(message, dict) else None
    if isinstance(calls, list) and calls:
        return tool_message(message, calls)
    if "message" in choice:
        message = choice["message"]
        answer = message.get("content") if isinstance(message, dict) else None
    else:
        answer = choice.get("text")
    if type(answer) is not str:
        raise Refused("the choice has no string message.content or text")
    return answer


def tool_message(message, calls):
    """The committed answer of a chat answer that called tools (FORMATS.md §6): the
    canonical JSON of {"content", "tool_calls"}, each call reduced to id, type and
    function {name, arguments}."""
    content = message.get("content")
    if content is not None and type(content) is not str:
        raise Refused("the message's content is neither text nor null")
    reduced = []
    for call in calls:
        function = call.get("function") if isinstance(call, dict) else None
        fields = (call.get("id"), call.get("type")) if isinstance(call, dict) else (None, None)
        name = function.get("name") if isinstance(function, dict) else None
        arguments = function.get("arguments") if isinstance(function, dict) else None
        if not all(type(x) is str for x in (*fields, name, arguments)):
            raise Refused("a tool call lacks its id, type, function.name or function.arguments")
        reduced.append({"id": fields[0], "type": fields[1],
                        "function": {"name": name, "arguments": arguments}})
    # Strings, null and arrays only: sorted keys and minimal separators are RFC 8785 here.
    return json.dumps({"content": content, "tool_calls": reduced},
                      sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def receipt_json(v):
    """The receipt's members read (§7.1), nothing verified yet."""
    closed(v, "receipt", ("v", "log", "index", "leaf_hash", "body", "signature"), ("salts",))
    for name, kind in (("v", int), ("log", str), ("index", int), ("body", str), ("signature", str)):
        member(v, name, kind, "receipt")
    hex32(v["leaf_hash"], "receipt leaf_hash")
    if v.get("salts") is not None:
        closed(v["salts"], "salts", ("prompt", "response"))
        for side in ("prompt", "response"):
            hex32(v["salts"][side], "salt")
    return v


def verify_receipt(r, key):
    """The receipt body of a receipt valid under `key` (§7.1)."""
    if r["v"] != 1:
        raise Refused("unsupported bundle version")
    signature = b64(r["signature"], "signature", 64)
    body = r["body"].encode()
    if leaf_hash(body).hex() != r["leaf_hash"]:
        raise Refused("leaf hash given does not match the body")
    b = verify_entry(r["index"], body, signature, key)
    if b["kind"] != "receipt":
        raise Refused("entry is not a receipt")
    if b["log"] != r["log"]:
        raise Refused("the receipt's log is not the body's")
    return b


def parsed_checkpoint(v):
    """The checkpoint section and (origin, size, root) of its note, signature unchecked."""
    section = checkpoint_json(v)
    body, _ = split_note(section["note"])
    return section, parse_checkpoint_text(body)


def receipt_body_of(r):
    try:
        b = parse_body(r["body"].encode())
        return b if b["kind"] == "receipt" else None
    except Refused:
        return None


def inclusion_layer(section, r, cp):
    try:
        index, size, path = inclusion_section(section)
    except Refused as e:
        return "failed", str(e)
    if r is None:
        return "skipped", "the receipt is unreadable, so there is no leaf to prove"
    body = receipt_body_of(r)
    want = body["index"] if body else r["index"]
    if index != want or r["index"] != want:
        return "failed", f"proof is for index {index}, the receipt is index {want}"
    if cp is None or isinstance(cp, Refused):
        return "skipped", "no readable checkpoint gives the root to prove against"
    _, cp_size, root = cp[1]
    if size != cp_size:
        return "failed", f"proof is for tree size {size}, the checkpoint's size is {cp_size}"
    try:
        verify_inclusion(leaf_hash(r["body"].encode()), want, cp_size, path, root)
    except Refused as e:
        return "failed", str(e)
    return "ok", f"RFC 9162 path of {len(path)} hashes: leaf {want} in the tree of size {cp_size}"


def erasure_evidence(section, receipt, key, cp):
    """Why the erasure section shows (True) or does not show (False) an erasure (§7.3)."""
    if receipt is None or key is None:
        return False, "an erasure event needs a pinned key and a receipt whose signature verified"
    if cp is None:
        return False, "no verified checkpoint to prove the erasure event against"
    try:
        closed(section, "erasure", ("entry", "inclusion"))
        e = closed(section["entry"], "erasure entry", ("index", "leaf_hash", "body", "signature"))
        for name, kind in (("index", int), ("body", str), ("signature", str)):
            member(e, name, kind, "erasure entry")
        signature = b64(e["signature"], "erasure signature", 64)
        body = e["body"].encode()
        if leaf_hash(body) != hex32(e["leaf_hash"], "erasure leaf_hash"):
            raise Refused("the erasure event's leaf hash is not SHA-256(0x00 || body)")
        b = verify_entry(e["index"], body, signature, key)
        if b["kind"] != "erasure":
            raise Refused("the erasure section's entry is not an erasure event")
        index, leaf = receipt
        if b["erased"]["index"] != index or b["erased"]["leaf_hash"] != leaf.hex():
            raise Refused("the erasure event erases another entry")
        p_index, p_size, path = inclusion_section(section["inclusion"])
        if p_index != e["index"] or p_size != cp[1]:
            raise Refused("the erasure event's proof is not to the bundle's checkpoint")
        verify_inclusion(leaf_hash(body), e["index"], cp[1], path, cp[2])
    except Refused as err:
        return False, str(err)
    return True, f"erasure event {e['index']} signed by {key.name}, included in the checkpoint of size {cp[1]}"


def commitment_layer(bundle, r, receipt, key, cp, prompt, response):
    """The commitment layer's (status, detail), or None when it is not evaluated (§14.2)."""
    answer = bundle.get("answer")
    if prompt is None and response is None and answer is None and bundle.get("erasure") is None:
        return None
    if r is None:
        return "failed", "no readable receipt in the file"
    if answer is not None and response is not None and answer.encode() != response:
        return "failed", "the file's answer text and the --response content differ"
    erasure = None
    if bundle.get("erasure") is not None:
        erasure = erasure_evidence(bundle["erasure"], receipt, key, cp)
    if response is None and answer is not None:
        response = answer.encode()
    body = receipt_body_of(r)
    if body is None:
        return "failed", "receipt body is not a valid v1 receipt body"
    salts = r.get("salts")
    if salts is None:
        if erasure is None:
            return "failed", "salts absent and no signed erasure event shows the log erased this record"
        return ("erased", erasure[1]) if erasure[0] else ("failed", "salts absent: " + erasure[1])
    if erasure is not None:
        return "failed", "salts and an erasure event for the same record"
    wrong, opened = [], []
    for side, content in (("prompt", prompt), ("response", response)):
        if content is None:
            continue
        if side == "prompt":
            try:
                parse_json(content)
            except Refused as e:
                return "failed", f"the prompt file is refused: {e}"
        label = b"sworn/v1/" + side.encode()
        got = sha256(label, b"\x00", bytes.fromhex(salts[side]), content).hex()
        (opened if got == body[side]["commitment"] else wrong).append(side)
    if wrong:
        return "failed", " and ".join(wrong) + " do(es) not open the signed commitment"
    if not opened:
        return "skipped", "no content was disclosed"
    return "ok", " and ".join(opened) + " open(s) the signed commitment(s), byte for byte"


def verify_bundle(data, key, prompt=None, response=None, subject="receipt"):
    report = Report(subject)
    try:
        bundle = split_bundle(data)
    except Refused as e:
        report.set("bundle", True, "failed", str(e))
        return report
    try:
        r = receipt_json(bundle["receipt"])
    except Refused as e:
        r, r_error = None, e
    receipt = None  # (index, leaf hash) once the signature verified
    if key is None:
        report.set("signature", False, "skipped", "no --key: the receipt itself is not authenticated")
    elif r is None:
        report.set("signature", True, "failed", f"receipt is malformed: {r_error}")
    else:
        try:
            body = verify_receipt(r, key)
            receipt = (body["index"], leaf_hash(r["body"].encode()))
            report.fact("log index", body["index"])
            report.fact("request id", body["request_id"])
            report.set("signature", True, "ok", f"strict Ed25519 over the canonical v1 body by {key.name}")
        except Refused as e:
            report.set("signature", True, "failed", str(e))
    cp, verified_cp = None, None
    if key is not None:
        if bundle.get("checkpoint") is not None:
            try:
                cp = parsed_checkpoint(bundle["checkpoint"])
            except Refused as e:
                cp = e
        if bundle.get("inclusion") is None:
            report.set("inclusion", False, "skipped", "the bundle has no inclusion proof")
        else:
            report.set("inclusion", True, *inclusion_layer(bundle["inclusion"], r, cp))
        if cp is None:
            report.set("checkpoint", False, "skipped", "the bundle has no checkpoint")
        elif isinstance(cp, Refused):
            report.set("checkpoint", True, "failed", str(cp))
        else:
            try:
                verified_cp = verify_checkpoint(cp[0]["note"], key)
                wrong = disagreements(cp[0], verified_cp)
                if wrong:
                    verified_cp = None
                    raise Refused(f"the bundle's unsigned {wrong} disagree(s) with the signed note")
                report.set("checkpoint", True, "ok", f"note signed by {key.name}, size {verified_cp[1]}")
            except Refused as e:
                report.set("checkpoint", True, "failed", str(e))
        report.set("bundle", True, "ok", "sections: " + ", ".join(
            s for s in ("receipt", "inclusion", "checkpoint", "anchor", "erasure", "answer")
            if bundle.get(s) is not None))
    outcome = commitment_layer(bundle, r, receipt, key, verified_cp, prompt, response)
    if outcome:
        report.set("commitment", True, *outcome)
    if key is not None:
        offline_chain_layers(report)
    return report


# --- checkpoint (§13, §14.3) -----------------------------------------------------------

def state_file(state_dir, origin):
    return os.path.join(state_dir, sha256(origin.encode()).hex() + ".json")


def load_state(state_dir, origin):
    path = state_file(state_dir, origin)
    if not os.path.exists(path):
        return None
    with open(path, "rb") as f:
        data = f.read(64 * 1024 + 1)
    if len(data) > 64 * 1024:
        raise Refused(f"state file {path} is corrupt: too large")
    seen = closed(parse_json(data), "state", ("origin", "size", "root_hash", "note"))
    for name, kind in (("origin", str), ("size", int), ("root_hash", str), ("note", str)):
        member(seen, name, kind, "state")
    if seen["origin"] != origin:
        raise Refused(f"state file {path} is for origin {seen['origin']!r}")
    return seen


def consistency_layer(cp, seen, proof):
    _, size, root = cp
    if seen is None:
        return "skipped", "first checkpoint seen for this origin: remembered, nothing to compare"
    try:
        old_root = hex32(seen["root_hash"], "the state file's root")
    except Refused as e:
        return "failed", str(e)
    if size == seen["size"]:
        if root == old_root:
            return "ok", f"same size {size} and root as last seen"
        return "failed", f"equivocation: two different roots signed for size {size}"
    if size < seen["size"]:
        return "failed", f"rollback: size {size} is smaller than the size {seen['size']} already seen"
    if proof is None:
        return "skipped", f"a consistency proof from size {seen['size']} to {size} is needed"
    if proof["old_size"] != seen["size"] or proof["new_size"] != size:
        return "failed", "the proof is for other sizes"
    if proof.get("old_root_hash") not in (None, seen["root_hash"]) \
            or proof.get("new_root_hash") not in (None, root.hex()):
        return "failed", "the proof's stated roots are not the remembered and the signed roots"
    try:
        verify_consistency(seen["size"], size, old_root, root, hashes(proof, "consistency proof", 65))
    except Refused as e:
        return "failed", f"fork: not consistent with size {seen['size']} seen before: {e}"
    return "ok", f"RFC 9162 consistency from size {seen['size']} (last seen) to {size}"


def consistency_json(data):
    proof = closed(parse_json(data), "consistency proof", ("old_size", "new_size", "hashes"),
                   ("old_root_hash", "new_root_hash"))
    for name in ("old_size", "new_size"):
        member(proof, name, int, "consistency proof")
    member(proof, "hashes", list, "consistency proof")
    if not all(type(h) is str for h in proof["hashes"]):
        raise Refused("consistency proof hashes are not strings")
    for name in ("old_root_hash", "new_root_hash"):
        if proof.get(name) is not None:
            member(proof, name, str, "consistency proof")
    return proof


def check_checkpoint(data, key, state_dir, proof_data):
    report = Report("checkpoint")
    try:
        note = data.decode("utf-8")
    except UnicodeDecodeError:
        report.set("checkpoint", True, "failed", "the checkpoint is not UTF-8")
        return report
    section = None
    if note.lstrip().startswith("{"):
        try:
            section = checkpoint_json(parse_json(data))
        except Refused as e:
            report.set("checkpoint", True, "failed", f"checkpoint JSON is refused: {e}")
            return report
        note = section["note"]
    proof = None
    if proof_data is not None:
        try:
            proof = consistency_json(proof_data)
        except Refused as e:
            report.set("consistency", True, "failed", f"consistency proof is malformed: {e}")
            return report
    cp = None
    try:
        cp = verify_checkpoint(note, key)
    except Refused as e:
        report.set("checkpoint", True, "failed", str(e))
        report.set("consistency", True, "skipped", "the checkpoint did not verify")
    if cp is not None:
        report.fact("size", cp[1])
        report.set("checkpoint", True, "ok", f"note signed by {key.name}")
        seen = load_state(state_dir, cp[0])
        report.set("consistency", seen is not None, *consistency_layer(cp, seen, proof))
        if section is not None and disagreements(section, cp):
            report.set("checkpoint", True, "failed",
                       f"the JSON's unsigned {disagreements(section, cp)} disagree(s) with the signed note")
            cp = None
    offline_chain_layers(report)
    if cp is not None and report.exit_code() == EXIT_OK:
        seen = load_state(state_dir, cp[0])
        if seen is None or seen["size"] < cp[1]:
            os.makedirs(state_dir, exist_ok=True)
            tmp = state_file(state_dir, cp[0]) + ".tmp"
            with open(tmp, "w") as f:
                json.dump({"origin": cp[0], "size": cp[1], "root_hash": cp[2].hex(), "note": note}, f, indent=2)
            os.replace(tmp, state_file(state_dir, cp[0]))
        report.fact("remembered", f"size {cp[1]} as last accepted")
    return report


# --- the command line ------------------------------------------------------------------

def read(path, cap):
    if path == "-":
        data = sys.stdin.buffer.read(cap + 1)
    else:
        with open(path, "rb") as f:
            data = f.read(cap + 1)
    if len(data) > cap:
        raise Refused(f"{path}: larger than {cap} bytes")
    return data


def default_state_dir():
    if os.environ.get("XDG_STATE_HOME"):
        return os.path.join(os.environ["XDG_STATE_HOME"], "sworn-verify")
    if os.environ.get("HOME"):
        return os.path.join(os.environ["HOME"], ".local/state/sworn-verify")
    return ".sworn-verify"


def run(args):
    if args.command == "receipt":
        key = load_key(args.key)
        return verify_bundle(read(args.file, MAX_BUNDLE), key)
    if args.command == "content":
        key = load_key(args.key) if args.key else None
        data = read(args.receipt, MAX_BUNDLE)
        prompt, response = read(args.prompt, MAX_CONTENT), read(args.response, MAX_CONTENT)
        return verify_bundle(data, key, prompt, response, subject="content")
    if args.command == "checkpoint":
        key = load_key(args.key)
        data = read(args.file, MAX_BUNDLE)
        proof = read(args.consistency, MAX_BUNDLE) if args.consistency else None
        return check_checkpoint(data, key, args.state_dir or default_state_dir(), proof)
    from audit import audit_export
    key = load_key(args.key)
    if args.export == "-":
        return audit_export(sys.stdin.buffer, key)
    with open(args.export, "rb") as f:
        return audit_export(f, key)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="sworn_verify.py", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("receipt")
    p.add_argument("file")
    p.add_argument("--key", required=True)
    p = sub.add_parser("content")
    for flag in ("--receipt", "--prompt", "--response"):
        p.add_argument(flag, required=True)
    p.add_argument("--key")
    p = sub.add_parser("checkpoint")
    p.add_argument("file")
    p.add_argument("--key", required=True)
    p.add_argument("--consistency")
    p.add_argument("--state-dir")
    p = sub.add_parser("audit")
    p.add_argument("export")
    p.add_argument("--key", required=True)
    for p in sub.choices.values():
        p.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    try:
        report = run(args)
    except (Refused, OSError) as e:
        print(f"sworn_verify.py: {e}", file=sys.stderr)
        return EXIT_USAGE
    out = report.to_json()
    if args.json:
        print(json.dumps(out, indent=2, ensure_ascii=False))
    else:
        print(f"{out['subject']}: {out['verdict'].upper()} (exit {out['exit_code']})")
        for fact in out["facts"]:
            print(f"  {fact['label']}: {fact['value']}")
        for l in out["layers"]:
            print(f"  {l['layer']:<12} {l['status']:<8} {l['detail']}{'' if l['required'] else ' (not required)'}")
    return out["exit_code"]


if __name__ == "__main__":
    sys.exit(main())
