//! The Anthropic Messages API (`POST /v1/messages`, `/v1/messages/count_tokens`): the official
//! `anthropic` SDKs (tests/sdk/python/messages.py, tests/sdk/node/messages.mjs) against an
//! OpenAI-dialect and an Anthropic-dialect upstream, the exact event sequence of a stream, a
//! Claude-Code-shaped conversation replayed from `fixtures/claude_code_request.json`, the ledger
//! entry (`messages[.stream]`, billed once) and Anthropic-shaped errors.

use std::time::Duration;

use mock_upstream::{CONTENT_WORDS, REASONING_WORDS};
use serde_json::{json, Value};

use crate::harness::{self, TestGateway};
use crate::responses::{start, Dialect};
use crate::sdk_runner::{command, run as run_script, Lang};

const WAIT: Duration = Duration::from_secs(20);

async fn run(lang: Lang, scenario: &str, d: Dialect, gw: &TestGateway) -> Option<Value> {
    let mut cmd = command(lang, "messages", scenario)?;
    cmd.env("SWITCHYARD_BASE_URL", gw.base_url())
        .env("SWITCHYARD_API_KEY", &gw.key)
        .env("SWITCHYARD_MODEL", d.model(""))
        .env("SWITCHYARD_REASONING_MODEL", d.model("think"))
        .env("SWITCHYARD_TOOLS_MODEL", d.model("tools"))
        .env("SWITCHYARD_EXPECT_TEXT", CONTENT_WORDS.concat())
        .env("SWITCHYARD_EXPECT_REASONING", REASONING_WORDS[..6].concat())
        .env_remove("ANTHROPIC_API_KEY")
        .env_remove("ANTHROPIC_BASE_URL");
    run_script(cmd, &format!("{lang:?} {scenario} on {d:?}"), scenario).await
}

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
    sdk_create: "create";
    sdk_stream: "stream";
    sdk_tool_round_trip: "tools";
    sdk_thinking: "thinking";
    sdk_errors: "errors";
}

/// A whole Messages SSE body as (event name, data) pairs; every event's data repeats its name.
fn events(body: &str) -> Vec<(String, Value)> {
    let mut out = vec![];
    for block in body.split("\n\n").filter(|b| !b.is_empty()) {
        let mut lines = block.lines();
        let name = lines.next().unwrap().strip_prefix("event: ").unwrap();
        let data: Value =
            serde_json::from_str(lines.next().unwrap().strip_prefix("data: ").unwrap()).unwrap();
        assert_eq!(data["type"], name, "{block}");
        out.push((name.to_owned(), data));
    }
    out
}

fn names(ev: &[(String, Value)]) -> Vec<&str> {
    ev.iter().map(|(n, _)| n.as_str()).collect()
}

