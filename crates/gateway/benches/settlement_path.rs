//! The benchmark for issue 8's targets ("the settlement path"): in one run, the gateway (billing
//! on, SQLite ledger in a temporary file, the same `Gateway::build` + `serve` as `switchyard
//! serve`) against calling the same fast mock upstream directly, with the same HTTP client code
//! for both, printing each figure with its gateway/direct ratio and the target:
//!
//! - T1 non-streamed throughput at 32 concurrent clients;
//! - T2 added latency (p50, p99) at a steady open-loop 30 requests/s;
//! - T3 streamed 50-token answers at 32 concurrent, and the time between the last content chunk
//!   and `[DONE]`;
//! - T4 500 concurrent streams of 50 tokens 20 ms apart: time to first token and gaps, p99;
//! - T5 the ledger writer alone: `Ledger::settle` from many tasks, on SQLite and PostgreSQL;
//! - T6 admission and settlement on PostgreSQL (issue 10): `Ledger::hold` then `Ledger::settle`
//!   with that hold, from 1 or 4 `Ledger` handles ("instances") on one database, holds shared
//!   (`Instances::Shared`) or in memory (`Instances::Single`), over many keys or one hot key;
//! - the resident memory of the real release binary, idle and under T4's load.
//!
//! Run with `cargo bench -p switchyard --bench settlement_path` (about two minutes), or
//! `-- --quick` for a smoke run; `-- --help` lists the knobs. PostgreSQL comes from
//! `SWITCHYARD_TEST_POSTGRES` or `--postgres URL`; the run creates its own database there and
//! drops it afterwards. The mock is steered only through model-name suffixes
//! (`m@tokens=50,gap_ms=20`): in the gateway config's routes and in the model sent directly.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Parser;
use futures_util::StreamExt;
use mock_upstream::MockUpstream;
use switchyard::app::Gateway;
use switchyard::auth;
use switchyard::config::Config;
use switchyard::store::ledger::{
    now_ms, EndReason, Instances, Ledger, Nanos, NewKey, TokenSource, UsageEntry,
};
use tokio::io::AsyncBufReadExt;

/// The mock's behaviour for the fast answers (T1-T3) and the slow streams (T4).
const FAST: &str = "m@tokens=50";
const SLOW: &str = "m@tokens=50,gap_ms=20";
const TOKENS: usize = 50;

#[derive(Parser, Debug, Clone)]
#[command(
    name = "settlement_path",
    about = "Issue 8's targets: gateway against direct-to-mock, one run"
)]
struct Args {
    /// Short phases for a smoke run (about 25 s).
    #[arg(long)]
    quick: bool,
    /// Seconds per side for T1 and T3 (default 5; quick 1).
    #[arg(long)]
    secs: Option<f64>,
    /// Seconds of the open-loop T2 (default 20; quick 3).
    #[arg(long)]
    t2_secs: Option<f64>,
    /// Requests per second in T2, on each side.
    #[arg(long, default_value_t = 30.0)]
    t2_rate: f64,
    /// Concurrent clients in T1 and T3.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Concurrent streams in T4.
    #[arg(long, default_value_t = 500)]
    streams: usize,
    /// Seconds per side in T4: each client starts streams back to back until then (default 3;
    /// quick 1).
    #[arg(long)]
    t4_secs: Option<f64>,
    /// Settlements in T5, per database (default 20000; quick 2000).
    #[arg(long)]
    entries: Option<usize>,
    /// Concurrent tasks calling `Ledger::settle` in T5.
    #[arg(long, default_value_t = 64)]
    tasks: usize,
    /// Keys the T5 settlements are spread over (round robin).
    #[arg(long, default_value_t = 16)]
    keys: usize,
    /// PostgreSQL server for T5 (a database is created there and dropped afterwards).
    #[arg(long, env = "SWITCHYARD_TEST_POSTGRES")]
    postgres: Option<String>,
    /// Skip the memory figures (they spawn the release binary).
    #[arg(long)]
    no_memory: bool,
    /// Run only these parts (comma-separated: t1,t2,t3,t4,t5,t6,mem); all by default.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

impl Args {
    fn pick(&self, explicit: Option<f64>, normal: f64, quick: f64) -> Duration {
        Duration::from_secs_f64(explicit.unwrap_or(if self.quick { quick } else { normal }))
    }

    fn runs(&self, part: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|p| p.eq_ignore_ascii_case(part))
    }
}

/// Where requests go: the mock itself or the gateway in front of it.
#[derive(Clone)]
struct Target {
    url: Arc<str>,
    key: Arc<str>,
    non_stream: Bytes,
    fast_stream: Bytes,
    slow_stream: Bytes,
}

