//! Admission: which model a caller may use, and the hold on the caller's money taken before any
//! upstream is called. Returns the settlement guard that will settle or release that hold.
//!
//! The hold is the worst case of everything the request can cost, on the dearest of the model's
//! routes (each route at its own prices and in its own dialect):
//! - the prompt: an upper bound of its tokens computed without the tokenizer (too slow for the
//!   request path): no BPE token is shorter than one byte, so the bytes of the prompt's strings,
//!   keys and tool definitions plus the chat framing bound its text; images, input audio and files
//!   are bounded by the providers' token rules instead (`switchyard_wire::media_tokens`), and an
//!   Anthropic route adds the tool-use system prompt Anthropic inserts when tools are present;
//! - the output: `max_completion_tokens` / `max_tokens`, capped by the model's `max_output_tokens`
//!   (that limit when the client set none), reasoning included, times the choices asked for (`n`,
//!   `best_of`); on an Anthropic route, the `max_tokens` the translation sends, which includes the
//!   thinking budget (`thinking.budget_tokens` or `reasoning_effort`); on a Gemini route, the
//!   `maxOutputTokens` the translation sends (thinking budget included) times `n`.
//!
//! One walk over the parsed body, then a few multiplications per route; no allocation. The hold is
//! taken in memory, under the key's account lock, so concurrent requests on one key can never
//! reserve more than its balance or budget; with `instances = "shared"` it is one conditional
//! statement in PostgreSQL against the holds of every instance (`ledger::shared_holds`), and a
//! database that does not answer is a 503.
//!
//! Then the key's rate limits (`limits`) count the request and reserve the same token bound
//! (prompt plus output, the largest of any route); a refusal there drops the hold again and
//! answers 429.

use std::collections::BTreeMap;
use std::sync::Arc;
use tokio::time::Instant;

use serde_json::Value;
use switchyard_wire::anthropic::upstream_max_tokens;
use switchyard_wire::gemini::upstream_max_output_tokens;
use switchyard_wire::media_tokens::{self, ImageRule, IMAGE_RULES};
use switchyard_wire::openai::{ChatRequest, RequestError};

use crate::auth::Caller;
use crate::config::{ModelConfig, ModelKind, ProviderConfig, ProviderKind};
use crate::gateway::Gateway;
use crate::limits::{KeyLimits, NotAdmitted};
use crate::relay::settlement::{Admission, Settlement};
use crate::relay::tokens::PromptSource;
use crate::relay::RelayError;
use crate::store::ledger::journal::AdmitRecord;
use crate::store::ledger::{now_ms, HoldError, Nanos};

/// The default `max_tokens` sent to Anthropic when the caller gave none (Anthropic requires one);
/// held as its worst case here, sent by `attempts`.
pub(crate) const ANTHROPIC_DEFAULT_MAX_TOKENS: u64 = 4096;

/// The configured chat model `name`, if it exists and `caller` may use it. An embedding model is
/// the caller's 400: it answers `/v1/embeddings` only.
pub fn model_for(
    gw: &Gateway,
    caller: &Caller,
    name: &str,
) -> Result<Arc<ModelConfig>, RelayError> {
    let model = any_model_for(gw, caller, name)?;
    if model.kind != ModelKind::Chat {
        return Err(RelayError::BadRequest(RequestError::new(
            "model",
            format!("The model '{name}' is an embedding model; it serves /v1/embeddings only."),
        )));
    }
    Ok(model)
}

/// The configured model `name` of any kind, if it exists and `caller` may use it.
pub fn any_model_for(
    gw: &Gateway,
    caller: &Caller,
    name: &str,
) -> Result<Arc<ModelConfig>, RelayError> {
    let model = gw
        .config
        .models
        .get(name)
        .ok_or_else(|| RelayError::UnknownModel(name.to_owned()))?
        .clone();
    if let Some(allowed) = &caller.models {
        if !allowed.iter().any(|m| m == name) {
            return Err(RelayError::ModelNotAllowed(name.to_owned()));
        }
    }
    Ok(model)
}

/// The most output one choice of a request for `model` can produce: the requested limit capped by
/// the model's.
fn max_output(model: &ModelConfig, req: &ChatRequest) -> u64 {
    req.max_tokens
        .map_or(model.max_output_tokens, |m| m.min(model.max_output_tokens))
}

