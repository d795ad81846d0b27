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
//! `call_id` is the chat tool call id, named back as the request's tools were
//! ([`RequestEcho::tool_names`]): a flattened namespaced name → `name` + `namespace`, a custom
//! tool's call → a `custom_tool_call` item whose `input` is the call's one string argument (its
//! events are `response.custom_tool_call_input.delta`/`.done`, written when the call closes,
//! since the input is only known once the JSON arguments are whole). A new kind of output closes
//! the open item. The chunk's `finish_reason`, read as a [`FinishReason`] (`max_tokens` too is
//! read as `length`), gives the ending ([`FinishReason::responses_incomplete_reason`]): `length`
//! (and DeepSeek's `insufficient_system_resource`) → `response.incomplete` with reason
//! `max_output_tokens`; `content_filter` → reason `content_filter`; anything else → completed.
//!
//! Input and output come in two forms. The general one: a chunk as a `Value`
//! ([`StreamBuilder::push_chunk`]) and events as [`Event`] values. The streaming hot path: a
//! borrowed [`ChunkView`] or a typed [`ChatChunk`] ([`StreamBuilder::push_chunk_view`],
//! [`StreamBuilder::push_chat_chunk`]), with the events written straight into SSE bytes, the
//! per-delta ones from typed structs; building a `Value` per chunk and per event was most of the
//! cost (issue 13, M9). Both forms run the same state machine and give the same bytes.

use serde::Serialize;
use serde_json::{json, Map, Value};
use std::collections::HashMap;

use super::request::RequestEcho;
use super::tools::{ToolNames, ToolOrigin};
use super::Event;
use crate::chat_chunk::{ChatChunk, Delta};
use crate::finish::FinishReason;
use crate::openai::ChunkView;

/// Where the builder's events go: [`Event`] values, or SSE frames appended to a buffer (the
/// bytes [`super::encode_sse`] would write for the same events).
enum Sink<'o> {
    Events(&'o mut Vec<Event>),
    Sse(&'o mut Vec<u8>),
}

/// An event's payload: its type and sequence number first, then its own fields, in order.
#[derive(Serialize)]
struct Envelope<T> {
    #[serde(rename = "type")]
    kind: &'static str,
    sequence_number: u64,
    #[serde(flatten)]
    fields: T,
}

/// Numbers the event and hands it to the sink. A free function over the builder's counter, so
/// that the fields may borrow the builder's items while it runs.
fn emit<T: Serialize>(seq: &mut u64, out: &mut Sink<'_>, kind: &'static str, fields: T) {
    let envelope = Envelope {
        kind,
        sequence_number: *seq,
        fields,
    };
    *seq += 1;
    match out {
        Sink::Events(events) => events.push(Event {
            kind: kind.to_string(),
            // Strings, integers and `Value`s only: converting cannot fail.
            data: serde_json::to_value(&envelope).unwrap_or(Value::Null),
        }),
        Sink::Sse(buf) => {
            buf.extend_from_slice(b"event: ");
            buf.extend_from_slice(kind.as_bytes());
            buf.extend_from_slice(b"\ndata: ");
            // As in `encode_sse`: writing into a Vec cannot fail; compact JSON has no newline.
            if serde_json::to_writer(&mut **buf, &envelope).is_err() {
                buf.extend_from_slice(b"{}");
            }
            buf.extend_from_slice(b"\n\n");
        }
    }
}

/// The fields of the lifecycle events: the Response object as it stands.
#[derive(Serialize)]
struct Snapshot<'a> {
    response: ResponseSnapshot<'a>,
}

