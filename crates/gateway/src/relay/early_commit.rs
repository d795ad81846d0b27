//! Committing a streamed answer before its first upstream event, so that a long prefill (a
//! reasoning model thinking for a minute) does not look like a dead connection to nginx or a load
//! balancer. Normally a stream's headers wait for the first upstream event, so failover stays
//! invisible and every error is an HTTP status. With `commit_after` set (`[routing]
//! commit_after_ms`, or the model's own), a streamed request with no first event by then commits:
//! 200 and the SSE headers go out with a `: keep-alive` comment at once, then one every keep-alive
//! interval until the first event.
//!
//! Behind the comments `attempts::open` goes on as before: a dead first route still fails over,
//! invisibly, because only comments have gone out. Only when every route has failed does the
//! client get the error, as an in-stream ending with the very words (`RelayError::words`) the HTTP
//! error would have had: chat `data: {"error":…}` + `[DONE]`, Responses `error` +
//! `response.failed`. The ledger entry is the same one `attempts::open` writes on failure, with
//! status 200 (what the client got). A client that leaves while waiting drops the opening future:
//! the upstream request is dropped with it and the settlement guard settles it as cancelled.
//! When the shutdown grace ends during the wait (`Gateway.end_streams`), the routes are given up
//! and the stream ends with the shutdown's 503 error event, settled as cancelled. Non-streamed
//! requests never commit early. Counted in `switchyard_streams_committed_early_total`.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use serde_json::json;
use switchyard_wire::openai::ChatRequest;
use tokio_util::sync::CancellationToken;

use crate::config::ModelConfig;
use crate::gateway::Gateway;
use crate::relay::attempts::{self, Opened, UpstreamStream};
use crate::relay::settlement::Settlement;
use crate::relay::{ErrorWords, RelayError, Served};

/// A relay's body, as the HTTP layer takes it.
pub(crate) type BodyStream = Box<dyn Stream<Item = Bytes> + Send + Unpin>;

/// A streamed request's routes being tried: the settlement comes back with the outcome (on an
/// error it has been settled already, by `attempts::open`).
pub(crate) type Opening = Pin<
    Box<dyn Future<Output = (Settlement, Result<(UpstreamStream, Served), RelayError>)> + Send>,
>;

/// How a streamed request started. Built once per request and taken apart at once, so the size
/// of the first variant does not matter.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Started {
    /// The routes answered (or all failed) before the commit: as without an early commit.
    Now(Settlement, Result<(UpstreamStream, Served), RelayError>),
    /// The commit came first; the routes are still being tried.
    Committed(Opening),
}

/// Tries `model`'s routes for a streamed `req` (see `attempts::open`), as an owned future.
pub(crate) fn opening(
    gw: Arc<Gateway>,
    model: Arc<ModelConfig>,
    req: Arc<ChatRequest>,
    mut settlement: Settlement,
    started: Instant,
    request_id: String,
) -> Opening {
    Box::pin(async move {
        let result = attempts::open(&gw, &model, &req, &mut settlement, started, &request_id).await;
        let result = match result {
            Ok(Opened::Stream { upstream, served }) => Ok((upstream, served)),
            Ok(Opened::Json { .. }) => {
                // A streamed request is always opened as a stream; kept total all the same.
                let e = RelayError::UpstreamFailed("the upstream's answer is not a stream".into());
                settlement.meter.failed(e.status(), &e.to_string());
                attempts::fail_settled(&mut settlement).await;
                Err(e)
            }
            Err(e) => Err(e),
        };
        (settlement, result)
    })
}

/// Runs `opening` until it finishes, or until `after` passes without it finishing: then the
/// stream commits (`committed` is the meter's flag: from now on the client has a 200).
pub(crate) async fn open_or_commit(
    opening: Opening,
    after: Option<Duration>,
    committed: Arc<std::sync::atomic::AtomicBool>,
) -> Started {
    let Some(after) = after else {
        let (settlement, result) = opening.await;
        return Started::Now(settlement, result);
    };
    match within(opening, after).await {
        Ok((settlement, result)) => Started::Now(settlement, result),
        Err(opening) => {
            committed.store(true, Ordering::Relaxed);
            crate::telemetry::record_committed_early();
            Started::Committed(opening)
        }
    }
}

/// What `opening` produced, if it finished within `after` (at `after` itself too: it is polled
/// first), or else the opening itself, still under way.
async fn within<F: Future + Unpin>(mut opening: F, after: Duration) -> Result<F::Output, F> {
    tokio::select! {
        biased;
        out = &mut opening => Ok(out),
        () = tokio::time::sleep(after) => Err(opening),
    }
}

/// How the wait of a committed stream ended. Made once per request and taken apart at once.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Outcome {
    /// The routes answered, or every one failed (then the settlement is settled already).
    Opened(Settlement, Result<(UpstreamStream, Served), RelayError>),
    /// The shutdown grace ended first (`Gateway.end_streams`): the routes were given up and the
    /// request is settled as cancelled, like a stream the shutdown ends.
    Shutdown,
}

/// What a committed stream becomes once its wait ended: the relay's own body, or the in-stream
/// ending for the error (every route failed, or the shutdown).
pub(crate) type Then = Box<dyn FnOnce(Outcome) -> BodyStream + Send>;

/// The words of a committed stream's ending when the shutdown grace ends during the wait: those
/// of a stream the shutdown ends after its first event.
pub(crate) fn shutdown_words() -> ErrorWords {
    let failure = crate::relay::upstream_pump::Failure::Shutdown;
    ErrorWords {
        kind: "service_unavailable",
        code: serde_json::Value::from(503),
        param: None,
        message: failure.message().to_owned(),
    }
}

