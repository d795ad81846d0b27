//! The Anthropic Messages API (`POST /v1/messages`, `POST /v1/messages/count_tokens`) on the
//! same relay as chat: the request is translated to chat (`switchyard_wire::anthropic::inbound`),
//! admitted, limited, failed over and settled exactly as `POST /chat/completions` (whatever the
//! route's dialect), and the chat engine writes its answer as a Messages object, or its stream as
//! the Messages event sequence (`Encoder::Messages`: keep-alives are `ping`s, a chat error event
//! an Anthropic `event: error`). An Anthropic-dialect route is sent the client's request as it came
//! (model name replaced: cache_control and every block kept), and when one serves the request
//! (known only once `attempts::open` chose it: failover may change the dialect) its answer passes
//! through: the upstream's own Message object, or its own events, as it wrote them, with
//! `usage.cost` added (`ChatStream::passthrough`, `relay::complete_json`); the chat decoding then
//! only feeds the meter. The stream ends (`message_stop`) only after the entry is durable, because
//! the chat relay writes `[DONE]`, or the passthrough its `message_stop`, only then.

use std::sync::Arc;

use bytes::Bytes;
use serde_json::Value;
use switchyard_wire::anthropic::inbound::{messages_to_chat, ChatPlan, MessagesStream};
use switchyard_wire::openai::{NativeBody, NativeDialect, RequestError};

use crate::auth::{new_id, Caller};
use crate::gateway::Gateway;
use crate::relay::client_encoder::Encoder;
use crate::relay::{chat_for, count_prompt_tokens, ChatReply, RelayError, RequestIds};

fn plan(body: &[u8], count_only: bool) -> Result<(ChatPlan, Value), RelayError> {
    let mut raw: Value = serde_json::from_slice(body).map_err(|e| {
        RelayError::BadRequest(RequestError::new(
            "body",
            format!("The request body is not valid JSON ({e})."),
        ))
    })?;
    if count_only {
        // count_tokens takes no max_tokens and never streams.
        if let Some(o) = raw.as_object_mut() {
            o.insert("max_tokens".into(), Value::from(1));
            o.remove("stream");
        }
    }
    let plan = messages_to_chat(&raw)
        .map_err(|e| RelayError::BadRequest(RequestError::new(e.param, e.message)))?;
    Ok((plan, raw))
}

/// Serves `POST /messages` for `caller`: a Messages object, or a stream of Messages events.
pub(crate) async fn create(
    gw: &Arc<Gateway>,
    caller: Caller,
    ids: RequestIds,
    body: Bytes,
) -> Result<ChatReply, RelayError> {
    let (plan, raw) = plan(&body, false)?;
    let chat_body = Bytes::from(serde_json::to_vec(&plan.body).unwrap_or_default());
    let raw = NativeBody {
        dialect: NativeDialect::Messages,
        body: raw,
        dropped: plan.dropped,
        native_only: false,
    };
    let encoder = Encoder::Messages(Box::new(MessagesStream::new(
        new_id("msg_", 24),
        plan.model,
    )));
    chat_for(gw, caller, ids, chat_body, Some(raw), encoder).await
}

/// Serves `POST /messages/count_tokens`: the tokenizer's estimate of the request's prompt as
/// translated to chat (system, turns, tool results; tool schemas are not counted by the chat
/// estimate). The model must exist and be allowed for the key.
pub(crate) async fn count_tokens(
    gw: &Arc<Gateway>,
    caller: &Caller,
    body: Bytes,
) -> Result<Value, RelayError> {
    let (plan, _) = plan(&body, true)?;
    let n = count_prompt_tokens(gw, caller, &plan.model, &plan.body).await?;
    Ok(serde_json::json!({ "input_tokens": n }))
}