async fn post(gw: &TestGateway, body: &Value) -> reqwest::Response {
    harness::client()
        .post(gw.url("/v1/messages"))
        .header("x-api-key", &gw.key)
        .header("anthropic-version", "2023-06-01")
        .json(body)
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stream_is_the_exact_event_sequence_and_is_billed_once_as_messages_stream() {
    let (gw, _mock) = start("").await;
    for d in [Dialect::OpenAi, Dialect::Anthropic] {
        let resp = post(
            &gw,
            &json!({"model": d.model("think"), "max_tokens": 4096, "stream": true,
                    "thinking": {"type": "enabled", "budget_tokens": 2048},
                    "messages": [{"role": "user", "content": "hi"}]}),
        )
        .await;
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["content-type"], "text/event-stream");
        assert!(resp.headers().contains_key("request-id"));
        let id = harness::request_id(&resp);
        let ev = events(&resp.text().await.unwrap());
        let n = names(&ev);
        assert_eq!(
            &n[..3],
            ["message_start", "ping", "content_block_start"],
            "{d:?}"
        );
        assert_eq!(ev[2].1["content_block"]["type"], "thinking");
        let thinking: String = ev
            .iter()
            .filter(|(_, v)| v["delta"]["type"] == "thinking_delta")
            .map(|(_, v)| v["delta"]["thinking"].as_str().unwrap())
            .collect();
        assert_eq!(thinking, REASONING_WORDS[..6].concat());
        let sig = ev
            .iter()
            .position(|(_, v)| v["delta"]["type"] == "signature_delta")
            .unwrap();
        assert_eq!(n[sig + 1], "content_block_stop");
        let text: String = ev
            .iter()
            .filter(|(_, v)| v["delta"]["type"] == "text_delta")
            .map(|(_, v)| v["delta"]["text"].as_str().unwrap())
            .collect();
        assert_eq!(text, CONTENT_WORDS.concat());
        assert_eq!(
            &n[n.len() - 3..],
            ["content_block_stop", "message_delta", "message_stop"]
        );
        let delta = &ev[n.len() - 2].1;
        assert_eq!(delta["delta"]["stop_reason"], "end_turn");
        assert!(delta["usage"]["output_tokens"].as_u64().unwrap() > 0);
        let row = gw
            .gw
            .ledger
            .wait_for_entry(&id, WAIT)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(row.request_type.as_deref(), Some("messages.stream"));
        assert!(row.cost.0 > 0);
        let cost: rust_decimal::Decimal = delta["usage"]["cost"].as_str().unwrap().parse().unwrap();
        assert_eq!(switchyard::ledger::Nanos::from_usd(cost).unwrap(), row.cost);
    }
    harness::released(&gw).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_claude_code_conversation_replays_on_both_dialects() {
    let (gw, mock) = start("").await;
    let fixture: Value =
        serde_json::from_str(include_str!("fixtures/claude_code_request.json")).unwrap();
    for d in [Dialect::OpenAi, Dialect::Anthropic] {
        let mut body = fixture.clone();
        body["model"] = json!(d.model(""));
        let resp = post(&gw, &body).await;
        assert_eq!(resp.status(), 200, "{d:?}");
        let ev = events(&resp.text().await.unwrap());
        let text: String = ev
            .iter()
            .filter(|(_, v)| v["delta"]["type"] == "text_delta")
            .map(|(_, v)| v["delta"]["text"].as_str().unwrap())
            .collect();
        assert_eq!(text, CONTENT_WORDS.concat(), "{d:?}");
        assert_eq!(names(&ev).last(), Some(&"message_stop"));
        // The upstream got the system prompt, the 9 tools and the tool result.
        let sent = mock.requests().last().unwrap().clone();
        assert_eq!(sent.body["tools"].as_array().unwrap().len(), 9, "{d:?}");
        let sent_text = sent.body.to_string();
        assert!(sent_text.contains("command-line coding assistant"), "{d:?}");
        assert!(sent_text.contains("src/config.rs"), "{d:?}");
        match d {
            // An Anthropic route gets the request as the client sent it, prompt caching included.
            Dialect::Anthropic => {
                let mut expected = body.clone();
                expected["model"] = sent.body["model"].clone();
                assert_ne!(sent.body["model"], body["model"]);
                assert_eq!(sent.body, expected);
                assert_eq!(sent.body["system"][1]["cache_control"]["type"], "ephemeral");
            }
            Dialect::OpenAi => {
                assert_eq!(sent.body["messages"][0]["role"], "system");
                assert_eq!(sent.body["messages"][3]["role"], "tool");
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn errors_are_anthropic_shaped_on_every_prefix() {
    let (gw, _mock) = start("").await;
    for prefix in ["/v1", "/api/v1", "/v1/llm"] {
        let resp = harness::client()
            .post(gw.url(&format!("{prefix}/messages")))
            .header("x-api-key", "sk-sy-not-a-key")
            .json(&json!({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 401);
        assert!(resp.headers().contains_key("request-id"));
        let v: Value = resp.json().await.unwrap();
        assert_eq!(v["type"], "error");
        assert_eq!(v["error"]["type"], "authentication_error");
        let resp = harness::client()
            .post(gw.url(&format!("{prefix}/messages")))
            .bearer_auth(&gw.key)
            .body("{not json")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 400);
        let v: Value = resp.json().await.unwrap();
        assert_eq!(v["error"]["type"], "invalid_request_error");
        let resp = harness::client()
            .post(gw.url(&format!("{prefix}/messages/count_tokens")))
            .bearer_auth(&gw.key)
            .json(&json!({"model": "m", "messages": [{"role": "user", "content": "hello there"}]}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let v: Value = resp.json().await.unwrap();
        assert!(v["input_tokens"].as_u64().unwrap() > 0);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_upstream_failure_mid_stream_is_an_anthropic_error_event() {
    let (gw, _mock) = start("").await;
    for d in [Dialect::OpenAi, Dialect::Anthropic] {
        let resp = post(
            &gw,
            &json!({"model": d.model("fail"), "max_tokens": 100, "stream": true,
                    "messages": [{"role": "user", "content": "hi"}]}),
        )
        .await;
        assert_eq!(resp.status(), 200);
        let ev = events(&resp.text().await.unwrap());
        let (name, last) = ev.last().unwrap();
        assert_eq!(name, "error", "{d:?}");
        assert_eq!(last["type"], "error");
        assert!(last["error"]["type"].is_string());
        assert!(!names(&ev).contains(&"message_stop"));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cancelled_stream_drops_the_upstream_and_settles_once_as_cancelled() {
    use futures_util::StreamExt;
    let (gw, mock) = start("").await;
    for (n, d) in [Dialect::OpenAi, Dialect::Anthropic]
        .into_iter()
        .enumerate()
    {
        let resp = post(
            &gw,
            &json!({"model": d.model("long"), "max_tokens": 4000, "stream": true,
                    "messages": [{"role": "user", "content": "Write a long essay."}]}),
        )
        .await;
        let request_id = harness::request_id(&resp);
        let mut body = resp.bytes_stream();
        let mut seen = String::new();
        while seen.matches("\"text_delta\"").count() < 3 {
            let frame = body.next().await.unwrap().unwrap();
            seen.push_str(&String::from_utf8_lossy(&frame));
        }
        drop(body);
        let record = tokio::time::timeout(Duration::from_secs(10), mock.wait_stream_end(n))
            .await
            .expect("the upstream stream never ended");
        assert!(record.client_disconnected, "{d:?} {record:?}");
        let entry = gw
            .gw
            .ledger
            .wait_for_entry(&request_id, WAIT)
            .await
            .unwrap()
            .expect("the cancelled request was settled");
        assert_eq!(entry.end_reason, "cancelled", "{d:?}");
        assert_eq!(entry.request_type.as_deref(), Some("messages.stream"));
        assert!(
            entry.completion_tokens >= 3 && entry.completion_tokens < 500,
            "{entry:?}"
        );
    }
    harness::released(&gw).await;
}
