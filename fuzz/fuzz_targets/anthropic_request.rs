//! Fuzzes the chat → Anthropic Messages translation (`anthropic::chat_request_to_messages`) with
//! arbitrary JSON, and checks what the hold relies on: `anthropic::upstream_max_tokens` refuses no
//! request the translation accepts, and equals the `max_tokens` the translation sends.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use switchyard_wire::anthropic::{chat_request_to_messages, upstream_max_tokens};
use switchyard_wire::openai::ChatRequest;

fuzz_target!(|data: &[u8]| {
    // The first two bytes pick the default max_tokens (as a route's limit would); the rest is the body.
    let (head, body) = data.split_at(data.len().min(2));
    let default_max = head.iter().fold(1u32, |acc, b| acc * 256 + u32::from(*b));
    let Ok(req) = serde_json::from_slice::<Value>(body) else {
        return;
    };
    let translated = chat_request_to_messages(&req, "claude-fuzz", default_max);
    let bound = req.as_object().map(|o| upstream_max_tokens(o, default_max));
    if let Ok(messages) = &translated {
        let sent = messages["max_tokens"].as_u64().expect("max_tokens is sent");
        assert_eq!(
            bound,
            Some(Ok(sent)),
            "the hold's max_tokens is what is sent"
        );
        assert_eq!(messages["model"], "claude-fuzz");
        assert!(messages["messages"].is_array());
        let _ = serde_json::to_vec(messages).expect("a Value serialises");
    }
    // The gateway only translates what the chat door accepted; both must hold together there too.
    if let Ok(chat) = ChatRequest::parse(body) {
        let translated =
            chat_request_to_messages(&Value::Object(chat.body.clone()), "c", default_max);
        if let Ok(messages) = translated {
            assert_eq!(
                upstream_max_tokens(&chat.body, default_max).ok(),
                messages["max_tokens"].as_u64()
            );
        }
    }
});