/// The worst case of a request: what the hold reserves in money and the rate limiter in tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bound {
    /// The most the request can cost on any of its model's routes.
    pub cost: Nanos,
    /// The most tokens (prompt plus output) it can use on any of them.
    pub tokens: u64,
}

/// The worst case of `req` for `model`: the largest cost and token count over the model's routes,
/// each in its provider's dialect (`providers`) and at its own prices.
pub fn worst_case(
    providers: &BTreeMap<String, Arc<ProviderConfig>>,
    model: &ModelConfig,
    req: &ChatRequest,
) -> Bound {
    let shape = PromptShape::of(req);
    let mut bound = Bound {
        cost: Nanos::ZERO,
        tokens: 0,
    };
    let mut widen = |kind, upstream_model: &str, prices: &crate::store::ledger::Prices| {
        let (prompt, output) = shape.route_tokens(kind, upstream_model, model, req);
        bound.cost = bound.cost.max(prices.worst_case(prompt, output));
        bound.tokens = bound.tokens.max(prompt.saturating_add(output));
    };
    if model.routes.is_empty() {
        widen(ProviderKind::OpenAi, &model.name, &model.prices);
    }
    for route in &model.routes {
        let kind = providers
            .get(route.provider())
            .map_or(ProviderKind::OpenAi, |p| p.kind);
        widen(kind, route.upstream_model(), &route.prices);
    }
    bound
}

/// Admits a request: holds its worst-case cost on the caller's account, or refuses it with 402
/// when the balance (less the holds of requests in flight) or the budget cannot cover it.
/// Returns the settlement guard, which owns the hold.
pub async fn admit(
    gw: &Gateway,
    caller: &Caller,
    model: &ModelConfig,
    request_id: String,
    req: Arc<ChatRequest>,
    stream: bool,
    started: Instant,
) -> Result<Settlement, RelayError> {
    let bound = worst_case(&gw.config.providers, model, &req);
    admit_bound(gw, caller, model, request_id, bound, req, stream, started).await
}

/// Admits a request whose worst case is `bound` (see `admit`); `prompt` gives the token estimate
/// when the upstream reports no usage.
#[allow(clippy::too_many_arguments)]
pub async fn admit_bound(
    gw: &Gateway,
    caller: &Caller,
    model: &ModelConfig,
    request_id: String,
    bound: Bound,
    prompt: Arc<dyn PromptSource + Send + Sync>,
    stream: bool,
    started: Instant,
) -> Result<Settlement, RelayError> {
    let amount = bound.cost;
    let now = now_ms();
    let hold = gw
        .ledger
        .hold(&caller.id, &request_id, amount, bound.tokens as i64, now)
        .await
        .map_err(|e| match e {
            HoldError::Balance | HoldError::NoSuchKey => RelayError::InsufficientBalance,
            HoldError::Quota { window, resets_at } => RelayError::QuotaExceeded {
                window,
                retry_after: resets_at.map(|at| {
                    std::time::Duration::from_millis(at.saturating_sub(now).max(0) as u64)
                }),
            },
            HoldError::Budget(period) => RelayError::BudgetExceeded(period.as_str()),
            HoldError::Unavailable => RelayError::LedgerUnavailable,
        })?;
    let limits = KeyLimits::new(caller.rpm, caller.tpm).with_concurrency(caller.max_concurrent);
    let (rate, quota) = if limits.is_unlimited() {
        (None, None)
    } else {
        let admitted = gw
            .limits
            .reserve(&caller.id, limits, bound.tokens)
            .await
            .map_err(|n| match n {
                NotAdmitted::Limited(r) => RelayError::RateLimited(Box::new(r)),
                NotAdmitted::Unavailable => RelayError::LimitsUnavailable,
            })?;
        (admitted.reservation, Some(admitted.quota))
    };
    let started_at_ms = now - started.elapsed().as_millis() as i64;
    let record = gw.ledger.journal().map(|_| {
        AdmitRecord::new(
            &request_id,
            &caller.id,
            &model.name,
            stream,
            started_at_ms,
            &model.prices,
            hold.amount(),
        )
    });
    let mut settlement = Settlement::new(Admission {
        ledger: gw.ledger.clone(),
        request_id,
        key_id: caller.id.clone(),
        requested_model: model.name.clone(),
        prices: model.prices.clone(),
        prompt,
        stream,
        started_at_ms,
        started,
        hold: Some(hold),
        rate,
        route_rate: None,
        events: gw.events.clone(),
        key_last4: caller.last4.clone(),
        capture: gw.captures.ticket(caller.capture_hours),
        trace: None,
        tags: Vec::new(),
    });
    settlement.rate = quota;
    if let (Some(journal), Some(record)) = (gw.ledger.journal(), record) {
        // Durable in the journal's next batch, off the path to the first byte: this waits only
        // when the journal's queue is full (backpressure). Sent after the guard exists, so a
        // request dropped here is still settled.
        journal.admit(record).await;
    }
    Ok(settlement)
}

