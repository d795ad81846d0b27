//! One request end to end, as straight-line code: validate, admit, pick the routes, try each until
//! one answers (failing over only before any content reaches the client: at most keep-alive
//! comments of an early commit, `early_commit`), then stream or return the answer with its cost,
//! and settle the ledger exactly once through the settlement guard.

pub mod admission;
pub(crate) mod affinity;
pub(crate) mod attempts;
pub(crate) mod chat_stream;
pub(crate) mod client_encoder;
pub(crate) mod completions;
pub(crate) mod early_commit;
pub(crate) mod embeddings;
pub(crate) mod gemini;
pub(crate) mod messages;
pub(crate) mod meter;
pub(crate) mod responses;
pub(crate) mod settlement;
pub(crate) mod tags;
pub(crate) mod tokens;
pub(crate) mod upstream_pump;

use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// An answer's body as it comes: byte chunks, or the reason the stream broke.
pub(crate) type ByteStream =
    std::pin::Pin<Box<dyn futures_util::Stream<Item = Result<bytes::Bytes, String>> + Send>>;

use bytes::Bytes;
use futures_util::Stream;
use serde_json::Value;
use switchyard_wire::anthropic;
use switchyard_wire::finish::FinishReason;
use switchyard_wire::openai::{ChatRequest, NativeBody, NativeDialect, RequestError};

use crate::auth::Caller;
use crate::config::RouteId;
use crate::gateway::Gateway;
use crate::relay::attempts::Opened;
use crate::relay::chat_stream::{ChatStream, Client};
use crate::relay::client_encoder::Encoder;
use crate::relay::early_commit::{Outcome, Started};
use crate::relay::settlement::Settlement;
use crate::store::ledger::EndReason;

/// Why a request could not be served. The HTTP edge turns each into its status and body.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("{0}")]
    BadRequest(RequestError),
    #[error("The model '{0}' does not exist or you do not have access to it.")]
    UnknownModel(String),
    #[error("This API key is not allowed to use the model '{0}'.")]
    ModelNotAllowed(String),
    #[error("This API key has insufficient balance for this request. Top up the key and retry.")]
    InsufficientBalance,
    #[error(
        "This API key has reached its {0} budget. It renews at the start of the next {0} (UTC)."
    )]
    BudgetExceeded(&'static str),
    /// A quota window of the key (`5h`) is used up until it resets.
    #[error("This API key has used up its {window} quota; it frees when the window ends (see retry-after).")]
    QuotaExceeded {
        window: String,
        retry_after: Option<Duration>,
    },
    #[error("The key store is not reachable; retry shortly.")]
    LedgerUnavailable,
    /// The answer's entry could be written neither to the database nor to the journal: the
    /// request is refused and never billed.
    #[error("The answer could not be recorded (the ledger and its journal refused the write), so it is not returned and not billed; retry shortly.")]
    Unrecorded,
    /// The key's own requests- or tokens-per-minute limit, or its concurrency limit.
    #[error("{0}")]
    RateLimited(Box<crate::limits::Refused>),
    /// The shared rate-limit store (Redis) is unreachable and `redis_failure = "closed"`.
    #[error("The rate-limit store is not reachable; retry shortly.")]
    LimitsUnavailable,
    /// The upstream refused the request itself (a 4xx that another route would refuse too).
    #[error("{}", .0.message)]
    UpstreamRejected(Box<Rejected>),
    #[error("Every upstream for this model is rate limited. Retry after the indicated delay.")]
    UpstreamRateLimited { retry_after: Option<Duration> },
    #[error("The upstream did not answer in time.")]
    UpstreamTimeout,
    #[error("Every upstream for this model failed: {0}")]
    UpstreamFailed(String),
    /// Every route of the model is cooling down after repeated failures (breakers open).
    #[error("No healthy upstream for this model right now; retry after the indicated delay.")]
    NoHealthyUpstream { retry_after: Option<Duration> },
}

impl RelayError {
    /// The HTTP status its client gets (the same as `http::errors` answers with), for the
    /// request log.
    pub fn status(&self) -> u16 {
        match self {
            RelayError::BadRequest(_) => 400,
            RelayError::UnknownModel(_) => 404,
            RelayError::ModelNotAllowed(_) => 403,
            RelayError::InsufficientBalance | RelayError::BudgetExceeded(_) => 402,
            RelayError::UpstreamRejected(r) => r.status,
            RelayError::UpstreamRateLimited { .. }
            | RelayError::RateLimited(_)
            | RelayError::QuotaExceeded { .. } => 429,
            RelayError::LedgerUnavailable
            | RelayError::Unrecorded
            | RelayError::LimitsUnavailable
            | RelayError::NoHealthyUpstream { .. } => 503,
            RelayError::UpstreamTimeout => 504,
            RelayError::UpstreamFailed(_) => 502,
        }
    }
}

