//! The streamed Chat Completions relay: reads the upstream's SSE bytes, forwards every chunk the
//! moment it is decoded, taps what it needs for billing, and writes the ending the contract
//! promises (last chunk with `finish_reason` and `usage.cost`, the optional usage chunk, the
//! ledger entry, `data: [DONE]`, the cost comment). Errors after the first byte become an error
//! event followed by `[DONE]`. A `: keep-alive` comment goes out while the upstream is silent.
//!
//! An Anthropic upstream's events go through `wire::anthropic::StreamTranslator` and come out as
//! OpenAI chunks with the same ending; its `event: error` becomes the same error event.
//!
//! Per chunk the OpenAI-dialect hot path does one borrowed JSON parse, one copy into the output
//! buffer and an append of the generated text to the tally; timers are only re-armed when they
//! fire. A mid-stream failure is also reported to the route's health (`routing`).

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::Stream;
use serde_json::{json, Value};
use switchyard_wire::anthropic::{self, StreamTranslator};
use switchyard_wire::openai::{normalize_finish_reason, ChunkView};
use switchyard_wire::sse;
use switchyard_wire::usage::Usage;

use crate::app::Gateway;
use crate::config::ProviderKind;
use crate::ledger::{Durable, EndReason, LedgerError};
use crate::relay::attempts::{unix_now, UpstreamStream};
use crate::relay::settlement::{Settled, Settlement};
use crate::relay::upstream_pump::{self, Failure, Pump, PumpedRelay};

/// The upstream's body as a stream of network chunks.
pub type ByteStream = Pin<Box<dyn Stream<Item = Result<Bytes, String>> + Send>>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Streaming,
    Done,
}

/// The state of one streamed response.
pub struct ChatStream {
    pump: Pump,
    out: BytesMut,
    settlement: Settlement,
    include_usage: bool,
    /// Set for an Anthropic upstream: its events are translated into OpenAI chunks.
    translator: Option<Box<StreamTranslator>>,
    /// Where a mid-stream failure is reported: the gateway's routing and the route's key.
    health: Option<(Arc<Gateway>, String)>,
    /// The chunk carrying `finish_reason`, held until the usage that belongs on it arrives.
    held_finish: Option<Value>,
    /// The upstream's usage-only chunk (`choices: []`), kept to be re-sent with the cost.
    usage_chunk: Option<Value>,
    id: String,
    model: String,
    created: u64,
    phase: Phase,
}

impl ChatStream {
    /// `upstream.decoder` may already hold the first event(s), read while deciding whether to fail
    /// over. `gw`, when given, receives the route's mid-stream failures.
    pub fn new(
        mut upstream: UpstreamStream,
        settlement: Settlement,
        include_usage: bool,
        keep_alive: Duration,
        gw: Option<Arc<Gateway>>,
    ) -> ChatStream {
        let mut stream = ChatStream {
            pump: Pump::new(&mut upstream, keep_alive),
            out: BytesMut::with_capacity(4096),
            settlement,
            include_usage,
            translator: None,
            health: gw.map(|gw| (gw, upstream.route_key)),
            held_finish: None,
            usage_chunk: None,
            id: String::new(),
            model: String::new(),
            created: 0,
            phase: Phase::Streaming,
        };
        if upstream.dialect == ProviderKind::Anthropic {
            stream.id = crate::auth::new_id("chatcmpl-", 24);
            stream.model = upstream.model;
            stream.created = unix_now();
            stream.settlement.meter.served_model(&stream.model);
            stream.translator = Some(Box::new(StreamTranslator::new(
                stream.id.clone(),
                stream.model.clone(),
                stream.created,
            )));
        }
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
        let Some(view) = ChunkView::parse(&event.data) else {
            return self.fail(Failure::Garbage, None).await;
        };
        if let Some(error) = view.error {
            let error: Value = serde_json::from_str(error.get()).unwrap_or(Value::Null);
            return self.fail(Failure::UpstreamError, Some(error)).await;
        }
        if self.id.is_empty() {
            self.id = view.id.as_deref().unwrap_or_default().to_owned();
            self.model = view.model.as_deref().unwrap_or_default().to_owned();
            self.created = view.created.unwrap_or_default();
            self.settlement.meter.served_model(&self.model);
        }
        let finish = self.settlement.meter.chunk(&view);
        let renamed = view
            .finish_reason()
            .is_some_and(|r| normalize_finish_reason(r).is_some());
        let usage_only = view.choices.is_empty() && view.usage.is_some();
        drop(view);
        self.settlement.checkpoint();
        if usage_only {
            self.usage_chunk = serde_json::from_slice(&event.data).ok();
            return;
        }
        if let Some(reason) = finish {
            self.flush_held();
            let mut chunk: Value = serde_json::from_slice(&event.data).unwrap_or(Value::Null);
            if renamed {
                set_finish_reason(&mut chunk, reason);
            }
            self.held_finish = Some(chunk);
            return;
        }
        self.flush_held();
        sse::write_data(&mut self.out, &event.data);
    }

