//! The local settlement journal: an append-only file, one JSON record per line, written and
//! fsync'd in batches by one dedicated thread. It makes two things durable that the database may
//! not have yet:
//!
//! - **admissions and progress checkpoints** of the requests in flight (`admit`, `progress`), so that
//!   after a crash (`kill -9`, power loss) every admitted request that never reached the ledger is
//!   found at the next start and settled as `interrupted`, billed up to its last checkpoint;
//! - **settlements the database would not take** (`settled`): when the group-commit writer cannot
//!   commit within its deadline it hands the entries here, and they count as durable once fsync'd.
//!   The writer replays them into the database when it accepts writes again, and at startup.
//!
//! Replay is idempotent: an entry is keyed by its request id, and the database refuses a second
//! entry for the same id (the writer inserts with `ON CONFLICT DO NOTHING` and debits only what it
//! inserted), so a record replayed twice, or an `interrupted` entry for a request whose real entry
//! did reach the database, changes nothing.
//!
//! Admissions, checkpoints and commit notices are gathered for `GATHER` before they are written,
//! so the thread wakes and fsyncs at most about 20 times a second under load, and an admission
//! whose entry is committed within that window (most non-streamed requests) never reaches the
//! file at all. That widens no loss window: a checkpoint is already up to a second old, and a crash
//! inside the window finds the request neither in the journal nor in the database, just as its
//! in-memory hold is gone, with nothing billable delivered that a checkpoint would have carried.
//! Settlements the database refused, and every request that waits for an answer, are written
//! at once.
//!
//! A request whose settlement could be made durable neither in the database nor here is either
//! answered and billed, or refused and never billed, never both: an entry whose caller still waits
//! to answer (a whole, non-streamed answer: it gets a 503 instead) is forgotten when its write
//! fails, its hold released; one whose answer already went out (a stream) stays in memory and is
//! offered to the database with the others. A failed write or fsync is cut off the file again, so
//! no record of a refused request is replayed after a restart. `Faults` injects such failures
//! (a partial write, ENOSPC, a failed fsync) for the tests and `scripts/chaos`.
//!
//! The file never holds prompt or completion text: only ids, prices and token counts. It is kept
//! small by compaction: once it passes `COMPACT_AFTER` bytes it is rewritten with just the records
//! still needed (requests in flight, settlements not yet replayed), atomically (temporary file,
//! fsync, rename). An exclusive lock on the file keeps a second process from sharing it.

use std::collections::{HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

use super::accounts::Hold;
use super::{BillingNote, EndReason, Nanos, Prices, TokenSource, UsageEntry};
use switchyard_wire::usage::Usage;

/// The file is rewritten with only the live records once it grows past this.
const COMPACT_AFTER: u64 = 8 << 20;
/// Messages waiting for the journal thread; a full queue makes admission wait (backpressure).
const QUEUE: usize = 16_384;
/// Records written per batch (one fsync) at most.
const BATCH: usize = 4_096;
/// How long admissions, checkpoints and commit notices are gathered before they are written.
const GATHER: Duration = Duration::from_millis(50);

/// Where the journal of a ledger at `database_url` lives unless configured: next to a SQLite file
/// (`FILE.journal`), else `switchyard.journal` in the working directory. `None` for an in-memory
/// SQLite database, which a crash loses anyway.
pub fn default_path(database_url: &str) -> Option<PathBuf> {
    if !database_url.starts_with("sqlite:") {
        return Some(PathBuf::from("switchyard.journal"));
    }
    sqlite_file(database_url).map(|file| PathBuf::from(format!("{file}.journal")))
}

/// The file of a `sqlite:` database URL (`sqlite://sy.db?mode=rwc` → `sy.db`); `None` for any
/// other database, and for an in-memory one.
pub fn sqlite_file(database_url: &str) -> Option<&str> {
    let rest = database_url.strip_prefix("sqlite:")?;
    let file = rest.trim_start_matches("//");
    let file = file.split('?').next().unwrap_or_default();
    (!file.is_empty() && !file.contains(":memory:")).then_some(file)
}

/// What is known of a request at admission, enough to bill it after a crash.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AdmitRecord {
    pub id: String,
    pub key: String,
    pub model: String,
    pub stream: bool,
    /// Epoch milliseconds.
    pub started_at: i64,
    /// Decimal strings, USD per million tokens.
    pub input_price: String,
    pub output_price: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cached_price: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_write_price: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_write_1h_price: Option<String>,
    pub hold: i64,
}

