//! End-to-end tests of the mock over real HTTP: the OpenAI, DeepSeek and Anthropic stream and body
//! shapes, errors and auth, `fail_times`, the injected faults, option sources, and the stream records
//! (including a client that goes away while the stream is stalled).

use std::time::{Duration, Instant};

use mock_upstream::{Dialect, MockOptions, MockUpstream};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Upper bound on any single wait, so a broken mock fails the test instead of hanging it.
const PATIENCE: Duration = Duration::from_secs(10);

async fn post(mock: &MockUpstream, path: &str, body: Value) -> reqwest::Response {
    post_with(mock, path, body, &[]).await
}

async fn post_with(
    mock: &MockUpstream,
    path: &str,
    body: Value,
    headers: &[(&str, &str)],
) -> reqwest::Response {
    let mut req = reqwest::Client::new()
        .post(format!("{}{path}", mock.base_url()))
        .header("content-type", "application/json")
        .body(body.to_string());
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.send().await.expect("request sent")
}

/// Reads the whole body, chunk by chunk, failing if the body ends abnormally.
async fn read_body(mut resp: reqwest::Response) -> Result<String, reqwest::Error> {
    let mut out = Vec::new();
    while let Some(chunk) = resp.chunk().await? {
        out.extend_from_slice(&chunk);
    }
    Ok(String::from_utf8(out).expect("utf-8 body"))
}

/// The `data:` payloads of an OpenAI-style stream, checking the framing on the way.
fn data_lines(body: &str) -> Vec<String> {
    assert!(body.ends_with("\n\n"), "stream must end with a blank line");
    body.trim_end_matches("\n\n")
        .split("\n\n")
        .map(|event| {
            assert!(!event.contains('\n'), "one line per event: {event:?}");
            event
                .strip_prefix("data: ")
                .unwrap_or_else(|| panic!("not a data line: {event:?}"))
                .to_string()
        })
        .collect()
}

/// The `(event, data)` pairs of an Anthropic stream.
fn anthropic_events(body: &str) -> Vec<(String, Value)> {
    body.trim_end_matches("\n\n")
        .split("\n\n")
        .map(|event| {
            let (name, data) = event.split_once('\n').expect("event and data lines");
            let name = name
                .strip_prefix("event: ")
                .expect("event line")
                .to_string();
            let data = data.strip_prefix("data: ").expect("data line");
            (name, serde_json::from_str(data).expect("data is JSON"))
        })
        .collect()
}

fn chat(model: &str, stream: bool) -> Value {
    json!({"model": model, "stream": stream, "messages": [{"role": "user", "content": "say three words"}]})
}

#[tokio::test]
async fn openai_stream_has_the_recorded_shape() {
    let mock = MockUpstream::start().await.unwrap();
    let mut body = chat("gpt-4o@tokens=3", true);
    body["stream_options"] = json!({"include_usage": true});
    let resp = post(&mock, "/chat/completions", body).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()["content-type"],
        "text/event-stream; charset=utf-8"
    );
    let text = read_body(resp).await.unwrap();
    let lines = data_lines(&text);
    assert_eq!(lines.last().unwrap(), "[DONE]");
    let chunks: Vec<Value> = lines[..lines.len() - 1]
        .iter()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            assert_eq!(&v.to_string(), l, "compact JSON");
            v
        })
        .collect();
    // role, 3 tokens, finish, usage
    assert_eq!(chunks.len(), 6);
    for c in &chunks {
        assert_eq!(c["id"], chunks[0]["id"]);
        assert_eq!(c["created"], chunks[0]["created"]);
        assert_eq!(c["model"], "gpt-4o");
        assert_eq!(c["object"], "chat.completion.chunk");
        assert!(c["system_fingerprint"].is_string());
    }
    assert_eq!(
        chunks[0]["choices"][0]["delta"],
        json!({"role": "assistant", "content": "", "refusal": null})
    );
    assert_eq!(chunks[0]["choices"][0]["logprobs"], Value::Null);
    let words: Vec<&str> = chunks[1..4]
        .iter()
        .map(|c| {
            assert_eq!(c["choices"][0]["finish_reason"], Value::Null);
            assert_eq!(c["usage"], Value::Null);
            c["choices"][0]["delta"]["content"].as_str().unwrap()
        })
        .collect();
    assert_eq!(words.concat(), " the quick brown");
    assert_eq!(chunks[4]["choices"][0]["delta"], json!({}));
    assert_eq!(chunks[4]["choices"][0]["finish_reason"], "stop");
    assert_eq!(chunks[5]["choices"], json!([]));
    assert_eq!(chunks[5]["usage"]["completion_tokens"], 3);
    // "say three words": 4 + 3
    assert_eq!(chunks[5]["usage"]["prompt_tokens"], 7);
    assert_eq!(chunks[5]["usage"]["total_tokens"], 10);

    let rec = tokio::time::timeout(PATIENCE, mock.wait_stream_end(0))
        .await
        .unwrap();
    assert!(rec.completed && !rec.client_disconnected);
    assert_eq!(rec.dialect, Dialect::OpenAi);
    assert_eq!(rec.tokens_written, 3);
    assert_eq!(rec.text_written, " the quick brown");
    assert_eq!(rec.request_index, 0);
    assert_eq!(mock.requests()[0].path, "/v1/chat/completions");
    assert_eq!(mock.requests()[0].body["model"], "gpt-4o@tokens=3");
}

