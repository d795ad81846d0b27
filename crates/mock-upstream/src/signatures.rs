//! Reasoning signatures as the real APIs require them (the `signatures` option): what the mock
//! issues is remembered in [`Shared`], and a follow-up turn must send back exactly what was issued
//! for the tool calls it answers. Anthropic: with `thinking` enabled, the assistant turn before a
//! user turn of `tool_result`s must carry its `thinking` block with the signature issued with its
//! `tool_use`. Gemini: the first `functionCall` part of each model turn of the current exchange
//! must carry the `thoughtSignature` issued for it. Responses (`store: false`): every
//! `function_call_output` answering a call the mock made must come with that response's
//! `reasoning` item and its exact `encrypted_content`. Each check returns the vendor's words.

use serde_json::Value;

use crate::recording::Shared;

fn anthropic_key(tool_use_id: &str) -> String {
    format!("anthropic:{tool_use_id}")
}

fn anthropic_signature_key(signature: &str) -> String {
    format!("anthropic-signature:{signature}")
}

/// Remembers the thinking signature issued with these tool uses.
pub(crate) fn issue_anthropic(shared: &Shared, signature: &str, tool_use_ids: &[String]) {
    shared.issue(anthropic_signature_key(signature), String::new());
    for id in tool_use_ids {
        shared.issue(anthropic_key(id), signature.to_string());
    }
}

/// The Anthropic check: `Err(message)` for a 400 `invalid_request_error`.
pub(crate) fn check_anthropic(shared: &Shared, request: &Value) -> Result<(), String> {
    let Some(messages) = request.get("messages").and_then(Value::as_array) else {
        return Ok(());
    };
    let Some(user_at) = messages
        .iter()
        .rposition(|m| m.get("role").and_then(Value::as_str) == Some("user"))
    else {
        return Ok(());
    };
    let has_results = messages[user_at]
        .get("content")
        .and_then(Value::as_array)
        .is_some_and(|blocks| {
            blocks
                .iter()
                .any(|b| b.get("type").and_then(Value::as_str) == Some("tool_result"))
        });
    if !has_results {
        return Ok(());
    }
    let Some(assistant_at) = messages[..user_at]
        .iter()
        .rposition(|m| m.get("role").and_then(Value::as_str) == Some("assistant"))
    else {
        return Ok(());
    };
    let blocks = messages[assistant_at]
        .get("content")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    let signatures: Vec<&str> = blocks
        .iter()
        .filter(|b| b.get("type").and_then(Value::as_str) == Some("thinking"))
        .filter_map(|b| b.get("signature").and_then(Value::as_str))
        .collect();
    if signatures.is_empty() {
        return Err(format!(
            "messages.{assistant_at}.content.0.type: Expected `thinking` or `redacted_thinking`, but found `{}`. When `thinking` is enabled, a final `assistant` message must start with a thinking block (preceeding the lastmost set of `tool_use` and `tool_result` blocks). We recommend you include thinking blocks from previous turns. To avoid this requirement, disable `thinking`.",
            blocks
                .first()
                .and_then(|b| b.get("type"))
                .and_then(Value::as_str)
                .unwrap_or("text")
        ));
    }
    let invalid = || {
        Err(format!(
            "messages.{assistant_at}.content.0: Invalid `signature` in `thinking` block"
        ))
    };
    for id in blocks
        .iter()
        .filter(|b| b.get("type").and_then(Value::as_str) == Some("tool_use"))
        .filter_map(|b| b.get("id").and_then(Value::as_str))
    {
        match shared.issued(&anthropic_key(id)) {
            Some(expected) if !signatures.contains(&expected.as_str()) => return invalid(),
            _ => {}
        }
    }
    if !signatures
        .iter()
        .all(|s| shared.issued(&anthropic_signature_key(s)).is_some())
    {
        return invalid();
    }
    Ok(())
}

fn gemini_key(signature: &str) -> String {
    format!("gemini:{signature}")
}