/// The Response object, borrowed from the builder; field order is the order on the wire.
#[derive(Serialize)]
struct ResponseSnapshot<'a> {
    id: &'a str,
    object: &'static str,
    created_at: u64,
    status: &'static str,
    background: bool,
    completed_at: Option<u64>,
    error: &'a Value,
    frequency_penalty: f64,
    incomplete_details: &'a Value,
    instructions: &'a Value,
    max_output_tokens: Option<u64>,
    max_tool_calls: &'a Value,
    model: &'a str,
    /// Always `null`.
    moderation: (),
    output: &'a [Item],
    parallel_tool_calls: bool,
    presence_penalty: f64,
    previous_response_id: Option<&'a str>,
    prompt_cache_key: &'a Value,
    prompt_cache_retention: &'a Value,
    reasoning: &'a Value,
    safety_identifier: &'a Value,
    service_tier: &'a Value,
    store: bool,
    temperature: &'a Value,
    text: &'a Value,
    tool_choice: &'a Value,
    tools: &'a Value,
    top_logprobs: &'a Value,
    top_p: &'a Value,
    truncation: &'a Value,
    usage: Option<Value>,
    user: &'a Value,
    metadata: &'a Value,
}

/// `response.reasoning_summary_text.delta`'s fields.
#[derive(Serialize)]
struct SummaryTextDelta<'a> {
    item_id: &'a str,
    output_index: usize,
    summary_index: u64,
    delta: &'a str,
}

/// `response.output_text.delta`'s fields.
#[derive(Serialize)]
struct OutputTextDelta<'a> {
    item_id: &'a str,
    output_index: usize,
    content_index: usize,
    delta: &'a str,
    /// Always `[]`.
    logprobs: [u8; 0],
}

/// `response.refusal.delta`'s fields.
#[derive(Serialize)]
struct RefusalDelta<'a> {
    item_id: &'a str,
    output_index: usize,
    content_index: usize,
    delta: &'a str,
}

/// `response.function_call_arguments.delta`'s fields.
#[derive(Serialize)]
struct ArgumentsDelta<'a> {
    item_id: &'a str,
    output_index: usize,
    delta: &'a str,
}

/// What the builder reads from a chunk's choice 0, whatever form the chunk came in.
#[derive(Default)]
struct ChoiceParts<'a> {
    /// Each of these is non-empty when set.
    reasoning: Option<&'a str>,
    /// An Anthropic thinking block's signature (the gateway's `reasoning_signature` extension).
    signature: Option<&'a str>,
    content: Option<&'a str>,
    refusal: Option<&'a str>,
    tool_calls: Vec<CallParts<'a>>,
    finish_reason: Option<FinishReason>,
}

/// A chat chunk's `finish_reason`: OpenAI's ([`FinishReason::from_openai`]), and Anthropic's
/// `max_tokens` as `length`.
fn read_finish(reason: &str) -> FinishReason {
    match reason {
        "max_tokens" => FinishReason::Length,
        other => FinishReason::from_openai(other),
    }
}

/// One `delta.tool_calls[]` entry.
struct CallParts<'a> {
    index: Option<u64>,
    /// Non-empty when set.
    id: Option<&'a str>,
    /// Non-empty when set.
    name: Option<&'a str>,
    arguments: &'a str,
}

fn non_empty_str(s: Option<&str>) -> Option<&str> {
    s.filter(|s| !s.is_empty())
}

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
    /// `background: true`: generated detached from the request (reported on the object).
    pub background: bool,
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
            background: false,
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
        /// An Anthropic route's signature of this thinking: the item then carries both as its
        /// `encrypted_content` (`reasoning_carrier`), which the client sends back next turn.
        signature: Option<String>,
    },
    Message {
        parts: Vec<Part>,
        /// Whether the last part is still open (added, not done).
        part_open: bool,
    },
    FunctionCall {
        call_id: String,
        /// The name as the client's tools spell it (the inner name of a namespaced tool).
        name: String,
        arguments: String,
        /// The namespace of a namespaced tool.
        namespace: Option<String>,
        /// A custom tool's call: shown as a `custom_tool_call` with the `input` argument.
        custom: bool,
    },
}

/// A custom tool call's `input`: the `input` string of its JSON arguments, or the arguments as
/// they are when they are not such an object.
fn custom_input(arguments: &str) -> std::borrow::Cow<'_, str> {
    match serde_json::from_str::<Value>(arguments) {
        Ok(Value::Object(mut o)) => match o.remove("input") {
            Some(Value::String(s)) => std::borrow::Cow::Owned(s),
            _ => std::borrow::Cow::Borrowed(arguments),
        },
        _ => std::borrow::Cow::Borrowed(arguments),
    }
}

