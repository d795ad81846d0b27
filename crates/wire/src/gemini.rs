//! Pure translation between OpenAI Chat Completions and Google's Gemini API (`generateContent`,
//! `streamGenerateContent?alt=sse`).
//!
//! - [`chat_request_to_gemini`]: an OpenAI chat request becomes a Gemini request body (the model and
//!   the method go in the URL: `models/{model}:generateContent`).
//! - [`StreamTranslator`]: each SSE `data:` object of a Gemini stream (a partial
//!   `GenerateContentResponse`) becomes OpenAI `chat.completion.chunk` objects.
//! - [`response_to_chat_completion`]: a whole `GenerateContentResponse` becomes a `chat.completion`.
//! - [`GeminiError`]: Gemini's error body `{"error":{"code","message","status","details"}}`.
//!
//! Thought parts (`"thought": true`) become `reasoning_content`; function calls become `tool_calls`
//! with ids the translator makes (Gemini's calls have none). A call's `thoughtSignature` rides in
//! its id (`call_…_gts_<signature, base64url>`, [`with_signature`]): every client dialect sends a
//! call's id back with the next turn, and Gemini refuses a function-call turn without the signature
//! it issued, so the request translation puts it back on the `functionCall` part
//! ([`split_signature`]).
//! Usage ([`usage`]): `promptTokenCount` (+ `toolUsePromptTokenCount`) is the prompt, cached ones
//! (`cachedContentTokenCount`) included; `candidatesTokenCount + thoughtsTokenCount` the completion,
//! thoughts as reasoning.
//!
//! [`inbound`]: the other direction, Google's API as a client dialect (a Gemini request → chat,
//! chat answers and chunks → Gemini's).

pub mod inbound;
mod request;

pub use request::{chat_request_to_gemini, thinking_budget, upstream_max_output_tokens};

use serde_json::{json, Map, Value};

use crate::anthropic::TranslateError;
use crate::finish::FinishReason;
use crate::usage::Usage;

/// Gemini `finishReason` read as a [`FinishReason`] ([`FinishReason::from_gemini`]): `STOP`
/// after a function call is `tool_calls`.
pub fn finish_reason(reason: &str, called_a_function: bool) -> FinishReason {
    FinishReason::from_gemini(reason, called_a_function)
}

/// Reads `usageMetadata` as billed. `None` when it carries no token count.
pub fn usage(meta: &Value) -> Option<Usage> {
    let n = |k: &str| meta.get(k).and_then(Value::as_u64);
    n("promptTokenCount").or(n("candidatesTokenCount"))?;
    let thoughts = n("thoughtsTokenCount").unwrap_or(0);
    Some(Usage {
        prompt_tokens: n("promptTokenCount")
            .unwrap_or(0)
            .saturating_add(n("toolUsePromptTokenCount").unwrap_or(0)),
        completion_tokens: n("candidatesTokenCount")
            .unwrap_or(0)
            .saturating_add(thoughts),
        cached_tokens: n("cachedContentTokenCount").unwrap_or(0),
        cache_write_tokens: 0,
        cache_write_1h_tokens: 0,
        reasoning_tokens: thoughts,
    })
}

/// Gemini's error body, read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GeminiError {
    /// The HTTP status Gemini put in the body (`error.code`).
    pub code: u16,
    pub message: String,
    /// The canonical status (`INVALID_ARGUMENT`, `RESOURCE_EXHAUSTED`, `NOT_FOUND`…).
    pub status: String,
    /// `details[].reason` of an `ErrorInfo` (`API_KEY_INVALID`…), if any.
    pub reason: Option<String>,
}

