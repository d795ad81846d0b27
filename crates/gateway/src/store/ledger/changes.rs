//! The change feed between gateway instances sharing one PostgreSQL database: revocations,
//! top-ups, limit, allowlist and other key changes made on any instance or with the CLI reach
//! every instance at once, not at its next periodic refresh.
//!
//! A trigger (migration `0006_key_change_feed_postgres_only`) notifies channel
//! `switchyard_key_changes` with the key's id when a key is created or an operator changes it
//! (a settlement's debit is not notified). Each server process runs one listener task on a
//! connection of its own: it reads the changed rows, applies them to the in-memory accounts
//! (balances for admission) and broadcasts them as `KeyChange::Keys` to the authenticator (the
//! in-memory key map). After every (re)connection it reconciles everything, since notifications
//! sent while it was not listening are gone: it re-reads every key into the accounts and
//! broadcasts `KeyChange::Resync`, on which the authenticator does its version-diff refresh. A
//! lost connection (PostgreSQL restarted, network cut) is retried with a backoff of up to
//! `RECONNECT_MAX`; one that silently died (no reset ever arrives) is noticed because every
//! instance notifies an empty heartbeat every `HEARTBEAT` and a listener that hears nothing for
//! `SILENCE` connects again; the periodic refreshes (`auth::REFRESH_EVERY`, `accounts::REFRESH_AFTER`)
//! stay as the fallback for the time the feed is down or silently dead.
//!
//! SQLite needs no feed: one SQLite file is served by one process, whose own changes apply at
//! once; the CLI's changes arrive by the periodic refresh.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions};
use tokio::sync::broadcast;

use super::{KeyRecord, Ledger, LedgerError};

/// The channel the trigger notifies, with the key's id as the payload.
pub const CHANNEL: &str = "switchyard_key_changes";
/// The listener's `application_name`, so that operators (and tests) can tell its connection.
pub const APPLICATION_NAME: &str = "switchyard-change-feed";
/// The first wait before connecting again; doubled up to `RECONNECT_MAX` while it fails. A
/// refused connection costs the server nothing, and the short wait keeps a change made right
/// after an outage within the promised second.
const RECONNECT_MIN: Duration = Duration::from_millis(50);
const RECONNECT_MAX: Duration = Duration::from_millis(250);
/// How long one connection attempt may take (a server that does not answer at all).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How often each instance notifies the channel with an empty payload, and how long a listener
/// may hear nothing before it presumes its connection dead and connects again.
const HEARTBEAT: Duration = Duration::from_secs(5);
const SILENCE: Duration = Duration::from_secs(15);
/// Notifications read in one go before the changed rows are read.
const MAX_BATCH: usize = 256;
/// Events kept for a slow subscriber; one that falls further behind gets `Lagged` and resyncs.
pub(super) const CAPACITY: usize = 1_024;

/// What a subscriber (the authenticator) learns from the feed.
#[derive(Debug, Clone)]
pub enum KeyChange {
    /// These keys were created or changed: their rows with their stored hashes, already applied
    /// to the accounts.
    Keys(Arc<Vec<(String, KeyRecord)>>),
    /// Changes may have been missed (the feed has just (re)connected): re-read whatever is held.
    Resync,
}

/// The running listener task; it stops when this is dropped.
pub struct ChangeFeed {
    task: tokio::task::AbortHandle,
}

impl Drop for ChangeFeed {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A channel for the feed's events (one per ledger; nothing is sent on it without a feed).
pub(super) fn channel() -> broadcast::Sender<KeyChange> {
    broadcast::channel(CAPACITY).0
}

/// Connects the listener's own connection and listens on `CHANNEL`.
async fn listen(options: &PgConnectOptions) -> Result<PgListener, sqlx::Error> {
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .min_connections(0)
        .acquire_timeout(CONNECT_TIMEOUT)
        .max_lifetime(None)
        .idle_timeout(None)
        .connect_with(options.clone())
        .await?;
    let mut listener = PgListener::connect_with(&pool).await?;
    listener.ignore_pool_close_event(true);
    listener.listen(CHANNEL).await?;
    Ok(listener)
}

impl Ledger {
    /// Subscribes to the feed's events (see [`KeyChange`]).
    pub fn key_changes(&self) -> broadcast::Receiver<KeyChange> {
        self.changes.subscribe()
    }

