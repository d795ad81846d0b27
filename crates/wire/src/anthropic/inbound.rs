//! The INBOUND direction of the Anthropic Messages API: a client's `POST /v1/messages` body becomes
//! a chat request ([`messages_to_chat`]), a chat completion becomes a Messages object
//! ([`completion_to_message`]), and chat chunks become the Messages event sequence
//! ([`MessagesStream`]: `message_start`, `ping`, `content_block_start/delta/stop` for thinking,
//! text and tool_use, `message_delta`, `message_stop`; errors as `event: error`). Pure, no IO.

use bytes::{BufMut, BytesMut};
use serde::Serialize;
use serde_json::{json, Map, Value};

use super::TranslateError;
use crate::finish::FinishReason;
use crate::openai::ChunkView;
use crate::sse;

/// A Messages request as the chat request the relay serves.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatPlan {
    /// The model the client asked for (the gateway's model name).
    pub model: String,
    pub stream: bool,
    /// The chat request body.
    pub body: Value,
    /// What the chat translation had to leave out (e.g. `tools.3:web_search_20250305`): an
    /// Anthropic route gets the request as it came, every other route goes on without these.
    pub dropped: Vec<String>,
}

fn err(param: &str, message: impl Into<String>) -> TranslateError {
    TranslateError::new(param, message)
}

/// Validates what the gateway needs of a Messages request (model, max_tokens, stream, the
/// messages array) and translates it into a chat request. Tolerant as Anthropic is: `system`
/// messages inside `messages`, unknown fields, and blocks or tools chat cannot express are not
/// refused: they are left out of the translation and named in [`ChatPlan::dropped`].
pub fn messages_to_chat(raw: &Value) -> Result<ChatPlan, TranslateError> {
    let req = raw
        .as_object()
        .ok_or_else(|| err("body", "The request body must be a JSON object."))?;
    let model = match req.get("model") {
        Some(Value::String(m)) if !m.is_empty() => m.clone(),
        _ => return Err(err("model", "model: Field required (a non-empty string).")),
    };
    let max_tokens = match req.get("max_tokens") {
        Some(v) => v.as_u64().filter(|n| *n >= 1).ok_or_else(|| {
            err(
                "max_tokens",
                "max_tokens: must be an integer of at least 1.",
            )
        })?,
        None => return Err(err("max_tokens", "max_tokens: Field required")),
    };
    let stream = match req.get("stream") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(err("stream", "stream: must be a boolean.")),
    };
    let mut messages = Vec::new();
    let mut dropped = Vec::new();
    match req.get("system") {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) => messages.push(json!({"role": "system", "content": s})),
        Some(Value::Array(blocks)) => {
            let text = system_text(blocks, "system", &mut dropped);
            messages.push(json!({"role": "system", "content": text}));
        }
        Some(_) => {
            return Err(err(
                "system",
                "system: must be a string or an array of text blocks.",
            ))
        }
    }
    let turns = match req.get("messages") {
        Some(Value::Array(m)) if !m.is_empty() => m,
        Some(Value::Array(_)) => {
            return Err(err(
                "messages",
                "messages: at least one message is required.",
            ))
        }
        _ => return Err(err("messages", "messages: Field required (an array).")),
    };
    for (i, turn) in turns.iter().enumerate() {
        translate_turn(i, turn, &mut messages, &mut dropped)?;
    }
    let mut body = Map::new();
    body.insert("model".into(), Value::String(model.clone()));
    body.insert("messages".into(), Value::Array(messages));
    body.insert("max_tokens".into(), json!(max_tokens));
    if stream {
        body.insert("stream".into(), Value::Bool(true));
        body.insert("stream_options".into(), json!({"include_usage": true}));
    }
    for (name, lo, hi) in [("temperature", 0.0, 1.0), ("top_p", 0.0, 1.0)] {
        match req.get(name) {
            None | Some(Value::Null) => {}
            Some(v) => match v.as_f64() {
                Some(x) if (lo..=hi).contains(&x) => {
                    body.insert(name.into(), v.clone());
                }
                _ => {
                    return Err(err(
                        name,
                        format!("{name}: must be a number from {lo} to {hi}."),
                    ))
                }
            },
        }
    }
    match req.get("top_k") {
        None | Some(Value::Null) => {}
        Some(v) if v.as_u64().is_some() => {
            body.insert("top_k".into(), v.clone());
        }
        Some(_) => return Err(err("top_k", "top_k: must be a non-negative integer.")),
    }
    match req.get("stop_sequences") {
        None | Some(Value::Null) => {}
        Some(Value::Array(s)) if s.iter().all(Value::is_string) => {
            if !s.is_empty() {
                body.insert("stop".into(), Value::Array(s.clone()));
            }
        }
        Some(_) => {
            return Err(err(
                "stop_sequences",
                "stop_sequences: must be an array of strings.",
            ))
        }
    }
    if let Some(user) = req
        .get("metadata")
        .and_then(|m| m.get("user_id"))
        .and_then(Value::as_str)
    {
        body.insert("user".into(), Value::String(user.to_owned()));
    }
    translate_thinking(req, &mut body)?;
    translate_tools(req, &mut body, &mut dropped)?;
    Ok(ChatPlan {
        model,
        stream,
        body: Value::Object(body),
        dropped,
    })
}

