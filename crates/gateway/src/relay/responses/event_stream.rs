//! The streamed Responses relay: reads the upstream's SSE bytes (OpenAI chat chunks, or Anthropic
//! events through `wire::anthropic::StreamTranslator`), feeds every chunk to the Responses event
//! builder the moment it is decoded and writes the events it yields (`event: <type>` +
//! `data: <json>`), one frame per upstream arrival. It taps what billing needs exactly like the chat
//! relay, and ends with one terminal event: `response.completed` / `response.incomplete` after the
//! ledger entry is written and the response stored, or `error` + `response.failed` when the
//! upstream breaks, stalls, sends garbage or reports an error. A `: keep-alive` comment goes out
//! while the upstream is silent; a cost comment follows the terminal event.
//!
//! Dropping the stream (the client went away) drops the upstream request at once; the settlement
//! guard then bills what was delivered, as cancelled.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use futures_util::Stream;
use serde_json::Value;
use switchyard_wire::anthropic::StreamTranslator;
use switchyard_wire::responses::{encode_sse, Event, ResponseContext, StreamBuilder};
use switchyard_wire::sse;

use crate::app::Gateway;
use crate::config::ProviderKind;
use crate::ledger::EndReason;
use crate::relay::attempts::{unix_now, UpstreamStream};
use crate::relay::responses::Keeper;
use crate::relay::settlement::{Settled, Settlement};
use crate::relay::upstream_pump::{self, Failure, Pump, PumpedRelay};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Streaming,
    Done,
}

/// The state of one streamed response.
pub struct ResponseStream {
    pump: Pump,
    /// Set for an Anthropic upstream: its events become chat chunks first.
    translator: Option<Box<StreamTranslator>>,
    builder: StreamBuilder,
    settlement: Settlement,
    keeper: Keeper,
    /// Where a mid-stream failure is reported: the gateway's routing and the route's key.
    health: (Arc<Gateway>, String),
    /// Bytes ready for the client.
    out: BytesMut,
    /// Scratch space, reused: the events of one upstream event and their encoding.
    events: Vec<Event>,
    encoded: Vec<u8>,
    /// Scratch space for the chunks one Anthropic event translates into.
    chunks: Vec<Value>,
    /// The finish reason of the answer, once the upstream said it.
    finish: Option<&'static str>,
    phase: Phase,
}

impl ResponseStream {
    /// `upstream.decoder` may already hold the first event(s), read while deciding whether to fail
    /// over. The first frame (`response.created`, `response.in_progress`) is ready at once.
    pub fn new(
        mut upstream: UpstreamStream,
        settlement: Settlement,
        ctx: ResponseContext,
        keeper: Keeper,
        gw: Arc<Gateway>,
    ) -> ResponseStream {
        let translator = (upstream.dialect == ProviderKind::Anthropic).then(|| {
            Box::new(StreamTranslator::new(
                ctx.id.clone(),
                ctx.model.clone(),
                ctx.created_at,
            ))
        });
        let keep_alive = gw.config.keep_alive;
        let mut stream = ResponseStream {
            pump: Pump::new(&mut upstream, keep_alive),
            translator,
            builder: StreamBuilder::new(ctx),
            settlement,
            keeper,
            health: (gw, upstream.route_key),
            out: BytesMut::with_capacity(4096),
            events: Vec::with_capacity(8),
            encoded: Vec::with_capacity(1024),
            chunks: Vec::new(),
            finish: None,
            phase: Phase::Streaming,
        };
        if stream.translator.is_some() {
            stream.settlement.meter.served_model(&upstream.model);
        }
        stream.builder.start(&mut stream.events);
        stream.write_events();
        stream
    }

    /// The stream of frames for the HTTP body.
    pub fn into_body(self) -> impl Stream<Item = Bytes> + Send {
        upstream_pump::body(self)
    }

    async fn on_event(&mut self, event: sse::Event) {
        if self.translator.is_some() {
            return self.on_anthropic_event(event).await;
        }
        if event.is_done() {
            return self.finish().await;
        }
        let chunk: Value = match serde_json::from_slice(&event.data) {
            Ok(v @ Value::Object(_)) => v,
            _ => return self.fail(Failure::Garbage, None).await,
        };
        if let Some(error) = chunk.get("error").filter(|e| !e.is_null()) {
            let error = UpstreamProblem::from_openai(error);
            return self.fail(Failure::UpstreamError, Some(error)).await;
        }
        if self.before_first_token() {
            if let Some(model) = chunk.get("model").and_then(Value::as_str) {
                self.settlement.meter.served_model(model);
            }
        }
        self.on_chunk(&chunk);
        self.write_events();
    }

    /// Whether nothing generated has been seen yet (the served model is taken from these chunks).
    fn before_first_token(&self) -> bool {
        self.settlement.meter.first_token_at().is_none() && self.finish.is_none()
    }

