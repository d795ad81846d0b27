//! Unit tests for the Responses translation: one test per request rule, and the stream ordering
//! invariants the official SDK helpers enforce, checked on every builder run.

use serde_json::{json, Value};

use super::*;

fn ctx() -> ResponseContext {
    ResponseContext::new(
        "resp_abc",
        "demo-chat",
        1_700_000_000,
        RequestEcho::default(),
    )
}

fn chunk(delta: Value, finish: Option<&str>) -> Value {
    json!({
        "id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "m",
        "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}],
    })
}

fn usage_chunk() -> Value {
    json!({
        "id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "m",
        "choices": [],
        "usage": {
            "prompt_tokens": 14, "completion_tokens": 30, "total_tokens": 44,
            "prompt_tokens_details": {"cached_tokens": 4},
            "completion_tokens_details": {"reasoning_tokens": 7},
        },
    })
}

/// Runs the builder over `chunks`, checks the ordering invariants and returns the events.
fn run(chunks: &[Value]) -> (Vec<Event>, Value) {
    let mut b = StreamBuilder::new(ctx());
    let mut out = Vec::new();
    b.start(&mut out);
    for c in chunks {
        b.push_chunk(c, &mut out);
    }
    b.finish(None, &mut out);
    check_invariants(&out);
    (out, b.response())
}

fn kinds(events: &[Event]) -> Vec<&str> {
    events.iter().map(|e| e.kind.as_str()).collect()
}

/// The invariants of the module docs, asserted on a complete event list.
fn check_invariants(events: &[Event]) {
    assert_eq!(events[0].kind, "response.created");
    assert_eq!(events[1].kind, "response.in_progress");
    let terminal = [
        "response.completed",
        "response.incomplete",
        "response.failed",
    ];
    let n_terminal = events
        .iter()
        .filter(|e| terminal.contains(&e.kind.as_str()))
        .count();
    assert_eq!(n_terminal, 1, "exactly one terminal event");
    assert!(terminal.contains(&events.last().unwrap().kind.as_str()));
    let mut added: Vec<bool> = Vec::new(); // output_index -> still open
    let mut open_parts: Vec<(u64, u64)> = Vec::new();
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e.data["type"], json!(e.kind), "type field matches");
        assert_eq!(
            e.data["sequence_number"],
            json!(i),
            "sequence numbers count from 0"
        );
        if let Some(idx) = e.data.get("output_index").and_then(Value::as_u64) {
            if e.kind == "response.output_item.added" {
                assert_eq!(idx as usize, added.len(), "items added in order");
                assert!(added.iter().all(|open| !open), "one open item at a time");
                added.push(true);
            } else {
                assert!(
                    added.get(idx as usize) == Some(&true),
                    "{} refers to output_index {idx} which is not open",
                    e.kind
                );
            }
            if let Some(c) = e.data.get("content_index").and_then(Value::as_u64) {
                match e.kind.as_str() {
                    "response.content_part.added" => open_parts.push((idx, c)),
                    "response.content_part.done" => open_parts.retain(|p| *p != (idx, c)),
                    _ => assert!(
                        open_parts.contains(&(idx, c)),
                        "part added before {}",
                        e.kind
                    ),
                }
            }
            if e.kind == "response.output_item.done" {
                added[idx as usize] = false;
                assert!(
                    open_parts.iter().all(|(o, _)| *o != idx),
                    "parts closed first"
                );
                let item_id = &e.data["item"]["id"];
                assert!(events[..i]
                    .iter()
                    .any(|p| p.kind == "response.output_item.added"
                        && p.data["item"]["id"] == *item_id));
            }
        }
    }
    assert!(added.iter().all(|open| !open), "every item closed");
    let last = &events.last().unwrap().data["response"];
    assert_eq!(last["output"].as_array().unwrap().len(), added.len());
}

#[test]
fn text_stream_produces_the_canonical_sequence() {
    let (events, response) = run(&[
        chunk(
            json!({"role": "assistant", "content": "", "refusal": null}),
            None,
        ),
        chunk(json!({"content": "Hi"}), None),
        chunk(json!({"content": " there"}), None),
        chunk(json!({}), Some("stop")),
        usage_chunk(),
    ]);
    assert_eq!(
        kinds(&events),
        [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.content_part.added",
            "response.output_text.delta",
            "response.output_text.delta",
            "response.output_text.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.completed",
        ]
    );
    assert_eq!(events[0].data["response"]["status"], "in_progress");
    assert_eq!(events[0].data["response"]["output"], json!([]));
    assert_eq!(events[2].data["item"]["status"], "in_progress");
    assert_eq!(events[2].data["item"]["content"], json!([]));
    assert_eq!(events[6].data["text"], "Hi there");
    assert_eq!(response["status"], "completed");
    assert_eq!(response["id"], "resp_abc");
    assert_eq!(response["object"], "response");
    let msg = &response["output"][0];
    assert_eq!(msg["type"], "message");
    assert_eq!(msg["role"], "assistant");
    assert!(msg["id"].as_str().unwrap().starts_with("msg_"));
    assert_eq!(
        msg["content"],
        json!([{"type": "output_text", "annotations": [], "logprobs": [], "text": "Hi there"}])
    );
    assert_eq!(
        response["usage"],
        json!({
            "input_tokens": 14, "input_tokens_details": {"cached_tokens": 4},
            "output_tokens": 30, "output_tokens_details": {"reasoning_tokens": 7},
            "total_tokens": 44,
        })
    );
    assert_eq!(events.last().unwrap().data["response"], response);
}

