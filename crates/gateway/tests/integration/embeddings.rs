//! `POST /v1/embeddings` through the gateway, as a client sees it: every input shape, float and
//! base64 vectors passed through, the exact bill (input tokens × input price, in the answer's
//! `usage.cost`, the ledger and the balance), failover before the answer, Anthropic routes
//! skipped, model kinds kept apart (chat to an embedding model and embeddings to a chat model are
//! 400s), 402 without balance, every prefix, and the embedded demo's `demo-embed`.

use std::time::Duration;

use base64::Engine;
use rust_decimal::Decimal;
use serde_json::{json, Value};
use switchyard::auth;
use switchyard::store::ledger::{Nanos, NewKey};

use crate::harness::{self, TestGateway};

const WAIT: Duration = Duration::from_secs(20);

/// `e` (0.13 USD per 1M input tokens) on the OpenAI-dialect mock; `e-failover` whose first route
/// answers 500; `e-mixed` with an Anthropic route first; `e-anthropic` with only one.
pub(crate) fn extra(mock: &mock_upstream::MockUpstream) -> String {
    format!(
        r#"
[providers.anthropic]
kind = "anthropic"
base_url = "{}"
api_key = "upstream-secret-key"

[models.e]
kind = "embedding"
routes = ["mock/text-embedding-3-small"]
input_price = "0.13"

[models."e-failover"]
kind = "embedding"
routes = ["mock/emb@status=500", "mockds/emb"]
input_price = "0.13"

[models."e-mixed"]
kind = "embedding"
routes = ["anthropic/mock-claude", "mock/emb"]
input_price = "0.13"

[models."e-anthropic"]
kind = "embedding"
routes = ["anthropic/mock-claude"]
input_price = "0.13"
"#,
        mock.base_url()
    )
}

async fn start() -> (TestGateway, mock_upstream::MockUpstream) {
    let mock = mock_upstream::MockUpstream::start().await.unwrap();
    let text = harness::mock_config(&mock, &extra(&mock));
    (harness::start(&text).await, mock)
}

async fn embed(gw: &TestGateway, key: &str, prefix: &str, body: Value) -> (u16, Value, String) {
    let resp = harness::client()
        .post(gw.url(&format!("{prefix}/embeddings")))
        .bearer_auth(key)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let id = harness::request_id(&resp);
    (status, resp.json().await.unwrap(), id)
}

fn floats(v: &Value) -> Vec<f32> {
    serde_json::from_value(v.clone()).unwrap()
}

/// Exactly `tokens` × 0.13 USD / 1M.
fn priced(tokens: u64) -> Decimal {
    Decimal::from(tokens) * Decimal::new(13, 2) / Decimal::from(1_000_000)
}

#[tokio::test]
async fn a_string_is_embedded_and_billed_exactly() {
    let (gw, mock) = start().await;
    let (_, before) = harness::books(&gw.gw.ledger, &gw.key_id).await;
    let text = "the quick brown fox jumps";
    let (status, v, id) = embed(&gw, &gw.key, "/v1", json!({"model": "e", "input": text})).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["object"], "list");
    assert_eq!(v["data"][0]["object"], "embedding");
    assert_eq!(v["data"][0]["index"], 0);
    let dims = mock_upstream::EMBEDDING_DIMENSIONS;
    assert_eq!(
        floats(&v["data"][0]["embedding"]),
        mock_upstream::vector_of_text(text, dims)
    );
    // The mock counts 5 tokens; 5 × 0.13 / 1M USD = 0.00000065.
    assert_eq!(v["usage"]["prompt_tokens"], 5);
    assert_eq!(v["usage"]["total_tokens"], 5);
    assert_eq!(v["usage"]["cost"], priced(5).normalize().to_string());
    assert_eq!(v["usage"]["cost"], "0.00000065");
    // The upstream got the route's model name and the request as sent.
    let sent = mock.requests().last().unwrap().clone();
    assert_eq!(sent.path, "/v1/embeddings");
    assert_eq!(sent.body["model"], "text-embedding-3-small");
    assert_eq!(sent.body["input"], text);
    let row = gw
        .gw
        .ledger
        .wait_for_entry(&id, WAIT)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.cost, Nanos::from_usd(priced(5)).unwrap());
    assert_eq!((row.prompt_tokens, row.completion_tokens), (5, 0));
    assert_eq!(row.request_type.as_deref(), Some("embeddings"));
    assert_eq!(row.status, Some(200));
    assert_eq!(row.token_source, "provider_reported");
    let (_, after) = harness::books(&gw.gw.ledger, &gw.key_id).await;
    assert_eq!(before.0 - after.0, row.cost.0);
    harness::released(&gw).await;
}

