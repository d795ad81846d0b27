//! The `switchyard` command line: argument definitions and what each shell command does
//! (`serve`, `keys`, `usage`, `check`). `main.rs` only parses and calls `run`.

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use rust_decimal::Decimal;

use crate::app::Gateway;
use crate::auth;
use crate::config::{Config, DEFAULT_DATABASE};
use crate::ledger::{now_ms, GroupBy, KeyRecord, Ledger, Nanos, NewKey};

#[derive(Debug, Parser)]
#[command(
    name = "switchyard",
    version,
    about = "An OpenAI-compatible LLM gateway, streaming first."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

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
        /// How far back: 30m, 24h, 7d.
        #[arg(long, default_value = "24h")]
        since: String,
        /// Group by model, key or day.
        #[arg(long, default_value = "model")]
        by: String,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Validate a config file and say exactly what is wrong, with the line.
    Check {
        #[arg(long)]
        config: PathBuf,
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
        /// Comma-separated models this key may use (default: all).
        #[arg(long, value_delimiter = ',')]
        models: Option<Vec<String>>,
        /// Print {"id":…,"key":…}.
        #[arg(long)]
        json: bool,
    },
    /// List keys (never the keys themselves).
    List {
        #[arg(long)]
        json: bool,
    },
    /// Revoke a key by id.
    Revoke { id: String },
    /// Add credit (USD) to a key.
    TopUp { id: String, usd: String },
}

fn usd(s: &str) -> anyhow::Result<Nanos> {
    let d = Decimal::from_str(s).with_context(|| format!("{s:?} is not an amount of USD"))?;
    Nanos::from_usd(d).with_context(|| format!("{s} USD is out of range"))
}

/// `30m`, `24h`, `7d`, `90s`.
pub fn parse_since(s: &str) -> anyhow::Result<Duration> {
    let (n, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = n
        .parse()
        .with_context(|| format!("{s:?} is not a duration like 24h"))?;
    let secs = match unit {
        "s" => 1,
        "m" => 60,
        "h" | "" => 3600,
        "d" => 86_400,
        _ => bail!("{s:?}: the unit must be s, m, h or d"),
    };
    Ok(Duration::from_secs(n * secs))
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
    serde_json::json!({
        "id": k.id, "name": k.name, "prefix": k.prefix,
        "balance": k.balance.to_string(), "spend": k.spent.to_string(),
        "rpm": k.rpm, "tpm": k.tpm, "models": k.models,
        "created_at": k.created_at, "revoked": k.revoked_at.is_some(),
    })
}

/// Runs one command to completion.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve { db, listen } => serve(db, listen).await,
        Command::Check { config } => {
            let c = Config::load(&config)?;
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
                    models,
                    json,
                } => {
                    let new = NewKey {
                        name,
                        credits: usd(&credits)?,
                        rpm,
                        tpm,
                        models,
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
                            let status = if k.revoked_at.is_some() {
                                "revoked"
                            } else {
                                "active"
                            };
                            println!(
                                "{:<22} {:<16} {:<14} {:>14} {:>14} {}",
                                k.id, k.name, k.prefix, k.balance, k.spent, status
                            );
                        }
                    }
                }
                KeysAction::Revoke { id } => {
                    ledger.revoke_key(&id).await?;
                    println!("Revoked {id}.");
                }
                KeysAction::TopUp { id, usd: amount } => {
                    let k = ledger.top_up(&id, usd(&amount)?).await?;
                    println!("{} now has {} USD.", k.id, k.balance);
                }
            }
            Ok(())
        }
        Command::Usage {
            db,
            key,
            since,
            by,
            json,
        } => {
            let ledger = open_ledger(&db).await?;
            let group = match by.as_str() {
                "model" => GroupBy::Model,
                "key" => GroupBy::Key,
                "day" => GroupBy::Day,
                other => bail!("--by {other}: expected model, key or day"),
            };
            let since_ms = now_ms() - parse_since(&since)?.as_millis() as i64;
            let rows = ledger.usage_report(group, since_ms, key.as_deref()).await?;
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
                for r in rows {
                    println!(
                        "{:<28} {:>9} {:>14} {:>14} {:>16}",
                        r.group, r.requests, r.prompt_tokens, r.completion_tokens, r.cost
                    );
                }
            }
            Ok(())
        }
    }
}

async fn serve(db: DbArgs, listen: Option<String>) -> anyhow::Result<()> {
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
    gw.serve(listener, async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await?;
    Ok(())
}
