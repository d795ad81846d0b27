//! The Responses API (`POST /v1/responses`, `GET` and `DELETE /v1/responses/{id}`,
//! `GET /v1/responses/{id}/input_items`) on the same relay as chat:
//! the request is translated into a chat request (`switchyard_wire::responses::request_to_chat`,
//! with the stored conversation of `previous_response_id` in front of the new input), keeping the
//! raw body for a route that serves `/responses` itself, and served by the chat engine like
//! `POST /chat/completions`; the Responses client encoder (`client_encoder::responses`) writes the
//! answer, whatever the upstream's dialect, as a Response object or a stream of Responses events.
//!
//! A response is stored (unless `store: false`) before the client can see that it finished, so a
//! follow-up request that chains on it never races the store. Stored responses belong to the key
//! that created them: for any other key they do not exist.
//!
//! A background response (`background: true`) is generated detached from the request
//! (`relay::replay`, keyed by its `resp_…` id): the request returns it `in_progress` (or streams
//! it), `GET /responses/{id}` reports it while it runs and the stored one once it ended,
//! `?stream=true&starting_after=N` replays its events after `sequence_number` N and follows the
//! live ones, and `POST /responses/{id}/cancel` stops its upstream, settles it and stores it
//! `cancelled`. It is billed once, as any stream, whoever reads it.

use std::sync::Arc;
use tokio::time::Instant;

use bytes::Bytes;
use serde_json::Value;
use switchyard_wire::openai::{ChatRequest, NativeBody, NativeDialect, RequestError};
use switchyard_wire::responses::{request_to_chat, ResponseContext};

use crate::auth::{new_id, Caller};
use crate::clock::unix_now;
use crate::gateway::Gateway;
use crate::relay::client_encoder::responses::{Keeper, ResponsesOut};
use crate::relay::client_encoder::Encoder;
use crate::relay::{admission, ChatReply, RelayError, RequestIds};
use crate::replay::{Background, Ending, Numbering, ReadError};
use crate::store::StoreError;

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
    Store(#[source] StoreError),
}

fn bad_request(param: &str, message: impl Into<String>) -> ResponsesError {
    ResponsesError::Relay(RelayError::BadRequest(RequestError::new(param, message)))
}

