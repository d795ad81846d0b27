//! Several gateway processes on one PostgreSQL database with `instances = "shared"`: the holds
//! of every instance are taken against one shared account, so a key's balance is never
//! over-committed whichever instance admits. Two real `switchyard serve` processes, a fresh
//! database on the server in `SWITCHYARD_TEST_POSTGRES` (skipped loudly without it, failing
//! under `CI`).
//!
//! And what shared admission does while PostgreSQL is away: new requests get a clear 503 (no
//! instance admits against money it cannot see), requests in flight finish and settle through
//! the journal, and admission resumes by itself when the server is back, every request billed
//! once and no hold left. That test runs a private PostgreSQL server (`ledger_outage`).

use std::path::Path;
use std::time::{Duration, Instant};

use mock_upstream::MockUpstream;
use serde_json::json;
use sqlx::Connection;

use crate::harness::{self, books, temp_db, user, TestGateway};
use crate::ledger_conformance::{postgres_url, TestDb};
use crate::ledger_outage::{journal_next_to, PrivatePostgres};

/// One request's worst case: 100 output tokens at USD 10 per million, the prompt free.
const HOLD_NANOS: i64 = 100 * 10_000;
/// What the key affords.
const AFFORDS: usize = 10;
const CONCURRENT: usize = 60;

fn config(mock: &MockUpstream, database: &str, dir: &Path, instances: &str) -> String {
    format!(
        r#"
database = "{database}"
journal = "{journal}"
instances = "{instances}"
demo_credits = "{credits}"

[providers.mock]
kind = "openai"
base_url = "{base}"
api_key = "upstream-secret-key"

[models.m]
routes = ["mock/m"]
input_price = "0"
output_price = "10.00"
"#,
        journal = dir.join("switchyard.journal").display(),
        credits = rust_decimal::Decimal::new(HOLD_NANOS * AFFORDS as i64, 9),
        base = mock.base_url(),
    )
}

async fn serve(
    dir: &Path,
    config: &str,
) -> (
    tokio::process::Child,
    Option<String>,
    String,
    harness::Output,
) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("switchyard.toml"), config).unwrap();
    let args = [
        "serve",
        "--config",
        "switchyard.toml",
        "--listen",
        "127.0.0.1:0",
    ];
    harness::serve_binary_with(dir, &args, &[]).await
}

/// One in-process instance with shared holds on the database at `database`, in front of `mock`
/// (`extra` config appended), with a journal of its own.
async fn shared_instance(mock: &MockUpstream, extra: &str, database: &str) -> TestGateway {
    let scratch = temp_db();
    let config = format!(
        "instances = \"shared\"\njournal = {:?}\n{}",
        journal_next_to(&scratch),
        harness::mock_config(mock, extra)
    );
    harness::start_on_database(&config, database, scratch).await
}

