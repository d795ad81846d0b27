//! The house rules that reading the code can check, checked: every source file says what it is
//! for, and each dependency with a boundary stays behind it (`sqlx` in `store`, `axum` in `http`
//! and the server's entry, `redis::` in the Redis limit store, the environment in `config`, no
//! tokio in `wire`), the gateway times everything by tokio's pausable clock, the product library knows nothing of the bench crate (only the binary's
//! `main.rs` names it), only the ledger writer writes usage entries, every test RELIABILITY.md
//! cites exists, every file of `console/` is embedded in the binary, and every test that skips
//! says so through the one helper that `./scripts/test` counts.

use std::path::{Path, PathBuf};

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// (path relative to `crates/`, text) of every Rust source under `crates/*/src`.
pub(crate) fn crate_sources() -> Vec<(String, String)> {
    let crates = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let mut files = Vec::new();
    for krate in ["wire", "gateway", "mock-upstream", "bench"] {
        sources(&crates.join(krate).join("src"), &mut files);
    }
    files
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap();
            let rel = p
                .strip_prefix(crates)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            (rel, text)
        })
        .collect()
}

/// The code of a file without its `#[cfg(test)]` module (tests may use what the code may not).
fn code(text: &str) -> &str {
    text.split("#[cfg(test)]").next().unwrap_or(text)
}

#[test]
fn every_source_file_starts_by_saying_what_it_is_for() {
    let missing: Vec<String> = crate_sources()
        .into_iter()
        .filter(|(_, text)| !text.trim_start().starts_with("//!"))
        .map(|(p, _)| p)
        .collect();
    assert!(missing.is_empty(), "no `//!` paragraph: {missing:?}");
}

#[test]
fn dependencies_stay_behind_their_boundaries() {
    let rules: [(&str, &[&str]); 6] = [
        ("sqlx", &["gateway/src/store.rs", "gateway/src/store/"]),
        (
            "axum",
            &[
                "gateway/src/http.rs",
                "gateway/src/http/",
                "gateway/src/app.rs",
                "mock-upstream/",
            ],
        ),
        ("redis::", &["gateway/src/limits/redis_store.rs"]),
        ("opentelemetry", &["gateway/src/otlp.rs"]),
        (
            "std::env",
            &[
                "gateway/src/config.rs",
                "gateway/src/config/",
                "gateway/src/clock.rs",
                "mock-upstream/",
            ],
        ),
        ("tokio::", &["gateway/", "mock-upstream/", "bench/"]),
    ];
    let mut broken = Vec::new();
    for (path, text) in crate_sources() {
        let code = code(&text);
        for (name, allowed) in rules {
            if code.contains(name) && !allowed.iter().any(|a| path.starts_with(a)) {
                broken.push(format!("{path} names {name}"));
            }
        }
    }
    assert!(broken.is_empty(), "{broken:#?}");
}

/// The gateway times breakers, cooldowns, leases, keep-alives and timeouts by tokio's clock
/// (`tokio::time::Instant`), which a test can pause and advance (`start_paused`,
/// `tokio::time::advance`); `std::time::Instant` is left to the journal's own thread, which runs
/// outside the runtime.
#[test]
fn the_gateway_reads_the_clock_tests_can_pause() {
    let broken: Vec<String> = crate_sources()
        .into_iter()
        .filter(|(path, _)| {
            // A module's unit tests (`tests.rs`) may time themselves by the wall clock.
            path.starts_with("gateway/src/")
                && path != "gateway/src/store/ledger/journal.rs"
                && !path.ends_with("/tests.rs")
        })
        .filter(|(_, text)| {
            code(text)
                .lines()
                .any(|l| l.contains("std::time::") && l.contains("Instant"))
        })
        .map(|(path, _)| path)
        .collect();
    assert!(broken.is_empty(), "std::time::Instant in {broken:?}");
}

/// The load generator and its histograms live in `crates/bench` (`switchyard-bench`): the `switchyard`
/// package lists it only for its binary, so no file of the library may name it or `hdrhistogram`.
#[test]
fn only_the_binary_names_the_bench_crate() {
    let sources = crate_sources();
    let mut broken = Vec::new();
    for (path, text) in &sources {
        if !path.starts_with("gateway/src/") || path == "gateway/src/main.rs" {
            continue;
        }
        for name in ["switchyard_bench", "hdrhistogram"] {
            if text.contains(name) {
                broken.push(format!("{path} names {name}"));
            }
        }
    }
    assert!(broken.is_empty(), "{broken:#?}");
    // The rule reads the right files: the binary is where `bench` reaches the crate.
    let main = sources
        .iter()
        .find(|(path, _)| path == "gateway/src/main.rs")
        .expect("gateway/src/main.rs was read");
    assert!(main.1.contains("switchyard_bench::bench("), "main.rs");
    let manifest =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml")).unwrap();
    assert!(
        !manifest.contains("hdrhistogram"),
        "crates/gateway/Cargo.toml lists hdrhistogram"
    );
}

