//! OTLP trace export: with `[otlp]` set, one span per request reaches a collector (written here,
//! on port 0, decoding the protobuf export) with the GenAI attributes, Switchyard's own, the
//! client's `traceparent` as parent, the configured headers and service name, and never prompt
//! text; `sample_ratio = 0` exports only what a sampled client parent asks for; off by default.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::HeaderMap;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use serde_json::json;

use crate::harness::{request_id, start, start_with_mock, user, TestGateway};

const MARKER: &str = "quetzalmarmot";
const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT: &str = "00f067aa0ba902b7";

#[derive(Default)]
struct Received {
    spans: Vec<Span>,
    service_names: Vec<String>,
    auth: Vec<String>,
}

/// A collector on port 0: decodes each export and keeps its spans and headers.
async fn collector() -> (String, Arc<Mutex<Received>>) {
    let got = Arc::new(Mutex::new(Received::default()));
    let state = got.clone();
    let app = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(move |headers: HeaderMap, body: Bytes| {
            let state = state.clone();
            async move {
                let req = ExportTraceServiceRequest::decode(body).expect("an OTLP protobuf export");
                let mut got = state.lock().unwrap();
                if let Some(v) = headers.get("x-collector-token") {
                    got.auth.push(v.to_str().unwrap().to_owned());
                }
                for rs in req.resource_spans {
                    for kv in rs.resource.map(|r| r.attributes).unwrap_or_default() {
                        if kv.key == "service.name" {
                            if let Some(Any::StringValue(s)) = kv.value.and_then(|v| v.value) {
                                got.service_names.push(s);
                            }
                        }
                    }
                    for ss in rs.scope_spans {
                        got.spans.extend(ss.spans);
                    }
                }
                (
                    [("content-type", "application/x-protobuf")],
                    Vec::<u8>::new(),
                )
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, got)
}

fn attr<'a>(span: &'a Span, key: &str) -> Option<&'a Any> {
    span.attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v| v.value.as_ref())
}

fn text(span: &Span, key: &str) -> String {
    match attr(span, key) {
        Some(Any::StringValue(s)) => s.clone(),
        other => panic!("{key}: {other:?}"),
    }
}

fn int(span: &Span, key: &str) -> i64 {
    match attr(span, key) {
        Some(Any::IntValue(n)) => *n,
        other => panic!("{key}: {other:?}"),
    }
}

/// Exports what is queued and waits for the collector to have it.
async fn flush(gw: &TestGateway) {
    let otlp = gw.gw.otlp.clone().expect("otlp is on");
    tokio::task::spawn_blocking(move || otlp.flush())
        .await
        .unwrap();
}

async fn send(gw: &TestGateway, body: serde_json::Value, traceparent: Option<&str>) -> String {
    let mut req = gw.chat(body);
    if let Some(tp) = traceparent {
        req = req.header("traceparent", tp);
    }
    let resp = req.send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let id = request_id(&resp);
    resp.text().await.unwrap();
    gw.gw
        .ledger
        .wait_for_entry(&id, Duration::from_secs(20))
        .await
        .unwrap()
        .unwrap();
    id
}

