//! `/v1/sources`: where events come in (`POST /in/{id}`) and how they are verified.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use switchboard_core::config::SourceConfig;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::ApiResult;
use super::auth::{Auth, Read, Write};
use super::extract::ApiJson;
use super::resources::{
    apply, check_path_id, from_value, merge_patch, not_found, redact, redact_settings,
    restore_redacted, stamps,
};
use crate::problem::Problem;
use crate::runtime::{Change, Kind, Runtime};
use crate::state::AppState;

/// A source as the API shows it (secrets redacted).
#[derive(Debug, Serialize, ToSchema)]
pub struct Source {
    /// Source id.
    pub id: String,
    /// `config` (read-only here) or `api`.
    pub managed_by: &'static str,
    /// `webhook` (events are sent to `ingest_path`) or a fetching kind (`queue`, `websocket`,
    /// `schedule`).
    pub kind: &'static str,
    /// Path to send events to (webhook sources).
    pub ingest_path: Option<String>,
    /// The settings of a fetching kind (secrets redacted).
    #[schema(value_type = Option<Object>)]
    pub settings: Option<Value>,
    /// Verifier: `{"kind": "github", "secrets": [...]}` etc.; secrets are redacted.
    #[schema(value_type = Object)]
    pub verifier: Value,
    /// Body limit in bytes, when set.
    pub max_body_bytes: Option<u64>,
    /// Rate limit, when set: `{"per_second": n, "burst": n}`.
    #[schema(value_type = Option<Object>)]
    pub rate_limit: Option<Value>,
    /// `false` while paused: webhook requests get `503` (senders retry), fetching stops.
    pub enabled: bool,
    /// Created (API resources).
    pub created_at: Option<String>,
    /// Last change (API resources).
    pub updated_at: Option<String>,
}

/// A source to create or replace.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SourceInput {
    /// 1–64 letters, digits, `-`, `_`.
    #[schema(pattern = "^[A-Za-z0-9_-]{1,64}$")]
    pub id: String,
    /// `webhook` (the default) or a fetching kind: `queue`, `websocket`, `schedule`.
    pub kind: Option<String>,
    /// A fetching kind's settings: the keys written beside `id` and `kind` in a `[[sources]]`
    /// table of the configuration file.
    #[schema(value_type = Option<Object>)]
    pub settings: Option<Value>,
    /// Verifier (`{"kind": "none"}` when absent). Kinds: github, stripe, slack, shopify,
    /// twilio, sendgrid, standard-webhooks, hmac, basic, api-key, none.
    #[schema(value_type = Option<Object>)]
    pub verifier: Option<Value>,
    /// Body limit in bytes.
    #[schema(minimum = 1)]
    pub max_body_bytes: Option<u64>,
    /// Rate limit: `{"per_second": n, "burst": n}`.
    #[schema(value_type = Option<Object>)]
    pub rate_limit: Option<Value>,
    /// `false` pauses the source (default `true`): webhook requests get `503` with
    /// `Retry-After`, so senders keep and retry them; a fetching source stops fetching.
    pub enabled: Option<bool>,
}

fn to_config(input: SourceInput) -> Result<SourceConfig, Problem> {
    let enabled = input.enabled.unwrap_or(true);
    let kind = input.kind.unwrap_or_else(|| "webhook".into());
    if kind != "webhook" {
        if input.verifier.is_some() || input.max_body_bytes.is_some() || input.rate_limit.is_some()
        {
            return Err(Problem::field(
                "verifier",
                "verifier, max_body_bytes and rate_limit apply to webhook sources only",
            ));
        }
        let mut value = match input.settings {
            Some(Value::Object(settings)) => Value::Object(settings),
            None => json!({}),
            Some(_) => return Err(Problem::field("settings", "settings must be an object")),
        };
        value["id"] = json!(input.id);
        value["kind"] = json!(kind);
        value["enabled"] = json!(enabled);
        return from_value(value);
    }
    if input.settings.is_some() {
        return Err(Problem::field(
            "settings",
            "webhook sources take verifier, max_body_bytes and rate_limit, not settings",
        ));
    }
    let mut value = json!({
        "id": input.id,
        "enabled": enabled,
        "verifier": input.verifier.unwrap_or(json!({"kind": "none"})),
    });
    if let Some(max) = input.max_body_bytes {
        value["max_body_bytes"] = json!(max);
    }
    if let Some(limit) = input.rate_limit {
        value["rate_limit"] = limit;
    }
    from_value(value)
}

