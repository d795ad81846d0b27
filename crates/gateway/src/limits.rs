//! Per-key rate limits: requests per minute (`rpm`) and tokens per minute (`tpm`), as set on the
//! key (`switchyard keys create --rpm N --tpm N`, `PATCH /admin/keys/{id}`).
//!
//! Both limits are a GCRA (a token bucket that refills continuously: the whole limit over one
//! minute), so there is no minute boundary at which a burst could double. Each key keeps one
//! "theoretical arrival time" per limit; admitting a cost moves it forward by `cost × 60 s / limit`
//! and is refused when it would end up more than a minute ahead of now.
//!
//! A request is counted at admission: one request, and its token bound (the prompt bound plus the
//! most the completion can produce, capped at the key's `tpm` so that one large request can still
//! run on an idle key) is reserved. At settlement the reservation is corrected to the tokens the
//! request really used (`settle`). Keys without limits cost one branch.
//!
//! The state lives in this process (a `std` mutex over a map of keys) unless `redis` is configured;
//! then it lives in Redis (`limits/redis_store.rs`) and is shared by every instance using it, one round
//! trip per admission. When Redis cannot be reached the limits fail open: traffic is admitted, and
//! a warning is logged at most once a minute.

mod redis_store;

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The window every limit is expressed over, in microseconds.
const WINDOW_US: u64 = 60_000_000;

/// Why the limits could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum LimitsError {
    #[error("invalid redis URL: {0}")]
    RedisUrl(String),
}

/// A key's limits; `None` is unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KeyLimits {
    pub rpm: Option<u64>,
    pub tpm: Option<u64>,
}

impl KeyLimits {
    /// From the key's stored values; zero or negative means no limit.
    pub fn new(rpm: Option<i64>, tpm: Option<i64>) -> KeyLimits {
        let positive = |v: Option<i64>| v.and_then(|n| u64::try_from(n).ok()).filter(|n| *n > 0);
        KeyLimits {
            rpm: positive(rpm),
            tpm: positive(tpm),
        }
    }

    pub fn is_unlimited(&self) -> bool {
        self.rpm.is_none() && self.tpm.is_none()
    }
}

/// The state of one limit after a decision, as the `x-ratelimit-*` headers show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Level {
    pub limit: u64,
    pub remaining: u64,
    /// Until the limit is back to its full value.
    pub reset: Duration,
}

/// Both limits of a key after a decision (`None`: the key has no such limit).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Quota {
    pub requests: Option<Level>,
    pub tokens: Option<Level>,
}

/// A refused admission.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused {
    /// When the same request would be admitted (at most a minute).
    pub retry_after: Duration,
    pub quota: Quota,
    /// Which limit refused: true for tokens, false for requests.
    pub by_tokens: bool,
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (what, level) = if self.by_tokens {
            ("tokens", self.quota.tokens)
        } else {
            ("requests", self.quota.requests)
        };
        write!(f, "Rate limit reached for {what} per minute")?;
        if let Some(l) = level {
            write!(f, " (limit {})", l.limit)?;
        }
        write!(
            f,
            " on this API key. Please try again in {}.",
            go_duration(self.retry_after)
        )
    }
}

/// What admission reserved; handed to `settle` with the tokens really used.
#[derive(Debug)]
pub struct Reservation {
    limits: Limits,
    tpm: u64,
    reserved: u64,
}

/// The admitted side of a decision.
#[derive(Debug, Default)]
pub struct Admitted {
    /// The token reservation to settle (only for keys with a `tpm`).
    pub reservation: Option<Reservation>,
    pub quota: Quota,
}

/// The rate limiter, shared by every request (cheap to clone).
#[derive(Debug, Clone)]
pub struct Limits {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    memory: Memory,
    redis: Option<redis_store::RedisLimits>,
    origin: Instant,
}

impl Limits {
    /// In-process limits, or shared ones in Redis when `redis_url` is set. Connects lazily.
    pub fn new(redis_url: Option<&str>) -> Result<Limits, LimitsError> {
        Ok(match redis_url {
            Some(url) => Limits::with(Some(redis_store::RedisLimits::new(url)?)),
            None => Limits::in_process(),
        })
    }

    /// Limits kept in this process only.
    pub fn in_process() -> Limits {
        Limits::with(None)
    }

    fn with(redis: Option<redis_store::RedisLimits>) -> Limits {
        Limits {
            inner: Arc::new(Inner {
                memory: Memory::default(),
                redis,
                origin: Instant::now(),
            }),
        }
    }

    /// Counts one request and reserves `tokens` for key `key_id`, or refuses it.
    pub async fn reserve(
        &self,
        key_id: &str,
        limits: KeyLimits,
        tokens: u64,
    ) -> Result<Admitted, Refused> {
        if limits.is_unlimited() {
            return Ok(Admitted::default());
        }
        let costs = Costs::new(limits, tokens);
        let decision = match &self.inner.redis {
            Some(r) => match r.reserve(key_id, &costs).await {
                Some(d) => d,
                None => return Ok(Admitted::default()), // Redis is down: fail open.
            },
            None => self.inner.memory.reserve(key_id, &costs, self.now_us()),
        };
        let quota = decision.quota(&costs);
        if let Some((retry_after, by_tokens)) = decision.refusal(&costs) {
            return Err(Refused {
                retry_after,
                quota,
                by_tokens,
            });
        }
        Ok(Admitted {
            reservation: limits.tpm.map(|tpm| Reservation {
                limits: self.clone(),
                tpm,
                reserved: costs.tokens,
            }),
            quota,
        })
    }

