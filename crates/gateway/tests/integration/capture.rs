//! Per-key capture of prompt and completion text: off by default (no text in the database, the
//! event log or any admin answer), on for one key only (its requests readable by the admin at
//! `/admin/requests/{id}`, redacted: secrets, tokens, emails), on every path (chat and Responses,
//! streamed or not), purged when expired (the purge takes the clock as a parameter), deleted on
//! request and when capture is turned off, and never readable with a non-admin key.

use std::time::Duration;

use serde_json::{json, Value};

use crate::harness::{
    client, joined, parse_sse, request_id, start_with_mock_top, user, TestGateway,
};

const ADMIN: &str = "sk-admin-capture-0123456789";
const WAIT: Duration = Duration::from_secs(20);
/// A word that appears in no completion the mock writes.
const MARKER: &str = "zanzibarquokka";

async fn gateway() -> (TestGateway, mock_upstream::MockUpstream) {
    let (gw, mock) = start_with_mock_top(&format!("admin_key = \"{ADMIN}\""), "").await;
    mock.set_options(json!({"tokens": 6})).unwrap();
    (gw, mock)
}

async fn admin(
    method: reqwest::Method,
    gw: &TestGateway,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = client().request(method, gw.url(path)).bearer_auth(ADMIN);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// A second key with credits; returns (id, key).
async fn second_key(gw: &TestGateway) -> (String, String) {
    let (status, body) = admin(
        reqwest::Method::POST,
        gw,
        "/admin/keys",
        Some(json!({"name": "b", "credits": "10"})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    (
        body["id"].as_str().unwrap().to_owned(),
        body["key"].as_str().unwrap().to_owned(),
    )
}

/// The prompt: the marker, a configured secret (the upstream credential), an email, a bearer token.
fn prompt() -> String {
    format!(
        "{MARKER}: my key is upstream-secret-key, mail alice.smith@example.com, \
         header Authorization: Bearer tok_0123456789abcdef"
    )
}

async fn chat(gw: &TestGateway, key: &str, stream: bool) -> (String, String) {
    let resp = client()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(key)
        .json(&json!({"model": "m", "stream": stream, "messages": user(&prompt())}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let id = request_id(&resp);
    let text = resp.text().await.unwrap();
    let completion = if stream {
        joined(&parse_sse(&text), "content")
    } else {
        let v: Value = serde_json::from_str(&text).unwrap();
        v["choices"][0]["message"]["content"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    gw.gw
        .ledger
        .wait_for_entry(&id, WAIT)
        .await
        .unwrap()
        .unwrap();
    (id, completion)
}

async fn responses(gw: &TestGateway, key: &str, stream: bool) -> String {
    let resp = client()
        .post(gw.url("/v1/responses"))
        .bearer_auth(key)
        .json(&json!({"model": "m", "stream": stream, "store": false, "input": prompt()}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let id = request_id(&resp);
    resp.text().await.unwrap();
    gw.gw
        .ledger
        .wait_for_entry(&id, WAIT)
        .await
        .unwrap()
        .unwrap();
    id
}

/// The request's detail once its capture is stored (captures are written off the request path).
async fn captured(gw: &TestGateway, id: &str) -> Value {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let (status, body) = admin(
            reqwest::Method::GET,
            gw,
            &format!("/admin/requests/{id}"),
            None,
        )
        .await;
        assert_eq!(status, 200, "{body}");
        if !body["capture"].is_null() {
            return body;
        }
        assert!(std::time::Instant::now() < deadline, "no capture for {id}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn assert_redacted(text: &str) {
    for secret in [
        "upstream-secret-key",
        "alice.smith",
        "example.com",
        "tok_0123456789abcdef",
    ] {
        assert!(!text.contains(secret), "{secret} stored in {text}");
    }
    assert!(text.contains("[redacted]"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capture_is_off_by_default_and_no_prompt_text_is_stored_anywhere() {
    let (gw, _mock) = gateway().await;
    let (status, key) = admin(
        reqwest::Method::GET,
        &gw,
        &format!("/admin/keys/{}", gw.key_id),
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(key["capture"]["enabled"], false);
    let mut ids = Vec::new();
    for stream in [false, true] {
        ids.push(chat(&gw, &gw.key, stream).await.0);
        ids.push(responses(&gw, &gw.key, stream).await);
    }
    assert_eq!(gw.gw.store.captures().count().await.unwrap(), 0);
    let (_, log) = admin(
        reqwest::Method::GET,
        &gw,
        "/admin/requests?limit=1000",
        None,
    )
    .await;
    assert_eq!(log["data"].as_array().unwrap().len(), 4);
    assert!(!log.to_string().contains(MARKER));
    for id in &ids {
        let (status, body) = admin(
            reqwest::Method::GET,
            &gw,
            &format!("/admin/requests/{id}"),
            None,
        )
        .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["request_id"], id.as_str());
        assert_eq!(body["capture"], Value::Null);
        assert!(!body.to_string().contains(MARKER));
    }
    // Nothing in the database files either (the SQLite file and its write-ahead log).
    for suffix in ["", "-wal"] {
        let mut p = gw.db_path.clone().into_os_string();
        p.push(suffix);
        if let Ok(bytes) = std::fs::read(&p) {
            let found = bytes.windows(MARKER.len()).any(|w| w == MARKER.as_bytes());
            assert!(!found, "the prompt is in {p:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capture_on_for_one_key_keeps_its_text_redacted_and_only_its_text() {
    let (gw, _mock) = gateway().await;
    let (b_id, b_key) = second_key(&gw).await;
    // B's request first: captures are written in order, so once A's is there, B's would be too.
    let (b_request, _) = chat(&gw, &b_key, false).await;

    let (status, body) = admin(
        reqwest::Method::PATCH,
        &gw,
        &format!("/admin/keys/{}", gw.key_id),
        Some(json!({"capture": {"enabled": true, "retention_hours": 24}})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["capture"],
        json!({"enabled": true, "retention_hours": 24})
    );

    for stream in [false, true] {
        let (id, completion) = chat(&gw, &gw.key, stream).await;
        let detail = captured(&gw, &id).await;
        assert_eq!(detail["key_id"], gw.key_id.as_str());
        let request = detail["capture"]["request"].as_str().unwrap();
        assert!(request.contains(MARKER), "{request}");
        assert_redacted(request);
        assert!(!completion.is_empty());
        assert_eq!(detail["capture"]["completion"], completion.as_str());
        assert_eq!(detail["capture"]["truncated"], false);
        let ttl = detail["capture"]["expires_at"].as_i64().unwrap()
            - detail["capture"]["created_at"].as_i64().unwrap();
        assert_eq!(ttl, 24 * 3_600_000);

        let id = responses(&gw, &gw.key, stream).await;
        let detail = captured(&gw, &id).await;
        let request = detail["capture"]["request"].as_str().unwrap();
        assert!(request.contains(MARKER), "{request}");
        assert_redacted(request);
        assert!(!detail["capture"]["completion"].as_str().unwrap().is_empty());
    }
    let (_, b) = admin(
        reqwest::Method::GET,
        &gw,
        &format!("/admin/requests/{b_request}"),
        None,
    )
    .await;
    assert_eq!(b["key_id"], b_id.as_str());
    assert_eq!(b["capture"], Value::Null);
    assert_eq!(gw.gw.store.captures().count().await.unwrap(), 4);

    // Only the admin reads captures.
    for key in [gw.key.as_str(), b_key.as_str()] {
        let resp = client()
            .get(gw.url(&format!("/admin/requests/{b_request}")))
            .bearer_auth(key)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 401);
        assert!(!resp.text().await.unwrap().contains(MARKER));
    }

    // Off: the key's captures are gone at once, and its next request is not captured.
    let (status, body) = admin(
        reqwest::Method::PATCH,
        &gw,
        &format!("/admin/keys/{}", gw.key_id),
        Some(json!({"capture": false})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["capture"]["enabled"], false);
    assert_eq!(body["capture"]["purged"], 4);
    let (after, _) = chat(&gw, &gw.key, false).await;
    let (_, detail) = admin(
        reqwest::Method::GET,
        &gw,
        &format!("/admin/requests/{after}"),
        None,
    )
    .await;
    assert_eq!(detail["capture"], Value::Null);
    assert_eq!(gw.gw.store.captures().count().await.unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn captures_expire_and_can_be_deleted() {
    let (gw, _mock) = gateway().await;
    let (status, body) = admin(
        reqwest::Method::PATCH,
        &gw,
        &format!("/admin/keys/{}", gw.key_id),
        Some(json!({"capture": {"enabled": true, "retention_hours": 1}})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (first, _) = chat(&gw, &gw.key, false).await;
    let (second, _) = chat(&gw, &gw.key, true).await;
    captured(&gw, &first).await;
    let created = captured(&gw, &second).await["capture"]["created_at"]
        .as_i64()
        .unwrap();

    let captures = gw.gw.store.captures();
    let max_age = 30 * 24 * 3_600_000;
    // Half an hour later nothing has expired; an hour and a minute later both have.
    assert_eq!(
        captures.purge(created + 1_800_000, max_age).await.unwrap(),
        0
    );
    assert_eq!(captures.count().await.unwrap(), 2);
    assert_eq!(
        captures.purge(created + 3_660_000, max_age).await.unwrap(),
        2
    );
    let (_, detail) = admin(
        reqwest::Method::GET,
        &gw,
        &format!("/admin/requests/{first}"),
        None,
    )
    .await;
    assert_eq!(detail["capture"], Value::Null);
    assert_eq!(detail["request_id"], first.as_str());

    // A lowered maximum retention purges what the key's own retention would still keep.
    let (third, _) = chat(&gw, &gw.key, false).await;
    let created = captured(&gw, &third).await["capture"]["created_at"]
        .as_i64()
        .unwrap();
    assert_eq!(captures.purge(created + 60_000, 30_000).await.unwrap(), 1);

    // Deleted on request.
    let (fourth, _) = chat(&gw, &gw.key, false).await;
    captured(&gw, &fourth).await;
    let path = format!("/admin/requests/{fourth}/capture");
    let (status, body) = admin(reqwest::Method::DELETE, &gw, &path, None).await;
    assert_eq!((status, &body["deleted"]), (200, &json!(true)), "{body}");
    let (status, body) = admin(reqwest::Method::DELETE, &gw, &path, None).await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["error"]["code"], "capture_not_found");
    let (status, body) = admin(reqwest::Method::GET, &gw, "/admin/requests/req_nope", None).await;
    assert_eq!(status, 404, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capture_settings_are_checked() {
    let (gw, _mock) = gateway().await;
    let path = format!("/admin/keys/{}", gw.key_id);
    for (bad, param) in [
        (
            json!({"enabled": true, "retention_hours": 0}),
            "capture.retention_hours",
        ),
        (
            json!({"enabled": true, "retention_hours": 100_000}),
            "capture.retention_hours",
        ),
        (json!({"enabled": "yes"}), "capture"),
        (json!({"enabled": true, "forever": true}), "capture"),
        (json!("on"), "capture"),
    ] {
        let (status, body) = admin(
            reqwest::Method::PATCH,
            &gw,
            &path,
            Some(json!({"capture": bad})),
        )
        .await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(body["error"]["param"], param);
    }
    // `true` takes the default retention (7 days).
    let (status, body) = admin(
        reqwest::Method::PATCH,
        &gw,
        &path,
        Some(json!({"capture": true})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["capture"],
        json!({"enabled": true, "retention_hours": 168})
    );
}

/// The same storage, redaction and purge on PostgreSQL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capture_works_on_postgres() {
    let Some(server) = crate::ledger_conformance::postgres_url() else {
        return;
    };
    let db = crate::ledger_conformance::TestDb::postgres(&server).await;
    let mock = mock_upstream::MockUpstream::start().await.unwrap();
    mock.set_options(json!({"tokens": 6})).unwrap();
    let scratch = crate::harness::temp_db();
    let mut journal = scratch.clone().into_os_string();
    journal.push(".journal");
    let config = format!(
        "admin_key = \"{ADMIN}\"\njournal = {journal:?}\n{}",
        crate::harness::mock_config(&mock, "")
    );
    let gw = crate::harness::start_on_database(&config, &db.url, scratch).await;
    let (status, body) = admin(
        reqwest::Method::PATCH,
        &gw,
        &format!("/admin/keys/{}", gw.key_id),
        Some(json!({"capture": {"retention_hours": 2}})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (id, completion) = chat(&gw, &gw.key, true).await;
    let detail = captured(&gw, &id).await;
    assert_redacted(detail["capture"]["request"].as_str().unwrap());
    assert_eq!(detail["capture"]["completion"], completion.as_str());
    let created = detail["capture"]["created_at"].as_i64().unwrap();
    let captures = gw.gw.store.captures();
    assert_eq!(
        captures
            .purge(created + 3_600_000, i64::MAX / 2)
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        captures
            .purge(created + 7_200_000, i64::MAX / 2)
            .await
            .unwrap(),
        1
    );
    drop(gw);
    db.drop_db().await;
}