/// `thinking: {"type":"enabled","budget_tokens":N}` → the same `thinking` object (Anthropic routes
/// keep the exact budget) and a `reasoning_effort` for OpenAI-dialect reasoning routes.
fn translate_thinking(
    req: &Map<String, Value>,
    body: &mut Map<String, Value>,
) -> Result<(), TranslateError> {
    let Some(t) = req.get("thinking").filter(|t| !t.is_null()) else {
        return Ok(());
    };
    match t["type"].as_str() {
        Some("disabled") => Ok(()),
        // Adaptive thinking: the model decides how much to think.
        Some("adaptive") => {
            body.insert("reasoning_effort".into(), Value::String("medium".into()));
            Ok(())
        }
        Some("enabled") => {
            let budget = t["budget_tokens"].as_u64().ok_or_else(|| {
                err(
                    "thinking.budget_tokens",
                    "thinking.budget_tokens: must be an integer.",
                )
            })?;
            let effort = match budget {
                0..=4095 => "low",
                4096..=16383 => "medium",
                _ => "high",
            };
            body.insert(
                "thinking".into(),
                json!({"type": "enabled", "budget_tokens": budget}),
            );
            body.insert("reasoning_effort".into(), Value::String(effort.into()));
            Ok(())
        }
        _ => Err(err(
            "thinking.type",
            "thinking.type: must be 'enabled', 'adaptive' or 'disabled'.",
        )),
    }
}

/// The text of `system` blocks (or a `system` message's blocks), joined by newlines; blocks
/// without text are named in `dropped`.
fn system_text(blocks: &[Value], at: &str, dropped: &mut Vec<String>) -> String {
    let mut text = String::new();
    for (i, b) in blocks.iter().enumerate() {
        match b["text"].as_str() {
            Some(t) => {
                if !text.is_empty() {
                    text.push('\n');
                }
                text.push_str(t);
            }
            None => dropped.push(format!(
                "{at}.{i}:{}",
                b["type"].as_str().unwrap_or("block")
            )),
        }
    }
    text
}

fn translate_tools(
    req: &Map<String, Value>,
    body: &mut Map<String, Value>,
    dropped: &mut Vec<String>,
) -> Result<(), TranslateError> {
    match req.get("tools") {
        None | Some(Value::Null) => {}
        Some(Value::Array(tools)) => {
            let mut out = Vec::with_capacity(tools.len());
            for (i, t) in tools.iter().enumerate() {
                let kind = t.get("type").and_then(Value::as_str);
                let custom = matches!(kind, None | Some("custom"));
                let name = t["name"].as_str().filter(|n| !n.is_empty());
                let (true, Some(name)) = (custom, name) else {
                    // A server tool (web search, code execution, …) only Anthropic runs.
                    dropped.push(format!("tools.{i}:{}", kind.unwrap_or("tool")));
                    continue;
                };
                let mut function = json!({
                    "name": name,
                    "parameters": t.get("input_schema").cloned().unwrap_or_else(|| json!({"type": "object"})),
                });
                if let Some(d) = t.get("description").and_then(Value::as_str) {
                    function["description"] = Value::String(d.to_owned());
                }
                out.push(json!({"type": "function", "function": function}));
            }
            if !out.is_empty() {
                body.insert("tools".into(), Value::Array(out));
            }
        }
        Some(_) => return Err(err("tools", "tools: must be an array.")),
    }
    match req.get("tool_choice") {
        None | Some(Value::Null) => {}
        Some(c) => {
            let choice = match c["type"].as_str() {
                Some("auto") => json!("auto"),
                Some("any") => json!("required"),
                Some("none") => json!("none"),
                Some("tool") => match c["name"].as_str() {
                    Some(n) => json!({"type": "function", "function": {"name": n}}),
                    None => {
                        return Err(err("tool_choice.name", "tool_choice.name: Field required"))
                    }
                },
                _ => {
                    return Err(err(
                        "tool_choice.type",
                        "tool_choice.type: must be 'auto', 'any', 'tool' or 'none'.",
                    ))
                }
            };
            if !body.contains_key("tools") {
                // Every tool was a server tool the translation left out: nothing to choose.
                return Ok(());
            }
            if c["disable_parallel_tool_use"] == true && body.contains_key("tools") {
                body.insert("parallel_tool_calls".into(), Value::Bool(false));
            }
            body.insert("tool_choice".into(), choice);
        }
    }
    Ok(())
}

