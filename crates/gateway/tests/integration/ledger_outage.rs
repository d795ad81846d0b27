//! The PostgreSQL half of "nothing is lost when the database will not write": the test starts a
//! private PostgreSQL server of its own (its own data directory and port, so the shared server is
//! never touched), serves a gateway on it, stops the server for ten seconds while requests keep
//! arriving, starts it again, and checks that every request was answered normally and is billed
//! exactly once after recovery, with nothing left held.
//!
//! The server binaries come from `/usr/lib/postgresql/*/bin`. Without them the test says so loudly
//! and passes, unless `CI` is set, where it fails. PostgreSQL will not run as root, so when the
//! tests run as root the server runs as the `postgres` user.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use mock_upstream::MockUpstream;
use serde_json::{json, Value};
use switchyard::store::ledger::Nanos;

use crate::harness::{self, books, temp_db, until, user, TestGateway};

/// How long the database stays down at least.
const OUTAGE: Duration = Duration::from_secs(10);
/// Requests sent at once during the outage (half streamed).
const CONCURRENT: usize = 12;
/// How often a round of requests is sent during the outage (keys are answered from memory, so
/// they keep being served however long it lasts).
const ROUND_EVERY: Duration = Duration::from_secs(1);
/// Streams that outlast the outage: `SLOW_TOKENS` tokens, `SLOW_GAP_MS` apart.
const SLOW_STREAMS: usize = 2;
const SLOW_GAP_MS: u64 = 500;
const SLOW_TOKENS: u64 = OUTAGE.as_millis() as u64 / SLOW_GAP_MS + 1;

/// A PostgreSQL server of this test's own, in a temporary directory; stopped (`immediate`) and
/// removed when dropped, so a failed test leaves nothing running.
pub(crate) struct PrivatePostgres {
    bin: PathBuf,
    dir: PathBuf,
    port: u16,
}

impl PrivatePostgres {
    /// The newest `/usr/lib/postgresql/<version>/bin` that has `initdb` and `pg_ctl`.
    fn binaries() -> Option<PathBuf> {
        std::fs::read_dir("/usr/lib/postgresql")
            .ok()?
            .filter_map(|e| {
                let e = e.ok()?;
                let version: u32 = e.file_name().to_str()?.parse().ok()?;
                let bin = e.path().join("bin");
                (bin.join("initdb").exists() && bin.join("pg_ctl").exists())
                    .then_some((version, bin))
            })
            .max()
            .map(|(_, bin)| bin)
    }