#[test]
fn reasoning_content_becomes_a_summary_before_the_message() {
    let (events, response) = run(&[
        chunk(
            json!({"role": "assistant", "content": null, "reasoning_content": "Let me"}),
            None,
        ),
        chunk(json!({"content": "", "reasoning_content": " think"}), None),
        chunk(json!({"content": "9.8", "reasoning_content": null}), None),
        chunk(json!({}), Some("stop")),
    ]);
    assert_eq!(
        kinds(&events)[2..],
        [
            "response.output_item.added",
            "response.reasoning_summary_part.added",
            "response.reasoning_summary_text.delta",
            "response.reasoning_summary_text.delta",
            "response.reasoning_summary_text.done",
            "response.reasoning_summary_part.done",
            "response.output_item.done",
            "response.output_item.added",
            "response.content_part.added",
            "response.output_text.delta",
            "response.output_text.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.completed",
        ]
    );
    assert_eq!(
        events[2].data["item"],
        json!({"id": events[2].data["item"]["id"], "type": "reasoning", "summary": []})
    );
    let rs = &response["output"][0];
    assert!(rs["id"].as_str().unwrap().starts_with("rs_"));
    assert_eq!(
        rs["summary"],
        json!([{"type": "summary_text", "text": "Let me think"}])
    );
    assert_eq!(response["output"][1]["content"][0]["text"], "9.8");
    assert_eq!(
        response["output"][1]["id"].as_str().unwrap().len(),
        rs["id"].as_str().unwrap().len() + 1
    );
    // No usage chunk arrived: usage is null rather than invented.
    assert_eq!(response["usage"], Value::Null);
}

#[test]
fn openrouter_style_reasoning_field_is_read_too() {
    let (_, response) = run(&[
        chunk(json!({"reasoning": "hmm"}), None),
        chunk(json!({"content": "ok"}), Some("stop")),
    ]);
    assert_eq!(response["output"][0]["summary"][0]["text"], "hmm");
}

#[test]
fn tool_calls_become_function_call_items() {
    let (events, response) = run(&[
        chunk(
            json!({"role": "assistant", "content": null, "tool_calls": [
            {"index": 0, "id": "call_A", "type": "function", "function": {"name": "get_weather", "arguments": ""}}]}),
            None,
        ),
        chunk(
            json!({"tool_calls": [{"index": 0, "function": {"arguments": "{\"city\":"}}]}),
            None,
        ),
        chunk(
            json!({"tool_calls": [{"index": 0, "function": {"arguments": "\"Paris\"}"}}]}),
            None,
        ),
        chunk(
            json!({"tool_calls": [
            {"index": 1, "id": "call_B", "type": "function", "function": {"name": "get_time", "arguments": "{}"}}]}),
            None,
        ),
        chunk(json!({}), Some("tool_calls")),
        usage_chunk(),
    ]);
    assert_eq!(
        kinds(&events)[2..],
        [
            "response.output_item.added",
            "response.function_call_arguments.delta",
            "response.function_call_arguments.delta",
            "response.function_call_arguments.done",
            "response.output_item.done",
            "response.output_item.added",
            "response.function_call_arguments.delta",
            "response.function_call_arguments.done",
            "response.output_item.done",
            "response.completed",
        ]
    );
    assert_eq!(events[2].data["item"]["arguments"], "");
    assert_eq!(events[2].data["item"]["name"], "get_weather");
    assert_eq!(events[5].data["name"], "get_weather");
    assert_eq!(events[5].data["arguments"], "{\"city\":\"Paris\"}");
    let fc = &response["output"][0];
    assert_eq!(fc["type"], "function_call");
    assert_eq!(fc["call_id"], "call_A");
    assert!(fc["id"].as_str().unwrap().starts_with("fc_"));
    assert_eq!(fc["status"], "completed");
    assert_eq!(fc["arguments"], "{\"city\":\"Paris\"}");
    assert_eq!(response["output"][1]["call_id"], "call_B");
    assert_eq!(response["output"][1]["arguments"], "{}");
    assert_eq!(response["status"], "completed");
}

