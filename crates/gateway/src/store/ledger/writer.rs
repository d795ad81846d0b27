//! The one ledger writer: settlements are queued to a single task that commits everything that
//! arrived while its previous commit ran, in one transaction (group commit, at most `MAX_BATCH`
//! entries), on its own database connection. Each settling request waits for the commit that
//! carries its entry, so the wait is shared, but the write itself runs in this task: nothing a
//! client does (closing its socket mid-commit) can cancel it. The queue is bounded, so a database
//! slower than the traffic makes settling (and, through the journal, admission) wait instead of
//! memory growing.
//!
//! A commit that fails is retried until `JOURNAL_AFTER`; past it the batch goes to the local
//! journal (`journal.rs`), fsync'd, and counts as durable. Journaled entries keep their money held
//! on the key's account until they are replayed into the database, which this task tries
//! `REPLAY_EVERY` after its last attempt while any are pending (and the startup path does before
//! serving). Settlements go first: during an outage a request waits at most one attempt
//! (`JOURNAL_AFTER`) before its entry is journaled.
//!
//! One batch is: a multi-row `INSERT … ON CONFLICT (request_id) DO NOTHING RETURNING request_id`,
//! then one debit per key and budget period for the entries actually inserted, so replaying an
//! entry that is already in the database changes nothing. With shared holds (`shared_holds.rs`)
//! the same transaction deletes the batch's hold rows and lowers each key's `reserved_nanos` in
//! the statement that debits it (keys in one order, so two instances' writers cannot deadlock).

mod sqlite;

pub(super) use sqlite::SqliteWriter;

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use sqlx::{AnyPool, Row};
use tokio::sync::{mpsc, oneshot};

use super::accounts::{Accounts, Hold};
use super::journal::Journal;
use super::keys::{key_from_row, KeyRecord};
use super::{BudgetPeriod, LedgerError, UsageEntry};

/// Entries committed in one transaction at most.
pub const MAX_BATCH: usize = 1_024;
/// Settlements waiting for the writer at most; past this, settling waits for room.
pub const QUEUE: usize = 8_192;
/// How long a batch is retried against the database before it goes to the journal.
pub const JOURNAL_AFTER: Duration = Duration::from_secs(1);
/// How often journaled entries are offered to the database again.
const REPLAY_EVERY: Duration = Duration::from_millis(500);
/// Rows per INSERT statement. Small on purpose: binding a parameter costs sqlx a lookup of its
/// name, which SQLite answers by scanning the statement's parameter list, so a statement's binding
/// time grows with the square of its named parameters (measured: 64 rows × 22 = 1,408 parameters
/// spent a quarter of the writer's time in `sqlite3_bind_parameter_name`). On SQLite the
/// parameters are anonymous (`?`), which have no name to look up (measured at 8 rows: the lookup
/// still took 13% of the SQLite thread with `$N`).
pub(super) const ROWS_PER_INSERT: usize = 8;

/// Where a settled entry is durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durable {
    Database,
    /// In the local journal, to be replayed into the database.
    Journal,
    /// Handed to the writer, not waited for (`Durability::Batched`): committed with its batch.
    Queued,
}

/// What the writer is asked to do. `Settle` is nearly every message, so it is kept inline
/// (boxing it would allocate once per request).
#[allow(clippy::large_enum_variant)]
pub(super) enum Msg {
    Settle(Job),
    /// Answered once every settlement queued before it is durable.
    Flush(oneshot::Sender<()>),
}

/// One settlement for the writer.
pub(super) struct Job {
    pub entry: UsageEntry,
    pub hold: Option<Hold>,
    pub reply: Option<oneshot::Sender<Result<Durable, Arc<LedgerError>>>>,
}

