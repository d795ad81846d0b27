//! The load generator behind `switchyard bench` (any OpenAI-compatible endpoint) and the hidden
//! `switchyard bench-target` it is measured against, kept out of the product library: only the
//! `switchyard` binary's `main.rs` calls `bench` and `target` with the parsed `BenchArgs` and
//! `TargetArgs`. The run itself is here: one OS thread per core, each with its own single-threaded
//! tokio runtime driving its share of the connections (`client.rs`) and its own `Stats`, merged
//! when every thread is done; meanwhile this thread draws the progress line and reads the
//! process's CPU time at the start and end of the measured window. The crate's other binary,
//! `bare-proxy` (`src/bin/bare-proxy.rs`), is the bare forwarding proxy `bench/run` measures the
//! gateway against.

mod client;
mod cpu_time;
pub mod nofile;
mod progress;
mod report;
mod request;
mod schedule;
mod sse_scan;
mod stats;
mod target;

use std::cell::RefCell;
use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use progress::Counters;
use request::{Plan, Spec};
use schedule::Schedule;
use stats::Stats;

#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// Base URL of an OpenAI-compatible API, e.g. http://127.0.0.1:8080/v1 (requests go to
    /// URL/chat/completions).
    pub url: String,
    /// API key, sent as `Authorization: Bearer KEY`.
    #[arg(long, env = "SWITCHYARD_API_KEY", hide_env_values = true)]
    pub key: Option<String>,
    /// Model to ask for.
    #[arg(long, default_value = "demo-chat")]
    pub model: String,
    /// Connections, each with one request at a time.
    #[arg(short = 'c', long, default_value_t = 32)]
    pub concurrency: usize,
    /// Stop after this many measured requests.
    #[arg(short = 'n', long, conflicts_with = "duration")]
    pub requests: Option<u64>,
    /// Measured duration in seconds (default 10 without --requests).
    #[arg(short = 'd', long)]
    pub duration: Option<f64>,
    /// Run this many seconds first and discard the results.
    #[arg(long, default_value_t = 0.0)]
    pub warmup: f64,
    /// Open loop: this many requests per second, evenly spread; latency counts from each request's
    /// scheduled start. Without it, closed loop.
    #[arg(long)]
    pub rate: Option<f64>,
    /// Ask for streams ("stream": true) and measure time to first token and gaps.
    #[arg(long)]
    pub stream: bool,
    /// Size of the user message in bytes.
    #[arg(long, default_value_t = 32)]
    pub prompt_bytes: usize,
    /// max_tokens in the body.
    #[arg(long)]
    pub max_tokens: Option<u64>,
    /// Streaming: close the connection after this many content events (a client cancel).
    #[arg(long)]
    pub abort_after: Option<u64>,
    /// An extra header 'Name: value' (repeatable).
    #[arg(long = "header")]
    pub headers: Vec<String>,
    /// Send this JSON body as-is (--model, --prompt-bytes and --max-tokens are then ignored).
    #[arg(long)]
    pub body_file: Option<PathBuf>,
    /// Print one JSON report on stdout and nothing else there.
    #[arg(long)]
    pub json: bool,
    /// No progress line.
    #[arg(long, conflicts_with = "progress")]
    pub no_progress: bool,
    /// Draw the progress line on stderr even when it is not a terminal.
    #[arg(long)]
    pub progress: bool,
    /// Seconds one request may take, its whole answer included.
    #[arg(long, default_value_t = 60.0)]
    pub timeout: f64,
    /// Worker threads (default: the number of CPUs, at most one per connection).
    #[arg(long)]
    pub threads: Option<usize>,
    /// The server's process id: the report adds the CPU it used in the measured window, per
    /// request and per streamed event (Linux, from /proc/PID/stat).
    #[arg(long)]
    pub server_pid: Option<u32>,
}

#[derive(Debug, clap::Args)]
pub struct TargetArgs {
    /// Address to listen on (port 0: any free port; the bound one is printed).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: SocketAddr,
    /// Answer requests whose body says "stream":true with this many content chunks.
    #[arg(long)]
    pub stream_chunks: Option<u64>,
    /// Milliseconds between content chunks.
    #[arg(long, default_value_t = 0)]
    pub gap_ms: u64,
    /// Runtime worker threads (default: the number of CPUs).
    #[arg(long)]
    pub threads: Option<usize>,
}

fn seconds(flag: &str, s: f64) -> anyhow::Result<Duration> {
    Duration::try_from_secs_f64(s).with_context(|| format!("{flag} {s}: not a number of seconds"))
}

