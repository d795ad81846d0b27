//! `GET /models` and `GET /models/{id}`: the models a key may use, each with the fields the OpenAI
//! SDKs need (`id`, `object: "model"`, `created`, `owned_by`) and what the model offers, as
//! OpenRouter's list says it: `kind` (`chat` | `embedding`), `context_length`, `max_output_tokens`
//! (chat models), `pricing` (USD per token as decimal strings, `prompt` / `completion` /
//! `input_cache_read`, and the configured per-million prices), `modalities` (input / output) and
//! `reasoning`, plus `capabilities` (tools, vision, reasoning, streaming) that agents read. A request
//! that carries `anthropic-version` (Claude Code, the Anthropic SDKs) gets Anthropic's shape
//! (`type: "model"`, `display_name`, `created_at`, `has_more`, with `max_input_tokens` and
//! `max_tokens`). A model the key may not use does not exist for it (404 `model_not_found`).

use std::sync::Arc;

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use rust_decimal::Decimal;
use serde_json::{json, Value};

use super::{caller, ApiError};
use crate::auth::Caller;
use crate::config::{ModelConfig, ModelKind};
use crate::gateway::Gateway;

/// A price per 1M tokens as a price per token, exact (`0.50` -> `"0.0000005"`).
fn per_token(per_million: Decimal) -> String {
    (per_million / Decimal::from(1_000_000))
        .normalize()
        .to_string()
}

/// The list entry of `model`.
fn entry(model: &ModelConfig) -> Value {
    let p = &model.prices;
    let mut pricing = json!({
        "prompt": per_token(p.input),
        "completion": per_token(p.output),
        "prompt_per_million": p.input.normalize().to_string(),
        "completion_per_million": p.output.normalize().to_string(),
    });
    if let Some(cached) = p.cached_input {
        pricing["input_cache_read"] = json!(per_token(cached));
        pricing["input_cache_read_per_million"] = json!(cached.normalize().to_string());
    }
    // Writes are shown where they cost more than plain input (Anthropic's).
    if let Some(write) = p.cache_write.filter(|w| *w != p.input) {
        pricing["input_cache_write"] = json!(per_token(write));
        pricing["input_cache_write_per_million"] = json!(write.normalize().to_string());
    }
    if let Some(write) = p.cache_write_1h.filter(|w| *w != p.input) {
        pricing["input_cache_write_1h_per_million"] = json!(write.normalize().to_string());
    }
    let max_output = match model.kind {
        ModelKind::Chat => json!(model.max_output_tokens),
        ModelKind::Embedding => Value::Null,
    };
    let chat = model.kind == ModelKind::Chat;
    json!({
        "id": model.name,
        "object": "model",
        "created": 0,
        "owned_by": "switchyard",
        "kind": model.kind.as_str(),
        "context_length": model.context_length,
        "max_output_tokens": max_output,
        "pricing": pricing,
        "modalities": {"input": model.modalities.input, "output": model.modalities.output},
        "reasoning": model.reasoning,
        "capabilities": {
            "chat": chat,
            "streaming": chat,
            "tools": chat,
            "reasoning": model.reasoning,
            "vision": model.modalities.input.iter().any(|m| m == "image"),
        },
    })
}

/// The entry of `model` in Anthropic's shape (`GET /v1/models` with `anthropic-version`).
fn anthropic_entry(model: &ModelConfig) -> Value {
    json!({
        "type": "model",
        "id": model.name,
        "display_name": model.name,
        "created_at": "1970-01-01T00:00:00Z",
        "max_input_tokens": model.context_length,
        "max_tokens": model.max_output_tokens,
    })
}

fn wants_anthropic(headers: &HeaderMap) -> bool {
    headers.contains_key("anthropic-version")
}

/// Whether `caller` may use the model `name` (also read by the Gemini model list).
pub(super) fn allowed(caller: &Caller, name: &str) -> bool {
    caller
        .models
        .as_ref()
        .is_none_or(|allowed| allowed.iter().any(|m| m == name))
}

/// `GET /models`.
pub(super) async fn list(State(gw): State<Arc<Gateway>>, headers: HeaderMap) -> Response {
    let caller = match caller(&gw, &headers).await {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    let models = gw.config.models.values().filter(|m| {
        allowed(&caller, &m.name) && !(wants_anthropic(&headers) && m.kind != ModelKind::Chat)
    });
    if wants_anthropic(&headers) {
        let data: Vec<Value> = models.map(|m| anthropic_entry(m)).collect();
        let first = data.first().map(|m| m["id"].clone()).unwrap_or(Value::Null);
        let last = data.last().map(|m| m["id"].clone()).unwrap_or(Value::Null);
        return axum::Json(
            json!({"data": data, "has_more": false, "first_id": first, "last_id": last}),
        )
        .into_response();
    }
    let data: Vec<Value> = models.map(|m| entry(m)).collect();
    axum::Json(json!({"object": "list", "data": data})).into_response()
}

/// `GET /models/{id}`.
pub(super) async fn retrieve(
    State(gw): State<Arc<Gateway>>,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
) -> Response {
    let result = async {
        let caller = caller(&gw, &headers).await?;
        let id = super::path_id(id)?;
        match gw.config.models.get(&id) {
            Some(m) if allowed(&caller, &id) && wants_anthropic(&headers) => Ok(anthropic_entry(m)),
            Some(m) if allowed(&caller, &id) => Ok(entry(m)),
            _ => Err(ApiError {
                param: Some("model".into()),
                ..ApiError::new(
                    StatusCode::NOT_FOUND,
                    "invalid_request_error",
                    "model_not_found",
                    format!("The model '{id}' does not exist or you do not have access to it."),
                )
            }),
        }
    }
    .await;
    match result {
        Ok(v) => axum::Json(v).into_response(),
        Err(e) => e.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    #[test]
    fn per_token_prices_are_exact_decimal_strings() {
        let d = |s| Decimal::from_str(s).unwrap();
        assert_eq!(per_token(d("0.50")), "0.0000005");
        assert_eq!(per_token(d("2.19")), "0.00000219");
        assert_eq!(per_token(d("0")), "0");
        assert_eq!(per_token(d("1000000")), "1");
    }
}