    fn now_us(&self) -> u64 {
        self.inner.origin.elapsed().as_micros() as u64
    }
}

impl Reservation {
    /// Corrects the reservation of key `key_id` to the `used` tokens (prompt plus completion).
    /// With Redis the correction is sent in the background.
    pub fn settle(self, key_id: &str, used: u64) {
        let delta = signed_interval(used, self.reserved, self.tpm);
        if delta == 0 {
            return;
        }
        match &self.limits.inner.redis {
            Some(_) => {
                if let Ok(handle) = tokio::runtime::Handle::try_current() {
                    let limits = self.limits.clone();
                    let key_id = key_id.to_owned();
                    handle.spawn(async move {
                        if let Some(r) = &limits.inner.redis {
                            r.settle(&key_id, delta).await;
                        }
                    });
                }
            }
            None => self.limits.inner.memory.settle(key_id, delta),
        }
    }
}

/// The microseconds `cost` moves a limit of `limit` per minute.
fn interval(cost: u64, limit: u64) -> u64 {
    (u128::from(cost) * u128::from(WINDOW_US) / u128::from(limit.max(1))) as u64
}

/// `interval(used) - interval(reserved)`, signed.
fn signed_interval(used: u64, reserved: u64, limit: u64) -> i64 {
    if used >= reserved {
        interval(used - reserved, limit) as i64
    } else {
        -(interval(reserved - used, limit) as i64)
    }
}

/// What one admission costs on each limit.
#[derive(Debug, Clone, Copy)]
struct Costs {
    limits: KeyLimits,
    /// The token reservation, capped at the `tpm`.
    tokens: u64,
}

impl Costs {
    fn new(limits: KeyLimits, tokens: u64) -> Costs {
        Costs {
            limits,
            tokens: limits.tpm.map_or(0, |tpm| tokens.min(tpm)),
        }
    }

    fn request_interval(&self) -> u64 {
        self.limits.rpm.map_or(0, |rpm| interval(1, rpm))
    }

    fn token_interval(&self) -> u64 {
        self.limits.tpm.map_or(0, |tpm| interval(self.tokens, tpm))
    }
}

/// The outcome of a GCRA step on both limits, relative to now (microseconds): how far ahead each
/// limit's arrival time is (`ahead_*`, after the admission if it was admitted, else before).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Decision {
    admitted: bool,
    ahead_requests: u64,
    ahead_tokens: u64,
}

impl Decision {
    /// The GCRA rule: admitted when both limits stay within one window ahead of now.
    fn decide(ahead_requests: u64, ahead_tokens: u64, costs: &Costs) -> Decision {
        let (r, t) = (
            ahead_requests + costs.request_interval(),
            ahead_tokens + costs.token_interval(),
        );
        if r <= WINDOW_US && t <= WINDOW_US {
            Decision {
                admitted: true,
                ahead_requests: r,
                ahead_tokens: t,
            }
        } else {
            Decision {
                admitted: false,
                ahead_requests,
                ahead_tokens,
            }
        }
    }

    fn quota(&self, costs: &Costs) -> Quota {
        let level = |limit: Option<u64>, ahead: u64| {
            limit.map(|limit| Level {
                limit,
                remaining: (u128::from(WINDOW_US.saturating_sub(ahead)) * u128::from(limit)
                    / u128::from(WINDOW_US)) as u64,
                reset: Duration::from_micros(ahead),
            })
        };
        Quota {
            requests: level(costs.limits.rpm, self.ahead_requests),
            tokens: level(costs.limits.tpm, self.ahead_tokens),
        }
    }

    /// For a refusal: when the request would fit, and whether the tokens are what refused it.
    fn refusal(&self, costs: &Costs) -> Option<(Duration, bool)> {
        if self.admitted {
            return None;
        }
        let wait = |ahead: u64, cost: u64| (ahead + cost).saturating_sub(WINDOW_US);
        let by_requests = wait(self.ahead_requests, costs.request_interval());
        let by_tokens = wait(self.ahead_tokens, costs.token_interval());
        let us = by_requests.max(by_tokens).clamp(1, WINDOW_US);
        Some((Duration::from_micros(us), by_tokens > by_requests))
    }
}

/// One key's arrival times in this process (microseconds since `Inner::origin`).
#[derive(Debug, Default, Clone, Copy)]
struct Arrivals {
    requests: u64,
    tokens: u64,
}

/// The in-process state: one entry per limited key that was used.
#[derive(Debug, Default)]
struct Memory {
    keys: Mutex<HashMap<String, Arrivals>>,
}

