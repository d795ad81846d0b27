//! The SQLite ledger's batch writer: one OS thread with its own rusqlite connection and cached
//! prepared statements, so that a batch of settlements costs one hand-off to that thread and one
//! reply. Through sqlx every statement of a batch (begin, inserts, debits, commit) was a round
//! trip to sqlx's worker thread: measured at one request at a time, that thread took 28% of the
//! gateway's CPU and its wake-ups most of the context switches (`docs/benchmarks.md`, issue 25).
//!
//! The statements and their order are `writer::write_batch`'s (PostgreSQL keeps that one); the
//! arithmetic that is not SQL (which entries debit what, the quota windows) is shared with it.

use std::collections::HashSet;
use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension, Row};
use tokio::sync::oneshot;

use super::{
    charged_quotas, clamp, debit_sql, fresh_entries, insert_sql, plan_debits, quota_entries_by_key,
    DEBIT_BOUND, ROWS_PER_INSERT,
};
use crate::store::ledger::keys::{key_from_columns, KeyRecord, KEY_COLUMNS};
use crate::store::ledger::UsageEntry;

/// Work for the writer thread.
type Task = Box<dyn FnOnce(&mut Connection) + Send>;

/// The handle of the writer thread; the thread ends when the last handle is dropped.
#[derive(Clone)]
pub(crate) struct SqliteWriter {
    tx: mpsc::Sender<Task>,
}

impl SqliteWriter {
    /// Opens the database file at `path` (created and migrated already, by sqlx) on a thread of
    /// its own. A locked file is waited for `busy` at most, so a batch that cannot be written goes
    /// to the journal instead of waiting.
    pub(crate) fn open(path: &Path, busy: Duration) -> rusqlite::Result<SqliteWriter> {
        let mut conn = Connection::open(path)?;
        conn.busy_timeout(busy)?;
        // As the pool's connections (`pool_options`): a commit survives a crash of the process;
        // deleted rows are overwritten.
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "secure_delete", "ON")?;
        conn.set_prepared_statement_cache_capacity(32);
        // Commits never copy the WAL into the database themselves (a checkpoint fsyncs twice,
        // milliseconds on this disk, while every settlement behind it waits): the checkpointer
        // thread does, on a connection of its own.
        conn.pragma_update(None, "wal_autocheckpoint", 0)?;
        let checkpoint = checkpointer(path, busy)?;
        let (tx, rx) = mpsc::channel::<Task>();
        std::thread::Builder::new()
            .name("ledger-sqlite".into())
            .spawn(move || {
                while let Ok(task) = rx.recv() {
                    task(&mut conn);
                    // Full: a checkpoint is already due, which will take this batch's pages too.
                    let _ = checkpoint.try_send(());
                }
            })
            .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
        Ok(SqliteWriter { tx })
    }

    /// Writes `entries` in one transaction on the writer thread (see `writer::write_batch`).
    pub(super) async fn write_batch(
        &self,
        entries: Vec<UsageEntry>,
    ) -> Result<Vec<KeyRecord>, sqlx::Error> {
        let (reply, rx) = oneshot::channel();
        let task: Task = Box::new(move |conn| {
            let refs: Vec<&UsageEntry> = entries.iter().collect();
            let _ = reply.send(write_batch(conn, &refs));
        });
        let gone = || sqlx::Error::Io(std::io::Error::other("the SQLite writer thread stopped"));
        self.tx.send(task).map_err(|_| gone())?;
        rx.await
            .map_err(|_| gone())?
            .map_err(|e| sqlx::Error::Io(std::io::Error::other(e)))
    }
}

/// The least time between two checkpoints of a busy ledger.
const CHECKPOINT_GAP: Duration = Duration::from_millis(200);