#[test]
fn only_the_ledger_writer_writes_usage_entries_and_debits() {
    let writers: Vec<String> = crate_sources()
        .into_iter()
        .filter(|(_, text)| {
            let code = code(text);
            code.contains("INSERT INTO usage_entries") || code.contains("balance_nanos - ")
        })
        .map(|(p, _)| p)
        .collect();
    assert_eq!(
        writers,
        vec!["gateway/src/store/ledger/writer.rs".to_owned()]
    );
}

/// Every test RELIABILITY.md cites as the proof of a guarantee exists: a renamed or deleted test
/// cannot leave a guarantee proved by nothing.
#[test]
fn every_test_reliability_md_cites_exists() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let doc = std::fs::read_to_string(root.join("RELIABILITY.md")).unwrap();
    let mut code = String::new();
    let mut files = Vec::new();
    sources(&root.join("crates"), &mut files);
    for f in files {
        code.push_str(&std::fs::read_to_string(f).unwrap());
    }
    let mut cited = 0;
    let mut missing = Vec::new();
    for quoted in doc.split('`').skip(1).step_by(2) {
        let Some((_, name)) = quoted.rsplit_once("::") else {
            // A bare test name (snake_case of four parts or more; fuzz targets have fewer).
            if quoted.split('_').count() >= 4
                && quoted
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
            {
                cited += 1;
                if !code.contains(&format!("fn {quoted}(")) {
                    missing.push(quoted.to_owned());
                }
            }
            continue;
        };
        if name == "*" || name.starts_with('{') {
            continue;
        }
        cited += 1;
        // `recorded_*` is every test whose name starts so; there must be one.
        let wanted = match name.strip_suffix('*') {
            Some(prefix) => format!("fn {prefix}"),
            None => format!("fn {name}("),
        };
        if !code.contains(&wanted) {
            missing.push(quoted.to_owned());
        }
    }
    assert!(cited > 40, "only {cited} tests cited");
    assert!(
        missing.is_empty(),
        "RELIABILITY.md cites tests that do not exist: {missing:#?}"
    );
}

/// Every file of the top-level `console/` folder is embedded by `http/console.rs` (a file left out
/// would be a 404 in the served console), and every embedded name is a file there.
/// A skip that only prints would be lost in the captured output: every one goes through
/// `harness::skipped` (or the fixtures' `skipped`), which `./scripts/test` counts at the end.
#[test]
fn every_skip_is_counted() {
    let crates = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let mut files = Vec::new();
    for krate in ["wire", "gateway", "bench"] {
        sources(&crates.join(krate).join("tests"), &mut files);
    }
    let printed = format!("{}!(\"SKIPPED", "eprintln");
    let offenders: Vec<_> = files
        .iter()
        .filter(|p| {
            std::fs::read_to_string(p)
                .unwrap()
                .replace(['\n', ' '], "")
                .contains(&printed)
        })
        .collect();
    assert!(
        offenders.is_empty(),
        "skips printed but not counted: {offenders:?}"
    );
}

#[test]
fn every_console_file_is_embedded() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let console =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/http/console.rs"))
            .unwrap();
    let mut files: Vec<String> = std::fs::read_dir(root.join("console"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert!(files.len() >= 5, "the console folder was read: {files:?}");
    let embedded: Vec<String> = console
        .match_indices("asset!(\"")
        .map(|(at, m)| {
            let rest = &console[at + m.len()..];
            rest[..rest.find('"').unwrap()].to_owned()
        })
        .collect();
    let missing: Vec<&String> = files.iter().filter(|f| !embedded.contains(f)).collect();
    assert!(
        missing.is_empty(),
        "console files not embedded: {missing:?}"
    );
    let absent: Vec<&String> = embedded.iter().filter(|f| !files.contains(f)).collect();
    assert!(
        absent.is_empty(),
        "embedded names without a file: {absent:?}"
    );
    // Each file says what it is for, like the Rust sources.
    for f in &files {
        let text = std::fs::read_to_string(root.join("console").join(f)).unwrap();
        let head: String = text.lines().take(2).collect::<Vec<_>>().join("\n");
        assert!(
            head.contains("//") || head.contains("/*") || head.contains("<!--"),
            "console/{f} does not start by saying what it is for"
        );
    }
}
