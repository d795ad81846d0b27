//! What the fake model "generates" for one request, independent of the wire dialect: the reasoning
//! tokens, the content tokens, the tool calls with their argument fragments, the finish reason and the
//! token counts that usage reports. The dialect writers (`openai_format`, `anthropic_format`) turn a
//! [`Completion`] into bytes.
//!
//! Every content and reasoning token is one common English word with a leading space, each exactly one
//! token in both cl100k_base and o200k_base (a test checks this), so token counts computed by a
//! tokenizer on the text agree with what usage reports. The agent scenario (`agent.rs`) replaces
//! them with one tool call reading a file, or with text quoting a tool result (one word per chunk,
//! counted as one token each).

pub(crate) use crate::tool_call::ToolCall;
use std::borrow::Cow;

use serde_json::Value;

use crate::agent::{self, Scenario};

use crate::options::{Behaviour, FinishOption};

/// Content tokens, used cyclically.
pub const CONTENT_WORDS: [&str; 12] = [
    " the", " quick", " brown", " fox", " jumps", " over", " lazy", " dog", " and", " runs",
    " away", " again",
];

/// Reasoning tokens, used cyclically.
pub const REASONING_WORDS: [&str; 8] = [
    " let", " me", " think", " about", " this", " first", " then", " answer",
];

/// Values given to the first string argument of successive tool calls.
const TOOL_ARGUMENT_VALUES: [&str; 4] = ["Paris", "Tokyo", "Lima", "Oslo"];

/// Why generation ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Finish {
    Stop,
    Length,
    ToolCalls,
    /// A safety stop (`finish = "content_filter"`).
    ContentFilter,
    /// Cut short, in DeepSeek's words (`finish = "insufficient_system_resource"`); `Length`
    /// elsewhere.
    InsufficientSystemResource,
    /// A reason the dialect never defined (`finish = "unknown"`).
    Unknown,
}

impl Finish {
    /// Cut short by a limit (the Responses dialect's `incomplete`).
    pub(crate) fn is_length(self) -> bool {
        matches!(self, Finish::Length | Finish::InsufficientSystemResource)
    }
}

/// The whole generated answer plus its usage numbers.
#[derive(Clone, Debug)]
pub(crate) struct Completion {
    pub reasoning: Vec<&'static str>,
    /// Content tokens: the fixed words, or the agent scenario's quote split into words.
    pub content: Vec<Cow<'static, str>>,
    pub tool_calls: Vec<ToolCall>,
    pub finish: Finish,
    /// Prompt tokens, cached ones included.
    pub prompt_tokens: u32,
    /// The part of `prompt_tokens` reported as served from the prompt cache.
    pub cached_tokens: u32,
}

impl Completion {
    /// Builds the answer the behaviour asks for, given the request body (for `tools`, `max_tokens` and
    /// the prompt estimate).
    pub(crate) fn plan(behaviour: &Behaviour, request: &Value) -> Completion {
        let reasoning = (0..behaviour.reasoning as usize)
            .map(|i| REASONING_WORDS[i % REASONING_WORDS.len()])
            .collect();
        let scenario = if behaviour.tool_calls == 0 {
            agent::scenario(request)
        } else {
            None
        };
        let tool_calls: Vec<ToolCall> = match &scenario {
            Some(Scenario::Call(call)) => vec![call.clone()],
            _ => (0..behaviour.tool_calls as usize)
                .map(|k| tool_call(request, k))
                .collect(),
        };
        let mut quote = match &scenario {
            Some(Scenario::Quote(text)) => Some(split_words(text)),
            _ => None,
        };
        let limit = max_tokens(request);
        let mut content_tokens = match (&quote, tool_calls.is_empty()) {
            (_, false) => 0,
            (Some(words), true) => words.len().min(u32::MAX as usize) as u32,
            (None, true) => behaviour.tokens,
        };
        let mut finish = if tool_calls.is_empty() {
            Finish::Stop
        } else {
            Finish::ToolCalls
        };
        if let Some(limit) = limit {
            if tool_calls.is_empty() && limit < content_tokens {
                content_tokens = limit;
                finish = Finish::Length;
            }
        }
        if behaviour.finish == FinishOption::Length {
            finish = Finish::Length;
        }
        match behaviour.finish {
            FinishOption::ContentFilter => finish = Finish::ContentFilter,
            FinishOption::InsufficientSystemResource => finish = Finish::InsufficientSystemResource,
            FinishOption::Unknown => finish = Finish::Unknown,
            FinishOption::Stop | FinishOption::Length => {}
        }
        let content = match quote.take() {
            Some(mut words) => {
                words.truncate(content_tokens as usize);
                words
            }
            None => (0..content_tokens as usize)
                .map(|i| Cow::Borrowed(CONTENT_WORDS[i % CONTENT_WORDS.len()]))
                .collect(),
        };
        let prompt_tokens = behaviour
            .prompt_tokens
            .unwrap_or_else(|| estimate_prompt_tokens(request));
        Completion {
            reasoning,
            content,
            tool_calls,
            finish,
            prompt_tokens,
            cached_tokens: behaviour.cached_tokens.min(prompt_tokens),
        }
    }

