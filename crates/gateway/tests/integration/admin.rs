//! The admin API as an operator uses it: `/admin/keys` (create, list, show, change, revoke) and
//! `/admin/usage`, behind the admin key; changes that apply to the very next request; expired and
//! revoked keys refused with 401; no admin key configured means 403.

use serde_json::{json, Value};

use crate::harness::{self, start_with_mock, start_with_mock_top, user, TestGateway};

const ADMIN: &str = "admin-secret-123-0123456789";

async fn gateway() -> (TestGateway, mock_upstream::MockUpstream) {
    start_with_mock_top(&format!("admin_key = \"{ADMIN}\""), "").await
}

fn admin(gw: &TestGateway, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
    harness::client()
        .request(method, gw.url(path))
        .bearer_auth(ADMIN)
}

async fn json_of(resp: reqwest::Response) -> (u16, Value) {
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap())
}

async fn chat_status(gw: &TestGateway, key: &str, model: &str) -> u16 {
    harness::client()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(key)
        .json(&json!({"model": model, "messages": user("hi")}))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn admin_routes_need_the_admin_key() {
    let (gw, _mock) = gateway().await;
    for token in [None, Some("wrong"), Some(gw.key.as_str())] {
        let mut req = harness::client().get(gw.url("/admin/keys"));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let (status, body) = json_of(req.send().await.unwrap()).await;
        assert_eq!(status, 401, "{token:?}");
        assert_eq!(body["error"]["code"], "invalid_admin_key");
    }
    let (gw, _mock) = start_with_mock("").await;
    let (status, body) = json_of(
        harness::client()
            .get(gw.url("/admin/keys"))
            .bearer_auth("anything")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 403);
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("admin_key"));
}

