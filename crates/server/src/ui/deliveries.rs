//! Deliveries: the list (with the dead-letter view), one delivery's attempt timeline, replaying
//! one delivery, and bulk replay of a destination's failures after a confirmation.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use maud::{Markup, html};
use serde::Deserialize;
use switchboard_core::DeliveryStatus;
use switchboard_core::time::{format_rfc3339, now_millis};
use switchboard_store::{DeliveryFilter, DeliveryRecord, ReplaySelector};

use super::events::window_start;
use super::layout::{self, badge, csrf, time};
use super::session::Session;
use super::{UiResult, enc, html_response, see_other};
use crate::api::events::parse_status;
use crate::api::internal;
use crate::api::replay::{ReplayRequest, queue, selector};
use crate::problem::Problem;
use crate::state::AppState;

/// Rows per page.
const PAGE: u32 = 50;

/// Most failed deliveries counted for a bulk-replay confirmation.
const COUNT_LIMIT: u32 = 100_000;

/// Filters of the deliveries page.
#[derive(Debug, Default, Deserialize)]
pub struct DeliveryQuery {
    /// Status (`failed` is the dead-letter view).
    #[serde(default)]
    pub status: String,
    /// Destination id.
    #[serde(default)]
    pub destination: String,
    /// Pagination: deliveries older than this sequence number.
    pub before: Option<i64>,
    /// Set after a bulk replay: how many deliveries were queued.
    pub queued: Option<u64>,
}

fn some(value: &str) -> Option<String> {
    let value = value.trim();
    (!value.is_empty()).then(|| value.to_owned())
}

fn row(d: &DeliveryRecord) -> Markup {
    html! {
        tr {
            td { (time(d.updated_at)) }
            td { a href={ "/ui/deliveries/" (enc(&d.id)) } { code { (d.id) } } }
            td { a href={ "/ui/events/" (enc(&d.event_id)) } { code { (d.event_id) } } }
            td { (d.destination) }
            td data-delivery-status=(d.id) { (badge(d.status.as_str())) }
            td.num { (d.attempts) }
            td { (d.last_error.as_deref().unwrap_or("")) }
        }
    }
}

/// `GET /ui/deliveries`
pub async fn list(
    session: Session,
    State(state): State<Arc<AppState>>,
    Query(q): Query<DeliveryQuery>,
) -> UiResult<Response> {
    let status = parse_status(some(&q.status).as_deref())?;
    let rows = state
        .store
        .list_deliveries(&DeliveryFilter {
            status,
            destination: some(&q.destination),
            event_id: None,
            before_seq: q.before,
            limit: PAGE + 1,
        })
        .await
        .map_err(internal)?;
    let more = rows.len() > PAGE as usize;
    let rows: Vec<_> = rows.into_iter().take(PAGE as usize).collect();
    let runtime = state.registry.current();
    let dead = status == Some(DeliveryStatus::Failed);
    let title = if dead { "Dead letters" } else { "Deliveries" };
    let statuses = [
        "",
        "pending",
        "in_flight",
        "succeeded",
        "failed",
        "cancelled",
        "filtered",
    ];
    let body = html! {
        @if let Some(n) = q.queued {
            p.notice role="status" { "Bulk replay queued " (n) " deliveries." }
        }
        p.tabs-links {
            a href="/ui/deliveries" aria-current=[(!dead).then_some("page")] { "All deliveries" }
            " · "
            a href="/ui/deliveries?status=failed" aria-current=[dead.then_some("page")] { "Dead letters (failed)" }
        }
        form.filters method="get" action="/ui/deliveries" role="search" aria-label="Filter deliveries" {
            label { "Status "
                select name="status" {
                    @for s in statuses {
                        option value=(s) selected[s == q.status] { @if s.is_empty() { "any" } @else { (s) } }
                    }
                }
            }
            label { "Destination "
                select name="destination" {
                    option value="" { "all" }
                    @for d in &runtime.config.destinations {
                        option value=(d.id()) selected[d.id() == q.destination] { (d.id()) }
                    }
                }
            }
            button type="submit" { "Filter" }
        }
        @if dead && session.can_write() {
            form.inline method="get" action="/ui/replay" {
                input type="hidden" name="destination" value=(q.destination);
                button type="submit" { "Replay failed deliveries…" }
            }
        }
        table.list aria-label=(title) {
            thead { tr { th { "Updated" } th { "Delivery" } th { "Event" } th { "Destination" } th { "Status" } th { "Attempts" } th { "Last error" } } }
            tbody data-live=[(q.before.is_none() && status.is_none()).then_some("deliveries")]
                data-destination=[some(&q.destination)] {
                @for d in &rows { (row(d)) }
            }
        }
        @if rows.is_empty() { p.empty { "No deliveries match." } }
        @if more {
            @if let Some(last) = rows.last() {
                p { a href={ "/ui/deliveries?status=" (enc(&q.status)) "&destination=" (enc(&q.destination)) "&before=" (last.seq) } { "Older deliveries →" } }
            }
        }
    };
    Ok(html_response(layout::page(
        &session,
        title,
        "/ui/deliveries",
        body,
    )))
}

