//! The Responses API handlers: `POST /responses` (a Response object, or a stream of Responses
//! events with the same SSE headers as chat) and `GET /responses/{id}` (a stored Response, for the
//! key that created it only). The work is in `relay::responses`; this maps its errors to statuses.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use super::{caller, gzip, json_response, read_body, served_headers, wants_gzip, ApiError};
use crate::app::Gateway;
use crate::auth::new_id;
use crate::relay::responses::{self, ResponsesError};
use crate::relay::ChatReply;

impl From<ResponsesError> for ApiError {
    fn from(e: ResponsesError) -> Self {
        let message = e.to_string();
        match e {
            ResponsesError::Relay(e) => ApiError::from(e),
            ResponsesError::PreviousNotFound(_) => ApiError {
                param: Some("previous_response_id".into()),
                ..ApiError::new(
                    StatusCode::NOT_FOUND,
                    "invalid_request_error",
                    "previous_response_not_found",
                    message,
                )
            },
            ResponsesError::NotFound(_) => ApiError {
                param: Some("response_id".into()),
                ..ApiError::new(
                    StatusCode::NOT_FOUND,
                    "invalid_request_error",
                    "response_not_found",
                    message,
                )
            },
            ResponsesError::Store(_) => ApiError::unavailable(&message),
        }
    }
}

/// `POST /responses`.
pub async fn create(State(gw): State<Arc<Gateway>>, headers: HeaderMap, body: Body) -> Response {
    let request_id = new_id("req_", 24);
    let result = async {
        let caller = caller(&gw, &headers).await?;
        let body = read_body(&gw, body).await?;
        responses::create(&gw, caller, request_id.clone(), body)
            .await
            .map_err(ApiError::from)
    }
    .await;
    let gzip = wants_gzip(&headers);
    let mut resp = match result {
        Ok(ChatReply::Json { body, served }) => {
            let mut resp = json_response(body, gzip);
            served_headers(resp.headers_mut(), &served, &gw);
            resp
        }
        Ok(ChatReply::Stream { body, served }) => {
            let mut resp = if gzip {
                Response::new(Body::from_stream(gzip::GzipFrames::new(body)))
            } else {
                Response::new(Body::from_stream(futures_util::StreamExt::map(
                    body,
                    Ok::<_, std::convert::Infallible>,
                )))
            };
            let h = resp.headers_mut();
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/event-stream"),
            );
            h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
            h.insert("x-accel-buffering", HeaderValue::from_static("no"));
            if gzip {
                h.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
            }
            served_headers(h, &served, &gw);
            resp
        }
        Err(e) => e.into_response(),
    };
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        resp.headers_mut().insert("x-request-id", v);
    }
    resp
}

/// `GET /responses/{id}`.
pub async fn retrieve(
    State(gw): State<Arc<Gateway>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let result = async {
        let caller = caller(&gw, &headers).await?;
        responses::retrieve(&gw, &caller, &id)
            .await
            .map_err(ApiError::from)
    }
    .await;
    match result {
        Ok(response) => axum::Json::<Value>(response).into_response(),
        Err(e) => e.into_response(),
    }
}
