//! Running the official-SDK scripts of `tests/sdk/` as subprocesses: locating the installed SDKs
//! (skipping loudly without them, or failing when `SWITCHYARD_REQUIRE_SDKS=1`, which
//! `./scripts/test` sets), and reading back the JSON facts a script prints on its last line.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;

/// How long one script may run before the test fails (they normally take about a second).
pub(crate) const SCRIPT_TIMEOUT: Duration = Duration::from_secs(120);

#[derive(Clone, Copy, Debug)]
pub(crate) enum Lang {
    Python,
    Node,
}

pub(crate) fn sdk_dir() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    std::fs::canonicalize(&root)
        .unwrap_or(root)
        .join("tests/sdk")
}

/// A missing tool: a failure under `SWITCHYARD_REQUIRE_SDKS=1`, else a loud skip.
pub(crate) fn missing(what: &str) {
    if std::env::var("SWITCHYARD_REQUIRE_SDKS").is_ok_and(|v| v == "1") {
        panic!("{what} is missing although SWITCHYARD_REQUIRE_SDKS=1: run ./scripts/test");
    }
    crate::harness::skipped(&format!(
        "SKIPPED (SDKs not installed; run ./scripts/test): {what} is missing"
    ));
}

/// The command running `scenario` of the script `python/<stem>.py` or `node/<stem>.mjs`, or `None`
/// (after saying so) when that SDK is not installed. The caller adds the environment.
pub(crate) fn command(lang: Lang, stem: &str, scenario: &str) -> Option<tokio::process::Command> {
    let sdk = sdk_dir();
    let mut cmd = match lang {
        Lang::Python => {
            let python = sdk.join(".venv/bin/python");
            if !python.exists() {
                missing(&format!("the Python SDK venv ({})", python.display()));
                return None;
            }
            let mut cmd = tokio::process::Command::new(python);
            cmd.arg(sdk.join(format!("python/{stem}.py")));
            cmd
        }
        Lang::Node => {
            let modules = sdk.join("node/node_modules/openai/package.json");
            if !modules.exists() {
                missing(&format!("the Node SDK ({})", modules.display()));
                return None;
            }
            let mut cmd = tokio::process::Command::new("node");
            cmd.arg(sdk.join(format!("node/{stem}.mjs")))
                .current_dir(sdk.join("node"));
            cmd
        }
    };
    cmd.arg(scenario)
        .env_remove("OPENAI_API_KEY")
        .env_remove("OPENAI_BASE_URL")
        .env_remove("OPENAI_ORG_ID")
        .env_remove("OPENAI_PROJECT_ID")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    Some(cmd)
}

/// Runs a prepared script command; asserts it exited 0 and that its last stdout line is a JSON
/// object with `"ok": true` (and the scenario's name, when it gives one), and returns that object.
/// `None` means the interpreter is missing and the test is skipped.
pub(crate) async fn run(
    mut cmd: tokio::process::Command,
    what: &str,
    scenario: &str,
) -> Option<Value> {
    let out = match tokio::time::timeout(SCRIPT_TIMEOUT, cmd.output()).await {
        Ok(Ok(out)) => out,
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::NotFound => {
            missing(&format!("the interpreter for {what} ({e})"));
            return None;
        }
        Ok(Err(e)) => panic!("cannot run {what}: {e}"),
        Err(_) => panic!("{what} did not finish in {SCRIPT_TIMEOUT:?}"),
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{what} failed ({}):\n--- stderr\n{stderr}\n--- stdout\n{stdout}",
        out.status
    );
    let last = stdout
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("");
    let facts: Value = serde_json::from_str(last)
        .unwrap_or_else(|e| panic!("{what}: last stdout line is not JSON ({e}):\n{stdout}"));
    eprintln!("{what}: {last}");
    if let Some(name) = facts.get("scenario") {
        assert_eq!(name, scenario, "{facts}");
    }
    assert_eq!(facts["ok"], true, "{facts}");
    Some(facts)
}

/// Runs a prepared `curl` command as a user would; asserts it succeeded and returns its output.
/// `None` means curl is not installed and the test is skipped (or fails, as `missing` says).
pub(crate) async fn run_curl(mut cmd: tokio::process::Command) -> Option<String> {
    cmd.stdin(Stdio::null()).kill_on_drop(true);
    let out = match tokio::time::timeout(SCRIPT_TIMEOUT, cmd.output()).await {
        Ok(Ok(out)) => out,
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::NotFound => {
            missing("curl");
            return None;
        }
        Ok(Err(e)) => panic!("cannot run curl: {e}"),
        Err(_) => panic!("curl did not finish in {SCRIPT_TIMEOUT:?}"),
    };
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "curl failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(stdout)
}
