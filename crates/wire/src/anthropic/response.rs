//! Non-streaming Anthropic `Message` → OpenAI `chat.completion`.

use super::{finish_reason, TranslateError, Usage};
use crate::finish::FinishReason;
use serde_json::{json, Map, Value};

/// Translates a complete Anthropic Message into an OpenAI chat completion stamped with `id`, `model` and
/// `created`.
///
/// - `text` blocks are joined into `message.content` (`null` when there is no text but there are tool calls);
/// - `thinking` blocks are joined into `message.reasoning_content`, the last signature goes into
///   `message.reasoning_signature`, and every thinking/redacted block is kept verbatim in
///   `message.thinking_blocks` (extensions, so a client can send them back);
/// - `tool_use` blocks → `message.tool_calls` with `arguments` as a JSON string;
/// - `stop_reason` → `finish_reason` ([`super::finish_reason`]); usage → [`Usage::to_openai`].
///
/// Fails when `msg` is not a Message (no `content` array), e.g. an error body.
pub fn message_to_chat_completion(
    msg: &Value,
    id: &str,
    model: &str,
    created: u64,
) -> Result<Value, TranslateError> {
    if msg.get("type").and_then(Value::as_str) == Some("error") {
        let upstream = super::UpstreamError::from_anthropic(msg);
        return Err(TranslateError::new("type", upstream.to_string()));
    }
    let blocks = msg
        .get("content")
        .and_then(Value::as_array)
        .ok_or_else(|| {
            TranslateError::new("content", "the upstream message has no content array")
        })?;

    let mut text = String::new();
    let mut reasoning = String::new();
    let mut signature: Option<&str> = None;
    let mut thinking_blocks = Vec::new();
    let mut tool_calls = Vec::new();
    for block in blocks {
        match block.get("type").and_then(Value::as_str).unwrap_or_default() {
            "text" => text.push_str(block["text"].as_str().unwrap_or_default()),
            "thinking" => {
                let thinking = block["thinking"].as_str().unwrap_or_default();
                reasoning.push_str(thinking);
                let sig = block["signature"].as_str().unwrap_or_default();
                if !sig.is_empty() {
                    signature = Some(sig);
                }
                thinking_blocks
                    .push(json!({"type": "thinking", "thinking": thinking, "signature": sig}));
            }
            "redacted_thinking" => thinking_blocks.push(
                json!({"type": "redacted_thinking", "data": block["data"].as_str().unwrap_or_default()}),
            ),
            "tool_use" => {
                let input = block.get("input").cloned().unwrap_or_else(|| json!({}));
                tool_calls.push(json!({
                    "id": block["id"].as_str().unwrap_or_default(),
                    "type": "function",
                    "function": {
                        "name": block["name"].as_str().unwrap_or_default(),
                        "arguments": input.to_string(),
                    },
                }));
            }
            _ => {}
        }
    }

    let mut message = Map::new();
    message.insert("role".into(), json!("assistant"));
    let content = if text.is_empty() && !tool_calls.is_empty() {
        Value::Null
    } else {
        json!(text)
    };
    message.insert("content".into(), content);
    if !reasoning.is_empty() {
        message.insert("reasoning_content".into(), json!(reasoning));
    }
    if let Some(sig) = signature {
        message.insert("reasoning_signature".into(), json!(sig));
    }
    if !thinking_blocks.is_empty() {
        message.insert("thinking_blocks".into(), Value::Array(thinking_blocks));
    }
    if !tool_calls.is_empty() {
        message.insert("tool_calls".into(), Value::Array(tool_calls));
    }
    message.insert("refusal".into(), Value::Null);

    let finish = msg
        .get("stop_reason")
        .and_then(Value::as_str)
        .map_or(FinishReason::Stop, finish_reason);
    let usage = msg
        .get("usage")
        .map(Usage::from_anthropic)
        .unwrap_or_default();
    Ok(json!({
        "id": id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "message": Value::Object(message), "logprobs": null, "finish_reason": finish}],
        "usage": usage.to_openai(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_message_becomes_chat_completion() {
        let msg = json!({"id": "msg_1", "type": "message", "role": "assistant", "model": "claude",
            "content": [{"type": "text", "text": "Hi"}, {"type": "text", "text": " there"}],
            "stop_reason": "end_turn", "stop_sequence": null,
            "usage": {"input_tokens": 12, "output_tokens": 5, "cache_read_input_tokens": 100, "cache_creation_input_tokens": 0}});
        let out =
            message_to_chat_completion(&msg, "chatcmpl-9", "claude-alias", 1700000000).unwrap();
        assert_eq!(
            out,
            json!({
                "id": "chatcmpl-9", "object": "chat.completion", "created": 1700000000, "model": "claude-alias",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hi there", "refusal": null},
                             "logprobs": null, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 112, "completion_tokens": 5, "total_tokens": 117,
                          "prompt_tokens_details": {"cached_tokens": 100, "cache_write_tokens": 0}},
            })
        );
    }

    #[test]
    fn thinking_and_tool_use() {
        let msg = json!({"type": "message", "content": [
            {"type": "thinking", "thinking": "hmm", "signature": "S1"},
            {"type": "redacted_thinking", "data": "R"},
            {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"location": "Paris"}},
        ], "stop_reason": "tool_use", "usage": {"input_tokens": 377, "output_tokens": 65}});
        let out = message_to_chat_completion(&msg, "c", "m", 0).unwrap();
        let message = &out["choices"][0]["message"];
        assert!(message["content"].is_null());
        assert_eq!(message["reasoning_content"], "hmm");
        assert_eq!(message["reasoning_signature"], "S1");
        assert_eq!(
            message["thinking_blocks"],
            json!([{"type": "thinking", "thinking": "hmm", "signature": "S1"}, {"type": "redacted_thinking", "data": "R"}])
        );
        assert_eq!(
            message["tool_calls"],
            json!([{"id": "toolu_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"location\":\"Paris\"}"}}])
        );
        assert_eq!(out["choices"][0]["finish_reason"], "tool_calls");
        assert_eq!(out["usage"]["total_tokens"], 442);
    }

    #[test]
    fn empty_message_and_errors() {
        let out = message_to_chat_completion(
            &json!({"content": [], "stop_reason": "refusal"}),
            "c",
            "m",
            0,
        )
        .unwrap();
        assert_eq!(out["choices"][0]["message"]["content"], "");
        assert_eq!(out["choices"][0]["finish_reason"], "content_filter");
        assert_eq!(out["usage"]["total_tokens"], 0);

        let err = message_to_chat_completion(&json!({"foo": 1}), "c", "m", 0).unwrap_err();
        assert_eq!(err.param, "content");
        let err = message_to_chat_completion(
            &json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}),
            "c",
            "m",
            0,
        )
        .unwrap_err();
        assert!(err.message.contains("overloaded_error"), "{}", err.message);
    }
}
