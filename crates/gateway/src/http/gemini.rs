//! Google's Gemini API handlers, at the root as Google serves them (`GOOGLE_GEMINI_BASE_URL`
//! is a host): `POST /v1beta/models/{model}:generateContent`, `:streamGenerateContent` (`alt=sse`:
//! SSE; without it one JSON array, `application/json`), `:countTokens`, `GET /v1beta/models` and
//! `GET /v1beta/models/{model}` in Google's shape. A model name may hold `/`: the route takes the
//! rest of the path and splits it at its last `:`. The key comes in `x-goog-api-key`, the `key`
//! query parameter or a bearer token. Every error on these routes (the gateway's own
//! 401/402/404/429/503 included) is Google-shaped, `{"error":{"code","message","status"}}`; what
//! the translation to chat dropped is named in `x-switchyard-dropped`.

use std::borrow::Cow;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};
use switchyard_wire::gemini::error_body;
use switchyard_wire::gemini::inbound::Framing;

use super::{read_body, ApiError};
use crate::auth::{AuthError, Caller};
use crate::config::{ModelConfig, ModelKind};
use crate::gateway::Gateway;
use crate::relay::gemini;

/// The methods a model offers here, as `supportedGenerationMethods` names them.
const METHODS: [&str; 3] = ["generateContent", "streamGenerateContent", "countTokens"];

/// `name`'s value in a query string, percent-decoded (`+` is a space).
fn query_param<'a>(query: &'a str, name: &str) -> Option<Cow<'a, str>> {
    let value = query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == name).then_some(v)
    })?;
    if !value.contains(['%', '+']) {
        return Some(Cow::Borrowed(value));
    }
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok());
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok().map(Cow::Owned)
}

/// The caller, from `x-goog-api-key`, a bearer token or `?key=` (in that order).
async fn caller(gw: &Gateway, headers: &HeaderMap, query: &str) -> Result<Caller, ApiError> {
    let token = headers
        .get("x-goog-api-key")
        .and_then(|v| v.to_str().ok())
        .map(Cow::Borrowed)
        .or_else(|| super::bearer(headers).map(Cow::Borrowed))
        .or_else(|| query_param(query, "key"));
    match gw.auth.authenticate(token.as_deref()).await {
        Ok(c) => Ok(c),
        Err(AuthError::Missing) => Err(ApiError {
            message: "API key missing. Pass the key in the x-goog-api-key header, the key \
                      query parameter or an Authorization: Bearer header."
                .into(),
            ..ApiError::from(AuthError::Missing)
        }),
        Err(e) => Err(ApiError::from(e)),
    }
}

fn not_found(message: String) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "invalid_request_error",
        "not_found",
        message,
    )
}

/// What `action` answers with.
enum Answer {
    /// generateContent and streamGenerateContent: the relay's reply.
    Chat(crate::relay::ChatReply),
    /// countTokens.
    Count(Value),
}

/// The model and the method of `{model}:{method}` (split at the last `:`), or a 404 for a method
/// this API has not.
#[allow(clippy::result_large_err)] // the error is the response on its way out, as in `path_id`
fn target(rest: Result<Path<String>, PathRejection>) -> Result<(String, String), ApiError> {
    let rest = super::path_id(rest)?;
    match rest.rsplit_once(':') {
        Some((model, method)) if METHODS.contains(&method) && !model.is_empty() => {
            let model = model.strip_prefix("models/").unwrap_or(model);
            Ok((model.to_owned(), method.to_owned()))
        }
        _ => Err(not_found(format!(
            "Unknown method in 'models/{rest}': the methods are {}.",
            METHODS.join(", ")
        ))),
    }
}

