//! The configuration's unit tests: parsing, validation, secrets and the embedded default.

use super::embedded::{embedded_raw, EMBEDDED, SEED_MODEL_NAMES};
use super::prices::MAX_PRICE;
use super::*;
use crate::store::ledger::Prices;
#[test]
fn native_responses_defaults_to_openai_itself_only() {
    use super::provider::native_responses;
    use super::ProviderKind as K;
    let openai = "https://api.openai.com/v1";
    assert_eq!(native_responses(K::OpenAi, openai, None), Ok(true));
    assert_eq!(native_responses(K::OpenAi, openai, Some(false)), Ok(false));
    for other in [
        "http://127.0.0.1:8000/v1",
        "https://api.openai.com.example/v1",
        "https://proxy.example/api.openai.com/v1",
    ] {
        assert_eq!(
            native_responses(K::OpenAi, other, None),
            Ok(false),
            "{other}"
        );
    }
    assert_eq!(
        native_responses(K::OpenAi, "http://127.0.0.1:1/v1", Some(true)),
        Ok(true)
    );
    assert_eq!(native_responses(K::DeepSeek, openai, None), Ok(false));
    assert!(native_responses(K::Anthropic, "https://x", Some(true)).is_err());
}

const GOOD: &str = r#"
listen = "127.0.0.1:9000"
[providers.openai]
kind = "openai"
base_url = "https://api.openai.com/v1/"
api_key = "env:SOME_KEY"

[models."gpt-4o"]
routes = ["openai/gpt-4o"]
input_price = "2.50"
output_price = "10.00"
"#;

#[test]
fn capture_and_otlp_are_off_or_bounded() {
    let c = Config::parse(GOOD, "t.toml").unwrap();
    assert!(c.otlp.is_none());
    assert_eq!(c.capture, CaptureConfig::default());
    let with = |extra: &str| Config::parse(&format!("{GOOD}\n{extra}"), "t.toml");
    let c = with(
        "[capture]\nmax_bytes = 1024\nredact = [\"secret-\\\\d+\"]\n\
             [otlp]\nendpoint = \"http://collector:4318/\"\nsample_ratio = 0.5\n\
             headers = { \"x-token\" = \"env:OTLP_TOKEN\" }",
    )
    .unwrap();
    assert_eq!(c.capture.max_bytes, 1024);
    assert_eq!(c.capture.redact, vec![r"secret-\d+".to_owned()]);
    let o = c.otlp.unwrap();
    assert_eq!(o.endpoint, "http://collector:4318");
    assert_eq!(o.service_name, "switchyard");
    assert_eq!(o.headers["x-token"].describe(), "env:OTLP_TOKEN");
    for (bad, says) in [
        ("[capture]\nredact = [\"(\"]", "capture.redact"),
        ("[capture]\nmax_retention_hours = 0", "max_retention_hours"),
        (
            "[capture]\nmax_retention_hours = 24\ndefault_retention_hours = 48",
            "default_retention_hours",
        ),
        ("[capture]\nmax_bytes = 10", "capture.max_bytes"),
        ("[otlp]\nendpoint = \"collector:4318\"", "otlp.endpoint"),
        (
            "[otlp]\nendpoint = \"http://c:4318\"\nsample_ratio = 2.0",
            "sample_ratio",
        ),
        (
            "[otlp]\nendpoint = \"http://c:4318\"\nprotocol = \"grpc\"",
            "protocol",
        ),
    ] {
        let e = with(bad).unwrap_err().to_string();
        assert!(e.contains(says), "{bad}: {e}");
    }
}

#[test]
fn a_gemini_provider_needs_no_base_url_and_others_do() {
    let gemini = "[providers.g]\nkind = \"gemini\"\napi_key = \"env:GEMINI_API_KEY\"\n\
            [models.flash]\nroutes = [\"g/gemini-2.5-flash\"]\ninput_price = \"0.30\"\noutput_price = \"2.50\"\n";
    let c = Config::parse(gemini, "t.toml").unwrap();
    let p = &c.providers["g"];
    assert_eq!(p.kind, ProviderKind::Gemini);
    assert_eq!(p.base_url, GEMINI_BASE_URL);
    let openai = gemini.replace("\"gemini\"", "\"openai\"");
    let e = Config::parse(&openai, "t.toml").unwrap_err().to_string();
    assert!(e.contains("providers.g.base_url is required"), "{e}");
}

