//! Sources: the list (ingest URL, last event, state), create (webhook sources from a short form,
//! every other kind from its settings), and one page per source to edit, disable or enable,
//! delete and send a test event. Edits go through the same functions as `PUT`/`PATCH
//! /v1/sources/{id}`, so secrets shown redacted are kept unless replaced.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use maud::{Markup, html};
use serde::Deserialize;
use serde_json::{Value, json};
use switchboard_core::ids::new_event_id;
use switchboard_core::time::now_millis;
use switchboard_store::{EventFilter, NewEvent};

use super::forms::{
    delete_button, enable_toggle, error_box, json, managed_note, number, pretty, text_of,
    with_status_of,
};
use super::layout::{self, badge, copy_button, csrf, time};
use super::session::Session;
use super::{UiResult, enc, html_response, see_other};
use crate::api::internal;
use crate::api::resources::apply;
use crate::api::sources::{self as api, Source, SourceInput};
use crate::problem::Problem;
use crate::runtime::{Change, Kind};
use crate::state::AppState;

/// What disabling a source does, for the confirmation.
const PAUSE_NOTE: &str =
    "Webhook senders get 503 and retry later; a fetching source stops fetching.";

/// The origin the browser used to reach us, for showing full ingest URLs.
pub fn origin(headers: &HeaderMap) -> String {
    let host = headers
        .get(axum::http::header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("localhost");
    let scheme = if headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("https"))
    {
        "https"
    } else {
        "http"
    };
    format!("{scheme}://{host}")
}

/// The "enabled"/"disabled" badge.
fn state_badge(enabled: bool) -> Markup {
    badge(if enabled { "active" } else { "disabled" })
}

/// `GET /ui/sources`
pub async fn list(
    session: Session,
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
) -> UiResult<Response> {
    let sources = api::all(&state);
    let base = origin(&headers);
    let mut last = Vec::with_capacity(sources.len());
    for s in &sources {
        last.push(newest_event_at(&state, &s.id).await?);
    }
    let body = html! {
        table.list aria-label="Sources" {
            thead { tr { th { "Source" } th { "Kind" } th { "Verifier" } th { "State" } th { "Ingest URL" } th { "Last event" } th { "Actions" } } }
            tbody {
                @for (s, last) in sources.iter().zip(&last) {
                    tr {
                        td { a href={ "/ui/sources/" (enc(&s.id)) } { (s.id) } }
                        td { (s.kind) }
                        td { (s.verifier.get("kind").and_then(|k| k.as_str()).unwrap_or("none")) }
                        td { (state_badge(s.enabled)) }
                        td {
                            @if let Some(path) = &s.ingest_path {
                                @let url = format!("{base}{path}");
                                code { (url) } " " (copy_button(&url, &format!("Copy the ingest URL of {}", s.id)))
                            } @else { "—" }
                        }
                        td { @if let Some(at) = last { (time(*at)) } @else { "never" } }
                        td {
                            a href={ "/ui/events?source=" (enc(&s.id)) } { "Events" } " · "
                            a href={ "/ui/sources/" (enc(&s.id)) } aria-label={ "Edit " (s.id) } { "Edit" }
                            @if session.can_write() {
                                " "
                                form.inline method="post" action={ "/ui/sources/" (enc(&s.id)) "/test-event" } {
                                    (csrf(&session))
                                    button type="submit" aria-label={ "Send a test event to " (s.id) } { "Send test event" }
                                }
                            }
                        }
                    }
                }
            }
        }
        @if sources.is_empty() { p.empty { "No sources yet." } }
        @if session.can_write() { (create_forms(&session)) }
    };
    Ok(html_response(layout::page(
        &session,
        "Sources",
        "/ui/sources",
        body,
    )))
}

async fn newest_event_at(state: &AppState, source: &str) -> Result<Option<i64>, Problem> {
    let newest = state
        .store
        .list_events(&EventFilter {
            source: Some(source.to_owned()),
            limit: 1,
            ..Default::default()
        })
        .await
        .map_err(internal)?;
    Ok(newest.first().map(|e| e.received_at))
}

