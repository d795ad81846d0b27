//! The per-request behaviour knobs of the mock ("tokens", "ttft_ms", "status", ...) and where they come
//! from: model-name defaults, then the server's own options ([`ServerOptions`], set by whoever started
//! it), then options after an `@` in the model name (`gpt-4o@tokens=5,ttft_ms=200`), then
//! `x-mock-<option>` request headers, then a `"mock": {...}` object in the JSON body. Later sources
//! override earlier ones; an unknown option or a bad value is an error so that a typo in a test fails
//! loudly instead of silently running with defaults. A server started with [`Steering::ServerOnly`]
//! (the gateway's embedded demo) reads none of the three request sources.

use axum::http::HeaderMap;
use serde_json::Value;

/// Content tokens produced when nothing says otherwise.
pub(crate) const DEFAULT_TOKENS: u32 = 12;
/// Reasoning tokens produced by reasoning models (`demo-reasoner`, `*reasoner*`) or thinking requests.
pub(crate) const DEFAULT_REASONING: u32 = 8;
/// Status used by `fail_times` when no `status` is given.
pub(crate) const DEFAULT_FAIL_STATUS: u16 = 503;

/// How the response ends when the token budget is not the limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FinishOption {
    Stop,
    Length,
    ContentFilter,
    /// DeepSeek's `insufficient_system_resource` (cut short; `length` in the other dialects).
    InsufficientSystemResource,
    /// A reason the dialect never defined (`a_new_reason`, Gemini's `A_NEW_REASON`).
    Unknown,
}

/// Everything that shapes one response. Built by [`resolve`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Behaviour {
    pub tokens: u32,
    pub reasoning: u32,
    pub ttft_ms: u64,
    pub gap_ms: u64,
    pub headers_delay_ms: u64,
    pub status: Option<u16>,
    pub retry_after: Option<u64>,
    pub fail_times: Option<u32>,
    pub fail_key: Option<String>,
    pub reset_after: Option<u32>,
    pub stall_after: Option<u32>,
    pub malformed_after: Option<u32>,
    /// After N token chunks, an event whose text is not UTF-8.
    pub invalid_utf8_after: Option<u32>,
    pub error_after: Option<u32>,
    pub usage: Option<bool>,
    pub tool_calls: u32,
    pub finish: FinishOption,
    pub prompt_tokens: Option<u32>,
    pub cached_tokens: u32,
    /// After N token chunks (0: before anything), one endless line.
    pub endless_line_after: Option<u32>,
    /// A whole body (answer or error) padded with spaces to at least this many bytes.
    pub body_bytes: Option<u64>,
    /// The body sent with `status` instead of the dialect's own error body.
    pub error_body: Option<String>,
    /// A request whose body contains this text gets no answer (not even headers) until the
    /// client leaves: a prompt too big to reach its first token.
    pub stall_if_contains: Option<String>,
    /// Anthropic: the answer stops on this stop sequence (`stop_reason: "stop_sequence"`).
    pub stop_sequence: Option<String>,
    /// Anthropic: prompt tokens reported as written to the cache (`cache_creation_input_tokens`).
    pub cache_creation_tokens: u32,
    /// Anthropic: a `redacted_thinking` block comes first.
    pub redacted_thinking: bool,
    /// Anthropic and chat: this whole body is the answer, played as it is (a stream one event per frame),
    /// in place of the planned one: a recorded transcript played back.
    pub transcript: Option<String>,
    /// Reasoning signatures as the real APIs require them: Anthropic thinking blocks, Gemini
    /// `thoughtSignature`s and Responses encrypted reasoning items are issued, and a follow-up
    /// that does not send back the exact one issued is refused with a 400.
    pub signatures: bool,
    /// Chat: a provider's prompt cache, kept per model (options included) and API key: the
    /// longest message prefix this request shares with an earlier one is reported as cached.
    pub prompt_cache: bool,
}

