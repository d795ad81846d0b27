//! Per-key rate limits as a client sees them: `rpm` and `tpm` set on a key refuse the request that
//! exceeds them with an OpenAI-shaped 429 (`rate_limit_error`, `retry-after`, `x-ratelimit-*`),
//! token reservations are settled to the real use, keys without limits are unaffected, and with
//! Redis two gateways share one key's counters. The limits refill continuously (GCRA), so a burst
//! of requests sees the same counts whenever it starts; no test waits for a window.

use mock_upstream::MockUpstream;
use serde_json::{json, Value};
use switchyard::app::Gateway;
use switchyard::auth::create_key;
use switchyard::config::Config;
use switchyard::store::ledger::{Nanos, NewKey};

use crate::harness::{self, client, TestGateway};

/// A key with the given limits and $10 of credits: (id, secret).
async fn limited_key(gw: &TestGateway, rpm: Option<i64>, tpm: Option<i64>) -> (String, String) {
    let (record, key) = create_key(
        &gw.gw.ledger,
        &NewKey {
            name: "limited".into(),
            credits: Nanos::from_usd("10".parse().unwrap()).unwrap(),
            rpm,
            tpm,
            ..NewKey::default()
        },
    )
    .await
    .unwrap();
    (record.id, key)
}

/// A request for at most `max_tokens`; the mock is told to answer with `tokens` tokens and report a
/// 10-token prompt (it applies to the next request it receives).
fn body(mock: &MockUpstream, max_tokens: u64, tokens: u64) -> Value {
    mock.set_options(json!({"tokens": tokens, "prompt_tokens": 10}))
        .unwrap();
    json!({"model": "m", "max_tokens": max_tokens, "messages": harness::user("hi")})
}

async fn post(addr: std::net::SocketAddr, key: &str, body: &Value) -> reqwest::Response {
    client()
        .post(format!("http://{addr}/v1/chat/completions"))
        .bearer_auth(key)
        .json(body)
        .send()
        .await
        .unwrap()
}

fn header(resp: &reqwest::Response, name: &str) -> String {
    resp.headers()
        .get(name)
        .unwrap_or_else(|| panic!("no {name} header"))
        .to_str()
        .unwrap()
        .to_owned()
}

/// Checks a 429 from the key's own limit and returns its error object.
async fn assert_rate_limited(resp: reqwest::Response) -> Value {
    assert_eq!(resp.status(), 429);
    let retry: u64 = header(&resp, "retry-after").parse().unwrap();
    assert!((1..=60).contains(&retry), "retry-after {retry}");
    let v: Value = resp.json().await.unwrap();
    let e = v["error"].clone();
    assert_eq!(e["type"], "rate_limit_error", "{v}");
    assert_eq!(e["code"], "rate_limit_exceeded", "{v}");
    assert!(e["message"].as_str().unwrap().contains("Rate limit"), "{v}");
    assert!(e.get("param").is_some(), "{v}");
    e
}

#[tokio::test]
async fn a_key_with_rpm_3_gets_3_answers_then_429_with_the_openai_headers() {
    let (gw, mock) = harness::start_with_mock("").await;
    let (_, key) = limited_key(&gw, Some(3), None).await;
    for i in 0..3 {
        let resp = post(gw.addr, &key, &body(&mock, 16, 3)).await;
        assert_eq!(resp.status(), 200, "request {i}");
        // Successful answers carry the headers too.
        assert_eq!(header(&resp, "x-ratelimit-limit-requests"), "3");
        assert_eq!(
            header(&resp, "x-ratelimit-remaining-requests"),
            (2 - i).to_string()
        );
    }
    let resp = post(gw.addr, &key, &body(&mock, 16, 3)).await;
    assert_eq!(header(&resp, "x-ratelimit-limit-requests"), "3");
    assert_eq!(header(&resp, "x-ratelimit-remaining-requests"), "0");
    let reset = header(&resp, "x-ratelimit-reset-requests");
    assert!(
        reset.ends_with('s') && reset.len() > 1 && !reset.contains(' '),
        "Go-style duration: {reset}"
    );
    assert!(resp.headers().get("x-ratelimit-limit-tokens").is_none());
    let e = assert_rate_limited(resp).await;
    assert!(e["message"].as_str().unwrap().contains("requests"), "{e}");
    // Streaming requests are counted the same way.
    let mut stream = body(&mock, 16, 3);
    stream["stream"] = json!(true);
    assert_rate_limited(post(gw.addr, &key, &stream).await).await;
}

