//! Reading an upstream's SSE body on behalf of a streamed relay (chat or Responses): its events
//! decoded by `wire::upstream` into typed events (chunk, usage, finish, error, done) whatever the
//! dialect, and, while waiting for more bytes, the three clocks of a stream: the keep-alive owed
//! to the client, the upstream's idle timeout and the route's total deadline. Timers are only
//! re-armed when they fire, so a chunk costs no timer work. It also watches the gateway's
//! `end_streams` signal: when the shutdown grace is over, the stream fails as `Shutdown` (an
//! error event, then the ending), which does not count against the route.
//!
//! What both relays share lives here too: the loop that drives them (`body`), how a failure is
//! described to the client and reported to the route's health (`Failure::describe`,
//! `report_mid_stream`), and how a chunk is metered (`meter_chunk`). The SSE decoder enforces the
//! provider's line and event limits; an upstream past them ends the stream as `TooLarge`, and
//! nothing more of it is buffered.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

use bytes::{Bytes, BytesMut};
use futures_util::{Stream, StreamExt};
use switchyard_wire::finish::FinishReason;
use switchyard_wire::sse;
use switchyard_wire::upstream::{
    Chunk, Dialect, Stamp, UpstreamDecoder, UpstreamEvent, UpstreamProblem,
};
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

use crate::config::ProviderKind;
use crate::gateway::Gateway;
use crate::relay::attempts::UpstreamStream;
use crate::relay::meter::Meter;
use crate::relay::ByteStream;
use crate::routing::{Blame, HealthKey};
use crate::store::ledger::EndReason;

/// How a stream that cannot finish normally ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Failure {
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
    /// The gateway is shutting down and its grace period is over.
    Shutdown,
    /// The upstream sent a line or an event past the provider's limits.
    TooLarge,
}

impl Failure {
    /// What the client is told (for `UpstreamError`, when the upstream's own message is missing).
    pub(crate) fn message(self) -> &'static str {
        match self {
            Failure::Broken => "The upstream connection was lost before the answer was complete.",
            Failure::Garbage => "The upstream sent a malformed event; the answer is incomplete.",
            Failure::UpstreamError => "The upstream reported an error.",
            Failure::Idle => "The upstream stopped sending for longer than the idle timeout.",
            Failure::Total => "The upstream did not finish within the total time limit.",
            Failure::Shutdown => {
                "The gateway is shutting down; the answer is incomplete. Retry the request."
            }
            Failure::TooLarge => {
                "The upstream sent an event larger than the gateway accepts; the answer is incomplete."
            }
        }
    }

    /// How the ledger records a request that ended this way.
    pub(crate) fn end_reason(self) -> EndReason {
        match self {
            Failure::Idle | Failure::Total => EndReason::UpstreamTimeout,
            Failure::Shutdown => EndReason::Cancelled,
            _ => EndReason::Error,
        }
    }

    /// Whether it is a timeout (504) rather than a broken upstream (502).
    pub(crate) fn is_timeout(self) -> bool {
        matches!(self, Failure::Idle | Failure::Total)
    }

    /// Whether the route caused it (and its health should hear of it): not when the gateway
    /// itself ended the stream.
    pub(crate) fn is_route_fault(self) -> bool {
        self != Failure::Shutdown
    }

    /// What the client is told, and whether the upstream said it was a rate limit: the
    /// upstream's own words for its error event, ours otherwise.
    pub(crate) fn describe(self, problem: Option<UpstreamProblem>) -> (String, bool) {
        match (self, problem) {
            (Failure::UpstreamError, Some(p)) => {
                (crate::redact::mask(&p.message).into_owned(), p.rate_limited)
            }
            (f, _) => (f.message().to_owned(), false),
        }
    }
}

/// Tells the route's health that a stream failed after its first byte. A timeout may be the
/// request's own doing (a huge answer); anything else is the route's.
pub(crate) fn report_mid_stream(
    health: Option<&(Arc<Gateway>, HealthKey)>,
    failure: Failure,
    message: &str,
) {
    if let Some((gw, key)) = health {
        let blame = if failure.is_timeout() {
            Blame::Unclear
        } else {
            Blame::Route
        };
        gw.routing
            .record_failure(key, blame, &format!("mid-stream: {message}"));
    }
}

