//! The one match from every error the gateway can produce to an HTTP status and an OpenAI-shaped
//! body `{"error":{"message","type","param","code"}}`. Constructing an error logs nothing.

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use crate::auth::AuthError;
use crate::limits::{go_duration, Level, Quota};
use crate::redact;
use crate::relay::RelayError;

/// An error on its way to the client.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    pub kind: &'static str,
    pub param: Option<String>,
    pub code: Value,
    pub retry_after: Option<u64>,
    /// `x-should-retry: false`: retrying the same request cannot help.
    pub final_answer: bool,
    /// The key's rate limits, sent as the `x-ratelimit-*` headers.
    pub rate: Option<Quota>,
    /// `connection: close`: the request's body is being read and thrown away behind this answer
    /// (`http::linger`), so the connection cannot carry another request.
    pub close: bool,
}

impl ApiError {
    pub fn new(
        status: StatusCode,
        kind: &'static str,
        code: &str,
        message: impl Into<String>,
    ) -> Self {
        ApiError {
            status,
            message: message.into(),
            kind,
            param: None,
            code: Value::String(code.to_owned()),
            retry_after: None,
            final_answer: false,
            rate: None,
            close: false,
        }
    }

    pub fn not_found_route() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            "unknown_url",
            "Unknown route. The API is served under /v1, /api/v1 and /v1/llm.",
        )
    }

    pub fn method_not_allowed() -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "invalid_request_error",
            "method_not_allowed",
            "This method is not allowed on this route.",
        )
    }

    pub fn too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "invalid_request_error",
            "request_too_large",
            format!("The request body is larger than the limit of {limit} bytes."),
        )
    }

    /// The request body did not arrive within the body-read timeout.
    pub fn body_timeout(limit: std::time::Duration) -> Self {
        Self::new(
            StatusCode::REQUEST_TIMEOUT,
            "invalid_request_error",
            "request_timeout",
            format!(
                "The request body did not arrive within {} ms.",
                limit.as_millis()
            ),
        )
    }

    pub fn unavailable(message: &str) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "service_unavailable",
            "service_unavailable",
            message,
        )
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::Missing => ApiError::new(
                StatusCode::UNAUTHORIZED,
                "invalid_request_error",
                "missing_api_key",
                "You didn't provide an API key. Send it as 'Authorization: Bearer YOUR_KEY'.",
            ),
            AuthError::Invalid => ApiError::new(
                StatusCode::UNAUTHORIZED,
                "invalid_request_error",
                "invalid_api_key",
                "Incorrect API key provided, or the key was revoked.",
            ),
            AuthError::Expired => ApiError::new(
                StatusCode::UNAUTHORIZED,
                "invalid_request_error",
                "expired_api_key",
                "This API key has expired.",
            ),
            AuthError::Ledger(_) => {
                ApiError::unavailable("The key store is not reachable; retry shortly.")
            }
        }
    }
}

impl From<RelayError> for ApiError {
    /// The status and headers here; the words (type, code, param, message) are the relay's own
    /// (`RelayError::words`), so that an in-stream error after an early commit says the same.
    fn from(e: RelayError) -> Self {
        let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST);
        let (retry_after, final_answer, rate) = match &e {
            RelayError::InsufficientBalance | RelayError::BudgetExceeded(_) => (None, true, None),
            RelayError::UpstreamRateLimited { retry_after } => (
                Some(retry_after.map_or(1, |d| d.as_secs().clamp(1, 60))),
                false,
                None,
            ),
            RelayError::RateLimited(r) => (
                Some(r.retry_after.as_secs_f64().ceil().clamp(1.0, 60.0) as u64),
                false,
                Some(r.quota),
            ),
            RelayError::NoHealthyUpstream { retry_after } => (
                Some(retry_after.map_or(1, |d| d.as_secs().clamp(1, 300))),
                false,
                None,
            ),
            // Until the window ends (a retry sooner is refused the same way).
            RelayError::QuotaExceeded { retry_after, .. } => (
                Some(retry_after.map_or(1, |d| d.as_secs_f64().ceil().max(1.0) as u64)),
                true,
                None,
            ),
            _ => (None, false, None),
        };
        let w = e.words();
        ApiError {
            status,
            message: w.message,
            kind: w.kind,
            param: w.param,
            code: w.code,
            retry_after,
            final_answer,
            rate,
            close: false,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        // The message and code may carry an upstream's words: no secret of ours leaves in them.
        let code = match self.code {
            Value::String(c) => Value::String(redact::mask(&c).into_owned()),
            other => other,
        };
        let body = switchyard_wire::openai::error_body(
            &redact::mask(&self.message),
            self.kind,
            self.param.as_deref(),
            code,
        );
        let mut resp = (self.status, axum::Json(body)).into_response();
        let h = resp.headers_mut();
        if let Some(secs) = self.retry_after {
            h.insert("retry-after", HeaderValue::from(secs));
        }
        if self.final_answer {
            h.insert("x-should-retry", HeaderValue::from_static("false"));
        }
        if let Some(q) = &self.rate {
            rate_headers(h, q);
        }
        if self.close {
            h.insert(
                axum::http::header::CONNECTION,
                HeaderValue::from_static("close"),
            );
        }
        resp
    }
}

/// How much of an error body a dialect's rewrite reads (ours are small).
const ERROR_BODY_LIMIT: usize = 64 * 1024;

/// An OpenAI-shaped error response as another dialect's: `shape` makes the body from the status
/// and the error's message (the status's reason when it has none); the status and headers are
/// kept, the body's length and encoding headers dropped, `content_type` set.
pub(super) async fn reshaped_error(
    resp: Response,
    content_type: &'static str,
    shape: impl FnOnce(u16, &str) -> serde_json::Value,
) -> Response {
    let (mut parts, body) = resp.into_parts();
    let bytes = axum::body::to_bytes(body, ERROR_BODY_LIMIT)
        .await
        .unwrap_or_default();
    let message = serde_json::from_slice::<serde_json::Value>(&bytes)
        .ok()
        .and_then(|v| v["error"]["message"].as_str().map(str::to_owned))
        .unwrap_or_else(|| {
            parts
                .status
                .canonical_reason()
                .unwrap_or("error")
                .to_owned()
        });
    let body = shape(parts.status.as_u16(), &message);
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.remove(header::CONTENT_ENCODING);
    parts
        .headers
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    Response::from_parts(parts, axum::body::Body::from(body.to_string()))
}

/// The `x-ratelimit-{limit,remaining,reset}-{requests,tokens}` headers, as OpenAI sends them.
pub(super) fn rate_headers(h: &mut HeaderMap, q: &Quota) {
    let mut put = |level: Option<Level>, names: [&'static str; 3]| {
        let Some(l) = level else { return };
        h.insert(names[0], HeaderValue::from(l.limit));
        h.insert(names[1], HeaderValue::from(l.remaining));
        if let Ok(v) = HeaderValue::from_str(&go_duration(l.reset)) {
            h.insert(names[2], v);
        }
    };
    put(
        q.requests,
        [
            "x-ratelimit-limit-requests",
            "x-ratelimit-remaining-requests",
            "x-ratelimit-reset-requests",
        ],
    );
    put(
        q.tokens,
        [
            "x-ratelimit-limit-tokens",
            "x-ratelimit-remaining-tokens",
            "x-ratelimit-reset-tokens",
        ],
    );
}
