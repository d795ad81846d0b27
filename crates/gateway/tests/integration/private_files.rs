//! Owner-only data files: `switchyard serve` creates its database, SQLite's WAL, the settlement
//! journal and the event log readable by its own user only (0600), and narrows one it finds open
//! to others at startup.

use std::os::unix::fs::PermissionsExt;

use serde_json::json;

use crate::harness;

#[tokio::test(flavor = "multi_thread")]
async fn the_gateways_files_are_its_owners_alone() {
    let dir = std::env::temp_dir().join(format!("sy-modes-{}-{}", std::process::id(), line!()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    // An event log left readable by everyone, as an older release created it.
    let events = dir.join("events.jsonl");
    std::fs::write(&events, "").unwrap();
    std::fs::set_permissions(&events, std::fs::Permissions::from_mode(0o644)).unwrap();
    let mock = mock_upstream::MockUpstream::start().await.unwrap();
    let config = format!(
        "database = \"sqlite://sy.db\"\n{}\n[event_log]\npath = \"events.jsonl\"\n",
        harness::mock_config(&mock, "")
    );
    std::fs::write(dir.join("switchyard.toml"), config).unwrap();
    let args = [
        "serve",
        "--config",
        "switchyard.toml",
        "--listen",
        "127.0.0.1:0",
    ];
    let (mut child, key, base) = harness::serve_binary(&dir, &args).await;
    let key = key.expect("a fresh database prints its first key");
    let resp = harness::client()
        .post(format!("{base}/chat/completions"))
        .bearer_auth(&key)
        .json(&json!({"model": "m", "messages": harness::user("hi")}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let id = harness::request_id(&resp);
    harness::until(
        "the request in the event log",
        std::time::Duration::from_secs(30),
        || {
            std::fs::read_to_string(&events)
                .unwrap_or_default()
                .contains(&id)
        },
    )
    .await;
    let mut checked = Vec::new();
    for name in [
        "sy.db",
        "sy.db-wal",
        "sy.db-shm",
        "sy.db.journal",
        "events.jsonl",
    ] {
        let Ok(meta) = std::fs::metadata(dir.join(name)) else {
            continue;
        };
        let mode = meta.permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{name} is {mode:o}");
        checked.push(name);
    }
    for must in ["sy.db", "sy.db.journal", "events.jsonl"] {
        assert!(
            checked.contains(&must),
            "{must} was not created: {checked:?}"
        );
    }
    child.kill().await.unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}