/// Feeds one chunk to the meter (its text, usage and finish reason); returns the finish reason
/// as OpenAI names it, if the chunk carries one.
pub(crate) fn meter_chunk(meter: &mut Meter, chunk: &Chunk<'_>) -> Option<FinishReason> {
    match chunk {
        Chunk::Borrowed { view, .. } => meter.chunk(view),
        Chunk::Upstream(v) | Chunk::Translated(v) => meter.chat_value(v),
        Chunk::Typed(c) => meter.chat_chunk(c),
    }
}

/// The decoder for an upstream of this kind; translated chunks carry `stamp`.
pub(crate) fn decoder(kind: ProviderKind, stamp: Stamp) -> UpstreamDecoder {
    let dialect = match kind {
        ProviderKind::Anthropic => Dialect::Anthropic,
        ProviderKind::Gemini => Dialect::Gemini,
        ProviderKind::OpenAi | ProviderKind::DeepSeek => Dialect::OpenAi,
    };
    UpstreamDecoder::new(dialect, stamp)
}

/// What happened while waiting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wake {
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
pub(crate) struct Pump {
    bytes: ByteStream,
    decoder: sse::Decoder,
    /// Taken while one event's typed events are handed to the relay.
    upstream: Option<Box<UpstreamDecoder>>,
    keep_alive: Duration,
    idle_timeout: Duration,
    deadline: Instant,
    last_sent: Instant,
    last_received: Instant,
    /// The gateway's `end_streams`, as this stream's own child token (its own waiter list, so
    /// streams do not contend on one lock) and the one future that waits on it.
    end: CancellationToken,
    ended: Pin<Box<WaitForCancellationFutureOwned>>,
}

impl Pump {
    /// `upstream.decoder` may already hold the first event(s); `decoder` turns them into typed
    /// events. When `end_streams` is cancelled the stream fails as `Shutdown`.
    pub(crate) fn new(
        upstream: &mut UpstreamStream,
        keep_alive: Duration,
        decoder: UpstreamDecoder,
        end_streams: &CancellationToken,
    ) -> Pump {
        let now = Instant::now();
        let end = end_streams.child_token();
        let bytes = std::mem::replace(&mut upstream.bytes, Box::pin(futures_util::stream::empty()));
        Pump {
            bytes,
            decoder: std::mem::take(&mut upstream.decoder),
            upstream: Some(Box::new(decoder)),
            keep_alive,
            idle_timeout: upstream.idle_timeout,
            deadline: upstream.deadline,
            last_sent: now,
            last_received: now,
            ended: Box::pin(end.clone().cancelled_owned()),
            end,
        }
    }

    /// The next event already received, if any, or the limit the upstream broke.
    pub(crate) fn next_event(&mut self) -> Result<Option<sse::Event>, sse::LimitExceeded> {
        self.decoder.try_next_event()
    }

    /// Notes that bytes went to the client (the keep-alive clock restarts).
    pub(crate) fn sent(&mut self) {
        self.last_sent = Instant::now();
    }

    /// Waits for upstream bytes or for one of the clocks.
    pub(crate) async fn wait(&mut self) -> Wake {
        // Checked first: an upstream that never pauses must not keep a stream past the shutdown.
        if self.end.is_cancelled() {
            return Wake::Failed(Failure::Shutdown);
        }
        let keep_alive_at = self.last_sent + self.keep_alive;
        let idle_at = (self.last_received + self.idle_timeout).min(self.deadline);
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
            _ = self.ended.as_mut() => Wake::Failed(Failure::Shutdown),
        }
    }
}

