//! Token usage as the gateway bills it, read from any dialect's usage object and written back in
//! OpenAI's shape.
//!
//! OpenAI counts cached tokens inside `prompt_tokens` and reasoning tokens inside
//! `completion_tokens`; this type keeps the same convention, whatever the upstream said.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// Token counts for one request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// Prompt tokens, cached ones included.
    pub prompt_tokens: u64,
    /// Completion tokens, reasoning included.
    pub completion_tokens: u64,
    /// Prompt tokens served from the provider's cache (part of `prompt_tokens`).
    pub cached_tokens: u64,
    /// Prompt tokens written to the provider's cache (part of `prompt_tokens`), every lifetime.
    pub cache_write_tokens: u64,
    /// Of `cache_write_tokens`, those written for an hour (Anthropic's `ephemeral_1h`), which
    /// bill dearer than the default 5-minute writes.
    #[serde(default)]
    pub cache_write_1h_tokens: u64,
    /// Reasoning tokens (part of `completion_tokens`).
    pub reasoning_tokens: u64,
}

fn count(v: &Value, key: &str) -> u64 {
    v.get(key).and_then(Value::as_u64).unwrap_or(0)
}

impl Usage {
    pub fn total_tokens(&self) -> u64 {
        self.prompt_tokens + self.completion_tokens
    }

    /// Reads an OpenAI or DeepSeek `usage` object. DeepSeek's `prompt_cache_hit_tokens` stands in
    /// for `prompt_tokens_details.cached_tokens` when the latter is absent.
    pub fn from_openai(v: &Value) -> Option<Usage> {
        let obj = v.as_object()?;
        if !obj.contains_key("prompt_tokens") && !obj.contains_key("completion_tokens") {
            return None;
        }
        let prompt_details = v.get("prompt_tokens_details").unwrap_or(&Value::Null);
        let completion_details = v.get("completion_tokens_details").unwrap_or(&Value::Null);
        let cached = match prompt_details.get("cached_tokens").and_then(Value::as_u64) {
            Some(n) => n,
            None => count(v, "prompt_cache_hit_tokens"),
        };
        let (prompt, mut completion) = (count(v, "prompt_tokens"), count(v, "completion_tokens"));
        let reasoning = count(completion_details, "reasoning_tokens");
        // xAI leaves reasoning out of `completion_tokens` (its `total_tokens` adds all three)
        // and bills it as output all the same: counted in, as every other provider counts it.
        let total = v.get("total_tokens").and_then(Value::as_u64);
        if reasoning > 0 && total == Some(prompt + completion + reasoning) {
            completion += reasoning;
        }
        Some(Usage {
            prompt_tokens: prompt,
            completion_tokens: completion,
            cached_tokens: cached,
            cache_write_tokens: count(prompt_details, "cache_write_tokens"),
            cache_write_1h_tokens: count(prompt_details, "cache_write_1h_tokens"),
            reasoning_tokens: reasoning,
        })
    }

    /// Reads a Responses `usage` object (`input_tokens`, `input_tokens_details.cached_tokens`,
    /// `output_tokens`, `output_tokens_details.reasoning_tokens`).
    pub fn from_responses(v: &Value) -> Option<Usage> {
        let obj = v.as_object()?;
        if !obj.contains_key("input_tokens") && !obj.contains_key("output_tokens") {
            return None;
        }
        let input_details = v.get("input_tokens_details").unwrap_or(&Value::Null);
        let output_details = v.get("output_tokens_details").unwrap_or(&Value::Null);
        Some(Usage {
            prompt_tokens: count(v, "input_tokens"),
            completion_tokens: count(v, "output_tokens"),
            cached_tokens: count(input_details, "cached_tokens"),
            cache_write_tokens: count(input_details, "cache_write_tokens"),
            cache_write_1h_tokens: count(input_details, "cache_write_1h_tokens"),
            reasoning_tokens: count(output_details, "reasoning_tokens"),
        })
    }

    /// The OpenAI `usage` object, with `cost` added when given (a decimal string in USD).
    pub fn to_openai(&self, cost: Option<&str>) -> Value {
        let mut v = json!({
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total_tokens(),
            "prompt_tokens_details": {"cached_tokens": self.cached_tokens},
            "completion_tokens_details": {"reasoning_tokens": self.reasoning_tokens},
        });
        if self.cache_write_tokens > 0 {
            v["prompt_tokens_details"]["cache_write_tokens"] = self.cache_write_tokens.into();
        }
        if self.cache_write_1h_tokens > 0 {
            v["prompt_tokens_details"]["cache_write_1h_tokens"] = self.cache_write_1h_tokens.into();
        }
        if let Some(cost) = cost {
            v["cost"] = Value::String(cost.to_owned());
        }
        v
    }

