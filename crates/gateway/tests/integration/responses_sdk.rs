//! The official OpenAI SDKs as judges of the Responses API: each test starts a gateway and a mock
//! (with the models of `responses::config_extra`), then runs one scenario of
//! `tests/sdk/python/responses.py` (PyPI `openai`) or `tests/sdk/node/responses.mjs` (npm `openai`)
//! as a subprocess, once against an OpenAI-dialect and once against an Anthropic-dialect upstream.
//! Also TokenLab's `curl` example (seed 002) as written, apart from URL, key and model. The SDKs are
//! installed by `./scripts/test`; without them these tests say SKIPPED, or fail when
//! `SWITCHYARD_REQUIRE_SDKS=1` (which `./scripts/test` sets).

use mock_upstream::{CONTENT_WORDS, REASONING_WORDS};
use serde_json::Value;

use crate::harness::TestGateway;
use crate::responses::{start, Dialect};
use crate::sdk_runner::{command, run as run_script, run_curl, Lang};

/// Runs one scenario against `gw` with `d`'s models; asserts it exited 0 and returns the JSON
/// facts it printed last. `None` means the SDK is not installed and the test is skipped.
async fn run(lang: Lang, scenario: &str, d: Dialect, gw: &TestGateway) -> Option<Value> {
    let mut cmd = command(lang, "responses", scenario)?;
    cmd.env("SWITCHYARD_BASE_URL", gw.base_url())
        .env("SWITCHYARD_API_KEY", &gw.key)
        .env("SWITCHYARD_MODEL", d.model(""))
        .env("SWITCHYARD_REASONING_MODEL", d.model("think"))
        .env("SWITCHYARD_TOOLS_MODEL", d.model("tools"))
        .env("SWITCHYARD_SLOW_MODEL", d.model("slow"))
        .env("SWITCHYARD_LONG_MODEL", d.model("long"))
        .env("SWITCHYARD_EXPECT_SLOW_TEXT", CONTENT_WORDS[..4].concat())
        .env("SWITCHYARD_EXPECT_TEXT", CONTENT_WORDS.concat())
        .env("SWITCHYARD_EXPECT_REASONING", REASONING_WORDS[..6].concat());
    run_script(cmd, &format!("{lang:?} {scenario} on {d:?}"), scenario).await
}

/// One scenario on a fresh gateway; the script checks the texts itself.
async fn scenario(lang: Lang, name: &str, d: Dialect) -> Option<Value> {
    let (gw, _mock) = start("").await;
    run(lang, name, d, &gw).await
}

macro_rules! sdk_scenarios {
    ($($test:ident: $name:literal;)*) => {
        $(
            mod $test {
                use super::{scenario, Dialect, Lang};

                #[tokio::test(flavor = "multi_thread")]
                async fn python_openai() {
                    scenario(Lang::Python, $name, Dialect::OpenAi).await;
                }

                #[tokio::test(flavor = "multi_thread")]
                async fn python_anthropic() {
                    scenario(Lang::Python, $name, Dialect::Anthropic).await;
                }

                #[tokio::test(flavor = "multi_thread")]
                async fn node_openai() {
                    scenario(Lang::Node, $name, Dialect::OpenAi).await;
                }

                #[tokio::test(flavor = "multi_thread")]
                async fn node_anthropic() {
                    scenario(Lang::Node, $name, Dialect::Anthropic).await;
                }
            }
        )*
    };
}

sdk_scenarios! {
    create_stream: "create_stream";
    stream_helper: "stream_helper";
    function_call_round_trip: "function_call";
    reasoning_model: "reasoning";
    previous_response_id_chain: "chain";
    max_output_tokens_incomplete: "incomplete";
    stored_input_items: "input_items";
    stored_delete: "delete";
}

