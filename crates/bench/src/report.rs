//! The run's report from the merged `Stats`: one JSON object (`--json`, keys in a fixed order,
//! times in milliseconds with microsecond precision) or a compact table for people.

use std::fmt::Write;

use hdrhistogram::Histogram;
use serde_json::{json, Value};

use super::stats::Stats;

/// What the report says besides the stats.
pub(crate) struct Run<'a> {
    pub url: &'a str,
    pub stream: bool,
    pub concurrency: usize,
    pub rate: Option<f64>,
    pub duration_s: f64,
    pub client_cpu_s: f64,
    /// The CPU the server (`--server-pid`) used in the measured window.
    pub server_cpu_s: Option<f64>,
}

/// Nanoseconds as milliseconds rounded to the microsecond.
fn ms(ns: u64) -> f64 {
    (ns as f64 / 1_000.0).round() / 1_000.0
}

fn summary(h: &Histogram<u64>) -> Value {
    if h.is_empty() {
        return json!({"count": 0, "mean": 0.0, "p50": 0.0, "p90": 0.0, "p99": 0.0, "p999": 0.0, "max": 0.0});
    }
    json!({
        "count": h.len(),
        "mean": ((h.mean() / 1_000.0).round()) / 1_000.0,
        "p50": ms(h.value_at_quantile(0.5)),
        "p90": ms(h.value_at_quantile(0.9)),
        "p99": ms(h.value_at_quantile(0.99)),
        "p999": ms(h.value_at_quantile(0.999)),
        "max": ms(h.max()),
    })
}

/// The percentiles of the curves: 0, 1, …, 99, 99.5, 99.9, 99.99, 100.
fn percentiles() -> impl Iterator<Item = f64> {
    (0..100).map(f64::from).chain([99.5, 99.9, 99.99, 100.0])
}

fn curve(h: &Histogram<u64>) -> Value {
    if h.is_empty() {
        return json!([]);
    }
    Value::Array(
        percentiles()
            .map(|p| json!([p, ms(h.value_at_quantile(p / 100.0))]))
            .collect(),
    )
}

fn per_s(n: u64, secs: f64) -> f64 {
    if secs > 0.0 {
        (n as f64 / secs * 10.0).round() / 10.0
    } else {
        0.0
    }
}

/// The `--json` report.
pub(crate) fn json(run: &Run, s: &Stats) -> Value {
    let errors: serde_json::Map<String, Value> = s
        .errors
        .iter()
        .map(|(k, n)| (k.label(), json!(n)))
        .collect();
    let (min, max, mean) = if s.streams == 0 {
        (0, 0, 0.0)
    } else {
        (
            s.events_min,
            s.events_max,
            (s.events as f64 / s.streams as f64 * 100.0).round() / 100.0,
        )
    };
    let stream_only = |h: &Histogram<u64>| {
        if run.stream {
            summary(h)
        } else {
            Value::Null
        }
    };
    json!({
        "url": run.url,
        "stream": run.stream,
        "concurrency": run.concurrency,
        "rate": run.rate,
        "duration_s": (run.duration_s * 1e6).round() / 1e6,
        "requests": s.requests(),
        "ok": s.ok,
        "errors": errors,
        "rps": per_s(s.ok, run.duration_s),
        "events": s.events,
        "events_per_s": per_s(s.events, run.duration_s),
        "bytes_received": s.bytes,
        "incomplete_streams": s.incomplete_streams,
        "aborted": s.aborted,
        "events_per_stream": {"min": min, "max": max, "mean": mean},
        "latency_ms": summary(&s.latency),
        "ttft_ms": stream_only(&s.ttft),
        "gap_ms": stream_only(&s.gap),
        "curves": {
            "latency_ms": curve(&s.latency),
            "ttft_ms": curve(&s.ttft),
            "gap_ms": curve(&s.gap),
        },
        "client_cpu_s": (run.client_cpu_s * 1e6).round() / 1e6,
        "server_cpu_s": run.server_cpu_s.map(|c| (c * 1e6).round() / 1e6),
        "server_cpu_us_per_request": run
            .server_cpu_s
            .filter(|_| s.ok > 0)
            .map(|c| (c * 1e7 / s.ok as f64).round() / 10.0),
        "server_cpu_us_per_event": run
            .server_cpu_s
            .filter(|_| s.events > 0)
            .map(|c| (c * 1e7 / s.events as f64).round() / 10.0),
    })
}

