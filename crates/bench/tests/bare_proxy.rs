//! `bare-proxy`, the built binary, in front of an in-process `mock-upstream`: a whole answer comes
//! back as the mock gives it directly and the request reaches the mock as sent; a stream comes back
//! byte for byte as the mock wrote it; a chunk passes while the upstream is still silent (nothing is
//! buffered), and a client leaving mid-stream is seen by the upstream.

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use mock_upstream::MockUpstream;
use serde_json::{json, Value};
use tokio::io::AsyncBufReadExt;

/// Starts `bare-proxy` in front of `mock` on a free port; returns the process (killed on drop) and
/// the address it printed.
async fn bare_proxy(mock: &MockUpstream) -> (tokio::process::Child, String) {
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_bare-proxy"))
        .args(["--listen", "127.0.0.1:0", "--upstream"])
        .arg(format!("http://{}", mock.addr()))
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let line = lines
        .next_line()
        .await
        .unwrap()
        .expect("bare-proxy prints its address");
    let addr = line
        .strip_prefix("bare-proxy listening on http://")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_owned();
    (child, addr)
}

/// POSTs `body` to `http://{addr}/v1/chat/completions` on a new connection; the answer's body is
/// left to read.
async fn post(addr: &str, body: &Value) -> Response<Incoming> {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = Request::post("/v1/chat/completions")
        .header("host", addr)
        .header("content-type", "application/json")
        .header("authorization", "Bearer sk-test")
        .header("x-caller-header", "kept")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap();
    send.send_request(req).await.unwrap()
}

/// A chat.completion with its per-request `id` and `created` replaced, serialised in its own order.
fn normalised(bytes: &[u8]) -> String {
    let mut v: Value = serde_json::from_slice(bytes).unwrap();
    assert!(v["id"].is_string() && v["created"].is_u64(), "{v}");
    // Replacing keeps each key where it was: the rest compares byte for byte.
    v["id"] = json!("ID");
    v["created"] = json!(0);
    v.to_string()
}

/// The recorded request without the headers that belong to one connection.
fn as_received(
    r: &mock_upstream::RecordedRequest,
) -> (String, String, Vec<(String, String)>, Value) {
    let headers = r
        .headers
        .iter()
        .filter(|(name, _)| name != "host")
        .cloned()
        .collect();
    (r.method.clone(), r.path.clone(), headers, r.body.clone())
}

#[tokio::test]
async fn a_whole_answer_comes_back_as_the_mock_gives_it() {
    let mock = MockUpstream::start().await.unwrap();
    let (_proxy, addr) = bare_proxy(&mock).await;
    let body = json!({"model": "m", "messages": [{"role": "user", "content": "hello there"}]});

    let direct = post(&mock.addr().to_string(), &body).await;
    let proxied = post(&addr, &body).await;
    assert_eq!(proxied.status(), StatusCode::OK);
    assert_eq!(proxied.status(), direct.status());
    assert_eq!(
        proxied.headers().get("content-type"),
        direct.headers().get("content-type")
    );
    let direct = direct.into_body().collect().await.unwrap().to_bytes();
    let proxied = proxied.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(normalised(&proxied), normalised(&direct));
    assert!(
        normalised(&proxied).contains("\"content\":\""),
        "{proxied:?}"
    );

    // The request reached the mock as the client sent it: method, path, headers, body.
    let requests = mock.requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(as_received(&requests[1]), as_received(&requests[0]));
    let host = |r: &mock_upstream::RecordedRequest| {
        r.headers
            .iter()
            .find(|(name, _)| name == "host")
            .map(|(_, v)| v.clone())
    };
    assert_eq!(host(&requests[1]), Some(mock.addr().to_string()));
}

/// Asks `addr` for a chat stream and reads it up to its first content event: (the rest of the body,
/// the bytes read so far).
async fn stream_to_first_content(addr: &str) -> (Incoming, Vec<u8>) {
    let body =
        json!({"model": "m", "stream": true, "messages": [{"role": "user", "content": "hi"}]});
    let res = post(addr, &body).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert!(res.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let mut body = res.into_body();
    let mut received = Vec::new();
    while !String::from_utf8_lossy(&received).contains("\"content\":\"") {
        let frame = body
            .frame()
            .await
            .expect("the stream ended before its first chunk")
            .unwrap();
        received.extend_from_slice(frame.data_ref().unwrap());
    }
    (body, received)
}

#[tokio::test]
async fn a_stream_comes_back_byte_for_byte_as_the_mock_wrote_it() {
    let mock = MockUpstream::start().await.unwrap();
    mock.set_options(json!({"tokens": 5, "gap_ms": 200}))
        .unwrap();
    let (_proxy, addr) = bare_proxy(&mock).await;

    // The first content event, then more: the answer is still going when its start has arrived.
    let (mut body, mut received) = stream_to_first_content(&addr).await;
    assert!(!String::from_utf8_lossy(&received).contains("[DONE]"));
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame.unwrap().into_data() {
            received.extend_from_slice(&data);
        }
    }
    let text = String::from_utf8(received.clone()).unwrap();
    assert!(text.ends_with("data: [DONE]\n\n"), "{text}");

    let record = mock.wait_stream_end(0).await;
    assert!(record.completed, "{record:?}");
    assert_eq!(record.tokens_written, 5);
    assert_eq!(
        text,
        String::from_utf8(record.bytes_written).unwrap(),
        "the proxied stream differs from what the mock wrote"
    );
}

#[tokio::test]
async fn a_chunk_passes_while_the_upstream_is_silent_and_a_client_leaving_reaches_it() {
    let mock = MockUpstream::start().await.unwrap();
    // One content chunk, then silence until the client leaves: a proxy that waited for more (or for
    // the end) would never hand the first chunk on.
    mock.set_options(json!({"tokens": 5, "stall_after": 1}))
        .unwrap();
    let (_proxy, addr) = bare_proxy(&mock).await;

    let (body, _) = stream_to_first_content(&addr).await;
    let streams = mock.streams();
    assert_eq!(streams.len(), 1);
    assert_eq!(streams[0].tokens_written, 1);
    assert!(!streams[0].completed, "{:?}", streams[0]);

    // The client leaves: the proxy drops its upstream exchange, and the mock sees its client go.
    drop(body);
    let record = mock.wait_stream_end(0).await;
    assert!(record.client_disconnected, "{record:?}");
    assert!(!record.completed, "{record:?}");
}
