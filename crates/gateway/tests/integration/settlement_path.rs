//! The settlement path as a user's money sees it: `kill -9` during hundreds of open streams (the real
//! binary, restarted), a database that refuses writes for a while, clients that leave at every
//! point from admission to the end of the commit, an upstream that reports more than was held, a
//! request cancelled before its first token, and random sequences of admissions, settlements,
//! crashes and replays. Every time: each request is in the ledger exactly once, and the key's
//! balance is its credits less the sum of its entries.

use std::collections::HashMap;
use std::process::Stdio;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use mock_upstream::MockUpstream;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use switchyard::relay::admission;
use switchyard::store::ledger::journal::{AdmitRecord, Settling};
use switchyard::store::ledger::{
    EndReason, Ledger, Nanos, NewKey, Prices, TokenSource, UsageEntry, UsageEntryRow,
};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use crate::harness::{
    self, books, released, request_id, start_with_mock, temp_db, until, user, TestGateway,
};

/// The sum of the entries' costs.
fn sum(entries: &HashMap<String, UsageEntryRow>) -> i64 {
    entries.values().map(|e| e.cost.0).sum()
}

/// A streamed request, read until `stop` says so (or to the end); returns its request id and
/// what was read.
async fn stream_until(
    gw: &TestGateway,
    body: Value,
    mut stop: impl FnMut(&str) -> bool,
) -> (String, String) {
    let resp = gw.chat(body).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let id = request_id(&resp);
    let mut frames = resp.bytes_stream();
    let mut text = String::new();
    while let Some(frame) = frames.next().await {
        let Ok(frame) = frame else { break };
        text.push_str(&String::from_utf8_lossy(&frame));
        if stop(&text) {
            break;
        }
    }
    (id, text)
}

/// Holds SQLite's write lock on `db` from another process (`sqlite3`) until `release` is called.
struct WriteLock {
    child: tokio::process::Child,
}

impl WriteLock {
    async fn take(db: &std::path::Path) -> WriteLock {
        let mut child = tokio::process::Command::new("sqlite3")
            .arg(db)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("sqlite3 is installed");
        let stdin = child.stdin.as_mut().unwrap();
        stdin
            .write_all(b"BEGIN IMMEDIATE;\nSELECT 'locked';\n")
            .await
            .unwrap();
        let mut out = BufReader::new(child.stdout.take().unwrap()).lines();
        assert_eq!(out.next_line().await.unwrap().as_deref(), Some("locked"));
        WriteLock { child }
    }

    async fn release(mut self) {
        let stdin = self.child.stdin.as_mut().unwrap();
        stdin.write_all(b"ROLLBACK;\n.quit\n").await.unwrap();
        self.child.wait().await.unwrap();
    }
}

