//! OpenAI Chat Completions request → Anthropic Messages request.
//!
//! Fields Anthropic has no use for (`seed`, `frequency_penalty`, `service_tier`, unknown extensions, …) are
//! dropped, because Anthropic answers 400 to fields it does not know. Fields whose meaning cannot be kept
//! (`n > 1`, `logprobs`, `response_format: json_schema`, audio and file inputs other than PDF) are refused
//! with a [`TranslateError`] naming the field, so the caller gets a clear 400 instead of a silent change.

use super::TranslateError;
use serde_json::{json, Map, Value};

/// `reasoning_effort` → Anthropic `thinking.budget_tokens`. `none` turns thinking off (no `thinking` field).
/// Any other value is refused with a [`TranslateError`] on `reasoning_effort`.
pub const THINKING_BUDGETS: &[(&str, u32)] = &[
    ("minimal", 1024),
    ("low", 2048),
    ("medium", 8192),
    ("high", 16384),
    ("xhigh", 24576),
    ("max", 32768),
];

/// Budget used when the caller sends `thinking: {"type":"enabled"}` without `budget_tokens` (the `medium` row).
pub const DEFAULT_THINKING_BUDGET: u32 = 8192;

/// Anthropic's smallest accepted `budget_tokens`.
const MIN_THINKING_BUDGET: u64 = 1024;

/// Translates an OpenAI chat request into an Anthropic Messages request for `upstream_model`.
///
/// - `system`/`developer` messages → top-level `system` (a string when there is one plain text, else text blocks).
/// - `user`/`assistant` turns alternate: consecutive same-role turns are merged; `tool` messages become
///   `tool_result` blocks at the start of a user turn.
/// - `max_tokens` = `max_completion_tokens`, else `max_tokens`, else `default_max_tokens`; when thinking is on
///   and that is not above the budget, it becomes `budget + max_tokens`, so the answer keeps its room.
/// - `reasoning_effort` (see [`THINKING_BUDGETS`]) or a caller-supplied Anthropic `thinking` object enables
///   thinking; then `temperature` and `top_k` are dropped, `top_p` below 0.95 is dropped, and forced tool
///   use (`tool_choice` `required` or a named function) is refused, as Anthropic requires.
/// - `temperature` is clamped to Anthropic's 0–1; `stop` → `stop_sequences`; `user` (else
///   `safety_identifier`) → `metadata.user_id`; `parallel_tool_calls: false` → `disable_parallel_tool_use`.
pub fn chat_request_to_messages(
    req: &Value,
    upstream_model: &str,
    default_max_tokens: u32,
) -> Result<Value, TranslateError> {
    let req = req
        .as_object()
        .ok_or_else(|| TranslateError::new("body", "the request body must be a JSON object"))?;
    refuse_unsupported(req)?;

    let (system, messages) = convert_messages(req.get("messages"))?;
    let thinking = thinking_config(req)?;
    let max_tokens = with_thinking_room(
        requested_max_tokens(req, default_max_tokens)?,
        thinking.budget,
    );

    let mut out = Map::new();
    out.insert("model".into(), json!(upstream_model));
    out.insert("max_tokens".into(), json!(max_tokens));
    if let Some(system) = system {
        out.insert("system".into(), system);
    }
    out.insert("messages".into(), Value::Array(messages));

    let tools = convert_tools(present(req, "tools"))?;
    let tool_choice = convert_tool_choice(req, !tools.is_empty(), thinking.value.is_some())?;
    if !tools.is_empty() {
        out.insert("tools".into(), Value::Array(tools));
    }
    if let Some(choice) = tool_choice {
        out.insert("tool_choice".into(), choice);
    }
    let thinking_on = thinking.enabled;
    if let Some(value) = thinking.value {
        out.insert("thinking".into(), value);
    }

    if let Some(stop) = stop_sequences(present(req, "stop"))? {
        out.insert("stop_sequences".into(), stop);
    }
    if let Some(t) = present(req, "temperature") {
        let t = t
            .as_f64()
            .ok_or_else(|| TranslateError::new("temperature", "temperature must be a number"))?;
        if !thinking_on {
            out.insert("temperature".into(), json!(t.clamp(0.0, 1.0)));
        }
    }
    if let Some(p) = present(req, "top_p") {
        let p = p
            .as_f64()
            .ok_or_else(|| TranslateError::new("top_p", "top_p must be a number"))?;
        if !thinking_on || p >= 0.95 {
            out.insert("top_p".into(), json!(p.clamp(0.0, 1.0)));
        }
    }
    if let Some(k) = present(req, "top_k") {
        let k = k
            .as_u64()
            .ok_or_else(|| TranslateError::new("top_k", "top_k must be a non-negative integer"))?;
        if !thinking_on {
            out.insert("top_k".into(), json!(k));
        }
    }
    let user = present(req, "user").or_else(|| present(req, "safety_identifier"));
    if let Some(user) = user.and_then(Value::as_str).filter(|u| !u.is_empty()) {
        out.insert("metadata".into(), json!({ "user_id": user }));
    }
    if let Some(stream) = present(req, "stream") {
        let stream = stream
            .as_bool()
            .ok_or_else(|| TranslateError::new("stream", "stream must be a boolean"))?;
        out.insert("stream".into(), json!(stream));
    }
    Ok(Value::Object(out))
}

