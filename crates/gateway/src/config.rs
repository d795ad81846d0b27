//! Configuration: the TOML file as written (`RawConfig`, serde) turned into a validated `Config`,
//! plus the embedded default used when no file is given. This is the only module that reads the
//! environment (secret references `env:`, `file:` and `cmd:` are resolved here).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use rust_decimal::Decimal;
use serde::Deserialize;

use crate::ledger::Prices;

/// Everything wrong with a configuration, with the line it is on when there is one.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
    #[error("secret {reference}: {message}")]
    Secret { reference: String, message: String },
    #[error("admin_key is {chars} characters; at least {MIN_ADMIN_KEY_CHARS} are required (e.g. `openssl rand -hex 24`)")]
    ShortAdminKey { chars: usize },
}

/// A secret as referenced in the file. Its value is only ever held in memory.
#[derive(Clone, PartialEq, Eq)]
pub enum Secret {
    Env(String),
    File(PathBuf),
    Cmd(String),
    Literal(String),
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

impl Secret {
    pub fn parse(s: &str) -> Secret {
        if let Some(name) = s.strip_prefix("env:") {
            Secret::Env(name.to_owned())
        } else if let Some(path) = s.strip_prefix("file:") {
            Secret::File(PathBuf::from(path))
        } else if let Some(cmd) = s.strip_prefix("cmd:") {
            Secret::Cmd(cmd.to_owned())
        } else {
            Secret::Literal(s.to_owned())
        }
    }

    /// Where the secret comes from, never its value.
    pub fn describe(&self) -> String {
        match self {
            Secret::Env(n) => format!("env:{n}"),
            Secret::File(p) => format!("file:{}", p.display()),
            Secret::Cmd(c) => format!("cmd:{c}"),
            Secret::Literal(_) => "a literal value".to_owned(),
        }
    }

    /// Reads the secret's current value (re-reading the variable or file, re-running the command),
    /// a command given [`DEFAULT_CREDENTIAL_TIMEOUT`].
    pub async fn resolve(&self) -> Result<String, ConfigError> {
        self.resolve_within(DEFAULT_CREDENTIAL_TIMEOUT).await
    }

    /// Like [`Secret::resolve`], a `cmd:` given `timeout` to finish: past it, the command and
    /// everything it started are killed and the secret does not resolve.
    pub async fn resolve_within(&self, timeout: Duration) -> Result<String, ConfigError> {
        let fail = |message: String| ConfigError::Secret {
            reference: self.describe(),
            message,
        };
        let value = match self {
            Secret::Literal(v) => v.clone(),
            Secret::Env(name) => {
                std::env::var(name).map_err(|_| fail("the variable is not set".into()))?
            }
            Secret::File(path) => tokio::fs::read_to_string(path)
                .await
                .map_err(|e| fail(e.to_string()))?,
            Secret::Cmd(cmd) => {
                let mut command = tokio::process::Command::new("sh");
                command
                    .arg("-c")
                    .arg(cmd)
                    .stdin(std::process::Stdio::null())
                    .stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::null())
                    .kill_on_drop(true);
                // Its own process group, so that a timeout kills what the shell started too.
                #[cfg(unix)]
                command.process_group(0);
                let child = command.spawn().map_err(|e| fail(e.to_string()))?;
                let pid = child.id();
                let out = match tokio::time::timeout(timeout, child.wait_with_output()).await {
                    Ok(out) => out.map_err(|e| fail(e.to_string()))?,
                    Err(_) => {
                        kill_process_group(pid);
                        return Err(fail(format!(
                            "the command did not finish within {} ms",
                            timeout.as_millis()
                        )));
                    }
                };
                if !out.status.success() {
                    return Err(fail(format!("the command exited with {}", out.status)));
                }
                String::from_utf8(out.stdout).map_err(|_| fail("output is not UTF-8".into()))?
            }
        };
        let value = value.trim().to_owned();
        if value.is_empty() {
            return Err(fail("the value is empty".into()));
        }
        crate::redact::remember(&value);
        Ok(value)
    }
}

/// The shortest admin key accepted: 24 characters (`openssl rand -hex 24` gives 48), so that it
/// cannot be guessed even at the full speed of many addresses.
pub const MIN_ADMIN_KEY_CHARS: usize = 24;

/// Resolves the admin key and refuses one shorter than [`MIN_ADMIN_KEY_CHARS`]; what `serve`,
/// a reload and `check` all do.
pub async fn resolve_admin_key(secret: &Secret) -> Result<String, ConfigError> {
    let key = secret.resolve().await?;
    let chars = key.chars().count();
    if chars < MIN_ADMIN_KEY_CHARS {
        return Err(ConfigError::ShortAdminKey { chars });
    }
    Ok(key)
}

/// `SWITCHYARD_JOURNAL_FAULTS=KIND:EVERY` (KIND `partial`, `nospace` or `fsync`): the journal's
/// fault-injection seam, on for `scripts/chaos`; never set in production.
pub fn journal_faults() -> Option<(crate::ledger::journal::Fault, u32)> {
    let plan = std::env::var("SWITCHYARD_JOURNAL_FAULTS").ok()?;
    let (kind, every) = plan.split_once(':')?;
    Some((
        crate::ledger::journal::Fault::parse(kind)?,
        every.parse().ok().filter(|n| *n > 0)?,
    ))
}

/// How often a `cmd:` credential may be re-run after 401s when nothing else is configured.
pub const DEFAULT_CREDENTIAL_REFRESH_INTERVAL: Duration = Duration::from_secs(60);

/// How long a `cmd:` secret may run when nothing else is configured.
pub const DEFAULT_CREDENTIAL_TIMEOUT: Duration = Duration::from_secs(10);

/// Kills the process group led by `pid` (a timed-out `cmd:` secret and its children).
fn kill_process_group(pid: Option<u32>) {
    #[cfg(unix)]
    if let Some(pgid) = pid.and_then(|p| i32::try_from(p).ok()).filter(|p| *p > 0) {
        // SAFETY: kill(2) takes plain integers and touches no memory of ours; a group that
        // already exited makes it fail with ESRCH, which is ignored.
        unsafe {
            libc::kill(-pgid, libc::SIGKILL);
        }
    }
    #[cfg(not(unix))]
    let _ = pid;
}

/// The dialect an upstream speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProviderKind {
    #[serde(rename = "openai")]
    OpenAi,
    Anthropic,
    #[serde(rename = "deepseek")]
    DeepSeek,
    /// Google's Gemini API (`generateContent`), translated.
    Gemini,
}

impl ProviderKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ProviderKind::OpenAi => "openai",
            ProviderKind::Anthropic => "anthropic",
            ProviderKind::DeepSeek => "deepseek",
            ProviderKind::Gemini => "gemini",
        }
    }

    /// Whether the upstream speaks OpenAI's chat dialect (its chunks are forwarded as they are);
    /// every other kind is translated.
    pub fn speaks_openai(self) -> bool {
        matches!(self, ProviderKind::OpenAi | ProviderKind::DeepSeek)
    }

    /// What a provider of this kind charges for its prompt cache, as shares of the input price:
    /// the defaults of a model that gives only its input price.
    pub fn cache_ratios(self) -> crate::ledger::CacheRatios {
        use crate::ledger::CacheRatios;
        match self {
            ProviderKind::OpenAi => CacheRatios::OPENAI,
            ProviderKind::Anthropic => CacheRatios::ANTHROPIC,
            ProviderKind::DeepSeek => CacheRatios::DEEPSEEK,
            ProviderKind::Gemini => CacheRatios::GEMINI,
        }
    }

    /// The base URL used when a provider of this kind configures none (Gemini only).
    pub fn default_base_url(self) -> Option<&'static str> {
        match self {
            ProviderKind::Gemini => Some(GEMINI_BASE_URL),
            _ => None,
        }
    }
}

/// Gemini's API root, the default `base_url` of a `kind = "gemini"` provider.
pub const GEMINI_BASE_URL: &str = "https://generativelanguage.googleapis.com/v1beta";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    listen: Option<String>,
    database: Option<String>,
    journal: Option<String>,
    instances: Option<String>,
    durability: Option<String>,
    redis: Option<String>,
    redis_failure: Option<String>,
    redis_timeout_ms: Option<u64>,
    admin_key: Option<String>,
    keep_alive_ms: Option<u64>,
    max_body_bytes: Option<usize>,
    demo_credits: Option<String>,
    #[serde(default)]
    providers: BTreeMap<String, RawProvider>,
    #[serde(default)]
    models: BTreeMap<String, RawModel>,
    routing: Option<RawRouting>,
    auto: Option<RawAuto>,
    server: Option<RawServer>,
    cors: Option<RawCors>,
    event_log: Option<RawEventLog>,
    capture: Option<RawCapture>,
    otlp: Option<RawOtlp>,
    responses: Option<RawResponses>,
    streams: Option<RawStreams>,
}

/// `[streams]`: streams that outlive their connection (resumable streams, background Responses).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStreams {
    resume_grace_ms: Option<u64>,
    replay_max_stream_bytes: Option<usize>,
    replay_max_total_bytes: Option<usize>,
    replay_keep_finished_ms: Option<u64>,
}

/// `[streams]`: the bounds of the replay buffers (`relay::replay`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamsConfig {
    /// How long a resumable stream goes on with no reader before it is cancelled (60 s).
    pub grace: Duration,
    /// The most one stream keeps (8 MiB); past it its oldest events go.
    pub max_stream_bytes: usize,
    /// The most all streams keep (256 MiB); past it finished streams go, oldest first.
    pub max_total_bytes: usize,
    /// How long a finished stream can still be read (5 minutes).
    pub keep_finished: Duration,
}

impl Default for StreamsConfig {
    fn default() -> Self {
        StreamsConfig {
            grace: Duration::from_secs(60),
            max_stream_bytes: 8 << 20,
            max_total_bytes: 256 << 20,
            keep_finished: Duration::from_secs(300),
        }
    }
}

fn streams_config(r: RawStreams) -> Result<StreamsConfig, String> {
    let d = StreamsConfig::default();
    let ms = |key: &str, v: Option<u64>, d: Duration| match v {
        Some(0) => Err(format!("streams.{key} = 0: must be at least 1 ms")),
        Some(v) => Ok(Duration::from_millis(v)),
        None => Ok(d),
    };
    let bytes = |key: &str, v: Option<usize>, d: usize| match v {
        Some(0) => Err(format!("streams.{key} = 0: must be at least 1 byte")),
        Some(v) => Ok(v),
        None => Ok(d),
    };
    Ok(StreamsConfig {
        grace: ms("resume_grace_ms", r.resume_grace_ms, d.grace)?,
        max_stream_bytes: bytes(
            "replay_max_stream_bytes",
            r.replay_max_stream_bytes,
            d.max_stream_bytes,
        )?,
        max_total_bytes: bytes(
            "replay_max_total_bytes",
            r.replay_max_total_bytes,
            d.max_total_bytes,
        )?,
        keep_finished: ms(
            "replay_keep_finished_ms",
            r.replay_keep_finished_ms,
            d.keep_finished,
        )?,
    })
}

/// `[responses]`: how long stored Responses API conversations are kept.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawResponses {
    retention_days: Option<u64>,
    keep_on_revoke: Option<bool>,
}

/// `[responses]`: a Responses API conversation stored (`store`, true by default as in OpenAI's
/// API) is kept `retention` (30 days by default, as OpenAI keeps them; zero stores none), then
/// purged; revoking a key deletes its stored responses unless `keep_on_revoke`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResponsesConfig {
    pub retention: Duration,
    pub keep_on_revoke: bool,
}

impl Default for ResponsesConfig {
    fn default() -> Self {
        ResponsesConfig {
            retention: Duration::from_secs(30 * 86_400),
            keep_on_revoke: false,
        }
    }
}

/// `[otlp]`: trace export (off unless `endpoint` is set).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOtlp {
    endpoint: String,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    service_name: Option<String>,
    sample_ratio: Option<f64>,
}

