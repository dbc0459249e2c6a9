"""Structured outputs through the official `openai` Python SDK, unmodified, against a
running `sworn serve` (tests/tests/structured.rs starts it and runs this script).

1. `client.chat.completions.parse` with a Pydantic model returns a parsed object.
2. A strict JSON schema with nested objects, enums, an array with `minItems` and `anyOf`,
   sampled N times at temperature 1 (16 at a time): every answer that finished with `stop`
   is valid under the schema (checked with the `jsonschema` package); violations are
   counted, not hidden.
3. One structured answer's receipt, canonical prompt, answer text and canonical
   `response_format` are written to OUT for `sworn-verify content --response-format`.

Prints one JSON line of counts; the Rust test asserts on it.

    python structured.py BASE_URL OUT_DIR N
"""

import json
import sys
from concurrent.futures import ThreadPoolExecutor
from enum import Enum

import jsonschema
import openai
from pydantic import BaseModel, Field

BASE_URL, OUT, N = sys.argv[1], sys.argv[2], int(sys.argv[3])
client = openai.OpenAI(base_url=BASE_URL, api_key="unused", max_retries=0, timeout=600)
MODEL = client.models.list().data[0].id


def canonical(value):
    """RFC 8785 for what these requests hold (ASCII keys, no floats)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


class Side(str, Enum):
    buy = "buy"
    sell = "sell"


class Trade(BaseModel):
    # Bounded, so that the answer closes within max_tokens whatever greedy path a 135M
    # model takes on this CPU (unbounded, one CPU's numerics led it to fill the account
    # string with "100.000.000..." until the length limit).
    account: str = Field(max_length=12)
    side: Side
    quantity: int = Field(ge=0, le=1_000_000)


# 1. The SDK's parse helper: it sends the Pydantic model's strict schema.
parsed = client.chat.completions.parse(
    model=MODEL,
    messages=[{"role": "user", "content": "Buy 100 shares for account A-17 as JSON."}],
    response_format=Trade,
    max_tokens=96,
    temperature=0,
)
message = parsed.choices[0].message
parse_ok = parsed.choices[0].finish_reason == "stop" and isinstance(message.parsed, Trade)

# 2. A schema with nested objects, enums, an array with minItems, and anyOf.
SCHEMA = {
    "type": "object",
    "properties": {
        "filing": {
            "type": "object",
            "properties": {
                "company": {"type": "string", "maxLength": 24},
                "form": {"type": "string", "enum": ["10-K", "10-Q", "8-K"]},
            },
            "required": ["company", "form"],
            "additionalProperties": False,
        },
        "figures": {
            "type": "array",
            "minItems": 2,
            "maxItems": 3,
            "items": {
                "type": "object",
                "properties": {
                    "name": {"type": "string", "enum": ["revenue", "net_income", "assets"]},
                    "value": {"anyOf": [{"type": "integer"}, {"type": "null"}]},
                },
                "required": ["name", "value"],
                "additionalProperties": False,
            },
        },
        "risk": {"anyOf": [{"type": "string", "enum": ["low", "medium", "high"]}, {"type": "null"}]},
    },
    "required": ["filing", "figures", "risk"],
    "additionalProperties": False,
}
RESPONSE_FORMAT = {
    "type": "json_schema",
    "json_schema": {"name": "filing_figures", "schema": SCHEMA, "strict": True},
}
MESSAGES = [
    {"role": "system", "content": "Extract the filing's figures as JSON."},
    {"role": "user", "content": "ACME Corp 10-Q: revenue 1200, net income 75, assets unknown."},
]


def ask(seed):
    return client.chat.completions.create(
        model=MODEL,
        messages=MESSAGES,
        response_format=RESPONSE_FORMAT,
        temperature=1.0,
        seed=seed,
        max_tokens=160,
    )


with ThreadPoolExecutor(16) as pool:
    answers = list(pool.map(ask, range(N)))

validator = jsonschema.Draft202012Validator(SCHEMA)
stopped = violations = cut = 0
first_violation = None
kept = None
for answer in answers:
    choice = answer.choices[0]
    if choice.finish_reason != "stop":
        cut += 1
        continue
    stopped += 1
    try:
        errors = list(validator.iter_errors(json.loads(choice.message.content)))
    except json.JSONDecodeError as e:
        errors = [e]
    if errors:
        violations += 1
        first_violation = first_violation or f"{choice.message.content!r}: {errors[0]}"
    elif kept is None:
        kept = answer

# 3. One answer for the auditor's tool.
if kept is not None:
    with open(f"{OUT}/receipt.json", "w") as f:
        json.dump(kept.model_extra["sworn"], f)
    with open(f"{OUT}/prompt.json", "w") as f:
        f.write(canonical(MESSAGES))
    with open(f"{OUT}/response.txt", "w") as f:
        f.write(kept.choices[0].message.content)
    with open(f"{OUT}/response_format.json", "w") as f:
        f.write(canonical(RESPONSE_FORMAT))

print(json.dumps({
    "parse_ok": parse_ok,
    "parsed": message.parsed.model_dump(mode="json") if message.parsed else None,
    "answers": len(answers),
    "stopped": stopped,
    "cut": cut,
    "violations": violations,
    "first_violation": first_violation,
    "kept": kept is not None,
}))
