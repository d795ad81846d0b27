//! `POST /v1/completions` (legacy text completions, served over chat) through the gateway, as a
//! client sees it: `text_completion` bodies and chunks from an OpenAI-dialect and an Anthropic
//! route, under every prefix, the exact bill (in `usage.cost`, the ledger and the request type
//! `completions[.stream]`), 402 without balance, failover before the answer, a client leaving
//! mid-stream billed as cancelled, and what chat cannot honour refused by param.

use std::time::Duration;

use futures_util::StreamExt;
use rust_decimal::Decimal;
use serde_json::{json, Value};
use switchyard::auth;
use switchyard::store::ledger::{Nanos, NewKey, UsageEntryRow};

use crate::harness::{self, data_events, parse_sse, request_id, Sse, TestGateway};

const WAIT: Duration = Duration::from_secs(20);

fn extra(mock: &mock_upstream::MockUpstream) -> String {
    format!(
        r#"
[providers.anthropic]
kind = "anthropic"
base_url = "{}"
api_key = "upstream-secret-key"

[models.claude]
routes = ["anthropic/mock-claude"]
input_price = "3.00"
output_price = "15.00"

[models."m-failover"]
routes = ["mock/m@status=500", "mockds/m"]
input_price = "2.50"
output_price = "10.00"
"#,
        mock.base_url()
    )
}

async fn start() -> (TestGateway, mock_upstream::MockUpstream) {
    let mock = mock_upstream::MockUpstream::start().await.unwrap();
    let text = harness::mock_config(&mock, &extra(&mock));
    (harness::start(&text).await, mock)
}

fn post(gw: &TestGateway, key: &str, prefix: &str, body: &Value) -> reqwest::RequestBuilder {
    harness::client()
        .post(gw.url(&format!("{prefix}/completions")))
        .bearer_auth(key)
        .json(body)
}

async fn entry(gw: &TestGateway, id: &str) -> UsageEntryRow {
    gw.gw
        .ledger
        .wait_for_entry(id, WAIT)
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("no ledger entry for {id}"))
}

fn at(tokens: i64, price: &str) -> Decimal {
    Decimal::from(tokens) * price.parse::<Decimal>().unwrap() / Decimal::from(1_000_000)
}

/// The text of every chunk, joined.
fn texts(items: &[Sse]) -> String {
    data_events(items)
        .iter()
        .flat_map(|e| e["choices"].as_array().cloned().unwrap_or_default())
        .filter_map(|c| c["text"].as_str().map(str::to_owned))
        .collect()
}

#[tokio::test]
async fn a_prompt_is_answered_as_a_text_completion_and_billed_exactly() {
    let (gw, mock) = start().await;
    mock.set_options(json!({"tokens": 7})).unwrap();
    let (_, before) = harness::books(&gw.gw.ledger, &gw.key_id).await;
    let resp = post(
        &gw,
        &gw.key,
        "/v1",
        &json!({"model": "m", "prompt": "Say hello", "stop": ["\n"], "user": "u1"}),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(resp.status(), 200);
    let id = request_id(&resp);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["object"], "text_completion", "{v}");
    assert!(v["id"].as_str().unwrap().starts_with("cmpl-"), "{v}");
    assert_eq!(v["model"], "m");
    let choice = &v["choices"][0];
    assert_eq!(choice["index"], 0);
    assert_eq!(choice["logprobs"], Value::Null);
    assert_eq!(
        choice["text"].as_str().unwrap().split_whitespace().count(),
        7
    );
    assert!(choice.get("message").is_none());
    // The chat request the upstream got: the prompt as one user message, OpenAI's default 16.
    let sent = mock.requests().last().unwrap().clone();
    assert_eq!(sent.path, "/v1/chat/completions");
    assert_eq!(
        sent.body["messages"],
        json!([{"role": "user", "content": "Say hello"}])
    );
    assert_eq!(sent.body["max_tokens"], 16);
    assert_eq!(sent.body["stop"], json!(["\n"]));
    let e = entry(&gw, &id).await;
    assert_eq!(e.request_type.as_deref(), Some("completions"));
    assert_eq!(e.completion_tokens, 7);
    assert_eq!(v["usage"]["completion_tokens"], 7);
    assert_eq!(json!(e.prompt_tokens), v["usage"]["prompt_tokens"]);
    assert_eq!(v["usage"]["cost"], e.cost.to_string());
    assert_eq!(
        e.cost.to_usd(),
        at(e.prompt_tokens, "2.50") + at(7, "10.00")
    );
    let (_, after) = harness::books(&gw.gw.ledger, &gw.key_id).await;
    assert_eq!(before.0 - after.0, e.cost.0);
    harness::released(&gw).await;
}

