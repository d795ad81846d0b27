//! CORS for browser clients on other origins: preflights answered at the edge (no key needed),
//! the origins allowed by `[cors]` (any by default for the public API, none for `/admin` and for
//! the operator's `/metrics`, `/readyz` and `/openapi.json`), and the response headers a page's
//! script may read.

use std::time::Duration;

use axum::http::{HeaderName, HeaderValue, Method};
use tower_http::cors::{AllowHeaders, AllowOrigin, CorsLayer, ExposeHeaders};

use crate::config::CorsConfig;

/// Response headers a page may read: the request id, the rate-limit and retry headers, and the
/// served-route headers.
const EXPOSED: [&str; 12] = [
    "x-request-id",
    "x-switchyard-request-id",
    "retry-after",
    "x-ratelimit-limit-requests",
    "x-ratelimit-remaining-requests",
    "x-ratelimit-reset-requests",
    "x-ratelimit-limit-tokens",
    "x-ratelimit-remaining-tokens",
    "x-ratelimit-reset-tokens",
    "x-switchyard-provider",
    "x-switchyard-dropped",
    "x-switchyard-attempts",
];

/// The operator's unauthenticated endpoints, allowed only to `[cors] ops_origins`.
const OPS_PATHS: [&str; 3] = ["/metrics", "/readyz", "/openapi.json"];

/// The CORS layer for `config`. Request headers are mirrored from the preflight rather than
/// listed: the OpenAI SDKs send a growing family of `x-stainless-*` and `openai-*` headers that
/// a fixed list would miss with the next SDK release, and CORS cannot match a name prefix. This
/// grants nothing a key does not: credentials (cookies) are never allowed, and every route
/// still authenticates by `authorization` or `x-api-key`.
pub(super) fn layer(config: &CorsConfig) -> CorsLayer {
    let public = config.allowed_origins.clone();
    let admin = config.admin_origins.clone();
    let ops = config.ops_origins.clone();
    let origin = AllowOrigin::predicate(move |origin: &HeaderValue, parts| {
        let path = parts.uri.path();
        let list = if path == "/admin" || path.starts_with("/admin/") {
            &admin
        } else if OPS_PATHS.contains(&path) {
            &ops
        } else {
            &public
        };
        list.iter()
            .any(|o| o == "*" || o.as_bytes().eq_ignore_ascii_case(origin.as_bytes()))
    });
    CorsLayer::new()
        .allow_origin(origin)
        .allow_methods([
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::PATCH,
            Method::DELETE,
        ])
        .allow_headers(AllowHeaders::mirror_request())
        .expose_headers(ExposeHeaders::list(EXPOSED.map(HeaderName::from_static)))
        .max_age(Duration::from_secs(600))
}