/// Background responses with the official SDKs: a stream dropped after four events and read again
/// with `retrieve(stream=True, starting_after=n)` (exactly the remaining events, the whole text),
/// polled, billed once; one created without streaming, polled while it runs and cancelled,
/// settled once as `cancelled`.
async fn background(lang: Lang, d: Dialect) {
    let (gw, _mock) = start("").await;
    let Some(facts) = run(lang, "background", d, &gw).await else {
        return;
    };
    assert_eq!(facts["text"], CONTENT_WORDS[..4].concat(), "{facts}");
    let (entries, _) = crate::harness::books(&gw.gw.ledger, &gw.key_id).await;
    assert_eq!(entries.len(), 1, "billed once");
    let Some(facts) = run(lang, "background_cancel", d, &gw).await else {
        return;
    };
    assert_eq!(facts["status"], "cancelled", "{facts}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let entries = loop {
        let (entries, _) = crate::harness::books(&gw.gw.ledger, &gw.key_id).await;
        if entries.len() > 1 || std::time::Instant::now() > deadline {
            break entries;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert_eq!(entries.len(), 2, "the cancelled one settled once");
    assert!(entries.values().any(|e| e.end_reason == "cancelled"));
}

mod background {
    use super::{background, Dialect, Lang};

    #[tokio::test(flavor = "multi_thread")]
    async fn python_openai() {
        background(Lang::Python, Dialect::OpenAi).await;
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn python_anthropic() {
        background(Lang::Python, Dialect::Anthropic).await;
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn node_openai() {
        background(Lang::Node, Dialect::OpenAi).await;
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn node_anthropic() {
        background(Lang::Node, Dialect::Anthropic).await;
    }
}

/// A Codex-shaped request (a namespace tool, the hosted web_search, developer messages,
/// `client_metadata`) through a chat route of each dialect, judged by the Python SDK: the call
/// comes back as `spawn_agent` in namespace `multi_agent_v1`.
async fn codex_tools(d: Dialect) {
    let (gw, _mock) = start("").await;
    if let Some(facts) = run(Lang::Python, "codex_tools", d, &gw).await {
        assert_eq!(facts["name"], "spawn_agent", "{facts}");
        assert_eq!(facts["namespace"], "multi_agent_v1", "{facts}");
    }
}

mod codex_tools_python {
    #[tokio::test(flavor = "multi_thread")]
    async fn openai() {
        super::codex_tools(super::Dialect::OpenAi).await;
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn anthropic() {
        super::codex_tools(super::Dialect::Anthropic).await;
    }
}

/// Seed 002's `curl` command for the Responses stream, as written apart from URL, key and model.
async fn tokenlab_curl(d: Dialect) {
    let (gw, _mock) = start("").await;
    let body = format!(
        r#"{{
"model": "{}",
"input": "Write a short poem.",
"stream": true
}}"#,
        d.model("")
    );
    let mut cmd = tokio::process::Command::new("curl");
    cmd.arg(gw.url("/v1/responses"))
        .args(["-H", &format!("Authorization: Bearer {}", gw.key)])
        .args(["-H", "Content-Type: application/json"])
        .args(["-d", &body]);
    let Some(stdout) = run_curl(cmd).await else {
        return;
    };
    let names: Vec<&str> = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("event: "))
        .collect();
    let data: Vec<Value> = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .map(|d| serde_json::from_str(d).unwrap_or_else(|e| panic!("{e}: {d}")))
        .collect();
    assert_eq!(names.len(), data.len(), "{stdout}");
    // TokenLab: "Responses API 流使用 response.completed" — the stream ends with it.
    assert_eq!(names.first(), Some(&"response.created"), "{stdout}");
    assert_eq!(names.last(), Some(&"response.completed"), "{stdout}");
    let text: String = data
        .iter()
        .filter(|e| e["type"] == "response.output_text.delta")
        .filter_map(|e| e["delta"].as_str())
        .collect();
    assert_eq!(text, CONTENT_WORDS.concat());
    let completed = data.last().unwrap();
    assert_eq!(completed["response"]["status"], "completed");
    assert!(
        completed["response"]["usage"]["cost"].is_string(),
        "{completed}"
    );
    assert!(!stdout.contains("[DONE]"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread")]
async fn tokenlab_curl_example_ends_with_response_completed_openai() {
    tokenlab_curl(Dialect::OpenAi).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn tokenlab_curl_example_ends_with_response_completed_anthropic() {
    tokenlab_curl(Dialect::Anthropic).await;
}
