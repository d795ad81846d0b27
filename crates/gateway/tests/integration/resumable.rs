//! Streams that survive the network (`relay::replay`): a resumable chat stream cut by its client
//! and resumed with `Last-Event-ID`, with no event lost or repeated; one whose client never comes
//! back, cancelled after the grace and billed for what was generated; the replay bounds (410);
//! and background Responses read after a cut with `starting_after`, polled and cancelled.

use futures_util::StreamExt;
use serde_json::{json, Value};

use crate::harness::{self, start_with_mock, user, TestGateway};

const WORDS: &str = " the quick brown fox jumps over lazy dog and runs away again";

/// A model whose 12 words come 60 ms apart, and one that streams for minutes.
const MODELS: &str = r#"
[models.paced]
routes = ["mock/m@tokens=12,gap_ms=60"]
input_price = "2.50"
output_price = "10.00"

[models.down]
routes = ["mock/m@status=503"]
input_price = "2.50"
output_price = "10.00"

[models.endless]
routes = ["mock/m@tokens=5000,gap_ms=20"]
input_price = "2.50"
output_price = "10.00"
"#;

fn resumable(gw: &TestGateway, model: &str) -> reqwest::RequestBuilder {
    gw.chat(json!({"model": model, "stream": true, "messages": user("hi")}))
        .header("x-switchyard-resumable", "true")
}

/// Reads `resp` until `enough` says so (or to its end); returns what was read.
async fn read_until(resp: reqwest::Response, enough: impl Fn(&str) -> bool) -> String {
    let mut frames = resp.bytes_stream();
    let mut text = String::new();
    while let Some(Ok(frame)) = frames.next().await {
        text.push_str(std::str::from_utf8(&frame).unwrap());
        if enough(&text) {
            break;
        }
    }
    text
}

/// The `(id, data)` of every event of an SSE text with ids.
fn events(text: &str) -> Vec<(u64, String)> {
    text.split("\n\n")
        .filter(|b| !b.is_empty())
        .map(|block| {
            let id = block
                .lines()
                .find_map(|l| l.strip_prefix("id: "))
                .unwrap_or_else(|| panic!("an event without an id: {block:?}"))
                .parse()
                .unwrap();
            let data = block
                .lines()
                .filter(|l| !l.starts_with("id: "))
                .collect::<Vec<_>>()
                .join("\n");
            (id, data)
        })
        .collect()
}