impl Memory {
    fn reserve(&self, key_id: &str, costs: &Costs, now: u64) -> Decision {
        let mut keys = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        let a = match keys.get_mut(key_id) {
            Some(a) => a,
            None => keys.entry(key_id.to_owned()).or_default(),
        };
        let d = Decision::decide(
            a.requests.saturating_sub(now),
            a.tokens.saturating_sub(now),
            costs,
        );
        if d.admitted {
            if costs.limits.rpm.is_some() {
                a.requests = now + d.ahead_requests;
            }
            if costs.limits.tpm.is_some() {
                a.tokens = now + d.ahead_tokens;
            }
        }
        d
    }

    fn settle(&self, key_id: &str, delta_us: i64) {
        let mut keys = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(a) = keys.get_mut(key_id) {
            a.tokens = a.tokens.saturating_add_signed(delta_us);
        }
    }
}

/// A duration the way Go prints it (`12ms`, `1s`, `1.5s`, `6m0s`), as OpenAI's reset headers do.
/// Rounded up to the millisecond.
pub fn go_duration(d: Duration) -> String {
    let ms = d.as_micros().div_ceil(1000) as u64;
    if ms == 0 {
        return "0s".into();
    }
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let (h, m, s, frac) = (ms / 3_600_000, ms / 60_000 % 60, ms / 1000 % 60, ms % 1000);
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if h > 0 || m > 0 {
        out.push_str(&format!("{m}m"));
    }
    out.push_str(&s.to_string());
    if frac > 0 {
        let f = format!("{frac:03}");
        out.push('.');
        out.push_str(f.trim_end_matches('0'));
    }
    out.push('s');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn costs(rpm: Option<u64>, tpm: Option<u64>, tokens: u64) -> Costs {
        Costs::new(KeyLimits { rpm, tpm }, tokens)
    }

    #[test]
    fn three_requests_per_minute_then_one_every_twenty_seconds() {
        let m = Memory::default();
        let c = costs(Some(3), None, 0);
        for _ in 0..3 {
            assert!(m.reserve("k", &c, 1_000).admitted);
        }
        let d = m.reserve("k", &c, 1_000);
        assert!(!d.admitted);
        let (wait, by_tokens) = d.refusal(&c).unwrap();
        assert_eq!(wait, Duration::from_secs(20));
        assert!(!by_tokens);
        assert_eq!(d.quota(&c).requests.unwrap().remaining, 0);
        // 20 s later exactly one more fits.
        let later = 1_000 + 20_000_000;
        assert!(m.reserve("k", &c, later).admitted);
        assert!(!m.reserve("k", &c, later).admitted);
        // Other keys are independent.
        assert!(m.reserve("other", &c, later).admitted);
    }

    #[test]
    fn tokens_are_reserved_and_settled_to_what_was_used() {
        let m = Memory::default();
        let c = costs(None, Some(1000), 400);
        assert!(m.reserve("k", &c, 0).admitted);
        let d = m.reserve("k", &c, 0);
        assert!(d.admitted);
        assert_eq!(d.quota(&c).tokens.unwrap().remaining, 200);
        assert!(!m.reserve("k", &c, 0).admitted);
        // Both used only 100 tokens: 800 come back.
        m.settle("k", signed_interval(100, 400, 1000));
        m.settle("k", signed_interval(100, 400, 1000));
        assert!(m.reserve("k", &c, 0).admitted);
        assert!(m.reserve("k", &c, 0).admitted);
        assert!(!m.reserve("k", &c, 0).admitted);
    }

    #[test]
    fn a_request_larger_than_the_limit_runs_on_an_idle_key() {
        let m = Memory::default();
        let c = costs(None, Some(1000), 50_000);
        assert!(m.reserve("k", &c, 0).admitted);
        let d = m.reserve("k", &c, 0);
        assert!(!d.admitted);
        let (wait, by_tokens) = d.refusal(&c).unwrap();
        assert_eq!(wait, Duration::from_secs(60));
        assert!(by_tokens);
    }

    #[test]
    fn refusals_consume_nothing() {
        let m = Memory::default();
        let c = costs(Some(10), Some(100), 60);
        assert!(m.reserve("k", &c, 0).admitted);
        for _ in 0..5 {
            assert!(!m.reserve("k", &c, 0).admitted);
        }
        let small = costs(Some(10), Some(100), 40);
        let d = m.reserve("k", &small, 0);
        assert!(d.admitted);
        assert_eq!(d.quota(&small).requests.unwrap().remaining, 8);
    }

    #[test]
    fn durations_print_like_go() {
        let cases = [
            (0, "0s"),
            (12, "12ms"),
            (1000, "1s"),
            (1500, "1.5s"),
            (20_000, "20s"),
            (90_000, "1m30s"),
            (360_000, "6m0s"),
            (3_600_000, "1h0m0s"),
        ];
        for (ms, want) in cases {
            assert_eq!(go_duration(Duration::from_millis(ms)), want);
        }
        assert_eq!(go_duration(Duration::from_micros(1)), "1ms");
    }

    #[test]
    fn stored_limits_below_one_mean_none() {
        assert!(KeyLimits::new(Some(0), Some(-5)).is_unlimited());
        assert_eq!(KeyLimits::new(Some(3), None).rpm, Some(3));
    }
}
