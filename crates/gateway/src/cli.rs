//! The gateway's own shell commands (`serve`, `keys`, `usage`, `check`): their arguments and what
//! each does. The binary's `main.rs` flattens `Command` into the top-level parser next to `bench`
//! and `bench-target` (the `switchyard-bench` crate, which this library does not know) and calls
//! `main`, which gives these commands the tokio runtime.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Subcommand;

use crate::app::{Gateway, Live};
use crate::auth;
use crate::config::{Config, DEFAULT_DATABASE};
use crate::store::ledger::periods::{parse_duration, parse_instant};
use crate::store::ledger::{
    now_ms, parse_usd, AmountRule, Budget, BudgetPeriod, GroupBy, KeyRecord, Ledger, LedgerError,
    Nanos, NewKey, UsageQuery, MAX_USD,
};

#[derive(Debug, clap::Args)]
pub struct DbArgs {
    /// The config file whose database to use (default: the embedded default's `switchyard.db`).
    #[arg(long, global = true)]
    pub config: Option<PathBuf>,
    /// A database URL that overrides the config's (`sqlite://FILE` or `postgres://…`).
    #[arg(long, global = true, env = "SWITCHYARD_DATABASE")]
    pub database: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gateway (with no --config: the embedded default with the offline demo models).
    Serve {
        #[command(flatten)]
        db: DbArgs,
        /// Address to listen on, e.g. 127.0.0.1:8080 (overrides the config).
        #[arg(long)]
        listen: Option<String>,
    },
    /// Manage API keys.
    Keys {
        #[command(flatten)]
        db: DbArgs,
        #[command(subcommand)]
        action: KeysAction,
    },
    /// Spend and tokens as a table.
    Usage {
        #[command(flatten)]
        db: DbArgs,
        /// Only this key.
        #[arg(long)]
        key: Option<String>,
        /// From when: a duration ago (30m, 24h, 7d), a date (2026-11-22) or a UTC date-time.
        #[arg(long, default_value = "24h")]
        since: String,
        /// Until when (same forms as --since; default: now).
        #[arg(long)]
        until: Option<String>,
        /// Group by model, key or day.
        #[arg(long, default_value = "model")]
        by: String,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Validate a config file as a reload would: what is wrong, with the line, and every
    /// `env:`/`file:`/`cmd:` secret that does not resolve (by name, never its value).
    Check {
        #[arg(long)]
        config: PathBuf,
        /// Also run the `cmd:` secrets (a config that names one is code: check only configs you
        /// trust with this).
        #[arg(long)]
        resolve_secrets: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum KeysAction {
    /// Create a key and print it once.
    Create {
        #[arg(long)]
        name: String,
        /// Credit in USD, e.g. 10 or 2.50.
        #[arg(long, default_value = "0")]
        credits: String,
        #[arg(long)]
        rpm: Option<i64>,
        #[arg(long)]
        tpm: Option<i64>,
        /// Requests this key may have open at once (across every instance sharing Redis).
        #[arg(long)]
        concurrency: Option<i64>,
        /// Comma-separated models this key may use (default: all).
        #[arg(long, value_delimiter = ',')]
        models: Option<Vec<String>>,
        /// A spending cap in USD per --budget-period.
        #[arg(long)]
        budget: Option<String>,
        /// day or month (UTC); default month.
        #[arg(long, default_value = "month")]
        budget_period: String,
        /// The key stops working after this long: 30d, 12h, 90m.
        #[arg(long)]
        expires_in: Option<String>,
        /// Free-form JSON kept with the key, e.g. '{"team":"search"}'.
        #[arg(long)]
        metadata: Option<String>,
        /// Coding-plan windows, each capping money, requests or tokens:
        /// 5h:usd=2,7d:requests=2000 (a window opens with its first request).
        #[arg(long)]
        quota: Option<String>,
        /// Print {"id":…,"key":…}.
        #[arg(long)]
        json: bool,
    },
    /// Show one key (never the key itself).
    Show { id: String },
    /// List keys (never the keys themselves).
    List {
        #[arg(long)]
        json: bool,
    },
    /// Revoke a key by id; its stored Responses API conversations are deleted with it unless
    /// `--keep-responses` (or `[responses] keep_on_revoke` in the `--config` given).
    Revoke {
        id: String,
        #[arg(long)]
        keep_responses: bool,
    },
    /// Add credit (USD) to a key.
    TopUp {
        id: String,
        /// More than 0, e.g. 10 or 2.50 (a negative amount is refused, not read as a flag).
        #[arg(allow_hyphen_values = true)]
        usd: String,
    },
}

/// An amount typed on the command line, parsed as the admin API parses it (`ledger::parse_usd`).
fn usd(flag: &str, s: &str, rule: AmountRule) -> anyhow::Result<Nanos> {
    parse_usd(s, rule).map_err(|e| anyhow::anyhow!("{flag} {s:?} {e}"))
}

/// `30m`, `24h`, `7d`, `90s`.
pub fn parse_since(s: &str) -> anyhow::Result<Duration> {
    parse_duration(s).with_context(|| format!("{s:?} is not a duration like 24h, 30m or 7d"))
}

fn instant(flag: &str, s: &str) -> anyhow::Result<i64> {
    parse_instant(s, now_ms()).with_context(|| {
        format!("{flag} {s:?}: expected a duration ago (24h, 7d), a date (2026-11-22) or a UTC date-time (2026-11-22T10:00:00Z)")
    })
}

async fn open_ledger(db: &DbArgs) -> anyhow::Result<Ledger> {
    let url = match (&db.database, &db.config) {
        (Some(url), _) => url.clone(),
        (None, Some(path)) => Config::load(path)?.database,
        (None, None) => DEFAULT_DATABASE.to_owned(),
    };
    Ok(Ledger::connect(&url).await?)
}

fn key_json(k: &KeyRecord) -> serde_json::Value {
    k.to_json(Nanos::ZERO)
}

fn key_status(k: &KeyRecord) -> &'static str {
    if k.revoked_at.is_some() {
        "revoked"
    } else if k.is_expired(now_ms()) {
        "expired"
    } else {
        "active"
    }
}

/// Runs one of the gateway's commands to completion on a multi-threaded tokio runtime.
pub fn main(command: Command) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")?
        .block_on(run(command))
}

/// Runs one of the gateway's commands to completion (inside a runtime).
pub async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Serve { db, listen } => serve(db, listen).await,
        Command::Check {
            config,
            resolve_secrets,
        } => {
            let c = Config::load(&config)?;
            let commands = c
                .secrets()
                .iter()
                .filter(|(_, s, _)| matches!(s, crate::config::Secret::Cmd(_)))
                .count();
            if commands > 0 && !resolve_secrets {
                eprintln!(
                    "{}: {commands} cmd: secret(s) not run (pass --resolve-secrets to run them)",
                    config.display()
                );
            }
            let problems = c.unresolvable_secrets(resolve_secrets).await;
            if !problems.is_empty() {
                for p in &problems {
                    eprintln!("{}: {p}", config.display());
                }
                bail!(
                    "{}: {} secret(s) do not resolve",
                    config.display(),
                    problems.len()
                );
            }
            println!(
                "{}: ok ({} providers, {} models)",
                config.display(),
                c.providers.len(),
                c.models.len()
            );
            Ok(())
        }
        Command::Keys { db, action } => {
            let ledger = open_ledger(&db).await?;
            match action {
                KeysAction::Create {
                    name,
                    credits,
                    rpm,
                    tpm,
                    concurrency,
                    models,
                    budget,
                    budget_period,
                    expires_in,
                    metadata,
                    quota,
                    json,
                } => {
                    let period = BudgetPeriod::parse(&budget_period).with_context(|| {
                        format!("--budget-period {budget_period}: expected day or month")
                    })?;
                    let budget = budget
                        .map(|b| {
                            anyhow::Ok(Budget {
                                limit: usd("--budget", &b, AmountRule::NonNegative)?,
                                period,
                            })
                        })
                        .transpose()?;
                    let expires_at = expires_in
                        .map(|e| {
                            let d = parse_since(&e).context("--expires-in")?;
                            anyhow::Ok(now_ms() + d.as_millis() as i64)
                        })
                        .transpose()?;
                    let metadata = metadata
                        .map(|m| {
                            serde_json::from_str::<serde_json::Value>(&m)
                                .with_context(|| format!("--metadata {m}: not JSON"))
                        })
                        .transpose()?;
                    let new = NewKey {
                        name,
                        credits: usd("--credits", &credits, AmountRule::NonNegative)?,
                        rpm,
                        tpm,
                        max_concurrent: concurrency,
                        models,
                        budget,
                        expires_at,
                        metadata,
                        quotas: quota
                            .as_deref()
                            .map(crate::store::ledger::quotas::parse_spec)
                            .transpose()
                            .map_err(|e| anyhow::anyhow!("--quota: {e}"))?
                            .unwrap_or_default(),
                    };
                    let (record, key) = auth::create_key(&ledger, &new).await?;
                    if json {
                        println!("{}", serde_json::json!({"id": record.id, "key": key}));
                    } else {
                        println!(
                            "Created key {} ({}) with {} USD.",
                            record.id, record.name, record.balance
                        );
                        println!("{key}");
                        println!("This is the only time the key is shown.");
                    }
                }
                KeysAction::List { json } => {
                    let keys = ledger.keys().await?;
                    if json {
                        let list: Vec<_> = keys.iter().map(key_json).collect();
                        println!("{}", serde_json::Value::Array(list));
                    } else {
                        println!(
                            "{:<22} {:<16} {:<14} {:>14} {:>14} STATUS",
                            "ID", "NAME", "KEY", "BALANCE", "SPEND"
                        );
                        for k in keys {
                            println!(
                                "{:<22} {:<16} {:<14} {:>14} {:>14} {}",
                                k.id,
                                k.name,
                                k.prefix,
                                k.balance,
                                k.spent,
                                key_status(&k)
                            );
                        }
                    }
                }
                KeysAction::Show { id } => {
                    let k = ledger
                        .key(&id)
                        .await?
                        .with_context(|| format!("no key with id {id}"))?;
                    println!("{}", serde_json::to_string_pretty(&key_json(&k))?);
                }
                KeysAction::Revoke { id, keep_responses } => {
                    ledger.revoke_key(&id).await?;
                    let keep = keep_responses
                        || match &db.config {
                            Some(path) => Config::load(path)?.responses.keep_on_revoke,
                            None => false,
                        };
                    if keep {
                        println!("Revoked {id}; its stored responses are kept.");
                    } else {
                        let n = ledger.store().responses().delete_of_key(&id).await?;
                        println!("Revoked {id}; {n} stored response(s) deleted.");
                    }
                }
                KeysAction::TopUp { id, usd: amount } => {
                    let amount = usd("top-up", &amount, AmountRule::Positive)?;
                    let k = match ledger.top_up(&id, amount).await {
                        Err(LedgerError::BalanceOutOfRange) => {
                            bail!("top-up {amount}: the balance of {id} would be more than {MAX_USD} USD")
                        }
                        r => r?,
                    };
                    println!("{} now has {} USD.", k.id, k.balance);
                }
            }
            Ok(())
        }
        Command::Usage {
            db,
            key,
            since,
            until,
            by,
            json,
        } => {
            let Some(group_by) = GroupBy::parse(&by) else {
                bail!("--by {by}: expected model, key or day");
            };
            let query = UsageQuery {
                group_by,
                since_ms: instant("--since", &since)?,
                until_ms: until
                    .as_deref()
                    .map(|u| instant("--until", u))
                    .transpose()?,
                key_id: key,
            };
            let ledger = open_ledger(&db).await?;
            let rows = ledger.usage_report(&query).await?;
            if json {
                println!("{}", serde_json::to_string(&rows)?);
            } else {
                println!(
                    "{:<28} {:>9} {:>14} {:>14} {:>16}",
                    by.to_uppercase(),
                    "REQUESTS",
                    "PROMPT",
                    "COMPLETION",
                    "COST (USD)"
                );
                let (mut n, mut p, mut c, mut cost) = (0, 0, 0, Nanos::ZERO);
                for r in rows {
                    println!(
                        "{:<28} {:>9} {:>14} {:>14} {:>16}",
                        r.group, r.requests, r.prompt_tokens, r.completion_tokens, r.cost
                    );
                    (n, p, c, cost) = (
                        n + r.requests,
                        p + r.prompt_tokens,
                        c + r.completion_tokens,
                        cost + r.cost,
                    );
                }
                println!("{:<28} {:>9} {:>14} {:>14} {:>16}", "TOTAL", n, p, c, cost);
            }
            Ok(())
        }
    }
}

