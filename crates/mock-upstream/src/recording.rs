//! The server's memory: every request received, one record per streamed response, the `fail_times`
//! counters, the accepted key and the shutdown signal. A [`StreamTracker`] travels inside each streamed
//! body and writes its record as tokens go out; its `Drop` notices a client that went away (hyper drops
//! the body) and wakes whoever waits in `wait_stream_end`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Instant;

use axum::http::{HeaderMap, Method, Uri};
use serde_json::Value;
use tokio::sync::watch;

use crate::options::{ServerOptions, Steering};

/// The vendor wire format a response was written in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    /// OpenAI Chat Completions.
    OpenAi,
    /// OpenAI Chat Completions with DeepSeek's `reasoning_content` and usage fields.
    DeepSeek,
    /// Anthropic Messages.
    Anthropic,
    /// Google Gemini `generateContent`.
    Gemini,
    /// OpenAI Responses (`POST /v1/responses`).
    Responses,
}

/// One request as the mock received it.
#[derive(Clone, Debug)]
pub struct RecordedRequest {
    pub method: String,
    /// The path and query, e.g. `/v1/chat/completions`.
    pub path: String,
    /// Header names are lowercase; order as received.
    pub headers: Vec<(String, String)>,
    /// The body parsed as JSON, `Value::Null` if it was not JSON.
    pub body: Value,
    pub received_at: Instant,
}

/// What happened to one streamed response.
#[derive(Clone, Debug)]
pub struct StreamRecord {
    /// Index of the request in [`crate::MockUpstream::requests`].
    pub request_index: usize,
    pub dialect: Dialect,
    /// Content, reasoning and tool-argument token chunks yielded to the connection.
    pub tokens_written: u32,
    /// The content tokens written, concatenated (reasoning excluded).
    pub text_written: String,
    /// The reasoning tokens written, concatenated.
    pub reasoning_written: String,
    /// The body was written to its planned end (an `error_after` event counts as the planned end).
    pub completed: bool,
    /// The body was dropped before its end because the client went away.
    pub client_disconnected: bool,
    pub started_at: Instant,
    /// When the stream ended; for a stream still running, the time of the snapshot.
    pub ended_at: Instant,
    pub last_token_at: Option<Instant>,
    /// Every byte of the body handed to the connection, in order (the planned frames; an endless
    /// line is not kept).
    pub bytes_written: Vec<u8>,
}

struct StreamSlot {
    record: StreamRecord,
    ended: bool,
}

/// How a stream ended, as told to [`StreamTracker::finish`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum StreamEnd {
    Completed,
    /// `reset_after`: the mock aborted the connection itself.
    Aborted,
    /// The server is shutting down.
    Shutdown,
    ClientGone,
}

