//! An upstream's streamed answer as typed events, whatever its dialect: the one place that knows
//! how an OpenAI/DeepSeek or Anthropic stream says "here is a chunk", "this is the usage", "the
//! answer ended for this reason", "something went wrong" and "that was all". The streamed relays
//! (chat and Responses) read these events and no longer look at the dialect themselves.
//!
//! Feed each SSE event of the upstream's body to [`UpstreamDecoder::push`]; it yields the
//! [`UpstreamEvent`]s that event carries, in order:
//! - OpenAI dialect: one event per SSE event. `[DONE]` is [`UpstreamEvent::Done`]; an object with
//!   an `error` is [`UpstreamEvent::Error`]; a usage-only chunk (no choices, a `usage`) is
//!   [`UpstreamEvent::Usage`]; anything else is [`UpstreamEvent::Chunk`]. A chunk's own
//!   `finish_reason` and `usage` stay in the chunk (the meter reads them from it). By default the
//!   chunk is borrowed: its original bytes, forwardable as they are, and the one borrowed parse of
//!   them ([`ChunkView`]); [`UpstreamDecoder::with_values`] parses it into a `Value` instead, for
//!   a relay that needs the whole object anyway.
//! - Anthropic dialect: each event goes through [`StreamTranslator`]; its chat chunks come out as
//!   [`Chunk::Typed`] (written straight to bytes, no `Value` per chunk); `message_delta` also yields [`UpstreamEvent::Finish`] and the final,
//!   cumulative [`UpstreamEvent::Usage`] (the usage `message_start` gives is partial and is not
//!   reported on its own); `message_stop` ends with [`UpstreamEvent::Done`], an `error` event with
//!   [`UpstreamEvent::Error`].
//! - Gemini dialect: each `data:` object goes through [`gemini::StreamTranslator`]; its chunks
//!   come out as [`Chunk::Translated`]; the event with the last `finishReason` also yields
//!   [`UpstreamEvent::Finish`], the cumulative [`UpstreamEvent::Usage`] and, after its chunks,
//!   [`UpstreamEvent::Done`] (Gemini sends no end marker); an `error` object is
//!   [`UpstreamEvent::Error`].
//! - Responses dialect (an OpenAI upstream's own `/responses` stream, passed through natively):
//!   `responses.rs` reads each event for the meter: deltas as [`Chunk::Typed`] chunks, and at
//!   `response.completed`/`response.incomplete` the [`UpstreamEvent::Finish`], the
//!   [`UpstreamEvent::Usage`] of `response.usage` and [`UpstreamEvent::Done`];
//!   `response.failed` is [`UpstreamEvent::Error`] (in the words of the `error` event before it).
//!   The relay forwards the events' raw bytes itself.
//!
//! Nothing follows `Done` or `Error`. Data that is not an event of the dialect is [`Malformed`].

use std::borrow::Cow;

use serde_json::Value;

use crate::anthropic::{self, StreamTranslator};
use crate::chat_chunk::ChatChunk;
use crate::finish::FinishReason;
use crate::gemini;
use crate::openai::ChunkView;
use crate::sse;
use crate::usage::Usage;

/// The upstream's dialect, as far as its stream is concerned (DeepSeek streams OpenAI's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    OpenAi,
    Anthropic,
    Gemini,
    /// OpenAI's Responses API events (`/responses`), read for metering only.
    Responses,
}

/// What translated chunks are stamped with (unused for the OpenAI dialect).
pub use crate::chat_chunk::Stamp;

/// One thing the upstream said.
#[derive(Debug)]
pub enum UpstreamEvent<'e> {
    /// A chat chunk for the client.
    Chunk(Chunk<'e>),
    /// The usage the upstream reported outside any chunk with choices. `usage` is `None` when the
    /// object does not read as usage. `chunk` is the chunk that carries it, for a relay that
    /// re-sends it with the cost: the upstream's own usage-only chunk, or for a translated
    /// stream a `choices: []` chunk with the stamp and the usage in OpenAI's shape.
    Usage {
        usage: Option<Usage>,
        chunk: Chunk<'e>,
    },
    /// Why the answer ended, said before the last chunk (Anthropic's `message_delta`). In the
    /// OpenAI dialect the reason is in the chunk itself.
    Finish(FinishReason),
    /// The upstream's own error event.
    Error(UpstreamProblem),
    /// The stream ended normally.
    Done,
}

