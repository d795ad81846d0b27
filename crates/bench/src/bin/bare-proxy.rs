//! `bare-proxy`: the cheapest HTTP/1.1 forwarding proxy we can write (hyper 1 server and client on
//! a multi-threaded tokio runtime, mimalloc like the gateway), the ceiling every gateway figure of
//! `bench/run` is compared against. No logic: each request goes to `--upstream` as it came (method,
//! path and query, headers but the hop-by-hop ones, `Host` rewritten, body streamed) and the answer
//! comes back the same way, frame by frame, so SSE chunks pass the moment they arrive. Each client
//! connection gets its own upstream keep-alive connection, opened on its first request and reopened
//! when the upstream closes it: HTTP/1.1 carries one exchange at a time, so the pair needs no pool,
//! no lock and no shared state. Prints `bare-proxy listening on http://ADDR` once bound.
//!
//! `--client reqwest` forwards through one pooled `reqwest::Client` instead (the gateway's upstream
//! client), so the two clients' cost can be measured against each other in the same run.

use std::convert::Infallible;
use std::io::Write;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::{Arc, Mutex};

use anyhow::{bail, Context};
use bytes::Bytes;
use clap::Parser;
use http::header::{HeaderName, HeaderValue, CONNECTION, HOST};
use http::{HeaderMap, Request, Response, StatusCode, Uri};
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A bare HTTP/1.1 forwarding proxy: the baseline the gateway is measured against.
#[derive(Debug, Parser)]
#[command(name = "bare-proxy")]
struct Args {
    /// Address to listen on (port 0: any free port; the bound one is printed).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Where every request goes: http://HOST:PORT (no path; the request's own path is kept).
    #[arg(long)]
    upstream: Uri,
    /// Runtime worker threads (default: the number of CPUs).
    #[arg(long)]
    threads: Option<usize>,
    /// The upstream client: hyper's connection per client connection, or one pooled reqwest client.
    #[arg(long, value_enum, default_value_t = ClientKind::Hyper)]
    client: ClientKind,
}

/// Which HTTP client forwards the requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum ClientKind {
    Hyper,
    Reqwest,
}

/// The upstream, resolved once at startup.
struct Upstream {
    addr: SocketAddr,
    host: HeaderValue,
}

type Body = Either<Either<Incoming, reqwest::Body>, Full<Bytes>>;

/// The hop-by-hop headers of RFC 9110 §7.6.1 (and the old `proxy-connection`, `keep-alive`):
/// they describe one connection, not the message, so neither side's are forwarded.
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "upgrade",
];

/// Removes the hop-by-hop headers and those the `Connection` header names; also
/// `transfer-encoding`, which hyper sets again for the next hop from the body it sends.
fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
    headers.remove(http::header::TRANSFER_ENCODING);
}

fn bad_gateway(why: &str) -> Response<Body> {
    let mut r = Response::new(Either::Right(Full::new(Bytes::from(format!(
        "bare-proxy: {why}\n"
    )))));
    *r.status_mut() = StatusCode::BAD_GATEWAY;
    r
}

/// Opens a keep-alive HTTP/1.1 connection to the upstream; its driver runs as a task of its own.
async fn connect(upstream: &Upstream) -> std::io::Result<SendRequest<Incoming>> {
    let tcp = tokio::net::TcpStream::connect(upstream.addr).await?;
    tcp.set_nodelay(true)?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .map_err(std::io::Error::other)?;
    tokio::spawn(async move {
        // Ends when the upstream closes the connection or every sender is gone; a broken exchange
        // is already reported to its request.
        let _ = conn.await;
    });
    Ok(sender)
}

/// A ready connection: the slot's if it is still open, else a new one.
async fn ready(
    upstream: &Upstream,
    kept: Option<SendRequest<Incoming>>,
) -> Result<SendRequest<Incoming>, String> {
    if let Some(mut s) = kept {
        if s.ready().await.is_ok() {
            return Ok(s);
        }
    }
    let mut s = connect(upstream)
        .await
        .map_err(|e| format!("cannot connect to the upstream: {e}"))?;
    s.ready()
        .await
        .map_err(|e| format!("upstream connection: {e}"))?;
    Ok(s)
}

