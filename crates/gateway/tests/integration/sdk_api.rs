//! The official OpenAI SDKs (Python and Node) as judges of `POST /v1/embeddings` and
//! `GET /v1/models[/{id}]`: scenarios `embeddings`, `embeddings_no_balance` and `models` of
//! `tests/sdk/python/conformance.py` and `tests/sdk/node/conformance.mjs`. Float and base64
//! (the SDKs' default, decoded by them) vectors, batches, token arrays and `dimensions`; every
//! answer's `usage.cost`, every ledger entry and the balance equal input tokens × price exactly;
//! a key without balance gets a 402; `models.list()` / `models.retrieve()` with the extra fields;
//! scenario `completions`: `client.completions.create`, streamed and not, billed exactly.

use rust_decimal::Decimal;
use serde_json::Value;
use switchyard::auth;
use switchyard::store::ledger::{Nanos, NewKey};

use crate::harness::{self, start_with_mock, TestGateway};
use crate::sdk_runner::{command, run as run_script, Lang};

/// 0.13 USD per 1M input tokens.
const EXTRA: &str = r#"
[models.e]
kind = "embedding"
routes = ["mock/text-embedding-3-small"]
input_price = "0.13"
"#;

fn priced(tokens: u64) -> Decimal {
    Decimal::from(tokens) * Decimal::new(13, 2) / Decimal::from(1_000_000)
}

async fn run(lang: Lang, scenario: &str, gw: &TestGateway, poor: &str) -> Option<Value> {
    let mut cmd = command(lang, "conformance", scenario)?;
    cmd.env("SWITCHYARD_BASE_URL", gw.base_url())
        .env("SWITCHYARD_API_KEY", &gw.key)
        .env("SWITCHYARD_POOR_KEY", poor)
        .env("SWITCHYARD_MODEL", "m")
        .env("SWITCHYARD_EMBED_MODEL", "e");
    run_script(cmd, &format!("{lang:?} {scenario}"), scenario).await
}

async fn start() -> (TestGateway, mock_upstream::MockUpstream, String) {
    let (gw, mock) = start_with_mock(EXTRA).await;
    let (_, poor) = auth::create_key(
        &gw.gw.ledger,
        &NewKey {
            name: "poor".into(),
            credits: Nanos::ZERO,
            ..NewKey::default()
        },
    )
    .await
    .unwrap();
    (gw, mock, poor)
}

async fn embeddings(lang: Lang) {
    let (gw, mock, poor) = start().await;
    let (_, before) = harness::books(&gw.gw.ledger, &gw.key_id).await;
    let Some(facts) = run(lang, "embeddings", &gw, &poor).await else {
        return;
    };
    let want: Vec<f64> = mock_upstream::vector_of_text("the quick brown fox", 16)
        .into_iter()
        .map(f64::from)
        .collect();
    let got: Vec<f64> = serde_json::from_value(facts["vector"].clone()).unwrap();
    assert_eq!(got, want, "{facts}");
    // The SDK's default asked the upstream for base64; the float request for floats.
    let formats: Vec<Value> = mock
        .requests()
        .iter()
        .map(|r| r.body["encoding_format"].clone())
        .collect();
    assert_eq!(formats[..2], [Value::from("float"), Value::from("base64")]);
    let usages = facts["usages"].as_array().unwrap();
    let tokens: Vec<u64> = usages
        .iter()
        .map(|u| u["prompt_tokens"].as_u64().unwrap())
        .collect();
    // The mock's count: words of the three texts (4 + 2 + 4), twice; two words; 3 + 2 token ids.
    assert_eq!(tokens, [10, 10, 2, 5], "{facts}");
    for (u, t) in usages.iter().zip(&tokens) {
        assert_eq!(u["cost"], priced(*t).normalize().to_string(), "{facts}");
    }
    harness::released(&gw).await;
    let (rows, after) = harness::books(&gw.gw.ledger, &gw.key_id).await;
    let mut billed: Vec<(i64, Nanos)> = rows
        .values()
        .filter(|r| r.request_type.as_deref() == Some("embeddings"))
        .map(|r| (r.prompt_tokens, r.cost))
        .collect();
    billed.sort();
    let mut expected: Vec<(i64, Nanos)> = tokens
        .iter()
        .map(|t| (*t as i64, Nanos::from_usd(priced(*t)).unwrap()))
        .collect();
    expected.sort();
    assert_eq!(billed, expected);
    let total: i64 = expected.iter().map(|(_, c)| c.0).sum();
    assert_eq!(before.0 - after.0, total);
}