/// One Messages turn as chat messages (a user turn's `tool_result` blocks become `tool` messages
/// first, as chat requires them right after the assistant's calls).
fn translate_turn(
    i: usize,
    turn: &Value,
    out: &mut Vec<Value>,
    dropped: &mut Vec<String>,
) -> Result<(), TranslateError> {
    let role = turn["role"].as_str();
    let blocks: Vec<Value> = match &turn["content"] {
        Value::String(s) => vec![json!({"type": "text", "text": s})],
        Value::Array(b) => b.clone(),
        _ => {
            return Err(err(
                &format!("messages.{i}.content"),
                format!("messages.{i}.content: must be a string or an array of content blocks."),
            ))
        }
    };
    match role {
        Some("user") => {
            let mut parts = Vec::new();
            for (j, b) in blocks.iter().enumerate() {
                let at = format!("messages.{i}.content.{j}");
                match b["type"].as_str() {
                    Some("text") => parts.push(json!({"type": "text", "text": text_of(b, &at)?})),
                    Some("image") => parts.push(image_part(b, &at)?),
                    Some("tool_result") => {
                        let id = b["tool_use_id"]
                            .as_str()
                            .ok_or_else(|| err(&at, format!("{at}.tool_use_id: Field required")))?;
                        let mut content = match &b["content"] {
                            Value::String(s) => s.clone(),
                            Value::Array(inner) => inner
                                .iter()
                                .filter_map(|c| c["text"].as_str())
                                .collect::<Vec<_>>()
                                .join("\n"),
                            _ => String::new(),
                        };
                        if b["is_error"] == true && !content.starts_with("Error") {
                            content.insert_str(0, "Error: ");
                        }
                        out.push(json!({"role": "tool", "tool_call_id": id, "content": content}));
                    }
                    Some("document") if b["source"]["type"] == "text" => {
                        let text = b["source"]["data"].as_str().unwrap_or_default();
                        parts.push(json!({"type": "text", "text": text}));
                    }
                    // Search results, documents, server tool results…: Anthropic's own.
                    other => dropped.push(format!("{at}:{}", other.unwrap_or("block"))),
                }
            }
            if !parts.is_empty() {
                let content = match parts.as_slice() {
                    [one] if one["type"] == "text" => one["text"].clone(),
                    _ => Value::Array(parts),
                };
                out.push(json!({"role": "user", "content": content}));
            }
        }
        Some("assistant") => {
            let mut text = String::new();
            let mut calls = Vec::new();
            let mut reasoning = String::new();
            let mut signature = None;
            let mut thinking_blocks = Vec::new();
            for (j, b) in blocks.iter().enumerate() {
                let at = format!("messages.{i}.content.{j}");
                match b["type"].as_str() {
                    Some("text") => text.push_str(text_of(b, &at)?),
                    Some("tool_use") => {
                        let (Some(id), Some(name)) = (b["id"].as_str(), b["name"].as_str()) else {
                            return Err(err(&at, format!("{at}: tool_use needs id and name.")));
                        };
                        let input = b.get("input").cloned().unwrap_or_else(|| json!({}));
                        calls.push(json!({
                            "id": id, "type": "function",
                            "function": {"name": name, "arguments": input.to_string()},
                        }));
                    }
                    Some("thinking") => {
                        reasoning.push_str(b["thinking"].as_str().unwrap_or_default());
                        if let Some(s) = b["signature"].as_str().filter(|s| !s.is_empty()) {
                            signature = Some(s.to_owned());
                            thinking_blocks.push(b.clone());
                        }
                    }
                    Some("redacted_thinking") => thinking_blocks.push(b.clone()),
                    other => dropped.push(format!("{at}:{}", other.unwrap_or("block"))),
                }
            }
            let mut m = json!({"role": "assistant", "content": if text.is_empty() && !calls.is_empty() { Value::Null } else { Value::String(text) }});
            if !calls.is_empty() {
                m["tool_calls"] = Value::Array(calls);
            }
            if !reasoning.is_empty() {
                m["reasoning_content"] = Value::String(reasoning);
            }
            if let Some(s) = signature {
                m["reasoning_signature"] = Value::String(s);
            }
            if !thinking_blocks.is_empty() {
                m["thinking_blocks"] = Value::Array(thinking_blocks);
            }
            out.push(m);
        }
        // Claude Code sends notes about its environment as `system` messages between turns;
        // chat takes a system message anywhere.
        Some("system") => {
            let text = system_text(&blocks, &format!("messages.{i}.content"), dropped);
            out.push(json!({"role": "system", "content": text}));
        }
        _ => {
            return Err(err(
                &format!("messages.{i}.role"),
                format!("messages.{i}.role: must be 'user', 'assistant' or 'system'."),
            ))
        }
    }
    Ok(())
}