#[tokio::test]
async fn openai_stream_without_include_usage_has_no_usage() {
    let mock = MockUpstream::start().await.unwrap();
    let text = read_body(post(&mock, "/chat/completions", chat("mock-chat@tokens=2", true)).await)
        .await
        .unwrap();
    let lines = data_lines(&text);
    assert_eq!(lines.len(), 5, "role, 2 tokens, finish, [DONE]");
    for l in &lines[..4] {
        let v: Value = serde_json::from_str(l).unwrap();
        assert!(v.get("usage").is_none(), "{l}");
    }
    // usage=true forces the usage chunk.
    let text = read_body(
        post(
            &mock,
            "/chat/completions",
            chat("mock-chat@tokens=2,usage=true", true),
        )
        .await,
    )
    .await
    .unwrap();
    let lines = data_lines(&text);
    let usage: Value = serde_json::from_str(&lines[lines.len() - 2]).unwrap();
    assert_eq!(usage["usage"]["completion_tokens"], 2);
}

#[tokio::test]
async fn deepseek_reasoning_streams_first_with_deepseek_usage() {
    let mock = MockUpstream::start().await.unwrap();
    let mut body = chat("deepseek-reasoner", true);
    body["mock"] = json!({"tokens": 2, "reasoning": 3, "cached_tokens": 5});
    let text = read_body(post(&mock, "/chat/completions", body).await)
        .await
        .unwrap();
    let lines = data_lines(&text);
    assert_eq!(lines.last().unwrap(), "[DONE]");
    let chunks: Vec<Value> = lines[..lines.len() - 1]
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(chunks.len(), 1 + 3 + 2 + 1);
    assert_eq!(
        chunks[0]["choices"][0]["delta"],
        json!({"role": "assistant", "content": null, "reasoning_content": ""})
    );
    let reasoning: String = chunks[1..4]
        .iter()
        .map(|c| {
            assert_eq!(c["choices"][0]["delta"]["content"], Value::Null);
            c["choices"][0]["delta"]["reasoning_content"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(reasoning, " let me think");
    assert_eq!(
        chunks[4]["choices"][0]["delta"],
        json!({"content": " the", "reasoning_content": null})
    );
    let last = &chunks[6];
    assert_eq!(last["choices"][0]["finish_reason"], "stop");
    let usage = &last["usage"];
    assert_eq!(usage["completion_tokens"], 5);
    assert_eq!(usage["completion_tokens_details"]["reasoning_tokens"], 3);
    assert_eq!(usage["prompt_tokens"], 7);
    assert_eq!(usage["prompt_cache_hit_tokens"], 5);
    assert_eq!(usage["prompt_cache_miss_tokens"], 2);
    assert_eq!(usage["prompt_tokens_details"]["cached_tokens"], 5);
    for c in &chunks[..6] {
        assert_eq!(c["usage"], Value::Null);
    }

    let rec = mock.wait_stream_end(0).await;
    assert_eq!(rec.dialect, Dialect::DeepSeek);
    assert_eq!(rec.tokens_written, 5);
    assert_eq!(rec.reasoning_written, " let me think");
    assert_eq!(rec.text_written, " the quick");

    // demo-reasoner reasons by default, non-streaming too.
    let resp = post(
        &mock,
        "/chat/completions",
        chat("demo-reasoner@tokens=1", false),
    )
    .await;
    let v: Value = resp.json_text().await;
    assert_eq!(v["model"], "demo-reasoner");
    assert_eq!(v["choices"][0]["message"]["content"], " the");
    assert_eq!(
        v["choices"][0]["message"]["reasoning_content"],
        " let me think about this first then answer"
    );
    assert_eq!(
        v["usage"]["completion_tokens_details"]["reasoning_tokens"],
        8
    );
}

#[tokio::test]
async fn anthropic_stream_follows_the_event_sequence() {
    let mock = MockUpstream::start().await.unwrap();
    let body = json!({"model": "claude-x@tokens=2,reasoning=2", "max_tokens": 100, "stream": true,
        "messages": [{"role": "user", "content": "hi"}]});
    let resp = post(&mock, "/messages", body).await;
    assert_eq!(resp.status(), 200);
    let text = read_body(resp).await.unwrap();
    let events = anthropic_events(&text);
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "message_start",
            "content_block_start",
            "ping",
            "content_block_delta",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "content_block_start",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop"
        ]
    );
    for (name, data) in &events {
        assert_eq!(data["type"], name.as_str());
    }
    let start = &events[0].1["message"];
    assert_eq!(start["model"], "claude-x");
    assert_eq!(start["usage"]["input_tokens"], 5);
    assert_eq!(start["stop_reason"], Value::Null);
    assert_eq!(events[1].1["content_block"]["type"], "thinking");
    assert_eq!(events[3].1["delta"]["type"], "thinking_delta");
    assert_eq!(events[5].1["delta"]["type"], "signature_delta");
    assert_eq!(events[7].1["index"], 1);
    assert_eq!(
        events[8].1["delta"],
        json!({"type": "text_delta", "text": " the"})
    );
    assert_eq!(events[11].1["delta"]["stop_reason"], "end_turn");
    assert_eq!(events[11].1["usage"]["output_tokens"], 4);
    assert!(text.contains("event: ping\ndata: {\"type\": \"ping\"}\n\n"));

    let rec = mock.wait_stream_end(0).await;
    assert_eq!(rec.dialect, Dialect::Anthropic);
    assert_eq!(rec.tokens_written, 4);
    assert_eq!(rec.reasoning_written, " let me");
}

#[tokio::test]
async fn anthropic_non_stream_bodies_and_tool_use() {
    let mock = MockUpstream::start().await.unwrap();
    let body = json!({"model": "mock-claude@tokens=3", "max_tokens": 2,
        "messages": [{"role": "user", "content": "hi"}]});
    let v: Value = post(&mock, "/messages", body).await.json_text().await;
    assert_eq!(v["type"], "message");
    assert_eq!(v["role"], "assistant");
    assert_eq!(
        v["content"],
        json!([{"type": "text", "text": " the quick"}])
    );
    assert_eq!(v["stop_reason"], "max_tokens");
    assert_eq!(v["usage"]["output_tokens"], 2);
    assert_eq!(v["usage"]["input_tokens"], 5);

    let body = json!({"model": "mock-claude", "max_tokens": 100, "stream": true,
        "mock": {"tool_calls": 2},
        "tools": [{"name": "lookup", "input_schema": {"type": "object", "properties": {"q": {"type": "string"}}}}],
        "messages": [{"role": "user", "content": "hi"}]});
    let text = read_body(post(&mock, "/messages", body).await)
        .await
        .unwrap();
    let events = anthropic_events(&text);
    let starts: Vec<&Value> = events
        .iter()
        .filter(|(n, _)| n == "content_block_start")
        .map(|(_, d)| &d["content_block"])
        .collect();
    assert_eq!(starts.len(), 2);
    assert_eq!(starts[0]["type"], "tool_use");
    assert_eq!(starts[0]["name"], "lookup");
    assert_ne!(starts[0]["id"], starts[1]["id"]);
    let args: String = events
        .iter()
        .filter(|(_, d)| d["index"] == 1 && d["delta"]["type"] == "input_json_delta")
        .map(|(_, d)| d["delta"]["partial_json"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        serde_json::from_str::<Value>(&args).unwrap(),
        json!({"q": "Tokyo"})
    );
    let delta = events.iter().find(|(n, _)| n == "message_delta").unwrap();
    assert_eq!(delta.1["delta"]["stop_reason"], "tool_use");
    assert_eq!(mock.wait_stream_end(0).await.tokens_written, 10);
}

#[tokio::test]
async fn openai_tool_calls_stream_in_the_exact_shape() {
    let mock = MockUpstream::start().await.unwrap();
    let mut body = chat("gpt-4o@tool_calls=2", true);
    body["tools"] = json!([{"type": "function", "function": {"name": "get_time",
        "parameters": {"type": "object", "properties": {"zone": {"type": "string"}}}}}]);
    let text = read_body(post(&mock, "/chat/completions", body).await)
        .await
        .unwrap();
    let lines = data_lines(&text);
    let chunks: Vec<Value> = lines[..lines.len() - 1]
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        chunks[0]["choices"][0]["delta"],
        json!({"role": "assistant", "content": null})
    );
    let mut seen = [false, false];
    let mut args = [String::new(), String::new()];
    for c in &chunks[1..chunks.len() - 1] {
        let delta = &c["choices"][0]["delta"];
        assert!(delta.get("role").is_none());
        let call = &delta["tool_calls"][0];
        let k = call["index"].as_u64().unwrap() as usize;
        if seen[k] {
            assert_eq!(
                call.as_object().unwrap().keys().collect::<Vec<_>>(),
                ["index", "function"]
            );
            assert_eq!(
                call["function"]
                    .as_object()
                    .unwrap()
                    .keys()
                    .collect::<Vec<_>>(),
                ["arguments"]
            );
        } else {
            seen[k] = true;
            assert_eq!(call["type"], "function");
            assert_eq!(call["function"]["name"], "get_time");
            assert_eq!(call["function"]["arguments"], "");
            assert!(call["id"].as_str().unwrap().starts_with("call_"));
        }
        args[k].push_str(call["function"]["arguments"].as_str().unwrap());
    }
    assert_eq!(seen, [true, true]);
    assert_eq!(
        serde_json::from_str::<Value>(&args[0]).unwrap(),
        json!({"zone": "Paris"})
    );
    assert_eq!(
        serde_json::from_str::<Value>(&args[1]).unwrap(),
        json!({"zone": "Tokyo"})
    );
    assert_eq!(
        chunks.last().unwrap()["choices"][0]["finish_reason"],
        "tool_calls"
    );
    let rec = mock.wait_stream_end(0).await;
    assert_eq!(rec.tokens_written, 10);
    assert_eq!(rec.text_written, "");
}

#[tokio::test]
async fn error_statuses_carry_vendor_bodies_and_retry_after() {
    let mock = MockUpstream::start().await.unwrap();
    let resp = post(
        &mock,
        "/chat/completions",
        chat("gpt-4o@status=429,retry_after=7", true),
    )
    .await;
    assert_eq!(resp.status(), 429);
    assert_eq!(resp.headers()["retry-after"], "7");
    let v: Value = resp.json_text().await;
    assert_eq!(v["error"]["code"], "rate_limit_exceeded");
    assert_eq!(v["error"]["param"], Value::Null);

    let body = json!({"model": "claude-x", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]});
    let resp = post_with(&mock, "/messages", body, &[("x-mock-status", "529")]).await;
    assert_eq!(resp.status(), 529);
    let v: Value = resp.json_text().await;
    assert_eq!(v["type"], "error");
    assert_eq!(v["error"]["type"], "overloaded_error");
    assert!(mock.streams().is_empty(), "errors are not streams");
}

