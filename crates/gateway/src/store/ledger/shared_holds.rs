//! Shared holds, for several instances on one PostgreSQL database (`instances = "shared"`): the
//! hold of every request in flight, whichever instance admitted it, is a row of `holds`, and the
//! key's `reserved_nanos` is their sum. Admission is one transaction: the key's row is locked
//! (`SELECT … FOR UPDATE`, a statement of its own), then one statement, a conditional
//! `UPDATE api_keys … WHERE balance ≥ reserved + amount [AND the budget and quota windows allow
//! it]` chained to the `INSERT INTO holds`, so concurrent admissions from any number of instances
//! see each other's holds: the open holds never exceed the balance, the budget or a window (the
//! request and token windows count hold rows, which a single statement that waited for the row
//! lock would read from its older snapshot: measured, 8 admitted on a 7-request window across two
//! instances under load). The ledger writer deletes a batch's hold rows and lowers `reserved_nanos` in the same
//! transaction that inserts the entries and debits the keys (`writer::write_batch`).
//!
//! Holds are leased: each row names the instance that took it and expires `LEASE` after its last
//! renewal, by PostgreSQL's clock (`db_now_ms!`), never an instance's: an instance whose clock runs
//! ahead cannot free the live holds of the others, nor one whose clock lags keep dead ones (the
//! concurrency slots in Redis likewise expire by Redis's `TIME`). Every instance renews its own
//! rows every `RENEW_EVERY`, however long their requests live, and releases every expired row
//! (of any instance), so the holds of an instance that died and never came back are freed within
//! `LEASE`. An instance that restarts frees its own at once: its journal replay writes an
//! `interrupted` entry per request it had admitted, which releases the hold like any settlement.
//!
//! Hold statements run on connections of their own with `synchronous_commit = off`: a hold's
//! commit does not wait for the WAL flush. Measured on one key (`scripts/measure_shared_holds`,
//! 8 clients): about 20,000 admissions/s, p50 0.2 ms, instead of about 900/s, p50 5 ms, with
//! every hold flushed (every admission on a key queues behind the previous one's flush). What it
//! costs: if the PostgreSQL server itself crashes, the holds committed in its last fraction of a
//! second (at most 3 × `wal_writer_delay`, 600 ms by default) are lost, so the requests they
//! covered are no longer reserved and the key can be over-committed by them once. Settlements
//! stay synchronous (the writer's own connection): no money that was debited is ever lost.
//!
//! When PostgreSQL does not answer within `HOLD_TIMEOUT`, admission fails (the caller gets a
//! 503): no instance admits against money it cannot see. For `REFUSE_FOR` after such a failure
//! admissions are refused at once; then the next one asks again, so service resumes by itself. A hold statement that may have gone
//! through after the timeout is released in the background.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sqlx::{AnyPool, Row};

use super::{now_ms, BudgetPeriod, Nanos};

/// How long a hold outlives its instance's last renewal.
pub(crate) const LEASE: Duration = Duration::from_secs(60);
/// How often an instance renews its holds and releases expired ones.
pub(crate) const RENEW_EVERY: Duration = Duration::from_secs(15);
/// How long admission waits for PostgreSQL before refusing with a 503.
pub(crate) const HOLD_TIMEOUT: Duration = Duration::from_secs(2);
/// After a hold failed for want of PostgreSQL, new admissions are refused at once for this long
/// (then the next one tries again), so that callers get their 503 without waiting.
pub(crate) const REFUSE_FOR: Duration = Duration::from_millis(500);

/// The database's clock in epoch milliseconds (SQL): every lease is written and expired by it.
macro_rules! db_now_ms {
    () => {
        "CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)"
    };
}

/// The shared holds of this instance.
#[derive(Clone, Debug)]
pub(crate) struct SharedHolds {
    pool: AnyPool,
    instance: Arc<str>,
    /// Epoch ms until which admissions are refused without asking PostgreSQL.
    down_until: Arc<AtomicI64>,
    /// Rows whose release failed a few times: each renewal tries them again (this instance renews
    /// all its rows, so they would never expire by themselves while it runs).
    abandoned: Arc<std::sync::Mutex<Vec<String>>>,
    /// The runtime releases run on, also when a hold is dropped on a thread of its own (the
    /// journal's).
    rt: tokio::runtime::Handle,
}

/// What a shared hold attempt found.
pub(crate) enum Taken {
    /// Held: the row's lease (the caller makes it a `Hold` of `amount`).
    Held(Lease),
    /// The balance or budget cannot cover it (or the key is gone): the caller reads the key to
    /// say which.
    Refused,
    /// PostgreSQL did not answer in time or failed.
    Unavailable,
}

