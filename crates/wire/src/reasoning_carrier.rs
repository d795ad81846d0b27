//! Reasoning an upstream requires back on the next turn (Anthropic's signed thinking), carried
//! through a client of another dialect in the opaque field that client already returns as it got
//! it: Gemini's `thoughtSignature`, a Responses reasoning item's `encrypted_content`. The carrier is
//! `sy1.` + base64url (no padding) of `{"t": thinking, "s": signature}`; anything else in those
//! fields is the upstream's own and is left alone.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{json, Value};

const PREFIX: &str = "sy1.";

/// Anthropic's signed thinking (`thinking` text and its `signature`) as one opaque string.
pub fn pack(thinking: &str, signature: &str) -> String {
    let json = json!({"t": thinking, "s": signature}).to_string();
    format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(json))
}

/// The thinking and signature [`pack`] wrote, or `None` for anything else (an upstream's own
/// signature, which goes back to it unchanged).
pub fn unpack(carried: &str) -> Option<(String, String)> {
    let bytes = URL_SAFE_NO_PAD.decode(carried.strip_prefix(PREFIX)?).ok()?;
    let v: Value = serde_json::from_slice(&bytes).ok()?;
    Some((v["t"].as_str()?.to_owned(), v["s"].as_str()?.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thinking_and_its_signature_survive_the_trip() {
        let carried = pack("Let me read \"a\".\n", "EqQBCkgIARAB+/=");
        assert!(carried
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)));
        assert_eq!(
            unpack(&carried),
            Some(("Let me read \"a\".\n".into(), "EqQBCkgIARAB+/=".into()))
        );
        assert_eq!(unpack("CiQB0e2Kb+/x9Q=="), None);
        assert_eq!(unpack("sy1.!!"), None);
    }
}
