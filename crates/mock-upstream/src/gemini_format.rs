//! Writes a [`Completion`] in Google's Gemini wire format: `streamGenerateContent?alt=sse` events
//! (`data: <GenerateContentResponse>` per token, thought parts with `"thought": true`, one event per
//! `functionCall`, cumulative `usageMetadata` on every event, the last one with `finishReason`; no
//! end marker), the `generateContent` body, and Google-shaped errors
//! (`{"error":{"code","message","status"}}`).

use serde_json::{json, Value};

use crate::completion::{Completion, Finish};
use crate::playback::Step;
use crate::recording::TokenKind;

/// The in-stream error written by `error_after`.
pub(crate) const STREAM_ERROR_EVENT: &str = "data: {\"error\": {\"code\": 503,\"message\": \"The model is overloaded. Please try again later.\",\"status\": \"UNAVAILABLE\"}}\n\n";

/// The fixed parts of one response.
pub(crate) struct GenerateContext {
    pub id: String,
    pub model: String,
    pub send_usage: bool,
    /// The `thoughtSignature` put on the first `functionCall` part (`signatures` option).
    pub signature: Option<String>,
}

/// The part of the k-th function call: the first carries the thought signature, if any.
fn call_part(ctx: &GenerateContext, k: usize, name: &str, args: Value) -> Value {
    let mut part = json!({"functionCall": {"name": name, "args": args}});
    if let (0, Some(sig)) = (k, &ctx.signature) {
        part["thoughtSignature"] = json!(sig);
    }
    part
}

fn finish_reason(f: Finish) -> &'static str {
    match f {
        // Gemini says STOP after function calls too.
        Finish::Stop | Finish::ToolCalls => "STOP",
        Finish::Length | Finish::InsufficientSystemResource => "MAX_TOKENS",
        Finish::ContentFilter => "SAFETY",
        Finish::Unknown => "A_NEW_REASON",
    }
}

/// `usageMetadata` after `reasoning` thought tokens and `output` answer tokens.
fn usage(c: &Completion, reasoning: u32, output: u32) -> Value {
    let mut u = json!({
        "promptTokenCount": c.prompt_tokens,
        "candidatesTokenCount": output,
        "totalTokenCount": c.prompt_tokens + reasoning + output,
        "promptTokensDetails": [{"modality": "TEXT", "tokenCount": c.prompt_tokens}],
    });
    if reasoning > 0 {
        u["thoughtsTokenCount"] = json!(reasoning);
    }
    if c.cached_tokens > 0 {
        u["cachedContentTokenCount"] = json!(c.cached_tokens);
    }
    u
}

fn response(ctx: &GenerateContext, candidate: Value, usage: Option<Value>) -> Value {
    let mut v = json!({
        "candidates": [candidate],
        "modelVersion": ctx.model,
        "responseId": ctx.id,
    });
    if let (true, Some(u)) = (ctx.send_usage, usage) {
        v["usageMetadata"] = u;
    }
    v
}

fn event(v: &Value) -> String {
    format!("data: {v}\r\n\r\n")
}

/// The whole stream as steps (unpaced, without faults).
pub(crate) fn stream_steps(ctx: &GenerateContext, c: &Completion) -> Vec<Step> {
    let mut steps = Vec::new();
    let (mut reasoning, mut output) = (0u32, 0u32);
    for word in &c.reasoning {
        reasoning += 1;
        let cand = json!({"content": {"parts": [{"text": word, "thought": true}], "role": "model"}, "index": 0});
        let v = response(ctx, cand, Some(usage(c, reasoning, output)));
        steps.push(Step::token(event(&v), TokenKind::Reasoning(word)));
    }
    for word in &c.content {
        output += 1;
        let cand = json!({"content": {"parts": [{"text": word}], "role": "model"}, "index": 0});
        let v = response(ctx, cand, Some(usage(c, reasoning, output)));
        steps.push(Step::token(event(&v), TokenKind::Content(word.clone())));
    }
    for (k, call) in c.tool_calls.iter().enumerate() {
        output += call.fragments.len() as u32;
        let args: Value = serde_json::from_str(&call.arguments()).unwrap_or_else(|_| json!({}));
        let cand = json!({"content": {"parts": [call_part(ctx, k, &call.name, args)], "role": "model"}, "index": 0});
        let v = response(ctx, cand, Some(usage(c, reasoning, output)));
        steps.push(Step::token(event(&v), TokenKind::ToolArguments));
    }
    let cand = json!({"content": {"parts": [{"text": ""}], "role": "model"},
        "finishReason": finish_reason(c.finish), "index": 0});
    let v = response(ctx, cand, Some(usage(c, reasoning, output)));
    steps.push(Step::frame(event(&v)));
    steps
}

