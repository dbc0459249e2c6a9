#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets (fuzz/corpus/<target>/) from the
repository's own fixtures and test vectors: valid inputs (and a few named corruptions)
for the fuzzer to mutate. Run from anywhere; rerun after the fixtures change.

Kept small on purpose (well under 2 MB in all, no model weights): the fuzzer finds the
rest. The 512 KiB oversize bundle and 170 KiB over-cap export line are left out.
"""

import glob
import hashlib
import json
import os
import shutil
import struct

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
CORPUS = os.path.join(ROOT, "fuzz", "corpus")
FIXTURES = os.path.join(ROOT, "service", "tests", "fixtures")
VECTORS = os.path.join(ROOT, "verifier", "tests", "vectors")
LEDGER_VECTORS = os.path.join(ROOT, "ledger", "tests", "vectors")
# Seeds larger than this are left out (libFuzzer's max_len follows the largest seed).
MAX_SEED_BYTES = 64 * 1024


def put(target, data, name=None):
    if isinstance(data, str):
        data = data.encode()
    if len(data) > MAX_SEED_BYTES:
        return
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    name = name or hashlib.sha1(data).hexdigest()[:16]
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def read(path):
    with open(path, "rb") as f:
        return f.read()


# --- GGUF ----------------------------------------------------------------------------
def gguf_string(s):
    b = s.encode()
    return struct.pack("<Q", len(b)) + b


def gguf_value(tag, v):
    if tag == 4:  # u32
        return struct.pack("<I", v)
    if tag == 5:  # i32
        return struct.pack("<i", v)
    if tag == 6:  # f32
        return struct.pack("<f", v)
    if tag == 7:  # bool
        return struct.pack("<B", 1 if v else 0)
    if tag == 8:  # string
        return gguf_string(v)
    if tag == 9:  # array: (element tag, items)
        etag, items = v
        return struct.pack("<IQ", etag, len(items)) + b"".join(gguf_value(etag, i) for i in items)
    raise ValueError(tag)


def gguf(metadata, tensors, alignment=32):
    """A GGUF v3 file: metadata [(key, tag, value)], tensors [(name, shape, type, bytes)]."""
    out = b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(metadata))
    for key, tag, value in metadata:
        out += gguf_string(key) + struct.pack("<I", tag) + gguf_value(tag, value)
    offset = 0
    for name, shape, ggml_type, data in tensors:
        out += gguf_string(name) + struct.pack("<I", len(shape))
        out += b"".join(struct.pack("<Q", d) for d in shape)
        out += struct.pack("<IQ", ggml_type, offset)
        offset += len(data) + (-len(data)) % alignment
    out += b"\0" * ((-len(out)) % alignment)
    for _, _, _, data in tensors:
        out += data + b"\0" * ((-len(data)) % alignment)
    return out


def gguf_seeds():
    chat = json.loads(read(os.path.join(FIXTURES, "tokenizer", "smollm2_chat.json")))
    template = chat["template"]
    tensors = [
        ("f32", [4], 0, struct.pack("<4f", 1.0, -2.0, 0.5, 3.25)),
        ("f16", [8], 1, struct.pack("<8e", *[0.5 * i for i in range(8)])),
        ("q8_0", [32], 8, struct.pack("<e", 0.25) + bytes(range(32))),
        ("q4_1", [32, 2], 3, (struct.pack("<ee", 0.1, -1.0) + bytes(range(16))) * 2),
    ]
    # Byte-level (gpt2) vocabulary from the fixture tokenizer.json.
    tj = json.loads(read(os.path.join(FIXTURES, "tokenizer", "tiny_bytelevel.json")))
    vocab = sorted(tj["model"]["vocab"].items(), key=lambda kv: kv[1])
    tokens = [t for t, _ in vocab]
    types = [3 if t.startswith("<|") else 1 for t in tokens]
    merges = [" ".join(m) if isinstance(m, list) else m for m in tj["model"]["merges"]]
    meta = [
        ("general.architecture", 8, "llama"),
        ("general.alignment", 4, 32),
        ("tokenizer.ggml.model", 8, "gpt2"),
        ("tokenizer.ggml.pre", 8, "smollm"),
        ("tokenizer.ggml.tokens", 9, (8, tokens)),
        ("tokenizer.ggml.token_type", 9, (5, types)),
        ("tokenizer.ggml.merges", 9, (8, merges)),
        ("tokenizer.ggml.bos_token_id", 4, 0),
        ("tokenizer.ggml.eos_token_id", 4, 1),
        ("tokenizer.chat_template", 8, template),
    ]
    put("gguf", gguf(meta, tensors), "bytelevel-tokenizer-and-template.gguf")
    # SentencePiece (llama) vocabulary with scores, no merges.
    sj = json.loads(read(os.path.join(FIXTURES, "tokenizer", "tiny_spm.json")))
    vocab = sorted(sj["model"]["vocab"].items(), key=lambda kv: kv[1])
    tokens = [t for t, _ in vocab]
    types = [3 if t in ("<unk>", "<s>", "</s>") else 6 if t.startswith("<0x") else 1 for t in tokens]
    meta = [
        ("general.architecture", 8, "llama"),
        ("tokenizer.ggml.model", 8, "llama"),
        ("tokenizer.ggml.tokens", 9, (8, tokens)),
        ("tokenizer.ggml.scores", 9, (6, [-float(i) for i in range(len(tokens))])),
        ("tokenizer.ggml.token_type", 9, (5, types)),
        ("tokenizer.ggml.bos_token_id", 4, 1),
        ("tokenizer.ggml.eos_token_id", 4, 2),
        ("tokenizer.ggml.add_bos_token", 7, True),
    ]
    put("gguf", gguf(meta, tensors[:2]), "spm-tokenizer.gguf")
    put("gguf", gguf([("general.alignment", 4, 64)], tensors), "tensors-only.gguf")
    put("gguf", gguf([], []), "empty.gguf")
    put("gguf", read(os.path.join(FIXTURES, "quant", "quant_goldens.gguf")), "quant_goldens.gguf")


# --- tokenizers and templates ----------------------------------------------------------
TEMPLATES = {
    "chatml": "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}",
    "llama3": "{{ bos_token }}{% for message in messages %}{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ message['content'] | trim + '<|eot_id|>' %}{{ content }}{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}",
    "llama2-raise": "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% set system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}{% set system_message = false %}{% endif %}{% for message in loop_messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if loop.index0 == 0 and system_message != false %}{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}{% else %}{% set content = message['content'] %}{% endif %}{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}",
    "strftime-loopcontrols": "{{ strftime_now('%d %b %Y %H:%M %j %%') }}{% for m in messages %}{% if m.role == 'system' %}{% continue %}{% endif %}{{ m.content.upper() }}{% if loop.last %}{% break %}{% endif %}{% endfor %}{{ messages | length }}{{ tools is none }}",
    "macro-namespace": "{% macro turn(m) %}[{{ m.role|upper }}] {{ m.content|replace('\\n', ' ') }}{% endmacro %}{% set ns = namespace(n=0) %}{% for m in messages %}{{ turn(m) }}{% set ns.n = ns.n + 1 %}{% endfor %}{{ ns.n }}{{ messages[-1].content.split(' ')|join(',') }}",
}


def text_seeds():
    for name in ("tiny_bytelevel", "tiny_spm"):
        put("tokenizer_json", read(os.path.join(FIXTURES, "tokenizer", name + ".json")), name + ".json")
    put("tokenizer_json", read(os.path.join(FIXTURES, "model", "tiny-llama", "tokenizer.json")), "tiny-llama.json")
    goldens = json.loads(read(os.path.join(FIXTURES, "tokenizer", "tiny_goldens.json")))
    seen = set()
    for cases in goldens.values():
        for case in cases[::6]:
            if case["text"] not in seen:
                seen.add(case["text"])
                put("tokenizer_encode", case["text"])
    chat = json.loads(read(os.path.join(FIXTURES, "tokenizer", "smollm2_chat.json")))
    put("chat_template", chat["template"], "smollm2")
    for name, t in TEMPLATES.items():
        put("chat_template", t, name)
    put("chat_template", TEMPLATES["chatml"] + "\0Hello!\0Hi there.\0What is 2+2?", "chatml-conversation")
    config = {"bos_token": {"content": "<s>"}, "eos_token": "</s>",
              "chat_template": [{"name": "default", "template": TEMPLATES["chatml"]},
                                {"name": "tool_use", "template": "{{ tools }}"}]}
    put("chat_template", json.dumps(config), "tokenizer_config.json")


REQUESTS = [
    {"model": "sworn-fuzz", "messages": [{"role": "user", "content": "What is 2+2?"}]},
    {"model": "sworn-fuzz", "messages": [{"role": "system", "content": "Be brief."},
                                         {"role": "user", "content": [{"type": "text", "text": "Hi"}]},
                                         {"role": "assistant", "content": "Hello"},
                                         {"role": "developer", "content": "x"}],
     "max_tokens": 16, "temperature": 0.7, "top_p": 0.9, "top_k": 40, "seed": -7,
     "stop": ["\n\n", "END"], "stream": True, "stream_options": {"include_usage": True},
     "n": 1, "response_format": {"type": "text"}, "user": "u"},
    {"model": "sworn-fuzz", "messages": [{"role": "user", "content": "x"}], "max_completion_tokens": 4096,
     "frequency_penalty": 0, "presence_penalty": 0.0, "logprobs": False},
    {"model": "sworn-fuzz", "prompt": "Once upon a time", "max_tokens": 8, "temperature": 0,
     "stop": "\n", "seed": 9223372036854775807, "echo": False, "best_of": 1},
    {"model": "sworn-fuzz", "prompt": ["one prompt"], "stream": False},
    {"model": "other", "prompt": [1, 2, 3], "suffix": "x", "logit_bias": {"50256": -100}},
    {"model": "sworn-fuzz", "messages": [{"role": "user", "content": "a", "name": "n"}],
     "tools": [{"type": "function", "function": {"name": "f"}}], "temperature": 2.0000001},
]


def request_seeds():
    for r in REQUESTS:
        put("request_body", json.dumps(r))
    put("request_body", '{"model":"sworn-fuzz","messages":[{"role":"user","content":"a","content":"b"}]}', "duplicate-member")


# --- ledger and verifier ---------------------------------------------------------------
def ledger_seeds():
    jcs = json.loads(read(os.path.join(LEDGER_VECTORS, "jcs.json")))
    for group in ("happy", "not_canonical", "refused"):
        for case in jcs[group]:
            put("ijson", case["input"])
            if "canonical" in case:
                put("ijson", case["canonical"])
    put("ijson", '{"a":[1,-2,3.5e10,true,null,"\\ud83d\\ude00"],"b":{"c":{}}}')
    put("ijson", '{"receipt":{},"receipt":{}}')
    receipts = json.loads(read(os.path.join(LEDGER_VECTORS, "receipts.json")))
    for entry in receipts["happy"][:4]:
        put("receipt_body", entry["body"])
        put("receipt_body", json.dumps(entry.get("bundle", entry), separators=(",", ":")))
    for c in receipts["corruptions"][:8]:
        put("receipt_body", json.dumps(c.get("bundle", c), separators=(",", ":")))
    checkpoints = json.loads(read(os.path.join(LEDGER_VECTORS, "checkpoints.json")))
    put("checkpoint_note", checkpoints["happy"]["note"])
    put("checkpoint_note", checkpoints["cosigned"])
    text = checkpoints["happy"]["note"].split("\n\n")[0] + "\n"
    put("checkpoint_note", text, "checkpoint-text")
    for c in checkpoints["corruptions"]:
        put("checkpoint_note", c["note"])
    for path in sorted(glob.glob(os.path.join(VECTORS, "*.checkpoint.json"))):
        doc = json.loads(read(path))
        for v in doc.values():
            if isinstance(v, str) and v:
                put("checkpoint_note", v)
    # merkle_proofs reads arbitrary-derived structures: a few byte strings suffice.
    for i, seed in enumerate([b"", b"\0" * 16, bytes(range(64)), b"\1" + bytes(range(255, 0, -3))]):
        put("merkle_proofs", seed, "seed-%d" % i)


def verifier_seeds():
    for path in sorted(glob.glob(os.path.join(VECTORS, "*.bundle.json"))):
        put("receipt_bundle", read(path), os.path.basename(path))
    material = json.loads(read(os.path.join(VECTORS, "material.json")))
    put("receipt_bundle", json.dumps(material["bundle"]), "material-bundle.json")
    for path in sorted(glob.glob(os.path.join(VECTORS, "*.ndjson"))):
        put("export_lines", read(path), os.path.basename(path))


def main():
    shutil.rmtree(CORPUS, ignore_errors=True)
    gguf_seeds()
    text_seeds()
    request_seeds()
    ledger_seeds()
    verifier_seeds()
    total = 0
    for target in sorted(os.listdir(CORPUS)):
        files = os.listdir(os.path.join(CORPUS, target))
        size = sum(os.path.getsize(os.path.join(CORPUS, target, f)) for f in files)
        total += size
        print("%-18s %4d seeds %8d bytes" % (target, len(files), size))
    print("%-18s %4s       %8d bytes" % ("total", "", total))


if __name__ == "__main__":
    main()
