//! OpenAI chat request → Gemini `generateContent` / `streamGenerateContent` body.

use serde_json::{json, Map, Value};

use crate::anthropic::{TranslateError, DEFAULT_THINKING_BUDGET, THINKING_BUDGETS};

/// JSON-schema keywords Gemini's `functionDeclarations[].parameters` refuses; removed at every level.
const REFUSED_SCHEMA_KEYS: &[&str] = &["additionalProperties", "$schema", "strict", "$id"];

/// The thinking budget the request asks for: `thinking.budget_tokens` (an Anthropic-style object
/// sent through `extra_body`), else `reasoning_effort` (`none` is 0, the other names as in
/// [`THINKING_BUDGETS`]). `None` when the request says nothing about thinking.
pub fn thinking_budget(req: &Map<String, Value>) -> Result<Option<u64>, TranslateError> {
    if let Some(thinking) = req.get("thinking").filter(|t| !t.is_null()) {
        return match thinking.get("type").and_then(Value::as_str) {
            Some("enabled") => match thinking.get("budget_tokens").filter(|b| !b.is_null()) {
                None => Ok(Some(u64::from(DEFAULT_THINKING_BUDGET))),
                Some(b) => b.as_u64().map(Some).ok_or_else(|| {
                    TranslateError::new(
                        "thinking.budget_tokens",
                        "budget_tokens must be a non-negative integer",
                    )
                }),
            },
            Some("disabled") => Ok(Some(0)),
            _ => Err(TranslateError::new(
                "thinking.type",
                "thinking.type must be enabled or disabled",
            )),
        };
    }
    let Some(effort) = req.get("reasoning_effort").filter(|e| !e.is_null()) else {
        return Ok(None);
    };
    let effort = effort.as_str().unwrap_or_default();
    if effort == "none" {
        return Ok(Some(0));
    }
    match THINKING_BUDGETS.iter().find(|(name, _)| *name == effort) {
        Some(&(_, budget)) => Ok(Some(u64::from(budget))),
        None => Err(TranslateError::new(
            "reasoning_effort",
            "reasoning_effort must be one of none, minimal, low, medium, high, xhigh, max",
        )),
    }
}

/// The `maxOutputTokens` the translation sends: `max_completion_tokens`, else `max_tokens`, else
/// `default_max_tokens`, plus the thinking budget (Gemini counts thoughts in `maxOutputTokens`).
/// Per candidate; the output bound of a request is this times `n`.
pub fn upstream_max_output_tokens(
    req: &Map<String, Value>,
    default_max_tokens: u32,
) -> Result<u64, TranslateError> {
    let asked = ["max_completion_tokens", "max_tokens"]
        .iter()
        .find_map(|k| req.get(*k).filter(|v| !v.is_null()).map(|v| (*k, v)));
    let max = match asked {
        None => u64::from(default_max_tokens),
        Some((k, v)) => v
            .as_u64()
            .ok_or_else(|| TranslateError::new(k, format!("{k} must be a positive integer")))?,
    };
    Ok(max.saturating_add(thinking_budget(req)?.unwrap_or(0)))
}