/// `[otlp]`: where request spans go (OTLP over HTTP, protobuf), with the OpenTelemetry GenAI
/// attributes. Off unless configured: no exporter, no thread, nothing per request.
#[derive(Debug, Clone, PartialEq)]
pub struct OtlpConfig {
    /// The collector's base URL (`http://collector:4318`); spans go to `{endpoint}/v1/traces`
    /// unless it already names that path.
    pub endpoint: String,
    /// Extra request headers (an API key for a hosted collector): values may be env:/file:/cmd:.
    pub headers: BTreeMap<String, Secret>,
    pub service_name: String,
    /// The share of traces exported, 0.0 to 1.0 (a client's sampled `traceparent` flag wins).
    pub sample_ratio: f64,
}

fn otlp_config(r: RawOtlp) -> Result<OtlpConfig, String> {
    let endpoint = r.endpoint.trim().trim_end_matches('/').to_owned();
    if !(endpoint.starts_with("http://") || endpoint.starts_with("https://"))
        || endpoint.parse::<http::Uri>().is_err()
    {
        return Err(format!(
            "otlp.endpoint = \"{}\": expected an http(s) URL such as \"http://collector:4318\"",
            r.endpoint
        ));
    }
    let sample_ratio = r.sample_ratio.unwrap_or(1.0);
    if !(0.0..=1.0).contains(&sample_ratio) {
        return Err(format!(
            "otlp.sample_ratio = {sample_ratio}: expected 0.0 to 1.0"
        ));
    }
    for name in r.headers.keys() {
        if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
            return Err(format!("otlp.headers: \"{name}\" is not a header name"));
        }
    }
    Ok(OtlpConfig {
        endpoint,
        headers: r
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), Secret::parse(v)))
            .collect(),
        service_name: r
            .service_name
            .filter(|s| !s.trim().is_empty())
            .unwrap_or_else(|| "switchyard".into()),
        sample_ratio,
    })
}

/// `[capture]`: how captured prompt and completion text is kept (capture itself is per key).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCapture {
    max_bytes: Option<usize>,
    default_retention_hours: Option<i64>,
    max_retention_hours: Option<i64>,
    redact: Option<Vec<String>>,
}

/// `[cors]`: which web origins may call the gateway from a browser.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCors {
    allowed_origins: Option<Vec<String>>,
    admin_origins: Option<Vec<String>>,
    ops_origins: Option<Vec<String>>,
}

/// `[event_log]`: the request records as JSON lines.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEventLog {
    /// `"stdout"` or a file path (appended to).
    path: String,
}

/// `[server]`: the limits of the client-facing listener.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServer {
    header_read_timeout_ms: Option<u64>,
    body_read_timeout_ms: Option<u64>,
    idle_timeout_ms: Option<u64>,
    max_connections: Option<usize>,
    max_connections_per_ip: Option<usize>,
    max_header_bytes: Option<usize>,
    slow_reader_timeout_ms: Option<u64>,
    shutdown_grace_ms: Option<u64>,
    trusted_proxies: Option<Vec<String>>,
    admin_lockout_after: Option<u32>,
    admin_lockout_ms: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRouting {
    max_attempts: Option<u32>,
    retry_budget_ms: Option<u64>,
    backoff_base_ms: Option<u64>,
    backoff_max_ms: Option<u64>,
    max_retry_after_ms: Option<u64>,
    served_headers: Option<bool>,
    breaker_failures: Option<u32>,
    breaker_window: Option<u32>,
    breaker_error_percent: Option<u32>,
    breaker_min_requests: Option<u32>,
    breaker_cooldown_ms: Option<u64>,
    commit_after_ms: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAuto {
    chain: Vec<toml::Spanned<String>>,
    fast: Option<Vec<toml::Spanned<String>>>,
    hedge_after_ms: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProvider {
    kind: ProviderKind,
    base_url: Option<String>,
    api_key: Option<String>,
    /// A pool of upstream keys: the provider becomes one member per key (`name#1`, `name#2`, …),
    /// each with its own health and quota, and a route naming it one route per member.
    api_keys: Option<Vec<String>>,
    connect_timeout_ms: Option<u64>,
    first_token_timeout_ms: Option<u64>,
    idle_timeout_ms: Option<u64>,
    total_timeout_ms: Option<u64>,
    max_sse_line_bytes: Option<usize>,
    max_sse_event_bytes: Option<usize>,
    max_response_bytes: Option<usize>,
    max_error_body_bytes: Option<usize>,
    credential_timeout_ms: Option<u64>,
    credential_refresh_interval_ms: Option<u64>,
    rpm: Option<u64>,
    tpm: Option<u64>,
    /// The header that carries the request id upstream ("" = none); see `RequestIdHeader`.
    request_id_header: Option<String>,
    /// Send the request id as a UUID (derived from the gateway's id when it is not one).
    request_id_uuid: Option<bool>,
    /// The provider also serves `/responses`: Responses requests pass through natively.
    native_responses: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawModel {
    routes: Vec<toml::Spanned<String>>,
    input_price: Option<toml::Spanned<String>>,
    output_price: Option<toml::Spanned<String>>,
    cached_input_price: Option<toml::Spanned<String>>,
    /// Prompt tokens written to the provider's cache (5-minute writes), and written for an hour.
    cache_write_price: Option<toml::Spanned<String>>,
    cache_write_1h_price: Option<toml::Spanned<String>>,
    /// A model without prices must say so: `free = true`.
    free: Option<toml::Spanned<bool>>,
    max_output_tokens: Option<u64>,
    connect_timeout_ms: Option<u64>,
    first_token_timeout_ms: Option<u64>,
    idle_timeout_ms: Option<u64>,
    total_timeout_ms: Option<u64>,
    /// `"chat"` (the default) or `"embedding"` (served by `/v1/embeddings`, priced per input token).
    kind: Option<ModelKind>,
    /// What `/v1/models` says the model offers.
    context_length: Option<u64>,
    modalities: Option<RawModalities>,
    reasoning: Option<bool>,
    /// Overrides `[routing] commit_after_ms` for this model (0 = never commit early).
    commit_after_ms: Option<u64>,
    /// `failover` (the default: routes in order) or `balance` (weighted across the routes).
    strategy: Option<Strategy>,
    /// One weight per route for `balance` (default: equal).
    weights: Option<Vec<u32>>,
    /// A conversation sticks to the route that served its last turn (default: true).
    affinity: Option<bool>,
}

/// One configured weight in `Route::weight`: divisible by every pool size up to 16.
pub const WEIGHT_UNIT: u64 = 720_720;

/// How a model's routes share its requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Strategy {
    /// The routes in their configured order; the next one only when one fails.
    #[default]
    Failover,
    /// A route drawn by weight first, the others after it as failover.
    Balance,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawModalities {
    input: Vec<String>,
    output: Vec<String>,
}

/// What a model serves: chat-like requests (chat completions, Responses) or embeddings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModelKind {
    #[default]
    Chat,
    Embedding,
}

impl ModelKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ModelKind::Chat => "chat",
            ModelKind::Embedding => "embedding",
        }
    }
}

/// What a model takes in and gives out, as `/v1/models` lists it (`text`, `image`, `audio`, `file`,
/// `embeddings`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Modalities {
    pub input: Vec<String>,
    pub output: Vec<String>,
}

impl Modalities {
    /// Text in, and text (chat) or vectors (embedding) out.
    pub fn default_for(kind: ModelKind) -> Modalities {
        let out = match kind {
            ModelKind::Chat => "text",
            ModelKind::Embedding => "embeddings",
        };
        Modalities {
            input: vec!["text".into()],
            output: vec![out.into()],
        }
    }
}

/// The context length `/v1/models` reports for a model that does not set `context_length`.
pub const DEFAULT_CONTEXT_LENGTH: u64 = 128_000;
/// The same for an embedding model.
pub const DEFAULT_EMBEDDING_CONTEXT_LENGTH: u64 = 8_192;

/// Per-provider time limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timeouts {
    pub connect: Duration,
    pub first_token: Duration,
    pub idle: Duration,
    pub total: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_secs(10),
            first_token: Duration::from_secs(120),
            idle: Duration::from_secs(300),
            total: Duration::from_secs(1800),
        }
    }
}

/// How much the gateway reads from one upstream answer. Past a limit the answer is a failure of
/// the route: another route is tried before the first byte, the stream ends with an error event
/// after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UpstreamLimits {
    /// One SSE line and one SSE event of a stream (`max_sse_line_bytes`, `max_sse_event_bytes`).
    pub sse: switchyard_wire::sse::Limits,
    /// A whole non-streamed answer (`max_response_bytes`).
    pub response: usize,
    /// The body of an error status (`max_error_body_bytes`).
    pub error_body: usize,
}

impl Default for UpstreamLimits {
    fn default() -> Self {
        UpstreamLimits {
            sse: switchyard_wire::sse::Limits::DEFAULT,
            response: 64 * 1024 * 1024,
            error_body: 64 * 1024,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderConfig {
    pub name: String,
    pub kind: ProviderKind,
    /// Base URL including the API version, without a trailing slash.
    pub base_url: String,
    pub api_key: Option<Secret>,
    pub timeouts: Timeouts,
    pub limits: UpstreamLimits,
    /// How long a `cmd:` credential may run (`credential_timeout_ms`, default 10 s).
    pub credential_timeout: Duration,
    /// After a 401, a `cmd:` credential is re-run at most once per this long
    /// (`credential_refresh_interval_ms`, default 60 s): an upstream that keeps refusing does not
    /// run the command once per request.
    pub credential_refresh_interval: Duration,
    /// The upstream account's own quota (`rpm`, `tpm`), kept by the gateway for every key
    /// together (shared through Redis by every instance): a route past it is skipped.
    pub rpm: Option<u64>,
    pub tpm: Option<u64>,
    /// How the request id reaches this upstream, if at all.
    pub request_id: Option<RequestIdHeader>,
    /// The provider serves the Responses API itself (`{base_url}/responses`): a Responses request
    /// routed here goes up as the client sent it (model replaced) and its answer comes back as
    /// sent. `native_responses` in the config; by default true for OpenAI's own API (kind
    /// `openai` at api.openai.com), false otherwise. Only OpenAI-kind providers can have it.
    pub native_responses: bool,
}

/// The header that carries a request's id upstream, in a form the upstream accepts. Defaults:
/// OpenAI's own API takes `x-client-request-id` as it is; other OpenAI-compatible servers
/// `x-request-id` as a UUID (some, like llama-cpp-python's, refuse anything else); Anthropic and
/// Gemini take none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestIdHeader {
    pub name: String,
    pub uuid: bool,
}

/// Whether a provider serves `/responses` natively: as configured, else only OpenAI's own API.
/// Only an OpenAI-kind provider can (the others have no Responses API).
fn native_responses(
    kind: ProviderKind,
    base_url: &str,
    configured: Option<bool>,
) -> Result<bool, String> {
    match configured {
        Some(true) if kind != ProviderKind::OpenAi => {
            Err("native_responses: only kind = \"openai\" providers serve /responses".into())
        }
        Some(on) => Ok(on),
        None => Ok(kind == ProviderKind::OpenAi && is_openai_itself(base_url)),
    }
}

/// Whether `base_url` is OpenAI's own API (its host, not a path or another host containing it).
fn is_openai_itself(base_url: &str) -> bool {
    let rest = base_url
        .strip_prefix("https://")
        .or_else(|| base_url.strip_prefix("http://"))
        .unwrap_or(base_url);
    let host = rest.split(['/', ':']).next().unwrap_or_default();
    host.eq_ignore_ascii_case("api.openai.com")
}

impl RequestIdHeader {
    fn for_provider(
        kind: ProviderKind,
        base_url: &str,
        name: Option<&str>,
        uuid: Option<bool>,
    ) -> Option<RequestIdHeader> {
        let openai_itself = kind == ProviderKind::OpenAi && base_url.contains("api.openai.com");
        let default = match kind {
            ProviderKind::Anthropic | ProviderKind::Gemini => None,
            _ if openai_itself => Some("x-client-request-id"),
            _ => Some("x-request-id"),
        };
        let name = name.or(default).filter(|n| !n.is_empty())?;
        Some(RequestIdHeader {
            name: name.to_ascii_lowercase(),
            uuid: uuid.unwrap_or(!openai_itself),
        })
    }
}

/// One place a model can be served from: a provider and the model's name there, with the time
/// limits (the provider's, overridden by the model's) and the prices of the model it belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub provider: String,
    pub upstream_model: String,
    /// The configured model this route serves (differs from the requested one for `auto` models).
    pub model: String,
    pub prices: Prices,
    pub timeouts: Timeouts,
    /// Its share of a `balance` model's requests, in parts of `WEIGHT_UNIT` per configured weight
    /// (a pool's members split their route's).
    pub weight: u64,
}

impl Route {
    /// `provider/upstream-model`, the route's name in health reports.
    pub fn key(&self) -> String {
        format!("{}/{}", self.provider, self.upstream_model)
    }
}

/// How an automatic model picks among its routes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AutoKind {
    /// `auto`: the configured chain, in order.
    Chain,
    /// `auto-fast`: the healthy route with the lowest recent time to first token; optionally a
    /// second route is started when the first has not produced its first token after `hedge_after`.
    Fastest { hedge_after: Option<Duration> },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelConfig {
    pub name: String,
    pub routes: Vec<Route>,
    /// For `auto` models, the highest price of any model in the chain (the worst case for holds);
    /// the served route's own prices are what is billed.
    pub prices: Prices,
    /// The most a completion can produce, for the worst-case reservation.
    pub max_output_tokens: u64,
    /// Set for the automatic models `auto` and `auto-fast`.
    pub auto: Option<AutoKind>,
    /// Chat-like or embedding.
    pub kind: ModelKind,
    /// The model's context window in tokens, for `/v1/models`.
    pub context_length: u64,
    pub modalities: Modalities,
    /// Whether the model reasons (thinks before it answers), for `/v1/models`.
    pub reasoning: bool,
    /// The model's own `commit_after_ms`, overriding `[routing]`'s (`Some(ZERO)` = never).
    pub commit_after: Option<Duration>,
    pub strategy: Strategy,
    /// A conversation sticks to the route that served its last turn (`routing::Affinity`).
    pub affinity: bool,
}

impl ModelConfig {
    /// How long a streamed request waits for its first upstream event before it commits (200 and
    /// the SSE headers, then keep-alive comments); `None` = it never commits before that event.
    pub fn commit_after(&self, routing: &RoutingConfig) -> Option<Duration> {
        Some(self.commit_after.unwrap_or(routing.commit_after)).filter(|d| !d.is_zero())
    }
}

/// Retry, failover and circuit-breaker settings (`[routing]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoutingConfig {
    /// Attempts per request, retries of the same route included; `None` = every route once plus
    /// one more try of the first.
    pub max_attempts: Option<u32>,
    /// No new attempt starts, and no backoff is waited, past this much time after the request began.
    pub retry_budget: Duration,
    /// Backoff before revisiting a route: `base * 2^(round-1)`, capped at `backoff_max`, jittered.
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    /// The longest upstream `retry-after` the gateway waits out itself.
    pub max_retry_after: Duration,
    /// Whether `x-switchyard-provider` and `x-switchyard-attempts` are sent.
    pub served_headers: bool,
    pub breaker: BreakerConfig,
    /// A streamed request with no first upstream event after this long commits: 200 and the SSE
    /// headers go out, then `: keep-alive` comments, so that proxies (nginx's
    /// `proxy_read_timeout`, a load balancer's idle timeout) do not cut a long prefill. Failover
    /// goes on behind the comments; only when every route failed is the error an in-stream event.
    /// `ZERO` = never (errors stay HTTP statuses).
    pub commit_after: Duration,
}

