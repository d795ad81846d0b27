//! Fuzzes the SSE decoder (`switchyard_wire::sse::Decoder`) with arbitrary bytes: the events must not
//! depend on how the stream is cut into chunks (whole, one byte at a time, or cuts chosen by the
//! input's first bytes), and nothing the decoder hands out or keeps may exceed what it was given.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchyard_wire::sse::{Decoder, Event};

/// Decodes `chunks` in order, taking every event after each push, as the gateway's pump does.
fn decode<'a>(chunks: impl IntoIterator<Item = &'a [u8]>) -> (Vec<Event>, usize) {
    let mut decoder = Decoder::new();
    let mut events = Vec::new();
    let mut pushed = 0;
    for chunk in chunks {
        decoder.push(chunk);
        pushed += chunk.len();
        while let Some(event) = decoder.next_event() {
            assert!(event.data.len() <= pushed, "an event larger than its input");
            events.push(event);
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
    assert_eq!(whole, bytewise, "one byte at a time");
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
    assert_eq!(whole, decode(chunks), "in chunks");
    for event in &whole.0 {
        let _ = (event.name_str(), event.is_done());
    }
});
