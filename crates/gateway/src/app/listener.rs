//! The client-facing listener: accepts TCP connections and serves HTTP/1.1 on them with hyper,
//! under the `[server]` limits, so that no client can hold a connection, a task or an upstream
//! for longer than they allow:
//!
//! - connection caps, in all and per client address: past them a connection gets a 503
//!   OpenAI-shaped error and is closed, and the refusal is counted;
//! - a header clock (from the connection's start, or from the first byte of its next request,
//!   until the request's head is complete) and an idle clock (a keep-alive connection with no
//!   request in flight): past them the connection is closed. hyper's own `header_read_timeout`
//!   is not used: in hyper 1.x it starts when the connection goes idle, so it would also be the
//!   idle timeout, and the two are different limits;
//! - a write-stall clock: a connection whose client has accepted no byte for
//!   `slow_reader_timeout` is dropped. hyper stops polling a response body while the socket is
//!   not writable, so no clock inside the body could see this; dropping the connection drops the
//!   body, whose settlement guard settles it as cancelled and drops the upstream request;
//! - graceful shutdown with a deadline: accepting stops, idle connections close, open requests
//!   may finish for `shutdown_grace`; then `end_streams` is cancelled (the stream relays end
//!   with an error event and settle), and connections still open after a last short flush are
//!   dropped.
//!
//! The clocks of a connection are one `select!` arm in the connection's own task, next to the
//! connection's future; the IO wrapper and the per-request service wrapper only note what
//! happened (a byte read, a write that could not proceed, a request begun or answered). A write
//! costs two relaxed atomics; a read of request bytes an uncontended lock.

use crate::http::ClientAddr;
use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::config::ServerLimits;
use crate::telemetry;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// After the grace period, how long the streams that were just told to end have to write their
/// ending and settle before their connections are dropped.
const FINAL_FLUSH: Duration = Duration::from_secs(5);

/// At most this many refused connections are answered at once; past it they are just closed.
const MAX_REFUSALS_IN_FLIGHT: usize = 64;

/// How long a refused connection is given to take its 503 and close.
const REFUSAL_TIME: Duration = Duration::from_secs(1);

/// Serves `service` on `listener` until `shutdown` resolves, then shuts down gracefully:
/// accepting stops at once, open requests may finish for `limits.shutdown_grace`, after which
/// `end_streams` is cancelled and, after a last flush, the connections still open are dropped.
/// Returns when every connection task has ended (their requests are settled or handed to the
/// settlement guard's drop).
pub(crate) async fn serve<S, B>(
    listener: TcpListener,
    service: S,
    limits: ServerLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
    end_streams: CancellationToken,
) -> io::Result<()>
where
    S: hyper::service::Service<Request<Incoming>, Response = Response<B>>
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError> + Send,
    B: hyper::body::Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<BoxError>,
{
    let limits = Arc::new(limits);
    let caps = Arc::new(Caps::new(&limits));
    let refusals = Arc::new(Semaphore::new(MAX_REFUSALS_IN_FLIGHT));
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(None)
        .keep_alive(true)
        // Twice the limit: `http::header_limit` answers heads between the two with an
        // OpenAI-shaped 431; past the double, hyper's own bare 431 stops reading.
        .max_header_size(limits.max_header_bytes.saturating_mul(2));
    let http = Arc::new(http);
    let drain = CancellationToken::new();
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            biased;
            _ = &mut shutdown => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    accept_failed(e).await;
                    continue;
                }
            },
        };
        let admitted = match caps.admit(peer.ip()) {
            Ok(a) => a,
            Err(refusal) => {
                telemetry::record_connection_refused(refusal.metric_reason());
                if let Ok(permit) = refusals.clone().try_acquire_owned() {
                    tokio::spawn(refuse(tcp, refusal, permit));
                }
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        connections.spawn(serve_connection(
            tcp,
            peer,
            service.clone(),
            http.clone(),
            limits.clone(),
            admitted,
            drain.clone(),
        ));
    }
    drop(listener);
    tracing::info!(
        open = connections.len(),
        grace_ms = limits.shutdown_grace.as_millis() as u64,
        "shutting down: no new connections; open requests may finish"
    );
    drain.cancel();
    if !all_end(&mut connections, limits.shutdown_grace).await {
        tracing::warn!(
            open = connections.len(),
            "shutdown grace is over: ending the streams still open"
        );
        end_streams.cancel();
        if !all_end(&mut connections, FINAL_FLUSH).await {
            tracing::warn!(
                open = connections.len(),
                "dropping the connections still open"
            );
            connections.abort_all();
            while connections.join_next().await.is_some() {}
        }
    }
    Ok(())
}

