//! Rate limits across several instances, as clients of a load-balanced deployment see them: two
//! gateways on one database and one Redis count a key's requests, tokens and open requests
//! together, exactly; and when Redis goes away the limits fail open (or closed, when configured)
//! and come back by themselves.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use mock_upstream::MockUpstream;
use serde_json::{json, Value};
use switchyard::app::Gateway;
use switchyard::auth::create_key;
use switchyard::config::Config;
use switchyard::ledger::{Nanos, NewKey};

use crate::harness::{self, client, TestGateway};

/// `SWITCHYARD_TEST_REDIS`, or `None` after saying the test is skipped (fails under CI).
fn test_redis() -> Option<String> {
    match std::env::var("SWITCHYARD_TEST_REDIS") {
        Ok(url) => Some(url),
        Err(_) => {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI is set but SWITCHYARD_TEST_REDIS is not: the shared-limits tests cannot run"
            );
            eprintln!("SKIPPED (Redis): set SWITCHYARD_TEST_REDIS, e.g. redis://127.0.0.1:6379");
            None
        }
    }
}

/// Two instances on one database and the Redis at `url` (each with its own journal), in front of
/// one mock: (first, second's address, mock). `extra` is appended to both configs.
async fn two_instances(top: &str, extra: &str) -> (TestGateway, SocketAddr, MockUpstream) {
    let (first, mock) = harness::start_with_mock_top(top, extra).await;
    let journal = first.db_path.with_extension("second.journal");
    let text = format!(
        "{top}\njournal = \"{}\"\n{}",
        journal.display(),
        harness::mock_config(&mock, extra)
    );
    let config = Config::parse(&text, "test.toml").unwrap();
    let (second, _, problems) = Gateway::build(
        Some(config),
        Some(format!("sqlite://{}", first.db_path.display())),
    )
    .await
    .unwrap();
    assert!(problems.is_empty(), "{problems:?}");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(second.serve(listener, std::future::pending()));
    (first, addr, mock)
}

/// A key with $100 of credits and the given limits: its secret.
async fn key_with(gw: &TestGateway, new: NewKey) -> String {
    let (_, key) = create_key(
        &gw.gw.ledger,
        &NewKey {
            name: "shared".into(),
            credits: Nanos::from_usd("100".parse().unwrap()).unwrap(),
            ..new
        },
    )
    .await
    .unwrap();
    key
}

async fn post(addr: SocketAddr, key: &str, body: &Value) -> reqwest::Response {
    client()
        .post(format!("http://{addr}/v1/chat/completions"))
        .bearer_auth(key)
        .json(body)
        .send()
        .await
        .unwrap()
}

fn small() -> Value {
    json!({"model": "m", "max_tokens": 8, "messages": harness::user("hi")})
}

#[tokio::test]
async fn a_burst_across_two_instances_gets_at_most_the_rpm_plus_its_refill() {
    let Some(url) = test_redis() else { return };
    let (first, second, _mock) = two_instances(&format!("redis = \"{url}\""), "").await;
    let key = Arc::new(
        key_with(
            &first,
            NewKey {
                rpm: Some(60),
                ..NewKey::default()
            },
        )
        .await,
    );
    let started = Instant::now();
    let tasks: Vec<_> = (0..200)
        .map(|i| {
            let addr = if i % 2 == 0 { first.addr } else { second };
            let key = key.clone();
            tokio::spawn(async move { post(addr, &key, &small()).await.status().as_u16() })
        })
        .collect();
    let mut statuses = vec![];
    for t in tasks {
        statuses.push(t.await.unwrap());
    }
    let elapsed = started.elapsed();
    let ok = statuses.iter().filter(|s| **s == 200).count() as u64;
    let limited = statuses.iter().filter(|s| **s == 429).count() as u64;
    assert_eq!(ok + limited, 200, "only 200s and 429s: {statuses:?}");
    // 60 at once, plus one a second refilled while the burst lasted.
    let refill = (60 * elapsed.as_micros()).div_ceil(60_000_000) as u64;
    assert!(
        ok <= 60 + refill,
        "{ok} answered in {elapsed:?}; at most {} allowed",
        60 + refill
    );
    assert!(ok >= 60, "the full limit is usable: {ok}");
}