#[test]
fn text_then_tool_call_closes_the_message_first() {
    let (events, response) = run(&[
        chunk(json!({"content": "Let me check."}), None),
        chunk(
            json!({"tool_calls": [{"index": 0, "id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]}),
            None,
        ),
        chunk(json!({}), Some("tool_calls")),
    ]);
    let k = kinds(&events);
    let done = k
        .iter()
        .position(|e| *e == "response.output_item.done")
        .unwrap();
    let second_added = k
        .iter()
        .rposition(|e| *e == "response.output_item.added")
        .unwrap();
    assert!(done < second_added);
    assert_eq!(response["output"][0]["type"], "message");
    assert_eq!(response["output"][1]["type"], "function_call");
}

#[test]
fn length_finish_is_incomplete_max_output_tokens() {
    let (events, response) = run(&[
        chunk(json!({"content": "Alabama, Alas"}), None),
        chunk(json!({}), Some("length")),
        usage_chunk(),
    ]);
    let last = events.last().unwrap();
    assert_eq!(last.kind, "response.incomplete");
    assert_eq!(response["status"], "incomplete");
    assert_eq!(
        response["incomplete_details"],
        json!({"reason": "max_output_tokens"})
    );
    assert_eq!(response["output"][0]["status"], "incomplete");
    assert_eq!(response["completed_at"], Value::Null);
}

#[test]
fn content_filter_finish_is_incomplete_content_filter() {
    let (events, response) = run(&[chunk(json!({"content": "x"}), Some("content_filter"))]);
    assert_eq!(events.last().unwrap().kind, "response.incomplete");
    assert_eq!(response["incomplete_details"]["reason"], "content_filter");
}

#[test]
fn refusal_uses_a_refusal_part() {
    let (events, response) = run(&[
        chunk(
            json!({"role": "assistant", "content": null, "refusal": ""}),
            None,
        ),
        chunk(json!({"refusal": "I'm sorry"}), None),
        chunk(json!({"refusal": ", no."}), None),
        chunk(json!({}), Some("stop")),
    ]);
    assert_eq!(
        kinds(&events)[2..],
        [
            "response.output_item.added",
            "response.content_part.added",
            "response.refusal.delta",
            "response.refusal.delta",
            "response.refusal.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.completed",
        ]
    );
    assert_eq!(
        events[3].data["part"],
        json!({"type": "refusal", "refusal": ""})
    );
    assert_eq!(
        response["output"][0]["content"],
        json!([{"type": "refusal", "refusal": "I'm sorry, no."}])
    );
}

#[test]
fn fail_closes_open_items_and_emits_error_then_failed() {
    let mut b = StreamBuilder::new(ctx());
    let mut out = Vec::new();
    b.push_chunk(&chunk(json!({"content": "par"}), None), &mut out);
    b.fail("server_error", "upstream went away", &mut out);
    // Nothing after the terminal event.
    b.push_chunk(&chunk(json!({"content": "tial"}), None), &mut out);
    b.finish(None, &mut out);
    check_invariants(&out);
    let k = kinds(&out);
    assert_eq!(k[k.len() - 2..], ["error", "response.failed"]);
    assert_eq!(out[out.len() - 2].data["code"], "server_error");
    let r = b.response();
    assert_eq!(r["status"], "failed");
    assert_eq!(
        r["error"],
        json!({"code": "server_error", "message": "upstream went away"})
    );
    assert_eq!(r["output"][0]["status"], "incomplete");
    assert_eq!(r["output"][0]["content"][0]["text"], "par");
}

#[test]
fn upstream_error_frame_fails_the_response() {
    let mut b = StreamBuilder::new(ctx());
    let mut out = Vec::new();
    b.push_chunk(
        &json!({"error": {"message": "overloaded", "type": "server_error", "code": 502}}),
        &mut out,
    );
    b.finish(None, &mut out);
    check_invariants(&out);
    assert_eq!(out.last().unwrap().kind, "response.failed");
    assert_eq!(b.response()["error"]["message"], "overloaded");
}

#[test]
fn finish_without_start_or_chunks_still_opens_with_created() {
    let mut b = StreamBuilder::new(ctx());
    let mut out = Vec::new();
    b.finish(None, &mut out);
    check_invariants(&out);
    assert_eq!(
        kinds(&out),
        [
            "response.created",
            "response.in_progress",
            "response.completed"
        ]
    );
    b.start(&mut out);
    assert_eq!(out.len(), 3, "start after the end emits nothing");
}

#[test]
fn finish_usage_argument_wins_and_completed_at_is_reported() {
    let mut b = StreamBuilder::new(ctx());
    let mut out = Vec::new();
    b.push_chunk(&chunk(json!({"content": "x"}), Some("stop")), &mut out);
    b.set_completed_at(1_700_000_005);
    b.finish(
        Some(&json!({"prompt_tokens": 3, "completion_tokens": 2, "prompt_cache_hit_tokens": 1})),
        &mut out,
    );
    let r = b.response();
    assert_eq!(r["usage"]["total_tokens"], 5);
    assert_eq!(r["usage"]["input_tokens_details"]["cached_tokens"], 1);
    assert_eq!(r["completed_at"], 1_700_000_005);
}

#[test]
fn response_has_every_required_field() {
    let (_, r) = run(&[chunk(json!({"content": "x"}), Some("stop"))]);
    for key in [
        "id",
        "object",
        "created_at",
        "error",
        "incomplete_details",
        "instructions",
        "model",
        "tools",
        "output",
        "parallel_tool_calls",
        "metadata",
        "tool_choice",
        "temperature",
        "top_p",
        "status",
        "usage",
        "reasoning",
        "text",
        "truncation",
        "store",
        "previous_response_id",
        "max_output_tokens",
    ] {
        assert!(r.get(key).is_some(), "missing {key}");
    }
    assert!(r.get("output_text").is_none());
    assert_eq!(r["text"]["format"], json!({"type": "text"}));
}

#[test]
fn encode_sse_is_exact() {
    let e = Event {
        kind: "response.output_text.delta".into(),
        data: json!({"type": "response.output_text.delta", "sequence_number": 4, "delta": "a\nb"}),
    };
    let mut out = Vec::new();
    encode_sse(&e, &mut out);
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"sequence_number\":4,\"delta\":\"a\\nb\"}\n\n"
    );
}

#[test]
fn nonstreaming_completion_matches_the_stream_result() {
    let completion = json!({
        "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "deepseek-reasoner",
        "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
            "role": "assistant", "reasoning_content": "think", "content": "Calling.",
            "tool_calls": [{"id": "call_9", "type": "function", "function": {"name": "f", "arguments": "{\"a\":1}"}}],
        }}],
        "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
    });
    let r = chat_completion_to_response(&completion, ctx());
    let types: Vec<&str> = r["output"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["type"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["reasoning", "message", "function_call"]);
    assert_eq!(r["output"][2]["call_id"], "call_9");
    assert_eq!(r["output"][2]["arguments"], "{\"a\":1}");
    assert_eq!(r["status"], "completed");
    assert_eq!(r["usage"]["output_tokens"], 5);

    let cut = json!({"choices": [{"index": 0, "finish_reason": "length", "message": {"role": "assistant", "content": "abc"}}]});
    let r = chat_completion_to_response(&cut, ctx());
    assert_eq!(r["status"], "incomplete");
    assert_eq!(r["output"][0]["status"], "incomplete");
}

// ---- request_to_chat ----

fn plan(req: Value) -> ChatPlan {
    request_to_chat(&req, &[]).expect("valid request")
}

fn err(req: Value) -> RequestError {
    request_to_chat(&req, &[]).expect_err("invalid request")
}

#[test]
fn string_input_and_instructions() {
    let p = plan(json!({"model": "gpt-4o", "input": "hi", "instructions": "Be brief."}));
    assert_eq!(
        p.body["messages"],
        json!([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}])
    );
    assert_eq!(p.model, "gpt-4o");
    assert!(!p.stream);
    assert!(p.store);
    assert_eq!(p.body["stream"], false);
    assert!(p.body.get("stream_options").is_none());
    assert_eq!(p.metadata, json!({}));
    assert_eq!(p.echo.instructions, "Be brief.");
}

#[test]
fn streaming_always_asks_for_usage() {
    let p = plan(
        json!({"model": "m", "input": "hi", "stream": true, "stream_options": {"include_obfuscation": false}}),
    );
    assert!(p.stream);
    assert_eq!(p.body["stream_options"], json!({"include_usage": true}));
}

#[test]
fn message_items_with_parts() {
    let p = plan(json!({"model": "m", "input": [
        {"role": "developer", "content": "Use tools."},
        {"type": "message", "role": "user", "content": [
            {"type": "input_text", "text": "What is this?"},
            {"type": "input_image", "image_url": "https://x/y.png", "detail": "low"}]},
        {"role": "assistant", "content": [{"type": "output_text", "text": "A cat."}]},
        {"role": "user", "content": [{"type": "input_text", "text": "Sure?"}]},
    ]}));
    assert_eq!(
        p.body["messages"],
        json!([
            {"role": "system", "content": "Use tools."},
            {"role": "user", "content": [
                {"type": "text", "text": "What is this?"},
                {"type": "image_url", "image_url": {"url": "https://x/y.png", "detail": "low"}}]},
            {"role": "assistant", "content": "A cat."},
            {"role": "user", "content": "Sure?"},
        ])
    );
}

