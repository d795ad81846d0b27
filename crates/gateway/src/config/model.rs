//! A configured model and its routes: what `/v1/models` lists and routing serves.

use std::time::Duration;

use super::kinds::{ModelKind, Strategy};
use super::provider::Timeouts;
use super::route_id::RouteId;
use super::routing::RoutingConfig;
use crate::store::ledger::Prices;

/// One configured weight in `Route::weight`: divisible by every pool size up to 16.
pub const WEIGHT_UNIT: u64 = 720_720;

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

/// One place a model can be served from: a provider and the model's name there, with the time
/// limits (the provider's, overridden by the model's) and the prices of the model it belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// `provider/upstream-model`, made once when the config is loaded.
    pub id: RouteId,
    /// The configured model this route serves (differs from the requested one for `auto` models).
    pub model: String,
    pub prices: Prices,
    pub timeouts: Timeouts,
    /// Its share of a `balance` model's requests, in parts of `WEIGHT_UNIT` per configured weight
    /// (a pool's members split their route's).
    pub weight: u64,
}

impl Route {
    /// `provider/upstream-model`, the route's name in health reports (shared, not copied).
    pub fn key(&self) -> &RouteId {
        &self.id
    }

    /// The provider's name.
    pub fn provider(&self) -> &str {
        self.id.provider()
    }

    /// The model's name at the provider.
    pub fn upstream_model(&self) -> &str {
        self.id.upstream_model()
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