impl Target {
    fn new(url: String, key: String, fast: &str, slow: &str) -> Target {
        let body = |model: &str, stream: bool| {
            Bytes::from(
                serde_json::json!({"model": model, "stream": stream,
                    "messages": [{"role": "user", "content": "hi"}]})
                .to_string(),
            )
        };
        Target {
            url: url.into(),
            key: key.into(),
            non_stream: body(fast, false),
            fast_stream: body(fast, true),
            slow_stream: body(slow, true),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The client: one function per request kind, used unchanged for both targets.

fn client(pool: usize) -> reqwest::Client {
    reqwest::Client::builder()
        .http1_only()
        .tcp_nodelay(true)
        .pool_max_idle_per_host(pool)
        .timeout(Duration::from_secs(60))
        .build()
        .expect("client")
}

async fn post(
    client: &reqwest::Client,
    t: &Target,
    body: &Bytes,
) -> Result<reqwest::Response, String> {
    let resp = client
        .post(&*t.url)
        .bearer_auth(&*t.key)
        .header("content-type", "application/json")
        .body(body.clone())
        .send()
        .await
        .map_err(|e| format!("send: {e}"))?;
    if !resp.status().is_success() {
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        return Err(format!(
            "HTTP {status}: {}",
            text.chars().take(200).collect::<String>()
        ));
    }
    Ok(resp)
}

/// One non-streamed request: its latency, from send to the whole body.
async fn non_stream(client: reqwest::Client, t: Target) -> Result<Duration, String> {
    let started = Instant::now();
    let resp = post(&client, &t, &t.non_stream).await?;
    let body = resp.bytes().await.map_err(|e| format!("body: {e}"))?;
    if find(&body, b"\"finish_reason\"").is_none() {
        return Err("a response without finish_reason".into());
    }
    Ok(started.elapsed())
}

/// What a client sees of one stream.
struct StreamTimes {
    ttft: Duration,
    /// Between consecutive content chunks (only when asked for).
    gaps: Vec<Duration>,
    last_content_to_done: Duration,
}

/// One streamed request, read event by event as the bytes arrive.
async fn stream(
    client: reqwest::Client,
    t: Target,
    slow: bool,
    keep_gaps: bool,
) -> Result<StreamTimes, String> {
    let started = Instant::now();
    let body = if slow { &t.slow_stream } else { &t.fast_stream };
    let resp = post(&client, &t, body).await?;
    let mut frames = resp.bytes_stream();
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    let (mut first, mut last, mut done) = (None::<Instant>, None::<Instant>, None::<Instant>);
    let mut contents = 0usize;
    let mut gaps = Vec::with_capacity(if keep_gaps { TOKENS } else { 0 });
    while let Some(frame) = frames.next().await {
        let frame = frame.map_err(|e| format!("stream: {e}"))?;
        let now = Instant::now();
        buf.extend_from_slice(&frame);
        let mut start = 0;
        while let Some(end) = find(&buf[start..], b"\n\n") {
            let event = &buf[start..start + end];
            start += end + 2;
            if event.starts_with(b"data: [DONE]") {
                done = Some(now);
            } else if is_content(event) {
                contents += 1;
                if let (true, Some(prev)) = (keep_gaps, last) {
                    gaps.push(now - prev);
                }
                first.get_or_insert(now);
                last = Some(now);
            }
        }
        buf.drain(..start);
    }
    match (first, last, done) {
        (Some(first), Some(last), Some(done)) if contents == TOKENS => Ok(StreamTimes {
            ttft: first - started,
            gaps,
            last_content_to_done: done - last,
        }),
        _ => Err(format!(
            "incomplete stream: {contents} content chunks, [DONE] {}",
            if done.is_some() { "seen" } else { "missing" }
        )),
    }
}

/// A chunk whose delta carries non-empty `content` (the role chunk's `""` does not count).
fn is_content(event: &[u8]) -> bool {
    const NEEDLE: &[u8] = b"\"content\":\"";
    find(event, NEEDLE)
        .and_then(|i| event.get(i + NEEDLE.len()))
        .is_some_and(|b| *b != b'"')
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

// ---------------------------------------------------------------------------------------------
// Load shapes.

/// What a closed-loop phase produced.
struct Phase<T> {
    samples: Vec<T>,
    errors: usize,
    first_error: Option<String>,
    elapsed: Duration,
}

impl<T> Phase<T> {
    fn rate(&self) -> f64 {
        self.samples.len() as f64 / self.elapsed.as_secs_f64()
    }

    fn merge(&mut self, other: Phase<T>) {
        self.samples.extend(other.samples);
        self.errors += other.errors;
        self.first_error = self.first_error.take().or(other.first_error);
        self.elapsed += other.elapsed;
    }
}

/// `workers` clients each run `one` back to back until `length` has passed (at least once each);
/// requests started before then finish. The elapsed time runs until the last one ends.
async fn closed_loop<T, F, Fut>(workers: usize, length: Duration, one: F) -> Phase<T>
where
    T: Send + 'static,
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Result<T, String>> + Send + 'static,
{
    let started = Instant::now();
    let deadline = started + length;
    let mut handles = Vec::with_capacity(workers);
    for _ in 0..workers {
        let one = one.clone();
        handles.push(tokio::spawn(async move {
            let (mut ok, mut errors, mut first_error) = (vec![], 0, None);
            loop {
                match one().await {
                    Ok(t) => ok.push(t),
                    Err(e) => {
                        errors += 1;
                        first_error.get_or_insert(e);
                    }
                }
                if Instant::now() >= deadline {
                    break;
                }
            }
            (ok, errors, first_error)
        }));
    }
    let mut phase = Phase {
        samples: vec![],
        errors: 0,
        first_error: None,
        elapsed: Duration::ZERO,
    };
    for h in handles {
        let (ok, errors, first_error) = h.await.expect("worker");
        phase.samples.extend(ok);
        phase.errors += errors;
        phase.first_error = phase.first_error.take().or(first_error);
    }
    phase.elapsed = started.elapsed();
    phase
}

/// Runs a closed-loop phase on both targets in the order direct, gateway, gateway, direct (each
/// half as long), so that a change in the machine's load hits both sides alike.
async fn both_closed<T, F, Fut>(
    workers: usize,
    length: Duration,
    direct: &Target,
    gateway: &Target,
    one: F,
) -> (Phase<T>, Phase<T>)
where
    T: Send + 'static,
    F: Fn(Target) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<T, String>> + Send + 'static,
{
    let half = length / 2;
    let run = |t: &Target| {
        let (t, one) = (t.clone(), one.clone());
        closed_loop(workers, half, move || one(t.clone()))
    };
    let mut d = run(direct).await;
    let mut g = run(gateway).await;
    g.merge(run(gateway).await);
    d.merge(run(direct).await);
    (d, g)
}

/// Open loop: `rate` requests per second on each target for `length`, the gateway's on the tick
/// and the direct one half a period later. Latency runs from the send (the requests are far
/// shorter than the period, so nothing queues in the client).
async fn open_loop(
    client: &reqwest::Client,
    rate: f64,
    length: Duration,
    direct: &Target,
    gateway: &Target,
) -> (Phase<Duration>, Phase<Duration>) {
    let period = Duration::from_secs_f64(1.0 / rate);
    let n = (length.as_secs_f64() * rate).round() as u32;
    let start = tokio::time::Instant::now() + Duration::from_millis(50);
    let (mut hd, mut hg) = (vec![], vec![]);
    for i in 0..n {
        let at = start + period * i;
        for (t, at, into) in [(gateway, at, &mut hg), (direct, at + period / 2, &mut hd)] {
            tokio::time::sleep_until(at).await;
            into.push(tokio::spawn(non_stream(client.clone(), t.clone())));
        }
    }
    let collect = |handles: Vec<tokio::task::JoinHandle<Result<Duration, String>>>| async move {
        let mut p = Phase {
            samples: vec![],
            errors: 0,
            first_error: None,
            elapsed: length,
        };
        for h in handles {
            match h.await.expect("request task") {
                Ok(d) => p.samples.push(d),
                Err(e) => {
                    p.errors += 1;
                    p.first_error.get_or_insert(e);
                }
            }
        }
        p
    };
    (collect(hd).await, collect(hg).await)
}

// ---------------------------------------------------------------------------------------------
// Figures.

/// Nearest-rank percentile of sorted samples.
fn pct(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "MET"
    } else {
        "MISSED"
    }
}

fn errors_line<T>(what: &str, p: &Phase<T>) {
    if p.errors > 0 {
        println!(
            "    !! {what}: {} failed requests, first: {}",
            p.errors,
            p.first_error.as_deref().unwrap_or("?")
        );
    }
}

fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

// ---------------------------------------------------------------------------------------------
// T5: the ledger writer alone.

struct LedgerRun {
    rate: f64,
    elapsed: Duration,
    errors: usize,
    first_error: Option<String>,
    debited_ok: bool,
}

fn entry(run: &str, i: usize, key_id: &str) -> UsageEntry {
    let now = now_ms();
    UsageEntry {
        request_id: format!("bench-{run}-{i}"),
        key_id: key_id.to_owned(),
        requested_model: "fast".into(),
        served_model: Some("m".into()),
        provider: Some("mock".into()),
        attempts: 1,
        prompt_tokens: 5,
        completion_tokens: TOKENS as u64,
        reasoning_tokens: 0,
        cached_tokens: 0,
        cache_write_tokens: 0,
        cache_saved: Nanos::ZERO,
        token_source: TokenSource::ProviderReported,
        cost: Nanos(105),
        end_reason: EndReason::Stop,
        ttft_ms: Some(1),
        duration_ms: 2,
        stream: true,
        started_at: now - 2,
        finished_at: now,
        hold: Nanos(105),
        over_hold: false,
        note: None,
        upstream_status: None,
        status: None,
        error_text: None,
        dropped: Vec::new(),
        tags: Vec::new(),
        request_type: None,
    }
}

/// `entries` settlements through `Ledger::settle(&entry, None)` from `tasks` tasks, spread over
/// `keys` keys; checks afterwards that every one was debited.
async fn ledger_run(
    url: &str,
    tasks: usize,
    entries: usize,
    keys: usize,
) -> anyhow::Result<LedgerRun> {
    let ledger = Ledger::connect(url).await?;
    let credits = Nanos(1_000_000_000_000_000);
    let mut key_ids = vec![];
    for n in 0..keys.max(1) {
        let (k, _) = auth::create_key(
            &ledger,
            &NewKey {
                name: format!("bench-{n}"),
                credits,
                ..NewKey::default()
            },
        )
        .await?;
        key_ids.push(k.id);
    }
    let key_ids = Arc::new(key_ids);
    let run = auth::new_id("", 10);
    // Warm the pool and the accounts.
    let warm = key_ids.len() * 4;
    for i in 0..warm {
        ledger
            .settle(&entry(&run, i, &key_ids[i % key_ids.len()]), None)
            .await?;
    }
    let next = Arc::new(AtomicUsize::new(warm));
    let end = warm + entries;
    let started = Instant::now();
    let mut handles = vec![];
    for _ in 0..tasks {
        let (ledger, next, key_ids, run) =
            (ledger.clone(), next.clone(), key_ids.clone(), run.clone());
        handles.push(tokio::spawn(async move {
            let (mut errors, mut first_error) = (0, None);
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= end {
                    break;
                }
                let e = entry(&run, i, &key_ids[i % key_ids.len()]);
                if let Err(err) = ledger.settle(&e, None).await {
                    errors += 1;
                    first_error.get_or_insert(err.to_string());
                }
            }
            (errors, first_error)
        }));
    }
    let (mut errors, mut first_error) = (0, None);
    for h in handles {
        let (e, f) = h.await?;
        errors += e;
        first_error = first_error.or(f);
    }
    let elapsed = started.elapsed();
    let mut spent = 0i64;
    for id in key_ids.iter() {
        spent += ledger.key(id).await?.map(|k| k.spent.0).unwrap_or(0);
    }
    let debited_ok = spent == (end - errors) as i64 * entry(&run, 0, "").cost.0;
    ledger.close().await;
    Ok(LedgerRun {
        rate: (entries - errors) as f64 / elapsed.as_secs_f64(),
        elapsed,
        errors,
        first_error,
        debited_ok,
    })
}

/// A fresh database on the PostgreSQL server at `server`: its URL and a way to drop it.
async fn postgres_db(server: &str) -> anyhow::Result<(String, String)> {
    use sqlx::Connection;
    sqlx::any::install_default_drivers();
    let name = format!("sy_bench_{}", auth::new_id("", 10).to_ascii_lowercase());
    let mut admin = sqlx::AnyConnection::connect(server).await?;
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut admin)
        .await?;
    admin.close().await.ok();
    let (base, query) = match server.split_once('?') {
        Some((b, q)) => (b, format!("?{q}")),
        None => (server, String::new()),
    };
    let root = &base[..base
        .rfind('/')
        .filter(|i| *i > "postgres://".len())
        .unwrap_or(base.len())];
    Ok((format!("{root}/{name}{query}"), name))
}

async fn drop_postgres_db(server: &str, name: &str) {
    use sqlx::Connection;
    if let Ok(mut admin) = sqlx::AnyConnection::connect(server).await {
        let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .execute(&mut admin)
            .await;
    }
}

fn remove_sqlite(path: &std::path::Path) {
    for suffix in ["", "-wal", "-shm"] {
        let mut p = path.as_os_str().to_owned();
        p.push(suffix);
        let _ = std::fs::remove_file(p);
    }
}

fn temp_path(what: &str, ext: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!(
        "switchyard-bench-{what}-{}-{}.{ext}",
        std::process::id(),
        auth::new_id("", 6)
    ))
}

