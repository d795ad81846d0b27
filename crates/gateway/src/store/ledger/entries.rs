//! The append-only usage ledger: settling a request (its entry and the debit of its cost in one
//! transaction, then releasing its hold), reading entries back, and usage reports grouped by key,
//! model or day over a time range.

use sqlx::Row;

use super::accounts::Hold;
use super::periods::day_name;
use super::{Durable, EndReason, GroupBy, Ledger, LedgerError, Nanos, UsageEntry};

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
    /// Prompt tokens written to the provider's cache.
    pub cache_write_tokens: i64,
    /// What the prompt cache saved against the whole prompt at the input price.
    #[serde(serialize_with = "as_usd")]
    pub cache_saved: Nanos,
    pub token_source: String,
    #[serde(serialize_with = "as_usd")]
    pub cost: Nanos,
    pub end_reason: EndReason,
    pub ttft_ms: Option<i64>,
    pub duration_ms: i64,
    pub stream: bool,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    /// The money held at admission.
    #[serde(serialize_with = "as_usd")]
    pub hold: Nanos,
    /// The upstream reported more than the hold covered.
    pub over_hold: bool,
    /// `prompt_only`, `checkpoint` or `no_checkpoint` (see `BillingNote`), or null.
    pub billing_note: Option<String>,
    /// The status of the last upstream answer (200 when served, the provider's error status when
    /// it failed or refused the request); null without one (connection error, timeout).
    pub upstream_status: Option<i64>,
    /// The HTTP status the client got (200 for a stream that failed after it began; 499 for a
    /// client gone before its answer); null for entries older than the event log.
    pub status: Option<i64>,
    /// The error's own text when the request failed (masked, at most 500 characters).
    pub error_text: Option<String>,
    /// `chat`, `chat.stream`, `responses` or `responses.stream`; null for older entries.
    pub request_type: Option<String>,
    /// The key as `sk-sy-…a1b2` (its last four characters; `…????` for keys made before they
    /// were kept). Never the key itself.
    pub masked_key: String,
    /// `<1s`, `1-5s`, `5-30s` or `>30s`, from `duration_ms`.
    pub latency_bucket: &'static str,
}

/// The bucket of a request's duration in the event log.
pub fn latency_bucket(duration_ms: i64) -> &'static str {
    match duration_ms {
        ..1_000 => "<1s",
        1_000..5_000 => "1-5s",
        5_000..30_000 => "5-30s",
        _ => ">30s",
    }
}

/// A key shown in the event log: the key prefix, `…` and its last four characters.
pub fn masked_key(last4: Option<&str>) -> String {
    let last4 = last4.filter(|l| l.chars().count() == 4).unwrap_or("????");
    format!("{}…{last4}", super::KEY_PREFIX)
}

/// One row of a usage report.
#[derive(Debug, Clone, serde::Serialize)]
pub struct UsageGroup {
    pub group: String,
    pub requests: i64,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    pub reasoning_tokens: i64,
    /// Prompt tokens read from the providers' caches.
    pub cached_tokens: i64,
    /// Prompt tokens written to the providers' caches.
    pub cache_write_tokens: i64,
    /// `cached_tokens / prompt_tokens` (0 without prompt tokens).
    pub cache_hit_ratio: f64,
    /// What the caches saved against every prompt token at the input price.
    #[serde(serialize_with = "as_usd")]
    pub cache_saved: Nanos,
    #[serde(serialize_with = "as_usd")]
    pub cost: Nanos,
}

/// `cached / prompt`, to four decimal places; 0 without a prompt.
pub fn hit_ratio(cached: i64, prompt: i64) -> f64 {
    if prompt <= 0 {
        return 0.0;
    }
    (cached.clamp(0, prompt) as f64 / prompt as f64 * 10_000.0).round() / 10_000.0
}

/// What a usage report covers: `since <= finished < until`, optionally one key.
#[derive(Debug, Clone)]
pub struct UsageQuery {
    pub group_by: GroupBy,
    pub since_ms: i64,
    pub until_ms: Option<i64>,
    pub key_id: Option<String>,
}

/// Which entries the request log lists: `since <= created < until`, optionally one key, one
/// requested model and one end reason, at most `limit` of them.
#[derive(Debug, Clone)]
pub struct RequestQuery {
    pub since_ms: i64,
    pub until_ms: Option<i64>,
    pub key_id: Option<String>,
    pub model: Option<String>,
    pub end_reason: Option<String>,
    /// One HTTP status the client got.
    pub status: Option<i64>,
    /// One request type (`chat.stream`, …).
    pub request_type: Option<String>,
    pub limit: i64,
}