/// Starts two instances on the database at `url`, sends `CONCURRENT` requests split between them
/// at once, and returns how many got 200, how many 402, and the key's balance and open holds after.
async fn burst(url: &str, instances: &str) -> (usize, usize, i64, i64) {
    let mock = MockUpstream::start().await.unwrap();
    // Every answer costs exactly its hold (100 tokens), and is slow enough that many are open
    // at once.
    mock.set_options(json!({"tokens": 100, "ttft_ms": 300}))
        .unwrap();
    let root = temp_db();
    let (a_dir, b_dir) = (root.join("a"), root.join("b"));
    let (mut a, key, a_base, _) = serve(&a_dir, &config(&mock, url, &a_dir, instances)).await;
    let key = key.expect("the first instance creates the key on a fresh database");
    let (mut b, none, b_base, _) = serve(&b_dir, &config(&mock, url, &b_dir, instances)).await;
    assert!(none.is_none(), "the second instance finds the key");

    let client = harness::client();
    let requests = (0..CONCURRENT).map(|i| {
        let base = if i % 2 == 0 { &a_base } else { &b_base };
        client
            .post(format!("{base}/chat/completions"))
            .bearer_auth(&key)
            .json(&json!({"model": "m", "max_tokens": 100, "messages": user("hi")}))
            .send()
    });
    let answers = futures_util::future::join_all(requests).await;
    let (mut ok, mut refused) = (0, 0);
    for resp in answers {
        let resp = resp.unwrap();
        match resp.status().as_u16() {
            200 => ok += 1,
            402 => {
                let body: serde_json::Value = resp.json().await.unwrap();
                assert_eq!(body["error"]["code"], "insufficient_quota", "{body}");
                refused += 1;
            }
            other => panic!("unexpected {other}: {}", resp.text().await.unwrap()),
        }
    }
    a.kill().await.ok();
    b.kill().await.ok();
    let _ = std::fs::remove_dir_all(&root);

    let mut conn = sqlx::AnyConnection::connect(url).await.unwrap();
    let (balance, reserved): (i64, i64) =
        sqlx::query_as("SELECT balance_nanos, reserved_nanos FROM api_keys")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    conn.close().await.ok();
    (ok, refused, balance, reserved)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_answer_exactly_what_the_balance_affords() {
    let Some(server) = postgres_url() else {
        return;
    };
    let db = TestDb::postgres(&server).await;
    let url = db.url.clone();
    let (ok, refused, balance, reserved) = burst(&url, "shared").await;
    db.drop_db().await;
    assert_eq!(
        (ok, refused),
        (AFFORDS, CONCURRENT - AFFORDS),
        "answered and refused with 402"
    );
    // Debits only lower the balance, so its last value is its lowest.
    assert_eq!(balance, 0, "the balance ends at exactly zero, never below");
    assert_eq!(reserved, 0, "no hold is left open");
}

/// The control: the same burst with holds in each process's memory over-commits the balance,
/// which is what `instances = "shared"` is for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_single_instances_on_one_database_over_commit_the_balance() {
    let Some(server) = postgres_url() else {
        return;
    };
    let db = TestDb::postgres(&server).await;
    let url = db.url.clone();
    let (ok, _, balance, _) = burst(&url, "single").await;
    db.drop_db().await;
    assert!(ok > AFFORDS, "{ok} answered");
    assert!(balance < 0, "{balance}");
}

/// How long the private server stays down at least.
const OUTAGE: Duration = Duration::from_secs(10);

/// A non-streamed request's status and body.
async fn ask(gw: &TestGateway, model: &str) -> (u16, serde_json::Value, Option<String>) {
    let resp = gw
        .chat(json!({"model": model, "messages": user("hi")}))
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let id = resp
        .headers()
        .get("x-request-id")
        .map(|v| v.to_str().unwrap().to_owned());
    (status, resp.json().await.unwrap(), id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_admission_refuses_with_503_while_postgres_is_down_and_resumes_by_itself() {
    let Some(pg) = PrivatePostgres::start().await else {
        return;
    };
    let mock = MockUpstream::start().await.unwrap();
    mock.set_options(json!({"tokens": 5})).unwrap();
    // A stream that is admitted before the outage and ends during it.
    let slow = MockUpstream::start().await.unwrap();
    slow.set_options(json!({"tokens": 8, "gap_ms": 500}))
        .unwrap();
    let slow_model = format!(
        "[providers.slow]\nkind = \"openai\"\nbase_url = \"{}\"\napi_key = \"k\"\n\
         [models.slow]\nroutes = [\"slow/m\"]\ninput_price = \"2.50\"\noutput_price = \"10.00\"\n",
        slow.base_url()
    );
    let gw = shared_instance(&mock, &slow_model, &pg.url()).await;
    let ledger = gw.gw.ledger.clone();
    assert!(ledger.shares_holds());
    let credits = ledger.key(&gw.key_id).await.unwrap().unwrap().balance;
    let (status, body, warm) = ask(&gw, "m").await;
    assert_eq!(status, 200, "{body}");

    let in_flight = {
        let req = gw.chat(json!({"model": "slow", "stream": true, "messages": user("hi")}));
        tokio::spawn(async move {
            let resp = req.send().await.unwrap();
            let id = harness::request_id(&resp);
            let status = resp.status().as_u16();
            (status, id, resp.text().await.unwrap())
        })
    };
    let key = gw.key_id.clone();
    // The stream's hold is in the database before the server stops.
    let mut held = false;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !held && Instant::now() < deadline {
        held = ledger.account_view(&key).await.unwrap().reserved
            > switchyard::store::ledger::Nanos::ZERO;
    }
    assert!(held, "the stream's hold is visible to every instance");

    pg.stop().await;
    let stopped = Instant::now();
    let mut refused = 0;
    // Requests keep arriving through the outage, ten a second.
    let mut pace = tokio::time::interval(Duration::from_millis(100));
    while stopped.elapsed() < OUTAGE {
        pace.tick().await;
        let (status, body, _) = ask(&gw, "m").await;
        assert_eq!(status, 503, "{body}");
        assert_eq!(body["error"]["type"], "service_unavailable", "{body}");
        assert!(
            !body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("postgres://"),
            "{body}"
        );
        refused += 1;
    }
    let (status, stream_id, text) = in_flight.await.unwrap();
    assert_eq!(status, 200);
    assert!(
        text.contains("data: [DONE]"),
        "the stream in flight finished: {text}"
    );
    eprintln!("{refused} requests refused with 503 during the outage");

    pg.restart().await;
    let mut answered = vec![warm.unwrap(), stream_id];
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, body, id) = ask(&gw, "m").await;
        if status == 200 {
            answered.push(id.unwrap());
            break;
        }
        assert_eq!(status, 503, "{body}");
        assert!(Instant::now() < deadline, "admission never resumed: {body}");
    }
    for id in &answered {
        let e = ledger
            .wait_for_entry(id, Duration::from_secs(30))
            .await
            .unwrap();
        assert!(e.is_some(), "{id} was never written");
    }
    let (entries, balance) = books(&ledger, &key).await;
    assert_eq!(
        entries.len(),
        answered.len(),
        "one entry per answered request"
    );
    let billed: i64 = entries.values().map(|e| e.cost.0).sum();
    assert_eq!(balance.0, credits.0 - billed, "each billed exactly once");
    let mut released = false;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !released && Instant::now() < deadline {
        released = ledger.account_view(&key).await.unwrap().reserved
            == switchyard::store::ledger::Nanos::ZERO;
    }
    assert!(released, "no hold is left in the database");
}

