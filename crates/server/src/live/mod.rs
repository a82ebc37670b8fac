//! The live feed: events and delivery attempts as they commit, for `GET /v1/stream`, the
//! dashboard's live lists and anything else that follows the store.
//!
//! The feed is the store itself ([`Store::feed_after`]): items come in commit order after a
//! [`FeedCursor`], so a follower that reconnects with its last cursor misses nothing and sees
//! nothing twice, and rows written by other nodes sharing a PostgreSQL database arrive like
//! local ones. Nothing is kept in memory between followers; what makes it *live* is the
//! [`Pulse`]: the group committer and the completion writer fire it after each commit, which
//! wakes every follower on this node at once. Rows of other nodes are found by polling every
//! `stream.poll_interval`.
//!
//! # API
//!
//! ```text
//! let live: &Live = &state.live;
//! let after = live.start(Start::Now).await?;          // or Start::Beginning, Start::After(c)
//! let slot = live.admit()?;                             // Err when stream.max_streams are open
//! let mut items = live.follow(after, FeedFilter { sources: vec!["github".into()], ..Default::default() });
//! while let Some(item) = items.recv().await {          // ends on shutdown
//!     // item.entry: FeedEntry::Event(EventRecord) | FeedEntry::Attempt(FeedAttempt)
//!     // item.cursor: resume after this item (FeedCursor::encode / FeedCursor::parse)
//! }
//! ```
//!
//! [`Live::follow`] returns the receiving end of a channel of `stream.buffer` items: a slow
//! consumer makes its reader wait (bounded memory) rather than dropping anything. Dropping the
//! receiver stops the reader task. [`outcome`] names what an attempt meant for its delivery.
//! [`sse`] serves a follower as Server-Sent Events (the framing, keep-alives and the periodic
//! re-check of the caller that `GET /v1/stream` and the dashboard share).

pub mod sse;

use std::sync::Arc;
use std::time::Duration;

use switchboard_core::DeliveryStatus;
use switchboard_core::config::StreamConfig;
use switchboard_store::{FeedAttempt, FeedCursor, FeedFilter, FeedItem, Store, StoreError};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};
use tokio_util::sync::CancellationToken;

/// Items read from the store per query.
const PAGE: u32 = 200;

/// Wakes followers after a local commit. Cheap to clone and to fire.
#[derive(Clone)]
pub struct Pulse(Arc<watch::Sender<u64>>);

impl Pulse {
    /// A pulse nobody listens to yet.
    pub fn new() -> Self {
        Self(Arc::new(watch::channel(0).0))
    }

    /// Tells followers that something committed. A `watch` channel keeps the latest count, so
    /// a follower busy while it fires still sees the change when it next waits.
    pub fn fire(&self) {
        self.0.send_modify(|n| *n = n.wrapping_add(1));
    }

    fn subscribe(&self) -> watch::Receiver<u64> {
        self.0.subscribe()
    }
}

impl Default for Pulse {
    fn default() -> Self {
        Self::new()
    }
}

/// Where a follower starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// With the oldest stored rows.
    Beginning,
    /// With what commits from now on.
    Now,
    /// After this cursor (a reconnect).
    After(FeedCursor),
}

/// A follower could not be admitted.
#[derive(Debug, thiserror::Error)]
#[error("{0} live streams are open, the most this node allows (stream.max_streams)")]
pub struct TooManyStreams(pub usize);

/// An open stream's place among `stream.max_streams`; freed when dropped. Keeps the
/// `switchboard_streams_open` gauge current.
pub struct Slot {
    permit: Option<OwnedSemaphorePermit>,
    slots: Arc<Semaphore>,
    max: usize,
}

impl Slot {
    fn publish(&self) {
        let open = self.max.saturating_sub(self.slots.available_permits());
        metrics::gauge!("switchboard_streams_open").set(open as f64);
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        drop(self.permit.take());
        self.publish();
    }
}

/// The feed, shared by every follower of this node.
pub struct Live {
    store: Arc<dyn Store>,
    pulse: Pulse,
    config: StreamConfig,
    slots: Arc<Semaphore>,
    shutdown: CancellationToken,
}

impl Live {
    /// A feed over `store`, woken by `pulse`; followers end when `shutdown` is cancelled.
    pub fn new(
        store: Arc<dyn Store>,
        pulse: Pulse,
        config: StreamConfig,
        shutdown: CancellationToken,
    ) -> Self {
        Self {
            store,
            pulse,
            slots: Arc::new(Semaphore::new(config.max_streams)),
            config,
            shutdown,
        }
    }

    /// The stream settings.
    pub fn config(&self) -> &StreamConfig {
        &self.config
    }