async fn serve(db: DbArgs, listen: Option<String>) -> anyhow::Result<()> {
    // Registered before anything else: from here on SIGHUP reloads instead of ending the process.
    let hangups =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).context("SIGHUP")?;
    // Thousands of concurrent streams need as many descriptors as the system allows us.
    crate::nofile::raise_nofile_limit();
    let config = db.config.as_deref().map(Config::load).transpose()?;
    let (gw, first_key, problems) = Gateway::build(config, db.database.clone()).await?;
    for p in &problems {
        tracing::warn!("{p}");
    }
    let addr = match listen {
        Some(l) => l
            .parse()
            .with_context(|| format!("--listen {l}: not an address"))?,
        None => gw.config.listen,
    };
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    let addr = listener.local_addr()?;
    if let Some(k) = &first_key {
        println!(
            "Created the first API key ({}, {} USD of credit). It is shown only this once:",
            k.id, k.credits
        );
        println!("{}", k.key);
    }
    println!("Switchyard listening on http://{addr}/v1");
    println!(
        "Models: {}",
        gw.config
            .models
            .keys()
            .cloned()
            .collect::<Vec<_>>()
            .join(", ")
    );
    let live = Live::new(gw, db.config.clone(), db.database.clone());
    let reloads = tokio::spawn(reload_on_hangup(hangups, live.clone()));
    live.clone().serve(listener, shutdown_signal()).await?;
    reloads.abort();
    // Every stream has ended and settled: make its entry durable and close the journal.
    live.current().ledger.shutdown().await;
    if let Some(events) = &live.current().events {
        events.flush().await;
    }
    Ok(())
}

/// SIGHUP reloads the config file (`Live::reload` logs what changed, or why it was refused).
async fn reload_on_hangup(mut hangups: tokio::signal::unix::Signal, live: Live) {
    while hangups.recv().await.is_some() {
        tracing::info!("SIGHUP: reloading the config");
        // The outcome is logged by `reload` itself.
        let _ = live.reload().await;
    }
}

/// Resolves on Ctrl-C or SIGTERM: the gateway then stops accepting and lets open streams finish,
/// so that every request in flight is settled.
async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = async {
            match term.as_mut() {
                Some(t) => { t.recv().await; }
                None => std::future::pending::<()>().await,
            }
        } => {}
    }
    tracing::info!("shutting down: open streams are allowed to finish");
}
