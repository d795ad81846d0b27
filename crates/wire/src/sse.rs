//! Server-Sent Events framing: an incremental decoder that follows the WHATWG rules (LF, CRLF
//! and CR line endings, comments, multi-line data) and the few writers the gateway needs.
//!
//! The decoder is fed network chunks as they arrive and hands out complete events. An event with a
//! single `data:` line (the case for every real provider) is returned as a slice of the received
//! bytes, without copying, and so is every event's `raw` text: its lines exactly as they came
//! (comments, CRLF and all), through the blank line that ended it, for a relay that forwards the
//! upstream's events as they are. Its work is linear in its input: the search for a line end resumes where
//! the last one stopped, so a line that arrives one byte at a time is scanned once. It is bounded:
//! a line longer than [`Limits::max_line`], or an event whose lines together exceed
//! [`Limits::max_event`] (the values of its `data:` and `event:` lines, and every other line of it
//! whole), is a [`LimitExceeded`] error, after which the decoder keeps nothing and
//! yields nothing.

use bytes::{Bytes, BytesMut};

/// One dispatched event: its `event:` name, if any, its data (lines joined with `\n`), and its
/// bytes as received (`raw`: every line since the previous event, terminators included, through
/// the blank line that dispatched it; empty for an event made by hand).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub name: Option<Bytes>,
    pub data: Bytes,
    pub raw: Bytes,
}

impl Event {
    /// The event name as text (`""` when the event had no `event:` line).
    pub fn name_str(&self) -> &str {
        self.name
            .as_deref()
            .and_then(|n| std::str::from_utf8(n).ok())
            .unwrap_or("")
    }

    /// Whether this is the OpenAI end marker `data: [DONE]`.
    pub fn is_done(&self) -> bool {
        self.data.starts_with(b"[DONE]")
    }
}

/// How much one line and one event may hold, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The longest line (its terminator excluded).
    pub max_line: usize,
    /// The most one event's lines may add up to: the values of its `data:` and `event:` lines,
    /// and its other lines (comments, `id:`, unknown fields) whole.
    pub max_event: usize,
}

impl Limits {
    /// 1 MiB per line, 8 MiB per event: far above any real provider's chunk, low enough that an
    /// upstream sending one endless line cannot grow the gateway's memory without bound.
    pub const DEFAULT: Limits = Limits {
        max_line: 1024 * 1024,
        max_event: 8 * 1024 * 1024,
    };
}

impl Default for Limits {
    fn default() -> Self {
        Limits::DEFAULT
    }
}

/// The input broke one of the decoder's [`Limits`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitExceeded {
    /// A line longer than `limit` bytes.
    Line { limit: usize },
    /// An event larger than `limit` bytes.
    Event { limit: usize },
}

impl std::fmt::Display for LimitExceeded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LimitExceeded::Line { limit } => {
                write!(f, "an SSE line is longer than the limit of {limit} bytes")
            }
            LimitExceeded::Event { limit } => {
                write!(f, "an SSE event is larger than the limit of {limit} bytes")
            }
        }
    }
}

impl std::error::Error for LimitExceeded {}

/// Incremental SSE decoder. Push bytes with [`Decoder::push`], take events with
/// [`Decoder::try_next_event`] (or [`Decoder::next_event`], which does not say why it stopped).
#[derive(Debug, Default)]
pub struct Decoder {
    /// The lines of the event being read (`..consumed`), then what is not a whole line yet.
    buf: BytesMut,
    /// `buf[..consumed]` are the event's lines read so far, terminators included: its raw bytes.
    consumed: usize,
    /// `buf[consumed..scanned]` holds no line terminator: the next search starts there.
    scanned: usize,
    /// Where in `buf` the `event:` value and the first `data:` value are.
    name: Option<(usize, usize)>,
    data: Option<(usize, usize)>,
    /// Set when an event has more than one data line; the lines are joined here.
    joined: Option<BytesMut>,
    /// The bytes of the event being read so far, as the limit counts them.
    event_len: usize,
    /// A CR ended the previous line; an LF at the start of the next chunk belongs to it.
    skip_lf: bool,
    limits: Limits,
    /// Set once a limit was broken; nothing more is buffered or yielded.
    failed: Option<LimitExceeded>,
    /// Every byte examined in the search for line ends (to prove the search is linear).
    #[cfg(test)]
    examined: usize,
}

impl Decoder {
    /// A decoder with the default [`Limits`].
    pub fn new() -> Self {
        Self::default()
    }

    /// A decoder with the given limits.
    pub fn with_limits(limits: Limits) -> Self {
        Decoder {
            limits,
            ..Self::default()
        }
    }

    /// Appends received bytes (dropped once a limit was broken).
    pub fn push(&mut self, chunk: &[u8]) {
        if self.failed.is_none() {
            self.buf.extend_from_slice(chunk);
        }
    }

