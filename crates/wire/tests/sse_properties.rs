//! Property tests of the SSE framing: any sequence of events (data with newlines, CRs and unicode,
//! comments, event names, ids), encoded with the writers in `sse.rs` and LF, CRLF or CR line endings,
//! decodes to the same events whether the decoder gets it whole, split at any byte, or in random chunks.

use bytes::BytesMut;
use proptest::prelude::*;
use switchyard_wire::sse::{self, Decoder};

/// What a stream carries, in order.
#[derive(Debug, Clone)]
enum Item {
    /// An event: optional `event:` name and its data text, which may hold line breaks.
    Event { name: Option<String>, data: String },
    /// A `: text` comment (a keep-alive).
    Comment(String),
    /// An `id:` line with a blank line after it: dispatches nothing.
    Id(String),
}

/// What the decoder must hand out for one event: its name and its data, with every line break of
/// the data (CRLF, CR or LF) as the LF that joins `data:` lines.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Decoded {
    name: Option<String>,
    data: String,
}

#[derive(Debug, Clone, Copy)]
enum LineEnding {
    Lf,
    CrLf,
    Cr,
}

/// Text without line breaks: ASCII, spaces and colons (field separators), and multi-byte UTF-8.
fn line_text() -> impl Strategy<Value = String> {
    let ch = prop_oneof![
        4 => proptest::char::range('a', 'z'),
        1 => Just(' '),
        1 => Just(':'),
        1 => Just('é'),
        1 => Just('€'),
        1 => Just('😀'),
        1 => Just('\u{a0}'),
    ];
    proptest::collection::vec(ch, 0..12).prop_map(|cs| cs.into_iter().collect())
}

/// Text with line breaks of every kind.
fn data_text() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        6 => line_text(),
        1 => Just("\n".to_owned()),
        1 => Just("\r\n".to_owned()),
        1 => Just("\r".to_owned()),
    ];
    proptest::collection::vec(piece, 0..6).prop_map(|ps| ps.concat())
}

fn item() -> impl Strategy<Value = Item> {
    prop_oneof![
        6 => (proptest::option::of(line_text()), data_text())
            .prop_map(|(name, data)| Item::Event { name, data }),
        1 => line_text().prop_map(Item::Comment),
        1 => line_text().prop_map(Item::Id),
    ]
}

fn ending() -> impl Strategy<Value = LineEnding> {
    prop_oneof![
        Just(LineEnding::Lf),
        Just(LineEnding::CrLf),
        Just(LineEnding::Cr)
    ]
}

/// The lines of `text`, split at CRLF, CR and LF.
fn lines(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = text;
    loop {
        match rest.find(['\r', '\n']) {
            None => {
                out.push(rest);
                return out;
            }
            Some(i) => {
                out.push(&rest[..i]);
                let skip = if rest[i..].starts_with("\r\n") { 2 } else { 1 };
                rest = &rest[i + skip..];
            }
        }
    }
}

/// Encodes `items` with the gateway's writers: `write_named`/`write_data` for one-line data, one
/// `data:` line per line otherwise, `write_comment` for comments. Returns the bytes (line ends LF)
/// and the events a decoder must produce.
fn encode(items: &[Item]) -> (Vec<u8>, Vec<Decoded>) {
    let mut out = BytesMut::new();
    let mut expected = Vec::new();
    for item in items {
        match item {
            Item::Event { name, data } => {
                let data_lines = lines(data);
                match (name, data_lines.as_slice()) {
                    (Some(name), [one]) => sse::write_named(&mut out, name, one.as_bytes()),
                    (None, [one]) => sse::write_data(&mut out, one.as_bytes()),
                    (name, many) => {
                        if let Some(name) = name {
                            out.extend_from_slice(format!("event: {name}\n").as_bytes());
                        }
                        for line in many {
                            out.extend_from_slice(format!("data: {line}\n").as_bytes());
                        }
                        out.extend_from_slice(b"\n");
                    }
                }
                expected.push(Decoded {
                    name: name.clone(),
                    data: data_lines.join("\n"),
                });
            }
            Item::Comment(text) => sse::write_comment(&mut out, text.as_bytes()),
            Item::Id(id) => out.extend_from_slice(format!("id: {id}\n\n").as_bytes()),
        }
    }
    (out.to_vec(), expected)
}

