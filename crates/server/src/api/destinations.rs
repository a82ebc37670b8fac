//! `/v1/destinations`: where events go. Secrets are generated when not given, shown redacted,
//! and revealed only through `GET /v1/destinations/{id}/secret` (write scope).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use switchboard_core::config::DestinationConfig;
use switchboard_signatures::standard_webhooks::SigningKey;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::ApiResult;
use super::auth::{Auth, Read, Write};
use super::extract::ApiJson;
use super::resources::{
    REDACTED, apply, check_path_id, from_value, merge_patch, not_found, redact_settings,
    restore_redacted, stamps,
};
use crate::problem::Problem;
use crate::runtime::{Change, Kind, Runtime};
use crate::state::AppState;

/// A destination as the API shows it (secret redacted).
#[derive(Debug, Serialize, ToSchema)]
pub struct Destination {
    /// Destination id.
    pub id: String,
    /// `config` (read-only here) or `api`.
    pub managed_by: &'static str,
    /// `http`, `slack`, `teams`, `email`, `sms`, `postgres`, `s3` or `queue`.
    pub kind: String,
    /// Target URL (for other kinds than `http`, where they send, without credentials).
    pub url: String,
    /// `********` when a signing secret is set.
    pub secret: Option<String>,
    /// Per-attempt timeout (e.g. `15s`).
    pub timeout: String,
    /// Retry policy: `{"schedule": [...]}` or `{"exponential": {...}}`.
    #[schema(value_type = Object)]
    pub retry: Value,
    /// Extra request headers.
    pub headers: BTreeMap<String, String>,
    /// In-flight cap, when set.
    pub max_in_flight: Option<u64>,
    /// Deliveries per second at most, when set.
    pub rate_limit: Option<f64>,
    /// Whether deliveries are sent in order (FIFO).
    pub ordered: bool,
    /// `false` while paused: deliveries stay pending and are sent once enabled again.
    pub enabled: bool,
    /// The settings of a kind other than `http` (credentials redacted): the keys written
    /// beside `id` and `kind` in a `[[destinations]]` table.
    #[schema(value_type = Option<Object>)]
    pub settings: Option<Value>,
    /// Created (API resources).
    pub created_at: Option<String>,
    /// Last change (API resources).
    pub updated_at: Option<String>,
}

/// A destination to create or replace.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DestinationInput {
    /// 1–64 letters, digits, `-`, `_`.
    #[schema(pattern = "^[A-Za-z0-9_-]{1,64}$")]
    pub id: String,
    /// `http` (default), or another kind configured through `settings`: `slack`, `teams`,
    /// `email`, `sms`, `postgres`, `s3`, `queue`.
    pub kind: Option<String>,
    /// `http://` or `https://` URL (`http` destinations; required for them).
    #[schema(pattern = "^https?://[^/?#]")]
    pub url: Option<String>,
    /// The settings of a kind other than `http`: the keys written beside `id` and `kind` in a
    /// `[[destinations]]` table of the configuration file. On replace, a value given as
    /// `********` keeps the current one (so a redacted view can be sent back).
    #[schema(value_type = Option<Object>)]
    pub settings: Option<Value>,
    /// `whsec_…` signing secret; generated on create when absent, kept on replace when absent.
    pub secret: Option<String>,
    /// Per-attempt timeout, e.g. `15s` (default).
    pub timeout: Option<String>,
    /// `{"schedule": ["5s", "5m"]}` or `{"exponential": {"base": "1s", "factor": 2.0,
    /// "max_delay": "1h", "attempts": 10}}`; default: the Svix-like schedule.
    #[schema(value_type = Option<Object>)]
    pub retry: Option<Value>,
    /// Extra request headers.
    pub headers: Option<BTreeMap<String, String>>,
    /// In-flight cap.
    pub max_in_flight: Option<u64>,
    /// Deliveries per second at most (unlimited when absent).
    pub rate_limit: Option<f64>,
    /// Deliver in order: each delivery waits until the ones before it succeeded.
    pub ordered: Option<bool>,
    /// `false` pauses the destination (default `true`): its deliveries stay pending and are
    /// sent once it is enabled again.
    pub enabled: Option<bool>,
}

/// A destination's signing secret.
#[derive(Debug, Serialize, ToSchema)]
pub struct DestinationSecret {
    /// `whsec_…`, or null when the destination does not sign.
    pub secret: Option<String>,
}

fn generate_secret() -> String {
    let mut key = [0u8; 24];
    rand::fill(&mut key);
    SigningKey::from_bytes(key.to_vec()).to_secret()
}