    pub(crate) fn text(&self) -> String {
        self.content.iter().map(|w| w.as_ref()).collect()
    }

    pub(crate) fn reasoning_text(&self) -> String {
        self.reasoning.concat()
    }

    pub(crate) fn reasoning_tokens(&self) -> u32 {
        self.reasoning.len() as u32
    }

    /// Reasoning + content + tool-argument fragments: what usage reports as completion tokens.
    pub(crate) fn completion_tokens(&self) -> u32 {
        let tool: usize = self.tool_calls.iter().map(|c| c.fragments.len()).sum();
        (self.reasoning.len() + self.content.len() + tool) as u32
    }
}

/// `text` as word tokens, each word with the whitespace before it (so they concatenate back).
fn split_words(text: &str) -> Vec<Cow<'static, str>> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut in_space = false;
    for ch in text.chars() {
        let space = ch.is_whitespace();
        if !space && in_space && !current.trim().is_empty() {
            out.push(Cow::Owned(std::mem::take(&mut current)));
        }
        in_space = space;
        current.push(ch);
    }
    if !current.is_empty() {
        out.push(Cow::Owned(current));
    }
    out
}

/// The request's output limit: `max_completion_tokens`, else `max_tokens`, else Gemini's
/// `generationConfig.maxOutputTokens`.
fn max_tokens(request: &Value) -> Option<u32> {
    ["max_completion_tokens", "max_tokens"]
        .iter()
        .find_map(|k| request.get(*k).and_then(Value::as_u64))
        .or_else(|| {
            request
                .pointer("/generationConfig/maxOutputTokens")
                .and_then(Value::as_u64)
        })
        .map(|v| v.min(u64::from(u32::MAX)) as u32)
}

/// The k-th tool call: the name and first property of the request's k-th tool (cyclically) if the
/// request declares tools (OpenAI `tools[].function` or Anthropic `tools[]`), else `get_weather` with a
/// `location` argument.
fn tool_call(request: &Value, k: usize) -> ToolCall {
    let tools = request
        .pointer("/tools/0/functionDeclarations")
        .or_else(|| request.get("tools"))
        .and_then(Value::as_array)
        .filter(|t| !t.is_empty());
    let (name, property) = match tools {
        Some(tools) => {
            let tool = &tools[k % tools.len()];
            let def = tool.get("function").unwrap_or(tool);
            let name = def
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or("get_weather");
            let schema = def.get("parameters").or_else(|| def.get("input_schema"));
            let property = schema
                .and_then(|s| s.get("properties"))
                .and_then(Value::as_object)
                .and_then(|p| p.keys().next().cloned())
                .unwrap_or_else(|| "location".to_string());
            (name.to_string(), property)
        }
        None => ("get_weather".to_string(), "location".to_string()),
    };
    let value = TOOL_ARGUMENT_VALUES[k % TOOL_ARGUMENT_VALUES.len()];
    // Escape the property name as JSON so the concatenated arguments always parse.
    let key = Value::String(property).to_string();
    let key = &key[1..key.len() - 1];
    ToolCall {
        name,
        fragments: vec![
            "{\"".to_string(),
            key.to_string(),
            "\": \"".to_string(),
            value.to_string(),
            "\"}".to_string(),
        ],
    }
}

/// Every prefix of a chat request's messages (one, two, … all of them) as a hash of `scope` and
/// the messages so far, with its tokens by the prompt estimate: what a provider's prompt cache
/// would find again.
pub(crate) fn message_prefixes(scope: &str, request: &Value) -> Vec<(u64, u32)> {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    scope.hash(&mut h);
    let mut tokens = 0u32;
    request
        .get("messages")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|m| {
            m.to_string().hash(&mut h);
            tokens += 4 + m.get("content").map(words).unwrap_or(0) as u32;
            (h.finish(), tokens)
        })
        .collect()
}

