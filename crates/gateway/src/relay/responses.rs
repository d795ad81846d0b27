//! The Responses API (`POST /v1/responses`, `GET` and `DELETE /v1/responses/{id}`,
//! `GET /v1/responses/{id}/input_items`) on the same relay as chat:
//! the request is translated into a chat request (`switchyard_wire::responses::request_to_chat`,
//! with the stored conversation of `previous_response_id` in front of the new input), admitted,
//! billed, limited and failed over exactly like `POST /chat/completions`, and the upstream's answer,
//! whatever its dialect, is turned back into a Response object or a stream of Responses events.
//!
//! A response is stored (unless `store: false`) before the client can see that it finished, so a
//! follow-up request that chains on it never races the store. Stored responses belong to the key
//! that created them: for any other key they do not exist.

pub mod event_stream;
pub mod native;

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use serde_json::Value;
use switchyard_wire::openai::{ChatRequest, NativeBody, NativeDialect, RequestError};
use switchyard_wire::responses::{chat_completion_to_response, request_to_chat, ResponseContext};

use crate::app::Gateway;
use crate::auth::{new_id, Caller};
use crate::ledger::responses::StoredResponse;
use crate::ledger::{EndReason, Ledger, LedgerError};
use crate::relay::attempts::{self, unix_now, Opened, UpstreamStream};
use crate::relay::early_commit::{self, Outcome, Started};
use crate::relay::responses::event_stream::ResponseStream;
use crate::relay::responses::native::NativeStream;
use crate::relay::settlement::Settlement;
use crate::relay::{admission, ChatReply, RelayError, RequestIds};

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
    /// The request's input as Responses items, for `input_items`.
    input_items: Vec<Value>,
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
            input_items: self.input_items.clone(),
        };
        if let Err(e) = self.ledger.store_response(&stored).await {
            tracing::warn!(response_id = %stored.id, error = %e, "response could not be stored");
        }
    }
}

/// Serves `POST /responses` for `caller`: a Response object, or a stream of Responses events.
/// What a chat route's translation left out (`tools[8]:web_search`) goes back as
/// `x-switchyard-dropped` (`Served::dropped`); a native route is sent the request as it came.
pub async fn create(
    gw: &Arc<Gateway>,
    caller: Caller,
    ids: RequestIds,
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
            match gw
                .ledger
                .stored_response(prev, &caller.id)
                .await
                .map_err(ResponsesError::Store)?
            {
                Some(stored) => stored.conversation,
                // Not one of ours: a response the upstream stored, which a route that serves
                // /responses itself continues (the id goes up as it came).
                None if serves_natively(gw, &raw) => Vec::new(),
                None => return Err(ResponsesError::PreviousNotFound(prev.to_owned())),
            }
        }
        _ => Vec::new(),
    };
    let mut plan = request_to_chat(&raw, &history).map_err(|e| bad_request(&e.param, e.message))?;
    let dropped = std::mem::take(&mut plan.dropped);
    let model = admission::model_for(gw, &caller, &plan.model)?;
    let chat_body = serde_json::to_vec(&plan.body).unwrap_or_default();
    let mut req = ChatRequest::parse(&chat_body).map_err(RelayError::BadRequest)?;
    let input_items = if plan.store {
        switchyard_wire::responses::input_items(&raw, &mut |p| new_id(p, 32))
    } else {
        Vec::new()
    };
    req.native = Some(NativeBody {
        dialect: NativeDialect::Responses,
        body: raw,
        dropped,
    });
    let req = Arc::new(req);
    let mut settlement = admission::admit(
        gw,
        &caller,
        &model,
        ids.ledger,
        req.clone(),
        req.stream,
        started,
    )
    .await?;
    settlement.meter.responses_api();
    settlement.traced(gw.otlp.as_ref(), ids.traceparent.as_deref(), &req, true);
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
        input_items,
        store: plan.store,
    };
    if !req.stream {
        return match attempts::open(gw, &model, &req, &mut settlement, started, &ids.visible)
            .await?
        {
            Opened::Json {
                body,
                native: Some(raw),
                served,
            } => match native::complete_json(&body, &raw, &mut settlement).await {
                Ok(body) => Ok(ChatReply::Json { body, served }),
                Err(e) => {
                    settlement.meter.failed(e.status(), &e.to_string());
                    attempts::fail_settled(&mut settlement).await;
                    Err(e.into())
                }
            },
            Opened::Json { body, served, .. } => {
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
            Opened::Stream { .. } => {
                Err(RelayError::UpstreamFailed("the upstream answered with a stream".into()).into())
            }
        };
    }
    let (rate, committed) = (settlement.rate, settlement.meter.committed_flag());
    let commit_after = model.commit_after(&gw.config.routing);
    let opening = early_commit::opening(
        gw.clone(),
        model,
        req.clone(),
        settlement,
        started,
        ids.visible,
    );
    match early_commit::open_or_commit(opening, commit_after, committed).await {
        Started::Now(_, Err(e)) => Err(e.into()),
        Started::Now(settlement, Ok((upstream, served))) => Ok(ChatReply::Stream {
            body: stream_body(upstream, settlement, ctx, keeper, gw.clone()),
            served,
        }),
        Started::Committed(opening) => {
            let relay_gw = gw.clone();
            let then: early_commit::Then = Box::new(move |outcome| {
                let words = match outcome {
                    Outcome::Opened(settlement, Ok((upstream, _))) => {
                        return stream_body(upstream, settlement, ctx, keeper, relay_gw);
                    }
                    Outcome::Opened(_, Err(e)) => early_commit::masked(e.words()),
                    // As a Responses stream the shutdown ends after its first event says it.
                    Outcome::Shutdown => crate::relay::ErrorWords {
                        code: Value::String("server_error".into()),
                        ..early_commit::shutdown_words()
                    },
                };
                let ending = event_stream::failed_before_start(ctx, keeper, words);
                Box::new(Box::pin(futures_util::stream::once(ending)))
            });
            let (keep_alive, end) = (gw.config.keep_alive, &gw.end_streams);
            Ok(ChatReply::Committed {
                body: early_commit::body(
                    opening,
                    (
                        keep_alive,
                        Bytes::from_static(switchyard_wire::sse::KEEP_ALIVE),
                    ),
                    end,
                    then,
                ),
                rate,
            })
        }
    }
}