/// What kind of token a chunk carries, for the stream record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum TokenKind {
    Content(std::borrow::Cow<'static, str>),
    Reasoning(&'static str),
    ToolArguments,
}

/// State shared by the handlers, the bodies and the [`crate::MockUpstream`] handle.
pub(crate) struct Shared {
    expected_key: RwLock<Option<String>>,
    steering: Steering,
    server_options: RwLock<Arc<ServerOptions>>,
    recording: AtomicBool,
    request_count: AtomicUsize,
    requests: Mutex<Vec<RecordedRequest>>,
    streams: Mutex<Vec<StreamSlot>>,
    stream_ended: watch::Sender<u64>,
    fail_counts: Mutex<HashMap<String, u32>>,
    /// Reasoning signatures issued under the `signatures` option: `dialect:key` -> value.
    issued: Mutex<HashMap<String, String>>,
    /// The `prompt_cache` option's cache: the hash of a scope and a message prefix -> its tokens.
    prompt_cache: Mutex<HashMap<u64, u32>>,
    shutdown: watch::Sender<bool>,
    salt: u32,
}

fn new_salt() -> u32 {
    static SERVERS: AtomicUsize = AtomicUsize::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let n = SERVERS.fetch_add(1, Ordering::Relaxed) as u32;
    nanos ^ std::process::id().rotate_left(16) ^ n.wrapping_mul(0x9e37_79b9)
}

/// Locks a mutex, recovering the data if a panicking thread poisoned it (the records stay usable).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    pub(crate) fn new(expected_key: Option<String>, steering: Steering) -> Shared {
        Shared {
            expected_key: RwLock::new(expected_key),
            steering,
            server_options: RwLock::new(Arc::default()),
            recording: AtomicBool::new(true),
            request_count: AtomicUsize::new(0),
            requests: Mutex::new(Vec::new()),
            streams: Mutex::new(Vec::new()),
            stream_ended: watch::Sender::new(0),
            fail_counts: Mutex::new(HashMap::new()),
            issued: Mutex::new(HashMap::new()),
            prompt_cache: Mutex::new(HashMap::new()),
            shutdown: watch::Sender::new(false),
            salt: new_salt(),
        }
    }

    /// The `prompt_cache` option: the tokens of the longest prefix of `prefixes` (each a hash of
    /// the scope and the messages so far, with its tokens) seen before in this scope; every
    /// prefix is remembered.
    pub(crate) fn cached_prefix(&self, prefixes: &[(u64, u32)]) -> u32 {
        let mut cache = lock(&self.prompt_cache);
        let hit = prefixes
            .iter()
            .rev()
            .find(|(h, _)| cache.contains_key(h))
            .map_or(0, |(_, tokens)| *tokens);
        for (h, tokens) in prefixes {
            cache.insert(*h, *tokens);
        }
        hit
    }

    /// A per-server number mixed into response ids, so two mocks in one process do not share ids.
    pub(crate) fn salt(&self) -> u32 {
        self.salt
    }

    pub(crate) fn expected_key(&self) -> Option<String> {
        self.expected_key
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub(crate) fn set_expected_key(&self, key: Option<String>) {
        *self.expected_key.write().unwrap_or_else(|e| e.into_inner()) = key;
    }

    /// Who may shape the responses; fixed when the server starts.
    pub(crate) fn steering(&self) -> Steering {
        self.steering
    }

    /// The server's own options, applied to every request.
    pub(crate) fn server_options(&self) -> Arc<ServerOptions> {
        Arc::clone(
            &self
                .server_options
                .read()
                .unwrap_or_else(|e| e.into_inner()),
        )
    }

    pub(crate) fn set_server_options(&self, options: ServerOptions) {
        *self
            .server_options
            .write()
            .unwrap_or_else(|e| e.into_inner()) = Arc::new(options);
    }

    pub(crate) fn set_recording(&self, on: bool) {
        self.recording.store(on, Ordering::SeqCst);
    }

    /// Records a request (when recording is on) and returns its index among all requests received.
    pub(crate) fn record_request(
        &self,
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
        body: &[u8],
    ) -> (usize, Value) {
        let received_at = Instant::now();
        let json: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
        let index = self.request_count.fetch_add(1, Ordering::SeqCst);
        if self.recording.load(Ordering::SeqCst) {
            let path = uri
                .path_and_query()
                .map(|p| p.as_str().to_string())
                .unwrap_or_else(|| uri.path().to_string());
            let headers = headers
                .iter()
                .map(|(k, v)| {
                    (
                        k.as_str().to_string(),
                        String::from_utf8_lossy(v.as_bytes()).into_owned(),
                    )
                })
                .collect();
            lock(&self.requests).push(RecordedRequest {
                method: method.to_string(),
                path,
                headers,
                body: json.clone(),
                received_at,
            });
        }
        (index, json)
    }

    pub(crate) fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.requests).clone()
    }

    pub(crate) fn streams(&self) -> Vec<StreamRecord> {
        let now = Instant::now();
        lock(&self.streams)
            .iter()
            .map(|s| {
                let mut r = s.record.clone();
                if !s.ended {
                    r.ended_at = now;
                }
                r
            })
            .collect()
    }

    /// Waits until the n-th stream (0-based, in start order) has ended and returns its record.
    pub(crate) async fn wait_stream_end(&self, n: usize) -> StreamRecord {
        // Subscribe before checking, so an end between the check and the wait is not missed.
        let mut changes = self.stream_ended.subscribe();
        loop {
            if let Some(slot) = lock(&self.streams).get(n) {
                if slot.ended {
                    return slot.record.clone();
                }
            }
            // The sender lives in `self`, so this cannot fail while we borrow it.
            let _ = changes.changed().await;
        }
    }

    /// Counts one request carrying `key` and says whether it is among the first `times`.
    pub(crate) fn should_fail(&self, key: &str, times: u32) -> bool {
        let mut counts = lock(&self.fail_counts);
        let count = counts.entry(key.to_string()).or_insert(0);
        *count = count.saturating_add(1);
        *count <= times
    }

    /// Remembers a signature issued (`signatures` option): `key` names what it belongs to.
    pub(crate) fn issue(&self, key: String, value: String) {
        lock(&self.issued).insert(key, value);
    }

    /// The value issued for `key`, if any.
    pub(crate) fn issued(&self, key: &str) -> Option<String> {
        lock(&self.issued).get(key).cloned()
    }

    pub(crate) fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.shutdown.subscribe()
    }

    pub(crate) fn shut_down(&self) {
        self.shutdown.send_replace(true);
    }
}

