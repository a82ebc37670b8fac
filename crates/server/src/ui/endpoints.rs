//! One page per tenant endpoint: its settings and health, an edit form for everything `PATCH
//! /v1/tenants/{tenant}/endpoints/{id}` changes, and delete; plus renaming and deleting a tenant.
//! Enable/disable and secret rotation stay on the tenants page (`resources.rs`).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::response::Response;
use maud::html;
use serde::Deserialize;

use super::forms::{error_box, header_lines, json, number, parse_headers, with_status_of};
use super::layout::{self, badge, csrf};
use super::session::Session;
use super::{UiResult, enc, html_response, see_other};
use crate::api::endpoints::{self as api, Endpoint, EndpointPatch};
use crate::problem::Problem;
use crate::state::AppState;

/// The endpoint edit form. Every field is sent; empty optional fields clear their setting.
#[derive(Debug, Default, Deserialize)]
pub struct EditForm {
    /// Where to deliver.
    #[serde(default)]
    url: String,
    /// Shown to the tenant.
    #[serde(default)]
    description: String,
    /// Comma-separated event types (empty: all).
    #[serde(default)]
    event_types: String,
    /// Comma-separated channels (empty: all).
    #[serde(default)]
    channels: String,
    /// Extra headers, one `Name: value` per line.
    #[serde(default)]
    headers: String,
    /// Deliveries per second at most (empty: unlimited).
    #[serde(default)]
    rate_limit: String,
    /// Present (checked) for FIFO delivery.
    #[serde(default)]
    ordered: Option<String>,
    /// jq transform (empty: none).
    #[serde(default)]
    transform: String,
    /// Per-attempt timeout.
    #[serde(default)]
    timeout: String,
    /// Retry policy as JSON.
    #[serde(default)]
    retry: String,
    /// In-flight cap (empty: the default).
    #[serde(default)]
    max_in_flight: String,
}

/// Comma-separated values, blanks dropped.
fn list(text: &str) -> Vec<String> {
    text.split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
        .collect()
}

impl EditForm {
    fn from_endpoint(e: &Endpoint) -> Self {
        Self {
            url: e.url.clone(),
            description: e.description.clone(),
            event_types: e.event_types.join(", "),
            channels: e.channels.join(", "),
            headers: header_lines(&e.headers),
            rate_limit: e.rate_limit.map(|r| r.to_string()).unwrap_or_default(),
            ordered: e.ordered.then(|| "on".into()),
            transform: e.transform.clone().unwrap_or_default(),
            timeout: e.timeout.clone(),
            retry: e.retry.to_string(),
            max_in_flight: e.max_in_flight.map(|n| n.to_string()).unwrap_or_default(),
        }
    }

    fn to_patch(&self) -> Result<EndpointPatch, Problem> {
        let timeout = self.timeout.trim();
        let transform = self.transform.trim();
        Ok(EndpointPatch {
            url: Some(self.url.trim().to_owned()),
            description: Some(self.description.trim().to_owned()),
            event_types: Some(list(&self.event_types)),
            channels: Some(list(&self.channels)),
            rate_limit: Some(number("rate_limit", &self.rate_limit)?),
            headers: Some(parse_headers(&self.headers)?),
            enabled: None,
            ordered: Some(self.ordered.is_some()),
            transform: Some((!transform.is_empty()).then(|| transform.to_owned())),
            timeout: (!timeout.is_empty()).then(|| timeout.to_owned()),
            retry: json("retry", &self.retry)?,
            max_in_flight: Some(number("max_in_flight", &self.max_in_flight)?),
        })
    }
}

/// `GET /ui/tenants/{tenant}/endpoints/{id}`
pub async fn detail(
    session: Session,
    State(state): State<Arc<AppState>>,
    Path((tenant, id)): Path<(String, String)>,
) -> UiResult<Response> {
    let endpoint = api::get_endpoint(&state, &tenant, &id)?;
    let form = EditForm::from_endpoint(&endpoint);
    page(&session, &state, &endpoint, &form, None)
}

