//! Browser clients on other origins (CORS preflights and exposed headers), `/readyz` naming the
//! dependency that fails, and `x-request-id` on every kind of response.

use serde_json::json;

use crate::harness::{client, start, start_with_mock, start_with_mock_top, user};

const ORIGIN: &str = "https://app.example.com";
const ADMIN: &str = "sk-admin-cors-test-key-0123456";

fn header<'a>(resp: &'a reqwest::Response, name: &str) -> &'a str {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

#[tokio::test]
async fn a_preflight_from_another_origin_with_the_sdks_headers_is_allowed_without_a_key() {
    let (gw, _mock) = start_with_mock("").await;
    let asked = "authorization, content-type, x-stainless-lang, x-stainless-retry-count, \
                 x-stainless-timeout, openai-organization, x-request-id";
    for path in [
        "/v1/chat/completions",
        "/api/v1/chat/completions",
        "/v1/llm/responses",
        "/v1/models",
    ] {
        let resp = client()
            .request(reqwest::Method::OPTIONS, gw.url(path))
            .header("origin", ORIGIN)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", asked)
            .send()
            .await
            .unwrap();
        assert!(resp.status().is_success(), "{path}: {}", resp.status());
        assert_eq!(
            header(&resp, "access-control-allow-origin"),
            ORIGIN,
            "{path}"
        );
        let allowed = header(&resp, "access-control-allow-headers").to_ascii_lowercase();
        for h in asked.split(", ") {
            assert!(allowed.contains(h), "{path}: {h} not in {allowed}");
        }
        let methods = header(&resp, "access-control-allow-methods");
        assert!(methods.contains("POST"), "{path}: {methods}");
        assert!(header(&resp, "access-control-allow-credentials").is_empty());
        assert!(!header(&resp, "x-request-id").is_empty(), "{path}");
    }
    // Preflights are not API requests: the request counters do not move.
    let metrics = crate::harness::get_text(gw.url("/metrics")).await;
    assert!(
        !metrics.contains("switchyard_requests_total{"),
        "a preflight was counted as a request:\n{metrics}"
    );
}

#[tokio::test]
async fn a_streamed_answer_to_another_origin_exposes_its_request_id() {
    let (gw, _mock) = start_with_mock("").await;
    let resp = gw
        .chat(json!({"model": "m", "stream": true, "messages": user("hi")}))
        .header("origin", ORIGIN)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "access-control-allow-origin"), ORIGIN);
    let exposed = header(&resp, "access-control-expose-headers").to_ascii_lowercase();
    for h in [
        "x-request-id",
        "retry-after",
        "x-ratelimit-remaining-requests",
        "x-switchyard-provider",
    ] {
        assert!(exposed.contains(h), "{h} not in {exposed}");
    }
    assert!(header(&resp, "x-request-id").starts_with("req_"));
    let body = resp.text().await.unwrap();
    assert!(body.contains("[DONE]"), "{body}");
    // An error to a browser is readable too.
    let resp = client()
        .post(gw.url("/v1/chat/completions"))
        .header("origin", ORIGIN)
        .json(&json!({"model": "m", "messages": user("hi")}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    assert_eq!(header(&resp, "access-control-allow-origin"), ORIGIN);
}

#[tokio::test]
async fn admin_routes_refuse_other_origins_unless_configured() {
    let preflight = |url: String| async move {
        client()
            .request(reqwest::Method::OPTIONS, url)
            .header("origin", ORIGIN)
            .header("access-control-request-method", "GET")
            .header("access-control-request-headers", "authorization")
            .send()
            .await
            .unwrap()
    };
    let (gw, _mock) = start_with_mock_top(&format!("admin_key = \"{ADMIN}\""), "").await;
    let resp = preflight(gw.url("/admin/keys")).await;
    assert!(header(&resp, "access-control-allow-origin").is_empty());
    let resp = client()
        .get(gw.url("/admin/keys"))
        .header("origin", ORIGIN)
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(header(&resp, "access-control-allow-origin").is_empty());
    assert!(!header(&resp, "x-request-id").is_empty());

    let (gw, _mock) = start_with_mock(&format!(
        "[cors]\nallowed_origins = [\"https://other.example.com\"]\nadmin_origins = [\"{ORIGIN}\"]\n"
    ))
    .await;
    let resp = preflight(gw.url("/admin/keys")).await;
    assert_eq!(header(&resp, "access-control-allow-origin"), ORIGIN);
    // The public API now allows only its own list.
    let resp = preflight(gw.url("/v1/models")).await;
    assert!(header(&resp, "access-control-allow-origin").is_empty());
}

/// A web page on another origin cannot read the operator's figures (`/metrics`, `/readyz`,
/// `/openapi.json`) unless `[cors] ops_origins` names it; every response says `nosniff`.
#[tokio::test]
async fn operator_endpoints_allow_no_other_origin_by_default_and_nothing_is_sniffed() {
    let (gw, _mock) = start_with_mock("").await;
    let base = gw.url("");
    for path in ["/metrics", "/readyz", "/openapi.json"] {
        let resp = client()
            .get(format!("{base}{path}"))
            .header("origin", ORIGIN)
            .send()
            .await
            .unwrap();
        assert!(resp.status().is_success(), "{path}");
        assert!(
            header(&resp, "access-control-allow-origin").is_empty(),
            "{path}"
        );
        assert_eq!(header(&resp, "x-content-type-options"), "nosniff", "{path}");
    }
    // The public API still answers any origin, and says nosniff too (an error included).
    let resp = client()
        .get(gw.url("/v1/models"))
        .header("origin", ORIGIN)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    assert_eq!(header(&resp, "access-control-allow-origin"), ORIGIN);
    assert_eq!(header(&resp, "x-content-type-options"), "nosniff");
    let (gw, _mock) = start_with_mock(&format!("[cors]\nops_origins = [\"{ORIGIN}\"]\n")).await;
    let base = gw.url("");
    let resp = client()
        .get(format!("{base}/metrics"))
        .header("origin", ORIGIN)
        .send()
        .await
        .unwrap();
    assert_eq!(header(&resp, "access-control-allow-origin"), ORIGIN);
}

#[test]
fn a_cors_origin_that_is_not_an_origin_is_refused_with_its_reason() {
    let bad = "[cors]\nallowed_origins = [\"https://app.example.com/path/\"]\n";
    let e = switchyard::config::Config::parse(bad, "t.toml")
        .unwrap_err()
        .to_string();
    assert!(e.contains("cors.allowed_origins"), "{e}");
}

#[tokio::test]
async fn readyz_names_redis_when_it_does_not_answer() {
    let mock = mock_upstream::MockUpstream::start().await.unwrap();
    // A port nothing listens on: bind one, note it, close it.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let gw = start(&format!(
        "redis = \"redis://127.0.0.1:{port}\"\n{}",
        crate::harness::mock_config(&mock, "")
    ))
    .await;
    let resp = client().get(gw.url("/readyz")).send().await.unwrap();
    assert_eq!(resp.status(), 503);
    assert!(!header(&resp, "x-request-id").is_empty());
    let body: serde_json::Value = resp.json().await.unwrap();
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("Redis"), "{message}");
    assert!(!message.contains("database"), "{message}");
    // /healthz stays trivial.
    let resp = client().get(gw.url("/healthz")).send().await.unwrap();
    assert_eq!(resp.status(), 200);

    let Ok(url) = std::env::var("SWITCHYARD_TEST_REDIS") else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI is set but SWITCHYARD_TEST_REDIS is not"
        );
        crate::harness::skipped("SKIPPED (Redis half): set SWITCHYARD_TEST_REDIS");
        return;
    };
    let gw = start(&format!(
        "redis = \"{url}\"\n{}",
        crate::harness::mock_config(&mock, "")
    ))
    .await;
    let resp = client().get(gw.url("/readyz")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(!header(&resp, "x-request-id").is_empty());
}

