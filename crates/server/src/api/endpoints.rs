//! `/v1/tenants/{tenant}/endpoints`: a tenant's webhook endpoints, their secrets (generated when
//! not given, rotated with a grace period), health (circuit state, failures), ordering holds,
//! recovery of failed deliveries and resending of single events.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use switchboard_core::ids::new_delivery_id;
use switchboard_core::outbound::{
    DEFAULT_ROTATION_GRACE, EndpointSpec, ExpiringSecret, PUBLISH_ROUTE,
};
use switchboard_core::time::{format_rfc3339, now_millis};
use switchboard_signatures::standard_webhooks::SigningKey;
use switchboard_store::{DeliveryFilter, NewDelivery, ReplaySelector};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::{Auth, Read, Write};
use super::extract::ApiJson;
use super::resources::{apply, from_value, not_found, stamps};
use super::{ApiResult, internal, parse_time};
use crate::problem::Problem;
use crate::runtime::{Change, Kind, Runtime};
use crate::state::AppState;

/// An endpoint as the API shows it (the secret only on creation and through `/secret`).
#[derive(Debug, Serialize, ToSchema)]
pub struct Endpoint {
    /// `ep_…`
    pub id: String,
    /// Owning tenant.
    pub tenant: String,
    /// Target URL.
    pub url: String,
    /// Description.
    pub description: String,
    /// Event types it receives (empty: all).
    pub event_types: Vec<String>,
    /// Channels it listens on (empty: every message).
    pub channels: Vec<String>,
    /// Whether it receives messages.
    pub enabled: bool,
    /// Why Switchboard disabled it.
    pub disabled_reason: Option<String>,
    /// Extra request headers.
    pub headers: BTreeMap<String, String>,
    /// Deliveries per second at most.
    pub rate_limit: Option<f64>,
    /// FIFO per ordering key.
    pub ordered: bool,
    /// jq transform applied before signing.
    pub transform: Option<String>,
    /// Per-attempt timeout.
    pub timeout: String,
    /// Retry policy.
    #[schema(value_type = Object)]
    pub retry: Value,
    /// In-flight cap.
    pub max_in_flight: Option<u64>,
    /// The signing secret: present in the response that created the endpoint.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// Created.
    pub created_at: Option<String>,
    /// Last change.
    pub updated_at: Option<String>,
}

/// An endpoint to create. Every field but `url` is optional.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EndpointInput {
    /// Id to use (1–64 letters, digits, `-`, `_`); generated (`ep_…`) when absent.
    #[schema(pattern = "^[A-Za-z0-9_-]{1,64}$")]
    pub id: Option<String>,
    /// `http://` or `https://` URL.
    #[schema(pattern = "^https?://[^/?#]")]
    pub url: String,
    /// Description.
    pub description: Option<String>,
    /// Event types it receives (empty or absent: all).
    pub event_types: Option<Vec<String>>,
    /// Channels it listens on (empty or absent: every message).
    pub channels: Option<Vec<String>>,
    /// `whsec_…` secret; generated when absent.
    pub secret: Option<String>,
    /// Deliveries per second at most.
    #[schema(minimum = 0.001)]
    pub rate_limit: Option<f64>,
    /// Extra request headers.
    pub headers: Option<BTreeMap<String, String>>,
    /// Whether it receives messages (default true).
    pub enabled: Option<bool>,
    /// FIFO per ordering key (default false).
    pub ordered: Option<bool>,
    /// jq transform of the message before it is signed and sent.
    pub transform: Option<String>,
    /// Per-attempt timeout, e.g. `15s`.
    pub timeout: Option<String>,
    /// Retry policy, as for destinations.
    #[schema(value_type = Option<Object>)]
    pub retry: Option<Value>,
    /// In-flight cap.
    #[schema(minimum = 1)]
    pub max_in_flight: Option<u64>,
}