/// A streamed relay that reads its upstream through a `Pump`: what it does with each chunk, usage
/// and finish reason the upstream sends, how it ends normally and how it fails. `body` drives it:
/// `Done`, and an upstream body that ends (some servers send no `[DONE]` after the finish chunk),
/// call `finish`, which fails the stream as broken when no finish reason was seen; an error event,
/// a malformed event, a broken connection or a timeout call `fail`.
pub(crate) trait PumpedRelay: Send + Sized + 'static {
    fn pump(&mut self) -> &mut Pump;
    /// Bytes ready for the client.
    fn out(&mut self) -> &mut BytesMut;
    /// The relay wrote its ending; nothing more is read.
    fn is_done(&self) -> bool;
    /// A chunk, usage or finish reason (never `Done` or `Error`).
    fn on_upstream(&mut self, event: UpstreamEvent<'_>);
    /// The SSE event itself, once the decoder took it and before its typed events are handed
    /// over (a relay that forwards the upstream's own events reads it here).
    fn on_raw(&mut self, _event: &sse::Event) {}
    /// Nothing went to the client for the keep-alive interval.
    fn keep_alive(&mut self) {
        self.out().extend_from_slice(sse::KEEP_ALIVE);
    }
    fn finish(&mut self) -> impl Future<Output = ()> + Send;
    fn fail(
        &mut self,
        failure: Failure,
        problem: Option<UpstreamProblem>,
    ) -> impl Future<Output = ()> + Send;
}

/// How one upstream event ends the stream, if it does.
enum Ending {
    Done,
    Failed(Failure, Option<UpstreamProblem>),
}

/// Hands one SSE event's typed events to the relay, then ends it if the upstream ended.
async fn on_event<R: PumpedRelay>(r: &mut R, event: sse::Event) {
    let Some(mut decoder) = r.pump().upstream.take() else {
        return;
    };
    let mut ending = None;
    match decoder.push(&event) {
        Err(_) => ending = Some(Ending::Failed(Failure::Garbage, None)),
        Ok(events) => {
            r.on_raw(&event);
            for e in events {
                match e {
                    UpstreamEvent::Done => ending = Some(Ending::Done),
                    UpstreamEvent::Error(p) => {
                        ending = Some(Ending::Failed(Failure::UpstreamError, Some(p)))
                    }
                    e => r.on_upstream(e),
                }
            }
        }
    }
    r.pump().upstream = Some(decoder);
    match ending {
        None => {}
        Some(Ending::Done) => r.finish().await,
        Some(Ending::Failed(failure, problem)) => r.fail(failure, problem).await,
    }
}

/// The HTTP body of a streamed relay. Every event that arrived in the same network read leaves in
/// the same frame: they arrived together, and one write instead of many keeps the per-chunk cost
/// down. Nothing is ever held back waiting for more.
pub(crate) fn body<R: PumpedRelay>(relay: R) -> impl Stream<Item = Bytes> + Send {
    futures_util::stream::unfold(relay, |mut r| async move {
        let frame = next_frame(&mut r).await?;
        Some((frame, r))
    })
}

async fn next_frame<R: PumpedRelay>(r: &mut R) -> Option<Bytes> {
    loop {
        while !r.is_done() {
            match r.pump().next_event() {
                Ok(Some(event)) => on_event(r, event).await,
                Ok(None) => break,
                Err(_) => r.fail(Failure::TooLarge, None).await,
            }
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
            Wake::KeepAlive => r.keep_alive(),
            Wake::Ended => r.finish().await,
            Wake::Failed(failure) => r.fail(failure, None).await,
        }
    }
}

#[cfg(test)]
mod tests {
    //! The pump's clocks under paused time: each wake-up is checked at the exact instant it is
    //! due, so a slow machine can neither make a keep-alive late nor a timeout early.

    use super::*;

    const KEEP_ALIVE: Duration = Duration::from_millis(40);
    const IDLE: Duration = Duration::from_millis(150);