/// Query of a delivery page.
#[derive(Debug, Default, Deserialize)]
pub struct DetailQuery {
    /// Set after a replay: how many deliveries were queued.
    pub queued: Option<u64>,
}

/// `GET /ui/deliveries/{id}`
pub async fn detail(
    session: Session,
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    Query(q): Query<DetailQuery>,
) -> UiResult<Response> {
    let delivery = state
        .store
        .get_delivery(&id)
        .await
        .map_err(internal)?
        .ok_or_else(|| Problem::not_found(format!("no delivery `{id}`")))?;
    let attempts = state
        .store
        .list_attempts(None, Some(&id))
        .await
        .map_err(internal)?;
    let circuit = state.health.get(&delivery.destination);
    let replayable = matches!(
        delivery.status,
        DeliveryStatus::Failed | DeliveryStatus::Succeeded | DeliveryStatus::Cancelled
    );
    let title = format!("Delivery {id}");
    let body = html! {
        @if let Some(n) = q.queued {
            p.notice role="status" {
                @if n > 0 { "Replay queued; the status below updates when it finishes." }
                @else { "Nothing was queued: the delivery is already waiting or in flight." }
            }
        }
        dl.facts {
            dt { "Status" } dd data-delivery-status=(delivery.id) { (badge(delivery.status.as_str())) }
            dt { "Event" } dd { a href={ "/ui/events/" (enc(&delivery.event_id)) } { code { (delivery.event_id) } } }
            dt { "Destination" } dd {
                (delivery.destination)
                @if let Some(h) = &circuit { " — circuit " (badge(&h.state)) }
            }
            dt { "Route" } dd { a href={ "/ui/routes/" (enc(&delivery.route_id)) } { (delivery.route_id) } }
            dt { "Attempts" } dd { (delivery.attempts) }
            dt { "Created" } dd { (time(delivery.created_at)) }
            @if delivery.status == DeliveryStatus::Pending {
                dt { "Next attempt" } dd { (time(delivery.next_attempt_at)) }
            }
            @if let Some(error) = &delivery.last_error { dt { "Last error" } dd { (error) } }
        }
        @if session.can_write() && replayable {
            form.inline method="post" action={ "/ui/deliveries/" (enc(&delivery.id)) "/replay" } {
                (csrf(&session))
                button type="submit" { "Replay this delivery" }
            }
        }
        section aria-labelledby="attempts-h" {
            h2 #attempts-h { "Attempts" }
            @if attempts.is_empty() { p.empty { "No attempt yet." } }
            ol.timeline aria-label="Attempt timeline" {
                @for a in &attempts {
                    li {
                        h3 {
                            "Attempt " (a.attempt) " · " (time(a.started_at)) " · " (badge(&a.outcome))
                            @if let Some(code) = a.status_code { " · HTTP " (code) }
                            " · " (a.latency_ms) " ms"
                        }
                        p { "Request: " code { "POST " (a.request_url) } }
                        @if let Some(error) = &a.error { p.error { (error) } }
                        details {
                            summary { "Response headers and body" }
                            table.kv aria-label="Response headers" {
                                tbody { @for (name, value) in &a.response_headers { tr { th scope="row" { (name) } td { (value) } } } }
                            }
                            pre.payload { (String::from_utf8_lossy(&a.response_body)) }
                        }
                    }
                }
            }
        }
    };
    Ok(html_response(layout::page(
        &session,
        &title,
        "/ui/deliveries",
        body,
    )))
}

