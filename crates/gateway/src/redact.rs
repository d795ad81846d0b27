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
pub const MASK: &str = "[redacted]";

/// Values shorter than this are not treated as secrets to mask (a 3-letter test key would mask
/// ordinary words); real credentials are far longer.
const MIN_LEN: usize = 8;

static KNOWN: RwLock<Vec<String>> = RwLock::new(Vec::new());

/// Remembers a resolved secret value so that `mask` takes it out of upstream text.
pub fn remember(secret: &str) {
    if secret.len() < MIN_LEN {
        return;
    }
    let mut known = KNOWN.write().unwrap_or_else(|e| e.into_inner());
    if !known.iter().any(|k| k == secret) {
        known.push(secret.to_owned());
    }
}

/// `text` with every remembered secret and every `sk-…`-shaped key masked. Borrows when there
/// was nothing to mask (the usual case).
pub fn mask(text: &str) -> Cow<'_, str> {
    let mut out = Cow::Borrowed(text);
    {
        let known = KNOWN.read().unwrap_or_else(|e| e.into_inner());
        for secret in known.iter() {
            if out.contains(secret.as_str()) {
                out = Cow::Owned(out.replace(secret.as_str(), MASK));
            }
        }
    }
    if out.contains("sk-") {
        out = Cow::Owned(switchyard_wire::anthropic::mask_credentials(&out));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembered_secrets_of_any_shape_are_masked_and_other_text_is_borrowed() {
        remember("gsk_0123456789abcdefGHIJ");
        remember("vault-token-ZYXWVUTSRQ");
        remember("short");
        let text =
            "bad key gsk_0123456789abcdefGHIJ (vault-token-ZYXWVUTSRQ), also sk-proj-abcdefghij12";
        assert_eq!(mask(text), "bad key [redacted] ([redacted]), also sk-***");
        assert!(matches!(mask("nothing secret here"), Cow::Borrowed(_)));
        assert_eq!(mask("short words stay"), "short words stay");
    }
}
