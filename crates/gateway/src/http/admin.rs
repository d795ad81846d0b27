//! Key management over HTTP: the `/admin/keys` and `/admin/usage` routes (admin key only) and
//! `GET /v1/key`, where a caller sees its own key, with `/v1/key/usage` and `/v1/key/requests`
//! (its own usage report and event log: the admin queries narrowed to the caller's key);
//! `POST /admin/reload` (the config file again). With no `admin_key` configured the admin routes
//! answer 403; a wrong or missing admin key gets 401. Changes apply at once: the authenticator and
//! the key's account adopt the new row.
//!
//! Money in requests is a decimal string in USD (`"2.50"`; a JSON number is read by its decimal
//! text, never as a float); money in responses is always a decimal string.

// `ApiError` is the response on its way out; these are cold admin paths, so it is not boxed.
#![allow(clippy::result_large_err)]

mod provider_health;

use std::sync::Arc;

use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde_json::{json, Map, Value};

use crate::config::CaptureConfig;
use crate::gateway::{Gateway, Live, ReloadError};
use crate::store::ledger::periods::{parse_duration, parse_instant};
use crate::store::ledger::{
    now_ms, parse_usd, AmountRule, Budget, BudgetPeriod, GroupBy, KeyRecord, KeyUpdate,
    LedgerError, Nanos, NewKey, RequestQuery, UsageQuery, MAX_USD,
};

use super::ApiError;

/// Adds the admin key routes and `GET {prefix}/key` to `app`. Every admin route is behind
/// `admin_gate`: the admin key is checked before a byte of the body is read.
pub(super) fn routes(mut app: Router<Live>, live: &Live) -> Router<Live> {
    let admin = Router::new()
        .route("/admin/keys", get(list_keys).post(create_key))
        .route(
            "/admin/keys/{id}",
            get(show_key).patch(update_key).delete(revoke_key),
        )
        .route(
            "/admin/keys/{id}/responses",
            get(key_responses).delete(delete_key_responses),
        )
        .route("/admin/usage", get(usage))
        .route("/admin/requests", get(requests))
        .route("/admin/requests/{id}", get(request_detail))
        .route(
            "/admin/requests/{id}/capture",
            axum::routing::delete(delete_capture),
        )
        .route("/admin/providers", get(provider_health::providers))
        .route("/admin/reload", post(reload))
        .route_layer(axum::middleware::from_fn_with_state(
            live.clone(),
            admin_gate,
        ));
    app = app.merge(admin);
    for p in super::PREFIXES {
        app = app
            .route(&format!("{p}/key"), get(own_key))
            .route(&format!("{p}/key/usage"), get(own_usage))
            .route(&format!("{p}/key/requests"), get(own_requests));
    }
    app
}

/// `POST /admin/reload`: reads the config file again and applies it (200: what changed, what
/// needs a restart), or refuses it (400 with the reason and line; the current config stays).
async fn reload(State(live): State<Live>) -> Response {
    match live.reload().await {
        Ok(r) => axum::Json(json!({
            "object": "config.reload",
            "generation": r.generation,
            "changed": !r.nothing_changed(),
            "providers": r.providers,
            "models": r.models,
            "routes": r.routes,
            "settings": r.settings,
            "needs_restart": r.needs_restart,
        }))
        .into_response(),
        Err(e) => {
            let code = match &e {
                ReloadError::NoConfigFile => "no_config_file",
                ReloadError::Config(_) => "invalid_config",
                ReloadError::Secrets(_) => "unresolved_secret",
            };
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                code,
                format!("The config was not reloaded; the current one stays. {e}"),
            )
            .into_response()
        }
    }
}