#[test]
fn function_call_items_become_tool_calls_and_tool_messages() {
    let p = plan(json!({"model": "m", "input": [
        {"role": "user", "content": "multiply"},
        {"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": "need tool"}]},
        {"type": "function_call", "call_id": "call_1", "name": "mul", "arguments": "{\"a\":1}"},
        {"type": "function_call", "call_id": "call_2", "name": "mul", "arguments": "{\"a\":2}"},
        {"type": "function_call_output", "call_id": "call_1", "output": "1"},
        {"type": "function_call_output", "call_id": "call_2", "output": [{"type": "input_text", "text": "2"}]},
    ]}));
    assert_eq!(
        p.body["messages"],
        json!([
            {"role": "user", "content": "multiply"},
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "mul", "arguments": "{\"a\":1}"}},
                {"id": "call_2", "type": "function", "function": {"name": "mul", "arguments": "{\"a\":2}"}}],
             "reasoning_content": "need tool"},
            {"role": "tool", "tool_call_id": "call_1", "content": "1"},
            {"role": "tool", "tool_call_id": "call_2", "content": "2"},
        ])
    );
}

#[test]
fn tools_are_nested_and_hosted_tools_rejected() {
    let p = plan(json!({"model": "m", "input": "x", "tools": [
        {"type": "function", "name": "mul", "description": "Multiply.", "parameters": {"type": "object"}, "strict": true}],
        "tool_choice": {"type": "function", "name": "mul"}, "parallel_tool_calls": false}));
    assert_eq!(
        p.body["tools"],
        json!([{"type": "function", "function": {"name": "mul", "description": "Multiply.", "parameters": {"type": "object"}, "strict": true}}])
    );
    assert_eq!(
        p.body["tool_choice"],
        json!({"type": "function", "function": {"name": "mul"}})
    );
    assert_eq!(p.body["parallel_tool_calls"], false);
    assert_eq!(p.echo.tools[0]["name"], "mul");
    assert!(!p.echo.parallel_tool_calls);

    // A hosted tool is dropped and reported; forcing one cannot be honoured.
    let p = plan(
        json!({"model": "m", "input": "x", "tools": [{"type": "web_search"}],
        "tool_choice": "auto", "parallel_tool_calls": true}),
    );
    assert_eq!(p.dropped, vec!["tools[0]:web_search"]);
    for key in ["tools", "tool_choice", "parallel_tool_calls"] {
        assert!(p.body.get(key).is_none(), "{key} without tools: {}", p.body);
    }
    let e = err(json!({"model": "m", "input": "x", "tool_choice": {"type": "file_search"}}));
    assert_eq!(e.param, "tool_choice");
}

#[test]
fn sampling_and_reasoning_fields() {
    let p = plan(json!({
        "model": "m", "input": "x", "max_output_tokens": 50, "temperature": 0.2, "top_p": 0.9,
        "reasoning": {"effort": "low", "summary": "auto"}, "user": "u1", "safety_identifier": "s1",
        "text": {"format": {"type": "json_schema", "name": "Out", "schema": {"type": "object"}, "strict": true}, "verbosity": "low"},
        "metadata": {"k": "v"}, "store": false, "previous_response_id": "resp_prev",
        "include": ["reasoning.encrypted_content"], "truncation": "auto", "thinking": {"type": "enabled"},
    }));
    let b = &p.body;
    assert_eq!(b["max_completion_tokens"], 50);
    assert!(b.get("max_output_tokens").is_none());
    assert_eq!(b["temperature"], 0.2);
    assert_eq!(b["top_p"], 0.9);
    assert_eq!(b["reasoning_effort"], "low");
    assert_eq!(b["user"], "u1");
    assert_eq!(b["safety_identifier"], "s1");
    assert_eq!(b["verbosity"], "low");
    assert_eq!(
        b["response_format"],
        json!({"type": "json_schema", "json_schema": {"name": "Out", "schema": {"type": "object"}, "strict": true}})
    );
    assert_eq!(
        b["thinking"],
        json!({"type": "enabled"}),
        "unknown fields forwarded"
    );
    for gone in [
        "metadata",
        "store",
        "previous_response_id",
        "include",
        "truncation",
        "reasoning",
        "text",
        "input",
    ] {
        assert!(b.get(gone).is_none(), "{gone} must not go upstream");
    }
    assert_eq!(p.max_output_tokens, Some(50));
    assert!(!p.store);
    assert_eq!(p.previous_response_id.as_deref(), Some("resp_prev"));
    assert_eq!(p.metadata, json!({"k": "v"}));
    assert_eq!(
        p.echo.reasoning,
        json!({"effort": "low", "summary": "auto"})
    );
    assert_eq!(p.echo.truncation, "auto");
}

#[test]
fn what_only_a_native_route_carries_is_marked_not_refused() {
    let p = plan(json!({"model": "m", "input": [
        {"type": "item_reference", "id": "msg_1"},
        {"role": "user", "content": "and then?"}]}));
    assert_eq!(p.needs_native.expect("marked").param, "input[0].type");
    assert_eq!(
        p.body["messages"],
        json!([{"role": "user", "content": "and then?"}])
    );
    let p = plan(json!({"model": "m", "prompt": {"id": "pmpt_1"}}));
    assert_eq!(p.needs_native.expect("marked").param, "prompt");
    let p = plan(json!({"model": "m", "conversation": "conv_1", "input": "hi"}));
    assert_eq!(p.needs_native.expect("marked").param, "conversation");
    assert!(plan(json!({"model": "m", "input": "hi"}))
        .needs_native
        .is_none());
}

