//! Routing: which routes a request for a model may try, in which order, and the health that decides
//! it. Each route (`provider/upstream-model`) has a circuit breaker and a running average of its
//! time to first token:
//!
//! - closed: the route is tried; `breaker.failures` failures in a row, or `breaker.error_percent`
//!   percent failures among its last `breaker.window` outcomes (once `breaker.min_requests` are
//!   known), open it;
//! - open: the route is skipped for `breaker.cooldown`;
//! - half-open: after the cooldown exactly one request (a probe with real traffic) is let through;
//!   its success closes the breaker, its failure opens it again for another cooldown. A probe that
//!   never reports (its client went away) is replaced by another after one cooldown.
//!
//! Only failures the route caused count (`providers::cause`): a refusal of the request itself is
//! never recorded. A failure that one key's requests alone may cause (a timeout, a per-request
//! limit: `Blame::Unclear`) is held against the route only when such failures come from at least
//! two keys, or with a failure that is clearly the route's; on its own it counts against that key's
//! use of the route: `breaker.failures` of them in a row skip the route for that key alone during a
//! cooldown, after which one more such failure skips it again. So one key cannot open the breaker
//! every key shares, and a route that fails everyone still opens as before. A `cmd:` credential
//! that cannot be resolved opens the route's breaker at once (`record_down`).
//!
//! A `strategy = "balance"` model draws its first route by weight among the healthy ones (the
//! others follow in weighted order, as failover); a conversation bound to a route (`bind`: the
//! route that served its last turn, where the provider's prompt cache holds its prefix) is tried
//! first while that binding lives (`AFFINITY_TTL`, renewed by every turn) and the route is healthy.
//!
//! `auto` models keep their configured order; `auto-fast` orders the healthy routes by the
//! exponentially weighted average of their recent times to first token (unmeasured routes first,
//! so that every route gets measured). Locks here are held for a few field updates, never across
//! an await, and only at the start and end of an attempt, never per chunk.

use std::collections::{HashMap, VecDeque};
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

use serde::Serialize;

use crate::config::{AutoKind, BreakerConfig, Config, ModelConfig, Route, RouteId, Strategy};
pub(crate) use crate::providers::cause::Blame;

/// How long a conversation stays bound to the route that served its last turn: as long as the
/// providers keep a prompt cache unused (Anthropic's and OpenAI's 5 minutes).
pub(crate) const AFFINITY_TTL: Duration = Duration::from_secs(300);

/// The most conversations bound at once in one process; past it, expired bindings are dropped,
/// then the whole map if none had expired.
const MAX_BINDINGS: usize = 100_000;

/// The most keys whose use of one route is tracked; past it, keys with no skip in force are
/// forgotten first.
const MAX_TRACKED_CALLERS: usize = 4096;

/// A caller (API key id) as routing remembers it.
fn caller_tag(caller: &str) -> u64 {
    let mut h = std::hash::DefaultHasher::new();
    caller.hash(&mut h);
    h.finish()
}

/// Orders `candidates` by weight: each place is drawn among the ones left with a chance
/// proportional to its route's weight (Efraimidis–Spirakis, one draw per candidate).
fn weighted_order(candidates: &mut [Candidate], rng: &mut impl rand::Rng) {
    let mut keyed: Vec<(f64, usize)> = candidates
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let u: f64 = rng.gen_range(f64::MIN_POSITIVE..1.0);
            (u.powf(1.0 / c.route.weight.max(1) as f64), i)
        })
        .collect();
    keyed.sort_by(|a, b| b.0.total_cmp(&a.0));
    let order: Vec<usize> = keyed.into_iter().map(|(_, i)| i).collect();
    let mut sorted: Vec<Candidate> = order.iter().map(|&i| candidates[i].clone()).collect();
    candidates.swap_with_slice(&mut sorted);
}

/// Puts the candidate for `route` (a conversation's bound route) first, when it is one.
pub(crate) fn prefer(candidates: &mut [Candidate], route: &RouteId) {
    if let Some(i) = candidates.iter().position(|c| c.route.key() == route) {
        candidates[..=i].rotate_right(1);
    }
}

/// One attempt's route and the key it was made for: where its outcome is recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthKey {
    /// `provider/upstream-model`.
    pub route: RouteId,
    /// The caller's key id.
    pub caller: String,
}

