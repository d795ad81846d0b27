//! Money: API keys with their balances and budgets, the in-memory accounts that hold money for
//! requests in flight, the append-only usage ledger, and the writer and journal that settle it.
//! One part of the database (`crate::store`), on its pool.
//!
//! Money columns are integer nano-USD. A settlement writes the usage entry and the balance change
//! in one transaction and returns the key's new row, which the key's account adopts (see
//! `accounts`).

pub(crate) mod accounts;
pub mod changes;
mod entries;
pub mod journal;
mod keys;
pub mod periods;
pub(crate) mod prices;
pub mod quotas;
pub(crate) mod shared_holds;
pub mod writer;

use std::str::FromStr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sqlx::any::AnyPoolOptions;
use sqlx::AnyPool;
use switchyard_wire::finish::FinishReason;
use tokio::sync::{mpsc, oneshot};

pub use accounts::{Account, AccountView, Accounts, Hold, HoldRefused};
pub use changes::{ChangeFeed, KeyChange};
pub use entries::{
    hit_ratio, latency_bucket, masked_key, RequestQuery, UsageEntryRow, UsageGroup, UsageQuery,
};
pub use keys::{Budget, KeyRecord, KeyUpdate, NewKey};
pub use periods::BudgetPeriod;
pub use prices::{
    parse_usd, AmountError, AmountRule, CacheRatios, Cost, Nanos, Prices, MAX_AMOUNT, MAX_USD,
};
pub use writer::Durable;

use super::{Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("database migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("no key with id {0}")]
    NoSuchKey(String),
    /// A balance change that would take the balance past `MAX_AMOUNT` (nothing was changed).
    #[error("the balance would be more than {} USD", prices::MAX_USD)]
    BalanceOutOfRange,
    #[error("the database did not commit in time")]
    Timeout,
    #[error("settlement journal: {0}")]
    Journal(std::io::Error),
    #[error(transparent)]
    JournalOpen(#[from] journal::JournalError),
    #[error("the ledger writer has stopped")]
    WriterGone,
    /// A read that another request made on this one's behalf failed.
    #[error("database: {0}")]
    Unavailable(String),
    #[error("{0}")]
    Shared(Arc<LedgerError>),
    #[error("instances = \"shared\" needs a PostgreSQL database (postgres://…)")]
    SharedNeedsPostgres,
    /// See `StoreError::InMemorySqlite`.
    #[error("an in-memory SQLite database cannot be shared by the ledger's connections; use a file (sqlite://switchyard.db)")]
    InMemorySqlite,
}

impl From<StoreError> for LedgerError {
    fn from(e: StoreError) -> LedgerError {
        match e {
            StoreError::Db(e) => LedgerError::Db(e),
            StoreError::Migrate(e) => LedgerError::Migrate(e),
            StoreError::InMemorySqlite => LedgerError::InMemorySqlite,
        }
    }
}

pub use crate::clock::now_ms;

/// Keys start with this, so that they are recognisable in a leaked file or a secret scanner.
pub const KEY_PREFIX: &str = "sk-sy-";

/// How a request ended, as the ledger records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EndReason {
    Stop,
    Length,
    ToolCalls,
    ContentFilter,
    Error,
    Cancelled,
    UpstreamTimeout,
    /// Found in flight after a crash; billed to its last checkpoint.
    Interrupted,
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
            EndReason::Interrupted => "interrupted",
        }
    }

    /// The reason `as_str` names, as the ledger stores it.
    pub fn parse(text: &str) -> Option<EndReason> {
        [
            EndReason::Stop,
            EndReason::Length,
            EndReason::ToolCalls,
            EndReason::ContentFilter,
            EndReason::Error,
            EndReason::Cancelled,
            EndReason::UpstreamTimeout,
            EndReason::Interrupted,
        ]
        .into_iter()
        .find(|r| r.as_str() == text)
    }
}

/// How the upstream ended an answer it finished; a legacy `function_call` is a tool call.
impl From<FinishReason> for EndReason {
    fn from(reason: FinishReason) -> EndReason {
        match reason {
            FinishReason::Stop => EndReason::Stop,
            FinishReason::Length => EndReason::Length,
            FinishReason::ToolCalls | FinishReason::FunctionCall => EndReason::ToolCalls,
            FinishReason::ContentFilter => EndReason::ContentFilter,
        }
    }
}

