//! Secrets stay secret: the real binary runs traffic with realistic upstream keys (OpenAI, Anthropic,
//! DeepSeek, a Groq-style key that does not start with `sk-`, one read from a file, one from a
//! command) and realistic caller and admin keys, against an upstream that echoes the credential it
//! received in every error body, error event and response header, as some providers do. Every log
//! line the binary writes (at debug level), every response body and every response header is then
//! scanned for each secret, whole or in part.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Mutex;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use rand::distributions::{Alphanumeric, DistString};
use serde_json::{json, Value};

use crate::harness::{self, client, user};

fn random(n: usize) -> String {
    Alphanumeric.sample_string(&mut rand::thread_rng(), n)
}

/// The credential an upstream request carried.
fn credential(headers: &HeaderMap) -> String {
    let value = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    value("authorization")
        .map(|v| v.trim_start_matches("Bearer ").to_owned())
        .or_else(|| value("x-api-key").map(str::to_owned))
        .unwrap_or_default()
}

/// An upstream that answers by the model it is asked for, and echoes the credential it got in
/// every error and in an `x-echo-key` header.
async fn echoing_upstream(req: Request) -> Response {
    let key = credential(req.headers());
    let anthropic = req.uri().path().ends_with("/messages");
    let body = axum::body::to_bytes(req.into_body(), 1 << 20)
        .await
        .unwrap_or_default();
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let model = body["model"].as_str().unwrap_or("").to_owned();
    let stream = body["stream"] == true;
    let (status, text) = match model.as_str() {
        "ok" | "emid" => (200, String::new()),
        "e400" => (
            400,
            format!(
                "This model's maximum context length is 8192 tokens (request made with key {key})"
            ),
        ),
        "e401" => (
            401,
            format!(
                "Incorrect API key provided: {key}. You can find your API key in your account."
            ),
        ),
        "e403" => (403, format!("Key {key} is not allowed to use this model")),
        "e429" => (
            429,
            format!("Rate limit reached for {key} in organization org-123"),
        ),
        _ => (500, format!("internal error while serving {key}")),
    };
    let reply = Response::builder().header("x-echo-key", key.clone());
    if status != 200 {
        let body = if anthropic {
            json!({"type": "error", "error": {"type": "invalid_request_error", "message": text}})
        } else {
            json!({"error": {"message": text, "type": "invalid_request_error", "param": null, "code": key}})
        };
        return reply
            .status(StatusCode::from_u16(status).unwrap())
            .header("content-type", "application/json")
            .body(Body::from(body.to_string()))
            .unwrap();
    }
    let chunk = |content: &str| {
        json!({"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": model,
               "choices": [{"index": 0, "delta": {"role": "assistant", "content": content}, "finish_reason": null}]})
    };
    if !stream {
        let whole = json!({"id": "c1", "object": "chat.completion", "created": 1, "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "hello there"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}});
        return reply
            .header("content-type", "application/json")
            .body(Body::from(whole.to_string()))
            .unwrap();
    }
    let mut sse = format!("data: {}\n\n", chunk("hello"));
    if model == "emid" {
        let error = json!({"error": {"message": format!("upstream broke while serving {key}"), "type": "server_error", "code": key}});
        sse.push_str(&format!("data: {error}\n\n"));
    } else {
        let end = json!({"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": model,
            "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}});
        sse.push_str(&format!("data: {end}\n\ndata: [DONE]\n\n"));
    }
    reply
        .header("content-type", "text/event-stream")
        .body(Body::from(sse))
        .unwrap()
}

async fn start_echoing_upstream() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new().fallback(echoing_upstream);
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

/// What the clients saw: every status line, header and body, as text.
#[derive(Default)]
struct Seen(Mutex<Vec<String>>);

impl Seen {
    async fn send(&self, what: &str, req: reqwest::RequestBuilder) -> (u16, String) {
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let mut text = format!("{what} -> {status}\n");
        for (name, value) in resp.headers() {
            text.push_str(&format!(
                "{name}: {}\n",
                String::from_utf8_lossy(value.as_bytes())
            ));
        }
        let body = resp.text().await.unwrap_or_default();
        text.push_str(&body);
        self.0.lock().unwrap().push(text);
        (status, body)
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn no_secret_reaches_a_log_line_an_error_body_or_a_response_header() {
    let upstream = start_echoing_upstream().await;
    let dir = harness::temp_db().with_extension("secrets");
    std::fs::create_dir_all(&dir).unwrap();
    let secrets: BTreeMap<&str, String> = [
        ("openai", format!("sk-proj-{}", random(156))),
        ("anthropic", format!("sk-ant-api03-{}AA", random(93))),
        ("deepseek", format!("sk-{}", random(32).to_lowercase())),
        ("groq", format!("gsk_{}", random(52))),
        ("vault", format!("vault-token-{}", random(40))),
        ("admin", format!("sy-admin-{}", random(40))),
        ("wrong caller key", format!("sk-sy-{}", random(43))),
        ("wrong admin key", format!("sy-admin-{}", random(40))),
    ]
    .into_iter()
    .collect();
    std::fs::write(dir.join("groq.key"), &secrets["groq"]).unwrap();
    std::fs::write(dir.join("vault.key"), format!("{}\n", secrets["vault"])).unwrap();
    let base = format!("http://{upstream}/v1");
    let config = format!(
        r#"
database = "sqlite://{db}"
admin_key = "env:SY_TEST_ADMIN"
demo_credits = "100"
[providers.openai]
kind = "openai"
base_url = "{base}"
api_key = "env:SY_TEST_OPENAI"
[providers.anthropic]
kind = "anthropic"
base_url = "{base}"
api_key = "env:SY_TEST_ANTHROPIC"
[providers.deepseek]
kind = "deepseek"
base_url = "{base}"
api_key = "env:SY_TEST_DEEPSEEK"
[providers.groq]
kind = "openai"
base_url = "{base}"
api_key = "file:{groq}"
[providers.vault]
kind = "openai"
base_url = "{base}"
api_key = "cmd:cat {vault}"
[models.fails-over]
routes = ["openai/e401", "anthropic/e403", "deepseek/e429", "vault/e500", "groq/ok"]
free = true
[models.all-fail]
routes = ["openai/e401", "anthropic/e401", "deepseek/e500", "groq/e403", "vault/e429"]
free = true
[models.refused-openai]
routes = ["openai/e400"]
free = true
[models.refused-anthropic]
routes = ["anthropic/e400"]
free = true
[models.refused-groq]
routes = ["groq/e400"]
free = true
[models.refused-vault]
routes = ["vault/e400"]
free = true
[models.breaks-mid-stream]
routes = ["groq/emid"]
free = true
[models.breaks-mid-stream-vault]
routes = ["vault/emid"]
free = true
[models.fine]
routes = ["openai/ok"]
free = true
"#,
        db = dir.join("switchyard.db").display(),
        groq = dir.join("groq.key").display(),
        vault = dir.join("vault.key").display(),
    );
    std::fs::write(dir.join("switchyard.toml"), config).unwrap();
    let (mut child, key, base_url, logs) = harness::serve_binary_with(
        &dir,
        &[
            "serve",
            "--config",
            "switchyard.toml",
            "--listen",
            "127.0.0.1:0",
        ],
        &[
            ("RUST_LOG", "debug"),
            ("SY_TEST_ADMIN", &secrets["admin"]),
            ("SY_TEST_OPENAI", &secrets["openai"]),
            ("SY_TEST_ANTHROPIC", &secrets["anthropic"]),
            ("SY_TEST_DEEPSEEK", &secrets["deepseek"]),
        ],
    )
    .await;
    let caller = key.expect("a fresh database prints its first key");
    let root = base_url.trim_end_matches("/v1").to_owned();
    let seen = Seen::default();
    let c = client();

    // Traffic: every model, streamed and not, through chat and Responses.
    let models = [
        "fails-over",
        "all-fail",
        "refused-openai",
        "refused-anthropic",
        "refused-groq",
        "refused-vault",
        "breaks-mid-stream",
        "breaks-mid-stream-vault",
        "fine",
    ];
    for model in models {
        for stream in [false, true] {
            let chat = json!({"model": model, "stream": stream, "messages": user("hi")});
            seen.send(
                &format!("chat {model} stream={stream}"),
                c.post(format!("{base_url}/chat/completions"))
                    .bearer_auth(&caller)
                    .json(&chat),
            )
            .await;
            let responses = json!({"model": model, "stream": stream, "input": "hi"});
            seen.send(
                &format!("responses {model} stream={stream}"),
                c.post(format!("{base_url}/responses"))
                    .bearer_auth(&caller)
                    .json(&responses),
            )
            .await;
        }
    }
    let (status, _) = seen
        .send(
            "fails over",
            c.post(format!("{base_url}/chat/completions"))
                .bearer_auth(&caller)
                .json(&json!({"model": "fails-over", "messages": user("hi")})),
        )
        .await;
    assert_eq!(status, 200, "a healthy route was left");
    // Wrong keys, in both places a key can be.
    let wrong = &secrets["wrong caller key"];
    seen.send(
        "wrong bearer",
        c.post(format!("{base_url}/chat/completions"))
            .bearer_auth(wrong)
            .json(&json!({"model": "fine", "messages": user("hi")})),
    )
    .await;
    seen.send(
        "wrong x-api-key",
        c.post(format!("{base_url}/chat/completions"))
            .header("x-api-key", wrong)
            .json(&json!({"model": "fine", "messages": user("hi")})),
    )
    .await;
    seen.send(
        "caller key as admin",
        c.get(format!("{root}/admin/keys")).bearer_auth(&caller),
    )
    .await;
    seen.send(
        "wrong admin key",
        c.get(format!("{root}/admin/keys"))
            .bearer_auth(&secrets["wrong admin key"]),
    )
    .await;
    // What an operator reads.
    for path in [
        "/admin/keys",
        "/admin/requests",
        "/admin/providers",
        "/admin/usage?group_by=model",
    ] {
        let (status, _) = seen
            .send(
                path,
                c.get(format!("{root}{path}"))
                    .bearer_auth(&secrets["admin"]),
            )
            .await;
        assert_eq!(status, 200, "{path}");
    }
    for path in ["/metrics", "/readyz", "/healthz", "/v1/models"] {
        seen.send(path, c.get(format!("{root}{path}")).bearer_auth(&caller))
            .await;
    }
    // A graceful stop (SIGTERM) flushes the log writer; then every line it wrote is read.
    let pid = child.id().unwrap().to_string();
    let termed = tokio::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .await
        .unwrap();
    assert!(termed.success());
    child.wait().await.unwrap();
    harness::all_output(&logs).await;

    let seen = seen.0.into_inner().unwrap();
    let logs = logs.lock().unwrap().clone();
    assert!(
        logs.iter().any(|l| l.contains("request")),
        "the debug log was captured: {logs:?}"
    );
    let mut leaks = Vec::new();
    let mut secrets: Vec<(&str, &String)> = secrets.iter().map(|(k, v)| (*k, v)).collect();
    secrets.push(("caller key", &caller));
    for (name, secret) in &secrets {
        // The whole secret, and a 16-character piece of its middle (a partial mask is a leak too).
        let piece = &secret[secret.len() / 2 - 8..secret.len() / 2 + 8];
        for (place, texts) in [("log", &logs), ("response", &seen)] {
            for text in texts.iter() {
                // The one place a key is meant to be printed: the first key, once, on its own line.
                if *name == "caller key" && place == "log" && text == *secret {
                    continue;
                }
                if text.contains(secret.as_str()) || text.contains(piece) {
                    leaks.push(format!("{name} in a {place}: {text}"));
                }
            }
        }
    }
    assert!(
        leaks.is_empty(),
        "{} leaks:\n{}",
        leaks.len(),
        leaks.join("\n---\n")
    );
    let _ = std::fs::remove_dir_all(&dir);
}
