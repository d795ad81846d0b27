//! The INBOUND direction of Google's Gemini API: a client's `generateContent` /
//! `streamGenerateContent` body becomes a chat request ([`gemini_to_chat`]), a chat completion
//! becomes a `GenerateContentResponse` ([`completion_to_gemini`]), and chat chunks become Gemini's
//! stream ([`GeminiStream`]: `data: {GenerateContentResponse}` events, or the JSON array Google
//! sends without `alt=sse`); errors in Google's shape ([`super::error_body`], [`status_name`]).
//! Pure, no IO.
//!
//! Tolerant in: unknown fields are ignored, snake_case spellings (`system_instruction`,
//! `function_call`, `max_output_tokens`…) are read like the camelCase ones, as Google's JSON
//! parser does; what a chat route cannot carry (Google's own tools, `cachedContent`) is dropped
//! and named in [`ChatPlan::dropped`]. Only what cannot be read at all is refused, naming the field.

use bytes::BytesMut;
use serde::Serialize;
use serde_json::{json, Map, Value};

use crate::anthropic::TranslateError;
use crate::finish::FinishReason;
use crate::openai::ChunkView;

/// A Gemini request as the chat request the relay serves.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatPlan {
    /// The model in the URL (the gateway's model name).
    pub model: String,
    /// `streamGenerateContent` (the endpoint decides, not the body).
    pub stream: bool,
    /// `generationConfig.thinkingConfig.includeThoughts`: reasoning goes back as `thought` parts.
    pub include_thoughts: bool,
    /// The chat request body.
    pub body: Value,
    /// What the translation left out because chat cannot carry it (`tools.0:googleSearch`,
    /// `tools.1:codeExecution`, `cachedContent`…), in request order, each named once.
    pub dropped: Vec<String>,
}

fn err(param: &str, message: impl Into<String>) -> TranslateError {
    TranslateError::new(param, message)
}

/// `o[camel]`, else `o[snake_case of camel]` (Google's JSON parser takes both spellings).
fn field<'a>(o: &'a Value, camel: &str) -> Option<&'a Value> {
    if let Some(v) = o.get(camel).filter(|v| !v.is_null()) {
        return Some(v);
    }
    if !camel.bytes().any(|b| b.is_ascii_uppercase()) {
        return None;
    }
    let mut snake = String::with_capacity(camel.len() + 4);
    for c in camel.chars() {
        if c.is_ascii_uppercase() {
            snake.push('_');
            snake.push(c.to_ascii_lowercase());
        } else {
            snake.push(c);
        }
    }
    o.get(&snake).filter(|v| !v.is_null())
}

fn drop_once(dropped: &mut Vec<String>, what: &str) {
    if !dropped.iter().any(|d| d == what) {
        dropped.push(what.to_owned());
    }
}

/// Translates a Gemini `GenerateContentRequest` for `model` into a chat request. `stream` is
/// the endpoint's (`streamGenerateContent`).
pub fn gemini_to_chat(raw: &Value, model: &str, stream: bool) -> Result<ChatPlan, TranslateError> {
    if !raw.is_object() {
        return Err(err("body", "The request body must be a JSON object."));
    }
    if model.is_empty() {
        return Err(err("model", "The model in the URL is empty."));
    }
    let mut dropped = Vec::new();
    let mut messages = Vec::new();
    if let Some(system) = field(raw, "systemInstruction") {
        let text = match system {
            Value::String(s) => s.clone(),
            _ => system_text(system)?,
        };
        if !text.is_empty() {
            messages.push(json!({"role": "system", "content": text}));
        }
    }
    let contents = match field(raw, "contents") {
        Some(Value::Array(c)) if !c.is_empty() => c,
        Some(Value::Array(_)) | None => {
            return Err(err(
                "contents",
                "* GenerateContentRequest.contents: contents is not specified",
            ))
        }
        Some(_) => return Err(err("contents", "contents: must be an array of Content.")),
    };
    let mut calls = Calls::default();
    for (i, content) in contents.iter().enumerate() {
        translate_content(i, content, &mut calls, &mut messages)?;
    }
    let mut body = Map::new();
    body.insert("model".into(), Value::String(model.to_owned()));
    body.insert("messages".into(), Value::Array(messages));
    if stream {
        body.insert("stream".into(), Value::Bool(true));
        body.insert("stream_options".into(), json!({"include_usage": true}));
    }
    let include_thoughts = match field(raw, "generationConfig") {
        Some(config @ Value::Object(_)) => generation_config(config, &mut body)?,
        Some(_) => {
            return Err(err(
                "generationConfig",
                "generationConfig: must be a GenerationConfig object.",
            ))
        }
        None => false,
    };
    translate_tools(raw, &mut body, &mut dropped)?;
    if field(raw, "cachedContent").is_some() {
        drop_once(&mut dropped, "cachedContent");
    }
    Ok(ChatPlan {
        model: model.to_owned(),
        stream,
        include_thoughts,
        body: Value::Object(body),
        dropped,
    })
}

/// The text of a `systemInstruction` Content: its text parts, one per line.
fn system_text(system: &Value) -> Result<String, TranslateError> {
    let parts = match field(system, "parts") {
        Some(Value::Array(p)) => p.as_slice(),
        Some(one @ Value::Object(_)) => std::slice::from_ref(one),
        None => &[],
        Some(_) => {
            return Err(err(
                "systemInstruction.parts",
                "systemInstruction.parts: must be an array of Part.",
            ))
        }
    };
    let texts: Vec<&str> = parts
        .iter()
        .filter(|p| field(p, "thought").and_then(Value::as_bool) != Some(true))
        .filter_map(|p| field(p, "text").and_then(Value::as_str))
        .collect();
    Ok(texts.join("\n"))
}

/// The tool calls of the model turns so far: ids given or made (`call_<n>`), and which ones a
/// `functionResponse` has answered.
#[derive(Default)]
struct Calls {
    /// (id, name, answered), in request order.
    all: Vec<(String, String, bool)>,
}

impl Calls {
    fn call(&mut self, id: Option<&str>, name: &str) -> String {
        let id = match id.filter(|i| !i.is_empty()) {
            Some(id) => id.to_owned(),
            None => format!("call_{}", self.all.len()),
        };
        self.all.push((id.clone(), name.to_owned(), false));
        id
    }

    /// The call a response answers: the unanswered call with its id, else the first unanswered
    /// one with its name, else the first unanswered one. `None` when none is open.
    fn answer(&mut self, id: Option<&str>, name: &str) -> Option<String> {
        let at = id
            .filter(|i| !i.is_empty())
            .and_then(|id| self.all.iter().position(|c| !c.2 && c.0 == id))
            .or_else(|| self.all.iter().position(|c| !c.2 && c.1 == name))
            .or_else(|| self.all.iter().position(|c| !c.2))?;
        self.all[at].2 = true;
        Some(self.all[at].0.clone())
    }
}