/// Who may shape the responses of a server.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Steering {
    /// The server's own options, then each request's model suffix, `x-mock-*` headers and `mock` body
    /// field. For tests and benchmarks that talk to the mock directly.
    #[default]
    Requests,
    /// Only the server's own options: nothing in a request changes pacing, token counts, usage or
    /// failures. For a mock that strangers can reach, such as the gateway's embedded demo upstream.
    ServerOnly,
}

/// A bad option: unknown name or a value of the wrong kind.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum OptionError {
    #[error("unknown mock option `{0}`")]
    Unknown(String),
    #[error("mock option `{name}` has invalid value `{value}`: expected {expected}")]
    Invalid {
        name: String,
        value: String,
        expected: &'static str,
    },
    #[error("mock options must be a JSON object")]
    NotAnObject,
}

/// The names accepted in every source, for documentation and error messages.
pub const OPTION_NAMES: [&str; 29] = [
    "tokens",
    "reasoning",
    "ttft_ms",
    "gap_ms",
    "headers_delay_ms",
    "status",
    "retry_after",
    "fail_times",
    "fail_key",
    "reset_after",
    "stall_after",
    "malformed_after",
    "invalid_utf8_after",
    "error_after",
    "usage",
    "tool_calls",
    "finish",
    "prompt_tokens",
    "cached_tokens",
    "endless_line_after",
    "body_bytes",
    "error_body",
    "stall_if_contains",
    "stop_sequence",
    "cache_creation_tokens",
    "redacted_thinking",
    "transcript",
    "signatures",
    "prompt_cache",
];

/// One option value as found in its source: header and model-suffix values are text, body values JSON.
enum RawValue<'a> {
    Text(&'a str),
    Json(&'a Value),
}

impl RawValue<'_> {
    fn display(&self) -> String {
        match self {
            RawValue::Text(t) => (*t).to_string(),
            RawValue::Json(v) => v.to_string(),
        }
    }

    fn as_text(&self) -> Option<String> {
        match self {
            RawValue::Text(t) => Some(t.trim().to_string()),
            RawValue::Json(Value::String(s)) => Some(s.trim().to_string()),
            RawValue::Json(Value::Number(n)) => Some(n.to_string()),
            RawValue::Json(Value::Bool(b)) => Some(b.to_string()),
            RawValue::Json(_) => None,
        }
    }
}

impl Behaviour {
    /// The defaults for a model name (without its `@` suffix). `thinking_requested` is true when the
    /// request itself asks for reasoning (Anthropic `thinking: {type: enabled}`).
    pub(crate) fn for_model(model: &str, thinking_requested: bool) -> Behaviour {
        let reasoning_model = model == "demo-reasoner" || model.contains("reasoner");
        Behaviour {
            tokens: DEFAULT_TOKENS,
            reasoning: if reasoning_model || thinking_requested {
                DEFAULT_REASONING
            } else {
                0
            },
            ttft_ms: 0,
            gap_ms: 0,
            headers_delay_ms: 0,
            status: None,
            retry_after: None,
            fail_times: None,
            fail_key: None,
            reset_after: None,
            stall_after: None,
            malformed_after: None,
            invalid_utf8_after: None,
            error_after: None,
            usage: None,
            tool_calls: 0,
            finish: FinishOption::Stop,
            prompt_tokens: None,
            cached_tokens: 0,
            endless_line_after: None,
            body_bytes: None,
            error_body: None,
            stall_if_contains: None,
            stop_sequence: None,
            cache_creation_tokens: 0,
            redacted_thinking: false,
            transcript: None,
            signatures: false,
            prompt_cache: false,
        }
    }