/// The `generateContent` body.
pub(crate) fn body(ctx: &GenerateContext, c: &Completion) -> Value {
    let mut parts = Vec::new();
    if !c.reasoning.is_empty() {
        parts.push(json!({"text": c.reasoning_text(), "thought": true}));
    }
    if !c.content.is_empty() {
        parts.push(json!({"text": c.text()}));
    }
    for (k, call) in c.tool_calls.iter().enumerate() {
        let args: Value = serde_json::from_str(&call.arguments()).unwrap_or_else(|_| json!({}));
        parts.push(call_part(ctx, k, &call.name, args));
    }
    let output = c.completion_tokens() - c.reasoning_tokens();
    let cand = json!({"content": {"parts": parts, "role": "model"},
        "finishReason": finish_reason(c.finish), "index": 0});
    response(ctx, cand, Some(usage(c, c.reasoning_tokens(), output)))
}

/// The Google error body for `status`.
pub(crate) fn error_body(status: u16, model: &str) -> Value {
    let (canonical, message, reason) = match status {
        400 => ("INVALID_ARGUMENT", "Request contains an invalid argument.".to_string(), None),
        401 | 403 => (
            "INVALID_ARGUMENT",
            "API key not valid. Please pass a valid API key.".to_string(),
            Some("API_KEY_INVALID"),
        ),
        404 => (
            "NOT_FOUND",
            format!("models/{model} is not found for API version v1beta, or is not supported for generateContent."),
            None,
        ),
        429 => (
            "RESOURCE_EXHAUSTED",
            "You exceeded your current quota, please check your plan and billing details.".to_string(),
            None,
        ),
        503 => ("UNAVAILABLE", "The model is overloaded. Please try again later.".to_string(), None),
        s if s >= 500 => ("INTERNAL", "An internal error has occurred.".to_string(), None),
        s => ("UNKNOWN", format!("Mock upstream error (status {s})."), None),
    };
    // Google answers a bad key with 400, not 401.
    let code = if status == 401 { 400 } else { status };
    let mut e = json!({"code": code, "message": message, "status": canonical});
    if let Some(reason) = reason {
        e["details"] = json!([{"@type": "type.googleapis.com/google.rpc.ErrorInfo",
            "reason": reason, "domain": "googleapis.com"}]);
    }
    json!({ "error": e })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::options::{Behaviour, FinishOption};

    fn ctx() -> GenerateContext {
        GenerateContext {
            id: "r1".into(),
            model: "gemini-x".into(),
            send_usage: true,
            signature: None,
        }
    }

    fn events(steps: &[Step]) -> Vec<Value> {
        steps
            .iter()
            .filter_map(|s| match s {
                Step::Send { bytes, .. } => {
                    let text = std::str::from_utf8(bytes).unwrap();
                    Some(serde_json::from_str(text.strip_prefix("data: ")?.trim_end()).unwrap())
                }
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_stream_has_thoughts_text_calls_cumulative_usage_and_a_last_finish() {
        let mut b = Behaviour::for_model("gemini-x", true);
        b.tokens = 3;
        let c = Completion::plan(
            &b,
            &json!({"contents": [{"role": "user", "parts": [{"text": "hi there"}]}]}),
        );
        let ev = events(&stream_steps(&ctx(), &c));
        let thoughts = ev
            .iter()
            .filter(|e| e.pointer("/candidates/0/content/parts/0/thought") == Some(&json!(true)))
            .count();
        assert_eq!(thoughts as u32, c.reasoning_tokens());
        let last = ev.last().unwrap();
        assert_eq!(last["candidates"][0]["finishReason"], "STOP");
        assert_eq!(last["usageMetadata"]["candidatesTokenCount"], 3);
        assert_eq!(
            last["usageMetadata"]["thoughtsTokenCount"],
            c.reasoning_tokens()
        );
        assert_eq!(last["usageMetadata"]["promptTokenCount"], 4 + 2);

        b.reasoning = 0;
        b.tool_calls = 1;
        let c = Completion::plan(
            &b,
            &json!({"contents": [], "tools": [{"functionDeclarations": [
            {"name": "lookup", "parameters": {"type": "object", "properties": {"q": {"type": "string"}}}}]}]}),
        );
        let ev = events(&stream_steps(&ctx(), &c));
        assert_eq!(
            ev[0]["candidates"][0]["content"]["parts"][0]["functionCall"],
            json!({"name": "lookup", "args": {"q": "Paris"}})
        );
        assert_eq!(ev.last().unwrap()["candidates"][0]["finishReason"], "STOP");

        b.tool_calls = 0;
        b.finish = FinishOption::ContentFilter;
        let c = Completion::plan(&b, &json!({"contents": []}));
        assert_eq!(body(&ctx(), &c)["candidates"][0]["finishReason"], "SAFETY");
    }

    #[test]
    fn errors_are_google_shaped() {
        let key = error_body(401, "m");
        assert_eq!(key["error"]["code"], 400);
        assert_eq!(key["error"]["details"][0]["reason"], "API_KEY_INVALID");
        assert_eq!(
            error_body(429, "m")["error"]["status"],
            "RESOURCE_EXHAUSTED"
        );
        assert_eq!(error_body(404, "m")["error"]["status"], "NOT_FOUND");
    }
}