/// Changes to an endpoint: absent fields keep their value; `null` clears an optional one.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EndpointPatch {
    /// New URL.
    pub url: Option<String>,
    /// New description.
    pub description: Option<String>,
    /// New event types.
    pub event_types: Option<Vec<String>>,
    /// New channels.
    pub channels: Option<Vec<String>>,
    /// New rate limit (`null`: unlimited).
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<f64>)]
    pub rate_limit: Option<Option<f64>>,
    /// New headers.
    pub headers: Option<BTreeMap<String, String>>,
    /// Enable (clears an automatic disable and the failure history) or disable.
    pub enabled: Option<bool>,
    /// FIFO per ordering key.
    pub ordered: Option<bool>,
    /// New transform (`null`: none).
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>)]
    pub transform: Option<Option<String>>,
    /// New timeout.
    pub timeout: Option<String>,
    /// New retry policy.
    #[schema(value_type = Option<Object>)]
    pub retry: Option<Value>,
    /// New in-flight cap (`null`: the default).
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<u64>)]
    pub max_in_flight: Option<Option<u64>>,
}

fn nullable<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

/// An endpoint's signing secret.
#[derive(Debug, Serialize, ToSchema)]
pub struct EndpointSecret {
    /// The current `whsec_…` secret.
    pub secret: String,
    /// Rotated-out secrets still signing, with when they stop.
    pub previous: Vec<PreviousSecret>,
}

/// A rotated-out secret in its grace period.
#[derive(Debug, Serialize, ToSchema)]
pub struct PreviousSecret {
    /// Its expiry (RFC 3339).
    pub expires_at: String,
}

/// A rotation request.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateInput {
    /// The new `whsec_…` secret; generated when absent.
    pub secret: Option<String>,
    /// How long the old secret keeps signing, e.g. `24h` (default) or `0s`.
    pub grace: Option<String>,
}

/// The result of a rotation.
#[derive(Debug, Serialize, ToSchema)]
pub struct Rotated {
    /// The new secret.
    pub secret: String,
    /// Until when the previous secret also signs (RFC 3339), if it does.
    pub previous_expires_at: Option<String>,
}

/// An endpoint's health.
#[derive(Debug, Serialize, ToSchema)]
pub struct EndpointHealth {
    /// Endpoint id.
    pub endpoint_id: String,
    /// `closed` (deliveries flow), `open` (waiting for the cooldown) or `half_open` (probing).
    pub circuit_state: String,
    /// Failed attempts since the last success.
    pub consecutive_failures: u32,
    /// First failure after the last success.
    pub failing_since: Option<String>,
    /// Last failed attempt.
    pub last_failure_at: Option<String>,
    /// Last successful attempt.
    pub last_success_at: Option<String>,
    /// Error of the last failed attempt.
    pub last_error: Option<String>,
    /// When the circuit last opened.
    pub opened_at: Option<String>,
    /// Whether the endpoint is disabled.
    pub disabled: bool,
    /// Why Switchboard disabled it.
    pub disabled_reason: Option<String>,
    /// Deliveries waiting (pending).
    pub pending: u64,
}

/// `{"since": RFC 3339}`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RecoverInput {
    /// Re-send the deliveries that failed at or after this time.
    pub since: String,
}

/// How many deliveries were queued.
#[derive(Debug, Serialize, ToSchema)]
pub struct Queued {
    /// Deliveries queued.
    pub queued: u64,
}

/// `{"event_id": …}`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResendInput {
    /// The event to send to this endpoint again.
    pub event_id: String,
}

/// A resend's result.
#[derive(Debug, Serialize, ToSchema)]
pub struct Resent {
    /// The delivery that will carry it (its id is the `webhook-id`).
    pub delivery_id: String,
}

