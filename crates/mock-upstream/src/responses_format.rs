//! Writes a [`Completion`] in the OpenAI Responses wire format (`POST /v1/responses`), after the
//! recorded transcripts: `event: <type>` + `data: <json>` events, each with its `sequence_number`
//! (response.created, response.in_progress, then per output item output_item.added, for a message
//! content_part.added, output_text.delta per token, output_text.done, content_part.done, for a
//! function call function_call_arguments.delta per fragment and .done, output_item.done; last
//! response.completed, or response.incomplete when the output limit cut the answer), with usage
//! `{input_tokens, input_tokens_details.cached_tokens, output_tokens,
//! output_tokens_details.reasoning_tokens, total_tokens}`; the whole Response object; and a
//! `reasoning` item (with `encrypted_content` when the request's `include` asks for it) first when
//! the answer reasons or signatures are on. No `data: [DONE]` at the end, as OpenAI.

use serde_json::{json, Map, Value};

use crate::completion::{Completion, Finish};
use crate::playback::Step;
use crate::recording::TokenKind;

/// The in-stream error written by `error_after`.
pub(crate) const STREAM_ERROR_EVENT: &str = "event: error\ndata: {\"type\":\"error\",\"sequence_number\":0,\"error\":{\"type\":\"server_error\",\"code\":\"server_error\",\"message\":\"mock upstream error\",\"param\":null}}\n\n";

/// The fixed parts of one response.
pub(crate) struct ResponseContext {
    /// `resp_…`; the item ids are derived from it.
    pub id: String,
    pub created_at: u64,
    pub model: String,
    pub send_usage: bool,
    /// A `reasoning` item comes first even without reasoning tokens (signatures on).
    pub reasoning_item: bool,
    /// The `encrypted_content` of the reasoning item, when the request included it.
    pub encrypted_content: Option<String>,
    /// Request fields echoed in the Response object.
    pub echo: Echo,
}

/// What a Response object repeats from its request.
pub(crate) struct Echo {
    pub instructions: Value,
    pub max_output_tokens: Value,
    pub parallel_tool_calls: Value,
    pub previous_response_id: Value,
    pub reasoning: Value,
    pub store: Value,
    pub tool_choice: Value,
    pub tools: Value,
    pub metadata: Value,
}

impl Echo {
    pub(crate) fn of(request: &Value) -> Echo {
        let get = |k: &str, default: Value| match request.get(k) {
            None | Some(Value::Null) => default,
            Some(v) => v.clone(),
        };
        Echo {
            instructions: get("instructions", Value::Null),
            max_output_tokens: get("max_output_tokens", Value::Null),
            parallel_tool_calls: get("parallel_tool_calls", json!(true)),
            previous_response_id: get("previous_response_id", Value::Null),
            reasoning: get("reasoning", json!({"effort": null, "summary": null})),
            store: get("store", json!(true)),
            tool_choice: get("tool_choice", json!("auto")),
            tools: get("tools", json!([])),
            metadata: get("metadata", json!({})),
        }
    }
}

impl ResponseContext {
    fn tail(&self) -> &str {
        self.id.strip_prefix("resp_").unwrap_or(&self.id)
    }

    pub(crate) fn reasoning_id(&self) -> String {
        format!("rs_{}", self.tail())
    }

    fn message_id(&self) -> String {
        format!("msg_{}", self.tail())
    }

    fn call_item_id(&self, k: usize) -> String {
        format!("fc_{}{k:02}", self.tail())
    }

    /// The `call_id` of the k-th function call.
    pub(crate) fn call_id(&self, k: usize) -> String {
        let tail = self.tail();
        format!("call_mock{}{k:02}", &tail[tail.len().saturating_sub(16)..])
    }

