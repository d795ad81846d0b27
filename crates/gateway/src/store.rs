//! The database: one `sqlx` Any pool that is SQLite or PostgreSQL, its connection options, the
//! migrations and the dialect. This module alone talks SQL. Its parts are the ledger (money: keys,
//! balances, holds, usage entries and the writer that settles them, `ledger`), stored Responses
//! (`responses`) and captured prompt text (`captures`); one conformance suite
//! (`tests/integration/ledger_conformance.rs`) runs the ledger against both backends.
//!
//! Every statement is written once in portable SQL with `$n` placeholders, which both backends
//! accept. Migrations are portable too, except those named `…_postgres_only` (the key change
//! feed's triggers, see `ledger::changes`), which SQLite skips.

pub(crate) mod captures;
pub mod ledger;
pub(crate) mod responses;

use std::str::FromStr;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::AnyPool;

pub use captures::{Capture, Captures};
pub use responses::{Responses, StoredResponse};

/// Why the database could not be opened or did not answer.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("database migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// Every connection to `sqlite::memory:` is a database of its own: the ledger's writer would
    /// write where no table exists and every request would fail.
    #[error("an in-memory SQLite database cannot be shared by the ledger's connections; use a file (sqlite://switchyard.db)")]
    InMemorySqlite,
}

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Migrations whose name ends like this are PostgreSQL's only (triggers for the change feed);
/// SQLite skips them.
const POSTGRES_ONLY: &str = "postgres only";

/// The migrations of one backend, in order.
#[derive(Debug)]
struct Migrations(Vec<sqlx::migrate::Migration>);

impl sqlx::migrate::MigrationSource<'static> for Migrations {
    fn resolve(
        self,
    ) -> futures_util::future::BoxFuture<
        'static,
        Result<Vec<sqlx::migrate::Migration>, sqlx::error::BoxDynError>,
    > {
        Box::pin(std::future::ready(Ok(self.0)))
    }
}

/// The migrator for SQLite (`sqlite`) or PostgreSQL.
async fn migrator(sqlite: bool) -> Result<sqlx::migrate::Migrator, StoreError> {
    let own = MIGRATOR
        .iter()
        .filter(|m| !(sqlite && m.description.ends_with(POSTGRES_ONLY)))
        .cloned()
        .collect();
    Ok(sqlx::migrate::Migrator::new(Migrations(own)).await?)
}

/// Pool options for `max` connections; SQLite connections wait `busy_ms` for a lock and use WAL
/// with `synchronous = NORMAL` (a commit survives a crash of the process, `kill -9`; only a power
/// loss can take the last commits).
fn pool_options(sqlite: bool, max: u32, busy_ms: u32) -> AnyPoolOptions {
    AnyPoolOptions::new()
        .max_connections(max)
        .after_connect(move |conn, _| {
            Box::pin(async move {
                if sqlite {
                    sqlx::query(&format!("PRAGMA busy_timeout = {busy_ms}"))
                        .execute(&mut *conn)
                        .await?;
                    // Deleted rows (stored conversations, captures) are overwritten with zeros.
                    sqlx::query("PRAGMA secure_delete = ON")
                        .execute(&mut *conn)
                        .await?;
                    sqlx::query("PRAGMA synchronous = NORMAL")
                        .execute(&mut *conn)
                        .await?;
                }
                Ok(())
            })
        })
}

/// The open database: its shared pool, migrated. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    /// The URL the pool was opened with (`mode=rwc` added for a SQLite file).
    url: String,
    options: AnyConnectOptions,
}

impl Store {
    /// Connects to `sqlite://FILE` (created if missing) or `postgres://…` and runs the migrations.
    pub async fn open(url: &str) -> Result<Store, StoreError> {
        sqlx::any::install_default_drivers();
        let sqlite = url.starts_with("sqlite:");
        if sqlite && url.contains(":memory:") {
            return Err(StoreError::InMemorySqlite);
        }
        let url = if sqlite && !url.contains("mode=") {
            let sep = if url.contains('?') { '&' } else { '?' };
            format!("{url}{sep}mode=rwc")
        } else {
            url.to_owned()
        };
        let options = AnyConnectOptions::from_str(&url)?;
        let pool = pool_options(sqlite, if sqlite { 4 } else { 16 }, 10_000)
            .connect_with(options.clone())
            .await?;
        if sqlite {
            sqlx::query("PRAGMA journal_mode = WAL")
                .execute(&pool)
                .await?;
        }
        migrator(sqlite).await?.run(&pool).await?;
        Ok(Store { pool, url, options })
    }

    /// Whether the database is SQLite (some statements differ).
    fn is_sqlite(&self) -> bool {
        self.url.starts_with("sqlite:")
    }

    /// The shared pool, for the parts' statements.
    fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// A pool of its own on the same database, with `max` connections that wait `busy_ms` for a
    /// SQLite lock (the ledger's writer keeps one so its batches never queue behind reads).
    fn own_pool(&self, max: u32, busy_ms: u32) -> AnyPoolOptions {
        pool_options(self.is_sqlite(), max, busy_ms)
    }

    /// Stored Responses (`GET /v1/responses/{id}`, `previous_response_id`).
    pub fn responses(&self) -> Responses {
        Responses::new(self.clone())
    }

    /// Captured prompt and completion text of the keys whose capture is on.
    pub fn captures(&self) -> Captures {
        Captures::new(self.clone())
    }

    /// Whether the database answers.
    pub async fn ping(&self) -> bool {
        sqlx::query("SELECT 1").execute(&self.pool).await.is_ok()
    }

    /// SQLite: moves the WAL's pages into the database file and empties it, so deleted rows
    /// (zeroed there by `secure_delete`) leave no copy behind in the WAL. Best effort.
    async fn checkpoint_wal(&self) {
        if self.is_sqlite() {
            let _ = sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
                .execute(&self.pool)
                .await;
        }
    }
}
