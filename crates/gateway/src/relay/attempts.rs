//! Trying a model's routes until one answers: translate the request into the route's dialect, send
//! it, wait for the first upstream token, and on a failure of the route move on. Failover happens
//! here and only here, always before any content reaches the client (a stream that committed early,
//! `relay::early_commit`, has sent keep-alive comments only). Every upstream request carries the
//! `x-request-id` its client sees. What counts as a failure of
//! the route, and what as the upstream refusing the request itself (passed to the caller as a 400,
//! no other route tried, nothing held against the route), is `providers::cause`. Every body read
//! here is bounded by the provider's limits; past them, the route failed.
//!
//! The order: the healthy candidates from `routing` (breakers), each once; then, while attempts
//! (`routing.max_attempts`) and the per-request budget (`routing.retry_budget_ms`) remain, the
//! retryable ones again after a jittered exponential backoff, never before a `retry-after` the
//! upstream asked for (bounded by `routing.max_retry_after_ms`). An upstream 401 re-resolves that
//! provider's credential once and retries the same route at once; a 401 after that fails over.
//! `auto-fast` may hedge: when its first route has not produced a token after `hedge_after_ms`,
//! the second starts too; the first to answer is kept and the other is dropped (cancelled).

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::time::Instant;

use bytes::Bytes;
use futures_util::StreamExt;
use serde_json::{json, Value};
use switchyard_wire::embeddings::EmbeddingsRequest;
use switchyard_wire::openai::{ChatRequest, ChunkView, NativeDialect, RequestError};
use switchyard_wire::sse;
use switchyard_wire::{anthropic, gemini};

use crate::config::{AutoKind, ModelConfig, ProviderKind, Route};
use crate::gateway::Gateway;
use crate::providers::cause::{Blame, Cause, ErrorText, Refusal};
use crate::providers::{read_bounded, without_url, Endpoint, UpstreamError};
use crate::relay::admission::ANTHROPIC_DEFAULT_MAX_TOKENS;
use crate::relay::affinity;
use crate::relay::settlement::{Settled, Settlement};
use crate::relay::ByteStream;
use crate::relay::{Rejected, RelayError, Served};
use crate::routing::{Candidate, HealthKey};
use crate::store::ledger::EndReason;
use crate::telemetry::{self, AttemptOutcome};

/// An upstream stream that has produced its first token (still in `decoder`, not yet consumed).
pub(crate) struct UpstreamStream {
    pub bytes: ByteStream,
    pub decoder: sse::Decoder,
    /// The dialect of the events in `bytes`.
    pub dialect: ProviderKind,
    pub idle_timeout: Duration,
    /// The route's total time limit, counted from the start of the attempt.
    pub deadline: Instant,
    /// The model name the upstream reported (Anthropic's `message.model`), or the route's.
    pub model: String,
    /// Where the stream's outcome is reported for the route's health (`routing`).
    pub health: HealthKey,
    /// The route speaks the client's own dialect (`ChatRequest::native`): it was sent the
    /// client's body, and its events go to the client as they came.
    pub native: bool,
}

/// What a successful attempt produced. Built once per request and taken apart at once, so the
/// size of the stream variant does not matter.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Opened {
    /// A complete non-streamed answer, as an OpenAI chat completion body; `native` is the
    /// upstream's own answer when a route of the client's own dialect answered
    /// (`ChatRequest::native`), which its client gets as it came.
    Json {
        body: Bytes,
        native: Option<Bytes>,
        served: Served,
    },
    Stream {
        upstream: UpstreamStream,
        served: Served,
    },
}

/// What one route produced.
#[allow(clippy::large_enum_variant)]
enum Answer {
    /// A chat completion body, and the upstream's own Messages object (see `Opened::Json`).
    Json(Bytes, Option<Bytes>),
    Stream(UpstreamStream),
}

/// The outcome of one route: the answer or why it failed, the number of requests sent (2 when
/// the credential was refreshed), and the time to first token.
struct Tried {
    result: Result<Answer, UpstreamError>,
    sends: u32,
    ttft: Duration,
}

/// What is asked of every route: a chat request (in the route's dialect), or an embeddings
/// request (OpenAI-dialect routes only; the others are skipped).
#[derive(Clone, Copy)]
pub(crate) enum Job<'a> {
    Chat(&'a ChatRequest),
    Embeddings(&'a EmbeddingsRequest),
}

impl Job<'_> {
    fn stream(self) -> bool {
        match self {
            Job::Chat(req) => req.stream,
            Job::Embeddings(_) => false,
        }
    }

    fn endpoint(self) -> Endpoint {
        match self {
            Job::Chat(_) => Endpoint::Chat,
            Job::Embeddings(_) => Endpoint::Embeddings,
        }
    }
}

/// Tries `model`'s routes for `req`; every upstream request carries `x-request-id: request_id`
/// (the id the client sees on its response). On success the settlement knows the provider, the served
/// model, its prices and the number of attempts; on failure it has been settled at no cost.
pub(crate) async fn open(
    gw: &Gateway,
    model: &ModelConfig,
    req: &ChatRequest,
    settlement: &mut Settlement,
    started: Instant,
    request_id: &str,
) -> Result<Opened, RelayError> {
    open_job(gw, model, Job::Chat(req), settlement, started, request_id).await
}

