//! `durability = "batched"`: a whole answer leaves without waiting for its ledger entry, and the
//! entry still lands exactly once.

use serde_json::{json, Value};
use sqlx::Connection;
use switchyard::store::ledger::journal::Fault;

use crate::harness::{self, request_id, user};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batched_answer_leaves_before_its_entry_is_durable_and_is_billed_once() {
    let (gw, _mock) = harness::start_with_mock_top("durability = \"batched\"", "").await;
    let (_, credits) = harness::books(&gw.gw.ledger, &gw.key_id).await;
    // Nothing can make an entry durable: another connection holds SQLite's write lock, and every
    // journal write fails. A durable answer would wait for its entry and then be refused (503).
    let url = format!("sqlite://{}", gw.db_path.display());
    let mut blocker = sqlx::AnyConnection::connect(&url).await.unwrap();
    sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut blocker)
        .await
        .unwrap();
    let journal = gw.gw.ledger.journal().expect("a SQLite file has a journal");
    journal.faults().inject(Fault::NoSpace, u32::MAX);

    let resp = gw
        .chat(json!({"model": "m", "max_tokens": 20, "messages": user("hi")}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "answered without waiting for the entry");
    let id = request_id(&resp);
    let body: Value = resp.json().await.unwrap();
    let cost: rust_decimal::Decimal = body["usage"]["cost"].as_str().unwrap().parse().unwrap();
    assert!(cost > rust_decimal::Decimal::ZERO, "{body}");

    // The database and the journal come back: the entry is written, once, at the cost shown.
    journal.faults().clear();
    sqlx::query("ROLLBACK").execute(&mut blocker).await.unwrap();
    blocker.close().await.ok();
    let entry = gw
        .gw
        .ledger
        .wait_for_entry(&id, std::time::Duration::from_secs(30))
        .await
        .unwrap()
        .expect("the entry lands once the database takes writes");
    assert_eq!(entry.cost.to_usd(), cost);
    let (entries, balance) = harness::books(&gw.gw.ledger, &gw.key_id).await;
    assert_eq!(entries.len(), 1);
    assert_eq!(balance.to_usd(), credits.to_usd() - cost);
}