#[tokio::test(flavor = "multi_thread")]
async fn python_embeddings_float_base64_batches_billed_exactly() {
    embeddings(Lang::Python).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn node_embeddings_float_base64_batches_billed_exactly() {
    embeddings(Lang::Node).await;
}

async fn no_balance(lang: Lang) {
    let (gw, mock, poor) = start().await;
    let Some(facts) = run(lang, "embeddings_no_balance", &gw, &poor).await else {
        return;
    };
    assert_eq!(facts["status"], 402, "{facts}");
    assert_eq!(facts["code"], "insufficient_quota", "{facts}");
    assert!(mock.requests().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn python_embeddings_without_balance_is_402() {
    no_balance(Lang::Python).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn node_embeddings_without_balance_is_402() {
    no_balance(Lang::Node).await;
}

async fn models(lang: Lang) {
    let (gw, _mock, poor) = start().await;
    let Some(facts) = run(lang, "models", &gw, &poor).await else {
        return;
    };
    assert_eq!(
        facts["ids"],
        serde_json::json!(["deepseek-r", "e", "m"]),
        "{facts}"
    );
    assert_eq!(facts["chat"]["kind"], "chat", "{facts}");
    assert_eq!(facts["chat"]["pricing"]["prompt"], "0.0000025", "{facts}");
    assert_eq!(facts["chat"]["context_length"], 128000, "{facts}");
    assert_eq!(facts["embedding"]["pricing"]["prompt"], "0.00000013");
    assert_eq!(facts["missing_code"], "model_not_found", "{facts}");
}

#[tokio::test(flavor = "multi_thread")]
async fn python_models_list_and_retrieve() {
    models(Lang::Python).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn node_models_list_and_retrieve() {
    models(Lang::Node).await;
}

/// `client.completions.create`, non-streamed then streamed with usage: `text_completion`
/// objects and chunks, the mock's words as text, `usage.cost` equal to the ledger's two entries
/// (request types `completions` and `completions.stream`) and to the balance taken.
async fn completions(lang: Lang) {
    let (gw, mock, poor) = start().await;
    mock.set_options(serde_json::json!({"tokens": 9})).unwrap();
    let (_, before) = harness::books(&gw.gw.ledger, &gw.key_id).await;
    let Some(facts) = run(lang, "completions", &gw, &poor).await else {
        return;
    };
    for (text, usage) in [("text", "usage"), ("stream_text", "stream_usage")] {
        let words = facts[text].as_str().unwrap().split_whitespace().count();
        assert_eq!(words, 9, "{facts}");
        assert_eq!(facts[usage]["completion_tokens"], 9, "{facts}");
    }
    assert_eq!(facts["finish_reason"], "stop", "{facts}");
    assert_eq!(
        facts["stream_finish"],
        serde_json::json!(["stop"]),
        "{facts}"
    );
    let sent: Vec<_> = mock.requests().iter().map(|r| r.body.clone()).collect();
    assert_eq!(sent.len(), 2);
    assert!(sent
        .iter()
        .all(|b| b["messages"][0]["content"] == "Say this is a test"));
    harness::released(&gw).await;
    let (rows, after) = harness::books(&gw.gw.ledger, &gw.key_id).await;
    let mut billed: Vec<(String, String)> = rows
        .values()
        .map(|r| {
            (
                r.request_type.clone().unwrap_or_default(),
                r.cost.to_string(),
            )
        })
        .collect();
    billed.sort();
    let costs = |u: &str| facts[u]["cost"].as_str().unwrap().to_owned();
    assert_eq!(
        billed,
        [
            ("completions".to_owned(), costs("usage")),
            ("completions.stream".to_owned(), costs("stream_usage")),
        ]
    );
    let total: i64 = rows.values().map(|r| r.cost.0).sum();
    assert!(total > 0);
    assert_eq!(before.0 - after.0, total);
}

#[tokio::test(flavor = "multi_thread")]
async fn python_completions_stream_and_not_billed_exactly() {
    completions(Lang::Python).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn node_completions_stream_and_not_billed_exactly() {
    completions(Lang::Node).await;
}
