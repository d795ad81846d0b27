//! Authentication from memory, as a client and an operator notice it: a known key keeps working
//! with the database gone; a top-up, a limit change and a revoke through the admin API apply to
//! the very next request; a flood of unknown keys gets 401s without evicting a valid key, and the
//! database never sees more than the bounded number of lookups at once while the valid key's
//! requests keep being served and billed.

use std::time::Duration;

use futures_util::StreamExt;
use serde_json::{json, Value};
use switchyard::auth::MAX_MISS_LOOKUPS;

use crate::harness::{self, start_with_mock, start_with_mock_top, user, TestGateway};

const ADMIN: &str = "admin-secret-auth-0123456789";

async fn status_and_body(resp: reqwest::Response) -> (u16, Value) {
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

async fn models(gw: &TestGateway, key: &str) -> (u16, Value) {
    models_with(&harness::client(), gw, key).await
}

async fn models_with(client: &reqwest::Client, gw: &TestGateway, key: &str) -> (u16, Value) {
    status_and_body(
        client
            .get(gw.url("/v1/models"))
            .bearer_auth(key)
            .send()
            .await
            .unwrap(),
    )
    .await
}

async fn chat(gw: &TestGateway, key: &str) -> (u16, Value) {
    status_and_body(
        harness::client()
            .post(gw.url("/v1/chat/completions"))
            .bearer_auth(key)
            .json(&json!({"model": "m", "messages": user("hi"), "max_tokens": 16}))
            .send()
            .await
            .unwrap(),
    )
    .await
}

async fn patch_key(gw: &TestGateway, id: &str, body: Value) {
    let resp = harness::client()
        .patch(gw.url(&format!("/admin/keys/{id}")))
        .bearer_auth(ADMIN)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status().as_u16(),
        200,
        "{}",
        resp.text().await.unwrap()
    );
}

#[tokio::test]
async fn a_known_key_is_served_with_the_database_closed() {
    let (gw, _mock) = start_with_mock("").await;
    assert_eq!(models(&gw, &gw.key).await.0, 200);
    gw.gw.ledger.close().await;
    let (status, body) = models(&gw, &gw.key).await;
    assert_eq!(status, 200, "{body}");
    let listed: Vec<&str> = body["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["id"].as_str())
        .collect();
    assert!(listed.contains(&"m"), "{body}");
    // A token the gateway does not know still needs the database: it is not waved through.
    let (status, body) = models(&gw, "sk-sy-not-a-key").await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(gw.gw.auth.lookup_stats().lookups, 1);
}

#[tokio::test]
async fn a_top_up_a_limit_change_and_a_revoke_apply_on_the_very_next_request() {
    let (gw, _mock) = start_with_mock_top(&format!("admin_key = \"{ADMIN}\""), "").await;
    let resp = harness::client()
        .post(gw.url("/admin/keys"))
        .bearer_auth(ADMIN)
        .json(&json!({"name": "broke", "credits": "0"}))
        .send()
        .await
        .unwrap();
    let (status, created) = status_and_body(resp).await;
    assert_eq!(status, 201, "{created}");
    let key = created["key"].as_str().unwrap().to_owned();
    let id = created["id"].as_str().unwrap().to_owned();

    let (status, body) = chat(&gw, &key).await;
    assert_eq!(status, 402, "{body}");

    patch_key(&gw, &id, json!({"top_up": "1"})).await;
    let (status, body) = chat(&gw, &key).await;
    assert_eq!(status, 200, "{body}");

    patch_key(&gw, &id, json!({"models": ["deepseek-r"]})).await;
    let (status, body) = chat(&gw, &key).await;
    assert_eq!(status, 403, "{body}");
    patch_key(&gw, &id, json!({"models": null})).await;
    assert_eq!(chat(&gw, &key).await.0, 200);

    let resp = harness::client()
        .delete(gw.url(&format!("/admin/keys/{id}")))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let (status, body) = chat(&gw, &key).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error"]["code"], "invalid_api_key");

    // None of it needed a database lookup of the key.
    assert_eq!(gw.gw.auth.lookup_stats().lookups, 0);
}

#[tokio::test]
async fn a_flood_of_unknown_keys_neither_evicts_a_valid_key_nor_starves_the_ledger() {
    let (gw, _mock) = start_with_mock("").await;
    let (status, body) = chat(&gw, &gw.key).await;
    assert_eq!(status, 200, "{body}");

    const FLOOD: usize = 20_000;
    let client = harness::client();
    let flood = futures_util::stream::iter(0..FLOOD)
        .map(|_| {
            let token = switchyard::auth::new_id("sk-sy-", 32);
            let (gw, client) = (&gw, &client);
            async move { models_with(client, gw, &token).await }
        })
        .buffer_unordered(64)
        .fold(0usize, |refused, (status, body)| async move {
            assert_eq!(status, 401, "{body}");
            assert_eq!(body["error"]["code"], "invalid_api_key");
            refused + 1
        });
    // The valid key is served while the flood runs, and each of its requests reaches the ledger.
    let valid = async {
        let mut ids = Vec::new();
        for _ in 0..10 {
            let resp = harness::client()
                .post(gw.url("/v1/chat/completions"))
                .bearer_auth(&gw.key)
                .json(&json!({"model": "m", "messages": user("hi"), "max_tokens": 16}))
                .send()
                .await
                .unwrap();
            ids.push(resp.headers()["x-request-id"].to_str().unwrap().to_owned());
            let (status, body) = status_and_body(resp).await;
            assert_eq!(status, 200, "{body}");
        }
        ids
    };
    let (refused, ids) = tokio::join!(flood, valid);
    assert_eq!(refused, FLOOD);
    for id in &ids {
        let entry = gw
            .gw
            .ledger
            .wait_for_entry(id, Duration::from_secs(20))
            .await
            .unwrap();
        assert!(entry.is_some(), "no ledger entry for {id}");
    }

    let stats = gw.gw.auth.lookup_stats();
    assert!(
        stats.peak_concurrent as usize <= MAX_MISS_LOOKUPS,
        "{stats:?}"
    );
    assert!(stats.lookups >= 1, "{stats:?}");
    // After the flood the valid key is still answered from memory.
    let (status, body) = chat(&gw, &gw.key).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(gw.gw.auth.lookup_stats().lookups, stats.lookups);
}
