//! The one meter: the billing tally of a request, and the only code that records it. Every relay
//! (chat and Responses, streamed or not, same dialect or translated) feeds it what the upstream
//! sent; the settlement reads it. One rule decides what counts as delivered text, whatever the
//! path: message or delta `content`, reasoning (`reasoning_content`, or `reasoning` as OpenRouter
//! and vLLM name it), and each tool call's function name and arguments, for every choice. The same
//! answer therefore gets the same estimate on every path.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tokio::time::Instant;

use serde_json::Value;
use switchyard_wire::chat_chunk::ChatChunk;
use switchyard_wire::finish::FinishReason;
use switchyard_wire::openai::ChunkView;
use switchyard_wire::usage::Usage;

use crate::config::RouteId;
use crate::store::ledger::{EndReason, Prices};

/// What the relay learned while serving the request, read when it is settled.
#[derive(Debug, Default)]
pub struct Meter {
    /// Every piece of generated text delivered to the client.
    delivered: String,
    /// The usage the upstream reported, if it did.
    reported: Option<Usage>,
    first_token_at: Option<Instant>,
    finish: Option<FinishReason>,
    /// The model name the upstream gave in its answer, when it is not the route's.
    served_model: Option<String>,
    attempts: u32,
    /// The served route's prices, when they differ from the requested model's (`auto` models).
    prices: Option<Prices>,
    /// Set once an upstream answered with success headers: from then on it has the prompt.
    accepted: Arc<AtomicBool>,
    /// The status of the last upstream answer, for the request log.
    upstream_status: Option<u16>,
    /// Set once a streamed response committed (200 and headers sent) before its first event:
    /// from then on the client has a 200, whatever fails.
    committed: Arc<AtomicBool>,
    /// The HTTP status the client got and the error's text, once the request failed.
    failure: Option<(u16, String)>,
    /// `responses` for the Responses API; `chat` otherwise.
    responses_api: bool,
    /// An Anthropic Messages request served as chat (`relay::messages`).
    messages_api: bool,
    /// A Gemini `generateContent` request served over chat (`relay::gemini`).
    gemini_api: bool,
    /// What the serving route's dialect could not carry (`Served::dropped`).
    dropped: Vec<String>,
    /// `embeddings` for `/v1/embeddings`.
    embeddings_api: bool,
    /// `completions` for `/v1/completions` (served over chat).
    completions_api: bool,
    /// The upstream's id of its answer (`chatcmpl-…`), from the first chunk that has one.
    response_id: Option<String>,
    /// The route that served it, `provider/upstream-model`.
    route: Option<RouteId>,
}

impl Meter {
    /// A streamed chunk in the OpenAI dialect, borrowed. Returns its finish reason, if it
    /// carries one.
    pub fn chunk(&mut self, view: &ChunkView<'_>) -> Option<FinishReason> {
        if self.response_id.is_none() {
            self.response_id = view.id.as_deref().map(str::to_owned);
        }
        let before = self.delivered.len();
        view.for_each_text(|t| self.delivered.push_str(t));
        self.note_text(before);
        if let Some(usage) = view.usage {
            if let Ok(v) = serde_json::from_str::<Value>(usage.get()) {
                self.usage_value(&v);
            }
        }
        view.finish().inspect(|&r| self.finish(r))
    }

    /// A chat chunk the gateway translated, typed (the same reading as [`Self::chat_value`]
    /// of its JSON, without building it).
    pub fn chat_chunk(&mut self, c: &ChatChunk) -> Option<FinishReason> {
        if self.response_id.is_none() {
            self.response_id = Some(c.stamp.id.clone());
        }
        let before = self.delivered.len();
        c.for_each_text(|t| self.delivered.push_str(t));
        self.note_text(before);
        c.finish_reason.inspect(|&r| self.finish(r))
    }