/// Starts the checkpointer: a thread that copies the WAL into the database file after the writer
/// commits (passively: never waiting for a reader, and at most every `CHECKPOINT_GAP`). It ends
/// with the writer thread; SQLite empties the WAL when the last connection closes.
fn checkpointer(path: &Path, busy: Duration) -> rusqlite::Result<mpsc::SyncSender<()>> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(busy)?;
    conn.pragma_update(None, "wal_autocheckpoint", 0)?;
    let checkpoint = |conn: &Connection| {
        if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
            tracing::warn!(error = %e, "the ledger's WAL checkpoint failed; the next one retries");
        }
    };
    let (tx, rx) = mpsc::sync_channel::<()>(1);
    std::thread::Builder::new()
        .name("ledger-checkpoint".into())
        .spawn(move || {
            while rx.recv().is_ok() {
                checkpoint(&conn);
                // Lets commits gather for the next one instead of checkpointing after each.
                std::thread::sleep(CHECKPOINT_GAP);
            }
        })
        .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
    Ok(tx)
}

/// One batch in one transaction: the entries not yet present are inserted, their keys debited
/// and their quota windows charged; returns the keys' rows as they are now.
fn write_batch(conn: &mut Connection, entries: &[&UsageEntry]) -> rusqlite::Result<Vec<KeyRecord>> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let mut inserted: HashSet<String> = HashSet::with_capacity(entries.len());
    for chunk in entries.chunks(ROWS_PER_INSERT) {
        let mut stmt = tx.prepare_cached(&insert_sql(chunk.len(), false))?;
        let mut n = 0;
        for e in chunk {
            bind_entry(&mut stmt, &mut n, e)?;
        }
        debug_assert_eq!(n, chunk.len() * super::COLUMN_COUNT);
        let mut rows = stmt.raw_query();
        while let Some(row) = rows.next()? {
            inserted.insert(row.get(0)?);
        }
    }
    for e in entries.iter().filter(|e| inserted.contains(&e.request_id)) {
        for tag in &e.tags {
            tx.prepare_cached(
                "INSERT INTO usage_entry_tags (request_id, tag, created_at) VALUES (?, ?, ?)",
            )?
            .execute(params![e.request_id, tag, e.finished_at])?;
        }
    }
    let fresh = fresh_entries(entries, &inserted);
    let debits = plan_debits(entries, &mut inserted);
    let debit = sqlite_debit_sql();
    let mut keys: Vec<KeyRecord> = Vec::with_capacity(debits.len());
    for ((key_id, day, month), amount) in debits {
        let amount = amount.clamp(0, DEBIT_BOUND);
        let k = tx
            .prepare_cached(debit)?
            .query_row(params![amount, month, day, key_id, 0i64], key_from_sqlite)
            .optional()?;
        if let Some(k) = k {
            keys.retain(|o| o.id != k.id);
            keys.push(k);
        }
    }
    for (key_id, list) in quota_entries_by_key(&fresh) {
        let current = match keys.iter().find(|k| k.id == key_id) {
            Some(k) => k.clone(),
            None => {
                match tx
                    .prepare_cached(key_by_id_sql())?
                    .query_row([key_id], key_from_sqlite)
                    .optional()?
                {
                    Some(k) => k,
                    None => continue,
                }
            }
        };
        let Some(quotas) = charged_quotas(&current, list) else {
            continue;
        };
        let k = tx.prepare_cached(charge_quotas_sql())?.query_row(
            params![crate::store::ledger::quotas::to_column(&quotas), key_id],
            key_from_sqlite,
        )?;
        keys.retain(|o| o.id != k.id);
        keys.push(k);
    }
    tx.commit()?;
    Ok(keys)
}

/// A key's row by id, made once.
fn key_by_id_sql() -> &'static str {
    static SQL: std::sync::LazyLock<String> =
        std::sync::LazyLock::new(|| format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE id = ?"));
    &SQL
}

/// `writer::debit_sql` with SQLite's numbered parameters (`?1` for `$1`), made once.
fn sqlite_debit_sql() -> &'static str {
    static SQL: std::sync::LazyLock<String> =
        std::sync::LazyLock::new(|| debit_sql().replace('$', "?"));
    &SQL
}

/// The statement that rewrites a key's quota windows, made once.
fn charge_quotas_sql() -> &'static str {
    static SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        format!(
            "UPDATE api_keys SET quotas = ?, version = version + 1 WHERE id = ? RETURNING {KEY_COLUMNS}"
        )
    });
    &SQL
}

