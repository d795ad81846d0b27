//! No caller steers an upstream: a `"mock": {...}` field in a request body and `x-mock-*` headers
//! (the fake provider's per-request orders) never reach any upstream, in any dialect or API, and change
//! nothing a caller sees or pays; on the embedded default the demo upstream cannot be made to report
//! billions of tokens, write endless output or fail, whatever the request says.

use mock_upstream::MockUpstream;
use reqwest::header::HeaderMap;
use rust_decimal::Decimal;
use serde_json::{json, Value};
use switchyard::store::ledger::UsageEntryRow;
use tokio::time::Duration;

use crate::harness::{
    self, joined, parse_sse, request_id, start_with_mock, user, Sse, TestGateway,
};

const WAIT: Duration = Duration::from_secs(20);

/// What a caller puts in a request to steer the mock: a huge bill, endless output, a failure that
/// would open the route's breaker, and a delay.
fn steering() -> Value {
    json!({"prompt_tokens": 4_000_000_000u64, "tokens": 100_000, "status": 503, "ttft_ms": 60_000})
}

/// The same orders as `x-mock-*` headers.
fn steering_headers() -> HeaderMap {
    let mut h = HeaderMap::new();
    for (name, value) in [
        ("x-mock-prompt-tokens", "4000000000"),
        ("x-mock-tokens", "100000"),
        ("x-mock-status", "503"),
        ("x-mock-ttft-ms", "60000"),
    ] {
        h.insert(name, value.parse().unwrap());
    }
    h
}

async fn entry(gw: &TestGateway, id: &str) -> UsageEntryRow {
    gw.gw
        .ledger
        .wait_for_entry(id, WAIT)
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("no ledger entry for {id}"))
}

/// Sends a chat request (with extra headers), reads it to the end; returns the request id, the
/// status and the answer text (streamed or not).
async fn chat(gw: &TestGateway, body: Value, headers: HeaderMap) -> (String, u16, String) {
    let resp = gw.chat(body.clone()).headers(headers).send().await.unwrap();
    let (id, status) = (request_id(&resp), resp.status().as_u16());
    let text = resp.text().await.unwrap();
    let answer = if body["stream"] == true {
        let items = parse_sse(&text);
        assert!(items.contains(&Sse::Done), "{text}");
        joined(&items, "content")
    } else {
        let v: Value = serde_json::from_str(&text).unwrap();
        v["choices"][0]["message"]["content"]
            .as_str()
            .unwrap_or_else(|| panic!("no answer: {v}"))
            .to_owned()
    };
    (id, status, answer)
}

/// The mock's answer when nothing steers it: its 12 content words.
fn plain_answer() -> String {
    mock_upstream::CONTENT_WORDS.concat()
}

fn assert_no_steering_reached(mock: &MockUpstream) {
    for r in mock.requests() {
        assert!(r.body.get("mock").is_none(), "{} got {}", r.path, r.body);
        assert!(!r.body.to_string().contains("4000000000"), "{}", r.body);
        assert!(
            r.headers
                .iter()
                .all(|(name, _)| !name.starts_with("x-mock-")),
            "{:?}",
            r.headers
        );
    }
}

#[tokio::test]
async fn a_mock_field_is_not_forwarded_and_is_billed_as_the_same_request_without_it() {
    let (gw, mock) = start_with_mock("").await;
    for stream in [false, true] {
        let plain = json!({"model": "m", "stream": stream, "messages": user("hi"), "x_custom": 1});
        let mut steered = plain.clone();
        steered["mock"] = steering();

        let (plain_id, status, plain_text) = chat(&gw, plain, HeaderMap::new()).await;
        assert_eq!(status, 200);
        let (steered_id, status, steered_text) = chat(&gw, steered, HeaderMap::new()).await;
        assert_eq!(status, 200, "stream {stream}");
        assert_eq!(steered_text, plain_text);
        assert_eq!(steered_text, plain_answer());

        // The upstream got the same body both times: unknown fields survive, `mock` does not.
        let sent = mock.requests();
        let (a, b) = (&sent[sent.len() - 2].body, &sent[sent.len() - 1].body);
        assert_eq!(a, b);
        assert_eq!(b["x_custom"], 1);

        let (p, s) = (entry(&gw, &plain_id).await, entry(&gw, &steered_id).await);
        assert_eq!(
            (
                s.prompt_tokens,
                s.completion_tokens,
                s.cost,
                s.end_reason.as_str()
            ),
            (
                p.prompt_tokens,
                p.completion_tokens,
                p.cost,
                p.end_reason.as_str()
            ),
            "stream {stream}"
        );
        assert_eq!(s.completion_tokens, 12);
    }
    assert_no_steering_reached(&mock);
}

