//! Money and the database: API keys with their balances, and the append-only usage ledger.
//! This module alone talks SQL, through one `sqlx` Any pool that is SQLite or PostgreSQL.
//!
//! Every statement is written once in portable SQL with `$n` placeholders, which both backends
//! accept; money columns are integer nano-USD.

pub mod prices;

use std::str::FromStr;
use std::time::{SystemTime, UNIX_EPOCH};

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, Row};

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

/// An API key as stored (never the key itself: only its hash and a display prefix).
#[derive(Debug, Clone)]
pub struct KeyRecord {
    pub id: String,
    pub name: String,
    pub prefix: String,
    pub balance: Nanos,
    pub spent: Nanos,
    pub rpm: Option<i64>,
    pub tpm: Option<i64>,
    /// Models this key may use; `None` means all.
    pub models: Option<Vec<String>>,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
}

/// What a new key may do.
#[derive(Debug, Clone, Default)]
pub struct NewKey {
    pub name: String,
    pub credits: Nanos,
    pub rpm: Option<i64>,
    pub tpm: Option<i64>,
    pub models: Option<Vec<String>>,
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
    pub created_at: i64,
}

/// One row of a usage report.
#[derive(Debug, Clone, serde::Serialize)]
pub struct UsageGroup {
    pub group: String,
    pub requests: i64,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    #[serde(serialize_with = "as_usd")]
    pub cost: Nanos,
}

fn as_usd<S: serde::Serializer>(n: &Nanos, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&n.to_string())
}

/// How usage is grouped in a report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupBy {
    Key,
    Model,
    Day,
}

