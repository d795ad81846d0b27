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
use switchyard::store::ledger::{Nanos, NewKey};

use crate::harness::{self, client, TestGateway};

/// `SWITCHYARD_TEST_REDIS`, or `None` after saying the test is skipped (fails under CI).
pub(crate) fn test_redis() -> Option<String> {
    match std::env::var("SWITCHYARD_TEST_REDIS") {
        Ok(url) => Some(url),
        Err(_) => {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI is set but SWITCHYARD_TEST_REDIS is not: the shared-limits tests cannot run"
            );
            crate::harness::skipped(
                "SKIPPED (Redis): set SWITCHYARD_TEST_REDIS, e.g. redis://127.0.0.1:6379",
            );
            None
        }
    }
}

/// Two instances on one database and the Redis at `url` (each with its own journal), in front of
/// one mock: (first, second's address, mock). `extra` is appended to both configs.
pub(crate) async fn two_instances(
    top: &str,
    extra: &str,
) -> (TestGateway, SocketAddr, MockUpstream) {
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

/// A model whose streams take about 10 s at the mock.
const LONG: &str = r#"
[models.long]
routes = ["mock/m@tokens=200,gap_ms=50"]
input_price = "2.50"
output_price = "10.00"
"#;

fn long_stream() -> Value {
    json!({"model": "long", "stream": true, "max_tokens": 300, "messages": harness::user("hi")})
}

fn slow_stream() -> Value {
    json!({"model": "slow", "stream": true, "max_tokens": 16, "messages": harness::user("hi")})
}

/// A concurrency limit of 5 across two real processes sharing Redis: 60 slow streams at once,
/// split between them. At no moment are more than 5 open at the mock, the limit is used, and the
/// rest are refused with 429 (at least one must be: otherwise nothing was limited).
#[tokio::test]
async fn a_concurrency_limit_of_5_holds_across_two_instances() {
    let Some(url) = test_redis() else { return };
    crate::instances_feed::on_fresh_database(|pg| async move {
        let mock = MockUpstream::start().await.unwrap();
        let key = Arc::new(cli_key(&pg, &["--concurrency", "5"]).await);
        let (dir, processes) = serve_two(&pg, &url, &mock, SLOW).await;
        let addrs: Vec<SocketAddr> = processes.iter().map(|p| p.1).collect();
        let tasks: Vec<_> = (0..60)
            .map(|i| {
                let addr = addrs[i % 2];
                let key = key.clone();
                tokio::spawn(async move {
                    let resp = post(addr, &key, &slow_stream()).await;
                    let status = resp.status().as_u16();
                    let body = resp.text().await.unwrap();
                    (status, body)
                })
            })
            .collect();
        let (mut answered, mut refused) = (0, 0);
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
                    refused += 1;
                }
                other => panic!("unexpected {other}: {body}"),
            }
        }
        let spans: Vec<_> = mock
            .streams()
            .iter()
            .map(|s| (s.started_at, s.ended_at))
            .collect();
        let _ = std::fs::remove_dir_all(&dir);
        drop(processes);
        assert_eq!(
            spans.len(),
            answered,
            "every admitted request reached the mock"
        );
        assert!(answered >= 5, "the limit is usable: {answered}");
        assert!(refused >= 1, "60 at once on a limit of 5 and none refused");
        let most = max_overlap(&spans);
        assert!(most <= 5, "{most} streams were open at once");
    })
    .await;
}

#[tokio::test]
async fn a_client_that_leaves_gives_its_slot_back() {
    let Some(url) = test_redis() else { return };
    let (first, second, mock) = two_instances(&format!("redis = \"{url}\""), LONG).await;
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
    let (gw, _mock) = harness::start_with_mock(LONG).await;
    let (key_id, key) = key_and_id(
        &gw,
        NewKey {
            max_concurrent: Some(3),
            ..NewKey::default()
        },
    )
    .await;
    let mut open = vec![];
    for _ in 0..3 {
        let resp = post(gw.addr, &key, &long_stream()).await;
        assert_eq!(resp.status(), 200);
        open.push(resp);
    }
    assert_eq!(gw.gw.limits.open_in_memory(&key_id), 3);
    let refused = post(gw.addr, &key, &small()).await;
    assert_eq!(refused.status(), 429);
    assert_eq!(refused.headers()["retry-after"], "1");
    drop(open);
    // Every slot came back when its client left.
    let limits = gw.gw.limits.clone();
    harness::until(
        "every slot is back",
        std::time::Duration::from_secs(5),
        || limits.open_in_memory(&key_id) == 0,
    )
    .await;
    assert_eq!(post(gw.addr, &key, &small()).await.status(), 200);
}

