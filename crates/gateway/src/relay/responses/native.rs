//! The native Responses relay: a Responses request served by a provider that serves
//! `/responses` itself (`native_responses`). Every upstream event goes to the client as it came
//! (the decoder's `raw` bytes), while the same decoding (`wire::upstream`, Responses dialect)
//! feeds the meter. One event differs, as `[DONE]` does in chat: the terminal
//! `response.completed` / `response.incomplete` is held until the ledger entry is durable, then
//! sent with `usage.cost` added to its `response.usage` (nothing else in it touched), followed by
//! the cost comment. The upstream's own `error` / `response.failed` events pass through as they
//! came; a failure of ours (broken, stalled, garbage, shutdown) writes an `error` event.
//!
//! The non-streamed form is `complete_json`: the upstream's Response object with `usage.cost`.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use futures_util::Stream;
use serde_json::json;
use switchyard_wire::sse;
use switchyard_wire::upstream::{
    terminal_with_cost, Dialect, Stamp, UpstreamDecoder, UpstreamEvent, UpstreamProblem,
};

use crate::app::Gateway;
use crate::ledger::EndReason;
use crate::relay::attempts::{unix_now, UpstreamStream};
use crate::relay::settlement::{Settled, Settlement};
use crate::relay::upstream_pump::{self, Failure, Pump, PumpedRelay};
use crate::relay::RelayError;
use crate::routing::HealthKey;

/// The state of one natively relayed Responses stream.
pub struct NativeStream {
    pump: Pump,
    settlement: Settlement,
    health: (Arc<Gateway>, HealthKey),
    out: BytesMut,
    /// The terminal event as received, until the entry is durable.
    terminal: Option<sse::Event>,
    /// The upstream's own error event went to the client.
    upstream_error_sent: bool,
    done: bool,
}

impl NativeStream {
    /// `upstream.decoder` may already hold the first event(s), read while deciding whether to fail
    /// over; they are forwarded like the rest.
    pub fn new(mut upstream: UpstreamStream, mut settlement: Settlement, gw: Arc<Gateway>) -> Self {
        let stamp = Stamp {
            id: String::new(),
            model: upstream.model.clone(),
            created: unix_now(),
        };
        let decoder = UpstreamDecoder::new(Dialect::Responses, stamp);
        settlement.meter.served_model(&upstream.model);
        NativeStream {
            pump: Pump::new(
                &mut upstream,
                gw.config.keep_alive,
                decoder,
                &gw.end_streams,
            ),
            settlement,
            health: (gw, upstream.health),
            out: BytesMut::with_capacity(4096),
            terminal: None,
            upstream_error_sent: false,
            done: false,
        }
    }

    /// The stream of frames for the HTTP body.
    pub fn into_body(self) -> impl Stream<Item = Bytes> + Send {
        upstream_pump::body(self)
    }

    fn on_raw(&mut self, event: &sse::Event) {
        match event_type(event).as_str() {
            "response.completed" | "response.incomplete" => self.terminal = Some(event.clone()),
            kind => {
                if matches!(kind, "error" | "response.failed") {
                    self.upstream_error_sent = true;
                }
                self.out.extend_from_slice(&event.raw);
            }
        }
    }

    fn on_upstream(&mut self, event: UpstreamEvent<'_>) {
        let meter = &mut self.settlement.meter;
        match event {
            UpstreamEvent::Chunk(chunk) => {
                upstream_pump::meter_chunk(meter, &chunk);
            }
            UpstreamEvent::Usage { usage: Some(u), .. } => meter.usage(u),
            UpstreamEvent::Finish(reason) => meter.finish(EndReason::from_finish(reason)),
            _ => {}
        }
        self.settlement.checkpoint();
    }

    /// The normal ending: the entry, then the held terminal event with the cost, then the cost
    /// comment.
    async fn finish(&mut self) {
        let (Some(end), Some(terminal)) =
            (self.settlement.meter.finish_reason(), self.terminal.take())
        else {
            return self.fail(Failure::Broken, None).await;
        };
        let settled = self.settlement.measure().await;
        let cost = settled.cost.total().to_string();
        let durable = self.settlement.settle(end, &settled).await;
        if durable.is_err() {
            write_error(
                &mut self.out,
                "server_error",
                crate::relay::settlement::UNRECORDED,
            );
            self.done = true;
            return;
        }
        match terminal_with_cost(&terminal.data, &cost) {
            Some(data) => self.out.extend_from_slice(&with_data(&terminal, &data)),
            None => self.out.extend_from_slice(&terminal.raw),
        }
        self.end(&settled);
    }

