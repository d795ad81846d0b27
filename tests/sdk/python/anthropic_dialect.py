# Official `openai` Python SDK scenarios against answers that came from an Anthropic upstream (the
# gateway translates Anthropic's Messages stream into Chat Completions chunks). Usage:
# anthropic_dialect.py SCENARIO with SWITCHYARD_BASE_URL, SWITCHYARD_API_KEY and SWITCHYARD_MODEL set.
# Scenarios: tool_call_stream (the SDK's stream helper accumulates parallel tool calls),
# reasoning_stream (reasoning_content before the answer). Exit 0 on success; the last stdout line is a
# JSON object with the facts the Rust test checks (crates/gateway/tests/integration/anthropic.rs).

import json
import os
import sys

from openai import OpenAI

BASE_URL = os.environ["SWITCHYARD_BASE_URL"]
API_KEY = os.environ["SWITCHYARD_API_KEY"]
MODEL = os.environ["SWITCHYARD_MODEL"]

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Current weather for a city",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        },
    }
]


class Failed(Exception):
    pass


def check(condition, message):
    if not condition:
        raise Failed(message)


def client():
    return OpenAI(api_key=API_KEY, base_url=BASE_URL)


def tool_call_stream():
    done = []
    with client().chat.completions.stream(
        model=MODEL,
        messages=[{"role": "user", "content": "What is the weather in Paris and in Rome?"}],
        tools=TOOLS,
    ) as stream:
        for event in stream:
            if event.type == "tool_calls.function.arguments.done":
                done.append({"name": event.name, "arguments": event.arguments})
        final = stream.get_final_completion()
    choice = final.choices[0]
    calls = choice.message.tool_calls or []
    check(len(calls) >= 1, f"no tool calls in the final completion: {final}")
    ids = [c.id for c in calls]
    check(len(set(ids)) == len(ids) and all(ids), f"tool call ids missing or repeated: {ids}")
    for c in calls:
        check(c.type == "function", f"tool call type {c.type!r}")
        json.loads(c.function.arguments)  # the fragments reassemble into JSON
    check(len(done) == len(calls), f"{len(done)} arguments.done events for {len(calls)} calls")
    check(choice.finish_reason == "tool_calls", f"finish_reason {choice.finish_reason!r}")
    return {
        "calls": [
            {"id": c.id, "name": c.function.name, "arguments": c.function.arguments}
            for c in calls
        ],
        "finish_reason": choice.finish_reason,
        "model": final.model,
    }


def reasoning_stream():
    stream = client().chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Think, then answer."}],
        stream=True,
        stream_options={"include_usage": True},
    )
    reasoning, content, order, finish, usage = [], [], [], None, None
    for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage
        if not chunk.choices:
            continue
        delta = chunk.choices[0].delta
        extra = delta.model_extra or {}
        if extra.get("reasoning_content"):
            reasoning.append(extra["reasoning_content"])
            order.append("reasoning")
        if delta.content:
            content.append(delta.content)
            order.append("content")
        if chunk.choices[0].finish_reason:
            finish = chunk.choices[0].finish_reason
    check(reasoning, "no reasoning_content was received")
    check(content, "no content was received")
    check("reasoning" not in order[order.index("content"):], f"reasoning after content: {order}")
    check(finish == "stop", f"finish_reason {finish!r}")
    check(usage is not None, "no usage chunk")
    cost = (usage.model_extra or {}).get("cost")
    check(isinstance(cost, str), f"usage.cost {cost!r}")
    return {
        "reasoning": "".join(reasoning),
        "content": "".join(content),
        "completion_tokens": usage.completion_tokens,
        "cost": cost,
    }


SCENARIOS = {"tool_call_stream": tool_call_stream, "reasoning_stream": reasoning_stream}


def main():
    name = sys.argv[1] if len(sys.argv) > 1 else ""
    if name not in SCENARIOS:
        print(f"unknown scenario {name!r}; one of {sorted(SCENARIOS)}", file=sys.stderr)
        return 2
    try:
        facts = SCENARIOS[name]()
    except Failed as e:
        print(f"{name}: {e}", file=sys.stderr)
        return 1
    facts.update({"scenario": name, "ok": True})
    print(json.dumps(facts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
