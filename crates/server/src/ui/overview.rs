//! The overview: every source, destination, endpoint and connection with its health at a
//! glance, and charts (inline SVG, rendered here) of events received and delivery outcomes over
//! the last hour or day. The store counts the rows per time bucket
//! ([`switchboard_store::Store::event_histogram`], [`switchboard_store::Store::attempt_histogram`]),
//! so the charts are exact however many rows the period holds.

use std::collections::HashSet;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::response::Response;
use maud::{Markup, html};
use serde::Deserialize;
use switchboard_core::time::now_millis;
use switchboard_store::{BucketCount, Buckets};

use super::layout::{self, badge};
use super::session::Session;
use super::{UiResult, enc, html_response};
use crate::api::health::{ConnectionHealth, DestinationHealth, SourceHealth};
use crate::api::internal;
use crate::state::AppState;

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

/// The charts' buckets for a period name: 12 of five minutes (`hour`, the default) or 24 of an
/// hour (`day`), aligned to the bucket width, the last one holding `now`.
pub fn chart_buckets(period: &str, now: i64) -> (Buckets, &'static str) {
    let (count, width_ms, name) = if period == "day" {
        (24u32, 60 * 60_000i64, "last day")
    } else {
        (12u32, 5 * 60_000i64, "last hour")
    };
    let start = now.div_euclid(width_ms) * width_ms - width_ms * i64::from(count - 1);
    (
        Buckets {
            start,
            width_ms,
            count,
        },
        name,
    )
}

/// One series per key: its count in every bucket (keys not listed count nothing).
fn series_of(counts: &[BucketCount], buckets: &Buckets, key: &str) -> Vec<u64> {
    let mut series = vec![0u64; buckets.count as usize];
    for c in counts.iter().filter(|c| c.key == key) {
        if let Some(slot) = series.get_mut(c.bucket as usize) {
            *slot += c.count;
        }
    }
    series
}

