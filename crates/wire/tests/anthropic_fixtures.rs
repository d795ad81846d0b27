//! Conformance tests for the Anthropic ⇄ OpenAI translation against recorded Anthropic traffic.
//!
//! Every `messages-stream-*.sse` in `shared/fixtures/real/anthropic/` is split into SSE events by a tiny local
//! parser (independent of the crate's own SSE code), fed through `StreamTranslator`, and checked for what a
//! client would notice: the text, the reasoning, the tool calls and their arguments, the single role, the
//! finish reason and the usage, all compared with values read straight from the recording. Every
//! `messages-nonstream-*.json` goes through `message_to_chat_completion` and every `messages-error-*.json`
//! through `error_to_openai`. When the recordings are absent the file-based tests say SKIPPED loudly (and fail under CI); the
//! hand-written streams at the bottom always run through the same checks.

use serde_json::{json, Value};
use std::path::PathBuf;
use switchyard_wire::anthropic::{error_to_openai, message_to_chat_completion, StreamTranslator};

mod real_fixtures;

fn fixture_files(prefix: &str, suffix: &str) -> Option<Vec<PathBuf>> {
    let dir = real_fixtures::dir("anthropic")?;
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("fixture dir readable")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy();
            name.starts_with(prefix) && name.ends_with(suffix)
        })
        .collect();
    files.sort();
    Some(files)
}

/// Minimal SSE framing (WHATWG): lines end at LF or CRLF, a blank line dispatches, `event:` sets the name,
/// `data:` lines join with LF, comments and other fields are ignored, an unterminated last event is dropped.
fn parse_sse(text: &str) -> Vec<(String, String)> {
    let mut events = Vec::new();
    let (mut name, mut data, mut has_data) = (String::new(), String::new(), false);
    for line in text.split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.is_empty() {
            if has_data {
                events.push((std::mem::take(&mut name), std::mem::take(&mut data)));
            }
            name.clear();
            data.clear();
            has_data = false;
            continue;
        }
        if line.starts_with(':') {
            continue;
        }
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "event" => name = value.to_string(),
            "data" => {
                if has_data {
                    data.push('\n');
                }
                data.push_str(value);
                has_data = true;
            }
            _ => {}
        }
    }
    events
}

/// What the recording itself says the answer was, read without the translator.
#[derive(Default, Debug)]
struct Expected {
    text: String,
    thinking: String,
    signature: Option<String>,
    redacted: usize,
    /// (id, name, input) per tool_use block, in stream order.
    tools: Vec<(String, String, Value)>,
    stop_reason: Option<String>,
    input: u64,
    output: u64,
    cache_read: u64,
    cache_creation: u64,
}

fn expected_from_events(events: &[(String, String)]) -> Expected {
    let mut exp = Expected::default();
    let mut tool_args: Vec<String> = Vec::new();
    let mut tool_block_index: Vec<u64> = Vec::new();
    let take_usage = |exp: &mut Expected, u: &Value| {
        if let Some(n) = u["input_tokens"].as_u64() {
            exp.input = n;
        }
        if let Some(n) = u["output_tokens"].as_u64() {
            exp.output = n;
        }
        if let Some(n) = u["cache_read_input_tokens"].as_u64() {
            exp.cache_read = n;
        }
        if let Some(n) = u["cache_creation_input_tokens"].as_u64() {
            exp.cache_creation = n;
        }
    };
    for (name, data) in events {
        if name == "ping" {
            continue;
        }
        let v: Value = serde_json::from_str(data).expect("recorded data is JSON");
        match name.as_str() {
            "message_start" => take_usage(&mut exp, &v["message"]["usage"]),
            "content_block_start" => match v["content_block"]["type"].as_str().unwrap() {
                "tool_use" => {
                    let b = &v["content_block"];
                    exp.tools.push((
                        b["id"].as_str().unwrap().to_string(),
                        b["name"].as_str().unwrap().to_string(),
                        Value::Null,
                    ));
                    tool_args.push(String::new());
                    tool_block_index.push(v["index"].as_u64().unwrap());
                }
                "redacted_thinking" => exp.redacted += 1,
                _ => {}
            },
            "content_block_delta" => {
                let d = &v["delta"];
                match d["type"].as_str().unwrap() {
                    "text_delta" => exp.text.push_str(d["text"].as_str().unwrap()),
                    "thinking_delta" => exp.thinking.push_str(d["thinking"].as_str().unwrap()),
                    "signature_delta" => {
                        exp.signature = Some(d["signature"].as_str().unwrap().to_string())
                    }
                    "input_json_delta" => {
                        let idx = v["index"].as_u64().unwrap();
                        let k = tool_block_index.iter().position(|i| *i == idx).unwrap();
                        tool_args[k].push_str(d["partial_json"].as_str().unwrap());
                    }
                    _ => {}
                }
            }
            "message_delta" => {
                if let Some(r) = v["delta"]["stop_reason"].as_str() {
                    exp.stop_reason = Some(r.to_string());
                }
                take_usage(&mut exp, &v["usage"]);
            }
            _ => {}
        }
    }
    for (tool, args) in exp.tools.iter_mut().zip(tool_args) {
        tool.2 = if args.is_empty() {
            json!({})
        } else {
            serde_json::from_str(&args).expect("recorded tool input is JSON")
        };
    }
    exp
}