impl GeminiError {
    /// Reads `{"error":{...}}`; `None` when `v` is not that shape.
    pub fn from_value(v: &Value) -> Option<GeminiError> {
        let e = v.get("error").filter(|e| e.is_object())?;
        let s = |k: &str| {
            e.get(k)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        Some(GeminiError {
            code: e
                .get("code")
                .and_then(Value::as_u64)
                .and_then(|c| u16::try_from(c).ok())
                .unwrap_or(0),
            message: crate::anthropic::mask_credentials(&s("message")),
            status: s("status"),
            reason: e
                .get("details")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .find_map(|d| d.get("reason").and_then(Value::as_str))
                .map(str::to_owned),
        })
    }

    pub fn rate_limited(&self) -> bool {
        self.status == "RESOURCE_EXHAUSTED" || self.code == 429
    }
}

/// The ids of translated tool calls: `call_` + the response id's tail + a counter.
fn call_id(id: &str, n: usize) -> String {
    let tail = id.rsplit('-').next().unwrap_or(id);
    format!("call_{tail}_{n}")
}

/// Where a tool call's id carries its Gemini `thoughtSignature`.
const SIGNATURE_MARK: &str = "_gts_";

/// The id of a call whose part carried `thoughtSignature` (base64): `id` + `_gts_` + the signature
/// as base64url without padding (ids must be `[A-Za-z0-9_-]` for Anthropic-dialect clients).
pub fn with_signature(id: String, part: &Value) -> String {
    match part.get("thoughtSignature").and_then(Value::as_str) {
        Some(sig) if !sig.is_empty() => {
            let url: String = sig
                .chars()
                .filter(|c| *c != '=')
                .map(|c| match c {
                    '+' => '-',
                    '/' => '_',
                    c => c,
                })
                .collect();
            format!("{id}{SIGNATURE_MARK}{url}")
        }
        _ => id,
    }
}

/// A tool call id made by [`with_signature`] split into the id and the signature (base64, padded
/// again), or the id as it is with no signature.
pub fn split_signature(id: &str) -> (&str, Option<String>) {
    let Some((head, url)) = id.split_once(SIGNATURE_MARK) else {
        return (id, None);
    };
    let mut sig: String = url
        .chars()
        .map(|c| match c {
            '-' => '+',
            '_' => '/',
            c => c,
        })
        .collect();
    while !sig.len().is_multiple_of(4) {
        sig.push('=');
    }
    (head, Some(sig))
}

/// Streamed Gemini → OpenAI chunks, one SSE `data:` object at a time.
pub struct StreamTranslator {
    id: String,
    model: String,
    created: u64,
    /// Per candidate index: role sent, tool calls so far, finished.
    candidates: Vec<Candidate>,
    calls: usize,
    usage: Option<Usage>,
    finish: Option<FinishReason>,
    error: Option<GeminiError>,
    done: bool,
    out: Vec<Value>,
}

#[derive(Default, Clone)]
struct Candidate {
    started: bool,
    tool_calls: usize,
    finished: bool,
}

impl StreamTranslator {
    pub fn new(id: String, model: String, created: u64) -> StreamTranslator {
        StreamTranslator {
            id,
            model,
            created,
            candidates: Vec::new(),
            calls: 0,
            usage: None,
            finish: None,
            error: None,
            done: false,
            out: Vec::new(),
        }
    }

    fn chunk(&mut self, index: usize, delta: Value, finish: Option<FinishReason>) {
        self.out.push(json!({
            "id": self.id, "object": "chat.completion.chunk", "created": self.created,
            "model": self.model,
            "choices": [{"index": index, "delta": delta, "logprobs": null, "finish_reason": finish}],
        }));
    }

    fn start(&mut self, index: usize) {
        if self.candidates.len() <= index {
            self.candidates.resize(index + 1, Candidate::default());
        }
        if !self.candidates[index].started {
            self.candidates[index].started = true;
            self.chunk(index, json!({"role": "assistant", "content": ""}), None);
        }
    }

    /// Takes one SSE data object. Fails on data that is not a JSON object.
    pub fn push(&mut self, data: &str) -> Result<(), TranslateError> {
        if self.done {
            return Ok(());
        }
        let v: Value = serde_json::from_str(data)
            .ok()
            .filter(Value::is_object)
            .ok_or_else(|| TranslateError::new("data", "a Gemini stream event is not an object"))?;
        if let Some(e) = GeminiError::from_value(&v) {
            self.error = Some(e);
            self.done = true;
            return Ok(());
        }
        if let Some(u) = v.get("usageMetadata").and_then(usage) {
            self.usage = Some(u);
        }
        let candidates = v.get("candidates").and_then(Value::as_array);
        if candidates.is_none_or(|c| c.is_empty()) {
            if v.pointer("/promptFeedback/blockReason").is_some() {
                // The prompt was blocked: no candidate at all.
                self.start(0);
                self.finish = Some(FinishReason::ContentFilter);
                self.chunk(0, json!({}), Some(FinishReason::ContentFilter));
                self.done = true;
            }
            return Ok(());
        }
        for c in candidates.into_iter().flatten() {
            let index = c.get("index").and_then(Value::as_u64).unwrap_or(0) as usize;
            self.start(index);
            for part in c
                .pointer("/content/parts")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                if let Some(call) = part.get("functionCall") {
                    let k = self.candidates[index].tool_calls;
                    self.candidates[index].tool_calls += 1;
                    let id = call
                        .get("id")
                        .and_then(Value::as_str)
                        .map(str::to_owned)
                        .unwrap_or_else(|| call_id(&self.id, self.calls));
                    let id = with_signature(id, part);
                    self.calls += 1;
                    let args = call.get("args").cloned().unwrap_or_else(|| json!({}));
                    let delta = json!({"tool_calls": [{
                        "index": k, "id": id, "type": "function",
                        "function": {"name": call.get("name").cloned().unwrap_or(Value::Null),
                                     "arguments": args.to_string()}}]});
                    self.chunk(index, delta, None);
                } else if let Some(text) = part.get("text").and_then(Value::as_str) {
                    if text.is_empty() {
                        continue;
                    }
                    let thought = part.get("thought").and_then(Value::as_bool) == Some(true);
                    let field = if thought {
                        "reasoning_content"
                    } else {
                        "content"
                    };
                    self.chunk(index, json!({ field: text }), None);
                }
            }
            if let Some(reason) = c.get("finishReason").and_then(Value::as_str) {
                let r = finish_reason(reason, self.candidates[index].tool_calls > 0);
                self.candidates[index].finished = true;
                self.finish.get_or_insert(r);
                self.chunk(index, json!({}), Some(r));
            }
        }
        if self.candidates.iter().all(|c| c.finished) {
            self.done = true;
        }
        Ok(())
    }

