//! Secrets (`env:`, `file:`, `cmd:` or a literal): resolving them, a `cmd:` within its timeout
//! (its whole process group killed past it), and checking every secret of a configuration.

use std::path::PathBuf;
use std::time::Duration;

use super::errors::{ConfigError, SecretProblem, MIN_ADMIN_KEY_CHARS};
use super::Config;

/// A secret as referenced in the file. Its value is only ever held in memory.
#[derive(Clone, PartialEq, Eq)]
pub enum Secret {
    Env(String),
    File(PathBuf),
    Cmd(String),
    Literal(String),
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

impl Secret {
    pub fn parse(s: &str) -> Secret {
        if let Some(name) = s.strip_prefix("env:") {
            Secret::Env(name.to_owned())
        } else if let Some(path) = s.strip_prefix("file:") {
            Secret::File(PathBuf::from(path))
        } else if let Some(cmd) = s.strip_prefix("cmd:") {
            Secret::Cmd(cmd.to_owned())
        } else {
            Secret::Literal(s.to_owned())
        }
    }

    /// Where the secret comes from, never its value.
    pub fn describe(&self) -> String {
        match self {
            Secret::Env(n) => format!("env:{n}"),
            Secret::File(p) => format!("file:{}", p.display()),
            Secret::Cmd(c) => format!("cmd:{c}"),
            Secret::Literal(_) => "a literal value".to_owned(),
        }
    }

    /// Reads the secret's current value (re-reading the variable or file, re-running the command),
    /// a command given [`DEFAULT_CREDENTIAL_TIMEOUT`].
    pub async fn resolve(&self) -> Result<String, ConfigError> {
        self.resolve_within(DEFAULT_CREDENTIAL_TIMEOUT).await
    }

    /// Like [`Secret::resolve`], a `cmd:` given `timeout` to finish: past it, the command and
    /// everything it started are killed and the secret does not resolve.
    pub async fn resolve_within(&self, timeout: Duration) -> Result<String, ConfigError> {
        let fail = |message: String| ConfigError::Secret {
            reference: self.describe(),
            message,
        };
        let value = match self {
            Secret::Literal(v) => v.clone(),
            Secret::Env(name) => {
                std::env::var(name).map_err(|_| fail("the variable is not set".into()))?
            }
            Secret::File(path) => tokio::fs::read_to_string(path)
                .await
                .map_err(|e| fail(e.to_string()))?,
            Secret::Cmd(cmd) => {
                let mut command = tokio::process::Command::new("sh");
                command
                    .arg("-c")
                    .arg(cmd)
                    .stdin(std::process::Stdio::null())
                    .stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::null())
                    .kill_on_drop(true);
                // Its own process group, so that a timeout kills what the shell started too.
                #[cfg(unix)]
                command.process_group(0);
                let child = command.spawn().map_err(|e| fail(e.to_string()))?;
                let pid = child.id();
                let out = match tokio::time::timeout(timeout, child.wait_with_output()).await {
                    Ok(out) => out.map_err(|e| fail(e.to_string()))?,
                    Err(_) => {
                        kill_process_group(pid);
                        return Err(fail(format!(
                            "the command did not finish within {} ms",
                            timeout.as_millis()
                        )));
                    }
                };
                if !out.status.success() {
                    return Err(fail(format!("the command exited with {}", out.status)));
                }
                String::from_utf8(out.stdout).map_err(|_| fail("output is not UTF-8".into()))?
            }
        };
        let value = value.trim().to_owned();
        if value.is_empty() {
            return Err(fail("the value is empty".into()));
        }
        crate::redact::remember(&value);
        Ok(value)
    }
}

/// Resolves the admin key and refuses one shorter than [`MIN_ADMIN_KEY_CHARS`]; what `serve`,
/// a reload and `check` all do.
pub async fn resolve_admin_key(secret: &Secret) -> Result<String, ConfigError> {
    let key = secret.resolve().await?;
    let chars = key.chars().count();
    if chars < MIN_ADMIN_KEY_CHARS {
        return Err(ConfigError::ShortAdminKey { chars });
    }
    Ok(key)
}

/// How often a `cmd:` credential may be re-run after 401s when nothing else is configured.
pub const DEFAULT_CREDENTIAL_REFRESH_INTERVAL: Duration = Duration::from_secs(60);

/// How long a `cmd:` secret may run when nothing else is configured.
pub const DEFAULT_CREDENTIAL_TIMEOUT: Duration = Duration::from_secs(10);

/// Kills the process group led by `pid` (a timed-out `cmd:` secret and its children).
fn kill_process_group(pid: Option<u32>) {
    #[cfg(unix)]
    if let Some(pgid) = pid.and_then(|p| i32::try_from(p).ok()).filter(|p| *p > 0) {
        // SAFETY: kill(2) takes plain integers and touches no memory of ours; a group that
        // already exited makes it fail with ESRCH, which is ignored.
        unsafe {
            libc::kill(-pgid, libc::SIGKILL);
        }
    }
    #[cfg(not(unix))]
    let _ = pid;
}

impl Config {
    /// Every secret of the configuration with the setting it belongs to and how long it may take
    /// to resolve (a provider's `credential_timeout`, else the default).
    pub fn secrets(&self) -> Vec<(String, &Secret, Duration)> {
        let mut out: Vec<(String, &Secret, Duration)> = self
            .providers
            .values()
            .filter_map(|p| {
                p.api_key.as_ref().map(|s| {
                    (
                        format!("providers.{}.api_key", p.name),
                        s,
                        p.credential_timeout,
                    )
                })
            })
            .collect();
        if let Some(s) = &self.admin_key {
            out.push(("admin_key".to_owned(), s, DEFAULT_CREDENTIAL_TIMEOUT));
        }
        out
    }

    /// Resolves every secret at once (each `cmd:` within its timeout, only with `run_commands`)
    /// and returns those that do not resolve, by setting, in config order. What `switchyard
    /// check` verifies; it runs no command unless asked (`--resolve-secrets`), so checking a
    /// config one does not trust never runs it.
    pub async fn unresolvable_secrets(&self, run_commands: bool) -> Vec<SecretProblem> {
        let checks = self
            .secrets()
            .into_iter()
            .filter(|(_, secret, _)| run_commands || !matches!(secret, Secret::Cmd(_)))
            .map(|(setting, secret, timeout)| async move {
                let resolved = if setting == "admin_key" {
                    resolve_admin_key(secret).await
                } else {
                    secret.resolve_within(timeout).await
                };
                resolved.err().map(|e| SecretProblem {
                    setting,
                    message: e.to_string(),
                })
            });
        futures_util::future::join_all(checks)
            .await
            .into_iter()
            .flatten()
            .collect()
    }
}
