//! The official OpenAI SDKs as judges: each test starts a gateway and a mock, then runs one scenario of
//! `tests/sdk/python/conformance.py` (PyPI `openai`) or `tests/sdk/node/conformance.mjs` (npm `openai`,
//! plus the seeds' browser `fetch` readers) as a subprocess, with only the base URL and key set, as the
//! seeds' examples would be run. Also the seed's `curl -N` command. The SDKs are installed by
//! `./scripts/test` into git-ignored folders; without them these tests say SKIPPED, or fail when
//! `SWITCHYARD_REQUIRE_SDKS=1` (which `./scripts/test` sets).

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use crate::harness::{start_with_mock, TestGateway};
use crate::sdk_runner::{command, run as run_script, run_curl, Lang};

/// What the `abort` scenarios have the mock answer: long and slow enough that the stream is still
/// running when the client goes away.
const ABORT_REQUESTED_TOKENS: u32 = 1000;

/// The answer the mock gives when no `tokens` option is set: its 12 content words.
fn expected_text() -> String {
    mock_upstream::CONTENT_WORDS.concat()
}

/// Runs one scenario against `gw`; asserts it exited 0 and returns the JSON facts it printed last.
/// `None` means the SDK is not installed and the test is skipped.
async fn run(lang: Lang, scenario: &str, gw: &TestGateway) -> Option<Value> {
    let mut cmd = command(lang, "conformance", scenario)?;
    cmd.env("SWITCHYARD_BASE_URL", gw.base_url())
        .env("SWITCHYARD_API_KEY", &gw.key)
        .env("SWITCHYARD_EXPECT_TEXT", expected_text());
    run_script(cmd, &format!("{lang:?} {scenario}"), scenario).await
}

/// One scenario that needs no check beyond the script's own, apart from the text it saw.
async fn scenario(lang: Lang, name: &str) -> Option<Value> {
    let (gw, _mock) = start_with_mock("").await;
    let facts = run(lang, name, &gw).await?;
    if let Some(text) = facts.get("text") {
        assert_eq!(text.as_str(), Some(expected_text().as_str()), "{facts}");
    }
    Some(facts)
}

macro_rules! simple_scenarios {
    ($($test:ident: $lang:ident $name:literal;)*) => {
        $(
            #[tokio::test(flavor = "multi_thread")]
            async fn $test() {
                scenario(Lang::$lang, $name).await;
            }
        )*
    };
}

simple_scenarios! {
    python_stream_text: Python "stream_text";
    node_stream_text: Node "stream_text";
    python_non_stream: Python "non_stream";
    node_non_stream: Node "non_stream";
    python_stream_helper: Python "stream_helper";
    node_stream_helper: Node "stream_helper";
    python_include_usage: Python "include_usage";
    node_include_usage: Node "include_usage";
    node_fetch_reader: Node "fetch_reader";
}

