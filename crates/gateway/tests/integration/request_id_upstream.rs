//! The request id reaches each upstream in a form it accepts: an OpenAI-compatible server that,
//! like llama-cpp-python's, answers a bare 400 to an `x-request-id` that is not a UUID still
//! serves streamed and whole answers; Anthropic-dialect upstreams are sent no id header at all.

use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use crate::harness::start;

/// A server that refuses, as starlette-context's request-id plugin does, any `x-request-id`
/// that is not a UUID, and otherwise answers a chat completion (streamed or whole). It keeps
/// every `x-request-id` it was sent.
async fn uuid_only_server() -> (String, Arc<Mutex<Vec<String>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let kept = seen.clone();
    let app = axum::Router::new().route(
        "/v1/chat/completions",
        axum::routing::post(move |headers: HeaderMap, body: Bytes| {
            let seen = kept.clone();
            async move { answer(&headers, &body, &seen) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}/v1"), seen)
}

fn answer(headers: &HeaderMap, body: &[u8], seen: &Mutex<Vec<String>>) -> Response {
    if let Some(id) = headers.get("x-request-id") {
        let id = id.to_str().unwrap_or_default().to_owned();
        seen.lock().unwrap().push(id.clone());
        let uuid = id.len() == 36
            && id.char_indices().all(|(i, c)| match i {
                8 | 13 | 18 | 23 => c == '-',
                _ => c.is_ascii_hexdigit(),
            });
        if !uuid {
            return (
                StatusCode::BAD_REQUEST,
                "Invalid UUID in request header X-Request-ID",
            )
                .into_response();
        }
    }
    let req: Value = serde_json::from_slice(body).unwrap_or_default();
    let usage = json!({"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7});
    if req["stream"] == true {
        let chunk = |delta: Value, finish: Value| {
            json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "smollm2",
                   "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
        };
        let mut sse = String::new();
        for c in [
            chunk(
                json!({"role": "assistant", "content": "Hello"}),
                Value::Null,
            ),
            chunk(json!({"content": " there"}), json!("stop")),
            json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "smollm2",
                   "choices": [], "usage": usage}),
        ] {
            sse.push_str(&format!("data: {c}\n\n"));
        }
        sse.push_str("data: [DONE]\n\n");
        return ([("content-type", "text/event-stream")], sse).into_response();
    }
    let whole = json!({"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "smollm2",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello there"}, "finish_reason": "stop"}],
        "usage": usage});
    ([("content-type", "application/json")], whole.to_string()).into_response()
}

fn config(base: &str) -> String {
    format!(
        r#"
demo_credits = "100"
[providers.llama]
kind = "openai"
base_url = "{base}"

[models.smol]
routes = ["llama/smollm2"]
input_price = "1"
output_price = "2"
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_that_takes_only_uuid_request_ids_serves_whole_and_streamed_answers() {
    let (base, seen) = uuid_only_server().await;
    let gw = start(&config(&base)).await;
    let whole = gw
        .chat(json!({"model": "smol", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(whole.status(), 200);
    let id = whole.headers()["x-request-id"].to_str().unwrap().to_owned();
    let body: Value = whole.json().await.unwrap();
    assert_eq!(body["choices"][0]["message"]["content"], "Hello there");

    // A client's own id that is not a UUID is echoed to the client, and sent up as one.
    let streamed = gw
        .chat(json!({"model": "smol", "stream": true, "messages": [{"role": "user", "content": "hi"}]}))
        .header("x-request-id", "my-trace-42")
        .send()
        .await
        .unwrap();
    assert_eq!(streamed.status(), 200);
    assert_eq!(streamed.headers()["x-request-id"], "my-trace-42");
    let text = streamed.text().await.unwrap();
    assert!(text.contains("\" there\""), "{text}");
    assert!(text.contains("data: [DONE]"), "{text}");

    // A client's UUID goes up unchanged, so both sides' logs name the request alike.
    let uuid = "6f1c2a9e-3b7d-4c1e-9a2b-0d4e5f6a7b8c";
    let third = gw
        .chat(json!({"model": "smol", "messages": [{"role": "user", "content": "hi"}]}))
        .header("x-request-id", uuid)
        .send()
        .await
        .unwrap();
    assert_eq!(third.status(), 200);

    // The same id always maps to the same UUID.
    let again = gw
        .chat(json!({"model": "smol", "messages": [{"role": "user", "content": "hi"}]}))
        .header("x-request-id", "my-trace-42")
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 200);

    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 4, "{seen:?}");
    assert_ne!(seen[0], id, "the gateway's req_ id is sent as a UUID");
    assert_eq!(seen[2], uuid);
    assert_eq!(seen[1], seen[3]);
}