/// Writes the delivery-policy fields every kind shares into a configuration value.
fn put_policy(value: &mut Value, input: &DestinationInput) {
    if let Some(timeout) = &input.timeout {
        value["timeout"] = json!(timeout);
    }
    if let Some(retry) = &input.retry {
        value["retry"] = retry.clone();
    }
    if let Some(max) = input.max_in_flight {
        value["max_in_flight"] = json!(max);
    }
    if let Some(rate) = input.rate_limit {
        value["rate_limit"] = json!(rate);
    }
    if let Some(ordered) = input.ordered {
        value["ordered"] = json!(ordered);
    }
    if let Some(enabled) = input.enabled {
        value["enabled"] = json!(enabled);
    }
}

fn to_config(
    input: DestinationInput,
    secret: Option<String>,
    current: Option<&DestinationConfig>,
) -> Result<DestinationConfig, Problem> {
    match input.kind.as_deref() {
        None | Some("http") => http_config(input, secret),
        Some(kind) => other_config(kind.to_owned(), input, current),
    }
}

/// An `http` destination. The fields are parsed as `HttpDestination` rather than through the
/// `kind`-tagged enum, whose buffering loses the path of an invalid field.
fn http_config(
    input: DestinationInput,
    secret: Option<String>,
) -> Result<DestinationConfig, Problem> {
    if input.settings.is_some() {
        return Err(Problem::field(
            "settings",
            "http destinations take url, secret, headers… at the top level, not settings",
        ));
    }
    let url = input
        .url
        .clone()
        .ok_or_else(|| Problem::field("url", "url is required for http destinations"))?;
    let mut value = json!({
        "id": input.id,
        "url": url,
    });
    if let Some(secret) = secret {
        value["secret"] = json!(secret);
    }
    if let Some(headers) = &input.headers {
        value["headers"] = json!(headers);
    }
    put_policy(&mut value, &input);
    from_value(value).map(DestinationConfig::Http)
}

/// A destination of another kind, from `settings` (plus the common `timeout`, `retry` and
/// `max_in_flight`).
fn other_config(
    kind: String,
    input: DestinationInput,
    current: Option<&DestinationConfig>,
) -> Result<DestinationConfig, Problem> {
    if !DestinationConfig::KINDS.contains(&kind.as_str()) {
        return Err(Problem::field(
            "kind",
            format!(
                "unknown destination kind `{kind}`; expected one of: {}",
                DestinationConfig::KINDS.join(", ")
            ),
        ));
    }
    for (field, given) in [
        ("url", input.url.is_some()),
        ("secret", input.secret.is_some()),
        ("headers", input.headers.is_some()),
    ] {
        if given {
            return Err(Problem::field(
                field,
                format!(
                    "`{field}` belongs to http destinations; a `{kind}` destination takes its settings in `settings`"
                ),
            ));
        }
    }
    let mut value = match input.settings.clone() {
        Some(Value::Object(settings)) => Value::Object(settings),
        None => json!({}),
        Some(_) => return Err(Problem::field("settings", "settings must be an object")),
    };
    if let Some(current) = current.and_then(|c| serde_json::to_value(c).ok()) {
        restore_redacted(&mut value, &current);
    }
    value["id"] = json!(input.id);
    value["kind"] = json!(kind);
    put_policy(&mut value, &input);
    from_value(value)
}

fn view(runtime: &Runtime, destination: &DestinationConfig) -> Destination {
    let id = destination.id();
    let (created_at, updated_at) = stamps(runtime, Kind::Destination, id);
    let policy = destination.policy();
    let (url, secret, headers) = match destination {
        DestinationConfig::Http(http) => (
            http.url.clone(),
            http.secret.as_ref().map(|_| REDACTED.to_owned()),
            http.headers.clone(),
        ),
        // Other kinds carry credentials in their URL or token: show where they send, not how.
        _ => (
            runtime
                .destinations
                .get(id)
                .map(|t| t.describe())
                .unwrap_or_default(),
            Some(REDACTED.to_owned()),
            BTreeMap::new(),
        ),
    };
    let settings = (!matches!(destination, DestinationConfig::Http(_))).then(|| {
        let mut settings = serde_json::to_value(destination).unwrap_or(Value::Null);
        if let Value::Object(map) = &mut settings {
            for key in ["id", "kind", "timeout", "retry", "max_in_flight", "enabled"] {
                map.remove(key);
            }
        }
        redact_settings(&mut settings);
        settings
    });
    Destination {
        id: id.to_owned(),
        managed_by: runtime.managed_by(Kind::Destination, id).as_str(),
        kind: destination.kind().into(),
        url,
        secret,
        timeout: humantime::format_duration(policy.timeout).to_string(),
        retry: serde_json::to_value(policy.retry).unwrap_or(Value::Null),
        headers,
        max_in_flight: policy.max_in_flight.map(|n| n as u64),
        rate_limit: policy.rate_limit,
        ordered: policy.ordered,
        enabled: policy.enabled,
        settings,
        created_at,
        updated_at,
    }
}