/// One `contents[i]` as chat messages: a model turn → one assistant message (text, tool calls);
/// a user or function turn → `tool` messages for its `functionResponse` parts first (chat wants
/// them right after the calls), then one user message for the rest.
fn translate_content(
    i: usize,
    content: &Value,
    calls: &mut Calls,
    out: &mut Vec<Value>,
) -> Result<(), TranslateError> {
    let at = format!("contents[{i}]");
    if !content.is_object() {
        return Err(err(&at, format!("{at}: must be a Content object.")));
    }
    let role = field(content, "role")
        .and_then(Value::as_str)
        .unwrap_or("user");
    let parts: &[Value] = match field(content, "parts") {
        Some(Value::Array(p)) => p,
        None => &[],
        Some(_) => {
            return Err(err(
                &format!("{at}.parts"),
                format!("{at}.parts: must be an array of Part."),
            ))
        }
    };
    match role {
        "model" | "assistant" => {
            let mut text = String::new();
            let mut tool_calls = Vec::new();
            let mut signed = None;
            for p in parts {
                if field(p, "thought").and_then(Value::as_bool) == Some(true) {
                    continue;
                }
                // Signed thinking the gateway carried for an Anthropic route, going back to it.
                if let Some(carried) = field(p, "thoughtSignature").and_then(Value::as_str) {
                    signed = signed.or_else(|| crate::reasoning_carrier::unpack(carried));
                }
                if let Some(call) = field(p, "functionCall") {
                    let name = field(call, "name")
                        .and_then(Value::as_str)
                        .unwrap_or_default();
                    let id = calls.call(field(call, "id").and_then(Value::as_str), name);
                    let args = field(call, "args").cloned().unwrap_or_else(|| json!({}));
                    tool_calls.push(json!({"id": id, "type": "function",
                        "function": {"name": name, "arguments": args.to_string()}}));
                } else if let Some(t) = part_text(p) {
                    text.push_str(&t);
                }
            }
            if text.is_empty() && tool_calls.is_empty() {
                return Ok(());
            }
            let mut m = json!({"role": "assistant",
                "content": if text.is_empty() { Value::Null } else { Value::String(text) }});
            if !tool_calls.is_empty() {
                m["tool_calls"] = Value::Array(tool_calls);
            }
            if let Some((thinking, signature)) = signed {
                m["reasoning_content"] = Value::String(thinking);
                m["reasoning_signature"] = Value::String(signature);
            }
            out.push(m);
        }
        "user" | "function" | "tool" => {
            let mut user = Vec::new();
            for (j, p) in parts.iter().enumerate() {
                let pat = format!("{at}.parts[{j}]");
                if field(p, "thought").and_then(Value::as_bool) == Some(true) {
                    continue;
                }
                if let Some(resp) = field(p, "functionResponse") {
                    let name = field(resp, "name")
                        .and_then(Value::as_str)
                        .unwrap_or_default();
                    let text = response_text(field(resp, "response"));
                    match calls.answer(field(resp, "id").and_then(Value::as_str), name) {
                        Some(id) => {
                            out.push(json!({"role": "tool", "tool_call_id": id, "content": text}))
                        }
                        // A response to no call in this request: its text, as the user's.
                        None => user.push(json!({"type": "text",
                            "text": format!("The function {name} returned: {text}")})),
                    }
                } else if let Some(call) = field(p, "functionCall") {
                    // A call in a user turn: chat has no place for it but an assistant turn.
                    let name = field(call, "name")
                        .and_then(Value::as_str)
                        .unwrap_or_default();
                    let id = calls.call(field(call, "id").and_then(Value::as_str), name);
                    let args = field(call, "args").cloned().unwrap_or_else(|| json!({}));
                    out.push(json!({"role": "assistant", "content": Value::Null, "tool_calls": [
                        {"id": id, "type": "function", "function": {"name": name, "arguments": args.to_string()}}]}));
                } else if let Some(data) = field(p, "inlineData") {
                    user.push(inline_part(data, &pat)?);
                } else if let Some(file) = field(p, "fileData") {
                    let uri = field(file, "fileUri")
                        .and_then(Value::as_str)
                        .filter(|u| !u.is_empty())
                        .ok_or_else(|| {
                            err(
                                &format!("{pat}.fileData.fileUri"),
                                format!("{pat}.fileData.fileUri: Field required."),
                            )
                        })?;
                    user.push(json!({"type": "image_url", "image_url": {"url": uri}}));
                } else if let Some(t) = part_text(p) {
                    user.push(json!({"type": "text", "text": t}));
                }
            }
            if !user.is_empty() {
                let content = match user.as_slice() {
                    [one] if one["type"] == "text" => one["text"].clone(),
                    _ => Value::Array(user),
                };
                out.push(json!({"role": "user", "content": content}));
            }
        }
        other => {
            return Err(err(
                &format!("{at}.role"),
                format!("Please use a valid role: user, model. ({at}.role is '{other}')"),
            ))
        }
    }
    Ok(())
}

/// A part's text: `text`, or executable code and its result written out as text. `None` for
/// parts chat has no place for.
fn part_text(p: &Value) -> Option<String> {
    if let Some(t) = field(p, "text").and_then(Value::as_str) {
        return Some(t.to_owned());
    }
    if let Some(code) = field(p, "executableCode") {
        let lang = field(code, "language")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_ascii_lowercase();
        let code = field(code, "code").and_then(Value::as_str).unwrap_or("");
        return Some(format!("```{lang}\n{code}\n```"));
    }
    if let Some(result) = field(p, "codeExecutionResult") {
        let output = field(result, "output")
            .and_then(Value::as_str)
            .unwrap_or("");
        return Some(format!("```output\n{output}\n```"));
    }
    None
}

/// A `functionResponse.response` as a tool message's text: a lone `output`/`result`/`content`
/// string as it is, anything else as compact JSON.
fn response_text(response: Option<&Value>) -> String {
    match response {
        None => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Object(o)) if o.len() == 1 => {
            match ["output", "result", "content"]
                .iter()
                .find_map(|k| o.get(*k).and_then(Value::as_str))
            {
                Some(s) => s.to_owned(),
                None => Value::Object(o.clone()).to_string(),
            }
        }
        Some(v) => v.to_string(),
    }
}

/// `inlineData {mimeType, data}` → an image_url data URL (a PDF as a `file` part, WAV/MP3 as
/// `input_audio`, which chat routes read as such).
fn inline_part(data: &Value, at: &str) -> Result<Value, TranslateError> {
    let mime = field(data, "mimeType")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let b64 = field(data, "data").and_then(Value::as_str).ok_or_else(|| {
        err(
            &format!("{at}.inlineData.data"),
            format!("{at}.inlineData.data: Field required."),
        )
    })?;
    let url = format!("data:{mime};base64,{b64}");
    Ok(match mime {
        "application/pdf" => json!({"type": "file", "file": {"file_data": url}}),
        "audio/wav" | "audio/x-wav" => {
            json!({"type": "input_audio", "input_audio": {"data": b64, "format": "wav"}})
        }
        "audio/mp3" | "audio/mpeg" => {
            json!({"type": "input_audio", "input_audio": {"data": b64, "format": "mp3"}})
        }
        _ => json!({"type": "image_url", "image_url": {"url": url}}),
    })
}

/// A number field of `generationConfig`, or a 400 naming it.
fn number(config: &Value, name: &str) -> Result<Option<Value>, TranslateError> {
    match field(config, name) {
        None => Ok(None),
        Some(v) if v.is_number() => Ok(Some(v.clone())),
        Some(_) => Err(err(
            &format!("generationConfig.{name}"),
            format!("generationConfig.{name}: must be a number."),
        )),
    }
}

