//! The Chat Completions stream → Responses events state machine ([`StreamBuilder`]), and the
//! non-streaming translation that runs the same machine over one synthetic chunk.
//!
//! Ordering guarantees (what the official SDK stream helpers enforce): `response.created` first,
//! then `response.in_progress`; each output item is announced with `response.output_item.added`
//! before any event names its `output_index`; each content or summary part is added before its
//! deltas; items are closed one at a time in `output_index` order (`…done` events, then
//! `response.output_item.done`); exactly one terminal event (`response.completed`,
//! `response.incomplete` or `response.failed`) ends the stream, and nothing follows it;
//! `sequence_number` counts up from 0 on every event.
//!
//! Mapping: `delta.reasoning_content` (or a string `delta.reasoning`) → a `reasoning` item with
//! one `summary_text` part; `delta.content` → `output_text` in a `message` item; `delta.refusal` →
//! a `refusal` part of that message; each `delta.tool_calls[index]` → a `function_call` item whose
//! `call_id` is the chat tool call id. A new kind of output closes the open item. `finish_reason`
//! `length` (and DeepSeek's `insufficient_system_resource`) → `response.incomplete` with reason
//! `max_output_tokens`; `content_filter` → reason `content_filter`; anything else → completed.

use serde_json::{json, Map, Value};
use std::collections::HashMap;

use super::request::RequestEcho;
use super::Event;

/// What a Response object says about itself that the translation cannot know: its id, the model
/// name to report, timestamps, and the request fields it echoes.
#[derive(Debug, Clone, PartialEq)]
pub struct ResponseContext {
    /// `resp_…`, chosen by the gateway. Item ids are derived from it (`msg_…`, `rs_…`, `fc_…`).
    pub id: String,
    pub model: String,
    /// Unix seconds.
    pub created_at: u64,
    /// Unix seconds at which the response completed, if the caller knows it (reported only on
    /// `status: "completed"`); see also [`StreamBuilder::set_completed_at`].
    pub completed_at: Option<u64>,
    pub echo: RequestEcho,
}