/// One outcome in a route's window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Success,
    /// A failure of the route itself.
    RouteFailure,
    /// A failure that this caller's request may have caused.
    Unclear(u64),
}

/// Whether a set of failures implicates the route: one of them is clearly its own, or they come
/// from at least two callers.
#[derive(Debug, Default, Clone)]
struct Implicated {
    route: bool,
    first_caller: Option<u64>,
    several: bool,
}

impl Implicated {
    fn add(&mut self, o: Outcome) {
        match o {
            Outcome::Success => {}
            Outcome::RouteFailure => self.route = true,
            Outcome::Unclear(c) => match self.first_caller {
                None => self.first_caller = Some(c),
                Some(f) if f != c => self.several = true,
                Some(_) => {}
            },
        }
    }

    fn holds(&self) -> bool {
        self.route || self.several
    }
}

/// One key's use of one route: its unclear failures in a row, and the skip they put in force.
#[derive(Debug, Default)]
struct CallerHealth {
    consecutive: u32,
    skip_until: Option<Instant>,
}

/// Every route of the model is in cooldown.
#[derive(Debug, thiserror::Error)]
#[error("every route of this model is cooling down after repeated failures")]
pub struct NoHealthyRoute {
    /// The soonest a route's cooldown ends.
    pub retry_after: Option<Duration>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Breaker {
    Closed,
    Open { until: Instant },
    HalfOpen { probe_started: Instant },
}

#[derive(Debug)]
struct RouteHealth {
    breaker: Breaker,
    consecutive_failures: u32,
    /// Whether the current run of consecutive failures implicates the route.
    run: Implicated,
    /// The latest outcomes, oldest first.
    window: VecDeque<Outcome>,
    /// Keys whose own unclear failures on this route are being counted.
    callers: HashMap<u64, CallerHealth>,
    /// Time to first token, exponentially weighted (weight 1/4 for each new sample), in µs.
    ttft_ewma_us: Option<u64>,
    successes: u64,
    failures: u64,
    times_opened: u64,
    last_error: Option<(Instant, String)>,
}

impl RouteHealth {
    fn new() -> RouteHealth {
        RouteHealth {
            breaker: Breaker::Closed,
            consecutive_failures: 0,
            run: Implicated::default(),
            window: VecDeque::new(),
            callers: HashMap::new(),
            ttft_ewma_us: None,
            successes: 0,
            failures: 0,
            times_opened: 0,
            last_error: None,
        }
    }

    fn push_outcome(&mut self, outcome: Outcome, window: u32) {
        self.window.push_back(outcome);
        while self.window.len() > window as usize {
            self.window.pop_front();
        }
    }

    fn window_failures(&self) -> usize {
        self.window
            .iter()
            .filter(|o| **o != Outcome::Success)
            .count()
    }

    /// Whether the failures in the window implicate the route.
    fn window_implicates(&self) -> bool {
        let mut i = Implicated::default();
        self.window.iter().for_each(|o| i.add(*o));
        i.holds()
    }

    /// Whether `caller` is skipping this route after its own failures.
    fn skips(&self, caller: u64, now: Instant) -> Option<Instant> {
        self.callers
            .get(&caller)
            .and_then(|c| c.skip_until)
            .filter(|until| *until > now)
    }

    /// Counts one unclear failure against `caller`'s use of the route.
    fn caller_failed(&mut self, caller: u64, b: &BreakerConfig, now: Instant) {
        if self.callers.len() >= MAX_TRACKED_CALLERS && !self.callers.contains_key(&caller) {
            self.callers
                .retain(|_, c| c.skip_until.is_some_and(|until| until > now));
            if self.callers.len() >= MAX_TRACKED_CALLERS {
                return;
            }
        }
        let c = self.callers.entry(caller).or_default();
        c.consecutive = c.consecutive.saturating_add(1);
        if c.consecutive >= b.failures {
            c.skip_until = Some(now + b.cooldown);
        }
    }

    fn sample_ttft(&mut self, ttft: Duration) {
        let us = ttft.as_micros().min(u128::from(u64::MAX)) as u64;
        self.ttft_ewma_us = Some(match self.ttft_ewma_us {
            None => us,
            Some(old) => (old.saturating_mul(3).saturating_add(us)) / 4,
        });
    }
}

/// One route a request may try.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub route: Route,
    /// This request is the half-open probe of the route's breaker.
    pub probe: bool,
}

