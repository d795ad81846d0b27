//! Fuzzes the Anthropic stream translator (`anthropic::StreamTranslator`) with arbitrary event
//! sequences: raw SSE bodies (seeded with real transcripts), or well-formed events in any order and
//! with any indices, events with wrong field types, and raw name/data pairs. The chunks must keep the OpenAI stream's shape: every chunk stamped with
//! the given id and model, `role` on the first chunk only, a `finish_reason` on the last chunk only,
//! nothing after the end, and tool-call indices that were announced before their arguments.
#![no_main]

use arbitrary::{Arbitrary, Unstructured};
use libfuzzer_sys::fuzz_target;
use serde_json::{json, Map, Value};
use switchyard_fuzz::ArbitraryJson;
use switchyard_wire::anthropic::StreamTranslator;
use switchyard_wire::sse::Decoder;

#[derive(Arbitrary, Debug)]
enum Block {
    Text(String),
    Thinking(String, String),
    RedactedThinking(String),
    ToolUse(String, String),
    Other(String),
}

#[derive(Arbitrary, Debug)]
enum Delta {
    Text(String),
    Thinking(String),
    Signature(String),
    InputJson(String),
    Other(String),
}

#[derive(Arbitrary, Debug)]
enum StopReason {
    EndTurn,
    MaxTokens,
    ToolUse,
    Refusal,
    Other(String),
}

#[derive(Arbitrary, Debug)]
struct UsageCounts {
    input: Option<u64>,
    output: Option<u64>,
    cache_read: Option<u64>,
    cache_write: Option<u64>,
    thinking: Option<u64>,
}

#[derive(Arbitrary, Debug)]
enum Step {
    MessageStart(Option<String>, Option<UsageCounts>),
    BlockStart(u8, Block),
    BlockDelta(u8, Delta),
    BlockStop(u8),
    MessageDelta(Option<StopReason>, Option<UsageCounts>),
    MessageStop,
    Ping,
    Error(String, String),
    /// A known event whose data is arbitrary JSON (wrong types, missing fields).
    Mangled(u8, ArbitraryJson),
    /// Anything at all.
    Raw(String, String),
}

const KNOWN: [&str; 7] = [
    "message_start",
    "content_block_start",
    "content_block_delta",
    "content_block_stop",
    "message_delta",
    "message_stop",
    "error",
];

fn usage(u: &UsageCounts) -> Value {
    let mut out = Map::new();
    for (k, v) in [
        ("input_tokens", u.input),
        ("output_tokens", u.output),
        ("cache_read_input_tokens", u.cache_read),
        ("cache_creation_input_tokens", u.cache_write),
    ] {
        if let Some(v) = v {
            out.insert(k.into(), json!(v));
        }
    }
    if let Some(t) = u.thinking {
        out.insert(
            "output_tokens_details".into(),
            json!({"thinking_tokens": t}),
        );
    }
    Value::Object(out)
}

/// The event name and data of a step.
fn event(step: &Step) -> (String, String) {
    let (name, data) = match step {
        Step::MessageStart(id, counts) => {
            let mut message =
                json!({"id": id, "type": "message", "role": "assistant", "content": []});
            if let Some(c) = counts {
                message["usage"] = usage(c);
            }
            (
                "message_start",
                json!({"type": "message_start", "message": message}),
            )
        }
        Step::BlockStart(index, block) => {
            let block = match block {
                Block::Text(t) => json!({"type": "text", "text": t}),
                Block::Thinking(t, s) => json!({"type": "thinking", "thinking": t, "signature": s}),
                Block::RedactedThinking(d) => json!({"type": "redacted_thinking", "data": d}),
                Block::ToolUse(id, name) => {
                    json!({"type": "tool_use", "id": id, "name": name, "input": {}})
                }
                Block::Other(kind) => json!({"type": kind}),
            };
            (
                "content_block_start",
                json!({"type": "content_block_start", "index": index, "content_block": block}),
            )
        }
        Step::BlockDelta(index, delta) => {
            let delta = match delta {
                Delta::Text(t) => json!({"type": "text_delta", "text": t}),
                Delta::Thinking(t) => json!({"type": "thinking_delta", "thinking": t}),
                Delta::Signature(s) => json!({"type": "signature_delta", "signature": s}),
                Delta::InputJson(p) => json!({"type": "input_json_delta", "partial_json": p}),
                Delta::Other(kind) => json!({"type": kind}),
            };
            (
                "content_block_delta",
                json!({"type": "content_block_delta", "index": index, "delta": delta}),
            )
        }
        Step::BlockStop(index) => (
            "content_block_stop",
            json!({"type": "content_block_stop", "index": index}),
        ),
        Step::MessageDelta(reason, counts) => {
            let reason = reason.as_ref().map(|r| match r {
                StopReason::EndTurn => "end_turn".to_owned(),
                StopReason::MaxTokens => "max_tokens".to_owned(),
                StopReason::ToolUse => "tool_use".to_owned(),
                StopReason::Refusal => "refusal".to_owned(),
                StopReason::Other(s) => s.clone(),
            });
            let mut data = json!({"type": "message_delta", "delta": {"stop_reason": reason}});
            if let Some(c) = counts {
                data["usage"] = usage(c);
            }
            ("message_delta", data)
        }
        Step::MessageStop => ("message_stop", json!({"type": "message_stop"})),
        Step::Ping => ("ping", json!({"type": "ping"})),
        Step::Error(kind, message) => (
            "error",
            json!({"type": "error", "error": {"type": kind, "message": message}}),
        ),
        Step::Mangled(which, data) => (KNOWN[usize::from(*which) % KNOWN.len()], data.0.clone()),
        Step::Raw(name, data) => return (name.clone(), data.clone()),
    };
    (name.to_owned(), data.to_string())
}