/// `open` for an embeddings request: the answer is always `Opened::Json`, the upstream's
/// embeddings list.
pub(crate) async fn open_embeddings(
    gw: &Gateway,
    model: &ModelConfig,
    req: &EmbeddingsRequest,
    settlement: &mut Settlement,
    started: Instant,
    request_id: &str,
) -> Result<Opened, RelayError> {
    open_job(
        gw,
        model,
        Job::Embeddings(req),
        settlement,
        started,
        request_id,
    )
    .await
}

async fn open_job(
    gw: &Gateway,
    model: &ModelConfig,
    job: Job<'_>,
    settlement: &mut Settlement,
    started: Instant,
    request_id: &str,
) -> Result<Opened, RelayError> {
    let result = open_inner(gw, model, job, settlement, started, request_id).await;
    if let Err(e) = &result {
        settlement.meter.failed(e.status(), &e.to_string());
    }
    match &result {
        Err(RelayError::UpstreamTimeout) => {
            settle_unserved(settlement, EndReason::UpstreamTimeout).await
        }
        Err(_) => fail_settled(settlement).await,
        Ok(_) => {}
    }
    result
}

async fn open_inner(
    gw: &Gateway,
    model: &ModelConfig,
    job: Job<'_>,
    settlement: &mut Settlement,
    started: Instant,
    request_id: &str,
) -> Result<Opened, RelayError> {
    let policy = &gw.config.routing;
    let accepted = settlement.meter.accepted_flag();
    let accepted = accepted.as_ref();
    let caller = settlement.key_id().to_owned();
    let caller = caller.as_str();
    let mut candidates =
        gw.routing
            .candidates(model, caller)
            .map_err(|e| RelayError::NoHealthyUpstream {
                retry_after: e.retry_after,
            })?;
    // A conversation of a balanced model goes back to the route that holds its prompt cache,
    // while it is healthy (a failover model's order already keeps it on one route).
    let conversation = match job {
        Job::Chat(req)
            if model.affinity
                && model.strategy == crate::config::Strategy::Balance
                && candidates.len() > 1 =>
        {
            Some(affinity::conversation(req, caller, &model.name))
        }
        _ => None,
    };
    if let Some(c) = &conversation {
        if let Some(route) = affinity::bound(gw, c).await {
            crate::routing::prefer(&mut candidates, &route);
        }
    }
    let won = |cand: &Candidate| {
        if let Some(c) = &conversation {
            affinity::bind(gw, c, cand.route.key());
        }
    };
    let n = candidates.len();
    let max_attempts = policy.max_attempts.unwrap_or(n as u32 + 1);
    let mut turns = Turns::new(n, started, policy);
    let mut attempts = 0u32;
    let mut last_error: Option<(UpstreamError, ProviderKind)> = None;

    if let Some(AutoKind::Fastest {
        hedge_after: Some(delay),
    }) = model.auto
    {
        let both_carry = n >= 2
            && can_carry(gw, &candidates[0].route, job)
            && can_carry(gw, &candidates[1].route, job);
        if both_carry && max_attempts >= 2 {
            let candidates = &candidates;
            let run = |i: usize| async move {
                let route = &candidates[i].route;
                let body = upstream_body(gw, route, job)?;
                Ok(attempt(gw, route, body, job, accepted, caller, request_id).await)
            };
            let hedged = hedge(run, delay).await?;
            if let Some((i, elapsed)) = hedged.slower {
                gw.routing
                    .record_slower_than(candidates[i].route.key(), elapsed);
            }
            attempts += hedged.sends;
            for (i, outcome) in hedged.failures {
                settlement
                    .meter
                    .upstream_answered(outcome.upstream_status());
                if !outcome.is_retryable() {
                    settlement.meter.attempts(attempts);
                    return Err(final_error(outcome, kind_of(gw, &candidates[i].route)));
                }
                note_failure(
                    gw,
                    policy,
                    &candidates[i],
                    caller,
                    &outcome,
                    &mut turns.retry_at[i],
                );
                last_error = Some((outcome, kind_of(gw, &candidates[i].route)));
            }
            if let Some((i, answer, ttft)) = hedged.winner {
                won(&candidates[i]);
                return Ok(opened(
                    gw,
                    settlement,
                    &candidates[i],
                    caller,
                    (job, answer),
                    ttft,
                    attempts,
                ));
            }
            turns.next = 2;
        }
    }

    while attempts < max_attempts {
        // An Anthropic or Gemini route has no embeddings API, and a request only the client's
        // own dialect carries goes only to such routes: not a failure of the route.
        let usable = |i: usize| {
            let route = &candidates[i].route;
            serves(gw, route, job.endpoint()) && can_carry(gw, route, job)
        };
        let Some(i) = turns.next(policy, attempts > 0, usable).await else {
            break;
        };
        let cand = &candidates[i];
        // The route's own quota (its provider's `rpm`/`tpm`): past it the route is skipped
        // until it refills, without counting against its health.
        let quota = match route_quota(gw, &cand.route, model, job).await {
            Ok(q) => q,
            Err(wait) => {
                turns.retry_at[i] = Some(Instant::now() + wait);
                if last_error.is_none() {
                    let e = UpstreamError::Status {
                        status: 429,
                        body: Bytes::new(),
                        retry_after: Some(wait),
                    };
                    last_error = Some((e, kind_of(gw, &cand.route)));
                }
                continue;
            }
        };
        let body = upstream_body(gw, &cand.route, job)?;
        let tried = attempt(gw, &cand.route, body, job, accepted, caller, request_id).await;
        attempts += tried.sends;
        let quota = match (&tried.result, quota) {
            (Ok(_), Some(q)) => Some(q),
            (Err(_), Some(q)) => {
                q.settle(0);
                None
            }
            (_, None) => None,
        };
        match tried.result {
            Ok(answer) => {
                if let Some(q) = quota {
                    settlement.route_reserved(q);
                }
                won(cand);
                return Ok(opened(
                    gw,
                    settlement,
                    cand,
                    caller,
                    (job, answer),
                    tried.ttft,
                    attempts,
                ));
            }
            Err(e) if !e.is_retryable() => {
                settlement.meter.upstream_answered(e.upstream_status());
                settlement.meter.attempts(attempts);
                return Err(final_error(e, kind_of(gw, &cand.route)));
            }
            Err(e) => {
                settlement.meter.upstream_answered(e.upstream_status());
                tracing::debug!(route = %cand.route.key(), error = %e, "route failed, trying the next");
                note_failure(gw, policy, cand, caller, &e, &mut turns.retry_at[i]);
                last_error = Some((e, kind_of(gw, &cand.route)));
            }
        }
    }
    settlement.meter.attempts(attempts);
    Err(match last_error {
        Some((e, kind)) => final_error(e, kind),
        None if job.endpoint() == Endpoint::Embeddings => RelayError::UpstreamFailed(
            "no route of this model serves embeddings (Anthropic has no embeddings API)".into(),
        ),
        None => RelayError::UpstreamFailed("no provider is configured for this model".into()),
    })
}

