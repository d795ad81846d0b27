//! A fake LLM provider speaking the OpenAI Chat Completions, OpenAI Responses, DeepSeek, Anthropic
//! Messages and Gemini wire formats, for Switchyard's tests, benchmarks and offline demo. It deliberately does not use the
//! gateway's `wire` crate: it writes the vendor formats itself, following the reference document and
//! real recordings, so tests cannot confirm the gateway's own misunderstandings.
//!
//! Start one with [`MockUpstream::start`], point a client at [`MockUpstream::base_url`], and shape the
//! responses with options set on the server ([`MockUpstream::set_options`], for every request), given
//! in the model name (`gpt-4o@tokens=5,ttft_ms=200`), in `x-mock-<option>` headers, or in a
//! `"mock": {...}` body field (later sources win). The gateway never forwards a caller's `mock` field
//! or headers, so tests that go through it steer with `set_options` or a route's model suffix (the
//! operator's config). [`MockUpstream::start_demo`] starts a mock that ignores every request source
//! ([`Steering::ServerOnly`]), for the gateway's embedded demo. Options:
//!
//! | option | default | effect |
//! | --- | --- | --- |
//! | `tokens` | 12 | content tokens, one word (one cl100k/o200k token) per chunk |
//! | `reasoning` | 0 (8 for `demo-reasoner`, `*reasoner*`, Anthropic `thinking`) | reasoning tokens first; on `/chat/completions` this selects the DeepSeek dialect |
//! | `ttft_ms`, `gap_ms`, `headers_delay_ms` | 0 | delay before the first chunk, between token chunks, before the response headers |
//! | `status`, `retry_after` | none | answer with this error status (and `retry-after` seconds) |
//! | `fail_times`, `fail_key` | none | fail only the first N requests carrying this key (status defaults to 503) |
//! | `reset_after`, `stall_after`, `malformed_after`, `error_after` | none | after N token chunks (or after the last, if fewer): abort the connection / go silent / write `data: {"choices": [` / write an in-stream error and end |
//! | `invalid_utf8_after` | none | after N token chunks, an event whose text is not UTF-8 (then the stream goes on) |
//! | `usage` | dialect default | force usage on or off |
//! | `tool_calls` | 0 | N parallel tool calls instead of text |
//! | `finish` | `stop` | `length` forces that finish reason; a smaller `max_tokens` also truncates with it; `content_filter`; `insufficient_system_resource` (DeepSeek's cut short, `length` in the other dialects); `unknown` (a reason the dialect never defined: `a_new_reason`, Gemini's `A_NEW_REASON`) |
//! | `prompt_tokens`, `cached_tokens` | estimate, 0 | reported prompt tokens (estimate: per message 4 + its whitespace-separated words) and the cached part |
//! | `prompt_cache` | false | chat: a prompt cache per model and API key; the longest message prefix shared with an earlier request is reported as `cached_tokens` |
//! | `endless_line_after` | none | after N token chunks (0: before anything), `data: xxx…` without end, 64 KiB per frame, until the client leaves |
//! | `body_bytes` | none | pad a whole body (an answer, or the error body of `status`) with spaces to at least N bytes |
//! | `error_body` | the dialect's | the exact body sent with `status` (e.g. a provider's context-length error) |
//! | `stall_if_contains` | none | a request whose body contains this text gets no answer (not even headers) until the client leaves |
//! | `signatures` | false | reasoning signatures as the real APIs require them: Anthropic thinking blocks (with `thinking` on), Gemini `thoughtSignature`s, Responses encrypted reasoning items (with `include: ["reasoning.encrypted_content"]`) are issued, and a follow-up without the exact one issued is refused with the vendor's 400 |
//!
//! The agent scenario (`agent.rs`, no option needed, `tool_calls` = 0): a request that offers tools
//! and whose last user turn names a file (`notes.txt`) gets ONE tool call reading it (a read tool,
//! else a shell tool with `cat FILE`, else the first tool); a request whose last turn carries tool
//! results gets `The file says: <results>`. In every dialect, streamed and whole.

mod agent;
mod anthropic_format;
mod completion;
mod embedding_format;
mod gemini_format;
mod openai_format;
mod options;
mod playback;
mod recording;
mod responses_format;
mod routes;
mod signatures;
mod tool_call;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::serve::ListenerExt;

pub use completion::{CONTENT_WORDS, REASONING_WORDS};
pub use embedding_format::{vector_of_text, DEFAULT_DIMENSIONS as EMBEDDING_DIMENSIONS};
pub use options::{OptionError, Steering, OPTION_NAMES};
pub use recording::{Dialect, RecordedRequest, StreamRecord};
pub use routes::router;

use options::ServerOptions;
use recording::Shared;

/// Settings fixed when the server starts.
#[derive(Clone, Debug, Default)]
pub struct MockOptions {
    /// The credential the mock accepts (`Authorization: Bearer K` or `x-api-key: K`); `None` = any.
    pub expected_key: Option<String>,
    /// Whether requests may shape their own responses (default) or only the server's options.
    pub steering: Steering,
}