/// `GET /ui`
pub async fn page(
    session: Session,
    State(state): State<Arc<AppState>>,
    Query(q): Query<OverviewQuery>,
) -> UiResult<Response> {
    let (buckets, name) = chart_buckets(&q.period, now_millis());
    // Counted by the store (GROUP BY over an index range), so exact at any volume.
    let events = state
        .store
        .event_histogram(&buckets)
        .await
        .map_err(internal)?;
    let mut received = vec![0u64; buckets.count as usize];
    for c in &events {
        if let Some(slot) = received.get_mut(c.bucket as usize) {
            *slot += c.count;
        }
    }
    let receiving: HashSet<&str> = events.iter().map(|c| c.key.as_str()).collect();
    let attempts = state
        .store
        .attempt_histogram(&buckets)
        .await
        .map_err(internal)?;
    let delivered = series_of(&attempts, &buckets, "delivered");
    let retryable = series_of(&attempts, &buckets, "retryable");
    let permanent = series_of(&attempts, &buckets, "permanent");
    let span = buckets.width_ms;
    let count = buckets.count as usize;
    let label = |i: usize| -> String {
        let minutes = (count - i) as i64 * span / 60_000;
        if minutes >= 60 {
            format!("{}h ago", minutes / 60)
        } else {
            format!("{minutes}m ago")
        }
    };
    let counts = state.store.delivery_counts().await.map_err(internal)?;
    // The same document as `GET /v1/health`, so the overview and the API never disagree.
    let health = crate::api::health::document(&state).await?;
    let body = html! {
        p.tabs-links {
            "Charts: "
            a href="/ui?period=hour" aria-current=[(q.period != "day").then_some("page")] { "last hour" } " · "
            a href="/ui?period=day" aria-current=[(q.period == "day").then_some("page")] { "last day" }
        }
        div.charts {
            (chart(&format!("Events received, {name}"), count, &label, &[Series { label: "events", class: "events", counts: received }]))
            (chart(&format!("Delivery outcomes, {name}"), count, &label, &[
                Series { label: "delivered", class: "ok", counts: delivered },
                Series { label: "permanent error", class: "bad", counts: permanent },
                Series { label: "retryable error", class: "warn", counts: retryable },
            ]))
        }
        p.hint { "Delivery outcomes count attempts: a retryable error is tried again while the destination's retry policy allows." }
        p.totals aria-label="Deliveries by status" {
            @for (status, n) in &counts {
                a href={ "/ui/deliveries?status=" (status.as_str()) } { (badge(status.as_str())) " " (n) } " "
            }
        }
        p role="status" {
            "Overall: " (badge(health.status))
            @if health.status == "degraded" { " " small { "(a destination, connection or sync needs attention; details below and at GET /v1/health)" } }
        }
        div.grid {
            section aria-labelledby="h-sources" {
                h2 #h-sources { a href="/ui/sources" { "Sources" } }
                ul.health {
                    @for s in &health.sources {
                        li {
                            a href={ "/ui/sources/" (enc(&s.id)) } { (s.id) }
                            " " (badge(source_word(s, receiving.contains(s.id.as_str()))))
                            @if s.rejected > 0 { " " small { (s.rejected) " rejected" } }
                        }
                    }
                    @if health.sources.is_empty() { li.empty { "none" } }
                }
            }
            section aria-labelledby="h-destinations" {
                h2 #h-destinations { a href="/ui/destinations" { "Destinations" } }
                ul.health {
                    @for d in &health.destinations {
                        li {
                            @if let Some(tenant) = &d.tenant {
                                "endpoint " a href="/ui/tenants" { code { (d.id) } } " " small { "(" (tenant) ")" }
                            } @else {
                                a href={ "/ui/destinations/" (enc(&d.id)) } { (d.id) }
                            }
                            " " (badge(destination_word(d)))
                            @if d.pending > 0 { " " small { (d.pending) " pending" } }
                        }
                    }
                    @if health.destinations.is_empty() { li.empty { "none" } }
                }
            }
            section aria-labelledby="h-connections" {
                h2 #h-connections { a href="/ui/connections" { "Connections" } }
                ul.health {
                    @for c in &health.connections {
                        li { code { (c.id) } " " (badge(connection_word(c))) }
                    }
                    @if health.connections.is_empty() { li.empty { "none" } }
                }
            }
            section aria-labelledby="h-syncs" {
                h2 #h-syncs { a href="/ui/syncs" { "Syncs" } }
                ul.health {
                    @for y in &health.syncs {
                        li { a href={ "/ui/syncs/" (enc(&y.id)) } { (y.id) } " " (badge(sync_word(&y.status))) }
                    }
                    @if health.syncs.is_empty() { li.empty { "none" } }
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

/// A source's state in one word: paused, receiving in the chart's period, or idle.
fn source_word(source: &SourceHealth, receiving: bool) -> &'static str {
    if !source.enabled {
        "disabled"
    } else if receiving {
        "receiving"
    } else {
        "idle"
    }
}

/// A destination's (or endpoint's) state in one word.
fn destination_word(destination: &DestinationHealth) -> &'static str {
    if !destination.enabled {
        "disabled"
    } else if destination.circuit == "open" {
        "open"
    } else if destination.circuit == "half_open" {
        "half_open"
    } else if destination.consecutive_failures > 0 {
        "failing"
    } else {
        "delivering"
    }
}

/// A connection's state in one word: `needs_reauth` when its token is gone or expired.
fn connection_word(connection: &ConnectionHealth) -> &str {
    match connection.token {
        "missing" | "expired" if connection.status == "active" => "needs_reauth",
        _ => connection.status.as_str(),
    }
}

/// A sync's state in one word, from its newest run.
fn sync_word(status: &str) -> &str {
    match status {
        "running" => "syncing",
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_aligned_and_the_last_holds_now() {
        let now = 1_700_000_123_456;
        for (period, count, width) in [("hour", 12, 300_000), ("day", 24, 3_600_000)] {
            let (b, _) = chart_buckets(period, now);
            assert_eq!((b.count, b.width_ms), (count, width));
            assert_eq!(b.start % width, 0, "{period}: aligned");
            assert!(
                b.end() > now && b.end() - width <= now,
                "{period}: now in the last"
            );
        }
        assert_eq!(chart_buckets("", now).1, "last hour");
    }

    #[test]
    fn series_pick_their_key() {
        let (b, _) = chart_buckets("hour", 0);
        let counts = [
            BucketCount {
                bucket: 0,
                key: "delivered".into(),
                count: 3,
            },
            BucketCount {
                bucket: 11,
                key: "delivered".into(),
                count: 1,
            },
            BucketCount {
                bucket: 11,
                key: "permanent".into(),
                count: 7,
            },
        ];
        let delivered = series_of(&counts, &b, "delivered");
        assert_eq!(
            (delivered[0], delivered[11], delivered.iter().sum::<u64>()),
            (3, 1, 4)
        );
        assert_eq!(series_of(&counts, &b, "retryable"), vec![0; 12]);
    }
}
