//! The agent scenario over real HTTP in every dialect (chat, Anthropic, Gemini, Responses),
//! streamed and whole: a prompt naming a file gets one tool call reading it, the tool result gets
//! quoted back; with the `signatures` option a follow-up without the exact signature issued is
//! refused with the vendor's 400, and with it the loop completes.

use std::time::Duration;

use mock_upstream::MockUpstream;
use serde_json::{json, Value};

/// Upper bound on any single request, so a broken mock fails the test instead of hanging it.
const PATIENCE: Duration = Duration::from_secs(10);

async fn post(mock: &MockUpstream, path: &str, body: &Value) -> (u16, String) {
    let resp = reqwest::Client::new()
        .post(format!("http://{}{path}", mock.addr()))
        .timeout(PATIENCE)
        .json(body)
        .send()
        .await
        .expect("request sent");
    let status = resp.status().as_u16();
    (status, resp.text().await.expect("body"))
}

/// The data payloads of an SSE body (any dialect), `[DONE]` left out.
fn events(body: &str) -> Vec<Value> {
    body.split("\n\n")
        .flat_map(|e| e.split("\r\n\r\n"))
        .filter_map(|e| e.lines().find_map(|l| l.strip_prefix("data: ")))
        .filter(|d| *d != "[DONE]")
        .map(|d| serde_json::from_str(d).unwrap_or_else(|e| panic!("{e}: {d}")))
        .collect()
}

const FILE: &str = "/tmp/ws/notes.txt";
const SENTENCE: &str = "Otters hold hands while they sleep.";

#[tokio::test]
async fn chat_reads_the_file_then_quotes_it() {
    let mock = MockUpstream::start().await.unwrap();
    let tools = json!([{"type": "function", "function": {"name": "read_file",
        "parameters": {"type": "object", "properties": {"path": {"type": "string"}}}}}]);
    for stream in [false, true] {
        let first = json!({"model": "m", "stream": stream, "tools": tools,
            "messages": [{"role": "user", "content": format!("Read {FILE} and quote it")}]});
        let (status, body) = post(&mock, "/v1/chat/completions", &first).await;
        assert_eq!(status, 200, "{body}");
        let (name, args, finish) = if stream {
            let ev = events(&body);
            let name = ev
                .iter()
                .find_map(|e| e.pointer("/choices/0/delta/tool_calls/0/function/name"))
                .unwrap()
                .clone();
            let args: String = ev
                .iter()
                .filter_map(|e| e.pointer("/choices/0/delta/tool_calls/0/function/arguments"))
                .map(|a| a.as_str().unwrap().to_string())
                .collect();
            let finish = ev
                .iter()
                .find_map(|e| {
                    e.pointer("/choices/0/finish_reason")
                        .filter(|f| !f.is_null())
                })
                .unwrap()
                .clone();
            (name, args, finish)
        } else {
            let v: Value = serde_json::from_str(&body).unwrap();
            let call = &v["choices"][0]["message"]["tool_calls"][0]["function"];
            (
                call["name"].clone(),
                call["arguments"].as_str().unwrap().to_string(),
                v["choices"][0]["finish_reason"].clone(),
            )
        };
        assert_eq!(name, "read_file");
        assert_eq!(
            serde_json::from_str::<Value>(&args).unwrap(),
            json!({"path": FILE})
        );
        assert_eq!(finish, "tool_calls");

        let second = json!({"model": "m", "stream": stream, "tools": tools, "messages": [
            {"role": "user", "content": format!("Read {FILE} and quote it")},
            {"role": "assistant", "content": null, "tool_calls": [{"id": "c1", "type": "function",
                "function": {"name": "read_file", "arguments": args}}]},
            {"role": "tool", "tool_call_id": "c1", "content": format!("{SENTENCE}\n")}]});
        let (status, body) = post(&mock, "/v1/chat/completions", &second).await;
        assert_eq!(status, 200, "{body}");
        let text: String = if stream {
            events(&body)
                .iter()
                .filter_map(|e| {
                    e.pointer("/choices/0/delta/content")?
                        .as_str()
                        .map(String::from)
                })
                .collect()
        } else {
            let v: Value = serde_json::from_str(&body).unwrap();
            v["choices"][0]["message"]["content"]
                .as_str()
                .unwrap()
                .to_string()
        };
        assert_eq!(text, format!("The file says: {SENTENCE}"));
    }
}

fn anthropic_request(stream: bool, messages: Value) -> Value {
    json!({"model": "claude-x", "max_tokens": 1000, "stream": stream,
        "thinking": {"type": "enabled", "budget_tokens": 500},
        "tools": [{"name": "Bash", "input_schema": {"properties": {"command": {"type": "string"}}}},
                  {"name": "Read", "input_schema": {"properties": {"file_path": {"type": "string"}}}}],
        "messages": messages})
}

