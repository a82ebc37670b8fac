//! Runs one task per fetching source and keeps the set in step with the live configuration.
//!
//! Every tick the supervisor compares the configured fetching sources with the running tasks:
//! a new source starts, a changed one restarts with its new settings, a deleted one stops. A
//! source placed on one node runs only while this node holds its lease (renewed every tick; a
//! node that dies loses it after [`LEASE_TTL`] and another node takes over). A task that ends by
//! itself (it should not) is started again after [`RESTART_PAUSE`].

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use switchboard_core::config::SourceConfig;
use switchboard_core::time::now_millis;
use switchboard_store::Store;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::{Context, Emitter, Placement, placement, task};
use crate::ingest::commit::Committer;
use crate::runtime::Registry;

/// How often the supervisor looks at the configuration and renews its leases.
pub const TICK: Duration = Duration::from_secs(1);
/// How long a one-node source's lease lasts without renewal.
pub const LEASE_TTL: Duration = Duration::from_secs(10);
/// Pause before restarting a task that ended on its own.
pub const RESTART_PAUSE: Duration = Duration::from_secs(5);
/// How long stopping tasks may take at shutdown before they are abandoned.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// What the supervisor needs.
pub struct Supervisor {
    /// Live configuration.
    pub registry: Arc<Registry>,
    /// Where events are committed.
    pub committer: Committer,
    /// The store (leases, checkpoints).
    pub store: Arc<dyn Store>,
    /// Outbound HTTP client for kinds that poll.
    pub client: reqwest::Client,
    /// Connections to third-party APIs, for kinds that poll through one.
    pub connections: Arc<crate::connections::Connections>,
    /// This process's identity as a lease owner.
    pub node: String,
}

struct Running {
    config: SourceConfig,
    stop: CancellationToken,
    handle: JoinHandle<()>,
    started: Instant,
}

/// The lease name of a one-node source.
pub fn lease_name(source: &str) -> String {
    format!("source:{source}")
}

impl Supervisor {
    /// Runs until `shutdown` is cancelled, then stops every task and gives up its leases.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut running: HashMap<String, Running> = HashMap::new();
        let mut not_before: HashMap<String, Instant> = HashMap::new();
        loop {
            self.tick(&mut running, &mut not_before, &shutdown).await;
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(TICK) => {}
            }
        }
        for (id, task) in running.drain() {
            self.stop(&id, task).await;
        }
    }

    async fn tick(
        &self,
        running: &mut HashMap<String, Running>,
        not_before: &mut HashMap<String, Instant>,
        shutdown: &CancellationToken,
    ) {
        let runtime = self.registry.current();
        let mut wanted: HashMap<&str, &SourceConfig> = HashMap::new();
        for source in runtime.config.sources.iter().filter(|s| s.enabled) {
            let Some(place) = placement(&source.kind) else {
                continue;
            };
            if place == Placement::OneNode && !self.hold_lease(&source.id).await {
                continue;
            }
            wanted.insert(source.id.as_str(), source);
        }
        // Stop what is gone, changed, or ended by itself.
        let ids: Vec<String> = running.keys().cloned().collect();
        for id in ids {
            let keep = running.get(&id).is_some_and(|task| {
                wanted.get(id.as_str()) == Some(&&task.config) && !task.handle.is_finished()
            });
            if keep {
                continue;
            }
            if let Some(task) = running.remove(&id) {
                if task.handle.is_finished() && !task.stop.is_cancelled() {
                    tracing::error!(source = %id, ran_for = ?task.started.elapsed(),
                        "source task ended by itself; restarting it shortly");
                    not_before.insert(id.clone(), Instant::now() + RESTART_PAUSE);
                }
                self.stop(&id, task).await;
            }
        }
        // Start what is wanted and not running.
        for (id, config) in wanted {
            if running.contains_key(id) || shutdown.is_cancelled() {
                continue;
            }
            if not_before.get(id).is_some_and(|at| Instant::now() < *at) {
                continue;
            }
            not_before.remove(id);
            let stop = shutdown.child_token();
            let context = Context {
                emitter: Emitter::new(id, self.registry.clone(), self.committer.clone()),
                stop: stop.clone(),
                client: self.client.clone(),
                connections: crate::connections::client::ConnectionClient::new(
                    self.connections.clone(),
                ),
                store: self.store.clone(),
            };
            let Some(future) = task(&config.kind, context) else {
                continue;
            };
            tracing::info!(source = %id, kind = config.kind.name(), "source started");
            running.insert(
                id.to_owned(),
                Running {
                    config: config.clone(),
                    stop,
                    handle: tokio::spawn(future),
                    started: Instant::now(),
                },
            );
        }
    }

    /// Takes or renews the source's lease; a store error counts as not holding it (another
    /// node may hold it, and running twice is worse than pausing).
    async fn hold_lease(&self, source: &str) -> bool {
        let ttl = LEASE_TTL.as_millis() as i64;
        match self
            .store
            .try_lease(&lease_name(source), &self.node, now_millis(), ttl)
            .await
        {
            Ok(held) => held,
            Err(error) => {
                tracing::warn!(source, %error, "could not renew the source's lease; pausing it");
                false
            }
        }
    }

    async fn stop(&self, id: &str, task: Running) {
        task.stop.cancel();
        let mut handle = task.handle;
        if tokio::time::timeout(STOP_GRACE, &mut handle).await.is_err() {
            tracing::warn!(source = %id, "source task did not stop in time; aborting it");
            handle.abort();
        }
        if placement(&task.config.kind) == Some(Placement::OneNode)
            && let Err(error) = self.store.release_lease(&lease_name(id), &self.node).await
        {
            tracing::warn!(source = %id, %error, "could not release the source's lease");
        }
        tracing::info!(source = %id, "source stopped");
    }
}