fn create_forms(session: &Session) -> Markup {
    html! {
        section aria-labelledby="new-source-h" {
            h2 #new-source-h { "New webhook source" }
            form.stack method="post" action="/ui/sources" {
                (csrf(session))
                label { "Id " input type="text" name="id" required pattern="[A-Za-z0-9_\\-]{1,64}" placeholder="github"; }
                label { "Verifier "
                    select name="verifier" {
                        @for (kind, label) in VERIFIERS { option value=(kind) { (label) } }
                    }
                }
                label { "Signing secret (for verifiers that need one) " input type="password" name="secret" autocomplete="off"; }
                button type="submit" { "Create source" }
            }
            p.hint { "Verifiers with more settings (hmac, basic, api-key, twilio, sendgrid): create the source, then edit its verifier." }
        }
        details.create {
            summary { "New source of another kind (queue, websocket, schedule)" }
            form.stack method="post" action="/ui/sources" {
                (csrf(session))
                label { "Id " input type="text" name="id" required pattern="[A-Za-z0-9_\\-]{1,64}" placeholder="orders-queue"; }
                label { "Kind "
                    select name="kind" {
                        @for kind in ["queue", "websocket", "schedule"] { option value=(kind) { (kind) } }
                    }
                }
                label { "Settings (JSON: the keys of a [[sources]] table beside id and kind) "
                    textarea name="settings" rows="6" required
                        placeholder="{\"broker\": \"nats\", \"url\": \"nats://127.0.0.1:4222\", \"stream\": \"ORDERS\", \"subject\": \"orders.>\"}" {}
                }
                button type="submit" { "Create source" }
            }
            p.hint { "The settings of each kind are in docs/sources.md." }
        }
    }
}

/// Verifiers the short create form offers: those configured by their secrets alone.
const VERIFIERS: &[(&str, &str)] = &[
    ("none", "none (accept every request)"),
    ("standard-webhooks", "Standard Webhooks / Svix"),
    ("github", "GitHub"),
    ("stripe", "Stripe"),
    ("slack", "Slack"),
    ("shopify", "Shopify"),
];

/// The create-source forms: a webhook source from a verifier and its secret, or another kind
/// from its settings.
#[derive(Debug, Deserialize)]
pub struct CreateForm {
    /// Source id.
    id: String,
    /// Verifier kind (webhook sources).
    #[serde(default)]
    verifier: String,
    /// Its secret, if it needs one.
    #[serde(default)]
    secret: String,
    /// A fetching kind (empty: webhook).
    #[serde(default)]
    kind: String,
    /// That kind's settings, as JSON.
    #[serde(default)]
    settings: String,
}

/// `POST /ui/sources`: creates a source, validated as `POST /v1/sources` does.
pub async fn create(session: Session, State(state): State<Arc<AppState>>, body: Bytes) -> UiResult {
    let form: CreateForm = session.form(&body)?;
    session.require_write()?;
    let id = form.id.trim().to_owned();
    let input = if form.kind.is_empty() || form.kind == "webhook" {
        let verifier_kind = if form.verifier.is_empty() {
            "none"
        } else {
            form.verifier.as_str()
        };
        if !VERIFIERS.iter().any(|(kind, _)| *kind == verifier_kind) {
            return Err(Problem::field("verifier", "choose one of the listed verifiers").into());
        }
        let mut verifier = json!({ "kind": verifier_kind });
        if verifier_kind != "none" {
            verifier["secrets"] = json!([form.secret.trim()]);
        }
        SourceInput {
            id: id.clone(),
            kind: None,
            settings: None,
            verifier: Some(verifier),
            max_body_bytes: None,
            rate_limit: None,
            enabled: None,
        }
    } else {
        SourceInput {
            id: id.clone(),
            kind: Some(form.kind.clone()),
            settings: json("settings", &form.settings)?,
            verifier: None,
            max_body_bytes: None,
            rate_limit: None,
            enabled: None,
        }
    };
    api::create_source(&state, input).await?;
    Ok(see_other(&format!("/ui/sources/{}", enc(&id))))
}

/// The edit form's fields. JSON fields hold the verifier or settings with secrets shown as
/// `********`, which keep the current values when sent back.
#[derive(Debug, Default, Deserialize)]
pub struct EditForm {
    /// The verifier as JSON (webhook sources).
    #[serde(default)]
    verifier: String,
    /// A new signing secret for verifiers with `secrets`.
    #[serde(default)]
    new_secret: String,
    /// Present (checked) to keep the current secrets after the new one (rotation).
    #[serde(default)]
    keep_secrets: Option<String>,
    /// Body limit in bytes.
    #[serde(default)]
    max_body_bytes: String,
    /// Rate limit: requests per second.
    #[serde(default)]
    rate_per_second: String,
    /// Rate limit: burst.
    #[serde(default)]
    rate_burst: String,
    /// A fetching kind's settings as JSON.
    #[serde(default)]
    settings: String,
}

