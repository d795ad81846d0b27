//! The Gemini INBOUND translation against real traffic: the request Gemini CLI 0.61.0 sent
//! (`fixtures/gemini_cli_request.json`, recorded) becomes a chat request with every tool and its
//! JSON schema kept; and every recorded Gemini SSE stream (`shared/fixtures/real/google`), decoded
//! to chat chunks by the outbound translation and turned back into Gemini events by
//! `inbound::GeminiStream`, says what the recording said: the same text, thoughts, function calls
//! (whole, with their arguments) and finish reason, with its usage on the last event.

mod real_fixtures;

use bytes::BytesMut;
use serde_json::{json, Value};
use switchyard_wire::gemini::inbound::{gemini_to_chat, Framing, GeminiStream};
use switchyard_wire::gemini::StreamTranslator;
use switchyard_wire::sse;

#[test]
fn the_recorded_gemini_cli_request_becomes_chat() {
    let recorded: Value =
        serde_json::from_str(include_str!("fixtures/gemini_cli_request.json")).unwrap();
    let body: Value = serde_json::from_str(recorded["body"].as_str().unwrap()).unwrap();
    let plan = gemini_to_chat(&body, "gemini-2.5-flash", true).unwrap();
    assert!(plan.stream);
    assert!(plan.include_thoughts, "includeThoughts: true");
    assert!(plan.dropped.is_empty(), "{:?}", plan.dropped);
    let b = &plan.body;
    let messages = b["messages"].as_array().unwrap();
    assert_eq!(messages[0]["role"], "system");
    assert!(messages[0]["content"]
        .as_str()
        .unwrap()
        .starts_with("You are a non-interactive CLI agent"));
    assert_eq!(messages[1]["role"], "user");
    let parts = messages[1]["content"].as_array().unwrap();
    assert_eq!(parts.len(), 2);
    assert_eq!(
        parts[1],
        json!({"type": "text", "text": "Read notes.txt and quote it"})
    );
    // Every declaration, its JSON schema as sent.
    let declared = body["tools"][0]["functionDeclarations"].as_array().unwrap();
    let tools = b["tools"].as_array().unwrap();
    assert_eq!(tools.len(), declared.len());
    for (t, d) in tools.iter().zip(declared) {
        assert_eq!(t["type"], "function");
        assert_eq!(t["function"]["name"], d["name"]);
        assert_eq!(t["function"]["description"], d["description"]);
        assert_eq!(t["function"]["parameters"], d["parametersJsonSchema"]);
    }
    assert!(tools
        .iter()
        .any(|t| t["function"]["name"] == "google_web_search"));
    assert_eq!(b["temperature"], 1);
    assert_eq!(b["top_p"], 0.95);
    assert!(b.get("top_k").is_none());
    assert_eq!(b["reasoning_effort"], "medium");
    assert_eq!(
        b["thinking"],
        json!({"type": "enabled", "budget_tokens": 8192})
    );
    assert_eq!(b["stream_options"]["include_usage"], true);
}

/// Text, thought text, calls (name, args) and the last finish reason of Gemini events.
#[derive(Debug, Default, PartialEq)]
struct Said {
    text: String,
    thoughts: String,
    calls: Vec<(String, Value)>,
    finish: Option<String>,
}

fn said(events: &[Value]) -> Said {
    let mut s = Said::default();
    for e in events {
        let c = &e["candidates"][0];
        for p in c["content"]["parts"].as_array().into_iter().flatten() {
            if let Some(call) = p.get("functionCall") {
                s.calls.push((
                    call["name"].as_str().unwrap().to_owned(),
                    call.get("args").cloned().unwrap_or(json!({})),
                ));
            } else if let Some(t) = p["text"].as_str() {
                if p["thought"] == true {
                    s.thoughts.push_str(t);
                } else {
                    s.text.push_str(t);
                }
            }
        }
        if let Some(f) = c["finishReason"].as_str() {
            s.finish = Some(f.to_owned());
        }
    }
    s
}

fn data_events(bytes: &[u8]) -> Vec<Value> {
    let mut d = sse::Decoder::new();
    d.push(bytes);
    std::iter::from_fn(|| d.next_event())
        .map(|e| serde_json::from_slice(&e.data).unwrap())
        .collect()
}

#[test]
fn every_recorded_stream_survives_the_round_trip_through_chat() {
    let Some(dir) = real_fixtures::dir("google") else {
        return;
    };
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("sse") {
            continue;
        }
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let recorded = data_events(&std::fs::read(&path).unwrap());
        // Chat chunks from the outbound translation, with usage as the relay adds it.
        let mut t = StreamTranslator::new("chatcmpl-x".into(), "gemini-x".into(), 1);
        let mut chunks = Vec::new();
        for e in &recorded {
            t.push(&e.to_string()).unwrap();
            chunks.extend(t.drain());
        }
        if let Some(u) = t.usage_chunk() {
            chunks.push(u);
        }
        let mut s = GeminiStream::new(Framing::Sse, "gemini-x".into(), "r".into(), true);
        let mut out = BytesMut::new();
        for c in &chunks {
            s.chunk_data(c.to_string().as_bytes(), &mut out);
        }
        s.finish(&mut out);
        let ours = data_events(&out);
        let (want, got) = (said(&recorded), said(&ours));
        assert_eq!(got, want, "{name}");
        let last = ours.last().unwrap();
        assert!(last["candidates"][0]["finishReason"].is_string(), "{name}");
        let recorded_usage = recorded
            .iter()
            .rev()
            .find_map(|e| e.get("usageMetadata"))
            .unwrap();
        assert_eq!(
            last["usageMetadata"]["promptTokenCount"], recorded_usage["promptTokenCount"],
            "{name}"
        );
        assert_eq!(
            last["usageMetadata"]["thoughtsTokenCount"].as_u64(),
            recorded_usage["thoughtsTokenCount"].as_u64(),
            "{name}"
        );
        for e in &ours[..ours.len() - 1] {
            assert!(e.get("usageMetadata").is_none(), "{name}");
        }
        seen += 1;
    }
    assert!(seen >= 5, "only {seen} recorded streams");
}
