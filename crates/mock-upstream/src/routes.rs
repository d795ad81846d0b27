//! The HTTP surface of the mock: `POST /v1/chat/completions` (OpenAI or DeepSeek dialect),
//! `POST /v1/messages` (Anthropic), `POST /v1/models/{model}:generateContent` and
//! `:streamGenerateContent?alt=sse` (Gemini, also under `/v1beta`), `POST /v1/responses` (OpenAI
//! Responses, also at `/responses`), `POST /v1/embeddings` (OpenAI shape), `GET /v1/models`, and a
//! vendor-shaped 404 for anything else. Each
//! handler records the request, checks the credential, resolves the behaviour, applies the requested
//! failure, then answers with a whole body or a paced stream.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde_json::{json, Value};

use crate::anthropic_format::{self, MessageContext};
use crate::completion::Completion;
use crate::embedding_format;
use crate::gemini_format::{self, GenerateContext};
use crate::openai_format::{self, ChatContext};
use crate::options::{self, Behaviour, DEFAULT_FAIL_STATUS};
use crate::playback::{self, Step};
use crate::recording::{Dialect, Shared, StreamTracker};
use crate::responses_format::{self, Echo, ResponseContext};
use crate::signatures;
use crate::MockState;

/// Requests up to this size are accepted (the gateway enforces its own, smaller limit).
const BODY_LIMIT: usize = 32 * 1024 * 1024;

/// Model ids listed by `GET /v1/models`. Any model name is accepted by the completion routes.
const LISTED_MODELS: [&str; 7] = [
    "demo-chat",
    "demo-reasoner",
    "mock-chat",
    "mock-reasoner",
    "deepseek-chat",
    "deepseek-reasoner",
    "mock-claude",
];

