//! The overview: every source, destination, endpoint and connection with its health at a
//! glance, and charts (inline SVG, rendered here) of events received and delivery outcomes over
//! the last hour or day.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::response::Response;
use maud::{Markup, html};
use serde::Deserialize;
use switchboard_core::DeliveryStatus;
use switchboard_core::time::now_millis;
use switchboard_store::{DeliveryFilter, EventFilter};

use super::layout::{self, badge};
use super::session::Session;
use super::{UiResult, enc, html_response};
use crate::api::internal;
use crate::state::AppState;

/// Most rows read to draw one chart (the charts say when they hit it).
pub const CHART_ROWS: u32 = 10_000;

/// Which period the charts cover.
#[derive(Debug, Default, Deserialize)]
pub struct OverviewQuery {
    /// `hour` (default) or `day`.
    #[serde(default)]
    pub period: String,
}

/// Counts per time bucket for one series.
struct Series {
    label: &'static str,
    class: &'static str,
    counts: Vec<u64>,
}

/// A bar chart: one group of bars per bucket, one bar per series.
fn chart(
    title: &str,
    buckets: usize,
    bucket_label: &dyn Fn(usize) -> String,
    series: &[Series],
) -> Markup {
    let width = 600.0_f64;
    let height = 140.0_f64;
    let max = series
        .iter()
        .flat_map(|s| s.counts.iter().copied())
        .max()
        .unwrap_or(0)
        .max(1) as f64;
    let slot = width / buckets as f64;
    let bar = (slot - 2.0) / series.len().max(1) as f64;
    let total: u64 = series.iter().flat_map(|s| s.counts.iter()).sum();
    html! {
        figure.chart {
            figcaption {
                (title) " — " (total) " in total"
                span.legend {
                    @for s in series { span class={ "key " (s.class) } { (s.label) } }
                }
            }
            svg viewBox={ "0 0 " (width) " " (height + 16.0) } role="img" aria-label={ (title) ", " (total) " in total" } preserveAspectRatio="none" {
                @for (si, s) in series.iter().enumerate() {
                    @for (i, count) in s.counts.iter().enumerate() {
                        @let h = (*count as f64 / max) * height;
                        rect class={ "bar " (s.class) } x=(format!("{:.1}", i as f64 * slot + 1.0 + si as f64 * bar))
                            y=(format!("{:.1}", height - h)) width=(format!("{:.1}", bar.max(1.0))) height=(format!("{:.1}", h)) {
                            title { (bucket_label(i)) ": " (count) " " (s.label) }
                        }
                    }
                }
                line x1="0" y1=(height) x2=(width) y2=(height) class="axis" {}
                text x="0" y=(height + 14.0) class="tick" { (bucket_label(0)) }
                text x=(width) y=(height + 14.0) class="tick end" text-anchor="end" { "now" }
            }
        }
    }
}

