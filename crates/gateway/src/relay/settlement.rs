//! The settlement guard: every admitted request owns one, and its ledger entry is written exactly
//! once, either by an explicit `settle` at the end of the happy path or, when the request is
//! dropped early (client gone, upstream dead, a panic), by the guard's `Drop`. The guard owns the
//! request's hold on the key's money and hands it, with the entry, to the ledger's group-commit
//! writer, which releases it once the debit is durable. The hand-off is cancel-safe: the guard
//! gives up its admission only once the writer's queue has room, and from then on the write runs
//! in the writer, so a client that goes away mid-commit cannot leave its request unbilled.
//!
//! While a request runs, the guard also journals progress checkpoints (tokens so far, at most a
//! second old, and one at the first token) so that a crash bills it to its last checkpoint (`ledger::journal`): a
//! request killed in its first second pays its prompt and what it streamed. A request
//! cancelled after an upstream accepted it but before any visible token pays for its prompt.
//! An upstream that reports more than the hold covered is billed all the same, and the entry says
//! `over_hold`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

use switchyard_wire::usage::Usage;

use crate::limits::{Quota, Reservation};
use crate::relay::meter::Meter;
use crate::relay::tokens;
use crate::store::ledger::journal::ProgressRecord;
use crate::store::ledger::{
    now_ms, BillingNote, Cost, Durable, EndReason, Hold, Ledger, LedgerError, Nanos, Prices,
    TokenSource, UsageEntry,
};
use crate::telemetry;

/// What a client is told when its finished answer's ledger entry could not be made durable.
pub(crate) const UNRECORDED: &str =
    "The usage of this request could not be recorded; it was not completed normally.";

/// How often a running request's progress is journaled.
const CHECKPOINT_EVERY: Duration = Duration::from_secs(1);

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
    /// The same on the serving route's own quota (its provider's `rpm`/`tpm`), once served.
    pub route_rate: Option<Reservation>,
    /// `[event_log]`, and the key's last four characters for its masked key there.
    pub events: Option<crate::event_log::EventLog>,
    pub key_last4: Option<String>,
    /// Set when the key's capture is on: the messages and delivered text go to `crate::capture`.
    pub capture: Option<crate::capture::Ticket>,
    /// Set when `[otlp]` is on: the request's span, ended at settlement.
    pub trace: Option<(Arc<crate::otlp::Otlp>, crate::otlp::Pending)>,
    /// The request's spend tags (`relay::tags`).
    pub tags: Vec<String>,
}

/// The outcome of a settlement: what was counted and what it cost.
#[derive(Debug, Clone, Copy)]
pub struct Settled {
    pub usage: Usage,
    pub cost: Cost,
    pub source: TokenSource,
    pub note: Option<BillingNote>,
}

impl Settled {
    /// Nothing to bill.
    pub const NOTHING: Settled = Settled {
        usage: Usage {
            prompt_tokens: 0,
            completion_tokens: 0,
            reasoning_tokens: 0,
            cached_tokens: 0,
            cache_write_tokens: 0,
            cache_write_1h_tokens: 0,
        },
        cost: Cost {
            input: Nanos(0),
            output: Nanos(0),
            cache_saved: Nanos(0),
        },
        source: TokenSource::Estimated,
        note: None,
    };
}

impl Settled {
    /// The comment after a stream's end: cost = input_price + output_price, decimal strings in USD.
    pub fn cost_comment(&self) -> String {
        serde_json::json!({
            "cost": self.cost.total().to_string(),
            "input_price": self.cost.input.to_string(),
            "output_price": self.cost.output.to_string(),
            "prompt_tokens": self.usage.prompt_tokens,
            "completion_tokens": self.usage.completion_tokens,
        })
        .to_string()
    }
}

/// The progress checkpoints of a running request (see `Settlement::checkpoint`).
struct Checkpoints {
    next_at: Instant,
    /// The checkpoint at the first token was taken: a request that dies in its first second
    /// still pays its prompt and what it had streamed.
    at_first_token: bool,
    /// How much of the delivered text the counts below cover.
    counted_len: usize,
    counts: Arc<Counts>,
}

#[derive(Default)]
struct Counts {
    prompt: AtomicU64,
    completion: AtomicU64,
}