/// Forwards one request on the client connection's own upstream connection (`slot`).
async fn forward(
    upstream: &Upstream,
    slot: &Mutex<Option<SendRequest<Incoming>>>,
    mut req: Request<Incoming>,
) -> Response<Body> {
    // Origin form on the upstream connection, whatever form the client used.
    if req.uri().scheme().is_some() {
        let path = req
            .uri()
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_owned();
        *req.uri_mut() = match path.parse() {
            Ok(u) => u,
            Err(_) => return bad_gateway("a request target that cannot be forwarded"),
        };
    }
    let headers = req.headers_mut();
    strip_hop_by_hop(headers);
    headers.insert(HOST, upstream.host.clone());
    // Taken out while the exchange runs (the lock is never held across an await) and put back once
    // the answer's head is in, its body still streaming: the next request on this client
    // connection only comes after that body, and `ready` waits for the connection to be free.
    let kept = slot.lock().unwrap_or_else(|e| e.into_inner()).take();
    let mut sender = match ready(upstream, kept).await {
        Ok(s) => s,
        Err(why) => return bad_gateway(&why),
    };
    let mut answer = sender.try_send_request(req).await;
    // The upstream closed the kept connection as the request left (its keep-alive timeout): the
    // request was not written, so it goes once more on a new connection.
    if let Err(unsent) = &mut answer {
        if let Some(req) = unsent.take_message() {
            sender = match ready(upstream, None).await {
                Ok(s) => s,
                Err(why) => return bad_gateway(&why),
            };
            answer = sender.try_send_request(req).await;
        }
    }
    *slot.lock().unwrap_or_else(|e| e.into_inner()) = Some(sender);
    match answer {
        Ok(mut res) => {
            strip_hop_by_hop(res.headers_mut());
            res.map(|b| Either::Left(Either::Left(b)))
        }
        Err(e) => bad_gateway(&format!("upstream: {}", e.error())),
    }
}

/// Forwards one request through the shared reqwest client (its own pool and connection tasks).
async fn forward_reqwest(
    upstream: &Upstream,
    client: &reqwest::Client,
    req: Request<Incoming>,
) -> Response<Body> {
    let (mut parts, body) = req.into_parts();
    let body = match http_body_util::BodyExt::collect(body).await {
        Ok(b) => b.to_bytes(),
        Err(e) => return bad_gateway(&format!("request body: {e}")),
    };
    strip_hop_by_hop(&mut parts.headers);
    parts.headers.insert(HOST, upstream.host.clone());
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let url = format!("http://{}{path}", upstream.addr);
    let sent = client
        .request(parts.method, url)
        .headers(parts.headers)
        .body(body)
        .send()
        .await;
    match sent {
        Ok(res) => {
            let mut res = http::Response::from(res);
            strip_hop_by_hop(res.headers_mut());
            res.map(|b| Either::Left(Either::Right(b)))
        }
        Err(e) => bad_gateway(&format!("upstream: {e}")),
    }
}

async fn serve(
    listener: tokio::net::TcpListener,
    upstream: Arc<Upstream>,
    kind: ClientKind,
) -> anyhow::Result<()> {
    let client = reqwest::Client::builder()
        .tcp_nodelay(true)
        .build()
        .context("cannot build the reqwest client")?;
    loop {
        let (tcp, _) = match listener.accept().await {
            Ok(c) => c,
            // Out of descriptors or a connection reset before accept: go on with the next one.
            Err(_) => continue,
        };
        let _ = tcp.set_nodelay(true);
        let (upstream, client) = (upstream.clone(), client.clone());
        tokio::spawn(async move {
            let slot = Arc::new(Mutex::new(None));
            let service = hyper::service::service_fn(move |req| {
                let (upstream, slot, client) = (upstream.clone(), slot.clone(), client.clone());
                async move {
                    Ok::<_, Infallible>(match kind {
                        ClientKind::Hyper => forward(&upstream, &slot, req).await,
                        ClientKind::Reqwest => forward_reqwest(&upstream, &client, req).await,
                    })
                }
            });
            // A client that leaves mid-answer ends its connection here; nothing to report.
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tcp), service)
                .await;
        });
    }
}

fn upstream_of(uri: &Uri) -> anyhow::Result<Upstream> {
    if uri.scheme_str() != Some("http") {
        bail!("--upstream {uri}: only http://HOST:PORT is supported");
    }
    if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
        bail!("--upstream {uri}: no path (the request's own path is forwarded as it is)");
    }
    let authority = uri
        .authority()
        .with_context(|| format!("--upstream {uri}: no host"))?;
    let port = authority.port_u16().unwrap_or(80);
    let addr = (authority.host(), port)
        .to_socket_addrs()
        .with_context(|| format!("--upstream {uri}: cannot resolve"))?
        .next()
        .with_context(|| format!("--upstream {uri}: no address"))?;
    Ok(Upstream {
        addr,
        host: HeaderValue::from_str(authority.as_str())?,
    })
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let upstream = Arc::new(upstream_of(&args.upstream)?);
    switchyard_bench::nofile::raise_nofile_limit();
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = args.threads {
        rt.worker_threads(n.max(1));
    }
    let rt = rt
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("cannot listen on {}", args.listen))?;
        let mut out = std::io::stdout().lock();
        writeln!(
            out,
            "bare-proxy listening on http://{}",
            listener.local_addr()?
        )?;
        out.flush()?;
        drop(out);
        serve(listener, upstream, args.client).await
    })
}