/// A redis-server of the test's own on a free port (never the shared one), without persistence:
/// stopped (killed) when dropped.
struct PrivateRedis {
    port: u16,
    child: Option<std::process::Child>,
}

impl PrivateRedis {
    /// Starts one, or `None` (after saying so loudly; failing under CI) without `redis-server`.
    async fn start() -> Option<PrivateRedis> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut r = PrivateRedis { port, child: None };
        if !r.run() {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI is set but redis-server cannot run: the Redis outage tests cannot run"
            );
            crate::harness::skipped("SKIPPED (Redis outage): install redis-server");
            return None;
        }
        Some(r)
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts the server on its port and waits until it answers; false if it cannot run.
    fn run(&mut self) -> bool {
        let Ok(child) = std::process::Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
        else {
            return false;
        };
        self.child = Some(child);
        let deadline = Instant::now() + std::time::Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        true
    }

    /// Freezes (`SIGSTOP`) or thaws (`SIGCONT`) the server: a hung Redis, not a gone one, whose
    /// connections stay open and never answer.
    fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().expect("running").id().to_string();
        let ok = std::process::Command::new("kill")
            .args([signal, &pid])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill {signal} {pid}");
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn metric(gw: &TestGateway, series: &str) -> f64 {
    let text = harness::get_text(gw.url("/metrics")).await;
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| {
            l.strip_prefix(series)?
                .strip_prefix(' ')?
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or(0.0)
}

/// Sends requests of `key` to `addr` until the answer's status is `want` (polling, with a deadline).
async fn until_status(addr: SocketAddr, key: &str, want: u16, what: &str) -> reqwest::Response {
    let deadline = Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let resp = post(addr, key, &small()).await;
        if resp.status() == want {
            return resp;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn when_redis_goes_away_limits_fail_open_counted_and_resume_by_themselves() {
    let Some(mut redis) = PrivateRedis::start().await else {
        return;
    };
    let long = r#"
[models.long]
routes = ["mock/m@tokens=40,gap_ms=50"]
input_price = "2.50"
output_price = "10.00"
"#;
    let (gw, _mock) =
        harness::start_with_mock_top(&format!("redis = \"{}\"", redis.url()), long).await;
    let (_, key) = key_and_id(
        &gw,
        NewKey {
            rpm: Some(1000),
            max_concurrent: Some(50),
            ..NewKey::default()
        },
    )
    .await;
    let resp = post(gw.addr, &key, &small()).await;
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().contains_key("x-ratelimit-limit-requests"));
    // A stream admitted before the outage and still running through it.
    let in_flight = post(
        gw.addr,
        &key,
        &json!({"model": "long", "stream": true, "max_tokens": 60, "messages": harness::user("hi")}),
    )
    .await;
    assert_eq!(in_flight.status(), 200);
    let before = metric(&gw, "switchyard_limits_fail_open_total").await;

    redis.stop();
    // Under load for 10 s while Redis is away: every request is answered, without limit headers.
    let deadline = Instant::now() + std::time::Duration::from_secs(10);
    let mut sent = 0;
    while Instant::now() < deadline {
        let rounds: Vec<_> = (0..5)
            .map(|_| {
                let key = key.clone();
                let addr = gw.addr;
                tokio::spawn(async move { post(addr, &key, &small()).await.status().as_u16() })
            })
            .collect();
        for r in rounds {
            assert_eq!(
                r.await.unwrap(),
                200,
                "a request failed while Redis was away"
            );
            sent += 1;
        }
    }
    let after = metric(&gw, "switchyard_limits_fail_open_total").await;
    assert!(
        after - before >= f64::from(sent),
        "fail-opens counted: {before} -> {after} for {sent} requests"
    );
    let body = in_flight.text().await.unwrap();
    assert!(
        body.contains("[DONE]"),
        "the stream in flight finished: {body}"
    );

    // Back: the limits apply again by themselves (their headers return).
    assert!(redis.run());
    let deadline = Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let resp = post(gw.addr, &key, &small()).await;
        assert_eq!(resp.status(), 200);
        if resp.headers().contains_key("x-ratelimit-limit-requests") {
            break;
        }
        assert!(Instant::now() < deadline, "the limits never resumed");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let settled = metric(&gw, "switchyard_limits_fail_open_total").await;
    for _ in 0..3 {
        assert_eq!(post(gw.addr, &key, &small()).await.status(), 200);
    }
    assert_eq!(
        metric(&gw, "switchyard_limits_fail_open_total").await,
        settled,
        "no fail-open once Redis is back"
    );
}

/// A hung Redis (`SIGSTOP`: its connections stay open and never answer) costs each request at
/// most `redis_timeout_ms` before the limits fail open, counted; once it answers again
/// (`SIGCONT`) they apply again by themselves. The hang guard below is far above the bound: it only
/// tells a hang from an answer.
#[tokio::test]
async fn a_hung_redis_costs_each_request_at_most_the_redis_timeout_then_fails_open() {
    let Some(redis) = PrivateRedis::start().await else {
        return;
    };
    let top = format!("redis = \"{}\"\nredis_timeout_ms = 300", redis.url());
    let (gw, _mock) = harness::start_with_mock_top(&top, "").await;
    let (_, key) = key_and_id(
        &gw,
        NewKey {
            rpm: Some(1000),
            ..NewKey::default()
        },
    )
    .await;
    let resp = post(gw.addr, &key, &small()).await;
    assert!(resp.headers().contains_key("x-ratelimit-limit-requests"));
    let before = metric(&gw, "switchyard_limits_fail_open_total").await;
    redis.signal("-STOP");
    for n in 0..6 {
        let resp = tokio::time::timeout(
            std::time::Duration::from_secs(30),
            post(gw.addr, &key, &small()),
        )
        .await
        .unwrap_or_else(|_| panic!("request {n} hung on the stopped Redis"));
        assert_eq!(resp.status(), 200, "request {n}");
    }
    let after = metric(&gw, "switchyard_limits_fail_open_total").await;
    assert!(
        after - before >= 6.0,
        "fail-opens counted: {before} -> {after}"
    );
    redis.signal("-CONT");
    let deadline = Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let resp = post(gw.addr, &key, &small()).await;
        assert_eq!(resp.status(), 200);
        if resp.headers().contains_key("x-ratelimit-limit-requests") {
            break;
        }
        assert!(Instant::now() < deadline, "the limits never resumed");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn with_redis_failure_closed_limited_keys_get_a_clean_503_until_redis_is_back() {
    let Some(mut redis) = PrivateRedis::start().await else {
        return;
    };
    let top = format!("redis = \"{}\"\nredis_failure = \"closed\"", redis.url());
    let (gw, _mock) = harness::start_with_mock_top(&top, "").await;
    let (_, key) = key_and_id(
        &gw,
        NewKey {
            rpm: Some(3),
            ..NewKey::default()
        },
    )
    .await;
    for _ in 0..3 {
        assert_eq!(post(gw.addr, &key, &small()).await.status(), 200);
    }
    assert_eq!(post(gw.addr, &key, &small()).await.status(), 429);

    redis.stop();
    for _ in 0..5 {
        let resp = post(gw.addr, &key, &small()).await;
        assert_eq!(resp.status(), 503);
        let v: Value = resp.json().await.unwrap();
        assert_eq!(v["error"]["type"], "service_unavailable", "{v}");
        assert!(v["error"].get("param").is_some(), "{v}");
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap()
                .contains("rate-limit store"),
            "{v}"
        );
    }
    // A key without limits does not need Redis.
    assert_eq!(gw.chat(small()).send().await.unwrap().status(), 200);

    // Back (empty: a restarted Redis without persistence starts every limit afresh).
    assert!(redis.run());
    until_status(gw.addr, &key, 200, "Redis to be used again").await;
    assert_eq!(post(gw.addr, &key, &small()).await.status(), 200);
    assert_eq!(post(gw.addr, &key, &small()).await.status(), 200);
    assert_eq!(post(gw.addr, &key, &small()).await.status(), 429);
}

/// A provider whose account allows 3 requests a minute, a model served only there and one that
/// falls back to the unlimited provider.
fn quota_config(base: &str, name: &str) -> String {
    format!(
        r#"
[providers.{name}]
kind = "openai"
base_url = "{base}"
api_key = "upstream-secret-key"
rpm = 3

[models.only-quota]
routes = ["{name}/m"]
input_price = "2.50"
output_price = "10.00"

[models.quota-first]
routes = ["{name}/m", "mock/m"]
input_price = "2.50"
output_price = "10.00"
"#
    )
}

#[tokio::test]
async fn a_providers_own_rpm_is_shared_by_every_key_and_instance() {
    let Some(url) = test_redis() else { return };
    // The mock's address is only known once it runs: start one to learn the config's base URL.
    let upstream = MockUpstream::start().await.unwrap();
    // A provider name of this run's own, so that its quota in the shared Redis is fresh.
    let name = format!(
        "quota{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    );
    let extra = quota_config(&upstream.base_url(), &name);
    let (first, second, _mock) = two_instances(&format!("redis = \"{url}\""), &extra).await;
    let a = key_with(&first, NewKey::default()).await;
    let b = key_with(&first, NewKey::default()).await;
    let body =
        |model: &str| json!({"model": model, "max_tokens": 8, "messages": harness::user("hi")});
    // Three requests from two keys on two instances use the account's minute...
    assert_eq!(
        post(first.addr, &a, &body("only-quota")).await.status(),
        200
    );
    assert_eq!(post(second, &b, &body("only-quota")).await.status(), 200);
    assert_eq!(post(second, &a, &body("only-quota")).await.status(), 200);
    // ...so a fourth, from anyone anywhere, is refused without reaching the upstream.
    let before = upstream.requests().len();
    let resp = post(first.addr, &b, &body("only-quota")).await;
    assert_eq!(resp.status(), 429);
    assert!(resp.headers().contains_key("retry-after"));
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["type"], "rate_limit_error", "{v}");
    assert_eq!(
        upstream.requests().len(),
        before,
        "the upstream was not called"
    );
    // A model with another route falls back to it, and the route's health is untouched.
    let resp = post(second, &a, &body("quota-first")).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()["x-switchyard-provider"].to_str().unwrap(),
        "mock"
    );
}

/// Two real `switchyard serve` processes on the shared PostgreSQL and a private Redis, with a key
/// made by `switchyard keys create --rpm --concurrency`: the rpm holds across both; Redis stopped
/// under load fails open with one warning per process (not one per request); back, the limits
/// resume and each process says so once.
/// Two `switchyard serve` processes on the database `pg` and the Redis at `redis`, each with its
/// own journal in a fresh folder, in front of `mock` (with `extra` models): the folder, and each
/// process with its address and logs.
async fn serve_two(
    pg: &str,
    redis: &str,
    mock: &MockUpstream,
    extra: &str,
) -> (
    std::path::PathBuf,
    Vec<(tokio::process::Child, SocketAddr, harness::Output)>,
) {
    let dir = harness::temp_db().with_extension("two");
    let mut processes = vec![];
    for n in 0..2 {
        let config = format!(
            "database = \"{pg}\"\nredis = \"{redis}\"\njournal = \"{}\"\n{}",
            dir.join(format!("{n}.journal")).display(),
            harness::mock_config(mock, extra)
        );
        std::fs::create_dir_all(&dir).unwrap();
        let file = format!("instance{n}.toml");
        std::fs::write(dir.join(&file), config).unwrap();
        let (child, _, base, logs) = harness::serve_binary_with(
            &dir,
            &["serve", "--config", &file, "--listen", "127.0.0.1:0"],
            &[],
        )
        .await;
        let addr: SocketAddr = base
            .trim_start_matches("http://")
            .trim_end_matches("/v1")
            .parse()
            .unwrap();
        processes.push((child, addr, logs));
    }
    (dir, processes)
}

/// A key made with the command line on the database `pg` (as an operator would, with no gateway
/// in this process): its secret.
async fn cli_key(pg: &str, limits: &[&str]) -> String {
    let created = tokio::process::Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args([
            "keys",
            "create",
            "--name",
            "two-processes",
            "--credits",
            "100",
        ])
        .args(limits)
        .args(["--json", "--database", pg])
        .output()
        .await
        .unwrap();
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );
    let created: Value = serde_json::from_slice(&created.stdout).unwrap();
    created["key"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn two_processes_share_limits_and_ride_out_a_redis_restart() {
    // A database of its own (dropped afterwards), so that no other run's schema is in the way.
    crate::instances_feed::on_fresh_database(two_processes_on).await;
}

async fn two_processes_on(pg: String) {
    let Some(mut redis) = PrivateRedis::start().await else {
        return;
    };
    let mock = MockUpstream::start().await.unwrap();
    let key = cli_key(&pg, &["--rpm", "20", "--concurrency", "2"]).await;

    let (dir, processes) = serve_two(&pg, &redis.url(), &mock, "").await;
    let addrs: Vec<SocketAddr> = processes.iter().map(|p| p.1).collect();

    // 40 at once across both processes on a 20 rpm key.
    let started = Instant::now();
    let burst: Vec<_> = (0..40)
        .map(|i| {
            let (addr, key) = (addrs[i % 2], key.clone());
            tokio::spawn(async move { post(addr, &key, &small()).await.status().as_u16() })
        })
        .collect();
    let mut ok = 0u64;
    for t in burst {
        let s = t.await.unwrap();
        assert!(s == 200 || s == 429, "{s}");
        ok += u64::from(s == 200);
    }
    let refill = (20 * started.elapsed().as_micros()).div_ceil(60_000_000) as u64;
    // The concurrency limit of 2 may refuse some of the first 20 as well.
    assert!(ok <= 20 + refill, "{ok} answered; at most {}", 20 + refill);
    assert!(ok >= 2, "{ok} answered");

    redis.stop();
    for round in 0..3 {
        for addr in &addrs {
            let resp = post(*addr, &key, &small()).await;
            assert_eq!(
                resp.status(),
                200,
                "round {round}: Redis away, limits fail open"
            );
        }
    }
    for (_, _, logs) in &processes {
        let warnings = logs
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains("Redis is unreachable"))
            .count();
        assert_eq!(warnings, 1, "one warning per process, not one per request");
    }
    assert!(redis.run());
    // Back (empty): the limits resume by themselves on both processes.
    for addr in &addrs {
        let deadline = Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let resp = post(*addr, &key, &small()).await;
            if resp.headers().contains_key("x-ratelimit-limit-requests") {
                break;
            }
            assert!(Instant::now() < deadline, "the limits never resumed");
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }
    for (_, _, logs) in &processes {
        let logs = logs.clone();
        harness::until(
            "the process says Redis is back",
            std::time::Duration::from_secs(5),
            || {
                logs.lock()
                    .unwrap()
                    .iter()
                    .any(|l| l.contains("Redis answers again"))
            },
        )
        .await;
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn max_concurrent_is_set_shown_and_cleared_through_the_admin_api() {
    let models = format!("{SLOW}{LONG}");
    let (gw, _mock) =
        harness::start_with_mock_top("admin_key = \"admin-secret-0123456789abcdef\"", &models)
            .await;
    let admin = |req: reqwest::RequestBuilder| req.bearer_auth("admin-secret-0123456789abcdef");
    let resp = admin(client().post(gw.url("/admin/keys")))
        .json(&json!({"name": "c", "credits": "10", "max_concurrent": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let created: Value = resp.json().await.unwrap();
    assert_eq!(created["limits"]["max_concurrent"], 1, "{created}");
    let (id, key) = (
        created["id"].as_str().unwrap().to_owned(),
        created["key"].as_str().unwrap().to_owned(),
    );
    // One stream open: the next request is refused until it ends.
    let open = post(gw.addr, &key, &long_stream()).await;
    assert_eq!(open.status(), 200);
    assert_eq!(post(gw.addr, &key, &small()).await.status(), 429);
    drop(open);
    let bad = admin(client().patch(gw.url(&format!("/admin/keys/{id}"))))
        .json(&json!({"max_concurrent": 0}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    let v: Value = bad.json().await.unwrap();
    assert_eq!(v["error"]["param"], "max_concurrent", "{v}");
    let cleared = admin(client().patch(gw.url(&format!("/admin/keys/{id}"))))
        .json(&json!({"max_concurrent": null}))
        .send()
        .await
        .unwrap();
    assert_eq!(cleared.status(), 200);
    let v: Value = cleared.json().await.unwrap();
    assert!(v["limits"]["max_concurrent"].is_null(), "{v}");
    // Without the limit, requests run side by side.
    let body = slow_stream();
    let (a, b) = tokio::join!(post(gw.addr, &key, &body), post(gw.addr, &key, &body));
    assert_eq!((a.status().as_u16(), b.status().as_u16()), (200, 200));
}
