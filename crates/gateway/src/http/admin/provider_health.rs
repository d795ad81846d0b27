//! `GET /admin/providers`: every provider with the health of each of its routes (breaker state,
//! cooldown left, recent failures, time-to-first-token average, last error), as JSON for the
//! console and for operators. Admin key only; mounted with the other admin routes (`http::admin`, its parent).

use std::sync::Arc;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::gateway::Gateway;

/// The handler. Nothing here changes the health it reports.
pub(super) async fn providers(State(gw): State<Arc<Gateway>>, headers: HeaderMap) -> Response {
    if let Err(e) = super::require_admin(&gw, &headers) {
        return e.into_response();
    }
    let providers = gw.routing.report(&gw.config);
    axum::Json(json!({"object": "list", "data": providers})).into_response()
}