/// Translates an OpenAI chat request into a Gemini request body (the model goes in the URL).
///
/// - `system`/`developer` → `systemInstruction`; `user` → `user`, `assistant` → `model`; consecutive
///   turns of one role are merged; `tool` messages → `functionResponse` parts of a user turn (the
///   function's name is taken from the assistant's call with that `tool_call_id`).
/// - `image_url` parts: `data:` URLs → `inlineData`, other URLs → `fileData`.
/// - `tools` → one `functionDeclarations` tool (schemas without [`REFUSED_SCHEMA_KEYS`]);
///   `tool_choice` → `toolConfig.functionCallingConfig` (`none` NONE, `auto` AUTO, `required` ANY,
///   a named function ANY with `allowedFunctionNames`).
/// - `generationConfig`: `maxOutputTokens` ([`upstream_max_output_tokens`]), `temperature`, `topP`,
///   `stopSequences`, `candidateCount` (`n`), `seed`, `presencePenalty`, `frequencyPenalty`,
///   `responseMimeType`/`responseSchema` from `response_format`, and `thinkingConfig`
///   (`includeThoughts` with `thinkingBudget`) when thinking is asked for.
pub fn chat_request_to_gemini(
    req: &Value,
    default_max_tokens: u32,
) -> Result<Value, TranslateError> {
    let req = req
        .as_object()
        .ok_or_else(|| TranslateError::new("body", "the request body must be a JSON object"))?;
    let messages = req
        .get("messages")
        .and_then(Value::as_array)
        .ok_or_else(|| TranslateError::new("messages", "messages must be an array"))?;

    let mut system: Vec<Value> = Vec::new();
    let mut contents: Vec<Value> = Vec::new();
    // tool_call_id → function name, from the assistant turns seen so far.
    let mut call_names: Vec<(String, String)> = Vec::new();
    for (i, m) in messages.iter().enumerate() {
        let role = m.get("role").and_then(Value::as_str).unwrap_or_default();
        let at = |f: &str| format!("messages[{i}].{f}");
        match role {
            "system" | "developer" => system.extend(parts_of(m.get("content"), &at("content"))?),
            "user" => push_turn(
                &mut contents,
                "user",
                parts_of(m.get("content"), &at("content"))?,
            ),
            "assistant" => {
                let mut parts = parts_of(m.get("content"), &at("content"))?;
                if let Some(calls) = m.get("tool_calls").and_then(Value::as_array) {
                    for (k, call) in calls.iter().enumerate() {
                        let f = call.get("function").unwrap_or(&Value::Null);
                        let name = f.get("name").and_then(Value::as_str).ok_or_else(|| {
                            TranslateError::new(
                                at(&format!("tool_calls[{k}].function.name")),
                                "a tool call needs a function name",
                            )
                        })?;
                        let args = match f.get("arguments").and_then(Value::as_str) {
                            None | Some("") => json!({}),
                            Some(a) => serde_json::from_str::<Value>(a)
                                .ok()
                                .filter(Value::is_object)
                                .ok_or_else(|| {
                                    TranslateError::new(
                                        at(&format!("tool_calls[{k}].function.arguments")),
                                        "arguments must be a JSON object",
                                    )
                                })?,
                        };
                        let mut part = json!({"functionCall": {"name": name, "args": args}});
                        if let Some(id) = call.get("id").and_then(Value::as_str) {
                            call_names.push((id.to_owned(), name.to_owned()));
                            // The signature Gemini issued with this call, back where it wants it.
                            if let (_, Some(sig)) = super::split_signature(id) {
                                part["thoughtSignature"] = Value::String(sig);
                            }
                        }
                        parts.push(part);
                    }
                }
                if !parts.is_empty() {
                    push_turn(&mut contents, "model", parts);
                }
            }
            "tool" | "function" => {
                let id = m.get("tool_call_id").and_then(Value::as_str);
                let name = m
                    .get("name")
                    .and_then(Value::as_str)
                    .or_else(|| {
                        id.and_then(|id| {
                            call_names
                                .iter()
                                .rev()
                                .find(|(c, _)| c == id)
                                .map(|(_, n)| n.as_str())
                        })
                    })
                    .ok_or_else(|| {
                        TranslateError::new(
                            at("tool_call_id"),
                            "no earlier assistant tool call has this tool_call_id",
                        )
                    })?
                    .to_owned();
                let text = text_of(m.get("content"));
                let response = match serde_json::from_str::<Value>(&text) {
                    Ok(v @ Value::Object(_)) => v,
                    _ => json!({ "content": text }),
                };
                push_turn(
                    &mut contents,
                    "user",
                    vec![json!({"functionResponse": {"name": name, "response": response}})],
                );
            }
            other => {
                return Err(TranslateError::new(
                    at("role"),
                    format!("unknown role '{other}'"),
                ))
            }
        }
    }

    let mut out = Map::new();
    out.insert("contents".into(), Value::Array(contents));
    if !system.is_empty() {
        out.insert("systemInstruction".into(), json!({ "parts": system }));
    }
    if let Some(tools) = req.get("tools").and_then(Value::as_array) {
        let decls: Vec<Value> = tools
            .iter()
            .filter_map(|t| t.get("function"))
            .map(|f| {
                let mut d = Map::new();
                for k in ["name", "description"] {
                    if let Some(v) = f.get(k) {
                        d.insert(k.into(), v.clone());
                    }
                }
                if let Some(p) = f.get("parameters").filter(|p| !p.is_null()) {
                    d.insert("parameters".into(), clean_schema(p));
                }
                Value::Object(d)
            })
            .collect();
        if !decls.is_empty() {
            out.insert("tools".into(), json!([{ "functionDeclarations": decls }]));
        }
    }
    if let Some(choice) = req.get("tool_choice").filter(|c| !c.is_null()) {
        let config = match choice.as_str() {
            Some("none") => json!({"mode": "NONE"}),
            Some("auto") => json!({"mode": "AUTO"}),
            Some("required") => json!({"mode": "ANY"}),
            _ => match choice.pointer("/function/name").and_then(Value::as_str) {
                Some(name) => json!({"mode": "ANY", "allowedFunctionNames": [name]}),
                None => {
                    return Err(TranslateError::new(
                        "tool_choice",
                        "tool_choice must be none, auto, required or a named function",
                    ))
                }
            },
        };
        out.insert(
            "toolConfig".into(),
            json!({ "functionCallingConfig": config }),
        );
    }

    let mut gen = Map::new();
    gen.insert(
        "maxOutputTokens".into(),
        json!(upstream_max_output_tokens(req, default_max_tokens)?),
    );
    let copy = |gen: &mut Map<String, Value>, from: &str, to: &str| {
        if let Some(v) = req.get(from).filter(|v| !v.is_null()) {
            gen.insert(to.into(), v.clone());
        }
    };
    copy(&mut gen, "temperature", "temperature");
    copy(&mut gen, "top_p", "topP");
    copy(&mut gen, "seed", "seed");
    copy(&mut gen, "presence_penalty", "presencePenalty");
    copy(&mut gen, "frequency_penalty", "frequencyPenalty");
    if let Some(n) = req.get("n").and_then(Value::as_u64).filter(|n| *n > 1) {
        gen.insert("candidateCount".into(), json!(n));
    }
    match req.get("stop") {
        Some(Value::String(s)) => {
            gen.insert("stopSequences".into(), json!([s]));
        }
        Some(Value::Array(a)) if !a.is_empty() => {
            gen.insert("stopSequences".into(), Value::Array(a.clone()));
        }
        _ => {}
    }
    if let Some(format) = req.get("response_format") {
        match format.get("type").and_then(Value::as_str) {
            Some("json_object") => {
                gen.insert("responseMimeType".into(), json!("application/json"));
            }
            Some("json_schema") => {
                gen.insert("responseMimeType".into(), json!("application/json"));
                if let Some(s) = format.pointer("/json_schema/schema") {
                    gen.insert("responseSchema".into(), clean_schema(s));
                }
            }
            _ => {}
        }
    }
    if let Some(budget) = thinking_budget(req)? {
        let config = if budget == 0 {
            json!({"thinkingBudget": 0})
        } else {
            json!({"includeThoughts": true, "thinkingBudget": budget})
        };
        gen.insert("thinkingConfig".into(), config);
    }
    out.insert("generationConfig".into(), Value::Object(gen));
    Ok(Value::Object(out))
}

