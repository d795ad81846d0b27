//! The Anthropic Messages API (`POST /v1/messages`, `POST /v1/messages/count_tokens`) on the
//! same relay as chat: the request is translated to chat (`switchyard_wire::anthropic::inbound`),
//! admitted, limited, failed over and settled exactly as `POST /chat/completions` (whatever the
//! route's dialect), and the chat answer is turned back into a Messages object, or the chat stream
//! into the Messages event sequence (keep-alive comments become `ping`, a chat error event an
//! Anthropic `event: error`). An Anthropic-dialect route is sent the client's request as it came
//! (model name replaced: cache_control and every block kept), and when one serves the request
//! (known only once `attempts::open` chose it: failover may change the dialect) its answer passes
//! through: the upstream's own Message object, or its own events, as it wrote them, with
//! `usage.cost` added (`ChatStream::passthrough`, `relay::complete_json`); the chat decoding then
//! only feeds the meter. The stream ends (`message_stop`) only after the entry is durable, because
//! the chat relay writes `[DONE]`, or the passthrough its `message_stop`, only then.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use futures_util::Stream;
use serde_json::Value;
use switchyard_wire::anthropic::inbound::{
    completion_to_message, messages_to_chat, ChatPlan, MessagesStream,
};
use switchyard_wire::openai::{ChatRequest, NativeBody, NativeDialect, RequestError};

use crate::app::Gateway;
use crate::auth::{new_id, Caller};
use crate::relay::tokens::{self, PromptSource};
use crate::relay::{admission, chat_for, ChatReply, Native, RelayError, RequestIds};

fn plan(body: &[u8], count_only: bool) -> Result<(ChatPlan, Value), RelayError> {
    let mut raw: Value = serde_json::from_slice(body).map_err(|e| {
        RelayError::BadRequest(RequestError::new(
            "body",
            format!("The request body is not valid JSON ({e})."),
        ))
    })?;
    if count_only {
        // count_tokens takes no max_tokens and never streams.
        if let Some(o) = raw.as_object_mut() {
            o.insert("max_tokens".into(), Value::from(1));
            o.remove("stream");
        }
    }
    let plan = messages_to_chat(&raw)
        .map_err(|e| RelayError::BadRequest(RequestError::new(e.param, e.message)))?;
    Ok((plan, raw))
}

/// Serves `POST /messages` for `caller`: a Messages object, or a stream of Messages events.
pub async fn create(
    gw: &Arc<Gateway>,
    caller: Caller,
    ids: RequestIds,
    body: Bytes,
) -> Result<ChatReply, RelayError> {
    let (plan, raw) = plan(&body, false)?;
    let chat_body = Bytes::from(serde_json::to_vec(&plan.body).unwrap_or_default());
    let id = new_id("msg_", 24);
    let native = Native::default();
    let raw = NativeBody {
        dialect: NativeDialect::Messages,
        body: raw,
        dropped: plan.dropped.clone(),
    };
    match chat_for(gw, caller, ids, chat_body, Some((raw, native.clone()))).await? {
        ChatReply::Json { body, served } if native.is_set() => Ok(ChatReply::Json { body, served }),
        ChatReply::Json { body, served } => {
            let completion: Value = serde_json::from_slice(&body).map_err(|_| {
                RelayError::UpstreamFailed("the answer is not a chat completion".into())
            })?;
            let message = completion_to_message(&completion, &id, &plan.model);
            Ok(ChatReply::Json {
                body: serde_json::to_vec(&message).unwrap_or_default(),
                served,
            })
        }
        ChatReply::Stream { body, served } => Ok(ChatReply::Stream {
            body: Box::new(MessagesBody::new(body, id, plan.model, native)),
            served,
        }),
        ChatReply::Committed { body, rate } => Ok(ChatReply::Committed {
            body: Box::new(MessagesBody::new(body, id, plan.model, native)),
            rate,
        }),
    }
}