/// When a route's breaker opens: `failures` failures in a row, or at least `error_percent` percent
/// failures among its last `window` outcomes (once there are `min_requests` of them). It then stays
/// open for `cooldown`, after which one request probes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BreakerConfig {
    pub failures: u32,
    pub window: u32,
    pub error_percent: u32,
    pub min_requests: u32,
    pub cooldown: Duration,
}

impl Default for RoutingConfig {
    fn default() -> Self {
        RoutingConfig {
            max_attempts: None,
            retry_budget: Duration::from_secs(15),
            backoff_base: Duration::from_millis(100),
            backoff_max: Duration::from_secs(2),
            max_retry_after: Duration::from_secs(10),
            served_headers: true,
            commit_after: Duration::from_secs(10),
            breaker: BreakerConfig {
                failures: 5,
                window: 20,
                error_percent: 50,
                min_requests: 10,
                cooldown: Duration::from_secs(30),
            },
        }
    }
}

/// The limits of the client-facing listener (`[server]`), so that no client can hold a
/// connection, a task or a stream's upstream for longer than these say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerLimits {
    /// From a connection's start (or the first byte of its next request) until the request's
    /// headers are complete; past it the connection is closed.
    pub header_read_timeout: Duration,
    /// Reading a request's body; past it the request is answered 408.
    pub body_read_timeout: Duration,
    /// A keep-alive connection with no request in flight is closed after this long.
    pub idle_timeout: Duration,
    /// Open client connections in all; past it new ones are answered 503 and closed.
    pub max_connections: usize,
    /// Open client connections from one address; `None` = no cap (behind a load balancer every
    /// client has the balancer's address).
    pub max_connections_per_ip: Option<usize>,
    /// The request line and headers together; past it the answer is 431.
    pub max_header_bytes: usize,
    /// A response (a stream above all) whose client has accepted no byte for this long is
    /// dropped: its upstream request is stopped and it is settled as cancelled.
    pub slow_reader_timeout: Duration,
    /// On SIGTERM/SIGINT, open requests may finish for this long; streams still open then end
    /// with an error event and are settled.
    pub shutdown_grace: Duration,
    /// Proxies whose `X-Forwarded-For` names the client (addresses or networks such as
    /// `"10.0.0.0/8"`); default none, so the client is always the TCP peer.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Failed admin authentications from one client address that lock it out (`0`: never).
    pub admin_lockout_after: u32,
    /// How long a locked-out address is refused.
    pub admin_lockout: Duration,
}

impl Default for ServerLimits {
    fn default() -> Self {
        ServerLimits {
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(75),
            max_connections: 10_000,
            max_connections_per_ip: Some(1_024),
            max_header_bytes: 64 * 1024,
            slow_reader_timeout: Duration::from_secs(30),
            shutdown_grace: Duration::from_secs(30),
            trusted_proxies: Vec::new(),
            admin_lockout_after: 10,
            admin_lockout: Duration::from_secs(300),
        }
    }
}

/// Which browser origins may call the gateway (`[cors]`). An entry is `"*"` (any origin) or an
/// exact origin such as `"https://app.example.com"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CorsConfig {
    /// For the public API (`/v1`, `/api/v1`, `/v1/llm`) and the unauthenticated routes; default
    /// any origin (`["*"]`): the API is authenticated by key, never by cookie.
    pub allowed_origins: Vec<String>,
    /// For `/admin`; default none (`[]`).
    pub admin_origins: Vec<String>,
    /// For the operator's unauthenticated endpoints (`/metrics`, `/readyz`, `/openapi.json`):
    /// default none, so a web page cannot read a local gateway's figures.
    pub ops_origins: Vec<String>,
}

impl Default for CorsConfig {
    fn default() -> Self {
        CorsConfig {
            allowed_origins: vec!["*".into()],
            admin_origins: Vec::new(),
            ops_origins: Vec::new(),
        }
    }
}

fn cors_config(r: RawCors) -> Result<CorsConfig, String> {
    let d = CorsConfig::default();
    let check = |key: &str, list: Vec<String>| -> Result<Vec<String>, String> {
        for o in &list {
            let ok = o == "*"
                || ((o.starts_with("http://") || o.starts_with("https://"))
                    && !o.ends_with('/')
                    && o.bytes().all(|b| b.is_ascii_graphic()));
            if !ok {
                return Err(format!(
                    "cors.{key}: \"{o}\" is not \"*\" or an origin like \"https://app.example.com\" (scheme and host, no path)"
                ));
            }
        }
        Ok(list)
    };
    Ok(CorsConfig {
        allowed_origins: check(
            "allowed_origins",
            r.allowed_origins.unwrap_or(d.allowed_origins),
        )?,
        admin_origins: check("admin_origins", r.admin_origins.unwrap_or(d.admin_origins))?,
        ops_origins: check("ops_origins", r.ops_origins.unwrap_or(d.ops_origins))?,
    })
}

/// The smallest and largest `server.max_header_bytes` (the HTTP parser's buffer bounds it).
const HEADER_BYTES_RANGE: std::ops::RangeInclusive<usize> = 1024..=256 * 1024;

fn server_limits(r: RawServer) -> Result<ServerLimits, String> {
    let d = ServerLimits::default();
    let ms = |key: &str, v: Option<u64>, d: Duration| match v {
        Some(0) => Err(format!(
            "server.{key} = 0: a time limit must be at least 1 ms"
        )),
        Some(v) => Ok(Duration::from_millis(v)),
        None => Ok(d),
    };
    let max_header_bytes = r.max_header_bytes.unwrap_or(d.max_header_bytes);
    if !HEADER_BYTES_RANGE.contains(&max_header_bytes) {
        return Err(format!(
            "server.max_header_bytes = {max_header_bytes}: must be between {} and {}",
            HEADER_BYTES_RANGE.start(),
            HEADER_BYTES_RANGE.end()
        ));
    }
    let max_connections = match r.max_connections {
        Some(0) => return Err("server.max_connections = 0: must be at least 1".into()),
        Some(n) => n,
        None => d.max_connections,
    };
    Ok(ServerLimits {
        header_read_timeout: ms(
            "header_read_timeout_ms",
            r.header_read_timeout_ms,
            d.header_read_timeout,
        )?,
        body_read_timeout: ms(
            "body_read_timeout_ms",
            r.body_read_timeout_ms,
            d.body_read_timeout,
        )?,
        idle_timeout: ms("idle_timeout_ms", r.idle_timeout_ms, d.idle_timeout)?,
        max_connections,
        max_connections_per_ip: match r.max_connections_per_ip {
            Some(0) => None,
            Some(n) => Some(n),
            None => d.max_connections_per_ip,
        },
        max_header_bytes,
        slow_reader_timeout: ms(
            "slow_reader_timeout_ms",
            r.slow_reader_timeout_ms,
            d.slow_reader_timeout,
        )?,
        shutdown_grace: ms("shutdown_grace_ms", r.shutdown_grace_ms, d.shutdown_grace)?,
        trusted_proxies: trusted_proxies(r.trusted_proxies.unwrap_or_default())?,
        admin_lockout_after: r.admin_lockout_after.unwrap_or(d.admin_lockout_after),
        admin_lockout: ms("admin_lockout_ms", r.admin_lockout_ms, d.admin_lockout)?,
    })
}

