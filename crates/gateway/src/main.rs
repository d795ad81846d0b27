//! The `switchyard` binary: parses the command line and runs it (see `cli.rs`).

use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    switchyard::telemetry::init();
    switchyard::cli::run(switchyard::cli::Cli::parse()).await
}
