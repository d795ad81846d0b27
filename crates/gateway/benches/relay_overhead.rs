//! What the gateway adds to latency, measured in one run against the same mock upstream:
//! direct-to-mock versus through Switchyard, for a non-streamed request, the first streamed
//! token, and a long stream's total time; and an Anthropic Messages stream passed through
//! (`POST /v1/messages` to an Anthropic route) against the same request to the mock. Run with `cargo bench -p switchyard --bench relay_overhead`
//! (optionally `-- <iterations>`). Prints medians, p90s, the added time and the ratio.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use mock_upstream::MockUpstream;
use serde_json::json;
use switchyard::app::Gateway;
use switchyard::config::Config;

struct Stats {
    median: Duration,
    p90: Duration,
}

fn stats(mut v: Vec<Duration>) -> Stats {
    v.sort();
    Stats {
        median: v[v.len() / 2],
        p90: v[v.len() * 9 / 10],
    }
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn report(what: &str, direct: Vec<Duration>, gateway: Vec<Duration>) {
    let (d, g) = (stats(direct), stats(gateway));
    println!(
        "{what:<34} direct median {:>9.1} µs p90 {:>9.1} µs | gateway median {:>9.1} µs p90 {:>9.1} µs | added {:>8.1} µs | ratio {:.3}",
        us(d.median),
        us(d.p90),
        us(g.median),
        us(g.p90),
        us(g.median) - us(d.median),
        g.median.as_secs_f64() / d.median.as_secs_f64()
    );
}

/// Tells the mock how many tokens the next answers have (the gateway does not forward a caller's
/// `mock` field, so direct and relayed requests are steered the same way, from here).
fn answer_tokens(mock: &MockUpstream, tokens: u32) {
    mock.set_options(json!({"tokens": tokens}))
        .expect("mock options");
}

async fn non_stream(
    client: &reqwest::Client,
    mock: &MockUpstream,
    url: &str,
    key: &str,
) -> Duration {
    answer_tokens(mock, 20);
    let started = Instant::now();
    let resp = client
        .post(url)
        .bearer_auth(key)
        .json(&json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .expect("request");
    assert!(resp.status().is_success());
    resp.bytes().await.expect("body");
    started.elapsed()
}

/// Time to the first content token, and to the end of the stream.
async fn stream(
    client: &reqwest::Client,
    mock: &MockUpstream,
    url: &str,
    key: &str,
    tokens: u32,
) -> (Duration, Duration) {
    answer_tokens(mock, tokens);
    let started = Instant::now();
    let resp = client
        .post(url)
        .bearer_auth(key)
        .json(
            &json!({"model": "m", "stream": true, "messages": [{"role": "user", "content": "hi"}]}),
        )
        .send()
        .await
        .expect("request");
    assert!(resp.status().is_success());
    let mut body = resp.bytes_stream();
    let mut first = None;
    while let Some(frame) = body.next().await {
        let frame = frame.expect("frame");
        if first.is_none()
            && frame.windows(9).any(|w| w == b"\"content\"")
            && frame.windows(4).any(|w| w == b" the")
        {
            first = Some(started.elapsed());
        }
    }
    (first.expect("a content token"), started.elapsed())
}

/// A whole Anthropic Messages stream of `tokens` words: direct to the mock (`model` its route's
/// upstream name) or through the gateway's passthrough.
async fn messages_stream(
    client: &reqwest::Client,
    mock: &MockUpstream,
    url: &str,
    key: &str,
    model: &str,
    tokens: u32,
) -> Duration {
    answer_tokens(mock, tokens);
    let started = Instant::now();
    let resp = client
        .post(url)
        .header("x-api-key", key)
        .header("anthropic-version", "2023-06-01")
        .json(&json!({"model": model, "max_tokens": 4096, "stream": true,
                      "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .expect("request");
    assert!(resp.status().is_success());
    let mut body = resp.bytes_stream();
    let mut stopped = false;
    while let Some(frame) = body.next().await {
        stopped |= frame
            .expect("frame")
            .windows(12)
            .any(|w| w == b"message_stop");
    }
    assert!(stopped, "the stream ended with message_stop");
    started.elapsed()
}

fn main() {
    let iterations: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(400);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let mock = MockUpstream::start().await.expect("mock");
        mock.set_recording(false);
        let db = std::env::temp_dir().join(format!("switchyard-bench-{}.db", std::process::id()));
        let text = format!(
            "demo_credits = \"1000000\"\n[providers.mock]\nkind = \"openai\"\nbase_url = \"{0}\"\n[models.m]\nroutes = [\"mock/m\"]\ninput_price = \"1\"\noutput_price = \"2\"\n[providers.anthropic]\nkind = \"anthropic\"\nbase_url = \"{0}\"\napi_key = \"x\"\n[models.claude]\nroutes = [\"anthropic/mock-claude\"]\ninput_price = \"1\"\noutput_price = \"2\"\n",
            mock.base_url()
        );
        let config = Config::parse(&text, "bench").expect("config");
        let (gw, first, _) = Gateway::build(Some(config), Some(format!("sqlite://{}", db.display())))
            .await
            .expect("gateway");
        let key = first.expect("key").key;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(gw.serve(listener, std::future::pending()));
        let client = reqwest::Client::builder().tcp_nodelay(true).build().expect("client");
        let direct_url = format!("{}/chat/completions", mock.base_url());
        let gateway_url = format!("http://{addr}/v1/chat/completions");
        // Warm up both paths (connections, tokenizer, caches).
        for _ in 0..50 {
            non_stream(&client, &mock, &direct_url, "x").await;
            non_stream(&client, &mock, &gateway_url, &key).await;
            stream(&client, &mock, &gateway_url, &key, 5).await;
        }
        println!("relay_overhead: {iterations} iterations per measurement, interleaved");
        let (mut d, mut g) = (vec![], vec![]);
        for _ in 0..iterations {
            d.push(non_stream(&client, &mock, &direct_url, "x").await);
            g.push(non_stream(&client, &mock, &gateway_url, &key).await);
        }
        report("non-streamed request (20 tokens)", d, g);
        let (mut d_first, mut g_first, mut d_total, mut g_total) = (vec![], vec![], vec![], vec![]);
        for _ in 0..iterations {
            let (f, t) = stream(&client, &mock, &direct_url, "x", 20).await;
            d_first.push(f);
            d_total.push(t);
            let (f, t) = stream(&client, &mock, &gateway_url, &key, 20).await;
            g_first.push(f);
            g_total.push(t);
        }
        report("first streamed token", d_first, g_first);
        report("whole 20-token stream", d_total, g_total);
        let (mut d, mut g) = (vec![], vec![]);
        for _ in 0..(iterations / 10).max(10) {
            d.push(stream(&client, &mock, &direct_url, "x", 1000).await.1);
            g.push(stream(&client, &mock, &gateway_url, &key, 1000).await.1);
        }
        report("whole 1000-token stream", d, g);
        let direct_messages = format!("{}/messages", mock.base_url());
        let gateway_messages = format!("http://{addr}/v1/messages");
        for _ in 0..20 {
            messages_stream(&client, &mock, &gateway_messages, &key, "claude", 20).await;
        }
        let (mut d, mut g) = (vec![], vec![]);
        for _ in 0..iterations {
            d.push(messages_stream(&client, &mock, &direct_messages, "x", "mock-claude", 20).await);
            g.push(messages_stream(&client, &mock, &gateway_messages, &key, "claude", 20).await);
        }
        report("messages passthrough, 20 tokens", d, g);
        let (mut d, mut g) = (vec![], vec![]);
        for _ in 0..(iterations / 10).max(10) {
            d.push(messages_stream(&client, &mock, &direct_messages, "x", "mock-claude", 1000).await);
            g.push(messages_stream(&client, &mock, &gateway_messages, &key, "claude", 1000).await);
        }
        report("messages passthrough, 1000 tokens", d, g);
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
        }
    });
}
