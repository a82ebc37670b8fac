//! Tenants with their endpoints (create, disable/enable, rotate secrets) and connections
//! (status, scopes, expiry, "Connect", "Test"). Sources and destinations have their own
//! modules.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::response::Response;
use maud::html;
use serde::Deserialize;

use super::layout::{self, badge, copy_button, csrf};
use super::session::Session;
use super::{UiResult, enc, html_response, see_other};
use crate::api::internal;
use crate::state::AppState;

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
                @if session.can_write() {
                    details.create {
                        summary { "Rename or delete " (tenant.id) }
                        form.inline method="post" action={ "/ui/tenants/" (enc(&tenant.id)) "/rename" } {
                            (csrf(&session))
                            label { "Name " input type="text" name="name" required value=(tenant.name); }
                            button type="submit" aria-label={ "Rename " (tenant.id) } { "Rename" }
                        }
                        " "
                        form.inline method="post" action={ "/ui/tenants/" (enc(&tenant.id)) "/delete" } {
                            (csrf(&session))
                            button.danger type="submit" aria-label={ "Delete tenant " (tenant.id) }
                                data-confirm="Delete this tenant and all its endpoints? Deliveries still waiting for them are cancelled." { "Delete tenant" }
                        }
                    }
                }
                table.list aria-label={ "Endpoints of " (tenant.id) } {
                    thead { tr { th { "Endpoint" } th { "URL" } th { "Event types" } th { "State" } th { "Circuit" } th { "Actions" } } }
                    tbody {
                        @for e in runtime.tenant_endpoints(&tenant.id) {
                            @let health = state.health.get(&e.id);
                            tr {
                                td {
                                    a href={ "/ui/tenants/" (enc(&tenant.id)) "/endpoints/" (enc(&e.id)) } aria-label={ "Edit endpoint " (e.id) } { code { (e.id) } }
                                    @if !e.description.is_empty() { br; small { (e.description) } }
                                }
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
    session.button(&body)?;
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
    session.button(&body)?;
    let enabled = super::forms::toggle(&action)?;
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
    session.button(&body)?;
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