fn print_ledger(backend: &str, r: &anyhow::Result<LedgerRun>, entries: usize, tasks: usize) {
    match r {
        Ok(r) => {
            println!(
                "T5 ledger writer, {backend:<10} {:>9.0} settlements/s ({entries} from {tasks} tasks in {:.2} s){}   target >= 20000/s: {}",
                r.rate,
                r.elapsed.as_secs_f64(),
                if r.debited_ok { "" } else { "  !! the keys' spend does not match the entries" },
                verdict(r.rate >= 20_000.0 && r.errors == 0 && r.debited_ok)
            );
            if r.errors > 0 {
                println!(
                    "    !! {} failed settlements, first: {}",
                    r.errors,
                    r.first_error.as_deref().unwrap_or("?")
                );
            }
        }
        Err(e) => println!("T5 ledger writer, {backend:<10} FAILED: {e:#}"),
    }
}

// ---------------------------------------------------------------------------------------------
// T6: admission hold + settlement on PostgreSQL, shared holds on and off, 1 or 4 instances.

/// One T6 configuration.
#[derive(Clone, Copy)]
struct HoldCase {
    instances: Instances,
    /// `Ledger` handles on the same database, each with its own pools and writer, as separate
    /// gateway processes would have.
    handles: usize,
    keys: usize,
}

