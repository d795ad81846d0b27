//! A corpus of hostile and malformed requests sent to every documented operation (each public
//! route under all three prefixes, every admin route), with the right key, a wrong one and none:
//! broken and deeply nested JSON, wrong types, absurd numbers and amounts, invalid UTF-8, odd
//! headers, undecodable path ids and query values. No answer is a 500 or any 5xx the mock upstream
//! cannot explain, every error is OpenAI-shaped (Anthropic-shaped on `/messages`, Google-shaped on `/v1beta`), and nothing reaches the panic layer.

use serde_json::Value;

use crate::harness::start_with_mock_top;

const ADMIN: &str = "admin-hostile-inputs-key";

/// (method, path) of every documented operation, `{id}` as written.
fn operations() -> Vec<(String, String)> {
    let doc: Value = serde_json::from_str(switchyard::http::OPENAPI).unwrap();
    let mut out = vec![];
    for (path, item) in doc["paths"].as_object().unwrap() {
        let item = match item.get("$ref").and_then(Value::as_str) {
            Some(r) => doc.pointer(r.trim_start_matches('#')).unwrap(),
            None => item,
        };
        for m in ["get", "post", "put", "patch", "delete"] {
            if item.get(m).is_some() {
                out.push((m.to_uppercase(), path.clone()));
            }
        }
    }
    out
}