    /// Bytes received but not yet part of a dispatched event.
    pub fn pending_len(&self) -> usize {
        self.buf.len()
    }

    /// The limits this decoder enforces.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// The limit the input broke, if it did.
    pub fn error(&self) -> Option<LimitExceeded> {
        self.failed
    }

    /// Returns the next complete event, or `None` when more bytes are needed, or when a limit was
    /// broken (see [`Decoder::error`] and [`Decoder::try_next_event`]).
    pub fn next_event(&mut self) -> Option<Event> {
        self.try_next_event().ok().flatten()
    }

    /// Returns the next complete event, `Ok(None)` when more bytes are needed, or the limit the
    /// input broke (then and on every later call).
    pub fn try_next_event(&mut self) -> Result<Option<Event>, LimitExceeded> {
        loop {
            if let Some(e) = self.failed {
                return Err(e);
            }
            let Some((start, end)) = self.next_line() else {
                return match self.failed {
                    Some(e) => Err(e),
                    None => Ok(None),
                };
            };
            if start == end {
                if let Some(event) = self.dispatch() {
                    return Ok(Some(event));
                }
                continue;
            }
            self.field(start, end);
        }
    }

    /// Stops for good: nothing buffered is kept.
    fn fail(&mut self, e: LimitExceeded) {
        self.failed = Some(e);
        self.buf = BytesMut::new();
        self.consumed = 0;
        self.scanned = 0;
        self.name = None;
        self.data = None;
        self.joined = None;
    }

    /// The next whole line, as its range in `buf` (terminator excluded); the line and its
    /// terminator join the event's raw bytes.
    fn next_line(&mut self) -> Option<(usize, usize)> {
        if self.skip_lf && self.buf.len() > self.consumed {
            if self.buf[self.consumed] == b'\n' {
                self.consumed += 1;
            }
            self.skip_lf = false;
        }
        let from = self.scanned.max(self.consumed).min(self.buf.len());
        #[cfg(test)]
        {
            self.examined += self.buf.len() - from;
        }
        let start = self.consumed;
        let Some(at) = self.buf[from..]
            .iter()
            .position(|&b| b == b'\n' || b == b'\r')
        else {
            self.scanned = self.buf.len();
            if self.buf.len() - start > self.limits.max_line {
                self.fail(LimitExceeded::Line {
                    limit: self.limits.max_line,
                });
            }
            return None;
        };
        let end = from + at;
        if end - start > self.limits.max_line {
            self.fail(LimitExceeded::Line {
                limit: self.limits.max_line,
            });
            return None;
        }
        let mut next = end + 1;
        if self.buf[end] == b'\r' {
            if next == self.buf.len() {
                self.skip_lf = true;
            } else if self.buf[next] == b'\n' {
                next += 1;
            }
        }
        self.consumed = next;
        self.scanned = next;
        Some((start, end))
    }

    /// Counts `n` bytes against the event limit; false (and the decoder failed) past it.
    fn count(&mut self, n: usize) -> bool {
        self.event_len = self.event_len.saturating_add(n);
        if self.event_len > self.limits.max_event {
            self.fail(LimitExceeded::Event {
                limit: self.limits.max_event,
            });
            return false;
        }
        true
    }

    fn field(&mut self, start: usize, end: usize) {
        let line = &self.buf[start..end];
        let colon = line.iter().position(|&b| b == b':');
        let (field_end, value_start) = match colon {
            Some(0) => {
                self.count(end - start + 1); // a comment: kept in the raw bytes only
                return;
            }
            Some(i) => {
                let v = start + i + 1;
                (
                    start + i,
                    if self.buf.get(v) == Some(&b' ') && v < end {
                        v + 1
                    } else {
                        v
                    },
                )
            }
            None => (end, end),
        };
        let value = (value_start, end);
        match &self.buf[start..field_end] {
            b"data" => {
                if !self.count(end - value_start + 1) {
                    return;
                }
                match (&mut self.joined, self.data) {
                    (Some(joined), _) => {
                        joined.extend_from_slice(b"\n");
                        joined.extend_from_slice(&self.buf[value_start..end]);
                    }
                    (None, Some((fs, fe))) => {
                        let mut joined = BytesMut::with_capacity(fe - fs + end - value_start + 1);
                        joined.extend_from_slice(&self.buf[fs..fe]);
                        joined.extend_from_slice(b"\n");
                        joined.extend_from_slice(&self.buf[value_start..end]);
                        self.joined = Some(joined);
                    }
                    (None, None) => self.data = Some(value),
                }
            }
            b"event" => {
                if self.count(end - value_start + 1) {
                    self.name = Some(value);
                }
            }
            // id, retry and unknown fields carry nothing the gateway uses
            _ => {
                self.count(end - start + 1);
            }
        }
    }