/// In front of every admin route: refuses the request unless it carries the admin key, before
/// its body is read (a stranger cannot make the gateway wait for or buffer a body), then reads
/// the body within the body-read timeout and hands it on.
async fn admin_gate(
    State(gw): State<Arc<Gateway>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let (parts, body) = req.into_parts();
    let client = parts
        .extensions
        .get::<crate::http::ClientAddr>()
        .map(|c| c.0);
    if let Some(addr) = client {
        if let Err(wait) = gw.admin_guard().admit(addr) {
            let e = ApiError {
                retry_after: Some(wait.as_secs().max(1)),
                ..ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "rate_limit_error",
                    "admin_locked_out",
                    "Too many failed admin authentications from this address; retry after the indicated delay.",
                )
            };
            return super::refuse_unread(body, e).into_response();
        }
    }
    if let Err(e) = require_admin(&gw, &parts.headers) {
        if let (Some(addr), StatusCode::UNAUTHORIZED) = (client, e.status) {
            // Each failure is answered later than the last: guessing cannot go at full speed.
            let server = &gw.config.server;
            let wait =
                gw.admin_guard()
                    .failed(addr, server.admin_lockout_after, server.admin_lockout);
            tokio::time::sleep(wait).await;
        }
        // The body is read and thrown away behind the 401 (bounded), so it is not lost to a reset.
        return super::refuse_unread(body, e).into_response();
    }
    if let Some(addr) = client {
        gw.admin_guard().succeeded(addr);
    }
    match super::read_body(&gw, &parts.headers, body).await {
        Ok(bytes) => {
            let req = axum::extract::Request::from_parts(parts, axum::body::Body::from(bytes));
            next.run(req).await
        }
        Err(e) => e.into_response(),
    }
}

/// Refuses the request unless it carries the configured admin key (compared in constant time).
pub(super) fn require_admin(gw: &Gateway, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(expected) = gw.admin_key.as_deref() else {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "permission_error",
            "admin_disabled",
            "The admin API is disabled: no admin_key is configured. Set admin_key in the config (e.g. admin_key = \"env:SWITCHYARD_ADMIN_KEY\") and restart.",
        ));
    };
    let given = super::bearer(headers).unwrap_or("").trim();
    let same = given.len() == expected.len()
        && given
            .bytes()
            .zip(expected.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0;
    if same {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "invalid_request_error",
            "invalid_admin_key",
            "This route needs the admin key as 'Authorization: Bearer ADMIN_KEY'.",
        ))
    }
}

fn bad(param: &str, message: impl Into<String>) -> ApiError {
    ApiError {
        param: Some(param.to_owned()),
        ..ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "invalid_value",
            message,
        )
    }
}

fn no_such_key(id: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "invalid_request_error",
        "key_not_found",
        format!("No key with id '{id}'."),
    )
}

fn ledger_error(e: impl Into<LedgerError>) -> ApiError {
    match e.into() {
        LedgerError::NoSuchKey(id) => no_such_key(&id),
        LedgerError::BalanceOutOfRange => bad(
            "credits",
            format!("The balance would be more than {MAX_USD} USD."),
        ),
        _ => ApiError::unavailable("The database is not reachable; retry shortly."),
    }
}

/// A key as the admin API shows it; `reserved` is what every instance holds for it when holds are
/// shared, what this process holds otherwise.
fn key_body(gw: &Gateway, k: &KeyRecord) -> Value {
    let reserved = if gw.ledger.shares_holds() {
        k.shared_reserved
    } else {
        gw.ledger.account_reserved(&k.id).unwrap_or(Nanos::ZERO)
    };
    k.to_json(reserved)
}

/// The path's key id, when that key exists; else its 404.
async fn known_key(
    gw: &Gateway,
    id: Result<Path<String>, PathRejection>,
) -> Result<String, ApiError> {
    let id = super::path_id(id)?;
    gw.ledger
        .key(&id)
        .await
        .map_err(ledger_error)?
        .ok_or_else(|| no_such_key(&id))?;
    Ok(id)
}

/// `GET /admin/keys/{id}/responses`: the key's stored Responses conversations (id, model,
/// status, when), newest first; never their content.
async fn key_responses(
    State(gw): State<Arc<Gateway>>,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
) -> Response {
    let result = async {
        require_admin(&gw, &headers)?;
        let id = known_key(&gw, id).await?;
        let rows = gw
            .store
            .responses()
            .of_key(&id)
            .await
            .map_err(ledger_error)?;
        let data: Vec<Value> = rows
            .into_iter()
            .map(|(rid, model, status, created)| {
                json!({"id": rid, "object": "response", "model": model, "status": status,
                       "created_at": created / 1000})
            })
            .collect();
        Ok::<_, ApiError>(json!({"object": "list", "data": data}))
    }
    .await;
    reply(result, StatusCode::OK)
}

