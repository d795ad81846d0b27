//! Criterion micro-benchmarks of the wire crate's streaming hot paths, each reported as events
//! per second (issue 13, M9): SSE decoding and writing, the borrowed chunk view, the same-dialect
//! forward (parse + copy, the wire's share of M6's per-chunk budget), Anthropic events → chat
//! chunks (the upstream translation), chat chunks → Anthropic events (the Messages inbound
//! stream), chat chunks → Responses events, and Gemini → chat.
//!
//! The inputs are built here, shaped like recorded provider streams (sizes, field order, a
//! thinking block with its signature, a tool call streamed as JSON fragments), so the bench runs
//! on a clean clone. Run with `cargo bench -p switchyard-wire --bench hot_paths`.

use std::hint::black_box;

use bytes::BytesMut;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use serde_json::Value;
use switchyard_wire::anthropic::inbound::MessagesStream;
use switchyard_wire::openai::ChunkView;
use switchyard_wire::responses::{encode_sse, ResponseContext, StreamBuilder};
use switchyard_wire::sse;
use switchyard_wire::upstream::{Chunk, Dialect, Stamp, UpstreamDecoder, UpstreamEvent};

/// The size of one network read the decoder is fed (a typical TCP segment's payload).
const READ: usize = 1400;

const WORDS: [&str; 8] = [
    " the",
    " gateway",
    " forwards",
    " every",
    " token",
    " as",
    " it",
    " arrives",
];

