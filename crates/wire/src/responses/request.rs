//! Responses request → Chat Completions request, and the chat conversation to store per response
//! so that the next turn's `previous_response_id` can be expanded back into chat `messages`.
//!
//! Rules (Responses field → chat field):
//! - `instructions` → a leading `system` message (not carried over a `previous_response_id`
//!   chain, as OpenAI documents: [`conversation_after`] drops it from what is stored);
//! - `input` string → one `user` message; `input` items: messages (`input_text`/`output_text`/
//!   `refusal`/`input_image`/`input_file`/`input_audio` parts or plain string content, role
//!   `developer` → `system`), `function_call` → assistant `tool_calls` (consecutive calls merge into
//!   one assistant message), `function_call_output` → `tool` message, `reasoning` → the summary text
//!   as `reasoning_content` on the next assistant message that carries `tool_calls` (DeepSeek
//!   thinking mode needs it back; the provider adapter strips it for upstreams that reject it);
//! - `tools`: see `tools.rs` (functions nested, namespaces flattened, custom tools as one-string
//!   functions, hosted tools dropped and reported in [`ChatPlan::dropped`]);
//! - `tool_choice`, `max_output_tokens` → `max_completion_tokens`, `temperature`, `top_p`,
//!   `reasoning.effort` → `reasoning_effort`, `parallel_tool_calls`, `user`, `safety_identifier`,
//!   `prompt_cache_key`, `service_tier`, `text.format` → `response_format`, `text.verbosity` →
//!   `verbosity`; `stream: true` adds `stream_options.include_usage = true`;
//! - gateway-side fields (`store`, `metadata`, `client_metadata`, `previous_response_id`,
//!   `include`, `truncation`, `max_tool_calls`, `top_logprobs`, `stream_options`) are consumed,
//!   not forwarded; any field this module does not know is forwarded unchanged (the callers'
//!   `extra_body`);
//! - tolerant in: input items and content parts a chat route cannot carry (`web_search_call`,
//!   an encrypted reasoning item's ciphertext, an image in a tool output, …) are skipped and
//!   reported in [`ChatPlan::dropped`] rather than refused, where the conversation's meaning
//!   survives; `function_call` items with a `namespace` and `custom_tool_call` items (and their
//!   outputs) become chat tool calls named as the tools were.

use std::fmt;

use serde_json::{json, Map, Value};

use super::tools::{convert_tool_choice, convert_tools, flat_name, ToolNames};
use super::RequestError;

impl fmt::Display for RequestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (param: {})", self.message, self.param)
    }
}

impl std::error::Error for RequestError {}

/// The request fields a Response object echoes back, with OpenAI's defaults filled in.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestEcho {
    /// `instructions` as sent (string, array or null).
    pub instructions: Value,
    /// `metadata` as sent, `{}` by default.
    pub metadata: Value,
    /// The Responses-shaped (flat) `tools` as sent, `[]` by default.
    pub tools: Value,
    pub tool_choice: Value,
    pub parallel_tool_calls: bool,
    pub temperature: Value,
    pub top_p: Value,
    pub max_output_tokens: Option<u64>,
    pub max_tool_calls: Value,
    pub previous_response_id: Option<String>,
    /// `{"effort", "summary"}`.
    pub reasoning: Value,
    /// `{"format": {...}, "verbosity"}`.
    pub text: Value,
    pub truncation: Value,
    pub store: bool,
    pub user: Value,
    pub safety_identifier: Value,
    pub prompt_cache_key: Value,
    pub prompt_cache_retention: Value,
    pub service_tier: Value,
    pub top_logprobs: Value,
    /// The chat tool names that stand for namespaced or custom tools, to name their calls back.
    pub tool_names: ToolNames,
}

impl Default for RequestEcho {
    fn default() -> Self {
        RequestEcho {
            instructions: Value::Null,
            metadata: json!({}),
            tools: json!([]),
            tool_choice: json!("auto"),
            parallel_tool_calls: true,
            temperature: json!(1.0),
            top_p: json!(1.0),
            max_output_tokens: None,
            max_tool_calls: Value::Null,
            previous_response_id: None,
            reasoning: json!({"effort": null, "summary": null}),
            text: json!({"format": {"type": "text"}, "verbosity": "medium"}),
            truncation: json!("disabled"),
            store: true,
            user: Value::Null,
            safety_identifier: Value::Null,
            prompt_cache_key: Value::Null,
            prompt_cache_retention: Value::Null,
            service_tier: json!("default"),
            top_logprobs: json!(0),
            tool_names: ToolNames::default(),
        }
    }
}