#[test]
fn missing_model_or_input_is_a_request_error() {
    assert_eq!(err(json!({"input": "x"})).param, "model");
    assert_eq!(err(json!({"model": "m"})).param, "input");
    assert_eq!(err(json!({"model": "m", "input": []})).param, "input");
    assert_eq!(err(json!({"model": 3, "input": "x"})).param, "model");
    assert_eq!(err(json!("nope")).param, "body");
    assert_eq!(
        err(json!({"model": "m", "input": [{"role": "wizard", "content": "x"}]})).param,
        "input[0].role"
    );
    assert_eq!(
        err(json!({"model": "m", "input": "x", "max_output_tokens": -1})).param,
        "max_output_tokens"
    );
    assert_eq!(
        err(json!({"model": "m", "input": "x", "background": true, "store": false})).param,
        "background"
    );
    let e = err(
        json!({"model": "m", "input": [{"role": "user", "content": [{"type": "input_image", "file_id": "file_1"}]}]}),
    );
    assert_eq!(e.param, "input[0].content[0].file_id");
    assert!(!e.to_string().is_empty());
}

#[test]
fn previous_response_id_without_input_uses_history() {
    let history = vec![
        json!({"role": "user", "content": "hi"}),
        json!({"role": "assistant", "content": "hello"}),
    ];
    let p = request_to_chat(
        &json!({"model": "m", "previous_response_id": "resp_1", "instructions": "Be kind."}),
        &history,
    )
    .unwrap();
    assert_eq!(p.messages().len(), 3);
    assert_eq!(p.messages()[0]["role"], "system");
    assert_eq!(p.messages()[1], history[0]);
    // With neither input nor history there is nothing to send.
    let e = request_to_chat(
        &json!({"model": "m", "previous_response_id": "resp_1"}),
        &[],
    )
    .unwrap_err();
    assert_eq!(e.param, "input");
}