impl PartialEq<&str> for EndReason {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl std::fmt::Display for EndReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where token counts came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
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

/// How an entry's tokens were arrived at, when that is not the plain case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BillingNote {
    /// Cancelled after the upstream accepted it but before any visible token: the prompt (and any
    /// reasoning the upstream reported) is billed.
    PromptOnly,
    /// Found in flight after a crash: billed to its last progress checkpoint.
    Checkpoint,
    /// Found in flight after a crash before its first checkpoint: nothing is known to bill.
    NoCheckpoint,
}

impl BillingNote {
    pub fn as_str(self) -> &'static str {
        match self {
            BillingNote::PromptOnly => "prompt_only",
            BillingNote::Checkpoint => "checkpoint",
            BillingNote::NoCheckpoint => "no_checkpoint",
        }
    }
}

/// One append-only ledger row. Never holds prompt or completion text.
#[derive(Debug, Clone, Serialize, Deserialize)]
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
    /// Prompt tokens written to the provider's cache (both lifetimes).
    #[serde(default)]
    pub cache_write_tokens: u64,
    /// What the prompt cache saved against the whole prompt at the input price.
    #[serde(default)]
    pub cache_saved: Nanos,
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
    /// The money held for it at admission.
    #[serde(default)]
    pub hold: Nanos,
    /// The upstream reported more than the hold covered; the excess was billed all the same.
    #[serde(default)]
    pub over_hold: bool,
    #[serde(default)]
    pub note: Option<BillingNote>,
    /// The status of the last upstream answer (200 when served, the provider's error status when
    /// it failed or refused), for operators; `None` without an answer (connection, timeout).
    #[serde(default)]
    pub upstream_status: Option<u16>,
    /// The HTTP status its client got (200 once a stream began, whatever came after).
    #[serde(default)]
    pub status: Option<u16>,
    /// The error's own text when it failed (the upstream's or the gateway's), secrets masked and
    /// at most `ERROR_TEXT_MAX` characters.
    #[serde(default)]
    pub error_text: Option<String>,
    /// What the serving route's dialect could not carry and the translation left out (e.g.
    /// `tools.4:web_search`); for the event log, not a database column.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dropped: Vec<String>,
    /// The request's spend tags (`relay::tags`), kept in `usage_entry_tags`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// `chat`, `chat.stream`, `responses`, `responses.stream`, `messages`, `messages.stream` or `embeddings`.
    #[serde(default)]
    pub request_type: Option<String>,
}

/// The most characters of an error's text an entry keeps.
pub const ERROR_TEXT_MAX: usize = 500;

/// `text` with its secrets masked, cut to `ERROR_TEXT_MAX` characters.
pub fn error_text(text: &str) -> String {
    let masked = crate::redact::mask(text);
    match masked.char_indices().nth(ERROR_TEXT_MAX) {
        Some((i, _)) => format!("{}…", &masked[..i]),
        None => masked.into_owned(),
    }
}

/// How usage is grouped in a report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupBy {
    Key,
    Model,
    Day,
    /// Spend tags: an entry with several tags counts under each; untagged entries under none.
    Tag,
}

impl GroupBy {
    pub fn parse(s: &str) -> Option<GroupBy> {
        match s {
            "key" => Some(GroupBy::Key),
            "model" => Some(GroupBy::Model),
            "day" => Some(GroupBy::Day),
            "tag" => Some(GroupBy::Tag),
            _ => None,
        }
    }
}

/// The database behind keys and usage, with the accounts of the keys in use.
#[derive(Clone)]
pub struct Ledger {
    /// The database, whose shared pool the ledger's reads and operator writes use.
    store: Store,
    /// The writer's own connection (see `writer`).
    writer_pool: AnyPool,
    accounts: Arc<Accounts>,
    /// Bumped after every committed settlement, for whoever waits for an entry.
    settled: Arc<tokio::sync::watch::Sender<u64>>,
    writer: mpsc::Sender<writer::Msg>,
    journal: Option<journal::Journal>,
    /// Key changes made by any process, when a change feed runs (see `changes`).
    changes: tokio::sync::broadcast::Sender<KeyChange>,
    /// Several instances share their holds through the database (`shared_holds`).
    shared: Option<shared_holds::SharedHolds>,
    /// Whether a whole answer waits for its entry to be durable.
    durability: Durability,
}

