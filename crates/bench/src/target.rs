//! `switchyard bench-target`: a trivial HTTP/1.1 server (hyper) that answers every request with a
//! fixed chat.completion JSON, or, with `--stream-chunks N`, a request whose body says
//! `"stream":true` with a fixed SSE stream (a role chunk, N content chunks `--gap-ms` apart, a
//! finish chunk, `[DONE]`). It is the server for measuring `switchyard bench`'s own ceiling.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use http::header::{HeaderValue, CONTENT_TYPE};
use http::{Request, Response};
use http_body_util::{BodyExt, Either, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::TokioIo;

/// The answer to every non-streamed request (374 bytes).
const ANSWER: &str = r#"{"id":"chatcmpl-bench-target","object":"chat.completion","created":1764460800,"model":"bench-target","choices":[{"index":0,"message":{"role":"assistant","content":"This is the fixed answer of switchyard bench-target, a trivial server."},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":12,"completion_tokens":15,"total_tokens":27},"system_fingerprint":null}"#;

const ROLE: &str = "data: {\"id\":\"chatcmpl-bench-target\",\"object\":\"chat.completion.chunk\",\"created\":1764460800,\"model\":\"bench-target\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"finish_reason\":null}]}\n\n";
const CHUNK: &str = "data: {\"id\":\"chatcmpl-bench-target\",\"object\":\"chat.completion.chunk\",\"created\":1764460800,\"model\":\"bench-target\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\" token\"},\"finish_reason\":null}]}\n\n";
const FINISH: &str = "data: {\"id\":\"chatcmpl-bench-target\",\"object\":\"chat.completion.chunk\",\"created\":1764460800,\"model\":\"bench-target\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n";
const DONE: &str = "data: [DONE]\n\n";

/// What the server streams, when asked to.
#[derive(Debug, Clone, Copy)]
pub(crate) struct StreamShape {
    pub chunks: u64,
    pub gap: Duration,
}

/// Serves until the process is stopped. Prints `listening on http://ADDR` once bound.
pub(crate) async fn serve(listen: SocketAddr, shape: Option<StreamShape>) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let addr = listener.local_addr()?;
    println!("listening on http://{addr}");
    use std::io::Write;
    let _ = std::io::stdout().flush();
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            // Out of descriptors or a connection reset before accept: try the next one.
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let _ = tcp.set_nodelay(true);
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| answer(req, shape));
            // A client that leaves mid-answer ends its connection; nothing to report.
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tcp), service)
                .await;
        });
    }
}

type Sse = StreamBody<futures_util::stream::BoxStream<'static, Result<Frame<Bytes>, Infallible>>>;

async fn answer(
    req: Request<Incoming>,
    shape: Option<StreamShape>,
) -> Result<Response<Either<Full<Bytes>, Sse>>, Infallible> {
    let mut body = req.into_body();
    let mut wants_stream = false;
    while let Some(Ok(frame)) = body.frame().await {
        if let Some(data) = frame.data_ref() {
            wants_stream |=
                contains(data, b"\"stream\":true") || contains(data, b"\"stream\": true");
        }
    }
    match shape {
        Some(shape) if wants_stream => {
            let mut resp = Response::new(Either::Right(StreamBody::new(sse(shape))));
            resp.headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
            Ok(resp)
        }
        _ => {
            let mut resp = Response::new(Either::Left(Full::new(Bytes::from_static(
                ANSWER.as_bytes(),
            ))));
            resp.headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            Ok(resp)
        }
    }
}

/// The fixed stream: role chunk, `chunks` content chunks `gap` apart, finish chunk, `[DONE]`.
fn sse(
    shape: StreamShape,
) -> futures_util::stream::BoxStream<'static, Result<Frame<Bytes>, Infallible>> {
    use futures_util::StreamExt;
    let total = shape.chunks + 3;
    futures_util::stream::unfold(0u64, move |i| async move {
        if i >= total {
            return None;
        }
        let text = if i == 0 {
            ROLE
        } else if i <= shape.chunks {
            if i > 1 && !shape.gap.is_zero() {
                tokio::time::sleep(shape.gap).await;
            }
            CHUNK
        } else if i == shape.chunks + 1 {
            FINISH
        } else {
            DONE
        };
        Some((Ok(Frame::data(Bytes::from_static(text.as_bytes()))), i + 1))
    })
    .boxed()
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_fixed_answer_is_json_of_about_390_bytes() {
        let v: serde_json::Value = serde_json::from_str(super::ANSWER).unwrap();
        assert_eq!(v["object"], "chat.completion");
        assert!(
            (370..=410).contains(&super::ANSWER.len()),
            "{}",
            super::ANSWER.len()
        );
    }
}
