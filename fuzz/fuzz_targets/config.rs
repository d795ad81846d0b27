//! Fuzzes the config parser (`switchyard::config::Config::parse`) with arbitrary text. The parse path
//! only records secret references (`env:`, `file:`, `cmd:`); nothing is read or run until a secret is
//! resolved, which this target never does.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchyard::config::Config;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Config::parse(text, "fuzz.toml") {
        Ok(config) => {
            for model in config.models.values() {
                assert!(!model.routes.is_empty(), "a model without routes was accepted");
                for route in &model.routes {
                    assert!(config.providers.contains_key(&route.provider));
                }
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