/// Takes `route`'s share of its provider's own quota (`rpm`/`tpm` in the provider's config) for
/// `req`: the token bound is the request's worst case over `model`'s routes, as admission
/// reserved it. `Err` is how long until it would fit.
async fn route_quota(
    gw: &Gateway,
    route: &Route,
    model: &ModelConfig,
    job: Job<'_>,
) -> Result<Option<crate::limits::Reservation>, Duration> {
    let Some(p) = gw.config.providers.get(route.provider()) else {
        return Ok(None);
    };
    if p.rpm.is_none() && p.tpm.is_none() {
        return Ok(None);
    }
    let tokens = if p.tpm.is_some() {
        match job {
            Job::Chat(req) => {
                crate::relay::admission::worst_case(&gw.config.providers, model, req).tokens
            }
            Job::Embeddings(req) => req.token_bound,
        }
    } else {
        0
    };
    gw.limits
        .reserve_route(route.provider(), p.rpm, p.tpm, tokens)
        .await
}

/// Records a failure of the route on its health (for `caller`) and decides when it may be
/// retried. A credential that cannot be resolved takes the route down at once.
fn note_failure(
    gw: &Gateway,
    policy: &crate::config::RoutingConfig,
    cand: &Candidate,
    caller: &str,
    e: &UpstreamError,
    retry_at: &mut Option<Instant>,
) {
    let why = e.to_string();
    match (e, e.cause()) {
        (UpstreamError::Credential(_), _) => gw.routing.record_down(cand.route.key(), &why),
        (_, Cause::Route(blame)) => {
            let key = HealthKey {
                route: cand.route.key().clone(),
                caller: caller.to_owned(),
            };
            gw.routing.record_failure(&key, blame, &why);
        }
        (_, Cause::Request(_)) => {}
    }
    *retry_at = retry_after_failure(policy, e);
}

/// When a route that failed with `e` may be tried again: at once (after its backoff), not before
/// the `retry-after` it asked for, or never (`None`).
fn retry_after_failure(
    policy: &crate::config::RoutingConfig,
    e: &UpstreamError,
) -> Option<Instant> {
    match e {
        // The credential was refreshed and still refused, the route has no such model, or the
        // answer is too large for the limits: retrying the same route cannot help.
        UpstreamError::Status {
            status: 401 | 403 | 404 | 413,
            ..
        }
        | UpstreamError::Credential(_)
        | UpstreamError::TooLarge(_) => None,
        UpstreamError::Status {
            retry_after: Some(after),
            ..
        } => (*after <= policy.max_retry_after).then(|| Instant::now() + *after),
        _ => Some(Instant::now()),
    }
}

/// Whose turn it is: each candidate once, in order, then the retryable ones again in rounds,
/// each after its backoff and never before the `retry-after` it asked for, while the per-request
/// budget (`routing.retry_budget_ms`) lasts. The waiting happens here, on tokio's clock.
struct Turns {
    /// Per candidate: no retry before this instant; `None` once it must not be retried at all.
    retry_at: Vec<Option<Instant>>,
    /// Position in the endless cycle over the candidates: candidate `p % n`, round `p / n`.
    next: usize,
    started: Instant,
    budget_end: Instant,
    /// Picks a backoff in milliseconds from its jitter range (random; a test picks an end).
    jitter: fn(std::ops::RangeInclusive<u64>) -> u64,
}

impl Turns {
    /// `n` candidates, for a request that began at `started`.
    fn new(n: usize, started: Instant, policy: &crate::config::RoutingConfig) -> Turns {
        Turns {
            retry_at: vec![Some(started); n],
            next: 0,
            started,
            budget_end: started + policy.retry_budget,
            jitter: |range| rand::Rng::gen_range(&mut rand::thread_rng(), range),
        }
    }