impl SharedHolds {
    pub(crate) fn new(pool: AnyPool) -> SharedHolds {
        let instance = format!("{}-{:016x}", std::process::id(), rand::random::<u64>());
        SharedHolds {
            pool,
            instance: instance.into(),
            down_until: Arc::default(),
            abandoned: Arc::default(),
            rt: tokio::runtime::Handle::current(),
        }
    }

    pub(crate) async fn close(&self) {
        self.pool.close().await;
    }

    fn abandoned(&self) -> std::sync::MutexGuard<'_, Vec<String>> {
        self.abandoned.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Holds `amount` on `key_id` for `request_id` if the key's balance, less every open hold of
    /// every instance, covers it and so does its budget for the period containing `now`.
    pub(crate) async fn take(
        &self,
        key_id: &str,
        request_id: &str,
        amount: Nanos,
        tokens: i64,
        now: i64,
    ) -> Taken {
        if now < self.down_until.load(Ordering::Relaxed) {
            return Taken::Unavailable;
        }
        let taken = self.try_take(key_id, request_id, amount, tokens, now).await;
        if matches!(taken, Taken::Unavailable) {
            self.down_until.store(
                now_ms().saturating_add(REFUSE_FOR.as_millis() as i64),
                Ordering::Relaxed,
            );
        }
        taken
    }

