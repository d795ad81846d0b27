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
//! `auto` models keep their configured order; `auto-fast` orders the healthy routes by the
//! exponentially weighted average of their recent times to first token (unmeasured routes first,
//! so that every route gets measured). Locks here are held for a few field updates, never across
//! an await, and only at the start and end of an attempt, never per chunk.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::config::{AutoKind, BreakerConfig, Config, ModelConfig, Route};

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
    /// The latest outcomes, `true` = failure, oldest first.
    window: VecDeque<bool>,
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
            window: VecDeque::new(),
            ttft_ewma_us: None,
            successes: 0,
            failures: 0,
            times_opened: 0,
            last_error: None,
        }
    }

    fn push_outcome(&mut self, failed: bool, window: u32) {
        self.window.push_back(failed);
        while self.window.len() > window as usize {
            self.window.pop_front();
        }
    }

    fn window_failures(&self) -> usize {
        self.window.iter().filter(|f| **f).count()
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
    /// `route.key()`, computed once.
    pub key: String,
    /// This request is the half-open probe of the route's breaker.
    pub probe: bool,
}

/// The health of every route, shared by all requests.
pub struct Routing {
    breaker: BreakerConfig,
    routes: Mutex<HashMap<String, RouteHealth>>,
}

impl Routing {
    pub fn new(config: &Config) -> Routing {
        Routing {
            breaker: config.routing.breaker.clone(),
            routes: Mutex::new(HashMap::new()),
        }
    }

    /// The routes `model` may try now, in the order to try them. Routes whose breaker is open are
    /// left out; a route whose cooldown has ended is included as this request's probe.
    pub fn candidates(&self, model: &ModelConfig) -> Result<Vec<Candidate>, NoHealthyRoute> {
        let now = Instant::now();
        let mut out = Vec::with_capacity(model.routes.len());
        let mut soonest: Option<Instant> = None;
        let Ok(mut routes) = self.routes.lock() else {
            // A poisoned lock only means a panic elsewhere; serve in configured order.
            return Ok(model.routes.iter().map(plain).collect());
        };
        for route in &model.routes {
            let key = route.key();
            if out.iter().any(|c: &Candidate| c.key == key) {
                continue; // the same route reached through two models of an auto chain
            }
            let health = routes.entry(key.clone()).or_insert_with(RouteHealth::new);
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
                key,
                probe,
            });
        }
        if matches!(model.auto, Some(AutoKind::Fastest { .. })) {
            // Unmeasured routes first (so they get measured), then the fastest; stable.
            out.sort_by_key(|c| routes.get(&c.key).and_then(|h| h.ttft_ewma_us).unwrap_or(0));
        }
        if out.is_empty() {
            return Err(NoHealthyRoute {
                retry_after: soonest.map(|s| s.saturating_duration_since(now)),
            });
        }
        Ok(out)
    }

    /// The route answered: its breaker closes, and `ttft` (when known) feeds its average.
    pub fn record_success(&self, key: &str, ttft: Option<Duration>) {
        let Ok(mut routes) = self.routes.lock() else {
            return;
        };
        let h = routes
            .entry(key.to_owned())
            .or_insert_with(RouteHealth::new);
        h.successes += 1;
        h.consecutive_failures = 0;
        if h.breaker != Breaker::Closed {
            h.window.clear();
        }
        h.breaker = Breaker::Closed;
        h.push_outcome(false, self.breaker.window);
        if let Some(t) = ttft {
            h.sample_ttft(t);
        }
    }

    /// A hedged attempt lost the race after `elapsed` without a first token: its time to first
    /// token is at least that, which counts against it without counting as a failure.
    pub fn record_slower_than(&self, key: &str, elapsed: Duration) {
        let Ok(mut routes) = self.routes.lock() else {
            return;
        };
        let h = routes
            .entry(key.to_owned())
            .or_insert_with(RouteHealth::new);
        let us = elapsed.as_micros().min(u128::from(u64::MAX)) as u64;
        if h.ttft_ewma_us.is_none_or(|t| t < us) {
            h.sample_ttft(elapsed);
        }
    }

    /// The route failed (connect error, timeout, 5xx, 429, refused credential, broken stream).
    /// `why` is a short description without secrets, shown at `/admin/providers`.
    pub fn record_failure(&self, key: &str, why: &str) {
        let now = Instant::now();
        let Ok(mut routes) = self.routes.lock() else {
            return;
        };
        let b = &self.breaker;
        let h = routes
            .entry(key.to_owned())
            .or_insert_with(RouteHealth::new);
        h.failures += 1;
        h.consecutive_failures = h.consecutive_failures.saturating_add(1);
        h.push_outcome(true, b.window);
        h.last_error = Some((now, why.chars().take(200).collect()));
        let ratio_tripped = h.window.len() >= b.min_requests as usize
            && h.window_failures() * 100 >= b.error_percent as usize * h.window.len();
        let open = match h.breaker {
            Breaker::HalfOpen { .. } => true,
            Breaker::Open { .. } => false,
            Breaker::Closed => h.consecutive_failures >= b.failures || ratio_tripped,
        };
        if open {
            h.breaker = Breaker::Open {
                until: now + b.cooldown,
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
                if !seen.insert(key.clone()) {
                    continue;
                }
                let Some(p) = out.iter_mut().find(|p| p.name == route.provider) else {
                    continue;
                };
                let h = routes.as_ref().and_then(|r| r.get(&key));
                p.routes.push(route_report(&key, &route.model, h, now));
            }
        }
        out
    }
}

