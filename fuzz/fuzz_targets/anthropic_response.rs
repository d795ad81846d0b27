//! Fuzzes what the gateway reads from an Anthropic upstream that is not a stream: a Message body
//! (`anthropic::message_to_chat_completion`) and an error body at any status
//! (`anthropic::error_to_openai`). An error body must map to a gateway status in 400..=599 and an
//! OpenAI-shaped error in which no `sk-…` credential the upstream echoed survives.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use switchyard_wire::anthropic::{error_to_openai, message_to_chat_completion};

/// Whether `text` holds `sk-` at the start of a word followed by 8 or more key characters.
fn has_credential(text: &str) -> bool {
    let is_key_char = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
    text.match_indices("sk-").any(|(pos, _)| {
        let starts_word = text[..pos]
            .chars()
            .next_back()
            .is_none_or(|c| !is_key_char(c));
        let run = text[pos + 3..]
            .chars()
            .take_while(|c| is_key_char(*c))
            .count();
        starts_word && run >= 8
    })
}

/// Every string in `v`, keys included.
fn strings(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) => out.push(s.clone()),
        Value::Array(items) => items.iter().for_each(|i| strings(i, out)),
        Value::Object(map) => {
            for (k, v) in map {
                out.push(k.clone());
                strings(v, out);
            }
        }
        _ => {}
    }
}

fuzz_target!(|data: &[u8]| {
    // The first two bytes are the HTTP status; the rest is the body.
    let (head, body) = data.split_at(data.len().min(2));
    let status = head.iter().fold(0u16, |acc, b| {
        acc.wrapping_mul(256).wrapping_add(u16::from(*b))
    });
    let (gateway_status, error) = error_to_openai(status, body);
    assert!(
        (400..=599).contains(&gateway_status),
        "status {gateway_status}"
    );
    let e = &error["error"];
    assert!(e["message"].is_string() && e["type"].is_string(), "{error}");
    let echoed_credential = serde_json::from_slice::<Value>(body).is_ok_and(|v| {
        let mut all = Vec::new();
        strings(&v, &mut all);
        all.iter().any(|s| has_credential(s))
    });
    if echoed_credential {
        let mut out = Vec::new();
        strings(&error, &mut out);
        for s in out {
            assert!(
                !has_credential(&s),
                "a credential reached the caller: {s:?}"
            );
        }
    }

    if let Ok(message) = serde_json::from_slice::<Value>(body) {
        if let Ok(completion) = message_to_chat_completion(&message, "chatcmpl-1", "m", 1) {
            assert_eq!(completion["object"], "chat.completion");
            let choice = &completion["choices"][0];
            assert!(choice["finish_reason"].is_string());
            if let Some(calls) = choice["message"]["tool_calls"].as_array() {
                for call in calls {
                    let args = call["function"]["arguments"]
                        .as_str()
                        .expect("arguments is a string");
                    serde_json::from_str::<Value>(args).expect("arguments is JSON");
                }
            }
        }
    }
});