impl AdmitRecord {
    pub fn new(
        id: &str,
        key: &str,
        model: &str,
        stream: bool,
        started_at: i64,
        p: &Prices,
        hold: Nanos,
    ) -> Self {
        AdmitRecord {
            id: id.to_owned(),
            key: key.to_owned(),
            model: model.to_owned(),
            stream,
            started_at,
            input_price: p.input.to_string(),
            output_price: p.output.to_string(),
            cached_price: p.cached_input.map(|c| c.to_string()),
            cache_write_price: p.cache_write.map(|c| c.to_string()),
            cache_write_1h_price: p.cache_write_1h.map(|c| c.to_string()),
            hold: hold.0,
        }
    }

    fn prices(&self) -> Prices {
        let d = |s: &str| s.parse().unwrap_or_default();
        Prices {
            input: d(&self.input_price),
            output: d(&self.output_price),
            cached_input: self.cached_price.as_deref().map(d),
            cache_write: self.cache_write_price.as_deref().map(d),
            cache_write_1h: self.cache_write_1h_price.as_deref().map(d),
        }
    }
}

/// What a request in flight has used so far (a checkpoint), at most about a second old.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProgressRecord {
    pub id: String,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    #[serde(default)]
    pub reasoning_tokens: u64,
    #[serde(default)]
    pub cached_tokens: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub cache_write_tokens: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub cache_write_1h_tokens: u64,
    /// Epoch milliseconds.
    pub at: i64,
    /// Where the request was served, once known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub served_model: Option<String>,
    /// The served route's prices when they differ from the admitted model's (`auto` models).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_price: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_price: Option<String>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// One line of the journal.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "k", rename_all = "snake_case")]
enum Record {
    Admit(AdmitRecord),
    Progress(ProgressRecord),
    Settled(Box<UsageEntry>),
}

/// A failure to inject into the journal's next appends (`Journal::faults`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Half of the batch is written, then the write fails (a full disk mid-write).
    PartialWrite,
    /// The write fails before a byte is written (`ENOSPC`).
    NoSpace,
    /// Everything is written, then `fdatasync` fails (`EIO`).
    FsyncFails,
}

/// The fault-injection seam of the journal file: the next `remaining` appends fail as `fault`.
/// Also set at start from `SWITCHYARD_JOURNAL_FAULTS=KIND:EVERY` (`config::journal_faults`: every
/// EVERY-th append fails), which `scripts/chaos` uses. Never set in production.
#[derive(Debug, Default)]
pub struct Faults {
    /// 0 none, 1 partial write, 2 no space, 3 fsync.
    kind: AtomicU32,
    remaining: AtomicU32,
    /// With `every > 0`, every `every`-th append fails as `kind` (and `remaining` is unused).
    every: AtomicU32,
    appends: AtomicU32,
}

impl Fault {
    /// `partial`, `nospace` or `fsync`.
    pub fn parse(name: &str) -> Option<Fault> {
        match name {
            "partial" => Some(Fault::PartialWrite),
            "nospace" => Some(Fault::NoSpace),
            "fsync" => Some(Fault::FsyncFails),
            _ => None,
        }
    }
}

impl Faults {
    /// The next `times` appends fail as `fault`.
    pub fn inject(&self, fault: Fault, times: u32) {
        self.kind.store(fault as u32 + 1, Ordering::Release);
        self.remaining.store(times, Ordering::Release);
    }

    /// No more faults.
    pub fn clear(&self) {
        self.remaining.store(0, Ordering::Release);
        self.every.store(0, Ordering::Release);
    }

    /// From now on every `every`-th append fails as `fault` (`SWITCHYARD_JOURNAL_FAULTS`).
    pub fn fail_every(&self, fault: Fault, every: u32) {
        tracing::warn!(?fault, every, "journal fault injection is on");
        self.kind.store(fault as u32 + 1, Ordering::Release);
        self.appends.store(0, Ordering::Release);
        self.every.store(every, Ordering::Release);
    }

    /// The fault this append meets, if any.
    fn next(&self) -> Option<Fault> {
        let every = self.every.load(Ordering::Acquire);
        let hit = if every > 0 {
            (self.appends.fetch_add(1, Ordering::AcqRel) + 1).is_multiple_of(every)
        } else {
            self.remaining
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
                .is_ok()
        };
        if !hit {
            return None;
        }
        match self.kind.load(Ordering::Acquire) {
            1 => Some(Fault::PartialWrite),
            2 => Some(Fault::NoSpace),
            3 => Some(Fault::FsyncFails),
            _ => None,
        }
    }
}

/// One settlement handed to the journal: the entry, its hold, and whether its caller refuses the
/// request if this write fails (then the entry is forgotten and never billed).
pub struct Settling {
    pub entry: UsageEntry,
    pub hold: Option<Hold>,
    pub refusable: bool,
}

