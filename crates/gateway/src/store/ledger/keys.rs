//! API keys as stored: never the key itself, only its hash and a display prefix, with the credit
//! balance, lifetime spend, rate limits, allowed models, budget, expiry, name and metadata.
//! Every change bumps the row's `version` and returns the new row, which the key's account
//! adopts at once.

use serde_json::{json, Value};
use sqlx::Row;

use super::periods::BudgetPeriod;
use super::{now_ms, Ledger, LedgerError, Nanos, MAX_AMOUNT};

/// A spending cap that renews every day or month (UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    pub limit: Nanos,
    pub period: BudgetPeriod,
}

/// An API key as stored.
#[derive(Debug, Clone)]
pub struct KeyRecord {
    pub id: String,
    pub name: String,
    pub prefix: String,
    pub balance: Nanos,
    /// Everything this key has been charged, ever.
    pub spent: Nanos,
    pub rpm: Option<i64>,
    pub tpm: Option<i64>,
    /// Requests open at once; `None` (or <= 0) means no limit.
    pub max_concurrent: Option<i64>,
    /// Models this key may use; `None` means all.
    pub models: Option<Vec<String>>,
    pub budget: Option<Budget>,
    /// Epoch milliseconds after which the key is refused.
    pub expires_at: Option<i64>,
    /// The caller's own JSON, kept as given.
    pub metadata: Option<Value>,
    /// The start of the period `period_spent` belongs to.
    pub period_start: Option<i64>,
    pub period_spent: Nanos,
    /// Bumped by every change to the row.
    pub version: i64,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
    /// The sum of the key's open holds in the database, whichever instance took them
    /// (`instances = "shared"`; always 0 otherwise, when holds live in each process).
    pub shared_reserved: Nanos,
    /// The key's last four characters, for the event log's masked key; `None` for keys made
    /// before they were kept.
    pub last4: Option<String>,
    /// Capture of prompt and completion text: how many hours each capture is kept; `None` is off.
    pub capture_hours: Option<i64>,
    /// Coding-plan windows and what each has used (`ledger::quotas`).
    pub quotas: Vec<super::quotas::Quota>,
}

impl KeyRecord {
    pub fn is_expired(&self, now_ms: i64) -> bool {
        self.expires_at.is_some_and(|e| e <= now_ms)
    }

    /// The period a settlement at `now_ms` counts towards (days when the key has no budget).
    pub fn period_of(&self, now_ms: i64) -> i64 {
        self.budget
            .map_or(BudgetPeriod::Day, |b| b.period)
            .start_of(now_ms)
    }

    /// What was spent in the budget period containing `now_ms`.
    pub fn period_spend(&self, now_ms: i64) -> Nanos {
        if self.period_start == Some(self.period_of(now_ms)) {
            self.period_spent
        } else {
            Nanos::ZERO
        }
    }

    /// The key as the admin API, `keys list --json` and `GET /v1/key` show it (never the key
    /// itself); money as decimal strings in USD.
    pub fn to_json(&self, reserved: Nanos) -> Value {
        let now = now_ms();
        let budget = self.budget.map(|b| {
            let spent = self.period_spend(now);
            json!({
                "limit": b.limit.to_string(),
                "period": b.period.as_str(),
                "spent": spent.to_string(),
                "remaining": Nanos(b.limit.0.saturating_sub(spent.0).max(0)).to_string(),
                "resets_at": match b.period {
                    BudgetPeriod::Day => b.period.start_of(now) + 86_400_000,
                    BudgetPeriod::Month => b.period.start_of(b.period.start_of(now) + 32 * 86_400_000),
                },
            })
        });
        json!({
            "id": self.id,
            "object": "api_key",
            "name": self.name,
            "prefix": self.prefix,
            "balance": self.balance.to_string(),
            "reserved": reserved.to_string(),
            "spend": self.spent.to_string(),
            "limits": {
                "rpm": self.rpm,
                "tpm": self.tpm,
                "max_concurrent": self.max_concurrent,
                "budget": budget,
                "quotas": self.quotas.iter().map(|q| q.to_json(now)).collect::<Vec<_>>(),
            },
            "models": self.models,
            "expires_at": self.expires_at,
            "expired": self.is_expired(now),
            "metadata": self.metadata,
            "created_at": self.created_at,
            "revoked_at": self.revoked_at,
            "revoked": self.revoked_at.is_some(),
            "capture": {
                "enabled": self.capture_hours.is_some(),
                "retention_hours": self.capture_hours,
            },
        })
    }
}

/// What a new key may do.
#[derive(Debug, Clone, Default)]
pub struct NewKey {
    pub name: String,
    pub credits: Nanos,
    pub rpm: Option<i64>,
    pub tpm: Option<i64>,
    pub max_concurrent: Option<i64>,
    pub models: Option<Vec<String>>,
    pub budget: Option<Budget>,
    pub expires_at: Option<i64>,
    pub metadata: Option<Value>,
    pub quotas: Vec<super::quotas::Quota>,
}