    fn dispatch(&mut self) -> Option<Event> {
        self.event_len = 0;
        let raw = self.buf.split_to(self.consumed).freeze();
        self.consumed = 0;
        self.scanned = 0;
        let name = self.name.take().map(|(s, e)| raw.slice(s..e));
        let data = match (self.joined.take(), self.data.take()) {
            (Some(joined), _) => joined.freeze(),
            (None, Some((s, e))) => raw.slice(s..e),
            // Lines without data (comments, a stray blank line): nothing to dispatch, and
            // nothing of them is kept.
            (None, None) => return None,
        };
        Some(Event { name, data, raw })
    }
}

/// `data: [DONE]` and its blank line.
pub const DONE: &[u8] = b"data: [DONE]\n\n";
/// The keep-alive comment sent while the upstream is silent.
pub const KEEP_ALIVE: &[u8] = b": keep-alive\n\n";

/// Writes `data: <payload>\n\n`. The payload must be one line of JSON.
pub fn write_data(out: &mut BytesMut, payload: &[u8]) {
    out.reserve(payload.len() + 8);
    out.extend_from_slice(b"data: ");
    out.extend_from_slice(payload);
    out.extend_from_slice(b"\n\n");
}

/// Writes `event: <name>\ndata: <payload>\n\n`.
pub fn write_named(out: &mut BytesMut, name: &str, payload: &[u8]) {
    out.reserve(name.len() + payload.len() + 16);
    out.extend_from_slice(b"event: ");
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\n");
    write_data(out, payload);
}