#[tokio::test]
async fn expected_key_is_checked_per_dialect_and_can_change() {
    let mock = MockUpstream::start_with(MockOptions {
        expected_key: Some("k1".into()),
        ..MockOptions::default()
    })
    .await
    .unwrap();
    let resp = post_with(
        &mock,
        "/chat/completions",
        chat("gpt-4o", false),
        &[("authorization", "Bearer nope")],
    )
    .await;
    assert_eq!(resp.status(), 401);
    let v: Value = resp.json_text().await;
    assert_eq!(v["error"]["code"], "invalid_api_key");
    let ok = post_with(
        &mock,
        "/chat/completions",
        chat("gpt-4o", false),
        &[("authorization", "Bearer k1")],
    )
    .await;
    assert_eq!(ok.status(), 200);

    let body = json!({"model": "claude-x", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]});
    let resp = post_with(
        &mock,
        "/messages",
        body.clone(),
        &[("authorization", "Bearer k1")],
    )
    .await;
    assert_eq!(resp.status(), 401);
    let v: Value = resp.json_text().await;
    assert_eq!(v["error"]["type"], "authentication_error");
    let ok = post_with(&mock, "/messages", body.clone(), &[("x-api-key", "k1")]).await;
    assert_eq!(ok.status(), 200);

    mock.set_expected_key(Some("k2".into()));
    let resp = post_with(&mock, "/messages", body.clone(), &[("x-api-key", "k1")]).await;
    assert_eq!(resp.status(), 401);
    mock.set_expected_key(None);
    assert_eq!(post(&mock, "/messages", body).await.status(), 200);
    assert_eq!(mock.requests().len(), 6);
    assert!(mock.requests()[0]
        .headers
        .contains(&("authorization".to_string(), "Bearer nope".to_string())));
}

