//! Group commit: concurrent ingests share one transaction.
//!
//! Handlers hand their event to the committer task and wait for its verdict. The task takes
//! everything queued (up to `max_batch`), writes it in one transaction, then answers every
//! waiter. While one batch commits the next one accumulates, so batch size follows load: one
//! event per commit when idle, hundreds under pressure. Once an event is handed over, the
//! committer owns it: a client that disconnects cannot leave it half-stored.

use std::sync::Arc;

use switchboard_store::{InsertOutcome, NewEvent, Store, StoreError};

use crate::delivery::due::DueBook;
use tokio::sync::{Notify, mpsc, oneshot};

type Reply = oneshot::Sender<Result<InsertOutcome, Arc<StoreError>>>;

/// Queue depth in events; beyond it, handlers wait (back-pressure instead of unbounded memory).
const QUEUE: usize = 16_384;

/// Submits events for durable storage.
#[derive(Clone)]
pub struct Committer {
    tx: mpsc::Sender<(NewEvent, Reply)>,
}

/// Why an event was not stored.
#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    /// The committer is shutting down.
    #[error("the server is shutting down")]
    Closed,
    /// The transaction failed.
    #[error(transparent)]
    Store(Arc<StoreError>),
}

impl Committer {
    /// Starts the committer task; it ends when every `Committer` clone is dropped, after
    /// committing what is queued.
    pub fn spawn(
        store: Arc<dyn Store>,
        max_batch: usize,
        wake: Arc<Notify>,
        due: Arc<DueBook>,
        pulse: crate::live::Pulse,
    ) -> (Self, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(QUEUE);
        let task = tokio::spawn(run(store, max_batch.max(1), wake, due, pulse, rx));
        (Self { tx }, task)
    }

    /// Stores `event` durably; returns once it is committed (or found to be a duplicate).
    pub async fn commit(&self, event: NewEvent) -> Result<InsertOutcome, CommitError> {
        let (reply, verdict) = oneshot::channel();
        self.tx
            .send((event, reply))
            .await
            .map_err(|_| CommitError::Closed)?;
        match verdict.await {
            Ok(Ok(outcome)) => Ok(outcome),
            Ok(Err(error)) => Err(CommitError::Store(error)),
            Err(_) => Err(CommitError::Closed),
        }
    }
}

async fn run(
    store: Arc<dyn Store>,
    max_batch: usize,
    wake: Arc<Notify>,
    due: Arc<DueBook>,
    pulse: crate::live::Pulse,
    mut rx: mpsc::Receiver<(NewEvent, Reply)>,
) {
    let mut incoming = Vec::with_capacity(max_batch);
    let mut events = Vec::with_capacity(max_batch);
    let mut replies = Vec::with_capacity(max_batch);
    // `recv_many` returns 0 only once the channel is closed and drained.
    while rx.recv_many(&mut incoming, max_batch).await > 0 {
        for (event, reply) in incoming.drain(..) {
            events.push(event);
            replies.push(reply);
        }
        metrics::histogram!("switchboard_ingest_batch_size").record(events.len() as f64);
        let started = std::time::Instant::now();
        let inserted = store.insert_events(&events).await;
        metrics::histogram!("switchboard_ingest_commit_duration_seconds")
            .record(started.elapsed().as_secs_f64());
        match inserted {
            Ok(outcomes) => {
                for (event, outcome) in events.iter().zip(&outcomes) {
                    let counter = match outcome {
                        InsertOutcome::Inserted => {
                            for delivery in &event.deliveries {
                                due.due_at(&delivery.destination, event.received_at);
                            }
                            "switchboard_events_received_total"
                        }
                        InsertOutcome::Duplicate { .. } => "switchboard_events_duplicate_total",
                    };
                    metrics::counter!(counter, "source" => event.source.clone()).increment(1);
                }
                wake.notify_one();
                // Live streams on this node show the new events without waiting for a poll.
                pulse.fire();
                for (reply, outcome) in replies.drain(..).zip(outcomes) {
                    let _ = reply.send(Ok(outcome));
                }
            }
            Err(error) => {
                tracing::error!(%error, batch = events.len(), "ingest commit failed");
                metrics::counter!("switchboard_store_errors_total", "operation" => "commit")
                    .increment(1);
                let error = Arc::new(error);
                for reply in replies.drain(..) {
                    let _ = reply.send(Err(error.clone()));
                }
            }
        }
        events.clear();
    }
}
