//! The settlement guard: every admitted request owns one, and its ledger entry is written exactly
//! once, either by an explicit `settle` at the end of the happy path or, when the request is
//! dropped early (client gone, upstream dead, a panic), by the guard's `Drop`. The guard owns the
//! request's hold on the key's money: settling writes the entry and the debit in one transaction
//! and then releases the hold; if the entry cannot be written the hold is released all the same.
//! The key's token rate-limit reservation is settled to the tokens used at the same moment.

use std::sync::Arc;
use std::time::{Duration, Instant};

use switchyard_wire::usage::Usage;

use crate::ledger::{now_ms, Cost, EndReason, Hold, Ledger, Prices, TokenSource, UsageEntry};
use crate::limits::{Quota, Reservation};
use crate::relay::tokens;
use crate::telemetry;

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
    /// The served route's prices, when they differ from the requested model's (`auto` models).
    pub prices: Option<Prices>,
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
    /// `started` as epoch milliseconds.
    pub started_at_ms: i64,
    /// The money reserved at admission, released once the entry is written.
    pub hold: Option<Hold>,
    /// The tokens reserved on the key's `tpm` limit, corrected to the real use at settlement.
    pub rate: Option<Reservation>,
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
    /// The key's rate limits as this admission left them (for the `x-ratelimit-*` headers).
    pub rate: Option<Quota>,
    /// Held while the request streams to its client (the open-streams gauge).
    open_stream: Option<telemetry::OpenStream>,
}

/// The usage to bill: the upstream's if it reported one, else an estimate from what was delivered,
/// counted with the model's tokenizer on a blocking thread. Nothing delivered and nothing reported
/// means nothing is billed.
async fn measure(a: &Admission, tally: &Tally) -> Settled {
    let (usage, source) = match tally.reported {
        Some(u) => (u, TokenSource::ProviderReported),
        None if tally.delivered.is_empty() => (Usage::default(), TokenSource::Estimated),
        None => {
            let model = tally
                .served_model
                .clone()
                .unwrap_or_else(|| a.requested_model.clone());
            let prompt = a.prompt.clone();
            let delivered = tally.delivered.clone();
            let count = move || Usage {
                prompt_tokens: tokens::prompt_tokens(&model, &prompt.prompt()),
                completion_tokens: tokens::count(&model, &delivered),
                ..Usage::default()
            };
            let usage = tokio::task::spawn_blocking(count).await.unwrap_or_default();
            (usage, TokenSource::Estimated)
        }
    };
    Settled {
        usage,
        cost: tally.prices.as_ref().unwrap_or(&a.prices).cost(&usage),
        source,
    }
}

fn entry(a: &Admission, tally: &Tally, end: EndReason, settled: &Settled) -> UsageEntry {
    let duration_ms = a.started.elapsed().as_millis() as i64;
    UsageEntry {
        request_id: a.request_id.clone(),
        key_id: a.key_id.clone(),
        requested_model: a.requested_model.clone(),
        served_model: tally.served_model.clone(),
        provider: tally.provider.clone(),
        attempts: tally.attempts,
        prompt_tokens: settled.usage.prompt_tokens,
        completion_tokens: settled.usage.completion_tokens,
        reasoning_tokens: settled.usage.reasoning_tokens,
        cached_tokens: settled.usage.cached_tokens,
        token_source: settled.source,
        cost: settled.cost.total(),
        end_reason: end,
        ttft_ms: tally
            .first_token_at
            .map(|t| t.duration_since(a.started).as_millis() as i64),
        duration_ms,
        stream: a.stream,
        started_at: a.started_at_ms,
        finished_at: now_ms().max(a.started_at_ms),
    }
}

async fn record(mut a: Box<Admission>, e: &UsageEntry) {
    telemetry::record_settled(&telemetry::SettledRequest {
        model: &a.requested_model,
        provider: e.provider.as_deref(),
        end_reason: e.end_reason.as_str(),
        prompt_tokens: e.prompt_tokens,
        completion_tokens: e.completion_tokens,
        cost_nanos: e.cost.0,
        ttft: e.ttft_ms.map(|ms| Duration::from_millis(ms.max(0) as u64)),
        duration: Duration::from_millis(e.duration_ms.max(0) as u64),
    });
    if let Some(rate) = a.rate.take() {
        let used = e.prompt_tokens.saturating_add(e.completion_tokens);
        rate.settle(&a.key_id, used);
    }
    let hold = a.hold.take();
    if let Err(err) = a.ledger.settle(e, hold).await {
        tracing::error!(request_id = %e.request_id, error = %err, "usage entry could not be written");
    }
}

impl Settlement {
    pub fn new(admission: Admission) -> Settlement {
        Settlement {
            admission: Some(Box::new(admission)),
            tally: Tally::default(),
            rate: None,
            open_stream: None,
        }
    }

    /// The answer is streaming to the client: counted as an open stream until this is dropped.
    pub fn stream_opened(&mut self) {
        if self.open_stream.is_none() {
            self.open_stream = Some(telemetry::OpenStream::start());
        }
    }

    /// What the request has cost so far (see `measure`).
    pub async fn measure(&self) -> Settled {
        match &self.admission {
            Some(a) => measure(a, &self.tally).await,
            None => Settled {
                usage: Usage::default(),
                cost: Cost::default(),
                source: TokenSource::Estimated,
            },
        }
    }

    /// Writes the ledger entry now and waits until it is durable. Settling twice is impossible:
    /// the first call consumes the admission.
    pub async fn settle(&mut self, end: EndReason, settled: &Settled) {
        let Some(a) = self.admission.take() else {
            return;
        };
        let e = entry(&a, &self.tally, end, settled);
        record(a, &e).await;
    }
}

impl Drop for Settlement {
    fn drop(&mut self) {
        let Some(a) = self.admission.take() else {
            return;
        };
        // Dropped before settling: the client went away (or the task died). Bill what was
        // delivered, off this thread: drop must not block the runtime.
        tracing::debug!(request_id = %a.request_id, "request dropped before it finished; settling as cancelled");
        let tally = std::mem::take(&mut self.tally);
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => {
                handle.spawn(async move {
                    let settled = measure(&a, &tally).await;
                    let e = entry(&a, &tally, EndReason::Cancelled, &settled);
                    record(a, &e).await;
                });
            }
            Err(_) => {
                tracing::error!(request_id = %a.request_id, "no runtime to settle a dropped request")
            }
        }
    }
}
