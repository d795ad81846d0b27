//! The OpenAI Responses API (`POST /v1/responses`) served on top of any Chat-Completions-shaped
//! upstream: a Responses request becomes a chat request ([`request_to_chat`]), the upstream's
//! `chat.completion.chunk` stream becomes Responses events ([`StreamBuilder`]), a non-streaming
//! chat completion becomes a Response object ([`chat_completion_to_response`]), and
//! [`conversation_after`] says what to store so that `previous_response_id` can continue a chain.
//!
//! Everything here is pure: values in, values out. The gateway owns ids, clocks and storage.
//!
//! How the pieces fit, for one request:
//! 1. `let plan = request_to_chat(&body, &history)?;` where `history` is the stored conversation of
//!    `plan.previous_response_id` (empty for a fresh chain);
//! 2. send `plan.body` upstream; build `ResponseContext::new(id, model, now, plan.echo.clone())`;
//! 3. streaming: `StreamBuilder::start`, `push_chunk` per upstream chunk, `finish` (or `fail`), and
//!    write every [`Event`] with [`encode_sse`]; non-streaming: [`chat_completion_to_response`];
//! 4. if `plan.store`, keep the final Response object and
//!    `conversation_after(plan.messages(), &response)` under the response id.

mod input_items;
mod request;
mod stream;
mod tools;

#[cfg(test)]
mod tests;

pub use input_items::input_items;
pub use request::{conversation_after, request_to_chat, ChatPlan, RequestEcho};
pub use stream::{chat_completion_to_response, usage_from_chat, ResponseContext, StreamBuilder};
pub use tools::{flat_name, ToolNames, ToolOrigin};

use serde_json::Value;

/// One Responses stream event: `kind` is the event type (`response.created`, …) and `data` the
/// full JSON payload, which repeats the type in `"type"` and carries `"sequence_number"`.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub kind: String,
    pub data: Value,
}

/// Appends `event: <type>\ndata: <compact json>\n\n` to `out`, the framing OpenAI uses for
/// Responses streams (no `[DONE]` follows the terminal event).
pub fn encode_sse(event: &Event, out: &mut Vec<u8>) {
    out.extend_from_slice(b"event: ");
    out.extend_from_slice(event.kind.as_bytes());
    out.extend_from_slice(b"\ndata: ");
    // Serialising a `Value` into a Vec cannot fail (no IO, string keys only); compact JSON never
    // contains a raw newline, so the payload stays on one `data:` line.
    if serde_json::to_writer(&mut *out, &event.data).is_err() {
        out.extend_from_slice(b"{}");
    }
    out.extend_from_slice(b"\n\n");
}

/// A request the gateway must answer with 400 `invalid_request_error`, naming the offending
/// parameter the way OpenAI does (`input[2].content[0].type`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestError {
    pub param: String,
    pub message: String,
}

impl RequestError {
    pub(crate) fn new(param: impl Into<String>, message: impl Into<String>) -> Self {
        RequestError {
            param: param.into(),
            message: message.into(),
        }
    }
}
