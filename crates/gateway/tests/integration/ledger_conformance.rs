//! One ledger conformance suite, run against SQLite and PostgreSQL alike: keys and their changes,
//! settlements (entry and debit together, exactly once, nothing lost under concurrency), holds
//! that never exceed the balance or budget, budget periods, and usage reports.
//!
//! PostgreSQL comes from `SWITCHYARD_TEST_POSTGRES` (e.g. `postgres://postgres@127.0.0.1:5432/test`);
//! every test creates its own database `sy_<random>` there and drops it afterwards. Without the
//! variable the PostgreSQL half says so loudly and passes, unless `CI` is set, where it fails.

use std::future::Future;
use std::time::Duration;

use serde_json::json;
use sqlx::Connection;
use switchyard::auth;
use switchyard::store::ledger::periods::BudgetPeriod;
use switchyard::store::ledger::{
    now_ms, Budget, EndReason, GroupBy, KeyUpdate, Ledger, LedgerError, Nanos, NewKey, TokenSource,
    UsageEntry, UsageQuery, MAX_AMOUNT,
};

const DAY: i64 = 86_400_000;

/// A fresh database of one backend, with its ledger.
pub(crate) struct TestDb {
    pub ledger: Ledger,
    pub url: String,
    pg: Option<(String, String)>,
}

fn random_name() -> String {
    format!("sy_{}", auth::new_id("", 12).to_ascii_lowercase())
}

/// The PostgreSQL server URL, or `None` (after saying so loudly) when it is not configured.
pub(crate) fn postgres_url() -> Option<String> {
    match std::env::var("SWITCHYARD_TEST_POSTGRES") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI is set but SWITCHYARD_TEST_POSTGRES is not: the PostgreSQL half of the ledger suite cannot run"
            );
            crate::harness::skipped("SKIPPED (PostgreSQL): set SWITCHYARD_TEST_POSTGRES, e.g. postgres://postgres@127.0.0.1:5432/test");
            None
        }
    }
}

impl TestDb {
    pub(crate) async fn sqlite() -> TestDb {
        let url = format!("sqlite://{}", crate::harness::temp_db().display());
        TestDb {
            ledger: Ledger::connect(&url).await.expect("sqlite ledger"),
            url,
            pg: None,
        }
    }

    /// A fresh PostgreSQL database on the configured server.
    pub(crate) async fn postgres(server: &str) -> TestDb {
        sqlx::any::install_default_drivers();
        let name = random_name();
        let mut admin = sqlx::AnyConnection::connect(server)
            .await
            .expect("connect to SWITCHYARD_TEST_POSTGRES");
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut admin)
            .await
            .expect("create the test database");
        admin.close().await.ok();
        let (base, query) = match server.split_once('?') {
            Some((b, q)) => (b, format!("?{q}")),
            None => (server, String::new()),
        };
        let root = &base[..base
            .rfind('/')
            .filter(|i| *i > "postgres://".len())
            .unwrap_or(base.len())];
        let url = format!("{root}/{name}{query}");
        TestDb {
            ledger: Ledger::connect(&url).await.expect("postgres ledger"),
            url,
            pg: Some((server.to_owned(), name)),
        }
    }

    pub(crate) async fn drop_db(self) {
        self.ledger.close().await;
        match self.pg {
            Some((server, name)) => {
                if let Ok(mut admin) = sqlx::AnyConnection::connect(&server).await {
                    let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .execute(&mut admin)
                        .await;
                }
            }
            None => {
                let path = self.url.trim_start_matches("sqlite://").to_owned();
                for suffix in ["", "-wal", "-shm"] {
                    let _ = std::fs::remove_file(format!("{path}{suffix}"));
                }
            }
        }
    }
}

/// Runs `test` on a fresh database and drops the database afterwards, also when the test fails.
pub(crate) async fn run_on<F, Fut>(db: TestDb, test: F)
where
    F: FnOnce(Ledger) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let outcome = tokio::spawn(test(db.ledger.clone())).await;
    db.drop_db().await;
    if let Err(e) = outcome {
        if let Ok(panic) = e.try_into_panic() {
            std::panic::resume_unwind(panic);
        }
        panic!("the test task was cancelled");
    }
}

macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::run_on(super::TestDb::sqlite().await, super::$name).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let Some(server) = super::postgres_url() else { return };
                    super::run_on(super::TestDb::postgres(&server).await, super::$name).await;
                }
            )*
        }
    };
}

conformance!(
    keys_keep_every_field_and_never_the_key,
    key_updates_apply_and_bump_the_version,
    settlement_writes_entry_and_debit_once,
    concurrent_settlements_lose_nothing,
    holds_never_exceed_the_balance,
    budgets_count_only_the_current_period,
    usage_reports_group_and_filter,
    balance_arithmetic_is_checked,
);

fn entry(request_id: &str, key_id: &str, model: &str, cost: i64, at: i64) -> UsageEntry {
    UsageEntry {
        request_id: request_id.to_owned(),
        key_id: key_id.to_owned(),
        requested_model: model.to_owned(),
        served_model: Some(format!("{model}-2025")),
        provider: Some("mock".into()),
        attempts: 2,
        prompt_tokens: 15,
        completion_tokens: 42,
        reasoning_tokens: 7,
        cached_tokens: 3,
        cache_write_tokens: 5,
        cache_saved: Nanos(-1_234),
        token_source: TokenSource::ProviderReported,
        cost: Nanos(cost),
        end_reason: EndReason::Stop,
        ttft_ms: Some(120),
        duration_ms: 900,
        stream: true,
        started_at: at - 900,
        finished_at: at,
        hold: Nanos(cost),
        over_hold: false,
        note: None,
        upstream_status: None,
        status: None,
        error_text: None,
        dropped: Vec::new(),
        tags: Vec::new(),
        request_type: None,
    }
}

async fn new_key(ledger: &Ledger, credits: i64) -> String {
    let (k, key) = auth::create_key(
        ledger,
        &NewKey {
            name: "t".into(),
            credits: Nanos(credits),
            ..NewKey::default()
        },
    )
    .await
    .unwrap();
    assert!(key.starts_with("sk-sy-"));
    k.id
}

async fn keys_keep_every_field_and_never_the_key(ledger: Ledger) {
    let expires = now_ms() + 30 * DAY;
    let (k, key) = auth::create_key(
        &ledger,
        &NewKey {
            name: "search team".into(),
            credits: Nanos(2_500_000_000),
            rpm: Some(60),
            tpm: Some(100_000),
            max_concurrent: Some(5),
            models: Some(vec!["gpt-4o".into(), "m".into()]),
            budget: Some(Budget {
                limit: Nanos(1_000_000_000),
                period: BudgetPeriod::Day,
            }),
            expires_at: Some(expires),
            metadata: Some(json!({"team": "search", "n": 1})),
            quotas: switchyard::store::ledger::quotas::parse_spec("5h:usd=2,7d:requests=10")
                .unwrap(),
        },
    )
    .await
    .unwrap();
    let back = ledger.key(&k.id).await.unwrap().unwrap();
    assert_eq!(back.quotas.len(), 2);
    assert_eq!(back.quotas, k.quotas);
    // A settlement counts in every window, in the same transaction as its debit.
    let mut e = entry("req_quota", &k.id, "m", 1_234, now_ms());
    e.tags.clear();
    ledger.settle(&e, None).await.unwrap();
    let charged = ledger.key(&k.id).await.unwrap().unwrap();
    assert_eq!(charged.quotas[0].used(now_ms()), (1_234, 1, 57));
    assert_eq!(charged.quotas[1].used(now_ms()).1, 1);
    assert_eq!(back.name, "search team");
    assert_eq!(back.balance, Nanos(2_500_000_000));
    assert_eq!(
        (back.rpm, back.tpm, back.max_concurrent),
        (Some(60), Some(100_000), Some(5))
    );
    assert_eq!(back.models, Some(vec!["gpt-4o".to_owned(), "m".to_owned()]));
    assert_eq!(back.budget.unwrap().period, BudgetPeriod::Day);
    assert_eq!(back.budget.unwrap().limit, Nanos(1_000_000_000));
    assert_eq!(back.expires_at, Some(expires));
    assert_eq!(back.metadata, Some(json!({"team": "search", "n": 1})));
    let found = ledger
        .key_by_hash(&auth::hash_key(&key))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.id, k.id);
    let shown = back.to_json(Nanos::ZERO).to_string();
    assert!(
        !shown.contains(&key),
        "the key itself is never stored or shown"
    );
    assert_eq!(ledger.keys().await.unwrap().len(), 1);
    let revoked = ledger.revoke_key(&k.id).await.unwrap();
    assert!(revoked.revoked_at.is_some());
    assert!(ledger
        .key_by_hash(&auth::hash_key(&key))
        .await
        .unwrap()
        .is_none());
    assert!(ledger.revoke_key("key_nope").await.is_err());
}

