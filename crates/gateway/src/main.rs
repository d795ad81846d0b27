//! The `switchyard` binary: parses the command line and runs it (see `cli.rs`).

use clap::Parser;

fn main() -> anyhow::Result<()> {
    switchyard::telemetry::init();
    switchyard::cli::main(switchyard::cli::Cli::parse())
}
