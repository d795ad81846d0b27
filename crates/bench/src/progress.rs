//! The live progress line on stderr: counters each worker thread bumps (its own, so threads never
//! share a cache line per request) and a line redrawn at most 10 times a second from their sums.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// One worker thread's running counts (the warmup's requests included).
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub done: AtomicU64,
    pub errors: AtomicU64,
    pub events: AtomicU64,
}

impl Counters {
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        // One writer per counter: a relaxed load + store is enough and cheaper than fetch_add.
        counter.store(counter.load(Ordering::Relaxed) + n, Ordering::Relaxed);
    }
}

/// Draws the progress line.
#[derive(Default)]
pub(crate) struct Line {
    last: Option<(Instant, u64)>,
    drawn: bool,
}

impl Line {
    /// Redraws the line from every thread's counters; `warmup` while the warmup runs.
    pub(crate) fn draw(
        &mut self,
        counters: &[std::sync::Arc<Counters>],
        elapsed_s: f64,
        warmup: bool,
    ) {
        let sum = |f: fn(&Counters) -> &AtomicU64| -> u64 {
            counters.iter().map(|c| f(c).load(Ordering::Relaxed)).sum()
        };
        let (done, errors, events) = (sum(|c| &c.done), sum(|c| &c.errors), sum(|c| &c.events));
        let now = Instant::now();
        let rate = match self.last {
            Some((t, n)) if now > t => (done.saturating_sub(n)) as f64 / (now - t).as_secs_f64(),
            _ => 0.0,
        };
        self.last = Some((now, done));
        let phase = if warmup { "warmup" } else { "" };
        let mut err = std::io::stderr().lock();
        let _ = write!(
            err,
            "\r\x1b[K{elapsed_s:7.1}s {phase:6} {done:>10} requests {rate:>10.0}/s  errors {errors}  events {events}"
        );
        let _ = err.flush();
        self.drawn = true;
    }

    /// Clears the line before the report.
    pub(crate) fn finish(&mut self) {
        if self.drawn {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r\x1b[K");
            let _ = err.flush();
        }
    }
}