/// An error as its client reads it: the OpenAI error object's `type`, `code`, `param` and
/// `message`. The same words whether they come as an HTTP error body (`http::errors` adds the
/// status and headers) or, once a stream committed early, as an in-stream error event.
#[derive(Debug, Clone, PartialEq)]
pub struct ErrorWords {
    pub kind: &'static str,
    pub code: Value,
    pub param: Option<String>,
    pub message: String,
}

impl RelayError {
    /// What the client is told (see `ErrorWords`).
    pub fn words(self) -> ErrorWords {
        let message = self.to_string();
        let words = |kind: &'static str, code: &str, param: Option<&str>| ErrorWords {
            kind,
            code: Value::String(code.to_owned()),
            param: param.map(str::to_owned),
            message: message.clone(),
        };
        match self {
            RelayError::BadRequest(r) => ErrorWords {
                kind: "invalid_request_error",
                code: Value::Null,
                param: r.param,
                message: r.message,
            },
            RelayError::UnknownModel(_) => {
                words("invalid_request_error", "model_not_found", Some("model"))
            }
            RelayError::ModelNotAllowed(_) => {
                words("permission_error", "model_not_allowed", Some("model"))
            }
            RelayError::InsufficientBalance | RelayError::BudgetExceeded(_) => {
                words("insufficient_quota", "insufficient_quota", None)
            }
            RelayError::UpstreamRejected(r) => ErrorWords {
                kind: "invalid_request_error",
                code: r.code,
                param: r.param,
                message: r.message,
            },
            RelayError::UpstreamRateLimited { .. } | RelayError::RateLimited(_) => {
                words("rate_limit_error", "rate_limit_exceeded", None)
            }
            RelayError::QuotaExceeded { .. } => {
                words("rate_limit_error", "quota_window_exceeded", None)
            }
            RelayError::LedgerUnavailable | RelayError::LimitsUnavailable => {
                words("service_unavailable", "service_unavailable", None)
            }
            RelayError::Unrecorded => words("service_unavailable", "not_recorded", None),
            RelayError::UpstreamTimeout => words("timeout_error", "upstream_timeout", None),
            RelayError::UpstreamFailed(_) => words("upstream_error", "upstream_error", None),
            RelayError::NoHealthyUpstream { .. } => {
                words("service_unavailable", "no_healthy_upstream", None)
            }
        }
    }
}

/// An upstream's refusal of the request itself, passed on to the client.
#[derive(Debug)]
pub struct Rejected {
    pub status: u16,
    pub message: String,
    pub param: Option<String>,
    pub code: Value,
}

/// Facts about how a request was served, sent back as response headers.
#[derive(Debug, Clone)]
pub struct Served {
    /// The route that served it; `None` for a background response, answered before one is chosen.
    pub route: Option<RouteId>,
    pub attempts: u32,
    /// The key's rate limits after this request, when it has any.
    pub rate: Option<crate::limits::Quota>,
    /// What the serving route's dialect could not carry and the translation left out (sent as
    /// `x-switchyard-dropped`), e.g. `tools.4:web_search`.
    pub dropped: Vec<String>,
}

/// A successful answer.
pub enum ChatReply {
    Json {
        body: Vec<u8>,
        served: Served,
    },
    Stream {
        body: Box<dyn Stream<Item = Bytes> + Send + Unpin>,
        served: Served,
    },
    /// A stream that committed before its first upstream event (`early_commit`): the route that
    /// will serve it is not known yet, so only the key's rate limits go out as headers.
    Committed {
        body: Box<dyn Stream<Item = Bytes> + Send + Unpin>,
        rate: Option<crate::limits::Quota>,
    },
}

/// The ids of one request: `ledger` is the gateway's own unique id (the ledger's), `visible` the
/// one its client sees as `x-request-id` (the client's valid id, else `ledger`), sent upstream.
#[derive(Debug, Clone)]
pub struct RequestIds {
    pub ledger: String,
    pub visible: String,
    /// The client's W3C `traceparent`, the parent of the request's span when OTLP export is on.
    pub traceparent: Option<String>,
    /// The client's `x-session-id`: the conversation the request continues (`relay::affinity`).
    pub session: Option<String>,
    /// The client's `x-switchyard-tags` (`relay::tags`), as sent.
    pub tags: Option<String>,
}