/// Chat framing per message and for the reply, as OpenAI documents it.
const FRAMING_PER_MESSAGE: u64 = 3;
const FRAMING_PER_REPLY: u64 = 3;

/// The system prompt Anthropic adds when `tools` are present: 346 tokens for Claude 4 and 3.7
/// Sonnet with `tool_choice` auto or none, the largest in Anthropic's tool-use pricing table.
const ANTHROPIC_TOOL_PROMPT: u64 = 346;

/// What the hold needs from a chat request, whatever the route: found in one walk over the body.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PromptShape {
    /// The byte bound of the text (strings, keys, one token per number or boolean) and framing.
    pub text: u64,
    /// The images' tokens under each of the providers' rules (`media_tokens::IMAGE_RULES`), from
    /// their size when an inline PNG or GIF shows it, else the most one image can cost.
    pub images: [u64; IMAGE_RULES.len()],
    /// The token bound of the input audio.
    pub audio: u64,
    /// The most pages the files (PDFs) can have, together.
    pub file_pages: u64,
    pub has_tools: bool,
    /// Choices asked for: `n` or `best_of`, at least 1.
    pub choices: u64,
}

impl PromptShape {
    /// Walks `req` once.
    pub fn of(req: &ChatRequest) -> PromptShape {
        let mut shape = PromptShape {
            text: FRAMING_PER_REPLY,
            choices: 1,
            ..PromptShape::default()
        };
        if let Some(Value::Array(messages)) = req.body.get("messages") {
            for message in messages {
                shape.text += FRAMING_PER_MESSAGE;
                let Value::Object(fields) = message else {
                    shape.text += json_bytes(message);
                    continue;
                };
                for (key, value) in fields {
                    match (key.as_str(), value) {
                        ("content", Value::Array(parts)) => {
                            for part in parts {
                                shape.add_part(part);
                            }
                        }
                        _ => shape.text += key.len() as u64 + json_bytes(value),
                    }
                }
            }
        }
        for field in ["tools", "functions", "tool_choice", "response_format"] {
            if let Some(v) = req.body.get(field) {
                shape.text += json_bytes(v);
            }
        }
        shape.has_tools = ["tools", "functions"].iter().any(|f| {
            req.body
                .get(*f)
                .and_then(Value::as_array)
                .is_some_and(|t| !t.is_empty())
        });
        for field in ["n", "best_of"] {
            if let Some(n) = req.body.get(field).and_then(Value::as_u64) {
                shape.choices = shape.choices.max(n);
            }
        }
        shape
    }

    /// One content part: text by its bytes, media by the providers' rules.
    fn add_part(&mut self, part: &Value) {
        let kind = part.get("type").and_then(Value::as_str).unwrap_or_default();
        match kind {
            "image_url" => {
                let low = part.pointer("/image_url/detail").and_then(Value::as_str) == Some("low");
                let url = part.pointer("/image_url/url").and_then(Value::as_str);
                let size = url.and_then(media_tokens::image_size);
                for (total, rule) in self.images.iter_mut().zip(IMAGE_RULES) {
                    *total = total.saturating_add(rule.tokens(low, size));
                }
            }
            "input_audio" => {
                let data = part.pointer("/input_audio/data").and_then(Value::as_str);
                self.audio += media_tokens::audio_max(data.map_or(0, str::len));
            }
            "file" => {
                let data = part.pointer("/file/file_data").and_then(Value::as_str);
                self.file_pages += media_tokens::file_pages(data.map(str::len));
            }
            _ => self.text += json_bytes(part),
        }
    }