/// Waits until every connection task ended (true), or `within` passed (false).
async fn all_end(connections: &mut JoinSet<()>, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    loop {
        tokio::select! {
            next = connections.join_next() => if next.is_none() { return true },
            _ = tokio::time::sleep_until(deadline) => return connections.is_empty(),
        }
    }
}

/// An accept error: the peer's own trouble is skipped; running out of descriptors or memory
/// waits a moment instead of spinning.
async fn accept_failed(e: io::Error) {
    use io::ErrorKind::*;
    if matches!(
        e.kind(),
        ConnectionRefused | ConnectionAborted | ConnectionReset
    ) {
        return;
    }
    tracing::error!(error = %e, "accept failed");
    tokio::time::sleep(Duration::from_millis(100)).await;
}

/// Serves one connection until it ends, its clocks run out or it is dropped at shutdown.
async fn serve_connection<S, B>(
    tcp: TcpStream,
    peer: std::net::SocketAddr,
    service: S,
    http: Arc<hyper::server::conn::http1::Builder>,
    limits: Arc<ServerLimits>,
    admitted: Admitted,
    drain: CancellationToken,
) where
    S: hyper::service::Service<Request<Incoming>, Response = Response<B>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError> + Send,
    B: hyper::body::Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<BoxError>,
{
    let _admitted = admitted;
    let _open = telemetry::OpenConnection::start();
    let clock = Arc::new(ConnClock::new());
    let io = TokioIo::new(WatchedIo {
        inner: tcp,
        clock: clock.clone(),
    });
    let service = Tracked {
        inner: service,
        clock: clock.clone(),
        peer: peer.ip(),
        limits: limits.clone(),
    };
    let conn = http.serve_connection(io, service);
    tokio::pin!(conn);
    let mut draining = false;
    loop {
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(error = %e, "client connection ended with an error");
                }
                return;
            }
            why = clock.expired(&limits) => {
                telemetry::record_connection_closed(why.metric_reason());
                tracing::debug!(reason = why.metric_reason(), "client connection closed");
                return;
            }
            _ = drain.cancelled(), if !draining => {
                draining = true;
                conn.as_mut().graceful_shutdown();
            }
        }
    }
}

/// Why a connection's clock closed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expired {
    /// A request's head was not complete in time.
    Header,
    /// A keep-alive connection had no request for too long.
    Idle,
    /// The client accepted no byte for too long.
    SlowReader,
}

impl Expired {
    fn metric_reason(self) -> &'static str {
        match self {
            Expired::Header => "header_timeout",
            Expired::Idle => "idle_timeout",
            Expired::SlowReader => "slow_reader",
        }
    }
}

/// Where a connection is between requests.
#[derive(Debug, Clone, Copy)]
enum Phase {
    /// A request's head is being read (or, on a new connection, awaited) since `since`.
    Head { since: Instant },
    /// No request in flight and no byte of the next one since `since`.
    Idle { since: Instant },
    /// This many requests are in flight (head read, response not yet fully handed to hyper).
    Busy { requests: usize },
}

/// What a connection's IO and service wrappers note, for the connection's clocks.
struct ConnClock {
    born: Instant,
    phase: Mutex<Phase>,
    /// When a write first could not proceed (ms since `born`, plus one); 0: writes are flowing.
    stalled_at: AtomicU64,
    /// Something the clocks depend on changed.
    changed: Notify,
}

