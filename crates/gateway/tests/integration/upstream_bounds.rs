//! Broken and hostile upstreams, as a client sees them: an endless SSE line or an oversized answer
//! or error body fails over before the first byte and ends the stream with an error event after
//! it, the gateway letting go of the upstream instead of buffering; an upstream's refusal of the
//! request itself (context length, content policy) reaches the caller as a 400 without another
//! route being tried or the route's breaker being touched, while failures of the route (403, 404
//! for its model, 401 after a refresh) fail over; failures only one key's requests meet skip the
//! route for that key alone; a `cmd:` credential that hangs is cut off at its timeout, runs once
//! for many waiting requests, and takes the route down.

use std::time::Duration;

use mock_upstream::MockUpstream;
use reqwest::header::HeaderMap;
use serde_json::{json, Value};
use switchyard::auth::create_key;
use switchyard::store::ledger::{Nanos, NewKey};

use crate::harness::{self, client, data_events, joined, parse_sse, user, Sse, TestGateway};

const ADMIN: &str = "admin-secret-for-upstream-bounds";

/// A gateway with provider `a` (kind `kind`, on `mock_a`, with `a_extra` settings; its
/// credential is `key-a` unless they name one) and provider `b` (OpenAI, on `mock_b`), plus
/// `models`.
async fn start(
    kind: &str,
    mock_a: &MockUpstream,
    a_extra: &str,
    mock_b: &MockUpstream,
    models: &str,
) -> TestGateway {
    let text = format!(
        r#"
demo_credits = "100"
admin_key = "{ADMIN}"
[routing]
breaker_failures = 2
breaker_min_requests = 4
breaker_cooldown_ms = 60000
[providers.a]
kind = "{kind}"
base_url = "{a}"
{a_key}
{a_extra}

[providers.b]
kind = "openai"
base_url = "{b}"
api_key = "key-b"
{models}"#,
        a = mock_a.base_url(),
        b = mock_b.base_url(),
        a_key = if a_extra.contains("api_key") {
            ""
        } else {
            "api_key = \"key-a\""
        },
    );
    harness::start(&text).await
}

fn ask(model: &str) -> Value {
    json!({"model": model, "messages": user("hello"), "stream_options": {"include_usage": true}})
}