/// `DELETE /admin/keys/{id}/responses`: deletes every stored conversation of the key.
async fn delete_key_responses(
    State(gw): State<Arc<Gateway>>,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
) -> Response {
    let result = async {
        require_admin(&gw, &headers)?;
        let id = known_key(&gw, id).await?;
        let deleted = gw
            .store
            .responses()
            .delete_of_key(&id)
            .await
            .map_err(ledger_error)?;
        Ok::<_, ApiError>(json!({"object": "list.deleted", "key": id, "deleted": deleted}))
    }
    .await;
    reply(result, StatusCode::OK)
}

async fn list_keys(State(gw): State<Arc<Gateway>>, headers: HeaderMap) -> Response {
    let result = async {
        require_admin(&gw, &headers)?;
        let keys = gw.ledger.keys().await.map_err(ledger_error)?;
        let data: Vec<Value> = keys.iter().map(|k| key_body(&gw, k)).collect();
        Ok::<_, ApiError>(json!({"object": "list", "data": data}))
    }
    .await;
    reply(result, StatusCode::OK)
}

async fn show_key(
    State(gw): State<Arc<Gateway>>,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
) -> Response {
    let result = async {
        require_admin(&gw, &headers)?;
        let id = super::path_id(id)?;
        let key = gw
            .ledger
            .key(&id)
            .await
            .map_err(ledger_error)?
            .ok_or_else(|| no_such_key(&id))?;
        Ok(key_body(&gw, &key))
    }
    .await;
    reply(result, StatusCode::OK)
}

/// The most a key's metadata may hold, as compact JSON.
pub(super) const MAX_KEY_METADATA: usize = 16 * 1024;

/// The longest key name, in characters.
pub(super) const MAX_KEY_NAME: usize = 200;

/// A key's name, trimmed, at most `MAX_KEY_NAME` characters.
fn key_name(raw: &str) -> Result<String, ApiError> {
    let name = raw.trim();
    if name.chars().count() > MAX_KEY_NAME {
        return Err(bad(
            "name",
            format!("'name' must be at most {MAX_KEY_NAME} characters."),
        ));
    }
    Ok(name.to_owned())
}

async fn create_key(State(gw): State<Arc<Gateway>>, headers: HeaderMap, body: Body) -> Response {
    let result = async {
        if let Err(e) = require_admin(&gw, &headers) {
            return Err(super::refuse_unread(body, e));
        }
        let body = super::read_body(&gw, &headers, body).await?;
        let fields = object(&body)?;
        let name = match fields.get("name") {
            Some(Value::String(n)) if !n.trim().is_empty() => key_name(n)?,
            None | Some(Value::Null) => return Err(bad("name", "A key needs a 'name'.")),
            Some(_) => return Err(bad("name", "'name' must be a non-empty string.")),
        };
        let update = parse_update(&fields, true, &gw.config.capture)?;
        let new = NewKey {
            name,
            credits: update.set_credits.unwrap_or(Nanos::ZERO),
            rpm: update.rpm.flatten(),
            tpm: update.tpm.flatten(),
            max_concurrent: update.max_concurrent.flatten(),
            models: update.models.flatten(),
            budget: update.budget.flatten(),
            expires_at: update.expires_at.flatten(),
            metadata: update.metadata.flatten(),
            quotas: update.quotas.clone().unwrap_or_default(),
        };
        let (record, key) = gw.auth.create_key(&new).await.map_err(ledger_error)?;
        let mut body = key_body(&gw, &record);
        body["key"] = Value::String(key);
        Ok(body)
    }
    .await;
    reply(result, StatusCode::CREATED)
}