/// A chat chunk.
#[derive(Debug)]
pub enum Chunk<'e> {
    /// The upstream's own chunk: `data` is forwardable byte for byte, `view` is its one parse.
    Borrowed { data: &'e [u8], view: ChunkView<'e> },
    /// The upstream's own chunk, parsed (a decoder made [`UpstreamDecoder::with_values`]).
    Upstream(Value),
    /// A chunk translated from another dialect, carrying the decoder's [`Stamp`].
    Translated(Value),
    /// A chunk translated from another dialect (Anthropic), typed: the hot path writes it with
    /// [`Chunk::write_json`] and meters it with [`ChatChunk::for_each_text`], no `Value` built.
    Typed(ChatChunk),
}

impl Chunk<'_> {
    /// The chunk as a JSON value (parsed here for a borrowed chunk; `Null` if it does not parse).
    pub fn value(&self) -> Cow<'_, Value> {
        match self {
            Chunk::Borrowed { data, .. } => {
                Cow::Owned(serde_json::from_slice(data).unwrap_or(Value::Null))
            }
            Chunk::Upstream(v) | Chunk::Translated(v) => Cow::Borrowed(v),
            Chunk::Typed(c) => Cow::Owned(c.to_value()),
        }
    }

    /// The chunk as an owned JSON value.
    pub fn into_value(self) -> Value {
        match self {
            Chunk::Borrowed { data, .. } => serde_json::from_slice(data).unwrap_or(Value::Null),
            Chunk::Upstream(v) | Chunk::Translated(v) => v,
            Chunk::Typed(c) => c.to_value(),
        }
    }

    /// Appends the chunk's JSON to `out`, as it goes on the wire after `data: `: a borrowed
    /// chunk's own bytes, the others serialised.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        match self {
            Chunk::Borrowed { data, .. } => out.extend_from_slice(data),
            Chunk::Upstream(v) | Chunk::Translated(v) => {
                // Serialising a `Value` into a Vec cannot fail (no IO, string keys only).
                if serde_json::to_writer(&mut *out, v).is_err() {
                    out.extend_from_slice(b"null");
                }
            }
            Chunk::Typed(c) => c.write_json(out),
        }
    }

    /// The model the upstream named in its own chunk (`None` for a translated chunk, which
    /// carries the requested name).
    pub fn upstream_model(&self) -> Option<&str> {
        match self {
            Chunk::Borrowed { view, .. } => view.model.as_deref(),
            Chunk::Upstream(v) => v.get("model").and_then(Value::as_str),
            Chunk::Translated(_) | Chunk::Typed(_) => None,
        }
    }

    /// The first finish reason in the chunk, as the upstream spelled it.
    pub fn finish_reason(&self) -> Option<&str> {
        match self {
            Chunk::Borrowed { view, .. } => view.finish_reason(),
            Chunk::Upstream(v) | Chunk::Translated(v) => v
                .get("choices")
                .and_then(Value::as_array)?
                .iter()
                .find_map(|c| c.get("finish_reason").and_then(Value::as_str)),
            Chunk::Typed(c) => c.finish_reason.map(FinishReason::as_openai),
        }
    }
}

/// What an upstream's own error event said, in terms any relay can pass on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamProblem {
    pub message: String,
    /// The upstream reported a rate limit.
    pub rate_limited: bool,
}

impl UpstreamProblem {
    /// The message when the upstream gave none.
    pub const NO_MESSAGE: &'static str = "The upstream reported an error.";

    /// From an OpenAI error object (`{"message", "type", "code"}`, possibly nested in `error`,
    /// or a bare string).
    pub fn from_openai(error: &Value) -> UpstreamProblem {
        let inner = error
            .get("error")
            .filter(|e| e.is_object())
            .unwrap_or(error);
        let text = |k: &str| inner.get(k).and_then(Value::as_str);
        UpstreamProblem {
            message: text("message")
                .or_else(|| error.as_str())
                .unwrap_or(Self::NO_MESSAGE)
                .to_owned(),
            rate_limited: text("type") == Some("rate_limit_error")
                || text("code") == Some("rate_limit_exceeded"),
        }
    }

    /// From a Gemini error object.
    pub fn from_gemini(error: &gemini::GeminiError) -> UpstreamProblem {
        UpstreamProblem {
            message: if error.message.is_empty() {
                Self::NO_MESSAGE.to_owned()
            } else {
                error.message.clone()
            },
            rate_limited: error.rate_limited(),
        }
    }

    /// From an Anthropic `error` event (its message has credentials masked already).
    pub fn from_anthropic(error: &anthropic::UpstreamError) -> UpstreamProblem {
        UpstreamProblem {
            message: error.message.clone(),
            rate_limited: error.kind == "rate_limit_error",
        }
    }
}

/// The upstream sent something that is not an event of its dialect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Malformed;

