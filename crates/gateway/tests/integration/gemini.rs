//! A `kind = "gemini"` provider on the mock upstream's Gemini dialect, through the gateway:
//! streamed and whole chat answers, reasoning from thought parts, a tool call round trip, the
//! Responses API, failover from a failing Gemini route, billing equal to usage × prices, a safety
//! stop as `content_filter`, a refusal of the request passed to the caller, and the official OpenAI
//! Python SDK reading a Gemini-backed stream.

use mock_upstream::MockUpstream;
use rust_decimal::Decimal;
use serde_json::{json, Value};

use crate::harness::{self, data_events, joined, parse_sse, request_id, user, TestGateway};
use crate::sdk_runner::{command, run as run_script, Lang};

async fn gateway(extra: &str) -> (TestGateway, MockUpstream) {
    let mock = MockUpstream::start().await.unwrap();
    mock.set_expected_key(Some("gemini-test-key".into()));
    let text = format!(
        r#"
demo_credits = "100"
[providers.gem]
kind = "gemini"
base_url = "{base}"
api_key = "gemini-test-key"

[models.g]
routes = ["gem/gemini-2.5-flash"]
input_price = "0.30"
output_price = "2.50"

[models."g-tools"]
routes = ["gem/gemini-2.5-flash@tool_calls=1"]
input_price = "0.30"
output_price = "2.50"

[models."g-thinking"]
routes = ["gem/gemini-2.5-pro@reasoning=6,tokens=5"]
input_price = "1.25"
output_price = "10.00"
{extra}
"#,
        base = mock.base_url()
    );
    (harness::start(&text).await, mock)
}

fn at(tokens: i64, price: &str) -> Decimal {
    Decimal::from(tokens) * price.parse::<Decimal>().unwrap() / Decimal::from(1_000_000)
}

fn last_usage(events: &[Value]) -> Value {
    events
        .iter()
        .rev()
        .find_map(|e| e.get("usage").filter(|u| !u.is_null()).cloned())
        .expect("a chunk with usage")
}

fn finish(events: &[Value]) -> Option<String> {
    events.iter().find_map(|e| {
        e.pointer("/choices/0/finish_reason")
            .and_then(Value::as_str)
            .map(str::to_owned)
    })
}

