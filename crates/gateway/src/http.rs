//! The HTTP edge, and the only module that knows axum and status codes: the routes under the
//! three public prefixes (and Google's Gemini API at the root, `gemini.rs`), bearer-key extraction,
//! body limits, and the one place where every error becomes an OpenAI-shaped response (re-shaped
//! for the Messages and Gemini routes by their own modules). It also writes the one log line per request.

mod admin;
mod catch_panic;
mod console;
mod cors;
mod errors;
mod gemini;
mod gzip;
mod messages;
mod models;
mod responses;
mod streams;

use std::sync::Arc;
use tokio::time::Instant;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;

use crate::auth::{new_request_id, Caller};
use crate::gateway::{Gateway, Live};
use crate::relay::{self, ChatReply, RequestIds, Served};
use crate::telemetry;

pub use errors::ApiError;

/// Every public route is served under each of these prefixes (the seeds use all three).
pub const PREFIXES: [&str; 3] = ["/v1", "/api/v1", "/v1/llm"];

/// The address of the client a request came from, in the request's extensions: the TCP peer,
/// or, when the peer is one of `server.trusted_proxies`, the `X-Forwarded-For` hop it reported.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ClientAddr(pub std::net::IpAddr);

/// Every handler's `State<Arc<Gateway>>` is the generation current when it is extracted: the
/// request (its stream included) keeps that one to its end, whatever reloads happen meanwhile.
impl axum::extract::FromRef<Live> for Arc<Gateway> {
    fn from_ref(live: &Live) -> Arc<Gateway> {
        live.current()
    }
}

/// The whole HTTP surface: the router inside the layers every request goes through (`edge`, then
/// CORS, then the panic catcher). The layers wrap the router once instead of each route
/// (`Router::layer`), so a request clones one stack of three services, not a boxed copy of all
/// three inside every route it reaches (issue 25: 34 of a request's ~300 allocations were those
/// clones).
pub(crate) fn service(
    live: Live,
) -> impl tower_service::Service<
    Request<hyper::body::Incoming>,
    Response = Response,
    Error = std::convert::Infallible,
    Future: Send + 'static,
> + Clone
       + Send
       + 'static {
    use tower_layer::Layer;
    let gw = live.current();
    let inner = catch_panic::layer().layer(router(live.clone()));
    let inner = cors::layer(&gw.config.cors).layer(inner);
    AxumBody(middleware::from_fn_with_state(live, edge).layer(inner))
}

/// Hands hyper's request body to a service that takes axum's (`edge`'s `from_fn` does).
#[derive(Clone)]
struct AxumBody<S>(S);

impl<S> tower_service::Service<Request<hyper::body::Incoming>> for AxumBody<S>
where
    S: tower_service::Service<Request>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), S::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, req: Request<hyper::body::Incoming>) -> S::Future {
        self.0.call(req.map(Body::new))
    }
}

/// The routes, with their state.
fn router(live: Live) -> Router {
    telemetry::metrics();
    let mut app = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(openapi));
    app = admin::routes(app, &live);
    app = console::routes(app);
    for p in PREFIXES {
        app = app
            .route(&format!("{p}/chat/completions"), post(chat_completions))
            .route(&format!("{p}/completions"), post(completions))
            .route(&format!("{p}/embeddings"), post(embeddings))
            .route(&format!("{p}/models"), get(models::list))
            .route(&format!("{p}/models/{{id}}"), get(models::retrieve))
            .route(&format!("{p}/responses"), post(responses::create))
            .route(&format!("{p}/messages"), post(messages::create))
            .route(
                &format!("{p}/messages/count_tokens"),
                post(messages::count_tokens),
            )
            .route(
                &format!("{p}/responses/{{id}}"),
                get(responses::retrieve).delete(responses::delete),
            )
            .route(
                &format!("{p}/responses/{{id}}/input_items"),
                get(responses::input_items),
            )
            .route(
                &format!("{p}/responses/{{id}}/cancel"),
                post(responses::cancel),
            )
            .route(
                &format!("{p}/streams/{{id}}"),
                get(streams::resume).delete(streams::cancel),
            );
    }
    // Google's API at the root, as Google serves it (a model name may hold '/').
    app = app.route("/v1beta/models", get(gemini::list)).route(
        "/v1beta/models/{*id}",
        get(gemini::retrieve).post(gemini::action),
    );
    let app = app
        .fallback(|| async { ApiError::not_found_route() })
        .method_not_allowed_fallback(|| async { ApiError::method_not_allowed() });
    app.with_state(live)
}