    /// The Response object with this status, output and usage.
    fn response(
        &self,
        status: &str,
        output: Vec<Value>,
        usage: Value,
        finish: Option<Finish>,
    ) -> Value {
        let mut m = Map::new();
        m.insert("id".into(), json!(self.id));
        m.insert("object".into(), json!("response"));
        m.insert("created_at".into(), json!(self.created_at));
        m.insert("status".into(), json!(status));
        m.insert("background".into(), json!(false));
        m.insert(
            "completed_at".into(),
            if status == "completed" {
                json!(self.created_at)
            } else {
                Value::Null
            },
        );
        m.insert("error".into(), Value::Null);
        m.insert(
            "incomplete_details".into(),
            if finish.is_some_and(Finish::is_length) {
                json!({"reason": "max_output_tokens"})
            } else {
                Value::Null
            },
        );
        m.insert("instructions".into(), self.echo.instructions.clone());
        m.insert(
            "max_output_tokens".into(),
            self.echo.max_output_tokens.clone(),
        );
        m.insert("max_tool_calls".into(), Value::Null);
        m.insert("model".into(), json!(self.model));
        m.insert("output".into(), Value::Array(output));
        m.insert(
            "parallel_tool_calls".into(),
            self.echo.parallel_tool_calls.clone(),
        );
        m.insert(
            "previous_response_id".into(),
            self.echo.previous_response_id.clone(),
        );
        m.insert("prompt_cache_key".into(), Value::Null);
        m.insert("reasoning".into(), self.echo.reasoning.clone());
        m.insert("safety_identifier".into(), Value::Null);
        m.insert("service_tier".into(), json!("default"));
        m.insert("store".into(), self.echo.store.clone());
        m.insert("temperature".into(), json!(1.0));
        m.insert(
            "text".into(),
            json!({"format": {"type": "text"}, "verbosity": "medium"}),
        );
        m.insert("tool_choice".into(), self.echo.tool_choice.clone());
        m.insert("tools".into(), self.echo.tools.clone());
        m.insert("top_logprobs".into(), json!(0));
        m.insert("top_p".into(), json!(1.0));
        m.insert("truncation".into(), json!("disabled"));
        m.insert("usage".into(), usage);
        m.insert("user".into(), Value::Null);
        m.insert("metadata".into(), self.echo.metadata.clone());
        Value::Object(m)
    }

    fn reasoning_item(&self) -> Value {
        let mut item = Map::new();
        item.insert("id".into(), json!(self.reasoning_id()));
        item.insert("type".into(), json!("reasoning"));
        if let Some(e) = &self.encrypted_content {
            item.insert("encrypted_content".into(), json!(e));
        }
        item.insert("summary".into(), json!([]));
        Value::Object(item)
    }

    fn wants_reasoning_item(&self, c: &Completion) -> bool {
        self.reasoning_item || !c.reasoning.is_empty()
    }
}

/// The `encrypted_content` of the reasoning item of response `id`: deterministic, unique per
/// response.
pub(crate) fn encrypted_content(id: &str) -> String {
    format!("gAAAAABmock{}", id.trim_start_matches("resp_"))
}

/// The usage object.
pub(crate) fn usage(c: &Completion) -> Value {
    let output = c.completion_tokens();
    json!({
        "input_tokens": c.prompt_tokens,
        "input_tokens_details": {"cached_tokens": c.cached_tokens},
        "output_tokens": output,
        "output_tokens_details": {"reasoning_tokens": c.reasoning_tokens()},
        "total_tokens": c.prompt_tokens + output,
    })
}

fn status(c: &Completion) -> &'static str {
    if c.finish.is_length() {
        "incomplete"
    } else {
        "completed"
    }
}

fn output_text_part(text: &str) -> Value {
    json!({"type": "output_text", "annotations": [], "logprobs": [], "text": text})
}

/// The finished output items, in order.
fn output_items(ctx: &ResponseContext, c: &Completion) -> Vec<Value> {
    let item_status = status(c);
    let mut out = Vec::new();
    if ctx.wants_reasoning_item(c) {
        out.push(ctx.reasoning_item());
    }
    if !c.content.is_empty() || c.tool_calls.is_empty() {
        out.push(json!({
            "id": ctx.message_id(),
            "type": "message",
            "status": item_status,
            "content": [output_text_part(&c.text())],
            "role": "assistant"
        }));
    }
    for (k, call) in c.tool_calls.iter().enumerate() {
        out.push(json!({
            "id": ctx.call_item_id(k),
            "type": "function_call",
            "status": "completed",
            "arguments": call.arguments(),
            "call_id": ctx.call_id(k),
            "name": call.name
        }));
    }
    out
}