async fn update_key(
    State(gw): State<Arc<Gateway>>,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
    body: Body,
) -> Response {
    let result = async {
        let id = match require_admin(&gw, &headers).and_then(|()| super::path_id(id)) {
            Ok(id) => id,
            Err(e) => return Err(super::refuse_unread(body, e)),
        };
        let body = super::read_body(&gw, &headers, body).await?;
        let fields = object(&body)?;
        let update = parse_update(&fields, false, &gw.config.capture)?;
        let key = gw
            .ledger
            .update_key(&id, &update)
            .await
            .map_err(|e| match e {
                LedgerError::BalanceOutOfRange => {
                    let param = ["top_up", "add_credits", "credits", "balance"]
                        .into_iter()
                        .find(|f| fields.contains_key(*f))
                        .unwrap_or("credits");
                    bad(
                        param,
                        format!("The balance would be more than {MAX_USD} USD."),
                    )
                }
                e => ledger_error(e),
            })?;
        gw.auth.key_changed(&key);
        let mut body = key_body(&gw, &key);
        if update.capture_hours == Some(None) {
            // Capture off: the key's captured text goes at once.
            let purged = gw
                .store
                .captures()
                .delete_of_key(&key.id)
                .await
                .map_err(ledger_error)?;
            body["capture"]["purged"] = json!(purged);
        }
        Ok(body)
    }
    .await;
    reply(result, StatusCode::OK)
}

async fn revoke_key(
    State(gw): State<Arc<Gateway>>,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
) -> Response {
    let result = async {
        require_admin(&gw, &headers)?;
        let id = super::path_id(id)?;
        let key = gw.ledger.revoke_key(&id).await.map_err(ledger_error)?;
        gw.auth.key_changed(&key);
        // A revoked key can no longer delete its own stored conversations: they go with it.
        if !gw.config.responses.keep_on_revoke {
            gw.store
                .responses()
                .delete_of_key(&id)
                .await
                .map_err(ledger_error)?;
        }
        Ok(key_body(&gw, &key))
    }
    .await;
    reply(result, StatusCode::OK)
}

/// A query string's parameters; the last value of a repeated name wins.
struct Params<'a>(&'a [(String, String)]);

impl Params<'_> {
    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// A point in time: a duration ago (`24h`), a date, a UTC date-time or epoch milliseconds.
    fn instant(&self, name: &str, now: i64) -> Result<Option<i64>, ApiError> {
        match self.get(name) {
            None => Ok(None),
            Some(v) => parse_instant(v, now).map(Some).ok_or_else(|| {
                bad(name, format!("{name}={v}: expected a duration ago (24h, 7d), a date (2026-11-22), a UTC date-time (2026-11-22T10:00:00Z) or epoch milliseconds."))
            }),
        }
    }
}

async fn usage(
    State(gw): State<Arc<Gateway>>,
    headers: HeaderMap,
    Query(q): Query<Vec<(String, String)>>,
) -> Response {
    let result = async {
        require_admin(&gw, &headers)?;
        let params = Params(&q);
        let key = params.get("key").map(str::to_owned);
        usage_report(&gw, &params, key).await
    }
    .await;
    reply(result, StatusCode::OK)
}

/// The usage report for `/admin/usage` and `{prefix}/key/usage`: `group_by`, `since`, `until`
/// from the query; `key` is the one key to report on (all keys when `None`).
async fn usage_report(
    gw: &Gateway,
    params: &Params<'_>,
    key: Option<String>,
) -> Result<Value, ApiError> {
    let by = params.get("group_by").unwrap_or("model");
    let group_by = GroupBy::parse(by).ok_or_else(|| {
        bad(
            "group_by",
            format!("group_by={by}: expected key, model, day or tag."),
        )
    })?;
    let now = now_ms();
    let query = UsageQuery {
        group_by,
        since_ms: params.instant("since", now)?.unwrap_or(now - 86_400_000),
        until_ms: params.instant("until", now)?,
        key_id: key,
    };
    let rows = gw.ledger.usage_report(&query).await.map_err(ledger_error)?;
    let total = rows.iter().fold(Nanos::ZERO, |t, r| t + r.cost);
    let saved = rows.iter().fold(Nanos::ZERO, |t, r| t + r.cache_saved);
    let (prompt, cached) = rows.iter().fold((0, 0), |(p, c), r| {
        (p + r.prompt_tokens, c + r.cached_tokens)
    });
    Ok(json!({
        "object": "list",
        "group_by": by,
        "since": query.since_ms,
        "until": query.until_ms,
        "data": rows,
        "total_cost": total.to_string(),
        "cache_hit_ratio": crate::store::ledger::hit_ratio(cached, prompt),
        "cache_saved": saved.to_string(),
    }))
}