/// The health of every route, shared by all requests. The health itself outlives a config
/// generation (`Routing::carry_over`); the breaker settings are the generation's own.
pub struct Routing {
    breaker: BreakerConfig,
    routes: Arc<Mutex<HashMap<RouteId, RouteHealth>>>,
    /// Conversation -> the route that served its last turn, and until when it stays bound.
    bindings: Arc<Mutex<HashMap<String, (RouteId, Instant)>>>,
}

impl Routing {
    pub fn new(config: &Config) -> Routing {
        Routing {
            breaker: config.routing.breaker.clone(),
            routes: Arc::default(),
            bindings: Arc::default(),
        }
    }

    /// The route `conversation` is bound to in this process, while the binding lives.
    pub fn bound(&self, conversation: &str) -> Option<RouteId> {
        let bindings = self.bindings.lock().ok()?;
        let (route, until) = bindings.get(conversation)?;
        (Instant::now() < *until).then(|| route.clone())
    }

    /// Binds `conversation` to `route` (the one that served this turn) for `AFFINITY_TTL`.
    pub fn bind(&self, conversation: &str, route: &RouteId) {
        let Ok(mut bindings) = self.bindings.lock() else {
            return;
        };
        let now = Instant::now();
        if bindings.len() >= MAX_BINDINGS {
            bindings.retain(|_, (_, until)| *until > now);
            if bindings.len() >= MAX_BINDINGS {
                bindings.clear();
            }
        }
        bindings.insert(conversation.to_owned(), (route.clone(), now + AFFINITY_TTL));
    }

    /// The routing of a reloaded `config`: the same health for every route `config` still has,
    /// unless its provider is one of `moved` (now at another address: another upstream); the
    /// rest is forgotten. Requests of the previous generation still record into it.
    pub fn carry_over(&self, config: &Config, moved: &[String]) -> Routing {
        let keep: std::collections::HashSet<&RouteId> = config
            .models
            .values()
            .flat_map(|m| m.routes.iter())
            .filter(|r| !moved.iter().any(|p| p == r.provider()))
            .map(Route::key)
            .collect();
        if let Ok(mut routes) = self.routes.lock() {
            routes.retain(|key, _| keep.contains(key));
        }
        Routing {
            breaker: config.routing.breaker.clone(),
            routes: self.routes.clone(),
            bindings: self.bindings.clone(),
        }
    }

    /// The routes `model` may try now for `caller` (a key id), in the order to try them. Routes
    /// whose breaker is open, or that this caller skips after its own failures, are left out; a
    /// route whose cooldown has ended is included as this request's probe.
    pub fn candidates(
        &self,
        model: &ModelConfig,
        caller: &str,
    ) -> Result<Vec<Candidate>, NoHealthyRoute> {
        let now = Instant::now();
        let tag = caller_tag(caller);
        let mut out = Vec::with_capacity(model.routes.len());
        let mut soonest: Option<Instant> = None;
        let Ok(mut routes) = self.routes.lock() else {
            // A poisoned lock only means a panic elsewhere; serve in configured order.
            return Ok(model.routes.iter().map(plain).collect());
        };
        for route in &model.routes {
            let key = route.key();
            if out.iter().any(|c: &Candidate| c.route.key() == key) {
                continue; // the same route reached through two models of an auto chain
            }
            let health = routes.entry(key.clone()).or_insert_with(RouteHealth::new);
            if let Some(until) = health.skips(tag, now) {
                soonest = Some(soonest.map_or(until, |s| s.min(until)));
                continue;
            }
            let probe = match health.breaker {
                Breaker::Closed => false,
                Breaker::Open { until } if now >= until => {
                    health.breaker = Breaker::HalfOpen { probe_started: now };
                    true
                }
                Breaker::HalfOpen { probe_started }
                    if now.duration_since(probe_started) >= self.breaker.cooldown =>
                {
                    health.breaker = Breaker::HalfOpen { probe_started: now };
                    true
                }
                Breaker::Open { until } => {
                    soonest = Some(soonest.map_or(until, |s| s.min(until)));
                    continue;
                }
                Breaker::HalfOpen { probe_started } => {
                    let until = probe_started + self.breaker.cooldown;
                    soonest = Some(soonest.map_or(until, |s| s.min(until)));
                    continue;
                }
            };
            out.push(Candidate {
                route: route.clone(),
                probe,
            });
        }
        if matches!(model.auto, Some(AutoKind::Fastest { .. })) {
            // Unmeasured routes first (so they get measured), then the fastest; stable.
            out.sort_by_key(|c| {
                routes
                    .get(c.route.key())
                    .and_then(|h| h.ttft_ewma_us)
                    .unwrap_or(0)
            });
        }
        if model.strategy == Strategy::Balance {
            weighted_order(&mut out, &mut rand::thread_rng());
        }
        if out.is_empty() {
            return Err(NoHealthyRoute {
                retry_after: soonest.map(|s| s.saturating_duration_since(now)),
            });
        }
        Ok(out)
    }

