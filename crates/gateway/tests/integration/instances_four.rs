//! Four real `switchyard serve` processes on one PostgreSQL database (`instances = "shared"`, a
//! private server started by the test) and one Redis, behind no balancer: the test spreads its requests over the four
//! itself. Under mixed load on all four at once they behave as one gateway: a key that affords
//! exactly `AFFORDS` requests gets exactly that many answered (balance exactly zero, no hold
//! left), a key limited to `RPM` requests a minute gets at most that plus its refill, every
//! answered request has exactly one ledger entry, and a key revoked on the first instance is
//! refused by the other three through the change feed (their periodic re-read is an hour away;
//! the time it took is printed).
//!
//! Needs the PostgreSQL server binaries (`initdb`, `pg_ctl`) and `SWITCHYARD_TEST_REDIS`
//! (skipped loudly without them, failing under `CI`). Redis keys are named by key id, which is random per run, so runs and
//! other tests never share a counter.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use mock_upstream::MockUpstream;
use serde_json::{json, Value};
use sqlx::Connection;

use crate::harness::{self, user};
use crate::ledger_outage::PrivatePostgres;

const INSTANCES: usize = 4;
const ADMIN: &str = "admin-four-instances-0123456";
/// One request's worst case and real cost: 100 output tokens at USD 10 per million, the prompt
/// free.
const COST_NANOS: i64 = 100 * 10_000;
/// What the money key affords.
const AFFORDS: usize = 12;
/// Requests on the money key, spread over the four at once.
const MONEY_REQUESTS: usize = 48;
const RPM: u64 = 30;
/// Requests on the rate-limited key, at the same time as the money key's.
const RPM_REQUESTS: usize = 100;

/// `SWITCHYARD_TEST_REDIS`, or `None` after saying the test is skipped (fails under CI).
fn test_redis() -> Option<String> {
    match std::env::var("SWITCHYARD_TEST_REDIS") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI is set but SWITCHYARD_TEST_REDIS is not: the four-instance test cannot run"
            );
            crate::harness::skipped(
                "SKIPPED (Redis): set SWITCHYARD_TEST_REDIS, e.g. redis://127.0.0.1:6379",
            );
            None
        }
    }
}

fn config(mock: &MockUpstream, database: &str, redis: &str, journal: &Path) -> String {
    format!(
        r#"
database = "{database}"
redis = "{redis}"
journal = "{journal}"
instances = "shared"
admin_key = "{ADMIN}"
# Only the change feed can bring a revocation: the periodic re-read is an hour away.
key_refresh_ms = 3600000

[providers.mock]
kind = "openai"
base_url = "{base}"
api_key = "upstream-secret-key"

[models.m]
routes = ["mock/m"]
input_price = "0"
output_price = "10.00"
"#,
        journal = journal.display(),
        base = mock.base_url(),
    )
}

/// One served process: its child (killed on drop) and its `/v1` base URL.
struct Process {
    _child: tokio::process::Child,
    base: String,
    logs: harness::Output,
}

/// The warnings and errors the processes logged, for a failure's message.
fn warnings(processes: &[Process]) -> String {
    let mut out = String::new();
    for (n, p) in processes.iter().enumerate() {
        for line in p.logs.lock().unwrap().iter() {
            if line.contains("WARN") || line.contains("ERROR") {
                out.push_str(&format!("instance {}: {line}\n", n + 1));
            }
        }
    }
    out
}

async fn create_key(base: &str, body: Value) -> (String, String) {
    let resp = harness::client()
        .post(format!("{base}/admin/keys"))
        .bearer_auth(ADMIN)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = resp.status();
    let v: Value = resp.json().await.unwrap();
    assert!(status.is_success(), "{status}: {v}");
    (
        v["id"].as_str().unwrap().to_owned(),
        v["key"].as_str().unwrap().to_owned(),
    )
}

/// Sends `count` requests at once with `key`, request `i` to instance `i % 4`: each one's
/// status and request id.
fn burst(
    processes: &[Process],
    key: &str,
    count: usize,
) -> Vec<tokio::task::JoinHandle<(u16, String, Value)>> {
    (0..count)
        .map(|i| {
            let req = harness::client()
                .post(format!(
                    "{}/chat/completions",
                    processes[i % INSTANCES].base
                ))
                .bearer_auth(key)
                .json(&json!({"model": "m", "max_tokens": 100, "messages": user("hi")}));
            tokio::spawn(async move {
                let resp = req.send().await.unwrap();
                let status = resp.status().as_u16();
                let id = resp
                    .headers()
                    .get("x-request-id")
                    .map(|v| v.to_str().unwrap().to_owned())
                    .unwrap_or_default();
                (status, id, resp.json().await.unwrap_or(Value::Null))
            })
        })
        .collect()
}