    /// A chat chunk or a whole chat completion as a JSON value (a translated chunk, a
    /// non-streamed answer): the text of every choice's `delta` or `message`, its usage, and its
    /// finish reason, which is returned.
    pub fn chat_value(&mut self, v: &Value) -> Option<FinishReason> {
        if self.response_id.is_none() {
            self.response_id = v.get("id").and_then(Value::as_str).map(str::to_owned);
        }
        let before = self.delivered.len();
        let mut finish = None;
        for choice in v
            .get("choices")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(part) = choice.get("delta").or_else(|| choice.get("message")) {
                for key in ["content", "reasoning_content", "reasoning"] {
                    if let Some(t) = part.get(key).and_then(Value::as_str) {
                        self.delivered.push_str(t);
                    }
                }
                let calls = part.get("tool_calls").and_then(Value::as_array);
                for call in calls.into_iter().flatten() {
                    for key in ["name", "arguments"] {
                        if let Some(t) = call
                            .get("function")
                            .and_then(|f| f.get(key))
                            .and_then(Value::as_str)
                        {
                            self.delivered.push_str(t);
                        }
                    }
                }
            }
            if let Some(reason) = choice.get("finish_reason").and_then(Value::as_str) {
                let reason = FinishReason::from_openai(reason);
                self.finish(reason);
                finish = Some(reason);
            }
        }
        self.note_text(before);
        if let Some(u) = v.get("usage") {
            self.usage_value(u);
        }
        finish
    }

    /// Usage in OpenAI's shape (ignored when it is not usage).
    pub fn usage_value(&mut self, v: &Value) {
        if let Some(u) = Usage::from_openai(v) {
            self.reported = Some(u);
        }
    }

    /// Usage the relay read in another dialect (Anthropic).
    pub fn usage(&mut self, u: Usage) {
        self.reported = Some(u);
    }

    /// How the upstream ended the answer.
    pub fn finish(&mut self, reason: FinishReason) {
        self.finish = Some(reason);
    }

    /// A whole answer arrived at once: its first token is now.
    pub fn answered(&mut self) {
        self.first_token_at.get_or_insert_with(Instant::now);
    }

    fn note_text(&mut self, before: usize) {
        if self.first_token_at.is_none() && self.delivered.len() > before {
            self.first_token_at = Some(Instant::now());
        }
    }

    /// The route that serves the request, once it answered (its model name is the served
    /// model until the upstream names another).
    pub fn served(&mut self, route: &RouteId, prices: Prices, attempts: u32) {
        self.route = Some(route.clone());
        self.served_model = None;
        self.prices = Some(prices);
        self.attempts = attempts;
    }

    /// The route that served the request (`provider/upstream-model`), once one did.
    pub fn route(&self) -> Option<&RouteId> {
        self.route.as_ref()
    }

    /// The model name the upstream gave in its answer.
    pub fn served_model(&mut self, model: &str) {
        if self.served_model_name() != Some(model) {
            self.served_model = Some(model.to_owned());
        }
    }

    /// Requests sent upstream so far (failover and credential refresh count).
    pub fn attempts(&mut self, n: u32) {
        self.attempts = n;
    }

    /// The flag an attempt sets once an upstream accepted the request (success headers).
    pub fn accepted_flag(&self) -> Arc<AtomicBool> {
        self.accepted.clone()
    }

    /// The flag the early commit sets once the client has its 200 (see `relay::early_commit`).
    pub fn committed_flag(&self) -> Arc<AtomicBool> {
        self.committed.clone()
    }

    pub fn is_accepted(&self) -> bool {
        self.accepted.load(Ordering::Relaxed)
    }

    pub fn delivered(&self) -> &str {
        &self.delivered
    }

    pub fn reported(&self) -> Option<Usage> {
        self.reported
    }

    pub fn first_token_at(&self) -> Option<Instant> {
        self.first_token_at
    }

    /// How the upstream ended the answer, once it did.
    pub fn finished(&self) -> Option<FinishReason> {
        self.finish
    }

    /// [`Self::finished`] as the ledger records it.
    pub fn finish_reason(&self) -> Option<EndReason> {
        self.finish.map(EndReason::from)
    }

    /// The model name the upstream gave in its answer, else the serving route's.
    pub fn served_model_name(&self) -> Option<&str> {
        self.served_model
            .as_deref()
            .or_else(|| self.route.as_ref().map(RouteId::upstream_model))
    }

    pub fn provider(&self) -> Option<&str> {
        self.route.as_ref().map(RouteId::provider)
    }

    /// Notes the status of the latest upstream answer (`None`: the attempt got no answer).
    pub fn upstream_answered(&mut self, status: Option<u16>) {
        self.upstream_status = status;
    }

    /// The request failed: `status` is what its client got (200 once a stream had begun),
    /// `message` the error's own text (masked and bounded in the entry). The first failure stays.
    pub fn failed(&mut self, status: u16, message: &str) {
        let status = if self.committed.load(Ordering::Relaxed) {
            200
        } else {
            status
        };
        if self.failure.is_none() {
            self.failure = Some((status, crate::store::ledger::error_text(message)));
        }
    }

    pub fn failure(&self) -> Option<&(u16, String)> {
        self.failure.as_ref()
    }

    /// The request came through the Responses API.
    pub fn responses_api(&mut self) {
        self.responses_api = true;
    }

    /// The upstream's id of its answer, if it gave one.
    pub fn response_id(&self) -> Option<&str> {
        self.response_id.as_deref()
    }

    pub fn messages_api(&mut self) {
        self.messages_api = true;
    }

    pub fn is_messages_api(&self) -> bool {
        self.messages_api
    }

    /// What the serving route's dialect could not carry and the translation left out.
    pub fn dropped_parts(&mut self, dropped: &[String]) {
        self.dropped = dropped.to_vec();
    }

    pub fn dropped(&self) -> &[String] {
        &self.dropped
    }

    /// The request came through Google's own API (`/v1beta/models/{model}:generateContent`).
    pub fn gemini_api(&mut self) {
        self.gemini_api = true;
    }

    pub fn is_gemini_api(&self) -> bool {
        self.gemini_api
    }

    pub fn is_responses_api(&self) -> bool {
        self.responses_api
    }

    /// The request came through `/v1/embeddings`.
    pub fn embeddings_api(&mut self) {
        self.embeddings_api = true;
    }

    pub fn is_embeddings_api(&self) -> bool {
        self.embeddings_api
    }

    /// The request came through `/v1/completions`.
    pub fn completions_api(&mut self) {
        self.completions_api = true;
    }

    pub fn is_completions_api(&self) -> bool {
        self.completions_api
    }

    pub fn upstream_status(&self) -> Option<u16> {
        self.upstream_status
    }

    pub fn attempts_made(&self) -> u32 {
        self.attempts
    }

    pub fn prices(&self) -> Option<&Prices> {
        self.prices.as_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The same answer, streamed (two chunks), translated (values) and whole (a message), is the
    /// same delivered text.
    #[test]
    fn every_path_counts_the_same_text() {
        let chunks = [
            json!({"choices": [{"index": 0, "delta": {"role": "assistant", "reasoning_content": "think ",
                   "tool_calls": [{"index": 0, "id": "c1", "type": "function",
                                   "function": {"name": "get", "arguments": "{\"a\""}}]}}]}),
            json!({"choices": [{"index": 0, "delta": {"content": "ok",
                   "tool_calls": [{"index": 0, "function": {"arguments": ":1}"}}]},
                   "finish_reason": "tool_calls"}]}),
        ];
        let mut streamed = Meter::default();
        let mut finish = None;
        for c in &chunks {
            let bytes = serde_json::to_vec(c).unwrap();
            let view = ChunkView::parse(&bytes).unwrap();
            finish = streamed.chunk(&view).or(finish);
        }
        let mut translated = Meter::default();
        for c in &chunks {
            translated.chat_value(c);
        }
        let mut whole = Meter::default();
        whole.chat_value(&json!({"choices": [{"index": 0, "finish_reason": "tool_calls",
            "message": {"role": "assistant", "reasoning_content": "think ", "content": "ok",
                        "tool_calls": [{"id": "c1", "type": "function",
                                        "function": {"name": "get", "arguments": "{\"a\":1}"}}]}}]}));
        assert_eq!(finish, Some(FinishReason::ToolCalls));
        for m in [&streamed, &translated, &whole] {
            let mut text: Vec<char> = m.delivered().chars().collect();
            text.sort_unstable();
            let mut want: Vec<char> = "think get{\"a\":1}ok".chars().collect();
            want.sort_unstable();
            assert_eq!(text, want, "{:?}", m.delivered());
            assert_eq!(m.finish_reason(), Some(EndReason::ToolCalls));
            assert!(m.first_token_at().is_some());
        }
    }

    #[test]
    fn finish_reasons_are_normalised_once() {
        let mut m = Meter::default();
        let got = m.chat_value(
            &json!({"choices": [{"delta": {}, "finish_reason": "insufficient_system_resource"}]}),
        );
        assert_eq!(got, Some(FinishReason::Length));
        assert_eq!(m.finish_reason(), Some(EndReason::Length));
    }
}