/// What the journal thread is asked to do.
enum Msg {
    Admit(AdmitRecord),
    Progress(ProgressRecord),
    /// These requests' entries are in the database: forget them.
    Committed(Vec<String>),
    /// Make these entries durable here (the database would not take them); keep their holds until
    /// they are replayed.
    Settle(Vec<Settling>, oneshot::Sender<std::io::Result<()>>),
    /// The entries not yet replayed into the database.
    Pending(oneshot::Sender<Vec<UsageEntry>>),
    /// These journaled entries are now in the database: forget them and release their holds.
    Replayed(Vec<String>),
    /// Write what is queued, close the file (releasing its lock), then answer.
    Stop(oneshot::Sender<()>),
}

/// Sends records to the journal thread.
#[derive(Clone)]
pub struct Journal {
    tx: mpsc::Sender<Msg>,
    /// Settled entries waiting to be replayed into the database.
    pending: Arc<AtomicUsize>,
    /// Wakes the thread out of its gathering window for a message someone waits on.
    urgent: Urgent,
    faults: Arc<Faults>,
}

/// A message someone waits on has been queued: the journal thread stops gathering and writes now.
#[derive(Clone)]
struct Urgent {
    flag: Arc<AtomicBool>,
    thread: std::thread::Thread,
}

impl Urgent {
    async fn send(&self, tx: &mpsc::Sender<Msg>, msg: Msg) -> Result<(), ()> {
        self.flag.store(true, Ordering::Release);
        let sent = tx.send(msg).await.map_err(|_| ());
        self.thread.unpark();
        sent
    }
}

impl Msg {
    /// Admissions, checkpoints and commit notices may wait for the gathering window.
    fn can_wait(&self) -> bool {
        matches!(self, Msg::Admit(_) | Msg::Progress(_) | Msg::Committed(_))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("settlement journal {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("settlement journal {0} is in use by another Switchyard process")]
    Locked(PathBuf),
}

/// What a journal held when it was opened: entries to (re)write into the database.
#[derive(Debug, Default)]
pub struct Recovered {
    /// Settlements that were journaled and perhaps never replayed.
    pub settled: Vec<UsageEntry>,
    /// Requests found in flight: billed to their last checkpoint as `interrupted`.
    pub interrupted: Vec<UsageEntry>,
}

impl Recovered {
    pub fn entries(&self) -> impl Iterator<Item = &UsageEntry> {
        self.settled.iter().chain(&self.interrupted)
    }
}

/// The live state the thread keeps, from which a compacted file is written.
#[derive(Default)]
struct State {
    inflight: HashMap<String, (AdmitRecord, Option<ProgressRecord>)>,
    settled: HashMap<String, (UsageEntry, Option<Hold>)>,
}

impl Journal {
    /// Opens (creating) the journal at `path`, locks it, and reads what it holds. The caller
    /// writes the recovered entries into the database and then calls `start` with them.
    pub fn open(path: &Path) -> Result<(OpenJournal, Recovered), JournalError> {
        let io = |source| JournalError::Io {
            path: path.to_owned(),
            source,
        };
        let file = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(path)
            .map_err(io)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(JournalError::Locked(path.to_owned()))
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io(e)),
        }
        let recovered = read(&file).map_err(io)?;
        Ok((
            OpenJournal {
                path: path.to_owned(),
                file,
            },
            recovered,
        ))
    }

    /// Queues an admission record; waits only when the queue is full.
    pub async fn admit(&self, rec: AdmitRecord) {
        let _ = self.tx.send(Msg::Admit(rec)).await;
    }

    /// Queues a checkpoint; dropped when the queue is full (the next one supersedes it).
    pub fn progress(&self, rec: ProgressRecord) {
        let _ = self.tx.try_send(Msg::Progress(rec));
    }

    /// These requests' entries were committed to the database.
    pub fn committed(&self, ids: Vec<String>) {
        if let Err(mpsc::error::TrySendError::Full(m)) = self.tx.try_send(Msg::Committed(ids)) {
            let tx = self.tx.clone();
            tokio::spawn(async move {
                let _ = tx.send(m).await;
            });
        }
    }

    /// The fault-injection seam of the file.
    pub fn faults(&self) -> &Faults {
        &self.faults
    }

