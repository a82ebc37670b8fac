//! Destinations: the list (circuit state, failures, state), create (HTTP from a short form, every
//! other kind from its settings), and one page per destination to edit, disable or enable,
//! rotate its secret and delete it. Edits go through the same functions as `PUT`/`PATCH
//! /v1/destinations/{id}`, so credentials shown redacted are kept unless replaced.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::response::Response;
use maud::{Markup, html};
use serde::Deserialize;
use serde_json::{Value, json};

use super::forms::{
    delete_button, enable_toggle, error_box, json, managed_note, number, parse_headers, pretty,
    text_of, with_status_of,
};
use super::layout::{self, badge, copy_button, csrf, time};
use super::session::Session;
use super::{UiResult, enc, html_response, see_other};
use crate::api::destinations::{self as api, Destination, DestinationInput};
use crate::api::resources::apply;
use crate::problem::Problem;
use crate::runtime::{Change, Kind};
use crate::state::AppState;

/// What disabling a destination does, for the confirmation.
const PAUSE_NOTE: &str =
    "Its deliveries wait (nothing is dropped) and are sent once it is enabled again.";

/// Kinds other than `http`, created from their settings.
const OTHER_KINDS: &[&str] = &[
    "slack", "teams", "email", "sms", "postgres", "s3", "queue", "api",
];

/// `GET /ui/destinations`
pub async fn list(session: Session, State(state): State<Arc<AppState>>) -> UiResult<Response> {
    let destinations = api::all(&state);
    let body = html! {
        table.list aria-label="Destinations" {
            thead { tr { th { "Destination" } th { "Kind" } th { "Target" } th { "State" } th { "Circuit" } th { "Failures in a row" } th { "Last success" } th { "Last error" } th { "Actions" } } }
            tbody {
                @for d in &destinations {
                    @let health = state.health.get(&d.id);
                    tr {
                        td { a href={ "/ui/destinations/" (enc(&d.id)) } { (d.id) } }
                        td { (d.kind) }
                        td { code { (d.url) } }
                        td { (badge(if d.enabled { "active" } else { "disabled" })) }
                        td { (badge(health.as_ref().map_or("closed", |h| h.state.as_str()))) }
                        td.num { (health.as_ref().map_or(0, |h| h.consecutive_failures)) }
                        td { @if let Some(at) = health.as_ref().and_then(|h| h.last_success_at) { (time(at)) } @else { "—" } }
                        td { (health.as_ref().and_then(|h| h.last_error.clone()).unwrap_or_default()) }
                        td {
                            a href={ "/ui/deliveries?destination=" (enc(&d.id)) } { "Deliveries" } " · "
                            a href={ "/ui/deliveries?status=failed&destination=" (enc(&d.id)) } { "Dead letters" } " · "
                            a href={ "/ui/destinations/" (enc(&d.id)) } aria-label={ "Edit " (d.id) } { "Edit" }
                            @if session.can_write() && d.kind == "http" && d.managed_by == "api" {
                                " " (rotate_button(&session, &d.id))
                            }
                        }
                    }
                }
            }
        }
        @if destinations.is_empty() { p.empty { "No destinations yet." } }
        @if session.can_write() { (create_forms(&session)) }
    };
    Ok(html_response(layout::page(
        &session,
        "Destinations",
        "/ui/destinations",
        body,
    )))
}

fn rotate_button(session: &Session, id: &str) -> Markup {
    html! {
        form.inline method="post" action={ "/ui/destinations/" (enc(id)) "/rotate-secret" } {
            (csrf(session))
            button type="submit" aria-label={ "Rotate the signing secret of " (id) }
                data-confirm="Rotate this destination's signing secret? The old one stops signing at once." { "Rotate secret" }
        }
    }
}

