//! The one encoder per client dialect of the chat engine: what a client that asked in chat, in
//! legacy completions, in Anthropic Messages, in Google's Gemini API or in OpenAI's Responses API
//! is sent, written from the engine's chat chunks as the stream relay produces them (never by reading the gateway's own SSE
//! output back): every chunk, the end (`[DONE]` / `message_stop` / Gemini's last event), errors,
//! keep-alives and comments (none for Gemini: Google's streams have none, and SDKs that match
//! `^data: ` would stall on one), and the whole answer of a non-streamed request. A route of the
//! client's own dialect bypasses the translation (`ChatStream::passthrough`), but its events still
//! leave through the encoder's framing (a Gemini client without `alt=sse` reads one JSON array).

pub(crate) mod responses;

use bytes::{Bytes, BytesMut};
use serde_json::Value;
use switchyard_wire::anthropic::inbound::{completion_to_message, MessagesStream};
use switchyard_wire::gemini::inbound::GeminiStream;
use switchyard_wire::upstream::Chunk;
use switchyard_wire::{completions, sse};

use crate::relay::client_encoder::responses::ResponsesOut;
use crate::relay::meter::Meter;

/// How the chat engine's answer is written for its client.
#[derive(Debug, Clone)]
pub(crate) enum Encoder {
    /// Chat Completions: the chunks as they are.
    Chat,
    /// Legacy `/completions`: each chunk as a `text_completion` chunk; `echo` is the prompt
    /// when the client asked for it back.
    Text { echo: Option<String> },
    /// Anthropic Messages: the Messages event sequence.
    Messages(Box<MessagesStream>),
    /// Google's Gemini API: `GenerateContentResponse` events (SSE or one JSON array).
    Gemini(Box<GeminiStream>),
    /// OpenAI's Responses API: Responses events, the finished response kept before its
    /// terminal event goes out.
    Responses(Box<ResponsesOut>),
}

impl Encoder {
    /// Files the request in the request log by its client's API.
    pub(crate) fn mark(&self, meter: &mut Meter) {
        match self {
            Encoder::Chat => {}
            Encoder::Text { .. } => meter.completions_api(),
            Encoder::Messages(_) => meter.messages_api(),
            Encoder::Gemini(_) => meter.gemini_api(),
            Encoder::Responses(_) => meter.responses_api(),
        }
    }

    /// Whether the client speaks the Responses API.
    pub(crate) fn is_responses(&self) -> bool {
        matches!(self, Encoder::Responses(_))
    }

    /// What a client reads before the first chunk (Responses: `response.created`,
    /// `response.in_progress`).
    pub(crate) fn begin(&mut self, out: &mut BytesMut) {
        if let Encoder::Responses(r) = self {
            r.begin(out);
        }
    }

    /// One upstream chunk as decoded: its own bytes when it was borrowed, a typed (translated)
    /// chunk serialised straight to bytes, read in place by a Responses client.
    pub(crate) fn chunk(&mut self, chunk: &Chunk<'_>, out: &mut BytesMut) {
        match (self, chunk) {
            (Encoder::Responses(r), chunk) => r.chunk(chunk, out),
            (e, Chunk::Borrowed { data, .. }) => e.data(data, out),
            (e, chunk) => {
                let mut json = Vec::with_capacity(256);
                chunk.write_json(&mut json);
                e.data(&json, out);
            }
        }
    }

    /// A chunk or error event the engine built.
    pub(crate) fn value(&mut self, v: &Value, out: &mut BytesMut) {
        match self {
            Encoder::Responses(r) => r.value(v, out),
            e => e.data(&serde_json::to_vec(v).unwrap_or_default(), out),
        }
    }

    /// A failure after the first byte: the chat error event `event` (`{"error": {…}}`), or for a
    /// Responses client `error` and `response.failed` with OpenAI's codes.
    pub(crate) fn fail(&mut self, event: &Value, rate_limited: bool, out: &mut BytesMut) {
        match self {
            Encoder::Responses(r) => {
                let message = event["error"]["message"].as_str().unwrap_or_default();
                r.fail(rate_limited, message, out);
            }
            e => e.value(event, out),
        }
    }