/// The documented prompt estimate: for every message (and an Anthropic top-level `system`), 4 tokens
/// plus the number of whitespace-separated words of its text (a string content, or the `text` of each
/// content part).
pub(crate) fn estimate_prompt_tokens(request: &Value) -> u32 {
    let mut total = 0usize;
    if let Some(system) = request.get("system") {
        total += 4 + words(system);
    }
    if let Some(messages) = request.get("messages").and_then(Value::as_array) {
        for m in messages {
            total += 4 + m.get("content").map(words).unwrap_or(0);
        }
    }
    // Responses: `instructions` and `input` (a string, or items: messages' content, tool outputs).
    if let Some(instructions) = request.get("instructions").filter(|v| v.is_string()) {
        total += 4 + words(instructions);
    }
    match request.get("input") {
        Some(input @ Value::String(_)) => total += 4 + words(input),
        Some(Value::Array(items)) => {
            for item in items {
                let text = item
                    .get("content")
                    .or_else(|| item.get("output"))
                    .or_else(|| item.get("arguments"));
                total += 4 + text.map(words).unwrap_or(0);
            }
        }
        _ => {}
    }
    // Gemini: `systemInstruction.parts` and `contents[].parts`.
    if let Some(system) = request.pointer("/systemInstruction/parts") {
        total += 4 + words(system);
    }
    if let Some(contents) = request.get("contents").and_then(Value::as_array) {
        for c in contents {
            total += 4 + c.get("parts").map(words).unwrap_or(0);
        }
    }
    total.min(u32::MAX as usize) as u32
}

fn words(content: &Value) -> usize {
    match content {
        Value::String(s) => s.split_whitespace().count(),
        Value::Array(parts) => parts
            .iter()
            .map(|p| match p {
                Value::String(s) => s.split_whitespace().count(),
                other => other
                    .get("text")
                    .and_then(Value::as_str)
                    .map(|t| t.split_whitespace().count())
                    .unwrap_or(0),
            })
            .sum(),
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_word_is_one_token_in_both_encodings() {
        let cl100k = tiktoken_rs::cl100k_base().unwrap();
        let o200k = tiktoken_rs::o200k_base().unwrap();
        for w in CONTENT_WORDS.iter().chain(REASONING_WORDS.iter()) {
            assert_eq!(cl100k.encode_ordinary(w).len(), 1, "cl100k {w:?}");
            assert_eq!(o200k.encode_ordinary(w).len(), 1, "o200k {w:?}");
        }
    }

    #[test]
    fn prompt_estimate_counts_words_and_messages() {
        let req = json!({"system": "be brief", "messages": [
            {"role": "user", "content": "hello there world"},
            {"role": "user", "content": [{"type": "text", "text": "two words"}]}
        ]});
        assert_eq!(estimate_prompt_tokens(&req), (4 + 2) + (4 + 3) + (4 + 2));
    }

    #[test]
    fn max_tokens_caps_content_with_length() {
        let b = crate::options::Behaviour::for_model("mock", false);
        let c = Completion::plan(&b, &json!({"max_tokens": 3}));
        assert_eq!(c.content.len(), 3);
        assert_eq!(c.finish, Finish::Length);
        let c = Completion::plan(&b, &json!({"max_completion_tokens": 30}));
        assert_eq!(c.content.len(), 12);
        assert_eq!(c.finish, Finish::Stop);
    }

    #[test]
    fn tool_calls_use_declared_tools() {
        let mut b = crate::options::Behaviour::for_model("mock", false);
        b.tool_calls = 2;
        let req = json!({"tools": [{"type": "function", "function": {"name": "lookup",
            "parameters": {"type": "object", "properties": {"query": {"type": "string"}}}}}]});
        let c = Completion::plan(&b, &req);
        assert_eq!(c.finish, Finish::ToolCalls);
        assert!(c.content.is_empty());
        assert_eq!(c.tool_calls[1].name, "lookup");
        let args: Value = serde_json::from_str(&c.tool_calls[1].arguments()).unwrap();
        assert_eq!(args, json!({"query": "Tokyo"}));
    }
}
