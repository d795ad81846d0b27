//! Google's Gemini API as a client dialect (`/v1beta/models/{model}:…`), raw HTTP as Gemini CLI
//! sends it: streamed (`alt=sse` events, no comment, no end marker; without `alt=sse` one JSON
//! array) and whole answers over an OpenAI-dialect, an Anthropic and a Gemini route (the last
//! passed through: the mock's own events), billed once as `gemini[.stream]`; a tool call and its
//! answer; the recorded Gemini CLI request (`wire/tests/fixtures/gemini_cli_request.json`) on
//! every dialect; `countTokens`; the model list; each way to send the key; Google-shaped 400, 401,
//! 404 and in-stream errors; `x-switchyard-dropped` for Google's own tools; an early commit whose
//! keep-alives never reach the client; an Anthropic route's signed thinking carried back in a call's
//! `thoughtSignature`, as Gemini CLI returns it. And the official
//! `@google/genai` Node SDK, the version Gemini CLI ships (tests/sdk/node/gemini.mjs: create,
//! stream, thinking, tools, errors), against each dialect.

use std::time::Duration;

use mock_upstream::{MockUpstream, CONTENT_WORDS, REASONING_WORDS};
use serde_json::{json, Value};

use crate::harness::{self, TestGateway};
use crate::responses::config_extra;
use crate::sdk_runner::{command, run as run_script, Lang};

const WAIT: Duration = Duration::from_secs(20);

/// The models of `responses::config_extra` (`m*` OpenAI/DeepSeek, `claude*` Anthropic) and
/// `g`, `g-tools`, `g-think`, `g-fail` on a Gemini-dialect provider, all on one mock.
async fn start() -> (TestGateway, MockUpstream) {
    start_with("", "").await
}

/// [`start`] with top-level config `top` and more tables `more`.
async fn start_with(top: &str, more: &str) -> (TestGateway, MockUpstream) {
    let mock = MockUpstream::start().await.unwrap();
    let gemini = format!(
        r#"
[providers.gem]
kind = "gemini"
base_url = "{base}"
api_key = "upstream-secret-key"

[models.g]
routes = ["gem/gemini-2.5-flash"]
input_price = "0.30"
output_price = "2.50"

[models."g-tools"]
routes = ["gem/gemini-2.5-flash@tool_calls=1"]
input_price = "0.30"
output_price = "2.50"

[models."g-think"]
routes = ["gem/gemini-2.5-pro@reasoning=6"]
input_price = "1.25"
output_price = "10.00"

[models."g-fail"]
routes = ["gem/gemini-2.5-flash@error_after=2"]
input_price = "0.30"
output_price = "2.50"
"#,
        base = mock.base_url()
    );
    let text = harness::mock_config(&mock, &format!("{}{gemini}{more}", config_extra(&mock)));
    (harness::start(&format!("{top}\n{text}")).await, mock)
}

/// Runs `scenario` of tests/sdk/node/gemini.mjs against the models whose names start with
/// `base` (`m`, `claude` or `g`).
async fn sdk(scenario: &str, base: &str) -> Option<Value> {
    let (gw, _mock) = start().await;
    let mut cmd = command(Lang::Node, "gemini", scenario)?;
    cmd.env("SWITCHYARD_BASE_URL", gw.base_url())
        .env("SWITCHYARD_API_KEY", &gw.key)
        .env("SWITCHYARD_MODEL", base)
        .env("SWITCHYARD_REASONING_MODEL", format!("{base}-think"))
        .env("SWITCHYARD_TOOLS_MODEL", format!("{base}-tools"))
        .env("SWITCHYARD_EXPECT_TEXT", CONTENT_WORDS.concat())
        .env("SWITCHYARD_EXPECT_REASONING", REASONING_WORDS[..6].concat())
        .env_remove("GEMINI_API_KEY")
        .env_remove("GOOGLE_API_KEY")
        .env_remove("GOOGLE_GEMINI_BASE_URL");
    run_script(
        cmd,
        &format!("@google/genai {scenario} on {base}"),
        scenario,
    )
    .await
}

