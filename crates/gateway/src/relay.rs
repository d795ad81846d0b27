//! One request end to end, as straight-line code: validate, admit, pick the routes, try each until
//! one answers (failing over only before the first byte reaches the client), then stream or return
//! the answer with its cost, and settle the ledger exactly once through the settlement guard.

pub mod chat_stream;
pub mod settlement;
pub mod tokens;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use serde_json::Value;
use switchyard_wire::openai::{normalize_finish_reason, ChatRequest, ChunkView, RequestError};
use switchyard_wire::sse;
use switchyard_wire::usage::Usage;

use crate::app::Gateway;
use crate::auth::Caller;
use crate::ledger::EndReason;
use crate::providers::{without_url, UpstreamError};
use crate::relay::chat_stream::{ByteStream, ChatStream};
use crate::relay::settlement::{Admission, Settled, Settlement};

/// Why a request could not be served. The HTTP edge turns each into its status and body.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("{0}")]
    BadRequest(RequestError),
    #[error("The model '{0}' does not exist or you do not have access to it.")]
    UnknownModel(String),
    #[error("This API key is not allowed to use the model '{0}'.")]
    ModelNotAllowed(String),
    #[error("This API key has insufficient balance for this request. Top up the key and retry.")]
    InsufficientBalance,
    /// The upstream refused the request itself (a 4xx that another route would refuse too).
    #[error("{message}")]
    UpstreamRejected {
        status: u16,
        message: String,
        kind: String,
        param: Option<String>,
        code: Value,
    },
    #[error("Every upstream for this model is rate limited. Retry after the indicated delay.")]
    UpstreamRateLimited { retry_after: Option<Duration> },
    #[error("The upstream did not answer in time.")]
    UpstreamTimeout,
    #[error("Every upstream for this model failed: {0}")]
    UpstreamFailed(String),
}

/// Facts about how a request was served, sent back as response headers.
#[derive(Debug, Clone)]
pub struct Served {
    pub provider: String,
    pub attempts: u32,
}

/// A successful answer.
pub enum ChatReply {
    Json {
        body: Vec<u8>,
        served: Served,
    },
    Stream {
        body: Box<dyn Stream<Item = Bytes> + Send + Unpin>,
        served: Served,
    },
}

/// Serves `POST /chat/completions` for `caller`.
pub async fn chat(
    gw: &Arc<Gateway>,
    caller: Caller,
    request_id: String,
    body: Bytes,
) -> Result<ChatReply, RelayError> {
    let started = Instant::now();
    let req = Arc::new(ChatRequest::parse(&body).map_err(RelayError::BadRequest)?);
    let model = gw
        .config
        .models
        .get(&req.model)
        .ok_or_else(|| RelayError::UnknownModel(req.model.clone()))?
        .clone();
    if let Some(allowed) = &caller.models {
        if !allowed.iter().any(|m| m == &req.model) {
            return Err(RelayError::ModelNotAllowed(req.model.clone()));
        }
    }
    if caller.balance.0 <= 0 {
        return Err(RelayError::InsufficientBalance);
    }
    let mut settlement = Settlement::new(Admission {
        ledger: gw.ledger.clone(),
        request_id,
        key_id: caller.id.clone(),
        requested_model: req.model.clone(),
        prices: model.prices.clone(),
        prompt: req.clone(),
        stream: req.stream,
        started,
    });
    let mut last_error = None;
    for (i, route) in model.routes.iter().enumerate() {
        settlement.tally.attempts = i as u32 + 1;
        let Some(provider) = gw.providers.get(&route.provider) else {
            continue;
        };
        let timeouts = &provider.config.timeouts;
        let served = Served {
            provider: provider.name().to_owned(),
            attempts: i as u32 + 1,
        };
        settlement.tally.provider = Some(served.provider.clone());
        settlement.tally.served_model = Some(route.upstream_model.clone());
        let resp = match provider
            .send(
                &gw.providers.client,
                req.upstream_body(&route.upstream_model),
                req.stream,
            )
            .await
        {
            Ok(resp) => resp,
            Err(e) if e.is_retryable() => {
                tracing::debug!(provider = %served.provider, error = %e, "route failed, trying the next");
                last_error = Some(e);
                continue;
            }
            Err(e) => {
                fail_settled(&mut settlement).await;
                return Err(final_error(e));
            }
        };
        if !req.stream {
            let deadline = timeouts.total;
            let body = match tokio::time::timeout(deadline, resp.bytes()).await {
                Ok(Ok(b)) => b,
                Ok(Err(e)) => {
                    last_error = Some(UpstreamError::Body(without_url(&e)));
                    continue;
                }
                Err(_) => {
                    last_error = Some(UpstreamError::Timeout);
                    continue;
                }
            };
            match complete_json(&body, &mut settlement).await {
                Some(body) => return Ok(ChatReply::Json { body, served }),
                None => {
                    last_error = Some(UpstreamError::Body(
                        "the upstream's answer is not a chat completion".into(),
                    ));
                    continue;
                }
            }
        }
        let mut upstream: ByteStream =
            Box::pin(resp.bytes_stream().map(|r| r.map_err(|e| without_url(&e))));
        let mut decoder = sse::Decoder::new();
        let first_by = started + timeouts.first_token;
        match first_event(&mut upstream, &mut decoder, first_by).await {
            Ok(()) => {
                let stream = ChatStream::new(
                    upstream,
                    decoder,
                    settlement,
                    req.include_usage,
                    gw.config.keep_alive,
                    timeouts.idle,
                );
                return Ok(ChatReply::Stream {
                    body: Box::new(Box::pin(stream.into_body())),
                    served,
                });
            }
            Err(e) => {
                tracing::debug!(provider = %served.provider, error = %e, "stream failed before its first event");
                last_error = Some(e);
            }
        }
    }
    fail_settled(&mut settlement).await;
    Err(match last_error {
        Some(e) => final_error(e),
        None => RelayError::UpstreamFailed("no provider is configured for this model".into()),
    })
}

