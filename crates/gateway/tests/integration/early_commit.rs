//! Long prefill behind proxies: a streamed request whose first upstream event is late commits
//! (200, SSE headers, `: keep-alive` at once and then every keep-alive interval), fails over
//! invisibly behind the comments, and when every route fails ends with an in-stream error that
//! says what the HTTP error would have said; a client leaving during the wait is settled as
//! cancelled and its upstream request dropped. Chat and Responses.

use std::time::Duration;

use futures_util::StreamExt;
use serde_json::{json, Value};

use crate::harness::{
    self, books, data_events, joined, parse_sse, start_with_mock_top, until, user, Sse, TestGateway,
};

/// Commit after 30 ms without a first event; keep-alive every 100 ms.
const TOP: &str = "keep_alive_ms = 100";

/// Models whose first route answers late (`slow`), fails late (`dead`), or fails late and is
/// followed by a healthy route (`flaky`); `[routing] commit_after_ms = 30`.
fn extra() -> String {
    let model = |name: &str, routes: &[&str]| {
        let routes: Vec<String> = routes.iter().map(|r| format!("\"mock/{r}\"")).collect();
        format!(
            "[models.{name}]\nroutes = [{}]\ninput_price = \"1.00\"\noutput_price = \"2.00\"\n",
            routes.join(", ")
        )
    };
    [
        model("slow", &["m@tokens=3,ttft_ms=800"]),
        model("dead", &["m@headers_delay_ms=400,status=503"]),
        model(
            "flaky",
            &["m@headers_delay_ms=400,status=503", "m@tokens=3"],
        ),
        model("stuck", &["m@ttft_ms=60000"]),
        "[routing]\ncommit_after_ms = 30\nmax_attempts = 2\n".to_owned(),
    ]
    .concat()
}

async fn start() -> (TestGateway, mock_upstream::MockUpstream) {
    start_with_mock_top(TOP, &extra()).await
}

/// A streamed request's status, its first body frame and the whole body.
async fn stream(gw: &TestGateway, path: &str, body: Value) -> (u16, String, String, String) {
    let resp = harness::client()
        .post(gw.url(path))
        .bearer_auth(&gw.key)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let id = harness::request_id(&resp);
    let mut frames = resp.bytes_stream();
    let first = frames.next().await.unwrap().unwrap();
    let mut rest = first.to_vec();
    while let Some(frame) = frames.next().await {
        rest.extend_from_slice(&frame.unwrap());
    }
    (
        status,
        String::from_utf8(first.to_vec()).unwrap(),
        String::from_utf8(rest).unwrap(),
        id,
    )
}

