//! The Responses API (`POST /v1/responses`, `GET /v1/responses/{id}`) on the same relay as chat:
//! the request is translated into a chat request (`switchyard_wire::responses::request_to_chat`,
//! with the stored conversation of `previous_response_id` in front of the new input), admitted,
//! billed, limited and failed over exactly like `POST /chat/completions`, and the upstream's answer,
//! whatever its dialect, is turned back into a Response object or a stream of Responses events.
//!
//! A response is stored (unless `store: false`) before the client can see that it finished, so a
//! follow-up request that chains on it never races the store. Stored responses belong to the key
//! that created them: for any other key they do not exist.

pub mod event_stream;

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use serde_json::Value;
use switchyard_wire::openai::{ChatRequest, RequestError};
use switchyard_wire::responses::{chat_completion_to_response, request_to_chat, ResponseContext};

use crate::app::Gateway;
use crate::auth::{new_id, Caller};
use crate::ledger::responses::StoredResponse;
use crate::ledger::{EndReason, Ledger, LedgerError};
use crate::relay::attempts::{self, unix_now, Opened};
use crate::relay::responses::event_stream::ResponseStream;
use crate::relay::settlement::Settlement;
use crate::relay::{admission, ChatReply, RelayError};

/// Why a Responses request could not be served.
#[derive(Debug, thiserror::Error)]
pub enum ResponsesError {
    /// Everything chat can fail with (bad request, unknown model, balance, upstreams).
    #[error(transparent)]
    Relay(#[from] RelayError),
    #[error("Previous response with id '{0}' not found.")]
    PreviousNotFound(String),
    #[error("Response with id '{0}' not found.")]
    NotFound(String),
    #[error("The response store is not reachable; retry shortly.")]
    Store(#[source] LedgerError),
}

fn bad_request(param: &str, message: impl Into<String>) -> ResponsesError {
    ResponsesError::Relay(RelayError::BadRequest(RequestError::new(param, message)))
}

/// What is needed to keep a finished response for `GET` and `previous_response_id`.
pub struct Keeper {
    ledger: Ledger,
    key_id: String,
    model: String,
    /// The chat messages sent upstream (history + new input), for `conversation_after`.
    messages: Vec<Value>,
    store: bool,
}

impl Keeper {
    /// Stores the final Response object (unless the request said `store: false`). A failure to
    /// store does not fail the answer the client already has; it is logged.
    pub async fn keep(&self, response: &Value) {
        if !self.store {
            return;
        }
        let stored = StoredResponse {
            id: response["id"].as_str().unwrap_or_default().to_owned(),
            key_id: self.key_id.clone(),
            model: self.model.clone(),
            status: response["status"]
                .as_str()
                .unwrap_or("completed")
                .to_owned(),
            conversation: switchyard_wire::responses::conversation_after(&self.messages, response),
            response: response.clone(),
        };
        if let Err(e) = self.ledger.store_response(&stored).await {
            tracing::warn!(response_id = %stored.id, error = %e, "response could not be stored");
        }
    }
}

/// Serves `POST /responses` for `caller`: a Response object, or a stream of Responses events.
pub async fn create(
    gw: &Arc<Gateway>,
    caller: Caller,
    request_id: String,
    traceparent: Option<&str>,
    body: Bytes,
) -> Result<ChatReply, ResponsesError> {
    let started = Instant::now();
    let raw: Value = serde_json::from_slice(&body).map_err(|e| {
        bad_request(
            "body",
            format!("We could not parse the JSON body of your request ({e}). The body must be valid JSON."),
        )
    })?;
    let history = match raw.get("previous_response_id").and_then(Value::as_str) {
        Some(prev) if !prev.is_empty() => {
            gw.ledger
                .stored_response(prev, &caller.id)
                .await
                .map_err(ResponsesError::Store)?
                .ok_or_else(|| ResponsesError::PreviousNotFound(prev.to_owned()))?
                .conversation
        }
        _ => Vec::new(),
    };
    let plan = request_to_chat(&raw, &history).map_err(|e| bad_request(&e.param, e.message))?;
    let model = admission::model_for(gw, &caller, &plan.model)?;
    let chat_body = serde_json::to_vec(&plan.body).unwrap_or_default();
    let req = Arc::new(ChatRequest::parse(&chat_body).map_err(RelayError::BadRequest)?);
    let mut settlement = admission::admit(
        gw,
        &caller,
        &model,
        request_id,
        req.clone(),
        req.stream,
        started,
    )
    .await?;
    settlement.meter.responses_api();
    settlement.traced(gw.otlp.as_ref(), traceparent, &req, true);
    let ctx = ResponseContext::new(
        new_id("resp_", 32),
        plan.model.clone(),
        unix_now(),
        plan.echo.clone(),
    );
    let keeper = Keeper {
        ledger: gw.ledger.clone(),
        key_id: caller.id.clone(),
        model: plan.model.clone(),
        messages: plan.messages().to_vec(),
        store: plan.store,
    };
    match attempts::open(gw, &model, &req, &mut settlement, started).await? {
        Opened::Json { body, served } => {
            match complete_json(&body, ctx, &mut settlement, &keeper).await {
                Some(Ok(response)) => Ok(ChatReply::Json {
                    body: serde_json::to_vec(&response).unwrap_or_default(),
                    served,
                }),
                Some(Err(e)) => Err(e),
                None => {
                    let e = RelayError::UpstreamFailed(
                        "the upstream's answer is not a chat completion".into(),
                    );
                    settlement.meter.failed(e.status(), &e.to_string());
                    attempts::fail_settled(&mut settlement).await;
                    Err(e.into())
                }
            }
        }
        Opened::Stream { upstream, served } => {
            let stream = ResponseStream::new(upstream, settlement, ctx, keeper, gw.clone());
            Ok(ChatReply::Stream {
                body: Box::new(Box::pin(stream.into_body())),
                served,
            })
        }
    }
}

/// Serves `GET /responses/{id}`: the stored Response, for the key that created it only.
pub async fn retrieve(gw: &Gateway, caller: &Caller, id: &str) -> Result<Value, ResponsesError> {
    match gw.ledger.stored_response(id, &caller.id).await {
        Ok(Some(stored)) => Ok(stored.response),
        Ok(None) => Err(ResponsesError::NotFound(id.to_owned())),
        Err(e) => Err(ResponsesError::Store(e)),
    }
}

/// A non-streamed answer: bills it, settles, stores it and returns the Response object (with
/// `usage.cost`, a decimal string in USD, as chat answers carry it).
async fn complete_json(
    body: &[u8],
    mut ctx: ResponseContext,
    settlement: &mut Settlement,
    keeper: &Keeper,
) -> Option<Result<Value, ResponsesError>> {
    let mut completion: Value = serde_json::from_slice(body).ok()?;
    if completion.get("error").is_some() || !completion["choices"].is_array() {
        return None;
    }
    if let Some(model) = completion.get("model").and_then(Value::as_str) {
        settlement.meter.served_model(model);
    }
    settlement.meter.answered();
    let finish = settlement.meter.chat_value(&completion).unwrap_or("stop");
    let settled = settlement.measure().await;
    let cost = settled.cost.total().to_string();
    match completion.get_mut("usage") {
        Some(u) if u.is_object() => settled.usage.merge_into(u, Some(&cost)),
        _ => completion["usage"] = settled.usage.to_openai(Some(&cost)),
    }
    ctx.completed_at = Some(unix_now());
    let mut response = chat_completion_to_response(&completion, ctx);
    if response["usage"].is_object() {
        response["usage"]["cost"] = Value::String(cost);
    }
    if settlement
        .settle(EndReason::from_finish(finish), &settled)
        .await
        .is_err()
    {
        return Some(Err(RelayError::LedgerUnavailable.into()));
    }
    keeper.keep(&response).await;
    Some(Ok(response))
}
