//! The gateway's shared state (`Gateway`): one config generation and the handles every request
//! uses (ledger, keys, providers, routing, limits, logs), how it is built from a `Config`, and
//! `reload`, which builds the next generation and swaps it in (`Live`). It knows nothing of HTTP
//! or of how a request is relayed: `app` serves it, `http` and `relay` use it.

pub(crate) mod reload;

pub use reload::{Live, ReloadError, Reloaded};

use crate::event_log::EventLog;
use std::net::SocketAddr;
use std::sync::Arc;

use mock_upstream::MockUpstream;
use tokio_util::sync::CancellationToken;

use crate::auth::{self, Authenticator};
use crate::config::Config;
use crate::limits::Limits;
use crate::providers::Providers;
use crate::routing::Routing;
use crate::store::ledger::{ChangeFeed, Ledger, LedgerError, Nanos, NewKey};
use crate::store::{Responses, Store};

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot start the demo upstream: {0}")]
    Demo(std::io::Error),
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error("cannot open the event log: {0}")]
    EventLog(std::io::Error),
    #[error("durability = \"batched\" needs a journal (set `journal = \"FILE\"`): an answer given before its entry is committed must be recoverable")]
    BatchedWithoutJournal,
}

/// Content tokens of a demo answer: long enough to watch it stream.
const DEMO_TOKENS: u32 = 36;
/// The demo's wait before its first token when it is paced.
const DEMO_TTFT_MS: u32 = 200;

/// Sets the demo upstream's own options for a pace of `tokens_per_second` (0 = no delay at all).
fn set_demo_pace(demo: &MockUpstream, tokens_per_second: u32) {
    let mut options = serde_json::json!({"tokens": DEMO_TOKENS});
    if let Some(gap_ms) = 1000u32.checked_div(tokens_per_second) {
        options["ttft_ms"] = DEMO_TTFT_MS.into();
        options["gap_ms"] = gap_ms.into();
    }
    // Options the mock itself defines: it cannot refuse them.
    let _ = demo.set_options(options);
}

/// Everything a request needs, shared by all of them: one config generation. A request keeps
/// the generation it was admitted with (its own `Arc<Gateway>`) to its end; what must outlive a
/// generation (ledger, keys, limits, the end of streams, the event log, capture, OTLP export) is a
/// handle shared by all.
pub struct Gateway {
    pub config: Config,
    /// 1 at startup, one more for every reload applied.
    pub generation: u64,
    /// The database: stored Responses and captures; `ledger` is its money part.
    pub store: Store,
    pub ledger: Ledger,
    pub auth: Arc<Authenticator>,
    pub providers: Providers,
    /// Route health: breakers and time-to-first-token averages.
    pub routing: Routing,
    /// Per-key rate limits (in memory, or in Redis when configured).
    pub limits: Limits,
    pub admin_key: Option<String>,
    /// Cancelled when the shutdown grace is over: every stream still open ends with an error
    /// event and is settled.
    pub end_streams: CancellationToken,
    /// `[event_log]`: each settled request as a JSON line.
    pub events: Option<EventLog>,
    /// Per-key capture of prompt and completion text (`crate::capture`): writer and purge.
    pub captures: crate::capture::Captures,
    /// `[otlp]`: one span per request, exported in the background; `None` when not configured.
    pub otlp: Option<Arc<crate::otlp::Otlp>>,
    /// What runs for the whole process, whatever the generation.
    lasting: Arc<Lasting>,
}

/// Kept alive as long as any generation is.
struct Lasting {
    /// The in-process demo upstream of the embedded default.
    demo: Option<MockUpstream>,
    /// Key changes made by other instances and the CLI, on PostgreSQL (`ledger::changes`).
    _changes: Option<ChangeFeed>,
    /// Failed admin authentications by client address (`http::admin_guard`).
    admin_guard: crate::admin_guard::AdminGuard,
    /// Streams that outlive their connection (`relay::replay`).
    replays: Arc<crate::replay::Replays>,
}

/// A key created on a fresh database, to be shown once.
pub struct FirstKey {
    pub id: String,
    pub key: String,
    pub credits: Nanos,
}

