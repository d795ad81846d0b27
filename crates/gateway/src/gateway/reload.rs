//! Live reload: `Live` holds the config generation now serving (`arc_swap`), and `Live::reload`
//! reads the config file again, validates it, resolves the secrets it needs, builds the next
//! generation and swaps it in. A request keeps the generation it started with; a refused reload
//! changes nothing. Reloads run one at a time (`POST /admin/reload`, SIGHUP).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use arc_swap::ArcSwap;
use serde::Serialize;

use super::Gateway;
use crate::config::{Config, ConfigError, Route, SecretProblem};
use crate::telemetry;

/// The generation now serving, shared by the server, its handlers and the SIGHUP task.
#[derive(Clone)]
pub struct Live(Arc<Inner>);

struct Inner {
    current: ArcSwap<Gateway>,
    /// The file the config comes from (`None`: the embedded default, or a config given as text).
    source: Option<PathBuf>,
    /// `--database` / `SWITCHYARD_DATABASE`, applied to every reloaded config as at startup.
    database_override: Option<String>,
    /// One reload at a time.
    reloading: tokio::sync::Mutex<()>,
}

/// Why a reload was refused; the previous config keeps serving.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("there is no config file to reload: the gateway was started without --config")]
    NoConfigFile,
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("{}", secrets_message(.0))]
    Secrets(Vec<SecretProblem>),
}

fn secrets_message(problems: &[SecretProblem]) -> String {
    let list: Vec<String> = problems.iter().map(ToString::to_string).collect();
    format!("secrets that do not resolve: {}", list.join("; "))
}

/// What one group of names (providers, models, routes) gained, lost and saw change.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Changes {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub changed: Vec<String>,
}

/// `+added -removed ~changed`, or `unchanged`: for the log line.
impl std::fmt::Display for Changes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.is_empty() {
            return f.write_str("unchanged");
        }
        let mut parts = Vec::new();
        for (sign, names) in [
            ("+", &self.added),
            ("-", &self.removed),
            ("~", &self.changed),
        ] {
            parts.extend(names.iter().map(|n| format!("{sign}{n}")));
        }
        f.write_str(&parts.join(" "))
    }
}

impl Changes {
    fn between<V: PartialEq>(old: &BTreeMap<String, V>, new: &BTreeMap<String, V>) -> Changes {
        let mut c = Changes::default();
        for (name, v) in new {
            match old.get(name) {
                None => c.added.push(name.clone()),
                Some(o) if o != v => c.changed.push(name.clone()),
                Some(_) => {}
            }
        }
        c.removed = old
            .keys()
            .filter(|k| !new.contains_key(*k))
            .cloned()
            .collect();
        c
    }

    fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty()
    }
}

/// An applied reload: what changed, and what keeps its old value until a restart.
#[derive(Debug, Clone, Serialize)]
pub struct Reloaded {
    /// The generation now serving.
    pub generation: u64,
    pub providers: Changes,
    pub models: Changes,
    /// `model: provider/upstream-model`; changed = new prices or time limits.
    pub routes: Changes,
    /// Other settings applied: `routing`, `admin_key`, `keep_alive`, `max_body_bytes`.
    pub settings: Vec<&'static str>,
    /// Settings the file changed that only a restart applies; they keep their old value.
    pub needs_restart: Vec<&'static str>,
}

/// Every route of every configured model (automatic models' chains left out: their members are
/// models of their own), by `model: provider/upstream-model`.
fn routes_of(config: &Config) -> BTreeMap<String, Route> {
    config
        .models
        .values()
        .filter(|m| m.auto.is_none())
        .flat_map(|m| m.routes.iter())
        .map(|r| (format!("{}: {}", r.model, r.id), r.clone()))
        .collect()
}

impl Live {
    /// Starts with `first`; `source` is the config file a reload reads again.
    pub fn new(
        first: Arc<Gateway>,
        source: Option<PathBuf>,
        database_override: Option<String>,
    ) -> Live {
        telemetry::declare_reload_metrics(first.generation);
        Live(Arc::new(Inner {
            current: ArcSwap::new(first),
            source,
            database_override,
            reloading: tokio::sync::Mutex::new(()),
        }))
    }

    /// The generation serving now; the caller keeps it as long as it holds the `Arc`.
    pub fn current(&self) -> Arc<Gateway> {
        self.0.current.load_full()
    }

