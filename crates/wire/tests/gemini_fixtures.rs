//! Every recorded Gemini transcript (`shared/fixtures/real/google`) decoded by the Gemini translation:
//! streams (SSE and JSON-array) into chat chunks, usage and a finish reason, whole answers into chat
//! completions, error bodies into their status and reason.

mod real_fixtures;

use serde_json::Value;
use switchyard_wire::gemini::{self, GeminiError};
use switchyard_wire::sse;
use switchyard_wire::upstream::{Chunk, Dialect, Stamp, UpstreamDecoder, UpstreamEvent};
use switchyard_wire::usage::Usage;

/// What a decoded stream said.
#[derive(Debug, Default)]
struct Decoded {
    role_first: bool,
    content: String,
    reasoning: String,
    tools: Vec<(String, String, String)>,
    finish: Option<String>,
    finish_event: Option<&'static str>,
    usage: Option<Usage>,
    done: bool,
}

fn stamp() -> Stamp {
    Stamp {
        id: "chatcmpl-test".into(),
        model: "gemini-test".into(),
        created: 1,
    }
}

fn read_chunk(out: &mut Decoded, first: bool, v: &Value) {
    assert_eq!(v["object"], "chat.completion.chunk");
    assert_eq!(v["model"], "gemini-test");
    let Some(choice) = v["choices"].get(0) else {
        return;
    };
    let d = &choice["delta"];
    if first {
        out.role_first = d["role"] == "assistant";
    }
    if let Some(t) = d["content"].as_str() {
        out.content.push_str(t);
    }
    if let Some(t) = d["reasoning_content"].as_str() {
        out.reasoning.push_str(t);
    }
    for c in d["tool_calls"].as_array().into_iter().flatten() {
        out.tools.push((
            c["id"].as_str().unwrap().to_owned(),
            c["function"]["name"].as_str().unwrap().to_owned(),
            c["function"]["arguments"].as_str().unwrap().to_owned(),
        ));
    }
    if let Some(f) = choice["finish_reason"].as_str() {
        out.finish = Some(f.to_owned());
    }
}

fn decode_sse(body: &[u8]) -> Decoded {
    let mut sse = sse::Decoder::new();
    // Fed in small pieces, as a network would.
    for piece in body.chunks(97) {
        sse.push(piece);
    }
    let mut dec = UpstreamDecoder::new(Dialect::Gemini, stamp());
    let mut out = Decoded::default();
    let mut chunks = 0;
    while let Some(event) = sse.next_event() {
        for e in dec.push(&event).expect("every recorded event decodes") {
            match e {
                UpstreamEvent::Chunk(Chunk::Translated(v)) => {
                    read_chunk(&mut out, chunks == 0, &v);
                    chunks += 1;
                }
                UpstreamEvent::Chunk(_) => panic!("a Gemini chunk is always translated"),
                UpstreamEvent::Finish(r) => out.finish_event = Some(r.as_openai()),
                UpstreamEvent::Usage { usage, chunk } => {
                    assert_eq!(chunk.value()["choices"], serde_json::json!([]));
                    out.usage = usage;
                }
                UpstreamEvent::Error(p) => panic!("unexpected error {p:?}"),
                UpstreamEvent::Done => out.done = true,
            }
        }
    }
    out
}

/// (file, content starts with, reasoning length > 0, tool names, finish, prompt, completion, reasoning)
type Expect = (
    &'static str,
    &'static str,
    bool,
    &'static [&'static str],
    &'static str,
    u64,
    u64,
    u64,
);

