//! The one encoder per client dialect of the chat engine: what a client that asked in chat, in
//! legacy completions or in Anthropic Messages (later Gemini) is sent, written from the engine's
//! chat chunks as the stream relay produces them (never by reading the gateway's own SSE output
//! back): every chunk, the end (`[DONE]` / `message_stop`), errors, keep-alives, and the whole
//! answer of a non-streamed request. A route of the client's own dialect bypasses it (passthrough,
//! `ChatStream::passthrough`).

use bytes::{Bytes, BytesMut};
use serde_json::Value;
use switchyard_wire::anthropic::inbound::{completion_to_message, MessagesStream};
use switchyard_wire::{completions, sse};

use crate::relay::meter::Meter;

/// How the chat engine's answer is written for its client.
#[derive(Debug, Clone)]
pub enum Encoder {
    /// Chat Completions: the chunks as they are.
    Chat,
    /// Legacy `/completions`: each chunk as a `text_completion` chunk; `echo` is the prompt
    /// when the client asked for it back.
    Text { echo: Option<String> },
    /// Anthropic Messages: the Messages event sequence.
    Messages(Box<MessagesStream>),
}

impl Encoder {
    /// Files the request in the request log by its client's API.
    pub fn mark(&self, meter: &mut Meter) {
        match self {
            Encoder::Chat => {}
            Encoder::Text { .. } => meter.completions_api(),
            Encoder::Messages(_) => meter.messages_api(),
        }
    }

    /// One chat chunk's JSON, or a chat error event's (`{"error": {…}}`).
    pub fn data(&mut self, json: &[u8], out: &mut BytesMut) {
        match self {
            Encoder::Chat => sse::write_data(out, json),
            Encoder::Text { echo } => {
                if !completions::write_chunk(json, echo.as_deref(), out) {
                    sse::write_data(out, json);
                }
            }
            Encoder::Messages(m) => m.chunk_data(json, out),
        }
    }

    /// The end of a stream that ended well or with an error event: `[DONE]`, or for Messages
    /// the closing events (nothing after an error).
    pub fn done(&mut self, out: &mut BytesMut) {
        match self {
            Encoder::Chat | Encoder::Text { .. } => out.extend_from_slice(sse::DONE),
            Encoder::Messages(m) => m.finish(out),
        }
    }

    /// A keep-alive while nothing else goes out: a comment, or Messages' `ping` event.
    pub fn keep_alive(&self, out: &mut BytesMut) {
        match self {
            Encoder::Messages(_) => MessagesStream::ping(out),
            _ => out.extend_from_slice(sse::KEEP_ALIVE),
        }
    }

    /// [`Encoder::keep_alive`] as one frame.
    pub fn keep_alive_frame(&self) -> Bytes {
        let mut out = BytesMut::new();
        self.keep_alive(&mut out);
        out.freeze()
    }

    /// A stream's whole ending made of one error event (a committed stream whose routes all
    /// failed): the event, then the end.
    pub fn error_ending(mut self, event: &Value) -> Bytes {
        let mut out = BytesMut::with_capacity(256);
        self.data(&serde_json::to_vec(event).unwrap_or_default(), &mut out);
        self.done(&mut out);
        out.freeze()
    }

    /// A non-streamed answer (a chat completion with its cost) as its client's body.
    pub fn whole(&self, completion: &Value) -> Vec<u8> {
        let v = match self {
            Encoder::Chat => return serde_json::to_vec(completion).unwrap_or_default(),
            Encoder::Text { echo } => completions::from_chat(completion, echo.as_deref()),
            Encoder::Messages(m) => completion_to_message(completion, m.id(), m.model()),
        };
        serde_json::to_vec(&v).unwrap_or_default()
    }
}