/// An ordering key held back by a dead-lettered delivery.
#[derive(Debug, Serialize, ToSchema)]
pub struct Hold {
    /// The key (`""`: the endpoint as a whole).
    pub ordering_key: String,
    /// The failed delivery at its head.
    pub delivery_id: String,
    /// Its event.
    pub event_id: String,
    /// When it failed.
    pub failed_at: String,
    /// Its last error.
    pub last_error: Option<String>,
    /// Deliveries waiting behind it.
    pub waiting: u64,
}

/// `{"ordering_key": …}`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReleaseInput {
    /// The key to release (`""` for an endpoint ordered as a whole).
    pub ordering_key: String,
}

/// How many held deliveries were released.
#[derive(Debug, Serialize, ToSchema)]
pub struct Released {
    /// Dead-lettered deliveries that no longer block their key.
    pub released: u64,
}

/// A fresh `whsec_…` secret (24 random bytes).
pub fn generate_secret() -> String {
    let mut key = [0u8; 24];
    rand::fill(&mut key);
    SigningKey::from_bytes(key.to_vec()).to_secret()
}

/// Parses the policy fields through the endpoint spec (same rules as in configuration).
fn spec_from(value: Value) -> Result<EndpointSpec, Problem> {
    let spec: EndpointSpec = from_value(value)?;
    spec.validate().map_err(|message| {
        let field = [
            "url",
            "secret",
            "rate_limit",
            "timeout",
            "max_in_flight",
            "retry",
        ]
        .into_iter()
        .find(|f| message.starts_with(f))
        .unwrap_or("event_types");
        Problem::field(field, message)
    })?;
    if let Some(transform) = &spec.transform {
        switchboard_jq::Program::compile(transform)
            .map_err(|e| Problem::field("transform", e.to_string()))?;
    }
    crate::delivery::destinations::parse_headers("endpoint", &spec.headers)
        .map_err(|e| Problem::field("headers", e))?;
    Ok(spec)
}

fn view(runtime: &Runtime, spec: &EndpointSpec, with_secret: bool) -> Endpoint {
    let (created_at, updated_at) = stamps(runtime, Kind::Endpoint, &spec.id);
    Endpoint {
        id: spec.id.clone(),
        tenant: spec.tenant.clone(),
        url: spec.url.clone(),
        description: spec.description.clone(),
        event_types: spec.event_types.clone(),
        channels: spec.channels.clone(),
        enabled: spec.enabled,
        disabled_reason: spec.disabled_reason.clone(),
        headers: spec.headers.clone(),
        rate_limit: spec.rate_limit,
        ordered: spec.ordered,
        transform: spec.transform.clone(),
        timeout: humantime::format_duration(spec.timeout).to_string(),
        retry: serde_json::to_value(&spec.retry).unwrap_or(Value::Null),
        max_in_flight: spec.max_in_flight.map(|n| n as u64),
        secret: with_secret.then(|| spec.secret.clone()),
        created_at,
        updated_at,
    }
}

/// The endpoint `id` of `tenant`, or `404` (also when the tenant does not exist).
fn lookup(runtime: &Runtime, tenant: &str, id: &str) -> Result<EndpointSpec, Problem> {
    if !runtime.tenants.contains_key(tenant) {
        return Err(not_found(Kind::Tenant, tenant));
    }
    runtime
        .endpoints
        .get(id)
        .filter(|e| e.tenant == tenant)
        .cloned()
        .ok_or_else(|| not_found(Kind::Endpoint, id))
}

/// Lists a tenant's endpoints.
#[utoipa::path(get, path = "/tenants/{tenant}/endpoints", tag = "endpoints", params(("tenant" = String, Path, description = "Tenant id")),
    responses((status = 200, body = Vec<Endpoint>), (status = 401, body = Problem), (status = 404, body = Problem)), security(("bearer" = [])))]
