//! Schemathesis against a live gateway: it reads `GET /openapi.json` and sends a bounded number of
//! generated requests (valid and invalid) to every operation, checking that none is answered 5xx,
//! that every status and content type is documented, that every body matches its schema, and
//! that every request is answered within its timeout. Then no request reached the panic layer.
//! Schemathesis is installed by `./scripts/test` into `tests/schema/.venv` (pinned in
//! `tests/schema/requirements.txt`); without it the test says SKIPPED, or fails under
//! `SWITCHYARD_REQUIRE_SDKS=1`. `SWITCHYARD_SCHEMA_SEED` replays a run's seed.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use crate::harness::{client, start_with_mock_top, TestGateway};
use crate::sdk_runner::missing;

const ADMIN: &str = "admin-schema-fuzz-key-0123456";
/// Generated requests per operation and phase: enough to reach every parameter's edges, small
/// enough for well under a minute on two shared cores.
const MAX_EXAMPLES: &str = "25";
/// A request not answered in this long fails the run (a hang).
const REQUEST_TIMEOUT_SECS: &str = "20";
/// The whole run, as a last resort.
const RUN_TIMEOUT: Duration = Duration::from_secs(400);
const CHECKS: &str = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance";

fn schemathesis() -> Option<std::path::PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let bin = std::fs::canonicalize(&root)
        .unwrap_or(root)
        .join("tests/schema/.venv/bin/schemathesis");
    if bin.exists() {
        Some(bin)
    } else {
        missing(&format!("Schemathesis ({})", bin.display()));
        None
    }
}

/// One Schemathesis run over the operations `include` selects, with `token` as the bearer.
async fn run(bin: &Path, gw: &TestGateway, include: &str, token: &str, what: &str) {
    let seed = std::env::var("SWITCHYARD_SCHEMA_SEED").unwrap_or_else(|_| "20261130".into());
    let work = std::env::temp_dir().join(format!(
        "switchyard-schema-{}-{}",
        std::process::id(),
        gw.addr.port()
    ));
    std::fs::create_dir_all(&work).unwrap();
    let mut cmd = tokio::process::Command::new(bin);
    cmd.arg("run")
        .arg(gw.url("/openapi.json"))
        .args(["--include-path-regex", include])
        .args(["-H", &format!("Authorization: Bearer {token}")])
        .args(["--checks", CHECKS])
        .args(["--max-examples", MAX_EXAMPLES])
        .args(["--request-timeout", REQUEST_TIMEOUT_SECS])
        .args(["--seed", &seed])
        .args(["--workers", "1"])
        .arg("--no-color")
        .current_dir(&work)
        .stdin(Stdio::null())
        .kill_on_drop(true);
    let out = match tokio::time::timeout(RUN_TIMEOUT, cmd.output()).await {
        Ok(Ok(out)) => out,
        Ok(Err(e)) => panic!("cannot run Schemathesis: {e}"),
        Err(_) => panic!("Schemathesis ({what}) did not finish in {RUN_TIMEOUT:?}: a hang"),
    };
    let _ = std::fs::remove_dir_all(&work);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "Schemathesis found failures in {what} (seed {seed}):\n{stdout}\n{stderr}"
    );
    // A run that tested nothing must not pass.
    let summary = stdout
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with(|c: char| c.is_ascii_digit()) && l.contains(" generated"))
        .unwrap_or_else(|| panic!("no summary in the Schemathesis output:\n{stdout}"));
    eprintln!("Schemathesis {what}: {}", summary.trim());
    let generated: u64 = summary
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(generated >= 50, "{what}: too few test cases: {summary}");
}

#[tokio::test(flavor = "multi_thread")]
async fn schemathesis_finds_no_server_error_hang_or_schema_break() {
    let Some(bin) = schemathesis() else { return };
    let (gw, _mock) = start_with_mock_top(
        &format!("admin_key = \"{ADMIN}\""),
        r#"
[models."demo-chat"]
routes = ["mock/m"]
input_price = "2.50"
output_price = "10.00"
"#,
    )
    .await;
    let panics_before = switchyard::telemetry::panics_caught();
    // The public API under /v1 (the same handlers serve /api/v1 and /v1/llm), with an API key.
    run(
        &bin,
        &gw,
        "^/v1/(chat|responses|models|key)",
        &gw.key,
        "the public API",
    )
    .await;
    // The admin API and the unauthenticated routes, with the admin key.
    run(
        &bin,
        &gw,
        "^/(admin/|healthz|readyz|metrics|openapi)",
        ADMIN,
        "the admin API",
    )
    .await;
    assert_eq!(
        switchyard::telemetry::panics_caught(),
        panics_before,
        "a generated request reached the panic layer"
    );
    // The gateway is still up (the admin run may have revoked the first key: keys are listed).
    let resp = client().get(gw.url("/healthz")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
}