fn cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Runs `switchyard bench` to completion and prints its report. Builds its own runtimes, so it
/// must not be called from inside one.
pub fn bench(args: BenchArgs) -> anyhow::Result<()> {
    if args.concurrency == 0 {
        bail!("--concurrency must be at least 1");
    }
    if args.rate.is_some_and(|r| !(r > 0.0 && r.is_finite())) {
        bail!("--rate must be a positive number of requests per second");
    }
    if args.abort_after == Some(0) {
        bail!("--abort-after must be at least 1");
    }
    let warmup = seconds("--warmup", args.warmup)?;
    let timeout = seconds("--timeout", args.timeout)?;
    let duration = match (args.requests, args.duration) {
        (Some(_), _) => None,
        (None, d) => Some(seconds("--duration", d.unwrap_or(10.0))?),
    };
    let plan = Arc::new(Plan::build(&Spec {
        url: &args.url,
        key: args.key.as_deref(),
        model: &args.model,
        stream: args.stream,
        prompt_bytes: args.prompt_bytes,
        max_tokens: args.max_tokens,
        headers: &args.headers,
        body_file: args.body_file.as_deref(),
    })?);
    crate::nofile::raise_nofile_limit();
    // Fail clearly before starting if nothing listens there.
    std::net::TcpStream::connect_timeout(&plan.addr, Duration::from_secs(5))
        .with_context(|| format!("cannot connect to {} ({})", plan.addr, plan.url))?;

    let threads = args.threads.unwrap_or_else(cpus).clamp(1, args.concurrency);
    let start = Instant::now();
    let schedule = Arc::new(Schedule::new(
        start,
        warmup,
        args.requests,
        duration,
        args.rate,
    ));
    let show_progress = !args.no_progress && (args.progress || std::io::stderr().is_terminal());

    let server_cpu = |pid: Option<u32>| pid.and_then(cpu_time::pid_cpu);
    let mut cpu_at_start = warmup.is_zero().then(cpu_time::process_cpu);
    let mut server_at_start = warmup
        .is_zero()
        .then(|| server_cpu(args.server_pid))
        .flatten();
    let mut workers = Vec::with_capacity(threads);
    let mut counters = Vec::with_capacity(threads);
    for t in 0..threads {
        let conns = args.concurrency / threads + usize::from(t < args.concurrency % threads);
        let c = Arc::new(Counters::default());
        counters.push(c.clone());
        let (plan, schedule) = (plan.clone(), schedule.clone());
        let abort_after = args.abort_after;
        let worker = std::thread::Builder::new()
            .name(format!("bench-{t}"))
            .spawn(move || worker(conns, plan, schedule, c, timeout, abort_after))
            .context("cannot start a worker thread")?;
        workers.push(worker);
    }

    let mut line = progress::Line::default();
    while !workers.iter().all(|w| w.is_finished()) {
        let now = Instant::now();
        if cpu_at_start.is_none() && now >= schedule.measure_start() {
            cpu_at_start = Some(cpu_time::process_cpu());
            server_at_start = server_cpu(args.server_pid);
        }
        if show_progress {
            line.draw(
                &counters,
                (now - start).as_secs_f64(),
                now < schedule.measure_start(),
            );
        }
        let mut wake = now + Duration::from_millis(100);
        if cpu_at_start.is_none() {
            wake = wake.min(schedule.measure_start());
        }
        std::thread::sleep(
            wake.saturating_duration_since(Instant::now())
                .min(Duration::from_millis(100)),
        );
    }
    let cpu_at_end = cpu_time::process_cpu();
    let server_at_end = server_cpu(args.server_pid);
    line.finish();
    let mut total = Stats::default();
    for w in workers {
        let stats = w
            .join()
            .map_err(|_| anyhow::anyhow!("a worker thread failed"))??;
        total.merge(&stats);
    }
    let measure_start = schedule.measure_start();
    let duration_s = total
        .last_done
        .map_or(Duration::ZERO, |t| {
            t.saturating_duration_since(measure_start)
        })
        .as_secs_f64();
    let cpu = cpu_at_end.saturating_sub(cpu_at_start.unwrap_or(cpu_at_end));
    let report = report::json(
        &report::Run {
            url: &plan.url,
            stream: plan.stream,
            concurrency: args.concurrency,
            rate: args.rate,
            duration_s,
            client_cpu_s: cpu.as_secs_f64(),
            server_cpu_s: server_at_start
                .zip(server_at_end)
                .map(|(a, b)| b.saturating_sub(a).as_secs_f64()),
        },
        &total,
    );
    if args.json {
        println!("{report}");
    } else {
        print!("{}", report::table(&report));
    }
    Ok(())
}

/// One worker thread: its connections on a single-threaded runtime, its own stats.
fn worker(
    conns: usize,
    plan: Arc<Plan>,
    schedule: Arc<Schedule>,
    counters: Arc<Counters>,
    timeout: Duration,
    abort_after: Option<u64>,
) -> anyhow::Result<Stats> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start a runtime")?;
    let local = tokio::task::LocalSet::new();
    let stats = Rc::new(RefCell::new(Stats::default()));
    let shared = Rc::new(client::Shared {
        plan,
        schedule,
        stats: stats.clone(),
        counters,
        timeout,
        abort_after,
    });
    local.block_on(&rt, async move {
        let tasks: Vec<_> = (0..conns)
            .map(|_| tokio::task::spawn_local(client::run(shared.clone())))
            .collect();
        for t in tasks {
            // A connection task does not fail; a panic in one would be a bug, reported as such.
            t.await.context("a connection task failed")?;
        }
        anyhow::Ok(())
    })?;
    let stats = stats.borrow().clone();
    Ok(stats)
}

/// Runs `switchyard bench-target` until the process is stopped.
pub fn target(args: TargetArgs) -> anyhow::Result<()> {
    crate::nofile::raise_nofile_limit();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads.unwrap_or_else(cpus).max(1))
        .enable_all()
        .build()
        .context("cannot start a runtime")?;
    let shape = args.stream_chunks.map(|chunks| target::StreamShape {
        chunks,
        gap: Duration::from_millis(args.gap_ms),
    });
    rt.block_on(target::serve(args.listen, shape))
}
