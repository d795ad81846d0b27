//! One tool call of a generated answer: its name and its JSON arguments, split into the fragments
//! a stream sends (used by the answer builder and the agent scenarios alike).

use serde_json::Value;

/// One tool call: its name and its JSON arguments split into the fragments a stream sends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ToolCall {
    pub name: String,
    pub fragments: Vec<String>,
}

impl ToolCall {
    pub(crate) fn arguments(&self) -> String {
        self.fragments.concat()
    }

    /// A call of `name` with these arguments, their JSON split into fragments of a few
    /// characters, as a stream sends them.
    pub(crate) fn with_arguments(name: &str, arguments: &Value) -> ToolCall {
        let json = arguments.to_string();
        let mut fragments = Vec::new();
        let mut current = String::new();
        for ch in json.chars() {
            current.push(ch);
            if current.len() >= 8 {
                fragments.push(std::mem::take(&mut current));
            }
        }
        if !current.is_empty() {
            fragments.push(current);
        }
        ToolCall {
            name: name.to_string(),
            fragments,
        }
    }
}