/// `bytes` (LF line ends only, as the writers produce) with every LF made `ending`.
fn with_ending(bytes: &[u8], ending: LineEnding) -> Vec<u8> {
    let eol: &[u8] = match ending {
        LineEnding::Lf => b"\n",
        LineEnding::CrLf => b"\r\n",
        LineEnding::Cr => b"\r",
    };
    let mut out = Vec::with_capacity(bytes.len() * 2);
    for &b in bytes {
        if b == b'\n' {
            out.extend_from_slice(eol);
        } else {
            out.push(b);
        }
    }
    out
}

/// Feeds `chunks` to a fresh decoder, taking events after each, as the gateway's pump does.
fn decode<'a>(chunks: impl IntoIterator<Item = &'a [u8]>) -> Vec<Decoded> {
    let mut decoder = Decoder::new();
    let mut out = Vec::new();
    for chunk in chunks {
        decoder.push(chunk);
        while let Some(event) = decoder.next_event() {
            out.push(Decoded {
                name: event.name.map(|n| String::from_utf8(n.to_vec()).unwrap()),
                data: String::from_utf8(event.data.to_vec()).unwrap(),
            });
        }
    }
    out
}

/// Cuts `bytes` into consecutive chunks of the given lengths (cycled); a length of 0 pushes an empty
/// chunk and then one byte.
fn chunked<'a>(bytes: &'a [u8], lengths: &[usize]) -> Vec<&'a [u8]> {
    let mut out = Vec::new();
    let mut rest = bytes;
    for &len in lengths.iter().cycle() {
        if rest.is_empty() {
            break;
        }
        if len == 0 {
            out.push(&rest[..0]);
        }
        let (head, tail) = rest.split_at(len.clamp(1, rest.len()));
        out.push(head);
        rest = tail;
    }
    out
}

proptest! {
    // Failures are shown shrunk; no regression file is written next to the test.
    #![proptest_config(ProptestConfig {
        cases: 96,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn events_decode_the_same_when_split_at_any_byte(
        items in proptest::collection::vec(item(), 0..8),
        ending in ending(),
    ) {
        let (lf, expected) = encode(&items);
        let bytes = with_ending(&lf, ending);
        prop_assert_eq!(&decode([bytes.as_slice()]), &expected);
        for cut in 0..=bytes.len() {
            let (a, b) = bytes.split_at(cut);
            prop_assert_eq!(&decode([a, b]), &expected, "cut at byte {}", cut);
        }
    }

    #[test]
    fn events_decode_the_same_in_random_chunks(
        items in proptest::collection::vec(item(), 0..8),
        ending in ending(),
        lengths in proptest::collection::vec(0usize..7, 1..16),
    ) {
        let (lf, expected) = encode(&items);
        let bytes = with_ending(&lf, ending);
        prop_assert_eq!(decode(chunked(&bytes, &lengths)), expected);
    }

    #[test]
    fn one_byte_at_a_time_decodes_every_event(
        items in proptest::collection::vec(item(), 0..8),
        ending in ending(),
    ) {
        let (lf, expected) = encode(&items);
        let bytes = with_ending(&lf, ending);
        prop_assert_eq!(decode(bytes.chunks(1)), expected);
    }
}

#[test]
fn multi_line_data_in_every_line_ending_is_joined_with_lf() {
    let items = [Item::Event {
        name: Some("delta".into()),
        data: "a\r\nb\rc\nd".into(),
    }];
    let (lf, expected) = encode(&items);
    assert_eq!(expected[0].data, "a\nb\nc\nd");
    for ending in [LineEnding::Lf, LineEnding::CrLf, LineEnding::Cr] {
        assert_eq!(decode([with_ending(&lf, ending).as_slice()]), expected);
    }
}