/// Owns the duty to settle one request.
pub struct Settlement {
    admission: Option<Box<Admission>>,
    pub meter: Meter,
    checkpoints: Checkpoints,
    /// The key's rate limits as this admission left them (for the `x-ratelimit-*` headers).
    pub rate: Option<Quota>,
    /// Held while the request streams to its client (the open-streams gauge).
    open_stream: Option<telemetry::OpenStream>,
}

/// The usage to bill: the upstream's if it reported one, else an estimate from what was delivered,
/// counted with the model's tokenizer on a blocking thread. Nothing delivered and nothing reported
/// means nothing is billed, unless `prompt_only`: the request was cancelled after an upstream
/// accepted it, and the prompt it processed is billed.
async fn measure(a: &Admission, meter: &Meter, prompt_only: bool) -> Settled {
    let model = || {
        meter
            .served_model_name()
            .unwrap_or(&a.requested_model)
            .to_owned()
    };
    let (usage, source) = match meter.reported() {
        Some(u) => (u, TokenSource::ProviderReported),
        None if meter.delivered().is_empty() && !prompt_only => {
            (Usage::default(), TokenSource::Estimated)
        }
        None => {
            let (model, prompt) = (model(), a.prompt.clone());
            let delivered = meter.delivered().to_owned();
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
        cost: meter.prices().unwrap_or(&a.prices).cost(&usage),
        source,
        note: prompt_only.then_some(BillingNote::PromptOnly),
    }
}

fn entry(a: &Admission, meter: &Meter, end: EndReason, settled: &Settled) -> UsageEntry {
    let duration_ms = a.started.elapsed().as_millis() as i64;
    let hold = a.hold.as_ref().map_or(Nanos::ZERO, Hold::amount);
    let cost = settled.cost.total();
    UsageEntry {
        request_id: a.request_id.clone(),
        key_id: a.key_id.clone(),
        requested_model: a.requested_model.clone(),
        served_model: meter.served_model_name().map(str::to_owned),
        provider: meter.provider().map(str::to_owned),
        attempts: meter.attempts_made(),
        upstream_status: meter.upstream_status(),
        prompt_tokens: settled.usage.prompt_tokens,
        completion_tokens: settled.usage.completion_tokens,
        reasoning_tokens: settled.usage.reasoning_tokens,
        cached_tokens: settled.usage.cached_tokens,
        cache_write_tokens: settled.usage.cache_write_tokens,
        cache_saved: settled.cost.cache_saved,
        token_source: settled.source,
        cost,
        end_reason: end,
        ttft_ms: meter
            .first_token_at()
            .map(|t| t.duration_since(a.started).as_millis() as i64),
        duration_ms,
        stream: a.stream,
        started_at: a.started_at_ms,
        finished_at: now_ms().max(a.started_at_ms),
        hold,
        over_hold: a.hold.is_some() && cost > hold,
        note: settled.note,
        status: Some(match meter.failure() {
            Some((status, _)) => *status,
            // A client gone before its answer (or its stream's first token) began is logged as
            // 499, as nginx does; one gone mid-stream had its 200.
            None if end == EndReason::Cancelled
                && (!a.stream || meter.first_token_at().is_none()) =>
            {
                499
            }
            None => 200,
        }),
        error_text: meter.failure().map(|(_, text)| text.clone()),
        dropped: meter.dropped().to_vec(),
        request_type: Some(request_type(meter, a.stream).to_owned()),
        tags: a.tags.clone(),
    }
}

/// The request type in the event log.
fn request_type(meter: &Meter, stream: bool) -> &'static str {
    if meter.is_embeddings_api() {
        return "embeddings";
    }
    if meter.is_completions_api() {
        return if stream {
            "completions.stream"
        } else {
            "completions"
        };
    }
    if meter.is_messages_api() {
        return if stream {
            "messages.stream"
        } else {
            "messages"
        };
    }
    if meter.is_gemini_api() {
        return if stream { "gemini.stream" } else { "gemini" };
    }
    match (meter.is_responses_api(), stream) {
        (false, false) => "chat",
        (false, true) => "chat.stream",
        (true, false) => "responses",
        (true, true) => "responses.stream",
    }
}

