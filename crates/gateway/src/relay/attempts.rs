//! Trying a model's routes in order until one answers: send the request, wait for the first
//! upstream event, and on a retryable failure move to the next route. Failover happens here and
//! only here, always before the first byte reaches the client.

use std::time::Instant;

use bytes::Bytes;
use futures_util::StreamExt;
use serde_json::Value;
use switchyard_wire::openai::{ChatRequest, ChunkView};
use switchyard_wire::sse;
use switchyard_wire::usage::Usage;

use crate::app::Gateway;
use crate::config::{ModelConfig, ProviderKind};
use crate::ledger::EndReason;
use crate::providers::{without_url, UpstreamError};
use crate::relay::chat_stream::ByteStream;
use crate::relay::settlement::{Settled, Settlement};
use crate::relay::{Rejected, RelayError, Served};

/// An upstream stream that has produced its first event (still in `decoder`, not yet consumed).
pub struct UpstreamStream {
    pub bytes: ByteStream,
    pub decoder: sse::Decoder,
    /// The dialect of the events in `bytes`.
    pub dialect: ProviderKind,
    pub idle_timeout: std::time::Duration,
}

/// What a successful attempt produced.
pub enum Opened {
    /// A complete non-streamed answer, as an OpenAI chat completion body.
    Json { body: Bytes, served: Served },
    Stream {
        upstream: UpstreamStream,
        served: Served,
    },
}

/// Tries `model`'s routes for `req`. On success the settlement knows the provider, the served
/// model and the number of attempts; on failure it has been settled at no cost.
pub async fn open(
    gw: &Gateway,
    model: &ModelConfig,
    req: &ChatRequest,
    settlement: &mut Settlement,
    started: Instant,
) -> Result<Opened, RelayError> {
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
                fail_settled(settlement).await;
                return Err(final_error(e));
            }
        };
        if !req.stream {
            match tokio::time::timeout(timeouts.total, resp.bytes()).await {
                Ok(Ok(body)) => return Ok(Opened::Json { body, served }),
                Ok(Err(e)) => last_error = Some(UpstreamError::Body(without_url(&e))),
                Err(_) => last_error = Some(UpstreamError::Timeout),
            }
            continue;
        }
        let mut bytes: ByteStream =
            Box::pin(resp.bytes_stream().map(|r| r.map_err(|e| without_url(&e))));
        let mut decoder = sse::Decoder::new();
        let first_by = started + timeouts.first_token;
        match first_event(&mut bytes, &mut decoder, first_by).await {
            Ok(()) => {
                let upstream = UpstreamStream {
                    bytes,
                    decoder,
                    dialect: provider.kind(),
                    idle_timeout: timeouts.idle,
                };
                return Ok(Opened::Stream { upstream, served });
            }
            Err(e) => {
                tracing::debug!(provider = %served.provider, error = %e, "stream failed before its first event");
                last_error = Some(e);
            }
        }
    }
    fail_settled(settlement).await;
    Err(match last_error {
        Some(e) => final_error(e),
        None => RelayError::UpstreamFailed("no provider is configured for this model".into()),
    })
}

/// A request that failed before anything was delivered is recorded, at no cost.
pub async fn fail_settled(settlement: &mut Settlement) {
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
            RelayError::UpstreamRejected(Box::new(Rejected {
                status,
                message: text("message")
                    .unwrap_or_else(|| format!("The upstream rejected the request ({status}).")),
                param: text("param"),
                code: err.get("code").cloned().unwrap_or(Value::Null),
            }))
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
