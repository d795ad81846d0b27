//! The test harness: starts a real gateway (the same `Gateway::build` + `serve` as
//! `switchyard serve`) on port 0 with a fresh SQLite database, next to a mock upstream, and offers
//! small helpers to read SSE responses the way a client does.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use mock_upstream::MockUpstream;
use switchyard::app::{Gateway, Live};
use switchyard::config::Config;

/// A running gateway with its first key.
pub(crate) struct TestGateway {
    pub addr: SocketAddr,
    pub key: String,
    pub key_id: String,
    /// The generation it started with (the ledger and other lasting parts are the same in all).
    pub gw: Arc<Gateway>,
    /// The generation serving now, and reloads.
    #[allow(dead_code)] // used by the reload tests
    pub live: Live,
    pub db_path: PathBuf,
    _shutdown: tokio::sync::oneshot::Sender<()>,
}

impl TestGateway {
    /// `http://127.0.0.1:PORT/v1`
    #[allow(dead_code)] // used by the SDK tests
    pub(crate) fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// A POST to `/v1/chat/completions` with this gateway's key.
    pub(crate) fn chat(&self, body: serde_json::Value) -> reqwest::RequestBuilder {
        client()
            .post(self.url("/v1/chat/completions"))
            .bearer_auth(&self.key)
            .json(&body)
    }

    /// The ledger entry of request `id`, once written (waiting up to 20 s; none is a failure).
    pub(crate) async fn entry(&self, id: &str) -> switchyard::store::ledger::UsageEntryRow {
        self.gw
            .ledger
            .wait_for_entry(id, std::time::Duration::from_secs(20))
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("no ledger entry for {id}"))
    }
}

impl Drop for TestGateway {
    fn drop(&mut self) {
        for suffix in ["", "-wal", "-shm", ".journal"] {
            let mut p = self.db_path.clone().into_os_string();
            p.push(suffix);
            let _ = std::fs::remove_file(p);
        }
    }
}

/// Moves the in-process gateway's clock on by `by` at once, then lets it run on in real time: a
/// cooldown or a lease ends when the test says so, not when a loaded machine gets round to it.
/// The gateway reads tokio's clock (`tokio::time::Instant`), and `harness::start` spawns it on the
/// test's own runtime, which must be the current-thread one (`#[tokio::test]`). Timers due within
/// `by` fire at once, so `by` stays under the server's idle timeout (60 s by default).
pub(crate) async fn skip_ahead(by: std::time::Duration) {
    tokio::time::pause();
    tokio::time::advance(by).await;
    tokio::time::resume();
}

pub(crate) fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_gzip()
        .build()
        .expect("client")
}

/// A unique temporary SQLite file.
pub(crate) fn temp_db() -> PathBuf {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    std::env::temp_dir().join(format!(
        "switchyard-test-{}-{}-{n}.db",
        std::process::id(),
        rand_suffix()
    ))
}

fn rand_suffix() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(0);
    h.finish()
}

/// A config with one OpenAI-dialect provider `mock` pointing at `mock`, the models `m` (OpenAI
/// dialect) and `deepseek-r` (DeepSeek dialect, reasoning), and `extra` appended.
pub(crate) fn mock_config(mock: &MockUpstream, extra: &str) -> String {
    format!(
        r#"
demo_credits = "100"
[providers.mock]
kind = "openai"
base_url = "{base}"
api_key = "upstream-secret-key"

[providers.mockds]
kind = "deepseek"
base_url = "{base}"
api_key = "upstream-secret-key"

[models.m]
routes = ["mock/m"]
input_price = "2.50"
output_price = "10.00"

[models."deepseek-r"]
routes = ["mockds/deepseek-reasoner"]
input_price = "0.55"
output_price = "2.19"
{extra}
"#,
        base = mock.base_url()
    )
}

/// Starts a gateway for a config text (top-level keys may be prepended with `top`).
pub(crate) async fn start(config_text: &str) -> TestGateway {
    let config = Config::parse(config_text, "test.toml").expect("test config is valid");
    start_config(Some(config)).await
}

/// Starts the embedded default (`switchyard serve` without a config: the in-process demo upstream).
pub(crate) async fn start_embedded() -> TestGateway {
    start_config(None).await
}

async fn start_config(config: Option<Config>) -> TestGateway {
    let db_path = temp_db();
    let url = format!("sqlite://{}", db_path.display());
    start_on(config, url, db_path, None).await
}

/// Starts a gateway from a config file, as `switchyard serve --config FILE` does: `POST
/// /admin/reload` reads that file again.
#[allow(dead_code)] // used by the reload tests
pub(crate) async fn start_from_file(path: &std::path::Path) -> TestGateway {
    let config = Config::load(path).expect("test config is valid");
    let db_path = temp_db();
    let url = format!("sqlite://{}", db_path.display());
    start_on(Some(config), url, db_path, Some(path.to_owned())).await
}

