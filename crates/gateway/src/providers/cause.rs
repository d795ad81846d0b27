//! Whose failure an upstream's error is: the route's (its connection, its server, its account, its
//! credential, its model, its rate limit), to be failed over and counted against the route, or the
//! request's own (invalid, over the model's context length, refused by a content policy), to be
//! passed to the caller and counted against nothing. Error bodies are read in the OpenAI, DeepSeek
//! and Anthropic shapes (`{"error":{"message","type","code","param"}}`, Anthropic's
//! `{"type":"error","error":{"type","message"}}`, or the bare inner object), and Gemini's
//! (`{"error":{"code": 400,"message","status":"INVALID_ARGUMENT","details":[{"reason"}]}}`: its
//! `status` is read as the type, an `ErrorInfo` reason such as `API_KEY_INVALID` as the code).
//!
//! Some route failures may still be caused by one caller's requests alone: a timeout (a huge
//! prompt that never reaches its first token), a per-request size or token limit (413, OpenAI's
//! 429 "Request too large"). They fail over like any route failure but are [`Blame::Unclear`]:
//! `routing` holds them against the route only when several keys see them.

use serde_json::Value;
use switchyard_wire::anthropic::mask_credentials;

/// What an upstream failure means for the route and the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// The route failed: try another, count it against this one (how, see [`Blame`]).
    Route(Blame),
    /// The upstream refused the request itself; any route would. The caller gets a 400.
    Request(Refusal),
}

/// Who a route failure is held against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Blame {
    /// The route alone (connection, 5xx, account, credential, model, rate limit).
    Route,
    /// Maybe the request that met it (timeouts, per-request limits): held against the route only
    /// when several keys meet it, and against this key's use of the route.
    Unclear,
}

/// Why an upstream refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The request is invalid for the upstream (a parameter, a value).
    Invalid,
    /// The prompt (with the requested output) does not fit the model's context window.
    ContextLength,
    /// A content policy refused the prompt.
    ContentPolicy,
}

impl Refusal {
    /// The OpenAI error code the caller sees, when the refusal has one of its own.
    pub fn code(self) -> Option<&'static str> {
        match self {
            Refusal::Invalid => None,
            Refusal::ContextLength => Some("context_length_exceeded"),
            Refusal::ContentPolicy => Some("content_policy_violation"),
        }
    }
}

/// The fields of an upstream error body, whatever its dialect.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ErrorText {
    /// The message, credentials masked.
    pub message: Option<String>,
    /// OpenAI's `type` or Anthropic's `error.type`.
    pub kind: Option<String>,
    pub code: Option<String>,
    pub param: Option<String>,
}

impl ErrorText {
    /// Reads an error body; anything that is not a JSON object gives empty fields.
    pub(crate) fn parse(body: &[u8]) -> ErrorText {
        let Ok(v) = serde_json::from_slice::<Value>(body) else {
            return ErrorText::default();
        };
        let inner = v.get("error").filter(|e| e.is_object()).unwrap_or(&v);
        let text = |k: &str| {
            inner
                .get(k)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
        };
        let reason = || {
            inner
                .get("details")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .find_map(|d| d.get("reason").and_then(Value::as_str))
                .map(str::to_owned)
        };
        ErrorText {
            message: text("message").map(|m| mask_credentials(&m)),
            kind: text("type")
                .filter(|t| t != "error")
                .or_else(|| text("status")),
            code: text("code").or_else(reason),
            param: text("param"),
        }
    }

    fn has(&self, values: &[&str]) -> bool {
        [&self.kind, &self.code]
            .into_iter()
            .flatten()
            .any(|v| values.contains(&v.as_str()))
    }

    fn says(&self, phrases: &[&str]) -> bool {
        let Some(m) = &self.message else {
            return false;
        };
        let m = m.to_ascii_lowercase();
        phrases.iter().any(|p| m.contains(p))
    }

    /// The error concerns the operator's account or credential with the provider, or the model's
    /// availability there, whatever status it came with.
    fn concerns_the_route(&self) -> bool {
        self.has(&[
            "model_not_found",
            "not_found_error",
            "invalid_api_key",
            "authentication_error",
            "permission_error",
            "billing_error",
            "insufficient_quota",
            "rate_limit_error",
            "rate_limit_exceeded",
            "overloaded_error",
            "api_error",
            "server_error",
            // Gemini's canonical statuses and reasons that concern the account or the model.
            "API_KEY_INVALID",
            "API_KEY_SERVICE_BLOCKED",
            "UNAUTHENTICATED",
            "PERMISSION_DENIED",
            "RESOURCE_EXHAUSTED",
            "NOT_FOUND",
            "FAILED_PRECONDITION",
            "UNAVAILABLE",
            "INTERNAL",
            "DEADLINE_EXCEEDED",
        ]) || self.says(&[
            "api key",
            "api_key",
            "credit balance",
            "insufficient balance",
            "quota",
            "billing",
            "does not exist or you do not have access",
        ])
    }