/// An OpenAI chat stream as the upstream sends it: a role chunk, 64 content chunks of ~190 bytes,
/// the finish chunk, the usage chunk and `[DONE]`.
fn openai_stream() -> Vec<u8> {
    let head = r#"{"id":"chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG","object":"chat.completion.chunk","created":1741570283,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_eb9dce56a8","choices":[{"index":0,"delta":"#;
    let mut body = Vec::new();
    let mut frame = |delta: &str, finish: &str| {
        body.extend_from_slice(b"data: ");
        body.extend_from_slice(head.as_bytes());
        body.extend_from_slice(delta.as_bytes());
        body.extend_from_slice(br#","logprobs":null,"finish_reason":"#);
        body.extend_from_slice(finish.as_bytes());
        body.extend_from_slice(b"}]}\n\n");
    };
    frame(
        r#"{"role":"assistant","content":"","refusal":null}"#,
        "null",
    );
    for i in 0..64 {
        frame(
            &format!(r#"{{"content":"{}"}}"#, WORDS[i % WORDS.len()]),
            "null",
        );
    }
    frame("{}", r#""stop""#);
    body.extend_from_slice(br#"data: {"id":"chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG","object":"chat.completion.chunk","created":1741570283,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_eb9dce56a8","choices":[],"usage":{"prompt_tokens":19,"completion_tokens":64,"total_tokens":83,"prompt_tokens_details":{"cached_tokens":0,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}}}"#);
    body.extend_from_slice(b"\n\ndata: [DONE]\n\n");
    body
}

/// An Anthropic Messages stream: message_start, a thinking block (16 deltas and a signature),
/// a text block (48 deltas), a tool_use block (12 input_json_delta fragments), message_delta,
/// message_stop, with the pings Anthropic sends.
fn anthropic_stream() -> Vec<u8> {
    let mut body = String::new();
    let mut ev = |name: &str, data: &str| {
        body.push_str("event: ");
        body.push_str(name);
        body.push_str("\ndata: ");
        body.push_str(data);
        body.push_str("\n\n");
    };
    ev(
        "message_start",
        r#"{"type":"message_start","message":{"model":"claude-sonnet-4-5-20250929","id":"msg_01JdU4xqNHXL9QCFWkwCDKGr","type":"message","role":"assistant","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":598,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"cache_creation":{"ephemeral_5m_input_tokens":0,"ephemeral_1h_input_tokens":0},"output_tokens":8,"service_tier":"standard"}}}"#,
    );
    ev(
        "content_block_start",
        r#"{"type":"content_block_start","index":0,"content_block":{"type":"thinking","thinking":"","signature":""}}"#,
    );
    ev("ping", r#"{"type": "ping"}"#);
    for i in 0..16 {
        ev(
            "content_block_delta",
            &format!(
                r#"{{"type":"content_block_delta","index":0,"delta":{{"type":"thinking_delta","thinking":"{} the user wants"}}}}"#,
                WORDS[i % WORDS.len()]
            ),
        );
    }
    ev(
        "content_block_delta",
        r#"{"type":"content_block_delta","index":0,"delta":{"type":"signature_delta","signature":"EoQDCm0IDhgCKkCDzGs2kL2PgnDCZU/nM2wG2P1VIXCRHVnhDDzBQxNF1fl4QBXEKLxRItNJ2MwFdW9eeZPhsxSQIxD54cv3zs29MhljbGF1ZGUtaGFpa3UtNC01LTIwMjUxMDAxOAASDN4b2hJ3Uk3gYJ8qBhoMZ5zZQm0T0c1UjgpXIjBw3xOAV8gF7e+Rqf1Y0Y5bqYv3uXxq2gT2qv0S3mU9bE5pQ9x0Q=="}}"#,
    );
    ev(
        "content_block_stop",
        r#"{"type":"content_block_stop","index":0}"#,
    );
    ev(
        "content_block_start",
        r#"{"type":"content_block_start","index":1,"content_block":{"type":"text","text":""}}"#,
    );
    for i in 0..48 {
        ev(
            "content_block_delta",
            &format!(
                r#"{{"type":"content_block_delta","index":1,"delta":{{"type":"text_delta","text":"{}"}}}}"#,
                WORDS[i % WORDS.len()]
            ),
        );
    }
    ev(
        "content_block_stop",
        r#"{"type":"content_block_stop","index":1}"#,
    );
    ev(
        "content_block_start",
        r#"{"type":"content_block_start","index":2,"content_block":{"type":"tool_use","id":"toolu_01T1x1fJ34qAmk2tNTrN7Up6","name":"get_weather","input":{}}}"#,
    );
    let args = [
        "", "{\"loc", "ation\":", " \"San", " Franc", "isco,", " CA\"", ", \"un", "it\": ",
        "\"fahr", "enheit", "\"}",
    ];
    for a in args {
        let a = a.replace('"', "\\\"");
        ev(
            "content_block_delta",
            &format!(
                r#"{{"type":"content_block_delta","index":2,"delta":{{"type":"input_json_delta","partial_json":"{a}"}}}}"#
            ),
        );
    }
    ev(
        "content_block_stop",
        r#"{"type":"content_block_stop","index":2}"#,
    );
    ev(
        "message_delta",
        r#"{"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},"usage":{"output_tokens":89}}"#,
    );
    ev("message_stop", r#"{"type":"message_stop"}"#);
    body.into_bytes()
}

/// A Gemini stream (`alt=sse`): 32 text candidates, the last with its finishReason and usage.
fn gemini_stream() -> Vec<u8> {
    let mut body = String::new();
    for i in 0..32 {
        let finish = if i == 31 {
            r#","finishReason":"STOP""#
        } else {
            ""
        };
        let usage = if i == 31 {
            r#","usageMetadata":{"promptTokenCount":9,"candidatesTokenCount":32,"totalTokenCount":41}"#
        } else {
            ""
        };
        body.push_str(&format!(
            r#"data: {{"candidates":[{{"content":{{"parts":[{{"text":"{}"}}],"role":"model"}}{finish},"index":0}}]{usage},"modelVersion":"gemini-2.5-flash","responseId":"o2ZKaKf2DfmY1MkP2PyJwA4"}}"#,
            WORDS[i % WORDS.len()]
        ));
        body.push_str("\r\n\r\n");
    }
    body.into_bytes()
}

/// The chat stream a translated or mixed answer gives the client: role, 16 reasoning chunks, the
/// signature, 32 content chunks, a tool call (start + 11 argument fragments), the finish chunk
/// with usage and cost, as `data:` payloads (no framing).
fn chat_chunks() -> Vec<Vec<u8>> {
    let head = r#"{"id":"chatcmpl-sy-0e5b6c1d","object":"chat.completion.chunk","created":1741570283,"model":"claude-sonnet-4-5","choices":[{"index":0,"delta":"#;
    let chunk = |delta: &str, finish: &str, usage: &str| {
        format!(r#"{head}{delta},"logprobs":null,"finish_reason":{finish}}}]{usage}}}"#)
            .into_bytes()
    };
    let mut out = vec![chunk(r#"{"role":"assistant","content":""}"#, "null", "")];
    for i in 0..16 {
        out.push(chunk(
            &format!(
                r#"{{"reasoning_content":"{} the user wants"}}"#,
                WORDS[i % WORDS.len()]
            ),
            "null",
            "",
        ));
    }
    out.push(chunk(
        r#"{"reasoning_signature":"EoQDCm0IDhgCKkCDzGs2kL2PgnDCZU/nM2wG2P1VIXCRHVnhDDzBQxNF1fl4QBXEKLxRItNJ2MwFdW9eeZPhsxSQIxD54cv3zs29Mhlj"}"#,
        "null",
        "",
    ));
    for i in 0..32 {
        out.push(chunk(
            &format!(r#"{{"content":"{}"}}"#, WORDS[i % WORDS.len()]),
            "null",
            "",
        ));
    }
    out.push(chunk(
        r#"{"tool_calls":[{"index":0,"id":"toolu_01T1x1fJ34qAmk2tNTrN7Up6","type":"function","function":{"name":"get_weather","arguments":""}}]}"#,
        "null",
        "",
    ));
    for a in [
        "{\\\"loc",
        "ation\\\":",
        " \\\"San",
        " Franc",
        "isco,",
        " CA\\\"",
        ", \\\"un",
        "it\\\": ",
        "\\\"fahr",
        "enheit",
        "\\\"}",
    ] {
        out.push(chunk(
            &format!(r#"{{"tool_calls":[{{"index":0,"function":{{"arguments":"{a}"}}}}]}}"#),
            "null",
            "",
        ));
    }
    out.push(chunk(
        "{}",
        r#""tool_calls""#,
        r#","usage":{"prompt_tokens":598,"completion_tokens":89,"total_tokens":687,"prompt_tokens_details":{"cached_tokens":0},"completion_tokens_details":{"reasoning_tokens":40},"cost":0.0031}"#,
    ));
    out
}

/// Every event of a whole SSE body, decoded once (the input of the per-event benches).
fn decode_all(body: &[u8]) -> Vec<sse::Event> {
    let mut d = sse::Decoder::new();
    d.push(body);
    let mut events = Vec::new();
    while let Some(e) = d.next_event() {
        events.push(e);
    }
    events
}

fn stamp() -> Stamp {
    Stamp {
        id: "chatcmpl-sy-0e5b6c1d".into(),
        model: "claude-sonnet-4-5".into(),
        created: 1_741_570_283,
    }
}

fn sse_benches(c: &mut Criterion) {
    let body = openai_stream();
    let events = decode_all(&body);
    let mut g = c.benchmark_group("sse");
    g.throughput(Throughput::Elements(events.len() as u64));
    g.bench_function("decode_openai_1400B_reads", |b| {
        b.iter(|| {
            let mut d = sse::Decoder::new();
            let mut n = 0usize;
            for piece in body.chunks(READ) {
                d.push(piece);
                while let Some(e) = d.next_event() {
                    n += e.data.len();
                }
            }
            black_box(n)
        })
    });
    let mut out = BytesMut::with_capacity(body.len() * 2);
    g.bench_function("write_data", |b| {
        b.iter(|| {
            out.clear();
            for e in &events {
                sse::write_data(&mut out, &e.data);
            }
            black_box(out.len())
        })
    });
    g.bench_function("write_named", |b| {
        b.iter(|| {
            out.clear();
            for e in &events {
                sse::write_named(&mut out, "content_block_delta", &e.data);
            }
            black_box(out.len())
        })
    });
    g.finish();
}

fn chat_benches(c: &mut Criterion) {
    let events = decode_all(&openai_stream());
    let mut g = c.benchmark_group("chat");
    g.throughput(Throughput::Elements(events.len() as u64));
    g.bench_function("chunk_view_parse", |b| {
        b.iter(|| {
            let mut n = 0usize;
            for e in &events {
                if let Some(v) = ChunkView::parse(&e.data) {
                    n += v.choices.len();
                }
            }
            black_box(n)
        })
    });
    // What the wire crate does per forwarded same-dialect chunk: the decoder's typed event (one
    // borrowed parse), the meter's walk over the text, one copy into the output buffer.
    let mut out = BytesMut::with_capacity(64 * 1024);
    g.bench_function("forward_same_dialect", |b| {
        b.iter(|| {
            out.clear();
            let mut dec = UpstreamDecoder::new(Dialect::OpenAi, Stamp::default());
            let mut text = 0usize;
            for e in &events {
                let Ok(evs) = dec.push(e) else { continue };
                for ev in evs {
                    if let UpstreamEvent::Chunk(Chunk::Borrowed { data, view }) = ev {
                        view.for_each_text(|s| text += s.len());
                        sse::write_data(&mut out, data);
                    }
                }
            }
            black_box((text, out.len()))
        })
    });
    g.finish();
}

/// Upstream translations: the decoder's events, each chunk serialised as the chat relay writes it.
fn translate(c: &mut Criterion, name: &str, dialect: Dialect, body: &[u8]) {
    let events = decode_all(body);
    let mut g = c.benchmark_group("upstream");
    g.throughput(Throughput::Elements(events.len() as u64));
    let mut out = BytesMut::with_capacity(64 * 1024);
    let mut scratch = Vec::with_capacity(1024);
    g.bench_function(name, |b| {
        b.iter(|| {
            out.clear();
            let mut dec = UpstreamDecoder::new(dialect, stamp());
            for e in &events {
                let Ok(evs) = dec.push(e) else { continue };
                for ev in evs {
                    if let UpstreamEvent::Chunk(chunk) = ev {
                        scratch.clear();
                        chunk.write_json(&mut scratch);
                        sse::write_data(&mut out, &scratch);
                    }
                }
            }
            black_box(out.len())
        })
    });
    g.finish();
}

fn upstream_benches(c: &mut Criterion) {
    translate(
        c,
        "anthropic_to_chat",
        Dialect::Anthropic,
        &anthropic_stream(),
    );
    translate(c, "gemini_to_chat", Dialect::Gemini, &gemini_stream());
}

fn inbound_benches(c: &mut Criterion) {
    let chunks = chat_chunks();
    let mut g = c.benchmark_group("inbound");
    g.throughput(Throughput::Elements(chunks.len() as u64));
    let mut out = BytesMut::with_capacity(64 * 1024);
    g.bench_function("chat_to_messages", |b| {
        b.iter(|| {
            out.clear();
            let mut s = MessagesStream::new("msg_sy_0e5b6c1d".into(), "claude-sonnet-4-5".into());
            for data in &chunks {
                s.chunk_data(data, &mut out);
            }
            s.finish(&mut out);
            black_box(out.len())
        })
    });
    let ctx = ResponseContext::new(
        "resp_0e5b6c1d",
        "claude-sonnet-4-5",
        1_741_570_283,
        Default::default(),
    );
    let mut events = Vec::with_capacity(256);
    let mut encoded = Vec::with_capacity(64 * 1024);
    // As the Responses relay runs it: each chunk read borrowed (a Value only for what the view
    // cannot read) and its events written straight to bytes; the terminal event as a value (the
    // relay adds the cost to it), then encoded.
    g.bench_function("chat_to_responses", |b| {
        b.iter(|| {
            encoded.clear();
            let mut builder = StreamBuilder::new(ctx.clone());
            builder.start_sse(&mut encoded);
            for data in &chunks {
                match ChunkView::parse(data) {
                    Some(view) if !view.has_message() => {
                        builder.push_chunk_view(&view, &mut encoded)
                    }
                    _ => {
                        if let Ok(v) = serde_json::from_slice::<Value>(data) {
                            builder.push_chunk(&v, &mut events);
                        }
                    }
                }
                for e in events.drain(..) {
                    encode_sse(&e, &mut encoded);
                }
            }
            builder.finish(None, &mut events);
            for e in events.drain(..) {
                encode_sse(&e, &mut encoded);
            }
            black_box(encoded.len())
        })
    });
    g.finish();
}

criterion_group!(
    benches,
    sse_benches,
    chat_benches,
    upstream_benches,
    inbound_benches
);
criterion_main!(benches);
