//! Legacy text completions (`POST /v1/completions`) over chat: the request validated and turned
//! into a chat request (the prompt as one user message), and chat answers turned back into
//! `text_completion` objects and chunks.
//!
//! Kept: `model`, `prompt` (a string, or an array holding one string), `max_tokens` (16 when
//! absent, as OpenAI), `temperature`, `top_p`, `n`, `stream`, `stream_options`, `stop`,
//! `presence_penalty`, `frequency_penalty`, `logit_bias`, `user`, `seed`, and `echo` (the prompt
//! put before each choice's text). Refused with a param-precise 400, since a chat upstream cannot
//! honour them: token-id prompts, several prompts, `logprobs` above 0, `best_of` other than `n`,
//! a non-empty `suffix`. Other fields are not forwarded.

use std::borrow::Cow;

use bytes::{BufMut, BytesMut};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::finish::FinishReason;
use crate::openai::RequestError;

/// OpenAI's default `max_tokens` for a legacy completion.
pub const DEFAULT_MAX_TOKENS: u64 = 16;

/// A validated completions request and the chat request that serves it.
#[derive(Debug, Clone)]
pub struct CompletionsRequest {
    pub model: String,
    pub stream: bool,
    /// The prompt, put before each choice's text when `echo` is true.
    pub echo: Option<String>,
    /// The chat request body (JSON) that serves this completion.
    pub chat_body: Vec<u8>,
}

