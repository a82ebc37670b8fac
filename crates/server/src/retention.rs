//! The pruner: removes event bodies past `retention.payloads`, in small batches so that it
//! never holds the database for long. Events and their delivery history stay; only the bytes
//! go, and only once nothing is left to deliver.

use std::sync::Arc;
use std::time::Duration;

use switchboard_core::time::now_millis;
use switchboard_store::Store;
use tokio_util::sync::CancellationToken;

/// Bodies pruned per statement.
const BATCH: u32 = 500;

/// Runs until `shutdown`: a pass soon after start, then every `interval`.
pub async fn run(
    store: Arc<dyn Store>,
    keep: Duration,
    interval: Duration,
    shutdown: CancellationToken,
) {
    let mut next = Duration::from_secs(10).min(interval);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(next) => {}
        }
        next = interval;
        let pruned = prune_once(&*store, keep, &shutdown).await;
        if pruned > 0 {
            tracing::info!(pruned, "removed event payloads past their retention");
        }
    }
}

/// One pruning pass; returns how many bodies were removed.
pub async fn prune_once(store: &dyn Store, keep: Duration, shutdown: &CancellationToken) -> u64 {
    let cutoff = now_millis() - keep.as_millis() as i64;
    let mut total = 0;
    while !shutdown.is_cancelled() {
        match store.prune_payloads(cutoff, BATCH, now_millis()).await {
            Ok(n) => {
                total += n;
                metrics::counter!("switchboard_payloads_pruned_total").increment(n);
                if n < u64::from(BATCH) {
                    break;
                }
                // Let ingest and delivery have the writer between batches.
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(error) => {
                tracing::error!(%error, "pruning payloads failed; trying again next interval");
                break;
            }
        }
    }
    total
}
