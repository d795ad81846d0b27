//! Compact JSON text of a `serde_json::Value`, byte for byte what `serde_json::to_vec` writes, but
//! with strings scanned for escapes eight bytes at a time.
//!
//! Why not serde_json's own writer: it looks at every byte of every string through a table, and a
//! request's upstream body is mostly prompt text. Profiled at a 1 MB prompt (issue 13, M8), that
//! scan was 32% of the gateway's CPU and the largest per-KB cost of a request. A word with no byte
//! below 0x20, no `"` and no `\` (nearly every word of prose) is copied without a look at its
//! bytes one by one. Numbers are still written by serde_json (itoa and ryu), so they cannot differ.

use serde_json::{Map, Value};

/// Appends `v` as compact JSON, exactly as `serde_json::to_writer` would.
pub fn write_value(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        // Writing into a Vec cannot fail, and a Number always serialises.
        Value::Number(n) => {
            let _ = serde_json::to_writer(&mut *out, n);
        }
        Value::String(s) => write_str(out, s),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_value(out, item);
            }
            out.push(b']');
        }
        Value::Object(map) => write_object(out, map),
    }
}

/// Appends `map` as a compact JSON object, in its own key order.
pub fn write_object(out: &mut Vec<u8>, map: &Map<String, Value>) {
    out.push(b'{');
    for (i, (k, v)) in map.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_str(out, k);
        out.push(b':');
        write_value(out, v);
    }
    out.push(b'}');
}

/// `v` as compact JSON.
pub fn to_vec(v: &Value) -> Vec<u8> {
    let mut out = Vec::with_capacity(size_hint(v));
    write_value(&mut out, v);
    out
}

/// `size_hint` of an object.
pub fn size_hint_object(map: &Map<String, Value>) -> usize {
    2 + map
        .iter()
        .map(|(k, v)| k.len() + 4 + size_hint(v))
        .sum::<usize>()
}

/// About the length of `v`'s JSON text (exact when no string needs escapes and no number has more
/// than a few digits), so the output is allocated once.
pub fn size_hint(v: &Value) -> usize {
    match v {
        Value::Null | Value::Bool(_) => 5,
        Value::Number(_) => 8,
        Value::String(s) => s.len() + 2,
        Value::Array(items) => 2 + items.iter().map(|i| size_hint(i) + 1).sum::<usize>(),
        Value::Object(map) => size_hint_object(map),
    }
}

const LOW_BITS: u64 = 0x0101_0101_0101_0101;
const HIGH_BITS: u64 = 0x8080_8080_8080_8080;

/// Whether any byte of the word is below 0x20, a `"` or a `\`. Each test is exact about "any"
/// (the bit trick can mark a wrong byte only after a true one), which is all this needs.
#[inline]
fn needs_escape(w: u64) -> bool {
    let below_space = w.wrapping_sub(LOW_BITS * 0x20) & !w;
    let quote = w ^ (LOW_BITS * u64::from(b'"'));
    let backslash = w ^ (LOW_BITS * u64::from(b'\\'));
    let zero_in = |x: u64| x.wrapping_sub(LOW_BITS) & !x;
    (below_space | zero_in(quote) | zero_in(backslash)) & HIGH_BITS != 0
}

/// Appends `s` as a JSON string: `"`, `\` and control characters escaped as serde_json does
/// (`\b \t \n \f \r` by name, the others as `\u00xx`), everything else as it is.
pub fn write_str(out: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    // `bytes[start..i]` is waiting to be copied.
    let mut start = 0;
    let mut i = 0;
    while i < bytes.len() {
        // Skip whole words that need nothing.
        while let Some(word) = bytes.get(i..i + 8) {
            let mut w = [0u8; 8];
            w.copy_from_slice(word);
            if needs_escape(u64::from_le_bytes(w)) {
                break;
            }
            i += 8;
        }
        // Then look at up to one word byte by byte (a word with an escape, or the tail).
        let end = (i + 8).min(bytes.len());
        while i < end {
            let b = bytes[i];
            if b < 0x20 || b == b'"' || b == b'\\' {
                out.extend_from_slice(&bytes[start..i]);
                escape(out, b);
                start = i + 1;
            }
            i += 1;
        }
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

fn escape(out: &mut Vec<u8>, b: u8) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    match b {
        b'"' => out.extend_from_slice(b"\\\""),
        b'\\' => out.extend_from_slice(b"\\\\"),
        0x08 => out.extend_from_slice(b"\\b"),
        0x09 => out.extend_from_slice(b"\\t"),
        0x0A => out.extend_from_slice(b"\\n"),
        0x0C => out.extend_from_slice(b"\\f"),
        0x0D => out.extend_from_slice(b"\\r"),
        _ => out.extend_from_slice(&[
            b'\\',
            b'u',
            b'0',
            b'0',
            HEX[usize::from(b >> 4)],
            HEX[usize::from(b & 0xF)],
        ]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    #[test]
    fn writes_what_serde_json_writes() {
        let cases = [
            json!(null),
            json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi \"there\"\n\t\\ \u{1}\u{1f}\u{7f} é 日本 🎉"}],
                   "temperature": 0.7, "n": 1, "big": 18446744073709551615u64, "neg": -3, "e": 1e300,
                   "stream": true, "stop": null, "tools": [], "o": {}}),
            json!("exactly8"),
            json!("sixteen bytes ok"),
            json!("seven b"),
            json!("\u{8}\u{c}\r"),
            json!(["", "a", [[]], {"": ""}]),
        ];
        for v in cases {
            assert_eq!(
                String::from_utf8(to_vec(&v)).unwrap(),
                serde_json::to_string(&v).unwrap()
            );
        }
    }

    #[test]
    fn every_byte_that_needs_an_escape_is_found_at_every_position() {
        for special in (0u8..0x20).chain([b'"', b'\\']) {
            for pos in 0..24 {
                let mut s = vec![b'x'; 24];
                s[pos] = special;
                let s = String::from_utf8(s).unwrap();
                let v = Value::String(s);
                assert_eq!(
                    to_vec(&v),
                    serde_json::to_vec(&v).unwrap(),
                    "{special} at {pos}"
                );
            }
        }
    }

    fn any_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|n| json!(n)),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(|f| json!(f)),
            any::<String>().prop_map(Value::String),
            "[ -~\\x00-\\x1f\"\\\\é🎉]{0,40}".prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 64, 8, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
                prop::collection::vec((any::<String>(), inner), 0..8)
                    .prop_map(|kv| Value::Object(kv.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn any_value_is_written_as_serde_json_writes_it(v in any_json()) {
            prop_assert_eq!(to_vec(&v), serde_json::to_vec(&v).unwrap());
        }
    }
}