/// What [`request_to_chat`] hands the gateway: the chat request body to send upstream plus the
/// Responses-level settings the gateway acts on itself.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatPlan {
    /// An OpenAI Chat Completions request body (`model`, `messages`, …).
    pub body: Value,
    pub model: String,
    pub stream: bool,
    /// Whether to keep the response for `GET /v1/responses/{id}` and `previous_response_id`.
    pub store: bool,
    pub previous_response_id: Option<String>,
    /// The caller's `metadata` object (`{}` when absent); never sent upstream.
    pub metadata: Value,
    pub max_output_tokens: Option<u64>,
    /// Everything the Response object echoes; feed it to `ResponseContext::new`.
    pub echo: RequestEcho,
    /// What the chat route cannot carry and was left out, one note each, in request order:
    /// `tools[8]:web_search`, `input[3]:web_search_call`, `input[1].content[2]:input_video`.
    pub dropped: Vec<String>,
    /// The first construct only a route that serves `/responses` itself can carry (a
    /// `conversation`, a stored `prompt`, an `item_reference`): such a route gets the body as it
    /// came; for any other route the request is refused with this error.
    pub needs_native: Option<RequestError>,
}

impl ChatPlan {
    /// The chat `messages` of [`ChatPlan::body`], for [`conversation_after`].
    pub fn messages(&self) -> &[Value] {
        self.body
            .get("messages")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }
}

/// Request fields this module consumes; every other top-level field is forwarded unchanged.
const CONSUMED: &[&str] = &[
    "model",
    "input",
    "instructions",
    "tools",
    "tool_choice",
    "max_output_tokens",
    "temperature",
    "top_p",
    "reasoning",
    "parallel_tool_calls",
    "user",
    "safety_identifier",
    "prompt_cache_key",
    "prompt_cache_retention",
    "service_tier",
    "stream",
    "stream_options",
    "store",
    "previous_response_id",
    "metadata",
    "client_metadata",
    "include",
    "truncation",
    "text",
    "background",
    "conversation",
    "prompt",
    "max_tool_calls",
    "top_logprobs",
];

