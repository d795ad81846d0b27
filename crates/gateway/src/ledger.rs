//! Money and the database: API keys with their balances and budgets, the in-memory accounts that
//! hold money for requests in flight, and the append-only usage ledger. This module alone talks
//! SQL, through one `sqlx` Any pool that is SQLite or PostgreSQL; one conformance suite
//! (`tests/integration/ledger_conformance.rs`) runs against both.
//!
//! Every statement is written once in portable SQL with `$n` placeholders, which both backends
//! accept; money columns are integer nano-USD. A settlement writes the usage entry and the
//! balance change in one transaction and returns the key's new row, which the key's account
//! adopts (see `accounts`).

pub mod accounts;
mod entries;
mod keys;
pub mod periods;
pub mod prices;
pub mod responses;

use std::str::FromStr;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::AnyPool;

pub use accounts::{Account, AccountView, Accounts, Hold, HoldRefused};
pub use entries::{RequestQuery, UsageEntryRow, UsageGroup, UsageQuery};
pub use keys::{Budget, KeyRecord, KeyUpdate, NewKey};
pub use periods::BudgetPeriod;
pub use prices::{Cost, Nanos, Prices};

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("database migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("no key with id {0}")]
    NoSuchKey(String),
}

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// How a request ended, as the ledger records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    Stop,
    Length,
    ToolCalls,
    ContentFilter,
    Error,
    Cancelled,
    UpstreamTimeout,
}

impl EndReason {
    pub fn as_str(self) -> &'static str {
        match self {
            EndReason::Stop => "stop",
            EndReason::Length => "length",
            EndReason::ToolCalls => "tool_calls",
            EndReason::ContentFilter => "content_filter",
            EndReason::Error => "error",
            EndReason::Cancelled => "cancelled",
            EndReason::UpstreamTimeout => "upstream_timeout",
        }
    }

    /// From an OpenAI finish reason.
    pub fn from_finish(reason: &str) -> EndReason {
        match reason {
            "length" => EndReason::Length,
            "tool_calls" | "function_call" => EndReason::ToolCalls,
            "content_filter" => EndReason::ContentFilter,
            _ => EndReason::Stop,
        }
    }
}

/// Where token counts came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenSource {
    ProviderReported,
    Estimated,
}

impl TokenSource {
    pub fn as_str(self) -> &'static str {
        match self {
            TokenSource::ProviderReported => "provider_reported",
            TokenSource::Estimated => "estimated",
        }
    }
}

/// One append-only ledger row. Never holds prompt or completion text.
#[derive(Debug, Clone)]
pub struct UsageEntry {
    pub request_id: String,
    pub key_id: String,
    pub requested_model: String,
    pub served_model: Option<String>,
    pub provider: Option<String>,
    pub attempts: u32,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub reasoning_tokens: u64,
    pub cached_tokens: u64,
    pub token_source: TokenSource,
    pub cost: Nanos,
    pub end_reason: EndReason,
    pub ttft_ms: Option<i64>,
    pub duration_ms: i64,
    pub stream: bool,
    /// Epoch milliseconds when the request arrived.
    pub started_at: i64,
    /// Epoch milliseconds when it ended; also the entry's time in reports and budgets.
    pub finished_at: i64,
}

/// How usage is grouped in a report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupBy {
    Key,
    Model,
    Day,
}

impl GroupBy {
    pub fn parse(s: &str) -> Option<GroupBy> {
        match s {
            "key" => Some(GroupBy::Key),
            "model" => Some(GroupBy::Model),
            "day" => Some(GroupBy::Day),
            _ => None,
        }
    }
}

/// The database behind keys and usage, with the accounts of the keys in use.
#[derive(Clone)]
pub struct Ledger {
    pool: AnyPool,
    accounts: Arc<Accounts>,
    /// Bumped after every committed settlement, for whoever waits for an entry.
    settled: Arc<tokio::sync::watch::Sender<u64>>,
}

