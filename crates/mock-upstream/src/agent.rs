//! The coding-agent scenario: a request that offers tools and whose last user turn is plain text
//! naming a file (`notes.txt`, `/tmp/ws/notes.txt`) is answered with ONE tool call reading that
//! file; a request whose last turn carries tool results is answered with text quoting them
//! (`The file says: …`). Read in every dialect the mock speaks: OpenAI chat (`role: tool`),
//! Anthropic Messages (`tool_result` blocks), Gemini (`functionResponse` parts) and OpenAI
//! Responses (`function_call_output` items). The tool is picked from what the request offers: a
//! read tool (`Read`, `read_file`, `view`, …: `file_path` or `path`), else a shell tool
//! (`exec_command` with `cmd`, `shell` / `run_shell_command` / `Bash` with `command`: `cat FILE`),
//! else the first tool (its first property gets the file name).

use serde_json::{json, Value};

use crate::tool_call::ToolCall;

/// What the agent scenario answers, when it applies.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Scenario {
    /// One tool call reading the file.
    Call(ToolCall),
    /// Text quoting the tool results.
    Quote(String),
}

/// The last turn of a conversation, as far as the scenario cares.
#[derive(Debug, PartialEq, Eq)]
enum LastTurn {
    /// A user turn of text blocks, in order.
    Text(Vec<String>),
    /// A turn carrying tool results (their text, in order).
    ToolResults(Vec<String>),
    Other,
}

/// The scenario for this request body (any dialect), or `None` when it does not apply (no tools
/// offered, or a last user turn that names no file).
pub(crate) fn scenario(request: &Value) -> Option<Scenario> {
    let tools = offered_tools(request);
    if tools.is_empty() {
        return None;
    }
    match last_turn(request) {
        // Only the loop a file prompt started: other tool results get the usual answer.
        LastTurn::ToolResults(results)
            if last_prompt(request).iter().any(|b| file_named(b).is_some()) =>
        {
            let text = results
                .iter()
                .map(|r| r.trim())
                .collect::<Vec<_>>()
                .join("\n");
            Some(Scenario::Quote(format!("The file says: {text}")))
        }
        LastTurn::Text(blocks) => {
            let file = blocks.iter().rev().find_map(|b| file_named(b))?;
            Some(Scenario::Call(read_call(&tools, &file)))
        }
        LastTurn::ToolResults(_) | LastTurn::Other => None,
    }
}

/// The text blocks of the last user turn that is not tool results (the prompt that started the
/// current exchange), in any dialect.
fn last_prompt(request: &Value) -> Vec<String> {
    let is_results = |content: &Value| {
        content.as_array().is_some_and(|blocks| {
            blocks.iter().any(|b| {
                b.get("type").and_then(Value::as_str) == Some("tool_result")
                    || b.get("functionResponse").is_some()
            })
        })
    };
    if let Some(messages) = request.get("messages").and_then(Value::as_array) {
        return messages
            .iter()
            .rev()
            .filter(|m| m.get("role").and_then(Value::as_str) == Some("user"))
            .map(|m| m.get("content").unwrap_or(&Value::Null))
            .find(|c| !is_results(c))
            .map(text_blocks)
            .unwrap_or_default();
    }
    if let Some(contents) = request.get("contents").and_then(Value::as_array) {
        return contents
            .iter()
            .rev()
            .filter(|c| c.get("role").and_then(Value::as_str) != Some("model"))
            .map(|c| c.get("parts").unwrap_or(&Value::Null))
            .find(|p| !is_results(p))
            .map(text_blocks)
            .unwrap_or_default();
    }
    match request.get("input") {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(items)) => items
            .iter()
            .rev()
            .find(|i| {
                i.get("type").and_then(Value::as_str).unwrap_or("message") == "message"
                    && i.get("role").and_then(Value::as_str) == Some("user")
            })
            .map(|i| text_blocks(i.get("content").unwrap_or(&Value::Null)))
            .unwrap_or_default(),
        _ => Vec::new(),
    }
}

