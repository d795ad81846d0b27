//! Google's Gemini API (`POST /v1beta/models/{model}:generateContent`, `:streamGenerateContent`,
//! `:countTokens`) on the same relay as chat: the request is translated to chat
//! (`switchyard_wire::gemini::inbound`), admitted, limited, failed over and settled exactly as
//! `POST /chat/completions` (whatever the route's dialect), and the chat answer is turned back into
//! a `GenerateContentResponse`, or the chat stream into Gemini's (`data:` events with `alt=sse`,
//! else one JSON array). A Gemini-dialect route is sent the client's body as it came, and when
//! one serves the request (`Native`, known once `attempts::open` chose it) its answer passes
//! through: its own body, or its own events, with `usageMetadata.cost`. Either way the body ends
//! only once the entry is durable (the chat relay writes `[DONE]`, or ends the passthrough, only
//! then). No SSE comment reaches the client (keep-alives, the cost comment): Google's streams
//! have none, and the SDKs that match `^data: ` at the head of their buffer would stop at one.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use futures_util::Stream;
use serde_json::Value;
use switchyard_wire::gemini::inbound::{
    completion_to_gemini, gemini_to_chat, ChatPlan, Framing, GeminiStream,
};
use switchyard_wire::openai::{ChatRequest, NativeBody, NativeDialect, RequestError};
use switchyard_wire::sse;

use crate::app::Gateway;
use crate::auth::{new_id, Caller};
use crate::relay::tokens::{self, PromptSource};
use crate::relay::{admission, chat_for, ChatReply, Native, RelayError, RequestIds};

fn parse(body: &[u8]) -> Result<Value, RelayError> {
    serde_json::from_slice(body).map_err(|e| {
        RelayError::BadRequest(RequestError::new(
            "body",
            format!("Invalid JSON payload received ({e})."),
        ))
    })
}

fn plan(raw: &Value, model: &str, stream: bool) -> Result<ChatPlan, RelayError> {
    gemini_to_chat(raw, model, stream)
        .map_err(|e| RelayError::BadRequest(RequestError::new(e.param, e.message)))
}

/// Serves `generateContent` (`framing` `None`) or `streamGenerateContent` for `model`. What the
/// translation to chat left out (Google's own tools, `cachedContent`) is reported by the relay
/// when a route other than Gemini's serves the request (`Served::dropped`).
pub async fn create(
    gw: &Arc<Gateway>,
    caller: Caller,
    ids: RequestIds,
    model: &str,
    framing: Option<Framing>,
    body: Bytes,
) -> Result<ChatReply, RelayError> {
    let raw = parse(&body)?;
    let plan = plan(&raw, model, framing.is_some())?;
    let chat_body = Bytes::from(serde_json::to_vec(&plan.body).unwrap_or_default());
    let id = new_id("", 22);
    let native = Native::default();
    let raw = NativeBody {
        dialect: NativeDialect::Gemini,
        body: raw,
        dropped: plan.dropped.clone(),
    };
    let reply = chat_for(gw, caller, ids, chat_body, Some((raw, native.clone()))).await?;
    let stream = |body| {
        let events = GeminiStream::new(
            framing.unwrap_or(Framing::Sse),
            plan.model.clone(),
            id.clone(),
            plan.include_thoughts,
        );
        let body: Box<dyn Stream<Item = Bytes> + Send + Unpin> =
            Box::new(GeminiBody::new(body, events, native.clone()));
        body
    };
    let reply = match reply {
        ChatReply::Json { body, served } if native.is_set() => ChatReply::Json { body, served },
        ChatReply::Json { body, served } => {
            let completion: Value = serde_json::from_slice(&body).map_err(|_| {
                RelayError::UpstreamFailed("the answer is not a chat completion".into())
            })?;
            let answer = completion_to_gemini(&completion, &plan.model, &id, plan.include_thoughts);
            ChatReply::Json {
                body: serde_json::to_vec(&answer).unwrap_or_default(),
                served,
            }
        }
        ChatReply::Stream { body, served } => ChatReply::Stream {
            body: stream(body),
            served,
        },
        ChatReply::Committed { body, rate } => ChatReply::Committed {
            body: stream(body),
            rate,
        },
    };
    Ok(reply)
}