const STREAMS: &[Expect] = &[
    (
        "streamGenerateContent-sse-function-call-thought-signature-gemini-3.sse",
        "",
        false,
        &["get_country"],
        "tool_calls",
        29,
        212,
        202,
    ),
    (
        "streamGenerateContent-sse-function-call-vercel.sse",
        "",
        false,
        &["weather"],
        "tool_calls",
        29,
        60,
        45,
    ),
    (
        "streamGenerateContent-sse-max-tokens.sse",
        "Here are all 50 U.S.",
        false,
        &[],
        "length",
        9,
        48,
        38,
    ),
    (
        "streamGenerateContent-sse-parallel-function-calls.sse",
        "",
        false,
        &["secret_retrieval_tool", "secret_retrieval_tool"],
        "tool_calls",
        70,
        101,
        61,
    ),
    (
        "streamGenerateContent-sse-text-vercel.sse",
        "There are **3**",
        false,
        &[],
        "stop",
        9,
        208,
        185,
    ),
    (
        "streamGenerateContent-sse-text.sse",
        "To find the sum of 4200 + 42",
        false,
        &[],
        "stop",
        13,
        138,
        75,
    ),
    (
        "streamGenerateContent-sse-thinking-long.sse",
        "This is a great question!",
        true,
        &[],
        "stop",
        34,
        1256,
        787,
    ),
    (
        "streamGenerateContent-sse-thinking.sse",
        "3",
        true,
        &[],
        "stop",
        30,
        1947,
        1947,
    ),
];

#[test]
fn every_recorded_stream_decodes_into_chunks_usage_and_a_finish_reason() {
    let Some(dir) = real_fixtures::dir("google") else {
        return;
    };
    for &(file, starts, reasons, tools, finish, prompt, completion, reasoning) in STREAMS {
        if !real_fixtures::present(&dir, file) {
            continue;
        }
        let body = std::fs::read(dir.join(file)).unwrap();
        let out = decode_sse(&body);
        assert!(out.role_first, "{file}: the first chunk gives the role");
        assert!(out.content.starts_with(starts), "{file}: {:?}", out.content);
        assert_eq!(!out.reasoning.is_empty(), reasons, "{file}: reasoning");
        let names: Vec<&str> = out.tools.iter().map(|t| t.1.as_str()).collect();
        assert_eq!(names, tools, "{file}: tool calls");
        for (id, _, args) in &out.tools {
            assert!(id.starts_with("call_"), "{file}: {id}");
            assert!(serde_json::from_str::<Value>(args).unwrap().is_object());
        }
        let mut ids: Vec<&str> = out.tools.iter().map(|t| t.0.as_str()).collect();
        ids.dedup();
        assert_eq!(
            ids.len(),
            out.tools.len(),
            "{file}: tool call ids are unique"
        );
        assert_eq!(out.finish.as_deref(), Some(finish), "{file}: finish chunk");
        assert_eq!(out.finish_event, Some(finish), "{file}: finish event");
        let u = out.usage.unwrap_or_else(|| panic!("{file}: no usage"));
        assert_eq!(
            (u.prompt_tokens, u.completion_tokens, u.reasoning_tokens),
            (prompt, completion, reasoning),
            "{file}: usage"
        );
        assert!(out.done, "{file}: the stream ends with Done");
    }
}

#[test]
fn json_array_streams_decode_the_same_way() {
    let Some(dir) = real_fixtures::dir("google") else {
        return;
    };
    for (file, tool) in [
        ("streamGenerateContent-json-array-function-call.json", true),
        (
            "streamGenerateContent-json-array-function-call-thought-signature.json",
            true,
        ),
        ("streamGenerateContent-json-array-text-thinking.json", false),
    ] {
        if !real_fixtures::present(&dir, file) {
            continue;
        }
        let body: Value = serde_json::from_slice(&std::fs::read(dir.join(file)).unwrap()).unwrap();
        let mut sse_body = Vec::new();
        for item in body.as_array().expect("a JSON array of responses") {
            sse_body.extend_from_slice(format!("data: {item}\n\n").as_bytes());
        }
        let out = decode_sse(&sse_body);
        assert_eq!(out.tools.is_empty(), !tool, "{file}");
        assert_eq!(
            out.finish.as_deref(),
            Some(if tool { "tool_calls" } else { "stop" }),
            "{file}"
        );
        assert!(out.usage.is_some() && out.done, "{file}");
    }
}