/// `server.trusted_proxies`: each entry an address (`"10.0.0.7"`) or a network (`"10.0.0.0/8"`).
fn trusted_proxies(list: Vec<String>) -> Result<Vec<ipnet::IpNet>, String> {
    list.iter()
        .map(|entry| {
            entry
                .parse::<ipnet::IpNet>()
                .or_else(|_| entry.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                .map_err(|_| {
                    format!(
                        "server.trusted_proxies: \"{entry}\" is not an address or a network like \"10.0.0.0/8\""
                    )
                })
        })
        .collect()
}

/// The names of the automatic models.
pub const AUTO_MODEL: &str = "auto";
pub const AUTO_FAST_MODEL: &str = "auto-fast";

/// A validated configuration.
/// What the rate limits do while Redis cannot be reached (`redis_failure`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum RedisFailure {
    /// Admit without limits (the default): counted in `switchyard_limits_fail_open_total`.
    #[default]
    Open,
    /// Refuse limited keys' requests with a 503 until Redis is back.
    Closed,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub database: String,
    /// The settlement journal's file (`ledger::journal`); by default next to a SQLite database,
    /// or `switchyard.journal` in the working directory for PostgreSQL.
    pub journal: Option<PathBuf>,
    /// `instances = "shared"`: several instances on one PostgreSQL database take their holds
    /// there (`ledger::shared_holds`); `"single"` (the default) keeps them in memory.
    pub instances: crate::ledger::Instances,
    /// `durability = "durable"` (the default: a whole answer leaves once its entry is durable) or
    /// `"batched"` (it leaves at once; the entry is committed within the writer's next batch).
    pub durability: crate::ledger::Durability,
    pub redis: Option<String>,
    /// What the rate limits do while `redis` cannot be reached.
    pub redis_failure: RedisFailure,
    /// The longest a request waits on Redis (connecting or a command) before `redis_failure`
    /// applies: a hung Redis (stopped, not gone) costs no request more (`redis_timeout_ms`,
    /// default 1 s).
    pub redis_timeout: Duration,
    pub admin_key: Option<Secret>,
    pub keep_alive: Duration,
    pub max_body_bytes: usize,
    /// Credits (USD) given to the key created on a fresh database.
    pub demo_credits: Decimal,
    pub providers: BTreeMap<String, Arc<ProviderConfig>>,
    pub models: BTreeMap<String, Arc<ModelConfig>>,
    pub routing: RoutingConfig,
    /// The client-facing listener's limits (`[server]`).
    pub server: ServerLimits,
    /// Which browser origins may call the gateway (`[cors]`).
    pub cors: CorsConfig,
    /// Whether the in-process demo upstream must be started (the embedded default).
    pub embedded_demo: bool,
    /// How fast the demo upstream streams, in tokens per second (0 = as fast as it can). The
    /// embedded default takes it from `SWITCHYARD_DEMO_TOKENS_PER_SECOND`.
    pub demo_tokens_per_second: u32,
    /// `[event_log] path`: where each settled request's JSON line goes, if anywhere.
    pub event_log: Option<crate::event_log::EventLogTarget>,
    /// `[capture]`: limits and redaction of per-key capture.
    pub capture: CaptureConfig,
    /// `[responses]`: how long stored Responses conversations are kept.
    pub responses: ResponsesConfig,
    /// `[streams]`: the replay buffers of resumable streams and background Responses.
    pub streams: StreamsConfig,
    /// `[otlp]`: trace export, when configured.
    pub otlp: Option<OtlpConfig>,
}

/// `[capture]`: the bounds of captured text. Capture is off for every key until an operator turns
/// it on for one (`PATCH /admin/keys/{id}` with `"capture"`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaptureConfig {
    /// The most bytes kept of a request's messages, and of its completion (each; cut at a
    /// character boundary after redaction).
    pub max_bytes: usize,
    /// The retention of a key's captures when its capture is turned on without one.
    pub default_retention_hours: i64,
    /// The longest retention a key may have; older captures are purged whatever the key says.
    pub max_retention_hours: i64,
    /// Regular expressions whose matches are redacted, besides secrets and key-shaped tokens
    /// (which always are). Default: email addresses and card-number-like digit runs.
    pub redact: Vec<String>,
}

/// Email addresses.
pub const REDACT_EMAIL: &str = r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}";
/// 13 to 19 digits, optionally grouped by spaces or dashes (card numbers).
pub const REDACT_CARD: &str = r"\b\d(?:[ -]?\d){12,18}\b";

impl Default for CaptureConfig {
    fn default() -> Self {
        CaptureConfig {
            max_bytes: 64 * 1024,
            default_retention_hours: 7 * 24,
            max_retention_hours: 30 * 24,
            redact: vec![REDACT_EMAIL.into(), REDACT_CARD.into()],
        }
    }
}

fn capture_config(r: RawCapture) -> Result<CaptureConfig, String> {
    let d = CaptureConfig::default();
    let max_retention_hours = r.max_retention_hours.unwrap_or(d.max_retention_hours);
    if !(1..=24 * 3660).contains(&max_retention_hours) {
        return Err(format!(
            "capture.max_retention_hours = {max_retention_hours}: expected 1 to 87840 (10 years)"
        ));
    }
    let default_retention_hours = r
        .default_retention_hours
        .unwrap_or(d.default_retention_hours.min(max_retention_hours));
    if !(1..=max_retention_hours).contains(&default_retention_hours) {
        return Err(format!(
            "capture.default_retention_hours = {default_retention_hours}: expected 1 to max_retention_hours ({max_retention_hours})"
        ));
    }
    let max_bytes = r.max_bytes.unwrap_or(d.max_bytes);
    if !(256..=16 * 1024 * 1024).contains(&max_bytes) {
        return Err(format!(
            "capture.max_bytes = {max_bytes}: expected 256 to 16777216"
        ));
    }
    let redact = r.redact.unwrap_or(d.redact);
    for p in &redact {
        if let Err(e) = regex::Regex::new(p) {
            let first = e.to_string();
            let first = first.lines().last().unwrap_or("").trim();
            return Err(format!(
                "capture.redact: \"{p}\" is not a regular expression ({first})"
            ));
        }
    }
    Ok(CaptureConfig {
        max_bytes,
        default_retention_hours,
        max_retention_hours,
        redact,
    })
}

pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
pub const DEFAULT_DATABASE: &str = "sqlite://switchyard.db";
/// The provider name of the in-process demo upstream.
pub const DEMO_PROVIDER: &str = "demo";

/// The largest price a model may have, in USD per 1M tokens (a dollar a token). Far above any
/// provider's, and low enough that pricing any token count stays within `Decimal`'s range: a
/// price the fuzzer found (2.2e26) made every request's cost a multiplication overflow, a panic.
const MAX_PRICE: Decimal = Decimal::from_parts(1_000_000, 0, 0, false, 0);

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

fn parse_price(
    text: &str,
    path: &str,
    model: &str,
    field: &str,
    v: &Option<toml::Spanned<String>>,
) -> Result<Option<Decimal>, ConfigError> {
    let Some(v) = v else { return Ok(None) };
    let invalid = |what: String| ConfigError::Invalid {
        path: path.to_owned(),
        message: format!(
            "line {}: models.\"{model}\".{field} = \"{}\" {what}",
            line_of(text, v.span().start),
            v.get_ref()
        ),
    };
    match Decimal::from_str(v.get_ref()) {
        Ok(d) if d > MAX_PRICE => Err(invalid(format!(
            "is over the largest price accepted, USD {MAX_PRICE} per 1M tokens"
        ))),
        Ok(d) if !d.is_sign_negative() => Ok(Some(d)),
        _ => Err(invalid(
            "is not a non-negative decimal number of USD per 1M tokens".into(),
        )),
    }
}

/// A model's prices: both `input_price` and `output_price`, or none at all with `free = true`, so
/// that a forgotten price cannot serve a model for nothing.
fn model_prices(
    text: &str,
    path: &str,
    name: &str,
    m: &RawModel,
    input: Option<Decimal>,
    output: Option<Decimal>,
    cache: [Option<Decimal>; 3],
) -> Result<Prices, ConfigError> {
    let [cached_input, cache_write, cache_write_1h] = cache;
    let invalid = |line: usize, message: String| ConfigError::Invalid {
        path: path.to_owned(),
        message: format!("line {line}: models.\"{name}\" {message}"),
    };
    let free = m.free.as_ref().is_some_and(|f| *f.get_ref());
    // An embedding model is priced per input token only: no output price needed.
    let output = match (m.kind, output) {
        (Some(ModelKind::Embedding), None) if input.is_some() => Some(Decimal::ZERO),
        (_, output) => output,
    };
    match (free, input, output) {
        (true, None, None) if cache.iter().all(Option::is_none) => Ok(Prices::default()),
        (true, ..) => Err(invalid(
            line_of(text, m.free.as_ref().map_or(0, |f| f.span().start)),
            "is marked free = true but also has prices; remove one or the other".into(),
        )),
        (false, Some(input), Some(output)) => Ok(Prices {
            input,
            output,
            cached_input,
            cache_write,
            cache_write_1h,
        }),
        (false, input, _) => {
            let missing = if input.is_none() {
                "input_price"
            } else {
                "output_price"
            };
            // The line of the model's table: its routes are required.
            let line = m
                .routes
                .first()
                .map_or(1, |r| line_of(text, r.span().start));
            Err(invalid(
                line,
                format!(
                    "has no {missing}: set input_price and output_price (USD per 1M tokens), or free = true for a model that costs nothing"
                ),
            ))
        }
    }
}

