//! What one worker thread measured (latency, time to first token and gap histograms in
//! nanoseconds, errors by kind, event and byte counts), recorded without locks by that thread's
//! connections and merged with the other threads' at the end of the run.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

/// Why a request did not count as ok.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum ErrorKind {
    /// The answer's HTTP status (not 2xx).
    Status(u16),
    Connect,
    Io,
    Timeout,
    /// The stream carried an error event.
    StreamError,
    /// The stream ended without its end marker.
    Incomplete,
}

impl ErrorKind {
    pub(crate) fn label(self) -> String {
        match self {
            ErrorKind::Status(s) => s.to_string(),
            ErrorKind::Connect => "connect".into(),
            ErrorKind::Io => "io".into(),
            ErrorKind::Timeout => "timeout".into(),
            ErrorKind::StreamError => "stream_error".into(),
            ErrorKind::Incomplete => "incomplete".into(),
        }
    }
}

/// One hour, in nanoseconds: the largest time recorded exactly (longer ones are clamped).
const MAX_NS: u64 = 3_600_000_000_000;

fn histogram() -> Histogram<u64> {
    // Bounds and precision are constants that hdrhistogram accepts.
    Histogram::new_with_bounds(1, MAX_NS, 3).unwrap_or_else(|_| unreachable!())
}

#[derive(Debug, Clone)]
pub(crate) struct Stats {
    pub latency: Histogram<u64>,
    pub ttft: Histogram<u64>,
    pub gap: Histogram<u64>,
    pub ok: u64,
    /// Streams the client dropped on purpose (`--abort-after`), counted in `ok`.
    pub aborted: u64,
    pub errors: BTreeMap<ErrorKind, u64>,
    pub events: u64,
    pub bytes: u64,
    pub incomplete_streams: u64,
    /// Streams that got a 2xx answer: their event counts.
    pub streams: u64,
    pub events_min: u64,
    pub events_max: u64,
    /// When the last measured request ended.
    pub last_done: Option<Instant>,
}

impl Default for Stats {
    fn default() -> Self {
        Stats {
            latency: histogram(),
            ttft: histogram(),
            gap: histogram(),
            ok: 0,
            aborted: 0,
            errors: BTreeMap::new(),
            events: 0,
            bytes: 0,
            incomplete_streams: 0,
            streams: 0,
            events_min: u64::MAX,
            events_max: 0,
            last_done: None,
        }
    }
}

pub(crate) fn record(h: &mut Histogram<u64>, d: Duration) {
    h.saturating_record(u64::try_from(d.as_nanos()).unwrap_or(MAX_NS).max(1));
}

impl Stats {
    pub(crate) fn error(&mut self, kind: ErrorKind) {
        *self.errors.entry(kind).or_default() += 1;
    }

    pub(crate) fn stream_events(&mut self, n: u64) {
        self.streams += 1;
        self.events += n;
        self.events_min = self.events_min.min(n);
        self.events_max = self.events_max.max(n);
    }

    pub(crate) fn done_at(&mut self, t: Instant) {
        self.last_done = Some(self.last_done.map_or(t, |l| l.max(t)));
    }

    pub(crate) fn requests(&self) -> u64 {
        self.ok + self.errors.values().sum::<u64>()
    }

    pub(crate) fn merge(&mut self, other: &Stats) {
        // Same bounds on both sides, so adding cannot fail.
        let _ = self.latency.add(&other.latency);
        let _ = self.ttft.add(&other.ttft);
        let _ = self.gap.add(&other.gap);
        self.ok += other.ok;
        self.aborted += other.aborted;
        for (k, n) in &other.errors {
            *self.errors.entry(*k).or_default() += n;
        }
        self.events += other.events;
        self.bytes += other.bytes;
        self.incomplete_streams += other.incomplete_streams;
        self.streams += other.streams;
        self.events_min = self.events_min.min(other.events_min);
        self.events_max = self.events_max.max(other.events_max);
        if let Some(t) = other.last_done {
            self.done_at(t);
        }
    }
}
