//! `[capture]` and `[otlp]`: captured text's bounds and redaction, and trace export.

use std::collections::BTreeMap;

use super::raw::{RawCapture, RawOtlp};
use super::secrets::Secret;

/// `[otlp]`: where request spans go (OTLP over HTTP, protobuf), with the OpenTelemetry GenAI
/// attributes. Off unless configured: no exporter, no thread, nothing per request.
#[derive(Debug, Clone, PartialEq)]
pub struct OtlpConfig {
    /// The collector's base URL (`http://collector:4318`); spans go to `{endpoint}/v1/traces`
    /// unless it already names that path.
    pub endpoint: String,
    /// Extra request headers (an API key for a hosted collector): values may be env:/file:/cmd:.
    pub headers: BTreeMap<String, Secret>,
    pub service_name: String,
    /// The share of traces exported, 0.0 to 1.0 (a client's sampled `traceparent` flag wins).
    pub sample_ratio: f64,
}

pub(super) fn otlp_config(r: RawOtlp) -> Result<OtlpConfig, String> {
    let endpoint = r.endpoint.trim().trim_end_matches('/').to_owned();
    if !(endpoint.starts_with("http://") || endpoint.starts_with("https://"))
        || endpoint.parse::<http::Uri>().is_err()
    {
        return Err(format!(
            "otlp.endpoint = \"{}\": expected an http(s) URL such as \"http://collector:4318\"",
            r.endpoint
        ));
    }
    let sample_ratio = r.sample_ratio.unwrap_or(1.0);
    if !(0.0..=1.0).contains(&sample_ratio) {
        return Err(format!(
            "otlp.sample_ratio = {sample_ratio}: expected 0.0 to 1.0"
        ));
    }
    for name in r.headers.keys() {
        if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
            return Err(format!("otlp.headers: \"{name}\" is not a header name"));
        }
    }
    Ok(OtlpConfig {
        endpoint,
        headers: r
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), Secret::parse(v)))
            .collect(),
        service_name: r
            .service_name
            .filter(|s| !s.trim().is_empty())
            .unwrap_or_else(|| "switchyard".into()),
        sample_ratio,
    })
}

/// `[capture]`: the bounds of captured text. Capture is off for every key until an operator turns
/// it on for one (`PATCH /admin/keys/{id}` with `"capture"`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaptureConfig {
    /// The most bytes kept of a request's messages, and of its completion (each; cut at a
    /// character boundary after redaction).
    pub max_bytes: usize,
    /// The retention of a key's captures when its capture is turned on without one.
    pub default_retention_hours: i64,
    /// The longest retention a key may have; older captures are purged whatever the key says.
    pub max_retention_hours: i64,
    /// Regular expressions whose matches are redacted, besides secrets and key-shaped tokens
    /// (which always are). Default: email addresses and card-number-like digit runs.
    pub redact: Vec<String>,
}

/// Email addresses.
pub const REDACT_EMAIL: &str = r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}";
/// 13 to 19 digits, optionally grouped by spaces or dashes (card numbers).
pub const REDACT_CARD: &str = r"\b\d(?:[ -]?\d){12,18}\b";

impl Default for CaptureConfig {
    fn default() -> Self {
        CaptureConfig {
            max_bytes: 64 * 1024,
            default_retention_hours: 7 * 24,
            max_retention_hours: 30 * 24,
            redact: vec![REDACT_EMAIL.into(), REDACT_CARD.into()],
        }
    }
}

pub(super) fn capture_config(r: RawCapture) -> Result<CaptureConfig, String> {
    let d = CaptureConfig::default();
    let max_retention_hours = r.max_retention_hours.unwrap_or(d.max_retention_hours);
    if !(1..=24 * 3660).contains(&max_retention_hours) {
        return Err(format!(
            "capture.max_retention_hours = {max_retention_hours}: expected 1 to 87840 (10 years)"
        ));
    }
    let default_retention_hours = r
        .default_retention_hours
        .unwrap_or(d.default_retention_hours.min(max_retention_hours));
    if !(1..=max_retention_hours).contains(&default_retention_hours) {
        return Err(format!(
            "capture.default_retention_hours = {default_retention_hours}: expected 1 to max_retention_hours ({max_retention_hours})"
        ));
    }
    let max_bytes = r.max_bytes.unwrap_or(d.max_bytes);
    if !(256..=16 * 1024 * 1024).contains(&max_bytes) {
        return Err(format!(
            "capture.max_bytes = {max_bytes}: expected 256 to 16777216"
        ));
    }
    let redact = r.redact.unwrap_or(d.redact);
    for p in &redact {
        if let Err(e) = regex::Regex::new(p) {
            let first = e.to_string();
            let first = first.lines().last().unwrap_or("").trim();
            return Err(format!(
                "capture.redact: \"{p}\" is not a regular expression ({first})"
            ));
        }
    }
    Ok(CaptureConfig {
        max_bytes,
        default_retention_hours,
        max_retention_hours,
        redact,
    })
}
