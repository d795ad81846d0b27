//! Errors as the client sees them: OpenAI-shaped bodies with the right status and `param`, for
//! bad input, bad keys, unknown models, oversized bodies and upstream failures before the first
//! byte; and no input, however malformed, that produces a 500 or a hang.

use serde_json::{json, Value};

use crate::harness::{self, start_with_mock, start_with_mock_top, user};

async fn post_raw(gw: &harness::TestGateway, body: &'static str) -> (u16, Value) {
    let resp = harness::client()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(&gw.key)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap())
}

fn assert_shape(v: &Value) {
    let e = &v["error"];
    for k in ["message", "type", "param", "code"] {
        assert!(e.get(k).is_some(), "missing {k} in {v}");
    }
    assert!(e["message"].as_str().is_some_and(|m| !m.is_empty()));
}

#[tokio::test]
async fn bad_requests_are_400_with_the_parameter_named() {
    let (gw, mock) = start_with_mock("").await;
    let cases: &[(&str, Value)] = &[
        ("{not json", Value::Null),
        ("[]", Value::Null),
        (
            r#"{"messages":[{"role":"user","content":"x"}]}"#,
            json!("model"),
        ),
        (r#"{"model":"m"}"#, json!("messages")),
        (r#"{"model":"m","messages":"hi"}"#, json!("messages")),
        (
            r#"{"model":"m","messages":[{"content":"x"}]}"#,
            json!("messages[0].role"),
        ),
        (
            r#"{"model":"m","messages":[{"role":"user","content":{"a":1}}]}"#,
            json!("messages[0].content"),
        ),
        (
            r#"{"model":"m","messages":[{"role":"user","content":"x"}],"stream":"true"}"#,
            json!("stream"),
        ),
        (
            r#"{"model":"m","messages":[{"role":"user","content":"x"}],"temperature":"hot"}"#,
            json!("temperature"),
        ),
        (r#"{"model":["m"],"messages":[]}"#, json!("model")),
    ];
    for (body, param) in cases {
        let (status, v) = post_raw(&gw, body).await;
        assert_eq!(status, 400, "{body} -> {v}");
        assert_shape(&v);
        assert_eq!(v["error"]["type"], "invalid_request_error");
        assert_eq!(&v["error"]["param"], param, "{body}");
    }
    assert!(
        mock.requests().is_empty(),
        "bad requests must not reach the upstream"
    );
}

#[tokio::test]
async fn missing_and_invalid_keys_are_401() {
    let (gw, _mock) = start_with_mock("").await;
    let body = json!({"model": "m", "messages": user("hi")});
    let none = harness::client()
        .post(gw.url("/v1/chat/completions"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(none.status(), 401);
    let v: Value = none.json().await.unwrap();
    assert_shape(&v);
    let bad = harness::client()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth("sk-sy-not-a-real-key")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 401);
    let v: Value = bad.json().await.unwrap();
    assert_eq!(v["error"]["code"], "invalid_api_key");
    assert!(
        !v.to_string().contains("sk-sy-not-a-real-key"),
        "the key must not be echoed"
    );
}

#[tokio::test]
async fn unknown_model_is_404() {
    let (gw, _mock) = start_with_mock("").await;
    let resp = gw
        .chat(json!({"model": "gpt-9", "messages": user("hi")}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    let v: Value = resp.json().await.unwrap();
    assert_shape(&v);
    assert_eq!(v["error"]["code"], "model_not_found");
    assert_eq!(v["error"]["param"], "model");
}

#[tokio::test]
async fn oversized_body_is_413() {
    let (gw, _mock) = start_with_mock_top("max_body_bytes = 1000", "").await;
    let resp = gw
        .chat(json!({"model": "m", "messages": user(&"x".repeat(5000))}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 413);
    assert_shape(&resp.json().await.unwrap());
}

/// A client still sending a body over the limit reads the 413, not a connection reset: the
/// gateway answers, then reads and discards the rest (for a bounded time and size) before it
/// closes, as nginx's lingering close does. The client here writes its whole body before it reads,
/// as simple HTTP clients do; closing on unread bytes would make the kernel reset the connection
/// and throw the answer away.
#[tokio::test]
async fn a_body_over_the_limit_gets_its_413_while_it_is_still_being_sent() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (gw, mock) = start_with_mock_top("max_body_bytes = 10485760", "").await;
    let body = format!(
        r#"{{"model":"m","messages":[{{"role":"user","content":"{}"}}]}}"#,
        "x".repeat(12 << 20)
    );
    for chunked in [false, true] {
        let mut sock = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
        let framing = if chunked {
            "transfer-encoding: chunked".to_owned()
        } else {
            format!("content-length: {}", body.len())
        };
        let head = format!(
            "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {}\r\n\
             content-type: application/json\r\n{framing}\r\n\r\n",
            gw.key
        );
        let mut wire = head.into_bytes();
        if chunked {
            for c in body.as_bytes().chunks(64 << 10) {
                wire.extend_from_slice(format!("{:x}\r\n", c.len()).as_bytes());
                wire.extend_from_slice(c);
                wire.extend_from_slice(b"\r\n");
            }
            wire.extend_from_slice(b"0\r\n\r\n");
        } else {
            wire.extend_from_slice(body.as_bytes());
        }
        // Write everything first, as a simple client does: a gateway that closes while the body
        // is still coming makes this write fail (reset or broken pipe), and such a client then
        // reports the failed write and never reads the answer.
        let written = sock.write_all(&wire).await;
        assert!(
            written.is_ok(),
            "chunked: {chunked}: the write failed: {written:?}"
        );
        let mut answer = Vec::new();
        let read = sock.read_to_end(&mut answer).await;
        let text = String::from_utf8_lossy(&answer);
        assert!(
            text.starts_with("HTTP/1.1 413"),
            "chunked: {chunked}: {read:?}: {}",
            text.chars().take(200).collect::<String>()
        );
    }
    assert!(mock.requests().is_empty());
}

/// A client that declares a huge body and sends a short one is answered 413 at once, not left
/// hanging while the gateway waits for bytes that never come.
#[tokio::test]
async fn a_declared_length_over_the_limit_is_413_before_the_body_is_read() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (gw, mock) = start_with_mock("").await;
    for path in ["/v1/chat/completions", "/v1/responses"] {
        let mut sock = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
        let head = format!(
            "POST {path} HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {}\r\n\
             content-type: application/json\r\ncontent-length: 999999999\r\n\r\n{{\"model\":",
            gw.key
        );
        sock.write_all(head.as_bytes()).await.unwrap();
        let mut answer = vec![0u8; 4096];
        // The socket stays open: only an answer that does not wait for the body can arrive.
        let n = tokio::time::timeout(std::time::Duration::from_secs(30), sock.read(&mut answer))
            .await
            .expect("no answer while the declared body was outstanding")
            .unwrap();
        let text = String::from_utf8_lossy(&answer[..n]);
        assert!(text.starts_with("HTTP/1.1 413"), "{path}: {text}");
        assert!(text.contains("request_too_large"), "{path}: {text}");
    }
    assert!(mock.requests().is_empty());
}

#[tokio::test]
async fn upstream_5xx_before_the_first_byte_is_502_and_hides_upstream_details() {
    let (gw, mock) = start_with_mock("").await;
    mock.set_options(json!({"status": 500})).unwrap();
    for stream in [false, true] {
        let resp = gw
            .chat(json!({"model": "m", "stream": stream, "messages": user("hi")}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 502);
        let v: Value = resp.json().await.unwrap();
        assert_shape(&v);
        assert!(!v.to_string().contains("upstream-secret-key"));
    }
}

#[tokio::test]
async fn upstream_first_token_timeout_is_504() {
    let mock = mock_upstream::MockUpstream::start().await.unwrap();
    let text = harness::mock_config(&mock, "").replace(
        "api_key = \"upstream-secret-key\"\n\n[providers.mockds]",
        "api_key = \"upstream-secret-key\"\nfirst_token_timeout_ms = 150\n\n[providers.mockds]",
    );
    let gw = harness::start(&text).await;
    mock.set_options(json!({"ttft_ms": 5000})).unwrap();
    let resp = gw
        .chat(json!({"model": "m", "stream": true, "messages": user("hi")}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 504);
    let request_id = resp.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert_shape(&resp.json().await.unwrap());
    // The ledger keeps the typed end reason, at no cost.
    let entry = gw
        .gw
        .ledger
        .entry(&request_id)
        .await
        .unwrap()
        .expect("an entry");
    assert_eq!(entry.end_reason, "upstream_timeout");
    assert_eq!(entry.cost.0, 0);
}

#[tokio::test]
async fn upstream_4xx_is_passed_through_not_retried() {
    let (gw, mock) = start_with_mock("").await;
    mock.set_options(json!({"status": 400})).unwrap();
    let resp = gw
        .chat(json!({"model": "m", "messages": user("hi")}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    assert_shape(&resp.json().await.unwrap());
    assert_eq!(mock.requests().len(), 1);
}

#[tokio::test]
async fn upstream_401_never_leaks_as_the_callers_auth_error() {
    let (gw, mock) = start_with_mock("").await;
    mock.set_options(json!({"status": 401})).unwrap();
    let resp = gw
        .chat(json!({"model": "m", "messages": user("hi")}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 502);
    let v: Value = resp.json().await.unwrap();
    assert!(!v.to_string().contains("upstream-secret-key"));
}

#[tokio::test]
async fn unknown_routes_and_methods_get_json_errors() {
    let (gw, _mock) = start_with_mock("").await;
    let resp = harness::client()
        .get(gw.url("/v2/nothing"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    assert_shape(&resp.json().await.unwrap());
    let resp = harness::client()
        .get(gw.url("/v1/chat/completions"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 405);
    assert_shape(&resp.json().await.unwrap());
}

#[tokio::test]
async fn no_malformed_input_produces_a_500() {
    let (gw, _mock) = start_with_mock("").await;
    let bodies = [
        "", "null", "1", "\"s\"", "{}", "{\"model\":null}", "{\"model\":\"m\",\"messages\":[null]}",
        "{\"model\":\"m\",\"messages\":[{\"role\":1}]}", "{\"model\":\"m\",\"messages\":[{\"role\":\"user\"}]}",
        "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"stream_options\":5}",
        "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"max_tokens\":1.5}",
        "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"n\":-1}",
        "\u{feff}{}", "{\"model\":\"\u{0}\"}", "{\"a\":", "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]",
    ];
    for body in bodies {
        let resp = harness::client()
            .post(gw.url("/v1/chat/completions"))
            .bearer_auth(&gw.key)
            .body(body)
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        assert!((400..500).contains(&status), "{body:?} -> {status}");
        let v: Value = resp.json().await.unwrap();
        assert_shape(&v);
    }
}
