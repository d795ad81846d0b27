//! Finds SSE event boundaries in a streamed body's bytes, frame by frame, without parsing JSON, and
//! says of each event whether it carries content (a chat chunk with non-empty `content` or
//! `reasoning_content`, or a Responses/Anthropic `…delta` event other than `message_delta`), ends
//! the stream (`[DONE]`, `message_stop`, `response.completed`, `response.incomplete`) or reports an
//! error (`error`, `response.failed`, a chat `{"error":…}` payload). Only a line split across frames
//! is copied, into a buffer reused for the whole run.

/// What one complete event (a block ended by a blank line with at least one `data:` line) was.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Event {
    pub content: bool,
    pub terminal: bool,
    pub error: bool,
}

impl Event {
    fn add(&mut self, other: Event) {
        self.content |= other.content;
        self.terminal |= other.terminal;
        self.error |= other.error;
    }
}

/// The incremental scanner of one stream; `reset` before reusing it for the next.
#[derive(Debug, Default)]
pub(crate) struct SseScan {
    /// The start of a line whose end has not arrived yet.
    partial: Vec<u8>,
    /// What the `event:` line of the event being read said.
    named: Event,
    /// What its `data:` lines said.
    seen: Event,
    has_data: bool,
}

impl SseScan {
    pub(crate) fn reset(&mut self) {
        self.partial.clear();
        self.named = Event::default();
        self.seen = Event::default();
        self.has_data = false;
    }

    /// Reads one frame of the body, calling `on_event` for every event it completes.
    pub(crate) fn feed(&mut self, mut bytes: &[u8], mut on_event: impl FnMut(Event)) {
        while let Some(nl) = bytes.iter().position(|&b| b == b'\n') {
            let (head, rest) = bytes.split_at(nl);
            bytes = &rest[1..];
            if self.partial.is_empty() {
                self.line(head, &mut on_event);
            } else {
                let mut line = std::mem::take(&mut self.partial);
                line.extend_from_slice(head);
                self.line(&line, &mut on_event);
                line.clear();
                self.partial = line;
            }
        }
        self.partial.extend_from_slice(bytes);
    }

    fn line(&mut self, line: &[u8], on_event: &mut impl FnMut(Event)) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            if self.has_data {
                let mut ev = self.seen;
                ev.add(self.named);
                on_event(ev);
            }
            self.named = Event::default();
            self.seen = Event::default();
            self.has_data = false;
        } else if let Some(name) = line.strip_prefix(b"event:") {
            self.named = by_name(trim(name));
        } else if let Some(data) = line.strip_prefix(b"data:") {
            self.has_data = true;
            let data = trim(data);
            let ev = payload(data);
            self.seen.add(ev);
        }
    }
}

fn trim(s: &[u8]) -> &[u8] {
    s.strip_prefix(b" ").unwrap_or(s)
}

/// What an event type (`event:` line or a payload's first `"type"`) says.
fn by_name(name: &[u8]) -> Event {
    let content =
        (name.ends_with(b"_delta") || name.ends_with(b".delta")) && name != b"message_delta";
    let terminal = matches!(
        name,
        b"message_stop" | b"response.completed" | b"response.incomplete"
    );
    let error = matches!(name, b"error" | b"response.failed");
    Event {
        content,
        terminal,
        error,
    }
}

/// What one `data:` payload says.
fn payload(data: &[u8]) -> Event {
    if data == b"[DONE]" {
        return Event {
            terminal: true,
            ..Event::default()
        };
    }
    if data.starts_with(b"{\"error\"") {
        return Event {
            error: true,
            ..Event::default()
        };
    }
    if has_text(data, b"\"content\":\"") || has_text(data, b"\"reasoning_content\":\"") {
        return Event {
            content: true,
            ..Event::default()
        };
    }
    match find(data, b"\"type\":\"") {
        Some(at) => {
            let value = &data[at + 8..];
            let end = value.iter().position(|&b| b == b'"').unwrap_or(value.len());
            by_name(&value[..end])
        }
        None => Event::default(),
    }
}

/// Whether some occurrence of `key` (which ends with the value's opening quote) has a non-empty value.
fn has_text(mut data: &[u8], key: &[u8]) -> bool {
    while let Some(at) = find(data, key) {
        data = &data[at + key.len()..];
        if data.first().is_some_and(|&b| b != b'"') {
            return true;
        }
    }
    false
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(frames: &[&[u8]]) -> Vec<Event> {
        let mut scan = SseScan::default();
        let mut out = Vec::new();
        for f in frames {
            scan.feed(f, |e| out.push(e));
        }
        out
    }

    const CONTENT: Event = Event {
        content: true,
        terminal: false,
        error: false,
    };
    const DONE: Event = Event {
        content: false,
        terminal: true,
        error: false,
    };

    #[test]
    fn chat_chunks_split_anywhere_give_the_same_events() {
        let body: &[u8] = b"data: {\"choices\":[{\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}]}\n\n: keep-alive\n\ndata: {\"choices\":[{\"delta\":{\"content\":\"Hi\"}}]}\r\n\r\ndata: {\"choices\":[{\"delta\":{\"reasoning_content\":\"hm\"}}]}\n\ndata: [DONE]\n\n";
        let whole = events(&[body]);
        assert_eq!(whole, vec![Event::default(), CONTENT, CONTENT, DONE]);
        for cut in 0..body.len() {
            let (a, b) = body.split_at(cut);
            assert_eq!(events(&[a, b]), whole, "cut at {cut}");
        }
    }

    #[test]
    fn anthropic_and_responses_deltas_terminals_and_errors() {
        let body: &[u8] = b"event: message_start\ndata: {\"type\":\"message_start\"}\n\nevent: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"delta\":{\"text\":\"a\"}}\n\nevent: message_delta\ndata: {\"type\":\"message_delta\"}\n\nevent: message_stop\ndata: {\"type\":\"message_stop\"}\n\ndata: {\"type\":\"response.output_text.delta\",\"delta\":\"b\"}\n\ndata: {\"type\":\"response.completed\"}\n\nevent: error\ndata: {\"type\":\"error\"}\n\ndata: {\"error\":{\"message\":\"x\"}}\n\n";
        let e = events(&[body]);
        assert_eq!(e.len(), 8);
        assert_eq!(e[0], Event::default());
        assert_eq!(e[1], CONTENT);
        assert_eq!(e[2], Event::default());
        assert_eq!(e[3], DONE);
        assert_eq!(e[4], CONTENT);
        assert_eq!(e[5], DONE);
        assert!(e[6].error && e[7].error);
    }

    #[test]
    fn an_unfinished_event_is_not_reported() {
        assert!(events(&[b"data: {\"choices\":[{\"delta\":{\"content\":\"x\"}}]}\n"]).is_empty());
    }
}