async fn gateway(
    sample: &str,
) -> (
    TestGateway,
    mock_upstream::MockUpstream,
    Arc<Mutex<Received>>,
) {
    let (url, got) = collector().await;
    let token = crate::harness::temp_db().with_extension("token");
    std::fs::write(&token, "collector-token-123\n").unwrap();
    let mock = mock_upstream::MockUpstream::start().await.unwrap();
    let text = crate::harness::mock_config(
        &mock,
        &format!(
            "[otlp]\nendpoint = \"{url}\"\nservice_name = \"gw-test\"\n{sample}\n\
             headers = {{ \"x-collector-token\" = \"file:{}\" }}\n",
            token.display()
        ),
    );
    let gw = start(&text).await;
    (gw, mock, got)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_request_is_one_span_with_the_genai_attributes() {
    let (gw, mock, got) = gateway("").await;
    mock.set_options(json!({"tokens": 7})).unwrap();
    let traceparent = format!("00-{TRACE}-{PARENT}-01");
    let plain = send(
        &gw,
        json!({"model": "m", "messages": user(MARKER), "max_tokens": 50, "temperature": 0.25}),
        Some(&traceparent),
    )
    .await;
    let streamed = send(
        &gw,
        json!({"model": "m", "stream": true, "messages": user(MARKER)}),
        None,
    )
    .await;
    mock.set_options(json!({"tokens": 30, "error_after": 3}))
        .unwrap();
    let failed = send(
        &gw,
        json!({"model": "m", "stream": true, "messages": user(MARKER)}),
        None,
    )
    .await;
    flush(&gw).await;

    let got = got.lock().unwrap();
    assert_eq!(got.spans.len(), 3, "one span per request");
    assert!(got.service_names.iter().all(|s| s == "gw-test"));
    assert!(!got.auth.is_empty() && got.auth.iter().all(|a| a == "collector-token-123"));
    let by_id = |id: &str| {
        got.spans
            .iter()
            .find(|s| text(s, "switchyard.request_id") == id)
            .unwrap_or_else(|| panic!("no span for {id}"))
    };

    let s = by_id(&plain);
    assert_eq!(s.name, "chat m");
    assert_eq!(s.kind, 2, "SPAN_KIND_SERVER");
    assert_eq!(hex(&s.trace_id), TRACE, "the client's trace");
    assert_eq!(
        hex(&s.parent_span_id),
        PARENT,
        "the client's span is the parent"
    );
    assert!(s.end_time_unix_nano >= s.start_time_unix_nano);
    assert_eq!(text(s, "gen_ai.operation.name"), "chat");
    assert_eq!(text(s, "gen_ai.provider.name"), "openai");
    assert_eq!(text(s, "gen_ai.system"), "openai");
    assert_eq!(text(s, "gen_ai.request.model"), "m");
    assert_eq!(text(s, "gen_ai.response.model"), "m");
    assert!(text(s, "gen_ai.response.id").starts_with("chatcmpl-"));
    assert_eq!(int(s, "gen_ai.request.max_tokens"), 50);
    assert_eq!(
        attr(s, "gen_ai.request.temperature"),
        Some(&Any::DoubleValue(0.25))
    );
    assert!(int(s, "gen_ai.usage.input_tokens") > 0);
    assert_eq!(int(s, "gen_ai.usage.output_tokens"), 7);
    match attr(s, "gen_ai.response.finish_reasons") {
        Some(Any::ArrayValue(a)) => {
            assert_eq!(a.values[0].value, Some(Any::StringValue("stop".into())))
        }
        other => panic!("finish_reasons: {other:?}"),
    }
    let cost = text(s, "switchyard.cost_usd");
    assert!(cost.parse::<rust_decimal::Decimal>().unwrap() > rust_decimal::Decimal::ZERO);
    assert_eq!(text(s, "switchyard.route"), "mock/m");
    assert_eq!(text(s, "switchyard.key_id"), gw.key_id);
    assert!(int(s, "switchyard.ttft_ms") >= 0);
    assert!(attr(s, "error.type").is_none());

    let s = by_id(&streamed);
    assert_ne!(hex(&s.trace_id), TRACE, "no parent: a trace of its own");
    assert!(s.parent_span_id.is_empty());
    assert!(attr(s, "gen_ai.request.max_tokens").is_none());
    assert!(text(s, "gen_ai.response.id").starts_with("chatcmpl-"));

    let s = by_id(&failed);
    assert!(
        attr(s, "error.type").is_some(),
        "a failed stream has error.type"
    );
    assert_eq!(
        s.status.as_ref().map(|st| st.code),
        Some(2),
        "STATUS_CODE_ERROR"
    );

    // Never the prompt.
    for s in &got.spans {
        assert!(!format!("{s:?}").contains(MARKER));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sample_ratio_zero_exports_only_what_a_sampled_parent_asks_for() {
    let (gw, _mock, got) = gateway("sample_ratio = 0.0").await;
    let alone = send(&gw, json!({"model": "m", "messages": user("hi")}), None).await;
    let traceparent = format!("00-{TRACE}-{PARENT}-01");
    let asked = send(
        &gw,
        json!({"model": "m", "messages": user("hi")}),
        Some(&traceparent),
    )
    .await;
    flush(&gw).await;
    let got = got.lock().unwrap();
    let ids: Vec<String> = got
        .spans
        .iter()
        .map(|s| text(s, "switchyard.request_id"))
        .collect();
    assert_eq!(ids, vec![asked], "not {alone}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn off_by_default() {
    let (gw, _mock) = start_with_mock("").await;
    assert!(gw.gw.otlp.is_none());
    // A client's traceparent changes nothing.
    let resp = gw
        .chat(json!({"model": "m", "messages": user("hi")}))
        .header("traceparent", format!("00-{TRACE}-{PARENT}-01"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