fn text_of<'a>(b: &'a Value, at: &str) -> Result<&'a str, TranslateError> {
    b["text"]
        .as_str()
        .ok_or_else(|| err(at, format!("{at}.text: Field required")))
}

fn image_part(b: &Value, at: &str) -> Result<Value, TranslateError> {
    let src = &b["source"];
    let url = match src["type"].as_str() {
        Some("base64") => match (src["media_type"].as_str(), src["data"].as_str()) {
            (Some(mt), Some(data)) => format!("data:{mt};base64,{data}"),
            _ => {
                return Err(err(
                    at,
                    format!("{at}.source: media_type and data are required."),
                ))
            }
        },
        Some("url") => src["url"]
            .as_str()
            .ok_or_else(|| err(at, format!("{at}.source.url: Field required")))?
            .to_owned(),
        _ => {
            return Err(err(
                at,
                format!("{at}.source.type: must be 'base64' or 'url'."),
            ))
        }
    };
    Ok(json!({"type": "image_url", "image_url": {"url": url}}))
}

/// The body an Anthropic-dialect route is sent for a client's Messages request: the request as
/// the client sent it (cache_control, system blocks, every content block kept), with the route's
/// model name, without the gateway's own `mock` field.
pub fn passthrough_body(original: &Value, upstream_model: &str) -> Vec<u8> {
    let mut body = original.clone();
    if let Some(o) = body.as_object_mut() {
        o.insert("model".into(), Value::String(upstream_model.to_owned()));
        o.remove("mock");
    }
    crate::compact_json::to_vec(&body)
}

/// An Anthropic object (a Message, or a `message_delta` event's data) as the upstream sent it,
/// with `"cost":"<cost>"` added as the last member of its top-level `usage` (a `usage` holding
/// only the cost is added when it has none). Nothing else is touched: the text around the
/// insertion is copied as it came. `None` when `json` is not a JSON object.
pub fn with_usage_cost(json: &[u8], cost: &str) -> Option<Vec<u8>> {
    crate::usage::with_cost_in(json, "usage", cost)
}

/// A chat answer's finish reason (none read as `stop`) → Messages `stop_reason`
/// ([`FinishReason::anthropic_stop_reason`]).
pub fn stop_reason(finish: Option<FinishReason>, stopped_by_sequence: bool) -> &'static str {
    finish
        .unwrap_or(FinishReason::Stop)
        .anthropic_stop_reason(stopped_by_sequence)
}

/// Chat usage (`prompt_tokens` includes cached ones) → Messages usage (`input_tokens` excludes
/// the cache reads). `cost` (decimal USD string) rides along as an extra field the SDKs keep.
pub fn usage_to_messages(u: &Value) -> Value {
    let prompt = u["prompt_tokens"].as_u64().unwrap_or(0);
    let cached = u["prompt_tokens_details"]["cached_tokens"]
        .as_u64()
        .unwrap_or(0)
        .min(prompt);
    let mut out = json!({
        "input_tokens": prompt - cached,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": cached,
        "output_tokens": u["completion_tokens"].as_u64().unwrap_or(0),
    });
    if let Some(cost) = u.get("cost").filter(|c| !c.is_null()) {
        out["cost"] = cost.clone();
    }
    out
}

