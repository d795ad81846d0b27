//! Keeping a conversation where its prompt cache is: which conversation a request continues, and
//! the route (provider or pooled upstream key, and model) that served its last turn, looked up in
//! this process (`Routing::bound`) and, with Redis configured, in the binding every instance
//! shares. A request is recognised as one turn of a conversation by, in order: the client's
//! `prompt_cache_key` (chat or Responses), Anthropic's `metadata.user_id` (Claude Code puts its
//! session there), an `x-session-id` header, or else a hash of the prompt's leading prefix (tools,
//! system text and the first user message), which every later turn repeats. The key is scoped
//! to the caller and the model. Only `balance` models with more than one route pay for any of
//! this: a `failover` model's order keeps a conversation on its first healthy route anyway, and
//! after a failover the operator's order, not the cache, decides where it goes back.

use serde_json::Value;
use sha2::{Digest, Sha256};
use switchyard_wire::openai::ChatRequest;

use crate::config::RouteId;
use crate::gateway::Gateway;
use crate::routing::AFFINITY_TTL;

/// The conversation `req` continues, as a key scoped to `caller` and `model`.
pub(crate) fn conversation(req: &ChatRequest, caller: &str, model: &str) -> String {
    let native = req.native.as_ref().map(|n| &n.body);
    let explicit = [
        req.body.get("prompt_cache_key"),
        native.and_then(|b| b.get("prompt_cache_key")),
        native.and_then(|b| b.pointer("/metadata/user_id")),
    ]
    .into_iter()
    .flatten()
    .find_map(|v| v.as_str().filter(|s| !s.is_empty()))
    .or(req.session.as_deref().filter(|s| !s.is_empty()));
    let mut h = Sha256::new();
    for part in [caller, "\0", model, "\0"] {
        h.update(part.as_bytes());
    }
    match explicit {
        Some(key) => {
            h.update(b"key\0");
            h.update(key.as_bytes());
        }
        None => prefix(req, &mut h),
    }
    hex::encode(&h.finalize()[..16])
}

/// What every turn of a conversation repeats: its tools, its leading system messages and its
/// first user message.
fn prefix(req: &ChatRequest, h: &mut Sha256) {
    h.update(b"prefix\0");
    let mut write = |v: &Value| {
        // Serialising a Value into a hasher cannot fail.
        let _ = serde_json::to_writer(HashWriter(h), v);
        h.update(b"\0");
    };
    if let Some(tools) = req.body.get("tools") {
        write(tools);
    }
    for m in req
        .body
        .get("messages")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        write(m);
        if m.get("role").and_then(Value::as_str) == Some("user") {
            break;
        }
    }
}

struct HashWriter<'a>(&'a mut Sha256);

impl std::io::Write for HashWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn shared_key(conversation: &str) -> String {
    format!("switchyard:affinity:{conversation}")
}

/// The route `conversation`'s last turn was served by, if its binding lives: this process's,
/// else the one every instance shares through Redis.
pub(crate) async fn bound(gw: &Gateway, conversation: &str) -> Option<RouteId> {
    if let Some(route) = gw.routing.bound(conversation) {
        return Some(route);
    }
    let shared = gw.limits.shared_get(&shared_key(conversation)).await?;
    shared.parse().ok()
}

/// `route` served this turn of `conversation`: the next turn goes there too, while it lives.
pub(crate) fn bind(gw: &Gateway, conversation: &str, route: &RouteId) {
    gw.routing.bind(conversation, route);
    gw.limits
        .shared_set(shared_key(conversation), route.to_string(), AFFINITY_TTL);
}