/// Starts a gateway for a config text on the database at `database_url` (e.g. a PostgreSQL
/// server of the test's own). The config should name a `journal` file; `scratch` is a temporary
/// path whose `.journal` and other suffixed files are removed when the gateway is dropped.
pub(crate) async fn start_on_database(
    config_text: &str,
    database_url: &str,
    scratch: PathBuf,
) -> TestGateway {
    let config = Config::parse(config_text, "test.toml").expect("test config is valid");
    start_on(Some(config), database_url.to_owned(), scratch, None).await
}

async fn start_on(
    config: Option<Config>,
    database_url: String,
    db_path: PathBuf,
    source: Option<PathBuf>,
) -> TestGateway {
    let (gw, first, problems) = Gateway::build(config, Some(database_url.clone()))
        .await
        .expect("gateway builds");
    assert!(problems.is_empty(), "{problems:?}");
    // The embedded demo (if this is it) as fast as it can: tests do not watch it stream.
    gw.set_demo_pace(0);
    let first = first.expect("a fresh database gets a first key");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let live = Live::new(gw.clone(), source, Some(database_url));
    tokio::spawn(live.clone().serve(listener, async {
        let _ = rx.await;
    }));
    TestGateway {
        addr,
        key: first.key,
        key_id: first.id,
        gw,
        live,
        db_path,
        _shutdown: tx,
    }
}

/// A mock and a gateway in front of it.
pub(crate) async fn start_with_mock(extra: &str) -> (TestGateway, MockUpstream) {
    start_with_mock_top("", extra).await
}

/// Like `start_with_mock`, with top-level config keys in `top`.
pub(crate) async fn start_with_mock_top(top: &str, extra: &str) -> (TestGateway, MockUpstream) {
    let mock = MockUpstream::start().await.unwrap();
    let text = format!("{top}\n{}", mock_config(&mock, extra));
    (start(&text).await, mock)
}

/// One SSE item as a client sees it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Sse {
    Data(serde_json::Value),
    Done,
    Comment(String),
}

/// Splits a whole SSE body into items (events and comments, in order).
pub(crate) fn parse_sse(body: &str) -> Vec<Sse> {
    let mut out = vec![];
    for block in body.split("\n\n") {
        for line in block.lines() {
            if let Some(c) = line.strip_prefix(": ") {
                out.push(Sse::Comment(c.to_owned()));
            } else if let Some(d) = line.strip_prefix("data: ") {
                if d == "[DONE]" {
                    out.push(Sse::Done);
                } else {
                    out.push(Sse::Data(
                        serde_json::from_str(d)
                            .unwrap_or_else(|e| panic!("event is not JSON ({e}): {d}")),
                    ));
                }
            } else if !line.is_empty() {
                panic!("unexpected SSE line: {line:?}");
            }
        }
    }
    out
}

/// The data events only.
pub(crate) fn data_events(items: &[Sse]) -> Vec<serde_json::Value> {
    items
        .iter()
        .filter_map(|i| match i {
            Sse::Data(v) => Some(v.clone()),
            _ => None,
        })
        .collect()
}

/// Concatenated `delta.<field>` over all chunks.
pub(crate) fn joined(items: &[Sse], field: &str) -> String {
    data_events(items)
        .iter()
        .filter_map(|c| {
            c.pointer(&format!("/choices/0/delta/{field}"))?
                .as_str()
                .map(str::to_owned)
        })
        .collect()
}

pub(crate) fn user(text: &str) -> serde_json::Value {
    serde_json::json!([{"role": "user", "content": text}])
}

