//! A `chat.completion.chunk` the gateway writes itself (translated from another dialect), held
//! typed rather than as a `serde_json::Value`, and serialised straight into bytes.
//!
//! A translated stream yields one such chunk per upstream delta; building and freeing a `Value`
//! tree (four nested maps) per chunk was most of the translation's cost (issue 13, M9). A
//! [`ChatChunk`] is the stamp (shared), whether it carries the role, one delta field and the
//! finish reason; [`ChatChunk::write_json`] writes exactly the bytes the `Value` it replaced
//! serialised to, fields in the same order, and [`ChatChunk::to_value`] still gives the `Value`
//! for the rare caller that edits a chunk.

use std::sync::Arc;

use serde::Serialize;
use serde_json::Value;

use crate::finish::FinishReason;

/// What translated chunks are stamped with: the gateway's id, the model name the client asked
/// for, and the creation time (unix seconds).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stamp {
    pub id: String,
    pub model: String,
    pub created: u64,
}

/// The one field a translated chunk's `delta` carries (besides `role` on the first chunk).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delta {
    /// `delta: {}` (the finish chunk).
    Empty,
    Content(String),
    ReasoningContent(String),
    /// The signature of an Anthropic thinking block (the gateway's own extension).
    ReasoningSignature(String),
    /// `tool_calls: [{index, id, type: "function", function: {name, arguments: ""}}]`.
    ToolCallStart {
        index: u64,
        id: String,
        name: String,
    },
    /// `tool_calls: [{index, function: {arguments}}]`.
    ToolCallArguments {
        index: u64,
        arguments: String,
    },
}

/// One translated `chat.completion.chunk` with a single choice (index 0).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatChunk {
    /// Shared by every chunk of a stream, so a chunk costs no copy of the id and model.
    pub stamp: Arc<Stamp>,
    /// Whether `delta.role = "assistant"` is sent (the stream's first chunk).
    pub role: bool,
    pub delta: Delta,
    /// Written as OpenAI's `finish_reason`.
    pub finish_reason: Option<FinishReason>,
}

impl ChatChunk {
    /// Appends the chunk's compact JSON to `out`.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        // Serialising plain strings and integers into a Vec cannot fail (no IO, no maps with
        // non-string keys); an empty object keeps the frame valid JSON should it ever.
        if serde_json::to_writer(&mut *out, self).is_err() {
            out.extend_from_slice(b"{}");
        }
    }

    /// The chunk as a JSON value (same fields, same order as [`Self::write_json`]).
    pub fn to_value(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }

    /// Every piece of generated text the chunk carries, as the meter counts it: content,
    /// reasoning, a tool call's name and arguments (not the signature, which is not generated
    /// text the client sees).
    pub fn for_each_text(&self, mut f: impl FnMut(&str)) {
        match &self.delta {
            Delta::Content(t) | Delta::ReasoningContent(t) => f(t),
            Delta::ToolCallStart { name, .. } => f(name),
            Delta::ToolCallArguments { arguments, .. } => f(arguments),
            Delta::Empty | Delta::ReasoningSignature(_) => {}
        }
    }
}

/// The wire shape, borrowed from the chunk; field order is the order on the wire.
#[derive(Serialize)]
struct Wire<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    choices: [WireChoice<'a>; 1],
}

#[derive(Serialize)]
struct WireChoice<'a> {
    index: u64,
    delta: WireDelta<'a>,
    /// Always `null`: serialised from `()`.
    logprobs: (),
    finish_reason: Option<FinishReason>,
}

#[derive(Serialize)]
struct WireDelta<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    content: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reasoning_content: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reasoning_signature: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_calls: Option<[WireCall<'a>; 1]>,
}

#[derive(Serialize)]
struct WireCall<'a> {
    index: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    kind: Option<&'static str>,
    function: WireFunction<'a>,
}

#[derive(Serialize)]
struct WireFunction<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    arguments: &'a str,
}

impl Serialize for ChatChunk {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut delta = WireDelta {
            role: self.role.then_some("assistant"),
            content: None,
            reasoning_content: None,
            reasoning_signature: None,
            tool_calls: None,
        };
        match &self.delta {
            Delta::Empty => {}
            Delta::Content(t) => delta.content = Some(t),
            Delta::ReasoningContent(t) => delta.reasoning_content = Some(t),
            Delta::ReasoningSignature(t) => delta.reasoning_signature = Some(t),
            Delta::ToolCallStart { index, id, name } => {
                delta.tool_calls = Some([WireCall {
                    index: *index,
                    id: Some(id),
                    kind: Some("function"),
                    function: WireFunction {
                        name: Some(name),
                        arguments: "",
                    },
                }]);
            }
            Delta::ToolCallArguments { index, arguments } => {
                delta.tool_calls = Some([WireCall {
                    index: *index,
                    id: None,
                    kind: None,
                    function: WireFunction {
                        name: None,
                        arguments,
                    },
                }]);
            }
        }
        Wire {
            id: &self.stamp.id,
            object: "chat.completion.chunk",
            created: self.stamp.created,
            model: &self.stamp.model,
            choices: [WireChoice {
                index: 0,
                delta,
                logprobs: (),
                finish_reason: self.finish_reason,
            }],
        }
        .serialize(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn chunk(role: bool, delta: Delta, finish: Option<FinishReason>) -> ChatChunk {
        ChatChunk {
            stamp: Arc::new(Stamp {
                id: "chatcmpl-1".into(),
                model: "m \"x\"".into(),
                created: 7,
            }),
            role,
            delta,
            finish_reason: finish,
        }
    }

    /// The typed bytes are the bytes of the `json!` value each chunk used to be built as.
    #[test]
    fn bytes_match_the_value_they_replace() {
        let cases = [
            (
                chunk(true, Delta::Content(String::new()), None),
                json!({"role": "assistant", "content": ""}),
            ),
            (
                chunk(false, Delta::ReasoningContent("a \"q\"\n".into()), None),
                json!({"reasoning_content": "a \"q\"\n"}),
            ),
            (
                chunk(false, Delta::ReasoningSignature("S==".into()), None),
                json!({"reasoning_signature": "S=="}),
            ),
            (
                chunk(
                    false,
                    Delta::ToolCallStart {
                        index: 1,
                        id: "t".into(),
                        name: "f".into(),
                    },
                    None,
                ),
                json!({"tool_calls": [{"index": 1, "id": "t", "type": "function",
                                       "function": {"name": "f", "arguments": ""}}]}),
            ),
            (
                chunk(
                    false,
                    Delta::ToolCallArguments {
                        index: 1,
                        arguments: "{\"a\":".into(),
                    },
                    None,
                ),
                json!({"tool_calls": [{"index": 1, "function": {"arguments": "{\"a\":"}}]}),
            ),
            (
                chunk(false, Delta::Empty, Some(FinishReason::Stop)),
                json!({}),
            ),
        ];
        for (c, delta) in cases {
            let expected = json!({
                "id": "chatcmpl-1",
                "object": "chat.completion.chunk",
                "created": 7,
                "model": "m \"x\"",
                "choices": [{
                    "index": 0,
                    "delta": delta,
                    "logprobs": null,
                    "finish_reason": c.finish_reason,
                }],
            });
            let mut bytes = Vec::new();
            c.write_json(&mut bytes);
            assert_eq!(bytes, serde_json::to_vec(&expected).unwrap());
            assert_eq!(c.to_value(), expected);
        }
    }
}
