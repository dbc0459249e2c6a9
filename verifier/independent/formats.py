"""Sworn's formats, read strictly, as docs/FORMATS.md specifies them.

Every reader here either returns what it read or raises `Refused` with the reason. The
section numbers in the comments are those of docs/FORMATS.md.
"""

import base64
import binascii
import hashlib
import json
import re

import nacl.exceptions
import nacl.signing


class Refused(Exception):
    """Input a strict reader refuses; the message says why."""


# --- §1 I-JSON -------------------------------------------------------------------------

def _object(pairs):
    obj = {}
    for name, value in pairs:
        if name in obj:
            raise Refused(f"not I-JSON: duplicate member name {name!r}")
        obj[name] = value
    return obj


def _integer(text):
    # `-0` is not an integer spelling (§1.6): keep it a float, which no integer field takes.
    if text == "-0":
        return -0.0
    if len(text) > 300 and abs(float(text)) == float("inf"):
        raise Refused(f"not JSON: number {text[:20]}... is out of range")
    return int(text)


def _float(text):
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise Refused(f"not JSON: number {text} is out of range")
    return value


def _constant(name):
    raise Refused(f"not JSON: {name}")


_SURROGATE = re.compile("[\ud800-\udfff]")


def _no_lone_surrogates(value):
    """Refuses lone surrogates, and nesting past 127 arrays and objects (§1)."""
    stack = [(value, 0)]
    while stack:
        v, depth = stack.pop()
        if isinstance(v, str):
            if _SURROGATE.search(v):
                raise Refused("not I-JSON: lone surrogate")
        elif isinstance(v, (list, dict)):
            if depth == 127:
                raise Refused("not JSON: nested deeper than 127 levels")
            stack.extend((x, depth + 1) for x in v)
            if isinstance(v, dict):
                stack.extend((x, depth + 1) for x in v.values())


def parse_json(data):
    """One I-JSON document from bytes (§1)."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise Refused("not UTF-8") from None
    try:
        value = json.loads(text, object_pairs_hook=_object, parse_int=_integer,
                           parse_float=_float, parse_constant=_constant)
    except (ValueError, RecursionError) as e:
        raise Refused(f"not JSON: {e}") from None
    _no_lone_surrogates(value)
    return value


def is_int(v):
    return type(v) is int and 0 <= v < 2**64


def closed(v, what, required, optional=()):
    """`v` as a closed object with these members (§1.8); optional `null` means absent."""
    if not isinstance(v, dict):
        raise Refused(f"{what} is not an object")
    for name in v:
        if name not in required and name not in optional:
            raise Refused(f"{what} has an unknown member {name!r}")
    for name in required:
        if name not in v:
            raise Refused(f"{what} lacks {name!r}")
    return v


def member(v, name, kind, what):
    """`v[name]` checked to be an integer (`int`), a string (`str`) or a list (`list`)."""
    x = v.get(name)
    ok = is_int(x) if kind is int else type(x) is kind
    if not ok:
        raise Refused(f"{what}.{name} is not {'an integer' if kind is int else 'a ' + kind.__name__}")
    return x


# --- §2 encodings ----------------------------------------------------------------------

_HEX64 = re.compile(r"[0-9a-f]{64}\Z")


def hex32(text, what):
    if type(text) is not str or not _HEX64.match(text):
        raise Refused(f"{what} is not 64 lowercase hex characters")
    return bytes.fromhex(text)


def b64(text, what, length=None):
    if type(text) is not str:
        raise Refused(f"{what} is not a string")
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise Refused(f"{what} is not base64") from None
    if base64.b64encode(raw).decode() != text:
        raise Refused(f"{what} is not canonical padded base64")
    if length is not None and len(raw) != length:
        raise Refused(f"{what} is not base64 of {length} bytes")
    return raw


_DECIMAL = re.compile(r"(0|[1-9][0-9]*)\Z")


def sha256(*parts):
    return hashlib.sha256(b"".join(parts)).digest()


# --- §3 canonical JSON -----------------------------------------------------------------

MAX_SAFE = 2**53 - 1
_SHORT = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}


def _jcs_string(s):
    out = []
    for c in s:
        if c in _SHORT:
            out.append(_SHORT[c])
        elif ord(c) < 0x20:
            out.append(f"\\u{ord(c):04x}")
        else:
            out.append(c)
    return '"' + "".join(out) + '"'


def canonical(value, depth=0):
    """The RFC 8785 text of `value`, in Sworn's subset (§3)."""
    if depth > 32:
        raise Refused("nesting deeper than 32 levels")
    if value is None:
        return "null"
    if value is True or value is False:
        return "true" if value else "false"
    if type(value) is int:
        if abs(value) > MAX_SAFE:
            raise Refused(f"integer {value} is outside ±(2^53 - 1)")
        return str(value)
    if type(value) is float:
        raise Refused("floating-point numbers are not allowed")
    if type(value) is str:
        return _jcs_string(value)
    if type(value) is list:
        return "[" + ",".join(canonical(v, depth + 1) for v in value) + "]"
    members = sorted(value.items(), key=lambda kv: kv[0].encode("utf-16-be"))
    return "{" + ",".join(_jcs_string(k) + ":" + canonical(v, depth + 1) for k, v in members) + "}"


