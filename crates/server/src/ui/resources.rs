//! Sources (ingest URL, last event, "send test event"), destinations (circuit state), tenants
//! with their endpoints, and connections (status, scopes, expiry, "Connect").

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use maud::html;
use serde::Deserialize;
use switchboard_core::ids::new_event_id;
use switchboard_core::time::now_millis;
use switchboard_store::{EventFilter, NewEvent};

use super::layout::{self, badge, copy_button, csrf, time};
use super::session::Session;
use super::{UiResult, enc, html_response, see_other};
use crate::api::internal;
use crate::problem::Problem;
use crate::state::AppState;

/// The origin the browser used to reach us, for showing full ingest URLs.
fn origin(headers: &HeaderMap) -> String {
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

/// `GET /ui/sources`
pub async fn sources(
    session: Session,
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
) -> UiResult<Response> {
    let sources = crate::api::sources::all(&state);
    let base = origin(&headers);
    let mut last = Vec::with_capacity(sources.len());
    for s in &sources {
        let newest = state
            .store
            .list_events(&EventFilter {
                source: Some(s.id.clone()),
                limit: 1,
                ..Default::default()
            })
            .await
            .map_err(internal)?;
        last.push(newest.first().map(|e| e.received_at));
    }
    let body = html! {
        table.list aria-label="Sources" {
            thead { tr { th { "Source" } th { "Kind" } th { "Verifier" } th { "Ingest URL" } th { "Last event" } th { "Actions" } } }
            tbody {
                @for (s, last) in sources.iter().zip(&last) {
                    tr {
                        td { a href={ "/ui/events?source=" (enc(&s.id)) } { (s.id) } }
                        td { (s.kind) }
                        td { (s.verifier.get("kind").and_then(|k| k.as_str()).unwrap_or("none")) }
                        td {
                            @if let Some(path) = &s.ingest_path {
                                @let url = format!("{base}{path}");
                                code { (url) } " " (copy_button(&url, &format!("Copy the ingest URL of {}", s.id)))
                            } @else { "—" }
                        }
                        td { @if let Some(at) = last { (time(*at)) } @else { "never" } }
                        td {
                            @if session.can_write() {
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
        @if session.can_write() {
            section aria-labelledby="new-source-h" {
                h2 #new-source-h { "New webhook source" }
                form.stack method="post" action="/ui/sources" {
                    (csrf(&session))
                    label { "Id " input type="text" name="id" required pattern="[A-Za-z0-9_\\-]{1,64}" placeholder="github"; }
                    label { "Verifier "
                        select name="verifier" {
                            @for (kind, label) in VERIFIERS { option value=(kind) { (label) } }
                        }
                    }
                    label { "Signing secret (for verifiers that need one) " input type="password" name="secret" autocomplete="off"; }
                    button type="submit" { "Create source" }
                }
                p.hint { "Other kinds (queue, websocket, schedule) and verifiers with more settings: switchboard.toml or POST /v1/sources." }
            }
        }
    };
    Ok(html_response(layout::page(
        &session,
        "Sources",
        "/ui/sources",
        body,
    )))
}

/// Verifiers the create form offers: those configured by their secrets alone.
const VERIFIERS: &[(&str, &str)] = &[
    ("none", "none (accept every request)"),
    ("standard-webhooks", "Standard Webhooks / Svix"),
    ("github", "GitHub"),
    ("stripe", "Stripe"),
    ("slack", "Slack"),
    ("shopify", "Shopify"),
];

/// The create-source form.
#[derive(Debug, Deserialize)]
pub struct SourceForm {
    /// Source id.
    id: String,
    /// Verifier kind.
    verifier: String,
    /// Its secret, if it needs one.
    #[serde(default)]
    secret: String,
}

/// `POST /ui/sources`: creates a webhook source, validated as `POST /v1/sources` does.
pub async fn create_source(
    session: Session,
    State(state): State<Arc<AppState>>,
    body: Bytes,
) -> UiResult {
    let form: SourceForm = session.form(&body)?;
    session.require_write()?;
    if !VERIFIERS.iter().any(|(kind, _)| *kind == form.verifier) {
        return Err(Problem::field("verifier", "choose one of the listed verifiers").into());
    }
    let mut verifier = serde_json::json!({ "kind": form.verifier });
    if form.verifier != "none" {
        verifier["secrets"] = serde_json::json!([form.secret.trim()]);
    }
    crate::api::sources::create_source(
        &state,
        crate::api::sources::SourceInput {
            id: form.id.trim().to_owned(),
            kind: None,
            settings: None,
            verifier: Some(verifier),
            max_body_bytes: None,
            rate_limit: None,
        },
    )
    .await?;
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
    let _: std::collections::HashMap<String, String> = session.form(&body)?;
    session.require_write()?;
    let runtime = state.registry.current();
    if !runtime.config.sources.iter().any(|s| s.id == id) {
        return Err(Problem::not_found(format!("no source `{id}`")).into());
    }
    let now = now_millis();
    let event_id = new_event_id();
    let payload = serde_json::json!({
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

/// `GET /ui/destinations`
pub async fn destinations(
    session: Session,
    State(state): State<Arc<AppState>>,
) -> UiResult<Response> {
    let destinations = crate::api::destinations::all(&state);
    let body = html! {
        table.list aria-label="Destinations" {
            thead { tr { th { "Destination" } th { "Kind" } th { "Target" } th { "Circuit" } th { "Failures in a row" } th { "Last success" } th { "Last error" } th { "Actions" } } }
            tbody {
                @for d in &destinations {
                    @let health = state.health.get(&d.id);
                    tr {
                        td { (d.id) }
                        td { (d.kind) }
                        td { code { (d.url) } }
                        td { (badge(health.as_ref().map_or("closed", |h| h.state.as_str()))) }
                        td.num { (health.as_ref().map_or(0, |h| h.consecutive_failures)) }
                        td { @if let Some(at) = health.as_ref().and_then(|h| h.last_success_at) { (time(at)) } @else { "—" } }
                        td { (health.as_ref().and_then(|h| h.last_error.clone()).unwrap_or_default()) }
                        td {
                            a href={ "/ui/deliveries?destination=" (enc(&d.id)) } { "Deliveries" } " · "
                            a href={ "/ui/deliveries?status=failed&destination=" (enc(&d.id)) } { "Dead letters" }
                            @if session.can_write() && d.kind == "http" && d.managed_by == "api" {
                                form.inline method="post" action={ "/ui/destinations/" (enc(&d.id)) "/rotate-secret" } {
                                    (csrf(&session))
                                    button type="submit" aria-label={ "Rotate the signing secret of " (d.id) }
                                        data-confirm="Rotate this destination's signing secret? The old one stops signing at once." { "Rotate secret" }
                                }
                            }
                        }
                    }
                }
            }
        }
        @if destinations.is_empty() { p.empty { "No destinations yet." } }
        @if session.can_write() {
            section aria-labelledby="new-destination-h" {
                h2 #new-destination-h { "New HTTP destination" }
                form.stack method="post" action="/ui/destinations" {
                    (csrf(&session))
                    label { "Id " input type="text" name="id" required pattern="[A-Za-z0-9_\\-]{1,64}" placeholder="billing"; }
                    label { "URL " input type="url" name="url" required placeholder="https://example.com/hooks"; }
                    label { "Signing secret (optional; generated when empty) " input type="password" name="secret" autocomplete="off" placeholder="whsec_…"; }
                    button type="submit" { "Create destination" }
                }
                p.hint { "Other kinds (slack, email, queue…) and retry policies: switchboard.toml or POST /v1/destinations." }
            }
        }
    };
    Ok(html_response(layout::page(
        &session,
        "Destinations",
        "/ui/destinations",
        body,
    )))
}

/// `GET /ui/tenants`
pub async fn tenants(session: Session, State(state): State<Arc<AppState>>) -> UiResult<Response> {
    let runtime = state.registry.current();
    let body = html! {
        @if runtime.tenants.is_empty() { p.empty { "No tenants yet." } }
        @if session.can_write() {
            details.create {
                summary { "New tenant" }
                form.stack method="post" action="/ui/tenants" {
                    (csrf(&session))
                    label { "Id " input type="text" name="id" required pattern="[A-Za-z0-9_\\-]{1,64}" placeholder="acme"; }
                    label { "Name " input type="text" name="name" placeholder="Acme Inc."; }
                    button type="submit" { "Create tenant" }
                }
            }
        }
        @for tenant in runtime.tenants.values() {
            section aria-label={ "Tenant " (tenant.id) } {
                h2 { (tenant.name) " " small { code { (tenant.id) } } }
                table.list aria-label={ "Endpoints of " (tenant.id) } {
                    thead { tr { th { "Endpoint" } th { "URL" } th { "Event types" } th { "State" } th { "Circuit" } th { "Actions" } } }
                    tbody {
                        @for e in runtime.tenant_endpoints(&tenant.id) {
                            @let health = state.health.get(&e.id);
                            tr {
                                td { code { (e.id) } @if !e.description.is_empty() { br; small { (e.description) } } }
                                td { code { (e.url) } }
                                td { @if e.event_types.is_empty() { "all" } @else { (e.event_types.join(", ")) } }
                                td {
                                    @if e.enabled { (badge("active")) } @else {
                                        (badge("disabled"))
                                        @if let Some(reason) = &e.disabled_reason { " " small { (reason) } }
                                    }
                                }
                                td { (badge(health.as_ref().map_or("closed", |h| h.state.as_str()))) }
                                td {
                                    @if session.can_write() {
                                        @let base = format!("/ui/tenants/{}/endpoints/{}", enc(&tenant.id), enc(&e.id));
                                        form.inline method="post" action={ (base) "/" (if e.enabled { "disable" } else { "enable" }) } {
                                            (csrf(&session))
                                            button type="submit" aria-label={ (if e.enabled { "Disable " } else { "Enable " }) (e.id) } {
                                                (if e.enabled { "Disable" } else { "Enable" })
                                            }
                                        }
                                        " "
                                        form.inline method="post" action={ (base) "/rotate-secret" } {
                                            (csrf(&session))
                                            button type="submit" aria-label={ "Rotate the signing secret of " (e.id) }
                                                data-confirm="Rotate this endpoint's signing secret? The old one keeps signing for 24 hours." { "Rotate secret" }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
                @if session.can_write() {
                    form.inline method="post" action={ "/ui/tenants/" (enc(&tenant.id)) "/endpoints" } aria-label={ "Add an endpoint to " (tenant.id) } {
                        (csrf(&session))
                        label { "URL " input type="url" name="url" required placeholder="https://customer.example/hooks"; }
                        label { "Event types (comma-separated, empty for all) " input type="text" name="event_types" placeholder="invoice.paid, invoice.failed"; }
                        button type="submit" { "Add endpoint" }
                    }
                }
            }
        }
    };
    Ok(html_response(layout::page(
        &session,
        "Tenants & endpoints",
        "/ui/tenants",
        body,
    )))
}

/// `GET /ui/connections`
pub async fn connections(
    session: Session,
    State(state): State<Arc<AppState>>,
) -> UiResult<Response> {
    let records = state
        .connections
        .store()
        .list_connections()
        .await
        .map_err(internal)?;
    let mut rows = Vec::with_capacity(records.len());
    for record in records {
        match state.connections.snapshot_of(record) {
            Ok(snapshot) => rows.push(crate::api::connections::view(
                &snapshot,
                state.connections.warnings(&snapshot.id),
            )),
            Err(error) => tracing::error!(%error, "a stored connection is unreadable"),
        }
    }
    let body = html! {
        table.list aria-label="Connections" {
            thead { tr { th { "Connection" } th { "Provider" } th { "Auth" } th { "Status" } th { "Scopes" } th { "Expires" } th { "Last error" } th { "Actions" } } }
            tbody {
                @for c in &rows {
                    tr {
                        td { code { (c.id) } }
                        td { (c.provider) }
                        td { (c.auth_mode) }
                        td { (badge(c.status.as_str())) }
                        td { (c.scopes.join(" ")) }
                        td { (c.expires_at.as_deref().unwrap_or("—")) }
                        td { (c.last_error.as_deref().unwrap_or("")) }
                        td {
                            @if session.can_write() && c.auth_mode == "oauth2" {
                                form.inline method="post" action={ "/ui/connections/" (enc(&c.id)) "/connect" } {
                                    (csrf(&session))
                                    button type="submit" aria-label={ "Connect " (c.id) } { "Connect" }
                                }
                            }
                            @if session.can_write() {
                                form.inline method="post" action={ "/ui/connections/" (enc(&c.id)) "/test" } {
                                    (csrf(&session))
                                    label { span.visually-hidden { "Path to GET through " (c.id) } input type="text" name="path" placeholder="path, e.g. user" size="12"; }
                                    button type="submit" aria-label={ "Test " (c.id) } { "Test" }
                                }
                            }
                        }
                    }
                }
            }
        }
        @if rows.is_empty() { p.empty { "No connections yet (create them through POST /v1/connections)." } }
    };
    Ok(html_response(layout::page(
        &session,
        "Connections",
        "/ui/connections",
        body,
    )))
}

/// `POST /ui/connections/{id}/connect`: starts the OAuth2 authorization and sends the browser to
/// the provider.
pub async fn connect(
    session: Session,
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    body: Bytes,
) -> UiResult {
    #[derive(Deserialize)]
    struct Empty {}
    let _: Empty = session.form(&body)?;
    session.require_write()?;
    let url = state
        .connections
        .start_authorization(&id)
        .await
        .map_err(crate::api::connections::store_problem)?;
    Ok(see_other(&url))
}

/// `POST /ui/tenants/{tenant}/endpoints/{id}/enable` and `…/disable`.
pub async fn set_endpoint_enabled(
    session: Session,
    State(state): State<Arc<AppState>>,
    Path((tenant, id, action)): Path<(String, String, String)>,
    body: Bytes,
) -> UiResult {
    let _: std::collections::HashMap<String, String> = session.form(&body)?;
    session.require_write()?;
    let enabled = match action.as_str() {
        "enable" => true,
        "disable" => false,
        other => return Err(Problem::not_found(format!("no action `{other}`")).into()),
    };
    crate::api::endpoints::patch_endpoint(
        &state,
        &tenant,
        &id,
        crate::api::endpoints::EndpointPatch {
            enabled: Some(enabled),
            ..Default::default()
        },
    )
    .await?;
    Ok(see_other("/ui/tenants"))
}

/// `POST /ui/tenants/{tenant}/endpoints/{id}/rotate-secret`: rotates with the default grace
/// period and shows the new secret once.
pub async fn rotate_endpoint_secret(
    session: Session,
    State(state): State<Arc<AppState>>,
    Path((tenant, id)): Path<(String, String)>,
    body: Bytes,
) -> UiResult {
    let _: std::collections::HashMap<String, String> = session.form(&body)?;
    session.require_write()?;
    let rotated = crate::api::endpoints::rotate(&state, &tenant, &id, Default::default()).await?;
    let body = html! {
        p role="status" { "The signing secret of endpoint " code { (id) } " was rotated." }
        p { "New secret (shown once here; also at " code { "GET /v1/tenants/" (tenant) "/endpoints/" (id) "/secret" } "):" }
        p { code data-testid="new-secret" { (rotated.secret) } " " (copy_button(&rotated.secret, "Copy the new secret")) }
        @if let Some(until) = &rotated.previous_expires_at {
            p.hint { "The previous secret also signs deliveries until " (until) "." }
        }
        p { a href="/ui/tenants" { "Back to tenants" } }
    };
    Ok(html_response(layout::page(
        &session,
        "Secret rotated",
        "/ui/tenants",
        body,
    )))
}

/// The connection test form.
#[derive(Debug, Deserialize)]
pub struct TestCall {
    /// Path below the provider's base URL.
    #[serde(default)]
    path: String,
}

/// Most characters of a test call's response shown.
const TEST_EXCERPT_CHARS: usize = 4000;

/// `POST /ui/connections/{id}/test`: a `GET` through the connection (the same client as the
/// proxy: credentials, pacing, retries, circuit breaker), showing status, latency and body.
pub async fn test_connection(
    session: Session,
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    body: Bytes,
) -> UiResult {
    let form: TestCall = session.form(&body)?;
    session.require_write()?;
    let client = crate::connections::client::ConnectionClient::new(state.connections.clone());
    let started = std::time::Instant::now();
    let result = client
        .call(
            &id,
            crate::connections::client::ApiRequest::new(
                axum::http::Method::GET,
                form.path.trim().to_owned(),
            ),
        )
        .await;
    let latency = started.elapsed().as_millis();
    let body = html! {
        p { "GET " code { (form.path.trim()) } " through connection " code { (id) } }
        @match &result {
            Ok(response) => {
                @let status = response.status.as_u16();
                p role="status" {
                    (badge(if response.status.is_success() { "succeeded" } else { "failed" }))
                    " HTTP " (status) " in " (latency) " ms (" (response.attempts) " attempt(s))"
                }
                @let text = String::from_utf8_lossy(&response.body);
                @let pretty = serde_json::from_slice::<serde_json::Value>(&response.body).ok()
                    .and_then(|v| serde_json::to_string_pretty(&v).ok());
                pre.payload data-testid="test-response" {
                    (pretty.unwrap_or_else(|| text.chars().take(TEST_EXCERPT_CHARS).collect()))
                }
            }
            Err(error) => {
                p.error role="alert" { (error.to_string()) }
            }
        }
        p { a href="/ui/connections" { "Back to connections" } }
    };
    Ok(html_response(layout::page(
        &session,
        "Connection test",
        "/ui/connections",
        body,
    )))
}

/// The create-destination form.
#[derive(Debug, Deserialize)]
pub struct DestinationForm {
    /// Destination id.
    id: String,
    /// Where to send.
    url: String,
    /// `whsec_…` secret (generated when empty).
    #[serde(default)]
    secret: String,
}

/// `POST /ui/destinations`: creates an HTTP destination, validated (SSRF policy included) as
/// `POST /v1/destinations` does.
pub async fn create_destination(
    session: Session,
    State(state): State<Arc<AppState>>,
    body: Bytes,
) -> UiResult {
    let form: DestinationForm = session.form(&body)?;
    session.require_write()?;
    let secret = form.secret.trim();
    crate::api::destinations::create_destination(
        &state,
        crate::api::destinations::DestinationInput {
            id: form.id.trim().to_owned(),
            kind: None,
            url: Some(form.url.trim().to_owned()),
            settings: None,
            secret: (!secret.is_empty()).then(|| secret.to_owned()),
            timeout: None,
            retry: None,
            headers: None,
            max_in_flight: None,
        },
    )
    .await?;
    Ok(see_other("/ui/destinations"))
}

/// `POST /ui/destinations/{id}/rotate-secret`: a new generated secret, shown once.
pub async fn rotate_destination_secret(
    session: Session,
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    body: Bytes,
) -> UiResult {
    let _: std::collections::HashMap<String, String> = session.form(&body)?;
    session.require_write()?;
    let secret = crate::api::destinations::rotate_secret(&state, &id).await?;
    let body = html! {
        p role="status" { "The signing secret of destination " code { (id) } " was rotated; deliveries from now on are signed with it." }
        p { code data-testid="new-secret" { (secret) } " " (copy_button(&secret, "Copy the new secret")) }
        p { a href="/ui/destinations" { "Back to destinations" } }
    };
    Ok(html_response(layout::page(
        &session,
        "Secret rotated",
        "/ui/destinations",
        body,
    )))
}

/// The create-tenant form.
#[derive(Debug, Deserialize)]
pub struct TenantForm {
    /// Tenant id.
    id: String,
    /// Display name.
    #[serde(default)]
    name: String,
}

/// `POST /ui/tenants`: creates a tenant, validated as `POST /v1/tenants`.
pub async fn create_tenant(
    session: Session,
    State(state): State<Arc<AppState>>,
    body: Bytes,
) -> UiResult {
    let form: TenantForm = session.form(&body)?;
    session.require_write()?;
    crate::api::tenants::create_tenant(
        &state,
        crate::api::tenants::TenantInput {
            id: form.id.trim().to_owned(),
            name: form.name.trim().to_owned(),
            metadata: Default::default(),
        },
    )
    .await?;
    Ok(see_other("/ui/tenants"))
}

/// The add-endpoint form.
#[derive(Debug, Deserialize)]
pub struct EndpointForm {
    /// Where to deliver.
    url: String,
    /// Comma-separated event types (empty: all).
    #[serde(default)]
    event_types: String,
}

/// `POST /ui/tenants/{tenant}/endpoints`: adds an endpoint (secret generated), validated as
/// `POST /v1/tenants/{tenant}/endpoints`.
pub async fn create_endpoint(
    session: Session,
    State(state): State<Arc<AppState>>,
    Path(tenant): Path<String>,
    body: Bytes,
) -> UiResult {
    let form: EndpointForm = session.form(&body)?;
    session.require_write()?;
    let types: Vec<String> = form
        .event_types
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
        .collect();
    crate::api::endpoints::create_endpoint(
        &state,
        &tenant,
        crate::api::endpoints::EndpointInput {
            id: None,
            url: form.url.trim().to_owned(),
            description: None,
            event_types: (!types.is_empty()).then_some(types),
            channels: None,
            secret: None,
            rate_limit: None,
            headers: None,
            enabled: None,
            ordered: None,
            transform: None,
            timeout: None,
            retry: None,
            max_in_flight: None,
        },
    )
    .await?;
    Ok(see_other("/ui/tenants"))
}
