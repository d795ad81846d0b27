//! Google's Gemini API (`POST /v1beta/models/{model}:generateContent`, `:streamGenerateContent`,
//! `:countTokens`) on the same relay as chat: the request is translated to chat
//! (`switchyard_wire::gemini::inbound`), admitted, limited, failed over and settled exactly as
//! `POST /chat/completions` (whatever the route's dialect), and the chat engine writes its answer
//! as a `GenerateContentResponse`, or its stream as Gemini's (`Encoder::Gemini`: `data:` events
//! with `alt=sse`, else one JSON array). A Gemini-dialect route is sent the client's body as it
//! came, and when one serves the request (known once `attempts::open` chose it) its answer passes
//! through: its own body, or its own events (re-framed as array elements without `alt=sse`), with
//! `usageMetadata.cost` in a whole answer. Either way the body ends
//! only once the entry is durable (the chat relay writes `[DONE]`, or ends the passthrough, only
//! then). No SSE comment reaches the client (keep-alives, the cost comment): Google's streams
//! have none, and the SDKs that match `^data: ` at the head of their buffer would stop at one.

use std::sync::Arc;

use bytes::Bytes;
use serde_json::Value;
use switchyard_wire::gemini::inbound::{gemini_to_chat, ChatPlan, Framing, GeminiStream};
use switchyard_wire::openai::{NativeBody, NativeDialect, RequestError};

use crate::auth::{new_id, Caller};
use crate::gateway::Gateway;
use crate::relay::client_encoder::Encoder;
use crate::relay::{chat_for, count_prompt_tokens, ChatReply, RelayError, RequestIds};

fn parse(body: &[u8]) -> Result<Value, RelayError> {
    serde_json::from_slice(body).map_err(|e| {
        RelayError::BadRequest(RequestError::new(
            "body",
            format!("Invalid JSON payload received ({e})."),
        ))
    })
}

fn plan(raw: &Value, model: &str, stream: bool) -> Result<ChatPlan, RelayError> {
    gemini_to_chat(raw, model, stream)
        .map_err(|e| RelayError::BadRequest(RequestError::new(e.param, e.message)))
}

/// Serves `generateContent` (`framing` `None`) or `streamGenerateContent` for `model`. What the
/// translation to chat left out (Google's own tools, `cachedContent`) is reported by the relay
/// when a route other than Gemini's serves the request (`Served::dropped`).
pub(crate) async fn create(
    gw: &Arc<Gateway>,
    caller: Caller,
    ids: RequestIds,
    model: &str,
    framing: Option<Framing>,
    body: Bytes,
) -> Result<ChatReply, RelayError> {
    let raw = parse(&body)?;
    let plan = plan(&raw, model, framing.is_some())?;
    let chat_body = Bytes::from(serde_json::to_vec(&plan.body).unwrap_or_default());
    let raw = NativeBody {
        dialect: NativeDialect::Gemini,
        body: raw,
        dropped: plan.dropped,
        native_only: false,
    };
    let encoder = Encoder::Gemini(Box::new(GeminiStream::new(
        framing.unwrap_or(Framing::Sse),
        plan.model,
        new_id("", 22),
        plan.include_thoughts,
    )));
    chat_for(gw, caller, ids, chat_body, Some(raw), encoder).await
}

/// Serves `countTokens`: `{"totalTokens": n}`, the tokenizer's estimate of the request's prompt
/// as translated to chat. The body is a request's `contents` (and the rest of it), or
/// `{"generateContentRequest": {…}}`. The model must exist and be allowed for the key.
pub(crate) async fn count_tokens(
    gw: &Arc<Gateway>,
    caller: &Caller,
    model: &str,
    body: Bytes,
) -> Result<Value, RelayError> {
    let mut raw = parse(&body)?;
    for key in ["generateContentRequest", "generate_content_request"] {
        if let Some(inner) = raw.get_mut(key).filter(|r| r.is_object()) {
            raw = inner.take();
            break;
        }
    }
    let plan = plan(&raw, model, false)?;
    let n = count_prompt_tokens(gw, caller, &plan.model, &plan.body).await?;
    Ok(serde_json::json!({ "totalTokens": n }))
}