/// A tool offered by the request: its name and its argument schema's properties (name, type).
#[derive(Debug)]
struct Tool {
    name: String,
    properties: Vec<(String, String)>,
}

/// Function tools in every dialect: chat `tools[].function`, Anthropic `tools[]` (`input_schema`),
/// Responses `tools[]` of type `function` (hosted and namespace tools are skipped), Gemini
/// `tools[].functionDeclarations[]` (`parameters` or `parametersJsonSchema`).
fn offered_tools(request: &Value) -> Vec<Tool> {
    let Some(list) = request.get("tools").and_then(Value::as_array) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut add = |def: &Value| {
        let Some(name) = def.get("name").and_then(Value::as_str) else {
            return;
        };
        let schema = ["parameters", "input_schema", "parametersJsonSchema"]
            .iter()
            .find_map(|k| def.get(*k));
        let properties = schema
            .and_then(|s| s.get("properties"))
            .and_then(Value::as_object)
            .map(|p| {
                p.iter()
                    .map(|(k, v)| {
                        let kind = v.get("type").and_then(Value::as_str).unwrap_or("string");
                        (k.clone(), kind.to_ascii_lowercase())
                    })
                    .collect()
            })
            .unwrap_or_default();
        out.push(Tool {
            name: name.to_string(),
            properties,
        });
    };
    for tool in list {
        if let Some(decls) = tool.get("functionDeclarations").and_then(Value::as_array) {
            decls.iter().for_each(&mut add);
        } else if let Some(function) = tool.get("function") {
            add(function);
        } else {
            match tool.get("type").and_then(Value::as_str) {
                None | Some("function" | "custom") => add(tool),
                // Anthropic's typed client tools (`bash_20250124`, …) carry a name too.
                Some(t) if tool.get("input_schema").is_some() || t.contains('_') => add(tool),
                Some(_) => {}
            }
        }
    }
    out
}

/// The text of a tool result's content: a string, a list of text blocks / parts, or any other
/// JSON (serialised).
fn result_text(content: &Value) -> String {
    match content {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .map(|p| match p {
                Value::String(s) => s.clone(),
                other => other
                    .get("text")
                    .and_then(Value::as_str)
                    .map(str::to_string)
                    .unwrap_or_default(),
            })
            .collect::<Vec<_>>()
            .join("\n"),
        Value::Object(o) => {
            // Gemini's functionResponse.response: {output}, {content}, {result} or a whole object.
            for key in ["output", "content", "result", "text"] {
                if let Some(v) = o.get(key) {
                    return result_text(v);
                }
            }
            content.to_string()
        }
        other => other.to_string(),
    }
}

/// The text blocks of a message content (a string, or a list of blocks with `text`).
fn text_blocks(content: &Value) -> Vec<String> {
    match content {
        Value::String(s) => vec![s.clone()],
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| match p {
                Value::String(s) => Some(s.clone()),
                other => other
                    .get("text")
                    .and_then(Value::as_str)
                    .map(str::to_string),
            })
            .collect(),
        _ => Vec::new(),
    }
}

fn last_turn(request: &Value) -> LastTurn {
    if let Some(messages) = request.get("messages").and_then(Value::as_array) {
        return last_message_turn(messages);
    }
    if let Some(contents) = request.get("contents").and_then(Value::as_array) {
        return last_gemini_turn(contents);
    }
    match request.get("input") {
        Some(Value::String(s)) => LastTurn::Text(vec![s.clone()]),
        Some(Value::Array(items)) => last_responses_turn(items),
        _ => LastTurn::Other,
    }
}

