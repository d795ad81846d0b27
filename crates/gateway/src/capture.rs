//! Per-key capture of prompt and completion text, off unless an operator turns it on for one key
//! (`PATCH /admin/keys/{id}` `"capture": {"enabled": true, "retention_hours": 24}`). A request
//! admitted for such a key carries a `Ticket`; at settlement the ticket sends the request's
//! messages and the text the meter already kept (nothing more is done per chunk) through a
//! bounded channel to one task, which redacts (every known secret via `redact::mask`, anything
//! shaped like an API key or bearer token, and the `[capture] redact` patterns: emails and
//! card-number-like digit runs by default), truncates to `[capture] max_bytes` and stores the
//! result in the database (`store::Captures`). The same task purges expired captures every `PURGE_EVERY`. When the
//! task falls behind by `QUEUE` captures, further ones are dropped and counted in a warning: the
//! request path never waits for capture.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use regex::Regex;
use serde_json::Value;
use tokio::sync::mpsc;

use crate::clock::now_ms;
use crate::config::CaptureConfig;
use crate::store::{self, Capture};

/// Captures waiting for the writer task at most.
const QUEUE: usize = 1024;
/// How often expired captures are deleted.
const PURGE_EVERY: Duration = Duration::from_secs(600);
/// What a redacted match becomes.
pub(crate) const REDACTED: &str = "[redacted]";

/// Token shapes that are always redacted: `sk-…`/`pk-…`-style keys, bearer tokens, and a few
/// well-known credential formats (cloud access keys, source-host tokens, chat-app tokens, JWTs).
const ALWAYS: &[&str] = &[
    r"(?i)\bbearer\s+[A-Za-z0-9._~+/=-]{8,}",
    r"\b(?:sk|pk|rk)[-_][A-Za-z0-9_-]{8,}",
    r"\bAKIA[0-9A-Z]{16}\b",
    r"\bgh[pousr]_[A-Za-z0-9]{20,}",
    r"\bxox[abprs]-[A-Za-z0-9-]{10,}",
    r"\bAIza[0-9A-Za-z_-]{30,}",
    // JWTs, signed or not (`alg: none` leaves the signature empty).
    r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*",
    r"\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}",
    // `password=hunter2`, `"api_key": "…"`, `secret: …`: the name and its value.
    r#"(?i)\b(?:password|passwd|pwd|passphrase|secret|api[_-]?key|access[_-]?token|client[_-]?secret)["']?\s*[:=]\s*(?:"[^"]*"|'[^']*'|[^\s,;&"']+)"#,
];

/// Takes secrets and the configured patterns out of captured text.
#[derive(Debug)]
pub(crate) struct Redactor {
    patterns: Vec<Regex>,
}

impl Redactor {
    /// The always-on token shapes plus `extra` (already validated by the config).
    pub(crate) fn new(extra: &[String]) -> Redactor {
        let patterns = ALWAYS
            .iter()
            .copied()
            .chain(extra.iter().map(String::as_str))
            .filter_map(|p| Regex::new(p).ok())
            .collect();
        Redactor { patterns }
    }

    /// `text` with every remembered secret, token-shaped string and pattern match replaced.
    pub(crate) fn redact(&self, text: &str) -> String {
        let mut out = crate::redact::mask(text).into_owned();
        for p in &self.patterns {
            if let std::borrow::Cow::Owned(s) = p.replace_all(&out, REDACTED) {
                out = s;
            }
        }
        out
    }
}

/// `text` cut to at most `max` bytes at a character boundary; true when it was cut.
fn truncate(mut text: String, max: usize) -> (String, bool) {
    if text.len() <= max {
        return (text, false);
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    (text, true)
}

/// A request to capture, as the settlement hands it over (not yet redacted).
struct Pending {
    request_id: String,
    key_id: String,
    retention_hours: i64,
    finished_at: i64,
    messages: Value,
    completion: String,
}

/// The sending side; cheap to clone.
#[derive(Clone)]
pub struct Captures {
    tx: mpsc::Sender<Pending>,
    dropped: Arc<AtomicU64>,
    max_retention_hours: i64,
}

impl std::fmt::Debug for Captures {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Captures")
    }
}

/// A request admitted for a key whose capture is on.
#[derive(Debug, Clone)]
pub struct Ticket {
    captures: Captures,
    retention_hours: i64,
}

impl Captures {
    /// Starts the writer and purge task; it ends once every sender is gone.
    pub fn start(stored: store::Captures, config: &CaptureConfig) -> Captures {
        let (tx, rx) = mpsc::channel(QUEUE);
        let redactor = Redactor::new(&config.redact);
        tokio::spawn(run(
            rx,
            stored,
            redactor,
            config.max_bytes,
            config.max_retention_hours,
        ));
        Captures {
            tx,
            dropped: Arc::default(),
            max_retention_hours: config.max_retention_hours,
        }
    }

