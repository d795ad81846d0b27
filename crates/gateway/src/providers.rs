//! Upstream adapters: for each configured provider, the URL, the credential and the HTTP call, and
//! the classification of what came back (`cause.rs`: the route's failure or the request's own).
//!
//! One `reqwest` client with a connection pool is shared by every provider; credentials are
//! resolved at start and re-resolved once when an upstream answers 401. A `cmd:` credential runs
//! within the provider's `credential_timeout`; requests keep using the current credential while it
//! runs, and those that need the new one wait for the one refresh in flight, never for a queue of
//! them: a refresh that failed answers the same failure at once for one more timeout.
//! Every body read from an upstream is bounded (`config::UpstreamLimits`).

pub(crate) mod cause;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tokio::time::Instant;

use bytes::{Bytes, BytesMut};

use crate::config::{Config, ProviderConfig, ProviderKind};
use cause::{Blame, Cause};

/// Why an upstream call failed before a streamed response could start.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("could not connect to the upstream: {0}")]
    Connect(String),
    #[error("the upstream did not answer in time")]
    Timeout,
    #[error("the upstream answered {status}")]
    Status {
        status: u16,
        body: Bytes,
        retry_after: Option<Duration>,
    },
    #[error("the upstream response was cut off or malformed: {0}")]
    Body(String),
    #[error("the provider has no usable credential: {0}")]
    Credential(String),
    /// A body past the provider's limit (`max_response_bytes`, `max_error_body_bytes`,
    /// `max_sse_line_bytes`, `max_sse_event_bytes`).
    #[error("{0}")]
    TooLarge(String),
}

impl UpstreamError {
    /// Whose failure this is (see `cause.rs`).
    pub fn cause(&self) -> Cause {
        match self {
            UpstreamError::Connect(_)
            | UpstreamError::Body(_)
            | UpstreamError::Credential(_)
            | UpstreamError::TooLarge(_) => Cause::Route(Blame::Route),
            // A prompt too big to reach its first token in time times out on every route.
            UpstreamError::Timeout => Cause::Route(Blame::Unclear),
            UpstreamError::Status { status, body, .. } => cause::of_status(*status, body),
        }
    }

    /// Whether another route (or the same one, later) may succeed where this failed: every
    /// failure of the route; never a refusal of the request itself.
    pub fn is_retryable(&self) -> bool {
        matches!(self.cause(), Cause::Route(_))
    }

