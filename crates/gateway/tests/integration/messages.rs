//! The Anthropic Messages API (`POST /v1/messages`, `/v1/messages/count_tokens`): the official
//! `anthropic` SDKs (tests/sdk/python/messages.py, tests/sdk/node/messages.mjs) against an
//! OpenAI-dialect and an Anthropic-dialect upstream, the exact event sequence of a stream, a
//! Claude-Code-shaped conversation replayed from `fixtures/claude_code_request.json`, the ledger
//! entry (`messages[.stream]`, billed once) and Anthropic-shaped errors. On an Anthropic route the
//! answer passes through: the client's bytes are the mock's (as it recorded them) but for
//! `usage.cost` in `message_delta` and the cost comment after `message_stop`, for the mock's own
//! answers (redacted thinking, a stop sequence, cache writes) and for the recorded transcripts of
//! `shared/fixtures/real/anthropic` played back by the mock; failing over to an OpenAI route
//! still translates.

use std::time::Duration;

use mock_upstream::{CONTENT_WORDS, REASONING_WORDS};
use serde_json::{json, Value};

use crate::harness::{self, TestGateway};
use crate::responses::{start, Dialect};
use crate::sdk_runner::{command, run as run_script, Lang};

#[path = "../../../wire/tests/real_fixtures/mod.rs"]
pub(crate) mod real_fixtures;

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
/// Comments (the cost comment after `message_stop`) are left out.
fn events(body: &str) -> Vec<(String, Value)> {
    let mut out = vec![];
    for block in body
        .split("\n\n")
        .filter(|b| !b.is_empty() && !b.starts_with(':'))
    {
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
        // Translated, the gateway pings before the first block; passed through, the upstream's
        // ping comes where the upstream sent it (the mock, like Anthropic, after the first start).
        let first_three = match d {
            Dialect::OpenAi => ["message_start", "ping", "content_block_start"],
            Dialect::Anthropic => ["message_start", "content_block_start", "ping"],
        };
        assert_eq!(&n[..3], first_three, "{d:?}");
        let start = n.iter().position(|n| *n == "content_block_start").unwrap();
        assert_eq!(ev[start].1["content_block"]["type"], "thinking");
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
        assert_eq!(
            switchyard::store::ledger::Nanos::from_usd(cost).unwrap(),
            row.cost
        );
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

/// An Anthropic route that sends text that is not UTF-8 mid-stream: the passthrough does not
/// forward it; the client gets an Anthropic error event (UTF-8 only), and the request is settled.
#[tokio::test(flavor = "multi_thread")]
async fn invalid_utf8_from_an_anthropic_route_mid_stream_is_an_error_event_and_settled() {
    let (gw, mock) = start("").await;
    mock.set_options(json!({"invalid_utf8_after": 2})).unwrap();
    let resp = post(
        &gw,
        &json!({"model": Dialect::Anthropic.model(""), "max_tokens": 100, "stream": true,
                "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let id = harness::request_id(&resp);
    let bytes = resp.bytes().await.unwrap();
    let text = std::str::from_utf8(&bytes).expect("the client gets UTF-8 only");
    let ev = events(text);
    let (name, last) = ev.last().unwrap();
    assert_eq!(name, "error", "{text}");
    assert_eq!(last["type"], "error");
    let entry = gw
        .gw
        .ledger
        .wait_for_entry(&id, std::time::Duration::from_secs(10))
        .await
        .unwrap()
        .expect("settled");
    assert_eq!(entry.end_reason, "error", "{entry:?}");
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

/// `text` with `"cost":"<cost>"` added as the last member of its top-level `usage` object (found
/// as text: Anthropic's usage holds numbers and small objects, never a brace inside a string).
fn with_cost(text: &str, cost: &str) -> String {
    let mut depth = 0;
    let mut usage_at = None;
    for (i, c) in text.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            '"' if depth == 1 && text[i..].starts_with("\"usage\":") => usage_at = Some(i),
            _ => {}
        }
        if usage_at.is_some() {
            break;
        }
    }
    let open = usage_at.unwrap() + text[usage_at.unwrap()..].find('{').unwrap();
    let mut depth = 0;
    let close = text[open..]
        .char_indices()
        .find_map(|(i, c)| {
            match c {
                '{' => depth += 1,
                '}' => depth -= 1,
                _ => {}
            }
            (depth == 0).then_some(open + i)
        })
        .unwrap();
    let empty = text[open + 1..close].trim().is_empty();
    format!(
        "{}{}\"cost\":\"{cost}\"{}",
        &text[..close],
        if empty { "" } else { "," },
        &text[close..]
    )
}

/// What a client of a passthrough stream must receive for an upstream that wrote `upstream`: the
/// same events, byte for byte, except `message_delta`, whose `usage` gains `"cost":"<cost>"`,
/// then the cost comment. Returns the cost the client was told.
fn assert_passed_through(upstream: &str, client: &str, label: &str) -> String {
    let (events, comment) = client
        .rsplit_once("\n\n: ")
        .unwrap_or_else(|| panic!("{label}: no cost comment at the end:\n{client}"));
    let comment: Value = serde_json::from_str(comment.trim_end()).unwrap();
    let cost = comment["cost"].as_str().unwrap().to_owned();
    let mut expected = String::with_capacity(upstream.len() + 32);
    for block in upstream.split_inclusive("\n\n") {
        if let Some(data) = block.strip_prefix("event: message_delta\ndata: ") {
            expected.push_str("event: message_delta\ndata: ");
            expected.push_str(&with_cost(data, &cost));
        } else {
            expected.push_str(block);
        }
    }
    assert_eq!(format!("{events}\n\n"), expected, "{label}");
    cost
}

/// The mock's options for answers with what only Anthropic sends.
fn anthropic_extras() -> Value {
    json!({"redacted_thinking": true, "stop_sequence": "</answer>",
           "cache_creation_tokens": 7, "cached_tokens": 3, "prompt_tokens": 40})
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stream_from_an_anthropic_route_is_the_upstreams_bytes_plus_the_cost() {
    let (gw, mock) = start("").await;
    mock.set_options(anthropic_extras()).unwrap();
    let resp = post(
        &gw,
        &json!({"model": Dialect::Anthropic.model("think"), "max_tokens": 4096, "stream": true,
                "thinking": {"type": "enabled", "budget_tokens": 2048},
                "stop_sequences": ["</answer>"],
                "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let id = harness::request_id(&resp);
    // message_stop comes only once the entry is durable: the moment it arrives, the entry is there.
    let mut frames = resp.bytes_stream();
    let mut client = String::new();
    while let Some(frame) = futures_util::StreamExt::next(&mut frames).await {
        client.push_str(std::str::from_utf8(&frame.unwrap()).unwrap());
        if client.contains("event: message_stop") {
            assert!(gw.gw.ledger.entry(&id).await.unwrap().is_some());
        }
    }
    let record = mock.wait_stream_end(0).await;
    assert!(record.completed, "{record:?}");
    let upstream = String::from_utf8(record.bytes_written).unwrap();
    let cost = assert_passed_through(&upstream, &client, "mock stream");

    let ev = events(&client);
    let n = names(&ev);
    assert_eq!(ev[0].1["message"]["id"].as_str().unwrap(), {
        let up = events(&upstream);
        up[0].1["message"]["id"].as_str().unwrap().to_owned()
    });
    assert!(ev[0].1["message"]["id"]
        .as_str()
        .unwrap()
        .starts_with("msg_mock"));
    assert_eq!(ev[1].1["content_block"]["type"], "redacted_thinking");
    assert!(n.contains(&"ping"));
    assert!(ev
        .iter()
        .any(|(_, v)| v["delta"]["type"] == "signature_delta"));
    let delta = &ev[n.len() - 2].1;
    assert_eq!(n[n.len() - 1], "message_stop");
    assert_eq!(delta["delta"]["stop_reason"], "stop_sequence");
    assert_eq!(delta["delta"]["stop_sequence"], "</answer>");
    assert_eq!(delta["usage"]["cache_creation_input_tokens"], 7);
    assert_eq!(delta["usage"]["cache_read_input_tokens"], 3);
    assert_eq!(delta["usage"]["cost"], cost.as_str());

    let row = gw
        .gw
        .ledger
        .wait_for_entry(&id, WAIT)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.request_type.as_deref(), Some("messages.stream"));
    assert_eq!(row.end_reason, "stop");
    assert_eq!(row.prompt_tokens, 40, "cache reads and writes are prompt");
    assert_eq!(row.cached_tokens, 3);
    let cost: rust_decimal::Decimal = cost.parse().unwrap();
    assert_eq!(
        switchyard::store::ledger::Nanos::from_usd(cost).unwrap(),
        row.cost
    );
    assert!(row.cost.0 > 0);
    harness::released(&gw).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_whole_answer_from_an_anthropic_route_is_the_upstreams_body_plus_the_cost() {
    let (gw, mock) = start("").await;
    mock.set_options(anthropic_extras()).unwrap();
    let resp = post(
        &gw,
        &json!({"model": Dialect::Anthropic.model("think"), "max_tokens": 4096,
                "thinking": {"type": "enabled", "budget_tokens": 2048},
                "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let id = harness::request_id(&resp);
    let text = resp.text().await.unwrap();
    let v: Value = serde_json::from_str(&text).unwrap();
    assert!(v["id"].as_str().unwrap().starts_with("msg_mock"), "{v}");
    assert_eq!(v["stop_reason"], "stop_sequence");
    assert_eq!(v["stop_sequence"], "</answer>");
    assert_eq!(v["content"][0]["type"], "redacted_thinking");
    assert_eq!(v["usage"]["cache_creation_input_tokens"], 7);
    assert_eq!(v["usage"]["cache_creation"]["ephemeral_5m_input_tokens"], 7);
    assert_eq!(v["usage"]["service_tier"], "standard");
    // The body is the upstream's own text: usage's other members keep their order, cost last.
    let usage_keys: Vec<&String> = v["usage"].as_object().unwrap().keys().collect();
    assert_eq!(usage_keys.last().unwrap().as_str(), "cost");
    assert_eq!(usage_keys[0].as_str(), "input_tokens");
    let row = gw
        .gw
        .ledger
        .wait_for_entry(&id, WAIT)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.request_type.as_deref(), Some("messages"));
    let cost: rust_decimal::Decimal = v["usage"]["cost"].as_str().unwrap().parse().unwrap();
    assert_eq!(
        switchyard::store::ledger::Nanos::from_usd(cost).unwrap(),
        row.cost
    );
    assert!(row.cost.0 > 0);
    harness::released(&gw).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn recorded_anthropic_transcripts_pass_through_byte_for_byte() {
    let Some(dir) = real_fixtures::dir("anthropic") else {
        return;
    };
    let (gw, mock) = start("").await;
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let (mut streams, mut wholes) = (0, 0);
    for path in files {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let stream = name.starts_with("messages-stream-") && name.ends_with(".sse");
        let whole = name.starts_with("messages-nonstream-") && name.ends_with(".json");
        if !stream && !whole {
            continue;
        }
        let transcript = std::fs::read_to_string(&path).unwrap();
        if whole
            && serde_json::from_str::<Value>(&transcript).map_or(true, |v| v["type"] != "message")
        {
            continue;
        }
        mock.set_options(json!({"transcript": transcript})).unwrap();
        let resp = post(
            &gw,
            &json!({"model": Dialect::Anthropic.model(""), "max_tokens": 1024, "stream": stream,
                    "messages": [{"role": "user", "content": "hi"}]}),
        )
        .await;
        assert_eq!(resp.status(), 200, "{name}");
        let id = harness::request_id(&resp);
        let client = resp.text().await.unwrap();
        let row = gw
            .gw
            .ledger
            .wait_for_entry(&id, WAIT)
            .await
            .unwrap()
            .unwrap();
        let cost = if stream {
            streams += 1;
            let record = mock.wait_stream_end(streams - 1).await;
            assert_eq!(
                String::from_utf8(record.bytes_written).unwrap(),
                transcript,
                "{name}: the mock played the transcript as recorded"
            );
            assert_passed_through(&transcript, &client, &name)
        } else {
            wholes += 1;
            // The body as recorded, its usage gaining the cost.
            let v: Value = serde_json::from_str(&client).unwrap();
            let cost = v["usage"]["cost"].as_str().unwrap().to_owned();
            assert_eq!(client, with_cost(&transcript, &cost), "{name}");
            cost
        };
        let cost: rust_decimal::Decimal = cost.parse().unwrap();
        assert_eq!(
            switchyard::store::ledger::Nanos::from_usd(cost).unwrap(),
            row.cost,
            "{name}"
        );
        // The usage tapped for billing is the upstream's final report.
        let reported = if stream {
            let ev = events(&transcript);
            ev.iter()
                .rev()
                .find(|(n, _)| n == "message_delta")
                .unwrap()
                .1["usage"]
                .clone()
        } else {
            serde_json::from_str::<Value>(&transcript).unwrap()["usage"].clone()
        };
        assert_eq!(
            Some(row.completion_tokens as u64),
            reported["output_tokens"].as_u64(),
            "{name}"
        );
        assert!(row.prompt_tokens > 0, "{name}: {row:?}");
    }
    assert!(
        streams >= 10 && wholes >= 3,
        "{streams} streams, {wholes} whole answers"
    );
    harness::released(&gw).await;
}

/// A gateway with the models of `responses::config_extra`, plus `models` (name, routes) and the
/// tables of `more`; top-level keys `top`.
async fn start_with(
    top: &str,
    models: &[(&str, &str)],
    more: &str,
) -> (TestGateway, mock_upstream::MockUpstream) {
    let mock = mock_upstream::MockUpstream::start().await.unwrap();
    let mut extra = crate::responses::config_extra(&mock);
    for (name, routes) in models {
        extra.push_str(&format!(
            "\n[models.\"{name}\"]\nroutes = [{routes}]\ninput_price = \"3.00\"\noutput_price = \"15.00\"\n"
        ));
    }
    extra.push_str(more);
    let gw = harness::start(&format!("{top}\n{}", harness::mock_config(&mock, &extra))).await;
    (gw, mock)
}

/// The gateway's own `ping` (the mock's, like Anthropic's, has a space after the colon).
const OUR_PING: &str = "event: ping\ndata: {\"type\":\"ping\"}\n\n";

#[tokio::test(flavor = "multi_thread")]
async fn an_early_commit_pings_until_a_route_answers_then_passes_it_through_or_translates() {
    let failing = r#""anthropic/mock-claude@headers_delay_ms=400,status=503""#;
    let (gw, mock) = start_with(
        "keep_alive_ms = 100",
        &[
            (
                "claude-late",
                &format!(r#"{failing}, "anthropic/mock-claude@tokens=4,gap_ms=250""#),
            ),
            (
                "claude-late-to-openai",
                &format!(r#"{failing}, "mock/m@tokens=4""#),
            ),
        ],
        "[routing]\ncommit_after_ms = 30\nmax_attempts = 2\n",
    )
    .await;
    for model in ["claude-late", "claude-late-to-openai"] {
        let resp = post(
            &gw,
            &json!({"model": model, "max_tokens": 100, "stream": true,
                    "messages": [{"role": "user", "content": "hi"}]}),
        )
        .await;
        assert_eq!(resp.status(), 200);
        let id = harness::request_id(&resp);
        let client = resp.text().await.unwrap();
        let ev = events(&client);
        let n = names(&ev);
        // The commit's keep-alives are pings: nothing of our own a passthrough would repeat.
        let first = n.iter().position(|n| *n != "ping").unwrap();
        assert!(first >= 2, "{model}: {n:?}");
        assert_eq!(n[first], "message_start", "{model}");
        assert_eq!(n.iter().filter(|n| **n == "message_start").count(), 1);
        assert_eq!(n.last(), Some(&"message_stop"), "{model}");
        let message_id = ev[first].1["message"]["id"].as_str().unwrap();
        let row = gw
            .gw
            .ledger
            .wait_for_entry(&id, WAIT)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(row.attempts, 2, "{model}");
        if model == "claude-late" {
            assert!(message_id.starts_with("msg_mock"), "{message_id}");
            // Between the upstream's words (250 ms apart) the gateway pings every 100 ms; apart
            // from the pings, the client got the upstream's bytes.
            let upstream = String::from_utf8(mock.wait_stream_end(0).await.bytes_written).unwrap();
            let ours_after_start = client[client.find("event: message_start").unwrap()..]
                .matches(OUR_PING)
                .count();
            assert!(ours_after_start >= 2, "{client}");
            assert_passed_through(&upstream, &client.replace(OUR_PING, ""), model);
            assert_eq!(row.provider.as_deref(), Some("anthropic"));
        } else {
            assert!(!message_id.starts_with("msg_mock"), "{message_id}");
            assert_eq!(row.provider.as_deref(), Some("mock"));
        }
    }
    harness::released(&gw).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn failing_over_from_an_anthropic_route_to_an_openai_route_translates() {
    let (gw, _mock) = start_with(
        "",
        &[(
            "claude-to-openai",
            r#""anthropic/mock-claude@status=500", "mock/m""#,
        )],
        "",
    )
    .await;
    for stream in [true, false] {
        let resp = post(
            &gw,
            &json!({"model": "claude-to-openai", "max_tokens": 100, "stream": stream,
                    "messages": [{"role": "user", "content": "hi"}]}),
        )
        .await;
        assert_eq!(resp.status(), 200);
        let id = harness::request_id(&resp);
        let text = resp.text().await.unwrap();
        let (answer, message_id) = if stream {
            let ev = events(&text);
            let n = names(&ev);
            assert_eq!(&n[..3], ["message_start", "ping", "content_block_start"]);
            assert_eq!(n.last(), Some(&"message_stop"));
            let answer: String = ev
                .iter()
                .filter(|(_, v)| v["delta"]["type"] == "text_delta")
                .map(|(_, v)| v["delta"]["text"].as_str().unwrap())
                .collect();
            let delta = &ev[n.len() - 2].1;
            assert_eq!(delta["delta"]["stop_reason"], "end_turn");
            assert!(delta["usage"]["cost"].is_string());
            (answer, ev[0].1["message"]["id"].clone())
        } else {
            let v: Value = serde_json::from_str(&text).unwrap();
            assert_eq!(v["type"], "message");
            assert!(v["usage"]["cost"].is_string());
            (
                v["content"][0]["text"].as_str().unwrap().to_owned(),
                v["id"].clone(),
            )
        };
        assert_eq!(answer, CONTENT_WORDS.concat(), "stream: {stream}");
        // The gateway's own id: the answer came from the OpenAI route, translated.
        assert!(!message_id.as_str().unwrap().starts_with("msg_mock"));
        let row = gw
            .gw
            .ledger
            .wait_for_entry(&id, WAIT)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(row.attempts, 2);
        assert_eq!(row.provider.as_deref(), Some("mock"));
    }
    harness::released(&gw).await;
}

/// Claude Code 2.1's shape: a `system` message between turns, a server tool, adaptive thinking
/// with `display`, `context_management`, and a block type chat has no word for. An Anthropic
/// route gets it as it came; an OpenAI route gets the translation without what chat cannot
/// carry, and the answer names what was left out (`x-switchyard-dropped`).
#[tokio::test(flavor = "multi_thread")]
async fn claude_code_2_1_system_messages_and_server_tools_are_served_on_both_dialects() {
    let (gw, mock) = start("").await;
    for d in [Dialect::OpenAi, Dialect::Anthropic] {
        let body = json!({
            "model": d.model(""), "max_tokens": 32000, "stream": true,
            "system": [{"type": "text", "text": "You are Claude Code.", "cache_control": {"type": "ephemeral"}}],
            "messages": [
                {"role": "user", "content": [{"type": "text", "text": "Read notes.txt"}]},
                {"role": "system", "content": "gitStatus: clean"},
                {"role": "user", "content": [{"type": "search_result", "source": "s", "title": "t",
                                              "content": [{"type": "text", "text": "x"}]},
                                             {"type": "text", "text": "and quote it"}]},
            ],
            "tools": [{"name": "Read", "description": "Reads a file",
                       "input_schema": {"$schema": "https://json-schema.org/draft/2020-12/schema",
                                        "type": "object", "properties": {"file_path": {"type": "string"}}}},
                      {"type": "web_search_20250305", "name": "web_search", "max_uses": 5}],
            "metadata": {"user_id": "{\"device_id\":\"d\"}"},
            "context_management": {"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]},
        });
        let resp = post(&gw, &body).await;
        assert_eq!(resp.status(), 200, "{d:?}");
        let dropped = resp
            .headers()
            .get("x-switchyard-dropped")
            .map(|v| v.to_str().unwrap().to_owned());
        let ev = events(&resp.text().await.unwrap());
        assert_eq!(names(&ev).last(), Some(&"message_stop"), "{d:?}");
        let sent = mock.requests().last().unwrap().clone();
        match d {
            Dialect::Anthropic => {
                assert_eq!(dropped, None);
                assert_eq!(sent.body["messages"][1]["role"], "system");
                assert_eq!(sent.body["tools"][1]["type"], "web_search_20250305");
                assert_eq!(sent.body["context_management"], body["context_management"]);
            }
            Dialect::OpenAi => {
                assert_eq!(
                    dropped.as_deref(),
                    Some("messages.2.content.0:search_result, tools.1:web_search_20250305")
                );
                let roles: Vec<&str> = sent.body["messages"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|m| m["role"].as_str().unwrap())
                    .collect();
                assert_eq!(roles, ["system", "user", "system", "user"]);
                assert_eq!(sent.body["tools"].as_array().unwrap().len(), 1);
                assert!(sent.body.get("context_management").is_none());
            }
        }
    }
}

/// Strict out: a Messages request with thinking, translated for an OpenAI-dialect route whose
/// model does not reason, carries none of the gateway's own carriers (`thinking`, a signed
/// thinking's `reasoning_signature`, `thinking_blocks`, `reasoning_content`) nor a
/// `reasoning_effort` the model would refuse; a reasoning model still gets the effort.
#[tokio::test(flavor = "multi_thread")]
async fn a_translated_request_sends_an_openai_route_only_what_it_asked_for() {
    let (gw, mock) = start("").await;
    for (model, effort) in [("m", None), ("m-think", Some("low"))] {
        let body = json!({
            "model": model, "max_tokens": 4096,
            "thinking": {"type": "enabled", "budget_tokens": 2048},
            "messages": [
                {"role": "user", "content": "read a"},
                {"role": "assistant", "content": [
                    {"type": "thinking", "thinking": "I will read it.", "signature": "SIG"},
                    {"type": "tool_use", "id": "toolu_1", "name": "Read", "input": {"file_path": "a"}}]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "hello"}]},
            ],
            "tools": [{"name": "Read", "input_schema": {"type": "object"}}],
        });
        let resp = post(&gw, &body).await;
        assert_eq!(resp.status(), 200, "{model}");
        let _ = resp.text().await.unwrap();
        let sent = mock.requests().last().unwrap().body.clone();
        assert!(sent.get("thinking").is_none(), "{model}: {sent}");
        assert_eq!(sent["reasoning_effort"].as_str(), effort, "{model}");
        let assistant = &sent["messages"][1];
        assert_eq!(assistant["role"], "assistant");
        for carrier in [
            "reasoning_content",
            "reasoning_signature",
            "thinking_blocks",
        ] {
            assert!(
                assistant.get(carrier).is_none(),
                "{model}: {carrier} in {assistant}"
            );
        }
    }
}