#[test]
fn parses_a_good_config() {
    let c = Config::parse(GOOD, "t.toml").unwrap();
    assert_eq!(c.listen.port(), 9000);
    let p = &c.providers["openai"];
    assert_eq!(p.base_url, "https://api.openai.com/v1");
    assert_eq!(p.api_key, Some(Secret::Env("SOME_KEY".into())));
    let m = &c.models["gpt-4o"];
    assert_eq!(m.routes[0].upstream_model(), "gpt-4o");
    assert_eq!(m.prices.output, Decimal::new(1000, 2));
}

#[test]
fn durability_is_durable_unless_batched_is_asked_for() {
    use crate::store::ledger::Durability;
    assert_eq!(
        Config::parse(GOOD, "t.toml").unwrap().durability,
        Durability::Durable
    );
    let batched = format!("durability = \"batched\"\n{GOOD}");
    assert_eq!(
        Config::parse(&batched, "t.toml").unwrap().durability,
        Durability::Batched
    );
    let wrong = format!("durability = \"lazy\"\n{GOOD}");
    let e = Config::parse(&wrong, "t.toml").unwrap_err().to_string();
    assert!(e.contains("durability = \"lazy\""), "{e}");
}

#[test]
fn instances_are_single_unless_shared_is_asked_for() {
    use crate::store::ledger::Instances;
    assert_eq!(
        Config::parse(GOOD, "t.toml").unwrap().instances,
        Instances::Single
    );
    let shared = format!("instances = \"shared\"\n{GOOD}");
    assert_eq!(
        Config::parse(&shared, "t.toml").unwrap().instances,
        Instances::Shared
    );
    let wrong = format!("instances = \"many\"\n{GOOD}");
    let e = Config::parse(&wrong, "t.toml").unwrap_err().to_string();
    assert!(e.contains("instances = \"many\""), "{e}");
}

#[test]
fn server_limits_have_defaults_and_can_be_set() {
    let c = Config::parse(GOOD, "t.toml").unwrap();
    assert_eq!(c.server, ServerLimits::default());
    assert_eq!(c.server.header_read_timeout, Duration::from_secs(10));
    assert_eq!(c.server.max_connections_per_ip, Some(1_024));
    let text = format!(
            "{GOOD}\n[server]\nheader_read_timeout_ms = 500\nbody_read_timeout_ms = 600\nidle_timeout_ms = 700\nmax_connections = 5\nmax_connections_per_ip = 0\nmax_header_bytes = 4096\nslow_reader_timeout_ms = 800\nshutdown_grace_ms = 900\ntrusted_proxies = [\"10.0.0.0/8\", \"192.0.2.7\"]\nadmin_lockout_after = 0\nadmin_lockout_ms = 1000\n"
        );
    let s = Config::parse(&text, "t.toml").unwrap().server;
    assert_eq!(
        s,
        ServerLimits {
            header_read_timeout: Duration::from_millis(500),
            body_read_timeout: Duration::from_millis(600),
            idle_timeout: Duration::from_millis(700),
            max_connections: 5,
            max_connections_per_ip: None,
            max_header_bytes: 4096,
            slow_reader_timeout: Duration::from_millis(800),
            shutdown_grace: Duration::from_millis(900),
            trusted_proxies: vec![
                "10.0.0.0/8".parse().unwrap(),
                "192.0.2.7/32".parse().unwrap()
            ],
            admin_lockout_after: 0,
            admin_lockout: Duration::from_secs(1),
        }
    );
}