    /// The next candidate to try, once its turn has come (its backoff is waited here), or `None`
    /// when none is left or the budget is spent. A candidate `usable` refuses is passed over and
    /// not come back to. `tried`: an attempt was made already (the first always starts).
    async fn next(
        &mut self,
        policy: &crate::config::RoutingConfig,
        tried: bool,
        mut usable: impl FnMut(usize) -> bool,
    ) -> Option<usize> {
        let n = self.retry_at.len();
        loop {
            let p = (self.next..self.next + n).find(|&p| self.retry_at[p % n].is_some())?;
            self.next = p + 1;
            let (i, round) = (p % n, p / n);
            if !usable(i) {
                self.retry_at[i] = None;
                continue;
            }
            if round > 0 {
                let wait_until = self
                    .backoff_until(policy, round as u32)
                    .max(self.retry_at[i].unwrap_or(self.started));
                if wait_until > self.budget_end {
                    self.retry_at[i] = None;
                    continue;
                }
                tokio::time::sleep_until(wait_until).await;
            } else if tried && Instant::now() >= self.budget_end {
                return None;
            }
            return Some(i);
        }
    }

    /// When a route may be revisited in round `round` (1 = the second pass): the base backoff
    /// doubled per round, capped, with full jitter over its upper half.
    fn backoff_until(&self, policy: &crate::config::RoutingConfig, round: u32) -> Instant {
        let base = policy.backoff_base.as_millis() as u64;
        let cap = policy.backoff_max.as_millis() as u64;
        let full = base
            .saturating_mul(1u64 << round.saturating_sub(1).min(20))
            .min(cap);
        let jittered = if full > 1 {
            (self.jitter)(full / 2..=full)
        } else {
            full
        };
        Instant::now() + Duration::from_millis(jittered)
    }
}

/// Whether `route`'s provider can serve `endpoint`.
fn serves(gw: &Gateway, route: &Route, endpoint: Endpoint) -> bool {
    gw.providers
        .get(route.provider())
        .is_some_and(|p| p.serves(endpoint))
}

/// Whether `route` can carry the request: any route can, but one that holds what only its own
/// dialect carries (`NativeBody::native_only`) goes only to routes of that dialect.
fn can_carry(gw: &Gateway, route: &Route, job: Job<'_>) -> bool {
    match job {
        Job::Chat(req) if req.native.as_ref().is_some_and(|n| n.native_only) => {
            is_native(gw, route, req)
        }
        _ => true,
    }
}

fn kind_of(gw: &Gateway, route: &Route) -> ProviderKind {
    gw.providers
        .get(route.provider())
        .map_or(ProviderKind::OpenAi, |p| p.kind())
}

/// Whether `route` speaks the dialect `req` came in, so it is sent the client's own body.
fn is_native(gw: &Gateway, route: &Route, req: &ChatRequest) -> bool {
    let Some(native) = &req.native else {
        return false;
    };
    let native_responses = gw
        .providers
        .get(route.provider())
        .is_some_and(|p| p.config.native_responses);
    crate::relay::speaks_natively(kind_of(gw, route), native_responses, native.dialect)
}

/// Whether `route` is sent a Responses request as it came, to its `/responses` endpoint.
fn is_native_responses(gw: &Gateway, route: &Route, job: Job<'_>) -> bool {
    matches!(job, Job::Chat(req) if req.native.as_ref().is_some_and(|n| n.dialect == NativeDialect::Responses)
        && is_native(gw, route, req))
}

