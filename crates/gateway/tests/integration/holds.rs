//! Holds that bound the cost: on a key that affords one plain request but not the worst case of a
//! bigger one, requests with `n: 4`, Anthropic thinking (through chat or the Responses API) or a
//! few images are refused with 402 before any upstream is called, while the plain request is
//! served. And the config rule behind it: a model without prices is a config error unless it is
//! marked `free = true`, and a free model bills nothing.

use mock_upstream::MockUpstream;
use rust_decimal::Decimal;
use serde_json::{json, Value};
use switchyard::auth;
use switchyard::config::Config;
use switchyard::store::ledger::{Nanos, NewKey};

use crate::harness::{self, mock_config, user, TestGateway};

/// A gateway with the harness models (`m`: OpenAI dialect, 2.50/10.00 per 1M) plus `claude`
/// (Anthropic dialect, 3.00/15.00 per 1M) on the same mock.
async fn gateway() -> (TestGateway, MockUpstream) {
    let mock = MockUpstream::start().await.unwrap();
    let extra = format!(
        r#"
[providers.claude]
kind = "anthropic"
base_url = "{}"
api_key = "sk-ant-test"

[models.claude]
routes = ["claude/claude-sonnet-4"]
input_price = "3.00"
output_price = "15.00"
"#,
        mock.base_url()
    );
    (harness::start(&mock_config(&mock, &extra)).await, mock)
}

/// A new key with `usd` of credit.
async fn key_with(gw: &TestGateway, usd: &str) -> String {
    let credits = Nanos::from_usd(usd.parse::<Decimal>().unwrap()).unwrap();
    let (_, key) = auth::create_key(
        &gw.gw.ledger,
        &NewKey {
            name: "small".into(),
            credits,
            ..NewKey::default()
        },
    )
    .await
    .unwrap();
    key
}

