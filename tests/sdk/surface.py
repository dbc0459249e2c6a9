"""Tool calls, log probabilities and `n` through the official `openai` Python SDK,
unmodified, against a running `sworn serve` (tests/tests/openai_surface.rs starts it and
runs this script).

1. Tool calls round-trip: a required call (whole and streamed, the stream's deltas
   assembled as SDK users do), the tool's result sent back as a `tool` message, and the
   answer to it; a named `tool_choice`; `auto`. Every call names an offered function and
   its arguments are valid under that function's schema (`jsonschema`).
2. `logprobs` / `top_logprobs` on chat (greedy and sampled, whole and streamed) and
   `logprobs` on completions: every log probability is <= 0, the alternatives are sorted
   and their probabilities sum to at most 1, a greedy token is the most likely one, a
   sampled token with `top_k` k is among the k alternatives whose probabilities sum to 1
   (the sampled distribution), and the tokens' bytes spell the answer.
3. `n` = 3: three choices, each with its own receipt.

Files for the auditor's tool go to OUT; one JSON line of results goes to stdout (every
check here is an assert: a failure exits non-zero with its message).

    python surface.py BASE_URL OUT_DIR
"""

import json
import math
import sys

import jsonschema
import openai

BASE_URL, OUT = sys.argv[1], sys.argv[2]
client = openai.OpenAI(base_url=BASE_URL, api_key="unused", max_retries=0, timeout=600)
MODEL = client.models.list().data[0].id


