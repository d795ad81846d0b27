//! Billing end to end, compared with what the mock upstream itself counted: every way a request
//! can end (completed, cancelled by the client, upstream failure before any content, failure
//! mid-stream), prices with cached and reasoning tokens, the worst-case hold under 50 concurrent
//! requests, budgets, the settlement guard under a panic, `GET /v1/key`, and a usage entry that
//! survives `kill -9` of a real `switchyard` process.

use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

use futures_util::StreamExt;
use rust_decimal::Decimal;
use serde_json::{json, Value};
use switchyard::auth;
use switchyard::relay::admission;
use switchyard::store::ledger::{Budget, BudgetPeriod, Nanos, NewKey, UsageEntryRow};
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::harness::{
    self, data_events, joined, parse_sse, released, request_id, start_with_mock, user, Sse,
    TestGateway,
};

const WAIT: Duration = Duration::from_secs(20);

async fn entry(gw: &TestGateway, request_id: &str) -> UsageEntryRow {
    gw.gw
        .ledger
        .wait_for_entry(request_id, WAIT)
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("no ledger entry for {request_id}"))
}

fn usd(n: &str) -> Decimal {
    n.parse().unwrap()
}

/// USD for `tokens` at `price` per million.
fn at(tokens: i64, price: &str) -> Decimal {
    Decimal::from(tokens) * usd(price) / Decimal::from(1_000_000)
}

/// Streams a request to its end; returns the request id and the SSE items.
async fn stream(gw: &TestGateway, body: Value) -> (String, Vec<Sse>) {
    let resp = gw.chat(body).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let id = request_id(&resp);
    (id, parse_sse(&resp.text().await.unwrap()))
}

fn last_usage(items: &[Sse]) -> Value {
    data_events(items)
        .into_iter()
        .rev()
        .find_map(|e| e.get("usage").cloned())
        .expect("a chunk with usage")
}

/// Reads a stream until `n` content chunks arrived, then hangs up. Returns the request id and
/// the content received.
async fn read_then_hang_up(gw: &TestGateway, body: Value, n: usize) -> (String, String) {
    let resp = gw.chat(body).send().await.unwrap();
    let id = request_id(&resp);
    let mut frames = resp.bytes_stream();
    let (mut buf, mut got) = (String::new(), 0);
    while got < n {
        let frame = frames.next().await.unwrap().unwrap();
        buf.push_str(&String::from_utf8_lossy(&frame));
        got = joined(&parse_sse(&buf), "content")
            .split_whitespace()
            .count();
    }
    drop(frames);
    (id, joined(&parse_sse(&buf), "content"))
}

#[tokio::test]
async fn completed_stream_bills_the_upstream_usage() {
    let (gw, mock) = start_with_mock("").await;
    mock.set_options(json!({"tokens": 20})).unwrap();
    let (id, items) = stream(
        &gw,
        json!({"model": "m", "stream": true, "messages": user("hi")}),
    )
    .await;
    let record = mock.wait_stream_end(0).await;
    let usage = last_usage(&items);
    let e = entry(&gw, &id).await;
    assert_eq!(e.completion_tokens, i64::from(record.tokens_written));
    assert_eq!(e.completion_tokens, 20);
    assert_eq!(usage["completion_tokens"], 20);
    assert_eq!(json!(e.prompt_tokens), usage["prompt_tokens"]);
    assert_eq!(e.token_source, "provider_reported");
    assert_eq!((e.end_reason.as_str(), e.stream), ("stop", true));
    assert_eq!(e.cost.to_string(), usage["cost"].as_str().unwrap());
    assert_eq!(
        e.cost.to_usd(),
        at(e.prompt_tokens, "2.50") + at(20, "10.00")
    );
    assert_eq!(
        (e.requested_model.as_str(), e.served_model.as_deref()),
        ("m", Some("m"))
    );
    assert_eq!((e.provider.as_deref(), e.attempts), (Some("mock"), 1));
    assert!(e.ttft_ms.is_some() && e.duration_ms >= e.ttft_ms.unwrap());
    assert!(e.finished_at.unwrap() >= e.started_at.unwrap());
}