#[derive(Debug, Clone)]
struct Item {
    id: String,
    /// `in_progress` while open, then `completed` or `incomplete`.
    status: &'static str,
    body: ItemBody,
}

/// An item as the Responses API shows it; an open (`in_progress`) item is announced without its
/// content, as OpenAI does (it arrives through the events). Field order is the order on the wire.
impl Serialize for Item {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let open = self.status == "in_progress";
        let none: [u8; 0] = [];
        match &self.body {
            ItemBody::Reasoning { text, signature } => {
                let mut m = s.serialize_struct("Item", 4)?;
                m.serialize_field("id", &self.id)?;
                m.serialize_field("type", "reasoning")?;
                if open {
                    m.serialize_field("summary", &none)?;
                } else {
                    m.serialize_field("summary", &[SummaryPart::new(text)])?;
                    if let Some(sig) = signature {
                        let carried = crate::reasoning_carrier::pack(text, sig);
                        m.serialize_field("encrypted_content", &carried)?;
                    }
                }
                m.end()
            }
            ItemBody::Message { parts, .. } => {
                let mut m = s.serialize_struct("Item", 5)?;
                m.serialize_field("id", &self.id)?;
                m.serialize_field("type", "message")?;
                m.serialize_field("status", self.status)?;
                if open {
                    m.serialize_field("content", &none)?;
                } else {
                    m.serialize_field("content", parts)?;
                }
                m.serialize_field("role", "assistant")?;
                m.end()
            }
            ItemBody::FunctionCall {
                call_id,
                name,
                arguments,
                custom: true,
                ..
            } => {
                let mut m = s.serialize_struct("Item", 6)?;
                m.serialize_field("id", &self.id)?;
                m.serialize_field("type", "custom_tool_call")?;
                m.serialize_field("status", self.status)?;
                m.serialize_field("call_id", call_id)?;
                m.serialize_field("name", name)?;
                if open {
                    m.serialize_field("input", "")?;
                } else {
                    m.serialize_field("input", &custom_input(arguments))?;
                }
                m.end()
            }
            ItemBody::FunctionCall {
                call_id,
                name,
                arguments,
                namespace,
                custom: false,
            } => {
                let mut m = s.serialize_struct("Item", 7)?;
                m.serialize_field("id", &self.id)?;
                m.serialize_field("type", "function_call")?;
                m.serialize_field("status", self.status)?;
                m.serialize_field("arguments", if open { "" } else { arguments.as_str() })?;
                m.serialize_field("call_id", call_id)?;
                m.serialize_field("name", name)?;
                if let Some(ns) = namespace {
                    m.serialize_field("namespace", ns)?;
                }
                m.end()
            }
        }
    }
}

/// A message content part: `output_text` (with its empty annotations and logprobs) or `refusal`.
impl Serialize for Part {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let none: [u8; 0] = [];
        match self.kind {
            PartKind::Text => {
                let mut m = s.serialize_struct("Part", 4)?;
                m.serialize_field("type", "output_text")?;
                m.serialize_field("annotations", &none)?;
                m.serialize_field("logprobs", &none)?;
                m.serialize_field("text", &self.text)?;
                m.end()
            }
            PartKind::Refusal => {
                let mut m = s.serialize_struct("Part", 2)?;
                m.serialize_field("type", "refusal")?;
                m.serialize_field("refusal", &self.text)?;
                m.end()
            }
        }
    }
}

/// A reasoning item's one summary part.
#[derive(Serialize)]
struct SummaryPart<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    text: &'a str,
}

impl<'a> SummaryPart<'a> {
    fn new(text: &'a str) -> Self {
        SummaryPart {
            kind: "summary_text",
            text,
        }
    }
}

/// `response.output_item.added` / `.done`'s fields.
#[derive(Serialize)]
struct ItemEvent<'a> {
    output_index: usize,
    item: &'a Item,
}

/// `response.reasoning_summary_part.added` / `.done`'s fields.
#[derive(Serialize)]
struct SummaryPartEvent<'a> {
    item_id: &'a str,
    output_index: usize,
    summary_index: u64,
    part: SummaryPart<'a>,
}