    /// The prompt and output token bounds on a route of `kind` serving `upstream_model`.
    fn route_tokens(
        &self,
        kind: ProviderKind,
        upstream_model: &str,
        model: &ModelConfig,
        req: &ChatRequest,
    ) -> (u64, u64) {
        let (rule, tools, output) = match kind {
            ProviderKind::OpenAi | ProviderKind::DeepSeek => (
                ImageRule::openai(upstream_model),
                0,
                max_output(model, req).saturating_mul(self.choices),
            ),
            // One choice only (the translation refuses `n` > 1); `max_tokens` as sent, thinking
            // budget included, within the model's limit plus the room the translation adds.
            ProviderKind::Anthropic => {
                let default = u32::try_from(ANTHROPIC_DEFAULT_MAX_TOKENS).unwrap_or(u32::MAX);
                let output = match upstream_max_tokens(&req.body, default) {
                    Ok(sent) => {
                        let asked = req.max_tokens.unwrap_or(ANTHROPIC_DEFAULT_MAX_TOKENS);
                        let room = sent.saturating_sub(asked);
                        sent.min(model.max_output_tokens.saturating_add(room))
                    }
                    // The translation refuses it: no upstream is called.
                    Err(_) => max_output(model, req),
                };
                let tools = if self.has_tools {
                    ANTHROPIC_TOOL_PROMPT
                } else {
                    0
                };
                (ImageRule::Anthropic, tools, output)
            }
            // `maxOutputTokens` as sent (thinking budget included; Gemini counts thoughts in it)
            // per candidate, within the model's limit plus the budget, times `n`.
            ProviderKind::Gemini => {
                let default = u32::try_from(ANTHROPIC_DEFAULT_MAX_TOKENS).unwrap_or(u32::MAX);
                let output = match upstream_max_output_tokens(&req.body, default) {
                    Ok(sent) => {
                        let asked = req.max_tokens.unwrap_or(ANTHROPIC_DEFAULT_MAX_TOKENS);
                        let room = sent.saturating_sub(asked);
                        sent.min(model.max_output_tokens.saturating_add(room))
                    }
                    Err(_) => max_output(model, req),
                };
                (ImageRule::Gemini, 0, output.saturating_mul(self.choices))
            }
        };
        (self.prompt_tokens(rule).saturating_add(tools), output)
    }

    /// The prompt tokens when images are counted under `rule`.
    fn prompt_tokens(&self, rule: ImageRule) -> u64 {
        let page = media_tokens::page_max(rule.tokens(false, None));
        self.text
            .saturating_add(self.images[rule.index()])
            .saturating_add(self.audio)
            .saturating_add(self.file_pages.saturating_mul(page))
    }
}

/// An upper bound of a chat request's prompt tokens on an OpenAI-dialect route of unknown model
/// (see the module documentation). Estimates for requests without reported usage use the
/// tokenizer instead.
pub fn chat_prompt_bound(req: &ChatRequest) -> u64 {
    PromptShape::of(req).prompt_tokens(ImageRule::OpenAiOther)
}

