//! `[server]` and `[cors]`: the client-facing listener's limits and the browser origins allowed.

use std::time::Duration;

use super::raw::{RawCors, RawServer};

/// The limits of the client-facing listener (`[server]`), so that no client can hold a
/// connection, a task or a stream's upstream for longer than these say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerLimits {
    /// From a connection's start (or the first byte of its next request) until the request's
    /// headers are complete; past it the connection is closed.
    pub header_read_timeout: Duration,
    /// Reading a request's body; past it the request is answered 408.
    pub body_read_timeout: Duration,
    /// A keep-alive connection with no request in flight is closed after this long.
    pub idle_timeout: Duration,
    /// Open client connections in all; past it new ones are answered 503 and closed.
    pub max_connections: usize,
    /// Open client connections from one address; `None` = no cap (behind a load balancer every
    /// client has the balancer's address).
    pub max_connections_per_ip: Option<usize>,
    /// The request line and headers together; past it the answer is 431.
    pub max_header_bytes: usize,
    /// A response (a stream above all) whose client has accepted no byte for this long is
    /// dropped: its upstream request is stopped and it is settled as cancelled.
    pub slow_reader_timeout: Duration,
    /// On SIGTERM/SIGINT, open requests may finish for this long; streams still open then end
    /// with an error event and are settled.
    pub shutdown_grace: Duration,
    /// Proxies whose `X-Forwarded-For` names the client (addresses or networks such as
    /// `"10.0.0.0/8"`); default none, so the client is always the TCP peer.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Failed admin authentications from one client address that lock it out (`0`: never).
    pub admin_lockout_after: u32,
    /// How long a locked-out address is refused.
    pub admin_lockout: Duration,
}

impl Default for ServerLimits {
    fn default() -> Self {
        ServerLimits {
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(75),
            max_connections: 10_000,
            max_connections_per_ip: Some(1_024),
            max_header_bytes: 64 * 1024,
            slow_reader_timeout: Duration::from_secs(30),
            shutdown_grace: Duration::from_secs(30),
            trusted_proxies: Vec::new(),
            admin_lockout_after: 10,
            admin_lockout: Duration::from_secs(300),
        }
    }
}

/// Which browser origins may call the gateway (`[cors]`). An entry is `"*"` (any origin) or an
/// exact origin such as `"https://app.example.com"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CorsConfig {
    /// For the public API (`/v1`, `/api/v1`, `/v1/llm`) and the unauthenticated routes; default
    /// any origin (`["*"]`): the API is authenticated by key, never by cookie.
    pub allowed_origins: Vec<String>,
    /// For `/admin`; default none (`[]`).
    pub admin_origins: Vec<String>,
    /// For the operator's unauthenticated endpoints (`/metrics`, `/readyz`, `/openapi.json`):
    /// default none, so a web page cannot read a local gateway's figures.
    pub ops_origins: Vec<String>,
}

impl Default for CorsConfig {
    fn default() -> Self {
        CorsConfig {
            allowed_origins: vec!["*".into()],
            admin_origins: Vec::new(),
            ops_origins: Vec::new(),
        }
    }
}

pub(super) fn cors_config(r: RawCors) -> Result<CorsConfig, String> {
    let d = CorsConfig::default();
    let check = |key: &str, list: Vec<String>| -> Result<Vec<String>, String> {
        for o in &list {
            let ok = o == "*"
                || ((o.starts_with("http://") || o.starts_with("https://"))
                    && !o.ends_with('/')
                    && o.bytes().all(|b| b.is_ascii_graphic()));
            if !ok {
                return Err(format!(
                    "cors.{key}: \"{o}\" is not \"*\" or an origin like \"https://app.example.com\" (scheme and host, no path)"
                ));
            }
        }
        Ok(list)
    };
    Ok(CorsConfig {
        allowed_origins: check(
            "allowed_origins",
            r.allowed_origins.unwrap_or(d.allowed_origins),
        )?,
        admin_origins: check("admin_origins", r.admin_origins.unwrap_or(d.admin_origins))?,
        ops_origins: check("ops_origins", r.ops_origins.unwrap_or(d.ops_origins))?,
    })
}

/// The smallest and largest `server.max_header_bytes` (the HTTP parser's buffer bounds it).
const HEADER_BYTES_RANGE: std::ops::RangeInclusive<usize> = 1024..=256 * 1024;

pub(super) fn server_limits(r: RawServer) -> Result<ServerLimits, String> {
    let d = ServerLimits::default();
    let ms = |key: &str, v: Option<u64>, d: Duration| match v {
        Some(0) => Err(format!(
            "server.{key} = 0: a time limit must be at least 1 ms"
        )),
        Some(v) => Ok(Duration::from_millis(v)),
        None => Ok(d),
    };
    let max_header_bytes = r.max_header_bytes.unwrap_or(d.max_header_bytes);
    if !HEADER_BYTES_RANGE.contains(&max_header_bytes) {
        return Err(format!(
            "server.max_header_bytes = {max_header_bytes}: must be between {} and {}",
            HEADER_BYTES_RANGE.start(),
            HEADER_BYTES_RANGE.end()
        ));
    }
    let max_connections = match r.max_connections {
        Some(0) => return Err("server.max_connections = 0: must be at least 1".into()),
        Some(n) => n,
        None => d.max_connections,
    };
    Ok(ServerLimits {
        header_read_timeout: ms(
            "header_read_timeout_ms",
            r.header_read_timeout_ms,
            d.header_read_timeout,
        )?,
        body_read_timeout: ms(
            "body_read_timeout_ms",
            r.body_read_timeout_ms,
            d.body_read_timeout,
        )?,
        idle_timeout: ms("idle_timeout_ms", r.idle_timeout_ms, d.idle_timeout)?,
        max_connections,
        max_connections_per_ip: match r.max_connections_per_ip {
            Some(0) => None,
            Some(n) => Some(n),
            None => d.max_connections_per_ip,
        },
        max_header_bytes,
        slow_reader_timeout: ms(
            "slow_reader_timeout_ms",
            r.slow_reader_timeout_ms,
            d.slow_reader_timeout,
        )?,
        shutdown_grace: ms("shutdown_grace_ms", r.shutdown_grace_ms, d.shutdown_grace)?,
        trusted_proxies: trusted_proxies(r.trusted_proxies.unwrap_or_default())?,
        admin_lockout_after: r.admin_lockout_after.unwrap_or(d.admin_lockout_after),
        admin_lockout: ms("admin_lockout_ms", r.admin_lockout_ms, d.admin_lockout)?,
    })
}

/// `server.trusted_proxies`: each entry an address (`"10.0.0.7"`) or a network (`"10.0.0.0/8"`).
fn trusted_proxies(list: Vec<String>) -> Result<Vec<ipnet::IpNet>, String> {
    list.iter()
        .map(|entry| {
            entry
                .parse::<ipnet::IpNet>()
                .or_else(|_| entry.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                .map_err(|_| {
                    format!(
                        "server.trusted_proxies: \"{entry}\" is not an address or a network like \"10.0.0.0/8\""
                    )
                })
        })
        .collect()
}
