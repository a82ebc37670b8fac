//! `/v1/routes`: which sources feed which destinations.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use switchboard_core::config::RouteConfig;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::ApiResult;
use super::auth::{Auth, Read, Write};
use super::extract::ApiJson;
use super::resources::{apply, check_path_id, from_value, merge_patch, not_found, stamps};
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
    /// jq filter (must yield `true` for an event to be delivered).
    pub filter: Option<String>,
    /// jq transform (its output is the delivered body).
    pub transform: Option<String>,
    /// `false` while paused: events arriving meanwhile get no delivery through this route.
    pub enabled: bool,
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
    /// jq filter over `{"body", "headers", "type", "source", "received_at"}` that must yield
    /// `true` for an event to be delivered; checked when the route is saved.
    pub filter: Option<String>,
    /// jq transform over the same input; its single output is the delivered JSON body.
    pub transform: Option<String>,
    /// `false` pauses the route (default `true`): events arriving meanwhile get no delivery
    /// through it (replay them to send them later).
    pub enabled: Option<bool>,
}

fn view(runtime: &Runtime, route: &RouteConfig) -> Route {
    let id = route.effective_id();
    let (created_at, updated_at) = stamps(runtime, Kind::Route, &id);
    Route {
        managed_by: runtime.managed_by(Kind::Route, &id).as_str(),
        id,
        source: route.source.clone(),
        destination: route.destination.clone(),
        filter: route.filter.clone(),
        transform: route.transform.clone(),
        enabled: route.enabled,
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
        filter: input.filter,
        transform: input.transform,
        enabled: input.enabled.unwrap_or(true),
    }
}

/// Lists routes.
#[utoipa::path(get, path = "/routes", tag = "routes",
    responses((status = 200, body = Vec<Route>), (status = 401, body = Problem)), security(("bearer" = [])))]
pub async fn list(_auth: Auth<Read>, State(state): State<Arc<AppState>>) -> Json<Vec<Route>> {
    Json(all(&state))
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
    Ok((
        StatusCode::CREATED,
        Json(create_route(&state, input).await?),
    ))
}

/// Validates and stores a new route (shared with the dashboard).
pub async fn create_route(state: &AppState, input: RouteInput) -> ApiResult<Route> {
    let config = to_config(input);
    let id = config.effective_id();
    apply(state, Change::PutRoute(config, true)).await?;
    find(state, &id)
}

/// Every route, as the API shows them.
pub fn all(state: &AppState) -> Vec<Route> {
    let runtime = state.registry.current();
    runtime
        .config
        .routes
        .iter()
        .map(|r| view(&runtime, r))
        .collect()
}

/// Replaces a route.
#[utoipa::path(put, path = "/routes/{id}", tag = "routes", params(("id" = String, Path, description = "Route id")), request_body = RouteInput,
    responses((status = 200, body = Route), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem)),
    security(("bearer" = [])))]
pub async fn update(
    _auth: Auth<Write>,
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    ApiJson(input): ApiJson<RouteInput>,
) -> ApiResult<Json<Route>> {
    update_route(&state, &id, input).await.map(Json)
}

/// Replaces route `id` (shared with the dashboard's edit form).
pub async fn update_route(state: &AppState, id: &str, mut input: RouteInput) -> ApiResult<Route> {
    check_path_id(id, input.id.get_or_insert_with(|| id.to_owned()))?;
    apply(state, Change::PutRoute(to_config(input), false)).await?;
    find(state, id)
}

/// Changes part of a route: a JSON merge patch (RFC 7396) of the body `PUT` takes, e.g.
/// `{"enabled": false}` or `{"filter": null}`.
#[utoipa::path(patch, path = "/routes/{id}", tag = "routes", params(("id" = String, Path, description = "Route id")),
    request_body(content = Object, content_type = "application/merge-patch+json"),
    responses((status = 200, body = Route), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem)),
    security(("bearer" = [])))]
pub async fn patch(
    _auth: Auth<Write>,
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    ApiJson(patch): ApiJson<Value>,
) -> ApiResult<Json<Route>> {
    patch_route(&state, &id, super::resources::patch_object(patch)?)
        .await
        .map(Json)
}

/// Applies a JSON merge patch to route `id` (shared with the dashboard's enable/disable).
pub async fn patch_route(state: &AppState, id: &str, patch: Value) -> ApiResult<Route> {
    let runtime = state.registry.current();
    let route = runtime
        .config
        .routes
        .iter()
        .find(|r| r.effective_id() == id)
        .ok_or_else(|| not_found(Kind::Route, id))?;
    let mut doc = serde_json::json!({
        "id": id,
        "source": route.source,
        "destination": route.destination,
        "filter": route.filter,
        "transform": route.transform,
        "enabled": route.enabled,
    });
    merge_patch(&mut doc, patch);
    let input: RouteInput = from_value(doc)?;
    update_route(state, id, input).await
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

/// `{"event_id": …}`: the stored event to try the route on.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RouteTestInput {
    /// A stored event.
    pub event_id: String,
}