#[tokio::test]
async fn every_kind_of_response_carries_a_request_id_and_a_valid_client_one_is_kept() {
    let (gw, _mock) = start_with_mock_top(&format!("admin_key = \"{ADMIN}\""), "").await;
    let c = client();
    let requests = [
        c.get(gw.url("/v1/models")).bearer_auth(&gw.key),
        c.get(gw.url("/v1/models")),
        c.get(gw.url("/v1/no-such-route")),
        c.delete(gw.url("/v1/chat/completions")),
        c.get(gw.url("/admin/keys")).bearer_auth(ADMIN),
        c.get(gw.url("/admin/keys")),
        c.get(gw.url("/readyz")),
        c.get(gw.url("/healthz")),
        c.post(gw.url("/v1/chat/completions"))
            .bearer_auth(&gw.key)
            .header("content-length", "999999999999")
            .body(""),
        gw.chat(json!({"model": "m", "messages": user("hi")})),
        gw.chat(json!({"model": "nope", "messages": user("hi")})),
    ];
    for (i, r) in requests.into_iter().enumerate() {
        let (_, probe) = r.try_clone().unwrap().build_split();
        let probe = probe.unwrap();
        let what = format!("{} {}", probe.method(), probe.url().path());
        let resp = r.try_clone().unwrap().send().await.unwrap();
        let status = resp.status();
        let id = header(&resp, "x-request-id").to_owned();
        assert!(!id.is_empty(), "{what} ({status}) has no x-request-id");

        let mine = format!("client-trace-{i}:abc/DEF");
        let resp = r
            .try_clone()
            .unwrap()
            .header("x-request-id", &mine)
            .send()
            .await
            .unwrap();
        assert_eq!(header(&resp, "x-request-id"), mine, "{what} ({status})");

        for bad in ["x".repeat(129), "caf\u{e9}".to_owned(), String::new()] {
            let resp = r
                .try_clone()
                .unwrap()
                .header("x-request-id", bad.as_bytes())
                .send()
                .await
                .unwrap();
            let got = header(&resp, "x-request-id");
            assert!(!got.is_empty() && got != bad, "{what}: {got:?}");
            assert!(got.len() <= 128 && got.bytes().all(|b| b.is_ascii_graphic()));
        }
    }
    // A chat answered under a client's id still names its own ledger id.
    let resp = gw
        .chat(json!({"model": "m", "messages": user("hi")}))
        .header("x-request-id", "mine-1")
        .send()
        .await
        .unwrap();
    assert_eq!(header(&resp, "x-request-id"), "mine-1");
    let own = header(&resp, "x-switchyard-request-id").to_owned();
    assert!(own.starts_with("req_"), "{own:?}");
}