/// One request, streamed or not, answered in full (`[DONE]` and the cost comment, or a body with
/// its cost); returns its request id.
async fn round_trip(gw: &TestGateway, streamed: bool) -> String {
    if streamed {
        let (id, text) = stream_until(
            gw,
            json!({"model": "m", "stream": true, "messages": user("hi")}),
            |_| false,
        )
        .await;
        assert!(text.contains("data: [DONE]"), "{text}");
        assert!(text.contains(": {\"cost\""), "{text}");
        id
    } else {
        let resp = gw
            .chat(json!({"model": "m", "messages": user("hi")}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let id = request_id(&resp);
        let v: Value = resp.json().await.unwrap();
        assert!(v["usage"]["cost"].is_string(), "{v}");
        id
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_that_refuses_writes_keeps_serving_and_bills_each_request_once_after() {
    let (gw, mock) = start_with_mock("").await;
    mock.set_options(json!({"tokens": 5})).unwrap();
    let credits = gw.gw.ledger.key(&gw.key_id).await.unwrap().unwrap().balance;
    let lock = WriteLock::take(&gw.db_path).await;
    let started = Instant::now();
    // Rounds of requests, one a second, for as long as the database is locked (10 s): every one
    // is answered in full.
    let mut answers = Vec::new();
    let mut pace = tokio::time::interval(Duration::from_secs(1));
    while started.elapsed() < Duration::from_secs(10) {
        pace.tick().await;
        answers.extend(
            futures_util::future::join_all((0..6).map(|i| round_trip(&gw, i % 2 == 0))).await,
        );
    }
    // Served while the database would not write: the entries went to the journal.
    assert!(started.elapsed() >= switchyard::store::ledger::writer::JOURNAL_AFTER);
    for id in &answers {
        assert!(gw.gw.ledger.entry(id).await.unwrap().is_none());
    }
    // The money stays held while the entries wait in the journal.
    assert!(gw.gw.ledger.account_reserved(&gw.key_id).unwrap().0 > 0);
    lock.release().await;
    for id in &answers {
        let e = gw
            .gw
            .ledger
            .wait_for_entry(id, Duration::from_secs(20))
            .await
            .unwrap();
        assert!(e.is_some(), "{id} was never replayed");
    }
    let (entries, balance) = books(&gw.gw.ledger, &gw.key_id).await;
    assert_eq!(entries.len(), answers.len());
    assert!(entries
        .values()
        .all(|e| e.cost.0 > 0 && e.end_reason == "stop"));
    assert_eq!(
        balance.0,
        credits.0 - sum(&entries),
        "each billed exactly once"
    );
    released(&gw).await;
}

/// Neither the database nor the journal will write (the disk is full): a whole answer cannot be
/// made durable, so its client gets a 503 and it is never billed; a stream's answer already went
/// out, so it is billed once the database takes writes again. Before, the refused request was
/// billed later all the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_that_cannot_be_made_durable_is_refused_and_never_billed() {
    let (gw, mock) = start_with_mock("").await;
    mock.set_options(json!({"tokens": 5})).unwrap();
    let credits = gw.gw.ledger.key(&gw.key_id).await.unwrap().unwrap().balance;
    let journal = gw.gw.ledger.journal().expect("a journal").clone();
    let lock = WriteLock::take(&gw.db_path).await;
    journal
        .faults()
        .inject(switchyard::store::ledger::journal::Fault::NoSpace, u32::MAX);
    let resp = gw
        .chat(json!({"model": "m", "messages": user("hi")}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 503);
    let refused = request_id(&resp);
    let (streamed, text) = stream_until(
        &gw,
        json!({"model": "m", "stream": true, "messages": user("hi")}),
        |_| false,
    )
    .await;
    assert!(text.contains("data: [DONE]"), "{text}");
    journal.faults().clear();
    lock.release().await;
    let e = gw
        .gw
        .ledger
        .wait_for_entry(&streamed, Duration::from_secs(20))
        .await
        .unwrap();
    assert!(e.is_some(), "the streamed answer is billed");
    released(&gw).await;
    gw.gw.ledger.flush().await;
    assert!(
        gw.gw.ledger.entry(&refused).await.unwrap().is_none(),
        "the refused request was billed"
    );
    let (entries, balance) = books(&gw.gw.ledger, &gw.key_id).await;
    assert_eq!(entries.len(), 1);
    assert_eq!(balance.0, credits.0 - sum(&entries));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_leaves_at_any_point_is_billed_exactly_once() {
    let (gw, mock) = start_with_mock("").await;
    let credits = gw.gw.ledger.key(&gw.key_id).await.unwrap().unwrap().balance;
    let streamed = |m: &str| json!({"model": "m", "stream": true, "messages": user(m)});

    // 1. Before the upstream answered at all.
    mock.set_options(json!({"headers_delay_ms": 5_000}))
        .unwrap();
    {
        let req = gw.chat(streamed("one")).send();
        let m = &mock;
        tokio::select! {
            _ = req => panic!("answered before the upstream did"),
            _ = until("the upstream saw the request", Duration::from_secs(10), || m.requests().len() == 1) => {}
        }
    }
    // 2. Mid-stream, after a few tokens.
    mock.set_options(json!({"tokens": 200, "gap_ms": 10}))
        .unwrap();
    let (mid, _) = stream_until(&gw, streamed("two"), |t| {
        t.matches("\"content\"").count() >= 5
    })
    .await;
    // 3. After the last token, while the entry is being committed (the database is locked, so
    //    the commit takes at least the journal deadline).
    mock.set_options(json!({"tokens": 3})).unwrap();
    let lock = WriteLock::take(&gw.db_path).await;
    let (last, _) = stream_until(&gw, streamed("three"), |t| {
        t.matches("\"content\"").count() >= 3
    })
    .await;
    // 4. A non-streamed request, gone while its commit waits.
    {
        let req = gw
            .chat(json!({"model": "m", "messages": user("four")}))
            .send();
        let m = &mock;
        let n = m.requests().len();
        tokio::select! {
            r = req => panic!("answered while the database was locked: {:?}", r.map(|r| r.status())),
            _ = until("the upstream answered", Duration::from_secs(10), || m.requests().len() > n) => {}
        }
    }
    lock.release().await;
    let ledger = gw.gw.ledger.clone();
    let key = gw.key_id.clone();
    let mut entries = HashMap::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while entries.len() < 4 {
        assert!(
            Instant::now() < deadline,
            "not every request was billed: {entries:?}"
        );
        ledger.flush().await;
        entries = books(&ledger, &key).await.0;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (entries, balance) = books(&ledger, &key).await;
    assert_eq!(entries.len(), 4, "{entries:?}");
    let others: Vec<&UsageEntryRow> = entries
        .iter()
        .filter(|(id, _)| **id != mid && **id != last)
        .map(|(_, e)| e)
        .collect();
    assert_eq!(others.len(), 2, "{entries:?}");
    assert!(
        others
            .iter()
            .any(|e| e.cost == Nanos::ZERO && e.end_reason == "cancelled"),
        "the request that never reached an answer is free: {entries:?}"
    );
    assert_eq!(entries[&mid].end_reason, "cancelled");
    let mid_tokens = entries[&mid].completion_tokens;
    assert!(
        (3..200).contains(&mid_tokens),
        "billed what was delivered: {mid_tokens}"
    );
    assert!(entries[&last].cost.0 > 0);
    assert!(
        others.iter().any(|e| e.cost.0 > 0),
        "the non-streamed answer is billed"
    );
    assert_eq!(
        balance.0,
        credits.0 - sum(&entries),
        "each billed exactly once"
    );
    released(&gw).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_cancelled_after_the_upstream_accepted_it_pays_for_its_prompt() {
    let (gw, _mock) = start_with_mock("").await;
    let caller = gw.gw.auth.authenticate(Some(&gw.key)).await.unwrap();
    let model = admission::model_for(&gw.gw, &caller, "m").unwrap();
    let long = "word ".repeat(400);
    let req = switchyard_wire::openai::ChatRequest::parse(
        json!({"model": "m", "stream": true, "messages": user(&long)})
            .to_string()
            .as_bytes(),
    )
    .unwrap();
    let settlement = admission::admit(
        &gw.gw,
        &caller,
        &model,
        "req_prompt_only".into(),
        Arc::new(req),
        true,
        tokio::time::Instant::now(),
    )
    .await
    .unwrap();
    // The upstream answered with success headers, then the client left before any token.
    settlement
        .meter
        .accepted_flag()
        .store(true, Ordering::Relaxed);
    drop(settlement);
    let e = gw
        .gw
        .ledger
        .wait_for_entry("req_prompt_only", Duration::from_secs(10))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(e.end_reason, "cancelled");
    assert_eq!(e.billing_note.as_deref(), Some("prompt_only"));
    assert!(e.prompt_tokens >= 400, "{}", e.prompt_tokens);
    assert_eq!(e.completion_tokens, 0);
    assert!(e.cost.0 > 0);
}

#[tokio::test]
async fn an_upstream_that_reports_more_than_the_hold_is_billed_and_marked_over_hold() {
    let (gw, mock) = start_with_mock("").await;
    // 5M prompt tokens at $2.50/M = $12.50, far above the hold for "hi" (prompt bound + the
    // model's output limit).
    mock.set_options(json!({"tokens": 3, "prompt_tokens": 5_000_000}))
        .unwrap();
    let credits = gw.gw.ledger.key(&gw.key_id).await.unwrap().unwrap().balance;
    let resp = gw
        .chat(json!({"model": "m", "messages": user("hi")}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let e = gw
        .gw
        .ledger
        .entry(&request_id(&resp))
        .await
        .unwrap()
        .unwrap();
    assert!(e.over_hold, "{e:?}");
    assert!(e.cost > e.hold, "{e:?}");
    assert_eq!(e.prompt_tokens, 5_000_000);
    let key = gw.gw.ledger.key(&gw.key_id).await.unwrap().unwrap();
    assert_eq!(key.balance.0, credits.0 - e.cost.0);
    let metrics = harness::get_text(gw.url("/metrics")).await;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("switchyard_over_hold_total") && l.contains("model=\"m\"")),
        "{metrics}"
    );
}

/// `switchyard serve --config FILE` in `dir`; returns the process, the key it printed and its
/// base URL.
async fn serve(
    dir: &std::path::Path,
    config: &str,
) -> (tokio::process::Child, Option<String>, String) {
    std::fs::write(dir.join("switchyard.toml"), config).unwrap();
    let args = [
        "serve",
        "--config",
        "switchyard.toml",
        "--listen",
        "127.0.0.1:0",
    ];
    harness::serve_binary(dir, &args).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_300_open_streams_bills_every_request_exactly_once() {
    const STREAMS: usize = 300;
    let dir = std::env::temp_dir().join(format!("sy-kill9-{}-{}", std::process::id(), line!()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mock = MockUpstream::start().await.unwrap();
    mock.set_recording(false);
    // Each stream lasts 400 s, so none ends (and leaves the journal) before all 300 are open and
    // checkpointed. Few tokens, far apart: the mock builds a stream's every chunk before its first
    // byte, and 300 × 10,000 chunks built by an unoptimised mock on a loaded 2-core machine kept
    // some streams from their first token past the 120 s first-token limit.
    mock.set_options(json!({"tokens": 2_000, "gap_ms": 200}))
        .unwrap();
    // 300 connections opened at once on a loaded 2-core machine can take longer than the default
    // 10 s connect limit: this test is about the journal, not about connect times.
    let config = format!(
        "demo_credits = \"1000\"\ndatabase = \"sqlite://sy.db\"\n{}",
        harness::mock_config(&mock, "")
            .replace("demo_credits = \"100\"\n", "")
            .replace(
                "api_key = \"upstream-secret-key\"\n",
                "api_key = \"upstream-secret-key\"\nconnect_timeout_ms = 120000\n",
            )
    );
    let (mut child, key, base) = serve(&dir, &config).await;
    let key = key.expect("a fresh database prints its first key");
    let client = reqwest::Client::builder().no_gzip().build().unwrap();
    // Open every stream at once and keep reading them in the background.
    let opened = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    // A stream that could not open says why here, so a failure names its cause.
    let refused = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let mut readers = Vec::new();
    for _ in 0..STREAMS {
        let (client, base, key, opened, refused) = (
            client.clone(),
            base.clone(),
            key.clone(),
            opened.clone(),
            refused.clone(),
        );
        readers.push(tokio::spawn(async move {
            let sent = client
                .post(format!("{base}/chat/completions"))
                .bearer_auth(&key)
                .json(&json!({"model": "m", "stream": true, "messages": user("hi")}))
                .send()
                .await;
            let resp = match sent {
                Ok(r) if r.status() == 200 => r,
                Ok(r) => {
                    let status = r.status();
                    let text = r.text().await.unwrap_or_default();
                    refused.lock().unwrap().push(format!("{status}: {text}"));
                    return None;
                }
                Err(e) => {
                    refused.lock().unwrap().push(e.to_string());
                    return None;
                }
            };
            opened.fetch_add(1, Ordering::Relaxed);
            let id = request_id(&resp);
            // What this client received: content chunks (one token each at the mock).
            let mut body = resp.bytes_stream();
            let mut text = Vec::new();
            while let Some(Ok(frame)) = body.next().await {
                text.extend_from_slice(&frame);
            }
            let received = String::from_utf8_lossy(&text)
                .lines()
                .filter_map(|l| l.strip_prefix("data: "))
                .filter_map(|d| serde_json::from_str::<Value>(d).ok())
                .filter(|v| {
                    v["choices"][0]["delta"]["content"]
                        .as_str()
                        .is_some_and(|c| !c.is_empty())
                })
                .count() as i64;
            Some((id, received))
        }));
    }
    until("every stream open", Duration::from_secs(180), || {
        let refused = refused.lock().unwrap();
        assert!(refused.is_empty(), "streams refused: {refused:?}");
        opened.load(Ordering::Relaxed) == STREAMS
    })
    .await;
    // Wait until every stream has a progress checkpoint in the journal, then kill -9.
    let journal = dir.join("sy.db.journal");
    // Read only what was appended since the last look (the journal grows by 300 checkpoints a
    // second; reading it whole every poll would starve the server on a 2-core machine).
    let mut seen = std::collections::HashSet::<String>::new();
    let mut read_to = 0usize;
    // Fails with the count of streams seen, a moment before `until` would fail without it.
    let checkpoints_by = std::time::Instant::now() + Duration::from_secs(175);
    until(
        "a checkpoint for every stream",
        Duration::from_secs(180),
        || {
            let bytes = std::fs::read(&journal).unwrap_or_default();
            if bytes.len() < read_to {
                read_to = 0; // compacted: read it again from the start
            }
            // Whole lines only: the last one may still be being written.
            let Some(end) = bytes[read_to..].iter().rposition(|b| *b == b'\n') else {
                return false;
            };
            let fresh = String::from_utf8_lossy(&bytes[read_to..read_to + end]).into_owned();
            read_to += end + 1;
            // Streams whose checkpoint counts delivered tokens.
            seen.extend(
                fresh
                    .lines()
                    .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                    .filter(|v| v["k"] == "progress" && v["completion_tokens"].as_u64() > Some(0))
                    .filter_map(|v| v["id"].as_str().map(str::to_owned)),
            );
            assert!(
                seen.len() >= STREAMS || std::time::Instant::now() < checkpoints_by,
                "{} of {STREAMS} streams have a checkpoint that counts tokens",
                seen.len()
            );
            seen.len() >= STREAMS
        },
    )
    .await;
    let pid = child.id().unwrap().to_string();
    let killed = tokio::process::Command::new("kill")
        .args(["-9", &pid])
        .status()
        .await
        .unwrap();
    assert!(killed.success());
    child.wait().await.unwrap();
    let mut received = std::collections::HashMap::new();
    for r in readers {
        if let Ok(Some((id, n))) = r.await {
            received.insert(id, n);
        }
    }
    assert_eq!(
        received.len(),
        STREAMS,
        "every client read its stream to the cut"
    );
    // Restart: the journal is replayed before the server listens again.
    let (mut again, none, base2) = serve(&dir, &config).await;
    assert!(none.is_none(), "the database survived, so no new first key");
    let health = client
        .get(format!("{}/healthz", base2.trim_end_matches("/v1")))
        .send()
        .await
        .unwrap();
    assert!(health.status().is_success());
    let ledger = Ledger::connect(&format!("sqlite://{}", dir.join("sy.db").display()))
        .await
        .unwrap();
    let key_id = ledger.keys().await.unwrap()[0].id.clone();
    let (entries, balance) = books(&ledger, &key_id).await;
    assert_eq!(
        entries.len(),
        STREAMS,
        "every admitted request, exactly once"
    );
    for (id, e) in &entries {
        assert_eq!(e.end_reason, "interrupted", "{id}");
        assert_eq!(e.billing_note.as_deref(), Some("checkpoint"), "{id}");
        assert!(e.completion_tokens > 0 && e.cost.0 > 0, "{id}: {e:?}");
        // Billed to its last checkpoint (at most a second old, five tokens a second): never more
        // than the client received, and not much less.
        let got = received[id];
        assert!(
            e.completion_tokens <= got && e.completion_tokens + 15 >= got,
            "{id}: billed {} tokens, the client received {got}",
            e.completion_tokens
        );
    }
    assert_eq!(
        balance.0,
        Nanos::from_usd(1000.into()).unwrap().0 - sum(&entries),
        "the balance is the credits less the entries"
    );
    // Nothing is held in the restarted server: the whole balance is available again.
    let view: Value = client
        .get(format!("{base2}/key"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(view["reserved"], "0", "{view}");
    assert_eq!(view["balance"], balance.to_string(), "{view}");
    again.kill().await.unwrap();
    ledger.close().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// A stream killed in its first second pays its prompt and what it streamed: the checkpoint at
/// its first token is in the journal before any periodic one. The mock goes silent after one
/// token, so the periodic checkpoint (taken when later events arrive) never comes: without the
/// first-token checkpoint the journal never shows these streams and the wait below fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_right_after_the_first_token_bills_the_prompt_and_the_token() {
    const STREAMS: usize = 5;
    let dir = std::env::temp_dir().join(format!("sy-kill9-{}-{}", std::process::id(), line!()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mock = MockUpstream::start().await.unwrap();
    mock.set_options(json!({"stall_after": 1})).unwrap();
    let config = format!(
        "demo_credits = \"1000\"\ndatabase = \"sqlite://sy.db\"\n{}",
        harness::mock_config(&mock, "").replace("demo_credits = \"100\"\n", "")
    );
    let (mut child, key, base) = serve(&dir, &config).await;
    let key = key.expect("a fresh database prints its first key");
    let client = reqwest::Client::builder().no_gzip().build().unwrap();
    let mut streams = Vec::new();
    for _ in 0..STREAMS {
        let resp = client
            .post(format!("{base}/chat/completions"))
            .bearer_auth(&key)
            .json(&json!({"model": "m", "stream": true,
                          "messages": user("count the words of this prompt please")}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        // Read up to the first content token.
        let mut body = resp.bytes_stream();
        let mut seen = Vec::new();
        while !String::from_utf8_lossy(&seen).contains("\"content\":\"") {
            seen.extend_from_slice(&body.next().await.unwrap().unwrap());
        }
        streams.push(body);
    }
    let journal = dir.join("sy.db.journal");
    until(
        "a checkpoint at the first token of every stream",
        Duration::from_secs(60),
        || {
            let text = std::fs::read_to_string(&journal).unwrap_or_default();
            let ids: std::collections::HashSet<String> = text
                .lines()
                .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                .filter(|v| v["k"] == "progress" && v["completion_tokens"].as_u64() > Some(0))
                .filter_map(|v| v["id"].as_str().map(str::to_owned))
                .collect();
            ids.len() == STREAMS
        },
    )
    .await;
    let pid = child.id().unwrap().to_string();
    let killed = tokio::process::Command::new("kill")
        .args(["-9", &pid])
        .status()
        .await
        .unwrap();
    assert!(killed.success());
    child.wait().await.unwrap();
    drop(streams);
    let (mut again, _, _) = serve(&dir, &config).await;
    let ledger = Ledger::connect(&format!("sqlite://{}", dir.join("sy.db").display()))
        .await
        .unwrap();
    let key_id = ledger.keys().await.unwrap()[0].id.clone();
    let (entries, _) = books(&ledger, &key_id).await;
    assert_eq!(
        entries.len(),
        STREAMS,
        "every admitted request, exactly once"
    );
    for (id, e) in &entries {
        assert_eq!(e.end_reason, "interrupted", "{id}");
        // The prompt (the mock's estimate of these 7 words is 11 tokens; the gateway counts
        // with its tokenizer) and the one token each client received.
        assert!(e.prompt_tokens > 0, "{id}: {e:?}");
        assert_eq!(e.completion_tokens, 1, "{id}: {e:?}");
        assert!(e.cost.0 > 0, "{id}: {e:?}");
    }
    again.kill().await.unwrap();
    ledger.close().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// One step of the property test.
#[derive(Debug, Clone, Copy)]
enum Step {
    Admit(usize),
    Settle(usize, i64),
    /// The database refused the entry: it goes to the journal.
    Journal(usize, i64),
    /// A commit that timed out although it went through: the same entry is in the database and
    /// in the journal.
    Both(usize, i64),
    Crash,
}

fn entry(i: usize, key: &str, cost: i64, end: EndReason) -> UsageEntry {
    UsageEntry {
        request_id: format!("req_prop_{i}"),
        key_id: key.to_owned(),
        requested_model: "m".into(),
        served_model: None,
        provider: Some("p".into()),
        attempts: 1,
        prompt_tokens: 10,
        completion_tokens: 10,
        reasoning_tokens: 0,
        cached_tokens: 0,
        cache_write_tokens: 0,
        cache_saved: Nanos::ZERO,
        token_source: TokenSource::ProviderReported,
        cost: Nanos(cost),
        end_reason: end,
        ttft_ms: None,
        duration_ms: 1,
        stream: true,
        started_at: switchyard::store::ledger::now_ms(),
        finished_at: switchyard::store::ledger::now_ms(),
        hold: Nanos(cost),
        over_hold: false,
        note: None,
        upstream_status: None,
        status: None,
        error_text: None,
        dropped: Vec::new(),
        tags: Vec::new(),
        request_type: None,
    }
}

/// The steps of one seed: 30 random ones, then a crash.
fn prop_steps(seed: u64) -> Vec<Step> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    (0..30)
        .map(|_| {
            let i = rng.gen_range(0..12);
            let cost = rng.gen_range(0..5_000);
            match rng.gen_range(0..11) {
                0..=2 => Step::Admit(i),
                3..=4 => Step::Settle(i, cost),
                5..=7 => Step::Journal(i, cost),
                8..=9 => Step::Both(i, cost),
                _ => Step::Crash,
            }
        })
        .chain([Step::Crash])
        .collect()
}

/// What the books must show after `steps`, and which steps are acted on (a request is admitted
/// once and settled once; only replays repeat it).
#[derive(Default)]
struct PropModel {
    /// Settled requests: the first write of each wins.
    billed: HashMap<usize, i64>,
    /// Admitted and not settled yet.
    admitted: Vec<usize>,
    /// Admitted and in flight at a crash: recovered as `interrupted` at $0 if the admission
    /// reached the journal before the crash, else never seen (both are right); never settled after.
    crashed: std::collections::HashSet<usize>,
}

impl PropModel {
    /// Applies `step`; whether it is acted on.
    fn take(&mut self, step: Step) -> bool {
        match step {
            Step::Admit(i) => {
                let fresh = !self.billed.contains_key(&i)
                    && !self.admitted.contains(&i)
                    && !self.crashed.contains(&i);
                if fresh {
                    self.admitted.push(i);
                }
                fresh
            }
            Step::Settle(i, cost) | Step::Journal(i, cost) | Step::Both(i, cost) => {
                if self.billed.contains_key(&i) || self.crashed.contains(&i) {
                    return false;
                }
                self.billed.insert(i, cost);
                self.admitted.retain(|&a| a != i);
                true
            }
            Step::Crash => {
                self.crashed.extend(self.admitted.drain(..));
                true
            }
        }
    }
}

/// In the child process: `SEED START END URL JOURNAL KEY`: recovers the ledger, as a restarted
/// gateway does, acts on steps START..END of the seed, then dies at once (`abort`: no destructor
/// runs, nothing queued is flushed), as a killed process does.
const PROP_CHILD: &str = "SWITCHYARD_PROP_CRASH_CHILD";

async fn prop_child(spec: &str) -> ! {
    let parts: Vec<&str> = spec.split('\t').collect();
    let [seed, start, end, url, journal, key] = parts[..] else {
        panic!("bad child spec {spec:?}")
    };
    let (seed, start, end): (u64, usize, usize) = (
        seed.parse().unwrap(),
        start.parse().unwrap(),
        end.parse().unwrap(),
    );
    let steps = prop_steps(seed);
    let mut model = PropModel::default();
    let ledger = Ledger::connect_with_journal(url, std::path::Path::new(journal))
        .await
        .unwrap();
    let prices = Prices {
        input: 1.into(),
        output: 1.into(),
        ..Prices::default()
    };
    for (n, step) in steps.iter().enumerate().take(end) {
        let act = model.take(*step);
        if n < start || !act {
            continue;
        }
        match *step {
            Step::Admit(i) => {
                let rec = AdmitRecord::new(
                    &format!("req_prop_{i}"),
                    key,
                    "m",
                    true,
                    switchyard::store::ledger::now_ms(),
                    &prices,
                    Nanos(5_000),
                );
                ledger.journal().unwrap().admit(rec).await;
            }
            Step::Settle(i, cost) => {
                ledger
                    .settle(&entry(i, key, cost, EndReason::Stop), None)
                    .await
                    .unwrap();
            }
            Step::Journal(i, cost) | Step::Both(i, cost) => {
                let e = entry(i, key, cost, EndReason::Stop);
                if matches!(step, Step::Both(..)) {
                    ledger.settle(&e, None).await.unwrap();
                }
                ledger
                    .journal()
                    .unwrap()
                    .settle(vec![Settling {
                        entry: e,
                        hold: None,
                        refusable: false,
                    }])
                    .await
                    .unwrap();
            }
            Step::Crash => {}
        }
    }
    std::process::abort()
}

/// Random admissions, settlements (to the database, to the journal, or both, as a commit that
/// timed out although it went through) and crashes. Each stretch between crashes runs in a
/// process of its own that dies by `abort` at the crash, and the next one recovers the ledger from
/// what that left on disk: whatever was acknowledged is billed exactly once, a request in flight at
/// a crash is billed nothing, and the balance is the credits less the entries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_admissions_settlements_crashes_and_replays_never_bill_twice() {
    if let Ok(spec) = std::env::var(PROP_CHILD) {
        prop_child(&spec).await;
    }
    const CREDITS: i64 = 1_000_000_000;
    for seed in 0..24u64 {
        let db = temp_db();
        let url = format!("sqlite://{}", db.display());
        let journal = db.with_extension("journal");
        let ledger = Ledger::connect_with_journal(&url, &journal).await.unwrap();
        let (key, _) = switchyard::auth::create_key(
            &ledger,
            &NewKey {
                name: "prop".into(),
                credits: Nanos(CREDITS),
                ..NewKey::default()
            },
        )
        .await
        .unwrap();
        ledger.shutdown().await;
        let steps = prop_steps(seed);
        let mut model = PropModel::default();
        let mut start = 0;
        for (n, step) in steps.iter().enumerate() {
            model.take(*step);
            if !matches!(step, Step::Crash) {
                continue;
            }
            let spec = [
                seed.to_string(),
                start.to_string(),
                (n + 1).to_string(),
                url.clone(),
                journal.display().to_string(),
                key.id.clone(),
            ]
            .join("\t");
            let out = tokio::process::Command::new(std::env::current_exe().unwrap())
                .args([
                    "settlement_path::random_admissions_settlements_crashes_and_replays_never_bill_twice",
                    "--exact",
                    "--nocapture",
                ])
                .env(PROP_CHILD, spec)
                .kill_on_drop(true)
                .output()
                .await
                .unwrap();
            use std::os::unix::process::ExitStatusExt;
            assert_eq!(
                out.status.signal(),
                Some(libc::SIGABRT),
                "seed {seed}: the stretch {start}..={n} did not run to its crash: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            start = n + 1;
        }
        // The last crash recovered, as the next start does.
        let ledger = Ledger::connect_with_journal(&url, &journal).await.unwrap();
        let (entries, balance) = books(&ledger, &key.id).await;
        for (i, cost) in &model.billed {
            let e = entries
                .get(&format!("req_prop_{i}"))
                .unwrap_or_else(|| panic!("seed {seed}, request {i} not billed: {steps:?}"));
            assert_eq!(e.cost, Nanos(*cost), "seed {seed}, request {i}: {steps:?}");
        }
        for (id, e) in &entries {
            let i: usize = id.trim_start_matches("req_prop_").parse().unwrap();
            assert!(
                model.billed.contains_key(&i) || (model.crashed.contains(&i) && e.cost.0 == 0),
                "seed {seed}: {id} billed {:?} although it was never settled: {steps:?}",
                e.cost
            );
        }
        let want: i64 = entries.values().map(|e| e.cost.0).sum();
        assert_eq!(
            want,
            model.billed.values().sum::<i64>(),
            "seed {seed}: {steps:?}"
        );
        assert_eq!(balance.0, CREDITS - want, "seed {seed}: {steps:?}");
        ledger.shutdown().await;
        for suffix in ["", "-wal", "-shm"] {
            let mut p = db.clone().into_os_string();
            p.push(suffix);
            let _ = std::fs::remove_file(p);
        }
        let _ = std::fs::remove_file(&journal);
    }
}
