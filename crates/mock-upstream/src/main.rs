//! The `mock-upstream` binary: serves the fake provider on `--listen ADDR` until killed, with recording
//! off so memory stays flat under benchmark load.

use std::net::SocketAddr;

use clap::Parser;
use mock_upstream::{MockOptions, MockUpstream};

/// A fake LLM provider (OpenAI, DeepSeek and Anthropic dialects) for tests and benchmarks.
#[derive(Parser)]
#[command(name = "mock-upstream", version)]
struct Args {
    /// Address to listen on, e.g. 127.0.0.1:9000 (port 0 picks a free one).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Accept only this key (`Authorization: Bearer KEY` or `x-api-key: KEY`); any key if absent.
    #[arg(long, env = "MOCK_UPSTREAM_KEY")]
    key: Option<String>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mock = MockUpstream::bind(
        args.listen,
        MockOptions {
            expected_key: args.key,
            ..MockOptions::default()
        },
    )
    .await?;
    mock.set_recording(false);
    println!("mock-upstream listening on {}", mock.base_url());
    tokio::signal::ctrl_c().await?;
    Ok(())
}