/// Translates a Responses request into a Chat Completions request. `history` is the stored
/// conversation (see [`conversation_after`]) of `previous_response_id`, already loaded by the
/// gateway; it is placed after the `instructions` system message and before the new `input`.
pub fn request_to_chat(req: &Value, history: &[Value]) -> Result<ChatPlan, RequestError> {
    let obj = req
        .as_object()
        .ok_or_else(|| RequestError::new("body", "The request body must be a JSON object."))?;

    let model = match obj.get("model") {
        Some(Value::String(m)) if !m.is_empty() => m.clone(),
        Some(Value::String(_)) | None | Some(Value::Null) => {
            return Err(RequestError::new(
                "model",
                "Missing required parameter: 'model'.",
            ))
        }
        Some(_) => return Err(RequestError::new("model", "'model' must be a string.")),
    };

    let stream = opt_bool(obj, "stream")?.unwrap_or(false);
    let store = opt_bool(obj, "store")?.unwrap_or(true);
    let parallel_tool_calls = opt_bool(obj, "parallel_tool_calls")?;
    let previous_response_id = match obj.get("previous_response_id") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
        Some(_) => {
            return Err(RequestError::new(
                "previous_response_id",
                "'previous_response_id' must be a non-empty string.",
            ))
        }
    };
    let metadata = match obj.get("metadata") {
        None | Some(Value::Null) => json!({}),
        Some(Value::Object(m)) => {
            if let Some((k, _)) = m.iter().find(|(_, v)| !v.is_string()) {
                return Err(RequestError::new(
                    format!("metadata.{k}"),
                    "metadata values must be strings.",
                ));
            }
            Value::Object(m.clone())
        }
        Some(_) => {
            return Err(RequestError::new(
                "metadata",
                "'metadata' must be an object of strings.",
            ))
        }
    };
    let max_output_tokens = match obj.get("max_output_tokens") {
        None | Some(Value::Null) => None,
        Some(v) => match v.as_u64() {
            Some(n) if n >= 1 => Some(n),
            _ => {
                return Err(RequestError::new(
                    "max_output_tokens",
                    "'max_output_tokens' must be a positive integer.",
                ))
            }
        },
    };
    for key in ["temperature", "top_p"] {
        if let Some(v) = obj.get(key) {
            if !(v.is_null() || v.is_number()) {
                return Err(RequestError::new(key, format!("'{key}' must be a number.")));
            }
        }
    }
    // `background` is the gateway's to serve (`relay::replay`); it only has to be a boolean,
    // and a background response must be stored.
    if opt_bool(obj, "background")? == Some(true) && opt_bool(obj, "store")? == Some(false) {
        return Err(RequestError::new(
            "background",
            "A background response must be stored: send 'store': true (the default) with 'background': true.",
        ));
    }
    let mut needs_native = None;
    for key in ["conversation", "prompt"] {
        if needs_native.is_none() && obj.get(key).is_some_and(|v| !v.is_null()) {
            needs_native = Some(RequestError::new(
                key,
                format!("'{key}' needs a route that serves the Responses API itself, and this model has none; use 'input' and 'previous_response_id'."),
            ));
        }
    }

    // Messages: instructions, then the stored history, then the new input.
    let mut messages: Vec<Value> = Vec::new();
    let mut dropped: Vec<String> = Vec::new();
    let instructions = obj.get("instructions").cloned().unwrap_or(Value::Null);
    match &instructions {
        Value::Null => {}
        Value::String(s) => {
            if !s.is_empty() {
                messages.push(json!({"role": "system", "content": s}));
            }
        }
        Value::Array(items) => {
            let mut conv = InputConverter::new("instructions");
            for (i, item) in items.iter().enumerate() {
                conv.item(i, item)?;
            }
            dropped.append(&mut conv.dropped);
            needs_native = needs_native.or(conv.needs_native.take());
            messages.extend(conv.finish());
        }
        _ => {
            return Err(RequestError::new(
                "instructions",
                "'instructions' must be a string or an array of input items.",
            ))
        }
    }
    messages.extend(history.iter().cloned());
    match obj.get("input") {
        None | Some(Value::Null) => {
            if previous_response_id.is_none() && needs_native.is_none() {
                return Err(RequestError::new(
                    "input",
                    "Missing required parameter: 'input'.",
                ));
            }
        }
        Some(Value::String(s)) => messages.push(json!({"role": "user", "content": s})),
        Some(Value::Array(items)) => {
            let mut conv = InputConverter::new("input");
            for (i, item) in items.iter().enumerate() {
                conv.item(i, item)?;
            }
            dropped.append(&mut conv.dropped);
            needs_native = needs_native.or(conv.needs_native.take());
            messages.extend(conv.finish());
        }
        Some(_) => {
            return Err(RequestError::new(
                "input",
                "'input' must be a string or an array of input items.",
            ))
        }
    }
    if !messages
        .iter()
        .any(|m| m.get("role").and_then(Value::as_str) != Some("system"))
    {
        if needs_native.is_some() {
            // Only a native route serves it, with the body as it came; the chat form is read
            // for the hold and the meter alone.
            messages.push(json!({"role": "user", "content": ""}));
        } else {
            return Err(RequestError::new(
                "input",
                "'input' must contain at least one message.",
            ));
        }
    }

    let mut body = Map::new();
    body.insert("model".into(), Value::String(model.clone()));
    body.insert("messages".into(), Value::Array(messages));

    let mut tool_names = ToolNames::default();
    let tools_echo = match obj.get("tools") {
        None | Some(Value::Null) => json!([]),
        Some(Value::Array(tools)) => {
            let converted = convert_tools(tools, &mut dropped)?;
            if !converted.tools.is_empty() {
                body.insert("tools".into(), Value::Array(converted.tools));
            }
            tool_names = converted.names;
            Value::Array(tools.clone())
        }
        Some(_) => return Err(RequestError::new("tools", "'tools' must be an array.")),
    };
    let tool_choice_echo = match obj.get("tool_choice") {
        None | Some(Value::Null) => json!("auto"),
        Some(tc) => {
            let choice = convert_tool_choice(tc, &mut dropped)?;
            // Chat refuses a tool_choice without tools (every tool hosted and dropped, or none
            // sent): without tools there is nothing to choose.
            if body.contains_key("tools") {
                body.insert("tool_choice".into(), choice);
            }
            tc.clone()
        }
    };
    if let Some(p) = parallel_tool_calls.filter(|_| body.contains_key("tools")) {
        body.insert("parallel_tool_calls".into(), Value::Bool(p));
    }
    if let Some(n) = max_output_tokens {
        body.insert("max_completion_tokens".into(), json!(n));
    }
    for key in ["temperature", "top_p"] {
        if let Some(v) = obj.get(key).filter(|v| !v.is_null()) {
            body.insert(key.into(), v.clone());
        }
    }

    let mut reasoning_echo = json!({"effort": null, "summary": null});
    match obj.get("reasoning") {
        None | Some(Value::Null) => {}
        Some(Value::Object(r)) => {
            if let Some(effort) = r.get("effort").filter(|v| !v.is_null()) {
                if !effort.is_string() {
                    return Err(RequestError::new(
                        "reasoning.effort",
                        "'reasoning.effort' must be a string.",
                    ));
                }
                body.insert("reasoning_effort".into(), effort.clone());
                reasoning_echo["effort"] = effort.clone();
            }
            // Both the current `summary` and the deprecated `generate_summary` are echoed.
            if let Some(summary) = r
                .get("summary")
                .or_else(|| r.get("generate_summary"))
                .filter(|v| !v.is_null())
            {
                reasoning_echo["summary"] = summary.clone();
            }
        }
        Some(_) => {
            return Err(RequestError::new(
                "reasoning",
                "'reasoning' must be an object.",
            ))
        }
    }

    let mut text_echo = json!({"format": {"type": "text"}, "verbosity": "medium"});
    match obj.get("text") {
        None | Some(Value::Null) => {}
        Some(Value::Object(t)) => {
            if let Some(format) = t.get("format").filter(|v| !v.is_null()) {
                if let Some(rf) = convert_text_format(format)? {
                    body.insert("response_format".into(), rf);
                }
                text_echo["format"] = format.clone();
            }
            if let Some(verbosity) = t.get("verbosity").filter(|v| !v.is_null()) {
                body.insert("verbosity".into(), verbosity.clone());
                text_echo["verbosity"] = verbosity.clone();
            }
        }
        Some(_) => return Err(RequestError::new("text", "'text' must be an object.")),
    }

    for key in [
        "user",
        "safety_identifier",
        "prompt_cache_key",
        "prompt_cache_retention",
        "service_tier",
    ] {
        if let Some(v) = obj.get(key).filter(|v| !v.is_null()) {
            body.insert(key.into(), v.clone());
        }
    }

    // The callers' extra fields (e.g. DeepSeek's `thinking`) go upstream unchanged.
    for (k, v) in obj {
        if !CONSUMED.contains(&k.as_str()) && !body.contains_key(k) {
            body.insert(k.clone(), v.clone());
        }
    }

    body.insert("stream".into(), Value::Bool(stream));
    if stream {
        body.insert("stream_options".into(), json!({"include_usage": true}));
    }

    let echo = RequestEcho {
        instructions,
        metadata: metadata.clone(),
        tools: tools_echo,
        tool_choice: tool_choice_echo,
        parallel_tool_calls: parallel_tool_calls.unwrap_or(true),
        temperature: obj
            .get("temperature")
            .filter(|v| !v.is_null())
            .cloned()
            .unwrap_or(json!(1.0)),
        top_p: obj
            .get("top_p")
            .filter(|v| !v.is_null())
            .cloned()
            .unwrap_or(json!(1.0)),
        max_output_tokens,
        max_tool_calls: obj.get("max_tool_calls").cloned().unwrap_or(Value::Null),
        previous_response_id: previous_response_id.clone(),
        reasoning: reasoning_echo,
        text: text_echo,
        truncation: obj
            .get("truncation")
            .filter(|v| !v.is_null())
            .cloned()
            .unwrap_or(json!("disabled")),
        store,
        user: obj.get("user").cloned().unwrap_or(Value::Null),
        safety_identifier: obj.get("safety_identifier").cloned().unwrap_or(Value::Null),
        prompt_cache_key: obj.get("prompt_cache_key").cloned().unwrap_or(Value::Null),
        prompt_cache_retention: obj
            .get("prompt_cache_retention")
            .cloned()
            .unwrap_or(Value::Null),
        service_tier: obj
            .get("service_tier")
            .filter(|v| !v.is_null())
            .cloned()
            .unwrap_or(json!("default")),
        top_logprobs: obj
            .get("top_logprobs")
            .filter(|v| !v.is_null())
            .cloned()
            .unwrap_or(json!(0)),
        tool_names,
    };

    Ok(ChatPlan {
        body: Value::Object(body),
        model,
        stream,
        store,
        previous_response_id,
        metadata,
        max_output_tokens,
        echo,
        dropped,
        needs_native,
    })
}

