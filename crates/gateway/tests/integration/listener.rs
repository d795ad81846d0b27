//! The listener's limits as a hostile or broken client meets them, over raw TCP where a polite
//! HTTP client would hide the behaviour: headers that never end, a body that stalls, too many
//! connections from one address, oversized headers, an admin body sent without the admin key, an
//! idle keep-alive connection, a client that stops reading a stream, and a shutdown whose grace
//! runs out while streams are open (the real binary, SIGTERM).
//!
//! Limits are configured tiny so that the tests are quick; every wait is "eventually, within a
//! generous deadline", never a timing assertion.

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::StreamExt;
use mock_upstream::MockUpstream;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::harness::{
    self, books, parse_sse, released, start_with_mock, start_with_mock_top, user, Sse,
};

/// How long anything a test waits for may take before the test fails.
const PATIENCE: Duration = Duration::from_secs(20);

async fn connect(addr: SocketAddr) -> TcpStream {
    TcpStream::connect(addr).await.unwrap()
}

/// Reads until the server closes the connection (EOF or reset); returns what it sent. Fails the
/// test if the connection is still open after `PATIENCE`.
async fn read_until_closed(tcp: &mut TcpStream) -> Vec<u8> {
    let mut got = Vec::new();
    let read = async {
        let mut buf = [0u8; 8192];
        loop {
            match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    };
    tokio::time::timeout(PATIENCE, read)
        .await
        .expect("the server closed the connection");
    got
}

/// Reads one response head (through the blank line) and its status code.
async fn read_head(tcp: &mut TcpStream) -> (u16, String) {
    let mut got = Vec::new();
    let read = async {
        let mut byte = [0u8; 1];
        while !got.ends_with(b"\r\n\r\n") {
            let n = tcp.read(&mut byte).await.unwrap();
            assert!(
                n > 0,
                "closed before a response: {:?}",
                String::from_utf8_lossy(&got)
            );
            got.push(byte[0]);
        }
    };
    tokio::time::timeout(PATIENCE, read)
        .await
        .expect("a response head arrived");
    let head = String::from_utf8(got).unwrap();
    let status = head[9..12].parse().unwrap();
    (status, head)
}

/// A whole response to a request that closes the connection: status and JSON body.
async fn read_closing_response(tcp: &mut TcpStream) -> (u16, Value) {
    let raw = read_until_closed(tcp).await;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no response: {text:?}"));
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

/// Polls an async condition until it holds, failing after `PATIENCE`.
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + PATIENCE;
    while !check().await {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn healthz_on_new_connection(addr: SocketAddr) -> Option<u16> {
    let mut tcp = TcpStream::connect(addr).await.ok()?;
    tcp.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .await
        .ok()?;
    let mut raw = Vec::new();
    tokio::time::timeout(PATIENCE, tcp.read_to_end(&mut raw))
        .await
        .ok()?
        .ok()?;
    String::from_utf8_lossy(&raw).get(9..12)?.parse().ok()
}

fn metrics_line(text: &str, name_and_labels: &str) -> bool {
    text.lines().any(|l| l.starts_with(name_and_labels))
}

#[tokio::test]
async fn headers_never_finished_close_the_connection_after_the_header_timeout() {
    let (gw, _mock) = start_with_mock("[server]\nheader_read_timeout_ms = 200").await;
    let mut tcp = connect(gw.addr).await;
    tcp.write_all(b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nx-slow: ")
        .await
        .unwrap();
    let sent = read_until_closed(&mut tcp).await;
    assert!(
        sent.is_empty(),
        "no answer is owed to half a head: {:?}",
        String::from_utf8_lossy(&sent)
    );
    // A connection that never sends a byte is closed the same way.
    let mut silent = connect(gw.addr).await;
    read_until_closed(&mut silent).await;
    let metrics = harness::get_text(gw.url("/metrics")).await;
    assert!(
        metrics_line(
            &metrics,
            "switchyard_connections_closed_total{reason=\"header_timeout\"}"
        ),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_body_that_stalls_is_answered_408() {
    let (gw, _mock) = start_with_mock("[server]\nbody_read_timeout_ms = 200").await;
    let mut tcp = connect(gw.addr).await;
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {}\r\ncontent-type: application/json\r\ncontent-length: 5000\r\n\r\n{{\"model\":",
        gw.key
    );
    tcp.write_all(head.as_bytes()).await.unwrap();
    let (status, head) = read_head(&mut tcp).await;
    assert_eq!(status, 408, "{head}");
    let mut body = vec![0u8; 4096];
    let n = tokio::time::timeout(PATIENCE, tcp.read(&mut body))
        .await
        .unwrap()
        .unwrap();
    let error: Value = serde_json::from_slice(&body[..n]).unwrap();
    assert_eq!(error["error"]["code"], "request_timeout", "{error}");
    assert_eq!(error["error"]["type"], "invalid_request_error", "{error}");
    // Nothing was admitted, so nothing was billed.
    let (entries, _) = books(&gw.gw.ledger, &gw.key_id).await;
    assert!(entries.is_empty(), "{entries:?}");
}

#[tokio::test]
async fn connections_past_the_per_address_cap_get_503_until_one_closes() {
    let (gw, _mock) = start_with_mock("[server]\nmax_connections_per_ip = 2").await;
    let first = connect(gw.addr).await;
    let _second = connect(gw.addr).await;
    let mut third = connect(gw.addr).await;
    third
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let (status, error) = read_closing_response(&mut third).await;
    assert_eq!(status, 503);
    assert_eq!(error["error"]["code"], "too_many_connections", "{error}");
    assert_eq!(error["error"]["type"], "service_unavailable", "{error}");
    assert!(error["error"]["message"].is_string(), "{error}");
    drop(first);
    eventually("a place freed by a closed connection", || async {
        healthz_on_new_connection(gw.addr).await == Some(200)
    })
    .await;
    let metrics = {
        let mut tcp = connect(gw.addr).await;
        tcp.write_all(b"GET /metrics HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
            .await
            .unwrap();
        String::from_utf8_lossy(&read_until_closed(&mut tcp).await).into_owned()
    };
    assert!(
        metrics_line(
            &metrics,
            "switchyard_connections_refused_total{reason=\"max_connections_per_ip\"}"
        ),
        "{metrics}"
    );
}

#[tokio::test]
async fn headers_over_the_limit_are_answered_431() {
    let (gw, _mock) = start_with_mock("[server]\nmax_header_bytes = 2048").await;
    // Over the limit: an OpenAI-shaped 431, and the connection is closed.
    let mut tcp = connect(gw.addr).await;
    let request = format!(
        "GET /healthz HTTP/1.1\r\nhost: x\r\nx-big: {}\r\n\r\n",
        "a".repeat(3000)
    );
    tcp.write_all(request.as_bytes()).await.unwrap();
    let (status, body) = read_closing_response(&mut tcp).await;
    assert_eq!(status, 431, "{body}");
    assert_eq!(body["error"]["code"], "request_header_fields_too_large");
    // Far over it: hyper stops reading the head and answers 431 itself.
    let mut tcp = connect(gw.addr).await;
    let request = format!(
        "GET /healthz HTTP/1.1\r\nhost: x\r\nx-big: {}\r\n\r\n",
        "a".repeat(8192)
    );
    tcp.write_all(request.as_bytes()).await.unwrap();
    let (status, head) = read_head(&mut tcp).await;
    assert_eq!(status, 431, "{head}");
    // Headers under the limit are served.
    let ok = harness::client()
        .get(gw.url("/healthz"))
        .header("x-medium", "a".repeat(1024))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
}

#[tokio::test]
async fn an_admin_body_is_not_read_without_the_admin_key() {
    let (gw, _mock) = start_with_mock_top(
        "admin_key = \"admin-secret-for-tests-0123456\"",
        "[server]\nbody_read_timeout_ms = 200",
    )
    .await;
    // A body declared at 1 MB (under the admin body limit) of which nothing is sent: the wrong
    // key is refused at once instead of the gateway waiting for the body.
    let mut tcp = connect(gw.addr).await;
    tcp.write_all(
        b"POST /admin/keys HTTP/1.1\r\nhost: x\r\nauthorization: Bearer not-the-admin-key\r\ncontent-type: application/json\r\ncontent-length: 1000000\r\n\r\n",
    )
    .await
    .unwrap();
    let (status, head) = read_head(&mut tcp).await;
    assert_eq!(status, 401, "{head}");
    // With the right key, a stalled admin body is bounded by the body-read timeout.
    let mut tcp = connect(gw.addr).await;
    tcp.write_all(
        b"POST /admin/keys HTTP/1.1\r\nhost: x\r\nauthorization: Bearer admin-secret-for-tests-0123456\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n{\"name\":",
    )
    .await
    .unwrap();
    let (status, head) = read_head(&mut tcp).await;
    assert_eq!(status, 408, "{head}");
    // And a whole admin body with the right key still works.
    let created = harness::client()
        .post(gw.url("/admin/keys"))
        .bearer_auth("admin-secret-for-tests-0123456")
        .json(&json!({"name": "through-the-gate", "credits": "1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201, "{}", created.text().await.unwrap());
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_the_idle_timeout() {
    // The header clock is long: only the idle clock can close this connection in time.
    let (gw, _mock) =
        start_with_mock("[server]\nidle_timeout_ms = 200\nheader_read_timeout_ms = 600000").await;
    let mut tcp = connect(gw.addr).await;
    tcp.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let (status, head) = read_head(&mut tcp).await;
    assert_eq!(status, 200, "{head}");
    assert!(
        !head.to_ascii_lowercase().contains("connection: close"),
        "{head}"
    );
    // The body ("ok"), then nothing until the server closes the idle connection.
    let rest = read_until_closed(&mut tcp).await;
    assert_eq!(rest, b"ok");
}

#[tokio::test]
async fn a_client_that_stops_reading_a_stream_is_cancelled_and_the_upstream_dropped() {
    let (gw, mock) = start_with_mock("[server]\nslow_reader_timeout_ms = 300").await;
    // Far more than the socket buffers on both sides hold.
    mock.set_options(json!({"tokens": 100_000})).unwrap();
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut tcp = socket.connect(gw.addr).await.unwrap();
    let body = json!({"model": "m", "stream": true, "messages": user("talk")}).to_string();
    let request = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        gw.key,
        body.len()
    );
    tcp.write_all(request.as_bytes()).await.unwrap();
    let (status, head) = read_head(&mut tcp).await;
    assert_eq!(status, 200, "{head}");
    // The client reads nothing more, but keeps the connection open.
    let record = tokio::time::timeout(PATIENCE, mock.wait_stream_end(0))
        .await
        .expect("the upstream stream ended");
    assert!(
        record.client_disconnected && !record.completed,
        "the gateway left the upstream: {record:?}"
    );
    assert!(record.tokens_written < 100_000, "{record:?}");
    released(&gw).await;
    let (entries, _) = books(&gw.gw.ledger, &gw.key_id).await;
    assert_eq!(entries.len(), 1, "{entries:?}");
    let entry = entries.values().next().unwrap();
    assert_eq!(entry.end_reason, "cancelled", "{entry:?}");
    drop(tcp);
}

#[tokio::test]
async fn responses_streams_end_with_response_failed_when_the_gateway_ends_streams() {
    let (gw, mock) = start_with_mock("").await;
    mock.set_options(json!({"tokens": 10_000, "gap_ms": 20}))
        .unwrap();
    let resp = harness::client()
        .post(gw.url("/v1/responses"))
        .bearer_auth(&gw.key)
        .json(&json!({"model": "m", "stream": true, "input": "talk"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mut body = resp.bytes_stream();
    let mut text = String::new();
    while !text.contains("response.output_text.delta") {
        let frame = tokio::time::timeout(PATIENCE, body.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        text.push_str(&String::from_utf8_lossy(&frame));
    }
    // What the shutdown does once its grace is over.
    gw.gw.end_streams.cancel();
    let rest = tokio::time::timeout(PATIENCE, async {
        while let Some(frame) = body.next().await {
            text.push_str(&String::from_utf8_lossy(&frame.unwrap()));
        }
    });
    rest.await.expect("the stream ended");
    let types: Vec<String> = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .map(|d| {
            serde_json::from_str::<Value>(d).unwrap()["type"]
                .as_str()
                .unwrap_or("")
                .to_owned()
        })
        .collect();
    assert_eq!(
        &types[types.len() - 2..],
        ["error", "response.failed"],
        "{types:?}"
    );
    let record = tokio::time::timeout(PATIENCE, mock.wait_stream_end(0))
        .await
        .unwrap();
    assert!(record.client_disconnected, "{record:?}");
    released(&gw).await;
    let (entries, _) = books(&gw.gw.ledger, &gw.key_id).await;
    assert_eq!(
        entries
            .values()
            .map(|e| e.end_reason.as_str())
            .collect::<Vec<_>>(),
        ["cancelled"]
    );
    // The gateway ended it: the route is not blamed.
    let failures: u64 = gw
        .gw
        .routing
        .report(&gw.gw.config)
        .iter()
        .flat_map(|p| &p.routes)
        .map(|r| r.failures)
        .sum();
    assert_eq!(failures, 0);
}

#[tokio::test]
async fn sigterm_past_the_grace_ends_open_streams_with_an_error_event_and_exits() {
    let mock = MockUpstream::start().await.unwrap();
    let dir = std::env::temp_dir().join(format!("sy-grace-{}-{}", std::process::id(), line!()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let db = dir.join("sy.db");
    let config = format!(
        r#"
database = "sqlite://{db}"
demo_credits = "100"

[server]
shutdown_grace_ms = 300

[providers.mock]
kind = "openai"
base_url = "{base}"
api_key = "upstream-secret-key"

[models.m]
routes = ["mock/m@tokens=10000,gap_ms=20"]
input_price = "2.50"
output_price = "10.00"
"#,
        db = db.display(),
        base = mock.base_url()
    );
    let config_path = dir.join("switchyard.toml");
    std::fs::write(&config_path, config).unwrap();
    let (mut child, key, base) = harness::serve_binary(
        &dir,
        &[
            "serve",
            "--config",
            config_path.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
        ],
    )
    .await;
    let key = key.expect("a fresh database prints its first key");
    let resp = harness::client()
        .post(format!("{base}/chat/completions"))
        .bearer_auth(&key)
        .json(&json!({"model": "m", "stream": true, "messages": user("talk")}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mut body = resp.bytes_stream();
    let mut text = String::from_utf8(body.next().await.unwrap().unwrap().to_vec()).unwrap();
    let pid = child.id().unwrap().to_string();
    let killed = tokio::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .await
        .unwrap();
    assert!(killed.success());
    tokio::time::timeout(PATIENCE, async {
        while let Some(frame) = body.next().await {
            text.push_str(&String::from_utf8_lossy(&frame.unwrap()));
        }
    })
    .await
    .expect("the stream ended after the grace");
    let items = parse_sse(&text);
    let tail: Vec<&Sse> = items
        .iter()
        .filter(|i| !matches!(i, Sse::Comment(_)))
        .rev()
        .take(2)
        .collect();
    assert_eq!(tail[0], &Sse::Done, "{text}");
    let Sse::Data(error) = tail[1] else {
        panic!("{text}")
    };
    assert_eq!(error["error"]["code"], 503, "{error}");
    let status = tokio::time::timeout(PATIENCE, child.wait())
        .await
        .expect("the process exited")
        .unwrap();
    assert!(status.success(), "{status}");
    let record = tokio::time::timeout(PATIENCE, mock.wait_stream_end(0))
        .await
        .unwrap();
    assert!(
        record.client_disconnected && !record.completed,
        "{record:?}"
    );
    let ledger = switchyard::store::ledger::Ledger::connect(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    let rows = ledger
        .requests(&switchyard::store::ledger::RequestQuery {
            since_ms: 0,
            until_ms: None,
            key_id: None,
            model: None,
            end_reason: None,
            status: None,
            request_type: None,
            limit: 100,
        })
        .await
        .unwrap();
    assert_eq!(
        rows.iter()
            .map(|r| r.end_reason.as_str())
            .collect::<Vec<_>>(),
        ["cancelled"]
    );
    assert!(rows[0].completion_tokens > 0, "{:?}", rows[0]);
    ledger.shutdown().await;
    let _ = std::fs::remove_dir_all(dir);
}
