//! The failover clocks under paused time: the backoff before a retry (its growth, its cap, its
//! jitter range), an upstream's `retry-after`, the per-request budget, and `auto-fast`'s hedge.
//! Each wait is checked at the exact instant it ends, so a slow machine can make none of them
//! early or late.

use std::sync::{Arc, Mutex};

use super::*;
use crate::config::RoutingConfig;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// A policy with a 100 ms base backoff capped at 300 ms, and a minute's budget.
fn policy() -> RoutingConfig {
    RoutingConfig {
        retry_budget: ms(60_000),
        backoff_base: ms(100),
        backoff_max: ms(300),
        max_retry_after: ms(10_000),
        ..RoutingConfig::default()
    }
}

/// The jitter that picks the longest backoff, and the one that picks the shortest.
fn longest(range: std::ops::RangeInclusive<u64>) -> u64 {
    *range.end()
}
fn shortest(range: std::ops::RangeInclusive<u64>) -> u64 {
    *range.start()
}

/// The next turn, checked to come exactly `after` from now: not even a millisecond earlier.
async fn next_turn_after(turns: &mut Turns, policy: &RoutingConfig, after: Duration) -> usize {
    let start = Instant::now();
    let next = turns.next(policy, true, |_| true);
    tokio::pin!(next);
    if let Some(before) = after.checked_sub(ms(1)) {
        assert!(
            tokio::time::timeout(before, &mut next).await.is_err(),
            "a turn came before {after:?}"
        );
    }
    let i = next.await.expect("a turn");
    assert_eq!(start.elapsed(), after, "the turn of candidate {i}");
    i
}

/// A route that failed with a plain retryable error (no `retry-after`).
fn failed(turns: &mut Turns, policy: &RoutingConfig, i: usize) {
    turns.retry_at[i] = retry_after_failure(policy, &UpstreamError::Timeout);
}

#[tokio::test(start_paused = true)]
async fn a_retry_waits_its_backoff_doubling_per_round_up_to_the_cap() {
    let policy = policy();
    let mut turns = Turns::new(2, Instant::now(), &policy);
    turns.jitter = longest;
    // The first round goes through every route without waiting.
    assert_eq!(next_turn_after(&mut turns, &policy, ms(0)).await, 0);
    failed(&mut turns, &policy, 0);
    assert_eq!(next_turn_after(&mut turns, &policy, ms(0)).await, 1);
    failed(&mut turns, &policy, 1);
    // Round 1: the base; round 2: twice it; round 3 would be 400 ms, capped at 300.
    for (round, wait) in [(1, 100), (2, 200), (3, 300), (4, 300)] {
        // Each backoff counts from the end of the attempt before it (here, at once).
        for i in 0..2 {
            assert_eq!(
                next_turn_after(&mut turns, &policy, ms(wait)).await,
                i,
                "round {round}"
            );
            failed(&mut turns, &policy, i);
        }
    }
}

#[tokio::test(start_paused = true)]
async fn the_backoff_jitter_never_goes_below_half_the_backoff() {
    let policy = policy();
    let mut turns = Turns::new(1, Instant::now(), &policy);
    turns.jitter = shortest;
    assert_eq!(next_turn_after(&mut turns, &policy, ms(0)).await, 0);
    for wait in [50, 100, 150, 150] {
        failed(&mut turns, &policy, 0);
        assert_eq!(next_turn_after(&mut turns, &policy, ms(wait)).await, 0);
    }
    // The random jitter stays within those ends.
    let random = Turns::new(1, Instant::now(), &policy).jitter;
    for _ in 0..200 {
        assert!((50..=100).contains(&random(50..=100)));
    }
}

#[tokio::test(start_paused = true)]
async fn a_retry_after_the_upstream_asked_for_is_waited_out_exactly_up_to_its_bound() {
    let policy = policy();
    let mut turns = Turns::new(1, Instant::now(), &policy);
    turns.jitter = longest;
    let limited = |after: u64| UpstreamError::Status {
        status: 429,
        body: Bytes::new(),
        retry_after: Some(ms(after)),
    };
    assert_eq!(next_turn_after(&mut turns, &policy, ms(0)).await, 0);
    // Longer than the 100 ms backoff: the route's next turn is at its retry-after, not before.
    turns.retry_at[0] = retry_after_failure(&policy, &limited(3_000));
    assert_eq!(next_turn_after(&mut turns, &policy, ms(3_000)).await, 0);
    // Shorter than the backoff (200 ms in round 2): the backoff.
    turns.retry_at[0] = retry_after_failure(&policy, &limited(20));
    assert_eq!(next_turn_after(&mut turns, &policy, ms(200)).await, 0);
    // At the bound (`max_retry_after`) it is still waited out; past it, the route is not retried.
    turns.retry_at[0] = retry_after_failure(&policy, &limited(10_000));
    assert_eq!(next_turn_after(&mut turns, &policy, ms(10_000)).await, 0);
    turns.retry_at[0] = retry_after_failure(&policy, &limited(10_001));
    let start = Instant::now();
    assert_eq!(turns.next(&policy, true, |_| true).await, None);
    assert_eq!(start.elapsed(), ms(0));
}