/// `generationConfig` into the chat body; returns `thinkingConfig.includeThoughts`.
fn generation_config(
    config: &Value,
    body: &mut Map<String, Value>,
) -> Result<bool, TranslateError> {
    for (name, chat) in [
        ("temperature", "temperature"),
        ("topP", "top_p"),
        ("presencePenalty", "presence_penalty"),
        ("frequencyPenalty", "frequency_penalty"),
        ("seed", "seed"),
    ] {
        if let Some(v) = number(config, name)? {
            body.insert(chat.into(), v);
        }
    }
    // topK has no chat counterpart: dropped, as Google itself ignores it on some models.
    for (name, chat) in [("maxOutputTokens", "max_tokens"), ("candidateCount", "n")] {
        match field(config, name) {
            None => {}
            Some(v) => match v.as_u64() {
                Some(n) if n >= 1 => {
                    body.insert(chat.into(), json!(n));
                }
                _ => {
                    return Err(err(
                        &format!("generationConfig.{name}"),
                        format!("generationConfig.{name}: must be a positive integer."),
                    ))
                }
            },
        }
    }
    match field(config, "stopSequences") {
        None => {}
        Some(Value::Array(s)) if s.is_empty() => {}
        Some(Value::Array(s)) if s.iter().all(Value::is_string) => {
            body.insert("stop".into(), Value::Array(s.clone()));
        }
        Some(_) => {
            return Err(err(
                "generationConfig.stopSequences",
                "generationConfig.stopSequences: must be an array of strings.",
            ))
        }
    }
    if field(config, "responseLogprobs").and_then(Value::as_bool) == Some(true) {
        body.insert("logprobs".into(), Value::Bool(true));
        if let Some(n) = field(config, "logprobs").and_then(Value::as_u64) {
            body.insert("top_logprobs".into(), json!(n));
        }
    }
    let mime = field(config, "responseMimeType").and_then(Value::as_str);
    let schema = field(config, "responseJsonSchema")
        .or_else(|| config.get("_responseJsonSchema"))
        .cloned()
        .or_else(|| field(config, "responseSchema").map(openapi_to_json_schema));
    match (mime, schema) {
        (Some("application/json") | None, Some(schema)) => {
            body.insert(
                "response_format".into(),
                json!({"type": "json_schema", "json_schema": {"name": "response", "schema": schema}}),
            );
        }
        (Some("application/json"), None) => {
            body.insert("response_format".into(), json!({"type": "json_object"}));
        }
        _ => {}
    }
    let thinking = field(config, "thinkingConfig");
    let include = thinking
        .and_then(|t| field(t, "includeThoughts"))
        .and_then(Value::as_bool)
        == Some(true);
    if let Some(t) = thinking {
        translate_thinking(t, body)?;
    }
    Ok(include)
}

/// `thinkingConfig` → `reasoning_effort` (and, for an exact budget, the `thinking` object the
/// Anthropic and Gemini translations read): budget 0 turns thinking off, -1 (dynamic) is medium,
/// other budgets by the rows of [`crate::anthropic::THINKING_BUDGETS`]; `thinkingLevel` is the
/// effort by name.
fn translate_thinking(t: &Value, body: &mut Map<String, Value>) -> Result<(), TranslateError> {
    if let Some(level) = field(t, "thinkingLevel").and_then(Value::as_str) {
        let level = level.to_ascii_lowercase();
        if ["minimal", "low", "medium", "high"].contains(&level.as_str()) {
            body.insert("reasoning_effort".into(), Value::String(level));
        }
        return Ok(());
    }
    let Some(budget) = field(t, "thinkingBudget") else {
        return Ok(());
    };
    let Some(budget) = budget.as_i64() else {
        return Err(err(
            "generationConfig.thinkingConfig.thinkingBudget",
            "generationConfig.thinkingConfig.thinkingBudget: must be an integer.",
        ));
    };
    match budget {
        0 => {
            body.insert("thinking".into(), json!({"type": "disabled"}));
        }
        b if b < 0 => {
            body.insert("reasoning_effort".into(), Value::String("medium".into()));
        }
        b => {
            let effort = crate::anthropic::THINKING_BUDGETS
                .iter()
                .find(|(_, at_most)| b <= i64::from(*at_most))
                .map_or("max", |(name, _)| name);
            body.insert(
                "thinking".into(),
                json!({"type": "enabled", "budget_tokens": b}),
            );
            body.insert("reasoning_effort".into(), Value::String(effort.into()));
        }
    }
    Ok(())
}

/// An OpenAPI-subset schema (Gemini's `parameters`, `responseSchema`) as JSON Schema: `type`
/// names in lower case (`"STRING"` → `"string"`), at every level.
pub fn openapi_to_json_schema(schema: &Value) -> Value {
    match schema {
        Value::Object(o) => Value::Object(
            o.iter()
                .map(|(k, v)| {
                    let v = match (k.as_str(), v) {
                        ("type", Value::String(t)) => Value::String(t.to_ascii_lowercase()),
                        ("type", Value::Array(ts)) => Value::Array(
                            ts.iter()
                                .map(|t| match t {
                                    Value::String(t) => Value::String(t.to_ascii_lowercase()),
                                    other => other.clone(),
                                })
                                .collect(),
                        ),
                        // Property names and enum values are data, not schemas: only their
                        // schemas are walked.
                        ("properties", Value::Object(props)) => Value::Object(
                            props
                                .iter()
                                .map(|(name, s)| (name.clone(), openapi_to_json_schema(s)))
                                .collect(),
                        ),
                        ("enum" | "required" | "propertyOrdering" | "example" | "default", v) => {
                            v.clone()
                        }
                        (_, v) => openapi_to_json_schema(v),
                    };
                    (k.clone(), v)
                })
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(openapi_to_json_schema).collect()),
        other => other.clone(),
    }
}

/// The tool kinds a chat route has no counterpart for (Google runs them itself).
const GOOGLE_TOOLS: &[&str] = &[
    "googleSearch",
    "googleSearchRetrieval",
    "codeExecution",
    "urlContext",
    "fileSearch",
    "computerUse",
    "googleMaps",
    "retrieval",
    "enterpriseWebSearch",
];

fn translate_tools(
    raw: &Value,
    body: &mut Map<String, Value>,
    dropped: &mut Vec<String>,
) -> Result<(), TranslateError> {
    let tools: &[Value] = match field(raw, "tools") {
        None => &[],
        Some(Value::Array(t)) => t,
        Some(_) => return Err(err("tools", "tools: must be an array of Tool.")),
    };
    let mut out = Vec::new();
    for (i, tool) in tools.iter().enumerate() {
        let Some(tool) = tool.as_object() else {
            return Err(err(
                &format!("tools[{i}]"),
                format!("tools[{i}]: must be a Tool object."),
            ));
        };
        let tool_value = Value::Object(tool.clone());
        for kind in GOOGLE_TOOLS {
            if field(&tool_value, kind).is_some() {
                drop_once(dropped, &format!("tools.{i}:{kind}"));
            }
        }
        let declarations = match field(&tool_value, "functionDeclarations") {
            None => continue,
            Some(Value::Array(d)) => d,
            Some(_) => {
                return Err(err(
                    &format!("tools[{i}].functionDeclarations"),
                    format!("tools[{i}].functionDeclarations: must be an array."),
                ))
            }
        };
        for (j, d) in declarations.iter().enumerate() {
            let at = format!("tools[{i}].functionDeclarations[{j}]");
            let name = field(d, "name")
                .and_then(Value::as_str)
                .filter(|n| !n.is_empty())
                .ok_or_else(|| err(&format!("{at}.name"), format!("{at}.name: Field required.")))?;
            let parameters = field(d, "parametersJsonSchema")
                .cloned()
                .or_else(|| field(d, "parameters").map(openapi_to_json_schema))
                .unwrap_or_else(|| json!({"type": "object", "properties": {}}));
            let mut function = json!({"name": name, "parameters": parameters});
            if let Some(desc) = field(d, "description").and_then(Value::as_str) {
                function["description"] = Value::String(desc.to_owned());
            }
            out.push(json!({"type": "function", "function": function}));
        }
    }
    let has_tools = !out.is_empty();
    if has_tools {
        body.insert("tools".into(), Value::Array(out));
    }
    let Some(config) = field(raw, "toolConfig").and_then(|c| field(c, "functionCallingConfig"))
    else {
        return Ok(());
    };
    let names: Vec<&str> = field(config, "allowedFunctionNames")
        .and_then(Value::as_array)
        .map(|n| n.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let choice = match field(config, "mode").and_then(Value::as_str) {
        Some("NONE") | Some("none") => Some(json!("none")),
        Some("ANY") | Some("any") => match names.as_slice() {
            [one] => Some(json!({"type": "function", "function": {"name": one}})),
            _ => Some(json!("required")),
        },
        Some("AUTO") | Some("auto") | Some("VALIDATED") | Some("validated") => Some(json!("auto")),
        _ => None,
    };
    if let Some(choice) = choice.filter(|_| has_tools) {
        body.insert("tool_choice".into(), choice);
    }
    Ok(())
}

/// A chat answer's finish reason (none read as `stop`) → Gemini `finishReason`
/// ([`FinishReason::gemini_finish_reason`]; a function call ends with `STOP`, as Gemini's do).
pub fn finish_reason(finish: Option<FinishReason>) -> &'static str {
    finish.unwrap_or(FinishReason::Stop).gemini_finish_reason()
}

