# Client conformance scenarios for Switchyard with the official `openai` Python SDK: each scenario runs
# the seeds' example code (only base URL, key and model changed) against a running gateway and checks
# what the SDK saw. Usage: conformance.py SCENARIO, with SWITCHYARD_BASE_URL (http://HOST:PORT/v1) and
# SWITCHYARD_API_KEY set; SWITCHYARD_EXPECT_TEXT, when set, is the exact answer text the mock produces.
# Exit 0 on success; otherwise a message on stderr and a non-zero exit. The last stdout line is a JSON
# object with the facts the Rust test checks (crates/gateway/tests/integration/sdk.rs).

import json
import os
import re
import sys
import time

import openai
from openai import OpenAI

BASE_URL = os.environ.get("SWITCHYARD_BASE_URL")
API_KEY = os.environ.get("SWITCHYARD_API_KEY")
EXPECT_TEXT = os.environ.get("SWITCHYARD_EXPECT_TEXT")
MODEL = os.environ.get("SWITCHYARD_MODEL", "m")
REASONING_MODEL = os.environ.get("SWITCHYARD_REASONING_MODEL", "deepseek-r")
EMBED_MODEL = os.environ.get("SWITCHYARD_EMBED_MODEL", "e")
# A key without balance, for the 402 scenario.
POOR_KEY = os.environ.get("SWITCHYARD_POOR_KEY")

# A money amount as Switchyard writes it in JSON: a decimal string in USD.
DECIMAL = re.compile(r"^[0-9]+(\.[0-9]+)?$")


class Failed(Exception):
    pass


def check(condition, message):
    if not condition:
        raise Failed(message)


def check_text(text):
    check(text, "no content was received")
    if EXPECT_TEXT is not None:
        check(text == EXPECT_TEXT, f"content {text!r} != expected {EXPECT_TEXT!r}")


def client():
    return OpenAI(api_key=API_KEY, base_url=BASE_URL)


def stream_text():
    # Seed 002 / 004 (Python): iterate create(stream=True) and print delta.content.
    stream = client().chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Write a short poem"}],
        stream=True,
    )
    parts, roles, chunks = [], [], 0
    for chunk in stream:
        chunks += 1
        roles.append(chunk.choices[0].delta.role if chunk.choices else None)
        if chunk.choices and chunk.choices[0].delta.content:
            print(chunk.choices[0].delta.content, end="", flush=True)
            parts.append(chunk.choices[0].delta.content)
    print()
    text = "".join(parts)
    check_text(text)
    check(roles and roles[0] == "assistant", f"first chunk's delta.role is {roles[:1]}, not 'assistant'")
    check(all(r is None for r in roles[1:]), f"role repeated after the first chunk: {roles}")
    return {"text": text, "chunks": chunks}


def reasoning():
    # Seed 000 (thinking mode), in Python: reasoning_content to stderr, content to stdout.
    stream = client().chat.completions.create(
        model=REASONING_MODEL,
        messages=[{"role": "user", "content": "Prove that the square root of 2 is irrational"}],
        stream=True,
    )
    order, thinking_parts, content_parts = [], [], []
    for chunk in stream:
        if not chunk.choices:
            continue
        delta = chunk.choices[0].delta
        thinking = getattr(delta, "reasoning_content", None)
        if thinking:
            sys.stderr.write(thinking)
            thinking_parts.append(thinking)
            order.append("r")
        content = delta.content
        if content:
            sys.stdout.write(content)
            content_parts.append(content)
            order.append("c")
    print()
    thinking, text = "".join(thinking_parts), "".join(content_parts)
    check(thinking, "no delta.reasoning_content was received")
    check_text(text)
    check("r" not in order[order.index("c"):], f"reasoning arrived after content: {''.join(order)}")
    return {"reasoning": thinking, "text": text}


def non_stream():
    completion = client().chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Say hello"}],
    )
    text = completion.choices[0].message.content
    check_text(text)
    check(completion.usage is not None, "the response has no usage")
    cost = getattr(completion.usage, "cost", None)
    check(isinstance(cost, str) and DECIMAL.match(cost), f"usage.cost is {cost!r}, not a decimal string")
    return {"text": text, "cost": cost, "usage": completion.usage.model_dump()}