    /// Resolves where a follower starts into a cursor.
    pub async fn start(&self, start: Start) -> Result<FeedCursor, StoreError> {
        match start {
            Start::Beginning => Ok(FeedCursor::BEGINNING),
            Start::Now => self.store.feed_head().await,
            Start::After(cursor) => Ok(cursor),
        }
    }

    /// Takes one of the `stream.max_streams` slots; hold it while the stream is open.
    pub fn admit(&self) -> Result<Slot, TooManyStreams> {
        let permit = self
            .slots
            .clone()
            .try_acquire_owned()
            .map_err(|_| TooManyStreams(self.config.max_streams))?;
        let slot = Slot {
            permit: Some(permit),
            slots: self.slots.clone(),
            max: self.config.max_streams,
        };
        slot.publish();
        Ok(slot)
    }

    /// Follows the feed after `after`: a task reads the store page by page and sends each
    /// matching item. It waits for the pulse or the poll interval when caught up, for the
    /// consumer when the buffer is full, and ends on shutdown or when the receiver is dropped.
    /// A store error is logged and retried after the poll interval.
    pub fn follow(&self, after: FeedCursor, filter: FeedFilter) -> mpsc::Receiver<FeedItem> {
        let (tx, rx) = mpsc::channel(self.config.buffer.max(1));
        let store = self.store.clone();
        let mut pulse = self.pulse.subscribe();
        let poll = self.config.poll_interval.max(Duration::from_millis(10));
        let shutdown = self.shutdown.clone();
        tokio::spawn(async move {
            let mut cursor = after;
            loop {
                // Mark the pulse seen before reading, so a commit during the read wakes the
                // next wait instead of being missed.
                pulse.borrow_and_update();
                let full = match store.feed_after(&cursor, &filter, PAGE).await {
                    Ok(page) => {
                        let full = page.items.len() >= PAGE as usize;
                        for item in page.items {
                            tokio::select! {
                                sent = tx.send(item) => if sent.is_err() { return },
                                _ = shutdown.cancelled() => return,
                            }
                        }
                        cursor = page.cursor;
                        full
                    }
                    Err(error) => {
                        tracing::warn!(%error, "live feed: could not read the store; retrying");
                        false
                    }
                };
                if full {
                    continue;
                }
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tx.closed() => return,
                    changed = pulse.changed() => if changed.is_err() {
                        // The pulse's sender is gone (the server is stopping): poll only.
                        tokio::time::sleep(poll).await;
                    },
                    _ = tokio::time::sleep(poll) => {}
                }
            }
        });
        rx
    }
}

/// What an attempt meant for its delivery, as a live view shows it.
///
/// `delivered`; `filtered` (the route's filter said no); `retrying` (failed, another attempt
/// will follow); `failed` (a permanent error ended the delivery: dead letter without retries);
/// `dead` (the last retry failed: dead letter). Read with the delivery's state at the time of
/// reading, so an attempt read after a replay of its dead delivery shows as `retrying`.
pub fn outcome(a: &FeedAttempt) -> &'static str {
    let last = a.attempt.attempt >= a.delivery_attempts;
    match a.attempt.outcome.as_str() {
        "delivered" => "delivered",
        "filtered" => "filtered",
        "permanent" => "failed",
        _ if last && a.delivery_status == DeliveryStatus::Failed => "dead",
        _ => "retrying",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchboard_store::AttemptRecord;

    fn attempt(n: u32, outcome: &str, status: DeliveryStatus, made: u32) -> FeedAttempt {
        FeedAttempt {
            attempt: AttemptRecord {
                delivery_id: "d".into(),
                event_id: "e".into(),
                destination: "x".into(),
                attempt: n,
                started_at: 0,
                latency_ms: 1,
                outcome: outcome.into(),
                status_code: None,
                error: None,
                request_url: String::new(),
                response_headers: Vec::new(),
                response_body: Vec::new(),
            },
            source: "s".into(),
            event_type: None,
            tenant: None,
            route_id: "r".into(),
            delivery_status: status,
            delivery_attempts: made,
        }
    }

    #[test]
    fn outcomes_follow_the_delivery() {
        use DeliveryStatus::*;
        assert_eq!(outcome(&attempt(1, "delivered", Succeeded, 1)), "delivered");
        assert_eq!(outcome(&attempt(1, "filtered", Filtered, 1)), "filtered");
        assert_eq!(outcome(&attempt(1, "permanent", Failed, 1)), "failed");
        assert_eq!(outcome(&attempt(1, "retryable", Pending, 1)), "retrying");
        assert_eq!(outcome(&attempt(1, "retryable", Failed, 3)), "retrying");
        assert_eq!(outcome(&attempt(3, "retryable", Failed, 3)), "dead");
        assert_eq!(outcome(&attempt(2, "retryable", InFlight, 2)), "retrying");
    }
}
