//! The limits' state in Redis, shared by every instance configured with the same server: per
//! limited API key, `switchyard:ratelimit:{id}:requests` / `:tokens` hold the GCRA arrival times in
//! microseconds of the Redis clock (so instances whose clocks disagree still agree) and `:open` is
//! a sorted set of the key's open requests, each scored with the end of its lease. One admission is
//! one `EVALSHA` doing every check and every update atomically; a settlement is another (token
//! correction and slot release), sent in the background. The GCRA keys expire once their limit is
//! full again; a slot's lease is renewed every `RENEW_EVERY` by the instance holding it, so the
//! slots of a crashed instance come back after `LEASE`.
//!
//! Streams that outlive their connection are mirrored here too (`relay::replay`): each block an
//! entry of the Redis stream `switchyard:replay:{id}` (`XADD … MAXLEN ~`), the last an `end`
//! entry, with a TTL, so a reconnect that lands on another instance reads them there; that
//! reader blocks (`XREAD BLOCK`) on a connection of its own, never the shared one.
//!
//! Connecting is shared: concurrent admissions wait for the one connection attempt in progress
//! instead of being admitted without a check. When Redis cannot answer, `reserve` returns `None`
//! (the caller applies `redis_failure`), a new connection is tried at most once a second, and a
//! warning is logged when it starts failing, then at most once a minute, and once when it is back.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Client, Script};

use super::{Costs, Decision, LimitsError, WINDOW_US};

/// A Redis connection (for `limits::StreamReader`).
pub(super) type Connection = MultiplexedConnection;

/// One entry of a Redis stream: its id and fields.
pub(super) type StreamEntry = (String, HashMap<String, Vec<u8>>);

/// How long a connection attempt or a command may take before Redis counts as unreachable.
const RECONNECT_EVERY: Duration = Duration::from_secs(1);
const WARN_EVERY: Duration = Duration::from_secs(60);
/// How long an open slot counts without renewal.
const LEASE: Duration = Duration::from_secs(30);
/// How often an instance renews the leases of its open slots.
pub(super) const RENEW_EVERY: Duration = Duration::from_secs(10);

/// Every check and update of one admission. KEYS: requests, tokens, open. ARGV: the GCRA intervals
/// in microseconds (0 = no such limit), the window, max_concurrent (0 = none), the slot's member,
/// the lease in microseconds. Returns {admitted, ahead_requests, ahead_tokens, full}: the GCRA
/// offsets after the admission if admitted, else before it (as `Decision` holds them).
const RESERVE: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local window = tonumber(ARGV[3])
local max = tonumber(ARGV[4])
local function ahead(key)
  local v = tonumber(redis.call('GET', key))
  if v == nil or v < now then return 0 end
  return v - now
end
local ir, it = tonumber(ARGV[1]), tonumber(ARGV[2])
local ar, at = ahead(KEYS[1]), ahead(KEYS[2])
if max > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', string.format('%d', now))
  if redis.call('ZCARD', KEYS[3]) >= max then
    return {0, ar, at, 1}
  end
end
if ar + ir > window or at + it > window then
  return {0, ar, at, 0}
end
local function put(key, a)
  redis.call('SET', key, string.format('%d', now + a), 'PX', string.format('%d', math.floor(a / 1000) + 1))
end
if ir > 0 then put(KEYS[1], ar + ir) end
if it > 0 then put(KEYS[2], at + it) end
if max > 0 then
  local lease = tonumber(ARGV[6])
  redis.call('ZADD', KEYS[3], string.format('%d', now + lease), ARGV[5])
  redis.call('PEXPIRE', KEYS[3], string.format('%d', math.floor(lease / 1000) + 1000))
end
return {1, ar + ir, at + it, 0}
";

/// Releases the slot ARGV[2] (if not empty) from KEYS[2] and moves the tokens arrival time
/// (KEYS[1]) by ARGV[1] microseconds, if it is still set.
const SETTLE: &str = r"
if ARGV[2] ~= '' then redis.call('ZREM', KEYS[2], ARGV[2]) end
local d = tonumber(ARGV[1])
if d == 0 then return 0 end
local v = tonumber(redis.call('GET', KEYS[1]))
if v == nil then return 0 end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local n = v + d
if n <= now then
  redis.call('DEL', KEYS[1])
  return 0