    fn context_length(&self) -> bool {
        self.has(&["context_length_exceeded", "string_above_max_length"])
            || self.says(&[
                "maximum context length",
                "context length",
                "context window",
                "context_length",
                "prompt is too long",
                "exceed context limit",
                "too many tokens",
                "reduce the length of the messages",
                "exceeds the maximum number of tokens",
            ])
    }

    fn content_policy(&self) -> bool {
        self.has(&[
            "content_filter",
            "content_policy_violation",
            "content_policy",
            "ResponsibleAIPolicyViolation",
        ]) || self.says(&[
            "content management policy",
            "content policy",
            "content filtering policy",
            "safety system",
            "content exists risk",
        ])
    }

    /// A per-request limit (OpenAI's 429 "Request too large for … on tokens per min").
    fn request_too_large(&self) -> bool {
        self.has(&["request_too_large"]) || self.says(&["request too large"])
    }
}

/// What an error status and its body mean. 401 is the route's: by the time it is classified,
/// the credential was already refreshed once.
pub(crate) fn of_status(status: u16, body: &[u8]) -> Cause {
    let text = ErrorText::parse(body);
    match status {
        400 | 422 if text.concerns_the_route() => Cause::Route(Blame::Route),
        400 | 422 if text.context_length() => Cause::Request(Refusal::ContextLength),
        400 | 422 if text.content_policy() => Cause::Request(Refusal::ContentPolicy),
        400 | 422 => Cause::Request(Refusal::Invalid),
        408 | 413 => Cause::Route(Blame::Unclear),
        429 if text.request_too_large() => Cause::Route(Blame::Unclear),
        // 401 (after one refresh), 402, 403, 404 (the model there), 409, 429, 5xx, anything else.
        _ => Cause::Route(Blame::Route),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(path: &str) -> Option<Vec<u8>> {
        let dir =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures/real");
        std::fs::read(dir.join(path)).ok()
    }

    #[test]
    fn context_length_in_every_dialect_goes_to_the_caller() {
        let openai = br#"{"error":{"message":"This model's maximum context length is 128000 tokens. However, your messages resulted in 130123 tokens. Please reduce the length of the messages.","type":"invalid_request_error","param":"messages","code":"context_length_exceeded"}}"#;
        let anthropic = br#"{"type":"error","error":{"type":"invalid_request_error","message":"prompt is too long: 210443 tokens > 200000 maximum"}}"#;
        let anthropic_sum = br#"{"type":"error","error":{"type":"invalid_request_error","message":"input length and `max_tokens` exceed context limit: 198000 + 8192 > 200000, decrease input length or `max_tokens` and try again"}}"#;
        let deepseek = br#"{"error":{"message":"This model's maximum context length is 65536 tokens. However, you requested 70000 tokens (66000 in the messages, 4000 in the completion). Please reduce the length of the messages or completion.","type":"invalid_request_error","param":null,"code":"invalid_request_error"}}"#;
        for body in [&openai[..], anthropic, anthropic_sum, deepseek] {
            assert_eq!(
                of_status(400, body),
                Cause::Request(Refusal::ContextLength),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn content_policy_goes_to_the_caller() {
        let openai = br#"{"error":{"message":"Your request was rejected as a result of our safety system.","type":"invalid_request_error","param":null,"code":"content_policy_violation"}}"#;
        let deepseek = br#"{"error":{"message":"Content Exists Risk","type":"invalid_request_error","param":null,"code":"invalid_request_error"}}"#;
        for body in [&openai[..], deepseek] {
            assert_eq!(of_status(400, body), Cause::Request(Refusal::ContentPolicy));
        }
        if let Some(azure) = fixture("azure/chat-error-400-content-filter-prompt.json") {
            assert_eq!(
                of_status(400, &azure),
                Cause::Request(Refusal::ContentPolicy)
            );
        }
    }

    #[test]
    fn invalid_requests_go_to_the_caller_with_their_param() {
        let body = fixture("openai/chat-error-400-unsupported-parameter.json").unwrap_or_else(|| {
            br#"{"error":{"message":"Unsupported parameter: 'stop' is not supported with this model.","type":"invalid_request_error","param":"stop","code":"unsupported_parameter"}}"#.to_vec()
        });
        assert_eq!(of_status(400, &body), Cause::Request(Refusal::Invalid));
        assert_eq!(ErrorText::parse(&body).param.as_deref(), Some("stop"));
        assert_eq!(
            of_status(422, b"not json"),
            Cause::Request(Refusal::Invalid)
        );
    }

    #[test]
    fn account_credential_and_model_errors_are_the_routes() {
        let low_credit = br#"{"type":"error","error":{"type":"invalid_request_error","message":"Your credit balance is too low to access the Anthropic API. Please go to Plans & Billing to upgrade or purchase credits."}}"#;
        let responses_model = fixture("openai/responses-error-400-model-not-found.json")
            .unwrap_or_else(|| br#"{"error":{"message":"The requested model 'x' does not exist.","type":"invalid_request_error","param":"model","code":"model_not_found"}}"#.to_vec());
        assert_eq!(of_status(400, low_credit), Cause::Route(Blame::Route));
        assert_eq!(of_status(400, &responses_model), Cause::Route(Blame::Route));
        for status in [401, 402, 403, 404, 409, 429, 500, 502, 503, 529, 418] {
            assert_eq!(
                of_status(status, b""),
                Cause::Route(Blame::Route),
                "{status}"
            );
        }
        for path in [
            "openai/chat-error-404-model-not-found.json",
            "anthropic/messages-error-404-model-not-found.json",
            "anthropic/messages-error-401-authentication.json",
        ] {
            if let Some(body) = fixture(path) {
                let status = if path.contains("404") { 404 } else { 401 };
                assert_eq!(
                    of_status(status, &body),
                    Cause::Route(Blame::Route),
                    "{path}"
                );
            }
        }
    }

    #[test]
    fn gemini_statuses_are_classified() {
        let key = fixture("google/error-400-api-key-invalid.json").unwrap_or_else(|| {
            br#"{"error":{"code":400,"message":"API key not valid. Please pass a valid API key.","status":"INVALID_ARGUMENT","details":[{"@type":"type.googleapis.com/google.rpc.ErrorInfo","reason":"API_KEY_INVALID"}]}}"#.to_vec()
        });
        assert_eq!(of_status(400, &key), Cause::Route(Blame::Route));
        assert_eq!(
            ErrorText::parse(&key).code.as_deref(),
            Some("API_KEY_INVALID")
        );
        let model = fixture("google/error-404-model-not-found.json").unwrap_or_else(|| {
            br#"{"error":{"code":404,"message":"models/x is not found for API version v1beta","status":"NOT_FOUND"}}"#.to_vec()
        });
        assert_eq!(of_status(404, &model), Cause::Route(Blame::Route));
        let invalid = br#"{"error":{"code":400,"message":"Invalid value at 'generation_config.temperature' (TYPE_FLOAT), \"hot\"","status":"INVALID_ARGUMENT"}}"#;
        assert_eq!(of_status(400, invalid), Cause::Request(Refusal::Invalid));
        let long = br#"{"error":{"code":400,"message":"The input token count (1200000) exceeds the maximum number of tokens allowed (1048576).","status":"INVALID_ARGUMENT"}}"#;
        assert_eq!(of_status(400, long), Cause::Request(Refusal::ContextLength));
        let quota = br#"{"error":{"code":429,"message":"You exceeded your current quota.","status":"RESOURCE_EXHAUSTED"}}"#;
        assert_eq!(of_status(429, quota), Cause::Route(Blame::Route));
        let region = br#"{"error":{"code":400,"message":"User location is not supported for the API use.","status":"FAILED_PRECONDITION"}}"#;
        assert_eq!(of_status(400, region), Cause::Route(Blame::Route));
        let overloaded = br#"{"error":{"code":503,"message":"The model is overloaded.","status":"UNAVAILABLE"}}"#;
        assert_eq!(of_status(503, overloaded), Cause::Route(Blame::Route));
    }

    #[test]
    fn per_request_limits_fail_over_but_are_unclear() {
        let too_large = br#"{"error":{"message":"Request too large for gpt-4o in organization org-x on tokens per min (TPM): Limit 30000, Requested 52000.","type":"tokens","param":null,"code":"rate_limit_exceeded"}}"#;
        assert_eq!(of_status(429, too_large), Cause::Route(Blame::Unclear));
        assert_eq!(of_status(413, b""), Cause::Route(Blame::Unclear));
        let plain_429 = br#"{"error":{"message":"Rate limit reached for gpt-4o in organization org-x on requests per min (RPM): Limit 3, Used 3, Requested 1.","type":"requests","param":null,"code":"rate_limit_exceeded"}}"#;
        assert_eq!(of_status(429, plain_429), Cause::Route(Blame::Route));
    }

    #[test]
    fn messages_are_read_with_credentials_masked() {
        let t = ErrorText::parse(
            br#"{"error":{"message":"bad key sk-proj-abcdefghijkl here","type":"invalid_request_error"}}"#,
        );
        assert_eq!(t.message.as_deref(), Some("bad key sk-*** here"));
        assert_eq!(ErrorText::parse(b"<html>"), ErrorText::default());
    }
}