/// Everything but the ledger write: metrics, the rate limiter's correction. Returns the hold,
/// which goes to the writer with the entry.
fn close(a: &mut Admission, meter: &Meter, e: &UsageEntry) -> Option<Hold> {
    if let Some(events) = &a.events {
        events.record(e, a.key_last4.as_deref());
    }
    if let Some((otlp, span)) = a.trace.take() {
        span.end(&otlp, e, meter.response_id());
    }
    if let Some(ticket) = a.capture.take() {
        ticket.send(
            &a.request_id,
            &a.key_id,
            e.finished_at,
            a.prompt.messages(),
            meter.delivered(),
        );
    }
    if let Some(route) = meter.route() {
        telemetry::record_route_cache(route.as_str(), e.prompt_tokens, e.cached_tokens);
    }
    telemetry::record_settled(&telemetry::SettledRequest {
        model: &a.requested_model,
        provider: e.provider.as_deref(),
        end_reason: e.end_reason.as_str(),
        prompt_tokens: e.prompt_tokens,
        cached_tokens: e.cached_tokens,
        cache_write_tokens: e.cache_write_tokens,
        completion_tokens: e.completion_tokens,
        cost_nanos: e.cost.0,
        ttft: e.ttft_ms.map(|ms| Duration::from_millis(ms.max(0) as u64)),
        duration: Duration::from_millis(e.duration_ms.max(0) as u64),
        over_hold: e.over_hold,
    });
    let used = e.prompt_tokens.saturating_add(e.completion_tokens);
    if let Some(rate) = a.rate.take() {
        rate.settle(used);
    }
    if let Some(rate) = a.route_rate.take() {
        rate.settle(used);
    }
    a.hold.take()
}

impl Settlement {
    pub fn new(admission: Admission) -> Settlement {
        let next_at = admission.started + CHECKPOINT_EVERY;
        Settlement {
            admission: Some(Box::new(admission)),
            meter: Meter::default(),
            checkpoints: Checkpoints {
                next_at,
                at_first_token: false,
                counted_len: 0,
                counts: Arc::default(),
            },
            rate: None,
            open_stream: None,
        }
    }

    /// Keeps the serving route's quota reservation, settled with the request.
    pub fn route_reserved(&mut self, reservation: Reservation) {
        if let Some(a) = self.admission.as_mut() {
            a.route_rate = Some(reservation);
        }
    }

    /// With `[otlp]` on: notes the request's span (parent from the client's `traceparent`, start,
    /// request attributes), built and exported when the request is settled.
    /// The request's spend tags, for its entry.
    pub fn tagged(&mut self, tags: Vec<String>) {
        if let Some(a) = self.admission.as_mut() {
            a.tags = tags;
        }
    }

    pub fn traced(
        &mut self,
        otlp: Option<&Arc<crate::otlp::Otlp>>,
        traceparent: Option<&str>,
        req: &switchyard_wire::openai::ChatRequest,
        responses_api: bool,
    ) {
        let (Some(otlp), Some(a)) = (otlp, self.admission.as_mut()) else {
            return;
        };
        let started = std::time::SystemTime::now()
            .checked_sub(a.started.elapsed())
            .unwrap_or_else(std::time::SystemTime::now);
        let temperature = req
            .body
            .get("temperature")
            .and_then(serde_json::Value::as_f64);
        let attrs = crate::otlp::request_attributes(
            &a.requested_model,
            req.max_tokens,
            temperature,
            responses_api,
        );
        a.trace = Some((otlp.clone(), otlp.begin(traceparent, started, attrs)));
    }