/// Whether a route of `dialect` speaks `native` (the client's own dialect), so that the client's
/// body goes up as it came and the answer comes back as it was sent.
pub(crate) fn speaks_natively(
    dialect: crate::config::ProviderKind,
    native_responses: bool,
    native: NativeDialect,
) -> bool {
    use crate::config::ProviderKind as K;
    match native {
        NativeDialect::Messages => dialect == K::Anthropic,
        NativeDialect::Gemini => dialect == K::Gemini,
        NativeDialect::Responses => native_responses && dialect == K::OpenAi,
    }
}

/// Serves `POST /chat/completions` for `caller`.
pub async fn chat(
    gw: &Arc<Gateway>,
    caller: Caller,
    ids: RequestIds,
    body: Bytes,
) -> Result<ChatReply, RelayError> {
    chat_for(gw, caller, ids, body, None, Encoder::Chat).await
}

/// Serves a chat request; `native` is the client's own request when `body` is its translation
/// to chat (`relay::messages`, `relay::gemini`): routes of that dialect are sent it as it came,
/// and when one of them serves it the reply is the upstream's own body or events; otherwise
/// `encoder` writes the chat engine's answer in the client's API.
pub(crate) async fn chat_for(
    gw: &Arc<Gateway>,
    caller: Caller,
    ids: RequestIds,
    body: Bytes,
    native: Option<NativeBody>,
    encoder: Encoder,
) -> Result<ChatReply, RelayError> {
    let started = Instant::now();
    let mut req = ChatRequest::parse(&body).map_err(RelayError::BadRequest)?;
    req.native = native;
    req.session = ids.session.clone();
    chat_parsed(gw, caller, ids, Arc::new(req), started, encoder).await
}

/// Serves a parsed chat request; `encoder` writes the answer in the client's API (and files the
/// request by it in the request log), unless a route of the client's own dialect serves a request
/// with a `native` body: that route's answer then passes through.
pub(crate) async fn chat_parsed(
    gw: &Arc<Gateway>,
    caller: Caller,
    ids: RequestIds,
    req: Arc<ChatRequest>,
    started: Instant,
    encoder: Encoder,
) -> Result<ChatReply, RelayError> {
    let client_dialect = req.native.as_ref().map(|n| n.dialect);
    let tags = tags::request_tags(ids.tags.as_deref(), &req).map_err(RelayError::BadRequest)?;
    let model = admission::model_for(gw, &caller, &req.model)?;
    let mut settlement = admission::admit(
        gw,
        &caller,
        &model,
        ids.ledger,
        req.clone(),
        req.stream,
        started,
    )
    .await?;
    encoder.mark(&mut settlement.meter);
    settlement.tagged(tags);
    let responses_api = encoder.is_responses();
    settlement.traced(
        gw.otlp.as_ref(),
        ids.traceparent.as_deref(),
        &req,
        responses_api,
    );
    if !req.stream {
        return match attempts::open(gw, &model, &req, &mut settlement, started, &ids.visible)
            .await?
        {
            Opened::Json {
                body,
                native: upstream_native,
                served,
            } => match complete_json(
                &body,
                upstream_native.as_deref().zip(client_dialect),
                &mut settlement,
                &encoder,
            )
            .await
            {
                Some(Ok(body)) => Ok(ChatReply::Json { body, served }),
                Some(Err(e)) => Err(e),
                None => {
                    let e = RelayError::UpstreamFailed(
                        "the upstream's answer is not a chat completion".into(),
                    );
                    settlement.meter.failed(e.status(), &e.to_string());
                    attempts::fail_settled(&mut settlement).await;
                    Err(e)
                }
            },
            Opened::Stream { .. } => Err(RelayError::UpstreamFailed(
                "the upstream answered with a stream".into(),
            )),
        };
    }
    let (rate, committed) = (settlement.rate, settlement.meter.committed_flag());
    let commit_after = model.commit_after(&gw.config.routing);
    let opening = early_commit::opening(
        gw.clone(),
        model,
        req.clone(),
        settlement,
        started,
        ids.visible,
    );
    let include_usage = req.include_usage;
    let relay = {
        let (gw, encoder) = (gw.clone(), encoder.clone());
        move |settlement, upstream: attempts::UpstreamStream| -> early_commit::BodyStream {
            let client = Client {
                passthrough: client_dialect.filter(|_| upstream.native),
                encoder: encoder.clone(),
                include_usage,
            };
            let stream = ChatStream::new(
                upstream,
                settlement,
                client,
                gw.config.keep_alive,
                Some(gw.clone()),
            );
            Box::new(Box::pin(stream.into_body()))
        }
    };
    match early_commit::open_or_commit(opening, commit_after, committed).await {
        Started::Now(_, Err(e)) => Err(e),
        Started::Now(settlement, Ok((upstream, served))) => Ok(ChatReply::Stream {
            body: relay(settlement, upstream),
            served,
        }),
        Started::Committed(opening) => {
            let ping = encoder.keep_alive_frame();
            let then: early_commit::Then = Box::new(move |outcome| match outcome {
                Outcome::Opened(settlement, Ok((upstream, _))) => relay(settlement, upstream),
                Outcome::Opened(_, Err(e)) => early_commit::error_ending(e.words(), encoder),
                Outcome::Shutdown => {
                    early_commit::error_ending(early_commit::shutdown_words(), encoder)
                }
            });
            let (keep_alive, end) = (gw.config.keep_alive, &gw.end_streams);
            Ok(ChatReply::Committed {
                body: early_commit::body(opening, (keep_alive, ping), end, then),
                rate,
            })
        }
    }
}

