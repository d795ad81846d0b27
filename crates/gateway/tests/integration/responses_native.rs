//! The native Responses passthrough (issue 20): a Responses request routed to a provider with
//! `native_responses = true` goes to `{base_url}/responses` as the client sent it (model
//! replaced), and the upstream's answer comes back as it was sent, with `usage.cost` added to the
//! terminal event's `response.usage` (or the Response object's `usage`) once the ledger entry is
//! durable. The upstream is a stub inside this file that plays OpenAI's recorded Responses streams
//! (`shared/fixtures/real/openai`, read in place) and records the body it got; the mock does not
//! serve `/responses`. Failover from a native route to a chat route still works.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::post;
use axum::Router;
use mock_upstream::MockUpstream;
use serde_json::{json, Value};

use crate::harness::{self, TestGateway};

use crate::messages::real_fixtures;

const WAIT: Duration = Duration::from_secs(20);

/// What the stub answers, and every body it received.
#[derive(Clone, Default)]
struct Stub {
    answer: Arc<Mutex<(String, String)>>,
    received: Arc<Mutex<Vec<Value>>>,
}

impl Stub {
    /// Answers the next requests with `body` of `content_type`.
    fn answer(&self, content_type: &str, body: String) {
        *self.answer.lock().unwrap() = (content_type.to_owned(), body);
    }

    fn last_received(&self) -> Value {
        self.received.lock().unwrap().last().cloned().unwrap()
    }
}

async fn responses(State(stub): State<Stub>, body: axum::body::Bytes) -> axum::response::Response {
    let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    stub.received.lock().unwrap().push(v);
    let (content_type, body) = stub.answer.lock().unwrap().clone();
    ([(CONTENT_TYPE, content_type)], body).into_response()
}

/// Starts the stub on a free port; its base URL (with `/v1`).
async fn start_stub(stub: Stub) -> String {
    let app = Router::new()
        .route("/v1/responses", post(responses))
        .with_state(stub);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    format!("http://{addr}/v1")
}

/// A gateway with model `gpt` on the stub (native) and `gpt-failover` on a provider nobody
/// listens on (native too) then the mock's chat route.
async fn start(stub: &Stub) -> (TestGateway, MockUpstream) {
    let base = start_stub(stub.clone()).await;
    let mock = MockUpstream::start().await.unwrap();
    let down = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        drop(l);
        format!("http://{addr}/v1")
    };
    let extra = format!(
        r#"
[providers.openai]
kind = "openai"
base_url = "{base}"
api_key = "upstream-secret-key"
native_responses = true

[providers.down]
kind = "openai"
base_url = "{down}"
api_key = "upstream-secret-key"
native_responses = true

[models.gpt]
routes = ["openai/gpt-5.5"]
input_price = "1.25"
output_price = "10.00"

[models."gpt-failover"]
routes = ["down/gpt-5.5", "mock/m"]
input_price = "1.25"
output_price = "10.00"
"#
    );
    let gw = harness::start(&harness::mock_config(&mock, &extra)).await;
    (gw, mock)
}

/// A Codex-shaped later turn: hosted and namespace tools, fields only the Responses API knows,
/// and the previous turn's encrypted reasoning and namespaced call sent back.
fn client_body(model: &str, stream: bool) -> Value {
    json!({
        "model": model, "stream": stream, "store": false,
        "input": [{"type": "message", "role": "developer",
                   "content": [{"type": "input_text", "text": "Be brief."}]},
                  {"type": "message", "role": "user",
                   "content": [{"type": "input_text", "text": "Say hello."}]},
                  {"type": "reasoning", "id": "rs_1", "summary": [],
                   "encrypted_content": "gAAAAABencrypted=="},
                  {"type": "function_call", "call_id": "call_1", "name": "spawn_agent",
                   "namespace": "multi_agent_v1", "arguments": "{}"},
                  {"type": "function_call_output", "call_id": "call_1", "output": "spawned"}],
        "tools": [{"type": "namespace", "name": "multi_agent_v1", "description": "Agents.",
                   "tools": [{"type": "function", "name": "spawn_agent",
                              "parameters": {"type": "object", "properties": {}}}]},
                  {"type": "web_search", "external_web_access": true}],
        "tool_choice": "auto", "parallel_tool_calls": true,
        "reasoning": {"summary": "auto"}, "include": ["reasoning.encrypted_content"],
        "prompt_cache_key": "conv-1", "client_metadata": {"session_id": "s1"},
    })
}

/// The SSE blocks of a body (each with its trailing blank line).
fn blocks(text: &str) -> Vec<&str> {
    text.split_inclusive("\n\n").collect()
}

fn data_of(block: &str) -> Option<Value> {
    block
        .lines()
        .find_map(|l| l.strip_prefix("data: "))
        .and_then(|d| serde_json::from_str(d).ok())
}