/// When a whole (non-streamed) answer may leave, relative to its ledger entry (`durability`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// Once its entry is durable: committed, or fsync'd in the journal (the default).
    #[default]
    Durable,
    /// At once: the entry is handed to the writer and committed with its next batch, within a few
    /// milliseconds (at most `writer::JOURNAL_AFTER` plus a journal fsync when the database is
    /// down). A process killed inside that window bills the request from its admission record in
    /// the journal (`interrupted`, its prompt), as any request in flight at a crash.
    Batched,
}

/// Whether this process is the only one admitting against its database's keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Instances {
    /// Holds in this process's memory (no database round trip at admission).
    #[default]
    Single,
    /// Holds in PostgreSQL, shared by every instance (`shared_holds`).
    Shared,
}

/// Why a hold could not be taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HoldError {
    Balance,
    /// The budget of this period cannot cover it.
    Budget(BudgetPeriod),
    /// A quota window (`5h`) is full until `resets_at` (epoch ms).
    Quota {
        window: String,
        resets_at: Option<i64>,
    },
    NoSuchKey,
    /// The database did not answer (only shared holds, or a key's first load).
    Unavailable,
}

/// Room in the writer's queue for one settlement, taken before the request gives up its
/// admission (see `Ledger::settle_slot`).
pub struct SettleSlot(mpsc::OwnedPermit<writer::Msg>);

/// A settlement handed to the writer; `durable` waits for its commit (or journal write).
pub struct PendingSettlement(oneshot::Receiver<Result<Durable, Arc<LedgerError>>>);

impl SettleSlot {
    /// Hands the entry to the writer. From here on nothing can cancel its write.
    pub fn send(self, entry: UsageEntry, hold: Option<Hold>) -> PendingSettlement {
        let (tx, rx) = oneshot::channel();
        self.0.send(writer::Msg::Settle(writer::Job {
            entry,
            hold,
            reply: Some(tx),
        }));
        PendingSettlement(rx)
    }
}

impl SettleSlot {
    /// Hands the entry to the writer without waiting for it to be durable.
    pub fn send_queued(self, entry: UsageEntry, hold: Option<Hold>) {
        self.0.send(writer::Msg::Settle(writer::Job {
            entry,
            hold,
            reply: None,
        }));
    }
}

impl PendingSettlement {
    /// Waits until the entry is durable: committed to the database, or fsync'd in the journal.
    pub async fn durable(self) -> Result<Durable, LedgerError> {
        match self.0.await {
            Ok(Ok(d)) => Ok(d),
            Ok(Err(e)) => Err(LedgerError::Shared(e)),
            Err(_) => Err(LedgerError::WriterGone),
        }
    }
}

impl Ledger {
    /// The ledger's reads and operator writes go through the database's shared pool.
    fn pool(&self) -> &AnyPool {
        self.store.pool()
    }

    /// The database this ledger is a part of.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Connects to `sqlite://FILE` (created if missing) or `postgres://…` and runs the migrations.
    pub async fn connect(url: &str) -> Result<Ledger, LedgerError> {
        Ledger::open(url, None, Instances::Single).await
    }

    /// `connect` or `connect_with_journal`, with holds kept as `instances` says (`Shared` needs
    /// PostgreSQL).
    pub async fn connect_with(
        url: &str,
        journal: Option<&std::path::Path>,
        instances: Instances,
    ) -> Result<Ledger, LedgerError> {
        Ledger::open(url, journal, instances).await
    }

    /// `connect`, with a settlement journal at `journal` (see `journal`): what it holds from a
    /// previous run (journaled settlements, requests interrupted by a crash) is written into the
    /// database before this returns, so no hold survives a restart.
    pub async fn connect_with_journal(
        url: &str,
        journal: &std::path::Path,
    ) -> Result<Ledger, LedgerError> {
        Ledger::open(url, Some(journal), Instances::Single).await
    }

