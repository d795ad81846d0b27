//! Fuzzes the config parser (`switchyard::config::Config::parse`) with arbitrary text. The parse path
//! only records secret references (`env:`, `file:`, `cmd:`); nothing is read or run until a secret is
//! resolved, which this target never does. An accepted config must be usable: every route names a
//! provider, and its models' prices can price any request (the hold and the cost) without a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchyard::config::Config;
use switchyard_wire::usage::Usage;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Config::parse(text, "fuzz.toml") {
        Ok(config) => {
            for model in config.models.values() {
                assert!(
                    !model.routes.is_empty(),
                    "a model without routes was accepted"
                );
                for route in &model.routes {
                    assert!(config.providers.contains_key(route.provider()));
                    let _ = route.prices.worst_case(u64::MAX, u64::MAX);
                }
                let most = Usage {
                    prompt_tokens: u64::MAX,
                    completion_tokens: u64::MAX,
                    cached_tokens: u64::MAX / 2,
                    cache_write_tokens: u64::MAX / 4,
                    cache_write_1h_tokens: u64::MAX / 8,
                    reasoning_tokens: u64::MAX,
                };
                let _ = model.prices.cost(&most).total();
                for route in &model.routes {
                    let _ = route.prices.cost(&most).total();
                }
                let _ = model.prices.worst_case(u64::MAX, model.max_output_tokens);
            }
            for provider in config.providers.values() {
                if let Some(secret) = &provider.api_key {
                    let _ = (secret.describe(), format!("{secret:?}"));
                }
            }
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
});