#[tokio::test]
async fn a_streamed_answer_is_translated_and_billed_at_the_reported_usage() {
    let (gw, mock) = gateway("").await;
    mock.set_options(json!({"tokens": 12, "prompt_tokens": 40}))
        .unwrap();
    let resp = gw
        .chat(json!({"model": "g", "stream": true, "max_tokens": 100,
            "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let id = request_id(&resp);
    let items = parse_sse(&resp.text().await.unwrap());
    let record = mock.wait_stream_end(0).await;
    assert_eq!(joined(&items, "content"), record.text_written);
    let events = data_events(&items);
    assert_eq!(events[0]["choices"][0]["delta"]["role"], "assistant");
    assert_eq!(events[0]["model"], "gemini-2.5-flash");
    assert_eq!(finish(&events).as_deref(), Some("stop"));
    assert!(
        items.contains(&harness::Sse::Done),
        "the stream ends with [DONE]"
    );

    // What Gemini received: its own URL, key header and body shape.
    let req = &mock.requests()[0];
    assert_eq!(
        req.path,
        "/v1/models/gemini-2.5-flash:streamGenerateContent?alt=sse"
    );
    let header = |n: &str| {
        req.headers
            .iter()
            .find(|(k, _)| k == n)
            .map(|(_, v)| v.as_str())
    };
    assert_eq!(header("x-goog-api-key"), Some("gemini-test-key"));
    assert_eq!(header("authorization"), None);
    assert_eq!(
        req.body["systemInstruction"]["parts"][0]["text"],
        "Be brief."
    );
    assert_eq!(req.body["contents"][0]["role"], "user");
    assert_eq!(req.body["generationConfig"]["maxOutputTokens"], 100);

    let usage = last_usage(&events);
    assert_eq!(
        (
            usage["prompt_tokens"].as_i64(),
            usage["completion_tokens"].as_i64()
        ),
        (Some(40), Some(12))
    );
    let e = gw.entry(&id).await;
    assert_eq!((e.prompt_tokens, e.completion_tokens), (40, 12));
    assert_eq!(e.token_source, "provider_reported");
    assert_eq!(e.cost.to_usd(), at(40, "0.30") + at(12, "2.50"));
    assert_eq!(e.cost.to_string(), usage["cost"].as_str().unwrap());
    assert_eq!(e.provider.as_deref(), Some("gem"));
}

#[tokio::test]
async fn a_whole_answer_carries_reasoning_and_bills_thoughts_as_output() {
    let (gw, mock) = gateway("").await;
    let resp = gw
        .chat(
            json!({"model": "g-thinking", "reasoning_effort": "low", "max_tokens": 50,
            "messages": user("think")}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let id = request_id(&resp);
    let body: Value = resp.json().await.unwrap();
    let m = &body["choices"][0]["message"];
    assert_eq!(m["content"].as_str().unwrap().split_whitespace().count(), 5);
    assert_eq!(
        m["reasoning_content"]
            .as_str()
            .unwrap()
            .split_whitespace()
            .count(),
        6
    );
    assert_eq!(body["usage"]["completion_tokens"], 11);
    assert_eq!(
        body["usage"]["completion_tokens_details"]["reasoning_tokens"],
        6
    );
    let sent = &mock.requests()[0];
    assert!(sent.path.ends_with(":generateContent"), "{}", sent.path);
    assert_eq!(
        sent.body["generationConfig"]["thinkingConfig"],
        json!({"includeThoughts": true, "thinkingBudget": 2048})
    );
    assert_eq!(sent.body["generationConfig"]["maxOutputTokens"], 50 + 2048);
    let e = gw.entry(&id).await;
    assert_eq!(e.completion_tokens, 11);
    assert_eq!(
        e.cost.to_usd(),
        at(e.prompt_tokens, "1.25") + at(11, "10.00")
    );
}

#[tokio::test]
async fn streamed_reasoning_arrives_as_reasoning_content() {
    let (gw, mock) = gateway("").await;
    let resp = gw
        .chat(
            json!({"model": "g-thinking", "stream": true, "messages": user("think"),
            "stream_options": {"include_usage": true}}),
        )
        .send()
        .await
        .unwrap();
    let items = parse_sse(&resp.text().await.unwrap());
    let record = mock.wait_stream_end(0).await;
    assert_eq!(
        joined(&items, "reasoning_content"),
        record.reasoning_written
    );
    assert_eq!(joined(&items, "content"), record.text_written);
    let usage = last_usage(&data_events(&items));
    assert_eq!(usage["completion_tokens_details"]["reasoning_tokens"], 6);
}

#[tokio::test]
async fn a_tool_call_round_trip_reaches_gemini_as_function_call_and_response() {
    let (gw, mock) = gateway("").await;
    let tools = json!([{"type": "function", "function": {"name": "get_weather",
        "parameters": {"type": "object", "additionalProperties": false,
            "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]);
    let resp = gw
        .chat(json!({"model": "g-tools", "stream": true, "tools": tools, "messages": user("weather?")}))
        .send()
        .await
        .unwrap();
    let items = parse_sse(&resp.text().await.unwrap());
    let events = data_events(&items);
    let call = events
        .iter()
        .find_map(|e| e.pointer("/choices/0/delta/tool_calls/0").cloned())
        .expect("a tool call");
    assert_eq!(call["function"]["name"], "get_weather");
    let args: Value =
        serde_json::from_str(call["function"]["arguments"].as_str().unwrap()).unwrap();
    assert_eq!(args, json!({"city": "Paris"}));
    assert_eq!(finish(&events).as_deref(), Some("tool_calls"));
    let call_id = call["id"].as_str().unwrap().to_owned();
    assert!(!call_id.is_empty());
    let decl = &mock.requests()[0].body["tools"][0]["functionDeclarations"][0];
    assert_eq!(decl["name"], "get_weather");
    assert!(decl["parameters"].get("additionalProperties").is_none());

    // Round trip: the caller sends the result back.
    let resp = gw
        .chat(json!({"model": "g", "tools": tools, "messages": [
            {"role": "user", "content": "weather?"},
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": call_id, "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]},
            {"role": "tool", "tool_call_id": call_id, "content": "{\"temp\": 21}"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let sent = &mock.requests()[1].body;
    assert_eq!(
        sent["contents"][1],
        json!({"role": "model", "parts": [{"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}}]})
    );
    assert_eq!(
        sent["contents"][2],
        json!({"role": "user", "parts": [{"functionResponse": {"name": "get_weather", "response": {"temp": 21}}}]})
    );
}

#[tokio::test]
async fn the_responses_api_runs_over_gemini() {
    let (gw, mock) = gateway("").await;
    mock.set_options(json!({"tokens": 4})).unwrap();
    let resp = harness::client()
        .post(gw.url("/v1/responses"))
        .bearer_auth(&gw.key)
        .json(&json!({"model": "g", "input": "hello", "instructions": "Be brief."}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["status"], "completed");
    let text = body["output"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|o| o.pointer("/content/0/text").and_then(Value::as_str))
        .collect::<String>();
    assert_eq!(text.split_whitespace().count(), 4);
    assert_eq!(body["usage"]["output_tokens"], 4);
    let sent = &mock.requests()[0];
    assert!(sent.path.contains("gemini-2.5-flash:"), "{}", sent.path);
    assert_eq!(
        sent.body["systemInstruction"]["parts"][0]["text"],
        "Be brief."
    );
}

#[tokio::test]
async fn a_failing_gemini_route_fails_over_to_the_next() {
    let extra = r#"
[providers.backup]
kind = "openai"
base_url = "BASE"
[models.pair]
routes = ["gem/gemini-2.5-flash@status=503", "backup/m"]
input_price = "1.00"
output_price = "1.00"
"#;
    let mock = MockUpstream::start().await.unwrap();
    let (gw, gmock) = gateway(&extra.replace("BASE", &mock.base_url())).await;
    let resp = gw
        .chat(json!({"model": "pair", "stream": true, "messages": user("hi")}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let id = request_id(&resp);
    let items = parse_sse(&resp.text().await.unwrap());
    assert!(!joined(&items, "content").is_empty());
    assert!(gmock.requests()[0].path.contains(":streamGenerateContent"));
    assert_eq!(mock.requests()[0].path, "/v1/chat/completions");
    let e = gw.entry(&id).await;
    assert_eq!(e.provider.as_deref(), Some("backup"));
    assert!(e.attempts >= 2, "{}", e.attempts);
}

#[tokio::test]
async fn a_refused_request_is_the_callers_400_and_a_bad_key_is_the_routes() {
    let (gw, mock) = gateway("").await;
    mock.set_options(json!({"status": 400})).unwrap();
    let resp = gw
        .chat(json!({"model": "g", "messages": user("hi")}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("invalid argument"),
        "{body}"
    );

    mock.set_options(json!({})).unwrap();
    mock.set_expected_key(Some("another-key".into()));
    let resp = gw
        .chat(json!({"model": "g", "messages": user("hi")}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 502, "a bad key is not the caller's fault");
    let text = resp.text().await.unwrap();
    assert!(!text.contains("gemini-test-key"), "{text}");
}

#[tokio::test]
async fn a_safety_stop_is_content_filter() {
    let (gw, mock) = gateway("").await;
    mock.set_options(json!({"finish": "content_filter", "tokens": 3}))
        .unwrap();
    let resp = gw
        .chat(json!({"model": "g", "stream": true, "messages": user("hi")}))
        .send()
        .await
        .unwrap();
    let items = parse_sse(&resp.text().await.unwrap());
    assert_eq!(
        finish(&data_events(&items)).as_deref(),
        Some("content_filter")
    );
    let body: Value = gw
        .chat(json!({"model": "g", "messages": user("hi")}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["choices"][0]["finish_reason"], "content_filter");
}

#[tokio::test]
async fn a_request_gemini_cannot_express_is_a_400_naming_the_field() {
    let (gw, mock) = gateway("").await;
    let resp = gw
        .chat(json!({"model": "g", "messages": [
            {"role": "tool", "tool_call_id": "call_unknown", "content": "x"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["param"], "messages[0].tool_call_id");
    assert!(mock.requests().is_empty());
}

/// Runs one scenario of the Python SDK script; `None` when the SDK is not installed (and not
/// required).
async fn run(scenario: &str, model: &str, gw: &TestGateway) -> Option<Value> {
    let mut cmd = command(Lang::Python, "anthropic_dialect", scenario)?;
    cmd.env("SWITCHYARD_BASE_URL", gw.base_url())
        .env("SWITCHYARD_API_KEY", &gw.key)
        .env("SWITCHYARD_MODEL", model);
    run_script(cmd, &format!("Python {scenario}"), scenario).await
}

#[tokio::test(flavor = "multi_thread")]
async fn python_sdk_reads_a_gemini_backed_stream() {
    let (gw, mock) = gateway("").await;
    let Some(facts) = run("reasoning_stream", "g-thinking", &gw).await else {
        return;
    };
    let record = mock.wait_stream_end(0).await;
    assert_eq!(
        facts["reasoning"],
        record.reasoning_written.as_str(),
        "{facts}"
    );
    assert_eq!(facts["content"], record.text_written.as_str(), "{facts}");
    assert!(mock.requests()[0].path.contains(":streamGenerateContent"));
}

#[tokio::test(flavor = "multi_thread")]
async fn python_sdk_reassembles_gemini_tool_calls() {
    let (gw, mock) = gateway(
        r#"
[models."g-two-tools"]
routes = ["gem/gemini-2.5-flash@tool_calls=2"]
input_price = "0.30"
output_price = "2.50"
"#,
    )
    .await;
    let Some(facts) = run("tool_call_stream", "g-two-tools", &gw).await else {
        return;
    };
    let calls = facts["calls"].as_array().unwrap();
    assert_eq!(calls.len(), 2, "{facts}");
    assert_ne!(calls[0]["id"], calls[1]["id"], "{facts}");
    assert_eq!(facts["finish_reason"], "tool_calls");
    assert!(mock.requests()[0].path.contains(":streamGenerateContent"));
}

#[tokio::test]
async fn a_key_google_calls_invalid_is_read_again_once() {
    let mock = MockUpstream::start().await.unwrap();
    let dir = std::env::temp_dir().join(format!("sy-gemini-key-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("key");
    std::fs::write(&file, "old-key").unwrap();
    let text = format!(
        r#"
demo_credits = "100"
[providers.gem]
kind = "gemini"
base_url = "{}"
api_key = "file:{}"
[models.g]
routes = ["gem/gemini-2.5-flash"]
input_price = "0.30"
output_price = "2.50"
"#,
        mock.base_url(),
        file.display()
    );
    let gw = harness::start(&text).await;
    // The key was rotated: Google answers 400 API_KEY_INVALID to the old one.
    mock.set_expected_key(Some("new-key".into()));
    std::fs::write(&file, "new-key").unwrap();
    let resp = gw
        .chat(json!({"model": "g", "messages": user("hi")}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let keys: Vec<String> = mock
        .requests()
        .iter()
        .filter_map(|r| {
            r.headers
                .iter()
                .find(|(k, _)| k == "x-goog-api-key")
                .map(|(_, v)| v.clone())
        })
        .collect();
    assert_eq!(keys, ["old-key", "new-key"]);
    let _ = std::fs::remove_dir_all(&dir);
}
