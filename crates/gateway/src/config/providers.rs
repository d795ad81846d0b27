//! `[providers]` validated into `ProviderConfig`s: URLs, limits, quotas and key pools checked.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use super::provider::{
    native_responses, ProviderConfig, RequestIdHeader, Timeouts, UpstreamLimits,
};
use super::raw::RawProvider;
use super::secrets::{Secret, DEFAULT_CREDENTIAL_REFRESH_INTERVAL, DEFAULT_CREDENTIAL_TIMEOUT};

/// Each pool's members' names (`name#1`, `name#2`, …), by the pool's name.
pub(super) type Pools = BTreeMap<String, Vec<String>>;

/// `[providers]` validated: every provider (a pool as one member per key), and the pools.
pub(super) fn providers(
    raw: BTreeMap<String, RawProvider>,
) -> Result<(BTreeMap<String, Arc<ProviderConfig>>, Pools), String> {
    let mut providers = BTreeMap::new();
    let mut pools = Pools::new();
    for (name, p) in raw {
        let provider = provider(&name, &p)?;
        let keys: Vec<(String, Option<Secret>)> = match (&p.api_key, &p.api_keys) {
            (Some(_), Some(_)) => {
                return Err(format!(
                    "providers.{name}: give api_key or api_keys, not both"
                ))
            }
            (_, Some(keys)) if keys.is_empty() => {
                return Err(format!("providers.{name}.api_keys is empty"))
            }
            (_, Some(keys)) => {
                let members: Vec<String> =
                    (1..=keys.len()).map(|i| format!("{name}#{i}")).collect();
                pools.insert(name.clone(), members.clone());
                members
                    .into_iter()
                    .zip(keys.iter().map(|k| Some(Secret::parse(k))))
                    .collect()
            }
            (key, None) => vec![(name.clone(), key.as_deref().map(Secret::parse))],
        };
        for (name, api_key) in keys {
            let member = ProviderConfig {
                name: name.clone(),
                api_key,
                ..provider.clone()
            };
            providers.insert(name, Arc::new(member));
        }
    }
    Ok((providers, pools))
}

/// One provider's settings checked and completed with their defaults; its name and key are
/// `name`'s and none (a pool's members each take their own).
fn provider(name: &str, p: &RawProvider) -> Result<ProviderConfig, String> {
    let defaults = Timeouts::default();
    let ms = |v: Option<u64>, d: Duration| v.map(Duration::from_millis).unwrap_or(d);
    let Some(base_url) = p
        .base_url
        .clone()
        .or_else(|| p.kind.default_base_url().map(str::to_owned))
    else {
        return Err(format!(
            "providers.{name}.base_url is required for kind = \"{}\"",
            p.kind.as_str()
        ));
    };
    if !(base_url.starts_with("http://") || base_url.starts_with("https://")) {
        return Err(format!(
            "providers.{name}.base_url = \"{base_url}\" must start with http:// or https://"
        ));
    }
    let limits = provider_limits(name, p)?;
    for (field, v) in [("rpm", p.rpm), ("tpm", p.tpm)] {
        if v == Some(0) {
            return Err(format!(
                "providers.{name}.{field} must be above 0 (leave it out for no limit)"
            ));
        }
    }
    let credential_timeout = ms(p.credential_timeout_ms, DEFAULT_CREDENTIAL_TIMEOUT);
    if credential_timeout.is_zero() {
        return Err(format!(
            "providers.{name}.credential_timeout_ms must be above 0"
        ));
    }
    let native_responses = native_responses(p.kind, &base_url, p.native_responses)
        .map_err(|e| format!("providers.{name}.{e}"))?;
    Ok(ProviderConfig {
        name: name.to_owned(),
        kind: p.kind,
        base_url: base_url.trim_end_matches('/').to_owned(),
        api_key: None,
        timeouts: Timeouts {
            connect: ms(p.connect_timeout_ms, defaults.connect),
            first_token: ms(p.first_token_timeout_ms, defaults.first_token),
            idle: ms(p.idle_timeout_ms, defaults.idle),
            total: ms(p.total_timeout_ms, defaults.total),
        },
        limits,
        credential_timeout,
        credential_refresh_interval: ms(
            p.credential_refresh_interval_ms,
            DEFAULT_CREDENTIAL_REFRESH_INTERVAL,
        ),
        rpm: p.rpm,
        tpm: p.tpm,
        request_id: RequestIdHeader::for_provider(
            p.kind,
            &base_url,
            p.request_id_header.as_deref(),
            p.request_id_uuid,
        ),
        native_responses,
    })
}

/// A provider's read limits: the defaults, overridden by what it sets; none may be 0.
fn provider_limits(name: &str, p: &RawProvider) -> Result<UpstreamLimits, String> {
    let d = UpstreamLimits::default();
    let pick = |field: &str, v: Option<usize>, d: usize| match v {
        Some(0) => Err(format!("providers.{name}.{field} must be above 0")),
        v => Ok(v.unwrap_or(d)),
    };
    Ok(UpstreamLimits {
        sse: switchyard_wire::sse::Limits {
            max_line: pick("max_sse_line_bytes", p.max_sse_line_bytes, d.sse.max_line)?,
            max_event: pick(
                "max_sse_event_bytes",
                p.max_sse_event_bytes,
                d.sse.max_event,
            )?,
        },
        response: pick("max_response_bytes", p.max_response_bytes, d.response)?,
        error_body: pick("max_error_body_bytes", p.max_error_body_bytes, d.error_body)?,
    })
}
