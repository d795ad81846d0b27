//! The Responses API through the gateway, as a client sees it, on an OpenAI-dialect and an
//! Anthropic-dialect upstream alike: the exact event sequence and SSE headers, reasoning items,
//! function calls and their round trip, `response.incomplete`, `response.failed`, stored responses
//! and `previous_response_id` (for the creating key only), OpenAI-shaped errors, and the relay
//! behaviour it shares with chat (billing, cancellation, failover, keep-alives, no batching).

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use mock_upstream::{MockUpstream, CONTENT_WORDS, REASONING_WORDS};
use rust_decimal::Decimal;
use serde_json::{json, Value};

use crate::harness::{self, TestGateway};

/// The dialect of the upstream behind the model a test talks to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Dialect {
    OpenAi,
    Anthropic,
}

impl Dialect {
    /// The configured model for a behaviour: `""` (plain answer), `"think"` (6 reasoning words
    /// first), `"tools"` (one function call), `"fail"` (an upstream error after 2 words), `"reset"`
    /// (the connection drops after 3 words), `"long"` (2000 slow words), `"slow"` (4 words 150 ms
    /// apart), `"failover"` (the first route answers 5xx), `"stall"` (silent after 2 words).
    pub(crate) fn model(self, behaviour: &str) -> String {
        let base = match self {
            Dialect::OpenAi => "m",
            Dialect::Anthropic => "claude",
        };
        if behaviour.is_empty() {
            base.to_owned()
        } else {
            format!("{base}-{behaviour}")
        }
    }
}

/// The models of [`Dialect::model`]: `m-*` on the OpenAI-dialect provider `mock` (`m-think` on
/// the DeepSeek-dialect `mockds`), `claude*` on the Anthropic-dialect provider `anthropic`; all
/// point at the same mock, whose behaviour each route's `@options` suffix selects.
pub(crate) fn config_extra(mock: &MockUpstream) -> String {
    let mut text = format!(
        r#"
[providers.anthropic]
kind = "anthropic"
base_url = "{}"
api_key = "upstream-secret-key"
"#,
        mock.base_url()
    );
    let behaviours: [(&str, &[&str]); 9] = [
        ("", &[""]),
        ("think", &["@reasoning=6"]),
        ("tools", &["@tool_calls=1"]),
        ("fail", &["@error_after=2"]),
        ("reset", &["@reset_after=3"]),
        ("long", &["@tokens=2000,gap_ms=5"]),
        ("slow", &["@tokens=4,gap_ms=150"]),
        ("failover", &["@status=500", ""]),
        ("stall", &["@stall_after=2"]),
    ];
    for (dialect, provider, upstream, prices) in [
        (Dialect::OpenAi, "mock", "m", ("2.50", "10.00")),
        (
            Dialect::Anthropic,
            "anthropic",
            "mock-claude",
            ("3.00", "15.00"),
        ),
    ] {
        for (behaviour, suffixes) in behaviours {
            let model = dialect.model(behaviour);
            if model == "m" {
                continue; // the harness's own
            }
            let routes: Vec<String> = suffixes
                .iter()
                .map(|s| match (dialect, behaviour) {
                    (Dialect::OpenAi, "think") => format!("\"mockds/deepseek-reasoner{s}\""),
                    _ => format!("\"{provider}/{upstream}{s}\""),
                })
                .collect();
            // A thinking model says so: only then is a translated request's effort sent to it.
            let reasoning = if behaviour == "think" {
                "reasoning = true\n"
            } else {
                ""
            };
            text.push_str(&format!(
                "\n[models.\"{model}\"]\nroutes = [{}]\ninput_price = \"{}\"\noutput_price = \"{}\"\n{reasoning}",
                routes.join(", "),
                prices.0,
                prices.1
            ));
        }
    }
    text
}

/// A mock and a gateway serving the models of [`config_extra`], with top-level config `top`.
pub(crate) async fn start(top: &str) -> (TestGateway, MockUpstream) {
    let mock = MockUpstream::start().await.unwrap();
    let text = format!(
        "{top}\n{}",
        harness::mock_config(&mock, &config_extra(&mock))
    );
    (harness::start(&text).await, mock)
}

fn words() -> String {
    CONTENT_WORDS.concat()
}

/// One item of a Responses stream as a client sees it.
#[derive(Debug, Clone, PartialEq)]
enum Item {
    Event { name: String, data: Value },
    Comment(String),
}