    async fn open(
        url: &str,
        journal_path: Option<&std::path::Path>,
        instances: Instances,
    ) -> Result<Ledger, LedgerError> {
        let store = Store::open(url).await?;
        let sqlite = store.is_sqlite();
        if instances == Instances::Shared && sqlite {
            return Err(LedgerError::SharedNeedsPostgres);
        }
        let shared = if instances == Instances::Shared {
            // Holds have their own connections, whose commits do not wait for the WAL flush
            // (`shared_holds`: 20 times the admissions per second on one key).
            // Four are kept open from the start, so a first burst does not wait for connections
            // (the hold's 2 s timeout includes that wait).
            let holds_pool = AnyPoolOptions::new()
                .max_connections(16)
                .min_connections(4)
                .acquire_timeout(shared_holds::HOLD_TIMEOUT)
                .after_connect(|conn, _| {
                    Box::pin(async move {
                        sqlx::query("SET synchronous_commit = off")
                            .execute(&mut *conn)
                            .await?;
                        Ok(())
                    })
                })
                .connect_with(store.options.clone())
                .await?;
            Some(shared_holds::SharedHolds::new(holds_pool))
        } else {
            None
        };
        // The writer's own connection gives up on a locked SQLite file quickly, so a batch that
        // cannot be written goes to the journal instead of waiting.
        let writer_pool = store
            .own_pool(1, 250)
            .acquire_timeout(writer::JOURNAL_AFTER)
            // A failed commit is retried anyway; a ping before every batch would cost a round trip.
            .test_before_acquire(false)
            .connect_with(store.options.clone())
            .await?;
        let accounts = Arc::new(Accounts::default());
        let settled = Arc::new(tokio::sync::watch::channel(0).0);
        let journal = match journal_path {
            Some(path) => {
                let (open, recovered) = journal::Journal::open(path)?;
                let entries: Vec<&UsageEntry> = recovered.entries().collect();
                if !entries.is_empty() {
                    for chunk in entries.chunks(writer::MAX_BATCH) {
                        writer::write_batch(&writer_pool, chunk, shared.is_some()).await?;
                    }
                    tracing::info!(
                        settled = recovered.settled.len(),
                        interrupted = recovered.interrupted.len(),
                        "settlement journal replayed into the ledger"
                    );
                }
                Some(open.start()?)
            }
            None => None,
        };
        let (tx, rx) = mpsc::channel(writer::QUEUE);
        let sqlite_writer = if sqlite {
            let file = sqlx::sqlite::SqliteConnectOptions::from_str(&store.url)?
                .get_filename()
                .to_owned();
            Some(
                writer::SqliteWriter::open(&file, std::time::Duration::from_millis(250))
                    .map_err(|e| LedgerError::Db(sqlx::Error::Io(std::io::Error::other(e))))?,
            )
        } else {
            None
        };
        tokio::spawn(
            writer::WriterTask {
                pool: writer_pool.clone(),
                accounts: accounts.clone(),
                journal: journal.clone(),
                settled: settled.clone(),
                down: Default::default(),
                shared: shared.is_some(),
                sqlite: sqlite_writer,
            }
            .run(rx),
        );
        if let Some(s) = &shared {
            // Holds whose instance vanished are freed before this one admits anything.
            match s.renew_and_sweep().await {
                Ok(0) => {}
                Ok(keys) => {
                    tracing::warn!(keys, "released expired holds of an instance that stopped")
                }
                Err(e) => tracing::warn!(error = %e, "releasing expired shared holds failed"),
            }
            s.keep_leases();
        }
        Ok(Ledger {
            shared,
            durability: Durability::Durable,
            store,
            writer_pool,
            accounts,
            settled,
            writer: tx,
            journal,
            changes: changes::channel(),
        })
    }

    /// Whether the database answers.
    pub async fn ping(&self) -> bool {
        self.store.ping().await
    }

    /// Closes the pools (tests drop their databases after this).
    pub async fn close(&self) {
        if let Some(s) = &self.shared {
            s.close().await;
        }
        self.pool().close().await;
        self.writer_pool.close().await;
    }

    /// Room in the writer's queue for one settlement; waits while the queue is full. Taking the
    /// slot before giving up anything makes the hand-off cancel-safe: a caller dropped while
    /// waiting here still owns its entry.
    pub async fn settle_slot(&self) -> Result<SettleSlot, LedgerError> {
        self.writer
            .clone()
            .reserve_owned()
            .await
            .map(SettleSlot)
            .map_err(|_| LedgerError::WriterGone)
    }

    /// This ledger with `durability` for the settlements made through it.
    pub fn with_durability(mut self, durability: Durability) -> Ledger {
        self.durability = durability;
        self
    }

    /// When a whole answer may leave (`Durability`).
    pub fn durability(&self) -> Durability {
        self.durability
    }