/// Chat or Anthropic `messages`: system/developer messages after the last turn are skipped;
/// trailing `role: tool` messages, or a user message with `tool_result` blocks, are tool results.
fn last_message_turn(messages: &[Value]) -> LastTurn {
    let mut results = Vec::new();
    for m in messages.iter().rev() {
        let role = m.get("role").and_then(Value::as_str).unwrap_or("");
        let content = m.get("content").unwrap_or(&Value::Null);
        match role {
            "system" | "developer" if results.is_empty() => continue,
            "tool" => {
                results.push(result_text(content));
                continue;
            }
            _ if !results.is_empty() => break,
            "user" => {
                let blocks = content.as_array().map(Vec::as_slice).unwrap_or(&[]);
                let tool_results: Vec<String> = blocks
                    .iter()
                    .filter(|b| b.get("type").and_then(Value::as_str) == Some("tool_result"))
                    .map(|b| result_text(b.get("content").unwrap_or(&Value::Null)))
                    .collect();
                if !tool_results.is_empty() {
                    return LastTurn::ToolResults(tool_results);
                }
                return LastTurn::Text(text_blocks(content));
            }
            _ => return LastTurn::Other,
        }
    }
    if results.is_empty() {
        LastTurn::Other
    } else {
        results.reverse();
        LastTurn::ToolResults(results)
    }
}

/// Gemini `contents`: the last content's `functionResponse` parts, else its text parts.
fn last_gemini_turn(contents: &[Value]) -> LastTurn {
    let Some(last) = contents.last() else {
        return LastTurn::Other;
    };
    if last.get("role").and_then(Value::as_str) == Some("model") {
        return LastTurn::Other;
    }
    let parts = last
        .get("parts")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    let results: Vec<String> = parts
        .iter()
        .filter_map(|p| p.get("functionResponse"))
        .map(|r| result_text(r.get("response").unwrap_or(&Value::Null)))
        .collect();
    if !results.is_empty() {
        return LastTurn::ToolResults(results);
    }
    LastTurn::Text(
        parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str).map(str::to_string))
            .collect(),
    )
}

/// Responses `input` items: trailing `function_call_output` items are tool results; else the last
/// user message (developer/system messages after it skipped).
fn last_responses_turn(items: &[Value]) -> LastTurn {
    let mut results = Vec::new();
    for item in items.iter().rev() {
        let kind = item
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("message");
        let role = item.get("role").and_then(Value::as_str).unwrap_or("");
        match kind {
            "function_call_output" | "custom_tool_call_output" => {
                results.push(result_text(item.get("output").unwrap_or(&Value::Null)));
            }
            _ if !results.is_empty() => break,
            "message" if matches!(role, "system" | "developer") => continue,
            "message" if role == "user" => {
                return LastTurn::Text(text_blocks(item.get("content").unwrap_or(&Value::Null)))
            }
            _ => return LastTurn::Other,
        }
    }
    if results.is_empty() {
        LastTurn::Other
    } else {
        results.reverse();
        LastTurn::ToolResults(results)
    }
}

/// The last word of `text` that looks like a file name (`notes.txt`, `/abs/dir/notes.txt`,
/// `src/main.rs`): a name with a dot and a short extension holding a letter; URLs, e-mail
/// addresses and version numbers are not file names.
pub(crate) fn file_named(text: &str) -> Option<String> {
    let mut found = None;
    for raw in text.split_whitespace() {
        let word = raw.trim_matches(|c: char| {
            matches!(
                c,
                '`' | '\''
                    | '"'
                    | '('
                    | ')'
                    | '['
                    | ']'
                    | '<'
                    | '>'
                    | ','
                    | ';'
                    | ':'
                    | '!'
                    | '?'
                    | '*'
            )
        });
        let word = word.trim_end_matches('.');
        if word.contains("://") || word.contains('@') || word.starts_with("www.") {
            continue;
        }
        if !word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/' | '~'))
        {
            continue;
        }
        let name = word.rsplit('/').next().unwrap_or(word);
        let Some((stem, ext)) = name.rsplit_once('.') else {
            continue;
        };
        if stem.is_empty()
            || ext.is_empty()
            || ext.len() > 5
            || !ext.chars().any(|c| c.is_ascii_alphabetic())
            || !ext.chars().all(|c| c.is_ascii_alphanumeric())
        {
            continue;
        }
        found = Some(word.to_string());
    }
    found
}