#[tokio::test]
async fn batches_token_arrays_and_options_pass_through() {
    let (gw, mock) = start().await;
    let body = json!({"model": "e", "input": ["one two", "three"], "dimensions": 4,
        "user": "u-1", "encoding_format": "float"});
    let (status, v, _) = embed(&gw, &gw.key, "/api/v1", body).await;
    assert_eq!(status, 200, "{v}");
    let data = v["data"].as_array().unwrap();
    assert_eq!(data.len(), 2);
    assert_eq!(
        floats(&data[1]["embedding"]),
        mock_upstream::vector_of_text("three", 4)
    );
    assert_eq!(v["usage"]["prompt_tokens"], 3);
    let sent = mock.requests().last().unwrap().body.clone();
    assert_eq!(
        (&sent["dimensions"], &sent["user"], &sent["encoding_format"]),
        (&json!(4), &json!("u-1"), &json!("float"))
    );
    let (status, v, _) = embed(
        &gw,
        &gw.key,
        "/v1/llm",
        json!({"model": "e", "input": [[1, 2, 3], [4, 5]]}),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["usage"]["prompt_tokens"], 5);
    assert_eq!(v["usage"]["cost"], "0.00000065");
    let (status, v, _) = embed(
        &gw,
        &gw.key,
        "/v1",
        json!({"model": "e", "input": [7, 8, 9]}),
    )
    .await;
    assert_eq!(
        (status, v["data"].as_array().unwrap().len()),
        (200, 1),
        "{v}"
    );
}

#[tokio::test]
async fn base64_vectors_are_passed_through() {
    let (gw, _mock) = start().await;
    let (status, v, _) = embed(
        &gw,
        &gw.key,
        "/v1",
        json!({"model": "e", "input": "hello world", "encoding_format": "base64"}),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    let raw = base64::engine::general_purpose::STANDARD
        .decode(v["data"][0]["embedding"].as_str().unwrap())
        .unwrap();
    let decoded: Vec<f32> = raw
        .chunks(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    assert_eq!(
        decoded,
        mock_upstream::vector_of_text("hello world", mock_upstream::EMBEDDING_DIMENSIONS)
    );
}

#[tokio::test]
async fn failover_before_the_answer_and_anthropic_routes_skipped() {
    let (gw, mock) = start().await;
    let resp = harness::client()
        .post(gw.url("/v1/embeddings"))
        .bearer_auth(&gw.key)
        .json(&json!({"model": "e-failover", "input": "a b"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-switchyard-attempts"], "2");
    assert_eq!(resp.headers()["x-switchyard-provider"], "mockds");
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["usage"]["prompt_tokens"], 2);

    let before = mock.requests().len();
    let (status, v, _) = embed(
        &gw,
        &gw.key,
        "/v1",
        json!({"model": "e-mixed", "input": "a"}),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    let sent: Vec<String> = mock.requests()[before..]
        .iter()
        .map(|r| r.path.clone())
        .collect();
    assert_eq!(
        sent,
        vec!["/v1/embeddings"],
        "no Anthropic request was made"
    );

    let (status, v, _) = embed(
        &gw,
        &gw.key,
        "/v1",
        json!({"model": "e-anthropic", "input": "a"}),
    )
    .await;
    assert_eq!(status, 400, "{v}");
    assert_eq!(v["error"]["param"], "model");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Anthropic"),
        "{v}"
    );
}

#[tokio::test]
async fn model_kinds_are_kept_apart_and_bad_input_is_a_400() {
    let (gw, _mock) = start().await;
    let (status, v, _) = embed(&gw, &gw.key, "/v1", json!({"model": "m", "input": "a"})).await;
    assert_eq!(status, 400, "{v}");
    assert_eq!(v["error"]["param"], "model");
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("not an embedding model"));
    let resp = gw
        .chat(json!({"model": "e", "messages": harness::user("hi")}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let v: Value = resp.json().await.unwrap();
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("embedding model"),
        "{v}"
    );
    let resp = harness::client()
        .post(gw.url("/v1/responses"))
        .bearer_auth(&gw.key)
        .json(&json!({"model": "e", "input": "hi"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    for (body, param) in [
        (json!({"model": "e"}), "input"),
        (json!({"model": "e", "input": ""}), "input"),
        (json!({"model": "e", "input": ["a", {}]}), "input[1]"),
        (
            json!({"model": "e", "input": "a", "encoding_format": "hex"}),
            "encoding_format",
        ),
        (json!({"input": "a"}), "model"),
    ] {
        let (status, v, _) = embed(&gw, &gw.key, "/v1", body).await;
        assert_eq!(
            (status, v["error"]["param"].as_str()),
            (400, Some(param)),
            "{v}"
        );
    }
    let (status, v, _) = embed(&gw, &gw.key, "/v1", json!({"model": "nope", "input": "a"})).await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (404, Some("model_not_found"))
    );
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
    let (status, v, _) = embed(&gw, &key, "/v1", json!({"model": "e", "input": "a"})).await;
    assert_eq!(status, 402, "{v}");
    assert_eq!(v["error"]["code"], "insufficient_quota");
    assert_eq!(mock.requests().len(), before);
}

#[tokio::test]
async fn the_embedded_default_serves_demo_embed() {
    let gw = harness::start_embedded().await;
    let (status, v, _) = embed(
        &gw,
        &gw.key,
        "/v1",
        json!({"model": "demo-embed", "input": ["hello there", "general kenobi"]}),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["data"].as_array().unwrap().len(), 2);
    assert_eq!(v["usage"]["prompt_tokens"], 4);
    // 4 × 0.02 USD / 1M.
    assert_eq!(v["usage"]["cost"], "0.00000008");
    let models: Value = harness::client()
        .get(gw.url("/v1/models/demo-embed"))
        .bearer_auth(&gw.key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(models["kind"], "embedding");
    assert_eq!(models["modalities"]["output"], json!(["embeddings"]));
}