    /// Ends the stream after the first byte went out: our `error` event unless the upstream's
    /// own went out already, the entry for what was delivered, the cost comment.
    async fn fail(&mut self, failure: Failure, problem: Option<UpstreamProblem>) {
        let (message, rate_limited) = failure.describe(problem);
        self.settlement.meter.failed(200, &message);
        if failure.is_route_fault() {
            upstream_pump::report_mid_stream(Some(&self.health), failure, &message);
        }
        if !self.upstream_error_sent {
            let code = if rate_limited {
                "rate_limit_exceeded"
            } else {
                "server_error"
            };
            write_error(&mut self.out, code, &message);
        }
        let settled = self.settlement.measure().await;
        if let Err(e) = self.settlement.settle(failure.end_reason(), &settled).await {
            tracing::error!(error = %e, "the entry of a failed response could not be written");
        }
        self.end(&settled);
    }

    fn end(&mut self, settled: &Settled) {
        sse::write_comment(&mut self.out, settled.cost_comment().as_bytes());
        self.done = true;
    }
}

/// An event's type: its `event:` name, else the `type` of its data.
fn event_type(event: &sse::Event) -> String {
    match event.name_str() {
        "" | "message" => serde_json::from_slice::<serde_json::Value>(&event.data)
            .ok()
            .and_then(|v| v.get("type").and_then(|t| t.as_str()).map(str::to_owned))
            .unwrap_or_default(),
        name => name.to_owned(),
    }
}

/// The event's raw bytes with its data replaced by `data` (the framing kept as received).
fn with_data(event: &sse::Event, data: &[u8]) -> Vec<u8> {
    let raw = &event.raw[..];
    let old = &event.data[..];
    match raw.windows(old.len().max(1)).position(|w| w == old) {
        Some(at) if !old.is_empty() => {
            let mut out = Vec::with_capacity(raw.len() + data.len() - old.len());
            out.extend_from_slice(&raw[..at]);
            out.extend_from_slice(data);
            out.extend_from_slice(&raw[at + old.len()..]);
            out
        }
        _ => {
            let mut out = BytesMut::new();
            sse::write_named(&mut out, &event_type(event), data);
            out.to_vec()
        }
    }
}

fn write_error(out: &mut BytesMut, code: &str, message: &str) {
    let event = json!({"type": "error", "code": code, "message": message, "param": null,
        "error": {"type": code, "code": code, "message": message, "param": null}});
    sse::write_named(out, "error", event.to_string().as_bytes());
}

impl PumpedRelay for NativeStream {
    fn pump(&mut self) -> &mut Pump {
        &mut self.pump
    }

    fn out(&mut self) -> &mut BytesMut {
        &mut self.out
    }

    fn is_done(&self) -> bool {
        self.done
    }

    fn on_upstream(&mut self, event: UpstreamEvent<'_>) {
        NativeStream::on_upstream(self, event)
    }

    fn on_raw(&mut self, event: &sse::Event) {
        NativeStream::on_raw(self, event)
    }

    async fn finish(&mut self) {
        NativeStream::finish(self).await
    }

    async fn fail(&mut self, failure: Failure, problem: Option<UpstreamProblem>) {
        NativeStream::fail(self, failure, problem).await
    }
}

/// A non-streamed answer from a native route: metered from `completion` (the Response read as a
/// chat completion), settled, and the upstream's Response object `raw` returned with
/// `usage.cost` added (nothing else touched).
pub async fn complete_json(
    completion: &[u8],
    raw: &[u8],
    settlement: &mut Settlement,
) -> Result<Vec<u8>, RelayError> {
    let completion: serde_json::Value = serde_json::from_slice(completion).map_err(|_| {
        RelayError::UpstreamFailed("the upstream's answer is not a Response".into())
    })?;
    if let Some(model) = completion.get("model").and_then(|m| m.as_str()) {
        settlement.meter.served_model(model);
    }
    settlement.meter.answered();
    let finish = settlement.meter.chat_value(&completion).unwrap_or("stop");
    let settled = settlement.measure().await;
    let cost = settled.cost.total().to_string();
    let body = switchyard_wire::usage::with_cost_in(raw, "usage", &cost).unwrap_or(raw.to_vec());
    if settlement
        .settle(EndReason::from_finish(finish), &settled)
        .await
        .is_err()
    {
        return Err(RelayError::LedgerUnavailable);
    }
    Ok(body)
}
