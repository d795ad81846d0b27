//! The embedded default: the configuration used when no file is given.

use super::errors::{invalid, ConfigError};
use super::kinds::{ModelKind, ProviderKind};
use super::raw::{RawAuto, RawConfig, RawModel, RawProvider};
use super::secrets::Secret;
use super::{Config, DEMO_PROVIDER};

/// The demo upstream's models. The demo reads no option from a request (not even a route's model
/// suffix): its pace is set on the demo itself from `demo_tokens_per_second`.
const DEMO_CHAT_ROUTE: &str = "demo-chat";
const DEMO_REASONER_ROUTE: &str = "demo-reasoner";

/// Model names used by the seed documents' examples and the coding agents' defaults, and the demo
/// model that answers each of them in the embedded default when no real provider serves it.
pub(super) const SEED_MODEL_NAMES: &[(&str, &str)] = &[
    ("gpt-4o", "demo-chat"),
    ("claude-sonnet-4-5", "demo-chat"),
    ("gemini-2.5-flash", "demo-chat"),
    ("gpt-4", "demo-chat"),
    ("gpt-5.4", "demo-chat"),
    ("claude-sonnet-4", "demo-chat"),
    ("deepseek-chat", "demo-chat"),
    ("deepseek-reasoner", "demo-reasoner"),
];

/// The variable the embedded default reads the demo's pace from.
const DEMO_PACE_VARIABLE: &str = "SWITCHYARD_DEMO_TOKENS_PER_SECOND";
/// The variable the embedded default reads its admin key from.
const ADMIN_KEY_VARIABLE: &str = "SWITCHYARD_ADMIN_KEY";
/// The name the embedded default has in messages.
pub(super) const EMBEDDED: &str = "(embedded default)";

/// A real provider the embedded default serves when its usual key variable is set.
struct KnownProvider {
    name: &'static str,
    kind: ProviderKind,
    base_url: &'static str,
    /// The variable its key is read from (`api_key = "env:…"`), whose presence adds it.
    key_variable: &'static str,
    /// Its models: (name, upstream model, input, output, cached input price).
    models: &'static [(
        &'static str,
        &'static str,
        &'static str,
        &'static str,
        &'static str,
    )],
    /// The model it puts in `[auto].chain`.
    in_chain: &'static str,
}

/// The real providers, in the order their models join the `auto` chain (before `demo-chat`).
const KNOWN_PROVIDERS: &[KnownProvider] = &[
    KnownProvider {
        name: "openai",
        kind: ProviderKind::OpenAi,
        base_url: "https://api.openai.com/v1",
        key_variable: "OPENAI_API_KEY",
        models: &[
            ("gpt-4o", "gpt-4o", "2.50", "10.00", "1.25"),
            ("gpt-4o-mini", "gpt-4o-mini", "0.15", "0.60", "0.075"),
        ],
        in_chain: "gpt-4o-mini",
    },
    KnownProvider {
        name: "deepseek",
        kind: ProviderKind::DeepSeek,
        base_url: "https://api.deepseek.com/v1",
        key_variable: "DEEPSEEK_API_KEY",
        models: &[
            ("deepseek-chat", "deepseek-chat", "0.27", "1.10", "0.07"),
            (
                "deepseek-reasoner",
                "deepseek-reasoner",
                "0.55",
                "2.19",
                "0.14",
            ),
        ],
        in_chain: "deepseek-chat",
    },
    KnownProvider {
        name: "anthropic",
        kind: ProviderKind::Anthropic,
        base_url: "https://api.anthropic.com/v1",
        key_variable: "ANTHROPIC_API_KEY",
        models: &[(
            "claude-sonnet-4",
            "claude-sonnet-4-20250514",
            "3.00",
            "15.00",
            "0.30",
        )],
        in_chain: "claude-sonnet-4",
    },
];

