//! `/v1/event-types`: the catalog of event types, each with an optional JSON Schema that
//! published payloads must satisfy (a violation is answered `422` with the validation errors).

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use switchboard_core::outbound::{EventTypeSpec, is_valid_event_type};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::ApiResult;
use super::auth::{Auth, Read, Write};
use super::extract::ApiJson;
use super::resources::{apply, not_found, stamps};
use crate::problem::Problem;
use crate::runtime::{Change, Kind, Runtime, compile_event_type};
use crate::state::AppState;

/// An event type.
#[derive(Debug, Serialize, ToSchema)]
pub struct EventType {
    /// Name, e.g. `invoice.paid`.
    pub name: String,
    /// What it means.
    pub description: String,
    /// JSON Schema of its payload.
    #[schema(value_type = Option<serde_json::Value>)]
    pub schema: Option<Value>,
    /// Created.
    pub created_at: Option<String>,
    /// Last change.
    pub updated_at: Option<String>,
}

/// An event type to create or replace.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EventTypeInput {
    /// 1–128 letters, digits, `.`, `_`, `-`, `:`.
    #[schema(pattern = "^[A-Za-z0-9._:-]{1,128}$")]
    pub name: String,
    /// What it means.
    #[serde(default)]
    pub description: String,
    /// JSON Schema (draft 2020-12 unless `$schema` says otherwise) of the payload.
    #[schema(value_type = Option<serde_json::Value>)]
    pub schema: Option<Value>,
}

fn spec(input: EventTypeInput) -> Result<EventTypeSpec, Problem> {
    if !is_valid_event_type(&input.name) {
        return Err(Problem::field(
            "name",
            format!(
                "event type `{}` must be 1-128 characters of letters, digits, `.`, `_`, `-` or `:`",
                input.name
            ),
        ));
    }
    let spec = EventTypeSpec {
        name: input.name,
        description: input.description,
        schema: input.schema,
    };
    // Refuse an unusable schema now rather than at the first publish.
    compile_event_type(spec.clone()).map_err(|e| Problem::field("schema", e))?;
    Ok(spec)
}

fn view(runtime: &Runtime, spec: &EventTypeSpec) -> EventType {
    let (created_at, updated_at) = stamps(runtime, Kind::EventType, &spec.name);
    EventType {
        name: spec.name.clone(),
        description: spec.description.clone(),
        schema: spec.schema.clone(),
        created_at,
        updated_at,
    }
}

fn find(runtime: &Runtime, name: &str) -> Result<EventType, Problem> {
    runtime
        .event_types
        .get(name)
        .map(|t| view(runtime, &t.spec))
        .ok_or_else(|| not_found(Kind::EventType, name))
}

/// Lists event types.
#[utoipa::path(get, path = "/event-types", tag = "event-types",
    responses((status = 200, body = Vec<EventType>), (status = 401, body = Problem)), security(("bearer" = [])))]
pub async fn list(_auth: Auth<Read>, State(state): State<Arc<AppState>>) -> Json<Vec<EventType>> {
    let runtime = state.registry.current();
    Json(
        runtime
            .event_types
            .values()
            .map(|t| view(&runtime, &t.spec))
            .collect(),
    )
}

/// One event type.
#[utoipa::path(get, path = "/event-types/{name}", tag = "event-types", params(("name" = String, Path, description = "Event type")),
    responses((status = 200, body = EventType), (status = 401, body = Problem), (status = 404, body = Problem)), security(("bearer" = [])))]
pub async fn get(
    _auth: Auth<Read>,
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
) -> ApiResult<Json<EventType>> {
    find(&state.registry.current(), &name).map(Json)
}

/// Creates an event type.
#[utoipa::path(post, path = "/event-types", tag = "event-types", request_body = EventTypeInput,
    responses((status = 201, body = EventType), (status = 401, body = Problem), (status = 403, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem)),
    security(("bearer" = [])))]
pub async fn create(
    _auth: Auth<Write>,
    State(state): State<Arc<AppState>>,
    ApiJson(input): ApiJson<EventTypeInput>,
) -> ApiResult<(StatusCode, Json<EventType>)> {
    let spec = spec(input)?;
    let name = spec.name.clone();
    apply(&state, Change::PutEventType(spec, true)).await?;
    Ok((
        StatusCode::CREATED,
        Json(find(&state.registry.current(), &name)?),
    ))
}

/// Replaces an event type (its description and schema).
#[utoipa::path(put, path = "/event-types/{name}", tag = "event-types", params(("name" = String, Path, description = "Event type")), request_body = EventTypeInput,
    responses((status = 200, body = EventType), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem), (status = 422, body = Problem)),
    security(("bearer" = [])))]
pub async fn update(
    _auth: Auth<Write>,
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    ApiJson(input): ApiJson<EventTypeInput>,
) -> ApiResult<Json<EventType>> {
    super::resources::check_path_id(&name, &input.name)?;
    apply(&state, Change::PutEventType(spec(input)?, false)).await?;
    Ok(Json(find(&state.registry.current(), &name)?))
}

/// Deletes an event type (published events keep their type).
#[utoipa::path(delete, path = "/event-types/{name}", tag = "event-types", params(("name" = String, Path, description = "Event type")),
    responses((status = 204, description = "Deleted"), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem)),
    security(("bearer" = [])))]
pub async fn delete(
    _auth: Auth<Write>,
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    apply(&state, Change::Delete(Kind::EventType, name)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Routes of this resource.
pub fn router() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(get, update, delete))
}
