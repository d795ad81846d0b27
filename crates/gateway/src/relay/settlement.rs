//! The settlement guard: every admitted request owns one, and its ledger entry is written exactly
//! once, either by an explicit `settle` at the end of the happy path or, when the request is
//! dropped early (client gone, upstream dead, a panic), by the guard's `Drop`.

use std::sync::Arc;
use std::time::Instant;

use switchyard_wire::usage::Usage;

use crate::ledger::{now_ms, Cost, EndReason, Ledger, Prices, TokenSource, UsageEntry};
use crate::relay::tokens;

/// What the relay learned while serving the request, read when it is settled.
#[derive(Debug, Default)]
pub struct Tally {
    /// Every piece of generated text delivered to the client (content, reasoning, tool calls).
    pub delivered: String,
    /// The usage the upstream reported, if it did.
    pub reported: Option<Usage>,
    pub first_token_at: Option<Instant>,
    pub served_model: Option<String>,
    pub provider: Option<String>,
    pub attempts: u32,
}

/// The fixed facts of a request, known at admission.
pub struct Admission {
    pub ledger: Ledger,
    pub request_id: String,
    pub key_id: String,
    pub requested_model: String,
    pub prices: Prices,
    /// Prompt text and message count, for an estimate when the upstream reports no usage.
    pub prompt: Arc<dyn tokens::PromptSource + Send + Sync>,
    pub stream: bool,
    pub started: Instant,
}

/// The outcome of a settlement: what was counted and what it cost.
#[derive(Debug, Clone, Copy)]
pub struct Settled {
    pub usage: Usage,
    pub cost: Cost,
    pub source: TokenSource,
}

/// Owns the duty to settle one request.
pub struct Settlement {
    admission: Option<Box<Admission>>,
    pub tally: Tally,
}

impl Settlement {
    pub fn new(admission: Admission) -> Settlement {
        Settlement {
            admission: Some(Box::new(admission)),
            tally: Tally::default(),
        }
    }

    /// The usage to bill: the upstream's if it reported one, else an estimate from what was
    /// delivered. Nothing delivered and nothing reported means nothing is billed.
    pub fn measure(&self) -> Settled {
        let Some(a) = &self.admission else {
            return Settled {
                usage: Usage::default(),
                cost: Cost::default(),
                source: TokenSource::Estimated,
            };
        };
        let (usage, source) = match self.tally.reported {
            Some(u) => (u, TokenSource::ProviderReported),
            None if self.tally.delivered.is_empty() => (Usage::default(), TokenSource::Estimated),
            None => {
                let model = self
                    .tally
                    .served_model
                    .as_deref()
                    .unwrap_or(&a.requested_model);
                (
                    Usage {
                        prompt_tokens: tokens::prompt_tokens(model, &a.prompt.prompt()),
                        completion_tokens: tokens::count(model, &self.tally.delivered),
                        ..Usage::default()
                    },
                    TokenSource::Estimated,
                )
            }
        };
        Settled {
            usage,
            cost: a.prices.cost(&usage),
            source,
        }
    }

    fn entry(&self, a: &Admission, end: EndReason, settled: &Settled) -> UsageEntry {
        UsageEntry {
            request_id: a.request_id.clone(),
            key_id: a.key_id.clone(),
            requested_model: a.requested_model.clone(),
            served_model: self.tally.served_model.clone(),
            provider: self.tally.provider.clone(),
            attempts: self.tally.attempts,
            prompt_tokens: settled.usage.prompt_tokens,
            completion_tokens: settled.usage.completion_tokens,
            reasoning_tokens: settled.usage.reasoning_tokens,
            cached_tokens: settled.usage.cached_tokens,
            token_source: settled.source,
            cost: settled.cost.total(),
            end_reason: end,
            ttft_ms: self
                .tally
                .first_token_at
                .map(|t| t.duration_since(a.started).as_millis() as i64),
            duration_ms: a.started.elapsed().as_millis() as i64,
            stream: a.stream,
            created_at: now_ms(),
        }
    }

    /// Writes the ledger entry now and waits until it is durable. Settling twice is impossible:
    /// the first call consumes the admission.
    pub async fn settle(&mut self, end: EndReason, settled: &Settled) {
        let Some(a) = self.admission.take() else {
            return;
        };
        let entry = self.entry(&a, end, settled);
        if let Err(e) = a.ledger.record(&entry).await {
            tracing::error!(request_id = %entry.request_id, error = %e, "usage entry could not be written");
        }
    }
}

impl Drop for Settlement {
    fn drop(&mut self) {
        let Some(a) = self.admission.as_ref() else {
            return;
        };
        // Dropped before settling: the client went away (or the task died). Bill what was delivered.
        let settled = self.measure();
        let end = EndReason::Cancelled;
        let entry = self.entry(a, end, &settled);
        let ledger = a.ledger.clone();
        self.admission = None;
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => {
                handle.spawn(async move {
                    if let Err(e) = ledger.record(&entry).await {
                        tracing::error!(request_id = %entry.request_id, error = %e, "usage entry could not be written");
                    }
                });
            }
            Err(_) => {
                tracing::error!(request_id = %entry.request_id, "no runtime to settle a dropped request")
            }
        }
    }
}
