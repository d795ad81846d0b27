//! Plays a planned response body onto the connection: a list of [`Step`]s, each one body frame written
//! the moment its delay has passed (never batched), with the faults `reset_after`, `stall_after`,
//! `malformed_after` and `error_after` spliced in after N token chunks. The body is a stream whose state
//! owns the [`StreamTracker`], so when hyper drops it (client gone) the record says so at once.

use std::collections::VecDeque;
use std::io;
use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use tokio::sync::watch;

use crate::options::Behaviour;
use crate::recording::{StreamEnd, StreamTracker, TokenKind};

/// One thing the body does.
#[derive(Debug)]
pub(crate) enum Step {
    /// Wait `delay`, then write `bytes` as one frame; `token` says whether it is a token chunk.
    Send {
        delay: Duration,
        bytes: Bytes,
        token: Option<TokenKind>,
    },
    /// Abort the connection without finishing the body.
    Reset,
    /// Write nothing more, keep the connection open until the client leaves.
    Stall,
    /// Write one line that never ends (`data: xxx…`, 64 KiB per frame) until the client leaves.
    Endless,
}

impl Step {
    pub(crate) fn frame(bytes: impl Into<Bytes>) -> Step {
        Step::Send {
            delay: Duration::ZERO,
            bytes: bytes.into(),
            token: None,
        }
    }

    pub(crate) fn token(bytes: impl Into<Bytes>, kind: TokenKind) -> Step {
        Step::Send {
            delay: Duration::ZERO,
            bytes: bytes.into(),
            token: Some(kind),
        }
    }

    fn is_token(&self) -> bool {
        matches!(self, Step::Send { token: Some(_), .. })
    }
}

/// One frame of an endless line.
static ENDLESS_FRAME: [u8; 64 * 1024] = [b'x'; 64 * 1024];

/// The malformed SSE event written by `malformed_after`.
pub(crate) const MALFORMED_EVENT: &str = "data: {\"choices\": [\n\n";

/// The event written by `invalid_utf8_after`: a content delta whose bytes are not UTF-8 (the
/// OpenAI dialect's shape; in any dialect, text that is not UTF-8).
pub(crate) const INVALID_UTF8_EVENT: &[u8] =
    b"data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"\xff\xfe\xc3\"}}]}\n\n";

/// A recorded transcript as steps: each event (up to and including its blank line) one frame,
/// a token where `token` says which kind.
pub(crate) fn transcript_steps(
    transcript: &str,
    token: impl Fn(&str) -> Option<TokenKind>,
) -> Vec<Step> {
    transcript
        .split_inclusive("\n\n")
        .map(|event| {
            let bytes = Bytes::copy_from_slice(event.as_bytes());
            match token(event) {
                Some(t) => Step::token(bytes, t),
                None => Step::frame(bytes),
            }
        })
        .collect()
}

/// Sets the pacing: `ttft_ms` before the first step, `gap_ms` before every token chunk but the first.
pub(crate) fn pace(steps: &mut [Step], behaviour: &Behaviour) {
    let gap = Duration::from_millis(behaviour.gap_ms);
    let mut seen_token = false;
    for step in steps.iter_mut() {
        if let Step::Send { delay, token, .. } = step {
            if token.is_some() {
                if seen_token {
                    *delay = gap;
                }
                seen_token = true;
            }
        }
    }
    if let Some(Step::Send { delay, .. }) = steps.first_mut() {
        *delay += Duration::from_millis(behaviour.ttft_ms);
    }
}

/// Splices the behaviour's faults into the steps. Each fault fires after N token chunks, or after the
/// last token chunk when the response has fewer than N (`endless_line_after = 0`: before anything).
/// `error_event` is the dialect's in-stream error.
pub(crate) fn inject_faults(steps: &mut Vec<Step>, behaviour: &Behaviour, error_event: Bytes) {
    if let Some(n) = behaviour.endless_line_after {
        let at = if n == 0 { 0 } else { fault_position(steps, n) };
        steps.truncate(at);
        steps.push(Step::Endless);
        return;
    }
    if let Some(n) = behaviour.malformed_after {
        let at = fault_position(steps, n);
        steps.insert(at, Step::frame(MALFORMED_EVENT));
    }
    if let Some(n) = behaviour.invalid_utf8_after {
        let at = fault_position(steps, n);
        steps.insert(at, Step::frame(Bytes::from_static(INVALID_UTF8_EVENT)));
    }
    // The ending faults: the earliest one wins; everything after it is dropped.
    let endings = [
        (behaviour.error_after, 0u8),
        (behaviour.reset_after, 1),
        (behaviour.stall_after, 2),
    ];
    let earliest = endings
        .iter()
        .filter_map(|(n, kind)| n.map(|n| (fault_position(steps, n), *kind)))
        .min_by_key(|(at, _)| *at);
    if let Some((at, kind)) = earliest {
        steps.truncate(at);
        steps.push(match kind {
            0 => Step::frame(error_event),
            1 => Step::Reset,
            _ => Step::Stall,
        });
    }
}

/// The index before the (n+1)-th token chunk, or just after the last one.
fn fault_position(steps: &[Step], n: u32) -> usize {
    let mut seen = 0u32;
    let mut after_last = 0;
    for (i, step) in steps.iter().enumerate() {
        if step.is_token() {
            if seen == n {
                return i;
            }
            seen += 1;
            after_last = i + 1;
        }
    }
    after_last
}