fn lookup<'a>(runtime: &'a Runtime, id: &str) -> Option<&'a DestinationConfig> {
    runtime.config.destinations.iter().find(|d| d.id() == id)
}

fn find(state: &AppState, id: &str) -> Result<Destination, Problem> {
    let runtime = state.registry.current();
    lookup(&runtime, id)
        .map(|d| view(&runtime, d))
        .ok_or_else(|| not_found(Kind::Destination, id))
}

/// Lists destinations.
#[utoipa::path(get, path = "/destinations", tag = "destinations",
    responses((status = 200, body = Vec<Destination>), (status = 401, body = Problem)), security(("bearer" = [])))]
pub async fn list(_auth: Auth<Read>, State(state): State<Arc<AppState>>) -> Json<Vec<Destination>> {
    Json(all(&state))
}

/// Every destination, as the API shows them (shared with the dashboard).
pub fn all(state: &AppState) -> Vec<Destination> {
    let runtime = state.registry.current();
    runtime
        .config
        .destinations
        .iter()
        .map(|d| view(&runtime, d))
        .collect()
}

/// One destination.
#[utoipa::path(get, path = "/destinations/{id}", tag = "destinations", params(("id" = String, Path, description = "Destination id")),
    responses((status = 200, body = Destination), (status = 401, body = Problem), (status = 404, body = Problem)), security(("bearer" = [])))]
pub async fn get(
    _auth: Auth<Read>,
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> ApiResult<Json<Destination>> {
    find(&state, &id).map(Json)
}

/// A destination's signing secret.
#[utoipa::path(get, path = "/destinations/{id}/secret", tag = "destinations", params(("id" = String, Path, description = "Destination id")),
    responses((status = 200, body = DestinationSecret), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem)),
    security(("bearer" = [])))]
pub async fn secret(
    _auth: Auth<Write>,
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> ApiResult<Json<DestinationSecret>> {
    let runtime = state.registry.current();
    let secret = match lookup(&runtime, &id).ok_or_else(|| not_found(Kind::Destination, &id))? {
        DestinationConfig::Http(http) => http.secret.clone(),
        // Credentials of other kinds live in the configuration file only.
        _ => None,
    };
    Ok(Json(DestinationSecret { secret }))
}

/// Creates a destination.
#[utoipa::path(post, path = "/destinations", tag = "destinations", request_body = DestinationInput,
    responses((status = 201, body = Destination), (status = 401, body = Problem), (status = 403, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem)),
    security(("bearer" = [])))]
pub async fn create(
    _auth: Auth<Write>,
    State(state): State<Arc<AppState>>,
    ApiJson(input): ApiJson<DestinationInput>,
) -> ApiResult<(StatusCode, Json<Destination>)> {
    Ok((
        StatusCode::CREATED,
        Json(create_destination(&state, input).await?),
    ))
}

/// Validates and stores a new destination; HTTP destinations without a secret get a generated
/// one (shared with the dashboard).
pub async fn create_destination(
    state: &AppState,
    input: DestinationInput,
) -> ApiResult<Destination> {
    let is_http = input.kind.as_deref().is_none_or(|k| k == "http");
    let secret = is_http.then(|| input.secret.clone().unwrap_or_else(generate_secret));
    let config = to_config(input, secret, None)?;
    let id = config.id().to_owned();
    apply(state, Change::PutDestination(config, true)).await?;
    find(state, &id)
}

/// Gives an HTTP destination a new generated signing secret and returns it (the dashboard's
/// "Rotate secret"; through the API, `PUT` a new `secret`). The old secret stops signing at once.
pub async fn rotate_secret(state: &AppState, id: &str) -> ApiResult<String> {
    let runtime = state.registry.current();
    let current = lookup(&runtime, id)
        .cloned()
        .ok_or_else(|| not_found(Kind::Destination, id))?;
    let DestinationConfig::Http(mut http) = current else {
        return Err(Problem::conflict(
            "not_http",
            format!("destination `{id}` is not an http destination: it has no signing secret"),
        ));
    };
    let secret = generate_secret();
    http.secret = Some(secret.clone());
    apply(
        state,
        Change::PutDestination(DestinationConfig::Http(http), false),
    )
    .await?;
    Ok(secret)
}

/// Replaces a destination (an absent `secret` keeps the current one).
#[utoipa::path(put, path = "/destinations/{id}", tag = "destinations", params(("id" = String, Path, description = "Destination id")), request_body = DestinationInput,
    responses((status = 200, body = Destination), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem)),
    security(("bearer" = [])))]
