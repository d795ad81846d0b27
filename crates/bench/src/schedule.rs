//! Which request comes next and when, shared by every connection: closed loop (each connection sends
//! again as soon as it has its answer) or open loop (`--rate`: slot k starts at a fixed time and its
//! latency counts from then, so queueing behind busy connections is measured, not hidden); a warmup
//! whose results are discarded; a stop after N measured requests or at the end of the duration.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// One request to send.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Slot {
    /// When it should start (`None`: now, closed loop). Latency and TTFT count from this time
    /// when the request had to wait for a busy connection (see `client::run`).
    pub at: Option<Instant>,
    /// False during the warmup: its results are discarded.
    pub measured: bool,
}

#[derive(Debug)]
pub(crate) struct Schedule {
    start: Instant,
    measure_start: Instant,
    end: Option<Instant>,
    limit: Option<u64>,
    /// Open loop: nanoseconds between slots, as a rational (1e9 / rate) computed per slot.
    rate: Option<f64>,
    warmup_slots: u64,
    next: AtomicU64,
}

impl Schedule {
    /// `limit`: measured requests; `duration`: the measured window (one of the two is set).
    pub(crate) fn new(
        start: Instant,
        warmup: Duration,
        limit: Option<u64>,
        duration: Option<Duration>,
        rate: Option<f64>,
    ) -> Schedule {
        let measure_start = start + warmup;
        Schedule {
            start,
            measure_start,
            end: duration.map(|d| measure_start + d),
            limit,
            rate,
            warmup_slots: rate.map_or(0, |r| (warmup.as_secs_f64() * r).floor() as u64),
            next: AtomicU64::new(0),
        }
    }

    pub(crate) fn measure_start(&self) -> Instant {
        self.measure_start
    }

    /// The next request, or `None` when the run is over.
    pub(crate) fn next(&self) -> Option<Slot> {
        let now = Instant::now();
        if self.end.is_some_and(|end| now >= end) {
            return None;
        }
        let Some(rate) = self.rate else {
            if now < self.measure_start {
                return Some(Slot {
                    at: None,
                    measured: false,
                });
            }
            if let Some(limit) = self.limit {
                if self.next.fetch_add(1, Ordering::Relaxed) >= limit {
                    return None;
                }
            }
            return Some(Slot {
                at: None,
                measured: true,
            });
        };
        let k = self.next.fetch_add(1, Ordering::Relaxed);
        if k < self.warmup_slots {
            return Some(Slot {
                at: Some(self.start + offset(k, rate)),
                measured: false,
            });
        }
        let j = k - self.warmup_slots;
        if self.limit.is_some_and(|limit| j >= limit) {
            return None;
        }
        let at = self.measure_start + offset(j, rate);
        if self.end.is_some_and(|end| at >= end) {
            return None;
        }
        Some(Slot {
            at: Some(at),
            measured: true,
        })
    }
}

/// The start of slot `k` after the first, at `rate` per second.
fn offset(k: u64, rate: f64) -> Duration {
    Duration::from_secs_f64(k as f64 / rate)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_loop_slots_are_evenly_spread_after_the_warmup() {
        let t0 = Instant::now() + Duration::from_secs(3600);
        let s = Schedule::new(t0, Duration::from_secs(1), Some(3), None, Some(4.0));
        let slots: Vec<Slot> = std::iter::from_fn(|| s.next()).collect();
        assert_eq!(slots.len(), 4 + 3);
        assert!(slots[..4].iter().all(|s| !s.measured));
        assert_eq!(slots[1].at.unwrap() - t0, Duration::from_millis(250));
        assert_eq!(slots[4].at.unwrap(), t0 + Duration::from_secs(1));
        assert_eq!(
            slots[6].at.unwrap() - slots[4].at.unwrap(),
            Duration::from_millis(500)
        );
        assert!(slots[4..].iter().all(|s| s.measured));
    }

    #[test]
    fn closed_loop_stops_after_the_limit() {
        let s = Schedule::new(Instant::now(), Duration::ZERO, Some(5), None, None);
        assert_eq!(std::iter::from_fn(|| s.next()).count(), 5);
    }
}