/// Serves `countTokens`: `{"totalTokens": n}`, the tokenizer's estimate of the request's prompt
/// as translated to chat. The body is a request's `contents` (and the rest of it), or
/// `{"generateContentRequest": {…}}`. The model must exist and be allowed for the key.
pub async fn count_tokens(
    gw: &Arc<Gateway>,
    caller: &Caller,
    model: &str,
    body: Bytes,
) -> Result<Value, RelayError> {
    let mut raw = parse(&body)?;
    for key in ["generateContentRequest", "generate_content_request"] {
        if let Some(inner) = raw.get_mut(key).filter(|r| r.is_object()) {
            raw = inner.take();
            break;
        }
    }
    let plan = plan(&raw, model, false)?;
    admission::model_for(gw, caller, &plan.model)?;
    let chat_body = serde_json::to_vec(&plan.body).unwrap_or_default();
    let req = ChatRequest::parse(&chat_body).map_err(RelayError::BadRequest)?;
    let prompt = req.prompt();
    let model = plan.model.clone();
    let n = tokio::task::spawn_blocking(move || tokens::prompt_tokens(&model, &prompt))
        .await
        .map_err(|_| RelayError::UpstreamFailed("the token count failed".into()))?;
    Ok(serde_json::json!({ "totalTokens": n }))
}

/// The chat relay's SSE body as Gemini's stream; once `native` is set, the relay's events are
/// the upstream's own and pass as they came (re-framed as array elements without `alt=sse`).
/// Comments (keep-alives, the cost comment) are dropped either way.
struct GeminiBody {
    inner: Box<dyn Stream<Item = Bytes> + Send + Unpin>,
    native: Native,
    frames: sse::Decoder,
    out: BytesMut,
    events: GeminiStream,
    sse: bool,
    finished: bool,
}

impl GeminiBody {
    fn new(
        inner: Box<dyn Stream<Item = Bytes> + Send + Unpin>,
        events: GeminiStream,
        native: Native,
    ) -> GeminiBody {
        GeminiBody {
            inner,
            native,
            frames: sse::Decoder::new(),
            out: BytesMut::with_capacity(1024),
            sse: events.framing() == Framing::Sse,
            events,
            finished: false,
        }
    }

    /// Every whole event of the chat stream (or of the passthrough) so far.
    fn translate(&mut self) {
        let native = self.native.is_set();
        while let Some(event) = self.frames.next_event() {
            if self.events.is_ended() {
                continue;
            }
            if native {
                if self.sse {
                    self.out.extend_from_slice(&event.raw);
                } else {
                    self.events.raw_element(&event.data, &mut self.out);
                }
            } else if event.is_done() {
                self.events.finish(&mut self.out);
            } else {
                self.events.chunk_data(&event.data, &mut self.out);
            }
        }
    }
}

impl Stream for GeminiBody {
    type Item = Bytes;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Bytes>> {
        let this = &mut *self;
        loop {
            if !this.out.is_empty() {
                return Poll::Ready(Some(this.out.split().freeze()));
            }
            if this.finished {
                return Poll::Ready(None);
            }
            match Pin::new(&mut this.inner).poll_next(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(bytes)) => {
                    this.frames.push(&bytes);
                    this.translate();
                }
                Poll::Ready(None) => {
                    this.finished = true;
                    if this.native.is_set() {
                        this.events.end(&mut this.out);
                    } else if !this.events.is_ended() {
                        let e = serde_json::json!({"type": "api_error",
                            "message": "The stream ended before its end."});
                        this.events.error(&e, &mut this.out);
                    }
                }
            }
        }
    }
}
