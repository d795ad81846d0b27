//! The kinds a config file names: a provider's dialect, a model's kind and its routing strategy.

use serde::Deserialize;

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
    pub fn cache_ratios(self) -> crate::store::ledger::CacheRatios {
        use crate::store::ledger::CacheRatios;
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