fn page(
    session: &Session,
    state: &AppState,
    e: &Endpoint,
    form: &EditForm,
    problem: Option<Problem>,
) -> UiResult<Response> {
    let health = state.health.get(&e.id);
    let base = format!("/ui/tenants/{}/endpoints/{}", enc(&e.tenant), enc(&e.id));
    let body = html! {
        dl.facts {
            dt { "Tenant" } dd { a href="/ui/tenants" { (e.tenant) } }
            dt { "URL" } dd { code { (e.url) } }
            dt { "State" } dd {
                @if e.enabled { (badge("active")) } @else {
                    (badge("disabled"))
                    @if let Some(reason) = &e.disabled_reason { " " small { (reason) } }
                }
            }
            dt { "Circuit" } dd { (badge(health.as_ref().map_or("closed", |h| h.state.as_str()))) }
            dt { "Failures in a row" } dd { (health.as_ref().map_or(0, |h| h.consecutive_failures)) }
            @if let Some(at) = &e.updated_at { dt { "Last change" } dd { (at) } }
        }
        p { a href={ "/ui/deliveries?destination=" (enc(&e.id)) } { "Deliveries" } }
        @if session.can_write() {
            section aria-labelledby="edit-h" {
                h2 #edit-h { "Edit" }
                (error_box(problem.as_ref()))
                form.stack method="post" action=(base) {
                    (csrf(session))
                    label { "URL " input type="url" name="url" required value=(form.url); }
                    label { "Description " input type="text" name="description" value=(form.description); }
                    label { "Event types (comma-separated, empty for all) " input type="text" name="event_types" value=(form.event_types); }
                    label { "Channels (comma-separated, empty for all) " input type="text" name="channels" value=(form.channels); }
                    label { "Extra headers (one Name: value per line) "
                        textarea name="headers" rows="3" spellcheck="false" { (form.headers) }
                    }
                    label { "Transform (jq, optional) "
                        textarea name="transform" rows="3" spellcheck="false" { (form.transform) }
                    }
                    label { "Timeout per attempt " input type="text" name="timeout" value=(form.timeout); }
                    label { "Retries (JSON) " input type="text" name="retry" value=(form.retry) spellcheck="false"; }
                    label { "Attempts in flight at most (empty: the default) "
                        input type="number" name="max_in_flight" min="1" value=(form.max_in_flight);
                    }
                    label { "Deliveries per second at most (empty: unlimited) "
                        input type="number" name="rate_limit" min="0" step="any" value=(form.rate_limit);
                    }
                    label.check {
                        input type="checkbox" name="ordered" checked[form.ordered.is_some()];
                        " Deliver in order"
                    }
                    button type="submit" { "Save changes" }
                }
            }
            form.inline method="post" action={ (base) "/delete" } {
                (csrf(session))
                button.danger type="submit" aria-label={ "Delete endpoint " (e.id) }
                    data-confirm="Delete this endpoint? Deliveries still waiting for it are cancelled." { "Delete endpoint" }
            }
        }
        p { a href="/ui/tenants" { "All tenants" } }
    };
    let response = html_response(layout::page(
        session,
        &format!("Endpoint {}", e.id),
        "/ui/tenants",
        body,
    ));
    Ok(with_status_of(response, problem.as_ref()))
}

/// `POST /ui/tenants/{tenant}/endpoints/{id}`: saves the edit form (as `PATCH`); a refused
/// change shows the form again with the input and the reason.
pub async fn update(
    session: Session,
    State(state): State<Arc<AppState>>,
    Path((tenant, id)): Path<(String, String)>,
    body: Bytes,
) -> UiResult<Response> {
    let form: EditForm = session.form(&body)?;
    session.require_write()?;
    let result = match form.to_patch() {
        Ok(patch) => api::patch_endpoint(&state, &tenant, &id, patch).await,
        Err(problem) => Err(problem),
    };
    match result {
        Ok(_) => Ok(see_other(&format!(
            "/ui/tenants/{}/endpoints/{}",
            enc(&tenant),
            enc(&id)
        ))),
        Err(problem) if super::forms::shown_again(&problem) => {
            let endpoint = api::get_endpoint(&state, &tenant, &id)?;
            page(&session, &state, &endpoint, &form, Some(problem))
        }
        Err(problem) => Err(problem.into()),
    }
}

/// `POST /ui/tenants/{tenant}/endpoints/{id}/delete`
pub async fn delete(
    session: Session,
    State(state): State<Arc<AppState>>,
    Path((tenant, id)): Path<(String, String)>,
    body: Bytes,
) -> UiResult {
    session.button(&body)?;
    api::delete_endpoint(&state, &tenant, &id).await?;
    Ok(see_other("/ui/tenants"))
}

/// The rename-tenant form.
#[derive(Debug, Deserialize)]
pub struct RenameForm {
    /// New display name.
    name: String,
}

/// `POST /ui/tenants/{tenant}/rename`: a new display name (metadata kept).
pub async fn rename_tenant(
    session: Session,
    State(state): State<Arc<AppState>>,
    Path(tenant): Path<String>,
    body: Bytes,
) -> UiResult {
    let form: RenameForm = session.form(&body)?;
    session.require_write()?;
    let current = crate::api::tenants::find(&state.registry.current(), &tenant)?;
    crate::api::tenants::update_tenant(
        &state,
        &tenant,
        crate::api::tenants::TenantInput {
            id: tenant.clone(),
            name: form.name.trim().to_owned(),
            metadata: current.metadata,
        },
    )
    .await?;
    Ok(see_other("/ui/tenants"))
}

/// `POST /ui/tenants/{tenant}/delete`: deletes the tenant and its endpoints.
pub async fn delete_tenant(
    session: Session,
    State(state): State<Arc<AppState>>,
    Path(tenant): Path<String>,
    body: Bytes,
) -> UiResult {
    session.button(&body)?;
    crate::api::tenants::delete_tenant(&state, &tenant).await?;
    Ok(see_other("/ui/tenants"))
}