/// A non-streamed chat completion as a Messages object with the id `id`, named after `model`.
pub fn completion_to_message(completion: &Value, id: &str, model: &str) -> Value {
    let choice = &completion["choices"][0];
    let msg = &choice["message"];
    let mut content = Vec::new();
    if let Some(blocks) = msg["thinking_blocks"].as_array().filter(|b| !b.is_empty()) {
        content.extend(blocks.iter().cloned());
    } else if let Some(r) = msg["reasoning_content"]
        .as_str()
        .or(msg["reasoning"].as_str())
        .filter(|r| !r.is_empty())
    {
        let signature = msg["reasoning_signature"].as_str().unwrap_or_default();
        content.push(json!({"type": "thinking", "thinking": r, "signature": signature}));
    }
    if let Some(t) = msg["content"].as_str().filter(|t| !t.is_empty()) {
        content.push(json!({"type": "text", "text": t}));
    }
    for call in msg["tool_calls"].as_array().into_iter().flatten() {
        let args = call["function"]["arguments"].as_str().unwrap_or("{}");
        let input: Value = serde_json::from_str(args).unwrap_or_else(|_| json!({}));
        content.push(json!({
            "type": "tool_use",
            "id": call["id"].as_str().unwrap_or_default(),
            "name": call["function"]["name"].as_str().unwrap_or_default(),
            "input": input,
        }));
    }
    json!({
        "id": id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop_reason(choice["finish_reason"].as_str().map(FinishReason::from_openai), false),
        "stop_sequence": Value::Null,
        "usage": usage_to_messages(&completion["usage"]),
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Block {
    None,
    Thinking,
    Text,
    /// A tool_use block for the chat tool call of this index.
    Tool(u64),
}

/// Chat chunks (as the gateway's chat relay writes them: the usage and cost arrive on the last
/// chunks) → the Messages event sequence, written as SSE into the caller's buffer. A chunk is read
/// through its borrowed [`ChunkView`] and every event is serialised straight into the buffer: per
/// chunk nothing is allocated but the view's vectors (the usage is kept once, at the end).
#[derive(Debug, Clone)]
pub struct MessagesStream {
    id: String,
    model: String,
    started: bool,
    ended: bool,
    block: Block,
    /// The index the next content block gets.
    next_index: u64,
    signature: Option<String>,
    finish: Option<FinishReason>,
    usage: Option<Value>,
}

/// `{"type": "content_block_delta", "index": …, "delta": …}`.
#[derive(Serialize)]
struct BlockDelta<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    index: u64,
    delta: DeltaOut<'a>,
}

#[derive(Serialize)]
#[serde(tag = "type")]
enum DeltaOut<'a> {
    #[serde(rename = "thinking_delta")]
    Thinking { thinking: &'a str },
    #[serde(rename = "text_delta")]
    Text { text: &'a str },
    #[serde(rename = "input_json_delta")]
    InputJson { partial_json: &'a str },
    #[serde(rename = "signature_delta")]
    Signature { signature: &'a str },
}

/// `{"type": "content_block_start", "index": …, "content_block": …}`.
#[derive(Serialize)]
struct BlockStart<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    index: u64,
    content_block: BlockOut<'a>,
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum BlockOut<'a> {
    Thinking {
        thinking: &'static str,
        signature: &'static str,
    },
    Text {
        text: &'static str,
    },
    ToolUse {
        id: &'a str,
        name: &'a str,
        input: Empty,
    },
}

/// `{}`.
#[derive(Serialize)]
struct Empty {}

/// `{"type": "content_block_stop", "index": …}`.
#[derive(Serialize)]
struct BlockStop {
    #[serde(rename = "type")]
    kind: &'static str,
    index: u64,
}

impl MessagesStream {
    pub fn new(id: String, model: String) -> MessagesStream {
        MessagesStream {
            id,
            model,
            started: false,
            ended: false,
            block: Block::None,
            next_index: 0,
            signature: None,
            finish: None,
            usage: None,
        }
    }

    /// `event: <name>\ndata: <v as compact JSON>\n\n`, serialised into `out` directly.
    fn event(out: &mut BytesMut, name: &str, v: &impl Serialize) {
        out.extend_from_slice(b"event: ");
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b"\ndata: ");
        // Serialising these shapes into memory cannot fail (no IO, string keys only); compact
        // JSON has no raw newline, so the payload stays on one `data:` line.
        if serde_json::to_writer(out.writer(), v).is_err() {
            out.extend_from_slice(b"{}");
        }
        out.extend_from_slice(b"\n\n");
    }

    /// `message_start` and the first `ping`, once.
    pub fn start(&mut self, out: &mut BytesMut) {
        if self.started {
            return;
        }
        self.started = true;
        Self::event(
            out,
            "message_start",
            &json!({"type": "message_start", "message": {
                "id": self.id, "type": "message", "role": "assistant", "model": self.model,
                "content": [], "stop_reason": Value::Null, "stop_sequence": Value::Null,
                "usage": {"input_tokens": 0, "output_tokens": 0},
            }}),
        );
        Self::ping(out);
    }

    /// A keep-alive.
    pub fn ping(out: &mut BytesMut) {
        sse::write_named(out, "ping", br#"{"type":"ping"}"#);
    }

    fn close_block(&mut self, out: &mut BytesMut) {
        if self.block == Block::None {
            return;
        }
        let index = self.next_index - 1;
        if self.block == Block::Thinking {
            let signature = self.signature.take().unwrap_or_default();
            Self::delta(
                out,
                index,
                DeltaOut::Signature {
                    signature: &signature,
                },
            );
        }
        Self::event(
            out,
            "content_block_stop",
            &BlockStop {
                kind: "content_block_stop",
                index,
            },
        );
        self.block = Block::None;
    }

    fn open_block(&mut self, out: &mut BytesMut, block: Block, content_block: BlockOut<'_>) {
        self.close_block(out);
        let index = self.next_index;
        self.next_index += 1;
        self.block = block;
        Self::event(
            out,
            "content_block_start",
            &BlockStart {
                kind: "content_block_start",
                index,
                content_block,
            },
        );
    }

    fn delta(out: &mut BytesMut, index: u64, delta: DeltaOut<'_>) {
        Self::event(
            out,
            "content_block_delta",
            &BlockDelta {
                kind: "content_block_delta",
                index,
                delta,
            },
        );
    }

    /// One chat chunk's data, parsed as a [`ChunkView`] (data that is not a chunk is skipped).
    pub fn chunk_data(&mut self, data: &[u8], out: &mut BytesMut) {
        if let Some(view) = ChunkView::parse(data) {
            self.chunk(&view, out);
        }
    }

    /// One chat chunk (or a chat error event `{"error":{…}}`).
    pub fn chunk(&mut self, chunk: &ChunkView<'_>, out: &mut BytesMut) {
        if let Some(e) = chunk.error {
            if let Ok(e @ Value::Object(_)) = serde_json::from_str::<Value>(e.get()) {
                self.error(&e, out);
                return;
            }
        }
        self.start(out);
        if let Some(u) = chunk.usage {
            if let Ok(u @ Value::Object(_)) = serde_json::from_str::<Value>(u.get()) {
                self.usage = Some(u);
            }
        }
        let Some(choice) = chunk.choices.first() else {
            return;
        };
        let d = &choice.delta;
        let reasoning = d
            .reasoning_content
            .as_deref()
            .or(d.reasoning.as_deref())
            .filter(|r| !r.is_empty());
        if let Some(r) = reasoning {
            if self.block != Block::Thinking {
                self.open_block(
                    out,
                    Block::Thinking,
                    BlockOut::Thinking {
                        thinking: "",
                        signature: "",
                    },
                );
            }
            Self::delta(out, self.next_index - 1, DeltaOut::Thinking { thinking: r });
        }
        if let Some(s) = d.reasoning_signature.as_deref() {
            let kept = self.signature.get_or_insert_with(String::new);
            kept.clear();
            kept.push_str(s);
        }
        if let Some(t) = d.content.as_deref().filter(|t| !t.is_empty()) {
            if self.block != Block::Text {
                self.open_block(out, Block::Text, BlockOut::Text { text: "" });
            }
            Self::delta(out, self.next_index - 1, DeltaOut::Text { text: t });
        }
        for call in &d.tool_calls {
            let n = call.index.unwrap_or(0);
            if self.block != Block::Tool(n) {
                self.open_block(
                    out,
                    Block::Tool(n),
                    BlockOut::ToolUse {
                        id: call.id.as_deref().unwrap_or_default(),
                        name: call.function.name.as_deref().unwrap_or_default(),
                        input: Empty {},
                    },
                );
            }
            if let Some(a) = call.function.arguments.as_deref().filter(|a| !a.is_empty()) {
                Self::delta(
                    out,
                    self.next_index - 1,
                    DeltaOut::InputJson { partial_json: a },
                );
            }
        }
        if let Some(f) = choice.finish_reason.as_deref() {
            self.finish = Some(FinishReason::from_openai(f));
        }
    }

    /// The end of the chat stream (`[DONE]`): closes the open block, `message_delta` with the
    /// stop reason and usage, `message_stop`.
    pub fn finish(&mut self, out: &mut BytesMut) {
        if self.ended {
            return;
        }
        self.start(out);
        self.close_block(out);
        self.ended = true;
        let usage = self
            .usage
            .as_ref()
            .map(usage_to_messages)
            .unwrap_or_else(|| json!({"output_tokens": 0}));
        Self::event(
            out,
            "message_delta",
            &json!({"type": "message_delta",
                    "delta": {"stop_reason": stop_reason(self.finish, false), "stop_sequence": Value::Null},
                    "usage": usage}),
        );
        Self::event(out, "message_stop", &json!({"type": "message_stop"}));
    }

    /// A chat error object (`{"message","type","code"}`) as `event: error`; nothing follows it.
    pub fn error(&mut self, e: &Value, out: &mut BytesMut) {
        if self.ended {
            return;
        }
        self.ended = true;
        let kind = anthropic_error_type(e["type"].as_str().unwrap_or("api_error"));
        Self::event(
            out,
            "error",
            &json!({"type": "error", "error": {"type": kind, "message": e["message"].as_str().unwrap_or("error")}}),
        );
    }

    /// The Message id the events carry.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The model the events name (the client's).
    pub fn model(&self) -> &str {
        &self.model
    }

    pub fn is_ended(&self) -> bool {
        self.ended
    }
}

/// A gateway (OpenAI-shaped) error type → the Anthropic error type.
pub fn anthropic_error_type(openai_type: &str) -> &'static str {
    match openai_type {
        "invalid_request_error" => "invalid_request_error",
        "authentication_error" => "authentication_error",
        "permission_error" => "permission_error",
        "not_found_error" => "not_found_error",
        "rate_limit_error" | "rate_limit_exceeded" => "rate_limit_error",
        "insufficient_quota" => "billing_error",
        "service_unavailable" | "overloaded_error" => "overloaded_error",
        "timeout_error" => "timeout_error",
        _ => "api_error",
    }
}

/// An HTTP status → the Anthropic error type its body carries.
pub fn error_type_for_status(status: u16) -> &'static str {
    match status {
        400 | 422 => "invalid_request_error",
        401 => "authentication_error",
        402 => "billing_error",
        403 => "permission_error",
        404 | 405 => "not_found_error",
        408 | 504 => "timeout_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        503 | 529 => "overloaded_error",
        _ => "api_error",
    }
}

/// The Anthropic error body.
pub fn error_body(kind: &str, message: &str) -> Value {
    json!({"type": "error", "error": {"type": kind, "message": message}})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cost_joins_the_usage_and_nothing_else_moves() {
        let delta = br#"{"type":"message_delta","delta":{"stop_reason":"stop_sequence","stop_sequence":"END"},"usage":{"output_tokens":7, "cache_read_input_tokens":3 }  }"#;
        let out = with_usage_cost(delta, "0.0012").unwrap();
        assert_eq!(
            std::str::from_utf8(&out).unwrap(),
            r#"{"type":"message_delta","delta":{"stop_reason":"stop_sequence","stop_sequence":"END"},"usage":{"output_tokens":7, "cache_read_input_tokens":3 ,"cost":"0.0012"}  }"#
        );
        let out = with_usage_cost(br#"{"usage":{ }}"#, "1").unwrap();
        assert_eq!(&out[..], br#"{"usage":{ "cost":"1"}}"#);
        let out = with_usage_cost(br#"{"type":"x"}"#, "1").unwrap();
        assert_eq!(&out[..], br#"{"type":"x","usage":{"cost":"1"}}"#);
        let out = with_usage_cost(b"{ }", "1").unwrap();
        assert_eq!(&out[..], br#"{ "usage":{"cost":"1"}}"#);
        assert!(with_usage_cost(b"[1]", "1").is_none());
        assert!(with_usage_cost(b"{", "1").is_none());
    }

    fn events(out: &BytesMut) -> Vec<(String, Value)> {
        let mut d = sse::Decoder::new();
        d.push(out);
        let mut v = Vec::new();
        while let Some(e) = d.next_event() {
            let name = e.name_str().to_owned();
            v.push((name, serde_json::from_slice(&e.data).unwrap()));
        }
        v
    }

    #[test]
    fn a_claude_code_shaped_request_becomes_chat() {
        let raw = json!({
            "model": "claude-x", "max_tokens": 100, "stream": true,
            "system": [{"type": "text", "text": "You are X.", "cache_control": {"type": "ephemeral"}},
                       {"type": "text", "text": "Be brief."}],
            "tools": [{"name": "Read", "description": "read", "input_schema": {"type": "object"}}],
            "tool_choice": {"type": "any"},
            "stop_sequences": ["END"], "temperature": 0.5,
            "thinking": {"type": "enabled", "budget_tokens": 2048},
            "messages": [
                {"role": "user", "content": "hi"},
                {"role": "assistant", "content": [{"type": "text", "text": "ok"},
                    {"type": "tool_use", "id": "t1", "name": "Read", "input": {"p": 1}}]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "data"},
                    {"type": "text", "text": "go on"}]},
            ],
        });
        let plan = messages_to_chat(&raw).unwrap();
        let b = &plan.body;
        assert!(plan.stream);
        assert_eq!(
            b["messages"][0],
            json!({"role": "system", "content": "You are X.\nBe brief."})
        );
        assert_eq!(
            b["messages"][2]["tool_calls"][0]["function"]["arguments"],
            "{\"p\":1}"
        );
        assert_eq!(
            b["messages"][3],
            json!({"role": "tool", "tool_call_id": "t1", "content": "data"})
        );
        assert_eq!(
            b["messages"][4],
            json!({"role": "user", "content": "go on"})
        );
        assert_eq!(
            b["tools"][0]["function"]["parameters"],
            json!({"type": "object"})
        );
        assert_eq!(b["tool_choice"], "required");
        assert_eq!(b["stop"], json!(["END"]));
        assert_eq!(b["reasoning_effort"], "low");
        assert_eq!(b["stream_options"]["include_usage"], true);
    }

    #[test]
    fn missing_fields_are_refused_with_their_name() {
        let e = messages_to_chat(&json!({"model": "m", "messages": []})).unwrap_err();
        assert_eq!(e.param, "max_tokens");
        let e = messages_to_chat(&json!({"model": "m", "max_tokens": 5, "messages": [{"role": "robot", "content": "x"}]})).unwrap_err();
        assert_eq!(e.param, "messages.0.role");
    }

    #[test]
    fn claude_codes_system_messages_and_server_tools_are_carried_or_named() {
        // Claude Code 2.1: environment notes as `system` messages between turns, a server tool,
        // adaptive thinking, a search-result block chat has no word for.
        let plan = messages_to_chat(&json!({
            "model": "m", "max_tokens": 5,
            "system": [{"type": "text", "text": "You are Claude Code.", "cache_control": {"type": "ephemeral"}}],
            "messages": [
                {"role": "user", "content": "hi"},
                {"role": "system", "content": [{"type": "text", "text": "cwd: /repo"}]},
                {"role": "user", "content": [{"type": "search_result", "source": "s", "title": "t", "content": []},
                                              {"type": "text", "text": "go"}]},
            ],
            "tools": [{"name": "Read", "input_schema": {"type": "object"}},
                      {"type": "web_search_20250305", "name": "web_search"}],
            "thinking": {"type": "adaptive"},
            "context_management": {"edits": []},
        }))
        .unwrap();
        let m = &plan.body["messages"];
        assert_eq!(
            m[0],
            json!({"role": "system", "content": "You are Claude Code."})
        );
        assert_eq!(m[2], json!({"role": "system", "content": "cwd: /repo"}));
        assert_eq!(m[3], json!({"role": "user", "content": "go"}));
        assert_eq!(plan.body["tools"].as_array().map(Vec::len), Some(1));
        assert_eq!(plan.body["reasoning_effort"], "medium");
        assert_eq!(
            plan.dropped,
            [
                "messages.2.content.0:search_result",
                "tools.1:web_search_20250305"
            ]
        );
    }

    #[test]
    fn a_chat_stream_becomes_the_messages_event_sequence() {
        let mut s = MessagesStream::new("msg_1".into(), "m".into());
        let mut out = BytesMut::new();
        for c in [
            json!({"choices": [{"index": 0, "delta": {"reasoning_content": "hmm"}}]}),
            json!({"choices": [{"index": 0, "delta": {"content": "Hi"}}]}),
            json!({"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "id": "c1", "function": {"name": "f", "arguments": "{\"a\""}}]}}]}),
            json!({"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": ":1}"}}]}, "finish_reason": "tool_calls"}],
                   "usage": {"prompt_tokens": 10, "completion_tokens": 5, "cost": "0.1"}}),
        ] {
            s.chunk_data(c.to_string().as_bytes(), &mut out);
        }
        s.finish(&mut out);
        let ev = events(&out);
        let names: Vec<&str> = ev.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "message_start",
                "ping",
                "content_block_start",
                "content_block_delta",
                "content_block_delta",
                "content_block_stop",
                "content_block_start",
                "content_block_delta",
                "content_block_stop",
                "content_block_start",
                "content_block_delta",
                "content_block_delta",
                "content_block_stop",
                "message_delta",
                "message_stop",
            ]
        );
        assert_eq!(ev[4].1["delta"]["type"], "signature_delta");
        assert_eq!(ev[9].1["content_block"]["type"], "tool_use");
        assert_eq!(ev[11].1["delta"]["partial_json"], ":1}");
        assert_eq!(ev[13].1["delta"]["stop_reason"], "tool_use");
        assert_eq!(ev[13].1["usage"]["input_tokens"], 10);
        assert_eq!(ev[13].1["usage"]["cost"], "0.1");
    }

    #[test]
    fn a_completion_becomes_a_message() {
        let c = json!({"choices": [{"message": {"content": "Hello", "tool_calls": [
            {"id": "c", "type": "function", "function": {"name": "f", "arguments": "{\"x\":2}"}}]},
            "finish_reason": "length"}],
            "usage": {"prompt_tokens": 7, "completion_tokens": 3, "prompt_tokens_details": {"cached_tokens": 2}}});
        let m = completion_to_message(&c, "msg_x", "m");
        assert_eq!(m["content"][0], json!({"type": "text", "text": "Hello"}));
        assert_eq!(m["content"][1]["input"], json!({"x": 2}));
        assert_eq!(m["stop_reason"], "max_tokens");
        assert_eq!(m["usage"]["input_tokens"], 5);
        assert_eq!(m["usage"]["cache_read_input_tokens"], 2);
    }
}
