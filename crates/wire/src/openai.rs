//! OpenAI Chat Completions (and its DeepSeek variant): request validation, the borrowed view of a
//! streamed chunk that the relay reads on the hot path, and error bodies.
//!
//! Requests are kept as the JSON object the client sent, so fields this module does not know
//! survive the trip to the upstream untouched; validation only checks the fields it names.

use std::borrow::Cow;

use crate::compact_json;
use crate::finish::FinishReason;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

/// Why a request was refused: the offending parameter and a message for the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestError {
    pub param: Option<String>,
    pub message: String,
}

impl RequestError {
    pub fn new(param: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            param: Some(param.into()),
            message: message.into(),
        }
    }
}

impl std::fmt::Display for RequestError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for RequestError {}

const ROLES: &[&str] = &[
    "system",
    "developer",
    "user",
    "assistant",
    "tool",
    "function",
];

/// The one top-level request field never forwarded upstream (see [`ChatRequest::parse`]).
const NEVER_FORWARDED_FIELD: &str = "mock";

/// A validated Chat Completions request.
#[derive(Debug, Clone)]
pub struct ChatRequest {
    /// The body as sent, in its original key order, without the `mock` field.
    pub body: Map<String, Value>,
    pub model: String,
    pub stream: bool,
    /// The client asked for the extra usage chunk (`stream_options.include_usage`).
    pub include_usage: bool,
    /// `max_completion_tokens`, else `max_tokens`.
    pub max_tokens: Option<u64>,
    /// When this chat request is the translation of another client dialect's request (Anthropic
    /// Messages, Gemini, Responses): that request as the client sent it, which a route of the
    /// same dialect is sent instead of a translation back (model replaced), and whose answer
    /// passes through.
    pub native: Option<NativeBody>,
    /// The conversation the client says this request continues (its `x-session-id`), set by the
    /// gateway; routing keeps a conversation where its prompt cache is.
    pub session: Option<String>,
}

/// A client dialect the gateway can pass through to a route that speaks it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NativeDialect {
    /// Anthropic Messages (`POST /v1/messages`), native on Anthropic-dialect routes.
    Messages,
    /// Google's `generateContent` (`POST /v1beta/models/{model}:…`), native on Gemini routes.
    Gemini,
    /// OpenAI Responses (`POST /v1/responses`), native on routes whose provider serves it.
    Responses,
}

/// A client's own request body, kept beside its chat translation (see [`ChatRequest::native`]).
#[derive(Debug, Clone)]
pub struct NativeBody {
    pub dialect: NativeDialect,
    pub body: Value,
    /// What the chat translation of `body` left out because chat cannot express it (e.g.
    /// `tools.4:web_search`): a route of another dialect is served without these.
    pub dropped: Vec<String>,
    /// The body holds what only a route of its own dialect can carry: no other route is tried.
    pub native_only: bool,
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn expect<'v>(
    body: &'v Map<String, Value>,
    key: &str,
    ok: fn(&Value) -> bool,
    what: &str,
) -> Result<Option<&'v Value>, RequestError> {
    match body.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) if ok(v) => Ok(Some(v)),
        Some(v) => Err(RequestError::new(
            key,
            format!(
                "Invalid type for '{key}': expected {what}, but got {}.",
                type_name(v)
            ),
        )),
    }
}

fn parse_object(bytes: &[u8]) -> Result<Map<String, Value>, RequestError> {
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(body)) => Ok(body),
        Ok(other) => Err(RequestError {
            param: None,
            message: format!(
                "The request body must be a JSON object, but got {}.",
                type_name(&other)
            ),
        }),
        Err(e) => Err(RequestError {
            param: None,
            message: format!(
                "We could not parse the JSON body of your request ({e}). The body must be valid JSON."
            ),
        }),
    }
}

/// Reads `model` (required, a non-empty string).
pub fn required_model(body: &Map<String, Value>) -> Result<String, RequestError> {
    match body.get("model") {
        Some(Value::String(m)) if !m.is_empty() => Ok(m.clone()),
        None | Some(Value::Null) => Err(RequestError::new(
            "model",
            "You must provide a model parameter.",
        )),
        Some(v) => Err(RequestError::new(
            "model",
            format!(
                "Invalid type for 'model': expected a non-empty string, but got {}.",
                type_name(v)
            ),
        )),
    }
}

