//! The Anthropic Messages handlers: `POST /messages` and `POST /messages/count_tokens`, keyed by
//! `x-api-key` or a bearer token, any `anthropic-version`. Every error on these routes (the
//! gateway's own 401/402/404/429/503 included) is Anthropic-shaped,
//! `{"type":"error","error":{"type","message"}}`, with a `request-id` header as Anthropic sends.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use switchyard_wire::anthropic::inbound::{error_body, error_type_for_status};

use super::{caller, read_body, ApiError};
use crate::app::Gateway;
use crate::relay::messages;

/// The largest error body rewritten into the Anthropic shape (the gateway's are far smaller).
const ERROR_BODY_LIMIT: usize = 64 * 1024;

/// `POST /messages`.
pub async fn create(State(gw): State<Arc<Gateway>>, headers: HeaderMap, body: Body) -> Response {
    let ids = super::request_ids_for(&headers);
    let request_id = ids.ledger.clone();
    let result = async {
        let caller = match caller(&gw, &headers).await {
            Ok(c) => c,
            Err(e) => return Err(super::refuse_unread(&headers, body, e).await),
        };
        let body = read_body(&gw, &headers, body).await?;
        messages::create(&gw, caller, ids, body)
            .await
            .map_err(ApiError::from)
    }
    .await;
    let resp = super::reply(&gw, &headers, &request_id, result);
    anthropic_shaped(resp).await
}

/// `POST /messages/count_tokens`.
pub async fn count_tokens(
    State(gw): State<Arc<Gateway>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let result = async {
        let caller = match caller(&gw, &headers).await {
            Ok(c) => c,
            Err(e) => return Err(super::refuse_unread(&headers, body, e).await),
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
    let bytes = axum::body::to_bytes(body, ERROR_BODY_LIMIT)
        .await
        .unwrap_or_default();
    let message = serde_json::from_slice::<Value>(&bytes)
        .ok()
        .and_then(|v| v["error"]["message"].as_str().map(str::to_owned))
        .unwrap_or_else(|| {
            parts
                .status
                .canonical_reason()
                .unwrap_or("error")
                .to_owned()
        });
    let body = error_body(error_type_for_status(parts.status.as_u16()), &message);
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.remove(header::CONTENT_ENCODING);
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Response::from_parts(parts, Body::from(body.to_string()))
}