impl Config {
    /// Reads and validates a config file.
    /// A config file others can write is refused: a config is code when it names a `cmd:`
    /// secret (the gateway runs it), so only its owner may change it.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path)
            .map_err(|source| ConfigError::Read {
                path: path.to_owned(),
                source,
            })?
            .permissions()
            .mode();
        if mode & 0o022 != 0 {
            return Err(ConfigError::Invalid {
                path: path.display().to_string(),
                message: format!(
                    "the file is writable by other users (mode {:o}); a config can run commands \
                     (cmd: secrets), so only its owner may write it: chmod go-w {}",
                    mode & 0o777,
                    path.display()
                ),
            });
        }
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Config::parse(&text, &path.display().to_string())
    }

    /// Parses and validates config text; `path` is only used in messages.
    pub fn parse(text: &str, path: &str) -> Result<Config, ConfigError> {
        let invalid = |message: String| ConfigError::Invalid {
            path: path.to_owned(),
            message,
        };
        let mut raw: RawConfig = toml::from_str(text).map_err(|e| invalid(toml_error(text, &e)))?;
        let listen = raw.listen.as_deref().unwrap_or(DEFAULT_LISTEN);
        let listen = listen.parse().map_err(|_| {
            invalid(format!(
                "listen = \"{listen}\" is not an address like 127.0.0.1:8080"
            ))
        })?;
        let database = raw.database.unwrap_or_else(|| DEFAULT_DATABASE.to_owned());
        if !(database.starts_with("sqlite:") || database.starts_with("postgres")) {
            return Err(invalid(format!(
                "database = \"{database}\": expected sqlite://FILE or postgres://…"
            )));
        }
        let mut providers = BTreeMap::new();
        // A pool's name -> its members' names.
        let mut pools: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (name, p) in std::mem::take(&mut raw.providers) {
            let defaults = Timeouts::default();
            let ms = |v: Option<u64>, d: Duration| v.map(Duration::from_millis).unwrap_or(d);
            let Some(base_url) = p
                .base_url
                .clone()
                .or_else(|| p.kind.default_base_url().map(str::to_owned))
            else {
                return Err(invalid(format!(
                    "providers.{name}.base_url is required for kind = \"{}\"",
                    p.kind.as_str()
                )));
            };
            if !(base_url.starts_with("http://") || base_url.starts_with("https://")) {
                return Err(invalid(format!(
                    "providers.{name}.base_url = \"{base_url}\" must start with http:// or https://"
                )));
            }
            let limits = provider_limits(&name, &p).map_err(invalid)?;
            for (field, v) in [("rpm", p.rpm), ("tpm", p.tpm)] {
                if v == Some(0) {
                    return Err(invalid(format!(
                        "providers.{name}.{field} must be above 0 (leave it out for no limit)"
                    )));
                }
            }
            let credential_timeout = ms(p.credential_timeout_ms, DEFAULT_CREDENTIAL_TIMEOUT);
            if credential_timeout.is_zero() {
                return Err(invalid(format!(
                    "providers.{name}.credential_timeout_ms must be above 0"
                )));
            }
            let native_responses = native_responses(p.kind, &base_url, p.native_responses)
                .map_err(|e| invalid(format!("providers.{name}.{e}")))?;
            let keys: Vec<(String, Option<Secret>)> = match (&p.api_key, &p.api_keys) {
                (Some(_), Some(_)) => {
                    return Err(invalid(format!(
                        "providers.{name}: give api_key or api_keys, not both"
                    )))
                }
                (_, Some(keys)) if keys.is_empty() => {
                    return Err(invalid(format!("providers.{name}.api_keys is empty")))
                }
                (_, Some(keys)) => {
                    let members: Vec<String> =
                        (1..=keys.len()).map(|i| format!("{name}#{i}")).collect();
                    pools.insert(name.clone(), members.clone());
                    members
                        .into_iter()
                        .zip(keys.iter().map(|k| Some(Secret::parse(k))))
                        .collect()
                }
                (key, None) => vec![(name.clone(), key.as_deref().map(Secret::parse))],
            };
            for (name, api_key) in keys {
                providers.insert(
                    name.clone(),
                    Arc::new(ProviderConfig {
                        name,
                        kind: p.kind,
                        base_url: base_url.trim_end_matches('/').to_owned(),
                        api_key,
                        timeouts: Timeouts {
                            connect: ms(p.connect_timeout_ms, defaults.connect),
                            first_token: ms(p.first_token_timeout_ms, defaults.first_token),
                            idle: ms(p.idle_timeout_ms, defaults.idle),
                            total: ms(p.total_timeout_ms, defaults.total),
                        },
                        limits,
                        credential_timeout,
                        credential_refresh_interval: ms(
                            p.credential_refresh_interval_ms,
                            DEFAULT_CREDENTIAL_REFRESH_INTERVAL,
                        ),
                        rpm: p.rpm,
                        tpm: p.tpm,
                        request_id: RequestIdHeader::for_provider(
                            p.kind,
                            &base_url,
                            p.request_id_header.as_deref(),
                            p.request_id_uuid,
                        ),
                        native_responses,
                    }),
                );
            }
        }
        let mut models = BTreeMap::new();
        for (name, m) in std::mem::take(&mut raw.models) {
            if m.routes.is_empty() {
                return Err(invalid(format!("models.\"{name}\".routes is empty")));
            }
            let mut routes = Vec::new();
            for r in &m.routes {
                let line = line_of(text, r.span().start);
                let Some((provider, upstream_model)) = r.get_ref().split_once('/') else {
                    return Err(invalid(format!(
                        "line {line}: route \"{}\" must be provider/model",
                        r.get_ref()
                    )));
                };
                let members = match pools.get(provider) {
                    Some(members) => members.clone(),
                    None if providers.contains_key(provider) => vec![provider.to_owned()],
                    None => {
                        return Err(invalid(format!(
                            "line {line}: route \"{}\" names provider \"{provider}\", which is not defined (known: {})",
                            r.get_ref(),
                            providers.keys().cloned().collect::<Vec<_>>().join(", ")
                        )))
                    }
                };
                routes.push((members, upstream_model.to_owned()));
            }
            let weights = match &m.weights {
                None => vec![1; routes.len()],
                Some(w) if w.len() != routes.len() || w.contains(&0) => {
                    return Err(invalid(format!(
                        "models.\"{name}\".weights must give each of its {} routes a weight above 0",
                        routes.len()
                    )))
                }
                Some(w) => w.clone(),
            };
            // A pooled route is one route per member, sharing its weight.
            let routes: Vec<(String, String, u64)> = routes
                .into_iter()
                .zip(weights)
                .flat_map(|((members, upstream), w)| {
                    let share = u64::from(w) * WEIGHT_UNIT / members.len().max(1) as u64;
                    members
                        .into_iter()
                        .map(move |p| (p, upstream.clone(), share))
                })
                .collect();
            let input = parse_price(text, path, &name, "input_price", &m.input_price)?;
            let output = parse_price(text, path, &name, "output_price", &m.output_price)?;
            let cache = [
                ("cached_input_price", &m.cached_input_price),
                ("cache_write_price", &m.cache_write_price),
                ("cache_write_1h_price", &m.cache_write_1h_price),
            ]
            .map(|(field, raw)| parse_price(text, path, &name, field, raw));
            let [cached, write, write_1h] = cache;
            let cache = [cached?, write?, write_1h?];
            let prices = model_prices(text, path, &name, &m, input, output, cache)?;
            if name == AUTO_MODEL || name == AUTO_FAST_MODEL {
                return Err(invalid(format!(
                    "models.\"{name}\": the name is reserved for the automatic model; configure it with [auto]"
                )));
            }
            let kind = m.kind.unwrap_or_default();
            let modalities = match &m.modalities {
                None => Modalities::default_for(kind),
                Some(RawModalities { input, output }) => {
                    if input.is_empty() || output.is_empty() {
                        return Err(invalid(format!(
                            "models.\"{name}\".modalities: input and output must each name at least one modality (e.g. [\"text\"])"
                        )));
                    }
                    Modalities {
                        input: input.clone(),
                        output: output.clone(),
                    }
                }
            };
            if m.context_length == Some(0) {
                return Err(invalid(format!(
                    "models.\"{name}\".context_length must be above 0"
                )));
            }
            let routes = routes
                .into_iter()
                .map(|(provider, upstream_model, weight)| {
                    let (t, kind) = (&providers[&provider].timeouts, providers[&provider].kind);
                    let ms =
                        |v: Option<u64>, d: Duration| v.map(Duration::from_millis).unwrap_or(d);
                    Route {
                        timeouts: Timeouts {
                            connect: ms(m.connect_timeout_ms, t.connect),
                            first_token: ms(m.first_token_timeout_ms, t.first_token),
                            idle: ms(m.idle_timeout_ms, t.idle),
                            total: ms(m.total_timeout_ms, t.total),
                        },
                        provider,
                        upstream_model,
                        model: name.clone(),
                        prices: prices.clone().with_cache_defaults(kind.cache_ratios()),
                        weight,
                    }
                })
                .collect::<Vec<_>>();
            let prices = model_cache_prices(prices, &routes);
            models.insert(
                name.clone(),
                Arc::new(ModelConfig {
                    name,
                    routes,
                    prices,
                    max_output_tokens: m.max_output_tokens.unwrap_or(DEFAULT_MAX_OUTPUT),
                    auto: None,
                    kind,
                    context_length: m.context_length.unwrap_or(match kind {
                        ModelKind::Chat => DEFAULT_CONTEXT_LENGTH,
                        ModelKind::Embedding => DEFAULT_EMBEDDING_CONTEXT_LENGTH,
                    }),
                    modalities,
                    reasoning: m.reasoning.unwrap_or(false),
                    commit_after: m.commit_after_ms.map(Duration::from_millis),
                    strategy: m.strategy.unwrap_or_default(),
                    affinity: m.affinity.unwrap_or(true),
                }),
            );
        }
        if let Some(auto) = &raw.auto {
            let chain = auto_chain(text, path, &models, "chain", &auto.chain)?;
            let fast = match &auto.fast {
                Some(f) => auto_chain(text, path, &models, "fast", f)?,
                None => chain.clone(),
            };
            let hedge_after = auto.hedge_after_ms.map(Duration::from_millis);
            for (name, kind, members) in [
                (AUTO_MODEL, AutoKind::Chain, chain),
                (AUTO_FAST_MODEL, AutoKind::Fastest { hedge_after }, fast),
            ] {
                models.insert(name.to_owned(), Arc::new(auto_model(name, kind, &members)));
            }
        }
        let routing = routing_config(raw.routing.unwrap_or_default());
        let server = server_limits(raw.server.take().unwrap_or_default()).map_err(invalid)?;
        let cors = cors_config(raw.cors.take().unwrap_or_default()).map_err(invalid)?;
        let capture = capture_config(raw.capture.take().unwrap_or_default()).map_err(invalid)?;
        let otlp = raw
            .otlp
            .take()
            .map(otlp_config)
            .transpose()
            .map_err(invalid)?;
        let demo_credits = match raw.demo_credits {
            Some(c) => Decimal::from_str(&c)
                .map_err(|_| invalid(format!("demo_credits = \"{c}\" is not a decimal")))?,
            None => Decimal::new(5, 0),
        };
        let instances = match raw.instances.as_deref() {
            None | Some("single") => crate::ledger::Instances::Single,
            // A SQLite database (here, or given with --database) is refused when the ledger opens.
            Some("shared") => crate::ledger::Instances::Shared,
            Some(other) => {
                return Err(invalid(format!(
                    "instances = \"{other}\": expected \"single\" or \"shared\""
                )))
            }
        };
        let durability = match raw.durability.as_deref() {
            None | Some("durable") => crate::ledger::Durability::Durable,
            Some("batched") => crate::ledger::Durability::Batched,
            Some(other) => {
                return Err(invalid(format!(
                    "durability = \"{other}\": expected \"durable\" or \"batched\""
                )))
            }
        };
        Ok(Config {
            listen,
            database,
            journal: raw.journal.take().map(PathBuf::from),
            instances,
            durability,
            redis: raw.redis.take(),
            redis_failure: match raw.redis_failure.as_deref() {
                None | Some("open") => RedisFailure::Open,
                Some("closed") => RedisFailure::Closed,
                Some(other) => {
                    return Err(invalid(format!(
                        "redis_failure = \"{other}\": expected \"open\" or \"closed\""
                    )))
                }
            },
            redis_timeout: match raw.redis_timeout_ms {
                Some(0) => return Err(invalid("redis_timeout_ms must be above 0".into())),
                Some(ms) => Duration::from_millis(ms),
                None => Duration::from_secs(1),
            },
            admin_key: raw.admin_key.as_deref().map(Secret::parse),
            keep_alive: Duration::from_millis(raw.keep_alive_ms.unwrap_or(15_000)),
            max_body_bytes: raw.max_body_bytes.unwrap_or(DEFAULT_MAX_BODY),
            demo_credits,
            providers,
            models,
            routing,
            server,
            cors,
            capture,
            responses: match raw.responses.take() {
                None => ResponsesConfig::default(),
                Some(r) => ResponsesConfig {
                    retention: r
                        .retention_days
                        .map_or(ResponsesConfig::default().retention, |d| {
                            Duration::from_secs(d.saturating_mul(86_400))
                        }),
                    keep_on_revoke: r.keep_on_revoke.unwrap_or(false),
                },
            },
            streams: streams_config(raw.streams.take().unwrap_or_default()).map_err(invalid)?,
            otlp,
            embedded_demo: false,
            demo_tokens_per_second: DEFAULT_DEMO_TOKENS_PER_SECOND,
            event_log: match raw.event_log.take().map(|e| e.path) {
                None => None,
                Some(p) if p == "stdout" => Some(crate::event_log::EventLogTarget::Stdout),
                Some(p) if p.trim().is_empty() => {
                    return Err(invalid(
                        "event_log.path is empty: expected \"stdout\" or a file path".into(),
                    ))
                }
                Some(p) => Some(crate::event_log::EventLogTarget::File(PathBuf::from(p))),
            },
        })
    }

    /// The configuration used when no file is given: the in-process demo upstream serving
    /// `demo-chat`, `demo-reasoner` and the embedding model `demo-embed`, plus every real provider
    /// whose usual key variable is set. `SWITCHYARD_DEMO_TOKENS_PER_SECOND` sets the demo's pace
    /// (default 40, 0 = as fast as possible) and `SWITCHYARD_ADMIN_KEY` the admin key (none: the
    /// admin API answers `admin_disabled`).
    pub fn embedded(demo_base_url: &str) -> Result<Config, ConfigError> {
        let mut text = format!(
            r#"
[providers.{DEMO_PROVIDER}]
kind = "deepseek"
base_url = "{demo_base_url}"

[models."demo-chat"]
routes = ["{DEMO_PROVIDER}/{DEMO_CHAT_ROUTE}"]
input_price = "0.50"
output_price = "1.50"

[models."demo-reasoner"]
routes = ["{DEMO_PROVIDER}/{DEMO_REASONER_ROUTE}"]
input_price = "0.55"
output_price = "2.19"
reasoning = true

[models."demo-embed"]
kind = "embedding"
routes = ["{DEMO_PROVIDER}/demo-embed"]
input_price = "0.02"
"#
        );
        let mut chain = Vec::new();
        if std::env::var_os("OPENAI_API_KEY").is_some() {
            text.push_str(OPENAI_DEFAULTS);
            chain.push("gpt-4o-mini");
        }
        if std::env::var_os("DEEPSEEK_API_KEY").is_some() {
            text.push_str(DEEPSEEK_DEFAULTS);
            chain.push("deepseek-chat");
        }
        if std::env::var_os("ANTHROPIC_API_KEY").is_some() {
            text.push_str(ANTHROPIC_DEFAULTS);
            chain.push("claude-sonnet-4");
        }
        chain.push("demo-chat");
        // The model names the seed documents' examples use are answered by the demo when no real
        // provider serves them, so those examples run offline with only the base URL and key changed.
        for (name, demo) in SEED_MODEL_NAMES {
            if !text.contains(&format!("[models.\"{name}\"]")) {
                let route = if *demo == "demo-reasoner" {
                    DEMO_REASONER_ROUTE
                } else {
                    DEMO_CHAT_ROUTE
                };
                text.push_str(&format!(
                    "\n[models.\"{name}\"]\nroutes = [\"{DEMO_PROVIDER}/{route}\"]\ninput_price = \"0.50\"\noutput_price = \"1.50\"\n"
                ));
            }
        }
        let chain: Vec<String> = chain.iter().map(|m| format!("\"{m}\"")).collect();
        text.push_str(&format!(
            "\n[auto]\nchain = [{}]\nhedge_after_ms = 2000\n",
            chain.join(", ")
        ));
        let mut config =
            Config::parse(&text, "(embedded default)").expect("the embedded default is valid");
        config.embedded_demo = true;
        if let Some(value) = std::env::var_os(DEMO_PACE_VARIABLE) {
            let value = value.to_string_lossy();
            config.demo_tokens_per_second =
                value
                    .trim()
                    .parse::<u32>()
                    .map_err(|_| ConfigError::Invalid {
                        path: "(embedded default)".to_owned(),
                        message: format!(
                        "{DEMO_PACE_VARIABLE} = \"{value}\": expected a whole number of tokens per second (0 = as fast as possible)"
                    ),
                    })?;
        }
        if std::env::var_os(ADMIN_KEY_VARIABLE).is_some() {
            config.admin_key = Some(Secret::Env(ADMIN_KEY_VARIABLE.to_owned()));
        }
        Ok(config)
    }
}