/// The `thoughtSignature` of response `id`'s function calls (base64 text, as Google's).
pub(crate) fn gemini_signature(id: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(format!("mock-thought-signature:{id}"))
}

/// Remembers a thought signature issued with a call of `name`.
pub(crate) fn issue_gemini(shared: &Shared, signature: &str, name: &str) {
    shared.issue(gemini_key(signature), name.to_string());
}

/// The Gemini check: `Err(message)` for a 400 `INVALID_ARGUMENT`.
pub(crate) fn check_gemini(shared: &Shared, request: &Value) -> Result<(), String> {
    let Some(contents) = request.get("contents").and_then(Value::as_array) else {
        return Ok(());
    };
    // The current exchange starts after the last user turn of text (not function responses).
    let start = contents
        .iter()
        .rposition(|c| {
            c.get("role").and_then(Value::as_str) != Some("model")
                && c.get("parts").and_then(Value::as_array).is_some_and(|p| {
                    p.iter().any(|p| p.get("text").is_some())
                        && !p.iter().any(|p| p.get("functionResponse").is_some())
                })
        })
        .map_or(0, |i| i + 1);
    for (position, content) in contents.iter().enumerate().skip(start) {
        if content.get("role").and_then(Value::as_str) != Some("model") {
            continue;
        }
        let Some(part) = content
            .get("parts")
            .and_then(Value::as_array)
            .and_then(|p| p.iter().find(|p| p.get("functionCall").is_some()))
        else {
            continue;
        };
        let name = part
            .pointer("/functionCall/name")
            .and_then(Value::as_str)
            .unwrap_or("");
        let signature = part.get("thoughtSignature").and_then(Value::as_str);
        let valid = signature
            .and_then(|s| shared.issued(&gemini_key(s)))
            .is_some_and(|issued_for| issued_for == name);
        if !valid {
            return Err(match signature {
                None => format!("Function call is missing a thought_signature in functionCall parts. This is required for tools to work correctly, and missing thought_signature may lead to degraded model performance. Additional data, function call `default_api:{name}` , position {}.", position + 1),
                Some(_) => "Thought signature is not valid.".to_string(),
            });
        }
    }
    Ok(())
}

fn responses_key(call_id: &str) -> String {
    format!("responses:{call_id}")
}

/// Remembers the encrypted reasoning issued with these calls (and the reasoning item's id).
pub(crate) fn issue_responses(
    shared: &Shared,
    reasoning_id: &str,
    encrypted: &str,
    call_ids: &[String],
) {
    for id in call_ids {
        shared.issue(responses_key(id), format!("{reasoning_id}\n{encrypted}"));
    }
}

/// The Responses check (only with `store: false`): `Err(message)` for a 400 on `input`.
pub(crate) fn check_responses(shared: &Shared, request: &Value) -> Result<(), String> {
    if request.get("store").and_then(Value::as_bool) != Some(false) {
        return Ok(());
    }
    let Some(items) = request.get("input").and_then(Value::as_array) else {
        return Ok(());
    };
    let sent: Vec<&str> = items
        .iter()
        .filter(|i| i.get("type").and_then(Value::as_str) == Some("reasoning"))
        .filter_map(|i| i.get("encrypted_content").and_then(Value::as_str))
        .collect();
    for item in items
        .iter()
        .filter(|i| i.get("type").and_then(Value::as_str) == Some("function_call_output"))
    {
        let call_id = item.get("call_id").and_then(Value::as_str).unwrap_or("");
        let Some(issued) = shared.issued(&responses_key(call_id)) else {
            continue;
        };
        let (reasoning_id, encrypted) = issued.split_once('\n').unwrap_or(("", ""));
        if !sent.contains(&encrypted) {
            return Err(format!(
                "Item with call_id '{call_id}' of type 'function_call_output' was provided without its required 'reasoning' item: '{reasoning_id}' (with its encrypted_content)."
            ));
        }
    }
    Ok(())
}
