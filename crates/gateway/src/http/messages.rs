//! The Anthropic Messages handlers: `POST /messages` and `POST /messages/count_tokens`, keyed by
//! `x-api-key` or a bearer token, any `anthropic-version`. Every error on these routes (the
//! gateway's own 401/402/404/429/503 included) is Anthropic-shaped,
//! `{"type":"error","error":{"type","message"}}`, with a `request-id` header as Anthropic sends.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use switchyard_wire::anthropic::inbound::{error_body, error_type_for_status};

use super::{caller, read_body, ApiError};
use crate::gateway::Gateway;
use crate::relay::messages;

/// `POST /messages`.
pub(super) async fn create(
    State(gw): State<Arc<Gateway>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let ids = super::request_ids_for(&headers);
    let request_id = ids.ledger.clone();
    let result = async {
        let caller = match caller(&gw, &headers).await {
            Ok(c) => c,
            Err(e) => return Err(super::refuse_unread(body, e)),
        };
        let owner = caller.id.clone();
        let body = read_body(&gw, &headers, body).await?;
        let reply = messages::create(&gw, caller, ids, body)
            .await
            .map_err(ApiError::from)?;
        Ok(super::streams::resumable(
            &gw,
            &headers,
            &owner,
            &request_id,
            reply,
        ))
    }
    .await;
    let mut resp = super::reply(&gw, &headers, &request_id, result);
    super::streams::name_resume(&mut resp, &headers, &request_id);
    anthropic_shaped(resp).await
}

/// `POST /messages/count_tokens`.
pub(super) async fn count_tokens(
    State(gw): State<Arc<Gateway>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let result = async {
        let caller = match caller(&gw, &headers).await {
            Ok(c) => c,
            Err(e) => return Err(super::refuse_unread(body, e)),
        };
        let body = read_body(&gw, &headers, body).await?;
        messages::count_tokens(&gw, &caller, body)
            .await
            .map_err(ApiError::from)
    }
    .await;
    let resp = match result {
        Ok(v) => axum::Json::<Value>(v).into_response(),
        Err(e) => e.into_response(),
    };
    anthropic_shaped(resp).await
}

/// An error response rewritten into Anthropic's error shape (status and headers kept); every
/// response gets `request-id` (the same id as `x-request-id`, when the handler set it).
async fn anthropic_shaped(resp: Response) -> Response {
    let (mut parts, body) = resp.into_parts();
    if let Some(id) = parts.headers.get("x-request-id").cloned() {
        parts.headers.insert("request-id", id);
    }
    if parts.status.is_success() {
        return Response::from_parts(parts, body);
    }
    let resp = Response::from_parts(parts, body);
    super::errors::reshaped_error(resp, "application/json", |status, message| {
        error_body(error_type_for_status(status), message)
    })
    .await
}
