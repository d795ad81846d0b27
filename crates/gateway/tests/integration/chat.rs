//! Chat Completions through the gateway, as a client sees it: the stream byte for byte, usage
//! and cost, reasoning, keep-alives, in-stream errors, gzip, unknown fields, cancellation and the
//! absence of batching.

use std::io::Write;

use futures_util::StreamExt;
use serde_json::{json, Value};

use crate::harness::{
    self, data_events, joined, parse_sse, start_with_mock, start_with_mock_top, user, Sse,
};

const WORDS: &str = " the quick brown fox jumps over lazy dog and runs away again";

#[tokio::test]
async fn stream_is_byte_for_byte_what_the_contract_promises() {
    let (gw, mock) = start_with_mock("").await;
    let resp = gw
        .chat(json!({"model": "m", "stream": true, "messages": user("hi")}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let h = resp.headers();
    assert_eq!(h["content-type"], "text/event-stream");
    assert_eq!(h["cache-control"], "no-cache");
    assert_eq!(h["x-accel-buffering"], "no");
    assert!(h["x-request-id"].to_str().unwrap().starts_with("req_"));
    let body = resp.text().await.unwrap();
    // Every event is `data: <one line>` + blank line; nothing but data and comments.
    assert!(!body.contains("event:") && !body.contains("\r"));
    let items = parse_sse(&body);
    let events = data_events(&items);
    assert_eq!(events[0]["choices"][0]["delta"]["role"], "assistant");
    assert!(events
        .iter()
        .skip(1)
        .all(|e| e["choices"][0]["delta"].get("role").is_none()));
    assert!(events
        .iter()
        .all(|e| e["object"] == "chat.completion.chunk"));
    assert_eq!(joined(&items, "content"), WORDS);
    let last = events.last().unwrap();
    assert_eq!(last["choices"][0]["finish_reason"], "stop");
    let usage = &last["usage"];
    assert_eq!(usage["completion_tokens"], 12);
    let prompt = usage["prompt_tokens"].as_u64().unwrap();
    assert_eq!(usage["total_tokens"].as_u64().unwrap(), prompt + 12);
    // 2.50 and 10.00 USD per 1M tokens.
    let expected = rust_decimal::Decimal::from(prompt * 2_500 + 12 * 10_000)
        / rust_decimal::Decimal::from(1_000_000_000u64);
    assert_eq!(usage["cost"], expected.normalize().to_string());
    // Then [DONE], then the cost comment, and nothing else.
    let n = items.len();
    assert_eq!(items[n - 2], Sse::Done);
    let Sse::Comment(comment) = &items[n - 1] else {
        panic!("no cost comment: {items:?}")
    };
    let comment: Value = serde_json::from_str(comment).unwrap();
    assert_eq!(comment["cost"], usage["cost"]);
    assert_eq!(comment["prompt_tokens"], prompt);
    assert_eq!(comment["completion_tokens"], 12);
    let input: rust_decimal::Decimal = comment["input_price"].as_str().unwrap().parse().unwrap();
    let output: rust_decimal::Decimal = comment["output_price"].as_str().unwrap().parse().unwrap();
    assert_eq!(
        (input + output).normalize().to_string(),
        comment["cost"].as_str().unwrap()
    );
    assert!(body.ends_with("}\n\n"));
    // Byte for byte: every chunk before the last is the upstream's own; the last is the upstream's
    // finish chunk carrying the usage (which the upstream sent in a chunk of its own, the client
    // not having asked for one) in the contract's shape, with the cost; then `[DONE]` and the
    // cost comment.
    let upstream = String::from_utf8(mock.wait_stream_end(0).await.bytes_written).unwrap();
    let up: Vec<&str> = upstream.split_inclusive("\n\n").collect();
    let client: Vec<&str> = body.split_inclusive("\n\n").collect();
    let (up_n, n) = (up.len(), client.len());
    // upstream: ..., finish chunk, usage chunk, [DONE]; client: ..., finish+usage, [DONE], comment
    assert_eq!(client[..n - 3], up[..up_n - 3], "the passed-through chunks");
    let expected_usage = format!(
        "\"usage\":{{\"prompt_tokens\":{prompt},\"completion_tokens\":12,\"total_tokens\":{},\
         \"prompt_tokens_details\":{{\"cached_tokens\":0}},\
         \"completion_tokens_details\":{{\"reasoning_tokens\":0}},\"cost\":\"{}\"}}",
        prompt + 12,
        usage["cost"].as_str().unwrap()
    );
    assert_eq!(
        client[n - 3],
        up[up_n - 3].replacen("\"usage\":null", &expected_usage, 1),
        "the finish chunk"
    );
    assert_eq!(client[n - 2], "data: [DONE]\n\n");
    assert_eq!(client[n - 1], format!(": {}\n\n", comment_text(&body)));
}

/// The cost comment's JSON, as sent.
fn comment_text(body: &str) -> &str {
    body.trim_end()
        .rsplit("\n: ")
        .next()
        .expect("a cost comment")
}

#[tokio::test]
async fn include_usage_adds_the_openai_usage_chunk() {
    let (gw, _mock) = start_with_mock("").await;
    let body = gw
        .chat(json!({"model": "m", "stream": true, "messages": user("hi"),
                     "stream_options": {"include_usage": true}}))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let events = data_events(&parse_sse(&body));
    let n = events.len();
    assert_eq!(events[n - 2]["choices"][0]["finish_reason"], "stop");
    assert!(events[n - 2]["usage"]["cost"].is_string());
    assert_eq!(events[n - 1]["choices"], json!([]));
    assert_eq!(events[n - 1]["usage"]["completion_tokens"], 12);
    assert_eq!(
        events[n - 1]["usage"]["cost"],
        events[n - 2]["usage"]["cost"]
    );
}

#[tokio::test]
async fn without_include_usage_no_usage_only_chunk_reaches_the_client() {
    let (gw, mock) = start_with_mock("").await;
    let body = gw
        .chat(json!({"model": "m", "stream": true, "messages": user("hi")}))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let events = data_events(&parse_sse(&body));
    assert!(events
        .iter()
        .all(|e| e["choices"].as_array().is_some_and(|c| !c.is_empty())));
    // The gateway asked the upstream for usage even though the client did not.
    let sent = &mock.requests()[0].body;
    assert_eq!(sent["stream_options"]["include_usage"], true);
}

#[tokio::test]
async fn reasoning_content_streams_before_the_answer() {
    let (gw, mock) = start_with_mock("").await;
    mock.set_options(json!({"reasoning": 6, "tokens": 4}))
        .unwrap();
    let body = gw
        .chat(json!({"model": "deepseek-r", "stream": true, "messages": user("prove it")}))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let items = parse_sse(&body);
    let events = data_events(&items);
    let first_content = events.iter().position(|e| {
        e["choices"][0]["delta"]["content"]
            .as_str()
            .is_some_and(|s| !s.is_empty())
    });
    let last_reasoning = events.iter().rposition(|e| {
        e["choices"][0]["delta"]["reasoning_content"]
            .as_str()
            .is_some_and(|s| !s.is_empty())
    });
    assert!(last_reasoning.unwrap() < first_content.unwrap());
    assert!(!joined(&items, "reasoning_content").is_empty());
    let usage = &events.last().unwrap()["usage"];
    assert_eq!(usage["completion_tokens_details"]["reasoning_tokens"], 6);
    assert_eq!(usage["completion_tokens"], 10);
}

#[tokio::test]
async fn non_streaming_answer_carries_usage_cost() {
    let (gw, _mock) = start_with_mock("").await;
    let resp = gw
        .chat(json!({"model": "m", "messages": user("hi")}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/json");
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["choices"][0]["message"]["content"], WORDS);
    assert!(v["usage"]["cost"]
        .as_str()
        .unwrap()
        .parse::<rust_decimal::Decimal>()
        .is_ok());
}

#[tokio::test]
async fn all_three_prefixes_serve_chat_and_models() {
    let (gw, _mock) = start_with_mock("").await;
    for prefix in ["/v1", "/api/v1", "/v1/llm"] {
        let resp = harness::client()
            .post(gw.url(&format!("{prefix}/chat/completions")))
            .bearer_auth(&gw.key)
            .json(&json!({"model": "m", "messages": user("hi")}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{prefix}");
        let models: Value = harness::client()
            .get(gw.url(&format!("{prefix}/models")))
            .bearer_auth(&gw.key)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let ids: Vec<_> = models["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["id"].clone())
            .collect();
        assert_eq!(ids, vec![json!("deepseek-r"), json!("m")], "{prefix}");
    }
}

#[tokio::test]
async fn unknown_request_and_chunk_fields_survive_the_trip() {
    let (gw, mock) = start_with_mock("").await;
    let body = gw
        .chat(json!({"model": "m", "stream": true, "messages": user("hi"),
                     "thinking": {"type": "enabled"}, "x_custom": [1, 2]}))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let sent = &mock.requests()[0].body;
    assert_eq!(sent["thinking"], json!({"type": "enabled"}));
    assert_eq!(sent["x_custom"], json!([1, 2]));
    assert_eq!(sent["model"], "m");
    // The mock's chunks carry system_fingerprint and obfuscation, which the gateway does not know.
    let events = data_events(&parse_sse(&body));
    assert!(events[1]["system_fingerprint"].is_string());
    assert!(events[1].get("obfuscation").is_some());
}

#[tokio::test]
async fn keep_alive_comments_flow_while_the_upstream_is_silent() {
    let (gw, mock) = start_with_mock_top("keep_alive_ms = 40", "").await;
    mock.set_options(json!({"tokens": 3, "gap_ms": 250}))
        .unwrap();
    let body = gw
        .chat(json!({"model": "m", "stream": true, "messages": user("hi")}))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let items = parse_sse(&body);
    let keep_alives = items
        .iter()
        .filter(|i| **i == Sse::Comment("keep-alive".into()))
        .count();
    assert!(keep_alives >= 4, "{items:?}");
    assert_eq!(joined(&items, "content"), " the quick brown");
    assert!(items.contains(&Sse::Done));
}

async fn stream_ending(mock_opts: Value) -> (Vec<Sse>, u16) {
    let (gw, mock) = start_with_mock("").await;
    mock.set_options(mock_opts).unwrap();
    let resp = gw
        .chat(json!({"model": "m", "stream": true, "messages": user("hi")}))
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (parse_sse(&resp.text().await.unwrap()), status)
}

fn assert_error_then_done(items: &[Sse], content: &str) {
    assert_eq!(joined(items, "content"), content);
    let n = items.len();
    let Sse::Data(err) = &items[n - 3] else {
        panic!("{items:?}")
    };
    assert!(err["error"]["message"].is_string(), "{err}");
    assert!(err["error"]["type"].is_string());
    assert!(err["error"].get("code").is_some());
    assert_eq!(items[n - 2], Sse::Done);
    assert!(matches!(&items[n - 1], Sse::Comment(c) if c.contains("\"cost\"")));
}

#[tokio::test]
async fn upstream_error_after_the_first_byte_is_an_error_event_then_done() {
    let (items, status) = stream_ending(json!({"error_after": 2})).await;
    assert_eq!(status, 200);
    assert_error_then_done(&items, " the quick");
}

#[tokio::test]
async fn upstream_reset_mid_stream_is_an_error_event_then_done() {
    let (items, status) = stream_ending(json!({"reset_after": 3})).await;
    assert_eq!(status, 200);
    assert_error_then_done(&items, " the quick brown");
}

#[tokio::test]
async fn malformed_upstream_line_mid_stream_is_an_error_event_then_done() {
    let (items, status) = stream_ending(json!({"malformed_after": 2})).await;
    assert_eq!(status, 200);
    assert_error_then_done(&items, " the quick");
}

/// An upstream event whose text is not UTF-8 ends the stream with an error event, `[DONE]` and
/// the cost, and the request is settled for what was delivered; no invalid byte reaches the client.
#[tokio::test]
async fn invalid_utf8_from_the_upstream_mid_stream_is_an_error_event_and_a_settlement() {
    let (gw, mock) = start_with_mock("").await;
    mock.set_options(json!({"invalid_utf8_after": 2})).unwrap();
    let resp = gw
        .chat(json!({"model": "m", "stream": true, "messages": user("hi")}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let id = resp.headers()["x-request-id"].to_str().unwrap().to_owned();
    let bytes = resp.bytes().await.unwrap();
    let body = std::str::from_utf8(&bytes).expect("the client gets UTF-8 only");
    let items = parse_sse(body);
    assert_error_then_done(&items, " the quick");
    let entry = gw
        .gw
        .ledger
        .wait_for_entry(&id, std::time::Duration::from_secs(10))
        .await
        .unwrap()
        .expect("settled");
    assert_eq!(entry.end_reason, "error", "{entry:?}");
    assert_eq!(entry.completion_tokens, 2, "{entry:?}");
}

#[tokio::test]
async fn stall_past_the_idle_timeout_is_an_error_event_then_done() {
    let mock = mock_upstream::MockUpstream::start().await.unwrap();
    let text = harness::mock_config(&mock, "").replace(
        "api_key = \"upstream-secret-key\"\n\n[providers.mockds]",
        "api_key = \"upstream-secret-key\"\nidle_timeout_ms = 150\n\n[providers.mockds]",
    );
    let gw = harness::start(&text).await;
    mock.set_options(json!({"stall_after": 2})).unwrap();
    let body = gw
        .chat(json!({"model": "m", "stream": true, "messages": user("hi")}))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let items = parse_sse(&body);
    assert_error_then_done(&items, " the quick");
    let err = data_events(&items)
        .into_iter()
        .find(|e| e.get("error").is_some())
        .unwrap();
    assert_eq!(err["error"]["code"], 504);
    // The gateway dropped the stalled upstream.
    assert!(mock.wait_stream_end(0).await.client_disconnected);
}

#[tokio::test]
async fn gzip_compresses_and_flushes_every_event() {
    let (gw, mock) = start_with_mock("").await;
    mock.set_options(json!({"tokens": 3, "gap_ms": 200}))
        .unwrap();
    let resp = gw
        .chat(json!({"model": "m", "stream": true, "messages": user("hi")}))
        .header("accept-encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["content-encoding"], "gzip");
    let mut body = resp.bytes_stream();
    let mut decoder = flate2::write::GzDecoder::new(Vec::new());
    // The first event is readable before the upstream has written its last token: compression
    // holds nothing back (an ordering, not a clock: the mock's tokens are 200 ms apart).
    while !String::from_utf8_lossy(decoder.get_ref()).contains(" the") {
        let frame = body.next().await.expect("more frames").unwrap();
        decoder.write_all(&frame).unwrap();
        decoder.flush().unwrap();
    }
    let upstream = mock.streams();
    assert!(
        upstream.len() == 1 && !upstream[0].completed && upstream[0].tokens_written < 3,
        "the first token was held back until the upstream was done: {upstream:?}"
    );
    while let Some(frame) = body.next().await {
        decoder.write_all(&frame.unwrap()).unwrap();
    }
    let text = String::from_utf8(decoder.finish().unwrap()).unwrap();
    let items = parse_sse(&text);
    assert_eq!(joined(&items, "content"), " the quick brown");
    assert!(items.contains(&Sse::Done));
}

/// Each chunk reaches the client as soon as the upstream sends it, before the next one exists:
/// the upstream stalls after its k-th token, so the k tokens the client reads were relayed without
/// waiting for more, and while the upstream was still connected (an ordering, not a clock: the
/// gateway gives a stalled upstream up only after its idle timeout, 75 s by default). Keep-alives
/// are pushed out of reach, so that nothing but the token itself can flush the stream.
#[tokio::test]
async fn every_chunk_arrives_as_its_own_event_before_the_next_is_sent() {
    let (gw, mock) = start_with_mock_top("keep_alive_ms = 600000", "").await;
    for k in 1..=3 {
        mock.set_options(json!({"tokens": 5, "stall_after": k}))
            .unwrap();
        let resp = gw
            .chat(json!({"model": "m", "stream": true, "messages": user("hi")}))
            .send()
            .await
            .unwrap();
        let mut body = resp.bytes_stream();
        let mut buf = String::new();
        let contents = loop {
            let events = data_events(&parse_sse(&buf));
            assert!(
                events.iter().all(|e| e.get("error").is_none()),
                "the stream failed before its {k} tokens: {buf}"
            );
            let contents: Vec<String> = events
                .iter()
                .filter_map(|e| e["choices"][0]["delta"]["content"].as_str())
                .filter(|c| !c.is_empty())
                .map(str::to_owned)
                .collect();
            if contents.len() >= k {
                break contents;
            }
            let frame = body.next().await.expect("more frames").unwrap();
            buf.push_str(std::str::from_utf8(&frame).unwrap());
        };
        assert_eq!(contents.len(), k, "{buf}");
        let upstream = mock.streams().pop().unwrap();
        assert!(
            upstream.tokens_written == k as u32
                && !upstream.completed
                && !upstream.client_disconnected,
            "token {k} was held back until the upstream moved on: {upstream:?}"
        );
        drop(body);
        mock.wait_stream_end(mock.streams().len() - 1).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_disconnect_stops_the_upstream_before_it_finishes() {
    let (gw, mock) = start_with_mock("").await;
    mock.set_options(json!({"tokens": 2000, "gap_ms": 5}))
        .unwrap();
    let resp = gw
        .chat(json!({"model": "m", "stream": true, "messages": user("write a long essay")}))
        .send()
        .await
        .unwrap();
    let mut body = resp.bytes_stream();
    let mut seen = 0;
    while seen < 3 {
        let frame = body.next().await.unwrap().unwrap();
        seen += String::from_utf8_lossy(&frame).matches("data: ").count();
    }
    drop(body);
    let record = mock.wait_stream_end(0).await;
    assert!(record.client_disconnected, "{record:?}");
    assert!(!record.completed);
    assert!(
        record.tokens_written < 200,
        "the upstream kept producing: {record:?}"
    );
}

#[tokio::test]
async fn the_demo_key_is_debited_by_the_cost() {
    let (gw, _mock) = start_with_mock("").await;
    let body = gw
        .chat(json!({"model": "m", "stream": true, "messages": user("hi")}))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let Some(Sse::Comment(c)) = parse_sse(&body).pop() else {
        panic!()
    };
    let cost: rust_decimal::Decimal = serde_json::from_str::<Value>(&c).unwrap()["cost"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    // [DONE] is only sent once the ledger entry is written.
    let key = gw.gw.ledger.key(&gw.key_id).await.unwrap().unwrap();
    assert_eq!(key.spent.to_usd(), cost);
    assert_eq!(
        key.balance.to_usd(),
        rust_decimal::Decimal::from(100) - cost
    );
}

#[tokio::test]
async fn raw_socket_close_stops_the_upstream_before_it_finishes() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (gw, mock) = start_with_mock("").await;
    mock.set_options(json!({"tokens": 2000, "gap_ms": 5}))
        .unwrap();
    let body =
        json!({"model": "m", "stream": true, "messages": user("write a long essay")}).to_string();
    let mut sock = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    let req = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        gw.key,
        body.len()
    );
    sock.write_all(req.as_bytes()).await.unwrap();
    let mut seen = String::new();
    let mut buf = [0u8; 4096];
    while seen.matches("data: ").count() < 3 {
        let n = sock.read(&mut buf).await.unwrap();
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    drop(sock);
    let record = mock.wait_stream_end(0).await;
    assert!(record.client_disconnected, "{record:?}");
    // 2,000 tokens 5 ms apart: a gateway that kept reading would let the upstream finish.
    assert!(!record.completed, "{record:?}");
    assert!(
        record.tokens_written < 200,
        "the upstream kept producing: {record:?}"
    );
}