#[tokio::test]
async fn create_list_show_change_and_revoke_a_key() {
    let (gw, _mock) = gateway().await;
    let (status, created) = json_of(
        admin(&gw, reqwest::Method::POST, "/admin/keys")
            .json(
                &json!({"name": "search", "credits": "2.50", "rpm": 60, "models": ["m"],
                          "budget": "1", "budget_period": "day", "expires_in": "30d",
                          "metadata": {"team": "search"}}),
            )
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().unwrap().to_owned();
    let key = created["key"].as_str().unwrap().to_owned();
    assert!(key.starts_with("sk-sy-"));
    assert_eq!(created["balance"], "2.5");
    assert_eq!(created["limits"]["rpm"], 60);
    assert_eq!(created["limits"]["budget"]["limit"], "1");
    assert_eq!(created["limits"]["budget"]["period"], "day");
    assert_eq!(created["models"], json!(["m"]));
    assert_eq!(created["metadata"], json!({"team": "search"}));
    assert!(created["expires_at"].as_i64().unwrap() > 0);

    // The key is shown once: never in the list or by id.
    let (_, list) = json_of(
        admin(&gw, reqwest::Method::GET, "/admin/keys")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(list["data"].as_array().unwrap().len(), 2);
    assert!(!list.to_string().contains(&key));
    let (status, shown) = json_of(
        admin(&gw, reqwest::Method::GET, &format!("/admin/keys/{id}"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(shown["name"], "search");
    assert!(!shown.to_string().contains(&key));

    // The key works for its model only.
    assert_eq!(chat_status(&gw, &key, "m").await, 200);
    assert_eq!(chat_status(&gw, &key, "deepseek-r").await, 403);

    // Changes apply to the very next request.
    let (status, changed) = json_of(
        admin(&gw, reqwest::Method::PATCH, &format!("/admin/keys/{id}"))
            .json(&json!({"models": null, "top_up": "1.5", "name": "search-2", "budget": null}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{changed}");
    assert_eq!(changed["name"], "search-2");
    assert!(changed["models"].is_null());
    assert!(changed["limits"]["budget"].is_null());
    let before: rust_decimal::Decimal = created["balance"].as_str().unwrap().parse().unwrap();
    let spent: rust_decimal::Decimal = changed["spend"].as_str().unwrap().parse().unwrap();
    let after: rust_decimal::Decimal = changed["balance"].as_str().unwrap().parse().unwrap();
    assert_eq!(after, before + rust_decimal::Decimal::new(15, 1) - spent);
    assert_eq!(chat_status(&gw, &key, "deepseek-r").await, 200);

    // Setting the credits to zero refuses the next request with 402.
    let (status, _) = json_of(
        admin(&gw, reqwest::Method::PATCH, &format!("/admin/keys/{id}"))
            .json(&json!({"credits": "0"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(chat_status(&gw, &key, "m").await, 402);

    // Expired: 401 at once.
    let (status, _) = json_of(
        admin(&gw, reqwest::Method::PATCH, &format!("/admin/keys/{id}"))
            .json(&json!({"credits": "5", "expires_at": "2000-01-01T00:00:00Z"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200);
    let resp = harness::client()
        .get(gw.url("/v1/key"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    let (status, body) = json_of(resp).await;
    assert_eq!(status, 401);
    assert_eq!(body["error"]["code"], "expired_api_key");
    admin(&gw, reqwest::Method::PATCH, &format!("/admin/keys/{id}"))
        .json(&json!({"expires_at": null}))
        .send()
        .await
        .unwrap();
    assert_eq!(chat_status(&gw, &key, "m").await, 200);

    // Revoked: 401 at once, and still listed (as revoked) for the ledger.
    let (status, revoked) = json_of(
        admin(&gw, reqwest::Method::DELETE, &format!("/admin/keys/{id}"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(revoked["revoked"], true);
    assert_eq!(chat_status(&gw, &key, "m").await, 401);

    let (status, body) = json_of(
        admin(&gw, reqwest::Method::GET, "/admin/keys/key_nope")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 404);
    assert_eq!(body["error"]["code"], "key_not_found");
}

#[tokio::test]
async fn bad_admin_input_is_a_400_naming_the_field() {
    let (gw, _mock) = gateway().await;
    for (body, param) in [
        (json!({"credits": "1"}), "name"),
        (json!({"name": "x", "credits": "lots"}), "credits"),
        (json!({"name": "x", "credits": "-1"}), "credits"),
        (
            json!({"name": "x", "budget_period": "week", "budget": "1"}),
            "budget_period",
        ),
        (json!({"name": "x", "expires_in": "soon"}), "expires_in"),
        (json!({"name": "x", "models": "m"}), "models"),
        (json!({"name": "x", "colour": "blue"}), "colour"),
        (json!({"name": "x", "rpm": -5}), "rpm"),
    ] {
        let (status, v) = json_of(
            admin(&gw, reqwest::Method::POST, "/admin/keys")
                .json(&body)
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(v["error"]["param"], param, "{body}: {v}");
    }
    let (status, _) = json_of(
        admin(&gw, reqwest::Method::POST, "/admin/keys")
            .body("{not json")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn admin_usage_groups_by_key_model_and_day_within_a_range() {
    let (gw, _mock) = gateway().await;
    for model in ["m", "deepseek-r", "m"] {
        let resp = gw
            .chat(json!({"model": model, "messages": user("hi")}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
    }
    let spent = gw.gw.ledger.key(&gw.key_id).await.unwrap().unwrap().spent;
    let (status, by_model) = json_of(
        admin(
            &gw,
            reqwest::Method::GET,
            "/admin/usage?group_by=model&since=1h",
        )
        .send()
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(status, 200);
    let groups: Vec<(&str, i64)> = by_model["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| {
            (
                g["group"].as_str().unwrap(),
                g["requests"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(groups, vec![("deepseek-r", 1), ("m", 2)]);
    assert_eq!(by_model["total_cost"], spent.to_string());
    let (_, by_key) = json_of(
        admin(
            &gw,
            reqwest::Method::GET,
            &format!("/admin/usage?group_by=key&key={}", gw.key_id),
        )
        .send()
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(by_key["data"][0]["group"], gw.key_id);
    assert_eq!(by_key["data"][0]["cost"], spent.to_string());
    let (_, by_day) = json_of(
        admin(
            &gw,
            reqwest::Method::GET,
            "/admin/usage?group_by=day&since=7d",
        )
        .send()
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(by_day["data"].as_array().unwrap().len(), 1);
    assert_eq!(by_day["data"][0]["requests"], 3);
    let (_, old) = json_of(
        admin(
            &gw,
            reqwest::Method::GET,
            "/admin/usage?group_by=key&since=2000-01-01&until=2000-02-01",
        )
        .send()
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(old["data"], json!([]));
    let (status, bad) = json_of(
        admin(&gw, reqwest::Method::GET, "/admin/usage?group_by=colour")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (status, bad["error"]["param"].as_str()),
        (400, Some("group_by"))
    );
}

#[tokio::test]
async fn the_request_log_lists_what_the_ledger_keeps_and_never_the_text() {
    let (gw, mock) = gateway().await;
    let secret_prompt = "my very private prompt about project nightingale";
    let ok = gw
        .chat(json!({"model": "m", "stream": true, "messages": user(secret_prompt)}))
        .send()
        .await
        .unwrap();
    let ok_id = ok.headers()["x-request-id"].to_str().unwrap().to_owned();
    let answer = ok.text().await.unwrap();
    assert!(answer.contains("[DONE]"));
    mock.set_options(json!({"status": 500})).unwrap();
    let failed = gw
        .chat(json!({"model": "m", "messages": user(secret_prompt)}))
        .send()
        .await
        .unwrap();
    assert_eq!(failed.status(), 502);
    let failed_id = failed.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();

    let (status, body) = json_of(
        admin(&gw, reqwest::Method::GET, "/admin/requests")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let ids: Vec<&str> = body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["request_id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        vec![failed_id.as_str(), ok_id.as_str()],
        "newest first"
    );
    let entry = &body["data"][1];
    assert_eq!(entry["requested_model"], "m");
    assert_eq!(entry["end_reason"], "stop");
    assert_eq!(entry["completion_tokens"], 12);
    assert!(entry["cost"]
        .as_str()
        .unwrap()
        .parse::<rust_decimal::Decimal>()
        .is_ok());
    let text = body.to_string();
    assert!(
        !text.contains("nightingale") && !text.contains(" quick brown"),
        "{text}"
    );
    assert!(!text.contains(&gw.key));

    let (_, errors) = json_of(
        admin(
            &gw,
            reqwest::Method::GET,
            "/admin/requests?end_reason=error&limit=10",
        )
        .send()
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(errors["data"].as_array().unwrap().len(), 1);
    assert_eq!(errors["data"][0]["request_id"], failed_id.as_str());
    assert_eq!(errors["data"][0]["cost"], "0");

    let (status, bad) = json_of(
        admin(&gw, reqwest::Method::GET, "/admin/requests?limit=0")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(bad["error"]["param"], "limit");
    let unauthorized = harness::client()
        .get(gw.url("/admin/requests"))
        .bearer_auth(&gw.key)
        .send()
        .await
        .unwrap();
    assert_eq!(unauthorized.status(), 401);
}

/// Money in admin bodies is exact and bounded: a JSON number is read by its own text (not an
/// f64), an amount too large for the ledger is a 400 naming the field (not a dropped connection),
/// a negative top-up is refused, and no top-up can push a balance past the ledger's range.
#[tokio::test]
async fn admin_amounts_are_exact_bounded_and_never_negative_top_ups() {
    let (gw, _mock) = gateway().await;
    let raw = |method: reqwest::Method, path: &str, body: &'static str| {
        admin(&gw, method, path)
            .header("content-type", "application/json")
            .body(body)
    };
    // 18 significant digits: an f64 cannot hold them (it reads 123456789.12345679).
    let (status, created) = json_of(
        raw(
            reqwest::Method::POST,
            "/admin/keys",
            r#"{"name": "exact", "credits": 123456789.123456789}"#,
        )
        .send()
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["balance"], "123456789.123456789", "{created}");
    let id = created["id"].as_str().unwrap().to_owned();
    for body in [
        r#"{"name": "huge", "credits": 1e25}"#,
        r#"{"name": "huge", "credits": "1e25"}"#,
        r#"{"name": "huge", "credits": "1000000000.000000001"}"#,
        r#"{"name": "finer than a nano-dollar", "credits": 12345678.1234567894}"#,
        r#"{"name": "negative", "credits": "-1"}"#,
        r#"{"name": "not a number", "credits": "12,50"}"#,
        r#"{"name": "not a number", "credits": true}"#,
    ] {
        let (status, v) = json_of(
            raw(reqwest::Method::POST, "/admin/keys", body)
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(status, 400, "{v}");
        assert_eq!(v["error"]["param"], "credits", "{v}");
    }
    let path = format!("/admin/keys/{id}");
    let (status, v) = json_of(
        raw(reqwest::Method::PATCH, &path, r#"{"top_up": -5}"#)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (status, v["error"]["param"].clone()),
        (400, json!("top_up")),
        "{v}"
    );
    let (status, v) = json_of(
        raw(reqwest::Method::PATCH, &path, r#"{"top_up": 999999999}"#)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 400, "the balance would pass USD 1e9: {v}");
    assert_eq!(v["error"]["param"], "top_up", "{v}");
    for (body, param) in [
        (r#"{"top_up": "0"}"#, "top_up"),
        (r#"{"add_credits": 0.000}"#, "add_credits"),
        (r#"{"budget": -1}"#, "budget"),
        (r#"{"budget": 0.1234567891}"#, "budget"),
        (r#"{"balance": "1e10"}"#, "balance"),
    ] {
        let (status, v) = json_of(
            raw(reqwest::Method::PATCH, &path, body)
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(
            (status, v["error"]["param"].clone()),
            (400, json!(param)),
            "{body}: {v}"
        );
    }
    // A budget given as a JSON number is exact too (an f64 would read 123456789.12345679).
    let (status, v) = json_of(
        raw(
            reqwest::Method::PATCH,
            &path,
            r#"{"budget": 123456789.123456789}"#,
        )
        .send()
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["limits"]["budget"]["limit"], "123456789.123456789", "{v}");
    let (status, v) = json_of(
        raw(reqwest::Method::PATCH, &path, r#"{"top_up": 0.5}"#)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["balance"], "123456789.623456789", "{v}");
    // Nothing above changed the balance: refused amounts change nothing.
    let (_, v) = json_of(
        admin(&gw, reqwest::Method::GET, &path)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(v["balance"], "123456789.623456789", "{v}");
}

/// The admin key cannot be guessed at speed: each failure from one address is answered later
/// than the last, and after ten that address gets 429 for a while, even with the right key; another
/// address is not affected; the failures are counted in `/metrics`.
#[tokio::test]
async fn failed_admin_keys_are_slowed_then_locked_out_per_address() {
    let (gw, _mock) = gateway().await;
    let from = |ip: [u8; 4]| {
        reqwest::Client::builder()
            .local_address(std::net::IpAddr::from(ip))
            .build()
            .unwrap()
    };
    let guesser = from([127, 0, 0, 1]);
    for n in 1..=10 {
        let resp = guesser
            .get(gw.url("/admin/keys"))
            .bearer_auth(format!("guess-{n}"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 401, "guess {n}");
    }
    let resp = guesser
        .get(gw.url("/admin/keys"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 429, "locked out, the right key included");
    assert!(resp.headers().contains_key("retry-after"));
    let (_, body) = json_of(resp).await;
    assert_eq!(body["error"]["code"], "admin_locked_out");
    // Another address still gets in.
    let resp = from([127, 0, 0, 2])
        .get(gw.url("/admin/keys"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let metrics = harness::get_text(gw.url("/metrics")).await;
    assert!(
        metrics.contains("switchyard_admin_auth_failures_total{outcome=\"failed\"} 10")
            && metrics.contains("switchyard_admin_auth_failures_total{outcome=\"locked_out\"} 1"),
        "{metrics}"
    );
}

/// Behind a trusted proxy the lockout counts the client the proxy names in `X-Forwarded-For`,
/// read from the right (a client cannot escape by sending a hop of its own), after the configured
/// number of failures; an untrusted peer's `X-Forwarded-For` is ignored.
#[tokio::test]
async fn behind_a_trusted_proxy_the_forwarded_client_is_locked_out() {
    let (gw, _mock) = start_with_mock_top(
        &format!("admin_key = \"{ADMIN}\""),
        "[server]\ntrusted_proxies = [\"127.0.0.1\"]\nadmin_lockout_after = 3\nadmin_lockout_ms = 600000\n",
    )
    .await;
    let from = |ip: [u8; 4]| {
        reqwest::Client::builder()
            .local_address(std::net::IpAddr::from(ip))
            .build()
            .unwrap()
    };
    let proxy = from([127, 0, 0, 1]);
    let send = |client: &reqwest::Client, forwarded: &str, key: &str| {
        client
            .get(gw.url("/admin/keys"))
            .header("x-forwarded-for", forwarded)
            .bearer_auth(key)
            .send()
    };
    for n in 1..=3 {
        let resp = send(&proxy, "203.0.113.9", &format!("guess-{n}"))
            .await
            .unwrap();
        assert_eq!(resp.status(), 401, "guess {n}");
    }
    // The guesser is locked out, also when it prepends a made-up hop of its own.
    let resp = send(&proxy, "198.51.100.1, 203.0.113.9", ADMIN)
        .await
        .unwrap();
    assert_eq!(resp.status(), 429, "the forwarded client is locked out");
    // Other clients behind the same proxy are not.
    let resp = send(&proxy, "203.0.113.10", ADMIN).await.unwrap();
    assert_eq!(resp.status(), 200);
    // An untrusted peer cannot name a client: its failures are its own.
    let stranger = from([127, 0, 0, 3]);
    for n in 1..=3 {
        let resp = send(&stranger, "203.0.113.77", &format!("guess-{n}"))
            .await
            .unwrap();
        assert_eq!(resp.status(), 401, "guess {n}");
    }
    let resp = send(&proxy, "203.0.113.77", ADMIN).await.unwrap();
    assert_eq!(
        resp.status(),
        200,
        "the name a stranger sent was not counted"
    );
    let resp = send(&stranger, "203.0.113.78", ADMIN).await.unwrap();
    assert_eq!(resp.status(), 429, "the stranger itself is locked out");
}

/// A key changed while its stream is open: the stream goes on to its end and is billed once
/// against the key as it is then (a top-up adds to the balance the stream is debited from; a
/// revocation does not cut a stream that was admitted), and the next request sees the change at
/// once (401 after the revocation).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_topped_up_or_revoked_mid_stream_finishes_the_stream_and_is_billed_once() {
    use futures_util::StreamExt;
    let (gw, mock) = gateway().await;
    mock.set_options(json!({"tokens": 6, "gap_ms": 150}))
        .unwrap();
    let (_, created) = json_of(
        admin(&gw, reqwest::Method::POST, "/admin/keys")
            .json(&json!({"name": "mid-stream", "credits": "5"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    let (id, key) = (
        created["id"].as_str().unwrap().to_owned(),
        created["key"].as_str().unwrap().to_owned(),
    );
    let path = format!("/admin/keys/{id}");
    for change in ["top_up", "revoke"] {
        let resp = harness::client()
            .post(gw.url("/v1/chat/completions"))
            .bearer_auth(&key)
            .json(&json!({"model": "m", "stream": true, "messages": user("hi")}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{change}");
        let request_id = harness::request_id(&resp);
        let mut frames = resp.bytes_stream();
        let mut text = String::new();
        // The first token is out: the stream is open when the key changes.
        while !text.contains("\"content\"") {
            text.push_str(std::str::from_utf8(&frames.next().await.unwrap().unwrap()).unwrap());
        }
        let status = match change {
            "top_up" => admin(&gw, reqwest::Method::PATCH, &path)
                .json(&json!({"top_up": "10"}))
                .send(),
            _ => admin(&gw, reqwest::Method::DELETE, &path).send(),
        }
        .await
        .unwrap()
        .status();
        assert_eq!(status, 200, "{change}");
        while let Some(frame) = frames.next().await {
            text.push_str(std::str::from_utf8(&frame.unwrap()).unwrap());
        }
        let items = harness::parse_sse(&text);
        assert_eq!(
            harness::joined(&items, "content")
                .split_whitespace()
                .count(),
            6,
            "{change}: the stream ran to its end: {text}"
        );
        assert!(text.contains("data: [DONE]"), "{change}: {text}");
        let entry = gw
            .gw
            .ledger
            .wait_for_entry(&request_id, std::time::Duration::from_secs(10))
            .await
            .unwrap()
            .expect("billed");
        assert_eq!(entry.end_reason, "stop", "{change}");
    }
    assert_eq!(
        chat_status(&gw, &key, "m").await,
        401,
        "revoked for the next request"
    );
    let (entries, balance) = harness::books(&gw.gw.ledger, &id).await;
    assert_eq!(entries.len(), 2, "each stream billed once");
    let spent: i64 = entries.values().map(|e| e.cost.0).sum();
    assert_eq!(
        balance.0,
        15_000_000_000 - spent,
        "5 + 10 top-up - what both streams cost"
    );
}