/// The events of the input: a raw SSE body (a first byte `s`, so that real transcripts are seeds),
/// or a structured sequence built by `arbitrary`; and whether to drain after each event.
fn events(data: &[u8]) -> Option<(Vec<(String, String)>, bool)> {
    match data.split_first() {
        Some((b's', body)) => {
            let mut decoder = Decoder::new();
            decoder.push(body);
            let mut out = Vec::new();
            while let Some(e) = decoder.next_event() {
                out.push((
                    e.name_str().to_owned(),
                    String::from_utf8_lossy(&e.data).into_owned(),
                ));
            }
            Some((out, body.len() % 2 == 0))
        }
        _ => {
            let (steps, drain_each) =
                <(Vec<(bool, Step)>, bool)>::arbitrary(&mut Unstructured::new(data)).ok()?;
            let events = steps
                .iter()
                .map(|(named, step)| {
                    let (name, data) = event(step);
                    // Unnamed events carry their type in the data only, as some proxies send them.
                    (if *named { name } else { String::new() }, data)
                })
                .collect();
            Some((events, drain_each))
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((events, drain_each)) = events(data) else {
        return;
    };
    let mut t = StreamTranslator::new("chatcmpl-fuzz".into(), "fuzz-model".into(), 7);
    let mut chunks: Vec<Value> = Vec::new();
    for (name, data) in &events {
        let was_done = t.is_done();
        let before = chunks.len();
        let _ = t.push(name, &data);
        if drain_each {
            chunks.extend(t.drain());
        }
        if was_done {
            assert_eq!(chunks.len(), before, "no chunk after the end");
        }
    }
    chunks.extend(t.drain());

    let mut announced = Vec::new();
    for (i, chunk) in chunks.iter().enumerate() {
        assert_eq!(chunk["id"], "chatcmpl-fuzz");
        assert_eq!(chunk["model"], "fuzz-model");
        assert_eq!(chunk["object"], "chat.completion.chunk");
        let choice = &chunk["choices"][0];
        assert_eq!(choice["index"], 0);
        assert_eq!(
            choice["delta"].get("role").is_some(),
            i == 0,
            "role on the first chunk only"
        );
        let last = i + 1 == chunks.len();
        if !choice["finish_reason"].is_null() {
            assert!(last && t.is_done(), "finish_reason on the last chunk only");
        }
        if let Some(calls) = choice["delta"]["tool_calls"].as_array() {
            for call in calls {
                let index = call["index"].as_u64().expect("a tool call has an index");
                if call.get("id").is_some() {
                    assert_eq!(
                        index,
                        announced.len() as u64,
                        "tool calls numbered in order"
                    );
                    announced.push(index);
                } else {
                    assert!(
                        announced.contains(&index),
                        "arguments for an unannounced call"
                    );
                }
            }
        }
    }
    let _ = (
        t.usage_json(),
        t.usage_chunk(),
        t.finish_reason(),
        t.stop_reason(),
    );
    let _ = (
        t.error(),
        t.message_id(),
        t.signature(),
        t.redacted_thinking(),
    );
    for block in t.thinking_blocks() {
        assert!(block["type"] == "thinking" || block["type"] == "redacted_thinking");
    }
});