/// The mock's routes over a shared [`MockState`]. Served under `/v1` (and, for DeepSeek-style base
/// URLs without a version, also at `/chat/completions` and `/models`).
pub fn router(state: MockState) -> Router {
    Router::new()
        .route("/v1/chat/completions", post(chat_completions))
        .route("/chat/completions", post(chat_completions))
        .route("/v1/messages", post(messages))
        .route("/v1/responses", post(responses))
        .route("/responses", post(responses))
        .route("/v1/embeddings", post(embeddings))
        .route("/embeddings", post(embeddings))
        .route("/v1/models", get(models))
        .route("/v1/models/{*method}", post(generate_content))
        .route("/v1beta/models/{*method}", post(generate_content))
        .route("/models", get(models))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(state)
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn json_response(status: u16, body: &Value, request_id: (&'static str, String)) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut resp = (status, body.to_string()).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Ok(v) = HeaderValue::from_str(&request_id.1) {
        h.insert(request_id.0, v);
    }
    resp
}

/// Pads a whole body with spaces (still valid JSON) to at least `body_bytes`.
fn padded(mut body: String, b: &Behaviour) -> String {
    if let Some(n) = b.body_bytes {
        let n = usize::try_from(n).unwrap_or(usize::MAX);
        if body.len() < n {
            body.extend(std::iter::repeat_n(' ', n - body.len()));
        }
    }
    body
}

/// The error response of a failing request: the behaviour's own `error_body`, or the dialect's
/// `default`, padded to `body_bytes`.
fn failure_response(
    status: u16,
    default: Value,
    b: &Behaviour,
    request_id: (&'static str, String),
) -> Response {
    let text = b.error_body.clone().unwrap_or_else(|| default.to_string());
    let mut resp = json_response(status, &Value::Null, request_id);
    *resp.body_mut() = Body::from(padded(text, b));
    with_retry_after(resp, b.retry_after)
}

fn with_retry_after(mut resp: Response, retry_after: Option<u64>) -> Response {
    if let Some(secs) = retry_after {
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    resp
}

fn sse_response(body: Body, request_id: (&'static str, String)) -> Response {
    let mut resp = Response::new(body);
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if let Ok(v) = HeaderValue::from_str(&request_id.1) {
        h.insert(request_id.0, v);
    }
    resp
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
        .map(str::trim)
}

fn api_key(headers: &HeaderMap) -> Option<&str> {
    headers.get("x-api-key")?.to_str().ok().map(str::trim)
}

/// Sleeps unless the server shuts down first; returns false on shutdown.
async fn delay(shared: &Shared, ms: u64) -> bool {
    if ms == 0 {
        return true;
    }
    let mut shutdown = shared.shutdown_signal();
    tokio::select! {
        () = tokio::time::sleep(Duration::from_millis(ms)) => true,
        _ = shutdown.wait_for(|down| *down) => false,
    }
}

/// How long `stall_if_contains` waits: until the client leaves or the server stops, in practice.
const STALL_MS: u64 = 24 * 3600 * 1000;

/// Whether `stall_if_contains` holds for this request body.
fn stalls(b: &Behaviour, body: &[u8]) -> bool {
    b.stall_if_contains.as_ref().is_some_and(|needle| {
        !needle.is_empty() && body.windows(needle.len()).any(|w| w == needle.as_bytes())
    })
}

/// The error status this request must fail with, if any (`status`, limited by `fail_times`).
fn failure_status(shared: &Shared, b: &Behaviour) -> Option<u16> {
    match b.fail_times {
        None => b.status,
        Some(times) => {
            let key = b.fail_key.as_deref().unwrap_or("");
            shared
                .should_fail(key, times)
                .then(|| b.status.unwrap_or(DEFAULT_FAIL_STATUS))
        }
    }
}

/// How long a non-streamed answer takes to "generate": ttft plus a gap per further token.
fn generation_time(b: &Behaviour, c: &Completion) -> u64 {
    let tokens = u64::from(c.completion_tokens());
    b.ttft_ms
        .saturating_add(b.gap_ms.saturating_mul(tokens.saturating_sub(1)))
}

/// A non-streamed body honouring `reset_after` / `stall_after`: half the body, then the fault.
fn broken_body(shared: &Shared, b: &Behaviour, body: String) -> Option<Body> {
    let ending = if b.reset_after.is_some() {
        Step::Reset
    } else if b.stall_after.is_some() {
        Step::Stall
    } else {
        return None;
    };
    let mut half = body.into_bytes();
    half.truncate(half.len() / 2);
    let steps = vec![Step::frame(half), ending];
    Some(playback::body(steps, None, shared.shutdown_signal()))
}

async fn chat_completions(
    State(state): State<MockState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let shared = &state.shared;
    let (index, request) = shared.record_request(&method, &uri, &headers, &body);
    let request_id = (
        "x-request-id",
        format!("req_mock{:08x}{index:08x}", shared.salt()),
    );
    let model = request
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let (base_model, _) = options::split_model(&model);
    let named_dialect = if base_model.starts_with("deepseek") {
        Dialect::DeepSeek
    } else {
        Dialect::OpenAi
    };
    let error = |status: u16| {
        json_response(
            status,
            &openai_format::error_body(named_dialect, status, base_model),
            request_id.clone(),
        )
    };
    let bad_request = |message: String, param: Option<&str>, code: Value| {
        json_response(
            400,
            &openai_format::invalid_request(message, "invalid_request_error", param, code),
            request_id.clone(),
        )
    };

    if let Some(expected) = shared.expected_key() {
        if bearer(&headers) != Some(expected.as_str()) {
            return error(401);
        }
    }
    if !request.is_object() {
        return bad_request(
            "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your HTTP library correctly. The OpenAI API expects a JSON payload, but what was sent was not valid JSON.)".into(),
            None,
            Value::Null,
        );
    }
    if model.is_empty() {
        return bad_request(
            "you must provide a model parameter".into(),
            None,
            Value::Null,
        );
    }
    if !request.get("messages").is_some_and(Value::is_array) {
        return bad_request(
            "Missing required parameter: 'messages'.".into(),
            Some("messages"),
            json!("missing_required_parameter"),
        );
    }
    let behaviour = match options::resolve(
        &model,
        false,
        &headers,
        &request,
        &shared.server_options(),
        shared.steering(),
    ) {
        Ok(b) => b,
        Err(e) => return bad_request(e.to_string(), Some("mock"), Value::Null),
    };
    let dialect = if named_dialect == Dialect::DeepSeek || behaviour.reasoning > 0 {
        Dialect::DeepSeek
    } else {
        Dialect::OpenAi
    };
    if stalls(&behaviour, &body) {
        delay(shared, STALL_MS).await;
    }
    if !delay(shared, behaviour.headers_delay_ms).await {
        return error(503);
    }
    if let Some(status) = failure_status(shared, &behaviour) {
        let default = openai_format::error_body(named_dialect, status, base_model);
        return failure_response(status, default, &behaviour, request_id);
    }

    let mut completion = Completion::plan(&behaviour, &request);
    if behaviour.prompt_cache {
        let scope = format!("{model}\0{}", bearer(&headers).unwrap_or_default());
        let hit = shared.cached_prefix(&crate::completion::message_prefixes(&scope, &request));
        completion.cached_tokens = hit.min(completion.prompt_tokens);
    }
    let stream = request.get("stream").and_then(Value::as_bool) == Some(true);
    let include_usage = request
        .pointer("/stream_options/include_usage")
        .and_then(Value::as_bool)
        == Some(true);
    let send_usage = match dialect {
        Dialect::DeepSeek => behaviour.usage.unwrap_or(true),
        _ => behaviour.usage.unwrap_or(!stream || include_usage),
    };
    let id = match dialect {
        Dialect::DeepSeek => deepseek_id(shared.salt(), index),
        _ => format!("chatcmpl-Mock{:08x}{index:016x}", shared.salt()),
    };
    let ctx = ChatContext {
        dialect,
        id,
        created: unix_now(),
        model: base_model.to_string(),
        send_usage,
    };

    if stream {
        let mut steps = match &behaviour.transcript {
            Some(t) => openai_format::transcript_steps(t),
            None => openai_format::stream_steps(&ctx, &completion),
        };
        playback::pace(&mut steps, &behaviour);
        playback::inject_faults(
            &mut steps,
            &behaviour,
            Bytes::from_static(openai_format::STREAM_ERROR_EVENT.as_bytes()),
        );
        let tracker = StreamTracker::start(Arc::clone(shared), index, dialect);
        let body = playback::body(steps, Some(tracker), shared.shutdown_signal());
        return sse_response(body, request_id);
    }

    let body = match &behaviour.transcript {
        Some(t) => t.clone(),
        None => padded(
            openai_format::body(&ctx, &completion).to_string(),
            &behaviour,
        ),
    };
    if !delay(shared, generation_time(&behaviour, &completion)).await {
        return error(503);
    }
    if let Some(broken) = broken_body(shared, &behaviour, body.clone()) {
        let mut resp = json_response(200, &Value::Null, request_id);
        *resp.body_mut() = broken;
        return resp;
    }
    let mut resp = json_response(200, &Value::Null, request_id);
    *resp.body_mut() = Body::from(body);
    resp
}

/// `POST /v1/responses` (and `/responses`): the OpenAI Responses API, streamed or whole, with the
/// same credential check, recording, delays and failures as chat. Nothing is stored: a
/// `previous_response_id` is echoed, not resolved.
async fn responses(
    State(state): State<MockState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let shared = &state.shared;
    let (index, request) = shared.record_request(&method, &uri, &headers, &body);
    let request_id = (
        "x-request-id",
        format!("req_mock{:08x}{index:08x}", shared.salt()),
    );
    let model = request
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let (base_model, _) = options::split_model(&model);
    let error = |status: u16| {
        json_response(
            status,
            &openai_format::error_body(Dialect::OpenAi, status, base_model),
            request_id.clone(),
        )
    };
    let bad_request = |message: String, param: Option<&str>, code: Value| {
        json_response(
            400,
            &openai_format::invalid_request(message, "invalid_request_error", param, code),
            request_id.clone(),
        )
    };
    if let Some(expected) = shared.expected_key() {
        if bearer(&headers) != Some(expected.as_str()) {
            return error(401);
        }
    }
    if !request.is_object() {
        return bad_request(
            "We could not parse the JSON body of your request.".into(),
            None,
            Value::Null,
        );
    }
    if model.is_empty() {
        return bad_request(
            "Missing required parameter: 'model'.".into(),
            Some("model"),
            json!("missing_required_parameter"),
        );
    }
    if !request
        .get("input")
        .is_some_and(|i| i.is_string() || i.is_array())
    {
        return bad_request(
            "Missing required parameter: 'input'.".into(),
            Some("input"),
            json!("missing_required_parameter"),
        );
    }
    let behaviour = match options::resolve(
        &model,
        false,
        &headers,
        &request,
        &shared.server_options(),
        shared.steering(),
    ) {
        Ok(b) => b,
        Err(e) => return bad_request(e.to_string(), Some("mock"), Value::Null),
    };
    if stalls(&behaviour, &body) {
        delay(shared, STALL_MS).await;
    }
    if !delay(shared, behaviour.headers_delay_ms).await {
        return error(503);
    }
    if let Some(status) = failure_status(shared, &behaviour) {
        let default = openai_format::error_body(Dialect::OpenAi, status, base_model);
        return failure_response(status, default, &behaviour, request_id);
    }
    let encrypted = request
        .get("include")
        .and_then(Value::as_array)
        .is_some_and(|i| i.iter().any(|v| v == "reasoning.encrypted_content"));
    let id = format!("resp_mock{:08x}{index:016x}", shared.salt());
    let ctx = ResponseContext {
        encrypted_content: encrypted.then(|| responses_format::encrypted_content(&id)),
        reasoning_item: encrypted && behaviour.signatures,
        id,
        created_at: unix_now(),
        model: base_model.to_string(),
        send_usage: behaviour.usage.unwrap_or(true),
        echo: Echo::of(&request),
    };
    if behaviour.signatures {
        if let Err(message) = signatures::check_responses(shared, &request) {
            return bad_request(message, Some("input"), Value::Null);
        }
    }
    let completion = Completion::plan(&behaviour, &request);
    if let (true, Some(encrypted)) = (behaviour.signatures, &ctx.encrypted_content) {
        let calls: Vec<String> = (0..completion.tool_calls.len())
            .map(|k| ctx.call_id(k))
            .collect();
        signatures::issue_responses(shared, &ctx.reasoning_id(), encrypted, &calls);
    }
    if request.get("stream").and_then(Value::as_bool) == Some(true) {
        let mut steps = responses_format::stream_steps(&ctx, &completion);
        playback::pace(&mut steps, &behaviour);
        playback::inject_faults(
            &mut steps,
            &behaviour,
            Bytes::from_static(responses_format::STREAM_ERROR_EVENT.as_bytes()),
        );
        let tracker = StreamTracker::start(Arc::clone(shared), index, Dialect::Responses);
        let body = playback::body(steps, Some(tracker), shared.shutdown_signal());
        return sse_response(body, request_id);
    }
    let body = padded(
        responses_format::body(&ctx, &completion).to_string(),
        &behaviour,
    );
    if !delay(shared, generation_time(&behaviour, &completion)).await {
        return error(503);
    }
    let mut resp = json_response(200, &Value::Null, request_id);
    *resp.body_mut() = broken_body(shared, &behaviour, body.clone()).unwrap_or(Body::from(body));
    resp
}

/// `POST /v1/embeddings`: deterministic vectors (`embedding_format`), with the same credential
/// check, recording, delays and failures as chat.
async fn embeddings(
    State(state): State<MockState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let shared = &state.shared;
    let (index, request) = shared.record_request(&method, &uri, &headers, &body);
    let request_id = (
        "x-request-id",
        format!("req_mock{:08x}{index:08x}", shared.salt()),
    );
    let model = request
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let (base_model, _) = options::split_model(&model);
    let error = |status: u16| {
        json_response(
            status,
            &openai_format::error_body(Dialect::OpenAi, status, base_model),
            request_id.clone(),
        )
    };
    let bad_request = |message: String, param: Option<&str>| {
        json_response(
            400,
            &openai_format::invalid_request(message, "invalid_request_error", param, Value::Null),
            request_id.clone(),
        )
    };
    if let Some(expected) = shared.expected_key() {
        if bearer(&headers) != Some(expected.as_str()) {
            return error(401);
        }
    }
    if !request.is_object() || model.is_empty() {
        return bad_request("you must provide a model parameter".into(), None);
    }
    let behaviour = match options::resolve(
        &model,
        false,
        &headers,
        &request,
        &shared.server_options(),
        shared.steering(),
    ) {
        Ok(b) => b,
        Err(e) => return bad_request(e.to_string(), Some("mock")),
    };
    if !delay(shared, behaviour.headers_delay_ms).await {
        return error(503);
    }
    if let Some(status) = failure_status(shared, &behaviour) {
        let default = openai_format::error_body(Dialect::OpenAi, status, base_model);
        return failure_response(status, default, &behaviour, request_id);
    }
    if !delay(shared, behaviour.ttft_ms).await {
        return error(503);
    }
    match embedding_format::body(&request, base_model) {
        Ok(mut answer) => {
            if behaviour.usage == Some(false) {
                if let Some(o) = answer.as_object_mut() {
                    o.remove("usage");
                }
            }
            json_response(200, &answer, request_id)
        }
        Err((message, param)) => bad_request(message, Some(param)),
    }
}

/// DeepSeek ids are UUIDs.
fn deepseek_id(salt: u32, index: usize) -> String {
    let i = index as u64;
    format!(
        "{salt:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
        (i >> 48) & 0xffff,
        (i >> 36) & 0xfff,
        (i >> 24) & 0xfff,
        i & 0xff_ffff_ffff
    )
}

async fn messages(
    State(state): State<MockState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let shared = &state.shared;
    let (index, request) = shared.record_request(&method, &uri, &headers, &body);
    let request_id = format!("req_mock{:08x}{index:016x}", shared.salt());
    let model = request
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let (base_model, _) = options::split_model(&model);
    let error = |status: u16| {
        json_response(
            status,
            &anthropic_format::error_body(status, base_model, &request_id),
            ("request-id", request_id.clone()),
        )
    };
    let bad_request = |message: &str| {
        json_response(
            400,
            &anthropic_format::error_with("invalid_request_error", message, &request_id),
            ("request-id", request_id.clone()),
        )
    };

    if let Some(expected) = shared.expected_key() {
        if api_key(&headers) != Some(expected.as_str()) {
            return error(401);
        }
    }
    if !request.is_object() {
        return bad_request("There was an issue with your request body: it is not valid JSON.");
    }
    if model.is_empty() {
        return bad_request("model: Field required");
    }
    if !request.get("messages").is_some_and(Value::is_array) {
        return bad_request("messages: Field required");
    }
    if !request.get("max_tokens").is_some_and(Value::is_u64) {
        return bad_request("max_tokens: Field required");
    }
    let thinking = matches!(
        request.pointer("/thinking/type").and_then(Value::as_str),
        Some("enabled" | "adaptive")
    );
    let mut behaviour = match options::resolve(
        &model,
        thinking,
        &headers,
        &request,
        &shared.server_options(),
        shared.steering(),
    ) {
        Ok(b) => b,
        Err(e) => return bad_request(&e.to_string()),
    };
    let signed = behaviour.signatures && thinking;
    if signed {
        if let Err(message) = signatures::check_anthropic(shared, &request) {
            return bad_request(&message);
        }
        // A thinking request always gets its signed thinking block.
        behaviour.reasoning = behaviour.reasoning.max(1);
    }
    if stalls(&behaviour, &body) {
        delay(shared, STALL_MS).await;
    }
    if !delay(shared, behaviour.headers_delay_ms).await {
        return error(529);
    }
    if let Some(status) = failure_status(shared, &behaviour) {
        let default = anthropic_format::error_body(status, base_model, &request_id);
        return failure_response(status, default, &behaviour, ("request-id", request_id));
    }

    let completion = Completion::plan(&behaviour, &request);
    let ctx = MessageContext {
        id: format!("msg_mock{:08x}{index:016x}", shared.salt()),
        model: base_model.to_string(),
        send_usage: behaviour.usage.unwrap_or(true),
        stop_sequence: behaviour.stop_sequence.clone(),
        cache_creation_tokens: behaviour.cache_creation_tokens,
        redacted_thinking: behaviour.redacted_thinking,
    };
    if signed && !completion.reasoning.is_empty() {
        let ids: Vec<String> = (0..completion.tool_calls.len())
            .map(|k| anthropic_format::tool_use_id(&ctx, k))
            .collect();
        signatures::issue_anthropic(shared, &anthropic_format::signature(&ctx), &ids);
    }
    if request.get("stream").and_then(Value::as_bool) == Some(true) {
        let mut steps = match &behaviour.transcript {
            Some(t) => anthropic_format::transcript_steps(t),
            None => anthropic_format::stream_steps(&ctx, &completion),
        };
        playback::pace(&mut steps, &behaviour);
        playback::inject_faults(
            &mut steps,
            &behaviour,
            Bytes::from_static(anthropic_format::STREAM_ERROR_EVENT.as_bytes()),
        );
        let tracker = StreamTracker::start(Arc::clone(shared), index, Dialect::Anthropic);
        let body = playback::body(steps, Some(tracker), shared.shutdown_signal());
        return sse_response(body, ("request-id", request_id));
    }

    let body = match &behaviour.transcript {
        Some(t) => t.clone(),
        None => padded(
            anthropic_format::body(&ctx, &completion).to_string(),
            &behaviour,
        ),
    };
    if !delay(shared, generation_time(&behaviour, &completion)).await {
        return error(529);
    }
    let mut resp = json_response(200, &Value::Null, ("request-id", request_id));
    *resp.body_mut() = broken_body(shared, &behaviour, body.clone()).unwrap_or(Body::from(body));
    resp
}

/// `POST /v1beta/models/{model}:generateContent` and `…:streamGenerateContent?alt=sse`: the
/// model (with its steering suffix) comes from the path, the credential from `x-goog-api-key`.
async fn generate_content(
    State(state): State<MockState>,
    Path(method_path): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let shared = &state.shared;
    let (index, request) = shared.record_request(&method, &uri, &headers, &body);
    let request_id = (
        "x-request-id",
        format!("req_mock{:08x}{index:08x}", shared.salt()),
    );
    let (model, verb) = method_path
        .rsplit_once(':')
        .map_or((method_path.as_str(), ""), |(m, v)| (m, v));
    let model = model.to_string();
    let (base_model, _) = options::split_model(&model);
    let error = |status: u16| {
        json_response(
            if status == 401 { 400 } else { status },
            &gemini_format::error_body(status, base_model),
            request_id.clone(),
        )
    };
    let stream = match verb {
        "streamGenerateContent" => true,
        "generateContent" => false,
        _ => return error(404),
    };
    if let Some(expected) = shared.expected_key() {
        let given = headers.get("x-goog-api-key").and_then(|v| v.to_str().ok());
        if given != Some(expected.as_str()) {
            return error(401);
        }
    }
    let bad_request = |message: String| {
        json_response(
            400,
            &json!({"error": {"code": 400, "message": message, "status": "INVALID_ARGUMENT"}}),
            request_id.clone(),
        )
    };
    if !request.get("contents").is_some_and(Value::is_array) {
        return bad_request("* GenerateContentRequest.contents: contents is not specified".into());
    }
    let thinking = request
        .pointer("/generationConfig/thinkingConfig/includeThoughts")
        .and_then(Value::as_bool)
        == Some(true);
    let behaviour = match options::resolve(
        &model,
        thinking,
        &headers,
        &request,
        &shared.server_options(),
        shared.steering(),
    ) {
        Ok(b) => b,
        Err(e) => return bad_request(e.to_string()),
    };
    if stalls(&behaviour, &body) {
        delay(shared, STALL_MS).await;
    }
    if !delay(shared, behaviour.headers_delay_ms).await {
        return error(503);
    }
    if let Some(status) = failure_status(shared, &behaviour) {
        let default = gemini_format::error_body(status, base_model);
        return failure_response(status, default, &behaviour, request_id);
    }
    if behaviour.signatures {
        if let Err(message) = signatures::check_gemini(shared, &request) {
            return bad_request(message);
        }
    }
    let completion = Completion::plan(&behaviour, &request);
    let id = format!("mockresp{:08x}{index:08x}", shared.salt());
    let signature = (behaviour.signatures && !completion.tool_calls.is_empty())
        .then(|| signatures::gemini_signature(&id));
    if let (Some(sig), Some(call)) = (&signature, completion.tool_calls.first()) {
        signatures::issue_gemini(shared, sig, &call.name);
    }
    let ctx = GenerateContext {
        id,
        model: base_model.to_string(),
        send_usage: behaviour.usage.unwrap_or(true),
        signature,
    };
    if stream {
        let mut steps = gemini_format::stream_steps(&ctx, &completion);
        playback::pace(&mut steps, &behaviour);
        playback::inject_faults(
            &mut steps,
            &behaviour,
            Bytes::from_static(gemini_format::STREAM_ERROR_EVENT.as_bytes()),
        );
        let tracker = StreamTracker::start(Arc::clone(shared), index, Dialect::Gemini);
        let body = playback::body(steps, Some(tracker), shared.shutdown_signal());
        return sse_response(body, request_id);
    }
    let body = padded(
        gemini_format::body(&ctx, &completion).to_string(),
        &behaviour,
    );
    if !delay(shared, generation_time(&behaviour, &completion)).await {
        return error(503);
    }
    let mut resp = json_response(200, &Value::Null, request_id);
    *resp.body_mut() = broken_body(shared, &behaviour, body.clone()).unwrap_or(Body::from(body));
    resp
}

async fn models(
    State(state): State<MockState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let shared = &state.shared;
    let (index, _) = shared.record_request(&method, &uri, &headers, &body);
    let request_id = format!("req_mock{:08x}{index:016x}", shared.salt());
    let anthropic = headers.contains_key("anthropic-version") || headers.contains_key("x-api-key");
    if let Some(expected) = shared.expected_key() {
        let given = if anthropic {
            api_key(&headers)
        } else {
            bearer(&headers)
        };
        if given != Some(expected.as_str()) {
            return if anthropic {
                json_response(
                    401,
                    &anthropic_format::error_body(401, "", &request_id),
                    ("request-id", request_id),
                )
            } else {
                json_response(
                    401,
                    &openai_format::error_body(Dialect::OpenAi, 401, ""),
                    ("x-request-id", request_id),
                )
            };
        }
    }
    if anthropic {
        let data: Vec<Value> = LISTED_MODELS
            .iter()
            .map(|m| json!({"type": "model", "id": m, "display_name": m, "created_at": "2025-01-01T00:00:00Z"}))
            .collect();
        let body = json!({
            "data": data,
            "has_more": false,
            "first_id": LISTED_MODELS[0],
            "last_id": LISTED_MODELS[LISTED_MODELS.len() - 1]
        });
        return json_response(200, &body, ("request-id", request_id));
    }
    let data: Vec<Value> = LISTED_MODELS
        .iter()
        .map(|m| json!({"id": m, "object": "model", "created": 1_735_689_600u64, "owned_by": "mock-upstream"}))
        .collect();
    json_response(
        200,
        &json!({"object": "list", "data": data}),
        ("x-request-id", request_id),
    )
}

async fn not_found(
    State(state): State<MockState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let shared = &state.shared;
    let (index, _) = shared.record_request(&method, &uri, &headers, &body);
    let request_id = format!("req_mock{:08x}{index:016x}", shared.salt());
    let body = openai_format::invalid_request(
        format!("Invalid URL ({method} {})", uri.path()),
        "invalid_request_error",
        None,
        Value::Null,
    );
    json_response(404, &body, ("x-request-id", request_id))
}
