//! The configuration file as written: serde structs that reject unknown keys.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::kinds::{ModelKind, ProviderKind, Strategy};

/// The whole file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    pub(super) listen: Option<String>,
    pub(super) database: Option<String>,
    pub(super) journal: Option<String>,
    pub(super) instances: Option<String>,
    pub(super) durability: Option<String>,
    pub(super) redis: Option<String>,
    pub(super) redis_failure: Option<String>,
    pub(super) redis_timeout_ms: Option<u64>,
    pub(super) key_refresh_ms: Option<u64>,
    pub(super) admin_key: Option<String>,
    pub(super) keep_alive_ms: Option<u64>,
    pub(super) max_body_bytes: Option<usize>,
    pub(super) demo_credits: Option<String>,
    #[serde(default)]
    pub(super) providers: BTreeMap<String, RawProvider>,
    #[serde(default)]
    pub(super) models: BTreeMap<String, RawModel>,
    pub(super) routing: Option<RawRouting>,
    pub(super) auto: Option<RawAuto>,
    pub(super) server: Option<RawServer>,
    pub(super) cors: Option<RawCors>,
    pub(super) event_log: Option<RawEventLog>,
    pub(super) capture: Option<RawCapture>,
    pub(super) otlp: Option<RawOtlp>,
    pub(super) responses: Option<RawResponses>,
    pub(super) streams: Option<RawStreams>,
}

/// `[streams]`: streams that outlive their connection (resumable streams, background Responses).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStreams {
    pub(super) resume_grace_ms: Option<u64>,
    pub(super) replay_max_stream_bytes: Option<usize>,
    pub(super) replay_max_total_bytes: Option<usize>,
    pub(super) replay_keep_finished_ms: Option<u64>,
}

/// `[responses]`: how long stored Responses API conversations are kept.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawResponses {
    pub(super) retention_days: Option<u64>,
    pub(super) keep_on_revoke: Option<bool>,
}

/// `[otlp]`: trace export (off unless `endpoint` is set).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawOtlp {
    pub(super) endpoint: String,
    #[serde(default)]
    pub(super) headers: BTreeMap<String, String>,
    pub(super) service_name: Option<String>,
    pub(super) sample_ratio: Option<f64>,
}

/// `[capture]`: how captured prompt and completion text is kept (capture itself is per key).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCapture {
    pub(super) max_bytes: Option<usize>,
    pub(super) default_retention_hours: Option<i64>,
    pub(super) max_retention_hours: Option<i64>,
    pub(super) redact: Option<Vec<String>>,
}

/// `[cors]`: which web origins may call the gateway from a browser.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCors {
    pub(super) allowed_origins: Option<Vec<String>>,
    pub(super) admin_origins: Option<Vec<String>>,
    pub(super) ops_origins: Option<Vec<String>>,
}

/// `[event_log]`: the request records as JSON lines.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawEventLog {
    /// `"stdout"` or a file path (appended to).
    pub(super) path: String,
}

/// `[server]`: the limits of the client-facing listener.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawServer {
    pub(super) header_read_timeout_ms: Option<u64>,
    pub(super) body_read_timeout_ms: Option<u64>,
    pub(super) idle_timeout_ms: Option<u64>,
    pub(super) max_connections: Option<usize>,
    pub(super) max_connections_per_ip: Option<usize>,
    pub(super) max_header_bytes: Option<usize>,
    pub(super) slow_reader_timeout_ms: Option<u64>,
    pub(super) shutdown_grace_ms: Option<u64>,
    pub(super) trusted_proxies: Option<Vec<String>>,
    pub(super) admin_lockout_after: Option<u32>,
    pub(super) admin_lockout_ms: Option<u64>,
}

/// `[routing]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRouting {
    pub(super) max_attempts: Option<u32>,
    pub(super) retry_budget_ms: Option<u64>,
    pub(super) backoff_base_ms: Option<u64>,
    pub(super) backoff_max_ms: Option<u64>,
    pub(super) max_retry_after_ms: Option<u64>,
    pub(super) served_headers: Option<bool>,
    pub(super) breaker_failures: Option<u32>,
    pub(super) breaker_window: Option<u32>,
    pub(super) breaker_error_percent: Option<u32>,
    pub(super) breaker_min_requests: Option<u32>,
    pub(super) breaker_cooldown_ms: Option<u64>,
    pub(super) commit_after_ms: Option<u64>,
}

