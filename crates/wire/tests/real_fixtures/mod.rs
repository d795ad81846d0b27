//! Where the transcripts recorded from the real vendor APIs live (`shared/fixtures/real`, beside the
//! repository), and the rule for when they are absent: a local run says SKIPPED loudly and goes on, a
//! CI run (`CI` set) fails, so a missing folder can never turn these tests into tests that cannot fail.

use std::path::{Path, PathBuf};

/// Says SKIPPED loudly and, when `SWITCHYARD_SKIP_LOG` names a file (as `./scripts/test` does),
/// adds a line to it, so the run ends by counting what it skipped.
pub(crate) fn skipped(why: &str) {
    use std::io::Write;
    eprintln!("{why}");
    let Some(path) = std::env::var_os("SWITCHYARD_SKIP_LOG") else {
        return;
    };
    let test = std::thread::current().name().unwrap_or("a test").to_owned();
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
    {
        let _ = writeln!(f, "{test}: {why}");
    }
}

/// True when running under CI (`CI` set to anything but empty, `0` or `false`).
pub(crate) fn under_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "0" && !v.eq_ignore_ascii_case("false"))
}

/// `shared/fixtures/real/<dialect>`: `SWITCHYARD_FIXTURES` (the `real` folder) when set, else the
/// first ancestor of this crate that has `shared/fixtures/real`. `None` (after saying SKIPPED)
/// when absent; under CI, absence is a failure.
pub(crate) fn dir(dialect: &str) -> Option<PathBuf> {
    let real = std::env::var_os("SWITCHYARD_FIXTURES")
        .map(PathBuf::from)
        .or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .ancestors()
                .map(|a| a.join("shared/fixtures/real"))
                .find(|p| p.is_dir())
        });
    match real.map(|r| r.join(dialect)).filter(|d| d.is_dir()) {
        Some(d) => Some(d),
        None => {
            assert!(
                !under_ci(),
                "CI: the recorded fixtures (shared/fixtures/real/{dialect}) are missing; \
                 these tests must run against them (set SWITCHYARD_FIXTURES to the `real` folder)"
            );
            skipped(&format!("SKIPPED: no recorded fixtures for {dialect} (shared/fixtures/real beside the repository)"));
            None
        }
    }
}

/// Whether one named recording is present: a local run skips a missing one loudly, CI fails.
/// (Not every test file that includes this module names single recordings.)
#[allow(dead_code)]
pub(crate) fn present(dir: &Path, file: &str) -> bool {
    if dir.join(file).exists() {
        return true;
    }
    assert!(
        !under_ci(),
        "CI: the recording {file} is missing from {}",
        dir.display()
    );
    skipped(&format!("SKIPPED: {file} not present in {}", dir.display()));
    false
}