#[test]
fn conversation_chain_round_trips_through_previous_response_id() {
    // Turn 1: the model calls a tool.
    let p1 = plan(json!({"model": "m", "input": "What is 2*3?", "instructions": "Use tools."}));
    let completion = json!({"choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
        "role": "assistant", "content": null, "reasoning_content": "use mul",
        "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "mul", "arguments": "{}"}}]}}]});
    let mut c = ctx();
    c.echo = p1.echo.clone();
    let r1 = chat_completion_to_response(&completion, c);
    let stored = conversation_after(p1.messages(), &r1);
    assert_eq!(
        stored,
        vec![
            json!({"role": "user", "content": "What is 2*3?"}),
            json!({"role": "assistant", "content": null, "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "mul", "arguments": "{}"}}],
                "reasoning_content": "use mul"}),
        ],
        "instructions are not carried over; the tool call is"
    );
    // Turn 2: the tool result, chained.
    let p2 = request_to_chat(
        &json!({"model": "m", "previous_response_id": "resp_abc", "input": [
            {"type": "function_call_output", "call_id": "call_1", "output": "6"}]}),
        &stored,
    )
    .unwrap();
    let roles: Vec<&str> = p2
        .messages()
        .iter()
        .map(|m| m["role"].as_str().unwrap())
        .collect();
    assert_eq!(roles, ["user", "assistant", "tool"]);
    // A plain text answer is stored as an assistant string.
    let r2 = chat_completion_to_response(
        &json!({"choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "6"}}]}),
        ctx(),
    );
    let stored2 = conversation_after(p2.messages(), &r2);
    assert_eq!(
        stored2.last().unwrap(),
        &json!({"role": "assistant", "content": "6"})
    );
}

/// Which item a tool-call fragment continues (found by index and call id, no longer by scanning
/// every item: 40,000 calls took 1 s, growing as the square): the open call with its index, a new
/// item when a new id reuses an index, and a late fragment of a closed call goes to that call.
#[test]
fn tool_call_fragments_find_their_call_by_index_and_id() {
    let call = |index: u64, id: Option<&str>, args: &str| {
        let mut c = json!({"index": index, "function": {"arguments": args}});
        if let Some(id) = id {
            c["id"] = json!(id);
            c["function"]["name"] = json!("f");
        }
        chunk(json!({"tool_calls": [c]}), None)
    };
    let mut chunks = Vec::new();
    for i in 0..1_000u64 {
        chunks.push(call(i, Some(&format!("call_{i}")), "{"));
        chunks.push(call(i, None, "}"));
    }
    chunks.push(call(0, Some("call_again"), "[")); // a new call reusing index 0
    chunks.push(call(0, None, "]"));
    chunks.push(call(7, Some("call_7"), " ")); // late: call_7 is closed
    chunks.push(chunk(json!({}), Some("tool_calls")));
    let (_, response) = run(&chunks);
    let output = response["output"].as_array().unwrap();
    assert_eq!(output.len(), 1_001);
    assert_eq!(output[0]["call_id"], "call_0");
    assert_eq!(output[0]["arguments"], "{}");
    assert_eq!(output[7]["arguments"], "{} ");
    assert_eq!(output[999]["call_id"], "call_999");
    assert_eq!(output[1_000]["call_id"], "call_again");
    assert_eq!(output[1_000]["arguments"], "[]");
}

/// The bytes a stream of chunks gives through the value path: `push_chunk` and `encode_sse`.
fn value_path_bytes(chunks: &[Value]) -> Vec<u8> {
    let mut b = StreamBuilder::new(ctx());
    let mut events = Vec::new();
    b.start(&mut events);
    for c in chunks {
        b.push_chunk(c, &mut events);
    }
    b.finish(None, &mut events);
    let mut bytes = Vec::new();
    for e in &events {
        encode_sse(e, &mut bytes);
    }
    bytes
}

/// The same through the relay's hot path: the lifecycle events and each chunk's events written
/// straight to bytes, the chunk read as a `ChunkView` (a `Value` only where the view cannot read the chunk).
/// Returns the bytes and how many chunks took the borrowed path.
fn view_path_bytes(chunks: &[Value]) -> (Vec<u8>, usize) {
    let mut b = StreamBuilder::new(ctx());
    let mut events = Vec::new();
    let mut bytes = Vec::new();
    let mut borrowed = 0;
    b.start_sse(&mut bytes);
    for c in chunks {
        for e in events.drain(..) {
            encode_sse(&e, &mut bytes);
        }
        let data = serde_json::to_vec(c).unwrap();
        match crate::openai::ChunkView::parse(&data) {
            Some(view) if !view.has_message() => {
                borrowed += 1;
                b.push_chunk_view(&view, &mut bytes);
            }
            _ => b.push_chunk(c, &mut events),
        }
    }
    b.finish(None, &mut events);
    for e in events.drain(..) {
        encode_sse(&e, &mut bytes);
    }
    (bytes, borrowed)
}

/// The borrowed and typed inputs run the machine the value input runs: same events, same bytes,
/// on every shape the value path reads (escapes, both reasoning names, refusals, several tool
/// calls per chunk, a reused index, late fragments, usage, an error frame, odd field types).
#[test]
fn borrowed_and_typed_chunks_write_the_bytes_of_the_value_path() {
    let streams: Vec<Vec<Value>> = vec![
        vec![
            chunk(json!({"role": "assistant", "content": ""}), None),
            chunk(json!({"reasoning_content": "think \"hard\"\n"}), None),
            chunk(json!({"reasoning": "more"}), None),
            chunk(json!({"content": "Hé \u{1F600} <b>"}), None),
            chunk(json!({"refusal": "no"}), None),
            chunk(json!({"content": "back"}), None),
            chunk(
                json!({"tool_calls": [
                    {"index": 0, "id": "call_a", "type": "function",
                     "function": {"name": "f", "arguments": "{\"x\":"}},
                    {"index": 1, "id": "call_b", "type": "function",
                     "function": {"name": "g", "arguments": ""}}]}),
                None,
            ),
            chunk(
                json!({"tool_calls": [{"index": 0, "function": {"arguments": "1}"}}]}),
                None,
            ),
            chunk(
                json!({"tool_calls": [{"index": 1, "function": {"arguments": "{}"}}]}),
                None,
            ),
            chunk(
                json!({"tool_calls": [{"index": 1, "id": "call_c", "function": {"name": "h"}}]}),
                None,
            ),
            chunk(json!({}), Some("length")),
            usage_chunk(),
        ],
        vec![
            // No choice index (read as 0); choice 1 before choice 0; a refusal that is not a
            // string; content that is not a string (only the value path reads that chunk).
            json!({"choices": [{"delta": {"content": "a"}}]}),
            json!({"choices": [{"index": 1, "delta": {"content": "other"}},
                               {"index": 0, "delta": {"content": "b", "refusal": {"x": 1}}}]}),
            json!({"choices": [{"index": 0, "delta": {"content": ["not", "text"]}}]}),
            json!({"choices": [{"index": "0", "delta": {"content": "c"}}]}),
            json!({"choices": [{"index": 0, "message": {"content": "whole"}}]}),
            chunk(json!({}), Some("stop")),
        ],
        vec![
            chunk(json!({"content": "partial"}), None),
            json!({"error": {"message": "Overloaded", "type": "overloaded_error"}}),
            chunk(json!({"content": "after"}), None),
        ],
    ];
    for chunks in &streams {
        let (bytes, borrowed) = view_path_bytes(chunks);
        assert_eq!(
            String::from_utf8(bytes).unwrap(),
            String::from_utf8(value_path_bytes(chunks)).unwrap()
        );
        assert!(
            borrowed + 2 >= chunks.len(),
            "{borrowed} of {}",
            chunks.len()
        );
    }

    // Typed chunks, as the Anthropic translation yields them.
    use crate::chat_chunk::{ChatChunk, Delta, Stamp};
    let stamp = std::sync::Arc::new(Stamp::default());
    let typed = |delta: Delta, finish: Option<&'static str>| ChatChunk {
        stamp: stamp.clone(),
        role: false,
        delta,
        finish_reason: finish.map(crate::finish::FinishReason::from_openai),
    };
    let typed_chunks = [
        typed(Delta::Content(String::new()), None),
        typed(Delta::ReasoningContent("r".into()), None),
        typed(Delta::ReasoningSignature("sig".into()), None),
        typed(Delta::Content("t".into()), None),
        typed(
            Delta::ToolCallStart {
                index: 0,
                id: "toolu_1".into(),
                name: "f".into(),
            },
            None,
        ),
        typed(
            Delta::ToolCallArguments {
                index: 0,
                arguments: "{}".into(),
            },
            None,
        ),
        typed(Delta::Empty, Some("tool_calls")),
    ];
    let values: Vec<Value> = typed_chunks.iter().map(ChatChunk::to_value).collect();
    let mut b = StreamBuilder::new(ctx());
    let mut events = Vec::new();
    let mut bytes = Vec::new();
    b.start_sse(&mut bytes);
    for c in &typed_chunks {
        b.push_chat_chunk(c, &mut bytes);
    }
    b.finish(None, &mut events);
    for e in events.drain(..) {
        encode_sse(&e, &mut bytes);
    }
    assert_eq!(
        String::from_utf8(bytes).unwrap(),
        String::from_utf8(value_path_bytes(&values)).unwrap()
    );
}

// Tolerant in (issue 20): what Codex CLI and other Responses clients send.

fn codex_request() -> Value {
    let text = include_str!("../../tests/fixtures/codex_request.json");
    serde_json::from_str(text).expect("the recorded Codex request is JSON")
}

#[test]
fn the_recorded_codex_request_translates() {
    let req = codex_request();
    let p = plan(req.clone());
    // The namespace's five tools are flattened, the hosted web_search dropped and reported.
    assert_eq!(p.dropped, vec!["tools[8]:web_search"]);
    let names: Vec<&str> = p.body["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["function"]["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"exec_command"), "{names:?}");
    for inner in [
        "close_agent",
        "resume_agent",
        "send_input",
        "spawn_agent",
        "wait_agent",
    ] {
        let flat = format!("multi_agent_v1__{inner}");
        assert!(names.contains(&flat.as_str()), "{flat} in {names:?}");
        assert_eq!(
            p.echo.tool_names.origin(&flat),
            Some(&ToolOrigin::Namespaced {
                namespace: "multi_agent_v1".into(),
                name: inner.into()
            })
        );
    }
    assert_eq!(names.len(), 8 + 5 - 1);
    assert!(names.iter().all(|n| n.len() <= 64));
    // Developer messages become system messages; the user's words stay last.
    let messages = p.messages();
    assert_eq!(messages[0]["role"], "system");
    assert_eq!(messages[1]["role"], "system");
    assert_eq!(messages.last().unwrap()["role"], "user");
    assert_eq!(
        messages.last().unwrap()["content"],
        "Read notes.txt and quote it"
    );
    // Gateway-side fields stay here; the cache key goes up (OpenAI chat takes it).
    for key in ["client_metadata", "include", "store", "reasoning"] {
        assert!(p.body.get(key).is_none(), "{key} forwarded: {}", p.body);
    }
    assert_eq!(p.body["prompt_cache_key"], req["prompt_cache_key"]);
    assert_eq!(p.body["parallel_tool_calls"], true);
    assert_eq!(p.body["tool_choice"], "auto");
    assert!(!p.store);
    assert_eq!(p.echo.reasoning["summary"], "auto");
    // The echo keeps the tools as the client sent them.
    assert_eq!(p.echo.tools, req["tools"]);
}

fn namespace_ctx() -> ResponseContext {
    let p = plan(json!({"model": "m", "input": "x", "tools": [
        {"type": "function", "name": "exec_command", "parameters": {"type": "object"}},
        {"type": "namespace", "name": "multi_agent_v1", "description": "Sub-agents.", "tools": [
            {"type": "function", "name": "spawn_agent", "parameters": {"type": "object"}}]},
        {"type": "custom", "name": "apply_patch", "description": "Patch files.",
         "format": {"type": "grammar", "syntax": "lark", "definition": "start: /.+/"}},
        {"type": "web_search", "external_web_access": true}]}));
    assert_eq!(p.dropped, vec!["tools[3]:web_search"]);
    assert_eq!(
        p.body["tools"][2]["function"]["parameters"]["required"],
        json!(["input"])
    );
    assert!(p.body["tools"][2]["function"]["description"]
        .as_str()
        .unwrap()
        .contains("start: /.+/"));
    ResponseContext::new("resp_abc", "demo-chat", 1_700_000_000, p.echo)
}

fn call_chunk(index: u64, id: &str, name: &str, args: &str) -> Value {
    chunk(
        json!({"tool_calls": [{"index": index, "id": id, "type": "function",
            "function": {"name": name, "arguments": args}}]}),
        None,
    )
}

#[test]
fn namespaced_and_custom_calls_are_named_back_in_the_stream() {
    let mut b = StreamBuilder::new(namespace_ctx());
    let mut out = Vec::new();
    for c in [
        call_chunk(0, "call_1", "multi_agent_v1__spawn_agent", "{\"task\":"),
        chunk(
            json!({"tool_calls": [{"index": 0, "function": {"arguments": "\"go\"}"}}]}),
            None,
        ),
        call_chunk(1, "call_2", "apply_patch", "{\"input\":\"*** Begin"),
        chunk(
            json!({"tool_calls": [{"index": 1, "function": {"arguments": " Patch\"}"}}]}),
            None,
        ),
        call_chunk(2, "call_3", "exec_command", "{}"),
        chunk(json!({}), Some("tool_calls")),
    ] {
        b.push_chunk(&c, &mut out);
    }
    b.finish(Some(&usage_chunk()["usage"]), &mut out);
    check_invariants(&out);
    let added: Vec<&Value> = out
        .iter()
        .filter(|e| e.kind == "response.output_item.done")
        .map(|e| &e.data["item"])
        .collect();
    assert_eq!(added[0]["type"], "function_call");
    assert_eq!(added[0]["name"], "spawn_agent");
    assert_eq!(added[0]["namespace"], "multi_agent_v1");
    assert_eq!(added[0]["arguments"], "{\"task\":\"go\"}");
    assert_eq!(added[1]["type"], "custom_tool_call");
    assert_eq!(added[1]["name"], "apply_patch");
    assert_eq!(added[1]["input"], "*** Begin Patch");
    assert_eq!(added[1]["call_id"], "call_2");
    assert!(added[1]["id"].as_str().unwrap().starts_with("ctc_"));
    assert_eq!(added[2]["name"], "exec_command");
    assert!(added[2].get("namespace").is_none());
    // The custom call's input goes out as its own events, no function-call argument events.
    let k = kinds(&out);
    assert!(k.contains(&"response.custom_tool_call_input.done"));
    let arg_deltas = out
        .iter()
        .filter(|e| e.kind == "response.function_call_arguments.delta")
        .count();
    assert_eq!(arg_deltas, 3, "spawn_agent twice, exec_command once");
    let done = out
        .iter()
        .find(|e| e.kind == "response.function_call_arguments.done")
        .unwrap();
    assert_eq!(done.data["name"], "spawn_agent");
    // The final response says the same.
    let response = b.response();
    assert_eq!(response["output"][0]["namespace"], "multi_agent_v1");
    assert_eq!(response["output"][1]["input"], "*** Begin Patch");
}

#[test]
fn namespaced_calls_are_named_back_in_a_whole_answer_and_the_chain() {
    let completion = json!({
        "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "m",
        "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
            "role": "assistant", "content": null, "tool_calls": [
                {"id": "call_1", "type": "function",
                 "function": {"name": "multi_agent_v1__spawn_agent", "arguments": "{}"}},
                {"id": "call_2", "type": "function",
                 "function": {"name": "apply_patch", "arguments": "{\"input\":\"x\"}"}}]}}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7},
    });
    let response = chat_completion_to_response(&completion, namespace_ctx());
    assert_eq!(response["output"][0]["type"], "function_call");
    assert_eq!(response["output"][0]["name"], "spawn_agent");
    assert_eq!(response["output"][0]["namespace"], "multi_agent_v1");
    assert_eq!(response["output"][1]["type"], "custom_tool_call");
    assert_eq!(response["output"][1]["input"], "x");

    // Stored for previous_response_id, the calls are chat calls under the chat names again.
    let conv = conversation_after(&[json!({"role": "user", "content": "x"})], &response);
    let calls = &conv[1]["tool_calls"];
    assert_eq!(calls[0]["function"]["name"], "multi_agent_v1__spawn_agent");
    assert_eq!(calls[1]["function"]["name"], "apply_patch");
    assert_eq!(calls[1]["function"]["arguments"], "{\"input\":\"x\"}");
}