    /// One Anthropic event: translated, its chunks written (the finish chunk held for the usage),
    /// its usage tapped; `message_stop` ends the stream normally, `error` with an error event.
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
            let mut body = err.to_openai();
            let inner = body.get_mut("error").map(Value::take);
            return self.fail(Failure::UpstreamError, inner).await;
        }
        let meter = &mut self.settlement.meter;
        if let Some(reason) = t.finish_reason() {
            meter.finish(EndReason::from_finish(reason));
        }
        if let Some(u) = t.usage() {
            meter.usage(usage_of(&u));
        }
        for mut chunk in t.drain() {
            // The translator's chunks carry no usage: what Anthropic reported is tapped above.
            let usage = chunk.as_object_mut().and_then(|c| c.remove("usage"));
            let finished = meter.chat_value(&chunk).is_some();
            if let Some(u) = usage {
                chunk["usage"] = u;
            }
            if finished {
                self.held_finish = Some(chunk);
            } else {
                write_json(&mut self.out, &chunk);
            }
        }
        self.settlement.checkpoint();
        if t.is_done() {
            self.usage_chunk = t.usage_chunk();
            self.finish().await;
        }
    }

    /// A finish chunk for an earlier choice (n > 1) goes out as it was once another arrives.
    fn flush_held(&mut self) {
        if let Some(chunk) = self.held_finish.take() {
            write_json(&mut self.out, &chunk);
        }
    }

    async fn on_eof(&mut self) {
        if self.settlement.meter.finish_reason().is_some() {
            // Some servers end without [DONE] after the finish chunk: that is a complete answer.
            self.finish().await;
        } else {
            self.fail(Failure::Broken, None).await;
        }
    }

    /// The normal ending.
    async fn finish(&mut self) {
        let Some(end) = self.settlement.meter.finish_reason() else {
            return self.fail(Failure::Broken, None).await;
        };
        let settled = self.settlement.measure().await;
        let cost = settled.cost.total().to_string();
        let mut last = self
            .held_finish
            .take()
            .unwrap_or_else(|| self.empty_chunk(end));
        match last.get_mut("usage") {
            Some(u) if u.is_object() => settled.usage.merge_into(u, Some(&cost)),
            _ => last["usage"] = settled.usage.to_openai(Some(&cost)),
        }
        write_json(&mut self.out, &last);
        if self.include_usage {
            let mut chunk = self.usage_chunk.take().unwrap_or_else(|| {
                json!({"id": self.id, "object": "chat.completion.chunk", "created": self.created,
                       "model": self.model, "choices": []})
            });
            match chunk.get_mut("usage") {
                Some(u) if u.is_object() => settled.usage.merge_into(u, Some(&cost)),
                _ => chunk["usage"] = settled.usage.to_openai(Some(&cost)),
            }
            write_json(&mut self.out, &chunk);
        }
        let durable = self.settlement.settle(end, &settled).await;
        self.end_with_done(&settled, durable);
    }

    fn empty_chunk(&self, end: EndReason) -> Value {
        json!({"id": self.id, "object": "chat.completion.chunk", "created": self.created,
               "model": self.model,
               "choices": [{"index": 0, "delta": {}, "logprobs": null, "finish_reason": end.as_str()}]})
    }

    /// Ends the stream after the first byte went out: an error event, the ledger entry for what
    /// was delivered, `[DONE]` and the cost comment.
    pub async fn fail(&mut self, failure: Failure, upstream_error: Option<Value>) {
        self.flush_held();
        let (message, kind, code) = match failure {
            Failure::UpstreamError => {
                let inner = upstream_error
                    .as_ref()
                    .and_then(|e| e.get("message").or_else(|| e.pointer("/error/message")))
                    .and_then(Value::as_str)
                    .unwrap_or(failure.message())
                    .to_owned();
                let rate_limited = upstream_error
                    .as_ref()
                    .and_then(|e| e.get("type"))
                    .and_then(Value::as_str)
                    == Some("rate_limit_error");
                let kind = if rate_limited {
                    "rate_limit_error"
                } else {
                    "upstream_error"
                };
                (inner, kind, json!(502))
            }
            f if f.is_timeout() => (f.message().to_owned(), "timeout_error", json!(504)),
            f => (f.message().to_owned(), "upstream_error", json!(502)),
        };
        let end = failure.end_reason();
        if let Some((gw, key)) = &self.health {
            gw.routing
                .record_failure(key, &format!("mid-stream: {message}"));
        }
        let event =
            json!({"error": {"message": message, "type": kind, "param": null, "code": code}});
        write_json(&mut self.out, &event);
        let settled = self.settlement.measure().await;
        let durable = self.settlement.settle(end, &settled).await;
        self.end_with_done(&settled, durable);
    }

    /// `[DONE]` and the cost comment once the entry is durable; if it could not be made durable
    /// (neither the database nor the journal would write), an error event says so instead of the
    /// cost, before `[DONE]`.
    fn end_with_done(&mut self, settled: &Settled, durable: Result<Durable, LedgerError>) {
        match durable {
            Ok(_) => {
                self.out.extend_from_slice(sse::DONE);
                sse::write_comment(&mut self.out, settled.cost_comment().as_bytes());
            }
            Err(_) => {
                write_json(&mut self.out, &billing_unavailable());
                self.out.extend_from_slice(sse::DONE);
            }
        }
        self.phase = Phase::Done;
    }
}

