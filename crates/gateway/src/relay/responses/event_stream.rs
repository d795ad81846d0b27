//! The streamed Responses relay: reads the upstream's SSE bytes as typed events (`wire::upstream`:
//! chat chunks, usage, finish, error, done, whatever the upstream's dialect), feeds every chunk to
//! the Responses event builder the moment it is decoded and writes the events it yields (`event: <type>` +
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
use switchyard_wire::responses::{encode_sse, Event, ResponseContext, StreamBuilder};
use switchyard_wire::sse;
use switchyard_wire::upstream::{Chunk, Stamp, UpstreamEvent, UpstreamProblem};

use crate::app::Gateway;
use crate::ledger::EndReason;
use crate::relay::attempts::{unix_now, UpstreamStream};
use crate::relay::responses::Keeper;
use crate::relay::settlement::{Settled, Settlement};
use crate::relay::upstream_pump::{self, Failure, Pump, PumpedRelay};
use crate::routing::HealthKey;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Streaming,
    Done,
}

/// The state of one streamed response.
pub struct ResponseStream {
    pump: Pump,
    builder: StreamBuilder,
    settlement: Settlement,
    keeper: Keeper,
    /// Where a mid-stream failure is reported: the gateway's routing, the route and the caller.
    health: (Arc<Gateway>, HealthKey),
    /// Bytes ready for the client.
    out: BytesMut,
    /// Scratch space, reused: the events of one upstream event and their encoding.
    events: Vec<Event>,
    encoded: Vec<u8>,
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
        let translated = !upstream.dialect.speaks_openai();
        let stamp = Stamp {
            id: ctx.id.clone(),
            model: ctx.model.clone(),
            created: ctx.created_at,
        };
        let decoder = upstream_pump::decoder(upstream.dialect, stamp).with_value_fallback();
        let keep_alive = gw.config.keep_alive;
        let mut stream = ResponseStream {
            pump: Pump::new(&mut upstream, keep_alive, decoder, &gw.end_streams),
            builder: StreamBuilder::new(ctx),
            settlement,
            keeper,
            health: (gw, upstream.health),
            out: BytesMut::with_capacity(4096),
            events: Vec::with_capacity(8),
            encoded: Vec::with_capacity(1024),
            finish: None,
            phase: Phase::Streaming,
        };
        if translated {
            stream.settlement.meter.served_model(&upstream.model);
        }
        stream.builder.start_sse(&mut stream.encoded);
        stream.write_events();
        stream
    }

    /// The stream of frames for the HTTP body.
    pub fn into_body(self) -> impl Stream<Item = Bytes> + Send {
        upstream_pump::body(self)
    }

    /// Every chunk (the usage-only one too) is metered and fed to the builder, and the events it
    /// yields are written at once.
    fn on_upstream(&mut self, event: UpstreamEvent<'_>) {
        match event {
            UpstreamEvent::Chunk(chunk) => {
                if self.before_first_token() {
                    if let Some(model) = chunk.upstream_model() {
                        self.settlement.meter.served_model(model);
                    }
                }
                if let Some(finish) = upstream_pump::meter_chunk(&mut self.settlement.meter, &chunk)
                {
                    self.finish = Some(finish);
                }
                self.push_chunk(&chunk);
            }
            UpstreamEvent::Usage { usage, chunk } => {
                if let Some(u) = usage {
                    self.settlement.meter.usage(u);
                }
                self.push_chunk(&chunk);
            }
            UpstreamEvent::Finish(reason) => {
                self.settlement.meter.finish(EndReason::from_finish(reason));
            }
            UpstreamEvent::Error(_) | UpstreamEvent::Done => {}
        }
        self.settlement.checkpoint();
        self.write_events();
    }

    /// Feeds a chunk to the builder: a borrowed or typed one is read in place and its events
    /// written straight into `encoded`; any other (a value, or a choice with a whole `message`,
    /// which only the value reading takes) goes through a `Value` and `events`.
    fn push_chunk(&mut self, chunk: &Chunk<'_>) {
        match chunk {
            Chunk::Borrowed { view, .. } if !view.has_message() => {
                self.builder.push_chunk_view(view, &mut self.encoded);
            }
            Chunk::Typed(c) => self.builder.push_chat_chunk(c, &mut self.encoded),
            other => self.builder.push_chunk(&other.value(), &mut self.events),
        }
    }

    /// Whether nothing generated has been seen yet (the served model is taken from these chunks).
    fn before_first_token(&self) -> bool {
        self.settlement.meter.first_token_at().is_none() && self.finish.is_none()
    }

    /// Encodes the pending events into the output buffer, after the frames already written into
    /// `encoded` (one chunk's events go to one of the two, so the order holds).
    fn write_events(&mut self) {
        for event in self.events.drain(..) {
            encode_sse(&event, &mut self.encoded);
        }
        self.out.extend_from_slice(&self.encoded);
        self.encoded.clear();
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
                crate::relay::settlement::UNRECORDED,
                &mut self.events,
            );
            return self.end(&settled);
        }
        self.keeper.keep(&response).await;
        self.end(&settled);
    }

    /// Ends the stream after the first byte went out: the ledger entry for what was delivered,
    /// then `error` and `response.failed`.
    async fn fail(&mut self, failure: Failure, problem: Option<UpstreamProblem>) {
        let (message, rate_limited) = failure.describe(problem);
        let code = if rate_limited {
            "rate_limit_exceeded"
        } else {
            "server_error"
        };
        let end = failure.end_reason();
        self.settlement.meter.failed(200, &message);
        if failure.is_route_fault() {
            upstream_pump::report_mid_stream(Some(&self.health), failure, &message);
        }
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

/// The ending of a committed stream whose every route failed before its first event
/// (`relay::early_commit`): `response.created`, `response.in_progress`, then `error` (with the
/// words the HTTP error would have had) and `response.failed`. The failed response is stored like
/// one that failed mid-stream; the ledger entry was written when the routes failed.
pub async fn failed_before_start(
    ctx: ResponseContext,
    keeper: Keeper,
    words: crate::relay::ErrorWords,
) -> Bytes {
    let mut builder = StreamBuilder::new(ctx);
    let mut events = Vec::with_capacity(4);
    builder.fail_as(
        Some(words.kind),
        &words.code,
        words.param.as_deref(),
        &words.message,
        &mut events,
    );
    keeper.keep(&builder.response()).await;
    let mut encoded = Vec::with_capacity(1024);
    for event in &events {
        encode_sse(event, &mut encoded);
    }
    Bytes::from(encoded)
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

    fn on_upstream(&mut self, event: UpstreamEvent<'_>) {
        ResponseStream::on_upstream(self, event)
    }

    async fn finish(&mut self) {
        ResponseStream::finish(self).await
    }

    async fn fail(&mut self, failure: Failure, problem: Option<UpstreamProblem>) {
        ResponseStream::fail(self, failure, problem).await
    }
}
