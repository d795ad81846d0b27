//! `switchyard bench`, run as a user would (the built binary, `--json`): against `bench-target`
//! (every request ok, ordered percentiles), the mock's streams (events per stream, time to first
//! token, gaps), streams cancelled with `--abort-after`, a gateway with a key (the ledger holds one
//! entry per request the report counts) and URLs that cannot work (a clear error, no panic).

use serde_json::Value;
use tokio::io::AsyncBufReadExt;

use crate::harness::{self, books, parse_sse, Sse};

fn switchyard() -> tokio::process::Command {
    let mut c = tokio::process::Command::new(env!("CARGO_BIN_EXE_switchyard"));
    c.env_remove("SWITCHYARD_API_KEY").kill_on_drop(true);
    c
}

/// Runs `bench ARGS --json`: (success, the report if stdout was one JSON object, stderr).
async fn bench(args: &[&str]) -> (bool, Option<Value>, String) {
    let out = switchyard()
        .arg("bench")
        .args(args)
        .arg("--json")
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    (
        out.status.success(),
        serde_json::from_str(stdout.trim()).ok(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Starts `bench-target` with `args`; returns the process (killed on drop) and its base URL.
async fn bench_target(args: &[&str]) -> (tokio::process::Child, String) {
    let mut child = switchyard()
        .args(["bench-target", "--listen", "127.0.0.1:0"])
        .args(args)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let line = lines
        .next_line()
        .await
        .unwrap()
        .expect("bench-target prints its address");
    let base = line
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"));
    (child, format!("{base}/v1"))
}

/// The summary's figures are in order and as many as `count`.
fn ordered(summary: &Value, count: u64) {
    assert_eq!(summary["count"], count, "{summary}");
    let f = |k: &str| {
        summary[k]
            .as_f64()
            .unwrap_or_else(|| panic!("{k} in {summary}"))
    };
    assert!(f("p50") > 0.0, "{summary}");
    assert!(
        f("p50") <= f("p90")
            && f("p90") <= f("p99")
            && f("p99") <= f("p999")
            && f("p999") <= f("max"),
        "{summary}"
    );
}

fn no_errors(report: &Value) {
    assert_eq!(report["errors"], serde_json::json!({}), "{report}");
}

#[tokio::test]
async fn bench_target_answers_every_request_and_percentiles_are_ordered() {
    let (_target, url) = bench_target(&[]).await;
    let (ok, report, err) = bench(&[&url, "-n", "2000", "-c", "8"]).await;
    assert!(ok, "{err}");
    let r = report.expect("stdout is one JSON report");
    assert_eq!(r["requests"], 2000, "{r}");
    assert_eq!(r["ok"], 2000, "{r}");
    no_errors(&r);
    assert_eq!(r["stream"], false);
    assert_eq!(r["concurrency"], 8);
    assert_eq!(r["rate"], Value::Null);
    assert!(r["rps"].as_f64().unwrap() > 0.0, "{r}");
    assert!(r["duration_s"].as_f64().unwrap() > 0.0, "{r}");
    assert!(r["client_cpu_s"].as_f64().unwrap() > 0.0, "{r}");
    // 2000 fixed answers of a few hundred bytes each.
    assert!(r["bytes_received"].as_u64().unwrap() > 2000 * 300, "{r}");
    ordered(&r["latency_ms"], 2000);
    assert_eq!(r["ttft_ms"], Value::Null);
    assert_eq!(r["gap_ms"], Value::Null);
    let curve = r["curves"]["latency_ms"].as_array().unwrap();
    assert_eq!(curve.len(), 104, "0..=99, 99.5, 99.9, 99.99, 100");
    assert_eq!(curve[50][0], 50.0);
    assert_eq!(curve[50][1], r["latency_ms"]["p50"]);
    assert_eq!(curve[103][1], r["latency_ms"]["max"]);
    let values: Vec<f64> = curve.iter().map(|p| p[1].as_f64().unwrap()).collect();
    assert!(values.windows(2).all(|w| w[0] <= w[1]), "{values:?}");
}

#[tokio::test]
async fn server_pid_adds_the_servers_cpu_per_request() {
    let (target, url) = bench_target(&[]).await;
    let pid = target.id().expect("bench-target runs").to_string();
    let (ok, report, err) = bench(&[&url, "-d", "1", "-c", "8", "--server-pid", &pid]).await;
    assert!(ok, "{err}");
    let r = report.expect("stdout is one JSON report");
    no_errors(&r);
    // A second of answers costs the server more than one clock tick (10 ms).
    let server = r["server_cpu_s"]
        .as_f64()
        .expect("server_cpu_s is reported");
    assert!(server > 0.0, "{r}");
    let per = r["server_cpu_us_per_request"].as_f64().unwrap();
    let ok_requests = r["ok"].as_f64().unwrap();
    assert!((per - server * 1e6 / ok_requests).abs() < 0.1, "{r}");
    assert_eq!(
        r["server_cpu_us_per_event"],
        Value::Null,
        "no stream, no events"
    );
    let (_, without, _) = bench(&[&url, "-n", "10", "-c", "1"]).await;
    assert_eq!(without.unwrap()["server_cpu_s"], Value::Null);
}

/// The mock's stream, read once by an ordinary client: how many events it has.
async fn events_of_one_stream(base: &str, model: &str) -> u64 {
    let body = harness::client()
        .post(format!("{base}/chat/completions"))
        .bearer_auth("k")
        .json(&serde_json::json!({"model": model, "messages": harness::user("hi"), "stream": true}))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let items = parse_sse(&body);
    assert!(items.contains(&Sse::Done), "{body}");
    items
        .iter()
        .filter(|i| !matches!(i, Sse::Comment(_)))
        .count() as u64
}

#[tokio::test]
async fn streams_of_the_mock_give_events_ttft_and_gaps() {
    let mock = mock_upstream::MockUpstream::start().await.unwrap();
    let base = mock.base_url();
    let model = "m@tokens=20,gap_ms=2";
    let per_stream = events_of_one_stream(&base, model).await;
    let (ok, report, err) = bench(&[
        &base, "--key", "k", "--model", model, "--stream", "-n", "40", "-c", "4",
    ])
    .await;
    assert!(ok, "{err}");
    let r = report.unwrap();
    assert_eq!(r["ok"], 40, "{r}");
    no_errors(&r);
    assert_eq!(r["stream"], true);
    assert_eq!(r["incomplete_streams"], 0);
    assert_eq!(
        r["events_per_stream"],
        serde_json::json!({"min": per_stream, "max": per_stream, "mean": per_stream as f64}),
        "{r}"
    );
    assert_eq!(r["events"], 40 * per_stream);
    // One first token and 19 gaps per stream of 20 tokens.
    ordered(&r["ttft_ms"], 40);
    ordered(&r["gap_ms"], 40 * 19);
    assert!(
        r["gap_ms"]["p50"].as_f64().unwrap() >= 1.9,
        "the mock waits 2 ms: {r}"
    );
    assert!(
        r["latency_ms"]["p50"].as_f64().unwrap()
            >= r["ttft_ms"]["p50"].as_f64().unwrap() + 19.0 * 1.9,
        "{r}"
    );
    assert_eq!(r["curves"]["ttft_ms"].as_array().unwrap().len(), 104);
}

#[tokio::test]
async fn abort_after_cancels_each_stream_and_reconnects() {
    let mock = mock_upstream::MockUpstream::start().await.unwrap();
    let base = mock.base_url();
    // Each stream would take 4 s; the bench leaves after the third token.
    let (ok, report, err) = bench(&[
        &base,
        "--key",
        "k",
        "--model",
        "m@tokens=200,gap_ms=20",
        "--stream",
        "--abort-after",
        "3",
        "-n",
        "10",
        "-c",
        "5",
    ])
    .await;
    assert!(ok, "{err}");
    let r = report.unwrap();
    assert_eq!(r["requests"], 10, "{r}");
    assert_eq!(r["ok"], 10, "a client cancel is not a server failure: {r}");
    assert_eq!(r["aborted"], 10, "{r}");
    no_errors(&r);
    assert_eq!(r["incomplete_streams"], 0);
    assert!(r["latency_ms"]["max"].as_f64().unwrap() < 2_000.0, "{r}");
    assert_eq!(mock.requests().len(), 10);
    for i in 0..10 {
        let s = mock.state().wait_stream_end(i).await;
        assert!(s.client_disconnected && !s.completed, "stream {i}: {s:?}");
        assert!(s.tokens_written < 200, "stream {i}: {s:?}");
    }
}

#[tokio::test]
async fn a_gateway_files_one_ledger_entry_per_request_the_report_counts() {
    let (gw, _mock) = harness::start_with_mock("").await;
    let base = gw.base_url();
    let (ok, report, err) = bench(&[
        &base, "--key", &gw.key, "--model", "m", "-n", "120", "-c", "6",
    ])
    .await;
    assert!(ok, "{err}");
    let plain = report.unwrap();
    assert_eq!(plain["ok"], 120, "{plain}");
    no_errors(&plain);
    // The key comes from the environment as well.
    let out = switchyard()
        .env("SWITCHYARD_API_KEY", &gw.key)
        .args([
            "bench", &base, "--model", "m", "--stream", "-n", "40", "-c", "4", "--json",
        ])
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let streamed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(streamed["ok"], 40, "{streamed}");
    no_errors(&streamed);
    assert_eq!(streamed["incomplete_streams"], 0);
    assert!(!String::from_utf8_lossy(&out.stdout).contains(&gw.key));
    let (entries, _) = books(&gw.gw.ledger, &gw.key_id).await;
    assert_eq!(entries.len(), 160);
    let streams = entries
        .values()
        .filter(|e| e.request_type.as_deref() == Some("chat.stream"))
        .count();
    assert_eq!(streams, 40);
    assert!(entries.values().all(|e| e.status == Some(200)));
}

#[tokio::test]
async fn urls_that_cannot_work_are_clear_errors() {
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let nothing_there = format!("http://{closed}/v1");
    for (url, words) in [
        ("not a url", "not a URL"),
        ("https://127.0.0.1:9/v1", "only http://"),
        (nothing_there.as_str(), "cannot connect"),
    ] {
        let (ok, report, err) = bench(&[url, "-n", "1"]).await;
        assert!(!ok && report.is_none(), "{url}");
        assert!(err.contains(words), "{url}: {err}");
        assert!(!err.contains("panicked"), "{url}: {err}");
    }
}