/// A hung PostgreSQL (every process `SIGSTOP`ped: connections open, nothing answers) costs each
/// request at most the shared-hold timeout before its 503; once it answers again (`SIGCONT`),
/// admission resumes by itself, and every answered request is billed once. The hang guard is far
/// above the bound: it only tells a hang from an answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_postgres_costs_each_request_at_most_the_hold_timeout() {
    let Some(pg) = PrivatePostgres::start().await else {
        return;
    };
    let mock = MockUpstream::start().await.unwrap();
    mock.set_options(json!({"tokens": 5})).unwrap();
    let gw = shared_instance(&mock, "", &pg.url()).await;
    let ledger = gw.gw.ledger.clone();
    let credits = ledger.key(&gw.key_id).await.unwrap().unwrap().balance;
    let (status, body, warm) = ask(&gw, "m").await;
    assert_eq!(status, 200, "{body}");
    let mut answered = vec![warm.unwrap()];
    pg.signal_all("-STOP");
    let mut refused = 0;
    for n in 0..4 {
        let (status, body, _) = tokio::time::timeout(Duration::from_secs(60), ask(&gw, "m"))
            .await
            .unwrap_or_else(|_| panic!("request {n} hung on the stopped PostgreSQL"));
        assert_eq!(status, 503, "{body}");
        assert_eq!(body["error"]["type"], "service_unavailable", "{body}");
        refused += 1;
    }
    pg.signal_all("-CONT");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, body, id) = ask(&gw, "m").await;
        if status == 200 {
            answered.push(id.unwrap());
            break;
        }
        assert_eq!(status, 503, "{body}");
        assert!(Instant::now() < deadline, "admission never resumed: {body}");
    }
    for id in &answered {
        let e = ledger
            .wait_for_entry(id, Duration::from_secs(30))
            .await
            .unwrap();
        assert!(e.is_some(), "{id} was never written");
    }
    let (entries, balance) = books(&ledger, &gw.key_id).await;
    assert_eq!(
        entries.len(),
        answered.len(),
        "{refused} refused, none billed"
    );
    let billed: i64 = entries.values().map(|e| e.cost.0).sum();
    assert_eq!(balance.0, credits.0 - billed, "each billed exactly once");
}