# The Rust test sets the mock up for a long, slow answer (the gateway forwards no `mock` field), so the
# stream is still running when the client goes away, and checks the mock saw the disconnect promptly.


def abort():
    chunks = 0
    with client().chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Write a long essay"}],
        stream=True,
    ) as stream:
        for chunk in stream:
            chunks += 1
            if chunks == 3:
                break
        aborted_at = time.time()
        stream.close()
    check(chunks == 3, f"only {chunks} chunks arrived before the end")
    return {"chunks": chunks, "aborted_at_ms": aborted_at * 1000.0}


def bad_key():
    bad = OpenAI(api_key="sk-this-key-does-not-exist", base_url=BASE_URL)
    try:
        bad.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": "hi"}],
            stream=True,
        )
    except openai.AuthenticationError as e:
        check(e.status_code == 401, f"AuthenticationError with status {e.status_code}")
        check(isinstance(e.body, dict) and e.body.get("message"), f"error body has no message: {e.body!r}")
        return {"status": e.status_code, "message": str(e), "body": e.body}
    except openai.APIError as e:
        raise Failed(f"expected AuthenticationError, got {type(e).__name__}: {e}") from e
    raise Failed("a wrong key was accepted")


def stream_error():
    stream = client().chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Write a short poem"}],
        stream=True,
    )
    parts = []
    try:
        for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                parts.append(chunk.choices[0].delta.content)
    except openai.APIError as e:
        text = "".join(parts)
        check(text, f"the error came before any content: {e}")
        return {"text": text, "error_type": type(e).__name__, "message": str(e), "body": e.body}
    raise Failed(f"the stream ended without an error after {''.join(parts)!r}")


def stream_helper():
    with client().chat.completions.stream(
        model=MODEL,
        messages=[{"role": "user", "content": "Write a short poem"}],
    ) as stream:
        parts = []
        for event in stream:
            if event.type == "content.delta":
                parts.append(event.delta)
        final = stream.get_final_completion()
    text = "".join(parts)
    check_text(text)
    message = final.choices[0].message
    check(message.content == text, f"final content {message.content!r} != streamed {text!r}")
    check(message.role == "assistant", f"final role is {message.role!r} (a repeated role is concatenated)")
    check(final.id and final.id.startswith("chatcmpl"), f"final id is {final.id!r}")
    check(final.choices[0].finish_reason == "stop", f"finish_reason {final.choices[0].finish_reason!r}")
    return {"text": text, "id": final.id, "role": message.role}


def include_usage():
    stream = client().chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Write a short poem"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    check(chunks, "no chunks")
    last = chunks[-1]
    check(last.choices == [], f"the last chunk has choices {last.choices!r}, not []")
    check(last.usage is not None, "the last chunk has no usage")
    cost = getattr(last.usage, "cost", None)
    check(isinstance(cost, str) and DECIMAL.match(cost), f"usage.cost is {cost!r}, not a decimal string")
    check(all(c.choices for c in chunks[:-1]), "a chunk before the last has no choices")
    text = "".join(c.choices[0].delta.content or "" for c in chunks[:-1])
    check_text(text)
    return {"text": text, "cost": cost, "usage": last.usage.model_dump()}


TEXTS = ["the quick brown fox", "jumps over", "the lazy dog today"]


