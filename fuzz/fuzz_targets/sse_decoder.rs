//! Fuzzes the SSE decoder (`switchyard_wire::sse::Decoder`) with arbitrary bytes: the events must not
//! depend on how the stream is cut into chunks (whole, one byte at a time, or cuts chosen by the
//! input's first bytes), and nothing the decoder hands out or keeps may exceed what it was given.
//! An event's `raw` bytes are compared only for size: a CR LF cut between two reads may end one
//! event's raw at the CR and start the next with the LF (the bytes, written back to back, are the
//! same), so only names and data must not depend on the cuts, and the bytes still pending may
//! differ by that one LF.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use switchyard_wire::sse::Decoder;

/// An event's name and data: what must not depend on how the stream was cut.
type Decoded = (Option<Bytes>, Bytes);

/// Decodes `chunks` in order, taking every event after each push, as the gateway's pump does.
fn decode<'a>(chunks: impl IntoIterator<Item = &'a [u8]>) -> (Vec<Decoded>, usize) {
    let mut decoder = Decoder::new();
    let mut events = Vec::new();
    let mut pushed = 0;
    for chunk in chunks {
        decoder.push(chunk);
        pushed += chunk.len();
        while let Some(event) = decoder.next_event() {
            assert!(event.data.len() <= pushed, "an event larger than its input");
            assert!(event.raw.len() <= pushed, "raw bytes larger than the input");
            let _ = (event.name_str(), event.is_done());
            events.push((event.name, event.data));
        }
        assert!(decoder.pending_len() <= pushed, "more pending than pushed");
    }
    (events, decoder.pending_len())
}

fuzz_target!(|input: &[u8]| {
    // The first two bytes choose the chunk lengths (1..=16, cycled); the rest is the stream.
    let (cuts, stream) = input.split_at(input.len().min(2));
    let whole = decode([stream]);
    let bytewise = decode(stream.chunks(1));
    same(&whole, &bytewise, "one byte at a time");
    let mut chunks = Vec::new();
    let mut rest = stream;
    let mut i = 0;
    while !rest.is_empty() {
        let len = cuts
            .get(i % cuts.len().max(1))
            .map_or(1, |b| usize::from(b % 16) + 1);
        let (head, tail) = rest.split_at(len.min(rest.len()));
        chunks.push(head);
        chunks.push(&tail[..0]); // an empty read between two chunks changes nothing
        rest = tail;
        i += 1;
    }
    same(&whole, &decode(chunks), "in chunks");
});

/// The same events; pending bytes equal but for a CR LF's LF kept from a cut between the two.
fn same(a: &(Vec<Decoded>, usize), b: &(Vec<Decoded>, usize), how: &str) {
    assert_eq!(a.0, b.0, "{how}");
    assert!(a.1.abs_diff(b.1) <= 1, "{how}: pending {} vs {}", a.1, b.1);
}