/// Plays `steps` as a body. With a tracker the stream is recorded; `shutdown` ends delays and stalls.
pub(crate) fn body(
    steps: Vec<Step>,
    tracker: Option<StreamTracker>,
    shutdown: watch::Receiver<bool>,
) -> Body {
    let player = Player {
        steps: steps.into(),
        tracker,
        shutdown,
        endless_started: false,
    };
    Body::from_stream(futures_util::stream::unfold(player, |mut p| async move {
        let frame = p.next_frame().await?;
        Some((frame, p))
    }))
}

struct Player {
    steps: VecDeque<Step>,
    tracker: Option<StreamTracker>,
    shutdown: watch::Receiver<bool>,
    /// An endless line has begun (its `data: ` is written).
    endless_started: bool,
}

impl Player {
    async fn next_frame(&mut self) -> Option<Result<Bytes, io::Error>> {
        let Some(step) = self.steps.pop_front() else {
            self.finish(StreamEnd::Completed);
            return None;
        };
        match step {
            Step::Send {
                delay,
                bytes,
                token,
            } => {
                if !delay.is_zero() {
                    tokio::select! {
                        () = tokio::time::sleep(delay) => {}
                        () = wait_for_shutdown(&mut self.shutdown) => return Some(self.shutdown_error()),
                    }
                }
                if let Some(tracker) = &self.tracker {
                    tracker.sent(&bytes, token.as_ref());
                }
                Some(Ok(bytes))
            }
            Step::Reset => {
                // hyper drops its unflushed write buffer when a body fails; going pending once
                // makes it flush the frames before this one, so the client does receive them.
                tokio::task::yield_now().await;
                self.steps.clear();
                self.finish(StreamEnd::Aborted);
                Some(Err(io::Error::new(
                    io::ErrorKind::ConnectionReset,
                    "mock upstream: reset_after",
                )))
            }
            Step::Stall => {
                wait_for_shutdown(&mut self.shutdown).await;
                Some(self.shutdown_error())
            }
            Step::Endless => {
                if *self.shutdown.borrow() {
                    return Some(self.shutdown_error());
                }
                let first = !self.endless_started;
                self.endless_started = true;
                // Played again and again, until the client leaves (the body is dropped).
                self.steps.push_front(Step::Endless);
                tokio::task::yield_now().await;
                Some(Ok(if first {
                    let mut opening = b"data: ".to_vec();
                    opening.extend_from_slice(&ENDLESS_FRAME);
                    Bytes::from(opening)
                } else {
                    Bytes::from_static(&ENDLESS_FRAME)
                }))
            }
        }
    }

    fn shutdown_error(&mut self) -> Result<Bytes, io::Error> {
        self.steps.clear();
        self.finish(StreamEnd::Shutdown);
        Err(io::Error::other("mock upstream shutting down"))
    }

    fn finish(&mut self, end: StreamEnd) {
        if let Some(t) = &mut self.tracker {
            t.finish(end);
        }
    }
}

/// Resolves when the server shuts down; never, if the signal can no longer come.
async fn wait_for_shutdown(shutdown: &mut watch::Receiver<bool>) {
    if shutdown.wait_for(|down| *down).await.is_err() {
        std::future::pending::<()>().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn steps(tokens: usize) -> Vec<Step> {
        let mut s = vec![Step::frame("role")];
        s.extend((0..tokens).map(|_| Step::token("t", TokenKind::ToolArguments)));
        s.push(Step::frame("finish"));
        s
    }

    fn describe(steps: &[Step]) -> Vec<String> {
        steps
            .iter()
            .map(|s| match s {
                Step::Send { bytes, .. } => String::from_utf8_lossy(bytes).into_owned(),
                Step::Reset => "RESET".into(),
                Step::Stall => "STALL".into(),
                Step::Endless => "ENDLESS".into(),
            })
            .collect()
    }

    #[test]
    fn faults_fire_after_n_tokens_or_after_the_last() {
        let mut b = Behaviour::for_model("m", false);
        b.reset_after = Some(1);
        b.malformed_after = Some(0);
        let mut s = steps(3);
        inject_faults(&mut s, &b, Bytes::from_static(b"ERR"));
        assert_eq!(describe(&s), ["role", MALFORMED_EVENT, "t", "RESET"]);

        let mut b = Behaviour::for_model("m", false);
        b.stall_after = Some(99);
        b.error_after = Some(2);
        let mut s = steps(3);
        inject_faults(&mut s, &b, Bytes::from_static(b"ERR"));
        assert_eq!(describe(&s), ["role", "t", "t", "ERR"]);

        let mut b = Behaviour::for_model("m", false);
        b.stall_after = Some(99);
        let mut s = steps(2);
        inject_faults(&mut s, &b, Bytes::from_static(b"ERR"));
        assert_eq!(describe(&s), ["role", "t", "t", "STALL"]);

        let mut b = Behaviour::for_model("m", false);
        b.endless_line_after = Some(0);
        let mut s = steps(2);
        inject_faults(&mut s, &b, Bytes::from_static(b"ERR"));
        assert_eq!(describe(&s), ["ENDLESS"]);
        b.endless_line_after = Some(1);
        let mut s = steps(2);
        inject_faults(&mut s, &b, Bytes::from_static(b"ERR"));
        assert_eq!(describe(&s), ["role", "t", "ENDLESS"]);
    }

    #[test]
    fn pacing_puts_ttft_first_and_gaps_between_tokens() {
        let mut b = Behaviour::for_model("m", false);
        b.ttft_ms = 50;
        b.gap_ms = 5;
        let mut s = steps(3);
        pace(&mut s, &b);
        let delays: Vec<u64> = s
            .iter()
            .map(|s| match s {
                Step::Send { delay, .. } => delay.as_millis() as u64,
                _ => 0,
            })
            .collect();
        assert_eq!(delays, [50, 0, 5, 5, 0]);
    }
}