    /// Writes entries the database would not take, and returns once they are fsync'd.
    pub async fn settle(&self, entries: Vec<Settling>) -> std::io::Result<()> {
        let (tx, rx) = oneshot::channel();
        let gone = || std::io::Error::other("the journal thread has stopped");
        self.urgent
            .send(&self.tx, Msg::Settle(entries, tx))
            .await
            .map_err(|_| gone())?;
        // When the write failed, the refusable entries are forgotten (their callers refuse the
        // request); the others stay in the journal thread's memory and are offered to the
        // database with the others (`pending`): delivered answers are billed.
        rx.await.map_err(|_| gone())?
    }

    /// Whether journaled settlements are waiting to be replayed.
    pub fn has_pending(&self) -> bool {
        self.pending.load(Ordering::Relaxed) > 0
    }

    /// The journaled settlements not yet in the database.
    pub async fn pending(&self) -> Vec<UsageEntry> {
        let (tx, rx) = oneshot::channel();
        if self.urgent.send(&self.tx, Msg::Pending(tx)).await.is_err() {
            return Vec::new();
        }
        rx.await.unwrap_or_default()
    }

    /// Writes what is queued and closes the file; returns once it is closed (its lock released).
    pub async fn stop(&self) {
        let (tx, rx) = oneshot::channel();
        if self.urgent.send(&self.tx, Msg::Stop(tx)).await.is_ok() {
            let _ = rx.await;
        }
    }

    /// These journaled settlements are in the database now.
    pub async fn replayed(&self, ids: Vec<String>) {
        let _ = self.urgent.send(&self.tx, Msg::Replayed(ids)).await;
    }
}

/// A journal that is open and locked, not yet running.
pub struct OpenJournal {
    path: PathBuf,
    file: File,
}

impl OpenJournal {
    /// Starts the journal thread once the recovered entries are in the database: the file is
    /// compacted to nothing, then records are appended as they come.
    pub fn start(self) -> Result<Journal, JournalError> {
        self.start_gathering(GATHER)
    }

    /// `start` with another gathering window (tests use a long one, so timing cannot matter).
    fn start_gathering(self, gather: Duration) -> Result<Journal, JournalError> {
        let io = |source| JournalError::Io {
            path: self.path.clone(),
            source,
        };
        let pending = Arc::new(AtomicUsize::new(0));
        let faults = Arc::new(Faults::default());
        let mut writer = Writer {
            path: self.path.clone(),
            file: self.file,
            written: 0,
            state: State::default(),
            pending: pending.clone(),
            faults: faults.clone(),
            refusable: Vec::new(),
            needs_compact: false,
        };
        writer.compact().map_err(io)?;
        let (tx, rx) = mpsc::channel(QUEUE);
        let flag = Arc::new(AtomicBool::new(false));
        let thread_flag = flag.clone();
        let thread = std::thread::Builder::new()
            .name("switchyard-journal".into())
            .spawn(move || {
                if let Some(stopped) = writer.run(rx, &thread_flag, gather) {
                    let _ = stopped.send(());
                }
            })
            .map_err(io)?
            .thread()
            .clone();
        Ok(Journal {
            tx,
            pending,
            urgent: Urgent { flag, thread },
            faults,
        })
    }
}

/// Reads every whole record. A line that does not read as a record (a corrupt one) is skipped
/// alone, logged with its offset and counted; a torn last line (a crash or a failed write in the
/// middle of a record, with no newline after it) is cut off the file, so that the next record
/// appended starts a line of its own instead of joining it.
fn read(file: &File) -> std::io::Result<Recovered> {
    let mut state: State = State::default();
    let mut reader = BufReader::new(file);
    let mut line = Vec::new();
    let mut offset = 0u64;
    loop {
        line.clear();
        let n = reader.read_until(b'\n', &mut line)?;
        if n == 0 {
            break;
        }
        let at = offset;
        offset += n as u64;
        if line.last() != Some(&b'\n') {
            tracing::warn!(
                offset = at,
                bytes = n,
                "journal: a torn last record is cut off"
            );
            crate::telemetry::record_journal_skipped("torn");
            file.set_len(at)?;
            break;
        }
        let record = serde_json::from_slice::<Record>(&line);
        if record.is_err() && !line.trim_ascii().is_empty() {
            tracing::warn!(
                offset = at,
                bytes = n,
                "journal: an unreadable record is skipped"
            );
            crate::telemetry::record_journal_skipped("corrupt");
        }
        match record {
            Ok(Record::Admit(a)) => {
                state.inflight.insert(a.id.clone(), (a, None));
            }
            Ok(Record::Progress(p)) => {
                if let Some((_, last)) = state.inflight.get_mut(&p.id) {
                    *last = Some(p);
                }
            }
            Ok(Record::Settled(e)) => {
                // The first record of a request is the one that counts, as in the database.
                state.inflight.remove(&e.request_id);
                state
                    .settled
                    .entry(e.request_id.clone())
                    .or_insert((*e, None));
            }
            Err(_) => {}
        }
    }
    Ok(Recovered {
        settled: state.settled.into_values().map(|(e, _)| e).collect(),
        interrupted: state
            .inflight
            .into_values()
            .map(|(a, p)| interrupted(&a, p.as_ref()))
            .collect(),
    })
}