def canonical(value):
    """RFC 8785 for what these documents hold (no floats)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def write(name, text):
    with open(f"{OUT}/{name}", "w") as f:
        f.write(text)


TOOLS = [
    {"type": "function", "function": {
        "name": "get_position",
        "description": "The number of shares an account holds.",
        "parameters": {"type": "object",
                       "properties": {"account": {"type": "string", "maxLength": 16}},
                       "required": ["account"], "additionalProperties": False}}},
    {"type": "function", "function": {
        "name": "get_price",
        "description": "The last price of a ticker symbol.",
        "parameters": {"type": "object",
                       "properties": {"symbol": {"type": "string", "enum": ["ACME", "GLOBEX"]}},
                       "required": ["symbol"], "additionalProperties": False}}},
]
SCHEMAS = {t["function"]["name"]: t["function"]["parameters"] for t in TOOLS}
ASK = [{"role": "user", "content": "How many shares does account A-17 hold?"}]


def check_calls(calls):
    assert calls, "no tool call"
    for call in calls:
        assert call.type == "function", call
        assert call.id, call
        assert call.function.name in SCHEMAS, call.function.name
        jsonschema.validate(json.loads(call.function.arguments), SCHEMAS[call.function.name])


results = {}

# 1. Tools. Required, whole.
required = client.chat.completions.create(
    model=MODEL, messages=ASK, tools=TOOLS, tool_choice="required",
    temperature=0, max_tokens=64)
choice = required.choices[0]
assert choice.finish_reason == "tool_calls", choice
assert choice.message.content is None, choice.message
check_calls(choice.message.tool_calls)
calls = choice.message.tool_calls
results["required_call"] = [c.function.name for c in calls]

# The auditor's files for this answer.
write("tool_answer.json", required.model_dump_json())
write("tool_prompt.json", canonical(ASK))
write("tool_response.json", canonical({"content": None, "tool_calls": [
    {"id": c.id, "type": "function",
     "function": {"name": c.function.name, "arguments": c.function.arguments}} for c in calls]}))
write("tools.json", canonical({"parallel_tool_calls": True, "tool_choice": "required",
                               "tools": TOOLS}))

# Required, streamed: the deltas assembled as the SDK's users do give the same calls.
assembled = {}
finish = None
for chunk in client.chat.completions.create(
        model=MODEL, messages=ASK, tools=TOOLS, tool_choice="required",
        temperature=0, max_tokens=64, stream=True):
    for c in chunk.choices:
        finish = c.finish_reason or finish
        for delta in c.delta.tool_calls or []:
            slot = assembled.setdefault(delta.index, {"id": None, "name": "", "arguments": ""})
            slot["id"] = delta.id or slot["id"]
            if delta.function:
                slot["name"] += delta.function.name or ""
                slot["arguments"] += delta.function.arguments or ""
assert finish == "tool_calls", finish
streamed = [assembled[i] for i in sorted(assembled)]
assert [(s["name"], s["arguments"]) for s in streamed] == \
    [(c.function.name, c.function.arguments) for c in calls], (streamed, calls)

# The round trip: the call, the tool's result, and the answer to it.
follow = ASK + [
    choice.message.model_dump(exclude_none=True),
    {"role": "tool", "tool_call_id": calls[0].id, "content": "120 shares"},
]
answer = client.chat.completions.create(
    model=MODEL, messages=follow, tools=TOOLS, tool_choice="none",
    temperature=0, max_tokens=32)
assert answer.choices[0].message.tool_calls is None
assert answer.choices[0].message.content, answer
results["round_trip_answer"] = answer.choices[0].message.content

# A named function is the one called, once.
named = client.chat.completions.create(
    model=MODEL, messages=[{"role": "user", "content": "What does ACME trade at?"}],
    tools=TOOLS, tool_choice={"type": "function", "function": {"name": "get_price"}},
    temperature=0, max_tokens=48)
named_calls = named.choices[0].message.tool_calls
check_calls(named_calls)
assert [c.function.name for c in named_calls] == ["get_price"], named_calls

# Auto: either calls or content, each well formed.
auto = client.chat.completions.create(
    model=MODEL, messages=ASK, tools=TOOLS, temperature=0, max_tokens=64)
auto_message = auto.choices[0].message
if auto_message.tool_calls:
    check_calls(auto_message.tool_calls)
    assert auto.choices[0].finish_reason == "tool_calls"
    results["auto"] = "tool_calls"
else:
    assert isinstance(auto_message.content, str)
    results["auto"] = "content"


# 2. Log probabilities.
def check_token(token, top_n):
    assert token.logprob <= 0, token
    tops = token.top_logprobs
    assert len(tops) <= top_n, tops
    values = [t.logprob for t in tops]
    assert values == sorted(values, reverse=True), values
    assert all(v <= 0 for v in values), values
    assert sum(math.exp(v) for v in values) <= 1 + 1e-4, values


LP_ASK = [{"role": "user", "content": "Name three colours."}]
greedy = client.chat.completions.create(
    model=MODEL, messages=LP_ASK, temperature=0, max_tokens=24,
    logprobs=True, top_logprobs=5)
tokens = greedy.choices[0].logprobs.content
assert len(tokens) >= 1
for token in tokens:
    check_token(token, 5)
    assert len(token.top_logprobs) == 5
    # Greedy: the token taken is the most likely one.
    assert token.top_logprobs[0].token == token.token, token
    assert abs(token.top_logprobs[0].logprob - token.logprob) < 1e-6
spelled = b"".join(bytes(t.bytes) for t in tokens).decode("utf-8", "replace")
assert spelled == greedy.choices[0].message.content, (spelled, greedy.choices[0].message.content)

streamed_tokens = []
for chunk in client.chat.completions.create(
        model=MODEL, messages=LP_ASK, temperature=0, max_tokens=24,
        logprobs=True, top_logprobs=5, stream=True):
    for c in chunk.choices:
        if c.logprobs and c.logprobs.content:
            streamed_tokens.extend(c.logprobs.content)
assert [(t.token, t.logprob) for t in streamed_tokens] == \
    [(t.token, t.logprob) for t in tokens], "streamed log probabilities differ"

# Sampled with top_k 3: the distribution drawn from holds exactly three tokens.
sampled = client.chat.completions.create(
    model=MODEL, messages=LP_ASK, temperature=1, seed=11, max_tokens=24,
    logprobs=True, top_logprobs=3, extra_body={"top_k": 3})
for token in sampled.choices[0].logprobs.content:
    check_token(token, 3)
    assert token.token in [t.token for t in token.top_logprobs], token
    mass = sum(math.exp(t.logprob) for t in token.top_logprobs)
    assert abs(mass - 1) < 1e-3, (mass, token)

completion = client.completions.create(
    model=MODEL, prompt="The capital of France is", temperature=0, max_tokens=8, logprobs=2)
lp = completion.choices[0].logprobs
assert len(lp.tokens) == len(lp.token_logprobs) == len(lp.top_logprobs) == len(lp.text_offset)
assert all(v <= 0 for v in lp.token_logprobs)
assert lp.text_offset == sorted(lp.text_offset)
assert all(len(alternatives) <= 2 for alternatives in lp.top_logprobs)
results["logprob_tokens"] = len(tokens)

# 3. n = 3: three choices, each sworn on its own.
three = client.chat.completions.create(
    model=MODEL, messages=LP_ASK, n=3, temperature=1, seed=5, max_tokens=16)
assert len(three.choices) == 3, three
assert [c.index for c in three.choices] == [0, 1, 2]
for c in three.choices:
    assert "sworn" in c.model_extra, c
one = three.model_dump()
one["choices"] = [one["choices"][1]]
write("n_choice.json", json.dumps(one))
results["n_texts"] = [c.message.content for c in three.choices]

print(json.dumps(results))