/// Everything every request goes through, in one layer (one boxed future per request, not one
/// per concern; issue 25): the access log line and the request count around it, the
/// `x-request-id`s, the header size limit, and `nosniff`.
async fn edge(State(gw): State<Arc<Gateway>>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = req.method().clone();
    // Borrowed by the log line only when it is written: no `String` per request.
    let uri = req.uri().clone();
    let client = Client(req.extensions().get::<ClientAddr>().copied());
    let client_id = client_request_id(req.headers());
    let mut resp = match header_limit(&gw, &req) {
        Some(refused) => refused,
        None => next.run(req).await,
    };
    request_ids(&mut resp, client_id);
    access_log(&resp, &method, uri.path(), client, started);
    // Every response says its content type is what it is, so a browser never runs an error
    // body or a JSON answer as a script or a page.
    resp.headers_mut()
        .entry(header::X_CONTENT_TYPE_OPTIONS)
        .or_insert(axum::http::HeaderValue::from_static("nosniff"));
    resp
}

/// An OpenAI-shaped 431 for a request head over `max_header_bytes`. The listener lets hyper read
/// heads up to twice that, so only a head past the double gets hyper's bare 431.
fn header_limit(gw: &Gateway, req: &Request) -> Option<Response> {
    let limit = gw.config.server.max_header_bytes;
    let target = req.uri().path_and_query().map_or(1, |p| p.as_str().len());
    let line = req.method().as_str().len() + target + 12;
    let size = req.headers().iter().fold(line, |n, (name, value)| {
        n + name.as_str().len() + value.len() + 4
    });
    if size <= limit {
        return None;
    }
    let mut resp = ApiError::new(
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        "invalid_request_error",
        "request_header_fields_too_large",
        format!("The request's headers are larger than the gateway accepts ({limit} bytes)."),
    )
    .into_response();
    resp.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    Some(resp)
}

/// The OpenAPI 3.1 description of every route above, kept next to the code that serves them
/// (`tests/integration/openapi.rs` checks that the two list the same routes and methods).
pub const OPENAPI: &str = include_str!("http/openapi.json");

/// `GET /openapi.json`: unauthenticated, like `/healthz`.
async fn openapi() -> Response {
    let mut resp = Response::new(Body::from(OPENAPI));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

/// The longest client `x-request-id` kept; a longer one, or one with other than printable ASCII,
/// is replaced by a new id.
const MAX_CLIENT_REQUEST_ID: usize = 128;

/// The client's `x-request-id` when it is usable: 1 to 128 printable ASCII characters.
fn client_request_id(headers: &HeaderMap) -> Option<HeaderValue> {
    let v = headers.get("x-request-id")?;
    let b = v.as_bytes();
    let ok = !b.is_empty()
        && b.len() <= MAX_CLIENT_REQUEST_ID
        && b.iter().all(|c| c.is_ascii_graphic() || *c == b' ');
    ok.then(|| v.clone())
}

/// The ids of a relayed request: a new ledger id, and the id its client will see on the response
/// (`request_ids` below: the client's valid `x-request-id`, else the ledger id), which is also sent
/// upstream.
fn request_ids_for(headers: &HeaderMap) -> RequestIds {
    let ledger = new_request_id();
    let visible = client_request_id(headers)
        .and_then(|v| v.to_str().ok().map(str::to_owned))
        .unwrap_or_else(|| ledger.clone());
    RequestIds {
        ledger,
        visible,
        traceparent: traceparent(headers).map(str::to_owned),
        session: headers
            .get("x-session-id")
            .and_then(|v| v.to_str().ok())
            .filter(|s| !s.is_empty() && s.len() <= MAX_CLIENT_REQUEST_ID)
            .map(str::to_owned),
        tags: headers
            .get("x-switchyard-tags")
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned()),
    }
}