    /// A pump over `bytes`, with the route's total limit `total` from now.
    fn pump(bytes: ByteStream, total: Duration, end: &CancellationToken) -> Pump {
        let mut upstream = UpstreamStream {
            bytes,
            decoder: sse::Decoder::default(),
            dialect: ProviderKind::OpenAi,
            idle_timeout: IDLE,
            deadline: Instant::now() + total,
            model: "m".into(),
            health: HealthKey {
                route: "a/x".parse().unwrap(),
                caller: "k".into(),
            },
            native: false,
        };
        let decoder = decoder(ProviderKind::OpenAi, Stamp::default());
        Pump::new(&mut upstream, KEEP_ALIVE, decoder, end)
    }

    /// The next wake-up that is not a timer firing early, and when it came (from `start`).
    async fn next(p: &mut Pump, start: Instant) -> (Wake, Duration) {
        loop {
            match p.wait().await {
                Wake::Nothing => continue,
                w => return (w, start.elapsed()),
            }
        }
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// An upstream that sends one chunk after `after`, then stays silent.
    fn one_chunk_after(after: Duration) -> ByteStream {
        let chunk = futures_util::stream::once(async move {
            tokio::time::sleep(after).await;
            Ok(Bytes::from_static(b": still here\n\n"))
        });
        Box::pin(chunk.chain(futures_util::stream::pending()))
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_upstream_gets_keep_alives_then_the_idle_timeout() {
        let end = CancellationToken::new();
        let start = Instant::now();
        let mut p = pump(Box::pin(futures_util::stream::pending()), ms(60_000), &end);
        assert_eq!(next(&mut p, start).await, (Wake::KeepAlive, ms(40)));
        p.sent();
        assert_eq!(next(&mut p, start).await, (Wake::KeepAlive, ms(80)));
        p.sent();
        assert_eq!(next(&mut p, start).await, (Wake::KeepAlive, ms(120)));
        p.sent();
        // Keep-alives to the client are not bytes from the upstream: the idle clock runs on.
        assert_eq!(
            next(&mut p, start).await,
            (Wake::Failed(Failure::Idle), ms(150))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn bytes_sent_to_the_client_put_the_keep_alive_off() {
        let end = CancellationToken::new();
        let start = Instant::now();
        let mut p = pump(Box::pin(futures_util::stream::pending()), ms(60_000), &end);
        tokio::time::advance(ms(30)).await;
        p.sent();
        assert_eq!(next(&mut p, start).await, (Wake::KeepAlive, ms(70)));
    }

    #[tokio::test(start_paused = true)]
    async fn upstream_bytes_restart_the_idle_clock() {
        let end = CancellationToken::new();
        let start = Instant::now();
        let mut p = pump(one_chunk_after(ms(100)), ms(60_000), &end);
        assert_eq!(next(&mut p, start).await, (Wake::KeepAlive, ms(40)));
        p.sent();
        assert_eq!(next(&mut p, start).await, (Wake::KeepAlive, ms(80)));
        p.sent();
        assert_eq!(next(&mut p, start).await, (Wake::Received, ms(100)));
        // Idle is counted from the last upstream bytes (100 ms), not from the start.
        let mut wakes = vec![];
        loop {
            match next(&mut p, start).await {
                (Wake::KeepAlive, _) => p.sent(),
                w => {
                    wakes.push(w);
                    break;
                }
            }
        }
        assert_eq!(wakes, [(Wake::Failed(Failure::Idle), ms(250))]);
    }

    #[tokio::test(start_paused = true)]
    async fn the_total_limit_ends_a_stream_that_never_goes_idle() {
        let end = CancellationToken::new();
        let start = Instant::now();
        let mut p = pump(one_chunk_after(ms(100)), ms(200), &end);
        let ended = loop {
            match next(&mut p, start).await {
                (Wake::KeepAlive | Wake::Received, _) => p.sent(),
                w => break w,
            }
        };
        assert_eq!(ended, (Wake::Failed(Failure::Total), ms(200)));
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_ends_the_stream_before_any_timer() {
        let end = CancellationToken::new();
        let start = Instant::now();
        let mut p = pump(Box::pin(futures_util::stream::pending()), ms(60_000), &end);
        end.cancel();
        assert_eq!(
            next(&mut p, start).await,
            (Wake::Failed(Failure::Shutdown), ms(0))
        );
    }
}
