//! Fuzzes the Responses request door: arbitrary bytes parsed as JSON and translated by
//! `responses::request_to_chat`, as `POST /v1/responses` does. An accepted request must become a chat
//! body the chat door accepts too (same model and stream flag), and a chain must continue: the
//! conversation stored after a reply (`conversation_after`) is valid history for the next turn.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::{json, Value};
use switchyard_wire::openai::ChatRequest;
use switchyard_wire::responses::{
    chat_completion_to_response, conversation_after, request_to_chat, ResponseContext,
};

fuzz_target!(|data: &[u8]| {
    let Ok(req) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let Ok(plan) = request_to_chat(&req, &[]) else {
        return;
    };
    let body = serde_json::to_vec(&plan.body).expect("a Value serialises");
    let chat = ChatRequest::parse(&body);
    if let Ok(chat) = &chat {
        assert_eq!(chat.model, plan.model);
        assert_eq!(chat.stream, plan.stream);
    }

    // The reply the upstream might give, as a Response, and the next turn of the chain.
    let completion = json!({
        "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": plan.model,
        "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
            "role": "assistant", "content": "ok", "reasoning_content": "thought",
            "tool_calls": [{"id": "call_1", "type": "function",
                            "function": {"name": "f", "arguments": "{}"}}],
        }}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    });
    let ctx = ResponseContext::new("resp_fuzz", plan.model.clone(), 1, plan.echo.clone());
    let response = chat_completion_to_response(&completion, ctx);
    let history = conversation_after(plan.messages(), &response);
    let next = json!({
        "model": plan.model,
        "previous_response_id": "resp_fuzz",
        "input": [{"type": "function_call_output", "call_id": "call_1", "output": "42"}],
    });
    let next_plan = request_to_chat(&next, &history);
    if chat.is_ok() {
        let next_plan = next_plan.expect("a stored chain continues");
        let body = serde_json::to_vec(&next_plan.body).expect("a Value serialises");
        ChatRequest::parse(&body).expect("the next turn is a valid chat request");
    }
    // The same request again, on top of that history.
    let _ = request_to_chat(&req, &history);
});