/// Every response carries `x-request-id`: the client's own when valid, else the id the handler
/// gave the request (the ledger's), else a new one. When the client's id is echoed and the
/// request has its own ledger id, that one is sent as `x-switchyard-request-id` (the id under
/// which `/admin/requests` knows it): a client's id need not be unique, the ledger's must be.
fn request_ids(resp: &mut Response, client: Option<HeaderValue>) {
    let h = resp.headers_mut();
    match client {
        Some(id) => {
            if let Some(own) = h.insert("x-request-id", id.clone()) {
                if own != id {
                    h.insert("x-switchyard-request-id", own);
                }
            }
        }
        None => {
            if !h.contains_key("x-request-id") {
                if let Ok(v) = HeaderValue::from_str(&new_request_id()) {
                    h.insert("x-request-id", v);
                }
            }
        }
    }
}

/// The client's address in a log line (`-` when unknown), formatted only if the line is written.
#[derive(Clone, Copy)]
struct Client(Option<ClientAddr>);

impl std::fmt::Display for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(c) => c.0.fmt(f),
            None => f.write_str("-"),
        }
    }
}

/// One log line per request, at the edge. Never logs bodies or keys.
fn access_log(
    resp: &Response,
    method: &axum::http::Method,
    path: &str,
    client: Client,
    started: Instant,
) {
    let status = resp.status().as_u16();
    let request_id = resp
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-");
    // A CORS preflight is answered by the edge, not the API: it is not an API request.
    if let Some(route) =
        telemetry::api_route(path).filter(|_| method != axum::http::Method::OPTIONS)
    {
        let stream = resp
            .headers()
            .get(header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
        telemetry::record_request(route, status, stream);
    }
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    if status >= 500 {
        tracing::warn!(%method, %path, status, request_id, ms, %client, "request failed");
    } else {
        tracing::info!(%method, %path, status, request_id, ms, %client, "request");
    }
}

/// Prometheus text exposition. Unauthenticated like `/healthz`: bind the gateway (or this path)
/// to a private network. Labels carry no keys, key ids or prompts.
async fn metrics() -> Response {
    let mut resp = Response::new(Body::from(telemetry::render_metrics()));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    resp
}

/// `GET /readyz`: 200 when every configured dependency answers (the database, and Redis when
/// `redis` is set), else 503 naming those that do not.
async fn readyz(State(gw): State<Arc<Gateway>>) -> Response {
    let (db, redis) = tokio::join!(gw.ledger.ping(), gw.limits.redis_ready());
    let mut down = Vec::new();
    if !db {
        down.push("the database");
    }
    if redis == Some(false) {
        down.push("Redis");
    }
    if down.is_empty() {
        return (StatusCode::OK, "ready").into_response();
    }
    let verb = if down.len() == 1 { "is" } else { "are" };
    ApiError::unavailable(&format!(
        "Not ready: {} {verb} not reachable.",
        down.join(" and ")
    ))
    .into_response()
}

/// A client's W3C `traceparent` header, for the request's span under `[otlp]` (parsed there).
fn traceparent(headers: &HeaderMap) -> Option<&str> {
    headers
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .filter(|v| v.len() <= 128)
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then_some(token)
}

async fn caller(gw: &Gateway, headers: &HeaderMap) -> Result<Caller, ApiError> {
    let token = bearer(headers).or_else(|| headers.get("x-api-key")?.to_str().ok());
    gw.auth.authenticate(token).await.map_err(ApiError::from)
}

fn wants_gzip(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(',').any(|enc| {
                let mut parts = enc.split(';');
                let name = parts.next().unwrap_or("").trim();
                let refused = parts.any(|p| p.trim().replace(' ', "") == "q=0");
                name.eq_ignore_ascii_case("gzip") && !refused
            })
        })
}

/// The request body, up to the configured limit. A declared `Content-Length` over the limit is
/// refused at once (413), before a byte of the body is read, so a client that declares a huge
/// body and sends a short one gets an answer instead of a hung connection; a body that turns out
/// longer than the limit is refused as soon as it passes it. Either way the rest is read and
/// thrown away behind the answer (`linger`), so a client still sending reads its 413 instead of a
/// reset. A body that takes longer than `server.body_read_timeout` to arrive is answered 408.
async fn read_body(
    gw: &Gateway,
    headers: &HeaderMap,
    body: Body,
) -> Result<bytes::Bytes, ApiError> {
    let limit = gw.config.max_body_bytes;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(ApiError {
            close: linger(body),
            ..ApiError::too_large(limit)
        });
    }
    match tokio::time::timeout(gw.config.server.body_read_timeout, up_to(body, limit)).await {
        Ok(Ok(bytes)) => Ok(bytes),
        Ok(Err(Some(rest))) => Err(ApiError {
            close: linger(rest),
            ..ApiError::too_large(limit)
        }),
        Ok(Err(None)) => Err(ApiError::too_large(limit)),
        Err(_) => Err(ApiError::body_timeout(gw.config.server.body_read_timeout)),
    }
}

