//! The coding agents complete a tool loop through the gateway (issue 20): Claude Code, Codex CLI
//! and Gemini CLI (pinned in `tests/agents/package.json`, installed by `./scripts/test`), each run
//! as a child process with its own HOME and a working directory holding `notes.txt` with a unique
//! sentence, against a gateway whose model routes to the mock upstream in one dialect: OpenAI chat,
//! OpenAI Responses (`native_responses = true`), Anthropic Messages or Gemini. The mock answers
//! the prompt with one tool call reading the file and the tool's result with `The file says: …`,
//! and demands the reasoning signatures it issued (`signatures`), as the real APIs do. The agent
//! must exit 0 and print the sentence (the tool ran, its text came back); every request of the
//! loop is in the ledger once, settled, with a cost, and the cost the gateway reported to the agent
//! (seen by a recording proxy between the two) equals the ledger's. Without the agents installed
//! the tests skip loudly, or fail under `SWITCHYARD_REQUIRE_SDKS=1` / `CI=true`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use mock_upstream::MockUpstream;
use rust_decimal::Decimal;
use serde_json::{json, Value};
use switchyard::store::ledger::Nanos;

use crate::harness::{self, TestGateway};

/// How long one agent run may take before it is killed and the test fails (a loop takes seconds).
const AGENT_TIMEOUT: Duration = Duration::from_secs(120);
/// How long a settled entry may take to be readable.
const WAIT: Duration = Duration::from_secs(20);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Agent {
    ClaudeCode,
    Codex,
    GeminiCli,
}

impl Agent {
    /// The executable in `tests/agents/node_modules/.bin`.
    fn bin(self) -> &'static str {
        match self {
            Agent::ClaudeCode => "claude",
            Agent::Codex => "codex",
            Agent::GeminiCli => "gemini",
        }
    }

    /// The model name the agent asks for (the gateway's model, routed to the mock).
    fn model(self) -> &'static str {
        match self {
            Agent::ClaudeCode => "claude-sonnet-4-5",
            Agent::Codex => "gpt-5-codex",
            Agent::GeminiCli => "gemini-2.5-flash",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Upstream {
    Chat,
    Responses,
    Anthropic,
    Gemini,
}

/// Where the agents are installed.
fn agents_dir() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    std::fs::canonicalize(&root)
        .unwrap_or(root)
        .join("tests/agents/node_modules/.bin")
}

/// The agent's executable, or `None` after a loud skip (a failure under CI).
fn agent_bin(agent: Agent) -> Option<PathBuf> {
    let bin = agents_dir().join(agent.bin());
    if bin.exists() {
        return Some(bin);
    }
    let what = format!("the {agent:?} agent ({})", bin.display());
    if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") {
        panic!("{what} is missing although CI is set: run ./scripts/test");
    }
    crate::sdk_runner::missing(&what);
    None
}

/// The gateway's config: the agent's model routed to the mock in `upstream`'s dialect.
fn config(mock: &MockUpstream, agent: Agent, upstream: Upstream) -> String {
    let (kind, extra, upstream_model) = match upstream {
        Upstream::Chat => ("openai", "", "gpt-4.1-mini"),
        Upstream::Responses => ("openai", "native_responses = true\n", "gpt-5.1-codex"),
        Upstream::Anthropic => ("anthropic", "", "claude-sonnet-4-5"),
        Upstream::Gemini => ("gemini", "", "gemini-2.5-flash"),
    };
    format!(
        r#"
demo_credits = "100"
[providers.up]
kind = "{kind}"
base_url = "{base}"
api_key = "upstream-secret-key"
{extra}
[models."{model}"]
routes = ["up/{upstream_model}"]
input_price = "3.00"
output_price = "15.00"
"#,
        base = mock.base_url(),
        model = agent.model(),
    )
}

/// One exchange the recording proxy forwarded.
#[derive(Clone, Debug)]
struct Exchange {
    method: String,
    path: String,
    request: Value,
    status: u16,
    /// The gateway's own id of the request (the ledger's).
    request_id: Option<String>,
    response: String,
}