/// The chat conversation to store for `response`, so that a later request with
/// `previous_response_id = response.id` can pass it to [`request_to_chat`] as `history`.
///
/// `chat_messages` are the `messages` sent upstream for this response ([`ChatPlan::messages`]).
/// The result is those messages without the leading `instructions` system message (OpenAI does not
/// carry instructions over a chain), followed by the response's output as chat messages: one
/// assistant message holding the text (or `refusal`) and any `tool_calls`, with the reasoning
/// summary as `reasoning_content` when tool calls are present.
pub fn conversation_after(chat_messages: &[Value], response: &Value) -> Vec<Value> {
    let mut messages = chat_messages.to_vec();
    if let Some(instr) = response.get("instructions").filter(|v| !v.is_null()) {
        if let Some(first) = messages.first() {
            let is_instructions = first.get("role").and_then(Value::as_str) == Some("system")
                && match instr {
                    Value::String(s) => first.get("content") == Some(&Value::String(s.clone())),
                    _ => true,
                };
            if is_instructions {
                match instr {
                    // Array instructions may have produced several leading system messages.
                    Value::Array(items) => {
                        let n = items.len().min(messages.len());
                        let leading = messages[..n]
                            .iter()
                            .take_while(|m| m.get("role").and_then(Value::as_str) == Some("system"))
                            .count();
                        messages.drain(..leading);
                    }
                    _ => {
                        messages.remove(0);
                    }
                }
            }
        }
    }

    let mut conv = InputConverter::new("output");
    if let Some(output) = response.get("output").and_then(Value::as_array) {
        for (i, item) in output.iter().enumerate() {
            // Output items are always convertible input items; an odd one is skipped, not fatal.
            let _ = conv.item(i, item);
        }
    }
    messages.extend(conv.finish());
    messages
}

