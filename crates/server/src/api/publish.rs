//! `POST /v1/tenants/{tenant}/events`: publish one message to a tenant. It fans out to every
//! enabled endpoint of the tenant whose event types and channels match, in the same durable
//! transaction as the event (`202` means stored). An `idempotency_key` makes a repeat return the
//! original event. A payload that violates its event type's JSON Schema is refused with `422`.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use switchboard_core::ids::{new_delivery_id, new_event_id};
use switchboard_core::outbound::{PUBLISH_ROUTE, PUBLISH_SOURCE, is_valid_event_type};
use switchboard_core::time::now_millis;
use switchboard_store::{InsertOutcome, NewDelivery, NewEvent};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::ApiResult;
use super::auth::{Auth, Write};
use super::extract::ApiJson;
use super::resources::not_found;
use crate::delivery::destinations::is_reserved_header;
use crate::ingest::commit::CommitError;
use crate::problem::{FieldError, Problem};
use crate::runtime::Kind;
use crate::state::AppState;

/// A message to publish.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PublishInput {
    /// Event type, e.g. `invoice.paid`.
    #[serde(rename = "type")]
    #[schema(pattern = "^[A-Za-z0-9._:-]{1,128}$")]
    pub event_type: String,
    /// The JSON payload sent to endpoints (validated against the type's schema, if any).
    #[schema(value_type = serde_json::Value)]
    pub payload: Value,
    /// Channels; endpoints that listen on channels receive only messages on one of theirs.
    #[serde(default)]
    pub channels: Vec<String>,
    /// A repeat with the same key returns the original event instead of publishing again.
    pub idempotency_key: Option<String>,
    /// Extra headers sent with this message's deliveries.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// FIFO key for ordered endpoints (default: the endpoint as a whole).
    pub ordering_key: Option<String>,
}

/// The published event.
#[derive(Debug, Serialize, ToSchema)]
pub struct Published {
    /// Event id (the original one for a repeated `idempotency_key`).
    pub id: String,
    /// Endpoints the message was queued for (0 for a repeat).
    pub endpoints: u64,
    /// Whether this was a repeat of an earlier publish.
    pub duplicate: bool,
}

/// Publishes a message to a tenant's endpoints.
#[utoipa::path(post, path = "/tenants/{tenant}/events", tag = "tenants", params(("tenant" = String, Path, description = "Tenant id")), request_body = PublishInput,
    responses((status = 202, body = Published), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem), (status = 422, body = Problem), (status = 503, body = Problem)),
    security(("bearer" = [])))]
pub async fn publish(
    _auth: Auth<Write>,
    State(state): State<Arc<AppState>>,
    Path(tenant): Path<String>,
    ApiJson(input): ApiJson<PublishInput>,
) -> ApiResult<(StatusCode, Json<Published>)> {
    let runtime = state.registry.current();
    if !runtime.tenants.contains_key(&tenant) {
        return Err(not_found(Kind::Tenant, &tenant));
    }
    if !is_valid_event_type(&input.event_type) {
        return Err(Problem::field(
            "type",
            "type must be 1-128 characters of letters, digits, `.`, `_`, `-` or `:`",
        ));
    }
    if let Some(event_type) = runtime.event_types.get(&input.event_type) {
        let violations = event_type.violations(&input.payload);
        if !violations.is_empty() {
            let errors = violations
                .into_iter()
                .map(|(path, message)| FieldError {
                    field: format!("payload{}", path.replace('/', ".")),
                    message,
                })
                .collect::<Vec<_>>();
            return Err(Problem::validation(
                format!(
                    "the payload does not match the schema of `{}`: {}",
                    input.event_type, errors[0].message
                ),
                errors,
            ));
        }
    }
    if let Some(key) = &input.idempotency_key
        && (key.is_empty() || key.len() > 256)
    {
        return Err(Problem::field(
            "idempotency_key",
            "idempotency_key must be 1-256 characters",
        ));
    }
    let mut forward_headers = Vec::with_capacity(input.headers.len());
    for (name, value) in &input.headers {
        let valid = reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_ok()
            && reqwest::header::HeaderValue::from_str(value).is_ok();
        if !valid || is_reserved_header(name) {
            return Err(Problem::field(
                &format!("headers.{name}"),
                format!("header `{name}` is not a valid extra header (or is set by Switchboard)"),
            ));
        }
        forward_headers.push((name.to_ascii_lowercase(), value.clone()));
    }
    let deliveries: Vec<NewDelivery> = runtime
        .tenant_endpoints(&tenant)
        .filter(|e| e.enabled && e.subscribes(&input.event_type, &input.channels))
        .map(|e| NewDelivery {
            id: new_delivery_id(),
            route_id: PUBLISH_ROUTE.into(),
            destination: e.id.clone(),
            ordering_key: e
                .ordered
                .then(|| input.ordering_key.clone().unwrap_or_default()),
        })
        .collect();
    let endpoints = deliveries.len() as u64;
    let body = serde_json::to_vec(&input.payload).map_err(super::internal)?;
    let event = NewEvent {
        id: new_event_id(),
        source: PUBLISH_SOURCE.into(),
        tenant: Some(tenant.clone()),
        event_type: Some(input.event_type.clone()),
        // Scoped by tenant: the same key used by two tenants names two events.
        dedup_key: input.idempotency_key.map(|key| format!("{tenant}:{key}")),
        headers: Vec::new(),
        content_type: Some("application/json".into()),
        body,
        received_at: now_millis(),
        forward_headers,
        deliveries,
    };
    let id = event.id.clone();
    match state.committer.commit(event).await {
        Ok(InsertOutcome::Inserted) => {
            tracing::debug!(event = %id, %tenant, endpoints, "published");
            Ok((
                StatusCode::ACCEPTED,
                Json(Published {
                    id,
                    endpoints,
                    duplicate: false,
                }),
            ))
        }
        Ok(InsertOutcome::Duplicate { original_id }) => Ok((
            StatusCode::ACCEPTED,
            Json(Published {
                id: original_id,
                endpoints: 0,
                duplicate: true,
            }),
        )),
        Err(CommitError::Closed) => Err(Problem::unavailable("the server is shutting down")),
        Err(CommitError::Store(error)) => Err(super::internal(error)),
    }
}

/// Routes of this resource.
pub fn router() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new().routes(routes!(publish))
}
