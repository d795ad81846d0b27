//! `GET /v1/models` and `GET /v1/models/{id}` as a client sees them: the OpenAI fields the SDKs
//! need plus what each model offers (kind, context length, per-token and per-million pricing as
//! exact decimal strings, modalities, reasoning, output limit), from config with its defaults,
//! under every prefix; a model the key may not use, or that does not exist, is a 404
//! `model_not_found`.

use serde_json::{json, Value};
use switchyard::auth;
use switchyard::store::ledger::{Nanos, NewKey};

use crate::harness::{self, start_with_mock, TestGateway};

const EXTRA: &str = r#"
[models.vision]
routes = ["mock/gpt-4o"]
input_price = "2.50"
output_price = "10.00"
cached_input_price = "1.25"
context_length = 200000
max_output_tokens = 16384
modalities = { input = ["text", "image"], output = ["text"] }
reasoning = true

[models.e]
kind = "embedding"
routes = ["mock/text-embedding-3-small"]
input_price = "0.02"
"#;

async fn get(gw: &TestGateway, key: &str, path: &str) -> (u16, Value) {
    let resp = harness::client()
        .get(gw.url(path))
        .bearer_auth(key)
        .send()
        .await
        .unwrap();
    (resp.status().as_u16(), resp.json().await.unwrap())
}

#[tokio::test]
async fn entries_say_what_each_model_offers() {
    let (gw, _mock) = start_with_mock(EXTRA).await;
    for prefix in ["/v1", "/api/v1", "/v1/llm"] {
        let (status, list) = get(&gw, &gw.key, &format!("{prefix}/models")).await;
        assert_eq!(status, 200);
        let ids: Vec<&str> = list["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["id"].as_str().unwrap())
            .collect();
        assert_eq!(ids, ["deepseek-r", "e", "m", "vision"], "{prefix}");
        let (status, vision) = get(&gw, &gw.key, &format!("{prefix}/models/vision")).await;
        assert_eq!(status, 200);
        assert_eq!(list["data"][3], vision);
        assert_eq!(
            vision,
            json!({
                "id": "vision", "object": "model", "created": 0, "owned_by": "switchyard",
                "kind": "chat", "context_length": 200000, "max_output_tokens": 16384,
                "pricing": {
                    "prompt": "0.0000025", "completion": "0.00001",
                    "prompt_per_million": "2.5", "completion_per_million": "10",
                    "input_cache_read": "0.00000125", "input_cache_read_per_million": "1.25",
                },
                "modalities": {"input": ["text", "image"], "output": ["text"]},
                "reasoning": true,
                "capabilities": {"chat": true, "streaming": true, "tools": true,
                                 "reasoning": true, "vision": true},
            })
        );
    }
    // Defaults: a chat model reads text and writes text, 128k context, no reasoning.
    let (_, m) = get(&gw, &gw.key, "/v1/models/m").await;
    assert_eq!(m["kind"], "chat");
    assert_eq!(m["context_length"], 128000);
    assert_eq!(m["max_output_tokens"], 32768);
    assert_eq!(m["reasoning"], false);
    assert_eq!(
        m["modalities"],
        json!({"input": ["text"], "output": ["text"]})
    );
    assert_eq!(m["pricing"]["prompt"], "0.0000025");
    let (_, e) = get(&gw, &gw.key, "/v1/models/e").await;
    assert_eq!(e["kind"], "embedding");
    assert_eq!(e["max_output_tokens"], Value::Null);
    assert_eq!(e["pricing"]["prompt"], "0.00000002");
    assert_eq!(e["pricing"]["completion"], "0");
    assert_eq!(e["modalities"]["output"], json!(["embeddings"]));
}

#[tokio::test]
async fn unknown_and_not_allowed_models_are_404() {
    let (gw, _mock) = start_with_mock(EXTRA).await;
    let (_, only_m) = auth::create_key(
        &gw.gw.ledger,
        &NewKey {
            name: "only-m".into(),
            credits: Nanos::ZERO,
            models: Some(vec!["m".into()]),
            ..NewKey::default()
        },
    )
    .await
    .unwrap();
    let (_, list) = get(&gw, &only_m, "/v1/models").await;
    assert_eq!(list["data"].as_array().unwrap().len(), 1);
    assert_eq!(get(&gw, &only_m, "/v1/models/m").await.0, 200);
    for (key, id) in [(&only_m, "vision"), (&gw.key, "nope")] {
        let (status, v) = get(&gw, key, &format!("/v1/models/{id}")).await;
        assert_eq!(status, 404, "{v}");
        assert_eq!(v["error"]["code"], "model_not_found");
        assert_eq!(v["error"]["type"], "invalid_request_error");
    }
    let (status, _) = get(&gw, "sk-sy-wrong", "/v1/models/m").await;
    assert_eq!(status, 401);
}

/// Agents read a model's window from the list: Claude Code asks in Anthropic's shape (it sends
/// `anthropic-version` and `x-api-key`), Codex and other OpenAI clients get OpenAI's with the
/// window, output limit, prices and capabilities.
#[tokio::test]
async fn agents_find_the_window_in_their_own_shape() {
    let (gw, _mock) = start_with_mock(EXTRA).await;
    let anthropic = |path: &str| {
        harness::client()
            .get(gw.url(path))
            .header("x-api-key", &gw.key)
            .header("anthropic-version", "2023-06-01")
            .send()
    };
    let list: Value = anthropic("/v1/models").await.unwrap().json().await.unwrap();
    assert_eq!(list["has_more"], false);
    let vision = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == "vision")
        .unwrap();
    assert_eq!(vision["type"], "model");
    assert_eq!(vision["display_name"], "vision");
    assert_eq!(vision["max_input_tokens"], 200000);
    assert_eq!(vision["max_tokens"], 16384);
    assert!(
        list["data"]
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["id"] != "e"),
        "embedding models are not Messages models"
    );
    let one: Value = anthropic("/v1/models/vision")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(one["type"], "model");

    let (status, openai) = get(&gw, &gw.key, "/v1/models/vision").await;
    assert_eq!(status, 200);
    assert_eq!(openai["object"], "model");
    assert_eq!(openai["context_length"], 200000);
    assert_eq!(
        openai["capabilities"],
        json!({"chat": true, "streaming": true, "tools": true, "reasoning": true, "vision": true})
    );
}
