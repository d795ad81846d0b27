//! Per-key limits: requests per minute (`rpm`), tokens per minute (`tpm`) and requests open at
//! once (`max_concurrent`), as set on the key (`switchyard keys create --rpm N --tpm N
//! --concurrency N`, `PATCH /admin/keys/{id}`).
//!
//! `rpm` and `tpm` are a GCRA (a token bucket that refills continuously: the whole limit over one
//! minute), so there is no minute boundary at which a burst could double. Each key keeps one
//! "theoretical arrival time" per limit; admitting a cost moves it forward by `cost × 60 s / limit`
//! and is refused when it would end up more than a minute ahead of now.
//!
//! A request is counted at admission: one request, one open slot, and its token bound (the prompt
//! bound plus the most the completion can produce, capped at the key's `tpm` so that one large
//! request can still run on an idle key) is reserved. At settlement the reservation is corrected
//! to the tokens the request really used and the slot is released (`Reservation::settle`; a
//! reservation dropped unsettled releases its slot too). Keys without limits cost one branch.
//!
//! The state lives in this process (a `std` mutex over a map of keys) unless `redis` is configured;
//! then it lives in Redis (`limits/redis_store.rs`) and is shared by every instance using it: one
//! atomic script per admission on the Redis clock, so several instances are exact together. When
//! Redis cannot be reached, `redis_failure` decides: `open` (the default) admits and counts each
//! such admission in `switchyard_limits_fail_open_total`, `closed` refuses limited keys with a 503;
//! either way a warning is logged when it starts (then at most once a minute) and the limits resume
//! by themselves once Redis answers again.

mod redis_store;

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

use crate::config::RedisFailure;

/// The window every limit is expressed over, in microseconds.
const WINDOW_US: u64 = 60_000_000;

/// What a refusal for too many open requests asks the client to wait.
const CONCURRENCY_RETRY: Duration = Duration::from_secs(1);

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
    /// Requests open at once.
    pub concurrent: Option<u64>,
}

/// A stored limit; zero or negative means none.
fn positive(v: Option<i64>) -> Option<u64> {
    v.and_then(|n| u64::try_from(n).ok()).filter(|n| *n > 0)
}

impl KeyLimits {
    /// From the key's stored values; zero or negative means no limit.
    pub fn new(rpm: Option<i64>, tpm: Option<i64>) -> KeyLimits {
        KeyLimits {
            rpm: positive(rpm),
            tpm: positive(tpm),
            concurrent: None,
        }
    }

    /// With the key's stored `max_concurrent` (zero or negative: none).
    pub fn with_concurrency(self, max_concurrent: Option<i64>) -> KeyLimits {
        KeyLimits {
            concurrent: positive(max_concurrent),
            ..self
        }
    }

    pub fn is_unlimited(&self) -> bool {
        self.rpm.is_none() && self.tpm.is_none() && self.concurrent.is_none()
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

/// Which limit refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusedBy {
    Requests,
    Tokens,
    Concurrency,
}

/// A refused admission.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused {
    /// When the same request would be admitted (at most a minute).
    pub retry_after: Duration,
    pub quota: Quota,
    pub by: RefusedBy,
    /// The concurrency limit, when that is what refused.
    pub concurrent: Option<u64>,
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (what, level) = match self.by {
            RefusedBy::Tokens => ("tokens", self.quota.tokens),
            RefusedBy::Requests => ("requests", self.quota.requests),
            RefusedBy::Concurrency => {
                write!(f, "Too many concurrent requests")?;
                if let Some(n) = self.concurrent {
                    write!(f, " (limit {n})")?;
                }
                return write!(
                    f,
                    " on this API key. Please try again once one has finished."
                );
            }
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

/// Why a request was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotAdmitted {
    /// A limit refused it (429).
    Limited(Refused),
    /// Redis cannot be reached and `redis_failure = "closed"` (503).
    Unavailable,
}

/// What admission reserved: the tokens (corrected at settlement) and the open slot (released at
/// settlement, or when dropped).
#[derive(Debug)]
pub struct Reservation {
    limits: Limits,
    key_id: String,
    tpm: Option<u64>,
    reserved: u64,
    slot: Option<Slot>,
}

/// One open request counted against a key's `max_concurrent`.
#[derive(Debug)]
enum Slot {
    Memory,
    /// Its member in the key's Redis set of open requests.
    Redis(String),
}

/// The admitted side of a decision.
#[derive(Debug, Default)]
pub struct Admitted {
    /// What to settle (for keys with a `tpm` or a `max_concurrent`).
    pub reservation: Option<Reservation>,
    pub quota: Quota,
}

/// The rate limiter, shared by every request (cheap to clone).
#[derive(Debug, Clone)]
pub struct Limits {
    inner: Arc<Inner>,
}

/// A connection that reads shared streams (`Limits::stream_reader`).
pub struct StreamReader(redis_store::Connection);

impl StreamReader {
    /// The entries of `key` after the entry id `after`, waiting up to `block` for one.
    pub async fn read(
        &mut self,
        key: &str,
        after: &str,
        block: std::time::Duration,
    ) -> Option<Vec<redis_store::StreamEntry>> {
        redis_store::RedisLimits::stream_read(&mut self.0, key, after, block).await
    }
}

#[derive(Debug)]
struct Inner {
    memory: Memory,
    redis: Option<redis_store::RedisLimits>,
    failure: RedisFailure,
    origin: Instant,
}

impl Limits {
    /// `None` without Redis; otherwise whether Redis answers a `PING` now (for `/readyz`).
    pub async fn redis_ready(&self) -> Option<bool> {
        match &self.inner.redis {
            Some(r) => Some(r.ping().await),
            None => None,
        }
    }