impl EditForm {
    /// The form as first shown: the source's current (redacted) document.
    fn from_document(doc: &Value) -> Self {
        Self {
            verifier: pretty(&doc["verifier"]),
            new_secret: String::new(),
            keep_secrets: Some("on".into()),
            max_body_bytes: text_of(&doc["max_body_bytes"]),
            rate_per_second: text_of(&doc["rate_limit"]["per_second"]),
            rate_burst: text_of(&doc["rate_limit"]["burst"]),
            settings: pretty(&doc["settings"]),
        }
    }

    /// The `PUT` body this form asks for, the kind and state kept from `doc`.
    fn to_input(&self, id: &str, doc: &Value) -> Result<SourceInput, Problem> {
        let kind = doc["kind"].as_str().unwrap_or("webhook");
        let enabled = doc["enabled"].as_bool();
        if kind != "webhook" {
            return Ok(SourceInput {
                id: id.to_owned(),
                kind: Some(kind.to_owned()),
                settings: json("settings", &self.settings)?,
                verifier: None,
                max_body_bytes: None,
                rate_limit: None,
                enabled,
            });
        }
        let mut verifier = json("verifier", &self.verifier)?.unwrap_or(json!({"kind": "none"}));
        let secret = self.new_secret.trim();
        if !secret.is_empty() {
            let Some(map) = verifier
                .as_object_mut()
                .filter(|m| m.contains_key("secrets"))
            else {
                return Err(Problem::field(
                    "new_secret",
                    "this verifier has no `secrets` list; edit its JSON instead",
                ));
            };
            let mut secrets = vec![json!(secret)];
            if self.keep_secrets.is_some()
                && let Some(Value::Array(current)) = map.get("secrets")
            {
                secrets.extend(
                    current
                        .iter()
                        .filter(|s| s.as_str() != Some(secret))
                        .cloned(),
                );
            }
            map.insert("secrets".into(), Value::Array(secrets));
        }
        let rate_limit = match number::<u32>("rate_per_second", &self.rate_per_second)? {
            Some(per_second) => {
                let mut limit = json!({ "per_second": per_second });
                if let Some(burst) = number::<u32>("rate_burst", &self.rate_burst)? {
                    limit["burst"] = json!(burst);
                }
                Some(limit)
            }
            None => None,
        };
        Ok(SourceInput {
            id: id.to_owned(),
            kind: None,
            settings: None,
            verifier: Some(verifier),
            max_body_bytes: number("max_body_bytes", &self.max_body_bytes)?,
            rate_limit,
            enabled,
        })
    }
}

fn find(state: &AppState, id: &str) -> Result<Source, Problem> {
    api::all(state)
        .into_iter()
        .find(|s| s.id == id)
        .ok_or_else(|| Problem::not_found(format!("no source `{id}`")))
}