/// `GET /admin/requests?since=…&until=…&key=…&model=…&end_reason=…&status=…&type=…&limit=…`:
/// the operator's event log, newest first. Each entry is what the ledger keeps (masked key, models,
/// provider, attempts, status, end reason, the error's text, tokens, cost, timings and latency
/// bucket); never a prompt or a completion.
async fn requests(
    State(gw): State<Arc<Gateway>>,
    headers: HeaderMap,
    Query(q): Query<Vec<(String, String)>>,
) -> Response {
    let result = async {
        require_admin(&gw, &headers)?;
        let params = Params(&q);
        let key = params.get("key").map(str::to_owned);
        request_log(&gw, &params, key).await
    }
    .await;
    reply(result, StatusCode::OK)
}

/// The event log for `/admin/requests` and `{prefix}/key/requests`, filtered by the query;
/// `key` is the one key whose entries are listed (all keys when `None`).
async fn request_log(
    gw: &Gateway,
    params: &Params<'_>,
    key: Option<String>,
) -> Result<Value, ApiError> {
    let now = now_ms();
    let limit = match params.get("limit") {
        None => 100,
        Some(v) => match v.parse::<i64>() {
            Ok(n) if (1..=1000).contains(&n) => n,
            _ => {
                return Err(bad(
                    "limit",
                    format!("limit={v}: expected a number from 1 to 1000."),
                ))
            }
        },
    };
    let query = RequestQuery {
        since_ms: params.instant("since", now)?.unwrap_or(now - 86_400_000),
        until_ms: params.instant("until", now)?,
        key_id: key,
        model: params.get("model").map(str::to_owned),
        end_reason: params.get("end_reason").map(str::to_owned),
        status: match params.get("status") {
            None => None,
            Some(v) => match v.parse::<i64>() {
                Ok(n) if (100..=599).contains(&n) => Some(n),
                _ => {
                    return Err(bad(
                        "status",
                        format!("status={v}: expected an HTTP status from 100 to 599."),
                    ))
                }
            },
        },
        request_type: params.get("type").map(str::to_owned),
        limit,
    };
    let rows = gw.ledger.requests(&query).await.map_err(ledger_error)?;
    Ok(json!({"object": "list", "data": rows}))
}

/// `GET {prefix}/key/usage`: `/admin/usage` for the caller's own key only (a `key=` parameter
/// cannot widen it: the caller's key id always replaces it).
async fn own_usage(
    State(gw): State<Arc<Gateway>>,
    headers: HeaderMap,
    Query(q): Query<Vec<(String, String)>>,
) -> Response {
    let result = async {
        let caller = super::caller(&gw, &headers).await?;
        usage_report(&gw, &Params(&q), Some(caller.id.clone())).await
    }
    .await;
    reply(result, StatusCode::OK)
}

/// `GET {prefix}/key/requests`: `/admin/requests` for the caller's own key only.
async fn own_requests(
    State(gw): State<Arc<Gateway>>,
    headers: HeaderMap,
    Query(q): Query<Vec<(String, String)>>,
) -> Response {
    let result = async {
        let caller = super::caller(&gw, &headers).await?;
        request_log(&gw, &Params(&q), Some(caller.id.clone())).await
    }
    .await;
    reply(result, StatusCode::OK)
}

fn no_such_request(id: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "invalid_request_error",
        "request_not_found",
        format!("No request with id '{id}'."),
    )
}