    /// A ticket for a key whose capture is on for `retention_hours` (`None`: off, no ticket).
    pub fn ticket(&self, retention_hours: Option<i64>) -> Option<Ticket> {
        let hours = retention_hours?;
        Some(Ticket {
            captures: self.clone(),
            retention_hours: hours.clamp(1, self.max_retention_hours),
        })
    }
}

impl Ticket {
    /// Queues one settled request's text; never waits.
    pub fn send(
        &self,
        request_id: &str,
        key_id: &str,
        finished_at: i64,
        messages: Value,
        completion: &str,
    ) {
        let pending = Pending {
            request_id: request_id.to_owned(),
            key_id: key_id.to_owned(),
            retention_hours: self.retention_hours,
            finished_at,
            messages,
            completion: completion.to_owned(),
        };
        if self.captures.tx.try_send(pending).is_err() {
            let n = self.captures.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if n.is_power_of_two() {
                tracing::warn!(dropped = n, "capture writer behind; captures dropped");
            }
        }
    }
}

/// The redacted, truncated capture of one request.
fn prepare(p: Pending, redactor: &Redactor, max_bytes: usize) -> Capture {
    let request = serde_json::to_string(&p.messages).unwrap_or_default();
    let (request, cut_request) = truncate(redactor.redact(&request), max_bytes);
    let (completion, cut_completion) = truncate(redactor.redact(&p.completion), max_bytes);
    Capture {
        request_id: p.request_id,
        key_id: p.key_id,
        created_at: p.finished_at,
        expires_at: p
            .finished_at
            .saturating_add(p.retention_hours.saturating_mul(3_600_000)),
        request,
        completion,
        truncated: cut_request || cut_completion,
    }
}

async fn run(
    mut rx: mpsc::Receiver<Pending>,
    stored: store::Captures,
    redactor: Redactor,
    max_bytes: usize,
    max_retention_hours: i64,
) {
    let redactor = Arc::new(redactor);
    let mut purge = tokio::time::interval(PURGE_EVERY);
    purge.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            next = rx.recv() => {
                let Some(p) = next else { return };
                // Redaction is CPU work: off the runtime threads.
                let r = redactor.clone();
                let Ok(capture) = tokio::task::spawn_blocking(move || prepare(p, &r, max_bytes)).await else {
                    continue;
                };
                if let Err(e) = stored.insert(&capture).await {
                    tracing::warn!(error = %e, "capture not stored");
                }
            }
            _ = purge.tick() => {
                let max_age = max_retention_hours.saturating_mul(3_600_000);
                if let Err(e) = stored.purge(now_ms(), max_age).await {
                    tracing::warn!(error = %e, "capture purge failed");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{REDACT_CARD, REDACT_EMAIL};

    #[test]
    fn secrets_tokens_emails_and_cards_are_redacted() {
        crate::redact::remember("vault-secret-QWERTY123");
        let r = Redactor::new(&[REDACT_EMAIL.into(), REDACT_CARD.into()]);
        let text = "use vault-secret-QWERTY123 and sk-proj-abcdefghijklmnop, \
                    Authorization: Bearer abc.def-ghi_jkl, mail jane.doe@example.co.uk, \
                    card 4111 1111 1111 1111 or 4111-1111-1111-1111; order 12345 stays";
        let out = r.redact(text);
        for gone in [
            "vault-secret",
            "sk-proj",
            "abc.def",
            "jane.doe",
            "example.co.uk",
            "4111",
        ] {
            assert!(!out.contains(gone), "{gone} left in {out}");
        }
        assert!(out.contains("order 12345 stays"), "{out}");
        assert!(out.contains(REDACTED));
    }

    #[test]
    fn jwts_and_password_pairs_are_redacted() {
        let r = Redactor::new(&[]);
        let text = "token eyJhbGciOiJub25lIn0.eyJzdWIiOiJqYW5lIn0. and \
                    eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U; \
                    login?user=jane&password=hunter2&next=/ {\"api_key\": \"abc123\"} secret: s3cr3t; \
                    the password field stays";
        let out = r.redact(text);
        for gone in ["eyJzdWIi", "hunter2", "abc123", "s3cr3t", "dozjg"] {
            assert!(!out.contains(gone), "{gone} left in {out}");
        }
        assert!(out.contains("user=jane"), "{out}");
        assert!(out.contains("the password field stays"), "{out}");
    }

    #[test]
    fn truncation_keeps_whole_characters() {
        let (t, cut) = truncate("héllo".into(), 2);
        assert_eq!((t.as_str(), cut), ("h", true));
        let (t, cut) = truncate("hello".into(), 5);
        assert_eq!((t.as_str(), cut), ("hello", false));
    }
}