fn json_bytes(v: &Value) -> u64 {
    match v {
        Value::Null => 0,
        Value::Bool(_) | Value::Number(_) => 1,
        Value::String(s) => s.len() as u64,
        Value::Array(items) => items.iter().map(json_bytes).sum(),
        Value::Object(map) => map
            .iter()
            .map(|(k, v)| k.len() as u64 + json_bytes(v))
            .sum(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Route, Timeouts};
    use crate::relay::tokens::{self, PromptSource};
    use crate::store::ledger::Prices;

    fn req(body: serde_json::Value) -> ChatRequest {
        ChatRequest::parse(body.to_string().as_bytes()).unwrap()
    }

    #[test]
    fn the_prompt_bound_is_never_below_the_tokenizer_count() {
        let texts = [
            "hi",
            "The quick brown fox jumps over the lazy dog. 1234567890 !!!",
            "日本語のテキストとemoji 🎉🎉 mixed with code: fn main() { println!(\"x\"); }",
            "                                                       spaces",
        ];
        for text in texts {
            let r = req(serde_json::json!({"model": "gpt-4o", "messages": [
                {"role": "system", "content": "be brief"},
                {"role": "user", "content": [{"type": "text", "text": text}]}]}));
            let exact = tokens::prompt_tokens("gpt-4o", &r.prompt());
            let exact_cl = tokens::prompt_tokens("demo-chat", &r.prompt());
            let bound = chat_prompt_bound(&r);
            assert!(
                bound >= exact && bound >= exact_cl,
                "{text}: {bound} < {exact}"
            );
            // And not absurdly loose for text.
            assert!(bound <= 8 * exact + 64, "{text}: {bound} vs {exact}");
        }
    }

    fn prices(input: i64, output: i64) -> Prices {
        Prices {
            input: input.into(),
            output: output.into(),
            ..Prices::default()
        }
    }

    /// A model `m` with a 1000-token output limit, served by one route per `(provider, kind)`.
    fn setup(
        routes: &[(&str, ProviderKind)],
        p: Prices,
    ) -> (BTreeMap<String, Arc<ProviderConfig>>, ModelConfig) {
        let mut providers = BTreeMap::new();
        let mut model_routes = vec![];
        for (name, kind) in routes {
            providers.insert(
                name.to_string(),
                Arc::new(ProviderConfig {
                    name: name.to_string(),
                    kind: *kind,
                    base_url: "http://x".into(),
                    api_key: None,
                    timeouts: Timeouts::default(),
                    limits: Default::default(),
                    credential_timeout: crate::config::DEFAULT_CREDENTIAL_TIMEOUT,
                    credential_refresh_interval: crate::config::DEFAULT_CREDENTIAL_REFRESH_INTERVAL,
                    rpm: None,
                    tpm: None,
                    request_id: None,
                    native_responses: false,
                }),
            );
            model_routes.push(Route {
                id: crate::config::RouteId::new(name, "up"),
                model: "m".into(),
                prices: p.clone(),
                timeouts: Timeouts::default(),
                weight: crate::config::WEIGHT_UNIT,
            });
        }
        let model = ModelConfig {
            name: "m".into(),
            routes: model_routes,
            prices: p,
            max_output_tokens: 1000,
            auto: None,
            kind: crate::config::ModelKind::Chat,
            context_length: 1000,
            modalities: crate::config::Modalities::default_for(crate::config::ModelKind::Chat),
            reasoning: false,
            commit_after: None,
            strategy: Default::default(),
            affinity: true,
        };
        (providers, model)
    }

    fn bound(routes: &[(&str, ProviderKind)], p: Prices, body: serde_json::Value) -> Bound {
        let (providers, model) = setup(routes, p);
        worst_case(&providers, &model, &req(body))
    }

    const OPENAI: &[(&str, ProviderKind)] = &[("o", ProviderKind::OpenAi)];
    const ANTHROPIC: &[(&str, ProviderKind)] = &[("a", ProviderKind::Anthropic)];

    #[test]
    fn max_tokens_is_capped_by_the_model_limit() {
        // Output at 10 USD/M: 1000 tokens = 0.01 USD = 10,000,000 nano-USD.
        let small = serde_json::json!({"model": "m", "max_tokens": 100,
            "messages": [{"role": "user", "content": "x"}]});
        assert_eq!(bound(OPENAI, prices(0, 10), small).cost, Nanos(1_000_000));
        let huge = serde_json::json!({"model": "m", "max_completion_tokens": 1_000_000,
            "messages": [{"role": "user", "content": "x"}]});
        assert_eq!(bound(OPENAI, prices(0, 10), huge).cost, Nanos(10_000_000));
        let none =
            serde_json::json!({"model": "m", "messages": [{"role": "user", "content": "x"}]});
        assert_eq!(bound(OPENAI, prices(0, 10), none).cost, Nanos(10_000_000));
    }

    #[test]
    fn n_and_best_of_multiply_the_output() {
        let body = |extra: serde_json::Value| {
            let mut b = serde_json::json!({"model": "m", "max_tokens": 100,
                "messages": [{"role": "user", "content": "x"}]});
            b.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            b
        };
        let one = bound(OPENAI, prices(0, 10), body(serde_json::json!({})));
        let four = bound(OPENAI, prices(0, 10), body(serde_json::json!({"n": 4})));
        let best = bound(
            OPENAI,
            prices(0, 10),
            body(serde_json::json!({"best_of": 3})),
        );
        assert_eq!(one.cost, Nanos(1_000_000));
        assert_eq!(four.cost, Nanos(4_000_000));
        assert_eq!(best.cost, Nanos(3_000_000));
        // The rate limiter reserves the same bound: prompt plus every choice's output.
        assert_eq!(four.tokens - one.tokens, 300);
    }

    #[test]
    fn gemini_holds_cover_the_thinking_budget_and_every_candidate() {
        const GEMINI: &[(&str, ProviderKind)] = &[("g", ProviderKind::Gemini)];
        let body = |extra: serde_json::Value| {
            let mut b = serde_json::json!({"model": "m", "max_tokens": 100,
                "messages": [{"role": "user", "content": "x"}]});
            b.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            b
        };
        let plain = bound(GEMINI, prices(0, 10), body(serde_json::json!({})));
        assert_eq!(plain.cost, Nanos(1_000_000));
        // 100 + 2048 output tokens (Gemini counts thoughts in maxOutputTokens).
        let effort = bound(
            GEMINI,
            prices(0, 10),
            body(serde_json::json!({"reasoning_effort": "low"})),
        );
        assert_eq!(effort.cost, Nanos((100 + 2048) * 10_000));
        let budget = bound(
            GEMINI,
            prices(0, 10),
            body(
                serde_json::json!({"thinking": {"type": "enabled", "budget_tokens": 5000}, "n": 2}),
            ),
        );
        assert_eq!(budget.cost, Nanos(2 * 5100 * 10_000));
        // Without max_tokens: the 4096 the translation sends, capped by the model's 1000.
        let none =
            serde_json::json!({"model": "m", "messages": [{"role": "user", "content": "x"}]});
        assert_eq!(bound(GEMINI, prices(0, 10), none).cost, Nanos(10_000_000));
        // An image of unknown size is held at Gemini's largest figure.
        let image = serde_json::json!({"model": "m", "max_tokens": 1, "messages": [{"role": "user",
            "content": [{"type": "image_url", "image_url": {"url": "https://example.com/a.jpg"}}]}]});
        let held = bound(GEMINI, prices(1_000_000, 0), image).cost;
        assert!(held.0 >= 4128 * 1_000_000_000, "{held:?}");
    }

    #[test]
    fn anthropic_thinking_adds_the_budget_to_the_output() {
        let plain = serde_json::json!({"model": "m", "max_tokens": 100,
            "messages": [{"role": "user", "content": "x"}]});
        let thinking = serde_json::json!({"model": "m", "max_tokens": 100,
            "thinking": {"type": "enabled", "budget_tokens": 5000},
            "messages": [{"role": "user", "content": "x"}]});
        let effort = serde_json::json!({"model": "m", "max_tokens": 100,
            "reasoning_effort": "medium",
            "messages": [{"role": "user", "content": "x"}]});
        assert_eq!(
            bound(ANTHROPIC, prices(0, 10), plain).cost,
            Nanos(1_000_000)
        );
        // 100 + 5000 output tokens: the model's 1000-token limit does not hide the budget.
        assert_eq!(
            bound(ANTHROPIC, prices(0, 10), thinking.clone()).cost,
            Nanos(51_000_000)
        );
        assert_eq!(
            bound(ANTHROPIC, prices(0, 10), effort).cost,
            Nanos((100 + 8192) * 10_000)
        );
        // On an OpenAI-dialect route the same request reasons within max_tokens.
        assert_eq!(
            bound(OPENAI, prices(0, 10), thinking).cost,
            Nanos(1_000_000)
        );
        // A missing max_tokens is what the translation sends (4096), within the model's limit.
        let none =
            serde_json::json!({"model": "m", "messages": [{"role": "user", "content": "x"}]});
        assert_eq!(
            bound(ANTHROPIC, prices(0, 10), none).cost,
            Nanos(10_000_000)
        );
    }

    #[test]
    fn a_model_with_several_routes_holds_the_dearest() {
        let routes = &[("o", ProviderKind::OpenAi), ("a", ProviderKind::Anthropic)];
        let thinking = serde_json::json!({"model": "m", "max_tokens": 100,
            "thinking": {"type": "enabled", "budget_tokens": 5000},
            "messages": [{"role": "user", "content": "x"}]});
        assert_eq!(
            bound(routes, prices(0, 10), thinking).cost,
            Nanos(51_000_000)
        );
        let n = serde_json::json!({"model": "m", "max_tokens": 100, "n": 8,
            "messages": [{"role": "user", "content": "x"}]});
        assert_eq!(bound(routes, prices(0, 10), n).cost, Nanos(8_000_000));
    }

    #[test]
    fn media_cost_by_the_providers_rules_not_by_their_bytes() {
        let url = "https://example.com/a-rather-long/path/to/the/picture.png";
        let with = |parts: serde_json::Value| {
            serde_json::json!({"model": "m", "max_tokens": 1,
                "messages": [{"role": "user", "content": parts}]})
        };
        let text = bound(
            OPENAI,
            prices(1, 0),
            with(serde_json::json!([{"type": "text", "text": "look"}])),
        )
        .tokens;
        let image = |detail: &str| {
            serde_json::json!([{"type": "text", "text": "look"},
                {"type": "image_url", "image_url": {"url": url, "detail": detail}}])
        };
        let three = serde_json::json!([{"type": "text", "text": "look"},
            {"type": "image_url", "image_url": {"url": url}},
            {"type": "image_url", "image_url": {"url": url}},
            {"type": "image_url", "image_url": {"url": url}}]);
        // Upstream model "up" is not in OpenAI's table: the largest per-image figure, any detail.
        assert_eq!(
            bound(OPENAI, prices(1, 0), with(image("high"))).tokens,
            text + 3_779
        );
        assert_eq!(
            bound(OPENAI, prices(1, 0), with(three.clone())).tokens,
            text + 3 * 3_779
        );
        assert_eq!(
            bound(ANTHROPIC, prices(1, 0), with(three)).tokens,
            text + 3 * 4_800
        );
        // An inline 64×64 PNG: its size is in its header. OpenAI's tile rule takes the short side
        // to 768 px (4 tiles, 765 tokens); Anthropic counts 28-px patches (3 × 3 = 9).
        let png = serde_json::json!([{"type": "text", "text": "look"}, {"type": "image_url",
            "image_url": {"url": "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAEAAAABACAYAAAAAAAAAAAAA"}}]);
        assert_eq!(
            bound(OPENAI, prices(1, 0), with(png.clone())).tokens,
            text + 765
        );
        assert_eq!(bound(ANTHROPIC, prices(1, 0), with(png)).tokens, text + 9);
        // A 1 MB base64 PDF: at most 1,536 pages by size, 600 by the page limit.
        let pdf = "A".repeat(1_000_000);
        let file = serde_json::json!([{"type": "text", "text": "look"},
            {"type": "file", "file": {"filename": "a.pdf", "file_data": pdf}}]);
        assert_eq!(
            bound(ANTHROPIC, prices(1, 0), with(file)).tokens,
            text + 600 * (3_000 + 4_800)
        );
        // 8 kB of audio data: 6 kB decoded, 60 tokens + 1.
        let audio = serde_json::json!([{"type": "text", "text": "look"},
            {"type": "input_audio", "input_audio": {"data": "A".repeat(8_000), "format": "mp3"}}]);
        assert_eq!(bound(OPENAI, prices(1, 0), with(audio)).tokens, text + 61);
    }

    #[test]
    fn anthropic_routes_count_the_tool_system_prompt() {
        let tools = serde_json::json!({"model": "m", "max_tokens": 1,
            "tools": [{"type": "function", "function": {"name": "f"}}],
            "messages": [{"role": "user", "content": "x"}]});
        let openai = bound(OPENAI, prices(1, 0), tools.clone()).tokens;
        assert_eq!(bound(ANTHROPIC, prices(1, 0), tools).tokens, openai + 346);
    }
}
