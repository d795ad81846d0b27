//! Pure translation between OpenAI Chat Completions and the Anthropic Messages API.
//!
//! Four entry points, none of which does IO:
//! - [`chat_request_to_messages`]: an OpenAI chat request body becomes an Anthropic `POST /v1/messages` body.
//! - [`StreamTranslator`]: Anthropic SSE events, fed one at a time, become OpenAI `chat.completion.chunk` objects.
//! - [`message_to_chat_completion`]: a non-streaming Anthropic `Message` becomes an OpenAI `chat.completion`.
//! - [`error_to_openai`]: an Anthropic error body becomes the status the gateway should act on and an
//!   OpenAI-shaped error body.
//!
//! Thinking round trip (extension fields, not part of OpenAI's schema):
//! - Responses carry the model's thinking text in `reasoning_content` (the DeepSeek/LiteLLM convention) and the
//!   thinking block's opaque signature in `reasoning_signature` (streams: `delta.reasoning_signature`, once per
//!   thinking block). Non-streaming responses also carry `thinking_blocks`, the Anthropic thinking and
//!   `redacted_thinking` blocks verbatim (LiteLLM's name for the same thing).
//! - Requests accept the same fields on assistant messages: `thinking_blocks` (sent back verbatim) or else
//!   `reasoning_content` + `reasoning_signature` (rebuilt into one signed `thinking` block placed first in the
//!   assistant turn, as Anthropic requires when tools and thinking are combined). Unsigned reasoning is dropped,
//!   because Anthropic rejects a thinking block without its signature.
//!
//! Mapping tables (stop reasons, usage, error types) follow `reference/wire-formats.md` §6.4.

mod error;
pub mod inbound;
mod request;
mod response;
mod stream;

pub use error::{error_to_openai, mask_credentials, UpstreamError};
pub use request::{
    chat_request_to_messages, upstream_max_tokens, DEFAULT_THINKING_BUDGET, THINKING_BUDGETS,
};
pub use response::message_to_chat_completion;
pub use stream::StreamTranslator;

use crate::finish::FinishReason;
use serde_json::{json, Value};
use std::fmt;

/// A request or response that cannot be translated. `param` names the offending field the way OpenAI's
/// error body does (`messages[2].tool_calls[0].function.arguments`), so the gateway can answer 400 with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TranslateError {
    pub param: String,
    pub message: String,
}

impl TranslateError {
    pub fn new(param: impl Into<String>, message: impl Into<String>) -> Self {
        TranslateError {
            param: param.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for TranslateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (param: {})", self.message, self.param)
    }
}

impl std::error::Error for TranslateError {}

/// Token usage reported by Anthropic, kept in its own terms; [`Usage::to_openai`] gives the OpenAI shape.
///
/// Anthropic's `input_tokens` excludes cache reads and cache writes; OpenAI's `prompt_tokens` includes them,
/// so `prompt_tokens = input_tokens + cache_read_input_tokens + cache_creation_input_tokens`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Uncached input tokens (`usage.input_tokens`).
    pub input_tokens: u64,
    /// Output tokens, thinking included (`usage.output_tokens`).
    pub output_tokens: u64,
    /// Input tokens read from the prompt cache (`usage.cache_read_input_tokens`).
    pub cache_read_tokens: u64,
    /// Input tokens written to the prompt cache (`usage.cache_creation_input_tokens`).
    pub cache_creation_tokens: u64,
    /// Of those, the ones written for an hour (`usage.cache_creation.ephemeral_1h_input_tokens`).
    pub cache_creation_1h_tokens: u64,
    /// Thinking tokens, when Anthropic reports them (`usage.output_tokens_details.thinking_tokens`).
    pub thinking_tokens: Option<u64>,
}

impl Usage {
    /// OpenAI `prompt_tokens`: every input token, cached or not.
    pub fn prompt_tokens(&self) -> u64 {
        self.input_tokens
            .saturating_add(self.cache_read_tokens)
            .saturating_add(self.cache_creation_tokens)
    }

    /// OpenAI `completion_tokens`: every output token, thinking included.
    pub fn completion_tokens(&self) -> u64 {
        self.output_tokens
    }

    pub fn total_tokens(&self) -> u64 {
        self.prompt_tokens()
            .saturating_add(self.completion_tokens())
    }