/// The finish-reason table from wire-formats §6.4, written out independently of the crate.
fn openai_finish(stop_reason: &str) -> &'static str {
    match stop_reason {
        "end_turn" | "stop_sequence" | "pause_turn" => "stop",
        "max_tokens" | "model_context_window_exceeded" => "length",
        "tool_use" => "tool_calls",
        "refusal" => "content_filter",
        other => panic!("recording has an unexpected stop_reason {other}"),
    }
}

/// Feeds one SSE body through the translator and checks everything a client would see.
fn check_stream(label: &str, body: &str) {
    let events = parse_sse(body);
    assert!(!events.is_empty(), "{label}: no events parsed");
    let exp = expected_from_events(&events);

    let mut t = StreamTranslator::new("chatcmpl-test".into(), "client-model".into(), 1_754_000_000);
    let mut chunks = Vec::new();
    for (name, data) in &events {
        t.push(name, data)
            .unwrap_or_else(|e| panic!("{label}: {name}: {e}"));
        chunks.extend(t.drain());
    }
    assert!(t.is_done(), "{label}: message_stop seen");
    assert!(t.error().is_none(), "{label}: no upstream error");

    let (mut content, mut reasoning, mut roles) = (String::new(), String::new(), 0);
    let mut calls: Vec<(String, String, String)> = Vec::new();
    for (i, chunk) in chunks.iter().enumerate() {
        assert_eq!(chunk["object"], "chat.completion.chunk", "{label}");
        assert_eq!(chunk["id"], "chatcmpl-test", "{label}");
        assert_eq!(chunk["created"], 1_754_000_000u64, "{label}");
        assert_eq!(chunk["model"], "client-model", "{label}");
        let choices = chunk["choices"].as_array().expect("choices array");
        assert_eq!(choices.len(), 1, "{label}: one choice per chunk");
        assert_eq!(choices[0]["index"], 0, "{label}");
        let last = i + 1 == chunks.len();
        let finish = &choices[0]["finish_reason"];
        if last {
            let want = openai_finish(
                exp.stop_reason
                    .as_deref()
                    .expect("recording has stop_reason"),
            );
            assert_eq!(finish, want, "{label}: finish_reason on the last chunk");
        } else {
            assert!(
                finish.is_null(),
                "{label}: finish_reason null before the last chunk"
            );
        }
        let delta = &choices[0]["delta"];
        if let Some(role) = delta.get("role") {
            assert_eq!(role, "assistant", "{label}");
            assert_eq!(i, 0, "{label}: role only in the first chunk");
            roles += 1;
        }
        content.push_str(delta["content"].as_str().unwrap_or_default());
        reasoning.push_str(delta["reasoning_content"].as_str().unwrap_or_default());
        for call in delta["tool_calls"].as_array().into_iter().flatten() {
            let k = call["index"]
                .as_u64()
                .expect("every tool call delta has an integer index") as usize;
            if let Some(id) = call.get("id") {
                assert_eq!(k, calls.len(), "{label}: tool indexes are 0, 1, 2, …");
                assert_eq!(call["type"], "function", "{label}");
                calls.push((
                    id.as_str().unwrap().to_string(),
                    call["function"]["name"].as_str().unwrap().to_string(),
                    String::new(),
                ));
            } else {
                assert!(
                    call["function"].get("name").is_none(),
                    "{label}: name sent once"
                );
                assert!(call.get("type").is_none(), "{label}: type sent once");
            }
            let entry = calls
                .get_mut(k)
                .expect("tool call announced before its arguments");
            entry
                .2
                .push_str(call["function"]["arguments"].as_str().unwrap_or_default());
        }
    }
    assert_eq!(roles, 1, "{label}: role appears exactly once");
    assert_eq!(content, exp.text, "{label}: content");
    assert_eq!(reasoning, exp.thinking, "{label}: reasoning");
    assert_eq!(
        calls.len(),
        exp.tools.len(),
        "{label}: number of tool calls"
    );
    for ((id, name, args), (want_id, want_name, want_input)) in calls.iter().zip(&exp.tools) {
        assert_eq!(id, want_id, "{label}");
        assert_eq!(name, want_name, "{label}");
        let args: Value = serde_json::from_str(args)
            .unwrap_or_else(|e| panic!("{label}: arguments {args:?} are not JSON: {e}"));
        assert_eq!(&args, want_input, "{label}: tool arguments");
    }
    assert_eq!(
        t.signature(),
        exp.signature.as_deref(),
        "{label}: signature"
    );
    assert_eq!(
        t.redacted_thinking().len(),
        exp.redacted,
        "{label}: redacted thinking kept"
    );

    let usage = t.usage().expect("usage known");
    let prompt = exp.input + exp.cache_read + exp.cache_creation;
    assert_eq!(usage.prompt_tokens(), prompt, "{label}: prompt tokens");
    assert_eq!(
        usage.completion_tokens(),
        exp.output,
        "{label}: completion tokens"
    );
    let json = t.usage_json().unwrap();
    assert_eq!(json["prompt_tokens"], prompt, "{label}");
    assert_eq!(json["completion_tokens"], exp.output, "{label}");
    assert_eq!(json["total_tokens"], prompt + exp.output, "{label}");
    assert_eq!(
        json["prompt_tokens_details"]["cached_tokens"], exp.cache_read,
        "{label}"
    );
    assert_eq!(
        json["prompt_tokens_details"]["cache_write_tokens"], exp.cache_creation,
        "{label}"
    );
}