const READ_TOOLS: [&str; 6] = [
    "read",
    "read_file",
    "view",
    "readfile",
    "read_text_file",
    "view_file",
];
const SHELL_TOOLS: [&str; 6] = [
    "exec_command",
    "shell",
    "run_shell_command",
    "bash",
    "local_shell",
    "shell_command",
];

/// The one call reading `file` with the best tool offered.
fn read_call(tools: &[Tool], file: &str) -> ToolCall {
    let has = |t: &Tool, k: &str| t.properties.iter().any(|(name, _)| name == k);
    let named = |names: &[&str]| {
        tools
            .iter()
            .find(|t| names.contains(&t.name.to_ascii_lowercase().as_str()))
    };
    if let Some(tool) = named(&READ_TOOLS) {
        let key = ["file_path", "path", "absolute_path", "filename", "file"]
            .into_iter()
            .find(|k| has(tool, k))
            .map(str::to_string)
            .or_else(|| tool.properties.first().map(|(k, _)| k.clone()))
            .unwrap_or_else(|| "file_path".to_string());
        return ToolCall::with_arguments(&tool.name, &json!({ key: file }));
    }
    if let Some(tool) = named(&SHELL_TOOLS) {
        let (key, kind) = ["cmd", "command"]
            .into_iter()
            .find_map(|k| tool.properties.iter().find(|(name, _)| name == k))
            .cloned()
            .or_else(|| tool.properties.first().cloned())
            .unwrap_or_else(|| ("command".to_string(), "string".to_string()));
        let command = format!("cat {}", shell_quote(file));
        let value = if kind == "array" {
            json!(["bash", "-lc", command])
        } else {
            json!(command)
        };
        return ToolCall::with_arguments(&tool.name, &json!({ key: value }));
    }
    let tool = &tools[0];
    let key = tool
        .properties
        .first()
        .map(|(k, _)| k.clone())
        .unwrap_or_else(|| "file_path".to_string());
    ToolCall::with_arguments(&tool.name, &json!({ key: file }))
}

