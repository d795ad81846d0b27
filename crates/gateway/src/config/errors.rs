//! The errors of a configuration: what is wrong, and on which line of the file.

use std::path::PathBuf;

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

/// The shortest admin key accepted: 24 characters (`openssl rand -hex 24` gives 48), so that it
/// cannot be guessed even at the full speed of many addresses.
pub const MIN_ADMIN_KEY_CHARS: usize = 24;

/// The line (from 1) that byte `offset` of `text` is on.
pub(super) fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

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

/// A TOML error as the user reads it: with its line when it has one.
pub(super) fn toml_error(text: &str, e: &toml::de::Error) -> String {
    match e.span() {
        Some(span) => format!("line {}: {}", line_of(text, span.start), e.message()),
        None => e.message().to_owned(),
    }
}

/// What turns a message into a `ConfigError::Invalid` of the file at `path`.
pub(super) fn invalid(path: &str) -> impl Fn(String) -> ConfigError + '_ {
    move |message| ConfigError::Invalid {
        path: path.to_owned(),
        message,
    }
}
