//! `GET /metrics` as an operator's Prometheus sees it: after a streamed and a failed request, the
//! request, attempt, settlement, token and cost counters and the latency histograms, with no key
//! or prompt in any label. The recorder is shared by every gateway in this test process, so this
//! test's model and provider have names no other test uses.

use mock_upstream::MockUpstream;
use serde_json::json;

use crate::harness::{self, client, data_events, mock_config, parse_sse, user};

/// The value of the series written exactly as `series` (name and labels), if present.
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        l.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

fn must(text: &str, series: &str) -> f64 {
    value(text, series).unwrap_or_else(|| panic!("no `{series}` in /metrics:\n{text}"))
}

#[tokio::test]
async fn metrics_show_requests_attempts_tokens_cost_and_latency() {
    let mock = MockUpstream::start().await.unwrap();
    let extra = format!(
        r#"
[providers.metricsmock]
kind = "openai"
base_url = "{base}"
api_key = "upstream-secret-key"

[models."metrics-m"]
routes = ["metricsmock/m"]
input_price = "2.50"
output_price = "10.00"

[models."metrics-fail"]
routes = ["metricsmock/m@status=503", "metricsmock/m@status=400"]
input_price = "2.50"
output_price = "10.00"
"#,
        base = mock.base_url()
    );
    let gw = harness::start(&mock_config(&mock, &extra)).await;
    let secret_prompt = "a-prompt-that-must-not-leak";

    mock.set_options(json!({"tokens": 12})).unwrap();
    let resp = gw
        .chat(json!({"model": "metrics-m", "stream": true, "messages": user(secret_prompt)}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body = resp.text().await.unwrap();
    let items = parse_sse(&body);
    let usage = data_events(&items).last().unwrap()["usage"].clone();
    let prompt_tokens = usage["prompt_tokens"].as_f64().unwrap();
    assert_eq!(usage["completion_tokens"], 12);

    let failed = gw
        .chat(json!({"model": "metrics-fail", "messages": user(secret_prompt)}))
        .send()
        .await
        .unwrap();
    assert_eq!(failed.status(), 400);
    failed.bytes().await.unwrap();

    // Unauthenticated, like /healthz.
    let resp = client().get(gw.url("/metrics")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    let text = resp.text().await.unwrap();

    // Per request at the edge (other tests in this process count here too).
    assert!(
        must(
            &text,
            r#"switchyard_requests_total{route="chat",status="2xx",stream="true"}"#
        ) >= 1.0
    );
    assert!(
        must(
            &text,
            r#"switchyard_requests_total{route="chat",status="4xx",stream="false"}"#
        ) >= 1.0
    );
    // Per upstream attempt: the stream's one, then the failing model's 503 and its 400.
    let attempts = |outcome: &str| {
        must(
            &text,
            &format!(
                r#"switchyard_upstream_attempts_total{{provider="metricsmock",outcome="{outcome}"}}"#
            ),
        )
    };
    assert_eq!(
        (attempts("ok"), attempts("retryable"), attempts("rejected")),
        (1.0, 1.0, 1.0)
    );
    // Once per request at settlement: the end reason, tokens and cost.
    assert_eq!(
        must(
            &text,
            r#"switchyard_settled_requests_total{model="metrics-m",provider="metricsmock",end_reason="stop"}"#
        ),
        1.0
    );
    assert_eq!(
        must(
            &text,
            r#"switchyard_settled_requests_total{model="metrics-fail",provider="none",end_reason="error"}"#
        ),
        1.0
    );
    assert_eq!(
        must(
            &text,
            r#"switchyard_completion_tokens_total{model="metrics-m",provider="metricsmock"}"#
        ),
        12.0
    );
    assert_eq!(
        must(
            &text,
            r#"switchyard_prompt_tokens_total{model="metrics-m",provider="metricsmock"}"#
        ),
        prompt_tokens
    );
    // 2.50 and 10.00 USD per 1M tokens = 2500 and 10000 nano-USD per token.
    assert_eq!(
        must(
            &text,
            r#"switchyard_cost_nanousd_total{model="metrics-m",provider="metricsmock"}"#
        ),
        prompt_tokens * 2_500.0 + 12.0 * 10_000.0
    );
    // Latency histograms, in seconds, with buckets.
    assert_eq!(
        must(
            &text,
            r#"switchyard_time_to_first_token_seconds_count{model="metrics-m"}"#
        ),
        1.0
    );
    assert_eq!(
        must(
            &text,
            r#"switchyard_time_to_first_token_seconds_bucket{model="metrics-m",le="+Inf"}"#
        ),
        1.0
    );
    assert_eq!(
        must(
            &text,
            r#"switchyard_request_duration_seconds_count{model="metrics-m"}"#
        ),
        1.0
    );
    assert!(text.contains("# TYPE switchyard_time_to_first_token_seconds histogram"));
    assert!(text.contains("switchyard_open_streams"));
    // Nothing secret in any label.
    for secret in [
        gw.key.as_str(),
        gw.key_id.as_str(),
        secret_prompt,
        "upstream-secret-key",
    ] {
        assert!(!text.contains(secret), "/metrics leaks {secret}");
    }
}