async fn reasoning(lang: Lang) {
    let Some(facts) = scenario(lang, "reasoning").await else {
        return;
    };
    // `deepseek-r` routes to the mock's `deepseek-reasoner`, which thinks in its 8 reasoning words.
    assert_eq!(
        facts["reasoning"],
        mock_upstream::REASONING_WORDS.concat(),
        "{facts}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn python_reasoning() {
    reasoning(Lang::Python).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn node_reasoning() {
    reasoning(Lang::Node).await;
}

async fn bad_key(lang: Lang) {
    let (gw, mock) = start_with_mock("").await;
    let Some(facts) = run(lang, "bad_key", &gw).await else {
        return;
    };
    assert_eq!(facts["status"], 401, "{facts}");
    assert!(
        mock.requests().is_empty(),
        "a request with a wrong key reached the upstream"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn python_bad_key() {
    bad_key(Lang::Python).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn node_bad_key() {
    bad_key(Lang::Node).await;
}

async fn stream_error(lang: Lang) {
    let (gw, mock) = start_with_mock("").await;
    mock.set_options(json!({"error_after": 2, "gap_ms": 5}))
        .unwrap();
    let Some(facts) = run(lang, "stream_error", &gw).await else {
        return;
    };
    // `error_after: 2`: two content words, then the upstream's error event.
    let words = &mock_upstream::CONTENT_WORDS[..2];
    assert_eq!(facts["text"], words.concat(), "{facts}");
}

#[tokio::test(flavor = "multi_thread")]
async fn python_stream_error() {
    stream_error(Lang::Python).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn node_stream_error() {
    stream_error(Lang::Node).await;
}

/// A stream that committed early (`[routing] commit_after_ms`): the SDK reads the keep-alive
/// comments before the first chunk and then the whole answer, as from any stream.
#[tokio::test(flavor = "multi_thread")]
async fn python_reads_a_stream_committed_before_its_first_token() {
    let (gw, mock) = crate::harness::start_with_mock_top(
        "keep_alive_ms = 50",
        "[routing]\ncommit_after_ms = 20\n",
    )
    .await;
    mock.set_options(json!({"ttft_ms": 400})).unwrap();
    let Some(facts) = run(Lang::Python, "stream_text", &gw).await else {
        return;
    };
    assert_eq!(facts["text"], expected_text(), "{facts}");
    let metrics = crate::harness::get_text(gw.url("/metrics")).await;
    assert!(
        metrics.lines().any(
            |l| l.starts_with("switchyard_streams_committed_early_total") && !l.ends_with(" 0")
        ),
        "{metrics}"
    );
}

/// The client reads 3 chunks and goes away (Node: `AbortController`, Python: `stream.close()` / the
/// `with` block); the gateway must drop the upstream request at once.
async fn abort(lang: Lang) {
    let (gw, mock) = start_with_mock("").await;
    mock.set_options(json!({"tokens": ABORT_REQUESTED_TOKENS, "gap_ms": 5}))
        .unwrap();
    let Some(facts) = run(lang, "abort", &gw).await else {
        return;
    };
    assert_eq!(facts["chunks"], 3, "{facts}");
    let aborted_at_ms = facts["aborted_at_ms"]
        .as_f64()
        .unwrap_or_else(|| panic!("no abort time: {facts}"));
    let record = tokio::time::timeout(Duration::from_secs(30), mock.wait_stream_end(0))
        .await
        .expect("the upstream stream never ended");
    assert!(record.client_disconnected, "{record:?}");
    assert!(!record.completed, "{record:?}");
    assert!(
        record.tokens_written < ABORT_REQUESTED_TOKENS / 10,
        "the upstream kept producing after the client left: {record:?}"
    );
    // When the mock saw the disconnect, on the wall clock the script used for its abort time.
    let ended_ms = (SystemTime::now() - Instant::now().duration_since(record.ended_at))
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
        * 1000.0;
    let lag_ms = ended_ms - aborted_at_ms;
    // Informational only: the bound that matters is the token count above (a clock on a
    // loaded 2-core machine proves nothing); the benchmark measures latency.
    eprintln!("{lang:?} abort: the upstream ended {lag_ms:.1} ms after the abort, {record:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn python_abort() {
    abort(Lang::Python).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn node_abort() {
    abort(Lang::Node).await;
}

/// Seed 003's `curl -N` command, run as written apart from URL, key and model.
#[tokio::test(flavor = "multi_thread")]
async fn curl_n_streams_data_lines_done_and_the_cost_comment() {
    let (gw, _mock) = start_with_mock("").await;
    let body = r#"{
    "model": "m",
    "stream": true,
    "messages": [
      { "role": "user", "content": "Write a short release checklist" }
    ]
  }"#;
    let mut cmd = tokio::process::Command::new("curl");
    cmd.args(["-N", "-X", "POST"])
        .arg(gw.url("/api/v1/chat/completions"))
        .args(["-H", "Content-Type: application/json"])
        .args(["-H", &format!("Authorization: Bearer {}", gw.key)])
        .args(["-d", body]);
    let Some(stdout) = run_curl(cmd).await else {
        return;
    };
    let lines: Vec<&str> = stdout.lines().filter(|l| !l.is_empty()).collect();
    let data: Vec<&str> = lines
        .iter()
        .filter_map(|l| l.strip_prefix("data: "))
        .collect();
    assert!(data.len() > 2, "too few data lines:\n{stdout}");
    let done = data.iter().position(|d| *d == "[DONE]");
    assert_eq!(
        done,
        Some(data.len() - 1),
        "[DONE] is not the last event:\n{stdout}"
    );
    let text: String = data[..data.len() - 1]
        .iter()
        .map(|d| serde_json::from_str::<Value>(d).unwrap_or_else(|e| panic!("{e}: {d}")))
        .filter_map(|c| {
            c.pointer("/choices/0/delta/content")?
                .as_str()
                .map(str::to_owned)
        })
        .collect();
    assert_eq!(text, expected_text());
    let last = lines.last().copied().unwrap_or("");
    let comment: Value = last
        .strip_prefix(": ")
        .and_then(|c| serde_json::from_str(c).ok())
        .unwrap_or_else(|| panic!("the last line is not the cost comment:\n{stdout}"));
    for field in ["cost", "input_price", "output_price"] {
        assert!(comment[field].is_string(), "{field} in {comment}");
    }
    assert!(
        comment["prompt_tokens"].is_u64() && comment["completion_tokens"] == 12,
        "{comment}"
    );
}
