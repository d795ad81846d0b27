//! The Responses dialect of an upstream's stream (`POST {base_url}/responses`, streamed), read for
//! what the meter needs while the events themselves pass through to the client untouched:
//! generated text as typed chat chunks (`response.output_text.delta` and `response.refusal.delta`
//! → content, `response.reasoning_summary_text.delta` and `response.reasoning_text.delta` →
//! reasoning, a `function_call`/`custom_tool_call` item's start → a tool call's name, its
//! `…arguments.delta`/`…input.delta` → its arguments), then at the terminal event the finish
//! reason, the usage and the end: `response.completed` → `stop` (`tool_calls` when the answer
//! called a tool), `response.incomplete` → `length` (`content_filter` when that was the reason);
//! `response.failed` is the upstream's error (in the words of the `error` event that precedes it,
//! when there was one: OpenAI sends both, and the stream ends only after the second, so a relay
//! that passes events through forwards both). Every other event (lifecycle, `…done`, hosted
//! tools' progress) yields nothing.

use std::borrow::Cow;
use std::sync::Arc;

use serde::Deserialize;
use serde_json::{json, Value};

use super::{Chunk, Malformed, UpstreamEvent, UpstreamProblem};
use crate::chat_chunk::{ChatChunk, Delta, Stamp};
use crate::finish::FinishReason;
use crate::usage::Usage;

/// The fields a Responses event is read for; everything else is skipped unparsed.
#[derive(Deserialize)]
struct EventHead<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(default, borrow)]
    delta: Option<Cow<'a, str>>,
    #[serde(default)]
    output_index: Option<u64>,
    #[serde(default)]
    item: Option<ItemHead>,
}

/// An output item as `response.output_item.added` announces it.
#[derive(Deserialize)]
struct ItemHead {
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(default)]
    call_id: Option<String>,
    #[serde(default)]
    name: Option<String>,
}

/// Reads a Responses event stream (see the module documentation).
pub(super) struct ResponsesReader {
    stamp: Arc<Stamp>,
    /// Whether the first chunk (which carries the role) was made.
    started: bool,
    /// Whether the answer called a tool.
    called: bool,
    /// What an `error` event said, until the `response.failed` that follows it.
    error: Option<UpstreamProblem>,
}

impl ResponsesReader {
    pub(super) fn new(stamp: Stamp) -> ResponsesReader {
        ResponsesReader {
            stamp: Arc::new(stamp),
            started: false,
            called: false,
            error: None,
        }
    }

    fn chunk(&mut self, delta: Delta) -> UpstreamEvent<'static> {
        let role = !self.started;
        self.started = true;
        UpstreamEvent::Chunk(Chunk::Typed(ChatChunk {
            stamp: self.stamp.clone(),
            role,
            delta,
            finish_reason: None,
        }))
    }

    /// The events one upstream event carries, appended to `out`; true when the stream ended.
    pub(super) fn push(
        &mut self,
        data: &[u8],
        out: &mut Vec<UpstreamEvent<'static>>,
    ) -> Result<bool, Malformed> {
        if data == b"[DONE]" {
            out.push(UpstreamEvent::Done);
            return Ok(true);
        }
        let head: EventHead<'_> = serde_json::from_slice(data).map_err(|_| Malformed)?;
        let text = || head.delta.as_deref().unwrap_or_default().to_owned();
        let index = head.output_index.unwrap_or(0);
        match head.kind.as_ref() {
            "response.output_text.delta" | "response.refusal.delta" => {
                let event = self.chunk(Delta::Content(text()));
                out.push(event);
            }
            "response.reasoning_summary_text.delta" | "response.reasoning_text.delta" => {
                let event = self.chunk(Delta::ReasoningContent(text()));
                out.push(event);
            }
            "response.output_item.added" => {
                if let Some(item) = head
                    .item
                    .filter(|i| matches!(i.kind.as_str(), "function_call" | "custom_tool_call"))
                {
                    self.called = true;
                    let event = self.chunk(Delta::ToolCallStart {
                        index,
                        id: item.call_id.unwrap_or_default(),
                        name: item.name.unwrap_or_default(),
                    });
                    out.push(event);
                }
            }
            "response.function_call_arguments.delta" | "response.custom_tool_call_input.delta" => {
                let event = self.chunk(Delta::ToolCallArguments {
                    index,
                    arguments: text(),
                });
                out.push(event);
            }
            "response.completed" | "response.incomplete" => {
                let whole: Value = serde_json::from_slice(data).map_err(|_| Malformed)?;
                let response = &whole["response"];
                let status = match head.kind.as_ref() {
                    "response.incomplete" => "incomplete",
                    _ => "completed",
                };
                let reason = FinishReason::from_responses(
                    status,
                    response["incomplete_details"]["reason"].as_str(),
                    self.called,
                );
                out.push(UpstreamEvent::Finish(reason));
                if let Some(usage) = Usage::from_responses(&response["usage"]) {
                    let chunk = json!({
                        "id": self.stamp.id, "object": "chat.completion.chunk",
                        "created": self.stamp.created, "model": self.stamp.model,
                        "choices": [], "usage": usage.to_openai(None),
                    });
                    out.push(UpstreamEvent::Usage {
                        usage: Some(usage),
                        chunk: Chunk::Translated(chunk),
                    });
                }
                out.push(UpstreamEvent::Done);
                return Ok(true);
            }
            "error" => {
                let whole: Value = serde_json::from_slice(data).map_err(|_| Malformed)?;
                self.error = Some(UpstreamProblem::from_openai(&whole));
            }
            "response.failed" => {
                let whole: Value = serde_json::from_slice(data).map_err(|_| Malformed)?;
                let problem = self
                    .error
                    .take()
                    .unwrap_or_else(|| UpstreamProblem::from_openai(&whole["response"]["error"]));
                out.push(UpstreamEvent::Error(problem));
                return Ok(true);
            }
            _ => {}
        }
        Ok(false)
    }
}