fn opt_bool(obj: &Map<String, Value>, key: &str) -> Result<Option<bool>, RequestError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(RequestError::new(
            key,
            format!("'{key}' must be a boolean."),
        )),
    }
}

/// Converts Responses input items into chat messages, merging consecutive function calls into
/// one assistant message and attaching passed-back reasoning to the assistant turn it precedes.
struct InputConverter {
    param: &'static str,
    messages: Vec<Value>,
    /// Reasoning summary text waiting for the next assistant message.
    pending_reasoning: Option<String>,
    /// The signature of `pending_reasoning` when it is an Anthropic route's signed thinking the
    /// gateway carried in `encrypted_content` (`reasoning_carrier`).
    pending_signature: Option<String>,
    /// Whether the last message is an assistant message that later function calls may join.
    assistant_open: bool,
    /// What was skipped, one note each (see [`ChatPlan::dropped`]).
    dropped: Vec<String>,
    /// See [`ChatPlan::needs_native`].
    needs_native: Option<RequestError>,
}

impl InputConverter {
    fn new(param: &'static str) -> Self {
        InputConverter {
            param,
            messages: Vec::new(),
            pending_reasoning: None,
            pending_signature: None,
            needs_native: None,
            assistant_open: false,
            dropped: Vec::new(),
        }
    }