/// Polls `check` until it holds, failing after `within`: waits on the condition itself, never on
/// a guessed duration.
pub(crate) async fn until<F: FnMut() -> bool>(
    what: &str,
    within: std::time::Duration,
    mut check: F,
) {
    let deadline = std::time::Instant::now() + within;
    while !check() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// Every ledger entry of `key_id` by request id (a request in the ledger twice fails the test),
/// and the key's balance.
pub(crate) async fn books(
    ledger: &switchyard::store::ledger::Ledger,
    key_id: &str,
) -> (
    std::collections::HashMap<String, switchyard::store::ledger::UsageEntryRow>,
    switchyard::store::ledger::Nanos,
) {
    let rows = ledger
        .requests(&switchyard::store::ledger::RequestQuery {
            since_ms: 0,
            until_ms: None,
            key_id: Some(key_id.to_owned()),
            model: None,
            end_reason: None,
            status: None,
            request_type: None,
            limit: 1_000_000,
        })
        .await
        .unwrap();
    let mut out = std::collections::HashMap::new();
    for r in rows {
        let id = r.request_id.clone();
        assert!(
            out.insert(id.clone(), r).is_none(),
            "{id} is in the ledger twice"
        );
    }
    let balance = ledger.key(key_id).await.unwrap().unwrap().balance;
    (out, balance)
}

/// Runs the real `switchyard` binary in `dir` with `args` (e.g. `serve --listen 127.0.0.1:0`) and
/// waits until it listens: (the child, the key it printed on a fresh database, its base URL).
pub(crate) async fn serve_binary(
    dir: &std::path::Path,
    args: &[&str],
) -> (tokio::process::Child, Option<String>, String) {
    let (child, key, base, _) = serve_binary_with(dir, args, &[]).await;
    (child, key, base)
}

/// Every line a spawned binary wrote, stdout and stderr, as it wrote them; each stream adds
/// [`CLOSED`] once the binary closed it.
pub(crate) type Output = Arc<std::sync::Mutex<Vec<String>>>;

/// The line [`Output`] gets when one of the binary's streams is closed.
pub(crate) const CLOSED: &str = "(switchyard test harness: stream closed)";

/// Waits until the binary closed stdout and stderr, so that `output` holds every line it wrote.
#[allow(dead_code)] // used by the secrets test
pub(crate) async fn all_output(output: &Output) {
    let output = output.clone();
    until(
        "the binary's output is closed",
        std::time::Duration::from_secs(30),
        || {
            output
                .lock()
                .unwrap()
                .iter()
                .filter(|l| *l == CLOSED)
                .count()
                == 2
        },
    )
    .await;
}

/// `serve_binary` with extra environment variables, keeping every line the binary writes on stdout
/// and stderr (its logs) for the test to read.
pub(crate) async fn serve_binary_with(
    dir: &std::path::Path,
    args: &[&str],
    env: &[(&str, &str)],
) -> (tokio::process::Child, Option<String>, String, Output) {
    use tokio::io::AsyncBufReadExt;
    std::fs::create_dir_all(dir).unwrap();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(args)
        .current_dir(dir)
        .env_remove("SWITCHYARD_DATABASE")
        .env_remove("OPENAI_API_KEY")
        .env_remove("ANTHROPIC_API_KEY")
        .env_remove("DEEPSEEK_API_KEY")
        .env_remove("SWITCHYARD_ADMIN_KEY")
        // The embedded demo as fast as it can, unless the test says otherwise.
        .env("SWITCHYARD_DEMO_TOKENS_PER_SECOND", "0")
        .envs(env.iter().copied())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let output: Output = Arc::default();
    // Keep reading stderr, so that it never fills up or closes under the binary.
    let mut errors = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let kept = output.clone();
    tokio::spawn(async move {
        while let Ok(Some(line)) = errors.next_line().await {
            kept.lock().unwrap().push(line);
        }
        kept.lock().unwrap().push(CLOSED.to_owned());
    });
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let (mut key, mut base) = (None, None);
    while let Some(line) = lines.next_line().await.unwrap() {
        output.lock().unwrap().push(line.clone());
        if line.starts_with("sk-sy-") {
            key = Some(line);
        } else if let Some(url) = line.strip_prefix("Switchyard listening on ") {
            base = Some(url.to_owned());
            break;
        }
    }
    let kept = output.clone();
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            kept.lock().unwrap().push(line);
        }
        kept.lock().unwrap().push(CLOSED.to_owned());
    });
    (
        child,
        key,
        base.expect("the server printed its address"),
        output,
    )
}

/// The gateway's id of a request, from its response.
pub(crate) fn request_id(resp: &reqwest::Response) -> String {
    resp.headers()["x-request-id"].to_str().unwrap().to_owned()
}

/// Waits until none of `gw`'s first key's money is held: a dropped request's hold is released
/// right after the commit that made its entry visible.
pub(crate) async fn released(gw: &TestGateway) {
    let (ledger, key) = (gw.gw.ledger.clone(), gw.key_id.clone());
    until("holds released", std::time::Duration::from_secs(10), || {
        ledger.account_reserved(&key) == Some(switchyard::store::ledger::Nanos::ZERO)
    })
    .await;
}

/// The body of a GET to `url` as text (e.g. `/metrics`), with the harness's client.
pub(crate) async fn get_text(url: impl reqwest::IntoUrl) -> String {
    client()
        .get(url)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// A test that cannot run here says so loudly and, when `SWITCHYARD_SKIP_LOG` names a file (as
/// `./scripts/test` does), adds a line to it, so the run ends by counting what it skipped.
pub(crate) fn skipped(why: &str) {
    eprintln!("{why}");
    note_skip(why);
}

fn note_skip(why: &str) {
    use std::io::Write;
    let Some(path) = std::env::var_os("SWITCHYARD_SKIP_LOG") else {
        return;
    };
    let test = std::thread::current().name().unwrap_or("a test").to_owned();
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
    {
        let _ = writeln!(f, "{test}: {}", why.lines().next().unwrap_or(why));
    }
}