pub async fn list(
    _auth: Auth<Read>,
    State(state): State<Arc<AppState>>,
    Path(tenant): Path<String>,
) -> ApiResult<Json<Vec<Endpoint>>> {
    let runtime = state.registry.current();
    if !runtime.tenants.contains_key(&tenant) {
        return Err(not_found(Kind::Tenant, &tenant));
    }
    Ok(Json(
        runtime
            .tenant_endpoints(&tenant)
            .map(|e| view(&runtime, e, false))
            .collect(),
    ))
}

/// Creates an endpoint; the response carries its secret.
#[utoipa::path(post, path = "/tenants/{tenant}/endpoints", tag = "endpoints", params(("tenant" = String, Path, description = "Tenant id")), request_body = EndpointInput,
    responses((status = 201, body = Endpoint), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem)),
    security(("bearer" = [])))]
pub async fn create(
    _auth: Auth<Write>,
    State(state): State<Arc<AppState>>,
    Path(tenant): Path<String>,
    ApiJson(input): ApiJson<EndpointInput>,
) -> ApiResult<(StatusCode, Json<Endpoint>)> {
    Ok((
        StatusCode::CREATED,
        Json(create_endpoint(&state, &tenant, input).await?),
    ))
}

/// Validates and stores a new endpoint of `tenant`; the secret is generated when absent
/// (shared with the dashboard).
pub async fn create_endpoint(
    state: &AppState,
    tenant: &str,
    input: EndpointInput,
) -> ApiResult<Endpoint> {
    if !state.registry.current().tenants.contains_key(tenant) {
        return Err(not_found(Kind::Tenant, tenant));
    }
    let id = match input.id {
        Some(id) if switchboard_core::ids::is_valid_resource_id(&id) => id,
        Some(_) => {
            return Err(Problem::field(
                "id",
                "endpoint id must be 1-64 characters of letters, digits, `-` or `_`",
            ));
        }
        None => format!("ep_{}", uuid::Uuid::now_v7().simple()),
    };
    let mut value = json!({
        "id": id,
        "tenant": tenant,
        "url": input.url,
        "secret": input.secret.unwrap_or_else(generate_secret),
    });
    let optional = [
        ("description", input.description.map(Value::from)),
        ("event_types", input.event_types.map(|v| json!(v))),
        ("channels", input.channels.map(|v| json!(v))),
        ("rate_limit", input.rate_limit.map(|v| json!(v))),
        ("headers", input.headers.map(|v| json!(v))),
        ("enabled", input.enabled.map(Value::from)),
        ("ordered", input.ordered.map(Value::from)),
        ("transform", input.transform.map(Value::from)),
        ("timeout", input.timeout.map(Value::from)),
        ("retry", input.retry),
        ("max_in_flight", input.max_in_flight.map(Value::from)),
    ];
    for (key, item) in optional {
        if let Some(item) = item {
            value[key] = item;
        }
    }
    let spec = spec_from(value)?;
    apply(state, Change::PutEndpoint(spec.clone(), true)).await?;
    let runtime = state.registry.current();
    Ok(view(&runtime, &spec, true))
}

/// One endpoint.
#[utoipa::path(get, path = "/tenants/{tenant}/endpoints/{id}", tag = "endpoints",
    params(("tenant" = String, Path, description = "Tenant id"), ("id" = String, Path, description = "Endpoint id")),
    responses((status = 200, body = Endpoint), (status = 401, body = Problem), (status = 404, body = Problem)), security(("bearer" = [])))]
pub async fn get(
    _auth: Auth<Read>,
    State(state): State<Arc<AppState>>,
    Path((tenant, id)): Path<(String, String)>,
) -> ApiResult<Json<Endpoint>> {
    get_endpoint(&state, &tenant, &id).map(Json)
}

/// One endpoint as the API shows it, secret left out (shared with the dashboard).
pub fn get_endpoint(state: &AppState, tenant: &str, id: &str) -> Result<Endpoint, Problem> {
    let runtime = state.registry.current();
    let spec = lookup(&runtime, tenant, id)?;
    Ok(view(&runtime, &spec, false))
}

