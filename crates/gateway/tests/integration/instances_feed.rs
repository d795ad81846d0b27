//! Several instances on one PostgreSQL database behave as one gateway for key changes: a key
//! revoked, topped up or given other models on one instance (admin API) or with the CLI is
//! refused or admitted accordingly by every other instance through the change feed (the periodic
//! re-read, `key_refresh_ms`, is an hour here, so nothing else can bring the change; the time
//! each took is printed, well under a second on a quiet machine), also right after the feed's
//! connection was cut and after PostgreSQL restarted.
//!
//! Each test creates its own database on `SWITCHYARD_TEST_POSTGRES` (dropped afterwards) and
//! runs two gateways on it, each built and served exactly as `switchyard serve` does. Without the
//! variable the tests say so loudly and pass, unless `CI` is set, where they fail.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mock_upstream::MockUpstream;
use serde_json::{json, Value};
use sqlx::Connection;
use switchyard::app::Gateway;
use switchyard::config::Config;

use crate::harness::{self, user};
use crate::ledger_conformance::{postgres_url, TestDb};
use crate::ledger_outage::PrivatePostgres;

const ADMIN: &str = "admin-feed-key-0123456789";
/// How long a poll goes on before the test fails with what it waited for (instead of hanging
/// until the test's hard timeout). Not a speed requirement: the feed is the only way a change
/// can arrive here (`key_refresh_ms` is an hour), so seeing it at all proves the feed; the time it
/// took is printed.
const GIVE_UP: Duration = Duration::from_secs(60);

/// One gateway instance with a settlement journal of its own, served on port 0 until dropped.
struct Instance {
    addr: SocketAddr,
    journal: std::path::PathBuf,
    _gw: Arc<Gateway>,
    _shutdown: tokio::sync::oneshot::Sender<()>,
}

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.journal);
    }
}