#[test]
fn meaningless_server_limits_are_refused_by_name() {
    for (line, names) in [
        (
            "slow_reader_timeout_ms = 0",
            "server.slow_reader_timeout_ms",
        ),
        ("max_connections = 0", "server.max_connections"),
        ("max_header_bytes = 10", "server.max_header_bytes"),
        ("header_timeout_ms = 5", "header_timeout_ms"),
        (
            "trusted_proxies = [\"nginx\"]",
            "server.trusted_proxies: \"nginx\"",
        ),
    ] {
        let text = format!("{GOOD}\n[server]\n{line}\n");
        let e = Config::parse(&text, "t.toml").unwrap_err().to_string();
        assert!(e.contains(names), "{line}: {e}");
    }
}

#[test]
fn unknown_keys_are_reported_with_their_line() {
    let text = GOOD.replace("kind = \"openai\"", "kind = \"openai\"\ncolour = \"blue\"");
    let e = Config::parse(&text, "t.toml").unwrap_err().to_string();
    assert!(e.contains("line 5"), "{e}");
    assert!(e.contains("colour"), "{e}");
}

#[test]
fn bad_routes_and_prices_are_reported_with_their_line() {
    let e = Config::parse(&GOOD.replace("openai/gpt-4o\"", "nope/gpt-4o\""), "t.toml")
        .unwrap_err()
        .to_string();
    assert!(e.contains("line 9") && e.contains("nope"), "{e}");
    let e = Config::parse(&GOOD.replace("\"2.50\"", "\"cheap\""), "t.toml")
        .unwrap_err()
        .to_string();
    assert!(e.contains("line 10") && e.contains("cheap"), "{e}");
    let e = Config::parse(&GOOD.replace("\"openai\"\n", "\"palm\"\n"), "t.toml")
        .unwrap_err()
        .to_string();
    assert!(e.contains("line 4"), "{e}");
}

#[test]
fn a_route_without_a_slash_is_refused_with_its_line() {
    let e = Config::parse(&GOOD.replace("openai/gpt-4o\"", "gpt-4o\""), "t.toml")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("line 9: route \"gpt-4o\" must be provider/model"),
        "{e}"
    );
}

/// Found by the `config` fuzz target: this price was accepted, and pricing a request at it
/// overflowed `Decimal` (a panic on every request for the model).
#[test]
fn a_price_too_large_to_compute_with_is_refused_with_its_line() {
    let text = GOOD.replace("\"10.00\"", "\"222222222222222222222222209.00\"");
    let e = Config::parse(&text, "t.toml").unwrap_err().to_string();
    assert!(e.contains("line 11") && e.contains("output_price"), "{e}");
    assert!(e.contains("largest price"), "{e}");
    // The largest price accepted prices the most tokens there are without overflowing.
    let text = GOOD.replace("\"10.00\"", "\"1000000\"");
    let c = Config::parse(&text, "t.toml").unwrap();
    let prices = &c.models["gpt-4o"].prices;
    assert_eq!(prices.output, MAX_PRICE);
    let cost = prices.worst_case(u64::MAX, u64::MAX);
    assert_eq!(
        cost,
        crate::store::ledger::Nanos(i64::MAX),
        "saturates, never panics"
    );
}

#[test]
fn a_model_without_prices_is_an_error_unless_free() {
    let unpriced = GOOD
        .replace("input_price = \"2.50\"\n", "")
        .replace("output_price = \"10.00\"\n", "");
    let e = Config::parse(&unpriced, "t.toml").unwrap_err().to_string();
    assert!(
        e.contains("t.toml") && e.contains("line 9") && e.contains("models.\"gpt-4o\""),
        "{e}"
    );
    assert!(e.contains("free = true"), "{e}");
    let half = GOOD.replace("output_price = \"10.00\"\n", "");
    let e = Config::parse(&half, "t.toml").unwrap_err().to_string();
    assert!(e.contains("output_price") && e.contains("gpt-4o"), "{e}");

    let free = format!("{unpriced}free = true\n");
    let c = Config::parse(&free, "t.toml").unwrap();
    assert_eq!(c.models["gpt-4o"].prices, Prices::default());
    let both = format!("{GOOD}free = true\n");
    let e = Config::parse(&both, "t.toml").unwrap_err().to_string();
    assert!(e.contains("line 12") && e.contains("free"), "{e}");
    let not_free = format!("{unpriced}free = false\n");
    assert!(Config::parse(&not_free, "t.toml").is_err());
}