/// Appends `parts` to the last turn when it has the same role, else starts a turn.
fn push_turn(contents: &mut Vec<Value>, role: &str, parts: Vec<Value>) {
    if let Some(last) = contents.last_mut() {
        if last.get("role").and_then(Value::as_str) == Some(role) {
            if let Some(p) = last.get_mut("parts").and_then(Value::as_array_mut) {
                p.extend(parts);
                return;
            }
        }
    }
    contents.push(json!({"role": role, "parts": parts}));
}

/// A message's text content (text parts joined).
fn text_of(content: Option<&Value>) -> String {
    match content {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect(),
        _ => String::new(),
    }
}

/// A message's content as Gemini parts.
fn parts_of(content: Option<&Value>, param: &str) -> Result<Vec<Value>, TranslateError> {
    match content {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(s)) if s.is_empty() => Ok(Vec::new()),
        Some(Value::String(s)) => Ok(vec![json!({ "text": s })]),
        Some(Value::Array(a)) => a
            .iter()
            .enumerate()
            .map(|(k, p)| match p.get("type").and_then(Value::as_str) {
                Some("text") | Some("input_text") | Some("output_text") => Ok(json!({
                    "text": p.get("text").and_then(Value::as_str).unwrap_or_default()
                })),
                Some("image_url") => {
                    let url = p
                        .get("image_url")
                        .and_then(|u| u.get("url").or(Some(u)))
                        .and_then(Value::as_str)
                        .ok_or_else(|| {
                            TranslateError::new(
                                format!("{param}[{k}].image_url.url"),
                                "an image part needs a url",
                            )
                        })?;
                    Ok(image_part(url))
                }
                other => Err(TranslateError::new(
                    format!("{param}[{k}].type"),
                    format!(
                        "content parts of type '{}' cannot be sent to a Gemini route",
                        other.unwrap_or("(none)")
                    ),
                )),
            })
            .collect(),
        Some(_) => Err(TranslateError::new(
            param,
            "content must be a string or an array of parts",
        )),
    }
}

