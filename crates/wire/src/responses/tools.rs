//! Responses tools on a chat route: what each tool type becomes going up, and how a chat tool call
//! is named again coming back.
//!
//! - `function` tools become nested chat tools, as they are.
//! - `namespace` tools (a named group of function tools, as Codex sends `multi_agent_v1`) are
//!   flattened: each inner function becomes a chat tool named [`flat_name`]`(namespace, name)`,
//!   `<namespace>__<name>`, or a short stable hash form when that would pass chat's 64-character
//!   limit. A chat tool call with a flattened name comes back as a `function_call` item whose
//!   `name` is the inner name and whose `namespace` is the namespace, the way Codex dispatches it.
//! - `custom` tools (freeform input, optionally with a grammar) become function tools with one
//!   string parameter `input` (the grammar, if any, is given to the model in the description);
//!   their calls come back as `custom_tool_call` items with that `input`.
//! - Hosted tools the chat route cannot carry (`web_search*`, `file_search`, `code_interpreter`,
//!   `image_generation`, `computer_use*`, `mcp`, `local_shell`, `shell`, `apply_patch`, and any
//!   type this module does not know) are dropped: the model simply does not have them, and the
//!   plan reports each one (`tools[8]:web_search`). Only a `tool_choice` that forces such a tool is
//!   refused, since it cannot be honoured.

use std::collections::HashMap;

use serde_json::{json, Map, Value};

use super::RequestError;

/// The longest function name chat upstreams accept.
pub(super) const MAX_NAME: usize = 64;

/// The chat function name of `name` inside `namespace`: `<namespace>__<name>` when it fits in
/// [`MAX_NAME`] characters, else `<namespace prefix>_<hash>__<name suffix>` cut to fit. A pure
/// function of its inputs, so a later turn flattens a call the same way without any state.
pub fn flat_name(namespace: &str, name: &str) -> String {
    let plain = format!("{namespace}__{name}");
    if plain.len() <= MAX_NAME {
        return plain;
    }
    let hash = format!("{:016x}", fnv1a(namespace, name));
    // `ns_<16 hex>__<name>`: keep up to 12 bytes of the namespace and as much of the name as fits
    // (both cut on a character boundary; names are ASCII in practice).
    let ns = cut(namespace, 12);
    let room = MAX_NAME - ns.len() - 1 - hash.len() - 2;
    let tail = cut(name, room);
    format!("{ns}_{hash}__{tail}")
}

