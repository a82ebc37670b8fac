//! The pruner: enforces `[retention]` in small batches so that it never holds the database for
//! long. Four kinds, each with its own age limit: event bodies (`payloads`: the event and its
//! history stay), whole events with their deliveries, attempts and dedup keys (`events`),
//! attempt records (`attempts`) and audit entries (`audit`). Nothing with work left is touched:
//! an event with a pending or in-flight delivery (or a dead letter holding its ordering key)
//! keeps everything. What was removed is counted in `switchboard_pruned_total{kind}`.

use std::sync::Arc;
use std::time::Duration;

use switchboard_core::config::RetentionConfig;
use switchboard_core::time::{UnixMillis, now_millis};
use switchboard_store::{Store, StoreError};
use tokio_util::sync::CancellationToken;

/// Rows pruned per statement.
const BATCH: u32 = 500;

/// What one pass removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    /// Event bodies emptied.
    pub payloads: u64,
    /// Whole events deleted (with their deliveries and attempts).
    pub events: u64,
    /// Attempt records deleted.
    pub attempts: u64,
    /// Audit entries deleted.
    pub audit: u64,
}

impl Pruned {
    /// Whether anything was removed.
    pub fn any(&self) -> bool {
        self.payloads + self.events + self.attempts + self.audit > 0
    }
}

/// Runs until `shutdown`: a pass soon after start, then every `retention.interval`.
pub async fn run(store: Arc<dyn Store>, retention: RetentionConfig, shutdown: CancellationToken) {
    let mut next = Duration::from_secs(10).min(retention.interval);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(next) => {}
        }
        next = retention.interval;
        let pruned = prune_once(&*store, &retention, &shutdown).await;
        if pruned.any() {
            tracing::info!(
                payloads = pruned.payloads,
                events = pruned.events,
                attempts = pruned.attempts,
                audit = pruned.audit,
                "removed data past its retention"
            );
        }
    }
}

/// One pruning pass over every kind with a limit.
pub async fn prune_once(
    store: &dyn Store,
    retention: &RetentionConfig,
    shutdown: &CancellationToken,
) -> Pruned {
    let now = now_millis();
    let cutoff = |keep: Duration| now.saturating_sub(keep.as_millis() as i64);
    let mut pruned = Pruned::default();
    // Whole events first: what they take with them need not be emptied or deleted again.
    if let Some(keep) = retention.events {
        let cutoff = cutoff(keep);
        pruned.events = batches("events", shutdown, || store.prune_events(cutoff, BATCH)).await;
    }
    if let Some(keep) = retention.payloads {
        let cutoff = cutoff(keep);
        pruned.payloads = batches("payloads", shutdown, || {
            store.prune_payloads(cutoff, BATCH, now_millis())
        })
        .await;
        metrics::counter!("switchboard_payloads_pruned_total").increment(pruned.payloads);
    }
    if let Some(keep) = retention.attempts {
        let cutoff = cutoff(keep);
        pruned.attempts =
            batches("attempts", shutdown, || store.prune_attempts(cutoff, BATCH)).await;
    }
    if let Some(keep) = retention.audit {
        let cutoff: UnixMillis = cutoff(keep);
        pruned.audit = batches("audit", shutdown, || store.prune_audit(cutoff, BATCH)).await;
    }
    pruned
}

/// Calls `prune` until a batch comes back short, counting what it removed; pauses between
/// batches so ingest and delivery get the writer.
async fn batches<F, Fut>(kind: &'static str, shutdown: &CancellationToken, mut prune: F) -> u64
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<u64, StoreError>>,
{
    let mut total = 0;
    while !shutdown.is_cancelled() {
        match prune().await {
            Ok(n) => {
                total += n;
                metrics::counter!("switchboard_pruned_total", "kind" => kind).increment(n);
                if n < u64::from(BATCH) {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(error) => {
                tracing::error!(%error, kind, "pruning failed; trying again next interval");
                break;
            }
        }
    }
    total
}