    async fn try_take(
        &self,
        key_id: &str,
        request_id: &str,
        amount: Nanos,
        tokens: i64,
        now: i64,
    ) -> Taken {
        // The quota windows (`ledger::quotas`, JSON on the row) are checked in the same
        // statement: the key row's lock serialises every instance's admissions, so the holds
        // counted here are every open hold of the key.
        const SQL: &str = concat!(
            "WITH k AS (UPDATE api_keys SET reserved_nanos = reserved_nanos + $1 \
             WHERE id = $2 AND balance_nanos >= reserved_nanos + $1 \
             AND (budget_nanos IS NULL OR \
                  (CASE WHEN period_start = (CASE WHEN budget_period = 'month' THEN $3 ELSE $4 END) \
                   THEN period_spent_nanos ELSE 0 END) + reserved_nanos + $1 <= budget_nanos) \
             AND NOT EXISTS (SELECT 1 FROM jsonb_array_elements(COALESCE(quotas, '[]')::jsonb) q \
                 WHERE ((q->>'usd_nanos') IS NOT NULL AND (CASE WHEN (q->>'started_at') IS NOT NULL \
                        AND (q->>'started_at')::bigint + (q->>'window_ms')::bigint > $9 \
                        THEN (q->>'used_nanos')::bigint ELSE 0 END) + reserved_nanos + $1 \
                        > (q->>'usd_nanos')::bigint) \
                 OR ((q->>'requests') IS NOT NULL AND (CASE WHEN (q->>'started_at') IS NOT NULL \
                        AND (q->>'started_at')::bigint + (q->>'window_ms')::bigint > $9 \
                        THEN (q->>'used_requests')::bigint ELSE 0 END) \
                        + (SELECT COUNT(*) FROM holds h WHERE h.key_id = $2) + 1 \
                        > (q->>'requests')::bigint) \
                 OR ((q->>'tokens') IS NOT NULL AND (CASE WHEN (q->>'started_at') IS NOT NULL \
                        AND (q->>'started_at')::bigint + (q->>'window_ms')::bigint > $9 \
                        THEN (q->>'used_tokens')::bigint ELSE 0 END) \
                        + (SELECT COALESCE(SUM(h.tokens), 0) FROM holds h WHERE h.key_id = $2) + $8 \
                        > (q->>'tokens')::bigint)) \
             RETURNING id) \
             INSERT INTO holds (request_id, key_id, amount_nanos, instance_id, expires_at, tokens) \
             SELECT $5, id, $1, $6, ",
            db_now_ms!(),
            " + $7, $8 FROM k RETURNING request_id"
        );
        // The key's row is locked first, in a statement of its own: the check then runs on a
        // snapshot taken after every admission ahead of it on this key committed, so the holds it
        // counts for the request and token windows are all of them. (In one statement, PostgreSQL
        // re-checks a row it waited for against its new version, but a subquery still reads the
        // statement's older snapshot: two instances could each miss the other's hold.)
        let pool = &self.pool;
        let query = async move {
            let mut tx = pool.begin().await?;
            sqlx::query("SELECT id FROM api_keys WHERE id = $1 FOR UPDATE")
                .bind(key_id)
                .execute(&mut *tx)
                .await?;
            let row = sqlx::query(SQL)
                .bind(amount.0)
                .bind(key_id)
                .bind(BudgetPeriod::Month.start_of(now))
                .bind(BudgetPeriod::Day.start_of(now))
                .bind(request_id)
                .bind(&*self.instance)
                .bind(LEASE.as_millis() as i64)
                .bind(tokens)
                .bind(now)
                .fetch_optional(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok::<_, sqlx::Error>(row)
        };
        match tokio::time::timeout(HOLD_TIMEOUT, query).await {
            Ok(Ok(Some(_))) => Taken::Held(Lease {
                holds: self.clone(),
                request_id: request_id.to_owned(),
                armed: true,
            }),
            Ok(Ok(None)) => Taken::Refused,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "shared hold failed; refusing the request");
                Taken::Unavailable
            }
            Err(_) => {
                // The statement may still commit: make sure its hold does not stay.
                Lease {
                    holds: self.clone(),
                    request_id: request_id.to_owned(),
                    armed: true,
                }
                .release_soon();
                Taken::Unavailable
            }
        }
    }

    /// How many holds `key_id` has open, and the tokens they hold.
    pub(crate) async fn open_holds(&self, key_id: &str) -> Option<(i64, i64)> {
        sqlx::query_as::<_, (i64, i64)>(
            "SELECT COUNT(*), CAST(COALESCE(SUM(tokens), 0) AS BIGINT) FROM holds WHERE key_id = $1",
        )
        .bind(key_id)
        .fetch_one(&self.pool)
        .await
        .ok()
    }

    /// Deletes the hold of `request_id`, if any, and lowers its key's `reserved_nanos`.
    /// Idempotent: a second release finds no row.
    async fn release(&self, request_id: &str) -> Result<(), sqlx::Error> {
        sqlx::query(
            "WITH d AS (DELETE FROM holds WHERE request_id = $1 RETURNING key_id, amount_nanos) \
             UPDATE api_keys SET reserved_nanos = GREATEST(reserved_nanos - d.amount_nanos, 0) \
             FROM d WHERE api_keys.id = d.key_id",
        )
        .bind(request_id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Renews this instance's holds, then releases every expired hold, both by the database's
    /// clock.
    pub(crate) async fn renew_and_sweep(&self) -> Result<u64, sqlx::Error> {
        let abandoned = std::mem::take(&mut *self.abandoned());
        for id in abandoned {
            if self.release(&id).await.is_err() {
                self.abandoned().push(id);
            }
        }
        sqlx::query(concat!(
            "UPDATE holds SET expires_at = ",
            db_now_ms!(),
            " + $1 WHERE instance_id = $2"
        ))
        .bind(LEASE.as_millis() as i64)
        .bind(&*self.instance)
        .execute(&self.pool)
        .await?;
        let swept = sqlx::query(concat!(
            "WITH d AS (DELETE FROM holds WHERE expires_at < ",
            db_now_ms!(),
            " RETURNING key_id, amount_nanos), \
             s AS (SELECT key_id, CAST(SUM(amount_nanos) AS BIGINT) AS amount FROM d GROUP BY key_id) \
             UPDATE api_keys SET reserved_nanos = GREATEST(reserved_nanos - s.amount, 0) \
             FROM s WHERE api_keys.id = s.key_id"
        ))
        .execute(&self.pool)
        .await?;
        Ok(swept.rows_affected())
    }

    /// Keeps this instance's leases alive for as long as the process runs (the first sweep is
    /// the caller's, before serving).
    pub(crate) fn keep_leases(&self) {
        let holds = self.clone();
        tokio::spawn(renew_every(RENEW_EVERY, move || {
            let holds = holds.clone();
            async move {
                match holds.renew_and_sweep().await {
                    Ok(0) => {}
                    Ok(keys) => {
                        tracing::warn!(keys, "released expired holds of an instance that stopped")
                    }
                    Err(e) => tracing::warn!(error = %e, "renewing the shared holds failed"),
                }
            }
        }));
    }
}

/// Runs `renew` every `every`, the first time `every` from now, for as long as the task lives. A
/// renewal that takes longer than `every` is followed by the next at once, then the cadence
/// resumes from there (no burst of missed renewals).
async fn renew_every<F, Fut>(every: Duration, mut renew: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        renew().await;
    }
}