impl ResponseContext {
    pub fn new(
        id: impl Into<String>,
        model: impl Into<String>,
        created_at: u64,
        echo: RequestEcho,
    ) -> Self {
        ResponseContext {
            id: id.into(),
            model: model.into(),
            created_at,
            completed_at: None,
            echo,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PartKind {
    Text,
    Refusal,
}

#[derive(Debug, Clone)]
struct Part {
    kind: PartKind,
    text: String,
}

#[derive(Debug, Clone)]
enum ItemBody {
    Reasoning {
        text: String,
    },
    Message {
        parts: Vec<Part>,
        /// Whether the last part is still open (added, not done).
        part_open: bool,
    },
    FunctionCall {
        call_id: String,
        name: String,
        arguments: String,
    },
}

#[derive(Debug, Clone)]
struct Item {
    id: String,
    /// `in_progress` while open, then `completed` or `incomplete`.
    status: &'static str,
    body: ItemBody,
}

impl Item {
    fn to_json(&self) -> Value {
        match &self.body {
            ItemBody::Reasoning { text } => {
                let summary = if self.status == "in_progress" {
                    // Announced empty, as OpenAI does; the summary arrives through its events.
                    Vec::new()
                } else {
                    vec![json!({"type": "summary_text", "text": text})]
                };
                json!({"id": self.id, "type": "reasoning", "summary": summary})
            }
            ItemBody::Message { parts, .. } => {
                let content: Vec<Value> = if self.status == "in_progress" {
                    Vec::new()
                } else {
                    parts.iter().map(part_json).collect()
                };
                json!({
                    "id": self.id,
                    "type": "message",
                    "status": self.status,
                    "content": content,
                    "role": "assistant",
                })
            }
            ItemBody::FunctionCall {
                call_id,
                name,
                arguments,
                ..
            } => json!({
                "id": self.id,
                "type": "function_call",
                "status": self.status,
                "arguments": if self.status == "in_progress" { "" } else { arguments.as_str() },
                "call_id": call_id,
                "name": name,
            }),
        }
    }
}

fn part_json(part: &Part) -> Value {
    match part.kind {
        PartKind::Text => {
            json!({"type": "output_text", "annotations": [], "logprobs": [], "text": part.text})
        }
        PartKind::Refusal => json!({"type": "refusal", "refusal": part.text}),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    New,
    Streaming,
    Done,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Terminal {
    Completed,
    Incomplete(&'static str),
}

/// Turns a Chat Completions chunk stream into Responses API events; see the module docs for the
/// ordering it guarantees. Feed it parsed `chat.completion.chunk` objects; only choice 0 is read.
#[derive(Debug, Clone)]
pub struct StreamBuilder {
    ctx: ResponseContext,
    /// The id without its `resp_` prefix, shared by the item ids.
    id_stem: String,
    phase: Phase,
    seq: u64,
    items: Vec<Item>,
    /// Whether the last item is open.
    item_open: bool,
    /// The latest function-call item of each chat tool-call index, and of each (index, call id):
    /// what a tool-call delta continues, found without scanning the items.
    calls_by_index: HashMap<u64, usize>,
    calls_by_id: HashMap<(u64, String), usize>,
    finish_reason: Option<String>,
    chat_usage: Option<Value>,
    status: &'static str,
    error: Value,
    incomplete_details: Value,
}

impl StreamBuilder {
    pub fn new(ctx: ResponseContext) -> Self {
        let id_stem = ctx.id.strip_prefix("resp_").unwrap_or(&ctx.id).to_string();
        StreamBuilder {
            ctx,
            id_stem,
            phase: Phase::New,
            seq: 0,
            items: Vec::new(),
            item_open: false,
            calls_by_index: HashMap::new(),
            calls_by_id: HashMap::new(),
            finish_reason: None,
            chat_usage: None,
            status: "in_progress",
            error: Value::Null,
            incomplete_details: Value::Null,
        }
    }

    /// Sets `completed_at` (unix seconds) for the terminal `response.completed` event.
    pub fn set_completed_at(&mut self, unix_seconds: u64) {
        self.ctx.completed_at = Some(unix_seconds);
    }

    /// Whether a terminal event has been emitted.
    pub fn is_finished(&self) -> bool {
        self.phase == Phase::Done
    }

    /// Emits `response.created` and `response.in_progress`. Called implicitly by the other
    /// methods when the caller has not; a second call does nothing.
    pub fn start(&mut self, out: &mut Vec<Event>) {
        if self.phase != Phase::New {
            return;
        }
        self.phase = Phase::Streaming;
        let snapshot = self.response();
        self.emit(out, "response.created", json!({"response": snapshot}));
        let snapshot = self.response();
        self.emit(out, "response.in_progress", json!({"response": snapshot}));
    }

    /// Feeds one parsed `chat.completion.chunk`. A chunk carrying an `error` object (an upstream
    /// error frame) fails the response.
    pub fn push_chunk(&mut self, chunk: &Value, out: &mut Vec<Event>) {
        if self.phase == Phase::Done {
            return;
        }
        self.start(out);
        if let Some(usage) = chunk.get("usage").filter(|u| u.is_object()) {
            self.chat_usage = Some(usage.clone());
        }
        if let Some(err) = chunk.get("error").filter(|e| e.is_object()) {
            let code = err
                .get("code")
                .and_then(Value::as_str)
                .or_else(|| err.get("type").and_then(Value::as_str))
                .unwrap_or("server_error")
                .to_string();
            let message = err
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("The upstream provider reported an error.")
                .to_string();
            self.fail(&code, &message, out);
            return;
        }
        let Some(choice) = chunk
            .get("choices")
            .and_then(Value::as_array)
            .and_then(|cs| {
                cs.iter()
                    .find(|c| c.get("index").and_then(Value::as_u64).unwrap_or(0) == 0)
            })
        else {
            return;
        };
        if let Some(delta) = choice.get("delta").or_else(|| choice.get("message")) {
            let reasoning = non_empty(delta.get("reasoning_content"))
                .or_else(|| non_empty(delta.get("reasoning")));
            if let Some(r) = reasoning {
                self.reasoning_delta(r, out);
            }
            if let Some(text) = non_empty(delta.get("content")) {
                self.message_delta(PartKind::Text, text, out);
            }
            if let Some(text) = non_empty(delta.get("refusal")) {
                self.message_delta(PartKind::Refusal, text, out);
            }
            if let Some(calls) = delta.get("tool_calls").and_then(Value::as_array) {
                for (pos, call) in calls.iter().enumerate() {
                    self.tool_call_delta(pos as u64, call, out);
                }
            }
        }
        if let Some(reason) = choice.get("finish_reason").and_then(Value::as_str) {
            self.finish_reason = Some(reason.to_string());
            // Close the last item now, so its done events do not wait for the usage chunk.
            let status = match self.terminal() {
                Terminal::Completed => "completed",
                Terminal::Incomplete(_) => "incomplete",
            };
            self.close_item(status, out);
        }
    }

    /// Closes any open item and emits the terminal event: `response.completed`, or
    /// `response.incomplete` when the upstream stopped on `length` / `content_filter`. `usage` is
    /// a chat `usage` object; without it the last usage seen in a chunk is used.
    pub fn finish(&mut self, usage: Option<&Value>, out: &mut Vec<Event>) {
        if self.phase == Phase::Done {
            return;
        }
        self.start(out);
        if let Some(u) = usage.filter(|u| u.is_object()) {
            self.chat_usage = Some(u.clone());
        }
        let terminal = self.terminal();
        let (kind, status) = match terminal {
            Terminal::Completed => ("response.completed", "completed"),
            Terminal::Incomplete(reason) => {
                self.incomplete_details = json!({"reason": reason});
                ("response.incomplete", "incomplete")
            }
        };
        self.close_item(status, out);
        self.status = status;
        self.phase = Phase::Done;
        let response = self.response();
        self.emit(out, kind, json!({"response": response}));
    }

    /// Closes any open item (status `incomplete`), then emits an `error` event and
    /// `response.failed` with `error: {code, message}`, as OpenAI does for a failure mid-stream.
    pub fn fail(&mut self, code: &str, message: &str, out: &mut Vec<Event>) {
        self.fail_as(None, &Value::String(code.to_owned()), None, message, out);
    }

    /// `fail` with every word of an error the client would otherwise have had as an HTTP error
    /// body: its `type` (`kind`, in the nested `error` object), `code` (a string or null), `param`
    /// and `message`.
    pub fn fail_as(
        &mut self,
        kind: Option<&str>,
        code: &Value,
        param: Option<&str>,
        message: &str,
        out: &mut Vec<Event>,
    ) {
        if self.phase == Phase::Done {
            return;
        }
        self.start(out);
        self.close_item("incomplete", out);
        self.status = "failed";
        self.error = json!({"code": code, "message": message});
        self.phase = Phase::Done;
        let mut nested = json!({"code": code, "message": message, "param": param});
        if let Some(kind) = kind {
            nested["type"] = Value::String(kind.to_owned());
        }
        self.emit(
            out,
            "error",
            // The spec puts the fields at the top level; OpenAI's live streams nest them under
            // `error`. Both are sent so that either reading works.
            json!({"code": code, "message": message, "param": param, "error": nested}),
        );
        let response = self.response();
        self.emit(out, "response.failed", json!({"response": response}));
    }

    /// The Response object as it stands: the final one after a terminal event (for storage,
    /// `GET /v1/responses/{id}` and non-streaming replies), an `in_progress` snapshot before.
    pub fn response(&self) -> Value {
        let e = &self.ctx.echo;
        let output: Vec<Value> = if self.phase == Phase::Done {
            self.items.iter().map(Item::to_json).collect()
        } else {
            // Lifecycle snapshots carry no output, as OpenAI's do.
            Vec::new()
        };
        let usage = if self.phase == Phase::Done {
            self.chat_usage
                .as_ref()
                .map(usage_from_chat)
                .unwrap_or(Value::Null)
        } else {
            Value::Null
        };
        let completed_at = match (self.status, self.ctx.completed_at) {
            ("completed", Some(t)) => json!(t),
            _ => Value::Null,
        };
        let mut r = Map::new();
        r.insert("id".into(), json!(self.ctx.id));
        r.insert("object".into(), json!("response"));
        r.insert("created_at".into(), json!(self.ctx.created_at));
        r.insert("status".into(), json!(self.status));
        r.insert("background".into(), json!(false));
        r.insert("completed_at".into(), completed_at);
        r.insert("error".into(), self.error.clone());
        r.insert("frequency_penalty".into(), json!(0.0));
        r.insert("incomplete_details".into(), self.incomplete_details.clone());
        r.insert("instructions".into(), e.instructions.clone());
        r.insert("max_output_tokens".into(), json!(e.max_output_tokens));
        r.insert("max_tool_calls".into(), e.max_tool_calls.clone());
        r.insert("model".into(), json!(self.ctx.model));
        r.insert("moderation".into(), Value::Null);
        r.insert("output".into(), Value::Array(output));
        r.insert("parallel_tool_calls".into(), json!(e.parallel_tool_calls));
        r.insert("presence_penalty".into(), json!(0.0));
        r.insert("previous_response_id".into(), json!(e.previous_response_id));
        r.insert("prompt_cache_key".into(), e.prompt_cache_key.clone());
        r.insert(
            "prompt_cache_retention".into(),
            e.prompt_cache_retention.clone(),
        );
        r.insert("reasoning".into(), e.reasoning.clone());
        r.insert("safety_identifier".into(), e.safety_identifier.clone());
        r.insert("service_tier".into(), e.service_tier.clone());
        r.insert("store".into(), json!(e.store));
        r.insert("temperature".into(), e.temperature.clone());
        r.insert("text".into(), e.text.clone());
        r.insert("tool_choice".into(), e.tool_choice.clone());
        r.insert("tools".into(), e.tools.clone());
        r.insert("top_logprobs".into(), e.top_logprobs.clone());
        r.insert("top_p".into(), e.top_p.clone());
        r.insert("truncation".into(), e.truncation.clone());
        r.insert("usage".into(), usage);
        r.insert("user".into(), e.user.clone());
        r.insert("metadata".into(), e.metadata.clone());
        Value::Object(r)
    }

    fn terminal(&self) -> Terminal {
        match self.finish_reason.as_deref() {
            Some("length") | Some("max_tokens") | Some("insufficient_system_resource") => {
                Terminal::Incomplete("max_output_tokens")
            }
            Some("content_filter") => Terminal::Incomplete("content_filter"),
            _ => Terminal::Completed,
        }
    }

    fn emit(&mut self, out: &mut Vec<Event>, kind: &'static str, fields: Value) {
        let mut data = Map::new();
        data.insert("type".into(), json!(kind));
        data.insert("sequence_number".into(), json!(self.seq));
        if let Value::Object(f) = fields {
            data.extend(f);
        }
        self.seq += 1;
        out.push(Event {
            kind: kind.to_string(),
            data: Value::Object(data),
        });
    }

    fn open_item(&mut self, prefix: &str, body: ItemBody, out: &mut Vec<Event>) {
        let index = self.items.len();
        let item = Item {
            id: format!("{prefix}_{}{index:02}", self.id_stem),
            status: "in_progress",
            body,
        };
        let json_item = item.to_json();
        self.items.push(item);
        self.item_open = true;
        self.emit(
            out,
            "response.output_item.added",
            json!({"output_index": index, "item": json_item}),
        );
    }

    /// Closes the open item, if any: its part's done events, then `response.output_item.done`.
    fn close_item(&mut self, status: &'static str, out: &mut Vec<Event>) {
        if !self.item_open {
            return;
        }
        self.close_part(out);
        let index = self.items.len() - 1;
        let item = &mut self.items[index];
        item.status = status;
        let id = item.id.clone();
        let json_item = item.to_json();
        let body = item.body.clone();
        self.item_open = false;
        match body {
            ItemBody::Reasoning { text } => {
                self.emit(
                    out,
                    "response.reasoning_summary_text.done",
                    json!({"item_id": id, "output_index": index, "summary_index": 0, "text": text}),
                );
                self.emit(
                    out,
                    "response.reasoning_summary_part.done",
                    json!({
                        "item_id": id, "output_index": index, "summary_index": 0,
                        "part": {"type": "summary_text", "text": text},
                    }),
                );
            }
            ItemBody::FunctionCall {
                name, arguments, ..
            } => {
                self.emit(
                    out,
                    "response.function_call_arguments.done",
                    json!({"item_id": id, "output_index": index, "name": name, "arguments": arguments}),
                );
            }
            ItemBody::Message { .. } => {}
        }
        self.emit(
            out,
            "response.output_item.done",
            json!({"output_index": index, "item": json_item}),
        );
    }

    /// Closes the open content part of the open message item, if any.
    fn close_part(&mut self, out: &mut Vec<Event>) {
        let index = self.items.len().wrapping_sub(1);
        let Some(Item {
            id,
            body: ItemBody::Message { parts, part_open },
            ..
        }) = self.items.last_mut()
        else {
            return;
        };
        if !*part_open || !self.item_open {
            return;
        }
        *part_open = false;
        let id = id.clone();
        let content_index = parts.len() - 1;
        let part = parts[content_index].clone();
        match part.kind {
            PartKind::Text => self.emit(
                out,
                "response.output_text.done",
                json!({
                    "item_id": id, "output_index": index, "content_index": content_index,
                    "text": part.text, "logprobs": [],
                }),
            ),
            PartKind::Refusal => self.emit(
                out,
                "response.refusal.done",
                json!({
                    "item_id": id, "output_index": index, "content_index": content_index,
                    "refusal": part.text,
                }),
            ),
        }
        self.emit(
            out,
            "response.content_part.done",
            json!({
                "item_id": id, "output_index": index, "content_index": content_index,
                "part": part_json(&part),
            }),
        );
    }

    fn reasoning_delta(&mut self, delta: &str, out: &mut Vec<Event>) {
        let open_reasoning = self.item_open
            && matches!(
                self.items.last().map(|i| &i.body),
                Some(ItemBody::Reasoning { .. })
            );
        if !open_reasoning {
            self.close_item("completed", out);
            self.open_item(
                "rs",
                ItemBody::Reasoning {
                    text: String::new(),
                },
                out,
            );
            let index = self.items.len() - 1;
            let id = self.items[index].id.clone();
            self.emit(
                out,
                "response.reasoning_summary_part.added",
                json!({
                    "item_id": id, "output_index": index, "summary_index": 0,
                    "part": {"type": "summary_text", "text": ""},
                }),
            );
        }
        let index = self.items.len() - 1;
        let item = &mut self.items[index];
        if let ItemBody::Reasoning { text } = &mut item.body {
            text.push_str(delta);
        }
        let id = item.id.clone();
        self.emit(
            out,
            "response.reasoning_summary_text.delta",
            json!({"item_id": id, "output_index": index, "summary_index": 0, "delta": delta}),
        );
    }

    fn message_delta(&mut self, kind: PartKind, delta: &str, out: &mut Vec<Event>) {
        let open_message = self.item_open
            && matches!(
                self.items.last().map(|i| &i.body),
                Some(ItemBody::Message { .. })
            );
        if !open_message {
            self.close_item("completed", out);
            self.open_item(
                "msg",
                ItemBody::Message {
                    parts: Vec::new(),
                    part_open: false,
                },
                out,
            );
        }
        let index = self.items.len() - 1;
        let needs_part = match &self.items[index].body {
            ItemBody::Message { parts, part_open } => {
                !*part_open || parts.last().map(|p| p.kind) != Some(kind)
            }
            _ => false,
        };
        if needs_part {
            self.close_part(out);
            let item = &mut self.items[index];
            let id = item.id.clone();
            let mut content_index = 0;
            if let ItemBody::Message { parts, part_open } = &mut item.body {
                parts.push(Part {
                    kind,
                    text: String::new(),
                });
                *part_open = true;
                content_index = parts.len() - 1;
            }
            let part = part_json(&Part {
                kind,
                text: String::new(),
            });
            self.emit(
                out,
                "response.content_part.added",
                json!({"item_id": id, "output_index": index, "content_index": content_index, "part": part}),
            );
        }
        let item = &mut self.items[index];
        let id = item.id.clone();
        let mut content_index = 0;
        if let ItemBody::Message { parts, .. } = &mut item.body {
            content_index = parts.len() - 1;
            parts[content_index].text.push_str(delta);
        }
        match kind {
            PartKind::Text => self.emit(
                out,
                "response.output_text.delta",
                json!({
                    "item_id": id, "output_index": index, "content_index": content_index,
                    "delta": delta, "logprobs": [],
                }),
            ),
            PartKind::Refusal => self.emit(
                out,
                "response.refusal.delta",
                json!({"item_id": id, "output_index": index, "content_index": content_index, "delta": delta}),
            ),
        }
    }

    fn tool_call_delta(&mut self, pos: u64, call: &Value, out: &mut Vec<Event>) {
        let chat_index = call.get("index").and_then(Value::as_u64).unwrap_or(pos);
        let id = call
            .get("id")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty());
        let function = call.get("function");
        let name = function
            .and_then(|f| f.get("name"))
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty());
        let args = function
            .and_then(|f| f.get("arguments"))
            .and_then(Value::as_str)
            .unwrap_or("");

        // The item this delta continues: the latest function call with the same chat index,
        // unless the delta names a different call id (a new call reusing the index).
        let existing = match id {
            None => self.calls_by_index.get(&chat_index),
            Some(id) => self.calls_by_id.get(&(chat_index, id.to_owned())),
        }
        .copied();
        let is_open = |idx: usize, this: &Self| this.item_open && idx + 1 == this.items.len();
        match existing {
            Some(idx) if is_open(idx, self) => {
                if let ItemBody::FunctionCall { name: n, .. } = &mut self.items[idx].body {
                    if n.is_empty() {
                        if let Some(name) = name {
                            *n = name.to_string();
                        }
                    }
                }
            }
            Some(idx) => {
                // A late fragment for a call already closed: keep the final item right; the
                // stream has already reported that call as done.
                if let ItemBody::FunctionCall { arguments, .. } = &mut self.items[idx].body {
                    arguments.push_str(args);
                }
                return;
            }
            None => {
                self.close_item("completed", out);
                let call_id = id
                    .map(str::to_string)
                    .unwrap_or_else(|| format!("call_{}{:02}", self.id_stem, self.items.len()));
                let index = self.items.len();
                self.calls_by_index.insert(chat_index, index);
                self.calls_by_id
                    .insert((chat_index, call_id.clone()), index);
                self.open_item(
                    "fc",
                    ItemBody::FunctionCall {
                        call_id,
                        name: name.unwrap_or("").to_string(),
                        arguments: String::new(),
                    },
                    out,
                );
            }
        }
        if args.is_empty() {
            return;
        }
        let index = self.items.len() - 1;
        let item = &mut self.items[index];
        if let ItemBody::FunctionCall { arguments, .. } = &mut item.body {
            arguments.push_str(args);
        }
        let item_id = item.id.clone();
        self.emit(
            out,
            "response.function_call_arguments.delta",
            json!({"item_id": item_id, "output_index": index, "delta": args}),
        );
    }
}

fn non_empty(v: Option<&Value>) -> Option<&str> {
    v.and_then(Value::as_str).filter(|s| !s.is_empty())
}

/// A chat `usage` object → a Responses `usage` object. Cached tokens come from
/// `prompt_tokens_details.cached_tokens` or DeepSeek's `prompt_cache_hit_tokens`.
pub fn usage_from_chat(usage: &Value) -> Value {
    let n = |v: Option<&Value>| v.and_then(Value::as_u64).unwrap_or(0);
    let input = n(usage.get("prompt_tokens"));
    let output = n(usage.get("completion_tokens"));
    let total = usage
        .get("total_tokens")
        .and_then(Value::as_u64)
        .unwrap_or(input + output);
    let cached = usage
        .pointer("/prompt_tokens_details/cached_tokens")
        .and_then(Value::as_u64)
        .or_else(|| usage.get("prompt_cache_hit_tokens").and_then(Value::as_u64))
        .unwrap_or(0);
    let reasoning = n(usage.pointer("/completion_tokens_details/reasoning_tokens"));
    json!({
        "input_tokens": input,
        "input_tokens_details": {"cached_tokens": cached},
        "output_tokens": output,
        "output_tokens_details": {"reasoning_tokens": reasoning},
        "total_tokens": total,
    })
}

/// A non-streaming `chat.completion` → the Response object, by running [`StreamBuilder`] over one
/// synthetic chunk holding the whole message, so both paths share one source of truth. An error
/// body (`{"error": …}`) yields a `failed` Response.
pub fn chat_completion_to_response(completion: &Value, ctx: ResponseContext) -> Value {
    let mut builder = StreamBuilder::new(ctx);
    let mut sink = Vec::new();
    builder.start(&mut sink);
    let mut chunk = completion.clone();
    if let Some(Value::Array(choices)) = chunk.get_mut("choices") {
        for choice in choices.iter_mut() {
            let Some(obj) = choice.as_object_mut() else {
                continue;
            };
            let mut message = obj.remove("message").unwrap_or(Value::Null);
            // Give every tool call the `index` a streamed delta would carry.
            if let Some(Value::Array(calls)) = message.get_mut("tool_calls") {
                for (i, call) in calls.iter_mut().enumerate() {
                    if let Some(c) = call.as_object_mut() {
                        c.entry("index").or_insert(json!(i));
                    }
                }
            }
            obj.insert("delta".into(), message);
        }
    }
    let usage = completion.get("usage").cloned();
    if let Some(c) = chunk.as_object_mut() {
        c.remove("usage");
    }
    builder.push_chunk(&chunk, &mut sink);
    builder.finish(usage.as_ref(), &mut sink);
    builder.response()
}