#[test]
fn later_codex_turns_translate_with_what_a_chat_route_cannot_carry_reported() {
    let p = plan(
        json!({"model": "m", "store": false, "include": ["reasoning.encrypted_content"],
        "input": [
            {"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "be brief"}]},
            {"type": "message", "role": "user", "content": [
                {"type": "input_text", "text": "read it"}, {"type": "input_video", "url": "v"}]},
            {"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": "plan"}],
             "encrypted_content": "gAAAA..."},
            {"type": "function_call", "call_id": "c1", "name": "spawn_agent",
             "namespace": "multi_agent_v1", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "c1", "output": [
                {"type": "input_text", "text": "done"}, {"type": "input_image", "image_url": "data:"}]},
            {"type": "custom_tool_call", "call_id": "c2", "name": "apply_patch", "input": "P"},
            {"type": "custom_tool_call_output", "call_id": "c2", "output": "ok"},
            {"type": "web_search_call", "id": "ws_1", "status": "completed",
             "action": {"type": "search", "query": "q"}},
            {"type": "message", "role": "user", "content": "next"}]}),
    );
    assert_eq!(
        p.dropped,
        vec![
            "input[1].content[1]:input_video",
            "input[2]:reasoning.encrypted_content",
            "input[4].output[1]:input_image",
            "input[7]:web_search_call",
        ]
    );
    let m = p.messages();
    assert_eq!(m[0], json!({"role": "system", "content": "be brief"}));
    assert_eq!(m[1]["content"], "read it");
    assert_eq!(
        m[2]["tool_calls"][0]["function"]["name"],
        "multi_agent_v1__spawn_agent"
    );
    assert_eq!(m[2]["reasoning_content"], "plan");
    assert_eq!(
        m[3],
        json!({"role": "tool", "tool_call_id": "c1", "content": "done"})
    );
    assert_eq!(
        m[4]["tool_calls"][0]["function"],
        json!({"name": "apply_patch", "arguments": "{\"input\":\"P\"}"})
    );
    assert_eq!(
        m[5],
        json!({"role": "tool", "tool_call_id": "c2", "content": "ok"})
    );
    assert_eq!(m[6], json!({"role": "user", "content": "next"}));
}