/// One request's row in `holds`, released when dropped unless the ledger writer released it
/// with the settlement (`disarm`).
#[derive(Debug)]
pub(crate) struct Lease {
    holds: SharedHolds,
    request_id: String,
    armed: bool,
}

impl Lease {
    /// The settlement (committed, or waiting in the journal for its replay) releases the row.
    pub(crate) fn disarm(&mut self) {
        self.armed = false;
    }

    /// The settlement that was to release the row will not (the journal refused it): the row
    /// goes when the lease is dropped.
    pub(crate) fn rearm(&mut self) {
        self.armed = true;
    }

    fn release_soon(mut self) {
        self.armed = false;
        let (holds, id) = (self.holds.clone(), std::mem::take(&mut self.request_id));
        let rt = holds.rt.clone();
        rt.spawn(async move {
            // A few tries, then each renewal tries again until it goes.
            let mut pause = Duration::from_millis(100);
            for _ in 0..8 {
                if holds.release(&id).await.is_ok() {
                    return;
                }
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(5));
            }
            holds.abandoned().push(id);
        });
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if self.armed {
            let lease = Lease {
                holds: self.holds.clone(),
                request_id: std::mem::take(&mut self.request_id),
                armed: true,
            };
            self.armed = false;
            lease.release_soon();
        }
    }
}

/// Deletes the hold rows of `request_ids` in the writer's transaction; returns what they held
/// per key, for the key updates of the same transaction.
pub(super) async fn release_in(
    conn: &mut sqlx::AnyConnection,
    request_ids: &[&str],
) -> Result<BTreeMap<String, i64>, sqlx::Error> {
    let mut released: BTreeMap<String, i64> = BTreeMap::new();
    for chunk in request_ids.chunks(256) {
        let mut sql = String::from("DELETE FROM holds WHERE request_id IN (");
        for i in 1..=chunk.len() {
            if i > 1 {
                sql.push_str(", ");
            }
            sql.push('$');
            sql.push_str(&i.to_string());
        }
        sql.push_str(") RETURNING key_id, amount_nanos");
        let mut q = sqlx::query(&sql);
        for id in chunk {
            q = q.bind(*id);
        }
        for row in q.fetch_all(&mut *conn).await? {
            let key: String = row.try_get(0)?;
            let amount: i64 = row.try_get(1)?;
            let r = released.entry(key).or_default();
            *r = r.saturating_add(amount);
        }
    }
    Ok(released)
}

#[cfg(test)]
mod tests {
    //! The lease renewal's clock under paused time (the leases themselves are written and expired
    //! by PostgreSQL's clock, which the integration tests cover).

    use std::sync::{Arc, Mutex};

    use tokio::time::Instant;

    use super::*;

    /// Renews every `RENEW_EVERY` for `run`, the first renewals taking `takes` (the others no
    /// time); returns when each renewal started (from the start).
    async fn renewals(takes: &[Duration], run: Duration) -> Vec<Duration> {
        let start = Instant::now();
        let log = Arc::new(Mutex::new(Vec::new()));
        let seen = log.clone();
        let takes = takes.to_vec();
        let task = tokio::spawn(renew_every(RENEW_EVERY, move || {
            let mut seen = seen.lock().unwrap();
            let takes = takes.get(seen.len()).copied().unwrap_or_default();
            seen.push(start.elapsed());
            tokio::time::sleep(takes)
        }));
        tokio::time::sleep(run).await;
        task.abort();
        let log = log.lock().unwrap().clone();
        log
    }

    #[tokio::test(start_paused = true)]
    async fn the_holds_are_renewed_every_renew_every_many_times_within_a_lease() {
        // A hold outlives three missed renewals: a stalled instance or a slow database costs no
        // live request its hold.
        assert!(RENEW_EVERY * 3 < LEASE);
        let s = Duration::from_secs;
        // The first renewal one interval after the start (the caller swept at the start), each
        // at the exact instant it is due.
        assert!(renewals(&[], s(15) - Duration::from_millis(1))
            .await
            .is_empty());
        assert_eq!(renewals(&[], s(61)).await, [s(15), s(30), s(45), s(60)]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_renewal_slower_than_its_interval_is_followed_at_once_without_a_burst() {
        let s = Duration::from_secs;
        // The first renewal takes 40 s (two intervals and more): the next starts as it ends, and
        // the cadence goes on from there instead of catching up on the two it missed.
        assert_eq!(
            renewals(&[s(40)], s(86)).await,
            [s(15), s(55), s(70), s(85)]
        );
    }
}