fn is_u64(v: &Value) -> bool {
    v.as_u64().is_some()
}

impl ChatRequest {
    /// Parses and validates a request body.
    pub fn parse(bytes: &[u8]) -> Result<ChatRequest, RequestError> {
        let mut body = parse_object(bytes)?;
        // Unknown fields are forwarded, except `mock`: it is how the fake provider (tests, the
        // embedded demo) takes per-request orders such as token counts, failures and pacing. A
        // caller must never steer an upstream, so it is dropped here, the one door every dialect
        // goes through (chat, the Anthropic translation and the Responses API all build their
        // upstream body from this `body`). `shift_remove` keeps the order of the other keys.
        body.shift_remove(NEVER_FORWARDED_FIELD);
        let model = required_model(&body)?;
        let messages = match body.get("messages") {
            Some(Value::Array(m)) if !m.is_empty() => m,
            Some(Value::Array(_)) => {
                return Err(RequestError::new(
                    "messages",
                    "'messages' must contain at least one message.",
                ))
            }
            None | Some(Value::Null) => {
                return Err(RequestError::new(
                    "messages",
                    "Missing required parameter: 'messages'.",
                ))
            }
            Some(v) => {
                return Err(RequestError::new(
                    "messages",
                    format!(
                        "Invalid type for 'messages': expected an array, but got {}.",
                        type_name(v)
                    ),
                ))
            }
        };
        for (i, m) in messages.iter().enumerate() {
            check_message(i, m)?;
        }
        let stream = expect(&body, "stream", Value::is_boolean, "a boolean")?
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let include_usage = match expect(&body, "stream_options", Value::is_object, "an object")? {
            Some(opts) => match opts.get("include_usage") {
                None | Some(Value::Null) => false,
                Some(Value::Bool(b)) => *b,
                Some(v) => {
                    return Err(RequestError::new(
                        "stream_options.include_usage",
                        format!(
                            "Invalid type for 'stream_options.include_usage': expected a boolean, but got {}.",
                            type_name(v)
                        ),
                    ))
                }
            },
            None => false,
        };
        let max_completion = expect(
            &body,
            "max_completion_tokens",
            is_u64,
            "a non-negative integer",
        )?
        .and_then(Value::as_u64);
        let max_tokens =
            expect(&body, "max_tokens", is_u64, "a non-negative integer")?.and_then(Value::as_u64);
        expect(&body, "temperature", Value::is_number, "a number")?;
        expect(&body, "top_p", Value::is_number, "a number")?;
        expect(&body, "n", is_u64, "a positive integer")?;
        expect(&body, "tools", Value::is_array, "an array")?;
        expect(
            &body,
            "tool_choice",
            |v| v.is_string() || v.is_object(),
            "a string or an object",
        )?;
        expect(
            &body,
            "stop",
            |v| v.is_string() || v.is_array(),
            "a string or an array of strings",
        )?;
        Ok(ChatRequest {
            model,
            stream,
            include_usage: stream && include_usage,
            max_tokens: max_completion.or(max_tokens),
            body,
            native: None,
            session: None,
        })
    }

    /// [`Self::upstream_body`] for a request translated from another client dialect, sent to an
    /// OpenAI-dialect route: strict in what it sends, it leaves out the gateway's own carriers
    /// that only other dialects read (`thinking`, and `reasoning_content`, `reasoning_signature`
    /// and `thinking_blocks` on messages), and `reasoning_effort` unless the route's model
    /// reasons (`reasoning`), so a model that does not think is never asked to.
    pub fn translated_upstream_body(&self, upstream_model: &str, reasoning: bool) -> Vec<u8> {
        let mut body = self.body.clone();
        body.remove("thinking");
        if !reasoning {
            body.remove("reasoning_effort");
        }
        if let Some(Value::Array(messages)) = body.get_mut("messages") {
            for m in messages.iter_mut().filter_map(Value::as_object_mut) {
                for k in [
                    "reasoning_content",
                    "reasoning_signature",
                    "thinking_blocks",
                ] {
                    m.remove(k);
                }
            }
        }
        // Built field by field: `..self.clone()` would copy the whole body a second time.
        let stripped = ChatRequest {
            body,
            model: self.model.clone(),
            stream: self.stream,
            include_usage: self.include_usage,
            max_tokens: self.max_tokens,
            native: None,
            session: None,
        };
        stripped.upstream_body(upstream_model)
    }