/// `file` as one shell word (left bare when it is plainly safe).
fn shell_quote(file: &str) -> String {
    if file
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/' | '~'))
    {
        file.to_string()
    } else {
        format!("'{}'", file.replace('\'', "'\\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(s: Option<Scenario>) -> (String, Value) {
        match s {
            Some(Scenario::Call(c)) => (
                c.name.clone(),
                serde_json::from_str(&c.arguments()).unwrap(),
            ),
            other => panic!("not a call: {other:?}"),
        }
    }

    #[test]
    fn file_names_are_found_and_lookalikes_are_not() {
        assert_eq!(
            file_named("Read notes.txt and quote it").as_deref(),
            Some("notes.txt")
        );
        assert_eq!(
            file_named("Read /tmp/ws/notes.txt, then quote it.").as_deref(),
            Some("/tmp/ws/notes.txt")
        );
        assert_eq!(
            file_named("a planted `json.py` runs"),
            Some("json.py".into())
        );
        assert_eq!(
            file_named("Sonnet 4.5 at https://claude.com/x <a@b.com>"),
            None
        );
        assert_eq!(file_named("hello there"), None);
    }

    #[test]
    fn each_agent_gets_its_own_read_tool() {
        // Claude Code: Anthropic tools, `Read` with an absolute `file_path`.
        let claude = json!({"tools": [
            {"name": "Bash", "input_schema": {"properties": {"command": {"type": "string"}}}},
            {"name": "Read", "input_schema": {"properties": {"file_path": {"type": "string"}, "limit": {"type": "integer"}}}}],
            "messages": [{"role": "user", "content": [
                {"type": "text", "text": "<system-reminder>a planted `json.py`</system-reminder>"},
                {"type": "text", "text": "Read /w/notes.txt and quote it"}]}]});
        assert_eq!(
            call(scenario(&claude)),
            ("Read".into(), json!({"file_path": "/w/notes.txt"}))
        );
        // Codex: Responses tools, `exec_command` with `cmd`; namespace and hosted tools skipped.
        let codex = json!({"tools": [
            {"type": "namespace", "name": "multi_agent_v1", "tools": []},
            {"type": "web_search"},
            {"type": "function", "name": "exec_command", "parameters": {"properties": {"cmd": {"type": "string"}}}}],
            "input": [{"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "x"}]},
                      {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Read notes.txt and quote it"}]}]});
        assert_eq!(
            call(scenario(&codex)),
            ("exec_command".into(), json!({"cmd": "cat notes.txt"}))
        );
        // Gemini CLI: functionDeclarations with parametersJsonSchema.
        let gemini = json!({"tools": [{"functionDeclarations": [
            {"name": "list_directory", "parametersJsonSchema": {"properties": {"dir_path": {"type": "string"}}}},
            {"name": "read_file", "parametersJsonSchema": {"properties": {"file_path": {"type": "string"}}}}]}],
            "contents": [{"role": "user", "parts": [{"text": "context"}, {"text": "Read notes.txt and quote it"}]}]});
        assert_eq!(
            call(scenario(&gemini)),
            ("read_file".into(), json!({"file_path": "notes.txt"}))
        );
        // Chat: a shell tool with an array command; else the first tool.
        let chat = json!({"tools": [{"type": "function", "function": {"name": "shell",
            "parameters": {"properties": {"command": {"type": "array"}}}}}],
            "messages": [{"role": "user", "content": "cat a.md please"}]});
        assert_eq!(
            call(scenario(&chat)).1,
            json!({"command": ["bash", "-lc", "cat a.md"]})
        );
        let other = json!({"tools": [{"type": "function", "function": {"name": "lookup",
            "parameters": {"properties": {"q": {"type": "string"}}}}}],
            "messages": [{"role": "user", "content": "open a.md"}]});
        assert_eq!(
            call(scenario(&other)),
            ("lookup".into(), json!({"q": "a.md"}))
        );
    }

    #[test]
    fn tool_results_are_quoted_in_every_dialect() {
        let quote = |v: Value| scenario(&v);
        let want = Some(Scenario::Quote("The file says: hello world".into()));
        let tools = json!([{"name": "Read", "input_schema": {}}]);
        assert_eq!(
            quote(json!({"tools": tools, "messages": [
            {"role": "user", "content": "Read a.txt"},
            {"role": "assistant", "content": null, "tool_calls": []},
            {"role": "tool", "tool_call_id": "c", "content": " hello world\n"}]})),
            want
        );
        assert_eq!(
            quote(json!({"tools": tools, "messages": [
            {"role": "user", "content": "Read a.txt"},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t",
              "content": [{"type": "text", "text": "hello world"}]}]}]})),
            want
        );
        assert_eq!(
            quote(json!({"tools": tools, "contents": [
            {"role": "user", "parts": [{"text": "Read a.txt"}]},
            {"role": "user", "parts": [{"functionResponse": {"name": "read_file",
              "response": {"output": "hello world"}}}]}]})),
            want
        );
        assert_eq!(
            quote(json!({"tools": tools, "input": [
            {"role": "user", "content": "Read a.txt"},
            {"type": "function_call", "call_id": "c", "name": "x", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "c", "output": "hello world"}]})),
            want
        );
        // Results of a loop no file prompt started (a weather call), no tools offered, or no file
        // named: the usual answer.
        assert_eq!(
            quote(json!({"tools": tools, "messages": [
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "content": "sunny"}]}]})),
            None
        );
        assert_eq!(
            quote(json!({"messages": [{"role": "user", "content": "Read a.txt"}]})),
            None
        );
        assert_eq!(
            quote(json!({"tools": tools, "messages": [{"role": "user", "content": "hi"}]})),
            None
        );
    }
}