/// Splits a whole Responses SSE body into events and comments, checking the framing: every event
/// is `event: <type>` + one `data:` line whose JSON repeats the type, then a blank line.
fn parse(body: &str) -> Vec<Item> {
    assert!(!body.contains('\r'), "{body}");
    let mut items = vec![];
    for block in body.split("\n\n").filter(|b| !b.is_empty()) {
        let lines: Vec<&str> = block.lines().collect();
        if lines.iter().all(|l| l.starts_with(':')) {
            for l in lines {
                items.push(Item::Comment(l.trim_start_matches(':').trim().to_owned()));
            }
            continue;
        }
        assert_eq!(lines.len(), 2, "not an event: {block:?}");
        let name = lines[0]
            .strip_prefix("event: ")
            .unwrap_or_else(|| panic!("no event line: {block:?}"));
        let data = lines[1]
            .strip_prefix("data: ")
            .unwrap_or_else(|| panic!("no data line: {block:?}"));
        let data: Value =
            serde_json::from_str(data).unwrap_or_else(|e| panic!("data is not JSON ({e}): {data}"));
        assert_eq!(data["type"], name, "{block}");
        items.push(Item::Event {
            name: name.to_owned(),
            data,
        });
    }
    items
}

fn events(items: &[Item]) -> Vec<Value> {
    items
        .iter()
        .filter_map(|i| match i {
            Item::Event { data, .. } => Some(data.clone()),
            Item::Comment(_) => None,
        })
        .collect()
}

fn types(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| e["type"].as_str().unwrap_or("").to_owned())
        .collect()
}

/// Asserts the numbering and the shape every stream shares, and returns the terminal response.
fn check_stream(events: &[Value]) -> Value {
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e["sequence_number"], i as u64, "{e}");
    }
    let t = types(events);
    assert_eq!(t[0], "response.created", "{t:?}");
    assert_eq!(t[1], "response.in_progress", "{t:?}");
    assert_eq!(events[0]["response"]["status"], "in_progress");
    let id = events[0]["response"]["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("resp_"), "{id}");
    let last = events.last().unwrap();
    assert!(
        [
            "response.completed",
            "response.incomplete",
            "response.failed"
        ]
        .contains(&last["type"].as_str().unwrap()),
        "{t:?}"
    );
    for e in events.iter().filter(|e| e.get("response").is_some()) {
        assert_eq!(e["response"]["id"], id.as_str(), "{e}");
    }
    last["response"].clone()
}

fn post(gw: &TestGateway, prefix: &str, body: Value) -> reqwest::RequestBuilder {
    harness::client()
        .post(gw.url(&format!("{prefix}/responses")))
        .bearer_auth(&gw.key)
        .json(&body)
}

/// Streams a request to `/v1/responses` and returns (status, headers, items).
async fn stream(gw: &TestGateway, body: Value) -> (u16, reqwest::header::HeaderMap, Vec<Item>) {
    let resp = post(gw, "/v1", body).send().await.unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let text = resp.text().await.unwrap();
    let items = if status == 200 { parse(&text) } else { vec![] };
    (status, headers, items)
}

async fn create(gw: &TestGateway, key: &str, body: Value) -> (u16, Value) {
    let resp = harness::client()
        .post(gw.url("/v1/responses"))
        .bearer_auth(key)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap())
}

fn output_text(response: &Value) -> String {
    response["output"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|i| i["type"] == "message")
        .flat_map(|i| i["content"].as_array().cloned().unwrap_or_default())
        .filter_map(|c| c["text"].as_str().map(str::to_owned))
        .collect()
}

macro_rules! on_both_dialects {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread")]
                async fn openai() {
                    super::$name(super::Dialect::OpenAi).await;
                }

                #[tokio::test(flavor = "multi_thread")]
                async fn anthropic() {
                    super::$name(super::Dialect::Anthropic).await;
                }
            }
        )*
    };
}

on_both_dialects!(
    text_stream_is_the_exact_event_sequence,
    non_streaming_returns_the_response_object,
    reasoning_item_and_summary_events_come_before_the_message,
    function_call_streams_its_arguments_and_round_trips,
    max_output_tokens_ends_in_response_incomplete,
    upstream_error_mid_stream_is_error_then_response_failed,
    connection_reset_mid_stream_is_response_failed,
    previous_response_id_continues_the_conversation,
    cost_is_charged_to_the_keys_balance,
    cancelled_stream_drops_the_upstream_and_settles_as_cancelled,
    a_failing_first_route_fails_over_before_the_first_byte,
    keep_alives_flow_and_every_delta_is_its_own_frame,
    stall_past_the_idle_timeout_is_response_failed,
    gzip_compresses_the_event_stream,
);