fn bad(param: &str, message: impl Into<String>) -> RequestError {
    RequestError::new(param, message)
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

/// Copied to the chat request as they are (the chat validation checks their types).
const SAME_IN_CHAT: &[&str] = &[
    "temperature",
    "top_p",
    "n",
    "stream",
    "stream_options",
    "stop",
    "presence_penalty",
    "frequency_penalty",
    "logit_bias",
    "user",
    "seed",
];

impl CompletionsRequest {
    /// Validates a request body and builds its chat request.
    pub fn parse(bytes: &[u8]) -> Result<CompletionsRequest, RequestError> {
        let value: Value = serde_json::from_slice(bytes).map_err(|e| {
            bad(
                "body",
                format!("We could not parse the JSON body of your request ({e}). The body must be valid JSON."),
            )
        })?;
        let Value::Object(body) = value else {
            return Err(bad("body", "The request body must be a JSON object."));
        };
        let model = match body.get("model") {
            Some(Value::String(m)) if !m.is_empty() => m.clone(),
            None | Some(Value::Null) => {
                return Err(bad("model", "Missing required parameter: 'model'."))
            }
            Some(v) => {
                return Err(bad(
                    "model",
                    format!(
                        "Invalid type for 'model': expected a non-empty string, but got {}.",
                        type_name(v)
                    ),
                ))
            }
        };
        let prompt = match body.get("prompt") {
            Some(Value::String(p)) => p.clone(),
            Some(Value::Array(a)) if a.len() == 1 && a[0].is_string() => {
                a[0].as_str().unwrap_or_default().to_owned()
            }
            Some(Value::Array(a)) if a.iter().all(Value::is_string) && !a.is_empty() => {
                return Err(bad(
                    "prompt",
                    "Only one prompt per request is served here; send one request per prompt.",
                ))
            }
            Some(Value::Array(_)) => {
                return Err(bad(
                    "prompt",
                    "Token-id prompts are not served here; send the prompt as text.",
                ))
            }
            None | Some(Value::Null) => {
                return Err(bad("prompt", "Missing required parameter: 'prompt'."))
            }
            Some(v) => {
                return Err(bad(
                    "prompt",
                    format!(
                        "Invalid type for 'prompt': expected a string or an array of strings, but got {}.",
                        type_name(v)
                    ),
                ))
            }
        };
        if prompt.is_empty() {
            return Err(bad("prompt", "'prompt' must not be empty."));
        }
        let max_tokens = match body.get("max_tokens") {
            None | Some(Value::Null) => DEFAULT_MAX_TOKENS,
            Some(v) => v.as_u64().ok_or_else(|| {
                bad(
                    "max_tokens",
                    format!(
                        "Invalid type for 'max_tokens': expected a non-negative integer, but got {}.",
                        type_name(v)
                    ),
                )
            })?,
        };
        let n = body.get("n").and_then(Value::as_u64).unwrap_or(1);
        match body.get("best_of") {
            None | Some(Value::Null) => {}
            Some(v) if v.as_u64() == Some(n) => {}
            Some(_) => {
                return Err(bad(
                    "best_of",
                    "'best_of' is served only equal to 'n' (each candidate is returned).",
                ))
            }
        }
        match body.get("logprobs") {
            None | Some(Value::Null) => {}
            Some(v) if v.as_u64() == Some(0) => {}
            Some(_) => {
                return Err(bad(
                    "logprobs",
                    "'logprobs' is not served for legacy completions here; leave it unset.",
                ))
            }
        }
        match body.get("suffix") {
            None | Some(Value::Null) => {}
            Some(Value::String(s)) if s.is_empty() => {}
            Some(_) => return Err(bad("suffix", "'suffix' (insertion) is not served here.")),
        }
        let echo = match body.get("echo") {
            None | Some(Value::Null) | Some(Value::Bool(false)) => false,
            Some(Value::Bool(true)) => true,
            Some(v) => {
                return Err(bad(
                    "echo",
                    format!(
                        "Invalid type for 'echo': expected a boolean, but got {}.",
                        type_name(v)
                    ),
                ))
            }
        };
        let stream = body.get("stream").and_then(Value::as_bool).unwrap_or(false);
        let mut chat = Map::new();
        chat.insert("model".into(), Value::String(model.clone()));
        chat.insert(
            "messages".into(),
            serde_json::json!([{"role": "user", "content": prompt}]),
        );
        chat.insert("max_tokens".into(), max_tokens.into());
        for key in SAME_IN_CHAT {
            if let Some(v) = body.get(*key) {
                if !v.is_null() {
                    chat.insert((*key).into(), v.clone());
                }
            }
        }
        Ok(CompletionsRequest {
            model,
            stream,
            echo: echo.then_some(prompt),
            chat_body: serde_json::to_vec(&Value::Object(chat)).unwrap_or_default(),
        })
    }
}

/// `cmpl-…` for a chat answer's `chatcmpl-…` id.
fn completion_id(v: &Value) -> Value {
    match v.get("id").and_then(Value::as_str) {
        Some(id) => Value::String(match id.strip_prefix("chatcmpl-") {
            Some(rest) => format!("cmpl-{rest}"),
            None => id.to_owned(),
        }),
        None => Value::String("cmpl-".into()),
    }
}

fn text_completion(v: &Value, choices: Vec<Value>) -> Value {
    let mut out = Map::new();
    out.insert("id".into(), completion_id(v));
    out.insert("object".into(), Value::String("text_completion".into()));
    out.insert(
        "created".into(),
        v.get("created").cloned().unwrap_or(Value::from(0)),
    );
    out.insert(
        "model".into(),
        v.get("model")
            .cloned()
            .unwrap_or(Value::String(String::new())),
    );
    out.insert("choices".into(), Value::Array(choices));
    if let Some(u) = v.get("usage").filter(|u| !u.is_null()) {
        out.insert("usage".into(), u.clone());
    }
    if let Some(f) = v.get("system_fingerprint").filter(|f| !f.is_null()) {
        out.insert("system_fingerprint".into(), f.clone());
    }
    Value::Object(out)
}

fn choice(index: &Value, text: String, finish: &Value) -> Value {
    serde_json::json!({
        "text": text,
        "index": index,
        "logprobs": null,
        "finish_reason": finish,
    })
}

/// A chat completion (non-streamed) as a `text_completion`; `echo` goes before each text.
pub fn from_chat(v: &Value, echo: Option<&str>) -> Value {
    let choices = v
        .get("choices")
        .and_then(Value::as_array)
        .map(|cs| {
            cs.iter()
                .map(|c| {
                    let text = c
                        .get("message")
                        .and_then(|m| m.get("content"))
                        .and_then(Value::as_str)
                        .unwrap_or_default();
                    let text = match echo {
                        Some(p) => format!("{p}{text}"),
                        None => text.to_owned(),
                    };
                    let index = c.get("index").cloned().unwrap_or(Value::from(0));
                    choice(&index, text, c.get("finish_reason").unwrap_or(&Value::Null))
                })
                .collect()
        })
        .unwrap_or_default();
    text_completion(v, choices)
}

/// What a streamed chat chunk carries that a `text_completion` chunk keeps, borrowed.
#[derive(Deserialize)]
struct ChatChunk<'a> {
    #[serde(default, borrow)]
    id: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    model: Option<Cow<'a, str>>,
    #[serde(default)]
    created: Option<u64>,
    #[serde(borrow)]
    choices: Vec<ChatChunkChoice<'a>>,
    #[serde(default, borrow)]
    usage: Option<&'a RawValue>,
    #[serde(default, borrow)]
    system_fingerprint: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct ChatChunkChoice<'a> {
    #[serde(default)]
    index: u64,
    #[serde(default, borrow)]
    delta: Option<ChatDelta<'a>>,
    #[serde(default, borrow)]
    finish_reason: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct ChatDelta<'a> {
    #[serde(default, borrow)]
    content: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    role: Option<Cow<'a, str>>,
}

