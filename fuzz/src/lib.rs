//! What the fuzz targets share: [`ArbitraryJson`], a JSON value of bounded depth built from the
//! fuzzer's bytes, whose object keys are often the field names the gateway reads.

use arbitrary::{Arbitrary, Unstructured};
use serde_json::{json, Map, Value};

/// Keys the wire code looks for; an object key is one of these most of the time.
const KEYS: &[&str] = &[
    "type",
    "index",
    "delta",
    "content_block",
    "message",
    "usage",
    "text",
    "stop_reason",
    "partial_json",
    "content",
    "role",
    "tool_calls",
    "function",
    "arguments",
    "name",
    "id",
    "choices",
    "finish_reason",
    "error",
    "code",
    "reasoning_content",
    "refusal",
];

/// A JSON value of bounded depth.
#[derive(Debug)]
pub struct ArbitraryJson(pub Value);

impl<'a> Arbitrary<'a> for ArbitraryJson {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        fn value(u: &mut Unstructured<'_>, depth: u32) -> arbitrary::Result<Value> {
            let pick = if depth == 0 {
                u.int_in_range(0..=4)?
            } else {
                u.int_in_range(0..=6)?
            };
            Ok(match pick {
                0 => Value::Null,
                1 => Value::Bool(u.arbitrary()?),
                2 => json!(u.arbitrary::<i64>()?),
                3 => json!(u
                    .arbitrary::<f64>()
                    .ok()
                    .filter(|f| f.is_finite())
                    .unwrap_or(0.5)),
                4 => Value::String(u.arbitrary()?),
                5 => {
                    let n = u.int_in_range(0..=4)?;
                    Value::Array(
                        (0..n)
                            .map(|_| value(u, depth - 1))
                            .collect::<Result<_, _>>()?,
                    )
                }
                _ => {
                    let n = u.int_in_range(0..=4)?;
                    let mut map = Map::new();
                    for _ in 0..n {
                        let key = match u.choose_index(KEYS.len() + 1)? {
                            i if i < KEYS.len() => KEYS[i].to_owned(),
                            _ => u.arbitrary()?,
                        };
                        map.insert(key, value(u, depth - 1)?);
                    }
                    Value::Object(map)
                }
            })
        }
        Ok(ArbitraryJson(value(u, 4)?))
    }
}