    /// The chunks made so far, in order.
    pub fn drain(&mut self) -> std::vec::Drain<'_, Value> {
        self.out.drain(..)
    }

    /// Every candidate finished (or the stream failed).
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// The first finish reason.
    pub fn finish_reason(&self) -> Option<FinishReason> {
        self.finish
    }

    /// The last usage reported (Gemini's counts are cumulative).
    pub fn usage(&self) -> Option<Usage> {
        self.usage
    }

    /// A `choices: []` chunk with the usage in OpenAI's shape.
    pub fn usage_chunk(&self) -> Option<Value> {
        let u = self.usage?;
        Some(json!({
            "id": self.id, "object": "chat.completion.chunk", "created": self.created,
            "model": self.model, "choices": [], "usage": u.to_openai(None),
        }))
    }

    pub fn error(&self) -> Option<&GeminiError> {
        self.error.as_ref()
    }
}

/// A whole `GenerateContentResponse` → OpenAI `chat.completion` stamped with `id`, `model`,
/// `created`. Fails on an error body or anything without `candidates` or `promptFeedback`.
pub fn response_to_chat_completion(
    resp: &Value,
    id: &str,
    model: &str,
    created: u64,
) -> Result<Value, TranslateError> {
    if let Some(e) = GeminiError::from_value(resp) {
        return Err(TranslateError::new("error", e.message));
    }
    let candidates = resp.get("candidates").and_then(Value::as_array);
    if candidates.is_none() && resp.get("promptFeedback").is_none() {
        return Err(TranslateError::new(
            "candidates",
            "the upstream answer has no candidates",
        ));
    }
    let mut choices = Vec::new();
    let mut calls = 0;
    for (k, c) in candidates.into_iter().flatten().enumerate() {
        let mut text = String::new();
        let mut reasoning = String::new();
        let mut tool_calls = Vec::new();
        for part in c
            .pointer("/content/parts")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(call) = part.get("functionCall") {
                let args = call.get("args").cloned().unwrap_or_else(|| json!({}));
                let cid = call
                    .get("id")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
                    .unwrap_or_else(|| call_id(id, calls));
                let cid = with_signature(cid, part);
                calls += 1;
                tool_calls.push(json!({"id": cid, "type": "function", "function": {
                    "name": call.get("name").cloned().unwrap_or(Value::Null),
                    "arguments": args.to_string()}}));
            } else if let Some(t) = part.get("text").and_then(Value::as_str) {
                if part.get("thought").and_then(Value::as_bool) == Some(true) {
                    reasoning.push_str(t);
                } else {
                    text.push_str(t);
                }
            }
        }
        let reason = c
            .get("finishReason")
            .and_then(Value::as_str)
            .unwrap_or("STOP");
        let mut message = Map::new();
        message.insert("role".into(), json!("assistant"));
        message.insert(
            "content".into(),
            if text.is_empty() && !tool_calls.is_empty() {
                Value::Null
            } else {
                json!(text)
            },
        );
        if !reasoning.is_empty() {
            message.insert("reasoning_content".into(), json!(reasoning));
        }
        let finish = finish_reason(reason, !tool_calls.is_empty());
        if !tool_calls.is_empty() {
            message.insert("tool_calls".into(), Value::Array(tool_calls));
        }
        choices.push(json!({
            "index": c.get("index").and_then(Value::as_u64).unwrap_or(k as u64),
            "message": message, "logprobs": null, "finish_reason": finish,
        }));
    }
    if choices.is_empty() {
        // The prompt was blocked before any candidate.
        choices.push(
            json!({"index": 0, "message": {"role": "assistant", "content": ""},
            "logprobs": null, "finish_reason": "content_filter"}),
        );
    }
    let usage = resp
        .get("usageMetadata")
        .and_then(usage)
        .unwrap_or_default();
    Ok(json!({
        "id": id, "object": "chat.completion", "created": created, "model": model,
        "choices": choices, "usage": usage.to_openai(None),
    }))
}