    /// A value shared by every instance through Redis (`None` without Redis, or when it cannot
    /// answer): the routing affinity of conversations.
    pub async fn shared_get(&self, key: &str) -> Option<String> {
        self.inner.redis.as_ref()?.get(key).await
    }

    /// Whether a Redis is configured (streams are mirrored there).
    pub fn has_redis(&self) -> bool {
        self.inner.redis.is_some()
    }

    /// Appends entries to the shared stream `key` (see `redis_store::stream_append`); nothing
    /// without Redis.
    pub async fn stream_append(
        &self,
        key: &str,
        entries: &[Vec<(&'static str, Vec<u8>)>],
        max_len: usize,
        meta: Option<(&str, &str)>,
        ttl: std::time::Duration,
    ) {
        if let Some(r) = &self.inner.redis {
            r.stream_append(key, entries, max_len, meta, ttl).await;
        }
    }

    /// A reader of shared streams on a connection of its own; `None` without Redis or when it
    /// cannot be reached.
    pub async fn stream_reader(&self) -> Option<StreamReader> {
        Some(StreamReader(self.inner.redis.as_ref()?.dedicated().await?))
    }

    /// Sets a shared value expiring after `ttl`, in the background; nothing without Redis.
    pub fn shared_set(&self, key: String, value: String, ttl: std::time::Duration) {
        if self.inner.redis.is_none() {
            return;
        }
        let limits = self.clone();
        tokio::spawn(async move {
            if let Some(r) = &limits.inner.redis {
                r.set(&key, &value, ttl).await;
            }
        });
    }

    /// In-process limits, or shared ones in Redis when `redis_url` is set. Connects lazily.
    pub fn new(
        redis_url: Option<&str>,
        failure: RedisFailure,
        timeout: std::time::Duration,
    ) -> Result<Limits, LimitsError> {
        Ok(match redis_url {
            Some(url) => Limits::with(Some(redis_store::RedisLimits::new(url, timeout)?), failure),
            None => Limits::in_process(),
        })
    }

    /// Limits kept in this process only.
    pub fn in_process() -> Limits {
        Limits::with(None, RedisFailure::Open)
    }

    fn with(redis: Option<redis_store::RedisLimits>, failure: RedisFailure) -> Limits {
        Limits {
            inner: Arc::new(Inner {
                memory: Memory::default(),
                redis,
                failure,
                origin: Instant::now(),
            }),
        }
    }

    /// Counts one request, takes an open slot and reserves `tokens` for key `key_id`, or refuses.
    pub async fn reserve(
        &self,
        key_id: &str,
        limits: KeyLimits,
        tokens: u64,
    ) -> Result<Admitted, NotAdmitted> {
        if limits.is_unlimited() {
            return Ok(Admitted::default());
        }
        let costs = Costs::new(limits, tokens);
        let (decision, slot) = match &self.inner.redis {
            Some(r) => {
                let member = limits.concurrent.map(|_| r.new_slot());
                match r.reserve(key_id, &costs, member.as_deref()).await {
                    Some(d) => {
                        if d.admitted {
                            if let Some(m) = &member {
                                r.opened(key_id, m);
                                self.keep_leases();
                            }
                        }
                        (d, member.map(Slot::Redis))
                    }
                    None => {
                        return match self.inner.failure {
                            RedisFailure::Open => {
                                crate::telemetry::record_limits_fail_open();
                                Ok(Admitted::default())
                            }
                            RedisFailure::Closed => Err(NotAdmitted::Unavailable),
                        }
                    }
                }
            }
            None => (
                self.inner.memory.reserve(key_id, &costs, self.now_us()),
                limits.concurrent.map(|_| Slot::Memory),
            ),
        };
        let quota = decision.quota(&costs);
        if let Some((retry_after, by)) = decision.refusal(&costs) {
            return Err(NotAdmitted::Limited(Refused {
                retry_after,
                quota,
                by,
                concurrent: limits.concurrent,
            }));
        }
        let reservation = (limits.tpm.is_some() || slot.is_some()).then(|| Reservation {
            limits: self.clone(),
            key_id: key_id.to_owned(),
            tpm: limits.tpm,
            reserved: costs.tokens,
            slot,
        });
        Ok(Admitted { reservation, quota })
    }

    /// Counts one request and reserves `tokens` on the upstream account of `provider` (its
    /// configured `rpm`/`tpm`, for every key together), or says how long until it would fit.
    /// When Redis cannot answer, route quotas fail open whatever `redis_failure` says: the
    /// upstream still enforces its own quota, and its 429 fails over like any other.
    pub async fn reserve_route(
        &self,
        provider: &str,
        rpm: Option<u64>,
        tpm: Option<u64>,
        tokens: u64,
    ) -> Result<Option<Reservation>, Duration> {
        let limits = KeyLimits {
            rpm,
            tpm,
            concurrent: None,
        };
        match self
            .reserve(&format!("route:{provider}"), limits, tokens)
            .await
        {
            Ok(a) => Ok(a.reservation),
            Err(NotAdmitted::Limited(r)) => Err(r.retry_after),
            Err(NotAdmitted::Unavailable) => Ok(None),
        }
    }

    /// Starts renewing this instance's open slots in Redis, once.
    fn keep_leases(&self) {
        let Some(r) = &self.inner.redis else { return };
        if !r.start_renewing() {
            return;
        }
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let weak = Arc::downgrade(&self.inner);
        handle.spawn(async move {
            let mut tick = tokio::time::interval(redis_store::RENEW_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(inner) = weak.upgrade() else { return };
                if let Some(r) = &inner.redis {
                    r.renew().await;
                }
            }
        });
    }

    /// Requests of `key_id` open in this process (memory only; for tests).
    pub fn open_in_memory(&self, key_id: &str) -> u64 {
        self.inner.memory.open(key_id)
    }

    fn now_us(&self) -> u64 {
        self.inner.origin.elapsed().as_micros() as u64
    }
}

impl Reservation {
    /// Corrects the token reservation to the `used` tokens (prompt plus completion) and releases
    /// the open slot. With Redis this is sent in the background.
    pub fn settle(mut self, used: u64) {
        let delta = self
            .tpm
            .map_or(0, |tpm| signed_interval(used, self.reserved, tpm));
        self.finish(delta);
    }

    fn finish(&mut self, delta: i64) {
        let slot = self.slot.take();
        if delta == 0 && slot.is_none() {
            return;
        }
        match (&self.limits.inner.redis, slot) {
            (Some(_), slot) => {
                let member = match slot {
                    Some(Slot::Redis(m)) => Some(m),
                    _ => None,
                };
                if let Ok(handle) = tokio::runtime::Handle::try_current() {
                    let limits = self.limits.clone();
                    let key_id = self.key_id.clone();
                    handle.spawn(async move {
                        if let Some(r) = &limits.inner.redis {
                            r.settle(&key_id, delta, member.as_deref()).await;
                        }
                    });
                }
            }
            (None, slot) => self
                .limits
                .inner
                .memory
                .settle(&self.key_id, delta, slot.is_some()),
        }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        // Not settled (the guard was lost): the slot comes back; the tokens stay reserved.
        if self.slot.is_some() {
            self.finish(0);
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

/// The outcome of a step on all three limits, relative to now (microseconds): how far ahead each
/// GCRA limit's arrival time is (`ahead_*`, after the admission if it was admitted, else before),
/// and whether the key's open requests were already at its `max_concurrent`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Decision {
    admitted: bool,
    ahead_requests: u64,
    ahead_tokens: u64,
    full: bool,
}

impl Decision {
    /// The rule: refused when `open` requests already fill the concurrency limit; else admitted
    /// when both GCRA limits stay within one window ahead of now. A refusal consumes nothing.
    fn decide(ahead_requests: u64, ahead_tokens: u64, open: u64, costs: &Costs) -> Decision {
        let full = costs.limits.concurrent.is_some_and(|max| open >= max);
        let (r, t) = (
            ahead_requests + costs.request_interval(),
            ahead_tokens + costs.token_interval(),
        );
        if !full && r <= WINDOW_US && t <= WINDOW_US {
            Decision {
                admitted: true,
                ahead_requests: r,
                ahead_tokens: t,
                full: false,
            }
        } else {
            Decision {
                admitted: false,
                ahead_requests,
                ahead_tokens,
                full,
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

    /// For a refusal: when the request would fit, and which limit refused it.
    fn refusal(&self, costs: &Costs) -> Option<(Duration, RefusedBy)> {
        if self.admitted {
            return None;
        }
        if self.full {
            return Some((CONCURRENCY_RETRY, RefusedBy::Concurrency));
        }
        let wait = |ahead: u64, cost: u64| (ahead + cost).saturating_sub(WINDOW_US);
        let by_requests = wait(self.ahead_requests, costs.request_interval());
        let by_tokens = wait(self.ahead_tokens, costs.token_interval());
        let us = by_requests.max(by_tokens).clamp(1, WINDOW_US);
        let by = if by_tokens > by_requests {
            RefusedBy::Tokens
        } else {
            RefusedBy::Requests
        };
        Some((Duration::from_micros(us), by))
    }
}

/// One key's arrival times in this process (microseconds since `Inner::origin`) and its open
/// requests.
#[derive(Debug, Default, Clone, Copy)]
struct Arrivals {
    requests: u64,
    tokens: u64,
    open: u64,
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
            a.open,
            costs,
        );
        if d.admitted {
            if costs.limits.rpm.is_some() {
                a.requests = now + d.ahead_requests;
            }
            if costs.limits.tpm.is_some() {
                a.tokens = now + d.ahead_tokens;
            }
            if costs.limits.concurrent.is_some() {
                a.open += 1;
            }
        }
        d
    }

    /// Moves the key's tokens by `delta_us` and, with `release`, closes one of its open slots.
    fn settle(&self, key_id: &str, delta_us: i64, release: bool) {
        let mut keys = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(a) = keys.get_mut(key_id) {
            a.tokens = a.tokens.saturating_add_signed(delta_us);
            if release {
                a.open = a.open.saturating_sub(1);
            }
        }
    }

    fn open(&self, key_id: &str) -> u64 {
        let keys = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        keys.get(key_id).map_or(0, |a| a.open)
    }
}

/// A duration the way Go prints it (`12ms`, `1s`, `1.5s`, `6m0s`), as OpenAI's reset headers do.
/// Rounded up to the millisecond.
pub(crate) fn go_duration(d: Duration) -> String {
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
        Costs::new(
            KeyLimits {
                rpm,
                tpm,
                concurrent: None,
            },
            tokens,
        )
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
        let (wait, by) = d.refusal(&c).unwrap();
        assert_eq!(wait, Duration::from_secs(20));
        assert_eq!(by, RefusedBy::Requests);
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
        m.settle("k", signed_interval(100, 400, 1000), false);
        m.settle("k", signed_interval(100, 400, 1000), false);
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
        let (wait, by) = d.refusal(&c).unwrap();
        assert_eq!(wait, Duration::from_secs(60));
        assert_eq!(by, RefusedBy::Tokens);
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
    fn open_requests_are_capped_and_come_back_at_settlement() {
        let m = Memory::default();
        let c = Costs::new(KeyLimits::new(Some(100), None).with_concurrency(Some(2)), 0);
        assert!(m.reserve("k", &c, 0).admitted);
        assert!(m.reserve("k", &c, 0).admitted);
        let d = m.reserve("k", &c, 0);
        assert!(!d.admitted);
        assert_eq!(
            d.refusal(&c).unwrap(),
            (CONCURRENCY_RETRY, RefusedBy::Concurrency)
        );
        // The refusal counted no request: 98 of 100 remain after the two admitted.
        assert_eq!(d.quota(&c).requests.unwrap().remaining, 98);
        m.settle("k", 0, true);
        assert_eq!(m.open("k"), 1);
        assert!(m.reserve("k", &c, 0).admitted);
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
