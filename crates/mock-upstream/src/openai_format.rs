//! Writes a [`Completion`] in the OpenAI Chat Completions wire format, and in DeepSeek's variant of it
//! (`reasoning_content` deltas, `prompt_cache_hit_tokens` / `prompt_cache_miss_tokens` usage on the final
//! chunk). Shapes and key order follow the real recordings: `data: <compact json>\n\n` per chunk, the
//! role chunk first, one token per chunk, a `delta: {}` chunk with `finish_reason`, the `choices: []`
//! usage chunk when asked, then `data: [DONE]\n\n`. Also the OpenAI-shaped error bodies.

use serde_json::{json, Map, Value};

use crate::completion::{Completion, Finish};
use crate::playback::{self, Step};
use crate::recording::{Dialect, TokenKind};

/// The in-stream error written by `error_after`.
pub(crate) const STREAM_ERROR_EVENT: &str = "data: {\"error\":{\"message\":\"mock upstream error\",\"type\":\"server_error\",\"param\":null,\"code\":\"server_error\"}}\n\n";

const OPENAI_FINGERPRINT: &str = "fp_mock0a1b2c3d";
const DEEPSEEK_FINGERPRINT: &str = "fp_mock0a1b2c_prod0820_fp8_kvcache";

/// The fixed parts of every chunk of one response.
pub(crate) struct ChatContext {
    pub dialect: Dialect,
    pub id: String,
    pub created: u64,
    pub model: String,
    /// Whether usage is reported at all.
    pub send_usage: bool,
}

impl ChatContext {
    fn deepseek(&self) -> bool {
        self.dialect == Dialect::DeepSeek
    }

    /// A chunk with the given choices and `usage` (`None` = no `usage` key).
    fn chunk(&self, choices: Value, usage: Option<Value>, seq: usize) -> String {
        let mut m = Map::new();
        m.insert("id".into(), json!(self.id));
        m.insert("object".into(), json!("chat.completion.chunk"));
        m.insert("created".into(), json!(self.created));
        m.insert("model".into(), json!(self.model));
        if !self.deepseek() {
            m.insert("service_tier".into(), json!("default"));
        }
        m.insert("system_fingerprint".into(), json!(self.fingerprint()));
        m.insert("choices".into(), choices);
        if let Some(usage) = usage {
            m.insert("usage".into(), usage);
        }
        if !self.deepseek() {
            m.insert("obfuscation".into(), json!(obfuscation(seq)));
        }
        format!("data: {}\n\n", Value::Object(m))
    }

    fn fingerprint(&self) -> &'static str {
        if self.deepseek() {
            DEEPSEEK_FINGERPRINT
        } else {
            OPENAI_FINGERPRINT
        }
    }

    /// `usage` on a chunk that is not the one carrying the numbers.
    fn usage_placeholder(&self) -> Option<Value> {
        // DeepSeek always sends the key; OpenAI only when a usage chunk follows (spec: null until then).
        (self.deepseek() || self.send_usage).then_some(Value::Null)
    }
}

/// OpenAI streams pad chunks with a random-looking `obfuscation` string; ours is deterministic.
fn obfuscation(seq: usize) -> String {
    const ALPHABET: &[u8] = b"aZ3kQ9xLm2PwT7vRb8NcY4hD";
    let len = 4 + (seq * 7) % 11;
    (0..len)
        .map(|i| ALPHABET[(seq * 5 + i * 3) % ALPHABET.len()] as char)
        .collect()
}

fn choice(delta: Value, finish: Option<&str>) -> Value {
    json!([{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}])
}

fn finish_reason(f: Finish) -> &'static str {
    match f {
        Finish::Stop => "stop",
        Finish::Length => "length",
        Finish::ToolCalls => "tool_calls",
        Finish::ContentFilter => "content_filter",
        Finish::InsufficientSystemResource => "insufficient_system_resource",
        Finish::Unknown => "a_new_reason",
    }
}

fn tool_call_id(ctx: &ChatContext, k: usize) -> String {
    let base = ctx.id.replace(['-', '_'], "");
    let tail = &base[base.len().saturating_sub(16)..];
    if ctx.deepseek() {
        format!("call_{k:02}_mock{tail}")
    } else {
        format!("call_mock{tail}{k:02}")
    }
}

