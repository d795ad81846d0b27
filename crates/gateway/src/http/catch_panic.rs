//! The last line of defence: a handler that panics answers an OpenAI-shaped 500 instead of
//! dropping the connection, logs one line (never the request, its body or the panic's text, which
//! may quote either) and counts it in `switchyard_panics_caught_total`. No input is meant to get
//! here: the integration tests run hostile corpora and Schemathesis and assert the count stays 0.
//!
//! It covers the handler and the future that builds the response, not a streamed body already on
//! its way: a stream's work runs in its own tasks, whose failures end the stream with an error event.

use axum::body::Body;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use tower_http::catch_panic::CatchPanicLayer;

use super::ApiError;
use crate::telemetry;

/// What a panic is answered with.
type Answer = fn(Box<dyn std::any::Any + Send + 'static>) -> Response<Body>;

/// The panic-catching layer, put around the whole router (its routes and fallbacks).
pub(super) fn layer() -> CatchPanicLayer<Answer> {
    telemetry::declare_panic_counter();
    CatchPanicLayer::custom(answer_panic as Answer)
}

fn answer_panic(_payload: Box<dyn std::any::Any + Send + 'static>) -> Response<Body> {
    telemetry::record_panic();
    tracing::error!(
        panics_caught = telemetry::panics_caught(),
        "a request handler panicked; answered 500 (a bug: please report it)"
    );
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "server_error",
        "internal_error",
        "The gateway failed while handling this request. It has been logged; retry, and report it if it persists.",
    )
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::get;
    use axum::Router;

    /// The layer as the gateway uses it, around a route that panics (no such route exists in the
    /// gateway's own router, so no request can reach one there).
    #[tokio::test]
    async fn a_panicking_handler_gets_an_openai_shaped_500_and_is_counted() {
        let app: Router = Router::new()
            .route(
                "/boom",
                get(|| async {
                    if std::hint::black_box(true) {
                        panic!("secret-in-panic-text");
                    }
                    "unreachable"
                }),
            )
            .route("/fine", get(|| async { "fine" }))
            .layer(layer());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        let before = telemetry::panics_caught();
        let client = reqwest::Client::new();

        let resp = client
            .get(format!("http://{addr}/boom"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 500);
        let body: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(body["error"]["type"], "server_error", "{body}");
        assert_eq!(body["error"]["code"], "internal_error", "{body}");
        assert!(body["error"]["param"].is_null(), "{body}");
        assert!(!body.to_string().contains("secret-in-panic-text"), "{body}");
        assert_eq!(telemetry::panics_caught(), before + 1);
        assert!(
            telemetry::render_metrics().contains("switchyard_panics_caught_total"),
            "the counter is exported"
        );

        // The server is still up and serves the next request on a new connection.
        let resp = client
            .get(format!("http://{addr}/fine"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(telemetry::panics_caught(), before + 1);
    }
}