/// `entries` admissions, each `Ledger::hold` then `Ledger::settle(&entry, Some(hold))`, from
/// `tasks` tasks spread over `case.handles` ledgers and `case.keys` keys; checks afterwards that
/// every one was debited and that no hold is left.
async fn hold_settle_run(
    url: &str,
    case: HoldCase,
    tasks: usize,
    entries: usize,
) -> anyhow::Result<LedgerRun> {
    let mut ledgers = vec![];
    for _ in 0..case.handles.max(1) {
        ledgers.push(Ledger::connect_with(url, None, case.instances).await?);
    }
    let credits = Nanos(1_000_000_000_000_000);
    let mut key_ids = vec![];
    for n in 0..case.keys.max(1) {
        let (k, _) = auth::create_key(
            &ledgers[0],
            &NewKey {
                name: format!("bench-{n}"),
                credits,
                ..NewKey::default()
            },
        )
        .await?;
        key_ids.push(k.id);
    }
    let key_ids = Arc::new(key_ids);
    let run = auth::new_id("", 10);
    let one = |ledger: Ledger, key_ids: Arc<Vec<String>>, run: String, i: usize| async move {
        let e = entry(&run, i, &key_ids[i % key_ids.len()]);
        let hold = ledger
            .hold(&e.key_id, &e.request_id, e.hold, 0, now_ms())
            .await
            .map_err(|h| anyhow::anyhow!("hold refused: {h:?}"))?;
        ledger.settle(&e, Some(hold)).await?;
        anyhow::Ok(())
    };
    // Warm the pools and the accounts of every handle.
    let warm = key_ids.len() * ledgers.len() * 2;
    for i in 0..warm {
        one(
            ledgers[i % ledgers.len()].clone(),
            key_ids.clone(),
            run.clone(),
            i,
        )
        .await?;
    }
    let next = Arc::new(AtomicUsize::new(warm));
    let end = warm + entries;
    let started = Instant::now();
    let mut handles = vec![];
    for t in 0..tasks {
        let (ledger, next, key_ids, run) = (
            ledgers[t % ledgers.len()].clone(),
            next.clone(),
            key_ids.clone(),
            run.clone(),
        );
        handles.push(tokio::spawn(async move {
            let (mut errors, mut first_error) = (0, None);
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= end {
                    break;
                }
                if let Err(err) = one(ledger.clone(), key_ids.clone(), run.clone(), i).await {
                    errors += 1;
                    first_error.get_or_insert(err.to_string());
                }
            }
            (errors, first_error)
        }));
    }
    let (mut errors, mut first_error) = (0, None);
    for h in handles {
        let (e, f) = h.await?;
        errors += e;
        first_error = first_error.or(f);
    }
    let elapsed = started.elapsed();
    let (mut spent, mut reserved) = (0i64, 0i64);
    for id in key_ids.iter() {
        let view = ledgers[0].account_view(id).await?;
        spent += view.key.spent.0;
        reserved += view.reserved.0;
    }
    let debited_ok = spent == (end - errors) as i64 * entry(&run, 0, "").cost.0 && reserved == 0;
    for l in &ledgers {
        l.close().await;
    }
    Ok(LedgerRun {
        rate: (entries - errors) as f64 / elapsed.as_secs_f64(),
        elapsed,
        errors,
        first_error,
        debited_ok,
    })
}

