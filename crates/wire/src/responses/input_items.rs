//! The input items of a Responses request, as `GET /v1/responses/{id}/input_items` lists them:
//! a string `input` is one user message with one `input_text` part; a list keeps its items, with
//! a message's string `content` turned into one part (`input_text`, or `output_text` for the
//! assistant), and every item given an id (`msg_…`, or the caller's own) and a status.

use serde_json::{json, Value};

/// The request's `input` as stored items. `new_id(prefix)` makes an id for an item without one.
pub fn input_items(req: &Value, new_id: &mut dyn FnMut(&str) -> String) -> Vec<Value> {
    match req.get("input") {
        Some(Value::String(text)) => vec![json!({
            "id": new_id("msg_"),
            "type": "message",
            "role": "user",
            "status": "completed",
            "content": [{"type": "input_text", "text": text}],
        })],
        Some(Value::Array(items)) => items.iter().map(|i| item(i, new_id)).collect(),
        _ => Vec::new(),
    }
}

fn item(item: &Value, new_id: &mut dyn FnMut(&str) -> String) -> Value {
    let mut out = item.clone();
    let Some(obj) = out.as_object_mut() else {
        return out;
    };
    let kind = obj
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or(if obj.contains_key("role") {
            "message"
        } else {
            ""
        })
        .to_owned();
    if kind == "message" {
        obj.insert("type".into(), Value::String(kind.clone()));
        let part = if obj.get("role").and_then(Value::as_str) == Some("assistant") {
            "output_text"
        } else {
            "input_text"
        };
        if let Some(Value::String(text)) = obj.get("content") {
            let parts = json!([{"type": part, "text": text}]);
            obj.insert("content".into(), parts);
        }
    }
    if !obj.get("id").is_some_and(Value::is_string) {
        let prefix = match kind.as_str() {
            "function_call" => "fc_",
            "function_call_output" => "fco_",
            "reasoning" => "rs_",
            _ => "msg_",
        };
        obj.insert("id".into(), Value::String(new_id(prefix)));
    }
    obj.entry("status")
        .or_insert_with(|| Value::String("completed".into()));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids() -> impl FnMut(&str) -> String {
        let mut n = 0;
        move |p: &str| {
            n += 1;
            format!("{p}{n}")
        }
    }

    #[test]
    fn a_string_is_one_user_message() {
        let items = input_items(&json!({"input": "hi"}), &mut ids());
        assert_eq!(
            items,
            vec![
                json!({"id": "msg_1", "type": "message", "role": "user", "status": "completed",
                "content": [{"type": "input_text", "text": "hi"}]})
            ]
        );
    }

    #[test]
    fn list_items_keep_their_fields_and_gain_ids() {
        let req = json!({"input": [
            {"role": "user", "content": "a"},
            {"role": "assistant", "content": "b", "id": "msg_own"},
            {"type": "function_call_output", "call_id": "c1", "output": "{}"},
        ]});
        let items = input_items(&req, &mut ids());
        assert_eq!(
            items[0]["content"],
            json!([{"type": "input_text", "text": "a"}])
        );
        assert_eq!(items[0]["type"], "message");
        assert_eq!(items[1]["id"], "msg_own");
        assert_eq!(items[1]["content"][0]["type"], "output_text");
        assert_eq!(items[2]["id"], "fco_2");
        assert_eq!(items[2]["call_id"], "c1");
    }
}