fn as_usd<S: serde::Serializer>(n: &Nanos, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&n.to_string())
}

const ENTRY_COLUMNS: &str = "request_id, key_id, requested_model, served_model, provider, \
     attempts, prompt_tokens, completion_tokens, reasoning_tokens, cached_tokens, token_source, \
     cost_nanos, end_reason, ttft_ms, duration_ms, stream, started_at, finished_at, hold_nanos, \
     over_hold, billing_note, upstream_status, status, error_text, request_type, \
     cache_write_tokens, cache_saved_nanos, \
     (SELECT key_last4 FROM api_keys WHERE api_keys.id = usage_entries.key_id) AS key_last4";

fn entry_from_row(r: &sqlx::any::AnyRow) -> Result<UsageEntryRow, sqlx::Error> {
    Ok(UsageEntryRow {
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
        cache_write_tokens: r.try_get("cache_write_tokens")?,
        cache_saved: Nanos(r.try_get("cache_saved_nanos")?),
        token_source: r.try_get("token_source")?,
        cost: Nanos(r.try_get("cost_nanos")?),
        end_reason: {
            let text: String = r.try_get("end_reason")?;
            EndReason::parse(&text).ok_or_else(|| {
                sqlx::Error::Decode(format!("unknown end_reason {text:?} in the ledger").into())
            })?
        },
        ttft_ms: r.try_get("ttft_ms")?,
        duration_ms: r.try_get("duration_ms")?,
        stream: r.try_get::<i64, _>("stream")? != 0,
        started_at: r.try_get("started_at")?,
        finished_at: r.try_get("finished_at")?,
        hold: Nanos(r.try_get("hold_nanos")?),
        over_hold: r.try_get::<i64, _>("over_hold")? != 0,
        billing_note: r.try_get("billing_note")?,
        upstream_status: r.try_get("upstream_status")?,
        status: r.try_get("status")?,
        error_text: r.try_get("error_text")?,
        request_type: r.try_get("request_type")?,
        masked_key: masked_key(r.try_get::<Option<String>, _>("key_last4")?.as_deref()),
        latency_bucket: latency_bucket(r.try_get("duration_ms")?),
    })
}

impl Ledger {
    /// Appends the usage entry and debits its cost from the key (through the group-commit
    /// writer, in one transaction with whatever else is settling), lets the key's account adopt
    /// the new balance, releases `hold`, and returns once the entry is durable. A second entry for
    /// the same request id changes nothing, so a request is charged once. When the database will
    /// not write, the entry is journaled (and still durable) if this ledger has a journal.
    pub async fn settle(&self, e: &UsageEntry, hold: Option<Hold>) -> Result<Durable, LedgerError> {
        self.settle_slot()
            .await?
            .send(e.clone(), hold)
            .durable()
            .await
    }

    /// `settle` without a hold.
    pub async fn record(&self, e: &UsageEntry) -> Result<(), LedgerError> {
        self.settle(e, None).await.map(|_| ())
    }

    /// The ledger entry of one request.
    pub async fn entry(&self, request_id: &str) -> Result<Option<UsageEntryRow>, LedgerError> {
        let sql = format!("SELECT {ENTRY_COLUMNS} FROM usage_entries WHERE request_id = $1");
        let row = sqlx::query(&sql)
            .bind(request_id)
            .fetch_optional(self.pool())
            .await?;
        Ok(row.as_ref().map(entry_from_row).transpose()?)
    }

    /// The request log: entries newest first, filtered by time, key, model and end reason.
    pub async fn requests(&self, q: &RequestQuery) -> Result<Vec<UsageEntryRow>, LedgerError> {
        let sql = format!(
            "SELECT {ENTRY_COLUMNS} FROM usage_entries WHERE created_at >= $1 AND created_at < $2 \
             AND ($3 = '' OR key_id = $4) AND ($5 = '' OR requested_model = $6) \
             AND ($7 = '' OR end_reason = $8) AND ($9 < 0 OR status = $10) \
             AND ($11 = '' OR request_type = $12) ORDER BY created_at DESC, request_id LIMIT $13"
        );
        let (key, model, end) = (
            q.key_id.as_deref().unwrap_or(""),
            q.model.as_deref().unwrap_or(""),
            q.end_reason.as_deref().unwrap_or(""),
        );
        let (status, kind) = (
            q.status.unwrap_or(-1),
            q.request_type.as_deref().unwrap_or(""),
        );
        let rows = sqlx::query(&sql)
            .bind(q.since_ms)
            .bind(q.until_ms.unwrap_or(i64::MAX))
            .bind(key)
            .bind(key)
            .bind(model)
            .bind(model)
            .bind(end)
            .bind(end)
            .bind(status)
            .bind(status)
            .bind(kind)
            .bind(kind)
            .bind(q.limit)
            .fetch_all(self.pool())
            .await?;
        Ok(rows.iter().map(entry_from_row).collect::<Result<_, _>>()?)
    }