/// Chat usage (`prompt_tokens` with cached ones inside, `completion_tokens` with reasoning inside)
/// → `usageMetadata` (`candidatesTokenCount` without the thoughts, `totalTokenCount` the sum).
/// The gateway's `cost` (a decimal USD string) rides along when the usage has one.
pub fn usage_metadata(u: &Value) -> Value {
    let n = |v: &Value| v.as_u64().unwrap_or(0);
    let prompt = n(&u["prompt_tokens"]);
    let completion = n(&u["completion_tokens"]);
    let thoughts = n(&u["completion_tokens_details"]["reasoning_tokens"]).min(completion);
    let cached = n(&u["prompt_tokens_details"]["cached_tokens"]).min(prompt);
    let mut out = Map::new();
    out.insert("promptTokenCount".into(), json!(prompt));
    out.insert("candidatesTokenCount".into(), json!(completion - thoughts));
    out.insert(
        "totalTokenCount".into(),
        json!(prompt.saturating_add(completion)),
    );
    if thoughts > 0 {
        out.insert("thoughtsTokenCount".into(), json!(thoughts));
    }
    if cached > 0 {
        out.insert("cachedContentTokenCount".into(), json!(cached));
    }
    if let Some(cost) = u.get("cost").filter(|c| !c.is_null()) {
        out.insert("cost".into(), cost.clone());
    }
    Value::Object(out)
}

/// A whole chat completion → `GenerateContentResponse` (`modelVersion` = `model`, `responseId` =
/// `id`): per choice a candidate whose parts are its reasoning (a `thought` part, only with
/// `include_thoughts`), its text and its calls (`functionCall {name, args, id}`).
pub fn completion_to_gemini(
    completion: &Value,
    model: &str,
    id: &str,
    include_thoughts: bool,
) -> Value {
    let mut candidates = Vec::new();
    for (k, choice) in completion["choices"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        let msg = &choice["message"];
        let mut parts = Vec::new();
        if include_thoughts {
            if let Some(r) = msg["reasoning_content"]
                .as_str()
                .or(msg["reasoning"].as_str())
                .filter(|r| !r.is_empty())
            {
                parts.push(json!({"text": r, "thought": true}));
            }
        }
        if let Some(t) = msg["content"].as_str().filter(|t| !t.is_empty()) {
            parts.push(json!({"text": t}));
        }
        // An Anthropic route's signed thinking rides back on the first call.
        let mut signed = msg["reasoning_signature"]
            .as_str()
            .filter(|s| !s.is_empty())
            .map(|sig| {
                let thinking = msg["reasoning_content"].as_str().unwrap_or_default();
                crate::reasoning_carrier::pack(thinking, sig)
            });
        for call in msg["tool_calls"].as_array().into_iter().flatten() {
            let args = call_args(call["function"]["arguments"].as_str().unwrap_or(""));
            let mut fc = json!({"name": call["function"]["name"].as_str().unwrap_or_default(),
                                "args": args});
            if let Some(cid) = call["id"].as_str().filter(|c| !c.is_empty()) {
                fc["id"] = Value::String(cid.to_owned());
            }
            let mut part = json!({"functionCall": fc});
            if let Some(sig) = signed.take() {
                part["thoughtSignature"] = Value::String(sig);
            }
            parts.push(part);
        }
        if parts.is_empty() {
            parts.push(json!({"text": ""}));
        }
        candidates.push(json!({
            "content": {"parts": parts, "role": "model"},
            "finishReason": finish_reason(choice["finish_reason"].as_str().map(FinishReason::from_openai)),
            "index": choice["index"].as_u64().unwrap_or(k as u64),
        }));
    }
    json!({
        "candidates": candidates,
        "usageMetadata": usage_metadata(&completion["usage"]),
        "modelVersion": model,
        "responseId": id,
    })
}

/// A call's arguments as the object Gemini's `args` is (`{}` when empty or not an object).
fn call_args(arguments: &str) -> Value {
    serde_json::from_str::<Value>(arguments)
        .ok()
        .filter(Value::is_object)
        .unwrap_or_else(|| json!({}))
}

/// An HTTP status → Google's canonical status name (the `status` of [`super::error_body`]).
pub fn status_name(code: u16) -> &'static str {
    match code {
        400 | 413 | 422 => "INVALID_ARGUMENT",
        401 => "UNAUTHENTICATED",
        402 => "FAILED_PRECONDITION",
        403 => "PERMISSION_DENIED",
        404 | 405 => "NOT_FOUND",
        408 | 504 => "DEADLINE_EXCEEDED",
        409 => "ABORTED",
        429 => "RESOURCE_EXHAUSTED",
        499 => "CANCELLED",
        501 => "UNIMPLEMENTED",
        502 | 503 => "UNAVAILABLE",
        c if (400..500).contains(&c) => "FAILED_PRECONDITION",
        _ => "INTERNAL",
    }
}

/// The HTTP status a chat error object (`{"message","type","code"}`, as the gateway writes it in
/// a stream) stands for: its numeric `code`, else one read from its `type`.
pub fn chat_error_status(e: &Value) -> u16 {
    if let Some(c) = e["code"]
        .as_u64()
        .and_then(|c| u16::try_from(c).ok())
        .filter(|c| (400..600).contains(c))
    {
        return c;
    }
    match e["type"].as_str().unwrap_or_default() {
        "invalid_request_error" => 400,
        "authentication_error" => 401,
        "permission_error" => 403,
        "not_found_error" => 404,
        "rate_limit_error" | "rate_limit_exceeded" | "insufficient_quota" => 429,
        "service_unavailable" | "overloaded_error" => 503,
        "timeout_error" => 504,
        "upstream_error" => 502,
        _ => 500,
    }
}

/// How a Gemini stream is framed: `alt=sse` (`data: …` events) or, without it, one JSON array
/// whose elements arrive as they are made (`[{…}\n,\r\n{…}\n]`, as Google writes it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    Sse,
    JsonArray,
}

/// A tool call being streamed, sent whole once its arguments are complete.
#[derive(Debug, Clone)]
struct OpenCall {
    choice: u64,
    index: u64,
    id: String,
    name: String,
    args: String,
}