/// Numbers the events of one stream.
struct EventWriter {
    steps: Vec<Step>,
    seq: u64,
}

impl EventWriter {
    fn event(&mut self, kind: &str, mut data: Map<String, Value>, token: Option<TokenKind>) {
        let mut m = Map::new();
        m.insert("type".into(), json!(kind));
        m.append(&mut data);
        m.insert("sequence_number".into(), json!(self.seq));
        self.seq += 1;
        let bytes = format!("event: {kind}\ndata: {}\n\n", Value::Object(m));
        self.steps.push(match token {
            Some(t) => Step::token(bytes, t),
            None => Step::frame(bytes),
        });
    }
}

fn fields(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

/// The whole stream as steps (unpaced, without faults).
pub(crate) fn stream_steps(ctx: &ResponseContext, c: &Completion) -> Vec<Step> {
    let mut w = EventWriter {
        steps: Vec::new(),
        seq: 0,
    };
    let open = ctx.response("in_progress", Vec::new(), Value::Null, None);
    w.event(
        "response.created",
        fields(json!({"response": open.clone()})),
        None,
    );
    w.event(
        "response.in_progress",
        fields(json!({"response": open})),
        None,
    );

    let items = output_items(ctx, c);
    let mut output_index = 0usize;
    if ctx.wants_reasoning_item(c) {
        let item = ctx.reasoning_item();
        w.event(
            "response.output_item.added",
            fields(json!({"item": item, "output_index": output_index})),
            None,
        );
        // The reasoning itself is not shown (no summary is written); usage counts its tokens.
        w.event(
            "response.output_item.done",
            fields(json!({"item": items[output_index], "output_index": output_index})),
            None,
        );
        output_index += 1;
    }
    if !c.content.is_empty() || c.tool_calls.is_empty() {
        let item_id = ctx.message_id();
        w.event(
            "response.output_item.added",
            fields(
                json!({"item": {"id": item_id, "type": "message", "status": "in_progress",
                "content": [], "role": "assistant"}, "output_index": output_index}),
            ),
            None,
        );
        w.event(
            "response.content_part.added",
            fields(
                json!({"content_index": 0, "item_id": item_id, "output_index": output_index,
                "part": output_text_part("")}),
            ),
            None,
        );
        for word in &c.content {
            w.event(
                "response.output_text.delta",
                fields(
                    json!({"content_index": 0, "delta": word, "item_id": item_id,
                    "logprobs": [], "output_index": output_index}),
                ),
                Some(TokenKind::Content(word.clone())),
            );
        }
        let text = c.text();
        w.event(
            "response.output_text.done",
            fields(
                json!({"content_index": 0, "item_id": item_id, "logprobs": [],
                "output_index": output_index, "text": text}),
            ),
            None,
        );
        w.event(
            "response.content_part.done",
            fields(
                json!({"content_index": 0, "item_id": item_id, "output_index": output_index,
                "part": output_text_part(&text)}),
            ),
            None,
        );
        w.event(
            "response.output_item.done",
            fields(json!({"item": items[output_index], "output_index": output_index})),
            None,
        );
        output_index += 1;
    }
    for (k, call) in c.tool_calls.iter().enumerate() {
        let item_id = ctx.call_item_id(k);
        w.event(
            "response.output_item.added",
            fields(
                json!({"item": {"id": item_id, "type": "function_call", "status": "in_progress",
                "arguments": "", "call_id": ctx.call_id(k), "name": call.name},
                "output_index": output_index}),
            ),
            None,
        );
        for fragment in &call.fragments {
            w.event(
                "response.function_call_arguments.delta",
                fields(
                    json!({"delta": fragment, "item_id": item_id, "output_index": output_index}),
                ),
                Some(TokenKind::ToolArguments),
            );
        }
        w.event(
            "response.function_call_arguments.done",
            fields(json!({"arguments": call.arguments(), "item_id": item_id,
                "output_index": output_index})),
            None,
        );
        w.event(
            "response.output_item.done",
            fields(json!({"item": items[output_index], "output_index": output_index})),
            None,
        );
        output_index += 1;
    }
    let usage = if ctx.send_usage {
        usage(c)
    } else {
        Value::Null
    };
    let done = ctx.response(status(c), items, usage, Some(c.finish));
    let kind = if c.finish.is_length() {
        "response.incomplete"
    } else {
        "response.completed"
    };
    w.event(kind, fields(json!({"response": done})), None);
    w.steps
}

/// The whole Response object.
pub(crate) fn body(ctx: &ResponseContext, c: &Completion) -> Value {
    let usage = if ctx.send_usage {
        usage(c)
    } else {
        Value::Null
    };
    ctx.response(status(c), output_items(ctx, c), usage, Some(c.finish))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::options::Behaviour;

    fn ctx(encrypted: Option<&str>) -> ResponseContext {
        ResponseContext {
            id: "resp_mock0001".into(),
            created_at: 1,
            model: "m".into(),
            send_usage: true,
            reasoning_item: encrypted.is_some(),
            encrypted_content: encrypted.map(str::to_string),
            echo: Echo::of(&json!({})),
        }
    }

    fn events(steps: &[Step]) -> Vec<Value> {
        steps
            .iter()
            .filter_map(|s| match s {
                Step::Send { bytes, .. } => {
                    let text = std::str::from_utf8(bytes).unwrap();
                    let data = text.lines().find_map(|l| l.strip_prefix("data: "))?;
                    Some(serde_json::from_str(data).unwrap())
                }
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_stream_numbers_every_event_and_ends_with_the_whole_response() {
        let mut b = Behaviour::for_model("m", false);
        b.tokens = 3;
        let c = Completion::plan(&b, &json!({"input": "hi there"}));
        let ev = events(&stream_steps(&ctx(None), &c));
        for (i, e) in ev.iter().enumerate() {
            assert_eq!(e["sequence_number"], i, "{e}");
        }
        let kinds: Vec<&str> = ev.iter().map(|e| e["type"].as_str().unwrap()).collect();
        assert_eq!(
            kinds,
            [
                "response.created",
                "response.in_progress",
                "response.output_item.added",
                "response.content_part.added",
                "response.output_text.delta",
                "response.output_text.delta",
                "response.output_text.delta",
                "response.output_text.done",
                "response.content_part.done",
                "response.output_item.done",
                "response.completed"
            ]
        );
        let last = &ev.last().unwrap()["response"];
        assert_eq!(last["output"][0]["content"][0]["text"], c.text());
        assert_eq!(last["usage"]["output_tokens"], 3);
        assert_eq!(last["usage"]["total_tokens"], 3 + c.prompt_tokens);
        assert_eq!(last, &body(&ctx(None), &c));
    }

    #[test]
    fn a_tool_call_after_an_encrypted_reasoning_item() {
        let mut b = Behaviour::for_model("m", false);
        b.tool_calls = 1;
        let c = Completion::plan(
            &b,
            &json!({"input": "hi", "tools": [{"type": "function",
            "name": "f", "parameters": {"properties": {"q": {"type": "string"}}}}]}),
        );
        let ev = events(&stream_steps(&ctx(Some("enc")), &c));
        assert_eq!(ev[2]["item"]["type"], "reasoning");
        assert_eq!(ev[2]["item"]["encrypted_content"], "enc");
        let args: String = ev
            .iter()
            .filter(|e| e["type"] == "response.function_call_arguments.delta")
            .map(|e| e["delta"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(args, "{\"q\": \"Paris\"}");
        let out = &ev.last().unwrap()["response"]["output"];
        assert_eq!(out[1]["call_id"], ctx(None).call_id(0));
        assert_eq!(out[1]["name"], "f");
    }
}