end
redis.call('SET', KEYS[1], string.format('%d', n), 'PX', string.format('%d', math.floor((n - now) / 1000) + 1))
return 1
";

/// Extends the lease of the open slot ARGV[2] in KEYS[1] by ARGV[1] microseconds from now, if it
/// is still there.
const RENEW: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local lease = tonumber(ARGV[1])
redis.call('ZADD', KEYS[1], 'XX', string.format('%d', now + lease), ARGV[2])
redis.call('PEXPIRE', KEYS[1], string.format('%d', math.floor(lease / 1000) + 1000))
return 1
";

/// When to next try a connection, and when the last warning was logged.
#[derive(Default)]
struct Health {
    retry_at: Option<Instant>,
    warned_at: Option<Instant>,
}

pub(super) struct RedisLimits {
    client: Client,
    /// Bounds each connection attempt and command.
    timeout: Duration,
    conn: Mutex<Option<MultiplexedConnection>>,
    /// Held while a connection is being opened, so that only one attempt runs.
    connecting: tokio::sync::Mutex<()>,
    health: Mutex<Health>,
    down: AtomicBool,
    reserve: Script,
    settle: Script,
    renew: Script,
    /// This instance's open slots: member -> key id (renewed until released).
    open: Mutex<HashMap<String, String>>,
    renewing: AtomicBool,
    instance: String,
    next_slot: AtomicU64,
}

impl fmt::Debug for RedisLimits {
    // The client's own Debug would show the URL, which may hold a password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RedisLimits")
    }
}

fn requests_key(key_id: &str) -> String {
    format!("switchyard:ratelimit:{key_id}:requests")
}

fn tokens_key(key_id: &str) -> String {
    format!("switchyard:ratelimit:{key_id}:tokens")
}