/// The entry of a request found in flight after a crash: its last checkpoint (or nothing, when it
/// had none), at the prices it was admitted with, as `interrupted`.
pub fn interrupted(a: &AdmitRecord, p: Option<&ProgressRecord>) -> UsageEntry {
    let usage = p.map_or_else(Usage::default, |p| Usage {
        prompt_tokens: p.prompt_tokens,
        completion_tokens: p.completion_tokens,
        reasoning_tokens: p.reasoning_tokens,
        cached_tokens: p.cached_tokens,
        cache_write_tokens: p.cache_write_tokens,
        cache_write_1h_tokens: p.cache_write_1h_tokens,
    });
    let mut prices = a.prices();
    if let Some(p) = p {
        if let (Some(i), Some(o)) = (&p.input_price, &p.output_price) {
            prices.input = i.parse().unwrap_or(prices.input);
            prices.output = o.parse().unwrap_or(prices.output);
        }
    }
    let finished_at = p.map_or(a.started_at, |p| p.at.max(a.started_at));
    UsageEntry {
        request_id: a.id.clone(),
        key_id: a.key.clone(),
        requested_model: a.model.clone(),
        served_model: p.and_then(|p| p.served_model.clone()),
        provider: p.and_then(|p| p.provider.clone()),
        attempts: u32::from(p.is_some_and(|p| p.provider.is_some())),
        upstream_status: None,
        status: None,
        error_text: None,
        dropped: Vec::new(),
        tags: Vec::new(),
        request_type: None,
        prompt_tokens: usage.prompt_tokens,
        completion_tokens: usage.completion_tokens,
        reasoning_tokens: usage.reasoning_tokens,
        cached_tokens: usage.cached_tokens,
        cache_write_tokens: usage.cache_write_tokens,
        cache_saved: prices.cost(&usage).cache_saved,
        token_source: TokenSource::Estimated,
        cost: prices.cost(&usage).total(),
        end_reason: EndReason::Interrupted,
        ttft_ms: None,
        duration_ms: finished_at - a.started_at,
        stream: a.stream,
        started_at: a.started_at,
        finished_at,
        hold: Nanos(a.hold),
        over_hold: false,
        note: Some(if p.is_some() {
            BillingNote::Checkpoint
        } else {
            BillingNote::NoCheckpoint
        }),
    }
}

/// The journal thread's side.
struct Writer {
    path: PathBuf,
    file: File,
    written: u64,
    state: State,
    /// How many settled entries wait to be replayed (what `Journal::has_pending` reads).
    pending: Arc<AtomicUsize>,
    faults: Arc<Faults>,
    /// The refusable entries settled in this batch: forgotten if its write fails.
    refusable: Vec<String>,
    /// A write failed: the file may still hold admissions of refused requests, which a restart
    /// would bill as interrupted. Compacted as soon as the disk takes writes again.
    needs_compact: bool,
}