    fn item(&mut self, i: usize, item: &Value) -> Result<(), RequestError> {
        let at = format!("{}[{i}]", self.param);
        let obj = item.as_object().ok_or_else(|| {
            RequestError::new(at.clone(), "Each input item must be a JSON object.")
        })?;
        let kind = obj.get("type").and_then(Value::as_str);
        match kind {
            None | Some("message") => self.message(&at, obj),
            Some("function_call") => {
                let call_id = str_field(obj, "call_id", &at)?;
                let name = str_field(obj, "name", &at)?;
                let name = match obj.get("namespace").and_then(Value::as_str) {
                    Some(ns) if !ns.is_empty() => flat_name(ns, &name),
                    _ => name,
                };
                let arguments = match obj.get("arguments") {
                    Some(Value::String(s)) => s.clone(),
                    None | Some(Value::Null) => String::new(),
                    Some(other) => other.to_string(),
                };
                self.tool_call(call_id, name, arguments);
                Ok(())
            }
            Some("custom_tool_call") => {
                let call_id = str_field(obj, "call_id", &at)?;
                let name = str_field(obj, "name", &at)?;
                let input = obj.get("input").and_then(Value::as_str).unwrap_or_default();
                self.tool_call(call_id, name, json!({"input": input}).to_string());
                Ok(())
            }
            Some("function_call_output") | Some("custom_tool_call_output") => {
                let call_id = str_field(obj, "call_id", &at)?;
                let content = match obj.get("output") {
                    Some(Value::String(s)) => s.clone(),
                    Some(Value::Array(parts)) => {
                        let mut text = String::new();
                        for (j, part) in parts.iter().enumerate() {
                            match part.get("type").and_then(Value::as_str) {
                                Some("input_text") | Some("output_text") | Some("text") => {
                                    text.push_str(
                                        part.get("text").and_then(Value::as_str).unwrap_or(""),
                                    );
                                }
                                other => self.dropped.push(format!(
                                    "{at}.output[{j}]:{}",
                                    other.unwrap_or("unknown")
                                )),
                            }
                        }
                        text
                    }
                    None | Some(Value::Null) => String::new(),
                    Some(other) => other.to_string(),
                };
                self.messages
                    .push(json!({"role": "tool", "tool_call_id": call_id, "content": content}));
                self.assistant_open = false;
                Ok(())
            }
            Some("reasoning") => {
                let mut text = String::new();
                let parts = obj
                    .get("summary")
                    .and_then(Value::as_array)
                    .into_iter()
                    .chain(obj.get("content").and_then(Value::as_array));
                for part in parts.flatten() {
                    if let Some(t) = part.get("text").and_then(Value::as_str) {
                        if !text.is_empty() && !t.is_empty() {
                            text.push_str("\n\n");
                        }
                        text.push_str(t);
                    }
                }
                let carried = obj
                    .get("encrypted_content")
                    .and_then(Value::as_str)
                    .and_then(crate::reasoning_carrier::unpack);
                if let Some((thinking, signature)) = carried {
                    // An Anthropic route's signed thinking the gateway carried: it goes back.
                    text = thinking;
                    self.pending_signature = Some(signature);
                } else if obj.get("encrypted_content").is_some_and(|v| !v.is_null()) {
                    // Another provider's ciphertext only means something to the one that made it.
                    self.dropped
                        .push(format!("{at}:reasoning.encrypted_content"));
                }
                if !text.is_empty() {
                    self.pending_reasoning = Some(text);
                }
                Ok(())
            }
            Some("item_reference") => {
                // Only the upstream that stored the item can resolve it.
                if self.needs_native.is_none() {
                    self.needs_native = Some(RequestError::new(
                        format!("{at}.type"),
                        "An item reference needs a route that serves the Responses API itself, and this model has none; send the item itself or use previous_response_id.",
                    ));
                }
                Ok(())
            }
            // Hosted tools' calls and their results (web_search_call, file_search_call, …), and
            // item types this gateway does not know: the conversation reads the same without them
            // on a route where those tools do not exist.
            Some(other) => {
                self.dropped.push(format!("{at}:{other}"));
                Ok(())
            }
        }
    }

