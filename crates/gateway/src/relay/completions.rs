//! `POST /v1/completions` (legacy text completions) served over chat: the request becomes a chat
//! request (`switchyard_wire::completions`: the prompt as one user message, `max_tokens` 16 when
//! absent) and goes through the chat relay unchanged (admission and holds, limits, attempts with
//! failover, early commit, cancellation, settlement exactly once; the request log says
//! `completions[.stream]`), for every route dialect (OpenAI-compatible and Anthropic alike). Its
//! answer is written for it by the chat engine's `Encoder::Text`: the body as a `text_completion`,
//! each streamed chunk as a `text_completion` chunk; `usage` with `cost`, `[DONE]` and the cost
//! comment as chat writes them.

use std::sync::Arc;
use tokio::time::Instant;

use bytes::Bytes;
use switchyard_wire::completions::CompletionsRequest;
use switchyard_wire::openai::ChatRequest;

use crate::auth::Caller;
use crate::gateway::Gateway;
use crate::relay::client_encoder::Encoder;
use crate::relay::{ChatReply, RelayError, RequestIds};

/// Serves `POST /completions` for `caller`.
pub(crate) async fn create(
    gw: &Arc<Gateway>,
    caller: Caller,
    ids: RequestIds,
    body: Bytes,
) -> Result<ChatReply, RelayError> {
    let started = Instant::now();
    let req = CompletionsRequest::parse(&body).map_err(RelayError::BadRequest)?;
    let chat = Arc::new(ChatRequest::parse(&req.chat_body).map_err(RelayError::BadRequest)?);
    let encoder = Encoder::Text { echo: req.echo };
    super::chat_parsed(gw, caller, ids, chat, started, encoder).await
}
