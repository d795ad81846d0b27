//! The operator's event log as JSON lines (`[event_log] path = "stdout" | "/path/file.jsonl"`):
//! one line per settled request, with the same facts as `/admin/requests` (masked key, status,
//! end reason, the error's text, latency bucket, tokens, cost); never a key, a prompt or a
//! completion. Lines go through a bounded channel to one std thread that writes them, so the
//! request path never waits on the disk; when the writer falls behind by `QUEUE` lines, further
//! lines are dropped and counted in a warning. The thread writes what has queued, buffered, in one
//! write, then rests `GATHER` before it looks again: a request's line is a queue push that wakes
//! no thread (measured, issue 25: waking it for every line cost the runtime threads a futex call
//! per request and the thread a write per line). `flush` (at shutdown) writes what is queued.

use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::Arc;

use crate::store::ledger::{latency_bucket, masked_key, UsageEntry};

/// Lines waiting for the writer thread at most.
const QUEUE: usize = 8192;
/// How long the writer rests after a write: a line reaches the file within about this long.
const GATHER: std::time::Duration = std::time::Duration::from_millis(5);

/// What the writer thread is sent.
enum Msg {
    Line(String),
    /// Answered once every line queued before it is written.
    Flush(std::sync::mpsc::Sender<()>),
}

/// Where the lines go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventLogTarget {
    Stdout,
    File(PathBuf),
}

/// The sending side; cheap to clone.
#[derive(Clone)]
pub struct EventLog {
    tx: SyncSender<Msg>,
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
            EventLogTarget::File(path) => Box::new(std::io::BufWriter::with_capacity(
                64 * 1024,
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)?,
            )),
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
        match self.tx.try_send(Msg::Line(line)) {
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

    /// Waits (on a blocking thread) until every line queued before this call is written.
    pub async fn flush(&self) {
        let tx = self.tx.clone();
        let _ = tokio::task::spawn_blocking(move || {
            let (done, wait) = std::sync::mpsc::channel();
            if tx.send(Msg::Flush(done)).is_ok() {
                let _ = wait.recv();
            }
        })
        .await;
    }
}

/// One request's line, borrowed from its entry (keys in alphabetical order, as before).
#[derive(serde::Serialize)]
struct Line<'a> {
    attempts: u32,
    #[serde(skip_serializing_if = "is_zero")]
    cache_write_tokens: u64,
    cached_tokens: u64,
    completion_tokens: u64,
    cost: String,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    dropped: &'a [String],
    duration_ms: i64,
    end_reason: &'a str,
    error_text: Option<&'a str>,
    key_id: &'a str,
    latency_bucket: &'static str,
    masked_key: String,
    model: &'a str,
    prompt_tokens: u64,
    provider: Option<&'a str>,
    reasoning_tokens: u64,
    request_id: &'a str,
    request_type: Option<&'a str>,
    served_model: Option<&'a str>,
    status: Option<u16>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    tags: &'a [String],
    ts: i64,
    ttft_ms: Option<i64>,
    upstream_status: Option<u16>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// One request's line.
fn line(e: &UsageEntry, last4: Option<&str>) -> String {
    let line = Line {
        attempts: e.attempts,
        cache_write_tokens: e.cache_write_tokens,
        cached_tokens: e.cached_tokens,
        completion_tokens: e.completion_tokens,
        cost: e.cost.to_string(),
        dropped: &e.dropped,
        tags: &e.tags,
        duration_ms: e.duration_ms,
        end_reason: e.end_reason.as_str(),
        error_text: e.error_text.as_deref(),
        key_id: &e.key_id,
        latency_bucket: latency_bucket(e.duration_ms),
        masked_key: masked_key(last4),
        model: &e.requested_model,
        prompt_tokens: e.prompt_tokens,
        provider: e.provider.as_deref(),
        reasoning_tokens: e.reasoning_tokens,
        request_id: &e.request_id,
        request_type: e.request_type.as_deref(),
        served_model: e.served_model.as_deref(),
        status: e.status,
        ts: e.finished_at,
        ttft_ms: e.ttft_ms,
        upstream_status: e.upstream_status,
    };
    serde_json::to_string(&line).unwrap_or_default()
}

fn write_lines(rx: Receiver<Msg>, mut out: Box<dyn Write + Send>) {
    while let Ok(first) = rx.recv() {
        let mut ok = true;
        let mut flushed = Vec::new();
        let mut next = Some(first);
        // Whatever queued meanwhile goes in the same write.
        while let Some(msg) = next {
            match msg {
                Msg::Line(line) => ok &= writeln!(out, "{line}").is_ok(),
                Msg::Flush(done) => flushed.push(done),
            }
            next = rx.try_recv().ok();
        }
        if !(ok && out.flush().is_ok()) {
            tracing::warn!("event log write failed");
        }
        for done in flushed {
            let _ = done.send(());
        }
        std::thread::sleep(GATHER);
    }
}