/// Binds one entry's values in `writer::COLUMNS` order, from parameter `*n + 1` on.
fn bind_entry(
    stmt: &mut rusqlite::CachedStatement<'_>,
    n: &mut usize,
    e: &UsageEntry,
) -> rusqlite::Result<()> {
    let mut bind = |v: &dyn rusqlite::ToSql| {
        *n += 1;
        stmt.raw_bind_parameter(*n, v)
    };
    bind(&e.request_id)?;
    bind(&e.key_id)?;
    bind(&e.requested_model)?;
    bind(&e.served_model)?;
    bind(&e.provider)?;
    bind(&i64::from(e.attempts))?;
    bind(&clamp(e.prompt_tokens))?;
    bind(&clamp(e.completion_tokens))?;
    bind(&clamp(e.reasoning_tokens))?;
    bind(&clamp(e.cached_tokens))?;
    bind(&e.token_source.as_str())?;
    bind(&e.cost.0)?;
    bind(&e.end_reason.as_str())?;
    bind(&e.ttft_ms)?;
    bind(&e.duration_ms)?;
    bind(&i64::from(e.stream))?;
    bind(&e.started_at)?;
    bind(&e.finished_at)?;
    bind(&e.finished_at)?;
    bind(&e.hold.0)?;
    bind(&i64::from(e.over_hold))?;
    bind(&e.note.map(crate::store::ledger::BillingNote::as_str))?;
    bind(&e.upstream_status.map(i64::from))?;
    bind(&e.status.map(i64::from))?;
    bind(&e.error_text)?;
    bind(&e.request_type)?;
    bind(&clamp(e.cache_write_tokens))?;
    bind(&e.cache_saved.0)
}

/// A key's row read by rusqlite.
fn key_from_sqlite(row: &Row<'_>) -> rusqlite::Result<KeyRecord> {
    key_from_columns(|c| row.get(c), |c| row.get(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Waits for `done` to hold (checked every 10 ms), failing after a minute.
    fn eventually(what: &str, done: impl Fn() -> bool) {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while !done() {
            assert!(
                std::time::Instant::now() < deadline,
                "timed out waiting for {what}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Commits copy nothing into the database file themselves; the checkpointer thread does,
    /// while the writer runs, and both threads' connections close once the writer is gone (which
    /// empties the WAL).
    #[test]
    fn the_checkpointer_moves_committed_pages_into_the_database_and_empties_the_wal_at_the_end() {
        let dir = std::env::temp_dir().join(format!("sy-ckpt-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let db = dir.join("ledger.db");
        let wal = dir.join("ledger.db-wal");
        {
            let setup = Connection::open(&db).unwrap();
            setup.pragma_update(None, "journal_mode", "WAL").unwrap();
            setup
                .execute_batch("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
                .unwrap();
        }
        let before = std::fs::metadata(&db).unwrap().len();
        let writer = SqliteWriter::open(&db, Duration::from_millis(250)).unwrap();
        // About 60 pages: far below the 1,000 of SQLite's own automatic checkpoint.
        let (done, rx) = mpsc::channel();
        writer
            .tx
            .send(Box::new(move |conn: &mut Connection| {
                let tx = conn.transaction().unwrap();
                for i in 0..200 {
                    tx.execute(
                        "INSERT INTO t (id, v) VALUES (?, ?)",
                        params![i, "x".repeat(1000)],
                    )
                    .unwrap();
                }
                tx.commit().unwrap();
                done.send(()).unwrap();
            }))
            .unwrap();
        rx.recv().unwrap();
        assert!(
            std::fs::metadata(&wal).unwrap().len() > 0,
            "the commit went to the WAL"
        );
        eventually(
            "the checkpointer to copy the pages into the database",
            || std::fs::metadata(&db).unwrap().len() >= before + 50 * 4096,
        );
        drop(writer);
        eventually("the WAL to be emptied once the writer is gone", || {
            std::fs::metadata(&wal).map_or(true, |m| m.len() == 0)
        });
        let rows: i64 = Connection::open(&db)
            .unwrap()
            .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .unwrap();
        assert_eq!(rows, 200);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
