//! The rate limits' state in Redis, shared by every instance configured with the same server:
//! two keys per limited API key (`switchyard:ratelimit:{id}:requests` / `:tokens`), each holding
//! the limit's GCRA arrival time in microseconds of the Redis clock, so instances whose clocks
//! disagree still agree. One admission is one `EVALSHA` (the GCRA step on both limits); a
//! settlement is another, sent in the background. The keys expire once their limit is full again.
//!
//! Redis being down must not stop traffic: every failure is reported as `None` (the caller admits),
//! reconnects are attempted at most once a second, and a warning is logged at most once a minute.

use std::fmt;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Client, Script};

use super::{Costs, Decision, LimitsError, WINDOW_US};

/// How long a connection attempt or a command may take before the limits fail open.
const TIMEOUT: Duration = Duration::from_millis(500);
const RECONNECT_EVERY: Duration = Duration::from_secs(1);
const WARN_EVERY: Duration = Duration::from_secs(60);

/// The GCRA step on both limits. KEYS: requests, tokens. ARGV: their intervals in microseconds
/// (0 = no such limit) and the window. Returns {admitted, ahead_requests, ahead_tokens}, after the
/// admission if admitted, else before it (as `Decision` holds them).
const RESERVE: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local window = tonumber(ARGV[3])
local function ahead(key)
  local v = tonumber(redis.call('GET', key))
  if v == nil or v < now then return 0 end
  return v - now
end
local ir, it = tonumber(ARGV[1]), tonumber(ARGV[2])
local ar, at = ahead(KEYS[1]), ahead(KEYS[2])
if ar + ir > window or at + it > window then
  return {0, ar, at}
end
local function put(key, a)
  redis.call('SET', key, string.format('%d', now + a), 'PX', string.format('%d', math.floor(a / 1000) + 1))
end
if ir > 0 then put(KEYS[1], ar + ir) end
if it > 0 then put(KEYS[2], at + it) end
return {1, ar + ir, at + it}
";

/// Moves the tokens arrival time (KEYS[1]) by ARGV[1] microseconds, if it is still set.
const SETTLE: &str = r"
local v = tonumber(redis.call('GET', KEYS[1]))
if v == nil then return 0 end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local n = v + tonumber(ARGV[1])
if n <= now then
  redis.call('DEL', KEYS[1])
  return 0
end
redis.call('SET', KEYS[1], string.format('%d', n), 'PX', string.format('%d', math.floor((n - now) / 1000) + 1))
return 1
";

/// The connection, and when to next try to open one or to warn.
#[derive(Default)]
struct Link {
    conn: Option<MultiplexedConnection>,
    next_connect: Option<Instant>,
    warned_at: Option<Instant>,
}

pub struct RedisLimits {
    client: Client,
    link: Mutex<Link>,
    reserve: Script,
    settle: Script,
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

impl RedisLimits {
    pub fn new(url: &str) -> Result<RedisLimits, LimitsError> {
        // The error would quote the URL (and so a password); name only its kind.
        let client =
            Client::open(url).map_err(|e| LimitsError::RedisUrl(format!("{:?}", e.kind())))?;
        Ok(RedisLimits {
            client,
            link: Mutex::new(Link::default()),
            reserve: Script::new(RESERVE),
            settle: Script::new(SETTLE),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Link> {
        self.link.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The open connection, or a new one; `None` while Redis is unreachable.
    async fn connection(&self) -> Option<MultiplexedConnection> {
        {
            let mut link = self.lock();
            if let Some(c) = &link.conn {
                return Some(c.clone());
            }
            let now = Instant::now();
            if link.next_connect.is_some_and(|t| now < t) {
                return None;
            }
            link.next_connect = Some(now + RECONNECT_EVERY);
        }
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(TIMEOUT))
            .set_response_timeout(Some(TIMEOUT));
        match self
            .client
            .get_multiplexed_async_connection_with_config(&config)
            .await
        {
            Ok(c) => {
                self.lock().conn = Some(c.clone());
                Some(c)
            }
            Err(e) => {
                self.failed(&e);
                None
            }
        }
    }

    /// Drops the connection (the next call reconnects) and warns, at most once a minute.
    fn failed(&self, e: &redis::RedisError) {
        let mut link = self.lock();
        link.conn = None;
        let now = Instant::now();
        if link
            .warned_at
            .is_none_or(|t| now.duration_since(t) >= WARN_EVERY)
        {
            link.warned_at = Some(now);
            drop(link);
            tracing::warn!(error = %e, "Redis is unreachable; rate limits are not enforced until it is back");
        }
    }

    /// The GCRA step for `key_id`, or `None` (admit) when Redis cannot answer.
    pub(super) async fn reserve(&self, key_id: &str, costs: &Costs) -> Option<Decision> {
        let mut conn = self.connection().await?;
        let reply: Result<Vec<i64>, _> = self
            .reserve
            .key(requests_key(key_id))
            .key(tokens_key(key_id))
            .arg(costs.request_interval())
            .arg(costs.token_interval())
            .arg(WINDOW_US)
            .invoke_async(&mut conn)
            .await;
        match reply {
            Ok(v) if v.len() == 3 => Some(Decision {
                admitted: v[0] == 1,
                ahead_requests: v[1].max(0) as u64,
                ahead_tokens: v[2].max(0) as u64,
            }),
            Ok(_) => None,
            Err(e) => {
                self.failed(&e);
                None
            }
        }
    }

    /// Moves `key_id`'s tokens arrival time by `delta_us`.
    pub(super) async fn settle(&self, key_id: &str, delta_us: i64) {
        let Some(mut conn) = self.connection().await else {
            return;
        };
        let reply: Result<i64, _> = self
            .settle
            .key(tokens_key(key_id))
            .arg(delta_us)
            .invoke_async(&mut conn)
            .await;
        if let Err(e) = reply {
            self.failed(&e);
        }
    }
}
