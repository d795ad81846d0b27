//! Tracing and metrics. Tracing: human-readable logs on stderr, filtered by `RUST_LOG` (default
//! `info`). Metrics: one Prometheus recorder per process (installed by the first gateway, shared
//! by every later one), rendered as text by `GET /metrics`. Neither logs nor metric labels ever
//! carry keys, key ids, prompts or completions; metric labels are routes, status classes, and
//! model and provider names from the configuration, so their number is bounded.

use std::sync::OnceLock;
use std::time::Duration;

use metrics::{counter, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::EnvFilter;

/// Installs the global subscriber once; later calls do nothing (and return `None`). Lines are
/// written to stderr by a thread of their own (tracing-appender), so a request's access-log line
/// costs its runtime thread a queue push, not a write to the terminal or pipe; if that thread
/// falls 128,000 lines behind, lines are dropped rather than requests slowed. Keep the guard
/// until the process ends: dropping it flushes what is queued.
pub fn init() -> Option<tracing_appender::non_blocking::WorkerGuard> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let (writer, guard) = tracing_appender::non_blocking(std::io::stderr());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        // Colour codes only for a terminal, not into a log file or a collector.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(writer)
        .try_init()
        .ok()
        .map(|_| guard)
}

/// Histogram buckets (seconds) for time to first token and request duration.
const SECONDS_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
];

/// How often histogram samples are folded into their buckets when nobody scrapes.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

static METRICS: OnceLock<PrometheusHandle> = OnceLock::new();

/// The process's metrics handle, installing the recorder on first use. Later calls (another
/// gateway in the same process) return the same handle. If some other recorder was installed
/// first, this one still renders, just without what that recorder took.
pub fn metrics() -> &'static PrometheusHandle {
    METRICS.get_or_init(|| {
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS_BUCKETS)
            .unwrap_or_else(|_| PrometheusBuilder::new());
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!("another metrics recorder is installed; /metrics will be incomplete");
        }
        let upkeep = handle.clone();
        let spawned = std::thread::Builder::new()
            .name("metrics-upkeep".into())
            .spawn(move || loop {
                std::thread::sleep(UPKEEP_EVERY);
                upkeep.run_upkeep();
            });
        if spawned.is_err() {
            tracing::warn!("cannot start the metrics upkeep thread; histograms fold in at scrapes");
        }
        handle
    })
}

/// The Prometheus text exposition of every metric.
pub fn render_metrics() -> String {
    metrics().render()
}

/// The public API a request path belongs to, for the request counter (`None`: not counted).
pub fn api_route(path: &str) -> Option<&'static str> {
    if path.starts_with("/v1beta/models/") && path.contains(':') {
        Some("gemini")
    } else if path.ends_with("/chat/completions") {
        Some("chat")
    } else if path.ends_with("/responses") || path.contains("/responses/") {
        Some("responses")
    } else if path.ends_with("/completions") {
        Some("completions")
    } else if path.ends_with("/embeddings") {
        Some("embeddings")
    } else {
        None
    }
}

/// One answered request at the HTTP edge.
pub fn record_request(route: &'static str, status: u16, stream: bool) {
    type Series = std::collections::HashMap<(&'static str, &'static str, bool), metrics::Counter>;
    static SERIES: OnceLock<std::sync::Mutex<Series>> = OnceLock::new();
    let class = match status {
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    };
    let mut series = SERIES
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    series
        .entry((route, class, stream))
        .or_insert_with(|| {
            metrics();
            let stream = if stream { "true" } else { "false" };
            counter!("switchyard_requests_total", "route" => route, "status" => class, "stream" => stream)
        })
        .increment(1);
}

/// How one upstream attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptOutcome {
    Ok,
    /// A failure another attempt may get past (timeout, 5xx, 429, broken stream).
    Retryable,
    /// The upstream refused the request itself.
    Rejected,
}

