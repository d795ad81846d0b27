//! Anthropic error bodies (HTTP responses and in-stream `error` events) → the status the gateway should act
//! on and an OpenAI-shaped `{"error":{"message","type","param","code"}}` body.
//!
//! | Anthropic `error.type` | gateway status | OpenAI `type` |
//! | --- | --- | --- |
//! | `invalid_request_error` | 400 | `invalid_request_error` |
//! | `authentication_error` | 401 | `authentication_error` |
//! | `billing_error` | 402 | `insufficient_quota` |
//! | `permission_error` | 403 | `permission_error` |
//! | `not_found_error` | 404 | `invalid_request_error` |
//! | `request_too_large` | 413 | `invalid_request_error` |
//! | `rate_limit_error` | 429 | `rate_limit_error` |
//! | `api_error` | 500 | `server_error` |
//! | `timeout_error` | 504 | `server_error` |
//! | `overloaded_error` (HTTP 529) | 503 (retryable) | `server_error` |
//!
//! An unknown type falls back to the HTTP status (529 → 503; anything that is not 4xx/5xx → 502).
//! `code` is the Anthropic error type, so nothing is lost. Anything shaped like an API key (`sk-…`) in the
//! upstream message is masked before it can reach a client or a log.

use serde_json::{json, Value};
use std::fmt;

/// An error reported by Anthropic, in Anthropic's terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamError {
    /// Anthropic's `error.type`, e.g. `overloaded_error`; empty when the body had none.
    pub kind: String,
    /// The upstream message, credentials masked.
    pub message: String,
}

impl UpstreamError {
    /// Reads `{"type":"error","error":{"type","message"}}` or the bare inner object. Never fails: a body
    /// without those fields gives an empty `kind` and a generic message.
    pub fn from_anthropic(body: &Value) -> UpstreamError {
        let inner = body.get("error").filter(|e| e.is_object()).unwrap_or(body);
        // The type is echoed as the error's `code`, so it is masked like the message.
        let kind = inner
            .get("type")
            .and_then(Value::as_str)
            .filter(|t| *t != "error")
            .map(mask_credentials)
            .unwrap_or_default();
        let message = inner
            .get("message")
            .and_then(Value::as_str)
            .filter(|m| !m.is_empty())
            .map(mask_credentials)
            .unwrap_or_else(|| "the upstream provider reported an error".to_string());
        UpstreamError { kind, message }
    }

    /// The status the gateway should treat this error as (see the module table); `kind` unknown → 502.
    pub fn status(&self) -> u16 {
        self.status_or(502)
    }

    fn status_or(&self, fallback: u16) -> u16 {
        match self.kind.as_str() {
            "invalid_request_error" => 400,
            "authentication_error" => 401,
            "billing_error" => 402,
            "permission_error" => 403,
            "not_found_error" => 404,
            "request_too_large" => 413,
            "rate_limit_error" => 429,
            "api_error" => 500,
            "timeout_error" => 504,
            "overloaded_error" => 503,
            _ => fallback,
        }
    }

    /// The OpenAI error body for this error at `status`.
    pub fn to_openai_at(&self, status: u16) -> Value {
        let kind = match (self.kind.as_str(), status) {
            ("authentication_error", _) | (_, 401) => "authentication_error",
            ("billing_error", _) | (_, 402) => "insufficient_quota",
            ("permission_error", _) | (_, 403) => "permission_error",
            ("rate_limit_error", _) | (_, 429) => "rate_limit_error",
            (_, 500..) => "server_error",
            _ => "invalid_request_error",
        };
        let code = if self.kind.is_empty() {
            Value::Null
        } else {
            json!(self.kind)
        };
        json!({"error": {"message": self.message, "type": kind, "param": null, "code": code}})
    }

    /// The OpenAI error body at [`Self::status`].
    pub fn to_openai(&self) -> Value {
        self.to_openai_at(self.status())
    }
}

impl fmt::Display for UpstreamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.kind.is_empty() {
            write!(f, "upstream error: {}", self.message)
        } else {
            write!(f, "upstream {}: {}", self.kind, self.message)
        }
    }
}

impl std::error::Error for UpstreamError {}

/// Converts an Anthropic HTTP error response (`status`, raw `body`) into the status the gateway should act
/// on and an OpenAI-shaped error body. Never fails: a body that is not Anthropic's JSON keeps the status
/// (529 → 503) and gets a generic message; the raw body is never copied into the message.
pub fn error_to_openai(status: u16, body: &[u8]) -> (u16, Value) {
    let parsed = serde_json::from_slice::<Value>(body).ok();
    let err = match parsed.as_ref() {
        Some(v) if v.is_object() => UpstreamError::from_anthropic(v),
        _ => UpstreamError {
            kind: String::new(),
            message: format!("the upstream provider answered HTTP {status}"),
        },
    };
    let fallback = match status {
        529 => 503,
        400..=599 => status,
        _ => 502,
    };
    let gateway_status = err.status_or(fallback);
    (gateway_status, err.to_openai_at(gateway_status))
}

