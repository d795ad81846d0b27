//! The streamed Chat Completions relay: reads the upstream's SSE bytes, forwards every chunk the
//! moment it is decoded, taps what it needs for billing, and writes the ending the contract
//! promises (last chunk with `finish_reason` and `usage.cost`, the optional usage chunk, the
//! ledger entry, `data: [DONE]`, the cost comment). Errors after the first byte become an error
//! event followed by `[DONE]`. A `: keep-alive` comment goes out while the upstream is silent.
//!
//! The upstream's events arrive typed (`wire::upstream`: chunk, usage, finish, error, done),
//! whatever its dialect: an Anthropic upstream's come out as OpenAI chunks with the same ending,
//! and its `event: error` becomes the same error event.
//!
//! A Messages request (`relay::messages`) served by an Anthropic route passes through
//! (`ChatStream::passthrough`): every upstream event goes to the client as it came (the decoder's
//! `raw` bytes of the event, copied once into the output), while the same decoding feeds the
//! meter. Two events differ, as the finish chunk does in chat:
//! `message_delta`'s `usage` gains `cost` (the delta is held until then, and anything after it
//! with it), and `message_stop` waits until the entry is durable, followed by the cost comment.
//! The upstream's `error` event is not forwarded: the failure writes the gateway's own
//! Anthropic `event: error` (masked, as every error). Keep-alives are `ping` events.
//! A Gemini request (`relay::gemini`) served by a Gemini route passes through the same way: every
//! event as it came (Google's stream has no end marker; the body ends once the entry is durable);
//! its finishing event (`finishReason`, the whole usage) waits for the
//! cost, which joins its `usageMetadata`; a failure writes Google's own error event.
//! A Responses request served by a route that serves `/responses` itself passes through too: its
//! terminal `response.completed` / `response.incomplete` waits until the entry is durable and
//! gains `usage.cost` in its `response.usage`; the upstream's own `error` / `response.failed` pass
//! through as they came, and a failure of ours (broken, stalled, garbage, shutdown) writes an
//! `error` event unless the upstream's went out.
//!
//! Every other client dialect is written by the client's `Encoder` from the same chunks; a
//! Responses client's finished (or failed) response is kept (`Encoder::keep`) before the stream's
//! end can reach it.
//!
//! Per chunk the OpenAI-dialect hot path does one borrowed JSON parse, one copy into the output
//! buffer and an append of the generated text to the tally; timers are only re-armed when they
//! fire. A mid-stream failure is also reported to the route's health (`routing`).

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::Stream;
use serde_json::{json, Value};
use switchyard_wire::anthropic::inbound::{
    anthropic_error_type, error_body, with_usage_cost, MessagesStream,
};
use switchyard_wire::finish::FinishReason;
use switchyard_wire::openai::NativeDialect;
use switchyard_wire::sse;
use switchyard_wire::upstream::{
    self as wire_upstream, Chunk, Dialect, Stamp, UpstreamDecoder, UpstreamEvent, UpstreamProblem,
};

use crate::clock::unix_now;
use crate::gateway::Gateway;
use crate::relay::attempts::UpstreamStream;
use crate::relay::client_encoder::Encoder;
use crate::relay::settlement::{Settled, Settlement};
use crate::relay::upstream_pump::{self, Failure, Pump, PumpedRelay};
use crate::routing::HealthKey;
use crate::store::ledger::{Durable, EndReason, LedgerError};

/// The upstream's body as a stream of network chunks.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Streaming,
    Done,
}

/// The state of one streamed response.
pub(crate) struct ChatStream {
    pump: Pump,
    out: BytesMut,
    settlement: Settlement,
    include_usage: bool,
    /// Where a mid-stream failure is reported: the gateway's routing, the route and the caller.
    health: Option<(Arc<Gateway>, HealthKey)>,
    /// The chunk carrying `finish_reason`, held until the usage that belongs on it arrives.
    held_finish: Option<Value>,
    /// The upstream's usage-only chunk (`choices: []`), kept to be re-sent with the cost.
    usage_chunk: Option<Value>,
    id: String,
    model: String,
    created: u64,
    phase: Phase,
    /// Set when the upstream's own events go to the client (`Client::passthrough`).
    native: Option<Box<Native>>,
    /// How the chat chunks are written for the client (chat, completions, Messages, Gemini,
    /// Responses).
    encoder: Encoder,
}

