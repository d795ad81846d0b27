# Responses API scenarios for Switchyard with the official `openai` Python SDK: streaming with
# `responses.create(stream=True)` and the `responses.stream()` helper (which checks the event order),
# a function call round trip, a reasoning model, `previous_response_id` chaining,
# `max_output_tokens`, the stored responses' `input_items.list` (paginated) and `delete`, a
# Codex-shaped request (namespace and web_search tools), and background responses (a stream cut
# and read again with `retrieve(stream=True, starting_after=n)`, polling, `cancel`). Usage: responses.py SCENARIO, with SWITCHYARD_BASE_URL (http://HOST:PORT/v1),
# SWITCHYARD_API_KEY and the models SWITCHYARD_MODEL (plain answer), SWITCHYARD_REASONING_MODEL
# (thinks first) and SWITCHYARD_TOOLS_MODEL (calls a function) set; SWITCHYARD_EXPECT_TEXT and
# SWITCHYARD_EXPECT_REASONING, when set, are the exact texts the mock produces.
# Exit 0 on success; otherwise a message on stderr and a non-zero exit. The last stdout line is a JSON
# object with the facts the Rust test checks (crates/gateway/tests/integration/responses_sdk.rs).

import json
import os
import sys
import time

import openai
from openai import OpenAI

BASE_URL = os.environ.get("SWITCHYARD_BASE_URL")
API_KEY = os.environ.get("SWITCHYARD_API_KEY")
MODEL = os.environ.get("SWITCHYARD_MODEL", "m")
REASONING_MODEL = os.environ.get("SWITCHYARD_REASONING_MODEL", "m-think")
TOOLS_MODEL = os.environ.get("SWITCHYARD_TOOLS_MODEL", "m-tools")
EXPECT_TEXT = os.environ.get("SWITCHYARD_EXPECT_TEXT")
EXPECT_REASONING = os.environ.get("SWITCHYARD_EXPECT_REASONING")