    fn set(&mut self, name: &str, value: RawValue<'_>) -> Result<(), OptionError> {
        let invalid = |expected: &'static str| OptionError::Invalid {
            name: name.to_string(),
            value: value.display(),
            expected,
        };
        let text = value.as_text();
        let uint = || -> Result<u64, OptionError> {
            text.as_deref()
                .and_then(|t| t.parse::<u64>().ok())
                .ok_or_else(|| invalid("a non-negative integer"))
        };
        let u32v = || -> Result<u32, OptionError> {
            uint().and_then(|v| u32::try_from(v).map_err(|_| invalid("an integer below 2^32")))
        };
        let flag = || -> Result<bool, OptionError> {
            match text.as_deref() {
                Some("true" | "1" | "yes" | "on") => Ok(true),
                Some("false" | "0" | "no" | "off") => Ok(false),
                _ => Err(invalid("true or false")),
            }
        };
        match name {
            "tokens" => self.tokens = u32v()?,
            "reasoning" => self.reasoning = u32v()?,
            "ttft_ms" => self.ttft_ms = uint()?,
            "gap_ms" => self.gap_ms = uint()?,
            "headers_delay_ms" => self.headers_delay_ms = uint()?,
            "status" => {
                let v = uint()?;
                if !(400..=599).contains(&v) {
                    return Err(invalid("an HTTP error status between 400 and 599"));
                }
                self.status = Some(v as u16);
            }
            "retry_after" => self.retry_after = Some(uint()?),
            "fail_times" => self.fail_times = Some(u32v()?),
            "fail_key" => {
                self.fail_key = Some(text.ok_or_else(|| invalid("a string"))?);
            }
            "reset_after" => self.reset_after = Some(u32v()?),
            "stall_after" => self.stall_after = Some(u32v()?),
            "malformed_after" => self.malformed_after = Some(u32v()?),
            "invalid_utf8_after" => self.invalid_utf8_after = Some(u32v()?),
            "error_after" => self.error_after = Some(u32v()?),
            "usage" => {
                self.usage = Some(match text.as_deref() {
                    Some("true" | "1" | "yes" | "on") => true,
                    Some("false" | "0" | "no" | "off") => false,
                    _ => return Err(invalid("true or false")),
                })
            }
            "tool_calls" => self.tool_calls = u32v()?,
            "finish" => {
                self.finish = match text.as_deref() {
                    Some("stop") => FinishOption::Stop,
                    Some("length") => FinishOption::Length,
                    Some("content_filter") => FinishOption::ContentFilter,
                    Some("insufficient_system_resource") => {
                        FinishOption::InsufficientSystemResource
                    }
                    Some("unknown") => FinishOption::Unknown,
                    _ => {
                        return Err(invalid(
                            "`stop`, `length`, `content_filter`, `insufficient_system_resource` or `unknown`",
                        ))
                    }
                }
            }
            "prompt_tokens" => self.prompt_tokens = Some(u32v()?),
            "cached_tokens" => self.cached_tokens = u32v()?,
            "endless_line_after" => self.endless_line_after = Some(u32v()?),
            "body_bytes" => self.body_bytes = Some(uint()?),
            "error_body" => {
                self.error_body = Some(text.ok_or_else(|| invalid("a string"))?);
            }
            "stall_if_contains" => {
                self.stall_if_contains = Some(text.ok_or_else(|| invalid("a string"))?);
            }
            "stop_sequence" => {
                self.stop_sequence = Some(text.ok_or_else(|| invalid("a string"))?);
            }
            "cache_creation_tokens" => self.cache_creation_tokens = u32v()?,
            "redacted_thinking" => self.redacted_thinking = flag()?,
            "signatures" => self.signatures = flag()?,
            "prompt_cache" => self.prompt_cache = flag()?,
            "transcript" => match &value {
                // Kept exactly: `as_text` would trim the blank line that ends the last event.
                RawValue::Json(Value::String(s)) => self.transcript = Some(s.clone()),
                RawValue::Text(t) => self.transcript = Some((*t).to_owned()),
                RawValue::Json(_) => return Err(invalid("a string")),
            },
            other => return Err(OptionError::Unknown(other.to_string())),
        }
        Ok(())
    }
}

