//! Routing and resilience beyond the per-kind scenario table: circuit breakers and their state at
//! `/admin/providers`, the `auto` and `auto-fast` models (ordering by time to first token, hedging),
//! connect errors, the total time limit, the retry budget, turning the served headers off, and the
//! Anthropic specifics (529 overloaded fails over, cache tokens are billed as cached).

use std::time::{Duration, Instant};

use mock_upstream::MockUpstream;
use serde_json::{json, Value};

use crate::harness::{self, client, data_events, joined, user, TestGateway};
use crate::scenarios::{complete, stream, stream_timed};

const ADMIN: &str = "admin-secret-for-tests-0123456";

/// A gateway with providers `a` (kind `kind`) and `b` (OpenAI) on one mock, plus `models`.
async fn start(kind: &str, top: &str, models: &str) -> (TestGateway, MockUpstream) {
    let mock = MockUpstream::start().await.unwrap();
    let text = format!(
        r#"
demo_credits = "100"
admin_key = "{ADMIN}"
{top}
[providers.a]
kind = "{kind}"
base_url = "{base}"
api_key = "key-a"

[providers.b]
kind = "openai"
base_url = "{base}"
api_key = "key-b"
{models}"#,
        base = mock.base_url()
    );
    (harness::start(&text).await, mock)
}

fn ask(model: &str) -> Value {
    json!({"model": model, "messages": user("hello")})
}

/// A request whose stream carries the upstream's usage, so that no token estimate delays its end.
fn with_usage(model: &str) -> Value {
    json!({"model": model, "messages": user("hello"), "stream_options": {"include_usage": true}})
}

fn served(h: &reqwest::header::HeaderMap) -> (String, u32) {
    (
        h["x-switchyard-provider"].to_str().unwrap().to_owned(),
        h["x-switchyard-attempts"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap(),
    )
}

async fn admin_providers(gw: &TestGateway) -> Value {
    let resp = client()
        .get(gw.url("/admin/providers"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    resp.json().await.unwrap()
}

fn route_state<'a>(providers: &'a Value, route: &str) -> &'a Value {
    providers["data"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["routes"].as_array().unwrap())
        .find(|r| r["route"] == route)
        .unwrap_or_else(|| panic!("no route {route} in {providers}"))
}

#[tokio::test]
async fn breaker_opens_skips_the_route_then_a_probe_closes_it() {
    let (gw, mock) = start(
        "openai",
        "[routing]\nbreaker_failures = 2\nbreaker_cooldown_ms = 30000",
        r#"
[models.m]
routes = ["a/up@status=503,fail_times=2,fail_key=brk", "b/up@tokens=3"]
free = true
"#,
    )
    .await;
    for _ in 0..2 {
        let (status, h, _) = complete(&gw, ask("m")).await;
        assert_eq!(status, 200);
        assert_eq!(served(&h), ("b".to_owned(), 2));
    }
    let health = admin_providers(&gw).await;
    let a = route_state(&health, "a/up@status=503,fail_times=2,fail_key=brk");
    assert_eq!(a["state"], "open", "{health}");
    assert_eq!(a["consecutive_failures"], 2);
    assert!(a["cooldown_remaining_ms"].as_u64().unwrap() > 0);
    assert!(a["last_error"].as_str().unwrap().contains("503"), "{a}");
    // While open, the route is not even tried.
    let before = mock.requests().len();
    let (status, h, _) = complete(&gw, ask("m")).await;
    assert_eq!(status, 200);
    assert_eq!(served(&h), ("b".to_owned(), 1));
    assert_eq!(mock.requests().len(), before + 1);
    // After the cooldown (30 s, skipped at once: no loaded machine gets there by itself), one
    // real request probes it; it has recovered, so it serves and closes.
    harness::skip_ahead(Duration::from_secs(30)).await;
    let (status, h, _) = complete(&gw, ask("m")).await;
    assert_eq!(status, 200);
    assert_eq!(served(&h), ("a".to_owned(), 1));
    let health = admin_providers(&gw).await;
    let a = route_state(&health, "a/up@status=503,fail_times=2,fail_key=brk");
    assert_eq!(a["state"], "closed", "{health}");
    assert_eq!(a["times_opened"], 1);
}

#[tokio::test]
async fn all_breakers_open_is_503_with_retry_after() {
    let (gw, _mock) = start(
        "openai",
        "[routing]\nbreaker_failures = 1\nbreaker_cooldown_ms = 60000\nmax_attempts = 1",
        "[models.m]\nroutes = [\"a/up@status=500\"]\nfree = true\n",
    )
    .await;
    let (status, _, _) = complete(&gw, ask("m")).await;
    assert_eq!(status, 502);
    let resp = gw.chat(ask("m")).send().await.unwrap();
    assert_eq!(resp.status(), 503);
    let after: u64 = resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((50..=60).contains(&after), "{after}");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "no_healthy_upstream");
}