#[test]
fn recorded_streams_translate_to_openai_chunks() {
    let Some(files) = fixture_files("messages-stream-", ".sse") else {
        return;
    };
    assert!(
        !files.is_empty(),
        "the fixture directory has no messages-stream-*.sse"
    );
    for file in &files {
        let body = std::fs::read_to_string(file).expect("fixture readable");
        check_stream(&file.file_name().unwrap().to_string_lossy(), &body);
    }
    eprintln!("checked {} recorded Anthropic streams", files.len());
}

#[test]
fn recorded_messages_translate_to_chat_completions() {
    let Some(files) = fixture_files("messages-nonstream-", ".json") else {
        return;
    };
    let files: Vec<_> = files
        .into_iter()
        .filter(|p| {
            let n = p.to_string_lossy();
            !n.ends_with(".meta.json") && !n.ends_with(".vercel.json")
        })
        .collect();
    assert!(
        !files.is_empty(),
        "the fixture directory has no messages-nonstream-*.json"
    );
    for file in &files {
        let label = file.file_name().unwrap().to_string_lossy().to_string();
        let msg: Value = serde_json::from_str(&std::fs::read_to_string(file).unwrap()).unwrap();
        let out = message_to_chat_completion(&msg, "chatcmpl-x", "client-model", 7)
            .unwrap_or_else(|e| panic!("{label}: {e}"));
        assert_eq!(out["object"], "chat.completion", "{label}");
        assert_eq!(out["id"], "chatcmpl-x", "{label}");
        assert_eq!(out["model"], "client-model", "{label}");
        let blocks = msg["content"].as_array().unwrap();
        let of = |kind: &'static str| blocks.iter().filter(move |b| b["type"] == kind);
        let text: String = of("text").map(|b| b["text"].as_str().unwrap()).collect();
        let thinking: String = of("thinking")
            .map(|b| b["thinking"].as_str().unwrap())
            .collect();
        let message = &out["choices"][0]["message"];
        assert_eq!(message["role"], "assistant", "{label}");
        assert_eq!(
            message["content"].as_str().unwrap_or_default(),
            text,
            "{label}: content"
        );
        assert_eq!(
            message["reasoning_content"].as_str().unwrap_or_default(),
            thinking,
            "{label}"
        );
        if let Some(sig) = of("thinking").next_back() {
            assert_eq!(
                message["reasoning_signature"], sig["signature"],
                "{label}: signature"
            );
        }
        let tools: Vec<&Value> = of("tool_use").collect();
        let calls = message["tool_calls"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert_eq!(calls.len(), tools.len(), "{label}: tool calls");
        for (call, tool) in calls.iter().zip(tools) {
            assert_eq!(call["id"], tool["id"], "{label}");
            assert_eq!(call["type"], "function", "{label}");
            assert_eq!(call["function"]["name"], tool["name"], "{label}");
            let args: Value =
                serde_json::from_str(call["function"]["arguments"].as_str().unwrap()).unwrap();
            assert_eq!(args, tool["input"], "{label}: arguments");
        }
        let finish = openai_finish(msg["stop_reason"].as_str().unwrap());
        assert_eq!(out["choices"][0]["finish_reason"], finish, "{label}");
        let u = &msg["usage"];
        let n = |k: &str| u[k].as_u64().unwrap_or(0);
        let prompt =
            n("input_tokens") + n("cache_read_input_tokens") + n("cache_creation_input_tokens");
        assert_eq!(out["usage"]["prompt_tokens"], prompt, "{label}");
        assert_eq!(
            out["usage"]["completion_tokens"],
            n("output_tokens"),
            "{label}"
        );
        assert_eq!(
            out["usage"]["total_tokens"],
            prompt + n("output_tokens"),
            "{label}"
        );
    }
}

#[test]
fn recorded_errors_translate_to_openai_errors() {
    let Some(files) = fixture_files("messages-error-", ".json") else {
        return;
    };
    let files: Vec<_> = files
        .into_iter()
        .filter(|p| !p.to_string_lossy().ends_with(".meta.json"))
        .collect();
    assert!(!files.is_empty());
    for file in &files {
        let label = file.file_name().unwrap().to_string_lossy().to_string();
        let body = std::fs::read(file).unwrap();
        let meta: Value = serde_json::from_str(
            &std::fs::read_to_string(file.with_extension("meta.json")).unwrap(),
        )
        .unwrap();
        let status = meta["response"]["status"].as_u64().unwrap() as u16;
        let recorded: Value = serde_json::from_slice(&body).unwrap();
        let (gateway_status, out) = error_to_openai(status, &body);
        assert_eq!(gateway_status, status, "{label}: 4xx statuses are kept");
        let err = &out["error"];
        assert_eq!(err["message"], recorded["error"]["message"], "{label}");
        assert_eq!(err["code"], recorded["error"]["type"], "{label}");
        assert!(err["type"].is_string(), "{label}");
        assert!(
            err.get("param").is_some_and(Value::is_null),
            "{label}: param present and null"
        );
    }
}

// Project-own streams: always run, whatever the machine has.

const OWN_TEXT: &str = "event: message_start\r\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_own\",\"type\":\"message\",\"role\":\"assistant\",\"content\":[],\"model\":\"claude-own\",\"stop_reason\":null,\"usage\":{\"input_tokens\":9,\"cache_read_input_tokens\":1000,\"cache_creation_input_tokens\":20,\"output_tokens\":1}}}\r\n\r\n\
: a comment\r\n\r\n\
event: content_block_start\r\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\r\n\r\n\
event: ping\r\ndata: {\"type\": \"ping\"}\r\n\r\n\
event: content_block_delta\r\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"caf\u{e9} \u{1f600}\"}}\r\n\r\n\
event: content_block_delta\r\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\" line\\nbreak\"}}\r\n\r\n\
event: content_block_stop\r\ndata: {\"type\":\"content_block_stop\",\"index\":0}\r\n\r\n\
event: message_delta\r\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"stop_sequence\",\"stop_sequence\":\"END\"},\"usage\":{\"output_tokens\":7}}\r\n\r\n\
event: message_stop\r\ndata: {\"type\":\"message_stop\"}\r\n\r\n";

const OWN_THINKING_TOOLS: &str = r#"event: message_start
data: {"type":"message_start","message":{"id":"msg_own2","type":"message","role":"assistant","content":[],"model":"claude-own","stop_reason":null,"usage":{"input_tokens":50,"output_tokens":2}}}

event: content_block_start
data: {"type":"content_block_start","index":0,"content_block":{"type":"thinking","thinking":"","signature":""}}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":"Two cities, "}}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":"two calls."}}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"signature_delta","signature":"c2lnbmF0dXJl"}}

