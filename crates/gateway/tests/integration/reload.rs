//! Live reload (`POST /admin/reload`, SIGHUP): a stream open across a reload ends with the route
//! and price it started with while new requests get the new config; removed models are 404; an
//! invalid file or a secret that does not resolve is refused with its reason and the old config
//! keeps serving; restart-only settings are reported and kept; breaker state survives; `switchyard
//! check` names the secrets that do not resolve.

use std::path::{Path, PathBuf};
use std::time::Duration;

use futures_util::StreamExt;
use mock_upstream::MockUpstream;
use rust_decimal::Decimal;
use serde_json::{json, Value};

use crate::harness::{
    self, client, data_events, joined, parse_sse, request_id, start_from_file, user, TestGateway,
};

const ADMIN: &str = "sk-admin-reload-test-0123456789";
const WAIT: Duration = Duration::from_secs(20);

/// A config file of its own for one test.
fn config_file(tag: &str) -> PathBuf {
    std::env::temp_dir().join(format!(
        "sy-reload-{}-{tag}-{}.toml",
        std::process::id(),
        rand::random::<u32>()
    ))
}

/// A config: the admin key, provider `mock` (and `spare`) on `mock`, and `models`.
fn config_text(mock: &MockUpstream, models: &str) -> String {
    format!(
        r#"admin_key = "{ADMIN}"
demo_credits = "100"

[providers.mock]
kind = "openai"
base_url = "{base}"
api_key = "upstream-secret-key"

[providers.spare]
kind = "openai"
base_url = "{base}"
api_key = "upstream-secret-key"

{models}
"#,
        base = mock.base_url()
    )
}

/// The line on which `config_text`'s models begin.
fn models_line(mock: &MockUpstream) -> usize {
    config_text(mock, "MODELS")
        .lines()
        .position(|l| l == "MODELS")
        .unwrap()
        + 1
}

async fn reload(gw: &TestGateway) -> (u16, Value) {
    let resp = client()
        .post(gw.url("/admin/reload"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap())
}

async fn start_file(path: &Path, text: &str) -> TestGateway {
    std::fs::write(path, text).unwrap();
    start_from_file(path).await
}

fn usd(n: &str) -> Decimal {
    n.parse().unwrap()
}

/// USD for `tokens` at `price` per million.
fn at(tokens: i64, price: &str) -> Decimal {
    Decimal::from(tokens) * usd(price) / Decimal::from(1_000_000)
}

fn strings(v: &Value) -> Vec<&str> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect()
}