def parse_canonical(data):
    if len(data) > 64 * 1024:
        raise Refused("body over 64 KiB")
    value = parse_json(data)
    if canonical(value).encode() != data:
        raise Refused("body is not in RFC 8785 canonical form")
    return value


# --- §4 entry bodies -------------------------------------------------------------------

_TIME = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})\.[0-9]{6}Z\Z")
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}\Z")
_WHITESPACE = set("\t\n\x0b\x0c\r \x85\xa0\u1680\u2028\u2029\u202f\u205f\u3000") | {
    chr(c) for c in range(0x2000, 0x200B)}


def is_control(c):
    return ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F


def valid_key_name(name):
    return (type(name) is str and 0 < len(name.encode()) <= 256
            and not any(c in _WHITESPACE or c == "+" or is_control(c) for c in name))


def valid_time(t):
    m = type(t) is str and _TIME.match(t)
    if not m:
        return False
    y, mo, d, h, mi, s = map(int, m.groups())
    leap = y % 4 == 0 and (y % 100 != 0 or y % 400 == 0)
    days = [31, 29 if leap else 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31]
    return 1 <= mo <= 12 and 1 <= d <= days[mo - 1] and h < 24 and mi < 60 and s < 60


def text(v, what, empty_ok=False):
    if type(v) is not str or len(v.encode()) > 256 or (not v and not empty_ok) \
            or any(is_control(c) for c in v):
        raise Refused(f"body field {what} is not valid text")


def _common(b, what):
    if b["v"] != 1 or type(b["v"]) is not int:
        raise Refused(f"{what}: unsupported version")
    if not valid_key_name(b["log"]):
        raise Refused(f"{what}: log is not a valid origin")
    member(b, "index", int, what)
    if not valid_time(b["time"]):
        raise Refused(f"{what}: time is not YYYY-MM-DDTHH:MM:SS.ffffffZ")


def _receipt_body(b):
    closed(b, "receipt body", ("v", "kind", "log", "index", "time", "request_id", "tenant",
                               "model", "params", "prompt", "response"))
    _common(b, "receipt body")
    if type(b["request_id"]) is not str or not _REQUEST_ID.match(b["request_id"]):
        raise Refused("receipt body: request_id is not 1-128 of [A-Za-z0-9._:-]")
    text(b["tenant"], "tenant")
    m = closed(b["model"], "model", ("id", "sha256", "dtype", "device", "engine", "libtorch"))
    for name in ("id", "dtype", "device", "engine", "libtorch"):
        text(m[name], "model." + name, empty_ok=name == "libtorch")
    hex32(m["sha256"], "model.sha256")
    params = b["params"]
    if not isinstance(params, dict) or len(params) > 64:
        raise Refused("receipt body: params is not an object of at most 64 members")
    for name, value in params.items():
        if not name or len(name.encode()) > 64 or any(is_control(c) for c in name):
            raise Refused("receipt body: bad parameter name")
        if type(value) is str:
            text(value, "params", empty_ok=True)
        elif type(value) not in (int, bool):
            raise Refused("receipt body: a parameter is not an integer, boolean or string")
    p = closed(b["prompt"], "prompt", ("commitment", "tokens"))
    r = closed(b["response"], "response", ("commitment", "tokens", "finish_reason"))
    for side, what in ((p, "prompt"), (r, "response")):
        hex32(side["commitment"], what + ".commitment")
        member(side, "tokens", int, what)
    text(r["finish_reason"], "response.finish_reason")


def _erasure_body(b):
    closed(b, "erasure body", ("v", "kind", "log", "index", "time", "erased"))
    _common(b, "erasure body")
    e = closed(b["erased"], "erased", ("index", "leaf_hash"))
    member(e, "index", int, "erased")
    hex32(e["leaf_hash"], "erased.leaf_hash")
    if e["index"] >= b["index"]:
        raise Refused("erasure body: erased.index is not before the event")


def parse_body(data):
    """A canonical, valid v1 body of either kind (§4.1, §4.2)."""
    b = parse_canonical(data)
    kind = b.get("kind") if isinstance(b, dict) else None
    if kind == "receipt":
        _receipt_body(b)
    elif kind == "erasure":
        _erasure_body(b)
    else:
        raise Refused('body kind is not "receipt" or "erasure"')
    return b