    /// Reads the config file again and applies it, or refuses it (the reason, with its line when
    /// the file is at fault) and keeps the current one. Logs either way.
    pub async fn reload(&self) -> Result<Reloaded, ReloadError> {
        let _one_at_a_time = self.0.reloading.lock().await;
        let current = self.current();
        let result = self.next_generation(&current).await;
        match &result {
            Ok((next, reloaded)) => {
                self.0.current.store(next.clone());
                telemetry::record_reload(true, reloaded.generation);
                tracing::info!(
                    generation = reloaded.generation,
                    providers = %reloaded.providers,
                    models = %reloaded.models,
                    routes = %reloaded.routes,
                    settings = ?reloaded.settings,
                    "config reloaded"
                );
                if !reloaded.needs_restart.is_empty() {
                    tracing::warn!(
                        settings = ?reloaded.needs_restart,
                        "config reload: these settings changed in the file but need a restart; their old values stay in use"
                    );
                }
            }
            Err(e) => {
                telemetry::record_reload(false, current.generation);
                tracing::error!(
                    generation = current.generation,
                    "config reload refused, the current config stays: {e}"
                );
            }
        }
        result.map(|(_, r)| r)
    }

    async fn next_generation(
        &self,
        current: &Gateway,
    ) -> Result<(Arc<Gateway>, Reloaded), ReloadError> {
        let path = self.0.source.as_deref().ok_or(ReloadError::NoConfigFile)?;
        let mut config = Config::load(path)?;
        if let Some(db) = &self.0.database_override {
            config.database = db.clone();
        }
        let old = &current.config;
        let needs_restart = config.keep_restart_settings(old);

        // Resolved again even when its reference is the same: a reload rotates a `file:` or
        // `cmd:` admin key.
        let admin = async {
            match &config.admin_key {
                None => Ok(None),
                Some(secret) => crate::config::resolve_admin_key(secret)
                    .await
                    .map(Some)
                    .map_err(|e| SecretProblem {
                        setting: "admin_key".into(),
                        message: e.to_string(),
                    }),
            }
        };
        let (admin_key, providers) = tokio::join!(admin, current.providers.carry_over(&config));
        let mut problems = match &providers {
            Err(p) => p.clone(),
            Ok(_) => Vec::new(),
        };
        if let Err(p) = &admin_key {
            problems.push(p.clone());
        }
        let (Ok(admin_key), Ok((providers, rebuilt))) = (admin_key, providers) else {
            return Err(ReloadError::Secrets(problems));
        };

        let mut settings = Vec::new();
        if config.routing != old.routing {
            settings.push("routing");
        }
        if admin_key != current.admin_key {
            settings.push("admin_key");
        }
        if config.keep_alive != old.keep_alive {
            settings.push("keep_alive");
        }
        if config.max_body_bytes != old.max_body_bytes {
            settings.push("max_body_bytes");
        }
        let provider_changes = Changes::between(&old.providers, &config.providers);
        let mut route_changes = Changes::between(&routes_of(old), &routes_of(&config));
        for (name, route) in routes_of(&config) {
            let provider = route.provider();
            if rebuilt.iter().any(|p| p == provider)
                && !provider_changes.added.iter().any(|p| p == provider)
                && !route_changes.added.contains(&name)
                && !route_changes.changed.contains(&name)
            {
                route_changes.changed.push(name);
            }
        }
        route_changes.changed.sort();
        let reloaded = Reloaded {
            generation: current.generation + 1,
            providers: provider_changes,
            models: Changes::between(&old.models, &config.models),
            routes: route_changes,
            settings,
            needs_restart,
        };
        // A provider at another address or speaking another dialect is another upstream: its
        // routes start with fresh health. Other changes (quotas, time limits, credential) keep it.
        let moved: Vec<String> = config
            .providers
            .iter()
            .filter(|(name, p)| {
                old.providers
                    .get(*name)
                    .is_some_and(|o| o.base_url != p.base_url || o.kind != p.kind)
            })
            .map(|(name, _)| name.clone())
            .collect();
        let routing = current.routing.carry_over(&config, &moved);
        let next = current.next(config, providers, routing, admin_key);
        Ok((Arc::new(next), reloaded))
    }
}

impl Reloaded {
    /// Whether the file changed nothing that applies.
    pub fn nothing_changed(&self) -> bool {
        self.providers.is_empty()
            && self.models.is_empty()
            && self.routes.is_empty()
            && self.settings.is_empty()
    }
}
