//! Upstream adapters: for each configured provider, the URL, the credential and the HTTP call, and
//! the classification of what came back (retryable or not, and why).
//!
//! One `reqwest` client with a connection pool is shared by every provider; credentials are
//! resolved at start and re-resolved once when an upstream answers 401.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::Bytes;

use crate::config::{Config, ProviderConfig, ProviderKind};

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
}

impl UpstreamError {
    /// Whether another route (or the same one, later) may succeed where this failed.
    pub fn is_retryable(&self) -> bool {
        match self {
            UpstreamError::Connect(_)
            | UpstreamError::Timeout
            | UpstreamError::Body(_)
            | UpstreamError::Credential(_) => true,
            // 402: the operator's own account with that provider cannot pay; another route can.
            UpstreamError::Status { status, .. } => {
                matches!(status, 401 | 402 | 403 | 408 | 409 | 429) || *status >= 500
            }
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

/// A configured provider with its current credential.
pub struct Provider {
    pub config: Arc<ProviderConfig>,
    credential: RwLock<Option<String>>,
    /// Bumped on every successful refresh, so that concurrent 401s refresh only once.
    generation: AtomicU64,
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

    /// Re-reads the credential from its source (env, file, or command).
    pub async fn refresh_credential(&self) -> Result<(), UpstreamError> {
        let Some(secret) = &self.config.api_key else {
            return Ok(());
        };
        let value = secret
            .resolve()
            .await
            .map_err(|e| UpstreamError::Credential(e.to_string()))?;
        if let Ok(mut c) = self.credential.write() {
            *c = Some(value);
        }
        self.generation.fetch_add(1, Ordering::AcqRel);
        Ok(())
    }

    /// Which credential a request is about to use (see [`Provider::refresh_after_rejection`]).
    pub fn credential_generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Re-resolves the credential after the upstream refused the one of generation `seen`, unless
    /// another request already did so meanwhile: many requests failing at once re-run a `cmd:`
    /// source only once.
    pub async fn refresh_after_rejection(&self, seen: u64) -> Result<(), UpstreamError> {
        let _one_at_a_time = self.refreshing.lock().await;
        if self.credential_generation() != seen {
            return Ok(());
        }
        self.refresh_credential().await
    }

    fn credential(&self) -> Option<String> {
        self.credential.read().ok().and_then(|c| c.clone())
    }

    /// The endpoint for a chat request in this provider's dialect.
    pub fn chat_url(&self) -> String {
        match self.config.kind {
            ProviderKind::OpenAi | ProviderKind::DeepSeek => {
                format!("{}/chat/completions", self.config.base_url)
            }
            ProviderKind::Anthropic => format!("{}/messages", self.config.base_url),
        }
    }

    /// Sends a request body (already in this provider's dialect) to the chat endpoint and returns
    /// the response once its headers arrived with a success status, before `deadline`; any other
    /// status is an error carrying the body.
    pub async fn send(
        &self,
        client: &reqwest::Client,
        body: Vec<u8>,
        stream: bool,
        deadline: tokio::time::Instant,
    ) -> Result<reqwest::Response, UpstreamError> {
        let mut req = client
            .post(self.chat_url())
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
        let key = self.credential();
        req = match (self.config.kind, key) {
            (ProviderKind::Anthropic, Some(key)) => req
                .header("x-api-key", key)
                .header("anthropic-version", ANTHROPIC_VERSION),
            (ProviderKind::Anthropic, None) => req.header("anthropic-version", ANTHROPIC_VERSION),
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
        let body = tokio::time::timeout_at(body_by, resp.bytes())
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or_default();
        Err(UpstreamError::Status {
            status: status.as_u16(),
            body,
            retry_after,
        })
    }
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
        let mut by_name = BTreeMap::new();
        let mut problems = Vec::new();
        for (name, pc) in &config.providers {
            let provider = Arc::new(Provider {
                config: pc.clone(),
                credential: RwLock::new(None),
                generation: AtomicU64::new(0),
                refreshing: tokio::sync::Mutex::new(()),
            });
            if let Err(e) = provider.refresh_credential().await {
                problems.push(format!("provider {name}: {e}"));
            }
            by_name.insert(name.clone(), provider);
        }
        (
            Providers {
                client,
                clients,
                by_name,
            },
            problems,
        )
    }

    pub fn get(&self, name: &str) -> Option<&Arc<Provider>> {
        self.by_name.get(name)
    }

    /// Every provider, by name.
    pub fn all(&self) -> impl Iterator<Item = &Arc<Provider>> {
        self.by_name.values()
    }

    /// The client whose connect timeout is `connect`.
    pub fn client_for(&self, connect: Duration) -> &reqwest::Client {
        self.clients.get(&connect).unwrap_or(&self.client)
    }
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
        assert!(!s(400).is_retryable() && !s(404).is_retryable() && !s(422).is_retryable());
    }
}