/// Masks anything that looks like an API key (`sk-` followed by at least 8 key characters, which covers
/// Anthropic's `sk-ant-…`) as `sk-***`.
pub fn mask_credentials(message: &str) -> String {
    let is_key_char = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(pos) = rest.find("sk-") {
        let starts_word = rest[..pos]
            .chars()
            .next_back()
            .is_none_or(|c| !is_key_char(c));
        let tail = &rest[pos + 3..];
        let len = tail.find(|c: char| !is_key_char(c)).unwrap_or(tail.len());
        out.push_str(&rest[..pos]);
        if starts_word && len >= 8 {
            out.push_str("sk-***");
        } else {
            out.push_str(&rest[pos..pos + 3 + len]);
        }
        rest = &tail[len..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn convert(status: u16, kind: &str) -> (u16, Value) {
        let body = format!(
            r#"{{"type":"error","error":{{"type":"{kind}","message":"boom"}},"request_id":"req_1"}}"#
        );
        error_to_openai(status, body.as_bytes())
    }

    /// Found by the `anthropic_response` fuzz target: a key echoed in the error's `type` reached
    /// the caller unmasked, as the OpenAI error's `code`.
    #[test]
    fn a_key_echoed_in_the_error_type_is_masked_too() {
        let body = br#"{"ttrueype":"error","error":{"type":"ovkey sk-ant-api03-abcdefghijkfalselmngp is busy"}}"#;
        let (status, error) = error_to_openai(529, body);
        assert_eq!(status, 503);
        let text = error.to_string();
        assert!(!text.contains("abcdefghijk"), "{text}");
        assert_eq!(error["error"]["code"], "ovkey sk-*** is busy");
    }

    #[test]
    fn anthropic_error_types_map_to_gateway_statuses() {
        assert_eq!(convert(529, "overloaded_error").0, 503);
        assert_eq!(convert(429, "rate_limit_error").0, 429);
        assert_eq!(convert(401, "authentication_error").0, 401);
        assert_eq!(convert(403, "permission_error").0, 403);
        assert_eq!(convert(404, "not_found_error").0, 404);
        assert_eq!(convert(400, "invalid_request_error").0, 400);
        assert_eq!(convert(413, "request_too_large").0, 413);
        assert_eq!(convert(500, "api_error").0, 500);
        assert_eq!(convert(402, "billing_error").0, 402);
        assert_eq!(convert(418, "brand_new_error").0, 418);
        assert_eq!(convert(529, "brand_new_error").0, 503);
    }

    #[test]
    fn openai_body_has_all_four_keys() {
        let (status, body) = convert(529, "overloaded_error");
        assert_eq!(status, 503);
        assert_eq!(
            body,
            json!({"error": {"message": "boom", "type": "server_error", "param": null, "code": "overloaded_error"}})
        );
        let (_, body) = convert(429, "rate_limit_error");
        assert_eq!(body["error"]["type"], "rate_limit_error");
        let (_, body) = convert(404, "not_found_error");
        assert_eq!(body["error"]["type"], "invalid_request_error");
        assert_eq!(body["error"]["code"], "not_found_error");
    }

    #[test]
    fn unparseable_body_keeps_status_and_hides_the_body() {
        let (status, body) =
            error_to_openai(502, b"<html>Bad gateway sk-ant-api03-SECRETSECRET</html>");
        assert_eq!(status, 502);
        let message = body["error"]["message"].as_str().unwrap();
        assert_eq!(message, "the upstream provider answered HTTP 502");
        assert!(body["error"]["code"].is_null());
        assert_eq!(error_to_openai(200, b"").0, 502);
        assert_eq!(error_to_openai(529, b"overloaded").0, 503);
    }

    #[test]
    fn credentials_in_messages_are_masked() {
        let body = br#"{"type":"error","error":{"type":"authentication_error","message":"invalid x-api-key sk-ant-api03-abcdefghijKLMN_op, not task-sk-foo"}}"#;
        let (status, out) = error_to_openai(401, body);
        assert_eq!(status, 401);
        assert_eq!(
            out["error"]["message"],
            "invalid x-api-key sk-***, not task-sk-foo"
        );
        assert_eq!(mask_credentials("sk-short"), "sk-short");
        assert_eq!(mask_credentials("a sk-12345678 b"), "a sk-*** b");
    }

    #[test]
    fn stream_error_event_is_read_with_or_without_wrapper() {
        let err = UpstreamError::from_anthropic(
            &json!({"type": "error", "error": {"details": null, "type": "api_error", "message": "Internal server error"}}),
        );
        assert_eq!(err.kind, "api_error");
        assert_eq!(err.status(), 500);
        assert_eq!(err.to_string(), "upstream api_error: Internal server error");
        let bare = UpstreamError::from_anthropic(
            &json!({"type": "overloaded_error", "message": "Overloaded"}),
        );
        assert_eq!(bare.status(), 503);
        assert_eq!(bare.to_openai()["error"]["type"], "server_error");
        let empty = UpstreamError::from_anthropic(&json!({}));
        assert_eq!(empty.status(), 502);
        assert!(empty.to_openai()["error"]["code"].is_null());
    }
}
