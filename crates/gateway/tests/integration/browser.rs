//! The console and the seeds' browser clients in Debian's Chromium, driven by playwright-core
//! (`tests/browser/*.mjs`, installed by `./scripts/test`): a gateway with an admin key in front of
//! the mock upstream, whose `demo-reasoner` streams slowly enough to watch it grow. Without
//! Chromium or the node modules the tests skip loudly, or fail under `SWITCHYARD_REQUIRE_SDKS=1`.
//! The console's SSE parser is also checked on its own, in Node.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::harness::{client, start_with_mock_top, TestGateway};
use crate::sdk_runner::{missing, run};

const ADMIN: &str = "sk-admin-browser-0123456789";
const CHROMIUM: &str = "/usr/bin/chromium";

/// Models paced for a browser: the reasoner's answer takes ~16 s unless stopped; demo-chat ~0.6 s.
const MODELS: &str = r#"
[models."demo-reasoner"]
routes = ["mockds/demo-reasoner@reasoning=12,tokens=400,ttft_ms=50,gap_ms=40"]
input_price = "0.55"
output_price = "2.19"

[models."demo-chat"]
routes = ["mock/demo-chat@tokens=20,gap_ms=30"]
input_price = "2.50"
output_price = "10.00"

[models."paced-story"]
routes = ["mock/story@tokens=60,gap_ms=60"]
input_price = "2.50"
output_price = "10.00"

[models."breaks-midway"]
routes = ["mock/bm@tokens=10,error_after=3"]
input_price = "2.50"
output_price = "10.00"

[models."down"]
routes = ["mock/down@status=503"]
input_price = "2.50"
output_price = "10.00"
"#;

fn browser_dir() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    std::fs::canonicalize(&root)
        .unwrap_or(root)
        .join("tests/browser")
}

/// `node tests/browser/<script>.mjs` against `gw`, or `None` (after saying so) without Chromium
/// or playwright-core.
fn command(script: &str, gw: &TestGateway) -> Option<tokio::process::Command> {
    if !Path::new(CHROMIUM).exists() {
        missing(&format!(
            "Chromium ({CHROMIUM}; apt-get install -y chromium)"
        ));
        return None;
    }
    let dir = browser_dir();
    let modules = dir.join("node_modules/playwright-core/package.json");
    if !modules.exists() {
        missing(&format!("playwright-core ({})", modules.display()));
        return None;
    }
    let mut cmd = tokio::process::Command::new("node");
    cmd.arg(dir.join(format!("{script}.mjs")))
        .current_dir(&dir)
        .env("SWITCHYARD_URL", format!("http://{}", gw.addr))
        .env("SWITCHYARD_KEY", &gw.key)
        .env("SWITCHYARD_ADMIN_KEY", ADMIN)
        .env("SWITCHYARD_CHROMIUM", CHROMIUM);
    Some(cmd)
}

async fn gateway() -> (TestGateway, mock_upstream::MockUpstream) {
    start_with_mock_top(&format!("admin_key = \"{ADMIN}\""), MODELS).await
}