    /// Hands an entry to the writer without waiting for it (a request dropped mid-way).
    pub fn settle_detached(&self, entry: UsageEntry, hold: Option<Hold>) {
        let job = writer::Msg::Settle(writer::Job {
            entry,
            hold,
            reply: None,
        });
        if let Err(mpsc::error::TrySendError::Full(job)) = self.writer.try_send(job) {
            let tx = self.writer.clone();
            tokio::spawn(async move {
                let _ = tx.send(job).await;
            });
        }
    }

    /// Waits until every settlement handed to the writer before this call is durable.
    pub async fn flush(&self) {
        let (tx, rx) = oneshot::channel();
        if self.writer.send(writer::Msg::Flush(tx)).await.is_ok() {
            let _ = rx.await;
        }
    }

    /// Stops taking settlements: waits until everything queued for the writer is durable, then
    /// closes the journal (its file lock is released). For a graceful shutdown, and for tests
    /// that restart a ledger on the same files.
    pub async fn shutdown(&self) {
        self.flush().await;
        if let Some(j) = &self.journal {
            j.stop().await;
        }
        self.close().await;
    }

    /// The settlement journal, when this ledger has one (the server does; the CLI does not).
    pub fn journal(&self) -> Option<&journal::Journal> {
        self.journal.as_ref()
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

    /// Holds `amount` on `key_id` for `request_id`: in this process's account of the key, or, with
    /// shared holds, in the database, against the holds of every instance.
    pub async fn hold(
        &self,
        key_id: &str,
        request_id: &str,
        amount: Nanos,
        tokens: i64,
        now: i64,
    ) -> Result<Hold, HoldError> {
        let Some(shared) = &self.shared else {
            let account = self.account(key_id).await.map_err(|e| match e {
                LedgerError::NoSuchKey(_) => HoldError::NoSuchKey,
                _ => HoldError::Unavailable,
            })?;
            return account.try_hold(amount, tokens, now).map_err(|r| match r {
                HoldRefused::Balance => HoldError::Balance,
                HoldRefused::Quota { window, resets_at } => HoldError::Quota { window, resets_at },
                HoldRefused::Budget => HoldError::Budget(
                    account
                        .view()
                        .key
                        .budget
                        .map_or(BudgetPeriod::Day, |b| b.period),
                ),
            });
        };
        match shared.take(key_id, request_id, amount, tokens, now).await {
            shared_holds::Taken::Held(lease) => Ok(accounts::Hold::shared(amount, lease)),
            shared_holds::Taken::Unavailable => Err(HoldError::Unavailable),
            shared_holds::Taken::Refused => {
                // Say which limit refused it, from the row as it is now.
                let key = self.key(key_id).await.map_err(|_| HoldError::Unavailable)?;
                let Some(key) = key else {
                    return Err(HoldError::NoSuchKey);
                };
                // The row carries the sum of every instance's holds (`reserved_nanos`); the
                // open holds' count and tokens are read beside it.
                let (requests, tokens_held) = if key.quotas.is_empty() {
                    (0, 0)
                } else {
                    shared.open_holds(key_id).await.unwrap_or((0, 0))
                };
                let held = quotas::InFlight {
                    nanos: key.shared_reserved.0,
                    requests,
                    tokens: tokens_held,
                };
                if let Some((window, resets_at)) =
                    quotas::refusing(&key.quotas, now, held, amount.0, tokens)
                {
                    if key.balance.0.saturating_sub(key.shared_reserved.0) >= amount.0 {
                        return Err(HoldError::Quota { window, resets_at });
                    }
                }
                match key.budget {
                    Some(b) if key.balance.0.saturating_sub(key.shared_reserved.0) >= amount.0 => {
                        Err(HoldError::Budget(b.period))
                    }
                    _ => Err(HoldError::Balance),
                }
            }
        }
    }

    /// Whether holds are shared between instances through the database.
    pub fn shares_holds(&self) -> bool {
        self.shared.is_some()
    }

    /// What the key's account shows now (balance as settled, open holds), read fresh.
    pub async fn account_view(&self, key_id: &str) -> Result<AccountView, LedgerError> {
        let key = self
            .key(key_id)
            .await?
            .ok_or_else(|| LedgerError::NoSuchKey(key_id.to_owned()))?;
        if self.shared.is_some() {
            let reserved = key.shared_reserved;
            return Ok(AccountView { key, reserved });
        }
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
