//! `[routing]`: retries, failover and the circuit breaker, with their defaults.

use std::time::Duration;

use super::raw::RawRouting;

/// Retry, failover and circuit-breaker settings (`[routing]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoutingConfig {
    /// Attempts per request, retries of the same route included; `None` = every route once plus
    /// one more try of the first.
    pub max_attempts: Option<u32>,
    /// No new attempt starts, and no backoff is waited, past this much time after the request began.
    pub retry_budget: Duration,
    /// Backoff before revisiting a route: `base * 2^(round-1)`, capped at `backoff_max`, jittered.
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    /// The longest upstream `retry-after` the gateway waits out itself.
    pub max_retry_after: Duration,
    /// Whether `x-switchyard-provider` and `x-switchyard-attempts` are sent.
    pub served_headers: bool,
    pub breaker: BreakerConfig,
    /// A streamed request with no first upstream event after this long commits: 200 and the SSE
    /// headers go out, then `: keep-alive` comments, so that proxies (nginx's
    /// `proxy_read_timeout`, a load balancer's idle timeout) do not cut a long prefill. Failover
    /// goes on behind the comments; only when every route failed is the error an in-stream event.
    /// `ZERO` = never (errors stay HTTP statuses).
    pub commit_after: Duration,
}

/// When a route's breaker opens: `failures` failures in a row, or at least `error_percent` percent
/// failures among its last `window` outcomes (once there are `min_requests` of them). It then stays
/// open for `cooldown`, after which one request probes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BreakerConfig {
    pub failures: u32,
    pub window: u32,
    pub error_percent: u32,
    pub min_requests: u32,
    pub cooldown: Duration,
}

impl Default for RoutingConfig {
    fn default() -> Self {
        RoutingConfig {
            max_attempts: None,
            retry_budget: Duration::from_secs(15),
            backoff_base: Duration::from_millis(100),
            backoff_max: Duration::from_secs(2),
            max_retry_after: Duration::from_secs(10),
            served_headers: true,
            commit_after: Duration::from_secs(10),
            breaker: BreakerConfig {
                failures: 5,
                window: 20,
                error_percent: 50,
                min_requests: 10,
                cooldown: Duration::from_secs(30),
            },
        }
    }
}

pub(super) fn routing_config(r: RawRouting) -> RoutingConfig {
    let d = RoutingConfig::default();
    let ms = |v: Option<u64>, d: Duration| v.map(Duration::from_millis).unwrap_or(d);
    RoutingConfig {
        max_attempts: r.max_attempts.map(|n| n.max(1)),
        retry_budget: ms(r.retry_budget_ms, d.retry_budget),
        backoff_base: ms(r.backoff_base_ms, d.backoff_base),
        backoff_max: ms(r.backoff_max_ms, d.backoff_max),
        max_retry_after: ms(r.max_retry_after_ms, d.max_retry_after),
        served_headers: r.served_headers.unwrap_or(d.served_headers),
        commit_after: ms(r.commit_after_ms, d.commit_after),
        breaker: BreakerConfig {
            failures: r.breaker_failures.unwrap_or(d.breaker.failures).max(1),
            window: r.breaker_window.unwrap_or(d.breaker.window).max(1),
            error_percent: r
                .breaker_error_percent
                .unwrap_or(d.breaker.error_percent)
                .clamp(1, 100),
            min_requests: r
                .breaker_min_requests
                .unwrap_or(d.breaker.min_requests)
                .max(1),
            cooldown: ms(r.breaker_cooldown_ms, d.breaker.cooldown),
        },
    }
}