    /// The HTTP status the upstream answered, when it answered one.
    pub fn upstream_status(&self) -> Option<u16> {
        match self {
            UpstreamError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    fn from_reqwest(e: reqwest::Error) -> UpstreamError {
        if e.is_timeout() {
            UpstreamError::Timeout
        } else if e.is_connect() {
            UpstreamError::Connect(without_url(&e))
        } else {
            UpstreamError::Body(without_url(&e))
        }
    }
}

/// A reqwest error's text without the URL (which could carry a credential in its query).
pub fn without_url(e: &reqwest::Error) -> String {
    let mut e = e.to_string();
    if let Some(i) = e.find(" for url (") {
        e.truncate(i);
    }
    e
}

/// Reads a whole body of at most `limit` bytes by `deadline`. `what` names it in the error.
pub async fn read_bounded(
    mut resp: reqwest::Response,
    limit: usize,
    deadline: tokio::time::Instant,
    what: &str,
) -> Result<Bytes, UpstreamError> {
    let too_large = || {
        UpstreamError::TooLarge(format!(
            "the upstream's {what} is larger than the limit of {limit} bytes"
        ))
    };
    let declared = resp.content_length();
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    let mut body = BytesMut::with_capacity(declared.map_or(0, |n| n as usize).min(limit));
    loop {
        match tokio::time::timeout_at(deadline, resp.chunk()).await {
            Err(_) => return Err(UpstreamError::Timeout),
            Ok(Err(e)) => return Err(UpstreamError::Body(without_url(&e))),
            Ok(Ok(None)) => return Ok(body.freeze()),
            Ok(Ok(Some(chunk))) => {
                if body.len() + chunk.len() > limit {
                    return Err(too_large());
                }
                body.extend_from_slice(&chunk);
            }
        }
    }
}

/// A configured provider with its current credential.
pub struct Provider {
    pub config: Arc<ProviderConfig>,
    credential: RwLock<Option<String>>,
    /// Bumped on every successful refresh, so that concurrent 401s refresh only once.
    generation: AtomicU64,
    /// Bumped at the end of every refresh, successful or not.
    refreshes: AtomicU64,
    /// The last refresh that failed: when it ended and why.
    refresh_failed: Mutex<Option<(Instant, String)>>,
    /// When a `cmd:` credential was last re-run because the upstream refused it.
    rerun_after_rejection: Mutex<Option<Instant>>,
    refreshing: tokio::sync::Mutex<()>,
}

/// The `anthropic-version` header sent to Anthropic.
pub const ANTHROPIC_VERSION: &str = "2023-06-01";

impl Provider {
    pub fn name(&self) -> &str {
        &self.config.name
    }

    pub fn kind(&self) -> ProviderKind {
        self.config.kind
    }

    fn new(config: Arc<ProviderConfig>) -> Provider {
        Provider {
            config,
            credential: RwLock::new(None),
            generation: AtomicU64::new(0),
            refreshes: AtomicU64::new(0),
            refresh_failed: Mutex::new(None),
            rerun_after_rejection: Mutex::new(None),
            refreshing: tokio::sync::Mutex::new(()),
        }
    }

    /// Re-reads the credential from its source (env, file, or a command run within the
    /// provider's `credential_timeout`). The current credential stays in use meanwhile.
    pub async fn refresh_credential(&self) -> Result<(), UpstreamError> {
        let Some(secret) = &self.config.api_key else {
            return Ok(());
        };
        let resolved = secret.resolve_within(self.config.credential_timeout).await;
        let result = match resolved {
            Ok(value) => {
                if let Ok(mut c) = self.credential.write() {
                    *c = Some(value);
                }
                self.generation.fetch_add(1, Ordering::AcqRel);
                if let Ok(mut f) = self.refresh_failed.lock() {
                    *f = None;
                }
                Ok(())
            }
            Err(e) => {
                let why = e.to_string();
                if let Ok(mut f) = self.refresh_failed.lock() {
                    *f = Some((Instant::now(), why.clone()));
                }
                Err(UpstreamError::Credential(why))
            }
        };
        self.refreshes.fetch_add(1, Ordering::AcqRel);
        result
    }

    /// Which credential a request is about to use (see [`Provider::refresh_after_rejection`]).
    pub fn credential_generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Re-resolves the credential after the upstream refused the one of generation `seen`, unless
    /// another request already did so meanwhile: many requests failing at once re-run a `cmd:`
    /// source only once, and wait at most for that one run. A refresh that failed while this one
    /// waited, or less than one `credential_timeout` ago, is answered at once with its failure.
    /// `Ok(true)`: a credential newer than `seen` is in place, worth one more try; `Ok(false)`: a
    /// `cmd:` credential was already re-run within `credential_refresh_interval`, so the refusal
    /// stands (an upstream that keeps answering 401 does not run the command per request).
    pub async fn refresh_after_rejection(&self, seen: u64) -> Result<bool, UpstreamError> {
        let refreshes = self.refreshes.load(Ordering::Acquire);
        let _one_at_a_time = self.refreshing.lock().await;
        if self.credential_generation() != seen {
            return Ok(true);
        }
        let failed = self.refresh_failed.lock().ok().and_then(|f| f.clone());
        if let Some((at, why)) = failed {
            let ran_meanwhile = self.refreshes.load(Ordering::Acquire) != refreshes;
            if ran_meanwhile || at.elapsed() < self.config.credential_timeout {
                return Err(UpstreamError::Credential(why));
            }
        }
        if matches!(self.config.api_key, Some(crate::config::Secret::Cmd(_))) {
            let mut last = self
                .rerun_after_rejection
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            if last.is_some_and(|at| at.elapsed() < self.config.credential_refresh_interval) {
                return Ok(false);
            }
            *last = Some(Instant::now());
        }
        self.refresh_credential().await.map(|()| true)
    }

    fn credential(&self) -> Option<String> {
        self.credential.read().ok().and_then(|c| c.clone())
    }

    /// The endpoint for a chat request in this provider's dialect (Gemini names the model and
    /// whether the answer streams in the URL).
    pub fn chat_url(&self, model: &str, stream: bool) -> String {
        match self.config.kind {
            ProviderKind::OpenAi | ProviderKind::DeepSeek => {
                format!("{}/chat/completions", self.config.base_url)
            }
            ProviderKind::Anthropic => format!("{}/messages", self.config.base_url),
            ProviderKind::Gemini if stream => format!(
                "{}/models/{}:streamGenerateContent?alt=sse",
                self.config.base_url,
                model_path(model)
            ),
            ProviderKind::Gemini => format!(
                "{}/models/{}:generateContent",
                self.config.base_url,
                model_path(model)
            ),
        }
    }

    /// The endpoint for an embeddings request (OpenAI dialect; `None` for Anthropic, which has no
    /// embeddings API).
    pub fn embeddings_url(&self) -> Option<String> {
        match self.config.kind {
            ProviderKind::OpenAi | ProviderKind::DeepSeek => {
                Some(format!("{}/embeddings", self.config.base_url))
            }
            ProviderKind::Anthropic | ProviderKind::Gemini => None,
        }
    }

    /// Whether this provider can serve `endpoint`.
    pub fn serves(&self, endpoint: Endpoint) -> bool {
        match endpoint {
            Endpoint::Chat => true,
            Endpoint::Embeddings => self.embeddings_url().is_some(),
            Endpoint::Responses => self.config.native_responses,
        }
    }

    /// Sends a request body (already in this provider's dialect) to `endpoint` and returns
    /// the response once its headers arrived with a success status, before `deadline`; any other
    /// status is an error carrying the body. Headers sent: content-type, accept, the credential
    /// and, where the provider takes one, the request id (the id the client sees: its own when
    /// valid, else the gateway's) in the header and form it accepts (`RequestIdHeader`); no
    /// other client header is ever forwarded. `model` is the upstream's name for the model (Gemini
    /// puts it in the URL).
    #[allow(clippy::too_many_arguments)]
    pub async fn send_to(
        &self,
        client: &reqwest::Client,
        endpoint: Endpoint,
        model: &str,
        body: Bytes,
        stream: bool,
        deadline: tokio::time::Instant,
        request_id: &str,
    ) -> Result<reqwest::Response, UpstreamError> {
        let url = match endpoint {
            Endpoint::Chat => self.chat_url(model, stream),
            Endpoint::Embeddings => self.embeddings_url().ok_or_else(|| {
                UpstreamError::Connect("this provider has no embeddings API".into())
            })?,
            Endpoint::Responses => format!("{}/responses", self.config.base_url),
        };
        let mut req = client
            .post(url)
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(
                http::header::ACCEPT,
                if stream {
                    "text/event-stream"
                } else {
                    "application/json"
                },
            )
            .body(body);
        if let Some(h) = &self.config.request_id {
            req = if h.uuid {
                req.header(h.name.as_str(), as_uuid(request_id))
            } else {
                req.header(h.name.as_str(), request_id)
            };
        }
        let key = self.credential();
        req = match (self.config.kind, key) {
            (ProviderKind::Anthropic, Some(key)) => req
                .header("x-api-key", key)
                .header("anthropic-version", ANTHROPIC_VERSION),
            (ProviderKind::Anthropic, None) => req.header("anthropic-version", ANTHROPIC_VERSION),
            (ProviderKind::Gemini, Some(key)) => req.header("x-goog-api-key", key),
            (ProviderKind::Gemini, None) => req,
            (_, Some(key)) => req.bearer_auth(key),
            (_, None) => req,
        };
        let resp = match tokio::time::timeout_at(deadline, req.send()).await {
            Ok(r) => r.map_err(UpstreamError::from_reqwest)?,
            Err(_) => return Err(UpstreamError::Timeout),
        };
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        let retry_after = resp
            .headers()
            .get(http::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<f64>().ok())
            .filter(|s| s.is_finite() && *s >= 0.0)
            .map(|s| Duration::from_millis((s.min(86_400.0) * 1000.0) as u64));
        let body_by = deadline.min(tokio::time::Instant::now() + Duration::from_secs(10));
        let limit = self.config.limits.error_body;
        let body = match read_bounded(resp, limit, body_by, "error body").await {
            Ok(body) => body,
            Err(e @ UpstreamError::TooLarge(_)) => return Err(e),
            // The status says enough when its body is cut off or slow.
            Err(_) => Bytes::new(),
        };
        Err(UpstreamError::Status {
            status: status.as_u16(),
            body,
            retry_after,
        })
    }
}

/// A model name as one URL path segment: characters outside the unreserved set and `.` are
/// percent-encoded, so a configured name can never change the path or add a query.
fn model_path(model: &str) -> String {
    let model = model.strip_prefix("models/").unwrap_or(model);
    let mut out = String::with_capacity(model.len());
    for b in model.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Which upstream API a request goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// Chat completions (or Anthropic Messages).
    Chat,
    /// OpenAI-dialect embeddings.
    Embeddings,
    /// OpenAI's Responses API (`{base_url}/responses`), for a provider with `native_responses`.
    Responses,
}

/// All providers and the shared HTTP clients (one connection pool per connect timeout in use).
pub struct Providers {
    /// The client for the longest connect timeout configured.
    pub client: reqwest::Client,
    clients: BTreeMap<Duration, reqwest::Client>,
    by_name: BTreeMap<String, Arc<Provider>>,
}

fn http_client(connect: Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .connect_timeout(connect)
        .tcp_nodelay(true)
        .pool_idle_timeout(Duration::from_secs(90))
        .build()
        .expect("the HTTP client builds with static settings")
}

impl Providers {
    /// Builds the providers and resolves their credentials. A credential that cannot be resolved
    /// is reported in the returned list and leaves that provider to fail (and fail over) at call time.
    pub async fn new(config: &Config) -> (Providers, Vec<String>) {
        let mut clients = BTreeMap::new();
        let connects = config.providers.values().map(|p| p.timeouts.connect).chain(
            config
                .models
                .values()
                .flat_map(|m| m.routes.iter().map(|r| r.timeouts.connect)),
        );
        for connect in connects {
            clients
                .entry(connect)
                .or_insert_with(|| http_client(connect));
        }
        let client = clients
            .values()
            .next_back()
            .cloned()
            .unwrap_or_else(|| http_client(Duration::from_secs(10)));
        let by_name: BTreeMap<String, Arc<Provider>> = config
            .providers
            .iter()
            .map(|(name, pc)| (name.clone(), Arc::new(Provider::new(pc.clone()))))
            .collect();
        // All at once: a slow `cmd:` delays the start by its own timeout, not by the sum of them.
        let resolved = futures_util::future::join_all(
            by_name
                .iter()
                .map(|(name, p)| async move { (name, p.refresh_credential().await) }),
        )
        .await;
        let problems = resolved
            .into_iter()
            .filter_map(|(name, r)| r.err().map(|e| format!("provider {name}: {e}")))
            .collect();
        (
            Providers {
                client,
                clients,
                by_name,
            },
            problems,
        )
    }

    /// The providers of a reloaded `config`: a provider configured exactly as before keeps its
    /// `Provider` (credential, refresh state); a new or changed one is built with its credential
    /// resolved now. Connection pools are kept for the connect timeouts still in use. Returns the
    /// names of the providers built anew, or, when any of their credentials does not resolve, why
    /// (by setting and reference, never a value), and nothing changes.
    pub async fn carry_over(
        &self,
        config: &Config,
    ) -> Result<(Providers, Vec<String>), Vec<crate::config::SecretProblem>> {
        let mut by_name = BTreeMap::new();
        let mut rebuilt = Vec::new();
        for (name, pc) in &config.providers {
            match self.by_name.get(name) {
                Some(old) if old.config == *pc => {
                    by_name.insert(name.clone(), old.clone());
                }
                _ => {
                    rebuilt.push(name.clone());
                    by_name.insert(name.clone(), Arc::new(Provider::new(pc.clone())));
                }
            }
        }
        let resolved = futures_util::future::join_all(rebuilt.iter().map(|name| {
            let p = &by_name[name];
            async move { (name, p.refresh_credential().await) }
        }))
        .await;
        let problems: Vec<_> = resolved
            .into_iter()
            .filter_map(|(name, r)| {
                r.err().map(|e| crate::config::SecretProblem {
                    setting: format!("providers.{name}.api_key"),
                    message: match e {
                        UpstreamError::Credential(why) => why,
                        other => other.to_string(),
                    },
                })
            })
            .collect();
        if !problems.is_empty() {
            return Err(problems);
        }
        let mut clients = BTreeMap::new();
        let connects = config.providers.values().map(|p| p.timeouts.connect).chain(
            config
                .models
                .values()
                .flat_map(|m| m.routes.iter().map(|r| r.timeouts.connect)),
        );
        for connect in connects {
            let kept = self.clients.get(&connect).cloned();
            clients
                .entry(connect)
                .or_insert_with(|| kept.unwrap_or_else(|| http_client(connect)));
        }
        let client = clients
            .values()
            .next_back()
            .cloned()
            .unwrap_or_else(|| self.client.clone());
        Ok((
            Providers {
                client,
                clients,
                by_name,
            },
            rebuilt,
        ))
    }

    pub fn get(&self, name: &str) -> Option<&Arc<Provider>> {
        self.by_name.get(name)
    }

    /// The client whose connect timeout is `connect`.
    pub fn client_for(&self, connect: Duration) -> &reqwest::Client {
        self.clients.get(&connect).unwrap_or(&self.client)
    }
}

/// `id` as a UUID: itself when it is one, else a UUID made from its SHA-256 (version 8, the
/// RFC 9562 form for names hashed another way), the same for the same id every time.
pub fn as_uuid(id: &str) -> String {
    let is_uuid = id.len() == 36
        && id.char_indices().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == '-',
            _ => c.is_ascii_hexdigit(),
        });
    if is_uuid {
        return id.to_owned();
    }
    use sha2::Digest;
    let mut b: [u8; 16] = sha2::Sha256::digest(id.as_bytes())[..16]
        .try_into()
        .unwrap_or_default();
    b[6] = (b[6] & 0x0f) | 0x80;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retryable_statuses() {
        let s = |status| UpstreamError::Status {
            status,
            body: Bytes::new(),
            retry_after: None,
        };
        assert!(s(500).is_retryable() && s(529).is_retryable() && s(429).is_retryable());
        assert!(
            s(402).is_retryable(),
            "the provider account ran dry: another route may serve"
        );
        assert!(
            s(404).is_retryable() && s(403).is_retryable(),
            "the route's model or permission: another route may serve"
        );
        assert!(!s(400).is_retryable() && !s(422).is_retryable());
        assert!(UpstreamError::TooLarge("x".into()).is_retryable());
    }
}