    /// One tool call of the assistant turn: joins the open assistant message, or opens one.
    fn tool_call(&mut self, call_id: String, name: String, arguments: String) {
        let call = json!({
            "id": call_id,
            "type": "function",
            "function": {"name": name, "arguments": arguments},
        });
        if !self.assistant_open {
            self.messages
                .push(json!({"role": "assistant", "content": null}));
            self.assistant_open = true;
        }
        if let Some(Value::Object(last)) = self.messages.last_mut() {
            match last.get_mut("tool_calls") {
                Some(Value::Array(calls)) => calls.push(call),
                _ => {
                    last.insert("tool_calls".into(), Value::Array(vec![call]));
                }
            }
            if let Some(r) = self.pending_reasoning.take() {
                last.insert("reasoning_content".into(), Value::String(r));
            }
            if let Some(sig) = self.pending_signature.take() {
                last.insert("reasoning_signature".into(), Value::String(sig));
            }
        }
    }

    fn message(&mut self, at: &str, obj: &Map<String, Value>) -> Result<(), RequestError> {
        let role = match obj.get("role").and_then(Value::as_str) {
            Some("user") => "user",
            Some("assistant") => "assistant",
            Some("system") | Some("developer") => "system",
            Some(other) => {
                return Err(RequestError::new(
                    format!("{at}.role"),
                    format!(
                        "Invalid role '{other}': expected user, assistant, system or developer."
                    ),
                ))
            }
            None => {
                return Err(RequestError::new(
                    format!("{at}.role"),
                    "Missing required parameter: 'role'.",
                ))
            }
        };
        let mut msg = Map::new();
        msg.insert("role".into(), Value::String(role.into()));
        match obj.get("content") {
            Some(Value::String(s)) => {
                msg.insert("content".into(), Value::String(s.clone()));
            }
            Some(Value::Array(parts)) => {
                let mut chat_parts = Vec::with_capacity(parts.len());
                let mut refusal = String::new();
                for (j, part) in parts.iter().enumerate() {
                    let pat = format!("{at}.content[{j}]");
                    match convert_part(&pat, part, &mut refusal)? {
                        Part::Chat(p) => chat_parts.push(p),
                        Part::Refusal => {}
                        Part::Unknown(kind) => self.dropped.push(format!("{pat}:{kind}")),
                    }
                }
                let all_text = chat_parts
                    .iter()
                    .all(|p| p.get("type").and_then(Value::as_str) == Some("text"));
                let content = if role != "user" || all_text {
                    // Assistant and system content: text only, joined; a single text part of a
                    // user message becomes a plain string, which every upstream accepts.
                    if role != "user" && !all_text {
                        return Err(RequestError::new(
                            format!("{at}.content"),
                            format!("Only text content is supported in '{role}' messages."),
                        ));
                    }
                    if role == "user" && chat_parts.len() > 1 {
                        Value::Array(chat_parts)
                    } else {
                        let joined: String = chat_parts
                            .iter()
                            .filter_map(|p| p.get("text").and_then(Value::as_str))
                            .collect();
                        if joined.is_empty() && role == "assistant" && !refusal.is_empty() {
                            Value::Null
                        } else {
                            Value::String(joined)
                        }
                    }
                } else {
                    Value::Array(chat_parts)
                };
                msg.insert("content".into(), content);
                if !refusal.is_empty() {
                    msg.insert("refusal".into(), Value::String(refusal));
                }
            }
            None | Some(Value::Null) => {
                return Err(RequestError::new(
                    format!("{at}.content"),
                    "Missing required parameter: 'content'.",
                ))
            }
            Some(_) => {
                return Err(RequestError::new(
                    format!("{at}.content"),
                    "'content' must be a string or an array of content parts.",
                ))
            }
        }
        if let Some(name) = obj.get("name").filter(|v| v.is_string()) {
            msg.insert("name".into(), name.clone());
        }
        // Pending reasoning survives an assistant message: it is attached only if this turn goes
        // on to call tools (see `item`).
        self.assistant_open = role == "assistant";
        if role != "assistant" {
            self.pending_reasoning = None;
            self.pending_signature = None;
        }
        self.messages.push(Value::Object(msg));
        Ok(())
    }

    fn finish(self) -> Vec<Value> {
        self.messages
    }
}

/// What a Responses content part becomes.
enum Part {
    Chat(Value),
    /// Collected into the message's `refusal`.
    Refusal,
    /// A part type this gateway does not know, skipped: its type.
    Unknown(String),
}