    /// Initialises and starts a server on a free port, or `None` (after saying so loudly) when
    /// the binaries are not installed.
    pub(crate) async fn start() -> Option<PrivatePostgres> {
        let Some(bin) = PrivatePostgres::binaries() else {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI is set but no PostgreSQL server binaries are in /usr/lib/postgresql/*/bin: \
                 the PostgreSQL outage test cannot run"
            );
            crate::harness::skipped(
                "SKIPPED (PostgreSQL outage): install the PostgreSQL server (initdb, pg_ctl) \
                 under /usr/lib/postgresql/*/bin",
            );
            return None;
        };
        let dir = temp_db().with_extension("pg");
        std::fs::create_dir(&dir).unwrap();
        let mut pg = PrivatePostgres { bin, dir, port: 0 };
        if as_root() {
            let owned = std::process::Command::new("chown")
                .args(["postgres:postgres"])
                .arg(&pg.dir)
                .status()
                .expect("chown runs");
            assert!(owned.success(), "could not give {:?} to postgres", pg.dir);
        }
        let data = pg.data();
        pg.run(
            "initdb",
            &["-D", &data, "--auth=trust", "-U", "postgres", "-N"],
        )
        .await;
        // Another process may take the port between asking for it and the server binding it.
        for _ in 0..5 {
            pg.port = free_port();
            if pg.try_start().await {
                return Some(pg);
            }
        }
        panic!("the private PostgreSQL would not start: {}", pg.log());
    }

    fn data(&self) -> String {
        self.dir.join("data").display().to_string()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("log")).unwrap_or_default()
    }

    pub(crate) fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// `program` from the server binaries, as the `postgres` user when this process is root.
    fn command(&self, program: &str) -> tokio::process::Command {
        let path = self.bin.join(program);
        let mut cmd = if as_root() {
            let mut c = tokio::process::Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(path);
            c
        } else {
            tokio::process::Command::new(path)
        };
        cmd.current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd
    }

    async fn run(&self, program: &str, args: &[&str]) {
        let out = self.command(program).args(args).output().await.unwrap();
        assert!(
            out.status.success(),
            "{program} {args:?} failed: {}{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
    }

    async fn try_start(&self) -> bool {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port,
            self.dir.display()
        );
        let log = self.dir.join("log").display().to_string();
        let data = self.data();
        self.command("pg_ctl")
            .args([
                "start", "-w", "-t", "60", "-D", &data, "-l", &log, "-o", &options,
            ])
            .output()
            .await
            .unwrap()
            .status
            .success()
    }

    /// Stops the server (`fast`: connections are cut, as in a real outage) and waits until it
    /// is down.
    pub(crate) async fn stop(&self) {
        self.run("pg_ctl", &["stop", "-w", "-m", "fast", "-D", &self.data()])
            .await;
    }

    /// Sends `signal` (`-STOP` or `-CONT`) to every process of this server (the postmaster and
    /// its backends): stopped, it is a hung server whose connections stay open and never answer.
    pub(crate) fn signal_all(&self, signal: &str) {
        let pid_file = std::fs::read_to_string(self.dir.join("data").join("postmaster.pid"))
            .expect("the server is running");
        let main = pid_file.lines().next().unwrap().trim().to_owned();
        let children = std::process::Command::new("pgrep")
            .args(["-P", &main])
            .output()
            .unwrap();
        let mut pids = vec![main];
        pids.extend(
            String::from_utf8_lossy(&children.stdout)
                .split_whitespace()
                .map(str::to_owned),
        );
        let ok = std::process::Command::new("kill")
            .arg(signal)
            .args(&pids)
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill {signal} {pids:?}");
    }

    /// Starts the stopped server again on the same port and waits until it accepts connections.
    pub(crate) async fn restart(&self) {
        assert!(
            self.try_start().await,
            "the private PostgreSQL would not start again: {}",
            self.log()
        );
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let pg_ctl = self.bin.join("pg_ctl");
        let data = self.data();
        let args = ["stop", "-w", "-m", "immediate", "-D", &data];
        let mut cmd = if as_root() {
            let mut c = std::process::Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(pg_ctl).args(args);
            c
        } else {
            let mut c = std::process::Command::new(pg_ctl);
            c.args(args);
            c
        };
        let _ = cmd
            .current_dir(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn as_root() -> bool {
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// A port nobody listens on right now (the OS picks it; it is free again once closed).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One chat request answered as a client expects it: 200, and `[DONE]` with the cost comment
/// (streamed) or a JSON body with `usage.cost`. Returns its request id and how long it took.
async fn served(
    gw: &TestGateway,
    model: &str,
    stream: bool,
    since_stop: Instant,
) -> (String, Duration) {
    let t = Instant::now();
    let resp = gw
        .chat(json!({"model": model, "stream": stream, "messages": user("hi")}))
        .send()
        .await
        .unwrap();
    let status = resp.status();
    let id = resp
        .headers()
        .get("x-request-id")
        .map(|v| v.to_str().unwrap().to_owned());
    let at = since_stop.elapsed();
    let mut body = String::new();
    let mut frames = resp.bytes_stream();
    while let Some(frame) = frames.next().await {
        body.push_str(&String::from_utf8_lossy(&frame.unwrap()));
    }
    assert_eq!(
        status, 200,
        "a request to {model} answered {:.1?} after the database stopped (stream: {stream}) got \
         {status}: {body}",
        at
    );
    if stream {
        assert!(body.contains("data: [DONE]"), "{body}");
        assert!(body.contains(": {\"cost\""), "{body}");
    } else {
        let v: Value = serde_json::from_str(&body).unwrap();
        assert!(v["usage"]["cost"].is_string(), "{v}");
    }
    (id.expect("every answer names its request"), t.elapsed())
}

pub(crate) fn journal_next_to(scratch: &Path) -> String {
    format!("{}.journal", scratch.display())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_server_stopped_for_ten_seconds_keeps_serving_and_bills_each_request_once() {
    let Some(pg) = PrivatePostgres::start().await else {
        return;
    };
    let mock = MockUpstream::start().await.unwrap();
    mock.set_options(json!({"tokens": 5})).unwrap();
    let slow = MockUpstream::start().await.unwrap();
    slow.set_options(json!({"tokens": SLOW_TOKENS, "gap_ms": SLOW_GAP_MS}))
        .unwrap();
    let scratch = temp_db();
    let slow_model = format!(
        r#"
[providers.slow]
kind = "openai"
base_url = "{}"
api_key = "upstream-secret-key"

[models.slow]
routes = ["slow/m"]
input_price = "2.50"
output_price = "10.00"
"#,
        slow.base_url()
    );
    let config = format!(
        "journal = {:?}\n{}",
        journal_next_to(&scratch),
        harness::mock_config(&mock, &slow_model)
    );
    let gw = harness::start_on_database(&config, &pg.url(), scratch).await;
    let ledger = gw.gw.ledger.clone();
    let credits = ledger.key(&gw.key_id).await.unwrap().unwrap().balance;

    // One request while the database is up: the key is looked up, its account loaded, its entry
    // committed.
    let (warm, _) = served(&gw, "m", false, Instant::now()).await;
    assert!(ledger.entry(&warm).await.unwrap().is_some());

    pg.stop().await;
    let stopped = Instant::now();
    // Streams that end, and settle, only after `OUTAGE`, while short requests keep arriving.
    let long = futures_util::future::join_all(
        (0..SLOW_STREAMS).map(|_| served(&gw, "slow", true, stopped)),
    );
    let short = async {
        let mut answered = Vec::new();
        let mut slowest = Duration::ZERO;
        let mut round = 0;
        let mut pace = tokio::time::interval(ROUND_EVERY);
        while answered.is_empty() || stopped.elapsed() < OUTAGE {
            pace.tick().await;
            let batch = futures_util::future::join_all(
                (0..CONCURRENT).map(|i| served(&gw, "m", (round + i) % 2 == 0, stopped)),
            )
            .await;
            for (id, took) in batch {
                slowest = slowest.max(took);
                answered.push(id);
            }
            round += 1;
        }
        (answered, slowest)
    };
    let (long, (mut answered, slowest)) = tokio::join!(long, short);
    let outage = stopped.elapsed();
    assert!(outage >= OUTAGE, "{outage:?}");
    eprintln!(
        "{} requests answered while PostgreSQL was down for {outage:.1?}; the slowest short one \
         took {slowest:.1?}",
        answered.len() + long.len()
    );
    // The outage costs a request at most one journal deadline (the first batch waits for it;
    // later ones go straight to the journal, at most behind one replay attempt), plus its own
    // few tokens: never a wait for the database. Before settlements went ahead of replay
    // attempts, requests waited 3-4 s here.
    let bound = switchyard::store::ledger::writer::JOURNAL_AFTER * 2 + Duration::from_millis(500);
    assert!(
        slowest <= bound,
        "a short request took {slowest:.1?} during the outage (bound {bound:.1?})"
    );
    answered.extend(long.into_iter().map(|(id, _)| id));
    // The entries wait in the journal, their money held.
    let journal = ledger.journal().expect("the server has a journal");
    assert!(journal.has_pending());
    assert!(ledger.account_reserved(&gw.key_id).unwrap() > Nanos::ZERO);

    pg.restart().await;
    for id in &answered {
        let e = ledger
            .wait_for_entry(id, Duration::from_secs(30))
            .await
            .unwrap();
        assert!(e.is_some(), "{id} was never replayed into the database");
    }
    let (entries, balance) = books(&ledger, &gw.key_id).await;
    assert_eq!(entries.len(), answered.len() + 1, "one entry per request");
    assert!(entries
        .values()
        .all(|e| e.cost.0 > 0 && e.end_reason == "stop"));
    let billed: i64 = entries.values().map(|e| e.cost.0).sum();
    assert_eq!(balance.0, credits.0 - billed, "each billed exactly once");
    let key = gw.key_id.clone();
    until(
        "the held money is released",
        Duration::from_secs(10),
        || ledger.account_reserved(&key) == Some(Nanos::ZERO) && !journal.has_pending(),
    )
    .await;
}
