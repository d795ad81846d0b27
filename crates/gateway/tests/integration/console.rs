//! The console as HTTP serves it (the page and every embedded file with its content type,
//! `cache-control`, a self-only content security policy and `nosniff`; unknown files an
//! OpenAI-shaped 404), and the caller-scoped `/v1/key/usage` and `/v1/key/requests` it reads
//! when signed in with an API key: the caller's own entries only, never another key's.

use serde_json::{json, Value};

use crate::harness::{client, start_with_mock_top, user};

const ADMIN: &str = "sk-admin-console-0123456789";

#[tokio::test(flavor = "multi_thread")]
async fn the_console_and_its_files_are_served_with_strict_headers() {
    let (gw, _mock) = start_with_mock_top("", "").await;
    let page = client().get(gw.url("/")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let h = page.headers().clone();
    assert_eq!(h["content-type"], "text/html; charset=utf-8");
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert_eq!(h["cache-control"], "no-cache");
    let csp = h["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("default-src 'none'"), "{csp}");
    assert!(csp.contains("script-src 'self'") && csp.contains("connect-src 'self'"));
    assert!(
        !csp.contains("unsafe-inline") && !csp.contains("http"),
        "{csp}"
    );
    let html = page.text().await.unwrap();

    // Every file the page names is served with its type, and names nothing outside this origin.
    let mut named = 0;
    for (at, _) in html.match_indices("/console/") {
        let name: String = html[at + 9..].chars().take_while(|c| *c != '"').collect();
        let resp = client()
            .get(gw.url(&format!("/console/{name}")))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{name}");
        let ty = resp.headers()["content-type"].to_str().unwrap().to_owned();
        let expected = match name.rsplit('.').next().unwrap() {
            "js" => "text/javascript; charset=utf-8",
            "css" => "text/css; charset=utf-8",
            "svg" => "image/svg+xml",
            other => panic!("unexpected file type {other}"),
        };
        assert_eq!(ty, expected, "{name}");
        assert_eq!(resp.headers()["x-content-type-options"], "nosniff");
        named += 1;
    }
    assert!(named >= 3, "the page names its files: {html}");
    let app = client()
        .get(gw.url("/console/app.js"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(app.contains("sessionStorage") || app.contains("session."));

    for missing in ["/console/nope.js", "/console/..%2Fapi.js", "/console/%FF"] {
        let resp = client().get(gw.url(missing)).send().await.unwrap();
        let status = resp.status().as_u16();
        assert!(status == 404 || status == 400, "{missing}: {status}");
        let body: Value = resp.json().await.unwrap();
        assert!(body["error"]["message"].is_string(), "{missing}: {body}");
    }
    let post = client().post(gw.url("/")).send().await.unwrap();
    assert_eq!(post.status(), 405);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_key_sees_its_own_usage_and_requests_only() {
    let (gw, _mock) = start_with_mock_top(&format!("admin_key = \"{ADMIN}\""), "").await;
    let other: Value = client()
        .post(gw.url("/admin/keys"))
        .bearer_auth(ADMIN)
        .json(&json!({"name": "other", "credits": "5"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let other_key = other["key"].as_str().unwrap().to_owned();
    let other_id = other["id"].as_str().unwrap().to_owned();
    // One request for the first key, two for the other.
    for (key, n) in [(&gw.key, 1), (&other_key, 2)] {
        for _ in 0..n {
            let resp = client()
                .post(gw.url("/v1/chat/completions"))
                .bearer_auth(key)
                .json(&json!({"model": "m", "messages": user("hi")}))
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 200);
        }
    }
    let base = gw.url("");
    let get = |path: String, key: String| {
        let url = format!("{base}{path}");
        async move {
            let resp = client().get(url).bearer_auth(key).send().await.unwrap();
            let status = resp.status().as_u16();
            (status, resp.json::<Value>().await.unwrap())
        }
    };

    // The first key's log: its one request, even when it asks for the other key's.
    for path in [
        "/v1/key/requests",
        &format!("/api/v1/key/requests?key={other_id}"),
    ] {
        let (status, log) = get(path.to_owned(), gw.key.clone()).await;
        assert_eq!(status, 200, "{log}");
        let rows = log["data"].as_array().unwrap();
        assert_eq!(rows.len(), 1, "{path}: {log}");
        assert_eq!(rows[0]["key_id"], gw.key_id.as_str());
    }
    let (_, log) = get("/v1/llm/key/requests?model=m".into(), other_key.clone()).await;
    let rows = log["data"].as_array().unwrap();
    assert_eq!(rows.len(), 2, "{log}");
    assert!(rows.iter().all(|r| r["key_id"] == other_id.as_str()));

    // Usage by key has one group, the caller's; by day its requests; totals agree with the log.
    let (_, by_key) = get(
        format!("/v1/key/usage?group_by=key&key={}", gw.key_id),
        other_key.clone(),
    )
    .await;
    assert_eq!(by_key["data"].as_array().unwrap().len(), 1, "{by_key}");
    assert_eq!(by_key["data"][0]["group"], other_id.as_str());
    assert_eq!(by_key["data"][0]["requests"], 2);
    let (_, by_day) = get("/v1/key/usage?group_by=day".into(), gw.key.clone()).await;
    assert_eq!(by_day["data"][0]["requests"], 1, "{by_day}");

    // Bad parameters are 400s naming them; no key or a wrong one is 401.
    let (status, err) = get("/v1/key/usage?group_by=hour".into(), gw.key.clone()).await;
    assert_eq!(
        (status, err["error"]["param"].clone()),
        (400, json!("group_by"))
    );
    let (status, err) = get("/v1/key/requests?status=9".into(), gw.key.clone()).await;
    assert_eq!(
        (status, err["error"]["param"].clone()),
        (400, json!("status"))
    );
    let (status, _) = get("/v1/key/requests".into(), "sk-sy-wrong".into()).await;
    assert_eq!(status, 401);
    let (status, _) = get("/v1/key/usage".into(), ADMIN.into()).await;
    assert_eq!(status, 401, "the admin key is not an API key");
}