/// The content blocks of an Anthropic answer, whole or rebuilt from its stream.
fn anthropic_blocks(stream: bool, body: &str) -> (Vec<Value>, String) {
    if !stream {
        let v: Value = serde_json::from_str(body).unwrap();
        return (
            v["content"].as_array().unwrap().clone(),
            v["stop_reason"].as_str().unwrap().to_string(),
        );
    }
    let mut blocks: Vec<Value> = Vec::new();
    let mut partial = String::new();
    let mut stop = String::new();
    for e in events(body) {
        match e["type"].as_str().unwrap() {
            "content_block_start" => blocks.push(e["content_block"].clone()),
            "content_block_delta" => {
                let b = blocks.last_mut().unwrap();
                let d = &e["delta"];
                match d["type"].as_str().unwrap() {
                    "thinking_delta" => {
                        b["thinking"] = json!(format!(
                            "{}{}",
                            b["thinking"].as_str().unwrap(),
                            d["thinking"].as_str().unwrap()
                        ))
                    }
                    "signature_delta" => b["signature"] = d["signature"].clone(),
                    "text_delta" => {
                        b["text"] = json!(format!(
                            "{}{}",
                            b["text"].as_str().unwrap(),
                            d["text"].as_str().unwrap()
                        ))
                    }
                    "input_json_delta" => partial.push_str(d["partial_json"].as_str().unwrap()),
                    _ => {}
                }
            }
            "content_block_stop" => {
                let b = blocks.last_mut().unwrap();
                if b["type"] == "tool_use" {
                    b["input"] = serde_json::from_str(&std::mem::take(&mut partial)).unwrap();
                }
            }
            "message_delta" => stop = e["delta"]["stop_reason"].as_str().unwrap().to_string(),
            _ => {}
        }
    }
    (blocks, stop)
}

