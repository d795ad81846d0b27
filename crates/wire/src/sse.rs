//! Server-Sent Events framing: an incremental decoder that follows the WHATWG rules (LF, CRLF
//! and CR line endings, comments, multi-line data) and the few writers the gateway needs.
//!
//! The decoder is fed network chunks as they arrive and hands out complete events. An event with a
//! single `data:` line (the case for every real provider) is returned as a slice of the received
//! bytes, without copying.

use bytes::{Buf, Bytes, BytesMut};

/// One dispatched event: its `event:` name, if any, and its data (lines joined with `\n`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub name: Option<Bytes>,
    pub data: Bytes,
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

/// Incremental SSE decoder. Push bytes with [`Decoder::push`], take events with [`Decoder::next_event`].
#[derive(Debug, Default)]
pub struct Decoder {
    buf: BytesMut,
    name: Option<Bytes>,
    data: Option<Bytes>,
    /// Set when an event has more than one data line; the lines are joined here.
    joined: Option<BytesMut>,
    /// A CR ended the previous line; an LF at the start of the next chunk belongs to it.
    skip_lf: bool,
}

impl Decoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends received bytes.
    pub fn push(&mut self, chunk: &[u8]) {
        self.buf.extend_from_slice(chunk);
    }

    /// Bytes received but not yet part of a dispatched event.
    pub fn pending_len(&self) -> usize {
        self.buf.len()
    }

    /// Returns the next complete event, or `None` when more bytes are needed.
    pub fn next_event(&mut self) -> Option<Event> {
        while let Some(line) = self.next_line() {
            if line.is_empty() {
                if let Some(event) = self.dispatch() {
                    return Some(event);
                }
                continue;
            }
            self.field(line);
        }
        None
    }

    fn next_line(&mut self) -> Option<Bytes> {
        if self.skip_lf && !self.buf.is_empty() {
            if self.buf[0] == b'\n' {
                self.buf.advance(1);
            }
            self.skip_lf = false;
        }
        let end = self.buf.iter().position(|&b| b == b'\n' || b == b'\r')?;
        let line = self.buf.split_to(end).freeze();
        let terminator = self.buf[0];
        self.buf.advance(1);
        if terminator == b'\r' {
            if self.buf.is_empty() {
                self.skip_lf = true;
            } else if self.buf[0] == b'\n' {
                self.buf.advance(1);
            }
        }
        Some(line)
    }

    fn field(&mut self, line: Bytes) {
        if line[0] == b':' {
            return; // comment
        }
        let (field, value) = match line.iter().position(|&b| b == b':') {
            Some(i) => {
                let mut value = line.slice(i + 1..);
                if value.first() == Some(&b' ') {
                    value.advance(1);
                }
                (line.slice(..i), value)
            }
            None => (line.clone(), Bytes::new()),
        };
        match &field[..] {
            b"data" => match (&mut self.joined, &self.data) {
                (Some(joined), _) => {
                    joined.extend_from_slice(b"\n");
                    joined.extend_from_slice(&value);
                }
                (None, Some(first)) => {
                    let mut joined = BytesMut::with_capacity(first.len() + value.len() + 1);
                    joined.extend_from_slice(first);
                    joined.extend_from_slice(b"\n");
                    joined.extend_from_slice(&value);
                    self.joined = Some(joined);
                }
                (None, None) => self.data = Some(value),
            },
            b"event" => self.name = Some(value),
            _ => {} // id, retry and unknown fields carry nothing the gateway uses
        }
    }

    fn dispatch(&mut self) -> Option<Event> {
        let name = self.name.take();
        let data = match (self.joined.take(), self.data.take()) {
            (Some(joined), _) => joined.freeze(),
            (None, Some(data)) => data,
            (None, None) => return None,
        };
        Some(Event { name, data })
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
}