/// Changes an endpoint. Enabling a disabled endpoint clears its failure history.
#[utoipa::path(patch, path = "/tenants/{tenant}/endpoints/{id}", tag = "endpoints",
    params(("tenant" = String, Path, description = "Tenant id"), ("id" = String, Path, description = "Endpoint id")), request_body = EndpointPatch,
    responses((status = 200, body = Endpoint), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem), (status = 422, body = Problem)),
    security(("bearer" = [])))]
pub async fn update(
    _auth: Auth<Write>,
    State(state): State<Arc<AppState>>,
    Path((tenant, id)): Path<(String, String)>,
    ApiJson(patch): ApiJson<EndpointPatch>,
) -> ApiResult<Json<Endpoint>> {
    patch_endpoint(&state, &tenant, &id, patch).await.map(Json)
}

/// Applies a patch to an endpoint (shared with the dashboard's enable/disable).
pub async fn patch_endpoint(
    state: &AppState,
    tenant: &str,
    id: &str,
    patch: EndpointPatch,
) -> ApiResult<Endpoint> {
    let current = lookup(&state.registry.current(), tenant, id)?;
    let was_enabled = current.enabled;
    let mut value = serde_json::to_value(&current).map_err(internal)?;
    let changes = [
        ("url", patch.url.map(Value::from)),
        ("description", patch.description.map(Value::from)),
        ("event_types", patch.event_types.map(|v| json!(v))),
        ("channels", patch.channels.map(|v| json!(v))),
        ("rate_limit", patch.rate_limit.map(|v| json!(v))),
        ("headers", patch.headers.map(|v| json!(v))),
        ("enabled", patch.enabled.map(Value::from)),
        ("ordered", patch.ordered.map(Value::from)),
        ("transform", patch.transform.map(|v| json!(v))),
        ("timeout", patch.timeout.map(Value::from)),
        ("retry", patch.retry),
        ("max_in_flight", patch.max_in_flight.map(|v| json!(v))),
    ];
    for (key, item) in changes {
        if let Some(item) = item {
            value[key] = item;
        }
    }
    let mut spec = spec_from(value)?;
    let re_enabled = spec.enabled && !was_enabled;
    if spec.enabled {
        spec.disabled_reason = None;
    }
    apply(state, Change::PutEndpoint(spec.clone(), false)).await?;
    if re_enabled {
        state.health.reset(id, now_millis());
    }
    state.due.unknown(id);
    state.wake.notify_one();
    let runtime = state.registry.current();
    Ok(view(&runtime, &spec, false))
}

/// Deletes an endpoint. Its pending deliveries are cancelled; the history stays.
#[utoipa::path(delete, path = "/tenants/{tenant}/endpoints/{id}", tag = "endpoints",
    params(("tenant" = String, Path, description = "Tenant id"), ("id" = String, Path, description = "Endpoint id")),
    responses((status = 204, description = "Deleted"), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem)),
    security(("bearer" = [])))]
pub async fn delete(
    _auth: Auth<Write>,
    State(state): State<Arc<AppState>>,
    Path((tenant, id)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    delete_endpoint(&state, &tenant, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Deletes an endpoint and cancels what still waits for it (shared with the dashboard).
pub async fn delete_endpoint(state: &AppState, tenant: &str, id: &str) -> Result<(), Problem> {
    lookup(&state.registry.current(), tenant, id)?;
    apply(state, Change::Delete(Kind::Endpoint, id.to_owned())).await?;
    // Nothing will ever send what still waits for it: cancel it (the history stays).
    let cancelled = state
        .store
        .cancel_pending(id, now_millis())
        .await
        .map_err(internal)?;
    tracing::info!(endpoint = %id, cancelled, "endpoint deleted");
    Ok(())
}

/// The endpoint's signing secret.
#[utoipa::path(get, path = "/tenants/{tenant}/endpoints/{id}/secret", tag = "endpoints",
    params(("tenant" = String, Path, description = "Tenant id"), ("id" = String, Path, description = "Endpoint id")),
    responses((status = 200, body = EndpointSecret), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem)),
    security(("bearer" = [])))]