/// Writes a comment line `: <text>\n\n`. The text must not contain a line break.
pub fn write_comment(out: &mut BytesMut, text: &[u8]) {
    out.reserve(text.len() + 4);
    out.extend_from_slice(b": ");
    out.extend_from_slice(text);
    out.extend_from_slice(b"\n\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(chunks: &[&[u8]]) -> Vec<Event> {
        let mut d = Decoder::new();
        let mut out = vec![];
        for c in chunks {
            d.push(c);
            while let Some(e) = d.next_event() {
                out.push(e);
            }
        }
        out
    }

    #[test]
    fn single_data_lines_split_anywhere() {
        let stream = b"data: {\"a\":1}\n\n: keep-alive\n\ndata: [DONE]\n\n";
        for cut in 0..stream.len() {
            let events = all(&[&stream[..cut], &stream[cut..]]);
            assert_eq!(events.len(), 2, "cut at {cut}");
            assert_eq!(&events[0].data[..], b"{\"a\":1}");
            assert!(events[1].is_done());
        }
    }

    #[test]
    fn crlf_and_cr_endings_and_event_names() {
        let events = all(&[
            b"event: message_start\r\ndata: {}\r\n\r\nevent: ping\rdata: x\r",
            b"\r",
        ]);
        assert_eq!(events.len(), 2);
        assert_eq!(events[0].name_str(), "message_start");
        assert_eq!(events[1].name_str(), "ping");
        assert_eq!(&events[1].data[..], b"x");
    }

    #[test]
    fn crlf_split_between_chunks_is_one_line_end() {
        let events = all(&[b"data: a\r", b"\n\r\n"]);
        assert_eq!(events.len(), 1);
        assert_eq!(&events[0].data[..], b"a");
    }

    #[test]
    fn multi_line_data_is_joined_and_empty_events_skipped() {
        let events = all(&[b"data: a\ndata:b\n\n\n\nid: 3\n\ndata\n\n"]);
        assert_eq!(events.len(), 2);
        assert_eq!(&events[0].data[..], b"a\nb");
        assert_eq!(&events[1].data[..], b"");
    }

    #[test]
    fn every_event_keeps_its_bytes_as_received_at_every_split() {
        let raws: [&[u8]; 3] = [
            b"event: message_delta\ndata: {\"a\":1}\n\n",
            b": note\r\ndata: x\r\ndata:y\r\n\r\n",
            b"event: ping\rid: 7\rdata: {\"type\": \"ping\"}\r\r",
        ];
        // Stray blank lines between the first and second event belong to neither.
        let stream = [raws[0], b"\n\n", raws[1], raws[2]].concat();
        let events = all(&[&stream]);
        assert_eq!(events.len(), 3);
        for (e, raw) in events.iter().zip(raws) {
            assert_eq!(&e.raw[..], raw);
        }
        assert_eq!(&events[1].data[..], b"x\ny");
        assert_eq!(events[2].name_str(), "ping");
        for cut in 0..stream.len() {
            let events = all(&[&stream[..cut], &stream[cut..]]);
            assert_eq!(events.len(), 3, "cut at {cut}");
            // A CRLF split between two reads may end one event at its CR and start the next
            // with its LF; written one after the other, they are still the bytes received.
            let joined: Vec<u8> = events.iter().flat_map(|e| e.raw.to_vec()).collect();
            assert_eq!(joined, raws.concat(), "cut at {cut}");
        }
    }

    #[test]
    fn comments_count_against_the_event_limit() {
        let mut d = Decoder::with_limits(SMALL);
        for _ in 0..5 {
            d.push(b": 01234567890123456789012345\n");
        }
        assert_eq!(d.try_next_event(), Err(LimitExceeded::Event { limit: 100 }));
        // Comments alone between events are dropped with their blank line.
        let mut d = Decoder::with_limits(SMALL);
        for _ in 0..50 {
            d.push(b": 0123456789\n\ndata: 0123456789\n\n");
            assert_eq!(
                &d.try_next_event().unwrap().unwrap().raw[..],
                b"data: 0123456789\n\n"
            );
            assert_eq!(d.pending_len(), 0);
        }
    }

    #[test]
    fn writers_frame_events() {
        let mut out = BytesMut::new();
        write_data(&mut out, b"{}");
        write_named(&mut out, "response.created", b"{}");
        write_comment(&mut out, b"keep-alive");
        assert_eq!(
            &out[..],
            b"data: {}\n\nevent: response.created\ndata: {}\n\n: keep-alive\n\n"
        );
    }

    const SMALL: Limits = Limits {
        max_line: 64,
        max_event: 100,
    };

    #[test]
    fn a_line_fed_one_byte_at_a_time_is_scanned_once() {
        let line = vec![b'x'; 100_000];
        let mut d = Decoder::new();
        d.push(b"data: ");
        for b in &line {
            d.push(std::slice::from_ref(b));
            assert_eq!(d.try_next_event(), Ok(None));
        }
        d.push(b"\n\n");
        let e = d.try_next_event().unwrap().unwrap();
        assert_eq!(e.data.len(), line.len());
        // Every byte is examined once (plus the terminators), not once per push.
        assert!(
            d.examined <= line.len() + 16,
            "{} bytes examined",
            d.examined
        );
    }

    #[test]
    fn an_endless_line_is_an_error_and_nothing_more_is_kept() {
        let mut d = Decoder::with_limits(SMALL);
        let mut pushed = 0;
        let err = loop {
            d.push(b"xxxxxxxxxx");
            pushed += 10;
            match d.try_next_event() {
                Ok(None) => assert!(pushed <= 64 + 10, "still buffering after {pushed} bytes"),
                Ok(Some(e)) => panic!("an event from a line without end: {e:?}"),
                Err(e) => break e,
            }
        };
        assert_eq!(err, LimitExceeded::Line { limit: 64 });
        d.push(b"\n\ndata: {}\n\n");
        assert_eq!(d.pending_len(), 0, "a failed decoder buffers nothing");
        assert_eq!(d.try_next_event(), Err(err));
        assert_eq!(d.next_event(), None);
        assert_eq!(d.error(), Some(err));
    }

    #[test]
    fn a_long_line_in_one_chunk_is_an_error() {
        let mut d = Decoder::with_limits(SMALL);
        let mut chunk = b"data: ".to_vec();
        chunk.extend_from_slice(&[b'y'; 80]);
        chunk.extend_from_slice(b"\n\n");
        d.push(&chunk);
        assert_eq!(d.try_next_event(), Err(LimitExceeded::Line { limit: 64 }));
    }

    #[test]
    fn many_data_lines_over_the_event_limit_are_an_error() {
        let mut d = Decoder::with_limits(SMALL);
        // Each line is within the line limit; together they are not.
        for _ in 0..5 {
            d.push(b"data: 0123456789012345678901234\n");
        }
        assert_eq!(d.try_next_event(), Err(LimitExceeded::Event { limit: 100 }));
        // Events up to the limit, one after another, are fine: the count restarts per event.
        let mut d = Decoder::with_limits(SMALL);
        for _ in 0..50 {
            d.push(b"data: 0123456789\ndata: 0123456789\n\n");
            assert_eq!(
                d.try_next_event().unwrap().unwrap().data.len(),
                21,
                "{:?}",
                d.error()
            );
        }
    }

    #[test]
    fn limits_hold_at_every_split() {
        let stream = b"event: a\ndata: 0123456789\n\n: comment\r\ndata: [DONE]\r\n\r\n";
        for cut in 0..stream.len() {
            let mut d = Decoder::with_limits(SMALL);
            let mut out = vec![];
            for part in [&stream[..cut], &stream[cut..]] {
                d.push(part);
                while let Some(e) = d.try_next_event().unwrap() {
                    out.push(e);
                }
            }
            assert_eq!(out.len(), 2, "cut at {cut}");
            assert_eq!(out[0].name_str(), "a");
            assert!(out[1].is_done());
        }
    }
}