fn cut(s: &str, max: usize) -> &str {
    let mut end = max.min(s.len());
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// FNV-1a over `namespace`, a zero byte and `name`: stable across builds and processes.
fn fnv1a(namespace: &str, name: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in namespace.bytes().chain([0u8]).chain(name.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// Where a chat tool name came from, when it is not a plain function tool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolOrigin {
    /// An inner function of a `namespace` tool.
    Namespaced { namespace: String, name: String },
    /// A `custom` tool: its calls carry `{"input": "…"}` as arguments.
    Custom,
}

/// The chat tool names of one request that are not plain function names, and what they were.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ToolNames {
    map: HashMap<String, ToolOrigin>,
}

impl ToolNames {
    /// What the chat tool `chat_name` was, if it was not a plain function tool.
    pub fn origin(&self, chat_name: &str) -> Option<&ToolOrigin> {
        self.map.get(chat_name)
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    fn insert(&mut self, chat_name: String, origin: ToolOrigin) {
        self.map.insert(chat_name, origin);
    }
}

/// The chat tools for a request's `tools`, the names to restore, and what was dropped.
pub(super) struct ConvertedTools {
    pub tools: Vec<Value>,
    pub names: ToolNames,
}

/// Converts the Responses `tools` array; every dropped tool is reported in `dropped`.
pub(super) fn convert_tools(
    tools: &[Value],
    dropped: &mut Vec<String>,
) -> Result<ConvertedTools, RequestError> {
    let mut out = ConvertedTools {
        tools: Vec::with_capacity(tools.len()),
        names: ToolNames::default(),
    };
    for (i, tool) in tools.iter().enumerate() {
        let at = format!("tools[{i}]");
        let kind = tool.get("type").and_then(Value::as_str).unwrap_or("");
        match kind {
            "function" => out.tools.push(function_tool(&at, tool, None)?),
            "namespace" => {
                let namespace = tool
                    .get("name")
                    .and_then(Value::as_str)
                    .filter(|n| !n.is_empty())
                    .ok_or_else(|| {
                        RequestError::new(
                            format!("{at}.name"),
                            "Missing required parameter: 'name'.",
                        )
                    })?;
                let inner = tool.get("tools").and_then(Value::as_array).ok_or_else(|| {
                    RequestError::new(
                        format!("{at}.tools"),
                        "Missing required parameter: 'tools'.",
                    )
                })?;
                for (j, t) in inner.iter().enumerate() {
                    let inner_at = format!("{at}.tools[{j}]");
                    match t.get("type").and_then(Value::as_str) {
                        Some("function") | None => {
                            let chat = function_tool(&inner_at, t, Some(namespace))?;
                            let name = t.get("name").and_then(Value::as_str).unwrap_or_default();
                            out.names.insert(
                                chat["function"]["name"]
                                    .as_str()
                                    .unwrap_or_default()
                                    .to_owned(),
                                ToolOrigin::Namespaced {
                                    namespace: namespace.to_owned(),
                                    name: name.to_owned(),
                                },
                            );
                            out.tools.push(chat);
                        }
                        Some(other) => dropped.push(format!("{inner_at}:{other}")),
                    }
                }
            }
            "custom" => {
                let chat = custom_tool(&at, tool)?;
                let name = chat["function"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
                out.names.insert(name, ToolOrigin::Custom);
                out.tools.push(chat);
            }
            "" => {
                return Err(RequestError::new(
                    format!("{at}.type"),
                    "Missing required parameter: 'type'.",
                ))
            }
            other => dropped.push(format!("{at}:{other}")),
        }
    }
    Ok(out)
}

/// A flat Responses function tool (or the chat shape, which some clients send) → the nested chat
/// tool; inside a namespace its name is flattened.
fn function_tool(at: &str, tool: &Value, namespace: Option<&str>) -> Result<Value, RequestError> {
    let def = tool
        .get("function")
        .filter(|f| f.is_object())
        .unwrap_or(tool);
    let name = def
        .get("name")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .ok_or_else(|| {
            RequestError::new(format!("{at}.name"), "Missing required parameter: 'name'.")
        })?;
    let mut function = Map::new();
    let chat_name = match namespace {
        Some(ns) => flat_name(ns, name),
        None => name.to_owned(),
    };
    function.insert("name".into(), Value::String(chat_name));
    for key in ["description", "parameters", "strict"] {
        if let Some(v) = def.get(key).filter(|v| !v.is_null()) {
            function.insert(key.into(), v.clone());
        }
    }
    Ok(json!({"type": "function", "function": Value::Object(function)}))
}

/// A `custom` tool → a function tool with one string parameter, `input`.
fn custom_tool(at: &str, tool: &Value) -> Result<Value, RequestError> {
    let name = tool
        .get("name")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .ok_or_else(|| {
            RequestError::new(format!("{at}.name"), "Missing required parameter: 'name'.")
        })?;
    let mut description = tool
        .get("description")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let format = tool.get("format");
    if format.and_then(|f| f.get("type")).and_then(Value::as_str) == Some("grammar") {
        let syntax = format
            .and_then(|f| f.get("syntax"))
            .and_then(Value::as_str)
            .unwrap_or("lark");
        let definition = format
            .and_then(|f| f.get("definition"))
            .and_then(Value::as_str)
            .unwrap_or_default();
        if !description.is_empty() {
            description.push_str("\n\n");
        }
        description.push_str(&format!(
            "The `input` string must follow this {syntax} grammar:\n{definition}"
        ));
    }
    let mut function = Map::new();
    function.insert("name".into(), Value::String(name.to_owned()));
    if !description.is_empty() {
        function.insert("description".into(), Value::String(description));
    }
    function.insert(
        "parameters".into(),
        json!({
            "type": "object",
            "properties": {"input": {"type": "string", "description": "The tool's freeform input."}},
            "required": ["input"],
            "additionalProperties": false,
        }),
    );
    Ok(json!({"type": "function", "function": Value::Object(function)}))
}

/// The chat name a Responses `tool_choice`/`allowed_tools` entry names: a function (inside its
/// `namespace`, when given) or a custom tool; `None` for a hosted tool.
fn chosen_name(o: &Map<String, Value>, at: &str) -> Result<Option<String>, RequestError> {
    match o.get("type").and_then(Value::as_str) {
        Some("function") | Some("custom") => {
            let name = o
                .get("name")
                .or_else(|| o.get("function").and_then(|f| f.get("name")))
                .and_then(Value::as_str)
                .ok_or_else(|| {
                    RequestError::new(format!("{at}.name"), "Missing required parameter: 'name'.")
                })?;
            Ok(Some(match o.get("namespace").and_then(Value::as_str) {
                Some(ns) if !ns.is_empty() => flat_name(ns, name),
                _ => name.to_owned(),
            }))
        }
        _ => Ok(None),
    }
}

/// `tool_choice` → chat `tool_choice`. Forcing a tool the chat route cannot carry is refused;
/// hosted tools in an `allowed_tools` list are left out (and reported).
pub(super) fn convert_tool_choice(
    tc: &Value,
    dropped: &mut Vec<String>,
) -> Result<Value, RequestError> {
    match tc {
        Value::String(s) if matches!(s.as_str(), "none" | "auto" | "required") => Ok(tc.clone()),
        Value::Object(o) => match o.get("type").and_then(Value::as_str) {
            Some("allowed_tools") => {
                let mode = o.get("mode").cloned().unwrap_or(json!("auto"));
                let listed = o.get("tools").and_then(Value::as_array).ok_or_else(|| {
                    RequestError::new("tool_choice.tools", "Missing required parameter: 'tools'.")
                })?;
                let mut tools = Vec::with_capacity(listed.len());
                for (i, t) in listed.iter().enumerate() {
                    let at = format!("tool_choice.tools[{i}]");
                    let obj = t.as_object().ok_or_else(|| {
                        RequestError::new(at.clone(), "Each allowed tool must be an object.")
                    })?;
                    match chosen_name(obj, &at)? {
                        Some(n) => tools.push(json!({"type": "function", "function": {"name": n}})),
                        None => dropped.push(format!(
                            "{at}:{}",
                            obj.get("type").and_then(Value::as_str).unwrap_or("unknown")
                        )),
                    }
                }
                Ok(json!({"type": "allowed_tools", "allowed_tools": {"mode": mode, "tools": tools}}))
            }
            _ => match chosen_name(o, "tool_choice")? {
                Some(n) => Ok(json!({"type": "function", "function": {"name": n}})),
                None => Err(RequestError::new(
                    "tool_choice",
                    format!(
                        "tool_choice '{}' forces a hosted tool this gateway's chat route cannot carry; only 'none', 'auto', 'required', function, custom and allowed_tools tool choices are supported.",
                        o.get("type").and_then(Value::as_str).unwrap_or("unknown")
                    ),
                )),
            },
        },
        _ => Err(RequestError::new(
            "tool_choice",
            "'tool_choice' must be 'none', 'auto', 'required' or an object.",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flat_names_fit_and_are_stable() {
        assert_eq!(
            flat_name("multi_agent_v1", "close_agent"),
            "multi_agent_v1__close_agent"
        );
        let ns = "a_really_long_namespace_name_for_a_group_of_tools";
        let long = flat_name(ns, "with_an_equally_long_inner_function_name");
        assert!(long.len() <= MAX_NAME, "{long}");
        assert_eq!(
            long,
            flat_name(ns, "with_an_equally_long_inner_function_name")
        );
        assert_ne!(
            long,
            flat_name(ns, "with_an_equally_long_inner_function_name2")
        );
        assert!(long
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-'));
    }
}
