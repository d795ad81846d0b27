//! `POST /v1/embeddings` on the same relay as chat: the request is validated
//! (`switchyard_wire::embeddings`), its model must be an embedding model (`kind = "embedding"`),
//! the hold is the input's token bound × the input price of the dearest route, the key's limits
//! reserve the same bound, the OpenAI-dialect routes are tried in order with failover before the
//! answer (`attempts::open_embeddings`; Anthropic routes are skipped: Anthropic has no embeddings
//! API), and the settlement bills the upstream's reported input tokens (or the tokenizer's count
//! when it reports none) exactly once. The answer is the upstream's list as sent (float or base64
//! vectors untouched), with `usage.cost` added as chat answers carry it.

use std::sync::Arc;
use tokio::time::Instant;

use bytes::Bytes;
use serde_json::Value;
use switchyard_wire::embeddings::EmbeddingsRequest;
use switchyard_wire::openai::RequestError;
use switchyard_wire::usage::Usage;

use crate::auth::Caller;
use crate::config::{ModelKind, ProviderKind};
use crate::gateway::Gateway;
use crate::relay::admission::{self, Bound};
use crate::relay::attempts::{self, Opened};
use crate::relay::settlement::Settlement;
use crate::relay::tokens::{self, Prompt, PromptSource};
use crate::relay::{ChatReply, RelayError};
use crate::store::ledger::{EndReason, Nanos};

/// The input's text, for an estimate when the upstream reports no usage and the client left.
struct EmbeddingsPrompt(Arc<EmbeddingsRequest>);

impl PromptSource for EmbeddingsPrompt {
    fn prompt(&self) -> Prompt {
        let (texts, _) = self.0.texts();
        Prompt {
            text: texts.join("\n"),
            messages: 0,
        }
    }

    fn prompt_token_bound(&self) -> u64 {
        self.0.token_bound
    }
}

/// Serves `POST /embeddings` for `caller`.
pub(crate) async fn create(
    gw: &Arc<Gateway>,
    caller: Caller,
    ids: crate::relay::RequestIds,
    body: Bytes,
) -> Result<ChatReply, RelayError> {
    let started = Instant::now();
    let req = Arc::new(EmbeddingsRequest::parse(&body).map_err(RelayError::BadRequest)?);
    let model = admission::any_model_for(gw, &caller, &req.model)?;
    if model.kind != ModelKind::Embedding {
        return Err(RelayError::BadRequest(RequestError::new(
            "model",
            format!(
                "The model '{}' is not an embedding model; use /v1/chat/completions or /v1/responses.",
                req.model
            ),
        )));
    }
    let dialects: Vec<ProviderKind> = model
        .routes
        .iter()
        .filter_map(|r| gw.config.providers.get(r.provider()).map(|p| p.kind))
        .collect();
    if !dialects.iter().any(|k| k.speaks_openai()) {
        return Err(RelayError::BadRequest(RequestError::new(
            "model",
            format!(
                "No route of the model '{}' serves embeddings (Anthropic and Gemini routes have no OpenAI embeddings API).",
                req.model
            ),
        )));
    }
    // Input tokens only: the dearest input price of any route that can serve the request.
    let cost = model
        .routes
        .iter()
        .filter(|r| {
            gw.config
                .providers
                .get(r.provider())
                .is_some_and(|p| p.kind.speaks_openai())
        })
        .map(|r| r.prices.worst_case(req.token_bound, 0))
        .max()
        .unwrap_or(Nanos::ZERO);
    let bound = Bound {
        cost,
        tokens: req.token_bound,
    };
    let prompt = Arc::new(EmbeddingsPrompt(req.clone()));
    let mut settlement = admission::admit_bound(
        gw, &caller, &model, ids.ledger, bound, prompt, false, started,
    )
    .await?;
    settlement.meter.embeddings_api();
    let Opened::Json { body, served, .. } =
        attempts::open_embeddings(gw, &model, &req, &mut settlement, started, &ids.visible).await?
    else {
        let e =
            RelayError::UpstreamFailed("the upstream's answer is not an embeddings list".into());
        settlement.meter.failed(e.status(), &e.to_string());
        attempts::fail_settled(&mut settlement).await;
        return Err(e);
    };
    match complete(&body, &req, &mut settlement).await {
        Some(Ok(body)) => Ok(ChatReply::Json { body, served }),
        Some(Err(e)) => Err(e),
        None => {
            let e = RelayError::UpstreamFailed(
                "the upstream's answer is not an embeddings list".into(),
            );
            settlement.meter.failed(e.status(), &e.to_string());
            attempts::fail_settled(&mut settlement).await;
            Err(e)
        }
    }
}

/// Bills the answer (the upstream's `usage.prompt_tokens`, else the tokenizer's count of the
/// input), settles, and returns the body with `usage.cost` once its entry is durable.
async fn complete(
    body: &[u8],
    req: &Arc<EmbeddingsRequest>,
    settlement: &mut Settlement,
) -> Option<Result<Vec<u8>, RelayError>> {
    let mut v: Value = serde_json::from_slice(body).ok()?;
    if !v.get("data").is_some_and(Value::is_array) {
        return None;
    }
    if let Some(model) = v.get("model").and_then(Value::as_str) {
        settlement.meter.served_model(model);
    }
    settlement.meter.answered();
    let reported = v
        .get("usage")
        .and_then(|u| u.get("prompt_tokens"))
        .and_then(Value::as_u64);
    let prompt_tokens = match reported {
        Some(n) => n,
        None => {
            let model = settlement
                .meter
                .served_model_name()
                .unwrap_or(&req.model)
                .to_owned();
            let req = req.clone();
            let count = move || {
                let (texts, ids) = req.texts();
                texts.iter().map(|t| tokens::count(&model, t)).sum::<u64>() + ids
            };
            tokio::task::spawn_blocking(count).await.unwrap_or(0)
        }
    };
    settlement.meter.usage(Usage {
        prompt_tokens,
        ..Usage::default()
    });
    let settled = settlement.measure().await;
    let cost = settled.cost.total().to_string();
    let usage = v
        .as_object_mut()?
        .entry("usage")
        .or_insert_with(|| Value::Object(Default::default()));
    if !usage.is_object() {
        *usage = Value::Object(Default::default());
    }
    usage["prompt_tokens"] = settled.usage.prompt_tokens.into();
    usage["total_tokens"] = settled.usage.prompt_tokens.into();
    usage["cost"] = Value::String(cost);
    Some(match settlement.settle(EndReason::Stop, &settled).await {
        Ok(_) => Ok(serde_json::to_vec(&v).unwrap_or_default()),
        Err(_) => Err(RelayError::Unrecorded),
    })
}