fn number(out: &mut BytesMut, n: u64) {
    use std::io::Write;
    // Writing into a BytesMut cannot fail.
    let _ = write!(out.writer(), "{n}");
}

fn json_str(out: &mut BytesMut, s: &str) {
    // Writing a string into a BytesMut cannot fail.
    let _ = serde_json::to_writer(out.writer(), s);
}

/// Writes the `text_completion` chunk for one chat chunk's data as an SSE event
/// (`data: {…}\n\n`) into `out`, borrowing from `data` (nothing is built but the bytes written).
/// `echo` goes before the text of a choice's opening chunk (the one with a role). `false`, and
/// nothing written, when `data` is not a chat chunk (an error event, say).
pub fn write_chunk(data: &[u8], echo: Option<&str>, out: &mut BytesMut) -> bool {
    let Ok(chunk) = serde_json::from_slice::<ChatChunk<'_>>(data) else {
        return false;
    };
    out.reserve(data.len() + 32);
    out.extend_from_slice(b"data: {\"id\":");
    let id = chunk.id.as_deref().unwrap_or_default();
    match id.strip_prefix("chatcmpl-") {
        Some(rest) if !rest.bytes().any(|b| b == b'"' || b == b'\\' || b < 0x20) => {
            out.extend_from_slice(b"\"cmpl-");
            out.extend_from_slice(rest.as_bytes());
            out.extend_from_slice(b"\"");
        }
        Some(rest) => json_str(out, &format!("cmpl-{rest}")),
        None => json_str(out, id),
    }
    out.extend_from_slice(b",\"object\":\"text_completion\",\"created\":");
    number(out, chunk.created.unwrap_or(0));
    out.extend_from_slice(b",\"model\":");
    json_str(out, chunk.model.as_deref().unwrap_or_default());
    out.extend_from_slice(b",\"choices\":[");
    for (i, c) in chunk.choices.iter().enumerate() {
        if i > 0 {
            out.extend_from_slice(b",");
        }
        let delta = c.delta.as_ref();
        let text = delta.and_then(|d| d.content.as_deref()).unwrap_or_default();
        out.extend_from_slice(b"{\"text\":");
        match echo.filter(|_| delta.is_some_and(|d| d.role.is_some())) {
            Some(prompt) => json_str(out, &format!("{prompt}{text}")),
            None => json_str(out, text),
        }
        out.extend_from_slice(b",\"index\":");
        number(out, c.index);
        out.extend_from_slice(b",\"logprobs\":null,\"finish_reason\":");
        match c.finish_reason.as_deref() {
            Some(f) => json_str(out, FinishReason::from_openai(f).as_openai()),
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(b"}");
    }
    out.extend_from_slice(b"]");
    if let Some(u) = chunk.usage.filter(|u| u.get() != "null") {
        out.extend_from_slice(b",\"usage\":");
        out.extend_from_slice(u.get().as_bytes());
    }
    if let Some(f) = chunk.system_fingerprint.as_deref() {
        out.extend_from_slice(b",\"system_fingerprint\":");
        json_str(out, f);
    }
    out.extend_from_slice(b"}\n\n");
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn prompt_becomes_one_user_message_with_default_max_tokens() {
        let r = CompletionsRequest::parse(
            br#"{"model":"m","prompt":["Say hi"],"stop":"\n","best_of":1}"#,
        )
        .unwrap();
        let chat: Value = serde_json::from_slice(&r.chat_body).unwrap();
        assert_eq!(
            chat["messages"],
            json!([{"role":"user","content":"Say hi"}])
        );
        assert_eq!(chat["max_tokens"], 16);
        assert_eq!(chat["stop"], "\n");
        assert!(chat.get("best_of").is_none());
    }

    #[test]
    fn what_chat_cannot_honour_is_refused_by_param() {
        for (body, param) in [
            (r#"{"model":"m","prompt":[1,2,3]}"#, "prompt"),
            (r#"{"model":"m","prompt":["a","b"]}"#, "prompt"),
            (r#"{"model":"m","prompt":"a","logprobs":2}"#, "logprobs"),
            (r#"{"model":"m","prompt":"a","best_of":3}"#, "best_of"),
            (r#"{"model":"m","prompt":"a","suffix":"x"}"#, "suffix"),
            (r#"{"model":"m"}"#, "prompt"),
            (r#"{"prompt":"a"}"#, "model"),
            (
                r#"{"model":"m","prompt":"a","max_tokens":-1}"#,
                "max_tokens",
            ),
        ] {
            let e = CompletionsRequest::parse(body.as_bytes()).unwrap_err();
            assert_eq!(e.param.as_deref(), Some(param), "{body}");
        }
    }

    #[test]
    fn chat_answers_become_text_completions() {
        let chat = json!({"id":"chatcmpl-1","object":"chat.completion","created":5,"model":"m",
            "choices":[{"index":0,"message":{"role":"assistant","content":"Hi"},"finish_reason":"stop"}],
            "usage":{"prompt_tokens":2,"completion_tokens":1,"total_tokens":3}});
        let t = from_chat(&chat, Some("Say: "));
        assert_eq!(t["id"], "cmpl-1");
        assert_eq!(t["object"], "text_completion");
        assert_eq!(t["choices"][0]["text"], "Say: Hi");
        assert_eq!(t["choices"][0]["logprobs"], Value::Null);
        assert_eq!(t["usage"]["total_tokens"], 3);
        let mut out = BytesMut::new();
        let data = br#"{"id":"chatcmpl-x\"1","created":5,"model":"m","choices":[{"index":1,"delta":{"role":"assistant","content":"a\"b"},"finish_reason":null}],"usage":{"prompt_tokens":1}}"#;
        assert!(write_chunk(data, Some("P "), &mut out));
        let text = std::str::from_utf8(&out).unwrap();
        let v: Value =
            serde_json::from_str(text.strip_prefix("data: ").unwrap().trim_end()).unwrap();
        assert_eq!(
            v,
            json!({"id":"cmpl-x\"1","object":"text_completion","created":5,"model":"m",
                "choices":[{"text":"P a\"b","index":1,"logprobs":null,"finish_reason":null}],
                "usage":{"prompt_tokens":1}})
        );
        assert!(!write_chunk(
            br#"{"error":{"message":"x"}}"#,
            None,
            &mut out
        ));
    }
}
