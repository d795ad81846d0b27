//! Coding-plan quotas: a key's windows (`7d:requests=3`, `5h:usd=…`) cap what it may use; a
//! window opens with its first request, admission holds against every window (requests in flight
//! count), the refusal is a 429 naming the window with `retry-after` until it frees, and
//! `GET /v1/key` shows each window's use and `resets_at`. Across two `switchyard serve` processes
//! sharing PostgreSQL holds, no window is ever exceeded under concurrent load.

use std::path::Path;

use mock_upstream::MockUpstream;
use serde_json::{json, Value};
use sqlx::Connection;

use crate::harness::{self, temp_db, user};
use crate::ledger_conformance::{postgres_url, TestDb};

const ADMIN: &str = "admin-secret-for-quotas-0123456";

#[tokio::test(flavor = "multi_thread")]
async fn a_full_window_is_a_429_naming_it_until_it_frees() {
    let (gw, _mock) = harness::start_with_mock_top(&format!("admin_key = \"{ADMIN}\""), "").await;
    let created: Value = harness::client()
        .post(gw.url("/admin/keys"))
        .bearer_auth(ADMIN)
        .json(&json!({"name": "plan", "credits": "10", "quotas": "5h:usd=5,7d:requests=3"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let key = created["key"].as_str().expect("a key").to_owned();
    assert_eq!(created["limits"]["quotas"][1]["window"], "7d", "{created}");
    let ask = || {
        harness::client()
            .post(gw.url("/v1/chat/completions"))
            .bearer_auth(&key)
            .json(&json!({"model": "m", "messages": user("hi")}))
            .send()
    };
    let before = switchyard::store::ledger::now_ms();
    for _ in 0..3 {
        let resp = ask().await.unwrap();
        assert_eq!(resp.status(), 200);
        let id = harness::request_id(&resp);
        gw.gw
            .ledger
            .wait_for_entry(&id, std::time::Duration::from_secs(20))
            .await
            .unwrap();
    }
    let resp = ask().await.unwrap();
    assert_eq!(resp.status(), 429);
    let retry: u64 = resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry > 6 * 86_400 && retry <= 7 * 86_400, "{retry}");
    let e: Value = resp.json().await.unwrap();
    assert_eq!(e["error"]["code"], "quota_window_exceeded", "{e}");
    assert!(
        e["error"]["message"].as_str().unwrap().contains("7d"),
        "{e}"
    );
    // The caller sees each window: what it used and when it resets.
    let me: Value = harness::client()
        .get(gw.url("/v1/key"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let week = &me["limits"]["quotas"][1];
    assert_eq!(week["used"]["requests"], 3, "{me}");
    let resets = week["resets_at"].as_i64().unwrap();
    // The window opened with the first request (its start, to the millisecond as the entry has it).
    assert!(
        resets >= before - 1_000 + 7 * 86_400_000
            && resets <= switchyard::store::ledger::now_ms() + 7 * 86_400_000
    );
    let five = &me["limits"]["quotas"][0];
    assert!(
        five["used"]["usd"]
            .as_str()
            .unwrap()
            .parse::<f64>()
            .unwrap()
            > 0.0,
        "{me}"
    );
    // A bad spec is a 400 naming `quotas`.
    let resp = harness::client()
        .patch(gw.url(&format!("/admin/keys/{}", created["id"].as_str().unwrap())))
        .bearer_auth(ADMIN)
        .json(&json!({"quotas": "5x:usd=1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    // Lifting the window lets the key go on, its use kept.
    let resp = harness::client()
        .patch(gw.url(&format!("/admin/keys/{}", created["id"].as_str().unwrap())))
        .bearer_auth(ADMIN)
        .json(&json!({"quotas": [{"window": "7d", "requests": 4}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(ask().await.unwrap().status(), 200);
    assert_eq!(ask().await.unwrap().status(), 429);
}

/// One request's worst case: 100 output tokens at USD 10 per million, the prompt free.
const HOLD_NANOS: i64 = 100 * 10_000;
const CONCURRENT: usize = 40;

fn config(mock: &MockUpstream, database: &str, dir: &Path) -> String {
    format!(
        r#"
database = "{database}"
journal = "{journal}"
instances = "shared"
demo_credits = "100"

[providers.mock]
kind = "openai"
base_url = "{base}"
api_key = "upstream-secret-key"

[models.m]
routes = ["mock/m"]
input_price = "0"
output_price = "10.00"
"#,
        journal = dir.join("switchyard.journal").display(),
        base = mock.base_url(),
    )
}

/// Two instances on the database at `url`, the key's `quotas` set, `CONCURRENT` requests split
/// between them at once: how many got 200 and the key's quota windows after.
async fn burst(url: &str, quotas: Value) -> (usize, Vec<Value>) {
    let mock = MockUpstream::start().await.unwrap();
    mock.set_options(json!({"tokens": 100, "ttft_ms": 300}))
        .unwrap();
    let root = temp_db();
    let (a_dir, b_dir) = (root.join("a"), root.join("b"));
    let serve = |dir: &Path| {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join("switchyard.toml"), config(&mock, url, dir)).unwrap();
        let args = [
            "serve",
            "--config",
            "switchyard.toml",
            "--listen",
            "127.0.0.1:0",
        ];
        let dir = dir.to_owned();
        async move { harness::serve_binary(&dir, &args).await }
    };
    let (mut a, key, a_base) = serve(&a_dir).await;
    let key = key.expect("the first instance creates the key");
    let (mut b, _, b_base) = serve(&b_dir).await;
    let mut conn = sqlx::AnyConnection::connect(url).await.unwrap();
    sqlx::query("UPDATE api_keys SET quotas = $1, version = version + 1")
        .bind(quotas.to_string())
        .execute(&mut conn)
        .await
        .unwrap();
    let client = harness::client();
    let requests = (0..CONCURRENT).map(|i| {
        let base = if i % 2 == 0 { &a_base } else { &b_base };
        client
            .post(format!("{base}/chat/completions"))
            .bearer_auth(&key)
            .json(&json!({"model": "m", "max_tokens": 100, "messages": user("hi")}))
            .send()
    });
    let mut ok = 0;
    for resp in futures_util::future::join_all(requests).await {
        let resp = resp.unwrap();
        match resp.status().as_u16() {
            200 => ok += 1,
            429 => {
                let e: Value = resp.json().await.unwrap();
                assert_eq!(e["error"]["code"], "quota_window_exceeded", "{e}");
            }
            other => panic!("unexpected {other}: {}", resp.text().await.unwrap()),
        }
    }
    // A JSON answer is sent once its entry is durable: every window already counts it.
    a.kill().await.ok();
    b.kill().await.ok();
    let _ = std::fs::remove_dir_all(&root);
    let (windows,): (String,) = sqlx::query_as("SELECT quotas FROM api_keys")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    conn.close().await.ok();
    (ok, serde_json::from_str(&windows).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_never_exceed_a_request_window_or_a_money_window() {
    let Some(server) = postgres_url() else {
        return;
    };
    let week = 7 * 86_400_000_i64;
    let five_hours = 5 * 3_600_000_i64;
    for (quotas, affords) in [
        // The 7-day request window binds: 7 of 40.
        (
            json!([{"window_ms": five_hours, "usd_nanos": HOLD_NANOS * 30},
                   {"window_ms": week, "requests": 7}]),
            7,
        ),
        // The 5-hour money window binds: 5 holds' worth.
        (
            json!([{"window_ms": five_hours, "usd_nanos": HOLD_NANOS * 5},
                   {"window_ms": week, "requests": 100}]),
            5,
        ),
    ] {
        let db = TestDb::postgres(&server).await;
        let (ok, windows) = burst(&db.url, quotas).await;
        db.drop_db().await;
        assert_eq!(ok, affords, "{windows:?}");
        let (money, requests) = (&windows[0], &windows[1]);
        assert_eq!(requests["used_requests"], affords as i64, "{windows:?}");
        assert!(
            money["used_nanos"].as_i64().unwrap() <= money["usd_nanos"].as_i64().unwrap(),
            "{windows:?}"
        );
    }
}
