//! Why an answer ended, as each client dialect names it, when the upstream named it in words of its
//! own: DeepSeek's `insufficient_system_resource` (cut short) is `length` to a chat client,
//! `max_tokens` to a Messages client and an incomplete Response; a reason an upstream's dialect
//! never defined (OpenAI's, Anthropic's or Gemini's) is `stop`. Streamed or not, and the ledger
//! records the same ending.

use mock_upstream::MockUpstream;
use serde_json::{json, Value};
use switchyard::store::ledger::EndReason;

use crate::harness::{self, data_events, parse_sse, request_id, user, TestGateway};

async fn gateway() -> (TestGateway, MockUpstream) {
    let mock = MockUpstream::start().await.unwrap();
    let text = format!(
        r#"
demo_credits = "100"
[providers.ds]
kind = "deepseek"
base_url = "{base}"
api_key = "upstream-secret-key"

[providers.oa]
kind = "openai"
base_url = "{base}"
api_key = "upstream-secret-key"

[providers.claude]
kind = "anthropic"
base_url = "{base}"
api_key = "sk-ant-test"

[providers.gem]
kind = "gemini"
base_url = "{base}"
api_key = "gemini-test-key"

[models."cut-short"]
routes = ["ds/deepseek-chat@finish=insufficient_system_resource"]
input_price = "0.27"
output_price = "1.10"

[models."new-openai"]
routes = ["oa/m@finish=unknown"]
input_price = "2.50"
output_price = "10.00"

[models."new-claude"]
routes = ["claude/claude-sonnet-4@finish=unknown"]
input_price = "3.00"
output_price = "15.00"

[models."new-gemini"]
routes = ["gem/gemini-2.5-flash@finish=unknown"]
input_price = "0.30"
output_price = "2.50"
"#,
        base = mock.base_url()
    );
    (harness::start(&text).await, mock)
}

/// A chat answer's `finish_reason` (whole, then streamed: the last chunk that has one) and the
/// ledger's ending of each.
async fn chat_finish(gw: &TestGateway, model: &str) -> Vec<(String, EndReason)> {
    let mut out = Vec::new();
    for stream in [false, true] {
        let resp = gw
            .chat(json!({"model": model, "messages": user("hi"), "stream": stream}))
            .send()
            .await
            .unwrap();
        let status = resp.status();
        let id = request_id(&resp);
        let body = resp.text().await.unwrap();
        assert_eq!(status, 200, "{model}: {body}");
        let finish = if stream {
            let chunks = data_events(&parse_sse(&body));
            let with: Vec<&Value> = chunks
                .iter()
                .flat_map(|c| c["choices"].as_array().into_iter().flatten())
                .filter(|c| !c["finish_reason"].is_null())
                .collect();
            assert_eq!(with.len(), 1, "{model}: {body}");
            with[0]["finish_reason"].clone()
        } else {
            serde_json::from_str::<Value>(&body).unwrap()["choices"][0]["finish_reason"].clone()
        };
        let finish = finish
            .as_str()
            .unwrap_or_else(|| panic!("{body}"))
            .to_owned();
        out.push((finish, gw.entry(&id).await.end_reason));
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn an_upstreams_own_finish_reasons_reach_chat_clients_in_openais_words() {
    let (gw, _mock) = gateway().await;
    let length = ("length".to_owned(), EndReason::Length);
    assert_eq!(
        chat_finish(&gw, "cut-short").await,
        [length.clone(), length]
    );
    for model in ["new-openai", "new-claude", "new-gemini"] {
        let stop = ("stop".to_owned(), EndReason::Stop);
        assert_eq!(
            chat_finish(&gw, model).await,
            [stop.clone(), stop],
            "{model}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cut_short_answer_is_max_tokens_to_messages_and_incomplete_to_responses() {
    let (gw, _mock) = gateway().await;
    for stream in [false, true] {
        let resp = harness::client()
            .post(gw.url("/v1/messages"))
            .header("x-api-key", &gw.key)
            .header("anthropic-version", "2023-06-01")
            .json(
                &json!({"model": "cut-short", "max_tokens": 100, "stream": stream,
                          "messages": [{"role": "user", "content": "hi"}]}),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let body = resp.text().await.unwrap();
        let stop_reason = if stream {
            let delta = body
                .split("\n\n")
                .find_map(|b| b.strip_prefix("event: message_delta\ndata: "))
                .unwrap_or_else(|| panic!("{body}"));
            serde_json::from_str::<Value>(delta).unwrap()["delta"]["stop_reason"].clone()
        } else {
            serde_json::from_str::<Value>(&body).unwrap()["stop_reason"].clone()
        };
        assert_eq!(stop_reason, "max_tokens", "stream {stream}: {body}");

        let resp = harness::client()
            .post(gw.url("/v1/responses"))
            .bearer_auth(&gw.key)
            .json(&json!({"model": "cut-short", "input": "hi", "stream": stream, "store": false}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let body = resp.text().await.unwrap();
        let response = if stream {
            // The last event is the terminal one.
            let terminal = body
                .split("\n\n")
                .filter_map(|b| b.strip_prefix("event: "))
                .filter_map(|b| b.split_once("\ndata: "))
                .last()
                .unwrap_or_else(|| panic!("{body}"));
            assert_eq!(terminal.0, "response.incomplete", "{body}");
            serde_json::from_str::<Value>(terminal.1).unwrap()["response"].clone()
        } else {
            serde_json::from_str::<Value>(&body).unwrap()
        };
        assert_eq!(response["status"], "incomplete", "stream {stream}: {body}");
        assert_eq!(
            response["incomplete_details"]["reason"], "max_output_tokens",
            "stream {stream}: {body}"
        );
    }
}