/// `data:<mime>;base64,<data>` → `inlineData`; any other URL → `fileData` (its type guessed from
/// the extension).
fn image_part(url: &str) -> Value {
    if let Some(rest) = url.strip_prefix("data:") {
        if let Some((mime, data)) = rest.split_once(";base64,") {
            return json!({"inlineData": {"mimeType": mime, "data": data}});
        }
    }
    let path = url
        .split(['?', '#'])
        .next()
        .unwrap_or(url)
        .to_ascii_lowercase();
    let mime = [
        (".png", "image/png"),
        (".gif", "image/gif"),
        (".webp", "image/webp"),
        (".pdf", "application/pdf"),
    ]
    .iter()
    .find(|(ext, _)| path.ends_with(ext))
    .map_or("image/jpeg", |(_, m)| m);
    json!({"fileData": {"mimeType": mime, "fileUri": url}})
}

/// A JSON schema without the keywords Gemini refuses, at every depth.
fn clean_schema(schema: &Value) -> Value {
    match schema {
        Value::Object(o) => Value::Object(
            o.iter()
                .filter(|(k, _)| !REFUSED_SCHEMA_KEYS.contains(&k.as_str()))
                .map(|(k, v)| (k.clone(), clean_schema(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(clean_schema).collect()),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_conversation_with_tools_images_and_thinking_translates() {
        let req = json!({
            "model": "g",
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": [
                    {"type": "text", "text": "What is here?"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}
                ]},
                {"role": "assistant", "content": null, "tool_calls": [
                    {"id": "call_1", "type": "function", "function": {"name": "look", "arguments": "{\"x\":1}"}}
                ]},
                {"role": "tool", "tool_call_id": "call_1", "content": "a cat"},
            ],
            "tools": [{"type": "function", "function": {"name": "look", "description": "d",
                "parameters": {"type": "object", "additionalProperties": false,
                    "properties": {"x": {"type": "integer"}}}}}],
            "tool_choice": "required",
            "max_tokens": 100, "temperature": 0.5, "top_p": 0.9, "stop": "END", "n": 2,
            "reasoning_effort": "low"
        });
        let out = chat_request_to_gemini(&req, 4096).unwrap();
        assert_eq!(
            out["systemInstruction"],
            json!({"parts": [{"text": "Be brief."}]})
        );
        assert_eq!(out["contents"][0]["role"], "user");
        assert_eq!(
            out["contents"][0]["parts"][1],
            json!({"inlineData": {"mimeType": "image/png", "data": "AAAA"}})
        );
        assert_eq!(
            out["contents"][1],
            json!({"role": "model", "parts": [{"functionCall": {"name": "look", "args": {"x": 1}}}]})
        );
        assert_eq!(
            out["contents"][2]["parts"][0],
            json!({"functionResponse": {"name": "look", "response": {"content": "a cat"}}})
        );
        let decl = &out["tools"][0]["functionDeclarations"][0];
        assert_eq!(decl["name"], "look");
        assert!(decl["parameters"].get("additionalProperties").is_none());
        assert_eq!(out["toolConfig"]["functionCallingConfig"]["mode"], "ANY");
        let gen = &out["generationConfig"];
        assert_eq!(gen["maxOutputTokens"], 100 + 2048);
        assert_eq!(gen["temperature"], 0.5);
        assert_eq!(gen["topP"], 0.9);
        assert_eq!(gen["stopSequences"], json!(["END"]));
        assert_eq!(gen["candidateCount"], 2);
        assert_eq!(
            gen["thinkingConfig"],
            json!({"includeThoughts": true, "thinkingBudget": 2048})
        );
    }

    #[test]
    fn a_tool_result_without_its_call_names_the_field() {
        let req = json!({"model": "g", "messages": [
            {"role": "tool", "tool_call_id": "nope", "content": "x"}]});
        let err = chat_request_to_gemini(&req, 10).unwrap_err();
        assert_eq!(err.param, "messages[0].tool_call_id");
        let bad = json!({"model": "g", "messages": [], "reasoning_effort": "huge"});
        assert_eq!(
            chat_request_to_gemini(&bad, 10).unwrap_err().param,
            "reasoning_effort"
        );
    }

    #[test]
    fn the_output_bound_includes_the_thinking_budget() {
        let req = json!({"max_tokens": 10, "thinking": {"type": "enabled", "budget_tokens": 500}});
        assert_eq!(
            upstream_max_output_tokens(req.as_object().unwrap(), 4096).unwrap(),
            510
        );
        let none = json!({});
        assert_eq!(
            upstream_max_output_tokens(none.as_object().unwrap(), 4096).unwrap(),
            4096
        );
    }
}