/// `response.reasoning_summary_text.done`'s fields.
#[derive(Serialize)]
struct SummaryTextDone<'a> {
    item_id: &'a str,
    output_index: usize,
    summary_index: u64,
    text: &'a str,
}

/// `response.function_call_arguments.done`'s fields.
#[derive(Serialize)]
struct ArgumentsDone<'a> {
    item_id: &'a str,
    output_index: usize,
    name: &'a str,
    arguments: &'a str,
}

/// `response.custom_tool_call_input.delta`'s fields.
#[derive(Serialize)]
struct CustomInputDelta<'a> {
    item_id: &'a str,
    output_index: usize,
    delta: &'a str,
}

/// `response.custom_tool_call_input.done`'s fields.
#[derive(Serialize)]
struct CustomInputDone<'a> {
    item_id: &'a str,
    output_index: usize,
    input: &'a str,
}

/// `response.output_text.done`'s fields.
#[derive(Serialize)]
struct OutputTextDone<'a> {
    item_id: &'a str,
    output_index: usize,
    content_index: usize,
    text: &'a str,
    /// Always `[]`.
    logprobs: [u8; 0],
}

/// `response.refusal.done`'s fields.
#[derive(Serialize)]
struct RefusalDone<'a> {
    item_id: &'a str,
    output_index: usize,
    content_index: usize,
    refusal: &'a str,
}