/// The database behind keys and usage.
#[derive(Clone)]
pub struct Ledger {
    pool: AnyPool,
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
        Ok(Ledger { pool })
    }

    /// Whether the database answers.
    pub async fn ping(&self) -> bool {
        sqlx::query("SELECT 1").execute(&self.pool).await.is_ok()
    }

    pub async fn key_count(&self) -> Result<i64, LedgerError> {
        let row = sqlx::query("SELECT COUNT(*) FROM api_keys")
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get(0)?)
    }

    /// Stores a new key given its id, hash and display prefix.
    pub async fn insert_key(
        &self,
        id: &str,
        hash: &str,
        prefix: &str,
        new: &NewKey,
    ) -> Result<KeyRecord, LedgerError> {
        let now = now_ms();
        let models = new.models.as_ref().map(|m| m.join(","));
        sqlx::query(
            "INSERT INTO api_keys (id, name, key_hash, key_prefix, balance_nanos, rpm, tpm, models, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(id)
        .bind(&new.name)
        .bind(hash)
        .bind(prefix)
        .bind(new.credits.0)
        .bind(new.rpm)
        .bind(new.tpm)
        .bind(models)
        .bind(now)
        .execute(&self.pool)
        .await?;
        self.key(id)
            .await?
            .ok_or_else(|| LedgerError::NoSuchKey(id.to_owned()))
    }

    const KEY_COLUMNS: &'static str = "id, name, key_prefix, balance_nanos, spent_nanos, rpm, tpm, models, created_at, revoked_at";

    fn key_from_row(row: &sqlx::any::AnyRow) -> Result<KeyRecord, sqlx::Error> {
        let models: Option<String> = row.try_get("models")?;
        Ok(KeyRecord {
            id: row.try_get("id")?,
            name: row.try_get("name")?,
            prefix: row.try_get("key_prefix")?,
            balance: Nanos(row.try_get("balance_nanos")?),
            spent: Nanos(row.try_get("spent_nanos")?),
            rpm: row.try_get("rpm")?,
            tpm: row.try_get("tpm")?,
            models: models.map(|m| m.split(',').map(str::to_owned).collect()),
            created_at: row.try_get("created_at")?,
            revoked_at: row.try_get("revoked_at")?,
        })
    }

    pub async fn key(&self, id: &str) -> Result<Option<KeyRecord>, LedgerError> {
        let sql = format!("SELECT {} FROM api_keys WHERE id = $1", Self::KEY_COLUMNS);
        let row = sqlx::query(&sql)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.as_ref().map(Self::key_from_row).transpose()?)
    }

    /// The live (not revoked) key with this hash.
    pub async fn key_by_hash(&self, hash: &str) -> Result<Option<KeyRecord>, LedgerError> {
        let sql = format!(
            "SELECT {} FROM api_keys WHERE key_hash = $1 AND revoked_at IS NULL",
            Self::KEY_COLUMNS
        );
        let row = sqlx::query(&sql)
            .bind(hash)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.as_ref().map(Self::key_from_row).transpose()?)
    }

    pub async fn keys(&self) -> Result<Vec<KeyRecord>, LedgerError> {
        let sql = format!(
            "SELECT {} FROM api_keys ORDER BY created_at, id",
            Self::KEY_COLUMNS
        );
        let rows = sqlx::query(&sql).fetch_all(&self.pool).await?;
        Ok(rows
            .iter()
            .map(Self::key_from_row)
            .collect::<Result<_, _>>()?)
    }

    pub async fn revoke_key(&self, id: &str) -> Result<(), LedgerError> {
        let done =
            sqlx::query("UPDATE api_keys SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
                .bind(now_ms())
                .bind(id)
                .execute(&self.pool)
                .await?;
        if done.rows_affected() == 0 && self.key(id).await?.is_none() {
            return Err(LedgerError::NoSuchKey(id.to_owned()));
        }
        Ok(())
    }

    pub async fn top_up(&self, id: &str, amount: Nanos) -> Result<KeyRecord, LedgerError> {
        let done =
            sqlx::query("UPDATE api_keys SET balance_nanos = balance_nanos + $1 WHERE id = $2")
                .bind(amount.0)
                .bind(id)
                .execute(&self.pool)
                .await?;
        if done.rows_affected() == 0 {
            return Err(LedgerError::NoSuchKey(id.to_owned()));
        }
        self.key(id)
            .await?
            .ok_or_else(|| LedgerError::NoSuchKey(id.to_owned()))
    }

    /// Appends the usage entry and debits its cost from the key, in one transaction. A second
    /// entry for the same request id is refused by the primary key, so a request is charged once.
    pub async fn record(&self, e: &UsageEntry) -> Result<(), LedgerError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO usage_entries (request_id, key_id, requested_model, served_model, provider, attempts, \
             prompt_tokens, completion_tokens, reasoning_tokens, cached_tokens, token_source, cost_nanos, \
             end_reason, ttft_ms, duration_ms, stream, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)",
        )
        .bind(&e.request_id)
        .bind(&e.key_id)
        .bind(&e.requested_model)
        .bind(&e.served_model)
        .bind(&e.provider)
        .bind(e.attempts as i64)
        .bind(e.prompt_tokens as i64)
        .bind(e.completion_tokens as i64)
        .bind(e.reasoning_tokens as i64)
        .bind(e.cached_tokens as i64)
        .bind(e.token_source.as_str())
        .bind(e.cost.0)
        .bind(e.end_reason.as_str())
        .bind(e.ttft_ms)
        .bind(e.duration_ms)
        .bind(e.stream as i64)
        .bind(e.created_at)
        .execute(&mut *tx)
        .await?;
        if e.cost.0 != 0 {
            sqlx::query(
                "UPDATE api_keys SET balance_nanos = balance_nanos - $1, spent_nanos = spent_nanos + $2 WHERE id = $3",
            )
            .bind(e.cost.0)
            .bind(e.cost.0)
            .bind(&e.key_id)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// The ledger rows of one request (normally one), for reports and tests.
    pub async fn entry(&self, request_id: &str) -> Result<Option<UsageEntryRow>, LedgerError> {
        let row = sqlx::query(
            "SELECT request_id, key_id, requested_model, served_model, provider, attempts, prompt_tokens, \
             completion_tokens, reasoning_tokens, cached_tokens, token_source, cost_nanos, end_reason, stream \
             FROM usage_entries WHERE request_id = $1",
        )
        .bind(request_id)
        .fetch_optional(&self.pool)
        .await?;
        let Some(r) = row else { return Ok(None) };
        Ok(Some(UsageEntryRow {
            request_id: r.try_get("request_id")?,
            key_id: r.try_get("key_id")?,
            requested_model: r.try_get("requested_model")?,
            served_model: r.try_get("served_model")?,
            provider: r.try_get("provider")?,
            attempts: r.try_get("attempts")?,
            prompt_tokens: r.try_get("prompt_tokens")?,
            completion_tokens: r.try_get("completion_tokens")?,
            reasoning_tokens: r.try_get("reasoning_tokens")?,
            cached_tokens: r.try_get("cached_tokens")?,
            token_source: r.try_get("token_source")?,
            cost: Nanos(r.try_get("cost_nanos")?),
            end_reason: r.try_get("end_reason")?,
            stream: r.try_get::<i64, _>("stream")? != 0,
        }))
    }

    /// Spend and tokens since `since_ms`, grouped, optionally for one key.
    pub async fn usage_report(
        &self,
        group_by: GroupBy,
        since_ms: i64,
        key_id: Option<&str>,
    ) -> Result<Vec<UsageGroup>, LedgerError> {
        let group = match group_by {
            GroupBy::Key => "key_id",
            GroupBy::Model => "requested_model",
            // Days as yyyy-mm-dd are formatted in Rust below from the day number.
            GroupBy::Day => "(created_at / 86400000)",
        };
        let sql = format!(
            "SELECT CAST({group} AS TEXT) AS g, COUNT(*) AS n, CAST(SUM(prompt_tokens) AS BIGINT) AS p, \
             CAST(SUM(completion_tokens) AS BIGINT) AS c, CAST(SUM(cost_nanos) AS BIGINT) AS cost \
             FROM usage_entries WHERE created_at >= $1 AND ($2 = '' OR key_id = $3) \
             GROUP BY {group} ORDER BY {group}"
        );
        let key = key_id.unwrap_or("");
        let rows = sqlx::query(&sql)
            .bind(since_ms)
            .bind(key)
            .bind(key)
            .fetch_all(&self.pool)
            .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let g: String = r.try_get("g")?;
            let group = match group_by {
                GroupBy::Day => day_name(g.parse().unwrap_or(0)),
                _ => g,
            };
            out.push(UsageGroup {
                group,
                requests: r.try_get("n")?,
                prompt_tokens: r.try_get("p")?,
                completion_tokens: r.try_get("c")?,
                cost: Nanos(r.try_get("cost")?),
            });
        }
        Ok(out)
    }
}

/// A stored usage entry, read back.
#[derive(Debug, Clone, serde::Serialize)]
pub struct UsageEntryRow {
    pub request_id: String,
    pub key_id: String,
    pub requested_model: String,
    pub served_model: Option<String>,
    pub provider: Option<String>,
    pub attempts: i64,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    pub reasoning_tokens: i64,
    pub cached_tokens: i64,
    pub token_source: String,
    #[serde(serialize_with = "as_usd")]
    pub cost: Nanos,
    pub end_reason: String,
    pub stream: bool,
}

/// `yyyy-mm-dd` for a day number since the epoch (civil-from-days, proleptic Gregorian).
fn day_name(days: i64) -> String {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn day_names() {
        assert_eq!(day_name(0), "1970-01-01");
        assert_eq!(day_name(20_780), "2026-11-23");
    }
}
