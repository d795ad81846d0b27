//! The rest of the stored-responses API, as a client sees it: `DELETE /v1/responses/{id}` and
//! `GET /v1/responses/{id}/input_items` (OpenAI list shape, `limit` / `order` / `after`
//! pagination) under every prefix, for the key that created the response only; a deleted response
//! is gone for `GET` and for a later `previous_response_id`.

use serde_json::{json, Value};
use switchyard::auth;
use switchyard::store::ledger::{Nanos, NewKey};

use crate::harness::{self, start_with_mock, TestGateway};

async fn create(gw: &TestGateway, body: Value) -> Value {
    let resp = harness::client()
        .post(gw.url("/v1/responses"))
        .bearer_auth(&gw.key)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    resp.json().await.unwrap()
}

async fn call(method: reqwest::Method, gw: &TestGateway, key: &str, path: &str) -> (u16, Value) {
    let resp = harness::client()
        .request(method, gw.url(path))
        .bearer_auth(key)
        .send()
        .await
        .unwrap();
    (resp.status().as_u16(), resp.json().await.unwrap())
}

async fn get(gw: &TestGateway, path: String) -> (u16, Value) {
    call(reqwest::Method::GET, gw, &gw.key, &path).await
}

async fn other_key(gw: &TestGateway) -> String {
    auth::create_key(
        &gw.gw.ledger,
        &NewKey {
            name: "other".into(),
            credits: Nanos::from_usd("1".parse().unwrap()).unwrap(),
            ..NewKey::default()
        },
    )
    .await
    .unwrap()
    .1
}

#[tokio::test]
async fn input_items_list_the_input_with_ids_and_paginate() {
    let (gw, _mock) = start_with_mock("").await;
    let input = json!([
        {"role": "developer", "content": "be brief"},
        {"role": "user", "content": "first"},
        {"role": "assistant", "content": "ok"},
        {"role": "user", "content": [{"type": "input_text", "text": "second"}]},
    ]);
    let r = create(&gw, json!({"model": "m", "input": input})).await;
    let id = r["id"].as_str().unwrap();
    // Default: newest first, all four.
    let (status, all) = get(&gw, format!("/v1/responses/{id}/input_items")).await;
    assert_eq!(status, 200, "{all}");
    assert_eq!(all["object"], "list");
    assert_eq!(all["has_more"], false);
    let data = all["data"].as_array().unwrap();
    assert_eq!(data.len(), 4);
    assert_eq!(
        data[0]["content"],
        json!([{"type": "input_text", "text": "second"}])
    );
    assert_eq!(data[3]["role"], "developer");
    assert_eq!(data[1]["content"][0]["type"], "output_text");
    assert!(data
        .iter()
        .all(|i| i["type"] == "message" && i["id"].is_string()));
    assert_eq!(all["first_id"], data[0]["id"]);
    assert_eq!(all["last_id"], data[3]["id"]);
    // Ascending, two at a time, following `after`.
    let (_, page1) = get(
        &gw,
        format!("/api/v1/responses/{id}/input_items?order=asc&limit=2"),
    )
    .await;
    assert_eq!(page1["has_more"], true);
    assert_eq!(
        page1["data"][0]["content"],
        json!([{"type": "input_text", "text": "be brief"}])
    );
    let after = page1["last_id"].as_str().unwrap();
    let (_, page2) = get(
        &gw,
        format!("/v1/llm/responses/{id}/input_items?order=asc&limit=2&after={after}"),
    )
    .await;
    assert_eq!(page2["has_more"], false);
    assert_eq!(page2["data"].as_array().unwrap().len(), 2);
    assert_eq!(page2["last_id"], data[0]["id"]);
    for bad in ["limit=0", "limit=101", "order=up", "after=msg_nope"] {
        let (status, v) = get(&gw, format!("/v1/responses/{id}/input_items?{bad}")).await;
        assert_eq!(status, 400, "{bad}: {v}");
        assert!(v["error"]["param"].is_string(), "{v}");
    }
    // A string input is one user message.
    let r = create(&gw, json!({"model": "m", "input": "hello"})).await;
    let (_, one) = get(
        &gw,
        format!("/v1/responses/{}/input_items", r["id"].as_str().unwrap()),
    )
    .await;
    assert_eq!(one["data"].as_array().unwrap().len(), 1);
    assert_eq!(one["data"][0]["role"], "user");
    assert_eq!(
        one["data"][0]["content"],
        json!([{"type": "input_text", "text": "hello"}])
    );
}

#[tokio::test]
async fn only_the_creating_key_reads_or_deletes_and_deleted_is_gone() {
    let (gw, _mock) = start_with_mock("").await;
    let r = create(&gw, json!({"model": "m", "input": "hello"})).await;
    let id = r["id"].as_str().unwrap().to_owned();
    let other = other_key(&gw).await;
    let items = format!("/v1/responses/{id}/input_items");
    let one = format!("/v1/responses/{id}");
    for (method, path) in [
        (reqwest::Method::GET, &items),
        (reqwest::Method::DELETE, &one),
        (reqwest::Method::GET, &one),
    ] {
        let (status, v) = call(method, &gw, &other, path).await;
        assert_eq!(status, 404, "{v}");
        assert_eq!(v["error"]["code"], "response_not_found");
    }
    let (status, v) = call(reqwest::Method::DELETE, &gw, &gw.key, &one).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        v,
        json!({"id": id, "object": "response.deleted", "deleted": true})
    );
    for path in [&one, &items] {
        let (status, v) = call(reqwest::Method::GET, &gw, &gw.key, path).await;
        assert_eq!(
            (status, v["error"]["code"].as_str()),
            (404, Some("response_not_found"))
        );
    }
    let (status, _) = call(reqwest::Method::DELETE, &gw, &gw.key, &one).await;
    assert_eq!(status, 404);
    let resp = harness::client()
        .post(gw.url("/v1/responses"))
        .bearer_auth(&gw.key)
        .json(&json!({"model": "m", "input": "again", "previous_response_id": id}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["param"], "previous_response_id");
}