impl AttemptOutcome {
    fn as_str(self) -> &'static str {
        match self {
            AttemptOutcome::Ok => "ok",
            AttemptOutcome::Retryable => "retryable",
            AttemptOutcome::Rejected => "rejected",
        }
    }
}

/// One upstream attempt on a configured provider.
pub fn record_attempt(provider: &str, outcome: AttemptOutcome) {
    counter!(
        "switchyard_upstream_attempts_total",
        "provider" => provider.to_owned(),
        "outcome" => outcome.as_str()
    )
    .increment(1);
}

/// What a settled request is counted as; recorded once per request, at settlement.
pub struct SettledRequest<'a> {
    /// The configured model the client asked for.
    pub model: &'a str,
    /// The configured provider that served it, if any did.
    pub provider: Option<&'a str>,
    pub end_reason: &'static str,
    pub prompt_tokens: u64,
    /// Of the prompt, the tokens read from the provider's cache and those written to it.
    pub cached_tokens: u64,
    pub cache_write_tokens: u64,
    pub completion_tokens: u64,
    /// Nano-USD; negative amounts are not counted.
    pub cost_nanos: i64,
    pub ttft: Option<Duration>,
    pub duration: Duration,
    /// The upstream reported more than the admission hold covered.
    pub over_hold: bool,
}

/// The per-request series of one (model, provider) pair, resolved once: a settled request costs
/// a read lock and a few atomic adds, not ten registry lookups with their label strings
/// (measured, issue 25: label `String`s and `Key`s were allocated per request).
struct RouteSeries {
    /// `switchyard_settled_requests_total` by end reason, registered as each is first seen.
    settled: std::sync::Mutex<Vec<(&'static str, metrics::Counter)>>,
    prompt: metrics::Counter,
    cached: metrics::Counter,
    cache_write: metrics::Counter,
    completion: metrics::Counter,
    cost: metrics::Counter,
    duration: metrics::Histogram,
    /// Registered only once a request has one (an embedding never does).
    ttft: OnceLock<metrics::Histogram>,
    over_hold: OnceLock<metrics::Counter>,
    model: String,
    provider: String,
}

impl RouteSeries {
    fn new(model: &str, provider: &str) -> RouteSeries {
        metrics();
        let (m, p) = (model.to_owned(), provider.to_owned());
        RouteSeries {
            settled: Default::default(),
            prompt: counter!("switchyard_prompt_tokens_total", "model" => m.clone(), "provider" => p.clone()),
            // Per route (model and provider, a pooled key's member included): the cache hit share
            // is cached / prompt.
            cached: counter!("switchyard_cached_prompt_tokens_total", "model" => m.clone(), "provider" => p.clone()),
            cache_write: counter!("switchyard_cache_write_tokens_total", "model" => m.clone(), "provider" => p.clone()),
            completion: counter!("switchyard_completion_tokens_total", "model" => m.clone(), "provider" => p.clone()),
            cost: counter!("switchyard_cost_nanousd_total", "model" => m.clone(), "provider" => p.clone()),
            duration: histogram!("switchyard_request_duration_seconds", "model" => m.clone()),
            ttft: OnceLock::new(),
            over_hold: OnceLock::new(),
            model: m,
            provider: p,
        }
    }

