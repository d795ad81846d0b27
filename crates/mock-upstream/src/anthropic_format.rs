//! Writes a [`Completion`] in the Anthropic Messages wire format: `event: <type>` + `data: <json>`
//! events (message_start, content_block_start/delta/stop for thinking, text and tool_use blocks, a
//! `ping` after the first block starts, message_delta with stop_reason and cumulative usage,
//! message_stop), the non-streaming Message body, and Anthropic-shaped errors. On request it adds
//! what only Anthropic says: a `redacted_thinking` block first, a stop on a stop sequence
//! (`stop_reason: "stop_sequence"` with the sequence) and prompt tokens written to the cache
//! (`cache_creation_input_tokens`); or it plays a recorded transcript as it is ([`transcript_steps`]). Like the real API, some
//! data lines carry spaces before their closing brace, so consumers must not rely on compact JSON.

use serde_json::{json, Map, Value};

use crate::completion::{Completion, Finish};
use crate::playback::Step;
use crate::recording::TokenKind;

/// The in-stream error written by `error_after`.
pub(crate) const STREAM_ERROR_EVENT: &str = "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n";

/// The fixed parts of one response.
pub(crate) struct MessageContext {
    pub id: String,
    pub model: String,
    pub send_usage: bool,
    /// An answer that ends by itself ends on this stop sequence.
    pub stop_sequence: Option<String>,
    /// Prompt tokens reported as written to the cache (not part of `input_tokens`).
    pub cache_creation_tokens: u32,
    /// A `redacted_thinking` block comes first.
    pub redacted_thinking: bool,
}

/// The opaque data of the mock's `redacted_thinking` block.
pub(crate) const REDACTED_THINKING_DATA: &str = "EmwKAhgBEgy3va3pzix/LafPsn4aDFIT2Xlxh0L5L8rLVyIwxtE3rAFBa8cr3qpPkNRj2YfWXGmKDxH4mPnZ5sQ7vB5URj/6ObTWIzJZdfmKYT/vKhPR";

/// The stop reason and stop sequence the answer ends with.
fn ending(ctx: &MessageContext, c: &Completion) -> (&'static str, Value) {
    match (&ctx.stop_sequence, c.finish) {
        (Some(seq), Finish::Stop) => ("stop_sequence", json!(seq)),
        _ => (stop_reason(c.finish), Value::Null),
    }
}

/// The usage the answer reports, `output_tokens` as given.
fn usage(ctx: &MessageContext, c: &Completion, output_tokens: u32) -> Value {
    let written = ctx
        .cache_creation_tokens
        .min(c.prompt_tokens - c.cached_tokens);
    json!({
        "input_tokens": c.prompt_tokens - c.cached_tokens - written,
        "cache_creation_input_tokens": written,
        "cache_read_input_tokens": c.cached_tokens,
        "cache_creation": {"ephemeral_5m_input_tokens": written, "ephemeral_1h_input_tokens": 0},
        "output_tokens": output_tokens,
        "service_tier": "standard"
    })
}

/// A recorded transcript played as it is: each event (up to and including its blank line) one
/// frame; the content, thinking and tool-argument deltas count as tokens for the stream record.
pub(crate) fn transcript_steps(transcript: &str) -> Vec<Step> {
    crate::playback::transcript_steps(transcript, |event| {
        if event.contains("\"text_delta\"") {
            Some(TokenKind::Content("".into()))
        } else if event.contains("\"thinking_delta\"") {
            Some(TokenKind::Reasoning(""))
        } else if event.contains("\"input_json_delta\"") {
            Some(TokenKind::ToolArguments)
        } else {
            None
        }
    })
}

fn stop_reason(f: Finish) -> &'static str {
    match f {
        Finish::Stop => "end_turn",
        Finish::Length | Finish::InsufficientSystemResource => "max_tokens",
        Finish::ToolCalls => "tool_use",
        Finish::ContentFilter => "refusal",
        Finish::Unknown => "a_new_reason",
    }
}