fn create_forms(session: &Session) -> Markup {
    html! {
        section aria-labelledby="new-destination-h" {
            h2 #new-destination-h { "New HTTP destination" }
            form.stack method="post" action="/ui/destinations" {
                (csrf(session))
                label { "Id " input type="text" name="id" required pattern="[A-Za-z0-9_\\-]{1,64}" placeholder="billing"; }
                label { "URL " input type="url" name="url" required placeholder="https://example.com/hooks"; }
                label { "Signing secret (optional; generated when empty) " input type="password" name="secret" autocomplete="off" placeholder="whsec_…"; }
                button type="submit" { "Create destination" }
            }
            p.hint { "Retries, timeout, headers and limits: create it, then edit it." }
        }
        details.create {
            summary { "New destination of another kind (Slack, Teams, e-mail, SMS, PostgreSQL, S3, queue, API)" }
            form.stack method="post" action="/ui/destinations" {
                (csrf(session))
                label { "Id " input type="text" name="id" required pattern="[A-Za-z0-9_\\-]{1,64}" placeholder="alerts"; }
                label { "Kind "
                    select name="kind" {
                        @for kind in OTHER_KINDS { option value=(kind) { (kind) } }
                    }
                }
                label { "Settings (JSON: the keys of a [[destinations]] table beside id and kind) "
                    textarea name="settings" rows="6" required
                        placeholder="{\"webhook_url\": \"https://hooks.slack.com/services/…\"}" {}
                }
                button type="submit" { "Create destination" }
            }
            p.hint { "The settings of each kind are in docs/destinations.md." }
        }
    }
}

/// The create-destination forms: HTTP from its URL (and optional secret), another kind from its
/// settings.
#[derive(Debug, Deserialize)]
pub struct CreateForm {
    /// Destination id.
    id: String,
    /// Where to send (HTTP).
    #[serde(default)]
    url: String,
    /// `whsec_…` secret (HTTP; generated when empty).
    #[serde(default)]
    secret: String,
    /// Another kind (empty: HTTP).
    #[serde(default)]
    kind: String,
    /// That kind's settings, as JSON.
    #[serde(default)]
    settings: String,
}

/// `POST /ui/destinations`: creates a destination, validated (SSRF policy included) as
/// `POST /v1/destinations` does.
pub async fn create(session: Session, State(state): State<Arc<AppState>>, body: Bytes) -> UiResult {
    let form: CreateForm = session.form(&body)?;
    session.require_write()?;
    let id = form.id.trim().to_owned();
    let http = form.kind.is_empty() || form.kind == "http";
    let secret = form.secret.trim();
    let input = DestinationInput {
        id: id.clone(),
        kind: (!http).then(|| form.kind.clone()),
        url: http.then(|| form.url.trim().to_owned()),
        settings: if http {
            None
        } else {
            json("settings", &form.settings)?
        },
        secret: (http && !secret.is_empty()).then(|| secret.to_owned()),
        timeout: None,
        retry: None,
        headers: None,
        max_in_flight: None,
        rate_limit: None,
        ordered: None,
        enabled: None,
    };
    api::create_destination(&state, input).await?;
    Ok(see_other(&format!("/ui/destinations/{}", enc(&id))))
}

/// The edit form's fields. JSON fields show credentials as `********`, which keep the current
/// values when sent back.
#[derive(Debug, Default, Deserialize)]
pub struct EditForm {
    /// URL (HTTP).
    #[serde(default)]
    url: String,
    /// Extra headers (HTTP), one `Name: value` per line.
    #[serde(default)]
    headers: String,
    /// Another kind's settings as JSON.
    #[serde(default)]
    settings: String,
    /// Per-attempt timeout, e.g. `15s`.
    #[serde(default)]
    timeout: String,
    /// Retry policy as JSON.
    #[serde(default)]
    retry: String,
    /// In-flight cap.
    #[serde(default)]
    max_in_flight: String,
    /// Deliveries per second at most.
    #[serde(default)]
    rate_limit: String,
    /// Present (checked) for FIFO delivery.
    #[serde(default)]
    ordered: Option<String>,
}