enum Phase {
    /// Waiting for the routes; `first` until the comment that goes out at once was sent.
    Waiting {
        opening: Opening,
        then: Then,
        first: bool,
    },
    Relaying(BodyStream),
}

/// The body of a committed stream: `ping` (a `: keep-alive` comment, or the client API's own
/// keep-alive event) at once and every `keep_alive` after while the routes are tried, then whatever `then` makes of their outcome. When `end_streams` is cancelled
/// first, the opening is dropped (its upstream request with it; the settlement guard settles it
/// as cancelled) and `then` makes the shutdown ending.
pub(crate) fn body(
    opening: Opening,
    (keep_alive, ping): (Duration, Bytes),
    end_streams: &CancellationToken,
    then: Then,
) -> BodyStream {
    let end = end_streams.child_token();
    let phase = Phase::Waiting {
        opening,
        then,
        first: true,
    };
    let stream = futures_util::stream::unfold(phase, move |phase| {
        let (end, ping) = (end.clone(), ping.clone());
        async move {
            match phase {
                Phase::Waiting {
                    opening,
                    then,
                    first: true,
                } => {
                    let phase = Phase::Waiting {
                        opening,
                        then,
                        first: false,
                    };
                    Some((ping.clone(), phase))
                }
                Phase::Waiting {
                    mut opening, then, ..
                } => {
                    tokio::select! {
                        biased;
                        (settlement, result) = &mut opening => {
                            let mut relay = then(Outcome::Opened(settlement, result));
                            let frame = relay.next().await?;
                            Some((frame, Phase::Relaying(relay)))
                        }
                        () = end.cancelled() => {
                            drop(opening);
                            let mut relay = then(Outcome::Shutdown);
                            let frame = relay.next().await?;
                            Some((frame, Phase::Relaying(relay)))
                        }
                        () = tokio::time::sleep(keep_alive) => {
                            let phase = Phase::Waiting { opening, then, first: false };
                            Some((ping.clone(), phase))
                        }
                    }
                }
                Phase::Relaying(mut relay) => {
                    let frame = relay.next().await?;
                    Some((frame, Phase::Relaying(relay)))
                }
            }
        }
    });
    Box::new(Box::pin(stream))
}

/// The ending when every route failed after the commit: the error object the HTTP error body
/// would have carried, as an event in the client's API, then its end (chat: `[DONE]`; Responses:
/// `response.failed`, once the failed response is kept).
pub(crate) fn error_ending(
    words: ErrorWords,
    encoder: crate::relay::client_encoder::Encoder,
) -> BodyStream {
    let event = json!({"error": error_object(&words)});
    Box::new(Box::pin(futures_util::stream::once(async move {
        encoder.error_ending(&event).await
    })))
}

/// `{"message","type","param","code"}`, masked as the HTTP error body is.
fn error_object(w: &ErrorWords) -> serde_json::Value {
    let code = match &w.code {
        serde_json::Value::String(c) => {
            serde_json::Value::String(crate::redact::mask(c).into_owned())
        }
        other => other.clone(),
    };
    json!({"message": crate::redact::mask(&w.message), "type": w.kind, "param": w.param,
           "code": code})
}

#[cfg(test)]
mod tests {
    //! The early commit's clocks under paused time: the commit comes at `commit_after` and not a
    //! millisecond before, and the keep-alives that follow it keep their cadence.

    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// An opening that finishes `after` from now.
    fn done_after(after: Duration) -> Pin<Box<dyn Future<Output = Duration> + Send>> {
        let start = Instant::now();
        Box::pin(async move {
            tokio::time::sleep(after).await;
            start.elapsed()
        })
    }

    #[tokio::test(start_paused = true)]
    async fn a_stream_commits_at_commit_after_and_not_before() {
        // Routes that answer 1 ms before the commit, or at its very instant: no commit.
        for at in [ms(999), ms(1_000)] {
            let start = Instant::now();
            assert_eq!(within(done_after(at), ms(1_000)).await.ok(), Some(at));
            assert_eq!(start.elapsed(), at);
        }
        // 1 ms later: the commit comes at `commit_after`, and the routes are still being tried.
        let start = Instant::now();
        let Err(opening) = within(done_after(ms(1_001)), ms(1_000)).await else {
            panic!("no commit");
        };
        assert_eq!(start.elapsed(), ms(1_000));
        assert_eq!(opening.await, ms(1_001));
    }

    #[tokio::test(start_paused = true)]
    async fn a_committed_stream_sends_a_keep_alive_at_once_then_one_every_interval() {
        let end = CancellationToken::new();
        let opening: Opening = Box::pin(futures_util::future::pending());
        let then: Then = Box::new(|outcome| {
            assert!(matches!(outcome, Outcome::Shutdown));
            Box::new(futures_util::stream::iter([Bytes::from_static(b"the end")]))
        });
        let ping = Bytes::from_static(b": keep-alive\n\n");
        let mut body = body(opening, (ms(40), ping.clone()), &end, then);
        let start = Instant::now();
        let mut frames = Vec::new();
        for _ in 0..3 {
            let frame = body.next().await.expect("a frame");
            frames.push((frame, start.elapsed()));
        }
        assert_eq!(
            frames,
            [
                (ping.clone(), ms(0)),
                (ping.clone(), ms(40)),
                (ping, ms(80))
            ]
        );
        // The wait ends (here by the shutdown) between two keep-alives: its ending goes out then.
        let cancel = end.clone();
        tokio::spawn(async move {
            tokio::time::sleep(ms(25)).await;
            cancel.cancel();
        });
        assert_eq!(body.next().await, Some(Bytes::from_static(b"the end")));
        assert_eq!(start.elapsed(), ms(105));
        assert_eq!(body.next().await, None);
    }
}
