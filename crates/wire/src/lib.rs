//! Switchyard's wire formats and pure translations between them: OpenAI chat, DeepSeek reasoning,
//! Anthropic Messages, Google Gemini, the Responses API, Server-Sent Events framing and token usage.
//!
//! Nothing in this crate does IO or knows about tokio: every function takes bytes or values and
//! returns bytes or values, so each translation can be tested on recorded transcripts alone.

pub mod anthropic;
mod borrowed;
pub mod chat_chunk;
pub mod compact_json;
pub mod completions;
pub mod embeddings;
pub mod finish;
pub mod gemini;
pub mod media_tokens;
pub mod openai;
pub mod reasoning_carrier;
pub mod responses;
pub mod sse;
pub mod upstream;
pub mod usage;