fn view(runtime: &Runtime, source: &SourceConfig) -> Source {
    let mut verifier = serde_json::to_value(&source.verifier).unwrap_or(Value::Null);
    redact(&mut verifier);
    let (created_at, updated_at) = stamps(runtime, Kind::Source, &source.id);
    let settings = (!source.is_webhook()).then(|| {
        let mut settings = settings_of(source);
        redact_settings(&mut settings);
        settings
    });
    Source {
        id: source.id.clone(),
        managed_by: runtime.managed_by(Kind::Source, &source.id).as_str(),
        kind: source.kind.name(),
        ingest_path: source.is_webhook().then(|| format!("/in/{}", source.id)),
        settings,
        verifier,
        max_body_bytes: source.max_body_bytes.map(|n| n as u64),
        rate_limit: source.rate_limit.and_then(|r| serde_json::to_value(r).ok()),
        enabled: source.enabled,
        created_at,
        updated_at,
    }
}

/// A fetching source's settings: the keys beside `id` and `kind` (secrets in clear).
fn settings_of(source: &SourceConfig) -> Value {
    let mut settings = serde_json::to_value(source).unwrap_or(Value::Null);
    if let Value::Object(map) = &mut settings {
        for key in ["id", "kind", "enabled"] {
            map.remove(key);
        }
    }
    settings
}

/// The source as the body `PUT /v1/sources/{id}` takes, secrets in clear (never shown: see
/// [`document`]).
fn plain_document(source: &SourceConfig) -> Value {
    let mut doc = json!({ "id": source.id, "kind": source.kind.name(), "enabled": source.enabled });
    if source.is_webhook() {
        doc["verifier"] = serde_json::to_value(&source.verifier).unwrap_or(Value::Null);
        if let Some(max) = source.max_body_bytes {
            doc["max_body_bytes"] = json!(max);
        }
        if let Some(limit) = source.rate_limit {
            doc["rate_limit"] = json!(limit);
        }
    } else {
        doc["settings"] = settings_of(source);
    }
    doc
}

/// The source as the body `PUT /v1/sources/{id}` takes, with secrets redacted: what the
/// dashboard's editor shows and `PATCH` applies its merge patch to. Sent back, a redacted value
/// keeps the current secret.
pub fn document(state: &AppState, id: &str) -> Result<Value, Problem> {
    let runtime = state.registry.current();
    let source = lookup(&runtime, id).ok_or_else(|| not_found(Kind::Source, id))?;
    let mut doc = plain_document(source);
    if let Some(verifier) = doc.get_mut("verifier") {
        redact(verifier);
    }
    if let Some(settings) = doc.get_mut("settings") {
        redact_settings(settings);
    }
    Ok(doc)
}

fn lookup<'a>(runtime: &'a Runtime, id: &str) -> Option<&'a SourceConfig> {
    runtime.config.sources.iter().find(|s| s.id == id)
}

/// Puts the current secrets back wherever `input` holds the redaction marker.
fn restore_secrets(input: &mut SourceInput, current: &SourceConfig) {
    let plain = plain_document(current);
    if let Some(verifier) = &mut input.verifier {
        restore_redacted(verifier, &plain["verifier"]);
    }
    if let Some(settings) = &mut input.settings {
        restore_redacted(settings, &plain["settings"]);
    }
}

/// Replaces a source; values sent as `********` keep the current secrets (shared with the
/// dashboard).
pub async fn replace_source(
    state: &AppState,
    id: &str,
    mut input: SourceInput,
) -> ApiResult<Source> {
    check_path_id(id, &input.id)?;
    let runtime = state.registry.current();
    let current = lookup(&runtime, id).ok_or_else(|| not_found(Kind::Source, id))?;
    restore_secrets(&mut input, current);
    let config = to_config(input)?;
    apply(state, Change::PutSource(config, false)).await?;
    find(state, id)
}