/// Chat chunks (as the gateway's chat relay writes them: usage and cost on the last chunks) →
/// Gemini's stream, written into the caller's buffer: text and thoughts as they arrive, a tool
/// call as one whole `functionCall` part once its arguments are complete (the next call, other
/// content, or the finish), and the last event, at the chat stream's end (`[DONE]`, written only
/// once the entry is durable), with every candidate's `finishReason` and `usageMetadata`.
/// Chunks are read through their borrowed [`ChunkView`]; events are serialised straight into the
/// buffer.
#[derive(Debug, Clone)]
pub struct GeminiStream {
    framing: Framing,
    model: String,
    id: String,
    include_thoughts: bool,
    /// The JSON array's `[` is written.
    opened: bool,
    /// An element (SSE event) was written: the next one needs a separator in the array.
    written: bool,
    ended: bool,
    calls: Vec<OpenCall>,
    /// Per choice index that finished, its chat finish reason.
    finish: Vec<(u64, FinishReason)>,
    usage: Option<Value>,
    /// Per choice, the reasoning so far and its signature (an Anthropic route's signed thinking),
    /// which the choice's first call carries back as its `thoughtSignature` (`reasoning_carrier`).
    signed: Vec<(u64, String, Option<String>)>,
}

#[derive(Serialize)]
struct EventOut<'a> {
    candidates: [CandidateOut<'a>; 1],
    #[serde(rename = "modelVersion")]
    model_version: &'a str,
    #[serde(rename = "responseId")]
    response_id: &'a str,
}

#[derive(Serialize)]
struct CandidateOut<'a> {
    content: ContentOut<'a>,
    index: u64,
}

#[derive(Serialize)]
struct ContentOut<'a> {
    parts: [PartOut<'a>; 1],
    role: &'static str,
}

#[derive(Serialize)]
#[serde(untagged)]
enum PartOut<'a> {
    Text {
        text: &'a str,
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        thought: bool,
    },
    Call {
        #[serde(rename = "functionCall")]
        function_call: CallOut<'a>,
        #[serde(rename = "thoughtSignature", skip_serializing_if = "Option::is_none")]
        thought_signature: Option<String>,
    },
}

#[derive(Serialize)]
struct CallOut<'a> {
    name: &'a str,
    args: &'a Value,
    #[serde(skip_serializing_if = "str::is_empty")]
    id: &'a str,
}

impl GeminiStream {
    /// `model` is the `modelVersion` every event carries, `id` the `responseId`.
    pub fn new(framing: Framing, model: String, id: String, include_thoughts: bool) -> Self {
        GeminiStream {
            framing,
            model,
            id,
            include_thoughts,
            opened: false,
            written: false,
            ended: false,
            calls: Vec::new(),
            finish: Vec::new(),
            usage: None,
            signed: Vec::new(),
        }
    }

    /// The array's opening `[` (JSON array framing), once; nothing for SSE.
    pub fn start(&mut self, out: &mut BytesMut) {
        if self.framing == Framing::JsonArray && !self.opened {
            out.extend_from_slice(b"[");
        }
        self.opened = true;
    }

    /// One element: `data: <json>\n\n`, or the array's next element.
    fn element(&mut self, out: &mut BytesMut, v: &impl Serialize) {
        self.start(out);
        match self.framing {
            Framing::Sse => out.extend_from_slice(b"data: "),
            Framing::JsonArray if self.written => out.extend_from_slice(b"\n,\r\n"),
            Framing::JsonArray => {}
        }
        self.written = true;
        // Serialising these shapes into memory cannot fail; compact JSON has no raw newline.
        if serde_json::to_writer(bytes::BufMut::writer(&mut *out), v).is_err() {
            out.extend_from_slice(b"{}");
        }
        if self.framing == Framing::Sse {
            out.extend_from_slice(b"\n\n");
        }
    }

    fn part(&mut self, out: &mut BytesMut, choice: u64, part: PartOut<'_>) {
        let model = std::mem::take(&mut self.model);
        let id = std::mem::take(&mut self.id);
        let event = EventOut {
            candidates: [CandidateOut {
                content: ContentOut {
                    parts: [part],
                    role: "model",
                },
                index: choice,
            }],
            model_version: &model,
            response_id: &id,
        };
        self.element(out, &event);
        self.model = model;
        self.id = id;
    }

    /// The signed reasoning of `choice`, once, as the carrier its first call takes back.
    fn take_signed(&mut self, choice: u64) -> Option<String> {
        let at = self
            .signed
            .iter()
            .position(|(k, _, sig)| *k == choice && sig.is_some())?;
        let (_, thinking, sig) = self.signed.swap_remove(at);
        Some(crate::reasoning_carrier::pack(&thinking, &sig?))
    }

    /// Keeps `choice`'s reasoning text and signature as they stream.
    fn keep_signed(&mut self, choice: u64, text: Option<&str>, signature: Option<&str>) {
        let at = match self.signed.iter().position(|(k, _, _)| *k == choice) {
            Some(at) => at,
            None => {
                self.signed.push((choice, String::new(), None));
                self.signed.len() - 1
            }
        };
        let kept = &mut self.signed[at];
        if let Some(t) = text {
            kept.1.push_str(t);
        }
        if let Some(s) = signature.filter(|s| !s.is_empty()) {
            kept.2 = Some(s.to_owned());
        }
    }

    /// Sends the open calls of `choice` (every choice when `None`) whole, in order.
    fn flush_calls(&mut self, out: &mut BytesMut, choice: Option<u64>) {
        if self.calls.is_empty() {
            return;
        }
        let calls = std::mem::take(&mut self.calls);
        let (send, keep): (Vec<_>, Vec<_>) = calls
            .into_iter()
            .partition(|c| choice.is_none_or(|k| c.choice == k));
        self.calls = keep;
        for c in send {
            let args = call_args(&c.args);
            let thought_signature = self.take_signed(c.choice);
            self.part(
                out,
                c.choice,
                PartOut::Call {
                    function_call: CallOut {
                        name: &c.name,
                        args: &args,
                        id: &c.id,
                    },
                    thought_signature,
                },
            );
        }
    }

    /// One chat chunk's data (data that is not a chunk is skipped).
    pub fn chunk_data(&mut self, data: &[u8], out: &mut BytesMut) {
        if let Some(view) = ChunkView::parse(data) {
            self.chunk(&view, out);
        }
    }