/// `GET /admin/requests/{id}`: one request's event record, plus its captured text (redacted) when
/// its key's capture was on; `"capture": null` otherwise.
async fn request_detail(
    State(gw): State<Arc<Gateway>>,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
) -> Response {
    let result = async {
        require_admin(&gw, &headers)?;
        let id = super::path_id(id)?;
        let entry = gw.ledger.entry(&id).await.map_err(ledger_error)?;
        let capture = gw.store.captures().get(&id).await.map_err(ledger_error)?;
        let Some(entry) = entry else {
            return Err(no_such_request(&id));
        };
        let mut body = serde_json::to_value(&entry).unwrap_or_default();
        body["capture"] = match capture {
            Some(c) => json!({
                "request": c.request,
                "completion": c.completion,
                "truncated": c.truncated,
                "created_at": c.created_at,
                "expires_at": c.expires_at,
            }),
            None => Value::Null,
        };
        Ok(body)
    }
    .await;
    reply(result, StatusCode::OK)
}

/// `DELETE /admin/requests/{id}/capture`: deletes one request's captured text (404 when none).
async fn delete_capture(
    State(gw): State<Arc<Gateway>>,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
) -> Response {
    let result = async {
        require_admin(&gw, &headers)?;
        let id = super::path_id(id)?;
        if !gw
            .store
            .captures()
            .delete(&id)
            .await
            .map_err(ledger_error)?
        {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "invalid_request_error",
                "capture_not_found",
                format!("No capture for request '{id}'."),
            ));
        }
        Ok(json!({"request_id": id, "object": "capture", "deleted": true}))
    }
    .await;
    reply(result, StatusCode::OK)
}

/// `GET /v1/key`: the caller's own key, with its live balance and open holds.
async fn own_key(State(gw): State<Arc<Gateway>>, headers: HeaderMap) -> Response {
    let result = async {
        let caller = super::caller(&gw, &headers).await?;
        let view = gw
            .ledger
            .account_view(&caller.id)
            .await
            .map_err(ledger_error)?;
        let mut body = view.key.to_json(view.reserved);
        if body["models"].is_null() {
            body["models"] = json!(gw.config.models.keys().collect::<Vec<_>>());
        }
        Ok(body)
    }
    .await;
    reply(result, StatusCode::OK)
}

fn reply(result: Result<Value, ApiError>, status: StatusCode) -> Response {
    match result {
        Ok(body) => (status, axum::Json(body)).into_response(),
        Err(e) => e.into_response(),
    }
}

fn object(body: &[u8]) -> Result<Map<String, Value>, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    match serde_json::from_slice(body) {
        Ok(Value::Object(mut m)) => {
            // A JSON number would reach us as an f64; money is read from its exact text instead
            // (a JSON number's text is always an exact decimal).
            if MONEY_FIELDS
                .iter()
                .any(|f| m.get(*f).is_some_and(Value::is_number))
            {
                let raw: std::collections::HashMap<String, Box<serde_json::value::RawValue>> =
                    serde_json::from_slice(body).unwrap_or_default();
                for f in MONEY_FIELDS {
                    if let (Some(Value::Number(_)), Some(r)) = (m.get(f), raw.get(f)) {
                        m.insert(f.to_owned(), Value::String(r.get().to_owned()));
                    }
                }
            }
            Ok(m)
        }
        Ok(_) => Err(bad("body", "The body must be a JSON object.")),
        Err(e) => Err(bad("body", format!("The body is not valid JSON ({e})."))),
    }
}

/// The fields that hold an amount of USD.
const MONEY_FIELDS: [&str; 5] = ["credits", "balance", "top_up", "add_credits", "budget"];

/// A USD amount (`ledger::parse_usd`): a decimal string, or a JSON number read by its exact text
/// (never through a float); refused with a 400 naming `param`.
fn usd(param: &str, v: &Value, rule: AmountRule) -> Result<Nanos, ApiError> {
    let text = match v {
        Value::String(s) => s.as_str(),
        _ => {
            return Err(bad(
                param,
                format!("'{param}' must be an amount of USD such as \"2.50\"."),
            ))
        }
    };
    parse_usd(text, rule).map_err(|e| {
        let shown: String = text.chars().take(40).collect();
        bad(param, format!("'{param}' = {shown:?} {e}."))
    })
}