/// The ledger's entry for `id`, read through the admin API.
async fn entry(gw: &TestGateway, id: &str) -> Value {
    let log: Value = client()
        .get(gw.url("/admin/requests?limit=1000"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    log["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["request_id"] == id)
        .cloned()
        .unwrap_or_else(|| panic!("no ledger entry {id}: {log}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn the_console_streams_stops_finds_the_cost_and_manages_keys() {
    let (gw, _mock) = gateway().await;
    let Some(cmd) = command("console", &gw) else {
        return;
    };
    let Some(facts) = run(cmd, "tests/browser/console.mjs", "console").await else {
        return;
    };

    // Signed in with both keys; the answer grew over four observations before Stop.
    assert!(facts["who"].as_str().unwrap().contains("admin"), "{facts}");
    let seen: Vec<u64> = facts["observations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    assert_eq!(seen.len(), 4, "{facts}");
    assert!(seen.windows(2).all(|w| w[0] < w[1]), "{seen:?}");
    assert!(facts["reasoning_chars"].as_u64().unwrap() > 0, "{facts}");

    // The stopped request is in Usage with the cost the ledger billed it; the whole one with the
    // cost the playground read from its final chunk.
    let stopped = entry(&gw, facts["usage_stopped"]["id"].as_str().unwrap()).await;
    assert_eq!(stopped["requested_model"], "demo-reasoner", "{stopped}");
    assert_eq!(stopped["end_reason"], "cancelled", "{stopped}");
    assert_eq!(
        facts["usage_stopped"]["cost"],
        format!("${}", stopped["cost"].as_str().unwrap()),
        "{facts}"
    );
    assert_ne!(
        stopped["cost"], "0",
        "a stopped stream bills what it delivered"
    );
    // Reloaded in the middle of its answer, the playground resumed the stream: every word once.
    assert_eq!(facts["resumed"]["words"], 60, "{facts}");
    assert!(
        facts["resumed"]["before_words"].as_u64().unwrap() < 60,
        "the reload came before the end: {facts}"
    );
    let whole = entry(&gw, facts["usage_whole"]["id"].as_str().unwrap()).await;
    assert_eq!(
        facts["finished"]["cost"],
        format!("${}", whole["cost"].as_str().unwrap()),
        "{facts}"
    );
    assert_eq!(
        facts["finished"]["completion"],
        whole["completion_tokens"].to_string(),
        "{facts}"
    );

    // Failures are shown as the user's words: an in-stream error after some text, an HTTP error.
    let midway = facts["midway"].as_object().unwrap();
    assert!(
        midway["error"]
            .as_str()
            .unwrap()
            .starts_with("The stream failed:"),
        "{facts}"
    );
    assert!(!midway["answer"].as_str().unwrap().is_empty(), "{facts}");
    assert_eq!(midway["status"], "failed");
    let down = facts["down"].as_object().unwrap();
    assert!(
        down["error"].as_str().unwrap().starts_with("50"),
        "an HTTP error shows its status: {facts}"
    );
    assert!(!down["error"].as_str().unwrap().contains('{'), "{facts}");

    // A key made in the console worked for its one model, and not once revoked.
    assert_eq!(facts["new_key_models_status"], 200, "{facts}");
    assert_eq!(facts["new_key_models"], serde_json::json!(["demo-chat"]));
    assert_eq!(facts["revoked_key_status"], 401, "{facts}");
    assert!(
        facts["edited_row"].as_str().unwrap().contains("of $2/day"),
        "{facts}"
    );

    assert!(facts["csp"]
        .as_str()
        .unwrap()
        .contains("default-src 'none'"));
    assert_eq!(facts["theme_toggle"], serde_json::json!(["light", "dark"]));
    assert_eq!(facts["after_sign_out"], 0, "sign-out forgets the keys");
    assert_eq!(
        facts["screenshots"].as_array().unwrap().len(),
        20,
        "{facts}"
    );
    assert!(
        facts["provider_rows"].as_array().unwrap().len() >= 2,
        "{facts}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_seeds_fetch_readers_stream_from_another_origin() {
    let (gw, _mock) = gateway().await;
    let Some(cmd) = command("cross_origin", &gw) else {
        return;
    };
    let Some(facts) = run(cmd, "tests/browser/cross_origin.mjs", "cross_origin").await else {
        return;
    };
    assert_ne!(facts["page_origin"], facts["gateway_origin"]);
    for reader in ["streamChat", "sendMessage"] {
        assert_eq!(facts[reader]["text"], facts["expected"], "{facts}");
        assert!(
            facts[reader]["observations"].as_array().unwrap().len() >= 3,
            "{facts}"
        );
    }
}

/// The console's SSE parser (`console/sse.js`) in Node: every split of an awkward stream (CRLF
/// split between reads, CR-only lines, comments, multi-line data) gives the same events.
#[tokio::test(flavor = "multi_thread")]
async fn the_consoles_sse_parser_survives_every_split() {
    let mut cmd = tokio::process::Command::new("node");
    cmd.arg(browser_dir().join("sse_parser.mjs"))
        .current_dir(browser_dir());
    let Some(facts) = run(cmd, "tests/browser/sse_parser.mjs", "sse_parser").await else {
        return;
    };
    assert_eq!(facts["events"], 7, "{facts}");
}