#[tokio::test]
async fn completed_json_answer_bills_the_upstream_usage() {
    let (gw, mock) = start_with_mock("").await;
    mock.set_options(json!({"tokens": 7})).unwrap();
    let resp = gw
        .chat(json!({"model": "m", "messages": user("hi")}))
        .send()
        .await
        .unwrap();
    let id = request_id(&resp);
    let body: Value = resp.json().await.unwrap();
    let e = entry(&gw, &id).await;
    assert_eq!(e.completion_tokens, 7);
    assert!(!e.stream);
    assert_eq!(e.cost.to_string(), body["usage"]["cost"].as_str().unwrap());
}

#[tokio::test]
async fn reasoning_bills_as_output_and_cached_prompt_at_the_cached_price() {
    let extra = r#"
[models.cached]
routes = ["mock/m"]
input_price = "2.00"
output_price = "8.00"
cached_input_price = "0.50"
"#;
    let (gw, mock) = start_with_mock(extra).await;
    mock.set_options(json!({"tokens": 10, "prompt_tokens": 1000, "cached_tokens": 400}))
        .unwrap();
    let (id, items) = stream(
        &gw,
        json!({"model": "cached", "stream": true, "messages": user("hi")}),
    )
    .await;
    let e = entry(&gw, &id).await;
    assert_eq!(
        (e.prompt_tokens, e.cached_tokens, e.completion_tokens),
        (1000, 400, 10)
    );
    let expected = at(600, "2.00") + at(400, "0.50") + at(10, "8.00");
    assert_eq!(e.cost.to_usd(), expected);
    assert_eq!(last_usage(&items)["cost"], expected.normalize().to_string());

    mock.set_options(json!({"tokens": 6, "reasoning": 9}))
        .unwrap();
    let (id, items) = stream(
        &gw,
        json!({"model": "deepseek-r", "stream": true, "messages": user("think")}),
    )
    .await;
    let record = mock.wait_stream_end(1).await;
    let e = entry(&gw, &id).await;
    assert_eq!(e.reasoning_tokens, 9);
    assert_eq!(e.completion_tokens, i64::from(record.tokens_written));
    assert_eq!(
        e.completion_tokens, 15,
        "reasoning is part of the completion"
    );
    assert_eq!(
        e.cost.to_usd(),
        at(e.prompt_tokens, "0.55") + at(15, "2.19")
    );
    assert_eq!(last_usage(&items)["cost"], e.cost.to_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_stream_bills_what_was_delivered() {
    let (gw, mock) = start_with_mock("").await;
    mock.set_options(json!({"tokens": 500, "gap_ms": 20}))
        .unwrap();
    let (id, received) = read_then_hang_up(
        &gw,
        json!({"model": "m", "stream": true, "messages": user("write a long essay")}),
        5,
    )
    .await;
    let record = mock.wait_stream_end(0).await;
    assert!(record.client_disconnected);
    let e = entry(&gw, &id).await;
    assert_eq!(e.end_reason, "cancelled");
    assert_eq!(e.token_source, "estimated");
    let written = i64::from(record.tokens_written);
    // What was delivered, counted with the tokenizer: the mock's words are one token each; the
    // chunk in flight when the client left may or may not have been forwarded.
    assert!(
        (e.completion_tokens - written).abs() <= 1,
        "ledger {} vs mock {written}",
        e.completion_tokens
    );
    assert!(e.completion_tokens >= received.split_whitespace().count() as i64);
    assert!(e.prompt_tokens > 0);
    assert_eq!(
        e.cost.to_usd(),
        at(e.prompt_tokens, "2.50") + at(e.completion_tokens, "10.00")
    );
    let key = gw.gw.ledger.key(&gw.key_id).await.unwrap().unwrap();
    assert_eq!(key.spent, e.cost);
    released(&gw).await;
}

#[tokio::test]
async fn upstream_failure_before_any_content_costs_nothing() {
    let (gw, mock) = start_with_mock("").await;
    mock.set_options(json!({"status": 500})).unwrap();
    let resp = gw
        .chat(json!({"model": "m", "stream": true, "messages": user("hi")}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 502);
    let id = request_id(&resp);
    let e = entry(&gw, &id).await;
    assert_eq!((e.end_reason.as_str(), e.cost), ("error", Nanos::ZERO));
    assert_eq!((e.prompt_tokens, e.completion_tokens), (0, 0));
    let key = gw.gw.ledger.key(&gw.key_id).await.unwrap().unwrap();
    assert_eq!(key.balance.to_usd(), usd("100"));
    assert_eq!(gw.gw.ledger.account_reserved(&gw.key_id), Some(Nanos::ZERO));
}

#[tokio::test]
async fn mid_stream_failure_bills_what_was_delivered() {
    let (gw, mock) = start_with_mock("").await;
    for (i, failure) in [json!({"error_after": 5}), json!({"reset_after": 4})]
        .into_iter()
        .enumerate()
    {
        let mut opts = failure.clone();
        opts["tokens"] = json!(30);
        mock.set_options(opts).unwrap();
        let (id, items) = stream(
            &gw,
            json!({"model": "m", "stream": true, "messages": user("hi")}),
        )
        .await;
        assert!(items.contains(&Sse::Done), "{failure}: {items:?}");
        let record = mock.wait_stream_end(i).await;
        let e = entry(&gw, &id).await;
        assert_eq!(e.end_reason, "error", "{failure}");
        assert_eq!(
            e.completion_tokens,
            i64::from(record.tokens_written),
            "{failure}"
        );
        assert_eq!(
            e.completion_tokens,
            joined(&items, "content").split_whitespace().count() as i64
        );
        assert!(e.cost.0 > 0);
    }
}

/// For the issue's note: one streamed and one cancelled request, the ledger entry next to the
/// mock's own count.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ledger_entries_next_to_the_mock_count() {
    let (gw, mock) = start_with_mock("").await;
    mock.set_options(json!({"tokens": 24})).unwrap();
    let (streamed, _) = stream(
        &gw,
        json!({"model": "m", "stream": true, "messages": user("hi")}),
    )
    .await;
    mock.set_options(json!({"tokens": 500, "gap_ms": 20}))
        .unwrap();
    let (cancelled, _) = read_then_hang_up(
        &gw,
        json!({"model": "m", "stream": true, "messages": user("write a long essay")}),
        8,
    )
    .await;
    println!("request   | ledger: prompt completion reasoning source            end        cost (USD)   | mock: tokens_written completed disconnected");
    for (i, id) in [streamed, cancelled].iter().enumerate() {
        let record = mock.wait_stream_end(i).await;
        let e = entry(&gw, id).await;
        println!(
            "{:<9} | {:>14} {:>10} {:>9} {:<17} {:<10} {:<12} | {:>20} {:>9} {:>12}",
            if i == 0 { "streamed" } else { "cancelled" },
            e.prompt_tokens,
            e.completion_tokens,
            e.reasoning_tokens,
            e.token_source,
            e.end_reason,
            e.cost,
            record.tokens_written,
            record.completed,
            record.client_disconnected
        );
        let diff = (e.completion_tokens - i64::from(record.tokens_written)).abs();
        if i == 0 {
            assert_eq!(diff, 0);
            assert_eq!(e.end_reason, "stop");
        } else {
            assert!(diff <= 1, "cancelled: ledger and mock differ by {diff}");
            assert_eq!(e.end_reason, "cancelled");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_requests_on_a_key_that_affords_ten() {
    // Hold per request: 1000 output tokens at 1000 USD/M = 1 USD; the key has 10 USD.
    let extra = r#"
[models.pricey]
routes = ["mock/m"]
input_price = "0"
output_price = "1000"
max_output_tokens = 1000
"#;
    let (gw, mock) = start_with_mock(extra).await;
    let (k, key) = auth::create_key(
        &gw.gw.ledger,
        &NewKey {
            name: "ten".into(),
            credits: Nanos::from_usd(usd("10")).unwrap(),
            ..NewKey::default()
        },
    )
    .await
    .unwrap();
    let client = harness::client();
    // Every admitted request stays open for 2 s, so all 50 are decided while 10 holds are open.
    mock.set_options(json!({"tokens": 12, "ttft_ms": 2000}))
        .unwrap();
    let body = json!({"model": "pricey", "stream": true, "messages": user("hi")});
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let req = client
                .post(gw.url("/v1/chat/completions"))
                .bearer_auth(&key)
                .json(&body);
            tokio::spawn(async move {
                let resp = req.send().await.unwrap();
                let status = resp.status().as_u16();
                let body = resp.text().await.unwrap();
                (status, body)
            })
        })
        .collect();
    let mut ok = 0;
    let mut refused = 0;
    for t in tasks {
        let (status, body) = t.await.unwrap();
        match status {
            200 => {
                assert!(body.contains("data: [DONE]"));
                ok += 1;
            }
            402 => {
                let v: Value = serde_json::from_str(&body).unwrap();
                assert_eq!(v["error"]["code"], "insufficient_quota");
                assert_eq!(v["error"]["type"], "insufficient_quota");
                refused += 1;
            }
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert_eq!((ok, refused), (10, 40));
    let key_now = gw.gw.ledger.key(&k.id).await.unwrap().unwrap();
    // 10 × 12 tokens × 1000 USD/M = 0.12 USD spent.
    assert_eq!(key_now.spent.to_usd(), usd("0.12"));
    assert_eq!(key_now.balance.to_usd(), usd("9.88"));
    assert!(key_now.balance.0 >= 0);
    assert_eq!(gw.gw.ledger.account_reserved(&k.id), Some(Nanos::ZERO));
}

#[tokio::test]
async fn a_daily_budget_refuses_with_402_once_spent() {
    let extra = r#"
[models.pricey]
routes = ["mock/m"]
input_price = "0"
output_price = "1000"
max_output_tokens = 100
"#;
    let (gw, _mock) = start_with_mock(extra).await;
    // Hold 0.1 USD per request, actual 12 tokens = 0.012 USD; budget 0.15 USD a day.
    let (_, key) = auth::create_key(
        &gw.gw.ledger,
        &NewKey {
            name: "budget".into(),
            credits: Nanos::from_usd(usd("50")).unwrap(),
            budget: Some(Budget {
                limit: Nanos::from_usd(usd("0.15")).unwrap(),
                period: BudgetPeriod::Day,
            }),
            ..NewKey::default()
        },
    )
    .await
    .unwrap();
    let send = || {
        harness::client()
            .post(gw.url("/v1/chat/completions"))
            .bearer_auth(&key)
            .json(&json!({"model": "pricey", "messages": user("hi")}))
            .send()
    };
    // Spend + the 0.1 USD hold must stay within 0.15: admitted while the spend is <= 0.05,
    // i.e. five requests (0, 0.012, …, 0.048 spent before each), then 402.
    let mut statuses = vec![];
    for _ in 0..6 {
        statuses.push(send().await.unwrap().status().as_u16());
    }
    assert_eq!(statuses, vec![200, 200, 200, 200, 200, 402]);
    let resp = send().await.unwrap();
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["code"], "insufficient_quota");
    assert!(v["error"]["message"].as_str().unwrap().contains("day"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_handler_task_still_settles_exactly_once() {
    let (gw, _mock) = start_with_mock("").await;
    let caller = gw.gw.auth.authenticate(Some(&gw.key)).await.unwrap();
    let model = admission::model_for(&gw.gw, &caller, "m").unwrap();
    let req = switchyard_wire::openai::ChatRequest::parse(
        json!({"model": "m", "stream": true, "messages": user("hi")})
            .to_string()
            .as_bytes(),
    )
    .unwrap();
    let settlement = admission::admit(
        &gw.gw,
        &caller,
        &model,
        "req_panicking".into(),
        Arc::new(req),
        true,
        Instant::now(),
    )
    .await
    .unwrap();
    assert!(gw.gw.ledger.account_reserved(&gw.key_id).unwrap().0 > 0);
    let task = tokio::spawn(async move {
        let mut s = settlement;
        s.meter
            .chat_value(&json!({"choices": [{"delta": {"content": " the quick brown"}}]}));
        panic!("a bug in a handler");
    });
    assert!(task.await.unwrap_err().is_panic());
    let e = entry(&gw, "req_panicking").await;
    assert_eq!(e.end_reason, "cancelled");
    assert_eq!(e.completion_tokens, 3);
    assert_eq!(
        e.cost.to_usd(),
        at(e.prompt_tokens, "2.50") + at(3, "10.00")
    );
    let key = gw.gw.ledger.key(&gw.key_id).await.unwrap().unwrap();
    assert_eq!(key.spent, e.cost, "charged exactly once");
    released(&gw).await;
}

#[tokio::test]
async fn v1_key_shows_the_caller_its_own_key_under_every_prefix() {
    let (gw, _mock) = start_with_mock("").await;
    let (_, _) = stream(
        &gw,
        json!({"model": "m", "stream": true, "messages": user("hi")}),
    )
    .await;
    let spent = gw.gw.ledger.key(&gw.key_id).await.unwrap().unwrap().spent;
    for prefix in ["/v1", "/api/v1", "/v1/llm"] {
        let v: Value = harness::client()
            .get(gw.url(&format!("{prefix}/key")))
            .bearer_auth(&gw.key)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(v["id"], gw.key_id);
        assert_eq!(v["name"], "default");
        assert_eq!(v["spend"], spent.to_string());
        assert_eq!(
            v["balance"],
            (usd("100") - spent.to_usd()).normalize().to_string()
        );
        assert!(v["limits"].is_object());
        let models: Vec<&str> = v["models"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m.as_str().unwrap())
            .collect();
        assert!(models.contains(&"m") && models.contains(&"deepseek-r"));
        assert!(!v.to_string().contains(&gw.key));
    }
    let resp = harness::client()
        .get(gw.url("/v1/key"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
}

/// After `[DONE]` reached the client, `kill -9` of the gateway cannot lose the entry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_entry_survives_kill_9_once_done_was_received() {
    let mock = mock_upstream::MockUpstream::start().await.unwrap();
    let dir = std::env::temp_dir().join(format!("sy-kill9-{}-{}", std::process::id(), line!()));
    std::fs::create_dir_all(&dir).unwrap();
    let db = dir.join("ledger.db");
    let config = dir.join("switchyard.toml");
    std::fs::write(
        &config,
        format!(
            "database = \"sqlite://{}\"\n{}",
            db.display(),
            harness::mock_config(&mock, "")
        ),
    )
    .unwrap();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(&config)
        .env_remove("SWITCHYARD_DATABASE")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let (mut key, mut base) = (None, None);
    while let Some(line) = lines.next_line().await.unwrap() {
        if line.starts_with("sk-sy-") {
            key = Some(line);
        } else if let Some(url) = line.strip_prefix("Switchyard listening on ") {
            base = Some(url.to_owned());
            break;
        }
    }
    let (key, base) = (key.expect("key printed"), base.expect("address printed"));
    mock.set_options(json!({"tokens": 9})).unwrap();
    let resp = harness::client()
        .post(format!("{base}/chat/completions"))
        .bearer_auth(&key)
        .json(&json!({"model": "m", "stream": true, "messages": user("hi")}))
        .send()
        .await
        .unwrap();
    let id = request_id(&resp);
    let mut frames = resp.bytes_stream();
    let mut buf = String::new();
    while !buf.contains("data: [DONE]") {
        let frame = frames.next().await.expect("more frames").unwrap();
        buf.push_str(&String::from_utf8_lossy(&frame));
    }
    // SIGKILL, no chance to flush anything.
    child.start_kill().unwrap();
    child.wait().await.unwrap();
    drop(frames);
    let ledger = switchyard::store::ledger::Ledger::connect(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    let e = ledger
        .entry(&id)
        .await
        .unwrap()
        .expect("entry survived kill -9");
    assert_eq!((e.completion_tokens, e.end_reason.as_str()), (9, "stop"));
    assert!(e.cost.0 > 0);
    ledger.close().await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn switchyard_usage_reports_spend_by_key_model_and_day() {
    let (gw, _mock) = start_with_mock("").await;
    for model in ["m", "m", "deepseek-r"] {
        stream(
            &gw,
            json!({"model": model, "stream": true, "messages": user("hi")}),
        )
        .await;
    }
    let spent = gw.gw.ledger.key(&gw.key_id).await.unwrap().unwrap().spent;
    let db = format!("sqlite://{}", gw.db_path.display());
    let run = |args: Vec<&str>| {
        let db = db.clone();
        let args: Vec<String> = args.into_iter().map(str::to_owned).collect();
        async move {
            let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_switchyard"))
                .args(&args)
                .args(["--database", &db])
                .output()
                .await
                .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8(out.stdout).unwrap()
        }
    };
    let by_model: Value =
        serde_json::from_str(&run(vec!["usage", "--by", "model", "--json"]).await).unwrap();
    let groups: Vec<(&str, i64)> = by_model
        .as_array()
        .unwrap()
        .iter()
        .map(|g| {
            (
                g["group"].as_str().unwrap(),
                g["requests"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(groups, vec![("deepseek-r", 1), ("m", 2)]);
    let by_key: Value =
        serde_json::from_str(&run(vec!["usage", "--by", "key", "--since", "1h", "--json"]).await)
            .unwrap();
    assert_eq!(by_key[0]["group"], gw.key_id);
    assert_eq!(by_key[0]["cost"], spent.to_string());
    let table = run(vec!["usage", "--by", "day"]).await;
    assert!(
        table.contains("TOTAL") && table.contains(&spent.to_string()),
        "{table}"
    );
    let none: Value = serde_json::from_str(
        &run(vec![
            "usage",
            "--by",
            "model",
            "--since",
            "2000-01-01",
            "--until",
            "2000-01-02",
            "--json",
        ])
        .await,
    )
    .unwrap();
    assert_eq!(none, json!([]));
}

#[tokio::test]
async fn keys_create_takes_budget_expiry_and_metadata() {
    let db = format!("sqlite://{}", harness::temp_db().display());
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args([
            "keys",
            "create",
            "--name",
            "ops",
            "--credits",
            "3",
            "--rpm",
            "10",
            "--models",
            "m,gpt-4o",
            "--budget",
            "0.5",
            "--budget-period",
            "day",
            "--expires-in",
            "30d",
            "--metadata",
            r#"{"team":"ops"}"#,
            "--json",
            "--database",
            &db,
        ])
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let created: Value = serde_json::from_slice(&out.stdout).unwrap();
    let ledger = switchyard::store::ledger::Ledger::connect(&db)
        .await
        .unwrap();
    let k = ledger
        .key(created["id"].as_str().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(k.balance.to_usd(), usd("3"));
    assert_eq!(k.rpm, Some(10));
    assert_eq!(k.models, Some(vec!["m".to_owned(), "gpt-4o".to_owned()]));
    let budget = k.budget.unwrap();
    assert_eq!(
        (budget.limit.to_usd(), budget.period),
        (usd("0.5"), BudgetPeriod::Day)
    );
    let in_30d = switchyard::store::ledger::now_ms() + 30 * 86_400_000;
    assert!((k.expires_at.unwrap() - in_30d).abs() < 60_000);
    assert_eq!(k.metadata, Some(json!({"team": "ops"})));
    ledger.close().await;
    let bad = tokio::process::Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args([
            "keys",
            "create",
            "--name",
            "x",
            "--budget-period",
            "week",
            "--database",
            &db,
        ])
        .output()
        .await
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("day or month"));
}