#[tokio::test]
async fn fail_times_fails_only_the_first_requests_per_key() {
    let mock = MockUpstream::start().await.unwrap();
    let statuses = |key: &'static str| {
        let mock = &mock;
        async move {
            let mut out = Vec::new();
            for _ in 0..3 {
                let mut body = chat("gpt-4o", false);
                body["mock"] = json!({"fail_times": 2, "fail_key": key, "status": 500});
                out.push(
                    post(mock, "/chat/completions", body)
                        .await
                        .status()
                        .as_u16(),
                );
            }
            out
        }
    };
    assert_eq!(statuses("a").await, [500, 500, 200]);
    assert_eq!(statuses("b").await, [500, 500, 200]);
    // Without a status, fail_times answers 503.
    let resp = post(
        &mock,
        "/chat/completions",
        chat("gpt-4o@fail_times=1,fail_key=c", false),
    )
    .await;
    assert_eq!(resp.status(), 503);
}

#[tokio::test]
async fn reset_after_breaks_the_body() {
    let mock = MockUpstream::start().await.unwrap();
    let mut resp = post(
        &mock,
        "/chat/completions",
        chat("gpt-4o@tokens=5,reset_after=2", true),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let mut received = Vec::new();
    let broken = loop {
        match resp.chunk().await {
            Ok(Some(chunk)) => received.extend_from_slice(&chunk),
            Ok(None) => break false,
            Err(_) => break true,
        }
    };
    assert!(broken, "the client must see a broken body, not a clean end");
    let received = String::from_utf8(received).unwrap();
    assert!(
        received.contains("\" quick\""),
        "tokens before the reset arrive"
    );
    assert!(!received.contains("\" brown\"") && !received.contains("[DONE]"));
    let rec = mock.wait_stream_end(0).await;
    assert!(!rec.completed);
    assert!(!rec.client_disconnected);
    assert_eq!(rec.tokens_written, 2);
    assert_eq!(rec.text_written, " the quick");

    let resp = post(
        &mock,
        "/chat/completions",
        chat("gpt-4o@reset_after=0", false),
    )
    .await;
    assert_eq!(resp.status(), 200);
    assert!(
        read_body(resp).await.is_err(),
        "non-streamed body broken too"
    );
}

/// Sends a raw HTTP/1.1 request and reads until `marker` has arrived; returns the open socket.
async fn raw_stream_until(mock: &MockUpstream, body: Value, marker: &str) -> TcpStream {
    let mut sock = TcpStream::connect(mock.addr()).await.unwrap();
    let body = body.to_string();
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: mock\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    sock.write_all(head.as_bytes()).await.unwrap();
    sock.write_all(body.as_bytes()).await.unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&seen).contains(marker) {
        let n = tokio::time::timeout(PATIENCE, sock.read(&mut buf))
            .await
            .expect("data in time")
            .unwrap();
        assert!(n > 0, "connection closed before {marker:?}");
        seen.extend_from_slice(&buf[..n]);
    }
    sock
}