/// Keeps one stream's record up to date; finishes it exactly once, on drop at the latest.
pub(crate) struct StreamTracker {
    shared: Arc<Shared>,
    /// `None` when recording is off.
    slot: Option<usize>,
    finished: bool,
}

impl StreamTracker {
    pub(crate) fn start(shared: Arc<Shared>, request_index: usize, dialect: Dialect) -> Self {
        let slot = shared.recording.load(Ordering::SeqCst).then(|| {
            let now = Instant::now();
            let mut streams = lock(&shared.streams);
            streams.push(StreamSlot {
                record: StreamRecord {
                    request_index,
                    dialect,
                    tokens_written: 0,
                    text_written: String::new(),
                    reasoning_written: String::new(),
                    completed: false,
                    client_disconnected: false,
                    started_at: now,
                    ended_at: now,
                    last_token_at: None,
                    bytes_written: Vec::new(),
                },
                ended: false,
            });
            streams.len() - 1
        });
        StreamTracker {
            shared,
            slot,
            finished: false,
        }
    }

    fn update(&self, f: impl FnOnce(&mut StreamSlot)) {
        if let Some(slot) = self.slot {
            if let Some(s) = lock(&self.shared.streams).get_mut(slot) {
                f(s);
            }
        }
    }

    /// A frame is being handed to the connection; `token` when it is a token chunk.
    pub(crate) fn sent(&self, bytes: &[u8], token: Option<&TokenKind>) {
        let now = Instant::now();
        self.update(|s| {
            let r = &mut s.record;
            r.bytes_written.extend_from_slice(bytes);
            let Some(kind) = token else {
                return;
            };
            r.tokens_written += 1;
            r.last_token_at = Some(now);
            match kind {
                TokenKind::Content(t) => r.text_written.push_str(t),
                TokenKind::Reasoning(t) => r.reasoning_written.push_str(t),
                TokenKind::ToolArguments => {}
            }
        });
    }

    /// Ends the record (only the first call counts) and wakes the waiters.
    pub(crate) fn finish(&mut self, end: StreamEnd) {
        if self.finished {
            return;
        }
        self.finished = true;
        let now = Instant::now();
        self.update(|s| {
            s.ended = true;
            s.record.ended_at = now;
            s.record.completed = end == StreamEnd::Completed;
            s.record.client_disconnected = end == StreamEnd::ClientGone;
        });
        self.shared.stream_ended.send_modify(|v| *v += 1);
    }
}

impl Drop for StreamTracker {
    fn drop(&mut self) {
        // Dropped before its end: hyper let go of the body because the peer closed or errored.
        self.finish(StreamEnd::ClientGone);
    }
}