/// The in-stream error when a finished answer's ledger entry could not be made durable.
pub(crate) fn billing_unavailable() -> Value {
    json!({"error": {"message": "The usage of this request could not be recorded; it was not completed normally.",
                     "type": "server_error", "param": null, "code": 503}})
}

fn write_json(out: &mut BytesMut, v: &Value) {
    let bytes = serde_json::to_vec(v).unwrap_or_default();
    sse::write_data(out, &bytes);
}

fn set_finish_reason(chunk: &mut Value, reason: &str) {
    if let Some(choices) = chunk.get_mut("choices").and_then(Value::as_array_mut) {
        for c in choices {
            if c.get("finish_reason").is_some_and(|f| !f.is_null()) {
                c["finish_reason"] = Value::String(reason.to_owned());
            }
        }
    }
}

/// Anthropic's usage in the gateway's terms (cache reads and writes are part of the prompt).
fn usage_of(u: &anthropic::Usage) -> Usage {
    Usage {
        prompt_tokens: u.prompt_tokens(),
        completion_tokens: u.completion_tokens(),
        cached_tokens: u.cache_read_tokens,
        cache_write_tokens: u.cache_creation_tokens,
        reasoning_tokens: u.thinking_tokens.unwrap_or(0),
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

    async fn on_event(&mut self, event: sse::Event) {
        ChatStream::on_event(self, event).await
    }

    async fn on_eof(&mut self) {
        ChatStream::on_eof(self).await
    }

    async fn on_failure(&mut self, failure: Failure) {
        self.fail(failure, None).await
    }
}