/// `[auto]`: the automatic models' members.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAuto {
    pub(super) chain: Vec<toml::Spanned<String>>,
    pub(super) fast: Option<Vec<toml::Spanned<String>>>,
    pub(super) hedge_after_ms: Option<u64>,
}

/// `[providers.NAME]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawProvider {
    pub(super) kind: ProviderKind,
    pub(super) base_url: Option<String>,
    pub(super) api_key: Option<String>,
    /// A pool of upstream keys: the provider becomes one member per key (`name#1`, `name#2`, …),
    /// each with its own health and quota, and a route naming it one route per member.
    pub(super) api_keys: Option<Vec<String>>,
    pub(super) connect_timeout_ms: Option<u64>,
    pub(super) first_token_timeout_ms: Option<u64>,
    pub(super) idle_timeout_ms: Option<u64>,
    pub(super) total_timeout_ms: Option<u64>,
    pub(super) max_sse_line_bytes: Option<usize>,
    pub(super) max_sse_event_bytes: Option<usize>,
    pub(super) max_response_bytes: Option<usize>,
    pub(super) max_error_body_bytes: Option<usize>,
    pub(super) credential_timeout_ms: Option<u64>,
    pub(super) credential_refresh_interval_ms: Option<u64>,
    pub(super) rpm: Option<u64>,
    pub(super) tpm: Option<u64>,
    /// The header that carries the request id upstream ("" = none); see `RequestIdHeader`.
    pub(super) request_id_header: Option<String>,
    /// Send the request id as a UUID (derived from the gateway's id when it is not one).
    pub(super) request_id_uuid: Option<bool>,
    /// The provider also serves `/responses`: Responses requests pass through natively.
    pub(super) native_responses: Option<bool>,
}

/// `[models."NAME"]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawModel {
    pub(super) routes: Vec<toml::Spanned<String>>,
    pub(super) input_price: Option<toml::Spanned<String>>,
    pub(super) output_price: Option<toml::Spanned<String>>,
    pub(super) cached_input_price: Option<toml::Spanned<String>>,
    /// Prompt tokens written to the provider's cache (5-minute writes), and written for an hour.
    pub(super) cache_write_price: Option<toml::Spanned<String>>,
    pub(super) cache_write_1h_price: Option<toml::Spanned<String>>,
    /// A model without prices must say so: `free = true`.
    pub(super) free: Option<toml::Spanned<bool>>,
    pub(super) max_output_tokens: Option<u64>,
    pub(super) connect_timeout_ms: Option<u64>,
    pub(super) first_token_timeout_ms: Option<u64>,
    pub(super) idle_timeout_ms: Option<u64>,
    pub(super) total_timeout_ms: Option<u64>,
    /// `"chat"` (the default) or `"embedding"` (served by `/v1/embeddings`, priced per input token).
    pub(super) kind: Option<ModelKind>,
    /// What `/v1/models` says the model offers.
    pub(super) context_length: Option<u64>,
    pub(super) modalities: Option<RawModalities>,
    pub(super) reasoning: Option<bool>,
    /// Overrides `[routing] commit_after_ms` for this model (0 = never commit early).
    pub(super) commit_after_ms: Option<u64>,
    /// `failover` (the default: routes in order) or `balance` (weighted across the routes).
    pub(super) strategy: Option<Strategy>,
    /// One weight per route for `balance` (default: equal).
    pub(super) weights: Option<Vec<u32>>,
    /// A conversation sticks to the route that served its last turn (default: true).
    pub(super) affinity: Option<bool>,
}

/// A model's `modalities`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawModalities {
    pub(super) input: Vec<String>,
    pub(super) output: Vec<String>,
}

impl RawProvider {
    /// A provider of `kind` at `base_url` using `api_key`, every other setting left out.
    pub(super) fn new(kind: ProviderKind, base_url: &str, api_key: Option<&str>) -> RawProvider {
        RawProvider {
            kind,
            base_url: Some(base_url.to_owned()),
            api_key: api_key.map(str::to_owned),
            api_keys: None,
            connect_timeout_ms: None,
            first_token_timeout_ms: None,
            idle_timeout_ms: None,
            total_timeout_ms: None,
            max_sse_line_bytes: None,
            max_sse_event_bytes: None,
            max_response_bytes: None,
            max_error_body_bytes: None,
            credential_timeout_ms: None,
            credential_refresh_interval_ms: None,
            rpm: None,
            tpm: None,
            request_id_header: None,
            request_id_uuid: None,
            native_responses: None,
        }
    }
}
