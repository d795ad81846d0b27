//! Tests of the upstream decoder on both dialects: hand-written streams for every kind of event,
//! and the recorded transcripts in `shared/fixtures/real/` (read in place; skipped loudly, or failed under CI, when the
//! shared folder is absent).

use std::path::PathBuf;

use bytes::Bytes;
use serde_json::{json, Value};

use super::*;

fn event(name: Option<&str>, data: &str) -> sse::Event {
    sse::Event {
        name: name.map(|n| Bytes::copy_from_slice(n.as_bytes())),
        data: Bytes::copy_from_slice(data.as_bytes()),
        raw: Bytes::new(),
    }
}

/// What a relay would see: each event summarised as a short string.
#[derive(Debug, Default)]
struct Seen {
    kinds: Vec<String>,
    /// Every chunk, as JSON, in order.
    chunks: Vec<Value>,
    /// The bytes of every borrowed chunk, as forwarded.
    forwarded: Vec<u8>,
    usage: Option<Usage>,
    usage_chunk: Option<Value>,
    problem: Option<UpstreamProblem>,
}

fn run(decoder: &mut UpstreamDecoder, events: &[sse::Event]) -> Result<Seen, Malformed> {
    let mut seen = Seen::default();
    for e in events {
        for ev in decoder.push(e)? {
            match ev {
                UpstreamEvent::Chunk(c) => {
                    seen.kinds.push(match &c {
                        Chunk::Borrowed { data, .. } => {
                            seen.forwarded.extend_from_slice(data);
                            "chunk".into()
                        }
                        Chunk::Upstream(_) => "value".into(),
                        Chunk::Translated(_) | Chunk::Typed(_) => "translated".into(),
                    });
                    seen.chunks.push(c.into_value());
                }
                UpstreamEvent::Usage { usage, chunk } => {
                    seen.kinds.push("usage".into());
                    seen.usage = usage;
                    seen.usage_chunk = Some(chunk.into_value());
                }
                UpstreamEvent::Finish(r) => seen.kinds.push(format!("finish:{r}")),
                UpstreamEvent::Error(p) => {
                    seen.kinds.push("error".into());
                    seen.problem = Some(p);
                }
                UpstreamEvent::Done => seen.kinds.push("done".into()),
            }
        }
    }
    Ok(seen)
}

fn openai_stream() -> Vec<sse::Event> {
    vec![
        event(
            None,
            r#"{"id":"c1","model":"m","created":1,"choices":[{"index":0,"delta":{"role":"assistant","content":"Hel"},"finish_reason":null}],"usage":null,"x_unknown":1}"#,
        ),
        event(
            None,
            r#"{"id":"c1","model":"m","created":1,"choices":[{"index":0,"delta":{"content":"lo"},"finish_reason":"stop"}]}"#,
        ),
        event(
            None,
            r#"{"id":"c1","model":"m","created":1,"choices":[],"usage":{"prompt_tokens":5,"completion_tokens":2,"total_tokens":7,"prompt_tokens_details":{"cached_tokens":1}}}"#,
        ),
        event(None, "[DONE]"),
    ]
}

#[test]
fn openai_chunks_are_borrowed_and_forwarded_byte_for_byte() {
    let events = openai_stream();
    let mut d = UpstreamDecoder::new(Dialect::OpenAi, Stamp::default());
    let seen = run(&mut d, &events).unwrap();
    assert_eq!(seen.kinds, ["chunk", "chunk", "usage", "done"]);
    let mut want = events[0].data.to_vec();
    want.extend_from_slice(&events[1].data);
    assert_eq!(seen.forwarded, want, "unknown fields and spacing survive");
    assert_eq!(
        seen.usage,
        Some(Usage {
            prompt_tokens: 5,
            completion_tokens: 2,
            cached_tokens: 1,
            ..Usage::default()
        })
    );
    assert_eq!(seen.usage_chunk.unwrap()["choices"], json!([]));
}

#[test]
fn openai_values_classify_the_same_way() {
    let mut d = UpstreamDecoder::new(Dialect::OpenAi, Stamp::default()).with_values();
    let seen = run(&mut d, &openai_stream()).unwrap();
    assert_eq!(seen.kinds, ["value", "value", "usage", "done"]);
    assert_eq!(seen.chunks[0]["x_unknown"], 1);
    assert_eq!(seen.usage.unwrap().prompt_tokens, 5);
}

