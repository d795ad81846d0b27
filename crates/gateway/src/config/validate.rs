//! Reading a config file and turning it into a `Config`: the top-level settings checked here,
//! each section by its own file (in the order the checks have always run, so the first error a
//! file has is the one reported).

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use rust_decimal::Decimal;

use super::errors::{invalid, toml_error, ConfigError};
use super::models::models;
use super::observe::{capture_config, otlp_config};
use super::providers::providers;
use super::raw::{RawConfig, RawResponses};
use super::routing::routing_config;
use super::secrets::Secret;
use super::server::{cors_config, server_limits};
use super::streams::{streams_config, ResponsesConfig};
use super::{
    Config, RedisFailure, DEFAULT_DATABASE, DEFAULT_DEMO_TOKENS_PER_SECOND, DEFAULT_LISTEN,
};

/// The largest request body accepted when `max_body_bytes` is not set.
const DEFAULT_MAX_BODY: usize = 8 * 1024 * 1024;

impl Config {
    /// Reads and validates a config file.
    /// A config file others can write is refused: a config is code when it names a `cmd:`
    /// secret (the gateway runs it), so only its owner may change it.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path)
            .map_err(|source| ConfigError::Read {
                path: path.to_owned(),
                source,
            })?
            .permissions()
            .mode();
        if mode & 0o022 != 0 {
            return Err(ConfigError::Invalid {
                path: path.display().to_string(),
                message: format!(
                    "the file is writable by other users (mode {:o}); a config can run commands \
                     (cmd: secrets), so only its owner may write it: chmod go-w {}",
                    mode & 0o777,
                    path.display()
                ),
            });
        }
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Config::parse(&text, &path.display().to_string())
    }

    /// Parses and validates config text; `path` is only used in messages.
    pub fn parse(text: &str, path: &str) -> Result<Config, ConfigError> {
        let raw: RawConfig =
            toml::from_str(text).map_err(|e| invalid(path)(toml_error(text, &e)))?;
        Config::from_raw(raw, text, path)
    }

    /// Validates the file as read (`text` is where its spans point, for line numbers).
    pub(super) fn from_raw(raw: RawConfig, text: &str, path: &str) -> Result<Config, ConfigError> {
        let invalid = invalid(path);
        let listen = listen(raw.listen.as_deref()).map_err(&invalid)?;
        let database = database(raw.database).map_err(&invalid)?;
        let (providers, pools) = providers(raw.providers).map_err(&invalid)?;
        let models = models(
            text,
            path,
            raw.models,
            raw.auto.as_ref(),
            &providers,
            &pools,
        )?;
        let routing = routing_config(raw.routing.unwrap_or_default());
        let server = server_limits(raw.server.unwrap_or_default()).map_err(&invalid)?;
        let cors = cors_config(raw.cors.unwrap_or_default()).map_err(&invalid)?;
        let capture = capture_config(raw.capture.unwrap_or_default()).map_err(&invalid)?;
        let otlp = raw.otlp.map(otlp_config).transpose().map_err(&invalid)?;
        let demo_credits = demo_credits(raw.demo_credits).map_err(&invalid)?;
        let instances = instances(raw.instances.as_deref()).map_err(&invalid)?;
        let durability = durability(raw.durability.as_deref()).map_err(&invalid)?;
        Ok(Config {
            listen,
            database,
            journal: raw.journal.map(PathBuf::from),
            instances,
            durability,
            redis: raw.redis,
            redis_failure: redis_failure(raw.redis_failure.as_deref()).map_err(&invalid)?,
            redis_timeout: redis_timeout(raw.redis_timeout_ms).map_err(&invalid)?,
            key_refresh: key_refresh(raw.key_refresh_ms).map_err(&invalid)?,
            admin_key: raw.admin_key.as_deref().map(Secret::parse),
            keep_alive: Duration::from_millis(raw.keep_alive_ms.unwrap_or(15_000)),
            max_body_bytes: raw.max_body_bytes.unwrap_or(DEFAULT_MAX_BODY),
            demo_credits,
            providers,
            models,
            routing,
            server,
            cors,
            capture,
            responses: responses_config(raw.responses),
            streams: streams_config(raw.streams.unwrap_or_default()).map_err(&invalid)?,
            otlp,
            embedded_demo: false,
            demo_tokens_per_second: DEFAULT_DEMO_TOKENS_PER_SECOND,
            event_log: event_log(raw.event_log.map(|e| e.path)).map_err(&invalid)?,
        })
    }
}