/// Google's error object for an HTTP `code`: `{"error": {"code", "message", "status"}}`, the
/// status named as Google names it (`INVALID_ARGUMENT`, `UNAUTHENTICATED`, …).
pub fn error_body(code: u16, message: &str) -> Value {
    json!({"error": {"code": code, "message": message, "status": inbound::status_name(code)}})
}

/// A Gemini client's own `generateContent` body, for a Gemini route (the model is in the URL):
/// as it came, without the gateway's `mock` field.
pub fn inbound_passthrough_body(original: &Value) -> Vec<u8> {
    let mut body = original.clone();
    if let Some(o) = body.as_object_mut() {
        o.remove("mock");
    }
    crate::compact_json::to_vec(&body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_thought_signature_rides_in_the_call_id_and_goes_back_on_the_function_call() {
        let sig = "CiQB0e2Kb+/x9Q==";
        let part = json!({"functionCall": {"name": "read_file", "args": {"file_path": "a"}},
                          "thoughtSignature": sig});
        let answer = json!({"candidates": [{"content": {"role": "model", "parts": [part]},
                                            "finishReason": "STOP"}],
                            "modelVersion": "gemini-3-pro"});
        let chat = response_to_chat_completion(&answer, "chatcmpl-abc", "gemini-3-pro", 1).unwrap();
        let call = &chat["choices"][0]["message"]["tool_calls"][0];
        let id = call["id"].as_str().unwrap();
        assert!(
            id.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'),
            "{id}"
        );
        assert_eq!(split_signature(id).1.as_deref(), Some(sig));
        // The client sends the call back with the result; Gemini gets its signature again.
        let next = json!({"model": "g", "messages": [
            {"role": "user", "content": "read a"},
            {"role": "assistant", "content": null, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": id, "content": "hello"},
        ]});
        let body = chat_request_to_gemini(&next, 1024).unwrap();
        assert_eq!(body["contents"][1]["parts"][0]["thoughtSignature"], sig);
        assert_eq!(
            body["contents"][2]["parts"][0]["functionResponse"]["name"],
            "read_file"
        );
        // A call without a signature keeps its plain id.
        assert_eq!(split_signature("call_1"), ("call_1", None));
    }

    #[test]
    fn finish_reasons_map_to_openai() {
        assert_eq!(finish_reason("STOP", false), "stop");
        assert_eq!(finish_reason("STOP", true), "tool_calls");
        assert_eq!(finish_reason("MAX_TOKENS", true), "length");
        for r in [
            "SAFETY",
            "RECITATION",
            "BLOCKLIST",
            "PROHIBITED_CONTENT",
            "SPII",
        ] {
            assert_eq!(finish_reason(r, false), "content_filter");
        }
        assert_eq!(finish_reason("SOMETHING_NEW", false), "stop");
    }

    #[test]
    fn usage_counts_thoughts_as_reasoning_inside_completion() {
        let u = usage(&json!({"promptTokenCount": 30, "candidatesTokenCount": 5,
            "thoughtsTokenCount": 70, "cachedContentTokenCount": 20}))
        .unwrap();
        assert_eq!(u.prompt_tokens, 30);
        assert_eq!(u.completion_tokens, 75);
        assert_eq!(u.reasoning_tokens, 70);
        assert_eq!(u.cached_tokens, 20);
        assert!(usage(&json!({"trafficType": "ON_DEMAND"})).is_none());
    }

    #[test]
    fn an_error_event_ends_the_stream() {
        let mut t = StreamTranslator::new("x".into(), "m".into(), 1);
        t.push(r#"{"error":{"code":429,"message":"quota","status":"RESOURCE_EXHAUSTED"}}"#)
            .unwrap();
        assert!(t.is_done());
        assert!(t.error().unwrap().rate_limited());
        assert!(t.push("not json").is_ok(), "nothing is read after the end");
        let mut t = StreamTranslator::new("x".into(), "m".into(), 1);
        assert!(t.push("[1]").is_err());
    }
}
