//! What every request of a run sends, built once: the server's address, the path, the headers and
//! the JSON body (from --model/--prompt-bytes/--max-tokens/--stream, or --body-file as-is). Each
//! request clones these (the body is `Bytes`, the header values shared), so sending allocates only
//! what hyper itself needs.

use std::net::{SocketAddr, ToSocketAddrs};

use anyhow::{bail, Context};
use bytes::Bytes;
use http::header::{HeaderName, HeaderValue, AUTHORIZATION, CONTENT_TYPE, HOST};
use http::{HeaderMap, Uri};

/// The request every connection sends, and where.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    /// The URL as given, with the path requests go to (for the report).
    pub url: String,
    pub addr: SocketAddr,
    /// The origin-form path, `/v1/chat/completions`.
    pub path: Uri,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub stream: bool,
}

/// What the command line says about the request.
pub(crate) struct Spec<'a> {
    pub url: &'a str,
    pub key: Option<&'a str>,
    pub model: &'a str,
    pub stream: bool,
    pub prompt_bytes: usize,
    pub max_tokens: Option<u64>,
    pub headers: &'a [String],
    pub body_file: Option<&'a std::path::Path>,
}

/// Filler for the user message: ASCII words, so the JSON is exactly as long as asked.
const WORDS: &[u8] = b"the quick brown fox jumps over the lazy dog ";

impl Plan {
    pub(crate) fn build(spec: &Spec) -> anyhow::Result<Plan> {
        let uri: Uri = spec.url.parse().with_context(|| {
            format!("{:?} is not a URL like http://127.0.0.1:8080/v1", spec.url)
        })?;
        match uri.scheme_str() {
            Some("http") => {}
            Some(other) => bail!(
                "{}: only http:// is supported (bench speaks plain HTTP/1.1), not {other}://",
                spec.url
            ),
            None => bail!("{:?} is not a URL like http://127.0.0.1:8080/v1", spec.url),
        }
        let Some(authority) = uri.authority() else {
            bail!("{:?} has no host", spec.url);
        };
        let port = authority.port_u16().unwrap_or(80);
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']');
        let addr = (host, port)
            .to_socket_addrs()
            .with_context(|| format!("cannot resolve {}", authority.host()))?
            .next()
            .with_context(|| format!("{} resolves to no address", authority.host()))?;
        let base = uri.path().trim_end_matches('/');
        let path = if base.ends_with("/chat/completions") {
            base.to_owned()
        } else {
            format!("{base}/chat/completions")
        };
        let url = format!("http://{authority}{path}");
        let path: Uri = path
            .parse()
            .with_context(|| format!("{path:?} is not a valid path"))?;

        let mut headers = HeaderMap::new();
        headers.insert(HOST, HeaderValue::from_str(authority.as_str())?);
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if let Some(key) = spec.key {
            let mut v = HeaderValue::from_str(&format!("Bearer {key}"))
                .context("--key is not a valid header value")?;
            v.set_sensitive(true);
            headers.insert(AUTHORIZATION, v);
        }
        for h in spec.headers {
            let Some((k, v)) = h.split_once(':') else {
                bail!("--header {h:?}: expected 'Name: value'");
            };
            let name = HeaderName::from_bytes(k.trim().as_bytes())
                .with_context(|| format!("--header {h:?}: not a header name"))?;
            let value = HeaderValue::from_str(v.trim())
                .with_context(|| format!("--header {h:?}: not a header value"))?;
            headers.append(name, value);
        }

        let (body, stream) = match spec.body_file {
            Some(file) => {
                let text = std::fs::read(file)
                    .with_context(|| format!("--body-file {}", file.display()))?;
                let value: serde_json::Value = serde_json::from_slice(&text)
                    .with_context(|| format!("--body-file {}: not JSON", file.display()))?;
                let stream =
                    spec.stream || value.get("stream") == Some(&serde_json::Value::Bool(true));
                (Bytes::from(text), stream)
            }
            None => (Bytes::from(body(spec)), spec.stream),
        };
        Ok(Plan {
            url,
            addr,
            path,
            headers,
            body,
            stream,
        })
    }
}

fn body(spec: &Spec) -> Vec<u8> {
    let prompt: String = WORDS
        .iter()
        .cycle()
        .take(spec.prompt_bytes)
        .map(|&b| b as char)
        .collect();
    let mut body = serde_json::json!({
        "model": spec.model,
        "messages": [{"role": "user", "content": prompt}],
        "stream": spec.stream,
    });
    if let Some(m) = spec.max_tokens {
        body["max_tokens"] = m.into();
    }
    body.to_string().into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(url: &str) -> Spec<'_> {
        Spec {
            url,
            key: Some("sk-test"),
            model: "m",
            stream: true,
            prompt_bytes: 100,
            max_tokens: Some(7),
            headers: &[],
            body_file: None,
        }
    }

    #[test]
    fn the_path_and_body_are_built_once_from_the_base_url() {
        let p = Plan::build(&spec("http://127.0.0.1:9/v1/")).unwrap();
        assert_eq!(p.path, "/v1/chat/completions");
        assert_eq!(p.url, "http://127.0.0.1:9/v1/chat/completions");
        let body: serde_json::Value = serde_json::from_slice(&p.body).unwrap();
        assert_eq!(body["messages"][0]["content"].as_str().unwrap().len(), 100);
        assert_eq!(body["max_tokens"], 7);
        assert_eq!(body["stream"], true);
        assert_eq!(p.headers[HOST], "127.0.0.1:9");
    }

    #[test]
    fn bad_urls_are_refused_with_their_reason() {
        for (url, words) in [
            ("not a url", "not a URL"),
            ("https://127.0.0.1/v1", "only http://"),
            ("/v1", "not a URL"),
        ] {
            let e = format!("{:#}", Plan::build(&spec(url)).unwrap_err());
            assert!(e.contains(words), "{url}: {e}");
        }
    }
}
