//! Routes: list, create (with a jq filter and transform), delete, and a dry-run that shows the
//! transformed body and the request a destination would receive, without sending anything.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::response::Response;
use maud::{Markup, html};
use serde::Deserialize;
use switchboard_store::EventFilter;

use super::forms::{enable_toggle, managed_note};
use super::layout::{self, badge, csrf};
use super::session::Session;
use super::{UiResult, enc, html_response, see_other};
use crate::api::internal;
use crate::api::resources::apply;
use crate::api::routes_api::{self, Route, RouteInput, RouteTest};
use crate::problem::Problem;
use crate::runtime::{Change, Kind};
use crate::state::AppState;

/// The create-route form.
#[derive(Debug, Deserialize)]
pub struct RouteForm {
    /// Route id (optional: `source-destination`).
    #[serde(default)]
    id: String,
    /// Source id.
    source: String,
    /// Destination id.
    destination: String,
    /// jq filter.
    #[serde(default)]
    filter: String,
    /// jq transform.
    #[serde(default)]
    transform: String,
}

fn some(value: &str) -> Option<String> {
    let value = value.trim();
    (!value.is_empty()).then(|| value.to_owned())
}

fn create_form(session: &Session, state: &AppState) -> Markup {
    let runtime = state.registry.current();
    html! {
        section aria-labelledby="new-route-h" {
            h2 #new-route-h { "New route" }
            form.stack method="post" action="/ui/routes" {
                (csrf(session))
                label { "Id (optional) " input type="text" name="id" pattern="[A-Za-z0-9_\\-]{1,64}" placeholder="source-destination"; }
                label { "Source "
                    select name="source" required {
                        @for s in &runtime.config.sources { option value=(s.id) { (s.id) } }
                    }
                }
                label { "Destination "
                    select name="destination" required {
                        @for d in &runtime.config.destinations { option value=(d.id()) { (d.id()) } }
                    }
                }
                label { "Filter (jq, optional) " input type="text" name="filter" placeholder=".type == \"order.created\""; }
                label { "Transform (jq, optional) " textarea name="transform" rows="3" placeholder="{id: .body.id}" {} }
                button type="submit" { "Create route" }
            }
        }
    }
}

/// `GET /ui/routes`
pub async fn list(session: Session, State(state): State<Arc<AppState>>) -> UiResult<Response> {
    let routes = routes_api::all(&state);
    let body = html! {
        table.list aria-label="Routes" {
            thead { tr { th { "Route" } th { "Source" } th { "Destination" } th { "Filter" } th { "Transform" } th { "State" } th { "Managed by" } } }
            tbody {
                @for r in &routes {
                    tr {
                        td { a href={ "/ui/routes/" (enc(&r.id)) } { (r.id) } }
                        td { (r.source) }
                        td { (r.destination) }
                        td { code { (r.filter.as_deref().unwrap_or("")) } }
                        td { code { (r.transform.as_deref().unwrap_or("")) } }
                        td { (badge(if r.enabled { "active" } else { "disabled" })) }
                        td { (r.managed_by) }
                    }
                }
            }
        }
        @if routes.is_empty() { p.empty { "No routes yet." } }
        @if session.can_write() { (create_form(&session, &state)) }
    };
    Ok(html_response(layout::page(
        &session,
        "Routes",
        "/ui/routes",
        body,
    )))
}

/// `POST /ui/routes`
pub async fn create(session: Session, State(state): State<Arc<AppState>>, body: Bytes) -> UiResult {
    let form: RouteForm = session.form(&body)?;
    session.require_write()?;
    let route = routes_api::create_route(
        &state,
        RouteInput {
            id: some(&form.id),
            source: form.source,
            destination: form.destination,
            filter: some(&form.filter),
            transform: some(&form.transform),
            enabled: None,
        },
    )
    .await?;
    Ok(see_other(&format!("/ui/routes/{}", enc(&route.id))))
}

fn find(state: &AppState, id: &str) -> Result<Route, Problem> {
    routes_api::all(state)
        .into_iter()
        .find(|r| r.id == id)
        .ok_or_else(|| crate::api::resources::not_found(Kind::Route, id))
}

