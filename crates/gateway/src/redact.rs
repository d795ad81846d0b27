//! Secrets out of upstream text: every secret value the config resolves (upstream credentials of
//! any shape, the admin key) is remembered here, and `mask` replaces them, and anything shaped like
//! an `sk-…` key, in text that came from an upstream before it reaches a caller, an operator's
//! view or a log. Upstreams echo the credential they were sent (`Incorrect API key provided: …`);
//! only the gateway knows which strings are its secrets, so this is where they are taken out.
//!
//! The set is process-wide, like the secrets themselves: a resolved value is never forgotten (a
//! refreshed credential's old value may still be echoed by an upstream that saw it).

use std::borrow::Cow;
use std::sync::RwLock;

/// What a masked secret becomes.
pub(crate) const MASK: &str = "[redacted]";

/// Secrets shorter than this are masked only where they stand alone (not inside a longer word),
/// so that a 3-letter test key is taken out of `key abc refused` but not out of `abcdef`.
const WORD_LEN: usize = 8;

static KNOWN: RwLock<Vec<String>> = RwLock::new(Vec::new());

/// Remembers a resolved secret value so that `mask` takes it out of upstream text.
pub(crate) fn remember(secret: &str) {
    if secret.is_empty() {
        return;
    }
    let mut known = KNOWN.write().unwrap_or_else(|e| e.into_inner());
    if !known.iter().any(|k| k == secret) {
        known.push(secret.to_owned());
    }
}

/// `text` with every remembered secret and every `sk-…`-shaped key masked. Borrows when there
/// was nothing to mask (the usual case).
pub(crate) fn mask(text: &str) -> Cow<'_, str> {
    let mut out = Cow::Borrowed(text);
    {
        let known = KNOWN.read().unwrap_or_else(|e| e.into_inner());
        for secret in known.iter() {
            if !out.contains(secret.as_str()) {
                continue;
            }
            if secret.len() >= WORD_LEN {
                out = Cow::Owned(out.replace(secret.as_str(), MASK));
            } else if let Some(masked) = mask_words(&out, secret) {
                out = Cow::Owned(masked);
            }
        }
    }
    if out.contains("sk-") {
        out = Cow::Owned(switchyard_wire::anthropic::mask_credentials(&out));
    }
    out
}

/// `text` with each standalone occurrence of `secret` masked (not preceded or followed by a
/// letter, digit, `-` or `_`); `None` when there was none.
fn mask_words(text: &str, secret: &str) -> Option<String> {
    let word = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '-' || c == '_');
    let mut out = String::with_capacity(text.len());
    let mut rest = 0;
    let mut found = false;
    for (at, _) in text.match_indices(secret) {
        let end = at + secret.len();
        if at < rest || word(text[..at].chars().next_back()) || word(text[end..].chars().next()) {
            continue;
        }
        out.push_str(&text[rest..at]);
        out.push_str(MASK);
        rest = end;
        found = true;
    }
    found.then(|| {
        out.push_str(&text[rest..]);
        out
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembered_secrets_of_any_shape_are_masked_and_other_text_is_borrowed() {
        remember("gsk_0123456789abcdefGHIJ");
        remember("vault-token-ZYXWVUTSRQ");
        remember("x7q");
        let text =
            "bad key gsk_0123456789abcdefGHIJ (vault-token-ZYXWVUTSRQ), also sk-proj-abcdefghij12";
        assert_eq!(mask(text), "bad key [redacted] ([redacted]), also sk-***");
        assert!(matches!(mask("nothing secret here"), Cow::Borrowed(_)));
        // A short secret is masked wherever it stands alone, never inside a longer word.
        assert_eq!(
            mask("Incorrect API key provided: x7q. (x7q)"),
            "Incorrect API key provided: [redacted]. ([redacted])"
        );
        assert_eq!(mask("x7qrs ax7q x7q-1"), "x7qrs ax7q x7q-1");
    }
}