    /// The OpenAI `usage` object: `prompt_tokens`, `completion_tokens`, `total_tokens`,
    /// `prompt_tokens_details.{cached_tokens, cache_write_tokens}` and, when known,
    /// `completion_tokens_details.reasoning_tokens`.
    pub fn to_openai(&self) -> Value {
        let mut usage = json!({
            "prompt_tokens": self.prompt_tokens(),
            "completion_tokens": self.completion_tokens(),
            "total_tokens": self.total_tokens(),
            "prompt_tokens_details": {
                "cached_tokens": self.cache_read_tokens,
                "cache_write_tokens": self.cache_creation_tokens,
            },
        });
        if self.cache_creation_1h_tokens > 0 {
            usage["prompt_tokens_details"]["cache_write_1h_tokens"] =
                self.cache_creation_1h_tokens.into();
        }
        if let Some(thinking) = self.thinking_tokens {
            usage["completion_tokens_details"] = json!({ "reasoning_tokens": thinking });
        }
        usage
    }

    /// Reads an Anthropic `usage` object. Absent counters are zero.
    pub fn from_anthropic(usage: &Value) -> Usage {
        let mut out = Usage::default();
        out.merge_anthropic(usage);
        out
    }

    /// Overwrites the counters present in `usage` and keeps the others: `message_delta.usage` is cumulative
    /// and may carry only `output_tokens`.
    pub fn merge_anthropic(&mut self, usage: &Value) {
        let field = |name: &str| usage.get(name).and_then(Value::as_u64);
        if let Some(n) = field("input_tokens") {
            self.input_tokens = n;
        }
        if let Some(n) = field("output_tokens") {
            self.output_tokens = n;
        }
        if let Some(n) = field("cache_read_input_tokens") {
            self.cache_read_tokens = n;
        }
        if let Some(n) = field("cache_creation_input_tokens") {
            self.cache_creation_tokens = n;
        }
        if let Some(n) = usage
            .get("cache_creation")
            .and_then(|c| c.get("ephemeral_1h_input_tokens"))
            .and_then(Value::as_u64)
        {
            self.cache_creation_1h_tokens = n.min(self.cache_creation_tokens);
        }
        if let Some(n) = usage
            .get("output_tokens_details")
            .and_then(|d| d.get("thinking_tokens"))
            .and_then(Value::as_u64)
        {
            self.thinking_tokens = Some(n);
        }
    }
}

/// Anthropic `stop_reason` read as a [`FinishReason`] ([`FinishReason::from_anthropic`]).
pub fn finish_reason(stop_reason: &str) -> FinishReason {
    FinishReason::from_anthropic(stop_reason)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_prompt_tokens_include_cache_reads_and_writes() {
        let usage = Usage::from_anthropic(&json!({
            "input_tokens": 10, "output_tokens": 5,
            "cache_read_input_tokens": 100, "cache_creation_input_tokens": 7
        }));
        assert_eq!(usage.prompt_tokens(), 117);
        assert_eq!(usage.completion_tokens(), 5);
        assert_eq!(usage.total_tokens(), 122);
        let openai = usage.to_openai();
        assert_eq!(openai["prompt_tokens"], 117);
        assert_eq!(openai["completion_tokens"], 5);
        assert_eq!(openai["total_tokens"], 122);
        assert_eq!(openai["prompt_tokens_details"]["cached_tokens"], 100);
        assert_eq!(openai["prompt_tokens_details"]["cache_write_tokens"], 7);
        assert!(openai.get("completion_tokens_details").is_none());
    }

    #[test]
    fn usage_merge_keeps_counters_the_delta_omits() {
        let mut usage = Usage::from_anthropic(&json!({"input_tokens": 11, "output_tokens": 1}));
        usage.merge_anthropic(
            &json!({"output_tokens": 6, "output_tokens_details": {"thinking_tokens": 4}}),
        );
        assert_eq!(usage.input_tokens, 11);
        assert_eq!(usage.output_tokens, 6);
        assert_eq!(usage.thinking_tokens, Some(4));
        assert_eq!(
            usage.to_openai()["completion_tokens_details"]["reasoning_tokens"],
            4
        );
    }

    #[test]
    fn stop_reasons_map_to_openai_finish_reasons() {
        assert_eq!(finish_reason("end_turn"), "stop");
        assert_eq!(finish_reason("stop_sequence"), "stop");
        assert_eq!(finish_reason("pause_turn"), "stop");
        assert_eq!(finish_reason("max_tokens"), "length");
        assert_eq!(finish_reason("model_context_window_exceeded"), "length");
        assert_eq!(finish_reason("tool_use"), "tool_calls");
        assert_eq!(finish_reason("refusal"), "content_filter");
        assert_eq!(finish_reason("something_new"), "stop");
    }

    #[test]
    fn translate_error_displays_message_and_param() {
        let err = TranslateError::new("messages[0].content", "must not be empty");
        assert_eq!(
            err.to_string(),
            "must not be empty (param: messages[0].content)"
        );
    }
}