/// A whole answer admitted while PostgreSQL was up, whose settlement then found neither the
/// database nor the journal writable: its client gets a 503, nothing is billed, and its shared
/// hold row is released once PostgreSQL is back (found by `scripts/chaos`: the row stayed, renewed
/// by its instance, until that instance stopped).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_settlement_releases_its_shared_hold() {
    let Some(pg) = PrivatePostgres::start().await else {
        return;
    };
    let mock = MockUpstream::start().await.unwrap();
    // Slow enough that PostgreSQL can be stopped while it answers.
    mock.set_options(json!({"tokens": 5, "ttft_ms": 1500}))
        .unwrap();
    let gw = shared_instance(&mock, "", &pg.url()).await;
    let ledger = gw.gw.ledger.clone();
    let credits = ledger.key(&gw.key_id).await.unwrap().unwrap().balance;
    let journal = ledger.journal().expect("a journal").clone();
    let asked = tokio::spawn(
        gw.chat(json!({"model": "m", "messages": user("hi")}))
            .send(),
    );
    // Its hold is in the database, then the database goes away and the journal cannot write.
    let key = gw.key_id.clone();
    let deadline = Instant::now() + Duration::from_secs(10);
    while ledger.account_view(&key).await.unwrap().reserved
        == switchyard::store::ledger::Nanos::ZERO
    {
        assert!(Instant::now() < deadline, "the hold never appeared");
    }
    journal
        .faults()
        .inject(switchyard::store::ledger::journal::Fault::NoSpace, u32::MAX);
    pg.stop().await;
    let resp = asked.await.unwrap().unwrap();
    assert_eq!(resp.status(), 503);
    let v: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["code"], "not_recorded", "{v}");
    journal.faults().clear();
    pg.restart().await;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let view = ledger.account_view(&key).await;
        if view.is_ok_and(|v| v.reserved == switchyard::store::ledger::Nanos::ZERO) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the refused request's hold was never released"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (entries, balance) = books(&ledger, &gw.key_id).await;
    assert!(
        entries.is_empty(),
        "the refused request was billed: {entries:?}"
    );
    assert_eq!(balance, credits);
}

/// The holds of an instance that died and never came back: their lease has expired, and any
/// instance frees them (at its start, then every `RENEW_EVERY`). No other instance runs here, so
/// what frees the hold can only be the start-up sweep of the instance that starts; the hold is
/// checked in the database the moment that instance listens, before any periodic sweep.
/// A key with 1 USD, made through the ledger alone: no gateway, so no lease task, runs yet.
async fn key_of_1_usd(url: &str, name: &str) -> (switchyard::store::ledger::KeyRecord, String) {
    let ledger = switchyard::store::ledger::Ledger::connect(url)
        .await
        .unwrap();
    let made = switchyard::auth::create_key(
        &ledger,
        &switchyard::store::ledger::NewKey {
            name: name.into(),
            credits: switchyard::store::ledger::Nanos(1_000_000_000),
            ..switchyard::store::ledger::NewKey::default()
        },
    )
    .await
    .unwrap();
    ledger.close().await;
    made
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_expired_holds_of_a_vanished_instance_are_released() {
    let Some(server) = postgres_url() else {
        return;
    };
    let db = TestDb::postgres(&server).await;
    let url = db.url.clone();
    let mock = MockUpstream::start().await.unwrap();
    let (record, key) = key_of_1_usd(&url, "vanished").await;
    // A vanished instance held the whole balance; its lease ran out a minute ago.
    let mut conn = sqlx::AnyConnection::connect(&url).await.unwrap();
    sqlx::query(
        "INSERT INTO holds (request_id, key_id, amount_nanos, instance_id, expires_at) \
         SELECT 'gone-1', id, balance_nanos, 'gone', $1 FROM api_keys WHERE id = $2",
    )
    .bind(switchyard::store::ledger::now_ms() - 60_000)
    .bind(&record.id)
    .execute(&mut conn)
    .await
    .unwrap();
    sqlx::query("UPDATE api_keys SET reserved_nanos = balance_nanos WHERE id = $1")
        .bind(&record.id)
        .execute(&mut conn)
        .await
        .unwrap();

    // An instance starts: it releases expired holds before it serves.
    let dir = temp_db();
    let config = format!(
        "database = \"{url}\"\ninstances = \"shared\"\njournal = {:?}\n{}",
        dir.join("b.journal").display().to_string(),
        harness::mock_config(&mock, "")
    );
    let (mut b, _, base, _) = serve(&dir, &config).await;
    let (holds, reserved): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT COUNT(*) FROM holds), \
         (SELECT reserved_nanos FROM api_keys WHERE id = $1)",
    )
    .bind(&record.id)
    .fetch_one(&mut conn)
    .await
    .unwrap();
    conn.close().await.ok();
    let resp = harness::client()
        .post(format!("{base}/chat/completions"))
        .bearer_auth(&key)
        .json(&json!({"model": "m", "max_tokens": 10, "messages": user("hi")}))
        .send()
        .await
        .unwrap()
        .status();
    b.kill().await.ok();
    let _ = std::fs::remove_dir_all(&dir);
    db.drop_db().await;
    assert_eq!((holds, reserved), (0, 0), "released by the start-up sweep");
    assert_eq!(resp, 200, "the balance is free again");
}