async fn models(gw: &TestGateway) -> Vec<String> {
    let body: Value = client()
        .get(gw.url("/v1/models"))
        .bearer_auth(&gw.key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn a_stream_open_across_a_reload_keeps_its_route_and_price_and_new_requests_get_the_new_ones()
{
    let mock = MockUpstream::start().await.unwrap();
    let path = config_file("stream");
    let old = r#"[models.m]
routes = ["mock/old-up@tokens=20,gap_ms=100"]
input_price = "2.50"
output_price = "10.00"
"#;
    let gw = start_file(&path, &config_text(&mock, old)).await;

    let resp = gw
        .chat(json!({"model": "m", "stream": true, "messages": user("hi")}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let old_id = request_id(&resp);
    let mut frames = resp.bytes_stream();
    let mut buf = String::new();
    while joined(&parse_sse(&buf), "content").is_empty() {
        let frame = frames.next().await.unwrap().unwrap();
        buf.push_str(&String::from_utf8_lossy(&frame));
    }

    let new = r#"[models.m]
routes = ["spare/new-up@tokens=5"]
input_price = "5.00"
output_price = "20.00"
"#;
    std::fs::write(&path, config_text(&mock, new)).unwrap();
    let (status, body) = reload(&gw).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["generation"], 2);
    assert_eq!(strings(&body["models"]["changed"]), ["m"]);
    assert_eq!(
        strings(&body["routes"]["added"]),
        ["m: spare/new-up@tokens=5"]
    );
    assert_eq!(
        strings(&body["routes"]["removed"]),
        ["m: mock/old-up@tokens=20,gap_ms=100"]
    );
    assert!(body["needs_restart"].as_array().unwrap().is_empty());

    // The open stream goes on from its old route, to its end, at the old price.
    while let Some(frame) = frames.next().await {
        buf.push_str(&String::from_utf8_lossy(&frame.unwrap()));
    }
    let items = parse_sse(&buf);
    assert!(
        items.contains(&harness::Sse::Done),
        "the stream ended with [DONE]: {buf}"
    );
    let usage = data_events(&items)
        .into_iter()
        .rev()
        .find_map(|e| e.get("usage").cloned())
        .expect("usage");
    assert_eq!(usage["completion_tokens"], 20);
    let e = gw
        .gw
        .ledger
        .wait_for_entry(&old_id, WAIT)
        .await
        .unwrap()
        .expect("entry");
    assert_eq!(e.end_reason, "stop");
    assert_eq!(
        e.cost.to_usd(),
        at(e.prompt_tokens, "2.50") + at(20, "10.00"),
        "billed at the price it was admitted with"
    );
    assert_eq!(e.cost.to_string(), usage["cost"].as_str().unwrap());
    assert_eq!(e.provider.as_deref(), Some("mock"));

    // A request after the reload: the new route and the new price.
    let resp = gw
        .chat(json!({"model": "m", "messages": user("hi")}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let new_id = request_id(&resp);
    let answer: Value = resp.json().await.unwrap();
    let e = gw
        .gw
        .ledger
        .wait_for_entry(&new_id, WAIT)
        .await
        .unwrap()
        .expect("entry");
    assert_eq!(e.provider.as_deref(), Some("spare"));
    assert_eq!(e.completion_tokens, 5);
    assert_eq!(
        e.cost.to_usd(),
        at(e.prompt_tokens, "5.00") + at(5, "20.00")
    );
    assert_eq!(answer["usage"]["cost"], e.cost.to_string());
    let upstream_models: Vec<String> = mock
        .requests()
        .iter()
        .map(|r| r.body["model"].as_str().unwrap_or("").to_owned())
        .collect();
    assert_eq!(
        upstream_models,
        ["old-up@tokens=20,gap_ms=100", "new-up@tokens=5"]
    );
    let _ = std::fs::remove_file(path);
}

#[tokio::test]
async fn a_removed_model_is_404_and_an_added_one_serves() {
    let mock = MockUpstream::start().await.unwrap();
    let path = config_file("models");
    let a = "[models.a]\nroutes = [\"mock/a@tokens=2\"]\nfree = true\n";
    let b = "[models.b]\nroutes = [\"mock/b@tokens=2\"]\nfree = true\n";
    let gw = start_file(&path, &config_text(&mock, a)).await;
    assert_eq!(models(&gw).await, ["a"]);

    std::fs::write(&path, config_text(&mock, b)).unwrap();
    let (status, body) = reload(&gw).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(strings(&body["models"]["added"]), ["b"]);
    assert_eq!(strings(&body["models"]["removed"]), ["a"]);
    assert_eq!(models(&gw).await, ["b"]);
    let resp = gw
        .chat(json!({"model": "a", "messages": user("hi")}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    let err: Value = resp.json().await.unwrap();
    assert_eq!(err["error"]["code"], "model_not_found", "{err}");
    let resp = gw
        .chat(json!({"model": "b", "messages": user("hi")}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let _ = std::fs::remove_file(path);
}

#[tokio::test]
async fn an_invalid_config_is_refused_with_its_line_and_the_old_one_keeps_serving() {
    let mock = MockUpstream::start().await.unwrap();
    let path = config_file("invalid");
    let good =
        "[models.m]\nroutes = [\"mock/m@tokens=2\"]\ninput_price = \"1\"\noutput_price = \"2\"\n";
    let gw = start_file(&path, &config_text(&mock, good)).await;
    let first = models_line(&mock);
    let cases = [
        // Bad TOML: an unclosed table header.
        ("[models.m\nroutes = [\"mock/m\"]\n".to_owned(), first, ""),
        // An unknown key.
        (
            "[models.m]\nroutes = [\"mock/m\"]\ninput_prise = \"1\"\noutput_price = \"2\"\n"
                .to_owned(),
            first + 2,
            "input_prise",
        ),
        // A price missing.
        (
            "[models.m]\nroutes = [\"mock/m\"]\ninput_price = \"1\"\n".to_owned(),
            first + 1,
            "output_price",
        ),
    ];
    for (models, line, word) in cases {
        std::fs::write(&path, config_text(&mock, &models)).unwrap();
        let (status, body) = reload(&gw).await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(body["error"]["type"], "invalid_request_error");
        assert_eq!(body["error"]["code"], "invalid_config");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains(&format!("line {line}")), "{message}");
        assert!(message.contains(word), "{message}");
        // The old config still serves, at its price.
        let resp = gw
            .chat(json!({"model": "m", "messages": user("hi")}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(gw.live.current().generation, 1);
    }
    let metrics = harness::get_text(gw.url("/metrics")).await;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("switchyard_config_reloads_total{result=\"refused\"}")),
        "{metrics}"
    );
    let _ = std::fs::remove_file(path);
}

#[tokio::test]
async fn a_secret_that_does_not_resolve_refuses_the_reload_by_name() {
    let mock = MockUpstream::start().await.unwrap();
    let path = config_file("secret");
    let m = "[models.m]\nroutes = [\"mock/m@tokens=2\"]\nfree = true\n";
    let gw = start_file(&path, &config_text(&mock, m)).await;
    let missing = std::env::temp_dir().join(format!("sy-no-such-key-{}", std::process::id()));
    let extra = format!(
        "{m}\n[providers.envy]\nkind = \"openai\"\nbase_url = \"{b}\"\napi_key = \"env:SWITCHYARD_TEST_NEVER_SET_KEY\"\n\n[providers.filed]\nkind = \"openai\"\nbase_url = \"{b}\"\napi_key = \"file:{f}\"\n\n[models.n]\nroutes = [\"envy/n\", \"filed/n\"]\nfree = true\n",
        b = mock.base_url(),
        f = missing.display()
    );
    std::fs::write(&path, config_text(&mock, &extra)).unwrap();
    let (status, body) = reload(&gw).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "unresolved_secret");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("providers.envy.api_key")
            && message.contains("env:SWITCHYARD_TEST_NEVER_SET_KEY"),
        "{message}"
    );
    assert!(message.contains("providers.filed.api_key"), "{message}");
    assert_eq!(models(&gw).await, ["m"], "the old config stays");
    assert_eq!(gw.live.current().generation, 1);
    let _ = std::fs::remove_file(path);
}

#[tokio::test]
async fn restart_only_settings_are_reported_and_keep_their_old_values() {
    let mock = MockUpstream::start().await.unwrap();
    let path = config_file("restart");
    let m = "[models.m]\nroutes = [\"mock/m@tokens=2\"]\nfree = true\n";
    let gw = start_file(&path, &config_text(&mock, m)).await;
    let text = format!(
        "listen = \"127.0.0.1:1\"\nredis = \"redis://127.0.0.1:1\"\n{}\n[server]\nmax_header_bytes = 2048\n[routing]\nbreaker_failures = 9\n",
        config_text(&mock, m)
    );
    std::fs::write(&path, text).unwrap();
    let (status, body) = reload(&gw).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        strings(&body["needs_restart"]),
        ["listen", "redis", "server"]
    );
    assert_eq!(strings(&body["settings"]), ["routing"]);
    let current = gw.live.current();
    assert_eq!(current.config.server.max_header_bytes, 64 * 1024, "kept");
    assert_eq!(current.config.redis, None, "kept");
    assert_eq!(current.config.routing.breaker.failures, 9, "applied");
    // Headers over the new limit but within the old one still pass.
    let resp = gw
        .chat(json!({"model": "m", "messages": user("hi")}))
        .header("x-padding", "p".repeat(4096))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let _ = std::fs::remove_file(path);
}

#[tokio::test]
async fn reloads_need_the_admin_key_and_concurrent_ones_serialise() {
    let mock = MockUpstream::start().await.unwrap();
    let path = config_file("serial");
    let m = "[models.m]\nroutes = [\"mock/m@tokens=2\"]\nfree = true\n";
    let gw = start_file(&path, &config_text(&mock, m)).await;
    let resp = client()
        .post(gw.url("/admin/reload"))
        .bearer_auth(&gw.key)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let (a, b) = tokio::join!(reload(&gw), reload(&gw));
    assert_eq!((a.0, b.0), (200, 200));
    let mut generations = [a.1["generation"].as_u64(), b.1["generation"].as_u64()];
    generations.sort();
    assert_eq!(generations, [Some(2), Some(3)]);
    assert_eq!(a.1["changed"], false);
    let metrics = harness::get_text(gw.url("/metrics")).await;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("switchyard_config_reloads_total{result=\"ok\"}")),
        "{metrics}"
    );
    assert!(
        metrics.contains("switchyard_config_generation"),
        "{metrics}"
    );
    let _ = std::fs::remove_file(path);
}

#[tokio::test]
async fn breaker_state_survives_a_reload_for_an_unchanged_route() {
    let mock = MockUpstream::start().await.unwrap();
    let path = config_file("breaker");
    let models = |price: &str| {
        format!(
            "[routing]\nbreaker_failures = 1\nbreaker_cooldown_ms = 600000\n\n[models.m]\nroutes = [\"mock/down@status=503\", \"spare/up@tokens=2\"]\nfree = true\n\n[models.other]\nroutes = [\"spare/other@tokens=2\"]\ninput_price = \"{price}\"\noutput_price = \"1\"\n"
        )
    };
    let gw = start_file(&path, &config_text(&mock, &models("1"))).await;
    let ask = || gw.chat(json!({"model": "m", "messages": user("hi")}));
    let resp = ask().send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-switchyard-attempts"], "2");
    std::fs::write(&path, config_text(&mock, &models("2"))).unwrap();
    let (status, body) = reload(&gw).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(strings(&body["models"]["changed"]), ["other"]);
    let health: Value = client()
        .get(gw.url("/admin/providers"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let down = health["data"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["routes"].as_array().unwrap())
        .find(|r| r["route"] == "mock/down@status=503")
        .unwrap_or_else(|| panic!("{health}"));
    assert_eq!(down["state"], "open", "{health}");
    // The open breaker still keeps the route out: one attempt, on the healthy route.
    let tried = mock.requests().len();
    let resp = ask().send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-switchyard-provider"], "spare");
    assert_eq!(resp.headers()["x-switchyard-attempts"], "1");
    assert_eq!(mock.requests().len(), tried + 1);
    let _ = std::fs::remove_file(path);
}

#[tokio::test]
async fn sighup_reloads_the_binary_and_a_bad_file_is_logged_and_refused() {
    let mock = MockUpstream::start().await.unwrap();
    let dir = std::env::temp_dir().join(format!("sy-hup-{}-{}", std::process::id(), line!()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("switchyard.toml");
    let a = "[models.a]\nroutes = [\"mock/a@tokens=2\"]\nfree = true\n";
    std::fs::write(&path, config_text(&mock, a)).unwrap();
    let (child, key, base, output) = harness::serve_binary_with(
        &dir,
        &[
            "serve",
            "--config",
            path.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
        ],
        &[],
    )
    .await;
    let key = key.expect("a key on a fresh database");
    let pid = child.id().expect("running") as i32;
    let list = || async {
        let body: Value = client()
            .get(format!("{base}/models"))
            .bearer_auth(&key)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        body["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["id"].as_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(list().await, ["a"]);

    let ab = format!("{a}\n[models.b]\nroutes = [\"mock/b@tokens=2\"]\nfree = true\n");
    std::fs::write(&path, config_text(&mock, &ab)).unwrap();
    // SAFETY: kill(2) on our own child's pid; no memory is touched.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGHUP) }, 0);
    let deadline = tokio::time::Instant::now() + WAIT;
    while list().await != ["a", "b"] {
        assert!(tokio::time::Instant::now() < deadline, "b never appeared");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let resp = client()
        .post(format!("{base}/chat/completions"))
        .bearer_auth(&key)
        .json(&json!({"model": "b", "messages": user("hi")}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);

    std::fs::write(&path, config_text(&mock, "[models.b\n")).unwrap();
    // SAFETY: as above.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGHUP) }, 0);
    let line = models_line(&mock);
    harness::until("the refusal is logged", WAIT, || {
        output
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains("config reload refused") && l.contains(&format!("line {line}")))
    })
    .await;
    assert_eq!(list().await, ["a", "b"], "the old config keeps serving");
    drop(child);
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn check_names_the_secret_that_does_not_resolve_and_fails() {
    let dir = std::env::temp_dir();
    let secret_file = dir.join(format!("sy-check-secret-{}", std::process::id()));
    std::fs::write(&secret_file, "sk-never-printed-4242\n").unwrap();
    let path = config_file("check");
    let text = format!(
        "[providers.good]\nkind = \"openai\"\nbase_url = \"http://127.0.0.1:9/v1\"\napi_key = \"file:{}\"\n\n[providers.bad]\nkind = \"openai\"\nbase_url = \"http://127.0.0.1:9/v1\"\napi_key = \"env:SWITCHYARD_TEST_CHECK_UNSET\"\n\n[models.m]\nroutes = [\"good/m\", \"bad/m\"]\nfree = true\n",
        secret_file.display()
    );
    std::fs::write(&path, text).unwrap();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["check", "--config", path.to_str().unwrap()])
        .env_remove("SWITCHYARD_TEST_CHECK_UNSET")
        .output()
        .await
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(!out.status.success(), "{stdout}{stderr}");
    assert!(
        stderr.contains("providers.bad.api_key")
            && stderr.contains("env:SWITCHYARD_TEST_CHECK_UNSET"),
        "{stderr}"
    );
    assert!(!stderr.contains("providers.good"), "{stderr}");
    assert!(
        !stdout.contains("sk-never-printed") && !stderr.contains("sk-never-printed"),
        "a secret's value is never printed"
    );
    let _ = std::fs::remove_file(path);
    let _ = std::fs::remove_file(secret_file);
}

#[tokio::test]
async fn an_unchanged_provider_keeps_its_credential_and_a_changed_one_resolves_it_again() {
    let mock = MockUpstream::start().await.unwrap();
    let path = config_file("cmd");
    let runs = std::env::temp_dir().join(format!(
        "sy-reload-runs-{}-{}",
        std::process::id(),
        rand::random::<u32>()
    ));
    let text = |connect_ms: u64| {
        format!(
            "admin_key = \"{ADMIN}\"\ndemo_credits = \"1\"\n[providers.p]\nkind = \"openai\"\nbase_url = \"{}\"\napi_key = \"cmd:echo run >> {}; echo upstream-secret-key\"\nconnect_timeout_ms = {connect_ms}\n[models.m]\nroutes = [\"p/m@tokens=2\"]\nfree = true\n",
            mock.base_url(),
            runs.display()
        )
    };
    let gw = start_file(&path, &text(5000)).await;
    let count = || {
        std::fs::read_to_string(&runs)
            .unwrap_or_default()
            .lines()
            .count()
    };
    assert_eq!(count(), 1);
    let (status, body) = reload(&gw).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(count(), 1, "the same provider keeps its credential");
    std::fs::write(&path, text(6000)).unwrap();
    let (status, body) = reload(&gw).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(strings(&body["providers"]["changed"]), ["p"]);
    assert_eq!(
        count(),
        2,
        "a changed provider resolves its credential again"
    );
    let resp = gw
        .chat(json!({"model": "m", "messages": user("hi")}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let _ = std::fs::remove_file(path);
    let _ = std::fs::remove_file(runs);
}

#[tokio::test]
async fn a_provider_quota_changes_with_a_reload() {
    let mock = MockUpstream::start().await.unwrap();
    let path = config_file("quota");
    let text = |rpm: u64| {
        format!(
            "admin_key = \"{ADMIN}\"\ndemo_credits = \"1\"\n[providers.p]\nkind = \"openai\"\nbase_url = \"{}\"\napi_key = \"upstream-secret-key\"\nrpm = {rpm}\n[models.m]\nroutes = [\"p/m@tokens=2\"]\nfree = true\n",
            mock.base_url()
        )
    };
    let gw = start_file(&path, &text(1)).await;
    let ask = || gw.chat(json!({"model": "m", "messages": user("hi")}));
    assert_eq!(ask().send().await.unwrap().status(), 200);
    let refused = ask().send().await.unwrap();
    assert_eq!(refused.status(), 429, "one request a minute");
    std::fs::write(&path, text(1000)).unwrap();
    let (status, body) = reload(&gw).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(strings(&body["providers"]["changed"]), ["p"]);
    assert_eq!(ask().send().await.unwrap().status(), 200, "the new quota");
    assert_eq!(mock.requests().len(), 2);
    let _ = std::fs::remove_file(path);
}