/// Records the winner on the settlement and the route's health, and builds what `open` returns.
/// A route that does not speak the client's own dialect was sent a translation: what that left
/// out is reported (`Served::dropped`, and a log line).
fn opened(
    gw: &Gateway,
    settlement: &mut Settlement,
    cand: &Candidate,
    caller: &str,
    (job, answer): (Job<'_>, Answer),
    ttft: Duration,
    attempts: u32,
) -> Opened {
    let key = HealthKey {
        route: cand.route.key().clone(),
        caller: caller.to_owned(),
    };
    gw.routing.record_success(&key, Some(ttft));
    settlement.meter.upstream_answered(Some(200));
    let dropped = match job {
        Job::Chat(req) if !is_native(gw, &cand.route, req) => req
            .native
            .as_ref()
            .map(|n| n.dropped.clone())
            .unwrap_or_default(),
        _ => Vec::new(),
    };
    settlement.meter.dropped_parts(&dropped);
    if !dropped.is_empty() {
        tracing::info!(
            route = %cand.route.key(),
            dropped = %dropped.join(","),
            "the route's dialect cannot carry parts of the request; served without them"
        );
    }
    let served = Served {
        route: Some(cand.route.key().clone()),
        attempts,
        rate: settlement.rate,
        dropped,
    };
    settlement
        .meter
        .served(cand.route.key(), cand.route.prices.clone(), attempts);
    match answer {
        Answer::Json(body, native) => Opened::Json {
            body,
            native,
            served,
        },
        Answer::Stream(upstream) => {
            settlement.stream_opened();
            Opened::Stream { upstream, served }
        }
    }
}

/// The outcome of a hedged pair of attempts.
struct Hedged {
    /// The candidate index that answered first, its answer and its time to first token.
    winner: Option<(usize, Answer, Duration)>,
    failures: Vec<(usize, UpstreamError)>,
    sends: u32,
    /// The candidate that lost the race while still waiting, and how long it had waited by then
    /// (for its health: `routing::record_slower_than`).
    slower: Option<(usize, Duration)>,
}

/// Runs candidate 0 (`run(0)`); if it has not answered after `delay`, runs candidate 1 as well
/// and keeps whichever answers first. The loser is dropped, which closes its upstream connection.
/// A first candidate that fails retryably before `delay` is followed by the second at once.
async fn hedge<F, Fut>(run: F, delay: Duration) -> Result<Hedged, RelayError>
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = Result<Tried, RelayError>>,
{
    let mut out = Hedged {
        winner: None,
        failures: Vec::new(),
        sends: 0,
        slower: None,
    };
    let a = run(0);
    tokio::pin!(a);
    let early = tokio::select! {
        t = &mut a => Some(t?),
        () = tokio::time::sleep(delay) => None,
    };
    let take = |i: usize, t: Tried, out: &mut Hedged| -> bool {
        out.sends += t.sends;
        match t.result {
            Ok(answer) => {
                out.winner = Some((i, answer, t.ttft));
                true
            }
            Err(e) => {
                out.failures.push((i, e));
                false
            }
        }
    };
    if let Some(t) = early {
        if take(0, t, &mut out) || !out.failures.iter().all(|(_, e)| e.is_retryable()) {
            return Ok(out);
        }
        take(1, run(1).await?, &mut out);
        return Ok(out);
    }
    let hedge_started = Instant::now();
    let b = run(1);
    tokio::pin!(b);
    tokio::select! {
        t = &mut a => {
            if !take(0, t?, &mut out) {
                take(1, b.await?, &mut out);
            } else {
                out.sends += 1;
                out.slower = Some((1, hedge_started.elapsed()));
            }
        }
        t = &mut b => {
            if !take(1, t?, &mut out) {
                take(0, a.await?, &mut out);
            } else {
                out.sends += 1;
                out.slower = Some((0, delay + hedge_started.elapsed()));
            }
        }
    }
    Ok(out)
}

/// The request body in the route's dialect. A request Anthropic cannot express is the caller's
/// error (400, naming the field).
fn upstream_body(gw: &Gateway, route: &Route, job: Job<'_>) -> Result<Vec<u8>, RelayError> {
    let req = match job {
        Job::Chat(req) => req,
        Job::Embeddings(req) => return Ok(req.upstream_body(route.upstream_model())),
    };
    if let Some(original) = req.native.as_ref().filter(|_| is_native(gw, route, req)) {
        return Ok(match original.dialect {
            // Google names the model in the URL; its body has no model to replace.
            NativeDialect::Gemini => gemini::inbound_passthrough_body(&original.body),
            _ => anthropic::inbound::passthrough_body(&original.body, route.upstream_model()),
        });
    }
    match kind_of(gw, route) {
        ProviderKind::OpenAi | ProviderKind::DeepSeek if req.native.is_some() => {
            let reasoning = gw
                .config
                .models
                .get(&route.model)
                .is_some_and(|m| m.reasoning);
            Ok(req.translated_upstream_body(route.upstream_model(), reasoning))
        }
        ProviderKind::OpenAi | ProviderKind::DeepSeek => {
            Ok(req.upstream_body(route.upstream_model()))
        }
        ProviderKind::Anthropic => {
            let body = Value::Object(req.body.clone());
            let max = u32::try_from(ANTHROPIC_DEFAULT_MAX_TOKENS).unwrap_or(u32::MAX);
            let out = anthropic::chat_request_to_messages(&body, route.upstream_model(), max)
                .map_err(|e| RelayError::BadRequest(RequestError::new(e.param, e.message)))?;
            Ok(switchyard_wire::compact_json::to_vec(&out))
        }
        ProviderKind::Gemini => {
            let body = Value::Object(req.body.clone());
            let max = u32::try_from(ANTHROPIC_DEFAULT_MAX_TOKENS).unwrap_or(u32::MAX);
            let out = gemini::chat_request_to_gemini(&body, max)
                .map_err(|e| RelayError::BadRequest(RequestError::new(e.param, e.message)))?;
            Ok(switchyard_wire::compact_json::to_vec(&out))
        }
    }
}

/// One route (see `try_route`), counted in the upstream-attempt metric by its outcome.
async fn attempt(
    gw: &Gateway,
    route: &Route,
    body: Vec<u8>,
    job: Job<'_>,
    accepted: &AtomicBool,
    caller: &str,
    request_id: &str,
) -> Tried {
    let tried = try_route(gw, route, body, job, accepted, caller, request_id).await;
    let outcome = match &tried.result {
        Ok(_) => AttemptOutcome::Ok,
        Err(e) if e.is_retryable() => AttemptOutcome::Retryable,
        Err(_) => AttemptOutcome::Rejected,
    };
    telemetry::record_attempt(route.provider(), outcome);
    tried
}

/// One route: send, refresh the credential once on a 401, and wait for the answer (non-stream) or
/// the first token (stream), within the route's time limits. `accepted` is set once the upstream
/// answered with success headers (from then on it has processed, or is processing, the prompt).
async fn try_route(
    gw: &Gateway,
    route: &Route,
    body: Vec<u8>,
    job: Job<'_>,
    accepted: &AtomicBool,
    caller: &str,
    request_id: &str,
) -> Tried {
    let stream = job.stream();
    let started = Instant::now();
    let mut sends = 0;
    let native_responses = is_native_responses(gw, route, job);
    let endpoint = if native_responses {
        Endpoint::Responses
    } else {
        job.endpoint()
    };
    let Some(provider) = gw.providers.get(route.provider()) else {
        return Tried {
            result: Err(UpstreamError::Connect(
                "the provider is not configured".into(),
            )),
            sends: 0,
            ttft: Duration::ZERO,
        };
    };
    let t = &route.timeouts;
    let client = gw.providers.client_for(t.connect);
    let total_by = started + t.total;
    // A stream must show its first token by the first-token deadline; a whole answer by the total.
    let answer_by = if stream {
        (started + t.first_token).min(total_by)
    } else {
        total_by
    };
    let deadline = answer_by;
    // Sent again after a credential refresh: shared, not copied (a prompt can be megabytes).
    let body = Bytes::from(body);
    let mut refreshed = false;
    let resp = loop {
        let generation = provider.credential_generation();
        sends += 1;
        match provider
            .send_to(
                client,
                endpoint,
                route.upstream_model(),
                body.clone(),
                stream,
                deadline,
                request_id,
            )
            .await
        {
            Err(refused @ UpstreamError::Status { .. })
                if !refreshed
                    && provider.config.api_key.is_some()
                    && matches!(&refused, UpstreamError::Status { status, body, .. }
                        if credential_refused(provider.kind(), *status, body)) =>
            {
                refreshed = true;
                match provider.refresh_after_rejection(generation).await {
                    Ok(true) => {}
                    Ok(false) => break Err(refused),
                    Err(e) => {
                        return Tried {
                            result: Err(e),
                            sends,
                            ttft: started.elapsed(),
                        }
                    }
                }
            }
            other => break other,
        }
    };
    let dialect = provider.kind();
    let limits = provider.config.limits;
    if resp.is_ok() {
        accepted.store(true, Ordering::Relaxed);
    }
    let result = match resp {
        Err(e) => Err(e),
        Ok(resp) if job.endpoint() == Endpoint::Embeddings => {
            embeddings_answer(resp, deadline, limits.response).await
        }
        Ok(resp) if !stream && native_responses => {
            whole_response(resp, deadline, limits.response).await
        }
        Ok(resp) if !stream => {
            let native = matches!(job, Job::Chat(req) if is_native(gw, route, req));
            whole_answer(resp, dialect, native, deadline, limits.response).await
        }
        Ok(resp) => {
            let mut bytes: ByteStream =
                Box::pin(resp.bytes_stream().map(|r| r.map_err(|e| without_url(&e))));
            let mut decoder = sse::Decoder::with_limits(limits.sse);
            let events = if native_responses {
                Events::Responses
            } else {
                Events::Of(dialect)
            };
            match first_token(&mut bytes, &mut decoder, events, deadline).await {
                Ok(upstream_model) => Ok(Answer::Stream(UpstreamStream {
                    bytes,
                    decoder,
                    dialect,
                    idle_timeout: t.idle,
                    deadline: total_by,
                    model: upstream_model.unwrap_or_else(|| route.upstream_model().to_owned()),
                    health: HealthKey {
                        route: route.id.clone(),
                        caller: caller.to_owned(),
                    },
                    native: matches!(job, Job::Chat(req) if is_native(gw, route, req)),
                })),
                Err(e) => Err(e),
            }
        }
    };
    Tried {
        result,
        sends,
        ttft: started.elapsed(),
    }
}

/// Whether an error status says the credential was refused: 401, or Gemini's 400 with the reason
/// `API_KEY_INVALID` (Google answers a bad key that way).
fn credential_refused(kind: ProviderKind, status: u16, body: &[u8]) -> bool {
    status == 401
        || (kind == ProviderKind::Gemini
            && status == 400
            && ErrorText::parse(body).code.as_deref() == Some("API_KEY_INVALID"))
}

/// Reads a non-streamed answer (at most `limit` bytes) and returns it as an OpenAI chat
/// completion body, with the Anthropic body itself when `native` (a Messages request). A body
/// that is cut off, too large or not a completion fails the route (another may answer).
async fn whole_answer(
    resp: reqwest::Response,
    dialect: ProviderKind,
    native: bool,
    deadline: tokio::time::Instant,
    limit: usize,
) -> Result<Answer, UpstreamError> {
    let body = read_bounded(resp, limit, deadline, "answer").await?;
    let not_completion = || UpstreamError::Body("the upstream's answer is not a completion".into());
    let parse = || serde_json::from_slice::<Value>(&body).map_err(|_| not_completion());
    match dialect {
        ProviderKind::OpenAi | ProviderKind::DeepSeek => {
            // Checked without building a tree: the relay parses the body once, after this.
            #[derive(serde::Deserialize)]
            struct Completion {
                #[allow(dead_code)]
                choices: Vec<serde::de::IgnoredAny>,
            }
            match serde_json::from_slice::<Completion>(&body) {
                Ok(_) => Ok(Answer::Json(body, None)),
                Err(_) => Err(not_completion()),
            }
        }
        ProviderKind::Anthropic => {
            let v = parse()?;
            let model = v.get("model").and_then(Value::as_str).unwrap_or_default();
            let id = crate::auth::new_id("chatcmpl-", 24);
            let chat =
                anthropic::message_to_chat_completion(&v, &id, model, crate::clock::unix_now())
                    .map_err(|_| not_completion())?;
            Ok(Answer::Json(
                Bytes::from(serde_json::to_vec(&chat).unwrap_or_default()),
                native.then_some(body),
            ))
        }
        ProviderKind::Gemini => {
            let v = parse()?;
            let model = v
                .get("modelVersion")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let id = crate::auth::new_id("chatcmpl-", 24);
            let chat =
                gemini::response_to_chat_completion(&v, &id, model, crate::clock::unix_now())
                    .map_err(|_| not_completion())?;
            Ok(Answer::Json(
                Bytes::from(serde_json::to_vec(&chat).unwrap_or_default()),
                native.then_some(body),
            ))
        }
    }
}

/// Reads an embeddings answer (at most `limit` bytes): a `list` whose `data` is an array. Anything
/// else fails the route.
async fn embeddings_answer(
    resp: reqwest::Response,
    deadline: tokio::time::Instant,
    limit: usize,
) -> Result<Answer, UpstreamError> {
    let body = read_bounded(resp, limit, deadline, "answer").await?;
    let v: Value = serde_json::from_slice(&body).map_err(|_| {
        UpstreamError::Body("the upstream's answer is not an embeddings list".into())
    })?;
    if v.get("data").is_some_and(Value::is_array) {
        Ok(Answer::Json(body, None))
    } else {
        Err(UpstreamError::Body(
            "the upstream's answer is not an embeddings list".into(),
        ))
    }
}

/// A request that failed before anything was delivered is recorded, at no cost.
pub(crate) async fn fail_settled(settlement: &mut Settlement) {
    settle_unserved(settlement, EndReason::Error).await
}

/// Records a request that ended before anything was delivered, at no cost.
async fn settle_unserved(settlement: &mut Settlement, end: EndReason) {
    if let Err(e) = settlement.settle(end, &Settled::NOTHING).await {
        tracing::error!(error = %e, "the entry of an unserved request could not be written");
    }
}

/// What the first events of a stream say.
enum FirstEvent {
    /// Not a token yet (Anthropic `message_start`, `ping`, a block start): keep reading.
    Preamble(Option<String>),
    /// The first token (or the end of an empty answer).
    Token,
}

/// What a stream's events are: a provider's chat dialect, or OpenAI's Responses events.
#[derive(Debug, Clone, Copy)]
enum Events {
    Of(ProviderKind),
    Responses,
}

/// Reads until the first token and checks that what came before it is well formed and within the
/// limits `decoder` was made with. The events stay in `decoder` for the stream to forward. Returns
/// the model name Anthropic's `message_start` (or a Responses `response.created`) gave.
async fn first_token(
    upstream: &mut ByteStream,
    decoder: &mut sse::Decoder,
    events: Events,
    deadline: tokio::time::Instant,
) -> Result<Option<String>, UpstreamError> {
    let mut probe = sse::Decoder::with_limits(decoder.limits());
    let mut model = None;
    loop {
        while let Some(event) = probe
            .try_next_event()
            .map_err(|e| UpstreamError::TooLarge(format!("the upstream's stream: {e}")))?
        {
            let first = match events {
                Events::Of(dialect) => classify_first(&event, dialect)?,
                Events::Responses => classify_first_response(&event)?,
            };
            match first {
                FirstEvent::Token => return Ok(model),
                FirstEvent::Preamble(m) => model = m.or(model),
            }
        }
        match tokio::time::timeout_at(deadline, upstream.next()).await {
            Err(_) => return Err(UpstreamError::Timeout),
            Ok(None) => {
                return Err(UpstreamError::Body(
                    "the stream ended before any chunk".into(),
                ))
            }
            Ok(Some(Err(e))) => return Err(UpstreamError::Body(e)),
            Ok(Some(Ok(bytes))) => {
                decoder.push(&bytes);
                probe.push(&bytes);
            }
        }
    }
}

/// A Responses stream's first events: `response.created`/`in_progress`/`queued` are preamble
/// (the first names the model); `error` and `response.failed` are the route's failure, with the
/// upstream's error as the body; anything else is the answer under way.
fn classify_first_response(event: &sse::Event) -> Result<FirstEvent, UpstreamError> {
    let v: Value = serde_json::from_slice(&event.data)
        .map_err(|_| UpstreamError::Body("the stream began with a malformed event".into()))?;
    match v.get("type").and_then(Value::as_str).unwrap_or_default() {
        "response.created" | "response.in_progress" | "response.queued" => {
            Ok(FirstEvent::Preamble(
                v.pointer("/response/model")
                    .and_then(Value::as_str)
                    .map(str::to_owned),
            ))
        }
        kind @ ("error" | "response.failed") => {
            let error = if kind == "error" {
                v.get("error").cloned().unwrap_or(v)
            } else {
                v.pointer("/response/error").cloned().unwrap_or(Value::Null)
            };
            let status = match error.get("code").and_then(Value::as_str) {
                Some("rate_limit_exceeded") => 429,
                _ => 500,
            };
            Err(UpstreamError::Status {
                status,
                body: Bytes::from(
                    serde_json::to_vec(&json!({ "error": error })).unwrap_or_default(),
                ),
                retry_after: None,
            })
        }
        "" => Err(UpstreamError::Body(
            "the stream began with a malformed event".into(),
        )),
        _ => Ok(FirstEvent::Token),
    }
}

/// Reads a non-streamed Responses answer (at most `limit` bytes): the Response object, as the
/// chat completion the meter reads plus the object itself, which the client gets as it came.
async fn whole_response(
    resp: reqwest::Response,
    deadline: tokio::time::Instant,
    limit: usize,
) -> Result<Answer, UpstreamError> {
    let body = read_bounded(resp, limit, deadline, "answer").await?;
    let v: Value = serde_json::from_slice(&body)
        .map_err(|_| UpstreamError::Body("the upstream's answer is not a Response".into()))?;
    let chat = switchyard_wire::upstream::response_to_chat_completion(&v)
        .ok_or_else(|| UpstreamError::Body("the upstream's answer is not a Response".into()))?;
    Ok(Answer::Json(
        Bytes::from(serde_json::to_vec(&chat).unwrap_or_default()),
        Some(body),
    ))
}

fn classify_first(event: &sse::Event, dialect: ProviderKind) -> Result<FirstEvent, UpstreamError> {
    let malformed = || UpstreamError::Body("the stream began with a malformed event".into());
    if event.is_done() {
        return Err(UpstreamError::Body(
            "the stream ended before any chunk".into(),
        ));
    }
    match dialect {
        ProviderKind::OpenAi | ProviderKind::DeepSeek => match ChunkView::parse(&event.data) {
            Some(v) if v.error.is_none() => Ok(FirstEvent::Token),
            Some(_) => Err(UpstreamError::Body(
                "the stream began with an error event".into(),
            )),
            None => Err(malformed()),
        },
        ProviderKind::Anthropic => {
            let v: Value = serde_json::from_slice(&event.data).map_err(|_| malformed())?;
            let name = match event.name_str() {
                "" | "message" => v.get("type").and_then(Value::as_str).unwrap_or_default(),
                n => n,
            };
            match name {
                "error" => {
                    let err = anthropic::UpstreamError::from_anthropic(&v);
                    Err(UpstreamError::Status {
                        status: err.status(),
                        body: Bytes::from(event.data.to_vec()),
                        retry_after: None,
                    })
                }
                "message_start" => Ok(FirstEvent::Preamble(
                    v.pointer("/message/model")
                        .and_then(Value::as_str)
                        .map(str::to_owned),
                )),
                "content_block_delta" | "message_delta" | "message_stop" => Ok(FirstEvent::Token),
                _ => Ok(FirstEvent::Preamble(None)),
            }
        }
        ProviderKind::Gemini => {
            let v: Value = serde_json::from_slice(&event.data).map_err(|_| malformed())?;
            if !v.is_object() {
                return Err(malformed());
            }
            if let Some(err) = gemini::GeminiError::from_value(&v) {
                return Err(UpstreamError::Status {
                    status: if err.code >= 400 { err.code } else { 500 },
                    body: Bytes::from(event.data.to_vec()),
                    retry_after: None,
                });
            }
            let says_something = v
                .get("candidates")
                .and_then(Value::as_array)
                .is_some_and(|c| !c.is_empty())
                || v.pointer("/promptFeedback/blockReason").is_some();
            Ok(if says_something {
                FirstEvent::Token
            } else {
                FirstEvent::Preamble(None)
            })
        }
    }
}

/// The error the client sees when no route could serve the request: the upstream's refusal of the
/// request itself as a 400 (its message, never its account's status), or our own words for a
/// failure of the routes.
fn final_error(e: UpstreamError, dialect: ProviderKind) -> RelayError {
    let cause = e.cause();
    if let (UpstreamError::Status { status, body, .. }, Cause::Request(refusal)) = (&e, cause) {
        return RelayError::UpstreamRejected(Box::new(refused(*status, body, refusal, dialect)));
    }
    match e {
        UpstreamError::Timeout => RelayError::UpstreamTimeout,
        UpstreamError::Status {
            status: 429,
            retry_after,
            ..
        } if cause == Cause::Route(Blame::Route) => RelayError::UpstreamRateLimited { retry_after },
        UpstreamError::Status { status: 413, .. } | UpstreamError::Status { status: 429, .. } => {
            RelayError::UpstreamRejected(Box::new(Rejected {
                status: 413,
                message: "The request is larger than every upstream for this model accepts.".into(),
                param: None,
                code: Value::String("request_too_large".into()),
            }))
        }
        UpstreamError::Status {
            status: 401 | 403, ..
        } => RelayError::UpstreamFailed("the upstream refused the gateway's credentials".into()),
        // The gateway's own account with the provider cannot pay: not the caller's balance.
        UpstreamError::Status { status: 402, .. } => {
            RelayError::UpstreamFailed("the upstream account cannot pay for the request".into())
        }
        UpstreamError::Status { status: 404, .. } => {
            RelayError::UpstreamFailed("the upstream does not serve this model".into())
        }
        UpstreamError::Status { status, .. } => {
            RelayError::UpstreamFailed(format!("the upstream answered {status}"))
        }
        other => RelayError::UpstreamFailed(other.to_string()),
    }
}

/// The caller's 400 for an upstream's refusal of its request.
fn refused(status: u16, body: &[u8], refusal: Refusal, dialect: ProviderKind) -> Rejected {
    let mut text = ErrorText::parse(body);
    if dialect == ProviderKind::Anthropic && text.message.is_none() {
        // An in-stream Anthropic error event carries its own shape; read it the same way.
        let (_, v) = anthropic::error_to_openai(status, body);
        text.message = v
            .pointer("/error/message")
            .and_then(Value::as_str)
            .map(str::to_owned);
    }
    let code = match refusal.code() {
        Some(code) => Value::String(code.to_owned()),
        None => text.code.map_or(Value::Null, Value::String),
    };
    Rejected {
        status: 400,
        message: text
            .message
            .unwrap_or_else(|| format!("The upstream refused the request (HTTP {status}).")),
        param: text.param,
        code,
    }
}

#[cfg(test)]
mod tests;