impl Instance {
    async fn start(mock: &MockUpstream, database: &str) -> Instance {
        let journal = harness::temp_db().with_extension("journal");
        let text = format!(
            "admin_key = \"{ADMIN}\"\nkey_refresh_ms = 3600000\njournal = {:?}\n{}",
            journal.display().to_string(),
            harness::mock_config(mock, "")
        );
        let config = Config::parse(&text, "test.toml").expect("test config is valid");
        let (gw, _, problems) = Gateway::build(Some(config), Some(database.to_owned()))
            .await
            .expect("gateway builds");
        assert!(problems.is_empty(), "{problems:?}");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(gw.clone().serve(listener, async {
            let _ = rx.await;
        }));
        Instance {
            addr,
            journal,
            _gw: gw,
            _shutdown: tx,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    fn admin(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        harness::client()
            .request(method, self.url(path))
            .bearer_auth(ADMIN)
    }

    /// Creates a key through this instance's admin API: (id, key).
    async fn create_key(&self, body: Value) -> (String, String) {
        let resp = self
            .admin(reqwest::Method::POST, "/admin/keys")
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(resp.status().is_success(), "{}", resp.status());
        let v: Value = resp.json().await.unwrap();
        (
            v["id"].as_str().unwrap().to_owned(),
            v["key"].as_str().unwrap().to_owned(),
        )
    }

    /// Changes a key through this instance's admin API.
    async fn patch_key(&self, id: &str, body: Value) {
        let resp = self
            .admin(reqwest::Method::PATCH, &format!("/admin/keys/{id}"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
    }

    /// The status of a chat request on `model` with `key`.
    async fn chat(&self, key: &str, model: &str) -> u16 {
        harness::client()
            .post(self.url("/v1/chat/completions"))
            .bearer_auth(key)
            .json(&json!({"model": model, "messages": user("hi"), "max_tokens": 16}))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }

    /// The status of `GET /v1/models` with `key` (authenticated like a chat request).
    async fn models(&self, key: &str) -> u16 {
        harness::client()
            .get(self.url("/v1/models"))
            .bearer_auth(key)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }
}

/// Runs `test` with the URL of a fresh PostgreSQL database, dropped afterwards (also when the
/// test fails). Skipped without `SWITCHYARD_TEST_POSTGRES`.
pub(crate) async fn on_fresh_database<F, Fut>(test: F)
where
    F: FnOnce(String) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let Some(server) = postgres_url() else { return };
    let db = TestDb::postgres(&server).await;
    let outcome = tokio::spawn(test(db.url.clone())).await;
    db.drop_db().await;
    if let Err(e) = outcome {
        if let Ok(panic) = e.try_into_panic() {
            std::panic::resume_unwind(panic);
        }
        panic!("the test task was cancelled");
    }
}

/// Polls `probe` until it holds and returns how long that took since `since`; fails after
/// `GIVE_UP`.
async fn time_until<F, Fut>(what: &str, since: Instant, mut probe: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    loop {
        if probe().await {
            let took = since.elapsed();
            eprintln!("{what}: after {took:?}");
            return took;
        }
        assert!(
            since.elapsed() < GIVE_UP,
            "{what}: still not seen after {GIVE_UP:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Runs `switchyard ARGS --database URL` to completion, as an operator would.
async fn cli(args: &[&str], database: &str) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(args)
        .args(["--database", database])
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "switchyard {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Two instances on one database, with a key created on the first and used on both.
async fn two_instances(
    mock: &MockUpstream,
    database: &str,
    key: Value,
) -> (Instance, Instance, String, String) {
    let a = Instance::start(mock, database).await;
    let b = Instance::start(mock, database).await;
    let (id, secret) = a.create_key(key).await;
    (a, b, id, secret)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_revoked_on_one_instance_is_refused_by_the_other_through_the_change_feed() {
    on_fresh_database(|database| async move {
        let mock = MockUpstream::start().await.unwrap();
        let (a, b, id, key) =
            two_instances(&mock, &database, json!({"name": "feed", "credits": "1"})).await;
        assert_eq!(b.chat(&key, "m").await, 200);
        assert_eq!(a.chat(&key, "m").await, 200);

        let resp = a
            .admin(reqwest::Method::DELETE, &format!("/admin/keys/{id}"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let revoked = Instant::now();
        // The instance that revoked it refuses it at once.
        assert_eq!(a.models(&key).await, 401);
        time_until("B refuses the revoked key", revoked, || async {
            b.models(&key).await == 401
        })
        .await;
        assert_eq!(b.chat(&key, "m").await, 401);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_revoked_with_the_cli_is_refused_by_every_instance_through_the_change_feed() {
    on_fresh_database(|database| async move {
        let mock = MockUpstream::start().await.unwrap();
        let (a, b, id, key) =
            two_instances(&mock, &database, json!({"name": "feed", "credits": "1"})).await;
        assert_eq!(a.chat(&key, "m").await, 200);
        assert_eq!(b.chat(&key, "m").await, 200);

        cli(&["keys", "revoke", &id], &database).await;
        let revoked = Instant::now();
        for (name, gw) in [("A", &a), ("B", &b)] {
            time_until(
                &format!("{name} refuses the revoked key"),
                revoked,
                || async { gw.models(&key).await == 401 },
            )
            .await;
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_top_up_on_one_instance_lets_the_other_admit_by_the_change_feed() {
    on_fresh_database(|database| async move {
        let mock = MockUpstream::start().await.unwrap();
        let (a, b, id, key) =
            two_instances(&mock, &database, json!({"name": "broke", "credits": "0"})).await;
        // Both refuse it for want of money (and so hold its account in memory).
        assert_eq!(a.chat(&key, "m").await, 402);
        assert_eq!(b.chat(&key, "m").await, 402);

        a.patch_key(&id, json!({"top_up": "1"})).await;
        let topped_up = Instant::now();
        time_until("B admits the topped-up key", topped_up, || async {
            b.chat(&key, "m").await == 200
        })
        .await;

        // The same for a top-up with the CLI, after the balance was set back to zero.
        a.patch_key(&id, json!({"credits": "0"})).await;
        let emptied = Instant::now();
        time_until("B refuses the emptied key", emptied, || async {
            b.chat(&key, "m").await == 402
        })
        .await;
        cli(&["keys", "top-up", &id, "1"], &database).await;
        let topped_up = Instant::now();
        for (name, gw) in [("A", &a), ("B", &b)] {
            time_until(
                &format!("{name} admits the key topped up with the CLI"),
                topped_up,
                || async { gw.chat(&key, "m").await == 200 },
            )
            .await;
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_allowlist_change_on_one_instance_applies_on_the_other_by_the_change_feed() {
    on_fresh_database(|database| async move {
        let mock = MockUpstream::start().await.unwrap();
        let (a, b, id, key) = two_instances(
            &mock,
            &database,
            json!({"name": "narrow", "credits": "1", "models": ["deepseek-r"]}),
        )
        .await;
        assert_eq!(b.chat(&key, "m").await, 403);

        a.patch_key(&id, json!({"models": ["m"]})).await;
        let changed = Instant::now();
        time_until("B allows the newly allowed model", changed, || async {
            b.chat(&key, "m").await == 200
        })
        .await;
        assert_eq!(b.chat(&key, "deepseek-r").await, 403);
    })
    .await;
}

/// Ends every change-feed connection to `database` (as a PostgreSQL restart or a network cut
/// would); returns how many were ended.
async fn cut_the_feeds(database: &str) -> i64 {
    let mut conn = sqlx::AnyConnection::connect(database).await.unwrap();
    let ended: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = current_database() AND application_name = $1) AS t",
    )
    .bind(switchyard::store::ledger::changes::APPLICATION_NAME)
    .fetch_one(&mut conn)
    .await
    .unwrap();
    conn.close().await.ok();
    ended
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_its_connection_is_cut_the_feed_reconnects_and_catches_up() {
    on_fresh_database(|database| async move {
        let mock = MockUpstream::start().await.unwrap();
        let (a, b, id, key) =
            two_instances(&mock, &database, json!({"name": "feed", "credits": "1"})).await;
        assert_eq!(b.chat(&key, "m").await, 200);
        assert_eq!(a.chat(&key, "m").await, 200);

        // Both feeds listen; cut them and revoke at once, while they are (re)connecting: the
        // notification is lost, so only the reconciliation after reconnecting can catch it.
        let database_for_cut = database.clone();
        let listening = time_until("both feeds listen", Instant::now(), || {
            let database = database_for_cut.clone();
            async move { feed_connections(&database).await == 2 }
        })
        .await;
        assert!(listening < GIVE_UP);
        assert_eq!(cut_the_feeds(&database).await, 2);
        cli(&["keys", "revoke", &id], &database).await;
        let revoked = Instant::now();
        time_until("B refuses the revoked key", revoked, || async {
            b.models(&key).await == 401
        })
        .await;
        // And the feeds are back: a later change is notified again.
        let (id2, key2) = a.create_key(json!({"name": "later", "credits": "1"})).await;
        assert_eq!(b.models(&key2).await, 200);
        a.admin(reqwest::Method::DELETE, &format!("/admin/keys/{id2}"))
            .send()
            .await
            .unwrap();
        let revoked = Instant::now();
        time_until("B refuses the second revoked key", revoked, || async {
            b.models(&key2).await == 401
        })
        .await;
    })
    .await;
}

/// The change-feed connections to `database` now.
async fn feed_connections(database: &str) -> i64 {
    let mut conn = sqlx::AnyConnection::connect(database).await.unwrap();
    let n: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM pg_stat_activity \
         WHERE datname = current_database() AND application_name = $1",
    )
    .bind(switchyard::store::ledger::changes::APPLICATION_NAME)
    .fetch_one(&mut conn)
    .await
    .unwrap();
    conn.close().await.ok();
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_postgres_restart_changes_reach_every_instance_by_the_change_feed_again() {
    // A server of the test's own (its own port and data directory), so the shared one stays up.
    let Some(pg) = PrivatePostgres::start().await else {
        return;
    };
    let database = pg.url();
    let mock = MockUpstream::start().await.unwrap();
    let (a, b, id, key) =
        two_instances(&mock, &database, json!({"name": "feed", "credits": "1"})).await;
    assert_eq!(a.chat(&key, "m").await, 200);
    assert_eq!(b.chat(&key, "m").await, 200);

    pg.stop().await;
    // Known keys are answered from memory while the database is away.
    assert_eq!(b.models(&key).await, 200);
    pg.restart().await;

    cli(&["keys", "revoke", &id], &database).await;
    let revoked = Instant::now();
    for (name, gw) in [("A", &a), ("B", &b)] {
        time_until(
            &format!("{name} refuses the revoked key"),
            revoked,
            || async { gw.models(&key).await == 401 },
        )
        .await;
    }
    // Operators see that the feed lost its connection.
    let metrics = harness::get_text(a.url("/metrics")).await;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("switchyard_change_feed_disconnects_total")),
        "{metrics}"
    );
}