#[tokio::test(flavor = "multi_thread")]
async fn recorded_streams_pass_through_with_only_the_cost_added() {
    let Some(dir) = real_fixtures::dir("openai") else {
        return;
    };
    let stub = Stub::default();
    let (gw, mock) = start(&stub).await;
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let n = p.file_name().unwrap().to_string_lossy();
            n.starts_with("responses-stream-") && n.ends_with(".sse") && !n.contains("error")
        })
        .collect();
    files.sort();
    assert!(!files.is_empty());
    for path in files {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let recorded = std::fs::read_to_string(&path).unwrap();
        stub.answer("text/event-stream", recorded.clone());
        let sent = client_body("gpt", true);
        let resp = harness::client()
            .post(gw.url("/v1/responses"))
            .bearer_auth(&gw.key)
            .json(&sent)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{name}");
        assert!(
            resp.headers().get("x-switchyard-dropped").is_none(),
            "{name}: nothing is dropped on a native route"
        );
        let id = harness::request_id(&resp);
        let client = resp.text().await.unwrap();

        // Up: the client's body, the model replaced.
        let mut want_up = sent.clone();
        want_up["model"] = json!("gpt-5.5");
        assert_eq!(stub.last_received(), want_up, "{name}");

        // Down: the upstream's bytes, the terminal event's usage gaining the cost, then the
        // cost comment.
        let (events, comment) = client
            .rsplit_once("\n\n: ")
            .unwrap_or_else(|| panic!("{name}: no cost comment:\n{client}"));
        let comment: Value = serde_json::from_str(comment.trim_end()).unwrap();
        let cost = comment["cost"].as_str().unwrap().to_owned();
        let got = blocks(events);
        let want = blocks(&recorded);
        assert_eq!(got.len(), want.len(), "{name}");
        let mut terminal_usage = None;
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            let w_data = data_of(w).unwrap();
            let terminal = matches!(
                w_data["type"].as_str(),
                Some("response.completed" | "response.incomplete")
            );
            if !terminal {
                assert_eq!(g.trim_end(), w.trim_end(), "{name}: event {i}");
                continue;
            }
            assert_eq!(i, want.len() - 1, "{name}: the terminal event is last");
            let mut w_data = w_data;
            w_data["response"]["usage"]["cost"] = json!(cost);
            assert_eq!(data_of(g).unwrap(), w_data, "{name}: terminal event");
            assert_eq!(
                g.lines().next(),
                w.lines().next(),
                "{name}: terminal event name"
            );
            terminal_usage = Some(w_data["response"]["usage"].clone());
        }
        let usage = terminal_usage.unwrap_or_else(|| panic!("{name}: no terminal event"));

        // The ledger: one entry, the upstream's usage, the cost the client was told.
        let row = gw
            .gw
            .ledger
            .wait_for_entry(&id, WAIT)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            row.prompt_tokens,
            usage["input_tokens"].as_i64().unwrap(),
            "{name}"
        );
        assert_eq!(
            row.completion_tokens,
            usage["output_tokens"].as_i64().unwrap(),
            "{name}"
        );
        assert_eq!(
            row.cached_tokens,
            usage["input_tokens_details"]["cached_tokens"]
                .as_i64()
                .unwrap_or(0),
            "{name}"
        );
        assert_eq!(
            row.request_type.as_deref(),
            Some("responses.stream"),
            "{name}"
        );
        let cost: rust_decimal::Decimal = cost.parse().unwrap();
        assert_eq!(
            switchyard::store::ledger::Nanos::from_usd(cost).unwrap(),
            row.cost,
            "{name}"
        );
    }
    assert!(mock.requests().is_empty(), "no chat request was made");
    harness::released(&gw).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_whole_response_passes_through_with_usage_cost() {
    let Some(dir) = real_fixtures::dir("openai") else {
        return;
    };
    if !real_fixtures::present(&dir, "responses-nonstream-text.json") {
        return;
    }
    let recorded = std::fs::read_to_string(dir.join("responses-nonstream-text.json")).unwrap();
    let stub = Stub::default();
    let (gw, _mock) = start(&stub).await;
    stub.answer("application/json", recorded.clone());
    let sent = client_body("gpt", false);
    let resp = harness::client()
        .post(gw.url("/v1/responses"))
        .bearer_auth(&gw.key)
        .json(&sent)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let id = harness::request_id(&resp);
    let got: Value = resp.json().await.unwrap();
    let mut want_up = sent;
    want_up["model"] = json!("gpt-5.5");
    assert_eq!(stub.last_received(), want_up);
    let mut want: Value = serde_json::from_str(&recorded).unwrap();
    let cost = got["usage"]["cost"].as_str().unwrap().to_owned();
    want["usage"]["cost"] = json!(cost);
    assert_eq!(got, want);
    let row = gw
        .gw
        .ledger
        .wait_for_entry(&id, WAIT)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        row.prompt_tokens,
        want["usage"]["input_tokens"].as_i64().unwrap()
    );
    assert_eq!(
        row.completion_tokens,
        want["usage"]["output_tokens"].as_i64().unwrap()
    );
    assert_eq!(row.request_type.as_deref(), Some("responses"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_native_route_that_is_down_fails_over_to_a_chat_route() {
    let stub = Stub::default();
    let (gw, mock) = start(&stub).await;
    let resp = harness::client()
        .post(gw.url("/v1/responses"))
        .bearer_auth(&gw.key)
        .json(&client_body("gpt-failover", true))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-switchyard-attempts"], "2");
    // The chat route was sent the translation, without what chat cannot carry, and says so.
    assert_eq!(
        resp.headers()["x-switchyard-dropped"],
        "input[2]:reasoning.encrypted_content, tools[1]:web_search"
    );
    let text = resp.text().await.unwrap();
    assert!(text.contains("event: response.completed"), "{text}");
    let sent = mock.requests().last().unwrap().body.clone();
    assert_eq!(sent["messages"][0]["role"], "system");
    assert_eq!(
        sent["tools"][0]["function"]["name"],
        "multi_agent_v1__spawn_agent"
    );
    // The previous turn's call goes up under the flattened name, its output as a tool message.
    assert_eq!(
        sent["messages"][2]["tool_calls"][0]["function"]["name"],
        "multi_agent_v1__spawn_agent"
    );
    assert_eq!(sent["messages"][3]["role"], "tool");
    assert!(stub.received.lock().unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn an_upstream_error_mid_stream_passes_through_and_is_billed_for_what_was_delivered() {
    let Some(dir) = real_fixtures::dir("openai") else {
        return;
    };
    let (text, quota) = (
        "responses-stream-text.sse",
        "responses-stream-error-insufficient-quota.sse",
    );
    if !real_fixtures::present(&dir, text) || !real_fixtures::present(&dir, quota) {
        return;
    }
    // The recorded text stream up to its first delta, then OpenAI's recorded error ending.
    let text = std::fs::read_to_string(dir.join(text)).unwrap();
    let quota = std::fs::read_to_string(dir.join(quota)).unwrap();
    let first_delta = blocks(&text)
        .iter()
        .position(|b| b.starts_with("event: response.output_text.delta"))
        .unwrap();
    let mut played: String = blocks(&text)[..=first_delta].concat();
    for b in blocks(&quota) {
        if b.starts_with("event: error") || b.starts_with("event: response.failed") {
            played.push_str(b);
        }
    }
    let stub = Stub::default();
    let (gw, _mock) = start(&stub).await;
    stub.answer("text/event-stream", played.clone());
    let resp = harness::client()
        .post(gw.url("/v1/responses"))
        .bearer_auth(&gw.key)
        .json(&client_body("gpt", true))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let id = harness::request_id(&resp);
    let client = resp.text().await.unwrap();
    // Every upstream event as sent, the error and response.failed included, then the cost.
    let (events, comment) = client.rsplit_once("\n\n: ").unwrap();
    assert_eq!(format!("{events}\n\n"), played);
    assert!(comment.contains("\"cost\""), "{comment}");
    let row = gw
        .gw
        .ledger
        .wait_for_entry(&id, WAIT)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.status, Some(200));
    assert!(
        row.error_text
            .as_deref()
            .is_some_and(|t| t.contains("exceeded your current quota")),
        "{:?}",
        row.error_text
    );
    assert!(row.completion_tokens > 0, "the delivered delta is billed");
}

/// What only a route that serves `/responses` itself can carry (an `item_reference`, a stored
/// `prompt`): such a route gets it as it came; no chat route is tried with it; a model without
/// such a route refuses it with a 400 naming it.
#[tokio::test(flavor = "multi_thread")]
async fn what_only_a_native_route_carries_goes_only_to_one() {
    let Some(dir) = real_fixtures::dir("openai") else {
        return;
    };
    if !real_fixtures::present(&dir, "responses-nonstream-text.json") {
        return;
    }
    let recorded = std::fs::read_to_string(dir.join("responses-nonstream-text.json")).unwrap();
    let stub = Stub::default();
    let (gw, mock) = start(&stub).await;
    stub.answer("application/json", recorded);
    let body = |model: &str| {
        json!({"model": model, "store": false,
               "input": [{"type": "item_reference", "id": "msg_earlier"},
                         {"role": "user", "content": "And then?"}]})
    };
    let post = |b: Value| {
        harness::client()
            .post(gw.url("/v1/responses"))
            .bearer_auth(&gw.key)
            .json(&b)
            .send()
    };
    let resp = post(body("gpt")).await.unwrap();
    assert_eq!(resp.status(), 200);
    let mut want_up = body("gpt");
    want_up["model"] = json!("gpt-5.5");
    assert_eq!(stub.last_received(), want_up);

    // The native route is down and the chat route cannot resolve the reference: not tried.
    let before = mock.requests().len();
    let resp = post(body("gpt-failover")).await.unwrap();
    assert_eq!(resp.status(), 502, "{}", resp.text().await.unwrap());
    assert_eq!(mock.requests().len(), before);

    // A model with chat routes only: refused, naming the item.
    let resp = post(body("m")).await.unwrap();
    assert_eq!(resp.status(), 400);
    let e: Value = resp.json().await.unwrap();
    assert_eq!(e["error"]["param"], "input[0].type", "{e}");
    let resp = post(json!({"model": "m", "prompt": {"id": "pmpt_1"}}))
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let e: Value = resp.json().await.unwrap();
    assert_eq!(e["error"]["param"], "prompt", "{e}");
}
