//! `/v1/routes`: which sources feed which destinations.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use switchboard_core::config::RouteConfig;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::ApiResult;
use super::auth::{Auth, Read, Write};
use super::extract::ApiJson;
use super::resources::{apply, check_path_id, not_found, stamps};
use crate::problem::Problem;
use crate::runtime::{Change, Kind, Runtime};
use crate::state::AppState;

/// A route.
#[derive(Debug, Serialize, ToSchema)]
pub struct Route {
    /// Route id.
    pub id: String,
    /// `config` (read-only here) or `api`.
    pub managed_by: &'static str,
    /// Source id.
    pub source: String,
    /// Destination id.
    pub destination: String,
    /// Created (API resources).
    pub created_at: Option<String>,
    /// Last change (API resources).
    pub updated_at: Option<String>,
}

/// A route to create or replace.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RouteInput {
    /// Route id; defaults to `{source}-{destination}`.
    #[schema(pattern = "^[A-Za-z0-9_-]{1,64}$")]
    pub id: Option<String>,
    /// Source id.
    #[schema(pattern = "^[A-Za-z0-9_-]{1,64}$")]
    pub source: String,
    /// Destination id.
    #[schema(pattern = "^[A-Za-z0-9_-]{1,64}$")]
    pub destination: String,
}

fn view(runtime: &Runtime, route: &RouteConfig) -> Route {
    let id = route.effective_id();
    let (created_at, updated_at) = stamps(runtime, Kind::Route, &id);
    Route {
        managed_by: runtime.managed_by(Kind::Route, &id).as_str(),
        id,
        source: route.source.clone(),
        destination: route.destination.clone(),
        created_at,
        updated_at,
    }
}

fn find(state: &AppState, id: &str) -> Result<Route, Problem> {
    let runtime = state.registry.current();
    runtime
        .config
        .routes
        .iter()
        .find(|r| r.effective_id() == id)
        .map(|r| view(&runtime, r))
        .ok_or_else(|| not_found(Kind::Route, id))
}

fn to_config(input: RouteInput) -> RouteConfig {
    let id = input
        .id
        .unwrap_or_else(|| format!("{}-{}", input.source, input.destination));
    RouteConfig {
        id: Some(id),
        source: input.source,
        destination: input.destination,
    }
}

/// Lists routes.
#[utoipa::path(get, path = "/routes", tag = "routes",
    responses((status = 200, body = Vec<Route>), (status = 401, body = Problem)), security(("bearer" = [])))]
pub async fn list(_auth: Auth<Read>, State(state): State<Arc<AppState>>) -> Json<Vec<Route>> {
    let runtime = state.registry.current();
    Json(
        runtime
            .config
            .routes
            .iter()
            .map(|r| view(&runtime, r))
            .collect(),
    )
}

/// One route.
#[utoipa::path(get, path = "/routes/{id}", tag = "routes", params(("id" = String, Path, description = "Route id")),
    responses((status = 200, body = Route), (status = 401, body = Problem), (status = 404, body = Problem)), security(("bearer" = [])))]
pub async fn get(
    _auth: Auth<Read>,
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> ApiResult<Json<Route>> {
    find(&state, &id).map(Json)
}

/// Creates a route.
#[utoipa::path(post, path = "/routes", tag = "routes", request_body = RouteInput,
    responses((status = 201, body = Route), (status = 401, body = Problem), (status = 403, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem)),
    security(("bearer" = [])))]
pub async fn create(
    _auth: Auth<Write>,
    State(state): State<Arc<AppState>>,
    ApiJson(input): ApiJson<RouteInput>,
) -> ApiResult<(StatusCode, Json<Route>)> {
    let config = to_config(input);
    let id = config.effective_id();
    apply(&state, Change::PutRoute(config, true)).await?;
    Ok((StatusCode::CREATED, Json(find(&state, &id)?)))
}

/// Replaces a route.
#[utoipa::path(put, path = "/routes/{id}", tag = "routes", params(("id" = String, Path, description = "Route id")), request_body = RouteInput,
    responses((status = 200, body = Route), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem)),
    security(("bearer" = [])))]
pub async fn update(
    _auth: Auth<Write>,
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    ApiJson(mut input): ApiJson<RouteInput>,
) -> ApiResult<Json<Route>> {
    check_path_id(&id, input.id.get_or_insert_with(|| id.clone()))?;
    apply(&state, Change::PutRoute(to_config(input), false)).await?;
    Ok(Json(find(&state, &id)?))
}

/// Deletes a route.
#[utoipa::path(delete, path = "/routes/{id}", tag = "routes", params(("id" = String, Path, description = "Route id")),
    responses((status = 204, description = "Deleted"), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem)),
    security(("bearer" = [])))]
pub async fn delete(
    _auth: Auth<Write>,
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    apply(&state, Change::Delete(Kind::Route, id)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Routes of this resource.
pub fn router() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(get, update, delete))
}