/// The table for people, from the JSON report (so both always say the same).
pub(crate) fn table(report: &Value) -> String {
    let mut out = String::new();
    let f = |v: &Value| v.as_f64().unwrap_or(0.0);
    let n = |v: &Value| v.as_u64().unwrap_or(0);
    let rate = match report["rate"].as_f64() {
        Some(r) => format!("open loop at {r}/s"),
        None => "closed loop".to_owned(),
    };
    let _ = writeln!(
        out,
        "{}  {}, {} connections{}",
        report["url"].as_str().unwrap_or(""),
        rate,
        n(&report["concurrency"]),
        if report["stream"] == true {
            ", streamed"
        } else {
            ""
        }
    );
    let errors: Vec<String> = report["errors"]
        .as_object()
        .map(|m| m.iter().map(|(k, v)| format!("{k} x{v}")).collect())
        .unwrap_or_default();
    let _ = writeln!(
        out,
        "requests {} in {:.2} s: ok {} ({:.1}/s), errors {}",
        n(&report["requests"]),
        f(&report["duration_s"]),
        n(&report["ok"]),
        f(&report["rps"]),
        if errors.is_empty() {
            "none".to_owned()
        } else {
            errors.join(", ")
        }
    );
    if report["stream"] == true {
        let eps = &report["events_per_stream"];
        let _ = writeln!(
            out,
            "events {} ({:.1}/s), per stream min {} mean {} max {}, incomplete streams {}, aborted {}",
            n(&report["events"]),
            f(&report["events_per_s"]),
            n(&eps["min"]),
            f(&eps["mean"]),
            n(&eps["max"]),
            n(&report["incomplete_streams"]),
            n(&report["aborted"]),
        );
    }
    let cpu = f(&report["client_cpu_s"]);
    let requests = n(&report["requests"]);
    let _ = writeln!(
        out,
        "received {} bytes; client CPU {:.3} s{}",
        n(&report["bytes_received"]),
        cpu,
        if requests > 0 {
            format!(" ({:.1} µs per request)", cpu * 1e6 / requests as f64)
        } else {
            String::new()
        }
    );
    if let Some(server) = report["server_cpu_s"].as_f64() {
        let per = |k: &str| {
            report[k]
                .as_f64()
                .map_or_else(|| "-".to_owned(), |v| format!("{v:.1} µs"))
        };
        let _ = writeln!(
            out,
            "server CPU {server:.3} s: {} per request, {} per event",
            per("server_cpu_us_per_request"),
            per("server_cpu_us_per_event"),
        );
    }
    let _ = writeln!(
        out,
        "{:<10} {:>9} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10}",
        "ms", "count", "mean", "p50", "p90", "p99", "p99.9", "max"
    );
    for (name, key) in [
        ("latency", "latency_ms"),
        ("ttft", "ttft_ms"),
        ("gap", "gap_ms"),
    ] {
        let s = &report[key];
        if s.is_null() {
            continue;
        }
        let _ = writeln!(
            out,
            "{:<10} {:>9} {:>10.3} {:>10.3} {:>10.3} {:>10.3} {:>10.3} {:>10.3}",
            name,
            n(&s["count"]),
            f(&s["mean"]),
            f(&s["p50"]),
            f(&s["p90"]),
            f(&s["p99"]),
            f(&s["p999"]),
            f(&s["max"]),
        );
    }
    out
}