impl EditForm {
    /// The form as first shown: the destination's current (redacted) document.
    fn from_document(doc: &Value) -> Self {
        let headers = doc["headers"]
            .as_object()
            .map(|map| {
                map.iter()
                    .map(|(name, value)| format!("{name}: {}", value.as_str().unwrap_or_default()))
                    .collect::<Vec<_>>()
                    .join("\n")
            })
            .unwrap_or_default();
        Self {
            url: text_of(&doc["url"]),
            headers,
            settings: pretty(&doc["settings"]),
            timeout: text_of(&doc["timeout"]),
            retry: doc.get("retry").map(Value::to_string).unwrap_or_default(),
            max_in_flight: text_of(&doc["max_in_flight"]),
            rate_limit: text_of(&doc["rate_limit"]),
            ordered: doc["ordered"]
                .as_bool()
                .unwrap_or(false)
                .then(|| "on".into()),
        }
    }

    /// The `PUT` body this form asks for, the kind, secret and state kept from `doc`.
    fn to_input(&self, id: &str, doc: &Value) -> Result<DestinationInput, Problem> {
        let kind = doc["kind"].as_str().unwrap_or("http");
        let http = kind == "http";
        let timeout = self.timeout.trim();
        Ok(DestinationInput {
            id: id.to_owned(),
            kind: Some(kind.to_owned()),
            url: http.then(|| self.url.trim().to_owned()),
            settings: if http {
                None
            } else {
                json("settings", &self.settings)?
            },
            // Absent keeps the current secret; rotation has its own button.
            secret: None,
            timeout: (!timeout.is_empty()).then(|| timeout.to_owned()),
            retry: json("retry", &self.retry)?,
            headers: if http {
                Some(parse_headers(&self.headers)?)
            } else {
                None
            },
            max_in_flight: number("max_in_flight", &self.max_in_flight)?,
            rate_limit: number("rate_limit", &self.rate_limit)?,
            ordered: Some(self.ordered.is_some()),
            enabled: doc["enabled"].as_bool(),
        })
    }
}

fn find(state: &AppState, id: &str) -> Result<Destination, Problem> {
    api::all(state)
        .into_iter()
        .find(|d| d.id == id)
        .ok_or_else(|| Problem::not_found(format!("no destination `{id}`")))
}

