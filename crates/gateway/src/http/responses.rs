//! The Responses API handlers: `POST /responses` (a Response object, or a stream of Responses
//! events with the same SSE headers as chat), `GET /responses/{id}` (a stored Response, for the
//! key that created it only; with `?stream=true&starting_after=N` a background response's
//! events), `POST /responses/{id}/cancel`, `DELETE /responses/{id}` and
//! `GET /responses/{id}/input_items` (the same key only). The work is in `relay::responses`;
//! this maps its errors to statuses.

use std::sync::Arc;

use axum::body::Body;
use std::collections::HashMap;

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use super::{caller, read_body, ApiError};
use crate::gateway::Gateway;
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
        let body = read_body(&gw, &headers, body).await?;
        responses::create(&gw, caller, ids, body)
            .await
            .map_err(ApiError::from)
    }
    .await;
    super::reply(&gw, &headers, &request_id, result)
}

/// `GET /responses/{id}`; with `?stream=true`, a background response's events after
/// `starting_after` (its `sequence_number`), then the live ones.
pub(super) async fn retrieve(
    State(gw): State<Arc<Gateway>>,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Response {
    let result = async {
        let caller = caller(&gw, &headers).await?;
        let id = super::path_id(id)?;
        let query = query.map(|Query(q)| q).unwrap_or_default();
        if query.get("stream").is_some_and(|s| s == "true") {
            let after = match query.get("starting_after").map(|s| s.trim()) {
                None | Some("") => None,
                Some(n) => Some(n.parse::<u64>().map_err(|_| ApiError {
                    param: Some("starting_after".into()),
                    ..ApiError::new(
                        StatusCode::BAD_REQUEST,
                        "invalid_request_error",
                        "invalid_value",
                        "'starting_after' must be the sequence_number of an event.",
                    )
                })?),
            };
            return match responses::events(&gw, &caller, &id, after).await? {
                Ok(events) => Ok(events),
                Err(responses::EventsGone) => Err(super::streams::gone(&id)),
            };
        }
        responses::retrieve(&gw, &caller, &id)
            .await
            .map(responses::Retrieved::Object)
            .map_err(ApiError::from)
    }
    .await;
    match result {
        Ok(responses::Retrieved::Object(response)) => axum::Json::<Value>(response).into_response(),
        Ok(responses::Retrieved::Events(events)) => super::sse_response(events, false),
        Err(e) => e.into_response(),
    }
}

/// `POST /responses/{id}/cancel`: stops a background response that is still running.
pub(super) async fn cancel(
    State(gw): State<Arc<Gateway>>,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
) -> Response {
    let result = async {
        let caller = caller(&gw, &headers).await?;
        let id = super::path_id(id)?;
        responses::cancel(&gw, &caller, &id)
            .await
            .map_err(ApiError::from)
    }
    .await;
    match result {
        Ok(response) => axum::Json::<Value>(response).into_response(),
        Err(e) => e.into_response(),
    }
}

/// `DELETE /responses/{id}`.
pub(super) async fn delete(
    State(gw): State<Arc<Gateway>>,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
) -> Response {
    let result = async {
        let caller = caller(&gw, &headers).await?;
        let id = super::path_id(id)?;
        responses::delete(&gw, &caller, &id)
            .await
            .map_err(ApiError::from)
    }
    .await;
    match result {
        Ok(deleted) => axum::Json::<Value>(deleted).into_response(),
        Err(e) => e.into_response(),
    }
}

/// `GET /responses/{id}/input_items?limit=&order=&after=`.
pub(super) async fn input_items(
    State(gw): State<Arc<Gateway>>,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Response {
    let result = async {
        let caller = caller(&gw, &headers).await?;
        let id = super::path_id(id)?;
        let Query(mut q) = query.map_err(|_| ApiError {
            param: Some("query".into()),
            ..ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                "invalid_value",
                "The query string is not valid.",
            )
        })?;
        let page = responses::ItemsPage {
            limit: q.remove("limit"),
            order: q.remove("order"),
            after: q.remove("after"),
        };
        responses::input_items(&gw, &caller, &id, &page)
            .await
            .map_err(ApiError::from)
    }
    .await;
    match result {
        Ok(list) => axum::Json::<Value>(list).into_response(),
        Err(e) => e.into_response(),
    }
}