    /// Spend and tokens in a time range, grouped, optionally for one key.
    pub async fn usage_report(&self, q: &UsageQuery) -> Result<Vec<UsageGroup>, LedgerError> {
        let (group, from) = match q.group_by {
            GroupBy::Key => ("key_id", "usage_entries"),
            GroupBy::Model => ("requested_model", "usage_entries"),
            // Days as yyyy-mm-dd are formatted in Rust below from the day number.
            GroupBy::Day => ("(created_at / 86400000)", "usage_entries"),
            // An entry counts under each of its tags.
            GroupBy::Tag => (
                "t.tag",
                "usage_entries JOIN usage_entry_tags t ON t.request_id = usage_entries.request_id",
            ),
        };
        let sql = format!(
            "SELECT CAST({group} AS TEXT) AS g, COUNT(*) AS n, \
             CAST(SUM(prompt_tokens) AS BIGINT) AS p, CAST(SUM(completion_tokens) AS BIGINT) AS c, \
             CAST(SUM(reasoning_tokens) AS BIGINT) AS r, CAST(SUM(cached_tokens) AS BIGINT) AS ca, \
             CAST(SUM(cache_write_tokens) AS BIGINT) AS cw, \
             CAST(SUM(cache_saved_nanos) AS BIGINT) AS saved, \
             CAST(SUM(cost_nanos) AS BIGINT) AS cost \
             FROM {from} WHERE usage_entries.created_at >= $1 AND usage_entries.created_at < $2 \
             AND ($3 = '' OR usage_entries.key_id = $4) \
             GROUP BY {group} ORDER BY {group}"
        );
        let key = q.key_id.as_deref().unwrap_or("");
        let rows = sqlx::query(&sql)
            .bind(q.since_ms)
            .bind(q.until_ms.unwrap_or(i64::MAX))
            .bind(key)
            .bind(key)
            .fetch_all(self.pool())
            .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let g: String = r.try_get("g")?;
            let group = match q.group_by {
                GroupBy::Day => day_name(g.parse().unwrap_or(0)),
                _ => g,
            };
            let (prompt_tokens, cached_tokens) = (r.try_get("p")?, r.try_get("ca")?);
            out.push(UsageGroup {
                group,
                requests: r.try_get("n")?,
                prompt_tokens,
                completion_tokens: r.try_get("c")?,
                reasoning_tokens: r.try_get("r")?,
                cached_tokens,
                cache_write_tokens: r.try_get("cw")?,
                cache_hit_ratio: hit_ratio(cached_tokens, prompt_tokens),
                cache_saved: Nanos(r.try_get("saved")?),
                cost: Nanos(r.try_get("cost")?),
            });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_buckets_have_closed_lower_bounds() {
        let b: Vec<_> = [0, 999, 1_000, 4_999, 5_000, 29_999, 30_000]
            .into_iter()
            .map(latency_bucket)
            .collect();
        assert_eq!(b, ["<1s", "<1s", "1-5s", "1-5s", "5-30s", "5-30s", ">30s"]);
    }

    #[test]
    fn a_masked_key_shows_four_characters_at_most() {
        assert_eq!(masked_key(Some("a1b2")), "sk-sy-…a1b2");
        assert_eq!(masked_key(None), "sk-sy-…????");
        assert_eq!(masked_key(Some("a-longer-text")), "sk-sy-…????");
    }

    #[test]
    fn error_text_is_masked_and_bounded() {
        let long = format!(
            "upstream said sk-abcdefghijklmnopqrstuvwxyz012345 {}",
            "é".repeat(900)
        );
        let t = crate::store::ledger::error_text(&long);
        assert!(!t.contains("sk-abcdefghijklmnopqrstuvwxyz012345"), "{t}");
        assert!(t.chars().count() <= crate::store::ledger::ERROR_TEXT_MAX + 1);
        assert!(t.ends_with('…'));
    }
}
