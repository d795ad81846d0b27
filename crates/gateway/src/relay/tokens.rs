//! Token counting with a real tokenizer (tiktoken), for the cases where the upstream reported no
//! usage: a stream the client cancelled, or one the upstream cut off.
//!
//! Each vocabulary (tens of MB resident once built) is loaded the first time an estimate needs
//! it, never at startup: a gateway whose upstreams always report usage never loads one. Counting
//! (and so the first load) runs only on blocking threads (`spawn_blocking`), never on a runtime
//! thread; the admission hold uses `prompt_token_bound`, which needs no tokenizer.

use tiktoken_rs::CoreBPE;

/// What is needed to estimate a prompt's tokens.
#[derive(Debug, Default)]
pub struct Prompt {
    pub text: String,
    pub messages: usize,
}

/// Anything that can produce its prompt for an estimate (a chat request, a Responses request).
pub trait PromptSource {
    fn prompt(&self) -> Prompt;

    /// An upper bound of the prompt's tokens for the admission hold, computed without the
    /// tokenizer: no BPE token encodes less than one byte, so the prompt's UTF-8 bytes plus the
    /// chat framing bound its token count (images and files are not bounded by this).
    fn prompt_token_bound(&self) -> u64 {
        let p = self.prompt();
        p.text.len() as u64 + TOKENS_PER_MESSAGE * p.messages as u64 + TOKENS_PER_REPLY
    }

    /// The output limit the client asked for (`max_tokens` and the like), if any.
    fn max_output_tokens(&self) -> Option<u64> {
        None
    }

    /// The messages as the client sent them, for a key whose capture is on (`crate::capture`).
    fn messages(&self) -> serde_json::Value {
        serde_json::Value::Null
    }
}

/// OpenAI's per-message framing overhead in the chat format.
const TOKENS_PER_MESSAGE: u64 = 3;
const TOKENS_PER_REPLY: u64 = 3;

fn encoder(model: &str) -> &'static CoreBPE {
    let m = model.to_ascii_lowercase();
    let o200k = [
        "gpt-4o", "gpt-4.1", "gpt-4.5", "gpt-5", "o1", "o3", "o4", "chatgpt",
    ]
    .iter()
    .any(|p| m.starts_with(p));
    if o200k {
        tiktoken_rs::o200k_base_singleton()
    } else {
        tiktoken_rs::cl100k_base_singleton()
    }
}

/// Tokens in `text` for `model`'s tokenizer (cl100k_base for models without a known one). Blocks
/// while the vocabulary loads on first use: call it from a blocking thread.
pub fn count(model: &str, text: &str) -> u64 {
    encoder(model).encode_ordinary(text).len() as u64
}

/// Tokens of a chat prompt, framing included.
pub fn prompt_tokens(model: &str, prompt: &Prompt) -> u64 {
    count(model, &prompt.text) + TOKENS_PER_MESSAGE * prompt.messages as u64 + TOKENS_PER_REPLY
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_words_as_tokens() {
        assert_eq!(count("demo-chat", " the quick brown fox"), 4);
        assert_eq!(count("gpt-4o", " the quick brown fox"), 4);
        let p = Prompt {
            text: "hello".into(),
            messages: 1,
        };
        assert_eq!(prompt_tokens("gpt-4o", &p), 7);
    }
}