/// Serves `POST /responses` for `caller`: a Response object, or a stream of Responses events,
/// through the chat engine (`relay::chat_parsed`) with the Responses encoder. What a chat route's
/// translation left out (`tools[8]:web_search`) goes back as `x-switchyard-dropped`
/// (`Served::dropped`); a native route is sent the request as it came and its answer passes
/// through (it keeps its own responses, so the gateway stores none).
pub(crate) async fn create(
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
                .store
                .responses()
                .get(prev, &caller.id, kept_since(gw))
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
    // What only a route that serves /responses itself carries is refused unless one exists.
    let native_only = match plan.needs_native.take() {
        Some(e) if !serves_natively(gw, &raw) => return Err(bad_request(&e.param, e.message)),
        Some(_) => true,
        None => false,
    };
    admission::model_for(gw, &caller, &plan.model)?;
    let background = raw.get("background").and_then(Value::as_bool) == Some(true);
    if background && gw.config.responses.retention.is_zero() {
        return Err(bad_request(
            "background",
            "Background responses need the response store, which this gateway keeps off ([responses] retention_days = 0).",
        ));
    }
    let client_streams = raw.get("stream").and_then(Value::as_bool) == Some(true);
    if background {
        // Generated as a stream whatever the client asked: its events are what is replayed.
        plan.body["stream"] = Value::Bool(true);
    }
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
        native_only,
    });
    let mut ctx = ResponseContext::new(
        new_id("resp_", 32),
        plan.model.clone(),
        unix_now(),
        plan.echo.clone(),
    );
    ctx.background = background;
    let keeper = Arc::new(Keeper {
        responses: gw.store.responses(),
        key_id: caller.id.clone(),
        model: plan.model.clone(),
        messages: plan.messages().to_vec(),
        input_items,
        // `[responses] retention_days = 0`: nothing is stored.
        store: plan.store && !gw.config.responses.retention.is_zero(),
    });
    req.session = ids.session.clone();
    let out = ResponsesOut::new(ctx.clone(), keeper.clone());
    let encoder = Encoder::Responses(Box::new(out.clone()));
    let owner = caller.id.clone();
    if !background {
        return Ok(
            crate::relay::chat_parsed(gw, caller, ids, Arc::new(req), started, encoder).await?,
        );
    }
    // In the background the request is answered at once (`queued`): admission, the attempts and
    // the generation all run detached, and what fails before the first event is the response's
    // `error` and `response.failed` (stored `failed`), as OpenAI's background responses report it.
    let detached = gw.clone();
    let run = async move {
        let reply =
            crate::relay::chat_parsed(&detached, caller, ids, Arc::new(req), started, encoder)
                .await;
        let body: Box<dyn futures_util::Stream<Item = Bytes> + Send + Unpin> = match reply {
            Ok(ChatReply::Stream { body, .. } | ChatReply::Committed { body, .. }) => body,
            Ok(ChatReply::Json { body, .. }) => {
                Box::new(futures_util::stream::iter([Bytes::from(body)]))
            }
            Err(e) => {
                let w = e.words();
                let event = switchyard_wire::openai::error_body(
                    &crate::redact::mask(&w.message),
                    w.kind,
                    w.param.as_deref(),
                    w.code,
                );
                let mut out = out;
                let mut buf = bytes::BytesMut::new();
                out.begin(&mut buf);
                out.fail_before_start(&event, &mut buf);
                out.keep().await;
                Box::new(futures_util::stream::iter([buf.freeze()]))
            }
        };
        body
    };
    let body = Box::new(Box::pin(futures_util::StreamExt::flatten(
        futures_util::stream::once(run),
    )));
    // What `GET` reports while it runs, and what a cancel stores.
    let mut snapshot = switchyard_wire::responses::StreamBuilder::new(ctx.clone()).response();
    snapshot["status"] = Value::from("queued");
    let replays = gw.replays();
    let r = replays.start(
        &ctx.id,
        &owner,
        Numbering::SequenceNumbers,
        None,
        Some(Background {
            snapshot: snapshot.clone(),
            keeper,
        }),
        body,
    );
    let served = crate::relay::Served {
        route: None,
        attempts: 0,
        rate: None,
        dropped: Vec::new(),
    };
    if client_streams {
        let reader = replays
            .read(&r, None)
            .map_err(|_| ResponsesError::NotFound(ctx.id.clone()))?;
        return Ok(ChatReply::Stream {
            body: Box::new(reader),
            served,
        });
    }
    Ok(ChatReply::Json {
        body: serde_json::to_vec(&snapshot).unwrap_or_default(),
        served,
    })
}

/// What `GET /responses/{id}` answers.
pub(crate) enum Retrieved {
    /// The Response object.
    Object(Value),
    /// Its events after `starting_after`, live.
    Events(Box<dyn futures_util::Stream<Item = Bytes> + Send + Unpin>),
}

/// Why a background response's events cannot be replayed: they are no longer kept.
#[derive(Debug)]
pub(crate) struct EventsGone;

/// Serves `GET /responses/{id}` with `stream=true`: the events of the key's background response
/// after `sequence_number` `starting_after` (all without it), then the live ones.
pub(crate) async fn events(
    gw: &Gateway,
    caller: &Caller,
    id: &str,
    starting_after: Option<u64>,
) -> Result<Result<Retrieved, EventsGone>, ResponsesError> {
    let replays = gw.replays();
    let read = match replays.get(id, &caller.id) {
        Some(r) => replays
            .read(&r, starting_after)
            .map(|s| Retrieved::Events(Box::new(s))),
        // Not here: another instance's, through Redis.
        None => replays
            .remote(id, &caller.id, starting_after)
            .await
            .map(|s| Retrieved::Events(Box::new(s))),
    };
    match read {
        Ok(events) => Ok(Ok(events)),
        Err(ReadError::Gone) => Ok(Err(EventsGone)),
        Err(ReadError::NotFound) => Err(ResponsesError::NotFound(id.to_owned())),
    }
}