    /// One chat chunk (or a chat error event `{"error":{…}}`).
    pub fn chunk(&mut self, chunk: &ChunkView<'_>, out: &mut BytesMut) {
        if self.ended {
            return;
        }
        if let Some(e) = chunk.error {
            if let Ok(e @ Value::Object(_)) = serde_json::from_str::<Value>(e.get()) {
                self.error(&e, out);
                return;
            }
        }
        if let Some(u) = chunk.usage {
            if let Ok(u @ Value::Object(_)) = serde_json::from_str::<Value>(u.get()) {
                self.usage = Some(u);
            }
        }
        for choice in &chunk.choices {
            let k = choice.index.unwrap_or(0);
            let d = &choice.delta;
            let reasoning = d
                .reasoning_content
                .as_deref()
                .or(d.reasoning.as_deref())
                .filter(|r| !r.is_empty());
            if reasoning.is_some() || d.reasoning_signature.is_some() {
                self.keep_signed(k, reasoning, d.reasoning_signature.as_deref());
            }
            if let Some(r) = reasoning.filter(|_| self.include_thoughts) {
                self.flush_calls(out, Some(k));
                self.part(
                    out,
                    k,
                    PartOut::Text {
                        text: r,
                        thought: true,
                    },
                );
            }
            if let Some(t) = d.content.as_deref().filter(|t| !t.is_empty()) {
                self.flush_calls(out, Some(k));
                self.part(
                    out,
                    k,
                    PartOut::Text {
                        text: t,
                        thought: false,
                    },
                );
            }
            for call in &d.tool_calls {
                let n = call.index.unwrap_or(0);
                let open = self
                    .calls
                    .iter()
                    .position(|c| c.choice == k && c.index == n);
                let at = match open {
                    Some(at) => at,
                    None => {
                        // A new call: the choice's earlier ones are complete.
                        self.flush_calls(out, Some(k));
                        self.calls.push(OpenCall {
                            choice: k,
                            index: n,
                            id: String::new(),
                            name: String::new(),
                            args: String::new(),
                        });
                        self.calls.len() - 1
                    }
                };
                let c = &mut self.calls[at];
                if let Some(id) = call.id.as_deref().filter(|i| !i.is_empty()) {
                    c.id = id.to_owned();
                }
                if let Some(name) = call.function.name.as_deref().filter(|n| !n.is_empty()) {
                    c.name.push_str(name);
                }
                if let Some(a) = call.function.arguments.as_deref() {
                    c.args.push_str(a);
                }
            }
            if let Some(f) = choice.finish_reason.as_deref() {
                self.flush_calls(out, Some(k));
                if !self.finish.iter().any(|(i, _)| *i == k) {
                    self.finish.push((k, FinishReason::from_openai(f)));
                }
            }
        }
    }

    /// The end of the chat stream (`[DONE]`): open calls, then the last event with every
    /// candidate's `finishReason`, `usageMetadata`; the array's `]`.
    pub fn finish(&mut self, out: &mut BytesMut) {
        if self.ended {
            return;
        }
        self.flush_calls(out, None);
        self.ended = true;
        if self.finish.is_empty() {
            self.finish.push((0, FinishReason::Stop));
        }
        let candidates: Vec<Value> = self
            .finish
            .iter()
            .map(|(k, f)| {
                json!({"content": {"parts": [{"text": ""}], "role": "model"},
                       "finishReason": f.gemini_finish_reason(), "index": k})
            })
            .collect();
        let mut last = json!({"candidates": candidates});
        if let Some(u) = &self.usage {
            last["usageMetadata"] = usage_metadata(u);
        }
        last["modelVersion"] = Value::String(self.model.clone());
        last["responseId"] = Value::String(self.id.clone());
        self.element(out, &last);
        self.close(out);
    }

    /// A chat error object (`{"message","type","code"}`) as Google's error element; nothing
    /// follows it.
    pub fn error(&mut self, e: &Value, out: &mut BytesMut) {
        if self.ended {
            return;
        }
        self.ended = true;
        let message = e["message"].as_str().unwrap_or("error");
        let body = super::error_body(chat_error_status(e), message);
        self.element(out, &body);
        self.close(out);
    }

    /// One element as the upstream wrote it (`json`, a Gemini route's own event data, when the
    /// answer passes through): a `data:` event, or the array's next element.
    pub fn raw_element(&mut self, json: &[u8], out: &mut BytesMut) {
        if self.ended {
            return;
        }
        self.start(out);
        match self.framing {
            Framing::Sse => out.extend_from_slice(b"data: "),
            Framing::JsonArray if self.written => out.extend_from_slice(b"\n,\r\n"),
            Framing::JsonArray => {}
        }
        self.written = true;
        out.extend_from_slice(json);
        if self.framing == Framing::Sse {
            out.extend_from_slice(b"\n\n");
        }
    }

    /// The end of a passed-through stream: the array's `]` (nothing for SSE).
    pub fn end(&mut self, out: &mut BytesMut) {
        if !self.ended {
            self.ended = true;
            self.close(out);
        }
    }

    fn close(&mut self, out: &mut BytesMut) {
        if self.framing == Framing::JsonArray {
            self.start(out);
            out.extend_from_slice(b"\n]");
        }
    }

    pub fn is_ended(&self) -> bool {
        self.ended
    }

    pub fn framing(&self) -> Framing {
        self.framing
    }