pub async fn secret(
    _auth: Auth<Write>,
    State(state): State<Arc<AppState>>,
    Path((tenant, id)): Path<(String, String)>,
) -> ApiResult<Json<EndpointSecret>> {
    let spec = lookup(&state.registry.current(), &tenant, &id)?;
    let now = now_millis();
    Ok(Json(EndpointSecret {
        secret: spec.secret.clone(),
        previous: spec
            .previous_secrets
            .iter()
            .filter(|s| s.expires_at > now)
            .map(|s| PreviousSecret {
                expires_at: format_rfc3339(s.expires_at),
            })
            .collect(),
    }))
}

/// Rotates the signing secret. The previous secret keeps signing for the grace period
/// (default 24 h): deliveries then carry both signatures, so receivers can switch at leisure.
#[utoipa::path(post, path = "/tenants/{tenant}/endpoints/{id}/rotate-secret", tag = "endpoints",
    params(("tenant" = String, Path, description = "Tenant id"), ("id" = String, Path, description = "Endpoint id")), request_body = RotateInput,
    responses((status = 200, body = Rotated), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem), (status = 422, body = Problem)),
    security(("bearer" = [])))]
pub async fn rotate_secret(
    _auth: Auth<Write>,
    State(state): State<Arc<AppState>>,
    Path((tenant, id)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> ApiResult<Json<Rotated>> {
    // The body is optional: an empty POST rotates to a generated secret.
    let input: RotateInput = if body.iter().all(u8::is_ascii_whitespace) {
        RotateInput::default()
    } else {
        super::extract::parse_json(&body)?
    };
    rotate(&state, &tenant, &id, input).await.map(Json)
}

/// Rotates an endpoint's signing secret (shared with the dashboard).
pub async fn rotate(
    state: &AppState,
    tenant: &str,
    id: &str,
    input: RotateInput,
) -> ApiResult<Rotated> {
    let mut spec = lookup(&state.registry.current(), tenant, id)?;
    let grace = match input.grace.as_deref() {
        None => DEFAULT_ROTATION_GRACE,
        Some(text) => humantime::parse_duration(text)
            .map_err(|e| Problem::field("grace", format!("grace `{text}`: {e}")))?,
    };
    if grace > Duration::from_secs(30 * 24 * 3600) {
        return Err(Problem::field("grace", "grace must be at most 30 days"));
    }
    let now = now_millis();
    let new_secret = input.secret.unwrap_or_else(generate_secret);
    let previous = std::mem::replace(&mut spec.secret, new_secret.clone());
    let expires_at = now + grace.as_millis() as i64;
    spec.previous_secrets.retain(|s| s.expires_at > now);
    if !grace.is_zero() {
        spec.previous_secrets.insert(
            0,
            ExpiringSecret {
                secret: previous,
                expires_at,
            },
        );
    }
    spec.validate()
        .map_err(|message| Problem::field("secret", message))?;
    apply(state, Change::PutEndpoint(spec, false)).await?;
    Ok(Rotated {
        secret: new_secret,
        previous_expires_at: (!grace.is_zero()).then(|| format_rfc3339(expires_at)),
    })
}

/// The endpoint's health: circuit state, failures, last error, disabled flag.
#[utoipa::path(get, path = "/tenants/{tenant}/endpoints/{id}/health", tag = "endpoints",
    params(("tenant" = String, Path, description = "Tenant id"), ("id" = String, Path, description = "Endpoint id")),
    responses((status = 200, body = EndpointHealth), (status = 401, body = Problem), (status = 404, body = Problem)), security(("bearer" = [])))]
