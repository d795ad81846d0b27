//! `POST /v1/completions` (legacy text completions) served over chat: the request becomes a chat
//! request (`switchyard_wire::completions`: the prompt as one user message, `max_tokens` 16 when
//! absent) and goes through the chat relay unchanged (admission and holds, limits, attempts with
//! failover, early commit, cancellation, settlement exactly once; the request log says
//! `completions[.stream]`), for every route dialect (OpenAI-compatible and Anthropic alike). Its
//! answer is rewritten on the way out: the body as a `text_completion`, each streamed chunk as a
//! `text_completion` chunk; `usage` with `cost`, `[DONE]` and the cost comment pass as chat
//! writes them.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use futures_util::Stream;
use serde_json::Value;
use switchyard_wire::completions::{self, CompletionsRequest};
use switchyard_wire::openai::ChatRequest;

use crate::app::Gateway;
use crate::auth::Caller;
use crate::relay::{ChatReply, RelayError, RequestIds};

/// Serves `POST /completions` for `caller`.
pub async fn create(
    gw: &Arc<Gateway>,
    caller: Caller,
    ids: RequestIds,
    body: Bytes,
) -> Result<ChatReply, RelayError> {
    let started = Instant::now();
    let req = CompletionsRequest::parse(&body).map_err(RelayError::BadRequest)?;
    let chat = Arc::new(ChatRequest::parse(&req.chat_body).map_err(RelayError::BadRequest)?);
    let echo = req.echo;
    Ok(
        match super::chat_parsed(gw, caller, ids, chat, started, true, None).await? {
            ChatReply::Json { body, served } => ChatReply::Json {
                body: match serde_json::from_slice::<Value>(&body) {
                    Ok(v) => serde_json::to_vec(&completions::from_chat(&v, echo.as_deref()))
                        .unwrap_or(body),
                    Err(_) => body,
                },
                served,
            },
            ChatReply::Stream { body, served } => ChatReply::Stream {
                body: Box::new(TextChunks::new(body, echo)),
                served,
            },
            ChatReply::Committed { body, rate } => ChatReply::Committed {
                body: Box::new(TextChunks::new(body, echo)),
                rate,
            },
        },
    )
}

/// The chat relay's SSE body with each `data:` chunk rewritten as a `text_completion` chunk
/// (`completions::write_chunk`: read borrowed, written straight into one reused buffer);
/// comments, `[DONE]` and error events pass unchanged. An event split across writes is kept
/// until its end arrives.
struct TextChunks {
    inner: Box<dyn Stream<Item = Bytes> + Send + Unpin>,
    pending: BytesMut,
    out: BytesMut,
    echo: Option<String>,
}

impl TextChunks {
    fn new(inner: Box<dyn Stream<Item = Bytes> + Send + Unpin>, echo: Option<String>) -> Self {
        Self {
            inner,
            pending: BytesMut::new(),
            out: BytesMut::new(),
            echo,
        }
    }

    /// The complete events in `pending`, rewritten into `out`; the unfinished rest stays.
    fn rewrite(&mut self) -> Bytes {
        while let Some(end) = self.pending.windows(2).position(|w| w == b"\n\n") {
            let event = self.pending.split_to(end + 2);
            let chunk = event
                .strip_prefix(b"data: {")
                .map(|_| &event[6..end])
                .is_some_and(|data| {
                    completions::write_chunk(data, self.echo.as_deref(), &mut self.out)
                });
            if !chunk {
                self.out.extend_from_slice(&event);
            }
        }
        self.out.split().freeze()
    }
}

impl Stream for TextChunks {
    type Item = Bytes;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Bytes>> {
        loop {
            match Pin::new(&mut self.inner).poll_next(cx) {
                Poll::Ready(Some(bytes)) => {
                    self.pending.extend_from_slice(&bytes);
                    let out = self.rewrite();
                    if !out.is_empty() {
                        return Poll::Ready(Some(out));
                    }
                }
                Poll::Ready(None) if !self.pending.is_empty() => {
                    let rest = self.pending.split().freeze();
                    return Poll::Ready(Some(rest));
                }
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}