impl ConnClock {
    fn new() -> ConnClock {
        let now = Instant::now();
        ConnClock {
            born: now,
            phase: Mutex::new(Phase::Head { since: now }),
            stalled_at: AtomicU64::new(0),
            changed: Notify::new(),
        }
    }

    fn phase(&self) -> std::sync::MutexGuard<'_, Phase> {
        self.phase.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Bytes arrived: on an idle connection they begin the next request's head.
    fn read_some(&self) {
        let mut phase = self.phase();
        if let Phase::Idle { .. } = *phase {
            *phase = Phase::Head {
                since: Instant::now(),
            };
            drop(phase);
            self.changed.notify_one();
        }
    }

    fn request_begun(&self) {
        let mut phase = self.phase();
        *phase = match *phase {
            Phase::Busy { requests } => Phase::Busy {
                requests: requests + 1,
            },
            _ => Phase::Busy { requests: 1 },
        };
        drop(phase);
        self.changed.notify_one();
    }

    fn request_answered(&self) {
        let mut phase = self.phase();
        *phase = match *phase {
            Phase::Busy { requests } if requests > 1 => Phase::Busy {
                requests: requests - 1,
            },
            _ => Phase::Idle {
                since: Instant::now(),
            },
        };
        drop(phase);
        self.changed.notify_one();
    }

    fn write_blocked(&self) {
        if self.stalled_at.load(Ordering::Relaxed) == 0 {
            let ms = self.born.elapsed().as_millis() as u64 + 1;
            self.stalled_at.store(ms, Ordering::Relaxed);
            self.changed.notify_one();
        }
    }

    fn write_flowed(&self) {
        if self.stalled_at.load(Ordering::Relaxed) != 0 {
            self.stalled_at.store(0, Ordering::Relaxed);
        }
    }

    /// The earliest deadline now in force, and what passing it means.
    fn deadline(&self, limits: &ServerLimits) -> Option<(Instant, Expired)> {
        let read = match *self.phase() {
            Phase::Head { since } => Some((since + limits.header_read_timeout, Expired::Header)),
            Phase::Idle { since } => Some((since + limits.idle_timeout, Expired::Idle)),
            Phase::Busy { .. } => None,
        };
        let write = match self.stalled_at.load(Ordering::Relaxed) {
            0 => None,
            ms => Some((
                self.born + Duration::from_millis(ms - 1) + limits.slow_reader_timeout,
                Expired::SlowReader,
            )),
        };
        match (read, write) {
            (Some(r), Some(w)) => Some(if w.0 < r.0 { w } else { r }),
            (r, w) => r.or(w),
        }
    }

    /// Resolves when a deadline passes that is still in force then.
    async fn expired(&self, limits: &ServerLimits) -> Expired {
        loop {
            match self.deadline(limits) {
                Some((at, why)) if at <= Instant::now() => return why,
                Some((at, _)) => {
                    tokio::select! {
                        _ = tokio::time::sleep_until(at) => {}
                        _ = self.changed.notified() => {}
                    }
                }
                None => self.changed.notified().await,
            }
        }
    }
}

/// The socket, noting for the clocks when bytes arrive and when writes stall or flow.
struct WatchedIo {
    inner: TcpStream,
    clock: Arc<ConnClock>,
}

impl WatchedIo {
    fn note_write<T>(&self, result: &Poll<io::Result<T>>, progressed: impl Fn(&T) -> bool) {
        match result {
            Poll::Pending => self.clock.write_blocked(),
            Poll::Ready(Ok(v)) if progressed(v) => self.clock.write_flowed(),
            Poll::Ready(_) => {}
        }
    }
}

impl AsyncRead for WatchedIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let result = Pin::new(&mut this.inner).poll_read(cx, buf);
        if matches!(result, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            this.clock.read_some();
        }
        result
    }
}

impl AsyncWrite for WatchedIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.note_write(&result, |n| *n > 0);
        result
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.note_write(&result, |n| *n > 0);
        result
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.inner).poll_flush(cx);
        this.note_write(&result, |_| false);
        result
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// The service of one connection: notes when each request begins and when its response has
/// been handed over whole (its body ended or was dropped).
#[derive(Clone)]
struct Tracked<S> {
    inner: S,
    clock: Arc<ConnClock>,
    /// The TCP peer, the client of every request of the connection unless it is a trusted proxy.
    peer: IpAddr,
    limits: Arc<ServerLimits>,
}