impl Writer {
    /// Runs until every sender is gone or `Stop` arrives; returns the `Stop` reply, to be sent
    /// once the file is closed.
    fn run(
        mut self,
        mut rx: mpsc::Receiver<Msg>,
        urgent: &AtomicBool,
        gather: Duration,
    ) -> Option<oneshot::Sender<()>> {
        let mut lines = Vec::with_capacity(64 << 10);
        let mut waiting = Vec::new();
        let mut fresh = HashSet::new();
        let mut stop = None;
        while let Some(first) = rx.blocking_recv() {
            if first.can_wait() {
                // Gather: senders of such messages never wake this thread while it sleeps
                // here; one that someone waits on sets `urgent` and unparks it.
                let until = Instant::now() + gather;
                loop {
                    let now = Instant::now();
                    if now >= until || urgent.load(Ordering::Acquire) {
                        break;
                    }
                    std::thread::park_timeout(until - now);
                }
            }
            // Cleared before draining: a message flagged after this is either drained below or
            // received by the next `blocking_recv`, which does not gather for it.
            urgent.store(false, Ordering::Release);
            let mut next = Some(first);
            let mut taken = 0;
            while let Some(msg) = next.take() {
                if let Msg::Stop(tx) = msg {
                    stop = Some(tx);
                    break;
                }
                self.take(msg, &mut lines, &mut waiting, &mut fresh);
                taken += 1;
                if taken < BATCH {
                    next = rx.try_recv().ok();
                }
            }
            // Admissions of this batch still in flight (not committed within it), each with
            // its latest checkpoint.
            for id in fresh.drain() {
                if let Some((a, p)) = self.state.inflight.get(&id) {
                    line(&mut lines, &Record::Admit(a.clone()));
                    if let Some(p) = p {
                        line(&mut lines, &Record::Progress(p.clone()));
                    }
                }
            }
            let result = if lines.is_empty() {
                Ok(())
            } else {
                self.append(&lines)
            };
            lines.clear();
            if let Err(e) = &result {
                tracing::error!(error = %e, path = %self.path.display(), refused = self.refusable.len(), "settlement journal write failed");
                // Their callers answer 503: these requests are never billed.
                for id in &self.refusable {
                    if let Some((_, Some(hold))) = self.state.settled.remove(id) {
                        hold.refused();
                    }
                }
                self.needs_compact = true;
            }
            self.refusable.clear();
            // Counted before anyone hears back: a writer that saw its batch fail looks at
            // `has_pending` at once to decide whether to replay (measured: with the count
            // stored after the replies, a delivered stream's entry waited for the next settlement).
            self.pending
                .store(self.state.settled.len(), Ordering::Relaxed);
            for tx in waiting.drain(..) {
                let _: Result<(), _> = (tx as oneshot::Sender<std::io::Result<()>>).send(
                    result
                        .as_ref()
                        .map(|_| ())
                        .map_err(|e| std::io::Error::new(e.kind(), e.to_string())),
                );
            }
            if stop.is_some() {
                break;
            }
            if self.written > COMPACT_AFTER || self.needs_compact {
                match self.compact() {
                    Ok(()) => self.needs_compact = false,
                    Err(e) => tracing::error!(error = %e, "settlement journal compaction failed"),
                }
            }
        }
        stop
    }

    /// Applies one message; admissions are only noted in `fresh` (written, if still in flight,
    /// at the end of the batch).
    fn take(
        &mut self,
        msg: Msg,
        lines: &mut Vec<u8>,
        waiting: &mut Vec<oneshot::Sender<std::io::Result<()>>>,
        fresh: &mut HashSet<String>,
    ) {
        match msg {
            Msg::Admit(a) => {
                fresh.insert(a.id.clone());
                self.state.inflight.insert(a.id.clone(), (a, None));
            }
            Msg::Progress(p) => {
                let unwritten = fresh.contains(&p.id);
                if let Some((_, last)) = self.state.inflight.get_mut(&p.id) {
                    let rec = Record::Progress(p);
                    if !unwritten {
                        line(lines, &rec);
                    }
                    if let Record::Progress(p) = rec {
                        *last = Some(p);
                    }
                }
            }
            Msg::Committed(ids) => {
                for id in ids {
                    self.state.inflight.remove(&id);
                }
            }
            Msg::Settle(entries, tx) => {
                for Settling {
                    entry: e,
                    hold,
                    refusable,
                } in entries
                {
                    self.state.inflight.remove(&e.request_id);
                    if !self.state.settled.contains_key(&e.request_id) {
                        line(lines, &Record::Settled(Box::new(e.clone())));
                        if refusable {
                            self.refusable.push(e.request_id.clone());
                        }
                        self.state.settled.insert(e.request_id.clone(), (e, hold));
                    }
                }
                waiting.push(tx);
            }
            Msg::Pending(tx) => {
                let _ = tx.send(
                    self.state
                        .settled
                        .values()
                        .map(|(e, _)| e.clone())
                        .collect(),
                );
            }
            Msg::Replayed(ids) => {
                for id in ids {
                    self.state.settled.remove(&id);
                }
            }
            Msg::Stop(_) => {}
        }
    }

    /// Appends `lines` and makes them durable. A write or fsync that fails is cut off again
    /// (best effort), so no torn record stays for the next batch to join and no record whose
    /// request was refused is found at the next start.
    fn append(&mut self, lines: &[u8]) -> std::io::Result<()> {
        let before = self.file.metadata().map(|m| m.len()).ok();
        let result = self.write_and_sync(lines);
        if result.is_err() {
            if let Some(len) = before {
                let _ = self.file.set_len(len);
            }
        } else {
            self.written += lines.len() as u64;
        }
        result
    }

