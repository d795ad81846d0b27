//! The instance's wall clock: epoch time for records, ids and `created` fields, read in one place.
//!
//! Nothing that several instances must agree on is timed by it: shared holds expire by
//! PostgreSQL's clock and concurrency slots by Redis's. `SWITCHYARD_CLOCK_SKEW_MS` (a signed number
//! of milliseconds, read once at first use) moves this clock, so that a test can run an instance
//! whose clock is wrong and show that it frees no one else's lease.

use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

/// The skew this process was started with, in milliseconds (0 unless the variable is set).
fn skew_ms() -> i64 {
    static SKEW: OnceLock<i64> = OnceLock::new();
    *SKEW.get_or_init(|| {
        std::env::var("SWITCHYARD_CLOCK_SKEW_MS")
            .ok()
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    })
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    now.saturating_add(skew_ms())
}

/// Seconds since the Unix epoch (OpenAI's `created`).
pub(crate) fn unix_now() -> u64 {
    (now_ms() / 1000).max(0) as u64
}
