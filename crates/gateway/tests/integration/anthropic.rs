//! The official OpenAI Python SDK reading answers that came from an Anthropic upstream: a streamed
//! pair of parallel tool calls (through the SDK's `chat.completions.stream` helper, which
//! reassembles the deltas and fails on a malformed one) and a streamed reasoning answer. The script
//! is `tests/sdk/python/anthropic_dialect.py`; the SDK is installed by `./scripts/test` into
//! `tests/sdk/.venv`. Without it these tests say SKIPPED, or fail when `SWITCHYARD_REQUIRE_SDKS=1`.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use mock_upstream::MockUpstream;
use serde_json::Value;

use crate::harness::{self, TestGateway};

const SCRIPT_TIMEOUT: Duration = Duration::from_secs(120);

fn sdk_dir() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/sdk");
    std::fs::canonicalize(&root).unwrap_or(root)
}

async fn gateway() -> (TestGateway, MockUpstream) {
    let mock = MockUpstream::start().await.unwrap();
    let text = format!(
        r#"
demo_credits = "100"
[providers.claude]
kind = "anthropic"
base_url = "{}"
api_key = "sk-ant-test"

[models."claude-tools"]
routes = ["claude/claude-sonnet-4@tool_calls=2"]
input_price = "3.00"
output_price = "15.00"

[models."claude-thinking"]
routes = ["claude/claude-sonnet-4@reasoning=6,tokens=5"]
input_price = "3.00"
output_price = "15.00"
"#,
        mock.base_url()
    );
    (harness::start(&text).await, mock)
}

/// Runs one scenario; `None` when the SDK is not installed (and not required).
async fn run(scenario: &str, model: &str, gw: &TestGateway) -> Option<Value> {
    let python = sdk_dir().join(".venv/bin/python");
    if !python.exists() {
        if std::env::var("SWITCHYARD_REQUIRE_SDKS").is_ok_and(|v| v == "1") {
            panic!("the Python SDK venv is missing although SWITCHYARD_REQUIRE_SDKS=1");
        }
        eprintln!(
            "SKIPPED (SDKs not installed; run ./scripts/test): {}",
            python.display()
        );
        return None;
    }
    let mut cmd = tokio::process::Command::new(python);
    cmd.arg(sdk_dir().join("python/anthropic_dialect.py"))
        .arg(scenario)
        .env_remove("OPENAI_API_KEY")
        .env_remove("OPENAI_BASE_URL")
        .env("SWITCHYARD_BASE_URL", gw.base_url())
        .env("SWITCHYARD_API_KEY", &gw.key)
        .env("SWITCHYARD_MODEL", model)
        .stdin(Stdio::null())
        .kill_on_drop(true);
    let out = tokio::time::timeout(SCRIPT_TIMEOUT, cmd.output())
        .await
        .expect("the script finishes")
        .expect("the script runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{scenario} failed:\n{}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    let last = stdout
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("");
    let facts: Value = serde_json::from_str(last).unwrap();
    assert_eq!(facts["ok"], true, "{facts}");
    Some(facts)
}

#[tokio::test(flavor = "multi_thread")]
async fn python_sdk_streams_parallel_tool_calls_from_anthropic() {
    let (gw, mock) = gateway().await;
    let Some(facts) = run("tool_call_stream", "claude-tools", &gw).await else {
        return;
    };
    let calls = facts["calls"].as_array().unwrap();
    assert_eq!(calls.len(), 2, "{facts}");
    assert!(
        calls
            .iter()
            .all(|c| c["id"].as_str().unwrap().starts_with("toolu_")),
        "{facts}"
    );
    assert_eq!(facts["finish_reason"], "tool_calls");
    // It really was an Anthropic stream the gateway translated.
    assert_eq!(mock.requests()[0].path, "/v1/messages");
    assert_eq!(mock.requests()[0].body["tools"][0]["name"], "get_weather");
}

#[tokio::test(flavor = "multi_thread")]
async fn python_sdk_streams_reasoning_from_anthropic_thinking() {
    let (gw, mock) = gateway().await;
    let Some(facts) = run("reasoning_stream", "claude-thinking", &gw).await else {
        return;
    };
    let record = mock.wait_stream_end(0).await;
    assert_eq!(
        facts["reasoning"],
        record.reasoning_written.as_str(),
        "{facts}"
    );
    assert_eq!(facts["content"], record.text_written.as_str(), "{facts}");
    assert_eq!(mock.requests()[0].path, "/v1/messages");
}
