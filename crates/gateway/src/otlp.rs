//! Optional export of one trace span per request over OTLP/HTTP (protobuf), with the
//! OpenTelemetry GenAI semantic conventions (`[otlp] endpoint = "http://collector:4318"`). Off by
//! default: no exporter, no thread, nothing per request. When on, admission notes the request's
//! start, its parent (a client's `traceparent`) and its request attributes (`Pending`); the span
//! is built whole at settlement, with its real start time, and handed to the SDK's batch
//! processor: a bounded queue (`QUEUE`) drained by the processor's own thread, which exports with
//! a blocking HTTP client there, never on the request path. Nothing is done per chunk, and no
//! prompt or completion text is ever an attribute.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{Span, SpanKind, Status, Tracer, TracerProvider};
use opentelemetry::{Array, Context, KeyValue, StringValue, Value};
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, Sampler, SdkTracer, SdkTracerProvider,
};
use opentelemetry_sdk::Resource;

use crate::config::{Config, OtlpConfig};
use crate::store::ledger::UsageEntry;

/// Spans waiting for export at most; past it the SDK drops them (and counts them).
const QUEUE: usize = 4096;
/// How long one export may take.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

/// The exporter and its tracer; one per gateway.
pub struct Otlp {
    provider: SdkTracerProvider,
    tracer: SdkTracer,
    /// Provider name -> the GenAI `gen_ai.provider.name` of its dialect.
    kinds: HashMap<String, &'static str>,
}

impl std::fmt::Debug for Otlp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Otlp")
    }
}

/// Where spans go: `{endpoint}/v1/traces` unless the endpoint already names that path.
pub(crate) fn traces_url(endpoint: &str) -> String {
    if endpoint.ends_with("/v1/traces") {
        endpoint.to_owned()
    } else {
        format!("{endpoint}/v1/traces")
    }
}

impl Otlp {
    /// Builds the exporter for `[otlp]` with its headers' secrets already resolved.
    pub fn start(
        otlp: &OtlpConfig,
        headers: HashMap<String, String>,
        config: &Config,
    ) -> Result<Otlp, String> {
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_endpoint(traces_url(&otlp.endpoint))
            .with_protocol(Protocol::HttpBinary)
            .with_timeout(EXPORT_TIMEOUT)
            .with_headers(headers)
            .build()
            .map_err(|e| format!("otlp: {e}"))?;
        let batch = BatchConfigBuilder::default()
            .with_max_queue_size(QUEUE)
            .build();
        let processor = BatchSpanProcessor::builder(exporter)
            .with_batch_config(batch)
            .build();
        let provider = SdkTracerProvider::builder()
            .with_span_processor(processor)
            .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
                otlp.sample_ratio,
            ))))
            .with_resource(
                Resource::builder_empty()
                    .with_service_name(otlp.service_name.clone())
                    .build(),
            )
            .build();
        let tracer = provider.tracer("switchyard");
        let kinds = config
            .providers
            .iter()
            .map(|(name, p)| (name.clone(), p.kind.as_str()))
            .collect();
        Ok(Otlp {
            provider,
            tracer,
            kinds,
        })
    }

    /// What admission notes for a request's span.
    pub fn begin(
        &self,
        traceparent: Option<&str>,
        started: SystemTime,
        request: Vec<KeyValue>,
    ) -> Pending {
        let parent = match traceparent {
            Some(tp) => {
                let carrier = HashMap::from([("traceparent".to_owned(), tp.to_owned())]);
                TraceContextPropagator::new().extract(&carrier)
            }
            None => Context::new(),
        };
        Pending {
            parent,
            started,
            request,
        }
    }

    /// Exports every queued span now and waits for it (tests, shutdown); blocks: call it from a
    /// blocking thread.
    pub fn flush(&self) {
        let _ = self.provider.force_flush();
    }
}

/// A request's span before it ends: parent, start and request attributes.
#[derive(Debug)]
pub struct Pending {
    parent: Context,
    started: SystemTime,
    request: Vec<KeyValue>,
}

/// The request attributes known at admission (GenAI conventions).
pub(crate) fn request_attributes(
    model: &str,
    max_tokens: Option<u64>,
    temperature: Option<f64>,
    responses_api: bool,
) -> Vec<KeyValue> {
    let mut attrs = vec![
        KeyValue::new("gen_ai.operation.name", "chat"),
        KeyValue::new("gen_ai.request.model", model.to_owned()),
        KeyValue::new(
            "switchyard.api",
            if responses_api { "responses" } else { "chat" },
        ),
    ];
    if let Some(n) = max_tokens {
        attrs.push(KeyValue::new(
            "gen_ai.request.max_tokens",
            i64::try_from(n).unwrap_or(i64::MAX),
        ));
    }
    if let Some(t) = temperature {
        attrs.push(KeyValue::new("gen_ai.request.temperature", t));
    }
    attrs
}

impl Pending {
    /// Ends the span with what the settlement knows, and queues it for export.
    pub fn end(self, otlp: &Otlp, e: &UsageEntry, response_id: Option<&str>) {
        let provider = e
            .provider
            .as_deref()
            .and_then(|p| otlp.kinds.get(p).copied());
        let mut attrs = self.request;
        if let Some(kind) = provider {
            attrs.push(KeyValue::new("gen_ai.provider.name", kind));
            attrs.push(KeyValue::new("gen_ai.system", kind));
        }
        if let Some(m) = &e.served_model {
            attrs.push(KeyValue::new("gen_ai.response.model", m.clone()));
        }
        if let Some(id) = response_id {
            attrs.push(KeyValue::new("gen_ai.response.id", id.to_owned()));
        }
        attrs.extend([
            KeyValue::new(
                "gen_ai.usage.input_tokens",
                i64::try_from(e.prompt_tokens).unwrap_or(i64::MAX),
            ),
            KeyValue::new(
                "gen_ai.usage.output_tokens",
                i64::try_from(e.completion_tokens).unwrap_or(i64::MAX),
            ),
            KeyValue::new(
                "gen_ai.response.finish_reasons",
                Value::Array(Array::String(vec![StringValue::from(
                    e.end_reason.as_str(),
                )])),
            ),
            KeyValue::new("switchyard.cost_usd", e.cost.to_string()),
            KeyValue::new("switchyard.request_id", e.request_id.clone()),
            KeyValue::new("switchyard.key_id", e.key_id.clone()),
        ]);
        if let (Some(p), Some(m)) = (&e.provider, &e.served_model) {
            attrs.push(KeyValue::new("switchyard.route", format!("{p}/{m}")));
        }
        if let Some(ttft) = e.ttft_ms {
            attrs.push(KeyValue::new("switchyard.ttft_ms", ttft));
        }
        if let Some(status) = e.status {
            attrs.push(KeyValue::new(
                "http.response.status_code",
                i64::from(status),
            ));
        }
        let failed = e.error_text.is_some() || e.status.is_some_and(|s| s >= 500);
        if failed {
            let kind = match e.status {
                Some(s) if s != 200 => s.to_string(),
                _ => e.end_reason.as_str().to_owned(),
            };
            attrs.push(KeyValue::new("error.type", kind));
        }
        let model = e.requested_model.as_str();
        let mut span = otlp
            .tracer
            .span_builder(format!("chat {model}"))
            .with_kind(SpanKind::Server)
            .with_start_time(self.started)
            .with_attributes(attrs)
            .start_with_context(&otlp.tracer, &self.parent);
        if failed {
            span.set_status(Status::error(e.end_reason.as_str().to_owned()));
        }
        span.end_with_timestamp(SystemTime::now().max(self.started));
    }
}