/// The configured models named by `[auto].<field>`, in order.
fn auto_chain(
    text: &str,
    path: &str,
    models: &BTreeMap<String, Arc<ModelConfig>>,
    field: &str,
    names: &[toml::Spanned<String>],
) -> Result<Vec<Arc<ModelConfig>>, ConfigError> {
    let invalid = |message: String| ConfigError::Invalid {
        path: path.to_owned(),
        message,
    };
    if names.is_empty() {
        return Err(invalid(format!("auto.{field} is empty")));
    }
    names
        .iter()
        .map(|n| {
            if let Some(m) = models.get(n.get_ref()).filter(|m| m.kind != ModelKind::Chat) {
                return Err(invalid(format!(
                    "line {}: auto.{field} names model \"{}\", an embedding model; the chain takes chat models only",
                    line_of(text, n.span().start),
                    m.name
                )));
            }
            models.get(n.get_ref()).cloned().ok_or_else(|| {
                invalid(format!(
                    "line {}: auto.{field} names model \"{}\", which is not defined (known: {})",
                    line_of(text, n.span().start),
                    n.get_ref(),
                    models.keys().cloned().collect::<Vec<_>>().join(", ")
                ))
            })
        })
        .collect()
}

/// A model's own prices (what holds and `/v1/models` read) once its routes have their cache
/// defaults: the first route's read price, and the dearest route's write prices, so that a hold
/// covers a prompt written to the cache wherever it is served.
fn model_cache_prices(mut prices: Prices, routes: &[Route]) -> Prices {
    let Some(first) = routes.first() else {
        return prices;
    };
    prices.cached_input = first.prices.cached_input;
    let dearest =
        |get: fn(&Prices) -> Option<Decimal>| routes.iter().filter_map(|r| get(&r.prices)).max();
    prices.cache_write = dearest(|p| p.cache_write);
    prices.cache_write_1h = dearest(|p| p.cache_write_1h);
    prices
}

/// An automatic model: the routes of its members in order; holds priced at the dearest member.
fn auto_model(name: &str, kind: AutoKind, members: &[Arc<ModelConfig>]) -> ModelConfig {
    let routes: Vec<Route> = members.iter().flat_map(|m| m.routes.clone()).collect();
    let mut prices = Prices::default();
    for m in members {
        prices.input = prices.input.max(m.prices.input);
        prices.output = prices.output.max(m.prices.output);
        let dearer = |a: Option<Decimal>, b: Option<Decimal>| match (a, b) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        prices.cached_input = dearer(prices.cached_input, m.prices.cached_input);
        prices.cache_write = dearer(prices.cache_write, m.prices.cache_write);
        prices.cache_write_1h = dearer(prices.cache_write_1h, m.prices.cache_write_1h);
    }
    ModelConfig {
        name: name.to_owned(),
        routes,
        prices,
        max_output_tokens: members
            .iter()
            .map(|m| m.max_output_tokens)
            .max()
            .unwrap_or(0),
        auto: Some(kind),
        kind: ModelKind::Chat,
        context_length: members
            .iter()
            .map(|m| m.context_length)
            .min()
            .unwrap_or(DEFAULT_CONTEXT_LENGTH),
        modalities: Modalities::default_for(ModelKind::Chat),
        reasoning: members.iter().any(|m| m.reasoning),
        // The chain's members may differ; an automatic model follows `[routing]`.
        commit_after: None,
        strategy: Strategy::Failover,
        affinity: true,
    }
}

/// A provider's read limits: the defaults, overridden by what it sets; none may be 0.
fn provider_limits(name: &str, p: &RawProvider) -> Result<UpstreamLimits, String> {
    let d = UpstreamLimits::default();
    let pick = |field: &str, v: Option<usize>, d: usize| match v {
        Some(0) => Err(format!("providers.{name}.{field} must be above 0")),
        v => Ok(v.unwrap_or(d)),
    };
    Ok(UpstreamLimits {
        sse: switchyard_wire::sse::Limits {
            max_line: pick("max_sse_line_bytes", p.max_sse_line_bytes, d.sse.max_line)?,
            max_event: pick(
                "max_sse_event_bytes",
                p.max_sse_event_bytes,
                d.sse.max_event,
            )?,
        },
        response: pick("max_response_bytes", p.max_response_bytes, d.response)?,
        error_body: pick("max_error_body_bytes", p.max_error_body_bytes, d.error_body)?,
    })
}

fn routing_config(r: RawRouting) -> RoutingConfig {
    let d = RoutingConfig::default();
    let ms = |v: Option<u64>, d: Duration| v.map(Duration::from_millis).unwrap_or(d);
    RoutingConfig {
        max_attempts: r.max_attempts.map(|n| n.max(1)),
        retry_budget: ms(r.retry_budget_ms, d.retry_budget),
        backoff_base: ms(r.backoff_base_ms, d.backoff_base),
        backoff_max: ms(r.backoff_max_ms, d.backoff_max),
        max_retry_after: ms(r.max_retry_after_ms, d.max_retry_after),
        served_headers: r.served_headers.unwrap_or(d.served_headers),
        commit_after: ms(r.commit_after_ms, d.commit_after),
        breaker: BreakerConfig {
            failures: r.breaker_failures.unwrap_or(d.breaker.failures).max(1),
            window: r.breaker_window.unwrap_or(d.breaker.window).max(1),
            error_percent: r
                .breaker_error_percent
                .unwrap_or(d.breaker.error_percent)
                .clamp(1, 100),
            min_requests: r
                .breaker_min_requests
                .unwrap_or(d.breaker.min_requests)
                .max(1),
            cooldown: ms(r.breaker_cooldown_ms, d.breaker.cooldown),
        },
    }
}

const DEFAULT_MAX_OUTPUT: u64 = 32_768;
const DEFAULT_MAX_BODY: usize = 8 * 1024 * 1024;

/// The demo upstream's models. The demo reads no option from a request (not even a route's model
/// suffix): its pace is set on the demo itself from `demo_tokens_per_second`.
const DEMO_CHAT_ROUTE: &str = "demo-chat";
const DEMO_REASONER_ROUTE: &str = "demo-reasoner";

/// The demo's pace when nothing says otherwise: a person can watch the tokens arrive.
pub const DEFAULT_DEMO_TOKENS_PER_SECOND: u32 = 40;
/// The variable the embedded default reads the demo's pace from.
const DEMO_PACE_VARIABLE: &str = "SWITCHYARD_DEMO_TOKENS_PER_SECOND";
/// The variable the embedded default reads its admin key from.
const ADMIN_KEY_VARIABLE: &str = "SWITCHYARD_ADMIN_KEY";

/// Model names used by the seed documents' examples and the coding agents' defaults, and the demo
/// model that answers each of them in the embedded default when no real provider serves it.
const SEED_MODEL_NAMES: &[(&str, &str)] = &[
    ("gpt-4o", "demo-chat"),
    ("claude-sonnet-4-5", "demo-chat"),
    ("gemini-2.5-flash", "demo-chat"),
    ("gpt-4", "demo-chat"),
    ("gpt-5.4", "demo-chat"),
    ("claude-sonnet-4", "demo-chat"),
    ("deepseek-chat", "demo-chat"),
    ("deepseek-reasoner", "demo-reasoner"),
];

const OPENAI_DEFAULTS: &str = r#"
[providers.openai]
kind = "openai"
base_url = "https://api.openai.com/v1"
api_key = "env:OPENAI_API_KEY"

[models."gpt-4o"]
routes = ["openai/gpt-4o"]
input_price = "2.50"
output_price = "10.00"
cached_input_price = "1.25"

[models."gpt-4o-mini"]
routes = ["openai/gpt-4o-mini"]
input_price = "0.15"
output_price = "0.60"
cached_input_price = "0.075"
"#;

const DEEPSEEK_DEFAULTS: &str = r#"
[providers.deepseek]
kind = "deepseek"
base_url = "https://api.deepseek.com/v1"
api_key = "env:DEEPSEEK_API_KEY"

[models."deepseek-chat"]
routes = ["deepseek/deepseek-chat"]
input_price = "0.27"
output_price = "1.10"
cached_input_price = "0.07"

[models."deepseek-reasoner"]
routes = ["deepseek/deepseek-reasoner"]
input_price = "0.55"
output_price = "2.19"
cached_input_price = "0.14"
"#;

const ANTHROPIC_DEFAULTS: &str = r#"
[providers.anthropic]
kind = "anthropic"
base_url = "https://api.anthropic.com/v1"
api_key = "env:ANTHROPIC_API_KEY"

[models."claude-sonnet-4"]
routes = ["anthropic/claude-sonnet-4-20250514"]
input_price = "3.00"
output_price = "15.00"
cached_input_price = "0.30"
"#;

/// A secret of the configuration that cannot be resolved: where it is configured, where it comes
/// from (`env:NAME`, `file:PATH`, `cmd:…`) and why, never its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretProblem {
    /// `providers.NAME.api_key` or `admin_key`.
    pub setting: String,
    /// The error, which names the reference and never the value.
    pub message: String,
}

impl std::fmt::Display for SecretProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.setting, self.message)
    }
}

impl Config {
    /// Every secret of the configuration with the setting it belongs to and how long it may take
    /// to resolve (a provider's `credential_timeout`, else the default).
    pub fn secrets(&self) -> Vec<(String, &Secret, Duration)> {
        let mut out: Vec<(String, &Secret, Duration)> = self
            .providers
            .values()
            .filter_map(|p| {
                p.api_key.as_ref().map(|s| {
                    (
                        format!("providers.{}.api_key", p.name),
                        s,
                        p.credential_timeout,
                    )
                })
            })
            .collect();
        if let Some(s) = &self.admin_key {
            out.push(("admin_key".to_owned(), s, DEFAULT_CREDENTIAL_TIMEOUT));
        }
        out
    }

    /// Resolves every secret at once (each `cmd:` within its timeout, only with `run_commands`)
    /// and returns those that do not resolve, by setting, in config order. What `switchyard
    /// check` verifies; it runs no command unless asked (`--resolve-secrets`), so checking a
    /// config one does not trust never runs it.
    pub async fn unresolvable_secrets(&self, run_commands: bool) -> Vec<SecretProblem> {
        let checks = self
            .secrets()
            .into_iter()
            .filter(|(_, secret, _)| run_commands || !matches!(secret, Secret::Cmd(_)))
            .map(|(setting, secret, timeout)| async move {
                let resolved = if setting == "admin_key" {
                    resolve_admin_key(secret).await
                } else {
                    secret.resolve_within(timeout).await
                };
                resolved.err().map(|e| SecretProblem {
                    setting,
                    message: e.to_string(),
                })
            });
        futures_util::future::join_all(checks)
            .await
            .into_iter()
            .flatten()
            .collect()
    }