async fn t6(server: &str, tasks: usize, entries: usize, keys: usize) {
    let cases = [
        (
            "holds in memory (single), 1 instance ",
            Instances::Single,
            1,
            keys,
        ),
        (
            "shared holds,             1 instance ",
            Instances::Shared,
            1,
            keys,
        ),
        (
            "shared holds,             4 instances",
            Instances::Shared,
            4,
            keys,
        ),
        (
            "shared holds, ONE key,    1 instance ",
            Instances::Shared,
            1,
            1,
        ),
        (
            "shared holds, ONE key,    4 instances",
            Instances::Shared,
            4,
            1,
        ),
    ];
    for (what, instances, handles, keys) in cases {
        let case = HoldCase {
            instances,
            handles,
            keys,
        };
        let r = match postgres_db(server).await {
            Ok((url, name)) => {
                let r = hold_settle_run(&url, case, tasks, entries).await;
                drop_postgres_db(server, &name).await;
                r
            }
            Err(e) => Err(e),
        };
        match r {
            Ok(r) => {
                println!(
                    "T6 hold+settle, PostgreSQL, {what}, {keys:>2} keys: {:>7.0} admissions+settlements/s ({entries} from {tasks} tasks in {:.2} s){}   (load {})",
                    r.rate,
                    r.elapsed.as_secs_f64(),
                    if r.debited_ok { "" } else { "  !! spend or open holds do not match" },
                    load()
                );
                if r.errors > 0 {
                    println!(
                        "    !! {} failed, first: {}",
                        r.errors,
                        r.first_error.as_deref().unwrap_or("?")
                    );
                }
            }
            Err(e) => println!("T6 hold+settle, PostgreSQL, {what}: FAILED: {e:#}"),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Memory of the real binary.

fn rss_kb(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

fn mb(kb: Option<u64>) -> String {
    kb.map(|k| format!("{:.1} MB", k as f64 / 1024.0))
        .unwrap_or_else(|| "?".into())
}

/// Starts `switchyard serve` (the release binary built with this bench) on `config_text`, runs
/// T4's load against it and prints its resident memory: idle, peak under load and after.
async fn memory(config_text: &str, args: &Args, t4_length: Duration) -> anyhow::Result<()> {
    let config_path = temp_path("config", "toml");
    let db_path = temp_path("serve", "db");
    std::fs::write(&config_path, config_text)?;
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .arg("serve")
        .arg("--config")
        .arg(&config_path)
        .arg("--database")
        .arg(format!("sqlite://{}", db_path.display()))
        .args(["--listen", "127.0.0.1:0"])
        .env("RUST_LOG", "warn")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    let pid = child.id().ok_or_else(|| anyhow::anyhow!("no pid"))?;
    let mut lines = tokio::io::BufReader::new(child.stdout.take().expect("stdout")).lines();
    let (mut key, mut addr, mut key_next) = (None, None, false);
    let read = async {
        while let Some(line) = lines.next_line().await? {
            if key_next {
                key = Some(line.trim().to_owned());
                key_next = false;
            } else if line.contains("It is shown only this once") {
                key_next = true;
            } else if let Some(a) = line.strip_prefix("Switchyard listening on ") {
                addr = Some(a.trim().to_owned());
                break;
            }
        }
        anyhow::Ok(())
    };
    tokio::time::timeout(Duration::from_secs(30), read).await??;
    // Keep draining stdout so the child never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    let (key, base) = match (key, addr) {
        (Some(k), Some(a)) => (k, a),
        _ => anyhow::bail!("the binary did not print its first key and address"),
    };
    let idle = rss_kb(pid, "VmRSS");
    let gw = Target::new(format!("{base}/chat/completions"), key, "fast", "slow");
    let client = client(args.streams + 16);
    non_stream(client.clone(), gw.clone())
        .await
        .map_err(|e| anyhow::anyhow!(e))?;
    let after_one = rss_kb(pid, "VmRSS");
    let peak = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let sampler = {
        let peak = peak.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(100));
            loop {
                tick.tick().await;
                if let Some(kb) = rss_kb(pid, "VmRSS") {
                    peak.fetch_max(kb, Ordering::Relaxed);
                }
            }
        })
    };
    let phase = closed_loop(args.streams, t4_length, {
        let (client, gw) = (client.clone(), gw.clone());
        move || stream(client.clone(), gw.clone(), true, false)
    })
    .await;
    sampler.abort();
    let after = rss_kb(pid, "VmRSS");
    let hwm = rss_kb(pid, "VmHWM");
    println!(
        "memory ({} binary `switchyard serve`, its own process): idle {} | after one request {} | {} streams x {TOKENS} tokens x 20 ms open: max sampled {} | right after {} | VmHWM {}",
        if cfg!(debug_assertions) { "debug" } else { "release" },
        mb(idle),
        mb(after_one),
        args.streams,
        mb(Some(peak.load(Ordering::Relaxed))),
        mb(after),
        mb(hwm)
    );
    errors_line("memory load", &phase);
    let _ = child.kill().await;
    let _ = std::fs::remove_file(&config_path);
    remove_sqlite(&db_path);
    Ok(())
}