    /// Merges the gateway's view into an upstream usage object: the counts are overwritten and every
    /// other field the upstream sent (DeepSeek's cache counters, audio details…) is kept.
    pub fn merge_into(&self, upstream: &mut Value, cost: Option<&str>) {
        let ours = self.to_openai(cost);
        match upstream.as_object_mut() {
            Some(obj) => {
                for (k, v) in ours.as_object().into_iter().flatten() {
                    match (obj.get_mut(k), v) {
                        (Some(Value::Object(theirs)), Value::Object(mine)) => {
                            for (k2, v2) in mine {
                                theirs.insert(k2.clone(), v2.clone());
                            }
                        }
                        _ => {
                            obj.insert(k.clone(), v.clone());
                        }
                    }
                }
            }
            None => *upstream = ours,
        }
    }
}

/// A JSON object as its sender wrote it, with `"cost":"<cost>"` added as the last member of its
/// top-level `key` object (`usage` for Anthropic and Responses, `usageMetadata` for Gemini; an
/// object holding only the cost is added when it has none). Nothing else is touched: the text
/// around the insertion is copied as it came. `None` when `json` is not a JSON object.
pub fn with_cost_in(json: &[u8], key: &str, cost: &str) -> Option<Vec<u8>> {
    let outer: std::collections::HashMap<String, &serde_json::value::RawValue> =
        serde_json::from_slice(json).ok()?;
    let usage = outer.get(key).copied();
    let cost = serde_json::to_string(cost).ok()?;
    let object_end = |text: &[u8]| text.iter().rposition(|b| !b.is_ascii_whitespace());
    let (at, empty, member) = match usage.filter(|u| u.get().starts_with('{')) {
        Some(usage) => {
            let start = (usage.get().as_ptr() as usize).checked_sub(json.as_ptr() as usize)?;
            let raw = usage.get().as_bytes();
            let close = start + raw.len() - 1;
            let empty = raw[1..raw.len() - 1].iter().all(u8::is_ascii_whitespace);
            (close, empty, format!("\"cost\":{cost}"))
        }
        None => {
            let close = object_end(json).filter(|&i| json[i] == b'}')?;
            let empty = object_end(&json[..close]).is_some_and(|i| json[i] == b'{');
            (close, empty, format!("\"{key}\":{{\"cost\":{cost}}}"))
        }
    };
    let mut out = Vec::with_capacity(json.len() + member.len() + 1);
    out.extend_from_slice(&json[..at]);
    if !empty {
        out.push(b',');
    }
    out.extend_from_slice(member.as_bytes());
    out.extend_from_slice(&json[at..]);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_openai_usage_with_details() {
        let u = Usage::from_openai(&json!({
            "prompt_tokens": 1117, "completion_tokens": 46, "total_tokens": 1163,
            "prompt_tokens_details": {"cached_tokens": 1000},
            "completion_tokens_details": {"reasoning_tokens": 10}
        }))
        .unwrap();
        assert_eq!(
            u,
            Usage {
                prompt_tokens: 1117,
                completion_tokens: 46,
                cached_tokens: 1000,
                cache_write_tokens: 0,
                cache_write_1h_tokens: 0,
                reasoning_tokens: 10
            }
        );
        assert_eq!(u.total_tokens(), 1163);
    }

    #[test]
    fn xai_reasoning_outside_completion_tokens_is_counted_in() {
        let u = Usage::from_openai(&json!({
            "prompt_tokens": 12, "completion_tokens": 1, "total_tokens": 303,
            "prompt_tokens_details": {"cached_tokens": 11},
            "completion_tokens_details": {"reasoning_tokens": 290}
        }))
        .unwrap();
        assert_eq!((u.completion_tokens, u.reasoning_tokens), (291, 290));
        // OpenAI's own count already holds it.
        let u = Usage::from_openai(&json!({
            "prompt_tokens": 12, "completion_tokens": 300, "total_tokens": 312,
            "completion_tokens_details": {"reasoning_tokens": 290}
        }))
        .unwrap();
        assert_eq!(u.completion_tokens, 300);
    }

    #[test]
    fn deepseek_cache_hits_count_as_cached() {
        let u = Usage::from_openai(&json!({
            "prompt_tokens": 10, "completion_tokens": 15,
            "prompt_cache_hit_tokens": 4, "prompt_cache_miss_tokens": 6
        }))
        .unwrap();
        assert_eq!(u.cached_tokens, 4);
    }

    #[test]
    fn not_a_usage_object() {
        assert_eq!(Usage::from_openai(&Value::Null), None);
        assert_eq!(Usage::from_openai(&json!({"foo": 1})), None);
    }

    #[test]
    fn merge_keeps_upstream_fields_and_adds_cost() {
        let mut upstream = json!({"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5,
            "prompt_cache_hit_tokens": 0, "completion_tokens_details": {"audio_tokens": 0}});
        let u = Usage::from_openai(&upstream).unwrap();
        u.merge_into(&mut upstream, Some("0.0012"));
        assert_eq!(upstream["cost"], "0.0012");
        assert_eq!(upstream["prompt_cache_hit_tokens"], 0);
        assert_eq!(upstream["completion_tokens_details"]["audio_tokens"], 0);
        assert_eq!(upstream["completion_tokens_details"]["reasoning_tokens"], 0);
    }
}