fn plain(route: &Route) -> Candidate {
    Candidate {
        key: route.key(),
        route: route.clone(),
        probe: false,
    }
}

fn route_report(key: &str, model: &str, h: Option<&RouteHealth>, now: Instant) -> RouteReport {
    let Some(h) = h else {
        return RouteReport {
            route: key.to_owned(),
            model: model.to_owned(),
            state: "closed",
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
        ttft_ewma_ms: h.ttft_ewma_us.map(|us| us / 1000),
        last_error: h.last_error.as_ref().map(|(_, e)| e.clone()),
        last_error_ago_ms: h
            .last_error
            .as_ref()
            .map(|(at, _)| now.duration_since(*at).as_millis() as u64),
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
    pub ttft_ewma_ms: Option<u64>,
    pub last_error: Option<String>,
    pub last_error_ago_ms: Option<u64>,
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

    fn keys(c: &[Candidate]) -> Vec<&str> {
        c.iter().map(|c| c.key.as_str()).collect()
    }

    #[test]
    fn consecutive_failures_open_then_a_single_probe_closes() {
        let config = Config::parse(CONFIG, "t").unwrap();
        let r = Routing::new(&config);
        let m = &config.models["m"];
        assert_eq!(keys(&r.candidates(m).unwrap()), ["a/x", "b/y"]);
        r.record_failure("a/x", "503");
        assert_eq!(keys(&r.candidates(m).unwrap()), ["a/x", "b/y"]);
        r.record_failure("a/x", "503");
        assert_eq!(keys(&r.candidates(m).unwrap()), ["b/y"]);
        std::thread::sleep(Duration::from_millis(45));
        let c = r.candidates(m).unwrap();
        assert_eq!(keys(&c), ["a/x", "b/y"]);
        assert!(c[0].probe);
        // While the probe runs, nobody else is sent there.
        assert_eq!(keys(&r.candidates(m).unwrap()), ["b/y"]);
        r.record_success("a/x", None);
        assert_eq!(keys(&r.candidates(m).unwrap()), ["a/x", "b/y"]);
    }

    #[test]
    fn a_failed_probe_opens_again_and_all_open_is_no_healthy_route() {
        let config = Config::parse(CONFIG, "t").unwrap();
        let r = Routing::new(&config);
        let m = &config.models["m"];
        for k in ["a/x", "a/x", "b/y", "b/y"] {
            r.record_failure(k, "timeout");
        }
        let e = r.candidates(m).unwrap_err();
        assert!(e.retry_after.unwrap() <= Duration::from_millis(40));
        std::thread::sleep(Duration::from_millis(45));
        let c = r.candidates(m).unwrap();
        assert!(c.iter().all(|c| c.probe));
        r.record_failure("a/x", "still down");
        r.record_success("b/y", None);
        assert_eq!(keys(&r.candidates(m).unwrap()), ["b/y"]);
    }

    #[test]
    fn error_ratio_over_the_window_opens() {
        let config = Config::parse(CONFIG, "t").unwrap();
        let r = Routing::new(&config);
        let m = &config.models["m"];
        // Alternating: never two in a row, but half of the last four failed.
        r.record_failure("a/x", "e");
        r.record_success("a/x", None);
        r.record_failure("a/x", "e");
        assert_eq!(keys(&r.candidates(m).unwrap()), ["a/x", "b/y"]);
        r.record_success("a/x", None);
        r.record_failure("a/x", "e");
        assert_eq!(keys(&r.candidates(m).unwrap()), ["b/y"]);
    }

    #[test]
    fn auto_fast_orders_by_time_to_first_token() {
        let config = Config::parse(CONFIG, "t").unwrap();
        let r = Routing::new(&config);
        let fast = &config.models["auto-fast"];
        assert_eq!(keys(&r.candidates(fast).unwrap()), ["a/x", "b/y"]);
        r.record_success("a/x", Some(Duration::from_millis(300)));
        // b is unmeasured: it goes first to be measured.
        assert_eq!(keys(&r.candidates(fast).unwrap()), ["b/y", "a/x"]);
        r.record_success("b/y", Some(Duration::from_millis(500)));
        assert_eq!(keys(&r.candidates(fast).unwrap()), ["a/x", "b/y"]);
        // `auto` keeps the configured order whatever the speed.
        r.record_success("a/x", Some(Duration::from_secs(5)));
        r.record_success("a/x", Some(Duration::from_secs(5)));
        assert_eq!(keys(&r.candidates(fast).unwrap()), ["b/y", "a/x"]);
        assert_eq!(
            keys(&r.candidates(&config.models["auto"]).unwrap()),
            ["a/x", "b/y"]
        );
        let report = r.report(&config);
        let a = &report.iter().find(|p| p.name == "a").unwrap().routes[0];
        assert_eq!(a.state, "closed");
        assert_eq!(a.successes, 3);
    }
}