    /// For a reload: the settings that only a restart can change take `running`'s values here,
    /// and their names are returned when the file asks for something else. Everything else
    /// (providers, models, prices, routing, provider quotas, the admin key, `keep_alive_ms`,
    /// `max_body_bytes`) is this config's own.
    pub fn keep_restart_settings(&mut self, running: &Config) -> Vec<&'static str> {
        let mut kept = Vec::new();
        macro_rules! keep {
            ($($field:ident),*) => {$(
                if self.$field != running.$field {
                    kept.push(stringify!($field));
                    self.$field = running.$field.clone();
                }
            )*};
        }
        keep!(
            listen,
            database,
            journal,
            instances,
            durability,
            redis,
            redis_failure,
            redis_timeout,
            streams,
            server,
            cors,
            event_log,
            capture,
            otlp,
            embedded_demo
        );
        // Only used to fill a fresh database: nothing to apply, nothing to report.
        self.demo_credits = running.demo_credits;
        kept
    }
}

fn toml_error(text: &str, e: &toml::de::Error) -> String {
    match e.span() {
        Some(span) => format!("line {}: {}", line_of(text, span.start), e.message()),
        None => e.message().to_owned(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn native_responses_defaults_to_openai_itself_only() {
        use super::{native_responses, ProviderKind as K};
        let openai = "https://api.openai.com/v1";
        assert_eq!(native_responses(K::OpenAi, openai, None), Ok(true));
        assert_eq!(native_responses(K::OpenAi, openai, Some(false)), Ok(false));
        for other in [
            "http://127.0.0.1:8000/v1",
            "https://api.openai.com.example/v1",
            "https://proxy.example/api.openai.com/v1",
        ] {
            assert_eq!(
                native_responses(K::OpenAi, other, None),
                Ok(false),
                "{other}"
            );
        }
        assert_eq!(
            native_responses(K::OpenAi, "http://127.0.0.1:1/v1", Some(true)),
            Ok(true)
        );
        assert_eq!(native_responses(K::DeepSeek, openai, None), Ok(false));
        assert!(native_responses(K::Anthropic, "https://x", Some(true)).is_err());
    }

    use super::*;

    const GOOD: &str = r#"
listen = "127.0.0.1:9000"
[providers.openai]
kind = "openai"
base_url = "https://api.openai.com/v1/"
api_key = "env:SOME_KEY"

[models."gpt-4o"]
routes = ["openai/gpt-4o"]
input_price = "2.50"
output_price = "10.00"
"#;

    #[test]
    fn capture_and_otlp_are_off_or_bounded() {
        let c = Config::parse(GOOD, "t.toml").unwrap();
        assert!(c.otlp.is_none());
        assert_eq!(c.capture, CaptureConfig::default());
        let with = |extra: &str| Config::parse(&format!("{GOOD}\n{extra}"), "t.toml");
        let c = with(
            "[capture]\nmax_bytes = 1024\nredact = [\"secret-\\\\d+\"]\n\
             [otlp]\nendpoint = \"http://collector:4318/\"\nsample_ratio = 0.5\n\
             headers = { \"x-token\" = \"env:OTLP_TOKEN\" }",
        )
        .unwrap();
        assert_eq!(c.capture.max_bytes, 1024);
        assert_eq!(c.capture.redact, vec![r"secret-\d+".to_owned()]);
        let o = c.otlp.unwrap();
        assert_eq!(o.endpoint, "http://collector:4318");
        assert_eq!(o.service_name, "switchyard");
        assert_eq!(o.headers["x-token"].describe(), "env:OTLP_TOKEN");
        for (bad, says) in [
            ("[capture]\nredact = [\"(\"]", "capture.redact"),
            ("[capture]\nmax_retention_hours = 0", "max_retention_hours"),
            (
                "[capture]\nmax_retention_hours = 24\ndefault_retention_hours = 48",
                "default_retention_hours",
            ),
            ("[capture]\nmax_bytes = 10", "capture.max_bytes"),
            ("[otlp]\nendpoint = \"collector:4318\"", "otlp.endpoint"),
            (
                "[otlp]\nendpoint = \"http://c:4318\"\nsample_ratio = 2.0",
                "sample_ratio",
            ),
            (
                "[otlp]\nendpoint = \"http://c:4318\"\nprotocol = \"grpc\"",
                "protocol",
            ),
        ] {
            let e = with(bad).unwrap_err().to_string();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn a_gemini_provider_needs_no_base_url_and_others_do() {
        let gemini = "[providers.g]\nkind = \"gemini\"\napi_key = \"env:GEMINI_API_KEY\"\n\
            [models.flash]\nroutes = [\"g/gemini-2.5-flash\"]\ninput_price = \"0.30\"\noutput_price = \"2.50\"\n";
        let c = Config::parse(gemini, "t.toml").unwrap();
        let p = &c.providers["g"];
        assert_eq!(p.kind, ProviderKind::Gemini);
        assert_eq!(p.base_url, GEMINI_BASE_URL);
        let openai = gemini.replace("\"gemini\"", "\"openai\"");
        let e = Config::parse(&openai, "t.toml").unwrap_err().to_string();
        assert!(e.contains("providers.g.base_url is required"), "{e}");
    }

    #[test]
    fn parses_a_good_config() {
        let c = Config::parse(GOOD, "t.toml").unwrap();
        assert_eq!(c.listen.port(), 9000);
        let p = &c.providers["openai"];
        assert_eq!(p.base_url, "https://api.openai.com/v1");
        assert_eq!(p.api_key, Some(Secret::Env("SOME_KEY".into())));
        let m = &c.models["gpt-4o"];
        assert_eq!(m.routes[0].upstream_model, "gpt-4o");
        assert_eq!(m.prices.output, Decimal::new(1000, 2));
    }

    #[test]
    fn durability_is_durable_unless_batched_is_asked_for() {
        use crate::ledger::Durability;
        assert_eq!(
            Config::parse(GOOD, "t.toml").unwrap().durability,
            Durability::Durable
        );
        let batched = format!("durability = \"batched\"\n{GOOD}");
        assert_eq!(
            Config::parse(&batched, "t.toml").unwrap().durability,
            Durability::Batched
        );
        let wrong = format!("durability = \"lazy\"\n{GOOD}");
        let e = Config::parse(&wrong, "t.toml").unwrap_err().to_string();
        assert!(e.contains("durability = \"lazy\""), "{e}");
    }

    #[test]
    fn instances_are_single_unless_shared_is_asked_for() {
        use crate::ledger::Instances;
        assert_eq!(
            Config::parse(GOOD, "t.toml").unwrap().instances,
            Instances::Single
        );
        let shared = format!("instances = \"shared\"\n{GOOD}");
        assert_eq!(
            Config::parse(&shared, "t.toml").unwrap().instances,
            Instances::Shared
        );
        let wrong = format!("instances = \"many\"\n{GOOD}");
        let e = Config::parse(&wrong, "t.toml").unwrap_err().to_string();
        assert!(e.contains("instances = \"many\""), "{e}");
    }

    #[test]
    fn server_limits_have_defaults_and_can_be_set() {
        let c = Config::parse(GOOD, "t.toml").unwrap();
        assert_eq!(c.server, ServerLimits::default());
        assert_eq!(c.server.header_read_timeout, Duration::from_secs(10));
        assert_eq!(c.server.max_connections_per_ip, Some(1_024));
        let text = format!(
            "{GOOD}\n[server]\nheader_read_timeout_ms = 500\nbody_read_timeout_ms = 600\nidle_timeout_ms = 700\nmax_connections = 5\nmax_connections_per_ip = 0\nmax_header_bytes = 4096\nslow_reader_timeout_ms = 800\nshutdown_grace_ms = 900\ntrusted_proxies = [\"10.0.0.0/8\", \"192.0.2.7\"]\nadmin_lockout_after = 0\nadmin_lockout_ms = 1000\n"
        );
        let s = Config::parse(&text, "t.toml").unwrap().server;
        assert_eq!(
            s,
            ServerLimits {
                header_read_timeout: Duration::from_millis(500),
                body_read_timeout: Duration::from_millis(600),
                idle_timeout: Duration::from_millis(700),
                max_connections: 5,
                max_connections_per_ip: None,
                max_header_bytes: 4096,
                slow_reader_timeout: Duration::from_millis(800),
                shutdown_grace: Duration::from_millis(900),
                trusted_proxies: vec![
                    "10.0.0.0/8".parse().unwrap(),
                    "192.0.2.7/32".parse().unwrap()
                ],
                admin_lockout_after: 0,
                admin_lockout: Duration::from_secs(1),
            }
        );
    }

    #[test]
    fn meaningless_server_limits_are_refused_by_name() {
        for (line, names) in [
            (
                "slow_reader_timeout_ms = 0",
                "server.slow_reader_timeout_ms",
            ),
            ("max_connections = 0", "server.max_connections"),
            ("max_header_bytes = 10", "server.max_header_bytes"),
            ("header_timeout_ms = 5", "header_timeout_ms"),
            (
                "trusted_proxies = [\"nginx\"]",
                "server.trusted_proxies: \"nginx\"",
            ),
        ] {
            let text = format!("{GOOD}\n[server]\n{line}\n");
            let e = Config::parse(&text, "t.toml").unwrap_err().to_string();
            assert!(e.contains(names), "{line}: {e}");
        }
    }

    #[test]
    fn unknown_keys_are_reported_with_their_line() {
        let text = GOOD.replace("kind = \"openai\"", "kind = \"openai\"\ncolour = \"blue\"");
        let e = Config::parse(&text, "t.toml").unwrap_err().to_string();
        assert!(e.contains("line 5"), "{e}");
        assert!(e.contains("colour"), "{e}");
    }

    #[test]
    fn bad_routes_and_prices_are_reported_with_their_line() {
        let e = Config::parse(&GOOD.replace("openai/gpt-4o\"", "nope/gpt-4o\""), "t.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 9") && e.contains("nope"), "{e}");
        let e = Config::parse(&GOOD.replace("\"2.50\"", "\"cheap\""), "t.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 10") && e.contains("cheap"), "{e}");
        let e = Config::parse(&GOOD.replace("\"openai\"\n", "\"palm\"\n"), "t.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 4"), "{e}");
    }

    /// Found by the `config` fuzz target: this price was accepted, and pricing a request at it
    /// overflowed `Decimal` (a panic on every request for the model).
    #[test]
    fn a_price_too_large_to_compute_with_is_refused_with_its_line() {
        let text = GOOD.replace("\"10.00\"", "\"222222222222222222222222209.00\"");
        let e = Config::parse(&text, "t.toml").unwrap_err().to_string();
        assert!(e.contains("line 11") && e.contains("output_price"), "{e}");
        assert!(e.contains("largest price"), "{e}");
        // The largest price accepted prices the most tokens there are without overflowing.
        let text = GOOD.replace("\"10.00\"", "\"1000000\"");
        let c = Config::parse(&text, "t.toml").unwrap();
        let prices = &c.models["gpt-4o"].prices;
        assert_eq!(prices.output, MAX_PRICE);
        let cost = prices.worst_case(u64::MAX, u64::MAX);
        assert_eq!(
            cost,
            crate::ledger::Nanos(i64::MAX),
            "saturates, never panics"
        );
    }

    #[test]
    fn a_model_without_prices_is_an_error_unless_free() {
        let unpriced = GOOD
            .replace("input_price = \"2.50\"\n", "")
            .replace("output_price = \"10.00\"\n", "");
        let e = Config::parse(&unpriced, "t.toml").unwrap_err().to_string();
        assert!(
            e.contains("t.toml") && e.contains("line 9") && e.contains("models.\"gpt-4o\""),
            "{e}"
        );
        assert!(e.contains("free = true"), "{e}");
        let half = GOOD.replace("output_price = \"10.00\"\n", "");
        let e = Config::parse(&half, "t.toml").unwrap_err().to_string();
        assert!(e.contains("output_price") && e.contains("gpt-4o"), "{e}");

        let free = format!("{unpriced}free = true\n");
        let c = Config::parse(&free, "t.toml").unwrap();
        assert_eq!(c.models["gpt-4o"].prices, Prices::default());
        let both = format!("{GOOD}free = true\n");
        let e = Config::parse(&both, "t.toml").unwrap_err().to_string();
        assert!(e.contains("line 12") && e.contains("free"), "{e}");
        let not_free = format!("{unpriced}free = false\n");
        assert!(Config::parse(&not_free, "t.toml").is_err());
    }

    #[test]
    fn commit_after_defaults_to_ten_seconds_a_model_may_override_it_and_zero_is_never() {
        let c = Config::parse(GOOD, "t.toml").unwrap();
        let m = &c.models["gpt-4o"];
        assert_eq!(m.commit_after(&c.routing), Some(Duration::from_secs(10)));
        let text = format!("{GOOD}commit_after_ms = 2500\n[routing]\ncommit_after_ms = 0\n");
        let c = Config::parse(&text, "t.toml").unwrap();
        let m = &c.models["gpt-4o"];
        assert_eq!(
            m.commit_after(&c.routing),
            Some(Duration::from_millis(2500))
        );
        let text = format!("{GOOD}commit_after_ms = 0\n[routing]\ncommit_after_ms = 700\n");
        let c = Config::parse(&text, "t.toml").unwrap();
        assert_eq!(c.models["gpt-4o"].commit_after(&c.routing), None);
    }

    #[test]
    fn model_timeouts_override_the_providers_and_auto_is_validated() {
        let text = format!(
            "{GOOD}first_token_timeout_ms = 250\n[providers.openai2]\nkind = \"openai\"\nbase_url = \"http://x/v1\"\nidle_timeout_ms = 7\n[auto]\nchain = [\"gpt-4o\"]\nhedge_after_ms = 90\n[routing]\nserved_headers = false\n"
        );
        let c = Config::parse(&text, "t.toml").unwrap();
        let route = &c.models["gpt-4o"].routes[0];
        assert_eq!(route.timeouts.first_token, Duration::from_millis(250));
        assert_eq!(route.timeouts.idle, Timeouts::default().idle);
        assert_eq!(c.models["auto"].routes.len(), 1);
        assert_eq!(
            c.models["auto-fast"].auto,
            Some(AutoKind::Fastest {
                hedge_after: Some(Duration::from_millis(90))
            })
        );
        assert!(!c.routing.served_headers);
        let e = Config::parse(&format!("{GOOD}[auto]\nchain = [\"nope\"]\n"), "t.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 13") && e.contains("nope"), "{e}");
        let e = Config::parse(&GOOD.replace("models.\"gpt-4o\"", "models.auto"), "t.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("reserved"), "{e}");
    }

    #[test]
    fn redis_failure_and_provider_quotas_are_read_and_checked() {
        let c = Config::parse(GOOD, "t.toml").unwrap();
        assert_eq!(c.redis_failure, RedisFailure::Open);
        assert_eq!(
            (c.providers["openai"].rpm, c.providers["openai"].tpm),
            (None, None)
        );
        let closed = format!("redis_failure = \"closed\"\n{GOOD}");
        assert_eq!(
            Config::parse(&closed, "t.toml").unwrap().redis_failure,
            RedisFailure::Closed
        );
        let wrong = format!("redis_failure = \"maybe\"\n{GOOD}");
        let e = Config::parse(&wrong, "t.toml").unwrap_err().to_string();
        assert!(e.contains("redis_failure") && e.contains("maybe"), "{e}");
        let quota = GOOD.replace(
            "kind = \"openai\"\n",
            "kind = \"openai\"\nrpm = 500\ntpm = 90000\n",
        );
        let c = Config::parse(&quota, "t.toml").unwrap();
        assert_eq!(
            (c.providers["openai"].rpm, c.providers["openai"].tpm),
            (Some(500), Some(90000))
        );
        let zero = GOOD.replace("kind = \"openai\"\n", "kind = \"openai\"\nrpm = 0\n");
        let e = Config::parse(&zero, "t.toml").unwrap_err().to_string();
        assert!(e.contains("providers.openai.rpm"), "{e}");
    }

    #[test]
    fn provider_read_limits_have_defaults_and_refuse_zero() {
        let c = Config::parse(GOOD, "t.toml").unwrap();
        let p = &c.providers["openai"];
        assert_eq!(p.limits, UpstreamLimits::default());
        assert_eq!(p.limits.sse.max_line, 1024 * 1024);
        assert_eq!(p.credential_timeout, DEFAULT_CREDENTIAL_TIMEOUT);
        let text = GOOD.replace(
            "kind = \"openai\"\n",
            "kind = \"openai\"\nmax_sse_line_bytes = 100\nmax_error_body_bytes = 7\ncredential_timeout_ms = 250\n",
        );
        let c = Config::parse(&text, "t.toml").unwrap();
        let p = &c.providers["openai"];
        assert_eq!((p.limits.sse.max_line, p.limits.error_body), (100, 7));
        assert_eq!(p.limits.response, UpstreamLimits::default().response);
        assert_eq!(p.credential_timeout, Duration::from_millis(250));
        let zero = GOOD.replace(
            "kind = \"openai\"\n",
            "kind = \"openai\"\nmax_response_bytes = 0\n",
        );
        let e = Config::parse(&zero, "t.toml").unwrap_err().to_string();
        assert!(e.contains("providers.openai.max_response_bytes"), "{e}");
    }

    #[tokio::test]
    async fn a_command_secret_that_hangs_is_killed_at_its_timeout() {
        let pid_file =
            std::env::temp_dir().join(format!("sy-cmd-{}-{}", std::process::id(), line!()));
        // The shell starts a child that would outlive it unless the whole group is killed.
        let s = Secret::parse(&format!(
            "cmd:sh -c 'echo $$ > {}; exec sleep 600' & wait",
            pid_file.display()
        ));
        let e = s
            .resolve_within(Duration::from_millis(300))
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("did not finish within 300 ms"), "{e}");
        let pid = std::fs::read_to_string(&pid_file).unwrap();
        std::fs::remove_file(&pid_file).ok();
        let stat = format!("/proc/{}/stat", pid.trim());
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        // Gone, or a zombie waiting for its reaper: either way no longer running.
        while std::fs::read_to_string(&stat).is_ok_and(|s| !s.contains(") Z ")) {
            assert!(
                std::time::Instant::now() < deadline,
                "the command's child still runs"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[test]
    fn secrets_never_show_their_value() {
        let s = Secret::parse("sk-live-123");
        assert_eq!(format!("{s:?}"), "a literal value");
    }

    #[tokio::test]
    async fn secrets_resolve_from_file_and_command() {
        let path = std::env::temp_dir().join(format!("sy-secret-{}", std::process::id()));
        std::fs::write(&path, "from-file\n").unwrap();
        let s = Secret::parse(&format!("file:{}", path.display()));
        assert_eq!(s.resolve().await.unwrap(), "from-file");
        assert_eq!(Secret::parse("cmd:echo hi").resolve().await.unwrap(), "hi");
        assert!(Secret::parse("env:SWITCHYARD_SURELY_UNSET_VAR")
            .resolve()
            .await
            .is_err());
        std::fs::remove_file(path).ok();
    }

    #[test]
    fn embedded_default_serves_the_demo_models() {
        let c = Config::embedded("http://127.0.0.1:1/v1").unwrap();
        assert!(c.models.contains_key("demo-chat") && c.models.contains_key("demo-reasoner"));
        assert!(c.embedded_demo);
        // Every model name the seeds' examples use is served, by a real provider or the demo.
        for (name, _) in SEED_MODEL_NAMES {
            assert!(c.models.contains_key(*name), "{name}");
        }
        assert_eq!(c.models["demo-embed"].kind, ModelKind::Embedding);
        assert!(c.models["demo-reasoner"].reasoning);
    }

    #[test]
    fn embedding_models_need_only_an_input_price_and_stay_out_of_auto() {
        let embed = format!(
            "{GOOD}\n[models.e]\nkind = \"embedding\"\nroutes = [\"openai/text-embedding-3-small\"]\ninput_price = \"0.02\"\n"
        );
        let c = Config::parse(&embed, "t.toml").unwrap();
        let e = &c.models["e"];
        assert_eq!(
            (e.kind, e.prices.output),
            (ModelKind::Embedding, Decimal::ZERO)
        );
        assert_eq!(e.context_length, DEFAULT_EMBEDDING_CONTEXT_LENGTH);
        assert_eq!(e.modalities.output, ["embeddings"]);
        // A chat model still needs both prices.
        let chat = embed.replace("kind = \"embedding\"\n", "");
        let err = Config::parse(&chat, "t.toml").unwrap_err().to_string();
        assert!(err.contains("has no output_price"), "{err}");
        let auto = format!("{embed}\n[auto]\nchain = [\"gpt-4o\", \"e\"]\n");
        let err = Config::parse(&auto, "t.toml").unwrap_err().to_string();
        assert!(err.contains("an embedding model"), "{err}");
    }

    #[test]
    fn model_capabilities_have_defaults_and_are_checked() {
        let c = Config::parse(GOOD, "t.toml").unwrap();
        let m = &c.models["gpt-4o"];
        assert_eq!(
            (m.kind, m.context_length, m.reasoning),
            (ModelKind::Chat, DEFAULT_CONTEXT_LENGTH, false)
        );
        assert_eq!(m.modalities, Modalities::default_for(ModelKind::Chat));
        let set = GOOD.replace(
            "output_price = \"10.00\"\n",
            "output_price = \"10.00\"\ncontext_length = 1000\nreasoning = true\nmodalities = { input = [\"text\", \"image\"], output = [\"text\"] }\n",
        );
        let m = Config::parse(&set, "t.toml").unwrap().models["gpt-4o"].clone();
        assert_eq!((m.context_length, m.reasoning), (1000, true));
        assert_eq!(m.modalities.input, ["text", "image"]);
        for bad in [
            "context_length = 0\n",
            "modalities = { input = [], output = [\"text\"] }\n",
            "kind = \"audio\"\n",
        ] {
            let text = GOOD.replace(
                "output_price = \"10.00\"\n",
                &format!("output_price = \"10.00\"\n{bad}"),
            );
            assert!(Config::parse(&text, "t.toml").is_err(), "{bad}");
        }
    }
}

#[cfg(test)]
mod pool_tests {
    use super::*;

    const POOL: &str = r#"
[providers.anthropic]
kind = "anthropic"
base_url = "https://api.anthropic.com/v1"
api_keys = ["env:A", "env:B"]

[providers.openai]
kind = "openai"
base_url = "https://api.openai.com/v1"
api_key = "env:C"

[models.claude]
routes = ["anthropic/claude-sonnet-4-5", "openai/gpt-5"]
strategy = "balance"
weights = [2, 1]
input_price = "3"
output_price = "15"
"#;

    #[test]
    fn a_key_pool_is_a_member_per_key_splitting_its_routes_weight() {
        let c = Config::parse(POOL, "t.toml").unwrap();
        let m = &c.models["claude"];
        let routes: Vec<(String, u64)> = m.routes.iter().map(|r| (r.key(), r.weight)).collect();
        assert_eq!(
            routes,
            [
                ("anthropic#1/claude-sonnet-4-5".to_owned(), WEIGHT_UNIT),
                ("anthropic#2/claude-sonnet-4-5".to_owned(), WEIGHT_UNIT),
                ("openai/gpt-5".to_owned(), WEIGHT_UNIT),
            ]
        );
        assert_eq!(m.strategy, Strategy::Balance);
        assert!(m.affinity);
        assert!(c.providers.contains_key("anthropic#2") && !c.providers.contains_key("anthropic"));
        // Anthropic's writes on its routes; the model's hold covers the dearest route's.
        assert_eq!(m.routes[0].prices.cache_write_1h, Some(Decimal::from(6)));
        assert_eq!(m.prices.cache_write_1h, Some(Decimal::from(6)));
    }

    #[test]
    fn pools_and_weights_are_checked() {
        for (bad, says) in [
            (
                POOL.replace(
                    "api_keys = [\"env:A\", \"env:B\"]",
                    "api_key = \"x\"\napi_keys = [\"y\"]",
                ),
                "not both",
            ),
            (
                POOL.replace("[\"env:A\", \"env:B\"]", "[]"),
                "api_keys is empty",
            ),
            (POOL.replace("weights = [2, 1]", "weights = [1]"), "weights"),
            (
                POOL.replace("weights = [2, 1]", "weights = [1, 0]"),
                "weights",
            ),
            (
                POOL.replace("\"balance\"", "\"random\""),
                "expected `failover` or `balance`",
            ),
        ] {
            let e = Config::parse(&bad, "t.toml").unwrap_err().to_string();
            assert!(e.contains(says), "{says}: {e}");
        }
    }
}