#[test]
fn commit_after_defaults_to_ten_seconds_a_model_may_override_it_and_zero_is_never() {
    let c = Config::parse(GOOD, "t.toml").unwrap();
    let m = &c.models["gpt-4o"];
    assert_eq!(m.commit_after(&c.routing), Some(Duration::from_secs(10)));
    let text = format!("{GOOD}commit_after_ms = 2500\n[routing]\ncommit_after_ms = 0\n");
    let c = Config::parse(&text, "t.toml").unwrap();
    let m = &c.models["gpt-4o"];
    assert_eq!(
        m.commit_after(&c.routing),
        Some(Duration::from_millis(2500))
    );
    let text = format!("{GOOD}commit_after_ms = 0\n[routing]\ncommit_after_ms = 700\n");
    let c = Config::parse(&text, "t.toml").unwrap();
    assert_eq!(c.models["gpt-4o"].commit_after(&c.routing), None);
}

#[test]
fn model_timeouts_override_the_providers_and_auto_is_validated() {
    let text = format!(
            "{GOOD}first_token_timeout_ms = 250\n[providers.openai2]\nkind = \"openai\"\nbase_url = \"http://x/v1\"\nidle_timeout_ms = 7\n[auto]\nchain = [\"gpt-4o\"]\nhedge_after_ms = 90\n[routing]\nserved_headers = false\n"
        );
    let c = Config::parse(&text, "t.toml").unwrap();
    let route = &c.models["gpt-4o"].routes[0];
    assert_eq!(route.timeouts.first_token, Duration::from_millis(250));
    assert_eq!(route.timeouts.idle, Timeouts::default().idle);
    assert_eq!(c.models["auto"].routes.len(), 1);
    assert_eq!(
        c.models["auto-fast"].auto,
        Some(AutoKind::Fastest {
            hedge_after: Some(Duration::from_millis(90))
        })
    );
    assert!(!c.routing.served_headers);
    let e = Config::parse(&format!("{GOOD}[auto]\nchain = [\"nope\"]\n"), "t.toml")
        .unwrap_err()
        .to_string();
    assert!(e.contains("line 13") && e.contains("nope"), "{e}");
    let e = Config::parse(&GOOD.replace("models.\"gpt-4o\"", "models.auto"), "t.toml")
        .unwrap_err()
        .to_string();
    assert!(e.contains("reserved"), "{e}");
}

#[test]
fn redis_failure_and_provider_quotas_are_read_and_checked() {
    let c = Config::parse(GOOD, "t.toml").unwrap();
    assert_eq!(c.redis_failure, RedisFailure::Open);
    assert_eq!(
        (c.providers["openai"].rpm, c.providers["openai"].tpm),
        (None, None)
    );
    let closed = format!("redis_failure = \"closed\"\n{GOOD}");
    assert_eq!(
        Config::parse(&closed, "t.toml").unwrap().redis_failure,
        RedisFailure::Closed
    );
    let wrong = format!("redis_failure = \"maybe\"\n{GOOD}");
    let e = Config::parse(&wrong, "t.toml").unwrap_err().to_string();
    assert!(e.contains("redis_failure") && e.contains("maybe"), "{e}");
    let quota = GOOD.replace(
        "kind = \"openai\"\n",
        "kind = \"openai\"\nrpm = 500\ntpm = 90000\n",
    );
    let c = Config::parse(&quota, "t.toml").unwrap();
    assert_eq!(
        (c.providers["openai"].rpm, c.providers["openai"].tpm),
        (Some(500), Some(90000))
    );
    let zero = GOOD.replace("kind = \"openai\"\n", "kind = \"openai\"\nrpm = 0\n");
    let e = Config::parse(&zero, "t.toml").unwrap_err().to_string();
    assert!(e.contains("providers.openai.rpm"), "{e}");
}