/// The whole body if it is at most `limit` bytes (one frame is kept as it came, without a copy);
/// past the limit, the unread rest (`None` when the body itself failed).
async fn up_to(mut body: Body, limit: usize) -> Result<bytes::Bytes, Option<Body>> {
    use http_body_util::BodyExt;
    let mut frames: Vec<bytes::Bytes> = Vec::new();
    let mut len = 0usize;
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame.map_err(|_| None)?.into_data() else {
            continue;
        };
        len += data.len();
        if len > limit {
            return Err(Some(body));
        }
        frames.push(data);
    }
    Ok(match frames.len() {
        0 => bytes::Bytes::new(),
        1 => frames.pop().unwrap_or_default(),
        _ => frames.concat().into(),
    })
}

/// A path's `{id}`, or a 400 in the OpenAI shape (axum's own rejection is plain text), e.g. for
/// an id whose percent-encoding is not UTF-8.
#[allow(clippy::result_large_err)] // the error is the response on its way out, as in `read_body`
fn path_id(
    id: Result<axum::extract::Path<String>, axum::extract::rejection::PathRejection>,
) -> Result<String, ApiError> {
    id.map(|axum::extract::Path(id)| id).map_err(|_| ApiError {
        param: Some("id".into()),
        ..ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "invalid_value",
            "The id in the path is not valid UTF-8 text.",
        )
    })
}

/// How much of a refused request's body is read and thrown away behind the answer, and for how
/// long (nginx's lingering close): closing a connection while the client is still sending makes
/// the kernel reset it, and the client then loses the answer (a 413, 401 or 400 arriving as
/// "connection reset" or a failed write). Past either bound the connection is closed.
const LINGER_BYTES: usize = 64 << 20;
const LINGER_TIME: std::time::Duration = std::time::Duration::from_secs(10);

/// Reads and discards what is left of a refused request's body, in the background, within
/// `LINGER_BYTES` and `LINGER_TIME`; the answer goes out meanwhile. Whether anything is left to
/// read: then the answer closes the connection, which can carry no other request.
fn linger(mut body: Body) -> bool {
    use http_body::Body as _;
    use http_body_util::BodyExt;
    if body.is_end_stream() {
        return false;
    }
    tokio::spawn(async move {
        let drain = async {
            let mut read = 0usize;
            while let Some(Ok(frame)) = body.frame().await {
                read += frame.data_ref().map_or(0, bytes::Bytes::len);
                if read > LINGER_BYTES {
                    break;
                }
            }
        };
        let _ = tokio::time::timeout(LINGER_TIME, drain).await;
    });
    true
}

/// `e`, with the unread request body read and discarded behind it (see `linger`).
fn refuse_unread(body: Body, e: ApiError) -> ApiError {
    ApiError {
        close: linger(body),
        ..e
    }
}

async fn chat_completions(
    State(gw): State<Arc<Gateway>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let ids = request_ids_for(&headers);
    let request_id = ids.ledger.clone();
    let result = async {
        let caller = match caller(&gw, &headers).await {
            Ok(c) => c,
            Err(e) => return Err(refuse_unread(body, e)),
        };
        let owner = caller.id.clone();
        let body = read_body(&gw, &headers, body).await?;
        let reply = relay::chat(&gw, caller, ids, body)
            .await
            .map_err(ApiError::from)?;
        Ok(streams::resumable(
            &gw,
            &headers,
            &owner,
            &request_id,
            reply,
        ))
    }
    .await;
    let mut resp = reply(&gw, &headers, &request_id, result);
    streams::name_resume(&mut resp, &headers, &request_id);
    resp
}