#[tokio::test]
async fn streams_text_completion_chunks_from_both_dialects_under_every_prefix() {
    let (gw, mock) = start().await;
    mock.set_options(json!({"tokens": 12})).unwrap();
    for (prefix, model) in [("/v1", "m"), ("/api/v1", "claude"), ("/v1/llm", "m")] {
        let body = json!({"model": model, "prompt": ["Count"], "max_tokens": 50, "stream": true,
            "stream_options": {"include_usage": true}});
        let resp = post(&gw, &gw.key, prefix, &body).send().await.unwrap();
        assert_eq!(resp.status(), 200, "{prefix}");
        let id = request_id(&resp);
        let items = parse_sse(&resp.text().await.unwrap());
        assert_eq!(items.iter().filter(|i| **i == Sse::Done).count(), 1);
        let events = data_events(&items);
        for e in &events {
            assert_eq!(e["object"], "text_completion", "{model}: {e}");
            for c in e["choices"].as_array().unwrap() {
                assert!(c["text"].is_string() && c.get("delta").is_none(), "{e}");
                assert_eq!(c["logprobs"], Value::Null);
            }
        }
        assert_eq!(texts(&items).split_whitespace().count(), 12, "{model}");
        let finish = events
            .iter()
            .filter_map(|e| e["choices"][0]["finish_reason"].as_str())
            .collect::<Vec<_>>();
        assert_eq!(finish, ["stop"], "{model}");
        let usage = events
            .iter()
            .rev()
            .find_map(|e| e.get("usage").filter(|u| !u.is_null()))
            .unwrap();
        let e = entry(&gw, &id).await;
        assert_eq!(e.request_type.as_deref(), Some("completions.stream"));
        assert_eq!(e.completion_tokens, 12);
        assert_eq!(usage["cost"], e.cost.to_string(), "{model}");
        let price = if model == "claude" {
            ("3.00", "15.00")
        } else {
            ("2.50", "10.00")
        };
        assert_eq!(
            e.cost.to_usd(),
            at(e.prompt_tokens, price.0) + at(12, price.1)
        );
        assert!(items
            .iter()
            .any(|i| matches!(i, Sse::Comment(c) if c.contains("cost"))));
    }
    let anthropic = mock
        .requests()
        .into_iter()
        .find(|r| r.path.ends_with("/messages"))
        .expect("the Anthropic route was asked");
    assert_eq!(anthropic.body["messages"][0]["role"], "user");
}

#[tokio::test]
async fn echo_puts_the_prompt_before_the_text() {
    let (gw, mock) = start().await;
    mock.set_options(json!({"tokens": 3})).unwrap();
    for stream in [false, true] {
        let body =
            json!({"model": "m", "prompt": "Once upon a time", "echo": true, "stream": stream});
        let resp = post(&gw, &gw.key, "/v1", &body).send().await.unwrap();
        assert_eq!(resp.status(), 200);
        let text = if stream {
            texts(&parse_sse(&resp.text().await.unwrap()))
        } else {
            let v: Value = resp.json().await.unwrap();
            v["choices"][0]["text"].as_str().unwrap().to_owned()
        };
        assert!(text.starts_with("Once upon a time"), "{stream}: {text}");
        assert_eq!(text.split_whitespace().count(), 4 + 3, "{text}");
    }
}