/// Who reads the stream and how it is written for them.
pub(crate) struct Client {
    /// The client's API.
    pub encoder: Encoder,
    /// A chat client asked for the usage chunk (`stream_options.include_usage`).
    pub include_usage: bool,
    /// The route speaks the client's own dialect: the upstream's own events go to the client,
    /// not chat chunks (see the module documentation).
    pub passthrough: Option<NativeDialect>,
}

/// What a passthrough stream holds back (see the module documentation): Anthropic's
/// `message_delta` and `message_stop`, Gemini's finishing event, Responses' terminal event.
struct Native {
    /// The client's (and the route's) dialect.
    dialect: NativeDialect,
    /// `message_delta`'s data (Gemini: the finishing event's), until the cost that joins its
    /// usage is known.
    delta: Option<Bytes>,
    /// The events that came after `message_delta`, sent after it.
    tail: BytesMut,
    /// `message_stop` (Responses: the terminal event) as received, until the entry is durable.
    stop: Option<sse::Event>,
    /// The upstream's own Responses `error` / `response.failed` went to the client.
    upstream_error_sent: bool,
}

impl ChatStream {
    /// `upstream.decoder` may already hold the first event(s), read while deciding whether to fail
    /// over. `gw`, when given, receives the route's mid-stream failures. A client that reads
    /// something before the first chunk (Responses' `response.created`) has it at once.
    pub(crate) fn new(
        mut upstream: UpstreamStream,
        settlement: Settlement,
        client: Client,
        keep_alive: Duration,
        gw: Option<Arc<Gateway>>,
    ) -> ChatStream {
        let native_responses = client.passthrough == Some(NativeDialect::Responses);
        // A translated stream carries the gateway's own id; the upstream's chunks carry theirs.
        let translated = !upstream.dialect.speaks_openai() || native_responses;
        let stamp = if translated {
            Stamp {
                id: crate::auth::new_id("chatcmpl-", 24),
                model: std::mem::take(&mut upstream.model),
                created: unix_now(),
            }
        } else {
            Stamp::default()
        };
        let decoder = if native_responses {
            UpstreamDecoder::new(Dialect::Responses, stamp.clone())
        } else if client.encoder.is_responses() {
            // The Responses builder reads every chunk the values decoder reads.
            upstream_pump::decoder(upstream.dialect, stamp.clone()).with_value_fallback()
        } else {
            upstream_pump::decoder(upstream.dialect, stamp.clone())
        };
        let end_streams = gw
            .as_ref()
            .map(|gw| gw.end_streams.clone())
            .unwrap_or_default();
        let mut stream = ChatStream {
            pump: Pump::new(&mut upstream, keep_alive, decoder, &end_streams),
            out: BytesMut::with_capacity(4096),
            settlement,
            include_usage: client.include_usage,
            health: gw.map(|gw| (gw, upstream.health)),
            held_finish: None,
            usage_chunk: None,
            id: stamp.id,
            model: stamp.model,
            created: stamp.created,
            phase: Phase::Streaming,
            native: client.passthrough.map(|dialect| {
                Box::new(Native {
                    dialect,
                    delta: None,
                    tail: BytesMut::new(),
                    stop: None,
                    upstream_error_sent: false,
                })
            }),
            encoder: client.encoder,
        };
        if translated {
            stream.settlement.meter.served_model(&stream.model);
        }
        if stream.native.is_none() {
            stream.encoder.begin(&mut stream.out);
        }
        stream
    }

    /// A chat chunk or event, written for the client.
    fn emit(&mut self, v: &Value) {
        self.encoder.value(v, &mut self.out);
    }

    /// The stream of frames for the HTTP body.
    pub(crate) fn into_body(self) -> impl Stream<Item = Bytes> + Send {
        upstream_pump::body(self)
    }

