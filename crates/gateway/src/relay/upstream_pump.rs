//! Reading an upstream's SSE body on behalf of a streamed relay (chat or Responses): decoded
//! events one at a time, and, while waiting for more bytes, the three clocks of a stream: the
//! keep-alive owed to the client, the upstream's idle timeout and the route's total deadline.
//! Timers are only re-armed when they fire, so a chunk costs no timer work.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use switchyard_wire::sse;

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
