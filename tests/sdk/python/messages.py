# Official `anthropic` Python SDK scenarios against Switchyard's POST /v1/messages. Usage:
# messages.py SCENARIO with SWITCHYARD_BASE_URL (…/v1), SWITCHYARD_API_KEY, SWITCHYARD_MODEL,
# SWITCHYARD_REASONING_MODEL, SWITCHYARD_TOOLS_MODEL, SWITCHYARD_EXPECT_TEXT and
# SWITCHYARD_EXPECT_REASONING set. Scenarios: create, stream, tools, thinking, errors.
# Exit 0 on success; the last stdout line is a JSON object with the facts the Rust test checks
# (crates/gateway/tests/integration/messages.rs).

import json
import os
import sys

import anthropic

BASE = os.environ["SWITCHYARD_BASE_URL"].removesuffix("/v1")
KEY = os.environ["SWITCHYARD_API_KEY"]
MODEL = os.environ["SWITCHYARD_MODEL"]
TEXT = os.environ["SWITCHYARD_EXPECT_TEXT"]
REASONING = os.environ["SWITCHYARD_EXPECT_REASONING"]

client = anthropic.Anthropic(base_url=BASE, api_key=KEY, max_retries=0)
TOOLS = [
    {
        "name": "get_weather",
        "description": "Current weather for a city",
        "input_schema": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    }
]


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def create():
    m = client.messages.create(
        model=MODEL,
        max_tokens=256,
        system=[{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
        messages=[{"role": "user", "content": "Say something."}],
    )
    check(m.type == "message" and m.role == "assistant", m)
    check(m.content[0].type == "text" and m.content[0].text == TEXT, m.content)
    check(m.stop_reason == "end_turn", m.stop_reason)
    check(m.usage.input_tokens > 0 and m.usage.output_tokens > 0, m.usage)
    cost = (m.usage.model_extra or {}).get("cost")
    check(cost is not None and float(cost) > 0, m.usage)
    return {"text": m.content[0].text, "output_tokens": m.usage.output_tokens, "cost": cost}


def stream():
    pieces = []
    with client.messages.stream(
        model=MODEL,
        max_tokens=256,
        messages=[{"role": "user", "content": "Say something."}],
    ) as s:
        for t in s.text_stream:
            pieces.append(t)
        final = s.get_final_message()
    check("".join(pieces) == TEXT, pieces)
    check(final.content[0].text == TEXT, final.content)
    check(final.stop_reason == "end_turn", final.stop_reason)
    check(final.usage.output_tokens > 0, final.usage)
    return {"text": "".join(pieces), "deltas": len(pieces), "output_tokens": final.usage.output_tokens}


def tools():
    model = os.environ["SWITCHYARD_TOOLS_MODEL"]
    messages = [{"role": "user", "content": "Weather in Paris?"}]
    with client.messages.stream(model=model, max_tokens=256, tools=TOOLS, messages=messages) as s:
        first = s.get_final_message()
    check(first.stop_reason == "tool_use", first.stop_reason)
    calls = [b for b in first.content if b.type == "tool_use"]
    check(len(calls) == 1 and isinstance(calls[0].input, dict), first.content)
    messages.append({"role": "assistant", "content": [b.model_dump() for b in first.content]})
    messages.append(
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": calls[0].id, "content": "sunny"}],
        }
    )
    second = client.messages.create(model=MODEL, max_tokens=256, tools=TOOLS, messages=messages)
    check(second.content[0].text == TEXT, second.content)
    return {"tool": calls[0].name, "input": calls[0].input, "answer": second.content[0].text}


def thinking():
    model = os.environ["SWITCHYARD_REASONING_MODEL"]
    with client.messages.stream(
        model=model,
        max_tokens=4096,
        thinking={"type": "enabled", "budget_tokens": 2048},
        messages=[{"role": "user", "content": "Think first."}],
    ) as s:
        final = s.get_final_message()
    check(final.content[0].type == "thinking", final.content)
    check(final.content[0].thinking == REASONING, final.content[0])
    check(final.content[-1].type == "text" and final.content[-1].text == TEXT, final.content)
    m = client.messages.create(
        model=model,
        max_tokens=4096,
        thinking={"type": "enabled", "budget_tokens": 2048},
        messages=[{"role": "user", "content": "Think first."}],
    )
    check(m.content[0].type == "thinking" and m.content[0].thinking == REASONING, m.content)
    return {"thinking": final.content[0].thinking, "text": final.content[-1].text}


def errors():
    bad = anthropic.Anthropic(base_url=BASE, api_key="sk-sy-wrong", max_retries=0)
    try:
        bad.messages.create(model=MODEL, max_tokens=5, messages=[{"role": "user", "content": "x"}])
        raise AssertionError("a wrong key was accepted")
    except anthropic.AuthenticationError as e:
        check(e.body["error"]["type"] == "authentication_error", e.body)
        auth = e.body["error"]["type"]
    try:
        client.messages.create(model="no-such-model", max_tokens=5, messages=[{"role": "user", "content": "x"}])
        raise AssertionError("an unknown model was accepted")
    except anthropic.NotFoundError as e:
        check(e.body["error"]["type"] == "not_found_error", e.body)
    try:
        client.messages.create(model=MODEL, max_tokens=5, messages=[])
        raise AssertionError("no messages was accepted")
    except anthropic.BadRequestError as e:
        check(e.body["error"]["type"] == "invalid_request_error", e.body)
        check(e.request_id is not None, "request-id header")
    count = client.messages.count_tokens(model=MODEL, messages=[{"role": "user", "content": "hello there"}])
    check(count.input_tokens > 0, count)
    return {"auth": auth, "count": count.input_tokens}


SCENARIOS = {"create": create, "stream": stream, "tools": tools, "thinking": thinking, "errors": errors}

if __name__ == "__main__":
    name = sys.argv[1]
    facts = SCENARIOS[name]()
    facts.update({"ok": True, "scenario": name})
    print(json.dumps(facts))