/// The `max_tokens` [`chat_request_to_messages`] sends for `req` (thinking budget included), computed
/// without building the request and without allocating: what the upstream may generate at most, for
/// the gateway's hold. `Err` exactly when the translation refuses the same fields.
pub fn upstream_max_tokens(
    req: &Map<String, Value>,
    default_max_tokens: u32,
) -> Result<u64, TranslateError> {
    Ok(with_thinking_room(
        requested_max_tokens(req, default_max_tokens)?,
        thinking_budget(req)?,
    ))
}

/// With thinking on, a `max_tokens` not above the budget becomes `budget + max_tokens`, so the
/// answer keeps its room.
fn with_thinking_room(max_tokens: u64, budget: Option<u64>) -> u64 {
    match budget {
        Some(budget) if max_tokens <= budget => budget.saturating_add(max_tokens),
        _ => max_tokens,
    }
}

/// `obj[key]`, treating JSON `null` as absent (OpenAI clients send `null` for "not set").
fn present<'a>(obj: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    obj.get(key).filter(|v| !v.is_null())
}

fn refuse_unsupported(req: &Map<String, Value>) -> Result<(), TranslateError> {
    if let Some(n) = present(req, "n") {
        if n.as_u64() != Some(1) {
            return Err(TranslateError::new(
                "n",
                "Anthropic models return exactly one choice; n must be 1",
            ));
        }
    }
    if present(req, "logprobs").and_then(Value::as_bool) == Some(true) {
        return Err(TranslateError::new(
            "logprobs",
            "logprobs are not available for Anthropic models",
        ));
    }
    if let Some(format) = present(req, "response_format") {
        if format.get("type").and_then(Value::as_str) == Some("json_schema") {
            return Err(TranslateError::new(
                "response_format",
                "response_format json_schema is not supported for Anthropic models; describe the schema in a tool instead",
            ));
        }
    }
    Ok(())
}

fn requested_max_tokens(req: &Map<String, Value>, default: u32) -> Result<u64, TranslateError> {
    for key in ["max_completion_tokens", "max_tokens"] {
        if let Some(v) = present(req, key) {
            return match v.as_u64() {
                Some(n) if n >= 1 => Ok(n),
                _ => Err(TranslateError::new(
                    key,
                    format!("{key} must be a positive integer"),
                )),
            };
        }
    }
    Ok(u64::from(default.max(1)))
}

struct Thinking {
    /// The Anthropic `thinking` field to send, if any.
    value: Option<Value>,
    /// The budget that `max_tokens` must exceed, for `type: "enabled"`.
    budget: Option<u64>,
    /// Thinking is on (`enabled` or `adaptive`): sampling parameters and forced tool use are restricted.
    enabled: bool,
}

fn thinking_config(req: &Map<String, Value>) -> Result<Thinking, TranslateError> {
    let budget = thinking_budget(req)?;
    let off = Thinking {
        value: None,
        budget: None,
        enabled: false,
    };
    // An Anthropic-style `thinking` object (sent through the SDKs' `extra_body`) wins over `reasoning_effort`.
    if let Some(thinking) = present(req, "thinking") {
        return Ok(match thinking.get("type").and_then(Value::as_str) {
            Some("adaptive") => Thinking {
                value: Some(thinking.clone()),
                budget: None,
                enabled: true,
            },
            Some("disabled") => Thinking {
                value: Some(json!({"type": "disabled"})),
                ..off
            },
            // `thinking_budget` accepted it, so it is `enabled`.
            _ => Thinking {
                value: budget.map(|b| json!({"type": "enabled", "budget_tokens": b})),
                budget,
                enabled: true,
            },
        });
    }
    Ok(match budget {
        Some(b) => Thinking {
            value: Some(json!({"type": "enabled", "budget_tokens": b})),
            budget: Some(b),
            enabled: true,
        },
        None => off,
    })
}

/// The thinking budget `req` asks for (`thinking: {type: enabled}` or `reasoning_effort`), `None`
/// when thinking is off or adaptive. Validates both fields; allocates only for an error.
fn thinking_budget(req: &Map<String, Value>) -> Result<Option<u64>, TranslateError> {
    if let Some(thinking) = present(req, "thinking") {
        let kind = thinking.get("type").and_then(Value::as_str);
        return match kind {
            Some("enabled") => {
                let budget = match thinking.get("budget_tokens").filter(|b| !b.is_null()) {
                    None => u64::from(DEFAULT_THINKING_BUDGET),
                    Some(b) => b.as_u64().ok_or_else(|| {
                        TranslateError::new(
                            "thinking.budget_tokens",
                            "budget_tokens must be a positive integer",
                        )
                    })?,
                };
                Ok(Some(budget.max(MIN_THINKING_BUDGET)))
            }
            Some("adaptive") | Some("disabled") => Ok(None),
            _ => Err(TranslateError::new(
                "thinking.type",
                "thinking.type must be \"enabled\", \"adaptive\" or \"disabled\"",
            )),
        };
    }
    let Some(effort) = present(req, "reasoning_effort") else {
        return Ok(None);
    };
    let effort = effort.as_str().unwrap_or_default();
    if effort == "none" {
        return Ok(None);
    }
    match THINKING_BUDGETS.iter().find(|(name, _)| *name == effort) {
        Some(&(_, budget)) => Ok(Some(u64::from(budget))),
        None => Err(TranslateError::new(
            "reasoning_effort",
            "reasoning_effort must be one of none, minimal, low, medium, high, xhigh, max",
        )),
    }
}

