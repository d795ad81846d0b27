//! The Responses API's client encoder: the chat engine's chunks written as Responses events
//! (`response.created` … `response.completed`, through `wire::responses::StreamBuilder`, read in
//! place from the upstream's borrowed or typed chunks), the whole answer as a Response object,
//! and the keeping of the finished response (`Keeper`) for `GET /v1/responses/{id}` and
//! `previous_response_id`, done before the terminal event can reach the client.

use std::sync::Arc;

use bytes::BytesMut;
use serde_json::Value;
use switchyard_wire::responses::{
    chat_completion_to_response, encode_sse, Event, ResponseContext, StreamBuilder,
};
use switchyard_wire::upstream::Chunk;

use crate::store::{Responses, StoredResponse};

/// What is needed to keep a finished response for `GET` and `previous_response_id`.
pub(crate) struct Keeper {
    pub responses: Responses,
    pub key_id: String,
    pub model: String,
    /// The chat messages sent upstream (history + new input), for `conversation_after`.
    pub messages: Vec<Value>,
    /// The request's input as Responses items, for `input_items`.
    pub input_items: Vec<Value>,
    pub store: bool,
}

impl crate::replay::Keep for Keeper {
    fn keep<'a>(&'a self, response: &'a Value) -> futures_util::future::BoxFuture<'a, ()> {
        Box::pin(Keeper::keep(self, response))
    }
}

impl Keeper {
    /// Stores the final Response object (unless the request said `store: false`). A failure to
    /// store does not fail the answer the client already has; it is logged.
    pub(crate) async fn keep(&self, response: &Value) {
        if !self.store {
            return;
        }
        let stored = StoredResponse {
            id: response["id"].as_str().unwrap_or_default().to_owned(),
            key_id: self.key_id.clone(),
            model: self.model.clone(),
            status: response["status"]
                .as_str()
                .unwrap_or("completed")
                .to_owned(),
            conversation: switchyard_wire::responses::conversation_after(&self.messages, response),
            response: response.clone(),
            input_items: self.input_items.clone(),
        };
        if let Err(e) = self.responses.put(&stored).await {
            tracing::warn!(response_id = %stored.id, error = %e, "response could not be stored");
        }
    }
}

/// One Responses client: the event builder, its scratch space and the keeper.
#[derive(Clone)]
pub(crate) struct ResponsesOut {
    builder: StreamBuilder,
    ctx: ResponseContext,
    keeper: Arc<Keeper>,
    /// Scratch space, reused: the events of one chunk read as a value, and frames written in place.
    events: Vec<Event>,
    encoded: Vec<u8>,
}

impl std::fmt::Debug for ResponsesOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponsesOut")
            .field("id", &self.ctx.id)
            .finish_non_exhaustive()
    }
}

impl ResponsesOut {
    pub(crate) fn new(ctx: ResponseContext, keeper: Arc<Keeper>) -> ResponsesOut {
        ResponsesOut {
            builder: StreamBuilder::new(ctx.clone()),
            ctx,
            keeper,
            events: Vec::with_capacity(8),
            encoded: Vec::with_capacity(1024),
        }
    }

    /// `response.created` and `response.in_progress`.
    pub(crate) fn begin(&mut self, out: &mut BytesMut) {
        self.builder.start_sse(&mut self.encoded);
        self.flush(out);
    }

    /// A chunk read in place (borrowed or typed); any other (a value, or a choice with a whole
    /// `message`, which only the value reading takes) through a `Value`.
    pub(crate) fn chunk(&mut self, chunk: &Chunk<'_>, out: &mut BytesMut) {
        match chunk {
            Chunk::Borrowed { view, .. } if !view.has_message() => {
                self.builder.push_chunk_view(view, &mut self.encoded);
            }
            Chunk::Typed(c) => self.builder.push_chat_chunk(c, &mut self.encoded),
            other => self.builder.push_chunk(&other.value(), &mut self.events),
        }
        self.flush(out);
    }

    /// A chunk the engine built (the finish chunk with the cost, an error event).
    pub(crate) fn value(&mut self, chunk: &Value, out: &mut BytesMut) {
        self.builder.push_chunk(chunk, &mut self.events);
        self.flush(out);
    }

    /// A failure mid-stream: `error` and `response.failed`, with OpenAI's codes.
    pub(crate) fn fail(&mut self, rate_limited: bool, message: &str, out: &mut BytesMut) {
        let code = if rate_limited {
            "rate_limit_exceeded"
        } else {
            "server_error"
        };
        self.builder.fail(code, message, &mut self.events);
        self.flush(out);
    }

    /// A stream whose every route failed before its first event: `error` with every word the
    /// HTTP error would have had (`{"error": {type, code, param, message}}`) and
    /// `response.failed`; a numeric (HTTP status) code reads `server_error`, as OpenAI's do.
    pub(crate) fn fail_before_start(&mut self, event: &Value, out: &mut BytesMut) {
        let e = &event["error"];
        let code = match &e["code"] {
            Value::Number(_) => Value::String("server_error".into()),
            other => other.clone(),
        };
        self.builder.fail_as(
            e["type"].as_str(),
            &code,
            e["param"].as_str(),
            e["message"].as_str().unwrap_or_default(),
            &mut self.events,
        );
        self.flush(out);
    }

    /// The terminal event (`response.completed` / `response.incomplete`, its usage with the
    /// cost the finish chunk carried); nothing after a failure.
    pub(crate) fn done(&mut self, out: &mut BytesMut) {
        self.builder.set_completed_at(crate::clock::unix_now());
        self.builder.finish(None, &mut self.events);
        self.flush(out);
    }

    /// Keeps the response as it stands (finished or failed).
    pub(crate) async fn keep(&self) {
        self.keeper.keep(&self.builder.response()).await;
    }

    /// A non-streamed answer (a chat completion with its cost) as a Response object, kept.
    pub(crate) async fn whole(&self, completion: &Value) -> Value {
        let mut ctx = self.ctx.clone();
        ctx.completed_at = Some(crate::clock::unix_now());
        let response = chat_completion_to_response(completion, ctx);
        self.keeper.keep(&response).await;
        response
    }

    fn flush(&mut self, out: &mut BytesMut) {
        for event in self.events.drain(..) {
            encode_sse(&event, &mut self.encoded);
        }
        out.extend_from_slice(&self.encoded);
        self.encoded.clear();
    }
}