/// The usage object of this dialect.
pub(crate) fn usage(dialect: Dialect, c: &Completion) -> Value {
    let completion = c.completion_tokens();
    let total = c.prompt_tokens + completion;
    if dialect == Dialect::DeepSeek {
        json!({
            "prompt_tokens": c.prompt_tokens,
            "completion_tokens": completion,
            "total_tokens": total,
            "prompt_tokens_details": {"cached_tokens": c.cached_tokens},
            "completion_tokens_details": {"reasoning_tokens": c.reasoning_tokens()},
            "prompt_cache_hit_tokens": c.cached_tokens,
            "prompt_cache_miss_tokens": c.prompt_tokens - c.cached_tokens,
        })
    } else {
        json!({
            "prompt_tokens": c.prompt_tokens,
            "completion_tokens": completion,
            "total_tokens": total,
            "prompt_tokens_details": {"cached_tokens": c.cached_tokens, "audio_tokens": 0},
            "completion_tokens_details": {
                "reasoning_tokens": c.reasoning_tokens(),
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0
            },
        })
    }
}

/// The whole stream as steps (unpaced, without faults).
pub(crate) fn stream_steps(ctx: &ChatContext, c: &Completion) -> Vec<Step> {
    let mut steps = Vec::new();
    let mut seq = 0usize;
    let mut next_seq = || {
        seq += 1;
        seq
    };
    let reasoning = !c.reasoning.is_empty();
    let tools = !c.tool_calls.is_empty();

    let role_delta = match (ctx.deepseek(), reasoning, tools) {
        (true, true, _) => json!({"role": "assistant", "content": null, "reasoning_content": ""}),
        (true, false, true) | (false, _, true) => json!({"role": "assistant", "content": null}),
        (true, false, false) => json!({"role": "assistant", "content": ""}),
        (false, _, false) => json!({"role": "assistant", "content": "", "refusal": null}),
    };
    steps.push(Step::frame(ctx.chunk(
        choice(role_delta, None),
        ctx.usage_placeholder(),
        next_seq(),
    )));

    for word in &c.reasoning {
        let delta = json!({"content": null, "reasoning_content": word});
        steps.push(Step::token(
            ctx.chunk(choice(delta, None), ctx.usage_placeholder(), next_seq()),
            TokenKind::Reasoning(word),
        ));
    }
    for word in &c.content {
        let delta = if ctx.deepseek() && reasoning {
            json!({"content": word, "reasoning_content": null})
        } else {
            json!({"content": word})
        };
        steps.push(Step::token(
            ctx.chunk(choice(delta, None), ctx.usage_placeholder(), next_seq()),
            TokenKind::Content(word.clone()),
        ));
    }
    for (k, call) in c.tool_calls.iter().enumerate() {
        let header = json!({"tool_calls": [{
            "index": k,
            "id": tool_call_id(ctx, k),
            "type": "function",
            "function": {"name": call.name, "arguments": ""}
        }]});
        steps.push(Step::frame(ctx.chunk(
            choice(header, None),
            ctx.usage_placeholder(),
            next_seq(),
        )));
        for fragment in &call.fragments {
            let delta = json!({"tool_calls": [{"index": k, "function": {"arguments": fragment}}]});
            steps.push(Step::token(
                ctx.chunk(choice(delta, None), ctx.usage_placeholder(), next_seq()),
                TokenKind::ToolArguments,
            ));
        }
    }

    let finish = finish_reason(c.finish);
    if ctx.deepseek() {
        let delta = if reasoning {
            json!({"content": "", "reasoning_content": null})
        } else {
            json!({"content": ""})
        };
        let usage = if ctx.send_usage {
            usage(ctx.dialect, c)
        } else {
            Value::Null
        };
        steps.push(Step::frame(ctx.chunk(
            choice(delta, Some(finish)),
            Some(usage),
            next_seq(),
        )));
    } else {
        steps.push(Step::frame(ctx.chunk(
            choice(json!({}), Some(finish)),
            ctx.usage_placeholder(),
            next_seq(),
        )));
        if ctx.send_usage {
            steps.push(Step::frame(ctx.chunk(
                json!([]),
                Some(usage(ctx.dialect, c)),
                next_seq(),
            )));
        }
    }
    steps.push(Step::frame("data: [DONE]\n\n"));
    steps
}

