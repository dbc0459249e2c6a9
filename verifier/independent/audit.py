"""Whole-log audit of a `sworn-log-export` v1 file (docs/FORMATS.md §11).

Every finding is kept with its line and index; the `log` layer is ok only with none.
Unlike sworn-verify this keeps the leaves and request ids in memory: it is a reference,
not a tool for logs of a billion entries.
"""

from formats import (Refused, b64, closed, leaf_hash, member, node, parse_json, sha256,
                     verify_checkpoint, verify_entry)

MAX_LINE = 160 * 1024
LINE_MEMBERS = {
    "header": {"format": str, "version": int, "origin": str, "public_key": str, "size": int},
    "entry": {"index": int, "body": str, "signature": str},
    "checkpoint": {"size": int, "note": str},
    "end": {"size": int, "checkpoints": int},
}


def read_line(raw):
    """One export line as (type, members), or Refused."""
    line = parse_json(raw)
    kind = line.get("type") if isinstance(line, dict) else None
    if type(kind) is not str or kind not in LINE_MEMBERS:
        raise Refused("not an export line (unknown or missing `type`)")
    closed(line, f"{kind} line", ("type", *LINE_MEMBERS[kind]))
    for name, t in LINE_MEMBERS[kind].items():
        member(line, name, t, f"{kind} line")
    return kind, line


def root(leaves):
    """RFC 9162 root of `leaves` (a list of leaf hashes), from the bottom up."""
    level = list(leaves)
    if not level:
        return sha256()
    while len(level) > 1:
        paired = [node(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        level = paired + ([level[-1]] if len(level) % 2 else [])
    return level[0]


class Audit:
    def __init__(self, key):
        self.key = key
        self.findings = []
        self.leaves = []  # leaf hashes in stream order
        self.seen = set()
        self.next = 0
        self.request_ids = {}
        self.erasure_events, self.erased = set(), set()
        self.declared = None
        self.last_checkpoint = None
        self.checkpoints = 0
        self.ended = False

    def find(self, kind, line, index, detail):
        self.findings.append({"layer": "log", "kind": kind, "line": line, "index": index, "detail": detail})

    def header(self, n, h):
        if n != 1 or self.declared is not None:
            return self.find("misplaced-header", n, None, "header is not the first line")
        if h["format"] != "sworn-log-export" or h["version"] != 1:
            self.find("unsupported-format", n, None, f"{h['format']} v{h['version']}")
        if h["origin"] != self.key.name:
            self.find("wrong-origin", n, None, f"export is of log {h['origin']!r}")
        self.declared = h["size"]

    def entry(self, n, e):
        i = e["index"]
        if i in self.seen:
            self.find("duplicate-index", n, i, f"entry {i} appears a second time")
        elif i > self.next:
            self.find("gap", n, i, f"entry {i} came where entry {self.next} was due")
        elif i < self.next:
            self.find("reordered", n, i, f"entry {i} comes after entry {self.next - 1}")
        self.seen.add(i)
        self.next = max(self.next, i + 1)
        body = e["body"].encode()
        try:
            b = verify_entry(i, body, b64(e["signature"], "signature", 64), self.key)
        except Refused as err:
            b = None
            self.find("bad-entry", n, i, str(err))
        if b is not None and b["kind"] == "receipt":
            first = self.request_ids.setdefault(b["request_id"], i)
            if first != i:
                self.find("duplicate-request-id", n, i, f"entry {i} repeats the request id of entry {first}")
        elif b is not None:
            target = b["erased"]["index"]
            if target >= len(self.leaves) or self.leaves[target].hex() != b["erased"]["leaf_hash"]:
                self.find("bad-erasure", n, i, f"erasure names entry {target} with a leaf hash not that entry's")
            elif target in self.erasure_events:
                self.find("bad-erasure", n, i, f"erasure names entry {target}, itself an erasure event")
            elif target in self.erased:
                self.find("bad-erasure", n, i, f"entry {target} is erased a second time")
            self.erased.add(target)
            self.erasure_events.add(i)
        self.leaves.append(leaf_hash(body))

    def checkpoint(self, n, c):
        size, here = c["size"], len(self.leaves)
        self.checkpoints += 1
        if size != here:
            self.find("misplaced-checkpoint", n, size, f"checkpoint of size {size} placed after {here} entries")
        if self.last_checkpoint is not None and self.last_checkpoint >= size:
            self.find("checkpoint-order", n, size, "checkpoint sizes must increase")
        self.last_checkpoint = size if self.last_checkpoint is None else max(self.last_checkpoint, size)
        try:
            _, signed_size, signed_root = verify_checkpoint(c["note"], self.key)
        except Refused as err:
            return self.find("bad-checkpoint", n, size, str(err))
        if signed_size != size:
            self.find("checkpoint-size", n, size, f"the signed note says size {signed_size}")
        elif size == here and signed_root != root(self.leaves):
            self.find("checkpoint-root", n, size, "signed root is not the recomputed root")

    def end(self, n, e):
        if self.declared != e["size"] or e["size"] != len(self.leaves):
            self.find("end-size", n, None, f"end line says {e['size']} entries; read {len(self.leaves)}")
        if e["checkpoints"] != self.checkpoints:
            self.find("end-checkpoints", n, None, f"end line says {e['checkpoints']} checkpoints")
        self.ended = True

    def line(self, n, raw):
        try:
            kind, line = read_line(raw)
        except Refused as err:
            return self.find("bad-line", n, None, str(err))
        if self.ended:
            return self.find("after-end", n, None, "data after the end line")
        if self.declared is None and kind != "header":
            self.find("no-header", n, None, "the first line must be the header")
            self.declared = 0
        getattr(self, kind)(n, line)

    def finish(self):
        if not self.ended:
            self.find("truncated", None, None, "the export has no end line")
        due = 0
        for i in sorted(self.seen):
            if i > due:
                self.find("missing", None, due, f"entries {due}..{i - 1} never appear: dropped")
            due = i + 1


def audit_export(stream, key):
    from sworn_verify import Report, offline_chain_layers
    audit = Audit(key)
    n = 0
    while True:
        raw = stream.readline(MAX_LINE + 2)
        if not raw:
            break
        n += 1
        if len(raw) - raw.endswith(b"\n") > MAX_LINE:
            audit.find("unreadable", n, None, f"line {n} is longer than {MAX_LINE} bytes")
            break
        if not raw.endswith(b"\n"):
            audit.find("bad-line", n, None, "last line has no newline")
            break
        audit.line(n, raw[:-1])
    audit.finish()
    report = Report("log")
    report.fact("entries", len(audit.leaves))
    report.fact("root", root(audit.leaves).hex())
    if audit.findings:
        report.set("log", True, "failed", f"{len(audit.findings)} finding(s) in the entries and checkpoints")
    else:
        report.set("log", True, "ok", f"{len(audit.leaves)} entries recomputed in order, every signature "
                   f"strict, request ids unique, {audit.checkpoints} checkpoint(s) reproduced")
    offline_chain_layers(report)
    report.findings = audit.findings
    return report