    fn write_and_sync(&mut self, lines: &[u8]) -> std::io::Result<()> {
        let fault = self.faults.next();
        match fault {
            Some(Fault::NoSpace) => return Err(std::io::Error::from_raw_os_error(libc::ENOSPC)),
            Some(Fault::PartialWrite) => {
                self.file.write_all(&lines[..lines.len() / 2])?;
                return Err(std::io::Error::from_raw_os_error(libc::ENOSPC));
            }
            _ => {}
        }
        self.file.write_all(lines)?;
        if fault == Some(Fault::FsyncFails) {
            return Err(std::io::Error::from_raw_os_error(libc::EIO));
        }
        self.file.sync_data()
    }

    /// Rewrites the file with only the live records, atomically.
    fn compact(&mut self) -> std::io::Result<()> {
        let mut lines = Vec::new();
        for (a, p) in self.state.inflight.values() {
            line(&mut lines, &Record::Admit(a.clone()));
            if let Some(p) = p {
                line(&mut lines, &Record::Progress(p.clone()));
            }
        }
        for (e, _) in self.state.settled.values() {
            line(&mut lines, &Record::Settled(Box::new(e.clone())));
        }
        let tmp = self.path.with_extension("compacting");
        let mut f = File::create(&tmp)?;
        f.write_all(&lines)?;
        f.sync_all()?;
        drop(f);
        let fresh = OpenOptions::new().read(true).append(true).open(&tmp)?;
        fresh.lock()?;
        std::fs::rename(&tmp, &self.path)?;
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            File::open(dir)?.sync_all()?;
        }
        // The old file's lock goes with its handle; the new one is locked already.
        self.file = fresh;
        self.written = lines.len() as u64;
        Ok(())
    }
}

