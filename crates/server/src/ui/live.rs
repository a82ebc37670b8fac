//! `GET /ui/live`: the dashboard's Server-Sent Events stream (session cookie, no token in the
//! page), carrying new events and delivery outcomes as JSON.
//!
//! The items come from ONE function, [`poll`], behind a narrow seam: today it reads the store
//! for rows newer than a cursor every second; it is meant to be swapped for the server's shared
//! live feed without touching the stream or the page script. The script (`assets/ui.js`) only
//! knows the item shapes below.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::Stream;
use serde::{Deserialize, Serialize};
use switchboard_core::time::now_millis;
use switchboard_store::{DeliveryFilter, EventFilter, StoreError};

use super::session::Session;
use crate::state::AppState;

/// How often [`poll`] looks for news.
const INTERVAL: Duration = Duration::from_secs(1);

/// Most rows one poll reads per kind.
const BATCH: u32 = 200;

/// One live item, as the page script receives it (SSE event name = `kind`).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum LiveItem {
    /// An event was stored.
    Event {
        /// Event id.
        id: String,
        /// Source id.
        source: String,
        /// Event type.
        #[serde(rename = "type")]
        event_type: Option<String>,
        /// Body size.
        body_bytes: u64,
        /// Receive time (RFC 3339).
        received_at: String,
    },
    /// A delivery changed status (created, attempted, finished, replayed).
    Delivery {
        /// Delivery id.
        id: String,
        /// Its event.
        event_id: String,
        /// Destination id.
        destination: String,
        /// New status.
        status: String,
        /// Attempts so far.
        attempts: u32,
        /// Last error.
        last_error: Option<String>,
        /// Time of the change (RFC 3339).
        updated_at: String,
    },
}

impl LiveItem {
    fn name(&self) -> &'static str {
        match self {
            Self::Event { .. } => "event",
            Self::Delivery { .. } => "delivery",
        }
    }
}

/// Where a stream is: the newest event and delivery change it has passed on, as
/// `(time, tie-breaker)` so a stream can also start from a point in time.
#[derive(Debug, Clone, Default)]
pub struct Cursor {
    event: (i64, i64),
    delivery: (i64, String),
}

impl Cursor {
    /// A cursor before everything that happened at or after `millis`.
    pub fn since(millis: i64) -> Self {
        Self {
            event: (millis, i64::MIN),
            delivery: (millis, String::new()),
        }
    }

    /// The time up to which everything was passed on (the SSE `id`, so a reconnecting browser
    /// resumes from there; repeats are harmless to the page).
    pub fn millis(&self) -> i64 {
        self.event.0.min(self.delivery.0)
    }
}

/// A cursor at "now": only what happens after it is reported.
pub async fn start(state: &AppState) -> Result<Cursor, StoreError> {
    let mut cursor = Cursor::default();
    let _ = poll(state, &mut cursor).await?;
    Ok(cursor)
}

/// THE SEAM: what happened since `cursor` (oldest first), moving the cursor past it.
pub async fn poll(state: &AppState, cursor: &mut Cursor) -> Result<Vec<LiveItem>, StoreError> {
    let events = state
        .store
        .list_events(&EventFilter {
            limit: BATCH,
            ..Default::default()
        })
        .await?;
    let mut items = Vec::new();
    for e in events.iter().rev() {
        let key = (e.received_at, e.seq);
        if key <= cursor.event {
            continue;
        }
        items.push(LiveItem::Event {
            id: e.id.clone(),
            source: e.source.clone(),
            event_type: e.event_type.clone(),
            body_bytes: e.body_len,
            received_at: switchboard_core::time::format_rfc3339(e.received_at),
        });
        cursor.event = cursor.event.max(key);
    }
    let mut deliveries = state
        .store
        .list_deliveries(&DeliveryFilter {
            limit: BATCH,
            ..Default::default()
        })
        .await?;
    deliveries.sort_by(|a, b| (a.updated_at, &a.id).cmp(&(b.updated_at, &b.id)));
    for d in deliveries {
        let key = (d.updated_at, d.id.clone());
        if key <= cursor.delivery {
            continue;
        }
        items.push(LiveItem::Delivery {
            id: d.id,
            event_id: d.event_id,
            destination: d.destination,
            status: d.status.as_str().to_owned(),
            attempts: d.attempts,
            last_error: d.last_error,
            updated_at: switchboard_core::time::format_rfc3339(d.updated_at),
        });
        cursor.delivery = key;
    }
    Ok(items)
}

/// Where a stream starts: the page's render time (`?since=`), a reconnecting browser's
/// `Last-Event-ID`, or now.
#[derive(Debug, Default, Deserialize)]
pub struct LiveQuery {
    /// Unix millis the page was rendered at: changes from then on are sent, so nothing that
    /// happens between rendering and connecting is missed.
    pub since: Option<i64>,
}

/// How many polls pass between checks that the stream's session still holds.
const RECHECK_EVERY: u32 = 30;

/// A stream's state between items.
struct Streaming {
    state: Arc<AppState>,
    session: Session,
    cursor: Cursor,
    pending: Vec<LiveItem>,
    polls: u32,
}

/// `GET /ui/live`
pub async fn stream(
    session: Session,
    State(state): State<Arc<AppState>>,
    Query(q): Query<LiveQuery>,
    headers: HeaderMap,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let resume = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<i64>().ok());
    let cursor = match resume.or(q.since) {
        // At most an hour back: an old page should not replay a day of traffic.
        Some(since) => Some(Cursor::since(since.max(now_millis() - 3_600_000))),
        None => match start(&state).await {
            Ok(cursor) => Some(cursor),
            Err(error) => {
                tracing::error!(%error, "dashboard live stream could not start");
                None
            }
        },
    };
    let shutdown = state.ui.shutdown().clone();
    let streaming = cursor.map(|cursor| Streaming {
        state,
        session,
        cursor,
        pending: Vec::new(),
        polls: 0,
    });
    let stream = futures::stream::unfold(streaming, move |streaming| {
        let shutdown = shutdown.clone();
        async move {
            let mut s = streaming?;
            loop {
                if let Some(item) = s.pending.pop() {
                    let event = Event::default()
                        .id(s.cursor.millis().to_string())
                        .event(item.name())
                        .json_data(&item)
                        .unwrap_or_else(|_| Event::default().comment("unencodable item"));
                    return Some((Ok(event), Some(s)));
                }
                tokio::select! {
                    _ = shutdown.cancelled() => return None,
                    _ = tokio::time::sleep(INTERVAL) => {}
                }
                s.polls = s.polls.wrapping_add(1);
                // A signed-out, expired or revoked session stops receiving.
                if s.polls % RECHECK_EVERY == 0 && !s.session.still_valid(&s.state).await {
                    return None;
                }
                match poll(&s.state, &mut s.cursor).await {
                    // Reversed: `pop` hands them out oldest first.
                    Ok(items) => s.pending = items.into_iter().rev().collect(),
                    Err(error) => tracing::warn!(%error, "dashboard live poll failed"),
                }
            }
        }
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}
