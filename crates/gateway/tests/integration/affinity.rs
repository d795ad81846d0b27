//! Cache-aware routing: a `balance` model spreads new conversations over its routes by weight,
//! and each later turn of a conversation goes back to the route that served the last one, where
//! the provider's prompt cache holds its prefix (the mock's `prompt_cache` option plays that
//! cache, one per route). 100 simulated agent conversations of 10 turns over two equal routes:
//! with affinity the cached tokens are at least 90% of what one route gives; without it only about
//! half of the turns find their whole previous prompt cached (the others find an older, shorter
//! prefix on the other route); the same across two instances sharing Redis. A pool of upstream
//! keys is one route per key.

use std::net::SocketAddr;

use futures_util::StreamExt;
use serde_json::{json, Value};

use crate::harness;
use crate::instances_limits::{test_redis, two_instances};

const CONVERSATIONS: usize = 100;
const TURNS: usize = 10;

/// Two equal routes (distinct upstream models, so distinct caches), balanced, with and without
/// affinity, and the same cache behind one route.
const MODELS: &str = r#"
[models.bal]
routes = ["mock/ma@prompt_cache=1", "mock/mb@prompt_cache=1"]
strategy = "balance"
input_price = "1.00"
output_price = "1.00"

[models."bal-noaff"]
routes = ["mock/mc@prompt_cache=1", "mock/md@prompt_cache=1"]
strategy = "balance"
affinity = false
input_price = "1.00"
output_price = "1.00"

[models.single]
routes = ["mock/me@prompt_cache=1"]
input_price = "1.00"
output_price = "1.00"
"#;

/// What a set of conversations got from the caches: cached prompt tokens, and the later turns
/// that found the whole prompt of the turn before them cached.
#[derive(Debug, Default, Clone, Copy)]
struct Cached {
    tokens: u64,
    warm_turns: u64,
}