/// The request a route would send for an event.
#[derive(Debug, Serialize, ToSchema)]
pub struct RouteTestRequest {
    /// Always `POST`.
    pub method: &'static str,
    /// Destination URL.
    pub url: String,
    /// Headers (the signature headers are computed per attempt and shown as placeholders).
    pub headers: BTreeMap<String, String>,
}

/// A dry run of a route on a stored event: nothing is sent or stored.
#[derive(Debug, Serialize, ToSchema)]
pub struct RouteTest {
    /// Route id.
    pub route: String,
    /// Event id.
    pub event_id: String,
    /// Whether the filter matched (true without a filter).
    pub matched: bool,
    /// The filter's or transform's error, which would fail the delivery without retries.
    pub error: Option<String>,
    /// The body that would be sent: the transform's output, or the event's body (JSON when it
    /// parses, text otherwise).
    #[schema(value_type = Option<serde_json::Value>)]
    pub body: Option<Value>,
    /// The request that would be sent, when the route matched.
    pub request: Option<RouteTestRequest>,
}

/// Tries a route on a stored event: filter, transform, and the request it would send.
#[utoipa::path(post, path = "/routes/{id}/test", tag = "routes", params(("id" = String, Path, description = "Route id")), request_body = RouteTestInput,
    responses((status = 200, body = RouteTest), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem)),
    security(("bearer" = [])))]
pub async fn test(
    _auth: Auth<Write>,
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    ApiJson(input): ApiJson<RouteTestInput>,
) -> ApiResult<Json<RouteTest>> {
    dry_run(&state, id, &input.event_id).await.map(Json)
}

/// Runs route `id`'s filter, transform and destination templates on a stored event without
/// sending anything (shared with the dashboard's dry-run).
pub async fn dry_run(state: &AppState, id: String, event_id: &str) -> ApiResult<RouteTest> {
    let runtime = state.registry.current();
    let route = runtime
        .config
        .routes
        .iter()
        .find(|r| r.effective_id() == id)
        .ok_or_else(|| not_found(Kind::Route, &id))?
        .clone();
    let event = state
        .store
        .get_event(event_id)
        .await
        .map_err(super::internal)?
        .ok_or_else(|| Problem::not_found(format!("no event `{event_id}`")))?;
    if event.body_pruned_at.is_some() {
        return Err(Problem::conflict(
            "payload_expired",
            "the event's payload was removed by retention",
        ));
    }
    let input_value = crate::transform::event_input(
        &event.body,
        event.content_type.as_deref(),
        &event.forward_headers,
        event.event_type.as_deref(),
        &event.source,
        event.received_at,
    );
    let raw_body = input_value["body"].clone();
    let program = runtime.route_programs.get(&id).cloned();
    let templates = runtime
        .destinations
        .get(&route.destination)
        .map(|target| target.templates.clone());
    let (outcome, rendered) = tokio::task::spawn_blocking(move || {
        let outcome = match program {
            None => Ok(crate::transform::Routed::Send(None)),
            Some(program) => program.apply(&input_value),
        };
        let rendered = templates.map(|t| t.render(&input_value)).transpose();
        (outcome, rendered)
    })
    .await
    .map_err(super::internal)?;
    let (matched, mut error, body) = match outcome {
        Ok(crate::transform::Routed::Filtered) => (false, None, None),
        Ok(crate::transform::Routed::Send(None)) => (true, None, Some(raw_body)),
        Ok(crate::transform::Routed::Send(Some(body))) => (true, None, Some(body)),
        Err(error) => (false, Some(error), None),
    };
    let rendered = match rendered {
        Ok(rendered) => rendered.unwrap_or_default(),
        Err(template_error) => {
            error.get_or_insert(template_error);
            Default::default()
        }
    };
    let request = (matched && error.is_none())
        .then(|| runtime.destinations.get(&route.destination))
        .flatten()
        .map(|target| {
            let mut headers = BTreeMap::new();
            let content_type = if route.transform.is_some() {
                Some("application/json".to_owned())
            } else {
                event.content_type.clone()
            };
            if let Some(ct) = content_type {
                headers.insert("content-type".into(), ct);
            }
            headers.insert(
                "user-agent".into(),
                crate::delivery::sender::USER_AGENT_VALUE.into(),
            );
            headers.insert("webhook-id".into(), "<the delivery id>".into());
            headers.insert(
                "webhook-timestamp".into(),
                "<unix seconds of the attempt>".into(),
            );
            if !target.keys.is_empty() {
                headers.insert("webhook-signature".into(), "v1,<signature>".into());
            }
            for (name, value) in &target.headers {
                headers.insert(
                    name.as_str().to_owned(),
                    String::from_utf8_lossy(value.as_bytes()).into_owned(),
                );
            }
            for (name, value) in rendered.with_prefix("header:") {
                headers.insert(name.to_owned(), value.to_owned());
            }
            RouteTestRequest {
                method: "POST",
                url: rendered
                    .get("url")
                    .map_or_else(|| target.describe(), str::to_owned),
                headers,
            }
        });
    Ok(RouteTest {
        route: id,
        event_id: event.id,
        matched,
        error,
        body,
        request,
    })
}

/// Routes of this resource.
pub fn router() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(get, update, patch, delete))
        .routes(routes!(test))
}