event: content_block_stop
data: {"type":"content_block_stop","index":0}

event: content_block_start
data: {"type":"content_block_start","index":1,"content_block":{"type":"redacted_thinking","data":"b3BhcXVl"}}

event: content_block_stop
data: {"type":"content_block_stop","index":1}

event: content_block_start
data: {"type":"content_block_start","index":2,"content_block":{"type":"tool_use","id":"toolu_P","name":"weather","input":{}}}

event: content_block_delta
data: {"type":"content_block_delta","index":2,"delta":{"type":"input_json_delta","partial_json":"{\"city\":"}}

event: content_block_delta
data: {"type":"content_block_delta","index":2,"delta":{"type":"input_json_delta","partial_json":" \"Paris\", \"units\": [\"C\"]}"}}

event: content_block_stop
data: {"type":"content_block_stop","index":2}

event: content_block_start
data: {"type":"content_block_start","index":3,"content_block":{"type":"tool_use","id":"toolu_R","name":"weather","input":{}}}

event: content_block_delta
data: {"type":"content_block_delta","index":3,"delta":{"type":"input_json_delta","partial_json":"{\"city\": \"Rome\"}"}}

event: content_block_stop
data: {"type":"content_block_stop","index":3}

event: message_delta
data: {"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},"usage":{"output_tokens":88}}

event: message_stop
data: {"type":"message_stop"}

"#;

#[test]
fn own_text_stream_with_crlf_cache_usage_and_unicode() {
    check_stream("own text", OWN_TEXT);
    let events = parse_sse(OWN_TEXT);
    let exp = expected_from_events(&events);
    assert_eq!(exp.text, "caf\u{e9} \u{1f600} line\nbreak");
    assert_eq!(exp.input + exp.cache_read + exp.cache_creation, 1029);
}

#[test]
fn own_thinking_and_parallel_tool_stream() {
    check_stream("own thinking+tools", OWN_THINKING_TOOLS);
    let exp = expected_from_events(&parse_sse(OWN_THINKING_TOOLS));
    assert_eq!(exp.tools.len(), 2);
    assert_eq!(exp.redacted, 1);
    assert_eq!(exp.thinking, "Two cities, two calls.");
}

#[test]
fn own_truncated_stream_is_not_done() {
    let cut = OWN_TEXT.split("event: message_delta").next().unwrap();
    let mut t = StreamTranslator::new("c".into(), "m".into(), 0);
    for (name, data) in parse_sse(cut) {
        t.push(&name, &data).unwrap();
    }
    let chunks: Vec<Value> = t.drain().collect();
    assert!(
        !t.is_done(),
        "no message_stop, so the caller must treat the stream as cut"
    );
    assert!(t.finish_reason().is_none());
    assert!(chunks
        .iter()
        .all(|c| c["choices"][0]["finish_reason"].is_null()));
}

#[test]
fn own_overloaded_stream_error() {
    let body = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"m\",\"usage\":{\"input_tokens\":3,\"output_tokens\":0}}}\n\n\
event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n";
    let mut t = StreamTranslator::new("c".into(), "m".into(), 0);
    for (name, data) in parse_sse(body) {
        t.push(&name, &data).unwrap();
    }
    assert!(t.is_done());
    let err = t.error().expect("error outcome");
    assert_eq!(err.status(), 503);
    assert_eq!(
        err.to_openai(),
        json!({"error": {"message": "Overloaded", "type": "server_error", "param": null, "code": "overloaded_error"}})
    );
}