/// POSTs `body` to `path` with `key`; returns the status and the JSON body.
async fn post(gw: &TestGateway, key: &str, path: &str, body: Value) -> (u16, Value) {
    let resp = harness::client()
        .post(gw.url(path))
        .bearer_auth(key)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

fn assert_refused(status: u16, body: &Value, what: &str) {
    assert_eq!(status, 402, "{what}: {body}");
    assert_eq!(
        body["error"]["code"], "insufficient_quota",
        "{what}: {body}"
    );
}

#[tokio::test]
async fn n_choices_are_held_n_times_and_refused_before_the_upstream() {
    let (gw, mock) = gateway().await;
    // Plain: 100 output tokens at 10 USD/M ≈ 0.001 USD held. n = 4: ≈ 0.004 USD.
    let key = key_with(&gw, "0.003").await;
    let body = json!({"model": "m", "max_tokens": 100, "n": 4, "messages": user("hi")});
    let (status, err) = post(&gw, &key, "/v1/chat/completions", body).await;
    assert_refused(status, &err, "n = 4");
    assert!(mock.requests().is_empty(), "no upstream was called");

    let plain = json!({"model": "m", "max_tokens": 100, "messages": user("hi")});
    let (status, answer) = post(&gw, &key, "/v1/chat/completions", plain).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(mock.requests().len(), 1);
}

#[tokio::test]
async fn an_anthropic_thinking_budget_is_held_as_output() {
    let (gw, mock) = gateway().await;
    // Plain: 100 output tokens at 15 USD/M = 0.0015 USD. With a 2,000-token thinking budget the
    // translation asks Anthropic for 2,100 tokens: 0.0315 USD.
    let key = key_with(&gw, "0.003").await;
    let thinking = json!({"model": "claude", "max_tokens": 100, "messages": user("hi"),
                          "thinking": {"type": "enabled", "budget_tokens": 2000}});
    let (status, err) = post(&gw, &key, "/v1/chat/completions", thinking).await;
    assert_refused(status, &err, "thinking");
    let effort = json!({"model": "claude", "max_tokens": 100, "messages": user("hi"),
                        "reasoning_effort": "low"});
    let (status, err) = post(&gw, &key, "/v1/chat/completions", effort).await;
    assert_refused(status, &err, "reasoning_effort");
    // The Responses API builds the same chat request: `reasoning.effort` and `max_output_tokens`.
    let responses = json!({"model": "claude", "input": "hi", "max_output_tokens": 100,
                           "reasoning": {"effort": "low"}});
    let (status, err) = post(&gw, &key, "/v1/responses", responses).await;
    assert_refused(status, &err, "Responses reasoning");
    assert!(mock.requests().is_empty(), "no upstream was called");

    let plain = json!({"model": "claude", "max_tokens": 100, "messages": user("hi")});
    let (status, answer) = post(&gw, &key, "/v1/chat/completions", plain).await;
    assert_eq!(status, 200, "{answer}");
    let plain = json!({"model": "claude", "input": "hi", "max_output_tokens": 50});
    let (status, answer) = post(&gw, &key, "/v1/responses", plain).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(mock.requests().len(), 2);
}

#[tokio::test]
async fn images_are_held_by_the_provider_rules_not_by_their_url() {
    let (gw, mock) = gateway().await;
    // Three image URLs are ~150 bytes, but each image can cost thousands of prompt tokens
    // (3,779 at most on an unknown OpenAI-dialect model): ≈ 0.028 USD at 2.50 USD/M.
    let key = key_with(&gw, "0.003").await;
    let image = |n: u32| {
        json!({"type": "image_url",
                                "image_url": {"url": format!("https://example.com/{n}.png")}})
    };
    let body = json!({"model": "m", "max_tokens": 100, "messages": [{"role": "user", "content": [
        {"type": "text", "text": "What differs?"}, image(1), image(2), image(3)]}]});
    let (status, err) = post(&gw, &key, "/v1/chat/completions", body).await;
    assert_refused(status, &err, "images");
    // On the Anthropic route too (at most 4,800 tokens each there).
    let body = json!({"model": "claude", "max_tokens": 100, "messages": [{"role": "user",
        "content": [{"type": "text", "text": "What differs?"}, image(1), image(2)]}]});
    let (status, err) = post(&gw, &key, "/v1/chat/completions", body).await;
    assert_refused(status, &err, "images on Anthropic");
    assert!(mock.requests().is_empty(), "no upstream was called");

    let plain = json!({"model": "m", "max_tokens": 100,
                       "messages": user("What differs between the three pictures?")});
    let (status, answer) = post(&gw, &key, "/v1/chat/completions", plain).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(mock.requests().len(), 1);
}

#[tokio::test]
async fn a_model_without_prices_is_a_config_error_naming_it() {
    let mock = MockUpstream::start().await.unwrap();
    let text = mock_config(&mock, "\n[models.forgotten]\nroutes = [\"mock/m\"]\n");
    let err = Config::parse(&text, "switchyard.toml")
        .unwrap_err()
        .to_string();
    let routes_line = text
        .lines()
        .position(|l| l == "[models.forgotten]")
        .unwrap()
        + 2;
    assert!(
        err.starts_with(&format!("switchyard.toml: line {routes_line}: ")),
        "{err}"
    );
    assert!(err.contains("models.\"forgotten\""), "{err}");
    assert!(err.contains("free = true"), "{err}");
}

#[tokio::test]
async fn a_free_model_is_served_and_bills_nothing() {
    let mock = MockUpstream::start().await.unwrap();
    let text = mock_config(
        &mock,
        "\n[models.gratis]\nroutes = [\"mock/m\"]\nfree = true\n",
    );
    let gw = harness::start(&text).await;
    let key = key_with(&gw, "0.000001").await;
    let resp = harness::client()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(&key)
        .json(&json!({"model": "gratis", "messages": user("hi")}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let id = resp.headers()["x-request-id"].to_str().unwrap().to_owned();
    let answer: Value = resp.json().await.unwrap();
    assert_eq!(answer["usage"]["cost"], "0", "{answer}");
    let entry = gw
        .gw
        .ledger
        .wait_for_entry(&id, std::time::Duration::from_secs(20))
        .await
        .unwrap()
        .expect("an entry");
    assert!(entry.completion_tokens > 0);
    assert_eq!(entry.cost, Nanos::ZERO);
}