/// A change to a key; `None` leaves a field as it is, `Some(None)` clears it.
#[derive(Debug, Clone, Default)]
pub struct KeyUpdate {
    pub name: Option<String>,
    /// Sets the balance to this amount.
    pub set_credits: Option<Nanos>,
    /// Adds this amount to the balance (after `set_credits`).
    pub add_credits: Option<Nanos>,
    pub rpm: Option<Option<i64>>,
    pub tpm: Option<Option<i64>>,
    pub max_concurrent: Option<Option<i64>>,
    pub models: Option<Option<Vec<String>>>,
    pub budget: Option<Option<Budget>>,
    pub expires_at: Option<Option<i64>>,
    pub metadata: Option<Option<Value>>,
    /// Capture on for this many hours of retention (`Some(Some(h))`) or off (`Some(None)`).
    pub capture_hours: Option<Option<i64>>,
    /// Replaces the key's quota windows (a window of the same length keeps what it used).
    pub quotas: Option<Vec<super::quotas::Quota>>,
}

pub(super) const KEY_COLUMNS: &str =
    "id, name, key_prefix, balance_nanos, spent_nanos, rpm, tpm, models, \
     budget_nanos, budget_period, expires_at, metadata, period_start, period_spent_nanos, version, \
     created_at, revoked_at, max_concurrent, reserved_nanos, key_last4, capture_hours, quotas";

pub(super) fn key_from_row(row: &sqlx::any::AnyRow) -> Result<KeyRecord, sqlx::Error> {
    key_from_columns(|c| row.try_get(c), |c| row.try_get(c))
}

/// A key's record from its `KEY_COLUMNS`, read by name as text or integers (`None` for NULL),
/// whichever driver read the row (sqlx here, rusqlite in `sqlite_writer`).
pub(super) fn key_from_columns<E>(
    text: impl Fn(&str) -> Result<Option<String>, E>,
    int: impl Fn(&str) -> Result<Option<i64>, E>,
) -> Result<KeyRecord, E> {
    let models = text("models")?;
    let budget_nanos = int("budget_nanos")?;
    let budget_period = text("budget_period")?;
    let metadata = text("metadata")?;
    let quotas = text("quotas")?;
    Ok(KeyRecord {
        quotas: quotas
            .and_then(|q| serde_json::from_str(&q).ok())
            .unwrap_or_default(),
        id: text("id")?.unwrap_or_default(),
        name: text("name")?.unwrap_or_default(),
        prefix: text("key_prefix")?.unwrap_or_default(),
        balance: Nanos(int("balance_nanos")?.unwrap_or_default()),
        spent: Nanos(int("spent_nanos")?.unwrap_or_default()),
        rpm: int("rpm")?,
        tpm: int("tpm")?,
        max_concurrent: int("max_concurrent")?,
        shared_reserved: Nanos(int("reserved_nanos")?.unwrap_or_default()),
        models: models.map(|m| {
            m.split(',')
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect()
        }),
        budget: budget_nanos.map(|limit| Budget {
            limit: Nanos(limit),
            period: budget_period
                .as_deref()
                .and_then(BudgetPeriod::parse)
                .unwrap_or(BudgetPeriod::Month),
        }),
        expires_at: int("expires_at")?,
        metadata: metadata.and_then(|m| serde_json::from_str(&m).ok()),
        period_start: int("period_start")?,
        period_spent: Nanos(int("period_spent_nanos")?.unwrap_or_default()),
        version: int("version")?.unwrap_or_default(),
        created_at: int("created_at")?.unwrap_or_default(),
        revoked_at: int("revoked_at")?,
        last4: text("key_last4")?,
        capture_hours: int("capture_hours")?,
    })
}

fn hashed_key_from_row(row: &sqlx::any::AnyRow) -> Result<(String, KeyRecord), sqlx::Error> {
    Ok((row.try_get("key_hash")?, key_from_row(row)?))
}

fn models_text(models: &Option<Vec<String>>) -> Option<String> {
    models.as_ref().map(|m| m.join(","))
}

impl Ledger {
    pub async fn key_count(&self) -> Result<i64, LedgerError> {
        let row = sqlx::query("SELECT COUNT(*) FROM api_keys")
            .fetch_one(self.pool())
            .await?;
        Ok(row.try_get(0)?)
    }