/// The streamed body: the upstream's own events when a native route serves the request (it keeps
/// its own responses, so the gateway stores none), else the chat stream translated.
fn stream_body(
    upstream: UpstreamStream,
    settlement: Settlement,
    ctx: ResponseContext,
    keeper: Keeper,
    gw: Arc<Gateway>,
) -> Box<dyn futures_util::Stream<Item = Bytes> + Send + Unpin> {
    if upstream.native {
        let stream = NativeStream::new(upstream, settlement, gw);
        return Box::new(Box::pin(stream.into_body()));
    }
    let stream = ResponseStream::new(upstream, settlement, ctx, keeper, gw);
    Box::new(Box::pin(stream.into_body()))
}

/// Whether a route of the request's model serves `/responses` itself.
fn serves_natively(gw: &Gateway, raw: &Value) -> bool {
    let Some(model) = raw
        .get("model")
        .and_then(Value::as_str)
        .and_then(|m| gw.config.models.get(m))
    else {
        return false;
    };
    model.routes.iter().any(|r| {
        gw.providers
            .get(&r.provider)
            .is_some_and(|p| p.config.native_responses)
    })
}

/// Serves `GET /responses/{id}`: the stored Response, for the key that created it only.
pub async fn retrieve(gw: &Gateway, caller: &Caller, id: &str) -> Result<Value, ResponsesError> {
    match gw.ledger.stored_response(id, &caller.id).await {
        Ok(Some(stored)) => Ok(stored.response),
        Ok(None) => Err(ResponsesError::NotFound(id.to_owned())),
        Err(e) => Err(ResponsesError::Store(e)),
    }
}

/// Serves `DELETE /responses/{id}`: deletes the stored response of the key that created it; for
/// any other key, or an unknown id, `NotFound`. A later `previous_response_id` naming it is a 404.
pub async fn delete(gw: &Gateway, caller: &Caller, id: &str) -> Result<Value, ResponsesError> {
    match gw.ledger.delete_response(id, &caller.id).await {
        Ok(true) => {
            Ok(serde_json::json!({"id": id, "object": "response.deleted", "deleted": true}))
        }
        Ok(false) => Err(ResponsesError::NotFound(id.to_owned())),
        Err(e) => Err(ResponsesError::Store(e)),
    }
}

/// One page of `GET /responses/{id}/input_items`.
#[derive(Debug, Clone, Default)]
pub struct ItemsPage {
    /// 1 to 100; 20 when not given.
    pub limit: Option<String>,
    /// `asc` or `desc` (the default, as OpenAI's).
    pub order: Option<String>,
    /// The id of the item the page starts after.
    pub after: Option<String>,
}

/// Serves `GET /responses/{id}/input_items`: the stored input items of the key's response, as an
/// OpenAI list (`data`, `first_id`, `last_id`, `has_more`), `limit` at a time, in `order`,
/// starting after the item `after`.
pub async fn input_items(
    gw: &Gateway,
    caller: &Caller,
    id: &str,
    page: &ItemsPage,
) -> Result<Value, ResponsesError> {
    let limit = match page.limit.as_deref() {
        None => 20,
        Some(l) => match l.parse::<usize>() {
            Ok(n) if (1..=100).contains(&n) => n,
            _ => {
                return Err(bad_request(
                    "limit",
                    "'limit' must be an integer from 1 to 100.",
                ))
            }
        },
    };
    let desc = match page.order.as_deref() {
        None | Some("desc") => true,
        Some("asc") => false,
        Some(_) => return Err(bad_request("order", "'order' must be 'asc' or 'desc'.")),
    };
    let stored = match gw.ledger.stored_response(id, &caller.id).await {
        Ok(Some(stored)) => stored,
        Ok(None) => return Err(ResponsesError::NotFound(id.to_owned())),
        Err(e) => return Err(ResponsesError::Store(e)),
    };
    let mut items = stored.input_items;
    if desc {
        items.reverse();
    }
    let start = match page.after.as_deref() {
        None | Some("") => 0,
        Some(after) => match items.iter().position(|i| i["id"] == after) {
            Some(p) => p + 1,
            None => {
                return Err(bad_request(
                    "after",
                    format!("No input item with id '{after}' in this response."),
                ))
            }
        },
    };
    let rest = items.len().saturating_sub(start);
    let data: Vec<Value> = items.into_iter().skip(start).take(limit).collect();
    let id_of = |i: Option<&Value>| i.map_or(Value::Null, |i| i["id"].clone());
    Ok(serde_json::json!({
        "object": "list",
        "first_id": id_of(data.first()),
        "last_id": id_of(data.last()),
        "has_more": rest > data.len(),
        "data": data,
    }))
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