fn whole(dir: &std::path::Path, file: &str) -> Option<Value> {
    if !real_fixtures::present(dir, file) {
        return None;
    }
    let v: Value = serde_json::from_slice(&std::fs::read(dir.join(file)).unwrap()).unwrap();
    Some(gemini::response_to_chat_completion(&v, "chatcmpl-x", "g", 1).expect(file))
}

#[test]
fn whole_answers_become_chat_completions() {
    let Some(dir) = real_fixtures::dir("google") else {
        return;
    };
    if let Some(c) = whole(&dir, "generateContent-text.json") {
        assert_eq!(c["object"], "chat.completion");
        assert!(!c["choices"][0]["message"]["content"]
            .as_str()
            .unwrap()
            .is_empty());
        assert_eq!(c["choices"][0]["finish_reason"], "stop");
        assert!(c["usage"]["prompt_tokens"].as_u64().unwrap() > 0);
    }
    if let Some(c) = whole(&dir, "generateContent-thinking.json") {
        let m = &c["choices"][0]["message"];
        assert!(!m["reasoning_content"]
            .as_str()
            .unwrap_or_default()
            .is_empty());
        let u = &c["usage"];
        assert!(
            u["completion_tokens_details"]["reasoning_tokens"]
                .as_u64()
                .unwrap()
                > 0
        );
        assert!(
            u["completion_tokens"].as_u64()
                >= u["completion_tokens_details"]["reasoning_tokens"].as_u64()
        );
    }
    if let Some(c) = whole(&dir, "generateContent-parallel-function-calls.json") {
        let calls = c["choices"][0]["message"]["tool_calls"].as_array().unwrap();
        assert!(calls.len() >= 2);
        assert_ne!(calls[0]["id"], calls[1]["id"]);
        assert_eq!(c["choices"][0]["finish_reason"], "tool_calls");
    }
}

#[test]
fn a_safety_stop_and_a_blocked_prompt_are_content_filter() {
    let Some(dir) = real_fixtures::dir("google") else {
        return;
    };
    for file in [
        "generateContent-finish-safety.semantic.json",
        "generateContent-prompt-blocked-model-armor-vertex.semantic.json",
    ] {
        if let Some(c) = whole(&dir, file) {
            assert_eq!(c["choices"][0]["finish_reason"], "content_filter", "{file}");
        }
        // The same body as the one event of a stream.
        let body = std::fs::read(dir.join(file)).unwrap();
        let v: Value = serde_json::from_slice(&body).unwrap();
        let out = decode_sse(format!("data: {v}\n\n").as_bytes());
        assert_eq!(out.finish.as_deref(), Some("content_filter"), "{file}");
        assert!(out.done, "{file}");
    }
}

#[test]
fn error_bodies_read_their_status_and_reason() {
    let Some(dir) = real_fixtures::dir("google") else {
        return;
    };
    for (file, code, status, reason) in [
        (
            "error-400-api-key-invalid.json",
            400,
            "INVALID_ARGUMENT",
            Some("API_KEY_INVALID"),
        ),
        (
            "error-400-api-key-invalid-on-sse-endpoint.json",
            400,
            "INVALID_ARGUMENT",
            Some("API_KEY_INVALID"),
        ),
        ("error-404-model-not-found.json", 404, "NOT_FOUND", None),
    ] {
        if !real_fixtures::present(&dir, file) {
            continue;
        }
        let v: Value = serde_json::from_slice(&std::fs::read(dir.join(file)).unwrap()).unwrap();
        let e = GeminiError::from_value(&v).expect(file);
        assert_eq!(
            (e.code, e.status.as_str(), e.reason.as_deref()),
            (code, status, reason),
            "{file}"
        );
        assert!(!e.message.is_empty());
        assert!(gemini::response_to_chat_completion(&v, "x", "g", 1).is_err());
    }
}