/// The status of one small request with `key` on `base`.
async fn status(base: &str, key: &str) -> u16 {
    harness::client()
        .post(format!("{base}/chat/completions"))
        .bearer_auth(key)
        .json(&json!({"model": "m", "max_tokens": 1, "messages": user("hi")}))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_instances_under_mixed_load_behave_as_one_gateway() {
    let Some(redis) = test_redis() else { return };
    // A PostgreSQL server of the test's own: four instances under load open up to 4 × 34
    // connections (main pool 16, holds pool 16, writer 1, change feed 1), past the default
    // `max_connections = 100` of the shared server, whose other users this test must not starve.
    let Some(pg) = PrivatePostgres::start().await else {
        return;
    };
    sqlx::any::install_default_drivers();
    let mut conn = sqlx::AnyConnection::connect(&pg.url()).await.unwrap();
    sqlx::query("ALTER SYSTEM SET max_connections = 300")
        .execute(&mut conn)
        .await
        .unwrap();
    conn.close().await.ok();
    pg.stop().await;
    pg.restart().await;
    four_on(pg.url(), redis).await;
}

async fn four_on(database: String, redis: String) {
    let mock = MockUpstream::start().await.unwrap();
    mock.set_recording(false);
    // Every answer costs exactly its hold (100 tokens), and is slow enough that many requests
    // are open at once on every instance.
    mock.set_options(json!({"tokens": 100, "ttft_ms": 300}))
        .unwrap();
    let dir = harness::temp_db().with_extension("four");
    let mut processes = vec![];
    // One after the other: the first runs the migrations on the fresh database.
    for n in 0..INSTANCES {
        let file = format!("instance{n}.toml");
        let text = config(&mock, &database, &redis, &dir.join(format!("{n}.journal")));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(&file), text).unwrap();
        let (child, _, base, logs) = harness::serve_binary_with(
            &dir,
            &["serve", "--config", &file, "--listen", "127.0.0.1:0"],
            &[],
        )
        .await;
        processes.push(Process {
            _child: child,
            base,
            logs,
        });
    }
    // The test's own connection, opened before the load.
    let mut conn = sqlx::AnyConnection::connect(&database).await.unwrap();
    let first = processes[0].base.clone();
    let admin = first.trim_end_matches("/v1").to_owned();
    let credits = rust_decimal::Decimal::new(COST_NANOS * AFFORDS as i64, 9).to_string();
    let (money_id, money) = create_key(&admin, json!({"name": "money", "credits": credits})).await;
    let (rpm_id, rpm) =
        create_key(&admin, json!({"name": "rpm", "credits": "100", "rpm": RPM})).await;
    let (revoked_id, revoked) =
        create_key(&admin, json!({"name": "revoked", "credits": "100"})).await;

    // Warm-up: every instance opens its connections (a deployment's pools are warm; a cold
    // pool opening 16 PostgreSQL connections at once on a loaded machine can take longer than
    // a hold may wait) and loads the keys. Not part of what is asserted.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut all = true;
        for call in burst(&processes, &revoked, 16 * INSTANCES) {
            all &= call.await.unwrap().0 == 200;
        }
        if all || Instant::now() > deadline {
            break;
        }
    }

    // Both bursts at once, over all four instances.
    let started = Instant::now();
    let money_calls = burst(&processes, &money, MONEY_REQUESTS);
    let rpm_calls = burst(&processes, &rpm, RPM_REQUESTS);
    let mut answered = BTreeMap::<String, &str>::new();
    let mut money_ok = 0;
    for call in money_calls {
        let (status, id, body) = call.await.unwrap();
        match status {
            200 => {
                money_ok += 1;
                answered.insert(id, "money");
            }
            402 => assert_eq!(body["error"]["code"], "insufficient_quota", "{body}"),
            other => panic!(
                "money key: unexpected {other}: {body}\n{}",
                warnings(&processes)
            ),
        }
    }
    let mut rpm_ok = 0u64;
    for call in rpm_calls {
        let (status, id, body) = call.await.unwrap();
        match status {
            200 => {
                rpm_ok += 1;
                answered.insert(id, "rpm");
            }
            429 => assert_eq!(body["error"]["type"], "rate_limit_error", "{body}"),
            other => panic!(
                "rpm key: unexpected {other}: {body}\n{}",
                warnings(&processes)
            ),
        }
    }
    let elapsed = started.elapsed();
    assert_eq!(
        money_ok, AFFORDS,
        "exactly what the balance affords is answered across four instances"
    );
    // RPM at once, plus what refilled (RPM a minute) while the burst lasted.
    let refill = (RPM * elapsed.as_micros() as u64).div_ceil(60_000_000);
    assert!(
        rpm_ok <= RPM + refill,
        "{rpm_ok} answered in {elapsed:?}; at most {} allowed",
        RPM + refill
    );
    assert!(rpm_ok >= RPM, "the full limit is usable: {rpm_ok}");
    let (connections,): (i64,) = sqlx::query_as(
        "SELECT COUNT(*) FROM pg_stat_activity WHERE backend_type = 'client backend'",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    eprintln!("four instances: {connections} PostgreSQL connections open after the burst");
    eprintln!(
        "four instances: money key {money_ok}/{MONEY_REQUESTS} answered, rpm key {rpm_ok}/{RPM_REQUESTS} \
         answered in {elapsed:?} (allowed {})",
        RPM + refill
    );

    // Revoked on the first instance: the other three refuse it within 1 s.
    for p in &processes {
        assert_eq!(status(&p.base, &revoked).await, 200);
    }
    let resp = harness::client()
        .delete(format!("{admin}/admin/keys/{revoked_id}"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "{}", resp.status());
    let revoked_at = Instant::now();
    assert_eq!(status(&first, &revoked).await, 401, "refused where revoked");
    for (n, p) in processes.iter().enumerate().skip(1) {
        loop {
            if status(&p.base, &revoked).await == 401 {
                break;
            }
            assert!(
                revoked_at.elapsed() < Duration::from_secs(10),
                "instance {} still accepts the revoked key",
                n + 1
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    eprintln!(
        "revoked on instance 1: refused by instances 2-4 after {:?}",
        revoked_at.elapsed()
    );

    // The books: every answered request has exactly one entry, the money key is spent to
    // exactly zero and no hold is left anywhere.
    let deadline = Instant::now() + Duration::from_secs(30);
    let entries: Vec<(String, String)> = loop {
        let rows: Vec<(String, String)> =
            sqlx::query_as("SELECT request_id, key_id FROM usage_entries WHERE key_id IN ($1, $2)")
                .bind(&money_id)
                .bind(&rpm_id)
                .fetch_all(&mut conn)
                .await
                .unwrap();
        let (holds,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM holds")
            .fetch_one(&mut conn)
            .await
            .unwrap();
        let written: BTreeSet<&String> = rows.iter().map(|(id, _)| id).collect();
        if holds == 0 && answered.keys().all(|id| written.contains(id)) {
            break rows;
        }
        assert!(
            Instant::now() < deadline,
            "{holds} holds open, {} of {} answered requests written",
            answered.keys().filter(|id| written.contains(id)).count(),
            answered.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let mut per_request = BTreeMap::<&str, usize>::new();
    for (id, key) in &entries {
        *per_request.entry(id).or_default() += 1;
        if let Some(kind) = answered.get(id) {
            let want = if *kind == "money" { &money_id } else { &rpm_id };
            assert_eq!(key, want, "{id} billed to the key that sent it");
        }
    }
    for id in answered.keys() {
        assert_eq!(per_request.get(id.as_str()), Some(&1), "{id}: one entry");
    }
    let money_entries: Vec<&(String, String)> =
        entries.iter().filter(|(_, k)| *k == money_id).collect();
    assert_eq!(
        money_entries.len(),
        AFFORDS,
        "one entry per answered request"
    );
    let (balance, reserved): (i64, i64) =
        sqlx::query_as("SELECT balance_nanos, reserved_nanos FROM api_keys WHERE id = $1")
            .bind(&money_id)
            .fetch_one(&mut conn)
            .await
            .unwrap();
    conn.close().await.ok();
    // Debits only lower the balance, so its last value is its lowest.
    assert_eq!(
        (balance, reserved),
        (0, 0),
        "the balance ends at exactly zero, never below, and nothing is held"
    );
    drop(processes);
    let _ = std::fs::remove_dir_all(&dir);
}