/// The writer's side of the shared state.
pub(super) struct WriterTask {
    pub pool: AnyPool,
    pub accounts: Arc<Accounts>,
    pub journal: Option<Journal>,
    pub settled: Arc<tokio::sync::watch::Sender<u64>>,
    /// The database refused a batch and the journal holds entries it has not taken back yet:
    /// new batches go straight to the journal (no second wait of `JOURNAL_AFTER` per batch) until
    /// a replay succeeds.
    pub down: std::sync::atomic::AtomicBool,
    /// Holds are rows of the shared `holds` table, released with the settlement.
    pub shared: bool,
    /// On SQLite, batches are written by this thread of its own (`sqlite_writer`), not through
    /// `pool`.
    pub sqlite: Option<SqliteWriter>,
}

const COLUMNS: &str = "request_id, key_id, requested_model, served_model, provider, \
     attempts, prompt_tokens, completion_tokens, reasoning_tokens, cached_tokens, token_source, \
     cost_nanos, end_reason, ttft_ms, duration_ms, stream, started_at, finished_at, created_at, \
     hold_nanos, over_hold, billing_note, upstream_status, status, error_text, request_type, \
     cache_write_tokens, cache_saved_nanos";
pub(super) const COLUMN_COUNT: usize = 28;

impl WriterTask {
    pub(super) async fn run(self, mut rx: mpsc::Receiver<Msg>) {
        let mut msgs: Vec<Msg> = Vec::with_capacity(MAX_BATCH);
        let mut replay = tokio::time::interval(REPLAY_EVERY);
        replay.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                // Settlements first: a replay attempt against a database that is down may take
                // up to `JOURNAL_AFTER`, and a request must not wait for several of them.
                biased;
                n = rx.recv_many(&mut msgs, MAX_BATCH) => {
                    if n == 0 {
                        break;
                    }
                    if n < MAX_BATCH {
                        // The waiters of the last commit are being woken and are about to
                        // settle again: one yield lets them join this batch instead of leaving
                        // a batch of one followed by a full one.
                        tokio::task::yield_now().await;
                        while msgs.len() < MAX_BATCH {
                            match rx.try_recv() {
                                Ok(m) => msgs.push(m),
                                Err(_) => break,
                            }
                        }
                    }
                    let mut batch = Vec::with_capacity(n);
                    let mut flushed = Vec::new();
                    for m in msgs.drain(..) {
                        match m {
                            Msg::Settle(job) => batch.push(job),
                            Msg::Flush(tx) => flushed.push(tx),
                        }
                    }
                    if !batch.is_empty() {
                        self.commit(batch).await;
                    }
                    for tx in flushed {
                        let _ = tx.send(());
                    }
                }
                _ = replay.tick(), if self.journal.as_ref().is_some_and(Journal::has_pending) => {
                    self.replay().await;
                    // The next attempt comes a whole `REPLAY_EVERY` after this one ended, so
                    // settlements are served between attempts (at most one attempt's wait).
                    replay.reset();
                }
            }
        }
    }

    async fn commit(&self, jobs: Vec<Job>) {
        if self.journal.is_some() && self.down.load(std::sync::atomic::Ordering::Relaxed) {
            return self.to_journal(jobs, LedgerError::Timeout).await;
        }
        let entries: Vec<&UsageEntry> = jobs.iter().map(|j| &j.entry).collect();
        let deadline = tokio::time::Instant::now() + JOURNAL_AFTER;
        let mut pause = Duration::from_millis(20);
        let result = loop {
            match tokio::time::timeout_at(deadline, self.write(&entries)).await {
                Ok(Ok(keys)) => break Ok(keys),
                Ok(Err(e)) if tokio::time::Instant::now() + pause < deadline => {
                    tracing::warn!(error = %e, entries = entries.len(), "ledger commit failed; retrying");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_millis(200));
                }
                Ok(Err(e)) => break Err(LedgerError::Db(e)),
                Err(_) => break Err(LedgerError::Timeout),
            }
        };
        match result {
            Ok(keys) => {
                for k in &keys {
                    self.accounts.apply(k);
                }
                let ids: Vec<String> = jobs.iter().map(|j| j.entry.request_id.clone()).collect();
                if let Some(j) = &self.journal {
                    j.committed(ids);
                }
                let n = jobs.len() as u64;
                // Holds go before anyone hears of the entry: whoever saw it sees the money free.
                for job in jobs {
                    if let Some(h) = job.hold {
                        h.settled();
                    }
                    if let Some(tx) = job.reply {
                        let _ = tx.send(Ok(Durable::Database));
                    }
                }
                self.settled.send_modify(|c| *c += n);
            }
            Err(e) => self.to_journal(jobs, e).await,
        }
    }

    /// Writes one batch: on the SQLite thread (the entries copied to it), else through sqlx.
    async fn write(&self, entries: &[&UsageEntry]) -> Result<Vec<KeyRecord>, sqlx::Error> {
        match &self.sqlite {
            Some(w) => {
                w.write_batch(entries.iter().map(|&e| e.clone()).collect())
                    .await
            }
            None => write_batch(&self.pool, entries, self.shared).await,
        }
    }

    /// The database would not take `jobs` in time: make them durable in the journal, their money
    /// still held (at their cost) until they are replayed.
    async fn to_journal(&self, jobs: Vec<Job>, cause: LedgerError) {
        let Some(journal) = &self.journal else {
            tracing::error!(error = %cause, entries = jobs.len(), "ledger commit failed and there is no journal");
            let cause = Arc::new(cause);
            for job in jobs {
                if let Some(tx) = job.reply {
                    let _ = tx.send(Err(cause.clone()));
                }
            }
            return;
        };
        if !self.down.load(std::sync::atomic::Ordering::Relaxed) {
            tracing::warn!(error = %cause, entries = jobs.len(), "ledger unavailable; settling into the journal until it takes writes again");
        }
        let mut replies = Vec::with_capacity(jobs.len());
        let mut entries = Vec::with_capacity(jobs.len());
        for job in jobs {
            let hold = match job.hold {
                Some(h) => Some(h.resize(job.entry.cost)),
                None => self
                    .accounts
                    .get(&job.entry.key_id)
                    .map(|a| a.force_hold(job.entry.cost)),
            };
            // A whole answer not yet given is refused (503) if this write fails; a stream's
            // answer is out already, and a detached settlement's client is gone: those are billed.
            let refusable = job.reply.is_some() && !job.entry.stream;
            replies.push(job.reply);
            entries.push(super::journal::Settling {
                entry: job.entry,
                hold,
                refusable,
            });
        }
        self.down.store(true, std::sync::atomic::Ordering::Relaxed);
        let result = journal.settle(entries).await;
        if result.is_err() {
            // Nothing waits in the journal because of this batch: offer the next to the database.
            self.down.store(false, std::sync::atomic::Ordering::Relaxed);
        }
        let result = result.map(|_| Durable::Journal).map_err(|e| {
            tracing::error!(error = %e, "settlement journal write failed");
            Arc::new(LedgerError::Journal(e))
        });
        for tx in replies.into_iter().flatten() {
            let _ = tx.send(result.clone());
        }
    }

    /// Offers the journaled entries to the database again.
    async fn replay(&self) {
        let Some(journal) = &self.journal else {
            return;
        };
        let pending = journal.pending().await;
        for chunk in pending.chunks(MAX_BATCH) {
            let entries: Vec<&UsageEntry> = chunk.iter().collect();
            let write = self.write(&entries);
            match tokio::time::timeout(JOURNAL_AFTER, write).await {
                Ok(Ok(keys)) => {
                    for k in &keys {
                        self.accounts.apply(k);
                    }
                    let ids = chunk.iter().map(|e| e.request_id.clone()).collect();
                    journal.replayed(ids).await;
                    self.settled.send_modify(|n| *n += chunk.len() as u64);
                    tracing::info!(
                        entries = chunk.len(),
                        "journaled settlements replayed into the ledger"
                    );
                }
                _ => return,
            }
        }
        self.down.store(false, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Writes `entries` in one transaction: inserts those not yet present, debits their keys (and,
/// with `shared` holds, releases the entries' holds), and returns the keys' new rows.
pub(super) async fn write_batch(
    pool: &AnyPool,
    entries: &[&UsageEntry],
    shared: bool,
) -> Result<Vec<KeyRecord>, sqlx::Error> {
    let numbered = !pool
        .connect_options()
        .database_url
        .scheme()
        .starts_with("sqlite");
    let mut tx = pool.begin().await?;
    let mut inserted: HashSet<String> = HashSet::with_capacity(entries.len());
    for chunk in entries.chunks(ROWS_PER_INSERT) {
        let sql = insert_sql(chunk.len(), numbered);
        let mut q = sqlx::query(&sql);
        for e in chunk {
            q = q
                .bind(&e.request_id)
                .bind(&e.key_id)
                .bind(&e.requested_model)
                .bind(&e.served_model)
                .bind(&e.provider)
                .bind(i64::from(e.attempts))
                .bind(clamp(e.prompt_tokens))
                .bind(clamp(e.completion_tokens))
                .bind(clamp(e.reasoning_tokens))
                .bind(clamp(e.cached_tokens))
                .bind(e.token_source.as_str())
                .bind(e.cost.0)
                .bind(e.end_reason.as_str())
                .bind(e.ttft_ms)
                .bind(e.duration_ms)
                .bind(i64::from(e.stream))
                .bind(e.started_at)
                .bind(e.finished_at)
                .bind(e.finished_at)
                .bind(e.hold.0)
                .bind(i64::from(e.over_hold))
                .bind(e.note.map(super::BillingNote::as_str))
                .bind(e.upstream_status.map(i64::from))
                .bind(e.status.map(i64::from))
                .bind(&e.error_text)
                .bind(&e.request_type)
                .bind(clamp(e.cache_write_tokens))
                .bind(e.cache_saved.0);
        }
        for row in q.fetch_all(&mut *tx).await? {
            inserted.insert(row.try_get::<String, _>(0)?);
        }
    }
    // The tags of the entries inserted now, in the same transaction.
    for e in entries.iter().filter(|e| inserted.contains(&e.request_id)) {
        for tag in &e.tags {
            let sql = if numbered {
                "INSERT INTO usage_entry_tags (request_id, tag, created_at) VALUES ($1, $2, $3)"
            } else {
                "INSERT INTO usage_entry_tags (request_id, tag, created_at) VALUES (?, ?, ?)"
            };
            sqlx::query(sql)
                .bind(&e.request_id)
                .bind(tag)
                .bind(e.finished_at)
                .execute(&mut *tx)
                .await?;
        }
    }
    // What the entries inserted now count in their keys' quota windows (below, after the debits).
    let fresh = fresh_entries(entries, &inserted);
    let mut debits = plan_debits(entries, &mut inserted);
    let mut released = if shared {
        let ids: Vec<&str> = entries.iter().map(|e| e.request_id.as_str()).collect();
        super::shared_holds::release_in(&mut tx, &ids).await?
    } else {
        BTreeMap::new()
    };
    // A key with a released hold and nothing to debit (an entry already written) still gets its
    // hold released: a debit of 0 in the same key order.
    let debited: HashSet<&str> = debits.keys().map(|(k, _, _)| k.as_str()).collect();
    let now = super::now_ms();
    let (day, month) = (
        BudgetPeriod::Day.start_of(now),
        BudgetPeriod::Month.start_of(now),
    );
    let release_only: Vec<String> = released
        .keys()
        .filter(|k| !debited.contains(k.as_str()))
        .cloned()
        .collect();
    for key in release_only {
        debits.insert((key, day, month), 0);
    }
    let debit_sql = debit_sql();
    let mut keys: Vec<KeyRecord> = Vec::with_capacity(debits.len());
    for ((key_id, day, month), amount) in debits {
        let release = released.remove(&key_id).unwrap_or(0);
        // The period is the key's budget period (days without a budget); a settlement in a new
        // period starts its spend afresh, one from an older period leaves it alone.
        // Checked arithmetic in SQL: the debit is at most DEBIT_BOUND, and the balance stops at
        // -DEBIT_BOUND and the spends at DEBIT_BOUND instead of overflowing (PostgreSQL would fail
        // the batch for ever; SQLite would store a REAL and the key would stop working).
        let amount = amount.clamp(0, DEBIT_BOUND);
        let row = sqlx::query(debit_sql)
            .bind(amount)
            .bind(month)
            .bind(day)
            .bind(&key_id)
            .bind(release)
            .fetch_optional(&mut *tx)
            .await?;
        if let Some(row) = row {
            // Keep only the newest row of a key (several periods in one batch).
            let k = key_from_row(&row)?;
            keys.retain(|o| o.id != k.id);
            keys.push(k);
        }
    }
    charge_quotas(&mut tx, &fresh, &mut keys, numbered).await?;
    tx.commit().await?;
    Ok(keys)
}

/// Counts `fresh` entries in their keys' quota windows (`ledger::quotas`), in the settlement's
/// transaction: each key with windows gets its row's `quotas` rewritten once. A request counts
/// when it cost money or used tokens.
async fn charge_quotas(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    fresh: &[&UsageEntry],
    keys: &mut Vec<KeyRecord>,
    numbered: bool,
) -> Result<(), sqlx::Error> {
    for (key_id, list) in quota_entries_by_key(fresh) {
        let current = match keys.iter().find(|k| k.id == key_id) {
            Some(k) => k.clone(),
            None => {
                let sql = format!(
                    "SELECT {} FROM api_keys WHERE id = {}",
                    super::keys::KEY_COLUMNS,
                    if numbered { "$1" } else { "?" }
                );
                match sqlx::query(&sql)
                    .bind(key_id)
                    .fetch_optional(&mut **tx)
                    .await?
                {
                    Some(row) => key_from_row(&row)?,
                    None => continue,
                }
            }
        };
        let Some(quotas) = charged_quotas(&current, list) else {
            continue;
        };
        let sql = format!(
            "UPDATE api_keys SET quotas = {}, version = version + 1 WHERE id = {} RETURNING {}",
            if numbered { "$1" } else { "?" },
            if numbered { "$2" } else { "?" },
            super::keys::KEY_COLUMNS
        );
        let row = sqlx::query(&sql)
            .bind(super::quotas::to_column(&quotas))
            .bind(key_id)
            .fetch_one(&mut **tx)
            .await?;
        let k = key_from_row(&row)?;
        keys.retain(|o| o.id != k.id);
        keys.push(k);
    }
    Ok(())
}

/// The most one debit takes, and the bounds the balance (below) and the spends (above) stop at:
/// 2^62 nano-USD (4.6 billion USD), so that no sum in the debit statement can leave an i64.
pub(super) const DEBIT_BOUND: i64 = 1 << 62;

pub(super) fn clamp(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// `numbered`: `$1, $2, …` (PostgreSQL); else `?` (SQLite binds them in order, without a lookup).
pub(super) fn insert_sql(rows: usize, numbered: bool) -> String {
    let mut sql = format!("INSERT INTO usage_entries ({COLUMNS}) VALUES ");
    let mut n = 0;
    for r in 0..rows {
        if r > 0 {
            sql.push_str(", ");
        }
        sql.push('(');
        for c in 0..COLUMN_COUNT {
            if c > 0 {
                sql.push_str(", ");
            }
            n += 1;
            if numbered {
                sql.push('$');
                sql.push_str(&n.to_string());
            } else {
                sql.push('?');
            }
        }
        sql.push(')');
    }
    sql.push_str(" ON CONFLICT (request_id) DO NOTHING RETURNING request_id");
    sql
}

/// The debit of one key in a batch ($1 amount, $2/$3 the month/day period start, $4 key id, $5 the
/// shared holds released), built once per process. The period is the key's budget period (days
/// without a budget); a settlement in a new period starts its spend afresh, one from an older
/// period leaves it alone.
/// The entries of `entries` that this batch inserted (not already in the database).
pub(super) fn fresh_entries<'a>(
    entries: &[&'a UsageEntry],
    inserted: &HashSet<String>,
) -> Vec<&'a UsageEntry> {
    entries
        .iter()
        .filter(|e| inserted.contains(&e.request_id))
        .copied()
        .collect()
}

/// One debit per key and budget period (the day and month the entry finished in), oldest period
/// first (see `debit_sql`), for the entries inserted now; `inserted` is emptied of those that cost
/// something.
pub(super) fn plan_debits(
    entries: &[&UsageEntry],
    inserted: &mut HashSet<String>,
) -> BTreeMap<(String, i64, i64), i64> {
    let mut debits: BTreeMap<(String, i64, i64), i64> = BTreeMap::new();
    for e in entries {
        if e.cost.0 != 0 && inserted.remove(&e.request_id) {
            let day = BudgetPeriod::Day.start_of(e.finished_at);
            let month = BudgetPeriod::Month.start_of(e.finished_at);
            let d = debits.entry((e.key_id.clone(), day, month)).or_default();
            *d = d.saturating_add(e.cost.0);
        }
    }
    debits
}

/// The fresh entries that count in quota windows (they cost money or used tokens), by key.
pub(super) fn quota_entries_by_key<'a>(
    fresh: &[&'a UsageEntry],
) -> BTreeMap<&'a str, Vec<&'a UsageEntry>> {
    let mut by_key: BTreeMap<&str, Vec<&UsageEntry>> = BTreeMap::new();
    for e in fresh {
        if e.cost.0 > 0 || e.prompt_tokens + e.completion_tokens > 0 {
            by_key.entry(e.key_id.as_str()).or_default().push(e);
        }
    }
    by_key
}

/// The key's quota windows with `list` counted in them, oldest request first; `None` when the key
/// has no windows.
pub(super) fn charged_quotas(
    current: &KeyRecord,
    mut list: Vec<&UsageEntry>,
) -> Option<Vec<super::quotas::Quota>> {
    if current.quotas.is_empty() {
        return None;
    }
    let mut quotas = current.quotas.clone();
    list.sort_by_key(|e| e.started_at);
    for e in list {
        let tokens = clamp(e.prompt_tokens.saturating_add(e.completion_tokens));
        for q in &mut quotas {
            q.charge(e.started_at, e.cost.0, tokens);
        }
    }
    Some(quotas)
}

pub(super) fn debit_sql() -> &'static str {
    static SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        let p1 = "(CASE WHEN budget_period = 'month' THEN $2 ELSE $3 END)";
        format!(
            "UPDATE api_keys SET \
             balance_nanos = CASE WHEN balance_nanos < $1 - {b} THEN -{b} ELSE balance_nanos - $1 END, \
             spent_nanos = CASE WHEN spent_nanos > {b} - $1 THEN {b} ELSE spent_nanos + $1 END, \
             period_spent_nanos = CASE WHEN period_start = {p1} THEN \
                 (CASE WHEN period_spent_nanos > {b} - $1 THEN {b} ELSE period_spent_nanos + $1 END) \
             WHEN period_start > {p1} THEN period_spent_nanos ELSE $1 END, \
             period_start = CASE WHEN period_start > {p1} THEN period_start ELSE {p1} END, \
             reserved_nanos = CASE WHEN reserved_nanos < $5 THEN 0 ELSE reserved_nanos - $5 END, \
             version = version + 1 WHERE id = $4 RETURNING {cols}",
            b = DEBIT_BOUND,
            cols = super::keys::KEY_COLUMNS
        )
    });
    &SQL
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_insert_binds_every_column_of_every_row() {
        let sql = insert_sql(2, true);
        assert_eq!(COLUMNS.split(',').count(), COLUMN_COUNT);
        assert!(sql.contains(&format!("${}", 2 * COLUMN_COUNT)));
        assert!(!sql.contains(&format!("${}", 2 * COLUMN_COUNT + 1)));
        let anonymous = insert_sql(2, false);
        assert_eq!(anonymous.matches('?').count(), 2 * COLUMN_COUNT);
        assert!(!anonymous.contains('$'));
    }
}