    /// The body to send upstream: the client's body with the upstream model name, and when
    /// streaming, `stream_options.include_usage` set so that the upstream reports usage.
    pub fn upstream_body(&self, upstream_model: &str) -> Vec<u8> {
        // Written straight from `body` (no clone of the prompt), as serde_json would write the
        // body with `model` replaced and, for a stream, `stream_options.include_usage` set: keys
        // that exist keep their place, new ones go last.
        let mut out = Vec::with_capacity(compact_json::size_hint_object(&self.body) + 64);
        out.push(b'{');
        let mut first = true;
        let mut key = |out: &mut Vec<u8>, k: &str| {
            if !std::mem::take(&mut first) {
                out.push(b',');
            }
            compact_json::write_str(out, k);
            out.push(b':');
        };
        for (k, v) in &self.body {
            key(&mut out, k);
            match (k.as_str(), v) {
                ("model", _) => compact_json::write_str(&mut out, upstream_model),
                ("stream_options", Value::Object(opts)) if self.stream => {
                    let mut opts = opts.clone();
                    opts.insert("include_usage".into(), Value::Bool(true));
                    compact_json::write_object(&mut out, &opts);
                }
                ("stream_options", _) if self.stream => {
                    out.extend_from_slice(br#"{"include_usage":true}"#);
                }
                _ => compact_json::write_value(&mut out, v),
            }
        }
        if !self.body.contains_key("model") {
            key(&mut out, "model");
            compact_json::write_str(&mut out, upstream_model);
        }
        if self.stream && !self.body.contains_key("stream_options") {
            key(&mut out, "stream_options");
            out.extend_from_slice(br#"{"include_usage":true}"#);
        }
        out.push(b'}');
        out
    }

    /// All the text of the prompt, for estimating its token count when the upstream reports none.
    pub fn prompt_text(&self) -> String {
        let mut text = String::new();
        if let Some(Value::Array(messages)) = self.body.get("messages") {
            for m in messages {
                collect_text(m.get("content").unwrap_or(&Value::Null), &mut text);
                text.push('\n');
            }
        }
        if let Some(tools) = self.body.get("tools") {
            text.push_str(&tools.to_string());
        }
        text
    }

    /// The number of messages, for the per-message overhead of a prompt estimate.
    pub fn message_count(&self) -> usize {
        self.body
            .get("messages")
            .and_then(Value::as_array)
            .map_or(0, Vec::len)
    }
}

fn collect_text(content: &Value, out: &mut String) {
    match content {
        Value::String(s) => out.push_str(s),
        Value::Array(parts) => {
            for p in parts {
                if let Some(t) = p.get("text").and_then(Value::as_str) {
                    out.push_str(t);
                    out.push(' ');
                }
            }
        }
        _ => {}
    }
}

fn check_message(i: usize, m: &Value) -> Result<(), RequestError> {
    let Some(obj) = m.as_object() else {
        return Err(RequestError::new(
            format!("messages[{i}]"),
            format!(
                "Invalid type for 'messages[{i}]': expected an object, but got {}.",
                type_name(m)
            ),
        ));
    };
    let role = match obj.get("role") {
        Some(Value::String(r)) if ROLES.contains(&r.as_str()) => r.as_str(),
        Some(Value::String(r)) => {
            return Err(RequestError::new(
                format!("messages[{i}].role"),
                format!(
                    "Invalid value for 'messages[{i}].role': '{r}'. Supported values are: {}.",
                    ROLES.join(", ")
                ),
            ))
        }
        None => {
            return Err(RequestError::new(
                format!("messages[{i}].role"),
                format!("Missing required parameter: 'messages[{i}].role'."),
            ))
        }
        Some(v) => {
            return Err(RequestError::new(
                format!("messages[{i}].role"),
                format!(
                    "Invalid type for 'messages[{i}].role': expected a string, but got {}.",
                    type_name(v)
                ),
            ))
        }
    };
    match obj.get("content") {
        Some(Value::String(_)) | Some(Value::Array(_)) => Ok(()),
        None | Some(Value::Null) if role == "assistant" => Ok(()),
        None => Err(RequestError::new(
            format!("messages[{i}].content"),
            format!("Missing required parameter: 'messages[{i}].content'."),
        )),
        Some(v) => Err(RequestError::new(
            format!("messages[{i}].content"),
            format!(
                "Invalid type for 'messages[{i}].content': expected a string or an array of content parts, but got {}.",
                type_name(v)
            ),
        )),
    }
}

/// What the relay reads from one streamed chunk, borrowed from its bytes: a string without
/// escapes is a slice of the chunk; only one with escapes (`\n`, `\"`, …) is copied.
#[derive(Debug, Deserialize, Default)]
pub struct ChunkView<'a> {
    #[serde(default, borrow, deserialize_with = "crate::borrowed::nullable_str")]
    pub id: Option<Cow<'a, str>>,
    #[serde(default, borrow, deserialize_with = "crate::borrowed::nullable_str")]
    pub model: Option<Cow<'a, str>>,
    #[serde(default)]
    pub created: Option<u64>,
    #[serde(default, borrow)]
    pub choices: Vec<ChoiceView<'a>>,
    #[serde(default, borrow)]
    pub usage: Option<&'a RawValue>,
    #[serde(default, borrow)]
    pub error: Option<&'a RawValue>,
}

#[derive(Debug, Deserialize, Default)]
pub struct ChoiceView<'a> {
    /// The choice's `index` when it is a count (`None` when absent or not one).
    #[serde(default, deserialize_with = "crate::borrowed::lenient_u64")]
    pub index: Option<u64>,
    #[serde(default, borrow)]
    pub delta: DeltaView<'a>,
    /// A whole `message` in a streamed choice (non-standard; only its presence is kept).
    #[serde(default, borrow)]
    pub message: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "crate::borrowed::nullable_str")]
    pub finish_reason: Option<Cow<'a, str>>,
}

