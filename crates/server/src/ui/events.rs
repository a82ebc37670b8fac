//! Events: a filterable list (source, type, delivery status, time window, text in the body) and
//! one event's payload (pretty JSON, headers, raw) with its deliveries.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::response::Response;
use maud::{Markup, html};
use serde::Deserialize;
use switchboard_core::time::now_millis;
use switchboard_store::{DeliveryFilter, EventFilter, EventRecord};

use super::layout::{self, badge, time};
use super::session::Session;
use super::{UiResult, enc, html_response};
use crate::api::events::{BODY_SCAN, body_text, encode_body, parse_status};
use crate::api::internal;
use crate::problem::Problem;
use crate::state::AppState;

/// Rows shown per page.
const PAGE: u32 = 50;

/// Filters of the events page (all optional; empty strings count as absent).
#[derive(Debug, Default, Deserialize)]
pub struct EventQuery {
    /// Source id.
    #[serde(default)]
    pub source: String,
    /// Event type.
    #[serde(default, rename = "type")]
    pub event_type: String,
    /// Delivery status any of its deliveries has.
    #[serde(default)]
    pub status: String,
    /// Time window: `15m`, `1h`, `24h`, `7d` or empty for all.
    #[serde(default)]
    pub window: String,
    /// Text the raw body must contain.
    #[serde(default)]
    pub q: String,
    /// Pagination: events older than this sequence number.
    pub before: Option<i64>,
}

fn some(value: &str) -> Option<String> {
    let value = value.trim();
    (!value.is_empty()).then(|| value.to_owned())
}

/// The lower time bound of a window name.
pub fn window_start(window: &str, now: i64) -> Result<Option<i64>, Problem> {
    let span = match window {
        "" => return Ok(None),
        "15m" => 15 * 60_000,
        "1h" => 60 * 60_000,
        "24h" => 24 * 60 * 60_000,
        "7d" => 7 * 24 * 60 * 60_000,
        other => {
            return Err(Problem::field(
                "window",
                format!("unknown window `{other}`: use 15m, 1h, 24h or 7d"),
            ));
        }
    };
    Ok(Some(now - span))
}

/// Finds a page of events, the body text included, in the store: the rows and the `before`
/// of the next page. A text search examines at most [`BODY_SCAN`] bodies per page, so a page
/// may come back short (even empty) with a next page that searches further back.
async fn find(
    state: &AppState,
    q: &EventQuery,
) -> Result<(Vec<EventRecord>, Option<i64>), Problem> {
    let filter = EventFilter {
        source: some(&q.source),
        event_type: some(&q.event_type),
        delivery_status: parse_status(some(&q.status).as_deref())?,
        routed: None,
        since: window_start(q.window.trim(), now_millis())?,
        until: None,
        before_seq: q.before,
        body_contains: body_text("q", some(&q.q))?,
        limit: PAGE + 1,
    };
    let search = state
        .store
        .search_events(&filter, BODY_SCAN)
        .await
        .map_err(internal)?;
    Ok(search.into_page(PAGE))
}

/// One row of the events table (the live script builds the same cells).
fn row(e: &EventRecord) -> Markup {
    html! {
        tr {
            td { (time(e.received_at)) }
            td { a href={ "/ui/events/" (enc(&e.id)) } { code { (e.id) } } }
            td { (e.source) }
            td { (e.event_type.as_deref().unwrap_or("—")) }
            td.num { (e.body_len) " B" }
        }
    }
}

/// `GET /ui/events`
pub async fn list(
    session: Session,
    State(state): State<Arc<AppState>>,
    Query(q): Query<EventQuery>,
) -> UiResult<Response> {
    let (rows, next_before) = find(&state, &q).await?;
    let runtime = state.registry.current();
    let statuses = [
        "",
        "pending",
        "in_flight",
        "succeeded",
        "failed",
        "cancelled",
        "filtered",
    ];
    let windows = [
        ("", "any time"),
        ("15m", "last 15 minutes"),
        ("1h", "last hour"),
        ("24h", "last day"),
        ("7d", "last week"),
    ];
    let live = q.before.is_none() && some(&q.q).is_none() && some(&q.status).is_none();
    let next = next_before.map(|before| {
        format!(
            "/ui/events?source={}&type={}&status={}&window={}&q={}&before={before}",
            enc(&q.source),
            enc(&q.event_type),
            enc(&q.status),
            enc(&q.window),
            enc(&q.q),
        )
    });
    let searching = some(&q.q).is_some();
    let body = html! {
        form.filters method="get" action="/ui/events" role="search" aria-label="Filter events" {
            label { "Source "
                select name="source" {
                    option value="" { "all" }
                    @for s in &runtime.config.sources {
                        option value=(s.id) selected[s.id == q.source] { (s.id) }
                    }
                }
            }
            label { "Type " input type="text" name="type" value=(q.event_type) placeholder="order.created"; }
            label { "Delivery status "
                select name="status" {
                    @for s in statuses {
                        option value=(s) selected[s == q.status] { @if s.is_empty() { "any" } @else { (s) } }
                    }
                }
            }
            label { "Received "
                select name="window" {
                    @for (value, label) in windows {
                        option value=(value) selected[value == q.window] { (label) }
                    }
                }
            }
            label { "Body contains " input type="search" name="q" value=(q.q); }
            button type="submit" { "Filter" }
        }
        @if searching && next.is_some() && rows.len() < PAGE as usize {
            p.hint { "Each page searches the bodies of at most " (BODY_SCAN) " events; “Older events →” searches further back." }
        }
        table.list aria-label="Events" {
            thead { tr { th { "Received" } th { "Event" } th { "Source" } th { "Type" } th { "Size" } } }
            tbody data-live=[live.then_some("events")]
                data-source=[some(&q.source)] data-type=[some(&q.event_type)] {
                @for e in &rows { (row(e)) }
            }
        }
        @if rows.is_empty() {
            p.empty { @if next.is_some() { "No events match among those searched so far." } @else { "No events match." } }
        }
        @if let Some(next) = next { p { a href=(next) { "Older events →" } } }
    };
    Ok(html_response(layout::page(
        &session,
        "Events",
        "/ui/events",
        body,
    )))
}