    /// Starts listening for key changes made by any process on the PostgreSQL database at
    /// `url` (the one this ledger is connected to). `None` for SQLite, which needs no feed.
    pub fn follow_changes(&self, url: &str) -> Result<Option<ChangeFeed>, LedgerError> {
        if !(url.starts_with("postgres:") || url.starts_with("postgresql:")) {
            return Ok(None);
        }
        let options = PgConnectOptions::from_str(url)?.application_name(APPLICATION_NAME);
        let ledger = self.clone();
        let task = tokio::spawn(async move { ledger.run_feed(options).await }).abort_handle();
        Ok(Some(ChangeFeed { task }))
    }

    async fn run_feed(self, options: PgConnectOptions) {
        let mut wait = RECONNECT_MIN;
        // Logged once per outage, not once per attempt.
        let mut down = false;
        loop {
            match listen(&options).await {
                Ok(mut listener) => {
                    wait = RECONNECT_MIN;
                    if down {
                        tracing::info!("the key change feed is listening again");
                    }
                    crate::telemetry::record_change_feed(true);
                    let ended = match self.reconcile().await {
                        Ok(()) => tokio::select! {
                            ended = self.follow(&mut listener) => ended,
                            ended = self.heartbeat() => ended,
                        },
                        Err(e) => e,
                    };
                    crate::telemetry::record_change_feed(false);
                    tracing::warn!(
                        error = %ended,
                        "the key change feed lost its connection; reconnecting (changes arrive by \
                         the periodic refresh meanwhile)"
                    );
                    down = true;
                }
                Err(e) => {
                    if !down {
                        tracing::warn!(
                            error = %e,
                            "the key change feed cannot connect; retrying (changes arrive by \
                             the periodic refresh meanwhile)"
                        );
                    }
                    down = true;
                }
            }
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(RECONNECT_MAX);
        }
    }

    /// Applies notified changes until the connection fails; returns why it ended.
    async fn follow(&self, listener: &mut PgListener) -> LedgerError {
        loop {
            // A connection that hears not even the heartbeats is dead without having said so
            // (a network cut): it is dropped, so waiting on it needs no cancel safety.
            let first = match tokio::time::timeout(SILENCE, listener.try_recv()).await {
                Ok(Ok(Some(n))) => n,
                Ok(Ok(None)) => {
                    return LedgerError::Unavailable("the connection was closed".into());
                }
                Ok(Err(e)) => return e.into(),
                Err(_) => {
                    return LedgerError::Unavailable(format!(
                        "no notification, not even a heartbeat, for {SILENCE:?}"
                    ));
                }
            };
            let mut ids = vec![first.payload().to_owned()];
            while ids.len() < MAX_BATCH {
                match listener.next_buffered() {
                    Some(n) => ids.push(n.payload().to_owned()),
                    None => break,
                }
            }
            ids.sort_unstable();
            ids.dedup();
            ids.retain(|id| !id.is_empty());
            if ids.is_empty() {
                continue;
            }
            match self.keys_with_hashes_by_id(&ids).await {
                Ok(rows) => {
                    for (_, key) in &rows {
                        self.accounts.apply(key);
                    }
                    let _ = self.changes.send(KeyChange::Keys(Arc::new(rows)));
                }
                // The change is in the database but not read: start over, which reconciles.
                Err(e) => return e,
            }
        }
    }

    /// Notifies the channel with an empty payload every `HEARTBEAT` (through the pool, not the
    /// listener's connection), so that a listener that hears nothing for `SILENCE` knows its
    /// connection is dead. Ends only if the database refuses it for `SILENCE`.
    async fn heartbeat(&self) -> LedgerError {
        let mut tick = tokio::time::interval(HEARTBEAT);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_ok = tokio::time::Instant::now();
        loop {
            tick.tick().await;
            let sent = sqlx::query("SELECT pg_notify($1, '')")
                .bind(CHANNEL)
                .execute(self.pool())
                .await;
            match sent {
                Ok(_) => last_ok = tokio::time::Instant::now(),
                Err(e) if last_ok.elapsed() >= SILENCE => return e.into(),
                Err(_) => {}
            }
        }
    }

    /// Re-reads every key into the accounts held and tells subscribers to do the same.
    async fn reconcile(&self) -> Result<(), LedgerError> {
        for key in self.keys().await? {
            self.accounts.apply(&key);
        }
        let _ = self.changes.send(KeyChange::Resync);
        Ok(())
    }
}
