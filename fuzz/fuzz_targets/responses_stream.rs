//! Fuzzes the Responses event builder (`responses::StreamBuilder`) with raw chat SSE bodies (seeded
//! with real transcripts) or arbitrary chat chunks (text, reasoning, refusals, tool-call fragments
//! with any indices, finish reasons, usage, error frames and mangled JSON), ended by `finish`, `fail`
//! or nothing more. The events must keep the order the SDK helpers enforce (the invariants of
//! `responses/tests.rs`), and each one, framed by `encode_sse`, must decode back to itself through
//! the SSE decoder.
#![no_main]

use arbitrary::{Arbitrary, Unstructured};
use libfuzzer_sys::fuzz_target;
use serde_json::{json, Map, Value};
use switchyard_fuzz::ArbitraryJson;
use switchyard_wire::responses::{encode_sse, Event, RequestEcho, ResponseContext, StreamBuilder};
use switchyard_wire::sse::Decoder;

#[derive(Arbitrary, Debug)]
struct ToolCall {
    index: Option<u8>,
    id: Option<String>,
    name: Option<String>,
    arguments: Option<String>,
}

#[derive(Arbitrary, Debug)]
enum Finish {
    Stop,
    Length,
    ToolCalls,
    ContentFilter,
    Other(String),
}

#[derive(Arbitrary, Debug)]
enum Chunk {
    Delta {
        choice: u8,
        role: bool,
        content: Option<String>,
        reasoning_content: Option<String>,
        reasoning: Option<String>,
        refusal: Option<String>,
        tool_calls: Vec<ToolCall>,
        finish: Option<Finish>,
        usage: Option<(u32, u32)>,
    },
    UsageOnly(u32, u32),
    Error(Option<String>, Option<String>),
    Mangled(ArbitraryJson),
}

#[derive(Arbitrary, Debug)]
enum End {
    Finish(Option<(u32, u32)>),
    Fail(String, String),
    Nothing,
}

fn usage((prompt, completion): (u32, u32)) -> Value {
    json!({"prompt_tokens": prompt, "completion_tokens": completion,
           "total_tokens": u64::from(prompt) + u64::from(completion)})
}

fn chunk_json(chunk: &Chunk) -> Value {
    match chunk {
        Chunk::Delta {
            choice,
            role,
            content,
            reasoning_content,
            reasoning,
            refusal,
            tool_calls,
            finish,
            usage: u,
        } => {
            let mut delta = Map::new();
            if *role {
                delta.insert("role".into(), json!("assistant"));
            }
            for (k, v) in [
                ("content", content),
                ("reasoning_content", reasoning_content),
                ("reasoning", reasoning),
                ("refusal", refusal),
            ] {
                if let Some(v) = v {
                    delta.insert(k.into(), json!(v));
                }
            }
            if !tool_calls.is_empty() {
                let calls: Vec<Value> = tool_calls
                    .iter()
                    .map(|c| {
                        let mut call = json!({"function": {}});
                        if let Some(i) = c.index {
                            call["index"] = json!(i);
                        }
                        if let Some(id) = &c.id {
                            call["id"] = json!(id);
                            call["type"] = json!("function");
                        }
                        if let Some(name) = &c.name {
                            call["function"]["name"] = json!(name);
                        }
                        if let Some(args) = &c.arguments {
                            call["function"]["arguments"] = json!(args);
                        }
                        call
                    })
                    .collect();
                delta.insert("tool_calls".into(), Value::Array(calls));
            }
            let finish = finish.as_ref().map(|f| match f {
                Finish::Stop => "stop".to_owned(),
                Finish::Length => "length".to_owned(),
                Finish::ToolCalls => "tool_calls".to_owned(),
                Finish::ContentFilter => "content_filter".to_owned(),
                Finish::Other(s) => s.clone(),
            });
            let mut chunk = json!({
                "id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "m",
                "choices": [{"index": choice % 3, "delta": delta, "logprobs": null, "finish_reason": finish}],
            });
            if let Some(u) = u {
                chunk["usage"] = usage(*u);
            }
            chunk
        }
        Chunk::UsageOnly(p, c) => json!({
            "id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "m",
            "choices": [], "usage": usage((*p, *c)),
        }),
        Chunk::Error(code, message) => json!({"error": {"code": code, "message": message}}),
        Chunk::Mangled(v) => v.0.clone(),
    }
}

/// The ordering invariants of a complete event list (as `responses/tests.rs` checks them).
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
    let mut added: Vec<bool> = Vec::new();
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
                    "{} on a closed item",
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
            }
        }
    }
    assert!(added.iter().all(|open| !open), "every item closed");
    let last = &events.last().unwrap().data["response"];
    assert_eq!(last["output"].as_array().unwrap().len(), added.len());
}

/// The input as (start first?, chunks, ending): a raw chat SSE body (a first byte `s`, so that real
/// transcripts are seeds; `[DONE]` finishes, a body without it ends with nothing more), or a
/// structured sequence built by `arbitrary`.
fn stream(data: &[u8]) -> Option<(bool, Vec<Value>, End)> {
    match data.split_first() {
        Some((b's', body)) => {
            let mut decoder = Decoder::new();
            decoder.push(body);
            let mut chunks = Vec::new();
            let mut end = End::Nothing;
            while let Some(e) = decoder.next_event() {
                if e.is_done() {
                    end = End::Finish(None);
                    break;
                }
                if let Ok(chunk) = serde_json::from_slice(&e.data) {
                    chunks.push(chunk);
                }
            }
            Some((false, chunks, end))
        }
        _ => {
            let (start_first, chunks, end) =
                <(bool, Vec<Chunk>, End)>::arbitrary(&mut Unstructured::new(data)).ok()?;
            Some((start_first, chunks.iter().map(chunk_json).collect(), end))
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((start_first, chunks, end)) = stream(data) else {
        return;
    };
    let ctx = ResponseContext::new("resp_fuzz", "fuzz-model", 1, RequestEcho::default());
    let mut b = StreamBuilder::new(ctx);
    let mut events = Vec::new();
    if start_first {
        b.start(&mut events);
    }
    for chunk in &chunks {
        b.push_chunk(chunk, &mut events);
    }
    match end {
        End::Finish(u) => b.finish(u.map(usage).as_ref(), &mut events),
        End::Fail(code, message) => b.fail(&code, &message, &mut events),
        End::Nothing => b.finish(None, &mut events),
    }
    assert!(b.is_finished());
    check_invariants(&events);
    let after = events.len();
    b.finish(None, &mut events);
    b.fail("late", "late", &mut events);
    assert_eq!(events.len(), after, "nothing after the terminal event");
    let _ = b.response();

    let mut bytes = Vec::new();
    for event in &events {
        encode_sse(event, &mut bytes);
    }
    let mut decoder = Decoder::new();
    decoder.push(&bytes);
    for event in &events {
        let decoded = decoder.next_event().expect("every event decodes");
        assert_eq!(decoded.name_str(), event.kind);
        let data: Value = serde_json::from_slice(&decoded.data).expect("its data is JSON");
        assert_eq!(data, event.data);
    }
    assert!(decoder.next_event().is_none());
});