macro_rules! sdk_scenarios {
    ($($test:ident: $name:literal;)*) => {
        $(
            mod $test {
                use super::sdk;

                #[tokio::test(flavor = "multi_thread")]
                async fn openai_route() {
                    sdk($name, "m").await;
                }

                #[tokio::test(flavor = "multi_thread")]
                async fn anthropic_route() {
                    sdk($name, "claude").await;
                }

                #[tokio::test(flavor = "multi_thread")]
                async fn gemini_route() {
                    sdk($name, "g").await;
                }
            }
        )*
    };
}

sdk_scenarios! {
    sdk_create: "create";
    sdk_stream: "stream";
    sdk_thinking: "thinking";
    sdk_tools: "tools";
    sdk_errors: "errors";
}

fn post(gw: &TestGateway, path: &str) -> reqwest::RequestBuilder {
    harness::client()
        .post(gw.url(path))
        .header("x-goog-api-key", &gw.key)
}

fn hello() -> Value {
    json!({"contents": [{"role": "user", "parts": [{"text": "hi"}]}],
           "systemInstruction": {"parts": [{"text": "Be brief."}]},
           "generationConfig": {"temperature": 0.5, "maxOutputTokens": 200}})
}

/// The events of a Gemini SSE body: every block one `data:` line (no comment, no event name).
fn sse_events(body: &str) -> Vec<Value> {
    let body = body.replace("\r\n", "\n");
    assert!(body.ends_with("\n\n"), "{body}");
    body.split("\n\n")
        .filter(|b| !b.is_empty())
        .map(|b| {
            let data = b
                .strip_prefix("data: ")
                .unwrap_or_else(|| panic!("not a data event: {b:?}"));
            assert!(!data.contains('\n'), "{b:?}");
            serde_json::from_str(data).unwrap_or_else(|e| panic!("{e}: {data}"))
        })
        .collect()
}

/// Text, thoughts, calls (name, args, id) and the last finish reason of Gemini responses.
#[derive(Debug, Default)]
struct Said {
    text: String,
    thoughts: String,
    calls: Vec<(String, Value, Option<String>)>,
    finish: Option<String>,
}

fn said(events: &[Value]) -> Said {
    let mut s = Said::default();
    for e in events {
        assert!(e.get("error").is_none(), "{e}");
        let c = &e["candidates"][0];
        for p in c["content"]["parts"].as_array().into_iter().flatten() {
            if let Some(call) = p.get("functionCall") {
                s.calls.push((
                    call["name"].as_str().unwrap().to_owned(),
                    call["args"].clone(),
                    call["id"].as_str().map(str::to_owned),
                ));
            } else if let Some(t) = p["text"].as_str() {
                if p["thought"] == true {
                    s.thoughts.push_str(t);
                } else {
                    s.text.push_str(t);
                }
            }
        }
        if let Some(f) = c["finishReason"].as_str() {
            s.finish = Some(f.to_owned());
        }
    }
    s
}

fn usage_of(events: &[Value]) -> Value {
    events
        .iter()
        .rev()
        .find_map(|e| e.get("usageMetadata").cloned())
        .expect("usageMetadata")
}

async fn entry(gw: &TestGateway, id: &str) -> switchyard::store::ledger::UsageEntryRow {
    gw.gw
        .ledger
        .wait_for_entry(id, WAIT)
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("no ledger entry for {id}"))
}