pub(crate) fn tool_use_id(ctx: &MessageContext, k: usize) -> String {
    let tail = &ctx.id[ctx.id.len().saturating_sub(12)..];
    format!("toolu_mock{tail}{k:02}")
}

pub(crate) fn signature(ctx: &MessageContext) -> String {
    format!(
        "EqMBCkYIBxgCKkBtb2NrLXNpZ25hdHVyZQ{}",
        ctx.id.replace('_', "")
    )
}

/// One SSE event. `seq` decides the padding, as deterministic stand-in for Anthropic's.
fn event(kind: &str, data: &Value, seq: usize) -> String {
    let mut json = data.to_string();
    let pad = (seq * 7) % 13;
    if pad > 0 && json.ends_with('}') {
        json.pop();
        json.push_str(&" ".repeat(pad));
        json.push('}');
    }
    format!("event: {kind}\ndata: {json}\n\n")
}

/// Accumulates the events of one stream, numbering them for the padding.
struct EventWriter {
    steps: Vec<Step>,
    seq: usize,
    pinged: bool,
}

impl EventWriter {
    fn event(&mut self, kind: &str, data: Value, token: Option<TokenKind>) {
        self.seq += 1;
        let bytes = event(kind, &data, self.seq);
        self.steps.push(match token {
            Some(t) => Step::token(bytes, t),
            None => Step::frame(bytes),
        });
    }

    fn start_block(&mut self, index: usize, block: Value) {
        self.event(
            "content_block_start",
            json!({"type": "content_block_start", "index": index, "content_block": block}),
            None,
        );
        if !self.pinged {
            self.pinged = true;
            // Anthropic spells ping with a space after the colon; copy that exactly.
            self.steps
                .push(Step::frame("event: ping\ndata: {\"type\": \"ping\"}\n\n"));
        }
    }

    fn delta(&mut self, index: usize, delta: Value, token: Option<TokenKind>) {
        self.event(
            "content_block_delta",
            json!({"type": "content_block_delta", "index": index, "delta": delta}),
            token,
        );
    }

    fn stop_block(&mut self, index: usize) {
        self.event(
            "content_block_stop",
            json!({"type": "content_block_stop", "index": index}),
            None,
        );
    }
}

/// The whole stream as steps (unpaced, without faults).
pub(crate) fn stream_steps(ctx: &MessageContext, c: &Completion) -> Vec<Step> {
    let mut w = EventWriter {
        steps: Vec::new(),
        seq: 0,
        pinged: false,
    };

    let mut message = Map::new();
    message.insert("model".into(), json!(ctx.model));
    message.insert("id".into(), json!(ctx.id));
    message.insert("type".into(), json!("message"));
    message.insert("role".into(), json!("assistant"));
    message.insert("content".into(), json!([]));
    message.insert("stop_reason".into(), Value::Null);
    message.insert("stop_sequence".into(), Value::Null);
    if ctx.send_usage {
        message.insert("usage".into(), usage(ctx, c, 1));
    }
    w.event(
        "message_start",
        json!({"type": "message_start", "message": Value::Object(message)}),
        None,
    );

    let mut index = 0usize;
    if ctx.redacted_thinking {
        w.start_block(
            index,
            json!({"type": "redacted_thinking", "data": REDACTED_THINKING_DATA}),
        );
        w.stop_block(index);
        index += 1;
    }
    if !c.reasoning.is_empty() {
        w.start_block(
            index,
            json!({"type": "thinking", "thinking": "", "signature": ""}),
        );
        for word in &c.reasoning {
            w.delta(
                index,
                json!({"type": "thinking_delta", "thinking": word}),
                Some(TokenKind::Reasoning(word)),
            );
        }
        w.delta(
            index,
            json!({"type": "signature_delta", "signature": signature(ctx)}),
            None,
        );
        w.stop_block(index);
        index += 1;
    }
    if !c.content.is_empty() || c.tool_calls.is_empty() {
        w.start_block(index, json!({"type": "text", "text": ""}));
        for word in &c.content {
            w.delta(
                index,
                json!({"type": "text_delta", "text": word}),
                Some(TokenKind::Content(word.clone())),
            );
        }
        w.stop_block(index);
        index += 1;
    }
    for (k, call) in c.tool_calls.iter().enumerate() {
        w.start_block(
            index,
            json!({"type": "tool_use", "id": tool_use_id(ctx, k), "name": call.name, "input": {}}),
        );
        w.delta(
            index,
            json!({"type": "input_json_delta", "partial_json": ""}),
            None,
        );
        for fragment in &call.fragments {
            w.delta(
                index,
                json!({"type": "input_json_delta", "partial_json": fragment}),
                Some(TokenKind::ToolArguments),
            );
        }
        w.stop_block(index);
        index += 1;
    }

    let mut message_delta = Map::new();
    message_delta.insert("type".into(), json!("message_delta"));
    let (reason, sequence) = ending(ctx, c);
    message_delta.insert(
        "delta".into(),
        json!({"stop_reason": reason, "stop_sequence": sequence}),
    );
    if ctx.send_usage {
        let mut u = usage(ctx, c, c.completion_tokens());
        if let Some(u) = u.as_object_mut() {
            // message_delta's usage carries the counts only.
            u.remove("cache_creation");
            u.remove("service_tier");
        }
        message_delta.insert("usage".into(), u);
    }
    w.event("message_delta", Value::Object(message_delta), None);
    w.event("message_stop", json!({"type": "message_stop"}), None);
    w.steps
}