/// Options set on the server itself ([`crate::MockUpstream::set_options`]), checked when set, applied
/// to every request after the model defaults and before anything the request says.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct ServerOptions(Vec<(String, Value)>);

impl ServerOptions {
    /// Reads a JSON object of options (`{"tokens": 20, "gap_ms": 5}`, the same as a body's `mock`).
    pub(crate) fn parse(options: &Value) -> Result<ServerOptions, OptionError> {
        let map = options.as_object().ok_or(OptionError::NotAnObject)?;
        let mut check = Behaviour::for_model("", false);
        let mut out = Vec::with_capacity(map.len());
        for (name, value) in map {
            let name = normalise(name);
            check.set(&name, RawValue::Json(value))?;
            out.push((name, value.clone()));
        }
        Ok(ServerOptions(out))
    }

    fn apply(&self, behaviour: &mut Behaviour) -> Result<(), OptionError> {
        for (name, value) in &self.0 {
            behaviour.set(name, RawValue::Json(value))?;
        }
        Ok(())
    }
}

/// Splits `gpt-4o@tokens=5,status=503` into the model name and the option text.
pub(crate) fn split_model(model: &str) -> (&str, Option<&str>) {
    match model.split_once('@') {
        Some((base, opts)) => (base, Some(opts)),
        None => (model, None),
    }
}

/// Resolves the behaviour for one request from the server's options and, when `steering` allows,
/// its model name, headers and JSON body. `model` is the full requested name (with any `@` suffix).
pub(crate) fn resolve(
    model: &str,
    thinking_requested: bool,
    headers: &HeaderMap,
    body: &Value,
    server: &ServerOptions,
    steering: Steering,
) -> Result<Behaviour, OptionError> {
    let (base, suffix) = split_model(model);
    let mut behaviour = Behaviour::for_model(base, thinking_requested);
    server.apply(&mut behaviour)?;
    if steering == Steering::ServerOnly {
        return Ok(behaviour);
    }
    if let Some(suffix) = suffix {
        for pair in suffix.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, value) = pair.split_once('=').ok_or_else(|| OptionError::Invalid {
                name: pair.to_string(),
                value: String::new(),
                expected: "`name=value`",
            })?;
            behaviour.set(&normalise(name), RawValue::Text(value))?;
        }
    }
    for (name, value) in headers {
        if let Some(option) = name.as_str().strip_prefix("x-mock-") {
            let value = value.to_str().map_err(|_| OptionError::Invalid {
                name: option.to_string(),
                value: String::from_utf8_lossy(value.as_bytes()).into_owned(),
                expected: "visible ASCII",
            })?;
            behaviour.set(&normalise(option), RawValue::Text(value))?;
        }
    }
    match body.get("mock") {
        None | Some(Value::Null) => {}
        Some(Value::Object(map)) => {
            for (name, value) in map {
                behaviour.set(&normalise(name), RawValue::Json(value))?;
            }
        }
        Some(_) => return Err(OptionError::NotAnObject),
    }
    Ok(behaviour)
}

