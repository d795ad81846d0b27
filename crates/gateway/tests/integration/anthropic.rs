//! The official OpenAI Python SDK reading answers that came from an Anthropic upstream: a streamed
//! pair of parallel tool calls (through the SDK's `chat.completions.stream` helper, which
//! reassembles the deltas and fails on a malformed one) and a streamed reasoning answer. The script
//! is `tests/sdk/python/anthropic_dialect.py`; the SDK is installed by `./scripts/test` into
//! `tests/sdk/.venv`. Without it these tests say SKIPPED, or fail when `SWITCHYARD_REQUIRE_SDKS=1`.

use mock_upstream::MockUpstream;
use serde_json::Value;

use crate::harness::{self, TestGateway};
use crate::sdk_runner::{command, run as run_script, Lang};

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
    let mut cmd = command(Lang::Python, "anthropic_dialect", scenario)?;
    cmd.env("SWITCHYARD_BASE_URL", gw.base_url())
        .env("SWITCHYARD_API_KEY", &gw.key)
        .env("SWITCHYARD_MODEL", model);
    run_script(cmd, &format!("Python {scenario}"), scenario).await
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