fn cost_of(usage: &Value) -> switchyard::store::ledger::Nanos {
    let cost: rust_decimal::Decimal = usage["cost"].as_str().unwrap().parse().unwrap();
    switchyard::store::ledger::Nanos::from_usd(cost).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sse_stream_on_each_dialect_is_gemini_events_billed_once_as_gemini_stream() {
    let (gw, mock) = start().await;
    for model in ["m", "claude", "g"] {
        let resp = post(
            &gw,
            &format!("/v1beta/models/{model}:streamGenerateContent?alt=sse"),
        )
        .json(&hello())
        .send()
        .await
        .unwrap();
        assert_eq!(resp.status(), 200, "{model}");
        assert_eq!(resp.headers()["content-type"], "text/event-stream");
        assert!(!resp.headers().contains_key("x-switchyard-dropped"));
        let id = harness::request_id(&resp);
        let ev = sse_events(&resp.text().await.unwrap());
        let s = said(&ev);
        assert_eq!(s.text, CONTENT_WORDS.concat(), "{model}");
        assert_eq!(s.finish.as_deref(), Some("STOP"), "{model}");
        assert!(ev.len() > 2, "text goes out as it arrives ({model})");
        let last = ev.last().unwrap();
        assert_eq!(last["candidates"][0]["finishReason"], "STOP", "{model}");
        let usage = usage_of(&ev);
        assert!(usage["promptTokenCount"].as_u64().unwrap() > 0, "{model}");
        assert!(
            usage["candidatesTokenCount"].as_u64().unwrap() > 0,
            "{model}"
        );
        let row = entry(&gw, &id).await;
        assert_eq!(
            row.request_type.as_deref(),
            Some("gemini.stream"),
            "{model}"
        );
        assert!(row.cost.0 > 0, "{model}");
        // The last event carries the usage with the billed cost, translated or passed through.
        assert_eq!(cost_of(&last["usageMetadata"]), row.cost, "{model}");
        let sent = mock.requests().last().unwrap().clone();
        match model {
            "m" | "claude" => {
                assert_eq!(last["modelVersion"], model);
                assert!(ev[..ev.len() - 1]
                    .iter()
                    .all(|e| e.get("usageMetadata").is_none()));
            }
            // Passed through: Gemini got the client's body as it came, on its own URL.
            _ => {
                assert!(
                    sent.path.contains(":streamGenerateContent"),
                    "{}",
                    sent.path
                );
                assert_eq!(sent.body, hello());
            }
        }
        if model == "m" {
            assert_eq!(sent.body["messages"][0]["content"], "Be brief.");
            assert_eq!(sent.body["max_tokens"], 200);
        }
    }
    harness::released(&gw).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn without_alt_sse_the_stream_is_one_json_array() {
    let (gw, _mock) = start().await;
    for model in ["m", "claude", "g"] {
        let resp = post(
            &gw,
            &format!("/v1beta/models/{model}:streamGenerateContent"),
        )
        .json(&hello())
        .send()
        .await
        .unwrap();
        assert_eq!(resp.status(), 200, "{model}");
        assert_eq!(
            resp.headers()["content-type"],
            "application/json; charset=UTF-8"
        );
        let id = harness::request_id(&resp);
        let text = resp.text().await.unwrap();
        assert!(text.starts_with('[') && text.ends_with(']'), "{text}");
        let ev: Vec<Value> = serde_json::from_str(&text).unwrap();
        let s = said(&ev);
        assert_eq!(s.text, CONTENT_WORDS.concat(), "{model}");
        assert_eq!(s.finish.as_deref(), Some("STOP"), "{model}");
        let row = entry(&gw, &id).await;
        assert_eq!(row.request_type.as_deref(), Some("gemini.stream"));
        assert_eq!(cost_of(&usage_of(&ev)), row.cost, "{model}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_whole_answer_on_each_dialect_is_a_generate_content_response() {
    let (gw, mock) = start().await;
    for model in ["m", "claude", "g", "m-think"] {
        let mut body = hello();
        body["generationConfig"]["thinkingConfig"] =
            json!({"includeThoughts": true, "thinkingBudget": 2048});
        let resp = post(&gw, &format!("/v1beta/models/{model}:generateContent"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{model}");
        assert!(resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json"));
        let id = harness::request_id(&resp);
        let v: Value = resp.json().await.unwrap();
        let s = said(std::slice::from_ref(&v));
        assert_eq!(s.text, CONTENT_WORDS.concat(), "{model}: {v}");
        assert_eq!(s.finish.as_deref(), Some("STOP"), "{model}");
        assert_eq!(v["candidates"][0]["content"]["role"], "model");
        let row = entry(&gw, &id).await;
        assert_eq!(row.request_type.as_deref(), Some("gemini"), "{model}");
        assert_eq!(cost_of(&v["usageMetadata"]), row.cost, "{model}");
        let sent = &mock.requests().last().unwrap().body.clone();
        match model {
            "m-think" => {
                assert_eq!(s.thoughts, REASONING_WORDS[..6].concat());
                assert!(v["usageMetadata"]["thoughtsTokenCount"].as_u64().unwrap() > 0);
                assert_eq!(v["modelVersion"], "m-think");
                assert_eq!(sent["reasoning_effort"], "low");
            }
            "claude" => assert_eq!(sent["thinking"]["budget_tokens"], 2048),
            "g" => assert_eq!(sent, &body),
            _ => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_function_call_goes_out_whole_and_its_response_comes_back_to_its_call() {
    let (gw, mock) = start().await;
    let tools = json!([{"functionDeclarations": [{"name": "get_weather",
        "description": "The weather in a city.",
        "parameters": {"type": "OBJECT", "properties": {"city": {"type": "STRING"}}, "required": ["city"]}}]}]);
    for model in ["m-tools", "claude-tools", "g-tools"] {
        let body = json!({"contents": [{"role": "user", "parts": [{"text": "weather?"}]}],
                          "tools": tools});
        let resp = post(
            &gw,
            &format!("/v1beta/models/{model}:streamGenerateContent?alt=sse"),
        )
        .json(&body)
        .send()
        .await
        .unwrap();
        assert_eq!(resp.status(), 200, "{model}");
        let ev = sse_events(&resp.text().await.unwrap());
        let s = said(&ev);
        assert_eq!(s.calls.len(), 1, "{model}: {ev:?}");
        let (name, args, call_id) = &s.calls[0];
        assert!(args.is_object(), "{model}: {args}");
        // Each call is one whole part: no event carries a partial one.
        let call_events = ev
            .iter()
            .filter(|e| e.to_string().contains("functionCall"))
            .count();
        assert_eq!(call_events, 1, "{model}");
        if model != "g-tools" {
            let sent = &mock.requests().last().unwrap().body.clone();
            let declared = &sent["tools"][0];
            let schema = declared
                .pointer("/function/parameters")
                .or_else(|| declared.get("input_schema"))
                .unwrap();
            assert_eq!(schema["properties"]["city"]["type"], "string", "{model}");
        }
        // The next turn: the call and its response, as Gemini CLI sends them back.
        let mut call = json!({"name": name, "args": args});
        if let Some(id) = call_id {
            call["id"] = json!(id);
        }
        let mut response = json!({"name": name, "response": {"output": "sunny"}});
        if let Some(id) = call_id {
            response["id"] = json!(id);
        }
        let next = json!({"contents": [
            {"role": "user", "parts": [{"text": "weather?"}]},
            {"role": "model", "parts": [{"functionCall": call}]},
            {"role": "user", "parts": [{"functionResponse": response}]}],
            "tools": tools});
        let resp = post(&gw, &format!("/v1beta/models/{model}:generateContent"))
            .json(&next)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{model}");
        let sent = &mock.requests().last().unwrap().body.clone();
        match model {
            "m-tools" => {
                let m = sent["messages"].as_array().unwrap();
                let id = m[1]["tool_calls"][0]["id"].as_str().unwrap();
                assert_eq!(m[2]["role"], "tool");
                assert_eq!(m[2]["tool_call_id"], id);
                assert_eq!(m[2]["content"], "sunny");
            }
            "claude-tools" => {
                let m = sent["messages"].as_array().unwrap();
                let id = m[1]["content"][0]["id"].as_str().unwrap();
                assert_eq!(m[2]["content"][0]["type"], "tool_result");
                assert_eq!(m[2]["content"][0]["tool_use_id"], id);
            }
            _ => assert_eq!(sent, &next),
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_recorded_gemini_cli_request_is_served_on_every_dialect() {
    let (gw, mock) = start().await;
    let recorded: Value = serde_json::from_str(include_str!(
        "../../../wire/tests/fixtures/gemini_cli_request.json"
    ))
    .unwrap();
    let body = recorded["body"].as_str().unwrap().to_owned();
    let declared: Value = serde_json::from_str(&body).unwrap();
    let n_tools = declared["tools"][0]["functionDeclarations"]
        .as_array()
        .unwrap()
        .len();
    for model in ["m", "claude", "g"] {
        let resp = harness::client()
            .post(gw.url(&format!(
                "/v1beta/models/{model}:streamGenerateContent?alt=sse"
            )))
            .header("x-goog-api-key", &gw.key)
            .header("content-type", "application/json")
            .header(
                "x-goog-api-client",
                "google-genai-sdk/1.30.0 gl-node/v20.20.2",
            )
            .header("accept-encoding", "gzip, deflate")
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{model}");
        // Gemini CLI asks for gzip, and gets it, a frame at a time.
        assert_eq!(resp.headers()["content-encoding"], "gzip");
        let zipped = resp.bytes().await.unwrap();
        let mut text = String::new();
        std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&zipped[..]), &mut text)
            .unwrap();
        let ev = sse_events(&text);
        // The prompt names a file and read_file is offered: the mock answers with that one call.
        let said = said(&ev);
        assert_eq!(said.calls.len(), 1, "{model}: {text}");
        assert_eq!(said.calls[0].0, "read_file", "{model}");
        assert_eq!(said.calls[0].1["file_path"], "notes.txt", "{model}");
        let sent = mock.requests().last().unwrap().clone();
        let tools = match model {
            "g" => sent.body["tools"][0]["functionDeclarations"].clone(),
            _ => sent.body["tools"].clone(),
        };
        assert_eq!(tools.as_array().unwrap().len(), n_tools, "{model}");
        assert!(sent
            .body
            .to_string()
            .contains("Read notes.txt and quote it"));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn count_tokens_models_and_every_way_to_send_the_key() {
    let (gw, _mock) = start().await;
    let http = harness::client();
    // countTokens: the request itself, or wrapped in generateContentRequest.
    for body in [
        hello(),
        json!({"generateContentRequest": {"model": "models/m", "contents": hello()["contents"]}}),
    ] {
        let resp = post(&gw, "/v1beta/models/m:countTokens")
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let v: Value = resp.json().await.unwrap();
        assert!(v["totalTokens"].as_u64().unwrap() > 0, "{v}");
    }
    // The key: x-goog-api-key, ?key=, a bearer token.
    let list = gw.url("/v1beta/models");
    for req in [
        http.get(&list).header("x-goog-api-key", &gw.key),
        http.get(format!("{list}?key={}", gw.key)),
        http.get(&list).bearer_auth(&gw.key),
    ] {
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), 200);
        let v: Value = resp.json().await.unwrap();
        let names: Vec<&str> = v["models"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["name"].as_str().unwrap())
            .collect();
        assert!(
            names.contains(&"models/m") && names.contains(&"models/g"),
            "{names:?}"
        );
        let m = v["models"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["name"] == "models/m")
            .unwrap();
        assert_eq!(m["baseModelId"], "m");
        assert!(m["inputTokenLimit"].as_u64().unwrap() > 0);
        assert!(m["outputTokenLimit"].as_u64().unwrap() > 0);
        assert_eq!(
            m["supportedGenerationMethods"],
            json!(["generateContent", "streamGenerateContent", "countTokens"])
        );
        assert!(m["thinking"].is_boolean());
    }
    let resp = http
        .post(gw.url(&format!("/v1beta/models/m:generateContent?key={}", gw.key)))
        .json(&hello())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let resp = http
        .post(gw.url("/v1beta/models/m:generateContent"))
        .bearer_auth(&gw.key)
        .json(&hello())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let v: Value = http
        .get(gw.url("/v1beta/models/m"))
        .header("x-goog-api-key", &gw.key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["name"], "models/m");
    // Counted as the Gemini API at the edge.
    let metrics = harness::get_text(gw.url("/metrics")).await;
    assert!(metrics.contains("route=\"gemini\""), "{metrics}");
}

/// A Google error body with this status.
async fn google_error(resp: reqwest::Response, code: u16, status: &str) -> String {
    assert_eq!(resp.status(), code);
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/json"));
    assert!(resp.headers().contains_key("x-request-id"));
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["code"], code, "{v}");
    assert_eq!(v["error"]["status"], status, "{v}");
    v["error"]["message"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn errors_are_google_shaped() {
    let (gw, _mock) = start().await;
    let http = harness::client();
    let url = gw.url("/v1beta/models/m:streamGenerateContent?alt=sse");
    // 401: no key, a wrong key.
    let resp = http.post(&url).json(&hello()).send().await.unwrap();
    google_error(resp, 401, "UNAUTHENTICATED").await;
    let resp = http
        .post(&url)
        .header("x-goog-api-key", "sk-sy-not-a-key")
        .json(&hello())
        .send()
        .await
        .unwrap();
    google_error(resp, 401, "UNAUTHENTICATED").await;
    let resp = http.get(gw.url("/v1beta/models")).send().await.unwrap();
    google_error(resp, 401, "UNAUTHENTICATED").await;
    // 400: not JSON; no contents; a field that cannot be read, named.
    let resp = post(&gw, "/v1beta/models/m:generateContent")
        .body("{not json")
        .send()
        .await
        .unwrap();
    google_error(resp, 400, "INVALID_ARGUMENT").await;
    let resp = post(&gw, "/v1beta/models/m:generateContent")
        .json(&json!({"generationConfig": {}}))
        .send()
        .await
        .unwrap();
    let message = google_error(resp, 400, "INVALID_ARGUMENT").await;
    assert!(message.contains("contents"), "{message}");
    let resp = post(&gw, "/v1beta/models/m:generateContent")
        .json(&json!({"contents": [{"role": "robot", "parts": [{"text": "x"}]}]}))
        .send()
        .await
        .unwrap();
    let message = google_error(resp, 400, "INVALID_ARGUMENT").await;
    assert!(message.contains("contents[0].role"), "{message}");
    // 404: an unknown model, an unknown method, a model the list does not know.
    let resp = post(&gw, "/v1beta/models/nope:generateContent")
        .json(&hello())
        .send()
        .await
        .unwrap();
    google_error(resp, 404, "NOT_FOUND").await;
    let resp = post(&gw, "/v1beta/models/m:embedContent")
        .json(&hello())
        .send()
        .await
        .unwrap();
    google_error(resp, 404, "NOT_FOUND").await;
    let resp = post(&gw, "/v1beta/models/nope:countTokens")
        .json(&hello())
        .send()
        .await
        .unwrap();
    google_error(resp, 404, "NOT_FOUND").await;
    let resp = http
        .get(gw.url("/v1beta/models/nope"))
        .header("x-goog-api-key", &gw.key)
        .send()
        .await
        .unwrap();
    let message = google_error(resp, 404, "NOT_FOUND").await;
    assert!(message.starts_with("models/nope is not found"), "{message}");
    // An upstream failure after the first bytes: Google's error event ends the stream, translated
    // or passed through (the upstream's own error event is replaced by the gateway's, masked).
    for model in ["m-fail", "claude-fail", "g-fail"] {
        let resp = post(
            &gw,
            &format!("/v1beta/models/{model}:streamGenerateContent?alt=sse"),
        )
        .json(&hello())
        .send()
        .await
        .unwrap();
        assert_eq!(resp.status(), 200);
        let ev = sse_events(&resp.text().await.unwrap());
        let text: String = said(&ev[..ev.len() - 1]).text;
        assert_eq!(text, CONTENT_WORDS[..2].concat(), "{model}");
        let last = ev.last().unwrap();
        assert!(
            last["error"]["code"].as_u64().unwrap() >= 500,
            "{model}: {last}"
        );
        assert!(last["error"]["status"].is_string(), "{model}: {last}");
        assert!(last["error"]["message"].is_string(), "{model}: {last}");
        assert_eq!(ev.iter().filter(|e| e.get("error").is_some()).count(), 1);
    }
    harness::released(&gw).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn googles_own_tools_are_dropped_and_named_off_gemini_routes() {
    let (gw, mock) = start().await;
    let mut body = hello();
    body["tools"] = json!([{"googleSearch": {}}, {"codeExecution": {}},
        {"functionDeclarations": [{"name": "f", "parametersJsonSchema": {"type": "object"}}]}]);
    let resp = post(&gw, "/v1beta/models/m:generateContent")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()["x-switchyard-dropped"],
        "tools.0:googleSearch, tools.1:codeExecution"
    );
    let sent = &mock.requests().last().unwrap().body.clone();
    assert_eq!(sent["tools"].as_array().unwrap().len(), 1);
    // A Gemini route carries them: nothing is dropped.
    let resp = post(&gw, "/v1beta/models/g:generateContent")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(!resp.headers().contains_key("x-switchyard-dropped"));
    assert_eq!(&mock.requests().last().unwrap().body, &body);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_early_commit_sends_no_comment_then_passes_through_or_translates() {
    let failing = r#""gem/gemini-2.5-flash@headers_delay_ms=400,status=503""#;
    let more = format!(
        r#"
[models."g-late"]
routes = [{failing}, "gem/gemini-2.5-flash@tokens=4,gap_ms=250"]
input_price = "0.30"
output_price = "2.50"

[models."g-late-to-openai"]
routes = [{failing}, "mock/m@tokens=4"]
input_price = "0.30"
output_price = "2.50"

[routing]
commit_after_ms = 30
max_attempts = 2
"#
    );
    let (gw, _mock) = start_with("keep_alive_ms = 100", &more).await;
    for model in ["g-late", "g-late-to-openai"] {
        for alt in ["?alt=sse", ""] {
            let resp = post(
                &gw,
                &format!("/v1beta/models/{model}:streamGenerateContent{alt}"),
            )
            .json(&hello())
            .send()
            .await
            .unwrap();
            assert_eq!(resp.status(), 200);
            let id = harness::request_id(&resp);
            let text = resp.text().await.unwrap();
            // The keep-alives (of the commit, and between the passed-through words) never reach
            // the client: a parser that wants `data:` at the head of its buffer would stop there.
            assert!(!text.contains("keep-alive"), "{model}{alt}: {text}");
            let ev = match alt {
                "" => serde_json::from_str::<Vec<Value>>(&text)
                    .unwrap_or_else(|e| panic!("{model}: {e}: {text}")),
                _ => sse_events(&text),
            };
            let s = said(&ev);
            assert_eq!(s.text, CONTENT_WORDS[..4].concat(), "{model}{alt}");
            assert_eq!(s.finish.as_deref(), Some("STOP"), "{model}{alt}");
            let row = entry(&gw, &id).await;
            assert_eq!(row.attempts, 2, "{model}{alt}");
            assert_eq!(row.request_type.as_deref(), Some("gemini.stream"));
        }
    }
    harness::released(&gw).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_anthropic_routes_signed_thinking_comes_back_with_the_call_as_gemini_cli_sends_it() {
    let more = r#"
[models."claude-think-tools"]
routes = ["anthropic/mock-claude@reasoning=3,tool_calls=1"]
input_price = "3.00"
output_price = "15.00"
"#;
    let (gw, mock) = start_with("", more).await;
    let thinking = json!({"includeThoughts": true, "thinkingBudget": 2048});
    let tools = json!([{"functionDeclarations": [{"name": "read_file",
        "parametersJsonSchema": {"type": "object", "properties": {"path": {"type": "string"}}}}]}]);
    let first = json!({"contents": [{"role": "user", "parts": [{"text": "read it"}]}],
        "tools": tools, "generationConfig": {"thinkingConfig": thinking}});
    let resp = post(
        &gw,
        "/v1beta/models/claude-think-tools:streamGenerateContent?alt=sse",
    )
    .json(&first)
    .send()
    .await
    .unwrap();
    assert_eq!(resp.status(), 200);
    let ev = sse_events(&resp.text().await.unwrap());
    let call_part = ev
        .iter()
        .flat_map(|e| {
            e["candidates"][0]["content"]["parts"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .find(|p| p.get("functionCall").is_some())
        .expect("a function call");
    assert!(call_part["thoughtSignature"].is_string(), "{call_part}");
    // Gemini CLI keeps the call part (signature included) and drops the thought parts.
    let second = json!({"contents": [
        {"role": "user", "parts": [{"text": "read it"}]},
        {"role": "model", "parts": [call_part.clone()]},
        {"role": "user", "parts": [{"functionResponse": {"id": call_part["functionCall"]["id"],
            "name": call_part["functionCall"]["name"], "response": {"output": "the notes"}}}]}],
        "tools": tools, "generationConfig": {"thinkingConfig": thinking}});
    let resp = post(
        &gw,
        "/v1beta/models/claude-think-tools:streamGenerateContent?alt=sse",
    )
    .json(&second)
    .send()
    .await
    .unwrap();
    assert_eq!(resp.status(), 200);
    sse_events(&resp.text().await.unwrap());
    let sent = mock.requests().last().unwrap().body.clone();
    let assistant = &sent["messages"][1];
    assert_eq!(assistant["role"], "assistant");
    assert_eq!(assistant["content"][0]["type"], "thinking", "{assistant}");
    assert!(
        assistant["content"][0]["signature"].is_string(),
        "{assistant}"
    );
    assert_eq!(assistant["content"][1]["type"], "tool_use", "{assistant}");
}
