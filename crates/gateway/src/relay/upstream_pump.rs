//! Reading an upstream's SSE body on behalf of a streamed relay (chat or Responses): decoded
//! events one at a time, and, while waiting for more bytes, the three clocks of a stream: the
//! keep-alive owed to the client, the upstream's idle timeout and the route's total deadline.
//! Timers are only re-armed when they fire, so a chunk costs no timer work.

use std::future::Future;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use futures_util::{Stream, StreamExt};
use switchyard_wire::sse;

use crate::ledger::EndReason;
use crate::relay::attempts::UpstreamStream;
use crate::relay::chat_stream::ByteStream;

/// How a stream that cannot finish normally ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The upstream connection broke or its body was cut off.
    Broken,
    /// The upstream sent something that is not an event of its dialect.
    Garbage,
    /// The upstream sent its own error event.
    UpstreamError,
    /// No byte from the upstream within the idle timeout.
    Idle,
    /// The route's total time limit passed.
    Total,
}

impl Failure {
    /// What the client is told (for `UpstreamError`, when the upstream's own message is missing).
    pub fn message(self) -> &'static str {
        match self {
            Failure::Broken => "The upstream connection was lost before the answer was complete.",
            Failure::Garbage => "The upstream sent a malformed event; the answer is incomplete.",
            Failure::UpstreamError => "The upstream reported an error.",
            Failure::Idle => "The upstream stopped sending for longer than the idle timeout.",
            Failure::Total => "The upstream did not finish within the total time limit.",
        }
    }

    /// How the ledger records a request that ended this way.
    pub fn end_reason(self) -> EndReason {
        match self {
            Failure::Idle | Failure::Total => EndReason::UpstreamTimeout,
            _ => EndReason::Error,
        }
    }

    /// Whether it is a timeout (504) rather than a broken upstream (502).
    pub fn is_timeout(self) -> bool {
        matches!(self, Failure::Idle | Failure::Total)
    }
}

/// What happened while waiting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wake {
    /// Bytes arrived; there may be events to take.
    Received,
    /// Nothing was sent to the client for the keep-alive interval: send a comment.
    KeepAlive,
    /// The upstream body ended.
    Ended,
    /// The upstream failed (broken connection, idle, past the deadline).
    Failed(Failure),
    /// A timer fired early (its deadline moved); nothing to do.
    Nothing,
}

/// The reading side of one streamed relay.
pub struct Pump {
    bytes: ByteStream,
    decoder: sse::Decoder,
    keep_alive: Duration,
    idle_timeout: Duration,
    deadline: Instant,
    last_sent: Instant,
    last_received: Instant,
}

impl Pump {
    /// `upstream.decoder` may already hold the first event(s).
    pub fn new(upstream: &mut UpstreamStream, keep_alive: Duration) -> Pump {
        let now = Instant::now();
        let bytes = std::mem::replace(&mut upstream.bytes, Box::pin(futures_util::stream::empty()));
        Pump {
            bytes,
            decoder: std::mem::take(&mut upstream.decoder),
            keep_alive,
            idle_timeout: upstream.idle_timeout,
            deadline: upstream.deadline,
            last_sent: now,
            last_received: now,
        }
    }

    /// The next event already received, if any.
    pub fn next_event(&mut self) -> Option<sse::Event> {
        self.decoder.next_event()
    }

    /// Notes that bytes went to the client (the keep-alive clock restarts).
    pub fn sent(&mut self) {
        self.last_sent = Instant::now();
    }

    /// Waits for upstream bytes or for one of the clocks.
    pub async fn wait(&mut self) -> Wake {
        let keep_alive_at = tokio::time::Instant::from_std(self.last_sent + self.keep_alive);
        let idle_at = tokio::time::Instant::from_std(
            (self.last_received + self.idle_timeout).min(self.deadline),
        );
        tokio::select! {
            biased;
            chunk = self.bytes.next() => match chunk {
                Some(Ok(bytes)) => {
                    self.last_received = Instant::now();
                    self.decoder.push(&bytes);
                    Wake::Received
                }
                Some(Err(_)) => Wake::Failed(Failure::Broken),
                None => Wake::Ended,
            },
            _ = tokio::time::sleep_until(keep_alive_at) => {
                if self.last_sent.elapsed() >= self.keep_alive {
                    Wake::KeepAlive
                } else {
                    Wake::Nothing
                }
            }
            _ = tokio::time::sleep_until(idle_at) => {
                if Instant::now() >= self.deadline {
                    Wake::Failed(Failure::Total)
                } else if self.last_received.elapsed() >= self.idle_timeout {
                    Wake::Failed(Failure::Idle)
                } else {
                    Wake::Nothing
                }
            }
        }
    }
}

/// A streamed relay that reads its upstream through a `Pump`: what it does with each event, at the
/// end of the upstream body, and on a failure. `body` drives it.
pub trait PumpedRelay: Send + Sized + 'static {
    fn pump(&mut self) -> &mut Pump;
    /// Bytes ready for the client.
    fn out(&mut self) -> &mut BytesMut;
    /// The relay wrote its ending; nothing more is read.
    fn is_done(&self) -> bool;
    fn on_event(&mut self, event: sse::Event) -> impl Future<Output = ()> + Send;
    fn on_eof(&mut self) -> impl Future<Output = ()> + Send;
    fn on_failure(&mut self, failure: Failure) -> impl Future<Output = ()> + Send;
}

/// The HTTP body of a streamed relay. Every event that arrived in the same network read leaves in
/// the same frame: they arrived together, and one write instead of many keeps the per-chunk cost
/// down. Nothing is ever held back waiting for more.
pub fn body<R: PumpedRelay>(relay: R) -> impl Stream<Item = Bytes> + Send {
    futures_util::stream::unfold(relay, |mut r| async move {
        let frame = next_frame(&mut r).await?;
        Some((frame, r))
    })
}

async fn next_frame<R: PumpedRelay>(r: &mut R) -> Option<Bytes> {
    loop {
        while !r.is_done() {
            let Some(event) = r.pump().next_event() else {
                break;
            };
            r.on_event(event).await;
        }
        if !r.out().is_empty() {
            r.pump().sent();
            return Some(r.out().split().freeze());
        }
        if r.is_done() {
            return None;
        }
        match r.pump().wait().await {
            Wake::Received | Wake::Nothing => {}
            Wake::KeepAlive => r.out().extend_from_slice(sse::KEEP_ALIVE),
            Wake::Ended => r.on_eof().await,
            Wake::Failed(failure) => r.on_failure(failure).await,
        }
    }
}