fn line(out: &mut Vec<u8>, r: &Record) {
    if serde_json::to_writer(&mut *out, r).is_ok() {
        out.push(b'\n');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(name: &str) -> PathBuf {
        let p = std::env::temp_dir().join(format!(
            "switchyard-journal-{}-{name}-{}",
            std::process::id(),
            super::super::now_ms()
        ));
        let _ = std::fs::remove_file(&p);
        p
    }

    fn admit(id: &str) -> AdmitRecord {
        let prices = Prices {
            input: 2.into(),
            output: 10.into(),
            ..Prices::default()
        };
        AdmitRecord::new(id, "key_a", "m", true, 1_000, &prices, Nanos(5_000))
    }

    #[test]
    fn a_torn_last_line_is_skipped_and_in_flight_requests_come_back_interrupted() {
        let path = temp("torn");
        let mut text = Vec::new();
        line(&mut text, &Record::Admit(admit("r1")));
        line(&mut text, &Record::Admit(admit("r2")));
        line(
            &mut text,
            &Record::Progress(ProgressRecord {
                id: "r1".into(),
                prompt_tokens: 1_000,
                completion_tokens: 100,
                reasoning_tokens: 0,
                cached_tokens: 0,
                cache_write_tokens: 0,
                cache_write_1h_tokens: 0,
                at: 3_000,
                provider: Some("p".into()),
                served_model: None,
                input_price: None,
                output_price: None,
            }),
        );
        text.extend_from_slice(br#"{"k":"admit","id":"r3","key":"#);
        std::fs::write(&path, &text).unwrap();
        let (_open, rec) = Journal::open(&path).unwrap();
        assert!(rec.settled.is_empty());
        let mut got: Vec<_> = rec
            .interrupted
            .iter()
            .map(|e| {
                (
                    e.request_id.as_str(),
                    e.prompt_tokens,
                    e.completion_tokens,
                    e.cost,
                )
            })
            .collect();
        got.sort();
        // 1,000 × $2/M + 100 × $10/M = $0.003.
        assert_eq!(
            got,
            vec![("r1", 1_000, 100, Nanos(3_000_000)), ("r2", 0, 0, Nanos(0))]
        );
        assert!(rec
            .interrupted
            .iter()
            .all(|e| e.end_reason == EndReason::Interrupted));
        let _ = std::fs::remove_file(&path);
    }

    /// A torn tail is cut off at open, so the next record appended is a line of its own (before,
    /// it joined the torn one and both were lost at the next recovery); a corrupt record in the
    /// middle is skipped alone.
    #[test]
    fn a_torn_tail_is_cut_and_a_corrupt_record_takes_no_neighbour_with_it() {
        let path = temp("cut");
        let mut text = Vec::new();
        line(&mut text, &Record::Admit(admit("r1")));
        text.extend_from_slice(b"{\"k\":\"admit\",\"id\":garbage}\n");
        line(&mut text, &Record::Admit(admit("r2")));
        text.extend_from_slice(br#"{"k":"admit","id":"r3","key":"#);
        std::fs::write(&path, &text).unwrap();
        let (open, rec) = Journal::open(&path).unwrap();
        let mut ids: Vec<_> = rec
            .interrupted
            .iter()
            .map(|e| e.request_id.clone())
            .collect();
        ids.sort();
        assert_eq!(ids, ["r1", "r2"]);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.ends_with('\n') && !text.contains("r3"), "{text}");
        // The next batch, appended to the file as the writer appends, starts a line of its own.
        drop(open);
        let mut next = Vec::new();
        line(&mut next, &Record::Admit(admit("r4")));
        OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(&next)
            .unwrap();
        let (_open, rec) = Journal::open(&path).unwrap();
        let mut ids: Vec<_> = rec
            .interrupted
            .iter()
            .map(|e| e.request_id.clone())
            .collect();
        ids.sort();
        assert_eq!(ids, ["r1", "r2", "r4"]);
        let _ = std::fs::remove_file(&path);
    }

    #[tokio::test]
    async fn an_admission_committed_within_the_gathering_window_never_reaches_the_file() {
        let path = temp("gather");
        let (open, _) = Journal::open(&path).unwrap();
        // A window far longer than the test: only the urgent `pending` ends it.
        let journal = open.start_gathering(Duration::from_secs(600)).unwrap();
        journal.admit(admit("quick")).await;
        journal.admit(admit("long")).await;
        journal.committed(vec!["quick".into()]);
        // `pending` waits on the thread, so everything queued before it has been handled.
        assert!(journal.pending().await.is_empty());
        journal.stop().await;
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains(r#""id":"long""#), "{text}");
        assert!(!text.contains("quick"), "{text}");
        let (_open, rec) = Journal::open(&path).unwrap();
        let ids: Vec<_> = rec
            .interrupted
            .iter()
            .map(|e| e.request_id.as_str())
            .collect();
        assert_eq!(ids, vec!["long"]);
        let _ = std::fs::remove_file(&path);
    }

    /// A settlement write that fails (half written, no space, or a failed fsync): the whole
    /// answer whose caller answers 503 is forgotten and never comes back, not even as an
    /// `interrupted` admission after a restart; the stream whose answer went out is kept and
    /// made durable by the next write; nothing torn is left in the file.
    #[tokio::test]
    async fn a_failed_write_forgets_the_refused_and_keeps_the_answered() {
        for fault in [Fault::PartialWrite, Fault::NoSpace, Fault::FsyncFails] {
            let path = temp(&format!("fault-{fault:?}"));
            let (open, _) = Journal::open(&path).unwrap();
            let journal = open.start_gathering(Duration::from_secs(600)).unwrap();
            let settling = |id: &str, stream: bool, refusable: bool| {
                let mut entry = interrupted(&admit(id), None);
                entry.end_reason = EndReason::Stop;
                entry.stream = stream;
                Settling {
                    entry,
                    hold: None,
                    refusable,
                }
            };
            journal.admit(admit("whole")).await;
            journal.admit(admit("stream")).await;
            // A settlement (of nothing) is answered once its batch, and so the admissions queued
            // before it, is written.
            journal.settle(Vec::new()).await.unwrap();
            assert!(std::fs::read_to_string(&path).unwrap().contains("whole"));
            journal.faults().inject(fault, 1);
            let failed = journal
                .settle(vec![
                    settling("whole", false, true),
                    settling("stream", true, false),
                ])
                .await;
            assert!(failed.is_err(), "{fault:?}");
            let pending: Vec<_> = journal
                .pending()
                .await
                .into_iter()
                .map(|e| e.request_id)
                .collect();
            assert_eq!(pending, ["stream"], "{fault:?}");
            journal
                .settle(vec![settling("later", false, true)])
                .await
                .unwrap();
            journal.stop().await;
            let text = std::fs::read_to_string(&path).unwrap();
            assert!(
                text.ends_with('\n') && !text.contains("whole"),
                "{fault:?}: {text}"
            );
            let (_open, rec) = Journal::open(&path).unwrap();
            let mut settled: Vec<_> = rec.settled.iter().map(|e| e.request_id.clone()).collect();
            settled.sort();
            assert_eq!(settled, ["later", "stream"], "{fault:?}");
            assert!(
                rec.interrupted.is_empty(),
                "{fault:?}: {:?}",
                rec.interrupted
            );
            let _ = std::fs::remove_file(&path);
        }
    }

    #[test]
    fn a_second_process_cannot_share_the_journal() {
        let path = temp("lock");
        let (_first, _) = Journal::open(&path).unwrap();
        assert!(matches!(Journal::open(&path), Err(JournalError::Locked(_))));
        let _ = std::fs::remove_file(&path);
    }
}