fn content(events: &[(u64, String)]) -> String {
    events
        .iter()
        .filter_map(|(_, d)| d.strip_prefix("data: "))
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .filter_map(|v| {
            v["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_owned)
        })
        .collect()
}

/// `POST /v1/responses` of a background Response on `model`, not streamed: the object answered.
async fn create_background(gw: &TestGateway, model: &str) -> Value {
    harness::client()
        .post(gw.url("/v1/responses"))
        .bearer_auth(&gw.key)
        .json(&json!({"model": model, "input": "hi", "background": true}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// `GET /v1/responses/{id}`: the Response as it stands.
async fn retrieve(gw: &TestGateway, id: &str) -> Value {
    harness::client()
        .get(gw.url(&format!("/v1/responses/{id}")))
        .bearer_auth(&gw.key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resumable_stream_cut_and_resumed_loses_and_repeats_nothing_and_is_billed_once() {
    let (gw, _mock) = start_with_mock(MODELS).await;
    let resp = resumable(&gw, "paced").send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let id = harness::request_id(&resp);
    assert_eq!(
        resp.headers()["x-switchyard-resume"],
        format!("/v1/streams/{id}").as_str()
    );
    // Cut after the third event, as a dropped connection would.
    let first = read_until(resp, |t| t.matches("\n\n").count() >= 3).await;
    let first = events(&first[..first.rfind("\n\n").unwrap() + 2]);
    let last = first.last().unwrap().0;
    // Resumed with Last-Event-ID: the rest, live, to the end.
    let resp = harness::client()
        .get(gw.url(&format!("/v1/streams/{id}")))
        .bearer_auth(&gw.key)
        .header("last-event-id", last.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let rest = events(&resp.text().await.unwrap());
    let ids: Vec<u64> = first.iter().chain(&rest).map(|(i, _)| *i).collect();
    assert_eq!(
        ids,
        (0..ids.len() as u64).collect::<Vec<_>>(),
        "no event lost or repeated"
    );
    let whole: Vec<_> = first.iter().chain(&rest).cloned().collect();
    assert_eq!(content(&whole), WORDS);
    assert!(rest.iter().any(|(_, d)| d == "data: [DONE]"));
    // `?after=` reads the same; another key does not see it.
    let again = harness::client()
        .get(gw.url(&format!("/v1/streams/{id}?after={last}")))
        .bearer_auth(&gw.key)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(events(&again), rest);
    let (_, other) = switchyard::auth::create_key(
        &gw.gw.ledger,
        &switchyard::store::ledger::NewKey {
            name: "other".into(),
            credits: switchyard::store::ledger::Nanos(1_000_000_000),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let resp = harness::client()
        .get(gw.url(&format!("/v1/streams/{id}")))
        .bearer_auth(&other)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    // Billed once, for the whole answer, whoever read it and however often.
    let entry = gw
        .gw
        .ledger
        .wait_for_entry(&id, std::time::Duration::from_secs(10))
        .await
        .unwrap()
        .expect("settled");
    assert_eq!(entry.end_reason, "stop");
    assert_eq!(entry.completion_tokens, 12);
    let (entries, _) = harness::books(&gw.gw.ledger, &gw.key_id).await;
    assert_eq!(entries.len(), 1);
}

/// A resumable stream whose client never comes back is cancelled once the grace has passed and
/// billed for what was generated; a stream that did not ask to be resumable is unchanged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resumable_stream_left_past_its_grace_is_cancelled_and_billed_for_what_was_generated() {
    let (gw, mock) =
        start_with_mock(&format!("{MODELS}\n[streams]\nresume_grace_ms = 300\n")).await;
    let resp = resumable(&gw, "endless").send().await.unwrap();
    let id = harness::request_id(&resp);
    read_until(resp, |t| t.matches("\n\n").count() >= 3).await;
    let entry = gw
        .gw
        .ledger
        .wait_for_entry(&id, std::time::Duration::from_secs(60))
        .await
        .unwrap()
        .expect("settled once the grace ran out");
    assert_eq!(entry.end_reason, "cancelled", "{entry:?}");
    assert!(
        entry.completion_tokens > 2 && entry.completion_tokens < 5000,
        "{entry:?}"
    );
    let upstream = mock.wait_stream_end(0).await;
    assert!(upstream.client_disconnected, "the upstream was let go");
}

/// Past its replay bound a stream keeps only its newest events: asking for older ones is a 410.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_past_the_replay_bound_are_gone_with_a_410() {
    let (gw, _mock) = start_with_mock(&format!(
        "{MODELS}\n[streams]\nreplay_max_stream_bytes = 1200\n"
    ))
    .await;
    let resp = resumable(&gw, "paced").send().await.unwrap();
    let id = harness::request_id(&resp);
    let whole = resp.text().await.unwrap();
    assert!(whole.len() > 1200, "the stream outgrew its bound");
    let resp = harness::client()
        .get(gw.url(&format!("/v1/streams/{id}?after=0")))
        .bearer_auth(&gw.key)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 410);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["code"], "events_expired", "{v}");
    let metrics = harness::get_text(gw.url("/metrics")).await;
    assert!(
        metrics.contains("switchyard_replay_evicted_bytes_total"),
        "{metrics}"
    );
}

/// The events of a Responses stream: `(sequence_number, type, data)`.
fn responses_events(text: &str) -> Vec<(u64, String, Value)> {
    text.split("\n\n")
        .filter_map(|b| b.lines().find_map(|l| l.strip_prefix("data: ")))
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .map(|v| {
            (
                v["sequence_number"].as_u64().unwrap(),
                v["type"].as_str().unwrap().to_owned(),
                v,
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_background_response_is_read_after_a_cut_polled_and_billed_once() {
    let (gw, _mock) = start_with_mock(MODELS).await;
    let resp = harness::client()
        .post(gw.url("/v1/responses"))
        .bearer_auth(&gw.key)
        .json(&json!({"model": "paced", "input": "hi", "background": true, "stream": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let first = read_until(resp, |t| t.matches("\n\n").count() >= 5).await;
    let first = responses_events(&first[..first.rfind("\n\n").unwrap() + 2]);
    let id = first[0].2["response"]["id"].as_str().unwrap().to_owned();
    assert_eq!(first[0].2["response"]["background"], true);
    let last = first.last().unwrap().0;
    let rest = harness::client()
        .get(gw.url(&format!(
            "/v1/responses/{id}?stream=true&starting_after={last}"
        )))
        .bearer_auth(&gw.key)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let rest = responses_events(&rest);
    let seqs: Vec<u64> = first.iter().chain(&rest).map(|e| e.0).collect();
    assert_eq!(seqs, (0..seqs.len() as u64).collect::<Vec<_>>());
    let text: String = first
        .iter()
        .chain(&rest)
        .filter(|e| e.1 == "response.output_text.delta")
        .map(|e| e.2["delta"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(text, WORDS);
    assert_eq!(rest.last().unwrap().1, "response.completed");
    let polled = retrieve(&gw, &id).await;
    assert_eq!(polled["status"], "completed", "{polled}");
    let (entries, _) = harness::books(&gw.gw.ledger, &gw.key_id).await;
    assert_eq!(entries.len(), 1, "billed once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_background_response_is_polled_while_it_runs_and_cancelled() {
    let (gw, mock) = start_with_mock(MODELS).await;
    let created = create_background(&gw, "endless").await;
    assert_eq!(created["status"], "queued", "answered at once: {created}");
    assert_eq!(created["background"], true, "{created}");
    let id = created["id"].as_str().unwrap().to_owned();
    let get = || retrieve(&gw, &id);
    // Polled until it runs (answered at once, it may still be queued): then its upstream is open.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let polled = get().await;
        if polled["status"] == "in_progress" {
            break;
        }
        assert_eq!(polled["status"], "queued", "{polled}");
        assert!(
            std::time::Instant::now() < deadline,
            "never in progress: {polled}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let cancelled: Value = harness::client()
        .post(gw.url(&format!("/v1/responses/{id}/cancel")))
        .bearer_auth(&gw.key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(cancelled["status"], "cancelled", "{cancelled}");
    assert_eq!(get().await["status"], "cancelled");
    let upstream = mock.wait_stream_end(0).await;
    assert!(upstream.client_disconnected, "the upstream was stopped");
    // The stopped stream is settled off the request path: wait for its entry.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let entries = loop {
        let (entries, _) = harness::books(&gw.gw.ledger, &gw.key_id).await;
        if !entries.is_empty() || std::time::Instant::now() > deadline {
            break entries;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert_eq!(entries.len(), 1, "settled once");
    assert_eq!(entries.values().next().unwrap().end_reason, "cancelled");
}

/// Two instances sharing Redis: a resumable chat stream and a background Response started on the
/// first are resumed on the second, from the Redis copy, with nothing lost or repeated; the
/// second reports the running background Response.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_started_on_one_instance_is_resumed_on_the_other() {
    let Some(url) = crate::instances_limits::test_redis() else {
        return;
    };
    let (gw, second, _mock) =
        crate::instances_limits::two_instances(&format!("redis = \"{url}\""), MODELS).await;
    let on_second = |path: &str| {
        harness::client()
            .get(format!("http://{second}{path}"))
            .bearer_auth(&gw.key)
    };
    // Chat: cut on the first, the rest from the second.
    let resp = resumable(&gw, "paced").send().await.unwrap();
    let id = harness::request_id(&resp);
    let first = read_until(resp, |t| t.matches("\n\n").count() >= 3).await;
    let first = events(&first[..first.rfind("\n\n").unwrap() + 2]);
    let last = first.last().unwrap().0;
    let resp = on_second(&format!("/v1/streams/{id}"))
        .header("last-event-id", last.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let rest = events(&resp.text().await.unwrap());
    let ids: Vec<u64> = first.iter().chain(&rest).map(|(i, _)| *i).collect();
    assert_eq!(
        ids,
        (0..ids.len() as u64).collect::<Vec<_>>(),
        "no event lost or repeated"
    );
    let whole: Vec<_> = first.iter().chain(&rest).cloned().collect();
    assert_eq!(content(&whole), WORDS);

    // A background Response: polled and read from the second while the first generates it.
    let resp = harness::client()
        .post(gw.url("/v1/responses"))
        .bearer_auth(&gw.key)
        .json(&json!({"model": "paced", "input": "hi", "background": true, "stream": true}))
        .send()
        .await
        .unwrap();
    let first = read_until(resp, |t| t.matches("\n\n").count() >= 4).await;
    let first = responses_events(&first[..first.rfind("\n\n").unwrap() + 2]);
    let rid = first[0].2["response"]["id"].as_str().unwrap().to_owned();
    let last = first.last().unwrap().0;
    let polled: Value = on_second(&format!("/v1/responses/{rid}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        ["in_progress", "completed"].contains(&polled["status"].as_str().unwrap()),
        "{polled}"
    );
    let rest = on_second(&format!(
        "/v1/responses/{rid}?stream=true&starting_after={last}"
    ))
    .send()
    .await
    .unwrap()
    .text()
    .await
    .unwrap();
    let rest = responses_events(&rest);
    let seqs: Vec<u64> = first.iter().chain(&rest).map(|e| e.0).collect();
    assert_eq!(seqs, (0..seqs.len() as u64).collect::<Vec<_>>());
    assert_eq!(rest.last().unwrap().1, "response.completed");
}

/// The same with curl, as a person would try it: `curl -N` cut after three events (the pipe to
/// `head` closes), then `curl -N -H "Last-Event-ID: …" /v1/streams/{request_id}` for the rest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_cut_and_resumed_with_last_event_id_reads_every_event_once() {
    let (gw, _mock) = start_with_mock(MODELS).await;
    let dir = harness::temp_db().with_extension("curl");
    std::fs::create_dir_all(&dir).unwrap();
    let headers = dir.join("headers");
    let body =
        r#"{"model": "paced", "stream": true, "messages": [{"role": "user", "content": "hi"}]}"#;
    let script = format!(
        "curl -sN -D {headers} {url} -H 'Authorization: Bearer {key}' -H 'x-switchyard-resumable: true' \
         -H 'Content-Type: application/json' -d '{body}' | head -n 9",
        headers = headers.display(),
        url = gw.url("/v1/chat/completions"),
        key = gw.key,
    );
    let mut cut = tokio::process::Command::new("sh");
    cut.args(["-c", &script]);
    let Some(first) = crate::sdk_runner::run_curl(cut).await else {
        return;
    };
    let head = std::fs::read_to_string(&headers).unwrap();
    let id = head
        .lines()
        .find_map(|l| l.strip_prefix("x-request-id: "))
        .expect("the request id")
        .trim()
        .to_owned();
    let first = events(&first);
    assert_eq!(first.len(), 3, "{first:?}");
    let last = first.last().unwrap().0;
    let mut resume = tokio::process::Command::new("curl");
    resume
        .args(["-sN", &gw.url(&format!("/v1/streams/{id}"))])
        .args(["-H", &format!("Authorization: Bearer {}", gw.key)])
        .args(["-H", &format!("Last-Event-ID: {last}")]);
    let rest = events(&crate::sdk_runner::run_curl(resume).await.unwrap());
    let ids: Vec<u64> = first.iter().chain(&rest).map(|(i, _)| *i).collect();
    assert_eq!(
        ids,
        (0..ids.len() as u64).collect::<Vec<_>>(),
        "no event lost or repeated"
    );
    let whole: Vec<_> = first.iter().chain(&rest).cloned().collect();
    assert_eq!(content(&whole), WORDS);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A background Response that fails before its first event (every route down) is answered
/// `queued` at once, then reports `failed` with the error, as OpenAI's do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_background_response_that_cannot_start_is_failed_not_an_http_error() {
    let (gw, _mock) = start_with_mock(MODELS).await;
    let created = create_background(&gw, "down").await;
    assert_eq!(created["status"], "queued", "{created}");
    let id = created["id"].as_str().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let failed = loop {
        let polled = retrieve(&gw, id).await;
        if polled["status"] == "failed" || std::time::Instant::now() > deadline {
            break polled;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_eq!(failed["status"], "failed", "{failed}");
    assert!(failed["error"]["message"].is_string(), "{failed}");
}

/// A Messages stream (`POST /v1/messages`) asks to be resumable the same way: its events carry
/// ids, and after a cut the rest comes back in the Messages dialect, to `message_stop`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resumable_messages_stream_is_resumed_in_its_own_dialect() {
    let (gw, _mock) = start_with_mock(MODELS).await;
    let resp = harness::client()
        .post(gw.url("/v1/messages"))
        .header("x-api-key", &gw.key)
        .header("anthropic-version", "2023-06-01")
        .header("x-switchyard-resumable", "true")
        .json(&json!({"model": "paced", "max_tokens": 100, "stream": true,
                      "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let id = harness::request_id(&resp);
    assert!(resp.headers().contains_key("x-switchyard-resume"));
    let first = read_until(resp, |t| t.matches("\n\n").count() >= 4).await;
    let first = events(&first[..first.rfind("\n\n").unwrap() + 2]);
    let last = first.last().unwrap().0;
    let rest = harness::client()
        .get(gw.url(&format!("/v1/streams/{id}")))
        .header("x-api-key", &gw.key)
        .header("last-event-id", last.to_string())
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let rest = events(&rest);
    let ids: Vec<u64> = first.iter().chain(&rest).map(|(i, _)| *i).collect();
    assert_eq!(
        ids,
        (0..ids.len() as u64).collect::<Vec<_>>(),
        "no event lost or repeated"
    );
    let text: String = first
        .iter()
        .chain(&rest)
        .filter_map(|(_, d)| d.lines().find_map(|l| l.strip_prefix("data: ")))
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .filter(|v| v["type"] == "content_block_delta")
        .filter_map(|v| v["delta"]["text"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(text, WORDS);
    assert!(
        rest.iter()
            .any(|(_, d)| d.starts_with("event: message_stop")),
        "{rest:?}"
    );
}