async fn key_updates_apply_and_bump_the_version(ledger: Ledger) {
    let id = new_key(&ledger, 1_000).await;
    let v0 = ledger.key(&id).await.unwrap().unwrap().version;
    let k = ledger.top_up(&id, Nanos(500)).await.unwrap();
    assert_eq!(k.balance, Nanos(1_500));
    assert!(k.version > v0);
    let k = ledger
        .update_key(
            &id,
            &KeyUpdate {
                name: Some("renamed".into()),
                set_credits: Some(Nanos(10)),
                add_credits: Some(Nanos(5)),
                rpm: Some(Some(5)),
                models: Some(Some(vec!["m".into()])),
                budget: Some(Some(Budget {
                    limit: Nanos(7),
                    period: BudgetPeriod::Month,
                })),
                metadata: Some(Some(json!({"a": [1, 2]}))),
                ..KeyUpdate::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(k.name, "renamed");
    assert_eq!(k.balance, Nanos(15));
    assert_eq!(k.rpm, Some(5));
    assert_eq!(k.models, Some(vec!["m".to_owned()]));
    assert_eq!(k.budget.unwrap().period, BudgetPeriod::Month);
    assert_eq!(k.metadata, Some(json!({"a": [1, 2]})));
    let k = ledger
        .update_key(
            &id,
            &KeyUpdate {
                rpm: Some(None),
                models: Some(None),
                budget: Some(None),
                metadata: Some(None),
                ..KeyUpdate::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(
        (k.rpm, k.models, k.budget, k.metadata),
        (None, None, None, None)
    );
    assert_eq!(k.name, "renamed");
    assert_eq!(k.balance, Nanos(15));
    assert!(ledger
        .update_key("key_nope", &KeyUpdate::default())
        .await
        .is_err());
}

async fn settlement_writes_entry_and_debit_once(ledger: Ledger) {
    let id = new_key(&ledger, 1_000_000).await;
    let now = now_ms();
    let e = entry("req_once", &id, "m", 12_345, now);
    ledger.settle(&e, None).await.unwrap();
    let k = ledger.key(&id).await.unwrap().unwrap();
    assert_eq!(k.balance, Nanos(1_000_000 - 12_345));
    assert_eq!(k.spent, Nanos(12_345));
    assert_eq!(k.period_spend(now), Nanos(12_345));
    // The same request id again (a replay): accepted, nothing debited twice.
    ledger.settle(&e, None).await.unwrap();
    let k2 = ledger.key(&id).await.unwrap().unwrap();
    assert_eq!(k2.balance, k.balance);
    let row = ledger.entry("req_once").await.unwrap().unwrap();
    assert_eq!(row.key_id, id);
    assert_eq!(row.requested_model, "m");
    assert_eq!(row.served_model.as_deref(), Some("m-2025"));
    assert_eq!(row.provider.as_deref(), Some("mock"));
    assert_eq!(row.attempts, 2);
    assert_eq!(
        (
            row.prompt_tokens,
            row.completion_tokens,
            row.reasoning_tokens,
            row.cached_tokens
        ),
        (15, 42, 7, 3)
    );
    assert_eq!(
        (row.cache_write_tokens, row.cache_saved),
        (5, Nanos(-1_234))
    );
    assert_eq!(row.token_source, "provider_reported");
    assert_eq!(row.cost, Nanos(12_345));
    assert_eq!(row.end_reason, "stop");
    assert_eq!(row.ttft_ms, Some(120));
    assert_eq!(row.duration_ms, 900);
    assert!(row.stream);
    assert_eq!(
        (row.started_at, row.finished_at),
        (Some(now - 900), Some(now))
    );
    // A free entry is recorded without touching the balance.
    let mut free = entry("req_free", &id, "m", 0, now);
    free.end_reason = EndReason::Cancelled;
    free.token_source = TokenSource::Estimated;
    ledger.settle(&free, None).await.unwrap();
    let row = ledger.entry("req_free").await.unwrap().unwrap();
    assert_eq!(
        (row.end_reason.as_str(), row.token_source.as_str()),
        ("cancelled", "estimated")
    );
    assert_eq!(ledger.key(&id).await.unwrap().unwrap().balance, k.balance);
    let found = ledger
        .wait_for_entry("req_free", Duration::from_secs(1))
        .await
        .unwrap();
    assert!(found.is_some());
}

async fn concurrent_settlements_lose_nothing(ledger: Ledger) {
    let id = new_key(&ledger, 1_000_000).await;
    let now = now_ms();
    let tasks: Vec<_> = (0..40)
        .map(|i| {
            let (ledger, id) = (ledger.clone(), id.clone());
            tokio::spawn(async move {
                ledger
                    .settle(&entry(&format!("req_c{i}"), &id, "m", 1_000 + i, now), None)
                    .await
                    .unwrap();
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let total: i64 = (0..40).map(|i| 1_000 + i).sum();
    let k = ledger.key(&id).await.unwrap().unwrap();
    assert_eq!(k.balance, Nanos(1_000_000 - total));
    assert_eq!(k.spent, Nanos(total));
    assert_eq!(k.period_spend(now), Nanos(total));
}

async fn holds_never_exceed_the_balance(ledger: Ledger) {
    let id = new_key(&ledger, 10_000).await;
    let account = ledger.account(&id).await.unwrap();
    let now = now_ms();
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let account = account.clone();
            tokio::spawn(async move { account.try_hold(Nanos(1_000), 0, now) })
        })
        .collect();
    let mut holds = vec![];
    for t in tasks {
        if let Ok(h) = t.await.unwrap() {
            holds.push(h);
        }
    }
    assert_eq!(holds.len(), 10);
    assert_eq!(account.view().reserved, Nanos(10_000));
    // Settling one for less than its hold frees the rest of it.
    let h = holds.pop().unwrap();
    ledger
        .settle(&entry("req_h", &id, "m", 400, now), Some(h))
        .await
        .unwrap();
    let view = account.view();
    assert_eq!(view.key.balance, Nanos(9_600));
    assert_eq!(view.reserved, Nanos(9_000));
    assert!(account.try_hold(Nanos(600), 0, now).is_ok_and(|h| {
        drop(h);
        true
    }));
    assert!(account.try_hold(Nanos(601), 0, now).is_err());
    drop(holds);
    assert_eq!(account.view().reserved, Nanos::ZERO);
    // A top-up through the ledger reaches the account at once.
    ledger.top_up(&id, Nanos(400)).await.unwrap();
    assert_eq!(account.view().key.balance, Nanos(10_000));
}

async fn budgets_count_only_the_current_period(ledger: Ledger) {
    let (k, _) = auth::create_key(
        &ledger,
        &NewKey {
            name: "b".into(),
            credits: Nanos(1_000_000),
            budget: Some(Budget {
                limit: Nanos(1_000),
                period: BudgetPeriod::Day,
            }),
            ..NewKey::default()
        },
    )
    .await
    .unwrap();
    let now = now_ms();
    // Yesterday's spend does not count against today's budget.
    ledger
        .settle(&entry("req_y", &k.id, "m", 900, now - DAY), None)
        .await
        .unwrap();
    let key = ledger.key(&k.id).await.unwrap().unwrap();
    assert_eq!(key.period_spend(now), Nanos::ZERO);
    assert_eq!(key.period_spend(now - DAY), Nanos(900));
    ledger
        .settle(&entry("req_t", &k.id, "m", 700, now), None)
        .await
        .unwrap();
    let account = ledger.account(&k.id).await.unwrap();
    assert_eq!(account.view().key.period_spend(now), Nanos(700));
    assert!(account.try_hold(Nanos(301), 0, now).is_err());
    let h = account.try_hold(Nanos(300), 0, now).unwrap();
    assert!(account.try_hold(Nanos(1), 0, now).is_err());
    drop(h);
    // Switching to a monthly budget recounts this month's spend from the entries.
    let key = ledger
        .update_key(
            &k.id,
            &KeyUpdate {
                budget: Some(Some(Budget {
                    limit: Nanos(5_000),
                    period: BudgetPeriod::Month,
                })),
                ..KeyUpdate::default()
            },
        )
        .await
        .unwrap();
    let month_start = BudgetPeriod::Month.start_of(now);
    let expected = if now - DAY >= month_start { 1_600 } else { 700 };
    assert_eq!(key.period_spend(now), Nanos(expected));
}

async fn usage_reports_group_and_filter(ledger: Ledger) {
    let a = new_key(&ledger, 1_000_000).await;
    let b = new_key(&ledger, 1_000_000).await;
    let today = BudgetPeriod::Day.start_of(now_ms()) + 3_600_000;
    let yesterday = today - DAY;
    for (i, (key, model, cost, at, tags)) in [
        (&a, "m", 100, today, &["team-a", "ci"][..]),
        (&a, "m", 200, today, &["team-a"][..]),
        (&a, "gpt-4o", 300, yesterday, &[][..]),
        (&b, "m", 400, today, &["ci"][..]),
    ]
    .into_iter()
    .enumerate()
    {
        let mut e = entry(&format!("req_r{i}"), key, model, cost, at);
        e.tags = tags.iter().map(|t| t.to_string()).collect();
        ledger.settle(&e, None).await.unwrap();
    }
    let report = |group_by, since_ms, until_ms, key_id: Option<&str>| {
        let ledger = ledger.clone();
        let q = UsageQuery {
            group_by,
            since_ms,
            until_ms,
            key_id: key_id.map(str::to_owned),
        };
        async move { ledger.usage_report(&q).await.unwrap() }
    };
    let by_model = report(GroupBy::Model, 0, None, None).await;
    let pairs: Vec<_> = by_model
        .iter()
        .map(|g| (g.group.as_str(), g.requests, g.cost.0, g.completion_tokens))
        .collect();
    assert_eq!(pairs, vec![("gpt-4o", 1, 300, 42), ("m", 3, 700, 126)]);
    // An entry counts under each of its tags; untagged entries under none.
    let by_tag = report(GroupBy::Tag, 0, None, None).await;
    let tags: Vec<_> = by_tag
        .iter()
        .map(|g| (g.group.as_str(), g.requests, g.cost.0))
        .collect();
    assert_eq!(tags, vec![("ci", 2, 500), ("team-a", 2, 300)]);
    let a_tags = report(GroupBy::Tag, 0, None, Some(&a)).await;
    assert_eq!(a_tags[0].cost.0, 100);
    let by_key = report(GroupBy::Key, 0, None, None).await;
    let mut keys: Vec<_> = by_key.iter().map(|g| (g.group.clone(), g.cost.0)).collect();
    keys.sort();
    let mut expected = vec![(a.clone(), 600), (b.clone(), 400)];
    expected.sort();
    assert_eq!(keys, expected);
    let by_day = report(GroupBy::Day, 0, None, Some(&a)).await;
    assert_eq!(by_day.len(), 2);
    assert_eq!(by_day[0].cost.0, 300);
    assert_eq!(by_day[1].cost.0, 300);
    assert_eq!(by_day[1].group.len(), "2026-11-22".len());
    // since/until select a time range: [today, ∞) and [0, today).
    let since_today = report(GroupBy::Key, today - 1, None, Some(&a)).await;
    assert_eq!(since_today[0].cost.0, 300);
    let until_today = report(GroupBy::Model, 0, Some(today - 1), None).await;
    assert_eq!(until_today.len(), 1);
    assert_eq!(until_today[0].group, "gpt-4o");
    assert_eq!(by_model[1].reasoning_tokens, 21);
    assert_eq!(by_model[1].cached_tokens, 9);
    // Three entries of 15 prompt tokens, 3 of them read from a cache and 5 written to one.
    assert_eq!(by_model[1].cache_write_tokens, 15);
    assert_eq!(by_model[1].cache_hit_ratio, 0.2);
    assert_eq!(by_model[1].cache_saved, Nanos(-3 * 1_234));
}

/// No balance change overflows, on either database: a top-up or a set balance past `MAX_AMOUNT`
/// is refused and changes nothing, and debits far beyond any balance stop at a bound instead of
/// wrapping or (on SQLite) turning the column into a REAL that no longer reads as an integer.
async fn balance_arithmetic_is_checked(ledger: Ledger) {
    let id = new_key(&ledger, MAX_AMOUNT.0 - 10).await;
    let refused = ledger.top_up(&id, Nanos(11)).await;
    assert!(
        matches!(refused, Err(LedgerError::BalanceOutOfRange)),
        "{refused:?}"
    );
    for amount in [i64::MAX, i64::MIN, MAX_AMOUNT.0 + 1] {
        let refused = ledger.top_up(&id, Nanos(amount)).await;
        assert!(
            matches!(refused, Err(LedgerError::BalanceOutOfRange)),
            "{amount}: {refused:?}"
        );
    }
    let refused = ledger
        .update_key(
            &id,
            &KeyUpdate {
                set_credits: Some(Nanos(MAX_AMOUNT.0 - 5)),
                add_credits: Some(Nanos(6)),
                ..KeyUpdate::default()
            },
        )
        .await;
    assert!(
        matches!(refused, Err(LedgerError::BalanceOutOfRange)),
        "{refused:?}"
    );
    assert_eq!(
        ledger.key(&id).await.unwrap().unwrap().balance,
        Nanos(MAX_AMOUNT.0 - 10)
    );
    assert_eq!(
        ledger.top_up(&id, Nanos(10)).await.unwrap().balance,
        MAX_AMOUNT
    );
    // A change that leaves the balance alone is not refused, whatever the balance.
    let k = ledger
        .update_key(
            &id,
            &KeyUpdate {
                rpm: Some(Some(7)),
                ..KeyUpdate::default()
            },
        )
        .await
        .unwrap();
    assert_eq!((k.rpm, k.balance), (Some(7), MAX_AMOUNT));
    let too_rich = NewKey {
        name: "too rich".into(),
        credits: Nanos(MAX_AMOUNT.0 + 1),
        ..NewKey::default()
    };
    assert!(matches!(
        auth::create_key(&ledger, &too_rich).await,
        Err(LedgerError::BalanceOutOfRange)
    ));

    // Two settlements of the largest cost an entry can carry (an absurd upstream usage report).
    let now = now_ms();
    for n in 0..2 {
        ledger
            .settle(
                &entry(&format!("req_huge_{n}"), &id, "m", i64::MAX, now),
                None,
            )
            .await
            .unwrap();
    }
    let k = ledger.key(&id).await.unwrap().unwrap();
    assert!(
        k.balance.0 < 0 && k.balance.0 >= -(1 << 62),
        "{:?}",
        k.balance
    );
    assert!(k.spent.0 > 0 && k.spent.0 <= 1 << 62, "{:?}", k.spent);
    // The key still reads back as integers in every listing.
    assert!(ledger.keys().await.unwrap().iter().any(|k| k.id == id));
}

/// `sqlite::memory:` gives every pooled connection a database of its own: it used to start, then
/// answer every request with 503 (the writer's connection had no tables). It is refused up front.
#[tokio::test]
async fn an_in_memory_sqlite_database_is_refused_with_advice() {
    for url in ["sqlite::memory:", "sqlite://:memory:"] {
        let err = Ledger::connect(url).await.err().expect("refused");
        assert!(matches!(err, LedgerError::InMemorySqlite), "{url}: {err}");
        assert!(err.to_string().contains("use a file"), "{err}");
    }
}