fn open_key(key_id: &str) -> String {
    format!("switchyard:ratelimit:{key_id}:open")
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl RedisLimits {
    /// `timeout` bounds every connection attempt and every command (`redis_timeout_ms`): a hung
    /// Redis costs a request at most that long before the `redis_failure` fallback.
    pub(super) fn new(url: &str, timeout: Duration) -> Result<RedisLimits, LimitsError> {
        // The error would quote the URL (and so a password); name only its kind.
        let client =
            Client::open(url).map_err(|e| LimitsError::RedisUrl(format!("{:?}", e.kind())))?;
        Ok(RedisLimits {
            client,
            timeout,
            conn: Mutex::new(None),
            connecting: tokio::sync::Mutex::new(()),
            health: Mutex::new(Health::default()),
            down: AtomicBool::new(false),
            reserve: Script::new(RESERVE),
            settle: Script::new(SETTLE),
            renew: Script::new(RENEW),
            open: Mutex::new(HashMap::new()),
            renewing: AtomicBool::new(false),
            instance: crate::auth::new_id("", 12),
            next_slot: AtomicU64::new(0),
        })
    }

    /// The open connection, or a new one; `None` while Redis is unreachable. Callers arriving
    /// while a connection is being opened wait for that attempt.
    async fn connection(&self) -> Option<MultiplexedConnection> {
        if let Some(c) = &*lock(&self.conn) {
            return Some(c.clone());
        }
        let _one = self.connecting.lock().await;
        if let Some(c) = &*lock(&self.conn) {
            return Some(c.clone());
        }
        if lock(&self.health)
            .retry_at
            .is_some_and(|t| Instant::now() < t)
        {
            return None;
        }
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(Some(self.timeout));
        match self
            .client
            .get_multiplexed_async_connection_with_config(&config)
            .await
        {
            Ok(c) => {
                *lock(&self.conn) = Some(c.clone());
                Some(c)
            }
            Err(e) => {
                lock(&self.health).retry_at = Some(Instant::now() + RECONNECT_EVERY);
                self.failed(&e);
                None
            }
        }
    }

    /// A plain value shared by every instance (`GET`); `None` when absent or Redis cannot answer.
    pub(super) async fn get(&self, key: &str) -> Option<String> {
        let mut conn = self.connection().await?;
        let reply: Result<Option<String>, redis::RedisError> =
            redis::cmd("GET").arg(key).query_async(&mut conn).await;
        reply.inspect_err(|e| self.failed(e)).ok().flatten()
    }

    /// Sets a shared value that expires after `ttl` (`SET … PX`); best effort.
    pub(super) async fn set(&self, key: &str, value: &str, ttl: Duration) {
        let Some(mut conn) = self.connection().await else {
            return;
        };
        let reply: Result<(), redis::RedisError> = redis::cmd("SET")
            .arg(key)
            .arg(value)
            .arg("PX")
            .arg(ttl.as_millis() as u64)
            .query_async(&mut conn)
            .await;
        if let Err(e) = reply {
            self.failed(&e);
        }
    }

    /// Appends `entries` (each a list of field/value pairs) to the stream `key`, trimmed to about
    /// `max_len` entries, and sets `key` and `meta_key` (= `meta`) to expire after `ttl`; best effort.
    pub(super) async fn stream_append(
        &self,
        key: &str,
        entries: &[Vec<(&'static str, Vec<u8>)>],
        max_len: usize,
        meta: Option<(&str, &str)>,
        ttl: Duration,
    ) {
        let Some(mut conn) = self.connection().await else {
            return;
        };
        let mut pipe = redis::pipe();
        if let Some((meta_key, value)) = meta {
            pipe.cmd("SET")
                .arg(meta_key)
                .arg(value)
                .arg("PX")
                .arg(ttl.as_millis() as u64)
                .ignore();
        }
        for fields in entries {
            let cmd = pipe
                .cmd("XADD")
                .arg(key)
                .arg("MAXLEN")
                .arg("~")
                .arg(max_len)
                .arg("*");
            for (name, value) in fields {
                cmd.arg(*name).arg(value.as_slice());
            }
            cmd.ignore();
        }
        pipe.cmd("PEXPIRE")
            .arg(key)
            .arg(ttl.as_millis() as u64)
            .ignore();
        let reply: Result<(), redis::RedisError> = pipe.query_async(&mut conn).await;
        if let Err(e) = reply {
            self.failed(&e);
        }
    }

    /// A connection of its own, for a reader that blocks.
    pub(super) async fn dedicated(&self) -> Option<MultiplexedConnection> {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.timeout))
            // A blocking read waits up to its own block time, then a little.
            .set_response_timeout(Some(self.timeout + Duration::from_secs(5)));
        self.client
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .ok()
    }

    /// The entries of the stream `key` after the entry id `after` (`0-0`: from the start), waiting
    /// up to `block` for one; each is its id and fields. `None` when Redis cannot answer.
    pub(super) async fn stream_read(
        conn: &mut MultiplexedConnection,
        key: &str,
        after: &str,
        block: Duration,
    ) -> Option<Vec<StreamEntry>> {
        let reply: Result<redis::Value, redis::RedisError> = redis::cmd("XREAD")
            .arg("COUNT")
            .arg(512)
            .arg("BLOCK")
            .arg(block.as_millis() as u64)
            .arg("STREAMS")
            .arg(key)
            .arg(after)
            .query_async(conn)
            .await;
        let value = reply.ok()?;
        let streams: Option<Vec<(String, Vec<StreamEntry>)>> = redis::from_redis_value(value).ok();
        Some(
            streams
                .unwrap_or_default()
                .into_iter()
                .flat_map(|(_, e)| e)
                .collect(),
        )
    }

    /// Drops a broken connection (the next call reconnects) and warns when Redis starts failing,
    /// then at most once a minute.
    fn failed(&self, e: &redis::RedisError) {
        if e.is_io_error() || e.is_connection_dropped() || e.is_unrecoverable_error() {
            *lock(&self.conn) = None;
        }
        self.down.store(true, Ordering::Relaxed);
        let mut health = lock(&self.health);
        let now = Instant::now();
        if health
            .warned_at
            .is_none_or(|t| now.duration_since(t) >= WARN_EVERY)
        {
            health.warned_at = Some(now);
            drop(health);
            tracing::warn!(error = %e, "Redis is unreachable; rate limits follow redis_failure until it is back");
        }
    }

    /// Notes an answer from Redis: logs once that it is back after a failure.
    fn answered(&self) {
        if self.down.swap(false, Ordering::Relaxed) {
            lock(&self.health).warned_at = None;
            tracing::info!("Redis answers again; rate limits are shared and enforced");
        }
    }

    /// Whether Redis answers a `PING` now (for `/readyz`). Unlike the limits, this tries to
    /// connect even during the reconnect back-off, so readiness shows the present state.
    pub(super) async fn ping(&self) -> bool {
        let conn = match self.connection().await {
            Some(c) => Some(c),
            None => {
                let config = AsyncConnectionConfig::new()
                    .set_connection_timeout(Some(self.timeout))
                    .set_response_timeout(Some(self.timeout));
                self.client
                    .get_multiplexed_async_connection_with_config(&config)
                    .await
                    .ok()
            }
        };
        let Some(mut conn) = conn else { return false };
        let reply: Result<String, redis::RedisError> =
            redis::cmd("PING").query_async(&mut conn).await;
        match reply {
            Ok(_) => {
                self.answered();
                true
            }
            Err(e) => {
                self.failed(&e);
                false
            }
        }
    }

    /// A member naming one open request, unique across instances.
    pub(super) fn new_slot(&self) -> String {
        let n = self.next_slot.fetch_add(1, Ordering::Relaxed);
        format!("{}-{n}", self.instance)
    }

    /// Every check and update for `key_id` at once (taking the open slot `member`, if the key has
    /// a concurrency limit), or `None` when Redis cannot answer.
    pub(super) async fn reserve(
        &self,
        key_id: &str,
        costs: &Costs,
        member: Option<&str>,
    ) -> Option<Decision> {
        let mut conn = self.connection().await?;
        let reply: Result<Vec<i64>, _> = self
            .reserve
            .key(requests_key(key_id))
            .key(tokens_key(key_id))
            .key(open_key(key_id))
            .arg(costs.request_interval())
            .arg(costs.token_interval())
            .arg(WINDOW_US)
            .arg(costs.limits.concurrent.unwrap_or(0))
            .arg(member.unwrap_or(""))
            .arg(LEASE.as_micros() as u64)
            .invoke_async(&mut conn)
            .await;
        match reply {
            Ok(v) if v.len() == 4 => {
                self.answered();
                Some(Decision {
                    admitted: v[0] == 1,
                    ahead_requests: v[1].max(0) as u64,
                    ahead_tokens: v[2].max(0) as u64,
                    full: v[3] == 1,
                })
            }
            Ok(_) => None,
            Err(e) => {
                self.failed(&e);
                None
            }
        }
    }

    /// Records an admitted slot, to renew its lease until it is released.
    pub(super) fn opened(&self, key_id: &str, member: &str) {
        lock(&self.open).insert(member.to_owned(), key_id.to_owned());
    }

    /// True the first time only: the caller starts the renewal task.
    pub(super) fn start_renewing(&self) -> bool {
        !self.renewing.swap(true, Ordering::Relaxed)
    }

    /// Moves `key_id`'s tokens arrival time by `delta_us` and releases the slot `member`.
    pub(super) async fn settle(&self, key_id: &str, delta_us: i64, member: Option<&str>) {
        if let Some(m) = member {
            lock(&self.open).remove(m);
        }
        let Some(mut conn) = self.connection().await else {
            return;
        };
        let reply: Result<i64, _> = self
            .settle
            .key(tokens_key(key_id))
            .key(open_key(key_id))
            .arg(delta_us)
            .arg(member.unwrap_or(""))
            .invoke_async(&mut conn)
            .await;
        match reply {
            Ok(_) => self.answered(),
            Err(e) => self.failed(&e),
        }
    }

    /// Extends the lease of every slot this instance holds.
    pub(super) async fn renew(&self) {
        let open: Vec<(String, String)> = lock(&self.open)
            .iter()
            .map(|(m, k)| (m.clone(), k.clone()))
            .collect();
        if open.is_empty() {
            return;
        }
        let Some(mut conn) = self.connection().await else {
            return;
        };
        for (member, key_id) in open {
            let reply: Result<i64, _> = self
                .renew
                .key(open_key(&key_id))
                .arg(LEASE.as_micros() as u64)
                .arg(&member)
                .invoke_async(&mut conn)
                .await;
            if let Err(e) = reply {
                self.failed(&e);
                return;
            }
        }
    }
}