#[test]
fn provider_read_limits_have_defaults_and_refuse_zero() {
    let c = Config::parse(GOOD, "t.toml").unwrap();
    let p = &c.providers["openai"];
    assert_eq!(p.limits, UpstreamLimits::default());
    assert_eq!(p.limits.sse.max_line, 1024 * 1024);
    assert_eq!(p.credential_timeout, DEFAULT_CREDENTIAL_TIMEOUT);
    let text = GOOD.replace(
            "kind = \"openai\"\n",
            "kind = \"openai\"\nmax_sse_line_bytes = 100\nmax_error_body_bytes = 7\ncredential_timeout_ms = 250\n",
        );
    let c = Config::parse(&text, "t.toml").unwrap();
    let p = &c.providers["openai"];
    assert_eq!((p.limits.sse.max_line, p.limits.error_body), (100, 7));
    assert_eq!(p.limits.response, UpstreamLimits::default().response);
    assert_eq!(p.credential_timeout, Duration::from_millis(250));
    let zero = GOOD.replace(
        "kind = \"openai\"\n",
        "kind = \"openai\"\nmax_response_bytes = 0\n",
    );
    let e = Config::parse(&zero, "t.toml").unwrap_err().to_string();
    assert!(e.contains("providers.openai.max_response_bytes"), "{e}");
}