/// Stored conversations an operator controls: the admin lists a key's stored responses (never
/// their content) and deletes them; revoking the key deletes them; a purge past the retention
/// leaves nothing of them in the database file or its WAL; `retention_days = 0` stores none.
#[tokio::test]
async fn stored_responses_expire_are_listed_and_deleted_by_the_admin_and_go_with_a_revoked_key() {
    const ADMIN: &str = "admin-secret-for-responses-0123";
    let (gw, _mock) =
        crate::harness::start_with_mock_top(&format!("admin_key = \"{ADMIN}\""), "").await;
    let admin = |method: reqwest::Method, path: String| {
        harness::client()
            .request(method, gw.url(&path))
            .bearer_auth(ADMIN)
            .send()
    };
    let marker = "zebra-quartz-marker-4711";
    let first = create(
        &gw,
        json!({"model": "m", "input": format!("remember {marker}")}),
    )
    .await;
    let second = create(&gw, json!({"model": "m", "input": "hello again"})).await;
    let list: Value = admin(
        reqwest::Method::GET,
        format!("/admin/keys/{}/responses", gw.key_id),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let ids: Vec<&str> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 2, "{list}");
    assert!(ids.contains(&first["id"].as_str().unwrap()));
    assert!(
        !list.to_string().contains(marker),
        "the list shows no content"
    );
    // A purge past the retention: gone, and no trace left in the file or its WAL.
    let purged = gw
        .gw
        .store
        .responses()
        .purge(switchyard::store::ledger::now_ms() + 1)
        .await
        .unwrap();
    assert_eq!(purged, 2);
    let (status, _) = get(
        &gw,
        format!("/v1/responses/{}", first["id"].as_str().unwrap()),
    )
    .await;
    assert_eq!(status, 404);
    for suffix in ["", "-wal"] {
        let mut p = gw.db_path.clone().into_os_string();
        p.push(suffix);
        let bytes = std::fs::read(&p).unwrap_or_default();
        assert!(
            !bytes.windows(marker.len()).any(|w| w == marker.as_bytes()),
            "{suffix}: the purged conversation is still in the file"
        );
    }
    // The admin deletes what a key stored; a revoked key's go with it.
    create(&gw, json!({"model": "m", "input": "one"})).await;
    let resp = admin(
        reqwest::Method::DELETE,
        format!("/admin/keys/{}/responses", gw.key_id),
    )
    .await
    .unwrap();
    let deleted: Value = resp.json().await.unwrap();
    assert_eq!(deleted["deleted"], 1, "{deleted}");
    let kept = create(&gw, json!({"model": "m", "input": "two"})).await;
    assert_eq!(second["status"], "completed");
    let resp = admin(
        reqwest::Method::DELETE,
        format!("/admin/keys/{}", gw.key_id),
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(gw
        .gw
        .store
        .responses()
        .of_key(&gw.key_id)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(kept["status"], "completed");

    // retention_days = 0: nothing is stored.
    let (gw, _mock) = start_with_mock("[responses]\nretention_days = 0\n").await;
    let r = create(&gw, json!({"model": "m", "input": "hi"})).await;
    let (status, _) = get(&gw, format!("/v1/responses/{}", r["id"].as_str().unwrap())).await;
    assert_eq!(status, 404);
    assert!(gw
        .gw
        .store
        .responses()
        .of_key(&gw.key_id)
        .await
        .unwrap()
        .is_empty());
}

/// `switchyard keys revoke` deletes the key's stored conversations as the admin API does;
/// `--keep-responses` keeps them.
#[tokio::test]
async fn the_cli_revoke_deletes_a_keys_stored_responses_unless_asked_to_keep_them() {
    let (gw, _mock) = start_with_mock("").await;
    let db = format!("sqlite://{}", gw.db_path.display());
    create(&gw, json!({"model": "m", "input": "kept for a while"})).await;
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["keys", "revoke", &gw.key_id, "--database", &db])
        .kill_on_drop(true)
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("1 stored response(s) deleted"), "{said}");
    assert!(gw
        .gw
        .store
        .responses()
        .of_key(&gw.key_id)
        .await
        .unwrap()
        .is_empty());

    let (gw, _mock) = start_with_mock("").await;
    create(&gw, json!({"model": "m", "input": "kept on purpose"})).await;
    let db = format!("sqlite://{}", gw.db_path.display());
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args([
            "keys",
            "revoke",
            &gw.key_id,
            "--keep-responses",
            "--database",
            &db,
        ])
        .kill_on_drop(true)
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        gw.gw
            .store
            .responses()
            .of_key(&gw.key_id)
            .await
            .unwrap()
            .len(),
        1
    );
}