/// `POST /completions` (legacy text completions, served over chat).
async fn completions(State(gw): State<Arc<Gateway>>, headers: HeaderMap, body: Body) -> Response {
    let ids = request_ids_for(&headers);
    let request_id = ids.ledger.clone();
    let result = async {
        let caller = match caller(&gw, &headers).await {
            Ok(c) => c,
            Err(e) => return Err(refuse_unread(body, e)),
        };
        let body = read_body(&gw, &headers, body).await?;
        relay::completions::create(&gw, caller, ids, body)
            .await
            .map_err(ApiError::from)
    }
    .await;
    reply(&gw, &headers, &request_id, result)
}

/// `POST /embeddings`.
async fn embeddings(State(gw): State<Arc<Gateway>>, headers: HeaderMap, body: Body) -> Response {
    let ids = request_ids_for(&headers);
    let request_id = ids.ledger.clone();
    let result = async {
        let caller = match caller(&gw, &headers).await {
            Ok(c) => c,
            Err(e) => return Err(refuse_unread(body, e)),
        };
        let body = read_body(&gw, &headers, body).await?;
        relay::embeddings::create(&gw, caller, ids, body)
            .await
            .map_err(ApiError::from)
    }
    .await;
    reply(&gw, &headers, &request_id, result)
}

/// The HTTP response for a relay's answer (JSON, or an SSE stream with its headers, gzip when
/// asked), or for its error; every response carries `x-request-id`.
fn reply(
    gw: &Gateway,
    headers: &HeaderMap,
    request_id: &str,
    result: Result<ChatReply, ApiError>,
) -> Response {
    let gzip = wants_gzip(headers);
    let mut resp = match result {
        Ok(ChatReply::Json { body, served }) => {
            let mut resp = json_response(body, gzip);
            served_headers(resp.headers_mut(), &served, gw);
            resp
        }
        Ok(ChatReply::Stream { body, served }) => {
            let mut resp = sse_response(body, gzip);
            served_headers(resp.headers_mut(), &served, gw);
            resp
        }
        Ok(ChatReply::Committed { body, rate }) => {
            let mut resp = sse_response(body, gzip);
            if let Some(q) = &rate {
                errors::rate_headers(resp.headers_mut(), q);
            }
            resp
        }
        Err(e) => e.into_response(),
    };
    if let Ok(v) = HeaderValue::from_str(request_id) {
        resp.headers_mut().insert("x-request-id", v);
    }
    resp
}

/// A streamed answer with the SSE headers (gzip, one sync-flushed frame per frame, when asked).
fn sse_response(
    body: Box<dyn futures_util::Stream<Item = bytes::Bytes> + Send + Unpin>,
    gzip: bool,
) -> Response {
    let mut resp = if gzip {
        Response::new(Body::from_stream(gzip::GzipFrames::new(body)))
    } else {
        Response::new(Body::from_stream(futures_util::StreamExt::map(
            body,
            Ok::<_, std::convert::Infallible>,
        )))
    };
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    if gzip {
        h.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    resp
}

/// `x-switchyard-provider` and `x-switchyard-attempts`, unless `routing.served_headers = false`.
/// Also the key's `x-ratelimit-*` headers when it has limits.
fn served_headers(h: &mut HeaderMap, served: &Served, gw: &Gateway) {
    if let Some(q) = &served.rate {
        errors::rate_headers(h, q);
    }
    // A background response is answered before a route is chosen: there is none to name.
    let Some(route) = served
        .route
        .as_ref()
        .filter(|_| gw.config.routing.served_headers)
    else {
        return;
    };
    if let Ok(v) = HeaderValue::from_str(route.provider()) {
        h.insert("x-switchyard-provider", v);
    }
    h.insert("x-switchyard-attempts", HeaderValue::from(served.attempts));
    if !served.dropped.is_empty() {
        if let Ok(v) = HeaderValue::from_str(&served.dropped.join(", ")) {
            h.insert("x-switchyard-dropped", v);
        }
    }
}

fn json_response(body: Vec<u8>, gzip: bool) -> Response {
    let (body, encoded) = if gzip {
        (gzip::compress(&body), true)
    } else {
        (body, false)
    };
    let mut resp = Response::new(Body::from(body));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if encoded {
        resp.headers_mut()
            .insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    resp
}