#[test]
fn a_chunk_with_choices_keeps_its_own_finish_and_usage() {
    let data = r#"{"model":"m","choices":[{"index":0,"delta":{},"finish_reason":"insufficient_system_resource"}],"usage":{"prompt_tokens":1,"completion_tokens":1}}"#;
    let e = event(None, data);
    let mut d = UpstreamDecoder::new(Dialect::OpenAi, Stamp::default());
    let mut got = d.push(&e).unwrap();
    let Some(UpstreamEvent::Chunk(c)) = got.next() else {
        panic!("not a chunk")
    };
    assert_eq!(c.finish_reason(), Some("insufficient_system_resource"));
    assert_eq!(c.upstream_model(), Some("m"));
    assert!(got.next().is_none());
}

#[test]
fn openai_error_objects_in_every_shape() {
    let cases = [
        (
            r#"{"error":{"message":"slow down","type":"rate_limit_error"}}"#,
            "slow down",
            true,
        ),
        (
            r#"{"error":{"message":"quota","code":"rate_limit_exceeded"}}"#,
            "quota",
            true,
        ),
        (
            r#"{"error":{"error":{"message":"nested","type":"server_error"}}}"#,
            "nested",
            false,
        ),
        (r#"{"error":"just a string"}"#, "just a string", false),
        (
            r#"{"error":{"type":"server_error"}}"#,
            UpstreamProblem::NO_MESSAGE,
            false,
        ),
    ];
    for values in [false, true] {
        for (data, message, rate_limited) in cases {
            let mut d = UpstreamDecoder::new(Dialect::OpenAi, Stamp::default());
            if values {
                d = d.with_values();
            }
            let seen = run(
                &mut d,
                &[event(None, data), event(None, r#"{"choices":[]}"#)],
            )
            .unwrap();
            assert_eq!(seen.kinds, ["error"], "nothing follows an error: {data}");
            let p = seen.problem.unwrap();
            assert_eq!(
                (p.message.as_str(), p.rate_limited),
                (message, rate_limited),
                "{data}"
            );
        }
    }
}

#[test]
fn garbage_is_malformed_in_both_forms() {
    for data in ["not json", "[1,2]", r#"{"choices":"no"}"#] {
        let mut d = UpstreamDecoder::new(Dialect::OpenAi, Stamp::default());
        assert_eq!(
            run(&mut d, &[event(None, data)]).err(),
            Some(Malformed),
            "{data}"
        );
    }
    let mut d = UpstreamDecoder::new(Dialect::OpenAi, Stamp::default()).with_values();
    assert_eq!(run(&mut d, &[event(None, "[1]")]).err(), Some(Malformed));
    let mut d = UpstreamDecoder::new(Dialect::Anthropic, stamp());
    let bad = event(Some("content_block_delta"), "{oops");
    assert_eq!(run(&mut d, &[bad]).err(), Some(Malformed));
}

fn stamp() -> Stamp {
    Stamp {
        id: "chatcmpl-gw".into(),
        model: "claude-x".into(),
        created: 1700000000,
    }
}

fn anthropic_stream() -> Vec<sse::Event> {
    vec![
        event(
            Some("message_start"),
            r#"{"type":"message_start","message":{"id":"msg_1","model":"claude-real","usage":{"input_tokens":10,"cache_read_input_tokens":4,"output_tokens":1}}}"#,
        ),
        event(
            Some("content_block_start"),
            r#"{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#,
        ),
        event(Some("ping"), r#"{"type":"ping"}"#),
        event(
            Some("content_block_delta"),
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hi"}}"#,
        ),
        event(
            Some("content_block_stop"),
            r#"{"type":"content_block_stop","index":0}"#,
        ),
        event(
            Some("message_delta"),
            r#"{"type":"message_delta","delta":{"stop_reason":"max_tokens"},"usage":{"output_tokens":7}}"#,
        ),
        event(Some("message_stop"), r#"{"type":"message_stop"}"#),
    ]
}

#[test]
fn anthropic_events_become_stamped_chunks_then_finish_usage_and_done() {
    let mut d = UpstreamDecoder::new(Dialect::Anthropic, stamp());
    let seen = run(&mut d, &anthropic_stream()).unwrap();
    assert_eq!(
        seen.kinds,
        [
            "translated",
            "translated",
            "finish:length",
            "usage",
            "translated",
            "done"
        ]
    );
    for c in &seen.chunks {
        assert_eq!(
            (&c["id"], &c["model"], &c["created"]),
            (
                &json!("chatcmpl-gw"),
                &json!("claude-x"),
                &json!(1700000000)
            )
        );
    }
    assert_eq!(seen.chunks[1]["choices"][0]["delta"]["content"], "Hi");
    assert_eq!(seen.chunks[2]["choices"][0]["finish_reason"], "length");
    // The usage is the final one: input from message_start, output from message_delta.
    assert_eq!(
        seen.usage,
        Some(Usage {
            prompt_tokens: 14,
            completion_tokens: 7,
            cached_tokens: 4,
            ..Usage::default()
        })
    );
    let usage_chunk = seen.usage_chunk.unwrap();
    assert_eq!(usage_chunk["choices"], json!([]));
    assert_eq!(usage_chunk["id"], "chatcmpl-gw");
    assert_eq!(usage_chunk["usage"]["prompt_tokens"], 14);
    // Nothing after the end.
    let late = event(Some("message_stop"), r#"{"type":"message_stop"}"#);
    assert_eq!(d.push(&late).unwrap().count(), 0);
}

#[test]
fn an_anthropic_error_event_is_the_upstream_problem_and_ends_the_stream() {
    let mut events = anthropic_stream();
    events.truncate(4);
    events.push(event(Some("error"), r#"{"type":"error","error":{"type":"rate_limit_error","message":"Too many requests, key sk-ant-abcdefghijklmnop"}}"#));
    events.push(event(Some("message_stop"), r#"{"type":"message_stop"}"#));
    let mut d = UpstreamDecoder::new(Dialect::Anthropic, stamp());
    let seen = run(&mut d, &events).unwrap();
    assert_eq!(seen.kinds, ["translated", "translated", "error"]);
    let p = seen.problem.unwrap();
    assert!(p.rate_limited);
    assert!(p.message.starts_with("Too many requests"), "{}", p.message);
    assert!(
        !p.message.contains("abcdefghijklmnop"),
        "credentials are masked: {}",
        p.message
    );
}

#[path = "../../tests/real_fixtures/mod.rs"]
mod real_fixtures;

fn fixtures(dialect: &str, prefix: &str) -> Vec<PathBuf> {
    let Some(dir) = real_fixtures::dir(dialect) else {
        return Vec::new();
    };
    let entries = std::fs::read_dir(&dir).unwrap();
    let mut files: Vec<PathBuf> = entries
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy();
            name.starts_with(prefix) && name.ends_with(".sse")
        })
        .collect();
    files.sort();
    files
}

fn sse_events(path: &PathBuf) -> Vec<sse::Event> {
    let mut decoder = sse::Decoder::new();
    decoder.push(&std::fs::read(path).unwrap());
    std::iter::from_fn(|| decoder.next_event()).collect()
}

/// Every recorded OpenAI and DeepSeek chat stream: chunks forwarded as recorded, the usage-only
/// chunk (when the recording has one) reported as usage, and one `Done` at the very end.
#[test]
fn recorded_openai_and_deepseek_streams() {
    let mut checked = 0;
    for dir in ["openai", "deepseek"] {
        for path in fixtures(dir, "chat-stream-") {
            let events = sse_events(&path);
            let mut d = UpstreamDecoder::new(Dialect::OpenAi, Stamp::default());
            let seen = run(&mut d, &events).unwrap_or_else(|_| panic!("{}", path.display()));
            assert_eq!(
                seen.kinds.last().map(String::as_str),
                Some("done"),
                "{}",
                path.display()
            );
            assert_eq!(seen.kinds.iter().filter(|k| *k == "done").count(), 1);
            let recorded: Vec<&sse::Event> = events
                .iter()
                .filter(|e| !e.is_done())
                .filter(|e| {
                    let v: Value = serde_json::from_slice(&e.data).unwrap();
                    !(v["choices"].as_array().is_some_and(|c| c.is_empty())
                        && v["usage"].is_object())
                })
                .collect();
            let want: Vec<u8> = recorded.iter().flat_map(|e| e.data.to_vec()).collect();
            assert_eq!(seen.forwarded, want, "{}", path.display());
            let recorded_usage = events.iter().rev().find_map(|e| {
                let v: Value = serde_json::from_slice(&e.data).ok()?;
                v["choices"].as_array().filter(|c| c.is_empty())?;
                Usage::from_openai(&v["usage"])
            });
            assert_eq!(seen.usage, recorded_usage, "{}", path.display());
            checked += 1;
        }
    }
    eprintln!("checked {checked} recorded OpenAI-dialect streams");
}

/// Every recorded Anthropic stream: `Finish` with the mapped stop reason before the last chunk,
/// the usage of `message_delta` over `message_start`'s input, one `Done` at the very end.
#[test]
fn recorded_anthropic_streams() {
    let mut checked = 0;
    for path in fixtures("anthropic", "messages-stream-") {
        let events = sse_events(&path);
        let mut d = UpstreamDecoder::new(Dialect::Anthropic, stamp());
        let seen = run(&mut d, &events).unwrap_or_else(|_| panic!("{}", path.display()));
        let name = path.display();
        assert_eq!(
            seen.kinds.last().map(String::as_str),
            Some("done"),
            "{name}"
        );
        let datas: Vec<Value> = events
            .iter()
            .filter_map(|e| serde_json::from_slice(&e.data).ok())
            .collect();
        let delta = datas.iter().find(|v| v["type"] == "message_delta").unwrap();
        let reason =
            anthropic::finish_reason(delta["delta"]["stop_reason"].as_str().unwrap()).as_openai();
        let finish_at = seen
            .kinds
            .iter()
            .position(|k| *k == format!("finish:{reason}"));
        let last_chunk = seen.kinds.iter().rposition(|k| k == "translated");
        assert!(
            finish_at.is_some() && finish_at < last_chunk,
            "{name}: {:?}",
            seen.kinds
        );
        assert_eq!(
            seen.chunks.last().unwrap()["choices"][0]["finish_reason"],
            reason,
            "{name}"
        );
        let start = datas.iter().find(|v| v["type"] == "message_start").unwrap();
        let input = &start["message"]["usage"];
        let usage = seen.usage.unwrap();
        let n = |v: &Value, k: &str| v[k].as_u64().unwrap_or(0);
        assert_eq!(
            usage.prompt_tokens,
            n(input, "input_tokens")
                + n(input, "cache_read_input_tokens")
                + n(input, "cache_creation_input_tokens"),
            "{name}"
        );
        assert_eq!(
            usage.completion_tokens,
            n(&delta["usage"], "output_tokens"),
            "{name}"
        );
        checked += 1;
    }
    eprintln!("checked {checked} recorded Anthropic streams");
}

/// Every recorded OpenAI Responses stream, read as the native passthrough reads it: the deltas as
/// chunks carrying exactly the recorded text, the usage of the terminal response, one `Done` (or
/// the upstream's error) at the very end, and the finish reason its status says.
#[test]
fn recorded_responses_streams() {
    let mut checked = 0;
    for path in fixtures("openai", "responses-stream-") {
        let name = path.display();
        let events = sse_events(&path);
        let mut d = UpstreamDecoder::new(Dialect::Responses, stamp());
        let seen = run(&mut d, &events).unwrap_or_else(|_| panic!("{name}"));
        let datas: Vec<Value> = events
            .iter()
            .filter_map(|e| serde_json::from_slice(&e.data).ok())
            .collect();
        let text_of = |kinds: &[&str]| -> String {
            datas
                .iter()
                .filter(|v| kinds.contains(&v["type"].as_str().unwrap_or("")))
                .filter_map(|v| v["delta"].as_str())
                .collect()
        };
        let chunk_text = |key: &str| -> String {
            seen.chunks
                .iter()
                .filter_map(|c| c["choices"][0]["delta"][key].as_str())
                .collect()
        };
        assert_eq!(
            chunk_text("content"),
            text_of(&["response.output_text.delta", "response.refusal.delta"]),
            "{name}"
        );
        assert_eq!(
            chunk_text("reasoning_content"),
            text_of(&[
                "response.reasoning_summary_text.delta",
                "response.reasoning_text.delta"
            ]),
            "{name}"
        );
        let args: String = seen
            .chunks
            .iter()
            .filter_map(|c| {
                c["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"].as_str()
            })
            .collect();
        assert_eq!(
            args,
            text_of(&["response.function_call_arguments.delta"]),
            "{name}"
        );
        let terminal = datas
            .iter()
            .rev()
            .find(|v| {
                matches!(
                    v["type"].as_str(),
                    Some(
                        "response.completed" | "response.incomplete" | "response.failed" | "error"
                    )
                )
            })
            .unwrap_or_else(|| panic!("{name}: no terminal event"));
        match terminal["type"].as_str().unwrap() {
            "response.failed" | "error" => {
                assert_eq!(
                    seen.kinds.last().map(String::as_str),
                    Some("error"),
                    "{name}"
                );
                assert!(!seen.problem.as_ref().unwrap().message.is_empty());
            }
            kind => {
                assert_eq!(
                    seen.kinds.last().map(String::as_str),
                    Some("done"),
                    "{name}"
                );
                let u = &terminal["response"]["usage"];
                let usage = seen.usage.unwrap();
                assert_eq!(
                    usage.prompt_tokens,
                    u["input_tokens"].as_u64().unwrap(),
                    "{name}"
                );
                assert_eq!(
                    usage.completion_tokens,
                    u["output_tokens"].as_u64().unwrap()
                );
                assert_eq!(
                    usage.reasoning_tokens,
                    u["output_tokens_details"]["reasoning_tokens"]
                        .as_u64()
                        .unwrap_or(0)
                );
                let called = datas.iter().any(|v| {
                    v["type"] == "response.output_item.added"
                        && v["item"]["type"] == "function_call"
                });
                let want = match (kind, called) {
                    ("response.incomplete", _) => "finish:length",
                    (_, true) => "finish:tool_calls",
                    _ => "finish:stop",
                };
                assert!(
                    seen.kinds.iter().any(|k| k == want),
                    "{name}: {:?}",
                    seen.kinds
                );
            }
        }
        assert_eq!(
            seen.kinds
                .iter()
                .filter(|k| *k == "done" || *k == "error")
                .count(),
            1,
            "{name}"
        );
        checked += 1;
    }
    eprintln!("checked {checked} recorded Responses streams");
}

#[test]
fn responses_error_shapes_and_garbage() {
    // OpenAI's `error` event is followed by `response.failed`, which ends the stream with the
    // error event's words.
    let mut d = UpstreamDecoder::new(Dialect::Responses, stamp());
    let seen = run(
        &mut d,
        &[
            event(
                Some("error"),
                r#"{"type":"error","code":"rate_limit_exceeded","message":"slow down","param":null}"#,
            ),
            event(
                Some("response.failed"),
                r#"{"type":"response.failed","response":{"status":"failed","error":{"code":"x","message":"other"}}}"#,
            ),
        ],
    )
    .unwrap();
    assert_eq!(seen.kinds, vec!["error"]);
    assert_eq!(
        seen.problem,
        Some(UpstreamProblem {
            message: "slow down".into(),
            rate_limited: true
        })
    );
    let mut d = UpstreamDecoder::new(Dialect::Responses, stamp());
    let seen = run(
        &mut d,
        &[event(
            Some("response.failed"),
            r#"{"type":"response.failed","response":{"error":{"code":"server_error","message":"boom"}}}"#,
        )],
    )
    .unwrap();
    assert_eq!(seen.problem.unwrap().message, "boom");
    let mut d = UpstreamDecoder::new(Dialect::Responses, stamp());
    assert!(run(&mut d, &[event(None, "not json")]).is_err());
    let mut d = UpstreamDecoder::new(Dialect::Responses, stamp());
    assert!(run(&mut d, &[event(None, r#"{"no_type":1}"#)]).is_err());
}
