//! The mock's embeddings answers (OpenAI `POST /v1/embeddings` shape): one deterministic vector per
//! input, derived from the input alone (so a test can compute it again), as a float array or as
//! base64 of little-endian f32 (`encoding_format = "base64"`), and `usage` with the input's tokens.
//! Tokens are counted the mock's own simple way: one per whitespace-separated word of a text (at
//! least one), one per entry of a token array.

use base64::Engine;
use serde_json::{json, Value};

/// The vector length when the request sets no `dimensions`.
pub const DEFAULT_DIMENSIONS: usize = 16;
/// The most `dimensions` the mock answers with.
pub(crate) const MAX_DIMENSIONS: usize = 4096;

/// One input: a text or a token array.
enum Input<'a> {
    Text(&'a str),
    Tokens(&'a [Value]),
}

/// The inputs of a request, or `None` when `input` is not one of the four OpenAI shapes.
fn inputs(input: &Value) -> Option<Vec<Input<'_>>> {
    match input {
        Value::String(s) => Some(vec![Input::Text(s)]),
        Value::Array(items) if items.is_empty() => None,
        Value::Array(items) if items.iter().all(Value::is_u64) => {
            Some(vec![Input::Tokens(items.as_slice())])
        }
        Value::Array(items) => items
            .iter()
            .map(|i| match i {
                Value::String(s) => Some(Input::Text(s)),
                Value::Array(t) if t.iter().all(Value::is_u64) => Some(Input::Tokens(t)),
                _ => None,
            })
            .collect(),
        _ => None,
    }
}

impl Input<'_> {
    fn tokens(&self) -> u64 {
        match self {
            Input::Text(s) => s.split_whitespace().count().max(1) as u64,
            Input::Tokens(t) => t.len() as u64,
        }
    }

    /// FNV-1a over the input's text or its token numbers.
    fn seed(&self) -> u64 {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        let mut eat = |bytes: &[u8]| {
            for b in bytes {
                h ^= u64::from(*b);
                h = h.wrapping_mul(0x0100_0000_01b3);
            }
        };
        match self {
            Input::Text(s) => eat(s.as_bytes()),
            Input::Tokens(t) => t
                .iter()
                .for_each(|v| eat(&v.as_u64().unwrap_or(0).to_le_bytes())),
        }
        h
    }
}

/// The vector of the text `text` at `dimensions`, as the mock answers it (for tests).
pub fn vector_of_text(text: &str, dimensions: usize) -> Vec<f32> {
    vector(Input::Text(text).seed(), dimensions)
}

/// `dimensions` values in [-1, 1) from a xorshift sequence seeded by `seed`; each is a multiple of
/// 2^-16, so it survives f32 and JSON exactly.
fn vector(seed: u64, dimensions: usize) -> Vec<f32> {
    let mut x = seed | 1;
    (0..dimensions)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            ((x >> 48) as i64 - 32_768) as f32 / 32_768.0
        })
        .collect()
}

/// Why a request cannot be answered: (message, param).
pub(crate) type Refusal = (String, &'static str);

/// The answer to an embeddings request `request` for the model `model`.
pub(crate) fn body(request: &Value, model: &str) -> Result<Value, Refusal> {
    let input = request
        .get("input")
        .ok_or_else(|| ("Missing required parameter: 'input'.".to_owned(), "input"))?;
    let inputs = inputs(input).ok_or_else(|| {
        (
            "'input' must be a string, an array of strings, or an array of token arrays."
                .to_owned(),
            "input",
        )
    })?;
    let dimensions = match request.get("dimensions") {
        None | Some(Value::Null) => DEFAULT_DIMENSIONS,
        Some(v) => match v.as_u64() {
            Some(n) if (1..=MAX_DIMENSIONS as u64).contains(&n) => n as usize,
            _ => {
                return Err((
                    format!("'dimensions' must be an integer from 1 to {MAX_DIMENSIONS}."),
                    "dimensions",
                ))
            }
        },
    };
    let base64 = match request.get("encoding_format").and_then(Value::as_str) {
        None | Some("float") => false,
        Some("base64") => true,
        Some(other) => {
            return Err((
                format!("'{other}' is not one of ['float', 'base64'] - 'encoding_format'"),
                "encoding_format",
            ))
        }
    };
    let mut tokens = 0u64;
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .map(|(index, input)| {
            tokens += input.tokens();
            let v = vector(input.seed(), dimensions);
            let embedding = if base64 {
                let bytes: Vec<u8> = v.iter().flat_map(|f| f.to_le_bytes()).collect();
                Value::String(base64::engine::general_purpose::STANDARD.encode(bytes))
            } else {
                json!(v)
            };
            json!({"object": "embedding", "index": index, "embedding": embedding})
        })
        .collect();
    Ok(json!({
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_input_gives_the_same_vector_in_both_encodings() {
        let float = body(&json!({"input": ["a b c", "d"]}), "m").unwrap();
        let b64 = body(
            &json!({"input": ["a b c", "d"], "encoding_format": "base64"}),
            "m",
        )
        .unwrap();
        assert_eq!(float["usage"]["prompt_tokens"], 4);
        let v0: Vec<f32> = serde_json::from_value(float["data"][0]["embedding"].clone()).unwrap();
        assert_eq!(v0, vector_of_text("a b c", DEFAULT_DIMENSIONS));
        let raw = base64::engine::general_purpose::STANDARD
            .decode(b64["data"][0]["embedding"].as_str().unwrap())
            .unwrap();
        let decoded: Vec<f32> = raw
            .chunks(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        assert_eq!(decoded, v0);
        assert_ne!(float["data"][1]["embedding"], float["data"][0]["embedding"]);
    }

    #[test]
    fn token_arrays_and_dimensions() {
        let b = body(&json!({"input": [[1, 2, 3], [4]], "dimensions": 3}), "m").unwrap();
        assert_eq!(b["usage"]["total_tokens"], 4);
        assert_eq!(b["data"][1]["embedding"].as_array().unwrap().len(), 3);
        assert!(body(&json!({"input": []}), "m").is_err());
        assert!(body(&json!({"input": [1, "a"]}), "m").is_err());
        assert!(body(&json!({"input": "a", "dimensions": 0}), "m").is_err());
    }
}