    /// The route answered `key.caller`: its breaker closes, that caller's own count restarts, and
    /// `ttft` (when known) feeds the route's average.
    pub fn record_success(&self, key: &HealthKey, ttft: Option<Duration>) {
        let Ok(mut routes) = self.routes.lock() else {
            return;
        };
        let h = routes
            .entry(key.route.clone())
            .or_insert_with(RouteHealth::new);
        h.successes += 1;
        h.consecutive_failures = 0;
        h.run = Implicated::default();
        h.callers.remove(&caller_tag(&key.caller));
        if h.breaker != Breaker::Closed {
            h.window.clear();
        }
        h.breaker = Breaker::Closed;
        h.push_outcome(Outcome::Success, self.breaker.window);
        if let Some(t) = ttft {
            h.sample_ttft(t);
        }
    }

    /// A hedged attempt lost the race after `elapsed` without a first token: its time to first
    /// token is at least that, which counts against it without counting as a failure.
    pub fn record_slower_than(&self, key: &RouteId, elapsed: Duration) {
        let Ok(mut routes) = self.routes.lock() else {
            return;
        };
        let h = routes.entry(key.clone()).or_insert_with(RouteHealth::new);
        let us = elapsed.as_micros().min(u128::from(u64::MAX)) as u64;
        if h.ttft_ewma_us.is_none_or(|t| t < us) {
            h.sample_ttft(elapsed);
        }
    }

    /// The route failed for `key.caller` (connect error, timeout, 5xx, 429, refused credential,
    /// broken stream): `blame` says whether the request itself may be why (see the module
    /// documentation). `why` is a short description without secrets, shown at `/admin/providers`.
    pub fn record_failure(&self, key: &HealthKey, blame: Blame, why: &str) {
        let now = Instant::now();
        let Ok(mut routes) = self.routes.lock() else {
            return;
        };
        let b = &self.breaker;
        let h = routes
            .entry(key.route.clone())
            .or_insert_with(RouteHealth::new);
        let outcome = match blame {
            Blame::Route => Outcome::RouteFailure,
            Blame::Unclear => {
                let tag = caller_tag(&key.caller);
                h.caller_failed(tag, b, now);
                Outcome::Unclear(tag)
            }
        };
        h.failures += 1;
        h.consecutive_failures = h.consecutive_failures.saturating_add(1);
        h.run.add(outcome);
        h.push_outcome(outcome, b.window);
        h.last_error = Some((now, crate::redact::mask(why).chars().take(200).collect()));
        let ratio_tripped = h.window.len() >= b.min_requests as usize
            && h.window_failures() * 100 >= b.error_percent as usize * h.window.len()
            && h.window_implicates();
        let open = match h.breaker {
            // A probe that failed for a reason of its own proves nothing: the next request probes.
            Breaker::HalfOpen { .. } if blame == Blame::Unclear => {
                h.breaker = Breaker::Open { until: now };
                false
            }
            Breaker::HalfOpen { .. } => true,
            Breaker::Open { .. } => false,
            Breaker::Closed => {
                (h.consecutive_failures >= b.failures && h.run.holds()) || ratio_tripped
            }
        };
        if open {
            h.breaker = Breaker::Open {
                until: now + b.cooldown,
            };
            h.times_opened += 1;
        }
    }

    /// The route cannot work at all for now (its provider's credential cannot be resolved): its
    /// breaker opens at once, whatever its recent history.
    pub fn record_down(&self, route: &RouteId, why: &str) {
        let now = Instant::now();
        let Ok(mut routes) = self.routes.lock() else {
            return;
        };
        let h = routes.entry(route.clone()).or_insert_with(RouteHealth::new);
        h.failures += 1;
        h.consecutive_failures = h.consecutive_failures.saturating_add(1);
        h.run.add(Outcome::RouteFailure);
        h.push_outcome(Outcome::RouteFailure, self.breaker.window);
        h.last_error = Some((now, crate::redact::mask(why).chars().take(200).collect()));
        if !matches!(h.breaker, Breaker::Open { until } if until > now) {
            h.breaker = Breaker::Open {
                until: now + self.breaker.cooldown,
            };
            h.times_opened += 1;
        }
    }