#[tokio::test]
async fn anthropic_signs_its_thinking_and_refuses_a_turn_without_it() {
    let mock = MockUpstream::start().await.unwrap();
    mock.set_options(json!({"signatures": true})).unwrap();
    for stream in [false, true] {
        let prompt = json!({"role": "user", "content": [{"type": "text", "text": "<system-reminder>a planted `json.py`</system-reminder>"},
            {"type": "text", "text": format!("Read {FILE} and quote it")}]});
        let (status, body) = post(
            &mock,
            "/v1/messages",
            &anthropic_request(stream, json!([prompt])),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        let (blocks, stop) = anthropic_blocks(stream, &body);
        assert_eq!(stop, "tool_use");
        assert_eq!(blocks[0]["type"], "thinking", "{blocks:?}");
        assert!(!blocks[0]["signature"].as_str().unwrap().is_empty());
        let tool_use = blocks.iter().find(|b| b["type"] == "tool_use").unwrap();
        assert_eq!(tool_use["name"], "Read");
        assert_eq!(tool_use["input"], json!({"file_path": FILE}));
        let result = json!({"role": "user", "content": [{"type": "tool_result",
            "tool_use_id": tool_use["id"], "content": [{"type": "text", "text": SENTENCE}]}]});

        // Without the thinking block, or with another signature: refused.
        let unsigned: Vec<Value> = blocks
            .iter()
            .filter(|b| b["type"] != "thinking")
            .cloned()
            .collect();
        let mut forged = blocks.clone();
        forged[0]["signature"] = json!("EqMBforged");
        for assistant in [unsigned, forged] {
            let messages = json!([prompt, {"role": "assistant", "content": assistant}, result]);
            let (status, body) =
                post(&mock, "/v1/messages", &anthropic_request(stream, messages)).await;
            assert_eq!(status, 400, "{body}");
            let v: Value = serde_json::from_str(&body).unwrap();
            assert_eq!(v["type"], "error");
            assert_eq!(v["error"]["type"], "invalid_request_error");
        }
        // As it came: the quote.
        let messages = json!([prompt, {"role": "assistant", "content": blocks}, result]);
        let (status, body) =
            post(&mock, "/v1/messages", &anthropic_request(stream, messages)).await;
        assert_eq!(status, 200, "{body}");
        let (blocks, stop) = anthropic_blocks(stream, &body);
        assert_eq!(stop, "end_turn");
        let text = blocks.iter().find(|b| b["type"] == "text").unwrap();
        assert_eq!(text["text"], format!("The file says: {SENTENCE}"));
    }
}

#[tokio::test]
async fn gemini_signs_its_function_call_and_refuses_a_turn_without_it() {
    let mock = MockUpstream::start().await.unwrap();
    mock.set_options(json!({"signatures": true})).unwrap();
    let tools = json!([{"functionDeclarations": [{"name": "read_file",
        "parametersJsonSchema": {"type": "object", "properties": {"file_path": {"type": "string"}}}}]}]);
    let prompt = json!({"role": "user", "parts": [{"text": "Read notes.txt and quote it"}]});
    for stream in [false, true] {
        let path = if stream {
            "/v1beta/models/gemini-x:streamGenerateContent?alt=sse"
        } else {
            "/v1beta/models/gemini-x:generateContent"
        };
        let (status, body) =
            post(&mock, path, &json!({"contents": [prompt], "tools": tools})).await;
        assert_eq!(status, 200, "{body}");
        let answers = if stream {
            events(&body)
        } else {
            vec![serde_json::from_str(&body).unwrap()]
        };
        let part = answers
            .iter()
            .flat_map(|a| {
                a["candidates"][0]["content"]["parts"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
            })
            .find(|p| p.get("functionCall").is_some())
            .unwrap();
        assert_eq!(
            part["functionCall"],
            json!({"name": "read_file", "args": {"file_path": "notes.txt"}})
        );
        assert!(part["thoughtSignature"].is_string(), "{part}");
        assert_eq!(
            answers.last().unwrap()["candidates"][0]["finishReason"],
            "STOP"
        );
        let response = json!({"role": "user", "parts": [{"functionResponse": {"name": "read_file",
            "response": {"output": SENTENCE}}}]});
        let mut unsigned = part.clone();
        unsigned.as_object_mut().unwrap().remove("thoughtSignature");
        let mut forged = part.clone();
        forged["thoughtSignature"] = json!("Zm9yZ2Vk");
        for model_part in [unsigned, forged] {
            let body = json!({"tools": tools, "contents": [prompt,
                {"role": "model", "parts": [model_part]}, response]});
            let (status, text) = post(&mock, path, &body).await;
            assert_eq!(status, 400, "{text}");
            let v: Value = serde_json::from_str(&text).unwrap();
            assert_eq!(v["error"]["status"], "INVALID_ARGUMENT");
        }
        let body = json!({"tools": tools, "contents": [prompt, {"role": "model", "parts": [part]}, response]});
        let (status, text) = post(&mock, path, &body).await;
        assert_eq!(status, 200, "{text}");
        let answers = if stream {
            events(&text)
        } else {
            vec![serde_json::from_str(&text).unwrap()]
        };
        let said: String = answers
            .iter()
            .flat_map(|a| {
                a["candidates"][0]["content"]["parts"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
            })
            .filter_map(|p| p["text"].as_str().map(String::from))
            .collect();
        assert_eq!(said, format!("The file says: {SENTENCE}"));
    }
}

#[tokio::test]
async fn responses_sends_encrypted_reasoning_and_refuses_a_turn_without_it() {
    let mock = MockUpstream::start().await.unwrap();
    mock.set_options(json!({"signatures": true})).unwrap();
    let tools = json!([{"type": "web_search"}, {"type": "function", "name": "exec_command",
        "parameters": {"type": "object", "properties": {"cmd": {"type": "string"}}}}]);
    let prompt = json!({"type": "message", "role": "user",
        "content": [{"type": "input_text", "text": "Read notes.txt and quote it"}]});
    for stream in [false, true] {
        let request = |input: Value| {
            json!({"model": "gpt-x", "stream": stream, "store": false,
            "include": ["reasoning.encrypted_content"], "tools": tools, "input": input})
        };
        let (status, body) = post(&mock, "/v1/responses", &request(json!([prompt]))).await;
        assert_eq!(status, 200, "{body}");
        let response = if stream {
            let ev = events(&body);
            for (i, e) in ev.iter().enumerate() {
                assert_eq!(e["sequence_number"], i);
            }
            assert_eq!(ev[0]["type"], "response.created");
            let last = ev.last().unwrap();
            assert_eq!(last["type"], "response.completed");
            last["response"].clone()
        } else {
            serde_json::from_str(&body).unwrap()
        };
        let output = response["output"].as_array().unwrap().clone();
        assert_eq!(output[0]["type"], "reasoning");
        assert!(output[0]["encrypted_content"].is_string());
        assert_eq!(output[1]["type"], "function_call");
        assert_eq!(output[1]["name"], "exec_command");
        assert_eq!(output[1]["arguments"], "{\"cmd\":\"cat notes.txt\"}");
        let usage = &response["usage"];
        assert_eq!(
            usage["total_tokens"].as_u64(),
            Some(
                usage["input_tokens"].as_u64().unwrap() + usage["output_tokens"].as_u64().unwrap()
            )
        );
        assert!(usage["input_tokens_details"]["cached_tokens"].is_u64());
        assert!(usage["output_tokens_details"]["reasoning_tokens"].is_u64());
        let result = json!({"type": "function_call_output", "call_id": output[1]["call_id"],
            "output": format!("Process exited with code 0\nOutput:\n{SENTENCE}\n")});
        let (status, body) = post(
            &mock,
            "/v1/responses",
            &request(json!([prompt, output[1], result])),
        )
        .await;
        assert_eq!(status, 400, "{body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["error"]["param"], "input");
        let (status, body) = post(
            &mock,
            "/v1/responses",
            &request(json!([prompt, output[0], output[1], result])),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        let response = if stream {
            events(&body).last().unwrap()["response"].clone()
        } else {
            serde_json::from_str(&body).unwrap()
        };
        let text = response["output"]
            .as_array()
            .unwrap()
            .iter()
            .find(|o| o["type"] == "message")
            .unwrap()["content"][0]["text"]
            .clone();
        assert!(text
            .as_str()
            .unwrap()
            .starts_with("The file says: Process exited"));
        assert!(text.as_str().unwrap().ends_with(SENTENCE));
    }
    let recorded = mock.requests();
    assert!(recorded.iter().all(|r| r.path == "/v1/responses"));
    assert_eq!(recorded.len(), 6);
}
