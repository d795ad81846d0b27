//! `GET /openapi.json` and the router agree: every route the HTTP code registers (read from its
//! `.route(…)` calls, each public one under the three prefixes) is in the document with the same
//! methods and vice versa, and on a live gateway every documented operation is routed while every
//! other method on a documented path is a 405 in the OpenAI error shape.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde_json::Value;

use crate::harness::{client, start_with_mock_top};

const METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];

/// (path, methods) of every `.route(path, method(handler).method(handler)…)` in the HTTP code;
/// `{p}` stands for each public prefix and `{{id}}` for the path parameter `{id}`.
fn registered_routes() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = vec![src.join("http.rs")];
    for entry in std::fs::read_dir(src.join("http")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let code = text.split("#[cfg(test)]").next().unwrap();
        for (at, _) in code.match_indices(".route(") {
            let args = balanced(&code[at + ".route(".len()..]);
            let literal = args.split('"').nth(1).expect("a route path literal");
            let methods: BTreeSet<String> = METHODS
                .iter()
                .filter(|m| {
                    args.match_indices(&format!("{m}(")).any(|(i, _)| {
                        i == 0
                            || !args.as_bytes()[i - 1].is_ascii_alphanumeric()
                                && args.as_bytes()[i - 1] != b'_'
                    })
                })
                .map(|m| m.to_string())
                .collect();
            assert!(!methods.is_empty(), "no method found in .route({args})");
            let path = literal.replace("{{", "{").replace("}}", "}");
            let expanded: Vec<String> = if path.contains("{p}") {
                switchyard::http::PREFIXES
                    .iter()
                    .map(|p| path.replace("{p}", p))
                    .collect()
            } else {
                vec![path]
            };
            for p in expanded {
                out.entry(p).or_default().extend(methods.iter().cloned());
            }
        }
    }
    out
}

/// The text up to the parenthesis that closes the one just opened.
fn balanced(s: &str) -> &str {
    let mut depth = 1;
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth == 0 {
                    return &s[..i];
                }
            }
            _ => {}
        }
    }
    panic!("unbalanced .route(")
}

fn document() -> Value {
    serde_json::from_str(switchyard::http::OPENAPI).expect("the OpenAPI document is JSON")
}

/// (path, methods) the document describes, with `$ref`'d path items resolved.
fn documented_routes(doc: &Value) -> BTreeMap<String, BTreeSet<String>> {
    let mut out = BTreeMap::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        let item = match item.get("$ref").and_then(Value::as_str) {
            Some(r) => {
                let name = r
                    .strip_prefix("#/components/pathItems/")
                    .expect("path items refer to components/pathItems");
                &doc["components"]["pathItems"][name]
            }
            None => item,
        };
        assert!(item.is_object(), "{path}: unresolved path item");
        let methods: BTreeSet<String> = METHODS
            .iter()
            .filter(|m| item.get(**m).is_some())
            .map(|m| m.to_string())
            .collect();
        out.insert(path.clone(), methods);
    }
    out
}

#[test]
fn the_document_lists_exactly_the_routes_and_methods_the_router_registers() {
    let doc = document();
    assert_eq!(doc["openapi"], "3.1.0");
    let registered = registered_routes();
    // The scan saw the routes it should (a broken scan must not pass by seeing nothing).
    assert!(
        registered.contains_key("/v1/llm/chat/completions"),
        "{registered:?}"
    );
    assert!(
        registered.contains_key("/admin/keys/{id}"),
        "{registered:?}"
    );
    assert_eq!(
        registered["/admin/keys/{id}"],
        BTreeSet::from(["get".into(), "patch".into(), "delete".into()])
    );
    assert_eq!(registered, documented_routes(&doc));
}

#[test]
fn every_reference_in_the_document_resolves() {
    let doc = document();
    fn walk(v: &Value, doc: &Value, broken: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                if let Some(Value::String(r)) = m.get("$ref") {
                    let ok = r.strip_prefix('#').and_then(|p| doc.pointer(p)).is_some();
                    if !ok {
                        broken.push(r.clone());
                    }
                }
                m.values().for_each(|x| walk(x, doc, broken));
            }
            Value::Array(a) => a.iter().for_each(|x| walk(x, doc, broken)),
            _ => {}
        }
    }
    let mut broken = vec![];
    walk(&doc, &doc, &mut broken);
    assert!(broken.is_empty(), "unresolved: {broken:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn every_documented_operation_is_served_and_other_methods_are_405() {
    let (gw, _mock) =
        start_with_mock_top("admin_key = \"admin-secret-0123456789abcdef\"", "").await;
    let http = client();
    let served = client().get(gw.url("/openapi.json")).send().await.unwrap();
    assert_eq!(served.status(), 200);
    assert_eq!(served.headers()["content-type"], "application/json");
    let served: Value = served.json().await.unwrap();
    assert_eq!(
        served,
        document(),
        "/openapi.json serves the embedded document"
    );

    for (path, methods) in documented_routes(&document()) {
        let concrete = path.replace("{id}", "key_doesnotexist");
        for method in METHODS {
            let m = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let resp = http
                .request(m, gw.url(&concrete))
                .header("content-type", "application/json")
                .body("{}")
                .send()
                .await
                .unwrap();
            let status = resp.status().as_u16();
            // Documented operations may answer text (`/healthz`, `/metrics`); errors are JSON.
            let text = resp.text().await.unwrap();
            let body: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
            let code = body.pointer("/error/code").cloned().unwrap_or(Value::Null);
            if methods.contains(method) {
                assert!(
                    status != 405 && code != "unknown_url",
                    "{method} {path} is documented but not served: {status} {body}"
                );
            } else {
                assert_eq!(status, 405, "{method} {path} is not documented: {body}");
                assert_eq!(code, "method_not_allowed", "{body}");
            }
        }
    }
}