pub async fn health(
    _auth: Auth<Read>,
    State(state): State<Arc<AppState>>,
    Path((tenant, id)): Path<(String, String)>,
) -> ApiResult<Json<EndpointHealth>> {
    let spec = lookup(&state.registry.current(), &tenant, &id)?;
    let record = state.health.get(&id);
    let pending = state
        .store
        .list_deliveries(&DeliveryFilter {
            status: Some(switchboard_core::DeliveryStatus::Pending),
            destination: Some(id.clone()),
            limit: 10_001,
            ..DeliveryFilter::default()
        })
        .await
        .map_err(internal)?
        .len() as u64;
    let time = |t: Option<i64>| t.map(format_rfc3339);
    Ok(Json(EndpointHealth {
        endpoint_id: id,
        circuit_state: record
            .as_ref()
            .map_or_else(|| "closed".into(), |r| r.state.clone()),
        consecutive_failures: record.as_ref().map_or(0, |r| r.consecutive_failures),
        failing_since: time(record.as_ref().and_then(|r| r.failing_since)),
        last_failure_at: time(record.as_ref().and_then(|r| r.last_failure_at)),
        last_success_at: time(record.as_ref().and_then(|r| r.last_success_at)),
        last_error: record.as_ref().and_then(|r| r.last_error.clone()),
        opened_at: time(record.as_ref().and_then(|r| r.opened_at)),
        disabled: !spec.enabled,
        disabled_reason: spec.disabled_reason,
        pending,
    }))
}

/// Re-sends every delivery to this endpoint that failed at or after `since`.
#[utoipa::path(post, path = "/tenants/{tenant}/endpoints/{id}/recover", tag = "endpoints",
    params(("tenant" = String, Path, description = "Tenant id"), ("id" = String, Path, description = "Endpoint id")), request_body = RecoverInput,
    responses((status = 200, body = Queued), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem), (status = 422, body = Problem)),
    security(("bearer" = [])))]
pub async fn recover(
    _auth: Auth<Write>,
    State(state): State<Arc<AppState>>,
    Path((tenant, id)): Path<(String, String)>,
    ApiJson(input): ApiJson<RecoverInput>,
) -> ApiResult<Json<Queued>> {
    lookup(&state.registry.current(), &tenant, &id)?;
    let since = parse_time("since", &input.since)?;
    let queued = state
        .store
        .replay(
            &ReplaySelector::FailedForDestination {
                destination: id.clone(),
                since,
            },
            now_millis(),
        )
        .await
        .map_err(internal)?;
    state.due.unknown(&id);
    state.wake.notify_one();
    Ok(Json(Queued { queued }))
}

/// Sends one event to this endpoint again (or for the first time, if it was created later).
#[utoipa::path(post, path = "/tenants/{tenant}/endpoints/{id}/resend", tag = "endpoints",
    params(("tenant" = String, Path, description = "Tenant id"), ("id" = String, Path, description = "Endpoint id")), request_body = ResendInput,
    responses((status = 202, body = Resent), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem)),
    security(("bearer" = [])))]
