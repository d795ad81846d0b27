//! Token counting with a real tokenizer (tiktoken), for the cases where the upstream reported no
//! usage: a stream the client cancelled, or one the upstream cut off.
//!
//! Each vocabulary (tens of MB resident once built) is loaded the first time an estimate needs
//! it, never at startup: a gateway whose upstreams always report usage never loads one. Counting
//! (and so the first load) runs only on blocking threads (`spawn_blocking`), never on a runtime
//! thread; the admission hold uses `prompt_token_bound`, which needs no tokenizer. Progress
//! checkpoints, due every second for every open stream, count on one thread of their own
//! (`in_background`): spread over the blocking pool they grew it to hundreds of threads, each
//! with its own regex cache (measured: ~150 KB of memory per open stream).

use std::sync::mpsc::{sync_channel, SyncSender};
use std::sync::OnceLock;

use tiktoken_rs::CoreBPE;

/// Counting jobs waiting for the checkpoint thread at most; past this a checkpoint is skipped
/// (the next one, a second later, supersedes it).
const BACKGROUND_QUEUE: usize = 4_096;

type Job = Box<dyn FnOnce() + Send>;

/// Runs `job` (a checkpoint's count) on the one checkpoint-counting thread, started on first
/// use. Never blocks: false (the job dropped) when that thread is `BACKGROUND_QUEUE` jobs behind.
pub(crate) fn in_background(job: impl FnOnce() + Send + 'static) -> bool {
    static QUEUE: OnceLock<Option<SyncSender<Job>>> = OnceLock::new();
    let queue = QUEUE.get_or_init(|| {
        let (tx, rx) = sync_channel::<Job>(BACKGROUND_QUEUE);
        std::thread::Builder::new()
            .name("switchyard-tokens".into())
            .spawn(move || {
                while let Ok(job) = rx.recv() {
                    job();
                }
            })
            .ok()
            .map(|_| tx)
    });
    queue
        .as_ref()
        .is_some_and(|tx| tx.try_send(Box::new(job)).is_ok())
}

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
pub(crate) fn count(model: &str, text: &str) -> u64 {
    encoder(model).encode_ordinary(text).len() as u64
}

/// Tokens of a chat prompt, framing included.
pub(crate) fn prompt_tokens(model: &str, prompt: &Prompt) -> u64 {
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