async fn render(
    session: &Session,
    state: &AppState,
    route: &Route,
    result: Option<&RouteTest>,
) -> UiResult<Response> {
    let recent = state
        .store
        .list_events(&EventFilter {
            source: Some(route.source.clone()),
            limit: 20,
            ..Default::default()
        })
        .await
        .map_err(internal)?;
    let title = format!("Route {}", route.id);
    let body = html! {
        dl.facts {
            dt { "Source" } dd { (route.source) }
            dt { "Destination" } dd { (route.destination) }
            dt { "Filter" } dd { code { (route.filter.as_deref().unwrap_or("—")) } }
            dt { "Transform" } dd { pre.inline { (route.transform.as_deref().unwrap_or("—")) } }
            dt { "State" } dd { (badge(if route.enabled { "active" } else { "disabled" })) }
            dt { "Managed by" } dd { (route.managed_by) }
        }
        (managed_note(route.managed_by))
        @if session.can_write() && route.managed_by == "api" {
            div.actions {
                (enable_toggle(session, "/ui/routes", &route.id, route.enabled, PAUSE_NOTE))
            }
        }
        @if session.can_write() {
            section aria-labelledby="dry-run-h" {
                h2 #dry-run-h { "Dry run" }
                p.hint { "Runs the filter, the transform and the destination's templates on a stored event. Nothing is sent." }
                form.inline method="post" action={ "/ui/routes/" (enc(&route.id)) "/dry-run" } {
                    (csrf(session))
                    label { "Event "
                        select name="event_id" required {
                            @for e in &recent {
                                option value=(e.id) selected[result.is_some_and(|r| r.event_id == e.id)] {
                                    (e.id) " · " (e.event_type.as_deref().unwrap_or("untyped"))
                                }
                            }
                        }
                    }
                    button type="submit" { "Dry run" }
                }
                @if recent.is_empty() { p.empty { "No event from " (route.source) " yet: send one first." } }
            }
        }
        @if let Some(result) = result {
            section #dry-run-result aria-labelledby="result-h" {
                h2 #result-h { "Result" }
                p { "Event " code { (result.event_id) } ": "
                    @if result.matched { (badge("matched")) } @else { (badge("filtered out")) } }
                @if let Some(error) = &result.error { p.error role="alert" { (error) } }
                @if let Some(request) = &result.request {
                    p { "Would send " code { (request.method) " " (request.url) } }
                    table.kv aria-label="Request headers" {
                        tbody { @for (name, value) in &request.headers { tr { th scope="row" { (name) } td { (value) } } } }
                    }
                }
                @if let Some(body) = &result.body {
                    h3 { "Body" }
                    pre.payload data-testid="dry-run-body" { (serde_json::to_string_pretty(body).unwrap_or_default()) }
                }
            }
        }
        @if session.can_write() && route.managed_by == "api" {
            section aria-labelledby="edit-h" {
                h2 #edit-h { "Edit" }
                form.stack method="post" action={ "/ui/routes/" (enc(&route.id)) } {
                    (csrf(session))
                    label { "Destination "
                        select name="destination" required {
                            @for d in &state.registry.current().config.destinations {
                                option value=(d.id()) selected[d.id() == route.destination] { (d.id()) }
                            }
                        }
                    }
                    label { "Filter (jq, optional) " input type="text" name="filter" value=(route.filter.as_deref().unwrap_or("")); }
                    label { "Transform (jq, optional) " textarea name="transform" rows="3" { (route.transform.as_deref().unwrap_or("")) } }
                    button type="submit" { "Save route" }
                }
            }
            form.inline.danger method="post" action={ "/ui/routes/" (enc(&route.id)) "/delete" } {
                (csrf(session))
                button type="submit" data-confirm="Delete this route?" { "Delete route" }
            }
        }
    };
    Ok(html_response(layout::page(
        session,
        &title,
        "/ui/routes",
        body,
    )))
}

/// `GET /ui/routes/{id}`
pub async fn detail(
    session: Session,
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> UiResult<Response> {
    let route = find(&state, &id)?;
    render(&session, &state, &route, None).await
}

/// The dry-run form.
#[derive(Debug, Deserialize)]
pub struct DryRunForm {
    /// A stored event.
    event_id: String,
}

/// `POST /ui/routes/{id}/dry-run`
pub async fn dry_run(
    session: Session,
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    body: Bytes,
) -> UiResult<Response> {
    let form: DryRunForm = session.form(&body)?;
    session.require_write()?;
    let route = find(&state, &id)?;
    let result = routes_api::dry_run(&state, id, &form.event_id).await?;
    render(&session, &state, &route, Some(&result)).await
}

/// What disabling a route does, for the confirmation.
const PAUSE_NOTE: &str = "Events arriving while it is disabled get no delivery through it (replay them later to send them).";

/// `POST /ui/routes/{id}/enable` and `…/disable`.
pub async fn set_enabled(
    session: Session,
    State(state): State<Arc<AppState>>,
    Path((id, action)): Path<(String, String)>,
    body: Bytes,
) -> UiResult {
    session.button(&body)?;
    let enabled = super::forms::toggle(&action)?;
    routes_api::patch_route(&state, &id, serde_json::json!({ "enabled": enabled })).await?;
    Ok(see_other(&format!("/ui/routes/{}", enc(&id))))
}

/// `POST /ui/routes/{id}/delete`
pub async fn delete(
    session: Session,
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    body: Bytes,
) -> UiResult {
    session.button(&body)?;
    apply(&state, Change::Delete(Kind::Route, id)).await?;
    Ok(see_other("/ui/routes"))
}

/// The edit-route form (the source stays).
#[derive(Debug, Deserialize)]
pub struct EditForm {
    /// Destination id.
    destination: String,
    /// jq filter.
    #[serde(default)]
    filter: String,
    /// jq transform.
    #[serde(default)]
    transform: String,
}

/// `POST /ui/routes/{id}`: saves the edit form, validated as `PUT /v1/routes/{id}`.
pub async fn update(
    session: Session,
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    body: Bytes,
) -> UiResult {
    let form: EditForm = session.form(&body)?;
    session.require_write()?;
    let current = find(&state, &id)?;
    routes_api::update_route(
        &state,
        &id,
        RouteInput {
            id: Some(id.clone()),
            source: current.source,
            destination: form.destination,
            filter: some(&form.filter),
            transform: some(&form.transform),
            enabled: Some(current.enabled),
        },
    )
    .await?;
    Ok(see_other(&format!("/ui/routes/{}", enc(&id))))
}