/// A recording reverse proxy in front of the gateway: what each agent sent and was told.
struct Proxy {
    target: String,
    client: reqwest::Client,
    exchanges: Mutex<Vec<Exchange>>,
}

async fn forward(
    State(proxy): State<Arc<Proxy>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri
        .path_and_query()
        .map_or(uri.path().to_owned(), |p| p.as_str().to_owned());
    let mut req = proxy
        .client
        .request(method.clone(), format!("{}{path}", proxy.target))
        .body(body.clone());
    for (name, value) in &headers {
        // The body is read here, so no compression; reqwest sets host and length itself.
        if !matches!(
            name.as_str(),
            "host" | "content-length" | "accept-encoding" | "connection" | "transfer-encoding"
        ) {
            req = req.header(name, value);
        }
    }
    let resp = match req.send().await {
        Ok(r) => r,
        Err(e) => return (StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
    };
    let status = resp.status();
    let resp_headers = resp.headers().clone();
    let text = resp.text().await.unwrap_or_default();
    let request_id = resp_headers
        .get("x-switchyard-request-id")
        .or_else(|| resp_headers.get("x-request-id"))
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    proxy.exchanges.lock().unwrap().push(Exchange {
        method: method.to_string(),
        path,
        request: serde_json::from_slice(&body).unwrap_or(Value::Null),
        status: status.as_u16(),
        request_id,
        response: text.clone(),
    });
    let mut out = (status, text).into_response();
    for (name, value) in &resp_headers {
        if !matches!(
            name.as_str(),
            "content-length" | "transfer-encoding" | "connection"
        ) {
            out.headers_mut().insert(name, value.clone());
        }
    }
    out
}

/// Starts the proxy on a free port; returns its root URL and the shared records.
async fn start_proxy(gw: &TestGateway) -> (String, Arc<Proxy>) {
    let proxy = Arc::new(Proxy {
        target: format!("http://{}", gw.addr),
        client: reqwest::Client::builder().no_gzip().build().unwrap(),
        exchanges: Mutex::default(),
    });
    let app = axum::Router::new()
        .fallback(forward)
        .with_state(proxy.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}"), proxy)
}

/// A request that asks a model for an answer (not a model list or a token count).
fn is_generation(e: &Exchange) -> bool {
    e.method == "POST"
        && (e.path.contains("/messages") && !e.path.contains("count_tokens")
            || e.path.contains("/responses")
            || e.path.contains("/chat/completions")
            || e.path.contains("generateContent")
            || e.path.contains("streamGenerateContent"))
}

/// The cost the gateway told the client: the cost comment after a stream (`: {"cost": …}`), else
/// the last `cost` of its events (`usage.cost` of a chunk, a `message_delta`, a Response) or of a
/// whole body.
fn reported_cost(response: &str) -> Option<Decimal> {
    let from_comment = response.lines().rev().find_map(|line| {
        let v: Value = serde_json::from_str(line.strip_prefix(':')?.trim()).ok()?;
        v.get("cost")?.as_str()?.parse().ok()
    });
    if from_comment.is_some() {
        return from_comment;
    }
    fn last_cost(v: &Value) -> Option<Decimal> {
        match v {
            Value::Object(m) => m
                .iter()
                .filter_map(|(k, v)| match (k.as_str(), v) {
                    ("cost", Value::String(s)) => s.parse().ok(),
                    _ => last_cost(v),
                })
                .next_back(),
            Value::Array(a) => a.iter().filter_map(last_cost).next_back(),
            _ => None,
        }
    }
    let whole = serde_json::from_str::<Value>(response).ok();
    let events = response
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l.strip_prefix("data:")?.trim()).ok());
    whole
        .into_iter()
        .chain(events)
        .filter_map(|v| last_cost(&v))
        .next_back()
}

/// What one agent run produced.
struct Run {
    success: bool,
    stdout: String,
    stderr: String,
}