// ---------------------------------------------------------------------------------------------

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(run(args))
}

async fn run(args: Args) -> anyhow::Result<()> {
    let secs = args.pick(args.secs, 5.0, 1.0);
    let t2_secs = args.pick(args.t2_secs, 20.0, 3.0);
    let t4_secs = args.pick(args.t4_secs, 3.0, 1.0);
    let entries = args
        .entries
        .unwrap_or(if args.quick { 2_000 } else { 20_000 });
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "settlement_path{}: {cores} cores, load average {} at start",
        if args.quick { " (quick)" } else { "" },
        load()
    );
    println!(
        "  the load client, the mock upstream and the gateway share this process and its cores; the same \
         reqwest client code (HTTP/1.1, one pool) drives direct and gateway"
    );
    println!(
        "  mock behaviour via model suffixes: fast = {FAST}, slow = {SLOW}; gateway: billing on, SQLite ledger in a temp file"
    );

    let mock = MockUpstream::start().await?;
    mock.set_recording(false);
    let config_text = format!(
        "demo_credits = \"1000000000\"\n\
         [providers.mock]\nkind = \"openai\"\nbase_url = \"{base}\"\n\
         [models.fast]\nroutes = [\"mock/{FAST}\"]\ninput_price = \"1\"\noutput_price = \"2\"\n\
         [models.slow]\nroutes = [\"mock/{SLOW}\"]\ninput_price = \"1\"\noutput_price = \"2\"\n",
        base = mock.base_url()
    );
    let config = Config::parse(&config_text, "settlement_path.toml")?;
    let db_path = temp_path("gateway", "db");
    let (gw, first, problems) = Gateway::build(
        Some(config),
        Some(format!("sqlite://{}", db_path.display())),
    )
    .await?;
    for p in problems {
        println!("  config problem: {p}");
    }
    let key = first.ok_or_else(|| anyhow::anyhow!("no first key"))?.key;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(gw.serve(listener, async {
        let _ = stopped.await;
    }));

    let direct = Target::new(
        format!("{}/chat/completions", mock.base_url()),
        "x".into(),
        FAST,
        SLOW,
    );
    let gateway = Target::new(
        format!("http://{addr}/v1/chat/completions"),
        key,
        "fast",
        "slow",
    );
    let client = client(args.streams.max(args.concurrency) + 16);

    // Warm-up: connections, the tokenizer, the key's account, both paths.
    for t in [&direct, &gateway] {
        let t = t.clone();
        let c = client.clone();
        let w = closed_loop(args.concurrency, Duration::from_millis(500), move || {
            let (c, t) = (c.clone(), t.clone());
            async move {
                non_stream(c.clone(), t.clone()).await?;
                stream(c, t, false, false).await.map(|_| ())
            }
        })
        .await;
        if w.samples.is_empty() {
            anyhow::bail!(
                "warm-up failed: {}",
                w.first_error
                    .unwrap_or_else(|| "no request finished".into())
            );
        }
    }

    if args.runs("t1") {
        let c = client.clone();
        let (mut d, mut g) = both_closed(args.concurrency, secs, &direct, &gateway, move |t| {
            non_stream(c.clone(), t)
        })
        .await;
        let ratio = g.rate() / d.rate();
        d.samples.sort();
        g.samples.sort();
        println!(
            "T1 non-streamed, {} concurrent: direct {:>8.0} req/s | gateway {:>8.0} req/s | ratio {ratio:.3}x   target >= 0.5x: {}   (latency p50 direct {:.3} ms, gateway {:.3} ms; load {})",
            args.concurrency,
            d.rate(),
            g.rate(),
            verdict(ratio >= 0.5),
            ms(pct(&d.samples, 0.5)),
            ms(pct(&g.samples, 0.5)),
            load()
        );
        errors_line("direct", &d);
        errors_line("gateway", &g);
    }

    if args.runs("t2") {
        let (mut d, mut g) = open_loop(&client, args.t2_rate, t2_secs, &direct, &gateway).await;
        d.samples.sort();
        g.samples.sort();
        let (d50, d99, g50, g99) = (
            pct(&d.samples, 0.5),
            pct(&d.samples, 0.99),
            pct(&g.samples, 0.5),
            pct(&g.samples, 0.99),
        );
        let (a50, a99) = (ms(g50) - ms(d50), ms(g99) - ms(d99));
        println!(
            "T2 added latency at {:.0} req/s open loop ({} samples each): p50 {a50:+.3} ms (direct {:.3}, gateway {:.3}), p99 {a99:+.3} ms (direct {:.3}, gateway {:.3}) | ratio p50 {:.2}x p99 {:.2}x   target p50 <= 0.1 ms: {}, p99 <= 0.5 ms: {}",
            args.t2_rate,
            g.samples.len(),
            ms(d50),
            ms(g50),
            ms(d99),
            ms(g99),
            ms(g50) / ms(d50),
            ms(g99) / ms(d99),
            verdict(a50 <= 0.1),
            verdict(a99 <= 0.5)
        );
        errors_line("direct", &d);
        errors_line("gateway", &g);
    }

    if args.runs("t3") {
        let c = client.clone();
        let (d, g) = both_closed(args.concurrency, secs, &direct, &gateway, move |t| {
            stream(c.clone(), t, false, false)
        })
        .await;
        let ratio = g.rate() / d.rate();
        let tail = |p: &Phase<StreamTimes>| {
            let mut v: Vec<Duration> = p.samples.iter().map(|s| s.last_content_to_done).collect();
            v.sort();
            (pct(&v, 0.5), pct(&v, 0.99))
        };
        let ((d50, d99), (g50, g99)) = (tail(&d), tail(&g));
        println!(
            "T3 streamed {TOKENS} tokens, {} concurrent: direct {:>7.0} streams/s | gateway {:>7.0} streams/s | ratio {ratio:.3}x   target >= 0.6x: {}   (last content -> [DONE]: p50 direct {:.3} ms, gateway {:.3} ms; p99 direct {:.3} ms, gateway {:.3} ms; load {})",
            args.concurrency,
            d.rate(),
            g.rate(),
            verdict(ratio >= 0.6),
            ms(d50),
            ms(g50),
            ms(d99),
            ms(g99),
            load()
        );
        errors_line("direct", &d);
        errors_line("gateway", &g);
    }

    if args.runs("t4") {
        let mut results = vec![];
        for t in [&direct, &gateway] {
            let c = client.clone();
            let t = t.clone();
            let one = move || stream(c.clone(), t.clone(), true, true);
            // One round to open the connections (the gateway's to the mock as well).
            closed_loop(args.streams, Duration::ZERO, one.clone()).await;
            results.push(closed_loop(args.streams, t4_secs, one).await);
        }
        let g = results.pop().expect("gateway");
        let d = results.pop().expect("direct");
        let figures = |p: &Phase<StreamTimes>| {
            let mut ttft: Vec<Duration> = p.samples.iter().map(|s| s.ttft).collect();
            let mut gaps: Vec<Duration> = p
                .samples
                .iter()
                .flat_map(|s| s.gaps.iter().copied())
                .collect();
            ttft.sort();
            gaps.sort();
            (
                pct(&ttft, 0.5),
                pct(&ttft, 0.99),
                pct(&gaps, 0.5),
                pct(&gaps, 0.99),
            )
        };
        let ((dt50, dt99, dg50, dg99), (gt50, gt99, gg50, gg99)) = (figures(&d), figures(&g));
        println!(
            "T4 {} concurrent streams x {TOKENS} tokens x 20 ms ({} and {} streams): TTFT p99 direct {:.1} ms | gateway {:.1} ms | added {:+.1} ms, ratio {:.2}x   target within 5 ms: {}   (p50 {:.1} / {:.1} ms)",
            args.streams,
            d.samples.len(),
            g.samples.len(),
            ms(dt99),
            ms(gt99),
            ms(gt99) - ms(dt99),
            ms(gt99) / ms(dt99),
            verdict(ms(gt99) - ms(dt99) <= 5.0),
            ms(dt50),
            ms(gt50)
        );
        println!(
            "   gap between tokens: p50 direct {:.2} ms, gateway {:.2} ms | p99 direct {:.2} ms, gateway {:.2} ms, ratio {:.2}x   (load {})",
            ms(dg50),
            ms(gg50),
            ms(dg99),
            ms(gg99),
            ms(gg99) / ms(dg99),
            load()
        );
        errors_line("direct", &d);
        errors_line("gateway", &g);
    }

    let _ = stop.send(());
    let _ = server.await;
    remove_sqlite(&db_path);

    if args.runs("t5") {
        let path = temp_path("ledger", "db");
        let r = ledger_run(
            &format!("sqlite://{}", path.display()),
            args.tasks,
            entries,
            args.keys,
        )
        .await;
        remove_sqlite(&path);
        print_ledger("SQLite", &r, entries, args.tasks);
        match args.postgres.as_deref().filter(|u| !u.is_empty()) {
            Some(server) => {
                let r = match postgres_db(server).await {
                    Ok((url, name)) => {
                        let r = ledger_run(&url, args.tasks, entries, args.keys).await;
                        drop_postgres_db(server, &name).await;
                        r
                    }
                    Err(e) => Err(e),
                };
                print_ledger("PostgreSQL", &r, entries, args.tasks);
            }
            None => println!(
                "T5 ledger writer, PostgreSQL: not run (set SWITCHYARD_TEST_POSTGRES or pass --postgres URL)"
            ),
        }
    }

    if args.runs("t6") {
        match args.postgres.as_deref().filter(|u| !u.is_empty()) {
            Some(server) => t6(server, args.tasks, entries, args.keys).await,
            None => println!(
                "T6 hold+settle: not run (set SWITCHYARD_TEST_POSTGRES or pass --postgres URL)"
            ),
        }
    }

    if args.runs("mem") && !args.no_memory {
        if let Err(e) = memory(&config_text, &args, t4_secs).await {
            println!("memory: FAILED: {e:#}");
        }
    }
    println!("load average {} at the end", load());
    Ok(())
}