#[tokio::test]
async fn x_mock_headers_change_nothing() {
    let (gw, mock) = start_with_mock("").await;
    for stream in [false, true] {
        let body = json!({"model": "m", "stream": stream, "messages": user("hi")});
        let (plain_id, _, _) = chat(&gw, body.clone(), HeaderMap::new()).await;
        let (id, status, text) = chat(&gw, body, steering_headers()).await;
        assert_eq!(status, 200, "stream {stream}");
        assert_eq!(text, plain_answer());
        let (p, s) = (entry(&gw, &plain_id).await, entry(&gw, &id).await);
        assert_eq!(
            (s.prompt_tokens, s.completion_tokens, s.cost),
            (p.prompt_tokens, p.completion_tokens, p.cost)
        );
    }
    assert_no_steering_reached(&mock);
}

#[tokio::test]
async fn neither_the_anthropic_translation_nor_the_responses_api_forwards_a_mock_field() {
    let mock = MockUpstream::start().await.unwrap();
    let extra = format!(
        r#"
[providers.claude]
kind = "anthropic"
base_url = "{}"
api_key = "sk-ant-test"

[models.claude]
routes = ["claude/mock-claude"]
input_price = "3.00"
output_price = "15.00"
"#,
        mock.base_url()
    );
    let gw = harness::start(&harness::mock_config(&mock, &extra)).await;
    for stream in [false, true] {
        let body = json!({"model": "claude", "stream": stream, "messages": user("hi"),
                          "mock": steering()});
        let (id, status, text) = chat(&gw, body, steering_headers()).await;
        assert_eq!(status, 200, "stream {stream}");
        assert_eq!(text, plain_answer());
        assert_eq!(entry(&gw, &id).await.completion_tokens, 12);
    }
    for (model, path) in [("m", "/v1/chat/completions"), ("claude", "/v1/messages")] {
        let resp = harness::client()
            .post(gw.url("/v1/responses"))
            .bearer_auth(&gw.key)
            .headers(steering_headers())
            .json(&json!({"model": model, "input": "hi", "mock": steering()}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{model}");
        let id = request_id(&resp);
        let v: Value = resp.json().await.unwrap();
        assert_eq!(v["status"], "completed", "{v}");
        assert_eq!(v["output"][0]["content"][0]["text"], plain_answer(), "{v}");
        assert_eq!(entry(&gw, &id).await.completion_tokens, 12);
        assert_eq!(mock.requests().last().unwrap().path, path);
    }
    assert_eq!(mock.requests().len(), 4);
    assert_no_steering_reached(&mock);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_demo_ignores_every_order_a_request_carries() {
    let gw = harness::start_embedded().await;
    let five = Decimal::from(5);
    let key = gw.gw.ledger.key(&gw.key_id).await.unwrap().unwrap();
    assert_eq!(key.balance.to_usd(), five, "the demo key starts with $5");
    let (_, _, plain_text) = chat(
        &gw,
        json!({"model": "demo-chat", "messages": user("hi")}),
        HeaderMap::new(),
    )
    .await;
    // More failing requests than any breaker tolerates, streamed and not, body and headers.
    for i in 0..12 {
        let body = json!({"model": "demo-chat", "stream": i % 2 == 1, "messages": user("hi"),
                          "mock": {"prompt_tokens": 4_000_000_000u64, "tokens": 100_000,
                                   "status": 503, "stall_after": 1}});
        let (id, status, text) = chat(&gw, body, steering_headers()).await;
        assert_eq!(status, 200, "request {i}");
        assert_eq!(text, plain_text, "request {i}");
        let e = entry(&gw, &id).await;
        assert_eq!(e.end_reason, "stop");
        assert!(e.prompt_tokens < 100 && e.completion_tokens < 100, "{e:?}");
    }
    let key = gw.gw.ledger.key(&gw.key_id).await.unwrap().unwrap();
    let left = key.balance.to_usd();
    assert!(
        left <= five && left > five - Decimal::new(1, 2),
        "the $5 key has {left} left"
    );
}