fn committed_early(metrics: &str) -> u64 {
    metrics
        .lines()
        .find(|l| l.starts_with("switchyard_streams_committed_early_total"))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn a_slow_first_token_gets_headers_and_a_comment_first_then_the_whole_answer() {
    let (gw, mock) = start().await;
    let resp = gw
        .chat(json!({"model": "slow", "stream": true, "messages": user("hi")}))
        .send()
        .await
        .unwrap();
    // Headers and the first comment arrive while the upstream has not written a token yet.
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let mut frames = resp.bytes_stream();
    let first = frames.next().await.unwrap().unwrap();
    assert_eq!(&first[..], b": keep-alive\n\n");
    let streams = mock.streams();
    assert!(streams.iter().all(|s| s.tokens_written == 0), "{streams:?}");
    let mut body = first.to_vec();
    while let Some(frame) = frames.next().await {
        body.extend_from_slice(&frame.unwrap());
    }
    let items = parse_sse(&String::from_utf8(body).unwrap());
    assert!(
        items
            .iter()
            .filter(|i| **i == Sse::Comment("keep-alive".into()))
            .count()
            >= 2,
        "keep-alives keep flowing while the upstream thinks: {items:?}"
    );
    assert_eq!(joined(&items, "content"), " the quick brown");
    let events = data_events(&items);
    assert!(events.iter().all(|e| e.get("error").is_none()), "{items:?}");
    assert_eq!(
        events.last().unwrap()["choices"][0]["finish_reason"],
        "stop"
    );
    assert!(events.last().unwrap()["usage"]["cost"].is_string());
    assert_eq!(items[items.len() - 2], Sse::Done);
    let metrics = harness::get_text(gw.url("/metrics")).await;
    assert!(committed_early(&metrics) >= 1, "{metrics}");
    let (entries, _) = books(&gw.gw.ledger, &gw.key_id).await;
    let e = entries.values().next().unwrap();
    assert_eq!((e.end_reason.as_str(), e.status), ("stop", Some(200)));
    assert_eq!(e.completion_tokens, 3);
}

#[tokio::test]
async fn a_first_route_failing_after_the_commit_fails_over_and_the_client_sees_a_normal_stream() {
    let (gw, mock) = start().await;
    let (status, first, body, id) = stream(
        &gw,
        "/v1/chat/completions",
        json!({"model": "flaky", "stream": true, "messages": user("hi")}),
    )
    .await;
    assert_eq!((status, first.as_str()), (200, ": keep-alive\n\n"));
    let items = parse_sse(&body);
    assert_eq!(joined(&items, "content"), " the quick brown");
    assert!(data_events(&items).iter().all(|e| e.get("error").is_none()));
    assert!(items.contains(&Sse::Done));
    // Both routes were asked, with the id the client sees.
    let requests = mock.requests();
    assert_eq!(requests.len(), 2);
    for r in &requests {
        assert_eq!(upstream_id(r), Some(as_uuid(&id).as_str()));
    }
    let (entries, _) = books(&gw.gw.ledger, &gw.key_id).await;
    let e = &entries[&id];
    assert_eq!((e.end_reason.as_str(), e.attempts), ("stop", 2));
}

#[tokio::test]
async fn every_route_failing_after_the_commit_ends_with_the_http_errors_words_in_stream() {
    let (gw, _mock) = start().await;
    let (_, opening_balance) = books(&gw.gw.ledger, &gw.key_id).await;
    // The same request unstreamed never commits: its HTTP error is the reference.
    let resp = gw
        .chat(json!({"model": "dead", "messages": user("hi")}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 502);
    let http_error: Value = resp.json().await.unwrap();
    let (status, first, body, id) = stream(
        &gw,
        "/v1/chat/completions",
        json!({"model": "dead", "stream": true, "messages": user("hi")}),
    )
    .await;
    assert_eq!((status, first.as_str()), (200, ": keep-alive\n\n"));
    let items = parse_sse(&body);
    let events = data_events(&items);
    assert_eq!(events, vec![http_error.clone()], "{items:?}");
    assert_eq!(http_error["error"]["type"], "upstream_error");
    assert_eq!(items.last(), Some(&Sse::Done));
    // Settled once, as an error the client got with a 200, at no cost.
    harness::released(&gw).await;
    let (entries, balance) = books(&gw.gw.ledger, &gw.key_id).await;
    let e = &entries[&id];
    assert_eq!((e.end_reason.as_str(), e.status), ("error", Some(200)));
    assert_eq!(e.cost, switchyard::store::ledger::Nanos::ZERO);
    assert_eq!(entries.len(), 2);
    assert_eq!(balance, opening_balance);
}

#[tokio::test]
async fn a_client_leaving_during_the_wait_is_cancelled_and_the_upstream_request_dropped() {
    let (gw, mock) = start().await;
    let resp = gw
        .chat(json!({"model": "stuck", "stream": true, "messages": user("hi")}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let id = harness::request_id(&resp);
    let mut frames = resp.bytes_stream();
    assert_eq!(
        &frames.next().await.unwrap().unwrap()[..],
        b": keep-alive\n\n"
    );
    drop(frames);
    let record = mock.wait_stream_end(0).await;
    assert!(
        record.client_disconnected && record.tokens_written == 0,
        "{record:?}"
    );
    let e = gw
        .gw
        .ledger
        .wait_for_entry(&id, Duration::from_secs(10))
        .await
        .unwrap()
        .expect("the cancelled request was settled");
    assert_eq!(e.end_reason, "cancelled");
    assert_eq!(e.completion_tokens, 0);
    harness::released(&gw).await;
}

#[tokio::test]
async fn the_shutdown_grace_ending_during_the_wait_ends_the_stream_with_a_503_event() {
    let (gw, mock) = start().await;
    let resp = gw
        .chat(json!({"model": "stuck", "stream": true, "messages": user("hi")}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let id = harness::request_id(&resp);
    let mut frames = resp.bytes_stream();
    assert_eq!(
        &frames.next().await.unwrap().unwrap()[..],
        b": keep-alive\n\n"
    );
    // What the listener does when shutdown_grace is over.
    gw.gw.end_streams.cancel();
    let mut rest = Vec::new();
    while let Some(frame) = frames.next().await {
        rest.extend_from_slice(&frame.unwrap());
    }
    let items = parse_sse(&String::from_utf8(rest).unwrap());
    let events = data_events(&items);
    assert_eq!(events.len(), 1, "{items:?}");
    assert_eq!(events[0]["error"]["code"], 503);
    assert_eq!(events[0]["error"]["type"], "service_unavailable");
    assert_eq!(items.last(), Some(&Sse::Done));
    assert!(mock.wait_stream_end(0).await.client_disconnected);
    let entry = gw
        .gw
        .ledger
        .wait_for_entry(&id, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(entry.expect("settled").end_reason, "cancelled");
}

#[tokio::test]
async fn a_responses_stream_commits_early_and_ends_normally_or_with_the_http_errors_words() {
    let (gw, _mock) = start().await;
    let (status, first, body, _) = stream(
        &gw,
        "/v1/responses",
        json!({"model": "flaky", "stream": true, "input": "hi"}),
    )
    .await;
    assert_eq!((status, first.as_str()), (200, ": keep-alive\n\n"));
    let kinds = event_kinds(&body);
    assert_eq!(kinds.first().map(String::as_str), Some("response.created"));
    assert_eq!(kinds.last().map(String::as_str), Some("response.completed"));
    assert!(!kinds.iter().any(|k| k == "error"), "{kinds:?}");

    let resp = harness::client()
        .post(gw.url("/v1/responses"))
        .bearer_auth(&gw.key)
        .json(&json!({"model": "dead", "input": "hi"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 502);
    let http_error: Value = resp.json().await.unwrap();
    let (status, first, body, _) = stream(
        &gw,
        "/v1/responses",
        json!({"model": "dead", "stream": true, "input": "hi"}),
    )
    .await;
    assert_eq!((status, first.as_str()), (200, ": keep-alive\n\n"));
    let events = responses_events(&body);
    let kinds: Vec<&str> = events.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        kinds,
        [
            "response.created",
            "response.in_progress",
            "error",
            "response.failed"
        ]
    );
    let error = &events[2].1;
    let h = &http_error["error"];
    assert_eq!(error["message"], h["message"]);
    assert_eq!(error["code"], h["code"]);
    assert_eq!(error["error"]["type"], h["type"]);
    let failed = &events[3].1["response"];
    assert_eq!(failed["status"], "failed");
    assert_eq!(failed["error"]["code"], h["code"]);
    assert_eq!(failed["error"]["message"], h["message"]);
}

#[tokio::test]
async fn zero_never_commits_and_errors_stay_http_statuses() {
    let (gw, _mock) = start_with_mock_top(
        TOP,
        &extra().replace("commit_after_ms = 30", "commit_after_ms = 0"),
    )
    .await;
    let resp = gw
        .chat(json!({"model": "dead", "stream": true, "messages": user("hi")}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 502);
    let metrics = harness::get_text(gw.url("/metrics")).await;
    assert_eq!(committed_early(&metrics), 0);
}

/// The id an OpenAI-compatible upstream is sent: the client's, as a UUID.
fn as_uuid(id: &str) -> String {
    switchyard::providers::as_uuid(id)
}

fn upstream_id(r: &mock_upstream::RecordedRequest) -> Option<&str> {
    r.headers
        .iter()
        .find(|(k, _)| k == "x-request-id")
        .map(|(_, v)| v.as_str())
}

/// `(event name, data)` of every Responses event in `body`.
fn responses_events(body: &str) -> Vec<(String, Value)> {
    body.split("\n\n")
        .filter_map(|block| {
            let mut name = None;
            let mut data = None;
            for line in block.lines() {
                if let Some(n) = line.strip_prefix("event: ") {
                    name = Some(n.to_owned());
                } else if let Some(d) = line.strip_prefix("data: ") {
                    data = serde_json::from_str(d).ok();
                }
            }
            Some((name?, data?))
        })
        .collect()
}

fn event_kinds(body: &str) -> Vec<String> {
    responses_events(body).into_iter().map(|(k, _)| k).collect()
}

#[tokio::test]
async fn the_id_the_client_sees_is_the_one_every_upstream_request_carries() {
    let (gw, mock) = start().await;
    let cases = [
        (
            "/v1/chat/completions",
            json!({"model": "m", "messages": user("hi")}),
        ),
        (
            "/v1/chat/completions",
            json!({"model": "m", "stream": true, "messages": user("hi")}),
        ),
        ("/v1/responses", json!({"model": "m", "input": "hi"})),
        (
            "/v1/responses",
            json!({"model": "m", "stream": true, "input": "hi"}),
        ),
    ];
    for (client_id, (path, body)) in [None, Some("trace-42 abc")]
        .into_iter()
        .flat_map(|c| cases.iter().map(move |case| (c, case)))
    {
        let before = mock.requests().len();
        let mut req = harness::client()
            .post(gw.url(path))
            .bearer_auth(&gw.key)
            .json(body);
        if let Some(id) = client_id {
            req = req.header("x-request-id", id);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), 200);
        let seen = harness::request_id(&resp);
        if let Some(id) = client_id {
            assert_eq!(seen, id);
        }
        let _ = resp.bytes().await.unwrap();
        let requests = mock.requests();
        assert_eq!(requests.len(), before + 1, "{path} {body}");
        assert_eq!(
            upstream_id(&requests[before]),
            Some(as_uuid(&seen).as_str()),
            "{path} {body}"
        );
    }
    // Across a failover, every upstream is sent the same id (unstreamed here).
    let before = mock.requests().len();
    let resp = gw
        .chat(json!({"model": "flaky", "messages": user("hi")}))
        .header("x-request-id", "trace-failover")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let requests = mock.requests();
    assert_eq!(requests.len(), before + 2);
    for r in &requests[before..] {
        assert_eq!(upstream_id(r), Some(as_uuid("trace-failover").as_str()));
    }
    until("nothing held", Duration::from_secs(10), || {
        gw.gw.ledger.account_reserved(&gw.key_id) == Some(switchyard::store::ledger::Nanos::ZERO)
    })
    .await;
}