def embeddings():
    c = client()
    # float, as asked for; the SDK's own default asks for base64 and decodes it.
    floats = c.embeddings.create(model=EMBED_MODEL, input=TEXTS, encoding_format="float")
    decoded = c.embeddings.create(model=EMBED_MODEL, input=TEXTS)
    check(len(floats.data) == 3 and [d.index for d in floats.data] == [0, 1, 2], f"data is {floats.data}")
    check(all(isinstance(x, float) for x in floats.data[0].embedding), "float vectors are not floats")
    check(
        [d.embedding for d in floats.data] == [d.embedding for d in decoded.data],
        "base64-decoded vectors differ from the float ones",
    )
    one = c.embeddings.create(model=EMBED_MODEL, input="hello world", dimensions=4)
    check(len(one.data) == 1 and len(one.data[0].embedding) == 4, "dimensions was not honoured")
    tokens = c.embeddings.create(model=EMBED_MODEL, input=[[1, 2, 3], [4, 5]], encoding_format="float")
    check(len(tokens.data) == 2, "token arrays did not give two vectors")
    costs = []
    for r in [floats, decoded, one, tokens]:
        cost = getattr(r.usage, "cost", None)
        check(isinstance(cost, str) and DECIMAL.match(cost), f"usage.cost is {cost!r}")
        check(r.usage.total_tokens == r.usage.prompt_tokens, f"usage is {r.usage}")
        costs.append({"prompt_tokens": r.usage.prompt_tokens, "cost": cost})
    return {"vector": floats.data[0].embedding, "usages": costs}


def embeddings_no_balance():
    poor = OpenAI(api_key=POOR_KEY, base_url=BASE_URL, max_retries=0)
    try:
        poor.embeddings.create(model=EMBED_MODEL, input="hello")
    except openai.APIStatusError as e:
        check(e.status_code == 402, f"status {e.status_code}")
        return {"status": e.status_code, "code": e.code}
    raise Failed("a key without balance got embeddings")


def models():
    c = client()
    listed = {m.id: m for m in c.models.list()}
    check(EMBED_MODEL in listed and MODEL in listed, f"models are {sorted(listed)}")
    m = c.models.retrieve(MODEL)
    check(m.id == MODEL and m.object == "model", f"retrieved {m}")
    e = c.models.retrieve(EMBED_MODEL)
    extra = e.model_extra or {}
    check(extra.get("kind") == "embedding", f"embedding model extra is {extra}")
    try:
        c.models.retrieve("no-such-model")
        raise Failed("an unknown model was retrieved")
    except openai.NotFoundError as err:
        code = err.code
    return {"ids": sorted(listed), "chat": m.model_extra, "embedding": extra, "missing_code": code}


def completions():
    c = client()
    one = c.completions.create(model=MODEL, prompt="Say this is a test", max_tokens=40)
    check(one.object == "text_completion", f"object is {one.object}")
    check(len(one.choices) == 1 and one.choices[0].index == 0, f"choices are {one.choices}")
    cost = getattr(one.usage, "cost", None)
    check(isinstance(cost, str) and DECIMAL.match(cost), f"usage.cost is {cost!r}")
    stream = c.completions.create(
        model=MODEL, prompt="Say this is a test", max_tokens=40, stream=True,
        stream_options={"include_usage": True},
    )
    texts, objects, finish, usage = [], set(), [], None
    for chunk in stream:
        objects.add(chunk.object)
        for ch in chunk.choices:
            texts.append(ch.text)
            if ch.finish_reason:
                finish.append(ch.finish_reason)
        if chunk.usage is not None:
            usage = chunk.usage
    check(objects == {"text_completion"}, f"chunk objects are {objects}")
    check(usage is not None and DECIMAL.match(getattr(usage, "cost", "") or ""), f"stream usage is {usage}")
    return {
        "text": one.choices[0].text,
        "finish_reason": one.choices[0].finish_reason,
        "usage": {"prompt_tokens": one.usage.prompt_tokens, "completion_tokens": one.usage.completion_tokens, "cost": cost},
        "stream_text": "".join(texts),
        "stream_finish": finish,
        "stream_usage": {"prompt_tokens": usage.prompt_tokens, "completion_tokens": usage.completion_tokens, "cost": usage.cost},
    }


SCENARIOS = {
    f.__name__: f
    for f in [
        stream_text,
        reasoning,
        non_stream,
        abort,
        bad_key,
        stream_error,
        stream_helper,
        include_usage,
        embeddings,
        embeddings_no_balance,
        completions,
        models,
    ]
}


def main():
    if len(sys.argv) != 2 or sys.argv[1] not in SCENARIOS:
        print(f"usage: conformance.py {'|'.join(SCENARIOS)}", file=sys.stderr)
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