def leaf_hash(body):
    return sha256(b"\x00", body)


def verify_entry(index, body, signature, key):
    """The parsed body of an entry valid under `key` at `index` (§4.3)."""
    b = parse_body(body)
    if b["index"] != index:
        raise Refused(f"body says index {b['index']}, presented as index {index}")
    if b["log"] != key.name:
        raise Refused(f"body names log {b['log']!r}, the pinned origin is {key.name!r}")
    if not key.verify(body, signature):
        raise Refused("signature does not verify under the pinned key (strict Ed25519)")
    return b


# --- §5 Ed25519, strict; §8 keys -------------------------------------------------------

_L = 2**252 + 27742317777372353535851937790883648493
_P = 2**255 - 19
_D = -121665 * pow(121666, _P - 2, _P) % _P
# Encodings of the small-order points, sign bit cleared (y = 0, 1, p - 1, the two order-8
# y values, and the non-canonical p and p + 1).
_SMALL_ORDER = {bytes.fromhex(h) for h in (
    "00" * 32, "01" + "00" * 31, "ec" + "ff" * 30 + "7f",
    "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",
    "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",
    "ed" + "ff" * 30 + "7f", "ee" + "ff" * 30 + "7f")}


def _small_order(point):
    return point[:31] + bytes([point[31] & 0x7F]) in _SMALL_ORDER