async fn text_stream_is_the_exact_event_sequence(d: Dialect) {
    let (gw, _mock) = start("").await;
    let (status, h, items) = stream(
        &gw,
        json!({"model": d.model(""), "input": "Write a short poem.", "stream": true,
               "metadata": {"topic": "poem"}, "temperature": 0.5}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(h["content-type"], "text/event-stream");
    assert_eq!(h["cache-control"], "no-cache");
    assert_eq!(h["x-accel-buffering"], "no");
    assert!(h["x-request-id"].to_str().unwrap().starts_with("req_"));
    let evs = events(&items);
    let response = check_stream(&evs);
    let mut expected = vec![
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ];
    expected.extend(std::iter::repeat_n("response.output_text.delta", 12));
    expected.extend([
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]);
    assert_eq!(types(&evs), expected);
    let deltas: String = evs
        .iter()
        .filter(|e| e["type"] == "response.output_text.delta")
        .map(|e| e["delta"].as_str().unwrap())
        .collect();
    assert_eq!(deltas, words());
    let added = &evs[2];
    assert_eq!(added["output_index"], 0);
    assert_eq!(added["item"]["type"], "message");
    assert_eq!(added["item"]["status"], "in_progress");
    let item_id = added["item"]["id"].as_str().unwrap();
    for e in &evs[3..evs.len() - 1] {
        if let Some(id) = e.get("item_id") {
            assert_eq!(id, item_id, "{e}");
        }
    }
    assert_eq!(evs[3]["part"]["type"], "output_text");
    assert_eq!(evs[16]["text"], words());
    assert_eq!(evs[18]["item"]["status"], "completed");
    // The terminal event carries the whole response, usage with its cost, and the request echo.
    assert_eq!(response["status"], "completed");
    assert_eq!(response["object"], "response");
    assert_eq!(response["model"], d.model(""));
    assert_eq!(output_text(&response), words());
    assert_eq!(response["metadata"], json!({"topic": "poem"}));
    assert_eq!(response["temperature"], 0.5);
    let usage = &response["usage"];
    assert_eq!(usage["output_tokens"], 12, "{usage}");
    let input = usage["input_tokens"].as_u64().unwrap();
    assert!(input > 0);
    assert_eq!(usage["total_tokens"], input + 12);
    assert!(usage["cost"].as_str().unwrap().parse::<Decimal>().is_ok());
    // Nothing but the cost comment follows the terminal event.
    let Some(Item::Comment(c)) = items.last() else {
        panic!("no cost comment: {items:?}")
    };
    let comment: Value = serde_json::from_str(c).unwrap();
    assert_eq!(comment["cost"], usage["cost"]);
}

async fn non_streaming_returns_the_response_object(d: Dialect) {
    let (gw, _mock) = start("").await;
    for prefix in ["/v1", "/api/v1", "/v1/llm"] {
        let resp = post(
            &gw,
            prefix,
            json!({"model": d.model(""), "input": [{"role": "user", "content": [
                {"type": "input_text", "text": "Say hello"}]}],
                "instructions": "Be brief."}),
        )
        .send()
        .await
        .unwrap();
        assert_eq!(resp.status(), 200, "{prefix}");
        assert_eq!(resp.headers()["content-type"], "application/json");
        let r: Value = resp.json().await.unwrap();
        assert_eq!(r["object"], "response");
        assert_eq!(r["status"], "completed");
        assert_eq!(r["instructions"], "Be brief.");
        assert_eq!(r["output"][0]["type"], "message");
        assert_eq!(r["output"][0]["role"], "assistant");
        assert_eq!(output_text(&r), words(), "{r}");
        assert_eq!(r["usage"]["output_tokens"], 12);
        assert!(r["usage"]["cost"].is_string());
    }
}

async fn reasoning_item_and_summary_events_come_before_the_message(d: Dialect) {
    let (gw, _mock) = start("").await;
    let (_, _, items) = stream(
        &gw,
        json!({"model": d.model("think"), "input": "Prove it.", "stream": true,
               "reasoning": {"effort": "low"}}),
    )
    .await;
    let evs = events(&items);
    let response = check_stream(&evs);
    let t = types(&evs);
    let mut expected = vec![
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.reasoning_summary_part.added",
    ];
    expected.extend(std::iter::repeat_n(
        "response.reasoning_summary_text.delta",
        6,
    ));
    expected.extend([
        "response.reasoning_summary_text.done",
        "response.reasoning_summary_part.done",
        "response.output_item.done",
        "response.output_item.added",
        "response.content_part.added",
    ]);
    assert_eq!(t[..expected.len()], expected[..], "{t:?}");
    let thinking = REASONING_WORDS[..6].concat();
    assert_eq!(evs[2]["item"]["type"], "reasoning");
    assert_eq!(evs[10]["text"], thinking);
    assert_eq!(evs[13]["output_index"], 1);
    assert_eq!(evs[13]["item"]["type"], "message");
    assert_eq!(response["reasoning"]["effort"], "low");
    assert_eq!(response["output"][0]["type"], "reasoning");
    assert_eq!(response["output"][0]["summary"][0]["text"], thinking);
    assert_eq!(output_text(&response), words());
    assert_eq!(response["usage"]["output_tokens"], 18, "{response}");
    if d == Dialect::OpenAi {
        assert_eq!(
            response["usage"]["output_tokens_details"]["reasoning_tokens"],
            6
        );
    }
}

fn weather_tool() -> Value {
    json!([{"type": "function", "name": "get_weather", "description": "The weather in a city.",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                           "required": ["city"]}}])
}

async fn function_call_streams_its_arguments_and_round_trips(d: Dialect) {
    let (gw, mock) = start("").await;
    let (_, _, items) = stream(
        &gw,
        json!({"model": d.model("tools"), "input": "Weather in Paris?", "stream": true,
               "tools": weather_tool(), "tool_choice": "auto"}),
    )
    .await;
    let evs = events(&items);
    let response = check_stream(&evs);
    let t = types(&evs);
    assert_eq!(t[2], "response.output_item.added", "{t:?}");
    let added = &evs[2]["item"];
    assert_eq!(added["type"], "function_call");
    assert_eq!(added["name"], "get_weather");
    assert_eq!(added["arguments"], "");
    let n = t.len();
    assert!(t[3..n - 3]
        .iter()
        .all(|t| t == "response.function_call_arguments.delta"));
    assert!(n - 6 >= 1, "no argument deltas: {t:?}");
    let args: String = evs[3..n - 3]
        .iter()
        .map(|e| e["delta"].as_str().unwrap())
        .collect();
    assert_eq!(t[n - 3], "response.function_call_arguments.done");
    assert_eq!(evs[n - 3]["arguments"], args.as_str());
    assert_eq!(evs[n - 3]["name"], "get_weather");
    let parsed: Value = serde_json::from_str(&args).unwrap();
    assert_eq!(parsed["city"], "Paris");
    assert_eq!(t[n - 2], "response.output_item.done");
    assert_eq!(t[n - 1], "response.completed");
    let call = &response["output"][0];
    assert_eq!(call["type"], "function_call");
    assert_eq!(call["status"], "completed");
    assert_eq!(call["arguments"], args.as_str());
    let call_id = call["call_id"].as_str().unwrap().to_owned();
    assert!(!call_id.is_empty());
    assert_ne!(call["id"], call["call_id"]);
    assert_eq!(response["tools"], weather_tool());

    // The tool's result goes back; the model answers with text.
    let (status, answer) = create(
        &gw,
        &gw.key,
        json!({"model": d.model(""), "previous_response_id": response["id"],
               "tools": weather_tool(),
               "input": [{"type": "function_call_output", "call_id": call_id,
                          "output": "{\"temp_c\": 21}"}]}),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(output_text(&answer), words());
    assert_eq!(answer["previous_response_id"], response["id"]);
    let sent = mock.requests().last().unwrap().body.clone();
    let messages = sent["messages"].as_array().unwrap();
    match d {
        Dialect::OpenAi => {
            assert_eq!(messages.len(), 3, "{sent}");
            assert_eq!(messages[1]["tool_calls"][0]["id"], call_id.as_str());
            assert_eq!(messages[2]["role"], "tool");
            assert_eq!(messages[2]["tool_call_id"], call_id.as_str());
            assert_eq!(messages[2]["content"], "{\"temp_c\": 21}");
        }
        Dialect::Anthropic => {
            assert_eq!(messages.len(), 3, "{sent}");
            assert_eq!(messages[1]["role"], "assistant");
            let tool_use = messages[1]["content"]
                .as_array()
                .unwrap()
                .iter()
                .find(|b| b["type"] == "tool_use")
                .unwrap_or_else(|| panic!("{sent}"));
            assert_eq!(tool_use["id"], call_id.as_str());
            assert_eq!(tool_use["input"]["city"], "Paris");
            assert_eq!(messages[2]["role"], "user");
            assert_eq!(messages[2]["content"][0]["type"], "tool_result");
            assert_eq!(messages[2]["content"][0]["tool_use_id"], call_id.as_str());
        }
    }
}

async fn max_output_tokens_ends_in_response_incomplete(d: Dialect) {
    let (gw, mock) = start("").await;
    let (_, _, items) = stream(
        &gw,
        json!({"model": d.model(""), "input": "Write an essay.", "stream": true,
               "max_output_tokens": 3}),
    )
    .await;
    let evs = events(&items);
    let response = check_stream(&evs);
    assert_eq!(evs.last().unwrap()["type"], "response.incomplete");
    assert_eq!(response["status"], "incomplete");
    assert_eq!(
        response["incomplete_details"],
        json!({"reason": "max_output_tokens"})
    );
    assert_eq!(response["max_output_tokens"], 3);
    assert_eq!(output_text(&response), CONTENT_WORDS[..3].concat());
    let sent = &mock.requests()[0].body;
    match d {
        Dialect::OpenAi => assert_eq!(sent["max_completion_tokens"], 3, "{sent}"),
        Dialect::Anthropic => assert_eq!(sent["max_tokens"], 3, "{sent}"),
    }
    // The same answer without streaming.
    let (status, r) = create(
        &gw,
        &gw.key,
        json!({"model": d.model(""), "input": "Write an essay.", "max_output_tokens": 3}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(r["status"], "incomplete");
    assert_eq!(r["incomplete_details"]["reason"], "max_output_tokens");
}

/// Asserts a stream that failed after `text` was delivered: `error` then `response.failed`.
fn assert_failed(items: &[Item], text: &str) -> Value {
    let evs = events(items);
    let response = check_stream(&evs);
    let t = types(&evs);
    let n = t.len();
    assert_eq!(t[n - 2], "error", "{t:?}");
    assert_eq!(t[n - 1], "response.failed");
    assert!(evs[n - 2]["message"].is_string(), "{}", evs[n - 2]);
    assert_eq!(response["status"], "failed");
    assert_eq!(response["error"]["code"], "server_error");
    assert!(response["error"]["message"].is_string());
    let deltas: String = evs
        .iter()
        .filter(|e| e["type"] == "response.output_text.delta")
        .map(|e| e["delta"].as_str().unwrap())
        .collect();
    assert_eq!(deltas, text);
    response
}

async fn upstream_error_mid_stream_is_error_then_response_failed(d: Dialect) {
    let (gw, _mock) = start("").await;
    let (status, h, items) = stream(
        &gw,
        json!({"model": d.model("fail"), "input": "hi", "stream": true}),
    )
    .await;
    assert_eq!(status, 200);
    assert_failed(&items, &CONTENT_WORDS[..2].concat());
    let request_id = h["x-request-id"].to_str().unwrap();
    let entry = gw
        .gw
        .ledger
        .entry(request_id)
        .await
        .unwrap()
        .expect("settled before the terminal event");
    assert_eq!(entry.end_reason, "error");
    assert!(entry.stream);
}

async fn connection_reset_mid_stream_is_response_failed(d: Dialect) {
    let (gw, _mock) = start("").await;
    let (status, _, items) = stream(
        &gw,
        json!({"model": d.model("reset"), "input": "hi", "stream": true}),
    )
    .await;
    assert_eq!(status, 200);
    assert_failed(&items, &CONTENT_WORDS[..3].concat());
}

async fn previous_response_id_continues_the_conversation(d: Dialect) {
    let (gw, mock) = start("").await;
    let (status, first) = create(
        &gw,
        &gw.key,
        json!({"model": d.model(""), "input": "My name is Ada.",
               "instructions": "Answer in French."}),
    )
    .await;
    assert_eq!(status, 200, "{first}");
    let (status, second) = create(
        &gw,
        &gw.key,
        json!({"model": d.model(""), "input": "What is my name?",
               "previous_response_id": first["id"], "stream": false}),
    )
    .await;
    assert_eq!(status, 200, "{second}");
    assert_eq!(second["previous_response_id"], first["id"]);
    let sent = &mock.requests()[1].body;
    let messages = sent["messages"].as_array().unwrap();
    // The first turn's instructions are not carried over (as OpenAI documents).
    assert_eq!(messages.len(), 3, "{sent}");
    assert_eq!(messages[0]["role"], "user");
    assert!(messages[0]["content"]
        .to_string()
        .contains("My name is Ada."));
    assert_eq!(messages[1]["role"], "assistant");
    assert!(messages[1]["content"].to_string().contains("quick brown"));
    assert_eq!(messages[2]["role"], "user");
    assert!(sent.get("system").is_none(), "{sent}");

    // A chain of three, streamed.
    let (_, _, items) = stream(
        &gw,
        json!({"model": d.model(""), "input": "And again?", "stream": true,
               "previous_response_id": second["id"]}),
    )
    .await;
    check_stream(&events(&items));
    assert_eq!(
        mock.requests()[2].body["messages"]
            .as_array()
            .unwrap()
            .len(),
        5
    );

    // Another key cannot continue (or read) this conversation.
    let (_, other) = switchyard::auth::create_key(
        &gw.gw.ledger,
        &switchyard::store::ledger::NewKey {
            name: "other".into(),
            credits: switchyard::store::ledger::Nanos::from_usd(Decimal::from(10)).unwrap(),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let (status, err) = create(
        &gw,
        &other,
        json!({"model": d.model(""), "input": "What is my name?",
               "previous_response_id": first["id"]}),
    )
    .await;
    assert_eq!(status, 404, "{err}");
    assert_eq!(err["error"]["param"], "previous_response_id");
    assert_eq!(err["error"]["type"], "invalid_request_error");
    assert_eq!(
        mock.requests().len(),
        3,
        "the other key's request went upstream"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn stored_responses_are_served_to_their_key_only() {
    let (gw, _mock) = start("").await;
    let (_, _, items) = stream(
        &gw,
        json!({"model": "m", "input": "hi", "stream": true, "metadata": {"k": "v"}}),
    )
    .await;
    let streamed = check_stream(&events(&items));
    let id = streamed["id"].as_str().unwrap();
    for prefix in ["/v1", "/api/v1", "/v1/llm"] {
        let resp = harness::client()
            .get(gw.url(&format!("{prefix}/responses/{id}")))
            .bearer_auth(&gw.key)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{prefix}");
        let got: Value = resp.json().await.unwrap();
        assert_eq!(got, streamed, "{prefix}");
    }
    let (_, other) = switchyard::auth::create_key(
        &gw.gw.ledger,
        &switchyard::store::ledger::NewKey {
            name: "other".into(),
            credits: switchyard::store::ledger::Nanos::from_usd(Decimal::from(10)).unwrap(),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    for (key, id) in [(other.as_str(), id), (gw.key.as_str(), "resp_doesnotexist")] {
        let resp = harness::client()
            .get(gw.url(&format!("/v1/responses/{id}")))
            .bearer_auth(key)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 404);
        let err: Value = resp.json().await.unwrap();
        assert_eq!(err["error"]["type"], "invalid_request_error", "{err}");
        assert!(err["error"]["message"].as_str().unwrap().contains(id));
        assert!(err["error"].get("param").is_some());
        assert!(err["error"].get("code").is_some());
    }
    // Without a key: 401.
    let resp = harness::client()
        .get(gw.url(&format!("/v1/responses/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);

    // `store: false` is answered but not kept.
    let (status, unstored) = create(
        &gw,
        &gw.key,
        json!({"model": "m", "input": "hi", "store": false}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(unstored["store"], false);
    let resp = harness::client()
        .get(gw.url(&format!(
            "/v1/responses/{}",
            unstored["id"].as_str().unwrap()
        )))
        .bearer_auth(&gw.key)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_requests_are_openai_shaped_with_param() {
    let (gw, mock) = start("").await;
    let cases = [
        (json!({"model": "m"}), 400, Some("input")),
        (json!({"input": "hi"}), 400, Some("model")),
        (json!({"model": "m", "input": 42}), 400, Some("input")),
        (
            json!({"model": "m", "input": "hi", "tools": [{"type": "web_search"}],
                "tool_choice": {"type": "web_search"}}),
            400,
            Some("tool_choice"),
        ),
        (
            json!({"model": "m", "input": "hi", "metadata": {"n": 1}}),
            400,
            Some("metadata.n"),
        ),
        (
            json!({"model": "m", "input": "hi", "max_output_tokens": -1}),
            400,
            Some("max_output_tokens"),
        ),
        (
            json!({"model": "m", "input": [{"role": "wizard", "content": "hi"}]}),
            400,
            Some("input[0].role"),
        ),
        (json!({"model": "nope", "input": "hi"}), 404, Some("model")),
        (
            json!({"model": "m", "input": "hi", "previous_response_id": "resp_unknown"}),
            404,
            Some("previous_response_id"),
        ),
    ];
    for (body, status, param) in cases {
        let (got, err) = create(&gw, &gw.key, body.clone()).await;
        assert_eq!(got, status, "{body} → {err}");
        assert_eq!(err["error"]["param"], json!(param), "{body} → {err}");
        assert!(err["error"]["message"].is_string());
        assert!(err["error"]["type"].is_string());
    }
    let resp = harness::client()
        .post(gw.url("/v1/responses"))
        .bearer_auth(&gw.key)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let resp = harness::client()
        .post(gw.url("/v1/responses"))
        .json(&json!({"model": "m", "input": "hi"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    assert!(mock.requests().is_empty());
}

async fn cost_is_charged_to_the_keys_balance(d: Dialect) {
    let (gw, _mock) = start("").await;
    let (_, h, items) = stream(
        &gw,
        json!({"model": d.model(""), "input": "hi", "stream": true}),
    )
    .await;
    let response = check_stream(&events(&items));
    let cost: Decimal = response["usage"]["cost"].as_str().unwrap().parse().unwrap();
    assert!(cost > Decimal::ZERO);
    // The entry was written before the terminal event went out.
    let entry = gw
        .gw
        .ledger
        .entry(h["x-request-id"].to_str().unwrap())
        .await
        .unwrap()
        .expect("settled before response.completed");
    assert_eq!(entry.cost.to_usd(), cost);
    assert_eq!(entry.end_reason, "stop");
    assert_eq!(entry.requested_model, d.model(""));
    assert_eq!(entry.completion_tokens, 12);
    let key = gw.gw.ledger.key(&gw.key_id).await.unwrap().unwrap();
    assert_eq!(key.spent.to_usd(), cost);
    assert_eq!(key.balance.to_usd(), Decimal::from(100) - cost);
}

async fn cancelled_stream_drops_the_upstream_and_settles_as_cancelled(d: Dialect) {
    let (gw, mock) = start("").await;
    let resp = post(
        &gw,
        "/v1",
        json!({"model": d.model("long"), "input": "Write a long essay.", "stream": true}),
    )
    .send()
    .await
    .unwrap();
    let request_id = resp.headers()["x-request-id"].to_str().unwrap().to_owned();
    let mut body = resp.bytes_stream();
    let mut seen = String::new();
    while seen.matches("response.output_text.delta\n").count() < 3 {
        let frame = body.next().await.unwrap().unwrap();
        seen.push_str(&String::from_utf8_lossy(&frame));
    }
    drop(body);
    let record = tokio::time::timeout(Duration::from_secs(10), mock.wait_stream_end(0))
        .await
        .expect("the upstream stream never ended");
    assert!(record.client_disconnected, "{record:?}");
    assert!(!record.completed);
    let entry = gw
        .gw
        .ledger
        .wait_for_entry(&request_id, Duration::from_secs(10))
        .await
        .unwrap()
        .expect("the cancelled request was settled");
    assert_eq!(entry.end_reason, "cancelled");
    assert!(
        entry.completion_tokens >= 3 && entry.completion_tokens < 500,
        "{entry:?}"
    );
    assert!(entry.cost.0 > 0);
}

async fn a_failing_first_route_fails_over_before_the_first_byte(d: Dialect) {
    let (gw, mock) = start("").await;
    let (status, h, items) = stream(
        &gw,
        json!({"model": d.model("failover"), "input": "hi", "stream": true}),
    )
    .await;
    assert_eq!(status, 200);
    let response = check_stream(&events(&items));
    assert_eq!(response["status"], "completed");
    assert_eq!(output_text(&response), words());
    assert_eq!(h["x-switchyard-attempts"], "2");
    assert_eq!(mock.requests().len(), 2);
    let entry = gw
        .gw
        .ledger
        .entry(h["x-request-id"].to_str().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(entry.attempts, 2);
    // Not streamed either.
    let (status, r) = create(
        &gw,
        &gw.key,
        json!({"model": d.model("failover"), "input": "hi"}),
    )
    .await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(output_text(&r), words());
}

async fn keep_alives_flow_and_every_delta_is_its_own_frame(d: Dialect) {
    let (gw, _mock) = start("keep_alive_ms = 40").await;
    let resp = post(
        &gw,
        "/v1",
        json!({"model": d.model("slow"), "input": "hi", "stream": true}),
    )
    .send()
    .await
    .unwrap();
    let mut body = resp.bytes_stream();
    let mut arrivals = vec![];
    let mut all = String::new();
    while let Some(frame) = body.next().await {
        let frame = String::from_utf8(frame.unwrap().to_vec()).unwrap();
        let deltas = frame.matches("event: response.output_text.delta\n").count();
        assert!(deltas <= 1, "two deltas in one frame: {frame}");
        if deltas == 1 {
            arrivals.push(Instant::now());
        }
        all.push_str(&frame);
    }
    let items = parse(&all);
    let keep_alives = items
        .iter()
        .filter(|i| **i == Item::Comment("keep-alive".into()))
        .count();
    assert!(keep_alives >= 4, "{items:?}");
    assert_eq!(arrivals.len(), 4, "{all}");
    // The upstream spends 450 ms between its first and last word; the client sees them spread
    // over (about) that time, not held back and released together.
    let spread = arrivals[3] - arrivals[0];
    assert!(
        spread >= Duration::from_millis(250),
        "the deltas arrived within {spread:?}"
    );
    let response = check_stream(&events(&items));
    assert_eq!(output_text(&response), CONTENT_WORDS[..4].concat());
}

async fn stall_past_the_idle_timeout_is_response_failed(d: Dialect) {
    let mock = MockUpstream::start().await.unwrap();
    let text = harness::mock_config(&mock, &config_extra(&mock)).replace(
        "api_key = \"upstream-secret-key\"",
        "api_key = \"upstream-secret-key\"\nidle_timeout_ms = 150",
    );
    let gw = harness::start(&text).await;
    let (status, h, items) = stream(
        &gw,
        json!({"model": d.model("stall"), "input": "hi", "stream": true}),
    )
    .await;
    assert_eq!(status, 200);
    assert_failed(&items, &CONTENT_WORDS[..2].concat());
    // The gateway dropped the stalled upstream and billed what was delivered.
    assert!(mock.wait_stream_end(0).await.client_disconnected);
    let entry = gw
        .gw
        .ledger
        .entry(h["x-request-id"].to_str().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(entry.end_reason, "upstream_timeout");
    assert!(entry.completion_tokens >= 2, "{entry:?}");
}

async fn gzip_compresses_the_event_stream(d: Dialect) {
    use std::io::Write;
    let (gw, _mock) = start("").await;
    let resp = post(
        &gw,
        "/v1",
        json!({"model": d.model(""), "input": "hi", "stream": true}),
    )
    .header("accept-encoding", "gzip")
    .send()
    .await
    .unwrap();
    assert_eq!(resp.headers()["content-encoding"], "gzip");
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let mut decoder = flate2::write::GzDecoder::new(Vec::new());
    decoder.write_all(&resp.bytes().await.unwrap()).unwrap();
    let text = String::from_utf8(decoder.finish().unwrap()).unwrap();
    let response = check_stream(&events(&parse(&text)));
    assert_eq!(output_text(&response), words());
}

/// The recorded first request of Codex CLI 0.169.0 (`crates/wire/tests/fixtures`), its namespace
/// tool moved first so that the mock, which calls the request's first tool, calls one of its
/// functions.
fn codex_request(model: &str) -> Value {
    let text = include_str!("../../../wire/tests/fixtures/codex_request.json");
    let mut req: Value = serde_json::from_str(text).unwrap();
    let tools = req["tools"].as_array_mut().unwrap();
    let namespace = tools.remove(4);
    assert_eq!(namespace["type"], "namespace");
    tools.insert(0, namespace);
    req["model"] = json!(model);
    req
}

async fn codex_request_is_served_with_its_namespace_restored(d: Dialect) {
    let (gw, mock) = start("").await;
    let (status, headers, items) = stream(&gw, codex_request(&d.model("tools"))).await;
    assert_eq!(status, 200);
    // The hosted web_search cannot go up a chat route: left out, and said so.
    assert_eq!(headers["x-switchyard-dropped"], "tools[8]:web_search");
    let sent = mock.requests().last().unwrap().body.clone();
    let names: Vec<String> = sent["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            t.pointer("/function/name")
                .or_else(|| t.get("name"))
                .and_then(Value::as_str)
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(names[0], "multi_agent_v1__close_agent", "{names:?}");
    assert!(!names.iter().any(|n| n.contains("web_search")), "{names:?}");
    assert!(sent.get("client_metadata").is_none(), "{sent}");
    // The mock called the flattened tool; the client sees Codex's own name and namespace.
    let done: Vec<&Value> = items
        .iter()
        .filter_map(|i| match i {
            Item::Event { name, data } if name == "response.output_item.done" => Some(data),
            _ => None,
        })
        .collect();
    let call = &done.last().unwrap()["item"];
    assert_eq!(call["type"], "function_call", "{call}");
    assert_eq!(call["name"], "close_agent", "{call}");
    assert_eq!(call["namespace"], "multi_agent_v1", "{call}");
}

on_both_dialects!(codex_request_is_served_with_its_namespace_restored);