#[tokio::test]
async fn a_client_leaving_a_stalled_stream_is_recorded_at_once() {
    let mock = MockUpstream::start().await.unwrap();
    let sock = raw_stream_until(
        &mock,
        chat("gpt-4o@tokens=5,stall_after=1", true),
        "\" the\"",
    )
    .await;
    let running = mock.streams();
    assert_eq!(running.len(), 1);
    assert!(!running[0].completed && !running[0].client_disconnected);
    assert_eq!(running[0].tokens_written, 1);

    drop(sock);
    // The stall never ends by itself, so an end seen at all was caused by the client leaving.
    let rec = tokio::time::timeout(PATIENCE, mock.wait_stream_end(0))
        .await
        .expect("the disconnect must be noticed");
    assert!(rec.client_disconnected);
    assert!(!rec.completed);
    assert_eq!(rec.tokens_written, 1);
    assert!(rec.last_token_at.is_some());
}

#[tokio::test]
async fn a_client_leaving_during_a_slow_gap_is_recorded_at_once() {
    let mock = MockUpstream::start().await.unwrap();
    let sock = raw_stream_until(
        &mock,
        chat("gpt-4o@tokens=5,gap_ms=60000", true),
        "\" the\"",
    )
    .await;
    drop(sock);
    // Noticed within PATIENCE (10 s), long before the 60 s gap would have ended: the mock does not
    // wait for its next write to see the client gone.
    let rec = tokio::time::timeout(PATIENCE, mock.wait_stream_end(0))
        .await
        .unwrap();
    assert!(rec.client_disconnected);
    assert_eq!(rec.tokens_written, 1);
}