fn stop_sequences(stop: Option<&Value>) -> Result<Option<Value>, TranslateError> {
    let err = || TranslateError::new("stop", "stop must be a string or an array of strings");
    let list: Vec<Value> = match stop {
        None => return Ok(None),
        Some(Value::String(s)) => vec![json!(s)],
        Some(Value::Array(items)) => items
            .iter()
            .map(|s| s.as_str().map(|s| json!(s)).ok_or_else(err))
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(err()),
    };
    let list: Vec<Value> = list
        .into_iter()
        .filter(|s| s.as_str().is_some_and(|s| !s.is_empty()))
        .collect();
    Ok((!list.is_empty()).then_some(Value::Array(list)))
}

fn convert_tools(tools: Option<&Value>) -> Result<Vec<Value>, TranslateError> {
    let Some(tools) = tools else {
        return Ok(Vec::new());
    };
    let tools = tools
        .as_array()
        .ok_or_else(|| TranslateError::new("tools", "tools must be an array"))?;
    let mut out = Vec::with_capacity(tools.len());
    for (i, tool) in tools.iter().enumerate() {
        let p = format!("tools[{i}]");
        let kind = tool
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("function");
        if kind != "function" {
            return Err(TranslateError::new(
                format!("{p}.type"),
                format!(
                    "tool type `{kind}` is not supported for Anthropic models; use function tools"
                ),
            ));
        }
        let function = tool
            .get("function")
            .and_then(Value::as_object)
            .ok_or_else(|| TranslateError::new(format!("{p}.function"), "function is required"))?;
        let name = function
            .get("name")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
            .ok_or_else(|| {
                TranslateError::new(format!("{p}.function.name"), "function.name is required")
            })?;
        let mut schema = match present(function, "parameters") {
            None => Map::new(),
            Some(Value::Object(schema)) => schema.clone(),
            Some(_) => {
                return Err(TranslateError::new(
                    format!("{p}.function.parameters"),
                    "parameters must be a JSON Schema object",
                ))
            }
        };
        if !schema.contains_key("type") {
            schema.insert("type".into(), json!("object"));
        }
        if schema.get("type") == Some(&json!("object")) && !schema.contains_key("properties") {
            schema.insert("properties".into(), json!({}));
        }
        let mut t = Map::new();
        t.insert("name".into(), json!(name));
        if let Some(desc) = function
            .get("description")
            .and_then(Value::as_str)
            .filter(|d| !d.is_empty())
        {
            t.insert("description".into(), json!(desc));
        }
        t.insert("input_schema".into(), Value::Object(schema));
        if let Some(cache) = tool.get("cache_control").filter(|c| !c.is_null()) {
            t.insert("cache_control".into(), cache.clone());
        }
        out.push(Value::Object(t));
    }
    Ok(out)
}

fn convert_tool_choice(
    req: &Map<String, Value>,
    have_tools: bool,
    thinking: bool,
) -> Result<Option<Value>, TranslateError> {
    let no_parallel = present(req, "parallel_tool_calls").and_then(Value::as_bool) == Some(false);
    let unsupported = || {
        TranslateError::new(
            "tool_choice",
            "tool_choice must be \"none\", \"auto\", \"required\" or {\"type\":\"function\",\"function\":{\"name\":…}}",
        )
    };
    let mut choice = match present(req, "tool_choice") {
        None => json!({"type": "auto"}),
        Some(Value::String(s)) => match s.as_str() {
            "none" => json!({"type": "none"}),
            "auto" => json!({"type": "auto"}),
            "required" => json!({"type": "any"}),
            _ => return Err(unsupported()),
        },
        Some(obj @ Value::Object(_)) => {
            let name = obj
                .get("function")
                .and_then(|f| f.get("name"))
                .and_then(Value::as_str)
                .filter(|_| obj.get("type").and_then(Value::as_str) == Some("function"))
                .ok_or_else(unsupported)?;
            json!({"type": "tool", "name": name})
        }
        Some(_) => return Err(unsupported()),
    };
    let kind = choice["type"].as_str().unwrap_or_default().to_string();
    if !have_tools {
        return match kind.as_str() {
            "none" | "auto" => Ok(None),
            _ => Err(TranslateError::new(
                "tool_choice",
                "tool_choice requires at least one tool in `tools`",
            )),
        };
    }
    if thinking && (kind == "any" || kind == "tool") {
        return Err(TranslateError::new(
            "tool_choice",
            "forcing a tool call is not supported together with reasoning on Anthropic models; use tool_choice \"auto\" or drop reasoning_effort",
        ));
    }
    if no_parallel && kind != "none" {
        choice["disable_parallel_tool_use"] = json!(true);
    }
    // Anthropic's default is auto: only send what changes something.
    if present(req, "tool_choice").is_none() && !no_parallel {
        return Ok(None);
    }
    Ok(Some(choice))
}