/// `Some(None)` for an explicit null, `Some(Some(v))` for a value, `None` when absent.
fn nullable<T>(
    fields: &Map<String, Value>,
    name: &str,
    parse: impl Fn(&Value) -> Result<T, ApiError>,
) -> Result<Option<Option<T>>, ApiError> {
    match fields.get(name) {
        None => Ok(None),
        Some(Value::Null) => Ok(Some(None)),
        Some(v) => parse(v).map(|t| Some(Some(t))),
    }
}

fn limit(name: &'static str) -> impl Fn(&Value) -> Result<i64, ApiError> {
    move |v| {
        v.as_i64().filter(|n| *n > 0).ok_or_else(|| {
            bad(
                name,
                format!("'{name}' must be a positive integer or null."),
            )
        })
    }
}

const KNOWN_FIELDS: [&str; 17] = [
    "name",
    "quotas",
    "capture",
    "credits",
    "top_up",
    "rpm",
    "tpm",
    "max_concurrent",
    "models",
    "budget",
    "budget_period",
    "expires_at",
    "expires_in",
    "metadata",
    "balance",
    "add_credits",
    "key",
];

/// `"capture"`: `{"enabled": true, "retention_hours": 24}` (hours default to
/// `[capture] default_retention_hours`, at most `max_retention_hours`), `{"enabled": false}`,
/// `true`, `false` or `null`. `Some(h)` is on, `None` off.
fn capture_setting(v: &Value, config: &CaptureConfig) -> Result<Option<i64>, ApiError> {
    let shape = || {
        bad(
            "capture",
            "'capture' must be {\"enabled\": true|false, \"retention_hours\": N}, true, false or null.",
        )
    };
    let (enabled, hours) = match v {
        Value::Null | Value::Bool(false) => (false, None),
        Value::Bool(true) => (true, None),
        Value::Object(m) => {
            if m.keys().any(|k| k != "enabled" && k != "retention_hours") {
                return Err(shape());
            }
            let enabled = match m.get("enabled") {
                Some(Value::Bool(b)) => *b,
                None => m.contains_key("retention_hours"),
                Some(_) => return Err(shape()),
            };
            let hours = match m.get("retention_hours") {
                None | Some(Value::Null) => None,
                Some(h) => Some(
                    h.as_i64()
                        .filter(|h| (1..=config.max_retention_hours).contains(h))
                        .ok_or_else(|| {
                            bad(
                                "capture.retention_hours",
                                format!(
                                    "'capture.retention_hours' must be a whole number of hours from 1 to {} ([capture] max_retention_hours).",
                                    config.max_retention_hours
                                ),
                            )
                        })?,
                ),
            };
            (enabled, hours)
        }
        _ => return Err(shape()),
    };
    Ok(enabled.then(|| hours.unwrap_or(config.default_retention_hours)))
}

