//! `[models]` and `[auto]` validated into `ModelConfig`s, routes resolved against the providers.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use rust_decimal::Decimal;

use super::errors::{invalid, line_of, ConfigError};
use super::kinds::{ModelKind, Strategy};
use super::model::{
    AutoKind, Modalities, ModelConfig, Route, DEFAULT_CONTEXT_LENGTH,
    DEFAULT_EMBEDDING_CONTEXT_LENGTH, WEIGHT_UNIT,
};
use super::prices::{model_cache_prices, raw_prices};
use super::provider::{ProviderConfig, Timeouts};
use super::providers::Pools;
use super::raw::{RawAuto, RawModalities, RawModel};
use super::route_id::RouteId;
use super::{AUTO_FAST_MODEL, AUTO_MODEL};
use crate::store::ledger::Prices;

/// `[models]` and `[auto]` validated: every configured model, and `auto` and `auto-fast` when
/// `[auto]` is there.
pub(super) fn models(
    text: &str,
    path: &str,
    raw: BTreeMap<String, RawModel>,
    auto: Option<&RawAuto>,
    providers: &BTreeMap<String, Arc<ProviderConfig>>,
    pools: &Pools,
) -> Result<BTreeMap<String, Arc<ModelConfig>>, ConfigError> {
    let mut models = BTreeMap::new();
    for (name, m) in raw {
        let model = model(text, path, name.clone(), &m, providers, pools)?;
        models.insert(name, Arc::new(model));
    }
    if let Some(auto) = auto {
        let chain = auto_chain(text, path, &models, "chain", &auto.chain)?;
        let fast = match &auto.fast {
            Some(f) => auto_chain(text, path, &models, "fast", f)?,
            None => chain.clone(),
        };
        let hedge_after = auto.hedge_after_ms.map(Duration::from_millis);
        for (name, kind, members) in [
            (AUTO_MODEL, AutoKind::Chain, chain),
            (AUTO_FAST_MODEL, AutoKind::Fastest { hedge_after }, fast),
        ] {
            models.insert(name.to_owned(), Arc::new(auto_model(name, kind, &members)));
        }
    }
    Ok(models)
}

/// One configured model: its routes resolved (a pool's route one per member), its prices,
/// capabilities and time limits.
fn model(
    text: &str,
    path: &str,
    name: String,
    m: &RawModel,
    providers: &BTreeMap<String, Arc<ProviderConfig>>,
    pools: &Pools,
) -> Result<ModelConfig, ConfigError> {
    let invalid = invalid(path);
    let routes = weighted_routes(text, &name, m, providers, pools).map_err(&invalid)?;
    let prices = raw_prices(text, path, &name, m)?;
    if name == AUTO_MODEL || name == AUTO_FAST_MODEL {
        return Err(invalid(format!(
            "models.\"{name}\": the name is reserved for the automatic model; configure it with [auto]"
        )));
    }
    let kind = m.kind.unwrap_or_default();
    let modalities = modalities(&name, kind, m.modalities.as_ref()).map_err(&invalid)?;
    if m.context_length == Some(0) {
        return Err(invalid(format!(
            "models.\"{name}\".context_length must be above 0"
        )));
    }
    let routes = routes
        .into_iter()
        .map(|(id, weight)| {
            let provider = &providers[id.provider()];
            let (t, kind) = (&provider.timeouts, provider.kind);
            let ms = |v: Option<u64>, d: Duration| v.map(Duration::from_millis).unwrap_or(d);
            Route {
                timeouts: Timeouts {
                    connect: ms(m.connect_timeout_ms, t.connect),
                    first_token: ms(m.first_token_timeout_ms, t.first_token),
                    idle: ms(m.idle_timeout_ms, t.idle),
                    total: ms(m.total_timeout_ms, t.total),
                },
                id,
                model: name.clone(),
                prices: prices.clone().with_cache_defaults(kind.cache_ratios()),
                weight,
            }
        })
        .collect::<Vec<_>>();
    Ok(ModelConfig {
        prices: model_cache_prices(prices, &routes),
        name,
        routes,
        max_output_tokens: m.max_output_tokens.unwrap_or(DEFAULT_MAX_OUTPUT),
        auto: None,
        kind,
        context_length: m.context_length.unwrap_or(match kind {
            ModelKind::Chat => DEFAULT_CONTEXT_LENGTH,
            ModelKind::Embedding => DEFAULT_EMBEDDING_CONTEXT_LENGTH,
        }),
        modalities,
        reasoning: m.reasoning.unwrap_or(false),
        commit_after: m.commit_after_ms.map(Duration::from_millis),
        strategy: m.strategy.unwrap_or_default(),
        affinity: m.affinity.unwrap_or(true),
    })
}

