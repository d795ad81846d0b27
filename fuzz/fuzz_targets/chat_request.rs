//! Fuzzes the chat request door: `ChatRequest::parse` on arbitrary bytes, then everything the gateway
//! does with an accepted request before calling an upstream: the upstream body (which must parse
//! again to the same request), the prompt text, and the admission's worst case on OpenAI, DeepSeek
//! and Anthropic routes (`relay::admission::worst_case`, which reads media sizes from inline images).
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;
use switchyard::config::Config;
use switchyard::relay::admission::worst_case;
use switchyard_wire::openai::ChatRequest;

/// One model with a route in each dialect; secrets are `env:` references, never read.
const CONFIG: &str = r#"
[providers.openai]
kind = "openai"
base_url = "https://openai.invalid/v1"
api_key = "env:FUZZ_UNSET"
[providers.deepseek]
kind = "deepseek"
base_url = "https://deepseek.invalid"
[providers.anthropic]
kind = "anthropic"
base_url = "https://anthropic.invalid"
[models."m"]
routes = ["openai/gpt-4o", "deepseek/deepseek-chat", "anthropic/claude-sonnet-4-5"]
input_price = "3"
output_price = "15"
max_output_tokens = 64000
"#;

fn config() -> &'static Config {
    static CONFIG_CELL: OnceLock<Config> = OnceLock::new();
    CONFIG_CELL.get_or_init(|| Config::parse(CONFIG, "fuzz.toml").expect("the fuzz config parses"))
}

fuzz_target!(|data: &[u8]| {
    let Ok(req) = ChatRequest::parse(data) else {
        return;
    };
    assert!(!req.model.is_empty());
    assert!(
        !req.body.contains_key("mock"),
        "the mock field is never forwarded"
    );
    let upstream = req.upstream_body("upstream-model");
    let again = ChatRequest::parse(&upstream).expect("the upstream body is a valid request");
    assert_eq!(again.model, "upstream-model");
    assert_eq!(again.stream, req.stream);
    assert_eq!(again.max_tokens, req.max_tokens);
    assert!(
        !req.stream || again.include_usage,
        "a stream always asks for usage"
    );
    let _ = (req.prompt_text(), req.message_count());
    let config = config();
    let bound = worst_case(&config.providers, &config.models["m"], &req);
    assert!(bound.tokens > 0);
});
