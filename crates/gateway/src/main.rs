//! The `switchyard` binary: the top-level command line (the gateway's commands from `cli.rs`, and
//! `bench` / `bench-target` from the `switchyard-bench` crate, which only this file uses) parsed
//! and run, on mimalloc (measured: a quarter less CPU per request than the system allocator, and
//! less memory per open stream; `docs/benchmarks.md`).

use clap::{Parser, Subcommand};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(
    name = "switchyard",
    version,
    about = "An OpenAI-compatible LLM gateway, streaming first."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    #[command(flatten)]
    Gateway(switchyard::cli::Command),
    /// Load-test an OpenAI-compatible endpoint (ours or anyone's): requests/s, latency, time to
    /// first token and gaps between chunks, errors by status.
    Bench(switchyard_bench::BenchArgs),
    /// A trivial server answering every request with a fixed completion, to measure `bench` itself.
    #[command(hide = true)]
    BenchTarget(switchyard_bench::TargetArgs),
}

fn main() -> anyhow::Result<()> {
    // Held to the end: dropping it flushes the log lines still queued.
    let _logs = switchyard::telemetry::init();
    // Databases, journals and logs hold conversations and key hashes: owner-only files.
    switchyard::private_files::owner_only_from_now();
    match Cli::parse().command {
        // The gateway's commands on a multi-threaded runtime; the load tool sizes its own runtimes.
        Command::Gateway(command) => switchyard::cli::main(command),
        Command::Bench(args) => switchyard_bench::bench(args),
        Command::BenchTarget(args) => switchyard_bench::target(args),
    }
}
