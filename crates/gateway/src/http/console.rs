//! The web console: the static files of the top-level `console/` folder, embedded in the binary
//! and served at `GET /` (the page) and `GET /console/{file}` (its modules and styles), with their
//! content types, `cache-control`, a self-only content security policy and `nosniff`. The console
//! is a client of the public and admin API only; it keeps no state on the server.

use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::Path;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use super::ApiError;

/// One embedded file of `console/`.
pub(super) struct Asset {
    pub name: &'static str,
    pub content_type: &'static str,
    pub body: &'static [u8],
}

macro_rules! asset {
    ($name:literal, $type:literal) => {
        Asset {
            name: $name,
            content_type: $type,
            body: include_bytes!(concat!("../../../../console/", $name)),
        }
    };
}

/// Every file of `console/` (`tests/integration/tidy.rs` checks that none is left out).
pub(super) const ASSETS: &[Asset] = &[
    asset!("index.html", "text/html; charset=utf-8"),
    asset!("console.css", "text/css; charset=utf-8"),
    asset!("app.js", "text/javascript; charset=utf-8"),
    asset!("api.js", "text/javascript; charset=utf-8"),
    asset!("sse.js", "text/javascript; charset=utf-8"),
    asset!("playground.js", "text/javascript; charset=utf-8"),
    asset!("snippets.js", "text/javascript; charset=utf-8"),
    asset!("usage.js", "text/javascript; charset=utf-8"),
    asset!("chart.js", "text/javascript; charset=utf-8"),
    asset!("keys.js", "text/javascript; charset=utf-8"),
    asset!("providers.js", "text/javascript; charset=utf-8"),
    asset!("favicon.svg", "image/svg+xml"),
];

/// Scripts, styles, images and requests from this origin only; no inline code, no framing.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
     connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'none'; \
     frame-ancestors 'none'";

/// Adds `GET /` and `GET /console/{file}` to `app`.
pub(super) fn routes<S: Clone + Send + Sync + 'static>(app: Router<S>) -> Router<S> {
    app.route("/", get(index))
        .route("/console/{file}", get(file))
}

async fn index() -> Response {
    serve(&ASSETS[0])
}

async fn file(name: Result<Path<String>, PathRejection>) -> Response {
    let name = match super::path_id(name) {
        Ok(n) => n,
        Err(e) => return e.into_response(),
    };
    match ASSETS.iter().find(|a| a.name == name) {
        Some(asset) => serve(asset),
        None => ApiError::new(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            "file_not_found",
            "The console has no such file.",
        )
        .into_response(),
    }
}

fn serve(asset: &Asset) -> Response {
    let mut resp = Response::new(Body::from(asset.body));
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(asset.content_type),
    );
    // Revalidated on every load: a new binary's console is never mixed with an old cached module.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    resp
}