/// One Responses content part → one chat content part.
fn convert_part(at: &str, part: &Value, refusal: &mut String) -> Result<Part, RequestError> {
    let kind = part.get("type").and_then(Value::as_str).unwrap_or("");
    match kind {
        "input_text" | "output_text" | "text" | "summary_text" | "reasoning_text" => {
            let text = part.get("text").and_then(Value::as_str).ok_or_else(|| {
                RequestError::new(format!("{at}.text"), "Missing required parameter: 'text'.")
            })?;
            Ok(Part::Chat(json!({"type": "text", "text": text})))
        }
        "refusal" => {
            refusal.push_str(part.get("refusal").and_then(Value::as_str).unwrap_or(""));
            Ok(Part::Refusal)
        }
        "input_image" => {
            let url = match part.get("image_url") {
                Some(Value::String(u)) => u.clone(),
                // Tolerate the chat shape `{"url": …}` too.
                Some(Value::Object(o)) => o
                    .get("url")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
                _ => String::new(),
            };
            if url.is_empty() {
                let param = if part.get("file_id").is_some() {
                    format!("{at}.file_id")
                } else {
                    format!("{at}.image_url")
                };
                return Err(RequestError::new(
                    param,
                    "input_image needs an 'image_url' (an https URL or a data URL); file_id references are not supported by this gateway.",
                ));
            }
            let mut image = Map::new();
            image.insert("url".into(), Value::String(url));
            if let Some(d) = part.get("detail").filter(|v| v.is_string()) {
                image.insert("detail".into(), d.clone());
            }
            Ok(Part::Chat(
                json!({"type": "image_url", "image_url": Value::Object(image)}),
            ))
        }
        "input_file" => {
            if part.get("file_url").is_some_and(|v| !v.is_null()) {
                return Err(RequestError::new(
                    format!("{at}.file_url"),
                    "input_file with 'file_url' is not supported by this gateway; send 'file_data'.",
                ));
            }
            let mut file = Map::new();
            for key in ["file_data", "file_id", "filename"] {
                if let Some(v) = part.get(key).filter(|v| !v.is_null()) {
                    file.insert(key.into(), v.clone());
                }
            }
            Ok(Part::Chat(
                json!({"type": "file", "file": Value::Object(file)}),
            ))
        }
        "input_audio" => {
            let audio = part
                .get("input_audio")
                .cloned()
                .unwrap_or_else(|| json!({"data": part.get("data"), "format": part.get("format")}));
            Ok(Part::Chat(
                json!({"type": "input_audio", "input_audio": audio}),
            ))
        }
        "" => Err(RequestError::new(
            format!("{at}.type"),
            "Missing required parameter: 'type'.",
        )),
        other => Ok(Part::Unknown(other.to_owned())),
    }
}

fn str_field(obj: &Map<String, Value>, key: &str, at: &str) -> Result<String, RequestError> {
    match obj.get(key) {
        Some(Value::String(s)) => Ok(s.clone()),
        _ => Err(RequestError::new(
            format!("{at}.{key}"),
            format!("Missing required parameter: '{key}'."),
        )),
    }
}

/// `text.format` → chat `response_format` (`None` for plain text).
fn convert_text_format(format: &Value) -> Result<Option<Value>, RequestError> {
    match format.get("type").and_then(Value::as_str) {
        Some("text") => Ok(None),
        Some("json_object") => Ok(Some(json!({"type": "json_object"}))),
        Some("json_schema") => {
            let name = format.get("name").and_then(Value::as_str).ok_or_else(|| {
                RequestError::new("text.format.name", "Missing required parameter: 'name'.")
            })?;
            let mut schema = Map::new();
            schema.insert("name".into(), Value::String(name.into()));
            for key in ["description", "schema", "strict"] {
                if let Some(v) = format.get(key).filter(|v| !v.is_null()) {
                    schema.insert(key.into(), v.clone());
                }
            }
            Ok(Some(
                json!({"type": "json_schema", "json_schema": Value::Object(schema)}),
            ))
        }
        _ => Err(RequestError::new(
            "text.format.type",
            "'text.format.type' must be 'text', 'json_object' or 'json_schema'.",
        )),
    }
}