    /// Stores a new key given its id, hash and display prefix.
    pub async fn insert_key(
        &self,
        id: &str,
        hash: &str,
        prefix: &str,
        last4: &str,
        new: &NewKey,
    ) -> Result<KeyRecord, LedgerError> {
        if new.credits.0.unsigned_abs() > MAX_AMOUNT.0.unsigned_abs() {
            return Err(LedgerError::BalanceOutOfRange);
        }
        let sql = format!(
            "INSERT INTO api_keys (id, name, key_hash, key_prefix, balance_nanos, rpm, tpm, models, \
             budget_nanos, budget_period, expires_at, metadata, created_at, max_concurrent, key_last4, \
             quotas) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16) \
             RETURNING {KEY_COLUMNS}"
        );
        let row = sqlx::query(&sql)
            .bind(id)
            .bind(&new.name)
            .bind(hash)
            .bind(prefix)
            .bind(new.credits.0)
            .bind(new.rpm)
            .bind(new.tpm)
            .bind(models_text(&new.models))
            .bind(new.budget.map(|b| b.limit.0))
            .bind(new.budget.map(|b| b.period.as_str()))
            .bind(new.expires_at)
            .bind(new.metadata.as_ref().map(Value::to_string))
            .bind(now_ms())
            .bind(new.max_concurrent)
            .bind(last4)
            .bind(super::quotas::to_column(&new.quotas))
            .fetch_one(self.pool())
            .await?;
        Ok(key_from_row(&row)?)
    }

    pub async fn key(&self, id: &str) -> Result<Option<KeyRecord>, LedgerError> {
        let sql = format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE id = $1");
        let row = sqlx::query(&sql)
            .bind(id)
            .fetch_optional(self.pool())
            .await?;
        Ok(row.as_ref().map(key_from_row).transpose()?)
    }

    /// The live (not revoked) key with this hash. Expiry is the caller's to check.
    pub async fn key_by_hash(&self, hash: &str) -> Result<Option<KeyRecord>, LedgerError> {
        let sql = format!(
            "SELECT {KEY_COLUMNS} FROM api_keys WHERE key_hash = $1 AND revoked_at IS NULL"
        );
        let row = sqlx::query(&sql)
            .bind(hash)
            .fetch_optional(self.pool())
            .await?;
        Ok(row.as_ref().map(key_from_row).transpose()?)
    }

    /// Every key (revoked ones too) with its stored hash, for the authenticator's in-memory map.
    pub async fn keys_with_hashes(&self) -> Result<Vec<(String, KeyRecord)>, LedgerError> {
        let sql = format!("SELECT key_hash, {KEY_COLUMNS} FROM api_keys");
        let rows = sqlx::query(&sql).fetch_all(self.pool()).await?;
        Ok(rows
            .iter()
            .map(hashed_key_from_row)
            .collect::<Result<_, _>>()?)
    }

    /// Each key's id and row version: the cheap listing a refresh compares against what it
    /// holds, so that only the rows that changed are read in full.
    pub async fn key_versions(&self) -> Result<Vec<(String, i64)>, LedgerError> {
        let rows = sqlx::query("SELECT id, version FROM api_keys")
            .fetch_all(self.pool())
            .await?;
        Ok(rows
            .iter()
            .map(|r| Ok((r.try_get("id")?, r.try_get("version")?)))
            .collect::<Result<_, sqlx::Error>>()?)
    }

    /// The keys with these ids (revoked ones too) with their stored hashes.
    pub async fn keys_with_hashes_by_id(
        &self,
        ids: &[String],
    ) -> Result<Vec<(String, KeyRecord)>, LedgerError> {
        let mut out = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(100) {
            let params: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
            let sql = format!(
                "SELECT key_hash, {KEY_COLUMNS} FROM api_keys WHERE id IN ({})",
                params.join(", ")
            );
            let mut query = sqlx::query(&sql);
            for id in chunk {
                query = query.bind(id);
            }
            for row in query.fetch_all(self.pool()).await? {
                out.push(hashed_key_from_row(&row)?);
            }
        }
        Ok(out)
    }

    pub async fn keys(&self) -> Result<Vec<KeyRecord>, LedgerError> {
        let sql = format!("SELECT {KEY_COLUMNS} FROM api_keys ORDER BY created_at, id");
        let rows = sqlx::query(&sql).fetch_all(self.pool()).await?;
        Ok(rows.iter().map(key_from_row).collect::<Result<_, _>>()?)
    }

    fn adopt(&self, key: Option<KeyRecord>, id: &str) -> Result<KeyRecord, LedgerError> {
        let key = key.ok_or_else(|| LedgerError::NoSuchKey(id.to_owned()))?;
        self.accounts.apply(&key);
        Ok(key)
    }