/// `response.content_part.added` / `.done`'s fields.
#[derive(Serialize)]
struct PartEvent<'a> {
    item_id: &'a str,
    output_index: usize,
    content_index: usize,
    part: &'a Part,
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
    finish_reason: Option<FinishReason>,
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
        self.start_into(&mut Sink::Events(out));
    }

    /// [`Self::start`], the two events written as SSE frames into `out` (the snapshots are
    /// serialised from the builder, never built as values).
    pub fn start_sse(&mut self, out: &mut Vec<u8>) {
        self.start_into(&mut Sink::Sse(out));
    }

    fn start_into(&mut self, out: &mut Sink<'_>) {
        if self.phase != Phase::New {
            return;
        }
        self.phase = Phase::Streaming;
        // The counter is copied out: the snapshot borrows the whole builder while it is written.
        let mut seq = self.seq;
        for kind in ["response.created", "response.in_progress"] {
            let response = self.snapshot();
            emit(&mut seq, out, kind, Snapshot { response });
        }
        self.seq = seq;
    }

    /// Feeds one parsed `chat.completion.chunk`. A chunk carrying an `error` object (an upstream
    /// error frame) fails the response.
    pub fn push_chunk(&mut self, chunk: &Value, out: &mut Vec<Event>) {
        let out = &mut Sink::Events(out);
        if !self.begin_chunk(chunk.get("usage").cloned(), chunk.get("error"), out) {
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
        let mut parts = ChoiceParts {
            finish_reason: choice
                .get("finish_reason")
                .and_then(Value::as_str)
                .map(read_finish),
            ..ChoiceParts::default()
        };
        if let Some(delta) = choice.get("delta").or_else(|| choice.get("message")) {
            parts.reasoning = non_empty(delta.get("reasoning_content"))
                .or_else(|| non_empty(delta.get("reasoning")));
            parts.signature = non_empty(delta.get("reasoning_signature"));
            parts.content = non_empty(delta.get("content"));
            parts.refusal = non_empty(delta.get("refusal"));
            if let Some(calls) = delta.get("tool_calls").and_then(Value::as_array) {
                parts.tool_calls = calls
                    .iter()
                    .map(|call| {
                        let function = call.get("function");
                        let text =
                            |k: &str| function.and_then(|f| f.get(k)).and_then(Value::as_str);
                        CallParts {
                            index: call.get("index").and_then(Value::as_u64),
                            id: non_empty(call.get("id")),
                            name: non_empty_str(text("name")),
                            arguments: text("arguments").unwrap_or(""),
                        }
                    })
                    .collect();
            }
        }
        self.push_choice(parts, out);
    }

    /// [`Self::push_chunk`] for a chunk read borrowed, its events written as SSE frames into
    /// `out`. Reads what `push_chunk` reads, with one exception the caller must route to
    /// `push_chunk`: a choice that carries a `message` (see [`ChunkView::has_message`]).
    pub fn push_chunk_view(&mut self, chunk: &ChunkView<'_>, out: &mut Vec<u8>) {
        let out = &mut Sink::Sse(out);
        let parse = |raw: Option<&serde_json::value::RawValue>| {
            raw.and_then(|r| serde_json::from_str::<Value>(r.get()).ok())
        };
        let error = parse(chunk.error);
        if !self.begin_chunk(parse(chunk.usage), error.as_ref(), out) {
            return;
        }
        let Some(choice) = chunk.choices.iter().find(|c| c.index.unwrap_or(0) == 0) else {
            return;
        };
        let d = &choice.delta;
        let parts = ChoiceParts {
            reasoning: non_empty_str(d.reasoning_content.as_deref())
                .or_else(|| non_empty_str(d.reasoning.as_deref())),
            signature: non_empty_str(d.reasoning_signature.as_deref()),
            content: non_empty_str(d.content.as_deref()),
            refusal: non_empty_str(d.refusal.as_deref()),
            tool_calls: d
                .tool_calls
                .iter()
                .map(|call| CallParts {
                    index: call.index,
                    id: non_empty_str(call.id.as_deref()),
                    name: non_empty_str(call.function.name.as_deref()),
                    arguments: call.function.arguments.as_deref().unwrap_or(""),
                })
                .collect(),
            finish_reason: choice.finish_reason.as_deref().map(read_finish),
        };
        self.push_choice(parts, out);
    }

    /// [`Self::push_chunk`] for a typed translated chunk, its events written as SSE frames into
    /// `out`.
    pub fn push_chat_chunk(&mut self, chunk: &ChatChunk, out: &mut Vec<u8>) {
        let out = &mut Sink::Sse(out);
        if !self.begin_chunk(None, None, out) {
            return;
        }
        let mut parts = ChoiceParts {
            finish_reason: chunk.finish_reason,
            ..ChoiceParts::default()
        };
        match &chunk.delta {
            Delta::Empty => {}
            Delta::ReasoningSignature(sig) => parts.signature = non_empty_str(Some(sig)),
            Delta::Content(t) => parts.content = non_empty_str(Some(t)),
            Delta::ReasoningContent(t) => parts.reasoning = non_empty_str(Some(t)),
            Delta::ToolCallStart { index, id, name } => parts.tool_calls.push(CallParts {
                index: Some(*index),
                id: non_empty_str(Some(id)),
                name: non_empty_str(Some(name)),
                arguments: "",
            }),
            Delta::ToolCallArguments { index, arguments } => parts.tool_calls.push(CallParts {
                index: Some(*index),
                id: None,
                name: None,
                arguments,
            }),
        }
        self.push_choice(parts, out);
    }

    /// What every chunk does first: start the stream, keep its usage, fail on its error. False
    /// when nothing more is to be read from it.
    fn begin_chunk(
        &mut self,
        usage: Option<Value>,
        error: Option<&Value>,
        out: &mut Sink<'_>,
    ) -> bool {
        if self.phase == Phase::Done {
            return false;
        }
        self.start_into(out);
        if let Some(usage) = usage.filter(|u| u.is_object()) {
            self.chat_usage = Some(usage);
        }
        if let Some(err) = error.filter(|e| e.is_object()) {
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
            self.fail_into(None, &Value::String(code), None, &message, out);
            return false;
        }
        true
    }

    /// Choice 0 of a chunk: its deltas in order (reasoning, text, refusal, tool calls), then its
    /// finish reason.
    fn push_choice(&mut self, parts: ChoiceParts<'_>, out: &mut Sink<'_>) {
        if let Some(r) = parts.reasoning {
            self.reasoning_delta(r, out);
        }
        if let Some(sig) = parts.signature {
            // It closes the thinking it signs, still the open item.
            if let Some(ItemBody::Reasoning { signature, .. }) = self
                .items
                .last_mut()
                .filter(|_| self.item_open)
                .map(|i| &mut i.body)
            {
                *signature = Some(sig.to_owned());
            }
        }
        if let Some(text) = parts.content {
            self.message_delta(PartKind::Text, text, out);
        }
        if let Some(text) = parts.refusal {
            self.message_delta(PartKind::Refusal, text, out);
        }
        for (pos, call) in parts.tool_calls.iter().enumerate() {
            self.tool_call_delta(pos as u64, call, out);
        }
        if let Some(reason) = parts.finish_reason {
            self.finish_reason = Some(reason);
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
        let out = &mut Sink::Events(out);
        if self.phase == Phase::Done {
            return;
        }
        self.start_into(out);
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
        self.fail_into(kind, code, param, message, &mut Sink::Events(out));
    }

    fn fail_into(
        &mut self,
        kind: Option<&str>,
        code: &Value,
        param: Option<&str>,
        message: &str,
        out: &mut Sink<'_>,
    ) {
        if self.phase == Phase::Done {
            return;
        }
        self.start_into(out);
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
        serde_json::to_value(self.snapshot()).unwrap_or(Value::Null)
    }

    /// [`Self::response`] borrowed from the builder, for writing it without building it.
    fn snapshot(&self) -> ResponseSnapshot<'_> {
        let done = self.phase == Phase::Done;
        let e = &self.ctx.echo;
        ResponseSnapshot {
            id: &self.ctx.id,
            object: "response",
            created_at: self.ctx.created_at,
            status: self.status,
            background: self.ctx.background,
            completed_at: match (self.status, self.ctx.completed_at) {
                ("completed", Some(t)) => Some(t),
                _ => None,
            },
            error: &self.error,
            frequency_penalty: 0.0,
            incomplete_details: &self.incomplete_details,
            instructions: &e.instructions,
            max_output_tokens: e.max_output_tokens,
            max_tool_calls: &e.max_tool_calls,
            model: &self.ctx.model,
            moderation: (),
            // Lifecycle snapshots carry no output and no usage, as OpenAI's do.
            output: if done { &self.items } else { &[] },
            parallel_tool_calls: e.parallel_tool_calls,
            presence_penalty: 0.0,
            previous_response_id: e.previous_response_id.as_deref(),
            prompt_cache_key: &e.prompt_cache_key,
            prompt_cache_retention: &e.prompt_cache_retention,
            reasoning: &e.reasoning,
            safety_identifier: &e.safety_identifier,
            service_tier: &e.service_tier,
            store: e.store,
            temperature: &e.temperature,
            text: &e.text,
            tool_choice: &e.tool_choice,
            tools: &e.tools,
            top_logprobs: &e.top_logprobs,
            top_p: &e.top_p,
            truncation: &e.truncation,
            usage: if done {
                self.chat_usage.as_ref().map(usage_from_chat)
            } else {
                None
            },
            user: &e.user,
            metadata: &e.metadata,
        }
    }

    fn terminal(&self) -> Terminal {
        match self
            .finish_reason
            .and_then(FinishReason::responses_incomplete_reason)
        {
            Some(reason) => Terminal::Incomplete(reason),
            None => Terminal::Completed,
        }
    }

    /// Emits an event whose fields are a JSON object (the events that are not per delta). As a
    /// value, the object becomes the payload in place (type and number first) rather than being
    /// copied through the serialiser.
    fn emit(&mut self, out: &mut Sink<'_>, kind: &'static str, fields: Value) {
        match (&mut *out, fields) {
            (Sink::Events(events), Value::Object(fields)) => {
                let mut data = Map::with_capacity(fields.len() + 2);
                data.insert("type".into(), Value::String(kind.to_owned()));
                data.insert("sequence_number".into(), Value::from(self.seq));
                self.seq += 1;
                data.extend(fields);
                events.push(Event {
                    kind: kind.to_string(),
                    data: Value::Object(data),
                });
            }
            (_, fields) => emit(&mut self.seq, out, kind, fields),
        }
    }

    fn open_item(&mut self, prefix: &str, body: ItemBody, out: &mut Sink<'_>) {
        let index = self.items.len();
        let item = Item {
            id: format!("{prefix}_{}{index:02}", self.id_stem),
            status: "in_progress",
            body,
        };
        self.items.push(item);
        self.item_open = true;
        emit(
            &mut self.seq,
            out,
            "response.output_item.added",
            ItemEvent {
                output_index: index,
                item: &self.items[index],
            },
        );
    }

    /// Closes the open item, if any: its part's done events, then `response.output_item.done`.
    fn close_item(&mut self, status: &'static str, out: &mut Sink<'_>) {
        if !self.item_open {
            return;
        }
        self.close_part(out);
        let index = self.items.len() - 1;
        self.items[index].status = status;
        self.item_open = false;
        let item = &self.items[index];
        let seq = &mut self.seq;
        match &item.body {
            ItemBody::Reasoning { text, .. } => {
                emit(
                    seq,
                    out,
                    "response.reasoning_summary_text.done",
                    SummaryTextDone {
                        item_id: &item.id,
                        output_index: index,
                        summary_index: 0,
                        text,
                    },
                );
                emit(
                    seq,
                    out,
                    "response.reasoning_summary_part.done",
                    SummaryPartEvent {
                        item_id: &item.id,
                        output_index: index,
                        summary_index: 0,
                        part: SummaryPart::new(text),
                    },
                );
            }
            ItemBody::FunctionCall {
                arguments,
                custom: true,
                ..
            } => {
                let input = custom_input(arguments);
                if !input.is_empty() {
                    emit(
                        seq,
                        out,
                        "response.custom_tool_call_input.delta",
                        CustomInputDelta {
                            item_id: &item.id,
                            output_index: index,
                            delta: &input,
                        },
                    );
                }
                emit(
                    seq,
                    out,
                    "response.custom_tool_call_input.done",
                    CustomInputDone {
                        item_id: &item.id,
                        output_index: index,
                        input: &input,
                    },
                );
            }
            ItemBody::FunctionCall {
                name, arguments, ..
            } => {
                emit(
                    seq,
                    out,
                    "response.function_call_arguments.done",
                    ArgumentsDone {
                        item_id: &item.id,
                        output_index: index,
                        name,
                        arguments,
                    },
                );
            }
            ItemBody::Message { .. } => {}
        }
        emit(
            seq,
            out,
            "response.output_item.done",
            ItemEvent {
                output_index: index,
                item,
            },
        );
    }

    /// Closes the open content part of the open message item, if any.
    fn close_part(&mut self, out: &mut Sink<'_>) {
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
        let content_index = parts.len() - 1;
        let part = &parts[content_index];
        let seq = &mut self.seq;
        match part.kind {
            PartKind::Text => emit(
                seq,
                out,
                "response.output_text.done",
                OutputTextDone {
                    item_id: id,
                    output_index: index,
                    content_index,
                    text: &part.text,
                    logprobs: [],
                },
            ),
            PartKind::Refusal => emit(
                seq,
                out,
                "response.refusal.done",
                RefusalDone {
                    item_id: id,
                    output_index: index,
                    content_index,
                    refusal: &part.text,
                },
            ),
        }
        emit(
            seq,
            out,
            "response.content_part.done",
            PartEvent {
                item_id: id,
                output_index: index,
                content_index,
                part,
            },
        );
    }

    fn reasoning_delta(&mut self, delta: &str, out: &mut Sink<'_>) {
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
                    signature: None,
                },
                out,
            );
            let index = self.items.len() - 1;
            emit(
                &mut self.seq,
                out,
                "response.reasoning_summary_part.added",
                SummaryPartEvent {
                    item_id: &self.items[index].id,
                    output_index: index,
                    summary_index: 0,
                    part: SummaryPart::new(""),
                },
            );
        }
        let index = self.items.len() - 1;
        let item = &mut self.items[index];
        if let ItemBody::Reasoning { text, .. } = &mut item.body {
            text.push_str(delta);
        }
        emit(
            &mut self.seq,
            out,
            "response.reasoning_summary_text.delta",
            SummaryTextDelta {
                item_id: &item.id,
                output_index: index,
                summary_index: 0,
                delta,
            },
        );
    }

    fn message_delta(&mut self, kind: PartKind, delta: &str, out: &mut Sink<'_>) {
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
            if let ItemBody::Message { parts, part_open } = &mut item.body {
                parts.push(Part {
                    kind,
                    text: String::new(),
                });
                *part_open = true;
                let content_index = parts.len() - 1;
                // The part as added: still empty.
                emit(
                    &mut self.seq,
                    out,
                    "response.content_part.added",
                    PartEvent {
                        item_id: &item.id,
                        output_index: index,
                        content_index,
                        part: &parts[content_index],
                    },
                );
            }
        }
        let item = &mut self.items[index];
        let mut content_index = 0;
        if let ItemBody::Message { parts, .. } = &mut item.body {
            content_index = parts.len() - 1;
            parts[content_index].text.push_str(delta);
        }
        let item_id = item.id.as_str();
        match kind {
            PartKind::Text => emit(
                &mut self.seq,
                out,
                "response.output_text.delta",
                OutputTextDelta {
                    item_id,
                    output_index: index,
                    content_index,
                    delta,
                    logprobs: [],
                },
            ),
            PartKind::Refusal => emit(
                &mut self.seq,
                out,
                "response.refusal.delta",
                RefusalDelta {
                    item_id,
                    output_index: index,
                    content_index,
                    delta,
                },
            ),
        }
    }

    fn tool_call_delta(&mut self, pos: u64, call: &CallParts<'_>, out: &mut Sink<'_>) {
        let chat_index = call.index.unwrap_or(pos);
        let (id, name, args) = (call.id, call.name, call.arguments);

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
                let restored = name.map(|n| restore(&self.ctx.echo.tool_names, n));
                if let ItemBody::FunctionCall {
                    name: n,
                    namespace,
                    custom,
                    ..
                } = &mut self.items[idx].body
                {
                    if n.is_empty() {
                        if let Some((name, ns, is_custom)) = restored {
                            *n = name;
                            *namespace = ns;
                            *custom = is_custom;
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
                let (name, namespace, custom) =
                    restore(&self.ctx.echo.tool_names, name.unwrap_or(""));
                self.open_item(
                    if custom { "ctc" } else { "fc" },
                    ItemBody::FunctionCall {
                        call_id,
                        name,
                        arguments: String::new(),
                        namespace,
                        custom,
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
        if let ItemBody::FunctionCall {
            arguments, custom, ..
        } = &mut item.body
        {
            arguments.push_str(args);
            // A custom call's input is written whole when the call closes.
            if *custom {
                return;
            }
        }
        emit(
            &mut self.seq,
            out,
            "response.function_call_arguments.delta",
            ArgumentsDelta {
                item_id: &item.id,
                output_index: index,
                delta: args,
            },
        );
    }
}

/// A chat tool name as the client's tools spell it: (name, namespace, whether a custom tool).
fn restore(names: &ToolNames, chat_name: &str) -> (String, Option<String>, bool) {
    match names.origin(chat_name) {
        Some(ToolOrigin::Namespaced { namespace, name }) => {
            (name.clone(), Some(namespace.clone()), false)
        }
        Some(ToolOrigin::Custom) => (chat_name.to_owned(), None, true),
        None => (chat_name.to_owned(), None, false),
    }
}

fn non_empty(v: Option<&Value>) -> Option<&str> {
    v.and_then(Value::as_str).filter(|s| !s.is_empty())
}

/// A chat `usage` object → a Responses `usage` object. Cached tokens come from
/// `prompt_tokens_details.cached_tokens` or DeepSeek's `prompt_cache_hit_tokens`; the gateway's
/// `cost` (a decimal string) is carried over.
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
    let mut out = json!({
        "input_tokens": input,
        "input_tokens_details": {"cached_tokens": cached},
        "output_tokens": output,
        "output_tokens_details": {"reasoning_tokens": reasoning},
        "total_tokens": total,
    });
    if let Some(cost) = usage.get("cost").filter(|c| c.is_string()) {
        out["cost"] = cost.clone();
    }
    out
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