def _is_point(point):
    y = int.from_bytes(point, "little") & ((1 << 255) - 1)
    if y >= _P:  # non-canonical: refused here (see README, "gaps")
        return False
    x2 = (y * y - 1) * pow(_D * y * y + 1, _P - 2, _P) % _P
    return x2 == 0 or pow(x2, (_P - 1) // 2, _P) == 1


def key_id(name, public_key):
    return sha256(name.encode(), b"\n\x01", public_key)[:4]


class PinnedKey:
    def __init__(self, name, public_key):
        if not valid_key_name(name):
            raise Refused(f"{name!r} is not a valid key name")
        if len(public_key) != 32 or not _is_point(public_key) or _small_order(public_key):
            raise Refused("public key is invalid or of small order")
        self.name, self.public_key = name, public_key
        self.key_id = key_id(name, public_key)
        self._nacl = nacl.signing.VerifyKey(public_key)

    def verify(self, message, signature):
        """Strict Ed25519 (§5): S < l and R not of small order are checked here; libsodium
        checks them again and solves the cofactorless equation."""
        if len(signature) != 64 or int.from_bytes(signature[32:], "little") >= _L \
                or _small_order(signature[:32]):
            return False
        try:
            self._nacl.verify(message, signature)
            return True
        except nacl.exceptions.BadSignatureError:
            return False


def parse_vkey(vkey):
    """A C2SP verifier key string, `name+keyid+base64(0x01 || key)` (§8)."""
    if len(vkey.encode()) > 320:
        raise Refused("verifier key is too long")
    parts = vkey.split("+", 2)
    if len(parts) != 3:
        raise Refused("verifier key is not name+keyid+key")
    typed = b64(parts[2], "verifier key")
    if len(typed) != 33 or typed[0] != 1:
        raise Refused("verifier key is not 0x01 followed by 32 bytes")
    key = PinnedKey(parts[0], typed[1:])
    if parts[1] != key.key_id.hex():
        raise Refused("verifier key id does not match name and key")
    return key


def load_key(arg):
    """The pinned key from a vkey string, or a file holding one or /v1/audit/key JSON."""
    try:
        return parse_vkey(arg.strip())
    except Refused:
        pass
    try:
        with open(arg, "rb") as f:
            data = f.read(4097)
    except OSError as e:
        raise Refused(f"key file {arg}: {e.strerror}") from None
    if len(data) > 4096:
        raise Refused(f"key file {arg} is larger than any key file")
    try:
        doc = parse_json(data)
    except Refused:
        return parse_vkey(data.decode("utf-8", "replace").strip())
    if not isinstance(doc, dict) or type(doc.get("vkey")) is not str:
        raise Refused("key JSON without a `vkey` string")
    return parse_vkey(doc["vkey"])


# --- §9 checkpoints --------------------------------------------------------------------

def split_note(note):
    """A signed note's text and signature lines `(name, key id, signature)` (§9.1)."""
    if len(note.encode()) > 16 * 1024:
        raise Refused("note over 16 KiB")
    if any(is_control(c) and c != "\n" for c in note):
        raise Refused("note contains a control character")
    split = note.rfind("\n\n")
    if split < 0 or not note.endswith("\n") or split + 2 >= len(note):
        raise Refused("note has no signature block")
    lines = note[split + 2:-1].split("\n")
    if len(lines) > 64:
        raise Refused("note has more than 64 signatures")
    signatures = []
    for line in lines:
        name, _, blob = line.removeprefix("\u2014 ").partition(" ")
        if not line.startswith("\u2014 ") or not valid_key_name(name):
            raise Refused("a note signature line is malformed")
        raw = b64(blob, "note signature")
        if len(raw) < 5:
            raise Refused("a note signature line is malformed")
        signatures.append((name, raw[:4], raw[4:]))
    return note[:split + 1], signatures


def parse_checkpoint_text(text):
    """(origin, size, root) of a checkpoint's signed text: three lines, no more (§9.2)."""
    lines = text[:-1].split("\n")
    if len(lines) < 3 or not lines[0]:
        raise Refused("checkpoint text must have origin, size and root lines")
    if len(lines) > 3:
        raise Refused(f"checkpoint has {len(lines) - 3} extension line(s); Sworn checkpoints have none")
    if not _DECIMAL.match(lines[1]) or int(lines[1]) >= 2**64:
        raise Refused(f"checkpoint size {lines[1]!r} is not a decimal number")
    return lines[0], int(lines[1]), b64(lines[2], "checkpoint root", 32)


def verify_checkpoint(note, key):
    """(origin, size, root) of a note signed by the pinned key for its origin (§9)."""
    body, signatures = split_note(note)
    verified = False
    for name, kid, sig in signatures:
        if name == key.name and kid == key.key_id:
            if not key.verify(body.encode(), sig):
                raise Refused("the pinned key's note signature does not verify")
            verified = True
    if not verified:
        raise Refused(f"no signature from the pinned key {key.name}")
    cp = parse_checkpoint_text(body)
    if cp[0] != key.name:
        raise Refused(f"checkpoint origin {cp[0]!r} is not the pinned {key.name!r}")
    return cp


def checkpoint_json(v):
    """The checkpoint JSON of §9.3: the note and its unsigned copies."""
    closed(v, "checkpoint", ("note",), ("size", "root_hash", "origin"))
    member(v, "note", str, "checkpoint")
    for name, kind in (("size", int), ("root_hash", str), ("origin", str)):
        if v.get(name) is not None:
            member(v, name, kind, "checkpoint")
    return v


def disagreements(section, cp):
    origin, size, root = cp
    wrong = [n for n, want in (("size", size), ("root_hash", root.hex()), ("origin", origin))
             if section.get(n) is not None and section[n] != want]
    return ", ".join(wrong)


# --- §10 proofs ------------------------------------------------------------------------

def node(left, right):
    return sha256(b"\x01", left, right)


def hashes(v, what, cap):
    path = member(v, "hashes", list, what)
    if len(path) > cap:
        raise Refused(f"{what} has {len(path)} elements, more than {cap}")
    return [hex32(h, f"{what} element {i}") for i, h in enumerate(path)]


def inclusion_section(v):
    closed(v, "inclusion proof", ("index", "tree_size", "hashes"))
    return (member(v, "index", int, "inclusion"), member(v, "tree_size", int, "inclusion"),
            hashes(v, "inclusion proof", 64))


def verify_inclusion(leaf, index, size, path, root):
    """RFC 9162 §2.1.3.2."""
    if index >= size:
        raise Refused(f"leaf index {index} is not below tree size {size}")
    fn, sn, r = index, size - 1, leaf
    for p in path:
        if sn == 0:
            raise Refused("the proof has more elements than the tree allows")
        if fn & 1 or fn == sn:
            r = node(p, r)
            while not fn & 1 and fn:
                fn, sn = fn >> 1, sn >> 1
        else:
            r = node(r, p)
        fn, sn = fn >> 1, sn >> 1
    if sn != 0:
        raise Refused("the proof is truncated")
    if r != root:
        raise Refused("the recomputed root is not the checkpoint's root")


def verify_consistency(m, n, old_root, new_root, path):
    """RFC 9162 §2.1.4.2 and the trivial cases around it (§10.2)."""
    if m > n:
        raise Refused("old size is larger than new size")
    if m == n:
        if path or old_root != new_root or (m == 0 and old_root != sha256()):
            raise Refused("equal sizes need an empty proof and equal roots")
        return
    if m == 0 or not path:
        raise Refused("consistency from the empty tree, or an empty proof, proves nothing")
    if m & (m - 1) == 0:
        path = [old_root] + path
    fn, sn = m - 1, n - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise Refused("the proof has more elements than the trees allow")
        if fn & 1 or fn == sn:
            fr, sr = node(c, fr), node(c, sr)
            while not fn & 1 and fn:
                fn, sn = fn >> 1, sn >> 1
        else:
            sr = node(sr, c)
        fn, sn = fn >> 1, sn >> 1
    if sn != 0 or fr != old_root or sr != new_root:
        raise Refused("the proof does not lead from the old root to the new one")
