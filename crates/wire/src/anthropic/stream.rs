//! Anthropic Messages SSE events → OpenAI `chat.completion.chunk` objects, one event at a time.
//!
//! The caller splits the upstream body into SSE events (name + data) and hands each to
//! [`StreamTranslator::push`]; the chunks it produces wait in an internal queue that
//! [`StreamTranslator::drain_chunks`] empties, in order, typed ([`ChatChunk`], written straight
//! to bytes; [`StreamTranslator::drain`] gives them as values). The caller serialises them (`data: <json>\n\n`) and adds
//! `usage`, the optional `choices: []` usage chunk ([`StreamTranslator::usage_chunk`]) and `data: [DONE]`.

use super::{finish_reason, TranslateError, UpstreamError, Usage};
use crate::borrowed::nullable_str;
use crate::chat_chunk::{ChatChunk, Delta, Stamp};
use crate::finish::FinishReason;
use serde::Deserialize;
use serde_json::{json, Value};
use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

/// What the translator remembers about one Anthropic content block, keyed by the block's `index`.
enum Block {
    Text,
    Thinking {
        text: String,
        signature: String,
    },
    /// `index` is the OpenAI tool-call index (0, 1, … over tool blocks only).
    Tool {
        index: u64,
        sent_arguments: bool,
    },
    Other,
}

/// Turns one Anthropic Messages stream into OpenAI chat chunks.
///
/// Rules (wire-formats §6.4):
/// - every chunk has the `id`, `model` and `created` given to [`StreamTranslator::new`],
///   `object: "chat.completion.chunk"`, one choice with `index: 0` and `finish_reason: null`, except the last;
/// - the first chunk (normally from `message_start`) carries `delta.role = "assistant"`, and no other does;
/// - `text_delta` → `delta.content`; `thinking_delta` → `delta.reasoning_content`; `signature_delta` →
///   `delta.reasoning_signature` (extension; also kept, see [`StreamTranslator::signature`]);
/// - a `tool_use` block start → `delta.tool_calls[{index, id, type, function:{name, arguments:""}}]`, then each
///   non-empty `input_json_delta` → `{index, function:{arguments}}` only; a tool block that ends without any
///   argument text gets `arguments: "{}"` so clients can parse it;
/// - `redacted_thinking` blocks are not sent to the client (no OpenAI field can carry them safely through the
///   SDK stream helpers); they are kept verbatim in [`StreamTranslator::thinking_blocks`];
/// - `message_delta` records `stop_reason` and usage; `message_stop` emits the last chunk, `delta: {}` with the
///   mapped `finish_reason`;
/// - `ping` and unknown event types are ignored; an `error` event ends the stream with
///   [`StreamTranslator::error`] set and emits nothing.
pub struct StreamTranslator {
    stamp: Arc<Stamp>,
    out: Vec<ChatChunk>,
    role_sent: bool,
    /// The open blocks by index (a block is forgotten at its stop, so that lookups stay O(1) and
    /// memory bounded by the blocks open at once, whatever an upstream sends).
    blocks: HashMap<u64, Block>,
    next_tool_index: u64,
    message_id: Option<String>,
    stop_reason: Option<String>,
    usage: Option<Usage>,
    signature: Option<String>,
    thinking_blocks: Vec<Value>,
    error: Option<UpstreamError>,
    done: bool,
}

impl StreamTranslator {
    /// `id`, `model` and `created` are stamped on every chunk (the gateway's own id and the model name the
    /// client asked for, not Anthropic's).
    pub fn new(id: String, model: String, created: u64) -> Self {
        StreamTranslator {
            stamp: Arc::new(Stamp { id, model, created }),
            out: Vec::new(),
            role_sent: false,
            blocks: HashMap::new(),
            next_tool_index: 0,
            message_id: None,
            stop_reason: None,
            usage: None,
            signature: None,
            thinking_blocks: Vec::new(),
            error: None,
            done: false,
        }
    }