#[tokio::test]
async fn shared_holds_on_sqlite_are_refused_at_startup() {
    let url = format!("sqlite://{}", temp_db().display());
    let e = switchyard::store::ledger::Ledger::connect_with(
        &url,
        None,
        switchyard::store::ledger::Instances::Shared,
    )
    .await
    .err()
    .expect("refused");
    assert!(e.to_string().contains("PostgreSQL"), "{e}");
    let _ = std::fs::remove_file(url.trim_start_matches("sqlite://"));
}

/// A request refused after its hold was taken (here by the key's rate limit) leaves no hold in
/// the database: the money is free again for every instance.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_refused_after_its_shared_hold_leaves_no_hold() {
    let Some(server) = postgres_url() else {
        return;
    };
    let db = TestDb::postgres(&server).await;
    let url = db.url.clone();
    let mock = MockUpstream::start().await.unwrap();
    let gw = shared_instance(&mock, "", &url).await;
    let ledger = gw.gw.ledger.clone();
    let (record, key) = switchyard::auth::create_key(
        &ledger,
        &switchyard::store::ledger::NewKey {
            name: "limited".into(),
            credits: switchyard::store::ledger::Nanos::from_usd("10".parse().unwrap()).unwrap(),
            rpm: Some(1),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let ask = || {
        harness::client()
            .post(gw.url("/v1/chat/completions"))
            .bearer_auth(&key)
            .json(&json!({"model": "m", "max_tokens": 10, "messages": user("hi")}))
            .send()
    };
    assert_eq!(ask().await.unwrap().status(), 200);
    assert_eq!(ask().await.unwrap().status(), 429);
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut reserved = ledger.account_view(&record.id).await.unwrap().reserved;
    while reserved != switchyard::store::ledger::Nanos::ZERO && Instant::now() < deadline {
        reserved = ledger.account_view(&record.id).await.unwrap().reserved;
    }
    drop(gw);
    db.drop_db().await;
    assert_eq!(
        reserved,
        switchyard::store::ledger::Nanos::ZERO,
        "the 429's hold was released"
    );
}

/// An instance killed with requests in flight leaves their holds in the database; started again
/// on its journal, it bills each of them once (`interrupted`) and releases their holds before it
/// serves, without waiting for their lease to run out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_instance_releases_its_holds_when_it_restarts() {
    const STREAMS: usize = 20;
    let Some(server) = postgres_url() else {
        return;
    };
    let db = TestDb::postgres(&server).await;
    let url = db.url.clone();
    let mock = MockUpstream::start().await.unwrap();
    mock.set_recording(false);
    mock.set_options(json!({"tokens": 2_000, "gap_ms": 20}))
        .unwrap();
    let dir = temp_db();
    let config = format!(
        "database = \"{url}\"\ninstances = \"shared\"\nadmin_key = \"holds-admin-key-0123456789\"\njournal = \"{}\"\n{}",
        dir.join("a.journal").display(),
        harness::mock_config(&mock, "")
    );
    let (mut child, key, base, _) = serve(&dir, &config).await;
    let key = key.expect("a fresh database prints its first key");
    let client = harness::client();
    let mut readers = Vec::new();
    let (tx, mut opened) = tokio::sync::mpsc::channel(STREAMS);
    for _ in 0..STREAMS {
        let req = client
            .post(format!("{base}/chat/completions"))
            .bearer_auth(&key)
            .json(&json!({"model": "m", "stream": true, "messages": user("hi")}));
        let tx = tx.clone();
        readers.push(tokio::spawn(async move {
            let resp = req.send().await.unwrap();
            let _ = tx.send(resp.status().as_u16()).await;
            let mut body = futures_util::StreamExt::fuse(resp.bytes_stream());
            while let Some(Ok(_)) = futures_util::StreamExt::next(&mut body).await {}
        }));
    }
    for _ in 0..STREAMS {
        assert_eq!(opened.recv().await, Some(200));
    }
    let mut conn = sqlx::AnyConnection::connect(&url).await.unwrap();
    let count = |sql: &'static str| sqlx::query_as::<_, (i64,)>(sql);
    let holds = count("SELECT COUNT(*) FROM holds")
        .fetch_one(&mut conn)
        .await
        .unwrap()
        .0;
    assert_eq!(holds, STREAMS as i64, "one shared hold per open stream");
    // The admin API shows what every instance holds for the key, from the database.
    let listed: serde_json::Value = client
        .get(format!("{}/admin/keys", base.trim_end_matches("/v1")))
        .bearer_auth("holds-admin-key-0123456789")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let reserved = listed["data"][0]["reserved"]
        .as_str()
        .unwrap_or("0")
        .to_owned();
    assert!(reserved != "0", "the open holds are shown: {listed}");
    let (credits,): (i64,) = sqlx::query_as("SELECT balance_nanos FROM api_keys")
        .fetch_one(&mut conn)
        .await
        .unwrap();

    child.kill().await.unwrap();
    for r in readers {
        r.await.unwrap();
    }
    let held = count("SELECT reserved_nanos FROM api_keys")
        .fetch_one(&mut conn)
        .await
        .unwrap()
        .0;
    assert!(
        held > 0,
        "the dead instance's holds are still in the database"
    );

    let (mut again, _, _, _) = serve(&dir, &config).await;
    let holds = count("SELECT COUNT(*) FROM holds")
        .fetch_one(&mut conn)
        .await
        .unwrap()
        .0;
    let held = count("SELECT reserved_nanos FROM api_keys")
        .fetch_one(&mut conn)
        .await
        .unwrap()
        .0;
    let (entries, billed): (i64, i64) = sqlx::query_as(
        "SELECT COUNT(*), CAST(COALESCE(SUM(cost_nanos), 0) AS BIGINT) FROM usage_entries \
         WHERE end_reason = 'interrupted'",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    let (balance,): (i64,) = sqlx::query_as("SELECT balance_nanos FROM api_keys")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    conn.close().await.ok();
    again.kill().await.ok();
    let _ = std::fs::remove_dir_all(&dir);
    db.drop_db().await;
    assert_eq!(
        (holds, held),
        (0, 0),
        "no hold is left once it serves again"
    );
    assert_eq!(
        entries, STREAMS as i64,
        "each stream billed once, as interrupted"
    );
    assert_eq!(balance, credits - billed);
}

/// Inserts a hold of `amount` for `key_id` on behalf of instance `other`, whose lease ends
/// `expires_in_ms` from now by PostgreSQL's clock, and raises the key's `reserved_nanos` with it.
async fn foreign_hold(
    conn: &mut sqlx::AnyConnection,
    request_id: &str,
    key_id: &str,
    amount: i64,
    expires_in_ms: i64,
) {
    sqlx::query(
        "INSERT INTO holds (request_id, key_id, amount_nanos, instance_id, expires_at) VALUES \
         ($1, $2, $3, 'other', CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT) + $4)",
    )
    .bind(request_id)
    .bind(key_id)
    .bind(amount)
    .bind(expires_in_ms)
    .execute(&mut *conn)
    .await
    .unwrap();
    sqlx::query("UPDATE api_keys SET reserved_nanos = reserved_nanos + $1 WHERE id = $2")
        .bind(amount)
        .bind(key_id)
        .execute(&mut *conn)
        .await
        .unwrap();
}

/// The holds left, by request id, and the key's `reserved_nanos`.
async fn holds_left(conn: &mut sqlx::AnyConnection, key_id: &str) -> (Vec<String>, i64) {
    let ids: Vec<(String,)> = sqlx::query_as("SELECT request_id FROM holds ORDER BY request_id")
        .fetch_all(&mut *conn)
        .await
        .unwrap();
    let (reserved,): (i64,) = sqlx::query_as("SELECT reserved_nanos FROM api_keys WHERE id = $1")
        .bind(key_id)
        .fetch_one(&mut *conn)
        .await
        .unwrap();
    (ids.into_iter().map(|(id,)| id).collect(), reserved)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_with_a_wrong_clock_frees_no_live_hold_and_keeps_no_dead_one() {
    let Some(server) = postgres_url() else {
        return;
    };
    let db = TestDb::postgres(&server).await;
    let url = db.url.clone();
    let mock = MockUpstream::start().await.unwrap();
    let (record, key) = key_of_1_usd(&url, "skew").await;
    let mut conn = sqlx::AnyConnection::connect(&url).await.unwrap();
    // Another instance holds 0.1 USD for a request still running (its lease has 10 minutes to go)
    // and left 0.2 USD behind a lease that ran out a minute ago.
    foreign_hold(&mut conn, "live", &record.id, 100_000_000, 600_000).await;
    foreign_hold(&mut conn, "dead-1", &record.id, 200_000_000, -60_000).await;

    let config = |dir: &Path| {
        format!(
            "database = \"{url}\"\ninstances = \"shared\"\njournal = {:?}\n{}",
            dir.join("x.journal").display().to_string(),
            harness::mock_config(&mock, "")
        )
    };
    let root = temp_db();
    // An instance whose clock runs an hour ahead starts: its start-up sweep runs before it
    // serves.
    let ahead = root.join("ahead");
    std::fs::create_dir_all(&ahead).unwrap();
    std::fs::write(ahead.join("switchyard.toml"), config(&ahead)).unwrap();
    let args = [
        "serve",
        "--config",
        "switchyard.toml",
        "--listen",
        "127.0.0.1:0",
    ];
    let (mut a, _, a_base, _) =
        harness::serve_binary_with(&ahead, &args, &[("SWITCHYARD_CLOCK_SKEW_MS", "3600000")]).await;
    let after_ahead = holds_left(&mut conn, &record.id).await;

    // Its own hold is leased by PostgreSQL's clock too: a slow stream, and its row read while open.
    mock.set_options(json!({"tokens": 40, "gap_ms": 50}))
        .unwrap();
    let stream = harness::client()
        .post(format!("{a_base}/chat/completions"))
        .bearer_auth(&key)
        .json(&json!({"model": "m", "max_tokens": 40, "stream": true, "messages": user("hi")}))
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    let (lease_left,): (i64,) = sqlx::query_as(
        "SELECT expires_at - CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT) \
         FROM holds WHERE instance_id <> 'other'",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    let _ = stream.bytes().await.unwrap();
    a.kill().await.ok();

    // One whose clock runs an hour behind: it still frees a lease that ran out.
    foreign_hold(&mut conn, "dead-2", &record.id, 300_000_000, -60_000).await;
    let behind = root.join("behind");
    std::fs::create_dir_all(&behind).unwrap();
    std::fs::write(behind.join("switchyard.toml"), config(&behind)).unwrap();
    let (mut b, _, _, _) =
        harness::serve_binary_with(&behind, &args, &[("SWITCHYARD_CLOCK_SKEW_MS", "-3600000")])
            .await;
    let after_behind = holds_left(&mut conn, &record.id).await;
    b.kill().await.ok();
    conn.close().await.ok();
    let _ = std::fs::remove_dir_all(&root);
    db.drop_db().await;

    assert_eq!(
        after_ahead,
        (vec!["live".to_string()], 100_000_000),
        "a clock an hour ahead frees the expired hold and only that one"
    );
    assert!(
        (0..=60_000).contains(&lease_left),
        "a hold's lease is at most a minute by PostgreSQL's clock, whatever the instance's: {lease_left} ms"
    );
    assert_eq!(
        after_behind,
        (vec!["live".to_string()], 100_000_000),
        "a clock an hour behind still frees the hold that expired"
    );
}