/// Serves `POST /messages/count_tokens`: the tokenizer's estimate of the request's prompt as
/// translated to chat (system, turns, tool results; tool schemas are not counted by the chat
/// estimate). The model must exist and be allowed for the key.
pub async fn count_tokens(
    gw: &Arc<Gateway>,
    caller: &Caller,
    body: Bytes,
) -> Result<Value, RelayError> {
    let (plan, _) = plan(&body, true)?;
    admission::model_for(gw, caller, &plan.model)?;
    let chat_body = serde_json::to_vec(&plan.body).unwrap_or_default();
    let req = ChatRequest::parse(&chat_body).map_err(RelayError::BadRequest)?;
    let prompt = req.prompt();
    let model = plan.model.clone();
    let n = tokio::task::spawn_blocking(move || tokens::prompt_tokens(&model, &prompt))
        .await
        .map_err(|_| RelayError::UpstreamFailed("the token count failed".into()))?;
    Ok(serde_json::json!({ "input_tokens": n }))
}

/// The chat relay's SSE body as the Messages event stream; once `native` is set, the relay's
/// frames are the upstream's own events and pass as they are. Keep-alive comments (an early
/// commit's, before the serving route is known) become `ping` events, never a `message_start`
/// of our own, which a passthrough would then repeat.
struct MessagesBody {
    inner: Box<dyn Stream<Item = Bytes> + Send + Unpin>,
    native: Native,
    /// Bytes of the chat stream not yet ending in a whole frame.
    pending: BytesMut,
    /// `pending[..scanned]` holds no frame end: the next search resumes there.
    scanned: usize,
    out: BytesMut,
    events: MessagesStream,
    finished: bool,
}

impl MessagesBody {
    fn new(
        inner: Box<dyn Stream<Item = Bytes> + Send + Unpin>,
        id: String,
        model: String,
        native: Native,
    ) -> MessagesBody {
        MessagesBody {
            inner,
            native,
            pending: BytesMut::new(),
            scanned: 0,
            out: BytesMut::with_capacity(1024),
            events: MessagesStream::new(id, model),
            finished: false,
        }
    }

    /// Translates every whole frame in `pending` (the chat relay writes `data: …\n\n` and
    /// `: comment\n\n` frames only). The search for a frame's end resumes where the last one
    /// stopped; each chunk is read through its borrowed view.
    fn translate(&mut self) {
        loop {
            // One byte back: the "\n\n" may straddle two reads.
            let from = self.scanned.saturating_sub(1);
            let Some(end) = frame_end(&self.pending[from..]).map(|at| from + at) else {
                self.scanned = self.pending.len();
                return;
            };
            self.scanned = 0;
            let frame = self.pending.split_to(end + 2);
            if self.events.is_ended() {
                continue;
            }
            let frame = &frame[..end];
            if frame.starts_with(b":") {
                if frame.starts_with(b": keep-alive") {
                    MessagesStream::ping(&mut self.out);
                }
                continue;
            }
            let Some(data) = frame.strip_prefix(b"data: ") else {
                continue;
            };
            if data == b"[DONE]" {
                self.events.finish(&mut self.out);
                continue;
            }
            self.events.chunk_data(data, &mut self.out);
        }
    }
}

/// Where the first `\n\n` in `bytes` starts.
fn frame_end(bytes: &[u8]) -> Option<usize> {
    let mut from = 0;
    while let Some(at) = bytes[from..].iter().position(|&b| b == b'\n') {
        let i = from + at;
        match bytes.get(i + 1) {
            Some(b'\n') => return Some(i),
            Some(_) => from = i + 1,
            None => return None,
        }
    }
    None
}

impl Stream for MessagesBody {
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
                Poll::Ready(Some(bytes)) if this.native.is_set() => {
                    return Poll::Ready(Some(bytes));
                }
                Poll::Ready(Some(bytes)) => {
                    this.pending.extend_from_slice(&bytes);
                    this.translate();
                }
                Poll::Ready(None) => {
                    this.finished = true;
                    if !this.events.is_ended() && !this.native.is_set() {
                        let e = serde_json::json!({"type": "api_error",
                            "message": "The stream ended before its end."});
                        this.events.error(&e, &mut this.out);
                    }
                }
            }
        }
    }
}
