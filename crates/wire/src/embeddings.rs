//! OpenAI Embeddings requests (`POST /v1/embeddings`): validation with param-precise errors, the
//! token bound of the input for the admission hold, and the body sent upstream.
//!
//! `input` is a string, an array of strings, an array of token ids, or an array of token-id arrays,
//! as OpenAI accepts it (at most 2,048 inputs, none empty). `encoding_format` (`float` | `base64`),
//! `dimensions` and `user` are checked and passed through; unknown fields survive; a top-level
//! `mock` field is dropped, as chat drops it.

use serde_json::{Map, Value};

use crate::openai::RequestError;

/// The most inputs one request may carry (OpenAI's limit).
pub const MAX_INPUTS: usize = 2048;

/// A validated embeddings request.
#[derive(Debug, Clone)]
pub struct EmbeddingsRequest {
    /// The body as sent, in its original key order, without the `mock` field.
    pub body: Map<String, Value>,
    pub model: String,
    /// How many inputs (vectors) were asked for.
    pub inputs: usize,
    /// An upper bound of the input's tokens: the UTF-8 bytes of each text (no BPE token encodes
    /// less than one byte), the length of each token array.
    pub token_bound: u64,
}

fn bad(param: &str, message: impl Into<String>) -> RequestError {
    RequestError::new(param, message)
}

/// Whether `v` is a token id (a non-negative integer).
fn is_token(v: &Value) -> bool {
    v.is_u64()
}

impl EmbeddingsRequest {
    /// Validates a request body.
    pub fn parse(bytes: &[u8]) -> Result<EmbeddingsRequest, RequestError> {
        let value: Value = serde_json::from_slice(bytes).map_err(|e| {
            bad(
                "body",
                format!("We could not parse the JSON body of your request ({e}). The body must be valid JSON."),
            )
        })?;
        let Value::Object(mut body) = value else {
            return Err(bad("body", "The request body must be a JSON object."));
        };
        body.remove("mock");
        let model = match body.get("model") {
            Some(Value::String(m)) if !m.is_empty() => m.clone(),
            None | Some(Value::Null) | Some(Value::String(_)) => {
                return Err(bad("model", "Missing required parameter: 'model'."))
            }
            Some(_) => return Err(bad("model", "'model' must be a string.")),
        };
        let (inputs, token_bound) = input_bound(body.get("input"))?;
        match body.get("encoding_format") {
            None | Some(Value::Null) => {}
            Some(Value::String(f)) if f == "float" || f == "base64" => {}
            Some(other) => {
                return Err(bad(
                    "encoding_format",
                    format!("{other} is not one of ['float', 'base64'] - 'encoding_format'"),
                ))
            }
        }
        match body.get("dimensions") {
            None | Some(Value::Null) => {}
            Some(v) if v.as_u64().is_some_and(|n| n >= 1) => {}
            Some(_) => {
                return Err(bad(
                    "dimensions",
                    "'dimensions' must be a positive integer.",
                ))
            }
        }
        if body
            .get("user")
            .is_some_and(|u| !(u.is_null() || u.is_string()))
        {
            return Err(bad("user", "'user' must be a string."));
        }
        Ok(EmbeddingsRequest {
            body,
            model,
            inputs,
            token_bound,
        })
    }

    /// The body for an OpenAI-dialect upstream, with the route's model name.
    pub fn upstream_body(&self, upstream_model: &str) -> Vec<u8> {
        let mut body = self.body.clone();
        body.insert("model".into(), Value::String(upstream_model.to_owned()));
        let mut out = Vec::with_capacity(crate::compact_json::size_hint_object(&body));
        crate::compact_json::write_object(&mut out, &body);
        out
    }

    /// The texts of the input and the number of tokens given as token ids, for a count with the
    /// tokenizer when the upstream reports no usage.
    pub fn texts(&self) -> (Vec<&str>, u64) {
        let mut texts = Vec::new();
        let mut tokens = 0u64;
        match self.body.get("input") {
            Some(Value::String(s)) => texts.push(s.as_str()),
            Some(Value::Array(items)) if items.iter().all(is_token) => tokens += items.len() as u64,
            Some(Value::Array(items)) => {
                for item in items {
                    match item {
                        Value::String(s) => texts.push(s.as_str()),
                        Value::Array(t) => tokens += t.len() as u64,
                        _ => {}
                    }
                }
            }
            _ => {}
        }
        (texts, tokens)
    }
}