#[tokio::test]
async fn dropping_the_mock_ends_stalled_streams() {
    let mock = MockUpstream::start().await.unwrap();
    let _sock = raw_stream_until(&mock, chat("gpt-4o@stall_after=0", true), "assistant").await;
    let state = mock.state().clone();
    drop(mock);
    let rec = tokio::time::timeout(PATIENCE, state.wait_stream_end(0))
        .await
        .unwrap();
    assert!(!rec.completed && !rec.client_disconnected);
    assert_eq!(rec.tokens_written, 0);
}

#[tokio::test]
async fn malformed_and_error_events_are_written_where_asked() {
    let mock = MockUpstream::start().await.unwrap();
    let text = read_body(
        post(
            &mock,
            "/chat/completions",
            chat("gpt-4o@tokens=3,malformed_after=1", true),
        )
        .await,
    )
    .await
    .unwrap();
    let at = text
        .find("data: {\"choices\": [\n\n")
        .expect("malformed line");
    assert!(text[..at].contains("\" the\""));
    assert!(!text[..at].contains("\" quick\""));
    assert!(text.ends_with("data: [DONE]\n\n"));
    assert!(text.contains("\" brown\""));

    let text = read_body(
        post(
            &mock,
            "/chat/completions",
            chat("gpt-4o@tokens=3,error_after=2", true),
        )
        .await,
    )
    .await
    .unwrap();
    assert!(text.ends_with(
        "data: {\"error\":{\"message\":\"mock upstream error\",\"type\":\"server_error\",\"param\":null,\"code\":\"server_error\"}}\n\n"
    ));
    assert!(!text.contains("[DONE]"));
    assert!(text.contains("\" quick\"") && !text.contains("\" brown\""));
    let rec = mock.wait_stream_end(1).await;
    assert_eq!(rec.tokens_written, 2);

    let body = json!({"model": "claude-x@error_after=1", "max_tokens": 50, "stream": true,
        "messages": [{"role": "user", "content": "hi"}]});
    let text = read_body(post(&mock, "/messages", body).await)
        .await
        .unwrap();
    assert!(text.ends_with("event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n"));
    assert!(!text.contains("message_stop"));
}

