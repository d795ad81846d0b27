//! The admin door against guessing: failed admin authentications are counted per client address;
//! past the first `FREE_FAILURES` (a mistyped key, a client without one), each failure is answered
//! a little later than the one before (100 ms more each, at most 2 s),
//! and after `server.admin_lockout_after` failures within `WINDOW` that address gets 429 for
//! `server.admin_lockout_ms` whatever it sends (the right key included), so the key cannot be
//! guessed at speed. A success clears the address's count. Failures and lockouts are counted in
//! `/metrics`. The address is the TCP peer, or the client a trusted proxy names
//! (`app::listener::ClientAddr`).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

/// Failures within this long count together.
const WINDOW: Duration = Duration::from_secs(600);
/// Failures answered without delay (the count still grows).
const FREE_FAILURES: u32 = 3;
/// The most addresses tracked; past it the oldest entries are dropped.
const MAX_TRACKED: usize = 10_000;

#[derive(Debug)]
struct Failures {
    count: u32,
    first: Instant,
    locked_until: Option<Instant>,
}

/// Failed admin authentications by client address.
#[derive(Debug, Default)]
pub struct AdminGuard {
    by_addr: Mutex<HashMap<IpAddr, Failures>>,
}

impl AdminGuard {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, Failures>> {
        self.by_addr.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `Err(wait)` while `addr` is locked out.
    pub fn admit(&self, addr: IpAddr) -> Result<(), Duration> {
        let now = Instant::now();
        match self.map().get(&addr).and_then(|f| f.locked_until) {
            Some(until) if until > now => Err(until - now),
            _ => Ok(()),
        }
    }

    /// Counts a failure from `addr`; returns how long to wait before answering it. The
    /// `lockout_after`th failure (never when 0) locks `addr` out for `lockout`.
    pub fn failed(&self, addr: IpAddr, lockout_after: u32, lockout: Duration) -> Duration {
        let now = Instant::now();
        let mut map = self.map();
        if map.len() >= MAX_TRACKED && !map.contains_key(&addr) {
            map.retain(|_, f| now.duration_since(f.first) < WINDOW);
            if map.len() >= MAX_TRACKED {
                map.clear();
            }
        }
        let f = map.entry(addr).or_insert(Failures {
            count: 0,
            first: now,
            locked_until: None,
        });
        if now.duration_since(f.first) >= WINDOW {
            *f = Failures {
                count: 0,
                first: now,
                locked_until: None,
            };
        }
        f.count += 1;
        crate::telemetry::record_admin_auth_failure(false);
        if lockout_after > 0 && f.count >= lockout_after && f.locked_until.is_none() {
            f.locked_until = Some(now + lockout);
            crate::telemetry::record_admin_auth_failure(true);
            tracing::warn!(client = %addr, failures = f.count, "admin authentication locked out");
        }
        let slowed = u64::from(f.count.saturating_sub(FREE_FAILURES));
        Duration::from_millis((100 * slowed).min(2_000))
    }

    /// `addr` authenticated: its count starts again.
    pub fn succeeded(&self, addr: IpAddr) {
        self.map().remove(&addr);
    }
}