    /// Feeds one SSE event: its `event:` name (may be empty, then the data's `type` is used) and its data.
    /// Events after the end of the stream are ignored. Fails only on data that is not the JSON the event
    /// needs; the translator stays usable.
    pub fn push(&mut self, event_name: &str, data: &str) -> Result<(), TranslateError> {
        if self.done {
            return Ok(());
        }
        let name = match event_name {
            "" | "message" => None,
            name => Some(name),
        };
        if name.is_some_and(|n| !is_known(n)) {
            return Ok(()); // ping, and event types added after this was written
        }
        // The hot event, read borrowed; any other shape takes the general path below.
        if name == Some("content_block_delta") {
            if let Ok(e) = serde_json::from_str::<DeltaEvent<'_>>(data) {
                self.delta(e.index.unwrap_or(u64::MAX), &e.delta);
                return Ok(());
            }
        }
        let data: Value = serde_json::from_str(data).map_err(|e| {
            TranslateError::new(
                name.unwrap_or("data"),
                format!("upstream sent an event whose data is not JSON: {e}"),
            )
        })?;
        let kind = match name {
            Some(name) => name.to_string(),
            None => data
                .get("type")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
        };
        match kind.as_str() {
            "message_start" => self.message_start(&data),
            "content_block_start" => self.block_start(&data),
            "content_block_delta" => self.block_delta(&data),
            "content_block_stop" => self.block_stop(&data),
            "message_delta" => self.message_delta(&data),
            "message_stop" => self.message_stop(),
            "error" => {
                self.error = Some(UpstreamError::from_anthropic(&data));
                self.done = true;
            }
            _ => {}
        }
        Ok(())
    }

    /// Takes the chunks produced so far, oldest first.
    pub fn drain_chunks(&mut self) -> std::vec::Drain<'_, ChatChunk> {
        self.out.drain(..)
    }

    /// Takes the chunks produced so far, oldest first, as JSON values (for callers that edit
    /// them; [`Self::drain_chunks`] is the cheap way).
    pub fn drain(&mut self) -> impl Iterator<Item = Value> + '_ {
        self.out.drain(..).map(|c| c.to_value())
    }

    /// True once `message_stop` or an `error` event has been seen.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// Why the answer ended, known from `message_delta` on.
    pub fn finish_reason(&self) -> Option<FinishReason> {
        self.stop_reason.as_deref().map(finish_reason)
    }

    /// Anthropic's raw `stop_reason`, known from `message_delta` on.
    pub fn stop_reason(&self) -> Option<&str> {
        self.stop_reason.as_deref()
    }

    /// Usage so far: input counts from `message_start`, updated by the cumulative `message_delta` counts.
    pub fn usage(&self) -> Option<Usage> {
        self.usage
    }

    /// [`Self::usage`] in OpenAI's shape (see [`Usage::to_openai`]).
    pub fn usage_json(&self) -> Option<Value> {
        self.usage.map(|u| u.to_openai())
    }

    /// The `stream_options.include_usage` chunk: same id/model/created, `choices: []`, and `usage`.
    pub fn usage_chunk(&self) -> Option<Value> {
        let usage = self.usage_json()?;
        Some(json!({
            "id": self.stamp.id,
            "object": "chat.completion.chunk",
            "created": self.stamp.created,
            "model": self.stamp.model,
            "choices": [],
            "usage": usage,
        }))
    }

    /// The upstream error, when the stream ended with an `error` event.
    pub fn error(&self) -> Option<&UpstreamError> {
        self.error.as_ref()
    }

    /// Anthropic's message id (`msg_…`), from `message_start`.
    pub fn message_id(&self) -> Option<&str> {
        self.message_id.as_deref()
    }

    /// The signature of the most recent thinking block, needed to send the thinking back on a later turn.
    pub fn signature(&self) -> Option<&str> {
        self.signature.as_deref()
    }

    /// Every completed `thinking` (with its signature) and `redacted_thinking` block, verbatim, in order:
    /// what a later request must replay to Anthropic (accepted there as the `thinking_blocks` extension).
    pub fn thinking_blocks(&self) -> &[Value] {
        &self.thinking_blocks
    }

    /// The opaque `data` of each `redacted_thinking` block, in order.
    pub fn redacted_thinking(&self) -> Vec<&str> {
        self.thinking_blocks
            .iter()
            .filter(|b| b["type"] == "redacted_thinking")
            .filter_map(|b| b["data"].as_str())
            .collect()
    }

    /// Queues a chunk; the first one also carries the role.
    fn emit(&mut self, delta: Delta, finish: Option<FinishReason>) {
        let role = !self.role_sent;
        self.role_sent = true;
        self.out.push(ChatChunk {
            stamp: Arc::clone(&self.stamp),
            role,
            delta,
            finish_reason: finish,
        });
    }

    fn emit_delta(&mut self, delta: Delta) {
        self.emit(delta, None);
    }

    fn block_mut(&mut self, index: u64) -> Option<&mut Block> {
        self.blocks.get_mut(&index)
    }

    fn message_start(&mut self, data: &Value) {
        let message = &data["message"];
        self.message_id = message["id"].as_str().map(str::to_string);
        if message.get("usage").is_some_and(Value::is_object) {
            self.usage = Some(Usage::from_anthropic(&message["usage"]));
        }
        if !self.role_sent {
            self.emit_delta(Delta::Content(String::new()));
        }
    }

    fn block_start(&mut self, data: &Value) {
        let index = data["index"].as_u64().unwrap_or(u64::MAX);
        let block = &data["content_block"];
        let state = match block["type"].as_str().unwrap_or_default() {
            "text" => {
                if let Some(text) = block["text"].as_str().filter(|t| !t.is_empty()) {
                    self.emit_delta(Delta::Content(text.to_owned()));
                }
                Block::Text
            }
            "thinking" => {
                let text = block["thinking"].as_str().unwrap_or_default().to_string();
                if !text.is_empty() {
                    self.emit_delta(Delta::ReasoningContent(text.clone()));
                }
                let signature = block["signature"].as_str().unwrap_or_default().to_string();
                Block::Thinking { text, signature }
            }
            "redacted_thinking" => {
                let data = block["data"].as_str().unwrap_or_default();
                self.thinking_blocks
                    .push(json!({"type": "redacted_thinking", "data": data}));
                Block::Other
            }
            "tool_use" => {
                let k = self.next_tool_index;
                self.next_tool_index += 1;
                self.emit_delta(Delta::ToolCallStart {
                    index: k,
                    id: block["id"].as_str().unwrap_or_default().to_owned(),
                    name: block["name"].as_str().unwrap_or_default().to_owned(),
                });
                Block::Tool {
                    index: k,
                    sent_arguments: false,
                }
            }
            _ => Block::Other,
        };
        self.blocks.insert(index, state);
    }

    fn block_delta(&mut self, data: &Value) {
        let index = data["index"].as_u64().unwrap_or(u64::MAX);
        let delta = &data["delta"];
        let text = |k: &str| delta[k].as_str().map(Cow::Borrowed);
        let view = DeltaView {
            kind: text("type"),
            text: text("text"),
            thinking: text("thinking"),
            signature: text("signature"),
            partial_json: text("partial_json"),
        };
        self.delta(index, &view);
    }

    fn delta(&mut self, index: u64, delta: &DeltaView<'_>) {
        fn text<'t>(t: &'t Option<Cow<'_, str>>) -> Option<&'t str> {
            t.as_deref().filter(|t| !t.is_empty())
        }
        match delta.kind.as_deref().unwrap_or_default() {
            "text_delta" => {
                if let Some(text) = text(&delta.text) {
                    self.emit_delta(Delta::Content(text.to_owned()));
                }
            }
            "thinking_delta" => {
                if let Some(text) = text(&delta.thinking) {
                    if let Some(Block::Thinking { text: acc, .. }) = self.block_mut(index) {
                        acc.push_str(text);
                    }
                    self.emit_delta(Delta::ReasoningContent(text.to_owned()));
                }
            }
            "signature_delta" => {
                if let Some(sig) = text(&delta.signature) {
                    if let Some(Block::Thinking { signature, .. }) = self.block_mut(index) {
                        signature.push_str(sig);
                    }
                    self.signature = Some(sig.to_string());
                    self.emit_delta(Delta::ReasoningSignature(sig.to_owned()));
                }
            }
            "input_json_delta" => {
                let Some(part) = text(&delta.partial_json) else {
                    return;
                };
                let Some(Block::Tool {
                    index: k,
                    sent_arguments,
                }) = self.block_mut(index)
                else {
                    return;
                };
                *sent_arguments = true;
                let k = *k;
                self.emit_delta(Delta::ToolCallArguments {
                    index: k,
                    arguments: part.to_owned(),
                });
            }
            _ => {}
        }
    }

    fn block_stop(&mut self, data: &Value) {
        let index = data["index"].as_u64().unwrap_or(u64::MAX);
        let Some(block) = self.blocks.remove(&index) else {
            return;
        };
        match block {
            Block::Tool {
                index: k,
                sent_arguments: false,
            } => {
                self.emit_delta(Delta::ToolCallArguments {
                    index: k,
                    arguments: "{}".to_owned(),
                });
            }
            Block::Thinking { text, signature } => {
                let block = json!({"type": "thinking", "thinking": text, "signature": signature});
                self.thinking_blocks.push(block);
            }
            Block::Text | Block::Tool { .. } | Block::Other => {}
        }
    }

    fn message_delta(&mut self, data: &Value) {
        if let Some(reason) = data["delta"]["stop_reason"].as_str() {
            self.stop_reason = Some(reason.to_string());
        }
        if let Some(usage) = data.get("usage").filter(|u| u.is_object()) {
            self.usage
                .get_or_insert_with(Usage::default)
                .merge_anthropic(usage);
        }
    }

    fn message_stop(&mut self) {
        let finish = self
            .stop_reason
            .as_deref()
            .map_or(FinishReason::Stop, finish_reason);
        self.emit(Delta::Empty, Some(finish));
        self.done = true;
    }
}

