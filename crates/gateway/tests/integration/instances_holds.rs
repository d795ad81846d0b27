//! Several gateway processes on one PostgreSQL database with `instances = "shared"`: the holds
//! of every instance are taken against one shared account, so a key's balance is never
//! over-committed whichever instance admits. Two real `switchyard serve` processes, a fresh
//! database on the server in `SWITCHYARD_TEST_POSTGRES` (skipped loudly without it, failing
//! under `CI`).

use std::path::Path;

use mock_upstream::MockUpstream;
use serde_json::json;
use sqlx::Connection;

use crate::harness::{self, temp_db, user};
use crate::ledger_conformance::{postgres_url, TestDb};

/// One request's worst case: 100 output tokens at USD 10 per million, the prompt free.
const HOLD_NANOS: i64 = 100 * 10_000;
/// What the key affords.
const AFFORDS: usize = 10;
const CONCURRENT: usize = 60;

fn config(mock: &MockUpstream, database: &str, dir: &Path, instances: &str) -> String {
    format!(
        r#"
database = "{database}"
journal = "{journal}"
instances = "{instances}"
demo_credits = "{credits}"

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
        credits = rust_decimal::Decimal::new(HOLD_NANOS * AFFORDS as i64, 9),
        base = mock.base_url(),
    )
}

async fn serve(
    dir: &Path,
    config: &str,
) -> (
    tokio::process::Child,
    Option<String>,
    String,
    harness::Output,
) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("switchyard.toml"), config).unwrap();
    let args = [
        "serve",
        "--config",
        "switchyard.toml",
        "--listen",
        "127.0.0.1:0",
    ];
    harness::serve_binary_with(dir, &args, &[]).await
}

/// Starts two instances on the database at `url`, sends `CONCURRENT` requests split between them
/// at once, and returns how many got 200, how many 402, and the key's balance and open holds after.
async fn burst(url: &str, instances: &str) -> (usize, usize, i64, i64) {
    let mock = MockUpstream::start().await.unwrap();
    // Every answer costs exactly its hold (100 tokens), and is slow enough that many are open
    // at once.
    mock.set_options(json!({"tokens": 100, "ttft_ms": 300}))
        .unwrap();
    let root = temp_db();
    let (a_dir, b_dir) = (root.join("a"), root.join("b"));
    let (mut a, key, a_base, _) = serve(&a_dir, &config(&mock, url, &a_dir, instances)).await;
    let key = key.expect("the first instance creates the key on a fresh database");
    let (mut b, none, b_base, _) = serve(&b_dir, &config(&mock, url, &b_dir, instances)).await;
    assert!(none.is_none(), "the second instance finds the key");

    let client = harness::client();
    let requests = (0..CONCURRENT).map(|i| {
        let base = if i % 2 == 0 { &a_base } else { &b_base };
        client
            .post(format!("{base}/chat/completions"))
            .bearer_auth(&key)
            .json(&json!({"model": "m", "max_tokens": 100, "messages": user("hi")}))
            .send()
    });
    let answers = futures_util::future::join_all(requests).await;
    let (mut ok, mut refused) = (0, 0);
    for resp in answers {
        let resp = resp.unwrap();
        match resp.status().as_u16() {
            200 => ok += 1,
            402 => {
                let body: serde_json::Value = resp.json().await.unwrap();
                assert_eq!(body["error"]["code"], "insufficient_quota", "{body}");
                refused += 1;
            }
            other => panic!("unexpected {other}: {}", resp.text().await.unwrap()),
        }
    }
    a.kill().await.ok();
    b.kill().await.ok();
    let _ = std::fs::remove_dir_all(&root);

    let mut conn = sqlx::AnyConnection::connect(url).await.unwrap();
    let (balance, reserved): (i64, i64) =
        sqlx::query_as("SELECT balance_nanos, reserved_nanos FROM api_keys")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    conn.close().await.ok();
    (ok, refused, balance, reserved)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_answer_exactly_what_the_balance_affords() {
    let Some(server) = postgres_url() else {
        return;
    };
    let db = TestDb::postgres(&server).await;
    let url = db.url.clone();
    let (ok, refused, balance, reserved) = burst(&url, "shared").await;
    db.drop_db().await;
    assert_eq!(
        (ok, refused),
        (AFFORDS, CONCURRENT - AFFORDS),
        "answered and refused with 402"
    );
    // Debits only lower the balance, so its last value is its lowest.
    assert_eq!(balance, 0, "the balance ends at exactly zero, never below");
    assert_eq!(reserved, 0, "no hold is left open");
}

/// The control: the same burst with holds in each process's memory over-commits the balance,
/// which is what `instances = "shared"` is for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_single_instances_on_one_database_over_commit_the_balance() {
    let Some(server) = postgres_url() else {
        return;
    };
    let db = TestDb::postgres(&server).await;
    let url = db.url.clone();
    let (ok, _, balance, _) = burst(&url, "single").await;
    db.drop_db().await;
    assert!(ok > AFFORDS, "{ok} answered");
    assert!(balance < 0, "{balance}");
}