    /// Revokes a key (idempotent); the row stays for the ledger.
    pub async fn revoke_key(&self, id: &str) -> Result<KeyRecord, LedgerError> {
        let sql = format!(
            "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, $1), version = version + 1 \
             WHERE id = $2 RETURNING {KEY_COLUMNS}"
        );
        let row = sqlx::query(&sql)
            .bind(now_ms())
            .bind(id)
            .fetch_optional(self.pool())
            .await?;
        self.adopt(row.as_ref().map(key_from_row).transpose()?, id)
    }

    /// Adds `amount` (USD nanos, may be negative) to the balance.
    pub async fn top_up(&self, id: &str, amount: Nanos) -> Result<KeyRecord, LedgerError> {
        self.update_key(
            id,
            &KeyUpdate {
                add_credits: Some(amount),
                ..KeyUpdate::default()
            },
        )
        .await
    }

    /// Applies `update`. Balance changes are atomic against concurrent settlements (the
    /// statement adds to the stored balance) and checked: amounts beyond `MAX_AMOUNT`, or a
    /// balance that would end above it, are `BalanceOutOfRange` and change nothing (the check is
    /// in the statement, so no database ever computes an overflowing sum: SQLite would turn it
    /// into a REAL). The other fields are last-writer-wins. Changing the budget recomputes the
    /// current period's spend from the usage entries.
    pub async fn update_key(&self, id: &str, update: &KeyUpdate) -> Result<KeyRecord, LedgerError> {
        let in_range =
            |n: Option<Nanos>| n.is_none_or(|n| n.0.unsigned_abs() <= MAX_AMOUNT.0.unsigned_abs());
        if !in_range(update.set_credits) || !in_range(update.add_credits) {
            return Err(LedgerError::BalanceOutOfRange);
        }
        let cur = self
            .key(id)
            .await?
            .ok_or_else(|| LedgerError::NoSuchKey(id.to_owned()))?;
        let mut next = cur.clone();
        if let Some(n) = &update.name {
            next.name = n.clone();
        }
        if let Some(v) = update.rpm {
            next.rpm = v;
        }
        if let Some(v) = update.tpm {
            next.tpm = v;
        }
        if let Some(v) = update.max_concurrent {
            next.max_concurrent = v;
        }
        if let Some(v) = &update.models {
            next.models = v.clone();
        }
        if let Some(v) = update.budget {
            next.budget = v;
        }
        if let Some(v) = update.expires_at {
            next.expires_at = v;
        }
        if let Some(v) = &update.metadata {
            next.metadata = v.clone();
        }
        if let Some(v) = update.capture_hours {
            next.capture_hours = v;
        }
        if let Some(v) = &update.quotas {
            let mut q = v.clone();
            super::quotas::carry_usage(&mut q, &cur.quotas);
            next.quotas = q;
        }
        let now = now_ms();
        let period = next.period_of(now);
        let sql = format!(
            "UPDATE api_keys SET name = $1, rpm = $2, tpm = $3, models = $4, budget_nanos = $5, \
             budget_period = $6, expires_at = $7, metadata = $8, \
             balance_nanos = CASE WHEN $9 = 1 THEN $10 ELSE balance_nanos END + $11, \
             period_start = $12, \
             period_spent_nanos = (SELECT CAST(COALESCE(SUM(cost_nanos), 0) AS BIGINT) \
                 FROM usage_entries WHERE key_id = $13 AND created_at >= $14), \
             version = version + 1, max_concurrent = $17, capture_hours = $18, \
             quotas = CASE WHEN $19 = 1 THEN $20 ELSE quotas END \
             WHERE id = $15 AND (($9 = 0 AND $11 = 0) \
                 OR CASE WHEN $9 = 1 THEN $10 ELSE balance_nanos END <= $16 - $11) \
             RETURNING {KEY_COLUMNS}"
        );
        let row = sqlx::query(&sql)
            .bind(&next.name)
            .bind(next.rpm)
            .bind(next.tpm)
            .bind(models_text(&next.models))
            .bind(next.budget.map(|b| b.limit.0))
            .bind(next.budget.map(|b| b.period.as_str()))
            .bind(next.expires_at)
            .bind(next.metadata.as_ref().map(Value::to_string))
            .bind(i64::from(update.set_credits.is_some()))
            .bind(update.set_credits.unwrap_or_default().0)
            .bind(update.add_credits.unwrap_or_default().0)
            .bind(period)
            .bind(id)
            .bind(period)
            .bind(id)
            .bind(MAX_AMOUNT.0)
            .bind(next.max_concurrent)
            .bind(next.capture_hours)
            .bind(i64::from(update.quotas.is_some()))
            .bind(super::quotas::to_column(&next.quotas))
            .fetch_optional(self.pool())
            .await?;
        match row {
            Some(row) => self.adopt(Some(key_from_row(&row)?), id),
            // The key exists (read above; keys are never deleted): the guard refused the sum.
            None => Err(LedgerError::BalanceOutOfRange),
        }
    }
}