pub async fn resend(
    _auth: Auth<Write>,
    State(state): State<Arc<AppState>>,
    Path((tenant, id)): Path<(String, String)>,
    ApiJson(input): ApiJson<ResendInput>,
) -> ApiResult<(StatusCode, Json<Resent>)> {
    let spec = lookup(&state.registry.current(), &tenant, &id)?;
    let event = state
        .store
        .get_event(&input.event_id)
        .await
        .map_err(internal)?
        .filter(|e| e.tenant.as_deref() == Some(tenant.as_str()))
        .ok_or_else(|| {
            Problem::not_found(format!(
                "no event `{}` for tenant `{tenant}`",
                input.event_id
            ))
        })?;
    if event.body_pruned_at.is_some() {
        return Err(Problem::conflict(
            "payload_expired",
            "the event's payload was removed by retention; it cannot be sent again",
        ));
    }
    let existing = state
        .store
        .list_deliveries(&DeliveryFilter {
            event_id: Some(event.id.clone()),
            destination: Some(id.clone()),
            limit: 1,
            ..DeliveryFilter::default()
        })
        .await
        .map_err(internal)?;
    let now = now_millis();
    let delivery_id = match existing.into_iter().next() {
        Some(delivery) if delivery.status == switchboard_core::DeliveryStatus::InFlight => {
            return Err(Problem::conflict(
                "in_flight",
                format!("delivery `{}` is being attempted right now", delivery.id),
            ));
        }
        Some(delivery) => {
            state
                .store
                .replay(&ReplaySelector::Delivery(delivery.id.clone()), now)
                .await
                .map_err(internal)?;
            delivery.id
        }
        None => {
            let delivery = NewDelivery {
                id: new_delivery_id(),
                route_id: PUBLISH_ROUTE.into(),
                destination: id.clone(),
                ordering_key: spec.ordered.then(String::new),
            };
            let id = delivery.id.clone();
            state
                .store
                .add_deliveries(&event.id, &[delivery], now)
                .await
                .map_err(internal)?;
            id
        }
    };
    state.due.unknown(&id);
    state.wake.notify_one();
    Ok((StatusCode::ACCEPTED, Json(Resent { delivery_id })))
}

/// Ordering keys held back by a dead-lettered delivery.
#[utoipa::path(get, path = "/tenants/{tenant}/endpoints/{id}/holds", tag = "endpoints",
    params(("tenant" = String, Path, description = "Tenant id"), ("id" = String, Path, description = "Endpoint id")),
    responses((status = 200, body = Vec<Hold>), (status = 401, body = Problem), (status = 404, body = Problem)), security(("bearer" = [])))]
pub async fn holds(
    _auth: Auth<Read>,
    State(state): State<Arc<AppState>>,
    Path((tenant, id)): Path<(String, String)>,
) -> ApiResult<Json<Vec<Hold>>> {
    lookup(&state.registry.current(), &tenant, &id)?;
    let holds = state.store.list_holds(&id).await.map_err(internal)?;
    Ok(Json(
        holds
            .into_iter()
            .map(|h| Hold {
                ordering_key: h.ordering_key,
                delivery_id: h.delivery_id,
                event_id: h.event_id,
                failed_at: format_rfc3339(h.failed_at),
                last_error: h.last_error,
                waiting: h.waiting,
            })
            .collect(),
    ))
}

/// Releases a held ordering key: the deliveries behind the dead-lettered one flow again (the
/// dead letter stays failed and can still be replayed).
#[utoipa::path(post, path = "/tenants/{tenant}/endpoints/{id}/holds/release", tag = "endpoints",
    params(("tenant" = String, Path, description = "Tenant id"), ("id" = String, Path, description = "Endpoint id")), request_body = ReleaseInput,
    responses((status = 200, body = Released), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem)),
    security(("bearer" = [])))]
pub async fn release(
    _auth: Auth<Write>,
    State(state): State<Arc<AppState>>,
    Path((tenant, id)): Path<(String, String)>,
    ApiJson(input): ApiJson<ReleaseInput>,
) -> ApiResult<Json<Released>> {
    lookup(&state.registry.current(), &tenant, &id)?;
    let released = state
        .store
        .release_hold(&id, &input.ordering_key, now_millis())
        .await
        .map_err(internal)?;
    state.due.unknown(&id);
    state.wake.notify_one();
    Ok(Json(Released { released }))
}

/// Routes of this resource.
pub fn router() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(get, update, delete))
        .routes(routes!(secret))
        .routes(routes!(rotate_secret))
        .routes(routes!(health))
        .routes(routes!(recover))
        .routes(routes!(resend))
        .routes(routes!(holds))
        .routes(routes!(release))
}
