//! One benchmark connection: an HTTP/1.1 keep-alive connection (hyper's client `conn` API, no pool)
//! that sends the plan's request for every slot the schedule gives it, reads the answer frame by
//! frame (streams through `SseScan`: time to first token, gaps, events, end marker) and records
//! the outcome in its thread's `Stats`. A broken, timed-out or deliberately aborted exchange drops
//! the connection; the next request opens a new one.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, Request};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;

use super::progress::Counters;
use super::request::Plan;
use super::schedule::{Schedule, Slot};
use super::sse_scan::SseScan;
use super::stats::{record, ErrorKind, Stats};

/// What every connection of one thread shares.
pub(crate) struct Shared {
    pub plan: Arc<Plan>,
    pub schedule: Arc<Schedule>,
    pub stats: Rc<RefCell<Stats>>,
    pub counters: Arc<Counters>,
    pub timeout: Duration,
    pub abort_after: Option<u64>,
}

struct Conn {
    sender: SendRequest<Full<Bytes>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Conn {
    fn drop(&mut self) {
        // Closes the socket at once, even mid-response.
        self.task.abort();
    }
}

/// How an exchange ended, short of an error.
enum Finish {
    Complete,
    Aborted,
}

/// Runs one connection until the schedule has no more requests. Must run on a `LocalSet`.
pub(crate) async fn run(shared: Rc<Shared>) {
    let mut conn: Option<Conn> = None;
    let mut scan = SseScan::default();
    while let Some(slot) = shared.schedule.next() {
        // Open loop: a request that waited for a busy connection counts from its scheduled
        // start (queueing is the server's); one whose idle connection slept until then counts
        // from the wake-up, since tokio's timer is coarse (1 ms) and its lateness is ours.
        let from = match slot.at {
            Some(at) if at > Instant::now() => {
                tokio::time::sleep_until(at.into()).await;
                Instant::now()
            }
            Some(at) => at,
            None => Instant::now(),
        };
        scan.reset();
        let outcome = match tokio::time::timeout(
            shared.timeout,
            exchange(&shared, &mut conn, &mut scan, slot, from),
        )
        .await
        {
            Ok(r) => r,
            Err(_) => Err(ErrorKind::Timeout),
        };
        let end = Instant::now();
        if outcome.is_err() && !matches!(outcome, Err(ErrorKind::Status(_))) {
            conn = None;
        }
        if matches!(outcome, Ok(Finish::Aborted)) {
            conn = None;
        }
        Counters::add(&shared.counters.done, 1);
        if outcome.is_err() {
            Counters::add(&shared.counters.errors, 1);
        }
        if !slot.measured {
            continue;
        }
        let mut stats = shared.stats.borrow_mut();
        match outcome {
            Ok(finish) => {
                stats.ok += 1;
                if matches!(finish, Finish::Aborted) {
                    stats.aborted += 1;
                }
                record(&mut stats.latency, end - from);
            }
            Err(kind) => {
                if kind == ErrorKind::Incomplete {
                    stats.incomplete_streams += 1;
                }
                stats.error(kind);
            }
        }
        stats.done_at(end);
    }
}

async fn connect(plan: &Plan) -> Result<Conn, ErrorKind> {
    let tcp = tokio::net::TcpStream::connect(plan.addr)
        .await
        .map_err(|_| ErrorKind::Connect)?;
    let _ = tcp.set_nodelay(true);
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .map_err(|_| ErrorKind::Connect)?;
    let task = tokio::task::spawn_local(async move {
        // Ends when the server closes or the sender is dropped; its error is the exchange's.
        let _ = connection.await;
    });
    Ok(Conn { sender, task })
}

/// One request and its whole answer.
async fn exchange(
    shared: &Shared,
    conn: &mut Option<Conn>,
    scan: &mut SseScan,
    slot: Slot,
    from: Instant,
) -> Result<Finish, ErrorKind> {
    let plan = &*shared.plan;
    if conn.as_ref().is_some_and(|c| c.sender.is_closed()) {
        *conn = None;
    }
    let c = match conn {
        Some(c) => c,
        None => conn.insert(connect(plan).await?),
    };
    c.sender.ready().await.map_err(|_| ErrorKind::Io)?;
    let mut req = Request::new(Full::new(plan.body.clone()));
    *req.method_mut() = Method::POST;
    *req.uri_mut() = plan.path.clone();
    *req.headers_mut() = plan.headers.clone();
    let resp = c
        .sender
        .send_request(req)
        .await
        .map_err(|_| ErrorKind::Io)?;
    let status = resp.status().as_u16();
    let mut body = resp.into_body();
    if !(200..300).contains(&status) {
        let bytes = drain(&mut body).await?;
        if slot.measured {
            shared.stats.borrow_mut().bytes += bytes;
        }
        return Err(ErrorKind::Status(status));
    }
    if !plan.stream {
        let bytes = drain(&mut body).await?;
        if slot.measured {
            shared.stats.borrow_mut().bytes += bytes;
        }
        return Ok(Finish::Complete);
    }
    read_stream(shared, &mut body, scan, slot.measured, from).await
}

/// Reads a body to its end, counting its bytes.
async fn drain(body: &mut Incoming) -> Result<u64, ErrorKind> {
    let mut bytes = 0;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|_| ErrorKind::Io)?;
        if let Some(data) = frame.data_ref() {
            bytes += data.len() as u64;
        }
    }
    Ok(bytes)
}

/// Per stream: what has been seen so far.
#[derive(Default)]
struct Tally {
    events: u64,
    contents: u64,
    last_content: Option<Instant>,
    terminal: bool,
    error: bool,
}

async fn read_stream(
    shared: &Shared,
    body: &mut Incoming,
    scan: &mut SseScan,
    measured: bool,
    from: Instant,
) -> Result<Finish, ErrorKind> {
    let mut t = Tally::default();
    let mut bytes = 0u64;
    let mut broken = false;
    let mut aborted = false;
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else {
            broken = true;
            break;
        };
        let Some(data) = frame.data_ref() else {
            continue;
        };
        bytes += data.len() as u64;
        let now = Instant::now();
        let before = t.events;
        scan.feed(data, |ev| {
            t.events += 1;
            t.terminal |= ev.terminal;
            t.error |= ev.error;
            if ev.content {
                if measured {
                    let mut stats = shared.stats.borrow_mut();
                    match t.last_content {
                        None => record(&mut stats.ttft, now - from),
                        Some(last) => record(&mut stats.gap, now - last),
                    }
                }
                t.last_content = Some(now);
                t.contents += 1;
            }
        });
        Counters::add(&shared.counters.events, t.events - before);
        if shared.abort_after.is_some_and(|n| t.contents >= n) && !t.terminal {
            aborted = true;
            break;
        }
    }
    if measured {
        let mut stats = shared.stats.borrow_mut();
        stats.bytes += bytes;
        stats.stream_events(t.events);
    }
    if t.error {
        Err(ErrorKind::StreamError)
    } else if aborted {
        Ok(Finish::Aborted)
    } else if broken {
        Err(ErrorKind::Io)
    } else if !t.terminal {
        Err(ErrorKind::Incomplete)
    } else {
        Ok(Finish::Complete)
    }
}