#[derive(Debug, Deserialize, Default)]
pub struct DeltaView<'a> {
    #[serde(default, borrow, deserialize_with = "crate::borrowed::nullable_str")]
    pub content: Option<Cow<'a, str>>,
    /// DeepSeek's name for reasoning text.
    #[serde(default, borrow, deserialize_with = "crate::borrowed::nullable_str")]
    pub reasoning_content: Option<Cow<'a, str>>,
    /// The name OpenRouter and vLLM use for the same thing.
    #[serde(default, borrow, deserialize_with = "crate::borrowed::nullable_str")]
    pub reasoning: Option<Cow<'a, str>>,
    /// The signature of an Anthropic thinking block (the gateway's own extension).
    #[serde(default, borrow, deserialize_with = "crate::borrowed::nullable_str")]
    pub reasoning_signature: Option<Cow<'a, str>>,
    /// Read only when it is a string: it is not metered, and must not make a chunk unreadable.
    #[serde(default, borrow, deserialize_with = "crate::borrowed::lenient_str")]
    pub refusal: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub tool_calls: Vec<ToolCallView<'a>>,
}

#[derive(Debug, Deserialize, Default)]
pub struct ToolCallView<'a> {
    #[serde(default)]
    pub index: Option<u64>,
    #[serde(default, borrow, deserialize_with = "crate::borrowed::nullable_str")]
    pub id: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub function: FunctionView<'a>,
}

#[derive(Debug, Deserialize, Default)]
pub struct FunctionView<'a> {
    #[serde(default, borrow, deserialize_with = "crate::borrowed::nullable_str")]
    pub name: Option<Cow<'a, str>>,
    #[serde(default, borrow, deserialize_with = "crate::borrowed::nullable_str")]
    pub arguments: Option<Cow<'a, str>>,
}

