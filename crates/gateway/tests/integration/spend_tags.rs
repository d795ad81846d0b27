//! Spend by tag: a request's `x-switchyard-tags` header and `metadata.tags` (chat, Responses)
//! reach its ledger entry, `/v1/key/usage?group_by=tag` and `/admin/usage` add each tag's spend up
//! (an entry under each of its tags), the event log line carries them, and a bad tag is the
//! caller's 400 in its own dialect.

use std::time::Duration;

use serde_json::{json, Value};

use crate::harness;

const WAIT: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread")]
async fn usage_groups_by_the_tags_requests_carry() {
    let (gw, _mock) = harness::start_with_mock_top("", "").await;
    let post = |path: &str, tags: Option<&str>, body: Value| {
        let mut req = harness::client()
            .post(gw.url(path))
            .bearer_auth(&gw.key)
            .json(&body);
        if let Some(t) = tags {
            req = req.header("x-switchyard-tags", t);
        }
        req.send()
    };
    let chat =
        |meta: Value| json!({"model": "m", "messages": harness::user("hi"), "metadata": meta});
    let mut costs = std::collections::HashMap::<&str, i64>::new();
    for (path, tags, body, expect) in [
        (
            "/v1/chat/completions",
            Some("team-a,ci"),
            chat(json!({})),
            &["team-a", "ci"][..],
        ),
        (
            "/v1/chat/completions",
            None,
            chat(json!({"tags": ["team-a"]})),
            &["team-a"][..],
        ),
        (
            "/v1/responses",
            None,
            json!({"model": "m", "input": "hi", "metadata": {"tags": "ci"}}),
            &["ci"][..],
        ),
        ("/v1/chat/completions", None, chat(json!({})), &[][..]),
    ] {
        let resp = post(path, tags, body).await.unwrap();
        assert_eq!(resp.status(), 200, "{path}");
        let id = harness::request_id(&resp);
        let row = gw
            .gw
            .ledger
            .wait_for_entry(&id, WAIT)
            .await
            .unwrap()
            .unwrap();
        for t in expect {
            *costs.entry(t).or_default() += row.cost.0;
        }
    }
    let usage: Value = harness::client()
        .get(gw.url("/v1/key/usage?group_by=tag&since=1h"))
        .bearer_auth(&gw.key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let groups: Vec<(String, i64, String)> = usage["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| {
            (
                g["group"].as_str().unwrap().to_owned(),
                g["requests"].as_i64().unwrap(),
                g["cost"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let usd = |n: i64| switchyard::store::ledger::Nanos(n).to_string();
    assert_eq!(
        groups,
        vec![
            ("ci".to_owned(), 2, usd(costs["ci"])),
            ("team-a".to_owned(), 2, usd(costs["team-a"])),
        ],
        "{usage}"
    );
    // A bad tag is refused before anything is billed, in the client's dialect.
    let resp = post(
        "/v1/chat/completions",
        Some("no spaces allowed"),
        chat(json!({})),
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), 400);
    let e: Value = resp.json().await.unwrap();
    assert_eq!(e["error"]["param"], "x-switchyard-tags", "{e}");
}