TOOLS = [
    {
        "type": "function",
        "name": "get_weather",
        "description": "Get the current weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    }
]


class Failed(Exception):
    pass


def check(condition, message):
    if not condition:
        raise Failed(message)


def check_text(text):
    check(text, "no output text was received")
    if EXPECT_TEXT is not None:
        check(text == EXPECT_TEXT, f"output text {text!r} != expected {EXPECT_TEXT!r}")


def client():
    return OpenAI(api_key=API_KEY, base_url=BASE_URL, max_retries=0)


def create_stream():
    # TokenLab's recommended pattern: iterate the raw events, print the text deltas.
    stream = client().responses.create(model=MODEL, input="Write a short poem.", stream=True)
    types, parts, seqs, final = [], [], [], None
    for event in stream:
        types.append(event.type)
        seqs.append(event.sequence_number)
        if event.type == "response.output_text.delta":
            print(event.delta, end="", flush=True)
            parts.append(event.delta)
        elif event.type == "response.completed":
            final = event.response
    print()
    text = "".join(parts)
    check_text(text)
    check(types[0] == "response.created", f"first event is {types[0]}")
    check(types[-1] == "response.completed", f"last event is {types[-1]}")
    check(seqs == list(range(len(seqs))), f"sequence numbers are {seqs}")
    check(final is not None and final.output_text == text, "response.completed lacks the output")
    check(final.usage is not None and final.usage.output_tokens > 0, "response.completed has no usage")
    return {"text": text, "events": len(types), "id": final.id, "status": final.status}


def stream_helper():
    with client().responses.stream(
        model=MODEL, input="Write a short poem.", instructions="You are a poet."
    ) as stream:
        parts = []
        for event in stream:
            if event.type == "response.output_text.delta":
                parts.append(event.delta)
        final = stream.get_final_response()
    text = "".join(parts)
    check_text(text)
    check(final.output_text == text, f"final output_text {final.output_text!r} != streamed {text!r}")
    check(final.status == "completed", f"status is {final.status}")
    check(final.instructions == "You are a poet.", f"instructions echo is {final.instructions!r}")
    return {"text": text, "id": final.id, "usage": final.usage.model_dump()}


def function_call():
    # The documented round trip: the model calls a function, the caller runs it and sends the
    # conversation back with a function_call_output item, the model answers.
    c = client()
    conversation = [{"role": "user", "content": "What is the weather like in Paris today?"}]
    with c.responses.stream(model=TOOLS_MODEL, input=conversation, tools=TOOLS) as stream:
        arg_deltas = []
        for event in stream:
            if event.type == "response.function_call_arguments.delta":
                arg_deltas.append(event.delta)
        first = stream.get_final_response()
    calls = [item for item in first.output if item.type == "function_call"]
    check(len(calls) == 1, f"expected one function call, got {[i.type for i in first.output]}")
    call = calls[0]
    check(call.name == "get_weather", f"called {call.name}")
    check("".join(arg_deltas) == call.arguments, "argument deltas do not add up to the arguments")
    args = json.loads(call.arguments)
    check(isinstance(args.get("city"), str), f"arguments {call.arguments}")
    conversation += first.output
    conversation.append(
        {"type": "function_call_output", "call_id": call.call_id, "output": json.dumps({"temp_c": 21})}
    )
    answer = c.responses.create(model=MODEL, input=conversation, tools=TOOLS, store=False)
    check_text(answer.output_text)
    # The same continuation by reference.
    chained = c.responses.create(
        model=MODEL,
        previous_response_id=first.id,
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": "21 C"}],
    )
    check_text(chained.output_text)
    return {"text": answer.output_text, "call_id": call.call_id, "arguments": call.arguments}


def reasoning():
    with client().responses.stream(
        model=REASONING_MODEL, input="Prove that sqrt(2) is irrational.", reasoning={"effort": "low"}
    ) as stream:
        order, thinking, parts = [], [], []
        for event in stream:
            if event.type == "response.reasoning_summary_text.delta":
                thinking.append(event.delta)
                order.append("r")
            elif event.type == "response.output_text.delta":
                parts.append(event.delta)
                order.append("c")
        final = stream.get_final_response()
    thinking, text = "".join(thinking), "".join(parts)
    check(thinking, "no reasoning summary was streamed")
    if EXPECT_REASONING is not None:
        check(thinking == EXPECT_REASONING, f"reasoning {thinking!r} != {EXPECT_REASONING!r}")
    check_text(text)
    check("r" not in order[order.index("c"):], f"reasoning after the answer: {''.join(order)}")
    check(final.output[0].type == "reasoning", f"first output item is {final.output[0].type}")
    summary = "".join(s.text for s in final.output[0].summary)
    check(summary == thinking, f"final summary {summary!r} != streamed {thinking!r}")
    return {"reasoning": thinking, "text": text}


def chain():
    c = client()
    first = c.responses.create(model=MODEL, input="My name is Ada.", metadata={"turn": "1"})
    check_text(first.output_text)
    second = c.responses.create(model=MODEL, input="What is my name?", previous_response_id=first.id)
    check_text(second.output_text)
    check(second.previous_response_id == first.id, "previous_response_id is not echoed")
    parts = []
    with c.responses.stream(model=MODEL, input="And again?", previous_response_id=second.id) as stream:
        for event in stream:
            if event.type == "response.output_text.delta":
                parts.append(event.delta)
        third = stream.get_final_response()
    check_text("".join(parts))
    fetched = c.responses.retrieve(first.id)
    check(fetched.id == first.id and fetched.output_text == first.output_text, "retrieve differs")
    check(fetched.metadata == {"turn": "1"}, f"metadata is {fetched.metadata}")
    return {"ids": [first.id, second.id, third.id], "text": third.output_text}


def incomplete():
    stream = client().responses.create(
        model=MODEL, input="Write a long essay.", max_output_tokens=3, stream=True
    )
    last = None
    for event in stream:
        last = event
    check(last.type == "response.incomplete", f"last event is {last.type}")
    reason = last.response.incomplete_details.reason
    check(reason == "max_output_tokens", f"incomplete reason is {reason}")
    return {"text": last.response.output_text, "status": last.response.status}


INPUT = [
    {"role": "developer", "content": "Answer briefly."},
    {"role": "user", "content": "first question"},
    {"role": "assistant", "content": "first answer"},
    {"role": "user", "content": "second question"},
]


def item_text(item):
    return item.content[0].text


def input_items():
    c = client()
    r = c.responses.create(model=MODEL, input=INPUT)
    check_text(r.output_text)
    # One item a page: the SDK follows `after` itself until `has_more` is false.
    newest_first = [item_text(i) for i in c.responses.input_items.list(r.id, limit=1)]
    want = [m["content"] for m in INPUT]
    check(newest_first == want[::-1], f"desc items are {newest_first}")
    page = c.responses.input_items.list(r.id, order="asc", limit=2)
    check(page.has_more is True, "the first page of two says it is the last")
    check([item_text(i) for i in page.data] == want[:2], f"asc page is {page.data}")
    ids = [i.id for i in c.responses.input_items.list(r.id, order="asc")]
    check(len(set(ids)) == 4 and all(ids), f"item ids are {ids}")
    roles = [i.role for i in c.responses.input_items.list(r.id, order="asc")]
    return {"items": newest_first, "roles": roles, "ids": ids}


def delete():
    c = client()
    r = c.responses.create(model=MODEL, input="Remember me.")
    check(c.responses.retrieve(r.id).id == r.id, "the new response cannot be retrieved")
    c.responses.delete(r.id)
    try:
        c.responses.retrieve(r.id)
        raise Failed("a deleted response was retrieved")
    except openai.NotFoundError:
        pass
    try:
        c.responses.create(model=MODEL, input="Still there?", previous_response_id=r.id)
        raise Failed("a deleted response was continued")
    except openai.NotFoundError as e:
        code = e.body.get("code") if isinstance(e.body, dict) else None
    try:
        c.responses.delete(r.id)
        raise Failed("a deleted response was deleted again")
    except openai.NotFoundError:
        pass
    return {"deleted": r.id, "previous_code": code}


def codex_tools():
    # What Codex CLI sends (issue 20): developer messages, a namespace tool, the hosted web_search,
    # include, store false, a cache key and client_metadata. On a chat route the namespace's
    # functions go up flattened and the call comes back under its own name and namespace.
    namespace = {
        "type": "namespace",
        "name": "multi_agent_v1",
        "description": "Tools for spawning and managing sub-agents.",
        "tools": [
            {
                "type": "function",
                "name": "spawn_agent",
                "description": "Spawn a sub-agent.",
                "strict": False,
                "parameters": {"type": "object", "properties": {"task": {"type": "string"}}},
            }
        ],
    }
    stream = client().responses.create(
        model=TOOLS_MODEL,
        input=[
            {"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "Be brief."}]},
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Start a helper."}]},
        ],
        tools=[namespace, {"type": "web_search", "external_web_access": True}],
        tool_choice="auto",
        parallel_tool_calls=True,
        reasoning={"summary": "auto"},
        store=False,
        include=["reasoning.encrypted_content"],
        prompt_cache_key="conversation-1",
        extra_body={"client_metadata": {"session_id": "s1"}},
        stream=True,
    )
    done, final = [], None
    for event in stream:
        if event.type == "response.output_item.done":
            done.append(event.item)
        elif event.type == "response.completed":
            final = event.response
    check(final is not None, "no response.completed")
    calls = [item.to_dict() for item in done if item.type == "function_call"]
    check(len(calls) == 1, f"expected one function call, got {[i.type for i in done]}")
    call = calls[0]
    check(call["name"] == "spawn_agent", f"called {call['name']}")
    check(call.get("namespace") == "multi_agent_v1", f"namespace {call.get('namespace')!r}")
    final_call = [i.to_dict() for i in final.output if i.type == "function_call"][0]
    check(final_call.get("namespace") == "multi_agent_v1", "the final response lost the namespace")
    return {"name": call["name"], "namespace": call["namespace"], "call_id": call["call_id"]}


SLOW_MODEL = os.environ.get("SWITCHYARD_SLOW_MODEL", "m-slow")
LONG_MODEL = os.environ.get("SWITCHYARD_LONG_MODEL", "m-long")
EXPECT_SLOW_TEXT = os.environ.get("SWITCHYARD_EXPECT_SLOW_TEXT")


def background():
    # A background response streamed; the connection dropped after a few events; the rest read
    # with retrieve(stream=True, starting_after=n): exactly the remaining events.
    c = client()
    stream = c.responses.create(model=SLOW_MODEL, input="Write a short poem.", stream=True, background=True)
    seen = []
    for event in stream:
        seen.append(event)
        if len(seen) >= 4:
            break
    stream.close()
    rid = seen[0].response.id
    check(seen[0].response.background is True, "the response does not say it is in the background")
    last = seen[-1].sequence_number
    rest = list(c.responses.retrieve(rid, stream=True, starting_after=last))
    seqs = [e.sequence_number for e in seen + rest]
    check(seqs == list(range(len(seqs))), f"sequence numbers are {seqs}")
    text = "".join(e.delta for e in seen + rest if e.type == "response.output_text.delta")
    check(text, "no output text was received")
    if EXPECT_SLOW_TEXT is not None:
        check(text == EXPECT_SLOW_TEXT, f"output text {text!r} != expected {EXPECT_SLOW_TEXT!r}")
    check(rest[-1].type == "response.completed", f"the last event is {rest[-1].type}")
    polled = c.responses.retrieve(rid)
    check(polled.status == "completed", f"status after the end is {polled.status}")
    check(polled.output_text == text, "the stored response lacks the text")
    return {"id": rid, "events": len(seqs), "resumed_after": last, "text": text}


def background_cancel():
    # A background response created without streaming, polled while it runs, then cancelled.
    c = client()
    created = c.responses.create(model=LONG_MODEL, input="Write a long poem.", background=True)
    check(created.status in ("queued", "in_progress"), f"created as {created.status}")
    # Polled until it runs, as a client waiting on it would.
    deadline = time.monotonic() + 20
    polled = c.responses.retrieve(created.id)
    while polled.status == "queued" and time.monotonic() < deadline:
        time.sleep(0.02)
        polled = c.responses.retrieve(created.id)
    check(polled.status == "in_progress", f"polled as {polled.status}")
    cancelled = c.responses.cancel(created.id)
    check(cancelled.status == "cancelled", f"cancelled as {cancelled.status}")
    after = c.responses.retrieve(created.id)
    check(after.status == "cancelled", f"after the cancel it is {after.status}")
    return {"id": created.id, "status": after.status}


SCENARIOS = {
    f.__name__: f
    for f in [
        create_stream,
        stream_helper,
        function_call,
        reasoning,
        chain,
        incomplete,
        input_items,
        delete,
        codex_tools,
        background,
        background_cancel,
    ]
}


def main():
    if len(sys.argv) != 2 or sys.argv[1] not in SCENARIOS:
        print(f"usage: responses.py {'|'.join(SCENARIOS)}", file=sys.stderr)
        return 2
    name = sys.argv[1]
    if not BASE_URL or not API_KEY:
        print("SWITCHYARD_BASE_URL and SWITCHYARD_API_KEY must be set", file=sys.stderr)
        return 2
    try:
        facts = SCENARIOS[name]()
    except Failed as e:
        print(f"FAILED python/{name}: {e}", file=sys.stderr)
        return 1
    except Exception as e:  # what the SDK raised where the scenario expected none
        print(f"FAILED python/{name}: the SDK raised {type(e).__name__}: {e}", file=sys.stderr)
        body = getattr(e, "body", None)
        if body is not None:
            print(f"error body: {body!r}", file=sys.stderr)
        return 1
    print(json.dumps({"scenario": name, "ok": True, "openai": openai.__version__, **facts}, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
