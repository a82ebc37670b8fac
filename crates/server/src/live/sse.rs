//! Server-Sent Events over the live feed: what `GET /v1/stream` and the dashboard's
//! `GET /ui/live` share. Each turns feed items into its own JSON shapes; the framing is here:
//! every item becomes one message whose `id` is the item's cursor (so `Last-Event-ID` resumes
//! right after it), idle streams get keep-alive comments every `stream.keep_alive`, and an open
//! stream checks its caller again every `stream.auth_recheck`, ending at the first check that
//! fails (a revoked token, a signed-out session).

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;

use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use switchboard_store::{FeedCursor, FeedItem};
use tokio::sync::mpsc;
use tokio::time::{Instant, Interval, MissedTickBehavior};

use super::{Live, Slot, TooManyStreams};
use crate::problem::Problem;

/// Checks whether the caller of an open stream may still read it; called every
/// `stream.auth_recheck`, the stream ends when it answers `false`.
pub type Recheck = Box<dyn FnMut() -> Pin<Box<dyn Future<Output = bool> + Send>> + Send>;

/// The answer to a stream asked for while `stream.max_streams` are open: `429`.
pub fn too_many(full: TooManyStreams) -> Problem {
    Problem::new(
        StatusCode::TOO_MANY_REQUESTS,
        "too_many_streams",
        "Too many streams",
        full.to_string(),
    )
}

/// The message of one feed item: `id` is the item's cursor, `event` is `name`, `data` is
/// `value` as JSON. `None` (logged) when the value does not encode.
pub fn message(cursor: &FeedCursor, name: &str, value: &impl Serialize) -> Option<Event> {
    match serde_json::to_string(value) {
        Ok(data) => Some(Event::default().id(cursor.encode()).event(name).data(data)),
        Err(error) => {
            tracing::error!(%error, "live stream: could not encode an item");
            None
        }
    }
}

/// What an open stream holds between messages. The slot frees when the stream is dropped
/// (the client went away, the feed ended, or a re-check failed).
struct Open<E> {
    items: mpsc::Receiver<FeedItem>,
    encode: E,
    recheck: Recheck,
    ticks: Interval,
    _slot: Slot,
}

/// The streaming response: `first` (when given), then one message per item of `items` made
/// by `encode` (items it answers `None` for are skipped), keep-alive comments when idle. It
/// ends when the feed ends (shutdown) or when `recheck` fails at one of its periodic checks.
pub fn respond<E>(
    live: &Live,
    items: mpsc::Receiver<FeedItem>,
    slot: Slot,
    first: Option<Event>,
    encode: E,
    recheck: Recheck,
) -> Response
where
    E: FnMut(FeedItem) -> Option<Event> + Send + 'static,
{
    let period = live
        .config()
        .auth_recheck
        .max(std::time::Duration::from_millis(10));
    // The caller was checked when the stream opened: the first re-check is one period later.
    let mut ticks = tokio::time::interval_at(Instant::now() + period, period);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let open = Open {
        items,
        encode,
        recheck,
        ticks,
        _slot: slot,
    };
    let messages = futures::stream::unfold(open, |mut s| async move {
        loop {
            tokio::select! {
                item = s.items.recv() => {
                    if let Some(message) = (s.encode)(item?) {
                        return Some((Ok::<_, Infallible>(message), s));
                    }
                }
                _ = s.ticks.tick() => {
                    if !(s.recheck)().await {
                        return None;
                    }
                }
            }
        }
    });
    let first = futures::stream::iter(first.map(Ok));
    let keep_alive = KeepAlive::new().interval(live.config().keep_alive);
    Sse::new(futures::StreamExt::chain(first, messages))
        .keep_alive(keep_alive)
        .into_response()
}