/// `GET /ui/destinations/{id}`
pub async fn detail(
    session: Session,
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> UiResult<Response> {
    let doc = api::document(&state, &id)?;
    let form = EditForm::from_document(&doc);
    detail_page(&session, &state, &id, &form, None)
}

fn detail_page(
    session: &Session,
    state: &AppState,
    id: &str,
    form: &EditForm,
    problem: Option<Problem>,
) -> UiResult<Response> {
    let d = find(state, id)?;
    let health = state.health.get(id);
    let editable = session.can_write() && d.managed_by == "api";
    let http = d.kind == "http";
    let body = html! {
        dl.facts {
            dt { "Kind" } dd { (d.kind) }
            dt { "Target" } dd { code { (d.url) } }
            dt { "State" } dd { (badge(if d.enabled { "active" } else { "disabled" })) }
            dt { "Circuit" } dd { (badge(health.as_ref().map_or("closed", |h| h.state.as_str()))) }
            dt { "Failures in a row" } dd { (health.as_ref().map_or(0, |h| h.consecutive_failures)) }
            @if let Some(error) = health.as_ref().and_then(|h| h.last_error.clone()) {
                dt { "Last error" } dd { (error) }
            }
            dt { "Managed by" } dd { (d.managed_by) }
            @if let Some(at) = &d.updated_at { dt { "Last change" } dd { (at) } }
        }
        p {
            a href={ "/ui/deliveries?destination=" (enc(id)) } { "Deliveries" } " · "
            a href={ "/ui/deliveries?status=failed&destination=" (enc(id)) } { "Dead letters" }
        }
        (managed_note(d.managed_by))
        @if session.can_write() && d.managed_by == "api" {
            div.actions {
                (enable_toggle(session, "/ui/destinations", id, d.enabled, PAUSE_NOTE))
                @if http { " " (rotate_button(session, id)) }
                " " (delete_button(session, "/ui/destinations", id, "destination"))
            }
        }
        @if editable {
            section aria-labelledby="edit-h" {
                h2 #edit-h { "Edit" }
                (error_box(problem.as_ref()))
                form.stack method="post" action={ "/ui/destinations/" (enc(id)) } {
                    (csrf(session))
                    @if http {
                        label { "URL " input type="url" name="url" required value=(form.url); }
                        label { "Extra headers (one Name: value per line) "
                            textarea name="headers" rows="3" spellcheck="false" { (form.headers) }
                        }
                    } @else {
                        label { "Settings (JSON; credentials show as ******** and are kept unless replaced) "
                            textarea name="settings" rows="10" spellcheck="false" { (form.settings) }
                        }
                    }
                    label { "Timeout per attempt " input type="text" name="timeout" value=(form.timeout) placeholder="15s"; }
                    label { "Retries (JSON: {\"schedule\": [\"5s\", \"5m\"]} or {\"exponential\": {…}}) "
                        input type="text" name="retry" value=(form.retry) spellcheck="false";
                    }
                    label { "Attempts in flight at most (empty: the server's default) "
                        input type="number" name="max_in_flight" min="1" value=(form.max_in_flight);
                    }
                    label { "Deliveries per second at most (empty: unlimited) "
                        input type="number" name="rate_limit" min="0" step="any" value=(form.rate_limit);
                    }
                    label.check {
                        input type="checkbox" name="ordered" checked[form.ordered.is_some()];
                        " Deliver in order (each delivery waits for the ones before it)"
                    }
                    button type="submit" { "Save changes" }
                }
            }
        }
        p { a href="/ui/destinations" { "All destinations" } }
    };
    let response = html_response(layout::page(
        session,
        &format!("Destination {id}"),
        "/ui/destinations",
        body,
    ));
    Ok(with_status_of(response, problem.as_ref()))
}

/// `POST /ui/destinations/{id}`: saves the edit form. A refused change shows the form again with
/// the user's input and the reason.
pub async fn update(
    session: Session,
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    body: Bytes,
) -> UiResult<Response> {
    let form: EditForm = session.form(&body)?;
    session.require_write()?;
    let doc = api::document(&state, &id)?;
    let result = match form.to_input(&id, &doc) {
        Ok(input) => api::replace_destination(&state, &id, input).await,
        Err(problem) => Err(problem),
    };
    match result {
        Ok(_) => Ok(see_other(&format!("/ui/destinations/{}", enc(&id)))),
        Err(problem) if super::forms::shown_again(&problem) => {
            detail_page(&session, &state, &id, &form, Some(problem))
        }
        Err(problem) => Err(problem.into()),
    }
}

/// `POST /ui/destinations/{id}/enable` and `…/disable`.
pub async fn set_enabled(
    session: Session,
    State(state): State<Arc<AppState>>,
    Path((id, action)): Path<(String, String)>,
    body: Bytes,
) -> UiResult {
    session.button(&body)?;
    let enabled = super::forms::toggle(&action)?;
    api::patch_destination(&state, &id, json!({ "enabled": enabled })).await?;
    Ok(see_other(&format!("/ui/destinations/{}", enc(&id))))
}

/// `POST /ui/destinations/{id}/delete` (refused while routes use the destination).
pub async fn delete(
    session: Session,
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    body: Bytes,
) -> UiResult {
    session.button(&body)?;
    apply(&state, Change::Delete(Kind::Destination, id)).await?;
    Ok(see_other("/ui/destinations"))
}

/// `POST /ui/destinations/{id}/rotate-secret`: a new generated secret, shown once.
pub async fn rotate_secret(
    session: Session,
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    body: Bytes,
) -> UiResult {
    session.button(&body)?;
    let secret = api::rotate_secret(&state, &id).await?;
    let body = html! {
        p role="status" { "The signing secret of destination " code { (id) } " was rotated; deliveries from now on are signed with it." }
        p { code data-testid="new-secret" { (secret) } " " (copy_button(&secret, "Copy the new secret")) }
        p { a href={ "/ui/destinations/" (enc(&id)) } { "Back to " (id) } }
    };
    Ok(html_response(layout::page(
        &session,
        "Secret rotated",
        "/ui/destinations",
        body,
    )))
}