impl Gateway {
    /// Builds the gateway. With `config` = `None` this is the embedded default: the demo upstream
    /// starts in-process and the real providers whose key variables are set are added.
    /// On a fresh database one key with the configured demo credits is created and returned.
    pub async fn build(
        config: Option<Config>,
        database_override: Option<String>,
    ) -> Result<(Arc<Gateway>, Option<FirstKey>, Vec<String>), StartError> {
        let (mut config, demo) = match config {
            Some(c) => (c, None),
            None => {
                let demo = MockUpstream::start_demo().await.map_err(StartError::Demo)?;
                let config = Config::embedded(&demo.base_url())?;
                set_demo_pace(&demo, config.demo_tokens_per_second);
                (config, Some(demo))
            }
        };
        if let Some(db) = database_override {
            config.database = db;
        }
        let journal = config
            .journal
            .clone()
            .or_else(|| crate::store::ledger::journal::default_path(&config.database));
        if config.durability == crate::store::ledger::Durability::Batched && journal.is_none() {
            return Err(StartError::BatchedWithoutJournal);
        }
        let event_log = match &config.event_log {
            Some(crate::event_log::EventLogTarget::File(p)) => Some(p.as_path()),
            _ => None,
        };
        crate::private_files::narrow(&crate::private_files::gateway_files(
            &config.database,
            journal.as_deref(),
            event_log,
        ));
        let ledger = Ledger::connect_with(&config.database, journal.as_deref(), config.instances)
            .await?
            .with_durability(config.durability);
        if let (Some((fault, every)), Some(j)) = (crate::config::journal_faults(), ledger.journal())
        {
            j.faults().fail_every(fault, every);
        }
        let mut first_key = None;
        if ledger.key_count().await? == 0 {
            let credits = Nanos::from_usd(config.demo_credits).unwrap_or(Nanos::ZERO);
            let (record, key) = auth::create_key(
                &ledger,
                &NewKey {
                    name: "default".into(),
                    credits,
                    ..NewKey::default()
                },
            )
            .await?;
            first_key = Some(FirstKey {
                id: record.id,
                key,
                credits,
            });
        }
        let (providers, mut problems) = Providers::new(&config).await;
        let admin_key = match &config.admin_key {
            Some(secret) => match crate::config::resolve_admin_key(secret).await {
                Ok(k) => Some(k),
                // Too short is refused outright: a guessable admin door is worse than none.
                Err(e @ crate::config::ConfigError::ShortAdminKey { .. }) => return Err(e.into()),
                Err(e) => {
                    problems.push(format!("admin_key: {e}"));
                    None
                }
            },
            None => None,
        };
        let limits = Limits::new(
            config.redis.as_deref(),
            config.redis_failure,
            config.redis_timeout,
        )
        .unwrap_or_else(|e| {
            problems.push(format!("redis: {e}; rate limits are kept in this process"));
            Limits::in_process()
        });
        if let Some(every) = config.key_refresh {
            auth::set_refresh_every(every);
            crate::store::ledger::accounts::set_refresh_after(every);
        }
        let auth = Authenticator::load(ledger.clone()).await?;
        let changes = ledger.follow_changes(&config.database)?;
        let events = match &config.event_log {
            Some(target) => Some(EventLog::open(target).map_err(StartError::EventLog)?),
            None => None,
        };
        let store = ledger.store().clone();
        let captures = crate::capture::Captures::start(store.captures(), &config.capture);
        purge_responses_from_now_on(store.responses(), config.responses.retention);
        let otlp = match &config.otlp {
            Some(o) => {
                let mut headers = std::collections::HashMap::new();
                for (name, secret) in &o.headers {
                    match secret.resolve().await {
                        Ok(v) => {
                            crate::redact::remember(v.trim());
                            headers.insert(name.clone(), v.trim().to_owned());
                        }
                        Err(e) => problems.push(format!("otlp.headers.{name}: {e}")),
                    }
                }
                // The SDK builds its blocking HTTP client on a thread of its own.
                match crate::otlp::Otlp::start(o, headers, &config) {
                    Ok(x) => Some(Arc::new(x)),
                    Err(e) => {
                        problems.push(e);
                        None
                    }
                }
            }
            None => None,
        };
        let streams = config.streams;
        let replay_mirror = limits.clone();
        let gw = Gateway {
            generation: 1,
            events,
            captures,
            otlp,
            auth: Arc::new(auth),
            store,
            ledger,
            routing: Routing::new(&config),
            limits,
            providers,
            admin_key,
            end_streams: CancellationToken::new(),
            config,
            lasting: Arc::new(Lasting {
                demo,
                _changes: changes,
                admin_guard: Default::default(),
                replays: Arc::new(crate::replay::Replays::new(streams, Some(replay_mirror))),
            }),
        };
        Ok((Arc::new(gw), first_key, problems))
    }

    /// Resumable streams and background Responses, for every generation.
    pub fn replays(&self) -> &Arc<crate::replay::Replays> {
        &self.lasting.replays
    }

    /// Failed admin authentications by client address, for every generation.
    pub fn admin_guard(&self) -> &crate::admin_guard::AdminGuard {
        &self.lasting.admin_guard
    }

    /// Changes the embedded demo upstream's pace (tokens per second, 0 = as fast as it can); no
    /// effect without the demo. Tests that do not watch the demo stream set 0.
    pub fn set_demo_pace(&self, tokens_per_second: u32) {
        if let Some(demo) = &self.lasting.demo {
            set_demo_pace(demo, tokens_per_second);
        }
    }

    /// The next generation: `config` (restart-only settings already kept) with the providers and
    /// admin key given, and everything that outlives a generation shared with this one.
    pub(crate) fn next(
        &self,
        config: Config,
        providers: Providers,
        routing: Routing,
        admin_key: Option<String>,
    ) -> Gateway {
        Gateway {
            config,
            generation: self.generation + 1,
            store: self.store.clone(),
            ledger: self.ledger.clone(),
            auth: self.auth.clone(),
            providers,
            routing,
            limits: self.limits.clone(),
            admin_key,
            end_streams: self.end_streams.clone(),
            events: self.events.clone(),
            captures: self.captures.clone(),
            otlp: self.otlp.clone(),
            lasting: self.lasting.clone(),
        }
    }
}

/// How often stored responses past their retention are purged.
const RESPONSES_PURGE_EVERY: std::time::Duration = std::time::Duration::from_secs(600);

/// Purges the stored responses older than `retention` now and every `RESPONSES_PURGE_EVERY`,
/// for as long as the process runs.
fn purge_responses_from_now_on(responses: Responses, retention: std::time::Duration) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(RESPONSES_PURGE_EVERY);
        loop {
            tick.tick().await;
            let before =
                crate::store::ledger::now_ms().saturating_sub(retention.as_millis() as i64);
            match responses.purge(before).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(purged = n, "stored responses past their retention purged"),
                Err(e) => tracing::warn!(error = %e, "stored responses could not be purged"),
            }
        }
    });
}