impl std::fmt::Display for Malformed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the upstream sent an event that is not valid in its dialect")
    }
}

impl std::error::Error for Malformed {}

/// Turns one upstream's SSE events into [`UpstreamEvent`]s (see the module documentation).
pub struct UpstreamDecoder {
    /// Set for the Anthropic dialect.
    translator: Option<Box<StreamTranslator>>,
    /// Set for the Gemini dialect.
    gemini: Option<Box<gemini::StreamTranslator>>,
    /// Set for the Responses dialect.
    responses: Option<Box<responses::ResponsesReader>>,
    /// OpenAI chunks are parsed into values rather than borrowed.
    values: bool,
    /// OpenAI chunks that do not read as a [`ChunkView`] are parsed into values rather than
    /// refused.
    value_fallback: bool,
    /// The events of one Anthropic event, reused from one event to the next.
    queue: Vec<UpstreamEvent<'static>>,
    finish_sent: bool,
    ended: bool,
}

impl UpstreamDecoder {
    /// A decoder for `dialect`; translated chunks carry `stamp`.
    pub fn new(dialect: Dialect, stamp: Stamp) -> UpstreamDecoder {
        let gemini = (dialect == Dialect::Gemini).then(|| {
            Box::new(gemini::StreamTranslator::new(
                stamp.id.clone(),
                stamp.model.clone(),
                stamp.created,
            ))
        });
        let responses = (dialect == Dialect::Responses)
            .then(|| Box::new(responses::ResponsesReader::new(stamp.clone())));
        let translator = (dialect == Dialect::Anthropic)
            .then(|| Box::new(StreamTranslator::new(stamp.id, stamp.model, stamp.created)));
        UpstreamDecoder {
            translator,
            gemini,
            responses,
            values: false,
            value_fallback: false,
            queue: Vec::new(),
            finish_sent: false,
            ended: false,
        }
    }

    /// OpenAI-dialect chunks come out as [`Chunk::Upstream`] values (one full parse each)
    /// instead of borrowed views.
    pub fn with_values(mut self) -> UpstreamDecoder {
        self.values = true;
        self
    }

    /// OpenAI-dialect chunks are borrowed where they read as a [`ChunkView`], and come out as
    /// [`Chunk::Upstream`] values where they do not (a field of an unexpected type), as any JSON
    /// object does for [`Self::with_values`]: for a relay that must read every chunk the values
    /// decoder reads, at the borrowed decoder's cost.
    pub fn with_value_fallback(mut self) -> UpstreamDecoder {
        self.value_fallback = true;
        self
    }

    /// The events one SSE event carries, in order. After `Done` or `Error` nothing more is
    /// yielded, whatever is pushed.
    pub fn push<'d, 'e>(&'d mut self, event: &'e sse::Event) -> Result<Events<'d, 'e>, Malformed> {
        self.queue.clear();
        let first = if self.ended {
            None
        } else if self.translator.is_some() {
            self.push_anthropic(event)?;
            None
        } else if self.gemini.is_some() {
            self.push_gemini(event)?;
            None
        } else if let Some(r) = self.responses.as_mut() {
            self.ended = r.push(&event.data, &mut self.queue)?;
            None
        } else {
            let e = self.push_openai(event)?;
            self.ended = matches!(e, UpstreamEvent::Done | UpstreamEvent::Error(_));
            Some(e)
        };
        Ok(Events {
            first,
            rest: self.queue.drain(..),
        })
    }

    fn push_openai<'e>(&self, event: &'e sse::Event) -> Result<UpstreamEvent<'e>, Malformed> {
        if event.is_done() {
            return Ok(UpstreamEvent::Done);
        }
        let data: &'e [u8] = &event.data;
        if self.values {
            return openai_value(data);
        }
        let Some(view) = ChunkView::parse(data) else {
            return if self.value_fallback {
                openai_value(data)
            } else {
                Err(Malformed)
            };
        };
        if let Some(error) = view.error {
            let error: Value = serde_json::from_str(error.get()).unwrap_or(Value::Null);
            return Ok(UpstreamEvent::Error(UpstreamProblem::from_openai(&error)));
        }
        Ok(match view.usage {
            Some(u) if view.choices.is_empty() => UpstreamEvent::Usage {
                usage: serde_json::from_str::<Value>(u.get())
                    .ok()
                    .and_then(|u| Usage::from_openai(&u)),
                chunk: Chunk::Borrowed { data, view },
            },
            _ => UpstreamEvent::Chunk(Chunk::Borrowed { data, view }),
        })
    }

    fn push_anthropic(&mut self, event: &sse::Event) -> Result<(), Malformed> {
        let Some(t) = self.translator.as_mut() else {
            return Ok(());
        };
        let data = std::str::from_utf8(&event.data).map_err(|_| Malformed)?;
        t.push(event.name_str(), data).map_err(|_| Malformed)?;
        if let Some(err) = t.error() {
            self.queue
                .push(UpstreamEvent::Error(UpstreamProblem::from_anthropic(err)));
            self.ended = true;
            return Ok(());
        }
        if !self.finish_sent {
            if let Some(reason) = t.stop_reason().map(anthropic::finish_reason) {
                self.finish_sent = true;
                self.queue.push(UpstreamEvent::Finish(reason));
                if let (Some(u), Some(chunk)) = (t.usage(), t.usage_chunk()) {
                    self.queue.push(UpstreamEvent::Usage {
                        usage: Some(billed(&u)),
                        chunk: Chunk::Translated(chunk),
                    });
                }
            }
        }
        self.queue.extend(
            t.drain_chunks()
                .map(|c| UpstreamEvent::Chunk(Chunk::Typed(c))),
        );
        if t.is_done() {
            self.queue.push(UpstreamEvent::Done);
            self.ended = true;
        }
        Ok(())
    }
}