    /// A chunk is forwarded as the upstream sent it (or written, when translated) the moment it
    /// arrives, except the one carrying `finish_reason`, held until the usage that belongs on it
    /// is known; the usage-only chunk is kept to be re-sent with the cost.
    fn on_upstream(&mut self, event: UpstreamEvent<'_>) {
        let meter = &mut self.settlement.meter;
        if self.native.is_some() {
            // The client gets the upstream's own events (`on_raw`); these are only metered.
            match event {
                UpstreamEvent::Chunk(chunk) => {
                    upstream_pump::meter_chunk(meter, &chunk);
                }
                UpstreamEvent::Usage { usage: Some(u), .. } => meter.usage(u),
                UpstreamEvent::Finish(reason) => meter.finish(reason),
                _ => {}
            }
            self.settlement.checkpoint();
            return;
        }
        match event {
            UpstreamEvent::Chunk(chunk) => {
                if self.id.is_empty() {
                    if let Chunk::Borrowed { view, .. } = &chunk {
                        self.id = view.id.as_deref().unwrap_or_default().to_owned();
                        self.model = view.model.as_deref().unwrap_or_default().to_owned();
                        self.created = view.created.unwrap_or_default();
                        meter.served_model(&self.model);
                    }
                }
                let finish = upstream_pump::meter_chunk(meter, &chunk);
                // An upstream's own spelling (DeepSeek's, an unknown one) is renamed for the client.
                let renamed = chunk
                    .finish_reason()
                    .is_some_and(|r| FinishReason::from_openai(r).as_openai() != r);
                self.flush_held(None);
                match (finish, chunk) {
                    (Some(reason), chunk) => {
                        let mut chunk = chunk.into_value();
                        if renamed {
                            set_finish_reason(&mut chunk, reason);
                        }
                        self.held_finish = Some(chunk);
                    }
                    (None, chunk) => self.encoder.chunk(&chunk, &mut self.out),
                }
            }
            UpstreamEvent::Usage { usage, chunk } => {
                if let Some(u) = usage {
                    meter.usage(u);
                }
                self.usage_chunk = Some(chunk.into_value());
            }
            UpstreamEvent::Finish(reason) => meter.finish(reason),
            UpstreamEvent::Error(_) | UpstreamEvent::Done => {}
        }
        self.settlement.checkpoint();
    }

    /// A passthrough stream's upstream event, forwarded as it came unless held back.
    fn on_raw(&mut self, event: &sse::Event) {
        let Some(native) = self.native.as_deref_mut() else {
            return;
        };
        if native.dialect == NativeDialect::Responses {
            match wire_upstream::event_type(event).as_ref() {
                "response.completed" | "response.incomplete" => native.stop = Some(event.clone()),
                kind => {
                    if matches!(kind, "error" | "response.failed") {
                        native.upstream_error_sent = true;
                    }
                    self.out.extend_from_slice(&event.raw);
                }
            }
            return;
        }
        if native.dialect != NativeDialect::Messages {
            let data = &event.data;
            if data.trim_ascii_start().starts_with(b"{\"error\"") {
                // Google's error is a data event of its own; the failure writes ours instead.
            } else if native.delta.is_some() {
                self.encoder.raw(&event.raw, data, &mut native.tail);
            } else if carries_finish_reason(data) {
                // The finishing event carries the whole usage: it gains the cost, as Anthropic's
                // `message_delta` does, and waits for it.
                native.delta = Some(data.clone());
            } else {
                self.encoder.raw(&event.raw, data, &mut self.out);
            }
            return;
        }
        match event.name_str() {
            "error" => {}
            "message_stop" => native.stop = Some(event.clone()),
            "message_delta" if native.delta.is_none() => native.delta = Some(event.data.clone()),
            _ if native.delta.is_some() => native.tail.extend_from_slice(&event.raw),
            _ => self.out.extend_from_slice(&event.raw),
        }
    }

    /// A finish chunk for an earlier choice (n > 1) goes out as it was once another arrives; in
    /// a passthrough stream, the held `message_delta` (with `cost` when given) and what followed.
    fn flush_held(&mut self, cost: Option<&str>) {
        if let Some(native) = self.native.as_deref_mut() {
            if let Some(delta) = native.delta.take() {
                if native.dialect == NativeDialect::Messages {
                    let with_cost = cost.and_then(|c| with_usage_cost(&delta, c));
                    let data = with_cost.as_deref().unwrap_or(&delta);
                    sse::write_named(&mut self.out, "message_delta", data);
                } else {
                    let with_cost = cost.and_then(|c| {
                        switchyard_wire::usage::with_cost_in(&delta, "usageMetadata", c)
                    });
                    let data = with_cost.as_deref().unwrap_or(&delta);
                    self.encoder.raw(&[], data, &mut self.out);
                }
            }
            self.out.extend_from_slice(&native.tail);
            native.tail.clear();
        }
        if let Some(chunk) = self.held_finish.take() {
            self.emit(&chunk);
        }
    }

