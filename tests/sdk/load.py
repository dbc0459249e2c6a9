"""Load through the official `openai` Python SDK, unmodified, against a running `sworn serve`
or a load balancer in front of several (tests/tests/multi_instance.rs starts them and runs
this script).

N chat requests, CONCURRENCY at a time, each with its own prompt; with MODE `mixed` every
other one is streamed (its receipt arrives in the last data event before `[DONE]`). The SDK
does not retry (`max_retries=0`): this script retries as a real client would, on what a
client sees when an instance dies under it — a connection error, a 502/503/504 from the
balancer, a stream cut before its receipt — and counts every retry. Any other error (a 4xx,
a malformed answer) fails the run.

For every answer it checks the receipt against what the client holds: the receipt's request
id is the `x-request-id` header; the leaf hash is SHA-256(0x00 ‖ body); the prompt and
response commitments open on the messages sent and the text received (docs/FORMATS.md §6),
streamed text reassembled from its deltas included.

Prints `answered K` after each answer (the test waits on these lines), then one JSON line:
the summary. Writes every answer and every failed attempt to OUT_JSON.

    python load.py BASE_URL OUT_JSON N CONCURRENCY MODE MAX_TOKENS TAG
"""

import hashlib
import json
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import openai

BASE_URL, OUT = sys.argv[1], sys.argv[2]
N, CONCURRENCY = int(sys.argv[3]), int(sys.argv[4])
MODE, MAX_TOKENS, TAG = sys.argv[5], int(sys.argv[6]), sys.argv[7]
assert MODE in ("plain", "mixed"), MODE
MAX_ATTEMPTS = 8

client = openai.OpenAI(base_url=BASE_URL, api_key="unused", max_retries=0, timeout=120)
MODEL = client.models.list().data[0].id

QUESTIONS = [
    "Name a colour.",
    "Name a fruit.",
    "What is 2+2?",
    "Name a river.",
    "Name a bird.",
    "Say hello.",
]

lock = threading.Lock()
answered = 0
failures = []


def canonical(value):
    """RFC 8785 for what these requests hold (ASCII text, no floats)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def commitment(label, salt_hex, content):
    return hashlib.sha256(label + b"\x00" + bytes.fromhex(salt_hex) + content).hexdigest()


def failed(i, attempt, kind, headers, detail):
    headers = headers or {}
    with lock:
        failures.append({
            "request": i,
            "attempt": attempt,
            "kind": kind,
            "served_by": headers.get("x-sworn-backend"),
            "request_id": headers.get("x-request-id"),
            "detail": detail[:300],
        })


def once(messages, stream):
    """One attempt: (headers, text, sworn bundle or None)."""
    if not stream:
        raw = client.chat.completions.with_raw_response.create(
            model=MODEL, messages=messages, max_tokens=MAX_TOKENS, temperature=0
        )
        completion = raw.parse()
        return raw.headers, completion.choices[0].message.content or "", (completion.model_extra or {}).get("sworn")
    raw = client.chat.completions.with_raw_response.create(
        model=MODEL, messages=messages, max_tokens=MAX_TOKENS, temperature=0, stream=True
    )
    headers = raw.headers
    text, sworn = [], None
    try:
        for chunk in raw.parse():
            for choice in chunk.choices:
                text.append(choice.delta.content or "")
            sworn = (chunk.model_extra or {}).get("sworn") or sworn
    except Exception as e:  # the stream was cut: what a client sees when its server dies
        e.headers = headers
        raise
    return headers, "".join(text), sworn


def ask(i):
    global answered
    messages = [{"role": "user", "content": f"[{TAG} #{i}] {QUESTIONS[i % len(QUESTIONS)]}"}]
    stream = MODE == "mixed" and i % 2 == 1
    for attempt in range(1, MAX_ATTEMPTS + 1):
        headers = None
        try:
            headers, text, sworn = once(messages, stream)
        except openai.APIConnectionError as e:
            # Headers only when the stream was cut after they came (see `once`).
            failed(i, attempt, "connection", getattr(e, "headers", None), repr(e))
        except openai.APIStatusError as e:
            if e.status_code not in (502, 503, 504):
                raise
            failed(i, attempt, f"http_{e.status_code}", e.response.headers, e.message)
        except Exception as e:
            if not stream or getattr(e, "headers", None) is None:
                raise
            failed(i, attempt, "stream_cut", e.headers, repr(e))
        else:
            if sworn is None:
                # A stream that ended without its receipt: cut short, as far as the client knows.
                failed(i, attempt, "stream_without_receipt", headers, text)
            else:
                break
        # Back off as the SDK's own retries do (not a synchronisation: any delay works).
        time.sleep(min(0.1 * 2 ** (attempt - 1), 1.0))
    else:
        raise RuntimeError(f"request {i}: no answer after {MAX_ATTEMPTS} attempts")

    body = json.loads(sworn["body"])
    salts = sworn.get("salts") or {}
    record = {
        "request": i,
        "stream": stream,
        "attempts": attempt,
        "request_id": headers.get("x-request-id"),
        "served_by": headers.get("x-sworn-backend"),
        "log": body["log"],
        "index": body["index"],
        "receipt_request_id": body["request_id"],
        "body": sworn["body"],
        "finish_reason": body["response"]["finish_reason"],
        "completion_tokens": body["response"]["tokens"],
        "leaf_hash_ok": sworn["leaf_hash"] == hashlib.sha256(b"\x00" + sworn["body"].encode()).hexdigest(),
        "prompt_commitment_ok": commitment(b"sworn/v1/prompt", salts.get("prompt", ""), canonical(messages).encode())
        == body["prompt"]["commitment"],
        "response_commitment_ok": commitment(b"sworn/v1/response", salts.get("response", ""), text.encode())
        == body["response"]["commitment"],
    }
    with lock:
        answered += 1
        print(f"answered {answered}", flush=True)
    return record


started = time.monotonic()
with ThreadPoolExecutor(CONCURRENCY) as pool:
    answers = list(pool.map(ask, range(N)))
seconds = time.monotonic() - started

with open(OUT, "w") as f:
    json.dump({"answers": answers, "failures": failures}, f)

retries = {}
for failure in failures:
    retries[failure["kind"]] = retries.get(failure["kind"], 0) + 1
print(json.dumps({
    "answers": len(answers),
    "streamed": sum(a["stream"] for a in answers),
    "retries": len(failures),
    "retries_by_kind": retries,
    "seconds": seconds,
    "completion_tokens": sum(a["completion_tokens"] for a in answers),
}), flush=True)
