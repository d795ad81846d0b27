//! Spend tags: the labels a request carries so that usage can be grouped by them (a team, a
//! project, CI), from an `x-switchyard-tags: team-a,ci` header and the body's `metadata.tags` (a
//! comma-separated string, as Responses metadata values must be, or an array of strings). At most
//! `MAX_TAGS` of them, each 1 to `MAX_TAG_LEN` printable ASCII characters without commas or
//! quotes; duplicates are kept once, in the order given. Anything else is the caller's error.

use serde_json::Value;
use switchyard_wire::openai::{ChatRequest, RequestError};

pub(crate) const MAX_TAGS: usize = 10;
pub(crate) const MAX_TAG_LEN: usize = 64;

/// The tags of a request: the header's, then the body's.
pub(crate) fn request_tags(
    header: Option<&str>,
    req: &ChatRequest,
) -> Result<Vec<String>, RequestError> {
    let mut tags: Vec<String> = Vec::new();
    let mut add = |raw: &str, param: &str| -> Result<(), RequestError> {
        for tag in raw.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            let ok = tag.len() <= MAX_TAG_LEN
                && tag
                    .bytes()
                    .all(|b| b.is_ascii_graphic() && !matches!(b, b'"' | b'\'' | b'\\'));
            if !ok {
                return Err(RequestError::new(
                    param,
                    format!("Tag '{}' is not valid: tags are 1 to {MAX_TAG_LEN} printable ASCII characters, without spaces, commas or quotes.", tag.chars().take(80).collect::<String>()),
                ));
            }
            if !tags.iter().any(|t| t == tag) {
                tags.push(tag.to_owned());
            }
        }
        Ok(())
    };
    if let Some(h) = header {
        add(h, "x-switchyard-tags")?;
    }
    let metadata = req
        .body
        .get("metadata")
        .or_else(|| req.native.as_ref().and_then(|n| n.body.get("metadata")));
    match metadata.and_then(|m| m.get("tags")) {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) => add(s, "metadata.tags")?,
        Some(Value::Array(items)) => {
            for item in items {
                match item.as_str() {
                    Some(s) => add(s, "metadata.tags")?,
                    None => {
                        return Err(RequestError::new(
                            "metadata.tags",
                            "metadata.tags must be a string or an array of strings.",
                        ))
                    }
                }
            }
        }
        Some(_) => {
            return Err(RequestError::new(
                "metadata.tags",
                "metadata.tags must be a string or an array of strings.",
            ))
        }
    }
    if tags.len() > MAX_TAGS {
        return Err(RequestError::new(
            "metadata.tags",
            format!("A request carries at most {MAX_TAGS} tags."),
        ));
    }
    Ok(tags)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(body: &str) -> ChatRequest {
        ChatRequest::parse(body.as_bytes()).unwrap()
    }

    #[test]
    fn header_and_metadata_tags_are_read_checked_and_kept_once() {
        let r = req(
            r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"metadata":{"tags":"ci, team-a"}}"#,
        );
        assert_eq!(
            request_tags(Some("team-a,proj/x"), &r).unwrap(),
            ["team-a", "proj/x", "ci"]
        );
        let r = req(
            r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"metadata":{"tags":["a","b"]}}"#,
        );
        assert_eq!(request_tags(None, &r).unwrap(), ["a", "b"]);
        let plain = req(r#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#);
        assert!(request_tags(None, &plain).unwrap().is_empty());
        let e = request_tags(Some("bad tag"), &plain).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("x-switchyard-tags"));
        let many = (0..11)
            .map(|i| format!("t{i}"))
            .collect::<Vec<_>>()
            .join(",");
        assert!(request_tags(Some(&many), &plain).is_err());
        let r = req(
            r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"metadata":{"tags":5}}"#,
        );
        let e = request_tags(None, &r).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("metadata.tags"));
    }
}