    /// A whole chat completion as the `GenerateContentResponse` this stream's client expects
    /// (its model, response id and thoughts setting).
    pub fn whole(&self, completion: &Value) -> Value {
        completion_to_gemini(completion, &self.model, &self.id, self.include_thoughts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_anthropic_routes_signed_thinking_rides_on_the_call_and_comes_back() {
        // Streamed: thinking, its signature, then a call (as the Anthropic translation writes them).
        let mut g = GeminiStream::new(Framing::Sse, "m".into(), "r".into(), false);
        let mut out = BytesMut::new();
        for c in [
            json!({"choices": [{"index": 0, "delta": {"reasoning_content": "Read it."}}]}),
            json!({"choices": [{"index": 0, "delta": {"reasoning_signature": "SIG=="}}]}),
            json!({"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "id": "toolu_1",
                "function": {"name": "read_file", "arguments": "{\"file_path\":\"a\"}"}}]}}]}),
            json!({"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]}),
        ] {
            g.chunk_data(c.to_string().as_bytes(), &mut out);
        }
        g.finish(&mut out);
        let events = sse_events(&out);
        let part = events
            .iter()
            .map(|e| &e["candidates"][0]["content"]["parts"][0])
            .find(|p| p.get("functionCall").is_some())
            .unwrap()
            .clone();
        let carried = part["thoughtSignature"].as_str().unwrap();
        assert_eq!(
            crate::reasoning_carrier::unpack(carried),
            Some(("Read it.".into(), "SIG==".into()))
        );
        // Whole: the same carrier on the first call.
        let whole = completion_to_gemini(
            &json!({"choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
                "role": "assistant", "content": null, "reasoning_content": "Read it.",
                "reasoning_signature": "SIG==",
                "tool_calls": [{"id": "toolu_1", "type": "function",
                                "function": {"name": "read_file", "arguments": "{}"}}]}}]}),
            "m",
            "r",
            false,
        );
        assert_eq!(
            whole["candidates"][0]["content"]["parts"][0]["thoughtSignature"],
            part["thoughtSignature"]
        );
        // Gemini CLI sends the call back with it: the chat turn has the signed thinking again.
        let plan = gemini_to_chat(
            &json!({"contents": [
                {"role": "user", "parts": [{"text": "read a"}]},
                {"role": "model", "parts": [part]},
                {"role": "user", "parts": [{"functionResponse": {"id": "toolu_1", "name": "read_file",
                                                                "response": {"output": "hello"}}}]},
            ]}),
            "m",
            true,
        )
        .unwrap();
        let assistant = &plan.body["messages"][1];
        assert_eq!(assistant["reasoning_content"], "Read it.");
        assert_eq!(assistant["reasoning_signature"], "SIG==");
    }

    fn sse_events(out: &[u8]) -> Vec<Value> {
        let text = std::str::from_utf8(out).unwrap();
        assert!(text.ends_with("\n\n"), "{text}");
        text.split("\n\n")
            .filter(|b| !b.is_empty())
            .map(|b| serde_json::from_str(b.strip_prefix("data: ").unwrap()).unwrap())
            .collect()
    }

    #[test]
    fn a_conversation_with_calls_becomes_chat() {
        let raw = json!({
            "system_instruction": {"parts": [{"text": "Be brief."}, {"text": "Be kind."}]},
            "contents": [
                {"role": "user", "parts": [{"text": "hi"}, {"inlineData": {"mimeType": "image/png", "data": "AAAA"}}]},
                {"role": "model", "parts": [
                    {"text": "thinking…", "thought": true},
                    {"text": "Let me look."},
                    {"functionCall": {"name": "read", "args": {"p": "a"}}, "thoughtSignature": "sig"},
                    {"function_call": {"name": "list", "args": {}}}]},
                {"role": "user", "parts": [
                    {"functionResponse": {"name": "list", "response": {"output": "x, y"}}},
                    {"functionResponse": {"name": "read", "response": {"data": 1, "more": true}}}]},
                {"role": "model", "parts": [{"functionCall": {"id": "own-id", "name": "read", "args": {}}}]},
                {"role": "function", "parts": [{"functionResponse": {"id": "own-id", "name": "read", "response": {"output": "z"}}}]},
                {"parts": [{"text": "go on"}, {"fileData": {"mimeType": "image/jpeg", "fileUri": "https://x/y.jpg"}}, {"unknownPart": 1}]},
            ],
            "tools": [{"functionDeclarations": [
                {"name": "read", "description": "reads", "parameters": {"type": "OBJECT",
                    "properties": {"p": {"type": "STRING", "enum": ["A", "B"]}, "l": {"type": "ARRAY", "items": {"type": "INTEGER"}}},
                    "required": ["p"]}},
                {"name": "list", "parametersJsonSchema": {"type": "object", "properties": {"Type": {"type": "STRING"}}}},
                {"name": "noargs"}]},
                {"googleSearch": {}}, {"codeExecution": {}}, {"google_search": {}}],
            "toolConfig": {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["read"]}},
            "generationConfig": {"temperature": 0.2, "topP": 0.9, "topK": 40, "maxOutputTokens": 100,
                "stopSequences": ["END"], "candidateCount": 2, "responseMimeType": "application/json",
                "responseSchema": {"type": "OBJECT", "properties": {"a": {"type": "NUMBER"}}},
                "thinkingConfig": {"includeThoughts": true, "thinkingBudget": 3000}},
            "safetySettings": [{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_NONE"}],
            "somethingNew": true,
        });
        let plan = gemini_to_chat(&raw, "g", true).unwrap();
        let b = &plan.body;
        assert!(plan.stream && plan.include_thoughts);
        assert_eq!(
            plan.dropped,
            [
                "tools.1:googleSearch",
                "tools.2:codeExecution",
                "tools.3:googleSearch"
            ]
        );
        let m = b["messages"].as_array().unwrap();
        assert_eq!(
            m[0],
            json!({"role": "system", "content": "Be brief.\nBe kind."})
        );
        assert_eq!(
            m[1]["content"][1]["image_url"]["url"],
            "data:image/png;base64,AAAA"
        );
        assert_eq!(m[2]["content"], "Let me look.");
        assert_eq!(m[2]["tool_calls"][0]["id"], "call_0");
        assert_eq!(
            m[2]["tool_calls"][0]["function"]["arguments"],
            "{\"p\":\"a\"}"
        );
        assert_eq!(m[2]["tool_calls"][1]["id"], "call_1");
        // Answered by name, whatever the order.
        assert_eq!(
            m[3],
            json!({"role": "tool", "tool_call_id": "call_1", "content": "x, y"})
        );
        assert_eq!(m[4]["tool_call_id"], "call_0");
        assert_eq!(m[4]["content"], "{\"data\":1,\"more\":true}");
        assert_eq!(m[5]["tool_calls"][0]["id"], "own-id");
        assert_eq!(m[6]["tool_call_id"], "own-id");
        assert_eq!(m[7]["content"][0], json!({"type": "text", "text": "go on"}));
        assert_eq!(m[7]["content"][1]["image_url"]["url"], "https://x/y.jpg");
        assert_eq!(m.len(), 8);
        let tools = b["tools"].as_array().unwrap();
        assert_eq!(
            tools[0]["function"]["parameters"],
            json!({"type": "object", "properties": {"p": {"type": "string", "enum": ["A", "B"]},
                   "l": {"type": "array", "items": {"type": "integer"}}}, "required": ["p"]})
        );
        // A JSON schema is kept as it came.
        assert_eq!(
            tools[1]["function"]["parameters"]["properties"]["Type"]["type"],
            "STRING"
        );
        assert_eq!(tools[2]["function"]["parameters"]["type"], "object");
        assert_eq!(b["tool_choice"]["function"]["name"], "read");
        assert_eq!(b["temperature"], 0.2);
        assert_eq!(b["top_p"], 0.9);
        assert!(b.get("top_k").is_none());
        assert_eq!(b["max_tokens"], 100);
        assert_eq!(b["stop"], json!(["END"]));
        assert_eq!(b["n"], 2);
        assert_eq!(
            b["response_format"]["json_schema"]["schema"]["properties"]["a"]["type"],
            "number"
        );
        assert_eq!(b["reasoning_effort"], "medium");
        assert_eq!(b["thinking"]["budget_tokens"], 3000);
        assert_eq!(b["stream_options"]["include_usage"], true);
    }

    #[test]
    fn thinking_and_tool_modes_map_to_chat() {
        let plan = |config: Value| {
            gemini_to_chat(
                &json!({"contents": [{"parts": [{"text": "x"}]}], "generationConfig": config,
                        "tools": [{"functionDeclarations": [{"name": "f"}, {"name": "g"}]}],
                        "toolConfig": {"functionCallingConfig": {"mode": "NONE"}}}),
                "m",
                false,
            )
            .unwrap()
        };
        let p = plan(json!({"thinkingConfig": {"thinkingBudget": 0}}));
        assert_eq!(p.body["thinking"]["type"], "disabled");
        assert!(p.body.get("reasoning_effort").is_none());
        assert!(!p.include_thoughts && !p.stream);
        assert!(p.body.get("stream").is_none());
        assert_eq!(p.body["tool_choice"], "none");
        let p = plan(json!({"thinkingConfig": {"thinkingBudget": -1}}));
        assert_eq!(p.body["reasoning_effort"], "medium");
        let p = plan(json!({"thinkingConfig": {"thinkingLevel": "HIGH"}}));
        assert_eq!(p.body["reasoning_effort"], "high");
        let p = plan(json!({"thinkingConfig": {"thinkingBudget": 100000}}));
        assert_eq!(p.body["reasoning_effort"], "max");
        let p = plan(json!({"responseMimeType": "application/json"}));
        assert_eq!(p.body["response_format"]["type"], "json_object");
    }

    #[test]
    fn what_cannot_be_read_is_refused_naming_the_field() {
        let e = gemini_to_chat(&json!({}), "m", false).unwrap_err();
        assert_eq!(e.param, "contents");
        let e = gemini_to_chat(
            &json!({"contents": [{"role": "system", "parts": []}]}),
            "m",
            false,
        )
        .unwrap_err();
        assert_eq!(e.param, "contents[0].role");
        let e = gemini_to_chat(
            &json!({"contents": [{"parts": [{"text": "x"}]}], "generationConfig": {"temperature": "hot"}}),
            "m",
            false,
        )
        .unwrap_err();
        assert_eq!(e.param, "generationConfig.temperature");
        let e = gemini_to_chat(
            &json!({"contents": [{"parts": [{"inlineData": {"mimeType": "image/png"}}]}]}),
            "m",
            false,
        )
        .unwrap_err();
        assert_eq!(e.param, "contents[0].parts[0].inlineData.data");
        // Cached content cannot be carried: dropped and said.
        let p = gemini_to_chat(
            &json!({"contents": [{"parts": [{"text": "x"}]}], "cachedContent": "cachedContents/1"}),
            "m",
            false,
        )
        .unwrap();
        assert_eq!(p.dropped, ["cachedContent"]);
    }

    #[test]
    fn a_completion_becomes_a_generate_content_response() {
        let c = json!({"choices": [{"index": 0, "message": {"content": "Hello",
            "reasoning_content": "hmm", "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{\"x\":2}"}}]},
            "finish_reason": "tool_calls"}],
            "usage": {"prompt_tokens": 7, "completion_tokens": 13, "total_tokens": 20,
                      "prompt_tokens_details": {"cached_tokens": 2},
                      "completion_tokens_details": {"reasoning_tokens": 10}, "cost": "0.01"}});
        let r = completion_to_gemini(&c, "g", "resp-1", true);
        let parts = &r["candidates"][0]["content"]["parts"];
        assert_eq!(parts[0], json!({"text": "hmm", "thought": true}));
        assert_eq!(parts[1], json!({"text": "Hello"}));
        assert_eq!(
            parts[2]["functionCall"],
            json!({"name": "f", "args": {"x": 2}, "id": "c1"})
        );
        assert_eq!(r["candidates"][0]["finishReason"], "STOP");
        assert_eq!(r["candidates"][0]["content"]["role"], "model");
        assert_eq!(
            r["usageMetadata"],
            json!({"promptTokenCount": 7, "candidatesTokenCount": 3, "totalTokenCount": 20,
                   "thoughtsTokenCount": 10, "cachedContentTokenCount": 2, "cost": "0.01"})
        );
        assert_eq!(r["modelVersion"], "g");
        assert_eq!(r["responseId"], "resp-1");
        let r = completion_to_gemini(&c, "g", "resp-1", false);
        assert_eq!(
            r["candidates"][0]["content"]["parts"][0],
            json!({"text": "Hello"})
        );
        let c = json!({"choices": [{"message": {"content": "x"}, "finish_reason": "length"}]});
        assert_eq!(
            completion_to_gemini(&c, "g", "r", false)["candidates"][0]["finishReason"],
            "MAX_TOKENS"
        );
    }

    fn chunks() -> Vec<Value> {
        vec![
            json!({"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]}),
            json!({"choices": [{"index": 0, "delta": {"reasoning_content": "hmm"}}]}),
            json!({"choices": [{"index": 0, "delta": {"content": "Hi"}}]}),
            json!({"choices": [{"index": 0, "delta": {"content": " there"}}]}),
            json!({"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "id": "c1", "function": {"name": "f", "arguments": "{\"a\""}}]}}]}),
            json!({"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": ":1}"}}]}}]}),
            json!({"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 1, "id": "c2", "function": {"name": "g", "arguments": ""}}]}}]}),
            json!({"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}],
                   "usage": {"prompt_tokens": 10, "completion_tokens": 5, "cost": "0.1"}}),
        ]
    }

    #[test]
    fn a_chat_stream_becomes_gemini_sse_events() {
        let mut s = GeminiStream::new(Framing::Sse, "g".into(), "r1".into(), true);
        let mut out = BytesMut::new();
        for c in chunks() {
            s.chunk_data(c.to_string().as_bytes(), &mut out);
        }
        s.finish(&mut out);
        let ev = sse_events(&out);
        let parts: Vec<&Value> = ev
            .iter()
            .map(|e| &e["candidates"][0]["content"]["parts"][0])
            .collect();
        assert_eq!(parts[0], &json!({"text": "hmm", "thought": true}));
        assert_eq!(parts[1], &json!({"text": "Hi"}));
        assert_eq!(parts[2], &json!({"text": " there"}));
        assert_eq!(
            parts[3],
            &json!({"functionCall": {"name": "f", "args": {"a": 1}, "id": "c1"}})
        );
        assert_eq!(
            parts[4],
            &json!({"functionCall": {"name": "g", "args": {}, "id": "c2"}})
        );
        assert_eq!(ev.len(), 6);
        for e in &ev[..5] {
            assert!(e["candidates"][0].get("finishReason").is_none());
            assert!(e.get("usageMetadata").is_none());
            assert_eq!(e["modelVersion"], "g");
            assert_eq!(e["responseId"], "r1");
        }
        assert_eq!(ev[5]["candidates"][0]["finishReason"], "STOP");
        assert_eq!(ev[5]["usageMetadata"]["promptTokenCount"], 10);
        assert_eq!(ev[5]["usageMetadata"]["totalTokenCount"], 15);
        assert_eq!(ev[5]["usageMetadata"]["cost"], "0.1");
        assert!(s.is_ended());
        let before = out.len();
        s.chunk_data(
            b"{\"choices\":[{\"delta\":{\"content\":\"late\"}}]}",
            &mut out,
        );
        s.finish(&mut out);
        assert_eq!(out.len(), before, "nothing after the end");
    }

    #[test]
    fn without_alt_sse_the_stream_is_one_json_array() {
        let mut s = GeminiStream::new(Framing::JsonArray, "g".into(), "r1".into(), false);
        let mut out = BytesMut::new();
        s.start(&mut out);
        assert_eq!(&out[..], b"[");
        for c in chunks() {
            s.chunk_data(c.to_string().as_bytes(), &mut out);
        }
        s.finish(&mut out);
        let text = std::str::from_utf8(&out).unwrap();
        assert!(text.contains("}\n,\r\n{"), "{text}");
        assert!(text.ends_with("\n]"));
        let all: Vec<Value> = serde_json::from_str(text).unwrap();
        // No thought part without includeThoughts.
        assert_eq!(all.len(), 5);
        assert_eq!(all[0]["candidates"][0]["content"]["parts"][0]["text"], "Hi");
        assert_eq!(all[4]["candidates"][0]["finishReason"], "STOP");
        // An error closes the array too.
        let mut s = GeminiStream::new(Framing::JsonArray, "g".into(), "r1".into(), false);
        let mut out = BytesMut::new();
        s.chunk_data(br#"{"choices":[{"delta":{"content":"a"}}]}"#, &mut out);
        s.chunk_data(
            br#"{"error":{"message":"boom","type":"upstream_error","code":502}}"#,
            &mut out,
        );
        let all: Vec<Value> = serde_json::from_slice(&out).unwrap();
        assert_eq!(
            all[1],
            json!({"error": {"code": 502, "message": "boom", "status": "UNAVAILABLE"}})
        );
        let mut s = GeminiStream::new(Framing::JsonArray, "g".into(), "r".into(), false);
        let mut out = BytesMut::new();
        s.finish(&mut out);
        let all: Vec<Value> = serde_json::from_slice(&out).unwrap();
        assert_eq!(all[0]["candidates"][0]["finishReason"], "STOP");
    }

    #[test]
    fn an_error_in_a_sse_stream_is_a_google_error_event() {
        let mut s = GeminiStream::new(Framing::Sse, "g".into(), "r".into(), false);
        let mut out = BytesMut::new();
        s.chunk_data(
            br#"{"error":{"message":"slow","type":"timeout_error","code":"upstream_timeout"}}"#,
            &mut out,
        );
        s.finish(&mut out);
        let ev = sse_events(&out);
        assert_eq!(
            ev,
            [json!({"error": {"code": 504, "message": "slow", "status": "DEADLINE_EXCEEDED"}})]
        );
        assert_eq!(status_name(429), "RESOURCE_EXHAUSTED");
        assert_eq!(status_name(401), "UNAUTHENTICATED");
        assert_eq!(status_name(500), "INTERNAL");
        assert_eq!(status_name(503), "UNAVAILABLE");
    }
}