#[tokio::test]
async fn tpm_reserves_the_token_bound_and_settles_to_the_tokens_used() {
    let (gw, mock) = harness::start_with_mock("").await;
    let (_, key) = limited_key(&gw, None, Some(1000)).await;
    // Each reserves ~920 tokens (prompt bound + max_tokens) but uses 15: only the settlement
    // back to the real use lets the next one in.
    for i in 0..3 {
        let resp = post(gw.addr, &key, &body(&mock, 900, 5)).await;
        assert_eq!(resp.status(), 200, "request {i}");
    }
    // This one really uses ~910 tokens.
    let resp = post(gw.addr, &key, &body(&mock, 900, 900)).await;
    assert_eq!(resp.status(), 200);
    // The minute's tokens are used up: a request that could take 100 more is refused.
    let resp = post(gw.addr, &key, &body(&mock, 100, 5)).await;
    assert_eq!(header(&resp, "x-ratelimit-limit-tokens"), "1000");
    let remaining: u64 = header(&resp, "x-ratelimit-remaining-tokens")
        .parse()
        .unwrap();
    assert!(remaining < 100, "remaining tokens {remaining}");
    assert!(resp.headers().get("x-ratelimit-limit-requests").is_none());
    let e = assert_rate_limited(resp).await;
    assert!(e["message"].as_str().unwrap().contains("tokens"), "{e}");
}

#[tokio::test]
async fn a_key_without_limits_is_unaffected() {
    let (gw, mock) = harness::start_with_mock("").await;
    for i in 0..12 {
        let resp = post(gw.addr, &gw.key, &body(&mock, 900, 3)).await;
        assert_eq!(resp.status(), 200, "request {i}");
        assert!(resp.headers().get("x-ratelimit-limit-requests").is_none());
    }
    // And a limited key does not limit the others.
    let (_, limited) = limited_key(&gw, Some(1), Some(10)).await;
    assert_eq!(
        post(gw.addr, &limited, &body(&mock, 5, 1)).await.status(),
        200
    );
    assert_eq!(
        post(gw.addr, &limited, &body(&mock, 5, 1)).await.status(),
        429
    );
    assert_eq!(
        post(gw.addr, &gw.key, &body(&mock, 5, 1)).await.status(),
        200
    );
}

/// `SWITCHYARD_TEST_REDIS`, or `None` after saying the test is skipped (fails under CI).
fn test_redis() -> Option<String> {
    match std::env::var("SWITCHYARD_TEST_REDIS") {
        Ok(url) => Some(url),
        Err(_) => {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI is set but SWITCHYARD_TEST_REDIS is not: the Redis rate-limit test cannot run"
            );
            crate::harness::skipped(
                "SKIPPED (Redis): set SWITCHYARD_TEST_REDIS, e.g. redis://127.0.0.1:6379",
            );
            None
        }
    }
}

#[tokio::test]
async fn with_redis_two_gateways_share_a_keys_counters() {
    let Some(url) = test_redis() else { return };
    let top = format!("redis = \"{url}\"");
    let (first, mock) = harness::start_with_mock_top(&top, "").await;
    // A second instance on the same database and the same Redis (with a journal of its own: an
    // instance's settlement journal is never shared).
    let journal = first.db_path.with_extension("second.journal");
    let text = format!(
        "{top}\njournal = \"{}\"\n{}",
        journal.display(),
        harness::mock_config(&mock, "")
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
    let second_addr = listener.local_addr().unwrap();
    let (_stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(second.serve(listener, async {
        let _ = stopped.await;
    }));

    // The key id is random, so its Redis keys are this test's own.
    let (_, key) = limited_key(&first, Some(3), None).await;
    assert_eq!(
        post(first.addr, &key, &body(&mock, 16, 3)).await.status(),
        200
    );
    assert_eq!(
        post(second_addr, &key, &body(&mock, 16, 3)).await.status(),
        200
    );
    assert_eq!(
        post(first.addr, &key, &body(&mock, 16, 3)).await.status(),
        200
    );
    let resp = post(second_addr, &key, &body(&mock, 16, 3)).await;
    assert_eq!(header(&resp, "x-ratelimit-remaining-requests"), "0");
    assert_rate_limited(resp).await;
    assert_rate_limited(post(first.addr, &key, &body(&mock, 16, 3)).await).await;
}

#[tokio::test]
async fn an_unreachable_redis_lets_traffic_through() {
    // Port 1 on localhost refuses connections.
    let (gw, mock) = harness::start_with_mock_top("redis = \"redis://127.0.0.1:1\"", "").await;
    let (_, key) = limited_key(&gw, Some(1), None).await;
    for i in 0..3 {
        let resp = post(gw.addr, &key, &body(&mock, 16, 3)).await;
        assert_eq!(resp.status(), 200, "request {i}");
    }
}

#[tokio::test]
async fn the_responses_api_counts_against_the_same_limits() {
    let (gw, mock) = harness::start_with_mock("").await;
    let (_, key) = limited_key(&gw, Some(2), None).await;
    let responses = |input: &str| {
        client()
            .post(gw.url("/v1/responses"))
            .bearer_auth(&key)
            .json(&json!({"model": "m", "input": input, "max_output_tokens": 16}))
            .send()
    };
    let resp = responses("hi").await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "x-ratelimit-remaining-requests"), "1");
    assert_eq!(post(gw.addr, &key, &body(&mock, 16, 3)).await.status(), 200);
    assert_rate_limited(responses("again").await.unwrap()).await;
}