#[tokio::test]
async fn no_balance_is_a_402_and_nothing_is_sent() {
    let (gw, mock) = start().await;
    let (_, key) = auth::create_key(
        &gw.gw.ledger,
        &NewKey {
            name: "empty".into(),
            credits: Nanos::ZERO,
            ..NewKey::default()
        },
    )
    .await
    .unwrap();
    let before = mock.requests().len();
    let resp = post(&gw, &key, "/v1", &json!({"model": "m", "prompt": "a"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 402);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["code"], "insufficient_quota");
    assert_eq!(mock.requests().len(), before);
}

#[tokio::test]
async fn a_failing_route_fails_over_before_the_answer() {
    let (gw, mock) = start().await;
    mock.set_options(json!({"tokens": 4})).unwrap();
    for stream in [false, true] {
        let body = json!({"model": "m-failover", "prompt": "hi", "stream": stream});
        let resp = post(&gw, &gw.key, "/v1", &body).send().await.unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["x-switchyard-provider"], "mockds");
        let id = request_id(&resp);
        let text = if stream {
            texts(&parse_sse(&resp.text().await.unwrap()))
        } else {
            let v: Value = resp.json().await.unwrap();
            v["choices"][0]["text"].as_str().unwrap().to_owned()
        };
        assert_eq!(text.split_whitespace().count(), 4);
        let e = entry(&gw, &id).await;
        assert_eq!(e.completion_tokens, 4);
        assert!(e.attempts >= 2, "{}", e.attempts);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_leaving_mid_stream_is_billed_as_cancelled() {
    let (gw, mock) = start().await;
    mock.set_options(json!({"tokens": 500, "gap_ms": 20}))
        .unwrap();
    let body =
        json!({"model": "m", "prompt": "write a long essay", "max_tokens": 1000, "stream": true});
    let resp = post(&gw, &gw.key, "/v1", &body).send().await.unwrap();
    let id = request_id(&resp);
    let mut frames = resp.bytes_stream();
    let mut buf = String::new();
    while texts(&parse_sse(&buf)).split_whitespace().count() < 5 {
        buf.push_str(&String::from_utf8_lossy(
            &frames.next().await.unwrap().unwrap(),
        ));
    }
    drop(frames);
    let record = mock.wait_stream_end(0).await;
    assert!(record.client_disconnected);
    let e = entry(&gw, &id).await;
    assert_eq!(e.end_reason, "cancelled");
    assert_eq!(e.request_type.as_deref(), Some("completions.stream"));
    assert!((e.completion_tokens - i64::from(record.tokens_written)).abs() <= 1);
    assert!(e.completion_tokens >= 5);
    assert_eq!(
        e.cost.to_usd(),
        at(e.prompt_tokens, "2.50") + at(e.completion_tokens, "10.00")
    );
    harness::released(&gw).await;
}

#[tokio::test]
async fn what_chat_cannot_honour_is_a_400_naming_the_param() {
    let (gw, mock) = start().await;
    let before = mock.requests().len();
    for (body, param) in [
        (json!({"model": "m", "prompt": [1, 2, 3]}), "prompt"),
        (json!({"model": "m", "prompt": ["a", "b"]}), "prompt"),
        (
            json!({"model": "m", "prompt": "a", "logprobs": 3}),
            "logprobs",
        ),
        (
            json!({"model": "m", "prompt": "a", "best_of": 2}),
            "best_of",
        ),
        (
            json!({"model": "m", "prompt": "a", "suffix": "end"}),
            "suffix",
        ),
        (json!({"model": "m"}), "prompt"),
        (
            json!({"model": "m", "prompt": "a", "temperature": "hot"}),
            "temperature",
        ),
    ] {
        let resp = post(&gw, &gw.key, "/v1", &body).send().await.unwrap();
        assert_eq!(resp.status(), 400, "{body}");
        let v: Value = resp.json().await.unwrap();
        assert_eq!(v["error"]["param"], param, "{body}: {v}");
    }
    let resp = post(
        &gw,
        &gw.key,
        "/v1",
        &json!({"model": "nope", "prompt": "a"}),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(resp.status(), 404);
    assert_eq!(mock.requests().len(), before);
}