    /// Keeps a Responses client's response (finished or failed) before its end can be read.
    pub(crate) async fn keep(&self) {
        if let Encoder::Responses(r) = self {
            r.keep().await;
        }
    }

    /// One chat chunk's JSON, or a chat error event's (`{"error": {…}}`). A Responses client
    /// reads chunks in place (`chunk`, `value`); only a chunk that arrives as bytes is parsed.
    fn data(&mut self, json: &[u8], out: &mut BytesMut) {
        match self {
            Encoder::Chat => sse::write_data(out, json),
            Encoder::Text { echo } => {
                if !completions::write_chunk(json, echo.as_deref(), out) {
                    sse::write_data(out, json);
                }
            }
            Encoder::Messages(m) => m.chunk_data(json, out),
            Encoder::Gemini(g) => g.chunk_data(json, out),
            Encoder::Responses(r) => match serde_json::from_slice::<Value>(json) {
                Ok(v) => r.value(&v, out),
                Err(_) => r.fail(false, "The upstream sent an unreadable chunk.", out),
            },
        }
    }

    /// One event of a route of the client's own dialect (passthrough), as it came: its raw SSE
    /// bytes, or for a Gemini client without `alt=sse` its data as the array's next element.
    pub(crate) fn raw(&mut self, raw: &[u8], data: &[u8], out: &mut BytesMut) {
        match self {
            Encoder::Gemini(g) => g.raw_element(data, out),
            _ => out.extend_from_slice(raw),
        }
    }

    /// The end of a passed-through stream (a Gemini JSON array's `]`).
    pub(crate) fn raw_end(&mut self, out: &mut BytesMut) {
        if let Encoder::Gemini(g) = self {
            g.end(out);
        }
    }

    /// An SSE comment (the cost line); Gemini clients get none.
    pub(crate) fn comment(&self, text: &[u8], out: &mut BytesMut) {
        if !matches!(self, Encoder::Gemini(_)) {
            sse::write_comment(out, text);
        }
    }

    /// The end of a stream that ended well or with an error event: `[DONE]`, or for Messages
    /// the closing events (nothing after an error).
    pub(crate) fn done(&mut self, out: &mut BytesMut) {
        match self {
            Encoder::Chat | Encoder::Text { .. } => out.extend_from_slice(sse::DONE),
            Encoder::Messages(m) => m.finish(out),
            Encoder::Gemini(g) => g.finish(out),
            Encoder::Responses(r) => r.done(out),
        }
    }

    /// A keep-alive while nothing else goes out: a comment, Messages' `ping` event, or nothing
    /// for Gemini.
    pub(crate) fn keep_alive(&self, out: &mut BytesMut) {
        match self {
            Encoder::Messages(_) => MessagesStream::ping(out),
            Encoder::Gemini(_) => {}
            _ => out.extend_from_slice(sse::KEEP_ALIVE),
        }
    }

    /// [`Encoder::keep_alive`] as one frame.
    pub(crate) fn keep_alive_frame(&self) -> Bytes {
        let mut out = BytesMut::new();
        self.keep_alive(&mut out);
        out.freeze()
    }

    /// A stream's whole ending made of one error event (a committed stream whose routes all
    /// failed): the event, then the end; a Responses client's failed response is kept first.
    pub(crate) async fn error_ending(mut self, event: &Value) -> Bytes {
        let mut out = BytesMut::with_capacity(256);
        match &mut self {
            Encoder::Responses(r) => {
                r.begin(&mut out);
                r.fail_before_start(event, &mut out);
                r.keep().await;
            }
            e => {
                e.value(event, &mut out);
                e.done(&mut out);
            }
        }
        out.freeze()
    }

    /// A non-streamed answer (a chat completion with its cost) as its client's body; a
    /// Responses client's response is kept before it is returned.
    pub(crate) async fn whole(&self, completion: &Value) -> Vec<u8> {
        let v = match self {
            Encoder::Chat => return serde_json::to_vec(completion).unwrap_or_default(),
            Encoder::Text { echo } => completions::from_chat(completion, echo.as_deref()),
            Encoder::Messages(m) => completion_to_message(completion, m.id(), m.model()),
            Encoder::Gemini(g) => g.whole(completion),
            Encoder::Responses(r) => r.whole(completion).await,
        };
        serde_json::to_vec(&v).unwrap_or_default()
    }
}