/// The non-streaming Message body.
pub(crate) fn body(ctx: &MessageContext, c: &Completion) -> Value {
    let mut content = Vec::new();
    if ctx.redacted_thinking {
        content.push(json!({"type": "redacted_thinking", "data": REDACTED_THINKING_DATA}));
    }
    if !c.reasoning.is_empty() {
        content.push(json!({"type": "thinking", "thinking": c.reasoning_text(), "signature": signature(ctx)}));
    }
    if !c.content.is_empty() || c.tool_calls.is_empty() {
        content.push(json!({"type": "text", "text": c.text()}));
    }
    for (k, call) in c.tool_calls.iter().enumerate() {
        let input: Value = serde_json::from_str(&call.arguments()).unwrap_or_else(|_| json!({}));
        content.push(json!({"type": "tool_use", "id": tool_use_id(ctx, k), "name": call.name, "input": input}));
    }
    let mut m = Map::new();
    m.insert("model".into(), json!(ctx.model));
    m.insert("id".into(), json!(ctx.id));
    m.insert("type".into(), json!("message"));
    m.insert("role".into(), json!("assistant"));
    m.insert("content".into(), Value::Array(content));
    let (reason, sequence) = ending(ctx, c);
    m.insert("stop_reason".into(), json!(reason));
    m.insert("stop_sequence".into(), sequence);
    if ctx.send_usage {
        m.insert("usage".into(), usage(ctx, c, c.completion_tokens()));
    }
    Value::Object(m)
}

/// The Anthropic error body for `status`.
pub(crate) fn error_body(status: u16, model: &str, request_id: &str) -> Value {
    let (kind, message) = match status {
        400 => (
            "invalid_request_error",
            "Invalid request (mock upstream status 400).".to_string(),
        ),
        401 => ("authentication_error", "invalid x-api-key".to_string()),
        403 => (
            "permission_error",
            "Your API key does not have permission to use the specified resource.".to_string(),
        ),
        404 => ("not_found_error", format!("model: {model}")),
        413 => (
            "request_too_large",
            "Request exceeds the maximum allowed number of bytes.".to_string(),
        ),
        429 => (
            "rate_limit_error",
            "Number of request tokens has exceeded your per-minute rate limit.".to_string(),
        ),
        529 => ("overloaded_error", "Overloaded".to_string()),
        s if s >= 500 => ("api_error", "Internal server error".to_string()),
        s => (
            "invalid_request_error",
            format!("Mock upstream error (status {s})."),
        ),
    };
    error_with(kind, &message, request_id)
}

/// A free-form Anthropic error body.
pub(crate) fn error_with(kind: &str, message: &str, request_id: &str) -> Value {
    json!({"type": "error", "error": {"type": kind, "message": message}, "request_id": request_id})
}
