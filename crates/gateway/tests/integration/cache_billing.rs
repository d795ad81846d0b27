//! Prompt-cache billing against the providers' own price sheets: recorded transcripts that report
//! cache reads and writes, played by the mock, are billed exactly what the sheet gives for that
//! usage (Anthropic's 5-minute and 1-hour writes apart), whichever API the client asked in; the
//! client is told that cost, and `/v1/key/usage` shows the hit ratio and what the cache saved.
//!
//! Anthropic's recorded answers report no cache use (the recordings are single short turns), so
//! their usage counters are set to a Claude Code turn's (20,000 read, 3,000 written, 2,000 of
//! them for an hour); the DeepSeek and xAI recordings report their cache hits as they are.

use std::time::Duration;

use serde_json::{json, Value};
use switchyard::store::ledger::Nanos;

use crate::harness::{self, TestGateway};
use crate::messages::real_fixtures;

const WAIT: Duration = Duration::from_secs(20);

/// Nano-dollars per token of a price in USD per million tokens, written in thousandths of a
/// dollar (`$3` = 3000): the sheets' prices are whole in that unit.
fn at(tokens: u64, milli_usd_per_million: u64) -> i64 {
    (tokens * milli_usd_per_million) as i64
}

/// The last `usage` object the transcript's data lines carry.
fn last_usage(transcript: &str) -> Value {
    transcript
        .lines()
        .rev()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .find_map(|v| v.get("usage").filter(|u| u.is_object()).cloned())
        .expect("the transcript reports usage")
}

/// A recorded Anthropic answer with a Claude Code turn's cache counters.
fn with_claude_code_cache(recorded: &str) -> String {
    let edited = recorded
        .replace(
            r#""cache_creation_input_tokens":0,"cache_read_input_tokens":0,"cache_creation":{"ephemeral_5m_input_tokens":0,"ephemeral_1h_input_tokens":0}"#,
            r#""cache_creation_input_tokens":3000,"cache_read_input_tokens":20000,"cache_creation":{"ephemeral_5m_input_tokens":1000,"ephemeral_1h_input_tokens":2000}"#,
        )
        .replace(
            r#""cache_creation_input_tokens":0,"cache_read_input_tokens":0"#,
            r#""cache_creation_input_tokens":3000,"cache_read_input_tokens":20000"#,
        );
    assert_ne!(edited, recorded, "the recording's usage has cache counters");
    edited
}

/// Plays `transcript` for one request of `body` to `path` and returns the entry's cost, after
/// checking that the client was told the same cost.
async fn billed(
    gw: &TestGateway,
    mock: &mock_upstream::MockUpstream,
    path: &str,
    body: Value,
    transcript: &str,
) -> switchyard::store::ledger::UsageEntryRow {
    mock.set_options(json!({"transcript": transcript})).unwrap();
    let resp = harness::client()
        .post(gw.url(path))
        .bearer_auth(&gw.key)
        .header("anthropic-version", "2023-06-01")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "{path}");
    let id = harness::request_id(&resp);
    let text = resp.text().await.unwrap();
    let row = gw
        .gw
        .ledger
        .wait_for_entry(&id, WAIT)
        .await
        .unwrap()
        .unwrap();
    let told = text
        .rsplit("\"cost\":\"")
        .next()
        .and_then(|rest| rest.split('"').next())
        .expect("the answer carries usage.cost");
    let told: rust_decimal::Decimal = told.parse().unwrap();
    assert_eq!(Nanos::from_usd(told), Some(row.cost), "{path}: {text}");
    row
}