    /// The normal ending.
    async fn finish(&mut self) {
        let Some(finished) = self.settlement.meter.finished() else {
            return self.fail(Failure::Broken, None).await;
        };
        let end = EndReason::from(finished);
        if self
            .native
            .as_deref()
            .is_some_and(|n| n.dialect == NativeDialect::Responses && n.stop.is_none())
        {
            // A Responses stream ends with its terminal event; without it the answer broke off.
            return self.fail(Failure::Broken, None).await;
        }
        let settled = self.settlement.measure().await;
        let cost = settled.cost.total().to_string();
        if self.native.is_some() {
            self.flush_held(Some(&cost));
            let durable = self.settlement.settle(end, &settled).await;
            return self.end_native(&settled, durable, true);
        }
        let mut last = self
            .held_finish
            .take()
            .unwrap_or_else(|| self.empty_chunk(end));
        match last.get_mut("usage") {
            Some(u) if u.is_object() => settled.usage.merge_into(u, Some(&cost)),
            _ => last["usage"] = settled.usage.to_openai(Some(&cost)),
        }
        self.emit(&last);
        if self.include_usage {
            let mut chunk = self.usage_chunk.take().unwrap_or_else(|| {
                json!({"id": self.id, "object": "chat.completion.chunk", "created": self.created,
                       "model": self.model, "choices": []})
            });
            match chunk.get_mut("usage") {
                Some(u) if u.is_object() => settled.usage.merge_into(u, Some(&cost)),
                _ => chunk["usage"] = settled.usage.to_openai(Some(&cost)),
            }
            self.emit(&chunk);
        }
        let durable = self.settlement.settle(end, &settled).await;
        self.end_with_done(&settled, durable);
        self.encoder.keep().await;
    }

    /// The last chunk when the finish chunk already went out (or never came as one): its reason
    /// as the ledger names it (a legacy `function_call` is `tool_calls` here, as it always was).
    fn empty_chunk(&self, end: EndReason) -> Value {
        json!({"id": self.id, "object": "chat.completion.chunk", "created": self.created,
               "model": self.model,
               "choices": [{"index": 0, "delta": {}, "logprobs": null, "finish_reason": end.as_str()}]})
    }

    /// Ends the stream after the first byte went out: an error event, the ledger entry for what
    /// was delivered, `[DONE]` and the cost comment.
    pub(crate) async fn fail(&mut self, failure: Failure, problem: Option<UpstreamProblem>) {
        self.flush_held(None);
        let (message, rate_limited) = failure.describe(problem);
        let (kind, code) = match failure {
            _ if rate_limited => ("rate_limit_error", 502),
            Failure::Shutdown => ("service_unavailable", 503),
            f if f.is_timeout() => ("timeout_error", 504),
            _ => ("upstream_error", 502),
        };
        let end = failure.end_reason();
        // The stream had begun: its client got 200, then this error.
        self.settlement.meter.failed(200, &message);
        if failure.is_route_fault() {
            upstream_pump::report_mid_stream(self.health.as_ref(), failure, &message);
        }
        match self.native.as_deref() {
            Some(n) if n.upstream_error_sent => {}
            Some(n) => self.native_error(n.dialect, kind, code, &message),
            None => {
                let event = switchyard_wire::openai::error_body(&message, kind, None, code.into());
                self.encoder.fail(&event, rate_limited, &mut self.out);
            }
        }
        let settled = self.settlement.measure().await;
        let durable = self.settlement.settle(end, &settled).await;
        if self.native.is_some() {
            return self.end_native(&settled, durable, false);
        }
        self.end_with_done(&settled, durable);
        self.encoder.keep().await;
    }

    /// A passthrough stream's ending once its entry is settled: when it `finished`, the held
    /// `message_stop` (the upstream's, or ours when its body ended without one) or Responses'
    /// terminal event with the cost, then the cost comment; if the entry could not be made
    /// durable, an error event in the client's dialect instead.
    fn end_native(
        &mut self,
        settled: &Settled,
        durable: Result<Durable, LedgerError>,
        finished: bool,
    ) {
        let stop = self.native.as_deref_mut().and_then(|n| n.stop.take());
        let dialect = self
            .native
            .as_deref()
            .map_or(NativeDialect::Messages, |n| n.dialect);
        match durable {
            Ok(_) => {
                match (finished, dialect, stop) {
                    (true, NativeDialect::Messages, Some(stop)) => {
                        self.out.extend_from_slice(&stop.raw)
                    }
                    (true, NativeDialect::Messages, None) => sse::write_named(
                        &mut self.out,
                        "message_stop",
                        br#"{"type":"message_stop"}"#,
                    ),
                    (true, NativeDialect::Responses, Some(stop)) => {
                        let cost = settled.cost.total().to_string();
                        match wire_upstream::terminal_event_with_cost(&stop, &cost) {
                            Some(framed) => self.out.extend_from_slice(&framed),
                            None => self.out.extend_from_slice(&stop.raw),
                        }
                    }
                    _ => {}
                }
                self.encoder.raw_end(&mut self.out);
                (self.encoder).comment(settled.cost_comment().as_bytes(), &mut self.out);
            }
            Err(_) => {
                self.native_error(
                    dialect,
                    "server_error",
                    503,
                    crate::relay::settlement::UNRECORDED,
                );
                self.encoder.raw_end(&mut self.out);
            }
        }
        self.phase = Phase::Done;
    }

