//! Captured prompt and completion text (`request_captures`), for keys whose capture an operator
//! turned on: written already redacted and truncated by `crate::capture`, read back only by the
//! admin (`GET /admin/requests/{id}`), deleted on request, when the key's capture is turned off,
//! and once expired (`Captures::purge`, with the clock as a parameter).

use sqlx::Row;

use super::{Store, StoreError};

/// One request's capture, as stored.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Capture {
    pub request_id: String,
    pub key_id: String,
    /// Epoch milliseconds.
    pub created_at: i64,
    pub expires_at: i64,
    /// The request's messages as the client sent them (JSON text), redacted.
    pub request: String,
    /// The text delivered to the client (content, reasoning, tool calls), redacted.
    pub completion: String,
    /// Either text was cut at `[capture] max_bytes`.
    pub truncated: bool,
}

/// The stored captures, on the database's shared pool. Cheap to clone.
#[derive(Clone)]
pub struct Captures {
    store: Store,
}

impl Captures {
    pub(super) fn new(store: Store) -> Captures {
        Captures { store }
    }

    /// Stores a capture unless the key's capture has been turned off meanwhile (a request
    /// admitted before is not captured after); a second one for the same request id is ignored.
    pub async fn insert(&self, c: &Capture) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO request_captures (request_id, key_id, created_at, expires_at, \
             request_text, completion_text, truncated) \
             SELECT $1, $2, $3, $4, $5, $6, $7 FROM api_keys \
             WHERE id = $2 AND capture_hours IS NOT NULL \
             ON CONFLICT (request_id) DO NOTHING",
        )
        .bind(&c.request_id)
        .bind(&c.key_id)
        .bind(c.created_at)
        .bind(c.expires_at)
        .bind(&c.request)
        .bind(&c.completion)
        .bind(i64::from(c.truncated))
        .execute(self.store.pool())
        .await?;
        Ok(())
    }

    /// The capture of one request, if there is one.
    pub async fn get(&self, request_id: &str) -> Result<Option<Capture>, StoreError> {
        let row = sqlx::query(
            "SELECT request_id, key_id, created_at, expires_at, request_text, completion_text, \
             truncated FROM request_captures WHERE request_id = $1",
        )
        .bind(request_id)
        .fetch_optional(self.store.pool())
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        Ok(Some(Capture {
            request_id: row.try_get("request_id")?,
            key_id: row.try_get("key_id")?,
            created_at: row.try_get("created_at")?,
            expires_at: row.try_get("expires_at")?,
            request: row.try_get("request_text")?,
            completion: row.try_get("completion_text")?,
            truncated: row.try_get::<i64, _>("truncated")? != 0,
        }))
    }

    /// Deletes one request's capture; true when there was one.
    pub async fn delete(&self, request_id: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM request_captures WHERE request_id = $1")
            .bind(request_id)
            .execute(self.store.pool())
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Deletes every capture of a key; how many there were.
    pub async fn delete_of_key(&self, key_id: &str) -> Result<u64, StoreError> {
        let done = sqlx::query("DELETE FROM request_captures WHERE key_id = $1")
            .bind(key_id)
            .execute(self.store.pool())
            .await?;
        Ok(done.rows_affected())
    }

    /// Deletes the captures expired at `now_ms`, and any older than `max_age_ms` whatever their
    /// own retention said (the configured maximum may have been lowered); how many.
    pub async fn purge(&self, now_ms: i64, max_age_ms: i64) -> Result<u64, StoreError> {
        let done =
            sqlx::query("DELETE FROM request_captures WHERE expires_at <= $1 OR created_at <= $2")
                .bind(now_ms)
                .bind(now_ms.saturating_sub(max_age_ms))
                .execute(self.store.pool())
                .await?;
        Ok(done.rows_affected())
    }

    /// How many captures are stored (for tests and operators).
    pub async fn count(&self) -> Result<i64, StoreError> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM request_captures")
            .fetch_one(self.store.pool())
            .await?;
        Ok(row.try_get("n")?)
    }
}