/// A `content_block_delta` event, borrowed from its data.
#[derive(Deserialize)]
struct DeltaEvent<'a> {
    #[serde(default)]
    index: Option<u64>,
    #[serde(borrow)]
    delta: DeltaView<'a>,
}

/// A content block's delta: its `type` and whichever text field that type carries.
#[derive(Deserialize)]
struct DeltaView<'a> {
    #[serde(rename = "type", default, borrow, deserialize_with = "nullable_str")]
    kind: Option<Cow<'a, str>>,
    #[serde(default, borrow, deserialize_with = "nullable_str")]
    text: Option<Cow<'a, str>>,
    #[serde(default, borrow, deserialize_with = "nullable_str")]
    thinking: Option<Cow<'a, str>>,
    #[serde(default, borrow, deserialize_with = "nullable_str")]
    signature: Option<Cow<'a, str>>,
    #[serde(default, borrow, deserialize_with = "nullable_str")]
    partial_json: Option<Cow<'a, str>>,
}

fn is_known(event: &str) -> bool {
    matches!(
        event,
        "message_start"
            | "content_block_start"
            | "content_block_delta"
            | "content_block_stop"
            | "message_delta"
            | "message_stop"
            | "error"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(events: &[(&str, &str)]) -> (StreamTranslator, Vec<Value>) {
        let mut t = StreamTranslator::new("chatcmpl-1".into(), "claude-x".into(), 1700000000);
        let mut chunks = Vec::new();
        for (name, data) in events {
            t.push(name, data).expect("event translates");
            chunks.extend(t.drain());
        }
        (t, chunks)
    }

    fn deltas(chunks: &[Value]) -> Vec<Value> {
        chunks
            .iter()
            .map(|c| c["choices"][0]["delta"].clone())
            .collect()
    }

    const START: (&str, &str) = (
        "message_start",
        r#"{"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant","content":[],"model":"claude-3","stop_reason":null,"usage":{"input_tokens":11,"output_tokens":1,"cache_read_input_tokens":5,"cache_creation_input_tokens":2}}}"#,
    );
    const STOP: (&str, &str) = ("message_stop", r#"{"type":"message_stop"}"#);

    #[test]
    fn named_deltas_read_borrowed_translate_like_the_general_path() {
        let events = [
            START,
            (
                "content_block_start",
                r#"{"type":"content_block_start","index":0,"content_block":{"type":"thinking","thinking":""}}"#,
            ),
            (
                "content_block_delta",
                r#"{"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":"a \"quoted\"\nline"}}"#,
            ),
            (
                "content_block_delta",
                r#"{"type":"content_block_delta","index":0,"delta":{"type":"signature_delta","signature":"c2ln"}}"#,
            ),
            (
                "content_block_stop",
                r#"{"type":"content_block_stop","index":0}"#,
            ),
            (
                "content_block_start",
                r#"{"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"t1","name":"f","input":{}}}"#,
            ),
            (
                "content_block_delta",
                r#"{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\"a\":"}}"#,
            ),
            // Shapes the borrowed read refuses go the general way: a text that is not a string,
            // an index that is not a count.
            (
                "content_block_delta",
                r#"{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":7}}"#,
            ),
            (
                "content_block_delta",
                r#"{"type":"content_block_delta","index":-1,"delta":{"type":"text_delta","text":"x"}}"#,
            ),
            (
                "content_block_delta",
                r#"{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"1}"}}"#,
            ),
            (
                "content_block_stop",
                r#"{"type":"content_block_stop","index":1}"#,
            ),
            STOP,
        ];
        let (named, borrowed) = run(&events);
        let unnamed: Vec<(&str, &str)> = events.iter().map(|(_, d)| ("", *d)).collect();
        let (general_t, general) = run(&unnamed);
        assert_eq!(borrowed, general);
        assert_eq!(named.thinking_blocks(), general_t.thinking_blocks());
        assert_eq!(named.thinking_blocks()[0]["thinking"], "a \"quoted\"\nline");
        let args: String = deltas(&borrowed)
            .iter()
            .filter_map(|d| {
                d["tool_calls"][0]["function"]["arguments"]
                    .as_str()
                    .map(str::to_owned)
            })
            .collect();
        assert_eq!(args, "{\"a\":1}");
        assert_eq!(
            deltas(&borrowed)
                .iter()
                .filter(|d| d["content"] == "x")
                .count(),
            1
        );
    }

    #[test]
    fn text_stream_becomes_role_content_and_finish_chunks() {
        let (t, chunks) = run(&[
            START,
            (
                "content_block_start",
                r#"{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#,
            ),
            ("ping", r#"{"type": "ping"}"#),
            (
                "content_block_delta",
                r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hello"}}"#,
            ),
            (
                "content_block_delta",
                r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":" there"}}"#,
            ),
            (
                "content_block_stop",
                r#"{"type":"content_block_stop","index":0}"#,
            ),
            (
                "message_delta",
                r#"{"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":6}}"#,
            ),
            STOP,
        ]);
        assert_eq!(
            deltas(&chunks),
            vec![
                json!({"role": "assistant", "content": ""}),
                json!({"content": "Hello"}),
                json!({"content": " there"}),
                json!({}),
            ]
        );
        for (i, chunk) in chunks.iter().enumerate() {
            assert_eq!(chunk["id"], "chatcmpl-1");
            assert_eq!(chunk["object"], "chat.completion.chunk");
            assert_eq!(chunk["created"], 1700000000);
            assert_eq!(chunk["model"], "claude-x");
            assert_eq!(chunk["choices"][0]["index"], 0);
            let finish = &chunk["choices"][0]["finish_reason"];
            if i + 1 == chunks.len() {
                assert_eq!(finish, "stop");
            } else {
                assert!(finish.is_null());
            }
        }
        assert!(t.is_done());
        assert_eq!(t.finish_reason(), Some(FinishReason::Stop));
        assert_eq!(t.message_id(), Some("msg_1"));
        let usage = t.usage().unwrap();
        assert_eq!((usage.prompt_tokens(), usage.completion_tokens()), (18, 6));
        assert_eq!(
            t.usage_json().unwrap(),
            json!({"prompt_tokens": 18, "completion_tokens": 6, "total_tokens": 24,
                   "prompt_tokens_details": {"cached_tokens": 5, "cache_write_tokens": 2}})
        );
        let usage_chunk = t.usage_chunk().unwrap();
        assert_eq!(usage_chunk["choices"], json!([]));
        assert_eq!(usage_chunk["usage"]["total_tokens"], 24);
    }

    #[test]
    fn tool_use_blocks_count_from_zero_and_send_id_and_name_once() {
        let (t, chunks) = run(&[
            START,
            (
                "content_block_start",
                r#"{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#,
            ),
            (
                "content_block_delta",
                r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Checking."}}"#,
            ),
            (
                "content_block_stop",
                r#"{"type":"content_block_stop","index":0}"#,
            ),
            (
                "content_block_start",
                r#"{"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"toolu_A","name":"get_weather","input":{}}}"#,
            ),
            (
                "content_block_delta",
                r#"{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":""}}"#,
            ),
            (
                "content_block_delta",
                r#"{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\"city\": "}}"#,
            ),
            (
                "content_block_delta",
                r#"{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"\"Paris\"}"}}"#,
            ),
            (
                "content_block_stop",
                r#"{"type":"content_block_stop","index":1}"#,
            ),
            (
                "content_block_start",
                r#"{"type":"content_block_start","index":2,"content_block":{"type":"tool_use","id":"toolu_B","name":"now","input":{}}}"#,
            ),
            (
                "content_block_stop",
                r#"{"type":"content_block_stop","index":2}"#,
            ),
            (
                "message_delta",
                r#"{"type":"message_delta","delta":{"stop_reason":"tool_use"},"usage":{"output_tokens":65}}"#,
            ),
            STOP,
        ]);
        assert_eq!(
            deltas(&chunks),
            vec![
                json!({"role": "assistant", "content": ""}),
                json!({"content": "Checking."}),
                json!({"tool_calls": [{"index": 0, "id": "toolu_A", "type": "function", "function": {"name": "get_weather", "arguments": ""}}]}),
                json!({"tool_calls": [{"index": 0, "function": {"arguments": "{\"city\": "}}]}),
                json!({"tool_calls": [{"index": 0, "function": {"arguments": "\"Paris\"}"}}]}),
                json!({"tool_calls": [{"index": 1, "id": "toolu_B", "type": "function", "function": {"name": "now", "arguments": ""}}]}),
                json!({"tool_calls": [{"index": 1, "function": {"arguments": "{}"}}]}),
                json!({}),
            ]
        );
        assert_eq!(
            chunks.last().unwrap()["choices"][0]["finish_reason"],
            "tool_calls"
        );
        assert_eq!(t.finish_reason(), Some(FinishReason::ToolCalls));
    }

    #[test]
    fn thinking_becomes_reasoning_content_with_signature() {
        let (t, chunks) = run(&[
            START,
            (
                "content_block_start",
                r#"{"type":"content_block_start","index":0,"content_block":{"type":"thinking","thinking":"","signature":""}}"#,
            ),
            (
                "content_block_delta",
                r#"{"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":"Let me"}}"#,
            ),
            (
                "content_block_delta",
                r#"{"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":""}}"#,
            ),
            (
                "content_block_delta",
                r#"{"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":" think"}}"#,
            ),
            (
                "content_block_delta",
                r#"{"type":"content_block_delta","index":0,"delta":{"type":"signature_delta","signature":"SIG=="}}"#,
            ),
            (
                "content_block_stop",
                r#"{"type":"content_block_stop","index":0}"#,
            ),
            (
                "content_block_start",
                r#"{"type":"content_block_start","index":1,"content_block":{"type":"redacted_thinking","data":"OPAQUE"}}"#,
            ),
            (
                "content_block_stop",
                r#"{"type":"content_block_stop","index":1}"#,
            ),
            (
                "content_block_start",
                r#"{"type":"content_block_start","index":2,"content_block":{"type":"text","text":""}}"#,
            ),
            (
                "content_block_delta",
                r#"{"type":"content_block_delta","index":2,"delta":{"type":"text_delta","text":"42"}}"#,
            ),
            (
                "content_block_stop",
                r#"{"type":"content_block_stop","index":2}"#,
            ),
            (
                "message_delta",
                r#"{"type":"message_delta","delta":{"stop_reason":"max_tokens"},"usage":{"output_tokens":30,"output_tokens_details":{"thinking_tokens":20}}}"#,
            ),
            STOP,
        ]);
        assert_eq!(
            deltas(&chunks),
            vec![
                json!({"role": "assistant", "content": ""}),
                json!({"reasoning_content": "Let me"}),
                json!({"reasoning_content": " think"}),
                json!({"reasoning_signature": "SIG=="}),
                json!({"content": "42"}),
                json!({}),
            ]
        );
        assert_eq!(t.signature(), Some("SIG=="));
        assert_eq!(
            t.thinking_blocks(),
            &[
                json!({"type": "thinking", "thinking": "Let me think", "signature": "SIG=="}),
                json!({"type": "redacted_thinking", "data": "OPAQUE"}),
            ]
        );
        assert_eq!(t.redacted_thinking(), vec!["OPAQUE"]);
        assert_eq!(t.finish_reason(), Some(FinishReason::Length));
        assert_eq!(
            t.usage_json().unwrap()["completion_tokens_details"]["reasoning_tokens"],
            20
        );
    }

    #[test]
    fn stop_reasons_reach_the_last_chunk() {
        for (stop, finish) in [
            ("end_turn", "stop"),
            ("stop_sequence", "stop"),
            ("max_tokens", "length"),
            ("tool_use", "tool_calls"),
            ("refusal", "content_filter"),
            ("pause_turn", "stop"),
        ] {
            let delta = format!(
                r#"{{"type":"message_delta","delta":{{"stop_reason":"{stop}"}},"usage":{{"output_tokens":1}}}}"#
            );
            let (_, chunks) = run(&[START, ("message_delta", &delta), STOP]);
            assert_eq!(chunks.len(), 2, "{stop}");
            assert_eq!(chunks[1]["choices"][0]["finish_reason"], finish, "{stop}");
            assert!(chunks[1]["choices"][0]["delta"].get("role").is_none());
        }
    }

    #[test]
    fn role_is_sent_once_even_without_message_start() {
        let (_, chunks) = run(&[
            (
                "content_block_delta",
                r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"a"}}"#,
            ),
            (
                "content_block_delta",
                r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"b"}}"#,
            ),
        ]);
        assert_eq!(
            deltas(&chunks),
            vec![
                json!({"role": "assistant", "content": "a"}),
                json!({"content": "b"})
            ]
        );
    }

    #[test]
    fn error_event_ends_the_stream_with_an_upstream_error() {
        let (t, chunks) = run(&[
            START,
            (
                "error",
                r#"{"type":"error","error":{"details":null,"type":"overloaded_error","message":"Overloaded"}}"#,
            ),
            (
                "content_block_delta",
                r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"late"}}"#,
            ),
        ]);
        assert_eq!(
            chunks.len(),
            1,
            "only the role chunk; nothing after the error"
        );
        assert!(t.is_done());
        let err = t.error().expect("error recorded");
        assert_eq!(err.kind, "overloaded_error");
        assert_eq!(err.message, "Overloaded");
        assert_eq!(err.status(), 503);
        assert_eq!(t.finish_reason(), None);
    }

    #[test]
    fn unknown_events_and_names_from_data_type() {
        let (t, chunks) = run(&[
            ("", START.1),
            ("future_event", "not even json"),
            (
                "content_block_delta",
                r#"{"type":"content_block_delta","index":0,"delta":{"type":"citations_delta","citation":{}}}"#,
            ),
            ("message", STOP.1),
        ]);
        assert_eq!(chunks.len(), 2);
        assert!(t.is_done());
    }

    #[test]
    fn invalid_json_is_an_error_and_the_translator_survives() {
        let mut t = StreamTranslator::new("c".into(), "m".into(), 0);
        let err = t.push("content_block_delta", "{not json").unwrap_err();
        assert_eq!(err.param, "content_block_delta");
        t.push(START.0, START.1).unwrap();
        assert_eq!(t.drain().count(), 1);
    }

    /// A stopped block is forgotten: an upstream sending endless blocks grows nothing, and each
    /// event is looked up in the blocks still open (the fuzz pass measured lookups over every block
    /// ever seen: 40,000 blocks and one stray delta after each took 0.5 s, growing as the square).
    #[test]
    fn stopped_blocks_are_forgotten_and_a_reused_index_is_the_newest_block() {
        let mut t = StreamTranslator::new("c".into(), "m".into(), 1);
        for i in 0..10_000u64 {
            let start = json!({"type": "content_block_start", "index": i,
                               "content_block": {"type": "text", "text": ""}});
            t.push("content_block_start", &start.to_string()).unwrap();
            t.push("content_block_stop", &json!({"index": i}).to_string())
                .unwrap();
        }
        assert!(t.blocks.is_empty());
        // Index 0 reused: the tool block started last is the one the arguments and the stop go to.
        let tool = |id: &str| {
            json!({"index": 0, "content_block": {"type": "tool_use", "id": id, "name": "f"}})
                .to_string()
        };
        t.push("content_block_start", &tool("a")).unwrap();
        t.push("content_block_start", &tool("b")).unwrap();
        t.push("content_block_stop", &json!({"index": 0}).to_string())
            .unwrap();
        t.push("content_block_stop", &json!({"index": 0}).to_string())
            .unwrap();
        let chunks: Vec<Value> = t.drain().collect();
        let calls: Vec<&Value> = chunks
            .iter()
            .map(|c| &c["choices"][0]["delta"]["tool_calls"][0])
            .filter(|c| !c.is_null())
            .collect();
        assert_eq!(calls.len(), 3, "{calls:?}");
        assert_eq!(
            calls[2],
            &json!({"index": 1, "function": {"arguments": "{}"}})
        );
        assert!(t.blocks.is_empty());
    }
}
