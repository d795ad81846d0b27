//! Stored Responses API objects: the final Response a key created (served again by
//! `GET /v1/responses/{id}`), its input items (`GET /v1/responses/{id}/input_items`) and the chat
//! conversation behind it (continued by a later request's `previous_response_id`). A stored
//! response is only ever read back, or deleted (`DELETE /v1/responses/{id}`), for the key that
//! created it; for any other key it does not exist. One older than the retention (`[responses]`)
//! is not served and is purged (`Responses::purge`); an operator lists and deletes a key's stored
//! responses (`/admin/keys/{id}/responses`). Deleted rows do not linger in the file: SQLite runs
//! with `secure_delete` and the WAL is checkpointed after a purge.

use serde_json::Value;
use sqlx::Row;

use super::{Store, StoreError};
use crate::clock::now_ms;

/// One stored response.
#[derive(Debug, Clone)]
pub struct StoredResponse {
    /// `resp_…`
    pub id: String,
    pub key_id: String,
    pub model: String,
    /// `completed`, `incomplete` or `failed`.
    pub status: String,
    /// The Response object as the client saw it last.
    pub response: Value,
    /// The chat messages a follow-up turn starts from (see `switchyard_wire::responses::conversation_after`).
    pub conversation: Vec<Value>,
    /// The request's `input` as Responses items, each with an id (empty for responses stored
    /// before migration 0012).
    pub input_items: Vec<Value>,
}

/// The stored responses, on the database's shared pool. Cheap to clone.
#[derive(Clone)]
pub struct Responses {
    store: Store,
}

impl Responses {
    pub(super) fn new(store: Store) -> Responses {
        Responses { store }
    }

    /// Stores a finished response. Storing the same id twice keeps the first.
    pub async fn put(&self, r: &StoredResponse) -> Result<(), StoreError> {
        let response = serde_json::to_string(&r.response).unwrap_or_else(|_| "{}".into());
        let conversation = serde_json::to_string(&r.conversation).unwrap_or_else(|_| "[]".into());
        let input_items = serde_json::to_string(&r.input_items).unwrap_or_else(|_| "[]".into());
        sqlx::query(
            "INSERT INTO responses \
             (id, key_id, model, status, response, conversation, created_at, input_items) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (id) DO NOTHING",
        )
        .bind(&r.id)
        .bind(&r.key_id)
        .bind(&r.model)
        .bind(&r.status)
        .bind(response)
        .bind(conversation)
        .bind(now_ms())
        .bind(input_items)
        .execute(self.store.pool())
        .await?;
        Ok(())
    }

    /// The response `id` if `key_id` created it at `not_before` (epoch ms) or later; `None` for
    /// an unknown id, another key's response or one past the retention.
    pub async fn get(
        &self,
        id: &str,
        key_id: &str,
        not_before: i64,
    ) -> Result<Option<StoredResponse>, StoreError> {
        let row = sqlx::query(
            "SELECT id, key_id, model, status, response, conversation, input_items \
             FROM responses WHERE id = $1 AND key_id = $2 AND created_at >= $3",
        )
        .bind(id)
        .bind(key_id)
        .bind(not_before)
        .fetch_optional(self.store.pool())
        .await?;
        let Some(row) = row else { return Ok(None) };
        let response: String = row.try_get("response")?;
        let conversation: String = row.try_get("conversation")?;
        let input_items: Option<String> = row.try_get("input_items")?;
        Ok(Some(StoredResponse {
            id: row.try_get("id")?,
            key_id: row.try_get("key_id")?,
            model: row.try_get("model")?,
            status: row.try_get("status")?,
            response: serde_json::from_str(&response).unwrap_or(Value::Null),
            conversation: serde_json::from_str(&conversation).unwrap_or_default(),
            input_items: input_items
                .and_then(|t| serde_json::from_str(&t).ok())
                .unwrap_or_default(),
        }))
    }

    /// Deletes the response `id` if `key_id` created it; `false` for an unknown id or another
    /// key's response (nothing is deleted then).
    pub async fn delete(&self, id: &str, key_id: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM responses WHERE id = $1 AND key_id = $2")
            .bind(id)
            .bind(key_id)
            .execute(self.store.pool())
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// The stored responses of `key_id`, newest first: (id, model, status, created_at).
    pub async fn of_key(
        &self,
        key_id: &str,
    ) -> Result<Vec<(String, String, String, i64)>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, model, status, created_at FROM responses WHERE key_id = $1 \
             ORDER BY created_at DESC, id",
        )
        .bind(key_id)
        .fetch_all(self.store.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get("id")?,
                    r.try_get("model")?,
                    r.try_get("status")?,
                    r.try_get("created_at")?,
                ))
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(StoreError::from)
    }

    /// Deletes every stored response of `key_id`; how many there were.
    pub async fn delete_of_key(&self, key_id: &str) -> Result<u64, StoreError> {
        let done = sqlx::query("DELETE FROM responses WHERE key_id = $1")
            .bind(key_id)
            .execute(self.store.pool())
            .await?;
        self.store.checkpoint_wal().await;
        Ok(done.rows_affected())
    }

    /// Deletes the responses stored before `before` (epoch ms); how many there were.
    pub async fn purge(&self, before: i64) -> Result<u64, StoreError> {
        let done = sqlx::query("DELETE FROM responses WHERE created_at < $1")
            .bind(before)
            .execute(self.store.pool())
            .await?;
        if done.rows_affected() > 0 {
            self.store.checkpoint_wal().await;
        }
        Ok(done.rows_affected())
    }
}