fn bodies() -> Vec<Vec<u8>> {
    let chat = |extra: &str| {
        format!(r#"{{"model":"demo-chat","messages":[{{"role":"user","content":"hi"}}]{extra}}}"#)
            .into_bytes()
    };
    let mut out: Vec<Vec<u8>> = [
        "",
        " ",
        "{",
        "}",
        "null",
        "[]",
        "\"x\"",
        "1e999999",
        "-0",
        "{\"model\":1}",
        "{\"model\":null,\"messages\":null}",
        "{\"messages\":\"x\",\"model\":\"demo-chat\"}",
        "{\"model\":\"demo-chat\",\"messages\":[null,1,\"x\",[]]}",
        "{\"model\":\"demo-chat\",\"messages\":[{\"role\":\"user\",\"content\":{\"x\":1}}]}",
        "{\"model\":\"demo-chat\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\",\"image_url\":{\"url\":\"data:image/png;base64,!!!\"}}]}]}",
        "{\"model\":\"demo-chat\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"input_audio\",\"input_audio\":{\"data\":\"%%%\",\"format\":\"wav\"}}]}]}",
        "{\"model\":\"demo-chat\",\"input\":[{\"type\":\"function_call_output\"}]}",
        "{\"model\":\"demo-chat\",\"prompt\":[[1,2],[-1]],\"max_tokens\":1e30,\"echo\":1}",
        "{\"model\":\"demo-chat\",\"prompt\":\"hi\",\"best_of\":-1,\"logprobs\":\"x\",\"n\":0}",
        "{\"model\":\"demo-chat\",\"prompt\":\"\\u0000\",\"stream\":true,\"echo\":true,\"max_tokens\":0}",
        "{\"model\":\"demo-chat\",\"input\":\"hi\",\"previous_response_id\":\"resp_nope\"}",
        "{\"model\":\"demo-chat\",\"input\":[{\"role\":\"user\",\"content\":[{\"type\":\"input_image\",\"image_url\":\"data:,\"}]}]}",
        "{\"name\":\"x\",\"credits\":1e400}",
        "{\"name\":\"x\",\"credits\":\"1e99999999999999999999\"}",
        "{\"name\":\"x\",\"credits\":\"-0.0000000001\"}",
        "{\"name\":\"x\",\"credits\":[1]}",
        "{\"name\":\"x\",\"rpm\":1e30,\"tpm\":-1,\"models\":[\"\"],\"budget\":\"x\"}",
        "{\"top_up\":\"9e18\",\"balance\":\"9223372036854775807\"}",
        "{\"expires_at\":\"2026-13-45T99:99:99Z\",\"expires_in\":\"99999999999999d\"}",
        "{\"expires_in\":\"9999999999999999999999d\"}",
        "{\"expires_at\":-9223372036854775808}",
        "{\"name\":\"x\",\"name\":\"y\",\"credits\":\"1\",\"credits\":2}",
        "{\"metadata\":{\"a\":{\"b\":{\"c\":[1,2,{\"d\":null}]}}},\"name\":\"meta\"}",
        "{\"contents\":[{\"role\":\"user\",\"parts\":[{\"text\":1},{\"inlineData\":{}},{\"functionResponse\":{\"response\":1}},null]}],\"tools\":[{\"functionDeclarations\":[{\"name\":\"f\",\"parameters\":{\"type\":1}}]},7],\"generationConfig\":{\"maxOutputTokens\":-1}}",
        "{\"contents\":[{\"parts\":[{\"text\":\"hi\"}]},{\"role\":\"model\",\"parts\":[{\"functionCall\":{\"name\":7,\"args\":[]}}]}],\"generationConfig\":{\"thinkingConfig\":{\"thinkingBudget\":1e30},\"candidateCount\":4294967297,\"responseSchema\":{\"type\":[1,{}]}},\"toolConfig\":{\"functionCallingConfig\":{\"mode\":\"ANY\",\"allowedFunctionNames\":[1]}}}",
        "{\"generateContentRequest\":{\"contents\":\"x\"},\"system_instruction\":{\"parts\":{\"text\":null}}}",
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect();
    out.push(chat(",\"n\":-1,\"max_tokens\":1e30"));
    out.push(chat(
        ",\"n\":4294967297,\"max_tokens\":18446744073709551616",
    ));
    out.push(chat(",\"best_of\":1000000,\"n\":1000000"));
    out.push(chat(",\"stream\":\"yes\",\"stream_options\":7"));
    out.push(chat(
        ",\"tools\":[{\"type\":\"function\",\"function\":{}}],\"tool_choice\":{\"x\":1}",
    ));
    out.push(chat(",\"reasoning_effort\":{\"budget_tokens\":-5},\"thinking\":{\"type\":\"enabled\",\"budget_tokens\":1e20}"));
    out.push(chat(",\"mock\":{\"status\":500}"));
    out.push(
        b"{\"model\":\"demo-chat\",\"messages\":[{\"role\":\"user\",\"content\":\"\xff\xfe\"}]}"
            .to_vec(),
    );
    out.push(b"\xef\xbb\xbf{\"name\":\"bom\"}".to_vec());
    out.push(b"{\"name\":\"nul\x00\"}".to_vec());
    out.push(format!("{}{}", "[".repeat(100_000), "]".repeat(100_000)).into_bytes());
    out.push(format!("{{\"model\":\"{}\"}}", "m".repeat(200_000)).into_bytes());
    out.push(format!("{{\"name\":\"{}\"}}", "\\ud800".repeat(1000)).into_bytes());
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn no_hostile_input_reaches_a_server_error_or_the_panic_layer() {
    let (gw, _mock) = start_with_mock_top(
        &format!("admin_key = \"{ADMIN}\""),
        r#"
[models."demo-chat"]
routes = ["mock/m"]
input_price = "2.50"
output_price = "10.00"
"#,
    )
    .await;
    let panics_before = switchyard::telemetry::panics_caught();
    // No connection reuse: a connection the gateway closes after refusing a request must not be
    // taken for the next one (that race is the client's, not the answer's).
    let http = reqwest::Client::builder()
        .no_gzip()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let ids = [
        "resp_nope",
        "%FF",
        "%00",
        "%C0%AF",
        "..%2F..%2Fadmin",
        &"x".repeat(5000),
    ];
    let queries = [
        "",
        "?limit=99999999999999999999&since=%FF&until=-1",
        "?since=9999999999999999999999&group_by=%00",
        "?since=0&until=1&key=%27%20OR%201%3D1&model=%25&end_reason=%5C",
        "?group_by=key&group_by=day&since=1970-01-01&until=9999-12-31T23:59:59Z",
    ];
    let mut sent = 0;
    let mut failures = vec![];
    for (method, path) in operations() {
        let admin = path.starts_with("/admin");
        let mut targets = vec![];
        for id in ids {
            let concrete = path.replace("{id}", id).replace("{*id}", id);
            for q in queries {
                targets.push(format!("{concrete}{q}"));
            }
            if !path.contains("{id}") && !path.contains("{*id}") {
                break;
            }
        }
        if path.contains("{*id}") {
            for method in [
                "generateContent",
                "streamGenerateContent?alt=sse",
                "countTokens",
            ] {
                targets.push(path.replace("{*id}", &format!("demo-chat:{method}")));
            }
        }
        let with_body = method == "POST" || method == "PATCH";
        let corpus = if with_body { bodies() } else { vec![vec![]] };
        for target in &targets {
            for body in &corpus {
                let right = if admin { ADMIN } else { gw.key.as_str() };
                for token in [Some(right), Some("sk-sy-\u{0}"), None] {
                    // A body over 64 KiB refused before it is read (wrong key, bad path id) is not
                    // drained: the connection is closed, by design, and may reach the client as a reset.
                    if body.len() > 64 * 1024 && (token != Some(right) || target.contains('%')) {
                        continue;
                    }
                    let mut req = http
                        .request(method.parse().unwrap(), gw.url(target))
                        .header("content-type", "application/json")
                        .header("accept-encoding", "gzip;q=abc, br, *;q=0")
                        .body(body.clone());
                    if let Some(t) = token {
                        // A NUL byte cannot be sent in a header: a long token of non-ASCII bytes instead.
                        let v = if t.contains('\u{0}') {
                            let mut v = b"Bearer\tsk-sy-\xc3\xa9\xff".to_vec();
                            v.extend(std::iter::repeat_n(b'A', 4096));
                            reqwest::header::HeaderValue::from_bytes(&v).unwrap()
                        } else {
                            reqwest::header::HeaderValue::from_str(&format!("Bearer {t}")).unwrap()
                        };
                        req = req.header("authorization", v);
                    }
                    let resp = match req.send().await {
                        Ok(r) => r,
                        Err(e) => {
                            let target: String = target.chars().take(120).collect();
                            failures.push(format!(
                                "{method} {target} ({} bytes, token {}): no answer ({e})",
                                body.len(),
                                token.map_or("none", |t| if t == ADMIN || t == gw.key {
                                    "right"
                                } else {
                                    "wrong"
                                })
                            ));
                            continue;
                        }
                    };
                    sent += 1;
                    let status = resp.status().as_u16();
                    let json = resp
                        .headers()
                        .get("content-type")
                        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
                    let text = resp.text().await.unwrap_or_default();
                    let shown: String =
                        String::from_utf8_lossy(&body[..body.len().min(120)]).into();
                    if status >= 500 && !(502..=504).contains(&status) {
                        failures.push(format!("{method} {target} {shown:?}: {status} {text}"));
                    } else if status >= 400 {
                        let shaped = json
                            && serde_json::from_str::<Value>(&text).is_ok_and(|v| {
                                // Google's API answers in Google's shape.
                                if path.starts_with("/v1beta") {
                                    return v["error"]["message"].is_string()
                                        && v["error"]["status"].is_string()
                                        && v["error"]["code"] == status;
                                }
                                v["error"]["message"].is_string()
                                    && v["error"]["type"].is_string()
                                    // The Messages routes answer in Anthropic's shape.
                                    && (!path.contains("/messages") || v["type"] == "error")
                            });
                        if !shaped {
                            failures.push(format!("{method} {target} {shown:?}: {status} not OpenAI-shaped: {text:.200}"));
                        }
                    }
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {sent}:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(sent > 1000, "only {sent} requests were answered");
    assert_eq!(
        switchyard::telemetry::panics_caught(),
        panics_before,
        "a request reached the panic layer"
    );
}