/// A unique scratch directory with `home/`, `tmp/` and `work/notes.txt`.
fn scratch(agent: Agent, upstream: Upstream) -> (PathBuf, String) {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!(
        "sy-agent-{}-{agent:?}-{upstream:?}-{n}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("home")).unwrap();
    std::fs::create_dir_all(dir.join("work")).unwrap();
    std::fs::create_dir_all(dir.join("tmp")).unwrap();
    let sentence = format!(
        "The lighthouse keeper {} counts {} gulls at dawn.",
        std::process::id(),
        n * 7 + 3
    );
    std::fs::write(dir.join("work/notes.txt"), format!("{sentence}\n")).unwrap();
    (dir, sentence)
}

/// Runs `agent` against the gateway root `base` with `key`, in `dir` (home/, work/, tmp/), killed
/// (with everything it started) after `AGENT_TIMEOUT`.
async fn run_agent(bin: &Path, agent: Agent, dir: &Path, base: &str, key: &str) -> Run {
    let home = dir.join("home");
    let work = dir.join("work");
    let notes = work.join("notes.txt");
    let mut cmd = tokio::process::Command::new(bin);
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", &home)
        // Its error reports and scratch files stay in the test's own directory.
        .env("TMPDIR", dir.join("tmp"))
        .env("LANG", "C.UTF-8")
        .env("NO_COLOR", "1")
        .current_dir(&work)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .process_group(0);
    match agent {
        Agent::ClaudeCode => {
            cmd.env("ANTHROPIC_BASE_URL", base)
                .env("ANTHROPIC_API_KEY", key)
                .env("ANTHROPIC_SMALL_FAST_MODEL", agent.model())
                .env("ANTHROPIC_DEFAULT_HAIKU_MODEL", agent.model())
                .env("DISABLE_TELEMETRY", "1")
                .env("DISABLE_AUTOUPDATER", "1")
                .env("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1")
                .arg("-p")
                .arg(format!("Read {} and quote it", notes.display()))
                .args(["--model", agent.model(), "--allowedTools", "Read"]);
        }
        Agent::Codex => {
            std::fs::create_dir_all(home.join(".codex")).unwrap();
            std::fs::write(
                home.join(".codex/config.toml"),
                format!(
                    "model = \"{}\"\nmodel_provider = \"sy\"\n\n[model_providers.sy]\nname = \"Switchyard\"\nbase_url = \"{base}/v1\"\nenv_key = \"SWITCHYARD_API_KEY\"\nwire_api = \"responses\"\n",
                    agent.model()
                ),
            )
            .unwrap();
            cmd.env("SWITCHYARD_API_KEY", key).args([
                "exec",
                "--skip-git-repo-check",
                "--dangerously-bypass-approvals-and-sandbox",
                "Read notes.txt and quote it",
            ]);
        }
        Agent::GeminiCli => {
            std::fs::create_dir_all(home.join(".gemini")).unwrap();
            std::fs::write(
                home.join(".gemini/settings.json"),
                r#"{"security":{"auth":{"selectedType":"gemini-api-key"}}}"#,
            )
            .unwrap();
            cmd.env("GOOGLE_GEMINI_BASE_URL", base)
                .env("GEMINI_API_KEY", key)
                .env("GEMINI_CLI_TRUST_WORKSPACE", "true")
                .args([
                    "-p",
                    "Read notes.txt and quote it",
                    "-m",
                    agent.model(),
                    "--yolo",
                ]);
        }
    }
    let child = cmd.spawn().expect("the agent starts");
    let pid = child.id().expect("a running child") as i32;
    match tokio::time::timeout(AGENT_TIMEOUT, child.wait_with_output()).await {
        Ok(out) => {
            let out = out.expect("the agent's output");
            // Whatever it left running (a shell, a relaunched node) goes with it.
            unsafe { libc::kill(-pid, libc::SIGKILL) };
            Run {
                success: out.status.success(),
                stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
                stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            }
        }
        Err(_) => {
            unsafe { libc::kill(-pid, libc::SIGKILL) };
            panic!("{agent:?} did not finish within {AGENT_TIMEOUT:?}");
        }
    }
}

/// One agent × upstream dialect: the whole loop through the gateway, checked end to end.
async fn tool_loop(agent: Agent, upstream: Upstream) {
    let Some(bin) = agent_bin(agent) else {
        return;
    };
    let mock = MockUpstream::start().await.unwrap();
    mock.set_options(json!({"signatures": true})).unwrap();
    let gw = harness::start(&config(&mock, agent, upstream)).await;
    let (base, proxy) = start_proxy(&gw).await;
    let (dir, sentence) = scratch(agent, upstream);
    let run = run_agent(&bin, agent, &dir, &base, &gw.key).await;
    let exchanges = proxy.exchanges.lock().unwrap().clone();
    let summary = exchanges
        .iter()
        .map(|e| {
            format!(
                "{} {} -> {} {}",
                e.method,
                e.path,
                e.status,
                e.response.chars().take(600).collect::<String>()
            )
        })
        .collect::<Vec<_>>()
        .join("\n");
    let context = format!(
        "{agent:?} via {upstream:?}\n--- stdout\n{}\n--- stderr\n{}\n--- exchanges\n{summary}",
        run.stdout,
        run.stderr.chars().take(4000).collect::<String>()
    );
    assert!(run.success, "the agent failed: {context}");
    assert!(
        run.stdout.contains(&sentence),
        "the agent did not quote the file: {context}"
    );

    // The loop: at least the prompt and the tool result went to the model, each answered.
    let generations: Vec<&Exchange> = exchanges.iter().filter(|e| is_generation(e)).collect();
    assert!(generations.len() >= 2, "{context}");
    for e in &generations {
        assert_eq!(e.status, 200, "{context}");
    }
    assert!(
        generations
            .iter()
            .any(|e| e.request.to_string().contains(&sentence)),
        "no request carried the tool's result: {context}"
    );
    // Each reached the upstream once, and the upstream saw the tool result too.
    let upstream_requests = mock.requests();
    assert_eq!(upstream_requests.len(), generations.len(), "{context}");
    assert!(upstream_requests
        .iter()
        .any(|r| r.body.to_string().contains(&sentence)));

    // Every request of the loop is in the ledger once, settled with a cost, and the cost the
    // client was told is the ledger's.
    let mut reported: HashMap<String, Decimal> = HashMap::new();
    for e in &generations {
        let id = e.request_id.clone().expect("a request id header");
        let entry = gw
            .gw
            .ledger
            .wait_for_entry(&id, WAIT)
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("no ledger entry for {id}: {context}"));
        assert_eq!(entry.status, Some(200), "{entry:?}");
        assert!(entry.cost > Nanos::ZERO, "{entry:?}");
        let cost = reported_cost(&e.response)
            .unwrap_or_else(|| panic!("no cost reported for {id}: {}", e.response));
        assert_eq!(Nanos::from_usd(cost), Some(entry.cost), "{id}");
        assert!(reported.insert(id, cost).is_none());
    }
    let (entries, _) = harness::books(&gw.gw.ledger, &gw.key_id).await;
    assert_eq!(
        entries.len(),
        generations.len(),
        "one entry per request: {entries:?}"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread")]
async fn claude_code_via_chat() {
    tool_loop(Agent::ClaudeCode, Upstream::Chat).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn claude_code_via_responses() {
    tool_loop(Agent::ClaudeCode, Upstream::Responses).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn claude_code_via_anthropic() {
    tool_loop(Agent::ClaudeCode, Upstream::Anthropic).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn claude_code_via_gemini() {
    tool_loop(Agent::ClaudeCode, Upstream::Gemini).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn codex_via_chat() {
    tool_loop(Agent::Codex, Upstream::Chat).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn codex_via_responses() {
    tool_loop(Agent::Codex, Upstream::Responses).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn codex_via_anthropic() {
    tool_loop(Agent::Codex, Upstream::Anthropic).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn codex_via_gemini() {
    tool_loop(Agent::Codex, Upstream::Gemini).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn gemini_cli_via_chat() {
    tool_loop(Agent::GeminiCli, Upstream::Chat).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn gemini_cli_via_responses() {
    tool_loop(Agent::GeminiCli, Upstream::Responses).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn gemini_cli_via_anthropic() {
    tool_loop(Agent::GeminiCli, Upstream::Anthropic).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn gemini_cli_via_gemini() {
    tool_loop(Agent::GeminiCli, Upstream::Gemini).await;
}

/// The recorded request bodies of each agent (`fixtures/agents/*/`): the first turn names the
/// file and offers the agent's read or shell tool; the second carries the tool's result.
#[test]
fn the_recorded_agent_bodies_are_a_first_and_a_second_turn() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/integration/fixtures/agents");
    for agent in ["claude_code", "codex", "gemini_cli"] {
        let read = |name: &str| -> Value {
            let path = root.join(agent).join(name);
            let text = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            serde_json::from_str(&text).unwrap()
        };
        let (first, second) = (read("first_turn.json"), read("second_turn.json"));
        assert!(
            first["tools"].as_array().is_some_and(|t| !t.is_empty()),
            "{agent}"
        );
        assert!(first.to_string().contains("notes.txt"), "{agent}");
        let result = second.to_string();
        assert!(
            result.contains("tool_result")
                || result.contains("function_call_output")
                || result.contains("functionResponse"),
            "{agent}: no tool result in the second turn"
        );
    }
}

/// Each agent's recorded first and second turn (`fixtures/agents/`), replayed as recorded through a
/// route of each upstream dialect: served (200), billed once, and answered as the loop expects (the
/// first turn with a call to the agent's read or shell tool, the second quoting the tool's result).
/// Needs no agent installed: these are the agents' own bodies.
#[tokio::test(flavor = "multi_thread")]
async fn the_recorded_turns_replay_through_every_dialect() {
    let turns = |agent: &str| {
        ["first_turn", "second_turn"].map(|turn| {
            let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!(
                "tests/integration/fixtures/agents/{agent}/{turn}.json"
            ));
            serde_json::from_slice::<Value>(&std::fs::read(&path).unwrap()).unwrap()
        })
    };
    for upstream in [
        Upstream::Chat,
        Upstream::Responses,
        Upstream::Anthropic,
        Upstream::Gemini,
    ] {
        for (agent, dir, tool) in [
            (Agent::ClaudeCode, "claude_code", "Read"),
            (Agent::Codex, "codex", "exec_command"),
            (Agent::GeminiCli, "gemini_cli", "read_file"),
        ] {
            let mock = MockUpstream::start().await.unwrap();
            let gw = harness::start(&config(&mock, agent, upstream)).await;
            for (n, mut body) in turns(dir).into_iter().enumerate() {
                let label = format!("{agent:?} turn {} via {upstream:?}", n + 1);
                let http = harness::client();
                let req = match agent {
                    Agent::ClaudeCode => {
                        body["model"] = json!(agent.model());
                        http.post(gw.url("/v1/messages?beta=true"))
                            .header("x-api-key", &gw.key)
                            .header("anthropic-version", "2023-06-01")
                    }
                    Agent::Codex => {
                        body["model"] = json!(agent.model());
                        http.post(gw.url("/v1/responses")).bearer_auth(&gw.key)
                    }
                    Agent::GeminiCli => http
                        .post(gw.url(&format!(
                            "/v1beta/models/{}:streamGenerateContent?alt=sse",
                            agent.model()
                        )))
                        .header("x-goog-api-key", &gw.key),
                };
                let resp = req.json(&body).send().await.unwrap();
                assert_eq!(resp.status(), 200, "{label}");
                let id = harness::request_id(&resp);
                let text = resp.text().await.unwrap();
                if n == 0 {
                    assert!(text.contains(&format!("\"{tool}\"")), "{label}: {text}");
                } else {
                    assert!(text.contains("says"), "{label}: {text}");
                }
                let entry = gw.gw.ledger.wait_for_entry(&id, WAIT).await.unwrap();
                let entry = entry.unwrap_or_else(|| panic!("{label}: no entry"));
                assert_eq!(entry.status, Some(200), "{label}");
                assert!(entry.cost > Nanos::ZERO, "{label}");
            }
            assert_eq!(mock.requests().len(), 2, "{agent:?} via {upstream:?}");
        }
    }
}