/// Pretty-prints a JSON body; `None` when it is not JSON.
fn pretty_json(body: &[u8]) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    serde_json::to_string_pretty(&value).ok()
}

/// `GET /ui/events/{id}`
pub async fn detail(
    session: Session,
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> UiResult<Response> {
    let event = state
        .store
        .get_event(&id)
        .await
        .map_err(internal)?
        .ok_or_else(|| Problem::not_found(format!("no event `{id}`")))?;
    let deliveries = state
        .store
        .list_deliveries(&DeliveryFilter {
            event_id: Some(id.clone()),
            limit: 1000,
            ..Default::default()
        })
        .await
        .map_err(internal)?;
    let (raw, encoding) = encode_body(&event.body);
    let pretty = pretty_json(&event.body);
    let title = format!("Event {id}");
    let body = html! {
        dl.facts {
            dt { "Source" } dd { a href={ "/ui/events?source=" (enc(&event.source)) } { (event.source) } }
            dt { "Type" } dd { (event.event_type.as_deref().unwrap_or("—")) }
            dt { "Received" } dd { (time(event.received_at)) }
            dt { "Tenant" } dd { (event.tenant.as_deref().unwrap_or("—")) }
            dt { "Dedup key" } dd { (event.dedup_key.as_deref().unwrap_or("—")) }
            dt { "Content type" } dd { (event.content_type.as_deref().unwrap_or("—")) }
            dt { "Size" } dd { (event.body_len) " bytes" }
        }
        @if let Some(at) = event.body_pruned_at {
            p.hint { "Retention removed this payload at " (time(at)) "." }
        }
        section aria-labelledby="payload-h" {
            h2 #payload-h { "Payload" }
            div.tabs role="tablist" aria-label="Payload views" {
                button type="button" role="tab" aria-selected="true" aria-controls="view-pretty" #tab-pretty { "Pretty" }
                button type="button" role="tab" aria-selected="false" aria-controls="view-headers" #tab-headers { "Headers" }
                button type="button" role="tab" aria-selected="false" aria-controls="view-raw" #tab-raw { "Raw" }
            }
            div #view-pretty role="tabpanel" aria-labelledby="tab-pretty" {
                @if let Some(pretty) = &pretty {
                    pre.payload data-testid="payload-pretty" { code { (pretty) } }
                } @else {
                    p.hint { "Not JSON; see Raw." }
                }
            }
            div #view-headers role="tabpanel" aria-labelledby="tab-headers" {
                table.kv aria-label="Headers" {
                    tbody {
                        @for (name, value) in &event.headers { tr { th scope="row" { (name) } td { (value) } } }
                    }
                }
            }
            div #view-raw role="tabpanel" aria-labelledby="tab-raw" {
                @if encoding == "base64" { p.hint { "Binary body, shown as base64." } }
                pre.payload data-testid="payload-raw" { (raw) }
            }
        }
        section aria-labelledby="deliveries-h" {
            h2 #deliveries-h { "Deliveries" }
            @if deliveries.is_empty() { p.empty { "No route delivers this event." } }
            @else {
                table.list aria-label="Deliveries of this event" {
                    thead { tr { th { "Delivery" } th { "Destination" } th { "Route" } th { "Status" } th { "Attempts" } th { "Last error" } } }
                    tbody {
                        @for d in &deliveries {
                            tr {
                                td { a href={ "/ui/deliveries/" (enc(&d.id)) } { code { (d.id) } } }
                                td { (d.destination) }
                                td { (d.route_id) }
                                td data-delivery-status=(d.id) { (badge(d.status.as_str())) }
                                td.num { (d.attempts) }
                                td { (d.last_error.as_deref().unwrap_or("")) }
                            }
                        }
                    }
                }
            }
        }
    };
    Ok(html_response(layout::page(
        &session,
        &title,
        "/ui/events",
        body,
    )))
}