/// The tokenizer's estimate of a translated request's prompt (`chat_body`, its chat translation:
/// system, turns, tool results; tool schemas are not counted), for the count-tokens endpoints of
/// other dialects. The model must exist and be allowed for the key.
pub(crate) async fn count_prompt_tokens(
    gw: &Arc<Gateway>,
    caller: &Caller,
    model: &str,
    chat_body: &Value,
) -> Result<u64, RelayError> {
    admission::model_for(gw, caller, model)?;
    let chat_body = serde_json::to_vec(chat_body).unwrap_or_default();
    let req = ChatRequest::parse(&chat_body).map_err(RelayError::BadRequest)?;
    let prompt = tokens::PromptSource::prompt(&req);
    let model = model.to_owned();
    tokio::task::spawn_blocking(move || tokens::prompt_tokens(&model, &prompt))
        .await
        .map_err(|_| RelayError::UpstreamFailed("the token count failed".into()))
}

/// A non-streamed answer: adds `usage.cost`, settles, and returns the body to send once its
/// entry is durable. `Err` when the entry could not be made durable. With `native` (a route's
/// own answer in the client's dialect, e.g. an Anthropic Message for a Messages request) `body`
/// is still what is metered, but the body sent is `native` as it came, its usage gaining the cost.
async fn complete_json(
    body: &[u8],
    native: Option<(&[u8], NativeDialect)>,
    settlement: &mut Settlement,
    encoder: &Encoder,
) -> Option<Result<Vec<u8>, RelayError>> {
    let mut v: Value = serde_json::from_slice(body).ok()?;
    if v.get("error").is_some() || !v.get("choices").is_some_and(Value::is_array) {
        return None;
    }
    if let Some(model) = v.get("model").and_then(Value::as_str) {
        settlement.meter.served_model(model);
    }
    settlement.meter.answered();
    settlement.meter.chat_value(&v);
    // An upstream's own spelling (DeepSeek's, an unknown one) is renamed for the client.
    for c in v["choices"].as_array_mut().into_iter().flatten() {
        let renamed = c
            .get("finish_reason")
            .and_then(Value::as_str)
            .map(FinishReason::from_openai)
            .filter(|r| c["finish_reason"] != r.as_openai());
        if let Some(r) = renamed {
            c["finish_reason"] = Value::from(r.as_openai());
        }
    }
    let end = settlement.meter.finish_reason().unwrap_or(EndReason::Stop);
    let settled = settlement.measure().await;
    let cost = settled.cost.total().to_string();
    match v.get_mut("usage") {
        Some(u) if u.is_object() => settled.usage.merge_into(u, Some(&cost)),
        _ => v["usage"] = settled.usage.to_openai(Some(&cost)),
    }
    let native = native.and_then(|(n, dialect)| match dialect {
        NativeDialect::Messages => anthropic::inbound::with_usage_cost(n, &cost),
        NativeDialect::Gemini => switchyard_wire::usage::with_cost_in(n, "usageMetadata", &cost),
        NativeDialect::Responses => switchyard_wire::usage::with_cost_in(n, "usage", &cost),
    });
    Some(match settlement.settle(end, &settled).await {
        Ok(_) => Ok(match native {
            Some(native) => native,
            None => encoder.whole(&v).await,
        }),
        Err(_) => Err(RelayError::Unrecorded),
    })
}

/// Prompt text for token estimates, derived from the request on demand.
impl tokens::PromptSource for ChatRequest {
    fn prompt(&self) -> tokens::Prompt {
        tokens::Prompt {
            text: self.prompt_text(),
            messages: self.message_count(),
        }
    }

    fn prompt_token_bound(&self) -> u64 {
        admission::chat_prompt_bound(self)
    }

    fn max_output_tokens(&self) -> Option<u64> {
        self.max_tokens
    }

    fn messages(&self) -> Value {
        self.body.get("messages").cloned().unwrap_or(Value::Null)
    }
}