    fn settled(&self, end_reason: &'static str) -> metrics::Counter {
        let mut list = self.settled.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((_, c)) = list.iter().find(|(r, _)| *r == end_reason) {
            return c.clone();
        }
        let c = counter!(
            "switchyard_settled_requests_total",
            "model" => self.model.clone(),
            "provider" => self.provider.clone(),
            "end_reason" => end_reason
        );
        list.push((end_reason, c.clone()));
        c
    }
}

/// Every (model, provider) pair's series, by model then provider.
type RouteSeriesMap = std::collections::HashMap<
    String,
    std::collections::HashMap<String, std::sync::Arc<RouteSeries>>,
>;

fn route_series(model: &str, provider: &str) -> std::sync::Arc<RouteSeries> {
    static SERIES: OnceLock<std::sync::RwLock<RouteSeriesMap>> = OnceLock::new();
    let lock = SERIES.get_or_init(Default::default);
    if let Some(s) = lock
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .get(model)
        .and_then(|by_provider| by_provider.get(provider))
    {
        return s.clone();
    }
    let mut map = lock.write().unwrap_or_else(|p| p.into_inner());
    map.entry(model.to_owned())
        .or_default()
        .entry(provider.to_owned())
        .or_insert_with(|| std::sync::Arc::new(RouteSeries::new(model, provider)))
        .clone()
}

/// Counts one settled request, its tokens and cost, and observes its latencies.
pub fn record_settled(s: &SettledRequest<'_>) {
    let series = route_series(s.model, s.provider.unwrap_or("none"));
    series.settled(s.end_reason).increment(1);
    series.prompt.increment(s.prompt_tokens);
    series.cached.increment(s.cached_tokens);
    series.cache_write.increment(s.cache_write_tokens);
    series.completion.increment(s.completion_tokens);
    series
        .cost
        .increment(u64::try_from(s.cost_nanos).unwrap_or(0));
    if let Some(ttft) = s.ttft {
        series
            .ttft
            .get_or_init(|| {
                histogram!("switchyard_time_to_first_token_seconds", "model" => series.model.clone())
            })
            .record(ttft.as_secs_f64());
    }
    if s.over_hold {
        series
            .over_hold
            .get_or_init(|| {
                counter!("switchyard_over_hold_total", "model" => series.model.clone(), "provider" => series.provider.clone())
            })
            .increment(1);
    }
    series.duration.record(s.duration.as_secs_f64());
}

/// Prompt and cached prompt tokens per route since the process started, for the Providers page.
static ROUTE_CACHE: std::sync::Mutex<Option<std::collections::HashMap<String, (u64, u64)>>> =
    std::sync::Mutex::new(None);

/// Adds one settled request's prompt and cached tokens to its route's tally.
pub fn record_route_cache(route: &str, prompt_tokens: u64, cached_tokens: u64) {
    if prompt_tokens == 0 {
        return;
    }
    let mut tally = ROUTE_CACHE.lock().unwrap_or_else(|p| p.into_inner());
    let tally = tally.get_or_insert_with(Default::default);
    // The route's name is copied once, the first time it settles.
    if !tally.contains_key(route) {
        tally.insert(route.to_owned(), (0, 0));
    }
    if let Some((p, c)) = tally.get_mut(route) {
        *p += prompt_tokens;
        *c += cached_tokens.min(prompt_tokens);
    }
}

/// A route's prompt and cached prompt tokens since the process started.
pub fn route_cache(route: &str) -> (u64, u64) {
    let tally = ROUTE_CACHE.lock().unwrap_or_else(|p| p.into_inner());
    tally
        .as_ref()
        .and_then(|t| t.get(route).copied())
        .unwrap_or_default()
}

/// Counts one journal record skipped at recovery: `torn` (cut off the end) or `corrupt`.
pub fn record_journal_skipped(kind: &'static str) {
    counter!("switchyard_journal_records_skipped_total", "kind" => kind).increment(1);
}

/// Counts a failed admin authentication, or (`locked`) an address locked out after too many.
pub fn record_admin_auth_failure(locked: bool) {
    let what = if locked { "locked_out" } else { "failed" };
    counter!("switchyard_admin_auth_failures_total", "outcome" => what).increment(1);
}

/// Counts one open client stream in `switchyard_open_streams` while it lives.
#[derive(Debug)]
pub struct OpenStream(());

impl OpenStream {
    pub fn start() -> OpenStream {
        gauge!("switchyard_open_streams").increment(1.0);
        OpenStream(())
    }
}

impl Drop for OpenStream {
    fn drop(&mut self) {
        gauge!("switchyard_open_streams").decrement(1.0);
    }
}

/// A client connection refused at accept (`max_connections` or `max_connections_per_ip`).
pub fn record_connection_refused(reason: &'static str) {
    counter!("switchyard_connections_refused_total", "reason" => reason).increment(1);
}

/// A client connection closed by one of its clocks (`header_timeout`, `idle_timeout`,
/// `slow_reader`).
pub fn record_connection_closed(reason: &'static str) {
    counter!("switchyard_connections_closed_total", "reason" => reason).increment(1);
}

/// Counts one open client connection in `switchyard_open_connections` while it lives.
#[derive(Debug)]
pub struct OpenConnection(());

impl OpenConnection {
    pub fn start() -> OpenConnection {
        gauge!("switchyard_open_connections").increment(1.0);
        OpenConnection(())
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        gauge!("switchyard_open_connections").decrement(1.0);
    }
}

/// The key change feed (PostgreSQL) started listening (`true`) or lost its connection:
/// `switchyard_change_feed_connected` is 1 while it listens, and every lost connection counts in
/// `switchyard_change_feed_disconnects_total` (changes then arrive by the periodic refresh).
pub fn record_change_feed(connected: bool) {
    gauge!("switchyard_change_feed_connected").set(if connected { 1.0 } else { 0.0 });
    if !connected {
        counter!("switchyard_change_feed_disconnects_total").increment(1);
    }
}

/// A request admitted without its rate limits because Redis could not answer
/// (`redis_failure = "open"`).
pub fn record_limits_fail_open() {
    counter!("switchyard_limits_fail_open_total").increment(1);
}

/// One reload of the config (`POST /admin/reload`, SIGHUP): applied or refused, and the config
/// generation now serving (`switchyard_config_generation`, 1 at startup).
pub fn record_reload(applied: bool, generation: u64) {
    let result = if applied { "ok" } else { "refused" };
    counter!("switchyard_config_reloads_total", "result" => result).increment(1);
    gauge!("switchyard_config_generation").set(generation as f64);
}

/// Makes the reload metrics appear in `/metrics` before the first reload.
pub fn declare_reload_metrics(generation: u64) {
    metrics();
    for result in ["ok", "refused"] {
        counter!("switchyard_config_reloads_total", "result" => result).increment(0);
    }
    gauge!("switchyard_config_generation").set(generation as f64);
}

/// Panics the HTTP edge caught in this process (the last line of defence; it should stay 0).
static PANICS_CAUGHT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// One request whose handler panicked, answered 500 by the panic-catching layer.
pub fn record_panic() {
    PANICS_CAUGHT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    counter!("switchyard_panics_caught_total").increment(1);
}

/// Makes `switchyard_panics_caught_total` appear in `/metrics` (at 0) before any panic.
pub fn declare_panic_counter() {
    metrics();
    counter!("switchyard_panics_caught_total").increment(0);
}

/// How many panics the HTTP edge has caught in this process (`switchyard_panics_caught_total`).
pub fn panics_caught() -> u64 {
    PANICS_CAUGHT.load(std::sync::atomic::Ordering::Relaxed)
}

/// A streamed request that committed (200 and headers, then keep-alive comments) before its first
/// upstream event, because `commit_after` passed (`relay::early_commit`).
pub fn record_committed_early() {
    counter!("switchyard_streams_committed_early_total").increment(1);
}

/// The bytes the stream replay buffers hold (`relay::replay`).
pub fn record_replay_bytes(bytes: usize) {
    gauge!("switchyard_replay_bytes").set(bytes as f64);
}

/// The replayable streams kept (running or finished).
pub fn record_replay_streams(streams: usize) {
    gauge!("switchyard_replay_streams").set(streams as f64);
}

/// Bytes dropped from the replay buffers to stay within their limits.
pub fn record_replay_evicted(bytes: usize) {
    counter!("switchyard_replay_evicted_bytes_total").increment(bytes as u64);
}