#[tokio::test]
async fn admin_providers_needs_the_admin_key() {
    let (gw, _mock) = start(
        "openai",
        "",
        "[models.m]\nroutes = [\"a/up\"]\nfree = true\n",
    )
    .await;
    let resp = client()
        .get(gw.url("/admin/providers"))
        .bearer_auth(&gw.key)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let text = resp.text().await.unwrap();
    assert!(!text.contains(ADMIN) && !text.contains("key-a"));
    let health = admin_providers(&gw).await;
    assert!(
        !health.to_string().contains("key-a"),
        "no secrets: {health}"
    );
    assert_eq!(route_state(&health, "a/up")["state"], "closed");
}

const AUTO_MODELS: &str = r#"
[models.slow]
routes = ["a/slow-up@ttft_ms=400,tokens=3"]
input_price = "1.00"
output_price = "1.00"

[models.fast]
routes = ["b/fast-up@tokens=3"]
input_price = "5.00"
output_price = "5.00"

[models.broken]
routes = ["a/broken-up@status=500"]
free = true
"#;

#[tokio::test]
async fn auto_follows_the_chain_and_names_what_served() {
    let (gw, _mock) = start(
        "openai",
        "",
        &format!("{AUTO_MODELS}\n[auto]\nchain = [\"broken\", \"slow\", \"fast\"]\n"),
    )
    .await;
    let (status, h, body) = complete(&gw, ask("auto")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(served(&h), ("a".to_owned(), 2));
    assert_eq!(body["model"], "slow-up");
    // Billed at the price of what served (1.00/1.00), not the dearest of the chain.
    let usage = &body["usage"];
    let tokens = usage["total_tokens"].as_u64().unwrap();
    let cost =
        rust_decimal::Decimal::from(tokens * 1_000) / rust_decimal::Decimal::from(1_000_000_000u64);
    assert_eq!(usage["cost"], cost.normalize().to_string());
    // Both automatic models are listed.
    let models: Value = client()
        .get(gw.url("/v1/models"))
        .bearer_auth(&gw.key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ids: Vec<&str> = models["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert!(
        ids.contains(&"auto") && ids.contains(&"auto-fast"),
        "{ids:?}"
    );
}

#[tokio::test]
async fn auto_fast_prefers_the_route_with_the_lowest_time_to_first_token() {
    let (gw, _mock) = start(
        "openai",
        "",
        &format!("{AUTO_MODELS}\n[auto]\nchain = [\"slow\", \"fast\"]\n"),
    )
    .await;
    let mut served_models = Vec::new();
    for _ in 0..4 {
        let (status, _, items) = stream(&gw, ask("auto-fast")).await;
        assert_eq!(status, 200);
        served_models.push(data_events(&items)[0]["model"].as_str().unwrap().to_owned());
    }
    // Unmeasured routes are tried first (in chain order), then the fastest keeps the traffic.
    assert_eq!(served_models, ["slow-up", "fast-up", "fast-up", "fast-up"]);
}

#[tokio::test]
async fn auto_fast_hedges_a_slow_first_token_and_cancels_the_loser() {
    let (gw, mock) = start(
        "openai",
        "",
        r#"
[models.slow]
routes = ["a/slow-up@ttft_ms=5000,tokens=3"]
free = true
[models.fast]
routes = ["b/fast-up@tokens=3"]
free = true
[auto]
chain = ["slow", "fast"]
hedge_after_ms = 150
"#,
    )
    .await;
    let (status, h, items, elapsed) = stream_timed(&gw, with_usage("auto-fast")).await;
    assert_eq!(status, 200);
    // The hedge went out after its delay, and the slow route's first token never came (below).
    assert!(elapsed >= Duration::from_millis(150));
    assert_eq!(served(&h), ("b".to_owned(), 2));
    assert_eq!(data_events(&items)[0]["model"], "fast-up");
    assert_eq!(
        joined(&items, "content"),
        mock_upstream::CONTENT_WORDS[..3].concat()
    );
    let slow = mock.wait_stream_end(0).await;
    assert!(
        slow.client_disconnected && slow.tokens_written == 0,
        "{slow:?}"
    );
    // The loser's time counts against it: next time the fast route goes first, no hedge needed.
    let (status, h, _) = stream(&gw, ask("auto-fast")).await;
    assert_eq!(status, 200);
    assert_eq!(served(&h), ("b".to_owned(), 1));
}

#[tokio::test]
async fn connect_errors_fail_over_within_the_connect_timeout() {
    let mock = MockUpstream::start().await.unwrap();
    // A port nobody listens on (bound, then closed), and a listener whose accept queue is full
    // (never accepted, backlog filled), where a new connection hangs in the TCP handshake.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let full = tokio::net::TcpSocket::new_v4().unwrap();
    full.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let full = full.listen(0).unwrap();
    let full_addr = full.local_addr().unwrap();
    let mut fillers = Vec::new();
    for _ in 0..4 {
        match tokio::time::timeout(
            Duration::from_millis(100),
            tokio::net::TcpStream::connect(full_addr),
        )
        .await
        {
            Ok(Ok(s)) => fillers.push(s),
            _ => break,
        }
    }
    let text = format!(
        r#"
demo_credits = "100"
[providers.refused]
kind = "openai"
base_url = "http://{closed}/v1"
[providers.blackhole]
kind = "anthropic"
base_url = "http://{full_addr}/v1"
connect_timeout_ms = 200
[providers.ok]
kind = "openai"
base_url = "{base}"
[models.m]
routes = ["refused/x", "blackhole/y", "ok/z@tokens=2"]
free = true
"#,
        base = mock.base_url()
    );
    let gw = harness::start(&text).await;
    // A hang guard, not a latency bound: without the 200 ms connect timeout the handshake into
    // the full backlog would wait for the OS (minutes).
    let (status, h, body) = tokio::time::timeout(Duration::from_secs(20), complete(&gw, ask("m")))
        .await
        .expect("the black-holed route was not given up");
    assert_eq!(status, 200, "{body}");
    assert_eq!(served(&h), ("ok".to_owned(), 3));
}

#[tokio::test]
async fn total_timeout_fails_over_before_the_first_byte_and_ends_a_stream_after_it() {
    let (gw, _mock) = start(
        "openai",
        "",
        r#"
[models.long]
routes = ["a/up@tokens=30,gap_ms=50", "b/up@tokens=2"]
free = true
total_timeout_ms = 400
"#,
    )
    .await;
    // Not streamed: nothing was sent yet, so the next route answers.
    let (status, h, body) = complete(&gw, ask("long")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(served(&h), ("b".to_owned(), 2));
    // Streamed: the first route started in time, so its stream is cut at the limit (it would
    // otherwise end normally after 1.5 s).
    let (status, h, items) = stream(&gw, ask("long")).await;
    assert_eq!(status, 200);
    assert_eq!(served(&h), ("a".to_owned(), 1));
    assert!(joined(&items, "content").split_whitespace().count() < 30);
    let last = data_events(&items).pop().unwrap();
    assert_eq!(last["error"]["code"], 504, "{last}");
}

#[tokio::test]
async fn the_retry_budget_bounds_waiting_and_retries_back_off() {
    let (gw, mock) = start(
        "openai",
        "[routing]\nretry_budget_ms = 300\nmax_attempts = 5\nbackoff_base_ms = 50",
        r#"
[models.down]
routes = ["a/up@status=502"]
free = true
[models.blip]
routes = ["a/up@status=502,fail_times=2,fail_key=blip,tokens=2"]
free = true
"#,
    )
    .await;
    // Always failing: retried with backoff until the budget is spent, then a 502. Backoffs of
    // 25-50, 50-100 and 100-200 ms leave room for at most 4 tries in 300 ms: the budget, not
    // max_attempts (5), is what stopped it.
    let (status, _, body) = complete(&gw, ask("down")).await;
    assert_eq!(status, 502, "{body}");
    let tries = mock.requests().len();
    assert!((2..5).contains(&tries), "{tries} tries");
    // A blip: two failures, the third try (after 25-50 ms then 50-100 ms) succeeds.
    let t = Instant::now();
    let (status, h, _) = complete(&gw, ask("blip")).await;
    assert_eq!(status, 200);
    assert_eq!(served(&h), ("a".to_owned(), 3));
    assert!(
        t.elapsed() >= Duration::from_millis(75),
        "{:?}",
        t.elapsed()
    );
}

#[tokio::test]
async fn served_headers_can_be_turned_off() {
    let (gw, _mock) = start(
        "openai",
        "[routing]\nserved_headers = false",
        "[models.m]\nroutes = [\"a/up\"]\nfree = true\n",
    )
    .await;
    let resp = gw.chat(ask("m")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().get("x-switchyard-provider").is_none());
    assert!(resp.headers().get("x-switchyard-attempts").is_none());
}

#[tokio::test]
async fn anthropic_overloaded_fails_over_and_cache_reads_are_billed_as_cached() {
    let (gw, mock) = start(
        "anthropic",
        "",
        r#"
[models.m]
routes = ["a/claude-x@status=529", "a/claude-y@cached_tokens=6,prompt_tokens=10,tokens=4"]
input_price = "10.00"
output_price = "10.00"
cached_input_price = "1.00"
"#,
    )
    .await;
    let (status, h, items) = stream(
        &gw,
        json!({"model": "m", "messages": user("hi"), "stream_options": {"include_usage": true}}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(served(&h), ("a".to_owned(), 2));
    let events = data_events(&items);
    let usage = &events.last().unwrap()["usage"];
    assert_eq!(usage["prompt_tokens"], 10, "{usage}");
    assert_eq!(usage["prompt_tokens_details"]["cached_tokens"], 6);
    // 4 uncached at 10.00 + 6 cached at 1.00 + 4 output at 10.00 per 1M.
    assert_eq!(usage["cost"], "0.000086", "{usage}");
    // The request really went out in Anthropic's dialect.
    let sent = &mock.requests()[1];
    assert_eq!(sent.path, "/v1/messages");
    let header = |n: &str| {
        sent.headers
            .iter()
            .find(|(k, _)| k == n)
            .map(|(_, v)| v.as_str())
    };
    assert_eq!(header("x-api-key"), Some("key-a"));
    assert_eq!(header("anthropic-version"), Some("2023-06-01"));
    assert!(header("authorization").is_none());
    assert!(sent.body["max_tokens"].as_u64().unwrap() > 0);
}

/// An upstream that answers 402 (the operator's account with that provider has run dry) is the
/// route's failure, not the caller's: the next route serves the request, and with no other route
/// the caller gets 502, never 402 "insufficient balance" with the provider's text.
#[tokio::test]
async fn an_upstream_402_fails_over_and_is_never_the_callers_402() {
    let (gw, _mock) = start(
        "openai",
        "",
        r#"
[models.m]
routes = ["a/up@status=402", "b/up@tokens=3"]
free = true

[models.solo]
routes = ["a/up@status=402"]
free = true
"#,
    )
    .await;
    let (status, headers, body) = complete(&gw, ask("m")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(served(&headers), ("b".to_owned(), 2));
    let (status, _, body) = complete(&gw, ask("solo")).await;
    assert_eq!(status, 502, "{body}");
    assert_ne!(body["error"]["code"], "insufficient_quota", "{body}");
}
