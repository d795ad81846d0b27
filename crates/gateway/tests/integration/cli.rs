//! The `switchyard` command line, run as a user would: `keys create|list|revoke|top-up` against a
//! database, `check` on good and bad configs, and `serve` with the embedded default streaming
//! `demo-chat` with the key it printed.

use futures_util::StreamExt;
use serde_json::{json, Value};

use crate::harness::{self, parse_sse, temp_db, user};

fn switchyard() -> tokio::process::Command {
    let mut c = tokio::process::Command::new(env!("CARGO_BIN_EXE_switchyard"));
    c.env_remove("SWITCHYARD_DATABASE").kill_on_drop(true);
    c
}

async fn run(args: &[&str]) -> (bool, String, String) {
    let out = switchyard().args(args).output().await.unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn keys_create_list_top_up_revoke() {
    let db = format!("sqlite://{}", temp_db().display());
    let (ok, out, err) = run(&[
        "keys",
        "create",
        "--name",
        "ci",
        "--credits",
        "2.5",
        "--json",
        "--database",
        &db,
    ])
    .await;
    assert!(ok, "{err}");
    let created: Value = serde_json::from_str(out.trim()).unwrap();
    let id = created["id"].as_str().unwrap().to_owned();
    let key = created["key"].as_str().unwrap().to_owned();
    assert!(key.starts_with("sk-sy-"));
    let (ok, out, _) = run(&["keys", "list", "--json", "--database", &db]).await;
    assert!(ok);
    let list: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(list[0]["id"], id);
    assert_eq!(list[0]["balance"], "2.5");
    assert!(!out.contains(&key), "list must never show the key");
    let (ok, out, _) = run(&["keys", "top-up", &id, "1.25", "--database", &db]).await;
    assert!(ok && out.contains("3.75"), "{out}");
    let (ok, _, _) = run(&["keys", "revoke", &id, "--database", &db]).await;
    assert!(ok);
    let (_, out, _) = run(&["keys", "list", "--json", "--database", &db]).await;
    assert_eq!(
        serde_json::from_str::<Value>(out.trim()).unwrap()[0]["revoked"],
        true
    );
    let (ok, _, err) = run(&["keys", "revoke", "key_nope", "--database", &db]).await;
    assert!(!ok && err.contains("key_nope"));
}

/// The CLI reads amounts as the admin API does: exact, bounded, a top-up more than 0.
#[tokio::test]
async fn keys_amounts_are_exact_and_bounded_like_the_admin_api() {
    let db = format!("sqlite://{}", temp_db().display());
    let (ok, out, err) = run(&[
        "keys",
        "create",
        "--name",
        "m",
        "--credits",
        "999999999",
        "--json",
        "--database",
        &db,
    ])
    .await;
    assert!(ok, "{err}");
    let id = serde_json::from_str::<Value>(out.trim()).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    for (amount, says) in [
        ("-5", "must not be negative"),
        ("0", "must be more than 0"),
        ("0.0000000001", "more than 9 decimal places"),
        ("1e25", "is more than 1000000000 USD"),
        ("12,50", "is not an amount of USD"),
        ("1.000000001", "would be more than 1000000000 USD"),
    ] {
        let (ok, _, err) = run(&["keys", "top-up", &id, amount, "--database", &db]).await;
        assert!(!ok && err.contains(says), "{amount}: {err}");
    }
    let (ok, _, err) = run(&[
        "keys",
        "create",
        "--name",
        "x",
        "--credits",
        "1e10",
        "--database",
        &db,
    ])
    .await;
    assert!(!ok && err.contains("--credits"), "{err}");
    let (ok, out, err) = run(&["keys", "top-up", &id, "1", "--database", &db]).await;
    assert!(ok && out.contains("1000000000 USD"), "{out}{err}");
}

#[tokio::test]
async fn check_accepts_good_configs_and_names_the_line_of_bad_ones() {
    let dir = std::env::temp_dir();
    let good = dir.join(format!("sy-good-{}.toml", std::process::id()));
    let secret = dir.join(format!("sy-good-{}.key", std::process::id()));
    std::fs::write(&secret, "upstream-key\n").unwrap();
    std::fs::write(
        &good,
        format!("[providers.p]\nkind = \"openai\"\nbase_url = \"http://127.0.0.1:9/v1\"\napi_key = \"file:{}\"\n[models.m]\nroutes = [\"p/m\"]\ninput_price = \"1\"\noutput_price = \"2\"\n", secret.display()),
    )
    .unwrap();
    let (ok, out, err) = run(&["check", "--config", good.to_str().unwrap()]).await;
    assert!(ok, "{out}{err}");
    let bad = dir.join(format!("sy-bad-{}.toml", std::process::id()));
    std::fs::write(
        &bad,
        "listen = \"127.0.0.1:1\"\n\n[providers.p]\nkind = \"openai\"\nbase_urll = \"x\"\n",
    )
    .unwrap();
    let (ok, _, err) = run(&["check", "--config", bad.to_str().unwrap()]).await;
    assert!(!ok);
    assert!(err.contains("line 5") && err.contains("base_urll"), "{err}");
    let _ = std::fs::remove_file(good);
    let _ = std::fs::remove_file(bad);
    let _ = std::fs::remove_file(secret);
}

/// `check` runs no `cmd:` secret unless asked (a config one does not trust is checked without
/// running it), and a config others can write is refused, by `check` and by `serve`.
#[tokio::test]
async fn check_runs_no_command_unless_asked_and_a_config_others_can_write_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let dir = std::env::temp_dir().join(format!("sy-cmd-{}-{}", std::process::id(), line!()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let ran = dir.join("ran");
    let config = dir.join("switchyard.toml");
    std::fs::write(
        &config,
        format!("[providers.p]\nkind = \"openai\"\nbase_url = \"http://127.0.0.1:9/v1\"\napi_key = \"cmd:touch {} && echo k\"\n[models.m]\nroutes = [\"p/m\"]\ninput_price = \"1\"\noutput_price = \"2\"\n", ran.display()),
    )
    .unwrap();
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o600)).unwrap();
    let path = config.to_str().unwrap();
    let (ok, out, err) = run(&["check", "--config", path]).await;
    assert!(ok, "{out}{err}");
    assert!(
        err.contains("not run") && err.contains("--resolve-secrets"),
        "{err}"
    );
    assert!(
        !ran.exists(),
        "check ran the command without --resolve-secrets"
    );
    let (ok, out, err) = run(&["check", "--config", path, "--resolve-secrets"]).await;
    assert!(ok, "{out}{err}");
    assert!(ran.exists(), "--resolve-secrets runs the command");
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o666)).unwrap();
    for args in [
        vec!["check", "--config", path],
        vec!["serve", "--config", path, "--listen", "127.0.0.1:0"],
    ] {
        let (ok, _, err) = run(&args).await;
        assert!(
            !ok && err.contains("writable by other users"),
            "{args:?}: {err}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// An admin key shorter than 24 characters is refused by `check` and by `serve`, from the file
/// or from `SWITCHYARD_ADMIN_KEY`, naming the rule and never the key.
#[tokio::test]
async fn a_short_admin_key_is_refused_by_check_and_serve() {
    use std::os::unix::fs::PermissionsExt;
    let dir = std::env::temp_dir().join(format!("sy-short-{}-{}", std::process::id(), line!()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("switchyard.toml");
    let db = format!("sqlite://{}", dir.join("sy.db").display());
    let write = |key: &str| {
        std::fs::write(
            &config,
            format!("database = \"{db}\"\nadmin_key = \"{key}\"\n"),
        )
        .unwrap();
        std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o600)).unwrap();
    };
    let path = config.to_str().unwrap();
    write("guessable-admin");
    for args in [
        vec!["check", "--config", path],
        vec!["serve", "--config", path, "--listen", "127.0.0.1:0"],
    ] {
        let (ok, out, err) = run(&args).await;
        assert!(!ok, "{args:?} accepted a 15-character admin key: {out}");
        assert!(err.contains("at least 24"), "{args:?}: {err}");
        assert!(
            !err.contains("guessable-admin"),
            "the key is never shown: {err}"
        );
    }
    let out = switchyard()
        .args(["serve", "--listen", "127.0.0.1:0", "--database", &db])
        .env("SWITCHYARD_ADMIN_KEY", "admin")
        .current_dir(&dir)
        .output()
        .await
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("at least 24"),
        "{err}"
    );
    write("a-long-enough-admin-key-0123456789");
    let (ok, out, err) = run(&["check", "--config", path]).await;
    assert!(ok, "{out}{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Runs `switchyard serve` with the embedded default in `dir` on a free port; returns the process,
/// the key it printed and its base URL.
async fn serve_embedded(dir: &std::path::Path) -> (tokio::process::Child, String, String) {
    let (child, key, base) =
        harness::serve_binary(dir, &["serve", "--listen", "127.0.0.1:0"]).await;
    (child, key.expect("key printed"), base)
}

#[tokio::test]
async fn sigterm_lets_open_streams_finish_then_exits() {
    let dir = std::env::temp_dir().join(format!("sy-term-{}-{}", std::process::id(), line!()));
    // Paced (about a second for the answer), so the stream is open when SIGTERM arrives.
    let (mut child, key, base, _) = harness::serve_binary_with(
        &dir,
        &["serve", "--listen", "127.0.0.1:0"],
        &[("SWITCHYARD_DEMO_TOKENS_PER_SECOND", "40")],
    )
    .await;
    let key = key.expect("key printed");
    let resp = harness::client()
        .post(format!("{base}/chat/completions"))
        .bearer_auth(&key)
        .json(&json!({"model": "demo-chat", "stream": true, "messages": user("hi")}))
        .send()
        .await
        .unwrap();
    let mut body = resp.bytes_stream();
    let mut text = String::from_utf8(body.next().await.unwrap().unwrap().to_vec()).unwrap();
    let pid = child.id().unwrap().to_string();
    let killed = tokio::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .await
        .unwrap();
    assert!(killed.success());
    let before = text.len();
    while let Some(frame) = body.next().await {
        text.push_str(&String::from_utf8_lossy(&frame.unwrap()));
    }
    assert!(
        text[before..].contains("\"content\""),
        "tokens kept coming after SIGTERM: {text}"
    );
    // Finished, not cut: a cut stream also ends with `[DONE]`, but after an error event and
    // without its finish reason.
    let items = parse_sse(&text);
    assert!(
        items.contains(&harness::Sse::Done),
        "the open stream was cut: {text}"
    );
    let errors: Vec<_> = items
        .iter()
        .filter(|i| matches!(i, harness::Sse::Data(v) if v.get("error").is_some()))
        .collect();
    assert!(errors.is_empty(), "the open stream was cut: {errors:?}");
    let finish = items.iter().rev().find_map(|i| match i {
        harness::Sse::Data(v) => v["choices"][0]["finish_reason"].as_str().map(str::to_owned),
        _ => None,
    });
    assert_eq!(finish.as_deref(), Some("stop"), "{text}");
    let status = child.wait().await.unwrap();
    assert!(status.success(), "{status}");
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn serve_with_the_embedded_default_streams_demo_chat() {
    let dir = std::env::temp_dir().join(format!("sy-serve-{}-{}", std::process::id(), line!()));
    let (mut child, key, base) = serve_embedded(&dir).await;
    assert!(dir.join("switchyard.db").exists());
    let body = harness::client()
        .post(format!("{base}/chat/completions"))
        .bearer_auth(&key)
        .json(&json!({"model": "demo-chat", "stream": true, "messages": user("hi")}))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let items = parse_sse(&body);
    assert!(harness::joined(&items, "content").len() > 10);
    assert!(items.contains(&harness::Sse::Done));
    // The seeds' examples name these models; with only the base URL and key changed they must work
    // offline too (answered by the demo upstream when no real provider serves them).
    let seed_models = [
        "claude-sonnet-4",
        "deepseek-chat",
        "deepseek-reasoner",
        "gpt-4o",
        "gpt-4",
        "gpt-5.4",
        "auto",
        "auto-fast",
    ];
    let answers = futures_util::future::join_all(seed_models.iter().map(|model| {
        harness::client()
            .post(format!("{base}/chat/completions"))
            .bearer_auth(&key)
            .json(&json!({"model": model, "stream": true, "messages": user("hi")}))
            .send()
    }))
    .await;
    for (model, answer) in seed_models.iter().zip(answers) {
        let answer = answer.unwrap();
        assert_eq!(answer.status(), 200, "{model}");
        let items = parse_sse(&answer.text().await.unwrap());
        assert!(!harness::joined(&items, "content").is_empty(), "{model}");
    }
    child.kill().await.unwrap();
    let _ = std::fs::remove_dir_all(dir);
}

/// The embedded default as a person tries it: the demo streams at the pace
/// `SWITCHYARD_DEMO_TOKENS_PER_SECOND` sets (tokens arrive one by one, not at once), the admin
/// API answers to `SWITCHYARD_ADMIN_KEY`, and a coding agent's tool loop runs on the demo.
#[tokio::test]
async fn the_embedded_demo_is_paced_takes_an_admin_key_and_runs_a_tool_loop() {
    let dir = std::env::temp_dir().join(format!("sy-demo-{}-{}", std::process::id(), line!()));
    let admin = "sy-admin-demo-test-key-0123456789";
    let (mut child, key, base, _) = harness::serve_binary_with(
        &dir,
        &["serve", "--listen", "127.0.0.1:0"],
        &[
            ("SWITCHYARD_ADMIN_KEY", admin),
            ("SWITCHYARD_DEMO_TOKENS_PER_SECOND", "40"),
        ],
    )
    .await;
    let key = key.expect("key printed");
    let root = base.trim_end_matches("/v1");
    let keys = |bearer: &str| {
        harness::client()
            .get(format!("{root}/admin/keys"))
            .bearer_auth(bearer)
            .send()
    };
    assert_eq!(keys(admin).await.unwrap().status(), 200);
    assert_eq!(keys("not-the-admin-key").await.unwrap().status(), 401);

    // 40 tokens/s: a gap of 25 ms between tokens, so the 36 tokens take at least 35 gaps.
    let resp = harness::client()
        .post(format!("{base}/chat/completions"))
        .bearer_auth(&key)
        .json(&json!({"model": "demo-chat", "stream": true, "messages": user("hi")}))
        .send()
        .await
        .unwrap();
    let mut body = resp.bytes_stream();
    let (mut text, mut first_token) = (String::new(), None);
    while let Some(frame) = body.next().await {
        text.push_str(&String::from_utf8_lossy(&frame.unwrap()));
        if first_token.is_none() && text.contains("\"content\":\" ") {
            first_token = Some(std::time::Instant::now());
        }
    }
    let streaming = first_token.expect("a content token").elapsed();
    let items = parse_sse(&text);
    assert_eq!(
        harness::joined(&items, "content")
            .split_whitespace()
            .count(),
        36
    );
    assert!(
        streaming >= std::time::Duration::from_millis(35 * 25),
        "36 tokens at 40/s arrived in {streaming:?}"
    );

    // The tool loop: a prompt naming a file gets one call of the offered read tool; its result
    // is quoted back.
    let tools = json!([{"type": "function", "function": {"name": "read_file",
        "parameters": {"type": "object", "properties": {"path": {"type": "string"}}}}}]);
    let prompt = json!({"role": "user", "content": "Read notes.txt and quote it"});
    let first: Value = harness::client()
        .post(format!("{base}/chat/completions"))
        .bearer_auth(&key)
        .json(&json!({"model": "demo-chat", "tools": tools, "messages": [prompt]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        first["choices"][0]["finish_reason"], "tool_calls",
        "{first}"
    );
    let call = &first["choices"][0]["message"]["tool_calls"][0];
    assert_eq!(call["function"]["name"], "read_file");
    assert_eq!(call["function"]["arguments"], "{\"path\":\"notes.txt\"}");
    let second: Value = harness::client()
        .post(format!("{base}/chat/completions"))
        .bearer_auth(&key)
        .json(&json!({"model": "demo-chat", "tools": tools, "messages": [prompt,
            first["choices"][0]["message"],
            {"role": "tool", "tool_call_id": call["id"], "content": "Moths navigate by the moon.\n"}]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        second["choices"][0]["message"]["content"], "The file says: Moths navigate by the moon.",
        "{second}"
    );
    child.kill().await.unwrap();
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn a_bad_demo_pace_is_refused_with_its_name() {
    let dir = std::env::temp_dir().join(format!("sy-pace-{}-{}", std::process::id(), line!()));
    std::fs::create_dir_all(&dir).unwrap();
    let out = switchyard()
        .args(["serve", "--listen", "127.0.0.1:0"])
        .current_dir(&dir)
        .env("SWITCHYARD_DEMO_TOKENS_PER_SECOND", "fast")
        .output();
    let out = tokio::time::timeout(std::time::Duration::from_secs(60), out)
        .await
        .expect("serve exits")
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("SWITCHYARD_DEMO_TOKENS_PER_SECOND"), "{err}");
    let _ = std::fs::remove_dir_all(dir);
}