fn listen(listen: Option<&str>) -> Result<std::net::SocketAddr, String> {
    let listen = listen.unwrap_or(DEFAULT_LISTEN);
    listen
        .parse()
        .map_err(|_| format!("listen = \"{listen}\" is not an address like 127.0.0.1:8080"))
}

fn database(database: Option<String>) -> Result<String, String> {
    let database = database.unwrap_or_else(|| DEFAULT_DATABASE.to_owned());
    if !(database.starts_with("sqlite:") || database.starts_with("postgres")) {
        return Err(format!(
            "database = \"{database}\": expected sqlite://FILE or postgres://…"
        ));
    }
    Ok(database)
}

fn demo_credits(credits: Option<String>) -> Result<Decimal, String> {
    match credits {
        Some(c) => {
            Decimal::from_str(&c).map_err(|_| format!("demo_credits = \"{c}\" is not a decimal"))
        }
        None => Ok(Decimal::new(5, 0)),
    }
}

fn instances(instances: Option<&str>) -> Result<crate::store::ledger::Instances, String> {
    match instances {
        None | Some("single") => Ok(crate::store::ledger::Instances::Single),
        // A SQLite database (here, or given with --database) is refused when the ledger opens.
        Some("shared") => Ok(crate::store::ledger::Instances::Shared),
        Some(other) => Err(format!(
            "instances = \"{other}\": expected \"single\" or \"shared\""
        )),
    }
}

fn durability(durability: Option<&str>) -> Result<crate::store::ledger::Durability, String> {
    match durability {
        None | Some("durable") => Ok(crate::store::ledger::Durability::Durable),
        Some("batched") => Ok(crate::store::ledger::Durability::Batched),
        Some(other) => Err(format!(
            "durability = \"{other}\": expected \"durable\" or \"batched\""
        )),
    }
}

fn redis_failure(failure: Option<&str>) -> Result<RedisFailure, String> {
    match failure {
        None | Some("open") => Ok(RedisFailure::Open),
        Some("closed") => Ok(RedisFailure::Closed),
        Some(other) => Err(format!(
            "redis_failure = \"{other}\": expected \"open\" or \"closed\""
        )),
    }
}

/// `key_refresh_ms`: how often keys and balances are re-read without a change feed (above 0).
fn key_refresh(ms: Option<u64>) -> Result<Option<Duration>, String> {
    match ms {
        Some(0) => Err("key_refresh_ms must be above 0".into()),
        ms => Ok(ms.map(Duration::from_millis)),
    }
}

fn redis_timeout(ms: Option<u64>) -> Result<Duration, String> {
    match ms {
        Some(0) => Err("redis_timeout_ms must be above 0".into()),
        Some(ms) => Ok(Duration::from_millis(ms)),
        None => Ok(Duration::from_secs(1)),
    }
}

fn responses_config(r: Option<RawResponses>) -> ResponsesConfig {
    let d = ResponsesConfig::default();
    match r {
        None => d,
        Some(r) => ResponsesConfig {
            retention: r.retention_days.map_or(d.retention, |d| {
                Duration::from_secs(d.saturating_mul(86_400))
            }),
            keep_on_revoke: r.keep_on_revoke.unwrap_or(false),
        },
    }
}

fn event_log(path: Option<String>) -> Result<Option<crate::event_log::EventLogTarget>, String> {
    match path {
        None => Ok(None),
        Some(p) if p == "stdout" => Ok(Some(crate::event_log::EventLogTarget::Stdout)),
        Some(p) if p.trim().is_empty() => {
            Err("event_log.path is empty: expected \"stdout\" or a file path".into())
        }
        Some(p) => Ok(Some(crate::event_log::EventLogTarget::File(PathBuf::from(
            p,
        )))),
    }
}