/// Returns the top-level `system` value and the alternating `messages` array.
fn convert_messages(
    messages: Option<&Value>,
) -> Result<(Option<Value>, Vec<Value>), TranslateError> {
    let messages = messages
        .and_then(Value::as_array)
        .ok_or_else(|| TranslateError::new("messages", "messages must be a non-empty array"))?;
    let mut system: Vec<Value> = Vec::new();
    let mut turns: Vec<(&'static str, Vec<Value>)> = Vec::new();
    for (i, msg) in messages.iter().enumerate() {
        let p = format!("messages[{i}]");
        let obj = msg
            .as_object()
            .ok_or_else(|| TranslateError::new(&p, "each message must be an object"))?;
        let role = obj
            .get("role")
            .and_then(Value::as_str)
            .ok_or_else(|| TranslateError::new(format!("{p}.role"), "role is required"))?;
        let (turn_role, blocks) = match role {
            "system" | "developer" => {
                system.extend(text_only_blocks(present(obj, "content"), &p)?);
                continue;
            }
            "user" => ("user", user_blocks(present(obj, "content"), &p)?),
            "assistant" => ("assistant", assistant_blocks(obj, &p)?),
            "tool" => ("user", vec![tool_result_block(obj, &p)?]),
            other => {
                return Err(TranslateError::new(
                    format!("{p}.role"),
                    format!("role `{other}` is not supported; use system, developer, user, assistant or tool"),
                ))
            }
        };
        if blocks.is_empty() {
            continue;
        }
        match turns.last_mut() {
            Some((last, existing)) if *last == turn_role => existing.extend(blocks),
            _ => turns.push((turn_role, blocks)),
        }
    }
    if turns.is_empty() {
        return Err(TranslateError::new(
            "messages",
            "messages must contain at least one user or assistant message with content",
        ));
    }
    let messages = turns
        .into_iter()
        .map(|(role, mut blocks)| {
            if role == "user" {
                // Anthropic wants a user turn's tool results before anything else in it.
                blocks.sort_by_key(|b| b.get("type") != Some(&json!("tool_result")));
            }
            json!({"role": role, "content": collapse(blocks)})
        })
        .collect();
    let system = match system.len() {
        0 => None,
        _ => Some(collapse(system)),
    };
    Ok((system, messages))
}

/// A lone plain text block becomes a bare string; anything else stays a block array.
fn collapse(mut blocks: Vec<Value>) -> Value {
    if blocks.len() == 1 {
        let only = &blocks[0];
        if only.get("type") == Some(&json!("text"))
            && only.as_object().is_some_and(|o| o.len() == 2)
        {
            return blocks.swap_remove(0)["text"].take();
        }
    }
    Value::Array(blocks)
}

fn text_block(text: &str, part: Option<&Value>) -> Value {
    let mut block = json!({"type": "text", "text": text});
    if let Some(cache) = part
        .and_then(|p| p.get("cache_control"))
        .filter(|c| !c.is_null())
    {
        block["cache_control"] = cache.clone();
    }
    block
}

/// Content that may only hold text (system, developer): a string or an array of `text` parts.
fn text_only_blocks(content: Option<&Value>, p: &str) -> Result<Vec<Value>, TranslateError> {
    match content {
        None => Ok(Vec::new()),
        Some(Value::String(s)) => Ok(if s.is_empty() {
            vec![]
        } else {
            vec![text_block(s, None)]
        }),
        Some(Value::Array(parts)) => {
            let mut out = Vec::new();
            for (j, part) in parts.iter().enumerate() {
                let text = part_text(part).ok_or_else(|| {
                    TranslateError::new(
                        format!("{p}.content[{j}]"),
                        "only text parts are allowed here",
                    )
                })?;
                if !text.is_empty() {
                    out.push(text_block(text, Some(part)));
                }
            }
            Ok(out)
        }
        Some(_) => Err(TranslateError::new(
            format!("{p}.content"),
            "content must be a string or an array of content parts",
        )),
    }
}

/// The text of a `text` (or assistant `refusal`) part, or of a bare string part.
fn part_text(part: &Value) -> Option<&str> {
    if let Some(s) = part.as_str() {
        return Some(s);
    }
    match part.get("type").and_then(Value::as_str) {
        Some("text") => part.get("text").and_then(Value::as_str),
        Some("refusal") => part.get("refusal").and_then(Value::as_str),
        _ => None,
    }
}

/// User (and tool result) content: text, images and PDF files.
fn user_blocks(content: Option<&Value>, p: &str) -> Result<Vec<Value>, TranslateError> {
    let parts = match content {
        None => return Ok(Vec::new()),
        Some(Value::String(_)) => return text_only_blocks(content, p),
        Some(Value::Array(parts)) => parts,
        Some(_) => {
            return Err(TranslateError::new(
                format!("{p}.content"),
                "content must be a string or an array of content parts",
            ))
        }
    };
    let mut out = Vec::new();
    for (j, part) in parts.iter().enumerate() {
        let pp = format!("{p}.content[{j}]");
        if let Some(text) = part_text(part) {
            if !text.is_empty() {
                out.push(text_block(text, Some(part)));
            }
            continue;
        }
        let kind = part.get("type").and_then(Value::as_str).unwrap_or_default();
        let mut block = match kind {
            "image_url" => {
                let url = match part.get("image_url") {
                    Some(Value::String(url)) => url.as_str(),
                    Some(obj) => obj.get("url").and_then(Value::as_str).unwrap_or_default(),
                    None => "",
                };
                let source = media_source(url, &format!("{pp}.image_url.url"), "image")?;
                json!({"type": "image", "source": source})
            }
            "file" => {
                let data = part
                    .get("file")
                    .and_then(|f| f.get("file_data"))
                    .and_then(Value::as_str)
                    .ok_or_else(|| {
                        TranslateError::new(
                            format!("{pp}.file"),
                            "only inline files (file.file_data as a base64 data: URL) are supported for Anthropic models",
                        )
                    })?;
                let source = media_source(data, &format!("{pp}.file.file_data"), "file")?;
                if source.get("media_type") != Some(&json!("application/pdf")) {
                    return Err(TranslateError::new(
                        format!("{pp}.file.file_data"),
                        "only PDF files are supported for Anthropic models",
                    ));
                }
                json!({"type": "document", "source": source})
            }
            other => {
                return Err(TranslateError::new(
                    format!("{pp}.type"),
                    format!("content part type `{other}` is not supported for Anthropic models"),
                ))
            }
        };
        if let Some(cache) = part.get("cache_control").filter(|c| !c.is_null()) {
            block["cache_control"] = cache.clone();
        }
        out.push(block);
    }
    Ok(out)
}

/// A `data:<media-type>;base64,<data>` URL → base64 source; an http(s) URL → url source.
fn media_source(url: &str, param: &str, what: &str) -> Result<Value, TranslateError> {
    if let Some(rest) = url.strip_prefix("data:") {
        let bad = || {
            TranslateError::new(
                param,
                format!("the {what} data URL must look like data:<media-type>;base64,<data>"),
            )
        };
        let (meta, data) = rest.split_once(',').ok_or_else(bad)?;
        let mut meta = meta.split(';');
        let media_type = meta.next().unwrap_or_default().trim();
        if media_type.is_empty() || !meta.any(|m| m.trim().eq_ignore_ascii_case("base64")) {
            return Err(bad());
        }
        return Ok(
            json!({"type": "base64", "media_type": media_type.to_ascii_lowercase(), "data": data}),
        );
    }
    let lower = url.get(..8).unwrap_or(url).to_ascii_lowercase();
    if lower.starts_with("https://") || lower.starts_with("http://") {
        return Ok(json!({"type": "url", "url": url}));
    }
    Err(TranslateError::new(
        param,
        format!("the {what} must be an http(s) URL or a base64 data: URL"),
    ))
}

fn assistant_blocks(msg: &Map<String, Value>, p: &str) -> Result<Vec<Value>, TranslateError> {
    let mut out = Vec::new();

    // Thinking goes first so that Anthropic accepts the turn back (required with tools + thinking).
    if let Some(blocks) = present(msg, "thinking_blocks") {
        let blocks = blocks.as_array().ok_or_else(|| {
            TranslateError::new(
                format!("{p}.thinking_blocks"),
                "thinking_blocks must be an array",
            )
        })?;
        for (k, block) in blocks.iter().enumerate() {
            out.push(thinking_block(block).ok_or_else(|| {
                TranslateError::new(
                    format!("{p}.thinking_blocks[{k}]"),
                    "expected {\"type\":\"thinking\",\"thinking\",\"signature\"} or {\"type\":\"redacted_thinking\",\"data\"}",
                )
            })?);
        }
    } else {
        let reasoning = present(msg, "reasoning_content").and_then(Value::as_str);
        let signature = present(msg, "reasoning_signature").and_then(Value::as_str);
        if let (Some(thinking), Some(signature)) = (reasoning, signature) {
            if !signature.is_empty() {
                out.push(json!({"type": "thinking", "thinking": thinking, "signature": signature}));
            }
        }
    }

    out.extend(text_only_blocks(present(msg, "content"), p)?);

    if let Some(calls) = present(msg, "tool_calls") {
        let calls = calls.as_array().ok_or_else(|| {
            TranslateError::new(format!("{p}.tool_calls"), "tool_calls must be an array")
        })?;
        for (j, call) in calls.iter().enumerate() {
            out.push(tool_use_block(call, &format!("{p}.tool_calls[{j}]"))?);
        }
    }
    Ok(out)
}

/// Keeps only the fields Anthropic accepts on a replayed thinking block.
fn thinking_block(block: &Value) -> Option<Value> {
    match block.get("type")?.as_str()? {
        "thinking" => Some(json!({
            "type": "thinking",
            "thinking": block.get("thinking")?.as_str()?,
            "signature": block.get("signature")?.as_str()?,
        })),
        "redacted_thinking" => Some(json!({
            "type": "redacted_thinking",
            "data": block.get("data")?.as_str()?,
        })),
        _ => None,
    }
}

fn tool_use_block(call: &Value, p: &str) -> Result<Value, TranslateError> {
    let id = call
        .get("id")
        .and_then(Value::as_str)
        .filter(|id| !id.is_empty())
        .ok_or_else(|| TranslateError::new(format!("{p}.id"), "tool call id is required"))?;
    let function = call
        .get("function")
        .ok_or_else(|| TranslateError::new(format!("{p}.function"), "function is required"))?;
    let name = function
        .get("name")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .ok_or_else(|| {
            TranslateError::new(format!("{p}.function.name"), "function.name is required")
        })?;
    let param = format!("{p}.function.arguments");
    let input = match function.get("arguments") {
        None | Some(Value::Null) => json!({}),
        Some(Value::String(s)) if s.trim().is_empty() => json!({}),
        Some(Value::String(s)) => serde_json::from_str::<Value>(s).map_err(|e| {
            TranslateError::new(&param, format!("function.arguments is not valid JSON: {e}"))
        })?,
        Some(v) => v.clone(),
    };
    if !input.is_object() {
        return Err(TranslateError::new(
            param,
            "function.arguments must encode a JSON object",
        ));
    }
    Ok(json!({"type": "tool_use", "id": id, "name": name, "input": input}))
}

fn tool_result_block(msg: &Map<String, Value>, p: &str) -> Result<Value, TranslateError> {
    let id = msg
        .get("tool_call_id")
        .and_then(Value::as_str)
        .filter(|id| !id.is_empty())
        .ok_or_else(|| {
            TranslateError::new(format!("{p}.tool_call_id"), "tool_call_id is required")
        })?;
    let mut block = json!({"type": "tool_result", "tool_use_id": id});
    match present(msg, "content") {
        None => {}
        Some(Value::String(s)) => {
            if !s.is_empty() {
                block["content"] = json!(s);
            }
        }
        content => {
            let blocks = user_blocks(content, p)?;
            if !blocks.is_empty() {
                block["content"] = Value::Array(blocks);
            }
        }
    }
    Ok(block)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn translate(req: Value) -> Value {
        chat_request_to_messages(&req, "claude-up", 4096).expect("translates")
    }

    fn translate_err(req: Value) -> TranslateError {
        chat_request_to_messages(&req, "claude-up", 4096).expect_err("must be refused")
    }

    #[test]
    fn minimal_request_gets_model_default_max_tokens_and_string_content() {
        let out =
            translate(json!({"model": "gpt-x", "messages": [{"role": "user", "content": "hi"}]}));
        assert_eq!(
            out,
            json!({"model": "claude-up", "max_tokens": 4096, "messages": [{"role": "user", "content": "hi"}]})
        );
    }

    #[test]
    fn system_and_developer_messages_become_top_level_system() {
        let out = translate(json!({"messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "hi"},
            {"role": "developer", "content": [{"type": "text", "text": "Use French."}]},
        ]}));
        assert_eq!(
            out["system"],
            json!([{"type": "text", "text": "Be brief."}, {"type": "text", "text": "Use French."}])
        );
        assert_eq!(out["messages"], json!([{"role": "user", "content": "hi"}]));

        let single = translate(json!({"messages": [
            {"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}]}));
        assert_eq!(single["system"], json!("Be brief."));
    }

    #[test]
    fn consecutive_same_role_turns_merge() {
        let out = translate(json!({"messages": [
            {"role": "user", "content": "a"},
            {"role": "user", "content": "b"},
            {"role": "assistant", "content": "c"},
            {"role": "assistant", "content": "d"},
        ]}));
        assert_eq!(
            out["messages"],
            json!([
                {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
                {"role": "assistant", "content": [{"type": "text", "text": "c"}, {"type": "text", "text": "d"}]},
            ])
        );
    }

    #[test]
    fn images_from_data_and_http_urls() {
        let out = translate(json!({"messages": [{"role": "user", "content": [
            {"type": "text", "text": "what is this"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo=", "detail": "high"}},
            {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
        ]}]}));
        assert_eq!(
            out["messages"][0]["content"],
            json!([
                {"type": "text", "text": "what is this"},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}},
                {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
            ])
        );
    }

    #[test]
    fn bad_image_url_names_the_part() {
        let err = translate_err(json!({"messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "ftp://x/y.png"}}]}]}));
        assert_eq!(err.param, "messages[0].content[0].image_url.url");
        let err = translate_err(json!({"messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "data:image/png,notbase64"}}]}]}));
        assert_eq!(err.param, "messages[0].content[0].image_url.url");
        let err = translate_err(json!({"messages": [{"role": "user", "content": [
            {"type": "input_audio", "input_audio": {"data": "", "format": "wav"}}]}]}));
        assert_eq!(err.param, "messages[0].content[0].type");
    }

    #[test]
    fn pdf_file_part_becomes_document() {
        let out = translate(json!({"messages": [{"role": "user", "content": [
            {"type": "file", "file": {"filename": "a.pdf", "file_data": "data:application/pdf;base64,JVBERi0="}}]}]}));
        assert_eq!(
            out["messages"][0]["content"][0],
            json!({"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0="}})
        );
    }

    #[test]
    fn tool_calls_and_tool_results_round_trip() {
        let out = translate(json!({"messages": [
            {"role": "user", "content": "weather in Paris and Rome?"},
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "toolu_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}},
                {"id": "toolu_2", "type": "function", "function": {"name": "get_weather", "arguments": ""}},
            ]},
            {"role": "tool", "tool_call_id": "toolu_1", "content": "18C"},
            {"role": "tool", "tool_call_id": "toolu_2", "content": [{"type": "text", "text": "21C"}]},
            {"role": "user", "content": "thanks"},
        ]}));
        assert_eq!(
            out["messages"],
            json!([
                {"role": "user", "content": "weather in Paris and Rome?"},
                {"role": "assistant", "content": [
                    {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}},
                    {"type": "tool_use", "id": "toolu_2", "name": "get_weather", "input": {}},
                ]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_1", "content": "18C"},
                    {"type": "tool_result", "tool_use_id": "toolu_2", "content": [{"type": "text", "text": "21C"}]},
                    {"type": "text", "text": "thanks"},
                ]},
            ])
        );
    }

    #[test]
    fn invalid_tool_arguments_name_the_param() {
        let err = translate_err(json!({"messages": [
            {"role": "user", "content": "x"},
            {"role": "assistant", "tool_calls": [
                {"id": "a", "type": "function", "function": {"name": "f", "arguments": "{}"}},
                {"id": "b", "type": "function", "function": {"name": "f", "arguments": "{\"city\":"}},
            ]},
        ]}));
        assert_eq!(err.param, "messages[1].tool_calls[1].function.arguments");
        assert!(err.message.contains("not valid JSON"), "{}", err.message);

        let err = translate_err(json!({"messages": [
            {"role": "assistant", "tool_calls": [
                {"id": "a", "type": "function", "function": {"name": "f", "arguments": "[1]"}}]}]}));
        assert_eq!(err.param, "messages[0].tool_calls[0].function.arguments");
    }

    #[test]
    fn tool_message_without_id_is_refused() {
        let err = translate_err(json!({"messages": [{"role": "tool", "content": "x"}]}));
        assert_eq!(err.param, "messages[0].tool_call_id");
    }

    #[test]
    fn signed_reasoning_is_sent_back_as_a_leading_thinking_block() {
        let out = translate(json!({"messages": [
            {"role": "user", "content": "q"},
            {"role": "assistant", "content": "calling", "reasoning_content": "let me think", "reasoning_signature": "sig==",
             "tool_calls": [{"id": "t1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "t1", "content": "ok"},
        ]}));
        assert_eq!(
            out["messages"][1]["content"],
            json!([
                {"type": "thinking", "thinking": "let me think", "signature": "sig=="},
                {"type": "text", "text": "calling"},
                {"type": "tool_use", "id": "t1", "name": "f", "input": {}},
            ])
        );
    }

    #[test]
    fn unsigned_reasoning_is_dropped_and_thinking_blocks_win() {
        let out = translate(json!({"messages": [
            {"role": "user", "content": "q"},
            {"role": "assistant", "content": "a", "reasoning_content": "unsigned"},
        ]}));
        assert_eq!(out["messages"][1]["content"], json!("a"));

        let out = translate(json!({"messages": [
            {"role": "user", "content": "q"},
            {"role": "assistant", "content": "a", "reasoning_content": "x", "reasoning_signature": "ignored",
             "thinking_blocks": [{"type": "redacted_thinking", "data": "opaque", "index": 0},
                                 {"type": "thinking", "thinking": "t", "signature": "s"}]},
        ]}));
        assert_eq!(
            out["messages"][1]["content"],
            json!([
                {"type": "redacted_thinking", "data": "opaque"},
                {"type": "thinking", "thinking": "t", "signature": "s"},
                {"type": "text", "text": "a"},
            ])
        );
    }

    #[test]
    fn tools_and_tool_choice() {
        let base = json!({"messages": [{"role": "user", "content": "x"}], "tools": [
            {"type": "function", "function": {"name": "get_weather", "description": "Weather",
             "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}},
            {"type": "function", "function": {"name": "now"}},
        ]});
        let out = translate(base.clone());
        assert_eq!(
            out["tools"],
            json!([
                {"name": "get_weather", "description": "Weather", "input_schema":
                    {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}},
                {"name": "now", "input_schema": {"type": "object", "properties": {}}},
            ])
        );
        assert!(out.get("tool_choice").is_none());
        let choice = |c: Value| {
            let mut req = base.clone();
            req["tool_choice"] = c;
            translate(req)["tool_choice"].clone()
        };
        assert_eq!(choice(json!("none")), json!({"type": "none"}));
        assert_eq!(choice(json!("auto")), json!({"type": "auto"}));
        assert_eq!(choice(json!("required")), json!({"type": "any"}));
        assert_eq!(
            choice(json!({"type": "function", "function": {"name": "now"}})),
            json!({"type": "tool", "name": "now"})
        );
        let mut req = base.clone();
        req["parallel_tool_calls"] = json!(false);
        assert_eq!(
            translate(req)["tool_choice"],
            json!({"type": "auto", "disable_parallel_tool_use": true})
        );
        let mut req = base;
        req["tool_choice"] = json!("sometimes");
        assert_eq!(translate_err(req).param, "tool_choice");
    }

    #[test]
    fn non_function_tools_are_refused() {
        let err = translate_err(json!({"messages": [{"role": "user", "content": "x"}],
            "tools": [{"type": "custom", "custom": {"name": "x"}}]}));
        assert_eq!(err.param, "tools[0].type");
    }

    #[test]
    fn sampling_stop_stream_and_user() {
        let out = translate(json!({"messages": [{"role": "user", "content": "x"}],
            "temperature": 1.7, "top_p": 0.5, "stop": "END", "stream": true, "user": "u-42",
            "max_completion_tokens": 300, "max_tokens": 100, "seed": 7, "frequency_penalty": 0.1}));
        assert_eq!(out["max_tokens"], 300);
        assert_eq!(out["temperature"], json!(1.0));
        assert_eq!(out["top_p"], json!(0.5));
        assert_eq!(out["stop_sequences"], json!(["END"]));
        assert_eq!(out["stream"], true);
        assert_eq!(out["metadata"], json!({"user_id": "u-42"}));
        assert!(out.get("seed").is_none());
        assert!(out.get("frequency_penalty").is_none());

        let out = translate(json!({"messages": [{"role": "user", "content": "x"}],
            "max_tokens": 100, "stop": ["a", "b"]}));
        assert_eq!(out["max_tokens"], 100);
        assert_eq!(out["stop_sequences"], json!(["a", "b"]));
    }

    #[test]
    fn reasoning_effort_enables_thinking_and_raises_max_tokens() {
        let out = translate(json!({"messages": [{"role": "user", "content": "x"}],
            "reasoning_effort": "high", "max_tokens": 1000, "temperature": 0.2}));
        assert_eq!(
            out["thinking"],
            json!({"type": "enabled", "budget_tokens": 16384})
        );
        assert_eq!(out["max_tokens"], 17384);
        assert!(
            out.get("temperature").is_none(),
            "thinking forbids temperature"
        );

        let out = translate(json!({"messages": [{"role": "user", "content": "x"}],
            "reasoning_effort": "low", "max_completion_tokens": 50000}));
        assert_eq!(out["thinking"]["budget_tokens"], 2048);
        assert_eq!(out["max_tokens"], 50000);

        for (effort, budget) in THINKING_BUDGETS {
            let out = translate(
                json!({"messages": [{"role": "user", "content": "x"}], "reasoning_effort": effort}),
            );
            assert_eq!(out["thinking"]["budget_tokens"], *budget);
            assert!(out["max_tokens"].as_u64().unwrap() > u64::from(*budget));
        }

        let out = translate(
            json!({"messages": [{"role": "user", "content": "x"}], "reasoning_effort": "none"}),
        );
        assert!(out.get("thinking").is_none());

        let err = translate_err(
            json!({"messages": [{"role": "user", "content": "x"}], "reasoning_effort": "extreme"}),
        );
        assert_eq!(err.param, "reasoning_effort");
    }

    #[test]
    fn thinking_forbids_forced_tool_use() {
        let err = translate_err(json!({"messages": [{"role": "user", "content": "x"}],
            "reasoning_effort": "medium", "tool_choice": "required",
            "tools": [{"type": "function", "function": {"name": "f"}}]}));
        assert_eq!(err.param, "tool_choice");
    }

    #[test]
    fn anthropic_thinking_object_passes_through() {
        let out = translate(json!({"messages": [{"role": "user", "content": "x"}],
            "thinking": {"type": "enabled", "budget_tokens": 5000}, "max_tokens": 5000}));
        assert_eq!(
            out["thinking"],
            json!({"type": "enabled", "budget_tokens": 5000})
        );
        assert_eq!(out["max_tokens"], 10000);
    }

    #[test]
    fn unsupported_openai_features_are_refused_with_their_param() {
        let msgs = json!([{"role": "user", "content": "x"}]);
        assert_eq!(translate_err(json!({"messages": msgs, "n": 2})).param, "n");
        assert_eq!(
            translate_err(json!({"messages": msgs, "logprobs": true})).param,
            "logprobs"
        );
        assert_eq!(
            translate_err(json!({"messages": msgs, "response_format": {"type": "json_schema", "json_schema": {"name": "x"}}})).param,
            "response_format"
        );
        assert_eq!(
            translate_err(json!({"messages": msgs, "max_tokens": 0})).param,
            "max_tokens"
        );
        assert_eq!(translate_err(json!({"messages": []})).param, "messages");
        assert_eq!(translate_err(json!({"messages": "hi"})).param, "messages");
        assert_eq!(
            translate_err(json!({"messages": [{"role": "function", "content": "x"}]})).param,
            "messages[0].role"
        );
        assert_eq!(translate_err(json!([1, 2])).param, "body");
    }

    #[test]
    fn null_fields_count_as_absent() {
        let out = translate(json!({"messages": [{"role": "user", "content": "x"}],
            "temperature": null, "stop": null, "tools": null, "tool_choice": null, "max_tokens": null,
            "reasoning_effort": null, "n": null, "user": null}));
        assert_eq!(
            out,
            json!({"model": "claude-up", "max_tokens": 4096, "messages": [{"role": "user", "content": "x"}]})
        );
    }

    #[test]
    fn upstream_max_tokens_is_what_the_translation_sends() {
        let m = |v: Value| v.as_object().unwrap().clone();
        for req in [
            json!({"messages": [{"role": "user", "content": "x"}]}),
            json!({"messages": [{"role": "user", "content": "x"}], "max_tokens": 10,
                   "thinking": {"type": "enabled", "budget_tokens": 5000}}),
            json!({"messages": [{"role": "user", "content": "x"}], "max_tokens": 9000,
                   "thinking": {"type": "enabled", "budget_tokens": 5000}}),
            json!({"messages": [{"role": "user", "content": "x"}], "thinking": {"type": "enabled"}}),
            json!({"messages": [{"role": "user", "content": "x"}], "max_completion_tokens": 7,
                   "thinking": {"type": "enabled", "budget_tokens": 10}}),
            json!({"messages": [{"role": "user", "content": "x"}], "thinking": {"type": "adaptive"}}),
            json!({"messages": [{"role": "user", "content": "x"}], "reasoning_effort": "max",
                   "max_tokens": 100}),
        ] {
            let sent = translate(req.clone())["max_tokens"].as_u64().unwrap();
            assert_eq!(
                upstream_max_tokens(&m(req.clone()), 4096),
                Ok(sent),
                "{req}"
            );
        }
        // 10 answer tokens with a 5000-token budget: the upstream may produce 5010.
        let req = json!({"messages": [], "max_tokens": 10,
                         "thinking": {"type": "enabled", "budget_tokens": 5000}});
        assert_eq!(upstream_max_tokens(&m(req), 4096), Ok(5010));
        let bad = json!({"messages": [], "thinking": {"type": "sometimes"}});
        assert_eq!(
            upstream_max_tokens(&m(bad), 4096).unwrap_err().param,
            "thinking.type"
        );
    }
}