    /// The id of the key the request was admitted for (empty once settled).
    pub fn key_id(&self) -> &str {
        self.admission.as_ref().map_or("", |a| a.key_id.as_str())
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
            Some(a) => measure(a, &self.meter, false).await,
            None => Settled::NOTHING,
        }
    }

    /// Journals the request's progress when the last checkpoint is a second old: the tokens so
    /// far (the upstream's report, or the prompt and the text delivered since the last checkpoint
    /// counted on the checkpoint-counting thread). Cheap when not due: one clock read.
    pub fn checkpoint(&mut self) {
        let now = Instant::now();
        let first_token = !self.checkpoints.at_first_token && self.meter.first_token_at().is_some();
        if now < self.checkpoints.next_at && !first_token {
            return;
        }
        self.checkpoints.at_first_token |= first_token;
        self.checkpoints.next_at = now + CHECKPOINT_EVERY;
        let Some(a) = &self.admission else {
            return;
        };
        let Some(journal) = a.ledger.journal().cloned() else {
            return;
        };
        let m = &self.meter;
        let prices = m.prices().filter(|p| **p != a.prices);
        let mut rec = ProgressRecord {
            id: a.request_id.clone(),
            prompt_tokens: 0,
            completion_tokens: 0,
            reasoning_tokens: 0,
            cached_tokens: 0,
            cache_write_tokens: 0,
            cache_write_1h_tokens: 0,
            at: now_ms(),
            provider: m.provider().map(str::to_owned),
            served_model: m.served_model_name().map(str::to_owned),
            input_price: prices.map(|p| p.input.to_string()),
            output_price: prices.map(|p| p.output.to_string()),
        };
        if let Some(u) = m.reported() {
            rec.prompt_tokens = u.prompt_tokens;
            rec.completion_tokens = u.completion_tokens;
            rec.reasoning_tokens = u.reasoning_tokens;
            rec.cached_tokens = u.cached_tokens;
            rec.cache_write_tokens = u.cache_write_tokens;
            rec.cache_write_1h_tokens = u.cache_write_1h_tokens;
            journal.progress(rec);
            return;
        }
        let fresh = m.delivered()[self.checkpoints.counted_len..].to_owned();
        let counted_before = self.checkpoints.counted_len;
        self.checkpoints.counted_len = m.delivered().len();
        let counts = self.checkpoints.counts.clone();
        let prompt = a.prompt.clone();
        let model = m
            .served_model_name()
            .unwrap_or(&a.requested_model)
            .to_owned();
        let queued = tokens::in_background(move || {
            let mut p = counts.prompt.load(Ordering::Relaxed);
            if p == 0 {
                p = tokens::prompt_tokens(&model, &prompt.prompt());
                counts.prompt.store(p, Ordering::Relaxed);
            }
            let c = tokens::count(&model, &fresh);
            rec.prompt_tokens = p;
            rec.completion_tokens = counts.completion.fetch_add(c, Ordering::Relaxed) + c;
            journal.progress(rec);
        });
        if !queued {
            // The counting thread is behind: this text is counted with the next checkpoint.
            self.checkpoints.counted_len = counted_before;
        }
    }

    /// Writes the ledger entry now and waits until it is durable (committed, or journaled when
    /// the database will not write); with `durability = "batched"` it only hands it to the
    /// writer. Settling twice is impossible: the first call consumes the
    /// admission, and only once the writer has room for the entry, so a caller dropped while
    /// waiting leaves the guard to settle on drop.
    pub async fn settle(
        &mut self,
        end: EndReason,
        settled: &Settled,
    ) -> Result<Durable, LedgerError> {
        let Some(a) = &self.admission else {
            return Ok(Durable::Database);
        };
        let slot = a.ledger.settle_slot().await?;
        let Some(mut a) = self.admission.take() else {
            return Ok(Durable::Database);
        };
        let e = entry(&a, &self.meter, end, settled);
        let hold = close(&mut a, &self.meter, &e);
        if a.ledger.durability() == crate::store::ledger::Durability::Batched {
            slot.send_queued(e, hold);
            return Ok(Durable::Queued);
        }
        slot.send(e, hold).durable().await
    }
}

impl Drop for Settlement {
    fn drop(&mut self) {
        let Some(a) = self.admission.take() else {
            return;
        };
        // Dropped before settling: the client went away (or the task died). Bill what was
        // delivered, or the prompt if an upstream had accepted the request, off this thread:
        // drop must not block the runtime.
        let meter = std::mem::take(&mut self.meter);
        let prompt_only = meter.is_accepted() && meter.first_token_at().is_none();
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => {
                handle.spawn(async move {
                    let mut a = a;
                    let settled = measure(&a, &meter, prompt_only).await;
                    let e = entry(&a, &meter, EndReason::Cancelled, &settled);
                    let hold = close(&mut a, &meter, &e);
                    a.ledger.settle_detached(e, hold);
                });
            }
            Err(_) => {
                tracing::error!(request_id = %a.request_id, "no runtime to settle a dropped request")
            }
        }
    }
}
