//! The operator's event log as JSON lines (`[event_log] path = "stdout" | "/path/file.jsonl"`):
//! one line per settled request, with the same facts as `/admin/requests` (masked key, status,
//! end reason, the error's text, latency bucket, tokens, cost); never a key, a prompt or a
//! completion. Lines go through a bounded channel to one std thread that writes them, so the
//! request path never waits on the disk; when the writer falls behind by `QUEUE` lines, further
//! lines are dropped and counted in a warning.

use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::Arc;

use crate::ledger::{latency_bucket, masked_key, UsageEntry};

/// Lines waiting for the writer thread at most.
const QUEUE: usize = 8192;

/// Where the lines go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventLogTarget {
    Stdout,
    File(PathBuf),
}

/// The sending side; cheap to clone.
#[derive(Clone)]
pub struct EventLog {
    tx: SyncSender<String>,
    dropped: Arc<AtomicU64>,
}

impl std::fmt::Debug for EventLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EventLog")
    }
}

impl EventLog {
    /// Opens the target (a file is created or appended to) and starts the writer thread.
    pub fn open(target: &EventLogTarget) -> std::io::Result<EventLog> {
        let out: Box<dyn Write + Send> = match target {
            EventLogTarget::Stdout => Box::new(std::io::stdout()),
            EventLogTarget::File(path) => Box::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)?,
            ),
        };
        let (tx, rx) = sync_channel(QUEUE);
        std::thread::Builder::new()
            .name("event-log".into())
            .spawn(move || write_lines(rx, out))?;
        Ok(EventLog {
            tx,
            dropped: Arc::default(),
        })
    }

    /// Queues the line of one settled request; never blocks.
    pub fn record(&self, e: &UsageEntry, last4: Option<&str>) {
        let line = line(e, last4);
        match self.tx.try_send(line) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                let n = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                if n.is_power_of_two() {
                    tracing::warn!(dropped = n, "event log writer behind; lines dropped");
                }
            }
            Err(TrySendError::Disconnected(_)) => {}
        }
    }
}

/// One request's line.
fn line(e: &UsageEntry, last4: Option<&str>) -> String {
    serde_json::json!({
        "ts": e.finished_at,
        "request_id": e.request_id,
        "key_id": e.key_id,
        "masked_key": masked_key(last4),
        "model": e.requested_model,
        "served_model": e.served_model,
        "provider": e.provider,
        "attempts": e.attempts,
        "status": e.status,
        "upstream_status": e.upstream_status,
        "end_reason": e.end_reason.as_str(),
        "error_text": e.error_text,
        "latency_bucket": latency_bucket(e.duration_ms),
        "duration_ms": e.duration_ms,
        "ttft_ms": e.ttft_ms,
        "request_type": e.request_type,
        "prompt_tokens": e.prompt_tokens,
        "completion_tokens": e.completion_tokens,
        "reasoning_tokens": e.reasoning_tokens,
        "cached_tokens": e.cached_tokens,
        "cost": e.cost.to_string(),
    })
    .to_string()
}

fn write_lines(rx: Receiver<String>, mut out: Box<dyn Write + Send>) {
    while let Ok(first) = rx.recv() {
        let mut ok = writeln!(out, "{first}").is_ok();
        // Whatever queued meanwhile goes in the same flush.
        while let Ok(more) = rx.try_recv() {
            ok &= writeln!(out, "{more}").is_ok();
        }
        if !(ok && out.flush().is_ok()) {
            tracing::warn!("event log write failed");
        }
    }
}
