//! The Responses API handlers: `POST /responses` (a Response object, or a stream of Responses
//! events with the same SSE headers as chat) and `GET /responses/{id}` (a stored Response, for the
//! key that created it only). The work is in `relay::responses`; this maps its errors to statuses.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use super::{caller, read_body, ApiError};
use crate::app::Gateway;
use crate::auth::new_id;
use crate::relay::responses::{self, ResponsesError};

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
        let caller = match caller(&gw, &headers).await {
            Ok(c) => c,
            Err(e) => return Err(super::refuse_unread(&headers, body, e).await),
        };
        let body = read_body(&gw, &headers, body).await?;
        responses::create(
            &gw,
            caller,
            request_id.clone(),
            super::traceparent(&headers),
            body,
        )
        .await
        .map_err(ApiError::from)
    }
    .await;
    super::reply(&gw, &headers, &request_id, result)
}

/// `GET /responses/{id}`.
pub async fn retrieve(
    State(gw): State<Arc<Gateway>>,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
) -> Response {
    let result = async {
        let caller = caller(&gw, &headers).await?;
        let id = super::path_id(id)?;
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
