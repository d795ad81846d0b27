//! Configuration: the TOML file as written (`raw`, serde) turned into a validated `Config`
//! (`validate` and the sections' files), plus the embedded default used when no file is given
//! (`embedded`). This module and its children are the only ones that read the environment
//! (secret references `env:`, `file:` and `cmd:` are resolved in `secrets`).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rust_decimal::Decimal;

mod embedded;
mod errors;
mod kinds;
mod model;
mod models;
mod observe;
mod prices;
mod provider;
mod providers;
mod raw;
mod reload;
mod route_id;
mod routing;
mod secrets;
mod server;
mod streams;
#[cfg(test)]
mod tests;
mod validate;

pub use errors::{ConfigError, SecretProblem, MIN_ADMIN_KEY_CHARS};
pub use kinds::{ModelKind, ProviderKind, Strategy, GEMINI_BASE_URL};
pub use model::{
    AutoKind, Modalities, ModelConfig, Route, DEFAULT_CONTEXT_LENGTH,
    DEFAULT_EMBEDDING_CONTEXT_LENGTH, WEIGHT_UNIT,
};
pub use observe::{CaptureConfig, OtlpConfig, REDACT_CARD, REDACT_EMAIL};
pub use provider::{ProviderConfig, RequestIdHeader, Timeouts, UpstreamLimits};
pub use route_id::RouteId;
pub use routing::{BreakerConfig, RoutingConfig};
pub use secrets::{
    resolve_admin_key, Secret, DEFAULT_CREDENTIAL_REFRESH_INTERVAL, DEFAULT_CREDENTIAL_TIMEOUT,
};
pub use server::{CorsConfig, ServerLimits};
pub use streams::{ResponsesConfig, StreamsConfig};

/// `SWITCHYARD_JOURNAL_FAULTS=KIND:EVERY` (KIND `partial`, `nospace` or `fsync`): the journal's
/// fault-injection seam, on for `scripts/chaos`; never set in production.
pub fn journal_faults() -> Option<(crate::store::ledger::journal::Fault, u32)> {
    let plan = std::env::var("SWITCHYARD_JOURNAL_FAULTS").ok()?;
    let (kind, every) = plan.split_once(':')?;
    Some((
        crate::store::ledger::journal::Fault::parse(kind)?,
        every.parse().ok().filter(|n| *n > 0)?,
    ))
}

/// The names of the automatic models.
pub const AUTO_MODEL: &str = "auto";
pub const AUTO_FAST_MODEL: &str = "auto-fast";

/// What the rate limits do while Redis cannot be reached (`redis_failure`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum RedisFailure {
    /// Admit without limits (the default): counted in `switchyard_limits_fail_open_total`.
    #[default]
    Open,
    /// Refuse limited keys' requests with a 503 until Redis is back.
    Closed,
}

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub database: String,
    /// The settlement journal's file (`ledger::journal`); by default next to a SQLite database,
    /// or `switchyard.journal` in the working directory for PostgreSQL.
    pub journal: Option<PathBuf>,
    /// `instances = "shared"`: several instances on one PostgreSQL database take their holds
    /// there (`ledger::shared_holds`); `"single"` (the default) keeps them in memory.
    pub instances: crate::store::ledger::Instances,
    /// `durability = "durable"` (the default: a whole answer leaves once its entry is durable) or
    /// `"batched"` (it leaves at once; the entry is committed within the writer's next batch).
    pub durability: crate::store::ledger::Durability,
    pub redis: Option<String>,
    /// What the rate limits do while `redis` cannot be reached.
    pub redis_failure: RedisFailure,
    /// The longest a request waits on Redis (connecting or a command) before `redis_failure`
    /// applies: a hung Redis (stopped, not gone) costs no request more (`redis_timeout_ms`,
    /// default 1 s).
    pub redis_timeout: Duration,
    /// `key_refresh_ms`: how often keys and balances changed by another process are re-read when
    /// no change feed says so (SQLite always; PostgreSQL while its feed is down). Default: keys
    /// every 3 s, an account at admission once 2 s old.
    pub key_refresh: Option<Duration>,
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

pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
pub const DEFAULT_DATABASE: &str = "sqlite://switchyard.db";
/// The provider name of the in-process demo upstream.
pub const DEMO_PROVIDER: &str = "demo";

/// The demo's pace when nothing says otherwise: a person can watch the tokens arrive.
pub const DEFAULT_DEMO_TOKENS_PER_SECOND: u32 = 40;