impl Ledger {
    /// Connects to `sqlite://FILE` (created if missing) or `postgres://…` and runs the migrations.
    pub async fn connect(url: &str) -> Result<Ledger, LedgerError> {
        sqlx::any::install_default_drivers();
        let sqlite = url.starts_with("sqlite:");
        let url = if sqlite && !url.contains("mode=") && !url.contains(":memory:") {
            let sep = if url.contains('?') { '&' } else { '?' };
            format!("{url}{sep}mode=rwc")
        } else {
            url.to_owned()
        };
        let options = AnyConnectOptions::from_str(&url)?;
        let pool = AnyPoolOptions::new()
            .max_connections(if sqlite { 4 } else { 16 })
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if sqlite {
                        sqlx::query("PRAGMA busy_timeout = 10000")
                            .execute(&mut *conn)
                            .await?;
                        // WAL + NORMAL: a commit survives a crash of the process (kill -9);
                        // only a power loss can take the last commits.
                        sqlx::query("PRAGMA synchronous = NORMAL")
                            .execute(&mut *conn)
                            .await?;
                    }
                    Ok(())
                })
            })
            .connect_with(options)
            .await?;
        if sqlite {
            sqlx::query("PRAGMA journal_mode = WAL")
                .execute(&pool)
                .await?;
        }
        MIGRATOR.run(&pool).await?;
        Ok(Ledger {
            pool,
            accounts: Arc::new(Accounts::default()),
            settled: Arc::new(tokio::sync::watch::channel(0).0),
        })
    }

    /// Whether the database answers.
    pub async fn ping(&self) -> bool {
        sqlx::query("SELECT 1").execute(&self.pool).await.is_ok()
    }

    /// Closes the pool (tests drop their databases after this).
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// The account of `key_id`, loaded from the database on first use and re-read in the
    /// background when it is older than `accounts::REFRESH_AFTER`. The hot path only locks.
    pub async fn account(&self, key_id: &str) -> Result<Arc<Account>, LedgerError> {
        if let Some(a) = self.accounts.get(key_id) {
            if a.claim_refresh() {
                let ledger = self.clone();
                let (id, account) = (key_id.to_owned(), a.clone());
                tokio::spawn(async move {
                    let fresh = ledger.key(&id).await.ok().flatten();
                    account.refreshed(fresh.as_ref());
                });
            }
            return Ok(a);
        }
        let key = self
            .key(key_id)
            .await?
            .ok_or_else(|| LedgerError::NoSuchKey(key_id.to_owned()))?;
        Ok(self.accounts.insert(key))
    }

    /// What the key's account shows now (balance as settled, open holds), read fresh.
    pub async fn account_view(&self, key_id: &str) -> Result<AccountView, LedgerError> {
        let key = self
            .key(key_id)
            .await?
            .ok_or_else(|| LedgerError::NoSuchKey(key_id.to_owned()))?;
        match self.accounts.get(key_id) {
            Some(a) => {
                a.apply(&key);
                let mut view = a.view();
                view.key = key;
                Ok(view)
            }
            None => Ok(AccountView {
                key,
                reserved: Nanos::ZERO,
            }),
        }
    }

    /// The money held for requests in flight on `key_id` in this process.
    pub fn account_reserved(&self, key_id: &str) -> Option<Nanos> {
        self.accounts.get(key_id).map(|a| a.view().reserved)
    }

    /// Waits until the entry of `request_id` is committed, up to `within`.
    pub async fn wait_for_entry(
        &self,
        request_id: &str,
        within: std::time::Duration,
    ) -> Result<Option<UsageEntryRow>, LedgerError> {
        let mut rx = self.settled.subscribe();
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Some(e) = self.entry(request_id).await? {
                return Ok(Some(e));
            }
            if tokio::time::timeout_at(deadline, rx.changed())
                .await
                .is_err()
            {
                return self.entry(request_id).await;
            }
        }
    }
}