/// A Response object (an upstream's non-streamed `/responses` answer) as the chat completion the
/// meter reads: its text, reasoning summary and tool calls in one assistant message, the finish
/// reason its status says, its usage in OpenAI's shape. `None` when it is not a Response, or a
/// failed one.
pub fn response_to_chat_completion(response: &Value) -> Option<Value> {
    let output = response.get("output")?.as_array()?;
    let status = response
        .get("status")
        .and_then(Value::as_str)
        .unwrap_or("completed");
    if status == "failed" || response.get("error").is_some_and(|e| !e.is_null()) {
        return None;
    }
    let (mut content, mut reasoning, mut calls) = (String::new(), String::new(), Vec::new());
    for item in output {
        let texts = |key: &str| -> String {
            item.get(key)
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|p| p.get("text").or_else(|| p.get("refusal")))
                .filter_map(Value::as_str)
                .collect()
        };
        match item.get("type").and_then(Value::as_str) {
            Some("message") => content.push_str(&texts("content")),
            Some("reasoning") => reasoning.push_str(&texts("summary")),
            Some(kind @ ("function_call" | "custom_tool_call")) => {
                let field = |k: &str| item.get(k).and_then(Value::as_str).unwrap_or_default();
                let arguments = if kind == "function_call" {
                    field("arguments")
                } else {
                    field("input")
                };
                calls.push(json!({"id": field("call_id"), "type": "function",
                    "function": {"name": field("name"), "arguments": arguments}}));
            }
            _ => {}
        }
    }
    let finish = FinishReason::from_responses(
        status,
        response
            .pointer("/incomplete_details/reason")
            .and_then(Value::as_str),
        !calls.is_empty(),
    );
    let mut message = json!({"role": "assistant", "content": content});
    if !reasoning.is_empty() {
        message["reasoning_content"] = Value::String(reasoning);
    }
    if !calls.is_empty() {
        message["tool_calls"] = Value::Array(calls);
    }
    let mut chat = json!({
        "id": response.get("id").cloned().unwrap_or(Value::Null),
        "object": "chat.completion",
        "created": response.get("created_at").cloned().unwrap_or(json!(0)),
        "model": response.get("model").cloned().unwrap_or(Value::Null),
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
    });
    if let Some(u) = response.get("usage").and_then(Usage::from_responses) {
        chat["usage"] = u.to_openai(None);
    }
    Some(chat)
}

/// A terminal Responses event's data (`response.completed`, `response.incomplete`) as the
/// upstream wrote it, with `"cost":"<cost>"` added as the last member of `response.usage`.
/// Nothing else is touched. `None` when the data has no `response` object.
pub fn terminal_with_cost(data: &[u8], cost: &str) -> Option<Vec<u8>> {
    let outer: std::collections::HashMap<String, &serde_json::value::RawValue> =
        serde_json::from_slice(data).ok()?;
    let response = outer.get("response").filter(|r| r.get().starts_with('{'))?;
    let raw = response.get().as_bytes();
    let start = (raw.as_ptr() as usize).checked_sub(data.as_ptr() as usize)?;
    let inner = crate::usage::with_cost_in(raw, "usage", cost)?;
    let mut out = Vec::with_capacity(data.len() + inner.len() - raw.len());
    out.extend_from_slice(&data[..start]);
    out.extend_from_slice(&inner);
    out.extend_from_slice(&data[start + raw.len()..]);
    Some(out)
}

/// A Responses event's type: its `event:` name, else the `type` of its data.
pub fn event_type(event: &crate::sse::Event) -> Cow<'_, str> {
    match event.name_str() {
        "" | "message" => {
            #[derive(Deserialize)]
            struct Typed<'a> {
                #[serde(borrow, rename = "type")]
                kind: Option<Cow<'a, str>>,
            }
            serde_json::from_slice::<Typed<'_>>(&event.data)
                .ok()
                .and_then(|t| t.kind)
                .unwrap_or_default()
        }
        name => Cow::Borrowed(name),
    }
}

/// A terminal event ([`terminal_with_cost`]) framed as the upstream framed it: its raw bytes with
/// the data replaced; written afresh (`event:` + `data:`) when the data is not found in them.
pub fn terminal_event_with_cost(event: &crate::sse::Event, cost: &str) -> Option<Vec<u8>> {
    let data = terminal_with_cost(&event.data, cost)?;
    let (raw, old) = (&event.raw[..], &event.data[..]);
    match raw.windows(old.len().max(1)).position(|w| w == old) {
        Some(at) if !old.is_empty() => {
            let mut out = Vec::with_capacity(raw.len() + data.len() - old.len());
            out.extend_from_slice(&raw[..at]);
            out.extend_from_slice(&data);
            out.extend_from_slice(&raw[at + old.len()..]);
            Some(out)
        }
        _ => {
            let mut out = bytes::BytesMut::new();
            crate::sse::write_named(&mut out, &event_type(event), &data);
            Some(out.to_vec())
        }
    }
}

/// The gateway's own `error` event in a Responses stream (the fields at the top level, as the
/// spec puts them, and nested under `error`, as OpenAI's live streams do).
pub fn error_event(code: &str, message: &str, out: &mut bytes::BytesMut) {
    let event = json!({"type": "error", "code": code, "message": message, "param": null,
        "error": {"type": code, "code": code, "message": message, "param": null}});
    crate::sse::write_named(out, "error", event.to_string().as_bytes());
}