/// The non-streaming `chat.completion` body.
pub(crate) fn body(ctx: &ChatContext, c: &Completion) -> Value {
    let mut message = Map::new();
    message.insert("role".into(), json!("assistant"));
    if c.tool_calls.is_empty() {
        message.insert("content".into(), json!(c.text()));
    } else {
        message.insert("content".into(), Value::Null);
    }
    if ctx.deepseek() && !c.reasoning.is_empty() {
        message.insert("reasoning_content".into(), json!(c.reasoning_text()));
    }
    if !c.tool_calls.is_empty() {
        let calls: Vec<Value> = c
            .tool_calls
            .iter()
            .enumerate()
            .map(|(k, call)| {
                json!({
                    "id": tool_call_id(ctx, k),
                    "type": "function",
                    "function": {"name": call.name, "arguments": call.arguments()}
                })
            })
            .collect();
        message.insert("tool_calls".into(), Value::Array(calls));
    }
    if !ctx.deepseek() {
        message.insert("refusal".into(), Value::Null);
        message.insert("annotations".into(), json!([]));
    }
    let mut m = Map::new();
    m.insert("id".into(), json!(ctx.id));
    m.insert("object".into(), json!("chat.completion"));
    m.insert("created".into(), json!(ctx.created));
    m.insert("model".into(), json!(ctx.model));
    m.insert(
        "choices".into(),
        json!([{
            "index": 0,
            "message": Value::Object(message),
            "logprobs": null,
            "finish_reason": finish_reason(c.finish)
        }]),
    );
    if ctx.send_usage {
        m.insert("usage".into(), usage(ctx.dialect, c));
    }
    if !ctx.deepseek() {
        m.insert("service_tier".into(), json!("default"));
    }
    m.insert("system_fingerprint".into(), json!(ctx.fingerprint()));
    Value::Object(m)
}

/// The OpenAI-shaped error body for `status` (DeepSeek uses the same shape, with its own 401 text).
pub(crate) fn error_body(dialect: Dialect, status: u16, model: &str) -> Value {
    let (message, kind, code): (String, &str, Value) = match status {
        400 => (
            "Invalid request (mock upstream status 400).".into(),
            "invalid_request_error",
            Value::Null,
        ),
        401 if dialect == Dialect::DeepSeek => (
            "Authentication Fails, Your api key: ****mock is invalid".into(),
            "authentication_error",
            json!("invalid_request_error"),
        ),
        401 => (
            "Incorrect API key provided: sk-mo****ock. You can find your API key at https://platform.openai.com/account/api-keys.".into(),
            "invalid_request_error",
            json!("invalid_api_key"),
        ),
        402 => (
            "Insufficient Balance".into(),
            "unknown_error",
            json!("invalid_request_error"),
        ),
        403 => (
            "Country, region, or territory not supported".into(),
            "request_forbidden",
            json!("unsupported_country_region_territory"),
        ),
        404 => (
            format!("The model `{model}` does not exist or you do not have access to it."),
            "invalid_request_error",
            json!("model_not_found"),
        ),
        429 => (
            format!("Rate limit reached for {model} in organization org-mock on requests per min (RPM): Limit 3, Used 3, Requested 1. Please try again in 1s."),
            "requests",
            json!("rate_limit_exceeded"),
        ),
        500 => (
            "The server had an error while processing your request. Sorry about that!".into(),
            "server_error",
            Value::Null,
        ),
        503 => (
            "The engine is currently overloaded, please try again later.".into(),
            "server_error",
            Value::Null,
        ),
        s if s >= 500 => (
            format!("Mock upstream error (status {s})."),
            "server_error",
            Value::Null,
        ),
        s => (
            format!("Mock upstream error (status {s})."),
            "invalid_request_error",
            Value::Null,
        ),
    };
    invalid_request(message, kind, None, code)
}

/// A free-form OpenAI-shaped error body.
pub(crate) fn invalid_request(
    message: String,
    kind: &str,
    param: Option<&str>,
    code: Value,
) -> Value {
    json!({"error": {"message": message, "type": kind, "param": param, "code": code}})
}

/// A recorded chat stream played as it is: each event one frame; a chunk whose delta carries text,
/// reasoning or a tool call counts as a token for the stream record.
pub(crate) fn transcript_steps(transcript: &str) -> Vec<Step> {
    playback::transcript_steps(transcript, |event| {
        if event.contains("\"reasoning_content\":\"") {
            Some(TokenKind::Reasoning(""))
        } else if event.contains("\"tool_calls\":[") {
            Some(TokenKind::ToolArguments)
        } else if event.contains("\"content\":\"") {
            Some(TokenKind::Content("".into()))
        } else {
            None
        }
    })
}