#[tokio::test]
async fn options_come_from_model_headers_and_body_in_that_order() {
    let mock = MockUpstream::start().await.unwrap();
    let content = |v: Value| {
        v["choices"][0]["message"]["content"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let v = post(&mock, "/chat/completions", chat("gpt-4o@tokens=4", false))
        .await
        .json_text()
        .await;
    assert_eq!(content(v.clone()), " the quick brown fox");
    assert_eq!(v["model"], "gpt-4o");
    assert_eq!(v["usage"]["completion_tokens"], 4);
    let v = post_with(
        &mock,
        "/chat/completions",
        chat("gpt-4o@tokens=4", false),
        &[("x-mock-tokens", "2")],
    )
    .await
    .json_text()
    .await;
    assert_eq!(content(v), " the quick");
    let mut body = chat("gpt-4o@tokens=4", false);
    body["mock"] = json!({"tokens": 1});
    let v = post_with(&mock, "/chat/completions", body, &[("x-mock-tokens", "2")])
        .await
        .json_text()
        .await;
    assert_eq!(content(v), " the");

    // A typo is a 400, not a silent default.
    let resp = post(&mock, "/chat/completions", chat("gpt-4o@tokenz=1", false)).await;
    assert_eq!(resp.status(), 400);
    let v: Value = resp.json_text().await;
    assert!(v["error"]["message"].as_str().unwrap().contains("tokenz"));

    // max_tokens truncates with finish_reason length.
    let mut body = chat("gpt-4o", false);
    body["max_completion_tokens"] = json!(2);
    let v = post(&mock, "/chat/completions", body)
        .await
        .json_text()
        .await;
    assert_eq!(v["choices"][0]["finish_reason"], "length");
    assert_eq!(content(v), " the quick");
}

fn anthropic_body(stream: bool) -> Value {
    json!({"model": "claude-x", "max_tokens": 50, "stream": stream,
        "messages": [{"role": "user", "content": "hi"}]})
}

#[tokio::test]
async fn server_options_apply_to_every_request_and_requests_may_override_them() {
    let mock = MockUpstream::start().await.unwrap();
    mock.set_options(json!({"tokens": 3, "prompt_tokens": 50}))
        .unwrap();
    for _ in 0..2 {
        let v = post(&mock, "/chat/completions", chat("gpt-4o", false))
            .await
            .json_text()
            .await;
        assert_eq!(v["usage"]["completion_tokens"], 3);
        assert_eq!(v["usage"]["prompt_tokens"], 50);
    }
    let v = post(&mock, "/messages", anthropic_body(false))
        .await
        .json_text()
        .await;
    assert_eq!(v["usage"]["output_tokens"], 3, "{v}");
    let v = post(&mock, "/chat/completions", chat("gpt-4o@tokens=1", false))
        .await
        .json_text()
        .await;
    assert_eq!(v["usage"]["completion_tokens"], 1);
    // A bad option is refused and the previous ones stay.
    assert!(mock.set_options(json!({"tokenz": 1})).is_err());
    let v = post(&mock, "/chat/completions", chat("gpt-4o", false))
        .await
        .json_text()
        .await;
    assert_eq!(v["usage"]["completion_tokens"], 3);
    // Setting replaces: back to the defaults.
    mock.set_options(json!({})).unwrap();
    let v = post(&mock, "/chat/completions", chat("gpt-4o", false))
        .await
        .json_text()
        .await;
    assert_eq!(v["usage"]["completion_tokens"], 12);
}

#[tokio::test]
async fn the_demo_ignores_every_option_a_request_carries() {
    let demo = MockUpstream::start_demo().await.unwrap();
    let plain = post(&demo, "/chat/completions", chat("demo-chat", false))
        .await
        .json_text()
        .await;
    let mut body = chat("demo-chat@tokens=100000,status=500,ttft_ms=60000", false);
    body["mock"] = json!({"prompt_tokens": 4_000_000_000u64, "tokens": 100_000, "status": 503});
    let resp = post_with(
        &demo,
        "/chat/completions",
        body,
        &[("x-mock-status", "500"), ("x-mock-stall-after", "1")],
    )
    .await;
    assert_eq!(resp.status(), 200);
    let steered: Value = resp.json_text().await;
    assert_eq!(steered["usage"], plain["usage"]);
    assert_eq!(steered["choices"], plain["choices"]);
    assert_eq!(steered["model"], "demo-chat");
    let mut body = anthropic_body(true);
    body["mock"] = json!({"tokens": 100_000, "error_after": 1});
    let resp = post_with(&demo, "/messages", body, &[("x-mock-tokens", "100000")]).await;
    assert_eq!(resp.status(), 200);
    let events = anthropic_events(&read_body(resp).await.unwrap());
    let (_, delta) = events
        .iter()
        .find(|(name, _)| name == "message_delta")
        .expect("the stream ends normally");
    assert_eq!(delta["usage"]["output_tokens"], 12, "{delta}");
    // The demo's operator still decides.
    demo.set_options(json!({"tokens": 2})).unwrap();
    let v = post(&demo, "/chat/completions", chat("demo-chat", false))
        .await
        .json_text()
        .await;
    assert_eq!(v["usage"]["completion_tokens"], 2);
}

#[tokio::test]
async fn ttft_delays_the_first_chunk_not_the_headers() {
    let mock = MockUpstream::start().await.unwrap();
    let sent = Instant::now();
    let mut resp = post(
        &mock,
        "/chat/completions",
        chat("gpt-4o@tokens=2,ttft_ms=1000", true),
    )
    .await;
    // An ordering, not a clock: the headers are here while the first token is not yet written.
    let open = mock.streams();
    assert!(
        open.len() == 1 && open[0].tokens_written == 0 && open[0].last_token_at.is_none(),
        "the headers waited for the first token: {open:?}"
    );
    resp.chunk().await.unwrap().expect("first chunk");
    assert!(sent.elapsed() >= Duration::from_millis(1000));
    read_body(resp).await.unwrap();
    let rec = mock.wait_stream_end(0).await;
    let first_token = rec.last_token_at.unwrap() - rec.started_at;
    assert!(first_token >= Duration::from_millis(1000));
}

#[tokio::test]
async fn models_bad_requests_and_unknown_paths() {
    let mock = MockUpstream::start().await.unwrap();
    let v: Value = reqwest::get(format!("{}/models", mock.base_url()))
        .await
        .unwrap()
        .json_text()
        .await;
    assert_eq!(v["object"], "list");
    let ids: Vec<&str> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert!(ids.contains(&"demo-chat") && ids.contains(&"demo-reasoner"));

    let resp = reqwest::Client::new()
        .post(format!("{}/chat/completions", mock.base_url()))
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    assert_eq!(mock.requests()[1].body, Value::Null);

    let resp = reqwest::get(format!("{}/nowhere", mock.base_url()))
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    let v: Value = resp.json_text().await;
    assert_eq!(v["error"]["type"], "invalid_request_error");

    let body = json!({"model": "claude-x", "messages": []});
    assert_eq!(
        post(&mock, "/messages", body).await.status(),
        400,
        "max_tokens is required"
    );
}

/// reqwest is built without its `json` feature; parse the text instead.
trait JsonText {
    async fn json_text(self) -> Value;
}

impl JsonText for reqwest::Response {
    async fn json_text(self) -> Value {
        let text = self.text().await.expect("body");
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
    }
}
