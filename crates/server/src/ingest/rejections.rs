//! Keeps the most recent rejected requests per source for debugging.
//!
//! Recording must never slow down or endanger ingest, and a flood of bad requests must not turn
//! into a flood of writes: rejections go through a small bounded queue (dropped, and counted,
//! when full) to a task that writes them in batches and trims each source to the newest
//! [`KEEP_PER_SOURCE`].

use std::sync::Arc;

use axum::http::HeaderMap;
use switchboard_store::{Rejection, Store};
use tokio::sync::mpsc;

/// Rejections kept per source.
pub const KEEP_PER_SOURCE: u32 = 100;

/// Header values never stored.
pub const SENSITIVE_HEADERS: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "cookie",
    "x-api-key",
];

/// Handle for recording rejections.
#[derive(Clone)]
pub struct RejectionLog {
    tx: mpsc::Sender<Rejection>,
}

impl RejectionLog {
    /// Starts the writer task; it stops when every handle is dropped.
    pub fn spawn(store: Arc<dyn Store>) -> (Self, tokio::task::JoinHandle<()>) {
        let (tx, mut rx) = mpsc::channel::<Rejection>(1024);
        let task = tokio::spawn(async move {
            let mut batch = Vec::with_capacity(256);
            while rx.recv_many(&mut batch, 256).await > 0 {
                if let Err(error) = store.record_rejections(&batch, KEEP_PER_SOURCE).await {
                    tracing::warn!(%error, dropped = batch.len(), "could not record rejected requests");
                }
                batch.clear();
            }
        });
        (Self { tx }, task)
    }

    /// Records a rejection unless the queue is full.
    pub fn record(&self, rejection: Rejection) {
        if self.tx.try_send(rejection).is_err() {
            metrics::counter!("switchboard_rejections_not_recorded_total").increment(1);
        }
    }
}

/// Request headers with credentials (the usual ones and `extra`) replaced by `[redacted]`.
pub fn redacted_headers(headers: &HeaderMap, extra: &[String]) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|(name, value)| {
            let value = if SENSITIVE_HEADERS.contains(&name.as_str())
                || extra.iter().any(|e| e == name.as_str())
            {
                "[redacted]".to_owned()
            } else {
                String::from_utf8_lossy(value.as_bytes()).into_owned()
            };
            (name.as_str().to_owned(), value)
        })
        .collect()
}
