//! The embedded default: the configuration used when no file is given.

use super::errors::ConfigError;
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

const OPENAI_DEFAULTS: &str = r#"
[providers.openai]
kind = "openai"
base_url = "https://api.openai.com/v1"
api_key = "env:OPENAI_API_KEY"

[models."gpt-4o"]
routes = ["openai/gpt-4o"]
input_price = "2.50"
output_price = "10.00"
cached_input_price = "1.25"

[models."gpt-4o-mini"]
routes = ["openai/gpt-4o-mini"]
input_price = "0.15"
output_price = "0.60"
cached_input_price = "0.075"
"#;

const DEEPSEEK_DEFAULTS: &str = r#"
[providers.deepseek]
kind = "deepseek"
base_url = "https://api.deepseek.com/v1"
api_key = "env:DEEPSEEK_API_KEY"

[models."deepseek-chat"]
routes = ["deepseek/deepseek-chat"]
input_price = "0.27"
output_price = "1.10"
cached_input_price = "0.07"

[models."deepseek-reasoner"]
routes = ["deepseek/deepseek-reasoner"]
input_price = "0.55"
output_price = "2.19"
cached_input_price = "0.14"
"#;

const ANTHROPIC_DEFAULTS: &str = r#"
[providers.anthropic]
kind = "anthropic"
base_url = "https://api.anthropic.com/v1"
api_key = "env:ANTHROPIC_API_KEY"

[models."claude-sonnet-4"]
routes = ["anthropic/claude-sonnet-4-20250514"]
input_price = "3.00"
output_price = "15.00"
cached_input_price = "0.30"
"#;

impl Config {
    /// The configuration used when no file is given: the in-process demo upstream serving
    /// `demo-chat`, `demo-reasoner` and the embedding model `demo-embed`, plus every real provider
    /// whose usual key variable is set. `SWITCHYARD_DEMO_TOKENS_PER_SECOND` sets the demo's pace
    /// (default 40, 0 = as fast as possible) and `SWITCHYARD_ADMIN_KEY` the admin key (none: the
    /// admin API answers `admin_disabled`).
    pub fn embedded(demo_base_url: &str) -> Result<Config, ConfigError> {
        let mut text = format!(
            r#"
[providers.{DEMO_PROVIDER}]
kind = "deepseek"
base_url = "{demo_base_url}"

[models."demo-chat"]
routes = ["{DEMO_PROVIDER}/{DEMO_CHAT_ROUTE}"]
input_price = "0.50"
output_price = "1.50"

[models."demo-reasoner"]
routes = ["{DEMO_PROVIDER}/{DEMO_REASONER_ROUTE}"]
input_price = "0.55"
output_price = "2.19"
reasoning = true

[models."demo-embed"]
kind = "embedding"
routes = ["{DEMO_PROVIDER}/demo-embed"]
input_price = "0.02"
"#
        );
        let mut chain = Vec::new();
        if std::env::var_os("OPENAI_API_KEY").is_some() {
            text.push_str(OPENAI_DEFAULTS);
            chain.push("gpt-4o-mini");
        }
        if std::env::var_os("DEEPSEEK_API_KEY").is_some() {
            text.push_str(DEEPSEEK_DEFAULTS);
            chain.push("deepseek-chat");
        }
        if std::env::var_os("ANTHROPIC_API_KEY").is_some() {
            text.push_str(ANTHROPIC_DEFAULTS);
            chain.push("claude-sonnet-4");
        }
        chain.push("demo-chat");
        // The model names the seed documents' examples use are answered by the demo when no real
        // provider serves them, so those examples run offline with only the base URL and key changed.
        for (name, demo) in SEED_MODEL_NAMES {
            if !text.contains(&format!("[models.\"{name}\"]")) {
                let route = if *demo == "demo-reasoner" {
                    DEMO_REASONER_ROUTE
                } else {
                    DEMO_CHAT_ROUTE
                };
                text.push_str(&format!(
                    "\n[models.\"{name}\"]\nroutes = [\"{DEMO_PROVIDER}/{route}\"]\ninput_price = \"0.50\"\noutput_price = \"1.50\"\n"
                ));
            }
        }
        let chain: Vec<String> = chain.iter().map(|m| format!("\"{m}\"")).collect();
        text.push_str(&format!(
            "\n[auto]\nchain = [{}]\nhedge_after_ms = 2000\n",
            chain.join(", ")
        ));
        let mut config =
            Config::parse(&text, "(embedded default)").expect("the embedded default is valid");
        config.embedded_demo = true;
        if let Some(value) = std::env::var_os(DEMO_PACE_VARIABLE) {
            let value = value.to_string_lossy();
            config.demo_tokens_per_second =
                value
                    .trim()
                    .parse::<u32>()
                    .map_err(|_| ConfigError::Invalid {
                        path: "(embedded default)".to_owned(),
                        message: format!(
                        "{DEMO_PACE_VARIABLE} = \"{value}\": expected a whole number of tokens per second (0 = as fast as possible)"
                    ),
                    })?;
        }
        if std::env::var_os(ADMIN_KEY_VARIABLE).is_some() {
            config.admin_key = Some(Secret::Env(ADMIN_KEY_VARIABLE.to_owned()));
        }
        Ok(config)
    }
}