/// The fields of a create (`credits` = the starting balance) or a PATCH (`credits` sets the
/// balance, `top_up` adds to it; `null` clears a limit, the model list, the budget or the expiry).
fn parse_update(
    fields: &Map<String, Value>,
    creating: bool,
    capture: &CaptureConfig,
) -> Result<KeyUpdate, ApiError> {
    if let Some(unknown) = fields.keys().find(|k| !KNOWN_FIELDS.contains(&k.as_str())) {
        return Err(bad(
            unknown,
            format!("Unknown field '{unknown}'. Known: name, credits, top_up, rpm, tpm, max_concurrent, models, budget, budget_period, expires_at, expires_in, metadata, capture."),
        ));
    }
    if fields.contains_key("key") {
        return Err(bad("key", "A key's secret cannot be set or changed."));
    }
    let mut u = KeyUpdate::default();
    if !creating {
        if let Some(v) = fields.get("name") {
            match v {
                Value::String(n) if !n.trim().is_empty() => u.name = Some(key_name(n)?),
                _ => return Err(bad("name", "'name' must be a non-empty string.")),
            }
        }
    }
    for name in ["credits", "balance"] {
        if let Some(v) = fields.get(name) {
            u.set_credits = Some(usd(name, v, AmountRule::NonNegative)?);
        }
    }
    for name in ["top_up", "add_credits"] {
        if let Some(v) = fields.get(name) {
            if creating {
                return Err(bad(name, "Use 'credits' when creating a key."));
            }
            u.add_credits = Some(usd(name, v, AmountRule::Positive)?);
        }
    }
    u.rpm = nullable(fields, "rpm", limit("rpm"))?;
    u.tpm = nullable(fields, "tpm", limit("tpm"))?;
    u.max_concurrent = nullable(fields, "max_concurrent", limit("max_concurrent"))?;
    u.models = nullable(fields, "models", |v| {
        let list = v
            .as_array()
            .and_then(|a| {
                a.iter()
                    .map(|m| {
                        m.as_str()
                            .filter(|s| !s.is_empty() && !s.contains(','))
                            .map(str::to_owned)
                    })
                    .collect::<Option<Vec<_>>>()
            })
            .ok_or_else(|| {
                bad(
                    "models",
                    "'models' must be an array of model names, or null for all models.",
                )
            })?;
        Ok(list)
    })?;
    let period = match fields.get("budget_period") {
        None | Some(Value::Null) => None,
        Some(Value::String(p)) => Some(BudgetPeriod::parse(p).ok_or_else(|| {
            bad(
                "budget_period",
                "'budget_period' must be \"day\" or \"month\".",
            )
        })?),
        Some(_) => {
            return Err(bad(
                "budget_period",
                "'budget_period' must be \"day\" or \"month\".",
            ))
        }
    };
    u.budget = nullable(fields, "budget", |v| {
        Ok(Budget {
            limit: usd("budget", v, AmountRule::NonNegative)?,
            period: period.unwrap_or(BudgetPeriod::Month),
        })
    })?;
    if period.is_some() && u.budget.is_none() {
        return Err(bad(
            "budget_period",
            "'budget_period' needs 'budget' in the same request.",
        ));
    }
    u.expires_at = nullable(fields, "expires_at", |v| {
        let at = match v {
            Value::Number(n) => n.as_i64(),
            Value::String(s) => {
                parse_instant(s, now_ms()).filter(|_| s.contains('-') || s.len() >= 12)
            }
            _ => None,
        };
        at.ok_or_else(|| bad("expires_at", "'expires_at' must be epoch milliseconds or a UTC date-time such as \"2026-12-31T00:00:00Z\"."))
    })?;
    if let Some(v) = fields.get("expires_in") {
        // Both null says "never" twice; a date and a duration contradict each other.
        if u.expires_at.is_some() && (!v.is_null() || u.expires_at != Some(None)) {
            return Err(bad(
                "expires_in",
                "Give 'expires_at' or 'expires_in', not both.",
            ));
        }
        u.expires_at = match v {
            Value::Null => Some(None),
            Value::String(s) => {
                let d = parse_duration(s).ok_or_else(|| {
                    bad(
                        "expires_in",
                        "'expires_in' must be a duration such as \"30d\", \"12h\" or \"90m\".",
                    )
                })?;
                Some(Some(now_ms().saturating_add(d.as_millis() as i64)))
            }
            _ => {
                return Err(bad(
                    "expires_in",
                    "'expires_in' must be a duration such as \"30d\".",
                ))
            }
        };
    }
    u.metadata = nullable(fields, "metadata", |v| {
        // The key holder reads its metadata back (`GET /v1/key`): bounded, like every admin string.
        if v.to_string().len() > MAX_KEY_METADATA {
            return Err(bad(
                "metadata",
                format!("'metadata' must be at most {MAX_KEY_METADATA} bytes as JSON."),
            ));
        }
        Ok(v.clone())
    })?;
    if let Some(v) = fields.get("quotas") {
        // `[{"window": "5h", "usd": "2.00"}, {"window": "7d", "requests": 2000}]`, the same as
        // "5h:usd=2,7d:requests=2000", or null / [] for none.
        u.quotas = Some(
            crate::store::ledger::quotas::parse_json(v)
                .map_err(|message| bad("quotas", message))?,
        );
    }
    if let Some(v) = fields.get("capture") {
        if creating {
            return Err(bad(
                "capture",
                "Turn capture on with PATCH /admin/keys/{id} once the key exists.",
            ));
        }
        u.capture_hours = Some(capture_setting(v, capture)?);
    }
    Ok(u)
}