/// The number of inputs and their token bound, or the caller's error.
fn input_bound(input: Option<&Value>) -> Result<(usize, u64), RequestError> {
    const SHAPES: &str =
        "'input' must be a string, an array of strings, an array of token ids, or an array of token-id arrays.";
    let text = |s: &str, param: &str| {
        if s.is_empty() {
            Err(bad(param, "'input' cannot contain an empty string."))
        } else {
            Ok(s.len() as u64)
        }
    };
    match input {
        None | Some(Value::Null) => Err(bad("input", "Missing required parameter: 'input'.")),
        Some(Value::String(s)) => Ok((1, text(s, "input")?)),
        Some(Value::Array(items)) if items.is_empty() => {
            Err(bad("input", "'input' cannot be an empty array."))
        }
        Some(Value::Array(items)) if items.iter().all(is_token) => Ok((1, items.len() as u64)),
        Some(Value::Array(items)) => {
            if items.len() > MAX_INPUTS {
                return Err(bad(
                    "input",
                    format!(
                        "'input' has {} items; at most {MAX_INPUTS} are allowed.",
                        items.len()
                    ),
                ));
            }
            let mut bound = 0u64;
            for (i, item) in items.iter().enumerate() {
                let param = format!("input[{i}]");
                bound = bound.saturating_add(match item {
                    Value::String(s) => text(s, &param)?,
                    Value::Array(t) if t.is_empty() => {
                        return Err(bad(&param, "'input' cannot contain an empty token array."))
                    }
                    Value::Array(t) if t.iter().all(is_token) => t.len() as u64,
                    _ => return Err(bad(&param, SHAPES)),
                });
            }
            Ok((items.len(), bound))
        }
        Some(_) => Err(bad("input", SHAPES)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(v: Value) -> Result<EmbeddingsRequest, RequestError> {
        EmbeddingsRequest::parse(v.to_string().as_bytes())
    }

    #[test]
    fn every_input_shape_has_its_bound() {
        let one = parse(serde_json::json!({"model": "e", "input": "héllo"})).unwrap();
        assert_eq!((one.inputs, one.token_bound), (1, 6));
        let many = parse(serde_json::json!({"model": "e", "input": ["ab", "cde"]})).unwrap();
        assert_eq!((many.inputs, many.token_bound), (2, 5));
        let ids = parse(serde_json::json!({"model": "e", "input": [1, 2, 3]})).unwrap();
        assert_eq!((ids.inputs, ids.token_bound), (1, 3));
        let arrays = parse(serde_json::json!({"model": "e", "input": [[1, 2], [3]]})).unwrap();
        assert_eq!((arrays.inputs, arrays.token_bound), (2, 3));
        assert_eq!(arrays.texts(), (vec![], 3));
        assert_eq!(many.texts(), (vec!["ab", "cde"], 0));
    }

    #[test]
    fn bad_requests_name_their_param() {
        let param = |v: Value| parse(v).unwrap_err().param.unwrap();
        assert_eq!(param(serde_json::json!({"input": "x"})), "model");
        assert_eq!(param(serde_json::json!({"model": "e"})), "input");
        assert_eq!(
            param(serde_json::json!({"model": "e", "input": ""})),
            "input"
        );
        assert_eq!(
            param(serde_json::json!({"model": "e", "input": []})),
            "input"
        );
        assert_eq!(
            param(serde_json::json!({"model": "e", "input": ["a", 1]})),
            "input[1]"
        );
        assert_eq!(
            param(serde_json::json!({"model": "e", "input": [[]]})),
            "input[0]"
        );
        assert_eq!(
            param(serde_json::json!({"model": "e", "input": {"a": 1}})),
            "input"
        );
        assert_eq!(
            param(serde_json::json!({"model": "e", "input": "x", "encoding_format": "int8"})),
            "encoding_format"
        );
        assert_eq!(
            param(serde_json::json!({"model": "e", "input": "x", "dimensions": 0})),
            "dimensions"
        );
        assert_eq!(
            param(serde_json::json!({"model": "e", "input": "x", "user": 5})),
            "user"
        );
        let many: Vec<&str> = vec!["a"; MAX_INPUTS + 1];
        assert_eq!(
            param(serde_json::json!({"model": "e", "input": many})),
            "input"
        );
    }

    #[test]
    fn unknown_fields_survive_and_mock_does_not() {
        let r = parse(
            serde_json::json!({"model": "e", "input": "x", "extra": 1, "mock": {"status": 500}}),
        )
        .unwrap();
        let up: Value = serde_json::from_slice(&r.upstream_body("up")).unwrap();
        assert_eq!(
            up,
            serde_json::json!({"model": "up", "input": "x", "extra": 1})
        );
    }
}
