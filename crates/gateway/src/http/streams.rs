//! Resumable streams over HTTP: a chat or Messages request with `x-switchyard-resumable: true`
//! is generated detached from its connection (`relay::replay`); its events carry SSE `id:`s and
//! the response names where to resume (`x-switchyard-resume: /v1/streams/{request_id}`).
//! `GET /v1/streams/{request_id}` with `Last-Event-ID` (or `?after=N`) returns the rest, live, to
//! the key that made the request; events no longer kept are a 410. `DELETE` stops it.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use super::{caller, ApiError};
use crate::gateway::Gateway;
use crate::relay::ChatReply;
use crate::replay::{Numbering, ReadError};

/// The request header that asks for a resumable stream.
const RESUMABLE: &str = "x-switchyard-resumable";

/// Whether the request asked for a resumable stream.
fn wants_resumable(headers: &HeaderMap) -> bool {
    headers
        .get(RESUMABLE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("true") || v.trim() == "1")
}

/// A streamed reply, when the request asked for it, generated detached from the connection as
/// `request_id` of the key `owner`, and read back from its replay; anything else as it is.
pub(super) fn resumable(
    gw: &Gateway,
    headers: &HeaderMap,
    owner: &str,
    request_id: &str,
    reply: ChatReply,
) -> ChatReply {
    if !wants_resumable(headers) {
        return reply;
    }
    let replays = gw.replays();
    let detach = |body| {
        let grace = Some(replays.limits().grace);
        let r = replays.start(request_id, owner, Numbering::EventIds, grace, None, body);
        match replays.read(&r, None) {
            Ok(reader) => {
                Box::new(reader) as Box<dyn futures_util::Stream<Item = _> + Send + Unpin>
            }
            // A stream just started has dropped nothing.
            Err(_) => Box::new(futures_util::stream::empty()),
        }
    };
    match reply {
        ChatReply::Stream { body, served } => ChatReply::Stream {
            body: detach(body),
            served,
        },
        ChatReply::Committed { body, rate } => ChatReply::Committed {
            body: detach(body),
            rate,
        },
        json => json,
    }
}

/// Names where a resumable stream's rest can be read: `x-switchyard-resume`.
pub(super) fn name_resume(resp: &mut Response, headers: &HeaderMap, request_id: &str) {
    let streamed = resp
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
    if streamed && wants_resumable(headers) {
        if let Ok(v) = HeaderValue::from_str(&format!("/v1/streams/{request_id}")) {
            resp.headers_mut().insert("x-switchyard-resume", v);
        }
    }
}

/// `GET /streams/{request_id}`: the events of the key's resumable stream after `Last-Event-ID`
/// (or `?after=N`; from the start without either), then the live ones to its end.
pub(super) async fn resume(
    State(gw): State<Arc<Gateway>>,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Response {
    let result = async {
        let caller = caller(&gw, &headers).await?;
        let id = super::path_id(id)?;
        let query = query.map(|Query(q)| q).unwrap_or_default();
        let after = headers
            .get("last-event-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
            .or_else(|| query.get("after").cloned());
        let after = match after.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(n) => Some(n.parse::<u64>().map_err(|_| ApiError {
                param: Some("after".into()),
                ..ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_request_error",
                    "invalid_value",
                    "'Last-Event-ID' (or 'after') must be the id of an event of this stream.",
                )
            })?),
        };
        let replays = gw.replays();
        let read: Result<Box<dyn futures_util::Stream<Item = _> + Send + Unpin>, ReadError> =
            match replays.get(&id, &caller.id) {
                Some(r) => replays.read(&r, after).map(|s| Box::new(s) as _),
                // Not here: another instance's, through Redis.
                None => replays
                    .remote(&id, &caller.id, after)
                    .await
                    .map(|s| Box::new(s) as _),
            };
        match read {
            Ok(reader) => Ok(reader),
            Err(ReadError::Gone) => Err(gone(&id)),
            Err(ReadError::NotFound) => Err(not_found(&id)),
        }
    }
    .await;
    match result {
        Ok(reader) => super::sse_response(reader, false),
        Err(e) => e.into_response(),
    }
}

/// `DELETE /streams/{request_id}`: stops the key's resumable stream (its upstream is cancelled,
/// it is settled for what was generated); only the instance that serves it can.
pub(super) async fn cancel(
    State(gw): State<Arc<Gateway>>,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
) -> Response {
    let result = async {
        let caller = caller(&gw, &headers).await?;
        let id = super::path_id(id)?;
        let r = gw
            .replays()
            .get(&id, &caller.id)
            .ok_or_else(|| not_found(&id))?;
        r.cancel().await;
        Ok::<_, ApiError>(serde_json::json!({"id": id, "object": "stream", "status": "cancelled"}))
    }
    .await;
    match result {
        Ok(v) => axum::Json(v).into_response(),
        Err(e) => e.into_response(),
    }
}

fn not_found(id: &str) -> ApiError {
    ApiError {
        param: Some("request_id".into()),
        ..ApiError::new(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            "stream_not_found",
            format!(
                "No resumable stream '{id}' for this key (it was not resumable, or it expired)."
            ),
        )
    }
}

pub(super) fn gone(id: &str) -> ApiError {
    ApiError {
        param: Some("after".into()),
        ..ApiError::new(
            StatusCode::GONE,
            "invalid_request_error",
            "events_expired",
            format!("The events of '{id}' after the one asked for are no longer kept; start the request again."),
        )
    }
}