pub async fn update(
    _auth: Auth<Write>,
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    ApiJson(input): ApiJson<DestinationInput>,
) -> ApiResult<Json<Destination>> {
    replace_destination(&state, &id, input).await.map(Json)
}

/// Replaces a destination: an absent `secret`, or one sent as `********`, keeps the current one,
/// as do redacted credentials in `settings` (shared with the dashboard).
pub async fn replace_destination(
    state: &AppState,
    id: &str,
    input: DestinationInput,
) -> ApiResult<Destination> {
    check_path_id(id, &input.id)?;
    let runtime = state.registry.current();
    let current = lookup(&runtime, id)
        .cloned()
        .ok_or_else(|| not_found(Kind::Destination, id))?;
    let current_secret = match &current {
        DestinationConfig::Http(http) => http.secret.clone(),
        _ => None,
    };
    let secret = match input.secret.clone() {
        Some(given) if given == REDACTED => current_secret,
        Some(given) => Some(given),
        None => current_secret,
    };
    let config = to_config(input, secret, Some(&current))?;
    apply(state, Change::PutDestination(config, false)).await?;
    // Deliveries held while it was disabled (or waiting on the old settings) may be due now.
    state.due.unknown(id);
    state.wake.notify_one();
    find(state, id)
}

/// The destination as the body `PUT /v1/destinations/{id}` takes, credentials redacted: what
/// the dashboard's editor shows and `PATCH` applies its merge patch to. Sent back, a redacted
/// value keeps the current credential.
pub fn document(state: &AppState, id: &str) -> Result<Value, Problem> {
    let runtime = state.registry.current();
    let destination = lookup(&runtime, id).ok_or_else(|| not_found(Kind::Destination, id))?;
    let policy = destination.policy();
    let mut doc = json!({
        "id": id,
        "kind": destination.kind(),
        "timeout": humantime::format_duration(policy.timeout).to_string(),
        "retry": policy.retry,
        "ordered": policy.ordered,
        "enabled": policy.enabled,
    });
    if let Some(max) = policy.max_in_flight {
        doc["max_in_flight"] = json!(max);
    }
    if let Some(rate) = policy.rate_limit {
        doc["rate_limit"] = json!(rate);
    }
    match destination {
        DestinationConfig::Http(http) => {
            doc["url"] = json!(http.url);
            doc["headers"] = json!(http.headers);
            if http.secret.is_some() {
                doc["secret"] = json!(REDACTED);
            }
        }
        other => {
            let mut settings = serde_json::to_value(other).unwrap_or(Value::Null);
            if let Value::Object(map) = &mut settings {
                for key in [
                    "id",
                    "kind",
                    "timeout",
                    "retry",
                    "max_in_flight",
                    "rate_limit",
                    "ordered",
                    "enabled",
                ] {
                    map.remove(key);
                }
            }
            redact_settings(&mut settings);
            doc["settings"] = settings;
        }
    }
    Ok(doc)
}

/// Applies a JSON merge patch (RFC 7396) to the destination's [`document`] and stores the
/// result (shared with the dashboard's enable/disable).
pub async fn patch_destination(state: &AppState, id: &str, patch: Value) -> ApiResult<Destination> {
    let mut doc = document(state, id)?;
    merge_patch(&mut doc, patch);
    let input: DestinationInput = from_value(doc)?;
    replace_destination(state, id, input).await
}

/// Changes part of a destination: a JSON merge patch (RFC 7396) of the body `PUT` takes, e.g.
/// `{"enabled": false}` or `{"timeout": "5s"}` (a redacted value keeps the current credential).
#[utoipa::path(patch, path = "/destinations/{id}", tag = "destinations", params(("id" = String, Path, description = "Destination id")),
    request_body(content = Object, content_type = "application/merge-patch+json"),
    responses((status = 200, body = Destination), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem)),
    security(("bearer" = [])))]
pub async fn patch(
    _auth: Auth<Write>,
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    ApiJson(patch): ApiJson<Value>,
) -> ApiResult<Json<Destination>> {
    patch_destination(&state, &id, super::resources::patch_object(patch)?)
        .await
        .map(Json)
}

/// Deletes a destination (refused while routes use it).
#[utoipa::path(delete, path = "/destinations/{id}", tag = "destinations", params(("id" = String, Path, description = "Destination id")),
    responses((status = 204, description = "Deleted"), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem)),
    security(("bearer" = [])))]
pub async fn delete(
    _auth: Auth<Write>,
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    apply(&state, Change::Delete(Kind::Destination, id)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Routes of this resource.
pub fn router() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(get, update, patch, delete))
        .routes(routes!(secret))
}