impl<'a> ChunkView<'a> {
    /// Parses a chunk's data. `None` for anything that is not a JSON object of this shape.
    pub fn parse(data: &'a [u8]) -> Option<ChunkView<'a>> {
        serde_json::from_slice(data).ok()
    }

    /// Whether a choice carries a `message` (read from a `Value` by the Responses builder, which
    /// takes it for the delta when there is none).
    pub fn has_message(&self) -> bool {
        self.choices.iter().any(|c| c.message.is_some())
    }

    /// The first finish reason in the chunk, if any, as the upstream spelled it.
    pub fn finish_reason(&self) -> Option<&str> {
        self.choices.iter().find_map(|c| c.finish_reason.as_deref())
    }

    /// [`Self::finish_reason`], read ([`FinishReason::from_openai`]).
    pub fn finish(&self) -> Option<FinishReason> {
        self.finish_reason().map(FinishReason::from_openai)
    }

    /// Calls `f` with every piece of generated text in the chunk: content, reasoning, and tool
    /// names and arguments (all of which the upstream bills as completion tokens).
    pub fn for_each_text(&self, mut f: impl FnMut(&str)) {
        for c in &self.choices {
            let d = &c.delta;
            for s in [&d.content, &d.reasoning_content, &d.reasoning]
                .into_iter()
                .flatten()
            {
                f(s);
            }
            for t in &d.tool_calls {
                for s in [&t.function.name, &t.function.arguments]
                    .into_iter()
                    .flatten()
                {
                    f(s);
                }
            }
        }
    }
}

/// An OpenAI-shaped error body: `{"error":{"message","type","param","code"}}`.
pub fn error_body(message: &str, kind: &str, param: Option<&str>, code: Value) -> Value {
    serde_json::json!({"error": {"message": message, "type": kind, "param": param, "code": code}})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(body: &str) -> RequestError {
        ChatRequest::parse(body.as_bytes()).unwrap_err()
    }

    #[test]
    fn a_chunk_view_borrows_plain_strings_and_unescapes_the_others() {
        let data = br#"{"id":"c1","model":"m","choices":[{"index":0,"delta":{"content":"a\"b\n","reasoning_signature":"sig","tool_calls":[{"index":2,"id":"t","function":{"name":"f","arguments":null}}]},"finish_reason":null}]}"#;
        let v = ChunkView::parse(data).unwrap();
        assert!(matches!(v.id, Some(Cow::Borrowed("c1"))));
        assert!(matches!(v.model, Some(Cow::Borrowed("m"))));
        let d = &v.choices[0].delta;
        assert_eq!(d.content.as_deref(), Some("a\"b\n"));
        assert!(matches!(d.reasoning_signature, Some(Cow::Borrowed("sig"))));
        let call = &d.tool_calls[0];
        assert_eq!((call.index, call.id.as_deref()), (Some(2), Some("t")));
        assert!(matches!(call.function.name, Some(Cow::Borrowed("f"))));
        assert!(call.function.arguments.is_none() && v.choices[0].finish_reason.is_none());
        assert!(ChunkView::parse(br#"{"choices":[{"delta":{"content":5}}]}"#).is_none());
    }

    #[test]
    fn accepts_a_minimal_request_and_keeps_unknown_fields() {
        let r = ChatRequest::parse(
            br#"{"model":"m","messages":[{"role":"user","content":"hi"}],"thinking":{"type":"enabled"},"stream":true}"#,
        )
        .unwrap();
        assert_eq!(r.model, "m");
        assert!(r.stream && !r.include_usage);
        let up: Value = serde_json::from_slice(&r.upstream_body("up-m")).unwrap();
        assert_eq!(up["model"], "up-m");
        assert_eq!(up["thinking"]["type"], "enabled");
        assert_eq!(up["stream_options"]["include_usage"], true);
    }

    #[test]
    fn the_mock_field_is_never_forwarded_and_the_key_order_survives() {
        let r = ChatRequest::parse(
            br#"{"model":"m","mock":{"prompt_tokens":4000000000},"messages":[{"role":"user","content":"hi"}],"x_custom":1}"#,
        )
        .unwrap();
        assert!(!r.body.contains_key("mock"));
        let keys: Vec<&str> = r.body.keys().map(String::as_str).collect();
        assert_eq!(keys, ["model", "messages", "x_custom"]);
        let up = String::from_utf8(r.upstream_body("up-m")).unwrap();
        assert!(!up.contains("mock") && !up.contains("4000000000"), "{up}");
        assert!(up.contains("\"x_custom\":1"), "{up}");
    }

    /// The upstream body as it was built before `compact_json`: a clone of the body, edited,
    /// then serialised by serde_json. The writer must produce the same bytes.
    fn upstream_body_by_clone(r: &ChatRequest, upstream_model: &str) -> Vec<u8> {
        let mut body = r.body.clone();
        body.insert("model".into(), Value::String(upstream_model.to_owned()));
        if r.stream {
            let opts = body
                .entry("stream_options")
                .or_insert_with(|| Value::Object(Map::new()));
            if !opts.is_object() {
                *opts = Value::Object(Map::new());
            }
            opts["include_usage"] = Value::Bool(true);
        }
        serde_json::to_vec(&body).unwrap()
    }

    #[test]
    fn the_upstream_body_is_the_body_edited_byte_for_byte() {
        let bodies = [
            r#"{"model":"m","messages":[{"role":"user","content":"hi \"x\"\n\u0001 é"}]}"#,
            r#"{"messages":[{"role":"user","content":"x"}],"model":"m","stream":true}"#,
            r#"{"model":"m","stream":true,"stream_options":{"include_usage":false,"other":1},"messages":[{"role":"user","content":"x"}]}"#,
            r#"{"model":"m","stream":true,"stream_options":{"other":[1,2.5]},"messages":[{"role":"user","content":"x"}],"n":2}"#,
            r#"{"model":"m","stream":true,"stream_options":null,"messages":[{"role":"user","content":"x"}]}"#,
            r#"{"model":"m","stream":false,"stream_options":{"include_usage":false},"messages":[{"role":"user","content":"x"}],"mock":{"tokens":3}}"#,
            r#"{"model":"m","temperature":0.25,"tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object"}}}],"messages":[{"role":"user","content":[{"type":"text","text":"t"}]}]}"#,
        ];
        for b in bodies {
            let r = ChatRequest::parse(b.as_bytes()).unwrap();
            assert_eq!(
                String::from_utf8(r.upstream_body("up/m\"")).unwrap(),
                String::from_utf8(upstream_body_by_clone(&r, "up/m\"")).unwrap(),
                "{b}"
            );
        }
    }

    #[test]
    fn names_the_bad_parameter() {
        assert_eq!(err("{").param, None);
        assert_eq!(err("[1]").param, None);
        assert_eq!(err(r#"{"messages":[]}"#).param.as_deref(), Some("model"));
        assert_eq!(err(r#"{"model":"m"}"#).param.as_deref(), Some("messages"));
        assert_eq!(
            err(r#"{"model":"m","messages":[]}"#).param.as_deref(),
            Some("messages")
        );
        assert_eq!(
            err(r#"{"model":"m","messages":[{"role":"robot","content":"x"}]}"#)
                .param
                .as_deref(),
            Some("messages[0].role")
        );
        assert_eq!(
            err(r#"{"model":"m","messages":[{"role":"user","content":5}]}"#)
                .param
                .as_deref(),
            Some("messages[0].content")
        );
        assert_eq!(
            err(r#"{"model":"m","messages":[{"role":"user","content":"x"}],"stream":"yes"}"#)
                .param
                .as_deref(),
            Some("stream")
        );
        assert_eq!(
            err(r#"{"model":"m","messages":[{"role":"user","content":"x"}],"max_tokens":-1}"#)
                .param
                .as_deref(),
            Some("max_tokens")
        );
        assert_eq!(
            err(r#"{"model":7,"messages":[]}"#).param.as_deref(),
            Some("model")
        );
    }

    #[test]
    fn chunk_view_reads_text_finish_and_usage() {
        let data = br#"{"id":"x","choices":[{"index":0,"delta":{"content":"a\"b","reasoning_content":"r","tool_calls":[{"index":0,"function":{"arguments":"{}"}}]},"finish_reason":"stop"}],"usage":{"prompt_tokens":1}}"#;
        let v = ChunkView::parse(data).unwrap();
        let mut texts = vec![];
        v.for_each_text(|t| texts.push(t.to_owned()));
        assert_eq!(texts, vec!["a\"b", "r", "{}"]);
        assert_eq!(v.finish_reason(), Some("stop"));
        assert!(v.usage.is_some());
        assert!(ChunkView::parse(b"{\"choices\": [").is_none());
    }
}