#[tokio::test]
async fn a_command_secret_that_hangs_is_killed_at_its_timeout() {
    let pid_file = std::env::temp_dir().join(format!("sy-cmd-{}-{}", std::process::id(), line!()));
    // The shell starts a child that would outlive it unless the whole group is killed.
    let s = Secret::parse(&format!(
        "cmd:sh -c 'echo $$ > {}; exec sleep 600' & wait",
        pid_file.display()
    ));
    let e = s
        .resolve_within(Duration::from_millis(300))
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("did not finish within 300 ms"), "{e}");
    let pid = std::fs::read_to_string(&pid_file).unwrap();
    std::fs::remove_file(&pid_file).ok();
    let stat = format!("/proc/{}/stat", pid.trim());
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    // Gone, or a zombie waiting for its reaper: either way no longer running.
    while std::fs::read_to_string(&stat).is_ok_and(|s| !s.contains(") Z ")) {
        assert!(
            std::time::Instant::now() < deadline,
            "the command's child still runs"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[test]
fn secrets_never_show_their_value() {
    let s = Secret::parse("sk-live-123");
    assert_eq!(format!("{s:?}"), "a literal value");
}

#[tokio::test]
async fn secrets_resolve_from_file_and_command() {
    let path = std::env::temp_dir().join(format!("sy-secret-{}", std::process::id()));
    std::fs::write(&path, "from-file\n").unwrap();
    let s = Secret::parse(&format!("file:{}", path.display()));
    assert_eq!(s.resolve().await.unwrap(), "from-file");
    assert_eq!(Secret::parse("cmd:echo hi").resolve().await.unwrap(), "hi");
    assert!(Secret::parse("env:SWITCHYARD_SURELY_UNSET_VAR")
        .resolve()
        .await
        .is_err());
    std::fs::remove_file(path).ok();
}

#[test]
fn embedded_default_serves_the_demo_models() {
    let c = Config::embedded("http://127.0.0.1:1/v1").unwrap();
    assert!(c.models.contains_key("demo-chat") && c.models.contains_key("demo-reasoner"));
    assert!(c.embedded_demo);
    // Every model name the seeds' examples use is served, by a real provider or the demo.
    for (name, _) in SEED_MODEL_NAMES {
        assert!(c.models.contains_key(*name), "{name}");
    }
    assert_eq!(c.models["demo-embed"].kind, ModelKind::Embedding);
    assert!(c.models["demo-reasoner"].reasoning);
}

#[test]
fn embedding_models_need_only_an_input_price_and_stay_out_of_auto() {
    let embed = format!(
            "{GOOD}\n[models.e]\nkind = \"embedding\"\nroutes = [\"openai/text-embedding-3-small\"]\ninput_price = \"0.02\"\n"
        );
    let c = Config::parse(&embed, "t.toml").unwrap();
    let e = &c.models["e"];
    assert_eq!(
        (e.kind, e.prices.output),
        (ModelKind::Embedding, Decimal::ZERO)
    );
    assert_eq!(e.context_length, DEFAULT_EMBEDDING_CONTEXT_LENGTH);
    assert_eq!(e.modalities.output, ["embeddings"]);
    // A chat model still needs both prices.
    let chat = embed.replace("kind = \"embedding\"\n", "");
    let err = Config::parse(&chat, "t.toml").unwrap_err().to_string();
    assert!(err.contains("has no output_price"), "{err}");
    let auto = format!("{embed}\n[auto]\nchain = [\"gpt-4o\", \"e\"]\n");
    let err = Config::parse(&auto, "t.toml").unwrap_err().to_string();
    assert!(err.contains("an embedding model"), "{err}");
}

#[test]
fn model_capabilities_have_defaults_and_are_checked() {
    let c = Config::parse(GOOD, "t.toml").unwrap();
    let m = &c.models["gpt-4o"];
    assert_eq!(
        (m.kind, m.context_length, m.reasoning),
        (ModelKind::Chat, DEFAULT_CONTEXT_LENGTH, false)
    );
    assert_eq!(m.modalities, Modalities::default_for(ModelKind::Chat));
    let set = GOOD.replace(
            "output_price = \"10.00\"\n",
            "output_price = \"10.00\"\ncontext_length = 1000\nreasoning = true\nmodalities = { input = [\"text\", \"image\"], output = [\"text\"] }\n",
        );
    let m = Config::parse(&set, "t.toml").unwrap().models["gpt-4o"].clone();
    assert_eq!((m.context_length, m.reasoning), (1000, true));
    assert_eq!(m.modalities.input, ["text", "image"]);
    for bad in [
        "context_length = 0\n",
        "modalities = { input = [], output = [\"text\"] }\n",
        "kind = \"audio\"\n",
    ] {
        let text = GOOD.replace(
            "output_price = \"10.00\"\n",
            &format!("output_price = \"10.00\"\n{bad}"),
        );
        assert!(Config::parse(&text, "t.toml").is_err(), "{bad}");
    }
}

const POOL: &str = r#"
[providers.anthropic]
kind = "anthropic"
base_url = "https://api.anthropic.com/v1"
api_keys = ["env:A", "env:B"]

[providers.openai]
kind = "openai"
base_url = "https://api.openai.com/v1"
api_key = "env:C"

[models.claude]
routes = ["anthropic/claude-sonnet-4-5", "openai/gpt-5"]
strategy = "balance"
weights = [2, 1]
input_price = "3"
output_price = "15"
"#;

#[test]
fn a_key_pool_is_a_member_per_key_splitting_its_routes_weight() {
    let c = Config::parse(POOL, "t.toml").unwrap();
    let m = &c.models["claude"];
    let routes: Vec<(String, u64)> = m
        .routes
        .iter()
        .map(|r| (r.key().to_string(), r.weight))
        .collect();
    assert_eq!(
        routes,
        [
            ("anthropic#1/claude-sonnet-4-5".to_owned(), WEIGHT_UNIT),
            ("anthropic#2/claude-sonnet-4-5".to_owned(), WEIGHT_UNIT),
            ("openai/gpt-5".to_owned(), WEIGHT_UNIT),
        ]
    );
    assert_eq!(m.strategy, Strategy::Balance);
    assert!(m.affinity);
    assert!(c.providers.contains_key("anthropic#2") && !c.providers.contains_key("anthropic"));
    // Anthropic's writes on its routes; the model's hold covers the dearest route's.
    assert_eq!(m.routes[0].prices.cache_write_1h, Some(Decimal::from(6)));
    assert_eq!(m.prices.cache_write_1h, Some(Decimal::from(6)));
}

#[test]
fn pools_and_weights_are_checked() {
    for (bad, says) in [
        (
            POOL.replace(
                "api_keys = [\"env:A\", \"env:B\"]",
                "api_key = \"x\"\napi_keys = [\"y\"]",
            ),
            "not both",
        ),
        (
            POOL.replace("[\"env:A\", \"env:B\"]", "[]"),
            "api_keys is empty",
        ),
        (POOL.replace("weights = [2, 1]", "weights = [1]"), "weights"),
        (
            POOL.replace("weights = [2, 1]", "weights = [1, 0]"),
            "weights",
        ),
        (
            POOL.replace("\"balance\"", "\"random\""),
            "expected `failover` or `balance`",
        ),
    ] {
        let e = Config::parse(&bad, "t.toml").unwrap_err().to_string();
        assert!(e.contains(says), "{says}: {e}");
    }
}

/// The embedded default as it was written before it was built in Rust: TOML text, the real
/// providers' tables appended when their key variable is set.
fn embedded_as_text(demo_base_url: &str, is_set: impl Fn(&str) -> bool) -> String {
    let mut text = format!(
        r#"
[providers.demo]
kind = "deepseek"
base_url = "{demo_base_url}"

[models."demo-chat"]
routes = ["demo/demo-chat"]
input_price = "0.50"
output_price = "1.50"

[models."demo-reasoner"]
routes = ["demo/demo-reasoner"]
input_price = "0.55"
output_price = "2.19"
reasoning = true

[models."demo-embed"]
kind = "embedding"
routes = ["demo/demo-embed"]
input_price = "0.02"
"#
    );
    let known = [
        (
            "OPENAI_API_KEY",
            "gpt-4o-mini",
            r#"
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
"#,
        ),
        (
            "DEEPSEEK_API_KEY",
            "deepseek-chat",
            r#"
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
"#,
        ),
        (
            "ANTHROPIC_API_KEY",
            "claude-sonnet-4",
            r#"
[providers.anthropic]
kind = "anthropic"
base_url = "https://api.anthropic.com/v1"
api_key = "env:ANTHROPIC_API_KEY"

[models."claude-sonnet-4"]
routes = ["anthropic/claude-sonnet-4-20250514"]
input_price = "3.00"
output_price = "15.00"
cached_input_price = "0.30"
"#,
        ),
    ];
    let mut chain = Vec::new();
    for (variable, in_chain, tables) in known {
        if is_set(variable) {
            text.push_str(tables);
            chain.push(in_chain);
        }
    }
    chain.push("demo-chat");
    for (name, demo) in SEED_MODEL_NAMES {
        if !text.contains(&format!("[models.\"{name}\"]")) {
            text.push_str(&format!(
                "\n[models.\"{name}\"]\nroutes = [\"demo/{demo}\"]\ninput_price = \"0.50\"\noutput_price = \"1.50\"\n"
            ));
        }
    }
    let chain: Vec<String> = chain.iter().map(|m| format!("\"{m}\"")).collect();
    text.push_str(&format!(
        "\n[auto]\nchain = [{}]\nhedge_after_ms = 2000\n",
        chain.join(", ")
    ));
    text
}

#[test]
fn the_embedded_default_built_in_rust_is_the_one_the_text_gave() {
    let variables = ["OPENAI_API_KEY", "DEEPSEEK_API_KEY", "ANTHROPIC_API_KEY"];
    for set in 0..1 << variables.len() {
        let is_set = |name: &str| {
            let i = variables.iter().position(|v| *v == name).unwrap();
            set & (1 << i) != 0
        };
        let url = "http://127.0.0.1:1/v1";
        let built = Config::from_raw(embedded_raw(url, is_set), "", EMBEDDED).unwrap();
        let text = embedded_as_text(url, is_set);
        let parsed = Config::parse(&text, EMBEDDED).unwrap();
        assert_eq!(
            format!("{built:?}"),
            format!("{parsed:?}"),
            "variables set: {set:b}"
        );
    }
}

#[test]
fn key_refresh_is_unset_unless_given_and_never_zero() {
    assert_eq!(Config::parse(GOOD, "t.toml").unwrap().key_refresh, None);
    let hour = format!("key_refresh_ms = 3600000\n{GOOD}");
    assert_eq!(
        Config::parse(&hour, "t.toml").unwrap().key_refresh,
        Some(Duration::from_secs(3600))
    );
    let zero = format!("key_refresh_ms = 0\n{GOOD}");
    let e = Config::parse(&zero, "t.toml").unwrap_err().to_string();
    assert!(e.contains("key_refresh_ms"), "{e}");
}
