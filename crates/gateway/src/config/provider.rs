//! `[providers.NAME]`: the upstreams, their dialect, time and read limits, and their validation.

use std::time::Duration;

use super::kinds::ProviderKind;
use super::secrets::Secret;

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
pub(super) fn native_responses(
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
    pub(super) fn for_provider(
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