/// One conversation of `TURNS` turns on `model`, turn `t` sent to `addrs[t % len]`.
async fn conversation(addrs: &[SocketAddr], key: &str, model: &str, n: usize) -> Cached {
    let mut messages = vec![
        json!({"role": "system", "content": format!("You are agent number {n}, a careful coder.")}),
        json!({"role": "user", "content": format!("Task {n}: read the files and fix the bug.")}),
    ];
    let mut cached = Cached::default();
    let mut last_prompt = None;
    for t in 0..TURNS {
        let addr = addrs[t % addrs.len()];
        let resp = harness::client()
            .post(format!("http://{addr}/v1/chat/completions"))
            .bearer_auth(key)
            .json(&json!({"model": model, "messages": messages, "max_tokens": 16}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let v: Value = resp.json().await.unwrap();
        let hit = v["usage"]["prompt_tokens_details"]["cached_tokens"]
            .as_u64()
            .unwrap();
        cached.tokens += hit;
        if last_prompt == Some(hit) {
            cached.warm_turns += 1;
        }
        last_prompt = v["usage"]["prompt_tokens"].as_u64();
        messages.push(v["choices"][0]["message"].clone());
        messages
            .push(json!({"role": "user", "content": format!("Turn {t}: go on with step {t}.")}));
    }
    cached
}

/// Every conversation on `model`, eight at a time, added up.
async fn all_conversations(addrs: &[SocketAddr], key: &str, model: &str) -> Cached {
    futures_util::stream::iter(0..CONVERSATIONS)
        .map(|n| conversation(addrs, key, model, n))
        .buffer_unordered(8)
        .fold(Cached::default(), |sum, c| async move {
            Cached {
                tokens: sum.tokens + c.tokens,
                warm_turns: sum.warm_turns + c.warm_turns,
            }
        })
        .await
}

#[tokio::test(flavor = "multi_thread")]
async fn conversations_stick_to_the_route_that_holds_their_cache() {
    let (gw, _mock) = harness::start_with_mock_top("", MODELS).await;
    let addrs = [gw.addr];
    let single = all_conversations(&addrs, &gw.key, "single").await;
    let sticky = all_conversations(&addrs, &gw.key, "bal").await;
    let spread = all_conversations(&addrs, &gw.key, "bal-noaff").await;
    eprintln!(
        "one route {single:?}, balanced with affinity {sticky:?}, without {spread:?} \
         (of {} later turns)",
        CONVERSATIONS * (TURNS - 1)
    );
    let later_turns = (CONVERSATIONS * (TURNS - 1)) as u64;
    assert_eq!(single.warm_turns, later_turns);
    assert!(
        sticky.tokens * 10 >= single.tokens * 9,
        "{sticky:?} vs {single:?}"
    );
    assert!(sticky.warm_turns * 10 >= later_turns * 9, "{sticky:?}");
    // Without affinity a turn lands on the route of the last one about half the time.
    assert!(
        spread.tokens * 10 < single.tokens * 9,
        "{spread:?} vs {single:?}"
    );
    assert!(
        spread.warm_turns * 4 > later_turns && spread.warm_turns * 4 < later_turns * 3,
        "{spread:?}"
    );
    // Both routes served new conversations (balance, not failover).
    let providers = gw.gw.routing.report(&gw.gw.config);
    let served = |route: &str| {
        providers
            .iter()
            .flat_map(|p| p.routes.iter())
            .find(|r| r.route == route)
            .map_or(0, |r| r.successes)
    };
    let (a, b) = (
        served("mock/ma@prompt_cache=1"),
        served("mock/mb@prompt_cache=1"),
    );
    assert_eq!(a + b, (CONVERSATIONS * TURNS) as u64);
    assert!(a > 200 && b > 200, "{a} / {b}");
    // The Providers page reads each route's cache hit share.
    let hit = providers
        .iter()
        .flat_map(|p| p.routes.iter())
        .find(|r| r.route == "mock/ma@prompt_cache=1")
        .unwrap()
        .cache_hit_ratio;
    assert!(hit > 0.5, "{hit}");
}

#[tokio::test(flavor = "multi_thread")]
async fn two_instances_share_the_binding_through_redis() {
    let Some(url) = test_redis() else { return };
    let (first, second, _mock) = two_instances(&format!("redis = \"{url}\""), MODELS).await;
    let addrs = [first.addr, second];
    let single = all_conversations(&addrs, &first.key, "single").await;
    let sticky = all_conversations(&addrs, &first.key, "bal").await;
    eprintln!("two instances: one route {single:?}, balanced with affinity {sticky:?}");
    assert!(
        sticky.tokens * 10 >= single.tokens * 9,
        "{sticky:?} vs {single:?}"
    );
    assert!(
        sticky.warm_turns * 10 >= single.warm_turns * 9,
        "{sticky:?} vs {single:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pool_of_upstream_keys_is_a_route_per_key_and_a_session_header_binds() {
    let mock = mock_upstream::MockUpstream::start().await.unwrap();
    let extra = format!(
        r#"
[providers.pool]
kind = "openai"
base_url = "{}"
api_keys = ["pool-key-one", "pool-key-two"]

[models.pooled]
routes = ["pool/m"]
strategy = "balance"
input_price = "1.00"
output_price = "1.00"
"#,
        mock.base_url()
    );
    let gw = harness::start(&harness::mock_config(&mock, &extra)).await;
    let send = |session: String| {
        harness::client()
            .post(gw.url("/v1/chat/completions"))
            .bearer_auth(&gw.key)
            .header("x-session-id", session)
            .json(&json!({"model": "pooled", "messages": harness::user("hi")}))
            .send()
    };
    let mut by_session = Vec::new();
    for s in 0..20 {
        let mut served = Vec::new();
        for _ in 0..3 {
            let resp = send(format!("session-{s}")).await.unwrap();
            assert_eq!(resp.status(), 200);
            served.push(
                resp.headers()["x-switchyard-provider"]
                    .to_str()
                    .unwrap()
                    .to_owned(),
            );
        }
        by_session.push(served);
    }
    // Each session keeps its member; both members (keys) served sessions.
    for served in &by_session {
        assert!(served.iter().all(|p| p == &served[0]), "{served:?}");
    }
    let members: std::collections::HashSet<&str> =
        by_session.iter().map(|s| s[0].as_str()).collect();
    assert_eq!(members, ["pool#1", "pool#2"].into_iter().collect());
    // Each member sent its own key upstream.
    let bearers: std::collections::HashSet<String> = mock
        .requests()
        .iter()
        .flat_map(|r| r.headers.clone())
        .filter(|(name, _)| name == "authorization")
        .map(|(_, v)| v)
        .collect();
    assert!(bearers.contains("Bearer pool-key-one") && bearers.contains("Bearer pool-key-two"));
}