/// `GET /ui/sources/{id}`
pub async fn detail(
    session: Session,
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> UiResult<Response> {
    let doc = api::document(&state, &id)?;
    let form = EditForm::from_document(&doc);
    detail_page(&session, &state, &id, &headers, &form, None).await
}

async fn detail_page(
    session: &Session,
    state: &AppState,
    id: &str,
    headers: &HeaderMap,
    form: &EditForm,
    problem: Option<Problem>,
) -> UiResult<Response> {
    let source = find(state, id)?;
    let last = newest_event_at(state, id).await?;
    let editable = session.can_write() && source.managed_by == "api";
    let is_webhook = source.kind == "webhook";
    let body = html! {
        dl.facts {
            dt { "Kind" } dd { (source.kind) }
            dt { "State" } dd { (state_badge(source.enabled)) }
            dt { "Managed by" } dd { (source.managed_by) }
            @if let Some(path) = &source.ingest_path {
                @let url = format!("{}{path}", origin(headers));
                dt { "Ingest URL" } dd { code { (url) } " " (copy_button(&url, "Copy the ingest URL")) }
            }
            dt { "Last event" } dd { @if let Some(at) = last { (time(at)) } @else { "never" } }
            @if let Some(at) = &source.updated_at { dt { "Last change" } dd { (at) } }
        }
        p {
            a href={ "/ui/events?source=" (enc(id)) } { "Events from " (id) }
        }
        (managed_note(source.managed_by))
        @if session.can_write() {
            div.actions {
                @if is_webhook {
                    form.inline method="post" action={ "/ui/sources/" (enc(id)) "/test-event" } {
                        (csrf(session))
                        button type="submit" aria-label={ "Send a test event to " (id) } { "Send test event" }
                    }
                }
                @if source.managed_by == "api" {
                    " " (enable_toggle(session, "/ui/sources", id, source.enabled, PAUSE_NOTE))
                    " " (delete_button(session, "/ui/sources", id, "source"))
                }
            }
        }
        @if editable {
            section aria-labelledby="edit-h" {
                h2 #edit-h { "Edit" }
                (error_box(problem.as_ref()))
                form.stack method="post" action={ "/ui/sources/" (enc(id)) } {
                    (csrf(session))
                    @if is_webhook {
                        label { "Verifier (JSON; secrets show as ******** and are kept unless replaced) "
                            textarea name="verifier" rows="6" spellcheck="false" { (form.verifier) }
                        }
                        label { "New signing secret (optional) "
                            input type="password" name="new_secret" autocomplete="off" value=(form.new_secret);
                        }
                        label.check {
                            input type="checkbox" name="keep_secrets" checked[form.keep_secrets.is_some()];
                            " Keep the current secrets too (rotation: both verify until you remove the old one)"
                        }
                        label { "Largest body in bytes (empty: the server's limit) "
                            input type="number" name="max_body_bytes" min="1" value=(form.max_body_bytes);
                        }
                        fieldset {
                            legend { "Rate limit (empty: none)" }
                            label { "Requests per second " input type="number" name="rate_per_second" min="1" value=(form.rate_per_second); }
                            " "
                            label { "Burst " input type="number" name="rate_burst" min="1" value=(form.rate_burst); }
                        }
                    } @else {
                        label { "Settings (JSON; credentials show as ******** and are kept unless replaced) "
                            textarea name="settings" rows="12" spellcheck="false" { (form.settings) }
                        }
                    }
                    button type="submit" { "Save changes" }
                }
            }
        }
        p { a href="/ui/sources" { "All sources" } }
    };
    let response = html_response(layout::page(
        session,
        &format!("Source {id}"),
        "/ui/sources",
        body,
    ));
    Ok(with_status_of(response, problem.as_ref()))
}

/// `POST /ui/sources/{id}`: saves the edit form. A refused change shows the form again with the
/// user's input and the reason.
pub async fn update(
    session: Session,
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> UiResult<Response> {
    let form: EditForm = session.form(&body)?;
    session.require_write()?;
    let doc = api::document(&state, &id)?;
    let result = match form.to_input(&id, &doc) {
        Ok(input) => api::replace_source(&state, &id, input).await,
        Err(problem) => Err(problem),
    };
    match result {
        Ok(_) => Ok(see_other(&format!("/ui/sources/{}", enc(&id)))),
        Err(problem) if super::forms::shown_again(&problem) => {
            detail_page(&session, &state, &id, &headers, &form, Some(problem)).await
        }
        Err(problem) => Err(problem.into()),
    }
}

/// `POST /ui/sources/{id}/enable` and `…/disable`.
pub async fn set_enabled(
    session: Session,
    State(state): State<Arc<AppState>>,
    Path((id, action)): Path<(String, String)>,
    body: Bytes,
) -> UiResult {
    session.button(&body)?;
    let enabled = super::forms::toggle(&action)?;
    api::patch_source(&state, &id, json!({ "enabled": enabled })).await?;
    Ok(see_other(&format!("/ui/sources/{}", enc(&id))))
}

/// `POST /ui/sources/{id}/delete` (refused while routes use the source).
pub async fn delete(
    session: Session,
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    body: Bytes,
) -> UiResult {
    session.button(&body)?;
    apply(&state, Change::Delete(Kind::Source, id)).await?;
    Ok(see_other("/ui/sources"))
}

/// `POST /ui/sources/{id}/test-event`: stores a test event as if it had arrived (it is routed
/// like any other), and shows it.
pub async fn test_event(
    session: Session,
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    body: Bytes,
) -> UiResult {
    session.button(&body)?;
    let runtime = state.registry.current();
    if !runtime.config.sources.iter().any(|s| s.id == id) {
        return Err(Problem::not_found(format!("no source `{id}`")).into());
    }
    let now = now_millis();
    let event_id = new_event_id();
    let payload = json!({
        "type": "switchboard.test",
        "id": event_id,
        "sent_from": "dashboard",
    });
    let event = NewEvent {
        id: event_id.clone(),
        source: id.clone(),
        tenant: None,
        event_type: Some("switchboard.test".into()),
        dedup_key: None,
        headers: vec![("x-switchboard-test".into(), "dashboard".into())],
        content_type: Some("application/json".into()),
        body: payload.to_string().into_bytes(),
        received_at: now,
        forward_headers: Vec::new(),
        deliveries: runtime.new_deliveries(&id),
    };
    state.committer.commit(event).await.map_err(internal)?;
    Ok(see_other(&format!("/ui/events/{}", enc(&event_id))))
}