/// `GET /ui`
pub async fn page(
    session: Session,
    State(state): State<Arc<AppState>>,
    Query(q): Query<OverviewQuery>,
) -> UiResult<Response> {
    let now = now_millis();
    let (buckets, span, name) = if q.period == "day" {
        (24usize, 60 * 60_000i64, "last day")
    } else {
        (12usize, 5 * 60_000i64, "last hour")
    };
    let start = now - span * buckets as i64;
    let bucket_of = |at: i64| -> Option<usize> {
        (at >= start).then(|| (((at - start) / span) as usize).min(buckets - 1))
    };
    let events = state
        .store
        .list_events(&EventFilter {
            since: Some(start),
            limit: CHART_ROWS,
            ..Default::default()
        })
        .await
        .map_err(internal)?;
    let mut received = vec![0u64; buckets];
    let mut last_by_source = std::collections::HashMap::<String, i64>::new();
    for e in &events {
        if let Some(b) = bucket_of(e.received_at) {
            received[b] += 1;
        }
        let last = last_by_source.entry(e.source.clone()).or_insert(0);
        *last = (*last).max(e.received_at);
    }
    let deliveries = state
        .store
        .list_deliveries(&DeliveryFilter {
            limit: CHART_ROWS,
            ..Default::default()
        })
        .await
        .map_err(internal)?;
    let mut succeeded = vec![0u64; buckets];
    let mut failed = vec![0u64; buckets];
    let mut waiting = vec![0u64; buckets];
    for d in &deliveries {
        let Some(b) = bucket_of(d.updated_at) else {
            continue;
        };
        match d.status {
            DeliveryStatus::Succeeded => succeeded[b] += 1,
            DeliveryStatus::Failed => failed[b] += 1,
            DeliveryStatus::Pending | DeliveryStatus::InFlight => waiting[b] += 1,
            _ => {}
        }
    }
    let label = |i: usize| -> String {
        let minutes = (buckets - i) as i64 * span / 60_000;
        if minutes >= 60 {
            format!("{}h ago", minutes / 60)
        } else {
            format!("{minutes}m ago")
        }
    };
    let counts = state.store.delivery_counts().await.map_err(internal)?;
    let runtime = state.registry.current();
    let connections = state
        .connections
        .store()
        .list_connections()
        .await
        .map_err(internal)?;
    let capped = events.len() as u32 >= CHART_ROWS || deliveries.len() as u32 >= CHART_ROWS;
    let body = html! {
        p.tabs-links {
            "Charts: "
            a href="/ui?period=hour" aria-current=[(q.period != "day").then_some("page")] { "last hour" } " · "
            a href="/ui?period=day" aria-current=[(q.period == "day").then_some("page")] { "last day" }
        }
        div.charts {
            (chart(&format!("Events received, {name}"), buckets, &label, &[Series { label: "events", class: "events", counts: received }]))
            (chart(&format!("Delivery outcomes, {name}"), buckets, &label, &[
                Series { label: "succeeded", class: "ok", counts: succeeded },
                Series { label: "failed", class: "bad", counts: failed },
                Series { label: "waiting", class: "warn", counts: waiting },
            ]))
        }
        @if capped { p.hint { "The charts count the newest " (CHART_ROWS) " rows." } }
        p.totals aria-label="Deliveries by status" {
            @for (status, n) in &counts {
                a href={ "/ui/deliveries?status=" (status.as_str()) } { (badge(status.as_str())) " " (n) } " "
            }
        }
        div.grid {
            section aria-labelledby="h-sources" {
                h2 #h-sources { a href="/ui/sources" { "Sources" } }
                ul.health {
                    @for s in &runtime.config.sources {
                        li {
                            a href={ "/ui/events?source=" (enc(&s.id)) } { (s.id) }
                            " " (badge(if last_by_source.contains_key(&s.id) { "receiving" } else { "idle" }))
                        }
                    }
                }
            }
            section aria-labelledby="h-destinations" {
                h2 #h-destinations { a href="/ui/destinations" { "Destinations" } }
                ul.health {
                    @for d in &runtime.config.destinations {
                        @let health = state.health.get(d.id());
                        @let word = match &health {
                            Some(h) if h.state == "open" => "circuit open",
                            Some(h) if h.consecutive_failures > 0 => "failing",
                            _ => "delivering",
                        };
                        li { a href={ "/ui/deliveries?destination=" (enc(d.id())) } { (d.id()) } " " (badge(if word == "circuit open" { "open" } else { word })) }
                    }
                    @for e in runtime.endpoints.values() {
                        li { "endpoint " code { (e.id) } " " (badge(if e.enabled { "delivering" } else { "disabled" })) }
                    }
                }
            }
            section aria-labelledby="h-connections" {
                h2 #h-connections { a href="/ui/connections" { "Connections" } }
                ul.health {
                    @for c in &connections {
                        li { code { (c.id) } " " (badge(&c.status)) }
                    }
                    @if connections.is_empty() { li.empty { "none" } }
                }
            }
        }
        section aria-labelledby="h-live" {
            h2 #h-live { "Live" }
            p.hint { "Events and delivery outcomes as they happen." }
            ol.live-feed data-live="feed" aria-live="polite" {}
        }
    };
    Ok(html_response(layout::page(
        &session, "Overview", "/ui", body,
    )))
}