/// A request that failed before anything was delivered is recorded, at no cost.
async fn fail_settled(settlement: &mut Settlement) {
    let nothing = Settled {
        usage: Usage::default(),
        cost: Default::default(),
        source: crate::ledger::TokenSource::Estimated,
    };
    settlement.settle(EndReason::Error, &nothing).await;
}

/// Reads until the first complete event and checks that it is a real chunk. The event stays in
/// the decoder for the stream to forward.
async fn first_event(
    upstream: &mut ByteStream,
    decoder: &mut sse::Decoder,
    deadline: Instant,
) -> Result<(), UpstreamError> {
    let deadline = tokio::time::Instant::from_std(deadline);
    let mut probe = sse::Decoder::new();
    loop {
        if let Some(event) = probe.next_event() {
            if event.is_done() {
                return Err(UpstreamError::Body(
                    "the stream ended before any chunk".into(),
                ));
            }
            return match ChunkView::parse(&event.data) {
                Some(v) if v.error.is_none() => Ok(()),
                Some(_) => Err(UpstreamError::Body(
                    "the stream began with an error event".into(),
                )),
                None => Err(UpstreamError::Body(
                    "the stream began with a malformed event".into(),
                )),
            };
        }
        match tokio::time::timeout_at(deadline, upstream.next()).await {
            Err(_) => return Err(UpstreamError::Timeout),
            Ok(None) => {
                return Err(UpstreamError::Body(
                    "the stream ended before any chunk".into(),
                ))
            }
            Ok(Some(Err(e))) => return Err(UpstreamError::Body(e)),
            Ok(Some(Ok(bytes))) => {
                decoder.push(&bytes);
                probe.push(&bytes);
            }
        }
    }
}

/// A non-streamed answer: adds `usage.cost`, settles, and returns the body to send.
async fn complete_json(body: &[u8], settlement: &mut Settlement) -> Option<Vec<u8>> {
    let mut v: Value = serde_json::from_slice(body).ok()?;
    if v.get("error").is_some() || !v.get("choices").is_some_and(Value::is_array) {
        return None;
    }
    if let Some(model) = v.get("model").and_then(Value::as_str) {
        settlement.tally.served_model = Some(model.to_owned());
    }
    let mut end = EndReason::Stop;
    for c in v["choices"].as_array_mut().into_iter().flatten() {
        if let Some(reason) = c
            .get("finish_reason")
            .and_then(Value::as_str)
            .map(str::to_owned)
        {
            let fixed = normalize_finish_reason(&reason);
            if let Some(fixed) = fixed {
                c["finish_reason"] = Value::String(fixed.to_owned());
            }
            end = EndReason::from_finish(fixed.unwrap_or(&reason));
        }
        let m = &c["message"];
        for key in ["content", "reasoning_content"] {
            if let Some(t) = m.get(key).and_then(Value::as_str) {
                settlement.tally.delivered.push_str(t);
            }
        }
        if let Some(calls) = m.get("tool_calls") {
            settlement.tally.delivered.push_str(&calls.to_string());
        }
    }
    settlement.tally.reported = v.get("usage").and_then(Usage::from_openai);
    settlement.tally.first_token_at = Some(Instant::now());
    let settled = settlement.measure().await;
    let cost = settled.cost.total().to_string();
    match v.get_mut("usage") {
        Some(u) if u.is_object() => settled.usage.merge_into(u, Some(&cost)),
        _ => v["usage"] = settled.usage.to_openai(Some(&cost)),
    }
    settlement.settle(end, &settled).await;
    serde_json::to_vec(&v).ok()
}

/// The error the client sees when no route could serve the request.
fn final_error(e: UpstreamError) -> RelayError {
    match e {
        UpstreamError::Timeout => RelayError::UpstreamTimeout,
        UpstreamError::Status {
            status: 429,
            retry_after,
            ..
        } => RelayError::UpstreamRateLimited { retry_after },
        UpstreamError::Status { status, body, .. }
            if (400..500).contains(&status) && !matches!(status, 401 | 403 | 408 | 409) =>
        {
            let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            let err = v.get("error").unwrap_or(&v);
            let text = |k: &str| err.get(k).and_then(Value::as_str).map(str::to_owned);
            RelayError::UpstreamRejected {
                status,
                message: text("message")
                    .unwrap_or_else(|| format!("The upstream rejected the request ({status}).")),
                kind: text("type").unwrap_or_else(|| "invalid_request_error".into()),
                param: text("param"),
                code: err.get("code").cloned().unwrap_or(Value::Null),
            }
        }
        UpstreamError::Status { status, .. } if status == 401 || status == 403 => {
            RelayError::UpstreamFailed("the upstream refused the gateway's credentials".into())
        }
        UpstreamError::Status { status, .. } => {
            RelayError::UpstreamFailed(format!("the upstream answered {status}"))
        }
        other => RelayError::UpstreamFailed(other.to_string()),
    }
}

/// Prompt text for token estimates, derived from the request on demand.
impl tokens::PromptSource for ChatRequest {
    fn prompt(&self) -> tokens::Prompt {
        tokens::Prompt {
            text: self.prompt_text(),
            messages: self.message_count(),
        }
    }
}