    /// The state of every route of `config`, for `/admin/providers`.
    pub fn report(&self, config: &Config) -> Vec<ProviderReport> {
        let now = Instant::now();
        let routes = self.routes.lock().ok();
        let mut out: Vec<ProviderReport> = config
            .providers
            .values()
            .map(|p| ProviderReport {
                name: p.name.clone(),
                kind: p.kind.as_str(),
                base_url: p.base_url.clone(),
                routes: Vec::new(),
            })
            .collect();
        let mut seen = std::collections::BTreeSet::new();
        for model in config.models.values().filter(|m| m.auto.is_none()) {
            for route in &model.routes {
                let key = route.key();
                if !seen.insert(key) {
                    continue;
                }
                let Some(p) = out.iter_mut().find(|p| p.name == route.provider()) else {
                    continue;
                };
                let h = routes.as_ref().and_then(|r| r.get(key));
                p.routes
                    .push(route_report(key.as_str(), &route.model, h, now));
            }
        }
        out
    }
}

fn plain(route: &Route) -> Candidate {
    Candidate {
        route: route.clone(),
        probe: false,
    }
}

fn route_report(key: &str, model: &str, h: Option<&RouteHealth>, now: Instant) -> RouteReport {
    let (prompt_tokens, cached) = crate::telemetry::route_cache(key);
    let cache_hit_ratio = crate::store::ledger::hit_ratio(cached as i64, prompt_tokens as i64);
    let Some(h) = h else {
        return RouteReport {
            route: key.to_owned(),
            model: model.to_owned(),
            state: "closed",
            prompt_tokens,
            cache_hit_ratio,
            ..RouteReport::default()
        };
    };
    let (state, cooldown_ms) = match h.breaker {
        Breaker::Closed => ("closed", 0),
        Breaker::Open { until } if until > now => {
            ("open", until.duration_since(now).as_millis() as u64)
        }
        Breaker::Open { .. } => ("half_open", 0),
        Breaker::HalfOpen { .. } => ("half_open", 0),
    };
    RouteReport {
        route: key.to_owned(),
        model: model.to_owned(),
        state,
        cooldown_remaining_ms: cooldown_ms,
        consecutive_failures: h.consecutive_failures,
        recent_requests: h.window.len() as u32,
        recent_failures: h.window_failures() as u32,
        successes: h.successes,
        failures: h.failures,
        times_opened: h.times_opened,
        keys_skipping: h
            .callers
            .values()
            .filter(|c| c.skip_until.is_some_and(|until| until > now))
            .count() as u32,
        ttft_ewma_ms: h.ttft_ewma_us.map(|us| us / 1000),
        last_error: h.last_error.as_ref().map(|(_, e)| e.clone()),
        last_error_ago_ms: h
            .last_error
            .as_ref()
            .map(|(at, _)| now.duration_since(*at).as_millis() as u64),
        prompt_tokens,
        cache_hit_ratio,
    }
}

/// One provider in `/admin/providers`.
#[derive(Debug, Serialize)]
pub struct ProviderReport {
    pub name: String,
    pub kind: &'static str,
    pub base_url: String,
    pub routes: Vec<RouteReport>,
}

/// One route's health in `/admin/providers`.
#[derive(Debug, Default, Serialize)]
pub struct RouteReport {
    pub route: String,
    pub model: String,
    /// `closed`, `open` or `half_open`.
    pub state: &'static str,
    pub cooldown_remaining_ms: u64,
    pub consecutive_failures: u32,
    pub recent_requests: u32,
    pub recent_failures: u32,
    pub successes: u64,
    pub failures: u64,
    pub times_opened: u64,
    /// Keys that skip this route for now after failures that only their requests met.
    pub keys_skipping: u32,
    pub ttft_ewma_ms: Option<u64>,
    pub last_error: Option<String>,
    pub last_error_ago_ms: Option<u64>,
    /// Prompt tokens it was sent since the process started, and the share read from the
    /// provider's cache (0 without any).
    pub prompt_tokens: u64,
    pub cache_hit_ratio: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = r#"
[providers.a]
kind = "openai"
base_url = "http://127.0.0.1:1/v1"
[providers.b]
kind = "anthropic"
base_url = "http://127.0.0.1:1/v1"
[models.m]
routes = ["a/x", "b/y"]
free = true
[routing]
breaker_failures = 2
breaker_window = 4
breaker_min_requests = 4
breaker_error_percent = 50
breaker_cooldown_ms = 40
[auto]
chain = ["m"]
"#;