/// Applies a JSON merge patch (RFC 7396) to the source's [`document`] and stores the result
/// (shared with the dashboard's enable/disable).
pub async fn patch_source(state: &AppState, id: &str, patch: Value) -> ApiResult<Source> {
    let mut doc = document(state, id)?;
    merge_patch(&mut doc, patch);
    let input: SourceInput = from_value(doc)?;
    replace_source(state, id, input).await
}

fn find(state: &AppState, id: &str) -> Result<Source, Problem> {
    let runtime = state.registry.current();
    lookup(&runtime, id)
        .map(|s| view(&runtime, s))
        .ok_or_else(|| not_found(Kind::Source, id))
}

/// Lists sources.
#[utoipa::path(get, path = "/sources", tag = "sources",
    responses((status = 200, body = Vec<Source>), (status = 401, body = Problem)), security(("bearer" = [])))]
pub async fn list(_auth: Auth<Read>, State(state): State<Arc<AppState>>) -> Json<Vec<Source>> {
    Json(all(&state))
}

/// Every source, as the API shows them (shared with the dashboard).
pub fn all(state: &AppState) -> Vec<Source> {
    let runtime = state.registry.current();
    runtime
        .config
        .sources
        .iter()
        .map(|s| view(&runtime, s))
        .collect()
}

/// One source.
#[utoipa::path(get, path = "/sources/{id}", tag = "sources", params(("id" = String, Path, description = "Source id")),
    responses((status = 200, body = Source), (status = 401, body = Problem), (status = 404, body = Problem)), security(("bearer" = [])))]
pub async fn get(
    _auth: Auth<Read>,
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> ApiResult<Json<Source>> {
    find(&state, &id).map(Json)
}

/// Creates a source.
#[utoipa::path(post, path = "/sources", tag = "sources", request_body = SourceInput,
    responses((status = 201, body = Source), (status = 401, body = Problem), (status = 403, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem)),
    security(("bearer" = [])))]
pub async fn create(
    _auth: Auth<Write>,
    State(state): State<Arc<AppState>>,
    ApiJson(input): ApiJson<SourceInput>,
) -> ApiResult<(StatusCode, Json<Source>)> {
    Ok((
        StatusCode::CREATED,
        Json(create_source(&state, input).await?),
    ))
}

/// Validates and stores a new source (shared with the dashboard).
pub async fn create_source(state: &AppState, input: SourceInput) -> ApiResult<Source> {
    let config = to_config(input)?;
    let id = config.id.clone();
    apply(state, Change::PutSource(config, true)).await?;
    find(state, &id)
}

/// Replaces a source.
#[utoipa::path(put, path = "/sources/{id}", tag = "sources", params(("id" = String, Path, description = "Source id")), request_body = SourceInput,
    responses((status = 200, body = Source), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem)),
    security(("bearer" = [])))]
pub async fn update(
    _auth: Auth<Write>,
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    ApiJson(input): ApiJson<SourceInput>,
) -> ApiResult<Json<Source>> {
    replace_source(&state, &id, input).await.map(Json)
}

/// Changes part of a source: a JSON merge patch (RFC 7396) of the body `PUT` takes, e.g.
/// `{"enabled": false}` or `{"verifier": {"secrets": ["new", "********"]}}` (a redacted value
/// keeps the current secret).
#[utoipa::path(patch, path = "/sources/{id}", tag = "sources", params(("id" = String, Path, description = "Source id")),
    request_body(content = Object, content_type = "application/merge-patch+json"),
    responses((status = 200, body = Source), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem)),
    security(("bearer" = [])))]
pub async fn patch(
    _auth: Auth<Write>,
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    ApiJson(patch): ApiJson<Value>,
) -> ApiResult<Json<Source>> {
    patch_source(&state, &id, super::resources::patch_object(patch)?)
        .await
        .map(Json)
}

/// Deletes a source (refused while routes use it).
#[utoipa::path(delete, path = "/sources/{id}", tag = "sources", params(("id" = String, Path, description = "Source id")),
    responses((status = 204, description = "Deleted"), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem)),
    security(("bearer" = [])))]
pub async fn delete(
    _auth: Auth<Write>,
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    apply(&state, Change::Delete(Kind::Source, id)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Routes of this resource.
pub fn router() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(get, update, patch, delete))
}