/// A model's routes as (route, weight): each `provider/model` checked against the providers, and
/// a pooled route one route per member sharing its weight. Each route's `RouteId` is made here,
/// once.
fn weighted_routes(
    text: &str,
    name: &str,
    m: &RawModel,
    providers: &BTreeMap<String, Arc<ProviderConfig>>,
    pools: &Pools,
) -> Result<Vec<(RouteId, u64)>, String> {
    if m.routes.is_empty() {
        return Err(format!("models.\"{name}\".routes is empty"));
    }
    let mut routes = Vec::new();
    for r in &m.routes {
        let line = line_of(text, r.span().start);
        let (provider, upstream_model) =
            RouteId::split(r.get_ref()).map_err(|e| format!("line {line}: {e}"))?;
        let members = match pools.get(provider) {
            Some(members) => members.clone(),
            None if providers.contains_key(provider) => vec![provider.to_owned()],
            None => {
                return Err(format!(
                    "line {line}: route \"{}\" names provider \"{provider}\", which is not defined (known: {})",
                    r.get_ref(),
                    providers.keys().cloned().collect::<Vec<_>>().join(", ")
                ))
            }
        };
        routes.push((members, upstream_model.to_owned()));
    }
    let weights = match &m.weights {
        None => vec![1; routes.len()],
        Some(w) if w.len() != routes.len() || w.contains(&0) => {
            return Err(format!(
                "models.\"{name}\".weights must give each of its {} routes a weight above 0",
                routes.len()
            ))
        }
        Some(w) => w.clone(),
    };
    Ok(routes
        .into_iter()
        .zip(weights)
        .flat_map(|((members, upstream), w)| {
            let share = u64::from(w) * WEIGHT_UNIT / members.len().max(1) as u64;
            members
                .into_iter()
                .map(move |p| (RouteId::new(&p, &upstream), share))
        })
        .collect())
}

/// A model's `modalities`: as configured (neither side empty), else its kind's defaults.
fn modalities(
    name: &str,
    kind: ModelKind,
    raw: Option<&RawModalities>,
) -> Result<Modalities, String> {
    match raw {
        None => Ok(Modalities::default_for(kind)),
        Some(RawModalities { input, output }) if input.is_empty() || output.is_empty() => {
            Err(format!(
                "models.\"{name}\".modalities: input and output must each name at least one modality (e.g. [\"text\"])"
            ))
        }
        Some(RawModalities { input, output }) => Ok(Modalities {
            input: input.clone(),
            output: output.clone(),
        }),
    }
}

/// The configured models named by `[auto].<field>`, in order.
fn auto_chain(
    text: &str,
    path: &str,
    models: &BTreeMap<String, Arc<ModelConfig>>,
    field: &str,
    names: &[toml::Spanned<String>],
) -> Result<Vec<Arc<ModelConfig>>, ConfigError> {
    let invalid = invalid(path);
    if names.is_empty() {
        return Err(invalid(format!("auto.{field} is empty")));
    }
    names
        .iter()
        .map(|n| {
            if let Some(m) = models.get(n.get_ref()).filter(|m| m.kind != ModelKind::Chat) {
                return Err(invalid(format!(
                    "line {}: auto.{field} names model \"{}\", an embedding model; the chain takes chat models only",
                    line_of(text, n.span().start),
                    m.name
                )));
            }
            models.get(n.get_ref()).cloned().ok_or_else(|| {
                invalid(format!(
                    "line {}: auto.{field} names model \"{}\", which is not defined (known: {})",
                    line_of(text, n.span().start),
                    n.get_ref(),
                    models.keys().cloned().collect::<Vec<_>>().join(", ")
                ))
            })
        })
        .collect()
}

/// An automatic model: the routes of its members in order; holds priced at the dearest member.
fn auto_model(name: &str, kind: AutoKind, members: &[Arc<ModelConfig>]) -> ModelConfig {
    let routes: Vec<Route> = members.iter().flat_map(|m| m.routes.clone()).collect();
    let mut prices = Prices::default();
    for m in members {
        prices.input = prices.input.max(m.prices.input);
        prices.output = prices.output.max(m.prices.output);
        let dearer = |a: Option<Decimal>, b: Option<Decimal>| match (a, b) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        prices.cached_input = dearer(prices.cached_input, m.prices.cached_input);
        prices.cache_write = dearer(prices.cache_write, m.prices.cache_write);
        prices.cache_write_1h = dearer(prices.cache_write_1h, m.prices.cache_write_1h);
    }
    ModelConfig {
        name: name.to_owned(),
        routes,
        prices,
        max_output_tokens: members
            .iter()
            .map(|m| m.max_output_tokens)
            .max()
            .unwrap_or(0),
        auto: Some(kind),
        kind: ModelKind::Chat,
        context_length: members
            .iter()
            .map(|m| m.context_length)
            .min()
            .unwrap_or(DEFAULT_CONTEXT_LENGTH),
        modalities: Modalities::default_for(ModelKind::Chat),
        reasoning: members.iter().any(|m| m.reasoning),
        // The chain's members may differ; an automatic model follows `[routing]`.
        commit_after: None,
        strategy: Strategy::Failover,
        affinity: true,
    }
}

/// A model's `max_output_tokens` when it sets none.
const DEFAULT_MAX_OUTPUT: u64 = 32_768;