/// Serves `POST /responses/{id}/cancel`: stops a background response of the key that is still
/// running (its upstream is cancelled and it is settled for what was generated) and stores it
/// `cancelled`; a response that already ended is answered as it is.
pub(crate) async fn cancel(
    gw: &Gateway,
    caller: &Caller,
    id: &str,
) -> Result<Value, ResponsesError> {
    let Some(r) = gw.replays().get(id, &caller.id) else {
        // Not running here: a stored one is answered as it stands.
        return retrieve(gw, caller, id).await;
    };
    let running = r.ending() == Ending::Running;
    r.cancel().await;
    match &r.background {
        Some(b) if running && r.ending() == Ending::Cancelled => {
            let mut cancelled = b.snapshot.clone();
            cancelled["status"] = Value::from("cancelled");
            b.keeper.keep(&cancelled).await;
            Ok(cancelled)
        }
        _ => retrieve(gw, caller, id).await,
    }
}

/// The oldest a stored response may be and still be served (epoch ms): the retention.
fn kept_since(gw: &Gateway) -> i64 {
    let retention = gw.config.responses.retention.as_millis() as i64;
    crate::store::ledger::now_ms().saturating_sub(retention)
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
            .get(r.provider())
            .is_some_and(|p| p.config.native_responses)
    })
}

/// Serves `GET /responses/{id}`: the stored Response, for the key that created it only; a
/// background response still running, as it started (`in_progress`).
pub(crate) async fn retrieve(
    gw: &Gateway,
    caller: &Caller,
    id: &str,
) -> Result<Value, ResponsesError> {
    if let Some(r) = gw.replays().get(id, &caller.id) {
        if let (Ending::Running, Some(b)) = (r.ending(), &r.background) {
            let mut snapshot = b.snapshot.clone();
            if r.started() {
                snapshot["status"] = Value::from("in_progress");
            }
            return Ok(snapshot);
        }
    }
    match gw
        .store
        .responses()
        .get(id, &caller.id, kept_since(gw))
        .await
    {
        Ok(Some(stored)) => Ok(stored.response),
        // Running on another instance: as it started.
        Ok(None) => match gw.replays().remote_snapshot(id, &caller.id).await {
            Some(snapshot) => Ok(snapshot),
            None => Err(ResponsesError::NotFound(id.to_owned())),
        },
        Err(e) => Err(ResponsesError::Store(e)),
    }
}

/// Serves `DELETE /responses/{id}`: deletes the stored response of the key that created it; for
/// any other key, or an unknown id, `NotFound`. A later `previous_response_id` naming it is a 404.
pub(crate) async fn delete(
    gw: &Gateway,
    caller: &Caller,
    id: &str,
) -> Result<Value, ResponsesError> {
    match gw.store.responses().delete(id, &caller.id).await {
        Ok(true) => {
            Ok(serde_json::json!({"id": id, "object": "response.deleted", "deleted": true}))
        }
        Ok(false) => Err(ResponsesError::NotFound(id.to_owned())),
        Err(e) => Err(ResponsesError::Store(e)),
    }
}

/// One page of `GET /responses/{id}/input_items`.
#[derive(Debug, Clone, Default)]
pub(crate) struct ItemsPage {
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
pub(crate) async fn input_items(
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
    let stored = match gw
        .store
        .responses()
        .get(id, &caller.id, kept_since(gw))
        .await
    {
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
