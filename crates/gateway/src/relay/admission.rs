//! Admission: which model a caller may use, and the hold on the caller's money taken before any
//! upstream is called. Returns the settlement guard that will release or settle that hold.

use std::sync::Arc;
use std::time::Instant;

use crate::app::Gateway;
use crate::auth::Caller;
use crate::config::ModelConfig;
use crate::relay::settlement::{Admission, Settlement};
use crate::relay::tokens::PromptSource;
use crate::relay::RelayError;

/// The configured model `name`, if it exists and `caller` may use it.
pub fn model_for(
    gw: &Gateway,
    caller: &Caller,
    name: &str,
) -> Result<Arc<ModelConfig>, RelayError> {
    let model = gw
        .config
        .models
        .get(name)
        .ok_or_else(|| RelayError::UnknownModel(name.to_owned()))?
        .clone();
    if let Some(allowed) = &caller.models {
        if !allowed.iter().any(|m| m == name) {
            return Err(RelayError::ModelNotAllowed(name.to_owned()));
        }
    }
    Ok(model)
}

/// Admits a request: refuses it when the caller cannot pay, and returns its settlement guard.
pub async fn admit(
    gw: &Gateway,
    caller: &Caller,
    model: &ModelConfig,
    request_id: String,
    prompt: Arc<dyn PromptSource + Send + Sync>,
    stream: bool,
    started: Instant,
) -> Result<Settlement, RelayError> {
    if caller.balance.0 <= 0 {
        return Err(RelayError::InsufficientBalance);
    }
    Ok(Settlement::new(Admission {
        ledger: gw.ledger.clone(),
        request_id,
        key_id: caller.id.clone(),
        requested_model: model.name.clone(),
        prices: model.prices.clone(),
        prompt,
        stream,
        started,
    }))
}