/// The client behind `peer`: `peer` itself unless it is a trusted proxy; then the last
/// `X-Forwarded-For` hop that is not a trusted proxy. Read from the right, because each proxy
/// appends the address it saw: the left end is whatever the client chose to send, so an
/// attacker could rotate it to escape the admin lockout.
fn client_addr(peer: IpAddr, headers: &http::HeaderMap, trusted: &[ipnet::IpNet]) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|n| n.contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }
    let mut client = peer;
    for value in headers.get_all("x-forwarded-for").iter().rev() {
        let Ok(value) = value.to_str() else {
            return client;
        };
        for hop in value.rsplit(',') {
            match hop.trim().parse::<IpAddr>() {
                Ok(ip) if is_trusted(&ip) => client = ip,
                Ok(ip) => return ip,
                Err(_) => return client,
            }
        }
    }
    client
}

/// A request in flight; dropped with its response body.
struct InFlight(Arc<ConnClock>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.request_answered();
    }
}

impl<S, B> hyper::service::Service<Request<Incoming>> for Tracked<S>
where
    S: hyper::service::Service<Request<Incoming>, Response = Response<B>>,
    S::Future: Send + 'static,
    S::Error: Send,
    B: hyper::body::Body<Data = Bytes> + Send + Unpin + 'static,
{
    type Response = Response<TrackedBody<B>>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, S::Error>> + Send>>;

    fn call(&self, mut req: Request<Incoming>) -> Self::Future {
        let client = match self.limits.trusted_proxies.as_slice() {
            [] => self.peer,
            trusted => client_addr(self.peer, req.headers(), trusted),
        };
        req.extensions_mut().insert(ClientAddr(client));
        self.clock.request_begun();
        let in_flight = InFlight(self.clock.clone());
        let response = self.inner.call(req);
        Box::pin(async move {
            let response = response.await?;
            Ok(response.map(|body| TrackedBody {
                inner: body,
                _in_flight: in_flight,
            }))
        })
    }
}

/// A response body that holds its request's place in flight until it is dropped.
pub(crate) struct TrackedBody<B> {
    inner: B,
    _in_flight: InFlight,
}

impl<B: hyper::body::Body + Unpin> hyper::body::Body for TrackedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<B::Data>, B::Error>>> {
        Pin::new(&mut self.get_mut().inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

/// The connection caps: a semaphore for all connections, a count per client address.
struct Caps {
    total: Arc<Semaphore>,
    per_ip: Mutex<HashMap<IpAddr, usize>>,
    per_ip_max: Option<usize>,
}

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    Total,
    PerAddress,
}

impl Refusal {
    fn metric_reason(self) -> &'static str {
        match self {
            Refusal::Total => "max_connections",
            Refusal::PerAddress => "max_connections_per_ip",
        }
    }

    fn message(self) -> &'static str {
        match self {
            Refusal::Total => "The gateway has too many open connections; retry shortly.",
            Refusal::PerAddress => {
                "Too many open connections from this address; reuse connections or retry shortly."
            }
        }
    }
}

/// A connection's place under the caps, given back when dropped.
struct Admitted {
    _permit: OwnedSemaphorePermit,
    ip: IpAddr,
    caps: Arc<Caps>,
    counted: bool,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        if !self.counted {
            return;
        }
        let mut per_ip = self.caps.per_ip.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = per_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                per_ip.remove(&self.ip);
            }
        }
    }
}

impl Caps {
    fn new(limits: &ServerLimits) -> Caps {
        Caps {
            total: Arc::new(Semaphore::new(limits.max_connections)),
            per_ip: Mutex::new(HashMap::new()),
            per_ip_max: limits.max_connections_per_ip,
        }
    }

    fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Admitted, Refusal> {
        let ip = ip.to_canonical();
        let permit = self
            .total
            .clone()
            .try_acquire_owned()
            .map_err(|_| Refusal::Total)?;
        let Some(max) = self.per_ip_max else {
            return Ok(Admitted {
                _permit: permit,
                ip,
                caps: self.clone(),
                counted: false,
            });
        };
        let mut per_ip = self.per_ip.lock().unwrap_or_else(|p| p.into_inner());
        let n = per_ip.entry(ip).or_insert(0);
        if *n >= max {
            return Err(Refusal::PerAddress);
        }
        *n += 1;
        Ok(Admitted {
            _permit: permit,
            ip,
            caps: self.clone(),
            counted: true,
        })
    }
}

/// Answers a refused connection with a 503 OpenAI-shaped error and closes it, within
/// `REFUSAL_TIME`. What the client sent is read and dropped meanwhile, so that closing does not
/// reset the connection before the client has read the answer.
async fn refuse(mut tcp: TcpStream, refusal: Refusal, _permit: OwnedSemaphorePermit) {
    let body = switchyard_wire::openai::error_body(
        refusal.message(),
        "service_unavailable",
        None,
        "too_many_connections".into(),
    )
    .to_string();
    let head = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: {}\r\nretry-after: 1\r\nconnection: close\r\n\r\n",
        body.len()
    );
    let _ = tokio::time::timeout(REFUSAL_TIME, async {
        tcp.write_all(head.as_bytes()).await?;
        tcp.write_all(body.as_bytes()).await?;
        tcp.shutdown().await?;
        let mut sink = [0u8; 4096];
        let mut left = 64 * 1024usize;
        loop {
            let n = tokio::io::AsyncReadExt::read(&mut tcp, &mut sink).await?;
            if n == 0 || n >= left {
                return Ok::<_, io::Error>(());
            }
            left -= n;
        }
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(total: usize, per_ip: Option<usize>) -> ServerLimits {
        ServerLimits {
            max_connections: total,
            max_connections_per_ip: per_ip,
            ..ServerLimits::default()
        }
    }

    #[test]
    fn caps_count_per_address_and_give_places_back() {
        let caps = Arc::new(Caps::new(&limits(3, Some(2))));
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let a1 = caps.admit(a).unwrap();
        let _a2 = caps.admit(a).unwrap();
        assert_eq!(caps.admit(a).err(), Some(Refusal::PerAddress));
        // The same address written as IPv4-mapped IPv6 is the same client.
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        assert_eq!(caps.admit(mapped).err(), Some(Refusal::PerAddress));
        let _b1 = caps.admit(b).unwrap();
        assert_eq!(caps.admit(b).err(), Some(Refusal::Total));
        drop(a1);
        let _a3 = caps.admit(a).unwrap();
        drop(_a3);
        drop(_a2);
        assert!(caps.per_ip.lock().unwrap().get(&a).is_none());
    }

    #[test]
    fn without_a_per_address_cap_only_the_total_counts() {
        let caps = Arc::new(Caps::new(&limits(2, None)));
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let _first = caps.admit(a).unwrap();
        let _second = caps.admit(a).unwrap();
        assert_eq!(caps.admit(a).err(), Some(Refusal::Total));
        assert!(caps.per_ip.lock().unwrap().is_empty());
    }

    #[test]
    fn clocks_follow_the_phase_of_the_connection() {
        let l = ServerLimits {
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            slow_reader_timeout: Duration::from_secs(30),
            ..ServerLimits::default()
        };
        let clock = ConnClock::new();
        let born = clock.born;
        assert_eq!(
            clock.deadline(&l),
            Some((born + l.header_read_timeout, Expired::Header))
        );
        clock.request_begun();
        assert_eq!(clock.deadline(&l), None);
        clock.write_blocked();
        assert_eq!(clock.deadline(&l).map(|d| d.1), Some(Expired::SlowReader));
        clock.write_flowed();
        assert_eq!(clock.deadline(&l), None);
        clock.request_answered();
        assert_eq!(clock.deadline(&l).map(|d| d.1), Some(Expired::Idle));
        clock.read_some();
        assert_eq!(clock.deadline(&l).map(|d| d.1), Some(Expired::Header));
    }
}