impl Config {
    /// The configuration used when no file is given: the in-process demo upstream serving
    /// `demo-chat`, `demo-reasoner` and the embedding model `demo-embed`, plus every real provider
    /// whose usual key variable is set. `SWITCHYARD_DEMO_TOKENS_PER_SECOND` sets the demo's pace
    /// (default 40, 0 = as fast as possible) and `SWITCHYARD_ADMIN_KEY` the admin key (none: the
    /// admin API answers `admin_disabled`).
    pub fn embedded(demo_base_url: &str) -> Result<Config, ConfigError> {
        let raw = embedded_raw(demo_base_url, |name| std::env::var_os(name).is_some());
        let mut config =
            Config::from_raw(raw, "", EMBEDDED).expect("the embedded default is valid");
        config.embedded_demo = true;
        if let Some(value) = std::env::var_os(DEMO_PACE_VARIABLE) {
            let value = value.to_string_lossy();
            config.demo_tokens_per_second = value.trim().parse::<u32>().map_err(|_| {
                invalid(EMBEDDED)(format!(
                    "{DEMO_PACE_VARIABLE} = \"{value}\": expected a whole number of tokens per second (0 = as fast as possible)"
                ))
            })?;
        }
        if std::env::var_os(ADMIN_KEY_VARIABLE).is_some() {
            config.admin_key = Some(Secret::Env(ADMIN_KEY_VARIABLE.to_owned()));
        }
        Ok(config)
    }
}

/// The embedded default as a file would give it: the demo, each known provider whose key
/// variable `is_set`, the seed documents' model names the demo answers, and `[auto]`.
pub(super) fn embedded_raw(demo_base_url: &str, is_set: impl Fn(&str) -> bool) -> RawConfig {
    let mut raw = RawConfig::default();
    raw.providers.insert(
        DEMO_PROVIDER.to_owned(),
        RawProvider::new(ProviderKind::DeepSeek, demo_base_url, None),
    );
    let demo = |route: &str| format!("{DEMO_PROVIDER}/{route}");
    raw.models.insert(
        "demo-chat".into(),
        model(&demo(DEMO_CHAT_ROUTE), "0.50", Some("1.50"), None),
    );
    let reasoner = model(&demo(DEMO_REASONER_ROUTE), "0.55", Some("2.19"), None);
    raw.models.insert(
        "demo-reasoner".into(),
        RawModel {
            reasoning: Some(true),
            ..reasoner
        },
    );
    let embed = model(&demo("demo-embed"), "0.02", None, None);
    raw.models.insert(
        "demo-embed".into(),
        RawModel {
            kind: Some(ModelKind::Embedding),
            ..embed
        },
    );
    let mut chain = Vec::new();
    for p in KNOWN_PROVIDERS.iter().filter(|p| is_set(p.key_variable)) {
        let key = format!("env:{}", p.key_variable);
        let provider = RawProvider::new(p.kind, p.base_url, Some(&key));
        raw.providers.insert(p.name.to_owned(), provider);
        for (name, upstream, input, output, cached) in p.models {
            let route = format!("{}/{upstream}", p.name);
            let m = model(&route, input, Some(output), Some(cached));
            raw.models.insert((*name).to_owned(), m);
        }
        chain.push(p.in_chain);
    }
    chain.push("demo-chat");
    // The model names the seed documents' examples use are answered by the demo when no real
    // provider serves them, so those examples run offline with only the base URL and key changed.
    for (name, demo_model) in SEED_MODEL_NAMES {
        if !raw.models.contains_key(*name) {
            let route = if *demo_model == "demo-reasoner" {
                DEMO_REASONER_ROUTE
            } else {
                DEMO_CHAT_ROUTE
            };
            let m = model(&demo(route), "0.50", Some("1.50"), None);
            raw.models.insert((*name).to_owned(), m);
        }
    }
    raw.auto = Some(RawAuto {
        chain: chain.into_iter().map(|m| unspanned(m.to_owned())).collect(),
        fast: None,
        hedge_after_ms: Some(2000),
    });
    raw
}

/// A model served by `route` at these prices (USD per 1M tokens), everything else its default.
fn model(route: &str, input: &str, output: Option<&str>, cached_input: Option<&str>) -> RawModel {
    let price = |p: &str| Some(unspanned(p.to_owned()));
    RawModel {
        routes: vec![unspanned(route.to_owned())],
        input_price: price(input),
        output_price: output.and_then(price),
        cached_input_price: cached_input.and_then(price),
        ..RawModel::default()
    }
}

/// A value with no place in a file (the embedded default has no text: its line is never shown).
fn unspanned<T>(value: T) -> toml::Spanned<T> {
    toml::Spanned::new(0..0, value)
}