#[tokio::test(start_paused = true)]
async fn no_retry_is_waited_for_past_the_budget_and_no_route_starts_after_it() {
    let policy = RoutingConfig {
        retry_budget: ms(250),
        ..policy()
    };
    let started = Instant::now();
    let mut turns = Turns::new(2, started, &policy);
    turns.jitter = longest;
    assert_eq!(next_turn_after(&mut turns, &policy, ms(0)).await, 0);
    failed(&mut turns, &policy, 0);
    // The second route's first turn still starts 1 ms before the budget ends...
    tokio::time::advance(ms(249)).await;
    assert_eq!(next_turn_after(&mut turns, &policy, ms(0)).await, 1);
    failed(&mut turns, &policy, 1);
    // ...but a retry that would end its backoff (100 ms) past the budget is not waited for.
    assert_eq!(turns.next(&policy, true, |_| true).await, None);
    assert_eq!(started.elapsed(), ms(249));

    // At the budget's very end a route not tried yet does not start either.
    let started = Instant::now();
    let mut turns = Turns::new(2, started, &policy);
    assert_eq!(next_turn_after(&mut turns, &policy, ms(0)).await, 0);
    turns.retry_at[0] = None;
    tokio::time::advance(ms(250)).await;
    assert_eq!(turns.next(&policy, true, |_| true).await, None);
}

/// What a fake route does: answer or fail, `after` its start.
#[derive(Clone, Copy)]
enum Plan {
    Answers(u64),
    Fails(u64),
}

/// Runs `hedge` over two fake routes; returns its outcome and when each route started (from
/// the start of the hedge).
async fn hedged(plans: [Plan; 2], delay: Duration) -> (Hedged, Vec<(usize, Duration)>, Duration) {
    let start = Instant::now();
    let starts = Arc::new(Mutex::new(Vec::new()));
    let run = |i: usize| {
        let starts = starts.clone();
        async move {
            starts.lock().unwrap().push((i, start.elapsed()));
            let (after, answers) = match plans[i] {
                Plan::Answers(after) => (after, true),
                Plan::Fails(after) => (after, false),
            };
            tokio::time::sleep(ms(after)).await;
            let result = if answers {
                Ok(Answer::Json(Bytes::from_static(b"{}"), None))
            } else {
                Err(UpstreamError::Connect("refused".into()))
            };
            Ok(Tried {
                result,
                sends: 1,
                ttft: ms(after),
            })
        }
    };
    let out = hedge(run, delay).await.expect("hedged");
    let starts = starts.lock().unwrap().clone();
    (out, starts, start.elapsed())
}

#[tokio::test(start_paused = true)]
async fn the_second_route_starts_exactly_at_hedge_after_and_the_first_to_answer_wins() {
    let (out, starts, took) = hedged([Plan::Answers(500), Plan::Answers(100)], ms(200)).await;
    assert_eq!(starts, [(0, ms(0)), (1, ms(200))]);
    assert_eq!(took, ms(300));
    assert!(matches!(out.winner, Some((1, _, t)) if t == ms(100)));
    assert_eq!(out.sends, 2);
    // The first route had waited 300 ms without a token when the second's came.
    assert_eq!(out.slower, Some((0, ms(300))));

    // The first answers after the hedge started but before the second: the first is kept.
    let (out, starts, took) = hedged([Plan::Answers(250), Plan::Answers(100)], ms(200)).await;
    assert_eq!(starts, [(0, ms(0)), (1, ms(200))]);
    assert_eq!(took, ms(250));
    assert!(matches!(out.winner, Some((0, _, _))));
    assert_eq!(out.slower, Some((1, ms(50))));
}

#[tokio::test(start_paused = true)]
async fn a_first_route_that_answers_before_hedge_after_is_never_hedged() {
    let (out, starts, took) = hedged([Plan::Answers(199), Plan::Answers(1)], ms(200)).await;
    assert_eq!(starts, [(0, ms(0))]);
    assert_eq!(took, ms(199));
    assert!(matches!(out.winner, Some((0, _, _))));
    assert_eq!((out.sends, out.slower), (1, None));
}

#[tokio::test(start_paused = true)]
async fn a_first_route_that_fails_before_hedge_after_is_followed_at_once() {
    let (out, starts, took) = hedged([Plan::Fails(50), Plan::Answers(100)], ms(200)).await;
    assert_eq!(starts, [(0, ms(0)), (1, ms(50))]);
    assert_eq!(took, ms(150));
    assert!(matches!(out.winner, Some((1, _, _))));
    assert!(matches!(out.failures[..], [(0, UpstreamError::Connect(_))]));
    assert_eq!((out.sends, out.slower), (2, None));
}
