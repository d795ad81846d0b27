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
    key_and_id(gw, new).await.1
}

/// A key with $100 of credits and the given limits: (id, secret).
async fn key_and_id(gw: &TestGateway, new: NewKey) -> (String, String) {
    let (record, key) = create_key(
        &gw.gw.ledger,
        &NewKey {
            name: "shared".into(),
            credits: Nanos::from_usd("100".parse().unwrap()).unwrap(),
            ..new
        },
    )
    .await
    .unwrap();
    (record.id, key)
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

/// The most intervals `[start, end]` open at one instant.
fn max_overlap(spans: &[(Instant, Instant)]) -> usize {
    let mut edges: Vec<(Instant, i32)> = spans
        .iter()
        .flat_map(|(s, e)| [(*s, 1), (*e, -1)])
        .collect();
    // At the same instant an end comes before a start (-1 sorts first).
    edges.sort();
    let (mut open, mut most) = (0i32, 0i32);
    for (_, d) in edges {
        open += d;
        most = most.max(open);
    }
    most as usize
}

/// A model whose streams take about 300 ms at the mock.
const SLOW: &str = r#"
[models.slow]
routes = ["mock/m@tokens=6,gap_ms=50"]
input_price = "2.50"
output_price = "10.00"
"#;

fn slow_stream() -> Value {
    json!({"model": "slow", "stream": true, "max_tokens": 16, "messages": harness::user("hi")})
}

#[tokio::test]
async fn a_concurrency_limit_of_5_holds_across_two_instances() {
    let Some(url) = test_redis() else { return };
    let (first, second, mock) = two_instances(&format!("redis = \"{url}\""), SLOW).await;
    let key = Arc::new(
        key_with(
            &first,
            NewKey {
                max_concurrent: Some(5),
                ..NewKey::default()
            },
        )
        .await,
    );
    let tasks: Vec<_> = (0..60)
        .map(|i| {
            let addr = if i % 2 == 0 { first.addr } else { second };
            let key = key.clone();
            tokio::spawn(async move {
                let resp = post(addr, &key, &slow_stream()).await;
                let status = resp.status().as_u16();
                let body = resp.text().await.unwrap();
                (status, body)
            })
        })
        .collect();
    let mut answered = 0;
    for t in tasks {
        let (status, body) = t.await.unwrap();
        match status {
            200 => {
                assert!(body.contains("[DONE]"), "{body}");
                answered += 1;
            }
            429 => {
                let v: Value = serde_json::from_str(&body).unwrap();
                assert_eq!(v["error"]["type"], "rate_limit_error", "{v}");
                let m = v["error"]["message"].as_str().unwrap();
                assert!(m.contains("concurrent") && m.contains("limit 5"), "{m}");
            }
            other => panic!("unexpected {other}: {body}"),
        }
    }
    let spans: Vec<_> = mock
        .streams()
        .iter()
        .map(|s| (s.started_at, s.ended_at))
        .collect();
    assert_eq!(
        spans.len(),
        answered,
        "every admitted request reached the mock"
    );
    assert!(answered >= 5, "the limit is usable: {answered}");
    let most = max_overlap(&spans);
    assert!(most <= 5, "{most} streams were open at once");
}

#[tokio::test]
async fn a_client_that_leaves_gives_its_slot_back() {
    let Some(url) = test_redis() else { return };
    let long = r#"
[models.long]
routes = ["mock/m@tokens=200,gap_ms=50"]
input_price = "2.50"
output_price = "10.00"
"#;
    let (first, second, mock) = two_instances(&format!("redis = \"{url}\""), long).await;
    let key = key_with(
        &first,
        NewKey {
            max_concurrent: Some(2),
            ..NewKey::default()
        },
    )
    .await;
    let long_stream = json!({"model": "long", "stream": true, "max_tokens": 300, "messages": harness::user("hi")});
    // Two streams open (one per instance): the third request is refused on either instance.
    let a = post(first.addr, &key, &long_stream).await;
    let b = post(second, &key, &long_stream).await;
    assert_eq!((a.status().as_u16(), b.status().as_u16()), (200, 200));
    assert_eq!(post(first.addr, &key, &small()).await.status(), 429);
    assert_eq!(post(second, &key, &small()).await.status(), 429);
    // Both clients leave mid-stream: their slots come back without waiting for a lease.
    drop((a, b));
    harness::until(
        "the upstream streams are dropped",
        std::time::Duration::from_secs(10),
        || mock.streams().iter().all(|s| s.client_disconnected),
    )
    .await;
    let deadline = Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let s = post(second, &key, &small()).await.status();
        if s == 200 {
            break;
        }
        assert_eq!(s, 429);
        assert!(Instant::now() < deadline, "the slots never came back");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(post(first.addr, &key, &small()).await.status(), 200);
}

#[tokio::test]
async fn a_single_instance_counts_open_requests_in_memory() {
    let (gw, _mock) = harness::start_with_mock(SLOW).await;
    let (key_id, key) = key_and_id(
        &gw,
        NewKey {
            max_concurrent: Some(3),
            ..NewKey::default()
        },
    )
    .await;
    let key = Arc::new(key);
    let tasks: Vec<_> = (0..12)
        .map(|_| {
            let (addr, key) = (gw.addr, key.clone());
            tokio::spawn(async move {
                let resp = post(addr, &key, &slow_stream()).await;
                let s = resp.status().as_u16();
                let _ = resp.text().await;
                s
            })
        })
        .collect();
    let mut ok = 0;
    for t in tasks {
        let s = t.await.unwrap();
        assert!(s == 200 || s == 429, "{s}");
        ok += usize::from(s == 200);
    }
    assert!((3..12).contains(&ok), "{ok} answered");
    // Every slot came back at settlement.
    let limits = gw.gw.limits.clone();
    harness::until(
        "every slot is back",
        std::time::Duration::from_secs(5),
        || limits.open_in_memory(&key_id) == 0,
    )
    .await;
    assert_eq!(post(gw.addr, &key, &small()).await.status(), 200);
}