/// `POST /ui/deliveries/{id}/replay`
pub async fn replay_one(
    session: Session,
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    body: Bytes,
) -> UiResult {
    session.button(&body)?;
    if state
        .store
        .get_delivery(&id)
        .await
        .map_err(internal)?
        .is_none()
    {
        return Err(Problem::not_found(format!("no delivery `{id}`")).into());
    }
    let queued = queue(&state, &ReplaySelector::Delivery(id.clone()), "dashboard").await?;
    Ok(see_other(&format!(
        "/ui/deliveries/{}?queued={queued}",
        enc(&id)
    )))
}

/// Bulk replay: which destination's failures, and since when.
#[derive(Debug, Default, Deserialize)]
pub struct BulkQuery {
    /// Destination id.
    #[serde(default)]
    pub destination: String,
    /// Time window (`15m`, `1h`, `24h`, `7d`, empty for all).
    #[serde(default)]
    pub window: String,
}

/// Counts the failed deliveries a bulk replay would queue.
async fn count_failed(state: &AppState, destination: &str, since: i64) -> Result<usize, Problem> {
    let rows = state
        .store
        .list_deliveries(&DeliveryFilter {
            status: Some(DeliveryStatus::Failed),
            destination: Some(destination.to_owned()),
            event_id: None,
            before_seq: None,
            limit: COUNT_LIMIT,
        })
        .await
        .map_err(internal)?;
    Ok(rows.iter().filter(|d| d.updated_at >= since).count())
}

/// `GET /ui/replay`: choose a destination and window, see how many would be replayed, confirm.
pub async fn bulk_confirm(
    session: Session,
    State(state): State<Arc<AppState>>,
    Query(q): Query<BulkQuery>,
) -> UiResult<Response> {
    let runtime = state.registry.current();
    let since = window_start(q.window.trim(), now_millis())?;
    let count = match some(&q.destination) {
        Some(destination) => Some(count_failed(&state, &destination, since.unwrap_or(0)).await?),
        None => None,
    };
    let windows = [
        ("", "any time"),
        ("1h", "in the last hour"),
        ("24h", "in the last day"),
        ("7d", "in the last week"),
    ];
    let body = html! {
        form.filters method="get" action="/ui/replay" aria-label="Choose what to replay" {
            label { "Destination "
                select name="destination" required {
                    option value="" { "choose…" }
                    @for d in &runtime.config.destinations {
                        option value=(d.id()) selected[d.id() == q.destination] { (d.id()) }
                    }
                }
            }
            label { "Failed "
                select name="window" {
                    @for (value, label) in windows { option value=(value) selected[value == q.window] { (label) } }
                }
            }
            button type="submit" { "Count" }
        }
        @if let (Some(count), Some(destination)) = (count, some(&q.destination)) {
            @if count == 0 {
                p.empty { "No failed deliveries to " (destination) " in this window." }
            } @else {
                form.confirm method="post" action="/ui/replay" {
                    (csrf(&session))
                    input type="hidden" name="destination" value=(destination);
                    input type="hidden" name="window" value=(q.window);
                    p role="status" { "This queues " strong { (count) } " failed deliveries to " strong { (destination) } " again." }
                    label { input type="checkbox" name="confirm" value="yes" required; " I want to replay them" }
                    button type="submit" { "Replay " (count) " deliveries" }
                }
            }
        }
    };
    Ok(html_response(layout::page(
        &session,
        "Bulk replay",
        "/ui/deliveries",
        body,
    )))
}

/// The bulk replay form.
#[derive(Debug, Deserialize)]
pub struct BulkForm {
    /// Destination id.
    destination: String,
    /// Time window.
    #[serde(default)]
    window: String,
    /// Must be `yes`.
    #[serde(default)]
    confirm: String,
}

/// `POST /ui/replay`
pub async fn bulk_replay(
    session: Session,
    State(state): State<Arc<AppState>>,
    body: Bytes,
) -> UiResult {
    let form: BulkForm = session.form(&body)?;
    session.require_write()?;
    if form.confirm != "yes" {
        return Err(Problem::field("confirm", "tick the confirmation box to replay").into());
    }
    let since = window_start(form.window.trim(), now_millis())?;
    let selector = selector(ReplayRequest {
        delivery_id: None,
        event_id: None,
        destination: Some(form.destination.clone()),
        status: Some("failed".into()),
        since: since.map(format_rfc3339),
    })?;
    let queued = queue(&state, &selector, "dashboard").await?;
    Ok(see_other(&format!(
        "/ui/deliveries?destination={}&queued={queued}",
        enc(&form.destination)
    )))
}