    /// An in-stream error in a passthrough stream's own dialect: Anthropic's `event: error`,
    /// Google's `{"error": {code, message, status}}` (an event, or the array's next element), or
    /// a Responses `error` event.
    fn native_error(&mut self, dialect: NativeDialect, kind: &str, code: u16, message: &str) {
        match dialect {
            NativeDialect::Messages => {
                let kind = if kind == "server_error" {
                    "api_error"
                } else {
                    anthropic_error_type(kind)
                };
                let event = error_body(kind, message);
                sse::write_named(&mut self.out, "error", event.to_string().as_bytes());
            }
            NativeDialect::Responses => {
                let code = if kind == "rate_limit_error" {
                    "rate_limit_exceeded"
                } else {
                    "server_error"
                };
                wire_upstream::error_event(code, message, &mut self.out);
            }
            NativeDialect::Gemini => {
                let event = switchyard_wire::gemini::error_body(code, message);
                let json = serde_json::to_vec(&event).unwrap_or_default();
                self.encoder.raw(&[], &json, &mut self.out);
            }
        }
    }

    /// `[DONE]` and the cost comment once the entry is durable; if it could not be made durable
    /// (neither the database nor the journal would write), an error event says so instead of the
    /// cost, before `[DONE]`.
    fn end_with_done(&mut self, settled: &Settled, durable: Result<Durable, LedgerError>) {
        match durable {
            Ok(_) => {
                self.encoder.done(&mut self.out);
                (self.encoder).comment(settled.cost_comment().as_bytes(), &mut self.out);
            }
            Err(_) => {
                self.emit(&billing_unavailable());
                self.encoder.done(&mut self.out);
            }
        }
        self.phase = Phase::Done;
    }
}

/// Whether a Gemini event's data carries a `finishReason` (its last event does).
fn carries_finish_reason(data: &[u8]) -> bool {
    data.windows(14).any(|w| w == b"\"finishReason\"")
}

/// The in-stream error when a finished answer's ledger entry could not be made durable.
pub(crate) fn billing_unavailable() -> Value {
    switchyard_wire::openai::error_body(
        crate::relay::settlement::UNRECORDED,
        "server_error",
        None,
        503.into(),
    )
}

fn set_finish_reason(chunk: &mut Value, reason: FinishReason) {
    if let Some(choices) = chunk.get_mut("choices").and_then(Value::as_array_mut) {
        for c in choices {
            if c.get("finish_reason").is_some_and(|f| !f.is_null()) {
                c["finish_reason"] = Value::from(reason.as_openai());
            }
        }
    }
}

impl PumpedRelay for ChatStream {
    fn pump(&mut self) -> &mut Pump {
        &mut self.pump
    }

    fn out(&mut self) -> &mut BytesMut {
        &mut self.out
    }

    fn is_done(&self) -> bool {
        self.phase == Phase::Done
    }

    fn on_upstream(&mut self, event: UpstreamEvent<'_>) {
        ChatStream::on_upstream(self, event)
    }

    fn on_raw(&mut self, event: &sse::Event) {
        ChatStream::on_raw(self, event)
    }

    fn keep_alive(&mut self) {
        if self
            .native
            .as_deref()
            .is_some_and(|n| n.dialect == NativeDialect::Messages)
        {
            MessagesStream::ping(&mut self.out);
        } else {
            self.encoder.keep_alive(&mut self.out);
        }
    }

    async fn finish(&mut self) {
        ChatStream::finish(self).await
    }

    async fn fail(&mut self, failure: Failure, problem: Option<UpstreamProblem>) {
        ChatStream::fail(self, failure, problem).await
    }
}