/// `ttft-ms`, `TTFT_MS` and `ttft_ms` all name the same option.
fn normalise(name: &str) -> String {
    name.trim().to_ascii_lowercase().replace('-', "_")
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;
    use serde_json::json;

    #[test]
    fn later_sources_override_earlier_ones() {
        let mut headers = HeaderMap::new();
        headers.insert("x-mock-ttft-ms", HeaderValue::from_static("7"));
        headers.insert("x-mock-tokens", HeaderValue::from_static("4"));
        let body = json!({"mock": {"tokens": 2, "usage": false, "fail_key": "k1"}});
        let server = ServerOptions::parse(&json!({"tokens": 9, "gap_ms": 3})).unwrap();
        let b = resolve(
            "demo-reasoner@tokens=5,ttft_ms=200,status=503",
            false,
            &headers,
            &body,
            &server,
            Steering::Requests,
        )
        .unwrap();
        assert_eq!(b.tokens, 2);
        assert_eq!(b.ttft_ms, 7);
        assert_eq!(b.status, Some(503));
        assert_eq!(b.reasoning, DEFAULT_REASONING);
        assert_eq!(b.usage, Some(false));
        assert_eq!(b.fail_key.as_deref(), Some("k1"));
        assert_eq!(
            b.gap_ms, 3,
            "the server's option stands where nothing overrides it"
        );
    }

    #[test]
    fn a_server_only_mock_ignores_everything_a_request_says() {
        let mut headers = HeaderMap::new();
        headers.insert("x-mock-status", HeaderValue::from_static("500"));
        headers.insert("x-mock-tokens", HeaderValue::from_static("abc"));
        let body =
            json!({"mock": {"prompt_tokens": 4_000_000_000u64, "tokens": 100_000, "bogus": 1}});
        let server = ServerOptions::default();
        let b = resolve(
            "demo-chat@tokens=999999,gap_ms=60000",
            false,
            &headers,
            &body,
            &server,
            Steering::ServerOnly,
        )
        .unwrap();
        assert_eq!(b, Behaviour::for_model("demo-chat", false));
        let server = ServerOptions::parse(&json!({"tokens": 3})).unwrap();
        let b = resolve(
            "demo-chat",
            false,
            &headers,
            &body,
            &server,
            Steering::ServerOnly,
        )
        .unwrap();
        assert_eq!(b.tokens, 3);
        assert_eq!(b.status, None);
    }

    #[test]
    fn server_options_are_checked_when_set() {
        assert_eq!(
            ServerOptions::parse(&json!({"tokenz": 1})),
            Err(OptionError::Unknown("tokenz".into()))
        );
        assert!(matches!(
            ServerOptions::parse(&json!({"status": 200})),
            Err(OptionError::Invalid { .. })
        ));
        assert_eq!(
            ServerOptions::parse(&json!([1])),
            Err(OptionError::NotAnObject)
        );
    }

    /// A request-steered mock without server options.
    fn by_request(
        model: &str,
        headers: &HeaderMap,
        body: &Value,
    ) -> Result<Behaviour, OptionError> {
        super::resolve(
            model,
            false,
            headers,
            body,
            &ServerOptions::default(),
            Steering::Requests,
        )
    }

    #[test]
    fn unknown_or_bad_options_are_errors() {
        let none = HeaderMap::new();
        assert_eq!(
            by_request("m@tokenz=5", &none, &Value::Null),
            Err(OptionError::Unknown("tokenz".into()))
        );
        assert!(matches!(
            by_request("m@tokens=-1", &none, &Value::Null),
            Err(OptionError::Invalid { .. })
        ));
        assert!(matches!(
            by_request("m@status=200", &none, &Value::Null),
            Err(OptionError::Invalid { .. })
        ));
        assert_eq!(
            by_request("m", &none, &json!({"mock": 3})),
            Err(OptionError::NotAnObject)
        );
    }

    #[test]
    fn every_listed_option_is_accepted() {
        for name in OPTION_NAMES {
            let value = match name {
                "finish" => "length",
                "usage" => "true",
                "status" => "500",
                _ => "1",
            };
            let mut b = Behaviour::for_model("m", false);
            assert_eq!(b.set(name, RawValue::Text(value)), Ok(()), "{name}");
            assert_ne!(
                b,
                Behaviour::for_model("m", false),
                "{name} changes nothing"
            );
        }
    }

    #[test]
    fn model_defaults() {
        assert_eq!(Behaviour::for_model("demo-chat", false).reasoning, 0);
        assert_eq!(
            Behaviour::for_model("deepseek-reasoner", false).reasoning,
            8
        );
        assert_eq!(Behaviour::for_model("claude-x", true).reasoning, 8);
        assert_eq!(split_model("gpt-4o@tokens=1"), ("gpt-4o", Some("tokens=1")));
    }
}
