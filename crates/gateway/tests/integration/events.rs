//! The operator's event log at `/admin/requests`: one record per request (completed, failed
//! mid-stream, cancelled, refused before any upstream answered) with the masked key, status, end
//! reason, the error's own text, latency bucket, request type, tokens and cost; never the key
//! itself nor the prompt or completion text.

use std::time::Duration;

use futures_util::StreamExt;
use serde_json::{json, Value};

use crate::harness::{joined, parse_sse, request_id, start_with_mock_top, user, TestGateway};

const ADMIN: &str = "sk-admin-events-0123456789";

async fn gateway() -> (TestGateway, mock_upstream::MockUpstream) {
    start_with_mock_top(&format!("admin_key = \"{ADMIN}\""), "").await
}

const WAIT: Duration = Duration::from_secs(20);
const PROMPT: &str = "the nightingale sings at midnight";

async fn log(gw: &TestGateway, query: &str) -> Vec<Value> {
    let resp = crate::harness::client()
        .get(gw.url(&format!("/admin/requests{query}")))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    body["data"].as_array().unwrap().clone()
}

async fn record(gw: &TestGateway, id: &str) -> Value {
    gw.gw
        .ledger
        .wait_for_entry(id, WAIT)
        .await
        .unwrap()
        .unwrap();
    log(gw, "?limit=1000")
        .await
        .into_iter()
        .find(|r| r["request_id"] == id)
        .unwrap_or_else(|| panic!("no record for {id}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_request_leaves_one_record_with_its_outcome() {
    let (gw, mock) = gateway().await;
    let masked = format!("sk-sy-…{}", &gw.key[gw.key.len() - 4..]);

    // Completed stream.
    mock.set_options(json!({"tokens": 12})).unwrap();
    let resp = gw
        .chat(json!({"model": "m", "stream": true, "messages": user(PROMPT)}))
        .send()
        .await
        .unwrap();
    let ok_id = request_id(&resp);
    let completion = joined(&parse_sse(&resp.text().await.unwrap()), "content");
    let ok = record(&gw, &ok_id).await;
    assert_eq!(ok["masked_key"], masked.as_str());
    assert_eq!(ok["status"], 200);
    assert_eq!(ok["end_reason"], "stop");
    assert_eq!(ok["request_type"], "chat.stream");
    assert_eq!(ok["latency_bucket"], "<1s");
    assert_eq!(ok["error_text"], Value::Null);
    assert_eq!(ok["completion_tokens"], 12);
    assert!(ok["ttft_ms"].as_i64().is_some());
    assert!(ok["provider"].as_str().is_some());
    assert_ne!(ok["cost"], "0");

    // Failed mid-stream: the upstream's own words are kept.
    mock.set_options(json!({"tokens": 30, "error_after": 3}))
        .unwrap();
    let resp = gw
        .chat(json!({"model": "m", "stream": true, "messages": user(PROMPT)}))
        .send()
        .await
        .unwrap();
    let failed_id = request_id(&resp);
    resp.text().await.unwrap();
    let failed = record(&gw, &failed_id).await;
    assert_eq!(failed["end_reason"], "error");
    assert_eq!(failed["status"], 200, "the stream had begun");
    assert!(
        failed["error_text"]
            .as_str()
            .unwrap()
            .contains("mock upstream error"),
        "{failed}"
    );
    assert_eq!(failed["masked_key"], masked.as_str());

    // Refused before any answer: the client's status and the gateway's own words.
    mock.set_options(json!({"status": 500})).unwrap();
    let resp = gw
        .chat(json!({"model": "m", "messages": user(PROMPT)}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 502);
    let refused_id = request_id(&resp);
    let refused = record(&gw, &refused_id).await;
    assert_eq!(refused["status"], 502);
    assert_eq!(refused["request_type"], "chat");
    assert!(!refused["error_text"].as_str().unwrap().is_empty());

    // Cancelled by the client mid-stream.
    mock.set_options(json!({"tokens": 500, "gap_ms": 20}))
        .unwrap();
    let resp = gw
        .chat(json!({"model": "m", "stream": true, "messages": user(PROMPT)}))
        .send()
        .await
        .unwrap();
    let cancelled_id = request_id(&resp);
    let mut frames = resp.bytes_stream();
    let mut buf = String::new();
    while joined(&parse_sse(&buf), "content")
        .split_whitespace()
        .count()
        < 3
    {
        buf.push_str(&String::from_utf8_lossy(
            &frames.next().await.unwrap().unwrap(),
        ));
    }
    drop(frames);
    let cancelled = record(&gw, &cancelled_id).await;
    assert_eq!(cancelled["end_reason"], "cancelled");
    assert_eq!(cancelled["status"], 200);
    assert_eq!(cancelled["masked_key"], masked.as_str());

    // One record each; filters by status and type.
    let all = log(&gw, "?limit=1000").await;
    assert_eq!(all.len(), 4, "{all:?}");
    let errors = log(&gw, "?status=502").await;
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0]["request_id"], refused_id.as_str());
    let plain = log(&gw, "?type=chat").await;
    assert_eq!(plain.len(), 1);
    assert_eq!(log(&gw, "?type=chat.stream").await.len(), 3);

    // Never the key, the prompt or the completion.
    let text = serde_json::to_string(&all).unwrap();
    assert!(!text.contains(&gw.key), "{text}");
    assert!(!text.contains("nightingale"), "{text}");
    let word = completion.split_whitespace().nth(1).unwrap();
    assert!(!text.contains(&format!(" {word} ")), "{text}");
}

#[tokio::test]
async fn a_bad_status_filter_is_a_400_naming_it() {
    let (gw, _mock) = gateway().await;
    let resp = crate::harness::client()
        .get(gw.url("/admin/requests?status=abc"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["param"], "status");
}

/// `[event_log] path = "…"`: one JSON line per settled request, with the masked key, and never
/// the key, the prompt or the completion.
#[tokio::test]
async fn the_event_log_file_gets_one_line_per_request() {
    let path = crate::harness::temp_db().with_extension("jsonl");
    let extra = format!(
        "[event_log]\npath = \"{}\"\n",
        path.display().to_string().replace('\\', "/")
    );
    let (gw, mock) = start_with_mock_top(&format!("admin_key = \"{ADMIN}\""), &extra).await;
    let masked = format!("sk-sy-…{}", &gw.key[gw.key.len() - 4..]);
    let mut ids = Vec::new();
    let mut completions = String::new();
    for (opts, stream) in [
        (json!({"tokens": 8}), true),
        (json!({"tokens": 8}), false),
        (json!({"tokens": 20, "error_after": 2}), true),
    ] {
        mock.set_options(opts).unwrap();
        let resp = gw
            .chat(json!({"model": "m", "stream": stream, "messages": user(PROMPT)}))
            .send()
            .await
            .unwrap();
        ids.push(request_id(&resp));
        completions.push_str(&resp.text().await.unwrap());
    }
    // A Messages request with a server tool, on an OpenAI-dialect route: the line names what the
    // route could not carry.
    let resp = crate::harness::client()
        .post(gw.url("/v1/messages"))
        .header("x-api-key", &gw.key)
        .json(
            &json!({"model": "m", "max_tokens": 64, "messages": user(PROMPT),
                      "tools": [{"name": "Read", "input_schema": {"type": "object"}},
                                {"type": "web_search_20250305", "name": "web_search"}]}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.headers()["x-switchyard-dropped"],
        "tools.1:web_search_20250305"
    );
    let translated = request_id(&resp);
    completions.push_str(&resp.text().await.unwrap());
    let read = || std::fs::read_to_string(&path).unwrap_or_default();
    crate::harness::until("four lines in the event log", WAIT, || {
        read().lines().count() >= 4
    })
    .await;
    let text = read();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 4, "{text}");
    let dropped = lines
        .iter()
        .find(|l| l["request_id"] == translated)
        .unwrap();
    assert_eq!(dropped["dropped"], json!(["tools.1:web_search_20250305"]));
    assert_eq!(dropped["request_type"], "messages");
    let logged: Vec<&str> = lines
        .iter()
        .map(|l| l["request_id"].as_str().unwrap())
        .collect();
    for id in &ids {
        assert_eq!(
            logged.iter().filter(|l| *l == id).count(),
            1,
            "{id}: {text}"
        );
    }
    for l in &lines {
        assert_eq!(l["masked_key"], masked.as_str());
        assert!(l["latency_bucket"].as_str().is_some());
        assert!(l["cost"].as_str().is_some());
    }
    let failed = lines.iter().find(|l| l["request_id"] == ids[2]).unwrap();
    assert_eq!(failed["end_reason"], "error");
    assert!(failed["error_text"]
        .as_str()
        .unwrap()
        .contains("mock upstream error"));
    let plain = lines.iter().find(|l| l["request_id"] == ids[1]).unwrap();
    assert_eq!(plain["request_type"], "chat");
    assert_eq!(plain["status"], 200);
    assert!(plain.get("dropped").is_none(), "{plain}");
    assert!(!text.contains(&gw.key));
    assert!(!text.contains("nightingale"));
    // The mock's answer ("the quick brown fox jumps over …") never reaches the log.
    assert!(completions.contains("quick brown"));
    assert!(
        !text.contains("quick brown") && !text.contains("jumps over"),
        "{text}"
    );
}