#[tokio::test(flavor = "multi_thread")]
async fn anthropic_cache_reads_and_both_write_lifetimes_bill_at_the_sheet() {
    let Some(dir) = real_fixtures::dir("anthropic") else {
        return;
    };
    let (gw, mock) = crate::responses::start("").await;
    // claude: Claude Sonnet's sheet, $3 in and $15 out per million; only those are configured,
    // so reads ($0.30), 5-minute writes ($3.75) and 1-hour writes ($6) are Anthropic's ratios.
    for (file, stream) in [
        ("messages-stream-text.sse", true),
        ("messages-nonstream-text.json", false),
    ] {
        let recorded = std::fs::read_to_string(dir.join(file)).unwrap();
        let transcript = with_claude_code_cache(&recorded);
        let output = if stream {
            last_usage(&transcript)["output_tokens"].as_u64().unwrap()
        } else {
            serde_json::from_str::<Value>(&transcript).unwrap()["usage"]["output_tokens"]
                .as_u64()
                .unwrap()
        };
        let want = at(17, 3_000)
            + at(20_000, 300)
            + at(1_000, 3_750)
            + at(2_000, 6_000)
            + at(output, 15_000);
        let messages = json!({"model": "claude", "max_tokens": 1024, "stream": stream,
                              "messages": [{"role": "user", "content": "hi"}]});
        let chat = json!({"model": "claude", "stream": stream,
                          "messages": [{"role": "user", "content": "hi"}]});
        for (path, body) in [("/v1/messages", messages), ("/v1/chat/completions", chat)] {
            let row = billed(&gw, &mock, path, body, &transcript).await;
            assert_eq!(row.cost, Nanos(want), "{file} via {path}");
            assert_eq!(
                (row.prompt_tokens, row.cached_tokens, row.cache_write_tokens),
                (23_017, 20_000, 3_000),
                "{file} via {path}"
            );
            // Against the whole prompt at $3: what the reads saved less what the writes added.
            assert_eq!(
                row.cache_saved,
                Nanos(at(23_017, 3_000) - (want - at(output, 15_000))),
                "{file} via {path}"
            );
        }
    }
    let usage: Value = harness::client()
        .get(gw.url("/v1/key/usage?group_by=model&since=1h"))
        .bearer_auth(&gw.key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let claude = &usage["data"][0];
    assert_eq!(claude["group"], "claude", "{usage}");
    assert_eq!(claude["cache_hit_ratio"], json!(0.8689), "{usage}");
    assert_eq!(claude["cache_write_tokens"], 12_000, "{usage}");
    assert_eq!(usage["cache_hit_ratio"], json!(0.8689), "{usage}");
    assert!(
        usage["cache_saved"]
            .as_str()
            .unwrap()
            .parse::<f64>()
            .unwrap()
            > 0.0,
        "{usage}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn recorded_cache_hits_of_openai_dialect_providers_bill_at_their_sheets() {
    let (Some(deepseek), Some(xai)) = (real_fixtures::dir("deepseek"), real_fixtures::dir("xai"))
    else {
        return;
    };
    let (gw, mock) = crate::responses::start("").await;
    // deepseek-r: $0.55 in, $2.19 out, hits at DeepSeek's tenth ($0.055); m: $2.50 in, $10 out,
    // cached reads at OpenAI's half ($1.25).
    for (path, model, (input, read, output)) in [
        (
            deepseek.join("chat-stream-reasoner-tool-call.sse"),
            "deepseek-r",
            (550, 55, 2_190),
        ),
        (
            xai.join("chat-stream-text.sse"),
            "m",
            (2_500, 1_250, 10_000),
        ),
    ] {
        let transcript = std::fs::read_to_string(&path).unwrap();
        let u = last_usage(&transcript);
        let n = |p: &str| u.pointer(p).and_then(Value::as_u64).unwrap_or(0);
        let prompt = n("/prompt_tokens");
        let cached = n("/prompt_tokens_details/cached_tokens").max(n("/prompt_cache_hit_tokens"));
        assert!(cached > 0, "{path:?} reports cache hits");
        // xAI's completion_tokens leaves its reasoning out (total = prompt + completion +
        // reasoning); its sheet bills reasoning as output all the same.
        let completion = n("/total_tokens") - prompt;
        let want = at(prompt - cached, input) + at(cached, read) + at(completion, output);
        let body = json!({"model": model, "stream": true,
                          "messages": [{"role": "user", "content": "hi"}]});
        let row = billed(&gw, &mock, "/v1/chat/completions", body, &transcript).await;
        assert_eq!(row.cost, Nanos(want), "{path:?} {row:?}");
        assert_eq!(row.cached_tokens as u64, cached, "{path:?}");
        assert_eq!(row.completion_tokens as u64, completion, "{path:?}");
    }
}