    fn hk(route: &str) -> HealthKey {
        HealthKey {
            route: route.parse().unwrap(),
            caller: "k1".into(),
        }
    }

    fn keys(c: &[Candidate]) -> Vec<&str> {
        c.iter().map(|c| c.route.key().as_str()).collect()
    }

    /// Paused time: the cooldown ends when the test says so, never because the machine was slow.
    #[tokio::test(start_paused = true)]
    async fn consecutive_failures_open_then_a_single_probe_closes() {
        let config = Config::parse(CONFIG, "t").unwrap();
        let r = Routing::new(&config);
        let m = &config.models["m"];
        assert_eq!(keys(&r.candidates(m, "k1").unwrap()), ["a/x", "b/y"]);
        r.record_failure(&hk("a/x"), Blame::Route, "503");
        assert_eq!(keys(&r.candidates(m, "k1").unwrap()), ["a/x", "b/y"]);
        r.record_failure(&hk("a/x"), Blame::Route, "503");
        assert_eq!(keys(&r.candidates(m, "k1").unwrap()), ["b/y"]);
        // Open for the whole cooldown (40 ms), and not a moment longer.
        tokio::time::advance(Duration::from_millis(39)).await;
        assert_eq!(keys(&r.candidates(m, "k1").unwrap()), ["b/y"]);
        tokio::time::advance(Duration::from_millis(1)).await;
        let c = r.candidates(m, "k1").unwrap();
        assert_eq!(keys(&c), ["a/x", "b/y"]);
        assert!(c[0].probe);
        // While the probe runs, nobody else is sent there.
        assert_eq!(keys(&r.candidates(m, "k1").unwrap()), ["b/y"]);
        r.record_success(&hk("a/x"), None);
        assert_eq!(keys(&r.candidates(m, "k1").unwrap()), ["a/x", "b/y"]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_probe_opens_again_and_all_open_is_no_healthy_route() {
        let config = Config::parse(CONFIG, "t").unwrap();
        let r = Routing::new(&config);
        let m = &config.models["m"];
        for k in ["a/x", "a/x", "b/y", "b/y"] {
            r.record_failure(&hk(k), Blame::Route, "timeout");
        }
        let e = r.candidates(m, "k1").unwrap_err();
        assert_eq!(e.retry_after, Some(Duration::from_millis(40)));
        tokio::time::advance(Duration::from_millis(40)).await;
        let c = r.candidates(m, "k1").unwrap();
        assert!(c.iter().all(|c| c.probe));
        r.record_failure(&hk("a/x"), Blame::Route, "still down");
        r.record_success(&hk("b/y"), None);
        assert_eq!(keys(&r.candidates(m, "k1").unwrap()), ["b/y"]);
    }

    #[test]
    fn error_ratio_over_the_window_opens() {
        let config = Config::parse(CONFIG, "t").unwrap();
        let r = Routing::new(&config);
        let m = &config.models["m"];
        // Alternating: never two in a row, but half of the last four failed.
        r.record_failure(&hk("a/x"), Blame::Route, "e");
        r.record_success(&hk("a/x"), None);
        r.record_failure(&hk("a/x"), Blame::Route, "e");
        assert_eq!(keys(&r.candidates(m, "k1").unwrap()), ["a/x", "b/y"]);
        r.record_success(&hk("a/x"), None);
        r.record_failure(&hk("a/x"), Blame::Route, "e");
        assert_eq!(keys(&r.candidates(m, "k1").unwrap()), ["b/y"]);
    }

    #[test]
    fn auto_fast_orders_by_time_to_first_token() {
        let config = Config::parse(CONFIG, "t").unwrap();
        let r = Routing::new(&config);
        let fast = &config.models["auto-fast"];
        assert_eq!(keys(&r.candidates(fast, "k1").unwrap()), ["a/x", "b/y"]);
        r.record_success(&hk("a/x"), Some(Duration::from_millis(300)));
        // b is unmeasured: it goes first to be measured.
        assert_eq!(keys(&r.candidates(fast, "k1").unwrap()), ["b/y", "a/x"]);
        r.record_success(&hk("b/y"), Some(Duration::from_millis(500)));
        assert_eq!(keys(&r.candidates(fast, "k1").unwrap()), ["a/x", "b/y"]);
        // `auto` keeps the configured order whatever the speed.
        r.record_success(&hk("a/x"), Some(Duration::from_secs(5)));
        r.record_success(&hk("a/x"), Some(Duration::from_secs(5)));
        assert_eq!(keys(&r.candidates(fast, "k1").unwrap()), ["b/y", "a/x"]);
        assert_eq!(
            keys(&r.candidates(&config.models["auto"], "k1").unwrap()),
            ["a/x", "b/y"]
        );
        let report = r.report(&config);
        let a = &report.iter().find(|p| p.name == "a").unwrap().routes[0];
        assert_eq!(a.state, "closed");
        assert_eq!(a.successes, 3);
    }

    fn by(route: &str, caller: &str) -> HealthKey {
        HealthKey {
            route: route.parse().unwrap(),
            caller: caller.into(),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn one_keys_own_failures_skip_the_route_for_that_key_alone() {
        let config = Config::parse(CONFIG, "t").unwrap();
        let r = Routing::new(&config);
        let m = &config.models["m"];
        // Key A's huge prompts time out again and again (breaker_failures = 2, window 4).
        for _ in 0..6 {
            r.record_failure(&by("a/x", "A"), Blame::Unclear, "timeout");
        }
        assert_eq!(
            keys(&r.candidates(m, "B").unwrap()),
            ["a/x", "b/y"],
            "key B still uses the route"
        );
        assert_eq!(
            keys(&r.candidates(m, "A").unwrap()),
            ["b/y"],
            "key A skips it"
        );
        let report = r.report(&config);
        let a = &report.iter().find(|p| p.name == "a").unwrap().routes[0];
        assert_eq!((a.state, a.keys_skipping), ("closed", 1));
        // After the cooldown key A may try again; its next own failure skips the route again.
        tokio::time::advance(Duration::from_millis(39)).await;
        assert_eq!(keys(&r.candidates(m, "A").unwrap()), ["b/y"]);
        tokio::time::advance(Duration::from_millis(1)).await;
        assert_eq!(keys(&r.candidates(m, "A").unwrap()), ["a/x", "b/y"]);
        r.record_failure(&by("a/x", "A"), Blame::Unclear, "timeout");
        assert_eq!(keys(&r.candidates(m, "A").unwrap()), ["b/y"]);
        // A success for key A ends its skip.
        r.record_success(&by("a/x", "A"), None);
        assert_eq!(keys(&r.candidates(m, "A").unwrap()), ["a/x", "b/y"]);
    }

    #[test]
    fn unclear_failures_from_two_keys_or_with_a_route_failure_open_the_breaker() {
        let config = Config::parse(CONFIG, "t").unwrap();
        let r = Routing::new(&config);
        let m = &config.models["m"];
        r.record_failure(&by("a/x", "A"), Blame::Unclear, "timeout");
        r.record_failure(&by("a/x", "B"), Blame::Unclear, "timeout");
        assert_eq!(keys(&r.candidates(m, "C").unwrap()), ["b/y"]);

        let r = Routing::new(&config);
        r.record_failure(&by("a/x", "A"), Blame::Unclear, "timeout");
        r.record_failure(&by("a/x", "A"), Blame::Route, "503");
        assert_eq!(keys(&r.candidates(m, "C").unwrap()), ["b/y"]);
    }

    #[test]
    fn a_route_that_is_down_opens_at_once() {
        let config = Config::parse(CONFIG, "t").unwrap();
        let r = Routing::new(&config);
        let m = &config.models["m"];
        r.record_down(&"a/x".parse().unwrap(), "cmd: timed out");
        assert_eq!(keys(&r.candidates(m, "k1").unwrap()), ["b/y"]);
        let report = r.report(&config);
        let a = &report.iter().find(|p| p.name == "a").unwrap().routes[0];
        assert_eq!(a.state, "open");
        assert_eq!(a.last_error.as_deref(), Some("cmd: timed out"));
    }
}
