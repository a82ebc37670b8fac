//! `GET /ui/live`: the dashboard's Server-Sent Events stream (session cookie, no token in the
//! page), carrying new events and delivery outcomes as JSON.
//!
//! The items come from the server's live feed ([`crate::live`]): events and attempts in commit
//! order after a cursor, woken by local commits and polling for other nodes. Every page carries
//! the feed's head at render time (`data-live-cursor`, see [`Session::live_cursor`]); the page
//! connects with `?after=` that cursor, so nothing that commits between rendering and connecting
//! is missed, and a reconnecting browser resumes from its `Last-Event-ID` with no gap or repeat.
//! The page script (`assets/ui.js`) only knows the two item shapes of [`LiveItem`]; the SSE
//! framing, keep-alives and the periodic re-check of the session are [`crate::live::sse`]'s,
//! shared with `GET /v1/stream`.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use switchboard_core::time::format_rfc3339;
use switchboard_store::{FeedCursor, FeedEntry, FeedFilter, FeedItem};

use super::session::Session;
use crate::live::{Start, sse};
use crate::problem::Problem;
use crate::state::AppState;

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
    /// A delivery made an attempt; `status` is the delivery's status after it.
    Delivery {
        /// Delivery id.
        id: String,
        /// Its event.
        event_id: String,
        /// Destination id.
        destination: String,
        /// The delivery's status.
        status: String,
        /// Attempts so far.
        attempts: u32,
        /// The attempt's error.
        last_error: Option<String>,
        /// Time of the attempt (RFC 3339).
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

    /// The page's view of a feed item.
    pub fn from_feed(item: &FeedItem) -> Self {
        match &item.entry {
            FeedEntry::Event(e) => Self::Event {
                id: e.id.clone(),
                source: e.source.clone(),
                event_type: e.event_type.clone(),
                body_bytes: e.body_len,
                received_at: format_rfc3339(e.received_at),
            },
            FeedEntry::Attempt(a) => Self::Delivery {
                id: a.attempt.delivery_id.clone(),
                event_id: a.attempt.event_id.clone(),
                destination: a.attempt.destination.clone(),
                status: a.delivery_status.as_str().to_owned(),
                attempts: a.delivery_attempts,
                last_error: a.attempt.error.clone(),
                updated_at: format_rfc3339(a.attempt.started_at),
            },
        }
    }
}

/// Where a stream starts: after the cursor the page was rendered with, or now.
#[derive(Debug, Default, Deserialize)]
pub struct LiveQuery {
    /// The feed cursor of the page's render time (`data-live-cursor`).
    pub after: Option<String>,
}

/// `GET /ui/live`
pub async fn stream(
    session: Session,
    State(state): State<Arc<AppState>>,
    Query(q): Query<LiveQuery>,
    headers: HeaderMap,
) -> Response {
    let resume = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(FeedCursor::parse)
        .or_else(|| q.after.as_deref().and_then(FeedCursor::parse));
    let start = resume.map_or(Start::Now, Start::After);
    let slot = match state.live.admit() {
        Ok(slot) => slot,
        Err(full) => return sse::too_many(full).into_response(),
    };
    let after = match state.live.start(start).await {
        Ok(after) => after,
        Err(error) => {
            tracing::error!(%error, "dashboard live stream could not start");
            return Problem::unavailable("the store is not reachable").into_response();
        }
    };
    let items = state.live.follow(after, FeedFilter::default());
    // The session ends the stream when it no longer holds (signed out on any node, expired,
    // its token revoked), checked every `stream.auth_recheck`.
    let checker = state.clone();
    let recheck: sse::Recheck = Box::new(move || {
        let (state, session) = (checker.clone(), session.clone());
        Box::pin(async move { session.still_valid(&state).await })
    });
    sse::respond(
        &state.live,
        items,
        slot,
        None,
        |item| {
            let live = LiveItem::from_feed(&item);
            sse::message(&item.cursor, live.name(), &live)
        },
        recheck,
    )
}