/// `POST /v1beta/models/{model}:{method}`.
pub(super) async fn action(
    State(gw): State<Arc<Gateway>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    rest: Result<Path<String>, PathRejection>,
    body: Body,
) -> Response {
    let query = query.unwrap_or_default();
    let ids = super::request_ids_for(&headers);
    let request_id = ids.ledger.clone();
    let target = target(rest);
    let mut framing = None;
    let result = async {
        let (model, method) = match target {
            Ok(t) => t,
            Err(e) => return Err(super::refuse_unread(body, e)),
        };
        let caller = match caller(&gw, &headers, &query).await {
            Ok(c) => c,
            Err(e) => return Err(super::refuse_unread(body, e)),
        };
        let body = read_body(&gw, &headers, body).await?;
        if method == "countTokens" {
            return Ok(Answer::Count(
                gemini::count_tokens(&gw, &caller, &model, body).await?,
            ));
        }
        if method == "streamGenerateContent" {
            framing = Some(match query_param(&query, "alt").as_deref() {
                Some("sse") => Framing::Sse,
                _ => Framing::JsonArray,
            });
        }
        let reply = gemini::create(&gw, caller, ids, &model, framing, body).await?;
        Ok::<_, ApiError>(Answer::Chat(reply))
    }
    .await;
    let mut resp = match result {
        Ok(Answer::Count(v)) => {
            let mut resp = axum::Json(v).into_response();
            if let Ok(v) = HeaderValue::from_str(&request_id) {
                resp.headers_mut().insert("x-request-id", v);
            }
            resp
        }
        Ok(Answer::Chat(reply)) => super::reply(&gw, &headers, &request_id, Ok(reply)),
        Err(e) => super::reply(&gw, &headers, &request_id, Err(e)),
    };
    if resp.status().is_success() && framing == Some(Framing::JsonArray) {
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json; charset=UTF-8"),
        );
    }
    google_shaped(resp).await
}

/// A model as Google's `Model` resource describes it.
fn entry(m: &ModelConfig) -> Value {
    json!({
        "name": format!("models/{}", m.name),
        "baseModelId": m.name,
        "version": "1",
        "displayName": m.name,
        "description": format!("{} through Switchyard.", m.name),
        "inputTokenLimit": m.context_length,
        "outputTokenLimit": m.max_output_tokens,
        "supportedGenerationMethods": METHODS,
        "thinking": m.reasoning,
    })
}

/// `GET /v1beta/models`: the chat models this key may use.
pub(super) async fn list(
    State(gw): State<Arc<Gateway>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let resp = match caller(&gw, &headers, query.as_deref().unwrap_or_default()).await {
        Ok(caller) => {
            let models: Vec<Value> = gw
                .config
                .models
                .values()
                .filter(|m| m.kind == ModelKind::Chat && super::models::allowed(&caller, &m.name))
                .map(|m| entry(m))
                .collect();
            axum::Json(json!({ "models": models })).into_response()
        }
        Err(e) => e.into_response(),
    };
    google_shaped(resp).await
}

/// `GET /v1beta/models/{model}`.
pub(super) async fn retrieve(
    State(gw): State<Arc<Gateway>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    id: Result<Path<String>, PathRejection>,
) -> Response {
    let result = async {
        let caller = caller(&gw, &headers, query.as_deref().unwrap_or_default()).await?;
        let id = super::path_id(id)?;
        let name = id.strip_prefix("models/").unwrap_or(&id);
        match gw.config.models.get(name) {
            Some(m) if m.kind == ModelKind::Chat && super::models::allowed(&caller, name) => {
                Ok(entry(m))
            }
            _ => Err(not_found(format!(
                "models/{name} is not found for API version v1beta, or is not supported for \
                 generateContent. Call ListModels to see the list of available models and their \
                 supported methods."
            ))),
        }
    }
    .await;
    let resp = match result {
        Ok(v) => axum::Json(v).into_response(),
        Err(e) => e.into_response(),
    };
    google_shaped(resp).await
}

/// An error response rewritten into Google's error shape (status and headers kept).
async fn google_shaped(resp: Response) -> Response {
    if resp.status().is_success() {
        return resp;
    }
    super::errors::reshaped_error(resp, "application/json; charset=UTF-8", error_body).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_parameters_are_found_and_decoded() {
        assert_eq!(
            query_param("alt=sse&key=abc", "key").as_deref(),
            Some("abc")
        );
        assert_eq!(
            query_param("alt=sse&key=abc", "alt").as_deref(),
            Some("sse")
        );
        assert_eq!(query_param("key=a%2Db+c", "key").as_deref(), Some("a-b c"));
        assert_eq!(query_param("key=%zz%4", "key").as_deref(), Some("%zz%4"));
        assert_eq!(query_param("keys=x", "key"), None);
        assert_eq!(query_param("", "key"), None);
        assert_eq!(query_param("key", "key").as_deref(), Some(""));
    }
}