fn served(h: &HeaderMap) -> (String, u32) {
    (
        h["x-switchyard-provider"].to_str().unwrap().to_owned(),
        h["x-switchyard-attempts"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap(),
    )
}

async fn post(gw: &TestGateway, key: &str, body: &Value) -> reqwest::Response {
    client()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(key)
        .json(body)
        .send()
        .await
        .unwrap()
}

/// The route's line at `/admin/providers`.
async fn route_health(gw: &TestGateway, route: &str) -> Value {
    let resp = client()
        .get(gw.url("/admin/providers"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    v["data"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["routes"].as_array().unwrap())
        .find(|r| r["route"] == route)
        .cloned()
        .unwrap_or_else(|| panic!("no route {route} in {v}"))
}

/// Waits for the mock's `n`-th stream to end and checks that the gateway let go of it.
async fn gateway_let_go(mock: &MockUpstream, n: usize) {
    let record = tokio::time::timeout(Duration::from_secs(20), mock.wait_stream_end(n))
        .await
        .expect("the gateway stopped reading the endless line");
    assert!(record.client_disconnected, "{record:?}");
}

#[tokio::test]
async fn an_endless_line_before_the_first_byte_fails_over_and_the_upstream_is_let_go() {
    let (mock_a, mock_b) = (
        MockUpstream::start().await.unwrap(),
        MockUpstream::start().await.unwrap(),
    );
    let gw = start(
        "openai",
        &mock_a,
        "max_sse_line_bytes = 200000",
        &mock_b,
        r#"
[models.m]
routes = ["a/up@endless_line_after=0", "b/up@tokens=3"]
free = true
"#,
    )
    .await;
    let mut body = ask("m");
    body["stream"] = json!(true);
    let resp = gw.chat(body).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(served(resp.headers()), ("b".to_owned(), 2));
    let items = parse_sse(&resp.text().await.unwrap());
    assert_eq!(
        joined(&items, "content"),
        mock_upstream::CONTENT_WORDS[..3].concat()
    );
    gateway_let_go(&mock_a, 0).await;
    let a = route_health(&gw, "a/up@endless_line_after=0").await;
    assert_eq!(a["failures"], 1, "{a}");
    assert!(a["last_error"].as_str().unwrap().contains("200000"), "{a}");
}

#[tokio::test]
async fn an_endless_line_after_the_first_byte_ends_the_stream_with_an_error_event() {
    let (mock_a, mock_b) = (
        MockUpstream::start().await.unwrap(),
        MockUpstream::start().await.unwrap(),
    );
    let gw = start(
        "openai",
        &mock_a,
        "max_sse_line_bytes = 200000",
        &mock_b,
        r#"
[models.m]
routes = ["a/up@endless_line_after=2,tokens=5", "b/up@tokens=3"]
input_price = "1.00"
output_price = "2.00"
"#,
    )
    .await;
    let mut body = ask("m");
    body["stream"] = json!(true);
    let resp = gw.chat(body).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(served(resp.headers()), ("a".to_owned(), 1));
    let id = harness::request_id(&resp);
    let items = parse_sse(&resp.text().await.unwrap());
    // The two tokens before the line went out; then an error event and [DONE].
    assert_eq!(
        joined(&items, "content"),
        mock_upstream::CONTENT_WORDS[..2].concat()
    );
    let events = data_events(&items);
    let error = &events.last().unwrap()["error"];
    assert_eq!(error["code"], 502, "{items:?}");
    assert!(
        error["message"].as_str().unwrap().contains("larger than"),
        "{error}"
    );
    assert!(items.contains(&Sse::Done));
    gateway_let_go(&mock_a, 0).await;
    assert!(
        mock_b.requests().is_empty(),
        "no failover after the first byte"
    );
    let entry = gw.gw.ledger.entry(&id).await.unwrap().expect("an entry");
    assert_eq!(entry.end_reason, "error");
    assert_eq!(entry.completion_tokens, 2, "what was delivered is billed");
}

#[tokio::test]
async fn an_oversized_answer_or_error_body_fails_over() {
    let (mock_a, mock_b) = (
        MockUpstream::start().await.unwrap(),
        MockUpstream::start().await.unwrap(),
    );
    let gw = start(
        "openai",
        &mock_a,
        "max_response_bytes = 100000",
        &mock_b,
        r#"
[models.big-answer]
routes = ["a/up@body_bytes=300000", "b/up@tokens=3"]
free = true

[models.small-answer]
routes = ["a/up@body_bytes=90000", "b/up@tokens=3"]
free = true

[models.big-error]
routes = ["a/up@status=400,body_bytes=70000", "b/up@tokens=3"]
free = true
"#,
    )
    .await;
    for (model, provider, attempts) in [
        ("big-answer", "b", 2),
        ("small-answer", "a", 1),
        // An error body past the 64 KiB default is not read as the upstream's refusal.
        ("big-error", "b", 2),
    ] {
        let resp = gw.chat(ask(model)).send().await.unwrap();
        assert_eq!(resp.status(), 200, "{model}");
        assert_eq!(
            served(resp.headers()),
            (provider.to_owned(), attempts),
            "{model}"
        );
        let v: Value = resp.json().await.unwrap();
        assert!(v["choices"][0]["message"]["content"].is_string(), "{v}");
    }
}

/// A provider's refusal of the request itself, in its own dialect.
struct Refusal {
    kind: &'static str,
    body: Value,
    code: &'static str,
    says: &'static str,
}

fn refusals() -> Vec<Refusal> {
    vec![
        Refusal {
            kind: "openai",
            body: json!({"error": {"message": "This model's maximum context length is 128000 tokens. However, your messages resulted in 130123 tokens. Please reduce the length of the messages.", "type": "invalid_request_error", "param": "messages", "code": "context_length_exceeded"}}),
            code: "context_length_exceeded",
            says: "maximum context length is 128000",
        },
        Refusal {
            kind: "anthropic",
            body: json!({"type": "error", "error": {"type": "invalid_request_error", "message": "prompt is too long: 210443 tokens > 200000 maximum"}, "request_id": "req_011"}),
            code: "context_length_exceeded",
            says: "prompt is too long",
        },
        Refusal {
            kind: "deepseek",
            body: json!({"error": {"message": "This model's maximum context length is 65536 tokens. However, you requested 70000 tokens (66000 in the messages, 4000 in the completion). Please reduce the length of the messages or completion.", "type": "invalid_request_error", "param": null, "code": "invalid_request_error"}}),
            code: "context_length_exceeded",
            says: "65536",
        },
        Refusal {
            kind: "openai",
            body: json!({"error": {"message": "Your request was rejected as a result of our safety system.", "type": "invalid_request_error", "param": null, "code": "content_policy_violation"}}),
            code: "content_policy_violation",
            says: "safety system",
        },
    ]
}

#[tokio::test]
async fn a_refusal_of_the_request_goes_to_the_caller_and_leaves_the_route_alone() {
    for r in refusals() {
        let (mock_a, mock_b) = (
            MockUpstream::start().await.unwrap(),
            MockUpstream::start().await.unwrap(),
        );
        mock_a
            .set_options(json!({"status": 400, "error_body": r.body.to_string()}))
            .unwrap();
        let gw = start(
            r.kind,
            &mock_a,
            "",
            &mock_b,
            r#"
[models.m]
routes = ["a/up", "b/up"]
free = true
"#,
        )
        .await;
        // More than the breaker's threshold (2), streamed and not.
        for stream in [false, true, false, true] {
            let mut body = ask("m");
            body["stream"] = json!(stream);
            let resp = gw.chat(body).send().await.unwrap();
            assert_eq!(resp.status(), 400, "{}", r.kind);
            let id = harness::request_id(&resp);
            let v: Value = resp.json().await.unwrap();
            // The request log keeps what the provider answered, for operators.
            let entry = gw.gw.ledger.entry(&id).await.unwrap().expect("an entry");
            assert_eq!(entry.upstream_status, Some(400));
            let e = &v["error"];
            assert_eq!(e["code"], r.code, "{v}");
            assert_eq!(e["type"], "invalid_request_error", "{v}");
            assert!(e["message"].as_str().unwrap().contains(r.says), "{v}");
        }
        assert!(
            mock_b.requests().is_empty(),
            "{}: the second route is never tried",
            r.kind
        );
        assert_eq!(mock_a.requests().len(), 4, "{}: one try each", r.kind);
        let a = route_health(&gw, "a/up").await;
        assert_eq!(a["state"], "closed", "{a}");
        assert_eq!(a["failures"], 0, "{a}");
    }
}

#[tokio::test]
async fn failures_of_the_route_fail_over_and_count_against_it() {
    let (mock_a, mock_b) = (
        MockUpstream::start().await.unwrap(),
        MockUpstream::start().await.unwrap(),
    );
    let gw = start(
        "openai",
        &mock_a,
        "",
        &mock_b,
        r#"
[models.forbidden]
routes = ["a/up@status=403", "b/up@tokens=3"]
free = true

[models.no-such-model]
routes = ["a/up@status=404", "b/up@tokens=3"]
free = true

[models.bad-credential]
routes = ["a/up@status=401", "b/up@tokens=3"]
free = true
"#,
    )
    .await;
    // 401: the credential is refreshed and the route retried once, then the next route serves.
    for (model, attempts) in [
        ("forbidden", 2),
        ("no-such-model", 2),
        ("bad-credential", 3),
    ] {
        let resp = gw.chat(ask(model)).send().await.unwrap();
        assert_eq!(resp.status(), 200, "{model}");
        assert_eq!(
            served(resp.headers()),
            ("b".to_owned(), attempts),
            "{model}"
        );
        let route = format!("a/up@status={}", &model_status(model));
        let a = route_health(&gw, &route).await;
        assert_eq!(a["failures"], 1, "{a}");
    }
    // With no other route, the caller sees a 502 in our words, never the provider's status or text.
    let mock_c = MockUpstream::start().await.unwrap();
    mock_c.set_options(json!({"status": 403})).unwrap();
    let gw = start(
        "openai",
        &mock_c,
        "",
        &mock_b,
        "[models.m]\nroutes = [\"a/up\"]\nfree = true\n",
    )
    .await;
    let resp = gw.chat(ask("m")).send().await.unwrap();
    assert_eq!(resp.status(), 502);
    let id = harness::request_id(&resp);
    let text = resp.text().await.unwrap();
    assert!(
        !text.contains("Country, region") && !text.contains("403"),
        "{text}"
    );
    let entry = gw.gw.ledger.entry(&id).await.unwrap().expect("an entry");
    assert_eq!(
        entry.upstream_status,
        Some(403),
        "operators see the provider's status"
    );
}

fn model_status(model: &str) -> u16 {
    match model {
        "forbidden" => 403,
        "no-such-model" => 404,
        _ => 401,
    }
}

#[tokio::test]
async fn one_keys_failing_requests_do_not_open_the_route_for_other_keys() {
    let (mock_a, mock_b) = (
        MockUpstream::start().await.unwrap(),
        MockUpstream::start().await.unwrap(),
    );
    // Route a never answers a prompt that contains HUGE: it times out before its first token.
    mock_a
        .set_options(json!({"stall_if_contains": "HUGE", "tokens": 2}))
        .unwrap();
    let gw = start(
        "openai",
        &mock_a,
        "first_token_timeout_ms = 300",
        &mock_b,
        "[models.m]\nroutes = [\"a/up\", \"b/up@tokens=3\"]\nfree = true\n",
    )
    .await;
    let new_key = |name: &'static str| {
        let ledger = gw.gw.ledger.clone();
        async move {
            let key = NewKey {
                name: name.into(),
                credits: Nanos::from_usd("10".parse().unwrap()).unwrap(),
                ..NewKey::default()
            };
            create_key(&ledger, &key).await.unwrap().1
        }
    };
    let (key_a, key_b, key_c) = (new_key("A").await, new_key("B").await, new_key("C").await);
    // Streamed: the first-token timeout applies (a whole answer has the total time limit).
    let huge = json!({"model": "m", "stream": true, "messages": user("HUGE prompt")});
    let small = json!({"model": "m", "stream": true, "messages": user("hello")});

    // Key A's huge prompts time out on route a and fail over to b, again and again.
    for _ in 0..4 {
        let resp = post(&gw, &key_a, &huge).await;
        assert_eq!(resp.status(), 200);
        assert_eq!(served(resp.headers()).0, "b");
    }
    // Past the threshold (2) key A no longer waits on route a...
    let resp = post(&gw, &key_a, &huge).await;
    assert_eq!(served(resp.headers()), ("b".to_owned(), 1));
    // ...while key B is still served by it.
    let resp = post(&gw, &key_b, &small).await;
    assert_eq!(served(resp.headers()), ("a".to_owned(), 1));
    let a = route_health(&gw, "a/up").await;
    assert_eq!(
        (a["state"].as_str(), a["keys_skipping"].as_u64()),
        (Some("closed"), Some(1)),
        "{a}"
    );

    // When a second key meets the same failures (4 of the last 5 outcomes failed, from two keys),
    // the route's breaker opens for everyone.
    for _ in 0..2 {
        let resp = post(&gw, &key_b, &huge).await;
        assert_eq!(served(resp.headers()).0, "b");
    }
    let a = route_health(&gw, "a/up").await;
    assert_eq!(a["state"], "open", "{a}");
    let resp = post(&gw, &key_c, &small).await;
    assert_eq!(served(resp.headers()), ("b".to_owned(), 1));
}

#[tokio::test]
async fn a_hanging_credential_command_is_cut_off_runs_once_and_takes_the_route_down() {
    let (mock_a, mock_b) = (
        MockUpstream::start().await.unwrap(),
        MockUpstream::start().await.unwrap(),
    );
    // Provider a's command gives a stale key at start; from then on it hangs. Each run is counted.
    let dir = std::env::temp_dir().join(format!(
        "switchyard-cmd-{}-{}",
        std::process::id(),
        harness::temp_db().file_stem().unwrap().to_string_lossy()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let runs = dir.join("runs");
    let script = format!(
        "echo run >> {runs}; if [ -f {started} ]; then exec sleep 600; fi; touch {started}; echo stale-key",
        runs = runs.display(),
        started = dir.join("started").display()
    );
    std::fs::write(dir.join("credential.sh"), script).unwrap();
    mock_a.set_expected_key(Some("fresh-key".into()));
    let gw = start(
        "openai",
        &mock_a,
        &format!(
            "api_key = \"cmd:sh {}\"\ncredential_timeout_ms = 400",
            dir.join("credential.sh").display()
        ),
        &mock_b,
        "[models.m]\nroutes = [\"a/up\", \"b/up@tokens=3\"]\nfree = true\n",
    )
    .await;
    let count_runs = || {
        std::fs::read_to_string(&runs)
            .unwrap_or_default()
            .lines()
            .count()
    };
    assert_eq!(count_runs(), 1, "resolved once at start");

    // Eight requests at once: all get 401 from a, share one refresh, and are served by b.
    let requests = (0..8).map(|_| gw.chat(ask("m")).send());
    let all = tokio::time::timeout(
        Duration::from_secs(30),
        futures_util::future::join_all(requests),
    )
    .await
    .expect("no request waits on the hanging command beyond its timeout");
    for resp in all {
        let resp = resp.unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(served(resp.headers()).0, "b");
    }
    assert_eq!(count_runs(), 2, "the command ran once for all of them");
    let a = route_health(&gw, "a/up").await;
    assert_eq!(a["state"], "open", "{a}");
    assert!(
        a["last_error"]
            .as_str()
            .unwrap()
            .contains("did not finish within 400 ms"),
        "{a}"
    );
    // The route is skipped now: nothing more reaches a, the command is not run again.
    let before = mock_a.requests().len();
    let resp = gw.chat(ask("m")).send().await.unwrap();
    assert_eq!(served(resp.headers()), ("b".to_owned(), 1));
    assert_eq!(mock_a.requests().len(), before);
    assert_eq!(count_runs(), 2);
    std::fs::remove_dir_all(&dir).ok();
}

/// An upstream that keeps answering 401 re-runs a `cmd:` credential at most once per
/// `credential_refresh_interval_ms`, not once per request.
#[tokio::test]
async fn repeated_401s_re_run_a_command_credential_once_per_interval() {
    let (mock_a, mock_b) = (
        MockUpstream::start().await.unwrap(),
        MockUpstream::start().await.unwrap(),
    );
    let dir = std::env::temp_dir().join(format!(
        "switchyard-cmd401-{}-{}",
        std::process::id(),
        harness::temp_db().file_stem().unwrap().to_string_lossy()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let runs = dir.join("runs");
    std::fs::write(
        dir.join("credential.sh"),
        format!("echo run >> {}; echo refused-key", runs.display()),
    )
    .unwrap();
    mock_a.set_expected_key(Some("accepted-key".into()));
    let gw = start(
        "openai",
        &mock_a,
        &format!(
            "api_key = \"cmd:sh {}\"\ncredential_refresh_interval_ms = 600000",
            dir.join("credential.sh").display()
        ),
        &mock_b,
        "[models.m]\nroutes = [\"a/up\", \"b/up@tokens=3\"]\nfree = true\n",
    )
    .await;
    let count_runs = || {
        std::fs::read_to_string(&runs)
            .unwrap_or_default()
            .lines()
            .count()
    };
    assert_eq!(count_runs(), 1, "resolved once at start");
    // Two refusals in a row (the breaker opens at the second and a is skipped from then on).
    for n in 1..=2 {
        let resp = gw.chat(ask("m")).send().await.unwrap();
        assert_eq!(resp.status(), 200, "request {n}");
        assert_eq!(served(resp.headers()).0, "b", "request {n}");
    }
    assert_eq!(
        mock_a.requests().len(),
        3,
        "a was tried by both, once more after the re-run"
    );
    assert_eq!(
        count_runs(),
        2,
        "one re-run for two refusals within the interval"
    );
    std::fs::remove_dir_all(&dir).ok();
}
