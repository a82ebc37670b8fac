//! Batched completion writer: attempt rows and delivery state changes are committed many per
//! transaction, like ingests. If a commit fails it is retried; if the process dies first, the
//! deliveries' leases expire and they are attempted again (at-least-once).

use std::sync::Arc;
use std::time::Duration;

use switchboard_store::{Completion, NextStep, Store};
use tokio::sync::{Notify, mpsc, oneshot};

use super::due::DueBook;

/// Most completions per transaction.
const MAX_BATCH: usize = 512;

enum Message {
    Complete(Box<Completion>),
    Flush(oneshot::Sender<()>),
}

/// Sends completions to the writer task.
#[derive(Clone)]
pub struct CompleterHandle {
    tx: mpsc::UnboundedSender<Message>,
}

impl CompleterHandle {
    /// Queues a completion. Never blocks; the queue is bounded by the worker's concurrency.
    pub fn submit(&self, completion: Completion) {
        if self
            .tx
            .send(Message::Complete(Box::new(completion)))
            .is_err()
        {
            tracing::error!(
                "completion writer has stopped; the lease will expire and the delivery will be retried"
            );
        }
    }

    /// Waits until everything submitted so far is committed (or given up on).
    pub async fn flush(&self) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Message::Flush(tx)).is_ok() {
            let _ = rx.await;
        }
    }
}

/// Starts the writer task. It stops when every handle is dropped, after writing what it has.
pub fn spawn(
    store: Arc<dyn Store>,
    wake: Arc<Notify>,
    due: Arc<DueBook>,
    pulse: crate::live::Pulse,
) -> (CompleterHandle, tokio::task::JoinHandle<()>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let task = tokio::spawn(run(store, wake, due, pulse, rx));
    (CompleterHandle { tx }, task)
}

async fn run(
    store: Arc<dyn Store>,
    wake: Arc<Notify>,
    due: Arc<DueBook>,
    pulse: crate::live::Pulse,
    mut rx: mpsc::UnboundedReceiver<Message>,
) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    let mut flushes = Vec::new();
    while let Some(first) = rx.recv().await {
        let mut next = Some(first);
        while let Some(message) = next.take() {
            match message {
                Message::Complete(c) => batch.push(*c),
                Message::Flush(done) => flushes.push(done),
            }
            if batch.len() < MAX_BATCH {
                next = rx.try_recv().ok();
            }
        }
        if !batch.is_empty() {
            write(&*store, &batch).await;
            // The destination has room again, its next ordered delivery may be unblocked, and
            // a retry has a due time: tell the dispatcher.
            let now = switchboard_core::time::now_millis();
            for c in &batch {
                let at = match c.next {
                    NextStep::RetryAt(at) => at,
                    NextStep::Succeeded | NextStep::Failed | NextStep::Filtered => now,
                };
                due.due_at(&c.attempt.destination, at);
            }
            wake.notify_one();
            // Live streams on this node show the outcomes without waiting for a poll.
            pulse.fire();
            batch.clear();
        }
        for done in flushes.drain(..) {
            let _ = done.send(());
        }
    }
}

async fn write(store: &dyn Store, batch: &[Completion]) {
    let mut delay = Duration::from_millis(50);
    for attempt in 1..=8 {
        match store.complete(batch).await {
            Ok(()) => return,
            Err(error) => {
                tracing::error!(%error, attempt, size = batch.len(), "recording attempts failed; retrying");
                metrics::counter!("switchboard_store_errors_total", "operation" => "complete")
                    .increment(1);
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        }
    }
    tracing::error!(
        size = batch.len(),
        "giving up on recording attempts; their leases will expire and they will be retried"
    );
}