#[test]
fn tool_choice_names_namespaced_and_custom_tools_by_their_chat_names() {
    let tools = json!([
        {"type": "namespace", "name": "ns", "tools": [{"type": "function", "name": "f"}]},
        {"type": "custom", "name": "c"},
        {"type": "web_search"}]);
    let p = plan(json!({"model": "m", "input": "x", "tools": tools,
        "tool_choice": {"type": "function", "name": "f", "namespace": "ns"}}));
    assert_eq!(
        p.body["tool_choice"],
        json!({"type": "function", "function": {"name": "ns__f"}})
    );
    let p = plan(json!({"model": "m", "input": "x", "tools": tools,
        "tool_choice": {"type": "allowed_tools", "mode": "auto", "tools": [
            {"type": "custom", "name": "c"}, {"type": "web_search"}]}}));
    assert_eq!(
        p.body["tool_choice"]["allowed_tools"]["tools"],
        json!([{"type": "function", "function": {"name": "c"}}])
    );
    assert_eq!(
        p.dropped,
        vec!["tools[2]:web_search", "tool_choice.tools[1]:web_search"]
    );
    let e = err(json!({"model": "m", "input": "x", "tools": tools,
        "tool_choice": {"type": "web_search"}}));
    assert_eq!(e.param, "tool_choice");
}

/// An Anthropic route's turn as the chat engine streams it: signed thinking, then a tool call.
fn signed_tool_turn() -> (Vec<Event>, Value) {
    run(&[
        chunk(
            json!({"role": "assistant", "reasoning_content": "Read it."}),
            None,
        ),
        chunk(json!({"reasoning_signature": "SIG=="}), None),
        chunk(
            json!({"tool_calls": [{"index": 0, "id": "toolu_1", "type": "function",
                   "function": {"name": "exec_command", "arguments": "{\"cmd\":\"cat a\"}"}}]}),
            None,
        ),
        chunk(json!({}), Some("tool_calls")),
        usage_chunk(),
    ])
}

#[test]
fn an_anthropic_routes_signed_thinking_rides_in_encrypted_content_and_comes_back() {
    let (events, response) = signed_tool_turn();
    let done = events
        .iter()
        .find(|e| e.kind == "response.output_item.done" && e.data["item"]["type"] == "reasoning")
        .unwrap();
    let carried = done.data["item"]["encrypted_content"].as_str().unwrap();
    assert_eq!(
        crate::reasoning_carrier::unpack(carried),
        Some(("Read it.".into(), "SIG==".into()))
    );
    assert_eq!(response["output"][0]["encrypted_content"], carried);
    // Codex sends the items back with the output (store: false): the chat turn signs its thinking.
    let input = json!([
        {"type": "message", "role": "user", "content": "read a"},
        response["output"][0].clone(),
        response["output"][1].clone(),
        {"type": "function_call_output", "call_id": "toolu_1", "output": "hello"},
    ]);
    let plan =
        request_to_chat(&json!({"model": "m", "store": false, "input": input}), &[]).unwrap();
    let assistant = &plan.messages()[1];
    assert_eq!(assistant["reasoning_content"], "Read it.");
    assert_eq!(assistant["reasoning_signature"], "SIG==");
    assert!(plan.dropped.is_empty(), "{:?}", plan.dropped);
}

#[test]
fn a_stored_chain_keeps_an_anthropic_routes_signed_thinking() {
    let (_, response) = signed_tool_turn();
    // What the gateway stores for `previous_response_id`, and the next turn built on it.
    let first = request_to_chat(&json!({"model": "m", "input": "read a"}), &[]).unwrap();
    let history = conversation_after(first.messages(), &response);
    let next = json!({"model": "m", "previous_response_id": "resp_1",
        "input": [{"type": "function_call_output", "call_id": "toolu_1", "output": "hello"}]});
    let plan = request_to_chat(&next, &history).unwrap();
    let assistant = &plan.messages()[1];
    assert_eq!(assistant["reasoning_content"], "Read it.");
    assert_eq!(assistant["reasoning_signature"], "SIG==", "{assistant}");
    assert_eq!(plan.messages()[2]["role"], "tool");
}