    /// One Anthropic event: translated into chat chunks, each fed to the builder; `message_stop`
    /// ends the stream normally, `error` with `response.failed`.
    async fn on_anthropic_event(&mut self, event: sse::Event) {
        let Some(t) = self.translator.as_mut() else {
            return;
        };
        let pushed = std::str::from_utf8(&event.data)
            .ok()
            .map(|data| t.push(event.name_str(), data));
        if !matches!(pushed, Some(Ok(()))) {
            return self.fail(Failure::Garbage, None).await;
        }
        if let Some(err) = t.error() {
            let error = UpstreamProblem {
                message: err.message.clone(),
                rate_limited: err.kind == "rate_limit_error",
            };
            return self.fail(Failure::UpstreamError, Some(error)).await;
        }
        if t.finish_reason().is_some() {
            // `message_delta` carries the cumulative, final usage.
            if let Some(u) = t.usage_json() {
                self.settlement.meter.usage_value(&u);
            }
        }
        let done = t.is_done();
        self.chunks.extend(t.drain());
        let chunks = std::mem::take(&mut self.chunks);
        for chunk in &chunks {
            self.on_chunk(chunk);
        }
        self.chunks = chunks;
        self.chunks.clear();
        self.write_events();
        if done {
            self.finish().await;
        }
    }

    /// One chat chunk: metered for billing, then turned into Responses events.
    fn on_chunk(&mut self, chunk: &Value) {
        if let Some(finish) = self.settlement.meter.chat_value(chunk) {
            self.finish = Some(finish);
        }
        self.settlement.checkpoint();
        self.builder.push_chunk(chunk, &mut self.events);
    }

    /// Encodes the pending events into the output buffer.
    fn write_events(&mut self) {
        for event in self.events.drain(..) {
            encode_sse(&event, &mut self.encoded);
        }
        self.out.extend_from_slice(&self.encoded);
        self.encoded.clear();
    }

    async fn on_eof(&mut self) {
        if self.finish.is_some() {
            // Some servers end without [DONE] after the finish chunk: that is a complete answer.
            self.finish().await;
        } else {
            self.fail(Failure::Broken, None).await;
        }
    }

    /// The normal ending: the ledger entry and the stored response, then the terminal event.
    async fn finish(&mut self) {
        let Some(finish) = self.finish else {
            return self.fail(Failure::Broken, None).await;
        };
        let settled = self.settlement.measure().await;
        let cost = settled.cost.total().to_string();
        let usage = settled.usage.to_openai(Some(&cost));
        self.builder.set_completed_at(unix_now());
        self.builder.finish(Some(&usage), &mut self.events);
        let mut response = self.builder.response();
        if response["usage"].is_object() {
            response["usage"]["cost"] = Value::String(cost);
        }
        if let Some(terminal) = self.events.last_mut() {
            terminal.data["response"] = response.clone();
        }
        let durable = self
            .settlement
            .settle(EndReason::from_finish(finish), &settled)
            .await;
        if durable.is_err() {
            self.events.clear();
            self.builder.fail(
                "server_error",
                "The usage of this request could not be recorded; it was not completed normally.",
                &mut self.events,
            );
            return self.end(&settled);
        }
        self.keeper.keep(&response).await;
        self.end(&settled);
    }

    /// Ends the stream after the first byte went out: the ledger entry for what was delivered,
    /// then `error` and `response.failed`.
    async fn fail(&mut self, failure: Failure, upstream: Option<UpstreamProblem>) {
        let code = match &upstream {
            Some(p) if p.rate_limited => "rate_limit_exceeded",
            _ => "server_error",
        };
        let message = match (failure, upstream) {
            (Failure::UpstreamError, Some(p)) => p.message,
            (f, _) => f.message().to_owned(),
        };
        let end = failure.end_reason();
        let (gw, key) = &self.health;
        gw.routing
            .record_failure(key, &format!("mid-stream: {message}"));
        self.builder.fail(code, &message, &mut self.events);
        let settled = self.settlement.measure().await;
        if let Err(e) = self.settlement.settle(end, &settled).await {
            tracing::error!(error = %e, "the entry of a failed response could not be written");
        }
        self.keeper.keep(&self.builder.response()).await;
        self.end(&settled);
    }

    /// Writes the terminal events and the cost comment; nothing follows.
    fn end(&mut self, settled: &Settled) {
        self.write_events();
        sse::write_comment(&mut self.out, settled.cost_comment().as_bytes());
        self.phase = Phase::Done;
    }
}

/// What an upstream's own error event said.
struct UpstreamProblem {
    message: String,
    /// The upstream reported a rate limit (`rate_limit_exceeded` rather than `server_error`).
    rate_limited: bool,
}

impl UpstreamProblem {
    /// From an OpenAI error object (`{"message", "type", "code"}`, possibly nested in `error`).
    fn from_openai(error: &Value) -> UpstreamProblem {
        let inner = error
            .get("error")
            .filter(|e| e.is_object())
            .unwrap_or(error);
        let text = |k: &str| inner.get(k).and_then(Value::as_str);
        UpstreamProblem {
            message: text("message")
                .or_else(|| error.as_str())
                .unwrap_or("The upstream reported an error.")
                .to_owned(),
            rate_limited: text("type") == Some("rate_limit_error")
                || text("code") == Some("rate_limit_exceeded"),
        }
    }
}

impl PumpedRelay for ResponseStream {
    fn pump(&mut self) -> &mut Pump {
        &mut self.pump
    }

    fn out(&mut self) -> &mut BytesMut {
        &mut self.out
    }

    fn is_done(&self) -> bool {
        self.phase == Phase::Done
    }

    async fn on_event(&mut self, event: sse::Event) {
        ResponseStream::on_event(self, event).await
    }

    async fn on_eof(&mut self) {
        ResponseStream::on_eof(self).await
    }

    async fn on_failure(&mut self, failure: Failure) {
        self.fail(failure, None).await
    }
}