/// The mock's shared state: what [`router`] serves and what the records are read from. Cloning shares.
#[derive(Clone)]
pub struct MockState {
    shared: Arc<Shared>,
}

impl MockState {
    pub fn new(opts: MockOptions) -> MockState {
        MockState {
            shared: Arc::new(Shared::new(opts.expected_key, opts.steering)),
        }
    }

    /// Every request received, in order (while recording is on).
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.requests()
    }

    /// Every streamed response started, in start order (while recording is on).
    pub fn streams(&self) -> Vec<StreamRecord> {
        self.shared.streams()
    }

    /// Waits until the n-th (0-based) streamed response has ended, then returns its record.
    pub async fn wait_stream_end(&self, n: usize) -> StreamRecord {
        self.shared.wait_stream_end(n).await
    }

    pub fn set_expected_key(&self, key: Option<String>) {
        self.shared.set_expected_key(key);
    }

    /// Sets the server's own options, applied to every request from now on (replacing those set
    /// before): a JSON object like a body's `mock` field, e.g. `{"tokens": 20, "gap_ms": 5}`.
    /// Requests may still override them unless the server was started with
    /// [`Steering::ServerOnly`]. A bad option is refused and the previous ones stay.
    pub fn set_options(&self, options: serde_json::Value) -> Result<(), OptionError> {
        self.shared
            .set_server_options(ServerOptions::parse(&options)?);
        Ok(())
    }

    /// Turns request and stream recording on or off (on by default). Long-running servers (the
    /// binary, benchmarks, the gateway's demo upstream) turn it off so memory stays flat. Streams
    /// started while it is off are not recorded, so `wait_stream_end` does not see them.
    pub fn set_recording(&self, on: bool) {
        self.shared.set_recording(on);
    }

    /// Ends every delay and stall in progress, as when the server stops.
    pub fn shut_down(&self) {
        self.shared.shut_down();
    }
}

/// A running mock server on a local port. Dropping it shuts the server down.
pub struct MockUpstream {
    addr: SocketAddr,
    state: MockState,
}

impl MockUpstream {
    /// Starts a server on 127.0.0.1 with a free port, accepting any key.
    pub async fn start() -> std::io::Result<MockUpstream> {
        Self::start_with(MockOptions::default()).await
    }

    /// Starts the demo upstream: 127.0.0.1, a free port, any key, recording off, and
    /// [`Steering::ServerOnly`], so nothing in a request (body `mock`, `x-mock-*` headers, a model
    /// suffix) can change its pacing, token counts, usage or failures.
    pub async fn start_demo() -> std::io::Result<MockUpstream> {
        let demo = Self::start_with(MockOptions {
            expected_key: None,
            steering: Steering::ServerOnly,
        })
        .await?;
        demo.set_recording(false);
        Ok(demo)
    }

    /// Starts a server on 127.0.0.1 with a free port.
    pub async fn start_with(opts: MockOptions) -> std::io::Result<MockUpstream> {
        Self::bind(SocketAddr::from(([127, 0, 0, 1], 0)), opts).await
    }

    /// Starts a server on `addr` (port 0 picks a free one). Must be called inside a tokio runtime.
    pub async fn bind(addr: SocketAddr, opts: MockOptions) -> std::io::Result<MockUpstream> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let state = MockState::new(opts);
        let listener = listener.tap_io(|tcp| {
            // Best effort: a socket that refuses NODELAY still works, just with Nagle batching.
            let _ = tcp.set_nodelay(true);
        });
        let mut shutdown = state.shared.shutdown_signal();
        let server =
            axum::serve(listener, router(state.clone())).with_graceful_shutdown(async move {
                let _ = shutdown.wait_for(|down| *down).await;
            });
        tokio::spawn(async move {
            // Serving only ends on shutdown; an accept error is retried inside axum.
            let _ = server.await;
        });
        Ok(MockUpstream { addr, state })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT/v1`.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// The shared state, e.g. to turn recording off.
    pub fn state(&self) -> &MockState {
        &self.state
    }

    /// Every request received, in order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.state.requests()
    }

    /// Changes the accepted credential at run time (`None` = accept any).
    pub fn set_expected_key(&self, key: Option<String>) {
        self.state.set_expected_key(key);
    }

    /// Sets the options every request gets from now on; see [`MockState::set_options`].
    pub fn set_options(&self, options: serde_json::Value) -> Result<(), OptionError> {
        self.state.set_options(options)
    }

    /// Waits (without polling) until the n-th (0-based) streamed response has ended — completed,
    /// aborted, or dropped because the client went away — and returns its record.
    pub async fn wait_stream_end(&self, n: usize) -> StreamRecord {
        self.state.wait_stream_end(n).await
    }

    /// Every streamed response started, in start order; running ones show their progress so far.
    pub fn streams(&self) -> Vec<StreamRecord> {
        self.state.streams()
    }

    /// Turns recording on or off; see [`MockState::set_recording`].
    pub fn set_recording(&self, on: bool) {
        self.state.set_recording(on);
    }
}

impl Drop for MockUpstream {
    fn drop(&mut self) {
        self.state.shut_down();
    }
}