impl UpstreamDecoder {
    fn push_gemini(&mut self, event: &sse::Event) -> Result<(), Malformed> {
        let Some(t) = self.gemini.as_mut() else {
            return Ok(());
        };
        let data = std::str::from_utf8(&event.data).map_err(|_| Malformed)?;
        t.push(data).map_err(|_| Malformed)?;
        if let Some(err) = t.error() {
            self.queue
                .push(UpstreamEvent::Error(UpstreamProblem::from_gemini(err)));
            self.ended = true;
            return Ok(());
        }
        if !self.finish_sent && t.is_done() {
            if let Some(reason) = t.finish_reason() {
                self.finish_sent = true;
                self.queue.push(UpstreamEvent::Finish(reason));
                if let (Some(u), Some(chunk)) = (t.usage(), t.usage_chunk()) {
                    self.queue.push(UpstreamEvent::Usage {
                        usage: Some(u),
                        chunk: Chunk::Translated(chunk),
                    });
                }
            }
        }
        self.queue.extend(
            t.drain()
                .map(|c| UpstreamEvent::Chunk(Chunk::Translated(c))),
        );
        if t.is_done() {
            self.queue.push(UpstreamEvent::Done);
            self.ended = true;
        }
        Ok(())
    }
}

/// An OpenAI-dialect event parsed into a value: any JSON object is a chunk.
fn openai_value<'e>(data: &[u8]) -> Result<UpstreamEvent<'e>, Malformed> {
    let v: Value = match serde_json::from_slice(data) {
        Ok(v @ Value::Object(_)) => v,
        _ => return Err(Malformed),
    };
    if let Some(error) = v.get("error").filter(|e| !e.is_null()) {
        return Ok(UpstreamEvent::Error(UpstreamProblem::from_openai(error)));
    }
    let no_choices = v
        .get("choices")
        .and_then(Value::as_array)
        .is_none_or(|c| c.is_empty());
    Ok(match v.get("usage").filter(|u| !u.is_null()) {
        Some(u) if no_choices => UpstreamEvent::Usage {
            usage: Usage::from_openai(u),
            chunk: Chunk::Upstream(v),
        },
        _ => UpstreamEvent::Chunk(Chunk::Upstream(v)),
    })
}

/// Anthropic's usage as billed (cache reads and writes are part of the prompt).
fn billed(u: &anthropic::Usage) -> Usage {
    Usage {
        prompt_tokens: u.prompt_tokens(),
        completion_tokens: u.completion_tokens(),
        cached_tokens: u.cache_read_tokens,
        cache_write_tokens: u.cache_creation_tokens,
        cache_write_1h_tokens: u.cache_creation_1h_tokens,
        reasoning_tokens: u.thinking_tokens.unwrap_or(0),
    }
}

/// The events of one pushed SSE event (see [`UpstreamDecoder::push`]).
pub struct Events<'d, 'e> {
    first: Option<UpstreamEvent<'e>>,
    rest: std::vec::Drain<'d, UpstreamEvent<'static>>,
}

impl<'e> Iterator for Events<'_, 'e> {
    type Item = UpstreamEvent<'e>;

    fn next(&mut self) -> Option<UpstreamEvent<'e>> {
        self.first.take().or_else(|| self.rest.next())
    }
}

mod responses;

pub use responses::{
    error_event, event_type, response_to_chat_completion, terminal_event_with_cost,
    terminal_with_cost,
};

#[cfg(test)]
mod tests;
