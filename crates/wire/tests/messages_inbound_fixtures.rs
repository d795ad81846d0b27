//! The inbound Messages stream against the recorded Anthropic transcripts: every recorded
//! `messages-stream-*.sse` is decoded to chat chunks (the outbound `StreamTranslator`) and turned
//! back into Messages events (`inbound::MessagesStream`); the result must have the recording's
//! shape: the same content blocks in the same order with the same text, thinking, signature and
//! tool-input JSON, the same stop reason, and the event grammar (start, ping, blocks, delta, stop).

#[path = "real_fixtures/mod.rs"]
mod real_fixtures;

use bytes::BytesMut;
use serde_json::Value;
use switchyard_wire::anthropic::inbound::MessagesStream;
use switchyard_wire::anthropic::StreamTranslator;
use switchyard_wire::sse;

/// (event name, data) of an SSE body.
fn events(bytes: &[u8]) -> Vec<(String, Value)> {
    let mut d = sse::Decoder::new();
    d.push(bytes);
    std::iter::from_fn(|| d.next_event())
        .map(|e| {
            (
                e.name_str().to_owned(),
                serde_json::from_slice(&e.data).unwrap(),
            )
        })
        .collect()
}

/// Blocks as (type, accumulated text/thinking/partial JSON, signature) and the stop reason.
fn summary(ev: &[(String, Value)]) -> (Vec<(String, String, String)>, String) {
    let mut blocks: Vec<(String, String, String)> = vec![];
    let mut stop = String::new();
    for (_, v) in ev {
        match v["type"].as_str().unwrap_or_default() {
            "content_block_start" => blocks.push((
                v["content_block"]["type"].as_str().unwrap().to_owned(),
                String::new(),
                String::new(),
            )),
            "content_block_delta" => {
                let b = blocks.last_mut().unwrap();
                let d = &v["delta"];
                for k in ["text", "thinking", "partial_json"] {
                    b.1.push_str(d[k].as_str().unwrap_or_default());
                }
                b.2.push_str(d["signature"].as_str().unwrap_or_default());
            }
            "message_delta" => {
                stop = v["delta"]["stop_reason"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned()
            }
            _ => {}
        }
    }
    // A tool's input as the SDKs read it: no input JSON at all is `{}`.
    for b in blocks.iter_mut().filter(|b| b.0 == "tool_use") {
        let input: Value = if b.1.is_empty() {
            Value::Object(Default::default())
        } else {
            serde_json::from_str(&b.1).unwrap()
        };
        b.1 = input.to_string();
    }
    (blocks, stop)
}

#[test]
fn recorded_anthropic_streams_round_trip_through_chat_into_the_same_messages_stream() {
    let Some(dir) = real_fixtures::dir("anthropic") else {
        return;
    };
    let mut checked = 0;
    let mut paths: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let n = p.file_name().unwrap().to_string_lossy();
            // redacted_thinking has no chat form: it is not part of the round trip.
            n.starts_with("messages-stream-") && n.ends_with(".sse") && !n.contains("redacted")
        })
        .collect();
    paths.sort();
    for path in paths {
        let name = path.display().to_string();
        let recorded = events(&std::fs::read(&path).unwrap());
        let mut up = StreamTranslator::new("chatcmpl-x".into(), "m".into(), 0);
        let mut inbound = MessagesStream::new("msg_x".into(), "m".into());
        let mut out = BytesMut::new();
        for (n, v) in &recorded {
            up.push(n, &v.to_string()).unwrap();
            for chunk in up.drain() {
                inbound.chunk_data(chunk.to_string().as_bytes(), &mut out);
            }
        }
        if let Some(u) = up.usage_chunk() {
            inbound.chunk_data(u.to_string().as_bytes(), &mut out);
        }
        inbound.finish(&mut out);
        let ours = events(&out);
        for (n, v) in &ours {
            assert_eq!(v["type"], n.as_str(), "{name}");
        }
        let names: Vec<&str> = ours.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(&names[..2], ["message_start", "ping"], "{name}");
        assert_eq!(
            &names[names.len() - 2..],
            ["message_delta", "message_stop"],
            "{name}"
        );
        let (ours_blocks, ours_stop) = summary(&ours);
        let (rec_blocks, rec_stop) = summary(&recorded);
        assert_eq!(ours_blocks, rec_blocks, "{name}");
        assert_eq!(ours_stop, rec_stop, "{name}");
        let usage = &ours[ours.len() - 2].1["usage"];
        let recorded_delta = &recorded
            .iter()
            .rfind(|(n, _)| n == "message_delta")
            .unwrap()
            .1;
        assert_eq!(
            usage["output_tokens"], recorded_delta["usage"]["output_tokens"],
            "{name}"
        );
        let input = &recorded[0].1["message"]["usage"]["input_tokens"];
        assert_eq!(&usage["input_tokens"], input, "{name}");
        checked += 1;
    }
    assert!(checked >= 5, "only {checked} recordings checked");
}
